/*
 * test_cluster.c -- several real peercached processes and a real
 * redis-server on loopback: forming a cluster, routing, failure
 * detection, rejoin, hand-off on join and leave, and the hop limit.
 *
 * Timers are shortened (probe every 200 ms) so that failure detection
 * takes about a second; every wait is a poll with a deadline, never a
 * fixed sleep standing in for an event.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
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
#include "pc_proto.h"
#include "pc_ring.h"

#define MAXN 5
#define PROBE "200ms"
#define PROBE_TIMEOUT "100ms"

static const char *const FAST[] = {"--probe-interval", PROBE, "--probe-timeout", PROBE_TIMEOUT,
                                   "--gossip-interval", "50ms", "--memory", "32mb",
                                   "--peer-timeout", "1000ms", NULL};

/* --ring-settle of the nodes node_up starts: a test may change it before
 * cluster_up and must set it back. */
static const char *ring_settle = "2s";

typedef struct cluster {
    pc_h_proc_t redis;
    pc_h_proc_t node[MAXN];
    int n;
    redisContext *rc;
} cluster_t;

/* ---- processes ---------------------------------------------------------- */

/* Starts node i joining `seed` (NULL: the first node, alone), on `port`
 * (0: a free one), with the fast timers and --redis. */
/* Extra arguments for every node_up (NULL = none): a test may set it
 * before cluster_up and must clear it again. They come after the fast
 * timers, so they may override one (the last of a flag wins). */
static const char *const *node_extra;

static int node_up(cluster_t *cl, int i, const char *seed, int port)
{
    const char *args[48];
    int n = 0;
    args[n++] = "--redis";
    args[n++] = cl->redis.addr;
    for (int k = 0; FAST[k]; k++)
        args[n++] = FAST[k];
    args[n++] = "--ring-settle";
    args[n++] = ring_settle;
    for (int k = 0; node_extra && node_extra[k]; k++)
        args[n++] = node_extra[k];
    if (seed) {
        args[n++] = "--join";
        args[n++] = seed;
    }
    args[n] = NULL;
    return pc_h_node_start_port(&cl->node[i], port, args);
}

static void cluster_up(cluster_t *cl, int n)
{
    memset(cl, 0, sizeof *cl);
    assert_int_equal(pc_h_redis_start(&cl->redis, 0), 0);
    cl->rc = pc_h_redis_connect(&cl->redis);
    assert_non_null(cl->rc);
    assert_int_equal(node_up(cl, 0, NULL, 0), 0);
    for (int i = 1; i < n; i++)
        assert_int_equal(node_up(cl, i, cl->node[0].addr, 0), 0);
    cl->n = n;
}

static void cluster_down(cluster_t *cl)
{
    for (int i = 0; i < MAXN; i++) {
        if (cl->node[i].pid > 0) {
            int st = pc_h_stop(&cl->node[i], SIGTERM, 15000);
            assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
    }
    if (cl->rc)
        redisFree(cl->rc);
    pc_h_stop(&cl->redis, SIGKILL, 5000);
}

/* ---- raw requests ---------------------------------------------------------- */

typedef struct view {
    uint64_t fp;
    int alive, suspect, dead, left;
    int found; /* the member asked about, by name */
    uint32_t state;
    uint64_t incarnation;
    pc_ring_member_t ring[MAXN];
    char names[MAXN][64];
    int nring;
} view_t;

typedef struct one {
    const char *want; /* member name to report on, or NULL */
    view_t *v;
    uint32_t status;
    int64_t stat;
    const char *stat_name;
    pc_buf_t *body;
} one_t;

/* One request to a node on a new connection; fn sees the response.
 * Peer operations go sealed with the cluster key, as a member sends them.
 * 0, or -1 if the node could not be reached or did not answer. */
static int call1(const pc_h_proc_t *node, const pc_request_t *rq, pc_h_response_fn fn, void *arg)
{
    int fd = pc_h_connect(node->port, 3000);
    if (fd < 0)
        return -1;
    pc_buf_t b;
    pc_buf_init(&b, 0);
    int peer_op = rq->op == PC_OP_FORWARD || rq->op == PC_OP_SYNC || rq->op == PC_OP_REPLICATE;
    const pc_keyring_t *kr = peer_op ? pc_h_keyring() : NULL;
    pc_seal_stream_t st;
    pc_seal_stream_init(&st);
    int ok = (!peer_op || kr != NULL) && pc_proto_encode_request(&b, rq) == 0 &&
             (kr == NULL || pc_h_seal_frames(&b, 0, kr, &st, pc_h_wall_ms()) == 0) &&
             pc_h_send_all(fd, &b) == 0 &&
             (kr ? pc_h_read_sealed_responses(fd, 1, kr, fn, arg)
                 : pc_h_read_responses(fd, 1, fn, arg)) == 1;
    pc_buf_free(&b);
    close(fd);
    return ok ? 0 : -1;
}

/* `inner` relayed to a node as another member would (FORWARD, hops, and
 * the relaying node's deadline, 0 = none). */
static int forward_until(const pc_h_proc_t *node, uint32_t hops, uint64_t deadline_ms,
                         const pc_request_t *inner, pc_h_response_fn fn, void *arg)
{
    pc_buf_t in;
    pc_buf_init(&in, 0);
    assert_int_equal(pc_proto_encode_request(&in, inner), 0);
    pc_request_t f = {.op = PC_OP_FORWARD, .id = 77, .hops = hops, .deadline_ms = deadline_ms,
                      .body = {in.data + 4, (uint32_t)(in.len - 4)}};
    int rc = call1(node, &f, fn, arg);
    pc_buf_free(&in);
    return rc;
}

static int forward1(const pc_h_proc_t *node, uint32_t hops, const pc_request_t *inner,
                    pc_h_response_fn fn, void *arg)
{
    return forward_until(node, hops, 0, inner, fn, arg);
}

static int on_cluster(void *arg, int i, const pc_response_t *r)
{
    one_t *o = arg;
    (void)i;
    o->status = r->status;
    if (r->status != PC_ST_OK || r->op != PC_OP_CLUSTER)
        return 0;
    view_t *v = o->v;
    memset(v, 0, sizeof *v);
    v->fp = r->fingerprint;
    for (uint32_t k = 0; k < r->nmembers; k++) {
        const pc_cluster_member_t *m = &r->members[k];
        switch (m->state) {
        case PC_WIRE_ALIVE: v->alive++; break;
        case PC_WIRE_SUSPECT: v->suspect++; break;
        case PC_WIRE_DEAD: v->dead++; break;
        default: v->left++; break;
        }
        if ((m->state == PC_WIRE_ALIVE || m->state == PC_WIRE_SUSPECT) && v->nring < MAXN) {
            snprintf(v->names[v->nring], sizeof v->names[0], "%.*s", (int)m->name.len,
                     (const char *)m->name.ptr);
            v->ring[v->nring].name = v->names[v->nring];
            v->ring[v->nring].weight = m->weight;
            v->nring++;
        }
        if (o->want && m->name.len == strlen(o->want) &&
            memcmp(m->name.ptr, o->want, m->name.len) == 0) {
            v->found = 1;
            v->state = m->state;
            v->incarnation = m->incarnation;
        }
    }
    return 0;
}

/* CLUSTER on one node; 0 or -1 (node down). */
static int cluster_view(const pc_h_proc_t *node, const char *want, view_t *v)
{
    pc_request_t rq = {.op = PC_OP_CLUSTER, .id = 9};
    one_t o = {.want = want, .v = v, .status = 999};
    return call1(node, &rq, on_cluster, &o) == 0 && o.status == PC_ST_OK ? 0 : -1;
}

static int on_stats(void *arg, int i, const pc_response_t *r)
{
    one_t *o = arg;
    (void)i;
    o->status = r->status;
    for (uint32_t k = 0; k < r->nstats; k++) {
        if (r->stats[k].name.len == strlen(o->stat_name) &&
            memcmp(r->stats[k].name.ptr, o->stat_name, r->stats[k].name.len) == 0)
            o->stat = r->stats[k].value;
    }
    return 0;
}

static int64_t stat_of(const pc_h_proc_t *node, const char *name)
{
    pc_request_t rq = {.op = PC_OP_STATS, .id = 8};
    one_t o = {.stat_name = name, .stat = -1, .status = 999};
    return call1(node, &rq, on_stats, &o) == 0 ? o.stat : -1;
}

/* Sum of a counter over the running nodes but `skip` (-1: none); -1 if
 * one of them did not answer (not added in: {1, -1} would read as 0). */
static int64_t stat_sum_but(const cluster_t *cl, const char *name, int skip)
{
    int64_t sum = 0;
    for (int i = 0; i < MAXN; i++) {
        if (cl->node[i].pid > 0 && i != skip) {
            int64_t v = stat_of(&cl->node[i], name);
            if (v < 0)
                return -1;
            sum += v;
        }
    }
    return sum;
}

static int64_t stat_sum(const cluster_t *cl, const char *name)
{
    return stat_sum_but(cl, name, -1);
}

static int handoffs_idle(void *p)
{
    return stat_sum(p, "handoff_active") == 0;
}

/* Every running node sees exactly `want` members alive, none suspect,
 * and all agree on the fingerprint. */
typedef struct converge_arg {
    cluster_t *cl;
    int want;
    uint64_t fp;
} converge_arg_t;

static int converged(void *p)
{
    converge_arg_t *a = p;
    uint64_t fp = 0;
    for (int i = 0; i < MAXN; i++) {
        if (a->cl->node[i].pid <= 0)
            continue;
        view_t v;
        if (cluster_view(&a->cl->node[i], NULL, &v) != 0 || v.alive != a->want ||
            v.suspect != 0 || (fp != 0 && v.fp != fp))
            return 0;
        fp = v.fp;
    }
    a->fp = fp;
    return 1;
}

static uint64_t wait_converged(cluster_t *cl, int want, int timeout_ms)
{
    converge_arg_t a = {cl, want, 0};
    if (!pc_h_poll(converged, &a, timeout_ms)) {
        for (int i = 0; i < MAXN; i++) {
            view_t v;
            if (cl->node[i].pid > 0 && cluster_view(&cl->node[i], NULL, &v) == 0)
                fprintf(stderr, "node %s: alive %d suspect %d dead %d left %d fp %016llx\n",
                        cl->node[i].addr, v.alive, v.suspect, v.dead, v.left,
                        (unsigned long long)v.fp);
        }
        fail_msg("cluster did not converge on %d members within %d ms", want, timeout_ms);
    }
    return a.fp;
}

static pc_client_t *client(const char *nodes, int ring_aware)
{
    pc_client_options_t o = {.nodes = nodes, .timeout_ms = 3000, .no_ring = !ring_aware};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    return c;
}

/* ---- tests ----------------------------------------------------------------- */

/* 4 nodes from one seed; every node answers every key. */
static void test_form_and_any_node_answers(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 4);
    uint64_t t0 = pc_h_now_ms();
    uint64_t fp = wait_converged(&cl, 4, 10000);
    printf("# 4 nodes converged (one ring, fingerprint %016llx) %llu ms after the last start\n",
           (unsigned long long)fp, (unsigned long long)(pc_h_now_ms() - t0));

    pc_client_t *thin[4];
    for (int i = 0; i < 4; i++)
        thin[i] = client(cl.node[i].addr, 0);
    int64_t fwd0 = stat_sum(&cl, "forwarded");
    enum { KEYS = 200 };
    for (int k = 0; k < KEYS; k++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "any:%d", k);
        snprintf(val, sizeof val, "v%d", k);
        assert_int_equal(pc_client_set(thin[k % 4], key, strlen(key), val, strlen(val), NULL, NULL),
                         0);
    }
    for (int k = 0; k < KEYS; k++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "any:%d", k);
        snprintf(val, sizeof val, "v%d", k);
        for (int j = 1; j < 4; j++) {
            pc_value_t v;
            assert_int_equal(pc_client_get(thin[(k + j) % 4], key, strlen(key), &v), 0);
            assert_int_equal(v.len, strlen(val));
            assert_memory_equal(v.data, val, v.len);
            pc_value_free(&v);
        }
    }
    /* MGET across owners, through one node. */
    const void *keys[KEYS];
    size_t lens[KEYS];
    char kb[KEYS][32];
    for (int k = 0; k < KEYS; k++) {
        snprintf(kb[k], sizeof kb[k], "any:%d", k);
        keys[k] = kb[k];
        lens[k] = strlen(kb[k]);
    }
    pc_mget_item_t *items = NULL;
    assert_int_equal(pc_client_mget(thin[1], KEYS, keys, lens, &items), 0);
    for (int k = 0; k < KEYS; k++) {
        char val[32];
        snprintf(val, sizeof val, "v%d", k);
        assert_int_equal(items[k].status, 0);
        assert_memory_equal(items[k].value.data, val, strlen(val));
    }
    pc_mget_free(items, KEYS);
    int64_t fwd = stat_sum(&cl, "forwarded") - fwd0;
    /* A thin client sends everything to one node: about 3/4 of the keys
     * are someone else's. */
    printf("# thin clients: %lld of %d requests forwarded\n", (long long)fwd, KEYS * 4 + 1);
    assert_true(fwd > KEYS);
    for (int i = 0; i < 4; i++)
        pc_client_free(&thin[i]);

    /* The CLI shows the same cluster: every member, alive, with its share
     * of the keyspace, and the ring's fingerprint. */
    char cmd[512], out[4096], fph[32];
    snprintf(cmd, sizeof cmd, "%s --nodes %s cluster", getenv("PC_CLI"), cl.node[2].addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    snprintf(fph, sizeof fph, "%016llx", (unsigned long long)fp);
    assert_non_null(strstr(out, fph));
    for (int i = 0; i < 4; i++) {
        const char *line = strstr(out, cl.node[i].addr);
        assert_non_null(line);
        assert_non_null(strstr(line, "alive"));
        assert_non_null(strstr(line, "%"));
    }
    snprintf(cmd, sizeof cmd, "%s --nodes %s cluster --json", getenv("PC_CLI"), cl.node[1].addr);
    assert_int_equal(pc_h_run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"fingerprint\""));
    assert_non_null(strstr(out, fph));
    cluster_down(&cl);
}

