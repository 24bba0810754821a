/*
 * pc_server.c -- connections, request dispatch, read-through and
 * write-through for one event loop.
 *
 * Shapes to know before reading:
 *
 *  conn_t   one client connection. Embeds its uv_tcp_t; counts references
 *           (1 for the handle + 1 per live request) and frees itself when
 *           the last goes, so a backend reply that arrives after the client
 *           left still finds valid memory.
 *
 *  req_t    a request that cannot be answered the moment it is decoded
 *           (it waits for Redis, or an earlier request on the same
 *           connection still does). Requests sit in conn->reqs in arrival
 *           order; answers are appended to the output only from the head,
 *           so they leave in request order. A request answered at once
 *           while nothing is queued ahead of it never gets a req_t: the
 *           GET-hit path allocates nothing.
 *
 *  keystate_t  per-key state of what is in flight to Redis: the read that
 *           all missing GETs wait on (coalescing), the number of writes
 *           sent, and compare-and-set requests deferred until those writes
 *           are acknowledged. It lives only while something is in flight.
 *
 *  Loops.  A node runs one *core* loop (this file's pc_server_new) and
 *           threads-1 *worker* loops (pc_server_add_worker), each with
 *           its own SO_REUSEPORT listener, Redis connection and peer
 *           pool. While the ring is settled, home loops are on
 *           (home_update): every loop serves the keys this node owns,
 *           each key's misses and writes on its *home* loop (slot %
 *           nhomes), whose Redis connection alone carries that key; other
 *           loops relay to the home, forward other members' keys from
 *           where they are, and route by a ring view the core sent them
 *           (ringview_t). While the ring changes, homes are off: a worker
 *           serves store hits only and relays the rest, frame as is, to
 *           the core over a socketpair, where an internal connection
 *           serves it like any client's; the answer comes back in order
 *           and is relayed to the client. What the loops share is in
 *           node_shared_t.
 *
 * Ordering argument: all commands for a key go over one Redis connection
 * (its home loop's; the core's while homes are off, and never both: the
 * switch drains), which answers in order. A read-through that was sent
 * before a write is answered before it, so the store sees fills and
 * writes in the order Redis applied them; a fill only inserts when the
 * key is absent (anything present arrived later and is at least as new).
 * A read that reaches Redis from any other loop is passed on uncached
 * (home_foreign): a safety net for requests that met a homes switch on
 * their way, since GET and MGET misses go to their key's home.
 */
#include "pc_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "pc_addr.h"
#include "pc_cluster.h"
#include "pc_guard.h"
#include "pc_list.h"
#include "pc_peer.h"
#include "pc_proto.h"
#include "pc_ring.h"
#include "pc_sched.h"
#include "pc_sources.h"

#define READ_CHUNK (64 * 1024)
/* Output buffers bigger than this are given back once empty, so a
 * connection that once fetched a large value does not keep its memory. */
#define CONN_BUF_KEEP (16 * 1024)
/* An MGET entry that is not a hit, [status]: a fixarray and a fixint. */
#define MGET_SHORT_ENTRY 2
#define TICK_MS 100
/* Home loops at most (node_shared_t): each loop keeps a relay to each. */
#define MAX_HOMES 8

typedef struct conn conn_t;
typedef struct req req_t;
typedef struct keystate keystate_t;

/* Something waiting on a relay to another loop for its answer (in
 * relay->waits): a request relayed whole (req_t.rw), or the keys of an
 * MGET sent to their home loop (mrelay_t). done() runs exactly once: with
 * the answer (valid during the call only), or with NULL when the relay
 * failed. */
typedef struct relay_wait {
    pc_list_t link;
    uint64_t id; /* the relay's id for it */
    void (*done)(struct relay_wait *w, pc_response_t *resp);
} relay_wait_t;

/* Hand-off: entries per REPLICATE batch, bytes per batch, batches in
 * flight, items examined per step, the pause before streaming starts,
 * and how a batch is re-sent when the receiver has not yet heard of the
 * new ring (it answers RETRY: what it stored before gaining the slot
 * would be dropped at the gain, so it stores nothing early). */
#define HANDOFF_BATCH 128
#define HANDOFF_BATCH_BYTES (256 * 1024)
#define HANDOFF_INFLIGHT 4
#define HANDOFF_STEP 256
#define HANDOFF_DELAY_MS 20
#define HANDOFF_RESEND_MS 100
#define HANDOFF_TRIES 30

/* One hand-off batch on its way (kept until answered, to re-send). */
typedef struct hsend {
    struct hsend *next;
    struct pc_server *s;
    char *addr;
    uint32_t tries;
    uint64_t when; /* re-send at */
    pc_buf_t frame;
} hsend_t;
#define TOMBSTONES 65536 /* power of two */
/* handoff_target value of a slot whose copies are dropped, not sent: this
 * node holds no place in it any more, so they would never be served. */
#define HANDOFF_PURGE 0xFFFFu

typedef struct hbatch {
    uint32_t n;
    size_t bytes;
    pc_item_t *items[HANDOFF_BATCH];
} hbatch_t;

/* Keys deleted here lately in slots we just gained: a hand-off entry for
 * one of them is older than the delete and must not bring it back. */
typedef struct tomb {
    uint64_t hash;
    uint64_t until;
} tomb_t;

/* One key of a GET (1 slot) or MGET (n slots). */
typedef struct slot {
    struct slot *next_waiter; /* in keystate->waiters */
    req_t *req;
    uint32_t status;   /* PC_ST_* once resolved */
    pc_item_t *item;   /* hit: a store reference */
    uint8_t *copy;     /* read-through not cached: owned value copy */
    size_t copy_len;
    uint32_t copy_flags;
    uint64_t copy_version;
    int64_t copy_ttl;
} slot_t;

struct req {
    pc_list_t link; /* in conn->reqs */
    conn_t *c;
    uint32_t op;
    uint64_t id;
    int done;        /* resp holds the encoded answer */
    unsigned waiting;
    pc_buf_t resp;

    /* writes */
    keystate_t *ks;
    req_t *next_deferred;
    uint8_t *key; /* key + value copy, one allocation */
    uint32_t klen;
    uint8_t *val;
    uint32_t vlen;
    uint64_t ttl_ms;
    uint32_t flags;
    uint32_t cond;
    uint64_t cas;

    /* forwarded to the key's owner: the owner's answer is relayed as is */
    int forwarded;
    relay_wait_t rw;   /* relayed to another loop (the client's id is r->id) */
    int relay_write;   /* ... and counts in c->relayed_writes */

    uint32_t nslots;
    slot_t slots[];
};

struct keystate {
    keystate_t *hnext;
    pc_server_t *srv;
    uint64_t hash;
    int fetching;
    int nocache; /* the read in flight is not to be cached (home_foreign) */
    int foreign; /* core: counted in ks_foreign */
    slot_t *waiters, *waiters_tail;
    unsigned pending_writes;
    req_t *deferred, *deferred_tail;
    uint32_t klen;
    uint8_t key[];
};

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;   /* a client's or peer's connection */
        uv_pipe_t pipe; /* internal: a worker loop's relay (core side) */
    } h;
    pc_server_t *srv;
    pc_list_t link; /* in srv->conns */
    pc_list_t reqs;
    unsigned nreqs;
    unsigned refs;
    pc_proto_reader_t rd;
    pc_buf_t out;  /* answers not yet handed to the kernel */
    pc_buf_t wbuf; /* answers being written */
    uv_write_t wreq;
    /* Answers encoded in req_t's that wait behind an unfinished request:
     * queued output as much as `out` is, so they count against max_output
     * (else one slow request at the head lets a pipelining client make us
     * hold max_inflight whole answers). Sum of r->resp.len over reqs. */
    size_t held;
    int writing;
    int reading;
    int eof;       /* no more input: finish what was asked, then close */
    int closing;   /* handle closed or closing */
    int processing; /* inside conn_process: no re-entry */
    /* Its turns on the loop (srv->sched): as a light connection (its last
     * turn ended before its quantum) or a heavy one (it did not, or it is
     * new); one entry per class, each with its own virtual time. */
    pc_sched_entry_t sched[2];
    int heavy;
    int read_deferred; /* alloc_cb put a read off (UV_ENOBUFS is ours) */
    uint64_t last_active;
    /* While a request is dispatched: its frame body (to forward it as is)
     * and how many nodes relayed it here (FORWARD's hops; 0 = from a
     * client). Valid during handle_request only. */
    const uint8_t *cur_body;
    uint32_t cur_len;
    uint32_t hops;
    /* Security (docs/SECURITY.md). A connection whose first frame opened
     * with the cluster key is a peer's: all its frames must be sealed, its
     * answers are sealed, and it needs no token. */
    int sealed;
    pc_seal_stream_t seal;  /* our answers on a sealed connection */
    int authed;             /* sent the token (or sealed, or none needed) */
    unsigned auth_fails;    /* failed HELLOs on this connection */
    int auth_pending;       /* a failed HELLO's answer waits until auth_until */
    uint64_t auth_until;
    uint64_t auth_id;
    char peer[64];
    pc_source_t source;  /* its address, as pc_sources counts it */
    int source_counted;  /* counted there: release at close */
    uint64_t hello_since; /* --hello-timeout runs from here: opened, or a failed HELLO answered */
    /* Internal: the receiving end of another loop's relay. Trusted for
     * everything, peer operations included (the sending loop checked the
     * token or opened the frame with the cluster key), exempt from the
     * per-connection limits and the connection count. */
    int internal;
    unsigned relayed; /* worker: requests of this connection at the core */
    unsigned relayed_writes; /* ... of which writes and peer operations */
    /* Resource limits (conn_limits_note, conn_check_limits): the frame
     * deadline and the output stall. A clock at 0 is not running. */
    uint64_t bytes_in;    /* bytes read from the socket so far */
    uint64_t frame_at;    /* bytes_in offset of the partial frame timed */
    uint64_t frame_since; /* since when we wait for its rest */
    uint64_t out_since;   /* since when queued output is over max_output */
};

typedef struct server_stats {
    uint64_t connections_total;
    uint64_t connections_rejected;
    uint64_t requests;
    uint64_t bad_frames;
    uint64_t backend_reads;
    uint64_t reads_coalesced;
    uint64_t backend_writes;
    uint64_t forwarded;        /* requests relayed to their owner */
    uint64_t forward_errors;   /* ... that failed (owner unreachable) */
    uint64_t forwarded_in;     /* FORWARD requests served here */
    uint64_t not_owner_reads;  /* reads served here as a replica / from Redis */
    uint64_t retry_answers;    /* writes refused: relayed to a non-owner */
    uint64_t replicated;       /* entries sent to replicas */
    uint64_t replicate_errors;
    uint64_t replica_applied;  /* entries received and applied */
    uint64_t replica_ignored;  /* ... refused (older, or not ours) */
    uint64_t stale_dropped;    /* copies from before this node gained a slot */
    uint64_t handoff_sent;
    uint64_t handoff_received;
    uint64_t handoff_refused;  /* entries the receiver kept its own for */
    uint64_t handoff_confirmed; /* ... of which confirmed it (same value) */
    uint64_t purged;           /* copies dropped from slots we left */
    uint64_t handoff_errors;   /* batches that failed to send */
    uint64_t handoffs;         /* hand-offs completed */
    uint64_t settle_capped;    /* entries whose expiry the settle window cut */
    uint64_t auth_failures;    /* HELLOs with a wrong or missing token */
    uint64_t auth_refused;     /* requests refused before a good HELLO */
    uint64_t hello_timeouts;   /* connections closed: no good HELLO in time */
    uint64_t source_limit_rejects; /* connections refused: their address holds too many */
    uint64_t peer_refused;     /* peer ops refused: not sealed (or no token) */
    uint64_t peer_rejected;    /* peer connections closed: frame failed the key check */
    uint64_t idle_timeouts;    /* connections closed by the limits ... */
    uint64_t frame_timeouts;
    uint64_t output_timeouts;
    uint64_t buffer_full_rejects; /* connections refused: buffers over the cap */
    uint64_t buffer_evictions; /* connections closed to bring the buffers under it */
    uint64_t relayed;          /* worker: requests relayed to the core loop */
    uint64_t home_relayed;     /* requests relayed to their key's home loop */
    uint64_t worker_requests;  /* worker: requests read (= requests, on a worker) */
    uint64_t worker_forwarded; /* worker: requests it forwarded to their owner itself */
} server_stats_t;

/*
 * What the loops of one node share (docs/ARCHITECTURE.md "Threads"). The
 * core allocates it; the core alone writes the view (ring_changed), the
 * workers read it with relaxed loads: a worker acting on a view a moment
 * old serves what the core would have served a moment earlier.
 */
#define GATE_NONE UINT32_MAX
typedef struct node_shared {
    _Atomic uint64_t last_version; /* next_version(): one clock per node */
    _Atomic uint64_t nconns;       /* client connections on all loops */
    _Atomic uint64_t ring_fp;
    /* The view: alone = this node is the only member (owns every slot);
     * then an item with epoch >= epoch_min is valid anywhere. Otherwise
     * gate[slot] is the least valid epoch in a slot we own, GATE_NONE in
     * the others. Writes are local only when alone and past settle_until. */
    _Atomic int alone;
    _Atomic uint32_t epoch_min;
    _Atomic uint64_t settle_until;
    _Atomic uint32_t *gate; /* PC_RING_SLOTS; NULL with one loop */
    int has_backend;
    /* Home loops: while `homes` is on (the ring settled; the core decides,
     * home_update), every loop serves the keys this node owns itself,
     * forwarding and replicating over its own peer connections. With
     * Redis behind, the Redis traffic of a key belongs to one loop, its
     * home, slot % nhomes; memory-only, every loop is home to every key.
     * Each worker counts its keystates alive and its dispatches under
     * way in its own `busy`; after turning homes off, the core waits for
     * all of them to be 0 (the drain). */
    size_t nloops;
    size_t nhomes; /* 0 = memory-only (or one loop) */
    _Atomic int homes;
    /* The stop (pc_server_begin_stop): when it began and when it must be
     * over, in loop ms (0 = not stopping); set before any loop stops.
     * forced: a loop's drain reached the deadline and cut what was left. */
    _Atomic uint64_t stop_began, stop_deadline;
    _Atomic int forced;
    /* Failed HELLOs on all loops in the current second: the second in
     * the high 32 bits, the count in the low (auth_fail). */
    _Atomic uint64_t auth_window;
    pc_sources_t *sources; /* connections and failed HELLOs per address */
    pthread_mutex_t token_lock; /* over the token fields */
    int token_required;
    uint8_t token_hash[crypto_generichash_BYTES]; /* of the client token */
} node_shared_t;

/*
 * What a worker routes by while home loops are on in a cluster: the ring,
 * this node's index in it, the members' addresses, and whether each is
 * suspect (the core refreshes that every tick). Immutable but for
 * `suspect`, and counted: the core holds one reference to the current
 * view and each worker one to the view it was last sent (rv_publish).
 */
typedef struct ringview {
    _Atomic unsigned refs;
    uint64_t gen; /* the core's count of views made: acks name theirs */
    pc_ring_t *ring; /* a reference of its own */
    long self;
    size_t n;
    char **addrs;
    _Atomic uint8_t *suspect;
} ringview_t;

/* A call run on another loop's thread (xcall_post). */
typedef struct xcall {
    struct xcall *next;
    void (*fn)(pc_server_t *s, void *arg);
    void *arg;
} xcall_t;

/* Sending side of a relay to another loop: frames out, answers back in
 * the same order. */
typedef struct relay {
    pc_server_t *srv;
    size_t to; /* the loop it goes to */
    uv_pipe_t pipe;
    pc_buf_t out, wbuf;
    uv_write_t wreq;
    int writing;
    int open;
    pc_proto_reader_t rd;
    pc_list_t waits; /* relay_wait_t's, oldest first */
    uint64_t next_id;
} relay_t;

/* STATS gathered from every loop (the counters are per loop). */
typedef struct loop_snap {
    server_stats_t stats;
    pc_backend_stats_t bs; /* summed over the loops' Redis connections */
    uint64_t nbackends;
    uint64_t nconns;
    size_t buf_bytes;
    int buf_full;
} loop_snap_t;

/*
 * What every loop of a node serves by: pc_server_new reads it from the
 * config, pc_server_add_worker gives each worker the core's copy. (Only
 * max_buffer_memory is then split between the loops, at start.)
 */
typedef struct loop_settings {
    pc_proto_limits_t limits;
    uint64_t settle_ms; /* --ring-settle */
    uint64_t max_connections;
    uint64_t max_conns_per_source; /* 0 = no limit */
    uint64_t hello_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t max_inflight;
    size_t max_output;
    uint64_t shutdown_timeout_ms;
    /* Resource limits across connections (srv_buffer_check). */
    uint64_t frame_timeout_ms;
    uint64_t output_timeout_ms;
    size_t max_buffer_memory;
} loop_settings_t;

struct pc_server {
    loop_settings_t set; /* the same on every loop of the node */
    uv_loop_t *loop;
    const pc_log_t *log;
    pc_store_t *store;
    pc_backend_t *backend;
    pc_cluster_t *cluster; /* may be NULL: a node alone, everything local */
    pc_peer_pool_t *peers;
    pc_guard_t *guard;        /* cluster key; NULL or keyless = --insecure */
    pc_proto_decoder_t *dec;
    pc_proto_decoder_t *pdec; /* replies from peers, outside dispatch */
    pc_buf_t scratch;         /* frames to peers, encoded then copied */
    /* Per ring slot: the store epoch at which this node last gained the
     * slot (became its owner, or a replica from nothing). Items stored
     * before that are not served: they predate our ownership and may have
     * missed writes made elsewhere meanwhile (docs/CONSISTENCY.md). */
    uint32_t *slot_epoch;
    /* ... and when (loop ms; 0 = at start). Entries stored in a slot during
     * its first settle_ms expire at the latest 2 x settle_ms after the
     * gain: a node still on the old ring may write Redis behind our back
     * until the new ring reaches it (docs/CONSISTENCY.md). */
    uint64_t *slot_gained;
    /* The highest slot_epoch[] and the latest slot_gained[]: an item at
     * least this new is valid in every slot, and past last_gained +
     * settle_ms no slot is settling. They spare the hot path a read of
     * those 256 KB and 512 KB arrays (a cache miss per request). */
    uint32_t slot_epoch_max;
    uint64_t last_gained;
    tomb_t *tombs;

    /* The hand-off in progress: per slot, 1 + the index in handoff_addrs
     * of the member it goes to (0 = not moving). */
    uint16_t *handoff_target;
    char **handoff_addrs;
    size_t handoff_naddrs;
    hbatch_t *handoff_batches; /* one per address */
    uint64_t handoff_cursor;
    int handoff_scanning;
    unsigned handoff_inflight;
    hsend_t *handoff_resend;   /* batches to send again, unordered */
    uint64_t handoff_started;
    uint64_t handoff_sent0;    /* stats.handoff_sent when it started */
    uint64_t handoff_rate;     /* bytes per second */
    double handoff_tokens;
    uint64_t handoff_last_ms;
    uv_timer_t handoff_timer;
    void (*handoff_done)(void *);
    void *handoff_done_arg;

    char *listen;
    char *name;
    uint64_t sweep_interval_ms;

    /* Resource use across connections (see srv_buffer_check and
     * conn_read_shared; the caps are in `set`). buf_bytes is the
     * allocation of every connection buffer -- readers, out, wbuf, the
     * answers held in req_t's -- kept exact by the buffers themselves
     * (pc_buf_set_account). */
    size_t buf_bytes;
    size_t buf_peak;    /* the most buf_bytes held since the last trim (srv_trim) */
    size_t out_budget;  /* output a connection may queue (conn_budget) */
    int buf_full;       /* over the cap even after shedding: newcomers refused */
    int buf_checking;   /* inside srv_buffer_sweep */
    int buf_check_due;  /* near the cap: srv_buffer_sweep has work */
    uint8_t *rbuf;      /* the read buffer connections without input share */
    int rbuf_busy;      /* handed to alloc_cb, not yet back in read_cb */

    uv_tcp_t listener;
    uv_tcp_t reject;    /* a connection accepted only to be closed (conn_reject) */
    int rejecting, reject_waiting;
    uv_timer_t tick;
    uv_timer_t shutdown_timer;
    int handles_open;
    int listening;
    int shutting_down;
    void (*on_done)(void *);
    void *on_done_arg;

    pc_list_t conns;
    uint64_t nconns;  /* clients' (and peers') connections open */
    size_t nconn_all; /* conn_t's alive, internal ones and closing ones too */

    /* Fair turns (conn_run): connections with work waiting for their turn,
     * light and heavy ones apart, served from run_idle while any wait; the
     * work done since the loop last polled (reset by turn_prep). */
    pc_sched_t sched[2];
    uv_idle_t run_idle;
    uv_prepare_t turn_prep;
    uint64_t turn_work; /* ns */
    uint64_t read_at;   /* alloc_cb's uv_hrtime(): the read() follows */

    keystate_t **ks_buckets;
    size_t ks_nbuckets;
    size_t ks_count;
    uint8_t ks_hashkey[crypto_shorthash_KEYBYTES];

    /* Loops (see the top of the file). */
    node_shared_t *sh;      /* the core's; workers point to it */
    pc_server_t *core;      /* NULL on the core */
    pc_server_t **workers;  /* core: its workers */
    size_t nworkers;
    size_t index;           /* 0 = core, 1.. = workers */
    int reuseport;          /* listen with SO_REUSEPORT (more than one loop) */
    int fds[4];             /* worker: relay socketpairs, core ends at 1, 3 */
    relay_t relays[2];      /* worker: [0] clients', [1] peers' requests */
    pc_proto_decoder_t *fdec; /* worker: the request inside a FORWARD */
    pc_buf_t fbuf;            /* worker: ... re-encoded under a relay id */
    uv_check_t relay_check; /* flushes the relays once per turn */
    relay_t *hrel;          /* [nhomes]: to each home loop but this one
                               ([0] on a worker: relays[0] is used) */
    size_t nhrel;
    size_t ks_foreign;      /* core: keystates of keys homed elsewhere */
    ringview_t *rv;         /* the ring view this loop routes by (workers) */
    size_t rv_pending;      /* core: workers yet to take the latest view */
    uint64_t rv_gen;        /* core: views made so far */
    uint64_t ring_at;       /* core: when the ring last changed (0 = never) */
    int draining;           /* core: homes off, waiting for the workers' busy 0 */
    _Atomic uint64_t busy;  /* worker: see node_shared_t (home loops) */
    int peers_closing;      /* worker: its peer pool is closing (freed with it) */
    uv_timer_t drain_timer;
    pthread_mutex_t xq_lock;
    xcall_t *xq_head, *xq_tail;
    int xq_open;
    uv_async_t xq_async;
    size_t workers_running; /* core, at shutdown */
    int workers_stopping;

    uint64_t last_sweep;
    uint64_t start_ms;
    server_stats_t stats;
};

/* ---- small helpers ---------------------------------------------------- */

static uint64_t now_ms(const pc_server_t *s) { return uv_now(s->loop); }

/*
 * Versions order the writes of one owner: wall-clock milliseconds in the
 * high bits, a counter in the low 16, never going backwards even if the
 * wall clock does. Later (cluster) this becomes a full hybrid logical
 * clock; the format already fits one.
 */
static uint64_t wall_version(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) << 16;
}

static uint64_t next_version(pc_server_t *s)
{
    uint64_t wall = wall_version();
    /* One clock for all the loops of the node: a compare-and-swap, which
     * nobody contends with on a node of one loop. */
    uint64_t last = atomic_load_explicit(&s->sh->last_version, memory_order_relaxed), v;
    do
        v = wall > last ? wall : last + 1;
    while (!atomic_compare_exchange_weak_explicit(&s->sh->last_version, &last, v,
                                                  memory_order_relaxed, memory_order_relaxed));
    return v;
}

/*
 * How far ahead of this node's wall clock a version from a peer may be:
 * a minute (clocks that NTP keeps agree to milliseconds). The clock
 * follows every version it is shown (version_observe), so one from far
 * ahead -- 2^64 - 1 made the next write's version wrap to 0 -- would
 * drag every later version with it; such an entry is refused instead.
 */
#define VERSION_AHEAD_MAX ((uint64_t)60000 << 16)

/* Hybrid logical clock, the receiving side: the next version given here
 * is above v, so a write here after a hand-off outranks the old owner's.
 * 0 = v is too far ahead to be believed (not observed; refuse it). */
static int version_observe(node_shared_t *sh, uint64_t v)
{
    if (v > wall_version() + VERSION_AHEAD_MAX)
        return 0;
    uint64_t last = atomic_load_explicit(&sh->last_version, memory_order_relaxed);
    while (v > last && !atomic_compare_exchange_weak_explicit(&sh->last_version, &last, v,
                                                              memory_order_relaxed,
                                                              memory_order_relaxed))
        ;
    return 1;
}

static int64_t ttl_left(uint64_t expire, uint64_t now)
{
    if (expire == 0)
        return -1;
    return expire > now ? (int64_t)(expire - now) : 0;
}

/*
 * ttl_ms is a uint64 on the wire: a TTL too long to add to the clock means
 * "as late as can be said", never a wrap into the past (a SET answered OK
 * that is gone at once). INT64_MAX keeps ttl_left() in the int64 the
 * protocol carries.
 */
static uint64_t expire_at(const pc_server_t *s, uint64_t ttl_ms)
{
    uint64_t now = now_ms(s);
    if (ttl_ms == 0)
        return 0;
    return ttl_ms < (uint64_t)INT64_MAX - now ? now + ttl_ms : (uint64_t)INT64_MAX;
}

/* ---- home loops ----------------------------------------------------------- */

/* The loop a key's Redis traffic belongs to while homes are on. */
static size_t home_of(const node_shared_t *sh, const uint8_t *k, size_t n)
{
    return sh->nhomes > 1 ? pc_ring_slot(k, n) % sh->nhomes : 0;
}

/* The home loop of a slot as seen from loop s: on a memory-only node,
 * s itself. */
static size_t home_for(const pc_server_t *s, uint32_t slot)
{
    return s->sh->nhomes > 1 ? slot % s->sh->nhomes : s->index;
}

static int homes_on(const pc_server_t *s)
{
    return s->sh->nloops > 1 && atomic_load(&s->sh->homes);
}

/* While homes are on, is this key's Redis traffic another loop's? Then a
 * read of it here is passed on, never cached (the home's writes travel on
 * another Redis connection, so this read's place among them is unknown). */
static int home_foreign(const pc_server_t *s, const uint8_t *k, size_t n)
{
    return s->sh->nhomes > 1 && homes_on(s) && home_of(s->sh, k, n) != s->index;
}

/* ---- keystate table ----------------------------------------------------- */

static uint64_t key_hash(const pc_server_t *s, const uint8_t *k, size_t n)
{
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, k, n, s->ks_hashkey);
    return h;
}

static keystate_t *ks_find(pc_server_t *s, const uint8_t *k, size_t n, uint64_t h)
{
    for (keystate_t *ks = s->ks_buckets[h & (s->ks_nbuckets - 1)]; ks; ks = ks->hnext)
        if (ks->hash == h && ks->klen == n && memcmp(ks->key, k, n) == 0)
            return ks;
    return NULL;
}

