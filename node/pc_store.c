/*
 * pc_store.c -- sharded, refcounted, memory-bounded item store.
 *
 * The contract is in pc_store.h; the design, with measurements, is in
 * docs/STORE.md. pc_store_scan() is in pc_store_scan.c, the eviction
 * policies in pc_evict.c (pc_evict.h), and the layouts of items, shards
 * and the store, which those files share, in pc_store_int.h. This file
 * follows one naming rule from memcached: a function whose name starts
 * with do_ expects the caller to hold the shard's lock. Everything else
 * takes the lock itself or needs none.
 */
#include "pc_store.h"

#include <pthread.h>
#include <sodium.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "pc_evict.h"
#include "pc_store_int.h"

const size_t PC_STORE_ITEM_OVERHEAD = ITEM_OVERHEAD;

#define DEFAULT_SHARDS 64u
#define MAX_SHARDS 65536u
#define INITIAL_BUCKETS 16u
/* Bucket indexes come from the 32-bit stored hash. */
#define MAX_BUCKETS ((size_t)1 << 31)
/*
 * Buckets moved from the old to the new table per operation while a shard
 * is resizing. The next doubling is due after 1.5 * old_nb more inserts, so
 * any rate >= 1 finishes in time; 8 finishes sooner and frees the old array
 * quickly while costing at most 8 short chain walks per call.
 */
#define MIGRATE_STEP 8u
/* sweep(): buckets visited per unit of budget, so sparse tables stay cheap. */
#define SWEEP_VISITS_PER_ITEM 16u

/* ------------------------------------------------------------------ */
/* Items                                                               */
/* ------------------------------------------------------------------ */

static bool item_matches(const pc_item_t *it, uint32_t hash, const void *key, size_t klen)
{
    return it->hash == hash && it->klen == klen && (klen == 0 || memcmp(it->data, key, klen) == 0);
}

/*
 * Drops one reference. The acq_rel ordering makes every read a holder did
 * before releasing happen before the free() of whoever drops the last one.
 * Returns true when that was the last reference (the caller frees).
 */
static bool item_unref(pc_item_t *it)
{
    return atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1;
}

/* Frees items collected while a lock was held, after it is released. */
static void reap_free(pc_item_t *reap)
{
    while (reap) {
        pc_item_t *next = reap->hnext;
        free(reap);
        reap = next;
    }
}

/* ------------------------------------------------------------------ */
/* Hashing                                                             */
/* ------------------------------------------------------------------ */

/* The key's shard: bits 32..63 of its hash (key_hash, pc_store_int.h). */
static struct shard *shard_of(const pc_store_t *s, uint64_t h)
{
    return &s->shards[(uint32_t)(h >> 32) & s->shard_mask];
}

/* ------------------------------------------------------------------ */
/* Table                                                               */
/* ------------------------------------------------------------------ */

static void do_migrate_bucket(struct shard *sh, size_t ob)
{
    pc_item_t *it = sh->old[ob];

    sh->old[ob] = NULL;
    while (it) {
        pc_item_t *next = it->hnext;
        pc_item_t **slot = &sh->tab[it->hash & (sh->nb - 1)];

        it->hnext = *slot;
        *slot = it;
        it = next;
    }
}

/* Moves up to `n` old buckets to the new table; frees the old one at the end. */
static void do_migrate(struct shard *sh, size_t n)
{
    size_t end;

    if (!sh->old)
        return;
    end = sh->old_nb - sh->migrate < n ? sh->old_nb : sh->migrate + n;
    for (size_t b = sh->migrate; b < end; b++)
        do_migrate_bucket(sh, b);
    sh->migrate = end;
    if (end == sh->old_nb) {
        free(sh->old);
        sh->old = NULL;
        sh->old_nb = 0;
        sh->migrate = 0;
    }
}

/*
 * Starts a doubling when the load passes 1.5. The rehash itself is spread
 * over the following operations (do_migrate), so no call ever moves more
 * than MIGRATE_STEP chains. A failed allocation is not an error: chains get
 * longer and the next insert tries again.
 */
static void do_maybe_grow(struct shard *sh)
{
    pc_item_t **t;

    if (sh->old || sh->items <= sh->nb + sh->nb / 2 || sh->nb >= MAX_BUCKETS)
        return;
    t = calloc(sh->nb * 2, sizeof *t);
    if (!t)
        return;
    sh->old = sh->tab;
    sh->old_nb = sh->nb;
    sh->migrate = 0;
    /* atomic stores: pc_store_prefetch reads both without the lock */
    __atomic_store_n(&sh->tab, t, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->nb, sh->nb * 2, __ATOMIC_RELAXED);
}

