/*
 * pc_conns.c -- the connections of one loop together: accept and refuse,
 * the shared buffer cap and shedding, the tick, hold, stop.
 */
#include "pc_conns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pc_sock.h"

#define READ_CHUNK (64 * 1024)
/* The tick's share of an iteration (tick_sweep), and shedding's (shed_some) */
#define TICK_SHARE_NS ((uint64_t)100 * 1000)
#define SHED_SHARE_NS ((uint64_t)100 * 1000)

static uint64_t now_ms(const pc_conns_t *cs) { return uv_now(cs->loop); }

int pc_conns_init(pc_conns_t *cs, const pc_conns_config_t *cfg)
{
    memset(cs, 0, sizeof *cs);
    cs->set = cfg->limits;
    cs->loop = cfg->loop;
    cs->log = cfg->log;
    cs->guard = cfg->guard;
    cs->stats = cfg->stats;
    cs->lat = cfg->lat;
    cs->hooks = cfg->hooks;
    cs->owner = cfg->owner;
    cs->node_conns = cfg->node_conns;
    cs->sources = cfg->sources;
    cs->ring_fp = cfg->ring_fp;
    cs->want_uring = cfg->io_uring;
    cs->tick_share_ns = TICK_SHARE_NS;
    cs->shed_share_ns = SHED_SHARE_NS;
    pc_list_init(&cs->conns);
    pc_list_init(&cs->flushq);
    cs->arrivals.ep = -1;
    cs->rbuf = malloc(READ_CHUNK);
    return cs->rbuf != NULL ? 0 : PC_ENOMEM;
}

/* Before the loop polls: a new iteration's budget, and the buffer cap. */
static void shed_sweep(pc_conns_t *cs);
static void tick_sweep(pc_conns_t *cs);

/* One iteration ends where the next begins: just before the loop polls
 * again. Its working time goes to the loop's histogram and counters. */
static void iteration_done(pc_conns_t *cs)
{
    if (!cs->iter_timed)
        return;
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(cs->loop);
    if (cs->iter_at != 0) {
        uint64_t span = now - cs->iter_at, waited = idle - cs->iter_idle;
        uint64_t busy = span > waited ? span - waited : 0;
        pc_hist_add(&cs->iter_hist, busy, 1);
        cs->iter_busy_ns += busy;
        cs->stats->loop_iterations++;
        cs->stats->loop_busy_us = cs->iter_busy_ns / 1000;
    }
    cs->iter_at = now;
    cs->iter_idle = idle;
}

static void accept_deferred(pc_conns_t *cs);

static void turn_prep_cb(uv_prepare_t *h)
{
    pc_conns_t *cs = h->data;
    iteration_done(cs);
    accept_deferred(cs); /* a share of the next iteration */
    pc_conns_flush_deferred(cs); /* before the loop waits: one write each */
    pc_conns_iteration_begins(cs);
    if (cs->tick_unfinished) /* the tick's checks, a share of this iteration */
        tick_sweep(cs);
    shed_sweep(cs);
    if (cs->uring != NULL) { /* every send of this iteration, and more, at once */
        /* Completions handled in the submitting call may serve requests
         * (input that came meanwhile, or waited for its output to drain):
         * a Redis command one of them queued is written from a prepare
         * handle that has run already, or is started for the next
         * iteration -- so that one must come at once, not at the next
         * timer (45-50 ms for every write-through, before). */
        uint64_t turns = cs->turns;
        pc_uring_submit(cs->uring);
        if (cs->turns != turns)
            pc_conns_wake(cs);
    }
}

static void uring_closed(void *arg)
{
    pc_conns_t *cs = arg;
    cs->handles_open--;
    if (cs->hooks->gone)
        cs->hooks->gone(cs->owner);
}

