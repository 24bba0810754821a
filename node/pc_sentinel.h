/*
 * pc_sentinel.h -- the primary that Redis Sentinel names, found and
 * followed on a libuv loop.
 *
 * A node whose --redis is sentinel://H1:P1,.../MASTER asks the sentinels
 * for MASTER's address before each connection to Redis
 * (pc_sentinel_ask: SENTINEL get-master-addr-by-name, one sentinel after
 * another until one answers), and keeps one connection subscribed to
 * +switch-master on one of them to hear of a failover the moment it ends
 * (the `moved` callback). Sentinels may fail: an ask goes on to the next
 * one, and a lost subscription is made again on the next one, after which
 * `moved` is called with host NULL -- a switch may have been missed
 * meanwhile, so the caller should check what it is connected to.
 *
 * Nothing here trusts what it is told further than the sentinels do: the
 * caller confirms with ROLE that the address it connected to is a primary
 * (pc_backend does, and asks again when it is not).
 *
 * Sentinels are asked without a password (sentinels with requirepass are
 * not supported; docs/OPERATIONS.md).
 *
 * Callback contract: pc_sentinel_ask's callback runs exactly once, later,
 * from the loop, unless the sentinel is closed first (then never). `moved`
 * runs from the loop, any number of times, never after close.
 *
 * Thread rules: loop thread only.
 */
#ifndef PC_SENTINEL_H
#define PC_SENTINEL_H

#include <stdint.h>
#include <uv.h>

#include "pc_backend_addr.h"
#include "pc_log.h"

typedef struct pc_sentinel pc_sentinel_t;

/* err 0: host (valid during the call only) and port of the primary, as
 * the first sentinel that knew MASTER named it. PC_EBACKEND: no sentinel
 * answered within the timeout each; PC_ENOTFOUND: those that answered do
 * not know MASTER. */
typedef void (*pc_sentinel_found_cb)(void *arg, int err, const char *host, int port);

/* A sentinel announced that MASTER's primary is now host:port (host valid
 * during the call only); or host NULL: the subscription was lost and made
 * again, so a switch may have been missed. */
typedef void (*pc_sentinel_moved_cb)(void *arg, const char *host, int port);

/* addr must be PC_BACKEND_SENTINEL (copied). timeout_ms bounds each
 * sentinel's connect + answer. Subscribes at once. 0, PC_EINVAL or
 * PC_ENOMEM. `log` must outlive it. */
int pc_sentinel_new(uv_loop_t *loop, const pc_backend_addr_t *addr, uint64_t timeout_ms,
                    const pc_log_t *log, pc_sentinel_moved_cb moved, void *moved_arg,
                    pc_sentinel_t **out);

/* Asks for the primary, starting with the sentinel that answered last.
 * 0 (cb will run), or PC_EBUSY while an ask is in progress. */
int pc_sentinel_ask(pc_sentinel_t *s, pc_sentinel_found_cb cb, void *arg);

/* 1 while the +switch-master subscription is confirmed. */
int pc_sentinel_subscribed(const pc_sentinel_t *s);

/* Drops the ask in progress (its callback never runs) and the
 * subscription, closes the timer and frees the sentinel once it closed.
 * Not from inside one of its own callbacks. NULL-safe. */
void pc_sentinel_close(pc_sentinel_t *s);

#endif
