/*
 * test_security.c -- the cluster key against real peercached processes
 * and a real redis-server on loopback.
 *
 *   - a node needs a key file only its owner can read, or --insecure;
 *   - strangers: a node with another key, or none, cannot join; their
 *     datagrams and frames are dropped and counted; membership holds;
 *   - tampered, replayed, stale and wrong-kind sealed messages, on the
 *     gossip socket and on the peer port, are dropped and counted;
 *   - key rotation (add, use, remove; SIGHUP each time) on a live 3-node
 *     cluster under load: no request fails, nobody is even suspected;
 *   - an --insecure cluster with a client token: peers send it in HELLO,
 *     and FORWARD cannot skip it;
 *   - --insecure, still: a SYNC naming 4,096 members does not stall the
 *     event loop; a REPLICATE from far in the future is refused.
 *
 * Client authentication (tokens, HELLO, per-address limits) is in
 * test_client_auth.c. Every wait is a poll with a deadline.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_gossip.h"
#include "pc_h_assert.h"
#include "pc_harness.h"
#include "pc_proto.h"
#include "pc_seal.h"

#define FAST_PROBE "--probe-interval", "200ms", "--probe-timeout", "100ms", \
                   "--gossip-interval", "50ms"

/* ---- small helpers --------------------------------------------------------- */

/* A STATS counter of a node without a token; -1 if unreachable. */
static int64_t stat_of(const pc_h_proc_t *node, const char *name)
{
    int fd = pc_h_connect(node->port, 3000);
    if (fd < 0)
        return -1;
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t rq = {.op = PC_OP_STATS, .id = 1};
    pc_h_stat_q_t q = {.name = name, .value = -1, .status = 999};
    int ok = pc_proto_encode_request(&b, &rq) == 0 && pc_h_send_all(fd, &b) == 0 &&
             pc_h_read_responses(fd, 1, pc_h_on_stat, &q) == 1 && q.status == PC_ST_OK;
    pc_buf_free(&b);
    close(fd);
    return ok ? q.value : -1;
}

typedef struct wait_stat {
    const pc_h_proc_t *node;
    const char *name;
    int64_t at_least;
} wait_stat_t;

static int stat_reached(void *p)
{
    wait_stat_t *w = p;
    return stat_of(w->node, w->name) >= w->at_least;
}

static void wait_stat(const pc_h_proc_t *node, const char *name, int64_t at_least, int ms)
{
    wait_stat_t w = {node, name, at_least};
    if (!pc_h_poll(stat_reached, &w, ms))
        fail_msg("%s: %s stayed at %lld, expected >= %lld within %d ms", node->addr, name,
                 (long long)stat_of(node, name), (long long)at_least, ms);
}

/* ---- a node needs a key or --insecure ---------------------------------- */

static void test_key_file_rules(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *open_key = pc_h_tmp_path("open.key");
    assert_int_equal(pc_h_write_key_file(open_key, 1), 0);
    assert_int_equal(chmod(open_key, 0644), 0);

    const char *a1[] = {"--redis", "none", "--cluster-key", open_key, NULL};
    assert_int_equal(pc_h_node_start(&node, a1), -1);
    assert_true(pc_h_log_has(node.log, "chmod 600"));

    /* No key and no --insecure: refused, and the message says what to do. */
    const char *nokey = pc_h_tmp_path("nokey.conf");
    assert_int_equal(pc_h_write_file(nokey, "redis = none\n", 0600), 0);
    char cmd[1200], out[4096];
    snprintf(cmd, sizeof cmd, "env -u PEERCACHE_INSECURE %s --config %s --listen 127.0.0.1:%d 2>&1",
             getenv("PC_PEERCACHED"), nokey, pc_h_free_port());
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "no --cluster-key"));
    assert_non_null(strstr(out, "--insecure"));

    /* A key that is not 64 hex digits: refused with the line. */
    const char *bad = pc_h_tmp_path("bad.key");
    assert_int_equal(pc_h_write_file(bad, "# comment\nnot-a-key\n", 0600), 0);
    const char *a2[] = {"--redis", "none", "--cluster-key", bad, NULL};
    assert_int_equal(pc_h_node_start(&node, a2), -1);
    assert_true(pc_h_log_has(node.log, "line 2"));

    /* --insecure starts, with a warning. */
    const char *a3[] = {"--redis", "none", "--insecure", NULL};
    assert_int_equal(pc_h_node_start(&node, a3), 0);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
    assert_true(pc_h_log_has(node.log, "running --insecure"));
}

/* ---- strangers --------------------------------------------------------------- */

typedef struct members_q {
    const pc_h_proc_t *node;
    int alive;
} members_q_t;

