/*
 * pc_mget.c -- MGET split by owner and home loop (pc_mget.h).
 */
#include "pc_mget.h"

#include <stdlib.h>
#include <string.h>

#include "pc_dispatch.h"
#include "pc_keys.h"
#include "pc_loop.h"
#include "pc_loops.h"
#include "pc_relay.h"
#include "pc_route.h"
#include "pc_view.h"

/* ---- keys sent to another member ---------------------------------------------- */

/* Part of an MGET sent to one other member. */
typedef struct mfwd {
    pc_keyreq_t *r;
    uint32_t n;
    uint32_t *idx;    /* slot index in r for each key sent */
    pc_bytes_t *keys; /* copies, for the fallback */
} mfwd_t;

/* The member did not answer: its keys are served here. */
static void mfwd_fallback(mfwd_t *f)
{
    pc_conn_t *c = f->r->req.c;
    for (uint32_t j = 0; j < f->n; j++) {
        pc_slot_t *sl = &f->r->slots[f->idx[j]];
        if (!c->closing)
            pc_keys_slot_here(c, sl, &f->keys[j]);
        pc_keys_slot_resolved(sl); /* may finish (and free) the request on the last */
    }
}

static void mfwd_done(void *arg, int err, const uint8_t *body, size_t len)
{
    mfwd_t *f = arg;
    pc_keyreq_t *r = f->r;
    pc_loop_t *l = pc_loop_of(r->req.c);
    pc_response_t resp;
    int closing = r->req.c->closing;
    if (err == 0 && !closing &&
        (pc_proto_decode_response(l->pdec, body, len, &resp) != 0 || resp.op != PC_OP_MGET ||
         resp.status != PC_ST_OK || resp.nentries != f->n))
        err = PC_EPROTO;
    if (err != 0 && !closing) {
        l->stats.forward_errors++;
        mfwd_fallback(f);
        free(f);
        return;
    }
    for (uint32_t j = 0; j < f->n; j++) {
        pc_slot_t *sl = &r->slots[f->idx[j]];
        if (err == 0 && !closing)
            pc_keys_slot_take(sl, &resp.entries[j]);
        pc_keys_slot_resolved(sl);
    }
    free(f);
}

/* Sends keys idx[0..n) of an MGET to ring member `target` as one MGET. */
static void mget_forward(pc_conn_t *c, pc_keyreq_t *r, const pc_request_t *rq,
                         const uint32_t *idx, uint32_t n, long target)
{
    pc_loop_t *l = pc_loop_of(c);
    size_t bytes = 0;
    for (uint32_t j = 0; j < n; j++)
        bytes += rq->keys[idx[j]].len;
    mfwd_t *f = malloc(sizeof *f + n * (sizeof(uint32_t) + sizeof(pc_bytes_t)) + bytes);
    if (f == NULL) {
        for (uint32_t j = 0; j < n; j++)
            r->slots[idx[j]].status = PC_ST_INTERNAL;
        return;
    }
    f->r = r;
    f->n = n;
    f->keys = (pc_bytes_t *)(f + 1);
    f->idx = (uint32_t *)(f->keys + n);
    uint8_t *p = (uint8_t *)(f->idx + n);
    for (uint32_t j = 0; j < n; j++) {
        const pc_bytes_t *k = &rq->keys[idx[j]];
        memcpy(p, k->ptr, k->len);
        f->keys[j].ptr = p;
        f->keys[j].len = k->len;
        f->idx[j] = idx[j];
        p += k->len;
    }
    r->req.waiting += n;
    pc_request_t m = {.op = PC_OP_MGET, .id = rq->id, .nkeys = n, .keys = f->keys};
    pc_buf_reset(&l->scratch);
    int rc = pc_proto_encode_forward(&l->scratch, c->hops + 1, 0, &m, &l->fbuf);
    if (rc == 0)
        rc = pc_peer_request(l->peers, pc_view_addr(l, (size_t)target), l->scratch.data,
                             l->scratch.len, mfwd_done, f);
    if (rc < 0) {
        l->stats.forward_errors++;
        mfwd_fallback(f);
        free(f);
        return;
    }
    l->stats.forwarded++;
}

/* ---- misses sent to their home loop ----------------------------------------- */

/*
 * The keys of an MGET that missed here and are homed on another loop
 * (homes on), sent to that loop as one MGET: it reads them through on its
 * own Redis connection, which orders them among that key's writes, and
 * caches them, as a GET miss relayed there would be. The answer fills
 * their slots.
 */
typedef struct mrelay {
    pc_relay_wait_t rw;
    pc_keyreq_t *r;
    uint32_t n;
    uint32_t idx[]; /* slot index in r of each key sent */
} mrelay_t;

