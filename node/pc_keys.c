/*
 * pc_keys.c -- the keystate table, valid lookups, read-through, GET
 * (pc_keys.h).
 */
#include "pc_keys.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "pc_loops.h"
#include "pc_route.h"
#include "pc_slots.h"
#include "pc_view.h"

/* An MGET entry that is not a hit, [status]: a fixarray and a fixint. */
#define MGET_SHORT_ENTRY 2
/* A slot number not computed yet. */
#define NO_SLOT UINT32_MAX

typedef struct pc_keys {
    pc_keystate_t **buckets;
    size_t nbuckets;
    size_t count;
    size_t foreign; /* the core: keystates of keys homed elsewhere */
    uint8_t hashkey[crypto_shorthash_KEYBYTES];
} pc_keys_t;

int pc_keys_new(pc_loop_t *l)
{
    pc_keys_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return PC_ENOMEM;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    randombytes_buf(t->hashkey, sizeof t->hashkey);
    l->keys = t;
    if (t->buckets == NULL) {
        pc_keys_free(l);
        return PC_ENOMEM;
    }
    return 0;
}

void pc_keys_free(pc_loop_t *l)
{
    pc_keys_t *t = l->keys;
    if (t == NULL)
        return;
    for (size_t i = 0; t->buckets && i < t->nbuckets; i++) {
        pc_keystate_t *ks = t->buckets[i];
        while (ks) {
            pc_keystate_t *next = ks->hnext;
            free(ks);
            ks = next;
        }
    }
    free(t->buckets);
    free(t);
    l->keys = NULL;
}

size_t pc_keys_count(const pc_loop_t *l) { return l->keys ? l->keys->count : 0; }

size_t pc_keys_foreign(const pc_loop_t *l) { return l->keys ? l->keys->foreign : 0; }

uint64_t pc_keys_version(pc_loop_t *l) { return pc_vclock_next(&l->sh->clock, pc_vclock_wall()); }

/* ---- keystate table ----------------------------------------------------- */

static uint64_t key_hash(const pc_keys_t *t, const uint8_t *k, size_t n)
{
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, k, n, t->hashkey);
    return h;
}

static pc_keystate_t *ks_find(pc_keys_t *t, const uint8_t *k, size_t n, uint64_t h)
{
    for (pc_keystate_t *ks = t->buckets[h & (t->nbuckets - 1)]; ks; ks = ks->hnext)
        if (ks->hash == h && ks->klen == n && memcmp(ks->key, k, n) == 0)
            return ks;
    return NULL;
}

