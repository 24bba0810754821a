/*
 * pc_loop.h -- the context of one event loop of a node: what every
 * module serving that loop reads (its libuv loop, the store, its own
 * Redis connection and peer pool, its counters and codec scratch), and
 * a handle on each module's own state for this loop.
 *
 * A node runs one *core* loop (index 0: membership, per-slot state,
 * hand-off, STATS) and --threads - 1 *worker* loops; what they share is
 * pc_shared_t (pc_loops.h). docs/ARCHITECTURE.md "Threads" and "node/"
 * say who does what.
 *
 * Ownership: pc_server makes and frees the loops. The store, the guard,
 * the log and the cluster are the daemon's; the backend and the peer
 * pool are the daemon's too, made on this loop for it (it closes them
 * after the loop stops serving). Each module state pointer is owned by
 * that module (its init and free).
 *
 * Thread rules: a loop's context is touched on its own thread only, but
 * for `busy` and the cross-loop call queue (pc_loops.h).
 */
#ifndef PC_LOOP_H
#define PC_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "pc_backend.h"
#include "pc_cluster.h"
#include "pc_conn.h"
#include "pc_guard.h"
#include "pc_log.h"
#include "pc_metrics.h"
#include "pc_peer.h"
#include "pc_proto.h"
#include "pc_store.h"

typedef struct pc_loop pc_loop_t;
typedef struct pc_shared pc_shared_t;

/* What every loop of a node serves by (the same on all of them, but the
 * buffer cap: each loop's share). */
typedef struct pc_loop_settings {
    pc_conn_limits_t conn;
    uint64_t settle_ms; /* --ring-settle */
    uint64_t shutdown_timeout_ms;
    int io_uring; /* --io uring (and the kernel allows it) */
} pc_loop_settings_t;

/* A call run on a loop's thread (pc_loops_call). */
typedef struct pc_xcall {
    struct pc_xcall *next;
    void (*fn)(pc_loop_t *l, void *arg);
    void *arg;
} pc_xcall_t;

struct pc_loop {
    pc_loop_settings_t set;
    uv_loop_t *uv;
    size_t index; /* 0 = the core */
    pc_shared_t *sh;
    const pc_log_t *log;
    pc_store_t *store;
    pc_backend_t *backend;  /* this loop's Redis connection; NULL = memory only */
    pc_peer_pool_t *peers;  /* this loop's connections to other members */
    pc_guard_t *guard;      /* cluster key; NULL or keyless = --insecure */
    pc_cluster_t *cluster;  /* the core's, in a cluster; NULL on workers */
    const char *name;       /* the node's */
    pc_counters_t stats;
    pc_hist_t lat[PC_LAT_OPS]; /* per operation (pc_metrics.h); this loop's */
    uint64_t start_ms;

    /* Codec scratch (pc_loop_init). */
    pc_proto_decoder_t *dec;  /* requests, as dispatch decodes them */
    pc_proto_decoder_t *pdec; /* answers from peers and other loops */
    pc_proto_decoder_t *fdec; /* the request inside a FORWARD that is relayed */
    pc_proto_decoder_t *rdec; /* answers rendered for Redis clients (pc_redis) */
    pc_buf_t scratch;         /* frames to peers, encoded then copied */
    pc_buf_t fbuf;            /* the inner frame of a FORWARD being built */

    /* Each module's state on this loop. */
    pc_conns_t conns;           /* pc_conns.h */
    struct pc_keys *keys;       /* pc_keys.h: what is in flight to Redis */
    struct pc_relays *relays;   /* pc_relay.h: to the other loops */
    struct pc_view *view;       /* pc_view.h: a worker's ring view */
    struct pc_slots *slots;     /* pc_slots.h: the core's per-slot state */
    struct pc_handoff *handoff; /* pc_handoff.h: the core's */

    /* pc_view.h, the core's: views made so far, and workers yet to take
     * the latest (SIZE_MAX / 2: it could not be made; made again at the
     * next tick). */
    uint64_t view_gen;
    size_t view_pending;

    /* pc_loops.h: the homes' drain, and calls from other loops. */
    _Atomic uint64_t busy; /* a worker's keystates alive + dispatches under way */
    int draining;          /* the core: homes off, waiting for every busy 0 */
    uv_timer_t drain_timer;
    pthread_mutex_t xq_lock;
    pc_xcall_t *xq_head, *xq_tail;
    int xq_open;
    uv_async_t xq_async;

    /* pc_server: the loop's life. */
    void *server;
    uv_tcp_t listener;
    int listening;
    uv_tcp_t resp_listener; /* --resp: the Redis-protocol port (pc_redis.h) */
    int resp_listening;
    uv_timer_t tick;
    uv_timer_t shutdown_timer;
    int handles_open; /* the server's own handles on this loop */
    int shutting_down;
    void (*on_done)(void *);
    void *on_done_arg;
    uint64_t last_sweep;
    size_t workers_running; /* the core, stopping: workers not stopped yet */
    int workers_stopping;   /* the core: the workers are being stopped */
};

static inline uint64_t pc_loop_now(const pc_loop_t *l) { return uv_now(l->uv); }

static inline int pc_loop_is_core(const pc_loop_t *l) { return l->index == 0; }

/* The loop a connection belongs to. */
static inline pc_loop_t *pc_loop_of(const pc_conn_t *c) { return pc_conn_owner(c); }

/* Time to live left at `now` of an entry expiring at `expire` (0 = never:
 * -1, as the protocol says it). */
static inline int64_t pc_loop_ttl_left(uint64_t expire, uint64_t now)
{
    if (expire == 0)
        return -1;
    return expire > now ? (int64_t)(expire - now) : 0;
}

/*
 * When an entry given ttl_ms now expires (0 = never). ttl_ms is a uint64
 * on the wire: a TTL too long to add to the clock means "as late as can
 * be said", never a wrap into the past (a SET answered OK that is gone at
 * once). INT64_MAX keeps pc_loop_ttl_left in the int64 the protocol
 * carries.
 */
static inline uint64_t pc_loop_expire_at(const pc_loop_t *l, uint64_t ttl_ms)
{
    uint64_t now = pc_loop_now(l);
    if (ttl_ms == 0)
        return 0;
    return ttl_ms < (uint64_t)INT64_MAX - now ? now + ttl_ms : (uint64_t)INT64_MAX;
}

/* A TTL as a replicated entry carries it: -1 = none. */
static inline int64_t pc_loop_ttl_wire(uint64_t ttl_ms)
{
    return ttl_ms == 0 ? -1 : (int64_t)(ttl_ms > INT64_MAX ? INT64_MAX : ttl_ms);
}

/*
 * The parts of a loop every module reads, made before the modules' own:
 * the codec scratch. The caller has filled in the fields above them
 * (settings, loop, index, shared state, log, store, backend, peers,
 * guard, cluster, name). 0 or PC_ENOMEM (then pc_loop_free).
 */
int pc_loop_init(pc_loop_t *l);

/* Frees what pc_loop_init made (not the context itself). */
void pc_loop_free(pc_loop_t *l);

#endif