/*
 * Returns the chain link that points at the item with this key, or NULL.
 * While resizing, an item is in the new table or in its old bucket; old
 * buckets are not necessarily emptied in order (sweep() moves some early),
 * so both are always looked at -- an emptied bucket costs one load.
 */
static pc_item_t **do_find(struct shard *sh, uint32_t hash, const void *key, size_t klen)
{
    pc_item_t **pp;

    for (pp = &sh->tab[hash & (sh->nb - 1)]; *pp; pp = &(*pp)->hnext)
        if (item_matches(*pp, hash, key, klen))
            return pp;
    if (sh->old)
        for (pp = &sh->old[hash & (sh->old_nb - 1)]; *pp; pp = &(*pp)->hnext)
            if (item_matches(*pp, hash, key, klen))
                return pp;
    return NULL;
}

/* The chain link pointing at a linked item (found by identity). */
static pc_item_t **do_link_of(struct shard *sh, const pc_item_t *it)
{
    pc_item_t **pp;

    for (pp = &sh->tab[it->hash & (sh->nb - 1)]; *pp; pp = &(*pp)->hnext)
        if (*pp == it)
            return pp;
    if (sh->old)
        for (pp = &sh->old[it->hash & (sh->old_nb - 1)]; *pp; pp = &(*pp)->hnext)
            if (*pp == it)
                return pp;
    return NULL;
}

/*
 * Removes the item `*link` points at from the table and its queue, uncharges
 * it and drops the table's reference. If that was the last reference the
 * item goes on *reap, to be freed once the lock is released; otherwise the
 * last reader's pc_store_release() frees it.
 */
static void do_unlink(struct shard *sh, pc_item_t **link, pc_item_t **reap)
{
    pc_item_t *it = *link;

    *link = it->hnext;
    pc_evict_remove(&sh->evict, it);
    sh->items--;
    sh->bytes -= item_charge(it);
    if (item_unref(it)) {
        it->hnext = *reap;
        *reap = it;
    }
}

static void do_insert(struct shard *sh, pc_item_t *it, int qi)
{
    pc_item_t **slot = &sh->tab[it->hash & (sh->nb - 1)];

    it->hnext = *slot;
    *slot = it;
    pc_evict_push(&sh->evict, it, qi);
    sh->items++;
    sh->bytes += item_charge(it);
    do_maybe_grow(sh);
}

/* ------------------------------------------------------------------ */
/* Eviction                                                            */
/* ------------------------------------------------------------------ */

/* Evicts one item; false if the shard is empty. */
static bool do_evict_one(struct shard *sh, pc_item_t **reap)
{
    pc_item_t *victim;
    pc_item_t **link;

    victim = pc_evict_victim(&sh->evict, sh->policy, sh->small_target);
    if (!victim)
        return false;
    link = do_link_of(sh, victim);
    if (!link)
        abort(); /* queue and table disagree: accounting is lost, stop here */
    do_unlink(sh, link, reap);
    sh->evictions++;
    return true;
}

/* ------------------------------------------------------------------ */
/* Store                                                               */
/* ------------------------------------------------------------------ */

static void shard_destroy(struct shard *sh)
{
    pc_item_t **tabs[2] = {sh->tab, sh->old};
    size_t nbs[2] = {sh->nb, sh->old_nb};

    for (int t = 0; t < 2; t++) {
        if (!tabs[t])
            continue;
        for (size_t b = 0; b < nbs[t]; b++) {
            pc_item_t *it = tabs[t][b];
            while (it) {
                pc_item_t *next = it->hnext;
                free(it);
                it = next;
            }
        }
        free(tabs[t]);
    }
    pc_evict_free(&sh->evict);
    pthread_mutex_destroy(&sh->lock);
}

