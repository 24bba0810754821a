/*
 * pc_redis.h -- the Redis-protocol front door (--resp): each command of a
 * Redis client translated into the node's own requests, which are served
 * exactly as the native port's are (pc_dispatch_request: the same routing,
 * write-through, limits and token), and each answer rendered back as the
 * Redis reply the command calls for. docs/REDIS.md is the table of
 * commands and what differs from Redis.
 *
 * How a command becomes requests and a reply:
 *  - a key command becomes one native request (GET, SET, TOUCH, MGET) or
 *    one per key (DEL k1 k2, MSET), or two in a row (GETDEL: GET then
 *    DEL); the rest (PING, HELLO, CLIENT, SELECT, ...) are answered by
 *    this module, as a literal reply that still leaves in its turn.
 *  - every answer the connection gives has a *slot* here, queued in
 *    command order when the request is made: how to render it, and
 *    whether it is the last of its command. pc_conn hands answers over in
 *    request order (hooks->redis_answer), so the slots are taken in the
 *    same order, and a command of several requests is summed up (DEL's
 *    count, MSET's first error) when its last answer leaves.
 *  - the protocol version (HELLO 3) is kept per slot: a reply is rendered
 *    in the version in force when its command was read.
 *
 * Thread rules: a connection's loop. Errors: PC_ENOMEM; a connection this
 * module cannot go on with is closed here.
 */
#ifndef PC_REDIS_H
#define PC_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "pc_conn.h"

/* The pc_conn hooks of a Redis-protocol connection (pc_conn.h). */
int pc_redis_open(pc_conn_t *c);
int pc_redis_command(pc_conn_t *c, const uint8_t *in, size_t n, size_t *used);
int pc_redis_answer(pc_conn_t *c, const pc_response_t *resp, const char *errmsg,
                    const uint8_t *body, size_t len);
void pc_redis_free(pc_conn_t *c);

#endif
