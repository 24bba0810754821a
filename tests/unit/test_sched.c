/*
 * test_sched.c -- pc_sched: heap order, ties, removal, the clock, and the
 * fairness a light client gets among heavy ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pc_sched.h"

static void test_pops_in_virtual_time_order_ties_by_push(void **state)
{
    (void)state;
    pc_sched_t s;
    pc_sched_init(&s);
    pc_sched_entry_t e[6];
    const uint64_t vt[6] = {30, 10, 20, 10, 0, 20};
    for (int i = 0; i < 6; i++) {
        pc_sched_entry_init(&e[i]);
        e[i].vtime = vt[i];
        assert_int_equal(pc_sched_push(&s, &e[i]), 0);
        assert_true(pc_sched_queued(&e[i]));
    }
    assert_int_equal(pc_sched_push(&s, &e[2]), 0); /* queued already: no-op */
    assert_int_equal(pc_sched_count(&s), 6);
    const int order[6] = {4, 1, 3, 2, 5, 0};
    for (int i = 0; i < 6; i++) {
        pc_sched_entry_t *p = pc_sched_pop(&s);
        assert_ptr_equal(p, &e[order[i]]);
        assert_false(pc_sched_queued(p));
        assert_int_equal(s.vclock, vt[order[i]]);
    }
    assert_null(pc_sched_pop(&s));
    pc_sched_free(&s);
}

static void test_idle_entry_starts_at_the_clock(void **state)
{
    (void)state;
    pc_sched_t s;
    pc_sched_init(&s);
    pc_sched_entry_t busy, idle;
    pc_sched_entry_init(&busy);
    pc_sched_entry_init(&idle);
    /* busy is served for a while: the clock moves on */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pc_sched_push(&s, &busy), 0);
        assert_ptr_equal(pc_sched_pop(&s), &busy);
        pc_sched_charge(&s, &busy, 1000);
    }
    assert_int_equal(s.vclock, 9000);
    assert_int_equal(busy.vtime, 10000);
    /* idle wakes up with vtime 0: no credit for having waited */
    assert_int_equal(pc_sched_push(&s, &idle), 0);
    assert_int_equal(idle.vtime, 9000);
    assert_int_equal(pc_sched_push(&s, &busy), 0);
    assert_ptr_equal(pc_sched_pop(&s), &idle);
    pc_sched_charge(&s, &idle, 1);
    assert_ptr_equal(pc_sched_pop(&s), &busy);
    pc_sched_free(&s);
}

static void test_charge_without_pop_moves_the_clock(void **state)
{
    (void)state;
    pc_sched_t s;
    pc_sched_init(&s);
    pc_sched_entry_t a, b;
    pc_sched_entry_init(&a);
    pc_sched_entry_init(&b);
    pc_sched_charge(&s, &a, 500); /* served at once, nobody waiting */
    assert_int_equal(s.vclock, 0);
    assert_int_equal(a.vtime, 500);
    pc_sched_charge(&s, &a, 500);
    assert_int_equal(s.vclock, 500);
    /* b arrives now: it starts at the clock, before a's next turn */
    assert_int_equal(pc_sched_push(&s, &b), 0);
    assert_int_equal(pc_sched_push(&s, &a), 0);
    assert_ptr_equal(pc_sched_pop(&s), &b);
    assert_ptr_equal(pc_sched_pop(&s), &a);
    assert_int_equal(s.vclock, 1000);
    pc_sched_free(&s);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* Random pushes and removals against a sorted reference. */
static void test_remove_keeps_the_heap(void **state)
{
    (void)state;
    enum { N = 500 };
    pc_sched_t s;
    pc_sched_init(&s);
    static pc_sched_entry_t e[N];
    uint64_t ref[N];
    size_t nref = 0;
    srand(7);
    for (int i = 0; i < N; i++) {
        pc_sched_entry_init(&e[i]);
        e[i].vtime = (uint64_t)(rand() % 1000);
        assert_int_equal(pc_sched_push(&s, &e[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0) {
            pc_sched_remove(&s, &e[i]);
            assert_false(pc_sched_queued(&e[i]));
            pc_sched_remove(&s, &e[i]); /* not queued: no-op */
        } else {
            ref[nref++] = e[i].vtime;
        }
    }
    qsort(ref, nref, sizeof ref[0], cmp_u64);
    assert_int_equal(pc_sched_count(&s), nref);
    for (size_t i = 0; i < nref; i++) {
        pc_sched_entry_t *p = pc_sched_pop(&s);
        assert_non_null(p);
        assert_int_equal(p->vtime, ref[i]);
    }
    assert_null(pc_sched_pop(&s));
    pc_sched_free(&s);
}

/*
 * The property the node relies on (docs/ARCHITECTURE.md, "Fair turns"):
 * HEAVY clients each always have work that costs 1 MiB a turn; a light
 * client sends one small request now and then. Served in turns from the
 * scheduler, the light request waits for at most one turn of each heavy
 * client -- never for their backlog -- and once they have all had a turn
 * since the clock passed it, for none.
 */
static void test_light_client_among_heavy_ones(void **state)
{
    (void)state;
    enum { HEAVY = 100 };
    pc_sched_t s;
    pc_sched_init(&s);
    static pc_sched_entry_t h[HEAVY];
    pc_sched_entry_t light;
    pc_sched_entry_init(&light);
    for (int i = 0; i < HEAVY; i++) {
        pc_sched_entry_init(&h[i]);
        assert_int_equal(pc_sched_push(&s, &h[i]), 0);
    }
    int worst = 0;
    for (int req = 0; req < 50; req++) {
        /* the heavy ones run a while (a varying number of turns) */
        for (int t = 0; t < 37 + req * 13; t++) {
            pc_sched_entry_t *p = pc_sched_pop(&s);
            pc_sched_charge(&s, p, 1u << 20);
            assert_int_equal(pc_sched_push(&s, p), 0);
        }
        /* the light request arrives; count the turns until it is served */
        assert_int_equal(pc_sched_push(&s, &light), 0);
        int waited = 0;
        pc_sched_entry_t *p;
        while ((p = pc_sched_pop(&s)) != &light) {
            pc_sched_charge(&s, p, 1u << 20);
            assert_int_equal(pc_sched_push(&s, p), 0);
            waited++;
        }
        pc_sched_charge(&s, &light, 100);
        worst = waited > worst ? waited : worst;
        assert_true(waited < HEAVY);
    }
    pc_sched_free(&s);
    (void)worst;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pops_in_virtual_time_order_ties_by_push),
        cmocka_unit_test(test_idle_entry_starts_at_the_clock),
        cmocka_unit_test(test_charge_without_pop_moves_the_clock),
        cmocka_unit_test(test_remove_keeps_the_heap),
        cmocka_unit_test(test_light_client_among_heavy_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
