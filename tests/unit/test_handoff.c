/*
 * test_handoff.c -- pc_handoff_plan on real rings: where the keys of each
 * slot go when a member joins (to the new owner; dest[] numbers the
 * destinations), when we leave (several destinations), with nothing to
 * stream (send 0: purges only), a running plan re-aimed by a second
 * change, and a change that takes nothing from us (no plan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pc_handoff.h"
#include "pc_route.h"
#include "pc_slots.h"

#define MAXM 8

static pc_ring_t *ring_of(const char *const *names, size_t n, unsigned replicas)
{
    pc_ring_member_t m[MAXM];
    assert_true(n <= MAXM);
    for (size_t i = 0; i < n; i++)
        m[i] = (pc_ring_member_t){.name = names[i], .weight = 1};
    pc_ring_t *r = NULL;
    assert_int_equal(pc_ring_new(m, n, replicas, &r), 0);
    return r;
}

/* What a ring change from `old` to `nw` takes from `name` (as
 * pc_slots_ring_changed reports it: pc_slots_diff's HAND_OFF / PURGE). */
static uint8_t *lost_of(const pc_ring_t *old, const pc_ring_t *nw, const char *name)
{
    uint8_t *ro = malloc(PC_RING_SLOTS), *rn = malloc(PC_RING_SLOTS), *lost = malloc(PC_RING_SLOTS);
    assert_non_null(ro);
    assert_non_null(rn);
    assert_non_null(lost);
    pc_ring_roles(old, pc_ring_find(old, name), ro);
    pc_ring_roles(nw, pc_ring_find(nw, name), rn);
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
        lost[s] = (uint8_t)(pc_slots_diff(ro[s], rn[s], 0, 0) & (PC_SLOT_HAND_OFF | PC_SLOT_PURGE));
    free(ro);
    free(rn);
    return lost;
}

typedef struct {
    uint16_t *target;
    uint32_t dest[MAXM];
    size_t ndest, npurge;
} plan_t;

static void plan(const pc_ring_t *nw, long self, const uint8_t *lost, const uint16_t *prev,
                 int send, plan_t *p)
{
    p->target = malloc(PC_RING_SLOTS * sizeof *p->target);
    assert_non_null(p->target);
    memset(p->target, 0xEE, PC_RING_SLOTS * sizeof *p->target); /* every slot must be set */
    memset(p->dest, 0, sizeof p->dest);                          /* zeroed by the caller */
    p->npurge = 12345;
    p->ndest = pc_handoff_plan(nw, self, lost, prev, send, p->target, p->dest, &p->npurge);
}

static size_t count_target(const plan_t *p, uint16_t t)
{
    size_t n = 0;
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
        n += p->target[s] == t;
    return n;
}

/* dest[0..nmembers) numbers ndest destinations 1..ndest, each once. */
static void check_dest(const plan_t *p, size_t nmembers)
{
    unsigned seen = 0;
    size_t n = 0;
    for (size_t i = nmembers; i < MAXM; i++)
        assert_int_equal(p->dest[i], 0); /* nothing written past the ring */
    for (size_t i = 0; i < nmembers; i++) {
        if (p->dest[i] == 0)
            continue;
        assert_true(p->dest[i] <= p->ndest);
        assert_false(seen & (1u << p->dest[i]));
        seen |= 1u << p->dest[i];
        n++;
    }
    assert_int_equal(n, p->ndest);
}

static const char *const ABC[] = {"a", "b", "c"};
static const char *const ABCD[] = {"a", "b", "c", "d"};
static const char *const ABCDE[] = {"a", "b", "c", "d", "e"};
static const char *const BC[] = {"b", "c"};

/* d joins a, b, c (2 placements each); we are a. */
static void test_join(void **state)
{
    (void)state;
    pc_ring_t *old = ring_of(ABC, 3, 2), *nw = ring_of(ABCD, 4, 2);
    long self = pc_ring_find(nw, "a"), d = pc_ring_find(nw, "d");
    uint8_t *lost = lost_of(old, nw, "a");
    plan_t p;
    plan(nw, self, lost, NULL, 1, &p);

    /* one destination: the newcomer, who takes every slot a loses */
    assert_int_equal(p.ndest, 1);
    assert_int_equal(p.dest[d], 1);
    check_dest(&p, 4);
    size_t handed = 0, kept_place = 0, no_place = 0, purged = 0;
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        unsigned rn = pc_route_role(nw, self, s);
        if (lost[s] & PC_SLOT_HAND_OFF) {
            assert_int_equal(pc_ring_slot_owner(nw, s), d);
            assert_int_equal(p.target[s], 1 + 0); /* 1 + the destination index of d */
            assert_int_equal(p.target[s], p.dest[d]);
            handed++;
            if (rn == PC_ROLE_NONE)
                no_place++;
            else
                kept_place++;
        } else if (lost[s] & PC_SLOT_PURGE) {
            assert_int_equal(rn, PC_ROLE_NONE);
            assert_int_equal(p.target[s], PC_HANDOFF_PURGE);
            purged++;
        } else {
            assert_int_equal(p.target[s], 0);
        }
    }
    /* the cases above happened (one join pushes an owner down one place
     * at most: a slot handed off with no place left is test_leave's) */
    assert_int_equal(handed, pc_ring_owned_slots(old, 0) - pc_ring_owned_slots(nw, 0));
    assert_true(kept_place > 0 && purged > 0);
    assert_int_equal(no_place, 0);
    assert_int_equal(p.npurge, purged);
    assert_int_equal(count_target(&p, PC_HANDOFF_PURGE), purged);
    assert_int_equal(count_target(&p, 1), handed);
    assert_int_equal(count_target(&p, 0), PC_RING_SLOTS - handed - purged);

    free(p.target);
    free(lost);
    pc_ring_free(&old);
    pc_ring_free(&nw);
}

