/*
 * test_ring.c -- unit tests for ring/pc_ring.
 *
 * Placement is part of the wire contract between clients and nodes, so
 * the golden vectors below pin it: the hash of fixed inputs, the owner and
 * replicas of fixed keys on fixed rings, and their fingerprints. They were
 * generated once from the implementation and hard-coded. If one of them
 * fails, placement changed: every deployed cluster would move its keys.
 * That needs a new PC_RING_SCHEME and new vectors, never a quiet update.
 *
 * Two checks are independent of the implementation's code paths:
 *   - spec_hash() and spec_draw() rebuild the hash and the draw from their
 *     definitions in docs/RING.md, so the document cannot drift;
 *   - ref_slot() ranks every member of a slot by the general rule (scores
 *     compared by cross-multiplication, then draw, then name), with no
 *     shortcut, and must agree with the built table on every slot, for
 *     equal weights (where the library skips the log) and mixed ones.
 * Random cases use a seeded PRNG, so every run checks the same rings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_ring.h"

/* splitmix64: a seeded, local PRNG so runs are reproducible. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static pc_ring_t *build(const pc_ring_member_t *m, size_t n, unsigned replicas)
{
    pc_ring_t *r = NULL;

    assert_int_equal(pc_ring_new(m, n, replicas, &r), PC_OK);
    assert_non_null(r);
    return r;
}

static uint32_t slot_of(const char *key)
{
    return pc_ring_slot(key, strlen(key));
}

/* The names of a slot's placements, owner first. */
static size_t slot_names(const pc_ring_t *r, uint32_t slot, const char **out)
{
    uint32_t idx[PC_RING_MAX_REPLICAS];
    size_t n = pc_ring_slot_members(r, slot, idx, PC_RING_MAX_REPLICAS);

    for (size_t k = 0; k < n; k++)
        out[k] = pc_ring_name(r, idx[k]);
    return n;
}

