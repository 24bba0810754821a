/*
 * pc_client_mget.c -- libpeercache: MGET, by the ring (the keys grouped
 * by node, one MGET per node and round) or through the seeds (all keys
 * in one request). The rules are pc_client.h's; the layouts it shares
 * are in pc_client_int.h.
 */
#include "pc_client.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pc_client_int.h"
#include "pc_proto.h"
#include "pc_ring.h"

/* ---- MGET ------------------------------------------------------------------- */

/* Per-key state of a routed MGET. */
enum {
    K_DONE = 1 << 0,   /* items[i] holds the answer or the key's error */
    K_RETRY = 1 << 1,  /* answered RETRY in this round */
    K_SENT = 1 << 2,   /* sent at least once: sending again is a retry */
    K_HEDGED = 1 << 3, /* its owner was given up on at the stall limit in this
                          call: it is not waited for that way again */
};

/* mget_send: the owner did not answer within its stall limit; its request
 * is that connection's orphan now, and the keys are still pending. */
#define HEDGED 1

typedef struct mget {
    size_t n;
    const pc_bytes_t *keys;
    pc_mget_item_t *items;
    uint8_t *st;          /* K_* per key */
    uint32_t *target;     /* ring member per pending key, this round */
    bool *owner;          /* target is the key's owner */
    bool *spare;          /* the key has a placement after its target */
    size_t *idx;          /* keys of the group being sent */
    pc_bytes_t *group;    /* their slices */
} mget_t;

static int item_status(uint32_t status)
{
    int rc = pc_status_to_err(status);

    return rc != 0 ? rc : PC_EPROTO;
}

/*
 * pc_cl_ep_call() for an MGET to its keys' owner, waiting for the answer
 * only up to e's stall limit (pc_health.h) rather than the whole timeout.
 * An MGET's time grows with its keys and their misses, so the hedge delay
 * learned from single round trips would give up on a node that is merely
 * busy; past the stall limit the node counts as unresponsive anyway.
 * HEDGED when the answer did not come by then: the request is left as
 * e's orphan (its late reply is dropped), or, if e already owes one, the
 * connection is closed; either way e's breaker opens, so the keys go to
 * their next placements. Else as pc_cl_ep_call().
 */
static int call_or_hedge(pc_client_t *c, ep_t *e, pc_request_t *req, pc_response_t *resp)
{
    for (int attempt = 0;; attempt++) {
        int64_t t0 = pc_cl_now_us(), t0_ms = t0 / 1000;
        int64_t stall = pc_health_stall_ms(&e->health, c->timeout_ms);
        bool reused, sent = false;
        int rc = pc_cl_ep_ready(c, e, &reused);

        if (rc == 0)
            rc = pc_cl_encode_request(c, e, req, t0_ms + c->timeout_ms);
        if (rc != 0)
            return rc; /* nothing sent: e's connection is as it was */
        rc = pc_cl_send_request(c, e, req, resp, t0_ms + c->timeout_ms, &sent);
        if (rc == 0) {
            rc = pc_cl_await_reply(c, e, req, resp, t0_ms + stall);
            if (rc == 0) {
                pc_health_ok(&e->health, pc_cl_now_us() - t0);
                return 0;
            }
            if (rc == PC_ETIMEDOUT) {
                int64_t now = pc_cl_now_ms();

                if (e->orphan_id == 0) {
                    e->orphan_id = req->id;
                    e->orphan_at_ms = t0_ms;
                } else {
                    pc_cl_conn_close(e); /* one orphan is all it keeps track of */
                }
                if (pc_health_state(&e->health, now) == PC_HEALTH_CLOSED) {
                    (void)pc_health_fail(&e->health, now);
                    c->counters.breaker_opens++;
                    c->ring_doubt = true;
                }
                c->counters.mget_hedges++;
                return HEDGED;
            }
        }
        pc_cl_conn_close(e);
        if (rc == PC_ECONN && reused && attempt == 0)
            continue; /* closed while idle: once more, as pc_cl_ep_call does */
        return rc;
    }
}

