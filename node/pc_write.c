/*
 * pc_write.c -- write-through and compare-and-set (pc_write.h).
 */
#include "pc_write.h"

#include "pc_forward.h"
#include "pc_keys.h"
#include "pc_loop.h"
#include "pc_replicate.h"
#include "pc_slots.h"
#include "pc_vclock.h"

static void write_issue(pc_keyreq_t *r);

/* Runs the next compare-and-set that waited for this key's writes. */
static void drain_deferred(pc_keystate_t *ks)
{
    while (ks->pending_writes == 0 && ks->deferred) {
        pc_keyreq_t *r = ks->deferred;
        ks->deferred = r->next_deferred;
        if (ks->deferred == NULL)
            ks->deferred_tail = NULL;
        r->next_deferred = NULL;
        r->req.waiting = 0;
        write_issue(r);
    }
}

static void write_done(void *arg, int err, int applied)
{
    pc_keyreq_t *r = arg;
    pc_loop_t *l = pc_loop_of(r->req.c);
    pc_keystate_t *ks = r->ks;
    uint64_t now = pc_loop_now(l);
    ks->pending_writes--;
    r->req.waiting = 0;

    if (err == PC_ERETRY) {
        /* Redis Cluster moved the key's slot under the write: nothing was
         * applied, and the client may send it again (pc_backend_int.h). */
        pc_req_answer_status(&r->req, PC_ST_RETRY,
                             "redis cluster: the key's slot is moving; not applied");
    } else if (err != 0) {
        /* Redis may or may not have applied it (a timeout is ambiguous), so
         * the cached copy can no longer be trusted: drop it, and the next
         * read goes to Redis. */
        pc_keys_drop(l, r->key, r->klen);
        pc_replicate_delete(l, r->key, r->klen);
        pc_req_answer_status(&r->req, PC_ST_BACKEND_UNAVAILABLE,
                             "redis unavailable; the write may not have been applied");
    } else if (r->req.op == PC_OP_SET) {
        if (!applied) {
            pc_req_answer_status(&r->req, r->cond == PC_COND_NX ? PC_ST_EXISTS : PC_ST_NOT_STORED,
                                 NULL);
        } else {
            uint64_t v = pc_keys_version(l);
            if (pc_store_set(l->store, r->key, r->klen, r->val, r->vlen, r->flags, v,
                             pc_slots_cap_key(l, r->key, r->klen, pc_loop_expire_at(l, r->ttl_ms)),
                             PC_STORE_SET_ALWAYS, now) != 0)
                pc_keys_drop(l, r->key, r->klen); /* never serve the old one */
            pc_replicate_write(l, r->key, r->klen, r->val, r->vlen, r->flags, v,
                               pc_loop_ttl_wire(r->ttl_ms));
            pc_response_t resp = {.op = r->req.op, .id = r->req.id, .status = PC_ST_OK,
                                  .version = v};
            pc_req_answer(&r->req, &resp, NULL);
        }
    } else if (r->req.op == PC_OP_DEL) {
        pc_keys_drop(l, r->key, r->klen);
        pc_replicate_delete(l, r->key, r->klen);
        pc_req_answer_status(&r->req, applied ? PC_ST_OK : PC_ST_NOT_FOUND, NULL);
    } else { /* TOUCH */
        if (applied)
            pc_store_touch(l->store, r->key, r->klen,
                           pc_slots_cap_key(l, r->key, r->klen, pc_loop_expire_at(l, r->ttl_ms)),
                           now);
        else
            pc_keys_drop(l, r->key, r->klen);
        /* Replicas drop their copy rather than track expiry changes: a new
         * TTL on an old version cannot be ordered against other writes. */
        pc_replicate_delete(l, r->key, r->klen);
        pc_req_answer_status(&r->req, applied ? PC_ST_OK : PC_ST_NOT_FOUND, NULL);
    }
    drain_deferred(ks);
    pc_keys_state_release(l, ks);
}

/* A compare-and-set against the cached version: PC_ST_OK, EXISTS (the
 * version differs) or NOT_FOUND (no cached copy to vouch for). */
