/*
 * test_light.c -- a connection's share of its loop's time
 * (node/pc_light.h): who stays light, who turns heavy, and how a client
 * that stops flooding is light again. Time is an argument: no sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pc_light.h"

#define US ((uint64_t)1000)
#define MS (1000 * US)

static void test_new_connection_has_nothing(void **state)
{
    (void)state;
    pc_light_t l;
    pc_light_init(&l, 1000 * MS);
    /* a turn right after accept: no time has passed, nothing earned */
    assert_int_equal(pc_light_spend(&l, 1000 * MS + 10 * US, 5 * US), 0);
}

/* A probe as bench_slowreaders runs it: one GET every 5 ms, each turn
 * (with its write to the socket) 20-50 us. Light from its first request
 * on, for ever. */
static void test_request_every_5ms_stays_light(void **state)
{
    (void)state;
    pc_light_t l;
    uint64_t t = 0;
    pc_light_init(&l, t);
    for (int i = 0; i < 10000; i++) {
        t += 5 * MS;
        uint64_t work = (i % 10 == 0 ? 50 : 20) * US;
        assert_int_equal(pc_light_spend(&l, t, work), 1);
    }
}

/* 1,000 requests a second of 20 us each (2% of the loop): light. */
static void test_thousand_a_second_stays_light(void **state)
{
    (void)state;
    pc_light_t l;
    uint64_t t = 0;
    pc_light_init(&l, t);
    t += 10 * MS; /* the first request comes a moment after the connect */
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(pc_light_spend(&l, t, 20 * US), 1);
        t += 1 * MS;
    }
}

/* A flood whose blocks each fit a turn: 40 us of work at every poll,
 * polls 300 us apart. It starts with a full bank (it had been idle), is
 * heavy once the bank is spent (2 ms of work less what it earned), and
 * stays heavy while it floods. */
static void test_flood_turns_heavy(void **state)
{
    (void)state;
    pc_light_t l;
    uint64_t t = 0;
    pc_light_init(&l, t);
    t += 100 * MS;
    int64_t net = (int64_t)(40 * US) - (int64_t)(300 * US / PC_LIGHT_RATE_DIV);
    int turns = 0;
    while (pc_light_spend(&l, t, 40 * US)) {
        turns++;
        t += 300 * US;
        assert_true(turns <= PC_LIGHT_BANK_NS / net + 1);
    }
    assert_true(turns >= PC_LIGHT_BANK_NS / net - 1);
    for (int i = 0; i < 1000; i++) {
        t += 300 * US;
        assert_int_equal(pc_light_spend(&l, t, 40 * US), 0);
    }
}

/* A flood that connects: heavy from its first turn, with nothing banked. */
static void test_new_flood_heavy_at_once(void **state)
{
    (void)state;
    pc_light_t l;
    uint64_t t = 0;
    pc_light_init(&l, t);
    for (int i = 0; i < 1000; i++) {
        t += 300 * US;
        assert_int_equal(pc_light_spend(&l, t, 40 * US), 0);
    }
}

/* A client that had been idle sends 50 requests one after the other (a
 * page built from 50 GETs, or a client catching up after a stall), 30 us
 * of work each, 100 us apart: light through the whole run. */
static void test_burst_stays_light(void **state)
{
    (void)state;
    pc_light_t l;
    uint64_t t = 0;
    pc_light_init(&l, t);
    t += 100 * MS;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(pc_light_spend(&l, t, 30 * US), 1);
        t += 100 * US;
    }
}

/* A turn counts at most PC_LIGHT_TURN_MAX_NS: one request whose turn the
 * kernel stretched to 5 ms does not make a client heavy. */
static void test_one_long_turn_is_no_flood(void **state)
{
    (void)state;
    pc_light_t l;
    uint64_t t = 0;
    pc_light_init(&l, t);
    t += 100 * MS;
    assert_int_equal(pc_light_spend(&l, t, 5 * MS), 1);
}

/* After a flood (the balance at its floor), light again once it has
 * been quiet for PC_LIGHT_DEBT_NS * PC_LIGHT_RATE_DIV: not before. */
static void test_light_again_after_quiet(void **state)
{
    (void)state;
    pc_light_t l;
    uint64_t t = 0;
    pc_light_init(&l, t);
    for (int i = 0; i < 100; i++) {
        t += 10 * US;
        (void)pc_light_spend(&l, t, 50 * US);
    }
    assert_int_equal(l.balance, -PC_LIGHT_DEBT_NS);
    uint64_t quiet = (uint64_t)PC_LIGHT_DEBT_NS * PC_LIGHT_RATE_DIV;
    pc_light_t early = l;
    assert_int_equal(pc_light_spend(&early, t + quiet / 2, 1 * US), 0);
    assert_int_equal(pc_light_spend(&l, t + quiet + 32 * US, 1 * US), 1);
}

/* 1,000 floods that connect at once wait in the heavy queue for their
 * turns, 0.4 s: that earns nothing (pc_light_wait), so a turn that runs
 * out of input finds nothing banked, and the flood is not light. Before,
 * it had banked 2 ms, 40 light turns. Nor does time it is not read
 * (paused), until it is read again (pc_light_idle); a connection that
 * is then idle, not waiting, earns again: the next burst is light. */
static void test_waiting_earns_nothing(void **state)
{
    (void)state;
    pc_light_t l;
    uint64_t t = 0;
    pc_light_init(&l, t);
    t += 1 * MS;
    pc_light_wait(&l, t); /* queued 1 ms after accept: 31 us earned */
    t += 400 * MS;
    assert_int_equal(pc_light_spend(&l, t, 50 * US), 0);
    for (int i = 0; i < 10; i++) { /* each turn queued again at once */
        pc_light_wait(&l, t + 1 * US);
        t += 300 * US;
        assert_int_equal(pc_light_spend(&l, t, 50 * US), 0);
    }
    pc_light_wait(&l, t + 1 * US); /* not read for 10 ms (paused) ... */
    int64_t paused = l.balance;
    pc_light_idle(&l, t + 10 * MS); /* ... then read again, and quiet */
    assert_int_equal(l.balance, paused);
    t += 100 * MS; /* quiet, not queued: earns the bank */
    for (int i = 0; i < 30; i++) {
        assert_int_equal(pc_light_spend(&l, t, 50 * US), 1);
        t += 100 * US;
    }
}

/* Idle for a year: earns the bank, no more (and no overflow). A clock
 * that went back earns nothing and does not move `at` back. */
static void test_bounds_and_clock(void **state)
{
    (void)state;
    pc_light_t l;
    pc_light_init(&l, 0);
    assert_int_equal(pc_light_spend(&l, UINT64_MAX - 1, 0), 1);
    assert_int_equal(l.balance, PC_LIGHT_BANK_NS);
    pc_light_init(&l, 10 * MS);
    assert_int_equal(pc_light_spend(&l, 5 * MS, 1 * US), 0);
    assert_true(l.at == 10 * MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_connection_has_nothing),
        cmocka_unit_test(test_request_every_5ms_stays_light),
        cmocka_unit_test(test_thousand_a_second_stays_light),
        cmocka_unit_test(test_flood_turns_heavy),
        cmocka_unit_test(test_new_flood_heavy_at_once),
        cmocka_unit_test(test_burst_stays_light),
        cmocka_unit_test(test_one_long_turn_is_no_flood),
        cmocka_unit_test(test_light_again_after_quiet),
        cmocka_unit_test(test_waiting_earns_nothing),
        cmocka_unit_test(test_bounds_and_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