/* A seed may be a DNS name; every address it resolves to is tried. */
static void test_join_through_a_host_name(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 1);
    char seed[64];
    snprintf(seed, sizeof seed, "localhost:%d", cl.node[0].port);
    assert_int_equal(node_up(&cl, 1, seed, 0), 0);
    wait_converged(&cl, 2, 10000);
    cluster_down(&cl);
}

/* A ring-aware client sends each key to its owner: (almost) nothing is
 * forwarded. */
static void test_ring_aware_client_routes_directly(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 3);
    wait_converged(&cl, 3, 10000);
    pc_client_t *c = client(cl.node[0].addr, 1);
    int64_t fwd0 = stat_sum(&cl, "forwarded");
    int64_t in0 = stat_sum(&cl, "requests");
    enum { OPS = 1000 };
    for (int k = 0; k < OPS; k++) {
        char key[32];
        snprintf(key, sizeof key, "direct:%d", k);
        assert_int_equal(pc_client_set(c, key, strlen(key), "x", 1, NULL, NULL), 0);
        pc_value_t v;
        assert_int_equal(pc_client_get(c, key, strlen(key), &v), 0);
        pc_value_free(&v);
    }
    int64_t fwd = stat_sum(&cl, "forwarded") - fwd0;
    int64_t reqs = stat_sum(&cl, "requests") - in0;
    printf("# ring-aware client: %lld of %lld requests forwarded\n", (long long)fwd,
           (long long)reqs);
    assert_true(reqs >= 2 * OPS);
    assert_true(fwd * 100 <= 2 * OPS); /* near zero: at most 1% */
    pc_client_free(&c);
    cluster_down(&cl);
}

/* ---- load ---------------------------------------------------------------- */

typedef struct load {
    const char *nodes;
    atomic_int stop; /* set by the main thread while this one runs */
    int writer; /* else reader */
    int id;
    /* writer: keys "w<id>:<n>" with value "<n>", n = 0..acked-1 acked */
    atomic_int acked;
    atomic_int unknown; /* outcome unknown (timeout / broken connection) */
    atomic_int *ok;     /* ok[n]: 1 acked, 2 unknown; set before the count */
    int cap;
    /* reader */
    struct load *src;
    long reads, read_errors, wrong;
    long errors_after; /* read errors after `mark` was set */
    atomic_int mark;
    long other_errors; /* writer: errors other than unknown-outcome */
} load_t;

static void *load_run(void *p)
{
    load_t *l = p;
    pc_client_t *c = client(l->nodes, 1);
    unsigned seed = (unsigned)l->id * 7919u + 1;
    while (!l->stop) {
        if (l->writer) {
            if (l->acked + l->unknown >= l->cap)
                break;
            int n = l->acked + l->unknown;
            char key[32], val[32];
            snprintf(key, sizeof key, "w%d:%d", l->id, n);
            snprintf(val, sizeof val, "%d", n);
            int rc = pc_client_set(c, key, strlen(key), val, strlen(val), NULL, NULL);
            if (rc == 0) {
                l->ok[n] = 1;
                l->acked++;
            } else {
                l->ok[n] = 2;
                l->unknown++;
                if (rc != PC_ETIMEDOUT && rc != PC_ECONN && rc != PC_EBACKEND) {
                    l->other_errors++;
                    fprintf(stderr, "# writer %d: SET %s failed: %s (%s)\n", l->id, key,
                            pc_strerror(rc), pc_client_errmsg(c));
                }
            }
        } else {
            load_t *w = l->src;
            int have = w->acked + w->unknown;
            if (have == 0) {
                usleep(1000);
                continue;
            }
            int n = (int)(rand_r(&seed) % (unsigned)have);
            if (w->ok[n] != 1)
                continue;
            char key[32], val[32];
            snprintf(key, sizeof key, "w%d:%d", w->id, n);
            snprintf(val, sizeof val, "%d", n);
            pc_value_t v;
            int rc = pc_client_get(c, key, strlen(key), &v);
            l->reads++;
            if (rc != 0) {
                l->read_errors++;
                if (l->mark)
                    l->errors_after++;
            } else if (v.len != strlen(val) || memcmp(v.data, val, v.len) != 0) {
                l->wrong++;
            }
            pc_value_free(&v);
        }
    }
    pc_client_free(&c);
    return NULL;
}

typedef struct loadset {
    load_t w[2], r[2];
    pthread_t t[4];
} loadset_t;

static void load_start(loadset_t *ls, const char *nodes)
{
    memset(ls, 0, sizeof *ls);
    for (int i = 0; i < 2; i++) {
        ls->w[i] = (load_t){.nodes = nodes, .writer = 1, .id = i, .cap = 200000};
        ls->w[i].ok = calloc((size_t)ls->w[i].cap, sizeof(atomic_int));
        ls->r[i] = (load_t){.nodes = nodes, .id = 10 + i, .src = &ls->w[i]};
        pthread_create(&ls->t[2 * i], NULL, load_run, &ls->w[i]);
        pthread_create(&ls->t[2 * i + 1], NULL, load_run, &ls->r[i]);
    }
}