static int alive_is(void *p)
{
    members_q_t *q = p;
    return stat_of(q->node, "cluster_members_alive") == q->alive;
}

static void wait_alive(const pc_h_proc_t *node, int alive, int ms)
{
    members_q_t q = {node, alive};
    if (!pc_h_poll(alive_is, &q, ms))
        fail_msg("%s sees %lld members alive, expected %d", node->addr,
                 (long long)stat_of(node, "cluster_members_alive"), alive);
}

static int udp_send(int port, const uint8_t *p, size_t n)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ssize_t r = sendto(fd, p, n, 0, (struct sockaddr *)&sa, sizeof sa);
    close(fd);
    return r == (ssize_t)n ? 0 : -1;
}

static void load_ring(const char *path, pc_keyring_t **kr)
{
    char err[256];
    if (pc_keyring_load_file(path, kr, err, sizeof err) != 0)
        fail_msg("%s", err);
}

static void test_strangers_cannot_join(void **state)
{
    (void)state;
    pc_h_proc_t a, b, s1, s2;
    /* A and B keep the default failure detector (500 ms probe timeout):
     * the test holds them to two members alive and none suspect at given
     * moments, and two members have nobody to probe each other through,
     * so one probe a loaded machine answers late (100 ms would do)
     * makes the other suspect for a while -- membership noise that has
     * nothing to do with the strangers. Nothing here needs fast probes:
     * joins go by SYNC. */
    const char *base[] = {"--redis", "none", NULL};
    assert_int_equal(pc_h_node_start(&a, base), 0);
    const char *jb[] = {"--redis", "none", "--join", a.addr, NULL};
    assert_int_equal(pc_h_node_start(&b, jb), 0);
    wait_alive(&a, 2, 10000);
    wait_alive(&b, 2, 10000);

    /* A node with another key, and one with none, try to join A. */
    const char *other = pc_h_tmp_path("other.key");
    assert_int_equal(pc_h_write_key_file(other, 1), 0);
    const char *js1[] = {"--redis", "none", FAST_PROBE, "--join", a.addr, "--cluster-key",
                         other, NULL};
    const char *js2[] = {"--redis", "none", FAST_PROBE, "--join", a.addr, "--insecure", NULL};
    int64_t unknown0 = stat_of(&a, "seal_unknown_key");
    int64_t unsealed0 = stat_of(&a, "seal_unsealed") + stat_of(&a, "peer_refused");
    assert_int_equal(pc_h_node_start(&s1, js1), 0);
    assert_int_equal(pc_h_node_start(&s2, js2), 0);
    /* The attempts reached A and were dropped, counted by reason... */
    wait_stat(&a, "seal_unknown_key", unknown0 + 1, 10000);
    wait_stat(&s1, "sync_errors", 2, 10000);
    wait_stat(&s2, "sync_errors", 2, 10000);
    int64_t unsealed = stat_of(&a, "seal_unsealed") + stat_of(&a, "peer_refused");
    assert_true(unsealed > unsealed0);
    /* ...and nobody's membership changed. */
    assert_int_equal(stat_of(&a, "cluster_members_alive"), 2);
    assert_int_equal(stat_of(&b, "cluster_members_alive"), 2);
    assert_int_equal(stat_of(&s1, "cluster_members_alive"), 1);
    assert_int_equal(stat_of(&s2, "cluster_members_alive"), 1);

    assert_int_equal(pc_h_stop(&s2, SIGTERM, 10000), 0);
    assert_int_equal(pc_h_stop(&s1, SIGTERM, 10000), 0);

    /* Datagrams on A's gossip port (= its listen port), each dropped and
     * counted exactly once under its reason: */
    pc_keyring_t *ours = NULL, *theirs = NULL;
    load_ring(pc_h_cluster_key(), &ours);
    load_ring(other, &theirs);
    pc_seal_stream_t st;
    pc_seal_stream_init(&st);
    const uint8_t junk[] = "\x92\x01\x02 not a gossip packet";
    pc_buf_t d;
    pc_buf_init(&d, 0);
    struct {
        const char *what, *counter;
    } cases[] = {{"plain", "seal_unsealed"},       {"other key", "seal_unknown_key"},
                 {"tampered", "seal_bad"},          {"wrong kind", "seal_wrong_kind"},
                 {"stale", "seal_stale"},           {"fresh (opens)", "gossip_bad"},
                 {"replayed", "seal_replayed"}};
    uint8_t fresh[512];
    size_t fresh_len = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        d.len = 0;
        uint64_t now = pc_h_wall_ms();
        switch (i) {
        case 0:
            assert_int_equal(pc_buf_append(&d, junk, sizeof junk - 1), 0);
            break;
        case 1:
            assert_int_equal(pc_seal(theirs, &st, PC_SEAL_GOSSIP, now, junk, sizeof junk - 1, &d), 0);
            break;
        case 2:
            assert_int_equal(pc_seal(ours, &st, PC_SEAL_GOSSIP, now, junk, sizeof junk - 1, &d), 0);
            d.data[d.len - 20] ^= 0x40;
            break;
        case 3:
            assert_int_equal(pc_seal(ours, &st, PC_SEAL_PEER_REQ, now, junk, sizeof junk - 1, &d), 0);
            break;
        case 4:
            assert_int_equal(pc_seal(ours, &st, PC_SEAL_GOSSIP, now - 10 * 60 * 1000, junk,
                                     sizeof junk - 1, &d), 0);
            break;
        case 5:
            assert_int_equal(pc_seal(ours, &st, PC_SEAL_GOSSIP, now, junk, sizeof junk - 1, &d), 0);
            assert_true(d.len <= sizeof fresh);
            memcpy(fresh, d.data, d.len);
            fresh_len = d.len;
            break;
        case 6:
            assert_int_equal(pc_buf_append(&d, fresh, fresh_len), 0);
            break;
        }
        int64_t before = stat_of(&a, cases[i].counter);
        assert_int_equal(udp_send(a.port, d.data, d.len), 0);
        wait_stat(&a, cases[i].counter, before + 1, 5000);
        assert_int_equal(stat_of(&a, cases[i].counter), before + 1); /* once, not twice */
        printf("gossip datagram, %s: dropped, %s %lld -> %lld\n", cases[i].what,
               cases[i].counter, (long long)before, (long long)stat_of(&a, cases[i].counter));
    }
    assert_int_equal(stat_of(&a, "cluster_members_alive"), 2);
    assert_int_equal(stat_of(&a, "cluster_members_suspect"), 0);

    pc_buf_free(&d);
    pc_keyring_free(&ours);
    pc_keyring_free(&theirs);
    assert_int_equal(pc_h_stop(&b, SIGTERM, 10000), 0);
    assert_int_equal(pc_h_stop(&a, SIGTERM, 10000), 0);
}

