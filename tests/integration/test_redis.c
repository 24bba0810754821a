/*
 * test_redis.c -- the Redis-protocol front door (--resp, docs/REDIS.md)
 * with hiredis from C: each command's reply against what Redis answers,
 * values crossing between the Redis protocol, the native protocol and
 * Redis itself, pipelined replies in order while some wait on Redis, the
 * token as AUTH, RESP3 after HELLO 3 (read as bytes: hiredis 0.14 speaks
 * RESP2 only), errors that keep the connection and those that end it,
 * and a 3-node cluster used through any node.
 *
 * Real redis-server, real peercached, real sockets. redis-cli, redis-py
 * and redis-benchmark are in test_redis_tools.py.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_harness.h"

typedef struct node {
    pc_h_proc_t redis, node;
    int resp_port;
    char resp[64];
    redisContext *direct; /* straight to Redis */
} node_t;

/* Starts a node on its own Redis (redis NULL) or on `redis`, with a free
 * --resp port and the extra flags `more` (NULL-terminated, or NULL). */
static void node_up(node_t *n, const pc_h_proc_t *redis, const char *join,
                    const char *const *more)
{
    memset(n, 0, sizeof *n);
    if (redis == NULL)
        assert_int_equal(pc_h_redis_start(&n->redis, 0), 0);
    else
        n->redis = *redis;
    int port = pc_h_free_port();
    do
        n->resp_port = pc_h_free_port();
    while (n->resp_port == port);
    snprintf(n->resp, sizeof n->resp, "127.0.0.1:%d", n->resp_port);
    const char *args[32];
    int k = 0;
    args[k++] = "--redis";
    args[k++] = n->redis.addr;
    args[k++] = "--resp";
    args[k++] = n->resp;
    if (join != NULL) {
        args[k++] = "--join";
        args[k++] = join;
    }
    for (int i = 0; more != NULL && more[i] != NULL && k < 30; i++)
        args[k++] = more[i];
    args[k] = NULL;
    assert_int_equal(pc_h_node_start_port(&n->node, port, args), 0);
    n->direct = pc_h_redis_connect(&n->redis);
    assert_non_null(n->direct);
}

static void node_down(node_t *n, int own_redis)
{
    assert_int_equal(pc_h_stop(&n->node, SIGTERM, 15000), 0);
    redisFree(n->direct);
    if (own_redis)
        pc_h_stop(&n->redis, SIGTERM, 5000);
}

static redisContext *resp_connect(const node_t *n)
{
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", n->resp_port, tv);
    assert_non_null(c);
    if (c->err)
        fail_msg("connect to %s: %s", n->resp, c->errstr);
    assert_int_equal(redisSetTimeout(c, tv), REDIS_OK);
    return c;
}

/* ---- reply checks ------------------------------------------------------- */

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL)
        fail_msg("'%s': no reply (%s)", fmt, c->errstr);
    return r;
}

static void want_status(redisContext *c, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type != REDIS_REPLY_STATUS || strcmp(r->str, want) != 0)
        fail_msg("'%s': want +%s, got type %d '%s'", fmt, want, r ? r->type : -1,
                 r && r->str ? r->str : "");
    freeReplyObject(r);
}

static void want_str(redisContext *c, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (want == NULL) {
        if (r == NULL || r->type != REDIS_REPLY_NIL)
            fail_msg("'%s': want nil, got type %d '%s'", fmt, r ? r->type : -1,
                     r && r->str ? r->str : "");
    } else if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != strlen(want) ||
               memcmp(r->str, want, r->len) != 0) {
        fail_msg("'%s': want \"%s\", got type %d '%s'", fmt, want, r ? r->type : -1,
                 r && r->str ? r->str : "");
    }
    freeReplyObject(r);
}

static void want_int(redisContext *c, long long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer != want)
        fail_msg("'%s': want :%lld, got type %d %lld '%s'", fmt, want, r ? r->type : -1,
                 r ? r->integer : 0, r && r->str ? r->str : "");
    freeReplyObject(r);
}