static bool same_lists(const pc_ring_t *a, const pc_ring_t *b, uint32_t slot)
{
    const char *la[PC_RING_MAX_REPLICAS], *lb[PC_RING_MAX_REPLICAS];
    size_t na = slot_names(a, slot, la), nb = slot_names(b, slot, lb);

    if (na != nb)
        return false;
    for (size_t k = 0; k < na; k++) {
        if (strcmp(la[k], lb[k]) != 0)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* The definitions of docs/RING.md, written again from the document    */
/* ------------------------------------------------------------------ */

#define SPEC_K0 0x6a09e667f3bcc909ULL
#define SPEC_K1 0xbb67ae8584caa73bULL
#define SPEC_K2 0x3c6ef372fe94f82bULL
#define SPEC_K3 0xa54ff53a5f1d36f1ULL

static uint64_t spec_rotl(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t spec_mix(uint64_t z)
{
    z ^= z >> 32;
    z *= SPEC_K1;
    z ^= z >> 29;
    z *= SPEC_K2;
    z ^= z >> 32;
    return z;
}

static uint64_t spec_hash(const uint8_t *p, size_t len)
{
    uint64_t h = SPEC_K0 ^ ((uint64_t)len * SPEC_K3);
    size_t off = 0;

    while (off < len) {
        uint64_t w = 0;

        for (size_t i = 0; i < 8 && off + i < len; i++)
            w |= (uint64_t)p[off + i] << (8 * i);
        h ^= spec_rotl(w * SPEC_K1, 29) * SPEC_K2;
        h = spec_rotl(h, 27) * SPEC_K3 + SPEC_K0;
        off += 8;
    }
    return spec_mix(h);
}

static uint64_t spec_draw(uint64_t name_hash, uint32_t slot)
{
    uint8_t le[4] = {(uint8_t)slot, (uint8_t)(slot >> 8), (uint8_t)(slot >> 16),
                     (uint8_t)(slot >> 24)};

    return spec_mix(name_hash ^ spec_hash(le, 4));
}

/* The general ranking rule, with no shortcut: a before b when it scores
 * higher (L_a * w_b < L_b * w_a), then has the larger draw, then the
 * smaller index (name order). */
struct ref_cand {
    uint64_t x, l;
    uint32_t w, i;
};

static int ref_cmp(const void *pa, const void *pb)
{
    const struct ref_cand *a = pa, *b = pb;
    uint64_t lhs = a->l * b->w, rhs = b->l * a->w;

    if (lhs != rhs)
        return lhs < rhs ? -1 : 1;
    if (a->x != b->x)
        return a->x > b->x ? -1 : 1;
    return a->i < b->i ? -1 : 1;
}

static void ref_check_all_slots(const pc_ring_t *r)
{
    size_t n = pc_ring_size(r);
    struct ref_cand *c = malloc(n * sizeof *c);
    uint64_t *h = malloc(n * sizeof *h);

    assert_non_null(c);
    assert_non_null(h);
    for (size_t i = 0; i < n; i++) {
        const char *nm = pc_ring_name(r, i);
        h[i] = pc_ring_hash(nm, strlen(nm));
    }
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        uint32_t got[PC_RING_MAX_REPLICAS];
        size_t k = pc_ring_slot_members(r, s, got, PC_RING_MAX_REPLICAS);

        for (size_t i = 0; i < n; i++) {
            c[i].x = pc_ring_draw(h[i], s);
            c[i].l = pc_ring_neglog2(c[i].x);
            c[i].w = pc_ring_weight(r, i);
            c[i].i = (uint32_t)i;
        }
        qsort(c, n, sizeof *c, ref_cmp);
        assert_int_equal(k, pc_ring_replicas(r));
        for (size_t j = 0; j < k; j++)
            assert_int_equal(got[j], c[j].i);
    }
    free(c);
    free(h);
}

/* ------------------------------------------------------------------ */
/* Golden vectors                                                      */
/* ------------------------------------------------------------------ */

static void test_hash_golden(void **state)
{
    static const uint64_t prefix[17] = {
        0x29135f800bf32d25ull, 0xd9c19a487f329046ull, 0xdff529b45c5cecc9ull,
        0x71e015e9f172b7e7ull, 0xcdd0efcebd7a5385ull, 0x7069e1b25d68a875ull,
        0x81a343c6c7f23d39ull, 0xe725906f31d7741cull, 0xe97c0a75f65a39c4ull,
        0x3fc4f48fee417654ull, 0x76e5c7b7743233b1ull, 0x1d2d68aa71d83cafull,
        0x9253d9151107b777ull, 0x39ccc6fb5557f27aull, 0x9f0b1d958b92acb8ull,
        0x8d1f7503fedf151cull, 0xf9990fc63b8b45f2ull,
    };
    const char *p17 = "0123456789abcdefg";
    char s100[100];

    (void)state;
    for (int i = 0; i < 100; i++)
        s100[i] = (char)('a' + i % 26);
    assert_int_equal(pc_ring_hash("", 0), 0xf82c6afe36eca7b2ull);
    assert_int_equal(pc_ring_hash(NULL, 0), 0xf82c6afe36eca7b2ull);
    assert_int_equal(pc_ring_hash("a", 1), 0x854742bdacffcaecull);
    assert_int_equal(pc_ring_hash("user:42", 7), 0xd855f214b1733a58ull);
    assert_int_equal(pc_ring_hash(s100, 100), 0xcb2eaa23135e6478ull);
    /* Lengths 1..17: a tail of every size, alone and after full words. */
    for (size_t len = 1; len <= 17; len++)
        assert_int_equal(pc_ring_hash(p17, len), prefix[len - 1]);
    assert_int_equal(pc_ring_slot("user:42", 7), 0xd855f214b1733a58ull & (PC_RING_SLOTS - 1));
}

/* The library agrees with the document's definitions on random input. */
static void test_hash_matches_spec(void **state)
{
    uint64_t rng = 1;
    uint8_t buf[64];

    (void)state;
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = (size_t)(rng_next(&rng) % 41);

        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rng_next(&rng);
        assert_int_equal(pc_ring_hash(buf, len), spec_hash(buf, len));
        /* Unaligned start: bytes are read one by one, never as a word. */
        assert_int_equal(pc_ring_hash(buf + 1, len ? len - 1 : 0),
                         spec_hash(buf + 1, len ? len - 1 : 0));
    }
    for (uint32_t s = 0; s < PC_RING_SLOTS; s += 97) {
        uint64_t h = rng_next(&rng);
        assert_int_equal(pc_ring_draw(h, s), spec_draw(h, s));
    }
    /* A zero-padded tail does not collide with the longer input. */
    assert_int_not_equal(pc_ring_hash("\0", 1), pc_ring_hash("\0\0", 2));
    assert_int_not_equal(pc_ring_hash("", 0), pc_ring_hash("\0", 1));
    assert_int_not_equal(pc_ring_hash("abcdefgh", 8), pc_ring_hash("abcdefgh\0", 9));
}

/*
 * log2 in long double without libm (the test links only pc_ring):
 * scale into [1, 2), then ln m = 2 atanh((m - 1) / (m + 1)), a series in
 * z^2 <= 1/9 that 40 terms take far past long double precision.
 */
static long double ld_log2(long double v)
{
    const long double ln2 = 0.693147180559945309417232121458176568L;
    long double z, z2, term, sum = 0;
    int e = 0;

    while (v >= 2) {
        v /= 2;
        e++;
    }
    while (v < 1) {
        v *= 2;
        e--;
    }
    z = (v - 1) / (v + 1);
    z2 = z * z;
    term = z;
    for (int k = 1; k < 80; k += 2) {
        sum += term / k;
        term *= z2;
    }
    return e + 2 * sum / ln2;
}

static void test_neglog2(void **state)
{
    static const uint64_t golden[][2] = {
        {0x0000000000000000ull, 0x40000000000000ull}, /* counts as 1: 64.0 */
        {0x0000000000000001ull, 0x40000000000000ull},
        {0x0000000000000002ull, 0x3f000000000000ull},
        {0x0000000000000003ull, 0x3e6a3fe5c60429ull},
        {0x7fffffffffffffffull, 0x1000000b8d876ull},
        {0x8000000000000000ull, 0x1000000000000ull}, /* exactly 1.0 */
        {0x8000000000000001ull, 0xffffff8d0000ull},
        {0xc000000000000000ull, 0x6a3fe5c60000ull},
        {0xffffffffffffffffull, 0x0ull},
        {0xfffffffffffffffeull, 0x0ull},
        {0x123456789abcdef0ull, 0x3d05413a99f83ull},
        {0xfedcba9876543210ull, 0x1a526ee9852ull},
    };
    uint64_t rng = 7;

    (void)state;
    for (size_t i = 0; i < sizeof golden / sizeof *golden; i++)
        assert_int_equal(pc_ring_neglog2(golden[i][0]), golden[i][1]);

    /* Never increasing: across every power of two and its neighbours,
     * and between random pairs. Equal weights depend on it. */
    for (unsigned b = 0; b < 64; b++) {
        uint64_t base = 1ull << b;

        for (uint64_t d = 0; d < 600; d++) {
            uint64_t x = base - 300 + d;

            if (x + 1 > x)
                assert_true(pc_ring_neglog2(x + 1) <= pc_ring_neglog2(x));
        }
        /* the same around the complement, where the upper half switches scale */
        for (uint64_t d = 0; d < 600; d++) {
            uint64_t x = ~base - 300 + d;

            if (x + 1 > x)
                assert_true(pc_ring_neglog2(x + 1) <= pc_ring_neglog2(x));
        }
    }
    for (int i = 0; i < 200000; i++) {
        uint64_t x = rng_next(&rng) >> (i % 64), y = x + (rng_next(&rng) >> (i % 61 + 3));

        if (y >= x)
            assert_true(pc_ring_neglog2(y) <= pc_ring_neglog2(x));
    }

    /* Close to the real thing: relative error under 2e-6 (where one unit
     * of the fixed point is small against the value). */
    for (int i = 0; i < 20000; i++) {
        uint64_t x = rng_next(&rng) >> (i % 64);
        long double real, got, err;

        if (i & 1)
            x = ~x;
        if (x == 0)
            continue;
        real = (64 - ld_log2((long double)x)) * 281474976710656.0L; /* 2^48 */
        got = (long double)pc_ring_neglog2(x);
        err = got > real ? got - real : real - got;
        if (real > 1e7L)
            assert_true(err / real < 2e-6L);
        assert_true(got <= 18014398509481984.0L); /* 2^54 */
    }
}

static const pc_ring_member_t golden_members[5] = {
    {"alpha", 1}, {"bravo", 2}, {"charlie", 3}, {"Delta", 1}, {"echo", 5},
};

static const char *const golden_keys[20] = {
    "", "a", "user:42", "key:0", "key:1", "key:2", "key:3", "key:999999",
    "session:9f86d081884c7d65", "img/2024/01/cat.png", "\xff\xfe", "Z", "zz",
    "user:1000000", "0123456789abcdef", "0123456789abcdefg", "peercache", "tenant-7/obj-12",
    "x:y:z", "last-key",
};

static void test_placement_golden(void **state)
{
    /* weights alpha 1, bravo 2, charlie 3, Delta 1, echo 5; R = 3 */
    static const char *const want[20][3] = {
        {"echo", "charlie", "bravo"},  {"alpha", "echo", "bravo"},
        {"echo", "bravo", "charlie"},  {"bravo", "Delta", "echo"},
        {"bravo", "echo", "charlie"},  {"echo", "charlie", "Delta"},
        {"echo", "bravo", "charlie"},  {"Delta", "bravo", "alpha"},
        {"charlie", "echo", "bravo"},  {"alpha", "Delta", "echo"},
        {"echo", "bravo", "charlie"},  {"charlie", "echo", "Delta"},
        {"bravo", "charlie", "echo"},  {"echo", "bravo", "charlie"},
        {"bravo", "charlie", "echo"},  {"Delta", "echo", "bravo"},
        {"charlie", "echo", "alpha"},  {"echo", "alpha", "charlie"},
        {"bravo", "Delta", "echo"},    {"charlie", "bravo", "echo"},
    };
    static const uint32_t want_slots[20] = {
        42930, 51948, 14936, 60960, 43084, 63669, 61085, 40251, 64023, 52921,
        43547, 16532, 51295, 10219, 5404,  17906, 53234, 23599, 61673, 55583,
    };
    /* Same names, all weight 1, R = 2: the equal-weights path. */
    static const char *const want_equal[20][2] = {
        {"echo", "bravo"},    {"alpha", "bravo"},  {"bravo", "alpha"},   {"bravo", "Delta"},
        {"bravo", "Delta"},   {"Delta", "echo"},   {"echo", "bravo"},    {"Delta", "alpha"},
        {"charlie", "Delta"}, {"alpha", "Delta"},  {"echo", "bravo"},    {"Delta", "charlie"},
        {"bravo", "charlie"}, {"echo", "bravo"},   {"bravo", "charlie"}, {"Delta", "alpha"},
        {"charlie", "alpha"}, {"alpha", "echo"},   {"bravo", "Delta"},   {"charlie", "bravo"},
    };
    pc_ring_member_t eq[5];
    pc_ring_t *r = build(golden_members, 5, 3);

    (void)state;
    assert_int_equal(pc_ring_fingerprint(r), 0x9b6117df604e301eull);
    /* Name order is bytewise: upper case first. */
    assert_string_equal(pc_ring_name(r, 0), "Delta");
    assert_string_equal(pc_ring_name(r, 4), "echo");
    assert_int_equal(pc_ring_owned_slots(r, 0), 5457);  /* Delta, w 1 */
    assert_int_equal(pc_ring_owned_slots(r, 1), 5500);  /* alpha, w 1 */
    assert_int_equal(pc_ring_owned_slots(r, 2), 10994); /* bravo, w 2 */
    assert_int_equal(pc_ring_owned_slots(r, 3), 16433); /* charlie, w 3 */
    assert_int_equal(pc_ring_owned_slots(r, 4), 27152); /* echo, w 5 */
    for (size_t k = 0; k < 20; k++) {
        const char *got[PC_RING_MAX_REPLICAS];
        uint32_t slot = slot_of(golden_keys[k]);

        assert_int_equal(slot, want_slots[k]);
        assert_int_equal(slot_names(r, slot, got), 3);
        for (size_t j = 0; j < 3; j++)
            assert_string_equal(got[j], want[k][j]);
        assert_string_equal(
            pc_ring_name(r, (size_t)pc_ring_owner(r, golden_keys[k], strlen(golden_keys[k]))),
            want[k][0]);
    }
    pc_ring_free(&r);

    for (size_t i = 0; i < 5; i++)
        eq[i] = (pc_ring_member_t){golden_members[i].name, 1};
    r = build(eq, 5, 2);
    assert_int_equal(pc_ring_fingerprint(r), 0x0dfe60d54cfd7434ull);
    for (size_t k = 0; k < 20; k++) {
        const char *got[PC_RING_MAX_REPLICAS];

        assert_int_equal(slot_names(r, slot_of(golden_keys[k]), got), 2);
        assert_string_equal(got[0], want_equal[k][0]);
        assert_string_equal(got[1], want_equal[k][1]);
    }
    pc_ring_free(&r);

    r = build(NULL, 0, 3);
    assert_int_equal(pc_ring_fingerprint(r), 0x61a2178cc179d5f8ull);
    pc_ring_free(&r);
}

/* A reference keeps the ring whole after its maker let go (the node's
 * loops route by a ring the membership has replaced); the last free
 * frees it (ASan sees a use after free or a leak). */
static void test_ref_outlives_free(void **state)
{
    (void)state;
    pc_ring_t *r = build(golden_members, 5, 3);
    uint64_t fp = pc_ring_fingerprint(r);
    long owner = pc_ring_owner(r, "k", 1);
    pc_ring_t *a = pc_ring_ref(r), *b = pc_ring_ref(r);
    assert_ptr_equal(a, r);
    pc_ring_free(&r);
    assert_null(r);
    pc_ring_free(&a);
    assert_null(a);
    assert_int_equal(pc_ring_fingerprint(b), fp);
    assert_int_equal(pc_ring_owner(b, "k", 1), owner);
    assert_int_equal(pc_ring_size(b), 5);
    pc_ring_free(&b);
    assert_null(b);
}

/* ------------------------------------------------------------------ */
/* The table against the reference rule                                */
/* ------------------------------------------------------------------ */

static void test_reference_rule(void **state)
{
    static const struct {
        size_t n;
        unsigned replicas;
        bool weighted;
    } cases[] = {
        {1, 3, false}, {2, 3, true},  {3, 3, false}, {5, 3, true},   {10, 3, false},
        {10, 3, true}, {17, 5, false}, {24, 8, true}, {40, 1, true},
    };
    uint64_t rng = 42;

    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pc_ring_member_t m[64];
        char names[64][48];
        pc_ring_t *r;

        for (size_t i = 0; i < cases[c].n; i++) {
            snprintf(names[i], sizeof names[i], "n%zu-%u", i, (unsigned)(rng_next(&rng) % 1000));
            m[i].name = names[i];
            /* occasionally the extremes, so products near 2^64 are covered */
            m[i].weight = !cases[c].weighted ? 7
                          : i % 7 == 3       ? PC_RING_MAX_WEIGHT
                                             : 1 + (uint32_t)(rng_next(&rng) % 10);
        }
        r = build(m, cases[c].n, cases[c].replicas);
        ref_check_all_slots(r);
        pc_ring_free(&r);
    }
}

