/*
 * bench_store.c -- micro-benchmark of node/pc_store.
 *
 *   bench_store [--smoke] [memory] [throughput] [hitratio] [threads] [prefetch]
 *               [--threads N] [--rounds R] [--duration S]
 *
 *   no option           full run of all five (about 4 minutes on 2 cores;
 *                       use a Release build)
 *   --smoke             tiny run for CI (a second, fine under sanitizers)
 *   memory ...          only the named sections
 *   --threads N         section 4 with 1..N threads (default 2); alone,
 *                       it selects section 4 only, as do the next two
 *   --rounds R          section 4: rounds per thread count (default 5)
 *   --duration S        section 4: seconds per run (default 2)
 *
 * Exits non-zero if a sanity check fails (hit ratio in (0,1), bytes within
 * the limit, counters adding up, pc_store_verify() clean).
 *
 * Five measurements:
 *   1. memory: the charged overhead per item (PC_STORE_ITEM_OVERHEAD) next
 *      to the measured one, (heap or RSS growth) / items - key - value,
 *      for many small items;
 *   2. throughput: a 90% get / 10% set mix over a preloaded key space on 1
 *      and 2 threads, uniform and Zipf(0.99) keys, both policies;
 *   3. hit ratio: LRU against S3-FIFO on the same Zipf traces, replayed as
 *      a read-through cache would (GET; on a miss, SET);
 *   4. scaling: 1..N threads hammering one shared store for a fixed time,
 *      70% get / 30% set, 100-byte values, uniform and Zipf(0.99) keys,
 *      thread counts alternated over several rounds, medians reported;
 *   5. prefetch: GETs in batches of 16 (a pipelined connection's turn),
 *      with and without pc_store_prefetch() of each batch first, on one
 *      thread, over key spaces that fit the caches and that do not;
 *      rounds alternated, median ns per GET.
 *
 * Every random choice comes from a fixed seed and the store's hash key is
 * fixed, so hit ratios are reproducible to the last digit; timings are not.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pc_store.h"
#include "pc_mbench.h"

#define KLEN 16 /* "key:" + 12 digits */
#define VLEN 32

static const uint8_t bench_hash_key[16] = {0x70, 0x63, 0x2d, 0x62, 0x65, 0x6e, 0x63, 0x68,
                                           0x2d, 0x73, 0x74, 0x6f, 0x72, 0x65, 0x21, 0x00};
static const uint8_t value[VLEN] = "0123456789abcdef0123456789abcdef";

struct params {
    bool smoke;
    size_t overhead_items;
    size_t tput_keys;
    size_t tput_ops; /* per thread */
    int tput_reps;
    size_t hr_keys;
    size_t hr_requests;
    size_t mt_keys;
    size_t mt_stream; /* ops drawn per thread before the clock starts; power of two */
    int mt_threads;   /* 1..mt_threads are measured */
    int mt_rounds;
    double mt_duration; /* seconds per run */
    size_t pf_batches;  /* section 5: batches of 16 GETs per run */
    int pf_rounds;
};

static unsigned failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "bench_store: check failed at line %d: %s\n", __LINE__, #cond);  \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double rng_unit(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "key:" and 12 decimal digits, zero-padded: ids below 10^12. */
static void make_key(char out[KLEN], uint64_t id)
{
    memcpy(out, "key:", 4);
    for (int i = KLEN - 1; i >= 4; i--) {
        out[i] = (char)('0' + id % 10);
        id /= 10;
    }
}

