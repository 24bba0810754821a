/*
 * pc_health.h -- what a client knows of one node's health: how long its
 * answers take, and whether it has stopped answering (a breaker).
 *
 * The client library keeps one per node it talks to (pc_client.c) and
 * asks it three things:
 *  - how long to wait for a read before also asking a replica (a hedged
 *    read): pc_health_hedge_ms, from a smoothed round trip and its
 *    variation, as TCP estimates its retransmission timeout (RFC 6298);
 *  - how long a request may stay unanswered before the node counts as
 *    unresponsive: pc_health_stall_ms;
 *  - whether the node may be sent a request now: pc_health_state. After
 *    a failure (no answer within the call's timeout or the stall limit, a
 *    refused or broken connection) the breaker is OPEN: reads go to a
 *    replica, writes fail at once without being sent. When the back-off
 *    has passed it is PROBE: the client sends the node one cheap probe
 *    (PING) and keeps treating it as open; the probe's answer, like any
 *    answer, closes the breaker (pc_health_ok). Each failure in a row
 *    doubles the back-off, up to PC_HEALTH_BACKOFF_MAX_MS.
 *
 * Pure state: time comes in as arguments (milliseconds on a monotonic
 * clock, microseconds for round trips), so tests need no sleeps. No
 * allocation, no errors. Not thread-safe (one client = one thread).
 */
#ifndef PC_HEALTH_H
#define PC_HEALTH_H

#include <stdint.h>

/* Never hedge sooner than this: below it, a busy machine's scheduling
 * delays alone would send most reads twice. */
#define PC_HEALTH_HEDGE_MIN_MS 10
/* Before any round trip was measured. */
#define PC_HEALTH_HEDGE_DEFAULT_MS 50
/* A node is unresponsive once a request has waited this long, at least
 * (and at least 4 hedge delays). It is well above a hedge: a write that
 * meets a node busy for a moment waits for it rather than failing. */
#define PC_HEALTH_STALL_MIN_MS 300
#define PC_HEALTH_BACKOFF_MIN_MS 200
#define PC_HEALTH_BACKOFF_MAX_MS 2000

typedef struct pc_health {
    int64_t srtt_us;       /* smoothed round trip; 0 = none measured yet */
    int64_t rttvar_us;     /* its mean deviation */
    uint32_t fails;        /* failures since the last answer; 0 = closed */
    int64_t open_until_ms; /* while fails > 0: no requests before this */
} pc_health_t;

enum { PC_HEALTH_CLOSED, PC_HEALTH_OPEN, PC_HEALTH_PROBE };

/* A new node: closed, nothing measured. */
void pc_health_init(pc_health_t *h);

/* The node answered a request sent rtt_us ago (rtt_us < 0: an answer
 * whose round trip says nothing, e.g. one that came after the client had
 * stopped waiting). Closes the breaker. */
void pc_health_ok(pc_health_t *h, int64_t rtt_us);

/* The node failed at now_ms: opens (or keeps open) the breaker for the
 * next back-off. Returns 1 if the breaker was closed until now. */
int pc_health_fail(pc_health_t *h, int64_t now_ms);

/* A probe was just sent: no other one before the current back-off has
 * passed again. */
void pc_health_probed(pc_health_t *h, int64_t now_ms);

/* PC_HEALTH_CLOSED, _OPEN or _PROBE (open, and a probe is due). */
int pc_health_state(const pc_health_t *h, int64_t now_ms);

/* How long to wait for a read's answer before asking another node too;
 * within [PC_HEALTH_HEDGE_MIN_MS, timeout_ms / 4]. */
int64_t pc_health_hedge_ms(const pc_health_t *h, int64_t timeout_ms);

/* How long a request may go unanswered before the node is unresponsive;
 * within [PC_HEALTH_STALL_MIN_MS, timeout_ms / 2] (timeout_ms / 2 wins
 * when the two cross: a call must have time left to go elsewhere). */
int64_t pc_health_stall_ms(const pc_health_t *h, int64_t timeout_ms);

#endif
