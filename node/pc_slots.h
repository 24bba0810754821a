/*
 * pc_slots.h -- the core's per-slot state of ring changes
 * (docs/CONSISTENCY.md): when this node gained each slot, what a copy
 * must be newer than to be served there, the settle window that caps the
 * expiry of what is stored in a slot just gained, and tombstones of keys
 * deleted during it.
 *
 * Per ring slot, the store epoch at which this node last gained the slot
 * (became its owner, or a replica from nothing): items stored before that
 * are not served, since they predate our ownership and may have missed
 * writes made elsewhere meanwhile. And when (loop ms): entries stored in
 * a slot during its first settle_ms expire at the latest 2 x settle_ms
 * after the gain, since a node still on the old ring may write Redis
 * behind our back until the new ring reaches it.
 *
 * Only the core of a node in a cluster has this state (l->slots); every
 * function here is a no-op, or answers "nothing to say", without it.
 * Workers serve by the gate the core derives from it (pc_view.h).
 *
 * Thread rules: the core's thread.
 */
#ifndef PC_SLOTS_H
#define PC_SLOTS_H

#include <stdint.h>

#include "pc_loop.h"
#include "pc_ring.h"

typedef struct pc_slots pc_slots_t;

/* What a ring change does to one slot of this node (pc_slots_diff). */
#define PC_SLOT_GAINED 1u     /* serve only copies stored from now on */
#define PC_SLOT_HAND_OFF 2u   /* no longer its owner: hand its keys over */
#define PC_SLOT_PURGE 4u      /* a replica no more: drop its copies */
/* HAND_OFF and PURGE never come together: an owner that loses every role
 * in a slot gets HAND_OFF alone, and the hand-off plan (pc_handoff_plan)
 * streams its copies to the new owner, or drops them when it sends
 * nothing. Copies streamed stay until evicted, never served again: a slot
 * gained later is a new epoch (pc_slots_stale). */

/*
 * The slot diff of a ring change, for one slot, pure: `ro` and `rn` are
 * this node's roles in it on the old and new ring (PC_ROLE_*); `joining`
 * = this node was alone and now has company (every slot it keeps is
 * gained: while alone it owned them only because it knew of nobody
 * else); `memory_only` = no Redis behind (a promoted replica keeps its
 * copy, all there is). A replica promoted to owner with Redis behind
 * gains the slot (its copy may lack the dead owner's last writes).
 * Returns PC_SLOT_* flags.
 */
unsigned pc_slots_diff(unsigned ro, unsigned rn, int joining, int memory_only);

/* The core's state, made only in a cluster (l->slots). 0 or PC_ENOMEM. */
int pc_slots_new(pc_loop_t *core);
void pc_slots_free(pc_loop_t *core);

/*
 * The core at a ring change from `old` (NULL: the first ring) to `nw`:
 * bumps the store's epoch for the slots gained, notes when, and logs the
 * change. `rold`, `rnew`: this node's roles per slot on each ring
 * (pc_ring_roles), or NULL to ask the rings slot by slot. Out: `lost`
 * (PC_RING_SLOTS bytes, or NULL) gets PC_SLOT_HAND_OFF / PC_SLOT_PURGE
 * per slot (0 elsewhere); returns how many slots were lost.
 */
uint32_t pc_slots_ring_changed(pc_loop_t *core, const pc_ring_t *old, const pc_ring_t *nw,
                               const uint8_t *rold, const uint8_t *rnew, uint8_t *lost);

/*
 * The core, after a partition healed (pc_cluster_regain_cb): others
 * owned its keys meanwhile and may have written Redis, so
 * every slot it holds a role in (roles[], PC_RING_SLOTS bytes, on the
 * current ring) is gained again, as on a join: copies stored before are
 * not served, and new ones are capped by the settle window. Returns how
 * many slots. Not with memory only (the copies are all there is).
 */
uint32_t pc_slots_regain(pc_loop_t *core, const uint8_t *roles);

/* Is `it`, an item of a key in `slot` (UINT32_MAX: compute it from k),
 * from before this node gained the slot? Then it must not be served. */
int pc_slots_stale(const pc_loop_t *l, const pc_item_t *it, const uint8_t *k, size_t n,
                   uint32_t slot);

/* The expiry an entry of this slot (or key) stored now may have: capped
 * within a settle window (counted in settle_capped). */
uint64_t pc_slots_cap(pc_loop_t *l, uint32_t slot, uint64_t expire);
uint64_t pc_slots_cap_key(pc_loop_t *l, const uint8_t *k, size_t n, uint64_t expire);

/* Tombstones: keys deleted here in a settling slot. A hand-off entry for
 * one of them is older than the delete and must not bring it back. The
 * table is a fixed-size cache: when a probe run is full the oldest entry
 * goes, which can only let an old hand-off entry back in, for a key the
 * settle window's expiry cap then bounds like any other. */
void pc_slots_tomb_add(pc_loop_t *l, const uint8_t *k, size_t n);
int pc_slots_tomb_has(pc_loop_t *l, const uint8_t *k, size_t n);

/* For the view the workers serve by: the per-slot epochs (NULL without
 * state), the newest of them, and the end of the settle window of the
 * latest gain (0: none). */
const uint32_t *pc_slots_epochs(const pc_loop_t *core);
uint32_t pc_slots_epoch_max(const pc_loop_t *core);
uint64_t pc_slots_settle_until(const pc_loop_t *core);

/* No ring change within a settle window (homes may turn on). */
int pc_slots_settled(const pc_loop_t *core, uint64_t now);

#endif
