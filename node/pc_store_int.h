/*
 * pc_store_int.h -- the store's private layouts (items, shards, the
 * store) and the helpers on them that more than one of its files needs.
 * Shared by the files of the store only: pc_store.c, pc_store_scan.c and
 * pc_evict.c. Nothing else may include it; the store's contract is
 * pc_store.h.
 */
#ifndef PC_STORE_INT_H
#define PC_STORE_INT_H

#include <pthread.h>
#include <sodium.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_evict.h"
#include "pc_store.h"

/*
 * Item layout: one malloc() block, header then key then value.
 *
 *   off size field
 *     0   8  hnext    hash-chain link
 *     8   8  prev     eviction queue links (LRU list or S3-FIFO queue)
 *    16   8  next
 *    24   8  version  replication version (set IF_NEWER, IF_VERSION compare it)
 *    32   8  expire   absolute expiry on the caller's clock, 0 = never
 *    40   4  refs     the table's reference + one per reader
 *    44   4  hash     low 32 bits of the SipHash: bucket index, ghost tag
 *    48   4  flags    opaque to the store
 *    52   4  klen
 *    56   4  vlen
 *    60   4  epoch    the store's epoch when the item was linked
 *    64   1  meta     S3-FIFO frequency (2 bits) and queue (1 bit)
 *    65      data     klen key bytes, then vlen value bytes
 *
 * `epoch` sits in the 4 bytes where `meta` was, and `meta` moves behind
 * it: a 4-byte field after the 60 bytes of 8- and 4-byte fields needs no
 * padding, and `meta` and the data need no alignment, so the header grows
 * by exactly the 4 bytes added (61 -> 65). No existing field can absorb
 * it: the epoch is part of the contract as 32 bits, and `meta` cannot
 * share a word that readers load without the lock.
 *
 * Everything but `expire` and `meta` is written once before the item is
 * published and never again, which is what lets readers use an item they
 * hold a reference to without a lock. `expire` is the one field touch()
 * changes in place (copying a possibly large value to extend a TTL would be
 * absurd); it is atomic so a reader sees the old or the new value, never a
 * torn one. `meta` is only read and written under the shard lock, and
 * readers never look at it. The hash is stored so a resize and a ghost
 * insertion never need to run SipHash again.
 */
struct pc_item {
    pc_item_t *hnext;
    pc_item_t *prev;
    pc_item_t *next;
    uint64_t version;
    _Atomic uint64_t expire;
    atomic_uint refs;
    uint32_t hash;
    uint32_t flags;
    uint32_t klen;
    uint32_t vlen;
    uint32_t epoch;
    uint8_t meta;
    uint8_t data[];
};

#define ITEM_HDR offsetof(struct pc_item, data)

_Static_assert(sizeof(atomic_uint) == 4, "refs is expected to be 4 bytes");
_Static_assert(sizeof(_Atomic uint64_t) == 8, "expire is expected to be 8 bytes");
_Static_assert(offsetof(struct pc_item, data) == 65, "item header layout changed: update "
                                                      "the table above and docs/STORE.md");

/*
 * What one item costs beyond its key and value, in bytes. Each term is an
 * estimate of real memory, not a guess rounded in our favour:
 *
 *   ITEM_HDR     65  the header above.
 *   MALLOC_EST   16  glibc keeps an 8-byte size word per chunk and rounds
 *                    chunks to 16 bytes: 8 + 0..15 bytes, 15.5 on average
 *                    for sizes spread evenly.
 *   SLOT_SHARE   11  one 8-byte bucket pointer per bucket; a table doubles
 *                    when the load passes 1.5, so right after a doubling it
 *                    holds 8 / 0.75 = 10.7 bytes of buckets per item (the
 *                    worst steady state), 5.3 just before the next one.
 *   GHOST_SHARE   8  S3-FIFO's ghost: 4-byte slots, at most two per item of
 *                    the main queue (its size is rounded up to a power of
 *                    two). Charged under LRU too, so one constant holds.
 *
 * Total 100 (96 before the epoch: only ITEM_HDR depends on the header).
 * Not covered: the transient old bucket array while a shard is mid-resize
 * (8 bytes per item of that one shard, freed within a few hundred
 * operations on the shard) and tables that stay large after most items
 * are deleted (tables never shrink, as in memcached).
 */
