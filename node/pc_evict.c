/*
 * pc_evict.c -- the store's eviction policies, LRU and S3-FIFO (the
 * contract is pc_evict.h; the design and its measurements are in
 * docs/STORE.md §4).
 *
 * Every function runs under the shard's lock (pc_store.c takes it).
 */
#include "pc_evict.h"

#include <stdbool.h>
#include <stdlib.h>

#include "pc_store_int.h"

#define META_FREQ 0x03u /* S3-FIFO access count, saturating at 3 */
#define META_MAIN 0x04u /* in the main queue (else small; LRU uses small) */
#define FREQ_MAX 3u

#define Q_SMALL 0 /* S3-FIFO small queue; the only list under LRU */
#define Q_MAIN 1

#define GHOST_WAYS 8u
#define GHOST_MIN 64u
#define GHOST_EPOCHS 4u

static int item_queue(const pc_item_t *it)
{
    return (it->meta & META_MAIN) ? Q_MAIN : Q_SMALL;
}

static unsigned item_freq(const pc_item_t *it)
{
    return it->meta & META_FREQ;
}

static void item_set_freq(pc_item_t *it, unsigned f)
{
    it->meta = (uint8_t)((it->meta & ~META_FREQ) | (f & META_FREQ));
}

/* ------------------------------------------------------------------ */
/* Queues                                                              */
/* ------------------------------------------------------------------ */

void pc_evict_push(pc_evict_t *ev, pc_item_t *it, int qi)
{
    struct pc_evict_queue *q = &ev->q[qi];

    it->meta = (uint8_t)(qi == Q_MAIN ? (it->meta | META_MAIN) : (it->meta & ~META_MAIN));
    it->prev = NULL;
    it->next = q->head;
    if (q->head)
        q->head->prev = it;
    else
        q->tail = it;
    q->head = it;
    q->items++;
    q->bytes += item_charge(it);
}

void pc_evict_remove(pc_evict_t *ev, pc_item_t *it)
{
    struct pc_evict_queue *q = &ev->q[item_queue(it)];

    if (it->prev)
        it->prev->next = it->next;
    else
        q->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        q->tail = it->prev;
    it->prev = it->next = NULL;
    q->items--;
    q->bytes -= item_charge(it);
}

/* ------------------------------------------------------------------ */
/* Ghost (S3-FIFO)                                                     */
/* ------------------------------------------------------------------ */

static bool ghost_live(const struct pc_evict_ghost *g, uint32_t slot)
{
    return slot != 0 && (uint8_t)(g->epoch - (uint8_t)slot) < GHOST_EPOCHS;
}

static uint32_t *ghost_bucket(const struct pc_evict_ghost *g, uint32_t hash)
{
    size_t nbuckets = g->nslots / GHOST_WAYS;
    return &g->slot[(hash & (nbuckets - 1)) * GHOST_WAYS];
}

static size_t ghost_window(const pc_evict_t *ev)
{
    return ev->q[Q_MAIN].items > GHOST_MIN ? ev->q[Q_MAIN].items : GHOST_MIN;
}

/* Remembers that an item with this hash was just evicted from small. */
static void ghost_add(pc_evict_t *ev, uint32_t hash)
{
    struct pc_evict_ghost *g = &ev->ghost;
    size_t window = ghost_window(ev);
    uint32_t fp = hash >> 8;
    uint32_t *b, *pick = NULL;
    unsigned oldest_age = 0;

    if (g->nslots < window) {
        size_t n = GHOST_MIN;
        uint32_t *slots;

        while (n < window)
            n *= 2;
        slots = calloc(n, sizeof *slots);
        if (!slots)
            return; /* the ghost is advice: without it we only lose hit ratio */
        free(g->slot);
        g->slot = slots;
        g->nslots = n;
    }
    /* Same fingerprint first (refresh), else a dead slot, else the oldest. */
    b = ghost_bucket(g, hash);
    for (unsigned i = 0; i < GHOST_WAYS; i++) {
        if (ghost_live(g, b[i]) && (b[i] >> 8) == fp) {
            pick = &b[i];
            break;
        }
        unsigned age = ghost_live(g, b[i]) ? (uint8_t)(g->epoch - (uint8_t)b[i]) : 256u;
        if (!pick || age > oldest_age) {
            pick = &b[i];
            oldest_age = age;
        }
    }
    *pick = (fp << 8) | g->epoch;
    if (++g->inserts >= window / GHOST_EPOCHS) {
        g->epoch++;
        g->inserts = 0;
    }
}

