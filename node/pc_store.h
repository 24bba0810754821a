/*
 * pc_store.h -- the node's in-memory store: a sharded hash table of
 * immutable, refcounted items under a hard memory limit.
 *
 * Pure: no I/O, no clock reads. Every call that needs the time takes
 * `now_ms`, a monotonic millisecond clock chosen by the caller; expiry
 * times are on that same clock.
 *
 * Items are immutable once stored. A set() builds a new item and swaps it
 * in; readers that hold a reference to the old item keep reading it safely
 * until they release it. get() returns a reference the caller must give
 * back with pc_store_release(); holding it is cheap (no copy of the value).
 *
 * Memory: the limit counts key bytes + value bytes + PC_STORE_ITEM_OVERHEAD
 * per item (+ the hash tables, counted at creation: each shard's struct and
 * initial table are charged up front, and the slots a growing table adds
 * are part of the per-item overhead; docs/STORE.md). When an insert would
 * pass the limit, items are evicted by the configured policy until it fits.
 * Items still referenced by readers are unlinked at once but freed when
 * the last reference is released (until then they are no longer counted).
 *
 * The limit is split evenly: each shard gets limit / shards bytes, minus a
 * fixed share for its own structures, and evicts only its own items. So
 * an item can be at most about limit / shards bytes (see PC_ETOOBIG), and
 * stats.bytes <= limit always holds.
 *
 * Expiry: an item with expire_ms E is live while now_ms < E; from
 * now_ms == E on it is gone.
 *
 * Keys are hashed with SipHash-2-4 (libsodium's crypto_shorthash) under a
 * per-store random key, so remote clients cannot engineer collisions.
 *
 * Epochs: the store keeps a 32-bit counter, starting at 1, that the node
 * bumps when it gains a ring slot; every item records the counter's value
 * when it was stored, so copies stored before the bump can be told apart
 * from copies stored after it (pc_store_epoch_bump, pc_item_epoch).
 *
 * Thread rules: every function is thread-safe; each shard has its own
 * mutex, so calls on keys in different shards do not contend.
 */
#ifndef PC_STORE_H
#define PC_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "pc_error.h"

typedef struct pc_store pc_store_t;
typedef struct pc_item pc_item_t;

typedef enum pc_evict_policy {
    PC_EVICT_S3FIFO = 0, /* default: see docs/ARCHITECTURE.md, docs/STORE.md */
    PC_EVICT_LRU = 1,
} pc_evict_policy_t;

typedef struct pc_store_config {
    size_t memory_limit;       /* bytes, > 0 */
    unsigned shards;           /* power of two <= 65536; 0 = default (64) */
    pc_evict_policy_t policy;  /* eviction policy */
    const uint8_t *hash_key;   /* 16 bytes, or NULL = random */
} pc_store_config_t;

typedef struct pc_store_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t sets;
    uint64_t deletes;
    uint64_t evictions;
    uint64_t expirations;
    uint64_t items;
    uint64_t bytes;        /* counted bytes in use, as the limit counts */
    uint64_t limit;        /* the memory limit */
} pc_store_stats_t;

/* Bytes charged per item beyond its key and value: header, allocator,
 * hash-table slot and ghost share (the breakdown is in pc_store_int.h). */
extern const size_t PC_STORE_ITEM_OVERHEAD;

/*
 * set() modes. The condition is checked under the shard lock, in the same
 * critical section as the store, so it is atomic against every other call
 * on any thread. "Present" means live: an expired entry counts as absent.
 */
#define PC_STORE_SET_ALWAYS 0     /* replace whatever is there */
#define PC_STORE_SET_IF_NEWER 1   /* only if absent or stored version < new */
#define PC_STORE_SET_IF_ABSENT 2  /* only if absent (read-through fills) */
#define PC_STORE_SET_IF_PRESENT 3 /* only if present, whatever its version */
#define PC_STORE_SET_IF_VERSION 4 /* only if present with version == expect
                                   * (compare-and-swap); pc_store_set_if() only */

/*
 * How many shards suit a store of `memory_limit` bytes whose largest item
 * is `max_item` bytes (key + value): the most, up to 64, that still give
 * each shard room for four of the largest items, so that such an item is
 * cached (not refused as too big) and does not flush its shard alone.
 * Always a power of two >= 1.
 */
unsigned pc_store_shards_for(size_t memory_limit, size_t max_item);

/* Creates a store. 0, PC_EINVAL (limit 0, shards not a power of two or
 * over 65536, unknown policy, or limit / shards too small to hold even a
 * shard's own structures), PC_EINTERNAL (libsodium failed to initialize)
 * or PC_ENOMEM. The config is copied; hash_key is read during the call. */
int pc_store_new(const pc_store_config_t *cfg, pc_store_t **out);