int pc_store_new(const pc_store_config_t *cfg, pc_store_t **out)
{
    pc_store_t *s;
    unsigned n;
    size_t budget, fixed;

    if (!out)
        return PC_EINVAL;
    *out = NULL;
    if (!cfg || cfg->memory_limit == 0)
        return PC_EINVAL;
    if (cfg->policy != PC_EVICT_S3FIFO && cfg->policy != PC_EVICT_LRU)
        return PC_EINVAL;
    n = cfg->shards ? cfg->shards : DEFAULT_SHARDS;
    if ((n & (n - 1)) != 0 || n > MAX_SHARDS)
        return PC_EINVAL;

    /*
     * Each shard is charged, before any item, for its own struct, its
     * initial bucket array, its minimum ghost and its part of this struct.
     */
    fixed = sizeof(struct shard) + INITIAL_BUCKETS * sizeof(pc_item_t *) +
            (sizeof(pc_store_t) + n - 1) / n + pc_evict_fixed(cfg->policy);
    budget = cfg->memory_limit / n;
    if (budget <= fixed)
        return PC_EINVAL;

    if (sodium_init() < 0)
        return PC_EINTERNAL;

    /* aligned_alloc, not calloc: both structs ask for cache-line alignment */
    s = aligned_alloc(alignof(pc_store_t), sizeof *s);
    if (!s)
        return PC_ENOMEM;
    memset(s, 0, sizeof *s);
    s->shards = aligned_alloc(alignof(struct shard), n * sizeof(struct shard));
    if (!s->shards) {
        free(s);
        return PC_ENOMEM;
    }
    memset(s->shards, 0, n * sizeof(struct shard));
    s->nshards = n;
    s->shard_mask = n - 1;
    s->limit = cfg->memory_limit;
    s->fixed = fixed;
    s->item_budget = budget - fixed;
    atomic_init(&s->epoch, 1);
    while ((1u << s->shard_bits) < n)
        s->shard_bits++;
    if (cfg->hash_key)
        memcpy(s->hash_key, cfg->hash_key, sizeof s->hash_key);
    else
        randombytes_buf(s->hash_key, sizeof s->hash_key);
    if (pthread_mutex_init(&s->sweep_lock, NULL) != 0) {
        free(s->shards);
        free(s);
        return PC_ENOMEM;
    }

    for (unsigned i = 0; i < n; i++) {
        struct shard *sh = &s->shards[i];

        sh->tab = calloc(INITIAL_BUCKETS, sizeof *sh->tab);
        if (!sh->tab || pthread_mutex_init(&sh->lock, NULL) != 0) {
            free(sh->tab);
            sh->tab = NULL;
            s->nshards = i; /* destroy only what was set up */
            pc_store_free(&s);
            return PC_ENOMEM;
        }
        sh->nb = INITIAL_BUCKETS;
        sh->policy = cfg->policy;
        sh->budget = budget;
        sh->bytes = fixed;
        sh->small_target = s->item_budget / 10;
    }
    *out = s;
    return PC_OK;
}

void pc_store_free(pc_store_t **sp)
{
    pc_store_t *s;

    if (!sp || !*sp)
        return;
    s = *sp;
    for (unsigned i = 0; i < s->nshards; i++)
        shard_destroy(&s->shards[i]);
    pthread_mutex_destroy(&s->sweep_lock);
    sodium_memzero(s->hash_key, sizeof s->hash_key);
    free(s->shards);
    free(s);
    *sp = NULL;
}

/*
 * get() and peek(): `count` says whether this is a real access (hit/miss
 * counters and eviction metadata) or a condition check.
 */
/* What a lookup counts: nothing (peek), hits and misses (get), or hits
 * only (get_hit). */
enum { COUNT_NONE, COUNT_ALL, COUNT_HITS };

static int store_lookup(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms,
                        pc_item_t **out, int count)
{
    uint64_t h;
    struct shard *sh;
    pc_item_t **link, *reap = NULL;
    int rc = PC_ENOTFOUND;

    if (out)
        *out = NULL;
    if (!s || !out || (!key && klen))
        return PC_EINVAL;
    h = key_hash(s, key, klen);
    sh = shard_of(s, h);

    pthread_mutex_lock(&sh->lock);
    do_migrate(sh, MIGRATE_STEP);
    link = do_find(sh, (uint32_t)h, key, klen);
    if (link && item_expired(*link, now_ms)) {
        do_unlink(sh, link, &reap);
        sh->expirations++;
    } else if (link) {
        /* The table's reference keeps it alive while we hold the lock. */
        atomic_fetch_add_explicit(&(*link)->refs, 1, memory_order_relaxed);
        *out = *link;
        if (count != COUNT_NONE)
            pc_evict_hit(&sh->evict, sh->policy, *link);
        rc = PC_OK;
    }
    if (rc == PC_OK && count != COUNT_NONE)
        sh->hits++;
    else if (rc != PC_OK && count == COUNT_ALL)
        sh->misses++;
    pthread_mutex_unlock(&sh->lock);
    reap_free(reap);
    return rc;
}

