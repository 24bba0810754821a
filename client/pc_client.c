/*
 * pc_client.c -- libpeercache: one blocking connection, one request at a
 * time.
 *
 * The socket is non-blocking from the moment it is made, and every wait
 * goes through poll() with the call's deadline. That is what gives each
 * call a real upper bound: a blocking connect() or recv() could hang for
 * minutes on a node that vanished without a RST.
 *
 * Request/response pairing is the other thing this file is careful about.
 * There is never more than one request on the wire, every request has a
 * fresh id, and any failure after a byte was sent (timeout, broken
 * connection, a reply that does not match) closes the connection. A reply
 * that arrives late therefore lands on a closed socket and can never be
 * taken as the answer to a later request.
 *
 * Retry policy, kept deliberately small:
 *  - Before a request goes out on a connection that was already open, a
 *    zero-timeout poll() checks that the server has not closed it (idle
 *    timeout, restart) and that nothing unexpected is waiting. If it has,
 *    the connection is replaced before anything is sent; that is not a
 *    retry, since nothing was sent.
 *  - A read (GET, MGET, PING, STATS) that then still fails with a broken
 *    connection on such a reused connection is sent once more on a fresh
 *    one: the server may have closed the idle connection just as we wrote.
 *    Reads are idempotent, so this is safe.
 *  - A write (SET, DEL, TOUCH) is never sent twice: once it left, it may
 *    have been applied, and only the caller can decide what to do.
 *  - Timeouts are never retried: the call's time is used up.
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

#include "pc_addr.h"
#include "pc_proto.h"

#define DEFAULT_TIMEOUT_MS 2000
#define ERRMSG_MAX 512

/* Largest request buffer kept between calls; a bigger one (a large SET)
 * is given back so one big value does not pin memory to the client. */
#define OUT_KEEP ((size_t)256 * 1024)

/*
 * Linux reports a write to a closed socket with EPIPE only if told not to
 * raise SIGPIPE, which would kill a program that does not handle it. BSDs
 * have a socket option for the same thing instead of the send() flag.
 */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#define PC_USE_SO_NOSIGPIPE 1
#endif

_Static_assert(PC_CLIENT_COND_NONE == PC_COND_NONE && PC_CLIENT_COND_NX == PC_COND_NX &&
                   PC_CLIENT_COND_XX == PC_COND_XX,
               "pc_client.h condition values must match the wire values");

typedef struct node {
    char *host;  /* as given, without IPv6 brackets */
    int port;
    char *label; /* "host:port" or "[v6]:port", for messages */
} node_t;

struct pc_client {
    node_t *nodes;
    size_t nnodes;
    size_t cur;       /* node to try first: the last one that worked */
    int fd;           /* -1 when not connected */
    int timeout_ms;
    char *token;      /* NULL = none */
    size_t token_len;
    uint64_t next_id; /* ids are never reused within a client */
    pc_proto_reader_t reader;
    pc_proto_decoder_t *dec;
    pc_buf_t out;
    char errmsg[ERRMSG_MAX];
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

static const node_t *cur_node(const pc_client_t *c)
{
    return &c->nodes[c->cur];
}

/* Drops the connection and anything buffered for it. */
static void conn_close(pc_client_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    pc_proto_reader_free(&c->reader);
    pc_buf_reset(&c->out);
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
#ifdef PC_USE_SO_NOSIGPIPE
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
    return 0;
}

/* Connects to one resolved address. 0 with c->fd set, or an error. */
static int connect_addr(pc_client_t *c, const node_t *n, const struct addrinfo *ai,
                        int64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    int err = 0;
    socklen_t errlen = sizeof(err);

    if (fd < 0) {
        set_msg(c, "%s: socket: %s", n->label, strerror(errno));
        return PC_ECONN;
    }
    if (set_socket_options(fd) != 0) {
        set_msg(c, "%s: socket options: %s", n->label, strerror(errno));
        close(fd);
        return PC_ECONN;
    }
    /* A non-blocking connect that is interrupted carries on in the
     * background, exactly like EINPROGRESS. */
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS &&
        errno != EINTR) {
        set_msg(c, "%s: connect: %s", n->label, strerror(errno));
        close(fd);
        return PC_ECONN;
    }
    err = wait_fd(fd, POLLOUT, deadline);
    if (err != 0) {
        if (err == PC_ETIMEDOUT)
            set_msg(c, "%s: connect: timed out after %d ms", n->label, c->timeout_ms);
        else
            set_msg(c, "%s: poll: %s", n->label, strerror(errno));
        close(fd);
        return err == PC_ETIMEDOUT ? PC_ETIMEDOUT : PC_ECONN;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0)
        err = errno;
    if (err != 0) {
        set_msg(c, "%s: connect: %s", n->label, strerror(err));
        close(fd);
        return PC_ECONN;
    }
    c->fd = fd;
    return 0;
}

