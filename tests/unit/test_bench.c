/*
 * test_bench.c -- unit tests for client/pc_bench: the histogram behind
 * peercache-bench's percentiles, its key samplers, and its encoders and
 * reply parsers.
 *
 * The figures the tool prints are only as good as these pieces, so each
 * is checked against an independent reference: percentiles against the
 * exact order statistics of the same samples (within the 1% the tool
 * promises), Zipf frequencies against k^-s / H(n, s) computed by direct
 * summation, the peercache encoder against the reference encoder
 * (pc_proto_encode_request) byte for byte, and the parsers against
 * replies made by the reference encoder or written out by hand, cut at
 * every byte. Random cases use fixed seeds, so every run checks the same
 * samples.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_bench.h"
#include "pc_proto.h"

/* ---- histogram ------------------------------------------------------------ */

static pc_bench_hist_t *hist_new(void)
{
    pc_bench_hist_t *h = malloc(sizeof *h);
    assert_non_null(h);
    pc_bench_hist_reset(h);
    return h;
}

static void test_hist_buckets_tile_the_range(void **state)
{
    (void)state;
    assert_int_equal(pc_bench_hist_bucket_low(0), 0);
    for (size_t i = 0; i < PC_BENCH_HIST_BUCKETS; i++) {
        uint64_t lo = pc_bench_hist_bucket_low(i), hi = pc_bench_hist_bucket_high(i);
        assert_true(lo <= hi);
        assert_int_equal(pc_bench_hist_bucket(lo), i);
        assert_int_equal(pc_bench_hist_bucket(hi), i);
        if (i + 1 < PC_BENCH_HIST_BUCKETS)
            assert_true(pc_bench_hist_bucket_low(i + 1) == hi + 1);
        /* the promise behind "within 1%": a bucket is at most 1/128 of its
         * lowest value wide, so its midpoint is within 1/256 of any value
         * in it */
        if (i >= PC_BENCH_HIST_LINEAR)
            assert_true((hi - lo + 1) * 128 <= lo);
        else
            assert_true(lo == hi);
    }
    assert_true(pc_bench_hist_bucket_high(PC_BENCH_HIST_BUCKETS - 1) == UINT64_MAX);
    assert_int_equal(pc_bench_hist_bucket(UINT64_MAX), PC_BENCH_HIST_BUCKETS - 1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact q-th percentile of sorted v[0, n): the ceil(q n / 100)-th. */
static uint64_t exact_pct(const uint64_t *v, size_t n, double q)
{
    size_t r = (size_t)ceil(q / 100.0 * (double)n);
    if (r < 1)
        r = 1;
    return v[r - 1];
}

static void check_percentiles(const uint64_t *samples, size_t n)
{
    pc_bench_hist_t *h = hist_new();
    uint64_t *sorted = malloc(n * sizeof *sorted);
    double sum = 0;
    assert_non_null(sorted);
    for (size_t i = 0; i < n; i++) {
        pc_bench_hist_record(h, samples[i]);
        sorted[i] = samples[i];
        sum += (double)samples[i];
    }
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    static const double qs[] = {1, 10, 50, 90, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        double exact = (double)exact_pct(sorted, n, qs[i]);
        double got = (double)pc_bench_hist_percentile(h, qs[i]);
        if (fabs(got - exact) > 0.01 * exact)
            fail_msg("p%g: %.0f, exact %.0f", qs[i], got, exact);
    }
    assert_true(pc_bench_hist_percentile(h, 100) == sorted[n - 1]);
    assert_true(h->max == sorted[n - 1]);
    assert_true(h->min == sorted[0]);
    assert_true(h->count == n);
    assert_true(fabs(pc_bench_hist_mean(h) - sum / (double)n) < 1e-6 * sum / (double)n);
    free(sorted);
    free(h);
}

static void test_hist_uniform_values(void **state)
{
    (void)state;
    size_t n = 1000000;
    uint64_t *v = malloc(n * sizeof *v);
    assert_non_null(v);
    /* every value from 1,000 to 1,000,999 ns once, shuffled */
    pc_bench_rng_t r;
    pc_bench_rng_seed(&r, 1);
    for (size_t i = 0; i < n; i++)
        v[i] = 1000 + i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = pc_bench_rng_next(&r) % (i + 1);
        uint64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    check_percentiles(v, n);
    free(v);
}

static void test_hist_exponential_and_heavy_tail(void **state)
{
    (void)state;
    size_t n = 1000000;
    uint64_t *v = malloc(n * sizeof *v);
    assert_non_null(v);
    pc_bench_rng_t r;
    pc_bench_rng_seed(&r, 2);
    /* exponential, mean 50 us, plus 20 ns so nothing is 0 */
    for (size_t i = 0; i < n; i++)
        v[i] = 20 + (uint64_t)(-log(1.0 - pc_bench_rng_unit(&r)) * 50000.0);
    check_percentiles(v, n);
    /* Pareto (alpha 1.2, from 10 us): a tail that spans many powers of two */
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)(10000.0 / pow(1.0 - pc_bench_rng_unit(&r), 1.0 / 1.2));
    check_percentiles(v, n);
    free(v);
}

static void test_hist_small_values_and_edges(void **state)
{
    (void)state;
    pc_bench_hist_t *h = hist_new();
    assert_true(pc_bench_hist_percentile(h, 50) == 0);
    assert_true(pc_bench_hist_mean(h) == 0.0);
    for (uint64_t i = 0; i < 200; i++)
        pc_bench_hist_record(h, i);
    /* below 256 every value is its own bucket: exact */
    assert_true(pc_bench_hist_percentile(h, 50) == 99);
    assert_true(pc_bench_hist_percentile(h, 0.1) == 0);
    assert_true(pc_bench_hist_percentile(h, 100) == 199);
    pc_bench_hist_reset(h);
    pc_bench_hist_record(h, 123456789);
    /* one value: every percentile is that value (clamped to min/max) */
    assert_true(pc_bench_hist_percentile(h, 1) == 123456789);
    assert_true(pc_bench_hist_percentile(h, 99.9) == 123456789);
    pc_bench_hist_record(h, UINT64_MAX);
    assert_true(pc_bench_hist_percentile(h, 100) == UINT64_MAX);
    free(h);
}

static void test_hist_merge_equals_one(void **state)
{
    (void)state;
    pc_bench_hist_t *a = hist_new(), *b = hist_new(), *all = hist_new();
    pc_bench_rng_t r;
    pc_bench_rng_seed(&r, 3);
    for (int i = 0; i < 100000; i++) {
        uint64_t v = pc_bench_rng_next(&r) % 10000000;
        pc_bench_hist_record(i % 3 ? a : b, v);
        pc_bench_hist_record(all, v);
    }
    pc_bench_hist_merge(a, b);
    assert_memory_equal(a, all, sizeof *a);
    /* the bare-counts form agrees with the histogram inside [min, max] */
    for (double q = 1; q < 100; q += 7.5)
        assert_true(pc_bench_counts_percentile(all->counts, all->count, q) ==
                    pc_bench_hist_percentile(all, q));
    assert_true(pc_bench_counts_percentile(all->counts, 0, 50) == 0);
    free(a);
    free(b);
    free(all);
}

/* ---- samplers ------------------------------------------------------------- */

/* sum_{i=1}^{n} i^-s, in long double, smallest terms first */
static long double zipf_norm(uint64_t n, double s)
{
    long double h = 0;
    for (uint64_t i = n; i >= 1; i--)
        h += powl((long double)i, -(long double)s);
    return h;
}

static void check_zipf(uint64_t n, double s)
{
    const int samples = 1000000;
    pc_bench_keys_t k;
    pc_bench_rng_t r;
    uint64_t counts[10] = {0}, upper_half = 0;
    assert_int_equal(pc_bench_keys_init(&k, n, s), 0);
    pc_bench_rng_seed(&r, (uint64_t)(s * 1000) + n);
    for (int i = 0; i < samples; i++) {
        uint64_t x = pc_bench_keys_next(&k, &r);
        assert_true(x < n);
        if (x < 10)
            counts[x]++;
        if (x >= n / 2)
            upper_half++;
    }
    long double norm = zipf_norm(n, s);
    for (int i = 0; i < 10; i++) {
        double p = (uint64_t)i < n ? (double)(powl(i + 1.0L, -(long double)s) / norm) : 0.0;
        double f = (double)counts[i] / samples;
        double sigma = sqrt(p * (1 - p) / samples);
        if (fabs(f - p) > 5 * sigma + 1e-9)
            fail_msg("zipf n=%llu s=%g rank %d: frequency %.6f, theory %.6f (5 sigma %.6f)",
                     (unsigned long long)n, s, i + 1, f, p, 5 * sigma);
    }
    /* the tail too: the ranks of the upper half of the key space */
    long double tail = 0;
    for (uint64_t i = n; i > n / 2; i--)
        tail += powl((long double)i, -(long double)s);
    double p = (double)(tail / norm), f = (double)upper_half / samples;
    double sigma = sqrt(p * (1 - p) / samples);
    if (fabs(f - p) > 5 * sigma + 1e-6)
        fail_msg("zipf n=%llu s=%g upper half: frequency %.6f, theory %.6f",
                 (unsigned long long)n, s, f, p);
}

static void test_zipf_matches_theory(void **state)
{
    (void)state;
    check_zipf(100000, 0.5);
    check_zipf(100000, 0.99);
    check_zipf(100000, 1.0); /* the log branch of H */
    check_zipf(100000, 1.2);
    check_zipf(100000, 2.0);
    check_zipf(10, 0.99); /* every rank is among the first 10 */
    check_zipf(1, 0.99);
}

static void test_zipf_ten_million_keys(void **state)
{
    (void)state;
    check_zipf(10000000, 0.99);
}

static void test_uniform_keys(void **state)
{
    (void)state;
    const uint64_t n = 100000;
    const int samples = 1000000;
    pc_bench_keys_t k;
    pc_bench_rng_t r;
    uint64_t bins[10] = {0};
    double sum = 0;
    assert_int_equal(pc_bench_keys_init(&k, n, 0.0), 0);
    pc_bench_rng_seed(&r, 7);
    for (int i = 0; i < samples; i++) {
        uint64_t x = pc_bench_keys_next(&k, &r);
        assert_true(x < n);
        sum += (double)x;
        bins[x * 10 / n]++;
    }
    double mean = sum / samples, want = (double)(n - 1) / 2;
    /* the mean's standard deviation is n / sqrt(12 samples) = 29 */
    assert_true(fabs(mean - want) < 5 * (double)n / sqrt(12.0 * samples));
    for (int i = 0; i < 10; i++) {
        double sigma = sqrt(samples * 0.1 * 0.9);
        assert_true(fabs((double)bins[i] - samples * 0.1) < 5 * sigma);
    }
}

static void test_sampler_rejects_bad_parameters(void **state)
{
    (void)state;
    pc_bench_keys_t k;
    assert_int_equal(pc_bench_keys_init(&k, 0, 0.99), PC_EINVAL);
    assert_int_equal(pc_bench_keys_init(&k, 10, -0.5), PC_EINVAL);
    assert_int_equal(pc_bench_keys_init(&k, 10, 10.5), PC_EINVAL);
    assert_int_equal(pc_bench_keys_init(&k, 10, NAN), PC_EINVAL);
    assert_int_equal(pc_bench_keys_init(&k, ((uint64_t)1 << 53) + 1, 1.0), PC_EINVAL);
    assert_int_equal(pc_bench_keys_init(&k, 10, 10.0), 0);
}

static void test_read_write_mix(void **state)
{
    (void)state;
    pc_bench_rng_t r;
    pc_bench_rng_seed(&r, 9);
    uint64_t thr = pc_bench_mix_threshold(7, 3);
    int gets = 0, samples = 1000000;
    for (int i = 0; i < samples; i++)
        gets += pc_bench_mix_is_get(thr, &r);
    assert_true(fabs(gets - 0.7 * samples) < 5 * sqrt(samples * 0.7 * 0.3));
    thr = pc_bench_mix_threshold(1, 0);
    for (int i = 0; i < 10000; i++)
        assert_true(pc_bench_mix_is_get(thr, &r));
    thr = pc_bench_mix_threshold(0, 1);
    for (int i = 0; i < 10000; i++)
        assert_false(pc_bench_mix_is_get(thr, &r));
}

static void test_rng_seeds_differ(void **state)
{
    (void)state;
    pc_bench_rng_t a, b;
    pc_bench_rng_seed(&a, 0);
    pc_bench_rng_seed(&b, 1);
    assert_true(a.s != 0 && b.s != 0);
    assert_true(pc_bench_rng_next(&a) != pc_bench_rng_next(&b));
    for (int i = 0; i < 1000; i++) {
        double u = pc_bench_rng_unit(&a);
        assert_true(u >= 0.0 && u < 1.0);
    }
}

static void test_key_format(void **state)
{
    (void)state;
    assert_int_equal(pc_bench_key_width(1), 1);
    assert_int_equal(pc_bench_key_width(10), 1);
    assert_int_equal(pc_bench_key_width(11), 2);
    assert_int_equal(pc_bench_key_width(100000), 5);
    assert_int_equal(pc_bench_key_width(100001), 6);
    assert_int_equal(pc_bench_key_width(10000000), 7);
    static const uint64_t idx[] = {0, 7, 42, 99999};
    for (size_t i = 0; i < 4; i++) {
        char got[PC_BENCH_KEY_MAX], want[64];
        size_t n = pc_bench_key_format(got, idx[i], 5);
        snprintf(want, sizeof want, "key:%05llu", (unsigned long long)idx[i]);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);
    }
}

