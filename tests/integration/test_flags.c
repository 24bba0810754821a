/*
 * test_flags.c -- what a node keeps in Redis: the value as a plain
 * string, and the flags in a companion record beside it
 * (docs/OPERATIONS.md "What a node keeps in Redis", node/pc_rkey.h).
 *
 * Flags must survive a read-through, so most tests write through node A
 * and read through node B, a second node on the same Redis that holds no
 * copy; B is restarted where a test needs it to forget what it read.
 * Redis itself is inspected over hiredis: the value, the record (its
 * name computed with pc_rkey, the rule the node must follow), its fields
 * and its TTL. Everything waits with deadlines (pc_h_poll), never sleeps.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_harness.h"
#include "pc_h_assert.h"
#include "pc_proto.h"
#include "pc_rkey.h"

typedef struct env {
    pc_h_proc_t redis;
    pc_h_proc_t a, b;     /* two nodes on one Redis, not a cluster */
    redisContext *rc;
    pc_client_t *ca, *cb; /* a client of each */
    const char *prefix;   /* --redis-prefix of both nodes */
} env_t;

static pc_client_t *client_for(const pc_h_proc_t *node)
{
    pc_client_options_t o = {.nodes = node->addr, .timeout_ms = 5000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    return c;
}

static int node_up(env_t *e, pc_h_proc_t *p, int port)
{
    const char *args[] = {"--redis", e->redis.addr, "--redis-timeout", "10000",
                          "--redis-prefix", e->prefix, "--memory", "16mb", NULL};
    return pc_h_node_start_port(p, port, args);
}

static void node_down(pc_h_proc_t *p)
{
    int st = pc_h_stop(p, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static int env_up(env_t *e, const char *prefix)
{
    memset(e, 0, sizeof *e);
    e->prefix = prefix;
    if (pc_h_redis_start(&e->redis, 0) != 0 || node_up(e, &e->a, 0) != 0 ||
        node_up(e, &e->b, 0) != 0)
        return -1;
    if ((e->rc = pc_h_redis_connect(&e->redis)) == NULL)
        return -1;
    e->ca = client_for(&e->a);
    e->cb = client_for(&e->b);
    return 0;
}

static void env_down(env_t *e)
{
    pc_client_free(&e->ca);
    pc_client_free(&e->cb);
    if (e->rc)
        redisFree(e->rc);
    node_down(&e->a);
    node_down(&e->b);
    pc_h_stop(&e->redis, SIGKILL, 5000);
}

/* B forgets everything it read: a fresh process on the same port. */
static void restart_b(env_t *e)
{
    pc_client_free(&e->cb);
    int port = e->b.port;
    node_down(&e->b);
    assert_int_equal(node_up(e, &e->b, port), 0);
    e->cb = client_for(&e->b);
}

static int group_setup(void **state)
{
    static env_t e;
    if (env_up(&e, "") != 0)
        return -1;
    *state = &e;
    return 0;
}

static int group_teardown(void **state)
{
    env_down(*state);
    return 0;
}

/* ---- Redis, seen directly ------------------------------------------------ */

/* R = prefix + key, and its record's name, as NUL-terminated strings
 * (the keys of these tests are text). */
typedef struct names {
    char r[256];
    char m[256 + PC_RKEY_COMPANION_EXTRA];
} names_t;

static names_t names_of(const env_t *e, const char *key)
{
    names_t n;
    snprintf(n.r, sizeof n.r, "%s%s", e->prefix, key);
    size_t len = pc_rkey_companion(n.r, strlen(n.r), (uint8_t *)n.m);
    n.m[len] = '\0';
    return n;
}

static long long rint_of(redisContext *rc, const char *cmd, const char *key)
{
    redisReply *r = pc_h_rcmd(rc, "%s %s", cmd, key);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The record holds exactly f = flags and d = the digest of `val`. */
static void assert_record(redisContext *rc, const char *m, uint32_t flags, const char *val)
{
    redisReply *r = pc_h_rcmd(rc, "HGETALL %s", m);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    char want_f[16], want_d[PC_RKEY_DIGEST_HEX + 1];
    snprintf(want_f, sizeof want_f, "%u", flags);
    pc_rkey_digest(val, strlen(val), want_d);
    for (size_t i = 0; i < 4; i += 2) {
        const char *field = r->element[i]->str, *v = r->element[i + 1]->str;
        if (strcmp(field, "f") == 0)
            assert_string_equal(v, want_f);
        else if (strcmp(field, "d") == 0)
            assert_string_equal(v, want_d);
        else
            fail_msg("unexpected field %s", field);
    }
    freeReplyObject(r);
}

/* PTTL of the value and of its record, read in one script so both are
 * taken at the same instant. */
static void pttls(redisContext *rc, const names_t *n, long long *value, long long *record)
{
    redisReply *r = pc_h_rcmd(rc, "EVAL %s 2 %s %s",
                         "return {redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])}",
                         n->r, n->m);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    *value = r->element[0]->integer;
    *record = r->element[1]->integer;
    freeReplyObject(r);
}

/* Records whose name ends in R: there must never be two. */
static size_t records_for(redisContext *rc, const names_t *n)
{
    redisReply *r = pc_h_rcmd(rc, "KEYS pcm:{*}:%s", n->r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    size_t k = r->elements;
    freeReplyObject(r);
    return k;
}

/* ---- through the nodes --------------------------------------------------- */

static void set_flags(pc_client_t *c, const char *k, const char *v, uint32_t flags,
                      uint64_t ttl_ms)
{
    pc_set_options_t o = {.flags = flags, .ttl_ms = ttl_ms};
    assert_int_equal(pc_client_set(c, k, strlen(k), v, strlen(v), &o, NULL), 0);
}

/* GET through c: the value must be `want`; returns its flags. */
static uint32_t get_flags(pc_client_t *c, const char *k, const char *want)
{
    pc_value_t v;
    int rc = pc_client_get(c, k, strlen(k), &v);
    if (rc != 0)
        fail_msg("GET %s: %s (%s)", k, pc_strerror(rc), pc_client_errmsg(c));
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.data, want, v.len);
    uint32_t f = v.flags;
    pc_value_free(&v);
    return f;
}

/* ---- tests --------------------------------------------------------------- */

static void test_flags_survive_read_through(void **state)
{
    env_t *e = *state;
    names_t n = names_of(e, "fl:1");
    set_flags(e->ca, "fl:1", "typed", 7, 0);

    /* the value is still a plain string that any program can read */
    pc_h_assert_redis_string(e->rc, n.r, "typed");
    assert_int_equal(rint_of(e->rc, "EXISTS", n.m), 1);
    assert_record(e->rc, n.m, 7, "typed");
    assert_int_equal(records_for(e->rc, &n), 1);

    /* B has no copy: it reads Redis, then serves its own copy */
    int64_t reads = pc_h_stat(e->cb, "backend_reads");
    assert_int_equal(get_flags(e->cb, "fl:1", "typed"), 7);
    assert_int_equal(pc_h_stat(e->cb, "backend_reads"), reads + 1);
    assert_int_equal(get_flags(e->cb, "fl:1", "typed"), 7);
    assert_int_equal(pc_h_stat(e->cb, "backend_reads"), reads + 1);
    assert_int_equal(get_flags(e->ca, "fl:1", "typed"), 7);

    /* the largest flags, and a binary key with braces and a NUL */
    set_flags(e->ca, "fl:max", "m", UINT32_MAX, 0);
    assert_int_equal(get_flags(e->cb, "fl:max", "m"), UINT32_MAX);
    static const char bkey[] = {'f', '{', '\0', '}', 'l', '{', 'x'};
    pc_set_options_t o = {.flags = 5};
    assert_int_equal(pc_client_set(e->ca, bkey, sizeof bkey, "b", 1, &o, NULL), 0);
    pc_value_t v;
    assert_int_equal(pc_client_get(e->cb, bkey, sizeof bkey, &v), 0);
    assert_int_equal(v.flags, 5);
    pc_value_free(&v);
    uint8_t m[sizeof bkey + PC_RKEY_COMPANION_EXTRA];
    size_t mlen = pc_rkey_companion(bkey, sizeof bkey, m);
    redisReply *r = pc_h_rcmd(e->rc, "HGET %b f", m, mlen);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "5");
    freeReplyObject(r);

    /* MGET of keys B has never read: with --threads > 1 some are read by
     * a loop that is not their home, which passes the value on without
     * caching it; flags must come through that way too */
    enum { K = 16 };
    char keys[K][16];
    const void *kp[K];
    size_t kl[K];
    for (int i = 0; i < K; i++) {
        snprintf(keys[i], sizeof keys[i], "fl:m%d", i);
        set_flags(e->ca, keys[i], keys[i], 100 + (uint32_t)i, 0);
        kp[i] = keys[i];
        kl[i] = strlen(keys[i]);
    }
    pc_mget_item_t *items = NULL;
    assert_int_equal(pc_client_mget(e->cb, K, kp, kl, &items), 0);
    for (int i = 0; i < K; i++) {
        assert_int_equal(items[i].status, 0);
        assert_string_equal((char *)items[i].value.data, keys[i]);
        assert_int_equal(items[i].value.flags, 100 + (uint32_t)i);
    }
    pc_mget_free(items, K);
}

static void test_foreign_write_reads_flags_0(void **state)
{
    env_t *e = *state;
    names_t n = names_of(e, "fl:foreign");
    set_flags(e->ca, "fl:foreign", "mine", 7, 0);
    freeReplyObject(pc_h_rcmd(e->rc, "SET %s %s", n.r, "theirs"));
    assert_int_equal(get_flags(e->cb, "fl:foreign", "theirs"), 0);

    /* a key no node ever wrote: flags 0, no record made by reading */
    freeReplyObject(pc_h_rcmd(e->rc, "SET %s %s", "fl:plain", "p"));
    assert_int_equal(get_flags(e->cb, "fl:plain", "p"), 0);
    names_t p = names_of(e, "fl:plain");
    assert_int_equal(rint_of(e->rc, "EXISTS", p.m), 0);

    /* another program writing back the very bytes the node wrote is not
     * told apart: the record vouches for the bytes, not for the writer */
    set_flags(e->ca, "fl:same", "same", 9, 0);
    names_t s = names_of(e, "fl:same");
    freeReplyObject(pc_h_rcmd(e->rc, "SET %s %s", s.r, "same"));
    assert_int_equal(get_flags(e->cb, "fl:same", "same"), 9);
}

static void test_flags_0_leaves_no_record(void **state)
{
    env_t *e = *state;
    names_t n = names_of(e, "fl:zero");
    set_flags(e->ca, "fl:zero", "one", 7, 0);
    assert_int_equal(rint_of(e->rc, "EXISTS", n.m), 1);
    set_flags(e->ca, "fl:zero", "two", 0, 0);
    assert_int_equal(rint_of(e->rc, "EXISTS", n.m), 0);
    assert_int_equal(get_flags(e->cb, "fl:zero", "two"), 0);
    set_flags(e->ca, "fl:zero", "three", 3, 0);
    assert_record(e->rc, n.m, 3, "three");
    assert_int_equal(records_for(e->rc, &n), 1);

    /* a SET whose condition failed changes neither value nor record */
    pc_set_options_t nx = {.flags = 9, .cond = PC_CLIENT_COND_NX};
    assert_int_equal(pc_client_set(e->ca, "fl:zero", 7, "four", 4, &nx, NULL), PC_EEXISTS);
    assert_record(e->rc, n.m, 3, "three");
    pc_set_options_t xx = {.flags = 9, .cond = PC_CLIENT_COND_XX};
    names_t x = names_of(e, "fl:absent");
    assert_int_equal(pc_client_set(e->ca, "fl:absent", 9, "x", 1, &xx, NULL), PC_ENOTSTORED);
    assert_int_equal(rint_of(e->rc, "EXISTS", x.m), 0);
    /* and one that applied writes both */
    assert_int_equal(pc_client_set(e->ca, "fl:zero", 7, "five", 4, &xx, NULL), 0);
    assert_record(e->rc, n.m, 9, "five");
    restart_b(e);
    assert_int_equal(get_flags(e->cb, "fl:zero", "five"), 9);
}

static void test_delete_removes_both(void **state)
{
    env_t *e = *state;
    names_t n = names_of(e, "fl:del");
    set_flags(e->ca, "fl:del", "x", 7, 0);
    assert_int_equal(pc_client_del(e->ca, "fl:del", 6), 0);
    assert_int_equal(rint_of(e->rc, "EXISTS", n.r), 0);
    assert_int_equal(rint_of(e->rc, "EXISTS", n.m), 0);

    /* an orphan: another program deleted the value, the record stays
     * until a node writes the key (a DEL that finds nothing included) */
    set_flags(e->ca, "fl:del", "y", 7, 0);
    freeReplyObject(pc_h_rcmd(e->rc, "DEL %s", n.r));
    assert_int_equal(rint_of(e->rc, "EXISTS", n.m), 1);
    assert_int_equal(pc_client_del(e->ca, "fl:del", 6), PC_ENOTFOUND);
    assert_int_equal(rint_of(e->rc, "EXISTS", n.m), 0);

    /* an orphan replaced by another program's value: flags 0 */
    set_flags(e->ca, "fl:del", "z", 7, 0);
    freeReplyObject(pc_h_rcmd(e->rc, "DEL %s", n.r));
    freeReplyObject(pc_h_rcmd(e->rc, "SET %s %s", n.r, "new"));
    assert_int_equal(get_flags(e->cb, "fl:del", "new"), 0);
}

/*
 * With no prefix, a client key can be a record's name. What another
 * program (or a client) keeps there is not a record unless it is a hash,
 * and the node never deletes, expires or overwrites it: that key's flags
 * read as 0 instead.
 */
static void test_foreign_value_under_record_name(void **state)
{
    env_t *e = *state;
    names_t n = names_of(e, "fl:clash");
    /* written through a node, as a client key */
    assert_int_equal(pc_client_set(e->ca, n.m, strlen(n.m), "not a record", 12, NULL, NULL), 0);

    set_flags(e->ca, "fl:clash", "v", 7, 60000);
    pc_h_assert_redis_string(e->rc, n.m, "not a record");
    assert_int_equal(rint_of(e->rc, "PTTL", n.m), -1);
    assert_int_equal(get_flags(e->cb, "fl:clash", "v"), 0);
    assert_int_equal(pc_client_touch(e->ca, "fl:clash", 8, 120000), 0);
    assert_int_equal(rint_of(e->rc, "PTTL", n.m), -1);
    assert_int_equal(pc_client_del(e->ca, "fl:clash", 8), 0);
    pc_h_assert_redis_string(e->rc, n.m, "not a record");
    assert_int_equal(get_flags(e->cb, n.m, "not a record"), 0);
}

typedef struct gone_arg {
    redisContext *rc;
    const names_t *n;
} gone_arg_t;

static int both_gone(void *p)
{
    gone_arg_t *g = p;
    return rint_of(g->rc, "EXISTS", g->n->r) == 0 && rint_of(g->rc, "EXISTS", g->n->m) == 0;
}

static void test_record_ttl_follows_value(void **state)
{
    env_t *e = *state;
    names_t n = names_of(e, "fl:ttl");
    long long tv, tm;

    set_flags(e->ca, "fl:ttl", "t", 7, 600000);
    pttls(e->rc, &n, &tv, &tm);
    assert_true(tv > 590000 && tv <= 600000);
    assert_true(tm >= tv - 5 && tm <= tv + 5);
    pc_value_t v;
    assert_int_equal(pc_client_get(e->cb, "fl:ttl", 6, &v), 0);
    assert_int_equal(v.flags, 7);
    assert_true(v.ttl_ms > 590000);
    pc_value_free(&v);

    /* TOUCH moves both; 0 takes the expiry off both */
    assert_int_equal(pc_client_touch(e->ca, "fl:ttl", 6, 1200000), 0);
    pttls(e->rc, &n, &tv, &tm);
    assert_true(tv > 1190000 && tv <= 1200000);
    assert_true(tm >= tv - 5 && tm <= tv + 5);
    assert_int_equal(pc_client_touch(e->ca, "fl:ttl", 6, 0), 0);
    pttls(e->rc, &n, &tv, &tm);
    assert_int_equal(tv, -1);
    assert_int_equal(tm, -1);

    /* a SET without TTL after one with: the new record has none either */
    set_flags(e->ca, "fl:ttl", "t2", 7, 300000);
    set_flags(e->ca, "fl:ttl", "t3", 8, 0);
    pttls(e->rc, &n, &tv, &tm);
    assert_int_equal(tv, -1);
    assert_int_equal(tm, -1);

    /* and they expire together */
    set_flags(e->ca, "fl:ttl", "short", 7, 300);
    gone_arg_t g = {e->rc, &n};
    assert_true(pc_h_poll(both_gone, &g, 10000));
}

/*
 * A prefix with a hash tag in it: R and its record must still share R's
 * slot (pc_rkey), and the record is found through a restarted node.
 */
static void test_prefix(void **state)
{
    (void)state;
    env_t e;
    assert_int_equal(env_up(&e, "{tenant1}:"), 0);
    names_t n = names_of(&e, "k");
    assert_string_equal(n.r, "{tenant1}:k");
    set_flags(e.ca, "k", "pv", 42, 0);
    pc_h_assert_redis_string(e.rc, "{tenant1}:k", "pv");
    assert_record(e.rc, n.m, 42, "pv");
    assert_int_equal(pc_rkey_slot(n.m, strlen(n.m)), pc_rkey_slot(n.r, strlen(n.r)));
    assert_int_equal(get_flags(e.cb, "k", "pv"), 42);

    /* restart A itself: it reads its own record back */
    pc_client_free(&e.ca);
    int port = e.a.port;
    node_down(&e.a);
    assert_int_equal(node_up(&e, &e.a, port), 0);
    e.ca = client_for(&e.a);
    assert_int_equal(get_flags(e.ca, "k", "pv"), 42);

    assert_int_equal(pc_client_del(e.ca, "k", 1), 0);
    assert_int_equal(rint_of(e.rc, "EXISTS", n.m), 0);
    env_down(&e);
}

typedef struct set_arg {
    pc_client_t *c;
    const char *key;
} set_arg_t;

static int set_succeeds(void *p)
{
    set_arg_t *a = p;
    pc_set_options_t o = {.flags = 11};
    return pc_client_set(a->c, a->key, strlen(a->key), "again", 5, &o, NULL) == 0;
}

typedef struct get_arg {
    pc_client_t *c;
    const char *key;
    uint32_t flags;
} get_arg_t;

static int get_has_flags(void *p)
{
    get_arg_t *a = p;
    pc_value_t v;
    if (pc_client_get(a->c, a->key, strlen(a->key), &v) != 0)
        return 0;
    int ok = v.flags == a->flags;
    pc_value_free(&v);
    return ok;
}

/*
 * SCRIPT FLUSH under running nodes: the command that meets NOSCRIPT
 * fails (it is never sent again: that could reorder writes), the node
 * reconnects and loads its scripts, and commands work again.
 */
static void test_script_flush_reloads(void **state)
{
    env_t *e = *state;
    set_flags(e->ca, "fl:flush", "before", 7, 0);
    int64_t connects = pc_h_stat(e->ca, "backend_connects");
    freeReplyObject(pc_h_rcmd(e->rc, "SCRIPT FLUSH"));

    pc_set_options_t o = {.flags = 8};
    assert_int_equal(pc_client_set(e->ca, "fl:flush", 8, "lost", 4, &o, NULL), PC_EBACKEND);
    names_t n = names_of(e, "fl:flush");
    pc_h_assert_redis_string(e->rc, n.r, "before");

    set_arg_t a = {e->ca, "fl:flush"};
    assert_true(pc_h_poll(set_succeeds, &a, 10000));
    assert_true(pc_h_stat(e->ca, "backend_connects") > connects);
    assert_record(e->rc, n.m, 11, "again");

    /* The script cache is the server's: A's reload restored the scripts
     * for B's connections too, which never noticed. */
    assert_int_equal(get_flags(e->cb, "fl:flush", "again"), 11);

    /* A flush that B meets first: B's read fails, B reconnects, and the
     * key then reads with its flags */
    set_flags(e->ca, "fl:flush2", "v2", 12, 0);
    freeReplyObject(pc_h_rcmd(e->rc, "SCRIPT FLUSH"));
    pc_value_t v;
    assert_int_equal(pc_client_get(e->cb, "fl:flush2", 9, &v), PC_EBACKEND);
    get_arg_t g = {e->cb, "fl:flush2", 12};
    assert_true(pc_h_poll(get_has_flags, &g, 10000));
}

static int first_status(void *arg, int i, const pc_response_t *r)
{
    *(uint32_t *)arg = r->status;
    return i > 0;
}

/*
 * A node takes commands as soon as its Redis connection is made, before
 * the scripts' loads have answered: those go out with the script's text,
 * behind the loads. Redis is stopped (SIGSTOP) while the node connects,
 * so the kernel completes the connection but nothing answers: a SET must
 * then wait for Redis instead of failing fast. (Until the connection is
 * made it does fail fast; that is retried.)
 */
static void test_commands_while_scripts_load(void **state)
{
    (void)state;
    env_t e;
    memset(&e, 0, sizeof e);
    e.prefix = "";
    assert_int_equal(pc_h_redis_start(&e.redis, 0), 0);
    assert_int_equal(pc_h_stop_process(e.redis.pid, 5000), 0); /* every thread stopped */
    assert_int_equal(node_up(&e, &e.a, 0), 0);

    pc_buf_t out;
    pc_buf_init(&out, 0);
    pc_request_t set = {.op = PC_OP_SET, .id = 1, .key = {(const uint8_t *)"early", 5},
                        .value = {(const uint8_t *)"bird", 4}, .flags = 3};
    assert_int_equal(pc_proto_encode_request(&out, &set), 0);
    int fd = -1, waiting = 0;
    for (int attempt = 0; attempt < 50 && !waiting; attempt++) {
        fd = pc_h_connect(e.a.port, 10000);
        assert_true(fd >= 0);
        assert_int_equal(pc_h_send_all(fd, &out), 0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 300) == 0) {
            waiting = 1; /* queued behind the loads */
        } else {
            uint32_t st = 0;
            assert_int_equal(pc_h_read_responses(fd, 1, first_status, &st), 1);
            assert_int_equal(st, PC_ST_BACKEND_UNAVAILABLE); /* not connected yet */
            close(fd);
        }
    }
    pc_buf_free(&out);
    kill(e.redis.pid, SIGCONT);
    assert_true(waiting);
    uint32_t st = 0;
    assert_int_equal(pc_h_read_responses(fd, 1, first_status, &st), 1);
    assert_int_equal(st, PC_ST_OK);
    close(fd);

    assert_non_null(e.rc = pc_h_redis_connect(&e.redis));
    pc_h_assert_redis_string(e.rc, "early", "bird");
    names_t n = names_of(&e, "early");
    assert_record(e.rc, n.m, 3, "bird");
    e.ca = client_for(&e.a);
    pc_h_stat_arg_t up = {e.ca, "backend_up", 1};
    assert_true(pc_h_poll(pc_h_stat_is, &up, 10000));
    assert_int_equal(get_flags(e.ca, "early", "bird"), 3);

    pc_client_free(&e.ca);
    redisFree(e.rc);
    node_down(&e.a);
    pc_h_stop(&e.redis, SIGKILL, 5000);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_flags_survive_read_through),
        cmocka_unit_test(test_foreign_write_reads_flags_0),
        cmocka_unit_test(test_flags_0_leaves_no_record),
        cmocka_unit_test(test_delete_removes_both),
        cmocka_unit_test(test_record_ttl_follows_value),
        cmocka_unit_test(test_foreign_value_under_record_name),
        cmocka_unit_test(test_script_flush_reloads),
    };
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_commands_while_scripts_load),
    };
    int failed = cmocka_run_group_tests_name("flags_shared", shared, group_setup, group_teardown);
    failed += cmocka_run_group_tests_name("flags_own", own, NULL, NULL);
    return pc_h_finish(failed);
}
