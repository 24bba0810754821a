/*
 * pc_view.c -- ring views and the gate (pc_view.h).
 */
#include "pc_view.h"

#include <stdlib.h>
#include <string.h>

#include "pc_loops.h"

struct pc_view {
    _Atomic unsigned refs;
    uint64_t gen; /* the core's count of views made: acks name theirs */
    pc_ring_t *ring; /* a reference of its own */
    long self;
    size_t n;
    char **addrs;
    _Atomic uint8_t *suspect;
};

/* ---- the ring this loop routes by ----------------------------------------- */

int pc_view_clustered(const pc_loop_t *l)
{
    return pc_loop_is_core(l) ? l->cluster != NULL : l->view != NULL;
}

static const pc_ring_t *view_ring(const pc_loop_t *l)
{
    return pc_loop_is_core(l) ? pc_cluster_ring(l->cluster) : l->view->ring;
}

long pc_view_self(const pc_loop_t *l)
{
    return pc_loop_is_core(l) ? pc_cluster_self(l->cluster) : l->view->self;
}

int pc_view_suspect(const pc_loop_t *l, size_t i)
{
    if (pc_loop_is_core(l))
        return pc_cluster_suspect(l->cluster, i);
    return i < l->view->n && atomic_load_explicit(&l->view->suspect[i], memory_order_relaxed);
}

const char *pc_view_addr(const pc_loop_t *l, size_t i)
{
    if (pc_loop_is_core(l))
        return pc_cluster_addr(l->cluster, i);
    return i < l->view->n ? l->view->addrs[i] : "";
}

void pc_view_route(const pc_loop_t *l, const uint8_t *k, size_t n, pc_route_t *rt)
{
    pc_view_place(l, pc_ring_slot(k, n), rt);
}

void pc_view_place(const pc_loop_t *l, uint32_t slot, pc_route_t *rt)
{
    if (!pc_view_clustered(l))
        pc_route_place(NULL, -1, slot, rt);
    else
        pc_route_place(view_ring(l), pc_view_self(l), slot, rt);
}

static int suspect_of(const void *arg, size_t i) { return pc_view_suspect(arg, i); }

long pc_view_target(const pc_loop_t *l, const pc_route_t *rt, int read)
{
    if (rt->role == PC_ROLE_OWNER || rt->n == 0)
        return -1;
    return pc_route_target(rt, pc_view_self(l), read, suspect_of, l);
}

/* ---- the gate ------------------------------------------------------------- */

int pc_view_owns(const pc_shared_t *sh, uint32_t slot)
{
    return sh->gate != NULL &&
           atomic_load_explicit(&sh->gate[slot], memory_order_relaxed) != PC_GATE_NONE;
}

uint32_t pc_view_gate(const pc_loop_t *l, const uint8_t *k, size_t n, int *alone)
{
    pc_shared_t *sh = l->sh;
    *alone = atomic_load_explicit(&sh->alone, memory_order_relaxed);
    if (*alone)
        return atomic_load_explicit(&sh->epoch_min, memory_order_relaxed);
    if (sh->gate == NULL)
        return PC_GATE_NONE;
    return atomic_load_explicit(&sh->gate[pc_ring_slot(k, n)], memory_order_relaxed);
}

int pc_view_valid(const pc_loop_t *l, const pc_item_t *it, const uint8_t *k, size_t n,
                  uint32_t gate, int alone)
{
    uint32_t e = pc_item_epoch(it);
    if (e >= gate)
        return 1;
    if (!alone || l->sh->gate == NULL)
        return 0;
    return e >= atomic_load_explicit(&l->sh->gate[pc_ring_slot(k, n)], memory_order_relaxed);
}

/* ---- views: made on the core, taken by the workers --------------------------- */

