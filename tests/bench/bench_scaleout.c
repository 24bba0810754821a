/*
 * bench_scaleout.c -- the cluster-wide hit ratio while a cluster grows
 * from 3 to 4 nodes under a steady Zipf read load, with hand-off and
 * without (--handoff-rate 0: new owners read moved keys from Redis).
 *
 *   bench_scaleout            full run: 3 rounds per mode, alternating,
 *                             50,000 keys (about 85 s on 2 cores)
 *   bench_scaleout --smoke    one short round per mode for CI (~13 s):
 *                             10,000 keys, 1 s before the join, 3 s after
 *   --keys N                  keys preloaded into Redis
 *   --rounds N                rounds per mode
 *   --seconds S               load after the join (default 8)
 *   --json                    figures as one JSON object on stdout; the
 *                             human report goes to stderr
 *
 * One round: redis-server and 3 peercached on loopback (membership timers
 * as in test_cluster, --ring-settle 2s, memory for every key, the mode's
 * --handoff-rate); K keys of 100 bytes written straight to Redis
 * (pipelined); every key read once through a ring-aware client; then a
 * few client threads read Zipf(0.99)-distributed keys, each to its owner,
 * while the main thread reads STATS of every running node every 250 ms.
 * After 3 s a 4th node joins, with the same flags; the load goes on for
 * 8 s more. Then every process is stopped with SIGTERM and must exit 0.
 *
 * The warm-up waits until the three nodes' settle windows are over (a
 * probe key read through each node comes back with no expiry), because a
 * copy made inside a settle window expires within 2 x ring-settle
 * (docs/CONSISTENCY.md, section 4) and would show up after the join as
 * misses that have nothing to do with it; and until every node serves
 * from all its loops (STATS home_loops > 1 on a node of several loops),
 * so that the warm-up never overlaps the moment a node turns its home
 * loops on. The warm-up then checks that no copy it made was capped.
 *
 * The hit ratio of a window is (hits) / (hits + misses) of the store
 * lookups of all running nodes in it (the 4th node counts from its start:
 * its counters begin at 0). Per round: the ratio over the whole time
 * before the join, the lowest 250 ms window after it, the ratio over the
 * first 2 s after and over the whole time after, the entries the new node
 * received by hand-off, and the Redis reads of all nodes after the join.
 * The summary gives medians across rounds. Also printed: the share of
 * keys whose owner changed (pc_ring, 3- against 4-member ring) and the
 * share of reads that go to them under the Zipf weights -- the naive
 * expectation is that, without hand-off, the hit ratio falls by that much.
 *
 * The load is paced (a fixed total request rate, CLIENT_THREADS threads),
 * so that both modes see the same offered load and the two shared cores
 * keep room for the nodes' 100 ms membership probes; an unpaced load can
 * starve them and make a member suspect, which would change the ring in
 * the middle of the measurement.
 *
 * Exits 1 if a sanity check fails: a client error or a wrong value, a
 * process that does not exit 0, a warm-up copy that was capped, a
 * cluster that does not converge on 4 members, a hit ratio below 99%
 * before the join, entries handed off without hand-off or none with it.
 * The comparison itself is printed, never checked.
 *
 * Key sequences come from fixed seeds: round i of each mode replays the
 * same per-thread sequences. Node ports (hence member names, hence which
 * keys move) differ from round to round.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "pc_client.h"
#include "pc_harness.h"
#include "pc_proto.h"
#include "pc_ring.h"

#define NODES 4
#define VALUE_LEN 100
#define ZIPF_S 0.99
#define WINDOW_MS 250
#define FIRST_MS 2000 /* "the first 2 s after the join" */
#define CLIENT_THREADS 3
#define MGET_BATCH 500
#define PRELOAD_BATCH 1000

static const char *const FAST[] = {"--probe-interval", "200ms", "--probe-timeout", "100ms",
                                   "--gossip-interval", "50ms", "--ring-settle", "2s",
                                   "--peer-timeout", "1000ms", NULL};

typedef struct params {
    bool smoke;
    bool json;
    int keys;
    int rounds;  /* per mode */
    int pre_ms;  /* load before the join */
    int post_ms; /* load after the join */
    int rate;    /* requests per second, all client threads together */
} params_t;

typedef struct mode {
    const char *name;
    const char *rate; /* --handoff-rate */
    bool handoff;
} bench_mode_t;

static const bench_mode_t MODES[2] = {
    {"hand-off", "64mb", true},
    {"no hand-off", "0", false},
};

static FILE *out; /* the human report: stdout, or stderr with --json */
static unsigned failures;

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "bench_scaleout: check failed: %s: ", #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* ---- keys, values, Zipf ------------------------------------------------- */

static int make_key(char *buf, size_t cap, int id)
{
    return snprintf(buf, cap, "k:%d", id);
}

