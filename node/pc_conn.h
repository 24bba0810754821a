/*
 * pc_conn.h -- client connections of one event loop: reading and framing,
 * fair turns, answers in request order, output and back-pressure, the
 * per-connection limits, and closing. What the frames mean is not known
 * here: each request frame goes up through a hooks table (pc_conn_hooks_t)
 * to whoever serves the loop (pc_dispatch), which answers through
 * pc_conn_answer* and pc_req_*.
 *
 * Shapes:
 *
 *  pc_conn_t  one connection. Embeds its handle (TCP for a client or peer;
 *           a pipe for the receiving end of another loop's relay, an
 *           *internal* connection). Counts references -- 1 for the handle
 *           and 1 per live request -- and frees itself when the last goes,
 *           so an answer that arrives after the client left still finds
 *           valid memory.
 *
 *  pc_req_t   a request that cannot be answered the moment it is decoded
 *           (it waits on Redis, a peer or another loop, or an earlier
 *           request on the same connection still does). Requests sit in
 *           c->reqs in arrival order; answers move to the output only from
 *           the head, so they leave in request order. A request answered at
 *           once while nothing is queued ahead of it never gets one: the
 *           GET-hit path allocates nothing. Modules that need more state
 *           per request embed pc_req_t first in a struct of their own and
 *           pass its size to pc_req_new (pc_keys.h, pc_relay.h).
 *
 *  pc_conns_t the loop's connections together: the list, the buffer-memory
 *           cap they share, and the fair-turn scheduler (pc_conns.h has
 *           the loop-wide operations: accept, shedding, the tick).
 *
 * Thread rules: everything here runs on the loop's thread. The shared
 * pieces the config points to (the node's connection count, the per-
 * source table, the ring fingerprint) are synchronised where they live.
 *
 * Errors: functions that can fail return 0 or a negative PC_E* code; a
 * connection that cannot go on (out of memory for an answer, a write
 * error) is closed, and its owner learns it from c->closing.
 */
#ifndef PC_CONN_H
#define PC_CONN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pc_guard.h"
#include "pc_arrivals.h"
#include "pc_light.h"
#include "pc_list.h"
#include "pc_log.h"
#include "pc_metrics.h"
#include "pc_proto.h"
#include "pc_proto_reader.h"
#include "pc_sched.h"
#include "pc_sources.h"
#include "pc_uring.h"

typedef struct pc_conn pc_conn_t;
typedef struct pc_req pc_req_t;

/* The limits of docs/OPERATIONS.md "Limits" that connections enforce. */
typedef struct pc_conn_limits {
    pc_proto_limits_t proto;
    uint64_t max_connections;
    uint64_t max_conns_per_source; /* 0 = no limit */
    uint64_t hello_timeout_ms;
    uint64_t idle_timeout_ms; /* 0 = none */
    uint64_t max_inflight;
    size_t max_output;
    uint64_t frame_timeout_ms; /* 0 = none */
    uint64_t output_timeout_ms;
    size_t max_buffer_memory; /* this loop's share */
    uint64_t tcp_rto_min_ms;  /* set on each accepted socket; 0 = the kernel's */
} pc_conn_limits_t;

/*
 * What connections call upward. frame() is required; the others may be
 * NULL.
 */
