/*
 * pc_conn_int.h -- private to node/pc_conn.c, node/pc_conn_answer.c (its
 * requests and answers) and node/pc_conn_uring.c (the io_uring transport
 * of a connection): what one calls of another. Not
 * for any other module; pc_conn.h is the contract. Everything here runs
 * on the connection's loop.
 */
#ifndef PC_CONN_INT_H
#define PC_CONN_INT_H

#include "pc_conn.h"

/* pc_conn.c */

/* n bytes for c arrived in a buffer that is not c's (the loop's shared
 * one, or one of the ring's), valid during the call only: whole frames
 * are served from it, the rest is copied to c's reader. Only while c's
 * reader holds nothing. */
void pc_conn_read_lent(pc_conn_t *c, const uint8_t *p, size_t n);
/* A write of c's wbuf ended (status 0, or a negative libuv / -errno code). */
void pc_conn_write_done(pc_conn_t *c, int status);
/* c's handle closed: its reference goes. */
void pc_conn_closed_cb(uv_handle_t *h);
/* Frees c once nothing refers to it (its handle closed, no request out). */
void pc_conn_maybe_free(pc_conn_t *c);
/* c has answers that came outside its turn: written before the loop polls
 * (pc_conns_flush_deferred). */
void pc_conn_flush_later(pc_conn_t *c);

/* pc_conn_answer.c */

/* The turn that began at c->turn_t0 ended at `end`: the answers it gave
 * are timed (pc_metrics.h's latency histograms), all with its length. */
void pc_conn_lat_turn_done(pc_conn_t *c, uint64_t end);

/* pc_conn_uring.c (for connections with c->ur set) */

/* Arms c's receive if it wants input and none is armed; cancels it if it
 * does not. */
void pc_conn_ur_reading(pc_conn_t *c, int want);
/* Queues a send of everything in c->out (moved to wbuf); closes c if the
 * ring has no room. */
void pc_conn_ur_send(pc_conn_t *c);
/* Cancels c's receive and send; the handle closes once both ended. */
void pc_conn_ur_close(pc_conn_t *c);
/* A closing c's handle closes once the ring is done with it. */
void pc_conn_ur_settle(pc_conn_t *c);
/* Moves spilled input into c's reader as far as it has room (between
 * frames: no body is in use); returns how much moved. */
size_t pc_conn_unspill(pc_conn_t *c);

#endif