static void want_int_in(redisContext *c, long long lo, long long hi, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < lo || r->integer > hi)
        fail_msg("'%s': want :%lld..%lld, got type %d %lld", fmt, lo, hi, r ? r->type : -1,
                 r ? r->integer : 0);
    freeReplyObject(r);
}

/* An error reply that starts with `prefix`. */
static void want_err(redisContext *c, const char *prefix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type != REDIS_REPLY_ERROR ||
        strncmp(r->str, prefix, strlen(prefix)) != 0)
        fail_msg("'%s': want -%s..., got type %d '%s'", fmt, prefix, r ? r->type : -1,
                 r && r->str ? r->str : (c->err ? c->errstr : ""));
    freeReplyObject(r);
}

static void want_direct(node_t *n, const char *key, const char *want)
{
    redisReply *r = redisCommand(n->direct, "GET %s", key);
    assert_non_null(r);
    if (want == NULL ? r->type != REDIS_REPLY_NIL
                     : r->type != REDIS_REPLY_STRING || strcmp(r->str, want) != 0)
        fail_msg("Redis GET %s: want %s, got type %d '%s'", key, want ? want : "nil", r->type,
                 r->str ? r->str : "");
    freeReplyObject(r);
}

/* ---- tests -------------------------------------------------------------- */