/* ---- sealed peer frames ------------------------------------------------------ */

static void test_peer_frames_must_be_sealed(void **state)
{
    (void)state;
    pc_h_proc_t redis, a, ins;
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    const char *args[] = {"--redis", redis.addr, NULL};
    assert_int_equal(pc_h_node_start(&a, args), 0);
    const pc_keyring_t *kr = pc_h_keyring();
    assert_non_null(kr);

    /* A plain REPLICATE of a key: refused, counted, nothing stored. */
    pc_repl_entry_t e = {.key = {(const uint8_t *)"inj", 3}, .value = {(const uint8_t *)"x", 1},
                         .has_value = 1, .version = 1ull << 40, .ttl_ms = -1};
    pc_request_t rep = {.op = PC_OP_REPLICATE, .id = 7, .mode = PC_REPL_WRITE,
                        .from = {(const uint8_t *)"evil", 4}, .nentries = 1, .entries = &e};
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_h_encode(&b, &rep);
    pc_h_reply_t x = {0};
    int64_t refused0 = stat_of(&a, "peer_refused");
    assert_int_equal(pc_h_exchange(a.port, &b, 1, NULL, &x, 0, NULL), 1);
    assert_int_equal(x.status, PC_ST_AUTH_REQUIRED);
    assert_int_equal(stat_of(&a, "peer_refused"), refused0 + 1);
    assert_int_equal(stat_of(&a, "replica_applied"), 0);

    /* Positive control: the same, sealed with the key, is applied and the
     * answer comes back sealed. */
    pc_seal_stream_t st;
    pc_seal_stream_init(&st);
    b.len = 0;
    pc_h_encode(&b, &rep);
    assert_int_equal(pc_h_seal_frames(&b, 0, kr, &st, pc_h_wall_ms()), 0);
    uint8_t replay[1024];
    size_t replay_len = b.len;
    memcpy(replay, b.data, b.len);
    x = (pc_h_reply_t){0};
    assert_int_equal(pc_h_exchange(a.port, &b, 1, kr, &x, 0, NULL), 1);
    assert_int_equal(x.status, PC_ST_OK);

    /* Each bad variant: the connection is closed without an answer, the
     * reason counted. */
    struct {
        const char *what, *counter;
    } cases[] = {{"replayed", "seal_replayed"}, {"tampered", "seal_bad"},
                 {"stale", "seal_stale"},       {"wrong kind", "seal_wrong_kind"},
                 {"other key", "seal_unknown_key"}};
    pc_keyring_t *theirs = NULL;
    const char *other = pc_h_tmp_path("other2.key");
    assert_int_equal(pc_h_write_key_file(other, 1), 0);
    load_ring(other, &theirs);
    pc_request_t ping = {.op = PC_OP_PING, .id = 3};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b.len = 0;
        if (i == 0) {
            assert_int_equal(pc_buf_append(&b, replay, replay_len), 0);
        } else {
            pc_h_encode(&b, &ping);
            uint64_t when = i == 2 ? pc_h_wall_ms() - 10 * 60 * 1000 : pc_h_wall_ms();
            uint8_t kind = i == 3 ? PC_SEAL_GOSSIP : PC_SEAL_PEER_REQ;
            assert_int_equal(pc_seal_frame(i == 4 ? theirs : kr, &st, kind, when, &b, 0), 0);
            if (i == 1)
                b.data[b.len - 1] ^= 1;
        }
        int64_t before = stat_of(&a, cases[i].counter);
        int64_t rejected = stat_of(&a, "peer_rejected");
        int closed = 0;
        x = (pc_h_reply_t){0};
        assert_int_equal(pc_h_exchange(a.port, &b, 0, NULL, &x, 1, &closed), 0);
        assert_true(closed);
        assert_int_equal(stat_of(&a, cases[i].counter), before + 1);
        assert_int_equal(stat_of(&a, "peer_rejected"), rejected + 1);
        printf("peer frame, %s: connection closed, %s +1\n", cases[i].what, cases[i].counter);
    }
    assert_int_equal(stat_of(&a, "replica_applied"), 1); /* only the good one */

    /* A sealed frame to a node without a key: refused, not opened. */
    const char *iargs[] = {"--redis", "none", "--insecure", NULL};
    assert_int_equal(pc_h_node_start(&ins, iargs), 0);
    b.len = 0;
    pc_h_encode(&b, &ping);
    assert_int_equal(pc_h_seal_frames(&b, 0, kr, &st, pc_h_wall_ms()), 0);
    int closed = 0;
    x = (pc_h_reply_t){0};
    assert_int_equal(pc_h_exchange(ins.port, &b, 1, NULL, &x, 1, &closed), 1);
    assert_int_equal(x.status, PC_ST_BAD_REQUEST);
    assert_true(closed);

    pc_keyring_free(&theirs);
    pc_buf_free(&b);
    assert_int_equal(pc_h_stop(&ins, SIGTERM, 10000), 0);
    assert_int_equal(pc_h_stop(&a, SIGTERM, 10000), 0);
    pc_h_stop(&redis, SIGKILL, 5000);
}

