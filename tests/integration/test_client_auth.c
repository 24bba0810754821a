/*
 * test_client_auth.c -- client authentication against real peercached
 * processes (and a real redis-server) on loopback.
 *
 *   - client tokens: AUTH_REQUIRED before HELLO, slowed-down failures,
 *     the fifth closing the connection, the CLI with --token-file and
 *     PEERCACHE_TOKEN, a token file others can read;
 *   - --hello-timeout, and AUTH_REQUIRED for anything but HELLO and PING
 *     before a good HELLO;
 *   - per address: --max-conns-per-source, the back-off of failed HELLOs
 *     per address and node-wide, and how many tokens one address gets
 *     compared.
 *
 * The cluster key and peer security are in test_security.c. Every wait
 * is a poll with a deadline.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
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

/* ---- client tokens ----------------------------------------------------------- */

static void test_client_token(void **state)
{
    (void)state;
    pc_h_proc_t redis, node;
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    const char *tok = pc_h_tmp_path("client.token");
    assert_int_equal(pc_h_write_file(tok, "s3cret-token-1\n", 0600), 0);
    const char *args[] = {"--redis", redis.addr, "--token-file", tok, NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);

    /* Before HELLO: PING yes; GET, STATS, CLUSTER and (plain) FORWARD no. */
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t ping = {.op = PC_OP_PING, .id = 1};
    pc_request_t get = {.op = PC_OP_GET, .id = 2, .key = {(const uint8_t *)"k", 1}};
    pc_request_t stats = {.op = PC_OP_STATS, .id = 3};
    pc_request_t cluster = {.op = PC_OP_CLUSTER, .id = 4};
    pc_request_t fwd = {.op = PC_OP_FORWARD, .id = 5, .hops = 1,
                        .body = {(const uint8_t *)"\x93\x03\x01\xa1k", 5}};
    const pc_request_t *order[] = {&ping, &get, &stats, &cluster, &fwd};
    const uint32_t want[] = {PC_ST_OK, PC_ST_AUTH_REQUIRED, PC_ST_AUTH_REQUIRED,
                             PC_ST_AUTH_REQUIRED, PC_ST_AUTH_REQUIRED};
    for (int i = 0; i < 5; i++) {
        pc_h_reply_t x = {0};
        b.len = 0;
        pc_h_encode(&b, order[i]);
        assert_int_equal(pc_h_exchange(node.port, &b, 1, NULL, &x, 0, NULL), 1);
        if (x.status != want[i])
            fail_msg("op %u before HELLO: status %u, want %u", order[i]->op, x.status, want[i]);
    }

    /* A wrong token: AUTH_REQUIRED, later each time; then the right one
     * works on the same connection. */
    int fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    uint64_t t[3];
    const char *tries[] = {"wrong", "s3cret-token-", "s3cret-token-1"};
    for (int i = 0; i < 3; i++) {
        pc_request_t hello = {.op = PC_OP_HELLO, .id = 10 + (uint64_t)i, .proto_version = 1,
                              .token = {(const uint8_t *)tries[i], (uint32_t)strlen(tries[i])}};
        b.len = 0;
        pc_h_encode(&b, &hello);
        uint64_t t0 = pc_h_now_ms();
        assert_int_equal(pc_h_send_all(fd, &b), 0);
        pc_h_reply_t x = {0};
        assert_int_equal(pc_h_read_responses(fd, 1, pc_h_on_reply, &x), 1);
        t[i] = pc_h_now_ms() - t0;
        assert_int_equal(x.status, i < 2 ? PC_ST_AUTH_REQUIRED : PC_ST_OK);
    }
    /* Lower bounds only (a slow machine makes them longer, never shorter):
     * 100 ms for the first failure, 200 ms for the second. */
    printf("failed HELLO answered after %llu ms, then %llu ms; good one after %llu ms\n",
           (unsigned long long)t[0], (unsigned long long)t[1], (unsigned long long)t[2]);
    assert_true(t[0] >= 90);
    assert_true(t[1] >= 190);
    b.len = 0;
    pc_h_encode(&b, &get);
    assert_int_equal(pc_h_send_all(fd, &b), 0);
    pc_h_reply_t xg = {0};
    assert_int_equal(pc_h_read_responses(fd, 1, pc_h_on_reply, &xg), 1);
    assert_int_equal(xg.status, PC_ST_NOT_FOUND);
    close(fd);

    /* Five failures in a row: five slow answers, then the node hangs up. */
    b.len = 0;
    for (int i = 0; i < 5; i++) {
        pc_request_t hello = {.op = PC_OP_HELLO, .id = 20 + (uint64_t)i, .proto_version = 1,
                              .token = {(const uint8_t *)"guess", 5}};
        pc_h_encode(&b, &hello);
    }
    pc_h_reply_t x5 = {0};
    int closed = 0;
    uint64_t t0 = pc_h_now_ms();
    assert_int_equal(pc_h_exchange(node.port, &b, 5, NULL, &x5, 1, &closed), 5);
    uint64_t t5 = pc_h_now_ms() - t0;
    printf("5 pipelined bad HELLOs: answered and closed after %llu ms\n",
           (unsigned long long)t5);
    assert_int_equal(x5.status, PC_ST_AUTH_REQUIRED);
    assert_true(closed);
    assert_true(t5 >= 3000); /* 100 + 200 + 400 + 800 + 1600 */

    /* The CLI: --token-file, PEERCACHE_TOKEN, and nothing. */
    char cmd[1400], out[4096];
    const char *cli = getenv("PC_CLI");
    snprintf(cmd, sizeof cmd, "%s --nodes %s --token-file %s set tk tv 2>&1", cli, node.addr, tok);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "PEERCACHE_TOKEN=s3cret-token-1 %s --nodes %s get tk 2>&1", cli,
             node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "tv"));
    snprintf(cmd, sizeof cmd, "env -u PEERCACHE_TOKEN %s --nodes %s get tk 2>&1", cli, node.addr);
    int rc = pc_h_run(cmd, out, sizeof out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "token"));

    /* Counted: 2 + 5 failed HELLOs, and the CLI's HELLO without a token. */
    pc_client_options_t o = {.nodes = node.addr, .timeout_ms = 3000, .token = "s3cret-token-1",
                             .no_ring = 1};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    pc_stat_entry_t *st = NULL;
    size_t n = 0;
    assert_int_equal(pc_client_stats(c, &st, &n), 0);
    int64_t fails = -1, refused = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(st[i].name, "auth_failures") == 0)
            fails = st[i].value;
        if (strcmp(st[i].name, "auth_refused") == 0)
            refused = st[i].value;
    }
    pc_stats_free(st, n);
    pc_client_free(&c);
    printf("auth_failures %lld, auth_refused %lld\n", (long long)fails, (long long)refused);
    assert_true(fails >= 7);
    assert_true(refused >= 3);

    /* A token file others can read: the node refuses to start. */
    const char *open_tok = pc_h_tmp_path("open.token");
    assert_int_equal(pc_h_write_file(open_tok, "x\n", 0644), 0);
    pc_h_proc_t n2;
    const char *a2[] = {"--redis", "none", "--token-file", open_tok, NULL};
    assert_int_equal(pc_h_node_start(&n2, a2), -1);
    assert_true(pc_h_log_has(n2.log, "chmod 600"));

    pc_buf_free(&b);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
    pc_h_stop(&redis, SIGKILL, 5000);
}

