/*
 * pc_client.c -- libpeercache: blocking connections, one request at a
 * time, each sent to the node that owns its key.
 *
 * Sockets are non-blocking from the moment they are made, and every wait
 * goes through poll() with the call's deadline. That is what gives each
 * call a real upper bound: a blocking connect() or recv() could hang for
 * minutes on a node that vanished without a RST.
 *
 * Request/response pairing is the next thing this file is careful about.
 * A call waits for one request at a time -- two during a hedged read,
 * on two connections -- and every request has a fresh id. A request we
 * stopped waiting for without closing its connection (the loser of a
 * hedged read, or a probe) is that connection's orphan: its reply, when
 * it comes, is read and dropped by id before anything else is taken from
 * the connection. Any other failure after a byte was sent (timeout,
 * broken connection, a reply that does not match) closes the connection,
 * so a reply that arrives late lands on a closed socket. Either way a
 * late reply can never be taken as the answer to a later request.
 *
 * Endpoints. Every node the client may talk to is an endpoint with its own
 * connection: first the seeds from the node list, in order, then the ring
 * members that are not seeds (found by address, so a member that is also
 * a seed shares its connection). Endpoints are freed only at the start of
 * a public call, never in the middle of one, so pointers held while a call
 * routes (the node that failed, the node to refresh from) stay valid.
 *
 * Retry policy, kept deliberately small:
 *  - Before a request goes out on a connection that was already open, a
 *    zero-timeout poll() checks that the server has not closed it (idle
 *    timeout, restart) and that nothing unexpected is waiting. If it has,
 *    the connection is replaced before anything is sent; that is not a
 *    retry, since nothing was sent.
 *  - A read that then still fails with a broken connection on such a
 *    reused connection is sent once more on a fresh one to the same node:
 *    the server may have closed the idle connection just as we wrote.
 *    Reads are idempotent, so this is safe.
 *  - Routed reads that fail on a node go to the key's next placement.
 *  - A GET its owner has not answered within a hedge delay also goes to
 *    the next placement (hedged_get); the first answer wins. Nodes that
 *    stop answering are left alone for a back-off (pc_health.h): reads go
 *    past them, writes for them fail unsent.
 *  - A write is sent again only when we know no byte of it left (the
 *    connect failed), or when the node said RETRY, which guarantees that
 *    nothing was applied. Once it may have left, only the caller can
 *    decide what to do.
 *  - RETRY rounds are bounded (RETRY_ROUNDS), with a short sleep before
 *    each, so a cluster that keeps changing cannot hold a call forever.
 *  - In seed-only mode timeouts are never retried: the call's time is
 *    used up.
 */
#include "pc_client.h"

#include <arpa/inet.h>
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

#include "pc_addr.h"
#include "pc_health.h"
#include "pc_proto.h"
#include "pc_ring.h"

#define DEFAULT_TIMEOUT_MS 2000
#define ERRMSG_MAX 512

/* Largest request buffer kept between calls; a bigger one (a large SET)
 * is given back so one big value does not pin memory to the client. */
#define OUT_KEEP ((size_t)256 * 1024)

/*
 * RETRY answers are retried this many times, after these pauses. RETRY is
 * sent while two nodes disagree about a key's owner, which lasts about
 * one gossip round; the pauses give the cluster that long to settle
 * without adding much to a call that was unlucky once.
 */
#define RETRY_ROUNDS 3
static const int retry_pause_ms[RETRY_ROUNDS] = {20, 50, 100};

/*
 * A refresh that already has a ring to fall back on gives up after this
 * many unreachable nodes: the old ring still works (nodes relay keys they
 * do not own), and each dead node can cost a whole timeout.
 */
#define REFRESH_MAX_FAILURES 3

/*
 * After a node fails, the ring is refreshed at most this often. Until the
 * cluster declares the node dead, every refresh would bring back the same
 * ring, and a busy client would ask for it on every request that meets
 * the dead node. The moment the cluster does change its ring, replies
 * show the new fingerprint, which triggers a refresh regardless.
 */
#define REFRESH_HOLD_MS 100

/*
 * Linux reports a write to a closed socket with EPIPE only if told not to
 * raise SIGPIPE, which would kill a program that does not handle it. BSDs
 * have a socket option for the same thing instead of the send() flag.
 */
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

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#define PC_USE_SO_NOSIGPIPE 1
#endif

_Static_assert(PC_CLIENT_COND_NONE == PC_COND_NONE && PC_CLIENT_COND_NX == PC_COND_NX &&
                   PC_CLIENT_COND_XX == PC_COND_XX,
               "pc_client.h condition values must match the wire values");
_Static_assert(PC_CLIENT_MEMBER_ALIVE == PC_WIRE_ALIVE &&
                   PC_CLIENT_MEMBER_SUSPECT == PC_WIRE_SUSPECT &&
                   PC_CLIENT_MEMBER_DEAD == PC_WIRE_DEAD && PC_CLIENT_MEMBER_LEFT == PC_WIRE_LEFT,
               "pc_client.h member states must match the wire values");
_Static_assert(PC_CLIENT_RING_SLOTS == PC_RING_SLOTS, "pc_client.h must match pc_ring.h");

typedef struct ep {
    char *host;  /* as given, without IPv6 brackets */
    int port;
    char *label; /* "host:port" or "[v6]:port", for messages */
    bool seed;   /* from the node list: kept for the client's life */
    bool used;   /* scratch for prune_endpoints() */
    int fd;      /* -1 when not connected */
    pc_proto_reader_t reader;
    uint64_t failed_call;  /* == c->call_seq: failed during this call */
    uint64_t refresh_seq;  /* == c->refresh_seq: asked in this refresh */
    /* The node's wall clock against ours, from its HELLO answer
     * (PROTOCOL.md §5.1): off_ms = its clock minus ours, known to within
     * unc_ms. Writes carry their deadline on its clock. */
    bool has_clock;
    int64_t off_ms;
    int64_t unc_ms;
    pc_health_t health;
    /* A request on this connection whose answer we stopped waiting for
     * (a hedged read that another node answered first, or a probe): its
     * reply is read and dropped before the next one. 0 = none. */
    uint64_t orphan_id;
    int64_t orphan_at_ms; /* when it was sent */
} ep_t;

struct pc_client {
    ep_t **eps;       /* eps[0..nseeds) are the seeds, in list order */
    size_t neps;
    size_t nseeds;
    size_t cur;       /* seed to try first: the last one that worked */
    int timeout_ms;
    uint32_t max_frame;
    char *token;      /* NULL = none */
    size_t token_len;
    uint64_t next_id; /* ids are never reused within a client */
    pc_proto_decoder_t *dec;
    pc_buf_t out;
    char errmsg[ERRMSG_MAX];

    /* Ring-aware routing. ring != NULL means routing by it; ring == NULL
     * with ring_none means the nodes gave us nothing usable (seed-only
     * until a reply shows another fingerprint); neither means not learned
     * yet. */
    bool ring_aware;
    pc_ring_t *ring;
    ep_t **member_ep;     /* endpoint of ring member i */
    uint64_t ring_fp;     /* pc_ring_fingerprint(ring), 0 without a ring */
    bool ring_none;
    uint64_t unusable_fp; /* fingerprint of the last answer we could not use */
    uint64_t seen_fp;     /* the last fingerprint a reply showed */
    bool ring_stale;      /* refresh before routing the next request */
    bool ring_doubt;      /* a node failed: refresh, at most every
                             REFRESH_HOLD_MS */
    int64_t last_refresh_ms;
    ep_t *stale_from;     /* a node whose reply showed another ring; only
                             valid during the call that set it */
    bool prune_pending;   /* endpoints may have left the ring */
    uint64_t call_seq;
    uint64_t refresh_seq;
    pc_client_counters_t counters;
};

/* ---- small helpers --------------------------------------------------------- */