/* Each command of docs/REDIS.md's table, answered as Redis answers it. */
static void test_commands(void **state)
{
    (void)state;
    node_t n;
    node_up(&n, NULL, NULL, NULL);
    redisContext *c = resp_connect(&n);

    want_status(c, "PONG", "PING");
    want_str(c, "hi there", "PING %s", "hi there");
    want_str(c, "echo me", "ECHO %s", "echo me");
    want_status(c, "OK", "SELECT 0");

    /* GET, SET and its options */
    want_str(c, NULL, "GET nothing");
    want_status(c, "OK", "SET k1 v1");
    want_str(c, "v1", "GET k1");
    want_str(c, NULL, "SET k1 x NX");
    want_str(c, "v1", "GET k1");
    want_status(c, "OK", "SET k1 v2 XX");
    want_str(c, NULL, "SET absent x XX");
    want_str(c, NULL, "GET absent");
    want_status(c, "OK", "SET fresh f NX");
    want_str(c, "v2", "SET k1 v3 GET");
    want_str(c, NULL, "SET newkey n GET");
    want_str(c, "v3", "GET k1");
    want_status(c, "OK", "SET t1 x EX 100");
    want_int_in(c, 99, 100, "TTL t1");
    want_status(c, "OK", "SET t2 x PX 50000");
    want_int_in(c, 49000, 50000, "PTTL t2");
    want_status(c, "OK", "SET t3 x EXAT %lld", (long long)(pc_h_wall_ms() / 1000 + 200));
    want_int_in(c, 198, 200, "TTL t3");
    want_status(c, "OK", "SET t4 x PXAT %lld", (long long)(pc_h_wall_ms() + 300000));
    want_int_in(c, 298000, 300000, "PTTL t4");
    /* a time already past: stored and gone at once, as in Redis */
    want_status(c, "OK", "SET past x PXAT 1");
    want_str(c, NULL, "GET past");
    want_status(c, "OK", "SET past x");
    want_str(c, "x", "SET past y EXAT 1 GET");
    want_str(c, NULL, "GET past");
    want_direct(&n, "past", NULL);
    want_int(c, -1, "TTL k1");
    want_int(c, -2, "TTL nothing");
    want_int(c, -2, "PTTL nothing");
    want_err(c, "ERR invalid expire time", "SET k1 x EX 0");
    want_err(c, "ERR invalid expire time", "SET k1 x PX -5");
    want_err(c, "ERR value is not an integer", "SET k1 x EX ten");
    want_err(c, "ERR syntax error", "SET k1 x NX XX");
    want_err(c, "ERR syntax error", "SET k1 x EX 5 PX 5");
    want_err(c, "ERR syntax error", "SET k1 x BOGUS");
    want_err(c, "ERR SET KEEPTTL is not supported", "SET k1 x KEEPTTL");
    want_str(c, "v3", "GET k1"); /* none of those changed it */

    /* SETEX, PSETEX */
    want_status(c, "OK", "SETEX se 100 sv");
    want_str(c, "sv", "GET se");
    want_int_in(c, 99, 100, "TTL se");
    want_status(c, "OK", "PSETEX pse 100000 pv");
    want_int_in(c, 99000, 100000, "PTTL pse");
    want_err(c, "ERR invalid expire time in 'setex'", "SETEX se 0 sv");

    /* EXPIRE family, PERSIST */
    want_int(c, 1, "EXPIRE k1 500");
    want_int_in(c, 499, 500, "TTL k1");
    want_int(c, 1, "PEXPIRE k1 700000");
    want_int_in(c, 699000, 700000, "PTTL k1");
    want_int(c, 1, "EXPIREAT k1 %lld", (long long)(pc_h_wall_ms() / 1000 + 400));
    want_int_in(c, 398, 400, "TTL k1");
    want_int(c, 1, "PEXPIREAT k1 %lld", (long long)(pc_h_wall_ms() + 450000));
    want_int_in(c, 448000, 450000, "PTTL k1");
    want_int(c, 1, "PERSIST k1");
    want_int(c, -1, "TTL k1");
    want_int(c, 0, "EXPIRE nothing 10");
    want_int(c, 0, "PERSIST nothing");
    want_err(c, "ERR expire options", "EXPIRE k1 10 NX");
    want_status(c, "OK", "SET gone x");
    want_int(c, 1, "EXPIRE gone 0"); /* Redis deletes it */
    want_str(c, NULL, "GET gone");
    want_direct(&n, "gone", NULL);

    /* MSET, MGET, EXISTS, TOUCH, DEL, UNLINK */
    want_status(c, "OK", "MSET a 1 b 2 c 3");
    redisReply *r = cmd(c, "MGET a b nothing c");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    assert_string_equal(r->element[0]->str, "1");
    assert_string_equal(r->element[1]->str, "2");
    assert_int_equal(r->element[2]->type, REDIS_REPLY_NIL);
    assert_string_equal(r->element[3]->str, "3");
    freeReplyObject(r);
    want_err(c, "ERR wrong number of arguments for 'mset'", "MSET a 1 b");
    want_int(c, 3, "EXISTS a b nothing a"); /* a duplicate counts twice, as in Redis */
    want_int(c, 2, "TOUCH a b nothing");
    want_int(c, 2, "DEL a b nothing");
    want_int(c, 1, "UNLINK c");
    want_int(c, 0, "EXISTS a b c");
    want_direct(&n, "a", NULL);

    /* GETDEL, GETEX */
    want_status(c, "OK", "SET gd val");
    want_str(c, "val", "GETDEL gd");
    want_str(c, NULL, "GETDEL gd");
    want_direct(&n, "gd", NULL);
    want_status(c, "OK", "SET gx val");
    want_str(c, "val", "GETEX gx");
    want_int(c, -1, "TTL gx");
    want_str(c, "val", "GETEX gx EX 300");
    want_int_in(c, 299, 300, "TTL gx");
    want_str(c, "val", "GETEX gx PERSIST");
    want_int(c, -1, "TTL gx");
    want_str(c, NULL, "GETEX nothing EX 5");
    want_err(c, "ERR syntax error", "GETEX gx EX");

    /* the connection and the server */
    want_status(c, "OK", "CLIENT SETNAME tester");
    want_str(c, "tester", "CLIENT GETNAME");
    r = cmd(c, "CLIENT INFO");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_non_null(strstr(r->str, "name=tester"));
    assert_non_null(strstr(r->str, "resp=2"));
    freeReplyObject(r);
    r = cmd(c, "CLIENT ID");
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 0);
    freeReplyObject(r);
    want_err(c, "ERR Client names cannot contain spaces", "CLIENT SETNAME %s", "a b");
    r = cmd(c, "DBSIZE");
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer >= 8);
    freeReplyObject(r);
    r = cmd(c, "INFO");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_non_null(strstr(r->str, "# Server\r\n"));
    assert_non_null(strstr(r->str, "# Keyspace\r\ndb0:keys="));
    assert_null(strstr(r->str, "# Peercache"));
    freeReplyObject(r);
    r = cmd(c, "INFO peercache");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_non_null(strstr(r->str, "# Peercache\r\n"));
    assert_non_null(strstr(r->str, "\r\nredis_commands:"));
    assert_null(strstr(r->str, "# Server"));
    freeReplyObject(r);
    r = cmd(c, "COMMAND");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    r = cmd(c, "COMMAND COUNT");
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 20);
    freeReplyObject(r);
    r = cmd(c, "HELLO 2");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 14);
    assert_string_equal(r->element[0]->str, "server");
    assert_string_equal(r->element[4]->str, "proto");
    assert_int_equal(r->element[5]->integer, 2);
    freeReplyObject(r);
    want_err(c, "NOPROTO", "HELLO 4");
    want_err(c, "ERR AUTH <password> called without any password", "AUTH x");

    /* errors that keep the connection */
    want_err(c, "ERR unknown command 'FLUSHALL'", "FLUSHALL");
    want_err(c, "ERR wrong number of arguments for 'get'", "GET");
    want_err(c, "ERR DB index is out of range", "SELECT 1");
    want_err(c, "ERR incr is not supported", "INCR counter");
    want_err(c, "ERR empty keys are not supported", "GET %b", "", (size_t)0);
    want_status(c, "PONG", "PING");
    redisFree(c);
    node_down(&n, 1);
}

