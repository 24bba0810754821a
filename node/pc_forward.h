/*
 * pc_forward.h -- a client's request for another member's key, sent to
 * that member as a FORWARD over this loop's peer pool; its answer goes
 * back to the client as it came. A read whose owner cannot be reached is
 * served here instead (pc_keys_slot_here); a write is answered
 * BACKEND_UNAVAILABLE (it may have been applied) or RETRY (it never left).
 *
 * Thread rules: the loop's thread.
 */
#ifndef PC_FORWARD_H
#define PC_FORWARD_H

#include "pc_conn.h"

/*
 * How far the members' wall clocks may disagree, in ms: an owner applies
 * a forwarded write only until the FORWARD's deadline less this
 * (docs/CONSISTENCY.md §1).
 */
#define PC_FORWARD_CLOCK_SKEW_MS 100


/* Sends the single-key request being dispatched on c (its frame body,
 * c->cur_body) to ring member `target`, as it came. */
void pc_forward_request(pc_conn_t *c, const pc_request_t *rq, long target);

#endif