static void set_msg(pc_client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_msg(pc_client_t *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
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

/*
 * A write's deadline on e's clock: when this call gives up (`deadline`,
 * on the monotonic clock), moved onto the node's wall clock and made
 * earlier by what the offset may be wrong by. The node applies nothing
 * after it (PROTOCOL.md §5.5). 0 = none (the node sent no clock).
 */
static uint64_t write_deadline(const ep_t *e, int64_t deadline)
{
    if (!e->has_clock)
        return 0;
    int64_t at = wall_ms() + (deadline - now_ms()) + e->off_ms - e->unc_ms;
    return at > 0 ? (uint64_t)at : 1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Appends msg to a "; "-separated list of reasons in all[size],
 * truncating what does not fit. */
static void add_reason(char *all, size_t size, const char *msg)
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
static void conn_close(ep_t *e)
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
        int64_t left = deadline - now_ms();
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

static ep_t *ep_new(const pc_client_t *c, const char *host, int port)
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

static void ep_free(ep_t *e)
{
    conn_close(e);
    free(e->host);
    free(e->label);
    free(e);
}

static int ep_append(pc_client_t *c, ep_t *e)
{
    ep_t **grown = realloc(c->eps, (c->neps + 1) * sizeof(*grown));

    if (grown == NULL)
        return PC_ENOMEM;
    c->eps = grown;
    c->eps[c->neps++] = e;
    return 0;
}

/* The endpoint for host:port, made if there is none yet. NULL: no memory. */
static ep_t *ep_get(pc_client_t *c, const char *host, int port)
{
    ep_t *e;

    for (size_t i = 0; i < c->neps; i++) {
        if (c->eps[i]->port == port && strcmp(c->eps[i]->host, host) == 0)
            return c->eps[i];
    }
    e = ep_new(c, host, port);
    if (e != NULL && ep_append(c, e) != 0) {
        ep_free(e);
        e = NULL;
    }
    return e;
}

static bool failed(const pc_client_t *c, const ep_t *e)
{
    return e->failed_call == c->call_seq;
}

/* A node failed during this call: do not use it again in this call, nor
 * in the next ones until its breaker lets a probe through (pc_health.h),
 * and learn what the cluster thinks of it before the next request is
 * routed (see REFRESH_HOLD_MS). */
static void node_failed(pc_client_t *c, ep_t *e)
{
    e->failed_call = c->call_seq;
    c->counters.node_failures++;
    if (pc_health_fail(&e->health, now_ms()))
        c->counters.breaker_opens++;
    c->ring_doubt = c->ring_aware;
}

/*
 * Frees the endpoints that are neither seeds nor ring members any more.
 * Runs only between calls (see the top of the file).
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
        ep_free(e);
    }
    c->neps = n;
}

/* Every public call starts here. */
static void begin_call(pc_client_t *c)
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
        set_msg(c, "%s: socket: %s", e->label, strerror(errno));
        return PC_ECONN;
    }
    if (set_socket_options(fd) != 0) {
        set_msg(c, "%s: socket options: %s", e->label, strerror(errno));
        close(fd);
        return PC_ECONN;
    }
    /* A non-blocking connect that is interrupted carries on in the
     * background, exactly like EINPROGRESS. */
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS &&
        errno != EINTR) {
        set_msg(c, "%s: connect: %s", e->label, strerror(errno));
        close(fd);
        return PC_ECONN;
    }
    err = wait_fd(fd, POLLOUT, deadline);
    if (err != 0) {
        if (err == PC_ETIMEDOUT)
            set_msg(c, "%s: connect: timed out after %d ms", e->label, c->timeout_ms);
        else
            set_msg(c, "%s: poll: %s", e->label, strerror(errno));
        close(fd);
        return err == PC_ETIMEDOUT ? PC_ETIMEDOUT : PC_ECONN;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0)
        err = errno;
    if (err != 0) {
        set_msg(c, "%s: connect: %s", e->label, strerror(err));
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
static int connect_node(pc_client_t *c, ep_t *e, int64_t deadline)
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
        set_msg(c, "%s: cannot resolve: %s", e->label,
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
                set_msg(c, "%s: timed out after %d ms sending the request", e->label,
                        c->timeout_ms);
                return PC_ETIMEDOUT;
            }
            if (rc != 0) {
                set_msg(c, "%s: poll: %s", e->label, strerror(errno));
                return PC_ECONN;
            }
        } else {
            set_msg(c, "%s: send: %s", e->label, n < 0 ? strerror(errno) : "no progress");
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
            set_msg(c, "%s: reply is over the client's %u-byte frame limit", e->label,
                    e->reader.max_frame);
            return PC_ETOOBIG;
        }
        if (rc < 0) {
            set_msg(c, "%s: malformed reply frame", e->label);
            return PC_EPROTO;
        }
        rc = pc_proto_reader_reserve(&e->reader, PC_PROTO_READ_CHUNK, &p, &avail);
        if (rc != 0) {
            set_msg(c, "reading reply: %s", pc_strerror(rc));
            return rc;
        }
        n = recv(e->fd, p, avail, 0);
        if (n > 0) {
            pc_proto_reader_commit(&e->reader, (size_t)n);
        } else if (n == 0) {
            set_msg(c, "%s: connection closed by the server", e->label);
            return PC_ECONN;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            rc = wait_fd(e->fd, POLLIN, deadline);
            if (rc == PC_ETIMEDOUT) {
                set_msg(c, "%s: no reply within %d ms", e->label, c->timeout_ms);
                return PC_ETIMEDOUT;
            }
            if (rc != 0) {
                set_msg(c, "%s: poll: %s", e->label, strerror(errno));
                return PC_ECONN;
            }
        } else if (errno != EINTR) {
            set_msg(c, "%s: recv: %s", e->label, strerror(errno));
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
static int status_error(pc_client_t *c, uint32_t status, pc_bytes_t message)
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
        set_msg(c, "unknown status %u from the server", status);
    } else if (pc_err_to_status(rc) != status) {
        /* The code is vaguer than the status (several statuses share
         * one code): keep what the status says. */
        set_msg(c, "%s", pc_status_message(status));
    } else {
        set_msg(c, "%s", pc_strerror(rc));
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
    if (recv_frame(c, e, &body, &len, now_ms()) == 0 &&
        pc_proto_decode_response(c->dec, body, len, resp) == 0 && resp->status != PC_ST_OK &&
        (resp->id == 0 || resp->id == req->id))
        return status_error(c, resp->status, resp->message);
    memcpy(c->errmsg, saved, sizeof(saved));
    return 0;
}

/* Encodes req under a fresh id into c->out, for e. */
static int encode_request(pc_client_t *c, const ep_t *e, pc_request_t *req, int64_t deadline)
{
    int rc;

    req->id = c->next_id++;
    if (req->op == PC_OP_SET || req->op == PC_OP_DEL || req->op == PC_OP_TOUCH)
        req->deadline_ms = write_deadline(e, deadline);
    pc_buf_reset(&c->out);
    if (c->out.cap > OUT_KEEP)
        pc_buf_free(&c->out);
    rc = pc_proto_encode_request(&c->out, req);
    if (rc != 0)
        set_msg(c, "cannot encode %s request: %s", pc_op_name(req->op), pc_strerror(rc));
    return rc;
}

/*
 * Sends the request encode_request() left in c->out. *sent is set (never
 * cleared) once a byte of it left. Never closes the connection: the
 * caller does.
 */
static int send_request(pc_client_t *c, ep_t *e, const pc_request_t *req, pc_response_t *resp,
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
static int await_reply(pc_client_t *c, ep_t *e, const pc_request_t *req, pc_response_t *resp,
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
            set_msg(c, "%s: malformed %s reply", e->label, pc_op_name(req->op));
            return rc;
        }
        if (rc != 0) {
            set_msg(c, "decoding reply: %s", pc_strerror(rc));
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
            return status_error(c, resp->status, resp->message);
        }
        if (resp->id != req->id || resp->op != req->op) {
            set_msg(c, "%s: reply %s #%llu does not match request %s #%llu", e->label,
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
static int exchange(pc_client_t *c, ep_t *e, pc_request_t *req, pc_response_t *resp,
                    int64_t deadline, bool *sent)
{
    int64_t t0 = now_us();
    int rc = encode_request(c, e, req, deadline);

    if (rc != 0)
        return rc;
    rc = send_request(c, e, req, resp, deadline, sent);
    if (rc == 0)
        rc = await_reply(c, e, req, resp, deadline);
    if (rc != 0) {
        conn_close(e);
        return rc;
    }
    pc_health_ok(&e->health, now_us() - t0);
    return 0;
}

/* HELLO: the first exchange on every connection. */
static int hello(pc_client_t *c, ep_t *e, int64_t deadline)
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
    rc = exchange(c, e, &req, &resp, deadline, &sent);
    int64_t back_at = wall_ms();
    if (rc == 0 && resp.status == PC_ST_OK && resp.now_ms != 0 && back_at >= sent_at) {
        /* the node read its clock somewhere within the round trip */
        e->has_clock = true;
        e->off_ms = (int64_t)resp.now_ms - (sent_at + (back_at - sent_at) / 2);
        e->unc_ms = (back_at - sent_at) / 2 + 1;
    }
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
        rc = status_error(c, resp.status, resp.message);
        conn_close(e);
        return rc;
    }
    /* A newer node answers in our version's format while reporting its
     * own (PROTOCOL.md section 10), so only an older one is a problem. */
    if (resp.proto_version < PC_PROTO_VERSION) {
        set_msg(c, "%s: node speaks protocol version %u, older than this client's %u", e->label,
                resp.proto_version, (unsigned)PC_PROTO_VERSION);
        conn_close(e);
        return PC_EPROTO;
    }
    return 0;
}

/* Failures that say "this node, now" rather than "this request": worth
 * trying another node for. An auth failure would fail on every node. */
static bool try_next_node(int rc)
{
    return rc == PC_ECONN || rc == PC_ETIMEDOUT || rc == PC_EBUSY || rc == PC_EPROTO ||
           rc == PC_ECLOSED;
}

/* Connect + HELLO, sharing one timeout. Nothing of a request is sent. */
static int ep_open(pc_client_t *c, ep_t *e)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    int rc = connect_node(c, e, deadline);

    if (rc == 0)
        rc = hello(c, e, deadline);
    if (rc != 0)
        conn_close(e);
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

static bool is_read_op(uint32_t op)
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
static int orphan_settle(pc_client_t *c, ep_t *e, int64_t deadline)
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
        conn_close(e);
        rc = 0;
    }
    memcpy(c->errmsg, saved, sizeof(saved));
    return rc;
}

