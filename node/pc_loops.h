/*
 * pc_loops.h -- the loops of one node together: what they share, calls
 * from one loop's thread to another's, and the home loops -- on or off,
 * and the drain between (docs/ARCHITECTURE.md "Threads").
 *
 * Home loops. While the ring is settled, homes are on: every loop serves
 * the keys this node owns itself, each key's misses and writes on its
 * *home* loop (slot % nhomes), whose Redis connection alone carries that
 * key. While the ring changes, homes are off: the core serves every key
 * and the workers relay to it. Turning them off, the core stops reading
 * until every worker is idle: a worker counts its keystates alive and
 * its dispatches under way in its `busy` (pc_loops_enter / leave), and
 * raises it *before* it reads the flag, so the core, which clears the
 * flag before it reads the counts, either sees the dispatch or is seen by
 * it (both sequentially consistent). When to turn them on or off is the
 * server's decision (pc_server.c); this module does the switching.
 *
 * Thread rules: pc_shared_t's atomics are read anywhere; `homes` and the
 * view fields are written by the core only. pc_loops_call may be called
 * from any thread.
 */
#ifndef PC_LOOPS_H
#define PC_LOOPS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_auth.h"
#include "pc_loop.h"
#include "pc_sources.h"
#include "pc_vclock.h"

/* Home loops at most: each loop keeps a relay to each. */
#define PC_LOOPS_MAX_HOMES 8
/* gate[slot] of a slot this node does not own. */
#define PC_GATE_NONE UINT32_MAX

struct pc_shared {
    pc_vclock_t clock;         /* versions: one clock per node */
    _Atomic uint64_t nconns;   /* client connections on all loops */
    _Atomic uint64_t ring_fp;  /* sent with every answer */
    /* The view the core publishes for the workers (pc_view_publish):
     * alone = this node is the only member (owns every slot); then an
     * item with epoch >= epoch_min is valid anywhere. Otherwise gate[slot]
     * is the least valid epoch in a slot we own, PC_GATE_NONE in the
     * others. Writes are local only when alone and past settle_until. */
    _Atomic int alone;
    _Atomic uint32_t epoch_min;
    /* The partition lease's end (pc_cluster_lease_cb; uv_now() ms,
     * UINT64_MAX = none needed). With Redis behind, from then on no loop
     * serves a cached copy or takes a write (pc_keys_cut_off). */
    _Atomic uint64_t lease_until;
    _Atomic uint64_t settle_until;
    _Atomic uint32_t *gate; /* PC_RING_SLOTS; NULL with one loop or no cluster */
    int has_backend;
    /* The loops: loops[0] is the core. nhomes: home loops with Redis
     * behind (at most PC_LOOPS_MAX_HOMES); 0 = memory-only (or one loop),
     * where every loop is home to every key. */
    pc_loop_t **loops; /* [1 + nworkers] */
    size_t nworkers;   /* workers made */
    size_t nloops;     /* loops running: 0 until the server starts */
    size_t nhomes;
    _Atomic int homes;
    /* The stop (pc_server_begin_stop): when it began and when it must be
     * over, in loop ms (0 = not stopping). forced: a loop's drain reached
     * the deadline and cut what was left. */
    _Atomic uint64_t stop_began, stop_deadline;
    _Atomic int forced;
    pc_auth_shared_t auth;
    pc_sources_t *sources; /* connections and failed HELLOs per address */
    _Atomic uint64_t redis_ids; /* Redis-protocol connections numbered (CLIENT ID) */
    /* The server's homes decision, asked again when something it depends
     * on changed on another loop (a worker took the latest view). */
    void (*recheck)(pc_loop_t *core);
};

/* Runs fn(t, arg) on t's thread, in the order posted. 0, PC_ENOMEM, or
 * PC_ECLOSED once t takes no more calls (then fn never runs). */
int pc_loops_call(pc_loop_t *t, void (*fn)(pc_loop_t *, void *), void *arg);

/* Opens l's call queue (its async handle, counted in l->handles_open);
 * closes it: no more calls are taken, those posted run now, the handle
 * closes (then `closed` runs on it). */
void pc_loops_open_calls(pc_loop_t *l);
void pc_loops_close_calls(pc_loop_t *l, uv_close_cb closed);
/* What is left in the queue at free (reported, never run). */
void pc_loops_free_calls(pc_loop_t *l);

/* A worker is busy (keystates alive, a dispatch under way): the core's
 * drain waits for it. No-op on the core. */
void pc_loops_enter(pc_loop_t *l);
void pc_loops_leave(pc_loop_t *l);

/* Are homes on (and is there more than one loop)? */
int pc_loops_homes_on(const pc_loop_t *l);

/* The loop a key's Redis traffic belongs to while homes are on. */
size_t pc_loops_home_of(const pc_shared_t *sh, const uint8_t *k, size_t n);

/* The home loop of a slot as seen from loop l: on a memory-only node, l. */
size_t pc_loops_home_for(const pc_loop_t *l, uint32_t slot);

/* While homes are on, is this key's Redis traffic another loop's? Then a
 * read of it here is passed on, never cached (the home's writes travel on
 * another Redis connection, so this read's place among them is unknown). */
int pc_loops_home_foreign(const pc_loop_t *l, const uint8_t *k, size_t n);

/* On the core: homes off, and nothing read on the core until every
 * worker is idle (the drain; l->draining meanwhile). */
void pc_loops_homes_off(pc_loop_t *core);

/* On the core: homes on (the caller checked it may). */
void pc_loops_homes_on_now(pc_loop_t *core);

/* The drain timer (l->drain_timer, initialised by the server). */
void pc_loops_init_drain(pc_loop_t *core);

#endif
