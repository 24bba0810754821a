/*
 * test_auth.c -- pc_auth_delay, the back-off of failed HELLOs (pc_auth.h):
 * 100 ms doubling with each failure on the connection up to 1.6 s; 2 s
 * for everyone while the node sees more than 100 failures a second, and
 * for an address that makes more than 10 a second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pc_auth.h"

static void test_doubling(void **state)
{
    (void)state;
    static const uint64_t want[] = {100, 200, 400, 800, 1600, 1600};
    for (unsigned fails = 1; fails <= 6; fails++)
        assert_int_equal(pc_auth_delay(fails, 0, 0), want[fails - 1]);
    /* capped at 1.6 s however many */
    assert_int_equal(pc_auth_delay(7, 0, 0), 1600);
    assert_int_equal(pc_auth_delay(100, 0, 0), 1600);
    assert_int_equal(pc_auth_delay(UINT32_MAX, 0, 0), 1600);
    /* a failure or two elsewhere changes nothing */
    assert_int_equal(pc_auth_delay(1, 100, 10), 100);
    assert_int_equal(pc_auth_delay(3, 50, 5), 400);
    assert_int_equal(pc_auth_delay(6, 100, 10), 1600);
}

static void test_node_storm(void **state)
{
    (void)state;
    /* more than 100 a second on the node: 2 s for everyone; exactly 100 is not */
    for (unsigned fails = 1; fails <= 6; fails++) {
        assert_int_equal(pc_auth_delay(fails, 101, 0), 2000);
        assert_int_equal(pc_auth_delay(fails, 5000, 0), 2000);
        assert_int_equal(pc_auth_delay(fails, UINT32_MAX, 0), 2000);
        assert_true(pc_auth_delay(fails, 100, 0) < 2000);
    }
    assert_int_equal(pc_auth_delay(1, 100, 0), 100);
}

static void test_source_storm(void **state)
{
    (void)state;
    /* more than 10 a second from one address, however many connections it
     * spreads them over: 2 s; exactly 10 is not */
    for (unsigned fails = 1; fails <= 6; fails++) {
        assert_int_equal(pc_auth_delay(fails, 0, 11), 2000);
        assert_int_equal(pc_auth_delay(fails, 0, 1000), 2000);
        assert_true(pc_auth_delay(fails, 0, 10) < 2000);
    }
    assert_int_equal(pc_auth_delay(1, 0, 10), 100);
    assert_int_equal(pc_auth_delay(2, 11, 10), 200); /* 11 on the node is no storm */
    assert_int_equal(pc_auth_delay(1, 101, 11), 2000);
}

/* The node's count of failed HELLOs a second, over all loops. Each loop
 * passes its own cached time, and loops' clocks straddle a second's turn:
 * one behind must count into the newer second, never start the count
 * again (which let 267 of 300 guesses through a 4-loop node at once). */
static void test_node_window_forward_only(void **state)
{
    (void)state;
    pc_auth_shared_t a;
    pc_auth_shared_init(&a);
    assert_int_equal(pc_auth_window_fail(&a, 5000), 1);
    assert_int_equal(pc_auth_window_fail(&a, 5999), 2);
    assert_int_equal(pc_auth_window_fail(&a, 6000), 1); /* a new second */
    for (uint32_t i = 0; i < 200; i++) /* two loops, a second apart */
        assert_int_equal(pc_auth_window_fail(&a, i % 2 ? 5998 : 6001), 2 + i);
    assert_true(pc_auth_delay(1, 201, 0) == 2000);
    assert_int_equal(pc_auth_window_fail(&a, 7000), 1);
    pc_auth_shared_destroy(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubling),
        cmocka_unit_test(test_node_storm),
        cmocka_unit_test(test_source_storm),
        cmocka_unit_test(test_node_window_forward_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