/* Before a request goes on e's open connection: drops what its orphan
 * left, and closes a connection the node closed while it was idle. */
static void ep_check(pc_client_t *c, ep_t *e)
{
    if (e->fd >= 0 && e->orphan_id != 0)
        (void)orphan_settle(c, e, 0);
    /* An orphan still out may answer any moment: only a closed connection
     * (found by orphan_settle) is a reason to drop it then. */
    if (e->fd >= 0 && e->orphan_id == 0 && !conn_usable(e))
        conn_close(e);
}

/* Makes e ready to carry a request: checked, or opened. *reused says a
 * connection that was already open will carry it. */
static int ep_ready(pc_client_t *c, ep_t *e, bool *reused)
{
    ep_check(c, e);
    *reused = e->fd >= 0;
    return *reused ? 0 : ep_open(c, e);
}

/*
 * One request to one node: opens its connection if needed, replaces an
 * idle one the node closed, and sends a read once more on a fresh
 * connection if a reused one broke. 0 when a reply arrived (its status is
 * the caller's to judge); *sent says whether the node may have seen the
 * request.
 */
static int ep_call(pc_client_t *c, ep_t *e, pc_request_t *req, pc_response_t *resp, bool *sent)
{
    *sent = false;
    for (int attempt = 0;; attempt++) {
        bool reused;
        int rc = ep_ready(c, e, &reused);

        if (rc != 0)
            return rc;
        rc = exchange(c, e, req, resp, now_ms() + c->timeout_ms, sent);
        if (rc == PC_ECONN && reused && attempt == 0 && is_read_op(req->op))
            continue;
        return rc;
    }
}

/* ---- the ring: learning and refreshing it ------------------------------------- */

/*
 * A reply showed the answering node's ring. If it is not ours (and not
 * one we already found unusable), refresh from that node. A client that
 * has not tried to learn a ring yet (only PING or STATS so far) leaves
 * that to its first routed call.
 */
static void note_fp(pc_client_t *c, ep_t *e, uint64_t fp)
{
    if (!c->ring_aware || fp == 0 || fp == c->ring_fp || fp == c->unusable_fp ||
        (c->ring == NULL && !c->ring_none))
        return;
    c->counters.ring_fp_mismatches++;
    c->seen_fp = fp;
    c->ring_stale = true;
    c->stale_from = e;
}

static bool in_ring(uint32_t state)
{
    return state == PC_WIRE_ALIVE || state == PC_WIRE_SUSPECT;
}

/* The member's name as the ring needs it (NUL-terminated, 1..255 bytes,
 * no NUL inside), in buf. */
static bool member_name(const pc_cluster_member_t *m, char buf[PC_RING_MAX_NAME + 1])
{
    if (m->name.len == 0 || m->name.len > PC_RING_MAX_NAME ||
        memchr(m->name.ptr, '\0', m->name.len) != NULL)
        return false;
    memcpy(buf, m->name.ptr, m->name.len);
    buf[m->name.len] = '\0';
    return true;
}

/*
 * Builds the ring a CLUSTER answer describes: its alive and suspect
 * members with their weights, and its replica count. 0 with *out (which
 * may be an empty ring), PC_EPROTO (member data the ring refuses, with a
 * message) or PC_ENOMEM.
 */
static int ring_build(pc_client_t *c, const pc_response_t *resp, pc_ring_t **out)
{
    typedef char name_t[PC_RING_MAX_NAME + 1];
    pc_ring_member_t *rm = malloc(((size_t)resp->nmembers + 1) * sizeof(*rm));
    name_t *names = malloc(((size_t)resp->nmembers + 1) * sizeof(*names));
    size_t n = 0;
    int rc = 0;

    *out = NULL;
    if (rm == NULL || names == NULL) {
        rc = PC_ENOMEM;
        set_msg(c, "out of memory");
    }
    for (uint32_t i = 0; rc == 0 && i < resp->nmembers; i++) {
        const pc_cluster_member_t *m = &resp->members[i];

        if (!in_ring(m->state))
            continue;
        if (!member_name(m, names[n])) {
            set_msg(c, "member %u has a name the ring cannot hold", i);
            rc = PC_EPROTO;
            break;
        }
        rm[n].name = names[n];
        rm[n].weight = m->weight;
        n++;
    }
    if (rc == 0) {
        unsigned replicas = resp->replicas > PC_RING_MAX_REPLICAS ? 0 : resp->replicas;

        rc = pc_ring_new(rm, n, replicas, out);
        if (rc == PC_EINVAL) {
            set_msg(c, "the cluster's members do not form a ring (%zu members, %u replicas: a "
                       "duplicate name, a weight out of range or a bad replica count)",
                    n, resp->replicas);
            rc = PC_EPROTO;
        } else if (rc != 0) {
            set_msg(c, "building the ring: %s", pc_strerror(rc));
        }
    }
    free(rm);
    free(names);
    return rc;
}

static void ring_drop(pc_client_t *c)
{
    pc_ring_free(&c->ring);
    free(c->member_ep);
    c->member_ep = NULL;
    c->ring_fp = 0;
    c->prune_pending = true;
}

/* Routing by nothing until a reply shows a fingerprint other than fp. */
static void ring_give_up(pc_client_t *c, uint64_t fp)
{
    ring_drop(c);
    c->ring_none = true;
    c->unusable_fp = fp;
    c->ring_stale = false;
    c->ring_doubt = false;
}

/* 0.0.0.0 or ::, a listen address a node may advertise by mistake:
 * connecting to it reaches the client's own machine, not the node. */
static bool wildcard_host(const char *host)
{
    static const unsigned char zero[sizeof(struct in6_addr)];
    unsigned char a[sizeof(struct in6_addr)];

    if (inet_pton(AF_INET, host, a) == 1)
        return memcmp(a, zero, sizeof(struct in_addr)) == 0;
    if (inet_pton(AF_INET6, host, a) == 1)
        return memcmp(a, zero, sizeof(struct in6_addr)) == 0;
    return false;
}

/*
 * Maps each member of ring r to the endpoint of its advertised address.
 * 0 with *out (one per ring member), PC_EPROTO if an address cannot be
 * used by a client (message set), or PC_ENOMEM.
 */