/* ------------------------------------------------------------------ */
/* Properties                                                          */
/* ------------------------------------------------------------------ */

static void test_order_independence(void **state)
{
    pc_ring_member_t m[12], shuffled[12];
    char names[12][48];
    uint64_t rng = 3;
    pc_ring_t *a, *b;

    (void)state;
    for (size_t i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "cache-%02zu", i);
        m[i] = (pc_ring_member_t){names[i], 1 + (uint32_t)(i % 3)};
        shuffled[i] = m[i];
    }
    a = build(m, 12, 3);
    for (int round = 0; round < 5; round++) {
        for (size_t i = 11; i > 0; i--) {
            size_t j = (size_t)(rng_next(&rng) % (i + 1));
            pc_ring_member_t t = shuffled[i];

            shuffled[i] = shuffled[j];
            shuffled[j] = t;
        }
        b = build(shuffled, 12, 3);
        assert_int_equal(pc_ring_fingerprint(a), pc_ring_fingerprint(b));
        for (size_t i = 0; i < 12; i++) {
            assert_string_equal(pc_ring_name(a, i), pc_ring_name(b, i));
            assert_int_equal(pc_ring_owned_slots(a, i), pc_ring_owned_slots(b, i));
        }
        for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
            assert_true(same_lists(a, b, s));
        assert_int_equal(pc_ring_diff(a, b, NULL, NULL), 0);
        pc_ring_free(&b);
    }
    pc_ring_free(&a);
}

