/*
 * pc_server.h -- the client-protocol server of a node: its event loops
 * (one core, --threads - 1 workers), wired from the modules of node/
 * (docs/ARCHITECTURE.md "node/" has the table): connections
 * (pc_conn, pc_conns), dispatch and routing (pc_dispatch, pc_route), key
 * operations (pc_keys, pc_write, pc_mget, pc_forward), replication and
 * hand-off (pc_replicate, pc_handoff), the loops together (pc_loops,
 * pc_relay, pc_view) and the per-slot state of ring changes (pc_slots).
 * This module makes the loops, starts them, turns the home loops on and
 * off (when the ring has settled), and stops them.
 *
 * Request paths (docs/ARCHITECTURE.md):
 *   GET   store hit -> answer. Miss -> one Redis read per key however many
 *         requests wait for it (coalescing), fill the store, answer all.
 *   SET   Redis first; only on its acknowledgement update the store and
 *         answer OK. DEL and TOUCH likewise.
 * Responses on a connection leave in request order, whatever order the
 * backend answers in. docs/OPERATIONS.md lists the resource limits.
 *
 * Ownership: the store, the guard, the log, the cluster, and every
 * loop's Redis connection and peer pool are the caller's; the server
 * borrows them, and tells the caller when a worker loop no longer uses
 * its own (pc_server_on_loop_stopped).
 *
 * Thread rules: each loop on its own thread; every function here on the
 * core loop's thread. Everything the loops share is synchronised inside.
 */
#ifndef PC_SERVER_H
#define PC_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "pc_backend.h"
#include "pc_cluster.h"
#include "pc_config.h"
#include "pc_guard.h"
#include "pc_log.h"
#include "pc_peer.h"
#include "pc_ring.h"
#include "pc_store.h"

typedef struct pc_server pc_server_t;

/*
 * Creates a server on `loop` (its core loop). `store` and `log` must
 * outlive it; `backend` may be NULL (pure memory cache: misses are
 * NOT_FOUND, writes go to the store only); it and `peers` stay the
 * caller's, who closes them after the shutdown. `cluster` and `peers` (both or
 * neither) make it a cluster member: keys it does not own are forwarded
 * to their owners, writes are replicated; NULL = a node alone that owns
 * everything. `guard` (may be NULL; must outlive the server) holds the
 * cluster key: with one, a connection whose frames are sealed is a
 * peer's (its answers are sealed too), and peer operations (FORWARD,
 * SYNC, REPLICATE) are refused with AUTH_REQUIRED on any other; a frame
 * that fails the key check closes the connection. cfg is read during the
 * call only. 0, PC_ENOMEM or PC_EINVAL.
 */
int pc_server_new(uv_loop_t *loop, const pc_config_t *cfg, pc_store_t *store,
                  pc_backend_t *backend, pc_cluster_t *cluster, pc_peer_pool_t *peers,
                  pc_guard_t *guard, const pc_log_t *log, pc_server_t **out);

/*
 * Requires clients to send this token in HELLO before anything but HELLO
 * and PING (AUTH_REQUIRED otherwise); NULL or len 0 = no token. Only a
 * hash is kept; the comparison is constant-time. Failed HELLOs are
 * counted (STATS auth_failures) and answered ever more slowly. Peers on a
 * sealed connection need no token. Applies to connections accepted from
 * now on. Always 0.
 */
int pc_server_set_token(pc_server_t *s, const char *token, size_t len);

/*
 * The ring changed (a pc_cluster_ring_cb; arg is the server): slots this
 * node gained stop serving copies stored before the change
 * (docs/CONSISTENCY.md), and keys it no longer owns are handed to their
 * new owners.
 */
void pc_server_ring_changed(void *arg, const pc_ring_t *old, const pc_ring_t *nw);

/* pc_cluster_regain_cb: a partition healed (pc_cluster.h), so this node's
 * cached copies of its keys are not served any more (pc_slots_regain); the
 * loops get the new epochs as on a ring change. Core loop. */
void pc_server_regain(void *arg, const pc_ring_t *ring);

/* pc_cluster_lease_cb: the partition lease's new end; every loop compares
 * it with its own clock (pc_keys_cut_off). Core loop. */
void pc_server_lease(void *arg, uint64_t until_ms);

/* Calls done(arg) once no hand-off is running (at once if none is); for a
 * graceful leave: leave, wait for the hand-off the leave caused, then
 * shut down. Only the latest caller is remembered. */
