/*
 * bench_seal.c -- micro-benchmark of proto/pc_seal.
 *
 *   bench_seal [--smoke]
 *
 *   no option   full run (a few seconds; use a Release build)
 *   --smoke     tiny run for CI, fine under sanitizers
 *
 * Two measurements, each the median of 5 runs:
 *   1. seal + open: pc_seal of a payload into a reset buffer, then
 *      pc_seal_open of it in place, for 64 B, 1 KiB and 64 KiB payloads:
 *      pairs per second and payload MB/s (each byte is encrypted once and
 *      decrypted once);
 *   2. pc_replay_check per second: 64 streams sending in order with some
 *      reordering, 1 ms between messages, a 60 s window.
 *
 * Exits non-zero if a sanity check fails (every message opens to the
 * bytes sealed; every in-order message is fresh, every repeat a replay).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pc_seal.h"
#include "pc_mbench.h"

#define RUNS 5

static unsigned failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "bench_seal: check failed at line %d: %s\n", __LINE__, #cond);   \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* One timed run: n seal+open pairs of len bytes. Returns seconds. */
static double run_seal_open(const pc_keyring_t *kr, const uint8_t *payload, size_t len, size_t n)
{
    pc_seal_stream_t st;
    pc_seal_opened_t o;
    pc_buf_t b;
    size_t bad = 0;
    double t0;

    pc_seal_stream_init(&st);
    pc_buf_init(&b, 0);
    t0 = pc_mbench_now_s();
    for (size_t i = 0; i < n; i++) {
        pc_buf_reset(&b);
        if (pc_seal(kr, &st, PC_SEAL_PEER_REQ, 1700000000000ull + i, payload, len, &b) != 0 ||
            pc_seal_open(kr, b.data, b.len, &o) != 0 || o.len != len)
            bad++;
    }
    double t = pc_mbench_now_s() - t0;
    CHECK(bad == 0);
    CHECK(bad == 0 && memcmp(o.payload, payload, len) == 0);
    pc_buf_free(&b);
    return t;
}

static void bench_seal_open(bool smoke)
{
    static const size_t sizes[] = {64, 1024, 65536};
    /* About 0.2 s per run on a 2020s x86 core. */
    static const size_t iters[] = {200000, 100000, 2000};
    char err[256];
    pc_keyring_t *kr = NULL;
    char line[66];
    uint32_t id;
    uint8_t *payload = malloc(65536);

    CHECK(payload != NULL);
    pc_keyring_new_key_line(line, &id);
    CHECK(pc_keyring_parse(line, 65, &kr, err, sizeof(err)) == 0);
    for (size_t i = 0; i < 65536; i++)
        payload[i] = (uint8_t)(i * 31 + 7);

    printf("## 1. seal + open (XChaCha20-Poly1305), median of %d runs\n\n", RUNS);
    printf("| payload | pairs/s | payload MB/s | us per pair |\n");
    printf("|---:|---:|---:|---:|\n");
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = smoke ? iters[s] / 200 + 1 : iters[s];
        double t[RUNS];

        run_seal_open(kr, payload, sizes[s], n / 10 + 1); /* warm up */
        for (int r = 0; r < RUNS; r++)
            t[r] = run_seal_open(kr, payload, sizes[s], n);
        double m = pc_mbench_median(t, RUNS);
        printf("| %zu B | %.0f | %.1f | %.2f |\n", sizes[s], (double)n / m,
               (double)n * (double)sizes[s] / m / 1e6, m / (double)n * 1e6);
    }
    printf("\n");
    pc_keyring_free(&kr);
    free(payload);
}

/* One timed run of n checks over 64 streams: mostly in order, every 8th
 * message swapped with its successor, every 16th sent twice. */
static double run_replay(size_t n, size_t *fresh, size_t *replays)
{
    enum { STREAMS = 64 };
    uint64_t next[STREAMS];
    pc_replay_t *r = NULL;
    uint64_t now = 1700000000000ull;
    double t0;

    CHECK(pc_replay_new(60000, 1024, &r) == 0);
    for (int s = 0; s < STREAMS; s++)
        next[s] = 1;
    *fresh = *replays = 0;
    t0 = pc_mbench_now_s();
    for (size_t i = 0; i < n; i++) {
        size_t s = i % STREAMS;
        uint64_t seq = next[s]++;
        int rc;

        if (seq % 8 == 0)
            seq++; /* 8 arrives as 9 ... */
        else if (seq % 8 == 1 && seq > 1)
            seq--; /* ... and 9 as 8 */
        rc = pc_replay_check(r, 0x1000 + s, seq, now, now);
        *fresh += rc == 0;
        if (seq % 16 == 3)
            *replays += pc_replay_check(r, 0x1000 + s, seq, now, now) == PC_EREPLAY;
        now += i % STREAMS == 0;
    }
    double t = pc_mbench_now_s() - t0;
    pc_replay_free(&r);
    return t;
}

static void bench_replay(bool smoke)
{
    size_t n = smoke ? 20000 : 4000000, fresh, replays;
    double t[RUNS];

    printf("## 2. pc_replay_check, 64 streams, median of %d runs\n\n", RUNS);
    run_replay(n / 10, &fresh, &replays); /* warm up */
    for (int r = 0; r < RUNS; r++) {
        double secs = run_replay(n, &fresh, &replays);
        /* timings include the duplicate checks: count them as calls */
        t[r] = secs / (double)(n + replays);
        CHECK(fresh == n);
        CHECK(replays > 0);
    }
    printf("%.1f M checks/s (%.0f ns per check; %zu fresh, %zu replays caught per run)\n\n",
           1e-6 / pc_mbench_median(t, RUNS), pc_mbench_median(t, RUNS) * 1e9, fresh, replays);
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
    if (pc_seal_init() != 0) {
        fprintf(stderr, "bench_seal: pc_seal_init failed\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# bench_seal%s (load average %.2f)\n\n", smoke ? " --smoke" : "", pc_mbench_loadavg());
    bench_seal_open(smoke);
    bench_replay(smoke);
    if (failures) {
        fprintf(stderr, "bench_seal: %u sanity check(s) failed\n", failures);
        return 1;
    }
    return 0;
}
