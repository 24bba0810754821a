/*
 * pc_admin.h -- the operators' HTTP endpoint of a node (--http): what it
 * serves on top of pc_http (docs/OPERATIONS.md "HTTP endpoint").
 *
 *   /metrics  every STATS field in the Prometheus text format
 *             (pc_stats_prometheus), gathered from every loop as STATS is
 *   /cluster  the members as `peercache-cli --nodes LISTEN cluster --json`
 *             prints them (fingerprint, replicas, from, members with
 *             their state, incarnation, weight and share of the ring)
 *   /healthz  200 "ok": the process serves
 *   /readyz   200 "ready", or 503 with the reasons, one per line: Redis
 *             unreachable (with Redis behind), not settled (not joined
 *             yet, or its loops do not all route by the current ring),
 *             cut off (no partition lease)
 *   anything else: 404
 *
 * Ownership: the endpoint borrows the core loop. Thread rules: the core
 * loop's thread.
 */
#ifndef PC_ADMIN_H
#define PC_ADMIN_H

#include "pc_loop.h"

typedef struct pc_admin pc_admin_t;

/*
 * Listens on `addr` (HOST:PORT) for the node whose core loop is `core`;
 * `node` is its name, for the info metric, and `listen` its client
 * address, the "from" of /cluster. 0 with *out, or PC_EINVAL (a bad
 * address) / PC_EIO (cannot listen there; logged) / PC_ENOMEM.
 */
int pc_admin_start(pc_loop_t *core, const char *addr, const char *node, const char *listen,
                   pc_admin_t **out);

/* The port it listens on. */
int pc_admin_port(const pc_admin_t *a);

/* Stops listening and closes its connections; done(arg) once all is
 * closed and freed. */
void pc_admin_close(pc_admin_t *a, void (*done)(void *arg), void *arg);

#endif