static void ks_grow(pc_keys_t *t)
{
    size_t nb = t->nbuckets * 2;
    pc_keystate_t **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* keep the old table: longer chains, still correct */
    for (size_t i = 0; i < t->nbuckets; i++) {
        pc_keystate_t *ks = t->buckets[i];
        while (ks) {
            pc_keystate_t *next = ks->hnext;
            ks->hnext = b[ks->hash & (nb - 1)];
            b[ks->hash & (nb - 1)] = ks;
            ks = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

pc_keystate_t *pc_keys_state(pc_loop_t *l, const uint8_t *k, size_t n)
{
    pc_keys_t *t = l->keys;
    uint64_t h = key_hash(t, k, n);
    pc_keystate_t *ks = ks_find(t, k, n, h);
    if (ks)
        return ks;
    ks = calloc(1, sizeof *ks + n);
    if (ks == NULL)
        return NULL;
    ks->hash = h;
    ks->loop = l;
    ks->klen = (uint32_t)n;
    memcpy(ks->key, k, n);
    /* What the drain between home loops and the core counts. */
    if (!pc_loop_is_core(l)) {
        pc_loops_enter(l);
    } else if (l->sh->nhomes > 1 && pc_loops_home_of(l->sh, k, n) != 0) {
        ks->foreign = 1;
        t->foreign++;
    }
    if (t->count + 1 > t->nbuckets)
        ks_grow(t);
    pc_keystate_t **head = &t->buckets[h & (t->nbuckets - 1)];
    ks->hnext = *head;
    *head = ks;
    t->count++;
    return ks;
}

void pc_keys_state_release(pc_loop_t *l, pc_keystate_t *ks)
{
    pc_keys_t *t = l->keys;
    if (ks->fetching || ks->waiters || ks->pending_writes || ks->deferred)
        return;
    pc_keystate_t **pp = &t->buckets[ks->hash & (t->nbuckets - 1)];
    while (*pp != ks)
        pp = &(*pp)->hnext;
    *pp = ks->hnext;
    t->count--;
    if (!pc_loop_is_core(l))
        pc_loops_leave(l);
    else if (ks->foreign)
        t->foreign--;
    free(ks);
}

/* ---- requests with slots -------------------------------------------------- */

static void keyreq_cleanup(pc_req_t *req)
{
    pc_keyreq_t *r = (pc_keyreq_t *)req;
    pc_loop_t *l = pc_loop_of(req->c);
    for (uint32_t i = 0; i < r->nslots; i++) {
        pc_store_release(l->store, r->slots[i].item);
        free(r->slots[i].copy);
    }
    free(r->key);
}

pc_keyreq_t *pc_keyreq_new(pc_conn_t *c, uint32_t op, uint64_t id, uint32_t nslots)
{
    pc_keyreq_t *r = (pc_keyreq_t *)pc_req_new(c, op, id, sizeof *r + nslots * sizeof(pc_slot_t));
    if (r == NULL)
        return NULL;
    r->req.cleanup = keyreq_cleanup;
    r->nslots = nslots;
    for (uint32_t i = 0; i < nslots; i++)
        r->slots[i].req = r;
    return r;
}

pc_keyreq_t *pc_keyreq_copy(pc_conn_t *c, const pc_request_t *rq, uint32_t nslots, int value)
{
    pc_keyreq_t *r = pc_keyreq_new(c, rq->op, rq->id, nslots);
    uint32_t vlen = value && rq->op == PC_OP_SET ? rq->value.len : 0;
    if (r == NULL || (r->key = malloc((size_t)rq->key.len + vlen + 1)) == NULL) {
        if (r)
            pc_req_free(&r->req);
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return NULL;
    }
    memcpy(r->key, rq->key.ptr, rq->key.len);
    r->klen = rq->key.len;
    r->val = r->key + r->klen;
    if (vlen)
        memcpy(r->val, rq->value.ptr, vlen);
    r->vlen = vlen;
    return r;
}

/* ---- lookups valid for this node's ownership -------------------------------- */

int pc_keys_cut_off(const pc_loop_t *l)
{
    /* acquire: pairs with pc_server_lease's release, so a loop that sees
     * the lease back also sees the regained view published before. */
    return l->sh->has_backend &&
           pc_loop_now(l) >= atomic_load_explicit(&l->sh->lease_until, memory_order_acquire);
}

/* 1 if this node must not serve `it`: stored before it gained the key's
 * slot (pc_slots.h on the core; the gate on a worker), or a slot a worker
 * no longer owns. */
static int copy_untrusted(const pc_loop_t *l, const pc_item_t *it, const uint8_t *k, size_t n,
                          uint32_t slot)
{
    if (pc_loop_is_core(l))
        return pc_slots_stale(l, it, k, n, slot);
    int alone; /* a worker (as a home loop): by the core's gate */
    uint32_t gate = pc_view_gate(l, k, n, &alone);
    return gate == PC_GATE_NONE || !pc_view_valid(l, it, k, n, gate, alone);
}

/*
 * A store lookup that refuses untrusted copies (copy_untrusted). Such a
 * copy is dropped so that a read-through can replace it. `slot` is the
 * key's slot if the caller has it, else NO_SLOT (computed here, and only
 * if needed).
 */
static int store_lookup(pc_loop_t *l, const uint8_t *k, size_t n, uint32_t slot, uint64_t now,
                        pc_item_t **out, int count_miss)
{
    if (pc_keys_cut_off(l))
        return PC_ENOTFOUND; /* read through: the other side may have written it */
    if ((count_miss ? pc_store_get(l->store, k, n, now, out)
                    : pc_store_get_hit(l->store, k, n, now, out)) != 0)
        return PC_ENOTFOUND;
    int stale; /* copy_untrusted, with the gate read once on this hot path */
    if (!pc_loop_is_core(l)) {
        int alone;
        uint32_t gate = pc_view_gate(l, k, n, &alone);
        if (gate == PC_GATE_NONE) { /* the ring moved on: not ours to serve (nor to drop) */
            pc_store_release(l->store, *out);
            *out = NULL;
            return PC_ENOTFOUND;
        }
        stale = !pc_view_valid(l, *out, k, n, gate, alone);
    } else {
        stale = pc_slots_stale(l, *out, k, n, slot);
    }
    if (stale) {
        pc_store_del_if_older(l->store, k, n, pc_item_version(*out) + 1, now);
        pc_store_release(l->store, *out);
        *out = NULL;
        l->stats.stale_dropped++;
        return PC_ENOTFOUND;
    }
    return 0;
}

void pc_keys_drop(pc_loop_t *l, const uint8_t *k, size_t n)
{
    pc_store_del(l->store, k, n, pc_loop_now(l));
    pc_slots_tomb_add(l, k, n);
}

/* ---- answers ------------------------------------------------------------- */

static void entry_from_item(pc_entry_t *e, const pc_item_t *it, uint64_t now)
{
    e->status = PC_ST_OK;
    e->value.ptr = pc_item_value(it);
    e->value.len = (uint32_t)pc_item_vlen(it);
    e->flags = pc_item_flags(it);
    e->version = pc_item_version(it);
    e->ttl_ms = pc_loop_ttl_left(pc_item_expire(it), now);
}

static void entry_from_slot(pc_entry_t *e, const pc_slot_t *sl, uint64_t now)
{
    if (sl->item) {
        entry_from_item(e, sl->item, now);
        return;
    }
    memset(e, 0, sizeof *e);
    e->status = sl->status;
    if (sl->status == PC_ST_OK) {
        e->value.ptr = sl->copy;
        e->value.len = (uint32_t)sl->copy_len;
        e->flags = sl->copy_flags;
        e->version = sl->copy_version;
        e->ttl_ms = sl->copy_ttl;
    }
}

void pc_keys_mget_fit(pc_entry_t *entries, uint32_t n, uint32_t max_frame)
{
    size_t fixed = 64 + (size_t)n * MGET_SHORT_ENTRY;
    size_t budget = max_frame > fixed ? max_frame - fixed : 0;
    for (uint32_t i = 0; i < n; i++) {
        if (entries[i].status != PC_ST_OK)
            continue;
        size_t need = PC_PROTO_ENTRY_OVERHEAD + entries[i].value.len;
        if (need > budget) {
            memset(&entries[i], 0, sizeof entries[i]);
            entries[i].status = PC_ST_TOO_LARGE;
        } else {
            budget -= need;
        }
    }
}

/* All slots of a GET/MGET are resolved: encode the answer. */
static void read_req_finish(pc_keyreq_t *r)
{
    pc_loop_t *l = pc_loop_of(r->req.c);
    uint64_t now = pc_loop_now(l);
    if (r->req.op == PC_OP_GET) {
        pc_slot_t *sl = &r->slots[0];
        if (sl->status != PC_ST_OK) {
            pc_req_answer_status(&r->req, sl->status, NULL);
            return;
        }
        pc_response_t resp = {.op = r->req.op, .id = r->req.id, .status = PC_ST_OK};
        entry_from_slot(&resp.entry, sl, now);
        pc_req_answer(&r->req, &resp, NULL);
        return;
    }
    pc_entry_t *entries = malloc(r->nslots * sizeof *entries);
    if (entries == NULL) {
        pc_req_answer_status(&r->req, PC_ST_INTERNAL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < r->nslots; i++)
        entry_from_slot(&entries[i], &r->slots[i], now);
    pc_keys_mget_fit(entries, r->nslots, l->set.conn.proto.max_frame);
    pc_response_t resp = {.op = r->req.op, .id = r->req.id, .status = PC_ST_OK,
                          .nentries = r->nslots, .entries = entries};
    pc_req_answer(&r->req, &resp, NULL);
    free(entries);
}

void pc_keys_slot_resolved(pc_slot_t *sl)
{
    pc_keyreq_t *r = sl->req;
    if (--r->req.waiting > 0)
        return;
    if (pc_req_gone(&r->req))
        return;
    read_req_finish(r);
}

void pc_keys_slot_take(pc_slot_t *sl, const pc_entry_t *e)
{
    sl->status = e->status;
    if (e->status != PC_ST_OK)
        return;
    sl->copy = malloc(e->value.len ? e->value.len : 1);
    if (sl->copy == NULL) {
        sl->status = PC_ST_INTERNAL;
        return;
    }
    memcpy(sl->copy, e->value.ptr, e->value.len);
    sl->copy_len = e->value.len;
    sl->copy_flags = e->flags;
    sl->copy_version = e->version;
    sl->copy_ttl = e->ttl_ms;
}

/* ---- read-through ----------------------------------------------------------- */

static void fetch_cb(void *arg, int err, int found, const uint8_t *val, size_t vlen,
                     uint32_t flags, int64_t pttl)
{
    pc_keystate_t *ks = arg;
    pc_loop_t *l = ks->loop;
    pc_slot_t *waiters = ks->waiters;
    ks->waiters = ks->waiters_tail = NULL;
    ks->fetching = 0;
    uint64_t now = pc_loop_now(l);

    /* Another program may have written a value over our max_value (even
     * over max_frame) to Redis: it is neither cached nor sent, the key
     * answers TOO_LARGE, as a SET of it would have. */
    int too_large = err == 0 && found && vlen > l->set.conn.proto.max_value;

    /* Fill the store unless something newer got there first (see the
     * ordering argument in pc_keys.h: then that entry is what we serve)
     * or Redis says the key already expired. */
    pc_item_t *stored = NULL;
    uint64_t version = 0;
    int64_t ttl = pttl;
    /* Only the owner caches what it reads (decided now, on the ring as it
     * is when Redis answered): a node that serves a key it does not own
     * passes the value on without keeping a copy nobody keeps current. */
    pc_route_t rt;
    pc_view_route(l, ks->key, ks->klen, &rt);
    /* Cut off (the partition lease ran out), nothing is cached: the copy
     * would not be served, and may be stale when the lease comes back. */
    if (err == 0 && found && !too_large && pttl != 0 && rt.role == PC_ROLE_OWNER &&
        !ks->nocache && !pc_keys_cut_off(l)) {
        version = pc_keys_version(l);
        uint64_t exp = pc_slots_cap_key(l, ks->key, ks->klen,
                                        pc_loop_expire_at(l, pttl > 0 ? (uint64_t)pttl : 0));
        int rc = pc_store_set(l->store, ks->key, ks->klen, val, vlen, flags, version, exp,
                              PC_STORE_SET_IF_ABSENT, now);
        pc_item_t *old = NULL;
        if (rc == PC_EEXISTS && pc_store_peek(l->store, ks->key, ks->klen, now, &old) == 0) {
            /* What is there may be a copy no lookup dropped (one made
             * before the lease ran out, or before a gain): never newer
             * than Redis, so Redis' value replaces it. */
            if (copy_untrusted(l, old, ks->key, ks->klen, NO_SLOT)) {
                pc_store_del_if_older(l->store, ks->key, ks->klen, pc_item_version(old) + 1, now);
                rc = pc_store_set(l->store, ks->key, ks->klen, val, vlen, flags, version, exp,
                                  PC_STORE_SET_IF_ABSENT, now);
            }
            pc_store_release(l->store, old);
        }
        if (rc == 0 || rc == PC_EEXISTS)
            pc_store_peek(l->store, ks->key, ks->klen, now, &stored);
    }

    while (waiters) {
        pc_slot_t *sl = waiters;
        waiters = sl->next_waiter;
        sl->next_waiter = NULL;
        if (err != 0) {
            /* PC_ERETRY: Redis Cluster moved the key's slot; ask again */
            sl->status = err == PC_ERETRY ? PC_ST_RETRY : PC_ST_BACKEND_UNAVAILABLE;
        } else if (!found) {
            sl->status = PC_ST_NOT_FOUND;
        } else if (too_large) {
            sl->status = PC_ST_TOO_LARGE;
        } else if (stored != NULL) {
            /* one more reference to the same item for this waiter */
            sl->status = pc_store_peek(l->store, ks->key, ks->klen, now, &sl->item) == 0
                             ? PC_ST_OK
                             : PC_ST_NOT_FOUND;
        } else {
            sl->status = PC_ST_OK;
            if (version == 0)
                version = pc_keys_version(l);
            sl->copy = malloc(vlen ? vlen : 1);
            if (sl->copy == NULL) {
                sl->status = PC_ST_INTERNAL;
            } else {
                memcpy(sl->copy, val, vlen);
                sl->copy_len = vlen;
                sl->copy_flags = flags;
                sl->copy_version = version;
                sl->copy_ttl = ttl;
            }
        }
        pc_keys_slot_resolved(sl);
    }
    pc_store_release(l->store, stored);
    pc_keys_state_release(l, ks);
}

void pc_keys_slot_miss(pc_conn_t *c, pc_slot_t *sl, const pc_bytes_t *key)
{
    pc_loop_t *l = pc_loop_of(c);
    if (l->backend == NULL) {
        sl->status = PC_ST_NOT_FOUND;
        return;
    }
    pc_keystate_t *ks = pc_keys_state(l, key->ptr, key->len);
    if (ks == NULL) {
        sl->status = PC_ST_INTERNAL;
        return;
    }
    sl->req->req.waiting++;
    if (ks->waiters_tail)
        ks->waiters_tail->next_waiter = sl;
    else
        ks->waiters = sl;
    ks->waiters_tail = sl;
    if (ks->fetching) {
        l->stats.backend_reads_coalesced++;
        return;
    }
    ks->fetching = 1;
    ks->nocache = pc_loops_home_foreign(l, ks->key, ks->klen);
    l->stats.backend_reads++;
    int rc = pc_backend_get(l->backend, ks->key, ks->klen, fetch_cb, ks);
    if (rc < 0) /* Redis down: fail fast, through the same path */
        fetch_cb(ks, rc, 0, NULL, 0, 0, -1);
}

void pc_keys_slot_lookup(pc_conn_t *c, pc_slot_t *sl, const pc_bytes_t *key)
{
    pc_loop_t *l = pc_loop_of(c);
    if (store_lookup(l, key->ptr, key->len, NO_SLOT, pc_loop_now(l), &sl->item, 1) == 0)
        sl->status = PC_ST_OK;
    else
        pc_keys_slot_miss(c, sl, key);
}

int pc_keys_slot_hit(pc_conn_t *c, pc_slot_t *sl, const pc_bytes_t *key)
{
    pc_loop_t *l = pc_loop_of(c);
    if (store_lookup(l, key->ptr, key->len, NO_SLOT, pc_loop_now(l), &sl->item, 0) != 0)
        return 0;
    sl->status = PC_ST_OK;
    return 1;
}

/*
 * A key we do not own, served here anyway: we were asked as a replica, or
 * the request was relayed to us, or its owner could not be reached. A
 * replica answers from its copy; any other node reads Redis (without
 * caching: fetch_cb caches only on the owner), never from a copy that
 * nobody keeps current.
 */
void pc_keys_slot_here(pc_conn_t *c, pc_slot_t *sl, const pc_bytes_t *key)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_route_t rt;
    pc_view_route(l, key->ptr, key->len, &rt);
    l->stats.not_owner_reads++;
    if (rt.role != PC_ROLE_NONE)
        pc_keys_slot_lookup(c, sl, key);
    else
        pc_keys_slot_miss(c, sl, key);
}

/* ---- GET -------------------------------------------------------------------- */

/* Answers a GET with a valid hit `it` (the reference is consumed): now,
 * or queued behind the connection's unfinished requests. 0 = out of
 * memory for the queue entry: the caller serves it another way. */
static int answer_hit(pc_conn_t *c, const pc_request_t *rq, pc_item_t *it, uint64_t now)
{
    pc_loop_t *l = pc_loop_of(c);
    if (pc_list_empty(&c->reqs)) {
        /* Fast path: encoded straight from the item into the output (a
         * large value is written from the item itself); no allocation. */
        pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK};
        entry_from_item(&resp.entry, it, now);
        pc_conn_answer_ref(c, &resp, pc_store_unref, it);
        return 1;
    }
    pc_keyreq_t *r = pc_keyreq_new(c, rq->op, rq->id, 1); /* behind an unfinished one */
    if (r == NULL) {
        pc_store_release(l->store, it);
        return 0;
    }
    r->req.waiting = 1;
    r->slots[0].item = it;
    r->slots[0].status = PC_ST_OK;
    pc_keys_slot_resolved(&r->slots[0]);
    return 1;
}

void pc_keys_get(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_item_t *it = NULL;
    uint64_t now = pc_loop_now(l);
    if (store_lookup(l, rq->key.ptr, rq->key.len, NO_SLOT, now, &it, 1) == 0 &&
        answer_hit(c, rq, it, now))
        return;
    pc_keyreq_t *r = pc_keyreq_new(c, rq->op, rq->id, 1);
    if (r == NULL) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return;
    }
    r->req.waiting = 1; /* held while we look, so a synchronous answer waits */
    pc_keys_slot_miss(c, &r->slots[0], &rq->key);
    pc_keys_slot_resolved(&r->slots[0]);
}

void pc_keys_get_here(pc_conn_t *c, const pc_request_t *rq)
{
    pc_keyreq_t *r = pc_keyreq_new(c, rq->op, rq->id, 1);
    if (r == NULL) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return;
    }
    if (rq->here) /* a part of not_owner_reads, counted beside it */
        pc_loop_of(c)->stats.here_reads++;
    r->req.waiting = 1;
    pc_keys_slot_here(c, &r->slots[0], &rq->key);
    pc_keys_slot_resolved(&r->slots[0]);
}

