/*
 * pc_write.h -- SET, DEL and TOUCH of a key this node owns: through Redis
 * first (write-through), the store updated only on Redis'
 * acknowledgement and the new version replicated; or, with no Redis
 * behind, in the store alone. Compare-and-set is checked against the
 * cached version, after every earlier write of the key is acknowledged.
 *
 * Thread rules: the loop's thread. Where a write is served is decided
 * before it gets here (pc_route.h); a write that reaches a loop whose key
 * is homed elsewhere right now is refused with RETRY there.
 */
#ifndef PC_WRITE_H
#define PC_WRITE_H

#include "pc_conn.h"

/* A write of a key this node owns, on its home loop (or the core). */
void pc_write_request(pc_conn_t *c, const pc_request_t *rq);

/* A write with no Redis behind: the store decides (its conditional sets
 * keep NX, XX and CAS atomic across loops). */
void pc_write_local(pc_conn_t *c, const pc_request_t *rq);

#endif