static void load_mark(loadset_t *ls)
{
    ls->r[0].mark = ls->r[1].mark = 1;
}

static void load_stop(loadset_t *ls)
{
    for (int i = 0; i < 2; i++)
        ls->w[i].stop = ls->r[i].stop = 1;
    for (int i = 0; i < 4; i++)
        pthread_join(ls->t[i], NULL);
}

static long load_writes(const loadset_t *ls)
{
    return ls->w[0].acked + ls->w[1].acked;
}

static int writes_reached(void *p)
{
    void **a = p;
    return load_writes(a[0]) >= *(long *)a[1];
}

/* Waits until `more` more writes were acknowledged (the load is alive). */
static void load_progress(loadset_t *ls, long more)
{
    long want = load_writes(ls) + more;
    void *a[2] = {ls, &want};
    assert_true(pc_h_poll(writes_reached, a, 20000));
}

/* Every acknowledged write is in Redis with its value. */
static void check_acked_in_redis(cluster_t *cl, loadset_t *ls)
{
    long checked = 0;
    for (int i = 0; i < 2; i++) {
        load_t *w = &ls->w[i];
        for (int n = 0; n < w->acked + w->unknown; n++) {
            if (w->ok[n] != 1)
                continue;
            redisReply *r = redisCommand(cl->rc, "GET w%d:%d", w->id, n);
            assert_non_null(r);
            char val[32];
            snprintf(val, sizeof val, "%d", n);
            if (r->type != REDIS_REPLY_STRING || strcmp(r->str, val) != 0)
                fail_msg("acknowledged write w%d:%d is not in Redis", w->id, n);
            freeReplyObject(r);
            checked++;
        }
    }
    printf("# %ld acknowledged writes checked in Redis (%d + %d with unknown outcome)\n",
           checked, ls->w[0].unknown, ls->w[1].unknown);
}

static void load_free(loadset_t *ls)
{
    free(ls->w[0].ok);
    free(ls->w[1].ok);
}

/* No client saw an error or a wrong value, and every write is in Redis. */
static void assert_load_clean(cluster_t *cl, loadset_t *ls)
{
    assert_int_equal(ls->w[0].unknown + ls->w[1].unknown, 0);
    assert_int_equal(ls->r[0].read_errors + ls->r[1].read_errors, 0);
    assert_int_equal(ls->r[0].wrong + ls->r[1].wrong, 0);
    check_acked_in_redis(cl, ls);
    load_free(ls);
}

static int member_state_is(void *p)
{
    void **a = p;
    const pc_h_proc_t *node = a[0];
    const char *name = a[1];
    uint32_t want = *(uint32_t *)a[2];
    view_t v;
    return cluster_view(node, name, &v) == 0 && v.found && v.state == want;
}

/* kill -9 under load: detected, reads go on, acknowledged writes are in
 * Redis; the node comes back with a new incarnation. */
static void test_kill9_under_load_and_rejoin(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 3);
    wait_converged(&cl, 3, 10000);
    char nodes[256];
    snprintf(nodes, sizeof nodes, "%s,%s", cl.node[0].addr, cl.node[1].addr);
    loadset_t ls;
    load_start(&ls, nodes);
    load_progress(&ls, 500);

    view_t before;
    assert_int_equal(cluster_view(&cl.node[0], cl.node[2].addr, &before), 0);
    assert_true(before.found);
    int port = cl.node[2].port;
    char name[64];
    snprintf(name, sizeof name, "%s", cl.node[2].addr);
    uint64_t t0 = pc_h_now_ms();
    pc_h_stop(&cl.node[2], SIGKILL, 5000);
    cl.node[2].pid = 0;

    /* Both survivors declare it dead. */
    uint32_t dead = PC_WIRE_DEAD;
    uint64_t detect[2];
    for (int i = 0; i < 2; i++) {
        void *a[3] = {&cl.node[i], name, &dead};
        assert_true(pc_h_poll(member_state_is, a, 20000));
        detect[i] = pc_h_now_ms() - t0;
    }
    printf("# kill -9: declared dead after %llu ms and %llu ms (probe %s)\n",
           (unsigned long long)detect[0], (unsigned long long)detect[1], PROBE);
    /* The configured bound: suspicion timeout at most 6 x 4 x log10(3)-ish
     * probe intervals plus the probe itself; with 200 ms probes well
     * under 10 s. */
    assert_true(detect[0] < 10000 && detect[1] < 10000);
    load_mark(&ls);
    load_progress(&ls, 500);

    /* Restart on the same address: a new incarnation, alive everywhere. */
    assert_int_equal(node_up(&cl, 2, cl.node[0].addr, port), 0);
    uint32_t alive = PC_WIRE_ALIVE;
    for (int i = 0; i < 3; i++) {
        void *a[3] = {&cl.node[i], name, &alive};
        assert_true(pc_h_poll(member_state_is, a, 20000));
    }
    view_t after;
    assert_int_equal(cluster_view(&cl.node[0], name, &after), 0);
    printf("# rejoined: incarnation %llu -> %llu\n", (unsigned long long)before.incarnation,
           (unsigned long long)after.incarnation);
    assert_true(after.incarnation > before.incarnation);
    wait_converged(&cl, 3, 10000);
    load_progress(&ls, 500);
    load_stop(&ls);

    long reads = ls.r[0].reads + ls.r[1].reads;
    long rerr = ls.r[0].read_errors + ls.r[1].read_errors;
    long after_err = ls.r[0].errors_after + ls.r[1].errors_after;
    printf("# reads: %ld, failed %ld (%ld after the death was declared), wrong %ld\n", reads, rerr,
           after_err, ls.r[0].wrong + ls.r[1].wrong);
    assert_int_equal(ls.r[0].wrong + ls.r[1].wrong, 0);
    assert_int_equal(after_err, 0);
    assert_int_equal(ls.w[0].other_errors + ls.w[1].other_errors, 0);
    check_acked_in_redis(&cl, &ls);
    load_free(&ls);
    cluster_down(&cl);
}

/* A node joins under load: keys are handed to it and no client sees an
 * error. */
static void test_join_under_load_hands_off(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 3);
    wait_converged(&cl, 3, 10000);
    char nodes[256];
    snprintf(nodes, sizeof nodes, "%s", cl.node[0].addr);
    loadset_t ls;
    load_start(&ls, nodes);
    load_progress(&ls, 2000);
    assert_int_equal(node_up(&cl, 3, cl.node[1].addr, 0), 0);
    wait_converged(&cl, 4, 10000);
    /* The newcomer received keys from their previous owners. */
    assert_true(pc_h_poll(handoffs_idle, &cl, 10000));
    int64_t got = stat_of(&cl.node[3], "handoff_received");
    int64_t refused = stat_of(&cl.node[3], "handoff_refused");
    /* The old replicas that dropped out of those slots freed their copies. */
    int64_t purged = stat_sum_but(&cl, "purged", 3);
    load_progress(&ls, 1000);
    load_stop(&ls);
    printf("# join: %lld entries handed to the new node (%lld refused as not newer), %lld "
           "copies purged elsewhere; %ld writes, %ld reads\n",
           (long long)got, (long long)refused, (long long)purged, load_writes(&ls),
           ls.r[0].reads + ls.r[1].reads);
    assert_true(got > 0);
    assert_true(purged > 0);
    assert_load_clean(&cl, &ls);
    cluster_down(&cl);
}

/* A node leaves (SIGTERM) under load: it hands its keys over, nobody sees
 * an error, and the others record it as left. */
static void test_graceful_leave_hands_off(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 4);
    wait_converged(&cl, 4, 10000);
    char nodes[256];
    snprintf(nodes, sizeof nodes, "%s,%s", cl.node[0].addr, cl.node[1].addr);
    loadset_t ls;
    load_start(&ls, nodes);
    load_progress(&ls, 2000);
    int64_t recv0 = stat_sum_but(&cl, "handoff_received", 3);
    char name[64];
    snprintf(name, sizeof name, "%s", cl.node[3].addr);
    int st = pc_h_stop(&cl.node[3], SIGTERM, 15000);
    cl.node[3].pid = 0;
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    uint32_t left = PC_WIRE_LEFT;
    for (int i = 0; i < 3; i++) {
        void *a[3] = {&cl.node[i], name, &left};
        assert_true(pc_h_poll(member_state_is, a, 10000));
    }
    int64_t recv = stat_sum_but(&cl, "handoff_received", 3) - recv0;
    load_progress(&ls, 1000);
    load_stop(&ls);
    printf("# leave: %lld entries handed over by the leaving node\n", (long long)recv);
    assert_true(recv > 0);
    assert_load_clean(&cl, &ls);
    cluster_down(&cl);
}

/* ---- home loops in a cluster ------------------------------------------------ */

typedef struct homes_arg {
    cluster_t *cl;
    int64_t want;
} homes_arg_t;

/* Every running node reports home_loops == want. */
static int homes_are(void *p)
{
    homes_arg_t *a = p;
    for (int i = 0; i < MAXN; i++)
        if (a->cl->node[i].pid > 0 && stat_of(&a->cl->node[i], "home_loops") != a->want)
            return 0;
    return 1;
}

/* n nodes of two loops each, converged and with their homes on. The
 * caller clears node_extra again (nodes it starts later get two loops). */