void pc_conns_start(pc_conns_t *cs)
{
    /* libuv counts the time its poll waits only when asked (it then polls
     * once without waiting before it waits: one more epoll_wait, and only
     * when there was nothing to do). */
    int rc = uv_loop_configure(cs->loop, UV_METRICS_IDLE_TIME);
    cs->iter_timed = rc == 0;
    if (rc != 0)
        pc_log_warn(cs->log, "loop iterations will not be timed: %s", uv_strerror(rc));
    uv_idle_init(cs->loop, &cs->run_idle);
    cs->run_idle.data = cs;
    uv_prepare_init(cs->loop, &cs->turn_prep);
    cs->turn_prep.data = cs;
    cs->handles_open += 2;
    uv_prepare_start(&cs->turn_prep, turn_prep_cb);
    if (pc_arrivals_init(&cs->arrivals) != 0)
        pc_log_warn(cs->log, "light requests will wait for the whole heavy share: epoll_create1: %s",
                    strerror(errno));
    pc_conns_budget_update(cs);
    if (cs->want_uring) {
        char why[160];
        if (pc_uring_new(cs->loop, &pc_conn_uring_hooks, &cs->uring, why, sizeof why) == 0)
            cs->handles_open++;
        else
            pc_log_warn(cs->log, "io_uring for this loop's connections: %s; using epoll",
                        why);
    }
}

/* ---- the buffer cap: shedding ------------------------------------------- */

typedef struct shed {
    pc_conn_t *c;
    size_t use;
} shed_t;

/* Closes c, which holds `use` bytes of buffers over its fair share;
 * counted. If more of it is answers the client has not taken (here and
 * in the kernel's send queue) than input, it is reset, and all it has not
 * read goes at once (pc_conn_reset): closed in order, its answers would
 * stay in the kernel, up to tcp_wmem's maximum, until the client closes
 * its end -- 1,000 such sockets held 1.2 GiB, over the host's TCP memory
 * pressure mark. Else (a large frame still arriving) it is told why, in
 * case it is only slow and reads again. */
static void shed_one(pc_conn_t *c, size_t use, size_t fair)
{
    pc_log_debug(c->cs->log, "client %s: closed, holding %zu bytes of buffers (fair share %zu)",
                 c->peer, use, fair);
    c->cs->stats->buffer_evictions++;
    if (pc_conn_unsent(c) > c->rd.buf.cap + c->spill.cap) {
        pc_conn_reset(c, "shed over the buffer cap, its answers unread");
        return;
    }
    pc_conn_say_error(c, PC_ST_BUSY, "server buffer memory full");
    pc_conn_close(c, NULL);
}

/*
 * The sweep below runs before the loop polls. Input that arrives in
 * between without a read of ours (with io_uring, what the kernel had read
 * when a receive was cancelled) can take the buffers past the cap first:
 * a thousand connections flooding one loop did, by tens of MiB. So the
 * receiving end asks here as it takes input: once the loop is over the
 * cap, a connection over its fair share is shed at once, as the sweep
 * would shed it. 1 = it was closed.
 */
int pc_conns_shed_over_cap(pc_conn_t *c)
{
    pc_conns_t *cs = c->cs;
    size_t cap = cs->set.max_buffer_memory;
    if (c->internal || c->closing || cs->buf_bytes <= cap)
        return 0;
    size_t fair = cap / (cs->nconns > 0 ? cs->nconns : 1), use = pc_conn_usage(c);
    if (use <= fair)
        return 0;
    shed_one(c, use, fair);
    return 1;
}

/* Unauthenticated first, then the biggest. */
static int shed_order(const void *a, const void *b)
{
    const shed_t *x = a, *y = b;
    if (x->c->authed != y->c->authed)
        return x->c->authed ? 1 : -1;
    return x->use < y->use ? 1 : x->use > y->use ? -1 : 0;
}

/*
 * Closes the chosen connections in order, for a share of this iteration
 * (at least one): each close of a connection that stopped reading
 * frees its kernel send queue too (pc_conn_reset), and 17-36 of them in
 * one go made an iteration of 0.45-1.1 ms under 1,000 such clients,
 * which every other client waited for. The rest wait for
 * the next iteration, before the loop polls again (turn_prep_cb). A
 * chosen connection that closes by itself meanwhile leaves its entry
 * (pc_conns_shed_forget). 1 = some are left.
 */
