/*
 * pc_dispatch.c -- decode, authorise, route, serve (pc_dispatch.h).
 */
#include "pc_dispatch.h"

#include <string.h>

#include "pc_auth.h"
#include "pc_forward.h"
#include "pc_keys.h"
#include "pc_loop.h"
#include "pc_loops.h"
#include "pc_mget.h"
#include "pc_peerops.h"
#include "pc_relay.h"
#include "pc_replicate.h"
#include "pc_stats.h"
#include "pc_view.h"
#include "pc_write.h"

static int is_key_op(uint32_t op)
{
    return op == PC_OP_GET || op == PC_OP_MGET || op == PC_OP_SET || op == PC_OP_DEL ||
           op == PC_OP_TOUCH;
}

void pc_dispatch_facts(pc_conn_t *c, uint32_t op, const pc_bytes_t *key, pc_route_facts_t *f)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_shared_t *sh = l->sh;
    memset(f, 0, sizeof *f);
    f->op = op;
    f->hops = c->hops;
    f->sealed = c->sealed;
    f->relayed_writes = c->relayed_writes > 0;
    f->core = pc_loop_is_core(l);
    f->several = sh->nloops > 1;
    f->homes = f->several && atomic_load(&sh->homes);
    f->homed = sh->nhomes > 1;
    f->has_backend = sh->has_backend;
    f->index = l->index;
    f->target = -1;
    if (key == NULL || key->len == 0)
        return;
    uint32_t slot = pc_ring_slot(key->ptr, key->len);
    f->home = pc_loops_home_for(l, slot);
    f->alone = atomic_load_explicit(&sh->alone, memory_order_relaxed);
    f->owns = pc_view_owns(sh, slot);
    f->local_writes =
        !f->has_backend && f->alone &&
        pc_loop_now(l) >= atomic_load_explicit(&sh->settle_until, memory_order_relaxed);
    pc_route_t rt;
    pc_view_place(l, slot, &rt);
    f->role = rt.role;
    f->target = pc_view_target(l, &rt, op == PC_OP_GET || op == PC_OP_MGET);
}

/* Requests no loop would serve: answered wherever they arrive. 1 = so. */
static int refuse_invalid(pc_conn_t *c, const pc_request_t *rq)
{
    if (rq->op == PC_OP_SET && rq->cas != 0 && rq->cond == PC_COND_NX) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST,
                             "compare-and-set cannot be combined with NX");
        return 1;
    }
    if (rq->op == PC_OP_MGET && rq->nkeys == 0) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "MGET needs at least one key");
        return 1;
    }
    return 0;
}

static void serve(pc_conn_t *c, const pc_request_t *rq)
{
    switch (rq->op) {
    case PC_OP_HELLO:
        pc_auth_hello(c, rq);
        return;
    case PC_OP_PING: {
        pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK};
        pc_conn_answer(c, &resp);
        return;
    }
    case PC_OP_GET:
        pc_keys_get(c, rq);
        return;
    case PC_OP_MGET:
        pc_mget_request(c, rq);
        return;
    case PC_OP_SET:
    case PC_OP_DEL:
    case PC_OP_TOUCH:
        pc_write_request(c, rq);
        return;
    case PC_OP_STATS:
        pc_stats_request(c, rq);
        return;
    case PC_OP_SYNC:
        pc_peerops_sync(c, rq);
        return;
    case PC_OP_CLUSTER:
        pc_peerops_cluster(c, rq);
        return;
    case PC_OP_REPLICATE:
        pc_replicate_apply(c, rq);
        return;
    default:
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST, "unknown operation");
        return;
    }
}

/* PC_ROUTE_LOCAL: a worker's own part while homes are off (or a
 * REPLICATE of writes while they are on); 0 = the core's. */