static void test_fingerprint(void **state)
{
    pc_ring_member_t m[5];
    uint64_t fps[16];
    size_t nfp = 0;
    pc_ring_t *r;

    (void)state;
    memcpy(m, golden_members, sizeof m);
    r = build(m, 5, 3);
    fps[nfp++] = pc_ring_fingerprint(r);
    pc_ring_free(&r);

    m[2].weight = 4; /* a weight */
    r = build(m, 5, 3);
    fps[nfp++] = pc_ring_fingerprint(r);
    pc_ring_free(&r);
    m[2].weight = 3;

    m[1].name = "bravo2"; /* a name */
    r = build(m, 5, 3);
    fps[nfp++] = pc_ring_fingerprint(r);
    pc_ring_free(&r);
    m[1].name = "bravo";

    r = build(m, 5, 2); /* the replica count */
    fps[nfp++] = pc_ring_fingerprint(r);
    pc_ring_free(&r);

    r = build(m, 4, 3); /* a member fewer */
    fps[nfp++] = pc_ring_fingerprint(r);
    pc_ring_free(&r);

    r = build(m, 1, 1);
    fps[nfp++] = pc_ring_fingerprint(r);
    pc_ring_free(&r);

    r = build(NULL, 0, 1);
    fps[nfp++] = pc_ring_fingerprint(r);
    pc_ring_free(&r);

    for (size_t i = 0; i < nfp; i++) {
        assert_int_not_equal(fps[i], 0);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(fps[i], fps[j]);
    }

    /* The count is the one built: 2 members asked for 2 or 3 replicas
     * place identically, and the fingerprint says so. So does an empty
     * ring, whatever was asked. */
    pc_ring_t *x = build(m, 2, 2), *y = build(m, 2, 3);
    assert_int_equal(pc_ring_fingerprint(x), pc_ring_fingerprint(y));
    assert_int_equal(pc_ring_diff(x, y, NULL, NULL), 0);
    pc_ring_free(&x);
    pc_ring_free(&y);
    x = build(NULL, 0, 1);
    y = build(NULL, 0, 8);
    assert_int_equal(pc_ring_fingerprint(x), pc_ring_fingerprint(y));
    pc_ring_free(&x);
    pc_ring_free(&y);
}