/*
 * Two passes, so that the misses of one pass are in flight together: the
 * first hashes every key and prefetches its bucket, the second reads the
 * buckets (arrived meanwhile) and prefetches the item each points at -- its
 * first line (links, expiry, refs, hash, lengths) and the next (the key).
 *
 * The first pass takes no lock: it only computes an address to prefetch,
 * from the table pointer and size read atomically (do_maybe_grow stores
 * them atomically too); a stale or mismatched pair gives a useless address,
 * and a prefetch never faults. The second dereferences the table, which a
 * resize may free, so it holds the shard's lock -- one another thread
 * holds is not waited for. An item freed before its lookup makes its
 * prefetch useless, nothing more.
 */
void pc_store_prefetch(pc_store_t *s, const void *const *keys, const size_t *klens, size_t n)
{
    uint32_t hash[PC_STORE_PREFETCH_MAX];
    struct shard *shs[PC_STORE_PREFETCH_MAX];

    if (n > PC_STORE_PREFETCH_MAX)
        n = PC_STORE_PREFETCH_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = key_hash(s, keys[i], klens[i]);
        struct shard *sh = shard_of(s, h);
        uintptr_t tab = (uintptr_t)__atomic_load_n(&sh->tab, __ATOMIC_RELAXED);
        size_t nb = __atomic_load_n(&sh->nb, __ATOMIC_RELAXED);
        hash[i] = (uint32_t)h;
        shs[i] = sh;
        __builtin_prefetch((const void *)(tab + (hash[i] & (nb - 1)) * sizeof(pc_item_t *)));
    }
    for (size_t i = 0; i < n; i++) {
        struct shard *sh = shs[i];
        if (pthread_mutex_trylock(&sh->lock) != 0)
            continue;
        pc_item_t *it = sh->tab[hash[i] & (sh->nb - 1)];
        pthread_mutex_unlock(&sh->lock);
        if (it != NULL) {
            __builtin_prefetch(it);
            __builtin_prefetch((const char *)it + 64);
        }
    }
}

int pc_store_get(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms, pc_item_t **out)
{
    return store_lookup(s, key, klen, now_ms, out, COUNT_ALL);
}

int pc_store_get_hit(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms,
                     pc_item_t **out)
{
    return store_lookup(s, key, klen, now_ms, out, COUNT_HITS);
}

int pc_store_peek(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms,
                  pc_item_t **out)
{
    return store_lookup(s, key, klen, now_ms, out, COUNT_NONE);
}

void pc_store_release(pc_store_t *s, pc_item_t *it)
{
    (void)s;
    if (it && item_unref(it))
        free(it);
}

void pc_store_unref(void *item) { pc_store_release(NULL, item); }

/*
 * Whether a set() of this mode may store over `cur`, the live item under
 * the key (NULL: absent, or expired and already removed). Called under the
 * shard lock, in the critical section that then stores: that is what makes
 * the conditional modes atomic. 0, PC_EEXISTS or PC_ENOTFOUND.
 */
static int do_set_allowed(const pc_item_t *cur, int mode, uint64_t version, uint64_t expect)
{
    switch (mode) {
    case PC_STORE_SET_IF_NEWER:
        return cur && cur->version >= version ? PC_EEXISTS : PC_OK;
    case PC_STORE_SET_IF_ABSENT:
        return cur ? PC_EEXISTS : PC_OK;
    case PC_STORE_SET_IF_PRESENT:
        return cur ? PC_OK : PC_ENOTFOUND;
    case PC_STORE_SET_IF_VERSION:
        if (!cur)
            return PC_ENOTFOUND;
        return cur->version == expect ? PC_OK : PC_EEXISTS;
    default: /* PC_STORE_SET_ALWAYS */
        return PC_OK;
    }
}

