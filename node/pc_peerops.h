/*
 * pc_peerops.h -- what members ask of each other besides key operations
 * and REPLICATE (pc_replicate.h): SYNC, the push/pull of membership
 * state, and CLUSTER, the members as this node sees them. The core's.
 *
 * Thread rules: the core loop's thread.
 */
#ifndef PC_PEEROPS_H
#define PC_PEEROPS_H

#include "pc_conn.h"

void pc_peerops_sync(pc_conn_t *c, const pc_request_t *rq);
void pc_peerops_cluster(pc_conn_t *c, const pc_request_t *rq);

#endif
