/*
 * pc_peer.c -- pooled, pipelined connections to peers.
 *
 * One peer_t per address, created on first use and kept until the pool
 * closes or the address is forgotten. Its life is a small state machine:
 *
 *   IDLE -> RESOLVING -> CONNECTING -> UP -> (failure) CLOSING -> IDLE
 *
 * Requests may be queued in RESOLVING, CONNECTING and UP; their frames
 * wait in `out` until the connection is up. Any failure (connect error,
 * timeout, broken stream, bad reply) fails every waiting request at once
 * and closes the handle: replies are matched by position, so after one is
 * lost nothing later on that stream can be trusted.
 *
 * Memory: a peer_t is freed only from the tcp close callback or the
 * getaddrinfo callback, whichever comes last, once it is `forgotten`; the
 * pool itself only once every peer is gone. libuv runs cancelled write
 * callbacks before the close callback, so no callback sees freed memory.
 */
#include "pc_peer.h"

#include <stdlib.h>
#include <string.h>

#include "pc_addr.h"
#include "pc_buf.h"
#include "pc_list.h"
#include "pc_proto.h"
#include "pc_proto_reader.h"
#include "pc_seal.h"
#include "pc_sock.h"
#include "pc_vclock.h"

#define TICK_MS 50
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define ADDR_MAX 300

enum peer_state { P_IDLE, P_RESOLVING, P_CONNECTING, P_UP, P_CLOSING };

typedef struct pend {
    struct pend *next;
    pc_peer_cb cb;
    void *arg;
    uint64_t deadline;
    int hold; /* a write: a failure before the deadline is told at the deadline */
    int err;  /* while held: the failure to tell */
} pend_t;

typedef struct peer {
    pc_list_t link;
    pc_peer_pool_t *pool;
    char addr[ADDR_MAX];
    enum peer_state state;
    int resolving;  /* a getaddrinfo request is outstanding */
    int forgotten;  /* free once the handles are quiet */
    int writing;
    unsigned gen;   /* bumped on every failure: stale callers stop */
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    pc_buf_t out;  /* frames not yet handed to the kernel */
    pc_buf_t wbuf; /* frames being written */
    pc_proto_reader_t rd;
    pc_seal_stream_t seal; /* our requests to this peer (docs/SECURITY.md) */
    pend_t *head, *tail;
    uint32_t npending;
    uint64_t connect_deadline;
    uint64_t retry_at; /* fail fast until then */
    uint64_t backoff_ms;
} peer_t;

struct pc_peer_pool {
    uv_loop_t *loop;
    const pc_log_t *log;
    pc_peer_config_t cfg;
    pc_guard_t *guard; /* NULL or keyless = requests go unsealed */
    pc_buf_t hello;    /* sent first on every new connection; may be empty */
    pc_list_t peers;
    uv_timer_t tick;
    pend_t *held; /* failed writes waiting for their deadline, any order */
    int closing;
    int tick_open;
    void (*done)(void *);
    void *done_arg;
    pc_peer_stats_t stats;
};

static uint64_t now_ms(const pc_peer_pool_t *p) { return uv_now(p->loop); }

static void maybe_done(pc_peer_pool_t *p)
{
    if (p->closing && p->tick_open == 0 && pc_list_empty(&p->peers) && p->done) {
        void (*done)(void *) = p->done;
        p->done = NULL;
        done(p->done_arg);
    }
}

static void peer_free_if_quiet(peer_t *pr)
{
    if (!pr->forgotten || pr->state != P_IDLE || pr->resolving)
        return;
    pc_peer_pool_t *p = pr->pool;
    pc_list_remove(&pr->link);
    pc_buf_free(&pr->out);
    pc_buf_free(&pr->wbuf);
    pc_proto_reader_free(&pr->rd);
    free(pr);
    maybe_done(p);
}

static void tcp_closed_cb(uv_handle_t *h)
{
    peer_t *pr = h->data;
    pr->state = P_IDLE;
    peer_free_if_quiet(pr);
}

