/*
 * test_node.c -- one peercached in front of one real redis-server, used
 * through libpeercache, the CLI and raw sockets.
 */
#include <errno.h>
#include <pthread.h>
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

#include "pc_client.h"
#include "pc_harness.h"
#include "pc_h_assert.h"
#include "pc_proto.h"

/* ---- shared fixtures ------------------------------------------------- */

typedef struct env {
    pc_h_proc_t redis;
    pc_h_proc_t node;
    redisContext *rc;
    pc_client_t *cl;
} env_t;

static pc_client_t *client_for(const pc_h_proc_t *node, int timeout_ms)
{
    pc_client_options_t o = {.nodes = node->addr, .timeout_ms = timeout_ms};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    return c;
}

/* Starts redis + a node with extra flags (NULL-terminated). */
static int env_up(env_t *e, const char *first, ...)
{
    memset(e, 0, sizeof *e);
    if (pc_h_redis_start(&e->redis, 0) != 0)
        return -1;
    const char *args[32] = {"--redis", e->redis.addr};
    int n = 2;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 31; a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    if (pc_h_node_start(&e->node, args) != 0)
        return -1;
    e->rc = pc_h_redis_connect(&e->redis);
    if (e->rc == NULL)
        return -1;
    pc_client_options_t o = {.nodes = e->node.addr, .timeout_ms = 3000};
    return pc_client_new(&o, &e->cl);
}

static void env_down(env_t *e)
{
    pc_client_free(&e->cl);
    if (e->rc)
        redisFree(e->rc);
    if (e->node.pid > 0) {
        /* A clean SIGTERM exit is part of every test. */
        int st = pc_h_stop(&e->node, SIGTERM, 10000);
        assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    if (e->redis.pid > 0)
        pc_h_stop(&e->redis, SIGKILL, 5000);
}

static int group_setup(void **state)
{
    static env_t e;
    /* A generous Redis deadline: these tests check behaviour, not speed,
     * and CI machines are shared. The timeout tests set their own. */
    if (env_up(&e, "--memory", "16mb", "--redis-timeout", "10000", NULL) != 0)
        return -1;
    *state = &e;
    return 0;
}

static int group_teardown(void **state)
{
    env_down(*state);
    return 0;
}

static int set_str(pc_client_t *c, const char *k, const char *v, const pc_set_options_t *o,
                   uint64_t *ver)
{
    return pc_client_set(c, k, strlen(k), v, strlen(v), o, ver);
}

/* Checks each raw response's id (1, 2, ...) and status against want[]. */
static int check_status(void *arg, int i, const pc_response_t *r)
{
    const uint32_t *want = arg;
    return r->id != (uint64_t)i + 1 || r->status != want[i];
}

static void expect_statuses(int fd, int n, const uint32_t *want)
{
    assert_int_equal(pc_h_read_responses(fd, n, check_status, (void *)want), n);
}

/* ---- basic paths ------------------------------------------------------ */

static void test_write_through_visible_in_redis(void **state)
{
    env_t *e = *state;
    uint64_t ver = 0;
    assert_int_equal(set_str(e->cl, "wt:1", "hello", NULL, &ver), 0);
    assert_true(ver > 0);
    pc_h_assert_redis_string(e->rc, "wt:1", "hello");

    pc_value_t v;
    assert_int_equal(pc_client_get(e->cl, "wt:1", 4, &v), 0);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "hello", 5);
    assert_int_equal(v.version, ver);
    assert_int_equal(v.ttl_ms, -1);
    pc_value_free(&v);

    /* binary values survive both hops */
    uint8_t bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (uint8_t)i;
    assert_int_equal(pc_client_set(e->cl, "wt:bin", 6, bin, sizeof bin, NULL, NULL), 0);
    redisReply *r = pc_h_rcmd(e->rc, "GET wt:bin");
    assert_int_equal(r->len, 256);
    assert_memory_equal(r->str, bin, 256);
    freeReplyObject(r);

    /* a value of the largest size is cached too: read back as a hit */
    size_t big = 1024 * 1024;
    char *val = malloc(big);
    memset(val, 'b', big);
    assert_int_equal(pc_client_set(e->cl, "wt:big", 6, val, big, NULL, NULL), 0);
    int64_t hits = pc_h_stat(e->cl, "hits"), reads = pc_h_stat(e->cl, "backend_reads");
    assert_int_equal(pc_client_get(e->cl, "wt:big", 6, &v), 0);
    assert_int_equal(v.len, big);
    assert_memory_equal(v.data, val, big);
    pc_value_free(&v);
    free(val);
    assert_int_equal(pc_h_stat(e->cl, "hits"), hits + 1);
    assert_int_equal(pc_h_stat(e->cl, "backend_reads"), reads);
}

static void test_read_through_of_redis_key(void **state)
{
    env_t *e = *state;
    freeReplyObject(pc_h_rcmd(e->rc, "SET rt:1 %s", "from-redis"));
    int64_t reads = pc_h_stat(e->cl, "backend_reads");
    int64_t misses = pc_h_stat(e->cl, "misses"), hits = pc_h_stat(e->cl, "hits");

    pc_value_t v;
    assert_int_equal(pc_client_get(e->cl, "rt:1", 4, &v), 0);
    assert_string_equal((char *)v.data, "from-redis");
    pc_value_free(&v);
    assert_int_equal(pc_h_stat(e->cl, "backend_reads"), reads + 1);

    /* second read is a hit: no new backend read; counters exact */
    assert_int_equal(pc_client_get(e->cl, "rt:1", 4, &v), 0);
    pc_value_free(&v);
    assert_int_equal(pc_h_stat(e->cl, "backend_reads"), reads + 1);
    assert_int_equal(pc_h_stat(e->cl, "misses"), misses + 1);
    assert_int_equal(pc_h_stat(e->cl, "hits"), hits + 1);

    /* a key in neither place */
    assert_int_equal(pc_client_get(e->cl, "rt:none", 7, &v), PC_ENOTFOUND);

    /* a TTL set in Redis is carried into the cache */
    freeReplyObject(pc_h_rcmd(e->rc, "SET rt:ttl x PX 60000"));
    assert_int_equal(pc_client_get(e->cl, "rt:ttl", 6, &v), 0);
    assert_true(v.ttl_ms > 50000 && v.ttl_ms <= 60000);
    pc_value_free(&v);
}

struct expiry_arg {
    env_t *e;
    const char *key;
};

static int both_expired(void *arg)
{
    struct expiry_arg *a = arg;
    pc_value_t v;
    int rc = pc_client_get(a->e->cl, a->key, strlen(a->key), &v);
    if (rc == 0)
        pc_value_free(&v);
    redisReply *r = pc_h_rcmd(a->e->rc, "EXISTS %s", a->key);
    int gone = r->integer == 0;
    freeReplyObject(r);
    return rc == PC_ENOTFOUND && gone;
}

static void test_ttl_agrees_with_redis(void **state)
{
    env_t *e = *state;
    /* The TTL is carried to Redis and into the cache: read back on a key
     * that cannot expire while the test reads it (a short one could, on
     * a loaded machine, before the GET)... */
    pc_set_options_t o = {.ttl_ms = 60000};
    assert_int_equal(set_str(e->cl, "ttl:1", "long", &o, NULL), 0);
    redisReply *r = pc_h_rcmd(e->rc, "PTTL ttl:1");
    assert_true(r->integer > 0 && r->integer <= 60000);
    freeReplyObject(r);

    pc_value_t v;
    assert_int_equal(pc_client_get(e->cl, "ttl:1", 5, &v), 0);
    assert_true(v.ttl_ms >= 0 && v.ttl_ms <= 60000);
    pc_value_free(&v);

    /* ...and a short one, cached by its SET, expires in both places (the
     * poll waits for that, however late it comes) */
    pc_set_options_t so = {.ttl_ms = 300};
    assert_int_equal(set_str(e->cl, "ttl:short", "short", &so, NULL), 0);
    struct expiry_arg a = {e, "ttl:short"};
    assert_true(pc_h_poll(both_expired, &a, 10000));

    /* TOUCH moves the expiry in both places; 0 removes it */
    assert_int_equal(set_str(e->cl, "ttl:2", "x", &o, NULL), 0);
    assert_int_equal(pc_client_touch(e->cl, "ttl:2", 5, 0), 0);
    r = pc_h_rcmd(e->rc, "PTTL ttl:2");
    assert_int_equal(r->integer, -1);
    freeReplyObject(r);
    assert_int_equal(pc_client_touch(e->cl, "ttl:2", 5, 300000), 0);
    r = pc_h_rcmd(e->rc, "PTTL ttl:2");
    assert_true(r->integer > 290000);
    freeReplyObject(r);
    assert_int_equal(pc_client_get(e->cl, "ttl:2", 5, &v), 0);
    assert_true(v.ttl_ms > 290000);
    pc_value_free(&v);
    assert_int_equal(pc_client_touch(e->cl, "ttl:none", 8, 1000), PC_ENOTFOUND);
}

static void test_delete(void **state)
{
    env_t *e = *state;
    assert_int_equal(set_str(e->cl, "del:1", "x", NULL, NULL), 0);
    assert_int_equal(pc_client_del(e->cl, "del:1", 5), 0);
    pc_h_assert_redis_string(e->rc, "del:1", NULL);
    pc_value_t v;
    assert_int_equal(pc_client_get(e->cl, "del:1", 5, &v), PC_ENOTFOUND);
    assert_int_equal(pc_client_del(e->cl, "del:1", 5), PC_ENOTFOUND);

    /* a key deleted behind the node's back through Redis, then deleted
     * through the node: the cached copy goes too */
    assert_int_equal(set_str(e->cl, "del:2", "x", NULL, NULL), 0);
    freeReplyObject(pc_h_rcmd(e->rc, "DEL del:2"));
    assert_int_equal(pc_client_del(e->cl, "del:2", 5), PC_ENOTFOUND);
    assert_int_equal(pc_client_get(e->cl, "del:2", 5, &v), PC_ENOTFOUND);
}

