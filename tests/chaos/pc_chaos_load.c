/*
 * pc_chaos_load.c -- the workload of the fault-injection suite
 * (tests/chaos/README.md).
 *
 * T threads, each with its own ring-aware client (library defaults,
 * timeout 2 s), run SET / GET / DEL on K keys for D milliseconds, closed
 * loop. Every SET writes a value no other operation of the run writes
 * ("w<thread>-<seq>"), so a value read or found in Redis names the one
 * operation that wrote it. Every operation becomes one history line.
 *
 * Then the quiescence phase: the load stops, the program waits
 * --quiesce-ms, and reads every key from every node of --quiesce-nodes
 * with one seed-only client per node (that node answers, relaying to the
 * owner if it must), recording those reads too (op "qget", thread "q:<node>").
 *
 * History (TSV, one line per operation, sorted by start; a header line
 * starting with '#'):
 *   thread  op  key  value  start_ns  end_ns  result
 * op: set, get, del, qget. value: the value written (set) or read
 * (get/qget with result ok), else "-"; bytes outside 0x21..0x7e are
 * written as \xNN. start/end: CLOCK_REALTIME nanoseconds around the
 * library call. result: ok, notfound, timeout, conn, backend, retry,
 * busy, or err<code> (pc_error.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pc_client.h"

enum { OP_SET, OP_GET, OP_DEL, OP_QGET };
static const char *const op_names[] = {"set", "get", "del", "qget"};

typedef struct rec {
    uint8_t op;
    uint16_t key;
    int rc;
    uint64_t start, end;
    char *value; /* written or read; NULL = none */
} rec_t;

typedef struct worker {
    pthread_t tid;
    int id;
    char label[80]; /* history "thread" column */
    rec_t *recs;
    size_t n, cap;
    uint64_t rng;
    pc_client_counters_t counters;
} worker_t;

static struct {
    const char *nodes;
    const char *qnodes;
    const char *out;
    int threads;
    int keys;
    long duration_ms;
    long quiesce_ms;
    int timeout_ms;
    int pct_get, pct_set, pct_del;
    uint64_t seed;
    int watch_ring, expect;
    long max_ms;
    uint64_t since_ns;
} opt = {
    .expect = 5,
    .max_ms = 120000,
    .threads = 10,
    .keys = 200,
    .duration_ms = 30000,
    .quiesce_ms = 10000,
    .pct_get = 50,
    .pct_set = 45,
    .pct_del = 5,
};

static atomic_int stop_flag;
static uint64_t t_deadline;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void key_name(int k, char *buf, size_t cap)
{
    snprintf(buf, cap, "chaos:%03d", k);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "pc_chaos_load: out of memory\n");
        exit(2);
    }
    return p;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = xmalloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static rec_t *rec_new(worker_t *w)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 4096;
        rec_t *r = realloc(w->recs, w->cap * sizeof *r);
        if (r == NULL) {
            fprintf(stderr, "pc_chaos_load: out of memory\n");
            exit(2);
        }
        w->recs = r;
    }
    rec_t *r = &w->recs[w->n++];
    memset(r, 0, sizeof *r);
    return r;
}