/* A value crosses from the Redis protocol to the native one and to Redis,
 * and the other way; a key only Redis holds is read through. */
static void test_cross_protocol(void **state)
{
    (void)state;
    node_t n;
    node_up(&n, NULL, NULL, NULL);
    redisContext *c = resp_connect(&n);
    pc_client_options_t o = {.nodes = n.node.addr, .timeout_ms = 5000};
    pc_client_t *pc = NULL;
    assert_int_equal(pc_client_new(&o, &pc), 0);

    want_status(c, "OK", "SET from-resp %s", "resp value");
    pc_value_t v;
    assert_int_equal(pc_client_get(pc, "from-resp", 9, &v), 0);
    assert_int_equal(v.len, 10);
    assert_memory_equal(v.data, "resp value", 10);
    pc_value_free(&v);
    want_direct(&n, "from-resp", "resp value");

    assert_int_equal(pc_client_set(pc, "from-native", 11, "native value", 12, NULL, NULL), 0);
    want_str(c, "native value", "GET from-native");
    want_direct(&n, "from-native", "native value");

    redisReply *r = redisCommand(n.direct, "SET from-redis %s", "redis value");
    assert_non_null(r);
    freeReplyObject(r);
    want_str(c, "redis value", "GET from-redis");

    /* A binary value, every byte, both ways. */
    uint8_t bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (uint8_t)i;
    want_status(c, "OK", "SET bin %b", bin, sizeof bin);
    assert_int_equal(pc_client_get(pc, "bin", 3, &v), 0);
    assert_int_equal(v.len, sizeof bin);
    assert_memory_equal(v.data, bin, sizeof bin);
    pc_value_free(&v);

    /* A delete through one protocol is seen through the other. */
    want_int(c, 1, "DEL from-native");
    assert_int_equal(pc_client_get(pc, "from-native", 11, &v), PC_ENOTFOUND);
    pc_client_free(&pc);
    redisFree(c);
    node_down(&n, 1);
}

/* The next pipelined reply: of `type`, with text `str` (strings and
 * statuses) or value `integer` (integers). */
