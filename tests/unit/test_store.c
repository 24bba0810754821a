/*
 * test_store.c -- unit tests for node/pc_store.
 *
 * The clock is injected: every call takes now_ms, so expiry is tested by
 * passing times, never by sleeping. Stores are created with a fixed hash
 * key so shard and bucket placement -- and so every eviction order checked
 * below -- is the same on every run. Run under ASan: the refcount tests
 * rely on it to turn a use-after-free into a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_store.h"

static const uint8_t test_key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* splitmix64: a seeded, local PRNG so runs are reproducible. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static pc_store_t *new_store(size_t limit, unsigned shards, pc_evict_policy_t policy)
{
    pc_store_config_t cfg = {
        .memory_limit = limit, .shards = shards, .policy = policy, .hash_key = test_key};
    pc_store_t *s = NULL;

    assert_int_equal(pc_store_new(&cfg, &s), PC_OK);
    assert_non_null(s);
    return s;
}

static pc_store_stats_t stats(pc_store_t *s)
{
    pc_store_stats_t st;
    pc_store_stats(s, &st);
    return st;
}

/* Bytes an empty store is charged: the shards' fixed share. */
static uint64_t fixed_bytes(unsigned shards, pc_evict_policy_t policy)
{
    pc_store_t *s = new_store((size_t)1 << 30, shards, policy);
    uint64_t b = stats(s).bytes;
    pc_store_free(&s);
    return b;
}

static size_t charge(size_t klen, size_t vlen)
{
    return klen + vlen + PC_STORE_ITEM_OVERHEAD;
}

static int set_kv(pc_store_t *s, const char *k, const char *v, uint64_t expire, uint64_t now)
{
    return pc_store_set(s, k, strlen(k), v, strlen(v), 0, 0, expire, PC_STORE_SET_ALWAYS, now);
}

static bool present(pc_store_t *s, const char *k, uint64_t now)
{
    pc_item_t *it = NULL;
    int rc = pc_store_peek(s, k, strlen(k), now, &it);
    pc_store_release(s, it);
    return rc == PC_OK;
}

static void assert_value(pc_store_t *s, const char *k, const char *want, uint64_t now)
{
    pc_item_t *it = NULL;

    assert_int_equal(pc_store_get(s, k, strlen(k), now, &it), PC_OK);
    assert_int_equal(pc_item_vlen(it), strlen(want));
    assert_memory_equal(pc_item_value(it), want, strlen(want));
    pc_store_release(s, it);
}

static void assert_consistent(pc_store_t *s)
{
    uint64_t n = 0;

    assert_int_equal(pc_store_verify(s, &n), PC_OK);
    assert_int_equal(n, stats(s).items);
    assert_true(stats(s).bytes <= stats(s).limit);
}

static void keyname(char *buf, size_t len, const char *prefix, unsigned i)
{
    snprintf(buf, len, "%s%u", prefix, i);
}

/* ------------------------------------------------------------------ */

static void test_new_invalid(void **state)
{
    pc_store_config_t cfg = {.memory_limit = 1 << 20};
    pc_store_t *s = (pc_store_t *)&cfg; /* must be cleared on failure */

    (void)state;
    assert_int_equal(pc_store_new(NULL, &s), PC_EINVAL);
    assert_null(s);
    assert_int_equal(pc_store_new(&cfg, NULL), PC_EINVAL);
    cfg.memory_limit = 0;
    assert_int_equal(pc_store_new(&cfg, &s), PC_EINVAL);
    cfg.memory_limit = 1 << 20;
    cfg.shards = 3;
    assert_int_equal(pc_store_new(&cfg, &s), PC_EINVAL);
    cfg.shards = 1u << 17;
    assert_int_equal(pc_store_new(&cfg, &s), PC_EINVAL);
    cfg.shards = 0;
    cfg.policy = (pc_evict_policy_t)7;
    assert_int_equal(pc_store_new(&cfg, &s), PC_EINVAL);
    cfg.policy = PC_EVICT_S3FIFO;
    cfg.memory_limit = 1000; /* 64 shards of 15 bytes hold nothing */
    assert_int_equal(pc_store_new(&cfg, &s), PC_EINVAL);
    assert_null(s);

    cfg.memory_limit = 1 << 20; /* shards 0 = 64, random hash key */
    assert_int_equal(pc_store_new(&cfg, &s), PC_OK);
    assert_int_equal(stats(s).limit, 1 << 20);
    assert_true(stats(s).bytes > 0 && stats(s).bytes < 64 * 1024);
    pc_store_free(&s);
    assert_null(s);
    pc_store_free(&s);  /* NULL-safe */
    pc_store_free(NULL);
    pc_store_release(NULL, NULL);
}