static uint32_t cas_check(pc_loop_t *l, const uint8_t *key, size_t klen, uint64_t cas)
{
    pc_item_t *it;
    if (pc_store_peek(l->store, key, klen, pc_loop_now(l), &it) != 0)
        return PC_ST_NOT_FOUND;
    uint32_t st = pc_item_version(it) == cas ? PC_ST_OK : PC_ST_EXISTS;
    pc_store_release(l->store, it);
    return st;
}

/* Sends a write to Redis (r->ks set, no earlier write pending for CAS). */
static void write_issue(pc_keyreq_t *r)
{
    pc_loop_t *l = pc_loop_of(r->req.c);
    pc_keystate_t *ks = r->ks;
    uint32_t st = r->cas != 0 ? cas_check(l, r->key, r->klen, r->cas) : PC_ST_OK;
    if (st != PC_ST_OK) {
        pc_req_answer_status(&r->req, st,
                             st == PC_ST_EXISTS
                                 ? "version differs: read the key again and retry"
                                 : "no cached copy to compare: read the key again and retry");
        return;
    }
    int rc;
    switch (r->req.op) {
    case PC_OP_SET:
        rc = pc_backend_set(l->backend, r->key, r->klen, r->val, r->vlen, r->ttl_ms, r->cond,
                            r->flags, r->until_ms, write_done, r);
        break;
    case PC_OP_DEL:
        rc = pc_backend_del(l->backend, r->key, r->klen, r->until_ms, write_done, r);
        break;
    default:
        rc = pc_backend_expire(l->backend, r->key, r->klen, r->ttl_ms, r->until_ms, write_done,
                               r);
        break;
    }
    if (rc < 0) {
        pc_req_answer_status(&r->req, PC_ST_BACKEND_UNAVAILABLE,
                             rc == PC_EBACKEND ? "redis unavailable" : pc_strerror(rc));
        return;
    }
    l->stats.backend_writes++;
    r->req.waiting = 1;
    ks->pending_writes++;
}

/*
 * For a write being dispatched on c: 0 when it may be applied, else 1 --
 * whoever sent it has given up on it by now, so it was answered RETRY
 * (nothing applied) and counted. Two deadlines may say so
 * (PROTOCOL.md §5.5, §5.10): the FORWARD's, from the member that relayed
 * it, and the request's own, from the client, given on the clock of the
 * node it sent it to -- this one, or the relaying member. Another
 * member's clock may be PC_FORWARD_CLOCK_SKEW_MS off ours. *until_ms
 * gets the moment it may be applied until (wall-clock ms; 0 = no limit
 * but the node's own), for Redis' fence.
 */
static int too_late(pc_conn_t *c, const pc_request_t *rq, uint64_t *until_ms)
{
    uint64_t until = 0;
    int forwarded_late = 0;
    if (c->fwd_deadline != 0) {
        until = c->fwd_deadline > PC_FORWARD_CLOCK_SKEW_MS
                    ? c->fwd_deadline - PC_FORWARD_CLOCK_SKEW_MS
                    : 1;
        forwarded_late = 1;
    }
    if (rq->deadline_ms != 0) {
        uint64_t skew = c->hops > 0 ? PC_FORWARD_CLOCK_SKEW_MS : 0;
        uint64_t own = rq->deadline_ms > skew ? rq->deadline_ms - skew : 1;
        if (until == 0 || own < until) {
            until = own;
            forwarded_late = 0;
        }
    }
    *until_ms = until;
    if (until == 0 || (pc_vclock_wall() >> 16) < until)
        return 0;
    pc_loop_t *l = pc_loop_of(c);
    if (forwarded_late)
        l->stats.forwarded_late++;
    else
        l->stats.writes_late++;
    pc_conn_answer_error(c, rq->op, rq->id, PC_ST_RETRY,
                         forwarded_late
                             ? "the forwarded write arrived after the relaying node gave up on "
                               "it: nothing was applied, retry"
                             : "the write arrived after its deadline (the client had given up "
                               "on it): nothing was applied, retry");
    return 1;
}