static void test_conditions_nx_xx_cas(void **state)
{
    env_t *e = *state;
    pc_set_options_t nx = {.cond = PC_COND_NX}, xx = {.cond = PC_COND_XX};
    uint64_t v1 = 0, v2 = 0;

    assert_int_equal(set_str(e->cl, "c:1", "a", &nx, &v1), 0);
    assert_int_equal(set_str(e->cl, "c:1", "b", &nx, NULL), PC_EEXISTS);
    pc_h_assert_redis_string(e->rc, "c:1", "a");

    assert_int_equal(set_str(e->cl, "c:none", "b", &xx, NULL), PC_ENOTSTORED);
    pc_h_assert_redis_string(e->rc, "c:none", NULL);
    assert_int_equal(set_str(e->cl, "c:1", "b", &xx, &v2), 0);
    assert_true(v2 > v1);
    pc_h_assert_redis_string(e->rc, "c:1", "b");

    pc_set_options_t cas = {.cas = v1};
    assert_int_equal(set_str(e->cl, "c:1", "stale", &cas, NULL), PC_EEXISTS);
    pc_h_assert_redis_string(e->rc, "c:1", "b");
    cas.cas = v2;
    uint64_t v3 = 0;
    assert_int_equal(set_str(e->cl, "c:1", "c", &cas, &v3), 0);
    assert_true(v3 > v2);
    pc_h_assert_redis_string(e->rc, "c:1", "c");
    /* the same version cannot win twice */
    assert_int_equal(set_str(e->cl, "c:1", "d", &cas, NULL), PC_EEXISTS);

    /* CAS on a key the node holds no copy of: nothing to vouch for */
    pc_set_options_t cas_missing = {.cas = v3};
    assert_int_equal(set_str(e->cl, "c:never", "x", &cas_missing, NULL), PC_ENOTFOUND);
    pc_h_assert_redis_string(e->rc, "c:never", NULL);

    /* NX sees Redis, not only the cache: a key only in Redis exists */
    freeReplyObject(pc_h_rcmd(e->rc, "SET c:redisonly r"));
    assert_int_equal(set_str(e->cl, "c:redisonly", "n", &nx, NULL), PC_EEXISTS);
}

/* Two compare-and-sets with the same expected version, pipelined on one
 * connection so the second arrives while the first is still at Redis:
 * exactly the first wins. */
static void test_cas_race_one_winner(void **state)
{
    env_t *e = *state;
    uint64_t v0 = 0;
    assert_int_equal(set_str(e->cl, "race", "base", NULL, &v0), 0);
    int fd = pc_h_connect(e->node.port, 5000);
    pc_buf_t out;
    pc_buf_init(&out, 0);
    for (int i = 0; i < 2; i++) {
        pc_request_t set = {.op = PC_OP_SET, .id = (uint64_t)i + 1,
                            .key = {(const uint8_t *)"race", 4},
                            .value = {(const uint8_t *)(i ? "second" : "first!"), 6},
                            .cas = v0};
        pc_proto_encode_request(&out, &set);
    }
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    const uint32_t want[] = {PC_ST_OK, PC_ST_EXISTS};
    expect_statuses(fd, 2, want);
    close(fd);
    pc_h_assert_redis_string(e->rc, "race", "first!");
}

static void test_mget(void **state)
{
    env_t *e = *state;
    assert_int_equal(set_str(e->cl, "m:1", "one", NULL, NULL), 0);
    freeReplyObject(pc_h_rcmd(e->rc, "SET m:2 two"));
    const void *keys[] = {"m:1", "m:2", "m:none", "m:1"};
    size_t lens[] = {3, 3, 6, 3};
    pc_mget_item_t *items = NULL;
    assert_int_equal(pc_client_mget(e->cl, 4, keys, lens, &items), 0);
    assert_int_equal(items[0].status, 0);
    assert_string_equal((char *)items[0].value.data, "one");
    assert_int_equal(items[1].status, 0);
    assert_string_equal((char *)items[1].value.data, "two");
    assert_int_equal(items[2].status, PC_ENOTFOUND);
    assert_int_equal(items[3].status, 0);
    pc_mget_free(items, 4);
}

static void test_limits_answered_not_fatal(void **state)
{
    env_t *e = *state;
    /* key over max-key: TOO_LARGE, and the connection keeps working */
    size_t big = 70000;
    char *k = malloc(big);
    memset(k, 'k', big);
    assert_int_equal(pc_client_set(e->cl, k, big, "v", 1, NULL, NULL), PC_ETOOBIG);
    free(k);
    assert_int_equal(pc_client_ping(e->cl), 0);
    /* an empty key is refused by the library before it is sent */
    assert_int_equal(pc_client_set(e->cl, "", 0, "v", 1, NULL, NULL), PC_EINVAL);

    /* ... and by the node, which answers BAD_REQUEST and keeps the
     * connection: an empty key, then an unknown op, then a PING */
    int fd = pc_h_connect(e->node.port, 5000);
    pc_buf_t out;
    pc_buf_init(&out, 0);
    pc_request_t ping = {.op = PC_OP_PING, .id = 3};
    /* hand-made, since the encoder refuses an empty key: [3, 1, bin ""] */
    const uint8_t empty_key[] = {0, 0, 0, 5, 0x93, 0x03, 0x01, 0xc4, 0x00};
    pc_buf_append(&out, empty_key, sizeof empty_key);
    const uint8_t unknown_op[] = {0, 0, 0, 3, 0x92, 0x63, 0x02}; /* [99, 2] */
    pc_buf_append(&out, unknown_op, sizeof unknown_op);
    pc_proto_encode_request(&out, &ping);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    const uint32_t want[] = {PC_ST_BAD_REQUEST, PC_ST_BAD_REQUEST, PC_ST_OK};
    expect_statuses(fd, 3, want);
    close(fd);
}

/* ---- many clients, pipelined ----------------------------------------- */

typedef struct pipe_arg {
    int port;
    int idx;
    int ok;
    char err[128];
} pipe_arg_t;

#define PIPE_DEPTH 40

/* Checks answer i of a pipeline_client burst (SET, GET, SET, GET...). */
static int check_pipelined(void *p, int i, const pc_response_t *r)
{
    pipe_arg_t *a = p;
    if (r->id != (uint64_t)i + 1 || r->status != PC_ST_OK) {
        snprintf(a->err, sizeof a->err, "answer %d: id %llu status %u", i + 1,
                 (unsigned long long)r->id, r->status);
        return 1;
    }
    char want[32];
    snprintf(want, sizeof want, "value-%d-%d", a->idx, i / 2);
    if (r->op == PC_OP_GET &&
        (r->entry.value.len != strlen(want) || memcmp(r->entry.value.ptr, want, strlen(want)))) {
        snprintf(a->err, sizeof a->err, "answer %d: wrong value", i + 1);
        return 1;
    }
    return 0;
}

/* One raw connection: PIPE_DEPTH SETs and GETs of its own keys sent in one
 * burst, then every answer read and checked against its request. Runs on
 * its own thread, so it reports through a->err instead of asserting. */
static void *pipeline_client(void *p)
{
    pipe_arg_t *a = p;
    int fd = pc_h_connect(a->port, 10000);
    if (fd < 0) {
        snprintf(a->err, sizeof a->err, "connect failed");
        return NULL;
    }
    pc_buf_t out;
    pc_buf_init(&out, 0);
    uint64_t id = 1;
    for (int i = 0; i < PIPE_DEPTH; i++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "pipe:%d:%d", a->idx, i);
        snprintf(val, sizeof val, "value-%d-%d", a->idx, i);
        pc_request_t set = {.op = PC_OP_SET, .id = id++,
                            .key = {(const uint8_t *)key, (uint32_t)strlen(key)},
                            .value = {(const uint8_t *)val, (uint32_t)strlen(val)}};
        pc_request_t get = {.op = PC_OP_GET, .id = id++, .key = set.key};
        pc_proto_encode_request(&out, &set);
        pc_proto_encode_request(&out, &get);
    }
    if (pc_h_send_all(fd, &out) != 0)
        snprintf(a->err, sizeof a->err, "send failed");
    else
        a->ok = pc_h_read_responses(fd, 2 * PIPE_DEPTH, check_pipelined, a) == 2 * PIPE_DEPTH;
    if (!a->ok && a->err[0] == '\0')
        snprintf(a->err, sizeof a->err, "connection ended early");
    pc_buf_free(&out);
    close(fd);
    return NULL;
}

