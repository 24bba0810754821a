/*
 * pc_replicate.h -- versioned entries between members: the owner sends
 * each acknowledged write to the key's replicas (fire and forget:
 * docs/CONSISTENCY.md says what that allows), and every member applies
 * what it receives -- a key's writes from its owner, or a previous
 * owner's keys in a hand-off -- only over an older version, or over a
 * copy it may not serve anyway.
 *
 * Thread rules: the loop's thread.
 */
#ifndef PC_REPLICATE_H
#define PC_REPLICATE_H

#include <stddef.h>
#include <stdint.h>

#include "pc_conn.h"
#include "pc_loop.h"

/* After the owner applied a write: the new version to the key's
 * replicas (ttl -1 = none). */
void pc_replicate_write(pc_loop_t *l, const uint8_t *key, size_t klen, const uint8_t *val,
                        size_t vlen, uint32_t flags, uint64_t version, int64_t ttl);

/* After the owner dropped a key (a DEL, a TOUCH, an ambiguous failure):
 * replicas drop their copy, at a new version. */
void pc_replicate_delete(pc_loop_t *l, const uint8_t *key, size_t klen);

/* REPLICATE (writes or a hand-off): applies the entries and answers. */
void pc_replicate_apply(pc_conn_t *c, const pc_request_t *rq);

/*
 * A worker's part while homes are on (PC_ROUTE_LOCAL): a peer's
 * replicated writes, applied on the loop they arrived at when no entry's
 * key holds a copy that may predate our gaining its slot (that check
 * needs the core's per-slot epochs, so such a batch goes to the core).
 * 1 = applied and answered; 0 = relay it to the core.
 */
int pc_replicate_apply_here(pc_conn_t *c, const pc_request_t *rq);

#endif