int pc_keys_hit(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_item_t *it = NULL;
    uint64_t now = pc_loop_now(l);
    if (store_lookup(l, rq->key.ptr, rq->key.len, NO_SLOT, now, &it, 0) != 0)
        return 0;
    return answer_hit(c, rq, it, now);
}

int pc_keys_local_get(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    int alone;
    uint32_t gate = pc_view_gate(l, rq->key.ptr, rq->key.len, &alone);
    if (gate == PC_GATE_NONE)
        return 0;
    pc_item_t *it = NULL;
    uint64_t now = pc_loop_now(l);
    if (pc_store_get(l->store, rq->key.ptr, rq->key.len, now, &it) != 0) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_NOT_FOUND,
                             pc_status_message(PC_ST_NOT_FOUND));
        return 1;
    }
    if (!pc_view_valid(l, it, rq->key.ptr, rq->key.len, gate, alone)) {
        pc_store_release(l->store, it);
        return 0; /* from before we gained the slot: the core drops it */
    }
    return answer_hit(c, rq, it, now);
}

int pc_keys_local_mget(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    int alone;
    for (uint32_t i = 0; i < rq->nkeys; i++)
        if (pc_view_gate(l, rq->keys[i].ptr, rq->keys[i].len, &alone) == PC_GATE_NONE)
            return 0;
    pc_keyreq_t *r = pc_keyreq_new(c, rq->op, rq->id, rq->nkeys);
    if (r == NULL)
        return 0;
    uint64_t now = pc_loop_now(l);
    for (uint32_t i = 0; i < rq->nkeys; i++) {
        const pc_bytes_t *k = &rq->keys[i];
        pc_slot_t *sl = &r->slots[i];
        uint32_t gate = pc_view_gate(l, k->ptr, k->len, &alone);
        sl->status = PC_ST_NOT_FOUND;
        if (pc_store_get(l->store, k->ptr, k->len, now, &sl->item) != 0)
            continue;
        if (gate == PC_GATE_NONE || !pc_view_valid(l, sl->item, k->ptr, k->len, gate, alone)) {
            pc_req_free(&r->req); /* the ring moved meanwhile, or a stale copy */
            return 0;
        }
        sl->status = PC_ST_OK;
    }
    r->req.waiting = 1;
    pc_keys_slot_resolved(&r->slots[0]);
    return 1;
}
