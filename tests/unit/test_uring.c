/*
 * test_uring.c -- pc_uring on socket pairs and a real libuv loop: a
 * multishot receive delivers every byte in order through recycled
 * buffers, sends go out with the batch, ends of stream, cancellations,
 * and a close that waits for what is in flight.
 *
 * io_uring is needed: where the kernel refuses it (too old,
 * io_uring_disabled, a seccomp profile) the test says why and exits 77,
 * which ctest reports as skipped, not passed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "pc_error.h"
#include "pc_uring.h"

/* What the hooks saw, for one `who`. */
typedef struct peer {
    uint8_t *got;
    size_t ngot, cap;
    int recv_ended, recv_res;
    int sends, sent_res;
    size_t sent_bytes;
    pc_uring_t *rearm_on; /* set: a receive the kernel ended is armed again on fd */
    int fd, rearms;
} peer_t __attribute__((aligned(8)));

static void h_recv(void *who, const uint8_t *data, size_t n)
{
    peer_t *p = who;
    if (p->ngot + n > p->cap) {
        p->cap = (p->ngot + n) * 2;
        p->got = realloc(p->got, p->cap);
        assert_non_null(p->got);
    }
    memcpy(p->got + p->ngot, data, n);
    p->ngot += n;
}

static void h_recv_end(void *who, int res)
{
    peer_t *p = who;
    if (res == PC_URING_AGAIN && p->rearm_on != NULL) {
        p->rearms++;
        assert_int_equal(pc_uring_recv(p->rearm_on, p->fd, p), 0);
        return;
    }
    p->recv_ended++;
    p->recv_res = res;
}

static void h_sent(void *who, int res)
{
    peer_t *p = who;
    p->sends++;
    p->sent_res = res;
    if (res > 0)
        p->sent_bytes += (size_t)res;
}

static const pc_uring_hooks_t hooks = {h_recv, h_recv_end, h_sent};

typedef struct fix {
    uv_loop_t loop;
    uv_timer_t guard; /* bounds each blocking turn of the loop */
    pc_uring_t *u;
    int sv[2];
    peer_t p;
} fix_t;

static int io_uring_refused(void)
{
    char why[200];
    if (pc_uring_probe(why, sizeof why) == 0)
        return 0;
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    int disabled = 0;
    if (f != NULL) {
        if (fscanf(f, "%d", &disabled) != 1)
            disabled = 0;
        fclose(f);
    }
    fprintf(stderr, "io_uring refused here: %s (io_uring_disabled=%d)\n", why, disabled);
    return 1;
}

static void guard_cb(uv_timer_t *t) { (void)t; }

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->guard);
    uv_timer_start(&f->guard, guard_cb, 10, 10);
    char why[200] = "";
    int rc = pc_uring_new(&f->loop, &hooks, &f->u, why, sizeof why);
    if (rc < 0)
        fprintf(stderr, "pc_uring_new: %s\n", why);
    assert_int_equal(rc, 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->sv), 0);
    *state = f;
    return 0;
}

static void closed_cb(void *arg) { (*(int *)arg)++; }

/* One turn as the node's loop runs it: submit before polling. */
static void turn(fix_t *f)
{
    pc_uring_submit(f->u);
    uv_run(&f->loop, UV_RUN_ONCE);
}

/* Turns until *flag >= want, for at most 5 s (the guard timer keeps each
 * turn short). */
static int turn_until(fix_t *f, const int *flag, int want)
{
    uint64_t end = uv_hrtime() + 5000ull * 1000 * 1000;
    while (*flag < want && uv_hrtime() < end)
        turn(f);
    return *flag >= want;
}

/* After the ring closed: the loop, the sockets, the fixture. */
static void fix_free(fix_t *f)
{
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    pc_uring_free(f->u);
    close(f->sv[0]);
    close(f->sv[1]);
    free(f->p.got);
    free(f);
}

static int teardown(void **state)
{
    fix_t *f = *state;
    int closed = 0;
    pc_uring_close(f->u, closed_cb, &closed);
    assert_true(turn_until(f, &closed, 1));
    fix_free(f);
    return 0;
}

static void test_probe(void **state)
{
    (void)state;
    char why[200] = "";
    assert_int_equal(pc_uring_probe(why, sizeof why), 0);
}

/* Bytes come in order, across many receives and recycled buffers.
 *
 * The kernel receives on the loop's thread whenever it makes a system
 * call, whether or not the loop has handled what came before: a sender
 * faster than the loop uses up the buffers, and the receive ends
 * (PC_URING_AGAIN) until the loop has handled the completions and given
 * them back. Here the sender is this thread: writing 64 KiB between
 * turns keeps up; writing 6 MiB at once (every write a system call) runs
 * out, and the receive armed again goes on where it stopped. */
