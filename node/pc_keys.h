/*
 * pc_keys.h -- key operations served on this loop: what is in flight to
 * Redis per key (the keystate table: read coalescing, writes in flight,
 * deferred compare-and-set), store lookups valid for this node's
 * ownership, read-through, and the GET answers. Writes are pc_write.h;
 * where a request is served is decided before it gets here (pc_route.h).
 *
 * Ordering argument: all commands for a key go over one Redis connection
 * (its home loop's; the core's while homes are off, and never both: the
 * switch drains), which answers in order. A read-through that was sent
 * before a write is answered before it, so the store sees fills and
 * writes in the order Redis applied them; a fill only inserts when the
 * key is absent (anything present arrived later and is at least as new).
 * A read that reaches Redis from any other loop is passed on uncached
 * (pc_loops_home_foreign): a safety net for requests that met a homes
 * switch on their way.
 *
 * Thread rules: the loop's thread.
 */
#ifndef PC_KEYS_H
#define PC_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "pc_conn.h"
#include "pc_loop.h"

typedef struct pc_keystate pc_keystate_t;
typedef struct pc_keyreq pc_keyreq_t;

/* One key of a GET (1 slot) or MGET (n slots). */
typedef struct pc_slot {
    struct pc_slot *next_waiter; /* in the keystate's waiters */
    pc_keyreq_t *req;
    uint32_t status; /* PC_ST_* once resolved */
    pc_item_t *item; /* hit: a store reference */
    uint8_t *copy;   /* not cached: an owned copy of the value */
    size_t copy_len;
    uint32_t copy_flags;
    uint64_t copy_version;
    int64_t copy_ttl;
} pc_slot_t;

/* A key operation that waits: pc_req_t and what it needs (pc_req_new
 * with pc_keyreq_new's size; freed with the request). */
struct pc_keyreq {
    pc_req_t req;
    /* writes (pc_write.c); a forwarded GET keeps its key here too */
    pc_keystate_t *ks;
    pc_keyreq_t *next_deferred;
    uint8_t *key; /* key + value copy, one allocation */
    uint32_t klen;
    uint8_t *val;
    uint32_t vlen;
    uint64_t ttl_ms;
    uint32_t flags;
    uint32_t cond;
    uint64_t cas;
    uint64_t until_ms; /* writes: a forwarded write's deadline (wall ms), 0 = none */
    uint32_t nslots;
    pc_slot_t slots[];
};

/* Per-key state of what is in flight to Redis. Lives only while
 * something is. */
struct pc_keystate {
    pc_keystate_t *hnext;
    pc_loop_t *loop;
    uint64_t hash;
    int fetching;
    int nocache; /* the read in flight is not to be cached (homed elsewhere) */
    int foreign; /* the core: counted in pc_keys_foreign */
    pc_slot_t *waiters, *waiters_tail;
    unsigned pending_writes;
    pc_keyreq_t *deferred, *deferred_tail;
    uint32_t klen;
    uint8_t key[];
};

/* The loop's table (l->keys). 0 or PC_ENOMEM. */
int pc_keys_new(pc_loop_t *l);
void pc_keys_free(pc_loop_t *l);

/* Keys with something in flight; of those, on the core, keys homed on
 * another loop (homes stay off until that is 0). */
size_t pc_keys_count(const pc_loop_t *l);
size_t pc_keys_foreign(const pc_loop_t *l);

/* The keystate of a key, made if absent (a worker counts itself busy
 * while one lives: pc_loops_enter); NULL when out of memory. Released
 * (freed once nothing is in flight) with pc_keys_state_release. */
pc_keystate_t *pc_keys_state(pc_loop_t *l, const uint8_t *k, size_t n);
void pc_keys_state_release(pc_loop_t *l, pc_keystate_t *ks);

/* A request of key operations with n slots, queued on c (see pc_req_new);
 * NULL when out of memory. */
pc_keyreq_t *pc_keyreq_new(pc_conn_t *c, uint32_t op, uint64_t id, uint32_t nslots);

/* The same, keeping its own copy of rq's key (r->key, r->klen) -- and of
 * a SET's value (r->val, r->vlen) with `value` -- for after the frame
 * buffer has moved on. Out of memory: answers INTERNAL and returns NULL. */
pc_keyreq_t *pc_keyreq_copy(pc_conn_t *c, const pc_request_t *rq, uint32_t nslots, int value);

/* The next version of this node's clock. */
uint64_t pc_keys_version(pc_loop_t *l);

/* A key is gone here: drop our copy and remember it (a tombstone). */
void pc_keys_drop(pc_loop_t *l, const uint8_t *k, size_t n);

/* GET of a key this node owns: a hit (allocation-free when nothing is
 * queued ahead), or a read through Redis (coalesced per key). */
void pc_keys_get(pc_conn_t *c, const pc_request_t *rq);

/* GET of a key this node does not own, served here: a replica's copy,
 * or a read from Redis that is not cached. One that said `here` counts in
 * here_reads as well as not_owner_reads. */
void pc_keys_get_here(pc_conn_t *c, const pc_request_t *rq);

/* Answers a GET with a valid hit in the store, if there is one, without
 * counting a miss. 1 = answered. */
int pc_keys_hit(pc_conn_t *c, const pc_request_t *rq);

/* A worker while homes are off on a memory-only node (PC_ROUTE_LOCAL):
 * GET and MGET from the store by the gate. 0 = not here (a copy too old
 * for the gate, a slot not ours): relay it. */
int pc_keys_local_get(pc_conn_t *c, const pc_request_t *rq);

/* The partition lease ran out (pc_loops.h lease_until, by this loop's clock) and Redis is
 * behind: no cached copy is served (a lookup finds nothing, so the read
 * goes to Redis) and no write is taken (pc_write). Any loop. */
int pc_keys_cut_off(const pc_loop_t *l);
int pc_keys_local_mget(pc_conn_t *c, const pc_request_t *rq);

/* ---- the slots of waiting requests (pc_mget, pc_forward) ---------------- */

/* Look up one key as its owner: a valid hit, else a read through Redis
 * that the slot waits on (r->req.waiting counts it). */
void pc_keys_slot_lookup(pc_conn_t *c, pc_slot_t *sl, const pc_bytes_t *key);

/* The lookup of an MGET key homed on another loop while homes are on: a
 * valid hit (1), else nothing done and no miss counted (0). */
int pc_keys_slot_hit(pc_conn_t *c, pc_slot_t *sl, const pc_bytes_t *key);

/* A slot's key read through here (its miss). */
void pc_keys_slot_miss(pc_conn_t *c, pc_slot_t *sl, const pc_bytes_t *key);

/* A key this node does not own, served here (see pc_keys_get_here). */
void pc_keys_slot_here(pc_conn_t *c, pc_slot_t *sl, const pc_bytes_t *key);

/* A slot's entry answered elsewhere (a member, another loop): its value
 * copied, the answer it came in being transient. */
void pc_keys_slot_take(pc_slot_t *sl, const pc_entry_t *e);

/* One of the request's callbacks came: when it was the last, the answer
 * is encoded and sent (or dropped, if the client left). */
void pc_keys_slot_resolved(pc_slot_t *sl);

/*
 * The MGET answer within max_frame, pure: entries that would push it past
 * become TOO_LARGE one by one, so the client can fetch them alone. Every
 * entry takes at least its short form whatever becomes of it, so that is
 * set aside for all of them first, and only hits draw on what is left.
 */
void pc_keys_mget_fit(pc_entry_t *entries, uint32_t n, uint32_t max_frame);

#endif