/* ---- per-address limits -------------------------------------------------- */

/* Whether the node counts one connection only: the one asking (fd). */
static int only_watcher(void *arg)
{
    int fd = *(int *)arg;
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t st = {.op = PC_OP_STATS, .id = 1};
    pc_h_encode(&b, &st);
    pc_h_stat_q_t q = {.name = "connections", .value = -1, .status = 999};
    int ok = pc_h_send_all(fd, &b) == 0 && pc_h_read_responses(fd, 1, pc_h_on_stat, &q) == 1;
    pc_buf_free(&b);
    return ok && q.value == 1;
}

/*
 * One host opened 10,050 connections and held every slot until the idle
 * timeout. Now an address holds at most --max-conns-per-source: the next
 * is told BUSY and closed, counted in STATS source_limit_rejects, while
 * other addresses are served; when one of its connections closes, it may
 * open another.
 */
static void test_connections_per_source(void **state)
{
    (void)state;
    enum { LIMIT = 8 };
    pc_h_proc_t node;
    const char *args[] = {"--insecure", "--redis", "none", "--max-conns-per-source", "8", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    /* The harness's own readiness check connected from 127.0.0.1: wait
     * until the node has closed that connection (STATS, asked from
     * another address, counts this one only), else it may still hold
     * one of the address's places when the eighth comes. */
    int watcher = pc_h_connect_from("127.0.0.2", node.port, 3000);
    assert_true(watcher >= 0);
    assert_true(pc_h_poll(only_watcher, &watcher, 10000));
    close(watcher);
    int fds[LIMIT];
    for (int i = 0; i < LIMIT; i++) {
        assert_true((fds[i] = pc_h_connect_from("127.0.0.1", node.port, 3000)) >= 0);
        assert_int_equal(pc_h_ping_on(fds[i]), PC_ST_OK);
    }
    int extra = pc_h_connect_from("127.0.0.1", node.port, 3000);
    assert_true(extra >= 0);
    pc_h_reply_t x = {0};
    assert_int_equal(pc_h_read_responses(extra, 1, pc_h_on_reply, &x), 1); /* told at once */
    assert_int_equal(x.status, PC_ST_BUSY);
    assert_int_equal(pc_h_wait_closed(extra, NULL, 0, NULL), 1);
    close(extra);
    /* another address is served, and can read the counter */
    int other = pc_h_connect_from("127.0.0.2", node.port, 3000);
    assert_true(other >= 0);
    assert_int_equal(pc_h_ping_on(other), PC_ST_OK);
    close(other);
    int fd3 = pc_h_connect_from("127.0.0.3", node.port, 3000);
    assert_true(fd3 >= 0);
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t st = {.op = PC_OP_STATS, .id = 1};
    pc_h_encode(&b, &st);
    pc_h_stat_q_t q = {.name = "source_limit_rejects", .value = -1, .status = 999};
    assert_int_equal(pc_h_send_all(fd3, &b), 0);
    assert_int_equal(pc_h_read_responses(fd3, 1, pc_h_on_stat, &q), 1);
    assert_int_equal(q.value, 1);
    pc_buf_free(&b);
    close(fd3);
    /* one of the eight goes: room for one more (the node may take a
     * moment to see the close) */
    close(fds[0]);
    int again = -1;
    for (uint64_t until = pc_h_now_ms() + 5000; pc_h_now_ms() < until;) {
        again = pc_h_connect_from("127.0.0.1", node.port, 3000);
        assert_true(again >= 0);
        if (pc_h_ping_on(again) == PC_ST_OK)
            break;
        close(again);
        again = -1;
    }
    assert_true(again >= 0);
    close(again);
    for (int i = 1; i < LIMIT; i++)
        close(fds[i]);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

/* A node with a token; HELLO with it on fd. */
static void hello_ok(int fd, const char *token)
{
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t h = {.op = PC_OP_HELLO, .id = 1, .proto_version = 1,
                      .token = {(const uint8_t *)token, (uint32_t)strlen(token)}};
    pc_h_encode(&b, &h);
    pc_h_reply_t x = {0};
    assert_int_equal(pc_h_send_all(fd, &b), 0);
    assert_int_equal(pc_h_read_responses(fd, 1, pc_h_on_reply, &x), 1);
    assert_int_equal(x.status, PC_ST_OK);
    pc_buf_free(&b);
}

/*
 * With a token required, a connection that never sends HELLO is closed
 * after --hello-timeout with AUTH_REQUIRED (id 0); one that sent the
 * token stays. And before a good HELLO, everything but HELLO and PING is
 * answered AUTH_REQUIRED -- an unknown op and a request with wrong fields
 * too (they were BAD_REQUEST) -- and a frame that is no request at all
 * closes the connection with AUTH_REQUIRED; a malformed HELLO is still
 * BAD_REQUEST.
 */
static void test_hello_deadline_and_auth_first(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *tok = pc_h_tmp_path("hello.token");
    assert_int_equal(pc_h_write_file(tok, "hello-token\n", 0600), 0);
    const char *args[] = {"--insecure", "--redis", "none", "--token-file", tok,
                          "--hello-timeout", "500ms", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    int quiet = pc_h_connect(node.port, 5000), good = pc_h_connect(node.port, 5000);
    assert_true(quiet >= 0 && good >= 0);
    hello_ok(good, "hello-token");
    uint64_t t0 = pc_h_now_ms();
    pc_h_reply_t x = {0};
    assert_int_equal(pc_h_read_responses(quiet, 1, pc_h_on_reply, &x), 1);
    uint64_t waited = pc_h_now_ms() - t0;
    assert_int_equal(x.status, PC_ST_AUTH_REQUIRED);
    assert_int_equal(pc_h_wait_closed(quiet, NULL, 0, NULL), 1);
    close(quiet);
    printf("a connection without HELLO closed after %llu ms (--hello-timeout 500ms)\n",
           (unsigned long long)waited);
    assert_true(waited >= 400); /* a lower bound only: a slow machine is later */
    assert_int_equal(pc_h_ping_on(good), PC_ST_OK);

    /* before HELLO */
    struct {
        const uint8_t *body;
        size_t len;
        uint32_t want;
    } cases[] = {
        {(const uint8_t *)"\x92\x63\x05", 3, PC_ST_AUTH_REQUIRED},       /* op 99 */
        {(const uint8_t *)"\x93\x03\x06\x07", 4, PC_ST_AUTH_REQUIRED},   /* GET, key an int */
        {(const uint8_t *)"\x93\x01\x08\xa1x", 5, PC_ST_BAD_REQUEST},    /* HELLO, version a str */
        {(const uint8_t *)"\x92\x02\x09", 3, PC_ST_OK},                  /* PING */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_buf_t b;
        pc_buf_init(&b, 0);
        uint8_t pfx[4] = {0, 0, 0, (uint8_t)cases[i].len};
        pc_buf_append(&b, pfx, 4);
        pc_buf_append(&b, cases[i].body, cases[i].len);
        pc_h_reply_t r = {0};
        assert_int_equal(pc_h_exchange(node.port, &b, 1, NULL, &r, 0, NULL), 1);
        if (r.status != cases[i].want)
            fail_msg("case %zu before HELLO: status %u, want %u", i, r.status, cases[i].want);
        pc_buf_free(&b);
    }
    /* not a request at all (a bare int): AUTH_REQUIRED, then closed */
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_buf_append(&b, "\x00\x00\x00\x01\x07", 5);
    pc_h_reply_t r = {0};
    int closed = 0;
    assert_int_equal(pc_h_exchange(node.port, &b, 1, NULL, &r, 1, &closed), 1);
    assert_int_equal(r.status, PC_ST_AUTH_REQUIRED);
    assert_true(closed);
    pc_buf_free(&b);
    close(good);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

/*
 * Failed HELLOs on many connections at once, the answers timed: answers
 * to the first few in a second come after the per-connection back-off
 * (100 ms), the rest after 2 s. Per address (AUTH_SOURCE_STORM, 10 a
 * second): 50 guesses from one address. Node-wide (AUTH_STORM, 100 a
 * second, over all loops): 300 guesses from 30 addresses, 10 each, on a
 * node of 4 loops -- about 75 a loop, which a per-loop count let through
 * at once.
 */
/* Sends one bad HELLO on each of naddr * per_addr fresh connections
 * (per_addr from each of 127.0.0.10, .11, ...), all at once; returns how
 * many answers came within 1 s of the send, and checks that every one
 * comes (AUTH_REQUIRED) within 10 s. */
static int quick_guesses(int port, int naddr, int per_addr)
{
    int n = naddr * per_addr, quick = 0, left = n;
    int *fds = calloc((size_t)n, sizeof *fds);
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    char ip[32];
    for (int i = 0; i < n; i++) {
        snprintf(ip, sizeof ip, "127.0.0.%d", 10 + i / per_addr);
        assert_true((fds[i] = pc_h_connect_from(ip, port, 10000)) >= 0);
        pf[i].fd = fds[i];
        pf[i].events = POLLIN;
    }
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t h = {.op = PC_OP_HELLO, .id = 1, .proto_version = 1,
                      .token = {(const uint8_t *)"guess", 5}};
    pc_h_encode(&b, &h);
    uint64_t t0 = pc_h_now_ms();
    for (int i = 0; i < n; i++)
        assert_int_equal(pc_h_send_all(fds[i], &b), 0);
    while (left > 0 && pc_h_now_ms() < t0 + 10000) {
        if (poll(pf, (nfds_t)n, 100) <= 0)
            continue;
        uint64_t at = pc_h_now_ms();
        for (int i = 0; i < n; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & POLLIN))
                continue;
            pc_h_reply_t x = {0};
            assert_int_equal(pc_h_read_responses(fds[i], 1, pc_h_on_reply, &x), 1);
            assert_int_equal(x.status, PC_ST_AUTH_REQUIRED);
            quick += at - t0 < 1000;
            pf[i].fd = -1;
            left--;
        }
    }
    assert_int_equal(left, 0);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    free(pf);
    pc_buf_free(&b);
    return quick;
}

static void test_auth_backoff_per_source_and_node_wide(void **state)
{
    (void)state;
    const char *tok = pc_h_tmp_path("storm.token");
    assert_int_equal(pc_h_write_file(tok, "storm-token\n", 0600), 0);
    pc_h_proc_t node;
    const char *args[] = {"--insecure", "--redis", "none", "--token-file", tok, "--threads", "4",
                          NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    /* one address, 50 guesses: 10 a second get the short back-off (twice
     * that if the burst straddles a second) */
    int q1 = quick_guesses(node.port, 1, 50);
    /* a second later: 30 addresses, 10 guesses each -- no address over its
     * 10, but 300 on the node, at least 150 of them in one second */
    int q2 = quick_guesses(node.port, 30, 10);
    printf("failed HELLOs answered within 1 s: %d of 50 from one address, %d of 300 from 30\n",
           q1, q2);
    assert_true(q1 <= 2 * 10);
    assert_true(q2 <= 2 * 100);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

/* A STATS counter of a node that requires `token`, asked from 127.0.0.1. */
static int64_t stat_with_token(int port, const char *token, const char *name)
{
    int fd = pc_h_connect(port, 3000);
    if (fd < 0)
        return -1;
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t h = {.op = PC_OP_HELLO, .id = 1, .proto_version = 1,
                      .token = {(const uint8_t *)token, (uint32_t)strlen(token)}};
    pc_request_t st = {.op = PC_OP_STATS, .id = 2};
    pc_h_encode(&b, &h);
    pc_h_encode(&b, &st);
    pc_h_stat_q_t q = {.name = name, .value = -1, .status = 999};
    int ok = pc_h_send_all(fd, &b) == 0 && pc_h_read_responses(fd, 2, pc_h_on_stat, &q) == 2 &&
             q.status == PC_ST_OK;
    pc_buf_free(&b);
    close(fd);
    return ok ? q.value : -1;
}

/*
 * One address guesses the token on 40 connections at once, 4 guesses
 * each, every guess sent as the last one's answer comes. Each connection
 * has only one guess out at a time, but before, every one of them was
 * compared: 160 tokens tested in about 8 s (the answers slowed to 2 s,
 * not the guesses). Now an address gets at most 20 tokens compared in any
 * two seconds running (AUTH_SOURCE_COMPARES); the rest are refused unread
 * (auth_unchecked), which tells a guesser nothing. Checked: every guess is
 * one or the other, some were refused unread, and no more were compared
 * than 20 per two seconds over the time it all took (with a little for
 * two loops reading the count at once); meanwhile the right token from
 * another address is taken as ever.
 */
static void test_guesses_per_address_are_bounded(void **state)
{
    (void)state;
    enum { CONNS = 40, ROUNDS = 4 };
    const char *tok = pc_h_tmp_path("guess.token");
    assert_int_equal(pc_h_write_file(tok, "guess-token\n", 0600), 0);
    pc_h_proc_t node;
    const char *args[] = {"--insecure", "--redis", "none", "--token-file", tok, "--threads", "2",
                          NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    int fds[CONNS], sent[CONNS];
    struct pollfd pf[CONNS];
    for (int i = 0; i < CONNS; i++) {
        assert_true((fds[i] = pc_h_connect_from("127.0.0.70", node.port, 10000)) >= 0);
        pf[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    }
    pc_buf_t guess;
    pc_buf_init(&guess, 0);
    pc_request_t h = {.op = PC_OP_HELLO, .id = 1, .proto_version = 1,
                      .token = {(const uint8_t *)"guess", 5}};
    pc_h_encode(&guess, &h);
    uint64_t t0 = pc_h_now_ms();
    for (int i = 0; i < CONNS; i++) {
        assert_int_equal(pc_h_send_all(fds[i], &guess), 0);
        sent[i] = 1;
    }
    int left = CONNS * ROUNDS, other_ok = 0;
    while (left > 0 && pc_h_now_ms() < t0 + 60000) {
        if (poll(pf, CONNS, 100) <= 0)
            continue;
        for (int i = 0; i < CONNS; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & POLLIN))
                continue;
            pc_h_reply_t x = {0};
            assert_int_equal(pc_h_read_responses(fds[i], 1, pc_h_on_reply, &x), 1);
            assert_int_equal(x.status, PC_ST_AUTH_REQUIRED);
            left--;
            if (sent[i] < ROUNDS) {
                assert_int_equal(pc_h_send_all(fds[i], &guess), 0);
                sent[i]++;
            } else {
                pf[i].fd = -1;
            }
        }
        if (!other_ok) { /* the right token, from another address, while this goes on */
            int fd = pc_h_connect_from("127.0.0.71", node.port, 10000);
            assert_true(fd >= 0);
            pc_buf_t b;
            pc_buf_init(&b, 0);
            pc_request_t good = {.op = PC_OP_HELLO, .id = 2, .proto_version = 1,
                                 .token = {(const uint8_t *)"guess-token", 11}};
            pc_h_encode(&b, &good);
            pc_h_reply_t x = {0};
            assert_int_equal(pc_h_send_all(fd, &b), 0);
            assert_int_equal(pc_h_read_responses(fd, 1, pc_h_on_reply, &x), 1);
            assert_int_equal(x.status, PC_ST_OK);
            other_ok = 1;
            pc_buf_free(&b);
            close(fd);
        }
    }
    double secs = (double)(pc_h_now_ms() - t0) / 1000.0;
    assert_int_equal(left, 0);
    int64_t compared = stat_with_token(node.port, "guess-token", "auth_failures");
    int64_t unread = stat_with_token(node.port, "guess-token", "auth_unchecked");
    printf("%d guesses from one address in %.1f s: %lld compared, %lld refused unread\n",
           CONNS * ROUNDS, secs, (long long)compared, (long long)unread);
    assert_int_equal(compared + unread, CONNS * ROUNDS);
    assert_true(unread > 0);
    /* the seconds the node saw them in: at most secs + 2 of them, 20 in
     * any two running; 4 more for two loops that read 19 at once */
    if ((double)compared > 10.0 * (secs + 3.0) + 4.0)
        fail_msg("%lld tokens compared in %.1f s: more than 20 per two seconds",
                 (long long)compared, secs);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    pc_buf_free(&guess);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_token),
        cmocka_unit_test(test_connections_per_source),
        cmocka_unit_test(test_hello_deadline_and_auth_first),
        cmocka_unit_test(test_auth_backoff_per_source_and_node_wide),
        cmocka_unit_test(test_guesses_per_address_are_bounded),
    };
    return pc_h_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