/* ---- encoders ------------------------------------------------------------- */

static void test_peercache_encoder_matches_reference(void **state)
{
    (void)state;
    static const uint64_t ids[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295ULL,
                                   4294967296ULL, UINT64_MAX};
    static const size_t vlens[] = {0, 5, 255, 256, 65535, 65536, 100000};
    size_t vmax = 100000;
    uint8_t *val = malloc(vmax), *mine = malloc(pc_bench_request_max(12, vmax));
    pc_buf_t ref;
    assert_non_null(val);
    assert_non_null(mine);
    for (size_t i = 0; i < vmax; i++)
        val[i] = (uint8_t)(i * 7);
    pc_buf_init(&ref, 0);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        pc_request_t get = {.op = PC_OP_GET, .id = ids[i], .key = {(const uint8_t *)"key:00042", 9}};
        pc_buf_reset(&ref);
        assert_int_equal(pc_proto_encode_request(&ref, &get), 0);
        size_t n = pc_bench_encode(PC_BENCH_PEERCACHE, PC_BENCH_GET, mine, ids[i], "key:00042", 9,
                                   NULL, 0);
        assert_int_equal(n, ref.len);
        assert_memory_equal(mine, ref.data, n);

        for (size_t j = 0; j < sizeof vlens / sizeof vlens[0]; j++) {
            pc_request_t set = {.op = PC_OP_SET, .id = ids[i],
                                .key = {(const uint8_t *)"key:00042", 9},
                                .value = {val, (uint32_t)vlens[j]}};
            pc_buf_reset(&ref);
            assert_int_equal(pc_proto_encode_request(&ref, &set), 0);
            n = pc_bench_encode(PC_BENCH_PEERCACHE, PC_BENCH_SET, mine, ids[i], "key:00042", 9,
                                val, vlens[j]);
            assert_int_equal(n, ref.len);
            assert_true(n <= pc_bench_request_max(9, vlens[j]));
            assert_memory_equal(mine, ref.data, n);
        }

        pc_request_t hello = {.op = PC_OP_HELLO, .id = ids[i], .proto_version = 1,
                              .token = {(const uint8_t *)"s3cret", 6}};
        pc_buf_reset(&ref);
        assert_int_equal(pc_proto_encode_request(&ref, &hello), 0);
        n = pc_bench_encode(PC_BENCH_PEERCACHE, PC_BENCH_HELLO, mine, ids[i], "s3cret", 6, NULL, 0);
        assert_int_equal(n, ref.len);
        assert_memory_equal(mine, ref.data, n);
        hello.token.len = 0;
        hello.token.ptr = NULL;
        pc_buf_reset(&ref);
        assert_int_equal(pc_proto_encode_request(&ref, &hello), 0);
        n = pc_bench_encode(PC_BENCH_PEERCACHE, PC_BENCH_HELLO, mine, ids[i], NULL, 0, NULL, 0);
        assert_int_equal(n, ref.len);
        assert_memory_equal(mine, ref.data, n);
    }
    pc_buf_free(&ref);
    free(val);
    free(mine);
}