static void ks_grow(pc_server_t *s)
{
    size_t nb = s->ks_nbuckets * 2;
    keystate_t **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* keep the old table: longer chains, still correct */
    for (size_t i = 0; i < s->ks_nbuckets; i++) {
        keystate_t *ks = s->ks_buckets[i];
        while (ks) {
            keystate_t *next = ks->hnext;
            ks->hnext = b[ks->hash & (nb - 1)];
            b[ks->hash & (nb - 1)] = ks;
            ks = next;
        }
    }
    free(s->ks_buckets);
    s->ks_buckets = b;
    s->ks_nbuckets = nb;
}

static keystate_t *ks_get(pc_server_t *s, const uint8_t *k, size_t n)
{
    uint64_t h = key_hash(s, k, n);
    keystate_t *ks = ks_find(s, k, n, h);
    if (ks)
        return ks;
    ks = calloc(1, sizeof *ks + n);
    if (ks == NULL)
        return NULL;
    ks->hash = h;
    ks->srv = s;
    ks->klen = (uint32_t)n;
    memcpy(ks->key, k, n);
    /* What the drain between home loops and the core counts (home_update). */
    if (s->core != NULL) {
        atomic_fetch_add(&s->busy, 1);
    } else if (s->sh->nhomes > 1 && home_of(s->sh, k, n) != 0) {
        ks->foreign = 1;
        s->ks_foreign++;
    }
    if (s->ks_count + 1 > s->ks_nbuckets)
        ks_grow(s);
    keystate_t **head = &s->ks_buckets[h & (s->ks_nbuckets - 1)];
    ks->hnext = *head;
    *head = ks;
    s->ks_count++;
    return ks;
}

/* Frees the keystate once nothing is in flight for its key. */
static void ks_release(pc_server_t *s, keystate_t *ks)
{
    if (ks->fetching || ks->waiters || ks->pending_writes || ks->deferred)
        return;
    keystate_t **pp = &s->ks_buckets[ks->hash & (s->ks_nbuckets - 1)];
    while (*pp != ks)
        pp = &(*pp)->hnext;
    *pp = ks->hnext;
    s->ks_count--;
    if (s->core != NULL)
        atomic_fetch_sub(&s->busy, 1);
    else if (ks->foreign)
        s->ks_foreign--;
    free(ks);
}

/* ---- connections: output ---------------------------------------------- */

static void conn_close(conn_t *c, const char *why);
static void conn_reject(pc_server_t *s);
static void server_handle_gone(pc_server_t *s);
static void conn_process(conn_t *c);
static void conn_run(conn_t *c);
static int conn_waiting(const conn_t *c);
static void conn_flush(conn_t *c);
static void srv_buffer_check(pc_server_t *s);
static void srv_buffer_sweep(pc_server_t *s);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void conn_maybe_free(conn_t *c)
{
    if (c->refs > 0)
        return;
    pc_server_t *s = c->srv;
    pc_list_remove(&c->link);
    s->nconn_all--;
    pc_sched_remove(&s->sched[0], &c->sched[0]);
    pc_sched_remove(&s->sched[1], &c->sched[1]);
    pc_proto_reader_free(&c->rd);
    pc_buf_free(&c->out);
    pc_buf_free(&c->wbuf);
    free(c);
    srv_buffer_check(s); /* what it held may let the others read again */
    if (s->shutting_down && pc_list_empty(&s->conns) && s->handles_open == 0 && s->on_done) {
        void (*done)(void *) = s->on_done;
        s->on_done = NULL;
        done(s->on_done_arg);
    }
}

static size_t conn_queued(const conn_t *c) { return c->out.len + c->wbuf.len; }

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
 * together about the cap (srv_buffer_shed takes care of the rest). The
 * check follows each answer, so one answer may go past it.
 */
static size_t conn_budget(const conn_t *c)
{
    size_t b = c->srv->out_budget;
    return c->authed || b < UNAUTH_OUT_BUDGET ? b : UNAUTH_OUT_BUDGET;
}

/* After the connection count changed: each connection's fair share. */
static void srv_budget_update(pc_server_t *s)
{
    size_t share = s->set.max_buffer_memory / (s->nconns > 0 ? s->nconns : 1);
    if (share < OUT_BUDGET_MIN)
        share = OUT_BUDGET_MIN;
    s->out_budget = share < s->set.max_output ? share : s->set.max_output;
}

/* Everything a connection holds in buffers: input, queued output, and
 * the answers held behind its unfinished requests. */
static size_t conn_usage(const conn_t *c)
{
    return c->rd.buf.cap + c->out.cap + c->wbuf.cap + c->held;
}

/* A worker's requests at the core, per connection: what the core may
 * hold for one client (see internal conns in conn_paused). */
#define RELAY_MAX_PER_CONN 64

static int conn_paused(const conn_t *c)
{
    const pc_server_t *s = c->srv;
    if (s->draining) /* home_update: nothing is read until the homes are idle */
        return 1;
    /* The core end of a relay carries many clients' requests: pausing it
     * for one would stall them all. Each client is bounded where it is
     * read instead, on its worker, which also stops at RELAY_MAX_PER_CONN
     * requests at the core. */
    if (c->internal)
        return 0;
    return c->nreqs >= s->set.max_inflight || conn_queued(c) + c->held > conn_budget(c) ||
           c->auth_pending || c->relayed >= RELAY_MAX_PER_CONN;
}

static int conn_output_over(const conn_t *c)
{
    return conn_queued(c) + c->held > conn_budget(c);
}

/*
 * Brings the limit clocks up to date after the connection's state changed
 * (bytes came in, frames were processed, output drained):
 *
 * Frame deadline. Only a partial frame at the front of the input counts,
 * and only while we are reading it: whole frames waiting because the
 * connection is paused (max-inflight, its output budget) are our delay,
 * not the client's, so the clock stops while the connection pauses
 * itself, and restarts when it resumes. The clock restarts whenever a new frame comes to the
 * front (frame_at moves), so a client that keeps completing frames is
 * never cut, however slow its stream as a whole.
 *
 * Output stall. Since when queued output is over the connection's budget
 * (conn_budget) while the client does not take it: the clock runs only while a write is out, and
 * write_cb stops it each time one completes (the client read). Answers
 * held behind a slow request with nothing being written are waiting on
 * us, not on the client, so they pause reading but are no stall.
 *
 * Idle input. Outside processing (no frame body is in use), an empty
 * reader gives its buffer back, so an idle connection holds no input
 * buffer (reads go to the shared one). Output buffers are trimmed by the
 * tick instead (conn_check_limits), once the connection is quiet: here
 * they are empty after every flush, and freeing them then would make a
 * streaming client grow them again, page by page, for every batch.
 */
static void conn_limits_note(conn_t *c)
{
    pc_server_t *s = c->srv;
    uint64_t now = now_ms(s);
    size_t pending = pc_proto_reader_pending(&c->rd);
    if (pending == 0 || pc_proto_reader_missing(&c->rd) == 0 || c->eof || c->closing ||
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

/* Starts or stops reading to match the connection's state. */
static void conn_update_reading(conn_t *c)
{
    conn_limits_note(c);
    srv_buffer_check(c->srv);
    /* While it waits for its turn, input piles up to a chunk, no more. */
    int want = !c->closing && !c->eof && !conn_paused(c) &&
               !(conn_waiting(c) && pc_proto_reader_pending(&c->rd) >= READ_CHUNK);
    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, alloc_cb, read_cb) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = 0;
    }
}

typedef struct shed {
    conn_t *c;
    size_t use;
} shed_t;

/* Unauthenticated first, then the biggest. */
static int shed_order(const void *a, const void *b)
{
    const shed_t *x = a, *y = b;
    if (x->c->authed != y->c->authed)
        return x->c->authed ? 1 : -1;
    return x->use < y->use ? 1 : x->use > y->use ? -1 : 0;
}

/*
 * Near the cap (srv_buffer_check), the connections holding more than
 * their fair share of the loop's buffer memory -- unread output of a
 * client that stopped reading, or a large frame still arriving -- are
 * closed, those that never sent the token first, then the biggest, until
 * what stays is under 3/4 of the cap. Connections within their share are
 * never touched, and nobody stops reading: one client's memory is its own
 * problem. Their memory is released when their handles close, a loop turn
 * later. Returns what the live connections hold (closing ones left out).
 */
static size_t srv_buffer_shed(pc_server_t *s)
{
    size_t cap = s->set.max_buffer_memory, goal = cap - cap / 4;
    size_t total = s->buf_bytes, internal = 0, n = 0;
    for (pc_list_t *l = s->conns.next; l != &s->conns; l = l->next) {
        conn_t *c = pc_list_entry(l, conn_t, link);
        size_t u = conn_usage(c);
        if (c->closing)
            total -= total < u ? total : u; /* on its way out */
        else if (c->internal)
            internal += u;
    }
    /* What the relays between loops hold is not the clients' to share. */
    size_t fair = (cap > internal ? cap - internal : 0) / (s->nconns > 0 ? s->nconns : 1);
    for (pc_list_t *l = s->conns.next; l != &s->conns; l = l->next) {
        conn_t *c = pc_list_entry(l, conn_t, link);
        n += !c->closing && !c->internal && conn_usage(c) > fair;
    }
    if (total <= goal || n == 0)
        return total;
    shed_t *v = malloc(n * sizeof *v);
    if (v == NULL)
        return total;
    n = 0;
    for (pc_list_t *l = s->conns.next; l != &s->conns; l = l->next) {
        conn_t *c = pc_list_entry(l, conn_t, link);
        size_t u = conn_usage(c);
        if (!c->closing && !c->internal && u > fair)
            v[n++] = (shed_t){c, u};
    }
    qsort(v, n, sizeof *v, shed_order);
    size_t closed = 0, freed = 0, unauth = 0;
    for (size_t i = 0; i < n && total > goal; i++) {
        conn_t *c = v[i].c;
        pc_log_debug(s->log, "client %s: closed, holding %zu bytes of buffers (fair share %zu)",
                     c->peer, v[i].use, fair);
        /* Told why, in case it is only slow and reads again. */
        pc_proto_encode_error(&c->out, 0, 0, PC_ST_BUSY, "server buffer memory full");
        conn_close(c, NULL);
        total -= total < v[i].use ? total : v[i].use;
        freed += v[i].use;
        unauth += !c->authed;
        closed++;
    }
    free(v);
    s->stats.buffer_evictions += closed;
    pc_log_warn(s->log, "connection buffers at %zu bytes, near --max-buffer-memory: closed %zu "
                "connection(s) (%zu without the token) holding %zu bytes over their fair share "
                "of %zu", s->buf_bytes, closed, unauth, freed, fair);
    return total;
}

static void srv_buffer_full(pc_server_t *s, int full);

/*
 * The cap on connection buffers (the loop's share of
 * --max-buffer-memory). Every connection's output budget is its fair
 * share of it (conn_budget), so it is mostly kept without help; past 7/8
 * of it, the connections over their share are shed (srv_buffer_shed).
 * Only if what is left is still over the cap -- everyone within a share
 * that has shrunk, say -- are new connections refused (BUSY) until it
 * comes down; reading never stops.
 *
 * srv_buffer_check is called wherever the total may have grown or shrunk
 * (a connection processed, accepted, freed), and is cheap: the shedding
 * scans every connection, so it runs once per loop iteration at most
 * (srv_buffer_sweep, before the loop polls, and on the tick). Memory a
 * shed connection held is released a turn later anyway.
 */
static void srv_buffer_check(pc_server_t *s)
{
    size_t cap = s->set.max_buffer_memory;
    if (s->buf_bytes > cap - cap / 8)
        s->buf_check_due = 1;
    else if (s->buf_full)
        srv_buffer_full(s, 0);
}

static void srv_buffer_sweep(pc_server_t *s)
{
    if (!s->buf_check_due || s->buf_checking)
        return;
    s->buf_check_due = 0;
    size_t cap = s->set.max_buffer_memory;
    int full = 0;
    if (s->buf_bytes > cap - cap / 8) {
        s->buf_checking = 1;
        full = srv_buffer_shed(s) > cap;
        s->buf_checking = 0;
    }
    srv_buffer_full(s, full);
}

static void srv_buffer_full(pc_server_t *s, int full)
{
    if (full == s->buf_full)
        return;
    s->buf_full = full;
    if (full)
        pc_log_warn(s->log, "connection buffers at %zu bytes, over --max-buffer-memory: new "
                    "connections refused", s->buf_bytes);
    else
        pc_log_info(s->log, "connection buffers down to %zu bytes: accepting again",
                    s->buf_bytes);
}

static void write_cb(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    c->writing = 0;
    c->out_since = 0; /* the client took a write: not stalled (conn_limits_note) */
    pc_buf_reset(&c->wbuf);
    c->refs--;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    c->last_active = now_ms(c->srv);
    /* Output drained: buffered frames may now be processed, reading may
     * resume, and a draining connection may be done. */
    conn_run(c);
}

static void conn_flush(conn_t *c)
{
    if (c->closing || c->writing || c->out.len == 0)
        return;
    /* Double buffering: new answers go to `out` while `wbuf` is written, so
     * every answer produced during one loop turn leaves in one write. */
    pc_buf_t t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    uv_buf_t b = uv_buf_init((char *)c->wbuf.data, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, &c->h.stream, &b, 1, write_cb);
    if (rc < 0) {
        conn_close(c, uv_strerror(rc));
        return;
    }
    c->writing = 1;
    c->refs++;
}

/*
 * Fair turns. A loop serves many connections, and one that pipelines
 * without end, asks for large values, or never reads its answers must not
 * make the others wait. Each connection is served in turns of at most
 * TURN_QUANTUM_NS of the loop's time (conn_process; at least one frame),
 * and those with work left wait in the loop's scheduler for their next
 * turn.
 * There are two classes:
 *
 *   light  connections whose last turn ended before its quantum -- a
 *          client sending a request or a pipeline at a time and reading
 *          the answers;
 *   heavy  those whose last turn used its quantum (a flood, a large
 *          answer), and new connections until their first light turn.
 *
 * Each class is ordered by start-time fair queuing (pc_sched.h): by the
 * time its connections have had. An iteration of the loop serves light
 * turns for up to half of TURN_BUDGET_NS, then heavy turns -- at least
 * one, up to the budget -- then light ones again, and polls again: a
 * light client's request waits for at most one iteration, however many
 * heavy clients there are and however large their answers, and the heavy
 * ones share what is left, fairly, without starving. While nobody waits,
 * a connection is served as soon as its input is read, as it always was.
 *
 * Work is the loop's time, measured (uv_hrtime, about 25 ns a read on
 * these machines; see conn_process_frames for how often): decoding, serving, encoding, handing
 * the answers to the kernel, and reading the socket. Time is what the
 * others wait for; counting bytes instead misjudged it by an order of
 * magnitude both ways (a PING's cost is nearly all per request, a 1 MiB
 * answer's nearly all per byte).
 */
#define TURN_QUANTUM_NS ((uint64_t)50 * 1000)
#define TURN_BUDGET_NS ((uint64_t)500 * 1000)
#define TURN_CLOCK_EVERY 8
#define TURN_CLOCK_BYTES ((size_t)16 * 1024)
enum { LIGHT = 0, HEAVY = 1 };

static int conn_waiting(const conn_t *c)
{
    return pc_sched_queued(&c->sched[LIGHT]) || pc_sched_queued(&c->sched[HEAVY]);
}

static void conn_turn(conn_t *c)
{
    c->refs++; /* processing may close it; keep it until we are done */
    conn_process(c);
    c->refs--;
    conn_maybe_free(c);
}

/* Serves the next connection of a class; 0 if none waits. */
static int serve_next(pc_server_t *s, int cls)
{
    pc_sched_entry_t *e = pc_sched_pop(&s->sched[cls]);
    if (e == NULL)
        return 0;
    conn_turn(cls == LIGHT ? pc_list_entry(e, conn_t, sched[LIGHT])
                           : pc_list_entry(e, conn_t, sched[HEAVY]));
    return 1;
}

/*
 * Completions (Redis replies) never process a connection's input
 * themselves: they schedule it (conn_schedule). Processing inline would
 * nest -- a reply completes a request, processing starts the next
 * request, which may complete at once and process another connection --
 * with unbounded depth, and with callers up the stack (fetch_cb,
 * write_done) still holding per-key state that a nested call could free.
 */
static void run_idle_cb(uv_idle_t *h)
{
    pc_server_t *s = h->data;
    s->turn_work = 0;
    while (s->turn_work < TURN_BUDGET_NS / 2 && serve_next(s, LIGHT))
        ;
    if (serve_next(s, HEAVY))
        while (s->turn_work < TURN_BUDGET_NS && serve_next(s, HEAVY))
            ;
    while (s->turn_work < TURN_BUDGET_NS && serve_next(s, LIGHT))
        ;
    if (pc_sched_count(&s->sched[LIGHT]) + pc_sched_count(&s->sched[HEAVY]) == 0)
        uv_idle_stop(&s->run_idle);
}

/* Before the loop polls: a new iteration's budget, and the buffer cap. */
static void turn_prep_cb(uv_prepare_t *h)
{
    pc_server_t *s = h->data;
    s->turn_work = 0;
    srv_buffer_sweep(s);
}

/* c has work: its turn comes in order, in its class (heap room is
 * reserved for every connection when it is accepted, so the push cannot
 * fail). */
static void conn_schedule(conn_t *c)
{
    pc_server_t *s = c->srv;
    if (c->closing || conn_waiting(c))
        return;
    (void)pc_sched_push(&s->sched[c->heavy], &c->sched[c->heavy]);
    if (!uv_is_active((uv_handle_t *)&s->run_idle))
        uv_idle_start(&s->run_idle, run_idle_cb);
}

/* c has input or room to go on: a light one is served now unless light
 * ones wait (their turns are short, and they come in order); a heavy one
 * only if nobody waits and this iteration's budget is not spent, else in
 * its turn. A relay's internal connection carries many clients of another
 * loop, each bounded there: it is always served at once. */
static void conn_run(conn_t *c)
{
    pc_server_t *s = c->srv;
    if (conn_waiting(c))
        return; /* its turn will come */
    int now = c->internal || (!c->heavy ? pc_sched_count(&s->sched[LIGHT]) == 0
                                        : pc_sched_count(&s->sched[LIGHT]) == 0 &&
                                              pc_sched_count(&s->sched[HEAVY]) == 0 &&
                                              s->turn_work < TURN_BUDGET_NS);
    if (now)
        conn_process(c);
    else
        conn_schedule(c);
}

/* ---- requests ----------------------------------------------------------- */

static req_t *req_new(conn_t *c, uint32_t op, uint64_t id, uint32_t nslots)
{
    req_t *r = calloc(1, sizeof *r + nslots * sizeof(slot_t));
    if (r == NULL)
        return NULL;
    r->c = c;
    r->op = op;
    r->id = id;
    r->nslots = nslots;
    for (uint32_t i = 0; i < nslots; i++)
        r->slots[i].req = r;
    pc_buf_init(&r->resp, 0);
    pc_buf_set_account(&r->resp, &c->srv->buf_bytes); /* held answers count */
    pc_list_push_back(&c->reqs, &r->link);
    c->nreqs++;
    c->refs++;
    return r;
}

static void req_free(req_t *r)
{
    conn_t *c = r->c;
    for (uint32_t i = 0; i < r->nslots; i++) {
        pc_store_release(c->srv->store, r->slots[i].item);
        free(r->slots[i].copy);
    }
    free(r->key);
    c->held -= r->resp.len;
    pc_buf_free(&r->resp);
    pc_list_remove(&r->link);
    c->nreqs--;
    c->refs--;
    free(r);
}

static int req_is_head(const req_t *r) { return r->c->reqs.next == &r->link; }

/* Moves finished answers from the head of the queue to the output. */
static void conn_flush_ready(conn_t *c)
{
    while (!pc_list_empty(&c->reqs)) {
        req_t *r = pc_list_entry(c->reqs.next, req_t, link);
        if (!r->done)
            break;
        if (r->resp.len > 0 && pc_buf_append(&c->out, r->resp.data, r->resp.len) < 0) {
            req_free(r);
            conn_close(c, "out of memory");
            return;
        }
        req_free(r);
    }
}

/*
 * Where to encode an answer for (op, id) that is ready now: straight into
 * the output when nothing is queued ahead, else into a finished req_t that
 * waits its turn. NULL on allocation failure.
 */
static pc_buf_t *answer_target(conn_t *c, uint32_t op, uint64_t id)
{
    if (pc_list_empty(&c->reqs) || c->internal)
        return &c->out;
    req_t *r = req_new(c, op, id, 0);
    if (r == NULL)
        return NULL;
    r->done = 1;
    return &r->resp;
}

static uint64_t ring_fp(const pc_server_t *s)
{
    if (s->core != NULL)
        return atomic_load_explicit(&s->sh->ring_fp, memory_order_relaxed);
    return s->cluster ? pc_cluster_fingerprint(s->cluster) : 0;
}

/* On a peer's (sealed) connection, seals the frame just appended at
 * b->data[start..]; passes rc through otherwise. */
static int seal_answer(conn_t *c, pc_buf_t *b, size_t start, int rc)
{
    if (rc < 0 || !c->sealed)
        return rc;
    rc = pc_guard_seal_frame(c->srv->guard, &c->seal, PC_SEAL_PEER_RESP, b, start);
    if (rc < 0)
        b->len = start;
    return rc;
}

/* Every answer carries our ring's fingerprint (PROTOCOL.md §6). */
static int encode_answer(conn_t *c, pc_buf_t *b, const pc_response_t *resp, const char *errmsg)
{
    pc_response_t r = *resp;
    size_t start = b->len;
    r.ring_fp = ring_fp(c->srv);
    if (r.status != PC_ST_OK && errmsg != NULL) {
        r.message.ptr = (const uint8_t *)errmsg;
        r.message.len = (uint32_t)strlen(errmsg);
    }
    return seal_answer(c, b, start, pc_proto_encode_response(b, &r));
}

static void answer(conn_t *c, const pc_response_t *resp)
{
    pc_buf_t *b = answer_target(c, resp->op, resp->id);
    int rc = b ? encode_answer(c, b, resp, NULL) : PC_ENOMEM;
    if (b != NULL && b != &c->out)
        c->held += b->len;
    if (rc < 0)
        conn_close(c, "out of memory encoding a reply");
}

static void answer_error(conn_t *c, uint32_t op, uint64_t id, uint32_t status, const char *msg)
{
    pc_buf_t *b = answer_target(c, op, id);
    pc_response_t resp = {.op = op, .id = id, .status = status};
    int rc = b ? encode_answer(c, b, &resp, msg) : PC_ENOMEM;
    if (b != NULL && b != &c->out)
        c->held += b->len;
    if (rc < 0)
        conn_close(c, "out of memory encoding a reply");
}

/* A whole frame (4-byte length prefix + body) appended as it is, or
 * nothing. */
