/*
 * pc_conn.c -- one client connection: input and framing, fair turns,
 * answers in order, output and back-pressure, limits, close.
 */
#include "pc_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/socket.h>

#include "pc_conn_int.h"
#include "pc_resp.h"
#include "pc_sock.h"
#include "pc_unsent.h"

#define READ_CHUNK (64 * 1024)
/* Output buffers bigger than this are given back once the connection is
 * quiet, so one that once fetched a large value does not keep its memory. */
#define CONN_BUF_KEEP (16 * 1024)
#define TICK_QUIET_MS 100

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static int conn_read_owed(pc_conn_t *c);
static void conn_keep_lent(pc_conn_t *c);
static int conn_waiting(const pc_conn_t *c);

static uint64_t now_ms(const pc_conns_t *cs) { return uv_now(cs->loop); }

int pc_conn_new(pc_conns_t *cs, pc_conn_t **out)
{
    pc_conn_t *c = pc_sched_reserve(&cs->sched[PC_CONN_LIGHT], cs->nconn_all + 1) == 0 &&
                           pc_sched_reserve(&cs->sched[PC_CONN_HEAVY], cs->nconn_all + 1) == 0
                       ? calloc(1, sizeof *c)
                       : NULL;
    if (c == NULL)
        return PC_ENOMEM;
    c->cs = cs;
    c->owner = cs->owner;
    c->refs = 1; /* the handle */
    pc_list_init(&c->reqs);
    pc_list_push_back(&cs->conns, &c->link);
    cs->nconn_all++;
    pc_sched_entry_init(&c->sched[PC_CONN_LIGHT]);
    pc_sched_entry_init(&c->sched[PC_CONN_HEAVY]);
    pc_light_init(&c->light, uv_hrtime());
    /* Sealed peer frames fit too: max-frame leaves room for the seal
     * beside the largest key and value (FRAME_SLACK in pc_config.c). */
    pc_proto_reader_init(&c->rd, cs->set.proto.max_frame);
    pc_buf_init(&c->out, 0);
    pc_buf_init(&c->wbuf, 0);
    pc_buf_init(&c->spill, 0);
    pc_proto_reader_account(&c->rd, &cs->buf_bytes);
    pc_buf_set_account(&c->out, &cs->buf_bytes);
    pc_buf_set_account(&c->wbuf, &cs->buf_bytes);
    pc_buf_set_account(&c->spill, &cs->buf_bytes);
    c->fd = -1;
    c->last_active = now_ms(cs);
    *out = c;
    return 0;
}

/* Lets go of the values pins referred to (pc_conn_answer_ref). */
static void pins_release(pc_conns_t *cs, pc_conn_pins_t *ps)
{
    for (unsigned i = 0; i < ps->n; i++)
        ps->v[i].release(ps->v[i].obj);
    cs->buf_bytes -= ps->bytes;
    ps->n = 0;
    ps->bytes = 0;
}

/* Adds p[0..len) to iov[n..] but what *skip still passes over. */
static unsigned iov_add(uv_buf_t *iov, unsigned n, const uint8_t *p, size_t len, size_t *skip)
{
    if (*skip >= len) {
        *skip -= len;
        return n;
    }
    iov[n] = uv_buf_init((char *)p + *skip, (unsigned)(len - *skip));
    *skip = 0;
    return n + 1;
}

/* The buffers a write of b, with ps's values spliced in, takes from byte
 * `skip` of that stream on: at most PINS_IOV of them in iov. */
#define PINS_IOV (2 * PC_CONN_PINS + 1)
static unsigned pins_iov(const pc_buf_t *b, const pc_conn_pins_t *ps, size_t skip, uv_buf_t *iov)
{
    unsigned n = 0;
    size_t from = 0;
    for (unsigned i = 0; i < ps->n; i++) {
        n = iov_add(iov, n, b->data + from, ps->v[i].at - from, &skip);
        n = iov_add(iov, n, ps->v[i].p, ps->v[i].len, &skip);
        from = ps->v[i].at;
    }
    return iov_add(iov, n, b->data + from, b->len - from, &skip);
}

void pc_conn_maybe_free(pc_conn_t *c)
{
    if (c->refs > 0)
        return;
    pc_conns_t *cs = c->cs;
    pc_list_remove(&c->link);
    if (c->flush_queued)
        pc_list_remove(&c->flush_link);
    cs->nconn_all--;
    pc_sched_remove(&cs->sched[PC_CONN_LIGHT], &c->sched[PC_CONN_LIGHT]);
    pc_sched_remove(&cs->sched[PC_CONN_HEAVY], &c->sched[PC_CONN_HEAVY]);
    pc_proto_reader_free(&c->rd);
    pc_buf_free(&c->out);
    pc_buf_free(&c->wbuf);
    pins_release(cs, &c->opins);
    pins_release(cs, &c->wpins);
    pc_buf_free(&c->spill);
    if (c->redis != NULL && cs->hooks->redis_free)
        cs->hooks->redis_free(c);
    free(c);
    pc_conns_buffer_check(cs); /* what it held may let newcomers in again */
    if (cs->hooks->gone)
        cs->hooks->gone(cs->owner);
}

/* ---- output and back-pressure ------------------------------------------- */

/* Answers queued: out, and wbuf but what a first, short write of it took
 * (wskip, epoll). (With io_uring, wbuf counts whole until its send is
 * done: what its short sends took is not subtracted, since nothing would
 * then resume a connection paused at its budget when they brought it
 * under -- its buffered frames would wait, and no output timeout would
 * come.) */
static size_t conn_queued(const pc_conn_t *c)
{
    return c->out.len + c->opins.bytes + c->wbuf.len + c->wpins.bytes - c->wskip;
}

/* Output a client that has not sent the token yet may have queued: room
 * for a few hundred AUTH_REQUIRED answers, not for a flood of them. */
#define UNAUTH_OUT_BUDGET (16 * 1024)
/* The least output budget a connection gets, however many share the
 * loop's buffer memory. */
#define OUT_BUDGET_MIN (64 * 1024)

/*
 * How much output a connection may queue before reading from it pauses:
 * its fair share of the loop's buffer memory (the loop's share of
 * --max-buffer-memory over its connections), at least OUT_BUDGET_MIN and
 * at most --max-output; UNAUTH_OUT_BUDGET before a good HELLO. So what a
 * client that stops reading can hold is its own share, and all of them
 * together about the cap (the shedding in pc_conns.c takes care of the
 * rest). The check follows each answer, so one answer may go past it.
 */
static size_t conn_budget(const pc_conn_t *c)
{
    size_t b = c->cs->out_budget;
    return c->authed || b < UNAUTH_OUT_BUDGET ? b : UNAUTH_OUT_BUDGET;
}