/* ---- rotation under load ------------------------------------------------------ */

typedef struct load {
    const char *nodes;
    int id; /* each thread writes keys of its own: a GET must see its SET */
    atomic_int stop;
    atomic_long ok, failed;
    char last_error[256];
    pthread_t th;
} load_t;

static void *load_run(void *p)
{
    load_t *l = p;
    pc_client_options_t o = {.nodes = l->nodes, .timeout_ms = 3000};
    pc_client_t *c = NULL;
    if (pc_client_new(&o, &c) != 0)
        return NULL;
    char key[32], val[32];
    for (unsigned i = 0; !atomic_load(&l->stop); i++) {
        snprintf(key, sizeof key, "rot:%d:%u", l->id, i % 500);
        snprintf(val, sizeof val, "v%u", i);
        int rc = pc_client_set(c, key, strlen(key), val, strlen(val), NULL, NULL);
        pc_value_t v = {0};
        if (rc == 0)
            rc = pc_client_get(c, key, strlen(key), &v);
        if (rc == 0 && (v.len != strlen(val) || memcmp(v.data, val, v.len) != 0))
            rc = PC_EINTERNAL;
        pc_value_free(&v);
        if (rc == 0) {
            atomic_fetch_add(&l->ok, 1);
        } else {
            atomic_fetch_add(&l->failed, 1);
            snprintf(l->last_error, sizeof l->last_error, "%s: %s", pc_errname(rc),
                     pc_client_errmsg(c));
        }
    }
    pc_client_free(&c);
    return NULL;
}

typedef struct rot {
    pc_h_proc_t *node;
    int n;
    const char *stat;
    int64_t want;
} rot_t;

static int all_report(void *p)
{
    rot_t *r = p;
    for (int i = 0; i < r->n; i++)
        if (stat_of(&r->node[i], r->stat) != r->want)
            return 0;
    return 1;
}

/* Every node's `stat` equals want, within 10 s; meanwhile nobody may be
 * suspected by anyone. */
