/*
 * test_tcp_rto.c -- --tcp-rto-min reaches every TCP socket of a node: the
 * client connections it accepts, its connection to Redis and the one to
 * another member; 0 leaves them alone; and a kernel without the option
 * (faked by pc_oldkernel, preloaded into the node) does not keep a node
 * from starting.
 *
 * Seen from outside, through `ss -tin`. Its iproute2 (6.1) prints no
 * rto_min field (tcp_info has none), but it prints rto:, the timer the
 * kernel would arm now: the smoothed round trip plus a variance term the
 * kernel never lets fall below rto_min. With the kernel's floor that is
 * 200 ms or more whatever the traffic; with a 12 ms floor the variance
 * term left from the handshake (measured before the floor was set) decays
 * by a quarter per round trip, to about 16 ms on loopback after twenty or
 * so. So the tests make round trips on the socket in question until its
 * rto: is under LOW_MS (or the deadline passes), and, for the kernel's
 * floor, check it stays at 200 or more.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_harness.h"
#include "pc_proto.h"

/* Linux 6.15's <linux/tcp.h>; older C library headers lack it. */
#ifndef TCP_RTO_MIN_US
#define TCP_RTO_MIN_US 45
#endif

/* Well between a 12 ms floor's ~16 and the kernel's 200+. */
#define LOW_MS 100.0
#define KERNEL_FLOOR_MS 200.0
#define MAX_SOCKETS 16

/* ---- what the machine has ------------------------------------------------ */

static int have_ss(void)
{
    return pc_h_run("ss -V >/dev/null 2>&1", NULL, 0) == 0;
}