static void *load_main(void *arg)
{
    worker_t *w = arg;
    pc_client_options_t co = {.nodes = opt.nodes, .timeout_ms = opt.timeout_ms};
    pc_client_t *c = NULL;
    if (pc_client_new(&co, &c) != 0) {
        fprintf(stderr, "pc_chaos_load: bad --nodes\n");
        exit(2);
    }
    uint64_t seq = 0;
    char key[32], val[48];
    while (!atomic_load(&stop_flag)) {
        if (now_ns() >= t_deadline)
            break;
        int k = (int)(xorshift(&w->rng) % (uint64_t)opt.keys);
        int roll = (int)(xorshift(&w->rng) % 100u);
        key_name(k, key, sizeof key);
        rec_t *r = rec_new(w);
        r->key = (uint16_t)k;
        if (roll < opt.pct_set) {
            int n = snprintf(val, sizeof val, "w%d-%" PRIu64, w->id, ++seq);
            r->op = OP_SET;
            r->value = dup_bytes((const uint8_t *)val, (size_t)n);
            r->start = now_ns();
            r->rc = pc_client_set(c, key, strlen(key), val, (size_t)n, NULL, NULL);
            r->end = now_ns();
        } else if (roll < opt.pct_set + opt.pct_del) {
            r->op = OP_DEL;
            r->start = now_ns();
            r->rc = pc_client_del(c, key, strlen(key));
            r->end = now_ns();
        } else {
            pc_value_t v;
            r->op = OP_GET;
            r->start = now_ns();
            r->rc = pc_client_get(c, key, strlen(key), &v);
            r->end = now_ns();
            if (r->rc == 0)
                r->value = dup_bytes(v.data, v.len);
            pc_value_free(&v);
        }
    }
    pc_client_counters(c, &w->counters);
    pc_client_free(&c);
    return NULL;
}

/* One seed-only client per node: that node answers every key. */
static void *quiesce_main(void *arg)
{
    worker_t *w = arg;
    pc_client_options_t co = {
        .nodes = w->label + 2, .timeout_ms = opt.timeout_ms, .no_ring = 1};
    pc_client_t *c = NULL;
    if (pc_client_new(&co, &c) != 0) {
        fprintf(stderr, "pc_chaos_load: bad --quiesce-nodes entry %s\n", w->label + 2);
        exit(2);
    }
    char key[32];
    for (int k = 0; k < opt.keys; k++) {
        key_name(k, key, sizeof key);
        rec_t *r = rec_new(w);
        pc_value_t v;
        r->op = OP_QGET;
        r->key = (uint16_t)k;
        r->start = now_ns();
        r->rc = pc_client_get(c, key, strlen(key), &v);
        r->end = now_ns();
        if (r->rc == 0)
            r->value = dup_bytes(v.data, v.len);
        pc_value_free(&v);
    }
    pc_client_free(&c);
    return NULL;
}

static const char *result_name(int rc, char *buf, size_t cap)
{
    switch (rc) {
    case 0:
        return "ok";
    case PC_ENOTFOUND:
        return "notfound";
    case PC_ETIMEDOUT:
        return "timeout";
    case PC_ECONN:
        return "conn";
    case PC_EBACKEND:
        return "backend";
    case PC_ERETRY:
        return "retry";
    case PC_EBUSY:
        return "busy";
    default:
        snprintf(buf, cap, "err%d", rc);
        return buf;
    }
}

static void put_escaped(FILE *f, const char *s)
{
    if (s == NULL) {
        fputc('-', f);
        return;
    }
    if (*s == '\0') {
        fputs("\\x", f); /* empty value: "\x" alone, never written by us */
        return;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p > 0x20 && *p < 0x7f && *p != '\\')
            fputc(*p, f);
        else
            fprintf(f, "\\x%02x", *p);
    }
}

typedef struct ref {
    const worker_t *w;
    const rec_t *r;
} ref_t;

static int ref_cmp(const void *a, const void *b)
{
    const rec_t *x = ((const ref_t *)a)->r, *y = ((const ref_t *)b)->r;
    return x->start < y->start ? -1 : x->start > y->start;
}