static void wait_all(pc_h_proc_t *node, int n, const char *stat, int64_t want)
{
    rot_t r = {node, n, stat, want};
    assert_true(pc_h_poll(all_report, &r, 10000));
}

/* Lets traffic flow under the current keys: every node's sealed_in grows
 * by at least `more`. */
static void traffic(pc_h_proc_t *node, int n, int64_t more)
{
    for (int i = 0; i < n; i++)
        wait_stat(&node[i], "sealed_in", stat_of(&node[i], "sealed_in") + more, 10000);
}

static void test_key_rotation_under_load(void **state)
{
    (void)state;
    enum { N = 3 };
    pc_h_proc_t redis, node[N];
    char keyfile[N][600], line1[66], line2[66];
    uint32_t id1, id2;
    pc_keyring_new_key_line(line1, &id1);
    pc_keyring_new_key_line(line2, &id2);
    assert_int_equal(pc_h_redis_start(&redis, 0), 0);
    for (int i = 0; i < N; i++) {
        snprintf(keyfile[i], sizeof keyfile[i], "%s/rot%d.key", pc_h_tmpdir(), i);
        assert_int_equal(pc_h_write_file(keyfile[i], line1, 0600), 0);
        /* The default failure detector (500 ms probe timeout), not
         * FAST_PROBE: the test holds every incarnation unchanged (nobody
         * suspected), and a loaded machine answers a 100 ms probe late,
         * which is membership noise, not a rotation mistake -- that shows
         * in seal_bad, seal_unknown_key and the load's failures. */
        const char *args[] = {"--redis", redis.addr, "--cluster-key", keyfile[i],
                              i ? "--join" : NULL, i ? node[0].addr : NULL, NULL};
        assert_int_equal(pc_h_node_start(&node[i], args), 0);
    }
    wait_all(node, N, "cluster_members_alive", N);
    int64_t inc[N];
    for (int i = 0; i < N; i++)
        inc[i] = stat_of(&node[i], "cluster_incarnation");

    char nodes[256];
    snprintf(nodes, sizeof nodes, "%s,%s,%s", node[0].addr, node[1].addr, node[2].addr);
    load_t load[2];
    memset(load, 0, sizeof load);
    for (int i = 0; i < 2; i++) {
        load[i].nodes = nodes;
        load[i].id = i;
        assert_int_equal(pthread_create(&load[i].th, NULL, load_run, &load[i]), 0);
    }
    traffic(node, N, 50);

    /* 1. install the new key beside the old one everywhere */
    char text[200];
    snprintf(text, sizeof text, "%s%s", line1, line2);
    for (int i = 0; i < N; i++) {
        assert_int_equal(pc_h_write_file(keyfile[i], text, 0600), 0);
        kill(node[i].pid, SIGHUP);
    }
    wait_all(node, N, "seal_keys", 2);
    traffic(node, N, 50);
    /* 2. make it the primary everywhere */
    snprintf(text, sizeof text, "%s%s", line2, line1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(pc_h_write_file(keyfile[i], text, 0600), 0);
        kill(node[i].pid, SIGHUP);
    }
    wait_all(node, N, "seal_key_id", id2);
    traffic(node, N, 50);
    /* 3. remove the old one */
    for (int i = 0; i < N; i++) {
        assert_int_equal(pc_h_write_file(keyfile[i], line2, 0600), 0);
        kill(node[i].pid, SIGHUP);
    }
    wait_all(node, N, "seal_keys", 1);
    traffic(node, N, 50);

    for (int i = 0; i < 2; i++) {
        atomic_store(&load[i].stop, 1);
        pthread_join(load[i].th, NULL);
    }
    long ok = load[0].ok + load[1].ok, failed = load[0].failed + load[1].failed;
    printf("rotation under load: %ld SET+GET pairs ok, %ld failed%s%s\n", ok, failed,
           failed ? "; last: " : "", failed ? (load[0].failed ? load[0].last_error
                                                              : load[1].last_error)
                                            : "");
    assert_true(ok > 100);
    assert_int_equal(failed, 0);
    for (int i = 0; i < N; i++) {
        /* Nobody was suspected: a suspected member refutes by raising its
         * incarnation, so an unchanged one means no suspicion reached it. */
        assert_int_equal(stat_of(&node[i], "cluster_incarnation"), inc[i]);
        assert_int_equal(stat_of(&node[i], "cluster_members_alive"), N);
        assert_int_equal(stat_of(&node[i], "seal_unknown_key"), 0);
        assert_int_equal(stat_of(&node[i], "seal_bad"), 0);
    }

    /* A node that still has only the old key cannot join any more. */
    const char *old = pc_h_tmp_path("old.key");
    assert_int_equal(pc_h_write_file(old, line1, 0600), 0);
    pc_h_proc_t late;
    const char *largs[] = {"--redis", redis.addr, FAST_PROBE, "--cluster-key", old,
                           "--join", node[1].addr, NULL};
    assert_int_equal(pc_h_node_start(&late, largs), 0);
    wait_stat(&node[1], "seal_unknown_key", 1, 10000);
    wait_stat(&late, "sync_errors", 2, 10000);
    assert_int_equal(stat_of(&late, "cluster_members_alive"), 1);
    assert_int_equal(stat_of(&node[1], "cluster_members_alive"), N);
    assert_int_equal(pc_h_stop(&late, SIGTERM, 10000), 0);

    for (int i = N - 1; i >= 0; i--)
        assert_int_equal(pc_h_stop(&node[i], SIGTERM, 15000), 0);
    pc_h_stop(&redis, SIGKILL, 5000);
}