/* Skips the test unless ss runs and the kernel knows TCP_RTO_MIN_US. */
static void need_ss_and_option(void)
{
    if (!have_ss()) {
        print_message("ss (iproute2) not found: skipped\n");
        skip();
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int us = 12000;
    int rc = setsockopt(fd, IPPROTO_TCP, TCP_RTO_MIN_US, &us, sizeof us);
    int err = errno;
    close(fd);
    if (rc != 0 && err == ENOPROTOOPT) {
        print_message("this kernel has no TCP_RTO_MIN_US (Linux 6.15+): skipped\n");
        skip();
    }
    assert_int_equal(rc, 0);
}

/* ---- processes -------------------------------------------------------------- */

/* Starts a node of one loop (so one Redis connection and one peer pool,
 * each carrying all the traffic) with the extra flags (NULL-terminated). */
static void node_up(pc_h_proc_t *node, const pc_h_proc_t *redis, const char *first, ...)
{
    const char *args[24] = {"--redis", redis->addr, "--threads", "1", "--memory", "16mb"};
    int n = 6;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 23; a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    assert_int_equal(pc_h_node_start(node, args), 0);
}

static void node_down(pc_h_proc_t *node)
{
    int st = pc_h_stop(node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- traffic and ss ----------------------------------------------------------- */

/* A client connection of the test's own that makes round trips: each a
 * SET, which the node also writes to Redis, and, in a cluster, forwards
 * to the key's owner or replicates to the other member. */
typedef struct traffic {
    int fd;
    int local_port; /* of fd, to find the node's end of it in ss */
    uint64_t next;  /* request id and key number */
} traffic_t;

static void traffic_open(traffic_t *t, const pc_h_proc_t *node)
{
    memset(t, 0, sizeof *t);
    t->fd = pc_h_connect(node->port, 5000);
    assert_true(t->fd >= 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(t->fd, (struct sockaddr *)&sa, &len), 0);
    t->local_port = ntohs(sa.sin_port);
}

static int any_response(void *arg, int index, const pc_response_t *r)
{
    (void)arg;
    (void)index;
    (void)r;
    return 0;
}

/* n round trips, one request in flight at a time. */
static void round_trips(traffic_t *t, int n)
{
    for (int i = 0; i < n; i++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "rto:%llu", (unsigned long long)t->next);
        pc_request_t rq = {.op = PC_OP_SET, .id = ++t->next,
                           .key = {(const uint8_t *)key, (uint32_t)klen},
                           .value = {(const uint8_t *)"v", 1}};
        pc_buf_t b;
        pc_buf_init(&b, 0);
        assert_int_equal(pc_proto_encode_request(&b, &rq), 0);
        assert_int_equal(pc_h_send_all(t->fd, &b), 0);
        pc_buf_free(&b);
        assert_int_equal(pc_h_read_responses(t->fd, 1, any_response, NULL), 1);
    }
}

/* The rto: (ms) of each established TCP socket ss matches with `filter`
 * (an ss filter expression); how many, or -1 if ss failed. */
static int ss_rtos(const char *filter, double *rto, int max)
{
    char cmd[256], out[32768];
    snprintf(cmd, sizeof cmd, "ss -tinH state established '%s' 2>/dev/null", filter);
    if (pc_h_run(cmd, out, sizeof out) != 0)
        return -1;
    int n = 0;
    for (const char *p = out; n < max && (p = strstr(p, " rto:")) != NULL; p += 5)
        rto[n++] = strtod(p + 5, NULL);
    return n;
}

typedef struct watch {
    traffic_t *t;
    char filter[128];
    double rto[MAX_SOCKETS];
    int n;
} watch_t;

/* Ten more round trips; 1 once every socket of the filter (at least one)
 * is under LOW_MS. */
static int rtos_low(void *arg)
{
    watch_t *w = arg;
    round_trips(w->t, 10);
    w->n = ss_rtos(w->filter, w->rto, MAX_SOCKETS);
    if (w->n <= 0)
        return 0;
    for (int i = 0; i < w->n; i++)
        if (w->rto[i] >= LOW_MS)
            return 0;
    return 1;
}

static void expect_low(traffic_t *t, const char *what, const char *filter)
{
    watch_t w = {.t = t};
    snprintf(w.filter, sizeof w.filter, "%s", filter);
    if (!pc_h_poll(rtos_low, &w, 20000))
        fail_msg("%s (ss %s): %d sockets, first rto %.1f ms: not under %.0f ms after %llu "
                 "round trips", what, w.filter, w.n, w.n > 0 ? w.rto[0] : -1.0, LOW_MS,
                 (unsigned long long)t->next);
}

/* After 40 round trips, every socket of the filter (at least one) has an
 * rto: of the kernel's floor or more. */
static void expect_kernel_floor(traffic_t *t, const char *what, const char *filter)
{
    double rto[MAX_SOCKETS];
    round_trips(t, 40);
    int n = ss_rtos(filter, rto, MAX_SOCKETS);
    if (n <= 0)
        fail_msg("%s (ss %s): no socket found", what, filter);
    for (int i = 0; i < n; i++)
        if (rto[i] < KERNEL_FLOOR_MS)
            fail_msg("%s (ss %s): rto %.1f ms, under the kernel's floor", what, filter, rto[i]);
}

/* ss filters: the node's end of the test's connection t, and every
 * connection to `port` (seen from the connecting end). */
typedef struct filter {
    char s[96];
} filter_t;

static filter_t node_end_of(const pc_h_proc_t *node, const traffic_t *t)
{
    filter_t f;
    snprintf(f.s, sizeof f.s, "( sport = :%d and dport = :%d )", node->port, t->local_port);
    return f;
}

static filter_t to_port(int port)
{
    filter_t f;
    snprintf(f.s, sizeof f.s, "( dport = :%d )", port);
    return f;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_floor_on_client_redis_and_peer_sockets(void **state)
{
    (void)state;
    need_ss_and_option();
    pc_h_proc_t redis, a, b;
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    node_up(&a, &redis, "--tcp-rto-min", "12ms", NULL);

    traffic_t ta;
    traffic_open(&ta, &a);
    expect_low(&ta, "client connection", node_end_of(&a, &ta).s);
    /* One node of one loop: its Redis connection is the only one. */
    expect_low(&ta, "redis connection", to_port(redis.port).s);

    close(ta.fd);

    /* A second member: its writes go to a (forwarded, or replicated
     * there: two replicas), over its peer connection to a -- with ta
     * closed, the only connection to a's port. */
    node_up(&b, &redis, "--tcp-rto-min", "12ms", "--join", a.addr, NULL);
    traffic_t tb;
    traffic_open(&tb, &b);
    expect_low(&tb, "peer connection", to_port(a.port).s);

    close(tb.fd);
    node_down(&b);
    node_down(&a);
    pc_h_stop(&redis, SIGKILL, 5000);
}

static void test_zero_leaves_the_kernel_floor(void **state)
{
    (void)state;
    need_ss_and_option();
    pc_h_proc_t redis, node;
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    node_up(&node, &redis, "--tcp-rto-min", "0", NULL);

    traffic_t t;
    traffic_open(&t, &node);
    expect_kernel_floor(&t, "client connection", node_end_of(&node, &t).s);
    expect_kernel_floor(&t, "redis connection", to_port(redis.port).s);

    close(t.fd);
    node_down(&node);
    pc_h_stop(&redis, SIGKILL, 5000);
}

/*
 * A kernel older than 6.15 answers ENOPROTOOPT: the node says so once,
 * starts anyway (with the default 10 ms asked for), serves, and leaves
 * its sockets on the kernel's floor.
 */
static void test_kernel_without_the_option(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    skip(); /* the shim cannot be preloaded before the sanitizer's runtime */
#else
    pc_h_proc_t redis, node;
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    setenv("LD_PRELOAD", PC_OLDKERNEL, 1);
    node_up(&node, &redis, NULL);
    unsetenv("LD_PRELOAD");
    if (!pc_h_log_has(node.log, "--tcp-rto-min 10ms: not supported by this kernel"))
        fail_msg("no start-up line about the missing option in %s", node.log);

    traffic_t t;
    traffic_open(&t, &node);
    if (have_ss()) {
        expect_kernel_floor(&t, "client connection", node_end_of(&node, &t).s);
        expect_kernel_floor(&t, "redis connection", to_port(redis.port).s);
    } else {
        round_trips(&t, 10); /* it serves */
    }
    close(t.fd);
    node_down(&node);
    pc_h_stop(&redis, SIGKILL, 5000);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_floor_on_client_redis_and_peer_sockets),
        cmocka_unit_test(test_zero_leaves_the_kernel_floor),
        cmocka_unit_test(test_kernel_without_the_option),
    };
    return pc_h_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
