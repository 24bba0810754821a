/*
 * test_mget_fit.c -- pc_keys_mget_fit, an MGET answer kept within
 * max_frame (pc_keys.h): hits that would push it past become TOO_LARGE
 * (value dropped) one by one, first come first served, while those before
 * them and smaller ones after still fit; entries that are not hits are
 * left alone but set aside their short form; a frame smaller than the
 * fixed part leaves no hit.
 *
 * The header gives no byte counts, so the test measures them through the
 * function itself (the smallest frame a hit fits in, with and without
 * other entries) and checks the rules against those: a hit draws its
 * value's length plus a constant, each entry sets aside the same amount
 * whether it is a hit or not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pc_keys.h"

#define MAXN 16
#define PROBE_MAX 8192u

static uint8_t bytes[4096];

static pc_entry_t hit(uint32_t len)
{
    pc_entry_t e = {.status = PC_ST_OK, .value = {.ptr = bytes, .len = len}, .flags = 7,
                    .version = 42, .ttl_ms = -1};
    return e;
}

static pc_entry_t miss(void)
{
    pc_entry_t e = {.status = PC_ST_NOT_FOUND};
    return e;
}

/* Do `nhits` empty hits all fit, followed by `nmiss` misses, in max_frame? */
static int all_fit(uint32_t nhits, uint32_t nmiss, uint32_t max_frame)
{
    pc_entry_t e[MAXN];
    assert_true(nhits + nmiss <= MAXN);
    for (uint32_t i = 0; i < nhits; i++)
        e[i] = hit(0);
    for (uint32_t i = 0; i < nmiss; i++)
        e[nhits + i] = miss();
    pc_keys_mget_fit(e, nhits + nmiss, max_frame);
    for (uint32_t i = 0; i < nhits; i++)
        if (e[i].status != PC_ST_OK)
            return 0;
    return 1;
}

/* The smallest frame all of them fit in. */
static uint32_t smallest(uint32_t nhits, uint32_t nmiss)
{
    for (uint32_t f = 0; f < PROBE_MAX; f++)
        if (all_fit(nhits, nmiss, f))
            return f;
    fail_msg("%u hits and %u misses fit in no frame below %u", nhits, nmiss, PROBE_MAX);
    return 0;
}

/* Measured: the fixed part of an answer of n entries, and what a hit
 * draws besides its value. */
static uint32_t per_hit, base1;

static uint32_t fixed(uint32_t n)
{
    return smallest(1, n - 1) - per_hit;
}

static void measure(void)
{
    base1 = smallest(1, 0);
    per_hit = smallest(2, 0) - smallest(1, 1); /* answers of as many entries */
}

static void test_measure(void **state)
{
    (void)state;
    measure();
    /* a hit draws at least the fixed parts of an entry (pc_proto.h) */
    assert_true(per_hit >= PC_PROTO_ENTRY_OVERHEAD);
    /* ... and the same for every further hit */
    assert_int_equal(smallest(3, 0) - smallest(2, 1), per_hit);
    assert_int_equal(smallest(5, 3) - smallest(4, 4), per_hit);
    /* the fit is monotonic in the frame */
    for (uint32_t f = base1; f < base1 + 300; f++)
        assert_true(all_fit(1, 0, f));
    assert_false(all_fit(1, 0, base1 - 1));
}

static void test_value_length_counts(void **state)
{
    (void)state;
    measure();
    static const uint32_t lens[] = {1, 2, 100, 1000, 4096};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        pc_entry_t e = hit(lens[i]), keep = e;
        pc_keys_mget_fit(&e, 1, base1 + lens[i]);
        assert_int_equal(e.status, PC_ST_OK);
        assert_memory_equal(&e, &keep, sizeof e); /* a hit that fits is untouched */
        e = hit(lens[i]);
        pc_keys_mget_fit(&e, 1, base1 + lens[i] - 1);
        assert_int_equal(e.status, PC_ST_TOO_LARGE);
        assert_null(e.value.ptr);
        assert_int_equal(e.value.len, 0);
    }
}

static void test_short_forms_set_aside(void **state)
{
    (void)state;
    measure();
    /* every entry, hit or not, sets aside the same short form first */
    uint32_t s = smallest(1, 1) - smallest(1, 0);
    assert_true(s > 0);
    assert_true(s < per_hit);
    for (uint32_t k = 1; k < 10; k++)
        assert_int_equal(smallest(1, k + 1) - smallest(1, k), s);
    /* ... wherever the other entries are: a miss before the hit costs the
     * same as one after it */
    pc_entry_t e[3] = {miss(), miss(), hit(10)};
    pc_keys_mget_fit(e, 3, smallest(1, 2) + 10);
    assert_int_equal(e[2].status, PC_ST_OK);
    e[2] = hit(10);
    pc_keys_mget_fit(e, 3, smallest(1, 2) + 9);
    assert_int_equal(e[2].status, PC_ST_TOO_LARGE);

    /* entries that are not hits are left as they are, and draw nothing
     * beyond their short form, whatever their value says */
    static const uint32_t sts[] = {PC_ST_NOT_FOUND, PC_ST_TOO_LARGE, PC_ST_BACKEND_UNAVAILABLE,
                                   PC_ST_INTERNAL, PC_ST_RETRY};
    pc_entry_t x[6], keep[6];
    for (size_t i = 0; i < 5; i++) {
        x[i] = (pc_entry_t){.status = sts[i], .value = {.ptr = bytes, .len = 4000},
                            .flags = (uint32_t)i, .version = 9, .ttl_ms = 5};
    }
    x[5] = hit(50);
    memcpy(keep, x, sizeof x);
    pc_keys_mget_fit(x, 6, fixed(6) + per_hit + 50);
    assert_memory_equal(x, keep, sizeof x);
    /* and at a frame of nothing, still */
    pc_keys_mget_fit(x, 6, 0);
    assert_memory_equal(x, keep, 5 * sizeof x[0]);
    assert_int_equal(x[5].status, PC_ST_TOO_LARGE);
}