static int append_frame(pc_buf_t *b, const uint8_t *body, size_t len)
{
    uint8_t pfx[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    size_t before = b->len;
    int rc = pc_buf_append(b, pfx, 4);
    if (rc == 0)
        rc = pc_buf_append(b, body, len);
    if (rc < 0)
        b->len = before;
    return rc;
}

/*
 * A queued request has its answer: resp encoded here, or (raw != NULL) a
 * response body that is already encoded -- the owner's answer to a
 * forwarded request, relayed as it came: it already carries the client's
 * op and id, since the request went as it came. If the client is gone the
 * answer is dropped; if the request is at the head it goes out now.
 */
static void req_deliver(req_t *r, const pc_response_t *resp, const char *errmsg,
                        const uint8_t *raw, size_t rawlen)
{
    conn_t *c = r->c;
    /* Answered: nothing calls back for it any more. (An answer held behind
     * an unfinished request that still counted as waiting was never freed
     * when its connection closed, and held the connection for ever.) */
    r->waiting = 0;
    if (c->closing) {
        req_free(r);
        conn_maybe_free(c);
        return;
    }
    /* The core end of a relay answers as soon as it can: the relay's
     * requests are many clients', each put back in order by its worker. */
    pc_buf_t *b = req_is_head(r) || c->internal ? &c->out : &r->resp;
    size_t start = b->len;
    int rc = raw ? seal_answer(c, b, start, append_frame(b, raw, rawlen))
                 : encode_answer(c, b, resp, errmsg);
    r->done = 1;
    if (b == &c->out)
        req_free(r);
    else
        c->held += b->len;
    if (rc < 0) {
        conn_close(c, "out of memory encoding a reply");
        return;
    }
    conn_flush_ready(c);
    conn_flush(c);
    conn_schedule(c);
}

static void req_answer(req_t *r, const pc_response_t *resp, const char *errmsg)
{
    req_deliver(r, resp, errmsg, NULL, 0);
}

static void req_answer_status(req_t *r, uint32_t status, const char *msg)
{
    pc_response_t resp = {.op = r->op, .id = r->id, .status = status};
    req_answer(r, &resp, msg ? msg : pc_status_message(status));
}

/* ---- placement ------------------------------------------------------------ */

enum role {
    ROLE_NONE = PC_RING_ROLE_NONE,
    ROLE_OWNER = PC_RING_ROLE_OWNER,
    ROLE_REPLICA = PC_RING_ROLE_REPLICA
};

/* Where a key lives on our ring, and what we are to it. */
typedef struct route {
    uint32_t slot;
    enum role role;
    size_t n;                             /* placements */
    uint32_t at[PC_RING_MAX_REPLICAS];    /* ring member indexes, owner first */
} route_t;

/*
 * The ring as this loop sees it: the core asks the membership itself, a
 * worker reads the view the core last sent it (ringview_t). A worker
 * without a view, like a node without a cluster, owns everything.
 */
static int loop_clustered(const pc_server_t *s)
{
    return s->core != NULL ? s->rv != NULL : s->cluster != NULL;
}

static const pc_ring_t *loop_ring(const pc_server_t *s)
{
    return s->core != NULL ? s->rv->ring : pc_cluster_ring(s->cluster);
}

static long loop_self(const pc_server_t *s)
{
    return s->core != NULL ? s->rv->self : pc_cluster_self(s->cluster);
}

static int loop_suspect(const pc_server_t *s, size_t i)
{
    if (s->core == NULL)
        return pc_cluster_suspect(s->cluster, i);
    return i < s->rv->n && atomic_load_explicit(&s->rv->suspect[i], memory_order_relaxed);
}

static const char *loop_addr(const pc_server_t *s, size_t i)
{
    if (s->core == NULL)
        return pc_cluster_addr(s->cluster, i);
    return i < s->rv->n ? s->rv->addrs[i] : "";
}

static void route_key(const pc_server_t *s, const uint8_t *k, size_t n, route_t *rt)
{
    rt->slot = pc_ring_slot(k, n);
    rt->role = ROLE_OWNER;
    rt->n = 0;
    if (!loop_clustered(s))
        return;
    const pc_ring_t *ring = loop_ring(s);
    long self = loop_self(s);
    rt->n = pc_ring_slot_members(ring, rt->slot, rt->at, PC_RING_MAX_REPLICAS);
    rt->role = rt->n == 0 ? ROLE_OWNER : ROLE_NONE; /* no ring: all ours */
    for (size_t i = 0; i < rt->n; i++) {
        if ((long)rt->at[i] == self) {
            rt->role = i == 0 ? ROLE_OWNER : ROLE_REPLICA;
            break;
        }
    }
}

/*
 * The member a request for this key should go to: the owner, or for a
 * read whose owner is suspect, the first replica that is not (and not us).
 * -1 if we should serve it ourselves.
 */
static long route_target(const pc_server_t *s, const route_t *rt, int read)
{
    if (rt->role == ROLE_OWNER || rt->n == 0)
        return -1;
    long self = loop_self(s);
    if (!read || !loop_suspect(s, rt->at[0]))
        return rt->at[0];
    for (size_t i = 1; i < rt->n; i++) {
        if ((long)rt->at[i] == self)
            return -1; /* we are the replica to read from */
        if (!loop_suspect(s, rt->at[i]))
            return rt->at[i];
    }
    return rt->at[0];
}

/*
 * A store lookup that refuses copies stored before we gained the key's
 * slot (see slot_epoch). Such a copy is dropped so that a read-through
 * can replace it. `slot` is the key's slot if the caller has it, else
 * NO_SLOT (computed here, and only on a hit).
 */
#define NO_SLOT UINT32_MAX
static uint32_t view_gate(const pc_server_t *s, const uint8_t *k, size_t n, int *alone);
static int view_valid(const pc_server_t *s, const pc_item_t *it, const uint8_t *k, size_t n,
                      uint32_t gate, int alone);
static int store_lookup(pc_server_t *s, const uint8_t *k, size_t n, uint32_t slot,
                        uint64_t now, pc_item_t **out, int count_miss)
{
    if ((count_miss ? pc_store_get(s->store, k, n, now, out)
                    : pc_store_get_hit(s->store, k, n, now, out)) != 0)
        return PC_ENOTFOUND;
    int stale;
    if (s->core != NULL) { /* a worker (as a home loop): by the core's view */
        int alone;
        uint32_t gate = view_gate(s, k, n, &alone);
        if (gate == GATE_NONE) { /* the ring moved on: not ours to serve */
            pc_store_release(s->store, *out);
            *out = NULL;
            return PC_ENOTFOUND;
        }
        stale = !view_valid(s, *out, k, n, gate, alone);
    } else {
        if (s->slot_epoch == NULL || pc_item_epoch(*out) >= s->slot_epoch_max)
            return 0;
        if (slot == NO_SLOT)
            slot = pc_ring_slot(k, n);
        stale = pc_item_epoch(*out) < s->slot_epoch[slot];
    }
    if (stale) {
        pc_store_del_if_older(s->store, k, n, pc_item_version(*out) + 1, now);
        pc_store_release(s->store, *out);
        *out = NULL;
        s->stats.stale_dropped++;
        return PC_ENOTFOUND;
    }
    return 0;
}

static int store_get_valid(pc_server_t *s, const uint8_t *k, size_t n, uint32_t slot,
                           uint64_t now, pc_item_t **out)
{
    return store_lookup(s, k, n, slot, now, out, 1);
}

/* In the first settle_ms after we gained the slot? */
static int settling_slot(const pc_server_t *s, uint32_t slot, uint64_t *gained)
{
    if (s->slot_gained == NULL || s->last_gained == 0 ||
        now_ms(s) >= s->last_gained + s->set.settle_ms)
        return 0;
    uint64_t g = s->slot_gained[slot];
    *gained = g;
    return g != 0 && now_ms(s) < g + s->set.settle_ms;
}

static int settling(const pc_server_t *s, const uint8_t *k, size_t n, uint64_t *gained)
{
    return s->slot_gained != NULL && settling_slot(s, pc_ring_slot(k, n), gained);
}

/* The expiry an entry of this slot stored now may have (see slot_gained). */
static uint64_t settle_cap_slot(pc_server_t *s, uint32_t slot, uint64_t expire)
{
    uint64_t g;
    if (!settling_slot(s, slot, &g))
        return expire;
    uint64_t cap = g + 2 * s->set.settle_ms;
    if (expire == 0 || expire > cap) {
        s->stats.settle_capped++;
        return cap;
    }
    return expire;
}

static uint64_t settle_cap(pc_server_t *s, const uint8_t *k, size_t n, uint64_t expire)
{
    return s->slot_gained == NULL ? expire : settle_cap_slot(s, pc_ring_slot(k, n), expire);
}

/* Remembers a delete in a settling slot (see tomb_t). The table is a
 * fixed-size cache: when a probe run is full the oldest entry goes, which
 * can only let an old hand-off entry back in, for a key the settle
 * window's expiry cap then bounds like any other. */
static void tomb_add(pc_server_t *s, const uint8_t *k, size_t n)
{
    uint64_t g;
    if (!settling(s, k, n, &g))
        return;
    if (s->tombs == NULL && (s->tombs = calloc(TOMBSTONES, sizeof *s->tombs)) == NULL)
        return;
    uint64_t h = key_hash(s, k, n), now = now_ms(s);
    tomb_t *victim = NULL;
    for (unsigned i = 0; i < 16; i++) {
        tomb_t *t = &s->tombs[(h + i) & (TOMBSTONES - 1)];
        if (t->hash == h || t->until <= now) {
            victim = t;
            break;
        }
        if (victim == NULL || t->until < victim->until)
            victim = t;
    }
    victim->hash = h;
    victim->until = g + 2 * s->set.settle_ms;
}

static int tomb_has(pc_server_t *s, const uint8_t *k, size_t n)
{
    if (s->tombs == NULL)
        return 0;
    uint64_t h = key_hash(s, k, n), now = now_ms(s);
    for (unsigned i = 0; i < 16; i++) {
        const tomb_t *t = &s->tombs[(h + i) & (TOMBSTONES - 1)];
        if (t->hash == h && t->until > now)
            return 1;
    }
    return 0;
}

/* A key is gone here: drop our copy and remember it (tomb_add). */
static void local_drop(pc_server_t *s, const uint8_t *k, size_t n)
{
    pc_store_del(s->store, k, n, now_ms(s));
    tomb_add(s, k, n);
}

/* ---- GET / MGET ---------------------------------------------------------- */

static void entry_from_item(pc_entry_t *e, const pc_item_t *it, uint64_t now)
{
    e->status = PC_ST_OK;
    e->value.ptr = pc_item_value(it);
    e->value.len = (uint32_t)pc_item_vlen(it);
    e->flags = pc_item_flags(it);
    e->version = pc_item_version(it);
    e->ttl_ms = ttl_left(pc_item_expire(it), now);
}

static void entry_from_slot(pc_entry_t *e, const slot_t *sl, uint64_t now)
{
    if (sl->item) {
        entry_from_item(e, sl->item, now);
        return;
    }
    memset(e, 0, sizeof *e);
    e->status = sl->status;
    if (sl->status == PC_ST_OK) {
        e->value.ptr = sl->copy;
        e->value.len = (uint32_t)sl->copy_len;
        e->flags = sl->copy_flags;
        e->version = sl->copy_version;
        e->ttl_ms = sl->copy_ttl;
    }
}

/* All slots of a GET/MGET are resolved: encode the answer. */
static void read_req_finish(req_t *r)
{
    pc_server_t *s = r->c->srv;
    uint64_t now = now_ms(s);
    if (r->op == PC_OP_GET) {
        slot_t *sl = &r->slots[0];
        if (sl->status != PC_ST_OK) {
            req_answer_status(r, sl->status, NULL);
            return;
        }
        pc_response_t resp = {.op = r->op, .id = r->id, .status = PC_ST_OK};
        entry_from_slot(&resp.entry, sl, now);
        req_answer(r, &resp, NULL);
        return;
    }
    /* MGET: entries that would push the reply past max_frame come back as
     * TOO_LARGE one by one, so the client can fetch them alone. Every entry
     * takes at least its short form whatever becomes of it -- including
     * those after the budget ran out -- so that is set aside for all of
     * them first, and only hits draw on what is left. */
    pc_entry_t *entries = malloc(r->nslots * sizeof *entries);
    if (entries == NULL) {
        req_answer_status(r, PC_ST_INTERNAL, "out of memory");
        return;
    }
    size_t fixed = 64 + (size_t)r->nslots * MGET_SHORT_ENTRY;
    size_t budget = s->set.limits.max_frame > fixed ? s->set.limits.max_frame - fixed : 0;
    for (uint32_t i = 0; i < r->nslots; i++) {
        entry_from_slot(&entries[i], &r->slots[i], now);
        if (entries[i].status != PC_ST_OK)
            continue;
        size_t need = PC_PROTO_ENTRY_OVERHEAD + entries[i].value.len;
        if (need > budget) {
            memset(&entries[i], 0, sizeof entries[i]);
            entries[i].status = PC_ST_TOO_LARGE;
        } else {
            budget -= need;
        }
    }
    pc_response_t resp = {.op = r->op, .id = r->id, .status = PC_ST_OK,
                          .nentries = r->nslots, .entries = entries};
    req_answer(r, &resp, NULL);
    free(entries);
}

static void slot_resolved(slot_t *sl)
{
    req_t *r = sl->req;
    if (--r->waiting > 0)
        return;
    if (r->c->closing) {
        conn_t *c = r->c;
        req_free(r);
        conn_maybe_free(c);
        return;
    }
    read_req_finish(r);
}

static void fetch_cb(void *arg, int err, int found, const uint8_t *val, size_t vlen,
                     uint32_t flags, int64_t pttl)
{
    keystate_t *ks = arg;
    pc_server_t *s = ks->srv;
    slot_t *waiters = ks->waiters;
    ks->waiters = ks->waiters_tail = NULL;
    ks->fetching = 0;
    uint64_t now = now_ms(s);

    /* Another program may have written a value over our max_value (even
     * over max_frame) to Redis: it is neither cached nor sent, the key
     * answers TOO_LARGE, as a SET of it would have. */
    int too_large = err == 0 && found && vlen > s->set.limits.max_value;

    /* Fill the store unless something newer got there first (see the
     * ordering argument at the top: then that entry is what we serve) or
     * Redis says the key already expired. */
    pc_item_t *stored = NULL;
    uint64_t version = 0;
    int64_t ttl = pttl;
    /* Only the owner caches what it reads (decided now, on the ring as it
     * is when Redis answered): a node that serves a key it does not own
     * passes the value on without keeping a copy nobody keeps current. */
    route_t rt;
    route_key(s, ks->key, ks->klen, &rt);
    if (err == 0 && found && !too_large && pttl != 0 && rt.role == ROLE_OWNER && !ks->nocache) {
        version = next_version(s);
        uint64_t exp = settle_cap(s, ks->key, ks->klen, expire_at(s, pttl > 0 ? (uint64_t)pttl : 0));
        int rc = pc_store_set(s->store, ks->key, ks->klen, val, vlen, flags, version, exp,
                              PC_STORE_SET_IF_ABSENT, now);
        if (rc == 0 || rc == PC_EEXISTS)
            pc_store_peek(s->store, ks->key, ks->klen, now, &stored);
    }

    while (waiters) {
        slot_t *sl = waiters;
        waiters = sl->next_waiter;
        sl->next_waiter = NULL;
        if (err != 0) {
            sl->status = PC_ST_BACKEND_UNAVAILABLE;
        } else if (!found) {
            sl->status = PC_ST_NOT_FOUND;
        } else if (too_large) {
            sl->status = PC_ST_TOO_LARGE;
        } else if (stored != NULL) {
            /* one more reference to the same item for this waiter */
            sl->status = pc_store_peek(s->store, ks->key, ks->klen, now, &sl->item) == 0
                             ? PC_ST_OK
                             : PC_ST_NOT_FOUND;
        } else {
            sl->status = PC_ST_OK;
            if (version == 0)
                version = next_version(s);
            sl->copy = malloc(vlen ? vlen : 1);
            if (sl->copy == NULL) {
                sl->status = PC_ST_INTERNAL;
            } else {
                memcpy(sl->copy, val, vlen);
                sl->copy_len = vlen;
                sl->copy_flags = flags;
                sl->copy_version = version;
                sl->copy_ttl = ttl;
            }
        }
        slot_resolved(sl);
    }
    pc_store_release(s->store, stored);
    ks_release(s, ks);
}

/* After a store miss: resolves sl now (no backend, or Redis down) or
 * queues it on the key's read from Redis. */
static void slot_miss(conn_t *c, slot_t *sl, const pc_bytes_t *key)
{
    pc_server_t *s = c->srv;
    if (s->backend == NULL) {
        sl->status = PC_ST_NOT_FOUND;
        return;
    }
    keystate_t *ks = ks_get(s, key->ptr, key->len);
    if (ks == NULL) {
        sl->status = PC_ST_INTERNAL;
        return;
    }
    sl->req->waiting++;
    if (ks->waiters_tail)
        ks->waiters_tail->next_waiter = sl;
    else
        ks->waiters = sl;
    ks->waiters_tail = sl;
    if (ks->fetching) {
        s->stats.reads_coalesced++;
        return;
    }
    ks->fetching = 1;
    ks->nocache = home_foreign(s, ks->key, ks->klen);
    s->stats.backend_reads++;
    int rc = pc_backend_get(s->backend, ks->key, ks->klen, fetch_cb, ks);
    if (rc < 0) /* Redis down: fail fast, through the same path */
        fetch_cb(ks, rc, 0, NULL, 0, 0, -1);
}

static void slot_lookup(conn_t *c, slot_t *sl, const pc_bytes_t *key)
{
    pc_server_t *s = c->srv;
    if (store_get_valid(s, key->ptr, key->len, NO_SLOT, now_ms(s), &sl->item) == 0)
        sl->status = PC_ST_OK;
    else
        slot_miss(c, sl, key);
}

/* ---- forwarding ------------------------------------------------------------ */

/*
 * A key we do not own, served here anyway: we were asked as a replica, or
 * the request was relayed to us, or its owner could not be reached. A
 * replica answers from its copy; any other node reads Redis (without
 * caching: fetch_cb caches only on the owner), never from a copy that
 * nobody keeps current.
 */
static void slot_serve_here(conn_t *c, slot_t *sl, const pc_bytes_t *key)
{
    route_t rt;
    route_key(c->srv, key->ptr, key->len, &rt);
    c->srv->stats.not_owner_reads++;
    if (rt.role != ROLE_NONE)
        slot_lookup(c, sl, key);
    else
        slot_miss(c, sl, key);
}

/* A forwarded request whose owner did not answer. */
static void fwd_failed(req_t *r, int err)
{
    pc_server_t *s = r->c->srv;
    s->stats.forward_errors++;
    if (r->op == PC_OP_GET) {
        /* Reads stay available: serve it here (see slot_serve_here). */
        pc_bytes_t key = {r->key, r->klen};
        r->waiting = 1;
        slot_serve_here(r->c, &r->slots[0], &key);
        slot_resolved(&r->slots[0]);
        return;
    }
    req_answer_status(r, PC_ST_BACKEND_UNAVAILABLE,
                      err == PC_ETIMEDOUT
                          ? "the key's owner did not answer in time; the write may or may not "
                            "have been applied"
                          : "the key's owner is unreachable; the write may or may not have been "
                            "applied");
}

static void fwd_done(void *arg, int err, const uint8_t *body, size_t len)
{
    req_t *r = arg;
    conn_t *c = r->c;
    pc_server_t *s = c->srv;
    r->waiting = 0;
    if (c->closing) {
        req_free(r);
        conn_maybe_free(c);
        return;
    }
    if (err != 0) {
        fwd_failed(r, err);
        return;
    }
    /* Relay only a well-formed answer to this very request. An error
     * about the FORWARD itself (an older or confused peer) becomes ours. */
    pc_response_t resp;
    if (pc_proto_decode_response(s->pdec, body, len, &resp) != 0) {
        fwd_failed(r, PC_EPROTO);
        return;
    }
    if (resp.op == PC_OP_FORWARD && resp.status != PC_ST_OK) {
        req_answer_status(r, PC_ST_INTERNAL, "the key's owner refused the forwarded request");
        return;
    }
    if (resp.op != r->op || resp.id != r->id) {
        fwd_failed(r, PC_EPROTO);
        return;
    }
    req_deliver(r, NULL, NULL, body, len);
}

/* Sends a single-key request, as it came, to ring member `target`. */
static void forward_request(conn_t *c, const pc_request_t *rq, long target)
{
    pc_server_t *s = c->srv;
    req_t *r = req_new(c, rq->op, rq->id, rq->op == PC_OP_GET ? 1 : 0);
    if (r == NULL || (r->key = malloc(rq->key.len)) == NULL) {
        if (r)
            req_free(r);
        answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return;
    }
    memcpy(r->key, rq->key.ptr, rq->key.len);
    r->klen = rq->key.len;
    r->forwarded = 1;
    pc_request_t f = {.op = PC_OP_FORWARD, .id = rq->id, .hops = c->hops + 1,
                      .body = {c->cur_body, c->cur_len}};
    pc_buf_reset(&s->scratch);
    int rc = pc_proto_encode_request(&s->scratch, &f);
    if (rc == 0)
        rc = pc_peer_request(s->peers, loop_addr(s, (size_t)target), s->scratch.data,
                             s->scratch.len, fwd_done, r);
    if (rc < 0) {
        if (r->op != PC_OP_GET) {
            /* Nothing left this node: a definite "not applied". */
            s->stats.forward_errors++;
            req_answer_status(r, PC_ST_RETRY, "the key's owner is unreachable from this node; "
                                              "nothing was applied, retry");
            return;
        }
        fwd_failed(r, rc);
        return;
    }
    r->waiting = 1;
    s->stats.forwarded++;
}

/* Part of an MGET sent to one other member. */
typedef struct mfwd {
    req_t *r;
    uint32_t n;
    uint32_t *idx;    /* slot index in r for each key sent */
    pc_bytes_t *keys; /* copies, for the fallback */
} mfwd_t;

static void mfwd_fallback(mfwd_t *f)
{
    conn_t *c = f->r->c;
    for (uint32_t j = 0; j < f->n; j++) {
        slot_t *sl = &f->r->slots[f->idx[j]];
        if (!c->closing)
            slot_serve_here(c, sl, &f->keys[j]);
        slot_resolved(sl); /* may finish (and free) the request on the last */
    }
}

/* An MGET key answered elsewhere (its owner, or its home loop): the
 * entry's value is copied, the answer it came in is transient. */
static void slot_take_entry(slot_t *sl, const pc_entry_t *e)
{
    sl->status = e->status;
    if (e->status != PC_ST_OK)
        return;
    sl->copy = malloc(e->value.len ? e->value.len : 1);
    if (sl->copy == NULL) {
        sl->status = PC_ST_INTERNAL;
        return;
    }
    memcpy(sl->copy, e->value.ptr, e->value.len);
    sl->copy_len = e->value.len;
    sl->copy_flags = e->flags;
    sl->copy_version = e->version;
    sl->copy_ttl = e->ttl_ms;
}

static void mfwd_done(void *arg, int err, const uint8_t *body, size_t len)
{
    mfwd_t *f = arg;
    req_t *r = f->r;
    pc_server_t *s = r->c->srv;
    pc_response_t resp;
    int closing = r->c->closing;
    if (err == 0 && !closing &&
        (pc_proto_decode_response(s->pdec, body, len, &resp) != 0 || resp.op != PC_OP_MGET ||
         resp.status != PC_ST_OK || resp.nentries != f->n))
        err = PC_EPROTO;
    if (err != 0 && !closing) {
        s->stats.forward_errors++;
        mfwd_fallback(f);
        free(f);
        return;
    }
    for (uint32_t j = 0; j < f->n; j++) {
        slot_t *sl = &r->slots[f->idx[j]];
        if (err == 0 && !closing)
            slot_take_entry(sl, &resp.entries[j]);
        slot_resolved(sl);
    }
    free(f);
}

/* Sends keys idx[0..n) of an MGET to ring member `target` as one MGET. */
static void mget_forward(conn_t *c, req_t *r, const pc_request_t *rq, const uint32_t *idx,
                         uint32_t n, long target)
{
    pc_server_t *s = c->srv;
    size_t bytes = 0;
    for (uint32_t j = 0; j < n; j++)
        bytes += rq->keys[idx[j]].len;
    mfwd_t *f = malloc(sizeof *f + n * (sizeof(uint32_t) + sizeof(pc_bytes_t)) + bytes);
    if (f == NULL) {
        for (uint32_t j = 0; j < n; j++)
            r->slots[idx[j]].status = PC_ST_INTERNAL;
        return;
    }
    f->r = r;
    f->n = n;
    f->keys = (pc_bytes_t *)(f + 1);
    f->idx = (uint32_t *)(f->keys + n);
    uint8_t *p = (uint8_t *)(f->idx + n);
    for (uint32_t j = 0; j < n; j++) {
        const pc_bytes_t *k = &rq->keys[idx[j]];
        memcpy(p, k->ptr, k->len);
        f->keys[j].ptr = p;
        f->keys[j].len = k->len;
        f->idx[j] = idx[j];
        p += k->len;
    }
    r->waiting += n;

    pc_request_t m = {.op = PC_OP_MGET, .id = rq->id, .nkeys = n, .keys = f->keys};
    pc_buf_t inner;
    pc_buf_init(&inner, 0);
    int rc = pc_proto_encode_request(&inner, &m);
    if (rc == 0) {
        pc_request_t fw = {.op = PC_OP_FORWARD, .id = rq->id, .hops = c->hops + 1,
                           .body = {inner.data + 4, (uint32_t)(inner.len - 4)}};
        pc_buf_reset(&s->scratch);
        rc = pc_proto_encode_request(&s->scratch, &fw);
    }
    pc_buf_free(&inner);
    if (rc == 0)
        rc = pc_peer_request(s->peers, loop_addr(s, (size_t)target), s->scratch.data,
                             s->scratch.len, mfwd_done, f);
    if (rc < 0) {
        s->stats.forward_errors++;
        mfwd_fallback(f);
        free(f);
        return;
    }
    s->stats.forwarded++;
}

/*
 * The keys of an MGET that missed here and are homed on another loop
 * (homes on), sent to that loop as one MGET: it reads them through on its
 * own Redis connection, which orders them among that key's writes, and
 * caches them, as a GET miss relayed there would be. The answer fills
 * their slots.
 */
typedef struct mrelay {
    relay_wait_t rw;
    req_t *r;
    uint32_t n;
    uint32_t idx[]; /* slot index in r of each key sent */
} mrelay_t;

static relay_t *home_relay(pc_server_t *s, size_t h);
static void relay_wait_add(relay_t *rl, relay_wait_t *w, uint64_t id);

static void mrelay_done(relay_wait_t *w, pc_response_t *resp)
{
    mrelay_t *m = pc_list_entry(w, mrelay_t, rw);
    req_t *r = m->r;
    conn_t *c = r->c;
    int ok = resp != NULL && resp->op == PC_OP_MGET && resp->status == PC_ST_OK &&
             resp->nentries == m->n;
    c->relayed--;
    for (uint32_t j = 0; j < m->n; j++) {
        slot_t *sl = &r->slots[m->idx[j]];
        if (ok && !c->closing)
            slot_take_entry(sl, &resp->entries[j]);
        else
            sl->status = PC_ST_INTERNAL; /* the node is stopping */
        slot_resolved(sl); /* may finish (and free) the request on the last */
    }
    free(m);
}

/* Sends keys idx[0..n) of an MGET, all homed on loop h, to that loop. A
 * peer's FORWARD goes on as one, its hops kept, so that the home never
 * relays it to another member. If it cannot go, they are read here,
 * uncached (slot_miss). */
static void mget_relay(conn_t *c, req_t *r, const pc_request_t *rq, const uint32_t *idx,
                       uint32_t n, size_t h)
{
    pc_server_t *s = c->srv;
    relay_t *rl = home_relay(s, h);
    mrelay_t *m = malloc(sizeof *m + n * sizeof *m->idx);
    pc_bytes_t *keys = malloc(n * sizeof *keys);
    uint64_t id = rl->next_id + 1;
    int rc = PC_ENOMEM;
    if (m != NULL && keys != NULL && rl->open) {
        for (uint32_t j = 0; j < n; j++) {
            keys[j] = rq->keys[idx[j]];
            m->idx[j] = idx[j];
        }
        pc_request_t mg = {.op = PC_OP_MGET, .id = id, .nkeys = n, .keys = keys};
        if (c->hops == 0) {
            rc = pc_proto_encode_request(&rl->out, &mg);
        } else {
            pc_buf_reset(&s->fbuf);
            rc = pc_proto_encode_request(&s->fbuf, &mg);
            pc_request_t fw = {.op = PC_OP_FORWARD, .id = id, .hops = c->hops,
                               .body = {s->fbuf.data + 4, (uint32_t)(s->fbuf.len - 4)}};
            if (rc == 0)
                rc = pc_proto_encode_request(&rl->out, &fw);
        }
    }
    free(keys);
    if (rc < 0) {
        free(m);
        for (uint32_t j = 0; j < n; j++)
            slot_miss(c, &r->slots[idx[j]], &rq->keys[idx[j]]);
        return;
    }
    rl->next_id = id;
    m->r = r;
    m->n = n;
    m->rw.done = mrelay_done;
    r->waiting += n;
    c->relayed++;
    relay_wait_add(rl, &m->rw, id);
}

/* mget_lookup's answer for a key to be read through on home loop h. */
#define TARGET_HOME(h) (-2 - (long)(h))

/*
 * An MGET key this node owns: a hit, or a miss read through here; but
 * while homes are on, a miss of a key homed on another loop is left to
 * that loop (TARGET_HOME, for mget_relay), which counts the miss. -1 =
 * dealt with here.
 */
static long mget_lookup(conn_t *c, slot_t *sl, const pc_bytes_t *key)
{
    pc_server_t *s = c->srv;
    int foreign = s->backend != NULL && home_foreign(s, key->ptr, key->len);
    if (store_lookup(s, key->ptr, key->len, NO_SLOT, now_ms(s), &sl->item, !foreign) == 0) {
        sl->status = PC_ST_OK;
        return -1;
    }
    if (foreign)
        return TARGET_HOME(home_of(s->sh, key->ptr, key->len));
    slot_miss(c, sl, key);
    return -1;
}

static void handle_get(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    route_t rt;
    route_key(s, rq->key.ptr, rq->key.len, &rt);
    if (rt.role != ROLE_OWNER) {
        long t = c->hops == 0 ? route_target(s, &rt, 1) : -1;
        if (t >= 0) {
            forward_request(c, rq, t);
            return;
        }
        req_t *r = req_new(c, rq->op, rq->id, 1);
        if (r == NULL) {
            answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
            return;
        }
        r->waiting = 1;
        slot_serve_here(c, &r->slots[0], &rq->key);
        slot_resolved(&r->slots[0]);
        return;
    }
    pc_item_t *it = NULL;
    int hit = store_get_valid(s, rq->key.ptr, rq->key.len, rt.slot, now_ms(s), &it) == 0;
    /* Fast path: a hit with nothing queued ahead is encoded straight from
     * the item into the output; no allocation. */
    if (hit && pc_list_empty(&c->reqs)) {
        pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK};
        entry_from_item(&resp.entry, it, now_ms(s));
        answer(c, &resp);
        pc_store_release(s->store, it);
        return;
    }
    req_t *r = req_new(c, rq->op, rq->id, 1);
    if (r == NULL) {
        pc_store_release(s->store, it);
        answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return;
    }
    r->waiting = 1; /* held while we look, so a synchronous answer waits */
    if (hit) {
        r->slots[0].item = it;
        r->slots[0].status = PC_ST_OK;
    } else {
        slot_miss(c, &r->slots[0], &rq->key);
    }
    slot_resolved(&r->slots[0]);
}

