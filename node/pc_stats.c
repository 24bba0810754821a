/*
 * pc_stats.c -- STATS from the metrics table (pc_stats.h, pc_metrics.h).
 */
#include "pc_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_handoff.h"
#include "pc_loop.h"
#include "pc_loops.h"

/* What one loop adds to STATS. */
typedef struct loop_snap {
    pc_counters_t counters;
    pc_hist_t lat[PC_LAT_OPS];
    pc_hist_t iter;             /* the loop's iterations, working time (pc_conn.h) */
    pc_backend_stats_t backend; /* summed over the loops' Redis connections */
    uint64_t nbackends;
    uint64_t nconns;
    size_t buf_bytes;
    int buf_full;
    uint64_t uring_loops; /* 1 if the loop's connections are on io_uring */
    pc_uring_counters_t uring;
} loop_snap_t;

/* Everything the V entries of PC_STATS read (`v`). */
typedef struct stats_view {
    uint64_t uptime_s, nconns, buf_bytes, buf_full, threads, home_loops, uring_loops;
    pc_uring_counters_t uring;
    int backend_enabled;
    uint64_t nbackends;
    pc_backend_stats_t backend;
    pc_store_stats_t store;
    pc_cluster_stats_t cluster;
    pc_peer_stats_t peers;
    const pc_guard_stats_t *guard; /* NULL without a cluster key */
    uint32_t key_id;
    size_t nkeys;
    int handoff_active;
} stats_view_t;

const char *const *pc_metrics_names(size_t *n)
{
#define NAME_C(name, help) #name,
#define NAME_V(name, kind, expr, help) #name,
#define NAME_L(name, i) #name,
    static const char *const names[] = {PC_STATS(NAME_C, NAME_V) PC_STATS_LAT(NAME_L)};
#undef NAME_L
#undef NAME_C
#undef NAME_V
    *n = sizeof names / sizeof names[0];
    return names;
}

/* Every field's kind and help, in table order (pc_metrics.h). */
#define META_C(name, help) {1, help},
#define META_V(name, kind, expr, help) {PC_METRICS_##kind, help},
#define PC_METRICS_COUNTER 1
#define PC_METRICS_GAUGE 0
static const struct {
    int counter;
    const char *help;
} meta[] = {PC_STATS(META_C, META_V)};
#undef META_C
#undef META_V

#define NSTATS (sizeof meta / sizeof meta[0])
#define NLAT (PC_HIST_BOUNDS + 1) /* PC_STATS_LAT's fields */

struct pc_stats {
    pc_stat_t stat[NSTATS + NLAT]; /* name and value, in table order, then PC_STATS_LAT's */
    pc_hist_t lat[PC_LAT_OPS];
    pc_hist_t redis_rtt;
    pc_hist_t loop_iter;
};

