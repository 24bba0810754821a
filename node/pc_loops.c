/*
 * pc_loops.c -- cross-loop calls, the homes switch and the drain.
 */
#include "pc_loops.h"

#include <stdlib.h>

#include "pc_conns.h"
#include "pc_ring.h"

int pc_loops_call(pc_loop_t *t, void (*fn)(pc_loop_t *, void *), void *arg)
{
    pc_xcall_t *x = malloc(sizeof *x);
    if (x == NULL)
        return PC_ENOMEM;
    x->next = NULL;
    x->fn = fn;
    x->arg = arg;
    pthread_mutex_lock(&t->xq_lock);
    if (!t->xq_open) {
        pthread_mutex_unlock(&t->xq_lock);
        free(x);
        return PC_ECLOSED;
    }
    if (t->xq_tail)
        t->xq_tail->next = x;
    else
        t->xq_head = x;
    t->xq_tail = x;
    /* Under the lock: the handle is not closed while xq_open holds. */
    uv_async_send(&t->xq_async);
    pthread_mutex_unlock(&t->xq_lock);
    return 0;
}

static void xq_run(pc_loop_t *l)
{
    pthread_mutex_lock(&l->xq_lock);
    pc_xcall_t *x = l->xq_head;
    l->xq_head = l->xq_tail = NULL;
    pthread_mutex_unlock(&l->xq_lock);
    while (x != NULL) {
        pc_xcall_t *next = x->next;
        x->fn(l, x->arg);
        free(x);
        x = next;
    }
}

static void xq_cb(uv_async_t *a) { xq_run(a->data); }

void pc_loops_open_calls(pc_loop_t *l)
{
    uv_async_init(l->uv, &l->xq_async, xq_cb);
    l->xq_async.data = l;
    l->handles_open++;
    pthread_mutex_lock(&l->xq_lock);
    l->xq_open = 1;
    pthread_mutex_unlock(&l->xq_lock);
}

void pc_loops_close_calls(pc_loop_t *l, uv_close_cb closed)
{
    pthread_mutex_lock(&l->xq_lock);
    int was_open = l->xq_open;
    l->xq_open = 0;
    pthread_mutex_unlock(&l->xq_lock);
    if (!was_open)
        return;
    xq_run(l);
    uv_close((uv_handle_t *)&l->xq_async, closed);
}

void pc_loops_free_calls(pc_loop_t *l)
{
    /* None can be left: closing runs what was queued, and posts fail from
     * then on (and before the queue opens). Their arguments are not always
     * heap blocks, so a leftover is only reported. */
    while (l->xq_head != NULL) {
        pc_xcall_t *x = l->xq_head;
        l->xq_head = x->next;
        pc_log_error(l->log, "loop %zu: a cross-loop call was never run", l->index);
        free(x);
    }
}

void pc_loops_enter(pc_loop_t *l)
{
    if (!pc_loop_is_core(l))
        atomic_fetch_add(&l->busy, 1);
}

void pc_loops_leave(pc_loop_t *l)
{
    if (!pc_loop_is_core(l))
        atomic_fetch_sub(&l->busy, 1);
}

int pc_loops_homes_on(const pc_loop_t *l)
{
    return l->sh->nloops > 1 && atomic_load(&l->sh->homes);
}

size_t pc_loops_home_of(const pc_shared_t *sh, const uint8_t *k, size_t n)
{
    return sh->nhomes > 1 ? pc_ring_slot(k, n) % sh->nhomes : 0;
}

size_t pc_loops_home_for(const pc_loop_t *l, uint32_t slot)
{
    return l->sh->nhomes > 1 ? slot % l->sh->nhomes : l->index;
}

int pc_loops_home_foreign(const pc_loop_t *l, const uint8_t *k, size_t n)
{
    return l->sh->nhomes > 1 && pc_loops_homes_on(l) && pc_loops_home_of(l->sh, k, n) != l->index;
}

/* The core, while draining: are the workers idle? Then it reads again. */
static void drain_cb(uv_timer_t *t)
{
    pc_loop_t *core = t->data;
    pc_shared_t *sh = core->sh;
    for (size_t i = 1; i < sh->nloops; i++)
        if (atomic_load(&sh->loops[i]->busy) != 0)
            return;
    uv_timer_stop(t);
    core->draining = 0;
    pc_log_debug(core->log, "home loops drained: the core serves every key");
    pc_conns_hold(&core->conns, 0);
}

void pc_loops_init_drain(pc_loop_t *core)
{
    uv_timer_init(core->uv, &core->drain_timer);
    core->drain_timer.data = core;
    core->handles_open++;
}

void pc_loops_homes_off(pc_loop_t *core)
{
    if (!atomic_load(&core->sh->homes))
        return;
    atomic_store(&core->sh->homes, 0);
    core->draining = 1;
    pc_conns_hold(&core->conns, 1);
    pc_log_debug(core->log, "home loops off: draining");
    uv_timer_start(&core->drain_timer, drain_cb, 0, 1);
}

void pc_loops_homes_on_now(pc_loop_t *core)
{
    atomic_store(&core->sh->homes, 1);
    pc_log_debug(core->log, "home loops on (%zu with Redis traffic)", core->sh->nhomes);
}