/*
 * Fails every waiting request with err and closes the connection. The
 * callbacks run after the peer is already reset, so a callback that sends
 * again sees a consistent (closing, backing off) peer.
 */
static void peer_fail(peer_t *pr, int err, const char *why)
{
    pc_peer_pool_t *p = pr->pool;
    pend_t *list = pr->head;
    pr->head = pr->tail = NULL;
    pr->npending = 0;
    pr->gen++;
    /* The reader is reset on the next connect, not here: a reply callback
     * that fails this peer may still be reading the body it was given. */
    pc_buf_reset(&pr->out);
    if (err != PC_ECLOSED) {
        pr->retry_at = now_ms(p) + pr->backoff_ms;
        pr->backoff_ms = pr->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : pr->backoff_ms * 2;
        pc_log_info(p->log, "peer %s: %s", pr->addr, why);
    }
    if (pr->state == P_UP) {
        /* Reset, not closed: bytes the kernel has not sent yet (a
         * forwarded write, to a peer cut off or forgotten) die here
         * instead of reaching it much later. */
        pr->state = P_CLOSING;
        if (uv_tcp_close_reset(&pr->tcp, tcp_closed_cb) != 0)
            uv_close((uv_handle_t *)&pr->tcp, tcp_closed_cb);
    } else if (pr->state == P_CONNECTING || pr->state == P_UP) {
        pr->state = P_CLOSING;
        uv_close((uv_handle_t *)&pr->tcp, tcp_closed_cb);
    } else if (pr->state == P_RESOLVING) {
        pr->state = P_IDLE; /* the getaddrinfo callback sees the new gen */
    }
    uint64_t now = now_ms(p);
    while (list) {
        pend_t *n = list->next;
        p->stats.errors++;
        if (err == PC_ETIMEDOUT)
            p->stats.timeouts++;
        if (list->hold && !p->closing && now < list->deadline) {
            /* The peer may still apply it until its deadline: the caller
             * hears of the failure only then (pc_peer_request_write). */
            list->err = err;
            list->next = p->held;
            p->held = list;
            p->stats.held++;
        } else {
            list->cb(list->arg, err, NULL, 0);
            free(list);
        }
        list = n;
    }
}

/* Tells the held failures whose deadline has come (all of them: `all`). */
static void release_held(pc_peer_pool_t *p, uint64_t now, int all)
{
    pend_t *due = NULL, **at = &p->held;
    while (*at != NULL) {
        pend_t *pd = *at;
        if (all || now >= pd->deadline) {
            *at = pd->next;
            pd->next = due;
            due = pd;
        } else {
            at = &pd->next;
        }
    }
    while (due != NULL) {
        pend_t *n = due->next;
        due->cb(due->arg, due->err, NULL, 0);
        free(due);
        due = n;
    }
}

/* ---- writing ---------------------------------------------------------- */

static void peer_flush(peer_t *pr);

static void write_cb(uv_write_t *w, int status)
{
    peer_t *pr = w->data;
    pr->writing = 0;
    pc_buf_reset(&pr->wbuf);
    if (pr->state != P_UP)
        return; /* cancelled by a close */
    if (status < 0) {
        peer_fail(pr, PC_ECONN, uv_strerror(status));
        return;
    }
    peer_flush(pr);
}

static void peer_flush(peer_t *pr)
{
    if (pr->state != P_UP || pr->writing || pr->out.len == 0)
        return;
    pc_buf_t t = pr->wbuf;
    pr->wbuf = pr->out;
    pr->out = t;
    uv_buf_t b = uv_buf_init((char *)pr->wbuf.data, (unsigned)pr->wbuf.len);
    pr->wreq.data = pr;
    int rc = uv_write(&pr->wreq, (uv_stream_t *)&pr->tcp, &b, 1, write_cb);
    if (rc < 0) {
        peer_fail(pr, PC_ECONN, uv_strerror(rc));
        return;
    }
    pr->writing = 1;
}

