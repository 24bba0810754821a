/*
 * pc_server.h -- the client-protocol server of a node: TCP listener,
 * connections, request dispatch, read-through and write-through.
 *
 * Request paths (see docs/ARCHITECTURE.md):
 *   GET   store hit -> answer. Miss -> one Redis read per key however many
 *         requests wait for it (coalescing), fill the store, answer all.
 *   SET   Redis first; only on its acknowledgement update the store and
 *         answer OK. DEL and TOUCH likewise.
 * Responses on a connection leave in request order, whatever order the
 * backend answers in.
 *
 * Resource bounds per connection: input buffer (one max frame plus a read
 * chunk), requests in flight (max_inflight; reading pauses at the limit),
 * queued output (max_output; reading pauses until the client drains it).
 *
 * Thread rules: loop thread only. The store may be shared with others.
 */
#ifndef PC_SERVER_H
#define PC_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "pc_backend.h"
#include "pc_config.h"
#include "pc_log.h"
#include "pc_store.h"

typedef struct pc_server pc_server_t;

/*
 * Creates a server on `loop`. `store` and `log` must outlive it; `backend`
 * may be NULL (pure memory cache: misses are NOT_FOUND, writes go to the
 * store only) and is owned by the caller. cfg is read during the call only.
 * 0, PC_ENOMEM or PC_EINVAL.
 */
int pc_server_new(uv_loop_t *loop, const pc_config_t *cfg, pc_store_t *store,
                  pc_backend_t *backend, const pc_log_t *log, pc_server_t **out);

/* Binds and listens on cfg->listen. 0 or PC_EIO (message logged). */
int pc_server_start(pc_server_t *s);

/*
 * Graceful stop: closes the listener, stops reading, lets requests in
 * flight finish and their answers flush, then closes every connection --
 * or forces them closed after shutdown_timeout. Calls done(arg) once all
 * handles are closed; after that, pc_server_free(). Call once.
 */
void pc_server_shutdown(pc_server_t *s, void (*done)(void *arg), void *arg);

/* Frees a server whose shutdown completed (or that never started). */
void pc_server_free(pc_server_t **s);

#endif
