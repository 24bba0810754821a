/*
 * pc_stats.c -- STATS from the metrics table (pc_stats.h, pc_metrics.h).
 */
#include "pc_stats.h"

#include <stdlib.h>
#include <string.h>

#include "pc_handoff.h"
#include "pc_loop.h"
#include "pc_loops.h"

/* What one loop adds to STATS. */
typedef struct loop_snap {
    pc_counters_t counters;
    pc_backend_stats_t backend; /* summed over the loops' Redis connections */
    uint64_t nbackends;
    uint64_t nconns;
    size_t buf_bytes;
    int buf_full;
} loop_snap_t;

/* Everything the V entries of PC_STATS read (`v`). */
typedef struct stats_view {
    uint64_t uptime_s, nconns, buf_bytes, buf_full, threads, home_loops;
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
#define NAME_C(name) #name,
#define NAME_V(name, expr) #name,
    static const char *const names[] = {PC_STATS(NAME_C, NAME_V)};
#undef NAME_C
#undef NAME_V
    *n = sizeof names / sizeof names[0];
    return names;
}

/* Encodes the STATS answer from the loops' sum: into r if given (it
 * waited for the workers), else straight to c. */
static void stats_reply(pc_conn_t *c, pc_req_t *r, uint32_t op, uint64_t id,
                        const loop_snap_t *sum)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_shared_t *sh = l->sh;
    stats_view_t view = {0}, *v = &view;
    pc_guard_stats_t gstats = {0};
    v->uptime_s = (pc_loop_now(l) - l->start_ms) / 1000;
    v->nconns = sum->nconns;
    v->buf_bytes = sum->buf_bytes;
    v->buf_full = (uint64_t)sum->buf_full;
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
#define STAT_C(name) {{(const uint8_t *)#name, sizeof #name - 1}, (int64_t)s->name},
#define STAT_V(name, expr) {{(const uint8_t *)#name, sizeof #name - 1}, (int64_t)(expr)},
    pc_stat_t stats[] = {PC_STATS(STAT_C, STAT_V)};
#undef STAT_C
#undef STAT_V
    pc_response_t resp = {.op = op, .id = id, .status = PC_ST_OK,
                          .nstats = sizeof stats / sizeof stats[0], .stats = stats};
    if (r != NULL)
        pc_req_answer(r, &resp, NULL);
    else
        pc_conn_answer(c, &resp);
}

static void snap_own(const pc_loop_t *l, loop_snap_t *out)
{
    out->counters = l->stats;
    memset(&out->backend, 0, sizeof out->backend);
    out->nbackends = l->backend != NULL;
    if (l->backend)
        pc_backend_stats(l->backend, &out->backend);
    out->nconns = l->conns.nconns;
    out->buf_bytes = l->conns.buf_bytes;
    out->buf_full = l->conns.buf_full;
}

static void snap_add(loop_snap_t *sum, const loop_snap_t *x)
{
    pc_counters_add(&sum->counters, &x->counters);
    sum->backend.commands += x->backend.commands;
    sum->backend.errors += x->backend.errors;
    sum->backend.timeouts += x->backend.timeouts;
    sum->backend.rejected += x->backend.rejected;
    sum->backend.connects += x->backend.connects;
    sum->backend.late += x->backend.late;
    sum->backend.held += x->backend.held;
    sum->backend.up += x->backend.up;
    sum->nbackends += x->nbackends;
    sum->nconns += x->nconns;
    sum->buf_bytes += x->buf_bytes;
    sum->buf_full |= x->buf_full;
}

/* STATS on a node of several loops: the counters of each are read on its
 * own thread, summed on the core, and then answered. */
typedef struct gather {
    pc_req_t *r;
    size_t pending;
    loop_snap_t sum;
} gather_t;

typedef struct snapmsg {
    gather_t *g;
    loop_snap_t snap;
} snapmsg_t;

static void gather_one(gather_t *g)
{
    if (--g->pending > 0)
        return;
    pc_req_t *r = g->r;
    r->waiting = 0;
    if (!pc_req_gone(r))
        stats_reply(r->c, r, r->op, r->id, &g->sum);
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

void pc_stats_request(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_shared_t *sh = l->sh;
    gather_t *g = NULL;
    pc_req_t *r = NULL;
    if (sh->nworkers > 0 && (g = calloc(1, sizeof *g)) != NULL &&
        (r = pc_req_new(c, rq->op, rq->id, sizeof *r)) == NULL) {
        free(g);
        g = NULL;
    }
    if (g == NULL) { /* one loop (or out of memory: this loop's counters) */
        loop_snap_t own;
        snap_own(l, &own);
        stats_reply(c, NULL, rq->op, rq->id, &own);
        return;
    }
    g->r = r;
    r->waiting = 1;
    snap_own(l, &g->sum);
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
}