static int shed_some(pc_conns_t *cs)
{
    uint64_t t0 = uv_hrtime();
    int done = 0;
    while (cs->shed_next < cs->shed_n) {
        pc_conn_t *c = cs->shed_v[cs->shed_next];
        if (c != NULL && done++ > 0 && uv_hrtime() - t0 >= cs->shed_share_ns) {
            cs->stats->sheds_deferred++;
            return 1;
        }
        cs->shed_next++;
        if (c == NULL)
            continue;
        c->shed_at = 0;
        shed_one(c, pc_conn_usage(c), cs->shed_fair);
    }
    free(cs->shed_v);
    cs->shed_v = NULL;
    cs->shed_n = cs->shed_next = 0;
    return 0;
}

/*
 * Near the cap (pc_conns_buffer_check), the connections holding more
 * than their fair share of the loop's buffer memory -- unread output of a
 * client that stopped reading, or a large frame still arriving -- are
 * closed, those that never sent the token first, then the biggest, until
 * what stays is under 3/4 of the cap. Connections within their share are
 * never touched, and nobody stops reading: one client's memory is its own
 * problem. They are chosen here, and closed in shares of the iterations
 * (shed_some); their memory is released when their handles close, a loop
 * turn later. Returns what the live connections hold, less what the
 * chosen ones do (closing ones left out).
 */
static size_t shed(pc_conns_t *cs)
{
    size_t cap = cs->set.max_buffer_memory, goal = cap - cap / 4;
    size_t total = cs->buf_bytes, internal = 0, n = 0;
    for (pc_list_t *l = cs->conns.next; l != &cs->conns; l = l->next) {
        pc_conn_t *c = pc_list_entry(l, pc_conn_t, link);
        size_t u = pc_conn_usage(c);
        if (c->closing)
            total -= total < u ? total : u; /* on its way out */
        else if (c->internal)
            internal += u;
    }
    /* What the relays between loops hold is not the clients' to share. */
    size_t fair = (cap > internal ? cap - internal : 0) / (cs->nconns > 0 ? cs->nconns : 1);
    for (pc_list_t *l = cs->conns.next; l != &cs->conns; l = l->next) {
        pc_conn_t *c = pc_list_entry(l, pc_conn_t, link);
        n += !c->closing && !c->internal && pc_conn_usage(c) > fair;
    }
    if (total <= goal || n == 0)
        return total;
    shed_t *v = malloc(n * sizeof *v);
    pc_conn_t **chosen = malloc(n * sizeof *chosen);
    if (v == NULL || chosen == NULL) {
        free(v);
        free(chosen);
        return total;
    }
    n = 0;
    for (pc_list_t *l = cs->conns.next; l != &cs->conns; l = l->next) {
        pc_conn_t *c = pc_list_entry(l, pc_conn_t, link);
        size_t u = pc_conn_usage(c);
        if (!c->closing && !c->internal && u > fair)
            v[n++] = (shed_t){c, u};
    }
    qsort(v, n, sizeof *v, shed_order);
    size_t k = 0, freed = 0, unauth = 0;
    for (; k < n && total > goal; k++) {
        chosen[k] = v[k].c;
        v[k].c->shed_at = k + 1;
        unauth += !v[k].c->authed;
        total -= total < v[k].use ? total : v[k].use;
        freed += v[k].use;
    }
    free(v);
    pc_log_warn(cs->log, "connection buffers at %zu bytes, near --max-buffer-memory: closing %zu "
                "connection(s) (%zu without the token) holding %zu bytes over their fair share "
                "of %zu", cs->buf_bytes, k, unauth, freed, fair);
    cs->shed_v = chosen;
    cs->shed_n = k;
    cs->shed_next = 0;
    cs->shed_fair = fair;
    (void)shed_some(cs);
    return total;
}

/* Before the loop polls (and on the tick): the chosen connections not
 * closed yet, a share of this iteration; else, when the cap is near,
 * choose. */
