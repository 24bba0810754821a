/*
 * pc_bench.h -- the pure parts of peercache-bench: a latency histogram,
 * the key and operation samplers, and the request encoders and reply
 * parsers of the three protocols it speaks (peercache, Redis RESP,
 * memcached text).
 *
 * Pure: no I/O, no clocks, no threads, no allocation. The load generator
 * (peercache_bench.c) owns sockets and time and calls into this for
 * everything it does per request, so what decides the figures can be
 * tested alone (tests/unit/test_bench.c).
 *
 * Thread rules: every object here belongs to one thread at a time;
 * functions without an object are reentrant.
 */
#ifndef PC_BENCH_H
#define PC_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "pc_error.h"

/* ---- latency histogram ------------------------------------------------ */

/*
 * Log-linear buckets, in the manner of HdrHistogram: values below
 * PC_BENCH_HIST_LINEAR (256) each have a bucket of their own; above, every
 * power of two [2^k, 2^(k+1)) is cut into PC_BENCH_HIST_SUB (128) equal
 * buckets, so a bucket is at most 1/128 of its lowest value wide. A value
 * is reported as its bucket's midpoint: at most 1/256 (0.39%) away from
 * any value recorded in that bucket. The whole uint64_t range is covered
 * (7,424 buckets, 59 KiB), so nothing is ever clipped. Units are the
 * caller's (peercache-bench records nanoseconds).
 */
#define PC_BENCH_HIST_SUB_BITS 7
#define PC_BENCH_HIST_SUB (1u << PC_BENCH_HIST_SUB_BITS)
#define PC_BENCH_HIST_LINEAR (2u * PC_BENCH_HIST_SUB)
#define PC_BENCH_HIST_BUCKETS (PC_BENCH_HIST_LINEAR + (64u - 8u) * PC_BENCH_HIST_SUB)

typedef struct pc_bench_hist {
    uint64_t count; /* values recorded */
    uint64_t sum;   /* their sum (wraps past 2^64: about 580 years of ns) */
    uint64_t min;   /* exact; UINT64_MAX when empty */
    uint64_t max;   /* exact; 0 when empty */
    uint64_t counts[PC_BENCH_HIST_BUCKETS];
} pc_bench_hist_t;

/* Empties h (also the way to initialise one). */
void pc_bench_hist_reset(pc_bench_hist_t *h);
void pc_bench_hist_record(pc_bench_hist_t *h, uint64_t v);
/* Adds every value of from to into. */
void pc_bench_hist_merge(pc_bench_hist_t *into, const pc_bench_hist_t *from);

/* The bucket of v, in [0, PC_BENCH_HIST_BUCKETS); and the lowest and
 * highest value a bucket holds. Buckets are in value order. */
size_t pc_bench_hist_bucket(uint64_t v);
uint64_t pc_bench_hist_bucket_low(size_t i);
uint64_t pc_bench_hist_bucket_high(size_t i);

/*
 * The q-th percentile (0 < q <= 100): the midpoint of the bucket that holds
 * the ceil(q/100 * count)-th smallest value, kept within [min, max]. q = 100
 * is the exact max. 0 for an empty histogram.
 */
uint64_t pc_bench_hist_percentile(const pc_bench_hist_t *h, double q);
/* Exact mean (sum / count); 0 when empty. */
double pc_bench_hist_mean(const pc_bench_hist_t *h);

/*
 * The same percentile from bare bucket counts (total = their sum), for
 * counts kept elsewhere (the live per-second view); not clamped to a min
 * or max, which bare counts do not know.
 */
uint64_t pc_bench_counts_percentile(const uint64_t *counts, uint64_t total, double q);

/* ---- random numbers and samplers ------------------------------------------ */

/* xorshift64*: fast, 64-bit state, good enough for choosing keys. */
typedef struct pc_bench_rng {
    uint64_t s; /* never 0 */
} pc_bench_rng_t;

/* Any seed (0 too) gives a usable, distinct stream. */
void pc_bench_rng_seed(pc_bench_rng_t *r, uint64_t seed);
uint64_t pc_bench_rng_next(pc_bench_rng_t *r);
/* Uniform in [0, 1), 53 bits. */
double pc_bench_rng_unit(pc_bench_rng_t *r);

/*
 * A key sampler over n keys, indexes 0..n-1. s = 0 is uniform; s > 0 is
 * Zipf with exponent s: index i (rank i+1) is drawn with probability
 * proportional to 1/(i+1)^s, so index 0 is the hottest key.
 *
 * Zipf uses rejection-inversion (Hoermann and Derflinger, 1996): constant
 * time and no table whatever n is, for any s > 0 (s = 1 included); a
 * sample costs a few exp/log calls and is accepted at the first try most
 * of the time.
 */
