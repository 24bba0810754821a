/*
 * test_hist.c -- pc_hist: which bucket an observation lands in (a bound
 * is inclusive), merging, and the Prometheus series it renders
 * (cumulative buckets ending in +Inf = count, sum in seconds).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pc_hist.h"

static void test_buckets(void **state)
{
    (void)state;
    pc_hist_t h;
    memset(&h, 0, sizeof h);
    pc_hist_add(&h, 0, 1);          /* 0 ns: the first bucket */
    pc_hist_add(&h, 10000, 1);      /* exactly 10 us: still the first */
    pc_hist_add(&h, 10001, 1);      /* just over: the second */
    pc_hist_add(&h, 2500000, 3);    /* 2.5 ms, three times */
    pc_hist_add(&h, 10000000000ull, 1); /* 10 s: the last finite bucket */
    pc_hist_add(&h, 10000000001ull, 1); /* over it: +Inf only */
    assert_int_equal(h.bucket[0], 2);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.bucket[7], 3);
    assert_int_equal(pc_hist_bounds_ns[7], 2500000);
    assert_int_equal(h.bucket[PC_HIST_BOUNDS - 1], 1);
    assert_int_equal(h.bucket[PC_HIST_BOUNDS], 1);
    assert_int_equal(h.count, 8);
    assert_int_equal(h.sum_ns, 0 + 10000 + 10001 + 3 * 2500000 + 10000000000ull + 10000000001ull);
    for (size_t i = 1; i < PC_HIST_BOUNDS; i++)
        assert_true(pc_hist_bounds_ns[i] > pc_hist_bounds_ns[i - 1]);
}

static void test_merge_and_render(void **state)
{
    (void)state;
    pc_hist_t a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    pc_hist_add(&a, 5000, 2);     /* 5 us */
    pc_hist_add(&b, 40000, 1);    /* 40 us */
    pc_hist_add(&b, 20000000000ull, 1); /* 20 s */
    pc_hist_merge(&a, &b);
    assert_int_equal(a.count, 4);

    pc_buf_t out;
    pc_buf_init(&out, 0);
    assert_int_equal(pc_hist_prometheus(&out, "x_seconds", "op=\"get\"", &a), 0);
    assert_int_equal(pc_buf_append(&out, "", 1), 0);
    const char *s = (const char *)out.data;
    assert_non_null(strstr(s, "x_seconds_bucket{op=\"get\",le=\"1e-05\"} 2\n"));
    assert_non_null(strstr(s, "x_seconds_bucket{op=\"get\",le=\"2.5e-05\"} 2\n"));
    assert_non_null(strstr(s, "x_seconds_bucket{op=\"get\",le=\"5e-05\"} 3\n"));
    assert_non_null(strstr(s, "x_seconds_bucket{op=\"get\",le=\"10\"} 3\n"));
    assert_non_null(strstr(s, "x_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(s, "x_seconds_sum{op=\"get\"} 20.000050000\n"));
    assert_non_null(strstr(s, "x_seconds_count{op=\"get\"} 4\n"));
    pc_buf_free(&out);

    /* Without labels: no braces around nothing. */
    pc_buf_init(&out, 0);
    assert_int_equal(pc_hist_prometheus(&out, "y", "", &b), 0);
    assert_int_equal(pc_buf_append(&out, "", 1), 0);
    s = (const char *)out.data;
    assert_non_null(strstr(s, "y_bucket{le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(s, "y_count 2\n"));
    pc_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_merge_and_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