static void receive_in_order(fix_t *f, size_t per_turn, int want_rearms)
{
    f->p.rearm_on = f->u;
    f->p.fd = f->sv[0];
    assert_int_equal(pc_uring_recv(f->u, f->sv[0], &f->p), 0);
    size_t total = 3 * PC_URING_BUF_BYTES + 12345; /* every buffer, several times */
    uint8_t chunk[7000];
    size_t sent = 0;
    uint64_t end = uv_hrtime() + 10000ull * 1000 * 1000;
    while (f->p.ngot < total && uv_hrtime() < end) {
        size_t limit = sent + per_turn;
        while (sent < total && sent < limit) {
            size_t n = total - sent < sizeof chunk ? total - sent : sizeof chunk;
            if (n > limit - sent)
                n = limit - sent;
            for (size_t i = 0; i < n; i++)
                chunk[i] = (uint8_t)((sent + i) * 131 >> 3);
            ssize_t w = write(f->sv[1], chunk, n);
            if (w <= 0)
                break; /* the socket is full: let the loop take some */
            sent += (size_t)w;
        }
        turn(f);
    }
    if (f->p.ngot != total)
        fprintf(stderr, "got %zu of %zu (sent %zu); receive ended %d times, last %d\n",
                f->p.ngot, total, sent, f->p.recv_ended, f->p.recv_res);
    assert_int_equal(f->p.ngot, total);
    for (size_t i = 0; i < total; i++)
        if (f->p.got[i] != (uint8_t)(i * 131 >> 3))
            fail_msg("byte %zu differs", i);
    assert_int_equal(f->p.recv_ended, 0);
    if (want_rearms)
        assert_true(f->p.rearms > 0);
    else
        assert_int_equal(f->p.rearms, 0);
    pc_uring_counters_t n;
    pc_uring_counters(f->u, &n);
    assert_int_equal(n.rearms, (uint64_t)f->p.rearms);
    pc_uring_cancel_recv(f->u, &f->p);
    assert_true(turn_until(f, &f->p.recv_ended, 1));
    assert_int_equal(f->p.recv_res, -ECANCELED);
}

static void test_receive_in_order(void **state) { receive_in_order(*state, 64 * 1024, 0); }

static void test_receive_past_the_buffers(void **state)
{
    receive_in_order(*state, PC_URING_BUF_BYTES + PC_URING_BUF_BYTES / 2, 1);
}

/* A send leaves with the next submit and says how much went. */
static void test_send(void **state)
{
    fix_t *f = *state;
    assert_int_equal(pc_uring_send(f->u, f->sv[0], &f->p, "hello", 5), 0);
    assert_true(turn_until(f, &f->p.sends, 1));
    assert_int_equal(f->p.sent_res, 5);
    char buf[16];
    assert_int_equal(read(f->sv[1], buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);
    pc_uring_counters_t n;
    pc_uring_counters(f->u, &n);
    assert_true(n.enters >= 1);
    assert_true(n.cqes >= 1);
}

/* The other side shuts its end: the receive ends with 0, after the data. */
static void test_end_of_stream(void **state)
{
    fix_t *f = *state;
    assert_int_equal(pc_uring_recv(f->u, f->sv[0], &f->p), 0);
    assert_int_equal(write(f->sv[1], "bye", 3), 3);
    assert_int_equal(shutdown(f->sv[1], SHUT_WR), 0);
    assert_true(turn_until(f, &f->p.recv_ended, 1));
    assert_int_equal(f->p.recv_res, 0);
    assert_int_equal(f->p.ngot, 3);
    assert_memory_equal(f->p.got, "bye", 3);
}

/* A send bigger than the socket takes ends short (what fitted); the rest,
 * which the peer never reads, stays in flight -- the kernel waits for
 * room -- until it is cancelled. */
static void test_short_send_then_cancel(void **state)
{
    fix_t *f = *state;
    size_t big = 16 * 1024 * 1024;
    uint8_t *data = calloc(1, big);
    assert_non_null(data);
    assert_int_equal(pc_uring_send(f->u, f->sv[0], &f->p, data, big), 0);
    assert_true(turn_until(f, &f->p.sends, 1));
    assert_true(f->p.sent_res > 0 && (size_t)f->p.sent_res < big);
    size_t first = (size_t)f->p.sent_res;
    assert_int_equal(pc_uring_send(f->u, f->sv[0], &f->p, data + first, big - first), 0);
    for (int i = 0; i < 5; i++)
        turn(f);
    assert_int_equal(f->p.sends, 1); /* nobody reads: it waits */
    pc_uring_cancel_send(f->u, &f->p);
    assert_true(turn_until(f, &f->p.sends, 2));
    assert_int_equal(f->p.sent_res, -ECANCELED);
    free(data);
}

/* Closing waits for the receive in flight: the handle closes only once it
 * has ended. */
static void test_close_waits(void **state)
{
    fix_t *f = *state;
    assert_int_equal(pc_uring_recv(f->u, f->sv[0], &f->p), 0);
    turn(f);
    int closed = 0;
    pc_uring_close(f->u, closed_cb, &closed);
    for (int i = 0; i < 3; i++)
        turn(f);
    assert_int_equal(closed, 0); /* the receive is still armed */
    pc_uring_cancel_recv(f->u, &f->p); /* submitted at once while closing */
    assert_true(turn_until(f, &closed, 1));
    assert_int_equal(f->p.recv_ended, 1);
    fix_free(f); /* closed already: teardown has nothing left to do */
    *state = NULL;
}

static int teardown_if(void **state) { return *state != NULL ? teardown(state) : 0; }

int main(void)
{
    if (io_uring_refused())
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe),
        cmocka_unit_test_setup_teardown(test_receive_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_past_the_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_of_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_send_then_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_waits, setup, teardown_if),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
