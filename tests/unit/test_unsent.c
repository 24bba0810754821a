/*
 * test_unsent.c -- a client connection's bound on unsent bytes
 * (node/pc_unsent.h): where it starts, how it is earned, and when a
 * moving budget sets it again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pc_unsent.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static void test_starts_small_whatever_the_budget(void **state)
{
    (void)state;
    assert_int_equal(pc_unsent_target(0, 4 * MiB, 0), PC_UNSENT_START);
    assert_int_equal(pc_unsent_target(0, 256 * KiB, 0), PC_UNSENT_START);
    /* a budget under the start (before the token: 16 KiB) is the bound */
    assert_int_equal(pc_unsent_target(0, 16 * KiB, 0), 16 * KiB);
    /* set already: nothing to do */
    assert_int_equal(pc_unsent_target(PC_UNSENT_START, 4 * MiB, 0), 0);
}

static void test_earned_by_backlogs_up_to_the_budget(void **state)
{
    (void)state;
    size_t set = pc_unsent_target(0, 4 * MiB, 0), earned = 0;
    int backlogs = 0;
    while (set < 4 * MiB) {
        earned = pc_unsent_earn(earned, 4 * MiB);
        size_t t = pc_unsent_target(set, 4 * MiB, earned);
        assert_int_equal(t, 2 * set); /* each backlog doubles it, set at once */
        set = t;
        backlogs++;
    }
    assert_int_equal(backlogs, 6); /* 64 KiB to 4 MiB */
    /* earning stops at the largest budget */
    assert_int_equal(pc_unsent_earn(4 * MiB, 4 * MiB), 4 * MiB);
    assert_int_equal(pc_unsent_target(set, 4 * MiB, pc_unsent_earn(earned, 4 * MiB)), 0);
    /* never past the budget, however much was earned */
    assert_int_equal(pc_unsent_target(0, 256 * KiB, 4 * MiB), 256 * KiB);
}

static void test_a_moving_budget_within_twice_leaves_it(void **state)
{
    (void)state;
    /* earned 4 MiB, budget 256 KiB (1,000 connections) set */
    size_t set = 256 * KiB, earned = 4 * MiB;
    assert_int_equal(pc_unsent_target(set, 300 * KiB, earned), 0);
    assert_int_equal(pc_unsent_target(set, 200 * KiB, earned), 0);
    assert_int_equal(pc_unsent_target(set, 511 * KiB, earned), 0);
    assert_int_equal(pc_unsent_target(set, 512 * KiB, earned), 512 * KiB);
    assert_int_equal(pc_unsent_target(set, 128 * KiB, earned), 128 * KiB);
    /* a budget that grows past what was earned stops at the earned bound */
    assert_int_equal(pc_unsent_target(128 * KiB, 4 * MiB, 256 * KiB), 256 * KiB);
    /* within 2x of the budget, an earned bound that grew is not held back
     * forever: once the budget reaches it, it is set */
    assert_int_equal(pc_unsent_target(64 * KiB, 100 * KiB, 128 * KiB), 0);
    assert_int_equal(pc_unsent_target(64 * KiB, 128 * KiB, 128 * KiB), 128 * KiB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_small_whatever_the_budget),
        cmocka_unit_test(test_earned_by_backlogs_up_to_the_budget),
        cmocka_unit_test(test_a_moving_budget_within_twice_leaves_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
