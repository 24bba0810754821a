/*
 * pc_dispatch.h -- what a request frame means and who serves it: decodes
 * it, applies the rules of who may ask what (pc_auth), asks the one
 * routing decision (pc_route_decide) with the facts of this loop and the
 * key, and carries it out -- serve here, forward to a member, relay to
 * another loop, or refuse.
 *
 * Lifetimes: a frame body is valid during dispatch only (the shared read
 * buffer moves on, pc_conn.c). What outlives it is copied by whoever
 * keeps it: a FORWARD goes out as a frame copied into the peer pool's
 * queue (from c->cur_body, or encoded from the request when it came
 * without a frame); MGET keys sent to other members are copied
 * with the request; a read-through waits on the keystate's copy of its
 * key; writes copy key and value before they wait on Redis (and hiredis
 * formats its command at once); replication and the hand-off encode into
 * their own buffers; REPLICATE entries and SYNC state are applied before
 * the handler returns.
 *
 * Thread rules: the connection's loop.
 */
#ifndef PC_DISPATCH_H
#define PC_DISPATCH_H

#include "pc_conn.h"
#include "pc_route.h"

/* The conn hook: a request frame arrived on c. */
void pc_dispatch_frame(pc_conn_t *c, const uint8_t *body, uint32_t len);

/* The conn hook ahead: the GETs among the frames a turn is about to serve
 * have their store lookups prefetched (pc_store_prefetch). Looks only at
 * the head of each body; changes nothing. */
void pc_dispatch_ahead(pc_conn_t *c, const pc_bytes_t *bodies, size_t n);

/* A request that came without a frame -- translated from the Redis
 * protocol by pc_redis, which checked it as the decoder checks a frame
 * (limits, non-empty keys) and authorised it: served exactly as a
 * decoded frame of the same request is. Its slices are valid during the
 * call only; a FORWARD of it is encoded from *rq. */
void pc_dispatch_request(pc_conn_t *c, const pc_request_t *rq);

/* The facts pc_route_decide is made of, for operation `op` of `key`
 * (NULL: not a key operation) on c's loop, now. */
void pc_dispatch_facts(pc_conn_t *c, uint32_t op, const pc_bytes_t *key, pc_route_facts_t *f);

#endif
