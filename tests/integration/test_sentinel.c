/*
 * test_sentinel.c -- Redis Sentinel on loopback: a primary, two replicas
 * and three sentinels (pc_h_sentinel_group_start), and what happens to
 * them when the primary dies.
 *
 * Real redis-server, real redis-sentinel (or redis-server --sentinel),
 * real sockets. Skipped where neither is installed.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_harness_redis.h"

/* Skips the test unless sentinels can be started. */
static void need_sentinel(void)
{
    if (!pc_h_sentinel_available()) {
        print_message("neither redis-sentinel nor redis-server found: skipped\n");
        skip();
    }
}

/* 1 if g->redis[i] answers ROLE with "master". */
static int is_master(const pc_h_sentinel_group_t *g, int i)
{
    if (i < 0 || g->redis[i].pid <= 0)
        return 0;
    redisContext *c = pc_h_redis_connect(&g->redis[i]);
    int ok = pc_h_redis_is_master(c);
    if (c != NULL)
        redisFree(c);
    return ok;
}

typedef struct promoted {
    const pc_h_sentinel_group_t *g;
    int old_port;
    int port; /* the last port the sentinels named */
} promoted_t;

/* The sentinels name another primary than old_port, and it says so. */
static int promoted(void *arg)
{
    promoted_t *p = arg;
    p->port = pc_h_sentinel_primary_port(p->g);
    return p->port > 0 && p->port != p->old_port &&
           is_master(p->g, pc_h_sentinel_group_index(p->g, p->port));
}

/* The group of the running test; group_down stops it however the test
 * ended. */
static pc_h_sentinel_group_t g;

static int group_down(void **state)
{
    (void)state;
    pc_h_sentinel_group_stop(&g);
    return 0;
}

/* kill -9 of the primary: the sentinels promote one of the replicas. */
static void test_group_fails_over(void **state)
{
    (void)state;
    need_sentinel();
    uint64_t t0 = pc_h_now_ms();
    assert_int_equal(pc_h_sentinel_group_start(&g, "pcmaster", 1000, 3000), 0);
    fprintf(stderr, "group of 3 + 3 sentinels (%s) ready in %llu ms\n", g.sentinels,
            (unsigned long long)(pc_h_now_ms() - t0));

    int old_port = pc_h_sentinel_primary_port(&g);
    assert_int_equal(old_port, g.redis[0].port);
    int old = pc_h_sentinel_group_index(&g, old_port);
    assert_int_equal(old, 0);
    assert_true(is_master(&g, old));

    uint64_t killed = pc_h_now_ms();
    pc_h_stop(&g.redis[old], SIGKILL, 5000);
    promoted_t p = {&g, old_port, -1};
    int ok = pc_h_poll(promoted, &p, 30000);
    uint64_t took = pc_h_now_ms() - killed;
    int now = pc_h_sentinel_group_index(&g, p.port);
    if (!ok)
        fprintf(stderr, "no promotion within %llu ms: the sentinels name port %d (index %d)\n",
                (unsigned long long)took, p.port, now);
    else
        fprintf(stderr, "primary %d killed; replica %d (index %d) promoted after %llu ms\n",
                old_port, p.port, now, (unsigned long long)took);
    assert_true(p.port > 0 && p.port != old_port);
    assert_true(now == 1 || now == 2);
    assert_true(is_master(&g, now));
}


#define NWRITES_MAX 200000

/* The sentinels name a primary other than *arg (a port). */
static int primary_moved(void *arg)
{
    int p = pc_h_sentinel_primary_port(&g);
    return p > 0 && p != *(int *)arg;
}

/*
 * A node in front of the group (sentinel://), under a stream of writes of
 * fresh keys (w-<i> = <i>, one at a time); kill -9 of the primary after
 * the first 300 acknowledged (without --redis-wait, of the first sentinel
 * too). Checks: the node follows the failover (writes succeed again
 * within 10 s of the sentinels naming the new primary; both times are
 * printed), and every acknowledged write is in
 * the new primary. With --redis-wait 1 the node made sure of that before
 * it acknowledged; without, the test does (WAIT 2 on the primary before
 * the kill): Redis' replication is asynchronous, and how far a replica
 * lags under load is not bounded (docs/CONSISTENCY.md section 6). The
 * node's cache agrees with the new primary afterwards.
 */