static void shed_sweep(pc_conns_t *cs)
{
    if (cs->buf_checking)
        return;
    if (cs->shed_v != NULL) {
        cs->buf_checking = 1;
        int left = shed_some(cs);
        cs->buf_checking = 0;
        if (left)
            return; /* buf_full stays as chosen */
    }
    if (!cs->buf_check_due)
        return;
    cs->buf_check_due = 0;
    size_t cap = cs->set.max_buffer_memory;
    int full = 0;
    if (cs->buf_bytes > cap - cap / 8) {
        cs->buf_checking = 1;
        full = shed(cs) > cap;
        cs->buf_checking = 0;
    }
    pc_conns_buffer_full(cs, full);
}

/* ---- accepting ---------------------------------------------------------- */

/* Why a new connection is refused (BUSY), or NULL. Counted here. */
static const char *refusal(pc_conns_t *cs, pc_conn_t *c)
{
    if (cs->stopping)
        return "server shutting down";
    if (atomic_load_explicit(cs->node_conns, memory_order_relaxed) > cs->set.max_connections)
        return "too many connections";
    int rc = pc_sources_open(cs->sources, &c->source,
                             (uint32_t)(cs->set.max_conns_per_source > UINT32_MAX
                                            ? UINT32_MAX
                                            : cs->set.max_conns_per_source),
                             now_ms(cs));
    if (rc == PC_EBUSY) {
        cs->stats->source_limit_rejects++;
        return "too many connections from this address";
    }
    if (rc < 0)
        return "too many client addresses";
    c->source_counted = 1;
    pc_conns_buffer_check(cs);
    if (cs->buf_full) {
        cs->stats->buffer_full_rejects++;
        return "server buffer memory full";
    }
    return NULL;
}

/*
 * A connection the node has no memory for. libuv stops a listener whose
 * connection callback does not accept (and starts it again at the next
 * uv_accept), so it is accepted into `reject`, a handle of the set's
 * own, and closed at once; if that handle is still closing from the last
 * one, the next is taken when it is free (reject_closed), and the
 * listener waits that long.
 */
static void reject(pc_conns_t *cs, uv_stream_t *server);

static void reject_closed(uv_handle_t *h)
{
    pc_conns_t *cs = h->data;
    cs->rejecting = 0;
    cs->handles_open--;
    uv_stream_t *next = cs->reject_next;
    cs->reject_next = NULL;
    if (next != NULL && !uv_is_closing((uv_handle_t *)next))
        reject(cs, next);
    if (cs->hooks->gone)
        cs->hooks->gone(cs->owner);
}

static void reject(pc_conns_t *cs, uv_stream_t *server)
{
    if (cs->rejecting) {
        cs->reject_next = server;
        return;
    }
    cs->stats->connections_rejected++;
    uv_tcp_init(cs->loop, &cs->reject);
    cs->reject.data = cs;
    cs->rejecting = 1;
    cs->handles_open++;
    if (uv_accept(server, (uv_stream_t *)&cs->reject) == 0)
        pc_log_warn(cs->log, "accept: out of memory for a new connection; closed it");
    uv_close((uv_handle_t *)&cs->reject, reject_closed);
}

/* Its input arrivals are watched until its socket closes (pc_arrivals.h:
 * the socket is its own). Without, its requests do not cut a heavy share
 * short; nothing else changes. */
static void conn_watch_arrivals(pc_conn_t *c)
{
    if (pc_arrivals_add(&c->cs->arrivals, c->fd, c) == PC_EIO)
        pc_log_debug(c->cs->log, "client %s: input arrivals not watched: %s", c->peer,
                     strerror(errno));
}