/* Frees the store and every item; *s is set to NULL. No item reference may
 * be outstanding. NULL-safe. */
void pc_store_free(pc_store_t **s);

/* The most keys pc_store_prefetch takes at once. */
#define PC_STORE_PREFETCH_MAX 32

/*
 * A hint: these keys will be looked up soon (the GETs of a pipelined batch,
 * before it is served). Their buckets are prefetched, then the first item
 * of each, so that the batch's cache misses overlap instead of coming one
 * lookup after another. Changes nothing and counts nothing; a shard whose
 * lock another thread holds is skipped rather than waited for. Keys past
 * PC_STORE_PREFETCH_MAX are ignored. Any thread.
 */
void pc_store_prefetch(pc_store_t *s, const void *const *keys, const size_t *klens, size_t n);

/*
 * Looks up a key. On a hit returns 0 and a new reference in *out (release
 * it with pc_store_release). An expired item counts as a miss and is
 * removed. PC_ENOTFOUND on a miss. Counts hits and misses.
 */
int pc_store_get(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms,
                 pc_item_t **out);

/* Like get(), but a miss is not counted: for a caller that hands a miss
 * on to another lookup that counts it (a worker loop relaying to the
 * core loop). A hit is counted and promoted as by get(). */
int pc_store_get_hit(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms,
                     pc_item_t **out);

/* Same lookup without touching hit/miss counters or eviction metadata;
 * for condition checks. 0 + reference, or PC_ENOTFOUND. */
int pc_store_peek(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms,
                  pc_item_t **out);

/* Gives back a reference from get()/peek(). NULL-safe. */
void pc_store_release(pc_store_t *s, pc_item_t *it);

/* The same, shaped as a callback that has only the item (a connection's
 * output that refers to its value, pc_conn_answer_ref). Any thread. */
void pc_store_unref(void *item);

/*
 * Stores a copy of key and value, if `mode` allows. expire_ms is an
 * absolute time on the now_ms clock, 0 = never. The stored item gets
 * `version`, whatever the mode (no mode compares it with `expect`).
 * `expect` is read only by PC_STORE_SET_IF_VERSION; every mode is
 * accepted.
 *
 * An expired entry under the same key counts as absent: it is removed and
 * counted as an expiration, whether or not the new item is then stored.
 * A replacement takes the old item's place in the eviction policy.
 *
 * Returns 0 (stored) or:
 *  - PC_EEXISTS: IF_NEWER and the stored version is >= version; IF_ABSENT
 *    and the key is present; IF_VERSION and the stored version != expect;
 *  - PC_ENOTFOUND: IF_PRESENT or IF_VERSION and the key is absent;
 *  - PC_ETOOBIG: the item alone is larger than one shard's budget, i.e.
 *    klen + vlen + PC_STORE_ITEM_OVERHEAD > limit / shards minus the
 *    shard's fixed share; or klen or vlen >= 4 GiB (checked first, before
 *    any condition);
 *  - PC_ENOMEM; PC_EINVAL: NULL pointer with a non-zero length, unknown
 *    mode.
 * Nothing is stored, and the stored item (value, version, flags, expiry,
 * epoch, place in the policy) is left as it was, unless 0 is returned.
 * Only a store counts in stats.sets.
 */
int pc_store_set_if(pc_store_t *s, const void *key, size_t klen, const void *val, size_t vlen,
                    uint32_t flags, uint64_t version, uint64_t expire_ms, int mode,
                    uint64_t expect, uint64_t now_ms);

/*
 * pc_store_set_if() without an expected version, for every mode but
 * PC_STORE_SET_IF_VERSION, which it refuses with PC_EINVAL: a
 * compare-and-swap needs the version the caller read, and 0 is a valid
 * version, so none is assumed. Same returns otherwise.
 */
int pc_store_set(pc_store_t *s, const void *key, size_t klen, const void *val, size_t vlen,
                 uint32_t flags, uint64_t version, uint64_t expire_ms, int mode,
                 uint64_t now_ms);

/* Removes a key. 0 or PC_ENOTFOUND. Counts deletes. */
int pc_store_del(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms);

/*
 * Versioned delete, for replicas: removes the key only if the stored
 * item's version is < `version`, so a delete from the owner never removes
 * a newer value. 0 removed; PC_ENOTFOUND absent or expired (an expired
 * entry is removed and counted as an expiration, as del() does);
 * PC_EEXISTS a version >= `version` is stored, and is kept; PC_EINVAL.
 * Counts a delete only when it removes.
 */
int pc_store_del_if_older(pc_store_t *s, const void *key, size_t klen, uint64_t version,
                          uint64_t now_ms);

/* Sets a new expiry (0 = never) on a live key. 0 or PC_ENOTFOUND. The
 * expiry is the one field of an item that changes in place: a reader
 * holding a reference may see pc_item_expire() change. */