/* All keys formatted once, so no timed loop runs snprintf. */
static char *make_keys(size_t n)
{
    char *keys = malloc(n * KLEN);
    if (!keys) {
        perror("malloc");
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        make_key(keys + i * KLEN, i);
    return keys;
}

static pc_store_t *open_store(size_t limit, unsigned shards, pc_evict_policy_t policy)
{
    pc_store_config_t cfg = {
        .memory_limit = limit, .shards = shards, .policy = policy, .hash_key = bench_hash_key};
    pc_store_t *s = NULL;
    int rc = pc_store_new(&cfg, &s);

    if (rc != PC_OK) {
        fprintf(stderr, "pc_store_new: %d\n", rc);
        exit(2);
    }
    return s;
}

static const char *policy_name(pc_evict_policy_t p)
{
    return p == PC_EVICT_LRU ? "LRU" : "S3-FIFO";
}

/*
 * Zipf over ranks 1..n, P(rank i) proportional to 1 / i^alpha: the CDF is
 * tabled once and each sample is a binary search, exact for any alpha.
 */
struct zipf {
    double *cdf;
    size_t n;
};

static void zipf_init(struct zipf *z, size_t n, double alpha)
{
    double sum = 0;

    z->n = n;
    z->cdf = malloc(n * sizeof *z->cdf);
    if (!z->cdf) {
        perror("malloc");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {
        sum += pow((double)(i + 1), -alpha);
        z->cdf[i] = sum;
    }
    for (size_t i = 0; i < n; i++)
        z->cdf[i] /= sum;
}

/* A rank in [0, n): 0 is the most popular. */
static size_t zipf_next(const struct zipf *z, uint64_t *rng)
{
    double u = rng_unit(rng);
    size_t lo = 0, hi = z->n - 1;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static void zipf_free(struct zipf *z)
{
    free(z->cdf);
    z->cdf = NULL;
}

/*
 * Ranks are scattered over key ids by a fixed bijection (multiplication by
 * a constant coprime with n), so popularity is not tied to key order.
 */
static uint64_t rank_to_id(size_t rank, size_t n)
{
    uint64_t mult = 2654435761u;

    while (n % 2 == 0 ? mult % 2 == 0 : (n % mult == 0))
        mult++;
    return ((uint64_t)rank * mult) % n;
}

/* ------------------------------------------------------------------ */
/* 1. Memory overhead                                                  */
/* ------------------------------------------------------------------ */

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;

    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void bench_overhead(const struct params *p)
{
    size_t n = p->overhead_items;
    size_t limit = n * (KLEN + VLEN + PC_STORE_ITEM_OVERHEAD) * 2;
    size_t heap0, rss0, heap1, rss1;
    pc_store_t *s;
    pc_store_stats_t st0, st1;
    char key[KLEN];
    double t0, t1;

    printf("## 1. Memory per item (%zu items, %d-byte keys, %d-byte values, 64 shards, "
           "S3-FIFO)\n\n",
           n, KLEN, VLEN);
    heap0 = heap_in_use();
    rss0 = rss_bytes();
    s = open_store(limit, 0, PC_EVICT_S3FIFO);
    pc_store_stats(s, &st0);
    t0 = pc_mbench_now_s();
    for (size_t i = 0; i < n; i++) {
        make_key(key, i);
        if (pc_store_set(s, key, KLEN, value, VLEN, 0, 0, 0, PC_STORE_SET_ALWAYS, 0) != PC_OK)
            failures++;
    }
    t1 = pc_mbench_now_s();
    pc_store_stats(s, &st1);
    heap1 = heap_in_use();
    rss1 = rss_bytes();

    printf("PC_STORE_ITEM_OVERHEAD (charged)      : %zu bytes/item\n", PC_STORE_ITEM_OVERHEAD);
    printf("charged, from stats.bytes             : %.1f bytes/item\n",
           (double)(st1.bytes - st0.bytes) / (double)n - KLEN - VLEN);
    if (heap1 > heap0)
        printf("measured, malloc heap in use (mallinfo2): %.1f bytes/item\n",
               (double)(heap1 - heap0) / (double)n - KLEN - VLEN);
    else
        printf("measured, malloc heap in use (mallinfo2): n/a (allocator replaced, "
               "e.g. by a sanitizer)\n");
    if (rss1 > rss0)
        printf("measured, RSS growth                  : %.1f bytes/item\n",
               (double)(rss1 - rss0) / (double)n - KLEN - VLEN);
    printf("insert rate (1 thread, growing tables): %.2f M sets/s\n\n",
           (double)n / (t1 - t0) / 1e6);
    CHECK(st1.items == n);
    CHECK(st1.bytes <= st1.limit);
    CHECK(st1.evictions == 0);
    CHECK(pc_store_verify(s, NULL) == PC_OK);
    pc_store_free(&s);
}

/* ------------------------------------------------------------------ */
/* 2. Throughput                                                       */
/* ------------------------------------------------------------------ */

#define OP_SET 0x80000000u

struct worker {
    pc_store_t *s;
    const char *keys;
    const uint32_t *ops; /* key index, OP_SET for a set */
    size_t nops;
    uint64_t hits;
    double cpu_s;          /* CPU time this thread spent in the loop */
    double wall0, wall1;   /* when it started and finished */
    pthread_barrier_t *start;
};

/*
 * The loop works on local copies and writes its results back once: the
 * two workers' structs are neighbours in memory, and a counter bumped
 * through `w` on every hit would make the two cores fight over that cache
 * line -- measuring the benchmark, not the store.
 */
static void *worker_run(void *arg)
{
    struct worker *w = arg;
    pc_store_t *s = w->s;
    const char *keys = w->keys;
    const uint32_t *ops = w->ops;
    size_t nops = w->nops;
    uint64_t hits = 0;
    double c0, wall0;

    pthread_barrier_wait(w->start);
    wall0 = pc_mbench_now_s();
    c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    for (size_t i = 0; i < nops; i++) {
        uint32_t op = ops[i];
        const char *key = keys + (size_t)(op & ~OP_SET) * KLEN;

        if (op & OP_SET) {
            pc_store_set(s, key, KLEN, value, VLEN, 0, 0, 0, PC_STORE_SET_ALWAYS, 0);
        } else {
            pc_item_t *it;
            if (pc_store_get(s, key, KLEN, 0, &it) == PC_OK) {
                hits++;
                pc_store_release(s, it);
            }
        }
    }
    w->cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    w->wall1 = pc_mbench_now_s();
    w->wall0 = wall0;
    w->hits = hits;
    return NULL;
}

/*
 * One timed run of `threads` workers. Returns total ops per wall-clock
 * second; *per_cpu gets ops per CPU-second of the workers, which a busy
 * machine that lends us less than a core per thread does not distort: it
 * only drops when the threads get in each other's way (a lock waited on,
 * a cache line bouncing between cores).
 */
static double tput_once(pc_store_t *s, const char *keys, uint32_t *const *ops, size_t nops,
                        int threads, double *per_cpu)
{
    double cpu = 0;
    pthread_t th[2];
    struct worker w[2];
    pthread_barrier_t start;
    double t0 = 0, t1 = 0;

    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.s = s, .keys = keys, .ops = ops[i], .nops = nops, .start = &start};
        if (pthread_create(&th[i], NULL, worker_run, &w[i]) != 0) {
            perror("pthread_create");
            exit(2);
        }
    }
    pthread_barrier_wait(&start);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    /* the workers' own clocks: this thread may not run when they start */
    for (int i = 0; i < threads; i++) {
        CHECK(w[i].hits > 0);
        cpu += w[i].cpu_s;
        if (i == 0 || w[i].wall0 < t0)
            t0 = w[i].wall0;
        if (i == 0 || w[i].wall1 > t1)
            t1 = w[i].wall1;
    }
    *per_cpu = cpu > 0 ? (double)nops * threads / cpu : 0;
    return (double)nops * threads / (t1 - t0);
}

static void bench_throughput(const struct params *p)
{
    size_t n = p->tput_keys, nops = p->tput_ops;
    char *keys = make_keys(n);
    uint32_t *ops[2];
    struct zipf z;
    const double alphas[2] = {0.0, 0.99}; /* 0 = uniform */

    printf("## 2. Throughput, 90%% get / 10%% set, %zu keys preloaded (all fit), %zu ops per "
           "thread, best of %d\n\n",
           n, nops, p->tput_reps);
    printf("Load average before: %.2f. Wall-clock Mops/s, and in brackets Mops per "
           "CPU-second\nof the worker threads (lower at 2 threads = the threads slow each "
           "other down).\n\n",
           pc_mbench_loadavg());
    printf("| keys | policy | 1 thread | 2 threads | 2T / 1T (wall) | 2T / 1T (per CPU-s) |\n");
    printf("|---|---|---:|---:|---:|---:|\n");
    zipf_init(&z, n, 0.99);
    for (int t = 0; t < 2; t++) {
        ops[t] = malloc(nops * sizeof **ops);
        if (!ops[t]) {
            perror("malloc");
            exit(2);
        }
    }
    for (int a = 0; a < 2; a++) {
        for (int t = 0; t < 2; t++) {
            uint64_t rng = 1000 + (uint64_t)t;
            for (size_t i = 0; i < nops; i++) {
                size_t k = alphas[a] == 0 ? rng_next(&rng) % n : rank_to_id(zipf_next(&z, &rng), n);
                ops[t][i] = (uint32_t)k | (rng_next(&rng) % 10 == 0 ? OP_SET : 0);
            }
        }
        for (int pol = 0; pol < 2; pol++) {
            pc_evict_policy_t policy = pol ? PC_EVICT_LRU : PC_EVICT_S3FIFO;
            pc_store_t *s = open_store(n * (KLEN + VLEN + PC_STORE_ITEM_OVERHEAD) * 2, 0, policy);
            double best[3] = {0, 0, 0}, best_cpu[3] = {0, 0, 0};
            pc_store_stats_t st;

            for (size_t i = 0; i < n; i++)
                pc_store_set(s, keys + i * KLEN, KLEN, value, VLEN, 0, 0, 0,
                             PC_STORE_SET_ALWAYS, 0);
            for (int r = 0; r < p->tput_reps; r++) {
                for (int th = 1; th <= 2; th++) {
                    double per_cpu, v = tput_once(s, keys, ops, nops, th, &per_cpu);
                    if (v > best[th])
                        best[th] = v;
                    if (per_cpu > best_cpu[th])
                        best_cpu[th] = per_cpu;
                }
            }
            pc_store_stats(s, &st);
            printf("| %s | %s | %.2f (%.2f) | %.2f (%.2f) | %.2f | %.2f |\n",
                   alphas[a] == 0 ? "uniform" : "zipf 0.99", policy_name(policy), best[1] / 1e6,
                   best_cpu[1] / 1e6, best[2] / 1e6, best_cpu[2] / 1e6, best[2] / best[1],
                   best_cpu[2] / best_cpu[1]);
            CHECK(st.bytes <= st.limit);
            CHECK(st.items == n);
            pc_store_free(&s);
        }
    }
    printf("\nLoad average after: %.2f\n\n", pc_mbench_loadavg());
    zipf_free(&z);
    free(ops[0]);
    free(ops[1]);
    free(keys);
}

/* ------------------------------------------------------------------ */
/* 3. Hit ratio                                                        */
/* ------------------------------------------------------------------ */

/*
 * Replays `requests` Zipf(alpha) requests as a read-through cache: GET,
 * and on a miss SET the key. The trace is regenerated from the same seed
 * for each policy, so both see the very same requests.
 */
static double hit_ratio(const struct zipf *z, const char *keys, size_t requests, double frac,
                        unsigned shards, pc_evict_policy_t policy)
{
    size_t per_item = KLEN + VLEN + PC_STORE_ITEM_OVERHEAD;
    size_t n = z->n;
    pc_store_t *probe = open_store((size_t)1 << 30, shards, policy);
    pc_store_stats_t st;
    size_t fixed, limit;
    uint64_t rng = 42;
    pc_store_t *s;

    /* cache size = frac of the key space, in items, plus the fixed share */
    pc_store_stats(probe, &st);
    fixed = st.bytes;
    pc_store_free(&probe);
    limit = fixed + (size_t)(frac * (double)n) * per_item;
    s = open_store(limit, shards, policy);

    for (size_t i = 0; i < requests; i++) {
        const char *key = keys + rank_to_id(zipf_next(z, &rng), n) * KLEN;
        pc_item_t *it;

        if (pc_store_get(s, key, KLEN, 0, &it) == PC_OK)
            pc_store_release(s, it);
        else
            pc_store_set(s, key, KLEN, value, VLEN, 0, 0, 0, PC_STORE_SET_ALWAYS, 0);
    }
    pc_store_stats(s, &st);
    CHECK(st.hits + st.misses == requests);
    CHECK(st.hits > 0 && st.misses > 0);
    CHECK(st.bytes <= st.limit);
    CHECK(pc_store_verify(s, NULL) == PC_OK);
    pc_store_free(&s);
    return (double)st.hits / (double)requests;
}

static void bench_hit_ratio(const struct params *p)
{
    static const double alphas[] = {0.7, 0.9, 0.99, 1.2};
    static const double fracs[] = {0.01, 0.05, 0.10};
    size_t n = p->hr_keys;
    char *keys = make_keys(n);
    double wins = 0, cells = 0;

    printf("## 3. Hit ratio, read-through Zipf traces: %zu keys, %zu requests, 64 shards\n\n",
           n, p->hr_requests);
    printf("| alpha | cache (%% of keys) | LRU | S3-FIFO | S3-FIFO - LRU |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    for (size_t a = 0; a < sizeof alphas / sizeof *alphas; a++) {
        struct zipf z;

        zipf_init(&z, n, alphas[a]);
        for (size_t f = 0; f < sizeof fracs / sizeof *fracs; f++) {
            double lru = hit_ratio(&z, keys, p->hr_requests, fracs[f], 0, PC_EVICT_LRU);
            double s3 = hit_ratio(&z, keys, p->hr_requests, fracs[f], 0, PC_EVICT_S3FIFO);

            printf("| %.2f | %.0f%% | %.4f | %.4f | %+.4f |\n", alphas[a], fracs[f] * 100, lru,
                   s3, s3 - lru);
            fflush(stdout);
            CHECK(lru > 0 && lru < 1);
            CHECK(s3 > 0 && s3 < 1);
            wins += s3 > lru;
            cells++;
        }
        zipf_free(&z);
    }
    printf("\nS3-FIFO ahead in %.0f of %.0f cells.\n\n", wins, cells);

    /* The same trace with one shard: how much the per-shard budgets cost. */
    if (!p->smoke) {
        struct zipf z;

        printf("Sharding effect (alpha 0.99): hit ratio with 1 shard vs 64 shards\n\n");
        printf("| cache | LRU 1 shard | LRU 64 | S3-FIFO 1 shard | S3-FIFO 64 |\n");
        printf("|---:|---:|---:|---:|---:|\n");
        zipf_init(&z, n, 0.99);
        for (size_t f = 0; f < sizeof fracs / sizeof *fracs; f++) {
            printf("| %.0f%% | %.4f | %.4f | %.4f | %.4f |\n", fracs[f] * 100,
                   hit_ratio(&z, keys, p->hr_requests, fracs[f], 1, PC_EVICT_LRU),
                   hit_ratio(&z, keys, p->hr_requests, fracs[f], 64, PC_EVICT_LRU),
                   hit_ratio(&z, keys, p->hr_requests, fracs[f], 1, PC_EVICT_S3FIFO),
                   hit_ratio(&z, keys, p->hr_requests, fracs[f], 64, PC_EVICT_S3FIFO));
            fflush(stdout);
        }
        printf("\n");
        zipf_free(&z);
    }
    free(keys);
}

/* ------------------------------------------------------------------ */
/* 4. Scaling across threads                                           */
/* ------------------------------------------------------------------ */

#define MT_VLEN 100
#define MT_SET_PCT 30
#define MT_MAX_THREADS 64
#define MT_STOP_EVERY 64 /* ops between two looks at the stop flag */

static uint8_t mt_value[MT_VLEN];

/*
 * One thread of a run. Each worker has its own line(s): the loop only
 * reads the fields above `done` and keeps its counts in locals, written
 * back once at the end, so no cache line is shared on the hot path but
 * the read-only stop flag (and the store itself).
 */
struct mt_worker {
    alignas(64) pc_store_t *s;
    const char *keys;
    const uint32_t *ops; /* key index, OP_SET for a set; cycled */
    size_t mask;         /* stream length - 1 */
    atomic_bool *stop;
    pthread_barrier_t *start;
    uint64_t done, gets, hits;
    double cpu_s, wall0, wall1;
};

static struct mt_worker mt_workers[MT_MAX_THREADS];

static void *mt_run(void *arg)
{
    struct mt_worker *w = arg;
    pc_store_t *s = w->s;
    const char *keys = w->keys;
    const uint32_t *ops = w->ops;
    size_t mask = w->mask, i = 0;
    uint64_t done = 0, gets = 0, hits = 0;
    double c0, wall0;

    pthread_barrier_wait(w->start);
    wall0 = pc_mbench_now_s();
    c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
        for (unsigned j = 0; j < MT_STOP_EVERY; j++, i++) {
            uint32_t op = ops[i & mask];
            const char *key = keys + (size_t)(op & ~OP_SET) * KLEN;

            if (op & OP_SET) {
                pc_store_set(s, key, KLEN, mt_value, MT_VLEN, 0, 0, 0, PC_STORE_SET_ALWAYS, 0);
            } else {
                pc_item_t *it;

                gets++;
                if (pc_store_get(s, key, KLEN, 0, &it) == PC_OK) {
                    hits++;
                    pc_store_release(s, it);
                }
            }
        }
        done += MT_STOP_EVERY;
    }
    w->cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    w->wall1 = pc_mbench_now_s();
    w->wall0 = wall0;
    w->done = done;
    w->gets = gets;
    w->hits = hits;
    return NULL;
}