static void test_200_pipelining_clients(void **state)
{
    env_t *e = *state;
    enum { N = 200 };
    pthread_t th[N];
    pipe_arg_t args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (pipe_arg_t){.port = e->node.port, .idx = i};
        assert_int_equal(pthread_create(&th[i], NULL, pipeline_client, &args[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (args[i].ok)
            ok++;
        else
            fprintf(stderr, "client %d: %s\n", i, args[i].err);
    }
    assert_int_equal(ok, N);
    /* and every write is in Redis */
    pc_h_assert_redis_string(e->rc, "pipe:0:0", "value-0-0");
    pc_h_assert_redis_string(e->rc, "pipe:199:39", "value-199-39");
}

/* ---- coalescing ----------------------------------------------------------- */

static int check_hot_value(void *arg, int i, const pc_response_t *r)
{
    return r->id != (uint64_t)i + 1 || r->status != PC_ST_OK || r->entry.value.len != 8 ||
           memcmp(r->entry.value.ptr, "hotvalue", 8) != 0;
}

static void test_misses_coalesce_into_one_redis_read(void **state)
{
    (void)state;
    env_t env;
    env_t *e = &env;
    assert_int_equal(env_up(e, "--redis-timeout", "30000", NULL), 0);
    enum { CONNS = 10, PER = 5 };
    freeReplyObject(pc_h_rcmd(e->rc, "SET co:hot hotvalue"));
    int64_t reads0 = pc_h_stat(e->cl, "backend_reads");
    int64_t coal0 = pc_h_stat(e->cl, "backend_reads_coalesced");

    /* Hold Redis still so the first read stays in flight until all the
     * others have arrived and joined it -- however long that takes, so
     * not a CLIENT PAUSE, which ends by itself (1.5 s was once less than
     * a loaded machine took to take 50 GETs in). SIGSTOP holds it until
     * the count is reached; the node's redis-timeout (30 s here) is
     * longer than the wait. */
    assert_int_equal(pc_h_stop_process(e->redis.pid, 5000), 0); /* every thread stopped */
    int fds[CONNS];
    pc_buf_t out;
    pc_buf_init(&out, 0);
    for (int i = 0; i < CONNS; i++) {
        fds[i] = pc_h_connect(e->node.port, 5000);
        assert_true(fds[i] >= 0);
        pc_buf_reset(&out);
        for (int j = 0; j < PER; j++) {
            pc_request_t get = {.op = PC_OP_GET, .id = (uint64_t)j + 1,
                                .key = {(const uint8_t *)"co:hot", 6}};
            pc_proto_encode_request(&out, &get);
        }
        assert_int_equal(pc_h_send_all(fds[i], &out), 0);
    }
    pc_h_stat_arg_t ca = {e->cl, "backend_reads_coalesced", coal0 + CONNS * PER - 1};
    int joined = pc_h_poll(pc_h_stat_at_least, &ca, 20000);
    kill(e->redis.pid, SIGCONT);
    assert_true(joined);

    for (int i = 0; i < CONNS; i++) {
        assert_int_equal(pc_h_read_responses(fds[i], PER, check_hot_value, NULL), PER);
        close(fds[i]);
    }
    pc_buf_free(&out);
    assert_int_equal(pc_h_stat(e->cl, "backend_reads"), reads0 + 1);
    env_down(e);
}

/* ---- bad input ----------------------------------------------------------- */

struct conn_error {
    uint32_t status;
};

static int check_conn_error(void *arg, int i, const pc_response_t *r)
{
    const struct conn_error *want = arg;
    return i > 0 || r->op != 0 || r->id != 0 || r->status != want->status || r->message.len == 0;
}

static void expect_error_then_close(int port, const void *bytes, size_t n, uint32_t status)
{
    int fd = pc_h_connect(port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(send(fd, bytes, n, 0), (ssize_t)n);
    uint8_t buf[512];
    size_t got = 0;
    assert_int_equal(pc_h_wait_closed(fd, buf, sizeof buf, &got), 1);
    close(fd);
    /* the node says why before it hangs up: one connection-level frame */
    struct conn_error want = {status};
    assert_int_equal(pc_h_decode_responses(buf, got < sizeof buf ? got : sizeof buf,
                                           check_conn_error, &want),
                     1);
}

static void test_bad_frames_close_only_that_connection(void **state)
{
    env_t *e = *state;
    /* a bystander with a request in between */
    pc_client_t *other = client_for(&e->node, 3000);
    assert_int_equal(pc_client_ping(other), 0);

    const uint8_t huge_len[] = {0xff, 0xff, 0xff, 0xff, 0x90};
    expect_error_then_close(e->node.port, huge_len, sizeof huge_len, PC_ST_TOO_LARGE);
    assert_int_equal(pc_client_ping(other), 0);

    /* 0xc1 is the one byte msgpack never uses */
    const uint8_t garbage[] = {0, 0, 0, 3, 0x92, 0xc1, 0xc1};
    expect_error_then_close(e->node.port, garbage, sizeof garbage, PC_ST_BAD_REQUEST);

    /* ...which is why a body that starts with it is a sealed peer frame
     * (SECURITY.md): one that does not open gets no answer at all */
    int64_t rejected = pc_h_stat(other, "peer_rejected");
    int sfd = pc_h_connect(e->node.port, 5000);
    const uint8_t fake_sealed[] = {0, 0, 0, 3, 0xc1, 0xc1, 0xc1};
    assert_int_equal(send(sfd, fake_sealed, sizeof fake_sealed, 0), (ssize_t)sizeof fake_sealed);
    size_t got = 1;
    assert_int_equal(pc_h_wait_closed(sfd, NULL, 0, &got), 1);
    assert_int_equal(got, 0);
    close(sfd);
    assert_int_equal(pc_h_stat(other, "peer_rejected"), rejected + 1);

    /* array header claiming 2^28 elements in a 6-byte frame */
    const uint8_t bomb[] = {0, 0, 0, 5, 0xdd, 0x10, 0x00, 0x00, 0x00};
    expect_error_then_close(e->node.port, bomb, sizeof bomb, PC_ST_BAD_REQUEST);

    const uint8_t zero[] = {0, 0, 0, 0};
    expect_error_then_close(e->node.port, zero, sizeof zero, PC_ST_BAD_REQUEST);

    /* a truncated frame followed by the client hanging up: no answer, and
     * the node stays healthy */
    int fd = pc_h_connect(e->node.port, 2000);
    const uint8_t half[] = {0, 0, 0, 50, 0x93, 0x02};
    assert_int_equal(send(fd, half, sizeof half, 0), (ssize_t)sizeof half);
    close(fd);

    assert_int_equal(pc_client_ping(other), 0);
    assert_int_equal(pc_client_ping(e->cl), 0);
    assert_true(pc_h_stat(other, "bad_frames") >= 4);
    pc_client_free(&other);
}

/*
 * Key, value and MGET key count over the node's limits, on the wire (the
 * library would refuse some before sending): each is answered TOO_LARGE,
 * and the connection keeps working. At the limit they pass.
 */
static void test_request_limits_on_the_wire(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *args[] = {"--redis", "none", "--max-key", "100", "--max-value", "1000",
                          "--max-mget-keys", "8", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    uint8_t key[101], val[1001];
    memset(key, 'k', sizeof key);
    memset(val, 'v', sizeof val);
    pc_bytes_t keys[9];
    for (int i = 0; i < 9; i++)
        keys[i] = (pc_bytes_t){key, (uint32_t)(10 + i)};
    pc_request_t rq[] = {
        {.op = PC_OP_SET, .key = {key, 101}, .value = {val, 1}},   /* key over */
        {.op = PC_OP_SET, .key = {key, 100}, .value = {val, 1}},   /* at the limit */
        {.op = PC_OP_SET, .key = {key, 10}, .value = {val, 1001}}, /* value over */
        {.op = PC_OP_SET, .key = {key, 10}, .value = {val, 1000}}, /* at the limit */
        {.op = PC_OP_GET, .key = {key, 101}},                      /* key over */
        {.op = PC_OP_MGET, .nkeys = 9, .keys = keys},              /* 9 keys: over */
        {.op = PC_OP_MGET, .nkeys = 8, .keys = keys},              /* 8: fine */
        {.op = PC_OP_PING},
    };
    const uint32_t want[] = {PC_ST_TOO_LARGE, PC_ST_OK, PC_ST_TOO_LARGE, PC_ST_OK,
                             PC_ST_TOO_LARGE, PC_ST_TOO_LARGE, PC_ST_OK, PC_ST_OK};
    pc_buf_t out;
    pc_buf_init(&out, 0);
    for (size_t i = 0; i < sizeof rq / sizeof rq[0]; i++) {
        rq[i].id = i + 1;
        assert_int_equal(pc_proto_encode_request(&out, &rq[i]), 0);
    }
    int fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    expect_statuses(fd, (int)(sizeof want / sizeof want[0]), want);
    close(fd);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Answers in request order, ids 1.. n, all NOT_FOUND. */
static int check_not_found(void *arg, int i, const pc_response_t *r)
{
    (void)arg;
    return r->id != (uint64_t)i + 1 || r->status != PC_ST_NOT_FOUND;
}

/*
 * --max-inflight: with Redis stalled, a pipeline of misses on distinct
 * keys stops being read after max-inflight of them: exactly that many
 * Redis reads go out, however many requests wait in the socket. Once
 * Redis answers, the rest follows, in order.
 */
static void test_max_inflight_pauses_reading(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "--redis-timeout", "10000", "--max-inflight", "4", NULL), 0);
    enum { N = 50 };
    pc_buf_t out;
    pc_buf_init(&out, 0);
    char k[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(k[i], sizeof k[i], "inflight:%d", i);
        pc_request_t get = {.op = PC_OP_GET, .id = (uint64_t)i + 1,
                            .key = {(const uint8_t *)k[i], (uint32_t)strlen(k[i])}};
        assert_int_equal(pc_proto_encode_request(&out, &get), 0);
    }
    int64_t reads0 = pc_h_stat(e.cl, "backend_reads");
    int fd = pc_h_connect(e.node.port, 10000);
    assert_true(fd >= 0);
    assert_int_equal(pc_h_stop_process(e.redis.pid, 5000), 0); /* every thread stopped */
    assert_int_equal(pc_h_send_all(fd, &out), 0); /* ~1 KiB: one read takes all */
    pc_buf_free(&out);
    pc_h_stat_arg_t four = {e.cl, "backend_reads", reads0 + 4};
    assert_true(pc_h_poll(pc_h_stat_at_least, &four, 5000));
    /* more loop turns on the node: still 4 */
    for (int i = 0; i < 20; i++)
        assert_int_equal(pc_client_ping(e.cl), 0);
    assert_int_equal(pc_h_stat(e.cl, "backend_reads"), reads0 + 4);
    kill(e.redis.pid, SIGCONT);
    assert_int_equal(pc_h_read_responses(fd, N, check_not_found, NULL), N);
    assert_int_equal(pc_h_stat(e.cl, "backend_reads"), reads0 + N);
    close(fd);
    env_down(&e);
}

/* ---- the CLI ------------------------------------------------------------- */

static void test_cli(void **state)
{
    env_t *e = *state;
    const char *cli = getenv("PC_CLI");
    assert_non_null(cli);
    char cmd[1024], out[4096];

    snprintf(cmd, sizeof cmd, "%s --nodes %s set cli:1 hello-cli --ttl 60000", cli, e->node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s --nodes %s get cli:1", cli, e->node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "hello-cli"));
    pc_h_assert_redis_string(e->rc, "cli:1", "hello-cli");

    snprintf(cmd, sizeof cmd, "printf 'from-stdin' | %s --nodes %s set cli:2", cli, e->node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    pc_h_assert_redis_string(e->rc, "cli:2", "from-stdin");

    snprintf(cmd, sizeof cmd, "%s --nodes %s get cli:none", cli, e->node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 1);
    snprintf(cmd, sizeof cmd, "%s --nodes %s set cli:1 x --nx", cli, e->node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 1);
    snprintf(cmd, sizeof cmd, "%s --nodes %s del cli:1", cli, e->node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    pc_h_assert_redis_string(e->rc, "cli:1", NULL);
    snprintf(cmd, sizeof cmd, "%s --nodes %s mget cli:2 cli:1", cli, e->node.addr);
    pc_h_run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "from-stdin"));
    snprintf(cmd, sizeof cmd, "%s --nodes %s stats --json", cli, e->node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"hits\""));
    snprintf(cmd, sizeof cmd, "%s --nodes %s ping", cli, e->node.addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    /* nobody listening: exit status 2 */
    snprintf(cmd, sizeof cmd, "%s --nodes 127.0.0.1:%d --timeout 500 ping 2>/dev/null", cli,
             pc_h_free_port());
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 2);
}

/* ---- Redis failures (own redis and node) --------------------------------- */

static void test_redis_down_and_back(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "--redis-timeout", "500", NULL), 0);
    enum { N = 50 };
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "down:%d", i);
        assert_int_equal(set_str(e.cl, k, k, NULL, NULL), 0);
    }
    int redis_port = e.redis.port;
    redisFree(e.rc);
    e.rc = NULL;
    assert_true(pc_h_stop(&e.redis, SIGKILL, 5000) >= 0);
    pc_h_stat_arg_t ba = {e.cl, "backend_up", 0};
    assert_true(pc_h_poll(pc_h_stat_is, &ba, 5000));

    /* cached keys are still served */
    for (int i = 0; i < N; i++) {
        pc_value_t v;
        snprintf(k, sizeof k, "down:%d", i);
        assert_int_equal(pc_client_get(e.cl, k, strlen(k), &v), 0);
        assert_string_equal((char *)v.data, k);
        pc_value_free(&v);
    }
    /* misses and writes fail fast, and no write is acknowledged. Fast:
     * none waits for the 500 ms Redis timeout -- each is refused at once
     * by a loop that knows Redis is gone (backend_rejected), or fails on
     * the broken connection of one that has not read the news yet
     * (backend_errors); none times out. Counted, not timed: a loaded
     * machine can make 22 fast failures take longer than any bound. */
    int64_t timeouts0 = pc_h_stat(e.cl, "backend_timeouts");
    int64_t failed0 = pc_h_stat(e.cl, "backend_rejected") + pc_h_stat(e.cl, "backend_errors");
    uint64_t t0 = pc_h_now_ms();
    pc_value_t v;
    assert_int_equal(pc_client_get(e.cl, "down:miss", 9, &v), PC_EBACKEND);
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "lost:%d", i);
        assert_int_equal(set_str(e.cl, k, "x", NULL, NULL), PC_EBACKEND);
    }
    assert_int_equal(pc_client_del(e.cl, "down:0", 6), PC_EBACKEND);
    fprintf(stderr, "Redis down: 22 requests failed in %llu ms\n",
            (unsigned long long)(pc_h_now_ms() - t0));
    assert_int_equal(pc_h_stat(e.cl, "backend_timeouts"), timeouts0);
    assert_true(pc_h_stat(e.cl, "backend_rejected") + pc_h_stat(e.cl, "backend_errors") >=
                failed0 + 22);
    /* a refused delete did not drop the cached copy's meaning: it is still
     * served (Redis still has it too) */
    assert_int_equal(pc_client_get(e.cl, "down:0", 6, &v), 0);
    pc_value_free(&v);

    /* Redis comes back (same port, empty: it had no persistence) */
    assert_int_equal(pc_h_redis_start(&e.redis, redis_port), 0);
    ba.want = 1;
    assert_true(pc_h_poll(pc_h_stat_is, &ba, 10000));
    e.rc = pc_h_redis_connect(&e.redis);
    assert_non_null(e.rc);
    assert_int_equal(set_str(e.cl, "back:1", "again", NULL, NULL), 0);
    pc_h_assert_redis_string(e.rc, "back:1", "again");
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "lost:%d", i);
        pc_h_assert_redis_string(e.rc, k, NULL);
    }
    env_down(&e);
}

