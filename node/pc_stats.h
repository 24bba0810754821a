/*
 * pc_stats.h -- STATS: every loop's counters (pc_metrics.h), read on each
 * loop's own thread, summed on the core, and answered with what the
 * store, the Redis connections, the membership, the peer pool and the
 * guard report.
 *
 * Thread rules: the core loop's thread (a worker relays STATS there).
 */
#ifndef PC_STATS_H
#define PC_STATS_H

#include "pc_conn.h"

void pc_stats_request(pc_conn_t *c, const pc_request_t *rq);

#endif