static void sleep_s(double sec)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)sec;
    until.tv_nsec += (long)((sec - (double)(time_t)sec) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) != 0)
        ;
}

/*
 * One run: `threads` workers on the shared store for `sec` seconds.
 * Returns all threads' ops per wall-clock second (first start to last
 * stop); *per_cpu gets ops per CPU-second of the workers.
 */
static double mt_once(pc_store_t *s, const char *keys, uint32_t *const *ops, size_t stream,
                      int threads, double sec, double *per_cpu)
{
    pthread_t th[MT_MAX_THREADS];
    pthread_barrier_t start;
    atomic_bool stop;
    uint64_t done = 0, gets = 0, hits = 0;
    double cpu = 0, t0 = 0, t1 = 0;

    atomic_init(&stop, false);
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        mt_workers[i] = (struct mt_worker){.s = s, .keys = keys, .ops = ops[i],
                                           .mask = stream - 1, .stop = &stop, .start = &start};
        if (pthread_create(&th[i], NULL, mt_run, &mt_workers[i]) != 0) {
            perror("pthread_create");
            exit(2);
        }
    }
    pthread_barrier_wait(&start);
    sleep_s(sec);
    atomic_store_explicit(&stop, true, memory_order_relaxed);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < threads; i++) {
        const struct mt_worker *w = &mt_workers[i];

        done += w->done;
        gets += w->gets;
        hits += w->hits;
        cpu += w->cpu_s;
        if (i == 0 || w->wall0 < t0)
            t0 = w->wall0;
        if (i == 0 || w->wall1 > t1)
            t1 = w->wall1;
    }
    CHECK(gets > 0);
    CHECK(hits == gets); /* every key is preloaded and fits */
    *per_cpu = cpu > 0 ? (double)done / cpu : 0;
    return t1 > t0 ? (double)done / (t1 - t0) : 0;
}