/* Local ports of the ESTABLISHED TCP connections to 127.0.0.1:port, from
 * /proc/net/tcp (the kernel's table: it has them even while the process
 * at the other end is stopped). Returns how many (at most cap). */
static size_t conns_to(int port, unsigned *local, size_t cap)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    assert_non_null(f);
    char line[512];
    size_t n = 0;
    if (fgets(line, sizeof line, f) == NULL) { /* the header */
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned lip, lport, rip, rport, st;
        if (sscanf(line, " %*u: %8X:%4X %8X:%4X %2X", &lip, &lport, &rip, &rport, &st) == 5 &&
            rport == (unsigned)port && st == 0x01 && n < cap)
            local[n++] = lport;
    }
    fclose(f);
    return n;
}

typedef struct newconn_arg {
    int port;
    const unsigned *old;
    size_t nold;
} newconn_arg_t;

/* 1 once some connection to the port is not one of those in old[]. */
static int new_conn_to(void *p)
{
    newconn_arg_t *a = p;
    unsigned now[64];
    size_t n = conns_to(a->port, now, 64);
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < a->nold && a->old[j] != now[i])
            j++;
        if (j == a->nold)
            return 1;
    }
    return 0;
}

static void test_redis_stalled_times_out(void **state)
{
    (void)state;
    env_t e;
    /* One loop, one Redis connection: with several, home loops come on
     * at --ring-settle (5 s), and from then on stall:2 and stall:4 may be
     * homed on different loops, the second on a connection that has not
     * timed out yet (a slow machine gets there past 5 s). */
    assert_int_equal(env_up(&e, "--redis-timeout", "300", "--threads", "1", NULL), 0);
    assert_int_equal(set_str(e.cl, "stall:1", "v", NULL, NULL), 0);

    /* SIGSTOP: the socket stays open but nothing answers. The node gives
     * up after its 300 ms timeout: never sooner, and it is the node that
     * answers (BACKEND_UNAVAILABLE, its timeout counted), not the client
     * that gives up -- a client that waits far longer than any machine
     * needs, so the answer's lateness on a loaded one cannot fail this. */
    pc_client_t *patient = client_for(&e.node, 30000);
    int64_t timeouts0 = pc_h_stat(e.cl, "backend_timeouts");
    unsigned before[64];
    size_t nbefore = conns_to(e.redis.port, before, 64);
    assert_true(nbefore >= 2); /* the node's and this test's own */
    assert_int_equal(pc_h_stop_process(e.redis.pid, 5000), 0); /* every thread stopped */
    uint64_t t0 = pc_h_now_ms();
    assert_int_equal(set_str(patient, "stall:2", "v", NULL, NULL), PC_EBACKEND);
    uint64_t took = pc_h_now_ms() - t0;
    fprintf(stderr, "stalled Redis: the write failed after %llu ms\n", (unsigned long long)took);
    assert_true(took >= 250);
    assert_int_equal(pc_h_stat(e.cl, "backend_timeouts"), timeouts0 + 1);
    pc_value_t v;
    assert_int_equal(pc_client_get(e.cl, "stall:1", 7, &v), 0); /* cached */
    pc_value_free(&v);
    /* A write that timed out is ambiguous: Redis may still apply it. The
     * node must not keep serving its old cached copy. */
    assert_int_equal(set_str(patient, "stall:1", "v-new", NULL, NULL), PC_EBACKEND);
    /* Once a connection was dropped for a timeout, writes fail at once
     * until Redis answers again -- also on the new connection that the
     * stopped Redis' kernel accepts (waited for here), which before
     * would have taken them and let each wait out another --redis-timeout
     * (issue 15, the redis_stop scenario). */
    newconn_arg_t na = {e.redis.port, before, nbefore};
    assert_true(pc_h_poll(new_conn_to, &na, 10000));
    int64_t rejected0 = pc_h_stat(e.cl, "backend_rejected");
    for (int i = 0; i < 5; i++)
        assert_int_equal(set_str(patient, "stall:4", "v", NULL, NULL), PC_EBACKEND);
    assert_int_equal(pc_h_stat(e.cl, "backend_rejected"), rejected0 + 5);
    assert_int_equal(pc_h_stat(e.cl, "backend_timeouts"), timeouts0 + 1);
    pc_client_free(&patient);
    kill(e.redis.pid, SIGCONT);

    pc_h_stat_arg_t ba = {e.cl, "backend_up", 1};
    assert_true(pc_h_poll(pc_h_stat_is, &ba, 10000));
    assert_int_equal(pc_client_get(e.cl, "stall:1", 7, &v), 0);
    redisReply *r = pc_h_rcmd(e.rc, "GET stall:1");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(v.len, r->len);
    assert_memory_equal(v.data, r->str, r->len); /* the node agrees with Redis */
    freeReplyObject(r);
    pc_value_free(&v);
    assert_int_equal(set_str(e.cl, "stall:3", "v3", NULL, NULL), 0);
    pc_h_assert_redis_string(e.rc, "stall:3", "v3");
    env_down(&e);
}

/* Calls of the write scripts Redis has run (applied or refused). */
static long long script_calls(redisContext *rc)
{
    redisReply *r = pc_h_rcmd(rc, "INFO commandstats");
    long long n = 0;
    const char *names[] = {"cmdstat_evalsha:calls=", "cmdstat_eval:calls="};
    for (size_t i = 0; i < 2; i++) {
        const char *at = r->type == REDIS_REPLY_STRING ? strstr(r->str, names[i]) : NULL;
        if (at != NULL)
            n += atoll(at + strlen(names[i]));
    }
    freeReplyObject(r);
    return n;
}

typedef struct calls_arg {
    redisContext *rc;
    long long want;
} calls_arg_t;

static int calls_reached(void *p)
{
    calls_arg_t *a = p;
    return script_calls(a->rc) >= a->want;
}

typedef struct timed {
    uint32_t status[2];
    uint64_t at[2];
} timed_t;

static int note_answer(void *arg, int i, const pc_response_t *r)
{
    timed_t *t = arg;
    if (i > 1 || r->id != (uint64_t)i + 1)
        return 1;
    t->status[i] = r->status;
    t->at[i] = pc_h_now_ms();
    return 0;
}

/*
 * A write the node reported failed is never applied afterwards (issue 15;
 * docs/CONSISTENCY.md "Failed writes stay failed"). Redis stalls (SIGSTOP)
 * with two writes of one connection in it, the second sent a second after
 * the first. The first times out and the node drops the connection; the
 * second's failure is held until its own deadline (Redis could still apply
 * it until then). When Redis wakes, it reads both scripts from the dead
 * connection and runs them -- and each changes nothing, being past its
 * fence. Without the fence Redis would now hold "late" and "late2" while
 * the node had told the client both failed.
 */