static int ring_endpoints(pc_client_t *c, const pc_response_t *resp, const pc_ring_t *r,
                          ep_t ***out)
{
    size_t n = pc_ring_size(r);
    ep_t **map = calloc(n ? n : 1, sizeof(*map));
    char name[PC_RING_MAX_NAME + 1];

    *out = NULL;
    if (map == NULL)
        return PC_ENOMEM;
    for (uint32_t i = 0; i < resp->nmembers; i++) {
        const pc_cluster_member_t *m = &resp->members[i];
        char addr[PC_RING_MAX_NAME + 16], host[PC_RING_MAX_NAME + 1];
        int port;
        long idx;

        if (!in_ring(m->state) || !member_name(m, name))
            continue;
        idx = pc_ring_find(r, name);
        if (idx < 0)
            continue;
        if (m->addr.len >= sizeof(addr) || memchr(m->addr.ptr, '\0', m->addr.len) != NULL) {
            set_msg(c, "member '%s' has no usable address", name);
            free(map);
            return PC_EPROTO;
        }
        memcpy(addr, m->addr.ptr, m->addr.len);
        addr[m->addr.len] = '\0';
        if (pc_addr_parse(addr, host, sizeof(host), &port) != 0 || wildcard_host(host)) {
            set_msg(c, "member '%s' advertises '%s', which clients cannot connect to", name,
                    addr);
            free(map);
            return PC_EPROTO;
        }
        map[idx] = ep_get(c, host, port);
        if (map[idx] == NULL) {
            free(map);
            return PC_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (map[i] == NULL) { /* cannot happen: every ring member came from resp */
            free(map);
            set_msg(c, "ring member '%s' is missing from the answer", pc_ring_name(r, i));
            return PC_EPROTO;
        }
    }
    *out = map;
    return 0;
}

/*
 * Makes r (consumed) the client's ring, as described by the CLUSTER
 * answer resp. An answer the client cannot route by makes it seed-only
 * until the nodes' fingerprint changes. 0 (either way) or PC_ENOMEM.
 */
static int ring_adopt(pc_client_t *c, const pc_response_t *resp, pc_ring_t *r)
{
    ep_t **map = NULL;
    int rc = 0;

    if (pc_ring_size(r) == 0 ||
        (resp->fingerprint != 0 && pc_ring_fingerprint(r) != resp->fingerprint)) {
        /* Our ring would place keys differently from the node's (another
         * placement scheme?): routing by it would only add hops. */
        rc = PC_EPROTO;
    } else {
        rc = ring_endpoints(c, resp, r, &map);
    }
    if (rc == PC_ENOMEM) {
        pc_ring_free(&r);
        return rc;
    }
    if (rc != 0) {
        pc_ring_free(&r);
        ring_give_up(c, resp->fingerprint);
        return 0;
    }
    ring_drop(c);
    c->ring = r;
    c->member_ep = map;
    c->ring_fp = pc_ring_fingerprint(r);
    c->ring_none = false;
    c->unusable_fp = 0;
    c->ring_stale = false;
    c->ring_doubt = false;
    return 0;
}

/*
 * A CLUSTER answer with the fingerprint of the ring we have: the placement
 * is the same, so only the members' addresses are taken (a member may
 * come back at another address under the same name). 0 or PC_ENOMEM.
 */
static int ring_remap(pc_client_t *c, const pc_response_t *resp)
{
    ep_t **map = NULL;
    int rc = ring_endpoints(c, resp, c->ring, &map);

    if (rc == PC_ENOMEM)
        return rc;
    if (rc != 0) {
        ring_give_up(c, resp->fingerprint);
        return 0;
    }
    free(c->member_ep);
    c->member_ep = map;
    c->prune_pending = true;
    c->ring_stale = false;
    c->ring_doubt = false;
    return 0;
}

/*
 * The next node to ask for CLUSTER: the node whose reply showed another
 * ring, then members we hold a connection to (cheap, and just shown to
 * work), then the other members, then the seeds. None that failed in
 * this call, none twice in one refresh.
 */
static ep_t *refresh_source(pc_client_t *c, ep_t *prefer)
{
#define USABLE(e)                                                                        \
    ((e)->refresh_seq != c->refresh_seq && !failed(c, (e)) &&                             \
     pc_health_state(&(e)->health, now) != PC_HEALTH_OPEN)
    int64_t now = now_ms();
    size_t n = c->ring != NULL ? pc_ring_size(c->ring) : 0;

    if (prefer != NULL && USABLE(prefer))
        return prefer;
    for (size_t i = 0; i < n; i++) {
        if (c->member_ep[i]->fd >= 0 && USABLE(c->member_ep[i]))
            return c->member_ep[i];
    }
    for (size_t i = 0; i < n; i++) {
        if (USABLE(c->member_ep[i]))
            return c->member_ep[i];
    }
    for (size_t k = 0; k < c->nseeds; k++) {
        ep_t *e = c->eps[(c->cur + k) % c->nseeds];

        if (USABLE(e))
            return e;
    }
    return NULL;
#undef USABLE
}

/*
 * Fetches CLUSTER and adopts the answer. 0 when a node answered (with a
 * ring, or with an error that makes the client seed-only); else the error
 * of the last node tried, with every node's reason in the message.
 */
static int ring_refresh(pc_client_t *c)
{
    ep_t *prefer = c->stale_from;
    char all[ERRMSG_MAX] = "";
    int failures = 0, rc = PC_ECONN;
    ep_t *e;

    c->stale_from = NULL;
    c->refresh_seq++;
    c->last_refresh_ms = now_ms();
    while ((e = refresh_source(c, prefer)) != NULL) {
        pc_request_t req;
        pc_response_t resp;
        pc_ring_t *r = NULL;
        bool sent;

        e->refresh_seq = c->refresh_seq;
        memset(&req, 0, sizeof(req));
        req.op = PC_OP_CLUSTER;
        rc = ep_call(c, e, &req, &resp, &sent);
        if (rc == 0 && resp.status == PC_ST_OK) {
            c->counters.ring_refreshes++;
            if (c->ring != NULL && resp.fingerprint == c->ring_fp)
                return ring_remap(c, &resp);
            rc = ring_build(c, &resp, &r);
            if (rc == PC_EPROTO) {
                ring_give_up(c, resp.fingerprint);
                return 0;
            }
            return rc != 0 ? rc : ring_adopt(c, &resp, r);
        }
        if (rc == 0 && resp.status != PC_ST_BUSY) {
            /* An answer, but no ring: a node outside any cluster, or one
             * that predates CLUSTER (BAD_REQUEST). Seed-only it is. */
            ring_give_up(c, resp.ring_fp);
            return 0;
        }
        if (rc == 0)
            rc = status_error(c, resp.status, resp.message);
        if (rc == PC_ETOOBIG) {
            /* A member list over our frame limit (thousands of members,
             * or a small max_frame): no ring for us, but requests still
             * work through the seeds. */
            ring_give_up(c, c->seen_fp);
            return 0;
        }
        if (!try_next_node(rc))
            return rc;
        node_failed(c, e);
        add_reason(all, sizeof(all), c->errmsg);
        if (c->ring != NULL && ++failures >= REFRESH_MAX_FAILURES)
            break;
    }
    c->counters.ring_refresh_errors++;
    if (all[0] != '\0')
        set_msg(c, "%s", all);
    else
        set_msg(c, "no node left to ask for the cluster's members");
    return rc;
}

/*
 * Before routing: learns the ring if there is none yet, refreshes it if
 * it is stale. A failed refresh keeps what we had (a stale ring still
 * works, since nodes relay) and the message of the call so far; only a
 * client that never learned anything fails, with the refresh's error.
 */
static int ring_ensure(pc_client_t *c)
{
    char saved[ERRMSG_MAX];
    int rc;

    if (!c->ring_stale && (c->ring != NULL || c->ring_none) &&
        !(c->ring_doubt && now_ms() - c->last_refresh_ms >= REFRESH_HOLD_MS))
        return 0;
    memcpy(saved, c->errmsg, sizeof(saved));
    rc = ring_refresh(c);
    if (rc == 0 || rc == PC_ENOMEM)
        return rc;
    if (c->ring != NULL || c->ring_none) {
        memcpy(c->errmsg, saved, sizeof(saved));
        return 0;
    }
    return rc;
}

/*
 * The end of every call in ring-aware mode: a reply during the call
 * showed another ring, so refresh now, while the answering node is known
 * to be up. The call's own result and message stand whatever happens.
 */
static void end_call(pc_client_t *c)
{
    char saved[ERRMSG_MAX];

    if (!c->ring_aware || !c->ring_stale || c->stale_from == NULL)
        return;
    memcpy(saved, c->errmsg, sizeof(saved));
    (void)ring_refresh(c);
    memcpy(c->errmsg, saved, sizeof(saved));
}

/* ---- calls through the seeds ---------------------------------------------------- */

/*
 * Opens a connection to a seed, trying them in order from the last one
 * that worked (keeping an open one). Each gets the full timeout for
 * connect + HELLO. When all fail, the message lists each one's reason and
 * the code is the last one's.
 */
static int seed_open(pc_client_t *c)
{
    char all[ERRMSG_MAX] = "";
    int rc = PC_ECONN;

    for (size_t k = 0; k < c->nseeds; k++) {
        size_t idx = (c->cur + k) % c->nseeds;
        ep_t *e = c->eps[idx];

        ep_check(c, e);
        rc = e->fd >= 0 ? 0 : ep_open(c, e);
        if (rc == 0) {
            c->cur = idx;
            return 0;
        }
        if (try_next_node(rc))
            e->failed_call = c->call_seq;
        add_reason(all, sizeof(all), c->errmsg);
        if (!try_next_node(rc))
            break;
    }
    if (c->nseeds > 1)
        set_msg(c, "%s", all);
    return rc;
}

/*
 * One call through the seeds (seed-only mode, PING, STATS, CLUSTER):
 * makes sure a connection is open, exchanges req for *resp and maps a
 * non-OK reply status to its error. *via (may be NULL) receives the node
 * that answered. See the top of the file for when it sends a second time.
 */
static int seed_call(pc_client_t *c, pc_request_t *req, pc_response_t *resp, ep_t **via)
{
    for (int attempt = 0;; attempt++) {
        bool reused = false, sent = false;
        ep_t *e = c->eps[c->cur];
        int rc;

        ep_check(c, e);
        if (e->fd >= 0)
            reused = true;
        else if ((rc = seed_open(c)) != 0)
            return rc;
        e = c->eps[c->cur];
        rc = exchange(c, e, req, resp, now_ms() + c->timeout_ms, &sent);
        if (rc == PC_ECONN && reused && attempt == 0 && is_read_op(req->op))
            continue;
        if (rc != 0)
            return rc;
        note_fp(c, e, resp->ring_fp);
        if (via != NULL)
            *via = e;
        if (resp->status != PC_ST_OK)
            return status_error(c, resp->status, resp->message);
        /* Nodes skipped on the way left their reasons here. */
        c->errmsg[0] = '\0';
        return 0;
    }
}

/* ---- routed calls ------------------------------------------------------------- */

/* The placements of a key on the client's ring, owner first. */
static size_t placements(const pc_client_t *c, pc_bytes_t key, uint32_t *out)
{
    return pc_ring_slot_members(c->ring, pc_ring_slot(key.ptr, key.len), out,
                                PC_RING_MAX_REPLICAS);
}

/*
 * A probe of a node whose breaker is open (pc_health.h): a PING that is
 * not waited for (its answer, read before e's next request, closes the
 * breaker), or, without a connection, a connect + HELLO within the stall
 * limit, whose success closes it at once. Nothing of the call's is sent.
 */
static void probe(pc_client_t *c, ep_t *e, int64_t now, int64_t stall)
{
    char saved[ERRMSG_MAX];
    pc_request_t req;
    pc_response_t resp;
    bool sent = false;
    int rc;

    c->counters.probes++;
    pc_health_probed(&e->health, now);
    if (e->fd >= 0 && e->orphan_id != 0) {
        /* The last one is still unanswered: the node still is not. */
        (void)pc_health_fail(&e->health, now);
        return;
    }
    memcpy(saved, c->errmsg, sizeof(saved));
    if (e->fd >= 0) {
        memset(&req, 0, sizeof(req));
        req.op = PC_OP_PING;
        rc = encode_request(c, e, &req, now + stall);
        if (rc == 0)
            rc = send_request(c, e, &req, &resp, now + stall, &sent);
        if (rc == 0) {
            e->orphan_id = req.id;
            e->orphan_at_ms = now;
        } else {
            conn_close(e);
            (void)pc_health_fail(&e->health, now_ms());
        }
    } else {
        rc = connect_node(c, e, now + stall);
        if (rc == 0)
            rc = hello(c, e, now + stall);
        if (rc != 0) {
            conn_close(e);
            (void)pc_health_fail(&e->health, now_ms());
        }
    }
    memcpy(c->errmsg, saved, sizeof(saved));
}

/*
 * Whether e is to be left alone now: its breaker is open, or a request it
 * was sent has gone unanswered for the stall limit (which opens the
 * breaker). With `wait` (a write, which would queue behind it), a younger
 * unanswered request is first waited for, up to that limit. When a probe
 * is due, sends it, and says no only if it already closed the breaker.
 */
static bool unresponsive(pc_client_t *c, ep_t *e, bool wait)
{
    int64_t stall = pc_health_stall_ms(&e->health, c->timeout_ms);
    int64_t now;

    if (e->fd >= 0 && e->orphan_id != 0)
        (void)orphan_settle(c, e, wait ? e->orphan_at_ms + stall : 0);
    now = now_ms();
    if (e->fd >= 0 && e->orphan_id != 0 && now - e->orphan_at_ms >= stall &&
        pc_health_state(&e->health, now) == PC_HEALTH_CLOSED) {
        (void)pc_health_fail(&e->health, now);
        c->counters.breaker_opens++;
        c->ring_doubt = c->ring_aware;
    }
    switch (pc_health_state(&e->health, now)) {
    case PC_HEALTH_CLOSED:
        return false;
    case PC_HEALTH_OPEN:
        return true;
    default:
        probe(c, e, now, stall);
        return pc_health_state(&e->health, now_ms()) != PC_HEALTH_CLOSED;
    }
}

/* A read is better sent elsewhere: e stopped answering, or has not yet
 * answered one we gave up on. */
static bool avoid(pc_client_t *c, ep_t *e)
{
    return unresponsive(c, e, false) || e->orphan_id != 0;
}

/*
 * A GET to e, the key's owner, that also goes to `alt`, a replica (with
 * `here` set, so that it answers itself instead of relaying to the
 * owner), if e has not answered within its hedge delay. The first answer
 * wins; the other request becomes its node's orphan, whose reply is
 * dropped when it comes. 0 with *resp from *who; else the error, with
 * every node that failed marked so.
 */
static int hedged_get(pc_client_t *c, ep_t *e, ep_t *alt, pc_request_t *req,
                      pc_response_t *resp, ep_t **who)
{
    int64_t t0 = now_us(), t0_ms = now_ms(), t2 = 0, deadline = t0_ms + c->timeout_ms;
    pc_request_t r2;
    bool reused = false, sent = false, sent2 = false;
    int rc = ep_ready(c, e, &reused), last = 0;

    *who = e;
    if (rc == 0)
        rc = encode_request(c, e, req, deadline);
    if (rc == 0)
        rc = send_request(c, e, req, resp, deadline, &sent);
    if (rc == 0)
        rc = await_reply(c, e, req, resp, t0_ms + pc_health_hedge_ms(&e->health, c->timeout_ms));
    if (rc == 0) {
        pc_health_ok(&e->health, now_us() - t0);
        return 0;
    }
    if (rc != PC_ETIMEDOUT) {
        if (e->fd >= 0)
            conn_close(e);
        if (rc == PC_ECONN && reused) /* closed while idle: once more, as ep_call does */
            rc = ep_call(c, e, req, resp, &sent);
        if (rc != 0 && try_next_node(rc))
            node_failed(c, e);
        return rc;
    }

    /* No answer yet: ask the replica too. */
    c->counters.hedged_reads++;
    r2 = *req;
    r2.here = 1;
    rc = ep_ready(c, alt, &reused);
    t2 = now_us();
    if (rc == 0)
        rc = encode_request(c, alt, &r2, deadline);
    if (rc == 0)
        rc = send_request(c, alt, &r2, resp, deadline, &sent2);
    if (rc != 0) {
        if (alt->fd >= 0)
            conn_close(alt);
        if (try_next_node(rc))
            node_failed(c, alt);
        alt = NULL;
    }
    for (;;) {
        struct pollfd pfd[2];
        ep_t *on[2];
        nfds_t n = 0;
        int64_t left = deadline - now_ms();

        for (int i = 0; i < 2; i++) {
            ep_t *x = i == 0 ? e : alt;

            if (x != NULL) {
                on[n] = x;
                pfd[n++] = (struct pollfd){.fd = x->fd, .events = POLLIN};
            }
        }
        if (n == 0)
            return last;
        if (left <= 0)
            break;
        if (poll(pfd, n, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno != EINTR) {
            set_msg(c, "poll: %s", strerror(errno));
            return PC_EIO; /* both connections are left as they are */
        }
        for (nfds_t i = 0; i < n; i++) {
            bool first = on[i] == e;
            ep_t *x = on[i], *other = first ? alt : e;

            if (pfd[i].revents == 0)
                continue;
            rc = await_reply(c, x, first ? req : &r2, resp, 0);
            if (rc == PC_ETIMEDOUT)
                continue; /* not a whole frame yet */
            if (rc == 0) {
                if (other != NULL && other->orphan_id != 0) {
                    /* It owes an older answer too, and one orphan is all
                     * a connection keeps track of: start it afresh. */
                    conn_close(other);
                } else if (other != NULL) {
                    other->orphan_id = first ? r2.id : req->id;
                    other->orphan_at_ms = first ? t2 / 1000 : t0_ms;
                }
                if (!first)
                    c->counters.hedge_wins++;
                pc_health_ok(&x->health, now_us() - (first ? t0 : t2));
                *who = x;
                return 0;
            }
            conn_close(x);
            if (try_next_node(rc))
                node_failed(c, x);
            last = rc;
            *who = x;
            if (first)
                e = NULL;
            else
                alt = NULL;
        }
    }
    /* Neither answered in time: as after any timeout, their connections
     * go (a late reply must never be taken for a later request's). */
    set_msg(c, "%s: no reply within %d ms", (e != NULL ? e : alt)->label, c->timeout_ms);
    if (e != NULL && alt != NULL) {
        size_t used = strlen(c->errmsg);

        snprintf(c->errmsg + used, sizeof(c->errmsg) - used, ", nor from %s asked after %lld ms",
                 alt->label, (long long)(t2 / 1000 - t0_ms));
    }
    for (int i = 0; i < 2; i++) {
        ep_t *x = i == 0 ? e : alt;

        if (x != NULL) {
            conn_close(x);
            node_failed(c, x);
        }
    }
    return PC_ETIMEDOUT;
}

/*
 * One single-key request in ring-aware mode (see pc_client.h for the
 * rules). Maps a non-OK status to its error like seed_call().
 */
static int routed_call(pc_client_t *c, pc_request_t *req, pc_response_t *resp)
{
    bool read = is_read_op(req->op), first = true;
    char lastmsg[ERRMSG_MAX] = "";
    int last = 0, rounds = 0;

    for (;;) {
        uint32_t pl[PC_RING_MAX_REPLICAS];
        size_t np, k = 0;
        bool sent = false;
        ep_t *e, *alt = NULL;
        int rc = ring_ensure(c);

        if (rc != 0) {
            if (last == 0)
                return rc;
            memcpy(c->errmsg, lastmsg, sizeof(lastmsg));
            return last;
        }
        if (c->ring == NULL) {
            if (!first)
                c->counters.retries++;
            return seed_call(c, req, resp, NULL);
        }
        np = placements(c, req->key, pl);
        while (k < np && failed(c, c->member_ep[pl[k]]))
            k++;
        /* A write goes to the owner or nowhere: a replica would only
         * relay it to the same owner. */
        if (k == np || (!read && k > 0)) {
            if (last == 0) { /* the node failed in this call's refresh */
                set_msg(c, "%s: the key's owner cannot be reached",
                        c->member_ep[pl[0]]->label);
                return PC_ECONN;
            }
            memcpy(c->errmsg, lastmsg, sizeof(lastmsg));
            return last;
        }
        e = c->member_ep[pl[k]];
        if (read) {
            /* Past a node that stopped answering to the first that has
             * not; if none has, the first one not failed in this call. */
            size_t j = k;

            while (j < np && (failed(c, c->member_ep[pl[j]]) || avoid(c, c->member_ep[pl[j]])))
                j++;
            if (j < np && j != k) {
                c->counters.unresponsive_skips++;
                k = j;
                e = c->member_ep[pl[k]];
            }
            /* A GET to the owner goes to the next placement that is not
             * unresponsive too if the owner is slow to answer
             * (hedged_get); one still owing an answer will do. */
            for (j = k + 1; k == 0 && req->op == PC_OP_GET && alt == NULL && j < np; j++) {
                if (!failed(c, c->member_ep[pl[j]]) &&
                    !unresponsive(c, c->member_ep[pl[j]], false))
                    alt = c->member_ep[pl[j]];
            }
        } else if (unresponsive(c, e, true)) {
            /* Known not to answer: the write fails now, unsent, rather
             * than after the whole timeout with an unknown outcome. Once
             * the cluster declares the node dead, the refreshed ring
             * names another owner, and the write goes there. */
            c->counters.fast_failures++;
            e->failed_call = c->call_seq;
            c->ring_doubt = true;
            first = false; /* going elsewhere after this counts as a retry */
            last = PC_ECONN;
            set_msg(c, "%s: the key's owner has not answered for %lld ms or more; the write was "
                       "not sent",
                    e->label, (long long)pc_health_stall_ms(&e->health, c->timeout_ms));
            memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
            continue;
        }
        /* A read not sent to the owner is answered by the node it reaches,
         * not relayed to an owner that is failing (PROTOCOL.md §5.3). */
        req->here = k > 0 && req->op == PC_OP_GET;
        if (k == 0)
            c->counters.owner_requests++;
        else
            c->counters.replica_fallbacks++;
        if (!first)
            c->counters.retries++;
        first = false;

        if (alt != NULL) {
            rc = hedged_get(c, e, alt, req, resp, &e);
        } else {
            rc = ep_call(c, e, req, resp, &sent);
            if (rc != 0 && try_next_node(rc))
                node_failed(c, e);
        }
        if (rc == 0) {
            note_fp(c, e, resp->ring_fp);
            if (resp->status == PC_ST_RETRY) {
                c->counters.retry_answers++;
                if (rounds < RETRY_ROUNDS) {
                    sleep_ms(retry_pause_ms[rounds++]);
                    c->ring_stale = true;
                    c->stale_from = e;
                    continue;
                }
            }
            if (resp->status != PC_ST_OK)
                return status_error(c, resp->status, resp->message);
            c->errmsg[0] = '\0';
            return 0;
        }
        if (!try_next_node(rc))
            return rc;
        last = rc;
        memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
        if (!read && sent)
            return rc; /* the write may have been applied */
    }
}

/* A single-key call in either mode. */
static int key_call(pc_client_t *c, pc_request_t *req, pc_response_t *resp)
{
    int rc = c->ring_aware ? routed_call(c, req, resp) : seed_call(c, req, resp, NULL);

    end_call(c);
    return rc;
}

/* ---- argument checks and copies ---------------------------------------------- */

static int check_key(pc_client_t *c, const void *key, size_t klen)
{
    if (key == NULL || klen == 0) {
        set_msg(c, "empty key");
        return PC_EINVAL;
    }
    if (klen > UINT32_MAX) {
        set_msg(c, "key of %zu bytes is over the protocol's 4 GiB limit", klen);
        return PC_ETOOBIG;
    }
    return 0;
}

static pc_bytes_t bytes(const void *p, size_t len)
{
    pc_bytes_t b = {.ptr = p, .len = (uint32_t)len};

    return b;
}

static int copy_value(pc_value_t *dst, const pc_entry_t *e)
{
    dst->data = malloc((size_t)e->value.len + 1);
    if (dst->data == NULL)
        return PC_ENOMEM;
    if (e->value.len > 0)
        memcpy(dst->data, e->value.ptr, e->value.len);
    dst->data[e->value.len] = '\0';
    dst->len = e->value.len;
    dst->flags = e->flags;
    dst->version = e->version;
    dst->ttl_ms = e->ttl_ms;
    return 0;
}

/* A copy of wire text with control bytes (NUL included) replaced, for
 * terminals and logs. NULL: no memory. */
static char *printable_copy(pc_bytes_t b)
{
    char *s = malloc((size_t)b.len + 1);

    if (s == NULL)
        return NULL;
    for (uint32_t i = 0; i < b.len; i++)
        s[i] = b.ptr[i] < 0x20 || b.ptr[i] == 0x7f ? '?' : (char)b.ptr[i];
    s[b.len] = '\0';
    return s;
}

/* ---- node list -------------------------------------------------------------- */

static int add_seed(void *arg, const char *host, int port)
{
    pc_client_t *c = arg;
    ep_t *e = ep_new(c, host, port);

    if (e == NULL)
        return PC_ENOMEM;
    e->seed = true;
    if (ep_append(c, e) != 0) {
        ep_free(e);
        return PC_ENOMEM;
    }
    c->nseeds++;
    return 0;
}

/* ---- public API -------------------------------------------------------------- */

int pc_client_new(const pc_client_options_t *opt, pc_client_t **out)
{
    pc_client_t *c;
    int rc;

    if (out == NULL)
        return PC_EINVAL;
    *out = NULL;
    if (opt == NULL || opt->nodes == NULL || opt->timeout_ms < 0)
        return PC_EINVAL;
    if (opt->token != NULL && strlen(opt->token) > UINT32_MAX)
        return PC_EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PC_ENOMEM;
    c->next_id = 1;
    c->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->ring_aware = opt->no_ring == 0;
    /* The readers must take any reply a node sends; the largest is a GET
     * or MGET answer filling one max frame of the node's. */
    pc_proto_limits_t lim;
    pc_proto_limits_default(&lim);
    if (opt->max_frame != 0)
        lim.max_frame = opt->max_frame;
    lim.max_mget_keys = UINT32_MAX; /* we choose how many we ask for */
    c->max_frame = lim.max_frame;
    pc_buf_init(&c->out, 0);
    rc = pc_addr_parse_list(opt->nodes, add_seed, c);
    if (rc == 0 && c->nseeds == 0)
        rc = PC_EINVAL;
    if (rc == 0 && opt->token != NULL && opt->token[0] != '\0') {
        c->token = strdup(opt->token);
        c->token_len = strlen(opt->token);
        if (c->token == NULL)
            rc = PC_ENOMEM;
    }
    if (rc == 0)
        rc = pc_proto_decoder_new(&lim, &c->dec);
    if (rc != 0) {
        pc_client_free(&c);
        return rc == PC_ENOMEM ? rc : PC_EINVAL;
    }
    *out = c;
    return 0;
}

void pc_client_free(pc_client_t **cp)
{
    pc_client_t *c;

    if (cp == NULL || *cp == NULL)
        return;
    c = *cp;
    ring_drop(c);
    for (size_t i = 0; i < c->neps; i++)
        ep_free(c->eps[i]);
    free(c->eps);
    pc_buf_free(&c->out);
    pc_proto_decoder_free(&c->dec);
    free(c->token);
    free(c);
    *cp = NULL;
}

const char *pc_client_errmsg(const pc_client_t *c)
{
    return c != NULL ? c->errmsg : "no client";
}

int pc_client_ping(pc_client_t *c)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL)
        return PC_EINVAL;
    begin_call(c);
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_PING;
    rc = seed_call(c, &req, &resp, NULL);
    end_call(c);
    return rc;
}