void pc_conns_budget_update(pc_conns_t *cs)
{
    size_t share = cs->set.max_buffer_memory / (cs->nconns > 0 ? cs->nconns : 1);
    if (share < OUT_BUDGET_MIN)
        share = OUT_BUDGET_MIN;
    cs->out_budget = share < cs->set.max_output ? share : cs->set.max_output;
}

static int conn_paused(const pc_conn_t *c)
{
    const pc_conns_t *cs = c->cs;
    if (cs->held) /* pc_conns_hold: nothing is read (the homes' drain) */
        return 1;
    /* The receiving end of a relay carries many clients' requests:
     * pausing it for one would stall them all. Each client is bounded
     * where it is read instead, on its own loop, which also stops at
     * PC_CONN_RELAY_MAX requests out at other loops. */
    if (c->internal)
        return 0;
    return c->nreqs >= cs->set.max_inflight || conn_queued(c) + c->held > conn_budget(c) ||
           c->auth.pending || c->relayed >= PC_CONN_RELAY_MAX || c->blocked;
}

static int conn_output_over(const pc_conn_t *c)
{
    return conn_queued(c) + c->held > conn_budget(c);
}

/* The input ends in a frame (or Redis command) not whole yet. */
static int conn_partial(const pc_conn_t *c)
{
    if (c->redis != NULL)
        return c->partial && pc_proto_reader_pending(&c->rd) > 0;
    return pc_proto_reader_missing(&c->rd) > 0;
}

/*
 * Brings the limit clocks up to date after the connection's state changed
 * (bytes came in, frames were processed, output drained):
 *
 * Frame deadline. Only a partial frame at the front of the input counts,
 * and only while we are reading it: whole frames waiting because the
 * connection is paused (max-inflight, its output budget) are our delay,
 * not the client's, so the clock stops while the connection pauses
 * itself, and restarts when it resumes. The clock restarts whenever a new
 * frame comes to the front (frame_at moves), so a client that keeps
 * completing frames is never cut, however slow its stream as a whole.
 *
 * Output stall. Since when queued output is over the connection's budget
 * (conn_budget) while the client does not take it: the clock runs only
 * while a write is out, and write_cb stops it each time one completes
 * (the client read). Answers held behind a slow request with nothing
 * being written are waiting on us, not on the client, so they pause
 * reading but are no stall.
 *
 * Idle input. Outside processing (no frame body is in use), an empty
 * reader gives its buffer back, so an idle connection holds no input
 * buffer (reads go to the shared one). Output buffers are trimmed by the
 * tick instead (pc_conn_check_limits), once the connection is quiet: here
 * they are empty after every flush, and freeing them then would make a
 * streaming client grow them again, page by page, for every batch.
 */
static void conn_limits_note(pc_conn_t *c)
{
    uint64_t now = now_ms(c->cs);
    size_t pending = pc_proto_reader_pending(&c->rd);
    if (pending == 0 || !conn_partial(c) || c->eof || c->closing ||
        conn_paused(c)) {
        c->frame_since = 0;
    } else if (c->frame_since == 0 || c->frame_at != c->bytes_in - pending) {
        c->frame_since = now;
        c->frame_at = c->bytes_in - pending;
    }
    if (!conn_output_over(c) || !c->writing)
        c->out_since = 0;
    else if (c->out_since == 0)
        c->out_since = now;
    if (c->processing)
        return;
    if (pending == 0)
        pc_proto_reader_free(&c->rd);
}

void pc_conn_update_reading(pc_conn_t *c)
{
    conn_limits_note(c);
    pc_conns_buffer_check(c->cs);
    /* While it waits for its turn, input piles up to a chunk, no more;
     * a heavy one's stays in the kernel (alloc_cb), and with epoll its
     * socket is not watched meanwhile: level-triggered, a thousand
     * flooding sockets were each reported readable, and put off, at every
     * poll until their turn -- a quarter of the loop's time (docs/
     * PERFORMANCE.md "Waiting sockets unwatched"). Its turn watches it
     * again. */
    int waiting = conn_waiting(c);
    int want = !c->closing && !c->eof && !conn_paused(c) && c->spill.len == 0 &&
               !(waiting && pc_proto_reader_pending(&c->rd) >= READ_CHUNK) &&
               !(waiting && c->heavy && !c->ur);
    /* Not read, it is not idle by its own choice: that time earns it no
     * share (pc_light.h), whatever stopped the reading; read again with
     * nothing to do, it earns again. */
    if (!want && !c->light.waiting)
        pc_light_wait(&c->light, uv_hrtime());
    else if (want && c->light.waiting && !waiting)
        pc_light_idle(&c->light, uv_hrtime());
    if (c->ur) {
        pc_conn_ur_reading(c, want);
        return;
    }
    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, alloc_cb, read_cb) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = 0;
    }
}

/*
 * The cap on connection buffers (the loop's share of
 * --max-buffer-memory). Every connection's output budget is its fair
 * share of it (conn_budget), so it is mostly kept without help; past 7/8
 * of it, the connections over their share are shed (pc_conns.c). Only if
 * what is left is still over the cap -- everyone within a share that has
 * shrunk, say -- are new connections refused (BUSY) until it comes down;
 * reading never stops.
 *
 * This check is called wherever the total may have grown or shrunk (a
 * connection processed, accepted, freed), and is cheap: the shedding
 * scans every connection, so it runs once per loop iteration at most
 * (before the loop polls, and on the tick).
 */
void pc_conns_buffer_check(pc_conns_t *cs)
{
    size_t cap = cs->set.max_buffer_memory;
    if (cs->buf_bytes > cap - cap / 8)
        cs->buf_check_due = 1;
    else if (cs->buf_full)
        pc_conns_buffer_full(cs, 0);
}

void pc_conns_buffer_full(pc_conns_t *cs, int full)
{
    if (full == cs->buf_full)
        return;
    cs->buf_full = full;
    if (full)
        pc_log_warn(cs->log, "connection buffers at %zu bytes, over --max-buffer-memory: new "
                    "connections refused", cs->buf_bytes);
    else
        pc_log_info(cs->log, "connection buffers down to %zu bytes: accepting again",
                    cs->buf_bytes);
}

/* What the kernel may hold unsent for c (pc_unsent.h): its budget, or
 * less, what it has earned. */
static void conn_unsent_max_update(pc_conn_t *c)
{
    if (c->internal)
        return;
    size_t t = pc_unsent_target(c->unsent_max, conn_budget(c), c->unsent_earned);
    if (t == 0)
        return;
    uv_os_fd_t fd;
    if (uv_fileno(&c->h.handle, &fd) == 0)
        (void)pc_sock_set_unsent_max(fd, t); /* else the kernel's bound, as before */
    c->unsent_max = t;
}