typedef struct pc_conn_hooks {
    /* A request frame arrived on c, opened if it came sealed: body is
     * valid during the call only. Runs inside c's turn; it may answer,
     * queue requests, or close c. */
    void (*frame)(pc_conn_t *c, const uint8_t *body, uint32_t len);
    /* Before a turn, when more than one whole frame is buffered: their
     * bodies (up to PC_CONN_AHEAD), for hints only -- the frame hook
     * still runs for each, in its turn. Must not answer, change state or
     * keep the pointers. NULL: no look-ahead. */
    void (*ahead)(pc_conn_t *c, const pc_bytes_t *bodies, size_t n);
    /* A client connection was accepted (before it is read). */
    void (*opened)(pc_conn_t *c);
    /* Every tick, for each open connection, before its limits are
     * checked: 1 = dealt with it this tick (it may be closed now). */
    int (*tick)(pc_conn_t *c, uint64_t now);
    /* A connection was freed, or a handle of the set closed: the owner
     * may be waiting for both to reach 0 (pc_conns_idle). */
    void (*gone)(void *owner);

    /* The Redis-protocol front door (pc_redis.h); NULL without one. */
    /* A connection accepted on its port: sets c->redis. 0 or PC_ENOMEM. */
    int (*redis_open)(pc_conn_t *c);
    /* One command from the front of in[0..n) (valid during the call
     * only): 1 = taken, *used bytes long; 0 = not whole yet; 2 = whole,
     * but not to be served before answers still out (read nothing more
     * until one of them leaves); < 0 = c was closed (bytes that are not
     * the protocol). */
    int (*redis_command)(pc_conn_t *c, const uint8_t *in, size_t n, size_t *used);
    /* An answer leaves, in request order: resp (errmsg for a status other
     * than OK, or NULL), or with resp NULL a native response body[0..len).
     * Rendered into c->out. 0 or PC_ENOMEM. */
    int (*redis_answer)(pc_conn_t *c, const pc_response_t *resp, const char *errmsg,
                        const uint8_t *body, size_t len);
    /* Frees c->redis. */
    void (*redis_free)(pc_conn_t *c);
} pc_conn_hooks_t;

/* Fair-turn classes, and the longest turn (pc_conn.c explains them). */
enum { PC_CONN_LIGHT = 0, PC_CONN_HEAVY = 1 };
#define PC_CONN_TURN_QUANTUM_NS ((uint64_t)50 * 1000)
/* The most frames a turn looks ahead at (hooks->ahead). */
#define PC_CONN_AHEAD 32

/*
 * Values an output buffer's answers refer to instead of holding a copy
 * (pc_conn_answer_ref): what is written is the buffer's bytes with v[i]'s
 * len bytes at p spliced in at offset v[i].at, in order. Each is held
 * (obj, released by release(obj)) until its write is done or dropped.
 * bytes, their sum, counts as queued output and as buffer memory.
 */
#define PC_CONN_PINS 4
typedef struct pc_conn_pin {
    const uint8_t *p;
    size_t len;
    size_t at;
    void (*release)(void *obj);
    void *obj;
} pc_conn_pin_t;

typedef struct pc_conn_pins {
    pc_conn_pin_t v[PC_CONN_PINS];
    unsigned n;
    size_t bytes;
} pc_conn_pins_t;