void pc_write_local(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    uint64_t until;
    if (too_late(c, rq, &until))
        return;
    uint64_t now = pc_loop_now(l);
    pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK};
    if (rq->op == PC_OP_SET) {
        /* The condition is checked by the store, under the lock that
         * stores: other loops write the same store at the same time. */
        int mode = PC_STORE_SET_ALWAYS;
        if (rq->cas != 0)
            mode = PC_STORE_SET_IF_VERSION;
        else if (rq->cond == PC_COND_NX)
            mode = PC_STORE_SET_IF_ABSENT;
        else if (rq->cond == PC_COND_XX)
            mode = PC_STORE_SET_IF_PRESENT;
        resp.version = pc_keys_version(l);
        int rc = pc_store_set_if(
            l->store, rq->key.ptr, rq->key.len, rq->value.ptr, rq->value.len, rq->flags,
            resp.version,
            pc_slots_cap_key(l, rq->key.ptr, rq->key.len, pc_loop_expire_at(l, rq->ttl_ms)), mode,
            rq->cas, now);
        if (rc == PC_EEXISTS) /* NX: present; CAS: another version */
            resp.status = PC_ST_EXISTS;
        else if (rc == PC_ENOTFOUND) /* XX: absent; CAS: nothing to compare */
            resp.status = rq->cas == 0 || rq->cond == PC_COND_XX ? PC_ST_NOT_STORED
                                                                 : PC_ST_NOT_FOUND;
        else if (rc < 0)
            resp.status = pc_err_to_status(rc);
        if (resp.status == PC_ST_OK)
            pc_replicate_write(l, rq->key.ptr, rq->key.len, rq->value.ptr, rq->value.len,
                               rq->flags, resp.version, pc_loop_ttl_wire(rq->ttl_ms));
    } else if (rq->op == PC_OP_DEL) {
        if (pc_store_del(l->store, rq->key.ptr, rq->key.len, now) != 0)
            resp.status = PC_ST_NOT_FOUND;
        else
            pc_replicate_delete(l, rq->key.ptr, rq->key.len);
        pc_slots_tomb_add(l, rq->key.ptr, rq->key.len);
    } else {
        if (pc_store_touch(
                l->store, rq->key.ptr, rq->key.len,
                pc_slots_cap_key(l, rq->key.ptr, rq->key.len, pc_loop_expire_at(l, rq->ttl_ms)),
                now) != 0)
            resp.status = PC_ST_NOT_FOUND;
        else
            pc_replicate_delete(l, rq->key.ptr, rq->key.len);
    }
    if (resp.status == PC_ST_OK)
        pc_conn_answer(c, &resp);
    else
        pc_conn_answer_error(c, rq->op, rq->id, resp.status, NULL);
}

void pc_write_request(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    if (l->backend == NULL) {
        pc_write_local(c, rq);
        return;
    }
    uint64_t until;
    if (too_late(c, rq, &until))
        return;
    if (pc_keys_cut_off(l)) {
        /* The other side of a partition may own this key now and cache
         * it: a write from here would go to Redis behind its back. */
        l->stats.writes_cut_off++;
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_RETRY,
                             "this node hears from no majority of the cluster (a partition?): "
                             "it takes no writes until it does; nothing was applied, retry");
        return;
    }
    /* The frame buffer moves on; the store update after Redis' ack needs
     * its own copy of key and value. */
    pc_keyreq_t *r = pc_keyreq_copy(c, rq, 0, 1);
    if (r == NULL)
        return;
    r->ttl_ms = rq->ttl_ms;
    r->flags = rq->flags;
    r->cond = rq->cond;
    r->cas = rq->op == PC_OP_SET ? rq->cas : 0;
    r->until_ms = until;

    r->ks = pc_keys_state(l, r->key, r->klen);
    if (r->ks == NULL) {
        pc_req_answer_status(&r->req, PC_ST_INTERNAL, "out of memory");
        return;
    }
    /* A compare-and-set must see the outcome of every earlier write to its
     * key, so it waits for them; plain writes pipeline freely because Redis
     * applies them in order. */
    if (r->cas != 0 && (r->ks->pending_writes > 0 || r->ks->deferred)) {
        r->req.waiting = 1;
        if (r->ks->deferred_tail)
            r->ks->deferred_tail->next_deferred = r;
        else
            r->ks->deferred = r;
        r->ks->deferred_tail = r;
        return;
    }
    pc_keystate_t *ks = r->ks;
    write_issue(r);
    pc_keys_state_release(l, ks);
}
