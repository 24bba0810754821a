/*
 * pc_slots.c -- the core's per-slot state of ring changes (pc_slots.h).
 */
#include "pc_slots.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "pc_route.h"

#define TOMBSTONES 65536 /* power of two */
#define TOMB_PROBE 16

typedef struct tomb {
    uint64_t hash;
    uint64_t until;
} tomb_t;

struct pc_slots {
    uint32_t *epoch;   /* PC_RING_SLOTS: the store epoch when we gained it */
    uint64_t *gained;  /* PC_RING_SLOTS: when (loop ms; 0 = at start) */
    /* The highest epoch[] and the latest gained[]: an item at least this
     * new is valid in every slot, and past last_gained + settle_ms no
     * slot is settling. They spare the hot path a read of those 256 KB
     * and 512 KB arrays (a cache miss per request). */
    uint32_t epoch_max;
    uint64_t last_gained;
    uint64_t ring_at; /* when the ring last changed (0 = never) */
    tomb_t *tombs;    /* made at the first delete in a settling slot */
    uint8_t hashkey[crypto_shorthash_KEYBYTES];
};

unsigned pc_slots_diff(unsigned ro, unsigned rn, int joining, int memory_only)
{
    unsigned f = 0;
    int promoted = rn == PC_ROLE_OWNER && ro == PC_ROLE_REPLICA;
    if ((rn == PC_ROLE_OWNER && ro != PC_ROLE_OWNER && !(promoted && memory_only)) ||
        (rn == PC_ROLE_REPLICA && ro == PC_ROLE_NONE) || (joining && rn != PC_ROLE_NONE))
        f |= PC_SLOT_GAINED;
    if (ro == PC_ROLE_OWNER && rn != PC_ROLE_OWNER)
        f |= PC_SLOT_HAND_OFF;
    else if (ro != PC_ROLE_NONE && rn == PC_ROLE_NONE)
        f |= PC_SLOT_PURGE;
    return f;
}

int pc_slots_new(pc_loop_t *core)
{
    pc_slots_t *st = calloc(1, sizeof *st);
    if (st == NULL)
        return PC_ENOMEM;
    st->epoch = calloc(PC_RING_SLOTS, sizeof *st->epoch);
    st->gained = calloc(PC_RING_SLOTS, sizeof *st->gained);
    randombytes_buf(st->hashkey, sizeof st->hashkey);
    core->slots = st;
    if (st->epoch == NULL || st->gained == NULL) {
        pc_slots_free(core);
        return PC_ENOMEM;
    }
    return 0;
}

void pc_slots_free(pc_loop_t *core)
{
    pc_slots_t *st = core->slots;
    if (st == NULL)
        return;
    free(st->epoch);
    free(st->gained);
    free(st->tombs);
    free(st);
    core->slots = NULL;
}

uint32_t pc_slots_ring_changed(pc_loop_t *core, const pc_ring_t *old, const pc_ring_t *nw,
                               const uint8_t *rold, const uint8_t *rnew, uint8_t *lost)
{
    pc_slots_t *st = core->slots;
    long so = old ? pc_ring_find(old, core->name) : -1;
    long sn = pc_ring_find(nw, core->name);
    uint64_t now = pc_loop_now(core);
    int joining = old != NULL && pc_ring_size(old) <= 1 && pc_ring_size(nw) > 1;
    /* One epoch bump covers all slots of this change. */
    uint32_t epoch = 0, gained = 0, nlost = 0;
    for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
        unsigned ro = rold ? rold[slot] : pc_route_role(old, so, slot);
        unsigned rn = rnew ? rnew[slot] : pc_route_role(nw, sn, slot);
        unsigned f = pc_slots_diff(ro, rn, joining, core->backend == NULL);
        if (f & PC_SLOT_GAINED) {
            if (epoch == 0)
                epoch = pc_store_epoch_bump(core->store);
            st->epoch[slot] = epoch;
            if (epoch > st->epoch_max)
                st->epoch_max = epoch;
            /* The first ring is no change: nobody else wrote meanwhile.
             * The table starts zeroed and untouched: writing the zeros
             * would fault in 512 KiB at start for nothing. */
            if (old != NULL || st->gained[slot] != 0)
                st->gained[slot] = old ? now : 0;
            if (old)
                st->last_gained = now;
            gained++;
        }
        if (lost != NULL)
            lost[slot] = (uint8_t)(f & (PC_SLOT_HAND_OFF | PC_SLOT_PURGE));
        nlost += (f & (PC_SLOT_HAND_OFF | PC_SLOT_PURGE)) != 0;
    }
    if (old != NULL)
        st->ring_at = now;
    pc_log_info(core->log,
                "ring %016llx: %zu member(s); this node gained %u and lost %u of %u slots",
                (unsigned long long)pc_ring_fingerprint(nw), pc_ring_size(nw), gained, nlost,
                PC_RING_SLOTS);
    return nlost;
}