static void accept_one(pc_conns_t *cs, uv_stream_t *server, int redis)
{
    pc_conn_t *c;
    if (pc_conn_new(cs, &c) < 0) {
        reject(cs, server);
        return;
    }

    uv_tcp_init(cs->loop, &c->h.tcp);
    c->h.handle.data = c;
    /* A newcomer is heavy until a turn of it is light, which takes a
     * share of the loop earned first (pc_light.h), and starts a turn
     * behind the heavy ones' clock: the clients already here are not
     * queued behind a crowd that connects at once (each of whose first
     * turns may be a 1 MiB answer). */
    c->heavy = 1;
    c->sched[PC_CONN_HEAVY].vtime = cs->sched[PC_CONN_HEAVY].vclock + PC_CONN_TURN_QUANTUM_NS;
    if (cs->hooks->opened)
        cs->hooks->opened(c);
    cs->nconns++;
    atomic_fetch_add_explicit(cs->node_conns, 1, memory_order_relaxed);
    pc_conns_budget_update(cs);
    if (uv_accept(server, &c->h.stream) != 0) {
        pc_conn_close(c, "accept failed");
        return;
    }
    if (redis && (cs->hooks->redis_open == NULL || cs->hooks->redis_open(c) < 0)) {
        pc_conn_close(c, "out of memory for a Redis-protocol connection");
        return;
    }
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    c->hello_since = now_ms(cs);
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        pc_source_of((struct sockaddr *)&ss, &c->source);
        char host[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    }
    uv_tcp_nodelay(&c->h.tcp, 1);
    /* Ignored on failure: it only shortens the wait for a resend,
     * and main's start-up check (check_rto_min) found the kernel takes
     * this value or made it 0. */
    uv_os_fd_t fd;
    if (uv_fileno(&c->h.handle, &fd) == 0) {
        (void)pc_sock_set_rto_min(fd, cs->set.tcp_rto_min_ms);
        /* Read and written through the loop's ring from here on. */
        c->ur = cs->uring != NULL;
        c->fd = fd;
        conn_watch_arrivals(c);
    }
    cs->stats->connections_total++;
    const char *refused = refusal(cs, c);
    if (refused != NULL) {
        /* Refuse at once, with a reason the client can read. */
        cs->stats->connections_rejected++;
        pc_conn_say_error(c, PC_ST_BUSY, refused);
        pc_conn_close(c, NULL);
        return;
    }
    pc_conn_update_reading(c);
}

/*
 * Accepting has a share of each loop iteration, like the turns: libuv
 * accepts every connection that is pending in one callback, each a
 * handful of system calls (and the next poll a first read of each), so
 * connections that piled up while the loop could not run made one long
 * iteration, and a light client's request waited for all of it. Once this
 * iteration's accepting has taken ACCEPT_SHARE_NS, the next connection
 * is left pending -- libuv stops watching the listener until it is taken
 * -- and taken before the loop polls again (accept_deferred, from the
 * prepare handle), which starts the listener again: a crowd is
 * taken in a few connections an iteration, over tens of milliseconds,
 * instead of in one go. At least one connection is taken an iteration.
 */
#define ACCEPT_SHARE_NS ((uint64_t)100 * 1000)

void pc_conns_accept(pc_conns_t *cs, uv_stream_t *server, int redis)
{
    if (cs->accept_work >= ACCEPT_SHARE_NS) {
        if (cs->accept_later[redis != 0] == NULL)
            cs->stats->accepts_deferred++;
        cs->accept_later[redis != 0] = server;
        return;
    }
    uint64_t t0 = uv_hrtime();
    accept_one(cs, server, redis);
    cs->accept_work += uv_hrtime() - t0;
}

/* Takes a connection left for this iteration, and starts the share anew;
 * once an iteration, before the loop polls (turn_prep_cb). */
static void accept_deferred(pc_conns_t *cs)
{
    cs->accept_work = 0;
    for (int redis = 0; redis < 2; redis++) {
        uv_stream_t *server = cs->accept_later[redis];
        cs->accept_later[redis] = NULL;
        /* a listener closed since holds nothing (libuv closed its fd) */
        if (server != NULL && !uv_is_closing((uv_handle_t *)server))
            pc_conns_accept(cs, server, redis);
    }
}