static void write_history(worker_t *ws, int nw)
{
    size_t total = 0;
    for (int i = 0; i < nw; i++)
        total += ws[i].n;
    ref_t *refs = xmalloc((total ? total : 1) * sizeof *refs);
    size_t j = 0;
    for (int i = 0; i < nw; i++)
        for (size_t k = 0; k < ws[i].n; k++)
            refs[j++] = (ref_t){&ws[i], &ws[i].recs[k]};
    qsort(refs, total, sizeof *refs, ref_cmp);
    char tmp[strlen(opt.out) + 8];
    snprintf(tmp, sizeof tmp, "%s.part", opt.out);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "pc_chaos_load: %s: %s\n", tmp, strerror(errno));
        exit(2);
    }
    fprintf(f, "#thread\top\tkey\tvalue\tstart_ns\tend_ns\tresult\n");
    char key[32], rb[32];
    for (size_t i = 0; i < total; i++) {
        const rec_t *r = refs[i].r;
        key_name(r->key, key, sizeof key);
        fprintf(f, "%s\t%s\t%s\t", refs[i].w->label, op_names[r->op], key);
        put_escaped(f, r->value);
        fprintf(f, "\t%" PRIu64 "\t%" PRIu64 "\t%s\n", r->start, r->end,
                result_name(r->rc, rb, sizeof rb));
    }
    if (fclose(f) != 0 || rename(tmp, opt.out) != 0) {
        fprintf(stderr, "pc_chaos_load: writing %s: %s\n", opt.out, strerror(errno));
        exit(2);
    }
    free(refs);
}

/* --watch-ring: see the top of the file. */
static int watch_ring(void)
{
    uint64_t t0 = opt.since_ns ? opt.since_ns : now_ns();
    uint64_t deadline = now_ns() + (uint64_t)opt.max_ms * 1000000u;
    char *list = strdup(opt.nodes);
    if (list == NULL)
        return 2;
    enum { MAXN = 64 };
    const char *addr[MAXN];
    pc_client_t *cl[MAXN];
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL && n < MAXN;
         tok = strtok_r(NULL, ",", &save)) {
        pc_client_options_t co = {.nodes = tok, .timeout_ms = opt.timeout_ms ? opt.timeout_ms : 1000,
                                  .no_ring = 1};
        if (pc_client_new(&co, &cl[n]) != 0) {
            fprintf(stderr, "pc_chaos_load: bad node %s\n", tok);
            return 2;
        }
        addr[n++] = tok;
    }
    char why[512] = "", last[512] = "";
    for (;;) {
        int ok = 1;
        uint64_t fp0 = 0;
        for (int i = 0; i < n && ok; i++) {
            pc_cluster_info_t *ci = NULL;
            int rc = pc_client_cluster(cl[i], &ci);
            if (rc != 0) {
                snprintf(why, sizeof why, "%s: %s", addr[i], pc_client_errmsg(cl[i]));
                ok = 0;
                break;
            }
            size_t alive = 0;
            for (size_t m = 0; m < ci->nmembers; m++)
                alive += ci->members[m].state == PC_CLIENT_MEMBER_ALIVE;
            if ((int)ci->nmembers != opt.expect || (int)alive != opt.expect) {
                int off = snprintf(why, sizeof why, "%s:", addr[i]);
                for (size_t m = 0; m < ci->nmembers && off < (int)sizeof why - 1; m++)
                    off += snprintf(why + off, sizeof why - (size_t)off, " %s=%s", ci->members[m].name,
                                    pc_client_member_state_name(ci->members[m].state));
                ok = 0;
            } else if (i == 0) {
                fp0 = ci->fingerprint;
            } else if (ci->fingerprint != fp0) {
                snprintf(why, sizeof why, "%s: ring %016" PRIx64 ", %s has %016" PRIx64, addr[i],
                         ci->fingerprint, addr[0], fp0);
                ok = 0;
            }
            pc_cluster_info_free(&ci);
        }
        uint64_t now = now_ns();
        if (ok) {
            printf("%" PRIu64 "\n", now > t0 ? (now - t0) / 1000000u : 0);
            break;
        }
        if (strcmp(why, last) != 0) {
            fprintf(stderr, "+%" PRId64 " ms %s\n", (int64_t)(now - t0) / 1000000, why);
            memcpy(last, why, sizeof last);
        }
        if (now >= deadline) {
            printf("timeout\n");
            for (int i = 0; i < n; i++)
                pc_client_free(&cl[i]);
            free(list);
            return 1;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < n; i++)
        pc_client_free(&cl[i]);
    free(list);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: pc_chaos_load --nodes LIST --out FILE [options]\n"
            "  --nodes H:P,...        seeds of the ring-aware clients\n"
            "  --quiesce-nodes H:P,.. nodes read one by one after the load\n"
            "                         (default: --nodes; \"none\" = no quiescence reads)\n"
            "  --out FILE             history (TSV; see the top of the source)\n"
            "  --threads N            client threads (10)\n"
            "  --keys N               keys chaos:000.. (200, at most 1000)\n"
            "  --duration-ms MS       load time (30000)\n"
            "  --quiesce-ms MS        wait after the load, before the reads (10000)\n"
            "  --timeout-ms MS        client timeout (0 = the library's, 2000 ms)\n"
            "  --mix GET:SET:DEL      percentages (50:45:5)\n"
            "  --seed N               random seed (default: time)\n"
            "pc_chaos_load --watch-ring --nodes LIST [--expect N] [--max-ms MS] [--since-ns NS]\n"
            "                         waits for one ring (see the top of the source)\n"
            "SIGINT/SIGTERM end the load early; the history is still written.\n");
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