static void mrelay_done(pc_relay_wait_t *w, pc_response_t *resp)
{
    mrelay_t *m = pc_list_entry(w, mrelay_t, rw);
    pc_keyreq_t *r = m->r;
    pc_conn_t *c = r->req.c;
    int ok = resp != NULL && resp->op == PC_OP_MGET && resp->status == PC_ST_OK &&
             resp->nentries == m->n;
    c->relayed--;
    for (uint32_t j = 0; j < m->n; j++) {
        pc_slot_t *sl = &r->slots[m->idx[j]];
        if (ok && !c->closing)
            pc_keys_slot_take(sl, &resp->entries[j]);
        else
            sl->status = PC_ST_INTERNAL; /* the node is stopping */
        pc_keys_slot_resolved(sl); /* may finish (and free) the request on the last */
    }
    free(m);
}

/* Sends keys idx[0..n) of an MGET, all homed on loop h, to that loop. If
 * they cannot go, they are read here, uncached (pc_keys_slot_miss). */
static void mget_relay(pc_conn_t *c, pc_keyreq_t *r, const pc_request_t *rq,
                       const uint32_t *idx, uint32_t n, size_t h)
{
    pc_loop_t *l = pc_loop_of(c);
    mrelay_t *m = malloc(sizeof *m + n * sizeof *m->idx);
    pc_bytes_t *keys = malloc(n * sizeof *keys);
    int rc = PC_ENOMEM;
    if (m != NULL && keys != NULL) {
        for (uint32_t j = 0; j < n; j++) {
            keys[j] = rq->keys[idx[j]];
            m->idx[j] = idx[j];
        }
        m->r = r;
        m->n = n;
        m->rw.done = mrelay_done;
        rc = pc_relay_mget(l, h, c->hops, keys, n, &m->rw);
    }
    free(keys);
    if (rc < 0) {
        free(m);
        for (uint32_t j = 0; j < n; j++)
            pc_keys_slot_miss(c, &r->slots[idx[j]], &rq->keys[idx[j]]);
        return;
    }
    r->req.waiting += n;
    c->relayed++;
}

/* ---- the split ------------------------------------------------------------ */

/* target[] values besides a member's index: dealt with here, or to home h. */
#define DONE_HERE (-1L)
#define TO_HOME(h) (-2 - (long)(h))

void pc_mget_request(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_keyreq_t *r = pc_keyreq_new(c, rq->op, rq->id, rq->nkeys);
    if (r == NULL) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return;
    }
    r->req.waiting = 1;
    if (!pc_view_clustered(l) && !(l->sh->nhomes > 1 && pc_loops_homes_on(l))) {
        for (uint32_t i = 0; i < rq->nkeys; i++) /* every key ours, every miss read here */
            pc_keys_slot_lookup(c, &r->slots[i], &rq->keys[i]);
        pc_keys_slot_resolved(&r->slots[0]);
        return;
    }
    long *target = malloc(rq->nkeys * (sizeof(long) + sizeof(uint32_t)));
    if (target == NULL) {
        for (uint32_t i = 0; i < rq->nkeys; i++)
            r->slots[i].status = PC_ST_INTERNAL;
        pc_keys_slot_resolved(&r->slots[0]);
        return;
    }
    uint32_t *idx = (uint32_t *)(target + rq->nkeys);
    for (uint32_t i = 0; i < rq->nkeys; i++) {
        const pc_bytes_t *k = &rq->keys[i];
        pc_slot_t *sl = &r->slots[i];
        pc_route_facts_t f;
        pc_dispatch_facts(c, PC_OP_GET, k, &f);
        f.here = rq->here;
        pc_route_action_t a = pc_route_mget_key(&f);
        target[i] = DONE_HERE;
        switch (a.kind) {
        case PC_ROUTE_SERVE:
            pc_keys_slot_lookup(c, sl, k);
            break;
        case PC_ROUTE_HOME: /* a hit here; a miss is the home's to read (and count) */
            if (!pc_keys_slot_hit(c, sl, k))
                target[i] = TO_HOME(a.to);
            break;
        case PC_ROUTE_FORWARD:
            target[i] = a.to;
            break;
        default:
            if (rq->here) /* a part of not_owner_reads, as a GET's (pc_keys_get_here) */
                l->stats.here_reads++;
            pc_keys_slot_here(c, sl, k);
            break;
        }
    }
    /* One MGET per member or home loop, for all of its keys. */
    for (uint32_t i = 0; i < rq->nkeys; i++) {
        if (target[i] == DONE_HERE)
            continue;
        long t = target[i];
        uint32_t n = 0;
        for (uint32_t j = i; j < rq->nkeys; j++) {
            if (target[j] == t) {
                idx[n++] = j;
                target[j] = DONE_HERE;
            }
        }
        if (t >= 0)
            mget_forward(c, r, rq, idx, n, t);
        else
            mget_relay(c, r, rq, idx, n, (size_t)(-2 - t));
    }
    free(target);
    pc_keys_slot_resolved(&r->slots[0]);
}
