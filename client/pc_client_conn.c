/*
 * pc_client_conn.c -- libpeercache: endpoints and their connections.
 * Small helpers, the endpoints (one per node, each with its connection
 * and health), connecting with the call's deadline, one exchange of a
 * request and its reply on an open connection, and the orphan a request
 * we stopped waiting for leaves on it. The rules it keeps (non-blocking
 * sockets, request/response pairing, when endpoints are freed) are at
 * the top of pc_client.c; the layouts it shares are in pc_client_int.h.
 */
#include "pc_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pc_client_int.h"
#include "pc_health.h"
#include "pc_proto.h"

/* Largest request buffer kept between calls; a bigger one (a large SET)
 * is given back so one big value does not pin memory to the client. */
#define OUT_KEEP ((size_t)256 * 1024)

/*
 * The floor of a connection's retransmission timeout, lowered from
 * Linux's 200 ms as the node lowers its own (--tcp-rto-min,
 * docs/OPERATIONS.md "Lost packets"): a request lost on the way waits for
 * this timer, and 200 ms is two hundred LAN round trips. Linux 6.15+;
 * elsewhere the setsockopt fails and the kernel's floor stays.
 */
#define RTO_MIN_US 10000
#if defined(__linux__) && !defined(TCP_RTO_MIN_US)
#define TCP_RTO_MIN_US 45
#endif

/*
 * Linux reports a write to a closed socket with EPIPE only if told not to
 * raise SIGPIPE, which would kill a program that does not handle it. BSDs
 * have a socket option for the same thing instead of the send() flag.
 */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#define PC_USE_SO_NOSIGPIPE 1
#endif

/* ---- small helpers --------------------------------------------------------- */

void pc_cl_set_msg(pc_client_t *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
}

int64_t pc_cl_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pc_cl_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pc_cl_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Appends msg to a "; "-separated list of reasons in all[size],
 * truncating what does not fit. */
void pc_cl_add_reason(char *all, size_t size, const char *msg)
{
    size_t used = strlen(all), n = strlen(msg);

    if (used > 0 && used + 2 < size) {
        memcpy(all + used, "; ", 2);
        used += 2;
    }
    if (n > size - 1 - used)
        n = size - 1 - used;
    memcpy(all + used, msg, n);
    all[used + n] = '\0';
}

/* Drops the endpoint's connection and anything buffered for it. */
void pc_cl_conn_close(ep_t *e)
{
    if (e->fd >= 0) {
        close(e->fd);
        e->fd = -1;
    }
    e->orphan_id = 0; /* its reply dies with the connection */
    pc_proto_reader_free(&e->reader);
}

/*
 * Waits until fd is ready for `events` or the deadline passes.
 * 0, PC_ETIMEDOUT, or PC_EIO if poll() itself failed (errno set). Socket
 * errors and hang-ups count as ready: the next send/recv/getsockopt
 * reports them precisely.
 */
static int wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};

    for (;;) {
        int64_t left = deadline - pc_cl_now_ms();
        int rc;

        if (left <= 0)
            return PC_ETIMEDOUT;
        rc = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return PC_EIO;
    }
}

/* ---- endpoints -------------------------------------------------------------- */

