/*
 * pc_replicate.c -- replication out and in (pc_replicate.h).
 */
#include "pc_replicate.h"

#include <string.h>

#include "pc_keys.h"
#include "pc_loops.h"
#include "pc_route.h"
#include "pc_slots.h"
#include "pc_view.h"

static void repl_done(void *arg, int err, const uint8_t *body, size_t len)
{
    pc_loop_t *l = arg;
    (void)body;
    (void)len;
    if (err != 0)
        l->stats.replicate_errors++;
}

static void replicate(pc_loop_t *l, const uint8_t *key, size_t klen, const uint8_t *val,
                      size_t vlen, int has_value, uint32_t flags, uint64_t version, int64_t ttl)
{
    if (!pc_view_clustered(l))
        return;
    pc_route_t rt;
    pc_view_route(l, key, klen, &rt);
    if (rt.n < 2)
        return;
    pc_repl_entry_t e = {.key = {key, (uint32_t)klen}, .value = {val, (uint32_t)vlen},
                         .has_value = has_value, .flags = flags, .version = version,
                         .ttl_ms = ttl};
    pc_request_t rq = {.op = PC_OP_REPLICATE, .mode = PC_REPL_WRITE,
                       .from = {(const uint8_t *)l->name, (uint32_t)strlen(l->name)},
                       .nentries = 1, .entries = &e};
    pc_buf_reset(&l->scratch);
    if (pc_proto_encode_request(&l->scratch, &rq) < 0) {
        l->stats.replicate_errors++;
        return;
    }
    long self = pc_view_self(l);
    for (size_t i = 0; i < rt.n; i++) {
        if ((long)rt.at[i] == self)
            continue;
        if (pc_peer_request(l->peers, pc_view_addr(l, rt.at[i]), l->scratch.data,
                            l->scratch.len, repl_done, l) < 0)
            l->stats.replicate_errors++;
        else
            l->stats.replicated++;
    }
}

void pc_replicate_write(pc_loop_t *l, const uint8_t *key, size_t klen, const uint8_t *val,
                        size_t vlen, uint32_t flags, uint64_t version, int64_t ttl)
{
    replicate(l, key, klen, val, vlen, 1, flags, version, ttl);
}

void pc_replicate_delete(pc_loop_t *l, const uint8_t *key, size_t klen)
{
    replicate(l, key, klen, NULL, 0, 0, 0, pc_keys_version(l), -1);
}

/*
 * A hand-off entry that lost to our own, newer copy: if both hold the same
 * value, the previous owner's last word confirms our copy, which therefore
 * need not stay provisional (the settle cap) -- it takes the entry's
 * expiry. Without this, the keys read here before their hand-off arrived
 * (the hottest ones) would all expire together at the end of the window.
 */
static void handoff_confirm(pc_loop_t *l, const pc_repl_entry_t *e, uint64_t exp, uint64_t now)
{
    pc_item_t *it;
    if (pc_store_peek(l->store, e->key.ptr, e->key.len, now, &it) != 0)
        return;
    int same = pc_item_vlen(it) == e->value.len && pc_item_flags(it) == e->flags &&
               memcmp(pc_item_value(it), e->value.ptr, e->value.len) == 0 &&
               pc_item_expire(it) != exp;
    pc_store_release(l->store, it);
    if (same && pc_store_touch(l->store, e->key.ptr, e->key.len, exp, now) == 0)
        l->stats.handoff_confirmed++;
}

static int owner_here(const pc_loop_t *l, const uint8_t *k, size_t n)
{
    pc_route_t rt;
    pc_view_route(l, k, n, &rt);
    return rt.role == PC_ROLE_OWNER;
}