void pc_conn_write_done(pc_conn_t *c, int status)
{
    c->writing = 0;
    c->out_since = 0; /* the client took a write: not stalled (conn_limits_note) */
    pc_buf_reset(&c->wbuf);
    pins_release(c->cs, &c->wpins);
    c->wskip = 0;
    c->refs--;
    if (status == 0 && c->wfull) /* the client took a backlog */
        c->unsent_earned = pc_unsent_earn(c->unsent_earned, c->cs->set.max_output);
    c->wfull = 0;
    if (c->closing) {
        if (c->ur)
            pc_conn_ur_settle(c);
        pc_conn_maybe_free(c);
        return;
    }
    if (status < 0) {
        pc_conn_close(c, uv_strerror(status));
        return;
    }
    c->last_active = now_ms(c->cs);
    /* Output drained: buffered frames may now be processed, and a
     * draining connection may be done -- that takes a turn; else what
     * came meanwhile goes, and reading may resume. (With io_uring every
     * answer ends here: a turn for nothing each time cost CPU.) */
    if (pc_proto_reader_pending(&c->rd) > 0 || c->spill.len > 0 || c->eof || c->blocked) {
        pc_conn_run(c);
        return;
    }
    pc_conn_flush(c);
    pc_conn_update_reading(c);
}

static void write_cb(uv_write_t *w, int status) { pc_conn_write_done(w->data, status); }

/* Answers came outside c's turn: written before the loop polls, with
 * whatever else comes for c until then (pc_conns_flush_deferred). */
void pc_conn_flush_later(pc_conn_t *c)
{
    if (c->flush_queued || c->closing)
        return;
    pc_list_push_back(&c->cs->flushq, &c->flush_link);
    c->flush_queued = 1;
}

void pc_conns_flush_deferred(pc_conns_t *cs)
{
    while (!pc_list_empty(&cs->flushq)) {
        pc_conn_t *c = pc_list_entry(cs->flushq.next, pc_conn_t, flush_link);
        pc_list_remove(&c->flush_link);
        c->flush_queued = 0;
        pc_conn_flush(c);
    }
}

void pc_conn_flush(pc_conn_t *c)
{
    if (c->closing || c->out.len == 0)
        return;
    conn_unsent_max_update(c); /* also while a write waits: for the next */
    if (c->writing)
        return;
    if (c->ur) { /* with the loop's batch (pc_conns.c submits it before polling) */
        pc_conn_ur_send(c);
        return;
    }
    /* Straight to the socket when it takes it all, as it nearly always
     * does: a queued uv_write would arm the descriptor for writing and
     * disarm it once done, an epoll_ctl each way per answer. Only what
     * the socket does not take now waits for it (uv_write, below). */
    uv_buf_t iov[PINS_IOV];
    unsigned niov = pins_iov(&c->out, &c->opins, 0, iov);
    int n = uv_try_write(&c->h.stream, iov, niov);
    if (n >= 0 && (size_t)n == c->out.len + c->opins.bytes) {
        pc_buf_reset(&c->out);
        pins_release(c->cs, &c->opins);
        c->out_since = 0; /* the client took it: not stalled */
        c->last_active = now_ms(c->cs);
        return;
    }
    if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
        pc_conn_close(c, uv_strerror(n));
        return;
    }
    /* Double buffering: new answers go to `out` while `wbuf` is written, so
     * every answer produced during one loop turn leaves in one write. What
     * the socket took already is skipped, not moved out of the way: after
     * a short write of a 1 MiB answer that was a 0.7 MiB memmove, and
     * 1,000 non-readers' answers made copies half the loop's work. */
    pc_buf_t t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->wpins = c->opins; /* wbuf's were let go when its write was done */
    c->opins.n = 0;
    c->opins.bytes = 0;
    c->wskip = n > 0 ? (size_t)n : 0;
    c->wfull = 1;
    niov = pins_iov(&c->wbuf, &c->wpins, c->wskip, iov);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, &c->h.stream, iov, niov, write_cb);
    if (rc < 0) {
        pc_conn_close(c, uv_strerror(rc));
        return;
    }
    c->writing = 1;
    c->refs++;
}

/* ---- fair turns ----------------------------------------------------------- */

/*
 * A loop serves many connections, and one that pipelines without end,
 * asks for large values, or never reads its answers must not make the
 * others wait. Each connection is served in turns of at most
 * TURN_QUANTUM_NS of the loop's time (pc_conn_process; at least one frame),
 * and those with work left wait in the loop's scheduler for their next
 * turn. There are two classes:
 *
 *   light  connections whose last turn ended before its quantum, and
 *          that take no more than their share of the loop's time
 *          (pc_light.h) -- a client sending a request or a pipeline at
 *          a time and reading the answers;
 *   heavy  those whose last turn used its quantum (a flood, a large
 *          answer), left answers the client has not taken, or was
 *          stopped by its output budget, or that ask faster than their
 *          share (every turn short, but one at every poll); and new
 *          connections until they have earned a share.
 *
 * Each class is ordered by start-time fair queuing (pc_sched.h): by the
 * time its connections have had. An iteration of the loop serves light
 * turns for up to half of TURN_BUDGET_NS, then heavy turns -- at least
 * one, for up to HEAVY_SHARE_NS, fewer once a light client's request has
 * come (light_came) -- then light ones again up to TURN_BUDGET_NS, and
 * polls again: a light client's request waits for one heavy turn, and at
 * most one iteration, however many heavy clients there are and however
 * large their answers, and the heavy ones share their part fairly,
 * without starving. While nobody waits, a connection is served as soon
 * as its input is read.
 *
 * HEAVY_SHARE_NS is what a light client waits behind heavy ones at
 * most (with as much again when light work was longer, run_idle_cb).
 * At 500 us, under 100 connections that flood and never read, a light
 * client's p99 was 1.7-3.3x its p99 without them; at 250 us, 1.0-1.8x.
 * Heavy clients alone pay for the extra polls: 6-11% more CPU per
 * operation in docs/PERFORMANCE.md's runs ("A shorter heavy share").
 *
 * Work is the loop's time, measured (uv_hrtime, about 25 ns a read on
 * these machines; see conn_process_frames for how often): decoding,
 * serving, encoding, handing the answers to the kernel, and reading the
 * socket. Time is what the others wait for; counting bytes instead
 * misjudged it by an order of magnitude both ways (a PING's cost is
 * nearly all per request, a 1 MiB answer's nearly all per byte).
 */