static int serve_local(pc_conn_t *c, const pc_request_t *rq)
{
    switch (rq->op) {
    case PC_OP_GET:
        return pc_keys_local_get(c, rq);
    case PC_OP_MGET:
        return pc_keys_local_mget(c, rq);
    case PC_OP_REPLICATE:
        return pc_replicate_apply_here(c, rq);
    default:
        pc_write_local(c, rq);
        return 1;
    }
}

/* Carries out a: rq is the request (inside a FORWARD, if it came in
 * one), `whole` what goes to another loop (the FORWARD itself). */
static void act(pc_conn_t *c, const pc_request_t *rq, const pc_request_t *whole,
                pc_route_action_t a)
{
    pc_loop_t *l = pc_loop_of(c);
    if (a.hits_first && pc_keys_hit(c, rq))
        return;
    switch (a.kind) {
    case PC_ROUTE_SERVE:
    case PC_ROUTE_SPLIT:
        serve(c, rq);
        return;
    case PC_ROUTE_SERVE_HERE:
        pc_keys_get_here(c, rq);
        return;
    case PC_ROUTE_FORWARD:
        pc_forward_request(c, rq, a.to);
        return;
    case PC_ROUTE_HOME:
        pc_relay_to_home(c, whole, (size_t)a.to);
        return;
    case PC_ROUTE_LOCAL:
        if (!serve_local(c, rq))
            pc_relay_to_core(c, whole);
        return;
    case PC_ROUTE_RETRY_RING:
        l->stats.retry_answers++;
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_RETRY,
                             "this node does not own the key on its ring (the cluster is "
                             "changing): nothing was applied, retry");
        return;
    case PC_ROUTE_RETRY_HOME:
        l->stats.retry_answers++;
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_RETRY,
                             "the node is changing which of its loops writes this key: nothing "
                             "was applied, retry");
        return;
    default: /* PC_ROUTE_CORE */
        pc_relay_to_core(c, whole);
        return;
    }
}

static void decide_and_act(pc_conn_t *c, const pc_request_t *rq, const pc_request_t *whole)
{
    pc_route_facts_t f;
    pc_dispatch_facts(c, rq->op, is_key_op(rq->op) && rq->op != PC_OP_MGET ? &rq->key : NULL,
                      &f);
    f.repl_write = rq->op == PC_OP_REPLICATE && rq->mode == PC_REPL_WRITE;
    f.here = rq->op == PC_OP_GET && rq->here;
    act(c, rq, whole, pc_route_decide(&f));
}

/* A member's FORWARD: the client request inside it is served like one
 * from a client, except that it is never sent to another member again
 * (c->hops > 0); a loop that is not its key's home sends it on whole. */
static void forward_in(pc_conn_t *c, const pc_request_t *fw)
{
    pc_loop_t *l = pc_loop_of(c);
    const uint8_t *body = fw->body.ptr;
    uint32_t len = fw->body.len;
    pc_request_t in;
    int rc = pc_proto_decode_request(l->dec, body, len, &in); /* fw's own decode is spent now */
    if (rc == PC_EPROTO || rc == PC_ENOMEM) {
        pc_conn_answer_error(c, PC_OP_FORWARD, fw->id, PC_ST_BAD_REQUEST,
                             "FORWARD body is not a request");
        return;
    }
    if (rc == PC_ETOOBIG) {
        pc_conn_answer_error(c, in.op, in.id, PC_ST_TOO_LARGE, pc_proto_decoder_why(l->dec));
        return;
    }
    if (rc < 0) {
        pc_conn_answer_error(c, in.op, in.id, PC_ST_BAD_REQUEST, pc_proto_decoder_why(l->dec));
        return;
    }
    if (!is_key_op(in.op)) {
        pc_conn_answer_error(c, PC_OP_FORWARD, fw->id, PC_ST_BAD_REQUEST,
                             "only key operations can be forwarded");
        return;
    }
    if (refuse_invalid(c, &in))
        return;
    c->hops = fw->hops;
    c->fwd_deadline = fw->deadline_ms;
    pc_route_facts_t f;
    pc_dispatch_facts(c, in.op, in.op != PC_OP_MGET ? &in.key : NULL, &f);
    f.here = in.op == PC_OP_GET && in.here;
    pc_route_action_t a = pc_route_decide(&f);
    if (a.kind != PC_ROUTE_HOME && a.kind != PC_ROUTE_CORE) {
        l->stats.forwarded_in++;
        c->cur_body = body;
        c->cur_len = len;
    }
    act(c, &in, fw, a);
    c->hops = 0;
    c->fwd_deadline = 0;
}