/*
 * Resolves the node and tries each of its addresses (a name such as
 * "localhost" may give ::1 first while the node listens on 127.0.0.1).
 * Resolution happens on every connect so DNS changes are picked up; note
 * that getaddrinfo() itself cannot be bounded by the deadline.
 */
static int connect_node(pc_client_t *c, const node_t *n, int64_t deadline)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    int rc = PC_ECONN;
    int gai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", n->port);
    gai = getaddrinfo(n->host, port, &hints, &res);
    if (gai != 0) {
        set_msg(c, "%s: cannot resolve: %s", n->label,
                gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        return PC_ECONN;
    }
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        rc = connect_addr(c, n, ai, deadline);
        if (rc == 0 || rc == PC_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

/* ---- one exchange on the open connection -------------------------------------- */

static int send_all(pc_client_t *c, const uint8_t *p, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);

            if (rc == PC_ETIMEDOUT) {
                set_msg(c, "%s: timed out after %d ms sending the request",
                        cur_node(c)->label, c->timeout_ms);
                return PC_ETIMEDOUT;
            }
            if (rc != 0) {
                set_msg(c, "%s: poll: %s", cur_node(c)->label, strerror(errno));
                return PC_ECONN;
            }
        } else {
            set_msg(c, "%s: send: %s", cur_node(c)->label,
                    n < 0 ? strerror(errno) : "no progress");
            return PC_ECONN;
        }
    }
    return 0;
}