void pc_replicate_apply(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    uint64_t now = pc_loop_now(l);
    uint32_t applied = 0, notyet = 0;
    int handoff = rq->mode == PC_REPL_HANDOFF;
    for (uint32_t i = 0; i < rq->nentries; i++) {
        const pc_repl_entry_t *e = &rq->entries[i];
        int rc;
        if (!pc_vclock_observe(&l->sh->clock, e->version, pc_vclock_wall())) {
            rc = PC_EEXISTS; /* from a clock too far ahead: never newer than what comes */
        } else if (!e->has_value) {
            rc = pc_store_del_if_older(l->store, e->key.ptr, e->key.len, e->version, now);
            rc = rc == PC_ENOTFOUND ? 0 : rc;
            if (rc == 0)
                pc_slots_tomb_add(l, e->key.ptr, e->key.len);
        } else if (e->ttl_ms == 0) {
            rc = PC_EEXISTS; /* expired on the way */
        } else if (handoff && !owner_here(l, e->key.ptr, e->key.len)) {
            notyet++;
            continue;
        } else if (handoff && pc_slots_tomb_has(l, e->key.ptr, e->key.len)) {
            rc = PC_EEXISTS; /* deleted here since: the entry is older */
        } else {
            int mode = PC_STORE_SET_IF_NEWER;
            pc_item_t *it;
            /* (A worker has no per-slot epochs: pc_replicate_apply_here
             * checked the copy against the newest one before it came.) */
            if (l->slots != NULL &&
                pc_store_peek(l->store, e->key.ptr, e->key.len, now, &it) == 0) {
                if (pc_slots_stale(l, it, e->key.ptr, e->key.len, UINT32_MAX))
                    mode = PC_STORE_SET_ALWAYS;
                pc_store_release(l->store, it);
            }
            /* A hand-off entry is the previous owner's last word on the key
             * (it stopped taking writes for it before streaming), so it is
             * not cut by the settle window; a replicated write is. */
            uint64_t exp = e->ttl_ms < 0 ? 0 : pc_loop_expire_at(l, (uint64_t)e->ttl_ms);
            if (!handoff)
                exp = pc_slots_cap_key(l, e->key.ptr, e->key.len, exp);
            rc = pc_store_set(l->store, e->key.ptr, e->key.len, e->value.ptr, e->value.len,
                              e->flags, e->version, exp, mode, now);
            if (rc == PC_EEXISTS && handoff)
                handoff_confirm(l, e, exp, now);
        }
        if (rc == 0)
            applied++;
    }
    if (handoff) {
        l->stats.handoff_received += applied;
        l->stats.handoff_refused += rq->nentries - applied - notyet;
        if (notyet > 0) {
            /* We have not heard of the ring that makes these keys ours:
             * the sender tries again shortly (what we applied is kept). */
            pc_conn_answer_error(c, rq->op, rq->id, PC_ST_RETRY,
                                 "not the owner of these keys yet");
            return;
        }
    } else {
        l->stats.replica_applied += applied;
        l->stats.replica_ignored += rq->nentries - applied;
    }
    pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK, .applied = applied};
    pc_conn_answer(c, &resp);
}

int pc_replicate_apply_here(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_shared_t *sh = l->sh;
    uint32_t emin = atomic_load_explicit(&sh->epoch_min, memory_order_relaxed);
    uint64_t now = pc_loop_now(l);
    for (uint32_t i = 0; i < rq->nentries; i++) {
        const pc_repl_entry_t *e = &rq->entries[i];
        pc_item_t *it;
        if (pc_store_peek(l->store, e->key.ptr, e->key.len, now, &it) == 0) {
            int fresh = pc_item_epoch(it) >= emin;
            pc_store_release(l->store, it);
            if (!fresh)
                return 0;
        }
    }
    pc_replicate_apply(c, rq);
    /* Homes went off meanwhile: the core may have bumped the store's epoch
     * for slots it gains before our sets read it, so these copies could
     * pass for ones stored after the ring change, uncapped by its settle
     * window. The core would have applied the batch before the change
     * (and the copies would have gone stale) or after it (capped); not
     * keeping them is on the safe side of both. */
    if (!atomic_load(&sh->homes)) {
        for (uint32_t i = 0; i < rq->nentries; i++) {
            const pc_repl_entry_t *e = &rq->entries[i];
            if (e->has_value)
                pc_store_del_if_older(l->store, e->key.ptr, e->key.len, e->version + 1, now);
        }
    }
    return 1;
}