/* The start every single-key call shares: a zeroed request for op with
 * its key, after the key was checked. 0 or the check's error. */
static int key_request(pc_client_t *c, uint32_t op, const void *key, size_t klen,
                       pc_request_t *req)
{
    int rc;

    begin_call(c);
    rc = check_key(c, key, klen);
    if (rc != 0)
        return rc;
    memset(req, 0, sizeof(*req));
    req->op = op;
    req->key = bytes(key, klen);
    return 0;
}

int pc_client_get(pc_client_t *c, const void *key, size_t klen, pc_value_t *out)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL || out == NULL)
        return PC_EINVAL;
    memset(out, 0, sizeof(*out));
    rc = key_request(c, PC_OP_GET, key, klen, &req);
    if (rc != 0)
        return rc;
    rc = c->ring_aware ? routed_call(c, &req, &resp) : seed_call(c, &req, &resp, NULL);
    /* Copied before end_call(), which may exchange again. */
    if (rc == 0)
        rc = copy_value(out, &resp.entry);
    if (rc == PC_ENOMEM)
        set_msg(c, "out of memory copying the value");
    end_call(c);
    return rc;
}

int pc_client_set(pc_client_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                  const pc_set_options_t *opt, uint64_t *version_out)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL)
        return PC_EINVAL;
    rc = key_request(c, PC_OP_SET, key, klen, &req);
    if (rc != 0)
        return rc;
    if (val == NULL && vlen > 0) {
        set_msg(c, "NULL value with a length");
        return PC_EINVAL;
    }
    if (vlen > UINT32_MAX) {
        set_msg(c, "value of %zu bytes is over the protocol's 4 GiB limit", vlen);
        return PC_ETOOBIG;
    }
    if (opt != NULL && (opt->cond < PC_COND_NONE || opt->cond > PC_COND_XX)) {
        set_msg(c, "unknown SET condition %d", opt->cond);
        return PC_EINVAL;
    }
    req.value = bytes(vlen > 0 ? val : "", vlen);
    if (opt != NULL) {
        req.ttl_ms = opt->ttl_ms;
        req.flags = opt->flags;
        req.cond = (uint32_t)opt->cond;
        req.cas = opt->cas;
    }
    rc = c->ring_aware ? routed_call(c, &req, &resp) : seed_call(c, &req, &resp, NULL);
    if (rc == 0 && version_out != NULL)
        *version_out = resp.version;
    end_call(c);
    return rc;
}