#define TURN_QUANTUM_NS PC_CONN_TURN_QUANTUM_NS
_Static_assert(PC_LIGHT_TURN_MAX_NS == TURN_QUANTUM_NS, "a turn spends at most its quantum of light share");
#define TURN_BUDGET_NS ((uint64_t)500 * 1000)
#define HEAVY_SHARE_NS ((uint64_t)250 * 1000)
#define TURN_CLOCK_EVERY 8
#define TURN_CLOCK_BYTES ((size_t)16 * 1024)
#define ARRIVALS_LOOK 16 /* reports taken per look between heavy turns (light_came) */
enum { LIGHT = PC_CONN_LIGHT, HEAVY = PC_CONN_HEAVY };

/*
 * A heavy connection's socket has the kernel's retransmission floor
 * (200 ms), a light one's --tcp-rto-min. The short floor is for a
 * request and its answer, a segment each: lost, only the retransmission
 * timer repairs it. But the floor also times the kernel's tail loss
 * probe, which resends the last segment out when no acknowledgement came
 * within it, and a client that has stopped reading, or reads only now
 * and then, delays its acknowledgements (40 ms and more): each burst of
 * answers was resent for nothing: 1,000 such clients made 2,200 resends
 * a second, run in the timer interrupt of the node's own CPU at its
 * clock tick -- 6% of that CPU, in bursts taken from whoever was served
 * then (docs/PERFORMANCE.md "Resends for clients that do not read"). A heavy
 * client has segments enough in flight that a loss is repaired without
 * the timer. One system call when the class changes, none otherwise.
 */
static void conn_rto_follow(pc_conn_t *c)
{
    uint64_t floor = c->cs->set.tcp_rto_min_ms;
    if (floor == 0 || c->fd < 0 || c->rto_kernel == c->heavy)
        return;
    c->rto_kernel = c->heavy;
    (void)pc_sock_set_rto_min(c->fd, c->heavy ? PC_SOCK_RTO_MIN_MAX_MS : floor);
}

static int conn_waiting(const pc_conn_t *c)
{
    return pc_sched_queued(&c->sched[LIGHT]) || pc_sched_queued(&c->sched[HEAVY]);
}

static void conn_turn(pc_conn_t *c)
{
    c->refs++; /* processing may close it; keep it until we are done */
    pc_conn_process(c);
    c->refs--;
    pc_conn_maybe_free(c);
}

/* Serves the next connection of a class; 0 if none waits. */
static int serve_next(pc_conns_t *cs, int cls)
{
    pc_sched_entry_t *e = pc_sched_pop(&cs->sched[cls]);
    if (e == NULL)
        return 0;
    conn_turn(cls == LIGHT ? pc_list_entry(e, pc_conn_t, sched[LIGHT])
                           : pc_list_entry(e, pc_conn_t, sched[HEAVY]));
    return 1;
}

/* A report of pc_arrivals: c is light (internal ones are always) and has
 * input not read yet -- with io_uring, its receive may have taken the
 * input already, and the report is taken at its word. */
static int light_input(void *arg, void *ctx)
{
    (void)ctx;
    const pc_conn_t *c = arg;
    if (c->closing || c->heavy || c->fd < 0)
        return 0;
    return c->ur || (c->reading && pc_sock_unread(c->fd) > 0);
}

/* Whether a light client's request came since the last look: at most
 * ARRIVALS_LOOK reports a look (each light one a system call), the rest
 * left to the next. */
static int light_came(pc_conns_t *cs)
{
    return pc_arrivals_any(&cs->arrivals, ARRIVALS_LOOK, light_input, NULL);
}

/* The loop thread's CPU time, ns (0 if it cannot be read). A system
 * call, about 1 us here: read at most twice an iteration, and only while
 * turns wait. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void pc_conns_iteration_begins(pc_conns_t *cs)
{
    cs->turn_work = 0;
    cs->heavy_work = 0;
    cs->poll_cpu_at = uv_is_active((const uv_handle_t *)&cs->run_idle) ? thread_cpu_ns() : 0;
}

/*
 * The light turns' time since the loop last polled, at most the loop
 * thread's CPU time in that span. Turns are timed by the clock on the
 * wall (uv_hrtime; the thread's clock is a system call), so a turn the
 * kernel preempted -- a busy machine -- counts as long as the loop did not
 * run. A light turn counted so made the heavy share as long (run_idle_cb):
 * with two floods of 80 us turns, a light client's request waited for up
 * to 14 heavy turns instead of 1-2 (test_conn_turns
 * test_light_request_cuts_heavy_share, beside a clean-clone CI run).
 * Read only when it could matter: light time of more than one turn's
 * quantum.
 */
static uint64_t light_on_cpu(const pc_conns_t *cs, uint64_t light)
{
    if (light <= TURN_QUANTUM_NS || cs->poll_cpu_at == 0)
        return light;
    uint64_t now = thread_cpu_ns();
    if (now == 0)
        return light;
    uint64_t cpu = now > cs->poll_cpu_at ? now - cs->poll_cpu_at : 0;
    return cpu < light ? cpu : light;
}

/*
 * Completions (Redis replies) never process a connection's input
 * themselves: they schedule it (pc_conn_schedule). Processing inline
 * would nest -- a reply completes a request, processing starts the next
 * request, which may complete at once and process another connection --
 * with unbounded depth, and with callers up the stack still holding
 * per-key state that a nested call could free.
 */
static void run_idle_cb(uv_idle_t *h)
{
    pc_conns_t *cs = h->data;
    /* The light turns served the moment their input came (in the last
     * poll, and with io_uring also in the submission before it) had
     * turn_work of the loop's time: the heavy ones may have as much now.
     * Else, with many light clients, they got one turn an iteration while
     * an iteration that handles a thousand connections' input lasts
     * milliseconds: with io_uring, where input waiting for a turn is read
     * all the same and makes the next turn long (heavy), a tenth of 1,000
     * pipelining clients waited 0.4-7 s, every one of them in the heavy
     * queue. What heavy connections had in that poll (their reads, turns
     * served at once) is part of their share, not the light ones': else
     * an iteration gave them the budget twice over, once as they were
     * read and again here, and a light client waited for both. */
    uint64_t light = light_on_cpu(cs, cs->turn_work > cs->heavy_work
                                          ? cs->turn_work - cs->heavy_work
                                          : 0);
    uint64_t share = light > HEAVY_SHARE_NS ? light : HEAVY_SHARE_NS;
    uint64_t heavy_budget = share > cs->heavy_work ? share - cs->heavy_work : 0;
    cs->turn_work = 0;
    while (cs->turn_work < TURN_BUDGET_NS / 2 && serve_next(cs, LIGHT))
        ;
    /* The heavy share ends early once a light client's request has come,
     * and the heavy ones have had as much as the light ones in this
     * iteration: the loop polls again, and the request waits for one
     * heavy turn, not for all of them. */
    if (serve_next(cs, HEAVY))
        while (cs->turn_work < heavy_budget && !(cs->heavy_work >= light && light_came(cs)) &&
               serve_next(cs, HEAVY))
            ;
    while (cs->turn_work < TURN_BUDGET_NS && serve_next(cs, LIGHT))
        ;
    if (pc_sched_count(&cs->sched[LIGHT]) + pc_sched_count(&cs->sched[HEAVY]) == 0)
        uv_idle_stop(&cs->run_idle);
}

