/*
 * pc_backend_int.h -- between pc_backend.c (a connection to one Redis
 * server: a "link") and pc_rcluster.c (the router over the primaries of a
 * Redis Cluster, made of links). Nothing else includes it; the contract
 * for the rest of the node is pc_backend.h.
 *
 * In cluster mode a pc_backend_t is a shell around a pc_rcluster_t: each
 * call is routed by its key's slot to the link of the primary that owns
 * it, and goes on as on any backend from there (fence, WAIT, held
 * writes, deadlines: all per link, so per Redis server and its clock).
 * A link hands the router the answers that concern it: a redirection
 * (-MOVED, -ASK, -TRYAGAIN, -CLUSTERDOWN) and the loss of its connection.
 *
 * Thread rules: the loop's thread, like the backend.
 */
#ifndef PC_BACKEND_INT_H
#define PC_BACKEND_INT_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "pc_backend.h"
#include "pc_buf.h"

struct cmd;
typedef struct pc_rcluster pc_rcluster_t;

/* ---- pc_backend.c, for the router ---- */

/* A link to the cluster node cfg->addr (SINGLE over TCP) that reports to
 * rc. As pc_backend_new otherwise. */
int pc_backend_link_new(uv_loop_t *loop, const pc_backend_config_t *cfg, const pc_log_t *log,
                        pc_rcluster_t *rc, pc_backend_t **out);
const char *pc_backend_link_host(const pc_backend_t *l);
int pc_backend_link_port(const pc_backend_t *l);
/* 1 when nothing is in flight, held or waiting for a WAIT on l: closing
 * it then fails no command before its time. */
int pc_backend_link_idle(const pc_backend_t *l);
/* Queues the command fmt... on l's connection (l must be up); fn gets its
 * reply (NULL if the connection goes). 0, or PC_EBACKEND. */
int pc_backend_link_command(pc_backend_t *l, redisCallbackFn *fn, void *priv, const char *fmt,
                            ...);
/* Sends c -- answered -ASK by the node that had it -- on l after ASKING,
 * with its fence moved onto l's clock. 0 (c is l's now), or PC_EBACKEND
 * (l is not up; c is still the caller's). */
int pc_backend_link_ask(pc_backend_t *l, struct cmd *c);
/* 1 if c was sent after an -ASK already (it is never redirected twice). */
int pc_backend_cmd_redirected(const struct cmd *c);

/* ---- pc_backend.c, for the start-up check (pc_backend_probe.c) ---- */

/* What an operator can do about an error Redis answered (NOAUTH,
 * WRONGPASS, NOPERM, READONLY), as " (...)", or "". */
const char *pc_backend_refusal_hint(const redisReply *reply);

/* ---- pc_rcluster.c, for pc_backend.c ---- */

/* The router for cfg->addr (PC_BACKEND_CLUSTER): links to the seeds at
 * once, the slot map from the first that is up. 0, PC_EINVAL, PC_ENOMEM. */
int pc_rcluster_new(uv_loop_t *loop, const pc_backend_config_t *cfg, const pc_log_t *log,
                    pc_rcluster_t **out);
/* The link for key (the client's key: the router adds the prefix), or
 * NULL when the slot map does not cover its slot yet. */
pc_backend_t *pc_rcluster_route(pc_rcluster_t *rc, const void *key, size_t klen);
/*
 * A redirection that link `from` got for c: 0 when the router took c (it
 * was sent on to the node the -ASK named); else the error to fail c with:
 * PC_ERETRY (nothing was applied: the slot moved, or is moving), or
 * PC_EBACKEND (the cluster is down). reply is an error reply.
 */
int pc_rcluster_redirect(pc_rcluster_t *rc, pc_backend_t *from, struct cmd *c,
                         const redisReply *reply);
/* 1 if reply is a redirection for the router (pc_rcluster_redirect). */
int pc_rcluster_is_redirect(const redisReply *reply);
/* Link l lost its connection (the topology may have changed). */
void pc_rcluster_link_down(pc_rcluster_t *rc, pc_backend_t *l);
/* 1 while the map covers every slot and every primary's link is up. */
int pc_rcluster_up(const pc_rcluster_t *rc);
void pc_rcluster_stats(const pc_rcluster_t *rc, pc_backend_stats_t *out);
void pc_rcluster_fail_pending(pc_rcluster_t *rc);
/* Closes every link and the router; closed(arg) once all is closed, and
 * the router freed just before. */
void pc_rcluster_close(pc_rcluster_t *rc, void (*closed)(void *arg), void *arg);

#endif
