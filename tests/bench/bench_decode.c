/*
 * bench_decode.c -- what one request body costs pc_proto_decode_request.
 *
 *   bench_decode [--smoke]
 *
 *   no option   full run (a few seconds; use a Release or RelWithDebInfo
 *               build)
 *   --smoke     one decode per frame and round, for CI; fine under
 *               sanitizers, and asserts nothing about time
 *
 * Every frame is a body of about max_frame bytes (default limits), the
 * size a node's reader hands its decoder at most:
 *   blob        SET with a 1 MiB value: a handful of msgpack values, the
 *               baseline every other frame is compared with;
 *   nil tail    SET whose ignored trailing element is an array of
 *               ~1.18M nils (one msgpack value per byte);
 *   nested      SET whose ignored trailing element is an array of small
 *               arrays [[1, 2], [3, 4], ...] (three values per 3 bytes);
 *   key array   GET whose key is an array of ~1.18M nils;
 *   mget max    MGET of max_mget_keys keys, each ~1.1 KiB;
 *   repl max    REPLICATE of max_mget_keys entries, each ~1.1 KiB.
 * The first four are refused or ignored by the node, the last two are
 * the largest legal lists; all of them fit in one frame.
 *
 * Rounds are interleaved (every frame once per round, then the next
 * round), so a burst of load elsewhere on the machine hits all frames
 * alike; each figure is the median over the rounds. The table gives the
 * decode result, the time per decode, ns per body byte, and the ratio to
 * the blob's time.
 *
 * Exits non-zero if a sanity check fails: the blob, MGET and REPLICATE
 * frames must decode with every field, and every frame must be answered
 * one of the documented ways.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pc_proto.h"
#include "pc_mbench.h"

#define ROUNDS 7
#define SMOKE_ROUNDS 3

static unsigned failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "bench_decode: check failed at line %d: %s\n", __LINE__, #cond); \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* ---- frames ------------------------------------------------------------ */

/* Raw msgpack bytes for the frames no encoder would write. */
static void put(pc_buf_t *b, const void *p, size_t n)
{
    CHECK(pc_buf_append(b, p, n) == 0);
}

