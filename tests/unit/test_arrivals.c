/*
 * test_arrivals.c -- input arrivals on watched sockets (node/pc_arrivals.h),
 * on socketpairs: each arrival is reported once, whether or not it was
 * read; a look takes at most `max` reports and leaves the rest; a closed
 * socket is never reported; without an instance nothing is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_arrivals.h"

enum { PAIRS = 40 };

typedef struct seen {
    unsigned calls;
    void *last;
    void *wanted; /* want() says 1 for this one; NULL = for none */
} seen_t;

static int want(void *arg, void *ctx)
{
    seen_t *s = ctx;
    s->calls++;
    s->last = arg;
    return s->wanted != NULL && arg == s->wanted;
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void put(int fd) { assert_int_equal(write(fd, "x", 1), 1); }

static void test_each_arrival_once(void **state)
{
    (void)state;
    pc_arrivals_t a;
    assert_int_equal(pc_arrivals_init(&a), 0);
    int x[2], y[2];
    pair(x);
    pair(y);
    int tag_x, tag_y;
    assert_int_equal(pc_arrivals_add(&a, x[0], &tag_x), 0);
    assert_int_equal(pc_arrivals_add(&a, y[0], &tag_y), 0);
    seen_t s = {.wanted = &tag_x};
    assert_int_equal(pc_arrivals_any(&a, 16, want, &s), 0); /* nothing came */
    assert_int_equal(s.calls, 0);

    put(x[1]);
    assert_int_equal(pc_arrivals_any(&a, 16, want, &s), 1);
    assert_ptr_equal(s.last, &tag_x);
    /* Unread, but reported already: not again until more comes. */
    assert_int_equal(pc_arrivals_any(&a, 16, want, &s), 0);
    put(x[1]);
    assert_int_equal(pc_arrivals_any(&a, 16, want, &s), 1);

    /* Another socket's arrival is reported, and want() decides. */
    s = (seen_t){.wanted = &tag_x};
    put(y[1]);
    assert_int_equal(pc_arrivals_any(&a, 16, want, &s), 0);
    assert_int_equal(s.calls, 1);
    assert_ptr_equal(s.last, &tag_y);

    /* A socket closed with input reported but not taken: gone with it. */
    put(y[1]);
    close(y[0]);
    s = (seen_t){0};
    assert_int_equal(pc_arrivals_any(&a, 16, want, &s), 0);
    assert_int_equal(s.calls, 0);

    pc_arrivals_free(&a);
    pc_arrivals_free(&a); /* idempotent */
    for (int i = 0; i < 2; i++)
        close(x[i]);
    close(y[1]);
}

static void test_look_takes_at_most_max(void **state)
{
    (void)state;
    pc_arrivals_t a;
    assert_int_equal(pc_arrivals_init(&a), 0);
    int sv[PAIRS][2];
    for (int i = 0; i < PAIRS; i++) {
        pair(sv[i]);
        assert_int_equal(pc_arrivals_add(&a, sv[i][0], sv[i]), 0);
        put(sv[i][1]);
    }
    seen_t s = {0};
    assert_int_equal(pc_arrivals_any(&a, 10, want, &s), 0);
    assert_int_equal(s.calls, 10);
    s = (seen_t){0};
    assert_int_equal(pc_arrivals_any(&a, 100, want, &s), 0); /* the rest */
    assert_int_equal(s.calls, PAIRS - 10);
    s = (seen_t){0};
    assert_int_equal(pc_arrivals_any(&a, 100, want, &s), 0);
    assert_int_equal(s.calls, 0);
    pc_arrivals_free(&a);
    for (int i = 0; i < PAIRS; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
}

static void test_without_instance(void **state)
{
    (void)state;
    pc_arrivals_t a = {.ep = -1};
    int x[2];
    pair(x);
    assert_int_equal(pc_arrivals_add(&a, x[0], NULL), PC_EINVAL);
    put(x[1]);
    seen_t s = {0};
    assert_int_equal(pc_arrivals_any(&a, 16, want, &s), 0);
    assert_int_equal(s.calls, 0);
    pc_arrivals_free(&a);
    close(x[0]);
    close(x[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_arrival_once),
        cmocka_unit_test(test_look_takes_at_most_max),
        cmocka_unit_test(test_without_instance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