int pc_store_set_if(pc_store_t *s, const void *key, size_t klen, const void *val, size_t vlen,
                    uint32_t flags, uint64_t version, uint64_t expire_ms, int mode,
                    uint64_t expect, uint64_t now_ms)
{
    uint64_t h;
    struct shard *sh;
    pc_item_t *it, **link, *reap = NULL;
    size_t charge;
    int qi, rc;

    if (!s || (!key && klen) || (!val && vlen))
        return PC_EINVAL;
    if (mode != PC_STORE_SET_ALWAYS && mode != PC_STORE_SET_IF_NEWER &&
        mode != PC_STORE_SET_IF_ABSENT && mode != PC_STORE_SET_IF_PRESENT &&
        mode != PC_STORE_SET_IF_VERSION)
        return PC_EINVAL;
    /* Written so that no sum can wrap, whatever size_t is. */
    if (klen > UINT32_MAX || vlen > UINT32_MAX || s->item_budget < ITEM_OVERHEAD ||
        klen > s->item_budget - ITEM_OVERHEAD ||
        vlen > s->item_budget - ITEM_OVERHEAD - klen)
        return PC_ETOOBIG;
    charge = klen + vlen + ITEM_OVERHEAD;

    /* Build the item before taking the lock: malloc and copies run unlocked. */
    it = malloc(ITEM_HDR + klen + vlen);
    if (!it)
        return PC_ENOMEM;
    h = key_hash(s, key, klen);
    it->hnext = it->prev = it->next = NULL;
    it->version = version;
    atomic_init(&it->expire, expire_ms);
    atomic_init(&it->refs, 1); /* the table's reference */
    it->hash = (uint32_t)h;
    it->flags = flags;
    it->klen = (uint32_t)klen;
    it->vlen = (uint32_t)vlen;
    it->epoch = 0; /* set under the lock, when it is linked */
    it->meta = 0;
    if (klen)
        memcpy(it->data, key, klen);
    if (vlen)
        memcpy(it->data + klen, val, vlen);

    sh = shard_of(s, h);
    pthread_mutex_lock(&sh->lock);
    do_migrate(sh, MIGRATE_STEP);
    link = do_find(sh, it->hash, key, klen);
    if (link && item_expired(*link, now_ms)) {
        do_unlink(sh, link, &reap);
        sh->expirations++;
        link = NULL;
    }
    rc = do_set_allowed(link ? *link : NULL, mode, version, expect);
    if (rc == PC_OK) {
        if (link) {
            /*
             * A replacement keeps the old item's place in the policy: the
             * key has proven itself (or not) regardless of its new value.
             */
            qi = pc_evict_replace(it, *link);
            do_unlink(sh, link, &reap);
        } else {
            qi = pc_evict_admit(&sh->evict, sh->policy, it->hash);
        }
        /* Cannot run dry: the size check above guarantees an empty shard fits. */
        while (sh->bytes + charge > sh->budget && do_evict_one(sh, &reap))
            ;
        /*
         * The epoch is read here, under the lock and just before linking,
         * not when the item was built: a set() that overlaps a bump then
         * gets the epoch of the moment its item became visible, and one
         * that began after a bump returned cannot carry an older epoch.
         */
        it->epoch = atomic_load(&s->epoch);
        do_insert(sh, it, qi);
        sh->sets++;
        it = NULL;
    }
    pthread_mutex_unlock(&sh->lock);
    reap_free(reap);
    free(it); /* only when not stored */
    return rc;
}

int pc_store_set(pc_store_t *s, const void *key, size_t klen, const void *val, size_t vlen,
                 uint32_t flags, uint64_t version, uint64_t expire_ms, int mode,
                 uint64_t now_ms)
{
    if (mode == PC_STORE_SET_IF_VERSION)
        return PC_EINVAL; /* needs an expected version: pc_store_set_if() */
    return pc_store_set_if(s, key, klen, val, vlen, flags, version, expire_ms, mode, 0, now_ms);
}

/* Deletes the key if it is live and (when `check`) its version is below
 * `below`. An expired entry is removed as an expiration either way.
 * 0, PC_ENOTFOUND or PC_EEXISTS. */