static void handle_mget(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    if (rq->nkeys == 0) {
        answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "MGET needs at least one key");
        return;
    }
    req_t *r = req_new(c, rq->op, rq->id, rq->nkeys);
    if (r == NULL) {
        answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return;
    }
    r->waiting = 1;
    if (!loop_clustered(s) && !(s->sh->nhomes > 1 && homes_on(s))) {
        for (uint32_t i = 0; i < rq->nkeys; i++)
            slot_lookup(c, &r->slots[i], &rq->keys[i]);
        slot_resolved(&r->slots[0]);
        return;
    }
    /* Keys we own are looked up here (their misses read through on their
     * home loop); the others go to their owners, one MGET per owner or
     * home loop, and the answers are put back in request order. */
    long *target = malloc(rq->nkeys * (sizeof(long) + sizeof(uint32_t)));
    if (target == NULL) {
        for (uint32_t i = 0; i < rq->nkeys; i++)
            r->slots[i].status = PC_ST_INTERNAL;
        slot_resolved(&r->slots[0]);
        return;
    }
    uint32_t *idx = (uint32_t *)(target + rq->nkeys);
    for (uint32_t i = 0; i < rq->nkeys; i++) {
        route_t rt;
        route_key(s, rq->keys[i].ptr, rq->keys[i].len, &rt);
        target[i] = -1;
        if (rt.role == ROLE_OWNER)
            target[i] = mget_lookup(c, &r->slots[i], &rq->keys[i]);
        else if ((target[i] = c->hops == 0 ? route_target(s, &rt, 1) : -1) < 0)
            slot_serve_here(c, &r->slots[i], &rq->keys[i]);
    }
    for (uint32_t i = 0; i < rq->nkeys; i++) {
        if (target[i] == -1)
            continue;
        long t = target[i];
        uint32_t n = 0;
        for (uint32_t j = i; j < rq->nkeys; j++) {
            if (target[j] == t) {
                idx[n++] = j;
                target[j] = -1;
            }
        }
        if (t >= 0)
            mget_forward(c, r, rq, idx, n, t);
        else
            mget_relay(c, r, rq, idx, n, (size_t)(-2 - t));
    }
    free(target);
    slot_resolved(&r->slots[0]);
}

/* ---- SET / DEL / TOUCH ------------------------------------------------- */

static void write_issue(req_t *r);

static void repl_done(void *arg, int err, const uint8_t *body, size_t len)
{
    pc_server_t *s = arg;
    (void)body;
    (void)len;
    if (err != 0)
        s->stats.replicate_errors++;
}

/*
 * After the owner applied a write: send the new version to the key's
 * replicas (has_value 0 = the key is gone at this version). Fire and
 * forget: the client's answer does not wait for the replicas
 * (docs/CONSISTENCY.md says what that allows).
 */
static void replicate(pc_server_t *s, const uint8_t *key, size_t klen, const uint8_t *val,
                      size_t vlen, int has_value, uint32_t flags, uint64_t version, int64_t ttl)
{
    if (!loop_clustered(s))
        return;
    route_t rt;
    route_key(s, key, klen, &rt);
    if (rt.n < 2)
        return;
    pc_repl_entry_t e = {.key = {key, (uint32_t)klen}, .value = {val, (uint32_t)vlen},
                         .has_value = has_value, .flags = flags, .version = version,
                         .ttl_ms = ttl};
    pc_request_t rq = {.op = PC_OP_REPLICATE, .mode = PC_REPL_WRITE,
                       .from = {(const uint8_t *)s->name, (uint32_t)strlen(s->name)},
                       .nentries = 1, .entries = &e};
    pc_buf_reset(&s->scratch);
    if (pc_proto_encode_request(&s->scratch, &rq) < 0) {
        s->stats.replicate_errors++;
        return;
    }
    long self = loop_self(s);
    for (size_t i = 0; i < rt.n; i++) {
        if ((long)rt.at[i] == self)
            continue;
        if (pc_peer_request(s->peers, loop_addr(s, rt.at[i]), s->scratch.data,
                            s->scratch.len, repl_done, s) < 0)
            s->stats.replicate_errors++;
        else
            s->stats.replicated++;
    }
}

static void replicate_delete(pc_server_t *s, const uint8_t *key, size_t klen)
{
    replicate(s, key, klen, NULL, 0, 0, 0, next_version(s), -1);
}

/* Runs the next compare-and-set that waited for this key's writes. */
static void ks_drain_deferred(pc_server_t *s, keystate_t *ks)
{
    while (ks->pending_writes == 0 && ks->deferred) {
        req_t *r = ks->deferred;
        ks->deferred = r->next_deferred;
        if (ks->deferred == NULL)
            ks->deferred_tail = NULL;
        r->next_deferred = NULL;
        r->waiting = 0;
        write_issue(r);
    }
}

static void write_done(void *arg, int err, int applied)
{
    req_t *r = arg;
    conn_t *c = r->c;
    pc_server_t *s = c->srv;
    keystate_t *ks = r->ks;
    uint64_t now = now_ms(s);
    ks->pending_writes--;
    r->waiting = 0;

    if (err != 0) {
        /* Redis may or may not have applied it (a timeout is ambiguous), so
         * the cached copy can no longer be trusted: drop it, and the next
         * read goes to Redis. */
        local_drop(s, r->key, r->klen);
        replicate_delete(s, r->key, r->klen);
        req_answer_status(r, PC_ST_BACKEND_UNAVAILABLE, "redis unavailable; the write may not "
                                                        "have been applied");
    } else if (r->op == PC_OP_SET) {
        if (!applied) {
            req_answer_status(r, r->cond == PC_COND_NX ? PC_ST_EXISTS : PC_ST_NOT_STORED, NULL);
        } else {
            uint64_t v = next_version(s);
            if (pc_store_set(s->store, r->key, r->klen, r->val, r->vlen, r->flags, v,
                             settle_cap(s, r->key, r->klen, expire_at(s, r->ttl_ms)),
                             PC_STORE_SET_ALWAYS, now) != 0)
                local_drop(s, r->key, r->klen); /* never serve the old one */
            replicate(s, r->key, r->klen, r->val, r->vlen, 1, r->flags, v,
                      r->ttl_ms == 0 ? -1 : (int64_t)(r->ttl_ms > INT64_MAX ? INT64_MAX : r->ttl_ms));
            pc_response_t resp = {.op = r->op, .id = r->id, .status = PC_ST_OK, .version = v};
            req_answer(r, &resp, NULL);
        }
    } else if (r->op == PC_OP_DEL) {
        local_drop(s, r->key, r->klen);
        replicate_delete(s, r->key, r->klen);
        req_answer_status(r, applied ? PC_ST_OK : PC_ST_NOT_FOUND, NULL);
    } else { /* TOUCH */
        if (applied)
            pc_store_touch(s->store, r->key, r->klen,
                           settle_cap(s, r->key, r->klen, expire_at(s, r->ttl_ms)), now);
        else
            local_drop(s, r->key, r->klen);
        /* Replicas drop their copy rather than track expiry changes: a new
         * TTL on an old version cannot be ordered against other writes. */
        replicate_delete(s, r->key, r->klen);
        req_answer_status(r, applied ? PC_ST_OK : PC_ST_NOT_FOUND, NULL);
    }
    ks_drain_deferred(s, ks);
    ks_release(s, ks);
}

/* A compare-and-set against the cached version: PC_ST_OK, EXISTS (the
 * version differs) or NOT_FOUND (no cached copy to vouch for). */
static uint32_t cas_check(pc_server_t *s, const uint8_t *key, size_t klen, uint64_t cas)
{
    pc_item_t *it;
    if (pc_store_peek(s->store, key, klen, now_ms(s), &it) != 0)
        return PC_ST_NOT_FOUND;
    uint32_t st = pc_item_version(it) == cas ? PC_ST_OK : PC_ST_EXISTS;
    pc_store_release(s->store, it);
    return st;
}

/* Sends a write to Redis (r->ks set, no earlier write pending for CAS). */
static void write_issue(req_t *r)
{
    pc_server_t *s = r->c->srv;
    keystate_t *ks = r->ks;
    uint32_t st = r->cas != 0 ? cas_check(s, r->key, r->klen, r->cas) : PC_ST_OK;
    if (st != PC_ST_OK) {
        req_answer_status(r, st, st == PC_ST_EXISTS
                                     ? "version differs: read the key again and retry"
                                     : "no cached copy to compare: read the key again and retry");
        return;
    }
    int rc;
    switch (r->op) {
    case PC_OP_SET:
        rc = pc_backend_set(s->backend, r->key, r->klen, r->val, r->vlen, r->ttl_ms, r->cond,
                            r->flags, write_done, r);
        break;
    case PC_OP_DEL:
        rc = pc_backend_del(s->backend, r->key, r->klen, write_done, r);
        break;
    default:
        rc = pc_backend_expire(s->backend, r->key, r->klen, r->ttl_ms, write_done, r);
        break;
    }
    if (rc < 0) {
        req_answer_status(r, PC_ST_BACKEND_UNAVAILABLE,
                          rc == PC_EBACKEND ? "redis unavailable" : pc_strerror(rc));
        return;
    }
    s->stats.backend_writes++;
    r->waiting = 1;
    ks->pending_writes++;
}

/* Write path with no backend: the store is the truth. */
/* A write with no Redis behind us: the store decides. `slot` is the
 * key's ring slot (route_key has it already). */
static void handle_write_local(conn_t *c, const pc_request_t *rq, uint32_t slot)
{
    pc_server_t *s = c->srv;
    uint64_t now = now_ms(s);
    pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK};
    if (rq->op == PC_OP_SET) {
        /* The condition is checked by the store, under the lock that
         * stores: other loops write the same store at the same time. */
        int mode = PC_STORE_SET_ALWAYS;
        if (rq->cas != 0)
            mode = PC_STORE_SET_IF_VERSION;
        else if (rq->cond == PC_COND_NX)
            mode = PC_STORE_SET_IF_ABSENT;
        else if (rq->cond == PC_COND_XX)
            mode = PC_STORE_SET_IF_PRESENT;
        resp.version = next_version(s);
        int rc = pc_store_set_if(s->store, rq->key.ptr, rq->key.len, rq->value.ptr,
                                 rq->value.len, rq->flags, resp.version,
                                 settle_cap_slot(s, slot, expire_at(s, rq->ttl_ms)), mode,
                                 rq->cas, now);
        if (rc == PC_EEXISTS) /* NX: present; CAS: another version */
            resp.status = PC_ST_EXISTS;
        else if (rc == PC_ENOTFOUND) /* XX: absent; CAS: nothing to compare */
            resp.status = rq->cas == 0 || rq->cond == PC_COND_XX ? PC_ST_NOT_STORED
                                                                 : PC_ST_NOT_FOUND;
        else if (rc < 0)
            resp.status = pc_err_to_status(rc);
        if (resp.status == PC_ST_OK)
            replicate(s, rq->key.ptr, rq->key.len, rq->value.ptr, rq->value.len, 1, rq->flags,
                      resp.version,
                      rq->ttl_ms == 0 ? -1
                                      : (int64_t)(rq->ttl_ms > INT64_MAX ? INT64_MAX : rq->ttl_ms));
    } else if (rq->op == PC_OP_DEL) {
        if (pc_store_del(s->store, rq->key.ptr, rq->key.len, now) != 0)
            resp.status = PC_ST_NOT_FOUND;
        else
            replicate_delete(s, rq->key.ptr, rq->key.len);
        tomb_add(s, rq->key.ptr, rq->key.len);
    } else {
        if (pc_store_touch(s->store, rq->key.ptr, rq->key.len,
                           settle_cap_slot(s, slot, expire_at(s, rq->ttl_ms)), now) != 0)
            resp.status = PC_ST_NOT_FOUND;
        else
            replicate_delete(s, rq->key.ptr, rq->key.len);
    }
    if (resp.status == PC_ST_OK)
        answer(c, &resp);
    else
        answer_error(c, rq->op, rq->id, resp.status, NULL);
}

static void handle_write(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    if (rq->op == PC_OP_SET && rq->cas != 0 && rq->cond == PC_COND_NX) {
        answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST,
                     "compare-and-set cannot be combined with NX");
        return;
    }
    /* Writes are taken by the key's owner only, always through Redis
     * first. A write relayed to a node that does not think it owns the key
     * (two rings disagree for a moment) is refused, not relayed again. */
    route_t rt;
    route_key(s, rq->key.ptr, rq->key.len, &rt);
    if (rt.role != ROLE_OWNER) {
        if (c->hops == 0) {
            forward_request(c, rq, rt.at[0]);
            return;
        }
        s->stats.retry_answers++;
        answer_error(c, rq->op, rq->id, PC_ST_RETRY,
                     "this node does not own the key on its ring (the cluster is changing): "
                     "nothing was applied, retry");
        return;
    }
    if (s->backend == NULL) {
        handle_write_local(c, rq, rt.slot);
        return;
    }
    if (home_foreign(s, rq->key.ptr, rq->key.len)) {
        /* Only a request that met a ring change on its way gets here
         * (home_dispatch and home_forward_moved send the others to the
         * key's home loop): writing it from this loop would break the
         * one-Redis-connection-per-key order. */
        s->stats.retry_answers++;
        answer_error(c, rq->op, rq->id, PC_ST_RETRY,
                     "the node is changing which of its loops writes this key: "
                     "nothing was applied, retry");
        return;
    }
    req_t *r = req_new(c, rq->op, rq->id, 0);
    uint32_t vlen = rq->op == PC_OP_SET ? rq->value.len : 0;
    if (r == NULL || (r->key = malloc((size_t)rq->key.len + vlen + 1)) == NULL) {
        if (r)
            req_free(r);
        answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return;
    }
    /* The frame buffer moves on; the store update after Redis' ack needs
     * its own copy of key and value. */
    memcpy(r->key, rq->key.ptr, rq->key.len);
    r->klen = rq->key.len;
    r->val = r->key + r->klen;
    if (vlen)
        memcpy(r->val, rq->value.ptr, vlen);
    r->vlen = vlen;
    r->ttl_ms = rq->ttl_ms;
    r->flags = rq->flags;
    r->cond = rq->cond;
    r->cas = rq->op == PC_OP_SET ? rq->cas : 0;

    r->ks = ks_get(s, r->key, r->klen);
    if (r->ks == NULL) {
        req_answer_status(r, PC_ST_INTERNAL, "out of memory");
        return;
    }
    /* A compare-and-set must see the outcome of every earlier write to its
     * key, so it waits for them; plain writes pipeline freely because Redis
     * applies them in order. */
    if (r->cas != 0 && (r->ks->pending_writes > 0 || r->ks->deferred)) {
        r->waiting = 1;
        if (r->ks->deferred_tail)
            r->ks->deferred_tail->next_deferred = r;
        else
            r->ks->deferred = r;
        r->ks->deferred_tail = r;
        return;
    }
    keystate_t *ks = r->ks;
    write_issue(r);
    ks_release(s, ks);
}

/* ---- peer operations ------------------------------------------------------ */

static void handle_request(conn_t *c, const pc_request_t *rq);

/* A client request another member relayed to us: served like one from a
 * client, except that it is never relayed again (c->hops > 0). */
static int home_forward_moved(conn_t *c, const pc_request_t *fw, const pc_request_t *in);

static void handle_forward(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    const uint8_t *body = rq->body.ptr;
    uint32_t len = rq->body.len, hops = rq->hops;
    uint64_t fid = rq->id;
    const pc_request_t fw = *rq; /* the FORWARD itself, should it go to another loop */
    pc_request_t in;
    int rc = pc_proto_decode_request(s->dec, body, len, &in); /* rq is spent now */
    if (rc == PC_EPROTO || rc == PC_ENOMEM) {
        answer_error(c, PC_OP_FORWARD, fid, PC_ST_BAD_REQUEST, "FORWARD body is not a request");
        return;
    }
    if (rc == PC_ETOOBIG) {
        answer_error(c, in.op, in.id, PC_ST_TOO_LARGE, pc_proto_decoder_why(s->dec));
        return;
    }
    if (rc < 0) {
        answer_error(c, in.op, in.id, PC_ST_BAD_REQUEST, pc_proto_decoder_why(s->dec));
        return;
    }
    switch (in.op) {
    case PC_OP_GET:
    case PC_OP_MGET:
    case PC_OP_SET:
    case PC_OP_DEL:
    case PC_OP_TOUCH:
        break;
    default:
        answer_error(c, PC_OP_FORWARD, fid, PC_ST_BAD_REQUEST,
                     "only key operations can be forwarded");
        return;
    }
    /* Several loops: a worker counts itself busy (home_dispatch) across
     * the decision and the serving. */
    int worker = s->core != NULL;
    if (worker)
        atomic_fetch_add(&s->busy, 1);
    if (!(s->sh->nloops > 1 && home_forward_moved(c, &fw, &in))) {
        s->stats.forwarded_in++;
        c->hops = hops;
        c->cur_body = body;
        c->cur_len = len;
        switch (in.op) {
        case PC_OP_GET:
            handle_get(c, &in);
            break;
        case PC_OP_MGET:
            handle_mget(c, &in);
            break;
        default:
            handle_write(c, &in);
            break;
        }
        c->hops = 0;
    }
    if (worker)
        atomic_fetch_sub(&s->busy, 1);
}

static void handle_sync(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    if (s->cluster == NULL) {
        answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "this node is not in a cluster");
        return;
    }
    pc_buf_t reply;
    pc_buf_init(&reply, 0);
    int rc = pc_cluster_sync(s->cluster, rq->body.ptr, rq->body.len, &reply);
    if (rc < 0) {
        answer_error(c, rq->op, rq->id, rc == PC_ENOMEM ? PC_ST_BUSY : PC_ST_BAD_REQUEST,
                     rc == PC_ENOMEM ? "out of memory" : "not a membership state");
    } else {
        pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK,
                              .body = {reply.data, (uint32_t)reply.len}};
        answer(c, &resp);
    }
    pc_buf_free(&reply);
}

static void handle_cluster(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    if (s->cluster == NULL) {
        answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "this node is not in a cluster");
        return;
    }
    const pc_cluster_member_t *ms;
    size_t n = pc_cluster_members(s->cluster, &ms);
    pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK,
                          .fingerprint = pc_cluster_fingerprint(s->cluster),
                          .replicas = pc_cluster_replicas(s->cluster),
                          .nmembers = (uint32_t)n, .members = ms};
    answer(c, &resp);
}

/*
 * A hand-off entry that lost to our own, newer copy: if both hold the same
 * value, the previous owner's last word confirms our copy, which therefore
 * need not stay provisional (settle_cap) -- it takes the entry's expiry.
 * Without this, the keys read here before their hand-off arrived (the
 * hottest ones) would all expire together at the end of the window.
 */
static void handoff_confirm(pc_server_t *s, const pc_repl_entry_t *e, uint64_t exp, uint64_t now)
{
    pc_item_t *it;
    if (pc_store_peek(s->store, e->key.ptr, e->key.len, now, &it) != 0)
        return;
    int same = pc_item_vlen(it) == e->value.len && pc_item_flags(it) == e->flags &&
               memcmp(pc_item_value(it), e->value.ptr, e->value.len) == 0 &&
               pc_item_expire(it) != exp;
    pc_store_release(s->store, it);
    if (same && pc_store_touch(s->store, e->key.ptr, e->key.len, exp, now) == 0)
        s->stats.handoff_confirmed++;
}

static int owner_here(const pc_server_t *s, const uint8_t *k, size_t n)
{
    route_t rt;
    route_key(s, k, n, &rt);
    return rt.role == ROLE_OWNER;
}

/*
 * Versioned entries from a key's owner (its writes) or from its previous
 * owner (a hand-off). An entry only ever replaces an older version, or a
 * copy we may not serve anyway (stored before we gained its slot).
 */
static void handle_replicate(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    uint64_t now = now_ms(s);
    uint32_t applied = 0, notyet = 0;
    for (uint32_t i = 0; i < rq->nentries; i++) {
        const pc_repl_entry_t *e = &rq->entries[i];
        int rc;
        int handoff = rq->mode == PC_REPL_HANDOFF;
        if (!version_observe(s->sh, e->version)) {
            rc = PC_EEXISTS; /* from a clock too far ahead: never newer than what comes */
        } else if (!e->has_value) {
            rc = pc_store_del_if_older(s->store, e->key.ptr, e->key.len, e->version, now);
            rc = rc == PC_ENOTFOUND ? 0 : rc;
            if (rc == 0)
                tomb_add(s, e->key.ptr, e->key.len);
        } else if (e->ttl_ms == 0) {
            rc = PC_EEXISTS; /* expired on the way */
        } else if (handoff && !owner_here(s, e->key.ptr, e->key.len)) {
            notyet++;
            continue;
        } else if (handoff && tomb_has(s, e->key.ptr, e->key.len)) {
            rc = PC_EEXISTS; /* deleted here since: the entry is older */
        } else {
            int mode = PC_STORE_SET_IF_NEWER;
            pc_item_t *it;
            /* (A worker has no per-slot epochs: home_replicate checked the
             * copy against the newest one before it came here.) */
            if (s->slot_epoch != NULL &&
                pc_store_peek(s->store, e->key.ptr, e->key.len, now, &it) == 0) {
                if (pc_item_epoch(it) < s->slot_epoch[pc_ring_slot(e->key.ptr, e->key.len)])
                    mode = PC_STORE_SET_ALWAYS;
                pc_store_release(s->store, it);
            }
            /* A hand-off entry is the previous owner's last word on the key
             * (it stopped taking writes for it before streaming), so it is
             * not cut by the settle window; a replicated write is. */
            uint64_t exp = e->ttl_ms < 0 ? 0 : expire_at(s, (uint64_t)e->ttl_ms);
            if (!handoff)
                exp = settle_cap(s, e->key.ptr, e->key.len, exp);
            rc = pc_store_set(s->store, e->key.ptr, e->key.len, e->value.ptr, e->value.len,
                              e->flags, e->version, exp, mode, now);
            if (rc == PC_EEXISTS && handoff)
                handoff_confirm(s, e, exp, now);
        }
        if (rc == 0)
            applied++;
    }
    if (rq->mode == PC_REPL_HANDOFF) {
        s->stats.handoff_received += applied;
        s->stats.handoff_refused += rq->nentries - applied - notyet;
        if (notyet > 0) {
            /* We have not heard of the ring that makes these keys ours:
             * the sender tries again shortly (what we applied is kept). */
            answer_error(c, rq->op, rq->id, PC_ST_RETRY, "not the owner of these keys yet");
            return;
        }
    } else {
        s->stats.replica_applied += applied;
        s->stats.replica_ignored += rq->nentries - applied;
    }
    pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK, .applied = applied};
    answer(c, &resp);
}

/* ---- HELLO / PING / STATS ------------------------------------------------ */

/* Encodes the STATS answer from the loops' counters summed in `sum`:
 * into r's slot if r is given, else straight to c. */
static void stats_reply(conn_t *c, req_t *r, uint32_t op, uint64_t id, const loop_snap_t *sum)
{
    pc_server_t *s = c->srv;
    pc_store_stats_t st;
    pc_store_stats(s->store, &st);
    const pc_backend_stats_t bs = sum->bs;
    pc_cluster_stats_t cs = {0};
    if (s->cluster)
        pc_cluster_stats(s->cluster, &cs);
    pc_peer_stats_t ps = {0};
    if (s->peers)
        pc_peer_stats(s->peers, &ps);
    pc_guard_stats_t gstats = {0};
    uint32_t key_id = 0;
    size_t nkeys = 0;
    if (pc_guard_on(s->guard))
        pc_guard_snapshot(s->guard, &gstats, &key_id, &nkeys);
    const pc_guard_stats_t *gs = pc_guard_on(s->guard) ? &gstats : NULL;
#define STAT(n, v) {{(const uint8_t *)n, sizeof n - 1}, (int64_t)(v)}
    pc_stat_t stats[] = {
        STAT("uptime_s", (now_ms(s) - s->start_ms) / 1000),
        STAT("connections", sum->nconns),
        STAT("connections_total", sum->stats.connections_total),
        STAT("connections_rejected", sum->stats.connections_rejected),
        STAT("idle_timeouts", sum->stats.idle_timeouts),
        STAT("frame_timeouts", sum->stats.frame_timeouts),
        STAT("output_timeouts", sum->stats.output_timeouts),
        STAT("buffer_memory", sum->buf_bytes),
        STAT("buffer_full", sum->buf_full),
        STAT("buffer_full_rejects", sum->stats.buffer_full_rejects),
        STAT("buffer_evictions", sum->stats.buffer_evictions),
        STAT("requests", sum->stats.requests),
        STAT("threads", s->nworkers + 1),
        STAT("worker_requests", sum->stats.worker_requests),
        STAT("relayed", sum->stats.relayed),
        STAT("home_relayed", sum->stats.home_relayed),
        STAT("worker_forwarded", sum->stats.worker_forwarded),
        STAT("home_loops", !homes_on(s) ? 1 : s->sh->nhomes > 1 ? s->sh->nhomes : s->sh->nloops),
        STAT("bad_frames", sum->stats.bad_frames),
        STAT("items", st.items),
        STAT("bytes", st.bytes),
        STAT("memory_limit", st.limit),
        STAT("hits", st.hits),
        STAT("misses", st.misses),
        STAT("sets", st.sets),
        STAT("deletes", st.deletes),
        STAT("evictions", st.evictions),
        STAT("expirations", st.expirations),
        STAT("backend_enabled", s->backend != NULL),
        STAT("backend_up", sum->nbackends > 0 && (uint64_t)bs.up == sum->nbackends),
        STAT("backend_connections", sum->nbackends),
        STAT("backend_reads", sum->stats.backend_reads),
        STAT("backend_reads_coalesced", sum->stats.reads_coalesced),
        STAT("backend_writes", sum->stats.backend_writes),
        STAT("backend_errors", bs.errors),
        STAT("backend_timeouts", bs.timeouts),
        STAT("backend_rejected", bs.rejected),
        STAT("backend_connects", bs.connects),
        STAT("cluster_members_alive", cs.members_alive),
        STAT("cluster_members_suspect", cs.members_suspect),
        STAT("cluster_members_dead", cs.members_dead),
        STAT("cluster_ring_changes", cs.ring_changes),
        STAT("cluster_incarnation", cs.incarnation),
        STAT("cluster_health", cs.health),
        STAT("gossip_in", cs.gossip_in),
        STAT("gossip_out", cs.gossip_out),
        STAT("gossip_bad", cs.gossip_bad),
        STAT("syncs", cs.syncs),
        STAT("sync_errors", cs.sync_errors),
        STAT("forwarded", sum->stats.forwarded),
        STAT("forward_errors", sum->stats.forward_errors),
        STAT("forwarded_in", sum->stats.forwarded_in),
        STAT("not_owner_reads", sum->stats.not_owner_reads),
        STAT("retry_answers", sum->stats.retry_answers),
        STAT("replicated", sum->stats.replicated),
        STAT("replicate_errors", sum->stats.replicate_errors),
        STAT("replica_applied", sum->stats.replica_applied),
        STAT("replica_ignored", sum->stats.replica_ignored),
        STAT("stale_dropped", sum->stats.stale_dropped),
        STAT("handoff_sent", sum->stats.handoff_sent),
        STAT("handoff_received", sum->stats.handoff_received),
        STAT("handoff_refused", sum->stats.handoff_refused),
        STAT("handoff_confirmed", sum->stats.handoff_confirmed),
        STAT("purged", sum->stats.purged),
        STAT("handoff_errors", sum->stats.handoff_errors),
        STAT("handoffs", sum->stats.handoffs),
        STAT("handoff_active", s->handoff_target != NULL),
        STAT("settle_capped", sum->stats.settle_capped),
        STAT("peer_requests", ps.requests),
        STAT("peer_errors", ps.errors),
        STAT("peer_timeouts", ps.timeouts),
        STAT("peer_connects", ps.connects),
        STAT("auth_failures", sum->stats.auth_failures),
        STAT("auth_refused", sum->stats.auth_refused),
        STAT("hello_timeouts", sum->stats.hello_timeouts),
        STAT("source_limit_rejects", sum->stats.source_limit_rejects),
        STAT("peer_refused", sum->stats.peer_refused),
        STAT("peer_rejected", sum->stats.peer_rejected),
        STAT("gossip_rejected", cs.gossip_rejected),
        STAT("seal_enabled", gs != NULL),
        STAT("sealed_out", gs ? gs->sealed : 0),
        STAT("sealed_in", gs ? gs->opened : 0),
        STAT("seal_unsealed", gs ? gs->unsealed : 0),
        STAT("seal_bad", gs ? gs->bad_seal : 0),
        STAT("seal_unknown_key", gs ? gs->unknown_key : 0),
        STAT("seal_wrong_kind", gs ? gs->wrong_kind : 0),
        STAT("seal_stale", gs ? gs->stale : 0),
        STAT("seal_replayed", gs ? gs->replayed : 0),
        STAT("seal_overflow", gs ? gs->overflow : 0),
        STAT("seal_key_id", key_id),
        STAT("seal_keys", nkeys),
    };
#undef STAT
    pc_response_t resp = {.op = op, .id = id, .status = PC_ST_OK,
                          .nstats = sizeof stats / sizeof stats[0], .stats = stats};
    if (r != NULL)
        req_answer(r, &resp, NULL);
    else
        answer(c, &resp);
}

