/*
 * test_vclock.c -- pc_vclock: versions never go backwards when the wall
 * clock does, strictly increase on an equal wall, follow the wall when it
 * jumps ahead; observing a peer's version raises the clock past it unless
 * it is more than PC_VCLOCK_AHEAD_MAX ahead of the wall; and threads
 * drawing versions at once never get the same one. The wall clock is a
 * parameter: no sleeps.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "pc_vclock.h"

#define MS(x) ((uint64_t)(x) << 16)
/* a wall clock in 2024, as pc_vclock_wall() gives it */
#define WALL MS(1700000000000ull)

static uint64_t last_of(pc_vclock_t *vc)
{
    return atomic_load(&vc->last);
}

static void test_wall(void **state)
{
    (void)state;
    uint64_t w = pc_vclock_wall();
    time_t now = time(NULL);
    assert_int_equal(w & 0xFFFF, 0); /* milliseconds << 16: the counter bits clear */
    uint64_t s = (w >> 16) / 1000;
    assert_true(s + 2 >= (uint64_t)now && s <= (uint64_t)now + 2);
}

static void test_next(void **state)
{
    (void)state;
    pc_vclock_t vc = {0};
    /* follows the wall from the start */
    assert_int_equal(pc_vclock_next(&vc, WALL), WALL);
    /* an equal wall: strictly increasing */
    assert_int_equal(pc_vclock_next(&vc, WALL), WALL + 1);
    assert_int_equal(pc_vclock_next(&vc, WALL), WALL + 2);
    /* the wall goes back (NTP steps it): never below what was given */
    uint64_t v = pc_vclock_next(&vc, WALL - MS(5000));
    assert_int_equal(v, WALL + 3);
    assert_int_equal(pc_vclock_next(&vc, 0), WALL + 4);
    /* the wall a millisecond on: follows it again */
    assert_int_equal(pc_vclock_next(&vc, WALL + MS(1)), WALL + MS(1));
    /* a jump ahead: follows it */
    assert_int_equal(pc_vclock_next(&vc, WALL + MS(3600000)), WALL + MS(3600000));
    /* and back to the old wall: still above everything given */
    assert_int_equal(pc_vclock_next(&vc, WALL), WALL + MS(3600000) + 1);

    /* a long run on a stuck wall: strictly increasing throughout, the
     * counter carrying into the millisecond bits */
    pc_vclock_t vs = {0};
    uint64_t prev = pc_vclock_next(&vs, WALL);
    for (int i = 0; i < 70000; i++) {
        uint64_t n = pc_vclock_next(&vs, WALL);
        assert_true(n == prev + 1);
        prev = n;
    }
    assert_true(prev > WALL + MS(1));
}

static void test_observe(void **state)
{
    (void)state;
    pc_vclock_t vc = {0};
    assert_int_equal(pc_vclock_next(&vc, WALL), WALL);

    /* a peer's version ahead of ours (within the bound): the next is above it */
    uint64_t peer = WALL + MS(250) + 7;
    assert_int_equal(pc_vclock_observe(&vc, peer, WALL), 1);
    uint64_t v = pc_vclock_next(&vc, WALL);
    assert_true(v > peer);
    assert_int_equal(v, peer + 1);

    /* one behind ours changes nothing (the clock never goes back) */
    uint64_t before = last_of(&vc);
    assert_int_equal(pc_vclock_observe(&vc, WALL - MS(10), WALL), 1);
    assert_int_equal(last_of(&vc), before);
    assert_int_equal(pc_vclock_next(&vc, WALL), before + 1);

    /* one equal to the last given: the next is still above it */
    before = last_of(&vc);
    assert_int_equal(pc_vclock_observe(&vc, before, WALL), 1);
    assert_int_equal(pc_vclock_next(&vc, WALL), before + 1);
}

