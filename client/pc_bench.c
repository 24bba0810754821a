/*
 * pc_bench.c -- histogram, samplers, encoders and reply parsers of
 * peercache-bench (see pc_bench.h for the contracts).
 *
 * Everything here sits on the load generator's per-request path, so it
 * allocates nothing and reads each byte at most once per attempt.
 */
#include "pc_bench.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* ---- latency histogram ------------------------------------------------ */

void pc_bench_hist_reset(pc_bench_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

size_t pc_bench_hist_bucket(uint64_t v)
{
    if (v < PC_BENCH_HIST_LINEAR)
        return (size_t)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v); /* 8..63: v in [2^k, 2^(k+1)) */
    unsigned shift = k - PC_BENCH_HIST_SUB_BITS;
    size_t sub = (size_t)(v >> shift) - PC_BENCH_HIST_SUB; /* 0..127 */
    return PC_BENCH_HIST_LINEAR + (size_t)(k - 8u) * PC_BENCH_HIST_SUB + sub;
}

uint64_t pc_bench_hist_bucket_low(size_t i)
{
    if (i < PC_BENCH_HIST_LINEAR)
        return i;
    size_t j = i - PC_BENCH_HIST_LINEAR;
    unsigned k = 8u + (unsigned)(j / PC_BENCH_HIST_SUB);
    return (uint64_t)(PC_BENCH_HIST_SUB + j % PC_BENCH_HIST_SUB) << (k - PC_BENCH_HIST_SUB_BITS);
}

uint64_t pc_bench_hist_bucket_high(size_t i)
{
    if (i < PC_BENCH_HIST_LINEAR)
        return i;
    unsigned k = 8u + (unsigned)((i - PC_BENCH_HIST_LINEAR) / PC_BENCH_HIST_SUB);
    return pc_bench_hist_bucket_low(i) + ((uint64_t)1 << (k - PC_BENCH_HIST_SUB_BITS)) - 1;
}