static void print_counters(worker_t *ws, int nw)
{
    pc_client_counters_t s = {0};
    for (int i = 0; i < nw; i++) {
        s.ring_refreshes += ws[i].counters.ring_refreshes;
        s.ring_refresh_errors += ws[i].counters.ring_refresh_errors;
        s.owner_requests += ws[i].counters.owner_requests;
        s.replica_fallbacks += ws[i].counters.replica_fallbacks;
        s.retries += ws[i].counters.retries;
        s.retry_answers += ws[i].counters.retry_answers;
        s.node_failures += ws[i].counters.node_failures;
    }
    fprintf(stderr,
            "pc_chaos_load: client counters: ring_refreshes %" PRIu64 " refresh_errors %" PRIu64
            " owner_requests %" PRIu64 " replica_fallbacks %" PRIu64 " retries %" PRIu64
            " retry_answers %" PRIu64 " node_failures %" PRIu64 "\n",
            s.ring_refreshes, s.ring_refresh_errors, s.owner_requests, s.replica_fallbacks,
            s.retries, s.retry_answers, s.node_failures);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v != NULL && (i++, 1))
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (ARG("--nodes")) {
            opt.nodes = v;
        } else if (ARG("--quiesce-nodes")) {
            opt.qnodes = v;
        } else if (ARG("--out")) {
            opt.out = v;
        } else if (ARG("--threads")) {
            opt.threads = atoi(v);
        } else if (ARG("--keys")) {
            opt.keys = atoi(v);
        } else if (ARG("--duration-ms")) {
            opt.duration_ms = atol(v);
        } else if (ARG("--quiesce-ms")) {
            opt.quiesce_ms = atol(v);
        } else if (ARG("--timeout-ms")) {
            opt.timeout_ms = atoi(v);
        } else if (strcmp(a, "--watch-ring") == 0) {
            opt.watch_ring = 1;
        } else if (ARG("--expect")) {
            opt.expect = atoi(v);
        } else if (ARG("--max-ms")) {
            opt.max_ms = atol(v);
        } else if (ARG("--since-ns")) {
            opt.since_ns = strtoull(v, NULL, 10);
        } else if (ARG("--seed")) {
            opt.seed = strtoull(v, NULL, 10);
        } else if (ARG("--mix")) {
            if (sscanf(v, "%d:%d:%d", &opt.pct_get, &opt.pct_set, &opt.pct_del) != 3 ||
                opt.pct_get < 0 || opt.pct_set < 0 || opt.pct_del < 0 ||
                opt.pct_get + opt.pct_set + opt.pct_del != 100) {
                fprintf(stderr, "pc_chaos_load: --mix wants GET:SET:DEL adding up to 100\n");
                return 2;
            }
        } else {
            fprintf(stderr, "pc_chaos_load: unknown or incomplete argument %s\n", a);
            usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (opt.watch_ring && opt.nodes != NULL)
        return watch_ring();
    if (opt.nodes == NULL || opt.out == NULL || opt.threads < 1 || opt.threads > 1000 ||
        opt.keys < 1 || opt.keys > 1000 || opt.duration_ms < 0 || opt.quiesce_ms < 0) {
        usage(stderr);
        return 2;
    }
    if (opt.qnodes == NULL)
        opt.qnodes = opt.nodes;
    if (opt.seed == 0)
        opt.seed = now_ns() | 1;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* The load. */
    worker_t *ws = calloc((size_t)opt.threads, sizeof *ws);
    if (ws == NULL)
        return 2;
    uint64_t t0 = now_ns();
    t_deadline = t0 + (uint64_t)opt.duration_ms * 1000000u;
    fprintf(stderr, "pc_chaos_load: load start %" PRIu64 " (%d threads, %d keys, %ld ms, seed %" PRIu64 ")\n",
            t0, opt.threads, opt.keys, opt.duration_ms, opt.seed);
    for (int i = 0; i < opt.threads; i++) {
        ws[i].id = i;
        snprintf(ws[i].label, sizeof ws[i].label, "t%d", i);
        ws[i].rng = opt.seed * 0x9e3779b97f4a7c15ull + (uint64_t)i * 0xbf58476d1ce4e5b9ull + 1;
        if (pthread_create(&ws[i].tid, NULL, load_main, &ws[i]) != 0) {
            fprintf(stderr, "pc_chaos_load: pthread_create failed\n");
            return 2;
        }
    }
    for (int i = 0; i < opt.threads; i++)
        pthread_join(ws[i].tid, NULL);
    uint64_t t1 = now_ns();
    size_t nops = 0;
    for (int i = 0; i < opt.threads; i++)
        nops += ws[i].n;
    fprintf(stderr, "pc_chaos_load: load end %" PRIu64 " (%zu operations, %.0f/s)\n", t1, nops,
            (double)nops * 1e9 / (double)(t1 - t0 ? t1 - t0 : 1));
    print_counters(ws, opt.threads);

    /* Quiescence: wait, then every node answers every key. */
    int nq = 0;
    worker_t *qs = NULL;
    if (strcmp(opt.qnodes, "none") != 0) {
        int interrupted = atomic_load(&stop_flag);
        uint64_t until = now_ns() + (uint64_t)opt.quiesce_ms * 1000000u;
        while (!interrupted && now_ns() < until) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
            interrupted = atomic_load(&stop_flag);
        }
        char *list = strdup(opt.qnodes);
        if (list == NULL)
            return 2;
        for (char *p = list; *p; p++)
            nq += *p == ',';
        nq++;
        qs = calloc((size_t)nq, sizeof *qs);
        if (qs == NULL)
            return 2;
        int j = 0;
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL && j < nq;
             tok = strtok_r(NULL, ",", &save), j++) {
            snprintf(qs[j].label, sizeof qs[j].label, "q:%s", tok);
            qs[j].id = j;
        }
        nq = j;
        free(list);
        if (!interrupted) {
            fprintf(stderr, "pc_chaos_load: quiescence reads at %" PRIu64 "\n", now_ns());
            for (int i = 0; i < nq; i++)
                pthread_create(&qs[i].tid, NULL, quiesce_main, &qs[i]);
            for (int i = 0; i < nq; i++)
                pthread_join(qs[i].tid, NULL);
        }
    }

    /* Both sets in one history. */
    worker_t *all = calloc((size_t)(opt.threads + nq), sizeof *all);
    if (all == NULL)
        return 2;
    memcpy(all, ws, (size_t)opt.threads * sizeof *ws);
    if (nq)
        memcpy(all + opt.threads, qs, (size_t)nq * sizeof *qs);
    write_history(all, opt.threads + nq);
    fprintf(stderr, "pc_chaos_load: history in %s\n", opt.out);
    for (int i = 0; i < opt.threads + nq; i++) {
        for (size_t k = 0; k < all[i].n; k++)
            free(all[i].recs[k].value);
        free(all[i].recs);
    }
    free(all);
    free(ws);
    free(qs);
    return 0;
}