static void test_observe_bound(void **state)
{
    (void)state;
    pc_vclock_t vc = {0};
    assert_int_equal(pc_vclock_next(&vc, WALL), WALL);
    uint64_t before = last_of(&vc);

    /* more than PC_VCLOCK_AHEAD_MAX ahead of the wall given: refused,
     * the clock unchanged */
    assert_int_equal(pc_vclock_observe(&vc, WALL + PC_VCLOCK_AHEAD_MAX + 1, WALL), 0);
    assert_int_equal(last_of(&vc), before);
    assert_int_equal(pc_vclock_observe(&vc, WALL + MS(3600000), WALL), 0);
    assert_int_equal(last_of(&vc), before);
    /* 2^64 - 1 would wrap the next version to 0 */
    assert_int_equal(pc_vclock_observe(&vc, UINT64_MAX, WALL), 0);
    assert_int_equal(last_of(&vc), before);
    assert_int_equal(pc_vclock_observe(&vc, UINT64_MAX, pc_vclock_wall()), 0);
    assert_int_equal(pc_vclock_observe(&vc, UINT64_MAX, 0), 0);
    assert_int_equal(last_of(&vc), before);
    assert_int_equal(pc_vclock_next(&vc, WALL), before + 1);

    /* the bound is a minute, measured from the wall given, not from the
     * clock's last version */
    assert_int_equal(PC_VCLOCK_AHEAD_MAX, MS(60000));
    assert_int_equal(pc_vclock_observe(&vc, WALL + MS(60000) + MS(30000), WALL + MS(30000)), 1);
    assert_int_equal(pc_vclock_next(&vc, WALL), WALL + MS(90000) + 1);

    /* exactly at the bound: accepted, and the next version is above it */
    pc_vclock_t vb = {0};
    assert_int_equal(pc_vclock_observe(&vb, WALL + PC_VCLOCK_AHEAD_MAX, WALL), 1);
    assert_int_equal(last_of(&vb), WALL + PC_VCLOCK_AHEAD_MAX);
    assert_true(pc_vclock_next(&vb, WALL) > WALL + PC_VCLOCK_AHEAD_MAX);
}

/* ---- threads ------------------------------------------------------------------ */

#define NTHREADS 4
#define PER_THREAD 100000

typedef struct {
    pc_vclock_t *vc;
    pthread_barrier_t *go;
    uint64_t *out;
} drawer_t;

static void *draw(void *arg)
{
    drawer_t *d = arg;
    pthread_barrier_wait(d->go);
    for (int i = 0; i < PER_THREAD; i++)
        d->out[i] = pc_vclock_next(d->vc, WALL);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_threads(void **state)
{
    (void)state;
    pc_vclock_t vc = {0};
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, NTHREADS), 0);
    uint64_t *all = calloc((size_t)NTHREADS * PER_THREAD, sizeof *all);
    assert_non_null(all);
    drawer_t d[NTHREADS];
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        d[i] = (drawer_t){.vc = &vc, .go = &go, .out = all + (size_t)i * PER_THREAD};
        assert_int_equal(pthread_create(&t[i], NULL, draw, &d[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&go);

    /* each thread's versions strictly increase */
    for (int i = 0; i < NTHREADS; i++)
        for (int j = 1; j < PER_THREAD; j++)
            assert_true(d[i].out[j] > d[i].out[j - 1]);
    /* all distinct: with one wall value they are exactly WALL .. WALL+N-1 */
    size_t n = (size_t)NTHREADS * PER_THREAD;
    qsort(all, n, sizeof *all, cmp_u64);
    for (size_t i = 0; i < n; i++) {
        if (all[i] != WALL + i)
            fail_msg("version %zu of %zu: %llu, expected %llu (a duplicate or a gap)", i, n,
                     (unsigned long long)all[i], (unsigned long long)(WALL + i));
    }
    assert_int_equal(last_of(&vc), WALL + n - 1);
    free(all);
}

/* A monotonic deadline given on the wall clock: now plus what is left. */
static void test_wall_at(void **state)
{
    (void)state;
    int64_t before = pc_vclock_wall_us();
    int64_t at = pc_vclock_wall_at_us(1000000 + 5000, 1000000);
    int64_t after = pc_vclock_wall_us();
    assert_true(at >= before + 5000 && at <= after + 5000);
    at = pc_vclock_wall_at_us(1000000, 1000000 + 2000); /* already past */
    assert_true(at <= pc_vclock_wall_us() - 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wall_at),
        cmocka_unit_test(test_wall),          cmocka_unit_test(test_next),
        cmocka_unit_test(test_observe),       cmocka_unit_test(test_observe_bound),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