static void test_failed_writes_stay_failed(void **state)
{
    (void)state;
    env_t e;
    /* one loop: both keys on one Redis connection (with several, each
     * key's home loop has its own) */
    assert_int_equal(env_up(&e, "--redis-timeout", "3000", "--threads", "1", NULL), 0);
    assert_int_equal(set_str(e.cl, "fence:1", "old", NULL, NULL), 0);
    int64_t writes0 = pc_h_stat(e.cl, "backend_writes");
    int64_t held0 = pc_h_stat(e.cl, "backend_writes_held");
    long long calls0 = script_calls(e.rc);

    assert_int_equal(pc_h_stop_process(e.redis.pid, 5000), 0); /* every thread stopped */
    int fd = pc_h_connect(e.node.port, 30000);
    pc_buf_t out;
    pc_buf_init(&out, 0);
    pc_request_t a = {.op = PC_OP_SET, .id = 1, .key = {(const uint8_t *)"fence:1", 7},
                      .value = {(const uint8_t *)"late", 4}};
    pc_proto_encode_request(&out, &a);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_h_stat_arg_t sent1 = {e.cl, "backend_writes", writes0 + 1};
    assert_true(pc_h_poll(pc_h_stat_at_least, &sent1, 10000));
    usleep(1000 * 1000); /* shapes the scenario: the second write's deadline is 1 s later */
    out.len = 0;
    pc_request_t b = {.op = PC_OP_SET, .id = 2, .key = {(const uint8_t *)"fence:2", 7},
                      .value = {(const uint8_t *)"late2", 5}};
    pc_proto_encode_request(&out, &b);
    uint64_t t2 = pc_h_now_ms();
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    pc_h_stat_arg_t sent2 = {e.cl, "backend_writes", writes0 + 2};
    int second_sent = pc_h_poll(pc_h_stat_at_least, &sent2, 10000);

    timed_t t = {{0}, {0}};
    int got = pc_h_read_responses(fd, 2, note_answer, &t);
    close(fd);
    kill(e.redis.pid, SIGCONT);
    assert_true(second_sent); /* both were in flight at Redis */
    assert_int_equal(got, 2);
    assert_int_equal(t.status[0], PC_ST_BACKEND_UNAVAILABLE);
    assert_int_equal(t.status[1], PC_ST_BACKEND_UNAVAILABLE);
    fprintf(stderr, "failed writes: the second answered %llu ms after it was sent\n",
            (unsigned long long)(t.at[1] - t2));
    /* held to its own deadline (3 s after the node sent it), not failed
     * with the first one's 1 s earlier */
    assert_true(t.at[1] - t2 >= 2900);
    assert_int_equal(pc_h_stat(e.cl, "backend_writes_held"), held0 + 1);

    /* Redis runs both late scripts (the node's new connection runs none) */
    calls_arg_t ran = {e.rc, calls0 + 2};
    assert_true(pc_h_poll(calls_reached, &ran, 10000));
    pc_h_assert_redis_string(e.rc, "fence:1", "old");
    pc_h_assert_redis_string(e.rc, "fence:2", NULL);
    pc_h_stat_arg_t ba = {e.cl, "backend_up", 1};
    assert_true(pc_h_poll(pc_h_stat_is, &ba, 10000));
    pc_value_t v;
    assert_int_equal(pc_client_get(e.cl, "fence:1", 7, &v), 0);
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.data, "old", 3);
    pc_value_free(&v);
    assert_int_equal(set_str(e.cl, "fence:1", "new", NULL, NULL), 0);
    pc_h_assert_redis_string(e.rc, "fence:1", "new");
    env_down(&e);
}

/*
 * A client gives up on a write (its own 300 ms timeout) sent to a node
 * that is stopped (SIGSTOP); the node wakes with the write still in its
 * socket -- and refuses it: the write carries the client's deadline on
 * the node's clock (measured at HELLO; PROTOCOL.md §5.1, §5.5). Before,
 * the node applied it after the client had been told it timed out.
 */
static void test_write_past_the_clients_deadline_is_refused(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, NULL), 0);
    pc_client_t *quick = client_for(&e.node, 300);
    pc_value_t v;
    assert_int_equal(pc_client_get(quick, "dl:x", 4, &v), PC_ENOTFOUND); /* connected, HELLO done */
    int64_t late0 = pc_h_stat(e.cl, "writes_late");

    int stopped = pc_h_stop_process(e.node.pid, 5000);
    int rc = stopped == 0 ? set_str(quick, "dl:1", "late", NULL, NULL) : PC_EIO;
    kill(e.node.pid, SIGCONT);
    assert_int_equal(stopped, 0);
    assert_int_equal(rc, PC_ETIMEDOUT);
    pc_h_stat_arg_t la = {e.cl, "writes_late", late0 + 1};
    assert_true(pc_h_poll(pc_h_stat_at_least, &la, 10000));
    pc_h_assert_redis_string(e.rc, "dl:1", NULL);
    pc_client_free(&quick);
    env_down(&e);
}

typedef struct burst {
    pid_t redis;
    int ok, unavailable;
} burst_t;

/* Answers may only be one of these while Redis stalls under a burst; the
 * second answer (which came after the stall timed out) wakes Redis up. */
static int check_burst(void *arg, int i, const pc_response_t *r)
{
    burst_t *b = arg;
    if (r->id != (uint64_t)i + 1)
        return 1;
    if (r->status != PC_ST_OK && r->status != PC_ST_NOT_FOUND &&
        r->status != PC_ST_BACKEND_UNAVAILABLE)
        return 1;
    if (r->status == PC_ST_BACKEND_UNAVAILABLE)
        b->unavailable++;
    else
        b->ok++;
    if (i == 1)
        kill(b->redis, SIGCONT);
    return 0;
}

/*
 * A pipelined burst of reads and writes on a few keys, with a tiny
 * in-flight limit (so completions have to resume the connection) while
 * Redis stalls and the node drops the connection mid-burst: every request
 * gets exactly one answer, in order, and the node stays healthy. Under
 * ASan this also guards the completion paths against use-after-free.
 */
static void test_burst_through_redis_stall(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "--redis-timeout", "200", "--max-inflight", "2", NULL), 0);
    enum { N = 600 };
    pc_buf_t out;
    pc_buf_init(&out, 0);
    const char *keys[] = {"burst:a", "burst:b", "burst:c"};
    for (int i = 0; i < N; i++) {
        const char *k = keys[i % 3];
        pc_request_t rq = {.id = (uint64_t)i + 1, .key = {(const uint8_t *)k, 7}};
        switch (i % 4) {
        case 0:
            rq.op = PC_OP_SET;
            rq.value = (pc_bytes_t){(const uint8_t *)"v", 1};
            break;
        case 3:
            rq.op = PC_OP_DEL;
            break;
        default:
            rq.op = PC_OP_GET;
        }
        pc_proto_encode_request(&out, &rq);
    }
    int fd = pc_h_connect(e.node.port, 10000);
    assert_int_equal(pc_h_stop_process(e.redis.pid, 5000), 0); /* every thread stopped */
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    burst_t b = {.redis = e.redis.pid};
    assert_int_equal(pc_h_read_responses(fd, N, check_burst, &b), N);
    assert_true(b.unavailable > 0); /* the stall was seen */
    fprintf(stderr, "burst: %d answered, %d BACKEND_UNAVAILABLE\n", b.ok, b.unavailable);
    close(fd);
    pc_h_stat_arg_t ba = {e.cl, "backend_up", 1};
    assert_true(pc_h_poll(pc_h_stat_is, &ba, 10000));
    assert_int_equal(set_str(e.cl, "burst:after", "ok", NULL, NULL), 0);
    env_down(&e);
}

/* ---- output bounds, reply sizes, versions ---------------------------------- */

/*
 * Reads one raw response frame into *body (reset first) and returns its
 * length prefix, or -1 if the connection ended or timed out first. The
 * prefix is returned as sent, so a test can hold it against max_frame
 * before trusting the body.
 */
static int64_t read_raw_frame(int fd, pc_buf_t *body)
{
    uint8_t pre[4];
    if (recv(fd, pre, 4, MSG_WAITALL) != 4)
        return -1;
    uint32_t n = (uint32_t)pre[0] << 24 | (uint32_t)pre[1] << 16 | (uint32_t)pre[2] << 8 | pre[3];
    pc_buf_reset(body);
    if (pc_buf_reserve(body, n) != 0)
        return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, body->data + got, n - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    body->len = n;
    return n;
}

typedef struct held_arg {
    uint32_t vlen;
} held_arg_t;

/* First answer: the miss (NOT_FOUND); then every GET of the big value. */
static int check_held(void *arg, int i, const pc_response_t *r)
{
    const held_arg_t *a = arg;
    if (r->id != (uint64_t)i + 1)
        return 1;
    if (i == 0)
        return r->status != PC_ST_NOT_FOUND;
    return r->status != PC_ST_OK || r->entry.value.len != a->vlen;
}

/*
 * Answers that are ready but wait behind a slower request (here a miss
 * held at a stalled Redis) are queued output too: --max-output must pause
 * reading for them as for answers in the socket queue, or one slow request
 * at the head lets a pipelining client make the node hold max-inflight
 * whole answers (1024 x 1 MiB by default).
 */
