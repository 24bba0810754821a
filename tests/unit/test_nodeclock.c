/*
 * test_nodeclock.c -- a node's clock as the client knows it, and a write's
 * deadline on it (client/pc_nodeclock.h).
 *
 * The promise under test (PROTOCOL.md §5.5): a node that applies a write
 * only while its clock, read in whole milliseconds, is before the write's
 * deadline never applies it after the client gave up. The clocks are
 * simulated in microseconds -- the client's wall and monotonic clocks and
 * the node's wall clock, each with an offset of its own -- and every
 * reading is truncated to whole milliseconds, as the real ones are. Swept
 * over the sub-millisecond phases, offsets, round trips and moments of
 * the node's reading within the round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pc_nodeclock.h"

/* A clock that reads t + off microseconds at real time t, in whole ms. */
static int64_t ms(int64_t t_us, int64_t off_us) { return (t_us + off_us) / 1000; }

typedef struct world {
    int64_t wall_off, mono_off, node_off; /* us, each clock against real time */
} world_t;

/* One HELLO sent at real time s, the node reading its clock at r, the
 * answer back at b; then a write encoded at e for a call that began at
 * t0 with timeout_ms. Checks the deadline against the moment the client
 * gives up; returns how much earlier than that moment it is (us). */
static int64_t one(const world_t *w, int64_t s, int64_t r, int64_t b, int64_t t0, int64_t e,
                   int64_t timeout_ms)
{
    pc_nodeclock_t nc = {0};
    pc_nodeclock_measure(&nc, ms(s, w->wall_off), ms(b, w->wall_off),
                         (uint64_t)ms(r, w->node_off));
    assert_true(nc.known);
    /* the true offset (node minus client wall, us) is within the bound */
    int64_t true_off = w->node_off - w->wall_off;
    assert_true((nc.off_ms - nc.unc_ms) * 1000 < true_off);
    assert_true((nc.off_ms + nc.unc_ms) * 1000 > true_off);

    int64_t give_up = ms(t0, w->mono_off) + timeout_ms; /* the call's deadline, monotonic ms */
    uint64_t at = pc_nodeclock_deadline(&nc, ms(e, w->wall_off), ms(e, w->mono_off), give_up);
    /* The client gives up once its monotonic clock reads give_up: at real
     * time g. A node applies the write at real time p only if
     * ms(p, node_off) < at, that is p + node_off < at * 1000. */
    int64_t g = give_up * 1000 - w->mono_off;
    int64_t node_at_g = g + w->node_off;
    assert_true((int64_t)at * 1000 <= node_at_g);
    return node_at_g - (int64_t)at * 1000;
}

static void test_deadline_never_after_the_client_gave_up(void **state)
{
    (void)state;
    int64_t worst_early = 0, n = 0;
    const int64_t offs[] = {0, 1, 499, 500, 999, 1001, 123457, -98765, 5000000};
    for (size_t a = 0; a < sizeof offs / sizeof *offs; a++)
        for (size_t b = 0; b < sizeof offs / sizeof *offs; b++)
            for (int64_t ph = 0; ph < 1000; ph += 37) { /* sub-ms phase of the events */
                world_t w = {10000000 + offs[a], 20000000 + ph * 3, 30000000 + offs[b]};
                for (int64_t rtt = 0; rtt <= 2600; rtt += 650) /* us */
                    for (int k = 0; k <= 2; k++) { /* where in the round trip the node reads */
                        int64_t s = 1000000 + ph, r = s + rtt * k / 2, bk = s + rtt;
                        int64_t t0 = bk + 5000 + ph * 7 % 1000, e = t0 + 13 * ph % 900;
                        int64_t early = one(&w, s, r, bk, t0, e, 300) - rtt;
                        worst_early = early > worst_early ? early : worst_early;
                        n++;
                    }
            }
    /* never late; and early by at most the round trip and the readings'
     * truncation (under 6 ms more), not by anything a caller would notice */
    assert_true(n > 1000);
    assert_true(worst_early < 6000);
}

/* Cases that were late when the uncertainty counted one truncated
 * reading, not two, and the conversion none. */
static void test_the_cases_that_were_late(void **state)
{
    (void)state;
    /* One clock for all, a round trip inside a millisecond. Encoded at
     * 2,000,900 us: the wall clock reads 2000 ms, the monotonic one (0.4
     * ms ahead) 2001. The call began at 2,000,700 (monotonic 2001), so it
     * gives up when the monotonic clock reads 2301: at 2,300,600 us, on
     * the node's clock 2300.6 ms. The deadline was 2301 (0.4 ms late);
     * now 2299. */
    world_t same = {0, 400, 0};
    one(&same, 1000100, 1000200, 1000300, 2000700, 2000900, 300);
    /* Clocks apart by fractions of a millisecond, the node reading its
     * clock at the very end of a 1.3 ms round trip: 1.4 ms late before. */
    world_t apart = {10000000 - 98765, 20000000 + 296 * 3, 30000000 + 123457};
    int64_t s = 1000000 + 296, t0 = s + 1300 + 5000 + 296 * 7 % 1000;
    one(&apart, s, s + 1300, s + 1300, t0, t0 + 13 * 296 % 900, 300);
}

static void test_no_clock_no_deadline(void **state)
{
    (void)state;
    pc_nodeclock_t nc = {0};
    assert_int_equal(pc_nodeclock_deadline(&nc, 1000, 2000, 2300), 0);
    pc_nodeclock_measure(&nc, 1000, 1002, 0); /* the node sent no clock */
    assert_false(nc.known);
    pc_nodeclock_measure(&nc, 1002, 1000, 5000); /* our clock went back */
    assert_false(nc.known);
    pc_nodeclock_measure(&nc, 1000, 1004, 5002);
    assert_true(nc.known);
    assert_int_equal(nc.off_ms, 4000);
    assert_int_equal(nc.unc_ms, 4);
    /* a deadline that would fall before the epoch is still a deadline */
    nc.off_ms = -1000000;
    assert_int_equal(pc_nodeclock_deadline(&nc, 1000, 2000, 2300), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_never_after_the_client_gave_up),
        cmocka_unit_test(test_the_cases_that_were_late),
        cmocka_unit_test(test_no_clock_no_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