static void test_roundtrip(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_S3FIFO);
    pc_item_t *it = NULL;

    (void)state;
    assert_int_equal(pc_store_get(s, "k", 1, 0, &it), PC_ENOTFOUND);
    assert_null(it);
    assert_int_equal(pc_store_set(s, "k", 1, "hello", 5, 0xabcd, 42, 0, PC_STORE_SET_ALWAYS, 0),
                     PC_OK);
    assert_int_equal(pc_store_get(s, "k", 1, 0, &it), PC_OK);
    assert_int_equal(pc_item_klen(it), 1);
    assert_memory_equal(pc_item_key(it), "k", 1);
    assert_int_equal(pc_item_vlen(it), 5);
    assert_memory_equal(pc_item_value(it), "hello", 5);
    assert_int_equal(pc_item_flags(it), 0xabcd);
    assert_int_equal(pc_item_version(it), 42);
    assert_int_equal(pc_item_expire(it), 0);
    pc_store_release(s, it);

    /* replace, delete, delete again */
    assert_int_equal(set_kv(s, "k", "world!", 0, 0), PC_OK);
    assert_value(s, "k", "world!", 0);
    assert_int_equal(pc_store_del(s, "k", 1, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "k", 1, 0, &it), PC_ENOTFOUND);
    assert_int_equal(pc_store_del(s, "k", 1, 0), PC_ENOTFOUND);
    assert_int_equal(pc_store_touch(s, "k", 1, 5, 0), PC_ENOTFOUND);

    /* empty value and empty key are ordinary entries */
    assert_int_equal(pc_store_set(s, "e", 1, NULL, 0, 0, 0, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_value(s, "e", "", 0);
    assert_int_equal(pc_store_set(s, NULL, 0, "v", 1, 0, 0, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "", 0, 0, &it), PC_OK);
    assert_int_equal(pc_item_klen(it), 0);
    pc_store_release(s, it);

    /* binary keys: embedded NULs, and keys that differ only in length */
    assert_int_equal(pc_store_set(s, "a\0b", 3, "1", 1, 0, 0, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_set(s, "a\0", 2, "2", 1, 0, 0, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "a\0b", 3, 0, &it), PC_OK);
    assert_memory_equal(pc_item_value(it), "1", 1);
    pc_store_release(s, it);
    assert_int_equal(pc_store_get(s, "a", 1, 0, &it), PC_ENOTFOUND);

    /* invalid arguments */
    assert_int_equal(pc_store_set(s, NULL, 3, "v", 1, 0, 0, 0, PC_STORE_SET_ALWAYS, 0), PC_EINVAL);
    assert_int_equal(pc_store_set(s, "k", 1, NULL, 3, 0, 0, 0, PC_STORE_SET_ALWAYS, 0), PC_EINVAL);
    assert_int_equal(pc_store_set(s, "k", 1, "v", 1, 0, 0, 0, 9, 0), PC_EINVAL);
    assert_int_equal(pc_store_get(s, "k", 1, 0, NULL), PC_EINVAL);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_value_copy_independence(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_S3FIFO);
    char key[8] = "key", val[16] = "original-value";
    pc_item_t *it;

    (void)state;
    assert_int_equal(pc_store_set(s, key, 3, val, 14, 0, 0, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    memset(val, 'X', sizeof val);
    memset(key, 'Y', 3);
    assert_value(s, "key", "original-value", 0);
    assert_int_equal(pc_store_get(s, "key", 3, 0, &it), PC_OK);
    assert_memory_equal(pc_item_key(it), "key", 3);
    pc_store_release(s, it);
    pc_store_free(&s);
}

/*
 * A reader's reference outlives replacement and deletion of its item. If
 * the store freed the old item early, ASan reports the reads below.
 */
static void test_refcount(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_LRU);
    uint64_t empty = stats(s).bytes;
    pc_item_t *old = NULL, *mid = NULL, *cur = NULL;

    (void)state;
    assert_int_equal(set_kv(s, "k", "old-bytes", 0, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "k", 1, 0, &old), PC_OK);
    assert_int_equal(set_kv(s, "k", "new-bytes!", 0, 0), PC_OK);
    assert_int_equal(pc_store_peek(s, "k", 1, 0, &mid), PC_OK);
    assert_int_equal(pc_store_get(s, "k", 1, 0, &cur), PC_OK);
    assert_ptr_equal(mid, cur);
    assert_memory_equal(pc_item_value(cur), "new-bytes!", 10);
    assert_memory_equal(pc_item_value(old), "old-bytes", 9);

    assert_int_equal(pc_store_del(s, "k", 1, 0), PC_OK);
    /* unlinked items are no longer charged, even while referenced */
    assert_int_equal(stats(s).bytes, empty);
    assert_int_equal(stats(s).items, 0);
    assert_memory_equal(pc_item_value(old), "old-bytes", 9);
    assert_memory_equal(pc_item_value(cur), "new-bytes!", 10);
    pc_store_release(s, old);
    pc_store_release(s, mid);
    assert_memory_equal(pc_item_value(cur), "new-bytes!", 10);
    pc_store_release(s, cur); /* last reference: freed here */

    /* expiry of a referenced item: same guarantee */
    assert_int_equal(set_kv(s, "t", "ttl-value", 100, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "t", 1, 50, &old), PC_OK);
    assert_int_equal(pc_store_get(s, "t", 1, 100, &cur), PC_ENOTFOUND);
    assert_memory_equal(pc_item_value(old), "ttl-value", 9);
    pc_store_release(s, old);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_refcount_eviction(void **state)
{
    /* one shard holding one 100-byte item: each insert evicts the last */
    uint64_t fixed = fixed_bytes(1, PC_EVICT_S3FIFO);
    pc_store_t *s = new_store(fixed + charge(2, 100) + 10, 1, PC_EVICT_S3FIFO);
    char v1[100], v2[100];
    pc_item_t *it;

    (void)state;
    memset(v1, 'a', sizeof v1);
    memset(v2, 'b', sizeof v2);
    assert_int_equal(pc_store_set(s, "k1", 2, v1, 100, 0, 0, 0, 0, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "k1", 2, 0, &it), PC_OK);
    assert_int_equal(pc_store_set(s, "k2", 2, v2, 100, 0, 0, 0, 0, 0), PC_OK);
    assert_int_equal(stats(s).evictions, 1);
    assert_false(present(s, "k1", 0));
    assert_memory_equal(pc_item_value(it), v1, 100);
    pc_store_release(s, it);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_ttl_boundary(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_S3FIFO);
    pc_item_t *it = NULL;
    pc_store_stats_t st;

    (void)state;
    assert_int_equal(set_kv(s, "k", "v", 1000, 10), PC_OK);
    assert_int_equal(pc_store_get(s, "k", 1, 999, &it), PC_OK);
    assert_int_equal(pc_item_expire(it), 1000);
    pc_store_release(s, it);
    assert_true(present(s, "k", 999));
    assert_int_equal(pc_store_get(s, "k", 1, 1000, &it), PC_ENOTFOUND);
    assert_null(it);
    st = stats(s);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.items, 0);
    /* gone for good, even if the clock were to go back */
    assert_false(present(s, "k", 0));

    /* peek, del and set also expire lazily */
    assert_int_equal(set_kv(s, "p", "v", 50, 0), PC_OK);
    assert_false(present(s, "p", 50));
    assert_int_equal(set_kv(s, "d", "v", 50, 0), PC_OK);
    assert_int_equal(pc_store_del(s, "d", 1, 60), PC_ENOTFOUND);
    assert_int_equal(set_kv(s, "r", "v", 50, 0), PC_OK);
    assert_int_equal(set_kv(s, "r", "w", 0, 70), PC_OK);
    st = stats(s);
    assert_int_equal(st.expirations, 4);
    assert_int_equal(st.deletes, 0);
    assert_int_equal(st.items, 1);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_touch(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_LRU);
    pc_item_t *it;

    (void)state;
    assert_int_equal(set_kv(s, "k", "v", 1000, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "k", 1, 0, &it), PC_OK);
    assert_int_equal(pc_store_touch(s, "k", 1, 2000, 500), PC_OK); /* extend */
    assert_int_equal(pc_item_expire(it), 2000); /* the one in-place change */
    pc_store_release(s, it);
    assert_true(present(s, "k", 1500));
    assert_false(present(s, "k", 2000));

    assert_int_equal(set_kv(s, "k", "v", 1000, 0), PC_OK);
    assert_int_equal(pc_store_touch(s, "k", 1, 0, 999), PC_OK); /* remove TTL */
    assert_true(present(s, "k", UINT64_MAX));
    assert_int_equal(pc_store_touch(s, "k", 1, 300, 200), PC_OK); /* shorten */
    assert_false(present(s, "k", 300));

    /* touching an expired key finds nothing and expires it */
    assert_int_equal(set_kv(s, "x", "v", 100, 0), PC_OK);
    assert_int_equal(pc_store_touch(s, "x", 1, 5000, 100), PC_ENOTFOUND);
    assert_int_equal(stats(s).expirations, 3);
    assert_int_equal(stats(s).items, 0);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_sweep(void **state)
{
    pc_store_t *s = new_store(1 << 22, 4, PC_EVICT_S3FIFO);
    char k[32];
    size_t total = 0, calls = 0, got;

    (void)state;
    for (unsigned i = 0; i < 200; i++) {
        keyname(k, sizeof k, "key", i);
        assert_int_equal(set_kv(s, k, "value", i % 2 ? 1000 : 0, 0), PC_OK);
    }
    assert_int_equal(pc_store_sweep(s, 2000, 0), 0);
    /* nothing due yet: a full round removes nothing */
    for (int i = 0; i < 10; i++)
        assert_int_equal(pc_store_sweep(s, 999, 100), 0);
    assert_int_equal(stats(s).items, 200);

    /* each call examines at most 10 items, so removes at most 10 */
    while (total < 100 && calls < 1000) {
        got = pc_store_sweep(s, 1000, 10);
        assert_true(got <= 10);
        total += got;
        calls++;
        assert_consistent(s);
    }
    assert_int_equal(total, 100);
    /* 200 items at <= 10 examined per call: a pass needs >= 20 calls, and
     * resuming means it needs no more than one pass plus a partial one */
    assert_true(calls >= 10);
    assert_true(calls <= 45);
    assert_int_equal(stats(s).items, 100);
    assert_int_equal(stats(s).expirations, 100);
    assert_int_equal(pc_store_sweep(s, 1000, 1000), 0);
    for (unsigned i = 0; i < 200; i += 2) {
        keyname(k, sizeof k, "key", i);
        assert_true(present(s, k, 5000));
    }
    pc_store_free(&s);
}

/*
 * Budget 1 with live items sharing chains with expired ones: the cursor
 * must resume inside a chain, or the sweep would examine the first live
 * item of a chain forever and never reach the expired ones behind it.
 */
static void test_sweep_resumes_in_chain(void **state)
{
    pc_store_t *s = new_store(1 << 22, 1, PC_EVICT_LRU);
    char k[32];
    size_t total = 0, calls = 0;

    (void)state;
    /* 24 items in 16 buckets (no resize yet): chains of 2 and more */
    for (unsigned i = 0; i < 24; i++) {
        keyname(k, sizeof k, "c", i);
        assert_int_equal(set_kv(s, k, "v", i % 2 ? 10 : 0, 0), PC_OK);
    }
    while (total < 12 && calls < 200) {
        size_t got = pc_store_sweep(s, 10, 1);
        assert_true(got <= 1);
        total += got;
        calls++;
    }
    assert_int_equal(total, 12);
    assert_true(calls <= 60); /* one item per call, plus the empty buckets */
    assert_int_equal(stats(s).items, 12);
    assert_consistent(s);
    pc_store_free(&s);
}

/* Random sizes and keys: the limit holds after every single insert. */
static void limit_holds(pc_evict_policy_t policy, unsigned shards)
{
    const size_t limit = 256 * 1024;
    pc_store_t *s = new_store(limit, shards, policy);
    static char val[4096];
    /* values up to half a shard's budget, so none is too big */
    size_t vmax = limit / shards / 2 < sizeof val ? limit / shards / 2 : sizeof val;
    uint64_t rng = 12345 + policy;
    char k[32];

    memset(val, 'v', sizeof val);
    for (unsigned i = 0; i < 20000; i++) {
        size_t vlen = rng_next(&rng) % vmax;
        unsigned key = (unsigned)(rng_next(&rng) % 3000);
        int rc;

        keyname(k, sizeof k, "key-", key);
        rc = pc_store_set(s, k, strlen(k), val, vlen, 0, 0, 0, PC_STORE_SET_ALWAYS, i);
        assert_int_equal(rc, PC_OK);
        assert_true(stats(s).bytes <= limit);
        if (rng_next(&rng) % 8 == 0) {
            pc_item_t *it = NULL;
            keyname(k, sizeof k, "key-", (unsigned)(rng_next(&rng) % 3000));
            if (pc_store_get(s, k, strlen(k), i, &it) == PC_OK)
                pc_store_release(s, it);
        }
        if (i % 997 == 0)
            assert_consistent(s);
    }
    assert_true(stats(s).evictions > 1000);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_limit_never_exceeded(void **state)
{
    (void)state;
    limit_holds(PC_EVICT_S3FIFO, 4);
    limit_holds(PC_EVICT_LRU, 4);
    limit_holds(PC_EVICT_S3FIFO, 1);
    limit_holds(PC_EVICT_LRU, 64);
}

/* One shard with room for exactly `n` items of charge(klen, vlen). */
static pc_store_t *store_for(unsigned n, size_t klen, size_t vlen, pc_evict_policy_t policy)
{
    return new_store(fixed_bytes(1, policy) + n * charge(klen, vlen) + charge(klen, vlen) / 2, 1,
                     policy);
}

static void test_lru_eviction(void **state)
{
    pc_store_t *s = store_for(3, 1, 5, PC_EVICT_LRU);
    pc_item_t *it;

    (void)state;
    assert_int_equal(set_kv(s, "a", "vvvvv", 0, 0), PC_OK);
    assert_int_equal(set_kv(s, "b", "vvvvv", 0, 0), PC_OK);
    assert_int_equal(set_kv(s, "c", "vvvvv", 0, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "a", 1, 0, &it), PC_OK); /* a becomes newest */
    pc_store_release(s, it);
    assert_int_equal(set_kv(s, "d", "vvvvv", 0, 0), PC_OK); /* evicts b */
    assert_false(present(s, "b", 0));
    assert_true(present(s, "a", 0) && present(s, "c", 0) && present(s, "d", 0));
    /* peek is not a use: c stays the oldest */
    assert_true(present(s, "c", 0));
    assert_int_equal(set_kv(s, "e", "vvvvv", 0, 0), PC_OK);
    assert_false(present(s, "c", 0));
    /* replacing a key makes it newest */
    assert_int_equal(set_kv(s, "a", "wwwww", 0, 0), PC_OK);
    assert_int_equal(set_kv(s, "f", "vvvvv", 0, 0), PC_OK);
    assert_false(present(s, "d", 0));
    assert_true(present(s, "a", 0) && present(s, "e", 0) && present(s, "f", 0));
    assert_int_equal(stats(s).evictions, 3);
    assert_int_equal(stats(s).items, 3);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_s3fifo_eviction(void **state)
{
    pc_store_t *s = store_for(10, 3, 5, PC_EVICT_S3FIFO);
    char k[8];

    (void)state;
    /* nothing ever hit: S3-FIFO degenerates to FIFO */
    for (unsigned i = 0; i < 20; i++) {
        keyname(k, sizeof k, "k", i + 10);
        assert_int_equal(set_kv(s, k, "vvvvv", 0, 0), PC_OK);
        assert_consistent(s);
    }
    assert_int_equal(stats(s).evictions, 10);
    assert_int_equal(stats(s).items, 10);
    for (unsigned i = 0; i < 20; i++) {
        keyname(k, sizeof k, "k", i + 10);
        assert_int_equal(present(s, k, 0), i >= 10);
    }
    pc_store_free(&s);
}

/*
 * The reason for S3-FIFO: a hot set that has been hit survives a scan of
 * one-hit wonders much longer than the cache. Under FIFO (or LRU) the scan
 * flushes it; the LRU half of this test shows the scenario is hard enough
 * to tell the policies apart.
 */
static unsigned hot_survivors(pc_evict_policy_t policy)
{
    pc_store_t *s = store_for(100, 6, 32, policy);
    char k[16], v[33];
    unsigned survivors = 0;

    memset(v, 'v', 32);
    v[32] = '\0';
    for (unsigned i = 0; i < 20; i++) {
        keyname(k, sizeof k, "hot", i + 100);
        assert_int_equal(set_kv(s, k, v, 0, 0), PC_OK);
    }
    for (unsigned r = 0; r < 2; r++) {
        for (unsigned i = 0; i < 20; i++) {
            pc_item_t *it;
            keyname(k, sizeof k, "hot", i + 100);
            assert_int_equal(pc_store_get(s, k, strlen(k), 0, &it), PC_OK);
            pc_store_release(s, it);
        }
    }
    /* read-through scan: miss, then fill */
    for (unsigned i = 0; i < 1000; i++) {
        pc_item_t *it;
        keyname(k, sizeof k, "s", i + 10000); /* 6 bytes, like the hot keys */
        assert_int_equal(pc_store_get(s, k, strlen(k), 0, &it), PC_ENOTFOUND);
        assert_int_equal(set_kv(s, k, v, 0, 0), PC_OK);
    }
    for (unsigned i = 0; i < 20; i++) {
        keyname(k, sizeof k, "hot", i + 100);
        survivors += present(s, k, 0);
    }
    assert_int_equal(stats(s).items, 100);
    assert_consistent(s);
    pc_store_free(&s);
    return survivors;
}

static void test_s3fifo_scan_resistance(void **state)
{
    (void)state;
    assert_int_equal(hot_survivors(PC_EVICT_S3FIFO), 20);
    assert_int_equal(hot_survivors(PC_EVICT_LRU), 0);
}

/* A key evicted from small and soon set again is admitted to main. */
static void test_s3fifo_ghost(void **state)
{
    pc_store_t *s = store_for(100, 6, 32, PC_EVICT_S3FIFO);
    char k[16], v[33];

    (void)state;
    memset(v, 'v', 32);
    v[32] = '\0';
    assert_int_equal(set_kv(s, "ghost1", v, 0, 0), PC_OK);
    for (unsigned i = 0; i < 140; i++) {
        keyname(k, sizeof k, "a", i + 1000);
        assert_int_equal(set_kv(s, k, v, 0, 0), PC_OK);
    }
    assert_false(present(s, "ghost1", 0)); /* evicted first, remembered */
    assert_int_equal(set_kv(s, "ghost1", v, 0, 0), PC_OK); /* straight to main */
    for (unsigned i = 0; i < 1000; i++) {
        keyname(k, sizeof k, "b", i + 1000);
        assert_int_equal(set_kv(s, k, v, 0, 0), PC_OK);
    }
    assert_true(present(s, "ghost1", 0));

    /* a key not seen recently goes to small and is flushed by the scan */
    assert_int_equal(set_kv(s, "newcomer", v, 0, 0), PC_OK);
    for (unsigned i = 0; i < 1000; i++) {
        keyname(k, sizeof k, "c", i + 1000);
        assert_int_equal(set_kv(s, k, v, 0, 0), PC_OK);
    }
    assert_false(present(s, "newcomer", 0));
    assert_consistent(s);
    pc_store_free(&s);
}

/* Items in main are kept while hit and evicted once their count runs out. */
static void test_s3fifo_main_reinsertion(void **state)
{
    pc_store_t *s = store_for(100, 6, 32, PC_EVICT_S3FIFO);
    char k[16], v[33];
    pc_item_t *it;
    unsigned kept = 0;

    (void)state;
    memset(v, 'v', 32);
    v[32] = '\0';
    /* 90 items, all hit once: all promoted to main when small drains */
    for (unsigned i = 0; i < 90; i++) {
        keyname(k, sizeof k, "m", i + 100);
        assert_int_equal(set_kv(s, k, v, 0, 0), PC_OK);
        assert_int_equal(pc_store_get(s, k, strlen(k), 0, &it), PC_OK);
        pc_store_release(s, it);
    }
    /* keep hitting the first 10 while a scan runs through small */
    for (unsigned i = 0; i < 3000; i++) {
        keyname(k, sizeof k, "s", i + 100);
        assert_int_equal(set_kv(s, k, v, 0, 0), PC_OK);
        keyname(k, sizeof k, "m", i % 10 + 100);
        if (pc_store_get(s, k, strlen(k), 0, &it) == PC_OK)
            pc_store_release(s, it);
    }
    for (unsigned i = 0; i < 10; i++) {
        keyname(k, sizeof k, "m", i + 100);
        kept += present(s, k, 0);
    }
    assert_int_equal(kept, 10);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_if_newer(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_S3FIFO);
    pc_item_t *it;

    (void)state;
    /* absent: stored */
    assert_int_equal(pc_store_set(s, "k", 1, "v5", 2, 0, 5, 0, PC_STORE_SET_IF_NEWER, 0), PC_OK);
    /* equal or older: refused, value unchanged */
    assert_int_equal(pc_store_set(s, "k", 1, "v5b", 3, 0, 5, 0, PC_STORE_SET_IF_NEWER, 0),
                     PC_EEXISTS);
    assert_int_equal(pc_store_set(s, "k", 1, "v4", 2, 0, 4, 0, PC_STORE_SET_IF_NEWER, 0),
                     PC_EEXISTS);
    assert_value(s, "k", "v5", 0);
    /* newer: stored */
    assert_int_equal(pc_store_set(s, "k", 1, "v6", 2, 0, 6, 0, PC_STORE_SET_IF_NEWER, 0), PC_OK);
    assert_int_equal(pc_store_get(s, "k", 1, 0, &it), PC_OK);
    assert_int_equal(pc_item_version(it), 6);
    assert_memory_equal(pc_item_value(it), "v6", 2);
    pc_store_release(s, it);
    /* ALWAYS ignores versions, even going back */
    assert_int_equal(pc_store_set(s, "k", 1, "v1", 2, 0, 1, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_value(s, "k", "v1", 0);
    /* an expired entry counts as absent, whatever its version */
    assert_int_equal(pc_store_set(s, "t", 1, "v9", 2, 0, 9, 100, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_set(s, "t", 1, "v2", 2, 0, 2, 0, PC_STORE_SET_IF_NEWER, 50),
                     PC_EEXISTS);
    assert_int_equal(pc_store_set(s, "t", 1, "v2", 2, 0, 2, 0, PC_STORE_SET_IF_NEWER, 100),
                     PC_OK);
    assert_value(s, "t", "v2", 100);
    /* version 0 with IF_NEWER: insert only if absent */
    assert_int_equal(pc_store_set(s, "a", 1, "x", 1, 0, 0, 0, PC_STORE_SET_IF_NEWER, 100), PC_OK);
    assert_int_equal(pc_store_set(s, "a", 1, "y", 1, 0, 0, 0, PC_STORE_SET_IF_NEWER, 100),
                     PC_EEXISTS);
    assert_value(s, "a", "x", 100);
    assert_int_equal(stats(s).sets, 6);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_if_absent(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_S3FIFO);
    pc_item_t *it;

    (void)state;
    assert_int_equal(pc_store_set(s, "k", 1, "a", 1, 0, 7, 0, PC_STORE_SET_IF_ABSENT, 0), PC_OK);
    /* present: refused even with a higher version, value and version kept */
    assert_int_equal(pc_store_set(s, "k", 1, "b", 1, 0, 99, 0, PC_STORE_SET_IF_ABSENT, 0),
                     PC_EEXISTS);
    assert_int_equal(pc_store_get(s, "k", 1, 0, &it), PC_OK);
    assert_int_equal(pc_item_version(it), 7);
    assert_memory_equal(pc_item_value(it), "a", 1);
    pc_store_release(s, it);
    /* expired counts as absent */
    assert_int_equal(pc_store_set(s, "e", 1, "x", 1, 0, 1, 10, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_set(s, "e", 1, "y", 1, 0, 2, 0, PC_STORE_SET_IF_ABSENT, 10), PC_OK);
    assert_value(s, "e", "y", 10);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_shards_for(void **state)
{
    (void)state;
    const size_t mib = 1024 * 1024, item = mib + 64 * 1024;
    /* the default 64 MiB with 1 MiB values: few shards, each holding 4 */
    unsigned n = pc_store_shards_for(64 * mib, item);
    assert_true(n >= 1 && (n & (n - 1)) == 0);
    assert_true(64 * mib / n >= 4 * (item + PC_STORE_ITEM_OVERHEAD));
    assert_true(64 * mib / (n * 2) < 4 * (item + PC_STORE_ITEM_OVERHEAD));
    /* big memory: capped at 64; tiny memory: 1 */
    assert_int_equal(pc_store_shards_for(64 * 1024 * mib, item), 64);
    assert_int_equal(pc_store_shards_for(mib, item), 1);
    /* and a store built that way accepts the largest item */
    pc_store_config_t cfg = {.memory_limit = 64 * mib, .shards = n};
    pc_store_t *s = NULL;
    assert_int_equal(pc_store_new(&cfg, &s), PC_OK);
    static char big[1024 * 1024];
    static char key[64 * 1024];
    memset(key, 'k', sizeof key);
    assert_int_equal(pc_store_set(s, key, sizeof key, big, sizeof big, 0, 1, 0,
                                  PC_STORE_SET_ALWAYS, 0),
                     PC_OK);
    pc_store_free(&s);
}

static void test_toobig(void **state)
{
    uint64_t fixed = fixed_bytes(1, PC_EVICT_S3FIFO);
    size_t room = 4096; /* bytes left for items in the one shard */
    pc_store_t *s = new_store(fixed + room, 1, PC_EVICT_S3FIFO);
    static char val[20000];
    size_t exact = room - PC_STORE_ITEM_OVERHEAD - 1;

    (void)state;
    assert_int_equal(set_kv(s, "a", "small", 0, 0), PC_OK);
    assert_int_equal(pc_store_set(s, "k", 1, val, exact + 1, 0, 0, 0, 0, 0), PC_ETOOBIG);
    assert_int_equal(pc_store_set(s, "k", 1, val, sizeof val, 0, 0, 0, 0, 0), PC_ETOOBIG);
    assert_int_equal(stats(s).sets, 1);
    assert_true(present(s, "a", 0));
    /* exactly the room: fits, evicting everything else */
    assert_int_equal(pc_store_set(s, "k", 1, val, exact, 0, 0, 0, 0, 0), PC_OK);
    assert_false(present(s, "a", 0));
    assert_int_equal(stats(s).bytes, stats(s).limit);
    assert_consistent(s);
    pc_store_free(&s);

    /* 64 shards: the largest item is about limit / 64 */
    s = new_store(1 << 20, 64, PC_EVICT_LRU);
    assert_int_equal(pc_store_set(s, "k", 1, val, 8192, 0, 0, 0, 0, 0), PC_OK);
    assert_int_equal(pc_store_set(s, "k", 1, val, (1 << 20) / 64, 0, 0, 0, 0, 0), PC_ETOOBIG);
    pc_store_free(&s);
}

static void test_counters_exact(void **state)
{
    pc_store_t *s = store_for(3, 1, 3, PC_EVICT_LRU);
    uint64_t empty = stats(s).bytes;
    pc_store_stats_t st;
    pc_item_t *it;

    (void)state;
    assert_int_equal(set_kv(s, "a", "aaa", 0, 0), PC_OK);              /* set 1 */
    assert_int_equal(set_kv(s, "b", "bbb", 500, 0), PC_OK);            /* set 2 */
    assert_int_equal(pc_store_get(s, "a", 1, 0, &it), PC_OK);          /* hit 1 */
    pc_store_release(s, it);
    assert_int_equal(pc_store_get(s, "z", 1, 0, &it), PC_ENOTFOUND);   /* miss 1 */
    assert_true(present(s, "z", 0) == false);                          /* peek: nothing */
    assert_int_equal(pc_store_peek(s, "a", 1, 0, &it), PC_OK);         /* peek: nothing */
    pc_store_release(s, it);
    assert_int_equal(pc_store_get(s, "b", 1, 500, &it), PC_ENOTFOUND); /* miss 2, exp 1 */
    assert_int_equal(set_kv(s, "c", "ccc", 0, 0), PC_OK);              /* set 3 */
    assert_int_equal(set_kv(s, "d", "ddd", 0, 0), PC_OK);              /* set 4 */
    assert_int_equal(set_kv(s, "e", "eee", 0, 0), PC_OK);              /* set 5, evict a */
    assert_int_equal(pc_store_del(s, "c", 1, 0), PC_OK);               /* delete 1 */
    assert_int_equal(pc_store_del(s, "c", 1, 0), PC_ENOTFOUND);        /* nothing */
    assert_int_equal(pc_store_set(s, "d", 1, "x", 1, 0, 0, 0, PC_STORE_SET_IF_NEWER, 0),
                     PC_EEXISTS);                                      /* nothing */
    assert_int_equal(pc_store_touch(s, "d", 1, 0, 0), PC_OK);          /* nothing */

    st = stats(s);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.sets, 5);
    assert_int_equal(st.deletes, 1);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.items, 2);
    assert_int_equal(st.bytes, empty + 2 * charge(1, 3));
    assert_false(present(s, "a", 0));
    assert_consistent(s);
    pc_store_free(&s);
}

/* Enough inserts to resize every shard several times, checked throughout. */
static void test_growth(void **state)
{
    pc_store_t *s = new_store((size_t)64 << 20, 2, PC_EVICT_S3FIFO);
    char k[32];
    uint64_t rng = 7;

    (void)state;
    /* the clock is the op number; every third key lives 5000 ops */
    for (unsigned i = 0; i < 30000; i++) {
        pc_item_t *it = NULL;
        unsigned j = (unsigned)(rng_next(&rng) % (i + 1));
        bool live = j % 3 != 0 || (uint64_t)j + 5000 > i;

        keyname(k, sizeof k, "grow-", i);
        assert_int_equal(set_kv(s, k, k, i % 3 ? 0 : (uint64_t)i + 5000, i), PC_OK);
        keyname(k, sizeof k, "grow-", j);
        assert_int_equal(pc_store_get(s, k, strlen(k), i, &it), live ? PC_OK : PC_ENOTFOUND);
        if (it)
            assert_memory_equal(pc_item_value(it), k, strlen(k));
        pc_store_release(s, it);
        if (i % 64 == 0)
            pc_store_sweep(s, i, 8); /* sweeping mid-resize, too */
        if (i % 2999 == 0)
            assert_consistent(s);
    }
    assert_int_equal(stats(s).evictions, 0);
    assert_true(stats(s).expirations > 0);
    assert_consistent(s);
    pc_store_free(&s);
}

/* ------------------------------------------------------------------ */
/* Epochs                                                              */
/* ------------------------------------------------------------------ */

static uint32_t epoch_of(pc_store_t *s, const char *k)
{
    pc_item_t *it = NULL;
    uint32_t e;

    assert_int_equal(pc_store_peek(s, k, strlen(k), 0, &it), PC_OK);
    e = pc_item_epoch(it);
    pc_store_release(s, it);
    return e;
}

static void test_epoch(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_S3FIFO);
    pc_item_t *old = NULL;

    (void)state;
    assert_int_equal(pc_store_epoch(s), 1);
    assert_int_equal(set_kv(s, "a", "v", 0, 0), PC_OK);
    assert_int_equal(set_kv(s, "b", "v", 0, 0), PC_OK);
    assert_int_equal(epoch_of(s, "a"), 1);

    assert_int_equal(pc_store_epoch_bump(s), 2);
    assert_int_equal(pc_store_epoch(s), 2);
    /* items stored before the bump keep their epoch, new ones get the new one */
    assert_int_equal(epoch_of(s, "a"), 1);
    assert_int_equal(set_kv(s, "c", "v", 0, 0), PC_OK);
    assert_int_equal(epoch_of(s, "c"), 2);
    /* a replacement is a new item: the current epoch; a reader keeps the old */
    assert_int_equal(pc_store_get(s, "a", 1, 0, &old), PC_OK);
    assert_int_equal(set_kv(s, "a", "w", 0, 0), PC_OK);
    assert_int_equal(epoch_of(s, "a"), 2);
    assert_int_equal(pc_item_epoch(old), 1);
    pc_store_release(s, old);

    assert_int_equal(pc_store_epoch_bump(s), 3);
    assert_int_equal(pc_store_epoch_bump(s), 4);
    /* every mode records it; a refused set leaves the stored epoch */
    assert_int_equal(pc_store_set(s, "n", 1, "v", 1, 0, 5, 0, PC_STORE_SET_IF_NEWER, 0), PC_OK);
    assert_int_equal(pc_store_set(s, "x", 1, "v", 1, 0, 0, 0, PC_STORE_SET_IF_ABSENT, 0), PC_OK);
    assert_int_equal(epoch_of(s, "n"), 4);
    assert_int_equal(epoch_of(s, "x"), 4);
    assert_int_equal(pc_store_epoch_bump(s), 5);
    assert_int_equal(pc_store_set(s, "n", 1, "w", 1, 0, 5, 0, PC_STORE_SET_IF_NEWER, 0),
                     PC_EEXISTS);
    assert_int_equal(pc_store_set(s, "x", 1, "w", 1, 0, 0, 0, PC_STORE_SET_IF_ABSENT, 0),
                     PC_EEXISTS);
    assert_int_equal(epoch_of(s, "n"), 4);
    assert_int_equal(epoch_of(s, "x"), 4);
    /* touch changes the expiry only */
    assert_int_equal(pc_store_touch(s, "b", 1, 1000, 0), PC_OK);
    assert_int_equal(epoch_of(s, "b"), 1);
    assert_int_equal(pc_store_set(s, "n", 1, "w", 1, 0, 6, 0, PC_STORE_SET_IF_NEWER, 0), PC_OK);
    assert_int_equal(epoch_of(s, "n"), 5);
    assert_consistent(s);
    pc_store_free(&s);
}

/*
 * The documented guarantee across threads: once bump() has returned e on
 * one thread, a set() that another thread begins after learning of it
 * (here through an atomic) stores an item with epoch >= e; and an item's
 * epoch is never above the epoch read after its set() returned.
 */
#define EPOCH_SETS 20000

struct epoch_arg {
    pc_store_t *s;
    _Atomic uint32_t published; /* the latest value bump() returned */
    atomic_bool stop;
    unsigned bad;
    uint32_t raced; /* sets that saw the epoch move while they ran */
};

static void *epoch_bumper(void *p)
{
    struct epoch_arg *a = p;

    while (!atomic_load(&a->stop))
        atomic_store(&a->published, pc_store_epoch_bump(a->s));
    return NULL;
}

static void *epoch_setter(void *p)
{
    struct epoch_arg *a = p;
    char k[16];

    /* Start racing once the bumper runs; go on until the race was seen. */
    while (atomic_load(&a->published) == 1)
        sched_yield();
    for (unsigned i = 0; i < EPOCH_SETS || (a->raced < 100 && i < 20 * EPOCH_SETS); i++) {
        uint32_t before = atomic_load(&a->published), after;
        pc_item_t *it = NULL;

        keyname(k, sizeof k, "e", i % 64);
        if (set_kv(a->s, k, "v", 0, 0) != PC_OK ||
            pc_store_peek(a->s, k, strlen(k), 0, &it) != PC_OK) {
            a->bad++;
            continue;
        }
        after = pc_store_epoch(a->s);
        if (pc_item_epoch(it) < before || pc_item_epoch(it) > after)
            a->bad++;
        a->raced += after != before;
        pc_store_release(a->s, it);
    }
    atomic_store(&a->stop, true);
    return NULL;
}

static void test_epoch_threaded(void **state)
{
    struct epoch_arg a = {.s = new_store(1 << 22, 4, PC_EVICT_S3FIFO)};
    pthread_t bumper, setter;

    (void)state;
    atomic_init(&a.published, pc_store_epoch(a.s));
    atomic_init(&a.stop, false);
    assert_int_equal(pthread_create(&bumper, NULL, epoch_bumper, &a), 0);
    assert_int_equal(pthread_create(&setter, NULL, epoch_setter, &a), 0);
    assert_int_equal(pthread_join(setter, NULL), 0);
    assert_int_equal(pthread_join(bumper, NULL), 0);
    assert_int_equal(a.bad, 0);
    assert_true(pc_store_epoch(a.s) > 1);
    /* the final bump is the largest value any bump returned */
    assert_int_equal(pc_store_epoch(a.s), atomic_load(&a.published));
    assert_consistent(a.s);
    pc_store_free(&a.s);
}

/* ------------------------------------------------------------------ */
/* Versioned delete                                                    */
/* ------------------------------------------------------------------ */

static void test_del_if_older(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_S3FIFO);
    pc_item_t *held = NULL;
    pc_store_stats_t st;

    (void)state;
    assert_int_equal(pc_store_del_if_older(s, "k", 1, 10, 0), PC_ENOTFOUND);
    assert_int_equal(pc_store_set(s, "k", 1, "v5", 2, 0, 5, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    /* equal or newer stored: kept */
    assert_int_equal(pc_store_del_if_older(s, "k", 1, 5, 0), PC_EEXISTS);
    assert_int_equal(pc_store_del_if_older(s, "k", 1, 4, 0), PC_EEXISTS);
    assert_int_equal(pc_store_del_if_older(s, "k", 1, 0, 0), PC_EEXISTS);
    assert_value(s, "k", "v5", 0);
    assert_int_equal(stats(s).deletes, 0);
    /* older stored: removed, counted; a reader's reference stays valid */
    assert_int_equal(pc_store_get(s, "k", 1, 0, &held), PC_OK);
    assert_int_equal(pc_store_del_if_older(s, "k", 1, 6, 0), PC_OK);
    assert_false(present(s, "k", 0));
    assert_memory_equal(pc_item_value(held), "v5", 2);
    pc_store_release(s, held);
    assert_int_equal(pc_store_del_if_older(s, "k", 1, 6, 0), PC_ENOTFOUND);
    /* an expired entry is absent, whatever its version, and is removed */
    assert_int_equal(pc_store_set(s, "t", 1, "v", 1, 0, 1, 100, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_del_if_older(s, "t", 1, 9, 100), PC_ENOTFOUND);
    assert_int_equal(pc_store_set(s, "u", 1, "v", 1, 0, 99, 100, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_del_if_older(s, "u", 1, 1, 100), PC_ENOTFOUND);
    /* the largest version can never be removed this way */
    assert_int_equal(
        pc_store_set(s, "m", 1, "v", 1, 0, UINT64_MAX, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_del_if_older(s, "m", 1, UINT64_MAX, 0), PC_EEXISTS);
    assert_int_equal(pc_store_del_if_older(NULL, "m", 1, 1, 0), PC_EINVAL);
    assert_int_equal(pc_store_del_if_older(s, NULL, 1, 1, 0), PC_EINVAL);
    st = stats(s);
    assert_int_equal(st.deletes, 1);
    assert_int_equal(st.expirations, 2);
    assert_int_equal(st.items, 1);
    assert_consistent(s);
    pc_store_free(&s);
}

/* ------------------------------------------------------------------ */
/* Conditional sets: IF_PRESENT, IF_VERSION                            */
/* ------------------------------------------------------------------ */

/* Value, version, flags and expiry of a stored key, checked in one go. */
static void assert_item(pc_store_t *s, const char *k, const char *val, uint64_t version,
                        uint32_t flags, uint64_t expire, uint64_t now)
{
    pc_item_t *it = NULL;

    assert_int_equal(pc_store_peek(s, k, strlen(k), now, &it), PC_OK);
    assert_int_equal(pc_item_vlen(it), strlen(val));
    assert_memory_equal(pc_item_value(it), val, strlen(val));
    assert_int_equal(pc_item_version(it), version);
    assert_int_equal(pc_item_flags(it), flags);
    assert_int_equal(pc_item_expire(it), expire);
    pc_store_release(s, it);
}

static void test_if_present(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_S3FIFO);
    pc_item_t *held = NULL;
    pc_store_stats_t st;

    (void)state;
    /* absent: refused, nothing stored */
    assert_int_equal(pc_store_set(s, "k", 1, "a", 1, 0, 1, 0, PC_STORE_SET_IF_PRESENT, 0),
                     PC_ENOTFOUND);
    assert_false(present(s, "k", 0));
    assert_int_equal(stats(s).sets, 0);
    assert_int_equal(stats(s).items, 0);

    /* present: stored whatever the versions (lower here), flags and expiry new */
    assert_int_equal(pc_store_set(s, "k", 1, "old", 3, 0x11, 7, 0, PC_STORE_SET_ALWAYS, 0),
                     PC_OK);
    assert_int_equal(pc_store_get(s, "k", 1, 0, &held), PC_OK);
    assert_int_equal(pc_store_set(s, "k", 1, "new", 3, 0x22, 2, 900, PC_STORE_SET_IF_PRESENT, 0),
                     PC_OK);
    assert_item(s, "k", "new", 2, 0x22, 900, 0);
    /* a reader of the replaced item keeps it */
    assert_memory_equal(pc_item_value(held), "old", 3);
    assert_int_equal(pc_item_version(held), 7);
    pc_store_release(s, held);
    /* pc_store_set_if: the same, `expect` ignored */
    assert_int_equal(pc_store_set_if(s, "k", 1, "n2", 2, 0, 3, 0, PC_STORE_SET_IF_PRESENT, 12345,
                                     0),
                     PC_OK);
    assert_item(s, "k", "n2", 3, 0, 0, 0);

    /* expired: absent, refused; the entry is removed as an expiration */
    assert_int_equal(pc_store_set(s, "e", 1, "x", 1, 0, 1, 100, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_set(s, "e", 1, "y", 1, 0, 2, 0, PC_STORE_SET_IF_PRESENT, 99),
                     PC_OK); /* still live at 99 */
    assert_int_equal(pc_store_set(s, "e", 1, "z", 1, 0, 3, 200, PC_STORE_SET_ALWAYS, 99), PC_OK);
    assert_int_equal(pc_store_set(s, "e", 1, "w", 1, 0, 4, 0, PC_STORE_SET_IF_PRESENT, 200),
                     PC_ENOTFOUND);
    assert_false(present(s, "e", 0));

    st = stats(s);
    assert_int_equal(st.sets, 6); /* stores only: 3 ALWAYS, 3 IF_PRESENT */
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.items, 1);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_if_version(void **state)
{
    pc_store_t *s = new_store(1 << 20, 4, PC_EVICT_LRU);
    pc_item_t *held = NULL;
    pc_store_stats_t st;

    (void)state;
    /* absent: PC_ENOTFOUND, whatever is expected (0 included) */
    assert_int_equal(pc_store_set_if(s, "k", 1, "a", 1, 0, 1, 0, PC_STORE_SET_IF_VERSION, 0, 0),
                     PC_ENOTFOUND);
    assert_int_equal(pc_store_set_if(s, "k", 1, "a", 1, 0, 1, 0, PC_STORE_SET_IF_VERSION, 7, 0),
                     PC_ENOTFOUND);
    assert_false(present(s, "k", 0));

    /* a mismatch either way is refused; the stored item is untouched */
    assert_int_equal(pc_store_set(s, "k", 1, "v7", 2, 0x7, 7, 5000, PC_STORE_SET_ALWAYS, 0),
                     PC_OK);
    assert_int_equal(pc_store_set_if(s, "k", 1, "bad", 3, 0, 8, 0, PC_STORE_SET_IF_VERSION, 6, 0),
                     PC_EEXISTS);
    assert_int_equal(pc_store_set_if(s, "k", 1, "bad", 3, 0, 9, 0, PC_STORE_SET_IF_VERSION, 8, 0),
                     PC_EEXISTS);
    assert_int_equal(pc_store_set_if(s, "k", 1, "bad", 3, 0, 9, 0, PC_STORE_SET_IF_VERSION, 0, 0),
                     PC_EEXISTS);
    assert_item(s, "k", "v7", 7, 0x7, 5000, 0);

    /* a match stores, with the new version; a reader keeps the old item */
    assert_int_equal(pc_store_get(s, "k", 1, 0, &held), PC_OK);
    assert_int_equal(pc_store_set_if(s, "k", 1, "v8", 2, 0x8, 8, 0, PC_STORE_SET_IF_VERSION, 7, 0),
                     PC_OK);
    assert_item(s, "k", "v8", 8, 0x8, 0, 0);
    assert_memory_equal(pc_item_value(held), "v7", 2);
    assert_int_equal(pc_item_version(held), 7);
    /* the version read before that store is now stale */
    assert_int_equal(
        pc_store_set_if(s, "k", 1, "late", 4, 0, 9, 0, PC_STORE_SET_IF_VERSION,
                        pc_item_version(held), 0),
        PC_EEXISTS);
    pc_store_release(s, held);
    assert_item(s, "k", "v8", 8, 0x8, 0, 0);
    /* the new version is not compared: equal, or going back, is stored */
    assert_int_equal(pc_store_set_if(s, "k", 1, "v8b", 3, 0, 8, 0, PC_STORE_SET_IF_VERSION, 8, 0),
                     PC_OK);
    assert_int_equal(pc_store_set_if(s, "k", 1, "v3", 2, 0, 3, 0, PC_STORE_SET_IF_VERSION, 8, 0),
                     PC_OK);
    assert_item(s, "k", "v3", 3, 0, 0, 0);
    /* version 0 is an ordinary version */
    assert_int_equal(pc_store_set(s, "z", 1, "z0", 2, 0, 0, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_set_if(s, "z", 1, "z1", 2, 0, 1, 0, PC_STORE_SET_IF_VERSION, 0, 0),
                     PC_OK);
    assert_item(s, "z", "z1", 1, 0, 0, 0);

    /* expired: absent even with the matching version, and removed */
    assert_int_equal(pc_store_set(s, "e", 1, "x", 1, 0, 4, 100, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_set_if(s, "e", 1, "y", 1, 0, 5, 0, PC_STORE_SET_IF_VERSION, 4, 100),
                     PC_ENOTFOUND);
    assert_false(present(s, "e", 0));

    /* pc_store_set has no expected version: it refuses IF_VERSION */
    assert_int_equal(pc_store_set(s, "k", 1, "v", 1, 0, 9, 0, PC_STORE_SET_IF_VERSION, 0),
                     PC_EINVAL);
    assert_int_equal(pc_store_set_if(s, "k", 1, "v", 1, 0, 9, 0, 5, 3, 0), PC_EINVAL);
    assert_int_equal(pc_store_set_if(NULL, "k", 1, "v", 1, 0, 9, 0, PC_STORE_SET_IF_VERSION, 3, 0),
                     PC_EINVAL);
    assert_item(s, "k", "v3", 3, 0, 0, 0);
    /* the other modes through pc_store_set_if, expect ignored */
    assert_int_equal(pc_store_set_if(s, "k", 1, "a", 1, 0, 9, 0, PC_STORE_SET_IF_ABSENT, 3, 0),
                     PC_EEXISTS);
    assert_int_equal(pc_store_set_if(s, "k", 1, "n", 1, 0, 9, 0, PC_STORE_SET_IF_NEWER, 77, 0),
                     PC_OK);
    assert_int_equal(pc_store_set_if(s, "k", 1, "w", 1, 0, 1, 0, PC_STORE_SET_ALWAYS, 77, 0),
                     PC_OK);
    assert_item(s, "k", "w", 1, 0, 0, 0);

    st = stats(s);
    assert_int_equal(st.sets, 9); /* stores only: 4 ALWAYS, 4 IF_VERSION, 1 IF_NEWER */
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.items, 2);
    assert_consistent(s);
    pc_store_free(&s);
}

/*
 * A refused conditional set changes nothing else either: the old item keeps
 * its place in the eviction order (LRU here: it stays the oldest, so the
 * next eviction takes it) and its epoch.
 */
static void test_conditional_refusal_untouched(void **state)
{
    uint64_t fixed = fixed_bytes(1, PC_EVICT_LRU);
    pc_store_t *s = new_store(fixed + 2 * charge(2, 10) + 10, 1, PC_EVICT_LRU);
    char v[10];

    (void)state;
    memset(v, 'v', sizeof v);
    assert_int_equal(pc_store_set(s, "k1", 2, v, 10, 0, 1, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_set(s, "k2", 2, v, 10, 0, 1, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(pc_store_epoch_bump(s), 2);
    assert_int_equal(pc_store_set_if(s, "k1", 2, v, 10, 0, 2, 0, PC_STORE_SET_IF_VERSION, 9, 0),
                     PC_EEXISTS);
    assert_int_equal(pc_store_set_if(s, "k3", 2, v, 10, 0, 2, 0, PC_STORE_SET_IF_VERSION, 1, 0),
                     PC_ENOTFOUND);
    assert_int_equal(pc_store_set(s, "k3", 2, v, 10, 0, 2, 0, PC_STORE_SET_IF_PRESENT, 0),
                     PC_ENOTFOUND);
    assert_int_equal(stats(s).evictions, 0);
    assert_int_equal(epoch_of(s, "k1"), 1);
    /* k1 is still the LRU tail */
    assert_int_equal(pc_store_set(s, "k4", 2, v, 10, 0, 1, 0, PC_STORE_SET_ALWAYS, 0), PC_OK);
    assert_int_equal(stats(s).evictions, 1);
    assert_false(present(s, "k1", 0));
    assert_true(present(s, "k2", 0));
    assert_consistent(s);
    pc_store_free(&s);
}

/*
 * The point of IF_VERSION: a read-modify-write loop (peek, compute, store
 * if the version is still the one read) loses no update when several
 * threads run it on one key. Each store carries a version no other store
 * uses, so a version match means nobody stored in between. With the check
 * done outside the shard lock (peek, compare, then ALWAYS), two threads
 * that read the same version would both store value + 1, and the final
 * count would come up short.
 */
#define CAS_THREADS 4
#define CAS_INCREMENTS 5000 /* per thread, at least */

struct cas_shared {
    pc_store_t *s;
    pthread_barrier_t start;
    atomic_uint_fast64_t conflicts; /* so far, all threads */
};

struct cas_arg {
    struct cas_shared *sh;
    unsigned id;
    unsigned bad;       /* unexpected results */
    uint64_t done;      /* successful increments */
    uint64_t conflicts; /* PC_EEXISTS: someone stored first, retried */
};

/* Go on past CAS_INCREMENTS until the threads have raced a little. */
static bool cas_more(const struct cas_arg *a)
{
    return a->done < CAS_INCREMENTS ||
           (atomic_load_explicit(&a->sh->conflicts, memory_order_relaxed) < 100 &&
            a->done < 20 * CAS_INCREMENTS);
}

static void *cas_worker(void *p)
{
    struct cas_arg *a = p;
    pc_store_t *s = a->sh->s;
    uint64_t seq = 0;

    pthread_barrier_wait(&a->sh->start);
    while (cas_more(a)) {
        pc_item_t *it = NULL;
        uint64_t n, read_version, version;
        int rc;

        if (pc_store_peek(s, "ctr", 3, 0, &it) != PC_OK || pc_item_vlen(it) != sizeof n) {
            pc_store_release(s, it);
            a->bad++;
            break;
        }
        memcpy(&n, pc_item_value(it), sizeof n);
        read_version = pc_item_version(it);
        pc_store_release(s, it);
        n++;
        /* unique: the thread in the top bits, its own sequence below */
        version = (uint64_t)(a->id + 1) << 40 | ++seq;
        rc = pc_store_set_if(s, "ctr", 3, &n, sizeof n, 0, version, 0, PC_STORE_SET_IF_VERSION,
                             read_version, 0);
        if (rc == PC_OK) {
            a->done++;
        } else if (rc == PC_EEXISTS) {
            a->conflicts++;
            atomic_fetch_add_explicit(&a->sh->conflicts, 1, memory_order_relaxed);
        } else {
            a->bad++;
            break;
        }
    }
    return NULL;
}

static void test_if_version_threaded(void **state)
{
    struct cas_shared sh = {.s = new_store(1 << 20, 4, PC_EVICT_S3FIFO)};
    pthread_t th[CAS_THREADS];
    struct cas_arg args[CAS_THREADS];
    uint64_t zero = 0, n = 0, done = 0, conflicts = 0;
    pc_item_t *it = NULL;

    (void)state;
    atomic_init(&sh.conflicts, 0);
    assert_int_equal(pthread_barrier_init(&sh.start, NULL, CAS_THREADS), 0);
    assert_int_equal(pc_store_set(sh.s, "ctr", 3, &zero, sizeof zero, 0, 0, 0,
                                  PC_STORE_SET_ALWAYS, 0),
                     PC_OK);
    for (unsigned i = 0; i < CAS_THREADS; i++) {
        args[i] = (struct cas_arg){.sh = &sh, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, cas_worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < CAS_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].bad, 0);
        assert_true(args[i].done >= CAS_INCREMENTS);
        done += args[i].done;
        conflicts += args[i].conflicts;
    }
    pthread_barrier_destroy(&sh.start);
    assert_int_equal(pc_store_peek(sh.s, "ctr", 3, 0, &it), PC_OK);
    memcpy(&n, pc_item_value(it), sizeof n);
    pc_store_release(sh.s, it);
    /* no lost update: the counter is the number of successful increments */
    assert_int_equal(n, done);
    /* and only those stored: the initial set plus one per increment */
    assert_int_equal(stats(sh.s).sets, 1 + done);
    assert_int_equal(stats(sh.s).items, 1);
    printf("    (%" PRIu64 " increments, %" PRIu64 " retried after a conflict)\n", done,
           conflicts);
    assert_consistent(sh.s);
    pc_store_free(&sh.s);
}

/* ------------------------------------------------------------------ */
/* Scan                                                                */
/* ------------------------------------------------------------------ */

/* Key ids: keys are "<prefix><id>"; -1 if the key is not one of ours. */
static long key_id(const uint8_t *key, size_t klen, const char *prefix)
{
    size_t pl = strlen(prefix);
    long id = 0;

    if (klen <= pl || memcmp(key, prefix, pl) != 0 || klen - pl > 9)
        return -1;
    for (size_t i = pl; i < klen; i++) {
        if (key[i] < '0' || key[i] > '9')
            return -1;
        id = id * 10 + (key[i] - '0');
    }
    return id;
}

struct scan_seen {
    const char *prefix;
    unsigned *count; /* times each id was returned */
    size_t nids;
    size_t returned, calls, foreign;
};

/* Records what one call returned, checks it, releases it. */
static void scan_record(pc_store_t *s, struct scan_seen *sn, pc_item_t **out, size_t n,
                        size_t max)
{
    assert_true(n <= max);
    sn->calls++;
    sn->returned += n;
    for (size_t i = 0; i < n; i++) {
        long id = key_id(pc_item_key(out[i]), pc_item_klen(out[i]), sn->prefix);

        if (id >= 0 && (size_t)id < sn->nids)
            sn->count[id]++;
        else
            sn->foreign++;
        /* a value names its key, so a mixed-up reference shows */
        assert_int_equal(pc_item_vlen(out[i]), pc_item_klen(out[i]));
        assert_memory_equal(pc_item_value(out[i]), pc_item_key(out[i]), pc_item_klen(out[i]));
        pc_store_release(s, out[i]);
    }
}

/* A whole scan, start to end; returns the number of calls. */
static size_t scan_all(pc_store_t *s, uint64_t now, int (*want)(void *, const uint8_t *, size_t),
                       void *arg, size_t max, struct scan_seen *sn)
{
    pc_item_t *out[64];
    uint64_t cursor = 0;
    size_t calls = 0;

    assert_true(max <= 64);
    do {
        size_t n = pc_store_scan(s, &cursor, now, want, arg, out, max);
        scan_record(s, sn, out, n, max);
        calls++;
        assert_true(calls < 1000000);
    } while (cursor != 0);
    return calls;
}

static void fill(pc_store_t *s, const char *prefix, unsigned from, unsigned to, uint64_t expire)
{
    char k[32];

    for (unsigned i = from; i < to; i++) {
        keyname(k, sizeof k, prefix, i);
        assert_int_equal(set_kv(s, k, k, expire, 0), PC_OK);
    }
}

#define SCAN_KEYS 50000

static void test_scan_every_item_once(void **state)
{
    static unsigned count[SCAN_KEYS];
    const size_t maxes[] = {1, 7, 64};
    pc_store_t *s = new_store((size_t)64 << 20, 16, PC_EVICT_S3FIFO);
    pc_store_stats_t before, after;

    (void)state;
    fill(s, "scan-", 0, SCAN_KEYS, 0);
    before = stats(s);
    for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++) {
        struct scan_seen sn = {.prefix = "scan-", .count = count, .nids = SCAN_KEYS};
        size_t calls;

        memset(count, 0, sizeof count);
        calls = scan_all(s, 0, NULL, NULL, maxes[m], &sn);
        for (unsigned i = 0; i < SCAN_KEYS; i++)
            assert_int_equal(count[i], 1);
        assert_int_equal(sn.returned, SCAN_KEYS);
        assert_int_equal(sn.foreign, 0);
        assert_true(calls >= SCAN_KEYS / maxes[m]);
    }
    /* counters and items untouched; every reference given back */
    after = stats(s);
    assert_memory_equal(&before, &after, sizeof before);
    assert_consistent(s);
    pc_store_free(&s);
}

static int want_mod3(void *arg, const uint8_t *key, size_t klen)
{
    long id = key_id(key, klen, "scan-");

    (*(unsigned *)arg)++;
    return id >= 0 && id % 3 == 0;
}

static void test_scan_want(void **state)
{
    static unsigned count[SCAN_KEYS / 5];
    pc_store_t *s = new_store((size_t)16 << 20, 8, PC_EVICT_LRU);
    struct scan_seen sn = {.prefix = "scan-", .count = count, .nids = SCAN_KEYS / 5};
    unsigned asked = 0;

    (void)state;
    fill(s, "scan-", 0, SCAN_KEYS / 5, 0);
    fill(s, "other-", 0, 1000, 0);
    scan_all(s, 0, want_mod3, &asked, 5, &sn);
    for (unsigned i = 0; i < SCAN_KEYS / 5; i++)
        assert_int_equal(count[i], i % 3 == 0);
    assert_int_equal(sn.foreign, 0);
    assert_true(asked >= SCAN_KEYS / 5 + 1000);
    assert_consistent(s);
    pc_store_free(&s);
}

/*
 * Sets between calls make every table double several times mid-scan,
 * some calls landing while a shard is between two tables; keys are also
 * deleted and re-added. Keys present throughout come back exactly once;
 * no key at all comes back twice.
 */
static void scan_under_growth(unsigned shards, size_t max)
{
    enum { OLD = 3000, NEW = 60000, CHURN = 500 };
    static unsigned count[OLD], newcount[NEW], churncount[CHURN];
    pc_store_t *s = new_store((size_t)128 << 20, shards, PC_EVICT_S3FIFO);
    struct scan_seen old = {.prefix = "old-", .count = count, .nids = OLD};
    struct scan_seen fresh = {.prefix = "new-", .count = newcount, .nids = NEW};
    struct scan_seen churn = {.prefix = "churn-", .count = churncount, .nids = CHURN};
    pc_item_t *out[64];
    uint64_t cursor = 0, rng = 99;
    unsigned added = 0;
    size_t calls = 0;

    memset(count, 0, sizeof count);
    memset(newcount, 0, sizeof newcount);
    memset(churncount, 0, sizeof churncount);
    fill(s, "old-", 0, OLD, 0);
    fill(s, "churn-", 0, CHURN, 0);
    do {
        size_t n = pc_store_scan(s, &cursor, 0, NULL, NULL, out, max);
        char k[32];

        for (size_t i = 0; i < n; i++) {
            const uint8_t *key = pc_item_key(out[i]);
            size_t klen = pc_item_klen(out[i]);
            struct scan_seen *sn = key_id(key, klen, "old-") >= 0   ? &old
                                   : key_id(key, klen, "new-") >= 0 ? &fresh
                                                                    : &churn;
            scan_record(s, sn, &out[i], 1, max);
        }
        /* grow: enough sets per call to pass several doublings by the end */
        if (added < NEW) {
            fill(s, "new-", added, added + 40, 0);
            added += 40;
        }
        /* churn: delete a key, and (re-)add another */
        keyname(k, sizeof k, "churn-", (unsigned)(rng_next(&rng) % CHURN));
        pc_store_del(s, k, strlen(k), 0);
        keyname(k, sizeof k, "churn-", (unsigned)(rng_next(&rng) % CHURN));
        assert_int_equal(set_kv(s, k, k, 0, 0), PC_OK);
        if (++calls % 97 == 0)
            assert_consistent(s);
        assert_true(calls < 1000000);
    } while (cursor != 0);

    for (unsigned i = 0; i < OLD; i++)
        assert_int_equal(count[i], 1);
    for (unsigned i = 0; i < NEW; i++)
        assert_true(newcount[i] <= 1);
    for (unsigned i = 0; i < CHURN; i++)
        assert_true(churncount[i] <= 1);
    /* the tables really did grow under the scan: most keys came in during it */
    assert_true(added > 10 * OLD);
    assert_consistent(s);
    pc_store_free(&s);
}

static void test_scan_under_growth(void **state)
{
    (void)state;
    scan_under_growth(1, 3);
    scan_under_growth(4, 1);
    scan_under_growth(64, 16);
}

static void test_scan_empty(void **state)
{
    pc_store_t *s = new_store(1 << 20, 64, PC_EVICT_S3FIFO);
    pc_item_t *out[4] = {NULL};
    uint64_t cursor = 0;
    size_t calls = 0;

    (void)state;
    /* room for everything: one call visits the whole (empty) store */
    assert_int_equal(pc_store_scan(s, &cursor, 0, NULL, NULL, out, 4), 0);
    assert_true(cursor != 0); /* 64 x 16 buckets is more than 64 visits */
    do {
        assert_int_equal(pc_store_scan(s, &cursor, 0, NULL, NULL, out, 1), 0);
        calls++;
    } while (cursor != 0 && calls < 1000);
    assert_int_equal(cursor, 0);
    /* bounded: 1024 empty buckets at 16 visits per call */
    assert_true(calls >= 32);
    /* invalid calls do nothing */
    cursor = 0;
    assert_int_equal(pc_store_scan(s, &cursor, 0, NULL, NULL, out, 0), 0);
    assert_int_equal(pc_store_scan(s, &cursor, 0, NULL, NULL, NULL, 4), 0);
    assert_int_equal(pc_store_scan(s, NULL, 0, NULL, NULL, out, 4), 0);
    assert_int_equal(pc_store_scan(NULL, &cursor, 0, NULL, NULL, out, 4), 0);
    pc_store_free(&s);
}

/* A table left large and sparse: each call still does bounded work. */
static void test_scan_sparse_bounded(void **state)
{
    static unsigned count[20000];
    pc_store_t *s = new_store((size_t)16 << 20, 1, PC_EVICT_LRU);
    struct scan_seen sn = {.prefix = "sp-", .count = count, .nids = 20000};
    char k[32];
    size_t calls;

    (void)state;
    fill(s, "sp-", 0, 20000, 0);
    for (unsigned i = 0; i < 20000; i++) {
        keyname(k, sizeof k, "sp-", i);
        if (i % 5000 != 0)
            assert_int_equal(pc_store_del(s, k, strlen(k), 0), PC_OK);
    }
    calls = scan_all(s, 0, NULL, NULL, 2, &sn);
    assert_int_equal(sn.returned, 4);
    for (unsigned i = 0; i < 20000; i += 5000)
        assert_int_equal(count[i], 1);
    /* >= 16384 buckets at about 32 visits per call */
    assert_true(calls >= 16384 / 40);
    pc_store_free(&s);
}

/* Expired items are skipped, not removed; nothing else is touched. */
static void test_scan_expired_and_untouched(void **state)
{
    static unsigned count[400];
    pc_store_t *s = store_for(300, 5, 5, PC_EVICT_LRU); /* x-100 .. x-399 */
    struct scan_seen sn = {.prefix = "x-", .count = count, .nids = 400};
    pc_store_stats_t before, after;

    (void)state;
    /* ids 100-199 expire at 50, the others never */
    fill(s, "x-", 100, 200, 50);
    fill(s, "x-", 200, 300, 0);
    fill(s, "x-", 300, 400, 0);
    before = stats(s);
    scan_all(s, 50, NULL, NULL, 8, &sn);
    assert_int_equal(sn.returned, 200);
    for (unsigned i = 100; i < 400; i++)
        assert_int_equal(count[i], i >= 200);
    /* still there before their expiry; not removed, not counted */
    scan_all(s, 49, NULL, NULL, 8, &sn);
    assert_int_equal(sn.returned, 200 + 300);
    for (unsigned i = 100; i < 400; i++)
        assert_int_equal(count[i], i >= 200 ? 2 : 1);
    after = stats(s);
    assert_memory_equal(&before, &after, sizeof before);
    /* LRU order untouched: the next insert evicts the oldest, x-100 */
    assert_int_equal(set_kv(s, "x-0", "x-0", 0, 0), PC_OK);
    assert_int_equal(stats(s).evictions, 1);
    assert_false(present(s, "x-100", 0));
    assert_true(present(s, "x-101", 0));
    assert_consistent(s);
    pc_store_free(&s);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* How many times one scan (max 1) returns `key`; *total gets all returned. */
static unsigned scan_count_key(pc_store_t *s, const char *key, size_t *total)
{
    pc_item_t *out[1];
    uint64_t cursor = 0;
    unsigned seen = 0;

    *total = 0;
    do {
        size_t n = pc_store_scan(s, &cursor, 0, NULL, NULL, out, 1);

        for (size_t i = 0; i < n; i++) {
            seen += pc_item_klen(out[i]) == strlen(key) &&
                    memcmp(pc_item_key(out[i]), key, strlen(key)) == 0;
            (*total)++;
            pc_store_release(s, out[i]);
        }
        assert_true(*total < 100000);
    } while (cursor != 0);
    return seen;
}

/*
 * Two keys whose stored 32-bit hashes are equal share a bucket at every
 * table size and tie on the cursor's stored bits: scan must order them by
 * the rest of their hash and resume between them, even with max 1.
 */
static void test_scan_hash_collision(void **state)
{
    enum { N = 200000 };
    static uint64_t lo[N];
    pc_store_t *s = new_store(1 << 22, 1, PC_EVICT_S3FIFO);
    unsigned a = 0, b = 0;
    char k[32], ka[32], kb[32];
    size_t total;

    (void)state;
    assert_true(sodium_init() >= 0);
    /* birthday search on the low 32 bits, read as the store reads them */
    for (unsigned i = 0; i < N; i++) {
        unsigned char h[crypto_shorthash_BYTES];

        keyname(k, sizeof k, "c", i);
        crypto_shorthash(h, (const unsigned char *)k, strlen(k), test_key);
        lo[i] = ((uint64_t)h[0] | (uint64_t)h[1] << 8 | (uint64_t)h[2] << 16 |
                 (uint64_t)h[3] << 24) << 32 | i;
    }
    qsort(lo, N, sizeof lo[0], cmp_u64);
    for (unsigned i = 1; i < N && a == b; i++) {
        if (lo[i] >> 32 == lo[i - 1] >> 32) {
            a = (unsigned)lo[i - 1];
            b = (unsigned)lo[i];
        }
    }
    assert_true(a != b); /* about 4.7 such pairs are expected */
    keyname(ka, sizeof ka, "c", a);
    keyname(kb, sizeof kb, "c", b);
    assert_int_equal(set_kv(s, ka, ka, 0, 0), PC_OK);
    assert_int_equal(set_kv(s, kb, kb, 0, 0), PC_OK);
    assert_int_equal(scan_count_key(s, ka, &total), 1);
    assert_int_equal(scan_count_key(s, kb, &total), 1);
    assert_int_equal(total, 2);
    /* again among neighbours, in a grown table */
    fill(s, "col-", 0, 300, 0);
    assert_int_equal(scan_count_key(s, ka, &total), 1);
    assert_int_equal(scan_count_key(s, kb, &total), 1);
    assert_int_equal(total, 302);
    assert_consistent(s);
    pc_store_free(&s);
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

#define MT_THREADS 4
#define MT_KEYS 512
#define MT_OPS 40000

struct mt_arg {
    pc_store_t *s;
    uint64_t seed;
    unsigned bad;                  /* inconsistent reads or results seen */
    uint64_t gets, sets, deletes;  /* calls that must show in the counters */
};

/* A value names its key and its length, so a torn or mixed-up read shows. */
static size_t mt_value(unsigned key, uint64_t r, char *buf, size_t cap)
{
    uint32_t len = 9 + (uint32_t)(r % (cap - 9));

    memset(buf, 'a' + (int)(key % 26), len);
    memcpy(buf, &key, 4);
    memcpy(buf + 4, &len, 4);
    return len;
}

static void *mt_worker(void *p)
{
    struct mt_arg *a = p;
    char k[16], v[600];

    for (unsigned i = 0; i < MT_OPS; i++) {
        uint64_t r = rng_next(&a->seed);
        unsigned key = (unsigned)(r % MT_KEYS), op = (unsigned)((r >> 20) % 100);
        pc_item_t *it = NULL;

        keyname(k, sizeof k, "mt", key);
        if (op < 60) {
            a->gets++;
            if (pc_store_get(a->s, k, strlen(k), i, &it) == PC_OK) {
                unsigned got;
                uint32_t len;
                const uint8_t *val = pc_item_value(it);

                memcpy(&got, val, 4);
                memcpy(&len, val + 4, 4);
                if (got != key || len != pc_item_vlen(it) || pc_item_klen(it) != strlen(k) ||
                    memcmp(pc_item_key(it), k, strlen(k)) != 0 ||
                    val[pc_item_vlen(it) - 1] != 'a' + key % 26)
                    a->bad++;
                pc_store_release(a->s, it);
            }
        } else if (op < 90) {
            size_t len = mt_value(key, r >> 32, v, sizeof v);
            int rc = pc_store_set(a->s, k, strlen(k), v, len, 0, r >> 40, 0,
                                  op < 85 ? PC_STORE_SET_ALWAYS : PC_STORE_SET_IF_NEWER, i);
            if (rc != PC_OK && rc != PC_EEXISTS)
                a->bad++;
            a->sets += rc == PC_OK;
        } else if (op < 97) {
            a->deletes += pc_store_del(a->s, k, strlen(k), i) == PC_OK;
        } else if (op < 99) {
            pc_store_touch(a->s, k, strlen(k), 0, i);
        } else {
            pc_store_sweep(a->s, i, 16);
        }
    }
    return NULL;
}

static void mt_run(pc_evict_policy_t policy)
{
    /* small enough that the 512 keys do not all fit: evictions race too */
    const size_t limit = 128 * 1024;
    pc_store_t *s = new_store(limit, 8, policy);
    pthread_t th[MT_THREADS];
    struct mt_arg args[MT_THREADS];
    pc_store_stats_t st;
    uint64_t walked = 0, seen = 0, gets = 0, sets = 0, deletes = 0;
    char k[16];

    for (int i = 0; i < MT_THREADS; i++) {
        args[i] = (struct mt_arg){.s = s, .seed = 1000 + (uint64_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, mt_worker, &args[i]), 0);
    }
    for (int i = 0; i < MT_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].bad, 0);
        gets += args[i].gets;
        sets += args[i].sets;
        deletes += args[i].deletes;
    }
    st = stats(s);
    assert_int_equal(pc_store_verify(s, &walked), PC_OK);
    for (unsigned key = 0; key < MT_KEYS; key++) {
        keyname(k, sizeof k, "mt", key);
        seen += present(s, k, 0);
    }
    assert_int_equal(st.items, walked);
    assert_int_equal(st.items, seen);
    assert_true(st.bytes <= limit);
    assert_true(st.evictions > 0);
    /* no update lost under contention */
    assert_int_equal(st.hits + st.misses, gets);
    assert_int_equal(st.sets, sets);
    assert_int_equal(st.deletes, deletes);
    assert_true(st.hits > 0 && st.misses > 0);
    pc_store_free(&s);
}

static void test_multithreaded(void **state)
{
    (void)state;
    mt_run(PC_EVICT_S3FIFO);
    mt_run(PC_EVICT_LRU);
}

/* pc_store_prefetch is a hint: whatever it is given (absent keys, an
 * empty one, more than PC_STORE_PREFETCH_MAX), every counter and every
 * answer stays as it was. */
static void test_prefetch_changes_nothing(void **state)
{
    (void)state;
    pc_store_t *s = new_store((size_t)64 << 20, 4, PC_EVICT_S3FIFO);
    char names[40][16];
    const void *keys[40];
    size_t klens[40];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "key:%d", i);
        keys[i] = names[i];
        klens[i] = strlen(names[i]);
        if (i % 2 == 0)
            assert_int_equal(set_kv(s, names[i], "v", 0, 0), PC_OK);
    }
    klens[39] = 0; /* the empty key */
    pc_store_stats_t before = stats(s);
    pc_store_prefetch(s, keys, klens, 40);
    pc_store_prefetch(s, keys, klens, 1);
    pc_store_prefetch(s, keys, klens, 0);
    pc_store_stats_t after = stats(s);
    assert_memory_equal(&before, &after, sizeof before);
    for (int i = 0; i < 39; i++) {
        pc_item_t *it = NULL;
        int rc = pc_store_get(s, names[i], strlen(names[i]), 0, &it);
        assert_int_equal(rc, i % 2 == 0 ? PC_OK : PC_ENOTFOUND);
        if (it != NULL)
            pc_store_release(s, it);
    }
    pc_store_free(&s);
}

/* Prefetching while another thread grows the tables (every shard doubles
 * several times, old tables freed as they are migrated) and deletes:
 * no read of a freed table (ASan), no race (TSan). */
struct prefetch_arg {
    pc_store_t *s;
    atomic_int done;
};

static void *prefetch_writer(void *p)
{
    struct prefetch_arg *a = p;
    char k[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "grow:%d", i);
        (void)pc_store_set(a->s, k, strlen(k), "v", 1, 0, 0, 0, PC_STORE_SET_ALWAYS, 0);
        if (i % 3 == 0) {
            snprintf(k, sizeof k, "grow:%d", i / 2);
            (void)pc_store_del(a->s, k, strlen(k), 0);
        }
    }
    atomic_store(&a->done, 1);
    return NULL;
}

static void test_prefetch_while_growing(void **state)
{
    (void)state;
    struct prefetch_arg a = {.s = new_store((size_t)256 << 20, 2, PC_EVICT_S3FIFO)};
    atomic_init(&a.done, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, prefetch_writer, &a), 0);
    char names[PC_STORE_PREFETCH_MAX][32];
    const void *keys[PC_STORE_PREFETCH_MAX];
    size_t klens[PC_STORE_PREFETCH_MAX];
    uint64_t rng = 7;
    unsigned rounds = 0;
    while (!atomic_load(&a.done) || rounds < 100) {
        for (int i = 0; i < PC_STORE_PREFETCH_MAX; i++) {
            snprintf(names[i], sizeof names[i], "grow:%u", (unsigned)(rng_next(&rng) % 20000));
            keys[i] = names[i];
            klens[i] = strlen(names[i]);
        }
        pc_store_prefetch(a.s, keys, klens, PC_STORE_PREFETCH_MAX);
        rounds++;
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    pc_item_t *it = NULL;
    assert_int_equal(pc_store_get(a.s, "grow:19999", 10, 0, &it), PC_OK);
    pc_store_release(a.s, it);
    pc_store_free(&a.s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_value_copy_independence),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_refcount_eviction),
        cmocka_unit_test(test_ttl_boundary),
        cmocka_unit_test(test_touch),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_sweep_resumes_in_chain),
        cmocka_unit_test(test_limit_never_exceeded),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_s3fifo_eviction),
        cmocka_unit_test(test_s3fifo_scan_resistance),
        cmocka_unit_test(test_s3fifo_ghost),
        cmocka_unit_test(test_s3fifo_main_reinsertion),
        cmocka_unit_test(test_if_newer),
        cmocka_unit_test(test_if_absent),
        cmocka_unit_test(test_shards_for),
        cmocka_unit_test(test_toobig),
        cmocka_unit_test(test_counters_exact),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_epoch),
        cmocka_unit_test(test_epoch_threaded),
        cmocka_unit_test(test_del_if_older),
        cmocka_unit_test(test_if_present),
        cmocka_unit_test(test_if_version),
        cmocka_unit_test(test_conditional_refusal_untouched),
        cmocka_unit_test(test_if_version_threaded),
        cmocka_unit_test(test_scan_every_item_once),
        cmocka_unit_test(test_scan_want),
        cmocka_unit_test(test_scan_under_growth),
        cmocka_unit_test(test_scan_empty),
        cmocka_unit_test(test_scan_sparse_bounded),
        cmocka_unit_test(test_scan_expired_and_untouched),
        cmocka_unit_test(test_scan_hash_collision),
        cmocka_unit_test(test_multithreaded),
        cmocka_unit_test(test_prefetch_changes_nothing),
        cmocka_unit_test(test_prefetch_while_growing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