typedef struct pc_conns {
    pc_conn_limits_t set;
    uv_loop_t *loop;
    const pc_log_t *log;
    pc_guard_t *guard;               /* seals peers' answers; may be NULL */
    pc_counters_t *stats;            /* the loop's */
    pc_hist_t *lat;                  /* the loop's latency per operation (PC_LAT_OPS) */
    const pc_conn_hooks_t *hooks;
    void *owner;                     /* hooks' context: pc_conn_owner() */
    _Atomic uint64_t *node_conns;    /* client connections of all loops */
    pc_sources_t *sources;           /* connections per address, node-wide */
    const _Atomic uint64_t *ring_fp; /* sent with every answer */

    pc_list_t conns;  /* every pc_conn_t alive, closing and internal ones too */
    uint64_t nconns;  /* clients' (and peers') connections open */
    size_t nconn_all; /* pc_conn_t's alive */

    /* Buffer memory (pc_conns_buffer_check): buf_bytes is the allocation
     * of every connection buffer -- readers, out, wbuf, the answers held
     * in requests -- kept exact by the buffers themselves
     * (pc_buf_set_account). */
    size_t buf_bytes;
    size_t buf_peak;   /* the most buf_bytes held since the last trim */
    size_t buf_trimmed; /* buf_bytes at the last trim (0 = none pending) */
    size_t out_budget; /* output a connection may queue (conn_budget) */
    int buf_full;      /* over the cap even after shedding: newcomers refused */
    int buf_checking;  /* inside the sweep */
    int buf_check_due; /* near the cap: the sweep has work */
    /* The connections shedding chose, closed in shares of the iterations
     * (pc_conns.c shed_some): shed_v[shed_next..shed_n) are still to
     * close, in order; an entry is NULL once its connection closed by
     * itself; shed_fair the share they were over; shed_share_ns the
     * share of an iteration (SHED_SHARE_NS; tests may lower it). */
    pc_conn_t **shed_v;
    size_t shed_n, shed_next, shed_fair;
    uint64_t shed_share_ns;
    uint8_t *rbuf;     /* the read buffer connections without input share */
    int rbuf_busy;     /* handed to alloc_cb, not yet back in read_cb */
    /* The io_uring transport (--io uring): the loop's ring, which its
     * client and peer sockets read and write through; NULL = libuv's
     * epoll (pc_conn.c "Transports"). */
    pc_uring_t *uring;
    int want_uring;    /* pc_conns_config_t.io_uring */
    int uring_closing; /* pc_conns_close: it ends once nothing is in flight */

    /* Fair turns: connections with work waiting for their turn, light
     * and heavy ones apart, served from run_idle while any wait; the work
     * done since the loop last polled (reset before it polls). */
    pc_sched_t sched[2];
    uv_idle_t run_idle;
    uv_prepare_t turn_prep;
    uint64_t turn_work; /* ns */
    uint64_t heavy_work; /* of it since the loop last polled: heavy turns and reads, ns */
    uint64_t turns;     /* turns served so far (pc_conn_process) */
    uint64_t poll_cpu_at; /* the loop thread's CPU time as it last went to poll
                           * with turns waiting, ns; 0 = not read */
    /* Every connection's socket, watched for input apart from the poll:
     * between heavy turns, whether a light client's request came
     * (run_idle_cb). */
    pc_arrivals_t arrivals;
    uint64_t read_at;   /* alloc_cb's uv_hrtime(): the read() follows */
    /* The loop's iterations (pc_conns.c iteration_done): each one's
     * working time -- from one turn_prep to the next, less what libuv
     * counted as waiting for events (uv_metrics_idle_time) -- is what a
     * light client's request may wait. iter_at = 0: none measured yet;
     * iter_timed = 0: libuv could not count idle time (nothing kept). */
    pc_hist_t iter_hist;
    uint64_t iter_at, iter_idle, iter_busy_ns;
    int iter_timed;
    /* Connections with answers that came outside their turn (Redis, a
     * peer, another loop): written together before the loop polls
     * (pc_conns_flush_deferred), one write each for all that came. */
    pc_list_t flushq;

    /* pc_conns_accept: this iteration's time accepting, and a listener
     * whose pending connection waits for the next iteration's share
     * ([1]: the Redis-protocol one) */
    uint64_t accept_work; /* ns */
    uv_stream_t *accept_later[2];
    /* pc_conns_tick: its round (each connection it has checked carries
     * it in `ticked`), its `now` (the least time it checks them with),
     * and whether some wait for the next iteration's share; the share
     * (TICK_SHARE_NS; tests may lower it) */
    uint64_t tick_round;
    uint64_t tick_now;
    int tick_unfinished;
    uint64_t tick_share_ns;
    uv_tcp_t reject; /* a connection accepted only to be closed */
    int rejecting;
    uv_stream_t *reject_next; /* a listener with one more to reject */
    int held;     /* pc_conns_hold: nothing is read */
    int stopping; /* pc_conns_stop: newcomers refused, each closes once drained */
    int handles_open;
} pc_conns_t;

struct pc_req {
    pc_list_t link; /* in c->reqs */
    pc_conn_t *c;
    uint32_t op;
    uint64_t id;
    int done;         /* resp holds the encoded answer */
    unsigned waiting; /* callbacks still to come for it (its owner's count) */
    uint8_t lat;      /* enum pc_lat_op its answer is timed as (PC_LAT_NONE: not) */
    uint64_t t0;      /* the start of the turn that read it (uv_hrtime) */
    pc_buf_t resp;
    /* What it waits on, for the log of a stop that overran. */
    enum { PC_REQ_LOCAL, PC_REQ_RELAYED, PC_REQ_FORWARDED } waits_on;
    /* Frees what the embedding module added (NULL: nothing). */
    void (*cleanup)(pc_req_t *r);
};