static void put_be32(pc_buf_t *b, uint8_t tag, uint32_t n)
{
    uint8_t h[5] = {tag, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    put(b, h, sizeof h);
}

/* [5, 1, "k", "v", nil, nil, nil, nil, <tail>]: a SET with every
 * optional argument present (as nil), then one element past them. */
static void set_head(pc_buf_t *b)
{
    static const uint8_t head[] = {0x99, 0x05, 0x01, 0xa1, 'k', 0xa1, 'v',
                                   0xc0, 0xc0, 0xc0, 0xc0};
    put(b, head, sizeof head);
}

/* The trailing element: an array of nils up to `size` bytes in all. */
static void nil_tail(pc_buf_t *b, size_t size)
{
    size_t n = size - b->len - 5;
    put_be32(b, 0xdd, (uint32_t)n);
    CHECK(pc_buf_reserve(b, n) == 0);
    memset(b->data + b->len, 0xc0, n);
    b->len += n;
}

/* The trailing element: an array of [i & 0x7f, 1] pairs up to about
 * `size` bytes. */
static void nested_tail(pc_buf_t *b, size_t size)
{
    size_t n = (size - b->len - 5) / 3;
    put_be32(b, 0xdd, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        uint8_t pair[3] = {0x92, (uint8_t)(i & 0x7f), 0x01};
        put(b, pair, sizeof pair);
    }
}

/* An encoded frame's body, without its length prefix. */
static void encoded(pc_buf_t *b, const pc_request_t *rq)
{
    pc_buf_t f;
    pc_buf_init(&f, 0);
    CHECK(pc_proto_encode_request(&f, rq) == 0);
    if (f.len > 4)
        put(b, f.data + 4, f.len - 4);
    pc_buf_free(&f);
}

enum { F_BLOB, F_NIL_TAIL, F_NESTED, F_KEY_ARRAY, F_MGET, F_REPL, F_COUNT };

static const char *const frame_names[F_COUNT] = {
    [F_BLOB] = "blob (SET, 1 MiB value)",
    [F_NIL_TAIL] = "nil tail (SET + [nil x ~1.18M])",
    [F_NESTED] = "nested (SET + [[i, 1] x ~393K])",
    [F_KEY_ARRAY] = "key array (GET, key = [nil x ~1.18M])",
    [F_MGET] = "mget max (1024 keys of ~1.1 KiB)",
    [F_REPL] = "repl max (1024 entries of ~1.1 KiB)",
};

static void build_frames(pc_buf_t *f, uint8_t *fill, const pc_proto_limits_t *lim)
{
    size_t size = lim->max_frame;
    uint32_t n = lim->max_mget_keys;

    pc_request_t set = {.op = PC_OP_SET, .id = 1, .key = {(const uint8_t *)"blob", 4},
                        .value = {fill, lim->max_value}};
    encoded(&f[F_BLOB], &set);

    set_head(&f[F_NIL_TAIL]);
    nil_tail(&f[F_NIL_TAIL], size);

    set_head(&f[F_NESTED]);
    nested_tail(&f[F_NESTED], size);

    static const uint8_t get_head[] = {0x93, 0x03, 0x01};
    put(&f[F_KEY_ARRAY], get_head, sizeof get_head);
    nil_tail(&f[F_KEY_ARRAY], size);

    /* Keys (and entry values) as long as fills the frame: each key costs
     * its bytes plus a 3-byte bin16 header; each entry 33 bytes besides
     * its value (array, 16-byte key, flags, a 9-byte version, ttl). */
    uint32_t klen = (uint32_t)((size - 64) / n - 3);
    pc_bytes_t *keys = malloc(n * sizeof(*keys));
    CHECK(keys != NULL);
    for (uint32_t i = 0; i < n; i++)
        keys[i] = (pc_bytes_t){fill + i, klen};
    pc_request_t mget = {.op = PC_OP_MGET, .id = 1, .nkeys = n, .keys = keys};
    encoded(&f[F_MGET], &mget);
    free(keys);

    uint32_t vlen = (uint32_t)((size - 64) / n - 33);
    pc_repl_entry_t *ents = malloc(n * sizeof(*ents));
    CHECK(ents != NULL);
    for (uint32_t i = 0; i < n; i++)
        ents[i] = (pc_repl_entry_t){.key = {fill + i, 16}, .value = {fill, vlen},
                                    .has_value = 1, .version = (1ull << 40) + i, .ttl_ms = -1};
    pc_request_t repl = {.op = PC_OP_REPLICATE, .id = 1, .mode = PC_REPL_WRITE,
                         .from = {(const uint8_t *)"n1", 2}, .nentries = n, .entries = ents};
    encoded(&f[F_REPL], &repl);
    free(ents);

    for (int i = 0; i < F_COUNT; i++)
        CHECK(f[i].len > 0 && f[i].len <= size);
}

/* ---- measurement -------------------------------------------------------- */

static const char *rc_name(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case PC_EBADREQ:
        return "BAD_REQUEST";
    case PC_ETOOBIG:
        return "TOO_LARGE";
    case PC_EPROTO:
        return "malformed";
    case PC_ENOMEM:
        return "no memory";
    default:
        return "?";
    }
}

/* Seconds per decode of one frame over `iters` decodes; *rc the result. */
static double time_decode(pc_proto_decoder_t *d, const pc_buf_t *f, long iters, int *rc)
{
    pc_request_t rq;
    double t0 = pc_mbench_now_s();
    for (long i = 0; i < iters; i++)
        *rc = pc_proto_decode_request(d, f->data, f->len, &rq);
    return (pc_mbench_now_s() - t0) / (double)iters;
}