static void check_text(enum pc_bench_proto p, enum pc_bench_op op, const char *val,
                       const char *want)
{
    uint8_t out[256];
    size_t n = pc_bench_encode(p, op, out, 99, "key:7", 5, val, val ? strlen(val) : 0);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_text_encoders(void **state)
{
    (void)state;
    check_text(PC_BENCH_REDIS, PC_BENCH_GET, NULL, "*2\r\n$3\r\nGET\r\n$5\r\nkey:7\r\n");
    check_text(PC_BENCH_REDIS, PC_BENCH_SET, "hello",
               "*3\r\n$3\r\nSET\r\n$5\r\nkey:7\r\n$5\r\nhello\r\n");
    check_text(PC_BENCH_REDIS, PC_BENCH_SET, "", "*3\r\n$3\r\nSET\r\n$5\r\nkey:7\r\n$0\r\n\r\n");
    check_text(PC_BENCH_MEMCACHE, PC_BENCH_GET, NULL, "get key:7\r\n");
    check_text(PC_BENCH_MEMCACHE, PC_BENCH_SET, "hello", "set key:7 0 0 5\r\nhello\r\n");
    uint8_t out[64];
    assert_int_equal(pc_bench_encode(PC_BENCH_REDIS, PC_BENCH_HELLO, out, 1, "t", 1, NULL, 0), 0);
    assert_int_equal(pc_bench_encode(PC_BENCH_MEMCACHE, PC_BENCH_HELLO, out, 1, "t", 1, NULL, 0),
                     0);
}

/* ---- parsers -------------------------------------------------------------- */

/*
 * Parses a whole reply: every proper prefix must say "need more", the
 * whole must give one reply of exactly its length, and the same with a
 * second reply behind it.
 */
static pc_bench_reply_t parse_whole(enum pc_bench_proto p, enum pc_bench_op op,
                                    const uint8_t *b, size_t n)
{
    pc_bench_reply_t r;
    size_t used = 0;
    for (size_t cut = 0; cut < n; cut++) {
        int rc = pc_bench_parse_reply(p, op, b, cut, 1 << 20, &used, &r);
        if (rc != 0)
            fail_msg("prefix of %zu of %zu bytes: %d", cut, n, rc);
    }
    uint8_t *two = malloc(2 * n);
    assert_non_null(two);
    memcpy(two, b, n);
    memcpy(two + n, b, n);
    assert_int_equal(pc_bench_parse_reply(p, op, two, 2 * n, 1 << 20, &used, &r), 1);
    assert_int_equal(used, n);
    free(two);
    assert_int_equal(pc_bench_parse_reply(p, op, b, n, 1 << 20, &used, &r), 1);
    assert_int_equal(used, n);
    return r;
}

static int parse_rc(enum pc_bench_proto p, enum pc_bench_op op, const char *s, size_t max)
{
    pc_bench_reply_t r;
    size_t used;
    return pc_bench_parse_reply(p, op, (const uint8_t *)s, strlen(s), max, &used, &r);
}

static pc_bench_reply_t parse_pc(enum pc_bench_op op, const pc_response_t *resp)
{
    pc_buf_t b;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_proto_encode_response(&b, resp), 0);
    pc_bench_reply_t r = parse_whole(PC_BENCH_PEERCACHE, op, b.data, b.len);
    pc_buf_free(&b);
    return r;
}