struct pc_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;   /* a client's or peer's connection */
        uv_pipe_t pipe; /* internal: another loop's relay (receiving end) */
    } h;
    pc_conns_t *cs;
    void *owner; /* cs->owner */
    pc_list_t link; /* in cs->conns */
    pc_list_t flush_link; /* in cs->flushq while flush_queued */
    int flush_queued;
    pc_list_t reqs;
    unsigned nreqs;
    unsigned refs;
    pc_proto_reader_t rd;
    pc_buf_t out;  /* answers not yet handed to the kernel */
    pc_buf_t wbuf; /* answers being written */
    pc_conn_pins_t opins; /* values out's answers refer to (pc_conn_answer_ref) */
    pc_conn_pins_t wpins; /* and wbuf's */
    uv_write_t wreq;
    /* Answers encoded in requests that wait behind an unfinished one:
     * queued output as much as `out` is, so they count against the output
     * budget. Sum of r->resp.len over reqs. */
    size_t held;
    /* The most its socket's kernel send queue may hold unsent
     * (pc_sock_set_unsent_max) when last set, 0 = not set yet: its output
     * budget, or less, what it has earned (unsent_earned). */
    size_t unsent_max;
    /* The unsent bound the client has earned by taking backlogs
     * (pc_unsent.h): 0 = none taken yet, the starting bound. */
    size_t unsent_earned;
    /* The write in progress found the socket full (short write or send). */
    int wfull;
    /* Its socket has the kernel's retransmission floor, not
     * --tcp-rto-min: it is heavy (conn_rto_follow). */
    int rto_kernel;
    /* epoll: bytes at wbuf's start that the first, short write of it took
     * (the uv_write goes on from there); 0 with io_uring (wsent). */
    size_t wskip;
    int writing;
    int reading;
    int eof;        /* no more input: finish what was asked, then close */
    int closing;    /* handle closed or closing */
    int processing; /* inside its turn: no re-entry */
    uint64_t turn_t0; /* uv_hrtime() at the start of its current (or last) turn */
    uint16_t turn_answers[PC_LAT_OPS]; /* answers given in this turn, per class */
    pc_sched_entry_t sched[2];
    int heavy;         /* its next turn is a heavy one */
    pc_light_t light;  /* its share of the loop's time (pc_light.h) */
    int read_deferred; /* alloc_cb put a read off (UV_ENOBUFS is ours) */
    int read_owed;     /* heavy, and that read was put off because the
                        * iteration's heavy share was spent: it waits in
                        * the heavy queue, unwatched, and its turn reads */
    int read_full;     /* its last read filled the buffer it was given: the
                          kernel may hold more (pc_conn_process) */
    uint64_t last_active;
    char peer[64]; /* "host:port", for the log */
    pc_source_t source;  /* its address, as pc_sources counts it */
    int source_counted;  /* counted there: released at close */
    /* Internal: the receiving end of another loop's relay. Trusted for
     * everything (the sending loop checked the token or the cluster key),
     * exempt from the per-connection limits and the connection count,
     * always served at once. */
    int internal;
    /* Resource limits (see conn_limits_note): the frame deadline and the
     * output stall; a clock at 0 is not running. */
    uint64_t bytes_in;
    uint64_t frame_at;
    uint64_t frame_since;
    uint64_t out_since;

    /* Security (docs/SECURITY.md). A connection whose first frame opened
     * with the cluster key is a peer's: all its frames must be sealed,
     * its answers are sealed, and it needs no token. */
    int sealed;
    pc_seal_stream_t seal; /* our answers on a sealed connection */
    int authed;            /* sent the token (or sealed, or none needed) */
    uint64_t hello_since;  /* --hello-timeout runs from here */
    uint64_t ticked;       /* the tick round that checked its limits last */
    size_t shed_at;        /* chosen to be shed: 1 + its place in cs->shed_v; 0 = not */
    /* Owned by pc_auth: failed HELLOs; one whose answer is held back
     * until auth.until (the connection is not read meanwhile). */
    struct {
        unsigned fails;
        int pending;
        int unchecked; /* the pending one was refused unread (pc_auth.c) */
        uint64_t until;
        uint64_t id;
    } auth;
    /* Owned by pc_relay: requests of this connection out at other loops,
     * and of those the writes and peer operations. Reading pauses at
     * PC_CONN_RELAY_MAX. */
    unsigned relayed;
    unsigned relayed_writes;
    /* Owned by pc_dispatch, valid while a request is dispatched: its
     * frame body (to forward it as is), how many members relayed it
     * here (a FORWARD's hops; 0 = from a client) and the FORWARD's
     * deadline (wall-clock ms; 0 = none, PROTOCOL.md §5.10). */
    const uint8_t *cur_body;
    uint32_t cur_len;
    uint32_t hops;
    uint64_t fwd_deadline;

    /* A connection of the Redis-protocol port: pc_redis' state (owned
     * there, freed through hooks->redis_free), else NULL. Its input is an
     * unframed stream (pc_proto_reader_unframed) that hooks->redis_command
     * splits; every answer leaves through hooks->redis_answer; `partial`:
     * the input ends in a command not whole yet. */
    void *redis;
    int partial;
    int blocked; /* hooks->redis_command said 2: paused until an answer leaves */

    /* The io_uring transport (pc_conn.c "Transports"): ur = this socket
     * (fd) reads and writes through cs->uring; ur_recv: its receive is
     * armed (a reference); ur_cancel: that receive's end was asked for;
     * ur_close: the handle closes once neither a receive nor a send is in
     * flight; wsent: bytes of wbuf the kernel has taken; spill: input
     * that came while the reader had no room left, in order. */
    int ur;
    int fd; /* its socket (-1 until accepted or attached) */
    int ur_recv;
    int ur_cancel;
    int ur_close;
    size_t wsent;
    pc_buf_t spill;
};

