/*
 * pc_peer.h -- this node's outgoing connections to its peers: one pooled,
 * pipelined TCP connection per peer address, speaking the client protocol
 * (docs/PROTOCOL.md; the peer ops FORWARD, SYNC, REPLICATE and any other).
 *
 * A request is a whole frame the caller encoded. Frames to one peer leave
 * in the order they were given and the peer answers in order, so replies
 * are matched to requests by position: the id inside a frame is the
 * caller's business.
 *
 * Callbacks (the libuv rule): if pc_peer_request() returns 0, cb runs
 * exactly once, later, from the loop -- never from inside the call; if it
 * returns an error, cb never runs. err is 0 with the reply body (valid
 * only during the callback), or PC_ETIMEDOUT (no reply within the request
 * timeout), PC_ECONN (could not connect, or the connection broke),
 * PC_EPROTO (the peer sent something that is not a frame), PC_ECLOSED
 * (the pool is closing or the peer was forgotten). After any of these the
 * connection is closed and every other request waiting on it fails the
 * same way: a reply that comes late can no longer be matched.
 *
 * A callback may call pc_peer_request() again (same or other peer) and
 * pc_peer_forget(); it must not close or free the pool.
 *
 * Thread rules: loop thread only.
 */
#ifndef PC_PEER_H
#define PC_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pc_error.h"
#include "pc_guard.h"
#include "pc_log.h"

typedef struct pc_peer_pool pc_peer_pool_t;

typedef void (*pc_peer_cb)(void *arg, int err, const uint8_t *body, size_t len);

typedef struct pc_peer_config {
    uint64_t connect_timeout_ms; /* default 1000 */
    uint64_t request_timeout_ms; /* default 1000: from hand-over to reply */
    uint32_t max_frame;          /* largest reply accepted; default as pc_proto */
    uint32_t max_pending;        /* per peer; more is PC_EBUSY; default 4096 */
    uint64_t tcp_rto_min_ms;     /* set on each connection; 0 = the kernel's */
} pc_peer_config_t;

typedef struct pc_peer_stats {
    uint64_t requests;
    uint64_t errors;   /* requests failed for any reason */
    uint64_t timeouts; /* of which by a deadline */
    uint64_t connects; /* connections established */
    uint64_t held;     /* failed writes told only at their deadline */
} pc_peer_stats_t;

/* 0 or PC_ENOMEM. cfg may be NULL (defaults); it is copied. log must
 * outlive the pool; so must guard, which may be NULL. With a keyring in
 * the guard, every request frame is sealed (PC_SEAL_PEER_REQ, one seal
 * stream per peer) and every reply must open as PC_SEAL_PEER_RESP, else
 * the connection fails with PC_EPROTO like any bad reply. */
int pc_peer_pool_new(uv_loop_t *loop, const pc_peer_config_t *cfg, const pc_log_t *log,
                     pc_guard_t *guard, pc_peer_pool_t **out);

/*
 * Queues one frame (4-byte length prefix included; copied) for the peer at
 * addr ("host:port"; a host name is resolved on connect) and connects if
 * needed. 0, PC_EINVAL (bad address or empty frame), PC_ECONN (the last
 * connection attempt to this peer failed less than a back-off ago: fail
 * fast instead of queueing behind a dead peer), PC_EBUSY (max_pending
 * requests already wait on this peer), PC_ECLOSED (pool closing),
 * PC_ENOMEM.
 */
int pc_peer_request(pc_peer_pool_t *p, const char *addr, const uint8_t *frame, size_t len,
                    pc_peer_cb cb, void *arg);

/*
 * The same for a write the peer applies (a FORWARD of a SET, DEL or
 * TOUCH): should the request fail before its deadline (a broken or
 * timed-out connection fails everything on it at once), cb runs only at
 * the deadline, because until then the peer may still apply it. The
 * deadline is pc_peer_deadline_wall_ms() as read when the request is
 * queued, which the caller puts in the frame (PROTOCOL.md §5.10), so the
 * peer applies nothing after it. A closing pool tells at once.
 */
int pc_peer_request_write(pc_peer_pool_t *p, const char *addr, const uint8_t *frame,
                          size_t len, pc_peer_cb cb, void *arg);

/* Wall-clock ms (Unix) at which a request queued now will have timed out,
 * at the earliest. */
uint64_t pc_peer_deadline_wall_ms(const pc_peer_pool_t *p);

/* A frame (e.g. a HELLO carrying the client token, for a cluster that
 * runs --insecure with --token-file) sent ahead of everything else on
 * every connection made from now on; its reply is checked and logged,
 * never passed to a caller. len 0 = none. Copied. 0 or PC_ENOMEM. */
int pc_peer_set_hello(pc_peer_pool_t *p, const uint8_t *frame, size_t len);

/* Fails every waiting request on every peer with PC_ECLOSED and drops
 * the connections (they are made again on the next request). For a stop
 * that cannot wait for peers any longer. Not from inside a callback. */
void pc_peer_pool_fail_all(pc_peer_pool_t *p);

/* Drops the connection to addr (a member that died or left): its waiting
 * requests fail with PC_ECLOSED, and the back-off is reset. No-op for an
 * unknown address. */
void pc_peer_forget(pc_peer_pool_t *p, const char *addr);

/* Requests in flight to addr (0 for an unknown address). */
size_t pc_peer_pending(const pc_peer_pool_t *p, const char *addr);

void pc_peer_stats(const pc_peer_pool_t *p, pc_peer_stats_t *out);

/*
 * Fails every waiting request with PC_ECLOSED, closes every connection and
 * the pool's timer, then calls done(arg) (from the loop). Call once; then
 * pc_peer_pool_free().
 */
void pc_peer_pool_close(pc_peer_pool_t *p, void (*done)(void *arg), void *arg);

/* Frees a closed pool (or one never used). NULL-safe; sets *p to NULL. */
void pc_peer_pool_free(pc_peer_pool_t **p);

#endif