static void snap_own(const pc_server_t *s, loop_snap_t *out)
{
    out->stats = s->stats;
    memset(&out->bs, 0, sizeof out->bs);
    out->nbackends = s->backend != NULL;
    if (s->backend)
        pc_backend_stats(s->backend, &out->bs);
    out->nconns = s->nconns;
    out->buf_bytes = s->buf_bytes;
    out->buf_full = s->buf_full;
}

static void snap_add(loop_snap_t *sum, const loop_snap_t *x)
{
    uint64_t *d = (uint64_t *)&sum->stats;
    const uint64_t *a = (const uint64_t *)&x->stats;
    for (size_t i = 0; i < sizeof sum->stats / sizeof(uint64_t); i++)
        d[i] += a[i];
    sum->bs.commands += x->bs.commands;
    sum->bs.errors += x->bs.errors;
    sum->bs.timeouts += x->bs.timeouts;
    sum->bs.rejected += x->bs.rejected;
    sum->bs.connects += x->bs.connects;
    sum->bs.up += x->bs.up;
    sum->nbackends += x->nbackends;
    sum->nconns += x->nconns;
    sum->buf_bytes += x->buf_bytes;
    sum->buf_full |= x->buf_full;
}

/* STATS on a node of several loops: the counters of each are read on its
 * own thread (xcall), summed on the core, and then answered. */
typedef struct gather {
    req_t *r;
    size_t pending;
    loop_snap_t sum;
} gather_t;

typedef struct snapmsg {
    gather_t *g;
    loop_snap_t snap;
} snapmsg_t;

static void gather_one(gather_t *g)
{
    if (--g->pending > 0)
        return;
    req_t *r = g->r;
    conn_t *c = r->c;
    r->waiting = 0;
    if (c->closing) {
        req_free(r);
        conn_maybe_free(c);
    } else {
        stats_reply(c, r, r->op, r->id, &g->sum);
    }
    free(g);
}

static void snap_back(pc_server_t *core, void *arg) /* on the core */
{
    (void)core;
    snapmsg_t *m = arg;
    snap_add(&m->g->sum, &m->snap);
    gather_one(m->g);
    free(m);
}

static int xcall_post(pc_server_t *t, void (*fn)(pc_server_t *, void *), void *arg);

static void snap_take(pc_server_t *w, void *arg) /* on a worker */
{
    snapmsg_t *m = arg;
    snap_own(w, &m->snap);
    m->snap.stats.worker_requests = w->stats.requests;
    m->snap.stats.worker_forwarded = w->stats.forwarded;
    if (xcall_post(w->core, snap_back, m) < 0)
        free(m); /* the core stops last: cannot happen */
}

static void handle_stats(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    gather_t *g = NULL;
    req_t *r = NULL;
    if (s->nworkers > 0 && (g = calloc(1, sizeof *g)) != NULL &&
        (r = req_new(c, rq->op, rq->id, 0)) == NULL) {
        free(g);
        g = NULL;
    }
    if (g == NULL) { /* one loop (or out of memory: this loop's counters) */
        loop_snap_t own;
        snap_own(s, &own);
        stats_reply(c, NULL, rq->op, rq->id, &own);
        return;
    }
    g->r = r;
    r->waiting = 1;
    snap_own(s, &g->sum);
    g->pending = 1 + s->nworkers;
    for (size_t i = 0; i < s->nworkers; i++) {
        snapmsg_t *m = calloc(1, sizeof *m);
        if (m != NULL) {
            m->g = g;
            if (xcall_post(s->workers[i], snap_take, m) == 0)
                continue;
            free(m);
        }
        g->pending--; /* a stopped loop has nothing to add */
    }
    gather_one(g);
}

/* ---- client tokens ---------------------------------------------------- */

/* Failed HELLOs: the answer is held back 100 ms, doubling with each
 * failure on the connection up to 1.6 s; 2 s for everyone while the node
 * (all its loops) sees more than AUTH_STORM failures a second, and for an
 * address that makes more than AUTH_SOURCE_STORM a second, however many
 * connections it spreads them over; the connection is closed after
 * AUTH_MAX_FAILS. Nothing else is read from it meanwhile. */
#define AUTH_DELAY_MS 100
#define AUTH_DELAY_MAX_SHIFT 4
#define AUTH_STORM 100
#define AUTH_SOURCE_STORM 10
#define AUTH_STORM_DELAY_MS 2000
#define AUTH_MAX_FAILS 5

static void token_hash(const uint8_t *p, size_t n, uint8_t out[crypto_generichash_BYTES])
{
    crypto_generichash(out, crypto_generichash_BYTES, p, n, NULL, 0);
}

/* Constant time whatever the candidate: both sides are hashed to a fixed
 * length first, so neither the length nor any prefix of the token leaks
 * through timing. */
static int token_ok(const pc_server_t *s, const pc_bytes_t *tok)
{
    uint8_t h[crypto_generichash_BYTES], want[crypto_generichash_BYTES];
    token_hash(tok->ptr, tok->len, h);
    pthread_mutex_lock(&s->sh->token_lock);
    memcpy(want, s->sh->token_hash, sizeof want);
    pthread_mutex_unlock(&s->sh->token_lock);
    return sodium_memcmp(h, want, sizeof h) == 0;
}

static int token_required(const pc_server_t *s)
{
    pthread_mutex_lock(&s->sh->token_lock);
    int req = s->sh->token_required;
    pthread_mutex_unlock(&s->sh->token_lock);
    return req;
}

static int is_peer_op(uint32_t op)
{
    return op == PC_OP_FORWARD || op == PC_OP_SYNC || op == PC_OP_REPLICATE;
}

/* Failed HELLOs from all loops in the current second, this one included
 * (node_shared_t.auth_window). */
static uint32_t auth_window_fail(node_shared_t *sh, uint64_t now)
{
    uint64_t sec = now / 1000, w = atomic_load(&sh->auth_window), n;
    do
        n = (w >> 32) == sec ? w + 1 : (sec << 32) | 1;
    while (!atomic_compare_exchange_weak(&sh->auth_window, &w, n));
    return (uint32_t)n;
}

static void auth_fail(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    uint64_t now = now_ms(s);
    s->stats.auth_failures++;
    uint32_t node_fails = auth_window_fail(s->sh, now);
    uint32_t source_fails = c->source_counted ? pc_sources_auth_fail(s->sh->sources, &c->source,
                                                                     now)
                                              : 0;
    c->auth_fails++;
    if (c->auth_fails == 1 || c->auth_fails % 5 == 0)
        pc_log_info(s->log, "client %s: bad token (%u failures on this connection)", c->peer,
                    c->auth_fails);
    unsigned shift = c->auth_fails - 1 < AUTH_DELAY_MAX_SHIFT ? c->auth_fails - 1
                                                             : AUTH_DELAY_MAX_SHIFT;
    uint64_t delay = (uint64_t)AUTH_DELAY_MS << shift;
    if (node_fails > AUTH_STORM || source_fails > AUTH_SOURCE_STORM)
        delay = AUTH_STORM_DELAY_MS;
    c->auth_pending = 1;
    c->auth_until = now + delay;
    c->auth_id = rq->id;
}

/* A held-back failed HELLO whose time has come: answer it, and go on
 * reading (or hang up after too many). */
static void auth_release(conn_t *c)
{
    c->auth_pending = 0;
    c->hello_since = now_ms(c->srv); /* the next try has its own --hello-timeout */
    answer_error(c, PC_OP_HELLO, c->auth_id, PC_ST_AUTH_REQUIRED, "bad token");
    if (c->closing)
        return;
    if (c->auth_fails >= AUTH_MAX_FAILS) {
        pc_proto_encode_error(&c->out, 0, 0, PC_ST_AUTH_REQUIRED, "too many bad tokens");
        conn_flush(c);
        conn_close(c, NULL);
        return;
    }
    conn_run(c);
}

/*
 * Who may do what (docs/SECURITY.md): before a good HELLO, a client that
 * owes a token may only HELLO and PING; peer operations need a sealed
 * connection when the node has a cluster key. 1 = refused and answered.
 */
static int refuse_unauthorized(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    if (is_peer_op(rq->op) && pc_guard_on(s->guard) && !c->sealed && !c->internal) {
        s->stats.peer_refused++;
        answer_error(c, rq->op, rq->id, PC_ST_AUTH_REQUIRED,
                     "peer operations must be sealed with the cluster key");
        return 1;
    }
    if (!c->authed && rq->op != PC_OP_HELLO && rq->op != PC_OP_PING) {
        if (is_peer_op(rq->op))
            s->stats.peer_refused++;
        else
            s->stats.auth_refused++;
        answer_error(c, rq->op, rq->id, PC_ST_AUTH_REQUIRED, "send HELLO with the token first");
        return 1;
    }
    return 0;
}

/* ---- worker loops: what they serve, and the relay to the core ----------- */

static void relay_flush(relay_t *rl);
static void relay_fail_all(relay_t *rl, const char *why);

/* A request relayed whole has its answer: its id put back to the
 * client's (resp NULL: the relay failed). */
static void req_relay_done(relay_wait_t *w, pc_response_t *resp)
{
    req_t *r = pc_list_entry(w, req_t, rw);
    conn_t *c = r->c;
    r->waiting = 0;
    c->relayed--;
    c->relayed_writes -= (unsigned)r->relay_write;
    if (c->closing) {
        req_free(r);
        conn_maybe_free(c);
        return;
    }
    if (resp == NULL) {
        req_answer_status(r, PC_ST_INTERNAL, "the node is stopping; the request may or may not "
                                             "have been applied");
        return;
    }
    resp->id = r->id;
    req_answer(r, resp, NULL);
}

static void relay_fail_all(relay_t *rl, const char *why)
{
    if (rl->open)
        pc_log_error(rl->srv->log, "loop %zu: relay to loop %zu: %s", rl->srv->index, rl->to, why);
    rl->open = 0;
    uv_read_stop((uv_stream_t *)&rl->pipe);
    while (!pc_list_empty(&rl->waits)) {
        relay_wait_t *w = pc_list_entry(rl->waits.next, relay_wait_t, link);
        pc_list_remove(&w->link);
        w->done(w, NULL);
    }
}

static void relay_write_cb(uv_write_t *w, int status)
{
    relay_t *rl = w->data;
    rl->writing = 0;
    pc_buf_reset(&rl->wbuf);
    if (status < 0) {
        relay_fail_all(rl, uv_strerror(status));
        return;
    }
    relay_flush(rl);
}

static void relay_flush(relay_t *rl)
{
    if (!rl->open || rl->writing || rl->out.len == 0)
        return;
    pc_buf_t t = rl->wbuf;
    rl->wbuf = rl->out;
    rl->out = t;
    uv_buf_t b = uv_buf_init((char *)rl->wbuf.data, (unsigned)rl->wbuf.len);
    rl->wreq.data = rl;
    int rc = uv_write(&rl->wreq, (uv_stream_t *)&rl->pipe, &b, 1, relay_write_cb);
    if (rc < 0) {
        relay_fail_all(rl, uv_strerror(rc));
        return;
    }
    rl->writing = 1;
}

/* Once per loop turn, after every connection read: all the frames relayed
 * meanwhile leave in one write per relay. */
static void relay_check_cb(uv_check_t *h)
{
    pc_server_t *s = h->data;
    if (s->core != NULL) {
        relay_flush(&s->relays[0]);
        relay_flush(&s->relays[1]);
    }
    for (size_t i = 0; i < s->nhrel; i++)
        relay_flush(&s->hrel[i]);
    uv_check_stop(h);
}

static void relay_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    relay_t *rl = h->data;
    uint8_t *p = NULL;
    size_t avail = 0;
    (void)suggested;
    if (pc_proto_reader_reserve(&rl->rd, READ_CHUNK, &p, &avail) < 0)
        avail = 0;
    *buf = uv_buf_init((char *)p, (unsigned)(avail < READ_CHUNK ? avail : READ_CHUNK));
}

static void relay_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    relay_t *rl = st->data;
    (void)buf;
    if (n < 0) {
        relay_fail_all(rl, n == UV_EOF ? "the other end closed it" : uv_strerror((int)n));
        return;
    }
    pc_proto_reader_commit(&rl->rd, (size_t)n);
    const uint8_t *body;
    uint32_t len;
    int rc;
    while ((rc = pc_proto_reader_next(&rl->rd, &body, &len)) > 0) {
        pc_response_t resp;
        if (pc_proto_decode_response(rl->srv->pdec, body, len, &resp) < 0) {
            relay_fail_all(rl, "malformed answer");
            return;
        }
        /* Mostly in order: the oldest requests are answered first. */
        relay_wait_t *w = NULL;
        for (pc_list_t *l = rl->waits.next; l != &rl->waits; l = l->next) {
            relay_wait_t *q = pc_list_entry(l, relay_wait_t, link);
            if (q->id == resp.id) {
                w = q;
                break;
            }
        }
        if (w == NULL) {
            relay_fail_all(rl, "an answer nobody asked for");
            return;
        }
        pc_list_remove(&w->link);
        w->done(w, &resp);
    }
    if (rc < 0)
        relay_fail_all(rl, "bad frame");
}

/* w waits on rl for the answer to the frame just queued under id. */
static void relay_wait_add(relay_t *rl, relay_wait_t *w, uint64_t id)
{
    pc_server_t *s = rl->srv;
    w->id = id;
    pc_list_push_back(&rl->waits, &w->link);
    if (rl->to == 0)
        s->stats.relayed++;
    else
        s->stats.home_relayed++;
    if (!uv_is_active((uv_handle_t *)&s->relay_check))
        uv_check_start(&s->relay_check, relay_check_cb);
}

/* Sends the request being dispatched (opened, if it came sealed) over
 * relay rl to another loop, under an id of the relay's: that loop answers
 * each as soon as it can, and the answer goes back to the client under
 * its own id, in the client's order. */
static void relay_to(conn_t *c, const pc_request_t *rq, relay_t *rl)
{
    pc_server_t *s = c->srv;
    if (!rl->open) {
        answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "the node is stopping");
        return;
    }
    pc_request_t f = *rq;
    f.id = ++rl->next_id;
    uint32_t op = rq->op;
    uint64_t id = rq->id;
    int rc = 0;
    if (rq->op == PC_OP_FORWARD) {
        /* The answer to a FORWARD carries the id of the request inside it
         * (PROTOCOL.md): that is the id to make the relay's own. One that
         * does not decode goes as it is, for the core to refuse. */
        pc_request_t in;
        if (pc_proto_decode_request(s->fdec, rq->body.ptr, rq->body.len, &in) == 0) {
            op = in.op;
            id = in.id;
            in.id = f.id;
            pc_buf_reset(&s->fbuf);
            rc = pc_proto_encode_request(&s->fbuf, &in);
            f.body.ptr = s->fbuf.data + 4; /* past the length prefix */
            f.body.len = (uint32_t)(s->fbuf.len - 4);
        }
    }
    req_t *r = rc < 0 ? NULL : req_new(c, op, id, 0);
    if (r == NULL || (rc = pc_proto_encode_request(&rl->out, &f)) < 0) {
        if (r)
            req_free(r);
        answer_error(c, rq->op, rq->id, rc == PC_EINVAL ? PC_ST_BAD_REQUEST : PC_ST_INTERNAL,
                     rc == PC_EINVAL ? "bad request" : "out of memory");
        return;
    }
    r->relay_write = rq->op != PC_OP_GET && rq->op != PC_OP_MGET;
    r->waiting = 1;
    r->rw.done = req_relay_done;
    relay_wait_add(rl, &r->rw, f.id);
    c->relayed++;
    c->relayed_writes += (unsigned)r->relay_write;
}

/* A worker's relay to the core: the peers' one for a peer connection. */
static void relay_request(conn_t *c, const pc_request_t *rq)
{
    relay_to(c, rq, &c->srv->relays[c->sealed ? 1 : 0]);
}

/* The relay to home loop h (not this one). */
static relay_t *home_relay(pc_server_t *s, size_t h)
{
    return h == 0 && s->core != NULL ? &s->relays[0] : &s->hrel[h];
}

/* Does this node own the slot, by the core's view? (Not when alone: then
 * it owns everything, whatever gate[] says.) */
static int view_owns(const node_shared_t *sh, uint32_t slot)
{
    return sh->gate != NULL &&
           atomic_load_explicit(&sh->gate[slot], memory_order_relaxed) != GATE_NONE;
}

/* The least epoch an item of this key must have to be served here, by the
 * core's view (node_shared_t); GATE_NONE if this node does not own it. */
static uint32_t view_gate(const pc_server_t *s, const uint8_t *k, size_t n, int *alone)
{
    node_shared_t *sh = s->sh;
    *alone = atomic_load_explicit(&sh->alone, memory_order_relaxed);
    if (*alone)
        return atomic_load_explicit(&sh->epoch_min, memory_order_relaxed);
    if (sh->gate == NULL)
        return GATE_NONE;
    return atomic_load_explicit(&sh->gate[pc_ring_slot(k, n)], memory_order_relaxed);
}

/* Is this item (of a key we own) valid to serve? As store_get_valid:
 * new enough for every slot, or for its own. */
static int view_valid(const pc_server_t *s, const pc_item_t *it, const uint8_t *k, size_t n,
                      uint32_t gate, int alone)
{
    uint32_t e = pc_item_epoch(it);
    if (e >= gate)
        return 1;
    if (!alone || s->sh->gate == NULL)
        return 0;
    return e >= atomic_load_explicit(&s->sh->gate[pc_ring_slot(k, n)], memory_order_relaxed);
}

/* Answers a GET with a valid hit `it` (the reference is consumed): now,
 * or queued behind the connection's unfinished requests. 0 = out of
 * memory for the queue entry: the caller serves it another way. */
static int answer_hit(conn_t *c, const pc_request_t *rq, pc_item_t *it, uint64_t now)
{
    pc_server_t *s = c->srv;
    if (pc_list_empty(&c->reqs)) {
        pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK};
        entry_from_item(&resp.entry, it, now);
        answer(c, &resp);
        pc_store_release(s->store, it);
        return 1;
    }
    req_t *r = req_new(c, rq->op, rq->id, 1); /* behind an unfinished one */
    if (r == NULL) {
        pc_store_release(s->store, it);
        return 0;
    }
    r->waiting = 1;
    r->slots[0].item = it;
    r->slots[0].status = PC_ST_OK;
    slot_resolved(&r->slots[0]);
    return 1;
}

/* A GET a worker answers itself: a valid hit in a slot we own, or a miss
 * with nothing behind the store. 0 = relay it. */
static int worker_get(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    int alone;
    uint32_t gate = view_gate(s, rq->key.ptr, rq->key.len, &alone);
    if (gate == GATE_NONE)
        return 0;
    pc_item_t *it = NULL;
    uint64_t now = now_ms(s);
    int rc = s->sh->has_backend ? pc_store_get_hit(s->store, rq->key.ptr, rq->key.len, now, &it)
                                : pc_store_get(s->store, rq->key.ptr, rq->key.len, now, &it);
    if (rc != 0) {
        if (s->sh->has_backend)
            return 0; /* the core reads it through (and counts the miss) */
        answer_error(c, rq->op, rq->id, PC_ST_NOT_FOUND, pc_status_message(PC_ST_NOT_FOUND));
        return 1;
    }
    if (!view_valid(s, it, rq->key.ptr, rq->key.len, gate, alone)) {
        pc_store_release(s->store, it);
        return 0; /* from before we gained the slot: the core drops it */
    }
    return answer_hit(c, rq, it, now);
}

/* An MGET of keys we all own on a memory-only node. 0 = relay it. */
static int worker_mget(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    if (rq->nkeys == 0 || s->sh->has_backend)
        return 0;
    int alone;
    for (uint32_t i = 0; i < rq->nkeys; i++)
        if (view_gate(s, rq->keys[i].ptr, rq->keys[i].len, &alone) == GATE_NONE)
            return 0;
    req_t *r = req_new(c, rq->op, rq->id, rq->nkeys);
    if (r == NULL)
        return 0;
    uint64_t now = now_ms(s);
    for (uint32_t i = 0; i < rq->nkeys; i++) {
        const pc_bytes_t *k = &rq->keys[i];
        slot_t *sl = &r->slots[i];
        uint32_t gate = view_gate(s, k->ptr, k->len, &alone);
        sl->status = PC_ST_NOT_FOUND;
        if (pc_store_get(s->store, k->ptr, k->len, now, &sl->item) != 0)
            continue;
        if (gate == GATE_NONE || !view_valid(s, sl->item, k->ptr, k->len, gate, alone)) {
            req_free(r); /* the ring moved meanwhile, or a stale copy */
            return 0;
        }
        sl->status = PC_ST_OK;
    }
    r->waiting = 1;
    slot_resolved(&r->slots[0]);
    return 1;
}

/* A write a worker applies itself: on a memory-only node that is alone
 * (no replicas to send it to) and not settling a recent ring change. */
static int worker_write(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    node_shared_t *sh = s->sh;
    if (sh->has_backend || !atomic_load_explicit(&sh->alone, memory_order_relaxed) ||
        now_ms(s) < atomic_load_explicit(&sh->settle_until, memory_order_relaxed) ||
        (rq->op == PC_OP_SET && rq->cas != 0 && rq->cond == PC_COND_NX))
        return 0;
    handle_write_local(c, rq, NO_SLOT);
    return 1;
}

/* On a worker: serves rq here if it can, else relays it to the core.
 * Once a write of the connection is at the core, the requests after it
 * follow it there until it is answered, so that they see its effect as
 * they would on one loop. (Answers leave in order whatever is served
 * where: the req_t queue sees to that.) */
static void worker_dispatch(conn_t *c, const pc_request_t *rq)
{
    int done = 0;
    if (c->relayed_writes == 0 && !c->sealed) {
        switch (rq->op) {
        case PC_OP_GET:
            done = worker_get(c, rq);
            break;
        case PC_OP_MGET:
            done = worker_mget(c, rq);
            break;
        case PC_OP_SET:
        case PC_OP_DEL:
        case PC_OP_TOUCH:
            done = worker_write(c, rq);
            break;
        default:
            break;
        }
    }
    if (!done)
        relay_request(c, rq);
}

/* A GET answered from the store on any loop while homes are on: a valid
 * hit. 0 = a miss, for the key's home to read through (and count). */
static int home_hit(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    pc_item_t *it = NULL;
    uint64_t now = now_ms(s);
    if (store_lookup(s, rq->key.ptr, rq->key.len, NO_SLOT, now, &it, 0) != 0)
        return 0;
    return answer_hit(c, rq, it, now);
}

/*
 * Home loops (docs/ARCHITECTURE.md "Threads"): while homes are on, a key
 * operation for a key this node owns is served on the loop that is its
 * key's home, with that loop's own Redis connection and keystate, so a
 * key's reads-through and writes share one ordered Redis connection as on
 * a node of one loop. Any loop answers hits itself, forwards requests for
 * other members' keys over its own peer connections, and sends an MGET's
 * misses to their homes (mget_relay); the rest goes to the key's home
 * over a relay. 1 = done here (served or relayed), 0 =
 * homes are off.
 *
 * A worker counts itself busy before it looks at `homes`, so the core,
 * which turns homes off before it reads the workers' busy counts, either
 * sees this dispatch or is seen by it (both sequentially consistent).
 */
static int home_dispatch(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    node_shared_t *sh = s->sh;
    if (!atomic_load_explicit(&sh->homes, memory_order_relaxed))
        return 0; /* a hint: checked again below, in order */
    /* A hit needs no care: it reads the store only, as worker_get does. */
    int alone = atomic_load_explicit(&sh->alone, memory_order_relaxed);
    if (alone && rq->op == PC_OP_GET && home_hit(c, rq))
        return 1;
    int worker = s->core != NULL;
    if (worker)
        atomic_fetch_add(&s->busy, 1);
    int done = 0;
    if (atomic_load(&sh->homes)) {
        done = 1;
        if (rq->op == PC_OP_MGET) {
            handle_mget(c, rq); /* others' keys forwarded, misses sent to their homes */
        } else {
            uint32_t slot = pc_ring_slot(rq->key.ptr, rq->key.len);
            size_t h = home_for(s, slot);
            alone = atomic_load_explicit(&sh->alone, memory_order_relaxed);
            if (!alone && !view_owns(sh, slot)) /* another member's: forwarded from here */
                rq->op == PC_OP_GET ? handle_get(c, rq) : handle_write(c, rq);
            else if (!alone && rq->op == PC_OP_GET && home_hit(c, rq))
                ;
            else if (h != s->index)
                relay_to(c, rq, home_relay(s, h));
            else if (rq->op == PC_OP_GET)
                handle_get(c, rq);
            else
                handle_write(c, rq);
        }
    }
    if (worker)
        atomic_fetch_sub(&s->busy, 1);
    return done;
}

/*
 * A peer's FORWARD on a node of several loops, decided before it is
 * served: while homes are on, a single-key request for a key we own goes
 * to the key's home loop, FORWARD and all (hops kept); while they are
 * off, a worker sends it to the core, as it does every peer operation.
 * 1 = sent on; 0 = serve it here. The caller counts itself busy.
 */
static int home_forward_moved(conn_t *c, const pc_request_t *fw, const pc_request_t *in)
{
    pc_server_t *s = c->srv;
    node_shared_t *sh = s->sh;
    if (!atomic_load(&sh->homes)) {
        if (s->core == NULL)
            return 0;
        relay_request(c, fw);
        return 1;
    }
    if (in->op == PC_OP_MGET)
        return 0;
    uint32_t slot = pc_ring_slot(in->key.ptr, in->key.len);
    size_t h = home_for(s, slot);
    if (h == s->index ||
        (!atomic_load_explicit(&sh->alone, memory_order_relaxed) && !view_owns(sh, slot)))
        return 0; /* ours, or not ours at all: the handlers answer (RETRY for writes) */
    relay_to(c, fw, home_relay(s, h));
    return 1;
}