/* A worker's requests at other loops, per connection: what they may hold
 * for one client. */
#define PC_CONN_RELAY_MAX 64

static inline void *pc_conn_owner(const pc_conn_t *c) { return c->owner; }

/* Everything a connection holds in buffers: input, queued output (with
 * the values its answers refer to), and the answers held behind its
 * unfinished requests. */
static inline size_t pc_conn_usage(const pc_conn_t *c)
{
    return c->rd.buf.cap + c->out.cap + c->wbuf.cap + c->spill.cap + c->held + c->opins.bytes +
           c->wpins.bytes;
}

/* A connection in `cs`, not yet attached to a socket (*out; the caller
 * initialises c->h and calls pc_conn_update_reading once it is open).
 * Its scheduler room is reserved here, so its turns never fail to queue.
 * PC_ENOMEM. */
int pc_conn_new(pc_conns_t *cs, pc_conn_t **out);

/* Closes c; requests still waiting on a callback keep its memory alive
 * until they are answered. why NULL = orderly: what is queued is pushed
 * out first (best effort). Idempotent. */
void pc_conn_close(pc_conn_t *c, const char *why);

/* Bytes of answers c's client has not taken: queued here, held behind
 * unfinished requests, and in the kernel's send queue (SIOCOUTQ). */
size_t pc_conn_unsent(const pc_conn_t *c);

/* Closes c with a reset (RST): what the client has not read -- queued here
 * and in the kernel's send queue -- is dropped at once, and its next read
 * fails with ECONNRESET. For a client that stopped reading (the output
 * timeout; shed over the buffer cap while its answers wait): an orderly
 * close would leave the kernel holding its unread answers, up to
 * net.ipv4.tcp_wmem's maximum (4 MiB by default), in an orphaned socket
 * for as long as the client keeps its end open. Idempotent. */
void pc_conn_reset(pc_conn_t *c, const char *why);

/* A frame that cannot be parsed: tells the client why (id 0), counts it
 * in bad_frames, and closes. */
void pc_conn_bad_frame(pc_conn_t *c, uint32_t status, const char *why);

/* Tells c why it is about to be closed, ahead of any queued answer: an
 * error frame with id 0 (a Redis-protocol connection: "-ERR why").
 * Best effort. */
void pc_conn_say_error(pc_conn_t *c, uint32_t status, const char *why);

/* Starts or stops reading to match c's state (limits, turns, holds). */
void pc_conn_update_reading(pc_conn_t *c);

/* c has input or room to go on: processed now or in its turn. */
void pc_conn_run(pc_conn_t *c);

/* Processes c's buffered input now, whatever the turns (the stop). */
void pc_conn_process(pc_conn_t *c);

/* c has work: its turn comes in order, in its class. */
void pc_conn_schedule(pc_conn_t *c);

/* The loop must not sleep before its next iteration: what was done now
 * may have started work that a prepare handle carries out (a Redis
 * command is written from one). */
void pc_conns_wake(pc_conns_t *cs);

/* Hands queued output to the kernel (one write at a time). */
void pc_conn_flush(pc_conn_t *c);