static void next_reply(redisContext *c, int type, const char *str, long long integer)
{
    redisReply *r;
    assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
    if (r->type != type || (str != NULL && strcmp(r->str, str) != 0) ||
        (type == REDIS_REPLY_INTEGER && r->integer != integer))
        fail_msg("want type %d '%s' %lld, got type %d '%s' %lld", type, str ? str : "", integer,
                 r->type, r->str ? r->str : "", r->integer);
    freeReplyObject(r);
}

/* 600 pipelined commands, some waiting on Redis (keys only Redis holds),
 * some answered at once, some of several requests: replies in order. */
static void test_pipeline_order(void **state)
{
    (void)state;
    node_t n;
    node_up(&n, NULL, NULL, NULL);
    for (int i = 0; i < 100; i++) {
        redisReply *r = redisCommand(n.direct, "SET cold:%d c%d", i, i);
        assert_non_null(r);
        freeReplyObject(r);
    }
    redisContext *c = resp_connect(&n);
    for (int i = 0; i < 100; i++) {
        redisAppendCommand(c, "GET cold:%d", i);    /* a miss: waits on Redis */
        redisAppendCommand(c, "PING %d", i);        /* answered here */
        redisAppendCommand(c, "SET hot:%d h%d", i, i);
        redisAppendCommand(c, "MSET m1:%d x m2:%d y", i, i);
        redisAppendCommand(c, "DEL m1:%d m2:%d nothing", i, i);
        redisAppendCommand(c, "GET hot:%d", i);
    }
    for (int i = 0; i < 100; i++) {
        char want[32];
        snprintf(want, sizeof want, "c%d", i);
        next_reply(c, REDIS_REPLY_STRING, want, 0);
        snprintf(want, sizeof want, "%d", i);
        next_reply(c, REDIS_REPLY_STRING, want, 0);
        next_reply(c, REDIS_REPLY_STATUS, "OK", 0);
        next_reply(c, REDIS_REPLY_STATUS, "OK", 0);
        next_reply(c, REDIS_REPLY_INTEGER, NULL, 2);
        snprintf(want, sizeof want, "h%d", i);
        next_reply(c, REDIS_REPLY_STRING, want, 0);
    }
    redisFree(c);
    node_down(&n, 1);
}

/* A pipeline reads its own writes, as Redis serves a connection's
 * commands one after another -- also of a key the node has cached, which
 * it could answer at once while the write still waits on Redis. */
static void test_pipeline_reads_own_writes(void **state)
{
    (void)state;
    node_t n;
    node_up(&n, NULL, NULL, NULL);
    redisContext *c = resp_connect(&n);
    for (int i = 0; i < 30; i++) {
        want_status(c, "OK", "SET own:%d old", i);
        want_str(c, "old", "GET own:%d", i); /* cached now */
        redisAppendCommand(c, "SET own:%d new", i);
        redisAppendCommand(c, "GET own:%d", i);
        redisAppendCommand(c, "MGET own:%d other", i);
        redisAppendCommand(c, "DEL own:%d", i);
        redisAppendCommand(c, "GET own:%d", i);
        redisAppendCommand(c, "EXISTS own:%d", i);
        redisAppendCommand(c, "SET own:%d again EX 100", i);
        redisAppendCommand(c, "TTL own:%d", i);
        redisAppendCommand(c, "GETDEL own:%d", i);
        redisAppendCommand(c, "GET own:%d", i);
        redisReply *r;
        const char *want[] = {"+OK", "new", "new", ":1", NULL, ":0", "+OK", ":100", "again", NULL};
        for (int k = 0; k < 10; k++) {
            assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
            if (r->type == REDIS_REPLY_ARRAY) { /* MGET */
                assert_int_equal(r->element[0]->type, REDIS_REPLY_STRING);
                if (strcmp(r->element[0]->str, want[k]) != 0)
                    fail_msg("round %d reply %d: MGET saw \"%s\", want \"%s\"", i, k,
                             r->element[0]->str, want[k]);
            } else if (want[k] == NULL) {
                if (r->type != REDIS_REPLY_NIL)
                    fail_msg("round %d reply %d: want nil, got type %d '%s'", i, k, r->type,
                             r->str ? r->str : "");
            } else if (want[k][0] == '+') {
                assert_int_equal(r->type, REDIS_REPLY_STATUS);
            } else if (want[k][0] == ':') {
                if (r->type != REDIS_REPLY_INTEGER || r->integer != atoll(want[k] + 1))
                    fail_msg("round %d reply %d: want %s, got type %d %lld", i, k, want[k],
                             r->type, r->integer);
            } else if (r->type != REDIS_REPLY_STRING || strcmp(r->str, want[k]) != 0) {
                fail_msg("round %d reply %d: want \"%s\", got type %d '%s'", i, k, want[k],
                         r->type, r->str ? r->str : "");
            }
            freeReplyObject(r);
        }
    }
    /* More writes out than the connection tracks by key: reads wait for
     * all of them. */
    for (int i = 0; i < 100; i++)
        want_status(c, "OK", "SET many:%d old", i);
    for (int i = 0; i < 100; i++)
        redisAppendCommand(c, "SET many:%d new%d", i, i);
    for (int i = 0; i < 100; i++)
        redisAppendCommand(c, "GET many:%d", i);
    for (int i = 0; i < 200; i++) {
        redisReply *r;
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        if (i >= 100) {
            char want[16];
            snprintf(want, sizeof want, "new%d", i - 100);
            assert_int_equal(r->type, REDIS_REPLY_STRING);
            assert_string_equal(r->str, want);
        }
        freeReplyObject(r);
    }
    redisFree(c);
    node_down(&n, 1);
}