int pc_client_del(pc_client_t *c, const void *key, size_t klen)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL)
        return PC_EINVAL;
    rc = key_request(c, PC_OP_DEL, key, klen, &req);
    return rc != 0 ? rc : key_call(c, &req, &resp);
}

int pc_client_touch(pc_client_t *c, const void *key, size_t klen, uint64_t ttl_ms)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL)
        return PC_EINVAL;
    rc = key_request(c, PC_OP_TOUCH, key, klen, &req);
    if (rc != 0)
        return rc;
    req.ttl_ms = ttl_ms;
    return key_call(c, &req, &resp);
}

/* ---- MGET ------------------------------------------------------------------- */

/* Per-key state of a routed MGET. */
enum {
    K_DONE = 1 << 0,  /* items[i] holds the answer or the key's error */
    K_RETRY = 1 << 1, /* answered RETRY in this round */
    K_SENT = 1 << 2,  /* sent at least once: sending again is a retry */
};

typedef struct mget {
    size_t n;
    const pc_bytes_t *keys;
    pc_mget_item_t *items;
    uint8_t *st;          /* K_* per key */
    uint32_t *target;     /* ring member per pending key, this round */
    bool *owner;          /* target is the key's owner */
    size_t *idx;          /* keys of the group being sent */
    pc_bytes_t *group;    /* their slices */
} mget_t;