/* pc_ring_roles agrees with pc_ring_slot_members for every member and
 * slot, and says NONE everywhere for an outsider or no ring. */
static void test_roles(void **state)
{
    static const struct {
        size_t n;
        unsigned replicas;
    } cases[] = {{1, 1}, {1, 3}, {2, 2}, {5, 3}, {9, 8}};
    static uint8_t roles[PC_RING_SLOTS];

    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pc_ring_member_t m[16];
        char names[16][48];
        for (size_t i = 0; i < cases[c].n; i++) {
            snprintf(names[i], sizeof names[i], "role%zu", i);
            m[i] = (pc_ring_member_t){names[i], 1 + (uint32_t)(i % 3)};
        }
        pc_ring_t *r = build(m, cases[c].n, cases[c].replicas);
        for (size_t self = 0; self < cases[c].n; self++) {
            size_t owned = 0;
            pc_ring_roles(r, (long)self, roles);
            for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
                uint32_t at[PC_RING_MAX_REPLICAS];
                size_t k = pc_ring_slot_members(r, s, at, PC_RING_MAX_REPLICAS);
                unsigned want = PC_RING_ROLE_NONE;
                for (size_t i = 0; i < k; i++)
                    if (at[i] == self)
                        want = i == 0 ? PC_RING_ROLE_OWNER : PC_RING_ROLE_REPLICA;
                assert_int_equal(roles[s], want);
                owned += roles[s] == PC_RING_ROLE_OWNER;
            }
            assert_int_equal(owned, pc_ring_owned_slots(r, self));
        }
        memset(roles, 0xff, sizeof roles);
        pc_ring_roles(r, (long)cases[c].n, roles); /* not a member */
        for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
            assert_int_equal(roles[s], PC_RING_ROLE_NONE);
        memset(roles, 0xff, sizeof roles);
        pc_ring_roles(r, -1, roles);
        assert_int_equal(roles[PC_RING_SLOTS - 1], PC_RING_ROLE_NONE);
        pc_ring_free(&r);
    }
    memset(roles, 0xff, sizeof roles);
    pc_ring_roles(NULL, 0, roles);
    assert_int_equal(roles[0], PC_RING_ROLE_NONE);
}

static void test_replicas(void **state)
{
    static const struct {
        size_t n;
        unsigned replicas;
    } cases[] = {{1, 1}, {1, 3}, {2, 3}, {3, 3}, {5, 3}, {5, 8}, {9, 8}, {12, 2}};

    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pc_ring_member_t m[16];
        char names[16][48];
        size_t want = cases[c].n < cases[c].replicas ? cases[c].n : cases[c].replicas;
        pc_ring_t *r;

        for (size_t i = 0; i < cases[c].n; i++) {
            snprintf(names[i], sizeof names[i], "r%zu", i);
            m[i] = (pc_ring_member_t){names[i], 1 + (uint32_t)(i % 2)};
        }
        r = build(m, cases[c].n, cases[c].replicas);
        assert_int_equal(pc_ring_size(r), cases[c].n);
        assert_int_equal(pc_ring_replicas(r), want);
        for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
            uint32_t out[PC_RING_MAX_REPLICAS + 1];
            size_t k = pc_ring_slot_members(r, s, out, PC_RING_MAX_REPLICAS + 1);

            assert_int_equal(k, want);
            assert_int_equal(out[0], pc_ring_slot_owner(r, s));
            for (size_t i = 0; i < k; i++) {
                assert_true(out[i] < cases[c].n);
                for (size_t j = 0; j < i; j++)
                    assert_int_not_equal(out[i], out[j]);
            }
        }
        /* max below the count truncates; 0 writes nothing */
        uint32_t one[1] = {UINT32_MAX};
        assert_int_equal(pc_ring_slot_members(r, 7, one, 1), 1);
        assert_int_equal(one[0], pc_ring_slot_owner(r, 7));
        assert_int_equal(pc_ring_slot_members(r, 7, one, 0), 0);
        pc_ring_free(&r);
    }
}

