/*
 * test_redis_auth.c -- the ways a node reaches its Redis: a password (with
 * and without an ACL user, reloaded on SIGHUP), the start-up errors for
 * wrong credentials, a database number, a Unix socket, and --redis-wait.
 *
 * Real redis-server and peercached processes over real sockets.
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
#include <unistd.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_harness.h"
#include "pc_h_assert.h"

static const char *tmp_path(const char *name)
{
    static char paths[16][600];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof paths[0], "%s/%s", pc_h_tmpdir(), name);
    return p;
}

/* Lines of the file that hold all of the needles (NULL-terminated). */
static int count_lines(const char *path, const char *n1, const char *n2)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, n1) != NULL && (n2 == NULL || strstr(line, n2) != NULL))
            n++;
    fclose(f);
    return n;
}

/* A client of the node, once every loop's Redis connection is up (the
 * node listens before they are). */
static pc_client_t *client_for(const pc_h_proc_t *node)
{
    pc_client_options_t o = {.nodes = node->addr, .timeout_ms = 5000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    assert_true(pc_h_poll(pc_h_backend_up, c, 15000));
    return c;
}

static int set_str(pc_client_t *c, const char *k, const char *v)
{
    return pc_client_set(c, k, strlen(k), v, strlen(v), NULL, NULL);
}

static void assert_get(pc_client_t *c, const char *k, const char *want)
{
    pc_value_t v;
    assert_int_equal(pc_client_get(c, k, strlen(k), &v), 0);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.data, want, v.len);
    pc_value_free(&v);
}

/* Runs peercached with args (a string) until it exits; its status and,
 * in out, what it printed. */
static int run_node(const char *args, char *out, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --insecure --listen 127.0.0.1:%d %s 2>&1",
             getenv("PC_PEERCACHED"), pc_h_free_port(), args);
    return pc_h_run(cmd, out, cap);
}