int pc_store_touch(pc_store_t *s, const void *key, size_t klen, uint64_t expire_ms,
                   uint64_t now_ms);

/*
 * Background expiry: examines at most `budget` items, resuming where the
 * previous call stopped, and removes the expired ones. Returns the number
 * removed. Bounded work per call so a caller on an event loop never stalls.
 */
size_t pc_store_sweep(pc_store_t *s, uint64_t now_ms, size_t budget);

/*
 * Visits the store in bounded steps, to stream its keys elsewhere (e.g. to
 * a new owner when the ring changes). Start with *cursor == 0 and call
 * until the cursor comes back to 0.
 *
 * Each call stores up to `max` items in out[] and returns how many: live
 * (unexpired at now_ms) items for which want(arg, key, klen) returned
 * non-zero (want NULL = every item). Each is a new reference: release
 * every one with pc_store_release(). The call advances *cursor, and sets
 * it to 0 once the whole store has been visited. A call may return fewer
 * than `max`, even 0, before the end: it does bounded work (about
 * 16 x max buckets and items, plus the bucket it stops in), so an event
 * loop never stalls on a sparse table. Slots of out[] past the returned
 * count may have been written. max == 0 returns 0 and leaves the cursor;
 * so does a NULL store, cursor or out.
 *
 * Guarantees over one scan (from 0 back to 0):
 *  - every key that is present and live for the whole scan, with want()
 *    true for it, is returned, whatever resizes its shard's table goes
 *    through meanwhile;
 *  - no key is returned twice (the cursor only moves forward through a
 *    fixed order of hash values; no table size enters it);
 *  - a key set, replaced or deleted during the scan may or may not be
 *    returned, and if it is, the item is the one stored at that moment.
 * One exception, which keyed SipHash makes a matter of chance, not of
 * input: if more than `max` keys in one shard share all 64 bits of their
 * hash, a call that starts at them returns `max` of them and skips the
 * rest. For max >= 2 that needs three keys with one 64-bit hash (odds
 * about n^3 / 2^130 for n keys).
 *
 * Nothing else changes: no counter, no eviction metadata, no expiry (an
 * expired item is skipped, not removed). want() runs under a shard lock:
 * it must be pure (no store calls -- they would deadlock -- and no
 * blocking) and may be called more than once for an item. Holds one shard
 * lock at a time; cursors are independent, so scans may run concurrently.
 * A cursor is only meaningful for the store that produced it.
 */
size_t pc_store_scan(pc_store_t *s, uint64_t *cursor, uint64_t now_ms,
                     int (*want)(void *arg, const uint8_t *key, size_t klen), void *arg,
                     pc_item_t **out, size_t max);

/* The store's epoch: 1 at creation, raised only by pc_store_epoch_bump(). */
uint32_t pc_store_epoch(pc_store_t *s);

/*
 * Atomically increments the epoch and returns the new value. An item's
 * epoch is the store's epoch read under its shard lock as set() links the
 * item, i.e. at one moment during that set() call. So, if bump returned e:
 *  - an item stored by a set() that began after the bump returned (on any
 *    thread, ordered after it by the caller's own synchronization) has
 *    epoch >= e;
 *  - an item stored by a set() that returned before the bump began has
 *    epoch < e;
 *  - a set() that overlaps the bump may record either.
 * 32 bits: wraps after 2^32 - 1 bumps, which one per ring change never
 * reaches.
 */
uint32_t pc_store_epoch_bump(pc_store_t *s);

/* Snapshot of the counters (each read under its shard lock). */
void pc_store_stats(pc_store_t *s, pc_store_stats_t *out);

/*
 * Consistency check for tests and debugging: walks every item under each
 * shard's lock in turn and checks the table, the eviction queues and the
 * byte and item counts against each other. O(items), holds one shard lock
 * at a time. 0 and the number of items found in *items (NULL allowed), or
 * PC_EINTERNAL if an invariant is broken.
 */
int pc_store_verify(pc_store_t *s, uint64_t *items);

/* Item accessors: valid while the caller holds the reference. */
const uint8_t *pc_item_key(const pc_item_t *it);
size_t pc_item_klen(const pc_item_t *it);
const uint8_t *pc_item_value(const pc_item_t *it);
size_t pc_item_vlen(const pc_item_t *it);
uint32_t pc_item_flags(const pc_item_t *it);
uint64_t pc_item_version(const pc_item_t *it);
uint64_t pc_item_expire(const pc_item_t *it); /* 0 = never */
/* The store's epoch when the item was stored (set of any mode); touch()
 * keeps it. See pc_store_epoch_bump(). */
uint32_t pc_item_epoch(const pc_item_t *it);

#endif