/* True if the hash was evicted recently; forgets it (it is being readmitted). */
static bool ghost_take(pc_evict_t *ev, uint32_t hash)
{
    struct pc_evict_ghost *g = &ev->ghost;
    uint32_t fp = hash >> 8;
    uint32_t *b;

    if (!g->slot)
        return false;
    b = ghost_bucket(g, hash);
    for (unsigned i = 0; i < GHOST_WAYS; i++) {
        if (ghost_live(g, b[i]) && (b[i] >> 8) == fp) {
            b[i] = 0;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Eviction                                                            */
/* ------------------------------------------------------------------ */

/* A hit: LRU moves the item to the head, S3-FIFO only counts it. */
void pc_evict_hit(pc_evict_t *ev, pc_evict_policy_t policy, pc_item_t *it)
{
    if (policy == PC_EVICT_LRU) {
        if (ev->q[Q_SMALL].head != it) {
            pc_evict_remove(ev, it);
            pc_evict_push(ev, it, Q_SMALL);
        }
    } else if (item_freq(it) < FREQ_MAX) {
        item_set_freq(it, item_freq(it) + 1);
    }
}

/*
 * S3-FIFO victim choice. Small is drained while it holds at least its 10%
 * share (or main is empty): an item hit while in small moves to main with
 * its count cleared, one never hit is the victim. Otherwise main's tail is
 * the victim unless it was hit, in which case it goes back to the head with
 * its count decremented (a 2-bit CLOCK). Each pass around main decrements a
 * count that only hits raise, so the loop ends; its cost is paid for by
 * earlier hits.
 */
static pc_item_t *s3fifo_victim(pc_evict_t *ev, size_t small_target)
{
    struct pc_evict_queue *small = &ev->q[Q_SMALL], *main_q = &ev->q[Q_MAIN];

    if (small->tail && (small->bytes >= small_target || !main_q->tail)) {
        while (small->tail) {
            pc_item_t *it = small->tail;

            if (item_freq(it) == 0)
                return it;
            pc_evict_remove(ev, it);
            item_set_freq(it, 0);
            pc_evict_push(ev, it, Q_MAIN);
        }
    }
    while (main_q->tail) {
        pc_item_t *it = main_q->tail;

        if (item_freq(it) == 0)
            return it;
        pc_evict_remove(ev, it);
        item_set_freq(it, item_freq(it) - 1);
        pc_evict_push(ev, it, Q_MAIN);
    }
    return NULL;
}


size_t pc_evict_fixed(pc_evict_policy_t policy)
{
    return policy == PC_EVICT_S3FIFO ? GHOST_MIN * sizeof(uint32_t) : 0;
}

int pc_evict_admit(pc_evict_t *ev, pc_evict_policy_t policy, uint32_t hash)
{
    if (policy == PC_EVICT_S3FIFO && ghost_take(ev, hash))
        return Q_MAIN;
    return Q_SMALL;
}

int pc_evict_replace(pc_item_t *it, const pc_item_t *old)
{
    item_set_freq(it, item_freq(old));
    return item_queue(old);
}

pc_item_t *pc_evict_victim(pc_evict_t *ev, pc_evict_policy_t policy, size_t small_target)
{
    pc_item_t *victim;

    if (policy == PC_EVICT_LRU)
        victim = ev->q[Q_SMALL].tail;
    else
        victim = s3fifo_victim(ev, small_target);
    if (victim && policy == PC_EVICT_S3FIFO && item_queue(victim) == Q_SMALL)
        ghost_add(ev, victim->hash);
    return victim;
}

void pc_evict_free(pc_evict_t *ev)
{
    free(ev->ghost.slot);
    ev->ghost.slot = NULL;
    ev->ghost.nslots = 0;
}

int pc_evict_verify(const pc_evict_t *ev, pc_evict_policy_t policy, size_t *items,
                    size_t *bytes)
{
    size_t qn[2] = {0, 0}, qb[2] = {0, 0};

    for (int q = 0; q < 2; q++) {
        const pc_item_t *prev = NULL;

        for (const pc_item_t *it = ev->q[q].head; it; prev = it, it = it->next) {
            if (it->prev != prev || item_queue(it) != q)
                return PC_EINTERNAL;
            if (policy == PC_EVICT_LRU && it->meta != 0)
                return PC_EINTERNAL;
            qn[q]++;
            qb[q] += item_charge(it);
        }
        if (ev->q[q].tail != prev || qn[q] != ev->q[q].items || qb[q] != ev->q[q].bytes)
            return PC_EINTERNAL;
    }
    if (policy == PC_EVICT_LRU && qn[Q_MAIN] != 0)
        return PC_EINTERNAL;
    *items = qn[0] + qn[1];
    *bytes = qb[0] + qb[1];
    return PC_OK;
}