void pc_server_after_handoff(pc_server_t *s, void (*done)(void *arg), void *arg);

/*
 * A multi-threaded node (docs/ARCHITECTURE.md "Threads"): adds a worker
 * loop to the server (made by pc_server_new with cfg->threads > 1),
 * after pc_server_new and before pc_server_start. The worker shares the
 * core's store, guard and view of the ring; pc_server_start starts it
 * too, each loop accepting on its own SO_REUSEPORT socket.
 *
 * `backend` is the worker's own Redis connection and `peers` its own peer
 * pool, both made on `loop` by the caller, who keeps them: backend is
 * NULL exactly when the core has none, peers is never NULL (else
 * PC_EINVAL). The caller closes them on the worker's thread once the
 * worker stopped serving (pc_server_on_loop_stopped), and frees them
 * after the thread is joined. While the node is settled the worker is the
 * home loop of its share of the keys: it reads them through and writes
 * them through Redis itself, replicates and forwards over its own peer
 * connections; otherwise it serves store hits and relays the rest to the
 * core loop over a socketpair.
 *
 * After pc_server_start, run `loop` on a thread of its own.
 * pc_server_shutdown stops the workers first (their loops then end once
 * the caller has closed their backend and pool), and pc_server_free frees
 * them -- after the worker threads are joined. 0, PC_EINVAL (already
 * started, or a backend where the core has none or the reverse) or
 * PC_ENOMEM.
 */
int pc_server_add_worker(pc_server_t *s, uv_loop_t *loop, pc_backend_t *backend,
                         pc_peer_pool_t *peers);

/* Called on worker loop `index`'s own thread (1..threads-1) once it has
 * stopped serving: its Redis connection and peer pool are no longer used,
 * and the caller closes them there. Set before pc_server_start. */
void pc_server_on_loop_stopped(pc_server_t *s, void (*cb)(void *arg, size_t index), void *arg);

/* The frame every loop's peer pool sends ahead of everything on a new
 * connection (pc_peer_set_hello), set on the core's pool at once and on
 * each worker's on its own thread. Core loop thread. 0 or PC_ENOMEM. */
int pc_server_set_peer_hello(pc_server_t *s, const uint8_t *frame, size_t len);

/* Binds and listens on cfg->listen (and starts the workers), and on
 * cfg->http for operators (pc_admin.h) if set. 0 or PC_EIO (message
 * logged). With workers, "address in use" is still an error:
 * SO_REUSEPORT does not let a second process share the port. The HTTP
 * endpoint closes when pc_server_shutdown begins. */
int pc_server_start(pc_server_t *s);

/* The port the HTTP endpoint listens on; -1 without one. */
int pc_server_http_port(const pc_server_t *s);

/*
 * Graceful stop: closes the listener, stops reading, lets requests in
 * flight finish and their answers flush, then closes every connection --
 * or forces them closed as the stop's deadline nears (see
 * pc_server_begin_stop). Calls done(arg) once all handles are closed;
 * after that, pc_server_free(). Call once. On a core with workers: the
 * workers stop first, then the core.
 */
void pc_server_shutdown(pc_server_t *s, void (*done)(void *arg), void *arg);

/*
 * A stop begins (SIGTERM): from now, the whole stop -- a leave's
 * hand-off, then the drain -- must be over within --shutdown-timeout. The
 * hand-off gives up at half of it (pc_server_after_handoff calls done
 * then); the drain (pc_server_shutdown, on every loop) closes whatever is
 * still busy a little before the deadline (a fifth of the timeout, at
 * most 1 s), logs what that was, and marks the stop forced. Without this
 * call the deadline runs from pc_server_shutdown. Core loop thread; the
 * first call counts.
 */
void pc_server_begin_stop(pc_server_t *s);

/* After the shutdown's done callback: 1 if a loop's drain reached the
 * deadline and cut connections with requests still unanswered (the node
 * should exit non-zero), else 0. */
int pc_server_shutdown_forced(const pc_server_t *s);

/* One line saying what the stop still waits for (connections, requests,
 * keys with Redis commands in flight, a hand-off, worker loops not yet
 * stopped), for the log of a stop that overran. Core loop thread. */
void pc_server_pending(const pc_server_t *s, char *buf, size_t len);

/* Frees a server whose shutdown completed (or that never started). */
void pc_server_free(pc_server_t **s);

#endif