uint32_t pc_slots_regain(pc_loop_t *core, const uint8_t *roles)
{
    pc_slots_t *st = core->slots;
    if (st == NULL || core->backend == NULL)
        return 0;
    uint64_t now = pc_loop_now(core);
    uint32_t epoch = pc_store_epoch_bump(core->store), n = 0;
    for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
        if (roles[slot] == PC_ROLE_NONE)
            continue;
        st->epoch[slot] = epoch;
        st->gained[slot] = now;
        n++;
    }
    if (epoch > st->epoch_max)
        st->epoch_max = epoch;
    st->last_gained = now;
    pc_log_info(core->log, "after the partition: %u slots gained again", n);
    return n;
}

int pc_slots_stale(const pc_loop_t *l, const pc_item_t *it, const uint8_t *k, size_t n,
                   uint32_t slot)
{
    const pc_slots_t *st = l->slots;
    if (st == NULL || pc_item_epoch(it) >= st->epoch_max)
        return 0;
    if (slot == UINT32_MAX)
        slot = pc_ring_slot(k, n);
    return pc_item_epoch(it) < st->epoch[slot];
}

/* In the first settle_ms after we gained the slot? Then *gained says when. */
static int settling(const pc_loop_t *l, uint32_t slot, uint64_t *gained)
{
    const pc_slots_t *st = l->slots;
    uint64_t now = pc_loop_now(l);
    if (st == NULL || st->last_gained == 0 || now >= st->last_gained + l->set.settle_ms)
        return 0;
    uint64_t g = st->gained[slot];
    *gained = g;
    return g != 0 && now < g + l->set.settle_ms;
}

uint64_t pc_slots_cap(pc_loop_t *l, uint32_t slot, uint64_t expire)
{
    uint64_t g;
    if (!settling(l, slot, &g))
        return expire;
    uint64_t cap = g + 2 * l->set.settle_ms;
    if (expire == 0 || expire > cap) {
        l->stats.settle_capped++;
        return cap;
    }
    return expire;
}

uint64_t pc_slots_cap_key(pc_loop_t *l, const uint8_t *k, size_t n, uint64_t expire)
{
    return l->slots == NULL ? expire : pc_slots_cap(l, pc_ring_slot(k, n), expire);
}

static uint64_t tomb_hash(const pc_slots_t *st, const uint8_t *k, size_t n)
{
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, k, n, st->hashkey);
    return h;
}

void pc_slots_tomb_add(pc_loop_t *l, const uint8_t *k, size_t n)
{
    pc_slots_t *st = l->slots;
    uint64_t g;
    if (st == NULL || !settling(l, pc_ring_slot(k, n), &g))
        return;
    if (st->tombs == NULL && (st->tombs = calloc(TOMBSTONES, sizeof *st->tombs)) == NULL)
        return;
    uint64_t h = tomb_hash(st, k, n), now = pc_loop_now(l);
    tomb_t *victim = NULL;
    for (unsigned i = 0; i < TOMB_PROBE; i++) {
        tomb_t *t = &st->tombs[(h + i) & (TOMBSTONES - 1)];
        if (t->hash == h || t->until <= now) {
            victim = t;
            break;
        }
        if (victim == NULL || t->until < victim->until)
            victim = t;
    }
    victim->hash = h;
    victim->until = g + 2 * l->set.settle_ms;
}

int pc_slots_tomb_has(pc_loop_t *l, const uint8_t *k, size_t n)
{
    const pc_slots_t *st = l->slots;
    if (st == NULL || st->tombs == NULL)
        return 0;
    uint64_t h = tomb_hash(st, k, n), now = pc_loop_now(l);
    for (unsigned i = 0; i < TOMB_PROBE; i++) {
        const tomb_t *t = &st->tombs[(h + i) & (TOMBSTONES - 1)];
        if (t->hash == h && t->until > now)
            return 1;
    }
    return 0;
}

const uint32_t *pc_slots_epochs(const pc_loop_t *core)
{
    return core->slots ? core->slots->epoch : NULL;
}

uint32_t pc_slots_epoch_max(const pc_loop_t *core)
{
    return core->slots ? core->slots->epoch_max : 0;
}

uint64_t pc_slots_settle_until(const pc_loop_t *core)
{
    const pc_slots_t *st = core->slots;
    return st && st->last_gained ? st->last_gained + core->set.settle_ms : 0;
}

int pc_slots_settled(const pc_loop_t *core, uint64_t now)
{
    const pc_slots_t *st = core->slots;
    return st == NULL || st->ring_at == 0 || now >= st->ring_at + core->set.settle_ms;
}