void pc_conns_wake(pc_conns_t *cs)
{
    if (!uv_is_active((uv_handle_t *)&cs->run_idle))
        uv_idle_start(&cs->run_idle, run_idle_cb); /* it stops itself, nobody waiting */
}

/* (Heap room is reserved for every connection when it is made, so the
 * push cannot fail.) */
void pc_conn_schedule(pc_conn_t *c)
{
    pc_conns_t *cs = c->cs;
    if (c->closing || conn_waiting(c))
        return;
    (void)pc_sched_push(&cs->sched[c->heavy], &c->sched[c->heavy]);
    pc_light_wait(&c->light, uv_hrtime()); /* asking all the while it waits */
    if (c->heavy && c->reading && !c->ur) { /* unwatched until its turn */
        uv_read_stop(&c->h.stream);
        c->reading = 0;
    }
    if (!uv_is_active((uv_handle_t *)&cs->run_idle))
        uv_idle_start(&cs->run_idle, run_idle_cb);
}

/* A light one is served now unless light ones wait (their turns are
 * short, and they come in order); a heavy one only if nobody waits and
 * this iteration's budget is not spent, else in its turn. A relay's
 * internal connection carries many clients of another loop, each bounded
 * there: it is always served at once. */
void pc_conn_run(pc_conn_t *c)
{
    pc_conns_t *cs = c->cs;
    if (conn_waiting(c))
        return; /* its turn will come */
    int now = c->internal || (!c->heavy ? pc_sched_count(&cs->sched[LIGHT]) == 0
                                        : pc_sched_count(&cs->sched[LIGHT]) == 0 &&
                                              pc_sched_count(&cs->sched[HEAVY]) == 0 &&
                                              cs->turn_work < HEAVY_SHARE_NS);
    if (now)
        pc_conn_process(c);
    else
        pc_conn_schedule(c);
}

/* ---- input -------------------------------------------------------------- */

void pc_conn_bad_frame(pc_conn_t *c, uint32_t status, const char *why)
{
    c->cs->stats->bad_frames++;
    pc_log_info(c->cs->log, "client %s: %s; closing the connection", c->peer, why);
    /* Best effort: answers still queued behind a Redis call are dropped. */
    pc_conn_say_error(c, status, why);
    pc_conn_close(c, NULL);
}

void pc_conn_say_error(pc_conn_t *c, uint32_t status, const char *why)
{
    if (c->redis == NULL) {
        (void)pc_proto_encode_error(&c->out, 0, 0, status, why);
        return;
    }
    char line[256];
    snprintf(line, sizeof line, "ERR %s", why);
    (void)pc_resp_error(&c->out, line);
}

/* A Redis-protocol connection's next command, if whole: 1 = one was
 * taken (go on), 0 = stop (none whole yet, or c was closed). A command
 * that cannot fit the input buffer ends the connection. */
static int conn_redis_command(pc_conn_t *c)
{
    size_t n = pc_proto_reader_pending(&c->rd), used = 0;
    if (n == 0) {
        c->partial = 0;
        return 0;
    }
    int rc = c->cs->hooks->redis_command(c, pc_proto_reader_peek(&c->rd), n, &used);
    if (rc < 0 || c->closing)
        return 0;
    if (rc == 2) { /* it waits for answers still out: one leaving schedules c */
        c->partial = 0;
        c->blocked = 1;
        return 0;
    }
    if (rc == 0) {
        c->partial = 1;
        if (n >= pc_proto_reader_cap(&c->rd))
            pc_conn_bad_frame(c, PC_ST_TOO_LARGE, "Protocol error: command over max-frame bytes");
        return 0;
    }
    c->partial = 0;
    pc_proto_reader_skip(&c->rd, used);
    return 1;
}

/* One turn, begun at t0 (uv_hrtime): frames until the input runs out, a
 * limit pauses the connection, or the turn has lasted TURN_QUANTUM_NS (a
 * relay's internal connection has no quantum). */
static void conn_process_frames(pc_conn_t *c, uint64_t t0)
{
    pc_conns_t *cs = c->cs;
    /* The clock is read every TURN_CLOCK_EVERY frames, and after any frame
     * that made TURN_CLOCK_BYTES of output (a large answer is what makes
     * a frame slow): a read per frame cost pipelined throughput 3.5%. */
    unsigned frames = 0;
    size_t out_at = c->out.len + c->opins.bytes + c->held;
    /* A pipelined batch: its store lookups are hinted before the first is
     * served (not a peer's sealed frames, nor a stranger's before HELLO). */
    if (cs->hooks->ahead != NULL && c->authed && !c->sealed && c->redis == NULL) {
        pc_bytes_t bodies[PC_CONN_AHEAD];
        size_t n = pc_proto_reader_ahead(&c->rd, bodies, PC_CONN_AHEAD);
        if (n > 1)
            cs->hooks->ahead(c, bodies, n);
    }
    for (;;) {
        if (c->closing || conn_paused(c))
            break;
        size_t out_now = c->out.len + c->opins.bytes + c->held;
        if (!c->internal && (++frames % TURN_CLOCK_EVERY == 0 ||
                             out_now - out_at > TURN_CLOCK_BYTES || out_now < out_at)) {
            if (uv_hrtime() - t0 >= TURN_QUANTUM_NS)
                break;
            out_at = out_now;
        }
        if (c->redis != NULL) {
            if (conn_redis_command(c))
                continue;
            if (c->closing || c->blocked || c->spill.len == 0 || pc_conn_unspill(c) == 0)
                return;
            continue;
        }
        const uint8_t *body;
        uint32_t len;
        int rc = pc_proto_reader_next(&c->rd, &body, &len);
        if (rc == 0) {
            if (c->spill.len > 0 && pc_conn_unspill(c) > 0)
                continue;
            break;
        }
        if (rc < 0) {
            /* Before a good HELLO on a node that wants the token, what is
             * not a request at all is told to authenticate, whatever is
             * wrong with it (PROTOCOL.md §5.1), as pc_dispatch tells a
             * malformed body. */
            if (!c->authed)
                pc_conn_bad_frame(c, PC_ST_AUTH_REQUIRED, "send HELLO with the token first");
            else if (rc == PC_ETOOBIG)
                pc_conn_bad_frame(c, PC_ST_TOO_LARGE, "frame length over max-frame");
            else
                pc_conn_bad_frame(c, PC_ST_BAD_REQUEST, "zero-length frame");
            return;
        }
        if (pc_guard_on(cs->guard) && (c->sealed || pc_seal_is_sealed(body, len))) {
            /* A peer's frame: opened in place (the reader's buffer is ours
             * to write); anything that fails the key check ends the
             * connection without a word (the guard counts why). */
            uint8_t *plain;
            size_t plen;
            rc = pc_guard_open(cs->guard, PC_SEAL_PEER_REQ, (uint8_t *)(uintptr_t)body, len,
                               &plain, &plen);
            if (rc < 0) {
                cs->stats->peer_rejected++;
                cs->stats->bad_frames++;
                pc_log_debug(cs->log, "client %s: frame failed the cluster-key check (%s)",
                             c->peer, pc_strerror(rc));
                pc_conn_close(c, "cluster-key check failed");
                return;
            }
            if (!c->sealed) {
                c->sealed = 1;
                c->authed = 1;
                pc_seal_stream_init(&c->seal);
            }
            body = plain;
            len = (uint32_t)plen;
        } else if (pc_seal_is_sealed(body, len)) {
            pc_conn_bad_frame(c, PC_ST_BAD_REQUEST,
                              "sealed frame, but this node runs without a cluster key");
            return;
        }
        cs->hooks->frame(c, body, len);
    }
}