static void test_single_and_empty(void **state)
{
    pc_ring_member_t one = {"solo", 9};
    uint32_t out[PC_RING_MAX_REPLICAS];
    pc_ring_t *r = build(&one, 1, 3);

    (void)state;
    assert_int_equal(pc_ring_replicas(r), 1);
    assert_int_equal(pc_ring_owned_slots(r, 0), PC_RING_SLOTS);
    assert_int_equal(pc_ring_owner(r, "k", 1), 0);
    assert_int_equal(pc_ring_owner(r, NULL, 0), 0);
    pc_ring_free(&r);

    r = build(NULL, 0, 3);
    assert_int_equal(pc_ring_size(r), 0);
    assert_int_equal(pc_ring_replicas(r), 0);
    assert_int_equal(pc_ring_owner(r, "k", 1), -1);
    assert_int_equal(pc_ring_slot_owner(r, 0), -1);
    assert_int_equal(pc_ring_slot_members(r, 0, out, PC_RING_MAX_REPLICAS), 0);
    assert_null(pc_ring_name(r, 0));
    assert_int_equal(pc_ring_weight(r, 0), 0);
    assert_int_equal(pc_ring_owned_slots(r, 0), 0);
    assert_int_equal(pc_ring_find(r, "solo"), -1);
    assert_int_not_equal(pc_ring_fingerprint(r), 0);
    assert_int_equal(pc_ring_diff(r, r, NULL, NULL), 0);
    pc_ring_free(&r);

    /* members may be non-NULL with n = 0 too */
    r = build(&one, 0, 3);
    assert_int_equal(pc_ring_size(r), 0);
    pc_ring_free(&r);
}

static void test_errors(void **state)
{
    char longname[PC_RING_MAX_NAME + 2];
    pc_ring_member_t m[3] = {{"a", 1}, {"b", 1}, {"c", 1}};
    pc_ring_t *r = (pc_ring_t *)m; /* must be cleared on failure */

    (void)state;
    memset(longname, 'x', sizeof longname);
    longname[PC_RING_MAX_NAME + 1] = '\0';

    assert_int_equal(pc_ring_new(m, 3, 3, NULL), PC_EINVAL);
    assert_int_equal(pc_ring_new(NULL, 1, 3, &r), PC_EINVAL);
    assert_null(r);

    m[1].name = "a"; /* duplicate */
    r = (pc_ring_t *)m;
    assert_int_equal(pc_ring_new(m, 3, 3, &r), PC_EINVAL);
    assert_null(r);
    m[1].name = "";
    assert_int_equal(pc_ring_new(m, 3, 3, &r), PC_EINVAL);
    m[1].name = NULL;
    assert_int_equal(pc_ring_new(m, 3, 3, &r), PC_EINVAL);
    m[1].name = longname; /* 256 bytes */
    assert_int_equal(pc_ring_new(m, 3, 3, &r), PC_EINVAL);
    longname[PC_RING_MAX_NAME] = '\0'; /* 255 bytes: fine */
    assert_int_equal(pc_ring_new(m, 3, 3, &r), PC_OK);
    assert_int_equal(pc_ring_find(r, longname), 2);
    pc_ring_free(&r);
    m[1].name = "b";

    m[2].weight = 0;
    assert_int_equal(pc_ring_new(m, 3, 3, &r), PC_EINVAL);
    m[2].weight = PC_RING_MAX_WEIGHT + 1;
    assert_int_equal(pc_ring_new(m, 3, 3, &r), PC_EINVAL);
    m[2].weight = PC_RING_MAX_WEIGHT;
    assert_int_equal(pc_ring_new(m, 3, 3, &r), PC_OK);
    pc_ring_free(&r);

    assert_int_equal(pc_ring_new(m, 3, 0, &r), PC_EINVAL);
    assert_int_equal(pc_ring_new(m, 3, PC_RING_MAX_REPLICAS + 1, &r), PC_EINVAL);
    assert_int_equal(pc_ring_new(m, 3, PC_RING_MAX_REPLICAS, &r), PC_OK);
    pc_ring_free(&r);
    /* checked before any member is read */
    assert_int_equal(pc_ring_new(m, PC_RING_MAX_MEMBERS + 1, 3, &r), PC_EINVAL);
    assert_null(r);

    /* NULL-safe accessors and destructor */
    pc_ring_free(&r);
    pc_ring_free(NULL);
    assert_int_equal(pc_ring_size(NULL), 0);
    assert_int_equal(pc_ring_owner(NULL, "k", 1), -1);
    assert_int_equal(pc_ring_find(NULL, "a"), -1);
    assert_int_equal(pc_ring_fingerprint(NULL), 0);
    assert_int_equal(pc_ring_diff(NULL, NULL, NULL, NULL), PC_EINVAL);
}

static void test_find_and_owned(void **state)
{
    pc_ring_member_t m[6] = {{"w1", 1}, {"w2", 2}, {"w3", 3}, {"w4", 4}, {"w0a", 1}, {"w0b", 1}};
    uint32_t owned[6] = {0}, total = 0;
    pc_ring_t *r = build(m, 4, 2);

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(pc_ring_find(r, m[i].name), (long)i); /* already in name order */
        assert_int_equal(pc_ring_weight(r, i), m[i].weight);
    }
    assert_int_equal(pc_ring_find(r, "w0"), -1);
    assert_int_equal(pc_ring_find(r, "w5"), -1);
    assert_int_equal(pc_ring_find(r, ""), -1);
    assert_int_equal(pc_ring_find(r, NULL), -1);
    assert_null(pc_ring_name(r, 4));
    assert_int_equal(pc_ring_owned_slots(r, 4), 0);
    assert_int_equal(pc_ring_slot_owner(r, PC_RING_SLOTS), -1);
    assert_int_equal(pc_ring_slot_members(r, PC_RING_SLOTS, owned, 2), 0);

    for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
        owned[pc_ring_slot_owner(r, s)]++;
    for (size_t i = 0; i < 4; i++) {
        double expected = PC_RING_SLOTS * (double)m[i].weight / 10.0;

        assert_int_equal(owned[i], pc_ring_owned_slots(r, i));
        total += pc_ring_owned_slots(r, i);
        /* weights are respected within 5% */
        assert_true(owned[i] > expected * 0.95 && owned[i] < expected * 1.05);
    }
    assert_int_equal(total, PC_RING_SLOTS);

    /* a key's owner is its slot's owner */
    for (int k = 0; k < 1000; k++) {
        char key[32];
        int len = snprintf(key, sizeof key, "object-%d", k);

        assert_int_equal(pc_ring_owner(r, key, (size_t)len),
                         pc_ring_slot_owner(r, pc_ring_slot(key, (size_t)len)));
    }
    pc_ring_free(&r);
}