/* What a frame must decode to, whatever the decoder's rules on budgets. */
static void check_frame(pc_proto_decoder_t *d, int which, const pc_buf_t *f,
                        const pc_proto_limits_t *lim)
{
    pc_request_t rq;
    int rc = pc_proto_decode_request(d, f->data, f->len, &rq);
    switch (which) {
    case F_BLOB:
        CHECK(rc == 0 && rq.op == PC_OP_SET && rq.value.len == lim->max_value);
        break;
    case F_MGET:
        CHECK(rc == 0 && rq.op == PC_OP_MGET && rq.nkeys == lim->max_mget_keys);
        break;
    case F_REPL:
        CHECK(rc == 0 && rq.op == PC_OP_REPLICATE && rq.nentries == lim->max_mget_keys);
        break;
    case F_NIL_TAIL:
    case F_NESTED:
        /* ignored (an older decoder) or refused, with op and id */
        CHECK(rc == 0 || rc == PC_EBADREQ);
        CHECK(rq.op == PC_OP_SET && rq.id == 1);
        break;
    case F_KEY_ARRAY:
        CHECK(rc == PC_EBADREQ && rq.op == PC_OP_GET && rq.id == 1);
        break;
    }
}

int main(int argc, char **argv)
{
    bool smoke = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = true;
        } else {
            fprintf(stderr, "usage: %s [--smoke]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    pc_proto_limits_t lim;
    pc_proto_limits_default(&lim);
    pc_proto_decoder_t *d = NULL;
    if (pc_proto_decoder_new(&lim, &d) != 0) {
        fprintf(stderr, "bench_decode: out of memory\n");
        return 1;
    }
    uint8_t *fill = malloc(lim.max_value + lim.max_mget_keys);
    pc_buf_t f[F_COUNT];
    CHECK(fill != NULL);
    if (fill == NULL)
        return 1;
    for (size_t i = 0; i < lim.max_value + lim.max_mget_keys; i++)
        fill[i] = (uint8_t)('a' + i % 26);
    for (int i = 0; i < F_COUNT; i++)
        pc_buf_init(&f[i], 0);
    build_frames(f, fill, &lim);
    for (int i = 0; i < F_COUNT; i++)
        check_frame(d, i, &f[i], &lim);

    /* Enough decodes per measurement for about 20 ms (at least one), from
     * one timed decode: the blob takes microseconds, an unpacked nil tail
     * about a hundred milliseconds. */
    int rounds = smoke ? SMOKE_ROUNDS : ROUNDS;
    long iters[F_COUNT];
    int rcs[F_COUNT];
    for (int i = 0; i < F_COUNT; i++) {
        double one = time_decode(d, &f[i], 1, &rcs[i]);
        iters[i] = smoke || one > 0.02 ? 1 : (long)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
    }

    double t[F_COUNT][ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < F_COUNT; i++)
            t[i][r] = time_decode(d, &f[i], iters[i], &rcs[i]);

    printf("# bench_decode%s (load average %.2f): pc_proto_decode_request, "
           "median of %d interleaved rounds\n\n",
           smoke ? " --smoke" : "", pc_mbench_loadavg(), rounds);
    printf("| frame | body bytes | result | us per decode | ns per byte | x blob |\n");
    printf("|---|---:|---|---:|---:|---:|\n");
    double blob = pc_mbench_median(t[F_BLOB], rounds);
    for (int i = 0; i < F_COUNT; i++) {
        double m = i == F_BLOB ? blob : pc_mbench_median(t[i], rounds);
        printf("| %s | %zu | %s | %.2f | %.4f | %.1f |\n", frame_names[i], f[i].len,
               rc_name(rcs[i]), m * 1e6, m * 1e9 / (double)f[i].len, m / blob);
    }
    printf("\n");

    for (int i = 0; i < F_COUNT; i++)
        pc_buf_free(&f[i]);
    free(fill);
    pc_proto_decoder_free(&d);
    if (failures) {
        fprintf(stderr, "bench_decode: %u sanity check(s) failed\n", failures);
        return 1;
    }
    return 0;
}