static void view_release(pc_view_t *v)
{
    if (v == NULL || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    for (size_t i = 0; v->addrs != NULL && i < v->n; i++)
        free(v->addrs[i]);
    free(v->addrs);
    free((void *)v->suspect);
    pc_ring_free(&v->ring);
    free(v);
}

void pc_view_drop(pc_loop_t *l)
{
    view_release(l->view);
    l->view = NULL;
}

/* On the core: the view of the cluster's current ring. NULL: no memory. */
static pc_view_t *view_new(pc_loop_t *core)
{
    const pc_ring_t *ring = pc_cluster_ring(core->cluster);
    size_t n = pc_ring_size(ring);
    pc_view_t *v = calloc(1, sizeof *v);
    if (v == NULL)
        return NULL;
    atomic_init(&v->refs, 1);
    v->ring = pc_ring_ref(ring);
    v->self = pc_cluster_self(core->cluster);
    v->n = n;
    v->addrs = calloc(n ? n : 1, sizeof *v->addrs);
    v->suspect = calloc(n ? n : 1, sizeof *v->suspect);
    for (size_t i = 0; v->addrs != NULL && v->suspect != NULL && i < n; i++) {
        if ((v->addrs[i] = strdup(pc_cluster_addr(core->cluster, i))) == NULL)
            break;
        atomic_init(&v->suspect[i], (uint8_t)(pc_cluster_suspect(core->cluster, i) != 0));
    }
    if (v->addrs == NULL || v->suspect == NULL || (n > 0 && v->addrs[n - 1] == NULL)) {
        view_release(v);
        return NULL;
    }
    return v;
}

/* A worker took view number `arg`: it counts if that is still the latest
 * (an older view's acknowledgement may arrive after a newer was sent). */
static void view_taken(pc_loop_t *core, void *arg) /* on the core */
{
    if (core->view != NULL && core->view->gen == (uint64_t)(uintptr_t)arg &&
        core->view_pending > 0)
        core->view_pending--;
    if (core->sh->recheck)
        core->sh->recheck(core);
}

static void view_take(pc_loop_t *w, void *arg) /* on a worker */
{
    pc_view_t *old = w->view;
    w->view = arg;
    uint64_t gen = w->view->gen;
    view_release(old);
    if (pc_loops_call(w->sh->loops[0], view_taken, (void *)(uintptr_t)gen) < 0)
        pc_log_error(w->log, "loop %zu took a ring view, but could not tell the core", w->index);
}

/*
 * On the core: sends every worker a view of the current ring. Homes stay
 * off until each has taken it (view_pending), so no worker routes by an
 * older ring while it serves keys on its own. Before the workers run, it
 * is handed over directly. Out of memory, the workers keep the view they
 * have and homes stay off (view_pending is left up).
 */
static void view_send(pc_loop_t *core)
{
    size_t nworkers = core->sh->nworkers;
    if (nworkers == 0 || core->cluster == NULL)
        return;
    pc_view_t *v = view_new(core);
    if (v == NULL) {
        pc_log_error(core->log, "no memory for the workers' ring view; the core serves every key");
        core->view_pending = SIZE_MAX / 2;
        return;
    }
    v->gen = ++core->view_gen;
    view_release(core->view);
    core->view = v;
    core->view_pending = 0;
    for (size_t i = 0; i < nworkers; i++) {
        pc_loop_t *w = core->sh->loops[1 + i];
        atomic_fetch_add(&v->refs, 1);
        if (core->handles_open == 0) { /* the core not started: no worker runs yet */
            view_release(w->view);
            w->view = v;
        } else if (pc_loops_call(w, view_take, v) == 0) {
            core->view_pending++;
        } else {
            view_release(v); /* a worker that stopped routes nothing */
        }
    }
}

void pc_view_publish(pc_loop_t *core, const pc_ring_t *nw, long self, const uint8_t *roles,
                     const uint32_t *slot_epoch, uint32_t epoch_min, uint64_t settle_until)
{
    pc_shared_t *sh = core->sh;
    atomic_store_explicit(&sh->ring_fp, pc_ring_fingerprint(nw), memory_order_relaxed);
    atomic_store_explicit(&sh->epoch_min, epoch_min, memory_order_relaxed);
    atomic_store_explicit(&sh->settle_until, settle_until, memory_order_relaxed);
    if (sh->gate != NULL) {
        for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
            unsigned role = roles != NULL ? roles[slot] : pc_route_role(nw, self, slot);
            uint32_t g = role == PC_ROLE_OWNER ? slot_epoch[slot] : PC_GATE_NONE;
            atomic_store_explicit(&sh->gate[slot], g, memory_order_relaxed);
        }
    }
    atomic_store_explicit(&sh->alone, pc_ring_size(nw) <= 1 && self >= 0, memory_order_relaxed);
    view_send(core);
}

void pc_view_refresh(pc_loop_t *core)
{
    pc_view_t *v = core->view;
    if (v == NULL || core->cluster == NULL)
        return;
    if (pc_cluster_ring(core->cluster) != v->ring) { /* a view that failed to build */
        if (core->view_pending >= SIZE_MAX / 2)
            view_send(core);
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        atomic_store_explicit(&v->suspect[i],
                              (uint8_t)(pc_cluster_suspect(core->cluster, i) != 0),
                              memory_order_relaxed);
        if (strcmp(v->addrs[i], pc_cluster_addr(core->cluster, i)) != 0) {
            view_send(core);
            return;
        }
    }
}

int pc_view_settled(const pc_loop_t *core)
{
    if (core->cluster == NULL)
        return 1;
    if (core->sh->nworkers == 0) /* the core alone routes, by the ring itself */
        return pc_cluster_self(core->cluster) >= 0;
    return core->view != NULL && core->view->self >= 0 && core->view_pending == 0;
}