static int do_del(pc_store_t *s, const void *key, size_t klen, int check, uint64_t below,
                  uint64_t now_ms)
{
    uint64_t h;
    struct shard *sh;
    pc_item_t **link, *reap = NULL;
    int rc = PC_ENOTFOUND;

    if (!s || (!key && klen))
        return PC_EINVAL;
    h = key_hash(s, key, klen);
    sh = shard_of(s, h);
    pthread_mutex_lock(&sh->lock);
    do_migrate(sh, MIGRATE_STEP);
    link = do_find(sh, (uint32_t)h, key, klen);
    if (link && item_expired(*link, now_ms)) {
        do_unlink(sh, link, &reap);
        sh->expirations++;
    } else if (link && check && (*link)->version >= below) {
        rc = PC_EEXISTS;
    } else if (link) {
        do_unlink(sh, link, &reap);
        sh->deletes++;
        rc = PC_OK;
    }
    pthread_mutex_unlock(&sh->lock);
    reap_free(reap);
    return rc;
}

int pc_store_del(pc_store_t *s, const void *key, size_t klen, uint64_t now_ms)
{
    return do_del(s, key, klen, 0, 0, now_ms);
}

int pc_store_del_if_older(pc_store_t *s, const void *key, size_t klen, uint64_t version,
                          uint64_t now_ms)
{
    return do_del(s, key, klen, 1, version, now_ms);
}

int pc_store_touch(pc_store_t *s, const void *key, size_t klen, uint64_t expire_ms,
                   uint64_t now_ms)
{
    uint64_t h;
    struct shard *sh;
    pc_item_t **link, *reap = NULL;
    int rc = PC_ENOTFOUND;

    if (!s || (!key && klen))
        return PC_EINVAL;
    h = key_hash(s, key, klen);
    sh = shard_of(s, h);
    pthread_mutex_lock(&sh->lock);
    do_migrate(sh, MIGRATE_STEP);
    link = do_find(sh, (uint32_t)h, key, klen);
    if (link && item_expired(*link, now_ms)) {
        do_unlink(sh, link, &reap);
        sh->expirations++;
    } else if (link) {
        atomic_store_explicit(&(*link)->expire, expire_ms, memory_order_relaxed);
        rc = PC_OK;
    }
    pthread_mutex_unlock(&sh->lock);
    reap_free(reap);
    return rc;
}

/*
 * Sweeps one shard from the cursor (bucket, position in its chain). Returns
 * true when the shard's last bucket is done. Stops early when the item
 * budget or the bucket-visit budget runs out, leaving the cursor there.
 *
 * Only the new table is walked: while resizing, the old bucket feeding the
 * current one is moved over first. A chain can change between two calls,
 * so the position is a hint: an item may be examined twice or skipped for
 * one pass, never lost for good -- lazy expiry still catches it.
 */
static bool do_sweep_shard(pc_store_t *s, struct shard *sh, uint64_t now_ms, size_t budget,
                           size_t max_visits, size_t *examined, size_t *visits,
                           size_t *removed, pc_item_t **reap)
{
    while (s->sweep_bucket < sh->nb) {
        pc_item_t **link;
        size_t pos = 0;

        if (*examined >= budget || *visits >= max_visits)
            return false;
        (*visits)++;
        if (sh->old)
            do_migrate_bucket(sh, s->sweep_bucket & (sh->old_nb - 1));
        link = &sh->tab[s->sweep_bucket];
        while (*link) {
            if (pos < s->sweep_pos) {
                link = &(*link)->hnext;
                pos++;
                continue;
            }
            if (*examined >= budget) {
                s->sweep_pos = pos;
                return false;
            }
            (*examined)++;
            if (item_expired(*link, now_ms)) {
                do_unlink(sh, link, reap); /* *link is now the next item */
                sh->expirations++;
                (*removed)++;
            } else {
                link = &(*link)->hnext;
                pos++;
            }
        }
        s->sweep_bucket++;
        s->sweep_pos = 0;
    }
    return true;
}

size_t pc_store_sweep(pc_store_t *s, uint64_t now_ms, size_t budget)
{
    size_t examined = 0, visits = 0, removed = 0, max_visits;

    if (!s || budget == 0)
        return 0;
    max_visits = budget > SIZE_MAX / SWEEP_VISITS_PER_ITEM ? SIZE_MAX
                                                           : budget * SWEEP_VISITS_PER_ITEM;
    pthread_mutex_lock(&s->sweep_lock);
    /* At most one full round, counting the partly swept shard we start in twice. */
    for (unsigned n = 0; n <= s->nshards; n++) {
        struct shard *sh = &s->shards[s->sweep_shard];
        pc_item_t *reap = NULL;
        bool done;

        pthread_mutex_lock(&sh->lock);
        done = do_sweep_shard(s, sh, now_ms, budget, max_visits, &examined, &visits, &removed,
                              &reap);
        pthread_mutex_unlock(&sh->lock);
        reap_free(reap);
        if (!done)
            break;
        s->sweep_shard = (s->sweep_shard + 1) & s->shard_mask;
        s->sweep_bucket = 0;
        s->sweep_pos = 0;
        if (examined >= budget || visits >= max_visits)
            break;
    }
    pthread_mutex_unlock(&s->sweep_lock);
    return removed;
}

