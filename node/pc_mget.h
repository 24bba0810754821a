/*
 * pc_mget.h -- MGET, split by where each key lives (PC_ROUTE_SPLIT): keys
 * this node owns are looked up here (a miss read through here, or on its
 * home loop while homes are on); the others go to their owners, one MGET
 * per owner or home loop; a key whose member cannot be reached, or any
 * key this node does not own when the MGET says `here` (PROTOCOL.md
 * §5.4), is served here. The answers are put back in request order.
 *
 * Thread rules: the loop's thread.
 */
#ifndef PC_MGET_H
#define PC_MGET_H

#include "pc_conn.h"

void pc_mget_request(pc_conn_t *c, const pc_request_t *rq);

#endif