/*
 * A peer's replicated writes, applied on the loop they arrived at while
 * homes are on (the ring settled, so no entry is cut by a settle window
 * or needs a tombstone) when no entry's key holds a copy that may predate
 * our gaining its slot: that check needs the core's per-slot epochs, so
 * such a batch goes to the core. Counted busy like home_dispatch, so the
 * core's drain after a ring change waits for it. 1 = answered here.
 */
static int home_replicate(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    node_shared_t *sh = s->sh;
    if (rq->mode != PC_REPL_WRITE || !atomic_load_explicit(&sh->homes, memory_order_relaxed))
        return 0;
    atomic_fetch_add(&s->busy, 1);
    int done = 0;
    if (atomic_load(&sh->homes)) {
        uint32_t emin = atomic_load_explicit(&sh->epoch_min, memory_order_relaxed);
        uint64_t now = now_ms(s);
        done = 1;
        for (uint32_t i = 0; done && i < rq->nentries; i++) {
            const pc_repl_entry_t *e = &rq->entries[i];
            pc_item_t *it;
            if (pc_store_peek(s->store, e->key.ptr, e->key.len, now, &it) == 0) {
                done = pc_item_epoch(it) >= emin;
                pc_store_release(s->store, it);
            }
        }
        if (done) {
            handle_replicate(c, rq);
            /* Homes went off meanwhile: the core may have bumped the
             * store's epoch for slots it gains before our sets read it,
             * so these copies could pass for ones stored after the ring
             * change, uncapped by its settle window. The core would have
             * applied the batch before the change (and the copies would
             * have gone stale) or after it (capped); not keeping them is
             * on the safe side of both. */
            if (!atomic_load(&sh->homes)) {
                for (uint32_t i = 0; i < rq->nentries; i++) {
                    const pc_repl_entry_t *e = &rq->entries[i];
                    if (e->has_value)
                        pc_store_del_if_older(s->store, e->key.ptr, e->key.len,
                                              e->version + 1, now);
                }
            }
        }
    }
    atomic_fetch_sub(&s->busy, 1);
    return done;
}

static void handle_request(conn_t *c, const pc_request_t *rq)
{
    pc_server_t *s = c->srv;
    if (refuse_unauthorized(c, rq))
        return;
    if (s->sh->nloops > 1 && c->hops == 0 && !c->sealed &&
        (rq->op == PC_OP_GET || rq->op == PC_OP_MGET || rq->op == PC_OP_SET ||
         rq->op == PC_OP_DEL || rq->op == PC_OP_TOUCH) &&
        home_dispatch(c, rq))
        return;
    if (s->core != NULL && rq->op == PC_OP_REPLICATE && home_replicate(c, rq))
        return;
    if (s->core != NULL && rq->op == PC_OP_FORWARD) {
        handle_forward(c, rq); /* home_forward_moved decides where it is served */
        return;
    }
    if (s->core != NULL && rq->op != PC_OP_HELLO && rq->op != PC_OP_PING) {
        worker_dispatch(c, rq);
        return;
    }
    switch (rq->op) {
    case PC_OP_HELLO: {
        /* A newer client is answered too: the reply carries the version this
         * node speaks and the client falls back to it (PROTOCOL.md §10).
         * There never was a version 0. */
        if (rq->proto_version == 0) {
            answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "unsupported protocol version");
            return;
        }
        if (!c->authed) {
            if (!token_ok(s, &rq->token)) {
                auth_fail(c, rq);
                return;
            }
            c->authed = 1;
        }
        pc_response_t resp = {
            .op = rq->op, .id = rq->id, .status = PC_ST_OK, .proto_version = PC_PROTO_VERSION,
            .node_name = {(const uint8_t *)s->name, (uint32_t)strlen(s->name)},
            .server_version = {(const uint8_t *)PC_VERSION_STRING,
                               (uint32_t)strlen(PC_VERSION_STRING)}};
        answer(c, &resp);
        return;
    }
    case PC_OP_PING: {
        pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK};
        answer(c, &resp);
        return;
    }
    case PC_OP_GET:
        handle_get(c, rq);
        return;
    case PC_OP_MGET:
        handle_mget(c, rq);
        return;
    case PC_OP_SET:
    case PC_OP_DEL:
    case PC_OP_TOUCH:
        handle_write(c, rq);
        return;
    case PC_OP_STATS:
        handle_stats(c, rq);
        return;
    case PC_OP_FORWARD: /* never nested: handle_forward relays key ops only */
        handle_forward(c, rq);
        return;
    case PC_OP_SYNC:
        handle_sync(c, rq);
        return;
    case PC_OP_CLUSTER:
        handle_cluster(c, rq);
        return;
    case PC_OP_REPLICATE:
        handle_replicate(c, rq);
        return;
    default:
        answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "unknown operation");
        return;
    }
}

/* ---- connections: input ----------------------------------------------- */

static void conn_process_frames(conn_t *c, uint64_t t0);

/* A frame we cannot parse: tell the client why (id 0), then hang up. */
static void conn_bad_frame(conn_t *c, uint32_t status, const char *why)
{
    c->srv->stats.bad_frames++;
    pc_log_info(c->srv->log, "client %s: %s; closing the connection", c->peer, why);
    /* Best effort: answers still queued behind a Redis call are dropped. */
    pc_proto_encode_error(&c->out, 0, 0, status, why);
    conn_close(c, NULL);
}

/*
 * Decodes and dispatches buffered frames until the buffer is empty or a
 * limit pauses the connection, then writes and adjusts reading. Answers
 * that complete during dispatch call back in here; the guard turns that
 * into a no-op, since the outer loop is still running.
 */
static void conn_process(conn_t *c)
{
    pc_server_t *s = c->srv;
    if (c->processing)
        return;
    pc_sched_remove(&s->sched[LIGHT], &c->sched[LIGHT]); /* served now */
    pc_sched_remove(&s->sched[HEAVY], &c->sched[HEAVY]);
    c->processing = 1;
    uint64_t t0 = uv_hrtime();
    conn_process_frames(c, t0);
    c->processing = 0;
    if (!c->closing)
        conn_flush(c);
    uint64_t work = uv_hrtime() - t0;
    pc_sched_charge(&s->sched[c->heavy], &c->sched[c->heavy], work);
    s->turn_work += work;
    if (c->closing)
        return;
    /* A turn that used its quantum and left whole frames waiting makes the
     * connection heavy -- also when a limit paused it (a client that
     * never reads pauses after every large answer); one that ran out of
     * input makes it light, however long it took (the kernel may have
     * preempted the loop during a one-frame turn). */
    int more = pc_proto_reader_pending(&c->rd) > 0 && pc_proto_reader_missing(&c->rd) == 0;
    c->heavy = !c->internal && work >= TURN_QUANTUM_NS && more;
    if (c->eof && pc_list_empty(&c->reqs) && conn_queued(c) == 0) {
        conn_close(c, NULL);
        return;
    }
    if (c->heavy && !conn_paused(c))
        conn_schedule(c); /* its next turn, in order */
    conn_update_reading(c);
}

/* One turn, begun at t0 (uv_hrtime): frames until the input runs out, a
 * limit pauses the connection, or the turn has lasted TURN_QUANTUM_NS (a
 * relay's internal connection has no quantum). */
static void conn_process_frames(conn_t *c, uint64_t t0)
{
    pc_server_t *s = c->srv;
    /* The clock is read every TURN_CLOCK_EVERY frames, and after any frame
     * that made TURN_CLOCK_BYTES of output (a large answer is what makes
     * a frame slow): a read per frame cost pipelined throughput 3.5%. */
    unsigned frames = 0;
    size_t out_at = c->out.len + c->held;
    for (;;) {
        if (c->closing || conn_paused(c))
            break;
        size_t out_now = c->out.len + c->held;
        if (!c->internal && (++frames % TURN_CLOCK_EVERY == 0 ||
                             out_now - out_at > TURN_CLOCK_BYTES || out_now < out_at)) {
            if (uv_hrtime() - t0 >= TURN_QUANTUM_NS)
                break;
            out_at = out_now;
        }
        const uint8_t *body;
        uint32_t len;
        int rc = pc_proto_reader_next(&c->rd, &body, &len);
        if (rc == 0)
            break;
        if (rc < 0) {
            char why[128];
            snprintf(why, sizeof why, "%s",
                     rc == PC_ETOOBIG ? "frame length over max-frame" : "zero-length frame");
            conn_bad_frame(c, rc == PC_ETOOBIG ? PC_ST_TOO_LARGE : PC_ST_BAD_REQUEST, why);
            return;
        }
        if (pc_guard_on(s->guard) && (c->sealed || pc_seal_is_sealed(body, len))) {
            /* A peer's frame: opened in place (the reader's buffer is ours
             * to write); anything that fails the key check ends the
             * connection without a word (the guard counts why). */
            uint8_t *plain;
            size_t plen;
            rc = pc_guard_open(s->guard, PC_SEAL_PEER_REQ, (uint8_t *)(uintptr_t)body, len,
                               &plain, &plen);
            if (rc < 0) {
                s->stats.peer_rejected++;
                s->stats.bad_frames++;
                pc_log_debug(s->log, "client %s: frame failed the cluster-key check (%s)",
                             c->peer, pc_strerror(rc));
                conn_close(c, "cluster-key check failed");
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
            conn_bad_frame(c, PC_ST_BAD_REQUEST,
                           "sealed frame, but this node runs without a cluster key");
            return;
        }
        pc_request_t rq;
        rc = pc_proto_decode_request(s->dec, body, len, &rq);
        if (!c->internal) /* a relayed request was counted by its worker */
            s->stats.requests++;
        if (!c->authed && rc < 0 && (rc == PC_EPROTO || rc == PC_ENOMEM ||
                                     (rq.op != PC_OP_HELLO && rq.op != PC_OP_PING))) {
            /* Before a good HELLO only HELLO and PING are looked at
             * (PROTOCOL.md §5.1): anything else, well-formed or not, is
             * told to authenticate; what is not a request at all ends the
             * connection, as it would after a HELLO. */
            s->stats.auth_refused++;
            if (rc == PC_EPROTO || rc == PC_ENOMEM) {
                conn_bad_frame(c, PC_ST_AUTH_REQUIRED, "send HELLO with the token first");
                return;
            }
            answer_error(c, rq.op, rq.id, PC_ST_AUTH_REQUIRED, "send HELLO with the token first");
        } else if (rc == PC_EPROTO || rc == PC_ENOMEM) {
            conn_bad_frame(c, PC_ST_BAD_REQUEST, "malformed frame (not a peercache request)");
            return;
        } else if (rc == PC_ETOOBIG) {
            answer_error(c, rq.op, rq.id, PC_ST_TOO_LARGE, pc_proto_decoder_why(s->dec));
        } else if (rc < 0) {
            answer_error(c, rq.op, rq.id, PC_ST_BAD_REQUEST, pc_proto_decoder_why(s->dec));
        } else {
            c->cur_body = body;
            c->cur_len = len;
            handle_request(c, &rq);
        }
    }
}

/*
 * Where a read goes. A connection with no buffered input reads into the
 * server's one shared buffer (conn_read_shared), so idle connections, and
 * those whose requests arrive whole, hold no input memory. One with a
 * partial frame reads into its own reader, and no further than the end of
 * that frame: the rest of the stream goes to the shared buffer again.
 * libuv calls read_cb right after alloc_cb, before any other callback, so
 * one shared buffer serves every connection of the loop.
 */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    pc_server_t *s = c->srv;
    (void)suggested;
    /* Input of a connection that waits for its turn, or of a heavy one
     * once this iteration's budget is spent, stays in the kernel until
     * its turn (TCP flow control holds its sender back meanwhile): read
     * now, it would only be copied and held. An empty buffer is libuv's
     * "not now" (read_cb sees UV_ENOBUFS; the socket stays readable). */
    if (!c->internal && (conn_waiting(c) || (c->heavy && s->turn_work >= TURN_BUDGET_NS))) {
        c->read_deferred = 1;
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    s->read_at = uv_hrtime(); /* the read() comes next: read_cb charges it */
    if (pc_proto_reader_pending(&c->rd) == 0 && s->rbuf != NULL && !s->rbuf_busy) {
        s->rbuf_busy = 1;
        *buf = uv_buf_init((char *)s->rbuf, READ_CHUNK);
        return;
    }
    size_t want = pc_proto_reader_missing(&c->rd);
    if (want == 0 || want > READ_CHUNK)
        want = READ_CHUNK;
    uint8_t *p = NULL;
    size_t avail = 0;
    if (pc_proto_reader_reserve(&c->rd, want, &p, &avail) < 0)
        avail = 0; /* libuv reports UV_ENOBUFS to read_cb */
    *buf = uv_buf_init((char *)p, (unsigned)(avail < want ? avail : want));
}

/*
 * n bytes arrived in the shared buffer: whole frames are dispatched
 * straight from it, and what is left -- a partial frame, or frames not
 * processed because the connection paused -- moves to the connection's
 * own reader before the next read reuses the buffer.
 *
 * That is safe because nothing keeps a pointer into a frame body once
 * dispatch returns (the reader's contract: a body moves on the next
 * reserve). What outlives dispatch is copied: a FORWARD goes out as a
 * frame copied into the peer pool's queue (s->scratch, from cur_body, which
 * is read during handle_request only); MGET keys sent to other owners are
 * copied into the mfwd_t; a read-through waits on the keystate's copy of
 * its key; writes copy key and value into the req_t before they wait on
 * Redis (and hiredis formats its command at once); replicate() and the
 * hand-off encode into their own buffers; REPLICATE entries and SYNC state
 * are applied before the handler returns.
 */
static void conn_read_shared(conn_t *c, size_t n)
{
    if (pc_proto_reader_lend(&c->rd, c->srv->rbuf, n) < 0) {
        conn_close(c, "input buffered while reading into the shared buffer");
        return;
    }
    conn_run(c);
    if (c->closing) {
        pc_proto_reader_free(&c->rd); /* forget the rest */
        return;
    }
    if (pc_proto_reader_keep(&c->rd) < 0) {
        conn_close(c, "out of memory keeping a partial frame");
        return;
    }
    /* The copy is new memory: the cap, and the trim, see it now. */
    conn_update_reading(c);
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = st->data;
    int shared = buf->base != NULL && buf->base == (char *)c->srv->rbuf;
    if (shared)
        c->srv->rbuf_busy = 0;
    if (n == UV_ENOBUFS && c->read_deferred) {
        c->read_deferred = 0; /* alloc_cb: not now (else: no memory, below) */
        return;
    }
    if (n > 0) {
        c->bytes_in += (uint64_t)n;
        c->last_active = now_ms(c->srv);
        c->srv->turn_work += uv_hrtime() - c->srv->read_at; /* reading is work too */
        if (shared) {
            conn_read_shared(c, (size_t)n);
            return;
        }
        pc_proto_reader_commit(&c->rd, (size_t)n);
        conn_run(c);
        return;
    }
    if (n == UV_EOF) {
        /* The client may have half-closed and still want its answers. */
        c->eof = 1;
        conn_run(c);
        return;
    }
    if (n < 0)
        conn_close(c, uv_strerror((int)n));
}

static void conn_closed_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    c->refs--;
    conn_maybe_free(c);
}

/* Closes the connection; requests still waiting on Redis keep the memory
 * alive until their callbacks come. `why` NULL = orderly close. */
static void conn_close(conn_t *c, const char *why)
{
    if (c->closing)
        return;
    pc_server_t *s = c->srv;
    if (why)
        pc_log_debug(s->log, "client %s: closing: %s", c->peer, why);
    /* Orderly close after a bad frame: push out what is queued first. */
    if (why == NULL && c->out.len > 0 && !c->writing) {
        uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
        uv_try_write(&c->h.stream, &b, 1);
    }
    /* Nothing more is written: what was queued goes now, not when the
     * last request in flight to Redis comes back (wbuf waits for its
     * write's cancellation). */
    pc_buf_free(&c->out);
    c->closing = 1;
    if (!c->internal) {
        s->nconns--;
        atomic_fetch_sub_explicit(&s->sh->nconns, 1, memory_order_relaxed);
        srv_budget_update(s);
    }
    if (c->source_counted) {
        pc_sources_close(s->sh->sources, &c->source, now_ms(s));
        c->source_counted = 0;
    }
    if (c->reading)
        uv_read_stop(&c->h.stream);
    c->reading = 0;
    /* Answers that are ready go nowhere now. */
    pc_list_t *n = c->reqs.next;
    while (n != &c->reqs) {
        req_t *r = pc_list_entry(n, req_t, link);
        n = n->next;
        if (r->waiting == 0) /* else Redis will still call back */
            req_free(r);
    }
    uv_close(&c->h.handle, conn_closed_cb);
}

/* Why a new connection is refused (BUSY), or NULL. Counted here. */
static const char *conn_refusal(pc_server_t *s, conn_t *c)
{
    if (s->shutting_down)
        return "server shutting down";
    if (atomic_load_explicit(&s->sh->nconns, memory_order_relaxed) > s->set.max_connections)
        return "too many connections";
    int rc = pc_sources_open(s->sh->sources, &c->source, (uint32_t)(s->set.max_conns_per_source >
                             UINT32_MAX ? UINT32_MAX : s->set.max_conns_per_source), now_ms(s));
    if (rc == PC_EBUSY) {
        s->stats.source_limit_rejects++;
        return "too many connections from this address";
    }
    if (rc < 0)
        return "too many client addresses";
    c->source_counted = 1;
    srv_buffer_check(s);
    if (s->buf_full) {
        s->stats.buffer_full_rejects++;
        return "server buffer memory full";
    }
    return NULL;
}

/*
 * A connection the node has no memory for. libuv stops a listener whose
 * connection callback does not accept (and starts it again at the next
 * uv_accept), so it is accepted into `reject`, a handle of the server's
 * own, and closed at once; if that handle is still closing from the last
 * one, the next is taken when it is free (reject_closed), and the
 * listener waits that long.
 */
static void reject_closed(uv_handle_t *h)
{
    pc_server_t *s = h->data;
    s->rejecting = 0;
    if (s->reject_waiting && s->listening) {
        s->reject_waiting = 0;
        conn_reject(s);
    }
    server_handle_gone(s);
}

static void conn_reject(pc_server_t *s)
{
    if (s->rejecting) {
        s->reject_waiting = 1;
        return;
    }
    s->stats.connections_rejected++;
    uv_tcp_init(s->loop, &s->reject);
    s->reject.data = s;
    s->rejecting = 1;
    s->handles_open++;
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&s->reject) == 0)
        pc_log_warn(s->log, "accept: out of memory for a new connection; closed it");
    uv_close((uv_handle_t *)&s->reject, reject_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    pc_server_t *s = server->data;
    if (status < 0) {
        pc_log_warn(s->log, "accept: %s", uv_strerror(status));
        return;
    }
    /* Room in the scheduler for every connection, so that its turns
     * never fail to queue. */
    conn_t *c = pc_sched_reserve(&s->sched[LIGHT], s->nconn_all + 1) == 0 &&
                        pc_sched_reserve(&s->sched[HEAVY], s->nconn_all + 1) == 0
                    ? calloc(1, sizeof *c)
                    : NULL;
    if (c == NULL) {
        conn_reject(s);
        return;
    }
    uv_tcp_init(s->loop, &c->h.tcp);
    c->h.handle.data = c;
    c->srv = s;
    c->refs = 1; /* the handle */
    pc_list_init(&c->reqs);
    pc_list_push_back(&s->conns, &c->link);
    s->nconn_all++;
    /* A newcomer is heavy until its first light turn, and starts a turn
     * behind the heavy ones' clock: the clients already here are not
     * queued behind a crowd that connects at once (each of whose first
     * turns may be a 1 MiB answer). */
    pc_sched_entry_init(&c->sched[LIGHT]);
    pc_sched_entry_init(&c->sched[HEAVY]);
    c->heavy = 1;
    c->sched[HEAVY].vtime = s->sched[HEAVY].vclock + TURN_QUANTUM_NS;
    /* Sealed peer frames fit too: max-frame leaves room for the seal
     * beside the largest key and value (FRAME_SLACK in pc_config.c). */
    pc_proto_reader_init(&c->rd, s->set.limits.max_frame);
    c->authed = !token_required(s);
    pc_buf_init(&c->out, 0);
    pc_buf_init(&c->wbuf, 0);
    pc_proto_reader_account(&c->rd, &s->buf_bytes);
    pc_buf_set_account(&c->out, &s->buf_bytes);
    pc_buf_set_account(&c->wbuf, &s->buf_bytes);
    c->last_active = now_ms(s);
    s->nconns++;
    atomic_fetch_add_explicit(&s->sh->nconns, 1, memory_order_relaxed);
    srv_budget_update(s);
    if (uv_accept(server, &c->h.stream) != 0) {
        conn_close(c, "accept failed");
        return;
    }
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    c->hello_since = now_ms(s);
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
    s->stats.connections_total++;
    const char *refused = conn_refusal(s, c);
    if (refused != NULL) {
        /* Refuse at once, with a reason the client can read. */
        s->stats.connections_rejected++;
        pc_proto_encode_error(&c->out, 0, 0, PC_ST_BUSY, refused);
        conn_close(c, NULL);
        return;
    }
    conn_update_reading(c);
}

/* ---- timers ------------------------------------------------------------- */

/*
 * The time limits of one connection, checked every tick (so they fire
 * within TICK_MS of their due time). The clocks are kept by
 * conn_limits_note; a clock not running is 0.
 */
/* Quiet for a tick with nothing queued: large output buffers go (see
 * conn_limits_note), so a connection that once fetched a large value does
 * not keep its memory while idle. */
static void conn_trim(conn_t *c, uint64_t now)
{
    if (!c->writing && c->out.len == 0 && now - c->last_active >= TICK_MS) {
        if (c->out.cap > CONN_BUF_KEEP)
            pc_buf_free(&c->out);
        if (c->wbuf.cap > CONN_BUF_KEEP)
            pc_buf_free(&c->wbuf);
    }
}

static void conn_check_limits(conn_t *c, uint64_t now)
{
    pc_server_t *s = c->srv;
    if (c->closing)
        return;
    if (c->internal) { /* a worker's relay: none of the clients' limits */
        conn_trim(c, now);
        return;
    }
    if (s->set.frame_timeout_ms > 0 && c->frame_since != 0 &&
        now - c->frame_since >= s->set.frame_timeout_ms) {
        s->stats.frame_timeouts++;
        pc_log_info(s->log, "client %s: frame not complete %llu ms after it began; closing",
                    c->peer, (unsigned long long)(now - c->frame_since));
        /* Tell it why, like a bad frame: it may be a client that is only
         * slow, and it is still reading. */
        pc_proto_encode_error(&c->out, 0, 0, PC_ST_BAD_REQUEST,
                              "frame not complete within the frame timeout");
        conn_close(c, NULL);
        return;
    }
    if (!c->authed && !c->auth_pending && now - c->hello_since >= s->set.hello_timeout_ms) {
        s->stats.hello_timeouts++;
        pc_log_info(s->log, "client %s: no good HELLO within --hello-timeout; closing", c->peer);
        pc_proto_encode_error(&c->out, 0, 0, PC_ST_AUTH_REQUIRED,
                              "no HELLO with the token within the hello timeout");
        conn_close(c, NULL);
        return;
    }
    if (c->out_since != 0 && now - c->out_since >= s->set.output_timeout_ms) {
        s->stats.output_timeouts++;
        pc_log_info(s->log, "client %s: %zu bytes of replies unread for %llu ms; closing",
                    c->peer, conn_queued(c) + c->held,
                    (unsigned long long)(now - c->out_since));
        conn_close(c, "output timeout");
        return;
    }
    if (s->set.idle_timeout_ms > 0 && c->nreqs == 0 && !c->writing && !c->auth_pending &&
        now - c->last_active >= s->set.idle_timeout_ms) {
        s->stats.idle_timeouts++;
        conn_close(c, "idle timeout");
        return;
    }
    conn_trim(c, now);
}

/* The core, while draining: are the home loops idle? Then it reads again. */
static void drain_cb(uv_timer_t *t)
{
    pc_server_t *s = t->data;
    for (size_t i = 0; i < s->nworkers; i++)
        if (atomic_load(&s->workers[i]->busy) != 0)
            return;
    uv_timer_stop(t);
    s->draining = 0;
    pc_log_debug(s->log, "home loops drained: the core serves every key");
    for (pc_list_t *n = s->conns.next; n != &s->conns; n = n->next) {
        conn_t *c = pc_list_entry(n, conn_t, link);
        conn_update_reading(c);
        conn_schedule(c);
    }
}

/* On the core: homes off, and nothing read until the workers are idle. */
static void home_off(pc_server_t *s)
{
    if (!atomic_load(&s->sh->homes))
        return;
    atomic_store(&s->sh->homes, 0);
    s->draining = 1;
    pc_log_debug(s->log, "home loops off: draining");
    uv_timer_start(&s->drain_timer, drain_cb, 0, 1);
}

/*
 * On the core: turns home loops on or off (node_shared_t). They are on
 * while the ring is settled: no ring change for a settle window, no slot
 * gained within one, no hand-off running, and every worker holding a
 * view of the current ring. Then no key needs the core's per-slot state
 * (tombstones, settle caps, the hand-off scan), and what the workers
 * need of the ring is in their view. Turning on waits until the core has
 * nothing in flight to Redis for keys homed elsewhere; turning off
 * (home_off, also first thing on a ring change) makes the core stop
 * reading, and the hand-off wait, until the workers have nothing in
 * flight (each worker's busy at 0): no two Redis connections ever carry
 * one key's commands at once, and the hand-off scan sees every write the
 * homes acknowledged.
 */
static void home_update(pc_server_t *s)
{
    node_shared_t *sh = s->sh;
    if (sh->nloops < 2 || s->handles_open == 0)
        return;
    /* In a cluster: settled since the last ring change, the hand-off done
     * (it reads the store for keys the homes might still be writing), and
     * every worker routing by the current ring. */
    uint64_t now = now_ms(s);
    int want = (s->cluster == NULL || (s->rv != NULL && s->rv->self >= 0 && s->rv_pending == 0)) &&
               now >= atomic_load_explicit(&sh->settle_until, memory_order_relaxed) &&
               (s->ring_at == 0 || now >= s->ring_at + s->set.settle_ms) &&
               s->handoff_target == NULL && s->handoff_resend == NULL &&
               s->handoff_inflight == 0 && !s->shutting_down && !s->workers_stopping;
    int on = atomic_load(&sh->homes);
    if (on && !want) {
        home_off(s);
    } else if (!on && want && !s->draining && s->ks_foreign == 0) {
        atomic_store(&sh->homes, 1);
        pc_log_debug(s->log, "home loops on (%zu with Redis traffic)", sh->nhomes);
    }
}

static void rv_refresh(pc_server_t *s);

/*
 * Buffers under the mmap threshold (main.c) come from malloc's arenas,
 * which give freed memory back to the system only from their top: after
 * a crowd of connections that held buffers leaves, their holes stay
 * resident. Once the buffers have come down by TRIM_DROP and to under
 * half their peak, malloc_trim releases the free pages of every arena
 * (a walk of the heap, so not on every drop).
 */
#define TRIM_DROP ((size_t)8 << 20)

static void srv_trim(pc_server_t *s)
{
    if (s->buf_bytes > s->buf_peak)
        s->buf_peak = s->buf_bytes;
    if (s->buf_peak - s->buf_bytes >= TRIM_DROP && s->buf_bytes < s->buf_peak / 2) {
        malloc_trim(0);
        s->buf_peak = s->buf_bytes;
    }
}