static int item_status(uint32_t status)
{
    int rc = pc_status_to_err(status);

    return rc != 0 ? rc : PC_EPROTO;
}

/*
 * Sends one MGET of the keys m->idx[0..cnt) to e (NULL: through the
 * seeds) and files the answers. Keys answered RETRY get K_RETRY and stay
 * pending. 0 when the node answered the MGET (*retry: some keys were
 * RETRY); PC_ERETRY when it answered RETRY for the whole request (all
 * keys K_RETRY, *via set); else the error, which the caller judges with
 * try_next_node().
 */
static int mget_send(pc_client_t *c, mget_t *m, ep_t *e, size_t cnt, bool *retry, ep_t **via)
{
    pc_request_t req;
    pc_response_t resp;
    bool sent;
    int rc;

    *retry = false;
    for (size_t j = 0; j < cnt; j++) {
        m->group[j] = m->keys[m->idx[j]];
        m->st[m->idx[j]] |= K_SENT;
    }
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_MGET;
    req.nkeys = (uint32_t)cnt;
    req.keys = m->group;
    if (e == NULL) {
        rc = seed_call(c, &req, &resp, via);
        if (rc != 0 && rc != PC_ERETRY)
            return rc;
        e = *via; /* RETRY is filed below */
    } else {
        *via = e;
        rc = ep_call(c, e, &req, &resp, &sent);
        if (rc != 0)
            return rc;
        note_fp(c, e, resp.ring_fp);
    }
    if (resp.status == PC_ST_RETRY) {
        c->counters.retry_answers++;
        for (size_t j = 0; j < cnt; j++)
            m->st[m->idx[j]] |= K_RETRY;
        return status_error(c, resp.status, resp.message);
    }
    if (resp.status != PC_ST_OK)
        return status_error(c, resp.status, resp.message);
    if (resp.nentries != cnt) {
        set_msg(c, "%s: MGET of %zu keys answered with %u entries", e->label, cnt,
                resp.nentries);
        conn_close(e);
        return PC_EPROTO;
    }
    for (size_t j = 0; j < cnt; j++) {
        const pc_entry_t *en = &resp.entries[j];
        size_t i = m->idx[j];

        if (en->status == PC_ST_RETRY) {
            m->st[i] |= K_RETRY;
            *retry = true;
            continue;
        }
        m->st[i] |= K_DONE;
        if (en->status != PC_ST_OK) {
            m->items[i].status = item_status(en->status);
        } else if (copy_value(&m->items[i].value, en) != 0) {
            set_msg(c, "out of memory copying the values");
            return PC_ENOMEM;
        }
    }
    if (*retry)
        c->counters.retry_answers++;
    return 0;
}

/*
 * Picks this round's node for every pending key: its first placement
 * that has not failed in this call. A key with none left is done, with
 * error `last`.
 */
static void mget_assign(pc_client_t *c, mget_t *m, int last)
{
    for (size_t i = 0; i < m->n; i++) {
        uint32_t pl[PC_RING_MAX_REPLICAS];
        size_t np, k = 0;

        m->target[i] = UINT32_MAX;
        if (m->st[i] & K_DONE)
            continue;
        np = placements(c, m->keys[i], pl);
        while (k < np && failed(c, c->member_ep[pl[k]]))
            k++;
        if (k == np) {
            m->st[i] |= K_DONE;
            m->items[i].status = last != 0 ? last : PC_ECONN;
            continue;
        }
        m->target[i] = pl[k];
        m->owner[i] = k == 0;
    }
}

/*
 * The rounds of a ring-aware MGET (pc_client.h has the rules). Each round
 * sends every pending key once, one MGET per node; a round ends with
 * keys done, nodes marked failed, or RETRY rounds used up, so the loop
 * ends. 0, or the error that fails the whole call.
 */
static int mget_routed(pc_client_t *c, mget_t *m)
{
    char lastmsg[ERRMSG_MAX] = "", retrymsg[ERRMSG_MAX] = "";
    int last = 0, rounds = 0; /* last: the last node failure */
    bool answered = false;

    for (;;) {
        bool retry = false, pending = false;
        ep_t *retry_from = NULL;
        int rc;

        for (size_t i = 0; i < m->n && !pending; i++)
            pending = !(m->st[i] & K_DONE);
        if (!pending)
            break;
        rc = ring_ensure(c);
        if (rc != 0) {
            if (last == 0) {
                last = rc;
                memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
            }
            break;
        }
        if (c->ring == NULL) {
            /* Seed-only: every pending key in one MGET, as before rings. */
            size_t cnt = 0;
            bool resend = false;

            for (size_t i = 0; i < m->n; i++) {
                if (!(m->st[i] & K_DONE)) {
                    resend = resend || (m->st[i] & K_SENT);
                    m->idx[cnt++] = i;
                }
            }
            if (resend)
                c->counters.retries++;
            rc = mget_send(c, m, NULL, cnt, &retry, &retry_from);
            if (rc == PC_ERETRY) {
                retry = true;
                memcpy(retrymsg, c->errmsg, sizeof(retrymsg));
            } else if (rc != 0) {
                if (!try_next_node(rc))
                    return rc;
                last = rc;
                memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
                break;
            } else {
                answered = true;
            }
        } else {
            mget_assign(c, m, last);
            for (size_t i = 0; i < m->n; i++) {
                uint32_t t = m->target[i];
                size_t cnt = 0;
                bool resend = false, fallback = false;
                bool group_retry;
                ep_t *e, *via;

                if (t == UINT32_MAX)
                    continue;
                for (size_t j = i; j < m->n; j++) {
                    if (m->target[j] == t) {
                        resend = resend || (m->st[j] & K_SENT);
                        fallback = fallback || !m->owner[j];
                        m->idx[cnt++] = j;
                        m->target[j] = UINT32_MAX;
                    }
                }
                e = c->member_ep[t];
                if (fallback)
                    c->counters.replica_fallbacks++;
                else
                    c->counters.owner_requests++;
                if (resend)
                    c->counters.retries++;
                rc = mget_send(c, m, e, cnt, &group_retry, &via);
                if (rc == 0 || rc == PC_ERETRY) {
                    if (rc == 0)
                        answered = true;
                    else
                        memcpy(retrymsg, c->errmsg, sizeof(retrymsg));
                    if (group_retry || rc == PC_ERETRY) {
                        retry = true;
                        retry_from = via;
                    }
                    continue;
                }
                if (!try_next_node(rc))
                    return rc;
                node_failed(c, e);
                last = rc;
                memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
            }
        }
        if (retry) {
            bool give_up = rounds == RETRY_ROUNDS;

            for (size_t i = 0; i < m->n; i++) {
                if (!(m->st[i] & K_RETRY))
                    continue;
                m->st[i] &= (uint8_t)~K_RETRY;
                if (give_up) {
                    m->st[i] |= K_DONE;
                    m->items[i].status = PC_ERETRY;
                }
            }
            if (!give_up) {
                sleep_ms(retry_pause_ms[rounds++]);
                c->ring_stale = true;
                c->stale_from = retry_from;
            }
        }
    }
    /* Keys still pending (the ring could not be refreshed) share the
     * last failure. */
    for (size_t i = 0; i < m->n; i++) {
        if (!(m->st[i] & K_DONE))
            m->items[i].status = last != 0 ? last : PC_ECONN;
    }
    if (!answered && last == 0 && retrymsg[0] != '\0') {
        /* nothing but RETRY, to the end */
        memcpy(c->errmsg, retrymsg, sizeof(retrymsg));
        return PC_ERETRY;
    }
    if (!answered) {
        memcpy(c->errmsg, lastmsg, sizeof(lastmsg));
        return last != 0 ? last : PC_ECONN;
    }
    c->errmsg[0] = '\0';
    return 0;
}

