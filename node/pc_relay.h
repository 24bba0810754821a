/*
 * pc_relay.h -- relays between the loops of a node: what a loop does not
 * serve itself it sends to another loop over a socketpair. Each worker
 * has two to the core (one for client requests, one for peer
 * connections, whose frames it has already opened), and while Redis is
 * behind every loop has one to each home loop. The receiving end is an
 * internal connection (pc_conns_attach_internal), served like a client's
 * but trusted and exempt from the client limits.
 *
 * Requests go re-encoded under a relay id (for a FORWARD, the id of the
 * request inside it) and are answered out of order, so a slow request
 * does not hold up the other clients of the sending loop; the sender puts
 * each answer back under the client's id, in the client's order (the
 * connection's request queue). A connection stops being read at
 * PC_CONN_RELAY_MAX requests out at other loops.
 *
 * Thread rules: a relay's sending end belongs to its loop's thread.
 */
#ifndef PC_RELAY_H
#define PC_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "pc_conn.h"
#include "pc_list.h"
#include "pc_loop.h"

/*
 * Something waiting on a relay for its answer: a request relayed whole,
 * or the keys of an MGET sent to their home loop. done() runs exactly
 * once: with the answer (valid during the call only), or with NULL when
 * the relay failed or closed.
 */
typedef struct pc_relay_wait {
    pc_list_t link;
    uint64_t id; /* the relay's id for it */
    void (*done)(struct pc_relay_wait *w, pc_response_t *resp);
} pc_relay_wait_t;

/* The loop's relays (l->relays), none open yet. A worker's two to the
 * core get their socketpairs now. 0, PC_ENOMEM or PC_EIO. */
int pc_relays_new(pc_loop_t *l);
void pc_relays_free(pc_loop_t *l);

/* At start, on the core's thread, before the workers run: a worker's
 * relays to the core, whose receiving ends become internal connections
 * of the core. */
int pc_relays_start_worker(pc_loop_t *w, pc_loop_t *core);

/* At start: a relay from every loop to every home loop but itself (a
 * worker's to the core exists already). */
int pc_relays_start_homes(pc_shared_t *sh);

/* Closes the sending ends: what still waits on them is answered now
 * (INTERNAL, "the node is stopping"): the other loop will not answer any
 * more, and a request left waiting would hold its connection -- and with
 * it this loop's stop -- for ever. An open relay counts in
 * l->handles_open; gone(l) runs as each pipe closes. */
void pc_relays_close(pc_loop_t *l, void (*gone)(pc_loop_t *l));

/* Sends the request being dispatched on c to the core (the peers' relay
 * for a sealed connection) or to home loop h; the client's answer comes
 * back in order. */
void pc_relay_to_core(pc_conn_t *c, const pc_request_t *rq);
void pc_relay_to_home(pc_conn_t *c, const pc_request_t *rq, size_t h);

/* Sends an MGET of keys[0..n) to home loop h (a FORWARD with `hops` if
 * hops > 0), and w waits for its answer. 0, or PC_ECLOSED / PC_ENOMEM /
 * an encoding error (then w never runs). */
int pc_relay_mget(pc_loop_t *l, size_t h, uint32_t hops, const pc_bytes_t *keys, uint32_t n,
                  pc_relay_wait_t *w);

#endif