static void bench_scaling(const struct params *p)
{
    size_t n = p->mt_keys, stream = p->mt_stream;
    int nt = p->mt_threads, rounds = p->mt_rounds;
    char *keys = make_keys(n);
    uint32_t *ops[MT_MAX_THREADS];
    double *rate = malloc((size_t)(nt + 1) * (size_t)rounds * sizeof *rate);
    double *cpu = malloc((size_t)(nt + 1) * (size_t)rounds * sizeof *cpu);
    struct zipf z;
    const double alphas[2] = {0.0, 0.99}; /* 0 = uniform */

    if (!rate || !cpu) {
        perror("malloc");
        exit(2);
    }
    memset(mt_value, 'v', sizeof mt_value);
    printf("## 4. Scaling across threads: %d%% get / %d%% set, %d-byte values, %zu keys "
           "preloaded (all fit),\nS3-FIFO, 64 shards, one shared store; %g s per run, "
           "%d round(s), thread counts alternated\n\n",
           100 - MT_SET_PCT, MT_SET_PCT, MT_VLEN, n, p->mt_duration, rounds);
    printf("Load average before: %.2f. Medians over the rounds. Mops/s counts every get and "
           "set\nof all threads per wall-clock second; per CPU-s divides by the workers' CPU "
           "time\ninstead (it only drops when the threads slow each other down).\n\n",
           pc_mbench_loadavg());
    printf("| keys | threads | Mops/s | per thread | vs 1 thread | min-max | Mops per CPU-s |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    zipf_init(&z, n, 0.99);
    for (int t = 0; t < nt; t++) {
        ops[t] = malloc(stream * sizeof **ops);
        if (!ops[t]) {
            perror("malloc");
            exit(2);
        }
    }
    for (int a = 0; a < 2; a++) {
        pc_store_t *s = open_store(n * (KLEN + MT_VLEN + PC_STORE_ITEM_OVERHEAD) * 2, 0,
                                   PC_EVICT_S3FIFO);
        pc_store_stats_t st;
        double base = 0;

        /* Each thread's own seeded RNG draws its key and op stream up front. */
        for (int t = 0; t < nt; t++) {
            uint64_t rng = 4000 + (uint64_t)t;

            for (size_t i = 0; i < stream; i++) {
                size_t k = alphas[a] == 0 ? rng_next(&rng) % n
                                          : rank_to_id(zipf_next(&z, &rng), n);
                ops[t][i] = (uint32_t)k | (rng_next(&rng) % 100 < MT_SET_PCT ? OP_SET : 0);
            }
        }
        for (size_t i = 0; i < n; i++)
            pc_store_set(s, keys + i * KLEN, KLEN, mt_value, MT_VLEN, 0, 0, 0,
                         PC_STORE_SET_ALWAYS, 0);
        for (int r = 0; r < rounds; r++) {
            for (int k = 0; k < nt; k++) {
                int th = r % 2 == 0 ? k + 1 : nt - k; /* 1..N, then N..1 */

                rate[th * rounds + r] =
                    mt_once(s, keys, ops, stream, th, p->mt_duration, &cpu[th * rounds + r]);
            }
        }
        for (int th = 1; th <= nt; th++) {
            const double *v = &rate[th * rounds];
            double med = pc_mbench_median(v, rounds), lo = v[0], hi = v[0];

            for (int r = 1; r < rounds; r++) {
                lo = v[r] < lo ? v[r] : lo;
                hi = v[r] > hi ? v[r] : hi;
            }
            if (th == 1)
                base = med;
            printf("| %s | %d | %.2f | %.2f | %.2f | %.2f-%.2f | %.2f |\n",
                   alphas[a] == 0 ? "uniform" : "zipf 0.99", th, med / 1e6, med / th / 1e6,
                   base > 0 ? med / base : 0, lo / 1e6, hi / 1e6,
                   pc_mbench_median(&cpu[th * rounds], rounds) / 1e6);
        }
        pc_store_stats(s, &st);
        CHECK(st.items == n);
        CHECK(st.evictions == 0);
        CHECK(st.bytes <= st.limit);
        CHECK(pc_store_verify(s, NULL) == PC_OK);
        pc_store_free(&s);
    }
    printf("\nLoad average after: %.2f\n\n", pc_mbench_loadavg());
    zipf_free(&z);
    for (int t = 0; t < nt; t++)
        free(ops[t]);
    free(rate);
    free(cpu);
    free(keys);
}

/* A whole number in [lo, hi], or exit 2. */
/* ------------------------------------------------------------------ */
/* 5. Prefetch                                                         */
/* ------------------------------------------------------------------ */

#define PF_BATCH 16
#define PF_VLEN 100

/* ns per GET over p->pf_batches batches of random keys; each batch is
 * prefetched first when `prefetch`. */
static double pf_once(pc_store_t *s, const char *keys, size_t nkeys, const struct params *p,
                      bool prefetch, uint64_t seed)
{
    uint64_t rng = seed;
    size_t hits = 0;
    double t0 = pc_mbench_now_s();
    for (size_t b = 0; b < p->pf_batches; b++) {
        const void *k[PF_BATCH];
        size_t kl[PF_BATCH];
        for (int i = 0; i < PF_BATCH; i++) {
            k[i] = keys + (rng_next(&rng) % nkeys) * KLEN;
            kl[i] = KLEN;
        }
        if (prefetch)
            pc_store_prefetch(s, k, kl, PF_BATCH);
        for (int i = 0; i < PF_BATCH; i++) {
            pc_item_t *it;
            if (pc_store_get(s, k[i], kl[i], 0, &it) == PC_OK) {
                hits += pc_item_value(it)[0] == 'v';
                pc_store_release(s, it);
            }
        }
    }
    double t = pc_mbench_now_s() - t0;
    CHECK(hits == p->pf_batches * PF_BATCH);
    return t * 1e9 / (double)(p->pf_batches * PF_BATCH);
}

static void bench_prefetch(const struct params *p)
{
    static const size_t sizes[] = {10000, 100000, 1000000};
    uint8_t v[PF_VLEN];
    memset(v, 'v', sizeof v);
    printf("## 5. prefetch: GETs in batches of %d, %d-byte values, uniform keys, 1 thread\n\n",
           PF_BATCH, PF_VLEN);
    printf("| keys | ns/GET plain | ns/GET prefetched | ratio |\n|---|---|---|---|\n");
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        size_t n = p->smoke ? sizes[z] / 100 : sizes[z];
        char *keys = make_keys(n);
        pc_store_t *s = open_store((size_t)1 << 30, 64, PC_EVICT_S3FIFO);
        for (size_t i = 0; i < n; i++)
            CHECK(pc_store_set(s, keys + i * KLEN, KLEN, v, sizeof v, 0, 0, 0,
                               PC_STORE_SET_ALWAYS, 0) == PC_OK);
        double plain[64], pre[64];
        int r = p->pf_rounds < 64 ? p->pf_rounds : 64;
        for (int i = 0; i < r; i++) { /* alternated, the order swapped every round */
            uint64_t seed = 1000 + (uint64_t)i;
            if (i % 2) {
                pre[i] = pf_once(s, keys, n, p, true, seed);
                plain[i] = pf_once(s, keys, n, p, false, seed);
            } else {
                plain[i] = pf_once(s, keys, n, p, false, seed);
                pre[i] = pf_once(s, keys, n, p, true, seed);
            }
        }
        double mp = pc_mbench_median(plain, r), mf = pc_mbench_median(pre, r);
        printf("| %zu | %.1f | %.1f | %.2f |\n", n, mp, mf, mf / mp);
        pc_store_free(&s);
        free(keys);
    }
    printf("\n");
}