void pc_store_stats(pc_store_t *s, pc_store_stats_t *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    for (unsigned i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];

        pthread_mutex_lock(&sh->lock);
        out->hits += sh->hits;
        out->misses += sh->misses;
        out->sets += sh->sets;
        out->deletes += sh->deletes;
        out->evictions += sh->evictions;
        out->expirations += sh->expirations;
        out->items += sh->items;
        out->bytes += sh->bytes;
        pthread_mutex_unlock(&sh->lock);
    }
    out->limit = s->limit;
}

/*
 * Checks one shard's invariants: every item in the right bucket of the
 * right shard, table and queues holding the same items, byte and item
 * counts equal to what the items add up to, and the budget respected.
 */
static bool do_verify_shard(const pc_store_t *s, struct shard *sh, unsigned idx,
                            uint64_t *count)
{
    size_t n = 0, charged = 0, queued, queued_bytes;
    pc_item_t **tabs[2] = {sh->tab, sh->old};
    size_t nbs[2] = {sh->nb, sh->old_nb};

    if (sh->old && sh->old_nb * 2 != sh->nb)
        return false;
    for (int t = 0; t < 2; t++) {
        if (!tabs[t])
            continue;
        for (size_t b = 0; b < nbs[t]; b++) {
            for (const pc_item_t *it = tabs[t][b]; it; it = it->hnext) {
                uint64_t h = key_hash(s, it->data, it->klen);

                if ((uint32_t)h != it->hash || (it->hash & (nbs[t] - 1)) != b ||
                    ((uint32_t)(h >> 32) & s->shard_mask) != idx ||
                    atomic_load(&it->refs) == 0)
                    return false;
                n++;
                charged += item_charge(it);
            }
        }
    }
    if (pc_evict_verify(&sh->evict, sh->policy, &queued, &queued_bytes) != PC_OK)
        return false;
    if (n != sh->items || queued != n || sh->bytes != s->fixed + charged ||
        queued_bytes != charged || sh->bytes > sh->budget)
        return false;
    *count += n;
    return true;
}

int pc_store_verify(pc_store_t *s, uint64_t *items)
{
    uint64_t count = 0;
    bool ok = true;

    if (!s)
        return PC_EINVAL;
    for (unsigned i = 0; i < s->nshards && ok; i++) {
        pthread_mutex_lock(&s->shards[i].lock);
        ok = do_verify_shard(s, &s->shards[i], i, &count);
        pthread_mutex_unlock(&s->shards[i].lock);
    }
    if (items)
        *items = ok ? count : 0;
    return ok ? PC_OK : PC_EINTERNAL;
}

const uint8_t *pc_item_key(const pc_item_t *it)
{
    return it->data;
}

size_t pc_item_klen(const pc_item_t *it)
{
    return it->klen;
}

const uint8_t *pc_item_value(const pc_item_t *it)
{
    return it->data + it->klen;
}

size_t pc_item_vlen(const pc_item_t *it)
{
    return it->vlen;
}

uint32_t pc_item_flags(const pc_item_t *it)
{
    return it->flags;
}

uint64_t pc_item_version(const pc_item_t *it)
{
    return it->version;
}

uint64_t pc_item_expire(const pc_item_t *it)
{
    return atomic_load_explicit(&it->expire, memory_order_relaxed);
}

uint32_t pc_item_epoch(const pc_item_t *it)
{
    return it->epoch;
}

uint32_t pc_store_epoch(pc_store_t *s)
{
    return atomic_load(&s->epoch);
}

uint32_t pc_store_epoch_bump(pc_store_t *s)
{
    return atomic_fetch_add(&s->epoch, 1) + 1;
}

unsigned pc_store_shards_for(size_t memory_limit, size_t max_item)
{
    size_t per = 4 * (max_item + PC_STORE_ITEM_OVERHEAD);
    unsigned shards = 64;
    while (shards > 1 && memory_limit / shards < per)
        shards /= 2;
    return shards;
}