/* The most members a ring holds: indexes up to 4095 fit the table. */
static void test_max_members(void **state)
{
    pc_ring_member_t *m = malloc(PC_RING_MAX_MEMBERS * sizeof *m);
    char(*names)[48] = malloc(PC_RING_MAX_MEMBERS * sizeof *names);
    uint64_t total = 0;
    pc_ring_t *r;

    (void)state;
    assert_non_null(m);
    assert_non_null(names);
    for (size_t i = 0; i < PC_RING_MAX_MEMBERS; i++) {
        snprintf(names[i], sizeof names[i], "m%04zu", i);
        m[i] = (pc_ring_member_t){names[i], 1};
    }
    r = build(m, PC_RING_MAX_MEMBERS, 2);
    for (size_t i = 0; i < PC_RING_MAX_MEMBERS; i++)
        total += pc_ring_owned_slots(r, i);
    assert_int_equal(total, PC_RING_SLOTS);
    assert_int_equal(pc_ring_find(r, "m4095"), 4095);
    assert_true(pc_ring_owned_slots(r, 4095) > 0);
    pc_ring_free(&r);
    free(m);
    free(names);
}

/* ------------------------------------------------------------------ */
/* Diff and minimal movement                                           */
/* ------------------------------------------------------------------ */

/*
 * What every reported slot must satisfy when ring b differs from ring a
 * by one member `name` (joined, left, or re-weighted):
 *   - the lists really differ;
 *   - restricted to the other members, one list is a prefix of the
 *     other: members that stay never swap ranks, so no key moves
 *     between two of them;
 *   - an owner change involves `name`: it is the new owner (joined,
 *     weight up) or the old one (left, weight down).
 */
struct diff_ctx {
    const pc_ring_t *a, *b;
    const char *name;
    long calls;
    long owner_changes;
    long stop_at; /* return -42 on this call; 0 = never */
};

static size_t without(const char **list, size_t n, const char *name, const char **out)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], name) != 0)
            out[k++] = list[i];
    }
    return k;
}

static int check_move(void *arg, uint32_t slot, const uint32_t *from, size_t na,
                      const uint32_t *to, size_t nb)
{
    struct diff_ctx *c = arg;
    const char *la[PC_RING_MAX_REPLICAS], *lb[PC_RING_MAX_REPLICAS];
    const char *ra[PC_RING_MAX_REPLICAS], *rb[PC_RING_MAX_REPLICAS];
    size_t ka, kb;

    c->calls++;
    assert_true(slot < PC_RING_SLOTS);
    assert_false(same_lists(c->a, c->b, slot));
    assert_int_equal(na, pc_ring_replicas(c->a));
    assert_int_equal(nb, pc_ring_replicas(c->b));
    for (size_t i = 0; i < na; i++)
        la[i] = pc_ring_name(c->a, from[i]);
    for (size_t i = 0; i < nb; i++)
        lb[i] = pc_ring_name(c->b, to[i]);

    if (c->name) {
        ka = without(la, na, c->name, ra);
        kb = without(lb, nb, c->name, rb);
        for (size_t i = 0; i < ka && i < kb; i++)
            assert_string_equal(ra[i], rb[i]);
        if (na > 0 && nb > 0 && strcmp(la[0], lb[0]) != 0) {
            c->owner_changes++;
            assert_true(strcmp(la[0], c->name) == 0 || strcmp(lb[0], c->name) == 0);
        }
    }
    if (c->stop_at && c->calls == c->stop_at)
        return -42;
    return 0;
}

static long count_changed(const pc_ring_t *a, const pc_ring_t *b)
{
    long n = 0;

    for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
        n += !same_lists(a, b, s);
    return n;
}

static void test_diff_join_leave(void **state)
{
    pc_ring_member_t m[6] = {{"n1", 1}, {"n2", 1}, {"n3", 1}, {"n4", 1}, {"n5", 1}, {"n6", 1}};
    pc_ring_t *a = build(m, 5, 3), *b = build(m, 6, 3);
    struct diff_ctx c = {.a = a, .b = b, .name = "n6"};
    long n;

    (void)state;
    /* join: n6 takes about 1/6 of the owners and 1/2 of the lists */
    n = pc_ring_diff(a, b, check_move, &c);
    assert_int_equal(n, c.calls);
    assert_int_equal(n, count_changed(a, b));
    assert_int_equal(c.owner_changes, pc_ring_owned_slots(b, 5));
    assert_true(n > PC_RING_SLOTS / 3 && n < PC_RING_SLOTS * 2 / 3);

    /* leave: the same slots, the other way */
    c = (struct diff_ctx){.a = b, .b = a, .name = "n6"};
    assert_int_equal(pc_ring_diff(b, a, check_move, &c), n);
    assert_int_equal(c.owner_changes, pc_ring_owned_slots(b, 5));

    /* identical rings, and a rebuilt copy */
    pc_ring_t *a2 = build(m, 5, 3);
    assert_int_equal(pc_ring_diff(a, a, check_move, &c), 0);
    assert_int_equal(pc_ring_diff(a, a2, NULL, NULL), 0);
    pc_ring_free(&a2);

    /* fn's non-zero value stops the walk and is returned */
    c = (struct diff_ctx){.a = a, .b = b, .name = "n6", .stop_at = 3};
    assert_int_equal(pc_ring_diff(a, b, check_move, &c), -42);
    assert_int_equal(c.calls, 3);
    assert_int_equal(pc_ring_diff(a, b, NULL, NULL), n);

    pc_ring_free(&a);
    pc_ring_free(&b);
}