/* Raw bytes: RESP3 types, and what ends a connection. */
static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads until `want` has arrived (or the connection ends, or 10 s). */
static void read_until(int fd, const char *want, char *buf, size_t cap)
{
    size_t got = 0;
    buf[0] = 0;
    uint64_t end = pc_h_now_ms() + 10000;
    while (strstr(buf, want) == NULL && got + 1 < cap && pc_h_now_ms() < end) {
        ssize_t k = recv(fd, buf + got, cap - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
        buf[got] = 0;
    }
    if (strstr(buf, want) == NULL)
        fail_msg("want \"%s\", got \"%s\"", want, buf);
}

static void test_resp3_and_raw(void **state)
{
    (void)state;
    node_t n;
    node_up(&n, NULL, NULL, NULL);
    char buf[4096];

    int fd = pc_h_connect(n.resp_port, 10000);
    assert_true(fd >= 0);
    send_str(fd, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    read_until(fd, "$7\r\nmodules\r\n*0\r\n", buf, sizeof buf);
    assert_memory_equal(buf, "%7\r\n$6\r\nserver\r\n$9\r\npeercache\r\n", 31);
    assert_non_null(strstr(buf, "$5\r\nproto\r\n:3\r\n"));
    /* RESP3's null, and a map where RESP2 has an array */
    send_str(fd, "GET nothing\r\n");
    read_until(fd, "_\r\n", buf, sizeof buf);
    assert_string_equal(buf, "_\r\n");
    send_str(fd, "*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n");
    read_until(fd, "%1\r\n$4\r\nsave\r\n$0\r\n\r\n", buf, sizeof buf);
    /* INFO is a verbatim string in RESP3 */
    send_str(fd, "INFO keyspace\r\n");
    read_until(fd, "txt:# Keyspace\r\ndb0:keys=", buf, sizeof buf);
    assert_memory_equal(buf, "=", 1); /* (its tail may come with the next reply) */
    /* inline commands, as typed at telnet */
    send_str(fd, "SET inl ine\r\nGET inl\r\n");
    read_until(fd, "+OK\r\n$3\r\nine\r\n", buf, sizeof buf);
    /* QUIT: +OK, then the node closes */
    send_str(fd, "QUIT\r\nPING\r\n");
    size_t got = 0;
    assert_int_equal(pc_h_wait_closed(fd, (uint8_t *)buf, sizeof buf - 1, &got), 1);
    buf[got] = 0;
    assert_string_equal(buf, "+OK\r\n");
    close(fd);

    /* Bytes that are not the protocol: told why, then closed. */
    fd = pc_h_connect(n.resp_port, 10000);
    send_str(fd, "*1\r\n$x\r\n");
    got = 0;
    assert_int_equal(pc_h_wait_closed(fd, (uint8_t *)buf, sizeof buf - 1, &got), 1);
    buf[got] = 0;
    if (strncmp(buf, "-ERR Protocol error", 19) != 0)
        fail_msg("want -ERR Protocol error, got \"%s\"", buf);
    close(fd);
    node_down(&n, 1);
}

/* --token-file: the token is AUTH's password (user "default"). */
static void test_auth(void **state)
{
    (void)state;
    char tok[512];
    snprintf(tok, sizeof tok, "%s/resp.token", pc_h_tmpdir());
    FILE *f = fopen(tok, "w");
    assert_non_null(f);
    fputs("resp-s3cret\n", f);
    fclose(f);
    assert_int_equal(chmod(tok, 0600), 0);
    const char *more[] = {"--token-file", tok, "--hello-timeout", "1500ms", NULL};
    node_t n;
    node_up(&n, NULL, NULL, more);
    /* Silent, it is told why it is closed after --hello-timeout. */
    int fd = pc_h_connect(n.resp_port, 10000);
    assert_true(fd >= 0);
    char buf[256];
    size_t got = 0;
    assert_int_equal(pc_h_wait_closed(fd, (uint8_t *)buf, sizeof buf - 1, &got), 1);
    buf[got] = 0;
    assert_string_equal(buf, "-ERR no AUTH with the token within the hello timeout\r\n");
    close(fd);

    redisContext *c = resp_connect(&n);
    want_err(c, "NOAUTH Authentication required", "GET k");
    want_err(c, "NOAUTH Authentication required", "PING");
    want_err(c, "NOAUTH HELLO must be called", "HELLO 2");
    want_err(c, "WRONGPASS", "AUTH wrong");
    want_err(c, "WRONGPASS", "AUTH someone resp-s3cret");
    want_status(c, "OK", "AUTH resp-s3cret");
    want_status(c, "OK", "SET k v");
    want_str(c, "v", "GET k");
    redisFree(c);

    c = resp_connect(&n);
    redisReply *r = cmd(c, "HELLO 2 AUTH default resp-s3cret SETNAME app");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    want_str(c, "app", "CLIENT GETNAME");
    want_str(c, "v", "GET k");
    redisFree(c);
    node_down(&n, 1);
}

/* Limits: the node's own, as the native port has them. */
static void test_limits(void **state)
{
    (void)state;
    const char *more[] = {"--max-value", "1kb", "--max-mget-keys", "4", "--max-key", "16", NULL};
    node_t n;
    node_up(&n, NULL, NULL, more);
    redisContext *c = resp_connect(&n);
    char big[1100];
    memset(big, 'v', sizeof big);
    want_err(c, "ERR value of 1100 bytes is over max-value", "SET k %b", big, sizeof big);
    want_err(c, "ERR key of 17 bytes is over max-key", "GET 0123456789abcdefg");
    want_err(c, "ERR mget of 5 keys is over max-mget-keys", "MGET a b c d e");
    want_err(c, "ERR exists of 5 keys is over max-mget-keys", "EXISTS a b c d e");
    want_status(c, "OK", "SET k %b", big, (size_t)1000);
    want_status(c, "PONG", "PING");

    /* A command larger than the input buffer (--max-frame + 64 KiB): 3,000
     * arguments of 500 bytes. The connection is closed (told why, if the
     * client still reads); the node counts it in bad_frames. */
    static char huge[3000 * 508 + 16];
    size_t at = (size_t)snprintf(huge, sizeof huge, "*3000\r\n");
    for (int i = 0; i < 3000; i++) {
        at += (size_t)snprintf(huge + at, sizeof huge - at, "$500\r\n");
        memset(huge + at, 'a', 500);
        at += 500;
        memcpy(huge + at, "\r\n", 2);
        at += 2;
    }
    int fd = pc_h_connect(n.resp_port, 10000);
    assert_true(fd >= 0);
    size_t sent = 0;
    while (sent < at) {
        ssize_t k = send(fd, huge + sent, at - sent, MSG_NOSIGNAL);
        if (k <= 0)
            break; /* closed under us: that is the point */
        sent += (size_t)k;
    }
    char buf[256];
    size_t got = 0;
    assert_int_equal(pc_h_wait_closed(fd, (uint8_t *)buf, sizeof buf - 1, &got), 1);
    buf[got] = 0;
    if (got > 0 && strncmp(buf, "-ERR Protocol error: command over max-frame", 43) != 0)
        fail_msg("an oversized command was answered \"%s\"", buf);
    close(fd);
    redisReply *r = cmd(c, "INFO peercache");
    assert_non_null(strstr(r->str, "\r\nbad_frames:1\r\n"));
    freeReplyObject(r);
    redisFree(c);
    node_down(&n, 1);
}

/* Three nodes: every key through any node's Redis port. */
typedef struct members_arg {
    node_t *n;
    int count;
} members_arg_t;

static int all_see_three(void *p)
{
    members_arg_t *a = p;
    for (int i = 0; i < a->count; i++) {
        redisContext *c = resp_connect(&a->n[i]);
        redisReply *r = redisCommand(c, "INFO peercache");
        int ok = r != NULL && r->type == REDIS_REPLY_STRING &&
                 strstr(r->str, "\r\ncluster_members_alive:3\r\n") != NULL &&
                 strstr(r->str, "\r\ncluster_members_suspect:0\r\n") != NULL;
        freeReplyObject(r);
        redisFree(c);
        if (!ok)
            return 0;
    }
    return 1;
}

static void test_cluster_any_node(void **state)
{
    (void)state;
    node_t n[3];
    node_up(&n[0], NULL, NULL, NULL);
    node_up(&n[1], &n[0].redis, n[0].node.addr, NULL);
    node_up(&n[2], &n[0].redis, n[0].node.addr, NULL);
    members_arg_t a = {n, 3};
    if (!pc_h_poll(all_see_three, &a, 20000))
        fail_msg("the three nodes did not all see three members alive within 20 s");
    redisContext *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = resp_connect(&n[i]);
    /* Writes through node i, reads through the two others and Redis:
     * most keys are owned by another node than the one asked. */
    for (int k = 0; k < 60; k++) {
        int i = k % 3;
        want_status(c[i], "OK", "SET ck:%d cv:%d", k, k);
    }
    for (int k = 0; k < 60; k++) {
        char want[32], key[32];
        snprintf(want, sizeof want, "cv:%d", k);
        snprintf(key, sizeof key, "ck:%d", k);
        want_str(c[(k + 1) % 3], want, "GET %s", key);
        want_str(c[(k + 2) % 3], want, "GET %s", key);
        want_direct(&n[0], key, want);
    }
    redisReply *r = cmd(c[1], "MGET ck:0 ck:1 ck:2 ck:3 nothing");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 5);
    assert_string_equal(r->element[3]->str, "cv:3");
    assert_int_equal(r->element[4]->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    want_int(c[2], 3, "DEL ck:0 ck:1 ck:2");
    want_str(c[0], NULL, "GET ck:1");
    want_direct(&n[0], "ck:1", NULL);
    for (int i = 0; i < 3; i++)
        redisFree(c[i]);
    node_down(&n[2], 0);
    node_down(&n[1], 0);
    node_down(&n[0], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),       cmocka_unit_test(test_cross_protocol),
        cmocka_unit_test(test_pipeline_order), cmocka_unit_test(test_pipeline_reads_own_writes),
        cmocka_unit_test(test_resp3_and_raw),
        cmocka_unit_test(test_auth),           cmocka_unit_test(test_limits),
        cmocka_unit_test(test_cluster_any_node),
    };
    return pc_h_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