/* Fills st from the loops' sum and what the core reports. */
static void stats_fill(pc_loop_t *l, const loop_snap_t *sum, pc_stats_t *st)
{
    pc_shared_t *sh = l->sh;
    stats_view_t view = {0}, *v = &view;
    pc_guard_stats_t gstats = {0};
    v->uptime_s = (pc_loop_now(l) - l->start_ms) / 1000;
    v->nconns = sum->nconns;
    v->buf_bytes = sum->buf_bytes;
    v->buf_full = (uint64_t)sum->buf_full;
    v->uring_loops = sum->uring_loops;
    v->uring = sum->uring;
    v->threads = sh->nworkers + 1;
    v->home_loops = !pc_loops_homes_on(l) ? 1 : sh->nhomes > 1 ? sh->nhomes : sh->nloops;
    v->backend_enabled = l->backend != NULL;
    v->nbackends = sum->nbackends;
    v->backend = sum->backend;
    pc_store_stats(l->store, &v->store);
    if (l->cluster)
        pc_cluster_stats(l->cluster, &v->cluster);
    if (l->peers)
        pc_peer_stats(l->peers, &v->peers);
    if (pc_guard_on(l->guard)) {
        pc_guard_snapshot(l->guard, &gstats, &v->key_id, &v->nkeys);
        v->guard = &gstats;
    }
    v->handoff_active = pc_handoff_active(l);
    const pc_counters_t *s = &sum->counters;
#define STAT_C(name, help) {{(const uint8_t *)#name, sizeof #name - 1}, (int64_t)s->name},
#define STAT_V(name, kind, expr, help) {{(const uint8_t *)#name, sizeof #name - 1}, (int64_t)(expr)},
    const pc_stat_t stats[] = {PC_STATS(STAT_C, STAT_V)};
#undef STAT_C
#undef STAT_V
    memcpy(st->stat, stats, sizeof stats);
    memcpy(st->lat, sum->lat, sizeof st->lat);
    /* Every class together, cumulative. */
    uint64_t cum = 0;
#define LAT_L(name, i)                                                                             \
    for (size_t k = 0; k < PC_LAT_OPS; k++)                                                        \
        cum += sum->lat[k].bucket[i];                                                              \
    st->stat[NSTATS + (i)] = (pc_stat_t){{(const uint8_t *)#name, sizeof #name - 1}, (int64_t)cum};
    PC_STATS_LAT(LAT_L)
#undef LAT_L
    st->redis_rtt = sum->backend.rtt;
    st->loop_iter = sum->iter;
}

int64_t pc_stats_get(const pc_stats_t *st, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < NSTATS + NLAT; i++) {
        const pc_bytes_t *n = &st->stat[i].name;
        if (n->len == len && memcmp(n->ptr, name, len) == 0)
            return st->stat[i].value;
    }
    return -1;
}

/* Prometheus label values escape backslash, quote and newline. */
static int put_label(pc_buf_t *out, const char *s)
{
    for (; *s != '\0'; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        int rc = esc != NULL ? pc_buf_append(out, esc, 2) : pc_buf_append(out, s, 1);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int pc_stats_prometheus(const pc_stats_t *st, const char *node, uint64_t ring_fp, pc_buf_t *out)
{
    char line[512];
    int rc = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int n_ = snprintf(line, sizeof line, __VA_ARGS__);                                         \
        if (rc == 0)                                                                               \
            rc = n_ > 0 && (size_t)n_ < sizeof line ? pc_buf_append(out, line, (size_t)n_)        \
                                                     : PC_EINVAL;                                  \
    } while (0)
    PUT("# HELP peercache_info The node's version, name and ring fingerprint (always 1)\n"
        "# TYPE peercache_info gauge\npeercache_info{version=\"%s\",node=\"", PC_VERSION_STRING);
    if (rc == 0)
        rc = put_label(out, node);
    PUT("\",ring_fingerprint=\"%016llx\"} 1\n", (unsigned long long)ring_fp);
    for (size_t i = 0; i < NSTATS; i++) {
        const pc_stat_t *s = &st->stat[i];
        int n = (int)s->name.len;
        const char *name = (const char *)s->name.ptr;
        /* Counters end in _total (a STATS name may already); a unit
         * is spelled out, in seconds (uptime_s: peercache_uptime_seconds;
         * loop_busy_us: peercache_loop_busy_seconds_total, in seconds). */
        const char *suffix =
            meta[i].counter && !(n > 6 && memcmp(name + n - 6, "_total", 6) == 0) ? "_total" : "";
        int micro = n > 3 && memcmp(name + n - 3, "_us", 3) == 0;
        if (micro || (n > 2 && memcmp(name + n - 2, "_s", 2) == 0)) {
            n -= micro ? 2 : 1;
            suffix = meta[i].counter ? "seconds_total" : "seconds";
        }
        const char *type = meta[i].counter ? "counter" : "gauge";
        PUT("# HELP peercache_%.*s%s %s\n# TYPE peercache_%.*s%s %s\n", n, name, suffix,
            meta[i].help, n, name, suffix, type);
        if (micro)
            PUT("peercache_%.*s%s %lld.%06lld\n", n, name, suffix, (long long)(s->value / 1000000),
                (long long)(s->value % 1000000));
        else
            PUT("peercache_%.*s%s %lld\n", n, name, suffix, (long long)s->value);
    }
    static const char *const ops[PC_LAT_OPS] = PC_LAT_NAMES;
    PUT("# HELP peercache_op_duration_seconds Time to answer, per operation, from the start of "
        "the event-loop turn that read the request\n"
        "# TYPE peercache_op_duration_seconds histogram\n");
    for (size_t k = 0; k < PC_LAT_OPS && rc == 0; k++) {
        char label[32];
        snprintf(label, sizeof label, "op=\"%s\"", ops[k]);
        rc = pc_hist_prometheus(out, "peercache_op_duration_seconds", label, &st->lat[k]);
    }
    PUT("# HELP peercache_redis_duration_seconds Round trips of the commands Redis answered\n"
        "# TYPE peercache_redis_duration_seconds histogram\n");
    if (rc == 0)
        rc = pc_hist_prometheus(out, "peercache_redis_duration_seconds", "", &st->redis_rtt);
    PUT("# HELP peercache_loop_iteration_seconds Time each event-loop iteration worked, its wait "
        "for events not counted (a request that arrives meanwhile is read after it)\n"
        "# TYPE peercache_loop_iteration_seconds histogram\n");
    if (rc == 0)
        rc = pc_hist_prometheus(out, "peercache_loop_iteration_seconds", "", &st->loop_iter);
#undef PUT
    return rc;
}

/* Encodes the STATS answer: into r if given (it waited for the workers),
 * else straight to c. */
static void stats_reply(pc_conn_t *c, pc_req_t *r, uint32_t op, uint64_t id, const pc_stats_t *st)
{
    pc_response_t resp = {.op = op, .id = id, .status = PC_ST_OK, .nstats = NSTATS + NLAT,
                          .stats = st->stat};
    if (r != NULL)
        pc_req_answer(r, &resp, NULL);
    else
        pc_conn_answer(c, &resp);
}

static void snap_own(const pc_loop_t *l, loop_snap_t *out)
{
    out->counters = l->stats;
    memcpy(out->lat, l->lat, sizeof out->lat);
    out->iter = l->conns.iter_hist;
    memset(&out->backend, 0, sizeof out->backend);
    out->nbackends = l->backend != NULL;
    if (l->backend)
        pc_backend_stats(l->backend, &out->backend);
    out->nconns = l->conns.nconns;
    out->buf_bytes = l->conns.buf_bytes;
    out->buf_full = l->conns.buf_full;
    out->uring_loops = l->conns.uring != NULL;
    memset(&out->uring, 0, sizeof out->uring);
    if (l->conns.uring != NULL)
        pc_uring_counters(l->conns.uring, &out->uring);
}

static void snap_add(loop_snap_t *sum, const loop_snap_t *x)
{
    pc_counters_add(&sum->counters, &x->counters);
    for (size_t k = 0; k < PC_LAT_OPS; k++)
        pc_hist_merge(&sum->lat[k], &x->lat[k]);
    pc_hist_merge(&sum->iter, &x->iter);
    pc_hist_merge(&sum->backend.rtt, &x->backend.rtt);
    sum->backend.commands += x->backend.commands;
    sum->backend.errors += x->backend.errors;
    sum->backend.timeouts += x->backend.timeouts;
    sum->backend.rejected += x->backend.rejected;
    sum->backend.connects += x->backend.connects;
    sum->backend.late += x->backend.late;
    sum->backend.held += x->backend.held;
    sum->backend.wait_short += x->backend.wait_short;
    sum->backend.refusals += x->backend.refusals;
    sum->backend.switches += x->backend.switches;
    sum->backend.redirects += x->backend.redirects;
    sum->backend.up += x->backend.up;
    sum->nbackends += x->nbackends;
    sum->nconns += x->nconns;
    sum->uring_loops += x->uring_loops;
    sum->uring.enters += x->uring.enters;
    sum->uring.wakes += x->uring.wakes;
    sum->uring.cqes += x->uring.cqes;
    sum->uring.rearms += x->uring.rearms;
    sum->buf_bytes += x->buf_bytes;
    sum->buf_full |= x->buf_full;
}

/* A gathering: the counters of each loop are read on its own thread,
 * summed on the core, and then handed to cb. */
typedef struct gather {
    pc_loop_t *core;
    size_t pending;
    loop_snap_t sum;
    pc_stats_cb cb;
    void *arg;
} gather_t;

typedef struct snapmsg {
    gather_t *g;
    loop_snap_t snap;
} snapmsg_t;

static void gather_one(gather_t *g)
{
    if (--g->pending > 0)
        return;
    pc_stats_t *st = malloc(sizeof *st);
    if (st != NULL)
        stats_fill(g->core, &g->sum, st);
    g->cb(g->arg, st);
    free(st);
    free(g);
}

static void snap_back(pc_loop_t *core, void *arg) /* on the core */
{
    (void)core;
    snapmsg_t *m = arg;
    snap_add(&m->g->sum, &m->snap);
    gather_one(m->g);
    free(m);
}

static void snap_take(pc_loop_t *w, void *arg) /* on a worker */
{
    snapmsg_t *m = arg;
    snap_own(w, &m->snap);
    m->snap.counters.worker_requests = w->stats.requests;
    m->snap.counters.worker_forwarded = w->stats.forwarded;
    if (pc_loops_call(w->sh->loops[0], snap_back, m) < 0)
        free(m); /* the core stops last: cannot happen */
}

int pc_stats_gather(pc_loop_t *core, pc_stats_cb cb, void *arg)
{
    pc_shared_t *sh = core->sh;
    gather_t *g = calloc(1, sizeof *g);
    if (g == NULL)
        return PC_ENOMEM;
    g->core = core;
    g->cb = cb;
    g->arg = arg;
    snap_own(core, &g->sum);
    g->pending = 1 + sh->nworkers;
    for (size_t i = 1; i <= sh->nworkers; i++) {
        snapmsg_t *m = calloc(1, sizeof *m);
        if (m != NULL) {
            m->g = g;
            if (pc_loops_call(sh->loops[i], snap_take, m) == 0)
                continue;
            free(m);
        }
        g->pending--; /* a stopped loop has nothing to add */
    }
    gather_one(g);
    return 0;
}

/* STATS after a gathering: r waited for it. */
static void stats_gathered(void *arg, const pc_stats_t *st)
{
    pc_req_t *r = arg;
    r->waiting = 0;
    if (pc_req_gone(r))
        return;
    if (st != NULL)
        stats_reply(r->c, r, r->op, r->id, st);
    else
        pc_req_answer_status(r, PC_ST_INTERNAL, "out of memory");
}

void pc_stats_request(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    if (l->sh->nworkers == 0) { /* one loop: at once */
        loop_snap_t own;
        pc_stats_t st;
        snap_own(l, &own);
        stats_fill(l, &own, &st);
        stats_reply(c, NULL, rq->op, rq->id, &st);
        return;
    }
    pc_req_t *r = pc_req_new(c, rq->op, rq->id, sizeof *r);
    if (r == NULL) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "out of memory");
        return;
    }
    r->waiting = 1;
    if (pc_stats_gather(l, stats_gathered, r) != 0) {
        r->waiting = 0;
        pc_req_answer_status(r, PC_ST_INTERNAL, "out of memory");
    }
}