static void stop_node(pc_h_proc_t *node)
{
    int st = pc_h_stop(node, SIGTERM, 10000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- passwords --------------------------------------------------------- */

/* The ACL docs/OPERATIONS.md gives a node's user: exactly the commands a
 * node sends, on its prefix and the companion records. */
#define NODE_ACL                                                                               \
    "ACL SETUSER app on >app-pw resetkeys ~app:* ~pcm:* -@all +ping +select +role +time "     \
    "+wait +script|load +eval +evalsha +get +set +del +exists +hmget +hset +persist "          \
    "+pexpire +pttl +type"

/* requirepass: the node sends AUTH password; an ACL user: AUTH user pw,
 * and the least permissions docs/OPERATIONS.md lists are enough for every
 * kind of request (flags, TTLs, TOUCH, DEL, read-through). */
static void test_password_and_acl_user(void **state)
{
    (void)state;
    pc_h_proc_t redis, node;
    const char *ra[] = {"--requirepass", "s3cret", NULL};
    assert_int_equal(pc_h_redis_start_args(&redis, 0, ra), 0);
    redisContext *rc = pc_h_redis_connect_auth(&redis, NULL, "s3cret");
    assert_non_null(rc);
    redisReply *acl = pc_h_rcmd(rc, NODE_ACL);
    assert_int_equal(acl->type, REDIS_REPLY_STATUS);
    freeReplyObject(acl);

    const char *pwf = tmp_path("redis.pw");
    assert_int_equal(pc_h_write_file(pwf, "s3cret\n", 0600), 0);
    const char *a1[] = {"--redis", redis.addr, "--redis-password-file", pwf, NULL};
    assert_int_equal(pc_h_node_start(&node, a1), 0);
    pc_client_t *c = client_for(&node);
    assert_int_equal(set_str(c, "pw-k1", "v1"), 0);
    pc_h_assert_redis_string(rc, "pw-k1", "v1");
    pc_client_free(&c);
    stop_node(&node);

    const char *uf = tmp_path("app.pw");
    assert_int_equal(pc_h_write_file(uf, "app-pw\n", 0600), 0);
    const char *a2[] = {"--redis", redis.addr, "--redis-user", "app",
                        "--redis-password-file", uf, "--redis-prefix", "app:", NULL};
    assert_int_equal(pc_h_node_start(&node, a2), 0);
    c = client_for(&node);
    assert_int_equal(set_str(c, "pw-k2", "v2"), 0);
    pc_h_assert_redis_string(rc, "app:pw-k2", "v2");
    pc_set_options_t so = {.ttl_ms = 60000, .flags = 7};
    assert_int_equal(pc_client_set(c, "pw-k3", 5, "v3", 2, &so, NULL), 0);
    assert_int_equal(pc_client_touch(c, "pw-k3", 5, 120000), 0);
    freeReplyObject(pc_h_rcmd(rc, "SET app:pw-k4 from-redis"));
    assert_get(c, "pw-k4", "from-redis");
    assert_int_equal(pc_client_del(c, "pw-k2", 5), 0);
    pc_h_assert_redis_string(rc, "app:pw-k2", NULL);
    assert_int_equal(pc_h_stat(c, "backend_errors"), 0);
    /* The connection is the app user's. */
    redisReply *r = pc_h_rcmd(rc, "CLIENT LIST");
    assert_non_null(strstr(r->str, "user=app"));
    freeReplyObject(r);
    pc_client_free(&c);
    stop_node(&node);

    redisFree(rc);
    pc_h_stop(&redis, SIGKILL, 5000);
}

/* Credentials Redis refuses, or none where Redis wants some, or a
 * password file others can read: the node does not start (exit 2) and
 * says why. */
static void test_start_up_errors(void **state)
{
    (void)state;
    pc_h_proc_t redis;
    const char *ra[] = {"--requirepass", "s3cret", NULL};
    assert_int_equal(pc_h_redis_start_args(&redis, 0, ra), 0);
    char args[1024], out[8192];

    const char *wrong = tmp_path("wrong.pw");
    assert_int_equal(pc_h_write_file(wrong, "not-it\n", 0600), 0);
    snprintf(args, sizeof args, "--redis %s --redis-password-file %s", redis.addr, wrong);
    assert_int_equal(run_node(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "refused the credentials"));
    assert_non_null(strstr(out, "WRONGPASS"));
    assert_null(strstr(out, "not-it")); /* the password is never printed */

    snprintf(args, sizeof args, "--redis %s", redis.addr);
    assert_int_equal(run_node(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "NOAUTH"));
    assert_non_null(strstr(out, "--redis-password-file"));

    const char *open_pw = tmp_path("open.pw");
    assert_int_equal(pc_h_write_file(open_pw, "s3cret\n", 0644), 0);
    snprintf(args, sizeof args, "--redis %s --redis-password-file %s", redis.addr, open_pw);
    assert_int_equal(run_node(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "chmod 600"));

    /* A user without a password file; a password in the address. */
    snprintf(args, sizeof args, "--redis %s --redis-user app", redis.addr);
    assert_int_equal(run_node(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "--redis-password-file"));
    snprintf(args, sizeof args, "--redis redis://app:s3cret@127.0.0.1:%d", redis.port);
    assert_int_equal(run_node(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "--redis-password-file"));
    assert_null(strstr(out, "s3cret"));

    /* A database Redis does not have (16 by default). */
    const char *good = tmp_path("good.pw");
    assert_int_equal(pc_h_write_file(good, "s3cret\n", 0600), 0);
    snprintf(args, sizeof args, "--redis redis://127.0.0.1:%d/99 --redis-password-file %s",
             redis.port, good);
    assert_int_equal(run_node(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "SELECT 99"));

    pc_h_stop(&redis, SIGKILL, 5000);
}

/*
 * SIGHUP reloads the password for the next connection. Redis' password
 * changes (CONFIG SET; the node's connections stay authenticated), then
 * Redis drops them: the node's AUTH is refused again and again, logged as
 * a warning once, not per attempt; after the new file and SIGHUP it
 * connects.
 */
static void test_sighup_reloads_the_password(void **state)
{
    (void)state;
    pc_h_proc_t redis, node;
    const char *ra[] = {"--requirepass", "pw-one", NULL};
    assert_int_equal(pc_h_redis_start_args(&redis, 0, ra), 0);
    redisContext *rc = pc_h_redis_connect_auth(&redis, NULL, "pw-one");
    assert_non_null(rc);
    const char *pwf = tmp_path("rot.pw");
    assert_int_equal(pc_h_write_file(pwf, "pw-one\n", 0600), 0);
    const char *a[] = {"--redis", redis.addr, "--redis-password-file", pwf, "--threads", "2",
                       NULL};
    assert_int_equal(pc_h_node_start(&node, a), 0);
    pc_client_t *c = client_for(&node);
    assert_int_equal(set_str(c, "rot-1", "a"), 0);

    freeReplyObject(pc_h_rcmd(rc, "CONFIG SET requirepass pw-two"));
    int64_t refusals0 = pc_h_stat(c, "backend_refusals");
    freeReplyObject(pc_h_rcmd(rc, "CLIENT KILL TYPE normal SKIPME yes"));
    /* Both loops retry every 100-250 ms and are refused each time. */
    pc_h_stat_arg_t sa = {c, "backend_refusals", refusals0 + 6};
    assert_true(pc_h_poll(pc_h_stat_at_least, &sa, 15000));
    assert_int_not_equal(set_str(c, "rot-2", "b"), 0); /* Redis refuses the node */
    /* one warning per loop, whatever the number of attempts */
    int warns = count_lines(node.log, "AUTH refused", "WRONGPASS");
    fprintf(stderr, "%lld refusals, %d logged\n",
            (long long)(pc_h_stat(c, "backend_refusals") - refusals0), warns);
    assert_true(warns >= 1 && warns <= 2);

    assert_int_equal(pc_h_write_file(pwf, "pw-two\n", 0600), 0);
    int64_t connects0 = pc_h_stat(c, "backend_connects");
    assert_int_equal(kill(node.pid, SIGHUP), 0);
    pc_h_stat_arg_t ca = {c, "backend_connects", connects0 + 2}; /* both loops */
    assert_true(pc_h_poll(pc_h_stat_at_least, &ca, 15000));
    assert_int_equal(set_str(c, "rot-3", "c"), 0);
    pc_h_assert_redis_string(rc, "rot-3", "c");
    assert_true(pc_h_log_has(node.log, "Redis password reloaded"));
    assert_false(pc_h_log_has(node.log, "pw-two"));

    pc_client_free(&c);
    stop_node(&node);
    redisFree(rc);
    pc_h_stop(&redis, SIGKILL, 5000);
}

/* ---- addresses ------------------------------------------------------- */

/* redis://HOST:PORT/DB selects the database; unix:///PATH?db=N reaches
 * Redis over its Unix socket. */
static void test_database_and_unix_socket(void **state)
{
    (void)state;
    pc_h_proc_t redis, node;
    const char *sock = tmp_path("redis.sock");
    const char *ra[] = {"--unixsocket", sock, "--unixsocketperm", "700", NULL};
    assert_int_equal(pc_h_redis_start_args(&redis, 0, ra), 0);
    redisContext *rc = pc_h_redis_connect(&redis);
    assert_non_null(rc);

    char url[700];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/2", redis.port);
    const char *a1[] = {"--redis", url, NULL};
    assert_int_equal(pc_h_node_start(&node, a1), 0);
    pc_client_t *c = client_for(&node);
    assert_int_equal(set_str(c, "db-k", "in-2"), 0);
    pc_client_free(&c);
    stop_node(&node);
    pc_h_assert_redis_string(rc, "db-k", NULL); /* not in database 0 */
    freeReplyObject(pc_h_rcmd(rc, "SELECT 2"));
    pc_h_assert_redis_string(rc, "db-k", "in-2");

    snprintf(url, sizeof url, "unix://%s?db=3", sock);
    const char *a2[] = {"--redis", url, NULL};
    assert_int_equal(pc_h_node_start(&node, a2), 0);
    c = client_for(&node);
    assert_int_equal(set_str(c, "unix-k", "in-3"), 0);
    freeReplyObject(pc_h_rcmd(rc, "SELECT 3"));
    pc_h_assert_redis_string(rc, "unix-k", "in-3");
    /* read-through over the socket too */
    freeReplyObject(pc_h_rcmd(rc, "SET unix-r from-redis"));
    assert_get(c, "unix-r", "from-redis");
    /* the node's connection is the socket's (no TCP peer address) */
    redisReply *r = pc_h_rcmd(rc, "CLIENT LIST");
    assert_non_null(strstr(r->str, "db=3"));
    assert_non_null(strstr(r->str, "addr=/"));
    freeReplyObject(r);
    pc_client_free(&c);
    stop_node(&node);

    redisFree(rc);
    pc_h_stop(&redis, SIGKILL, 5000);
}

/* ---- --redis-wait ---------------------------------------------------- */

/* The primary counts its replica for WAIT: online on its side (after
 * a sync, from the replica's first ACK, up to a second later). */
static int replica_online(void *arg)
{
    redisReply *r = redisCommand(arg, "INFO replication");
    int online = r != NULL && r->type == REDIS_REPLY_STRING &&
                 strstr(r->str, "state=online") != NULL;
    if (r != NULL)
        freeReplyObject(r);
    return online;
}

/*
 * With --redis-wait 1 and no replica, every write is applied by Redis but
 * answered BACKEND_UNAVAILABLE (after half of --redis-timeout) and counted;
 * with a replica attached it is answered OK.
 */
static void test_redis_wait(void **state)
{
    (void)state;
    pc_h_proc_t primary, replica, node;
    assert_int_equal(pc_h_redis_start(&primary, 0), 0);
    redisContext *rc = pc_h_redis_connect(&primary);
    assert_non_null(rc);
    /* WAIT waits half of --redis-timeout for the replica's ACK: 1 s, so
     * that a replica starved of CPU on a loaded machine still makes it
     * (at 400 ms, run at nice 19 beside a CI run, 2 of 6 runs had a
     * write refused). */
    const char *a[] = {"--redis", primary.addr, "--redis-wait", "1", "--redis-timeout", "2s",
                       NULL};
    assert_int_equal(pc_h_node_start(&node, a), 0);
    pc_client_t *c = client_for(&node);

    uint64_t t0 = pc_h_now_ms();
    assert_int_equal(set_str(c, "w-alone", "applied"), PC_EBACKEND);
    uint64_t took = pc_h_now_ms() - t0;
    fprintf(stderr, "write without a replica answered after %llu ms\n",
            (unsigned long long)took);
    assert_true(took >= 990); /* WAIT's timeout: half of 2 s */
    pc_h_assert_redis_string(rc, "w-alone", "applied"); /* applied on the primary */
    assert_true(pc_h_stat(c, "backend_writes_unreplicated") >= 1);
    /* and not served from the cache: the next read goes to Redis */
    freeReplyObject(pc_h_rcmd(rc, "SET w-alone changed-in-redis"));
    assert_get(c, "w-alone", "changed-in-redis");

    char port[16];
    snprintf(port, sizeof port, "%d", primary.port);
    const char *ra[] = {"--replicaof", "127.0.0.1", port, NULL};
    assert_int_equal(pc_h_redis_start_args(&replica, 0, ra), 0);
    redisContext *rr = pc_h_redis_connect(&replica);
    assert_non_null(rr);
    assert_true(pc_h_poll(replica_online, rc, 15000));
    int64_t short0 = pc_h_stat(c, "backend_writes_unreplicated");
    for (int i = 0; i < 20; i++) {
        char k[32];
        snprintf(k, sizeof k, "w-rep-%d", i);
        assert_int_equal(set_str(c, k, "on-both"), 0);
        redisReply *r = pc_h_rcmd(rr, "GET %s", k); /* WAIT 1 answered: the replica has it */
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_string_equal(r->str, "on-both");
        freeReplyObject(r);
    }
    assert_int_equal(pc_h_stat(c, "backend_writes_unreplicated"), short0);

    pc_client_free(&c);
    stop_node(&node);
    redisFree(rr);
    redisFree(rc);
    pc_h_stop(&replica, SIGKILL, 5000);
    pc_h_stop(&primary, SIGKILL, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_and_acl_user),
        cmocka_unit_test(test_start_up_errors),
        cmocka_unit_test(test_sighup_reloads_the_password),
        cmocka_unit_test(test_database_and_unix_socket),
        cmocka_unit_test(test_redis_wait),
    };
    return pc_h_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