ep_t *pc_cl_ep_new(const pc_client_t *c, const char *host, int port)
{
    ep_t *e = calloc(1, sizeof(*e));
    size_t lablen = strlen(host) + 16;

    if (e == NULL)
        return NULL;
    e->host = strdup(host);
    e->label = malloc(lablen);
    if (e->host == NULL || e->label == NULL) {
        free(e->host);
        free(e->label);
        free(e);
        return NULL;
    }
    e->port = port;
    e->fd = -1;
    pc_health_init(&e->health);
    snprintf(e->label, lablen, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    pc_proto_reader_init(&e->reader, c->max_frame);
    return e;
}

void pc_cl_ep_free(ep_t *e)
{
    pc_cl_conn_close(e);
    free(e->host);
    free(e->label);
    free(e);
}

int pc_cl_ep_append(pc_client_t *c, ep_t *e)
{
    ep_t **grown = realloc(c->eps, (c->neps + 1) * sizeof(*grown));

    if (grown == NULL)
        return PC_ENOMEM;
    c->eps = grown;
    c->eps[c->neps++] = e;
    return 0;
}

/* The endpoint for host:port, made if there is none yet. NULL: no memory. */
ep_t *pc_cl_ep_get(pc_client_t *c, const char *host, int port)
{
    ep_t *e;

    for (size_t i = 0; i < c->neps; i++) {
        if (c->eps[i]->port == port && strcmp(c->eps[i]->host, host) == 0)
            return c->eps[i];
    }
    e = pc_cl_ep_new(c, host, port);
    if (e != NULL && pc_cl_ep_append(c, e) != 0) {
        pc_cl_ep_free(e);
        e = NULL;
    }
    return e;
}

bool pc_cl_failed(const pc_client_t *c, const ep_t *e)
{
    return e->failed_call == c->call_seq;
}

/* A node failed during this call: do not use it again in this call, nor
 * in the next ones until its breaker lets a probe through (pc_health.h),
 * and learn what the cluster thinks of it before the next request is
 * routed (see REFRESH_HOLD_MS). */
void pc_cl_node_failed(pc_client_t *c, ep_t *e)
{
    e->failed_call = c->call_seq;
    c->counters.node_failures++;
    if (pc_health_fail(&e->health, pc_cl_now_ms()))
        c->counters.breaker_opens++;
    c->ring_doubt = c->ring_aware;
}

/*
 * Frees the endpoints that are neither seeds nor ring members any more.
 * Runs only between calls (see the top of pc_client.c).
 */
static void prune_endpoints(pc_client_t *c)
{
    size_t n = c->nseeds;

    c->prune_pending = false;
    for (size_t i = 0; i < c->neps; i++)
        c->eps[i]->used = c->eps[i]->seed;
    for (size_t i = 0; c->ring != NULL && i < pc_ring_size(c->ring); i++)
        c->member_ep[i]->used = true;
    for (size_t i = c->nseeds; i < c->neps; i++) {
        ep_t *e = c->eps[i];

        if (e->used) {
            c->eps[n++] = e;
            continue;
        }
        if (c->stale_from == e)
            c->stale_from = NULL;
        pc_cl_ep_free(e);
    }
    c->neps = n;
}

/* Every public call starts here. */
void pc_cl_begin_call(pc_client_t *c)
{
    c->errmsg[0] = '\0';
    c->call_seq++;
    c->stale_from = NULL;
    if (c->prune_pending)
        prune_endpoints(c);
}

/* ---- connecting --------------------------------------------------------------- */

static int set_socket_options(int fd)
{
    int one = 1;
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    /* Requests are single small writes answered before the next one:
     * Nagle would only add a delayed-ACK round trip to each. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef TCP_RTO_MIN_US
    int rto_min = RTO_MIN_US;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_RTO_MIN_US, &rto_min, sizeof(rto_min));
#endif
#ifdef PC_USE_SO_NOSIGPIPE
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
    return 0;
}

/* Connects to one resolved address. 0 with e->fd set, or an error. */
static int connect_addr(pc_client_t *c, ep_t *e, const struct addrinfo *ai, int64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    int err = 0;
    socklen_t errlen = sizeof(err);

    if (fd < 0) {
        pc_cl_set_msg(c, "%s: socket: %s", e->label, strerror(errno));
        return PC_ECONN;
    }
    if (set_socket_options(fd) != 0) {
        pc_cl_set_msg(c, "%s: socket options: %s", e->label, strerror(errno));
        close(fd);
        return PC_ECONN;
    }
    /* A non-blocking connect that is interrupted carries on in the
     * background, exactly like EINPROGRESS. */
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS &&
        errno != EINTR) {
        pc_cl_set_msg(c, "%s: connect: %s", e->label, strerror(errno));
        close(fd);
        return PC_ECONN;
    }
    err = wait_fd(fd, POLLOUT, deadline);
    if (err != 0) {
        if (err == PC_ETIMEDOUT)
            pc_cl_set_msg(c, "%s: connect: timed out after %d ms", e->label, c->timeout_ms);
        else
            pc_cl_set_msg(c, "%s: poll: %s", e->label, strerror(errno));
        close(fd);
        return err == PC_ETIMEDOUT ? PC_ETIMEDOUT : PC_ECONN;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0)
        err = errno;
    if (err != 0) {
        pc_cl_set_msg(c, "%s: connect: %s", e->label, strerror(err));
        close(fd);
        return PC_ECONN;
    }
    e->fd = fd;
    return 0;
}

/*
 * Resolves the node and tries each of its addresses (a name such as
 * "localhost" may give ::1 first while the node listens on 127.0.0.1).
 * Resolution happens on every connect so DNS changes are picked up; note
 * that getaddrinfo() itself cannot be bounded by the deadline.
 */
int pc_cl_connect_node(pc_client_t *c, ep_t *e, int64_t deadline)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    int rc = PC_ECONN;
    int gai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", e->port);
    gai = getaddrinfo(e->host, port, &hints, &res);
    if (gai != 0) {
        pc_cl_set_msg(c, "%s: cannot resolve: %s", e->label,
                      gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        return PC_ECONN;
    }
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        rc = connect_addr(c, e, ai, deadline);
        if (rc == 0 || rc == PC_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

/* ---- one exchange on an open connection ------------------------------------ */

/* *sent becomes true once the kernel took a byte of the request: from
 * then on the node may act on it. */
static int send_all(pc_client_t *c, ep_t *e, const uint8_t *p, size_t len, int64_t deadline,
                    bool *sent)
{
    while (len > 0) {
        ssize_t n = send(e->fd, p, len, MSG_NOSIGNAL);

        if (n > 0) {
            *sent = true;
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(e->fd, POLLOUT, deadline);

            if (rc == PC_ETIMEDOUT) {
                pc_cl_set_msg(c, "%s: timed out after %d ms sending the request", e->label,
                              c->timeout_ms);
                return PC_ETIMEDOUT;
            }
            if (rc != 0) {
                pc_cl_set_msg(c, "%s: poll: %s", e->label, strerror(errno));
                return PC_ECONN;
            }
        } else {
            pc_cl_set_msg(c, "%s: send: %s", e->label, n < 0 ? strerror(errno) : "no progress");
            return PC_ECONN;
        }
    }
    return 0;
}

/* Reads until one whole frame is buffered; *body points into the reader. */
static int recv_frame(pc_client_t *c, ep_t *e, const uint8_t **body, uint32_t *len,
                      int64_t deadline)
{
    for (;;) {
        uint8_t *p;
        size_t avail;
        ssize_t n;
        int rc = pc_proto_reader_next(&e->reader, body, len);

        if (rc == 1)
            return 0;
        if (rc == PC_ETOOBIG) {
            pc_cl_set_msg(c, "%s: reply is over the client's %u-byte frame limit", e->label,
                          e->reader.max_frame);
            return PC_ETOOBIG;
        }
        if (rc < 0) {
            pc_cl_set_msg(c, "%s: malformed reply frame", e->label);
            return PC_EPROTO;
        }
        rc = pc_proto_reader_reserve(&e->reader, PC_PROTO_READ_CHUNK, &p, &avail);
        if (rc != 0) {
            pc_cl_set_msg(c, "reading reply: %s", pc_strerror(rc));
            return rc;
        }
        n = recv(e->fd, p, avail, 0);
        if (n > 0) {
            pc_proto_reader_commit(&e->reader, (size_t)n);
        } else if (n == 0) {
            pc_cl_set_msg(c, "%s: connection closed by the server", e->label);
            return PC_ECONN;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            rc = wait_fd(e->fd, POLLIN, deadline);
            if (rc == PC_ETIMEDOUT) {
                pc_cl_set_msg(c, "%s: no reply within %d ms", e->label, c->timeout_ms);
                return PC_ETIMEDOUT;
            }
            if (rc != 0) {
                pc_cl_set_msg(c, "%s: poll: %s", e->label, strerror(errno));
                return PC_ECONN;
            }
        } else if (errno != EINTR) {
            pc_cl_set_msg(c, "%s: recv: %s", e->label, strerror(errno));
            return PC_ECONN;
        }
    }
}

/*
 * Turns a non-OK status into a pc_err code and keeps the server's message
 * (or, without one, the code's own pc_strerror() text where it says the
 * same, so that callers printing both do not repeat themselves). Control
 * characters in the message are replaced, since it ends up on terminals
 * and in logs.
 */
int pc_cl_status_error(pc_client_t *c, uint32_t status, pc_bytes_t message)
{
    int rc = pc_status_to_err(status);

    /* A status this build does not know must still fail the call. */
    if (rc == 0)
        rc = PC_EPROTO;

    if (message.len > 0) {
        size_t n = message.len < sizeof(c->errmsg) - 1 ? message.len : sizeof(c->errmsg) - 1;

        for (size_t i = 0; i < n; i++) {
            uint8_t ch = message.ptr[i];

            c->errmsg[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        c->errmsg[n] = '\0';
    } else if (status > PC_ST_MAX) {
        pc_cl_set_msg(c, "unknown status %u from the server", status);
    } else if (pc_err_to_status(rc) != status) {
        /* The code is vaguer than the status (several statuses share
         * one code): keep what the status says. */
        pc_cl_set_msg(c, "%s", pc_status_message(status));
    } else {
        pc_cl_set_msg(c, "%s", pc_strerror(rc));
    }
    return rc;
}

/*
 * After a send failed: a server that rejects a frame while it is still
 * arriving (over its max-frame, say) answers with an error and hangs up,
 * so our send fails with EPIPE/ECONNRESET while the reason already sits
 * in the receive buffer. Reads it without waiting; if there is an error
 * reply for this request or for the connection (id 0), returns its code,
 * else leaves the send error as it was and returns 0.
 */
static int explain_send_failure(pc_client_t *c, ep_t *e, const pc_request_t *req,
                                pc_response_t *resp)
{
    char saved[ERRMSG_MAX];
    const uint8_t *body;
    uint32_t len;

    memcpy(saved, c->errmsg, sizeof(saved));
    if (recv_frame(c, e, &body, &len, pc_cl_now_ms()) == 0 &&
        pc_proto_decode_response(c->dec, body, len, resp) == 0 && resp->status != PC_ST_OK &&
        (resp->id == 0 || resp->id == req->id))
        return pc_cl_status_error(c, resp->status, resp->message);
    memcpy(c->errmsg, saved, sizeof(saved));
    return 0;
}

/* Encodes req under a fresh id into c->out, for e. */
int pc_cl_encode_request(pc_client_t *c, const ep_t *e, pc_request_t *req, int64_t deadline)
{
    int rc;

    req->id = c->next_id++;
    if (req->op == PC_OP_SET || req->op == PC_OP_DEL || req->op == PC_OP_TOUCH)
        req->deadline_ms = pc_nodeclock_deadline(&e->clock, wall_ms(), pc_cl_now_ms(), deadline);
    pc_buf_reset(&c->out);
    if (c->out.cap > OUT_KEEP)
        pc_buf_free(&c->out);
    rc = pc_proto_encode_request(&c->out, req);
    if (rc != 0)
        pc_cl_set_msg(c, "cannot encode %s request: %s", pc_op_name(req->op), pc_strerror(rc));
    return rc;
}

/*
 * Sends the request pc_cl_encode_request() left in c->out. *sent is set
 * (never cleared) once a byte of it left. Never closes the connection:
 * the caller does.
 */
int pc_cl_send_request(pc_client_t *c, ep_t *e, const pc_request_t *req, pc_response_t *resp,
                       int64_t deadline, bool *sent)
{
    int rc = send_all(c, e, c->out.data, c->out.len, deadline, sent);

    if (rc == PC_ECONN) {
        int why = explain_send_failure(c, e, req, resp);

        if (why != 0)
            return why;
    }
    return rc;
}

/*
 * Reads until the reply to req is decoded into *resp (slices valid until
 * the next read on e, or the next decode), dropping on the way the reply
 * to e's orphan, which also shows that the node answers. 0 when the reply
 * arrived, whatever its status; PC_ETIMEDOUT at the deadline (one already
 * passed: only what can be read now); or an error. Never closes the
 * connection.
 */
int pc_cl_await_reply(pc_client_t *c, ep_t *e, const pc_request_t *req, pc_response_t *resp,
                      int64_t deadline)
{
    for (;;) {
        const uint8_t *body;
        uint32_t len;
        int rc = recv_frame(c, e, &body, &len, deadline);

        if (rc != 0)
            return rc;
        rc = pc_proto_decode_response(c->dec, body, len, resp);
        if (rc == PC_EPROTO) {
            pc_cl_set_msg(c, "%s: malformed %s reply", e->label, pc_op_name(req->op));
            return rc;
        }
        if (rc != 0) {
            pc_cl_set_msg(c, "decoding reply: %s", pc_strerror(rc));
            return rc;
        }
        if (e->orphan_id != 0 && resp->id == e->orphan_id) {
            e->orphan_id = 0;
            pc_health_ok(&e->health, -1);
            continue;
        }
        if (resp->id != req->id && resp->id == 0 && resp->status != PC_ST_OK) {
            /* Not an answer but the server speaking for the connection
             * (for example refusing it while overloaded): report what it
             * said. */
            return pc_cl_status_error(c, resp->status, resp->message);
        }
        if (resp->id != req->id || resp->op != req->op) {
            pc_cl_set_msg(c, "%s: reply %s #%llu does not match request %s #%llu", e->label,
                          pc_op_name(resp->op), (unsigned long long)resp->id, pc_op_name(req->op),
                          (unsigned long long)req->id);
            return PC_EPROTO;
        }
        return 0;
    }
}

/*
 * Sends one request to e and reads its reply into *resp. Returns 0 when
 * a matching reply arrived, whatever its status (and takes its round trip
 * into e's health). Any error after the first byte could have been sent
 * closes the connection; an error while encoding leaves it open.
 */
int pc_cl_exchange(pc_client_t *c, ep_t *e, pc_request_t *req, pc_response_t *resp,
                   int64_t deadline, bool *sent)
{
    int64_t t0 = pc_cl_now_us();
    int rc = pc_cl_encode_request(c, e, req, deadline);

    if (rc != 0)
        return rc;
    rc = pc_cl_send_request(c, e, req, resp, deadline, sent);
    if (rc == 0)
        rc = pc_cl_await_reply(c, e, req, resp, deadline);
    if (rc != 0) {
        pc_cl_conn_close(e);
        return rc;
    }
    pc_health_ok(&e->health, pc_cl_now_us() - t0);
    return 0;
}

/* HELLO: the first exchange on every connection. */
int pc_cl_hello(pc_client_t *c, ep_t *e, int64_t deadline)
{
    pc_request_t req;
    pc_response_t resp;
    bool sent = false;
    int rc;

    memset(&req, 0, sizeof(req));
    req.op = PC_OP_HELLO;
    req.proto_version = PC_PROTO_VERSION;
    if (c->token != NULL) {
        req.token.ptr = (const uint8_t *)c->token;
        req.token.len = (uint32_t)c->token_len;
    }
    int64_t sent_at = wall_ms();
    rc = pc_cl_exchange(c, e, &req, &resp, deadline, &sent);
    int64_t back_at = wall_ms();
    if (rc == 0 && resp.status == PC_ST_OK)
        pc_nodeclock_measure(&e->clock, sent_at, back_at, resp.now_ms);
    if (rc == PC_ETOOBIG || rc == PC_EPROTO) {
        /* Garbage in answer to the very first request is most likely a
         * different service on that port (an HTTP server's "HTTP" reads
         * as a 1.2 GB frame length). */
        size_t used = strlen(c->errmsg);

        snprintf(c->errmsg + used, sizeof(c->errmsg) - used, " (is this a peercache node?)");
        return PC_EPROTO;
    }
    if (rc != 0)
        return rc;
    if (resp.status != PC_ST_OK) {
        rc = pc_cl_status_error(c, resp.status, resp.message);
        pc_cl_conn_close(e);
        return rc;
    }
    /* A newer node answers in our version's format while reporting its
     * own (PROTOCOL.md section 10), so only an older one is a problem. */
    if (resp.proto_version < PC_PROTO_VERSION) {
        pc_cl_set_msg(c, "%s: node speaks protocol version %u, older than this client's %u",
                      e->label, resp.proto_version, (unsigned)PC_PROTO_VERSION);
        pc_cl_conn_close(e);
        return PC_EPROTO;
    }
    return 0;
}

/* Failures that say "this node, now" rather than "this request": worth
 * trying another node for. An auth failure would fail on every node. */
bool pc_cl_try_next_node(int rc)
{
    return rc == PC_ECONN || rc == PC_ETIMEDOUT || rc == PC_EBUSY || rc == PC_EPROTO ||
           rc == PC_ECLOSED;
}

/* Connect + HELLO, sharing one timeout. Nothing of a request is sent. */
int pc_cl_ep_open(pc_client_t *c, ep_t *e)
{
    int64_t deadline = pc_cl_now_ms() + c->timeout_ms;
    int rc = pc_cl_connect_node(c, e, deadline);

    if (rc == 0)
        rc = pc_cl_hello(c, e, deadline);
    if (rc != 0)
        pc_cl_conn_close(e);
    return rc;
}

/*
 * True if the open connection can carry a request: the server has not
 * closed it and sent nothing we did not ask for. Checked before sending,
 * so a connection the server dropped while we were idle is replaced
 * instead of failing the call.
 */
static bool conn_usable(ep_t *e)
{
    struct pollfd pfd = {.fd = e->fd, .events = POLLIN};

    if (pc_proto_reader_pending(&e->reader) > 0)
        return false;
    return poll(&pfd, 1, 0) == 0;
}

bool pc_cl_is_read_op(uint32_t op)
{
    return op == PC_OP_GET || op == PC_OP_MGET || op == PC_OP_PING || op == PC_OP_STATS ||
           op == PC_OP_CLUSTER;
}

/*
 * Reads the reply to e's orphan if it has come (or comes before the
 * deadline; one already passed: only what can be read now) and drops it.
 * 0 when no orphan is left; PC_ETIMEDOUT while it is still unanswered. A
 * connection that broke or sent anything else is closed, the orphan with
 * it. The call's message is left as it was.
 */
int pc_cl_orphan_settle(pc_client_t *c, ep_t *e, int64_t deadline)
{
    char saved[ERRMSG_MAX];
    int rc = 0;

    memcpy(saved, c->errmsg, sizeof(saved));
    while (e->fd >= 0 && e->orphan_id != 0) {
        const uint8_t *body;
        uint32_t len;
        pc_response_t resp;

        rc = recv_frame(c, e, &body, &len, deadline);
        if (rc == PC_ETIMEDOUT)
            break;
        if (rc == 0 && pc_proto_decode_response(c->dec, body, len, &resp) == 0 &&
            resp.id == e->orphan_id) {
            e->orphan_id = 0;
            pc_health_ok(&e->health, -1);
            break;
        }
        pc_cl_conn_close(e);
        rc = 0;
    }
    memcpy(c->errmsg, saved, sizeof(saved));
    return rc;
}

/* Before a request goes on e's open connection: drops what its orphan
 * left, and closes a connection the node closed while it was idle. */
void pc_cl_ep_check(pc_client_t *c, ep_t *e)
{
    if (e->fd >= 0 && e->orphan_id != 0)
        (void)pc_cl_orphan_settle(c, e, 0);
    /* An orphan still out may answer any moment: only a closed connection
     * (found by pc_cl_orphan_settle) is a reason to drop it then. */
    if (e->fd >= 0 && e->orphan_id == 0 && !conn_usable(e))
        pc_cl_conn_close(e);
}

/* Makes e ready to carry a request: checked, or opened. *reused says a
 * connection that was already open will carry it. */
int pc_cl_ep_ready(pc_client_t *c, ep_t *e, bool *reused)
{
    pc_cl_ep_check(c, e);
    *reused = e->fd >= 0;
    return *reused ? 0 : pc_cl_ep_open(c, e);
}

/*
 * One request to one node: opens its connection if needed, replaces an
 * idle one the node closed, and sends a read once more on a fresh
 * connection if a reused one broke. 0 when a reply arrived (its status is
 * the caller's to judge); *sent says whether the node may have seen the
 * request.
 */
int pc_cl_ep_call(pc_client_t *c, ep_t *e, pc_request_t *req, pc_response_t *resp, bool *sent)
{
    *sent = false;
    for (int attempt = 0;; attempt++) {
        bool reused;
        int rc = pc_cl_ep_ready(c, e, &reused);

        if (rc != 0)
            return rc;
        rc = pc_cl_exchange(c, e, req, resp, pc_cl_now_ms() + c->timeout_ms, sent);
        if (rc == PC_ECONN && reused && attempt == 0 && pc_cl_is_read_op(req->op))
            continue;
        return rc;
    }
}