static void two_loop_cluster_up(cluster_t *cl, int n)
{
    static const char *const two[] = {"--threads", "2", NULL};
    node_extra = two;
    cluster_up(cl, n);
    wait_converged(cl, n, 10000);
    homes_arg_t on = {cl, 2};
    assert_true(pc_h_poll(homes_are, &on, 15000));
}

/*
 * Nodes of two loops each, settled: every loop reads and writes its share
 * of the owned keys through its own Redis connection, and forwards and
 * replicates over its own peer connections. Seed-only clients make nodes
 * forward (from whichever loop took the connection), ring-aware ones go
 * to owners; a fourth node joining turns the homes off while the ring
 * settles and the keys are handed over, and on again after. Nobody sees
 * an error or a wrong value, and every acknowledged write is in Redis.
 */
static void test_home_loops_in_a_cluster(void **state)
{
    (void)state;
    cluster_t cl;
    two_loop_cluster_up(&cl, 3);
    homes_arg_t on = {&cl, 2};

    char nodes[256];
    snprintf(nodes, sizeof nodes, "%s,%s", cl.node[0].addr, cl.node[1].addr);
    loadset_t ls;
    load_start(&ls, nodes);
    load_progress(&ls, 1000);

    /* Through one node only: most keys are forwarded to their owners.
     * 24 connections: SO_REUSEPORT puts them all on one loop with odds
     * of 2^-23. */
    int64_t fwd0 = stat_of(&cl.node[0], "worker_forwarded");
    int64_t repl0 = stat_sum(&cl, "replicated"), applied0 = stat_sum(&cl, "replica_applied");
    enum { SEEDS = 24, KEYS = 480 };
    pc_client_t *seed[SEEDS];
    for (int i = 0; i < SEEDS; i++)
        seed[i] = client(cl.node[0].addr, 0);
    pc_client_t *other = client(cl.node[1].addr, 0);
    char k[32], v[32];
    for (int i = 0; i < KEYS; i++) {
        snprintf(k, sizeof k, "hf:%d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(pc_client_set(seed[i % SEEDS], k, strlen(k), v, strlen(v), NULL, NULL),
                         0);
    }
    for (int i = 0; i < KEYS; i++) {
        snprintf(k, sizeof k, "hf:%d", i);
        snprintf(v, sizeof v, "v%d", i);
        pc_value_t got;
        assert_int_equal(pc_client_get(other, k, strlen(k), &got), 0);
        assert_int_equal(got.len, strlen(v));
        assert_memory_equal(got.data, v, got.len);
        pc_value_free(&got);
        redisReply *r = redisCommand(cl.rc, "GET %s", k);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_string_equal(r->str, v);
        freeReplyObject(r);
    }
    for (int i = 0; i < SEEDS; i++)
        pc_client_free(&seed[i]);
    pc_client_free(&other);
    int64_t fwd = stat_of(&cl.node[0], "worker_forwarded") - fwd0;
    int64_t repl = stat_sum(&cl, "replicated") - repl0;
    int64_t applied = stat_sum(&cl, "replica_applied") - applied0;
    printf("# homes on: node 0's worker forwarded %lld requests itself; %lld entries "
           "replicated, %lld applied; %lld requests relayed to a worker home\n",
           (long long)fwd, (long long)repl, (long long)applied,
           (long long)stat_sum(&cl, "home_relayed"));
    assert_true(fwd > 0);
    assert_true(repl > 0 && applied > 0);
    assert_int_equal(stat_sum(&cl, "replicate_errors"), 0);
    assert_int_equal(stat_sum(&cl, "home_loops"), 6);
    assert_int_equal(stat_sum(&cl, "backend_connections"), 6);

    /* A fourth member: the homes turn off while the ring settles and
     * keys are handed over, then on again everywhere. */
    assert_int_equal(node_up(&cl, 3, cl.node[1].addr, 0), 0);
    homes_arg_t off = {&cl, 1};
    assert_true(pc_h_poll(homes_are, &off, 10000));
    wait_converged(&cl, 4, 10000);
    load_progress(&ls, 1000);
    assert_true(pc_h_poll(handoffs_idle, &cl, 10000));
    assert_true(pc_h_poll(homes_are, &on, 15000));
    load_progress(&ls, 1000);
    load_stop(&ls);
    printf("# %ld writes, %ld reads across the join\n", load_writes(&ls),
           ls.r[0].reads + ls.r[1].reads);
    assert_load_clean(&cl, &ls);
    node_extra = NULL;
    cluster_down(&cl);
}

/* ---- the hop limit ---------------------------------------------------------- */

static int on_status(void *arg, int i, const pc_response_t *r)
{
    one_t *o = arg;
    (void)i;
    o->status = r->status;
    return 0;
}

/* Sends FORWARD(hops, inner) to a node; returns the reply status. */
static uint32_t send_forward(const pc_h_proc_t *node, uint32_t hops, const pc_request_t *inner)
{
    one_t o = {.status = 999};
    assert_int_equal(forward1(node, hops, inner, on_status, &o), 0);
    return o.status;
}

/*
 * Two nodes that disagree about a key's owner cannot bounce it: a request
 * relayed once is never relayed again. Played here by relaying to a node
 * that does not own the key, as a node with a stale ring would.
 */
static void test_relayed_request_is_never_relayed_again(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 2);
    wait_converged(&cl, 2, 10000);
    view_t v;
    assert_int_equal(cluster_view(&cl.node[0], NULL, &v), 0);
    pc_ring_t *ring = NULL;
    assert_int_equal(pc_ring_new(v.ring, (size_t)v.nring, 1, &ring), 0);
    /* A key node 0 owns, sent relayed to node 1. */
    char key[32];
    for (int k = 0;; k++) {
        snprintf(key, sizeof key, "hop:%d", k);
        long o = pc_ring_owner(ring, key, strlen(key));
        if (strcmp(pc_ring_name(ring, (size_t)o), cl.node[0].addr) == 0)
            break;
    }
    pc_ring_free(&ring);
    int64_t fwd0 = stat_of(&cl.node[1], "forwarded");
    int64_t nor0 = stat_of(&cl.node[1], "not_owner_reads");

    pc_request_t set = {.op = PC_OP_SET, .id = 1, .key = {(const uint8_t *)key, (uint32_t)strlen(key)},
                        .value = {(const uint8_t *)"v", 1}};
    assert_int_equal(send_forward(&cl.node[1], 1, &set), PC_ST_RETRY);
    redisReply *r = redisCommand(cl.rc, "EXISTS %s", key);
    assert_int_equal(r->integer, 0); /* RETRY: nothing was applied */
    freeReplyObject(r);

    pc_request_t get = {.op = PC_OP_GET, .id = 2, .key = set.key};
    assert_int_equal(send_forward(&cl.node[1], 1, &get), PC_ST_NOT_FOUND);
    assert_int_equal(stat_of(&cl.node[1], "forwarded"), fwd0);
    assert_int_equal(stat_of(&cl.node[1], "not_owner_reads"), nor0 + 1);

    /* A FORWARD inside a FORWARD is refused outright. */
    pc_buf_t in;
    pc_buf_init(&in, 0);
    assert_int_equal(pc_proto_encode_request(&in, &get), 0);
    pc_request_t inner = {.op = PC_OP_FORWARD, .id = 3, .hops = 1,
                          .body = {in.data + 4, (uint32_t)(in.len - 4)}};
    assert_int_equal(send_forward(&cl.node[1], 1, &inner), PC_ST_BAD_REQUEST);
    pc_buf_free(&in);
    cluster_down(&cl);
}

static void owner_of(const pc_h_proc_t *node, const char *key, char *name, size_t cap);

/* A key that `owner` owns on `node`'s ring, "<prefix><n>". */
static void key_owned_by(const pc_h_proc_t *node, const pc_h_proc_t *owner, const char *prefix,
                         char *key, size_t cap)
{
    char name[64];
    for (int k = 0;; k++) {
        snprintf(key, cap, "%s%d", prefix, k);
        owner_of(node, key, name, sizeof name);
        if (strcmp(name, owner->addr) == 0)
            return;
    }
}

/* `inner` in a FORWARD carrying `deadline_ms`; the reply status. */
static uint32_t send_forward_until(const pc_h_proc_t *node, const pc_request_t *inner,
                                   uint64_t deadline_ms)
{
    one_t o = {.status = 999};
    assert_int_equal(forward_until(node, 1, deadline_ms, inner, on_status, &o), 0);
    return o.status;
}

/*
 * A forwarded write carries the moment its relaying node gives up
 * (PROTOCOL.md §5.10): the owner applies it only before that, less the
 * clock skew it allows (100 ms), and answers RETRY (nothing applied)
 * after.
 */
static void test_forwarded_write_past_its_deadline_is_refused(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 2);
    wait_converged(&cl, 2, 10000);
    char key[32];
    key_owned_by(&cl.node[0], &cl.node[1], "dl:", key, sizeof key);
    pc_bytes_t k = {(const uint8_t *)key, (uint32_t)strlen(key)};
    pc_request_t set = {.op = PC_OP_SET, .id = 1, .key = k, .value = {(const uint8_t *)"v", 1}};
    int64_t late0 = stat_of(&cl.node[1], "forwarded_late");

    assert_int_equal(send_forward_until(&cl.node[1], &set, pc_h_wall_ms() - 1), PC_ST_RETRY);
    /* inside the skew the owner allows: refused too */
    assert_int_equal(send_forward_until(&cl.node[1], &set, pc_h_wall_ms() + 50), PC_ST_RETRY);
    pc_request_t del = {.op = PC_OP_DEL, .id = 2, .key = k};
    assert_int_equal(send_forward_until(&cl.node[1], &del, 1), PC_ST_RETRY);
    assert_int_equal(stat_of(&cl.node[1], "forwarded_late"), late0 + 3);
    redisReply *r = redisCommand(cl.rc, "EXISTS %s", key);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    /* a deadline well ahead, and none at all: applied */
    assert_int_equal(send_forward_until(&cl.node[1], &set, pc_h_wall_ms() + 30000), PC_ST_OK);
    set.value = (pc_bytes_t){(const uint8_t *)"w", 1};
    assert_int_equal(send_forward_until(&cl.node[1], &set, 0), PC_ST_OK);
    r = redisCommand(cl.rc, "GET %s", key);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "w");
    freeReplyObject(r);
    assert_int_equal(stat_of(&cl.node[1], "forwarded_late"), late0 + 3);
    cluster_down(&cl);
}

