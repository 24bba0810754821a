/*
 * pc_stats.h -- STATS: every loop's counters (pc_metrics.h), read on each
 * loop's own thread, summed on the core, and answered with what the
 * store, the Redis connections, the membership, the peer pool and the
 * guard report.
 *
 * Thread rules: the core loop's thread (a worker relays STATS there).
 * The same sum, in the Prometheus text format, is what the HTTP
 * endpoint's /metrics serves (pc_admin.h).
 */
#ifndef PC_STATS_H
#define PC_STATS_H

#include "pc_buf.h"
#include "pc_conn.h"
#include "pc_loop.h"

void pc_stats_request(pc_conn_t *c, const pc_request_t *rq);

/* Every STATS field's name and value at one moment, in table order. */
typedef struct pc_stats pc_stats_t;

/* st is NULL when memory ran out; it is valid during the call only. */
typedef void (*pc_stats_cb)(void *arg, const pc_stats_t *st);

/*
 * Reads every loop's counters on its own thread, sums them on the core
 * with what the core reports, and calls cb(arg, st) on the core -- at
 * once on a node of one loop. 0, or PC_ENOMEM (cb is not called).
 */
int pc_stats_gather(pc_loop_t *core, pc_stats_cb cb, void *arg);

/* The value of field `name` (a STATS name), or -1 if there is none. */
int64_t pc_stats_get(const pc_stats_t *st, const char *name);

/*
 * Appends st to out in the Prometheus text format (version 0.0.4): every
 * field as peercache_<name> (counters with _total, a unit _s spelled
 * _seconds) with its HELP and TYPE lines, after
 * peercache_info{version,node,ring_fingerprint} 1; then the latency
 * histograms summed over the loops (peercache_op_duration_seconds{op},
 * peercache_redis_duration_seconds). 0, or PC_ENOMEM (out may hold part
 * of it); PC_EINVAL only if a line outgrew its fixed buffer (a bug).
 */
int pc_stats_prometheus(const pc_stats_t *st, const char *node, uint64_t ring_fp, pc_buf_t *out);

#endif
