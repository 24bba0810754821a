/*
 * pc_sched.c -- start-time fair queuing over a binary min-heap (see
 * pc_sched.h).
 */
#include "pc_sched.h"

#include <stdlib.h>

#include "pc_error.h"

void pc_sched_init(pc_sched_t *s)
{
    s->heap = NULL;
    s->n = s->cap = 0;
    s->vclock = 0;
    s->seq = 0;
}

void pc_sched_free(pc_sched_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->heap[i]->pos = 0;
    free(s->heap);
    pc_sched_init(s);
}

void pc_sched_entry_init(pc_sched_entry_t *e)
{
    e->vtime = 0;
    e->seq = 0;
    e->pos = 0;
}

static int before(const pc_sched_entry_t *a, const pc_sched_entry_t *b)
{
    return a->vtime < b->vtime || (a->vtime == b->vtime && a->seq < b->seq);
}

static void place(pc_sched_t *s, size_t i, pc_sched_entry_t *e)
{
    s->heap[i] = e;
    e->pos = i + 1;
}

static void sift_up(pc_sched_t *s, size_t i)
{
    pc_sched_entry_t *e = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(e, s->heap[parent]))
            break;
        place(s, i, s->heap[parent]);
        i = parent;
    }
    place(s, i, e);
}

static void sift_down(pc_sched_t *s, size_t i)
{
    pc_sched_entry_t *e = s->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const pc_sched_entry_t *best = e;
        if (l < s->n && before(s->heap[l], best)) {
            m = l;
            best = s->heap[l];
        }
        if (l + 1 < s->n && before(s->heap[l + 1], best))
            m = l + 1;
        if (m == i)
            break;
        place(s, i, s->heap[m]);
        i = m;
    }
    place(s, i, e);
}

int pc_sched_reserve(pc_sched_t *s, size_t n)
{
    if (n <= s->cap)
        return 0;
    size_t cap = s->cap ? 2 * s->cap : 64;
    if (cap < n)
        cap = n;
    pc_sched_entry_t **h = realloc(s->heap, cap * sizeof *h);
    if (h == NULL)
        return PC_ENOMEM;
    s->heap = h;
    s->cap = cap;
    return 0;
}

int pc_sched_push(pc_sched_t *s, pc_sched_entry_t *e)
{
    if (e->pos != 0)
        return 0;
    if (s->n == s->cap && pc_sched_reserve(s, s->n + 1) < 0)
        return PC_ENOMEM;
    if (e->vtime < s->vclock)
        e->vtime = s->vclock; /* idle time earns no credit */
    e->seq = s->seq++;
    s->heap[s->n] = e;
    e->pos = ++s->n;
    sift_up(s, s->n - 1);
    return 0;
}

/* Takes the entry at heap index i out, keeping the heap a heap. */
static void take(pc_sched_t *s, size_t i)
{
    pc_sched_entry_t *e = s->heap[i];
    e->pos = 0;
    if (i == --s->n)
        return;
    place(s, i, s->heap[s->n]);
    if (i > 0 && before(s->heap[i], s->heap[(i - 1) / 2]))
        sift_up(s, i);
    else
        sift_down(s, i);
}

pc_sched_entry_t *pc_sched_pop(pc_sched_t *s)
{
    if (s->n == 0)
        return NULL;
    pc_sched_entry_t *e = s->heap[0];
    take(s, 0);
    if (e->vtime > s->vclock)
        s->vclock = e->vtime;
    return e;
}

void pc_sched_remove(pc_sched_t *s, pc_sched_entry_t *e)
{
    if (e->pos != 0)
        take(s, e->pos - 1);
}

void pc_sched_charge(pc_sched_t *s, pc_sched_entry_t *e, uint64_t work)
{
    uint64_t start = e->vtime > s->vclock ? e->vtime : s->vclock;
    s->vclock = start;
    e->vtime = start + work;
}