static int parse_pc_rc(enum pc_bench_op op, const pc_response_t *resp, size_t max)
{
    pc_buf_t b;
    pc_bench_reply_t r;
    size_t used;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_proto_encode_response(&b, resp), 0);
    int rc = pc_bench_parse_reply(PC_BENCH_PEERCACHE, op, b.data, b.len, max, &used, &r);
    pc_buf_free(&b);
    return rc;
}

static void test_parse_peercache(void **state)
{
    (void)state;
    static uint8_t val[300];
    pc_response_t hit = {.op = PC_OP_GET, .id = 300, .status = PC_ST_OK,
                         .entry = {.value = {val, sizeof val}, .version = 5, .ttl_ms = -1},
                         .ring_fp = 0x1234567890ULL};
    pc_bench_reply_t r = parse_pc(PC_BENCH_GET, &hit);
    assert_int_equal(r.result, PC_BENCH_HIT);
    assert_int_equal(r.id, 300);
    assert_int_equal(r.status, 0);

    pc_response_t miss = {.op = PC_OP_GET, .id = 70000, .status = PC_ST_NOT_FOUND};
    r = parse_pc(PC_BENCH_GET, &miss);
    assert_int_equal(r.result, PC_BENCH_MISS);
    assert_int_equal(r.id, 70000);

    pc_response_t stored = {.op = PC_OP_SET, .id = UINT64_MAX, .status = PC_ST_OK,
                            .version = 112233445566ULL};
    r = parse_pc(PC_BENCH_SET, &stored);
    assert_int_equal(r.result, PC_BENCH_OK);
    assert_true(r.id == UINT64_MAX);

    pc_response_t busy = {.op = PC_OP_SET, .id = 4, .status = PC_ST_BUSY};
    r = parse_pc(PC_BENCH_SET, &busy);
    assert_int_equal(r.result, PC_BENCH_FAIL);
    assert_int_equal(r.status, PC_ST_BUSY);
    /* NOT_FOUND is a failure for anything but GET */
    pc_response_t nf = {.op = PC_OP_SET, .id = 4, .status = PC_ST_NOT_FOUND};
    assert_int_equal(parse_pc(PC_BENCH_SET, &nf).result, PC_BENCH_FAIL);

    pc_response_t hello = {.op = PC_OP_HELLO, .id = 1, .status = PC_ST_OK, .proto_version = 1,
                           .node_name = {(const uint8_t *)"n1", 2},
                           .server_version = {(const uint8_t *)"0.1.0", 5}};
    assert_int_equal(parse_pc(PC_BENCH_HELLO, &hello).result, PC_BENCH_OK);
    pc_response_t denied = {.op = PC_OP_HELLO, .id = 1, .status = PC_ST_AUTH_REQUIRED};
    assert_int_equal(parse_pc(PC_BENCH_HELLO, &denied).result, PC_BENCH_FAIL);

    /* a reply to another op, the connection-level error frame, a frame
     * over the caller's limit */
    assert_int_equal(parse_pc_rc(PC_BENCH_GET, &stored, 1 << 20), PC_EPROTO);
    pc_response_t conn_err = {.op = 0, .id = 0, .status = PC_ST_BUSY,
                              .message = {(const uint8_t *)"too many connections", 20}};
    assert_int_equal(parse_pc_rc(PC_BENCH_GET, &conn_err, 1 << 20), PC_EPROTO);
    assert_int_equal(parse_pc_rc(PC_BENCH_GET, &hit, 100), PC_ETOOBIG);

    /* hand-made: length 0; not an array; an array of 2; a negative id */
    static const uint8_t zero[] = {0, 0, 0, 0};
    static const uint8_t notarr[] = {0, 0, 0, 3, 0x03, 0x01, 0x00};
    static const uint8_t short_arr[] = {0, 0, 0, 3, 0x92, 0x03, 0x01};
    static const uint8_t neg_id[] = {0, 0, 0, 5, 0x93, 0x03, 0xd0, 0xff, 0x00};
    static const uint8_t i8_id[] = {0, 0, 0, 5, 0x93, 0x03, 0xd0, 0x05, 0x01};
    static const uint8_t arr16[] = {0, 0, 0, 6, 0xdc, 0x00, 0x03, 0x05, 0x09, 0x00};
    const struct {
        const uint8_t *b;
        size_t n;
        int rc;
    } cases[] = {{zero, sizeof zero, PC_EPROTO},        {notarr, sizeof notarr, PC_EPROTO},
                 {short_arr, sizeof short_arr, PC_EPROTO}, {neg_id, sizeof neg_id, PC_EPROTO},
                 {i8_id, sizeof i8_id, 1},              {arr16, sizeof arr16, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t used;
        enum pc_bench_op op = cases[i].b == arr16 ? PC_BENCH_SET : PC_BENCH_GET;
        assert_int_equal(pc_bench_parse_reply(PC_BENCH_PEERCACHE, op, cases[i].b, cases[i].n,
                                              1 << 20, &used, &r),
                         cases[i].rc);
    }
    r = parse_whole(PC_BENCH_PEERCACHE, PC_BENCH_GET, i8_id, sizeof i8_id);
    assert_int_equal(r.result, PC_BENCH_MISS);
    assert_int_equal(r.id, 5);
}

static pc_bench_reply_t parse_text(enum pc_bench_proto p, enum pc_bench_op op, const char *s)
{
    return parse_whole(p, op, (const uint8_t *)s, strlen(s));
}

static void test_parse_redis(void **state)
{
    (void)state;
    const enum pc_bench_proto R = PC_BENCH_REDIS;
    assert_int_equal(parse_text(R, PC_BENCH_SET, "+OK\r\n").result, PC_BENCH_OK);
    assert_int_equal(parse_text(R, PC_BENCH_GET, "$-1\r\n").result, PC_BENCH_MISS);
    assert_int_equal(parse_text(R, PC_BENCH_GET, "$5\r\nhel\ro\r\n").result, PC_BENCH_HIT);
    assert_int_equal(parse_text(R, PC_BENCH_GET, "$0\r\n\r\n").result, PC_BENCH_HIT);
    assert_int_equal(parse_text(R, PC_BENCH_GET, "-ERR wrong\r\n").result, PC_BENCH_FAIL);
    assert_int_equal(parse_text(R, PC_BENCH_SET, "-OOM command not allowed\r\n").result,
                     PC_BENCH_FAIL);
    assert_int_equal(parse_text(R, PC_BENCH_SET, "$-1\r\n").result, PC_BENCH_FAIL);

    assert_int_equal(parse_rc(R, PC_BENCH_GET, ":1\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(R, PC_BENCH_GET, "*1\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(R, PC_BENCH_GET, "+OK\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(R, PC_BENCH_SET, "$2\r\nab\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(R, PC_BENCH_GET, "$2\r\nabcd", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(R, PC_BENCH_GET, "$x\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(R, PC_BENCH_GET, "$-2\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(R, PC_BENCH_GET, "$2000\r\n", 1000), PC_ETOOBIG);
    assert_int_equal(parse_rc(R, PC_BENCH_HELLO, "+OK\r\n", 1000), PC_EPROTO);
    /* a line that never ends */
    char *junk = malloc(5000);
    assert_non_null(junk);
    memset(junk, 'x', 4999);
    junk[0] = '-';
    junk[4999] = '\0';
    assert_int_equal(parse_rc(R, PC_BENCH_GET, junk, 1 << 20), PC_EPROTO);
    free(junk);
}

static void test_parse_memcache(void **state)
{
    (void)state;
    const enum pc_bench_proto M = PC_BENCH_MEMCACHE;
    assert_int_equal(parse_text(M, PC_BENCH_SET, "STORED\r\n").result, PC_BENCH_OK);
    assert_int_equal(parse_text(M, PC_BENCH_SET, "NOT_STORED\r\n").result, PC_BENCH_FAIL);
    assert_int_equal(parse_text(M, PC_BENCH_SET, "SERVER_ERROR out of memory\r\n").result,
                     PC_BENCH_FAIL);
    assert_int_equal(parse_text(M, PC_BENCH_GET, "END\r\n").result, PC_BENCH_MISS);
    assert_int_equal(parse_text(M, PC_BENCH_GET, "VALUE key:7 0 5\r\nhe\r\no\r\nEND\r\n").result,
                     PC_BENCH_HIT);
    assert_int_equal(parse_text(M, PC_BENCH_GET, "VALUE key:7 12 0 99\r\n\r\nEND\r\n").result,
                     PC_BENCH_HIT);
    assert_int_equal(parse_text(M, PC_BENCH_GET, "CLIENT_ERROR bad command\r\n").result,
                     PC_BENCH_FAIL);
    assert_int_equal(parse_text(M, PC_BENCH_GET, "ERROR\r\n").result, PC_BENCH_FAIL);

    assert_int_equal(parse_rc(M, PC_BENCH_GET, "STORED\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(M, PC_BENCH_SET, "END\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(M, PC_BENCH_GET, "VALUE key:7 0\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(M, PC_BENCH_GET, "VALUE key:7 0 x\r\n", 1 << 20), PC_EPROTO);
    assert_int_equal(parse_rc(M, PC_BENCH_GET, "VALUE key:7 0 2\r\nabXXEND\r\n", 1 << 20),
                     PC_EPROTO);
    assert_int_equal(parse_rc(M, PC_BENCH_GET, "VALUE key:7 0 2\r\nab\r\nENX\r\n", 1 << 20),
                     PC_EPROTO);
    assert_int_equal(parse_rc(M, PC_BENCH_GET, "VALUE key:7 0 5000\r\n", 1000), PC_ETOOBIG);
    assert_int_equal(parse_rc(M, PC_BENCH_HELLO, "STORED\r\n", 1000), PC_EPROTO);
}

/* --server-pid reads utime + stime (fields 14, 15) of /proc/PID/stat,
 * counted after the last ')': the command name may hold both. */
static void test_proc_cpu_ticks(void **state)
{
    (void)state;
    uint64_t t = 0;
    const char *plain = "4242 (peercached) S 1 4242 4242 0 -1 4194560 1520 0 0 0 731 269 0 0 "
                        "20 0 3 0 123 45678 910 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 "
                        "17 0 0 0 0 0 0\n";
    assert_int_equal(pc_bench_proc_cpu_ticks(plain, &t), 0);
    assert_int_equal(t, 731 + 269);
    const char *odd = "7 (a) b (c) d) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
    assert_int_equal(pc_bench_proc_cpu_ticks(odd, &t), 0);
    assert_int_equal(t, 11);
    uint64_t keep = 99;
    assert_int_equal(pc_bench_proc_cpu_ticks("", &keep), PC_EPROTO);
    assert_int_equal(pc_bench_proc_cpu_ticks("12 (x) S 1 2 3", &keep), PC_EPROTO); /* short */
    assert_int_equal(pc_bench_proc_cpu_ticks("12 (x) S 1 2 3 4 5 6 7 8 9 10 x 12 13", &keep),
                     PC_EPROTO); /* not a number */
    assert_int_equal(pc_bench_proc_cpu_ticks("12 (x)S 1", &keep), PC_EPROTO);
    assert_int_equal(pc_bench_proc_cpu_ticks("no parenthesis at all", &keep), PC_EPROTO);
    assert_int_equal(keep, 99);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets_tile_the_range),
        cmocka_unit_test(test_hist_uniform_values),
        cmocka_unit_test(test_hist_exponential_and_heavy_tail),
        cmocka_unit_test(test_hist_small_values_and_edges),
        cmocka_unit_test(test_hist_merge_equals_one),
        cmocka_unit_test(test_zipf_matches_theory),
        cmocka_unit_test(test_zipf_ten_million_keys),
        cmocka_unit_test(test_uniform_keys),
        cmocka_unit_test(test_sampler_rejects_bad_parameters),
        cmocka_unit_test(test_read_write_mix),
        cmocka_unit_test(test_rng_seeds_differ),
        cmocka_unit_test(test_key_format),
        cmocka_unit_test(test_peercache_encoder_matches_reference),
        cmocka_unit_test(test_text_encoders),
        cmocka_unit_test(test_parse_peercache),
        cmocka_unit_test(test_parse_redis),
        cmocka_unit_test(test_parse_memcache),
        cmocka_unit_test(test_proc_cpu_ticks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