/*
 * Processes buffered frames until the buffer is empty, a limit pauses the
 * connection, or its turn is up; then writes and adjusts reading. Answers
 * that complete during dispatch call back in here; the guard turns that
 * into a no-op, since the outer loop is still running.
 */
void pc_conn_process(pc_conn_t *c)
{
    pc_conns_t *cs = c->cs;
    if (c->processing)
        return;
    pc_sched_remove(&cs->sched[LIGHT], &c->sched[LIGHT]); /* served now */
    pc_sched_remove(&cs->sched[HEAVY], &c->sched[HEAVY]);
    c->processing = 1;
    c->blocked = 0; /* asked again */
    uint64_t t0 = uv_hrtime();
    c->turn_t0 = t0;
    int lent = c->read_owed && conn_read_owed(c);
    conn_process_frames(c, t0);
    if (lent)
        conn_keep_lent(c);
    c->processing = 0;
    if (!c->closing)
        pc_conn_flush(c);
    uint64_t end = uv_hrtime(), work = end - t0;
    pc_conn_lat_turn_done(c, end);
    pc_sched_charge(&cs->sched[c->heavy], &c->sched[c->heavy], work);
    cs->turn_work += work;
    if (c->heavy)
        cs->heavy_work += work;
    cs->turns++;
    if (c->closing)
        return;
    /* A turn that used its quantum and left whole frames waiting makes the
     * connection heavy -- also when a limit paused it (a client that
     * never reads pauses after every large answer); one that ran out of
     * input makes it light, however long it took (the kernel may have
     * preempted the loop during a one-frame turn) -- unless it was heavy
     * and its last read filled the buffer it was given: then the input
     * ran out here, not at the client, which floods on. Such a turn is
     * heavy's last word only once (read_full is spent): the next read
     * says again. Else a flood became light each time its buffered input
     * ran out, and was then served the moment its next chunk came, ahead
     * of the light clients that came after it in the same poll. */
    int more = (pc_proto_reader_pending(&c->rd) > 0 && !conn_partial(c)) || c->spill.len > 0;
    /* Nor is a turn light that leaves answers waiting for the client to
     * take them (a write the socket did not take whole): a flood that
     * writes in small blocks never fills a read, and one that does not
     * read was served at once as a light client: 599 of them in one poll
     * of a 98 ms iteration, under 1,000 such clients; and while this
     * kept only a heavy one heavy, a non-reader that had turned light
     * once (its blocks each fit a turn, and the kernel still took the
     * answers) stayed light after its answers backed up. (An io_uring
     * send is always in flight here: only one that was short already is
     * a sign.) */
    int backlog = c->writing && (!c->ur || c->wfull);
    int flooding = !more && ((c->heavy && c->read_full) || backlog);
    /* And a turn its output budget stopped with whole frames left is
     * heavy however short: the client asks faster than it takes the
     * answers. Light, a thousand non-readers whose writes completed in
     * one poll were each served at once as that poll reported them: 288
     * turns and 288 reads in one poll, an iteration of 42 ms. */
    int overfull = more && conn_output_over(c);
    /* And light is also a rate (pc_light.h): a client whose every turn
     * is short but who asks at every poll is heavy. */
    int in_share = pc_light_spend(&c->light, end, work);
    if (!more)
        c->read_full = 0;
    c->heavy = !c->internal &&
               ((work >= TURN_QUANTUM_NS && more) || flooding || overfull || !in_share);
    conn_rto_follow(c);
    if (c->eof && !more && pc_list_empty(&c->reqs) && conn_queued(c) == 0) {
        pc_conn_close(c, NULL);
        return;
    }
    /* Whole frames left, and nothing holds them back (any more: the
     * flush above may have brought its output under its budget): its
     * next turn, in order. Not only a heavy one's: a turn that a limit
     * stopped may have been short (answers written from where they lie
     * cost little), and nothing else would serve what it has buffered --
     * no read comes for input already read. */
    if (more && !conn_paused(c))
        pc_conn_schedule(c);
    pc_conn_update_reading(c);
}

/*
 * Where a read goes. A connection with no buffered input reads into the
 * loop's one shared buffer (pc_conn_read_lent), so idle connections, and
 * those whose requests arrive whole, hold no input memory. One with a
 * partial frame reads into its own reader, and no further than the end of
 * that frame: the rest of the stream goes to the shared buffer again.
 * libuv calls read_cb right after alloc_cb, before any other callback, so
 * one shared buffer serves every connection of the loop.
 */
/* The buffer the next read of c goes to (above): the loop's shared one,
 * or room in its own reader; an empty one if there is no memory. */