/* The same join with nothing to stream (--handoff-rate 0): only purges,
 * of every slot lost where a keeps no place. */
static void test_join_no_send(void **state)
{
    (void)state;
    pc_ring_t *old = ring_of(ABC, 3, 2), *nw = ring_of(ABCD, 4, 2);
    long self = pc_ring_find(nw, "a");
    uint8_t *lost = lost_of(old, nw, "a");
    plan_t p;
    plan(nw, self, lost, NULL, 0, &p);

    assert_int_equal(p.ndest, 0);
    for (size_t i = 0; i < MAXM; i++)
        assert_int_equal(p.dest[i], 0);
    size_t purged = 0, kept = 0;
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        unsigned rn = pc_route_role(nw, self, s);
        if (lost[s] != 0 && rn == PC_ROLE_NONE) {
            assert_int_equal(p.target[s], PC_HANDOFF_PURGE);
            purged++;
        } else {
            assert_int_equal(p.target[s], 0);
            kept += lost[s] != 0; /* handed off as owner, still a replica: kept */
        }
    }
    assert_true(purged > 0 && kept > 0);
    assert_int_equal(p.npurge, purged);

    free(p.target);
    free(lost);
    pc_ring_free(&old);
    pc_ring_free(&nw);
}

/* We (a) leave a, b, c: the new ring is b, c, without us (self -1).
 * Every slot we owned goes to its new owner, two destinations. */
static void test_leave(void **state)
{
    (void)state;
    pc_ring_t *old = ring_of(ABC, 3, 2), *nw = ring_of(BC, 2, 2);
    uint8_t *lost = lost_of(old, nw, "a");
    plan_t p;
    plan(nw, -1, lost, NULL, 1, &p);

    assert_int_equal(p.ndest, 2);
    check_dest(&p, 2);
    assert_true(p.dest[0] != 0 && p.dest[1] != 0);
    size_t to[3] = {0}, purged = 0;
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        if (lost[s] & PC_SLOT_HAND_OFF) {
            /* no place left for us, but streamed: not PC_HANDOFF_PURGE */
            long o = pc_ring_slot_owner(nw, s);
            assert_int_equal(p.target[s], p.dest[o]);
            to[p.target[s]]++;
        } else if (lost[s] & PC_SLOT_PURGE) {
            assert_int_equal(p.target[s], PC_HANDOFF_PURGE);
            purged++;
        } else {
            assert_int_equal(p.target[s], 0); /* no place before either */
        }
    }
    assert_true(to[1] > 0 && to[2] > 0);
    assert_int_equal(to[1] + to[2], pc_ring_owned_slots(old, 0));
    assert_true(purged > 0);
    assert_int_equal(p.npurge, purged);

    free(p.target);
    free(lost);
    pc_ring_free(&old);
    pc_ring_free(&nw);
}

/* A hand-off to d is running when e joins too: the slots not yet
 * streamed are re-aimed at their owner on the newest ring. */
static void test_prev_reaimed(void **state)
{
    (void)state;
    pc_ring_t *r0 = ring_of(ABC, 3, 2), *r1 = ring_of(ABCD, 4, 2), *r2 = ring_of(ABCDE, 5, 2);
    long self = 0, d = pc_ring_find(r2, "d"), e = pc_ring_find(r2, "e");
    uint8_t *lost1 = lost_of(r0, r1, "a"), *lost2 = lost_of(r1, r2, "a");
    plan_t p1, p2;
    plan(r1, self, lost1, NULL, 1, &p1);
    assert_int_equal(p1.ndest, 1);
    plan(r2, self, lost2, p1.target, 1, &p2);

    check_dest(&p2, 5);
    size_t to_d = 0, to_e_reaimed = 0, to_e_new = 0, purged = 0;
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        int was_moving = p1.target[s] != 0 && p1.target[s] != PC_HANDOFF_PURGE;
        long o = pc_ring_slot_owner(r2, s);
        if (was_moving || (lost2[s] & PC_SLOT_HAND_OFF)) {
            assert_true(o == d || o == e); /* joins take only from others */
            assert_int_equal(p2.target[s], p2.dest[o]);
            assert_true(p2.dest[o] != 0);
            if (o == d)
                to_d++;
            else if (was_moving)
                to_e_reaimed++; /* was going to d: now to e */
            else
                to_e_new++;
        } else if (p1.target[s] == PC_HANDOFF_PURGE || (lost2[s] & PC_SLOT_PURGE)) {
            assert_int_equal(pc_route_role(r2, self, s), PC_ROLE_NONE);
            assert_int_equal(p2.target[s], PC_HANDOFF_PURGE);
            purged++;
        } else {
            assert_int_equal(p2.target[s], 0);
        }
    }
    assert_true(to_d > 0 && to_e_reaimed > 0 && to_e_new > 0);
    assert_int_equal(p2.ndest, 2);
    assert_int_equal(p2.npurge, purged);
    /* the purges of the running plan are kept */
    assert_true(purged >= p1.npurge);

    free(p1.target);
    free(p2.target);
    free(lost1);
    free(lost2);
    pc_ring_free(&r0);
    pc_ring_free(&r1);
    pc_ring_free(&r2);
}