/*
 * Sends one MGET of the keys m->idx[0..cnt) to e (NULL: through the
 * seeds) and files the answers. `here` asks e to answer every key itself
 * (PROTOCOL.md §5.4); `hedge` gives e up at its stall limit
 * (call_or_hedge). Keys answered RETRY get K_RETRY and stay pending. 0
 * when the node answered the MGET (*retry: some keys were RETRY);
 * PC_ERETRY when it answered RETRY for the whole request (all keys
 * K_RETRY, *via set); HEDGED (keys K_HEDGED, still pending); else the
 * error, which the caller judges with pc_cl_try_next_node().
 */
static int mget_send(pc_client_t *c, mget_t *m, ep_t *e, size_t cnt, bool here, bool hedge,
                     bool *retry, ep_t **via)
{
    pc_request_t req;
    pc_response_t resp;
    bool sent;
    int rc;

    *retry = false;
    for (size_t j = 0; j < cnt; j++) {
        m->group[j] = m->keys[m->idx[j]];
        m->st[m->idx[j]] |= K_SENT;
    }
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_MGET;
    req.nkeys = (uint32_t)cnt;
    req.keys = m->group;
    req.here = here;
    if (e == NULL) {
        rc = pc_cl_seed_call(c, &req, &resp, via);
        if (rc != 0 && rc != PC_ERETRY)
            return rc;
        e = *via; /* RETRY is filed below */
    } else {
        *via = e;
        rc = hedge ? call_or_hedge(c, e, &req, &resp) : pc_cl_ep_call(c, e, &req, &resp, &sent);
        if (rc == HEDGED) {
            for (size_t j = 0; j < cnt; j++)
                m->st[m->idx[j]] |= K_HEDGED;
        }
        if (rc != 0)
            return rc;
        pc_cl_note_fp(c, e, resp.ring_fp);
    }
    if (resp.status == PC_ST_RETRY) {
        c->counters.retry_answers++;
        for (size_t j = 0; j < cnt; j++)
            m->st[m->idx[j]] |= K_RETRY;
        return pc_cl_status_error(c, resp.status, resp.message);
    }
    if (resp.status != PC_ST_OK)
        return pc_cl_status_error(c, resp.status, resp.message);
    if (resp.nentries != cnt) {
        pc_cl_set_msg(c, "%s: MGET of %zu keys answered with %u entries", e->label, cnt,
                      resp.nentries);
        pc_cl_conn_close(e);
        return PC_EPROTO;
    }
    for (size_t j = 0; j < cnt; j++) {
        const pc_entry_t *en = &resp.entries[j];
        size_t i = m->idx[j];

        if (en->status == PC_ST_RETRY) {
            m->st[i] |= K_RETRY;
            *retry = true;
            continue;
        }
        m->st[i] |= K_DONE;
        if (en->status != PC_ST_OK) {
            m->items[i].status = item_status(en->status);
        } else if (pc_cl_copy_value(&m->items[i].value, en) != 0) {
            pc_cl_set_msg(c, "out of memory copying the values");
            return PC_ENOMEM;
        }
    }
    if (*retry)
        c->counters.retry_answers++;
    return 0;
}

/*
 * Picks this round's node for every pending key: its first placement
 * that has not failed in this call, and past one that stopped answering
 * (or still owes an answer) to the first that has not, as for a GET. A
 * key with none left is done, with error `last`.
 */
static void mget_assign(pc_client_t *c, mget_t *m, int last)
{
    for (size_t i = 0; i < m->n; i++) {
        uint32_t pl[PC_RING_MAX_REPLICAS];
        size_t np, k = 0, j;

        m->target[i] = UINT32_MAX;
        if (m->st[i] & K_DONE)
            continue;
        np = pc_cl_placements(c, m->keys[i], pl);
        while (k < np && pc_cl_failed(c, c->member_ep[pl[k]]))
            k++;
        if (k == np) {
            m->st[i] |= K_DONE;
            m->items[i].status = last != 0 ? last : PC_ECONN;
            continue;
        }
        for (j = k; j < np; j++) {
            ep_t *x = c->member_ep[pl[j]];

            if (!pc_cl_failed(c, x) && !pc_cl_avoid(c, x))
                break;
        }
        if (j < np && j != k) {
            c->counters.unresponsive_skips++;
            k = j;
        }
        m->target[i] = pl[k];
        m->owner[i] = k == 0;
        m->spare[i] = k + 1 < np;
    }
}