int pc_conns_attach_internal(pc_conns_t *cs, int fd, const char *name)
{
    pc_conn_t *c;
    if (pc_conn_new(cs, &c) < 0) {
        close(fd);
        return PC_ENOMEM;
    }
    uv_pipe_init(cs->loop, &c->h.pipe, 0);
    c->h.handle.data = c;
    c->authed = 1;
    c->internal = 1;
    snprintf(c->peer, sizeof c->peer, "%s", name);
    int rc = uv_pipe_open(&c->h.pipe, fd);
    if (rc < 0) {
        pc_log_error(cs->log, "relay %s: %s", name, uv_strerror(rc));
        close(fd);
        pc_conn_close(c, "relay failed");
        return PC_EIO;
    }
    c->fd = fd;
    conn_watch_arrivals(c);
    pc_conn_update_reading(c);
    return 0;
}

/* ---- the tick, holds, the stop ------------------------------------------ */

/*
 * Buffers under the mmap threshold come from malloc's arenas, which give
 * freed memory back to the system only from their top: after a crowd of
 * connections that held buffers leaves, their holes stay resident. Once
 * the buffers have come down by TRIM_DROP and to under half their peak,
 * malloc_trim releases the free pages of every arena (a walk of the
 * heap, so not on every drop). A crowd rarely leaves at once: what was
 * still held at that trim is trimmed again once it has halved and gone
 * down by TRIM_TAIL, so the tail of the crowd's memory goes back too.
 */
#define TRIM_DROP ((size_t)8 << 20)
#define TRIM_TAIL ((size_t)1 << 20)

static void trim(pc_conns_t *cs)
{
    if (cs->buf_bytes > cs->buf_peak)
        cs->buf_peak = cs->buf_bytes;
    int drop = cs->buf_peak - cs->buf_bytes >= TRIM_DROP && cs->buf_bytes < cs->buf_peak / 2;
    int tail = cs->buf_trimmed - cs->buf_bytes >= TRIM_TAIL && cs->buf_bytes < cs->buf_trimmed / 2;
    if (drop || (cs->buf_trimmed > cs->buf_bytes && tail)) {
        malloc_trim(0);
        cs->buf_peak = cs->buf_bytes;
        cs->buf_trimmed = cs->buf_bytes;
    }
}

/*
 * The tick checks every connection's limits, and a check may close one:
 * a timeout reached (a --hello-timeout that 1,000 connections made at
 * once all reach in the same tick), each close a handful of system calls
 * and the kernel's freeing of what the socket held -- 661 of them made
 * one iteration of 20-24 ms, and a light client's request waited for it
 * (docs/PERFORMANCE.md "Closes in shares"). So the checks take a share
 * of an iteration, like accepting: once they have taken TICK_SHARE_NS
 * (at least one connection), the rest wait for the next iteration, before
 * the loop polls again (turn_prep_cb), with the loop's time then (not
 * the tick's: a frame whose clock started since would look begun in the
 * future, and its timeout reached).
 * Connections checked in this round carry it (`ticked`): a resumed sweep
 * starts over from the head of the list and passes them by -- no
 * pointer into the list is kept between iterations, where any connection
 * may have gone.
 */
static void tick_sweep(pc_conns_t *cs)
{
    /* The loop's time now: a connection's clocks (frame_since, ...) may
     * have started after the tick, and run from the loop's time. */
    uint64_t t0 = uv_hrtime(), now = now_ms(cs) > cs->tick_now ? now_ms(cs) : cs->tick_now;
    int checked = 0;
    pc_list_t *n = cs->conns.next;
    while (n != &cs->conns) {
        pc_conn_t *c = pc_list_entry(n, pc_conn_t, link);
        n = n->next;
        if (c->ticked == cs->tick_round)
            continue;
        if (checked++ > 0 && uv_hrtime() - t0 >= cs->tick_share_ns) {
            cs->stats->ticks_deferred++;
            cs->tick_unfinished = 1;
            return;
        }
        c->ticked = cs->tick_round;
        /* A hook may close c, but a closing connection stays listed until
         * its handle's close callback, so n is still good. */
        if (!c->closing && cs->hooks->tick && cs->hooks->tick(c, now))
            continue;
        pc_conn_check_limits(c, now);
    }
    cs->tick_unfinished = 0;
}