/* ---- reading ---------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    peer_t *pr = h->data;
    uint8_t *p;
    size_t n;
    (void)suggested;
    if (pc_proto_reader_reserve(&pr->rd, 0, &p, &n) < 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *)p;
    buf->len = n;
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    peer_t *pr = st->data;
    (void)buf;
    if (n == 0)
        return;
    if (n < 0) {
        peer_fail(pr, PC_ECONN, n == UV_EOF ? "connection closed by the peer" : uv_strerror((int)n));
        return;
    }
    pc_proto_reader_commit(&pr->rd, (size_t)n);
    unsigned gen = pr->gen;
    pc_guard_t *g = pr->pool->guard;
    for (;;) {
        const uint8_t *body;
        uint32_t len;
        int rc = pc_proto_reader_next(&pr->rd, &body, &len);
        if (rc == 0)
            return;
        if (rc < 0) {
            peer_fail(pr, PC_EPROTO, "bad frame from the peer");
            return;
        }
        if (pc_guard_on(g)) {
            /* The reader hands out const bodies, but they sit in its own
             * writable buffer and are opened in place. */
            uint8_t *plain;
            size_t plen;
            rc = pc_guard_open(g, PC_SEAL_PEER_RESP, (uint8_t *)(uintptr_t)body, len, &plain,
                               &plen);
            if (rc < 0) {
                peer_fail(pr, PC_EPROTO,
                          rc == PC_EPROTO ? "unsealed or malformed reply (does the peer run "
                                            "with the cluster key?)"
                                          : "reply failed the cluster-key check");
                return;
            }
            body = plain;
            len = (uint32_t)plen;
        }
        pend_t *pd = pr->head;
        if (pd == NULL) {
            peer_fail(pr, PC_EPROTO, "reply to no request");
            return;
        }
        pr->head = pd->next;
        if (pr->head == NULL)
            pr->tail = NULL;
        pr->npending--;
        pd->cb(pd->arg, 0, body, len);
        free(pd);
        if (pr->gen != gen || pr->state != P_UP)
            return; /* the callback forgot or failed this peer */
    }
}

/* ---- connecting ------------------------------------------------------- */

static void connect_cb(uv_connect_t *req, int status)
{
    peer_t *pr = req->data;
    if (pr->state != P_CONNECTING)
        return; /* failed (timed out) while connecting; closing */
    if (status < 0) {
        peer_fail(pr, PC_ECONN, uv_strerror(status));
        return;
    }
    pr->state = P_UP;
    pr->backoff_ms = BACKOFF_MIN_MS;
    pr->retry_at = 0;
    pr->pool->stats.connects++;
    uv_tcp_nodelay(&pr->tcp, 1);
    /* Ignored on failure: it only shortens the wait for a resend,
     * and main's start-up check (check_rto_min) found the kernel takes
     * this value or made it 0. */
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&pr->tcp, &fd) == 0)
        (void)pc_sock_set_rto_min(fd, pr->pool->cfg.tcp_rto_min_ms);
    int rc = uv_read_start((uv_stream_t *)&pr->tcp, alloc_cb, read_cb);
    if (rc < 0) {
        peer_fail(pr, PC_ECONN, uv_strerror(rc));
        return;
    }
    peer_flush(pr);
}