/*
 * The rounds of a ring-aware MGET (pc_client.h has the rules). Each round
 * sends every pending key once, one MGET per node; a round ends with
 * keys done, nodes marked failed, or RETRY rounds used up, so the loop
 * ends. 0, or the error that fails the whole call.
 */
static int mget_routed(pc_client_t *c, mget_t *m)
{
    char lastmsg[ERRMSG_MAX] = "", retrymsg[ERRMSG_MAX] = "";
    int last = 0, rounds = 0; /* last: the last node failure */
    bool answered = false;

    for (;;) {
        bool retry = false, pending = false;
        ep_t *retry_from = NULL;
        int rc;

        for (size_t i = 0; i < m->n && !pending; i++)
            pending = !(m->st[i] & K_DONE);
        if (!pending)
            break;
        rc = pc_cl_ring_ensure(c);
        if (rc != 0) {
            if (last == 0) {
                last = rc;
                memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
            }
            break;
        }
        if (c->ring == NULL) {
            /* Seed-only: every pending key in one MGET, as before rings. */
            size_t cnt = 0;
            bool resend = false;

            for (size_t i = 0; i < m->n; i++) {
                if (!(m->st[i] & K_DONE)) {
                    resend = resend || (m->st[i] & K_SENT);
                    m->idx[cnt++] = i;
                }
            }
            if (resend)
                c->counters.retries++;
            rc = mget_send(c, m, NULL, cnt, false, false, &retry, &retry_from);
            if (rc == PC_ERETRY) {
                retry = true;
                memcpy(retrymsg, c->errmsg, sizeof(retrymsg));
            } else if (rc != 0) {
                if (!pc_cl_try_next_node(rc))
                    return rc;
                last = rc;
                memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
                break;
            } else {
                answered = true;
            }
        } else {
            mget_assign(c, m, last);
            for (size_t i = 0; i < m->n; i++) {
                uint32_t t = m->target[i];
                size_t cnt = 0;
                bool resend = false, fallback = false, hedge = true, spare = false;
                bool group_retry;
                ep_t *e, *via;

                if (t == UINT32_MAX)
                    continue;
                for (size_t j = i; j < m->n; j++) {
                    if (m->target[j] == t) {
                        resend = resend || (m->st[j] & K_SENT);
                        fallback = fallback || !m->owner[j];
                        hedge = hedge && !(m->st[j] & K_HEDGED);
                        spare = spare || m->spare[j];
                        m->idx[cnt++] = j;
                        m->target[j] = UINT32_MAX;
                    }
                }
                e = c->member_ep[t];
                if (fallback)
                    c->counters.replica_fallbacks++;
                else
                    c->counters.owner_requests++;
                if (resend)
                    c->counters.retries++;
                /* Keys sent to a later placement are answered there, not
                 * relayed to the owner passed over (PROTOCOL.md §5.4); an
                 * owner is given up on at its stall limit, once per key. */
                rc = mget_send(c, m, e, cnt, fallback, hedge && spare && !fallback, &group_retry,
                               &via);
                if (rc == HEDGED)
                    continue; /* its keys go to their next placements next round */
                if (rc == 0 || rc == PC_ERETRY) {
                    if (rc == 0)
                        answered = true;
                    else
                        memcpy(retrymsg, c->errmsg, sizeof(retrymsg));
                    if (group_retry || rc == PC_ERETRY) {
                        retry = true;
                        retry_from = via;
                    }
                    continue;
                }
                if (!pc_cl_try_next_node(rc))
                    return rc;
                pc_cl_node_failed(c, e);
                last = rc;
                memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
            }
        }
        if (retry) {
            bool give_up = rounds == RETRY_ROUNDS;

            for (size_t i = 0; i < m->n; i++) {
                if (!(m->st[i] & K_RETRY))
                    continue;
                m->st[i] &= (uint8_t)~K_RETRY;
                if (give_up) {
                    m->st[i] |= K_DONE;
                    m->items[i].status = PC_ERETRY;
                }
            }
            if (!give_up) {
                pc_cl_sleep_ms(retry_pause_ms[rounds++]);
                c->ring_stale = true;
                c->stale_from = retry_from;
            }
        }
    }
    /* Keys still pending (the ring could not be refreshed) share the
     * last failure. */
    for (size_t i = 0; i < m->n; i++) {
        if (!(m->st[i] & K_DONE))
            m->items[i].status = last != 0 ? last : PC_ECONN;
    }
    if (!answered && last == 0 && retrymsg[0] != '\0') {
        /* nothing but RETRY, to the end */
        memcpy(c->errmsg, retrymsg, sizeof(retrymsg));
        return PC_ERETRY;
    }
    if (!answered) {
        memcpy(c->errmsg, lastmsg, sizeof(lastmsg));
        return last != 0 ? last : PC_ECONN;
    }
    c->errmsg[0] = '\0';
    return 0;
}