static void test_first_come_first_served(void **state)
{
    (void)state;
    measure();
    /* room for the two small ones: the big one between them goes, the one
     * after it still fits */
    pc_entry_t e[3] = {hit(100), hit(1000), hit(100)};
    pc_keys_mget_fit(e, 3, fixed(3) + 2 * per_hit + 200);
    assert_int_equal(e[0].status, PC_ST_OK);
    assert_int_equal(e[0].value.len, 100);
    assert_int_equal(e[1].status, PC_ST_TOO_LARGE);
    assert_int_equal(e[1].value.len, 0);
    assert_int_equal(e[2].status, PC_ST_OK);
    assert_int_equal(e[2].value.len, 100);

    /* the big one first, in a frame with room for it alone: it stays,
     * the small ones after it go */
    pc_entry_t f[3] = {hit(1000), hit(100), hit(100)};
    pc_keys_mget_fit(f, 3, fixed(3) + per_hit + 1000);
    assert_int_equal(f[0].status, PC_ST_OK);
    assert_int_equal(f[1].status, PC_ST_TOO_LARGE);
    assert_int_equal(f[2].status, PC_ST_TOO_LARGE);

    /* two equal hits, room for one: the first; swap them, still the first */
    static uint8_t other[64];
    pc_entry_t a = hit(60), b = {.status = PC_ST_OK, .value = {.ptr = other, .len = 60}};
    pc_entry_t g[2] = {a, b};
    uint32_t frame = fixed(2) + per_hit + 60 + per_hit + 59; /* one byte short of both */
    pc_keys_mget_fit(g, 2, frame);
    assert_int_equal(g[0].status, PC_ST_OK);
    assert_ptr_equal(g[0].value.ptr, bytes);
    assert_int_equal(g[1].status, PC_ST_TOO_LARGE);
    pc_entry_t h[2] = {b, a};
    pc_keys_mget_fit(h, 2, frame);
    assert_int_equal(h[0].status, PC_ST_OK);
    assert_ptr_equal(h[0].value.ptr, other);
    assert_int_equal(h[1].status, PC_ST_TOO_LARGE);
    /* one byte more: both */
    pc_entry_t k[2] = {a, b};
    pc_keys_mget_fit(k, 2, frame + 1);
    assert_int_equal(k[0].status, PC_ST_OK);
    assert_int_equal(k[1].status, PC_ST_OK);

    /* many: exactly the first that fit stay */
    pc_entry_t m[MAXN];
    for (uint32_t i = 0; i < MAXN; i++)
        m[i] = hit(10);
    pc_keys_mget_fit(m, MAXN, fixed(MAXN) + 5 * (per_hit + 10) + per_hit + 9);
    for (uint32_t i = 0; i < MAXN; i++)
        assert_int_equal(m[i].status, i < 5 ? PC_ST_OK : PC_ST_TOO_LARGE);
}

static void test_frame_below_fixed_part(void **state)
{
    (void)state;
    measure();
    static const uint32_t frames[] = {0, 1, 16};
    for (size_t fi = 0; fi < sizeof frames / sizeof frames[0]; fi++) {
        pc_entry_t e[4] = {hit(0), miss(), hit(1), hit(0)};
        pc_entry_t m = e[1];
        pc_keys_mget_fit(e, 4, frames[fi]);
        assert_int_equal(e[0].status, PC_ST_TOO_LARGE);
        assert_memory_equal(&e[1], &m, sizeof m);
        assert_int_equal(e[2].status, PC_ST_TOO_LARGE);
        assert_int_equal(e[3].status, PC_ST_TOO_LARGE);
    }
    /* one byte under the fixed part of 4 entries, and exactly at it: no
     * room for even an empty hit */
    uint32_t fx = fixed(4);
    assert_true(fx > 0);
    for (uint32_t f = fx - 1; f <= fx; f++) {
        pc_entry_t e[4] = {hit(0), hit(0), miss(), hit(0)};
        pc_keys_mget_fit(e, 4, f);
        assert_int_equal(e[0].status, PC_ST_TOO_LARGE);
        assert_int_equal(e[1].status, PC_ST_TOO_LARGE);
        assert_int_equal(e[2].status, PC_ST_NOT_FOUND);
        assert_int_equal(e[3].status, PC_ST_TOO_LARGE);
    }
    /* no entries: nothing to do, nothing touched */
    pc_keys_mget_fit(NULL, 0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_measure),
        cmocka_unit_test(test_value_length_counts),
        cmocka_unit_test(test_short_forms_set_aside),
        cmocka_unit_test(test_first_come_first_served),
        cmocka_unit_test(test_frame_below_fixed_part),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