void pc_bench_hist_record(pc_bench_hist_t *h, uint64_t v)
{
    h->counts[pc_bench_hist_bucket(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void pc_bench_hist_merge(pc_bench_hist_t *into, const pc_bench_hist_t *from)
{
    for (size_t i = 0; i < PC_BENCH_HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

/* Index of the bucket holding the rank-th smallest value (1-based). */
static size_t bucket_of_rank(const uint64_t *counts, uint64_t rank)
{
    uint64_t seen = 0;
    for (size_t i = 0; i < PC_BENCH_HIST_BUCKETS; i++) {
        seen += counts[i];
        if (seen >= rank)
            return i;
    }
    return PC_BENCH_HIST_BUCKETS - 1;
}

static uint64_t rank_of(uint64_t total, double q)
{
    double r = ceil(q / 100.0 * (double)total);
    if (r < 1.0)
        return 1;
    if (r >= (double)total)
        return total;
    return (uint64_t)r;
}

static uint64_t midpoint(size_t i)
{
    uint64_t lo = pc_bench_hist_bucket_low(i);
    return lo + (pc_bench_hist_bucket_high(i) - lo) / 2;
}

uint64_t pc_bench_counts_percentile(const uint64_t *counts, uint64_t total, double q)
{
    if (total == 0)
        return 0;
    return midpoint(bucket_of_rank(counts, rank_of(total, q)));
}

uint64_t pc_bench_hist_percentile(const pc_bench_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 100.0)
        return h->max;
    uint64_t v = pc_bench_counts_percentile(h->counts, h->count, q);
    if (v < h->min)
        v = h->min;
    if (v > h->max)
        v = h->max;
    return v;
}

double pc_bench_hist_mean(const pc_bench_hist_t *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

/* ---- random numbers and samplers ------------------------------------------ */

void pc_bench_rng_seed(pc_bench_rng_t *r, uint64_t seed)
{
    /* One splitmix64 step spreads neighbouring seeds (thread 0, 1, ...)
     * over the whole state space; xorshift needs a non-zero state. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    r->s = z ? z : 0x2545f4914f6cdd1dULL;
}

uint64_t pc_bench_rng_next(pc_bench_rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

double pc_bench_rng_unit(pc_bench_rng_t *r)
{
    return (double)(pc_bench_rng_next(r) >> 11) * 0x1.0p-53;
}

/*
 * Rejection-inversion for Zipf. With h(x) = x^-s, the probability of rank
 * k is h(k) / sum h. H(x) = integral of h from 1 to x is inverted in
 * closed form; a uniform draw over [H(1.5) - 1, H(n + 0.5)] mapped through
 * H^-1 and rounded gives a candidate rank k, kept if the draw falls in
 * the part of k's slice of area that h(k) covers. The slice of rank 1 is
 * exactly h(1) = 1 wide, so it is always kept, and the others are kept
 * with probability close to 1 for every s.
 *
 * (e^t - 1)/t and log(1 + t)/t, with their limit 1 at t = 0, keep H and
 * its inverse exact near s = 1, where (x^(1-s) - 1)/(1-s) becomes 0/0.
 */
static double expm1_over(double t)
{
    return fabs(t) > 1e-8 ? expm1(t) / t : 1.0 + t / 2.0;
}

static double log1p_over(double t)
{
    return fabs(t) > 1e-8 ? log1p(t) / t : 1.0 - t / 2.0;
}

static double zipf_h(double s, double x)
{
    return exp(-s * log(x));
}

static double zipf_H(double s, double x)
{
    double lx = log(x);
    return expm1_over((1.0 - s) * lx) * lx;
}

static double zipf_H_inv(double s, double y)
{
    return exp(log1p_over((1.0 - s) * y) * y);
}

int pc_bench_keys_init(pc_bench_keys_t *k, uint64_t n, double s)
{
    if (k == NULL || n == 0 || n > ((uint64_t)1 << 53) || !(s >= 0.0) ||
        s > PC_BENCH_ZIPF_MAX_S)
        return PC_EINVAL;
    memset(k, 0, sizeof *k);
    k->n = n;
    k->s = s;
    if (s > 0.0) {
        k->h_x1 = zipf_H(s, 1.5) - 1.0;
        k->h_n = zipf_H(s, (double)n + 0.5);
        k->s_accept = 2.0 - zipf_H_inv(s, zipf_H(s, 2.5) - zipf_h(s, 2.0));
    }
    return 0;
}

uint64_t pc_bench_keys_next(const pc_bench_keys_t *k, pc_bench_rng_t *r)
{
    if (k->s == 0.0) {
        uint64_t i = (uint64_t)(pc_bench_rng_unit(r) * (double)k->n);
        return i < k->n ? i : k->n - 1;
    }
    for (;;) {
        double u = k->h_n + pc_bench_rng_unit(r) * (k->h_x1 - k->h_n);
        double x = zipf_H_inv(k->s, u);
        double kd = floor(x + 0.5);
        if (kd < 1.0)
            kd = 1.0;
        else if (kd > (double)k->n)
            kd = (double)k->n;
        if (kd - x <= k->s_accept || u >= zipf_H(k->s, kd + 0.5) - zipf_h(k->s, kd))
            return (uint64_t)kd - 1;
    }
}

uint64_t pc_bench_mix_threshold(unsigned reads, unsigned writes)
{
    double total = (double)reads + (double)writes;
    if (total <= 0.0)
        return 0;
    return (uint64_t)((double)reads / total * 0x1.0p53 + 0.5);
}

int pc_bench_mix_is_get(uint64_t threshold, pc_bench_rng_t *r)
{
    return (pc_bench_rng_next(r) >> 11) < threshold;
}

unsigned pc_bench_key_width(uint64_t n)
{
    unsigned w = 1;
    for (uint64_t last = n > 0 ? n - 1 : 0; last >= 10; last /= 10)
        w++;
    return w;
}

size_t pc_bench_key_format(char *out, uint64_t i, unsigned width)
{
    memcpy(out, "key:", 4);
    for (unsigned d = width; d > 0; d--) {
        out[4 + d - 1] = (char)('0' + i % 10);
        i /= 10;
    }
    return 4 + (size_t)width;
}

/* ---- encoders ------------------------------------------------------------------- */

size_t pc_bench_request_max(size_t klen, size_t vlen)
{
    /* The longest fixed part is RESP's SET: "*3\r\n$3\r\nSET\r\n$" + 20
     * digits + "\r\n" + "\r\n$" + 20 digits + "\r\n" + "\r\n" = 65;
     * peercache's is 4 + 1 + 1 + 9 + 5 + 5 = 25. */
    return 80 + klen + vlen;
}

static uint8_t *put(uint8_t *o, const void *p, size_t n)
{
    memcpy(o, p, n);
    return o + n;
}

static uint8_t *put_dec(uint8_t *o, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = (uint8_t)tmp[--n];
    return o;
}

static uint8_t *put_be(uint8_t *o, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++)
        o[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    return o + bytes;
}

/* msgpack: the smallest unsigned format, as the reference encoder does. */
static uint8_t *mp_uint(uint8_t *o, uint64_t v)
{
    if (v < 128) {
        *o++ = (uint8_t)v;
        return o;
    }
    if (v <= UINT8_MAX) {
        *o++ = 0xcc;
        return put_be(o, v, 1);
    }
    if (v <= UINT16_MAX) {
        *o++ = 0xcd;
        return put_be(o, v, 2);
    }
    if (v <= UINT32_MAX) {
        *o++ = 0xce;
        return put_be(o, v, 4);
    }
    *o++ = 0xcf;
    return put_be(o, v, 8);
}

static uint8_t *mp_bin(uint8_t *o, const void *p, size_t n)
{
    if (n <= UINT8_MAX) {
        *o++ = 0xc4;
        o = put_be(o, n, 1);
    } else if (n <= UINT16_MAX) {
        *o++ = 0xc5;
        o = put_be(o, n, 2);
    } else {
        *o++ = 0xc6;
        o = put_be(o, n, 4);
    }
    return put(o, p, n);
}

static size_t encode_peercache(enum pc_bench_op op, uint8_t *out, uint64_t id, const void *key,
                               size_t klen, const void *val, size_t vlen)
{
    uint8_t *o = out + 4; /* the length prefix is filled in last */
    switch (op) {
    case PC_BENCH_GET:
        *o++ = 0x93;
        *o++ = 3; /* PC_OP_GET */
        o = mp_uint(o, id);
        o = mp_bin(o, key, klen);
        break;
    case PC_BENCH_SET:
        *o++ = 0x94;
        *o++ = 5; /* PC_OP_SET; ttl, flags, cond, cas are 0 and omitted */
        o = mp_uint(o, id);
        o = mp_bin(o, key, klen);
        o = mp_bin(o, val, vlen);
        break;
    case PC_BENCH_HELLO:
        *o++ = klen ? 0x94 : 0x93;
        *o++ = 1; /* PC_OP_HELLO */
        o = mp_uint(o, id);
        *o++ = 1; /* protocol version */
        if (klen)
            o = mp_bin(o, key, klen);
        break;
    }
    put_be(out, (uint64_t)(o - out - 4), 4);
    return (size_t)(o - out);
}

static size_t encode_redis(enum pc_bench_op op, uint8_t *out, const void *key, size_t klen,
                           const void *val, size_t vlen)
{
    uint8_t *o = out;
    if (op == PC_BENCH_GET)
        o = put(o, "*2\r\n$3\r\nGET\r\n$", 14);
    else
        o = put(o, "*3\r\n$3\r\nSET\r\n$", 14);
    o = put_dec(o, klen);
    o = put(o, "\r\n", 2);
    o = put(o, key, klen);
    o = put(o, "\r\n", 2);
    if (op == PC_BENCH_SET) {
        *o++ = '$';
        o = put_dec(o, vlen);
        o = put(o, "\r\n", 2);
        o = put(o, val, vlen);
        o = put(o, "\r\n", 2);
    }
    return (size_t)(o - out);
}

static size_t encode_memcache(enum pc_bench_op op, uint8_t *out, const void *key, size_t klen,
                              const void *val, size_t vlen)
{
    uint8_t *o = out;
    o = put(o, op == PC_BENCH_GET ? "get " : "set ", 4);
    o = put(o, key, klen);
    if (op == PC_BENCH_SET) {
        o = put(o, " 0 0 ", 5); /* flags 0, no expiry */
        o = put_dec(o, vlen);
        o = put(o, "\r\n", 2);
        o = put(o, val, vlen);
    }
    o = put(o, "\r\n", 2);
    return (size_t)(o - out);
}

size_t pc_bench_encode(enum pc_bench_proto p, enum pc_bench_op op, uint8_t *out, uint64_t id,
                       const void *key, size_t klen, const void *val, size_t vlen)
{
    switch (p) {
    case PC_BENCH_PEERCACHE:
        return encode_peercache(op, out, id, key, klen, val, vlen);
    case PC_BENCH_REDIS:
        return op == PC_BENCH_HELLO ? 0 : encode_redis(op, out, key, klen, val, vlen);
    case PC_BENCH_MEMCACHE:
        return op == PC_BENCH_HELLO ? 0 : encode_memcache(op, out, key, klen, val, vlen);
    }
    return 0;
}

/* ---- reply parsers -------------------------------------------------------------- */

/* Longest status line accepted before its CRLF (RESP errors, memcached
 * lines: a VALUE line holds a key of at most 250 bytes). */
#define LINE_MAX_BYTES 4096u

/* Offset of the first "\r\n" at or after from, or -1. */
static long find_crlf(const uint8_t *b, size_t len, size_t from)
{
    for (size_t i = from; i + 1 < len; i++) {
        const uint8_t *cr = memchr(b + i, '\r', len - 1 - i);
        if (cr == NULL)
            return -1;
        i = (size_t)(cr - b);
        if (b[i + 1] == '\n')
            return (long)i;
    }
    return -1;
}

/* A line not yet complete: wait, unless it is already too long. */
static int need_line(size_t len)
{
    return len > LINE_MAX_BYTES ? PC_EPROTO : 0;
}

static bool line_is(const uint8_t *b, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n == w && memcmp(b, word, w) == 0;
}

static bool line_starts(const uint8_t *b, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && memcmp(b, word, w) == 0;
}

/* Decimal digits b[0, n) into *v; false if empty, not digits or over 2^62. */
static bool parse_dec(const uint8_t *b, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (b[i] < '0' || b[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(b[i] - '0');
    }
    *v = x;
    return true;
}

/* msgpack: any int format holding a value >= 0 (what a receiver accepts,
 * docs/PROTOCOL.md section 3). Advances *pos; false if malformed. */
static bool mp_read_uint(const uint8_t *b, size_t len, size_t *pos, uint64_t *v)
{
    size_t p = *pos;
    if (p >= len)
        return false;
    uint8_t t = b[p++];
    if (t < 0x80) {
        *v = t;
        *pos = p;
        return true;
    }
    /* 0xcc..0xcf: uint 8..64; 0xd0..0xd3: int 8..64 */
    if (t < 0xcc || t > 0xd3)
        return false;
    bool is_signed = t >= 0xd0;
    unsigned n = 1u << ((t - 0xcc) & 3);
    if (len - p < n)
        return false;
    if (is_signed && (b[p] & 0x80))
        return false;
    uint64_t x = 0;
    for (unsigned i = 0; i < n; i++)
        x = (x << 8) | b[p + i];
    *v = x;
    *pos = p + n;
    return true;
}

static int parse_peercache(enum pc_bench_op op, const uint8_t *b, size_t len, size_t max_reply,
                           size_t *used, pc_bench_reply_t *out)
{
    static const uint64_t wire_op[] = {[PC_BENCH_GET] = 3, [PC_BENCH_SET] = 5,
                                       [PC_BENCH_HELLO] = 1};
    if (len < 4)
        return 0;
    uint64_t flen = ((uint64_t)b[0] << 24) | ((uint64_t)b[1] << 16) | ((uint64_t)b[2] << 8) | b[3];
    if (flen == 0)
        return PC_EPROTO;
    if (flen + 4 > max_reply)
        return PC_ETOOBIG;
    if (len - 4 < flen)
        return 0;
    const uint8_t *body = b + 4;
    size_t pos = 1;
    uint64_t count, rop, id, status;
    if (body[0] >= 0x90 && body[0] <= 0x9f) {
        count = body[0] & 0x0f;
    } else if (body[0] == 0xdc && flen >= 3) {
        count = ((uint64_t)body[1] << 8) | body[2];
        pos = 3;
    } else if (body[0] == 0xdd && flen >= 5) {
        count = ((uint64_t)body[1] << 24) | ((uint64_t)body[2] << 16) |
                ((uint64_t)body[3] << 8) | body[4];
        pos = 5;
    } else {
        return PC_EPROTO;
    }
    if (count < 3 || !mp_read_uint(body, flen, &pos, &rop) ||
        !mp_read_uint(body, flen, &pos, &id) || !mp_read_uint(body, flen, &pos, &status) ||
        status > UINT32_MAX)
        return PC_EPROTO;
    /* op 0 is the node's connection-level error ("frame too large", "too
     * many connections"), sent just before it closes. */
    if (rop != wire_op[op])
        return PC_EPROTO;
    out->id = id;
    out->status = (uint32_t)status;
    if (status == 0)
        out->result = op == PC_BENCH_GET ? PC_BENCH_HIT : PC_BENCH_OK;
    else if (status == 1 && op == PC_BENCH_GET)
        out->result = PC_BENCH_MISS;
    else
        out->result = PC_BENCH_FAIL;
    *used = 4 + (size_t)flen;
    return 1;
}

static int parse_redis(enum pc_bench_op op, const uint8_t *b, size_t len, size_t max_reply,
                       size_t *used, pc_bench_reply_t *out)
{
    if (len == 0)
        return 0;
    long e = find_crlf(b, len, 1);
    if (e < 0)
        return need_line(len);
    size_t line = (size_t)e + 2;
    switch (b[0]) {
    case '+':
        if (op != PC_BENCH_SET)
            return PC_EPROTO;
        out->result = PC_BENCH_OK;
        *used = line;
        return 1;
    case '-':
        out->result = PC_BENCH_FAIL;
        *used = line;
        return 1;
    case '$': {
        uint64_t n;
        if (line_is(b + 1, (size_t)e - 1, "-1")) {
            /* nil: a miss for GET; a SET only answers nil when a
             * condition failed, which this tool never asks for */
            out->result = op == PC_BENCH_GET ? PC_BENCH_MISS : PC_BENCH_FAIL;
            *used = line;
            return 1;
        }
        if (op != PC_BENCH_GET || !parse_dec(b + 1, (size_t)e - 1, &n))
            return PC_EPROTO;
        if (n > max_reply || line + n + 2 > max_reply)
            return PC_ETOOBIG;
        if (len < line + n + 2)
            return 0;
        if (b[line + n] != '\r' || b[line + n + 1] != '\n')
            return PC_EPROTO;
        out->result = PC_BENCH_HIT;
        *used = line + n + 2;
        return 1;
    }
    default:
        return PC_EPROTO;
    }
}

/* memcached's error lines, which answer any command. */
static bool memcache_error(const uint8_t *b, size_t n)
{
    return line_is(b, n, "ERROR") || line_starts(b, n, "CLIENT_ERROR ") ||
           line_starts(b, n, "SERVER_ERROR ");
}

/* "VALUE <key> <flags> <bytes> [<cas>]": the value's length. */
static bool memcache_value_len(const uint8_t *b, size_t n, uint64_t *vlen)
{
    size_t i = 6, start = 6; /* after "VALUE " */
    for (int field = 0; field < 3; field++) {
        while (i < n && b[i] == ' ')
            i++;
        start = i;
        while (i < n && b[i] != ' ')
            i++;
        if (i == start)
            return false;
    }
    return parse_dec(b + start, i - start, vlen);
}

static int parse_memcache(enum pc_bench_op op, const uint8_t *b, size_t len, size_t max_reply,
                          size_t *used, pc_bench_reply_t *out)
{
    long e = find_crlf(b, len, 0);
    if (e < 0)
        return need_line(len);
    size_t n = (size_t)e, line = n + 2;
    *used = line;
    if (memcache_error(b, n)) {
        out->result = PC_BENCH_FAIL;
        return 1;
    }
    if (op == PC_BENCH_SET) {
        if (line_is(b, n, "STORED"))
            out->result = PC_BENCH_OK;
        else if (line_is(b, n, "NOT_STORED") || line_is(b, n, "EXISTS") ||
                 line_is(b, n, "NOT_FOUND"))
            out->result = PC_BENCH_FAIL;
        else
            return PC_EPROTO;
        return 1;
    }
    if (op != PC_BENCH_GET)
        return PC_EPROTO;
    if (line_is(b, n, "END")) {
        out->result = PC_BENCH_MISS;
        return 1;
    }
    uint64_t vlen;
    if (!line_starts(b, n, "VALUE ") || !memcache_value_len(b, n, &vlen))
        return PC_EPROTO;
    if (vlen > max_reply || line + vlen + 7 > max_reply)
        return PC_ETOOBIG;
    size_t total = line + (size_t)vlen + 2 + 5; /* data, CRLF, "END\r\n" */
    if (len < total)
        return 0;
    if (memcmp(b + line + vlen, "\r\nEND\r\n", 7) != 0)
        return PC_EPROTO;
    out->result = PC_BENCH_HIT;
    *used = total;
    return 1;
}

int pc_bench_parse_reply(enum pc_bench_proto p, enum pc_bench_op op, const uint8_t *buf,
                         size_t len, size_t max_reply, size_t *used, pc_bench_reply_t *out)
{
    out->result = PC_BENCH_FAIL;
    out->id = 0;
    out->status = 0;
    switch (p) {
    case PC_BENCH_PEERCACHE:
        return parse_peercache(op, buf, len, max_reply, used, out);
    case PC_BENCH_REDIS:
        return op == PC_BENCH_HELLO ? PC_EPROTO
                                    : parse_redis(op, buf, len, max_reply, used, out);
    case PC_BENCH_MEMCACHE:
        return op == PC_BENCH_HELLO ? PC_EPROTO
                                    : parse_memcache(op, buf, len, max_reply, used, out);
    }
    return PC_EPROTO;
}

/* ---- server CPU time ------------------------------------------------- */

int pc_bench_proc_cpu_ticks(const char *stat, uint64_t *ticks)
{
    const char *p = strrchr(stat, ')');
    if (p == NULL || p[1] != ' ')
        return PC_EPROTO;
    p += 2; /* field 3, the state */
    uint64_t utime = 0;
    for (int field = 3; field <= 15; field++) {
        const char *end = p + strcspn(p, " \n");
        if (end == p)
            return PC_EPROTO;
        if (field == 14 || field == 15) {
            uint64_t v = 0;
            for (const char *q = p; q < end; q++) {
                if (*q < '0' || *q > '9' || v > (UINT64_MAX - 9) / 10)
                    return PC_EPROTO;
                v = v * 10 + (uint64_t)(*q - '0');
            }
            if (field == 14)
                utime = v;
            else
                *ticks = utime + v;
        }
        if (*end != ' ' && field < 15)
            return PC_EPROTO;
        p = end + 1;
    }
    return 0;
}