/* Seed-only MGET: all keys in one request, as before rings. With no
 * ring to refresh, RETRY is the answer: for the whole call if the node
 * said it of the request, else for the keys it said it of. */
static int mget_seeds(pc_client_t *c, mget_t *m)
{
    bool retry;
    ep_t *via;
    int rc;

    for (size_t i = 0; i < m->n; i++)
        m->idx[i] = i;
    rc = mget_send(c, m, NULL, m->n, &retry, &via);
    if (rc != 0)
        return rc;
    for (size_t i = 0; retry && i < m->n; i++) {
        if (m->st[i] & K_RETRY)
            m->items[i].status = PC_ERETRY;
    }
    c->errmsg[0] = '\0';
    return 0;
}

int pc_client_mget(pc_client_t *c, size_t n, const void *const *keys, const size_t *klens,
                   pc_mget_item_t **out)
{
    mget_t m;
    pc_bytes_t *slices = NULL;
    int rc = 0;

    if (c == NULL || out == NULL || (n > 0 && (keys == NULL || klens == NULL)))
        return PC_EINVAL;
    *out = NULL;
    begin_call(c);
    if (n == 0)
        return 0; /* nothing to ask; pc_mget_free(NULL, 0) is fine */
    if (n > UINT32_MAX) {
        set_msg(c, "%zu keys is over the protocol's limit", n);
        return PC_ETOOBIG;
    }
    memset(&m, 0, sizeof(m));
    m.n = n;
    slices = malloc(n * sizeof(*slices));
    m.group = malloc(n * sizeof(*m.group));
    m.items = calloc(n, sizeof(*m.items));
    m.st = calloc(n, sizeof(*m.st));
    m.target = malloc(n * sizeof(*m.target));
    m.owner = malloc(n * sizeof(*m.owner));
    m.idx = malloc(n * sizeof(*m.idx));
    if (slices == NULL || m.group == NULL || m.items == NULL || m.st == NULL ||
        m.target == NULL || m.owner == NULL || m.idx == NULL) {
        set_msg(c, "out of memory");
        rc = PC_ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = check_key(c, keys[i], klens[i]);
        if (rc != 0)
            set_msg(c, "key %zu: %s", i, rc == PC_EINVAL ? "empty" : "over the 4 GiB limit");
        slices[i] = bytes(keys[i], klens[i]);
    }
    m.keys = slices;
    if (rc == 0) {
        rc = c->ring_aware ? mget_routed(c, &m) : mget_seeds(c, &m);
        end_call(c);
    }
    free(slices);
    free(m.group);
    free(m.st);
    free(m.target);
    free(m.owner);
    free(m.idx);
    if (rc != 0) {
        pc_mget_free(m.items, m.items != NULL ? n : 0);
        return rc;
    }
    *out = m.items;
    return 0;
}

int pc_client_stats(pc_client_t *c, pc_stat_entry_t **out, size_t *n)
{
    pc_request_t req;
    pc_response_t resp;
    pc_stat_entry_t *stats;
    int rc;

    if (c == NULL || out == NULL || n == NULL)
        return PC_EINVAL;
    *out = NULL;
    *n = 0;
    begin_call(c);
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_STATS;
    rc = seed_call(c, &req, &resp, NULL);
    if (rc != 0) {
        end_call(c);
        return rc;
    }
    /* One extra element so an empty answer still allocates (and a NULL
     * *out always means failure). */
    stats = calloc((size_t)resp.nstats + 1, sizeof(*stats));
    if (stats == NULL) {
        set_msg(c, "out of memory");
        return PC_ENOMEM;
    }
    for (uint32_t i = 0; i < resp.nstats; i++) {
        const pc_stat_t *s = &resp.stats[i];

        stats[i].name = malloc((size_t)s->name.len + 1);
        if (stats[i].name == NULL) {
            pc_stats_free(stats, i);
            set_msg(c, "out of memory");
            return PC_ENOMEM;
        }
        if (s->name.len > 0)
            memcpy(stats[i].name, s->name.ptr, s->name.len);
        stats[i].name[s->name.len] = '\0';
        stats[i].value = s->value;
    }
    *out = stats;
    *n = resp.nstats;
    end_call(c);
    return 0;
}

/* ---- the cluster ------------------------------------------------------------- */

static int cmp_member(const void *a, const void *b)
{
    return strcmp(((const pc_client_member_t *)a)->name, ((const pc_client_member_t *)b)->name);
}

/* Fills info's members from the answer, with each one's share of r. */
static int cluster_members(const pc_response_t *resp, const pc_ring_t *r,
                           pc_cluster_info_t *info)
{
    info->members = calloc((size_t)resp->nmembers + 1, sizeof(*info->members));
    if (info->members == NULL)
        return PC_ENOMEM;
    for (uint32_t i = 0; i < resp->nmembers; i++) {
        const pc_cluster_member_t *m = &resp->members[i];
        pc_client_member_t *o = &info->members[i];
        char name[PC_RING_MAX_NAME + 1];
        long idx = -1;

        o->name = printable_copy(m->name);
        o->addr = printable_copy(m->addr);
        info->nmembers = (size_t)i + 1;
        if (o->name == NULL || o->addr == NULL)
            return PC_ENOMEM;
        o->state = (int)(m->state > INT_MAX ? INT_MAX : m->state);
        o->incarnation = m->incarnation;
        o->weight = m->weight;
        if (in_ring(m->state) && member_name(m, name))
            idx = pc_ring_find(r, name);
        if (idx >= 0) {
            o->owned_slots = pc_ring_owned_slots(r, (size_t)idx);
            o->share = (double)o->owned_slots / (double)PC_RING_SLOTS;
        }
    }
    qsort(info->members, info->nmembers, sizeof(*info->members), cmp_member);
    return 0;
}

int pc_client_cluster(pc_client_t *c, pc_cluster_info_t **out)
{
    pc_request_t req;
    pc_response_t resp;
    pc_cluster_info_t *info;
    pc_ring_t *r = NULL;
    ep_t *via = NULL;
    int rc;

    if (c == NULL || out == NULL)
        return PC_EINVAL;
    *out = NULL;
    begin_call(c);
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_CLUSTER;
    rc = seed_call(c, &req, &resp, &via);
    if (rc != 0) {
        end_call(c);
        return rc;
    }
    c->counters.ring_refreshes++;
    rc = ring_build(c, &resp, &r);
    if (rc != 0)
        return rc;
    info = calloc(1, sizeof(*info));
    if (info == NULL || (info->from = strdup(via->label)) == NULL ||
        cluster_members(&resp, r, info) != 0) {
        pc_cluster_info_free(&info);
        pc_ring_free(&r);
        set_msg(c, "out of memory");
        return PC_ENOMEM;
    }
    info->fingerprint = resp.fingerprint;
    info->replicas = resp.replicas;
    /* The answer is as fresh as any refresh: route by it from now on. */
    if (c->ring_aware)
        rc = ring_adopt(c, &resp, r);
    else
        pc_ring_free(&r);
    if (rc != 0) {
        pc_cluster_info_free(&info);
        set_msg(c, "out of memory");
        return rc;
    }
    c->errmsg[0] = '\0';
    *out = info;
    return 0;
}

void pc_cluster_info_free(pc_cluster_info_t **info)
{
    pc_cluster_info_t *i;

    if (info == NULL || *info == NULL)
        return;
    i = *info;
    for (size_t k = 0; i->members != NULL && k < i->nmembers; k++) {
        free(i->members[k].name);
        free(i->members[k].addr);
    }
    free(i->members);
    free(i->from);
    free(i);
    *info = NULL;
}

const char *pc_client_member_state_name(int state)
{
    switch (state) {
    case PC_CLIENT_MEMBER_ALIVE:
        return "alive";
    case PC_CLIENT_MEMBER_SUSPECT:
        return "suspect";
    case PC_CLIENT_MEMBER_DEAD:
        return "dead";
    case PC_CLIENT_MEMBER_LEFT:
        return "left";
    default:
        return "unknown";
    }
}

void pc_client_counters(const pc_client_t *c, pc_client_counters_t *out)
{
    if (out == NULL)
        return;
    if (c == NULL)
        memset(out, 0, sizeof(*out));
    else
        *out = c->counters;
}

uint64_t pc_client_ring_fingerprint(const pc_client_t *c)
{
    return c != NULL ? c->ring_fp : 0;
}

void pc_value_free(pc_value_t *v)
{
    if (v == NULL)
        return;
    free(v->data);
    memset(v, 0, sizeof(*v));
}

void pc_mget_free(pc_mget_item_t *items, size_t n)
{
    if (items == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        pc_value_free(&items[i].value);
    free(items);
}

void pc_stats_free(pc_stat_entry_t *stats, size_t n)
{
    if (stats == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(stats[i].name);
    free(stats);
}