static void test_answers_behind_a_slow_request_count_as_output(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "--redis-timeout", "10000", "--max-output", "2mb", NULL), 0);
    held_arg_t ha = {.vlen = 256 * 1024};
    char *val = malloc(ha.vlen);
    memset(val, 'h', ha.vlen);
    assert_int_equal(pc_client_set(e.cl, "held:big", 8, val, ha.vlen, NULL, NULL), 0);
    free(val);
    int64_t hits0 = pc_h_stat(e.cl, "hits");

    /* a miss that Redis will not answer for now, then 64 hits of 256 KiB
     * (16 MiB of answers against a 2 MiB output limit) */
    enum { N = 64 };
    pc_buf_t out;
    pc_buf_init(&out, 0);
    pc_request_t miss = {.op = PC_OP_GET, .id = 1, .key = {(const uint8_t *)"held:miss", 9}};
    pc_proto_encode_request(&out, &miss);
    for (int i = 0; i < N; i++) {
        pc_request_t get = {.op = PC_OP_GET, .id = (uint64_t)i + 2,
                            .key = {(const uint8_t *)"held:big", 8}};
        pc_proto_encode_request(&out, &get);
    }
    int fd = pc_h_connect(e.node.port, 10000);
    assert_true(fd >= 0);
    assert_int_equal(pc_h_stop_process(e.redis.pid, 5000), 0); /* every thread stopped */
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);

    /* the node answers some hits, then stops reading at the limit */
    pc_h_stat_arg_t hits = {e.cl, "hits", hits0 + 4};
    assert_true(pc_h_poll(pc_h_stat_at_least, &hits, 5000));
    int64_t h1 = pc_h_stat(e.cl, "hits");
    fprintf(stderr, "held answers: %lld of %d hits produced behind the stalled miss\n",
            (long long)(h1 - hits0), N);
    assert_true(h1 - hits0 < N / 2);

    /* once Redis answers, everything comes, in order */
    kill(e.redis.pid, SIGCONT);
    assert_int_equal(pc_h_read_responses(fd, N + 1, check_held, &ha), N + 1);
    close(fd);
    assert_int_equal(pc_h_stat(e.cl, "hits"), hits0 + N);
    env_down(&e);
}

/* One MGET response, held to max_frame before it is decoded. */
typedef struct mget_frame {
    uint32_t nentries;
    unsigned ok, too_large, other;
    int first_ok;
} mget_frame_t;

static void read_mget_frame(int fd, uint64_t id, mget_frame_t *m)
{
    pc_buf_t body;
    pc_buf_init(&body, 0);
    int64_t n = read_raw_frame(fd, &body);
    fprintf(stderr, "MGET reply: %lld body bytes (max_frame %u)\n", (long long)n,
            (unsigned)PC_PROTO_DEFAULT_MAX_FRAME);
    assert_true(n > 0 && n <= PC_PROTO_DEFAULT_MAX_FRAME);
    pc_proto_decoder_t *dec = NULL;
    assert_int_equal(pc_proto_decoder_new(NULL, &dec), 0);
    pc_response_t r;
    assert_int_equal(pc_proto_decode_response(dec, body.data, body.len, &r), 0);
    assert_int_equal(r.op, PC_OP_MGET);
    assert_int_equal(r.id, id);
    assert_int_equal(r.status, PC_ST_OK);
    memset(m, 0, sizeof *m);
    m->nentries = r.nentries;
    for (uint32_t i = 0; i < r.nentries; i++) {
        if (r.entries[i].status == PC_ST_OK)
            m->ok++;
        else if (r.entries[i].status == PC_ST_TOO_LARGE)
            m->too_large++;
        else
            m->other++;
    }
    m->first_ok = r.nentries > 0 && r.entries[0].status == PC_ST_OK;
    pc_proto_decoder_free(&dec);
    pc_buf_free(&body);
}

/*
 * PROTOCOL.md §8: "The node never sends a frame larger than max_frame."
 * Two values that fill the MGET budget exactly, then many more keys: the
 * entries after the budget ran out still take bytes ([5] each), and those
 * must have been set aside too.
 */
static void test_mget_reply_never_exceeds_max_frame(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "--memory", "16mb", NULL), 0);
    /* with the defaults, sized so that the two fill the reply budget to the
     * byte (64 bytes for the header, 48 per entry on top of its value) */
    size_t v1 = 1024 * 1024;
    size_t v2 = PC_PROTO_DEFAULT_MAX_FRAME - 64 - (PC_PROTO_ENTRY_OVERHEAD + v1) -
                PC_PROTO_ENTRY_OVERHEAD;
    char *val = malloc(v1);
    memset(val, 'm', v1);
    assert_int_equal(pc_client_set(e.cl, "mf:1", 4, val, v1, NULL, NULL), 0);
    assert_int_equal(pc_client_set(e.cl, "mf:2", 4, val, v2, NULL, NULL), 0);
    free(val);

    enum { NKEYS = 1024 };
    pc_bytes_t keys[NKEYS];
    keys[0] = (pc_bytes_t){(const uint8_t *)"mf:1", 4};
    keys[1] = (pc_bytes_t){(const uint8_t *)"mf:2", 4};
    for (int i = 2; i < NKEYS; i++)
        keys[i] = keys[0];
    pc_request_t mget = {.op = PC_OP_MGET, .id = 1, .nkeys = NKEYS, .keys = keys};
    pc_buf_t out;
    pc_buf_init(&out, 0);
    assert_int_equal(pc_proto_encode_request(&out, &mget), 0);
    int fd = pc_h_connect(e.node.port, 10000);
    assert_true(fd >= 0);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);

    mget_frame_t m;
    read_mget_frame(fd, 1, &m);
    assert_int_equal(m.nentries, NKEYS);
    assert_int_equal(m.other, 0);
    assert_true(m.first_ok);
    assert_int_equal(m.ok + m.too_large, NKEYS);
    close(fd);
    env_down(&e);
}

/*
 * A value written to Redis by another program can be larger than this
 * node's max_value, even larger than max_frame. Read through, it must come
 * back as TOO_LARGE (GET) or [5] (MGET entry), never as a frame the client
 * has to refuse; and the connection stays usable.
 */
static void test_redis_value_over_max_value_is_too_large(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "--memory", "16mb", NULL), 0);
    size_t big = 1536 * 1024; /* over max_value and over max_frame */
    char *val = malloc(big);
    memset(val, 'r', big);
    freeReplyObject(pc_h_rcmd(e.rc, "SET %s %b", "huge:redis", val, big));
    free(val);

    int fd = pc_h_connect(e.node.port, 10000);
    assert_true(fd >= 0);
    pc_buf_t out, body;
    pc_buf_init(&out, 0);
    pc_buf_init(&body, 0);
    pc_proto_decoder_t *dec = NULL;
    assert_int_equal(pc_proto_decoder_new(NULL, &dec), 0);
    /* twice: the read-through, then whatever the node kept of it */
    for (uint64_t id = 1; id <= 2; id++) {
        pc_buf_reset(&out);
        pc_request_t get = {.op = PC_OP_GET, .id = id,
                            .key = {(const uint8_t *)"huge:redis", 10}};
        pc_proto_encode_request(&out, &get);
        assert_int_equal(pc_h_send_all(fd, &out), 0);
        int64_t n = read_raw_frame(fd, &body);
        assert_true(n > 0 && n <= PC_PROTO_DEFAULT_MAX_FRAME);
        pc_response_t r;
        assert_int_equal(pc_proto_decode_response(dec, body.data, body.len, &r), 0);
        assert_int_equal(r.id, id);
        assert_int_equal(r.status, PC_ST_TOO_LARGE);
    }
    pc_bytes_t keys[] = {{(const uint8_t *)"huge:redis", 10}};
    pc_request_t mget = {.op = PC_OP_MGET, .id = 3, .nkeys = 1, .keys = keys};
    pc_buf_reset(&out);
    pc_proto_encode_request(&out, &mget);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    mget_frame_t m;
    read_mget_frame(fd, 3, &m);
    assert_int_equal(m.nentries, 1);
    assert_int_equal(m.too_large, 1);

    pc_request_t ping = {.op = PC_OP_PING, .id = 4};
    pc_buf_reset(&out);
    pc_proto_encode_request(&out, &ping);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    int64_t n = read_raw_frame(fd, &body);
    assert_true(n > 0);
    pc_response_t r;
    assert_int_equal(pc_proto_decode_response(dec, body.data, body.len, &r), 0);
    assert_int_equal(r.id, 4);
    assert_int_equal(r.status, PC_ST_OK);
    pc_proto_decoder_free(&dec);
    pc_buf_free(&out);
    pc_buf_free(&body);
    close(fd);
    env_down(&e);
}

static int check_hello_v1(void *arg, int i, const pc_response_t *r)
{
    (void)arg;
    return r->id != 1 || r->status != PC_ST_OK || r->proto_version != PC_PROTO_VERSION;
}

/*
 * PROTOCOL.md §4/§10: an older node accepts a newer client's frames, and
 * HELLO is how the two learn each other's version: the node answers with
 * the version it speaks, and the client falls back to it. Version 0 was
 * never a protocol version.
 */
