/*
 * pc_auth.h -- client tokens (docs/SECURITY.md): the node's token, the
 * HELLO that presents it, the back-off after a bad one, and what a
 * connection may do before a good one.
 *
 * Thread rules: the token (pc_auth_shared_t) is read by every loop and
 * set from the core's thread, under its mutex; the failed-HELLO window
 * is one atomic word. Everything that takes a connection runs on the
 * connection's loop.
 */
#ifndef PC_AUTH_H
#define PC_AUTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <sodium.h>

#include "pc_conn.h"

/* What the loops of a node share of authentication. */
typedef struct pc_auth_shared {
    pthread_mutex_t lock; /* over required and hash */
    int required;
    uint8_t hash[crypto_generichash_BYTES]; /* of the client token */
    /* Failed HELLOs on all loops in the current second: the second in the
     * high 32 bits, the count in the low. */
    _Atomic uint64_t window;
} pc_auth_shared_t;

void pc_auth_shared_init(pc_auth_shared_t *a);
void pc_auth_shared_destroy(pc_auth_shared_t *a);

/* Sets the token clients must present (NULL or len 0: none). Only a hash
 * is kept. Applies to connections accepted from now on. */
void pc_auth_set_token(pc_auth_shared_t *a, const char *token, size_t len);

/*
 * The back-off of failed HELLOs, in ms: 100 ms, doubling with each failure
 * on the connection (`fails`, counting this one) up to 1.6 s; 2 s for
 * everyone while the node sees more than 100 failures a second
 * (`node_fails`, this second's on every loop), and for an address that
 * makes more than 10 a second (`source_fails`), however many connections
 * it spreads them over. Pure.
 */
uint64_t pc_auth_delay(unsigned fails, uint32_t node_fails, uint32_t source_fails);

/* Counts one failed HELLO at `now_ms` (a loop's clock) and returns the
 * node's count for the current second, this one included. The window only
 * moves forward: a loop whose clock is behind another's (its cached time
 * from before the second turned) counts into the newer second. Any thread. */
uint32_t pc_auth_window_fail(pc_auth_shared_t *a, uint64_t now_ms);

/* Failed HELLOs after which the connection is closed. */
#define PC_AUTH_MAX_FAILS 5

/* The conn hook for a new client connection: authed already when the
 * node requires no token. */
void pc_auth_opened(pc_conn_t *c);

/* Does the node require the token now (--token-file)? */
int pc_auth_required(pc_conn_t *c);

/* HELLO: checks the token (constant time) and answers with the node's
 * name and versions; a bad token's answer is held back (pc_auth_delay),
 * and nothing else is read from the connection meanwhile. */
void pc_auth_hello(pc_conn_t *c, const pc_request_t *rq);

/* The conn tick hook: a held-back failed HELLO whose time has come is
 * answered, and reading goes on (or the connection is closed after
 * PC_AUTH_MAX_FAILS). 1 = it was one. */
int pc_auth_tick(pc_conn_t *c, uint64_t now);

/* Who may do what: before a good HELLO, a client that owes a token may
 * only HELLO and PING; peer operations need a sealed connection when the
 * node has a cluster key. 1 = refused and answered (AUTH_REQUIRED). */
int pc_auth_refuse(pc_conn_t *c, const pc_request_t *rq);

/* FORWARD, SYNC and REPLICATE: what only members may ask. */
int pc_auth_is_peer_op(uint32_t op);

#endif