/* Seed-only MGET: all keys in one request, as before rings. With no
 * ring to refresh, RETRY is the answer: for the whole call if the node
 * said it of the request, else for the keys it said it of. */
static int mget_seeds(pc_client_t *c, mget_t *m)
{
    bool retry;
    ep_t *via;
    int rc;

    for (size_t i = 0; i < m->n; i++)
        m->idx[i] = i;
    rc = mget_send(c, m, NULL, m->n, false, false, &retry, &via);
    if (rc != 0)
        return rc;
    for (size_t i = 0; retry && i < m->n; i++) {
        if (m->st[i] & K_RETRY)
            m->items[i].status = PC_ERETRY;
    }
    c->errmsg[0] = '\0';
    return 0;
}

int pc_client_mget(pc_client_t *c, size_t n, const void *const *keys, const size_t *klens,
                   pc_mget_item_t **out)
{
    mget_t m;
    pc_bytes_t *slices = NULL;
    int rc = 0;

    if (c == NULL || out == NULL || (n > 0 && (keys == NULL || klens == NULL)))
        return PC_EINVAL;
    *out = NULL;
    pc_cl_begin_call(c);
    if (n == 0)
        return 0; /* nothing to ask; pc_mget_free(NULL, 0) is fine */
    if (n > UINT32_MAX) {
        pc_cl_set_msg(c, "%zu keys is over the protocol's limit", n);
        return PC_ETOOBIG;
    }
    memset(&m, 0, sizeof(m));
    m.n = n;
    slices = malloc(n * sizeof(*slices));
    m.group = malloc(n * sizeof(*m.group));
    m.items = calloc(n, sizeof(*m.items));
    m.st = calloc(n, sizeof(*m.st));
    m.target = malloc(n * sizeof(*m.target));
    m.owner = malloc(n * sizeof(*m.owner));
    m.spare = malloc(n * sizeof(*m.spare));
    m.idx = malloc(n * sizeof(*m.idx));
    if (slices == NULL || m.group == NULL || m.items == NULL || m.st == NULL ||
        m.target == NULL || m.owner == NULL || m.spare == NULL || m.idx == NULL) {
        pc_cl_set_msg(c, "out of memory");
        rc = PC_ENOMEM;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = pc_cl_check_key(c, keys[i], klens[i]);
        if (rc != 0)
            pc_cl_set_msg(c, "key %zu: %s", i, rc == PC_EINVAL ? "empty" : "over the 4 GiB limit");
        slices[i] = pc_cl_bytes(keys[i], klens[i]);
    }
    m.keys = slices;
    if (rc == 0) {
        rc = c->ring_aware ? mget_routed(c, &m) : mget_seeds(c, &m);
        pc_cl_end_call(c);
    }
    free(slices);
    free(m.group);
    free(m.st);
    free(m.target);
    free(m.owner);
    free(m.spare);
    free(m.idx);
    if (rc != 0) {
        pc_mget_free(m.items, m.items != NULL ? n : 0);
        return rc;
    }
    *out = m.items;
    return 0;
}