/* Reads until one whole frame is buffered; *body points into the reader. */
static int recv_frame(pc_client_t *c, const uint8_t **body, uint32_t *len, int64_t deadline)
{
    for (;;) {
        uint8_t *p;
        size_t avail;
        ssize_t n;
        int rc = pc_proto_reader_next(&c->reader, body, len);

        if (rc == 1)
            return 0;
        if (rc == PC_ETOOBIG) {
            set_msg(c, "%s: reply is over the client's %u-byte frame limit",
                    cur_node(c)->label, c->reader.max_frame);
            return PC_ETOOBIG;
        }
        if (rc < 0) {
            set_msg(c, "%s: malformed reply frame", cur_node(c)->label);
            return PC_EPROTO;
        }
        rc = pc_proto_reader_reserve(&c->reader, PC_PROTO_READ_CHUNK, &p, &avail);
        if (rc != 0) {
            set_msg(c, "reading reply: %s", pc_strerror(rc));
            return rc;
        }
        n = recv(c->fd, p, avail, 0);
        if (n > 0) {
            pc_proto_reader_commit(&c->reader, (size_t)n);
        } else if (n == 0) {
            set_msg(c, "%s: connection closed by the server", cur_node(c)->label);
            return PC_ECONN;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc == PC_ETIMEDOUT) {
                set_msg(c, "%s: no reply within %d ms", cur_node(c)->label, c->timeout_ms);
                return PC_ETIMEDOUT;
            }
            if (rc != 0) {
                set_msg(c, "%s: poll: %s", cur_node(c)->label, strerror(errno));
                return PC_ECONN;
            }
        } else if (errno != EINTR) {
            set_msg(c, "%s: recv: %s", cur_node(c)->label, strerror(errno));
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
        /* The code is vaguer than the status (AUTH_REQUIRED is reported
         * as PC_EINVAL): keep what the status says. */
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
static int explain_send_failure(pc_client_t *c, const pc_request_t *req, pc_response_t *resp)
{
    char saved[ERRMSG_MAX];
    const uint8_t *body;
    uint32_t len;

    memcpy(saved, c->errmsg, sizeof(saved));
    if (recv_frame(c, &body, &len, now_ms()) == 0 &&
        pc_proto_decode_response(c->dec, body, len, resp) == 0 && resp->status != PC_ST_OK &&
        (resp->id == 0 || resp->id == req->id))
        return status_error(c, resp->status, resp->message);
    memcpy(c->errmsg, saved, sizeof(saved));
    return 0;
}

/*
 * Sends one request and reads its reply into *resp (slices valid until
 * the next exchange). Returns 0 when a matching reply arrived, whatever
 * its status. Any error after the first byte could have been sent closes
 * the connection; an error while encoding leaves it open.
 */
static int exchange(pc_client_t *c, pc_request_t *req, pc_response_t *resp, int64_t deadline)
{
    const uint8_t *body;
    uint32_t len;
    int rc;

    req->id = c->next_id++;
    pc_buf_reset(&c->out);
    if (c->out.cap > OUT_KEEP)
        pc_buf_free(&c->out);
    rc = pc_proto_encode_request(&c->out, req);
    if (rc != 0) {
        set_msg(c, "cannot encode %s request: %s", pc_op_name(req->op), pc_strerror(rc));
        return rc;
    }
    rc = send_all(c, c->out.data, c->out.len, deadline);
    if (rc == PC_ECONN) {
        int why = explain_send_failure(c, req, resp);

        if (why != 0) {
            conn_close(c);
            return why;
        }
    }
    if (rc == 0)
        rc = recv_frame(c, &body, &len, deadline);
    if (rc == 0) {
        rc = pc_proto_decode_response(c->dec, body, len, resp);
        if (rc == PC_EPROTO)
            set_msg(c, "%s: malformed %s reply", cur_node(c)->label, pc_op_name(req->op));
        else if (rc != 0)
            set_msg(c, "decoding reply: %s", pc_strerror(rc));
    }
    if (rc == 0 && resp->id != req->id && resp->id == 0 && resp->status != PC_ST_OK) {
        /* Not an answer but the server speaking for the connection (for
         * example refusing it while overloaded): report what it said. */
        rc = status_error(c, resp->status, resp->message);
    } else if (rc == 0 && (resp->id != req->id || resp->op != req->op)) {
        set_msg(c, "%s: reply %s #%llu does not match request %s #%llu", cur_node(c)->label,
                pc_op_name(resp->op), (unsigned long long)resp->id, pc_op_name(req->op),
                (unsigned long long)req->id);
        rc = PC_EPROTO;
    }
    if (rc != 0)
        conn_close(c);
    return rc;
}

/* HELLO: the first exchange on every connection. */
static int hello(pc_client_t *c, int64_t deadline)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    memset(&req, 0, sizeof(req));
    req.op = PC_OP_HELLO;
    req.proto_version = PC_PROTO_VERSION;
    if (c->token != NULL) {
        req.token.ptr = (const uint8_t *)c->token;
        req.token.len = (uint32_t)c->token_len;
    }
    rc = exchange(c, &req, &resp, deadline);
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
        conn_close(c);
        return rc;
    }
    /* A newer node answers in our version's format while reporting its
     * own (PROTOCOL.md section 10), so only an older one is a problem. */
    if (resp.proto_version < PC_PROTO_VERSION) {
        set_msg(c, "%s: node speaks protocol version %u, older than this client's %u",
                cur_node(c)->label, resp.proto_version, (unsigned)PC_PROTO_VERSION);
        conn_close(c);
        return PC_EPROTO;
    }
    return 0;
}