static void tick_cb(uv_timer_t *t)
{
    pc_server_t *s = t->data;
    uint64_t now = now_ms(s);
    srv_trim(s);
    if (s->sweep_interval_ms > 0 && now - s->last_sweep >= s->sweep_interval_ms) {
        /* Bounded work per tick: the loop never stalls on a big sweep. */
        pc_store_sweep(s->store, now, 1000);
        s->last_sweep = now;
    }
    pc_list_t *n = s->conns.next;
    while (n != &s->conns) {
        conn_t *c = pc_list_entry(n, conn_t, link);
        n = n->next;
        if (!c->closing && c->auth_pending && now >= c->auth_until) {
            /* May close c, but a closing conn stays listed until its
             * handle's close callback, so n is still good. */
            auth_release(c);
            continue;
        }
        conn_check_limits(c, now);
    }
    /* A safety net: the cap is rechecked wherever memory goes down, and
     * here too, so that newcomers are not refused once memory is free. */
    srv_buffer_check(s);
    srv_buffer_sweep(s);
    if (s->core == NULL) {
        rv_refresh(s);
        home_update(s);
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

int pc_server_set_token(pc_server_t *s, const char *token, size_t len)
{
    uint8_t h[crypto_generichash_BYTES];
    int req = token != NULL && len > 0;
    if (req)
        token_hash((const uint8_t *)token, len, h);
    pthread_mutex_lock(&s->sh->token_lock);
    s->sh->token_required = req;
    if (req)
        memcpy(s->sh->token_hash, h, sizeof h);
    pthread_mutex_unlock(&s->sh->token_lock);
    sodium_memzero(h, sizeof h);
    return 0;
}

/* ---- ring changes ----------------------------------------------------------- */

static enum role role_on(const pc_ring_t *ring, long self, uint32_t slot)
{
    if (ring == NULL || self < 0)
        return ROLE_NONE;
    uint32_t at[PC_RING_MAX_REPLICAS];
    size_t n = pc_ring_slot_members(ring, slot, at, PC_RING_MAX_REPLICAS);
    for (size_t i = 0; i < n; i++) {
        if ((long)at[i] == self)
            return i == 0 ? ROLE_OWNER : ROLE_REPLICA;
    }
    return ROLE_NONE;
}

/* ---- hand-off --------------------------------------------------------------- */

/*
 * When this node stops owning slots (a member joined, or we left), it
 * streams the keys it holds in them to their new owners, in REPLICATE
 * batches (mode HANDOFF) at most HANDOFF_INFLIGHT at a time and at most
 * handoff_rate bytes per second, so the new owner starts warm instead of
 * reading every moved key from Redis. One scan of the store finds them
 * (pc_store_scan with a filter on the slot). A ring change during a
 * hand-off re-aims the slots not yet streamed and restarts the scan;
 * entries sent twice are refused as not newer.
 */
static int handoff_want(void *arg, const uint8_t *k, size_t n)
{
    const pc_server_t *s = arg;
    return s->handoff_target[pc_ring_slot(k, n)] != 0;
}

static void hsend_free(hsend_t *h)
{
    free(h->addr);
    pc_buf_free(&h->frame);
    free(h);
}

static void handoff_sent_cb(void *arg, int err, const uint8_t *body, size_t len)
{
    hsend_t *h = arg;
    pc_server_t *s = h->s;
    s->handoff_inflight--;
    pc_response_t resp;
    if (err == 0 && pc_proto_decode_response(s->pdec, body, len, &resp) != 0)
        err = PC_EPROTO;
    if (err == 0 && resp.status == PC_ST_RETRY && ++h->tries < HANDOFF_TRIES &&
        !s->shutting_down) {
        h->when = now_ms(s) + HANDOFF_RESEND_MS;
        h->next = s->handoff_resend;
        s->handoff_resend = h;
        return;
    }
    if (err != 0 || resp.status != PC_ST_OK)
        s->stats.handoff_errors++;
    hsend_free(h);
}

/* Sends (or re-sends) a batch; 0 or the peer pool's error. */
static int hsend_go(pc_server_t *s, hsend_t *h)
{
    int rc = pc_peer_request(s->peers, h->addr, h->frame.data, h->frame.len, handoff_sent_cb, h);
    if (rc == 0)
        s->handoff_inflight++;
    return rc;
}

static void handoff_flush(pc_server_t *s, size_t t)
{
    hbatch_t *b = &s->handoff_batches[t];
    if (b->n == 0)
        return;
    pc_repl_entry_t ents[HANDOFF_BATCH];
    uint64_t now = now_ms(s);
    for (uint32_t i = 0; i < b->n; i++) {
        const pc_item_t *it = b->items[i];
        int64_t ttl = ttl_left(pc_item_expire(it), now);
        ents[i] = (pc_repl_entry_t){
            .key = {pc_item_key(it), (uint32_t)pc_item_klen(it)},
            .value = {pc_item_value(it), (uint32_t)pc_item_vlen(it)},
            .has_value = 1,
            .flags = pc_item_flags(it),
            .version = pc_item_version(it),
            .ttl_ms = ttl,
        };
    }
    pc_request_t rq = {.op = PC_OP_REPLICATE, .mode = PC_REPL_HANDOFF,
                       .from = {(const uint8_t *)s->name, (uint32_t)strlen(s->name)},
                       .nentries = b->n, .entries = ents};
    hsend_t *h = calloc(1, sizeof *h);
    int rc = PC_ENOMEM;
    if (h != NULL && (h->addr = strdup(s->handoff_addrs[t])) != NULL) {
        h->s = s;
        pc_buf_init(&h->frame, 0);
        rc = pc_proto_encode_request(&h->frame, &rq);
        if (rc == 0)
            rc = hsend_go(s, h);
    }
    if (rc == 0) {
        s->stats.handoff_sent += b->n;
        s->handoff_tokens -= (double)b->bytes;
    } else {
        if (h)
            hsend_free(h);
        s->stats.handoff_errors++;
    }
    for (uint32_t i = 0; i < b->n; i++)
        pc_store_release(s->store, b->items[i]);
    b->n = 0;
    b->bytes = 0;
}

static void handoff_clear(pc_server_t *s)
{
    for (size_t t = 0; t < s->handoff_naddrs; t++) {
        hbatch_t *b = &s->handoff_batches[t];
        for (uint32_t i = 0; i < b->n; i++)
            pc_store_release(s->store, b->items[i]);
        free(s->handoff_addrs[t]);
    }
    free(s->handoff_addrs);
    free(s->handoff_batches);
    free(s->handoff_target);
    s->handoff_addrs = NULL;
    s->handoff_batches = NULL;
    s->handoff_target = NULL;
    s->handoff_naddrs = 0;
    s->handoff_scanning = 0;
}

static void handoff_finished(pc_server_t *s)
{
    pc_log_info(s->log, "hand-off done: %llu entries sent in %llu ms",
                (unsigned long long)(s->stats.handoff_sent - s->handoff_sent0),
                (unsigned long long)(now_ms(s) - s->handoff_started));
    handoff_clear(s);
    while (s->handoff_resend) { /* given up on (leaving in a hurry) */
        hsend_t *h = s->handoff_resend;
        s->handoff_resend = h->next;
        s->stats.handoff_errors++;
        hsend_free(h);
    }
    s->stats.handoffs++;
    uv_timer_stop(&s->handoff_timer);
    if (s->handoff_done) {
        void (*done)(void *) = s->handoff_done;
        s->handoff_done = NULL;
        done(s->handoff_done_arg);
    }
}

/* The stop's deadline (pc_server_begin_stop), or --shutdown-timeout from
 * now if it was never started. */
static uint64_t stop_deadline(const pc_server_t *s)
{
    uint64_t d = atomic_load(&s->sh->stop_deadline);
    return d != 0 ? d : now_ms(s) + s->set.shutdown_timeout_ms;
}

/* A leave's hand-off has the first half of the stop: the drain the rest. */
static uint64_t stop_handoff_until(const pc_server_t *s)
{
    uint64_t b = atomic_load(&s->sh->stop_began);
    if (b == 0)
        return s->handoff_started + s->set.shutdown_timeout_ms / 2;
    return b + s->set.shutdown_timeout_ms / 2;
}

static void handoff_step(uv_timer_t *t)
{
    pc_server_t *s = t->data;
    uint64_t now = now_ms(s);
    if (s->handoff_done && now >= stop_handoff_until(s)) {
        /* Leaving: do not hold the shutdown hostage to a slow receiver, or
         * to home loops that cannot drain (a Redis that stopped answering). */
        pc_log_warn(s->log, "hand-off: not done after %llu ms (half of --shutdown-timeout); "
                    "leaving anyway", (unsigned long long)(now - s->handoff_started));
        handoff_finished(s);
        return;
    }
    /* Writes the home loops still have in flight land in the store before
     * the scan reads it (home_update drains them). */
    if (s->draining)
        return;
    s->handoff_tokens += (double)(now - s->handoff_last_ms) * (double)s->handoff_rate / 1000.0;
    if (s->handoff_tokens > (double)s->handoff_rate)
        s->handoff_tokens = (double)s->handoff_rate; /* at most a second's burst */
    s->handoff_last_ms = now;
    /* Batches the receiver was not ready for, when their time comes. */
    for (hsend_t **pp = &s->handoff_resend; *pp;) {
        hsend_t *h = *pp;
        if (h->when > now) {
            pp = &h->next;
            continue;
        }
        *pp = h->next;
        if (hsend_go(s, h) < 0) {
            s->stats.handoff_errors++;
            hsend_free(h);
        }
    }
    /* A few scan steps per tick: the loop keeps serving in between. */
    for (int rounds = 0; rounds < 8 && s->handoff_scanning &&
                         s->handoff_inflight < HANDOFF_INFLIGHT &&
                         (s->handoff_tokens > 0 || s->handoff_naddrs == 0);
         rounds++) {
        pc_item_t *items[HANDOFF_STEP];
        size_t n = pc_store_scan(s->store, &s->handoff_cursor, now, handoff_want, s, items,
                                 HANDOFF_STEP);
        for (size_t i = 0; i < n; i++) {
            const pc_item_t *it = items[i];
            uint16_t dst = s->handoff_target[pc_ring_slot(pc_item_key(it), pc_item_klen(it))];
            if (dst == HANDOFF_PURGE) {
                /* Exactly this version: a newer copy stored meanwhile stays. */
                if (pc_item_version(it) < UINT64_MAX &&
                    pc_store_del_if_older(s->store, pc_item_key(it), pc_item_klen(it),
                                          pc_item_version(it) + 1, now) == 0)
                    s->stats.purged++;
                pc_store_release(s->store, items[i]);
                continue;
            }
            size_t tgt = dst - 1u;
            hbatch_t *b = &s->handoff_batches[tgt];
            b->items[b->n++] = items[i];
            b->bytes += pc_item_klen(it) + pc_item_vlen(it) + PC_PROTO_ENTRY_OVERHEAD;
            if (b->n == HANDOFF_BATCH || b->bytes >= HANDOFF_BATCH_BYTES)
                handoff_flush(s, tgt);
        }
        if (s->handoff_cursor == 0) {
            s->handoff_scanning = 0;
            for (size_t tg = 0; tg < s->handoff_naddrs; tg++)
                handoff_flush(s, tg);
        }
    }
    if (!s->handoff_scanning && s->handoff_inflight == 0 && s->handoff_resend == NULL)
        handoff_finished(s);
}

/*
 * (Re)starts the hand-off for the slots we no longer own on `nw`: those
 * we just lost (lost[slot] set) and those of a hand-off still running,
 * each aimed at its owner on `nw`. Addresses come from the cluster, whose
 * tables already describe `nw` when the ring callback runs.
 */
static void handoff_start(pc_server_t *s, const pc_ring_t *nw, const uint8_t *lost)
{
    uint16_t *target = calloc(PC_RING_SLOTS, sizeof *target);
    long *map = calloc(pc_ring_size(nw) + 1, sizeof *map);
    if (target == NULL || map == NULL) {
        free(target);
        free(map);
        return;
    }
    long self = pc_ring_find(nw, s->name);
    size_t naddrs = 0, npurge = 0;
    int running = s->handoff_target != NULL;
    for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
        uint16_t prev = running ? s->handoff_target[slot] : 0;
        int send = lost[slot] == 1 || (prev != 0 && prev != HANDOFF_PURGE);
        int purge = lost[slot] == 2 || prev == HANDOFF_PURGE;
        if (send && s->handoff_rate > 0) {
            long o = pc_ring_slot_owner(nw, slot);
            if (o >= 0 && o != self) {
                if (map[o] == 0)
                    map[o] = (long)++naddrs;
                target[slot] = (uint16_t)map[o];
                continue;
            }
        }
        if ((send || purge) && role_on(nw, self, slot) == ROLE_NONE) {
            target[slot] = HANDOFF_PURGE;
            npurge++;
        }
    }
    /* What was batched for the old targets goes out first. */
    for (size_t t = 0; t < s->handoff_naddrs; t++)
        handoff_flush(s, t);
    handoff_clear(s);
    if (naddrs == 0 && npurge == 0) {
        free(target);
        free(map);
        if (s->handoff_inflight == 0 && s->handoff_done)
            handoff_finished(s);
        return;
    }
    s->handoff_addrs = calloc(naddrs + 1, sizeof *s->handoff_addrs);
    s->handoff_batches = calloc(naddrs + 1, sizeof *s->handoff_batches);
    if (s->handoff_addrs == NULL || s->handoff_batches == NULL) {
        free(s->handoff_addrs);
        free(s->handoff_batches);
        s->handoff_addrs = NULL;
        s->handoff_batches = NULL;
        free(target);
        free(map);
        return;
    }
    for (size_t i = 0; i < pc_ring_size(nw); i++) {
        if (map[i] > 0)
            s->handoff_addrs[map[i] - 1] = strdup(pc_cluster_addr(s->cluster, i));
    }
    free(map);
    s->handoff_naddrs = naddrs;
    s->handoff_target = target;
    s->handoff_cursor = 0;
    s->handoff_scanning = 1;
    if (!running) {
        s->handoff_started = now_ms(s);
        s->handoff_sent0 = s->stats.handoff_sent;
    }
    s->handoff_last_ms = now_ms(s);
    s->handoff_tokens = (double)s->handoff_rate / 10; /* a tenth of a second's worth */
    if (s->handoff_timer.data == s)
        uv_timer_start(&s->handoff_timer, handoff_step, HANDOFF_DELAY_MS, 5);
    pc_log_info(s->log, "hand-off: streaming the keys of moved slots to %zu member(s); "
                        "dropping those of %zu slot(s) this node no longer holds",
                naddrs, npurge);
}

void pc_server_after_handoff(pc_server_t *s, void (*done)(void *), void *arg)
{
    if (s->handoff_target == NULL && s->handoff_inflight == 0 && s->handoff_resend == NULL) {
        done(arg);
        return;
    }
    s->handoff_done = done;
    s->handoff_done_arg = arg;
}

/* ---- loops: cross-thread calls, the core end of relays, workers -------- */

static void server_handle_closed(uv_handle_t *h);

/* Runs fn(t, arg) on t's loop thread, in the order posted. 0, PC_ENOMEM,
 * or PC_ECLOSED once t's loop takes no more calls (then fn never runs). */
static int xcall_post(pc_server_t *t, void (*fn)(pc_server_t *, void *), void *arg)
{
    xcall_t *x = malloc(sizeof *x);
    if (x == NULL)
        return PC_ENOMEM;
    x->next = NULL;
    x->fn = fn;
    x->arg = arg;
    pthread_mutex_lock(&t->xq_lock);
    if (!t->xq_open) {
        pthread_mutex_unlock(&t->xq_lock);
        free(x);
        return PC_ECLOSED;
    }
    if (t->xq_tail)
        t->xq_tail->next = x;
    else
        t->xq_head = x;
    t->xq_tail = x;
    /* Under the lock: the handle is not closed while xq_open holds. */
    uv_async_send(&t->xq_async);
    pthread_mutex_unlock(&t->xq_lock);
    return 0;
}

static void xq_run(pc_server_t *s)
{
    pthread_mutex_lock(&s->xq_lock);
    xcall_t *x = s->xq_head;
    s->xq_head = s->xq_tail = NULL;
    pthread_mutex_unlock(&s->xq_lock);
    while (x != NULL) {
        xcall_t *next = x->next;
        x->fn(s, x->arg);
        free(x);
        x = next;
    }
}

static void xq_cb(uv_async_t *a) { xq_run(a->data); }

/* Takes no more calls, runs those already posted, closes the handle. */
static void xq_close(pc_server_t *s)
{
    pthread_mutex_lock(&s->xq_lock);
    int was_open = s->xq_open;
    s->xq_open = 0;
    pthread_mutex_unlock(&s->xq_lock);
    if (!was_open)
        return;
    xq_run(s);
    uv_close((uv_handle_t *)&s->xq_async, server_handle_closed);
}

static void xq_init(pc_server_t *s)
{
    uv_async_init(s->loop, &s->xq_async, xq_cb);
    s->xq_async.data = s;
    s->handles_open++;
    pthread_mutex_lock(&s->xq_lock);
    s->xq_open = 1;
    pthread_mutex_unlock(&s->xq_lock);
}

/* The core end of a worker's relay: served like a client connection, but
 * trusted (no token), exempt from the limits meant for clients, and not
 * counted among the connections. */
static int conn_attach_internal(pc_server_t *s, int fd, int peer, size_t idx)
{
    conn_t *c = pc_sched_reserve(&s->sched[LIGHT], s->nconn_all + 1) == 0 &&
                        pc_sched_reserve(&s->sched[HEAVY], s->nconn_all + 1) == 0
                    ? calloc(1, sizeof *c)
                    : NULL;
    if (c == NULL)
        return PC_ENOMEM;
    uv_pipe_init(s->loop, &c->h.pipe, 0);
    c->h.handle.data = c;
    c->srv = s;
    c->refs = 1;
    pc_list_init(&c->reqs);
    pc_list_push_back(&s->conns, &c->link);
    s->nconn_all++;
    pc_sched_entry_init(&c->sched[LIGHT]);
    pc_sched_entry_init(&c->sched[HEAVY]);
    pc_proto_reader_init(&c->rd, s->set.limits.max_frame);
    pc_buf_init(&c->out, 0);
    pc_buf_init(&c->wbuf, 0);
    pc_proto_reader_account(&c->rd, &s->buf_bytes);
    pc_buf_set_account(&c->out, &s->buf_bytes);
    pc_buf_set_account(&c->wbuf, &s->buf_bytes);
    c->authed = 1;
    c->internal = 1;
    c->last_active = now_ms(s);
    snprintf(c->peer, sizeof c->peer, "loop %zu (%s)", idx, peer ? "peers" : "clients");
    int rc = uv_pipe_open(&c->h.pipe, fd);
    if (rc < 0) {
        pc_log_error(s->log, "relay of loop %zu: %s", idx, uv_strerror(rc));
        close(fd);
        conn_close(c, "relay failed");
        return PC_EIO;
    }
    conn_update_reading(c);
    return 0;
}

int pc_server_add_worker(pc_server_t *core, uv_loop_t *loop, pc_backend_t *backend,
                         pc_peer_pool_t *peers)
{
    if (core->core != NULL || core->handles_open != 0 || peers == NULL ||
        (backend == NULL) != (core->backend == NULL))
        return PC_EINVAL;
    pc_server_t **ws = realloc(core->workers, (core->nworkers + 1) * sizeof *ws);
    if (ws == NULL)
        return PC_ENOMEM;
    core->workers = ws;
    pc_server_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return PC_ENOMEM;
    w->loop = loop;
    w->log = core->log;
    w->guard = core->guard;
    w->store = core->store;
    w->backend = backend;
    w->peers = peers;
    w->sh = core->sh;
    w->core = core;
    w->index = core->nworkers + 1;
    w->reuseport = 1;
    w->set = core->set;
    w->listen = strdup(core->listen);
    w->name = strdup(core->name);
    w->rbuf = malloc(READ_CHUNK);
    w->ks_nbuckets = 64;
    w->ks_buckets = calloc(w->ks_nbuckets, sizeof *w->ks_buckets);
    w->fds[0] = w->fds[1] = w->fds[2] = w->fds[3] = -1;
    pc_buf_init(&w->fbuf, 0);
    pc_buf_init(&w->scratch, 0);
    for (int k = 0; k < 2; k++) {
        pc_buf_init(&w->relays[k].out, 0);
        pc_buf_init(&w->relays[k].wbuf, 0);
    }
    pc_list_init(&w->conns);
    pthread_mutex_init(&w->xq_lock, NULL);
    randombytes_buf(w->ks_hashkey, sizeof w->ks_hashkey);
    if (w->listen == NULL || w->name == NULL || w->rbuf == NULL || w->ks_buckets == NULL ||
        pc_proto_decoder_new(&w->set.limits, &w->dec) < 0 ||
        pc_proto_decoder_new(&w->set.limits, &w->pdec) < 0 ||
        pc_proto_decoder_new(&w->set.limits, &w->fdec) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w->fds) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w->fds + 2) < 0) {
        /* Not added: backend and peers stay the caller's (their handles
         * are on the worker's loop; only its owner may close them). */
        w->backend = NULL;
        w->peers = NULL;
        pc_server_free(&w);
        return PC_ENOMEM;
    }
    w->start_ms = now_ms(w);
    core->workers[core->nworkers++] = w;
    return 0;
}

/* ---- peer hello (pc_peer_set_hello on every loop's pool) ----------------- */

typedef struct hellomsg {
    size_t len;
    uint8_t frame[];
} hellomsg_t;

static void hello_take(pc_server_t *w, void *arg) /* on a worker */
{
    hellomsg_t *m = arg;
    if (pc_peer_set_hello(w->peers, m->frame, m->len) < 0)
        pc_log_error(w->log, "loop %zu: no memory for the peer HELLO", w->index);
    free(m);
}

int pc_server_set_peer_hello(pc_server_t *s, const uint8_t *frame, size_t len)
{
    int rc = pc_peer_set_hello(s->peers, frame, len);
    for (size_t i = 0; rc == 0 && i < s->nworkers; i++) {
        pc_server_t *w = s->workers[i];
        if (s->handles_open == 0) { /* the core not started: no worker runs yet */
            rc = pc_peer_set_hello(w->peers, frame, len);
            continue;
        }
        hellomsg_t *m = malloc(sizeof *m + (len ? len : 1));
        if (m == NULL)
            return PC_ENOMEM;
        m->len = len;
        if (len)
            memcpy(m->frame, frame, len);
        if (xcall_post(w, hello_take, m) < 0)
            free(m); /* a stopping worker makes no new connections */
    }
    return rc;
}

/* ---- ring views (ringview_t) ------------------------------------------- */

static void rv_release(ringview_t *v)
{
    if (v == NULL || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    for (size_t i = 0; v->addrs != NULL && i < v->n; i++)
        free(v->addrs[i]);
    free(v->addrs);
    free((void *)v->suspect);
    pc_ring_free(&v->ring);
    free(v);
}

/* On the core: the view of the cluster's current ring. NULL: no memory. */
static ringview_t *rv_new(pc_server_t *s)
{
    const pc_ring_t *ring = pc_cluster_ring(s->cluster);
    size_t n = pc_ring_size(ring);
    ringview_t *v = calloc(1, sizeof *v);
    if (v == NULL)
        return NULL;
    atomic_init(&v->refs, 1);
    v->ring = pc_ring_ref(ring);
    v->self = pc_cluster_self(s->cluster);
    v->n = n;
    v->addrs = calloc(n ? n : 1, sizeof *v->addrs);
    v->suspect = calloc(n ? n : 1, sizeof *v->suspect);
    for (size_t i = 0; v->addrs != NULL && v->suspect != NULL && i < n; i++) {
        if ((v->addrs[i] = strdup(pc_cluster_addr(s->cluster, i))) == NULL)
            break;
        atomic_init(&v->suspect[i], (uint8_t)(pc_cluster_suspect(s->cluster, i) != 0));
    }
    if (v->addrs == NULL || v->suspect == NULL || (n > 0 && v->addrs[n - 1] == NULL)) {
        rv_release(v);
        return NULL;
    }
    return v;
}

/* A worker took view number `arg`: it counts if that is still the latest
 * (an older view's acknowledgement may arrive after a newer was sent). */
static void rv_taken(pc_server_t *core, void *arg) /* on the core */
{
    if (core->rv != NULL && core->rv->gen == (uint64_t)(uintptr_t)arg && core->rv_pending > 0)
        core->rv_pending--;
    home_update(core);
}

static void rv_take(pc_server_t *w, void *arg) /* on a worker */
{
    ringview_t *old = w->rv;
    w->rv = arg;
    uint64_t gen = w->rv->gen;
    rv_release(old);
    if (xcall_post(w->core, rv_taken, (void *)(uintptr_t)gen) < 0)
        pc_log_error(w->log, "loop %zu took a ring view, but could not tell the core", w->index);
}

/*
 * On the core: sends every worker a view of the current ring. Homes stay
 * off until each has taken it (rv_pending), so no worker routes by an
 * older ring while it serves keys on its own. Before the workers run, it
 * is handed over directly. Out of memory, the workers keep the view they
 * have and homes stay off (rv_pending is left up).
 */
static void rv_publish(pc_server_t *s)
{
    if (s->nworkers == 0 || s->cluster == NULL)
        return;
    ringview_t *v = rv_new(s);
    if (v == NULL) {
        pc_log_error(s->log, "no memory for the workers' ring view; the core serves every key");
        s->rv_pending = SIZE_MAX / 2;
        return;
    }
    v->gen = ++s->rv_gen;
    rv_release(s->rv);
    s->rv = v;
    s->rv_pending = 0;
    for (size_t i = 0; i < s->nworkers; i++) {
        pc_server_t *w = s->workers[i];
        atomic_fetch_add(&v->refs, 1);
        if (s->handles_open == 0) { /* the core not started: no worker runs yet */
            rv_release(w->rv);
            w->rv = v;
        } else if (xcall_post(w, rv_take, v) == 0) {
            s->rv_pending++;
        } else {
            rv_release(v); /* a worker that stopped routes nothing */
        }
    }
}

/* On the core, every tick: suspicion changes without a ring change; a
 * member's address may too (then the workers get a new view). */
static void rv_refresh(pc_server_t *s)
{
    ringview_t *v = s->rv;
    if (v == NULL || s->cluster == NULL)
        return;
    if (pc_cluster_ring(s->cluster) != v->ring) { /* a view that failed to build */
        if (s->rv_pending >= SIZE_MAX / 2)
            rv_publish(s);
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        atomic_store_explicit(&v->suspect[i], (uint8_t)(pc_cluster_suspect(s->cluster, i) != 0),
                              memory_order_relaxed);
        if (strcmp(v->addrs[i], pc_cluster_addr(s->cluster, i)) != 0) {
            rv_publish(s);
            return;
        }
    }
}

/* The role of `self` in a slot: from roles[] (pc_ring_roles) when the
 * caller could allocate it, else asked of the ring. */
static enum role role_at(const uint8_t *roles, const pc_ring_t *ring, long self, uint32_t slot)
{
    return roles != NULL ? (enum role)roles[slot] : role_on(ring, self, slot);
}

/* On the core, a ring change: the view the workers serve by. `roles`:
 * ours on nw per slot, or NULL. */
static void view_publish(pc_server_t *s, const pc_ring_t *nw, long self, const uint8_t *roles)
{
    node_shared_t *sh = s->sh;
    atomic_store_explicit(&sh->ring_fp, pc_ring_fingerprint(nw), memory_order_relaxed);
    atomic_store_explicit(&sh->epoch_min, s->slot_epoch_max, memory_order_relaxed);
    atomic_store_explicit(&sh->settle_until, s->last_gained ? s->last_gained + s->set.settle_ms : 0,
                          memory_order_relaxed);
    if (sh->gate != NULL) {
        for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
            uint32_t g =
                role_at(roles, nw, self, slot) == ROLE_OWNER ? s->slot_epoch[slot] : GATE_NONE;
            atomic_store_explicit(&sh->gate[slot], g, memory_order_relaxed);
        }
    }
    atomic_store_explicit(&sh->alone, pc_ring_size(nw) <= 1 && self >= 0, memory_order_relaxed);
    rv_publish(s);
    home_update(s); /* on again once settled and every worker has the view */
}

