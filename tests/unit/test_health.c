/*
 * test_health.c -- pc_health, a node's health as a client sees it: the
 * hedge delay follows the measured round trips within its bounds, the
 * stall limit stays above the hedge and below half the timeout, the
 * breaker opens on a failure, asks for a probe when its back-off has
 * passed, backs off longer after each failure in a row, and any answer
 * closes it. Time is a parameter: no sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pc_health.h"

#define TIMEOUT 2000

static void test_new_node_is_closed_with_default_hedge(void **state)
{
    (void)state;
    pc_health_t h;
    pc_health_init(&h);
    assert_int_equal(pc_health_state(&h, 0), PC_HEALTH_CLOSED);
    assert_int_equal(pc_health_hedge_ms(&h, TIMEOUT), PC_HEALTH_HEDGE_DEFAULT_MS);
    assert_int_equal(pc_health_stall_ms(&h, TIMEOUT), PC_HEALTH_STALL_MIN_MS);
}

static void test_hedge_follows_round_trips(void **state)
{
    (void)state;
    pc_health_t h;
    pc_health_init(&h);
    /* fast and steady: the floor */
    for (int i = 0; i < 50; i++)
        pc_health_ok(&h, 200);
    assert_int_equal(pc_health_hedge_ms(&h, TIMEOUT), PC_HEALTH_HEDGE_MIN_MS);
    /* steady at 20 ms: the hedge converges just above it */
    for (int i = 0; i < 200; i++)
        pc_health_ok(&h, 20000);
    int64_t hedge = pc_health_hedge_ms(&h, TIMEOUT);
    assert_true(hedge >= 20 && hedge <= 22);
    /* jittery: the deviation raises it well above the mean */
    for (int i = 0; i < 200; i++)
        pc_health_ok(&h, i % 2 ? 10000 : 50000);
    hedge = pc_health_hedge_ms(&h, TIMEOUT);
    assert_true(hedge > 80 && hedge <= TIMEOUT / 4);
    /* never past a quarter of the timeout */
    for (int i = 0; i < 50; i++)
        pc_health_ok(&h, 5000000);
    assert_int_equal(pc_health_hedge_ms(&h, TIMEOUT), TIMEOUT / 4);
    assert_int_equal(pc_health_stall_ms(&h, TIMEOUT), TIMEOUT / 2);
}

static void test_an_answer_without_round_trip_only_closes(void **state)
{
    (void)state;
    pc_health_t h;
    pc_health_init(&h);
    pc_health_ok(&h, 30000);
    int64_t before = pc_health_hedge_ms(&h, TIMEOUT);
    assert_int_equal(pc_health_fail(&h, 1000), 1);
    pc_health_ok(&h, -1);
    assert_int_equal(pc_health_state(&h, 1000), PC_HEALTH_CLOSED);
    assert_int_equal(pc_health_hedge_ms(&h, TIMEOUT), before);
}

static void test_small_timeouts_bound_everything(void **state)
{
    (void)state;
    pc_health_t h;
    pc_health_init(&h);
    assert_int_equal(pc_health_hedge_ms(&h, 20), 5);
    assert_int_equal(pc_health_stall_ms(&h, 20), 10);
    assert_true(pc_health_stall_ms(&h, 100) <= 50);
}

static void test_breaker_backs_off_and_probes(void **state)
{
    (void)state;
    pc_health_t h;
    pc_health_init(&h);
    int64_t now = 10000;

    assert_int_equal(pc_health_fail(&h, now), 1);
    assert_int_equal(pc_health_state(&h, now), PC_HEALTH_OPEN);
    assert_int_equal(pc_health_state(&h, now + PC_HEALTH_BACKOFF_MIN_MS - 1), PC_HEALTH_OPEN);
    assert_int_equal(pc_health_state(&h, now + PC_HEALTH_BACKOFF_MIN_MS), PC_HEALTH_PROBE);

    /* a probe sent: open again for the same back-off */
    now += PC_HEALTH_BACKOFF_MIN_MS;
    pc_health_probed(&h, now);
    assert_int_equal(pc_health_state(&h, now + PC_HEALTH_BACKOFF_MIN_MS - 1), PC_HEALTH_OPEN);

    /* failures in a row double it, up to the cap; a repeat is not "newly open" */
    int64_t expect = PC_HEALTH_BACKOFF_MIN_MS;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pc_health_fail(&h, now), 0);
        expect = expect * 2 > PC_HEALTH_BACKOFF_MAX_MS ? PC_HEALTH_BACKOFF_MAX_MS : expect * 2;
        assert_int_equal(pc_health_state(&h, now + expect - 1), PC_HEALTH_OPEN);
        assert_int_equal(pc_health_state(&h, now + expect), PC_HEALTH_PROBE);
    }
    assert_int_equal(expect, PC_HEALTH_BACKOFF_MAX_MS);

    /* an answer closes it, and the next failure starts from the floor */
    pc_health_ok(&h, 1000);
    assert_int_equal(pc_health_state(&h, now), PC_HEALTH_CLOSED);
    assert_int_equal(pc_health_fail(&h, now), 1);
    assert_int_equal(pc_health_state(&h, now + PC_HEALTH_BACKOFF_MIN_MS), PC_HEALTH_PROBE);
}

static void test_probed_on_a_closed_breaker_changes_nothing(void **state)
{
    (void)state;
    pc_health_t h;
    pc_health_init(&h);
    pc_health_probed(&h, 500);
    assert_int_equal(pc_health_state(&h, 500), PC_HEALTH_CLOSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_node_is_closed_with_default_hedge),
        cmocka_unit_test(test_hedge_follows_round_trips),
        cmocka_unit_test(test_an_answer_without_round_trip_only_closes),
        cmocka_unit_test(test_small_timeouts_bound_everything),
        cmocka_unit_test(test_breaker_backs_off_and_probes),
        cmocka_unit_test(test_probed_on_a_closed_breaker_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
