/*
 * pc_view.h -- the ring as each loop sees it.
 *
 * The core asks the membership (pc_cluster) itself. A worker never
 * touches the membership: on each ring change the core builds a view --
 * a reference to the immutable ring, this node's index in it, the
 * members' addresses, and a suspect flag per member that the core
 * refreshes every tick -- and posts it to every worker, which swaps it in
 * and acknowledges. Homes stay off until every worker has (the server
 * asks pc_view_settled), so no worker routes by an older ring while it
 * serves keys alone. A view is freed by whichever loop drops the last
 * reference. A worker without a view, like a node without a cluster,
 * owns everything.
 *
 * The core also publishes the *gate* in pc_shared_t (pc_view_publish):
 * whether the node is alone, the least epoch an item needs to be served
 * in each slot this node owns, the settle window's end, and the ring's
 * fingerprint. Workers read it with relaxed loads: a worker acting on a
 * view a moment old serves what the core would have served a moment
 * earlier.
 *
 * Thread rules: pc_view_publish, pc_view_refresh and pc_view_settled on
 * the core's thread; the accessors on the loop's own.
 */
#ifndef PC_VIEW_H
#define PC_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "pc_loop.h"
#include "pc_route.h"

typedef struct pc_view pc_view_t;

/* ---- the ring this loop routes by ----------------------------------------- */

/* Does this loop route by a ring at all? */
int pc_view_clustered(const pc_loop_t *l);
/* This node's index in the ring (-1: not a member); the address and
 * suspicion of member i. Only while clustered. */
long pc_view_self(const pc_loop_t *l);
const char *pc_view_addr(const pc_loop_t *l, size_t i);
int pc_view_suspect(const pc_loop_t *l, size_t i);

/* A key's (or a slot's) placement on this loop's ring, and this node's
 * role in it. */
void pc_view_route(const pc_loop_t *l, const uint8_t *k, size_t n, pc_route_t *rt);
void pc_view_place(const pc_loop_t *l, uint32_t slot, pc_route_t *rt);

/* The member a request for rt should go to (-1 = serve it here); see
 * pc_route_target. */
long pc_view_target(const pc_loop_t *l, const pc_route_t *rt, int read);

/* ---- the gate ------------------------------------------------------------- */

/* Does this node own the slot, by the core's gate? (Not when alone: then
 * it owns everything, whatever the gate says.) */
int pc_view_owns(const pc_shared_t *sh, uint32_t slot);

/* The least epoch an item of this key must have to be served here, by
 * the gate; PC_GATE_NONE if this node does not own it. *alone: the node
 * is the only member. */
uint32_t pc_view_gate(const pc_loop_t *l, const uint8_t *k, size_t n, int *alone);

/* Is this item of a key we own new enough to serve (for every slot, or
 * for its own)? gate and alone as pc_view_gate gave them. */
int pc_view_valid(const pc_loop_t *l, const pc_item_t *it, const uint8_t *k, size_t n,
                  uint32_t gate, int alone);

/* ---- the core's side -------------------------------------------------------- */

/*
 * On the core, at a ring change to `nw`, with `self` its index there and
 * `roles` its role per slot on it (NULL: asked of the ring): publishes
 * the gate (the owner slots' epochs from slot_epoch[], epoch_min, the
 * settle window's end), the fingerprint, and a new view for the workers.
 */
void pc_view_publish(pc_loop_t *core, const pc_ring_t *nw, long self, const uint8_t *roles,
                     const uint32_t *slot_epoch, uint32_t epoch_min, uint64_t settle_until);

/* On the core, every tick: suspicion changes without a ring change; a
 * member's address may too (then the workers get a new view). */
void pc_view_refresh(pc_loop_t *core);

/* On the core: this node is in the current ring and every worker holds a
 * view of it (with no workers, the ring alone decides), or there is no
 * cluster. */
int pc_view_settled(const pc_loop_t *core);

/* Drops the loop's reference to its view (at free). */
void pc_view_drop(pc_loop_t *l);

#endif
