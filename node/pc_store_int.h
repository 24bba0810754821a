/*
 * pc_store_int.h -- the store's private layouts, shared by the files of
 * the store only: pc_store.c and pc_evict.c. Nothing else may include it;
 * the store's contract is pc_store.h.
 */
#ifndef PC_STORE_INT_H
#define PC_STORE_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
