/*
 * pc_evict.h -- the store's eviction policies (pc_store.h): which item of
 * a full shard goes. LRU keeps one list in order of use; S3-FIFO, the
 * default, keeps a small and a main FIFO queue and a ghost of the hashes
 * recently evicted from small. docs/STORE.md §4 describes both.
 *
 * One pc_evict_t per shard, embedded in the shard (node/pc_store_int.h)
 * and zeroed with it. Its queues link the shard's items through the
 * items' own prev/next fields and keep the policy's per-item state in
 * their `meta` byte: an item is on exactly one queue from pc_evict_push()
 * until pc_evict_remove(). Queues count items and charged bytes (key +
 * value + PC_STORE_ITEM_OVERHEAD).
 *
 * Pure: no I/O, no clock, no randomness. Thread rules: none of its own;
 * the store calls every function under the shard's lock. Errors: none.
 * The ghost's slots are allocated as the main queue grows; an allocation
 * that fails only costs hit ratio (the ghost is advice), so no function
 * fails. pc_evict_free() gives the slots back.
 *
 * The policy is not stored here but passed in, because the store keeps it
 * on the shard's read-mostly cache line (docs/STORE.md §2).
 */
#ifndef PC_EVICT_H
#define PC_EVICT_H

#include <stddef.h>
#include <stdint.h>

#include "pc_store.h"

/* A doubly linked queue; head is the newest item, tail the oldest. */
struct pc_evict_queue {
    pc_item_t *head;
    pc_item_t *tail;
    size_t items;
    size_t bytes; /* charged bytes of the items in it */
};

/*
 * The ghost remembers the hashes of items recently evicted from the small
 * queue, so that a key coming back soon after is admitted straight to main.
 *
 * It is a set-associative table of 32-bit slots, GHOST_WAYS per bucket:
 * each slot holds a 24-bit fingerprint of the hash and the 8-bit epoch it
 * was added in. Epochs advance every window/GHOST_EPOCHS insertions, and a
 * slot is live while it is less than GHOST_EPOCHS epochs old, so the ghost
 * answers "was this evicted within the last ~window evictions?" -- a FIFO
 * with quarter-window granularity -- with O(1) insert, lookup and no
 * deletion sweep: stale slots are simply reused. A full bucket overwrites
 * its oldest slot, which only shortens that entry's life. The window is the
 * number of items in the main queue (as in the S3-FIFO paper); the table is
 * reallocated, forgetting its contents, only when the window outgrows it,
 * which in practice happens while the cache warms up.
 */
struct pc_evict_ghost {
    uint32_t *slot;
    size_t nslots;   /* power of two, >= GHOST_WAYS; 0 before first use */
    size_t inserts;  /* insertions in the current epoch */
    uint8_t epoch;
};

/* One shard's eviction state. Fields are private to pc_evict.c. */
typedef struct pc_evict {
    struct pc_evict_queue q[2]; /* S3-FIFO small and main; LRU uses small */
    struct pc_evict_ghost ghost;
} pc_evict_t;

/* Bytes a shard is charged for its policy before any item: the ghost's
 * minimum under S3-FIFO, nothing under LRU. */
size_t pc_evict_fixed(pc_evict_policy_t policy);

/*
 * The queue a new key's item goes on (for pc_evict_push): S3-FIFO's main
 * if the ghost remembers `hash`, which it then forgets, else small.
 */
int pc_evict_admit(pc_evict_t *ev, pc_evict_policy_t policy, uint32_t hash);

/*
 * The queue for `it`, which replaces `old` under the same key (for
 * pc_evict_push): old's, and `it` takes over old's S3-FIFO count. `it`
 * is not on a queue yet; `old` still is.
 */
int pc_evict_replace(pc_item_t *it, const pc_item_t *old);

/* Puts `it` at the head of `queue`, a value from admit() or replace(). */
void pc_evict_push(pc_evict_t *ev, pc_item_t *it, int queue);

/* Takes `it` off its queue. */
void pc_evict_remove(pc_evict_t *ev, pc_item_t *it);

/* Records a hit on `it` (a get(), not a peek()). */
void pc_evict_hit(pc_evict_t *ev, pc_evict_policy_t policy, pc_item_t *it);

/*
 * The item to evict next, or NULL if the queues are empty. It is still on
 * its queue: the caller removes it (pc_evict_remove) and frees it. Under
 * S3-FIFO, finding it may move other items between the queues, and a
 * victim taken from small is remembered in the ghost. `small_target` is
 * the charged bytes small may hold before it is drained first.
 */
pc_item_t *pc_evict_victim(pc_evict_t *ev, pc_evict_policy_t policy, size_t small_target);

/* Frees the ghost's slots. The queues must be given up by the caller
 * (their items belong to the shard). */
void pc_evict_free(pc_evict_t *ev);

/*
 * Consistency check for pc_store_verify(): links, each item's queue bit,
 * item and byte counts, and under LRU an empty main queue and no
 * per-item state. 0 with the items and charged bytes of both queues
 * added up in *items and *bytes, or PC_EINTERNAL.
 */
int pc_evict_verify(const pc_evict_t *ev, pc_evict_policy_t policy, size_t *items,
                    size_t *bytes);

#endif