#define MALLOC_EST 16u
#define SLOT_SHARE 11u
#define GHOST_SHARE 8u
#define ITEM_OVERHEAD (ITEM_HDR + MALLOC_EST + SLOT_SHARE + GHOST_SHARE)

static inline size_t item_charge(const pc_item_t *it)
{
    return (size_t)it->klen + it->vlen + ITEM_OVERHEAD;
}

/*
 * One shard: its own lock, table, queues, budget and counters.
 *
 * Fields are grouped by who writes them, one group per cache line, because
 * on two cores the cost of a call is mostly lines moving between caches:
 *   line 0  the lock and the counters every get() bumps -- written by
 *           every call, so it moves once per call and carries both;
 *   line 1  what every lookup reads but only a resize writes -- stays
 *           shared in every core's cache instead of following the lock;
 *   rest    what set/del/eviction write (and LRU hits: its queue).
 * The alignment also keeps neighbouring shards off each other's lines.
 *
 * Memory is budgeted per shard (limit / shards), not globally: an insert
 * only ever evicts from its own shard, under the one lock it already holds,
 * and never needs a global counter or a second lock. The price is that the
 * largest item is about limit / shards, and a shard may evict while another
 * has room; with keys spread by SipHash the shards fill evenly, so the
 * waste is a few per cent at most.
 */
struct shard {
    alignas(64) pthread_mutex_t lock;
    uint64_t hits, misses;

    alignas(64) pc_item_t **tab; /* current table */
    size_t nb;                   /* its bucket count, a power of two */
    pc_item_t **old;             /* previous table while resizing, else NULL */
    size_t old_nb;               /* = nb / 2 while resizing */
    size_t migrate;              /* old buckets below this are moved */
    pc_evict_policy_t policy;
    size_t budget;               /* limit / shards */
    size_t small_target;         /* S3-FIFO: 10% of the budget left for items */

    alignas(64) size_t items;
    size_t bytes; /* charged bytes, including the fixed share */
    pc_evict_t evict; /* the queues and the ghost */
    uint64_t sets, deletes, evictions, expirations;
};

_Static_assert(offsetof(struct shard, tab) == 64 && offsetof(struct shard, items) == 128,
               "shard fields are grouped by cache line: see the comment above");

struct pc_store {
    struct shard *shards;
    unsigned nshards;
    uint32_t shard_mask;
    size_t limit;
    size_t fixed;       /* bytes charged to each shard at creation */
    size_t item_budget; /* budget - fixed: room for items in one shard */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    /*
     * Read by every set(), written only by epoch_bump() (once per ring
     * change), so it belongs on this read-mostly line.
     */
    _Atomic uint32_t epoch;
    unsigned shard_bits; /* log2(nshards), for scan() positions */
    /*
     * sweep() cursor; sweep_lock serializes sweepers only, never readers.
     * On its own line: a sweep writing here must not evict the fields
     * above, which every call reads, from the other cores' caches.
     */
    alignas(64) pthread_mutex_t sweep_lock;
    unsigned sweep_shard;
    size_t sweep_bucket;
    size_t sweep_pos;
};

_Static_assert(offsetof(struct pc_store, sweep_lock) == 64,
               "the fields every call reads, epoch included, share the store's first line");

/* Live while now < expire: at now == expire the item is gone. */
static inline bool item_expired(const pc_item_t *it, uint64_t now_ms)
{
    uint64_t exp = atomic_load_explicit(&it->expire, memory_order_relaxed);
    return exp != 0 && now_ms >= exp;
}

_Static_assert(crypto_shorthash_KEYBYTES == 16, "hash_key is documented as 16 bytes");
_Static_assert(crypto_shorthash_BYTES == 8, "the hash is used as a 64-bit value");

/*
 * SipHash-2-4 of the key under the store's secret key, read little-endian
 * so placement is the same on every host. Bits 32..63 pick the shard and
 * bits 0..31 the bucket and ghost slot, so the two never correlate.
 */
static inline uint64_t key_hash(const pc_store_t *s, const void *key, size_t klen)
{
    static const unsigned char empty[1] = {0};
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h = 0;

    crypto_shorthash(out, klen ? key : empty, klen, s->hash_key);
    for (unsigned i = 0; i < sizeof out; i++)
        h |= (uint64_t)out[i] << (8 * i);
    return h;
}

#endif