static int check_empty_side(void *arg, uint32_t slot, const uint32_t *from, size_t na,
                            const uint32_t *to, size_t nb)
{
    long *calls = arg;

    (void)slot;
    (void)from;
    (void)to;
    assert_true((na == 0) != (nb == 0));
    assert_int_equal(na + nb, 2);
    (*calls)++;
    return 0;
}

static void test_diff_empty(void **state)
{
    pc_ring_member_t m[2] = {{"p", 1}, {"q", 3}};
    pc_ring_t *e = build(NULL, 0, 2), *r = build(m, 2, 2);
    long calls = 0;

    (void)state;
    assert_int_equal(pc_ring_diff(e, r, check_empty_side, &calls), PC_RING_SLOTS);
    assert_int_equal(pc_ring_diff(r, e, check_empty_side, &calls), PC_RING_SLOTS);
    assert_int_equal(calls, 2 * (long)PC_RING_SLOTS);
    assert_int_equal(pc_ring_diff(e, e, check_empty_side, &calls), 0);
    assert_int_equal(pc_ring_diff(r, NULL, NULL, NULL), PC_EINVAL);
    pc_ring_free(&e);
    pc_ring_free(&r);
}

/*
 * Many random rings, each changed by one member (join, leave, or a new
 * weight), checked slot by slot with check_move(): no key ever moves
 * between two members that are in both rings.
 */
static void test_minimal_movement_random(void **state)
{
    uint64_t rng = 2024;

    (void)state;
    for (int iter = 0; iter < 24; iter++) {
        pc_ring_member_t m[17];
        char names[17][48];
        size_t n = 1 + (size_t)(rng_next(&rng) % 16);
        unsigned replicas = 1 + (unsigned)(rng_next(&rng) % 4);
        bool weighted = rng_next(&rng) % 2;
        int op = (int)(rng_next(&rng) % 3); /* 0 join, 1 leave, 2 re-weight */
        pc_ring_t *a, *b;

        for (size_t i = 0; i <= n; i++) {
            /* distinct: the index is part of the name */
            snprintf(names[i], sizeof names[i], "%02zu-%u", i, (unsigned)(rng_next(&rng) % 997));
            m[i].name = names[i];
            m[i].weight = weighted ? 1 + (uint32_t)(rng_next(&rng) % 20) : 1;
        }
        size_t victim = (size_t)(rng_next(&rng) % n);
        struct diff_ctx c = {0};

        if (op == 0) {
            a = build(m, n, replicas);
            b = build(m, n + 1, replicas);
            c.name = names[n];
        } else if (op == 1) {
            a = build(m, n, replicas);
            m[victim] = m[n - 1]; /* drop the victim */
            b = build(m, n - 1, replicas);
            c.name = names[victim];
        } else {
            a = build(m, n, replicas);
            m[victim].weight = m[victim].weight % 20 + 5;
            b = build(m, n, replicas);
            c.name = names[victim];
        }
        c.a = a;
        c.b = b;
        long got = pc_ring_diff(a, b, check_move, &c);
        assert_int_equal(got, c.calls);
        assert_int_equal(got, count_changed(a, b));
        pc_ring_free(&a);
        pc_ring_free(&b);
    }
}

/* pc_ring_fingerprint_of gives what a built ring's fingerprint is, for
 * any member order, replicas over n, weights; 0 where building fails. */
static void test_fingerprint_of(void **state)
{
    (void)state;
    char names[40][16];
    pc_ring_member_t m[40], rev[40];
    uint64_t seed = 99;
    for (size_t n = 0; n <= 40; n += (n < 4 ? 1 : 9)) {
        for (size_t i = 0; i < n; i++) {
            snprintf(names[i], sizeof names[i], "node-%zu", (i * 7919) % 1000);
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            m[i].name = names[i];
            m[i].weight = 1 + (uint32_t)((seed >> 33) % 5);
            rev[n - 1 - i] = m[i];
        }
        for (unsigned rep = 1; rep <= 5; rep += 2) {
            pc_ring_t *r = NULL;
            assert_int_equal(pc_ring_new(m, n, rep, &r), 0);
            uint64_t want = pc_ring_fingerprint(r);
            assert_int_equal(pc_ring_fingerprint_of(m, n, rep), want);
            assert_int_equal(pc_ring_fingerprint_of(rev, n, rep), want);
            pc_ring_free(&r);
        }
    }
    m[0].name = m[1].name = "twin";
    assert_int_equal(pc_ring_fingerprint_of(m, 2, 1), 0); /* duplicate */
    assert_int_equal(pc_ring_fingerprint_of(m, 1, 0), 0); /* replicas 0 */
    m[0].weight = 0;
    assert_int_equal(pc_ring_fingerprint_of(m, 1, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_golden),
        cmocka_unit_test(test_hash_matches_spec),
        cmocka_unit_test(test_neglog2),
        cmocka_unit_test(test_placement_golden),
        cmocka_unit_test(test_reference_rule),
        cmocka_unit_test(test_order_independence),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_replicas),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_single_and_empty),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_find_and_owned),
        cmocka_unit_test(test_max_members),
        cmocka_unit_test(test_diff_join_leave),
        cmocka_unit_test(test_diff_empty),
        cmocka_unit_test(test_ref_outlives_free),
        cmocka_unit_test(test_minimal_movement_random),
        cmocka_unit_test(test_fingerprint_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