void pc_server_ring_changed(void *arg, const pc_ring_t *old, const pc_ring_t *nw)
{
    pc_server_t *s = arg;
    if (s->slot_epoch == NULL)
        return;
    /* First of all: the workers stop serving keys on their own (they
     * would route by the old ring), and the homes drain. */
    if (s->handles_open != 0)
        home_off(s);
    long so = old ? pc_ring_find(old, s->name) : -1;
    long sn = pc_ring_find(nw, s->name);
    /* A slot we gain is served only from copies stored from now on: ours
     * from before may have missed writes taken elsewhere meanwhile, and
     * a replica promoted to owner may have missed the last writes of an
     * owner that died. One epoch bump covers all slots of this change.
     * Without Redis behind us the replica's copy is all there is: a
     * promoted replica keeps it (best effort, docs/CONSISTENCY.md). */
    uint32_t epoch = 0;
    uint32_t gained = 0, lost = 0;
    uint8_t *lostmap = old ? calloc(PC_RING_SLOTS, 1) : NULL;
    /* Our roles on both rings, each in one pass over the placement. */
    uint8_t *roles = malloc(2 * (size_t)PC_RING_SLOTS);
    const uint8_t *rold = roles, *rnew = roles ? roles + PC_RING_SLOTS : NULL;
    if (roles != NULL) {
        pc_ring_roles(old, so, roles);
        pc_ring_roles(nw, sn, roles + PC_RING_SLOTS);
    }
    uint64_t now = now_ms(s);
    /* A node that was alone and now has company (it joined a cluster, or
     * the first member joined it) gains every slot it keeps: while alone
     * it owned them only because it knew of nobody else, and those who
     * owned them meanwhile may not know of it yet. */
    int joining = old != NULL && pc_ring_size(old) <= 1 && pc_ring_size(nw) > 1;
    for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
        enum role ro = role_at(rold, old, so, slot), rn = role_at(rnew, nw, sn, slot);
        int promoted = rn == ROLE_OWNER && ro == ROLE_REPLICA;
        if ((rn == ROLE_OWNER && ro != ROLE_OWNER && !(promoted && s->backend == NULL)) ||
            (rn == ROLE_REPLICA && ro == ROLE_NONE) || (joining && rn != ROLE_NONE)) {
            if (epoch == 0)
                epoch = pc_store_epoch_bump(s->store);
            s->slot_epoch[slot] = epoch;
            if (epoch > s->slot_epoch_max)
                s->slot_epoch_max = epoch;
            /* The first ring is no change: nobody else wrote meanwhile.
             * The table starts zeroed and untouched: writing the zeros
             * would fault in 512 KiB at start for nothing. */
            if (old != NULL || s->slot_gained[slot] != 0)
                s->slot_gained[slot] = old ? now : 0;
            if (old)
                s->last_gained = now;
            gained++;
        }
        if (ro == ROLE_OWNER && rn != ROLE_OWNER && lostmap) {
            lostmap[slot] = 1;
            lost++;
        } else if (ro != ROLE_NONE && rn == ROLE_NONE && lostmap) {
            lostmap[slot] = 2; /* dropped out of its placement: purge */
            lost++;
        }
    }
    if (old != NULL)
        s->ring_at = now;
    pc_log_info(s->log, "ring %016llx: %zu member(s); this node gained %u and lost %u of %u slots",
                (unsigned long long)pc_ring_fingerprint(nw), pc_ring_size(nw), gained, lost,
                PC_RING_SLOTS);
    view_publish(s, nw, sn, rnew);
    free(roles);
    if (lostmap && (lost > 0 || s->handoff_target))
        handoff_start(s, nw, lostmap);
    free(lostmap);
}

int pc_server_new(uv_loop_t *loop, const pc_config_t *cfg, pc_store_t *store,
                  pc_backend_t *backend, pc_cluster_t *cluster, pc_peer_pool_t *peers,
                  pc_guard_t *guard, const pc_log_t *log, pc_server_t **out)
{
    pc_server_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return PC_ENOMEM;
    s->loop = loop;
    s->log = log;
    s->guard = guard;
    s->store = store;
    s->backend = backend;
    s->cluster = cluster;
    s->peers = peers;
    pc_buf_init(&s->scratch, 0);
    pc_buf_init(&s->fbuf, 0);
    pc_proto_limits_default(&s->set.limits);
    s->set.limits.max_frame = (uint32_t)cfg->max_frame;
    s->set.limits.max_key = (uint32_t)cfg->max_key;
    s->set.limits.max_value = (uint32_t)cfg->max_value;
    s->set.limits.max_mget_keys = (uint32_t)cfg->max_mget_keys;
    s->listen = strdup(cfg->listen);
    s->name = strdup(cfg->name ? cfg->name : cfg->listen);
    s->set.max_connections = cfg->max_connections;
    s->set.max_conns_per_source = cfg->max_conns_per_source;
    s->set.hello_timeout_ms = cfg->hello_timeout_ms ? cfg->hello_timeout_ms : 1;
    s->set.idle_timeout_ms = cfg->idle_timeout_ms;
    s->set.max_inflight = cfg->max_inflight ? cfg->max_inflight : 1;
    s->set.max_output = cfg->max_output;
    s->set.frame_timeout_ms = cfg->frame_timeout_ms;
    s->set.output_timeout_ms = cfg->output_timeout_ms ? cfg->output_timeout_ms : 1;
    s->set.max_buffer_memory = cfg->max_buffer_memory ? cfg->max_buffer_memory : SIZE_MAX;
    s->rbuf = malloc(READ_CHUNK);
    s->set.shutdown_timeout_ms = cfg->shutdown_timeout_ms;
    s->sweep_interval_ms = cfg->sweep_interval_ms;
    s->ks_nbuckets = 64;
    s->ks_buckets = calloc(s->ks_nbuckets, sizeof *s->ks_buckets);
    pc_list_init(&s->conns);
    randombytes_buf(s->ks_hashkey, sizeof s->ks_hashkey);
    s->set.settle_ms = cfg->ring_settle_ms;
    s->handoff_rate = cfg->handoff_rate;
    s->reuseport = cfg->threads > 1;
    pthread_mutex_init(&s->xq_lock, NULL);
    s->fds[0] = s->fds[1] = s->fds[2] = s->fds[3] = -1;
    s->sh = calloc(1, sizeof *s->sh);
    if (s->sh != NULL) {
        pthread_mutex_init(&s->sh->token_lock, NULL);
        s->sh->has_backend = backend != NULL;
        if (cfg->threads > 1 && cluster != NULL)
            s->sh->gate = calloc(PC_RING_SLOTS, sizeof *s->sh->gate);
        for (size_t i = 0; s->sh->gate != NULL && i < PC_RING_SLOTS; i++)
            atomic_init(&s->sh->gate[i], GATE_NONE);
        /* No cluster: everything is ours, whatever its epoch. */
        atomic_init(&s->sh->alone, cluster == NULL);
        /* Every connection accepted is counted by address, and no more
         * than --max-connections (+1, refused on arrival) are open. */
        uint64_t cap = cfg->max_connections < (1u << 22) ? cfg->max_connections : (1u << 22);
        if (pc_sources_new((size_t)cap + 64, &s->sh->sources) < 0)
            s->sh->sources = NULL;
    }
    if (cluster != NULL) {
        s->slot_epoch = calloc(PC_RING_SLOTS, sizeof *s->slot_epoch);
        s->slot_gained = calloc(PC_RING_SLOTS, sizeof *s->slot_gained);
    }
    if (s->listen == NULL || s->name == NULL || s->ks_buckets == NULL || s->rbuf == NULL ||
        s->sh == NULL || s->sh->sources == NULL ||
        (cfg->threads > 1 && cluster != NULL && s->sh->gate == NULL) ||
        (cluster != NULL && (s->slot_epoch == NULL || s->slot_gained == NULL)) ||
        pc_proto_decoder_new(&s->set.limits, &s->dec) < 0 ||
        pc_proto_decoder_new(&s->set.limits, &s->pdec) < 0 ||
        pc_proto_decoder_new(&s->set.limits, &s->fdec) < 0) {
        pc_server_free(&s);
        return PC_ENOMEM;
    }
    s->start_ms = now_ms(s);
    *out = s;
    return 0;
}

/* Binds and listens; with SO_REUSEPORT when the node has several loops,
 * each loop on its own socket. A libuv error code. */
static int listen_on(pc_server_t *s, const struct sockaddr *sa, socklen_t salen)
{
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->handles_open++;
    int rc;
    if (!s->reuseport) {
        rc = uv_tcp_bind(&s->listener, sa, 0);
    } else {
        int one = 1, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
            bind(fd, sa, salen) < 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        if ((rc = uv_tcp_open(&s->listener, fd)) < 0) {
            close(fd);
            return rc;
        }
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    return rc;
}

/*
 * SO_REUSEPORT would let a second process of the same user bind the port
 * too and take a share of the connections. A plain bind first makes
 * "address in use" an error as it is with one loop: it fails if anyone
 * listens there, and a second peercached makes the same check.
 */
static int port_free(const struct sockaddr *sa, socklen_t salen)
{
    int one = 1, rc = 0, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, sa, salen) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

static void start_handles(pc_server_t *s)
{
    uv_timer_init(s->loop, &s->tick);
    s->tick.data = s;
    s->handles_open++;
    uv_idle_init(s->loop, &s->run_idle);
    s->run_idle.data = s;
    s->handles_open++;
    uv_prepare_init(s->loop, &s->turn_prep);
    s->turn_prep.data = s;
    s->handles_open++;
    uv_prepare_start(&s->turn_prep, turn_prep_cb);
    uv_timer_start(&s->tick, tick_cb, TICK_MS, TICK_MS);
    uv_timer_init(s->loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    s->handles_open++;
    uv_timer_init(s->loop, &s->handoff_timer);
    s->handoff_timer.data = s;
    s->handles_open++;
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    s->handles_open++;
    uv_check_init(s->loop, &s->relay_check);
    s->relay_check.data = s;
    s->handles_open++;
    xq_init(s);
}

/* Opens the relay's end `fd` on s's loop, going to loop `to`. */
static int relay_open(pc_server_t *s, relay_t *rl, int fd, size_t to)
{
    rl->srv = s;
    rl->to = to;
    pc_list_init(&rl->waits);
    pc_proto_reader_init(&rl->rd, s->set.limits.max_frame);
    uv_pipe_init(s->loop, &rl->pipe, 0);
    rl->pipe.data = rl;
    s->handles_open++;
    int rc = uv_pipe_open(&rl->pipe, fd);
    if (rc < 0)
        close(fd);
    else
        rc = uv_read_start((uv_stream_t *)&rl->pipe, relay_alloc_cb, relay_read_cb);
    if (rc < 0) {
        pc_log_error(s->log, "relay of loop %zu to loop %zu: %s", s->index, to, uv_strerror(rc));
        return PC_EIO;
    }
    rl->open = 1;
    return 0;
}

static pc_server_t *loop_at(pc_server_t *core, size_t i)
{
    return i == 0 ? core : core->workers[i - 1];
}

/* Home loops: a relay from every loop to every home loop but itself (the
 * workers' relays to the core exist already), each received on the home
 * as an internal connection. */
static int homes_start(pc_server_t *core)
{
    node_shared_t *sh = core->sh;
    size_t nloops = core->nworkers + 1;
    for (size_t i = 0; i < nloops; i++) {
        pc_server_t *s = loop_at(core, i);
        s->hrel = calloc(sh->nhomes, sizeof *s->hrel);
        if (s->hrel == NULL)
            return PC_ENOMEM;
        s->nhrel = sh->nhomes;
        for (size_t h = 0; h < sh->nhomes; h++) {
            pc_buf_init(&s->hrel[h].out, 0);
            pc_buf_init(&s->hrel[h].wbuf, 0);
        }
        for (size_t h = 1; h < sh->nhomes; h++) {
            int fds[2];
            if (h == i)
                continue;
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
                pc_log_error(core->log, "relay socketpair: %s", strerror(errno));
                return PC_EIO;
            }
            int rc = relay_open(s, &s->hrel[h], fds[0], h);
            if (rc < 0) {
                close(fds[1]);
                return rc;
            }
            if ((rc = conn_attach_internal(loop_at(core, h), fds[1], 0, i)) < 0)
                return rc;
        }
    }
    return 0;
}

/* A worker's listener on the core's address (its port, if that was 0),
 * and its two relays, whose core ends become internal connections. */
static int worker_start(pc_server_t *w, const struct sockaddr *sa, socklen_t salen)
{
    pc_server_t *core = w->core;
    int rc = listen_on(w, sa, salen);
    if (rc < 0) {
        pc_log_error(w->log, "listen %s (loop %zu): %s", w->listen, w->index, uv_strerror(rc));
        return PC_EIO;
    }
    w->listening = 1;
    w->set.max_buffer_memory = core->set.max_buffer_memory; /* the share pc_server_start set */
    srv_budget_update(w);
    start_handles(w);
    for (int k = 0; k < 2; k++) {
        rc = relay_open(w, &w->relays[k], w->fds[2 * k], 0);
        w->fds[2 * k] = -1;
        if (rc < 0)
            return rc;
        rc = conn_attach_internal(core, w->fds[2 * k + 1], k, w->index);
        w->fds[2 * k + 1] = -1;
        if (rc < 0)
            return rc;
    }
    return 0;
}

int pc_server_start(pc_server_t *s)
{
    char host[256];
    int port;
    if (pc_addr_parse(s->listen, host, sizeof host, &port) < 0) {
        pc_log_error(s->log, "listen: bad address '%s'", s->listen);
        return PC_EINVAL;
    }
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int grc = getaddrinfo(host, portstr, &hints, &ai);
    if (grc != 0) {
        pc_log_error(s->log, "listen %s: %s", s->listen, gai_strerror(grc));
        return PC_EIO;
    }
    int rc = s->reuseport && port != 0 ? port_free(ai->ai_addr, ai->ai_addrlen) : 0;
    if (rc == 0)
        rc = listen_on(s, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc < 0) {
        pc_log_error(s->log, "listen %s: %s", s->listen, uv_strerror(rc));
        return PC_EIO;
    }
    s->listening = 1;
    start_handles(s);
    if (s->handoff_target) /* a ring change before start */
        uv_timer_start(&s->handoff_timer, handoff_step, HANDOFF_DELAY_MS, 5);

    /* The buffer cap is the node's: each loop gets an equal share. */
    s->set.max_buffer_memory /= s->nworkers + 1;
    srv_budget_update(s);
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    if (s->nworkers > 0 && uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sslen) < 0)
        return PC_EIO;
    for (size_t i = 0; i < s->nworkers; i++)
        if ((rc = worker_start(s->workers[i], (struct sockaddr *)&ss, (socklen_t)sslen)) < 0)
            return rc;
    s->sh->nloops = s->nworkers + 1;
    if (s->sh->has_backend && s->nworkers > 0) {
        s->sh->nhomes = s->nworkers + 1 < MAX_HOMES ? s->nworkers + 1 : MAX_HOMES;
        if ((rc = homes_start(s)) < 0)
            return rc;
    }
    home_update(s);
    return 0;
}

static void server_handle_gone(pc_server_t *s)
{
    s->handles_open--;
    if (s->handles_open == 0 && pc_list_empty(&s->conns) && s->on_done) {
        void (*done)(void *) = s->on_done;
        s->on_done = NULL;
        done(s->on_done_arg);
    }
}

static void server_handle_closed(uv_handle_t *h) { server_handle_gone(h->data); }

/* A relay's pipe: its data is the relay. */
static void relay_pipe_closed(uv_handle_t *h) { server_handle_gone(((relay_t *)h->data)->srv); }

/* A worker's backend or peer pool, closed. */
static void backend_gone(void *arg) { server_handle_gone(arg); }

/*
 * Closes the sending end of a relay. What still waits on it is answered
 * now (INTERNAL, "the node is stopping"): the other loop will not answer
 * any more, and a request left waiting would hold its connection -- and
 * with it this loop's stop -- for ever.
 */
static void relay_close(relay_t *rl)
{
    if (rl->srv == NULL || uv_is_closing((uv_handle_t *)&rl->pipe))
        return;
    rl->open = 0; /* (relay_fail_all logs only an unexpected end) */
    relay_fail_all(rl, NULL);
    uv_close((uv_handle_t *)&rl->pipe, relay_pipe_closed);
}

static void close_server_handles(pc_server_t *s)
{
    if (!uv_is_closing((uv_handle_t *)&s->run_idle))
        uv_close((uv_handle_t *)&s->run_idle, server_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&s->turn_prep))
        uv_close((uv_handle_t *)&s->turn_prep, server_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&s->tick))
        uv_close((uv_handle_t *)&s->tick, server_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&s->shutdown_timer))
        uv_close((uv_handle_t *)&s->shutdown_timer, server_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&s->handoff_timer))
        uv_close((uv_handle_t *)&s->handoff_timer, server_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&s->drain_timer))
        uv_close((uv_handle_t *)&s->drain_timer, server_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&s->relay_check))
        uv_close((uv_handle_t *)&s->relay_check, server_handle_closed);
    for (int k = 0; s->core != NULL && k < 2; k++)
        relay_close(&s->relays[k]);
    for (size_t h = 0; h < s->nhrel; h++)
        relay_close(&s->hrel[h]);
    if (s->core != NULL && s->backend != NULL) { /* a worker's own Redis connection */
        pc_backend_t *b = s->backend;
        s->backend = NULL;
        s->handles_open++;
        pc_backend_close(b, backend_gone, s);
    }
    if (s->core != NULL && s->peers != NULL && !s->peers_closing) { /* its own peer pool */
        s->peers_closing = 1;
        s->handles_open++;
        pc_peer_pool_close(s->peers, backend_gone, s);
    }
    xq_close(s);
}

/* What this loop's stop still waits for, as a phrase for the log. */
static void loop_pending(const pc_server_t *s, char *buf, size_t len)
{
    unsigned long long reqs = 0, relayed = 0, forwarded = 0;
    for (const pc_list_t *n = s->conns.next; n != &s->conns; n = n->next) {
        const conn_t *c = pc_list_entry(n, conn_t, link);
        reqs += c->nreqs;
        for (const pc_list_t *l = c->reqs.next; l != &c->reqs; l = l->next) {
            const req_t *r = pc_list_entry(l, req_t, link);
            relayed += r->waiting && r->rw.done != NULL;
            forwarded += r->waiting && r->forwarded;
        }
    }
    snprintf(buf, len, "loop %zu: %llu connection(s) open, %llu request(s) unanswered (%llu "
             "relayed to another loop, %llu forwarded to a peer), %zu key(s) with Redis "
             "commands in flight%s%s", s->index, (unsigned long long)s->nconns, reqs, relayed,
             forwarded, s->ks_count, s->draining ? ", home loops draining" : "",
             s->handoff_target != NULL ? ", a hand-off running" : "");
}

/* The drain reached the stop's deadline: what is left is cut, and the
 * node will exit non-zero (pc_server_shutdown_forced). */
static void shutdown_timeout_cb(uv_timer_t *t)
{
    pc_server_t *s = t->data;
    char what[256];
    loop_pending(s, what, sizeof what);
    pc_log_warn(s->log, "shutdown: --shutdown-timeout (%llu ms) reached; closing what is left "
                "(%s)", (unsigned long long)s->set.shutdown_timeout_ms, what);
    atomic_store(&s->sh->forced, 1);
    pc_list_t *n = s->conns.next;
    while (n != &s->conns) {
        conn_t *c = pc_list_entry(n, conn_t, link);
        n = n->next;
        conn_close(c, "shutdown");
    }
    /* What the cut requests still wait on ends now too: their callbacks
     * find closed connections, and the loop can finish. */
    if (s->backend != NULL)
        pc_backend_fail_pending(s->backend);
    if (s->peers != NULL)
        pc_peer_pool_fail_all(s->peers);
    close_server_handles(s);
}

/* Polls until every connection has drained, then closes the timers. */
static void shutdown_poll_cb(uv_timer_t *t)
{
    pc_server_t *s = t->data;
    if (s->nconns == 0) {
        uv_timer_stop(&s->tick);
        close_server_handles(s);
    }
}

static void shutdown_loop(pc_server_t *s, void (*done)(void *), void *arg);

/* Shutting down with workers: they stop first (their requests at the
 * core still need it), each reporting back here, then the core. */
static void core_worker_stopped(pc_server_t *core, void *arg)
{
    (void)arg;
    if (--core->workers_running == 0)
        shutdown_loop(core, core->on_done, core->on_done_arg);
}

static void worker_stopped(void *arg)
{
    pc_server_t *w = arg;
    if (xcall_post(w->core, core_worker_stopped, NULL) < 0)
        pc_log_error(w->log, "loop %zu stopped, but could not tell the core", w->index);
}

static void worker_stop_call(pc_server_t *w, void *arg)
{
    (void)arg;
    pc_server_shutdown(w, worker_stopped, w);
}

void pc_server_shutdown(pc_server_t *s, void (*done)(void *), void *arg)
{
    if (s->nworkers == 0 || s->workers_stopping || s->handles_open == 0) {
        shutdown_loop(s, done, arg);
        return;
    }
    s->workers_stopping = 1;
    s->on_done = done;
    s->on_done_arg = arg;
    home_update(s); /* the core serves every key from now on */
    if (s->listening) { /* no new connections here either meanwhile */
        uv_close((uv_handle_t *)&s->listener, server_handle_closed);
        s->listening = 0;
    }
    s->workers_running = s->nworkers;
    for (size_t i = 0; i < s->nworkers; i++)
        if (xcall_post(s->workers[i], worker_stop_call, NULL) < 0)
            s->workers_running--;
    if (s->workers_running == 0)
        shutdown_loop(s, done, arg);
}

static void shutdown_loop(pc_server_t *s, void (*done)(void *), void *arg)
{
    s->shutting_down = 1;
    s->on_done = done;
    s->on_done_arg = arg;
    if (s->handles_open == 0) { /* never started */
        s->on_done = NULL;
        done(arg);
        return;
    }
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, server_handle_closed);
        s->listening = 0;
    }
    /* Stop taking requests; each connection closes once its answers are
     * out (conn_process closes a drained eof connection). */
    pc_list_t *n = s->conns.next;
    while (n != &s->conns) {
        conn_t *c = pc_list_entry(n, conn_t, link);
        n = n->next;
        if (c->closing)
            continue;
        c->eof = 1;
        conn_process(c);
    }
    /* Cut what is left a little before the deadline, so that the node
     * still closes everything in order and exits before it. */
    uint64_t now = now_ms(s), grace = s->set.shutdown_timeout_ms / 5;
    uint64_t cut = stop_deadline(s) - (grace < 1000 ? grace : 1000);
    uv_timer_start(&s->shutdown_timer, shutdown_timeout_cb, cut > now ? cut - now : 0, 0);
    uv_timer_start(&s->tick, shutdown_poll_cb, 10, 10);
}

void pc_server_begin_stop(pc_server_t *s)
{
    uint64_t now = now_ms(s);
    uint64_t zero = 0;
    if (atomic_compare_exchange_strong(&s->sh->stop_began, &zero, now))
        atomic_store(&s->sh->stop_deadline, now + s->set.shutdown_timeout_ms);
}

int pc_server_shutdown_forced(const pc_server_t *s) { return atomic_load(&s->sh->forced); }

void pc_server_pending(const pc_server_t *s, char *buf, size_t len)
{
    char own[256];
    loop_pending(s, own, sizeof own);
    if (s->workers_stopping && s->workers_running > 0)
        snprintf(buf, len, "%s; %zu worker loop(s) not stopped yet (%llu client connection(s) "
                 "open on all loops)", own, s->workers_running,
                 (unsigned long long)atomic_load(&s->sh->nconns));
    else
        snprintf(buf, len, "%s", own);
}

void pc_server_free(pc_server_t **sp)
{
    pc_server_t *s = *sp;
    if (s == NULL)
        return;
    for (size_t i = 0; s->ks_buckets && i < s->ks_nbuckets; i++) {
        keystate_t *ks = s->ks_buckets[i];
        while (ks) {
            keystate_t *next = ks->hnext;
            free(ks);
            ks = next;
        }
    }
    free(s->ks_buckets);
    free(s->slot_epoch);
    free(s->slot_gained);
    free(s->tombs);
    handoff_clear(s);
    while (s->handoff_resend) {
        hsend_t *h = s->handoff_resend;
        s->handoff_resend = h->next;
        hsend_free(h);
    }
    pc_buf_free(&s->scratch);
    pc_sched_free(&s->sched[LIGHT]);
    pc_sched_free(&s->sched[HEAVY]);
    if (s->buf_bytes != 0)
        pc_log_error(s->log, "connection buffer accounting is off by %zu bytes", s->buf_bytes);
    free(s->rbuf);
    pc_proto_decoder_free(&s->dec);
    pc_proto_decoder_free(&s->pdec);
    pc_proto_decoder_free(&s->fdec);
    pc_buf_free(&s->fbuf);
    free(s->listen);
    free(s->name);
    for (size_t i = 0; i < 2; i++) {
        pc_buf_free(&s->relays[i].out);
        pc_buf_free(&s->relays[i].wbuf);
        pc_proto_reader_free(&s->relays[i].rd);
    }
    for (size_t i = 0; i < s->nhrel; i++) {
        pc_buf_free(&s->hrel[i].out);
        pc_buf_free(&s->hrel[i].wbuf);
        pc_proto_reader_free(&s->hrel[i].rd);
    }
    free(s->hrel);
    rv_release(s->rv);
    if (s->core != NULL)
        pc_peer_pool_free(&s->peers);
    for (size_t i = 0; i < 4; i++)
        if (s->fds[i] >= 0)
            close(s->fds[i]);
    for (size_t i = 0; i < s->nworkers; i++)
        pc_server_free(&s->workers[i]);
    free(s->workers);
    /* None can be left: xq_close runs what was queued, and posts fail
     * from then on (and before xq_init). Their arguments are not always
     * heap blocks, so a leftover is only reported. */
    while (s->xq_head != NULL) {
        xcall_t *x = s->xq_head;
        s->xq_head = x->next;
        pc_log_error(s->log, "loop %zu: a cross-loop call was never run", s->index);
        free(x);
    }
    pthread_mutex_destroy(&s->xq_lock);
    if (s->core == NULL && s->sh != NULL) {
        free((void *)s->sh->gate);
        pc_sources_free(&s->sh->sources);
        pthread_mutex_destroy(&s->sh->token_lock);
        free(s->sh);
    }
    free(s);
    *sp = NULL;
}