static void resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    peer_t *pr = req->data;
    pc_peer_pool_t *p = pr->pool;
    pr->resolving = 0;
    if (pr->state != P_RESOLVING || pr->forgotten || p->closing) {
        uv_freeaddrinfo(res);
        if (pr->state == P_RESOLVING)
            pr->state = P_IDLE;
        peer_free_if_quiet(pr);
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        pr->state = P_IDLE;
        peer_fail(pr, PC_ECONN, status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    pc_proto_reader_free(&pr->rd);
    pc_proto_reader_init(&pr->rd, p->cfg.max_frame + PC_SEAL_OVERHEAD);
    uv_tcp_init(p->loop, &pr->tcp);
    pr->tcp.data = pr;
    pr->creq.data = pr;
    pr->state = P_CONNECTING;
    int rc = uv_tcp_connect(&pr->creq, &pr->tcp, res->ai_addr, connect_cb);
    uv_freeaddrinfo(res);
    if (rc < 0)
        peer_fail(pr, PC_ECONN, uv_strerror(rc));
}

static int peer_connect(peer_t *pr)
{
    pc_peer_pool_t *p = pr->pool;
    char host[256], port[8];
    int portn;
    if (pc_addr_parse(pr->addr, host, sizeof host, &portn) < 0)
        return PC_EINVAL;
    snprintf(port, sizeof port, "%d", portn);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    pr->gai.data = pr;
    int rc = uv_getaddrinfo(p->loop, &pr->gai, resolved_cb, host, port, &hints);
    if (rc < 0)
        return PC_ECONN;
    pr->resolving = 1;
    pr->state = P_RESOLVING;
    pr->connect_deadline = now_ms(p) + p->cfg.connect_timeout_ms;
    return 0;
}

/* ---- deadlines ---------------------------------------------------------- */

static void tick_cb(uv_timer_t *t)
{
    pc_peer_pool_t *p = t->data;
    uint64_t now = now_ms(p);
    release_held(p, now, 0);
    pc_list_t *it = p->peers.next;
    while (it != &p->peers) {
        peer_t *pr = pc_list_entry(it, peer_t, link);
        it = it->next; /* a failure never frees a peer here: it is not forgotten */
        if ((pr->state == P_RESOLVING || pr->state == P_CONNECTING) && now >= pr->connect_deadline)
            peer_fail(pr, PC_ECONN, "connect timed out");
        else if (pr->head && now >= pr->head->deadline)
            peer_fail(pr, PC_ETIMEDOUT, "request timed out");
    }
}

/* ---- public --------------------------------------------------------------- */

int pc_peer_pool_new(uv_loop_t *loop, const pc_peer_config_t *cfg, const pc_log_t *log,
                     pc_guard_t *guard, pc_peer_pool_t **out)
{
    pc_peer_pool_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PC_ENOMEM;
    p->loop = loop;
    p->log = log;
    p->guard = guard;
    pc_buf_init(&p->hello, 0);
    if (cfg)
        p->cfg = *cfg;
    if (p->cfg.connect_timeout_ms == 0)
        p->cfg.connect_timeout_ms = 1000;
    if (p->cfg.request_timeout_ms == 0)
        p->cfg.request_timeout_ms = 1000;
    if (p->cfg.max_frame == 0)
        p->cfg.max_frame = PC_PROTO_DEFAULT_MAX_FRAME;
    if (p->cfg.max_pending == 0)
        p->cfg.max_pending = 4096;
    pc_list_init(&p->peers);
    uv_timer_init(loop, &p->tick);
    p->tick.data = p;
    p->tick_open = 1;
    uv_timer_start(&p->tick, tick_cb, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&p->tick); /* never keeps the loop alive alone */
    *out = p;
    return 0;
}

static peer_t *peer_find(const pc_peer_pool_t *p, const char *addr)
{
    for (pc_list_t *it = p->peers.next; it != &p->peers; it = it->next) {
        peer_t *pr = pc_list_entry(it, peer_t, link);
        if (!pr->forgotten && strcmp(pr->addr, addr) == 0)
            return pr;
    }
    return NULL;
}

static void pend_push(peer_t *pr, pend_t *pd)
{
    pd->next = NULL;
    if (pr->tail)
        pr->tail->next = pd;
    else
        pr->head = pd;
    pr->tail = pd;
    pr->npending++;
}

static void hello_done(void *arg, int err, const uint8_t *body, size_t len)
{
    peer_t *pr = arg;
    pc_response_t resp;
    pc_proto_decoder_t *dec = NULL;
    if (err != 0)
        return; /* the requests behind it fail the same way */
    if (pc_proto_decoder_new(NULL, &dec) == 0 &&
        pc_proto_decode_response(dec, body, len, &resp) == 0 && resp.status != PC_ST_OK)
        pc_log_warn(pr->pool->log, "peer %s refused our HELLO: %.*s (do all members use the "
                    "same client token?)", pr->addr, (int)resp.message.len,
                    (const char *)resp.message.ptr);
    pc_proto_decoder_free(&dec);
}

/* Queues the pool's HELLO (with the client token) ahead of everything on
 * a connection about to be made. 0 or PC_ENOMEM (nothing queued). */
static int hello_queue(peer_t *pr)
{
    pc_peer_pool_t *p = pr->pool;
    pend_t *pd = malloc(sizeof *pd);
    if (pd == NULL)
        return PC_ENOMEM;
    if (pc_buf_append(&pr->out, p->hello.data, p->hello.len) < 0) {
        free(pd);
        return PC_ENOMEM;
    }
    pd->cb = hello_done;
    pd->arg = pr;
    pd->deadline = now_ms(p) + p->cfg.request_timeout_ms;
    pend_push(pr, pd);
    return 0;
}

/* Undoes a half-queued request: drops the bytes from `start` on, and the
 * HELLO queued for it if there was one (it is then the only pend). */
static void peer_unqueue(peer_t *pr, size_t start)
{
    pr->out.len = start;
    if (pr->state == P_IDLE && pr->head != NULL && pr->head->cb == hello_done &&
        pr->head == pr->tail) {
        free(pr->head);
        pr->head = pr->tail = NULL;
        pr->npending = 0;
    }
}

int pc_peer_set_hello(pc_peer_pool_t *p, const uint8_t *frame, size_t len)
{
    pc_buf_reset(&p->hello);
    return len > 0 ? pc_buf_append(&p->hello, frame, len) : 0;
}

static int request(pc_peer_pool_t *p, const char *addr, const uint8_t *frame, size_t len,
                   int hold, pc_peer_cb cb, void *arg)
{
    if (p->closing)
        return PC_ECLOSED;
    if (addr == NULL || frame == NULL || len < 5 || cb == NULL || strlen(addr) >= ADDR_MAX)
        return PC_EINVAL;
    peer_t *pr = peer_find(p, addr);
    if (pr == NULL) {
        char host[256];
        int port;
        if (pc_addr_parse(addr, host, sizeof host, &port) < 0)
            return PC_EINVAL;
        pr = calloc(1, sizeof *pr);
        if (pr == NULL)
            return PC_ENOMEM;
        pr->pool = p;
        strcpy(pr->addr, addr);
        pr->backoff_ms = BACKOFF_MIN_MS;
        pc_buf_init(&pr->out, 0);
        pc_buf_init(&pr->wbuf, 0);
        pc_proto_reader_init(&pr->rd, p->cfg.max_frame + PC_SEAL_OVERHEAD);
        pc_seal_stream_init(&pr->seal);
        pc_list_push_back(&p->peers, &pr->link);
    }
    uint64_t now = now_ms(p);
    /* Still closing the last connection (or resolving for it): that one
     * just failed, so this is the back-off case too. */
    if (pr->state == P_CLOSING || (pr->state == P_IDLE && pr->resolving) || now < pr->retry_at)
        return PC_ECONN;
    if (pr->npending >= p->cfg.max_pending)
        return PC_EBUSY;
    size_t start = pr->out.len;
    if (pr->state == P_IDLE && p->hello.len > 0 && hello_queue(pr) < 0)
        return PC_ENOMEM;
    pend_t *pd = malloc(sizeof *pd);
    if (pd == NULL) {
        peer_unqueue(pr, start);
        return PC_ENOMEM;
    }
    size_t fstart = pr->out.len;
    if (pc_buf_append(&pr->out, frame, len) < 0) {
        peer_unqueue(pr, start);
        free(pd);
        return PC_ENOMEM;
    }
    /* Sealed as queued, so sequence numbers follow the stream's order. */
    if (pc_guard_on(p->guard)) {
        int rc = pc_guard_seal_frame(p->guard, &pr->seal, PC_SEAL_PEER_REQ, &pr->out, fstart);
        if (rc < 0) {
            peer_unqueue(pr, start);
            free(pd);
            return rc == PC_ETOOBIG ? PC_ETOOBIG : PC_ENOMEM;
        }
    }
    if (pr->state == P_IDLE) {
        int rc = peer_connect(pr);
        if (rc < 0) {
            peer_unqueue(pr, start);
            free(pd);
            return rc;
        }
    }
    pd->cb = cb;
    pd->arg = arg;
    pd->deadline = now + p->cfg.request_timeout_ms;
    pd->hold = hold;
    pd->err = 0;
    pend_push(pr, pd);
    p->stats.requests++;
    peer_flush(pr);
    return 0;
}

int pc_peer_request(pc_peer_pool_t *p, const char *addr, const uint8_t *frame, size_t len,
                    pc_peer_cb cb, void *arg)
{
    return request(p, addr, frame, len, 0, cb, arg);
}

int pc_peer_request_write(pc_peer_pool_t *p, const char *addr, const uint8_t *frame,
                          size_t len, pc_peer_cb cb, void *arg)
{
    return request(p, addr, frame, len, 1, cb, arg);
}

uint64_t pc_peer_deadline_wall_ms(const pc_peer_pool_t *p)
{
    /* uv_now() is a cached, coarse reading of the monotonic clock, so a
     * request queued now times out no earlier than this. */
    int64_t at_us = (int64_t)(now_ms(p) + p->cfg.request_timeout_ms) * 1000;
    return (uint64_t)(pc_vclock_wall_at_us(at_us, (int64_t)(uv_hrtime() / 1000)) / 1000);
}

void pc_peer_forget(pc_peer_pool_t *p, const char *addr)
{
    peer_t *pr = peer_find(p, addr);
    if (pr == NULL)
        return;
    pr->forgotten = 1;
    peer_fail(pr, PC_ECLOSED, NULL);
    peer_free_if_quiet(pr);
}

void pc_peer_pool_fail_all(pc_peer_pool_t *p)
{
    pc_list_t *it = p->peers.next;
    while (it != &p->peers) {
        peer_t *pr = pc_list_entry(it, peer_t, link);
        it = it->next;
        peer_fail(pr, PC_ECLOSED, NULL);
    }
}

size_t pc_peer_pending(const pc_peer_pool_t *p, const char *addr)
{
    const peer_t *pr = peer_find(p, addr);
    return pr ? pr->npending : 0;
}

void pc_peer_stats(const pc_peer_pool_t *p, pc_peer_stats_t *out) { *out = p->stats; }

static void tick_closed_cb(uv_handle_t *h)
{
    pc_peer_pool_t *p = h->data;
    p->tick_open = 0;
    maybe_done(p);
}

void pc_peer_pool_close(pc_peer_pool_t *p, void (*done)(void *), void *arg)
{
    p->closing = 1;
    p->done = done;
    p->done_arg = arg;
    pc_list_t *it = p->peers.next;
    while (it != &p->peers) {
        peer_t *pr = pc_list_entry(it, peer_t, link);
        it = it->next;
        pr->forgotten = 1;
        peer_fail(pr, PC_ECLOSED, NULL);
        peer_free_if_quiet(pr); /* may free pr; `it` is already past it */
    }
    release_held(p, 0, 1);
    uv_close((uv_handle_t *)&p->tick, tick_closed_cb);
}

void pc_peer_pool_free(pc_peer_pool_t **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    pc_buf_free(&(*pp)->hello);
    free(*pp);
    *pp = NULL;
}