/* What one node says of the cluster: its ring's fingerprint, how many
 * members it holds alive and suspect, and the incarnations it has for
 * them (in name order). 0, or -1 if it did not answer. */
typedef struct cl_view {
    uint64_t fp;
    int alive, suspect;
    uint64_t inc[2];
} cl_view_t;

static int cluster_view(pc_client_t *c, cl_view_t *v)
{
    pc_cluster_info_t *info = NULL;
    memset(v, 0, sizeof *v);
    if (pc_client_cluster(c, &info) != 0)
        return -1;
    v->fp = info->fingerprint;
    for (size_t i = 0; i < info->nmembers; i++) {
        v->alive += info->members[i].state == PC_CLIENT_MEMBER_ALIVE;
        v->suspect += info->members[i].state == PC_CLIENT_MEMBER_SUSPECT;
        if (i < 2)
            v->inc[i] = info->members[i].incarnation;
    }
    pc_cluster_info_free(&info);
    return 0;
}

/* Steady state (docs/CONSISTENCY.md, section 2): each node holds both
 * members alive, none suspect, and the two rings are one. */
static int both_agree(void *p)
{
    pc_client_t **c = p;
    cl_view_t va, vb;
    return cluster_view(c[0], &va) == 0 && cluster_view(c[1], &vb) == 0 && va.alive == 2 &&
           va.suspect == 0 && vb.alive == 2 && vb.suspect == 0 && va.fp == vb.fp;
}

/*
 * A cluster run --insecure with a client token: peers authenticate their
 * connections with the token (a HELLO first), so forwarding works, and
 * FORWARD cannot be used to skip the token.
 *
 * Each GET must return the SET before it, which CONSISTENCY.md promises
 * in the steady state only: every node agrees on the ring and nobody is
 * suspect. So the test waits until BOTH nodes hold the two-member ring:
 * A learns of B when it takes B's join SYNC, B of A only when the answer
 * comes back, and in between A forwards B's keys to a B that still
 * believes it is alone. B takes such a write, then gains every slot it
 * keeps on hearing of A (section 4, rule 1) and no longer serves the
 * copy -- with --redis none there is nothing to read through, so the GET
 * after it was NOT_FOUND (seen once in CI under ASan). The default
 * failure detector (500 ms probe timeout) rather than 100 ms probes,
 * which a loaded machine can miss between two members that have nobody
 * to probe indirectly through: a suspect owner's reads go to its replica,
 * which may not have the write yet (section 3). Should a GET fail anyway,
 * the message says whether the steady state held.
 */
