/*
 * pc_handoff.h -- when this node stops owning slots (a member joined, or
 * we left), it streams the keys it holds in them to their new owners, in
 * REPLICATE batches (mode HANDOFF), a few in flight and at most
 * --handoff-rate bytes per second, so the new owner starts warm instead
 * of reading every moved key from Redis; copies in slots this node keeps
 * no place in are dropped. One scan of the store finds them. A ring
 * change during a hand-off re-aims the slots not yet streamed and
 * restarts the scan; entries sent twice are refused as not newer. A
 * receiver that has not heard of the new ring yet answers RETRY, and the
 * batch is sent again shortly.
 *
 * The core's, in a cluster (l->handoff); without it every function is a
 * no-op that reports "no hand-off".
 *
 * Thread rules: the core loop's thread.
 */
#ifndef PC_HANDOFF_H
#define PC_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "pc_loop.h"
#include "pc_ring.h"

/* target[] of a slot whose copies are dropped, not sent. */
#define PC_HANDOFF_PURGE 0xFFFFu

/*
 * The plan of a hand-off, pure: for each slot, where its keys go on ring
 * `nw` (self = this node's index there). `lost` (PC_RING_SLOTS) has
 * PC_SLOT_HAND_OFF / PC_SLOT_PURGE for the slots this change took;
 * `prev` (or NULL) is the plan of a hand-off still running, whose slots
 * not yet streamed are re-aimed. With `send` 0 (no rate: nothing is
 * streamed) only purges are planned. Out: target[slot] (PC_RING_SLOTS) =
 * 0 (nothing to do), PC_HANDOFF_PURGE (drop its copies: this node keeps
 * no place in it), or 1 + the index of its destination; dest[member]
 * (pc_ring_size(nw) entries, zeroed by the caller) = 1 + the destination
 * index of that ring member, 0 if it receives nothing. Returns the number
 * of destinations; *npurge the slots to purge.
 */
size_t pc_handoff_plan(const pc_ring_t *nw, long self, const uint8_t *lost, const uint16_t *prev,
                       int send, uint16_t *target, uint32_t *dest, size_t *npurge);

/* The core's state (made in a cluster). bytes_per_s: --handoff-rate
 * (0 = drop moved keys, stream nothing). 0 or PC_ENOMEM. */
int pc_handoff_new(pc_loop_t *core, uint64_t bytes_per_s);
void pc_handoff_free(pc_loop_t *core);

/* Starts its timer on the core's loop (counted in handles_open); closes
 * it, `closed` running on it. */
void pc_handoff_open(pc_loop_t *core);
void pc_handoff_close(pc_loop_t *core, uv_close_cb closed);

/* A ring change to `nw` took the slots in `lost` (pc_slots_ring_changed):
 * (re)starts the hand-off. */
void pc_handoff_ring_changed(pc_loop_t *core, const pc_ring_t *nw, const uint8_t *lost);

/* Calls done(arg) once no hand-off runs (at once if none does); only the
 * latest caller is remembered. A leave's hand-off gives up at half of
 * --shutdown-timeout from the stop's start. */
void pc_handoff_after(pc_loop_t *core, void (*done)(void *), void *arg);

/* A hand-off is planned or running (STATS handoff_active). */
int pc_handoff_active(const pc_loop_t *l);

/* Nothing planned, in flight or to send again (homes may turn on). */
int pc_handoff_idle(const pc_loop_t *l);

#endif
