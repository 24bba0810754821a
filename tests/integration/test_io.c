/*
 * test_io.c -- `--io uring` (node/pc_uring.c) against a real peercached:
 * what is particular to the transport. (The whole integration suite also
 * runs with PEERCACHE_IO=uring in deploy/test.sh: that is where "the same
 * tests pass with both transports" is checked.)
 *
 *  - it is used when asked (log line, STATS io_uring_loops), and epoll
 *    when that is asked, whatever PEERCACHE_IO says;
 *  - a deep pipeline in one write, and values far larger than one of the
 *    ring's 4 KiB receive buffers (in many receives) and than the socket
 *    takes at once (short sends), come back whole and in order;
 *  - a client that half-closes still gets every answer, then EOF;
 *  - a client that never reads is paused, then closed by the output
 *    timeout (its send is cancelled), while others are served; the stop
 *    that follows exits 0 (pc_h_stop checks, and the sanitizers in CI);
 *  - with epoll, large values written from the stored item (not copied)
 *    arrive whole and as they were when answered, though overwritten and
 *    deleted before the client read them;
 *  - writes through to Redis are not held back: the Redis command a
 *    completion handled before the loop polls made is written in that
 *    iteration's turn, not at the next timer;
 *  - a kernel that refuses io_uring (faked by preloading pc_nouring) gets
 *    a line in the log and epoll.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_h_assert.h"
#include "pc_harness.h"
#include "pc_proto.h"

static void node_up(pc_h_proc_t *node, const char *io, const char *first, ...)
{
    const char *args[24] = {"--insecure", "--redis", "none", "--threads", "2", "--io", io};
    size_t n = 7;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 23; a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    assert_int_equal(pc_h_node_start(node, args), 0);
}

static pc_client_t *client_for(const pc_h_proc_t *node)
{
    pc_client_options_t o = {.nodes = node->addr, .timeout_ms = 5000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    return c;
}


/* ---- a pipeline in one write ---------------------------------------------- */

#define PIPE_N 3000

typedef struct expect {
    int bad;
    char why[160];
} expect_t;

/* Answers to SET k0..k(N-1) then GET k0..k(N-1): ids 1..2N in order, the
 * GETs with the value each SET stored. */
static int check_pipelined(void *arg, int index, const pc_response_t *r)
{
    expect_t *e = arg;
    uint64_t want_id = (uint64_t)index + 1;
    if (r->id != want_id || r->status != PC_ST_OK) {
        snprintf(e->why, sizeof e->why, "answer %d: id %llu status %u", index,
                 (unsigned long long)r->id, r->status);
        e->bad = 1;
        return 1;
    }
    if (index >= PIPE_N) {
        char want[32];
        int len = snprintf(want, sizeof want, "value-%d", index - PIPE_N);
        if (r->entry.value.len != (uint32_t)len || memcmp(r->entry.value.ptr, want, len) != 0) {
            snprintf(e->why, sizeof e->why, "GET %d: wrong value", index - PIPE_N);
            e->bad = 1;
            return 1;
        }
    }
    return 0;
}

static void pipeline_in_one_write(const pc_h_proc_t *node, int half_close)
{
    int fd = pc_h_connect(node->port, 10000);
    assert_true(fd >= 0);
    pc_buf_t b;
    pc_buf_init(&b, 0);
    char keys[PIPE_N][24], vals[PIPE_N][24];
    for (int i = 0; i < PIPE_N; i++) {
        int kl = snprintf(keys[i], sizeof keys[i], "io:%d:%d", half_close, i);
        int vl = snprintf(vals[i], sizeof vals[i], "value-%d", i);
        pc_request_t rq = {.op = PC_OP_SET, .id = (uint64_t)i + 1,
                           .key = {(const uint8_t *)keys[i], (uint32_t)kl},
                           .value = {(const uint8_t *)vals[i], (uint32_t)vl}};
        assert_int_equal(pc_proto_encode_request(&b, &rq), 0);
    }
    for (int i = 0; i < PIPE_N; i++) {
        pc_request_t rq = {.op = PC_OP_GET, .id = (uint64_t)(PIPE_N + i) + 1,
                           .key = {(const uint8_t *)keys[i], (uint32_t)strlen(keys[i])}};
        assert_int_equal(pc_proto_encode_request(&b, &rq), 0);
    }
    assert_int_equal(pc_h_send_all(fd, &b), 0);
    if (half_close)
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
    expect_t e = {0};
    int got = pc_h_read_responses(fd, 2 * PIPE_N, check_pipelined, &e);
    if (e.bad)
        fail_msg("%s", e.why);
    assert_int_equal(got, 2 * PIPE_N);
    if (half_close) /* then it closes: everything asked was answered */
        assert_int_equal(pc_h_wait_closed(fd, NULL, 0, NULL), 1);
    pc_buf_free(&b);
    close(fd);
}