typedef struct pc_bench_keys {
    uint64_t n;
    double s;
    double h_x1;     /* H(1.5) - 1 */
    double h_n;      /* H(n + 0.5) */
    double s_accept; /* squeeze: k - x below it is accepted at once */
} pc_bench_keys_t;

#define PC_BENCH_ZIPF_MAX_S 10.0

/* 0, or PC_EINVAL for n = 0, n > 2^53, or s outside {0} U (0, 10]. */
int pc_bench_keys_init(pc_bench_keys_t *k, uint64_t n, double s);
uint64_t pc_bench_keys_next(const pc_bench_keys_t *k, pc_bench_rng_t *r);

/*
 * Read/write mix: reads:writes, e.g. 7:3. pc_bench_mix_threshold gives the
 * number pc_bench_mix_is_get compares against (reads + writes > 0).
 */
uint64_t pc_bench_mix_threshold(unsigned reads, unsigned writes);
int pc_bench_mix_is_get(uint64_t threshold, pc_bench_rng_t *r);

/*
 * Keys are "key:" and the index in decimal, zero-padded to the width of
 * the largest index, so every key has the same length. _width gives that
 * width for n keys; _format writes the key (not NUL-terminated) to out,
 * which holds 4 + width bytes, and returns that length. i < 10^width.
 */
#define PC_BENCH_KEY_MAX 24 /* "key:" + 20 digits */
unsigned pc_bench_key_width(uint64_t n);
size_t pc_bench_key_format(char *out, uint64_t i, unsigned width);

/* ---- protocols ----------------------------------------------------------- */

enum pc_bench_proto {
    PC_BENCH_PEERCACHE = 0, /* docs/PROTOCOL.md */
    PC_BENCH_REDIS = 1,     /* RESP2: GET / SET */
    PC_BENCH_MEMCACHE = 2,  /* memcached text: get / set */
};

enum pc_bench_op {
    PC_BENCH_GET = 0,
    PC_BENCH_SET = 1,
    PC_BENCH_HELLO = 2, /* peercache only: protocol version 1, key = token */
};

/* Most bytes one request takes, whatever the protocol and id. */
size_t pc_bench_request_max(size_t klen, size_t vlen);

/*
 * Writes one request to out (room for pc_bench_request_max(klen, vlen)
 * bytes) and returns its length. id is the peercache request id (ignored
 * by the other protocols). SET stores val with no expiry and flags 0.
 * HELLO sends key as the token (omitted when klen is 0). Keys must not
 * hold spaces or control bytes for memcache (the caller's keys never do).
 * Returns 0 for HELLO with a protocol other than peercache.
 */
size_t pc_bench_encode(enum pc_bench_proto p, enum pc_bench_op op, uint8_t *out, uint64_t id,
                       const void *key, size_t klen, const void *val, size_t vlen);

enum pc_bench_result {
    PC_BENCH_OK = 0, /* SET stored, HELLO accepted */
    PC_BENCH_HIT,    /* GET found the key */
    PC_BENCH_MISS,   /* GET: no such key */
    PC_BENCH_FAIL,   /* the server answered with an error; stream intact */
};

typedef struct pc_bench_reply {
    int result;      /* enum pc_bench_result */
    uint64_t id;     /* peercache: the id echoed; 0 otherwise */
    uint32_t status; /* peercache: the wire status; 0 otherwise */
} pc_bench_reply_t;

/*
 * Parses the reply to one request of kind op at the start of buf[0, len),
 * without copying and without keeping state: a partial reply is parsed
 * again from its start once more bytes came (cheap: only headers are
 * read; a value's bytes are skipped by its length). Returns
 *   1          one reply, *used bytes long, described in *out;
 *   0          not all of it is there yet;
 *   PC_ETOOBIG it declares a length over max_reply bytes;
 *   PC_EPROTO  it is not a reply to op (garbage, another op, a peercache
 *              connection-level error frame): close the connection.
 * Only what the figures need is checked: the peercache frame length, op,
 * id and status (not the rest of the msgpack body); the RESP type and
 * lengths; the memcached status line, VALUE length and END.
 */
int pc_bench_parse_reply(enum pc_bench_proto p, enum pc_bench_op op, const uint8_t *buf,
                         size_t len, size_t max_reply, size_t *used, pc_bench_reply_t *out);

/* ---- server CPU time ------------------------------------------------- */

/*
 * The CPU time a process has used, user and system, all its threads, in
 * clock ticks (sysconf(_SC_CLK_TCK) a second), from the text of its
 * /proc/PID/stat: fields 14 and 15, counted after the last ')' (the
 * command name, field 2, may hold spaces and parentheses). 0, or
 * PC_EPROTO when the text is not such a line.
 */
int pc_bench_proc_cpu_ticks(const char *stat, uint64_t *ticks);

#endif