static void test_hello_from_a_newer_client(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *args[] = {"--redis", "none", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    int fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    pc_buf_t out;
    pc_buf_init(&out, 0);
    pc_request_t hello = {.op = PC_OP_HELLO, .id = 1, .proto_version = PC_PROTO_VERSION + 1};
    pc_proto_encode_request(&out, &hello);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    assert_int_equal(pc_h_read_responses(fd, 1, check_hello_v1, NULL), 1);
    pc_buf_reset(&out);
    hello.proto_version = 0;
    pc_proto_encode_request(&out, &hello);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    const uint32_t want[] = {PC_ST_BAD_REQUEST};
    expect_statuses(fd, 1, want);
    pc_buf_free(&out);
    close(fd);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* SET ok, then GET: a hit whose remaining TTL is a real one (>= 0). */
static int check_far_ttl(void *arg, int i, const pc_response_t *r)
{
    (void)arg;
    if (r->id != (uint64_t)i + 1 || r->status != PC_ST_OK)
        return 1;
    return r->op == PC_OP_GET && r->entry.ttl_ms < 0;
}

/*
 * ttl_ms is a uint64 on the wire, at most PC_PROTO_MAX_TTL_MS (2^62; more
 * is BAD_REQUEST, see test_hostile). The largest legal TTL must not wrap
 * into the past (a SET answered OK, then NOT_FOUND) nor come back as a
 * negative remaining TTL (only -1 is legal, and it means "none").
 */
static void test_far_ttl_does_not_wrap(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *args[] = {"--redis", "none", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    int fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    pc_buf_t out;
    pc_buf_init(&out, 0);
    pc_bytes_t k = {(const uint8_t *)"far", 3};
    const uint64_t ttls[] = {PC_PROTO_MAX_TTL_MS, PC_PROTO_MAX_TTL_MS - 1};
    uint64_t id = 1;
    for (size_t i = 0; i < sizeof ttls / sizeof ttls[0]; i++) {
        pc_request_t set = {.op = PC_OP_SET, .id = id++, .key = k,
                            .value = {(const uint8_t *)"v", 1}, .ttl_ms = ttls[i]};
        pc_request_t get = {.op = PC_OP_GET, .id = id++, .key = k};
        pc_request_t touch = {.op = PC_OP_TOUCH, .id = id++, .key = k, .ttl_ms = ttls[i]};
        pc_request_t get2 = {.op = PC_OP_GET, .id = id++, .key = k};
        assert_int_equal(pc_proto_encode_request(&out, &set), 0);
        assert_int_equal(pc_proto_encode_request(&out, &get), 0);
        assert_int_equal(pc_proto_encode_request(&out, &touch), 0);
        assert_int_equal(pc_proto_encode_request(&out, &get2), 0);
    }
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    assert_int_equal(pc_h_read_responses(fd, (int)id - 1, check_far_ttl, NULL), (int)id - 1);
    close(fd);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- other modes and limits ------------------------------------------------ */

static void test_prefix_namespaces_keys(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "--redis-prefix", "app1:", NULL), 0);
    assert_int_equal(set_str(e.cl, "k", "v", NULL, NULL), 0);
    pc_h_assert_redis_string(e.rc, "app1:k", "v");
    pc_h_assert_redis_string(e.rc, "k", NULL);
    freeReplyObject(pc_h_rcmd(e.rc, "SET app1:other o"));
    pc_value_t v;
    assert_int_equal(pc_client_get(e.cl, "other", 5, &v), 0);
    assert_string_equal((char *)v.data, "o");
    pc_value_free(&v);
    env_down(&e);
}

static void test_memory_only_mode(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *args[] = {"--redis", "none", "--memory", "4mb", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    pc_client_t *c = client_for(&node, 3000);
    uint64_t ver;
    assert_int_equal(pc_client_set(c, "mem", 3, "v", 1, NULL, &ver), 0);
    pc_value_t v;
    assert_int_equal(pc_client_get(c, "mem", 3, &v), 0);
    pc_value_free(&v);
    pc_set_options_t nx = {.cond = PC_COND_NX};
    assert_int_equal(pc_client_set(c, "mem", 3, "v", 1, &nx, NULL), PC_EEXISTS);
    pc_set_options_t cas = {.cas = ver};
    assert_int_equal(pc_client_set(c, "mem", 3, "w", 1, &cas, NULL), 0);
    assert_int_equal(pc_client_set(c, "mem", 3, "w", 1, &cas, NULL), PC_EEXISTS);
    assert_int_equal(pc_client_del(c, "mem", 3), 0);
    assert_int_equal(pc_client_get(c, "mem", 3, &v), PC_ENOTFOUND);

    /* the memory limit holds: write 3x the limit, bytes stay under it */
    char val[1024];
    memset(val, 'x', sizeof val);
    char k[32];
    for (int i = 0; i < 12000; i++) {
        snprintf(k, sizeof k, "fill:%d", i);
        assert_int_equal(pc_client_set(c, k, strlen(k), val, sizeof val, NULL, NULL), 0);
    }
    int64_t bytes = pc_h_stat(c, "bytes");
    assert_true(bytes > 0 && bytes <= 4 * 1024 * 1024);
    assert_true(pc_h_stat(c, "evictions") > 0);
    pc_client_free(&c);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static int check_pong(void *arg, int i, const pc_response_t *r)
{
    (void)arg;
    return i > 0 || r->op != PC_OP_PING || r->id != 7 || r->status != PC_ST_OK;
}

/* One request on a raw connection, its answer checked by fn. 1 = ok. */
static int ask_raw(int fd, uint32_t op, pc_h_response_fn fn, void *arg)
{
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t rq = {.op = op, .id = 7};
    int ok = pc_proto_encode_request(&b, &rq) == 0 && pc_h_send_all(fd, &b) == 0 &&
             pc_h_read_responses(fd, 1, fn, arg) == 1;
    pc_buf_free(&b);
    return ok;
}

static int read_connections(void *arg, int i, const pc_response_t *r)
{
    int64_t *out = arg;
    if (i > 0 || r->op != PC_OP_STATS || r->status != PC_ST_OK)
        return 1;
    for (uint32_t k = 0; k < r->nstats; k++)
        if (r->stats[k].name.len == 11 && memcmp(r->stats[k].name.ptr, "connections", 11) == 0)
            *out = r->stats[k].value;
    return 0;
}

/* The node counts this one connection only (fd is it). */
static int only_this_connection(void *arg)
{
    int64_t n = -1;
    return ask_raw(*(int *)arg, PC_OP_STATS, read_connections, &n) && n == 1;
}

/* A STATS counter read on the raw connection fd (answered with id 7). */
typedef struct raw_stat {
    const char *name;
    int64_t value;
} raw_stat_t;

static int read_raw_stat(void *arg, int i, const pc_response_t *r)
{
    raw_stat_t *q = arg;
    if (i > 0 || r->op != PC_OP_STATS || r->status != PC_ST_OK)
        return 1;
    for (uint32_t k = 0; k < r->nstats; k++)
        if (r->stats[k].name.len == strlen(q->name) &&
            memcmp(r->stats[k].name.ptr, q->name, r->stats[k].name.len) == 0)
            q->value = r->stats[k].value;
    return 0;
}

static int64_t raw_stat_of(int fd, const char *name)
{
    raw_stat_t q = {name, -1};
    return ask_raw(fd, PC_OP_STATS, read_raw_stat, &q) ? q.value : -1;
}

static void test_max_connections_and_idle_timeout(void **state)
{
    (void)state;
    pc_h_proc_t node;
    /* The idle timeout is long enough that neither of the first two
     * connections goes idle while the third is tried (a connection
     * closed for idleness would free its place, and the third would be
     * let in): 2 s against the few round trips in between. */
    const char *args[] = {"--redis", "none", "--max-connections", "2", "--idle-timeout", "2000",
                          NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    /* Both taken (answered) before the third comes, and nothing else
     * counted: a node of several loops accepts and closes on each
     * independently, so neither the connect() order nor the harness's
     * readiness probe having hung up says what the node has counted. */
    int a = pc_h_connect(node.port, 10000);
    assert_true(a >= 0);
    assert_true(ask_raw(a, PC_OP_PING, check_pong, NULL));
    assert_true(pc_h_poll(only_this_connection, &a, 5000));
    int b = pc_h_connect(node.port, 10000);
    assert_true(b >= 0);
    assert_true(ask_raw(b, PC_OP_PING, check_pong, NULL));
    /* the third is refused at once, with BUSY, without sending anything
     * (not queued until a place frees: then it would be served, with no
     * BUSY), and counted as refused */
    int c = pc_h_connect(node.port, 5000);
    assert_true(c >= 0);
    uint8_t buf[256];
    size_t got = 0;
    assert_int_equal(pc_h_wait_closed(c, buf, sizeof buf, &got), 1);
    struct conn_error busy = {PC_ST_BUSY};
    assert_int_equal(pc_h_decode_responses(buf, got, check_conn_error, &busy), 1);
    close(c);
    assert_int_equal(raw_stat_of(b, "connections_rejected"), 1);
    /* idle ones are closed by the node after the idle timeout (the
     * sockets' 10 s receive timeout is the deadline), by the idle timer */
    uint64_t t0 = pc_h_now_ms();
    assert_int_equal(pc_h_wait_closed(a, NULL, 0, NULL), 1);
    assert_int_equal(pc_h_wait_closed(b, NULL, 0, NULL), 1);
    fprintf(stderr, "idle connections closed %llu ms after the last request\n",
            (unsigned long long)(pc_h_now_ms() - t0));
    close(a);
    close(b);
    int d = pc_h_connect(node.port, 5000);
    assert_true(d >= 0);
    assert_int_equal(raw_stat_of(d, "idle_timeouts"), 2);
    close(d);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The library moves past a dead node in its list, and reconnects by itself
 * after the node closed an idle connection. */
static void test_client_failover_and_reconnect(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *args[] = {"--redis", "none", "--idle-timeout", "300", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    char nodes[128];
    snprintf(nodes, sizeof nodes, "127.0.0.1:%d,%s", pc_h_free_port(), node.addr);
    pc_client_options_t o = {.nodes = nodes, .timeout_ms = 2000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    assert_int_equal(pc_client_set(c, "fo", 2, "v", 1, NULL, NULL), 0);

    pc_client_t *watcher = client_for(&node, 2000);
    pc_h_stat_arg_t ca = {watcher, "connections", 1}; /* only the watcher is left */
    assert_true(pc_h_poll(pc_h_stat_is, &ca, 5000));
    pc_value_t v;
    assert_int_equal(pc_client_get(c, "fo", 2, &v), 0);
    pc_value_free(&v);
    pc_client_free(&watcher);
    pc_client_free(&c);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_slow_reader_memory_is_bounded(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *args[] = {"--redis", "none", "--max-output", "2mb", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    pc_client_t *cl = client_for(&node, 3000);
    size_t vlen = 512 * 1024;
    char *val = malloc(vlen);
    memset(val, 'v', vlen);
    assert_int_equal(pc_client_set(cl, "big", 3, val, vlen, NULL, NULL), 0);
    free(val);
    long rss0 = pc_h_rss_kb(node.pid);
    int64_t hits0 = pc_h_stat(cl, "hits"); /* before the GETs go out */

    /* 1000 GETs of 512 KiB = 500 MiB of answers, and we do not read */
    int fd = pc_h_connect(node.port, 20000);
    int small = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    pc_buf_t out;
    pc_buf_init(&out, 0);
    enum { N = 1000 };
    for (int i = 0; i < N; i++) {
        pc_request_t get = {.op = PC_OP_GET, .id = (uint64_t)i + 1,
                            .key = {(const uint8_t *)"big", 3}};
        pc_proto_encode_request(&out, &get);
    }
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    /* Wait until the node has answered what fits in its output queue and
     * the socket buffers, then check it stopped there: it paused reading
     * instead of buffering 500 MiB of answers. */
    pc_h_stat_arg_t hits = {cl, "hits", hits0 + 4};
    assert_true(pc_h_poll(pc_h_stat_at_least, &hits, 10000));
    int64_t h1 = pc_h_stat(cl, "hits");
    long rss1 = pc_h_rss_kb(node.pid);
    assert_true(h1 < 100);
    fprintf(stderr, "slow reader: %lld answers produced, node RSS %ld KiB before, %ld KiB stalled\n",
            (long long)h1, rss0, rss1);
    assert_true(rss1 - rss0 < 64 * 1024); /* far below the 500 MiB asked for */

    /* and then it delivers every answer once we read */
    size_t want = (size_t)N * (vlen + 16), total = 0;
    uint8_t *buf = malloc(1 << 20);
    while (total < want) {
        ssize_t n = recv(fd, buf, 1 << 20, 0);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    free(buf);
    assert_true(total >= (size_t)N * vlen);
    close(fd);
    pc_client_free(&cl);
    int st = pc_h_stop(&node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The node's log holds the line (a substring). */
typedef struct log_arg {
    const pc_h_proc_t *node;
    const char *line;
} log_arg_t;

static int log_has(void *p)
{
    log_arg_t *a = p;
    FILE *f = fopen(a->node->log, "r");
    char buf[1024];
    int found = 0;
    while (f != NULL && !found && fgets(buf, sizeof buf, f) != NULL)
        found = strstr(buf, a->line) != NULL;
    if (f != NULL)
        fclose(f);
    return found;
}

static void test_sigterm_drains_in_flight(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "--redis-timeout", "30000", NULL), 0);
    /* a write held in Redis when SIGTERM arrives still gets its answer:
     * Redis is stopped until the node has taken the signal (its log says
     * so), however long that takes -- not paused for a fixed 500 ms that
     * a slow machine could let run out before the signal lands, when the
     * write would be answered before the SIGTERM and prove nothing */
    pc_h_stat_arg_t sent = {e.cl, "backend_writes", pc_h_stat(e.cl, "backend_writes") + 1};
    assert_int_equal(pc_h_stop_process(e.redis.pid, 5000), 0); /* every thread stopped */
    int fd = pc_h_connect(e.node.port, 30000);
    pc_buf_t out;
    pc_buf_init(&out, 0);
    pc_request_t set = {.op = PC_OP_SET, .id = 1, .key = {(const uint8_t *)"drain", 5},
                        .value = {(const uint8_t *)"v", 1}};
    pc_proto_encode_request(&out, &set);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    /* Signal only once the SET is in flight at Redis: bytes still unread in
     * the socket when SIGTERM lands are not a request in flight (the node
     * stops reading), and the test would race the signal. */
    int in_flight = pc_h_poll(pc_h_stat_at_least, &sent, 10000);
    kill(e.node.pid, SIGTERM);
    log_arg_t took = {&e.node, "SIGTERM: leaving the cluster, draining"};
    int signalled = pc_h_poll(log_has, &took, 10000);
    kill(e.redis.pid, SIGCONT);
    assert_true(in_flight);
    assert_true(signalled);
    /* the answer comes (id 1 is the SET), then the node hangs up */
    const uint32_t want[] = {PC_ST_OK};
    expect_statuses(fd, 1, want);
    assert_int_equal(pc_h_wait_closed(fd, NULL, 0, NULL), 1);
    close(fd);
    int st = pc_h_stop(&e.node, 0, 10000); /* already signalled: just wait */
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pc_h_assert_redis_string(e.rc, "drain", "v");
    env_down(&e);
}

/* ---- hostile input ---------------------------------------------------------- */

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Every byte the node sent must be whole, well-formed response frames. */
static void assert_well_formed_responses(const uint8_t *buf, size_t len)
{
    pc_proto_decoder_t *dec = NULL;
    assert_int_equal(pc_proto_decoder_new(NULL, &dec), 0);
    size_t off = 0;
    while (off < len) {
        assert_true(len - off >= 4);
        uint32_t n = (uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 |
                     (uint32_t)buf[off + 2] << 8 | buf[off + 3];
        assert_true(n > 0 && n <= len - off - 4);
        pc_response_t r;
        assert_int_equal(pc_proto_decode_response(dec, buf + off + 4, n, &r), 0);
        assert_true(r.status <= PC_ST_MAX);
        off += 4 + n;
    }
    pc_proto_decoder_free(&dec);
}

/*
 * Valid requests, mutated at random (fixed seed): bytes flipped, frames
 * cut short, junk inserted, length prefixes rewritten. Each batch goes on
 * its own connection, which the client then half-closes. Whatever the
 * bytes, the node must answer with well-formed frames and close the
 * connection (never hang on it), and keep serving everyone else.
 */
static void test_mutated_frames_do_not_hurt_the_node(void **state)
{
    env_t *e = *state;
    const char *key = "chaos:k";
    pc_bytes_t k = {(const uint8_t *)key, 7};
    pc_bytes_t mkeys[] = {k, k, {(const uint8_t *)"chaos:other", 11}};
    pc_request_t base[] = {
        {.op = PC_OP_GET, .key = k},
        {.op = PC_OP_SET, .key = k, .value = {(const uint8_t *)"value", 5}, .ttl_ms = 60000,
         .flags = 7, .cond = PC_COND_XX},
        {.op = PC_OP_MGET, .nkeys = 3, .keys = mkeys},
        {.op = PC_OP_DEL, .key = k},
        {.op = PC_OP_TOUCH, .key = k, .ttl_ms = 1000},
        {.op = PC_OP_HELLO, .proto_version = 1},
        {.op = PC_OP_PING},
        {.op = PC_OP_STATS},
    };
    enum { CONNS = 300, PER = 6 };
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int64_t bad0 = pc_h_stat(e->cl, "bad_frames");
    pc_buf_t frame, out;
    pc_buf_init(&frame, 0);
    pc_buf_init(&out, 0);
    for (int c = 0; c < CONNS; c++) {
        pc_buf_reset(&out);
        for (int j = 0; j < PER; j++) {
            pc_buf_reset(&frame);
            pc_request_t rq = base[xorshift(&rng) % (sizeof base / sizeof base[0])];
            rq.id = xorshift(&rng);
            assert_int_equal(pc_proto_encode_request(&frame, &rq), 0);
            switch (xorshift(&rng) % 5) {
            case 0: /* flip a few bytes anywhere, prefix included */
                for (int f = 0; f < 3; f++)
                    frame.data[xorshift(&rng) % frame.len] ^= (uint8_t)(1 + xorshift(&rng) % 255);
                break;
            case 1: /* cut short */
                frame.len = xorshift(&rng) % frame.len;
                break;
            case 2: { /* junk after the prefix, prefix fixed up */
                uint8_t junk[16];
                for (size_t q = 0; q < sizeof junk; q++)
                    junk[q] = (uint8_t)xorshift(&rng);
                size_t at = 4 + xorshift(&rng) % (frame.len - 4);
                pc_buf_reserve(&frame, sizeof junk);
                memmove(frame.data + at + sizeof junk, frame.data + at, frame.len - at);
                memcpy(frame.data + at, junk, sizeof junk);
                frame.len += sizeof junk;
                uint32_t body = (uint32_t)frame.len - 4;
                frame.data[0] = (uint8_t)(body >> 24);
                frame.data[1] = (uint8_t)(body >> 16);
                frame.data[2] = (uint8_t)(body >> 8);
                frame.data[3] = (uint8_t)body;
                break;
            }
            case 3: /* a lying length prefix */
                frame.data[xorshift(&rng) % 4] = (uint8_t)xorshift(&rng);
                break;
            default: /* left valid */
                break;
            }
            pc_buf_append(&out, frame.data, frame.len);
        }
        int fd = pc_h_connect(e->node.port, 5000);
        assert_true(fd >= 0);
        /* the node may hang up mid-send after a bad frame: that is fine */
        (void)pc_h_send_all(fd, &out);
        shutdown(fd, SHUT_WR);
        /* the node closes (a hang would hit the 5 s receive timeout), and
         * what it sent before is whole, well-formed answers */
        static uint8_t got[64 * 1024];
        size_t n = 0;
        assert_int_equal(pc_h_wait_closed(fd, got, sizeof got, &n), 1);
        assert_true(n < sizeof got);
        assert_well_formed_responses(got, n);
        close(fd);
    }
    pc_buf_free(&frame);
    pc_buf_free(&out);
    assert_int_equal(pc_client_ping(e->cl), 0);
    assert_true(pc_h_stat(e->cl, "bad_frames") > bad0);
    assert_int_equal(set_str(e->cl, "chaos:after", "fine", NULL, NULL), 0);
    pc_h_assert_redis_string(e->rc, "chaos:after", "fine");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* PC_TEST_FILTER=pattern runs only the tests it matches (by hand). */
    if (getenv("PC_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("PC_TEST_FILTER"));
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_write_through_visible_in_redis),
        cmocka_unit_test(test_read_through_of_redis_key),
        cmocka_unit_test(test_ttl_agrees_with_redis),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_conditions_nx_xx_cas),
        cmocka_unit_test(test_cas_race_one_winner),
        cmocka_unit_test(test_mget),
        cmocka_unit_test(test_limits_answered_not_fatal),
        cmocka_unit_test(test_200_pipelining_clients),
        cmocka_unit_test(test_bad_frames_close_only_that_connection),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_mutated_frames_do_not_hurt_the_node),
    };
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_misses_coalesce_into_one_redis_read),
        cmocka_unit_test(test_redis_down_and_back),
        cmocka_unit_test(test_redis_stalled_times_out),
        cmocka_unit_test(test_failed_writes_stay_failed),
        cmocka_unit_test(test_write_past_the_clients_deadline_is_refused),
        cmocka_unit_test(test_burst_through_redis_stall),
        cmocka_unit_test(test_answers_behind_a_slow_request_count_as_output),
        cmocka_unit_test(test_mget_reply_never_exceeds_max_frame),
        cmocka_unit_test(test_redis_value_over_max_value_is_too_large),
        cmocka_unit_test(test_hello_from_a_newer_client),
        cmocka_unit_test(test_far_ttl_does_not_wrap),
        cmocka_unit_test(test_prefix_namespaces_keys),
        cmocka_unit_test(test_memory_only_mode),
        cmocka_unit_test(test_max_connections_and_idle_timeout),
        cmocka_unit_test(test_request_limits_on_the_wire),
        cmocka_unit_test(test_max_inflight_pauses_reading),
        cmocka_unit_test(test_client_failover_and_reconnect),
        cmocka_unit_test(test_slow_reader_memory_is_bounded),
        cmocka_unit_test(test_sigterm_drains_in_flight),
    };
    int failed = cmocka_run_group_tests_name("node_shared", shared, group_setup, group_teardown);
    failed += cmocka_run_group_tests_name("node_own", own, NULL, NULL);
    return pc_h_finish(failed);
}