/* 100 bytes: "v:<id>:" then a letter that depends on the id. */
static void make_value(uint8_t *buf, int id)
{
    int n = snprintf((char *)buf, VALUE_LEN, "v:%d:", id);
    memset(buf + n, 'a' + id % 26, (size_t)(VALUE_LEN - n));
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double uniform(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

/*
 * Zipf(s) over ranks 0..n-1 (P(rank r) proportional to 1 / (r+1)^s) by
 * inversion: a precomputed CDF and a binary search. Rank r is key "k:r";
 * the ring hashes keys, so hot keys are spread over the members like any
 * others.
 */
typedef struct zipf {
    double *cdf;
    int n;
} zipf_t;

static void zipf_init(zipf_t *z, int n, double s)
{
    z->n = n;
    z->cdf = malloc((size_t)n * sizeof *z->cdf);
    if (z->cdf == NULL) {
        perror("malloc");
        exit(2);
    }
    double sum = 0;
    for (int r = 0; r < n; r++) {
        sum += pow(r + 1.0, -s);
        z->cdf[r] = sum;
    }
    for (int r = 0; r < n; r++)
        z->cdf[r] /= sum;
    z->cdf[n - 1] = 1.0;
}

static int zipf_next(const zipf_t *z, uint64_t *state)
{
    double u = uniform(state);
    int lo = 0, hi = z->n - 1; /* the first rank whose cdf exceeds u */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static double zipf_p(const zipf_t *z, int r)
{
    return r == 0 ? z->cdf[0] : z->cdf[r] - z->cdf[r - 1];
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

/* ---- node STATS and CLUSTER over the raw protocol ------------------------ */

enum {
    S_HITS,
    S_MISSES,
    S_BACKEND_READS,
    S_HANDOFF_RECEIVED,
    S_HANDOFF_REFUSED,
    S_HANDOFF_ACTIVE,
    S_STALE_DROPPED,
    S_SETTLE_CAPPED,
    S_ALIVE,
    S_SUSPECT,
    S_FORWARDED,
    S_THREADS,
    S_HOME_LOOPS,
    NSTAT
};

static const char *const STAT_NAMES[NSTAT] = {
    "hits",          "misses",         "backend_reads",
    "handoff_received", "handoff_refused", "handoff_active",
    "stale_dropped", "settle_capped",  "cluster_members_alive",
    "cluster_members_suspect", "forwarded", "threads", "home_loops",
};

typedef struct nstats {
    bool ok;
    uint64_t fp; /* the node's ring fingerprint, from the reply */
    int64_t v[NSTAT];
} nstats_t;

static int on_stats(void *arg, int index, const pc_response_t *r)
{
    nstats_t *s = arg;
    (void)index;
    if (r->op != PC_OP_STATS || r->status != PC_ST_OK)
        return 1;
    s->fp = r->ring_fp;
    for (uint32_t k = 0; k < r->nstats; k++) {
        for (int i = 0; i < NSTAT; i++) {
            if (r->stats[k].name.len == strlen(STAT_NAMES[i]) &&
                memcmp(r->stats[k].name.ptr, STAT_NAMES[i], r->stats[k].name.len) == 0)
                s->v[i] = r->stats[k].value;
        }
    }
    s->ok = true;
    return 0;
}

/* One raw request to a node; fn sees the reply. 0 or -1. */
static int ask(const pc_h_proc_t *node, uint32_t op, pc_h_response_fn fn, void *arg)
{
    int fd = pc_h_connect(node->port, 2000);
    if (fd < 0)
        return -1;
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t rq = {.op = op, .id = 1};
    int ok = pc_proto_encode_request(&b, &rq) == 0 && pc_h_send_all(fd, &b) == 0 &&
             pc_h_read_responses(fd, 1, fn, arg) == 1;
    pc_buf_free(&b);
    close(fd);
    return ok ? 0 : -1;
}

static void stats_of(const pc_h_proc_t *node, nstats_t *s)
{
    memset(s, 0, sizeof *s);
    if (ask(node, PC_OP_STATS, on_stats, s) != 0)
        s->ok = false;
}

/* The members that hold keys (alive or suspect), by name. */
typedef struct members {
    int n;
    char names[NODES][64];
} members_t;

static int on_cluster(void *arg, int index, const pc_response_t *r)
{
    members_t *m = arg;
    (void)index;
    if (r->op != PC_OP_CLUSTER || r->status != PC_ST_OK)
        return 1;
    m->n = 0;
    for (uint32_t k = 0; k < r->nmembers; k++) {
        const pc_cluster_member_t *cm = &r->members[k];
        if ((cm->state == PC_WIRE_ALIVE || cm->state == PC_WIRE_SUSPECT) && m->n < NODES) {
            snprintf(m->names[m->n], sizeof m->names[0], "%.*s", (int)cm->name.len,
                     (const char *)cm->name.ptr);
            m->n++;
        }
    }
    return 0;
}

static pc_ring_t *ring_of(const members_t *m)
{
    pc_ring_member_t rm[NODES];
    for (int i = 0; i < m->n; i++)
        rm[i] = (pc_ring_member_t){.name = m->names[i], .weight = 1};
    pc_ring_t *r = NULL;
    return pc_ring_new(rm, (size_t)m->n, 1, &r) == 0 ? r : NULL;
}

/* ---- processes --------------------------------------------------------- */

typedef struct cluster {
    pc_h_proc_t redis;
    pc_h_proc_t node[NODES];
    bool up[NODES];
    const bench_mode_t *mode;
    char memory[32];
    redisContext *rc;
} cluster_t;

static int node_up(cluster_t *cl, int i, const char *seed)
{
    const char *args[32];
    int n = 0;
    args[n++] = "--redis";
    args[n++] = cl->redis.addr;
    for (int k = 0; FAST[k]; k++)
        args[n++] = FAST[k];
    args[n++] = "--memory";
    args[n++] = cl->memory;
    args[n++] = "--handoff-rate";
    args[n++] = cl->mode->rate;
    if (seed) {
        args[n++] = "--join";
        args[n++] = seed;
    }
    args[n] = NULL;
    if (pc_h_node_start(&cl->node[i], args) != 0)
        return -1;
    cl->up[i] = true;
    return 0;
}

/* SIGTERM to every process, nodes newest first (each leaves gracefully
 * and, with hand-off, gives its keys to the others); each must exit 0. */
static int cluster_down(cluster_t *cl)
{
    int bad = 0;
    for (int i = NODES - 1; i >= 0; i--) {
        if (!cl->up[i])
            continue;
        int st = pc_h_stop(&cl->node[i], SIGTERM, 15000);
        cl->up[i] = false;
        if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            fprintf(stderr, "bench_scaleout: node %d exited with status %d\n", i, st);
            bad++;
        }
    }
    if (cl->rc)
        redisFree(cl->rc);
    cl->rc = NULL;
    if (cl->redis.pid > 0) {
        int st = pc_h_stop(&cl->redis, SIGTERM, 10000);
        if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            fprintf(stderr, "bench_scaleout: redis-server exited with status %d\n", st);
            bad++;
        }
    }
    return bad ? -1 : 0;
}

/* Every node in [0, n) has the other n-1 alive, none suspect, one ring. */
typedef struct converge_arg {
    cluster_t *cl;
    int n;
} converge_arg_t;

static bool stats_converged(const nstats_t *s, int n)
{
    for (int i = 0; i < n; i++) {
        if (!s[i].ok || s[i].v[S_ALIVE] != n || s[i].v[S_SUSPECT] != 0 || s[i].fp == 0 ||
            s[i].fp != s[0].fp)
            return false;
    }
    return true;
}

static int converged(void *p)
{
    converge_arg_t *a = p;
    nstats_t s[NODES];
    int n = a->n < NODES ? a->n : NODES; /* (says so to gcc -O3's bounds check) */
    for (int i = 0; i < n; i++)
        stats_of(&a->cl->node[i], &s[i]);
    return stats_converged(s, n);
}

/* Every node in [0, n) serves from all its loops (home loops on): the
 * state in which the hit ratio before the join is measured. Until then a
 * node turns its homes on at a moment of its own, and a warm-up that
 * overlapped it would measure that moment. STATS home_loops is 1 while
 * they are off and more while they are on -- the loop count, or with
 * Redis behind at most 8 (ARCHITECTURE.md, Threads), so not `threads`
 * on a node of more loops; a node of one loop has nothing to turn on. */
static int homes_on(void *p)
{
    converge_arg_t *a = p;
    int n = a->n < NODES ? a->n : NODES;
    for (int i = 0; i < n; i++) {
        nstats_t s = {0};
        stats_of(&a->cl->node[i], &s);
        if (!s.ok || s.v[S_THREADS] < 1 || (s.v[S_THREADS] > 1 && s.v[S_HOME_LOOPS] < 2))
            return 0;
    }
    return 1;
}

/* ---- preload and warm-up ------------------------------------------------- */

static int preload(redisContext *rc, int keys)
{
    char key[32];
    uint8_t val[VALUE_LEN];
    for (int base = 0; base < keys; base += PRELOAD_BATCH) {
        int n = keys - base < PRELOAD_BATCH ? keys - base : PRELOAD_BATCH;
        for (int i = 0; i < n; i++) {
            int klen = make_key(key, sizeof key, base + i);
            make_value(val, base + i);
            redisAppendCommand(rc, "SET %b %b", key, (size_t)klen, val, (size_t)VALUE_LEN);
        }
        for (int i = 0; i < n; i++) {
            redisReply *r = NULL;
            if (redisGetReply(rc, (void **)&r) != REDIS_OK || r == NULL ||
                r->type != REDIS_REPLY_STATUS) {
                if (r)
                    freeReplyObject(r);
                fprintf(stderr, "bench_scaleout: preload SET failed\n");
                return -1;
            }
            freeReplyObject(r);
        }
    }
    return 0;
}

/*
 * True once a key read through each member comes back with no expiry:
 * its settle window is over, so what it caches now is kept. Each try
 * uses a fresh key (written to Redis first), since a key read inside the
 * window stays cached with its capped expiry.
 */
typedef struct settle_arg {
    cluster_t *cl;
    pc_client_t *c;
    pc_ring_t *ring;
    int next;
} settle_arg_t;

static int settled(void *p)
{
    settle_arg_t *a = p;
    bool done[NODES] = {false};
    int left = (int)pc_ring_size(a->ring);
    for (int tries = 0; tries < 64 && left > 0; tries++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "probe:%d", a->next++);
        long o = pc_ring_owner(a->ring, key, (size_t)klen);
        if (o < 0 || done[o])
            continue;
        redisReply *r = redisCommand(a->cl->rc, "SET %s x", key);
        if (r)
            freeReplyObject(r);
        pc_value_t v;
        if (pc_client_get(a->c, key, (size_t)klen, &v) == 0 && v.ttl_ms == -1) {
            done[o] = true;
            left--;
        }
        pc_value_free(&v);
    }
    return left == 0;
}

/* Reads every key once (MGET batches, each key to its owner). Returns
 * the number of copies whose expiry was capped, or -1. */
static long warm(pc_client_t *c, int keys)
{
    static char kb[MGET_BATCH][32];
    const void *kp[MGET_BATCH];
    size_t kl[MGET_BATCH];
    long capped = 0;
    for (int base = 0; base < keys; base += MGET_BATCH) {
        int n = keys - base < MGET_BATCH ? keys - base : MGET_BATCH;
        for (int i = 0; i < n; i++) {
            kl[i] = (size_t)make_key(kb[i], sizeof kb[i], base + i);
            kp[i] = kb[i];
        }
        pc_mget_item_t *items = NULL;
        int rc = pc_client_mget(c, (size_t)n, kp, kl, &items);
        if (rc != 0) {
            fprintf(stderr, "bench_scaleout: warm-up MGET: %s\n", pc_client_errmsg(c));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (items[i].status != 0 || items[i].value.len != VALUE_LEN) {
                fprintf(stderr, "bench_scaleout: warm-up: %s status %d\n", kb[i],
                        items[i].status);
                pc_mget_free(items, (size_t)n);
                return -1;
            }
            if (items[i].value.ttl_ms != -1)
                capped++;
        }
        pc_mget_free(items, (size_t)n);
    }
    return capped;
}

/* ---- the load ------------------------------------------------------------ */

typedef struct loader {
    pthread_t tid;
    const zipf_t *z;
    const char *seeds;
    uint64_t rng;
    uint64_t interval_ns; /* between two requests of this thread */
    atomic_bool *stop;
    atomic_long ops;
    long errors, wrong;
    char first_error[160];
    pc_client_counters_t cc;
} loader_t;

/*
 * Paced closed loop: request i is due at start + i x interval; a thread
 * that falls behind sends at once but never more than 50 ms of backlog
 * (then it drops the missed slots), so a stall does not turn into a
 * burst.
 */
static void *load_run(void *p)
{
    loader_t *l = p;
    pc_client_options_t o = {.nodes = l->seeds, .timeout_ms = 3000};
    pc_client_t *c = NULL;
    if (pc_client_new(&o, &c) != 0) {
        snprintf(l->first_error, sizeof l->first_error, "pc_client_new failed");
        l->errors++;
        return NULL;
    }
    uint8_t want[VALUE_LEN];
    uint64_t due = now_ns();
    while (!atomic_load_explicit(l->stop, memory_order_relaxed)) {
        uint64_t t = now_ns();
        if (t < due)
            sleep_until_ns(due);
        else if (t - due > 50000000u)
            due = t;
        due += l->interval_ns;
        int id = zipf_next(l->z, &l->rng);
        char key[32];
        int klen = make_key(key, sizeof key, id);
        pc_value_t v;
        int rc = pc_client_get(c, key, (size_t)klen, &v);
        if (rc != 0) {
            if (l->errors++ == 0)
                snprintf(l->first_error, sizeof l->first_error, "GET %s: %s (%s)", key,
                         pc_strerror(rc), pc_client_errmsg(c));
        } else {
            make_value(want, id);
            if (v.len != VALUE_LEN || memcmp(v.data, want, VALUE_LEN) != 0)
                l->wrong++;
        }
        pc_value_free(&v);
        atomic_fetch_add_explicit(&l->ops, 1, memory_order_relaxed);
    }
    pc_client_counters(c, &l->cc);
    pc_client_free(&c);
    return NULL;
}

/* ---- one round ------------------------------------------------------------ */

typedef struct sample {
    uint64_t t_ms; /* since the load started */
    long ops;      /* client requests so far */
    bool present[NODES];
    nstats_t n[NODES];
} sample_t;

typedef struct result {
    int mode; /* index in MODES */
    int round;
    double before, min_after, first, after;
    int min_at_ms; /* end of the lowest window, after the join */
    int64_t handed, refused, backend_reads, stale_dropped, settle_capped;
    int converged_ms; /* first sample showing one 4-member ring; -1 never */
    int handoff_done_ms; /* new node got all it got, nothing active; -1 */
    double moved_keys, moved_reads;
    double rate_before, rate_after; /* client requests per second */
    long errors, wrong, client_retries, ring_refreshes;
    int nseries;
    double *series; /* hit ratio of each window after the join */
} result_t;

/* Hits and lookups in window k (samples k-1 .. k). -1 if a running node
 * did not answer STATS. */
static int window(const sample_t *s, int k, int64_t *hits, int64_t *lookups)
{
    *hits = *lookups = 0;
    for (int i = 0; i < NODES; i++) {
        if (!s[k].present[i])
            continue;
        int64_t h0 = 0, m0 = 0;
        if (s[k - 1].present[i]) {
            if (!s[k - 1].n[i].ok)
                return -1;
            h0 = s[k - 1].n[i].v[S_HITS];
            m0 = s[k - 1].n[i].v[S_MISSES];
        }
        if (!s[k].n[i].ok)
            return -1;
        *hits += s[k].n[i].v[S_HITS] - h0;
        *lookups += s[k].n[i].v[S_HITS] - h0 + s[k].n[i].v[S_MISSES] - m0;
    }
    return 0;
}

/* Hit ratio over windows a..b (request-weighted); NAN if none counted. */
static double ratio_over(const sample_t *s, int a, int b)
{
    int64_t hits = 0, lookups = 0;
    for (int k = a; k <= b; k++) {
        int64_t h, l;
        if (window(s, k, &h, &l) == 0) {
            hits += h;
            lookups += l;
        }
    }
    return lookups > 0 ? (double)hits / (double)lookups : NAN;
}

/* Sum of counter `stat` over the nodes from sample a to sample b. */
static int64_t delta(const sample_t *s, int a, int b, int stat)
{
    int64_t d = 0;
    for (int i = 0; i < NODES; i++) {
        if (!s[b].present[i] || !s[b].n[i].ok)
            continue;
        d += s[b].n[i].v[stat];
        if (s[a].present[i] && s[a].n[i].ok)
            d -= s[a].n[i].v[stat];
    }
    return d;
}

/* Keys whose owner differs between the 3- and the 4-member ring, as a
 * share of the keys and of the reads (Zipf weights). */
static void moved_share(const members_t *m3, const members_t *m4, const zipf_t *z,
                        result_t *res)
{
    res->moved_keys = res->moved_reads = NAN;
    pc_ring_t *r3 = ring_of(m3), *r4 = ring_of(m4);
    if (r3 && r4) {
        long moved = 0;
        double p = 0;
        for (int id = 0; id < z->n; id++) {
            char key[32];
            int klen = make_key(key, sizeof key, id);
            long o3 = pc_ring_owner(r3, key, (size_t)klen);
            long o4 = pc_ring_owner(r4, key, (size_t)klen);
            if (strcmp(pc_ring_name(r3, (size_t)o3), pc_ring_name(r4, (size_t)o4)) != 0) {
                moved++;
                p += zipf_p(z, id);
            }
        }
        res->moved_keys = (double)moved / z->n;
        res->moved_reads = p;
    }
    pc_ring_free(&r3);
    pc_ring_free(&r4);
}

static int round_setup(cluster_t *cl, const params_t *pa, members_t *m3)
{
    if (pc_h_redis_start(&cl->redis, 0) != 0 || (cl->rc = pc_h_redis_connect(&cl->redis)) == NULL)
        return -1;
    if (node_up(cl, 0, NULL) != 0)
        return -1;
    for (int i = 1; i < 3; i++)
        if (node_up(cl, i, cl->node[0].addr) != 0)
            return -1;
    converge_arg_t ca = {cl, 3};
    if (!pc_h_poll(converged, &ca, 10000)) {
        fprintf(stderr, "bench_scaleout: 3 nodes did not converge within 10 s\n");
        return -1;
    }
    if (ask(&cl->node[0], PC_OP_CLUSTER, on_cluster, m3) != 0 || m3->n != 3)
        return -1;
    if (preload(cl->rc, pa->keys) != 0)
        return -1;

    char seeds[256];
    snprintf(seeds, sizeof seeds, "%s,%s,%s", cl->node[0].addr, cl->node[1].addr,
             cl->node[2].addr);
    pc_client_options_t o = {.nodes = seeds, .timeout_ms = 3000};
    pc_client_t *c = NULL;
    if (pc_client_new(&o, &c) != 0)
        return -1;
    settle_arg_t sa = {cl, c, ring_of(m3), 0};
    int rc = -1;
    if (sa.ring == NULL) {
        fprintf(stderr, "bench_scaleout: cannot build the 3-member ring\n");
    } else if (!pc_h_poll(settled, &sa, 20000)) {
        fprintf(stderr, "bench_scaleout: settle windows not over within 20 s\n");
    } else if (!pc_h_poll(homes_on, &ca, 20000)) {
        fprintf(stderr, "bench_scaleout: home loops not on in every node within 20 s\n");
    } else {
        long capped = warm(c, pa->keys);
        CHECK(capped == 0, "%ld warm-up copies were provisional (settle window)", capped);
        rc = capped < 0 ? -1 : 0;
    }
    pc_ring_free(&sa.ring);
    pc_client_free(&c);
    return rc;
}

static void take_sample(const cluster_t *cl, loader_t *ld, uint64_t t0_ns, sample_t *s)
{
    s->t_ms = (now_ns() - t0_ns) / 1000000u;
    s->ops = 0;
    for (int t = 0; t < CLIENT_THREADS; t++)
        s->ops += atomic_load_explicit(&ld[t].ops, memory_order_relaxed);
    for (int i = 0; i < NODES; i++) {
        s->present[i] = cl->up[i];
        if (cl->up[i])
            stats_of(&cl->node[i], &s->n[i]);
    }
}

static int run_round(const params_t *pa, const zipf_t *z, int mode, int round, result_t *res)
{
    cluster_t cl;
    memset(&cl, 0, sizeof cl);
    memset(res, 0, sizeof *res);
    res->mode = mode;
    res->round = round;
    res->converged_ms = res->handoff_done_ms = -1;
    cl.mode = &MODES[mode];
    /* Room for every key on one node (the last to leave ends up with all
     * of them), with the store's overhead and some slack. */
    size_t mb = ((size_t)pa->keys * 512u) >> 20;
    snprintf(cl.memory, sizeof cl.memory, "%zumb", mb < 64 ? (size_t)64 : mb);

    members_t m3 = {0}, m4 = {0};
    int rc = -1;
    int pre_w = pa->pre_ms / WINDOW_MS, nw = (pa->pre_ms + pa->post_ms) / WINDOW_MS;
    sample_t *s = calloc((size_t)nw + 1, sizeof *s);
    loader_t *ld = calloc(CLIENT_THREADS, sizeof *ld);
    atomic_bool stop = false;
    int nthreads = 0;
    char seeds[256] = "";
    if (s == NULL || ld == NULL)
        goto done;
    if (round_setup(&cl, pa, &m3) != 0)
        goto done;

    snprintf(seeds, sizeof seeds, "%s,%s,%s", cl.node[0].addr, cl.node[1].addr,
             cl.node[2].addr);
    uint64_t t0 = now_ns();
    take_sample(&cl, ld, t0, &s[0]);
    for (int t = 0; t < CLIENT_THREADS; t++) {
        ld[t].z = z;
        ld[t].seeds = seeds;
        ld[t].rng = 0x5ca1e0u + (uint64_t)round * 1000u + (uint64_t)t;
        ld[t].interval_ns = (uint64_t)(1e9 * CLIENT_THREADS / pa->rate);
        ld[t].stop = &stop;
        if (pthread_create(&ld[t].tid, NULL, load_run, &ld[t]) != 0)
            break;
        nthreads++;
    }
    uint64_t join_ns = 0;
    for (int k = 1; k <= nw && nthreads == CLIENT_THREADS; k++) {
        sleep_until_ns(t0 + (uint64_t)k * WINDOW_MS * 1000000u);
        take_sample(&cl, ld, t0, &s[k]);
        if (k == pre_w) {
            join_ns = now_ns();
            if (node_up(&cl, 3, cl.node[1].addr) != 0)
                break;
        }
    }
    atomic_store(&stop, true);
    for (int t = 0; t < nthreads; t++)
        pthread_join(ld[t].tid, NULL);
    if (nthreads != CLIENT_THREADS || !cl.up[3] || s[nw].t_ms == 0)
        goto done;

    int join_ms = (int)((join_ns - t0) / 1000000u);
    res->before = ratio_over(s, 1, pre_w);
    res->first = ratio_over(s, pre_w + 1, pre_w + FIRST_MS / WINDOW_MS);
    res->after = ratio_over(s, pre_w + 1, nw);
    res->min_after = INFINITY;
    res->nseries = nw - pre_w;
    res->series = calloc((size_t)res->nseries, sizeof *res->series);
    for (int k = pre_w + 1; k <= nw; k++) {
        double r = ratio_over(s, k, k);
        if (res->series)
            res->series[k - pre_w - 1] = r;
        if (r < res->min_after) {
            res->min_after = r;
            res->min_at_ms = (int)s[k].t_ms - join_ms;
        }
    }
    res->handed = s[nw].n[3].v[S_HANDOFF_RECEIVED];
    res->refused = s[nw].n[3].v[S_HANDOFF_REFUSED];
    res->backend_reads = delta(s, pre_w, nw, S_BACKEND_READS);
    res->stale_dropped = delta(s, pre_w, nw, S_STALE_DROPPED);
    res->settle_capped = delta(s, pre_w, nw, S_SETTLE_CAPPED);
    for (int k = pre_w + 1; k <= nw; k++) {
        if (res->converged_ms < 0 && stats_converged(s[k].n, NODES))
            res->converged_ms = (int)s[k].t_ms - join_ms;
        int64_t active = 0;
        for (int i = 0; i < NODES; i++)
            active += s[k].n[i].v[S_HANDOFF_ACTIVE];
        if (res->handoff_done_ms < 0 && res->handed > 0 && active == 0 &&
            s[k].n[3].v[S_HANDOFF_RECEIVED] == res->handed)
            res->handoff_done_ms = (int)s[k].t_ms - join_ms;
    }
    res->rate_before = (double)(s[pre_w].ops - s[0].ops) * 1000.0 / (double)s[pre_w].t_ms;
    res->rate_after = (double)(s[nw].ops - s[pre_w].ops) * 1000.0 /
                      (double)(s[nw].t_ms - s[pre_w].t_ms);
    for (int t = 0; t < CLIENT_THREADS; t++) {
        res->errors += ld[t].errors;
        res->wrong += ld[t].wrong;
        res->client_retries += (long)ld[t].cc.retries;
        res->ring_refreshes += (long)ld[t].cc.ring_refreshes;
        if (ld[t].errors)
            fprintf(stderr, "bench_scaleout: thread %d: %ld errors, first: %s\n", t,
                    ld[t].errors, ld[t].first_error);
    }
    if (ask(&cl.node[0], PC_OP_CLUSTER, on_cluster, &m4) == 0 && m4.n == NODES)
        moved_share(&m3, &m4, z, res);
    rc = 0;

done:
    if (cluster_down(&cl) != 0) {
        CHECK(0, "a process did not exit 0 (round %d, %s)", round + 1, MODES[mode].name);
    }
    free(s);
    free(ld);
    return rc;
}

/* ---- report ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of field `get` over the rounds of one mode. */
static double median(const result_t *r, int n, int mode, double (*get)(const result_t *))
{
    double v[64];
    int m = 0;
    for (int i = 0; i < n && m < 64; i++)
        if (r[i].mode == mode && !isnan(get(&r[i])))
            v[m++] = get(&r[i]);
    if (m == 0)
        return NAN;
    qsort(v, (size_t)m, sizeof v[0], cmp_double);
    return m % 2 ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2;
}

#define GETTER(field)                                                                        \
    static double get_##field(const result_t *r)                                             \
    {                                                                                        \
        return (double)r->field;                                                             \
    }
GETTER(before)
GETTER(min_after)
GETTER(first)
GETTER(after)
GETTER(handed)
GETTER(backend_reads)
GETTER(converged_ms)
GETTER(handoff_done_ms)
GETTER(moved_keys)
GETTER(moved_reads)
GETTER(rate_after)
GETTER(settle_capped)

static void print_round(const result_t *r)
{
    fprintf(out,
            "round %d %-11s before %6.2f%%  min %6.2f%% (+%d ms)  first 2 s %6.2f%%  after "
            "%6.2f%%  handed %lld  backend_reads %lld\n",
            r->round + 1, MODES[r->mode].name, 100 * r->before, 100 * r->min_after, r->min_at_ms,
            100 * r->first, 100 * r->after, (long long)r->handed, (long long)r->backend_reads);
    char done[64] = "no hand-off";
    if (r->handed > 0)
        snprintf(done, sizeof done, "hand-off done at +%d ms (%lld refused as not newer)",
                 r->handoff_done_ms, (long long)r->refused);
    fprintf(out,
            "    moved %.1f%% of keys / %.1f%% of reads; ring on 4 at +%d ms; %s; "
            "settle_capped %lld, stale_dropped %lld; %.0f -> %.0f req/s, %ld client retries\n",
            100 * r->moved_keys, 100 * r->moved_reads, r->converged_ms, done,
            (long long)r->settle_capped, (long long)r->stale_dropped, r->rate_before,
            r->rate_after, r->client_retries);
    fprintf(out, "    hit %% per %d ms after the join:", WINDOW_MS);
    for (int i = 0; i < r->nseries && r->series; i++)
        fprintf(out, "%s%.1f", i % 16 == 0 && i ? "\n                                   " : " ",
                100 * r->series[i]);
    fputc('\n', out);
}

/* "no hand-off / hand-off" for a hit ratio row, on the miss ratios. */
static void print_ratio_row(const char *label, const result_t *r, int n,
                            double (*get)(const result_t *))
{
    double h = median(r, n, 0, get), nh = median(r, n, 1, get);
    fprintf(out, "%-34s %10.2f%% %12.2f%%", label, 100 * h, 100 * nh);
    if (h < 1)
        fprintf(out, "   misses x%.1f", (1 - nh) / (1 - h));
    else if (nh < 1)
        fprintf(out, "   misses only without");
    fputc('\n', out);
}

static void print_count_row(const char *label, const result_t *r, int n,
                            double (*get)(const result_t *))
{
    double h = median(r, n, 0, get), nh = median(r, n, 1, get);
    fprintf(out, "%-34s %11.0f %13.0f", label, h, nh);
    if (h > 0)
        fprintf(out, "   x%.2f", nh / h);
    fputc('\n', out);
}

static void print_summary(const params_t *pa, const result_t *r, int n)
{
    char after[64];
    snprintf(after, sizeof after, "whole %d s after the join", pa->post_ms / 1000);
    fprintf(out, "\nmedians over %d round(s) per mode    hand-off   no hand-off   no / with\n",
            pa->rounds);
    print_ratio_row("hit ratio before the join", r, n, get_before);
    print_ratio_row("min 250 ms window after the join", r, n, get_min_after);
    print_ratio_row("first 2 s after the join", r, n, get_first);
    print_ratio_row(after, r, n, get_after);
    print_count_row("entries handed to the new node", r, n, get_handed);
    char br[64];
    snprintf(br, sizeof br, "backend reads in the %d s after", pa->post_ms / 1000);
    print_count_row(br, r, n, get_backend_reads);
    print_count_row("copies capped by the settle window", r, n, get_settle_capped);
    print_count_row("ring on 4 members by (ms, per 250)", r, n, get_converged_ms);
    print_count_row("req/s after the join", r, n, get_rate_after);
    double mk = (median(r, n, 0, get_moved_keys) + median(r, n, 1, get_moved_keys)) / 2;
    double mr = (median(r, n, 0, get_moved_reads) + median(r, n, 1, get_moved_reads)) / 2;
    double hb = median(r, n, 1, get_before);
    fprintf(out,
            "moved share: %.1f%% of keys, %.1f%% of reads (Zipf weights); a fall by the moved "
            "share would be %.2f%% -> %.2f%%\n",
            100 * mk, 100 * mr, 100 * hb, 100 * hb * (1 - mr));
    fprintf(out, "(misses xN: miss ratio without hand-off over miss ratio with it)\n");
    double hd = median(r, n, 0, get_handoff_done_ms);
    fprintf(out, "hand-off done (median): +%.0f ms after the join\n", hd);
}

static void json_number(const char *name, double v, bool comma)
{
    if (isnan(v) || isinf(v))
        printf("\"%s\":null%s", name, comma ? "," : "");
    else
        printf("\"%s\":%.6g%s", name, v, comma ? "," : "");
}

static void print_json(const params_t *pa, const result_t *r, int n)
{
    printf("{\"bench\":\"scaleout\",\"keys\":%d,\"value_bytes\":%d,\"zipf_s\":%.2f,"
           "\"rate\":%d,\"threads\":%d,\"pre_ms\":%d,\"post_ms\":%d,\"window_ms\":%d,"
           "\"rounds\":[",
           pa->keys, VALUE_LEN, ZIPF_S, pa->rate, CLIENT_THREADS, pa->pre_ms, pa->post_ms,
           WINDOW_MS);
    for (int i = 0; i < n; i++) {
        printf("%s{\"mode\":\"%s\",\"round\":%d,", i ? "," : "", MODES[r[i].mode].name,
               r[i].round + 1);
        json_number("before", r[i].before, true);
        json_number("min_after", r[i].min_after, true);
        json_number("min_at_ms", r[i].min_at_ms, true);
        json_number("first_2s", r[i].first, true);
        json_number("after", r[i].after, true);
        json_number("handed_off", (double)r[i].handed, true);
        json_number("backend_reads", (double)r[i].backend_reads, true);
        json_number("settle_capped", (double)r[i].settle_capped, true);
        json_number("converged_ms", r[i].converged_ms, true);
        json_number("handoff_done_ms", r[i].handoff_done_ms, true);
        json_number("moved_keys", r[i].moved_keys, true);
        json_number("moved_reads", r[i].moved_reads, true);
        printf("\"series\":[");
        for (int k = 0; k < r[i].nseries && r[i].series; k++)
            printf("%s%.5f", k ? "," : "", isnan(r[i].series[k]) ? -1.0 : r[i].series[k]);
        printf("]}");
    }
    printf("],\"medians\":{");
    for (int m = 0; m < 2; m++) {
        printf("%s\"%s\":{", m ? "," : "", MODES[m].name);
        json_number("before", median(r, n, m, get_before), true);
        json_number("min_after", median(r, n, m, get_min_after), true);
        json_number("first_2s", median(r, n, m, get_first), true);
        json_number("after", median(r, n, m, get_after), true);
        json_number("handed_off", median(r, n, m, get_handed), true);
        json_number("backend_reads", median(r, n, m, get_backend_reads), true);
        json_number("moved_keys", median(r, n, m, get_moved_keys), true);
        json_number("moved_reads", median(r, n, m, get_moved_reads), false);
        printf("}");
    }
    printf("}}\n");
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--smoke] [--keys N] [--rounds N] [--seconds S] [--json]\n",
            argv0);
}

