/*
 * test_top.c -- pc_top: what `peercache-cli top` computes from two STATS
 * readings (rates, hit ratio, the 99th percentile's bucket, how busy the
 * loops were) and the frame it prints.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pc_top.h"

static const char *const lat_names[PC_TOP_LAT] = {
    "lat_le_10us", "lat_le_25us", "lat_le_50us", "lat_le_100us", "lat_le_250us",
    "lat_le_500us", "lat_le_1ms", "lat_le_2500us", "lat_le_5ms", "lat_le_10ms",
    "lat_le_25ms", "lat_le_50ms", "lat_le_100ms", "lat_le_250ms", "lat_le_500ms",
    "lat_le_1s", "lat_le_2500ms", "lat_le_5s", "lat_le_10s", "lat_le_inf"};

/* A reading: `requests`, hits, misses, and `per_bucket[i]` operations
 * answered in bucket i (cumulated here as the node does). */
static void reading_busy(pc_top_sample_t *s, uint64_t at, int64_t requests, int64_t hits,
                         int64_t misses, const int64_t per_bucket[PC_TOP_LAT], int64_t busy_us)
{
    pc_stat_entry_t st[10 + PC_TOP_LAT];
    size_t n = 0;
    if (busy_us >= 0) {
        st[n++] = (pc_stat_entry_t){"threads", 2};
        st[n++] = (pc_stat_entry_t){"loop_busy_us", busy_us};
    }
    st[n++] = (pc_stat_entry_t){"requests", requests};
    st[n++] = (pc_stat_entry_t){"hits", hits};
    st[n++] = (pc_stat_entry_t){"misses", misses};
    st[n++] = (pc_stat_entry_t){"bytes", 3 << 20};
    st[n++] = (pc_stat_entry_t){"memory_limit", 64 << 20};
    st[n++] = (pc_stat_entry_t){"connections", 7};
    st[n++] = (pc_stat_entry_t){"backend_enabled", 1};
    st[n++] = (pc_stat_entry_t){"backend_up", 0};
    int64_t cum = 0;
    for (size_t i = 0; i < PC_TOP_LAT; i++) {
        cum += per_bucket[i];
        st[n++] = (pc_stat_entry_t){(char *)lat_names[i], cum};
    }
    pc_top_sample_from_stats(st, n, at, s);
}

/* A reading from a node that does not send loop_busy_us. */
static void reading(pc_top_sample_t *s, uint64_t at, int64_t requests, int64_t hits,
                    int64_t misses, const int64_t per_bucket[PC_TOP_LAT])
{
    reading_busy(s, at, requests, hits, misses, per_bucket, -1);
}

static void test_rates_and_p99(void **state)
{
    (void)state;
    int64_t b0[PC_TOP_LAT] = {0}, b1[PC_TOP_LAT] = {0};
    b0[0] = 100;
    b1[0] = 100 + 980; /* 980 within 10 us */
    b1[3] = 15;        /* 15 within 100 us: 995 of 1000 */
    b1[7] = 5;         /* 5 within 2.5 ms */
    pc_top_sample_t a, b;
    reading(&a, 1000, 5000, 10, 0, b0);
    reading(&b, 3000, 7000, 10 + 900, 100, b1);
    assert_true(b.ok && b.has_lat && !b.backend_up && b.backend_enabled);
    assert_int_equal(b.lat_us[7], 2500);
    assert_int_equal(b.lat_us[15], 1000000);
    pc_top_row_t r;
    pc_top_row(&a, &b, &r);
    assert_true(r.rates);
    assert_true(r.ops_per_s > 999.9 && r.ops_per_s < 1000.1); /* 2000 in 2 s */
    assert_true(r.hit_pct > 89.9 && r.hit_pct < 90.1);
    assert_int_equal(r.p99_us, 100); /* 995 of 1000 within 100 us */
    assert_true(r.busy_pct < 0);     /* not sent */

    /* Busy: 2 loops worked 1.5 s of their 4 s over the 2 s. */
    reading_busy(&a, 1000, 5000, 10, 0, b0, 700000);
    reading_busy(&b, 3000, 7000, 10 + 900, 100, b1, 700000 + 1500000);
    pc_top_row(&a, &b, &r);
    assert_true(r.busy_pct > 37.49 && r.busy_pct < 37.51);
    /* Sent by one reading only: not shown. */
    reading(&a, 1000, 5000, 10, 0, b0);
    pc_top_row(&a, &b, &r);
    assert_true(r.busy_pct < 0);

    /* One reading only, or a restart (counters went back): no rates. */
    pc_top_row(NULL, &b, &r);
    assert_false(r.rates);
    pc_top_row(&b, &a, &r);
    assert_false(r.rates);

    /* Nothing timed, no reads: shown as such. */
    pc_top_sample_t c;
    reading(&c, 4000, 7000, 910, 100, b1);
    pc_top_row(&b, &c, &r);
    assert_true(r.rates);
    assert_true(r.hit_pct < 0);
    assert_int_equal(r.p99_us, -1);
}

static void test_frame(void **state)
{
    (void)state;
    int64_t b0[PC_TOP_LAT] = {0}, b1[PC_TOP_LAT] = {0};
    b1[6] = 10; /* all within 1 ms */
    pc_top_node_t nodes[2];
    memset(nodes, 0, sizeof nodes);
    nodes[0].addr = "127.0.0.1:7400";
    nodes[0].state = "alive";
    pc_top_sample_t prev;
    reading_busy(&prev, 0, 0, 0, 0, b0, 0);
    reading_busy(&nodes[0].cur, 1000, 1234, 9, 1, b1, 300000); /* 2 loops, 0.3 s of 2 s */
    pc_top_row(&prev, &nodes[0].cur, &nodes[0].row);
    nodes[1].addr = "127.0.0.1:7401";
    nodes[1].state = "suspect";
    nodes[1].error = "no reply within 900 ms";
    pc_buf_t out;
    pc_buf_init(&out, 0);
    assert_int_equal(pc_top_format(&out, nodes, 2, 0xabcdef, "12:00:00", 0), 0);
    assert_int_equal(pc_buf_append(&out, "", 1), 0);
    const char *s = (const char *)out.data;
    assert_non_null(strstr(s, "peercache top: 2 members, ring 0000000000abcdef, 12:00:00"));
    assert_non_null(strstr(s, "127.0.0.1:7400         alive         1234   90.0      3.0M/64.0M      7 "
                              "DOWN      <=1ms    15\n"));
    assert_non_null(strstr(s, "NODE                   STATE        OPS/S   HIT%          MEMORY  CONNS "
                              "REDIS       P99 BUSY%\n"));
    assert_non_null(strstr(s, "127.0.0.1:7401         suspect  (no answer: no reply within 900 ms)\n"));
    pc_buf_free(&out);

    /* Cut to the terminal's width. */
    pc_buf_init(&out, 0);
    assert_int_equal(pc_top_format(&out, nodes, 1, 1, "12:00:00", 20), 0);
    assert_int_equal(pc_buf_append(&out, "", 1), 0);
    for (const char *line = (const char *)out.data; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_true(nl - line <= 20);
        line = nl + 1;
    }
    pc_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates_and_p99),
        cmocka_unit_test(test_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