/* A running plan's slots after a change that gives us places back (the
 * prev entries set by hand, on a real ring). */
static void test_prev_by_hand(void **state)
{
    (void)state;
    pc_ring_t *nw = ring_of(ABCD, 4, 2);
    long self = pc_ring_find(nw, "a");
    uint32_t own = UINT32_MAX, rep = UINT32_MAX, none = UINT32_MAX, other = UINT32_MAX;
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++) {
        unsigned r = pc_route_role(nw, self, s);
        if (r == PC_ROLE_OWNER && own == UINT32_MAX)
            own = s;
        else if (r == PC_ROLE_REPLICA && rep == UINT32_MAX)
            rep = s;
        else if (r == PC_ROLE_NONE && none == UINT32_MAX)
            none = s;
        else if (r == PC_ROLE_NONE && other == UINT32_MAX)
            other = s;
    }
    assert_true(own != UINT32_MAX && rep != UINT32_MAX && none != UINT32_MAX &&
                other != UINT32_MAX);
    uint8_t *lost = calloc(PC_RING_SLOTS, 1);
    uint16_t *prev = calloc(PC_RING_SLOTS, sizeof *prev);
    assert_non_null(lost);
    assert_non_null(prev);
    prev[own] = 1;                  /* was moving; we own it again: nothing to send */
    prev[rep] = PC_HANDOFF_PURGE;   /* was to be purged; we are its replica now: keep */
    prev[none] = PC_HANDOFF_PURGE;  /* was to be purged, still no place: purge */
    prev[other] = 3;                /* was moving to some destination: to its owner */

    plan_t p;
    plan(nw, self, lost, prev, 1, &p);
    assert_int_equal(p.target[own], 0);
    assert_int_equal(p.target[rep], 0);
    assert_int_equal(p.target[none], PC_HANDOFF_PURGE);
    long o = pc_ring_slot_owner(nw, other);
    assert_int_equal(p.ndest, 1);
    assert_int_equal(p.dest[o], 1);
    assert_int_equal(p.target[other], 1);
    assert_int_equal(p.npurge, 1);
    assert_int_equal(count_target(&p, 0), PC_RING_SLOTS - 2);
    free(p.target);

    /* nothing to send: the moving slot we have no place in is purged */
    plan(nw, self, lost, prev, 0, &p);
    assert_int_equal(p.ndest, 0);
    assert_int_equal(p.target[own], 0);
    assert_int_equal(p.target[rep], 0);
    assert_int_equal(p.target[none], PC_HANDOFF_PURGE);
    assert_int_equal(p.target[other], PC_HANDOFF_PURGE);
    assert_int_equal(p.npurge, 2);
    assert_int_equal(count_target(&p, 0), PC_RING_SLOTS - 2);
    free(p.target);

    free(prev);
    free(lost);
    pc_ring_free(&nw);
}

/* Nothing lost, no running plan: no plan. A member leaving only gives
 * the others places (here: d leaves, seen from a). */
static void test_nothing_lost(void **state)
{
    (void)state;
    pc_ring_t *old = ring_of(ABCD, 4, 2), *nw = ring_of(ABC, 3, 2);
    uint8_t *lost = lost_of(old, nw, "a");
    for (uint32_t s = 0; s < PC_RING_SLOTS; s++)
        assert_int_equal(lost[s], 0);
    for (int send = 0; send <= 1; send++) {
        plan_t p;
        plan(nw, pc_ring_find(nw, "a"), lost, NULL, send, &p);
        assert_int_equal(p.ndest, 0);
        assert_int_equal(p.npurge, 0);
        for (size_t i = 0; i < MAXM; i++)
            assert_int_equal(p.dest[i], 0);
        assert_int_equal(count_target(&p, 0), PC_RING_SLOTS);
        free(p.target);
    }
    free(lost);
    pc_ring_free(&old);
    pc_ring_free(&nw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join),         cmocka_unit_test(test_join_no_send),
        cmocka_unit_test(test_leave),        cmocka_unit_test(test_prev_reaimed),
        cmocka_unit_test(test_prev_by_hand), cmocka_unit_test(test_nothing_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