int main(int argc, char **argv)
{
    params_t pa = {.keys = 50000, .rounds = 3, .pre_ms = 3000, .post_ms = 8000, .rate = 12000};
    int keys = -1, rounds = -1, seconds = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            pa.smoke = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            pa.json = true;
        } else if (i + 1 < argc && strcmp(argv[i], "--keys") == 0) {
            keys = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--rounds") == 0) {
            rounds = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0) {
            seconds = atoi(argv[++i]);
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    if (pa.smoke) {
        pa.keys = 10000;
        pa.rounds = 1;
        pa.pre_ms = 1000;
        pa.post_ms = 3000;
    }
    if (keys != -1)
        pa.keys = keys;
    if (rounds != -1)
        pa.rounds = rounds;
    if (seconds != -1)
        pa.post_ms = seconds * 1000;
    if (pa.keys < 100 || pa.rounds < 1 || pa.rounds > 32 || pa.post_ms < FIRST_MS ||
        pa.post_ms > 600000) {
        fprintf(stderr, "bench_scaleout: --keys >= 100, --rounds 1..32, --seconds 2..600\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    out = pa.json ? stderr : stdout;
    setvbuf(stdout, NULL, _IOLBF, 0);

    zipf_t z;
    zipf_init(&z, pa.keys, ZIPF_S);
    fprintf(out,
            "# bench_scaleout%s: %d keys x %d B, Zipf(%.2f) reads at %d req/s (%d threads, "
            "ring-aware); 3 nodes, a 4th joins after %d ms, then %d ms more; %d ms windows; "
            "%d round(s) per mode, alternating\n",
            pa.smoke ? " --smoke" : "", pa.keys, VALUE_LEN, ZIPF_S, pa.rate, CLIENT_THREADS,
            pa.pre_ms, pa.post_ms, WINDOW_MS, pa.rounds);
    uint64_t t_start = now_ns();
    int n = 2 * pa.rounds;
    result_t *res = calloc((size_t)n, sizeof *res);
    if (res == NULL)
        return 2;
    for (int i = 0; i < n; i++) {
        int mode = i % 2, round = i / 2;
        if (run_round(&pa, &z, mode, round, &res[i]) != 0) {
            fprintf(stderr, "bench_scaleout: round %d (%s) failed\n", round + 1,
                    MODES[mode].name);
            failures++;
            res[i].before = res[i].min_after = res[i].first = res[i].after = NAN;
            res[i].moved_keys = res[i].moved_reads = NAN;
            continue;
        }
        const result_t *r = &res[i];
        print_round(r);
        CHECK(r->errors == 0 && r->wrong == 0, "%ld client errors, %ld wrong values", r->errors,
              r->wrong);
        CHECK(r->converged_ms >= 0, "the ring never showed 4 members on every node");
        CHECK(r->before >= 0.99, "hit ratio before the join %.4f", r->before);
        if (MODES[mode].handoff)
            CHECK(r->handed > 0, "nothing was handed off");
        else
            CHECK(r->handed == 0, "%lld entries handed off with --handoff-rate 0",
                  (long long)r->handed);
    }
    print_summary(&pa, res, n);
    fprintf(out, "# %.0f s in all\n", (double)(now_ns() - t_start) / 1e9);
    if (pa.json)
        print_json(&pa, res, n);
    for (int i = 0; i < n; i++)
        free(res[i].series);
    free(res);
    free(z.cdf);
    if (failures) {
        fprintf(stderr, "bench_scaleout: %u check(s) failed\n", failures);
    } else {
        fprintf(out, "All checks passed.\n");
    }
    return pc_h_finish(failures != 0);
}