static void test_insecure_cluster_with_token(void **state)
{
    (void)state;
    pc_h_proc_t a, b;
    const char *tok = pc_h_tmp_path("cluster.token");
    assert_int_equal(pc_h_write_file(tok, "tok-2\n", 0600), 0);
    const char *aa[] = {"--redis", "none", "--insecure", "--token-file", tok, NULL};
    assert_int_equal(pc_h_node_start(&a, aa), 0);
    const char *ab[] = {"--redis", "none", "--insecure", "--token-file", tok, "--join", a.addr,
                        NULL};
    assert_int_equal(pc_h_node_start(&b, ab), 0);

    /* Through A only (no ring): about half the keys are B's, forwarded. */
    pc_client_options_t o = {.nodes = a.addr, .timeout_ms = 3000, .token = "tok-2", .no_ring = 1};
    pc_client_options_t ob = {.nodes = b.addr, .timeout_ms = 3000, .token = "tok-2", .no_ring = 1};
    pc_client_t *c = NULL, *cb = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    assert_int_equal(pc_client_new(&ob, &cb), 0);
    pc_client_t *both[2] = {c, cb};
    assert_true(pc_h_poll(both_agree, both, 10000));
    cl_view_t before;
    assert_int_equal(cluster_view(c, &before), 0);
    for (int i = 0; i < 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "it:%d", i);
        assert_int_equal(pc_client_set(c, k, strlen(k), "v", 1, NULL, NULL), 0);
        pc_value_t v = {0};
        int rc = pc_client_get(c, k, strlen(k), &v);
        if (rc != 0) {
            cl_view_t now;
            int steady = cluster_view(c, &now) == 0 && now.fp == before.fp &&
                         now.inc[0] == before.inc[0] && now.inc[1] == before.inc[1];
            fail_msg("GET %s through A after its SET: %s (%s); the steady state %s", k,
                     pc_errname(rc), pc_client_errmsg(c),
                     steady ? "held (same ring, no member refuted a suspicion)"
                            : "did not hold (ring or incarnations changed)");
        }
        pc_value_free(&v);
    }
    pc_stat_entry_t *st = NULL;
    size_t n = 0;
    int64_t forwarded = -1;
    assert_int_equal(pc_client_stats(c, &st, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(st[i].name, "forwarded") == 0)
            forwarded = st[i].value;
    pc_stats_free(st, n);
    printf("insecure cluster with a token: %lld of 80 requests forwarded A -> B\n",
           (long long)forwarded);
    assert_true(forwarded > 0);
    assert_int_equal(stat_of(&b, "auth_failures"), -1); /* B's STATS need the token too */
    pc_client_free(&cb);
    pc_client_free(&c);
    assert_int_equal(pc_h_stop(&b, SIGTERM, 10000), 0);
    assert_int_equal(pc_h_stop(&a, SIGTERM, 10000), 0);
}

/*
 * --insecure only, but still: one SYNC naming 4,096 members that do not
 * exist. Placing 65,536 slots over 4,097 members takes about half a
 * second; the node built that ring on its event loop, which answered
 * nobody meanwhile. It builds rings of more than 16 members off the loop
 * now (cluster_ring_builds_offloop), and a PING sent right after the
 * SYNC, on another connection, is answered. How long that PING took is
 * printed, not asserted: 18-22 ms here against 368-383 ms before, but a
 * bound on it would fail on a slow enough machine.
 */
static void test_sync_flood_does_not_stall(void **state)
{
    (void)state;
    enum { BOGUS = 4096 };
    pc_h_proc_t node;
    /* One loop, so that the PING and the SYNC share it. The stop of a node
     * that holds 4,097 members is slow under ThreadSanitizer: on a 2-core
     * machine SIGTERM to "cluster: leaving" took 7.8 s (the loop busy
     * throughout), over the default --shutdown-timeout of 5 s, and the
     * node exited 1. What is checked here is the clean exit, not how fast
     * a stop of that size is: the timeout is sized for it. */
    const char *args[] = {"--insecure", "--redis",          "none", "--threads", "1",
                          "--shutdown-timeout", "60s", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    pc_gossip_node_t *nodes = calloc(BOGUS, sizeof *nodes);
    char (*names)[24] = calloc(BOGUS, sizeof *names);
    char (*addrs)[24] = calloc(BOGUS, sizeof *addrs);
    for (int i = 0; i < BOGUS; i++) {
        snprintf(names[i], sizeof names[i], "bogus-%d", i);
        snprintf(addrs[i], sizeof addrs[i], "127.0.%d.%d:9", 100 + i / 250, 1 + i % 250);
        nodes[i].name = (pc_bytes_t){(const uint8_t *)names[i], (uint32_t)strlen(names[i])};
        nodes[i].addr = (pc_bytes_t){(const uint8_t *)addrs[i], (uint32_t)strlen(addrs[i])};
        nodes[i].gossip = nodes[i].addr;
        nodes[i].weight = 1;
        nodes[i].state = PC_GOSSIP_ST_ALIVE;
        nodes[i].incarnation = 1;
    }
    pc_buf_t st, b;
    pc_buf_init(&st, 0);
    pc_buf_init(&b, 0);
    assert_int_equal(pc_gossip_encode_state(&st, (pc_bytes_t){(const uint8_t *)"bogus-0", 7},
                                            nodes, BOGUS),
                     0);
    pc_request_t sync = {.op = PC_OP_SYNC, .id = 1, .body = {st.data, (uint32_t)st.len}};
    pc_h_encode(&b, &sync);
    int probe = pc_h_connect(node.port, 5000), fd = pc_h_connect(node.port, 10000);
    assert_true(probe >= 0 && fd >= 0);
    assert_int_equal(pc_h_ping_on(probe), PC_ST_OK);
    /* the SYNC, and at once a PING on the other connection: the loop
     * reads both in the same turn or the next */
    assert_int_equal(pc_h_send_all(fd, &b), 0);
    uint64_t t0 = pc_h_now_ms();
    assert_int_equal(pc_h_ping_on(probe), PC_ST_OK);
    uint64_t took = pc_h_now_ms() - t0;
    pc_h_reply_t x = {0};
    assert_int_equal(pc_h_read_responses(fd, 1, pc_h_on_reply, &x), 1); /* merged */
    assert_int_equal(x.status, PC_ST_OK);
    printf("a PING right after a SYNC of %d members: answered in %llu ms\n", BOGUS,
           (unsigned long long)took);
    /* How long the PING took is measured, not asserted (a loaded machine
     * under ASan took 284 ms): what keeps the loop free is that the ring
     * of 4,097 is built off it. It comes, in time. */
    wait_stat(&node, "cluster_ring_builds_offloop", 1, 20000);
    wait_stat(&node, "cluster_ring_changes", 2, 20000);
    close(probe);
    close(fd);
    pc_buf_free(&st);
    pc_buf_free(&b);
    free(nodes);
    free(names);
    free(addrs);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 20000), 0);
}

