/*
 * pc_conns.h -- the connections of one event loop together: accepting
 * (and refusing), the buffer-memory cap they share and the shedding near
 * it, the tick over their limits, holding all reading, and the stop.
 * pc_conn.h defines pc_conns_t and what one connection does.
 *
 * Lifecycle: pc_conns_init, then pc_conns_start on the loop's thread;
 * pc_conns_stop (drain) or pc_conns_cut (close all), pc_conns_close (its
 * handles), and once pc_conns_idle says so, pc_conns_free.
 *
 * Thread rules: the loop's thread, but pc_conns_init and pc_conns_free.
 */
#ifndef PC_CONNS_H
#define PC_CONNS_H

#include "pc_conn.h"

/* What a set of connections is made with (all pointers must outlive it;
 * see pc_conns_t for each). */
typedef struct pc_conns_config {
    pc_conn_limits_t limits;
    uv_loop_t *loop;
    const pc_log_t *log;
    pc_guard_t *guard;
    pc_counters_t *stats;
    pc_hist_t *lat; /* PC_LAT_OPS of them: the loop's */
    const pc_conn_hooks_t *hooks;
    void *owner;
    _Atomic uint64_t *node_conns;
    pc_sources_t *sources;
    const _Atomic uint64_t *ring_fp;
    /* Read and write client sockets through an io_uring (--io uring,
     * pc_uring.h); a loop whose ring cannot be made says so in the log
     * and uses epoll. */
    int io_uring;
} pc_conns_config_t;

/* 0 or PC_ENOMEM (then pc_conns_free cleans up). No handle is made yet. */
int pc_conns_init(pc_conns_t *cs, const pc_conns_config_t *cfg);

/* Starts the set's handles on its loop (its idle and prepare handles). */
void pc_conns_start(pc_conns_t *cs);

/* The listener `server` has a connection (`redis`: on the Redis-protocol
 * port, pc_redis.h): accepts it, or refuses it with BUSY and a reason
 * (too many, too many from its address, buffers full, stopping); without
 * memory for it, accepts and closes it at once so the listener goes on
 * (libuv stops a listener whose callback leaves one pending). Accepting
 * takes a bounded share of each loop iteration (pc_conns.c,
 * ACCEPT_SHARE_NS): past it, the connection is left pending -- libuv
 * stops watching that listener -- and taken before the loop polls again,
 * which starts the listener again. */
void pc_conns_accept(pc_conns_t *cs, uv_stream_t *server, int redis);

/* The receiving end of another loop's relay on socket fd (taken: closed
 * on failure): an internal connection named `name`. 0, PC_ENOMEM, PC_EIO. */
int pc_conns_attach_internal(pc_conns_t *cs, int fd, const char *name);

/* Every tick: held-back answers (hooks->tick), the time limits, idle
 * buffers trimmed, the buffer cap rechecked. Checking the connections
 * takes a bounded share of an iteration (pc_conns.c, TICK_SHARE_NS): the
 * rest are checked before the loop polls again, a share an iteration,
 * with the loop's time then (never before the tick's `now`). */
void pc_conns_tick(pc_conns_t *cs, uint64_t now);

/* Holds (1) or resumes (0) reading on every connection. */
void pc_conns_hold(pc_conns_t *cs, int on);

/* Stop taking requests: newcomers are refused, and each connection
 * closes once its answers are out. */
void pc_conns_stop(pc_conns_t *cs);

/* Closes every connection now (what waits on them finds them closing). */
void pc_conns_cut(pc_conns_t *cs);

/* Closes the set's handles; hooks->gone runs as each closes. */
void pc_conns_close(pc_conns_t *cs);

/* 1 once no connection is left and every handle of the set is closed. */
int pc_conns_idle(const pc_conns_t *cs);

/* Requests unanswered on the loop, and of those relayed to another loop
 * and forwarded to a peer (for the log of a stop that overran). */
void pc_conns_pending(const pc_conns_t *cs, unsigned long long *reqs,
                      unsigned long long *relayed, unsigned long long *forwarded);

/* Frees what is left (after pc_conns_idle, or if never started). */
void pc_conns_free(pc_conns_t *cs);

/* c has just taken input outside a read of its loop's (io_uring): if the
 * loop's buffers are over --max-buffer-memory and c holds more than its
 * fair share, c is shed now (BUSY, closed, buffer_evictions) rather than
 * at the next sweep. 1 = it was closed. Its loop's thread only. */
int pc_conns_shed_over_cap(pc_conn_t *c);

#endif