static void conn_read_buf(pc_conn_t *c, uv_buf_t *buf)
{
    pc_conns_t *cs = c->cs;
    if (pc_proto_reader_pending(&c->rd) == 0 && cs->rbuf != NULL && !cs->rbuf_busy) {
        cs->rbuf_busy = 1;
        *buf = uv_buf_init((char *)cs->rbuf, READ_CHUNK);
        return;
    }
    size_t want = pc_proto_reader_missing(&c->rd);
    if (want == 0 || want > READ_CHUNK)
        want = READ_CHUNK;
    uint8_t *p = NULL;
    size_t avail = 0;
    if (pc_proto_reader_reserve(&c->rd, want, &p, &avail) < 0)
        avail = 0;
    *buf = uv_buf_init((char *)p, (unsigned)(avail < want ? avail : want));
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    pc_conn_t *c = h->data;
    pc_conns_t *cs = c->cs;
    (void)suggested;
    /* Input of a connection that waits for its turn, or of a heavy one
     * once this iteration's budget is spent, stays in the kernel until
     * its turn (TCP flow control holds its sender back meanwhile): read
     * now, it would only be copied and held. An empty buffer is libuv's
     * "not now" (read_cb sees UV_ENOBUFS; the socket stays readable). A
     * heavy one put off that way is queued for a turn (read_cb), which
     * reads it (conn_read_owed). */
    if (!c->internal && (conn_waiting(c) || (c->heavy && cs->turn_work >= HEAVY_SHARE_NS))) {
        c->read_deferred = 1;
        c->read_owed = c->heavy && !conn_waiting(c);
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    cs->read_at = uv_hrtime(); /* the read() comes next: read_cb charges it */
    conn_read_buf(c, buf);     /* empty: libuv reports UV_ENOBUFS to read_cb */
}

/*
 * The read a heavy connection's turn owes it (alloc_cb put it off, and it
 * was queued instead of left watched): as read_cb would take it, but the
 * turn that follows serves it, and the read is part of that turn's time.
 * Returns 1 if what it read is lent from the loop's shared buffer: the
 * turn keeps what it leaves of it (conn_keep_lent) before it ends.
 */
static int conn_read_owed(pc_conn_t *c)
{
    pc_conns_t *cs = c->cs;
    c->read_owed = 0;
    /* Nothing to read for now: its turn watches it again, or not. */
    if (c->closing || c->eof || c->fd < 0 || c->ur || conn_paused(c) || c->spill.len > 0)
        return 0;
    uv_buf_t buf;
    conn_read_buf(c, &buf);
    int shared = buf.base != NULL && buf.base == (char *)cs->rbuf;
    if (shared)
        cs->rbuf_busy = 0; /* nothing else reads until the turn is done */
    if (buf.len == 0) {
        pc_conn_close(c, "out of memory for input");
        return 0;
    }
    ssize_t n;
    do
        n = recv(c->fd, buf.base, buf.len, 0);
    while (n < 0 && errno == EINTR);
    if (n == 0) {
        c->eof = 1; /* half-closed: its answers still go out */
        return 0;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            pc_conn_close(c, strerror(errno));
        return 0;
    }
    c->bytes_in += (uint64_t)n;
    c->read_full = (size_t)n == buf.len;
    c->last_active = now_ms(cs);
    if (!shared) {
        pc_proto_reader_commit(&c->rd, (size_t)n);
        return 0;
    }
    if (pc_proto_reader_lend(&c->rd, cs->rbuf, (size_t)n) < 0) {
        pc_conn_close(c, "input buffered while reading into the shared buffer");
        return 0;
    }
    return 1;
}

/* What a turn left of input lent from the shared buffer moves to the
 * connection's own reader (pc_conn_read_lent, below). */
static void conn_keep_lent(pc_conn_t *c)
{
    if (c->closing) {
        pc_proto_reader_free(&c->rd); /* forget the rest */
        return;
    }
    if (pc_proto_reader_keep(&c->rd) < 0)
        pc_conn_close(c, "out of memory keeping a partial frame");
}

/*
 * n bytes arrived in a buffer that is not the connection's (the loop's
 * shared one, or one of the io_uring's): whole frames are dispatched
 * straight from it, and what is left -- a partial frame, or frames not
 * processed because the connection paused -- moves to the connection's
 * own reader before the next read reuses the buffer.
 *
 * That is safe because nothing keeps a pointer into a frame body once
 * the frame hook returns (the reader's contract: a body moves on the next
 * reserve); what outlives dispatch is copied by whoever keeps it (see
 * pc_dispatch.h).
 */
void pc_conn_read_lent(pc_conn_t *c, const uint8_t *p, size_t n)
{
    if (pc_proto_reader_lend(&c->rd, p, n) < 0) {
        pc_conn_close(c, "input buffered while reading into the shared buffer");
        return;
    }
    pc_conn_run(c);
    if (c->closing) {
        pc_proto_reader_free(&c->rd); /* forget the rest */
        return;
    }
    /* Keeping what was not served is a copy into fresh memory (page
     * faults): work too, as the read was. Uncounted, a poll that read
     * 167 new floods and kept each for its turn worked 3 ms while the
     * heavy share looked unspent (0.25 ms of reads), and read on. */
    uint64_t k0 = pc_proto_reader_pending(&c->rd) > 0 ? uv_hrtime() : 0;
    if (pc_proto_reader_keep(&c->rd) < 0) {
        pc_conn_close(c, "out of memory keeping a partial frame");
        return;
    }
    if (k0 != 0) {
        uint64_t took = uv_hrtime() - k0;
        c->cs->turn_work += took;
        if (c->heavy)
            c->cs->heavy_work += took;
    }
    /* The copy is new memory: the cap, and the trim, see it now. */
    pc_conn_update_reading(c);
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    pc_conn_t *c = st->data;
    pc_conns_t *cs = c->cs;
    int shared = buf->base != NULL && buf->base == (char *)cs->rbuf;
    if (shared)
        cs->rbuf_busy = 0;
    if (n == UV_ENOBUFS && c->read_deferred) {
        c->read_deferred = 0; /* alloc_cb: not now (else: no memory, below) */
        /* Left watched, level-triggered, it was reported and put off
         * again at every poll until one had share left: 1,000
         * connections that had just opened and asked, 100-900 of them
         * put off in each poll, 0.2-0.5 ms of it (docs/PERFORMANCE.md
         * "Reads put off wait in the queue"). Queued, it is unwatched
         * (pc_conn_schedule) and its turn reads. */
        if (c->read_owed)
            pc_conn_schedule(c);
        return;
    }
    if (n > 0) {
        c->bytes_in += (uint64_t)n;
        c->read_full = (size_t)n == buf->len;
        c->last_active = now_ms(cs);
        uint64_t took = uv_hrtime() - cs->read_at; /* reading is work too */
        cs->turn_work += took;
        if (c->heavy)
            cs->heavy_work += took;
        if (shared) {
            pc_conn_read_lent(c, cs->rbuf, (size_t)n);
            return;
        }
        pc_proto_reader_commit(&c->rd, (size_t)n);
        pc_conn_run(c);
        return;
    }
    if (n == UV_EOF) {
        /* The client may have half-closed and still want its answers. */
        c->eof = 1;
        pc_conn_run(c);
        return;
    }
    if (n < 0)
        pc_conn_close(c, uv_strerror((int)n));
}

/* ---- close ---------------------------------------------------------------- */

void pc_conn_closed_cb(uv_handle_t *h)
{
    pc_conn_t *c = h->data;
    c->refs--;
    pc_conn_maybe_free(c);
}

void pc_conn_close(pc_conn_t *c, const char *why)
{
    if (c->closing)
        return;
    pc_conns_t *cs = c->cs;
    if (why)
        pc_log_debug(cs->log, "client %s: closing: %s", c->peer, why);
    /* Orderly close after a bad frame: push out what is queued first. */
    if (why == NULL && c->out.len > 0 && !c->writing) {
        uv_buf_t iov[PINS_IOV];
        uv_try_write(&c->h.stream, iov, pins_iov(&c->out, &c->opins, 0, iov));
    }
    /* Nothing more is written: what was queued goes now, not when the
     * last request in flight comes back (wbuf waits for its write's
     * cancellation). */
    pc_buf_free(&c->out);
    pins_release(cs, &c->opins);
    c->closing = 1;
    pc_conns_shed_forget(c);
    if (!c->internal) {
        cs->nconns--;
        atomic_fetch_sub_explicit(cs->node_conns, 1, memory_order_relaxed);
        pc_conns_budget_update(cs);
    }
    if (c->source_counted) {
        pc_sources_close(cs->sources, &c->source, now_ms(cs));
        c->source_counted = 0;
    }
    if (c->reading && !c->ur)
        uv_read_stop(&c->h.stream);
    c->reading = 0;
    /* Answers that are ready go nowhere now. */
    pc_list_t *n = c->reqs.next;
    while (n != &c->reqs) {
        pc_req_t *r = pc_list_entry(n, pc_req_t, link);
        n = n->next;
        if (r->waiting == 0) /* else a callback will still come for it */
            pc_req_free(r);
    }
    pc_buf_free(&c->spill);
    /* Input that will never be served: gone now, not when the handle has
     * closed (with io_uring, once the ring has let go of the socket). Not
     * while a turn reads frames from it. */
    if (!c->processing)
        pc_proto_reader_free(&c->rd);
    if (c->ur) { /* the handle closes once the ring is done with the socket */
        pc_conn_ur_close(c);
        return;
    }
    uv_close(&c->h.handle, pc_conn_closed_cb);
}

size_t pc_conn_unsent(const pc_conn_t *c)
{
    size_t n = conn_queued(c) + c->held;
    uv_os_fd_t fd;
    if (!c->internal && uv_fileno((const uv_handle_t *)&c->h.handle, &fd) == 0)
        n += pc_sock_unacked(fd);
    return n;
}

void pc_conn_reset(pc_conn_t *c, const char *why)
{
    if (c->closing)
        return;
    uv_os_fd_t fd;
    if (c->internal || uv_fileno(&c->h.handle, &fd) != 0 || pc_sock_reset_on_close(fd) != 0)
        pc_log_debug(c->cs->log, "client %s: no reset, an orderly close", c->peer);
    pc_conn_close(c, why);
}

/* ---- limits --------------------------------------------------------------- */

/* Quiet for a tick with nothing queued: large output buffers go (see
 * conn_limits_note), so a connection that once fetched a large value
 * does not keep its memory while idle. */
static void conn_trim(pc_conn_t *c, uint64_t now)
{
    if (!c->writing && c->out.len == 0 && now - c->last_active >= TICK_QUIET_MS) {
        if (c->out.cap > CONN_BUF_KEEP)
            pc_buf_free(&c->out);
        if (c->wbuf.cap > CONN_BUF_KEEP)
            pc_buf_free(&c->wbuf);
    }
}

/* The clocks are kept by conn_limits_note; a clock not running is 0. The
 * tick checks them, so they fire within a tick of their due time. */
void pc_conn_check_limits(pc_conn_t *c, uint64_t now)
{
    pc_conns_t *cs = c->cs;
    if (c->closing)
        return;
    if (c->internal) { /* another loop's relay: none of the clients' limits */
        conn_trim(c, now);
        return;
    }
    if (cs->set.frame_timeout_ms > 0 && c->frame_since != 0 &&
        now - c->frame_since >= cs->set.frame_timeout_ms) {
        cs->stats->frame_timeouts++;
        pc_log_info(cs->log, "client %s: frame not complete %llu ms after it began; closing",
                    c->peer, (unsigned long long)(now - c->frame_since));
        /* Tell it why, like a bad frame: it may be a client that is only
         * slow, and it is still reading. */
        pc_conn_say_error(c, PC_ST_BAD_REQUEST, "frame not complete within the frame timeout");
        pc_conn_close(c, NULL);
        return;
    }
    if (!c->authed && !c->auth.pending && now - c->hello_since >= cs->set.hello_timeout_ms) {
        cs->stats->hello_timeouts++;
        pc_log_info(cs->log, "client %s: no good HELLO within --hello-timeout; closing", c->peer);
        /* A client with answers still waiting here has stopped reading
         * (its socket took no more): it would not read the error either,
         * and an orderly close would leave the socket to the kernel after
         * it, its answers unsent and the client's window shut, until its
         * zero-window probes give up (unless input the node never read
         * made the kernel reset it anyway). It is reset, as an output
         * timeout is. */
        if (conn_queued(c) + c->held > 0) {
            pc_conn_reset(c, "no HELLO within --hello-timeout, its answers unread");
            return;
        }
        pc_conn_say_error(c, PC_ST_AUTH_REQUIRED,
                          c->redis != NULL ? "no AUTH with the token within the hello timeout"
                                           : "no HELLO with the token within the hello timeout");
        pc_conn_close(c, NULL);
        return;
    }
    if (c->out_since != 0 && now - c->out_since >= cs->set.output_timeout_ms) {
        cs->stats->output_timeouts++;
        pc_log_info(cs->log, "client %s: %zu bytes of replies unread for %llu ms; closing",
                    c->peer, conn_queued(c) + c->held,
                    (unsigned long long)(now - c->out_since));
        pc_conn_reset(c, "output timeout");
        return;
    }
    if (cs->set.idle_timeout_ms > 0 && c->nreqs == 0 && !c->writing && !c->auth.pending &&
        now - c->last_active >= cs->set.idle_timeout_ms) {
        cs->stats->idle_timeouts++;
        pc_conn_close(c, "idle timeout");
        return;
    }
    conn_trim(c, now);
}