/* For pc_h_poll: the node's STATS counter `name` has reached `want`. */
typedef struct stat_goal {
    const pc_h_proc_t *node;
    const char *name;
    int64_t want;
} stat_goal_t;

static int stat_reached(void *p)
{
    stat_goal_t *a = p;
    return stat_of(a->node, a->name) >= a->want;
}

/*
 * Issue 15's stalled owner: a write relayed to an owner that is stopped
 * (SIGSTOP) fails at the relaying node after --peer-timeout; when the
 * owner wakes it reads the FORWARD still waiting in its socket -- and
 * refuses it, its deadline being past. Before, it applied it with a fresh
 * version, after the client had been told it failed.
 */
static void test_stalled_owner_does_not_apply_a_failed_relay(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 2);
    wait_converged(&cl, 2, 10000);
    char key[32];
    key_owned_by(&cl.node[0], &cl.node[1], "stall:", key, sizeof key);
    int64_t late0 = stat_of(&cl.node[1], "forwarded_late");
    pc_request_t set = {.op = PC_OP_SET, .id = 1,
                        .key = {(const uint8_t *)key, (uint32_t)strlen(key)},
                        .value = {(const uint8_t *)"late", 4}};
    pid_t stalled = cl.node[1].pid;
    if (pc_h_stop_process(stalled, 5000) != 0) {
        kill(stalled, SIGCONT);
        fail_msg("node 1 did not stop within 5 s of SIGSTOP");
    }
    one_t o = {.status = 999};
    int rc = call1(&cl.node[0], &set, on_status, &o); /* relayed by node 0 */
    kill(cl.node[1].pid, SIGCONT);
    assert_int_equal(rc, 0);
    assert_int_equal(o.status, PC_ST_BACKEND_UNAVAILABLE);
    stat_goal_t la = {&cl.node[1], "forwarded_late", late0 + 1};
    assert_true(pc_h_poll(stat_reached, &la, 10000));
    redisReply *r = redisCommand(cl.rc, "EXISTS %s", key);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    cluster_down(&cl);
}

/* ---- versions, freshness, settle window ----------------------------------- */

static int on_applied(void *arg, int i, const pc_response_t *r)
{
    one_t *o = arg;
    (void)i;
    o->status = r->status;
    o->stat = r->applied;
    return 0;
}

static int64_t send_replicate(const pc_h_proc_t *node, const char *key, const char *val,
                              uint64_t version)
{
    pc_repl_entry_t e = {.key = {(const uint8_t *)key, (uint32_t)strlen(key)},
                         .value = {(const uint8_t *)val, (uint32_t)strlen(val)},
                         .has_value = 1, .version = version, .ttl_ms = -1};
    pc_request_t rq = {.op = PC_OP_REPLICATE, .id = 5, .mode = PC_REPL_WRITE,
                       .from = {(const uint8_t *)"test", 4}, .nentries = 1, .entries = &e};
    one_t o = {.status = 999, .stat = -1};
    assert_int_equal(call1(node, &rq, on_applied, &o), 0);
    assert_int_equal(o.status, PC_ST_OK);
    return o.stat;
}

typedef struct got {
    uint32_t status;
    char value[64];
    int64_t ttl;
} got_t;

static int on_get(void *arg, int i, const pc_response_t *r)
{
    got_t *g = arg;
    (void)i;
    g->status = r->status;
    if (r->status == PC_ST_OK) {
        snprintf(g->value, sizeof g->value, "%.*s", (int)r->entry.value.len,
                 (const char *)r->entry.value.ptr);
        g->ttl = r->entry.ttl_ms;
    }
    return 0;
}

/* A GET relayed to `node` (hops 1): what that node itself serves. */
static got_t relayed_get(const pc_h_proc_t *node, const char *key)
{
    pc_request_t get = {.op = PC_OP_GET, .id = 4,
                        .key = {(const uint8_t *)key, (uint32_t)strlen(key)}};
    got_t g = {.status = 999};
    assert_int_equal(forward1(node, 1, &get, on_get, &g), 0);
    return g;
}

/* Name of the owner of key on node's ring. */
static void owner_of(const pc_h_proc_t *node, const char *key, char *name, size_t cap)
{
    view_t v;
    assert_int_equal(cluster_view(node, NULL, &v), 0);
    pc_ring_t *ring = NULL;
    assert_int_equal(pc_ring_new(v.ring, (size_t)v.nring, 1, &ring), 0);
    snprintf(name, cap, "%s", pc_ring_name(ring, (size_t)pc_ring_owner(ring, key, strlen(key))));
    pc_ring_free(&ring);
}

/* A replica stores an entry only if it is newer than what it holds. */
static void test_replica_keeps_the_newer_version(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 2);
    wait_converged(&cl, 2, 10000);
    /* With two members and 2 replicas, node 1 holds every key node 0 owns. */
    char key[32], owner[64];
    for (int k = 0;; k++) {
        snprintf(key, sizeof key, "ver:%d", k);
        owner_of(&cl.node[0], key, owner, sizeof owner);
        if (strcmp(owner, cl.node[0].addr) == 0)
            break;
    }
    uint64_t v = (uint64_t)1 << 50;
    assert_int_equal(send_replicate(&cl.node[1], key, "newer", v), 1);
    assert_int_equal(send_replicate(&cl.node[1], key, "older", v - 1), 0);
    assert_int_equal(send_replicate(&cl.node[1], key, "same", v), 0);
    got_t g = relayed_get(&cl.node[1], key);
    assert_int_equal(g.status, PC_ST_OK);
    assert_string_equal(g.value, "newer");
    cluster_down(&cl);
}

/* Relays to the core that are not accounted for by SYNCs the core took. */
typedef struct relayed_arg {
    const pc_h_proc_t *node;
    int64_t relays; /* besides the last STATS */
    int64_t syncs0;
} relayed_arg_t;

static int relays_are_syncs(void *p)
{
    relayed_arg_t *a = p;
    return a->relays <= 0 || stat_of(a->node, "syncs") - a->syncs0 >= a->relays;
}

/* With homes on, a replicated write is applied on whichever loop its
 * connection reached, not relayed to the core, and still only if newer. */
static void test_replicas_applied_on_any_loop(void **state)
{
    (void)state;
    cluster_t cl;
    two_loop_cluster_up(&cl, 2);
    /* A STATS served through a worker is relayed to the core, and counts
     * itself: of the STATS calls, only the last one can add to the delta.
     * So can node 0's push/pull (a SYNC every 30 s, the first at a random
     * moment), if its peer connection reached node 1's worker: node 1's
     * core counts each one it answers in `syncs`. */
    int64_t work0 = stat_of(&cl.node[1], "worker_requests");
    int64_t syncs0 = stat_of(&cl.node[1], "syncs");
    int64_t relayed0 = stat_of(&cl.node[1], "relayed");
    /* Four keys node 1 owns, so that either of its loops serves a read. */
    char keys[4][32], owner[64];
    for (int k = 0, n = 0; n < 4; k++) {
        snprintf(keys[n], sizeof keys[n], "anyloop:%d", k);
        owner_of(&cl.node[0], keys[n], owner, sizeof owner);
        if (strcmp(owner, cl.node[1].addr) == 0)
            n++;
    }
    /* One connection per call: 40 calls reach both loops (SO_REUSEPORT
     * hashes each connection's ports). */
    uint64_t v = (uint64_t)1 << 50;
    for (int i = 0; i < 40; i++) {
        char val[32];
        const char *key = keys[i % 4];
        snprintf(val, sizeof val, "v%d", i);
        assert_int_equal(send_replicate(&cl.node[1], key, val, v + (uint64_t)i), 1);
        assert_int_equal(send_replicate(&cl.node[1], key, "older", v), 0);
    }
    /* Of the relays, all but the last STATS must be SYNCs the core took:
     * wait for it to have counted them (it reads the relay after the
     * worker sent it) -- never for a REPLICATE, which is never counted
     * there. */
    relayed_arg_t ra = {&cl.node[1], stat_of(&cl.node[1], "relayed") - relayed0 - 1, syncs0};
    if (!pc_h_poll(relays_are_syncs, &ra, 5000))
        fail_msg("node 1 relayed %lld requests to its core besides the last STATS, of which "
                 "only %lld were SYNCs", (long long)ra.relays,
                 (long long)(stat_of(&cl.node[1], "syncs") - syncs0));
    assert_true(ra.relays >= -1);
    assert_true(stat_of(&cl.node[1], "worker_requests") > work0);
    for (int k = 0; k < 4; k++) {
        char want[32];
        snprintf(want, sizeof want, "v%d", 36 + k);
        got_t g = relayed_get(&cl.node[1], keys[k]);
        assert_int_equal(g.status, PC_ST_OK);
        assert_string_equal(g.value, want);
    }
    cluster_down(&cl);
    node_extra = NULL;
}