static void dispatch(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    if (pc_auth_refuse(c, rq) || refuse_invalid(c, rq))
        return;
    /* A worker counts itself busy across the decision and the serving:
     * the core, which turns homes off before it reads the workers' busy
     * counts, either sees this dispatch or is seen by it (pc_loops.h). */
    pc_loops_enter(l);
    if (rq->op == PC_OP_FORWARD)
        forward_in(c, rq);
    else
        decide_and_act(c, rq, rq);
    pc_loops_leave(l);
}

void pc_dispatch_ahead(pc_conn_t *c, const pc_bytes_t *bodies, size_t n)
{
    const void *keys[PC_STORE_PREFETCH_MAX];
    size_t klens[PC_STORE_PREFETCH_MAX], m = 0;
    for (size_t i = 0; i < n && m < PC_STORE_PREFETCH_MAX; i++) {
        pc_bytes_t k;
        if (pc_proto_peek_get_key(bodies[i].ptr, bodies[i].len, &k)) {
            keys[m] = k.ptr;
            klens[m++] = k.len;
        }
    }
    if (m > 1)
        pc_store_prefetch(pc_loop_of(c)->store, keys, klens, m);
}

void pc_dispatch_frame(pc_conn_t *c, const uint8_t *body, uint32_t len)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_request_t rq;
    int rc = pc_proto_decode_request(l->dec, body, len, &rq);
    if (!c->internal) /* a relayed request was counted by the loop that read it */
        l->stats.requests++;
    if (!c->authed && rc < 0 && (rc == PC_EPROTO || rc == PC_ENOMEM ||
                                 (rq.op != PC_OP_HELLO && rq.op != PC_OP_PING))) {
        /* Before a good HELLO only HELLO and PING are looked at
         * (PROTOCOL.md §5.1): anything else, well-formed or not, is told
         * to authenticate; what is not a request at all ends the
         * connection, as it would after a HELLO. */
        l->stats.auth_refused++;
        if (rc == PC_EPROTO || rc == PC_ENOMEM)
            pc_conn_bad_frame(c, PC_ST_AUTH_REQUIRED, "send HELLO with the token first");
        else
            pc_conn_answer_error(c, rq.op, rq.id, PC_ST_AUTH_REQUIRED,
                                 "send HELLO with the token first");
    } else if (rc == PC_EPROTO || rc == PC_ENOMEM) {
        pc_conn_bad_frame(c, PC_ST_BAD_REQUEST, "malformed frame (not a peercache request)");
    } else if (rc == PC_ETOOBIG) {
        pc_conn_answer_error(c, rq.op, rq.id, PC_ST_TOO_LARGE, pc_proto_decoder_why(l->dec));
    } else if (rc < 0) {
        pc_conn_answer_error(c, rq.op, rq.id, PC_ST_BAD_REQUEST, pc_proto_decoder_why(l->dec));
    } else {
        c->cur_body = body;
        c->cur_len = len;
        dispatch(c, &rq);
    }
}

void pc_dispatch_request(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_of(c)->stats.requests++;
    c->cur_body = NULL;
    c->cur_len = 0;
    if (refuse_invalid(c, rq))
        return;
    pc_loops_enter(pc_loop_of(c));
    decide_and_act(c, rq, rq);
    pc_loops_leave(pc_loop_of(c));
}