static void node_follows_failover(int wait)
{
    need_sentinel();
    assert_int_equal(pc_h_sentinel_group_start(&g, "pcmaster", 1000, 3000), 0);
    char url[400];
    snprintf(url, sizeof url, "sentinel://%s/%s", g.sentinels, g.master);
    pc_h_proc_t node;
    /* --redis-timeout 2 s: a write that waits for a replica gives WAIT
     * half of it, and at 500 ms a replica starved of CPU on a loaded
     * machine missed it (as in test_redis_auth); no write may fail
     * before the fault. */
    const char *args[] = {"--redis", url, "--redis-timeout", "2000", "--redis-wait",
                          wait ? "1" : "0", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    pc_client_options_t o = {.nodes = node.addr, .timeout_ms = 3000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    /* The node listens before its loops have asked the sentinels and
     * checked ROLE: wait for every loop's Redis connection. */
    assert_true(pc_h_poll(pc_h_backend_up, c, 15000));

    static uint8_t acked[NWRITES_MAX];
    memset(acked, 0, sizeof acked);
    int old_port = g.redis[0].port;
    uint64_t killed = 0, back = 0, end = pc_h_now_ms() + 60000;
    /* When the sentinels named the new primary (asked every 100 ms): the
     * election is theirs and may take a few rounds on a loaded machine
     * (a split vote is retried after 2 x failover-timeout); what the node
     * answers for is how soon it follows. */
    uint64_t switched = 0, asked = 0;
    int nacked = 0, after = 0, failed = 0, i = 0;
    for (; i < NWRITES_MAX && pc_h_now_ms() < end && after < 300; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "w-%d", i);
        snprintf(v, sizeof v, "%d", i);
        int rc = pc_client_set(c, k, strlen(k), v, strlen(v), NULL, NULL);
        if (rc == 0) {
            acked[i] = 1;
            nacked++;
            if (killed != 0) {
                if (back == 0)
                    back = pc_h_now_ms();
                after++;
            }
        } else {
            failed++;
            assert_true(killed != 0); /* no failure before the fault */
            assert_int_equal(rc, PC_EBACKEND); /* BACKEND_UNAVAILABLE, never a hang */
            i--; /* the same key again: failures come fast, the time bounds the loop */
        }
        if (killed != 0 && switched == 0 && pc_h_now_ms() - asked >= 100) {
            asked = pc_h_now_ms();
            int p = pc_h_sentinel_primary_port(&g);
            if (p > 0 && p != old_port)
                switched = asked;
        }
        if (killed == 0 && nacked == 300) {
            /* Without --redis-wait, the first sentinel dies too: the node's
             * subscription moves on and its asks go to the others (two of
             * three still make the quorum and elect a leader). */
            if (!wait) {
                redisContext *pc = pc_h_redis_connect(&g.redis[0]);
                assert_non_null(pc);
                redisReply *w = redisCommand(pc, "WAIT 2 10000");
                assert_true(w != NULL && w->type == REDIS_REPLY_INTEGER && w->integer == 2);
                freeReplyObject(w);
                redisFree(pc);
                pc_h_stop(&g.sentinel[0], SIGKILL, 5000);
            }
            killed = pc_h_now_ms();
            pc_h_stop(&g.redis[0], SIGKILL, 5000);
        }
    }
    assert_true(killed != 0);
    /* The writes may have come back (the node hears +switch-master at
     * once) before the poll above saw the switch: then it is seen now, a
     * little late, which only errs on the test's side. */
    if (switched == 0 && pc_h_poll(primary_moved, &old_port, 60000))
        switched = pc_h_now_ms();
    if (switched == 0)
        fail_msg("the sentinels named no new primary within %llu ms of the kill",
                 (unsigned long long)(pc_h_now_ms() - killed));
    assert_true(back != 0); /* writes came back */
    fprintf(stderr,
            "--redis-wait %d: primary killed after 300 writes; %d writes failed, the "
            "sentinels named a new primary after %llu ms, writes succeed again after %llu ms; "
            "%d acknowledged in all\n",
            wait, failed, (unsigned long long)(switched - killed),
            (unsigned long long)(back - killed), nacked);
    /* (back may come before the 100 ms poll saw the switch: the node hears
     * +switch-master at once) */
    assert_true((int64_t)back - (int64_t)switched < 10000);

    /* Every acknowledged write, in the primary the sentinels name now. */
    int now = pc_h_sentinel_group_index(&g, pc_h_sentinel_primary_port(&g));
    assert_true(now == 1 || now == 2);
    assert_int_not_equal(g.redis[now].port, old_port);
    redisContext *rc = pc_h_redis_connect(&g.redis[now]);
    assert_non_null(rc);
    int lost = 0;
    for (int j = 0; j < i; j++) {
        if (!acked[j])
            continue;
        redisReply *r = redisCommand(rc, "GET w-%d", j);
        assert_non_null(r);
        if (r->type != REDIS_REPLY_STRING || atoi(r->str) != j) {
            lost++;
            fprintf(stderr, "acknowledged write w-%d is not in the new primary\n", j);
        }
        freeReplyObject(r);
    }
    fprintf(stderr, "%d of %d acknowledged writes lost\n", lost, nacked);
    assert_int_equal(lost, 0);
    /* The cache agrees with the new primary. */
    for (int j = 0; j < i; j += 7) {
        char k[32];
        snprintf(k, sizeof k, "w-%d", j);
        pc_value_t v;
        int grc = pc_client_get(c, k, strlen(k), &v);
        redisReply *r = redisCommand(rc, "GET %s", k);
        assert_non_null(r);
        if (r->type == REDIS_REPLY_STRING) {
            assert_int_equal(grc, 0);
            assert_int_equal(v.len, r->len);
            assert_memory_equal(v.data, r->str, v.len);
            pc_value_free(&v);
        } else {
            assert_int_equal(grc, PC_ENOTFOUND);
        }
        freeReplyObject(r);
    }
    /* The node named the new primary in its log. */
    char want[64];
    snprintf(want, sizeof want, "name 127.0.0.1:%d as the primary", g.redis[now].port);
    assert_true(pc_h_log_has(node.log, want));
    if (!wait) /* the subscription's sentinel died: it moved on */
        assert_true(pc_h_log_has(node.log, "subscription lost; trying the next sentinel"));
    redisFree(rc);
    pc_client_free(&c);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

typedef struct switched {
    pc_client_t *c;
    int64_t want;
} switched_t;

static int switches_reached(void *arg)
{
    switched_t *s = arg;
    return pc_h_stat(s->c, "backend_primary_switches") >= s->want;
}

/*
 * SENTINEL FAILOVER: the old primary lives on and is made a replica. The
 * node hears +switch-master (every loop moves: backend_primary_switches),
 * writes go on to the new primary, and what was acknowledged before the
 * failover is in it. Writes the old primary acknowledged while the
 * sentinels were already promoting another are lost when it becomes a
 * replica -- Redis allows it (docs/CONSISTENCY.md "Redis Sentinel"):
 * without --redis-wait they are counted and printed; with --redis-wait 2
 * (both replicas) none may be lost, because the promoted replica stops
 * confirming the old primary's writes the moment it is promoted.
 */
static void node_follows_manual_failover(int wait)
{
    need_sentinel();
    assert_int_equal(pc_h_sentinel_group_start(&g, "pcmaster", 1000, 3000), 0);
    char url[400];
    snprintf(url, sizeof url, "sentinel://%s/%s", g.sentinels, g.master);
    pc_h_proc_t node;
    /* (--redis-timeout 2 s: WAIT gets 1 s, as above) */
    const char *args[] = {"--redis", url, "--threads", "2", "--redis-timeout", "2000",
                          "--redis-wait", wait ? "2" : "0", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    pc_client_options_t o = {.nodes = node.addr, .timeout_ms = 3000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    /* The node listens before its loops have asked the sentinels and
     * checked ROLE: wait for every loop's Redis connection. */
    assert_true(pc_h_poll(pc_h_backend_up, c, 15000));

    static uint8_t acked[NWRITES_MAX];
    memset(acked, 0, sizeof acked);
    int before = 0, i = 0, after = 0, failed = 0;
    for (; i < 200; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "m-%d", i);
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(pc_client_set(c, k, strlen(k), v, strlen(v), NULL, NULL), 0);
        acked[i] = 1;
    }
    before = i;
    int64_t sw0 = pc_h_stat(c, "backend_primary_switches");
    redisContext *sc = redisConnect("127.0.0.1", g.sentinel[0].port);
    assert_true(sc != NULL && sc->err == 0);
    redisReply *r = redisCommand(sc, "SENTINEL FAILOVER %s", g.master);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(sc);
    uint64_t t0 = pc_h_now_ms(), moved = 0;
    switched_t sw = {c, sw0 + 1};
    for (; i < NWRITES_MAX && pc_h_now_ms() < t0 + 60000 && after < 300; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "m-%d", i);
        snprintf(v, sizeof v, "%d", i);
        int rc = pc_client_set(c, k, strlen(k), v, strlen(v), NULL, NULL);
        if (rc == 0) {
            acked[i] = 1;
            if (moved == 0 && switches_reached(&sw))
                moved = pc_h_now_ms();
            if (moved != 0)
                after++;
        } else {
            failed++;
            assert_int_equal(rc, PC_EBACKEND);
            i--; /* the same key again */
        }
    }
    assert_true(moved != 0);
    /* every loop moved (2 loops) */
    switched_t all = {c, sw0 + 2};
    assert_true(pc_h_poll(switches_reached, &all, 10000));
    int now = pc_h_sentinel_group_index(&g, pc_h_sentinel_primary_port(&g));
    assert_true(now == 1 || now == 2);
    assert_true(pc_h_log_has(node.log, "failed over from"));
    redisContext *rc = pc_h_redis_connect(&g.redis[now]);
    assert_non_null(rc);
    int lost_before = 0, lost_during = 0, nacked = 0;
    for (int j = 0; j < i; j++) {
        if (!acked[j])
            continue;
        nacked++;
        r = redisCommand(rc, "GET m-%d", j);
        assert_non_null(r);
        if (r->type != REDIS_REPLY_STRING || atoi(r->str) != j)
            (*(j < before ? &lost_before : &lost_during))++;
        freeReplyObject(r);
    }
    fprintf(stderr,
            "manual failover, --redis-wait %d: writes succeed on the new primary %llu ms after SENTINEL "
            "FAILOVER; %d writes failed (%lld unreplicated); of %d acknowledged, %d lost "
            "(all from the switch-over)\n",
            wait ? 2 : 0, (unsigned long long)(moved - t0), failed,
            (long long)pc_h_stat(c, "backend_writes_unreplicated"), nacked, lost_during);
    assert_int_equal(lost_before, 0);
    if (wait)
        assert_int_equal(lost_during, 0);
    redisFree(rc);
    pc_client_free(&c);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_node_follows_manual_failover(void **state)
{
    (void)state;
    node_follows_manual_failover(0);
}

static void test_node_follows_manual_failover_with_wait(void **state)
{
    (void)state;
    node_follows_manual_failover(1);
}

static void test_node_follows_failover(void **state)
{
    (void)state;
    node_follows_failover(0);
}

static void test_node_follows_failover_with_wait(void **state)
{
    (void)state;
    node_follows_failover(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_group_fails_over, group_down),
        cmocka_unit_test_teardown(test_node_follows_failover, group_down),
        cmocka_unit_test_teardown(test_node_follows_failover_with_wait, group_down),
        cmocka_unit_test_teardown(test_node_follows_manual_failover, group_down),
        cmocka_unit_test_teardown(test_node_follows_manual_failover_with_wait, group_down),
    };
    return pc_h_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