/* Failures that say "this node, now" rather than "this request": worth
 * trying the next node for. An auth failure would fail on every node. */
static bool try_next_node(int rc)
{
    return rc == PC_ECONN || rc == PC_ETIMEDOUT || rc == PC_EBUSY || rc == PC_EPROTO ||
           rc == PC_ECLOSED;
}

/*
 * Opens a connection, trying the nodes in order from the last one that
 * worked. Each node gets the full timeout for connect + HELLO. When all
 * fail, the message lists each node's reason and the code is the last
 * node's.
 */
static int conn_open(pc_client_t *c)
{
    char all[ERRMSG_MAX] = "";
    size_t used = 0;
    int rc = PC_ECONN;

    for (size_t k = 0; k < c->nnodes; k++) {
        size_t idx = (c->cur + k) % c->nnodes;
        size_t prev = c->cur;
        int64_t deadline = now_ms() + c->timeout_ms;

        c->cur = idx; /* for messages from the exchange */
        rc = connect_node(c, &c->nodes[idx], deadline);
        if (rc == 0)
            rc = hello(c, deadline);
        if (rc == 0)
            return 0;
        conn_close(c);
        c->cur = prev;
        if (used < sizeof(all))
            used += (size_t)snprintf(all + used, sizeof(all) - used, "%s%s", k ? "; " : "",
                                     c->errmsg);
        if (!try_next_node(rc))
            break;
    }
    if (c->nnodes > 1)
        set_msg(c, "%s", all);
    return rc;
}

/*
 * True if the open connection can carry a request: the server has not
 * closed it and sent nothing we did not ask for. Checked before sending,
 * so a connection the server dropped while we were idle is replaced
 * instead of failing the call.
 */
static bool conn_usable(pc_client_t *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

    if (pc_proto_reader_pending(&c->reader) > 0)
        return false;
    return poll(&pfd, 1, 0) == 0;
}

static bool is_read_op(uint32_t op)
{
    return op == PC_OP_GET || op == PC_OP_MGET || op == PC_OP_PING || op == PC_OP_STATS;
}

/*
 * One call: makes sure a connection is open, exchanges req for *resp and
 * maps a non-OK reply status to its error. See the top of the file for
 * when it sends a second time.
 */