/* REPLICATE of one entry (mode WRITE) on fd: the answer's `applied`, or
 * -1. */
static int on_applied(void *arg, int i, const pc_response_t *r)
{
    (void)i;
    *(int64_t *)arg = r->status == PC_ST_OK ? (int64_t)r->applied : -1;
    return 0;
}

static int64_t replicate_one(int fd, const char *key, uint64_t version)
{
    pc_repl_entry_t e = {.key = {(const uint8_t *)key, (uint32_t)strlen(key)},
                         .value = {(const uint8_t *)"v", 1}, .has_value = 1,
                         .version = version, .ttl_ms = -1};
    pc_request_t rq = {.op = PC_OP_REPLICATE, .id = 5, .mode = PC_REPL_WRITE,
                       .from = {(const uint8_t *)"evil", 4}, .nentries = 1, .entries = &e};
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_h_encode(&b, &rq);
    int64_t applied = -1;
    int ok = pc_h_send_all(fd, &b) == 0 && pc_h_read_responses(fd, 1, on_applied, &applied) == 1;
    pc_buf_free(&b);
    return ok ? applied : -1;
}

/*
 * --insecure only, but still: a REPLICATE carrying version 2^64 - 1 made
 * the node's clock follow it, and the next SET answered version 0, which
 * PROTOCOL.md says is never a version. An entry more than a minute ahead
 * of the node's clock is refused now; one a few seconds ahead (clocks
 * that disagree a little) is still applied, and versions stay near the
 * wall clock.
 */
static void test_replicate_from_the_future(void **state)
{
    (void)state;
    pc_h_proc_t node;
    const char *args[] = {"--insecure", "--redis", "none", NULL};
    assert_int_equal(pc_h_node_start(&node, args), 0);
    int fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    uint64_t wall = pc_h_wall_ms() << 16;
    assert_int_equal(replicate_one(fd, "far", UINT64_MAX), 0);
    assert_int_equal(replicate_one(fd, "near", wall + ((uint64_t)5000 << 16)), 1);
    pc_client_options_t o = {.nodes = node.addr, .timeout_ms = 3000};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    uint64_t v = 0;
    assert_int_equal(pc_client_set(c, "after", 5, "x", 1, NULL, &v), 0);
    printf("version after a REPLICATE of 2^64-1: %llu (wall clock version %llu)\n",
           (unsigned long long)v, (unsigned long long)wall);
    assert_true(v != 0);
    assert_true((v >> 16) < (wall >> 16) + 60000); /* within the minute the node allows */
    pc_value_t got;
    assert_int_equal(pc_client_get(c, "far", 3, &got), PC_ENOTFOUND);
    assert_int_equal(pc_client_get(c, "near", 4, &got), 0);
    pc_value_free(&got);
    pc_client_free(&c);
    close(fd);
    assert_int_equal(pc_h_stop(&node, SIGTERM, 10000), 0);
}

int main(void)
{
    if (pc_seal_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_file_rules),
        cmocka_unit_test(test_strangers_cannot_join),
        cmocka_unit_test(test_peer_frames_must_be_sealed),
        cmocka_unit_test(test_key_rotation_under_load),
        cmocka_unit_test(test_insecure_cluster_with_token),
        cmocka_unit_test(test_sync_flood_does_not_stall),
        cmocka_unit_test(test_replicate_from_the_future),
    };
    return pc_h_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