/* ---- values larger than a buffer and than the socket -------------------- */

static void large_values(pc_client_t *cl)
{
    size_t sizes[] = {4095, 4096, 4097, 65536 + 17, 900 * 1024};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        uint8_t *v = malloc(n);
        assert_non_null(v);
        for (size_t i = 0; i < n; i++)
            v[i] = (uint8_t)(i * 7 + k);
        char key[32];
        snprintf(key, sizeof key, "io:large:%zu", n);
        assert_int_equal(pc_client_set(cl, key, strlen(key), v, n, NULL, NULL), 0);
        pc_value_t got;
        assert_int_equal(pc_client_get(cl, key, strlen(key), &got), 0);
        assert_int_equal(got.len, n);
        assert_memory_equal(got.data, v, n);
        pc_value_free(&got);
        free(v);
    }
}

/* ---- tests -------------------------------------------------------------------- */

static void test_uring_serves(void **state)
{
    (void)state;
    pc_h_proc_t node;
    node_up(&node, "uring", NULL);
    if (!pc_h_log_has(node.log, "--io uring: client sockets use io_uring"))
        fail_msg("no start-up line for io_uring in %s", node.log);
    pc_client_t *cl = client_for(&node);
    assert_int_equal(pc_h_stat(cl, "io_uring_loops"), 2);

    pipeline_in_one_write(&node, 0);
    pipeline_in_one_write(&node, 1);
    large_values(cl);

    /* it went through the rings: one submission carries many operations */
    int64_t enters = pc_h_stat(cl, "io_uring_enters");
    int64_t cqes = pc_h_stat(cl, "io_uring_completions");
    int64_t reqs = pc_h_stat(cl, "requests");
    fprintf(stderr, "uring: %lld requests, %lld io_uring_enter calls, %lld completions\n",
            (long long)reqs, (long long)enters, (long long)cqes);
    assert_true(enters > 0);
    assert_true(cqes > enters);
    assert_true(enters < reqs / 4);
    pc_client_free(&cl);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

static void test_epoll_when_asked(void **state)
{
    (void)state;
    pc_h_proc_t node;
    node_up(&node, "epoll", NULL); /* whatever PEERCACHE_IO says */
    pc_client_t *cl = client_for(&node);
    assert_int_equal(pc_h_stat(cl, "io_uring_loops"), 0);
    pipeline_in_one_write(&node, 1);
    large_values(cl);
    assert_int_equal(pc_h_stat(cl, "io_uring_enters"), 0);
    pc_client_free(&cl);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

/* A client that pipelines GETs of a 256 KiB value and never reads: the
 * socket fills, its send waits in the ring, reading pauses at its output
 * budget, and the output timeout closes it (cancelling the send). A
 * well-behaved client is served all along. */
static void test_reader_that_stops(void **state)
{
    (void)state;
    pc_h_proc_t node;
    node_up(&node, "uring", "--output-timeout", "500ms", NULL);
    pc_client_t *cl = client_for(&node);
    size_t n = 256 * 1024;
    uint8_t *v = calloc(1, n);
    assert_non_null(v);
    assert_int_equal(pc_client_set(cl, "io:big", 6, v, n, NULL, NULL), 0);
    free(v);

    int fd = pc_h_connect(node.port, 10000);
    assert_true(fd >= 0);
    int small = 4096;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    pc_buf_t b;
    pc_buf_init(&b, 0);
    for (int i = 0; i < 200; i++) {
        pc_request_t rq = {.op = PC_OP_GET, .id = (uint64_t)i + 1,
                           .key = {(const uint8_t *)"io:big", 6}};
        assert_int_equal(pc_proto_encode_request(&b, &rq), 0);
    }
    assert_int_equal(pc_h_send_all(fd, &b), 0);
    pc_buf_free(&b);

    pc_h_stat_arg_t timed_out = {cl, "output_timeouts", 1};
    uint64_t t0 = pc_h_now_ms();
    while (!pc_h_stat_at_least(&timed_out) && pc_h_now_ms() - t0 < 20000)
        assert_int_equal(pc_client_ping(cl), 0); /* served meanwhile */
    assert_true(pc_h_stat_at_least(&timed_out));
    /* and gone: its send cancelled, its handle closed once the ring was
     * done with it (only the pinging client is left), and reset: what the
     * kernel held for it is dropped, not delivered as it reads on */
    pc_h_stat_arg_t alone = {cl, "connections", 1};
    assert_true(pc_h_poll(pc_h_stat_is, &alone, 10000));
    assert_true(pc_h_poll(pc_h_socket_reset, &fd, 10000));
    close(fd);
    assert_int_equal(pc_client_ping(cl), 0);
    pc_client_free(&cl);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

/* ---- large values written from the store -------------------------------- */

typedef struct ref_expect {
    size_t big, mid;
    int a_new, b_gone; /* seen 'z' under ref:a; seen ref:b gone */
    int olds;          /* answers with ref:a's first value */
    int bad;
    char why[160];
} ref_expect_t;

static int ref_uniform(const pc_response_t *r, char *fill)
{
    const uint8_t *p = r->entry.value.ptr;
    for (uint32_t i = 1; i < r->entry.value.len; i++)
        if (p[i] != p[0])
            return 0;
    *fill = r->entry.value.len > 0 ? (char)p[0] : 0;
    return 1;
}

/* Answer `index` to GET ref:a, ref:a, ref:c, ref:b, ... (keys_of): the
 * value whole and one of those the key ever had, and never an older one
 * after a newer. */
static int check_ref_answer(void *arg, int index, const pc_response_t *r)
{
    ref_expect_t *e = arg;
    int k = index % 4; /* 0, 1: ref:a; 2: ref:c; 3: ref:b */
    char fill = 0;
    const char *bad = NULL;
    if (r->id != (uint64_t)index + 1)
        bad = "out of order";
    else if (k == 3 && r->status == PC_ST_NOT_FOUND)
        e->b_gone = 1;
    else if (r->status != PC_ST_OK || !ref_uniform(r, &fill))
        bad = "not OK, or not one value's bytes";
    else if (k < 2 && (r->entry.value.len != e->big || (fill != 'a' && fill != 'z') ||
                       (fill == 'a' && e->a_new)))
        bad = "ref:a: not its first value or its second, or the first after the second";
    else if (k == 2 && (r->entry.value.len != 5 || fill != 'c'))
        bad = "ref:c: not its value";
    else if (k == 3 && (r->entry.value.len != e->mid || fill != 'b' || e->b_gone))
        bad = "ref:b: not its value, or after it was gone";
    if (bad != NULL) {
        snprintf(e->why, sizeof e->why, "answer %d (id %llu, status %u, %u bytes of '%c'): %s",
                 index, (unsigned long long)r->id, r->status, r->entry.value.len,
                 fill ? fill : '?', bad);
        e->bad = 1;
        return 1;
    }
    if (k < 2) {
        e->a_new |= fill == 'z';
        e->olds += fill == 'a';
    }
    return 0;
}

static void set_fill(pc_client_t *cl, const char *key, size_t n, char fill)
{
    char *v = malloc(n);
    assert_non_null(v);
    memset(v, fill, n);
    assert_int_equal(pc_client_set(cl, key, strlen(key), v, n, NULL, NULL), 0);
    free(v);
}

/*
 * With epoll, a GET answer's large value is written from the stored item
 * itself (pc_conn_answer_ref), held until the write is done. A client
 * pipelines GETs of a 300 KiB, a 5-byte and a 64 KiB value, more than
 * the node's output budget and the kernel's send buffer take, and does
 * not read until the node holds answers in its own buffers; meanwhile
 * the large values are overwritten and deleted, and other values stored
 * (to take whatever memory a released item had). Every answer must still
 * carry one value the key had, byte for byte, in order, never an older
 * one after a newer (a value let go before its write was done is read
 * after it was freed: other bytes here, a report under the sanitizers),
 * and what the node held is given back once the client has read.
 */
static void test_values_written_from_the_store(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *args[] = {"--insecure", "--redis", "none", "--threads", "1", "--io", "epoll", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    pc_client_t *cl = client_for(&node);
    size_t big = 300 * 1024, mid = 64 * 1024;
    set_fill(cl, "ref:a", big, 'a');
    set_fill(cl, "ref:b", mid, 'b');
    set_fill(cl, "ref:c", 5, 'c');

    /* (Its receive buffer is left as it is: one shrunk after the
     * connection is up, then read, advertises windows so small that
     * loopback's sender waits on its persist timer.) */
    int fd = pc_h_connect(node.port, 10000);
    assert_true(fd >= 0);
    enum { N = 120 }; /* 60 x 300 KiB: 18 MiB */
    static const char *const keys_of[4] = {"ref:a", "ref:a", "ref:c", "ref:b"};
    pc_buf_t b;
    pc_buf_init(&b, 0);
    for (int i = 0; i < N; i++) {
        const char *k = keys_of[i % 4];
        pc_request_t rq = {.op = PC_OP_GET, .id = (uint64_t)i + 1,
                           .key = {(const uint8_t *)k, (uint32_t)strlen(k)}};
        assert_int_equal(pc_proto_encode_request(&b, &rq), 0);
    }
    assert_int_equal(pc_h_send_all(fd, &b), 0);
    pc_buf_free(&b);

    /* Answers wait in the node: the kernel's queue is full. */
    pc_h_stat_arg_t held = {cl, "buffer_memory", (int64_t)(2 * big)};
    assert_true(pc_h_poll(pc_h_stat_at_least, &held, 10000));
    set_fill(cl, "ref:a", big, 'z');
    assert_int_equal(pc_client_del(cl, "ref:b", 5), 0);
    for (int i = 0; i < 8; i++) {
        char k[16];
        snprintf(k, sizeof k, "ref:x%d", i);
        set_fill(cl, k, i % 2 ? mid : big, 'x');
    }

    ref_expect_t e = {.big = big, .mid = mid};
    int got = pc_h_read_responses(fd, N, check_ref_answer, &e);
    if (e.bad)
        fail_msg("%s", e.why);
    assert_int_equal(got, N);
    assert_true(e.olds >= 2); /* some were answered before it changed */
    fprintf(stderr, "values from the store: %d of %d answers to ref:a had its first value\n",
            e.olds, N / 2);
    /* Written: the values are let go (only small buffers are left). */
    uint64_t t0 = pc_h_now_ms();
    while (pc_h_stat(cl, "buffer_memory") >= (int64_t)mid && pc_h_now_ms() - t0 < 10000)
        assert_int_equal(pc_client_ping(cl), 0);
    assert_true(pc_h_stat(cl, "buffer_memory") < (int64_t)mid);
    close(fd);
    pc_client_free(&cl);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Write-through SETs one after another. A completion handled in the
 * submitting call (before the loop polls) once queued its Redis command
 * where it waited for the next timer: every write took 45-50 ms instead
 * of about 0.1. The p90 must stay far below that (the bound is 20x
 * what a loaded sanitizer build takes, so only the stall trips it; the
 * p90, since the stall needs the request to arrive at that moment).
 */
static void test_write_through_not_held(void **state)
{
    (void)state;
    pc_h_proc_t redis, node;
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    char raddr[64];
    snprintf(raddr, sizeof raddr, "127.0.0.1:%d", redis.port);
    const char *args[] = {"--insecure", "--redis", raddr, "--io", "uring", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    pc_client_t *cl = client_for(&node);
    assert_true(pc_h_poll(pc_h_backend_up, cl, 15000));
    /* A GET hit between the writes: its answer leaves in the submitting
     * call, and the client's next request, a SET, comes back while the
     * loop is still there -- the case that stalled. */
    assert_int_equal(pc_client_set(cl, "io:wt:hot", 9, "v", 1, NULL, NULL), 0);
    enum { N = 301 };
    uint64_t took[N];
    for (int i = 0; i < N; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "io:wt:%d", i);
        pc_value_t v;
        assert_int_equal(pc_client_get(cl, "io:wt:hot", 9, &v), 0);
        pc_value_free(&v);
        uint64_t t0 = pc_h_now_ms();
        assert_int_equal(pc_client_set(cl, k, (size_t)kl, "v", 1, NULL, NULL), 0);
        took[i] = pc_h_now_ms() - t0;
    }
    qsort(took, N, sizeof took[0], cmp_u64);
    fprintf(stderr, "write-through SET on io_uring: median %llu ms, p90 %llu ms, max %llu ms\n",
            (unsigned long long)took[N / 2], (unsigned long long)took[N * 9 / 10],
            (unsigned long long)took[N - 1]);
    assert_true(took[N * 9 / 10] < 20);
    pc_client_free(&cl);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
    pc_h_stop(&redis, SIGKILL, 5000);
}

/* A kernel that refuses io_uring (pc_nouring, preloaded, refuses the ring
 * as a seccomp profile does): the node says so and runs on epoll. */
static void test_refused_falls_back(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    skip(); /* the shim cannot be preloaded before the sanitizer's runtime */
#else
    pc_h_proc_t node;
    setenv("LD_PRELOAD", PC_NOURING, 1);
    node_up(&node, "uring", NULL);
    unsetenv("LD_PRELOAD");
    if (!pc_h_log_has(node.log, "--io uring: this kernel refuses it"))
        fail_msg("no line about the refusal in %s", node.log);
    pc_client_t *cl = client_for(&node);
    assert_int_equal(pc_h_stat(cl, "io_uring_loops"), 0);
    pipeline_in_one_write(&node, 0);
    pc_client_free(&cl);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uring_serves),
        cmocka_unit_test(test_epoll_when_asked),
        cmocka_unit_test(test_reader_that_stops),
        cmocka_unit_test(test_values_written_from_the_store),
        cmocka_unit_test(test_write_through_not_held),
        cmocka_unit_test(test_refused_falls_back),
    };
    return pc_h_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