static int call(pc_client_t *c, pc_request_t *req, pc_response_t *resp)
{
    c->errmsg[0] = '\0';
    for (int attempt = 0;; attempt++) {
        bool reused = false;
        int rc;

        if (c->fd >= 0 && !conn_usable(c))
            conn_close(c);
        if (c->fd >= 0)
            reused = true;
        else if ((rc = conn_open(c)) != 0)
            return rc;
        rc = exchange(c, req, resp, now_ms() + c->timeout_ms);
        if (rc == PC_ECONN && reused && attempt == 0 && is_read_op(req->op))
            continue;
        if (rc != 0)
            return rc;
        if (resp->status != PC_ST_OK)
            return status_error(c, resp->status, resp->message);
        /* Nodes skipped on the way left their reasons here. */
        c->errmsg[0] = '\0';
        return 0;
    }
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

/* ---- node list -------------------------------------------------------------- */

static int add_node(void *arg, const char *host, int port)
{
    pc_client_t *c = arg;
    node_t *grown = realloc(c->nodes, (c->nnodes + 1) * sizeof(*grown));
    node_t *n;
    size_t lablen = strlen(host) + 16;

    if (grown == NULL)
        return PC_ENOMEM;
    c->nodes = grown;
    n = &c->nodes[c->nnodes];
    n->host = strdup(host);
    n->label = malloc(lablen);
    if (n->host == NULL || n->label == NULL) {
        free(n->host);
        free(n->label);
        return PC_ENOMEM;
    }
    n->port = port;
    snprintf(n->label, lablen, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    c->nnodes++;
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
    c->fd = -1;
    c->next_id = 1;
    c->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    /* The reader must take any reply the node sends; the largest is a GET
     * or MGET answer filling one max frame of the node's. */
    pc_proto_limits_t lim;
    pc_proto_limits_default(&lim);
    if (opt->max_frame != 0)
        lim.max_frame = opt->max_frame;
    lim.max_mget_keys = UINT32_MAX; /* we choose how many we ask for */
    pc_proto_reader_init(&c->reader, lim.max_frame);
    pc_buf_init(&c->out, 0);
    rc = pc_addr_parse_list(opt->nodes, add_node, c);
    if (rc == 0 && c->nnodes == 0)
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
    conn_close(c);
    pc_buf_free(&c->out);
    pc_proto_decoder_free(&c->dec);
    for (size_t i = 0; i < c->nnodes; i++) {
        free(c->nodes[i].host);
        free(c->nodes[i].label);
    }
    free(c->nodes);
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

    if (c == NULL)
        return PC_EINVAL;
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_PING;
    return call(c, &req, &resp);
}

/* The start every single-key call shares: a zeroed request for op with
 * its key, after the key was checked. 0 or the check's error. */
static int key_request(pc_client_t *c, uint32_t op, const void *key, size_t klen,
                       pc_request_t *req)
{
    int rc;

    c->errmsg[0] = '\0';
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
    rc = call(c, &req, &resp);
    if (rc == 0)
        rc = copy_value(out, &resp.entry);
    if (rc == PC_ENOMEM)
        set_msg(c, "out of memory copying the value");
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
    rc = call(c, &req, &resp);
    if (rc == 0 && version_out != NULL)
        *version_out = resp.version;
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
    return rc != 0 ? rc : call(c, &req, &resp);
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
    return call(c, &req, &resp);
}

int pc_client_mget(pc_client_t *c, size_t n, const void *const *keys, const size_t *klens,
                   pc_mget_item_t **out)
{
    pc_request_t req;
    pc_response_t resp;
    pc_bytes_t *slices;
    pc_mget_item_t *items = NULL;
    int rc = 0;

    if (c == NULL || out == NULL || (n > 0 && (keys == NULL || klens == NULL)))
        return PC_EINVAL;
    *out = NULL;
    c->errmsg[0] = '\0';
    if (n == 0)
        return 0; /* nothing to ask; pc_mget_free(NULL, 0) is fine */
    if (n > UINT32_MAX) {
        set_msg(c, "%zu keys is over the protocol's limit", n);
        return PC_ETOOBIG;
    }
    slices = malloc(n * sizeof(*slices));
    if (slices == NULL) {
        set_msg(c, "out of memory");
        return PC_ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = check_key(c, keys[i], klens[i]);
        if (rc != 0)
            set_msg(c, "key %zu: %s", i, rc == PC_EINVAL ? "empty" : "over the 4 GiB limit");
        slices[i] = bytes(keys[i], klens[i]);
    }
    if (rc == 0) {
        memset(&req, 0, sizeof(req));
        req.op = PC_OP_MGET;
        req.nkeys = (uint32_t)n;
        req.keys = slices;
        rc = call(c, &req, &resp);
    }
    free(slices);
    if (rc == 0 && resp.nentries != n) {
        set_msg(c, "%s: MGET of %zu keys answered with %u entries", cur_node(c)->label, n,
                resp.nentries);
        conn_close(c);
        rc = PC_EPROTO;
    }
    if (rc == 0 && (items = calloc(n, sizeof(*items))) == NULL)
        rc = PC_ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const pc_entry_t *e = &resp.entries[i];

        if (e->status == PC_ST_OK) {
            rc = copy_value(&items[i].value, e);
        } else {
            items[i].status = pc_status_to_err(e->status);
            if (items[i].status == 0)
                items[i].status = PC_EPROTO;
        }
    }
    if (rc != 0) {
        if (rc == PC_ENOMEM)
            set_msg(c, "out of memory copying the values");
        pc_mget_free(items, items != NULL ? n : 0);
        return rc;
    }
    *out = items;
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
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_STATS;
    rc = call(c, &req, &resp);
    if (rc != 0)
        return rc;
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
    return 0;
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