void pc_conns_tick(pc_conns_t *cs, uint64_t now)
{
    trim(cs);
    /* A new round; what the last one had left is checked in it */
    cs->tick_round++;
    cs->tick_now = now;
    tick_sweep(cs);
    /* A safety net: the cap is rechecked wherever memory goes down, and
     * here too, so that newcomers are not refused once memory is free. */
    pc_conns_buffer_check(cs);
    shed_sweep(cs);
}

void pc_conns_hold(pc_conns_t *cs, int on)
{
    cs->held = on;
    if (on)
        return;
    for (pc_list_t *n = cs->conns.next; n != &cs->conns; n = n->next) {
        pc_conn_t *c = pc_list_entry(n, pc_conn_t, link);
        pc_conn_update_reading(c);
        pc_conn_schedule(c);
    }
}

void pc_conns_stop(pc_conns_t *cs)
{
    cs->stopping = 1;
    pc_list_t *n = cs->conns.next;
    while (n != &cs->conns) {
        pc_conn_t *c = pc_list_entry(n, pc_conn_t, link);
        n = n->next;
        if (c->closing)
            continue;
        c->eof = 1;
        pc_conn_process(c);
    }
}

void pc_conns_cut(pc_conns_t *cs)
{
    pc_list_t *n = cs->conns.next;
    while (n != &cs->conns) {
        pc_conn_t *c = pc_list_entry(n, pc_conn_t, link);
        n = n->next;
        pc_conn_close(c, "shutdown");
    }
}

static void handle_closed(uv_handle_t *h)
{
    pc_conns_t *cs = h->data;
    cs->handles_open--;
    if (cs->hooks->gone)
        cs->hooks->gone(cs->owner);
}

void pc_conns_close(pc_conns_t *cs)
{
    pc_conns_flush_deferred(cs);
    if (cs->run_idle.data == cs && !uv_is_closing((uv_handle_t *)&cs->run_idle))
        uv_close((uv_handle_t *)&cs->run_idle, handle_closed);
    if (cs->turn_prep.data == cs && !uv_is_closing((uv_handle_t *)&cs->turn_prep))
        uv_close((uv_handle_t *)&cs->turn_prep, handle_closed);
    if (cs->uring != NULL && !cs->uring_closing) {
        cs->uring_closing = 1;
        pc_uring_close(cs->uring, uring_closed, cs);
    }
}

int pc_conns_idle(const pc_conns_t *cs)
{
    return cs->handles_open == 0 && pc_list_empty(&cs->conns);
}

void pc_conns_pending(const pc_conns_t *cs, unsigned long long *reqs,
                      unsigned long long *relayed, unsigned long long *forwarded)
{
    *reqs = *relayed = *forwarded = 0;
    for (const pc_list_t *n = cs->conns.next; n != &cs->conns; n = n->next) {
        const pc_conn_t *c = pc_list_entry(n, pc_conn_t, link);
        *reqs += c->nreqs;
        for (const pc_list_t *l = c->reqs.next; l != &c->reqs; l = l->next) {
            const pc_req_t *r = pc_list_entry(l, pc_req_t, link);
            *relayed += r->waiting && r->waits_on == PC_REQ_RELAYED;
            *forwarded += r->waiting && r->waits_on == PC_REQ_FORWARDED;
        }
    }
}

void pc_conns_free(pc_conns_t *cs)
{
    pc_sched_free(&cs->sched[PC_CONN_LIGHT]);
    pc_sched_free(&cs->sched[PC_CONN_HEAVY]);
    if (cs->buf_bytes != 0)
        pc_log_error(cs->log, "connection buffer accounting is off by %zu bytes", cs->buf_bytes);
    free(cs->rbuf);
    cs->rbuf = NULL;
    free(cs->shed_v); /* (every connection has closed: no entry is left) */
    cs->shed_v = NULL;
    pc_uring_free(cs->uring);
    cs->uring = NULL;
    pc_arrivals_free(&cs->arrivals);
}