static long arg_long(const char *opt, const char *v, long lo, long hi)
{
    char *end;
    long x;

    errno = 0;
    x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "bench_store: %s wants a whole number in [%ld, %ld]\n", opt, lo, hi);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv)
{
    struct params p = {
        .overhead_items = 1000000,
        .tput_keys = 100000,
        .tput_ops = 4000000,
        .tput_reps = 3,
        .hr_keys = 1000000,
        .hr_requests = 10000000,
        .mt_keys = 100000,
        .mt_stream = (size_t)1 << 20,
        .mt_threads = 2,
        .mt_rounds = 5,
        .mt_duration = 2.0,
        .pf_batches = 200000,
        .pf_rounds = 7,
    };

    bool sel[5] = {false, false, false, false, false}, any = false, mt_opt = false;
    static const char *const names[5] = {"memory", "throughput", "hitratio", "threads",
                                         "prefetch"};
    int threads = 0, rounds = 0;
    double duration = 0;

    for (int i = 1; i < argc; i++) {
        bool known = false;

        if (strcmp(argv[i], "--smoke") == 0) {
            p.smoke = known = true;
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = (int)arg_long(argv[i], argv[i + 1], 1, MT_MAX_THREADS);
            mt_opt = true;
            i++;
            continue;
        } else if (strcmp(argv[i], "--rounds") == 0) {
            rounds = (int)arg_long(argv[i], argv[i + 1], 1, 1000);
            mt_opt = true;
            i++;
            continue;
        } else if (strcmp(argv[i], "--duration") == 0) {
            char *end;

            duration = i + 1 < argc ? strtod(argv[i + 1], &end) : 0;
            if (i + 1 >= argc || end == argv[i + 1] || *end || !(duration > 0) ||
                duration > 3600) {
                fprintf(stderr, "bench_store: --duration wants seconds in (0, 3600]\n");
                return 2;
            }
            mt_opt = true;
            i++;
            continue;
        }
        for (int k = 0; k < 5; k++) {
            if (strcmp(argv[i], names[k]) == 0)
                sel[k] = any = known = true;
        }
        if (!known) {
            fprintf(stderr,
                    "usage: %s [--smoke] [memory] [throughput] [hitratio] [threads] [prefetch]\n"
                    "       [--threads N] [--rounds R] [--duration S]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!any) {
        /* --threads, --rounds or --duration alone: only the section they tune */
        sel[3] = true;
        if (!mt_opt)
            sel[0] = sel[1] = sel[2] = sel[4] = true;
    }
    if (p.smoke) {
        p = (struct params){
            .smoke = true,
            .overhead_items = 20000,
            .tput_keys = 5000,
            .tput_ops = 50000,
            .tput_reps = 1,
            .hr_keys = 20000,
            .hr_requests = 60000,
            .mt_keys = 5000,
            .mt_stream = (size_t)1 << 12,
            .mt_threads = 2,
            .mt_rounds = 1,
            .mt_duration = 0.05,
            .pf_batches = 200,
            .pf_rounds = 1,
        };
    }
    if (threads)
        p.mt_threads = threads;
    if (rounds)
        p.mt_rounds = rounds;
    if (duration > 0)
        p.mt_duration = duration;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# bench_store%s (item overhead charged: %zu bytes)\n\n", p.smoke ? " --smoke" : "",
           PC_STORE_ITEM_OVERHEAD);
    if (sel[0])
        bench_overhead(&p);
    if (sel[1])
        bench_throughput(&p);
    if (sel[2])
        bench_hit_ratio(&p);
    if (sel[3])
        bench_scaling(&p);
    if (sel[4])
        bench_prefetch(&p);
    if (failures) {
        fprintf(stderr, "bench_store: %u sanity check(s) failed\n", failures);
        return 1;
    }
    return 0;
}