typedef struct fresh {
    const char *nodes;
    atomic_int stop;
    atomic_long acked[20];
    atomic_int mark;
    /* Written by the reader, polled by the main thread meanwhile. */
    atomic_long reads_after;
    long stale_after, stale_before, errors_after;
} fresh_t;

static void *fresh_writer(void *p)
{
    fresh_t *f = p;
    pc_client_t *c = client(f->nodes, 1);
    for (long n = 1; !f->stop; n++) {
        int k = (int)(n % 20);
        char key[32], val[32];
        snprintf(key, sizeof key, "fresh:%d", k);
        snprintf(val, sizeof val, "%ld", n);
        if (pc_client_set(c, key, strlen(key), val, strlen(val), NULL, NULL) == 0)
            atomic_store(&f->acked[k], n);
    }
    pc_client_free(&c);
    return NULL;
}

static void *fresh_reader(void *p)
{
    fresh_t *f = p;
    pc_client_t *c = client(f->nodes, 1);
    unsigned seed = 7;
    while (!f->stop) {
        int k = (int)(rand_r(&seed) % 20);
        int marked = atomic_load(&f->mark);
        long before = atomic_load(&f->acked[k]);
        char key[32];
        snprintf(key, sizeof key, "fresh:%d", k);
        pc_value_t v;
        int rc = pc_client_get(c, key, strlen(key), &v);
        if (rc == 0) {
            long got = strtol((const char *)v.data, NULL, 10);
            if (got < before) {
                if (marked)
                    f->stale_after++;
                else
                    f->stale_before++;
            }
            pc_value_free(&v);
        } else if (marked && rc != PC_ENOTFOUND) {
            f->errors_after++;
        }
        if (marked)
            f->reads_after++;
    }
    pc_client_free(&c);
    return NULL;
}

static int each_key_written(void *p)
{
    fresh_t *f = p;
    for (int k = 0; k < 20; k++)
        if (atomic_load(&f->acked[k]) < 100)
            return 0;
    return 1;
}

static int fresh_reads(void *p)
{
    return ((fresh_t *)p)->reads_after >= 2000;
}

/* Once the owner is declared dead, no read returns a value older than the
 * last write acknowledged before the read began. */
static void test_reads_after_owner_death_are_fresh(void **state)
{
    (void)state;
    cluster_t cl;
    cluster_up(&cl, 3);
    wait_converged(&cl, 3, 10000);
    char nodes[256];
    snprintf(nodes, sizeof nodes, "%s,%s", cl.node[0].addr, cl.node[1].addr);
    fresh_t f;
    memset(&f, 0, sizeof f);
    f.nodes = nodes;
    pthread_t tw, tr;
    pthread_create(&tw, NULL, fresh_writer, &f);
    pthread_create(&tr, NULL, fresh_reader, &f);
    /* Let every key be written a few times, so each node holds copies. */
    if (!pc_h_poll(each_key_written, &f, 30000)) {
        f.stop = 1; /* they use f: stopped before the test returns */
        pthread_join(tw, NULL);
        pthread_join(tr, NULL);
        fail_msg("the writer did not write every key 100 times within 30 s");
    }
    char name[64];
    snprintf(name, sizeof name, "%s", cl.node[2].addr);
    pc_h_stop(&cl.node[2], SIGKILL, 5000);
    cl.node[2].pid = 0;
    uint32_t dead = PC_WIRE_DEAD;
    for (int i = 0; i < 2; i++) {
        void *a[3] = {&cl.node[i], name, &dead};
        assert_true(pc_h_poll(member_state_is, a, 20000));
    }
    atomic_store(&f.mark, 1);
    assert_true(pc_h_poll(fresh_reads, &f, 30000));
    f.stop = 1;
    pthread_join(tw, NULL);
    pthread_join(tr, NULL);
    printf("# after the death: %ld reads, %ld stale, %ld errors (%ld stale before it was "
           "declared)\n",
           f.reads_after, f.stale_after, f.errors_after, f.stale_before);
    assert_int_equal(f.stale_after, 0);
    assert_int_equal(f.errors_after, 0);
    cluster_down(&cl);
}

/* Both members read a fresh Redis key through with no expiry: their own
 * settle windows (which start when a node starts) are over. */
typedef struct settled_arg {
    cluster_t *cl;
    pc_client_t *c;
    int n;
} settled_arg_t;

static int settled(void *p)
{
    settled_arg_t *a = p;
    int done[2] = {0, 0};
    for (int tries = 0; tries < 40 && !(done[0] && done[1]); tries++) {
        char key[32], owner[64];
        snprintf(key, sizeof key, "probe:%d", a->n++);
        redisReply *r = redisCommand(a->cl->rc, "SET %s x", key);
        freeReplyObject(r);
        owner_of(&a->cl->node[0], key, owner, sizeof owner);
        int i = strcmp(owner, a->cl->node[0].addr) == 0 ? 0 : 1;
        pc_value_t v;
        if (pc_client_get(a->c, key, strlen(key), &v) == 0 && v.ttl_ms == -1)
            done[i] = 1;
        pc_value_free(&v);
    }
    return done[0] && done[1];
}

/*
 * Copies a node makes in slots it just gained expire within 2 x
 * ring-settle: an out-of-date node may still write Redis.
 *
 * Which reads fall in the newcomer's window is known from the clock on
 * both sides, never assumed: the window opens when the newcomer gains
 * its slots (after node_up began, before wait_converged returned) and is
 * ring-settle long. A read that ended before node_up began + ring-settle
 * was inside it, so its copy must be capped; one that began after
 * wait_converged returned + ring-settle was after it, so its copy must
 * not be. Reads in between may be either. ring-settle is 5 s here, so
 * that a loaded machine still reads many keys inside the window.
 */
static void test_settle_window_caps_new_copies(void **state)
{
    (void)state;
    enum { SETTLE_MS = 5000, KEYS = 60 };
    ring_settle = "5s";
    cluster_t cl;
    cluster_up(&cl, 2);
    wait_converged(&cl, 2, 10000);
    pc_client_t *c0 = client(cl.node[0].addr, 1);
    settled_arg_t sa = {&cl, c0, 0};
    assert_true(pc_h_poll(settled, &sa, 4 * SETTLE_MS));
    pc_client_free(&c0);
    for (int k = 0; k < KEYS; k++) {
        redisReply *r = redisCommand(cl.rc, "SET settle:%d v%d", k, k);
        freeReplyObject(r);
    }
    uint64_t t_up = pc_h_now_ms();
    assert_int_equal(node_up(&cl, 2, cl.node[0].addr, 0), 0);
    wait_converged(&cl, 3, 10000);
    uint64_t t_conv = pc_h_now_ms();
    pc_client_t *c = client(cl.node[0].addr, 1);
    int inside = 0, outside = 0, unsure = 0, others = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[32], owner[64];
        snprintf(key, sizeof key, "settle:%d", k);
        owner_of(&cl.node[0], key, owner, sizeof owner);
        pc_value_t v;
        uint64_t t0 = pc_h_now_ms();
        assert_int_equal(pc_client_get(c, key, strlen(key), &v), 0);
        uint64_t t1 = pc_h_now_ms();
        if (strcmp(owner, cl.node[2].addr) != 0) {
            others++;
            assert_int_equal(v.ttl_ms, -1);
        } else if (t1 < t_up + SETTLE_MS) {
            inside++;
            if (!(v.ttl_ms > 0 && v.ttl_ms <= 2 * SETTLE_MS))
                fail_msg("%s, read inside the newcomer's settle window: ttl %lld ms, not capped "
                         "to (0, %d]", key, (long long)v.ttl_ms, 2 * SETTLE_MS);
        } else if (t0 > t_conv + SETTLE_MS) {
            outside++;
            assert_int_equal(v.ttl_ms, -1);
        } else {
            unsure++;
            assert_true(v.ttl_ms == -1 || (v.ttl_ms > 0 && v.ttl_ms <= 2 * SETTLE_MS));
        }
        pc_value_free(&v);
    }
    printf("# settle: %d keys read through by the newcomer inside its window, capped (<= %d "
           "ms); %d after it and %d on its edge; %d elsewhere, not capped; reads ended %llu ms "
           "after the newcomer was started\n",
           inside, 2 * SETTLE_MS, outside, unsure, others,
           (unsigned long long)(pc_h_now_ms() - t_up));
    assert_true(inside > 0 && others > 0);
    assert_true(stat_of(&cl.node[2], "settle_capped") >= inside);
    pc_client_free(&c);
    cluster_down(&cl);
    ring_settle = "2s";
}

/* ---- hedged reads ----------------------------------------------------------- */

/* The node a test stopped with SIGSTOP: its teardown continues it even
 * when an assertion ended the test early (0 = none). */
static pid_t stopped_pid;

static int continue_stopped(void **state)
{
    (void)state;
    if (stopped_pid > 0)
        kill(stopped_pid, SIGCONT);
    stopped_pid = 0;
    node_extra = NULL;
    return 0;
}

/* A GET (or an MGET of the one key) sent on a new connection to `node`
 * (here: PROTOCOL.md §5.3, §5.4), its answer not read yet: the socket
 * (receive timeout rcv_ms), or -1. */