/* Flushes the connections whose answers came outside their turn (before
 * the loop polls, and before the set closes). */
void pc_conns_flush_deferred(pc_conns_t *cs);

/* What a loop's ring (pc_uring.h) calls for a connection on it. */
extern const pc_uring_hooks_t pc_conn_uring_hooks;

/* Checks c's time limits at `now` (the tick): frame deadline, HELLO
 * deadline, output stall, idleness; closes it if one is over. */
void pc_conn_check_limits(pc_conn_t *c, uint64_t now);

/* After the connection count changed: each connection's fair share of
 * the buffer memory. */
void pc_conns_budget_update(pc_conns_t *cs);

/* Before the loop polls: a new iteration's work (turn_work, heavy_work
 * from 0), and while turns wait, the loop thread's CPU time then, which
 * bounds what the light turns served from the poll count for. */
void pc_conns_iteration_begins(pc_conns_t *cs);

/* Wherever buffer memory may have grown or shrunk: notes the sweep is
 * due near the cap, or lifts the refusal of newcomers under it. Cheap. */
void pc_conns_buffer_check(pc_conns_t *cs);

/* Sets whether newcomers are refused for buffer memory (logged once). */
void pc_conns_buffer_full(pc_conns_t *cs, int full);

/* c is closing (pc_conn_close): if shedding had chosen it, its entry is
 * left empty, so that the sweep's next share passes it by (pc_conns.c
 * shed_some). */
static inline void pc_conns_shed_forget(pc_conn_t *c)
{
    if (c->shed_at == 0)
        return;
    c->cs->shed_v[c->shed_at - 1] = NULL;
    c->shed_at = 0;
}

/* ---- answers ------------------------------------------------------------ */

/* Answers a request that is ready now, with nothing to wait for: encoded
 * straight into the output if nothing is queued ahead, else held in a
 * finished pc_req_t until its turn. On allocation failure c is closed. */
void pc_conn_answer(pc_conn_t *c, const pc_response_t *resp);
void pc_conn_answer_error(pc_conn_t *c, uint32_t op, uint64_t id, uint32_t status,
                          const char *msg);

/*
 * As pc_conn_answer for a GET hit whose value stays valid while obj is
 * held: a large value is not copied into the output but written from
 * where it lies (one writev with the frame around it), when that can be
 * -- the native protocol, unsealed, over epoll, nothing queued ahead;
 * else the answer is copied as by pc_conn_answer. Either way obj is c's
 * from now on: release(obj) is called once the value is written, copied
 * or dropped (perhaps before this returns).
 */
void pc_conn_answer_ref(pc_conn_t *c, const pc_response_t *resp, void (*release)(void *obj),
                        void *obj);

/*
 * A request that will be answered later, queued on c: `size` bytes (at
 * least sizeof(pc_req_t); the rest zeroed is the caller's, with pc_req_t
 * first). Holds a reference to c. NULL when out of memory.
 */
pc_req_t *pc_req_new(pc_conn_t *c, uint32_t op, uint64_t id, size_t size);

/* Times r's answer as operation k of enum pc_lat_op (pc_metrics.h) --
 * say PC_LAT_FORWARD once it is relayed to its owner -- instead of what
 * its op says; PC_LAT_NONE: not at all. */
void pc_req_time_as(pc_req_t *r, unsigned k);

/* Frees r (its cleanup first) and drops its reference; c may be freed by
 * it only through pc_req_gone. */
void pc_req_free(pc_req_t *r);

/* If r's connection is closing, frees r -- and the connection if that
 * was its last reference -- and returns 1: the answer would go nowhere.
 * Else 0. */
int pc_req_gone(pc_req_t *r);

/* r has its answer (resp encoded here; errmsg for a status other than
 * OK, or NULL): it leaves now if r is at the head, else waits its turn.
 * r is freed (now or when it leaves). If c is closing, r is dropped. */
void pc_req_answer(pc_req_t *r, const pc_response_t *resp, const char *errmsg);
void pc_req_answer_status(pc_req_t *r, uint32_t status, const char *msg);

/* As pc_req_answer, with a response body already encoded -- a member's
 * answer to a forwarded request, relayed as it came (it carries the
 * client's op and id, since the request went as it came). */
void pc_req_answer_raw(pc_req_t *r, const uint8_t *body, size_t len);

#endif
