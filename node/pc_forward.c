/*
 * pc_forward.c -- single-key requests forwarded to their owner.
 */
#include "pc_forward.h"

#include "pc_keys.h"
#include "pc_loop.h"
#include "pc_view.h"

/* A forwarded request whose owner did not answer. */
static void fwd_failed(pc_keyreq_t *r, int err)
{
    pc_loop_t *l = pc_loop_of(r->req.c);
    l->stats.forward_errors++;
    if (r->req.op == PC_OP_GET) {
        /* Reads stay available: served here (see pc_keys_slot_here). */
        pc_bytes_t key = {r->key, r->klen};
        r->req.waiting = 1;
        pc_keys_slot_here(r->req.c, &r->slots[0], &key);
        pc_keys_slot_resolved(&r->slots[0]);
        return;
    }
    pc_req_answer_status(&r->req, PC_ST_BACKEND_UNAVAILABLE,
                         err == PC_ETIMEDOUT
                             ? "the key's owner did not answer in time; the write may or may "
                               "not have been applied"
                             : "the key's owner is unreachable; the write may or may not have "
                               "been applied");
}

static void fwd_done(void *arg, int err, const uint8_t *body, size_t len)
{
    pc_keyreq_t *r = arg;
    pc_loop_t *l = pc_loop_of(r->req.c);
    r->req.waiting = 0;
    if (pc_req_gone(&r->req))
        return;
    if (err != 0) {
        fwd_failed(r, err);
        return;
    }
    /* Relay only a well-formed answer to this very request. An error
     * about the FORWARD itself (an older or confused peer) becomes ours. */
    pc_response_t resp;
    if (pc_proto_decode_response(l->pdec, body, len, &resp) != 0) {
        fwd_failed(r, PC_EPROTO);
        return;
    }
    if (resp.op == PC_OP_FORWARD && resp.status != PC_ST_OK) {
        pc_req_answer_status(&r->req, PC_ST_INTERNAL,
                             "the key's owner refused the forwarded request");
        return;
    }
    if (resp.op != r->req.op || resp.id != r->req.id) {
        fwd_failed(r, PC_EPROTO);
        return;
    }
    pc_req_answer_raw(&r->req, body, len);
}

void pc_forward_request(pc_conn_t *c, const pc_request_t *rq, long target)
{
    pc_loop_t *l = pc_loop_of(c);
    /* The key is kept for a GET whose owner does not answer: it is then
     * served here. */
    pc_keyreq_t *r = pc_keyreq_copy(c, rq, rq->op == PC_OP_GET ? 1 : 0, 0);
    if (r == NULL)
        return;
    r->req.waits_on = PC_REQ_FORWARDED;
    /* A write carries the moment this node gives up on it: the owner
     * applies nothing after that, and this node tells its client of a
     * failure no earlier (docs/CONSISTENCY.md §1). */
    int write = rq->op != PC_OP_GET;
    pc_request_t f = {.op = PC_OP_FORWARD, .id = rq->id, .hops = c->hops + 1,
                      .deadline_ms = write ? pc_peer_deadline_wall_ms(l->peers) : 0,
                      .body = {c->cur_body, c->cur_len}};
    pc_buf_reset(&l->scratch);
    /* A request that came without a frame (pc_dispatch_request) is
     * encoded into the FORWARD here. */
    int rc = c->cur_body != NULL
                 ? pc_proto_encode_request(&l->scratch, &f)
                 : pc_proto_encode_forward(&l->scratch, f.hops, f.deadline_ms, rq, &l->fbuf);
    const char *addr = pc_view_addr(l, (size_t)target);
    if (rc == 0)
        rc = write ? pc_peer_request_write(l->peers, addr, l->scratch.data, l->scratch.len,
                                           fwd_done, r)
                   : pc_peer_request(l->peers, addr, l->scratch.data, l->scratch.len, fwd_done,
                                     r);
    if (rc < 0) {
        if (r->req.op != PC_OP_GET) {
            /* Nothing left this node: a definite "not applied". */
            l->stats.forward_errors++;
            pc_req_answer_status(&r->req, PC_ST_RETRY,
                                 "the key's owner is unreachable from this node; nothing was "
                                 "applied, retry");
            return;
        }
        fwd_failed(r, rc);
        return;
    }
    r->req.waiting = 1;
    pc_req_time_as(&r->req, PC_LAT_FORWARD);
    l->stats.forwarded++;
}