static int read_sent(const pc_h_proc_t *node, uint32_t op, const char *key, uint8_t here,
                     int rcv_ms)
{
    int fd = pc_h_connect(node->port, rcv_ms);
    if (fd < 0)
        return -1;
    pc_bytes_t k = {(const uint8_t *)key, (uint32_t)strlen(key)};
    pc_request_t get = {.op = op, .id = 60 + here, .key = k, .here = here};
    if (op == PC_OP_MGET) {
        get.nkeys = 1;
        get.keys = &k;
    }
    pc_buf_t b;
    pc_buf_init(&b, 0);
    int ok = pc_proto_encode_request(&b, &get) == 0 && pc_h_send_all(fd, &b) == 0;
    pc_buf_free(&b);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

static int get_sent(const pc_h_proc_t *node, const char *key, uint8_t here, int rcv_ms)
{
    return read_sent(node, PC_OP_GET, key, here, rcv_ms);
}

/* An MGET answer's first entry, as on_get takes a GET's. */
static int on_mget1(void *arg, int i, const pc_response_t *r)
{
    got_t *g = arg;
    (void)i;
    g->status = r->status;
    if (r->status == PC_ST_OK && r->nentries == 1) {
        pc_response_t one = *r;
        one.status = r->entries[0].status;
        one.entry = r->entries[0];
        return on_get(arg, i, &one);
    }
    return 0;
}

/* The answer to read_sent's request (status 999: none within the socket's
 * timeout; an MGET's: its entry's); closes fd. */
static got_t read_answer(int fd, uint32_t op)
{
    got_t g = {.status = 999};
    if (fd >= 0) {
        pc_h_read_responses(fd, 1, op == PC_OP_MGET ? on_mget1 : on_get, &g);
        close(fd);
    }
    return g;
}

static got_t get_answer(int fd)
{
    return read_answer(fd, PC_OP_GET);
}

static void stop_node(pid_t pid)
{
    stopped_pid = pid;
    if (pc_h_stop_process(pid, 5000) != 0)
        fail_msg("pid %d: not every thread stopped within 5 s of SIGSTOP", (int)pid);
}

/* The key's owner and first replica (indexes into cl->node), by node 0's
 * ring with 2 replicas. */
static void owner_and_replica(cluster_t *cl, const char *key, int *owner, int *replica)
{
    view_t v;
    assert_int_equal(cluster_view(&cl->node[0], NULL, &v), 0);
    pc_ring_t *ring = NULL;
    assert_int_equal(pc_ring_new(v.ring, (size_t)v.nring, 2, &ring), 0);
    uint32_t at[2];
    assert_int_equal(pc_ring_slot_members(ring, pc_ring_slot(key, strlen(key)), at, 2), 2);
    *owner = *replica = -1;
    for (int i = 0; i < cl->n; i++) {
        if (strcmp(pc_ring_name(ring, at[0]), cl->node[i].addr) == 0)
            *owner = i;
        if (strcmp(pc_ring_name(ring, at[1]), cl->node[i].addr) == 0)
            *replica = i;
    }
    pc_ring_free(&ring);
    assert_true(*owner >= 0 && *replica >= 0 && *owner != *replica);
}

/* Three nodes with 2 replicas for the stalled-owner tests: probes slowed
 * to one per 10 minutes (nobody suspects the stopped owner) and
 * --peer-timeout 5 s, longer than a client's 2 s timeout. */
static void stall_cluster_up(cluster_t *cl)
{
    static const char *const args[] = {"--peer-timeout", "5000ms", "--probe-interval", "600s",
                                       "--replicas", "2", NULL};
    node_extra = args;
    cluster_up(cl, 3);
    wait_converged(cl, 3, 10000);
}

/* A ring-aware client of the three nodes of stall_cluster_up(). */
static pc_client_t *ring_client(const cluster_t *cl, int timeout_ms)
{
    char seeds[256];
    snprintf(seeds, sizeof seeds, "%s,%s,%s", cl->node[0].addr, cl->node[1].addr,
             cl->node[2].addr);
    pc_client_options_t o = {.nodes = seeds, .timeout_ms = timeout_ms};
    pc_client_t *c = NULL;
    assert_int_equal(pc_client_new(&o, &c), 0);
    return c;
}

/*
 * A hedged read: the owner of a key is stalled (SIGSTOP), and a GET (or
 * an MGET) that says `here`, sent to the key's replica, is answered by the
 * replica at once -- never relayed to the owner, on whichever of the
 * replica's loops it lands -- while a plain GET sent there meanwhile
 * waits for the owner until --peer-timeout (5 s here) and only then is
 * served by the replica.
 * Probes are slowed to one per 10 minutes so that nobody suspects the
 * stalled owner during the test: a suspect owner's reads go to the
 * replica anyway, and the plain GET would not wait.
 */
static void test_here_get_at_a_replica_skips_a_stalled_owner(void **state)
{
    (void)state;
    enum { HEDGES = 4, ANSWER_MS = 1000, PEER_TIMEOUT_MS = 5000 };
    cluster_t cl;
    stall_cluster_up(&cl);

    char key[32] = "hedge:0";
    int owner, replica;
    owner_and_replica(&cl, key, &owner, &replica);
    const pc_h_proc_t *rn = &cl.node[replica];

    /* Written at the owner, and replicated before the owner stalls. */
    stat_goal_t aa = {rn, "replica_applied", stat_of(rn, "replica_applied") + 1};
    pc_client_t *c = client(cl.node[owner].addr, 0);
    assert_int_equal(pc_client_set(c, key, strlen(key), "hedged", 6, NULL, NULL), 0);
    pc_client_free(&c);
    if (!pc_h_poll(stat_reached, &aa, 10000))
        fail_msg("the replica did not apply the owner's write within 10 s");

    int64_t here0 = stat_of(rn, "here_reads"), nor0 = stat_of(rn, "not_owner_reads");
    int64_t fwd0 = stat_of(rn, "forwarded"), ferr0 = stat_of(rn, "forward_errors");
    stop_node(cl.node[owner].pid);

    /* The plain GET first: it is relayed to the stalled owner and waits. */
    uint64_t plain_t0 = pc_h_now_ms();
    int plain = get_sent(rn, key, 0, 4 * PEER_TIMEOUT_MS);
    assert_true(plain >= 0);
    /* Each on its own connection, so that both loops of a two-loop
     * replica serve some (the kernel spreads connections over them). */
    uint64_t slowest = 0;
    for (int i = 0; i < HEDGES; i++) {
        uint32_t op = i % 2 ? PC_OP_MGET : PC_OP_GET;
        uint64_t t0 = pc_h_now_ms();
        got_t g = read_answer(read_sent(rn, op, key, 1, 3000), op);
        uint64_t ms = pc_h_now_ms() - t0;
        if (g.status != PC_ST_OK || strcmp(g.value, "hedged") != 0 || ms >= ANSWER_MS)
            fail_msg("%s with here at the replica, #%d: status %u value \"%s\" after %llu ms "
                     "(want OK \"hedged\" within %d ms)",
                     pc_op_name(op), i, g.status, g.value, (unsigned long long)ms, ANSWER_MS);
        if (ms > slowest)
            slowest = ms;
    }
    got_t g = get_answer(plain);
    uint64_t plain_ms = pc_h_now_ms() - plain_t0;
    assert_int_equal(kill(stopped_pid, SIGCONT), 0);
    stopped_pid = 0;
    printf("# owner stalled: %d GETs and MGETs with here answered by the replica in %llu ms at "
           "most; the plain GET in %llu ms (--peer-timeout %d ms)\n",
           HEDGES, (unsigned long long)slowest, (unsigned long long)plain_ms, PEER_TIMEOUT_MS);
    /* The plain GET waited for the owner, then was served by the replica
     * (PROTOCOL.md §5.10: reads stay available). A timer may fire a
     * little early on a loop's cached clock: 4 s is well inside 5 s. */
    assert_int_equal(g.status, PC_ST_OK);
    assert_string_equal(g.value, "hedged");
    assert_true(plain_ms >= PEER_TIMEOUT_MS - 1000);

    /* Only the plain GET was relayed; the hedges were counted as such. */
    assert_int_equal(stat_of(rn, "forwarded"), fwd0 + 1);
    assert_true(stat_of(rn, "forward_errors") >= ferr0 + 1);
    assert_int_equal(stat_of(rn, "here_reads"), here0 + HEDGES);
    assert_true(stat_of(rn, "not_owner_reads") >= nor0 + HEDGES + 1);
    node_extra = NULL;
    cluster_down(&cl);
}

static int write_goes_through(void *p)
{
    pc_client_t *c = p;
    return pc_client_set(c, "hedge:1", 7, "new", 3, NULL, NULL) == 0;
}

/*
 * The ring-aware client rides through a stalled owner (issue 15, req. 3):
 * with the owner SIGSTOPped and nobody in the cluster suspecting it yet
 * (probes slowed to one per 10 minutes, --peer-timeout 5 s, longer than
 * the client's 2 s timeout), a GET of its key is answered by the replica
 * the client asks after its hedge delay, not after the timeout; a write
 * then fails at once without being sent (the owner still owes the first
 * GET its answer past the stall limit), and the next GET goes straight to
 * the replica. After SIGCONT the owner's late answers (or a probe) close
 * the breaker and writes reach it again; the refused write was never
 * applied.
 */
static void test_client_rides_through_a_stalled_owner(void **state)
{
    (void)state;
    enum { TIMEOUT_MS = 2000 };
    cluster_t cl;
    stall_cluster_up(&cl);

    const char *key = "hedge:1";
    int owner, replica;
    owner_and_replica(&cl, key, &owner, &replica);
    const pc_h_proc_t *rn = &cl.node[replica];
    pc_client_t *c = ring_client(&cl, TIMEOUT_MS);

    stat_goal_t aa = {rn, "replica_applied", stat_of(rn, "replica_applied") + 1};
    assert_int_equal(pc_client_set(c, key, strlen(key), "old", 3, NULL, NULL), 0);
    if (!pc_h_poll(stat_reached, &aa, 10000))
        fail_msg("the replica did not apply the owner's write within 10 s");
    pc_value_t v = {0};
    assert_int_equal(pc_client_get(c, key, strlen(key), &v), 0); /* a round trip measured */
    pc_value_free(&v);

    stop_node(cl.node[owner].pid);
    pc_client_counters_t k0;
    pc_client_counters(c, &k0);

    /* 1. The GET: the owner says nothing, the replica answers. */
    uint64_t t0 = pc_h_now_ms();
    assert_int_equal(pc_client_get(c, key, strlen(key), &v), 0);
    uint64_t get_ms = pc_h_now_ms() - t0;
    assert_string_equal((const char *)v.data, "old");
    pc_value_free(&v);
    pc_client_counters_t k1;
    pc_client_counters(c, &k1);
    /* Answered by the replica before the timeout: hedged, and the replica
     * won; or, if the owner was already slow with the GET before (a busy
     * machine), sent past it to the replica. */
    if (get_ms >= TIMEOUT_MS ||
        (k1.hedge_wins != k0.hedge_wins + 1 && k1.unresponsive_skips != k0.unresponsive_skips + 1))
        fail_msg("GET with the owner stalled: %llu ms, hedge wins +%llu, skips +%llu, "
                 "hedges +%llu, owner requests +%llu, fallbacks +%llu, failures +%llu",
                 (unsigned long long)get_ms, (unsigned long long)(k1.hedge_wins - k0.hedge_wins),
                 (unsigned long long)(k1.unresponsive_skips - k0.unresponsive_skips),
                 (unsigned long long)(k1.hedged_reads - k0.hedged_reads),
                 (unsigned long long)(k1.owner_requests - k0.owner_requests),
                 (unsigned long long)(k1.replica_fallbacks - k0.replica_fallbacks),
                 (unsigned long long)(k1.node_failures - k0.node_failures));

    /* 2. A write for the stalled owner: refused unsent, before the timeout. */
    t0 = pc_h_now_ms();
    assert_int_equal(pc_client_set(c, key, strlen(key), "lost", 4, NULL, NULL), PC_ECONN);
    uint64_t set_ms = pc_h_now_ms() - t0;
    assert_non_null(strstr(pc_client_errmsg(c), "not sent"));
    pc_client_counters_t k2;
    pc_client_counters(c, &k2);
    assert_int_equal(k2.fast_failures, k1.fast_failures + 1);
    assert_true(k2.breaker_opens >= k1.breaker_opens + 1);
    assert_true(set_ms < TIMEOUT_MS);

    /* 3. The next GET goes past the owner without waiting for it. */
    assert_int_equal(pc_client_get(c, key, strlen(key), &v), 0);
    assert_string_equal((const char *)v.data, "old");
    pc_value_free(&v);
    pc_client_counters_t k3;
    pc_client_counters(c, &k3);
    assert_int_equal(k3.hedged_reads, k2.hedged_reads);
    assert_true(k3.unresponsive_skips >= k2.unresponsive_skips + 1);
    printf("# owner stalled: GET answered in %llu ms, SET refused unsent in %llu ms "
           "(client timeout %d ms)\n",
           (unsigned long long)get_ms, (unsigned long long)set_ms, TIMEOUT_MS);

    /* 4. Back: writes reach the owner again. */
    assert_int_equal(kill(stopped_pid, SIGCONT), 0);
    stopped_pid = 0;
    if (!pc_h_poll(write_goes_through, c, 10000))
        fail_msg("writes did not reach the owner within 10 s of SIGCONT: %s",
                 pc_client_errmsg(c));
    /* Redis holds the write that went through: the refused one, had it
     * been sent, would have been applied on the same connection before. */
    redisReply *r = redisCommand(cl.rc, "GET %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "new");
    freeReplyObject(r);
    pc_client_free(&c);
    node_extra = NULL;
    cluster_down(&cl);
}

/*
 * MGET rides through a stalled owner too: with one of three nodes
 * SIGSTOPped (nobody suspecting it, as above), an MGET of keys owned by
 * every node answers all of them well before the client's timeout -- the
 * stalled owner's part is given up on at its stall limit and sent to the
 * keys' replicas with `here`, which answer it themselves -- and the next
 * MGET goes past the owner at once, its breaker open.
 */
static void test_client_mget_rides_through_a_stalled_owner(void **state)
{
    (void)state;
    enum { TIMEOUT_MS = 2000, PER_NODE = 3, NKEYS = 3 * PER_NODE };
    cluster_t cl;
    stall_cluster_up(&cl);

    /* PER_NODE keys owned by each node; the stalled one is node 0. */
    char names[NKEYS][32];
    const void *keys[NKEYS];
    size_t klens[NKEYS];
    int per[3] = {0, 0, 0}, n = 0;
    for (int i = 0; n < NKEYS; i++) {
        char k[32];
        int owner, replica;
        snprintf(k, sizeof k, "mhedge:%d", i);
        owner_and_replica(&cl, k, &owner, &replica);
        if (per[owner] == PER_NODE)
            continue;
        per[owner]++;
        snprintf(names[n], sizeof names[n], "%s", k);
        keys[n] = names[n];
        klens[n] = strlen(names[n]);
        n++;
    }
    pc_client_t *c = ring_client(&cl, TIMEOUT_MS);
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(pc_client_set(c, keys[i], klens[i], keys[i], klens[i], NULL, NULL), 0);
    pc_mget_item_t *items = NULL;
    assert_int_equal(pc_client_mget(c, NKEYS, keys, klens, &items), 0); /* round trips measured */
    pc_mget_free(items, NKEYS);

    int64_t here0 = stat_of(&cl.node[1], "here_reads") + stat_of(&cl.node[2], "here_reads");
    stop_node(cl.node[0].pid);
    pc_client_counters_t k0, k1, k2;
    pc_client_counters(c, &k0);
    uint64_t ms[2];
    for (int round = 0; round < 2; round++) {
        uint64_t t0 = pc_h_now_ms();
        assert_int_equal(pc_client_mget(c, NKEYS, keys, klens, &items), 0);
        ms[round] = pc_h_now_ms() - t0;
        for (int i = 0; i < NKEYS; i++) {
            if (items[i].status != 0 || items[i].value.len != klens[i] ||
                memcmp(items[i].value.data, keys[i], klens[i]) != 0)
                fail_msg("MGET #%d with the owner stalled, key %s: status %d (%s)", round,
                         names[i], items[i].status, pc_client_errmsg(c));
        }
        pc_mget_free(items, NKEYS);
        pc_client_counters(c, round == 0 ? &k1 : &k2);
        if (ms[round] >= TIMEOUT_MS)
            fail_msg("MGET #%d with the owner stalled took %llu ms, the whole timeout", round,
                     (unsigned long long)ms[round]);
    }
    printf("# owner stalled: MGET of %d keys (%d the stalled node's) answered in %llu ms, "
           "then in %llu ms (client timeout %d ms)\n",
           NKEYS, PER_NODE, (unsigned long long)ms[0], (unsigned long long)ms[1], TIMEOUT_MS);
    /* The first gave the owner up at its stall limit; the second did not
     * wait for it at all. */
    assert_int_equal(k1.mget_hedges, k0.mget_hedges + 1);
    assert_true(k1.breaker_opens >= k0.breaker_opens + 1);
    assert_int_equal(k2.mget_hedges, k1.mget_hedges);
    assert_true(k2.unresponsive_skips >= k1.unresponsive_skips + PER_NODE);
    /* Both times the owner's keys were answered by their replicas, asked
     * with `here`. */
    int64_t here1 = stat_of(&cl.node[1], "here_reads") + stat_of(&cl.node[2], "here_reads");
    assert_int_equal(here1, here0 + 2 * PER_NODE);

    assert_int_equal(kill(stopped_pid, SIGCONT), 0);
    stopped_pid = 0;
    pc_client_free(&c);
    node_extra = NULL;
    cluster_down(&cl);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_and_any_node_answers),
        cmocka_unit_test(test_ring_aware_client_routes_directly),
        cmocka_unit_test(test_join_through_a_host_name),
        cmocka_unit_test(test_relayed_request_is_never_relayed_again),
        cmocka_unit_test(test_forwarded_write_past_its_deadline_is_refused),
        cmocka_unit_test(test_stalled_owner_does_not_apply_a_failed_relay),
        cmocka_unit_test(test_replica_keeps_the_newer_version),
        cmocka_unit_test_teardown(test_here_get_at_a_replica_skips_a_stalled_owner,
                                  continue_stopped),
        cmocka_unit_test_teardown(test_client_rides_through_a_stalled_owner, continue_stopped),
        cmocka_unit_test_teardown(test_client_mget_rides_through_a_stalled_owner,
                                  continue_stopped),
        cmocka_unit_test(test_replicas_applied_on_any_loop),
        cmocka_unit_test(test_settle_window_caps_new_copies),
        cmocka_unit_test(test_reads_after_owner_death_are_fresh),
        cmocka_unit_test(test_kill9_under_load_and_rejoin),
        cmocka_unit_test(test_join_under_load_hands_off),
        cmocka_unit_test(test_graceful_leave_hands_off),
        cmocka_unit_test(test_home_loops_in_a_cluster),
    };
    return pc_h_finish(cmocka_run_group_tests_name("cluster", tests, NULL, NULL));
}
