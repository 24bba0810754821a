/*
 * test_client_ring.c -- unit tests for libpeercache's ring-aware routing.
 *
 * No peercached here: a fake cluster runs on a thread of this process,
 * three "nodes" listening on loopback ports, speaking the real protocol
 * (pc_proto) with behaviour each test sets: what CLUSTER answers, which
 * ring fingerprint replies carry, RETRY for the next N requests, writes
 * that are never answered, a node that is down (its port refuses
 * connections). Every GET and MGET entry is answered with the answering
 * node's name as the value, so a test sees where a request went, and each
 * node counts what it received, so a test sees what was (not) sent.
 *
 * Placement expectations come from pc_ring itself, built from the same
 * members the fake reports: these tests pin the client's routing rules,
 * not the ring's hash (test_ring.c pins that).
 *
 * Thread rules: the fake's state is guarded by F.mu; the client runs on
 * the test thread and blocks while the fake answers, so between client
 * calls the fake is idle and a test may change it under the lock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pc_client.h"
#include "pc_proto.h"
#include "pc_proto_reader.h"
#include "pc_ring.h"

#define NNODES 3
#define MAXCONNS 64
#define NKEYS 200

typedef struct fnode {
    char name[16];
    char addr[32];
    int port;
    int lfd;              /* -1: down, connections refused */
    uint64_t fp;          /* ring_fp on this node's replies */
    uint32_t state;       /* as CLUSTER reports it */
    int retry_reads;      /* answer RETRY to this many GET/MGET */
    int retry_writes;     /* ... and to this many SET/DEL/TOUCH */
    bool blackhole_writes; /* never answer a write */
    bool no_cluster;      /* answer CLUSTER with BAD_REQUEST */
    int n_hello, n_ping, n_get, n_mget, n_set, n_del, n_cluster;
} fnode_t;

typedef struct fconn {
    int fd;
    int node;
    pc_proto_reader_t rd;
} fconn_t;

static struct fake {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ctl[2];   /* commands to the fake's thread */
    int acked;
    fnode_t node[NNODES];
    uint32_t replicas;
    uint64_t cluster_fp;  /* what CLUSTER answers */
    char advertise0[32];  /* if set, node 0's advertised address */
    fconn_t conns[MAXCONNS];
    int nconns;
    pc_proto_decoder_t *dec;
    pc_buf_t out;
} F;

/* ---- the fake cluster ----------------------------------------------------- */

static int listen_on(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof(sa);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    return fd;
}

static void conn_drop(int i)
{
    close(F.conns[i].fd);
    pc_proto_reader_free(&F.conns[i].rd);
    F.conns[i] = F.conns[--F.nconns];
}

/* The ring the fake's members form (alive and suspect ones). */
static pc_ring_t *fake_ring(void)
{
    pc_ring_member_t m[NNODES];
    pc_ring_t *r = NULL;
    size_t n = 0;

    for (int i = 0; i < NNODES; i++) {
        if (F.node[i].state == PC_WIRE_ALIVE || F.node[i].state == PC_WIRE_SUSPECT)
            m[n++] = (pc_ring_member_t){.name = F.node[i].name, .weight = 1};
    }
    assert_int_equal(pc_ring_new(m, n, F.replicas, &r), 0);
    return r;
}

static void send_frame(int fd)
{
    size_t off = 0;

    while (off < F.out.len) {
        ssize_t n = send(fd, F.out.data + off, F.out.len - off, MSG_NOSIGNAL);

        if (n <= 0)
            return; /* the client went away: its problem */
        off += (size_t)n;
    }
}

/* Answers one request on a connection. Runs on the fake's thread with
 * F.mu held, so it aborts instead of asserting (cmocka's assertions jump
 * back into the test thread). */
static void serve(fconn_t *fc, const pc_request_t *rq)
{
    fnode_t *n = &F.node[fc->node];
    pc_response_t resp = {.op = rq->op, .id = rq->id, .status = PC_ST_OK, .ring_fp = n->fp};
    pc_entry_t entries[NKEYS];
    pc_cluster_member_t ms[NNODES];
    pc_bytes_t name = {(const uint8_t *)n->name, (uint32_t)strlen(n->name)};

    pc_buf_reset(&F.out);
    switch (rq->op) {
    case PC_OP_HELLO:
        n->n_hello++;
        resp.proto_version = PC_PROTO_VERSION;
        resp.node_name = name;
        resp.server_version = (pc_bytes_t){(const uint8_t *)"fake", 4};
        break;
    case PC_OP_PING:
        n->n_ping++;
        break;
    case PC_OP_CLUSTER:
        n->n_cluster++;
        if (n->no_cluster) {
            resp.status = PC_ST_BAD_REQUEST;
            break;
        }
        resp.ring_fp = 0;
        resp.fingerprint = F.cluster_fp;
        resp.replicas = F.replicas;
        resp.nmembers = NNODES;
        resp.members = ms;
        for (int i = 0; i < NNODES; i++) {
            const char *addr = i == 0 && F.advertise0[0] ? F.advertise0 : F.node[i].addr;

            ms[i] = (pc_cluster_member_t){
                .name = {(const uint8_t *)F.node[i].name, (uint32_t)strlen(F.node[i].name)},
                .addr = {(const uint8_t *)addr, (uint32_t)strlen(addr)},
                .state = F.node[i].state,
                .incarnation = (uint64_t)i + 10,
                .weight = 1};
        }
        break;
    case PC_OP_GET:
    case PC_OP_MGET:
        if (rq->op == PC_OP_GET)
            n->n_get++;
        else
            n->n_mget++;
        if (n->retry_reads > 0) {
            n->retry_reads--;
            resp.status = PC_ST_RETRY;
            break;
        }
        resp.entry = (pc_entry_t){.status = PC_ST_OK, .value = name, .version = 1, .ttl_ms = -1};
        if (rq->nkeys > NKEYS)
            abort();
        for (uint32_t i = 0; i < rq->nkeys; i++)
            entries[i] = resp.entry;
        resp.nentries = rq->nkeys;
        resp.entries = entries;
        break;
    default:
        if (rq->op == PC_OP_SET)
            n->n_set++;
        else
            n->n_del++;
        if (n->blackhole_writes)
            return;
        if (n->retry_writes > 0) {
            n->retry_writes--;
            resp.status = PC_ST_RETRY;
            break;
        }
        resp.version = 1;
        break;
    }
    if (pc_proto_encode_response(&F.out, &resp) != 0)
        abort();
    send_frame(fc->fd);
}

/* Reads what a connection sent and answers every whole request. */
static void conn_read(int i)
{
    fconn_t *fc = &F.conns[i];
    uint8_t *p;
    size_t avail;
    const uint8_t *body;
    uint32_t len;
    ssize_t n;

    if (pc_proto_reader_reserve(&fc->rd, 0, &p, &avail) != 0 ||
        (n = recv(fc->fd, p, avail, 0)) <= 0) {
        conn_drop(i);
        return;
    }
    pc_proto_reader_commit(&fc->rd, (size_t)n);
    while (pc_proto_reader_next(&fc->rd, &body, &len) == 1) {
        pc_request_t rq;

        if (pc_proto_decode_request(F.dec, body, len, &rq) != 0) {
            conn_drop(i);
            return;
        }
        serve(fc, &rq);
    }
}

/* Commands: 'q' quit, 'k' + node: close its port and its connections. */
static void *fake_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd pfd[1 + NNODES + MAXCONNS];
        int who[1 + NNODES + MAXCONNS];
        int np = 0;

        pthread_mutex_lock(&F.mu);
        pfd[np] = (struct pollfd){.fd = F.ctl[0], .events = POLLIN};
        who[np++] = -1;
        for (int i = 0; i < NNODES; i++) {
            if (F.node[i].lfd >= 0) {
                pfd[np] = (struct pollfd){.fd = F.node[i].lfd, .events = POLLIN};
                who[np++] = 1000 + i;
            }
        }
        for (int i = 0; i < F.nconns; i++) {
            pfd[np] = (struct pollfd){.fd = F.conns[i].fd, .events = POLLIN};
            who[np++] = i;
        }
        pthread_mutex_unlock(&F.mu);
        if (poll(pfd, (nfds_t)np, -1) < 0)
            continue;
        pthread_mutex_lock(&F.mu);
        if (pfd[0].revents) {
            char cmd[2];

            if (read(F.ctl[0], cmd, 2) != 2 || cmd[0] == 'q') {
                pthread_mutex_unlock(&F.mu);
                return NULL;
            }
            int k = cmd[1];
            close(F.node[k].lfd);
            F.node[k].lfd = -1;
            for (int i = F.nconns - 1; i >= 0; i--) {
                if (F.conns[i].node == k)
                    conn_drop(i);
            }
            F.acked++;
            pthread_cond_broadcast(&F.cv);
            pthread_mutex_unlock(&F.mu);
            continue; /* the poll set changed */
        }
        /* Connections first, from the end, so that dropping one (which
         * moves the last into its place) does not skip any. */
        for (int j = np - 1; j > 0; j--) {
            if (pfd[j].revents == 0)
                continue;
            if (who[j] >= 1000) {
                int fd = accept(pfd[j].fd, NULL, NULL);

                if (fd >= 0 && F.nconns < MAXCONNS) {
                    F.conns[F.nconns].fd = fd;
                    F.conns[F.nconns].node = who[j] - 1000;
                    pc_proto_reader_init(&F.conns[F.nconns].rd, 0);
                    F.nconns++;
                } else if (fd >= 0) {
                    close(fd);
                }
            } else {
                conn_read(who[j]);
            }
        }
        pthread_mutex_unlock(&F.mu);
    }
}

static void fake_ctl(char cmd, int node)
{
    char b[2] = {cmd, (char)node};
    int want;

    pthread_mutex_lock(&F.mu);
    want = F.acked + 1;
    pthread_mutex_unlock(&F.mu);
    assert_int_equal(write(F.ctl[1], b, 2), 2);
    if (cmd == 'q')
        return;
    pthread_mutex_lock(&F.mu);
    while (F.acked < want)
        pthread_cond_wait(&F.cv, &F.mu);
    pthread_mutex_unlock(&F.mu);
}

/* Makes the nodes' states what CLUSTER reports and every live node's
 * replies carry the fingerprint of the ring they form. Lock held. */
static void fake_members_changed(void)
{
    pc_ring_t *r = fake_ring();

    F.cluster_fp = pc_ring_fingerprint(r);
    for (int i = 0; i < NNODES; i++)
        F.node[i].fp = F.cluster_fp;
    pc_ring_free(&r);
}

static int fake_up(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
    assert_int_equal(pipe(F.ctl), 0);
    assert_int_equal(pc_proto_decoder_new(NULL, &F.dec), 0);
    pc_buf_init(&F.out, 0);
    F.replicas = 2;
    for (int i = 0; i < NNODES; i++) {
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);

        snprintf(F.node[i].name, sizeof(F.node[i].name), "node-%c", 'a' + i);
        F.node[i].lfd = listen_on(0);
        getsockname(F.node[i].lfd, (struct sockaddr *)&sa, &len);
        F.node[i].port = ntohs(sa.sin_port);
        snprintf(F.node[i].addr, sizeof(F.node[i].addr), "127.0.0.1:%d", F.node[i].port);
        F.node[i].state = PC_WIRE_ALIVE;
    }
    fake_members_changed();
    assert_int_equal(pthread_create(&F.th, NULL, fake_main, NULL), 0);
    return 0;
}

static int fake_down(void **state)
{
    (void)state;
    fake_ctl('q', 0);
    pthread_join(F.th, NULL);
    while (F.nconns > 0)
        conn_drop(0);
    for (int i = 0; i < NNODES; i++) {
        if (F.node[i].lfd >= 0)
            close(F.node[i].lfd);
    }
    close(F.ctl[0]);
    close(F.ctl[1]);
    pc_proto_decoder_free(&F.dec);
    pc_buf_free(&F.out);
    pthread_mutex_destroy(&F.mu);
    pthread_cond_destroy(&F.cv);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static pc_client_t *client(int seed, int timeout_ms, int no_ring)
{
    pc_client_options_t o = {.nodes = F.node[seed].addr, .timeout_ms = timeout_ms,
                             .no_ring = no_ring};
    pc_client_t *c = NULL;

    assert_int_equal(pc_client_new(&o, &c), 0);
    return c;
}

static void key_of(int i, char *buf, size_t len)
{
    snprintf(buf, len, "key:%d", i);
}

/* Name of placement k of key on the fake's current ring. */
static const char *placement(const char *key, size_t k, char *buf)
{
    pc_ring_t *r;
    uint32_t pl[PC_RING_MAX_REPLICAS];
    size_t n;

    pthread_mutex_lock(&F.mu);
    r = fake_ring();
    pthread_mutex_unlock(&F.mu);
    n = pc_ring_slot_members(r, pc_ring_slot(key, strlen(key)), pl, PC_RING_MAX_REPLICAS);
    assert_true(k < n);
    strcpy(buf, pc_ring_name(r, pl[k]));
    pc_ring_free(&r);
    return buf;
}

/* A key whose owner is node `node` on the fake's current ring. */
static void key_owned_by(int node, char *key, size_t len)
{
    char owner[32];

    for (int i = 0; i < 10000; i++) {
        snprintf(key, len, "owned:%d", i);
        if (strcmp(placement(key, 0, owner), F.node[node].name) == 0)
            return;
    }
    fail_msg("no key owned by %s", F.node[node].name);
}

static int count(const int *field_of_node0)
{
    /* Sums one counter over the nodes: fields are at the same offset. */
    size_t off = (size_t)((const char *)field_of_node0 - (const char *)&F.node[0]);
    int sum = 0;

    pthread_mutex_lock(&F.mu);
    for (int i = 0; i < NNODES; i++)
        sum += *(const int *)((const char *)&F.node[i] + off);
    pthread_mutex_unlock(&F.mu);
    return sum;
}

static pc_client_counters_t counters(const pc_client_t *c)
{
    pc_client_counters_t k;

    pc_client_counters(c, &k);
    return k;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void get_from(pc_client_t *c, const char *key, const char *want_node)
{
    pc_value_t v;

    assert_int_equal(pc_client_get(c, key, strlen(key), &v), 0);
    assert_string_equal((const char *)v.data, want_node);
    pc_value_free(&v);
}

/* ---- tests ----------------------------------------------------------------------- */

/* Every key goes straight to its owner; one CLUSTER, learned lazily. */
static void test_routes_to_owner(void **state)
{
    (void)state;
    pc_client_t *c = client(1, 2000, 0);
    char key[32], owner[32];

    assert_int_equal(pc_client_ring_fingerprint(c), 0);
    assert_int_equal(pc_client_ping(c), 0);
    assert_int_equal(count(&F.node[0].n_cluster), 0); /* PING learns nothing */
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, key, sizeof(key));
        get_from(c, key, placement(key, 0, owner));
        assert_int_equal(pc_client_set(c, key, strlen(key), "v", 1, NULL, NULL), 0);
    }
    pc_client_counters_t k = counters(c);
    assert_int_equal(k.owner_requests, 2 * NKEYS);
    assert_int_equal(k.replica_fallbacks, 0);
    assert_int_equal(k.retries, 0);
    assert_int_equal(k.ring_refreshes, 1);
    assert_int_equal(count(&F.node[0].n_cluster), 1);
    assert_int_equal(count(&F.node[0].n_set), NKEYS);
    assert_int_equal(pc_client_ring_fingerprint(c), F.cluster_fp);
    /* one connection per node, not one per request */
    assert_int_equal(count(&F.node[0].n_hello), NNODES);
    pc_client_free(&c);
}

/* MGET: one request per owner, answers back in request order. */
static void test_mget_one_request_per_owner(void **state)
{
    (void)state;
    pc_client_t *c = client(0, 2000, 0);
    char keys[NKEYS][32], owner[32];
    const void *kp[NKEYS];
    size_t kl[NKEYS];
    pc_mget_item_t *items = NULL;

    for (int i = 0; i < NKEYS; i++) {
        key_of(i, keys[i], sizeof(keys[i]));
        kp[i] = keys[i];
        kl[i] = strlen(keys[i]);
    }
    assert_int_equal(pc_client_mget(c, NKEYS, kp, kl, &items), 0);
    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(items[i].status, 0);
        assert_string_equal((const char *)items[i].value.data, placement(keys[i], 0, owner));
    }
    pc_mget_free(items, NKEYS);
    assert_int_equal(count(&F.node[0].n_mget), NNODES);
    assert_int_equal(counters(c).owner_requests, NNODES);
    pc_client_free(&c);
}

/* MGET: a node's RETRY is retried for its keys only; with every node
 * down the call itself fails. */
static void test_mget_retry_and_all_down(void **state)
{
    (void)state;
    pc_client_t *c = client(0, 2000, 0);
    char keys[NKEYS][32], owner[32];
    const void *kp[NKEYS];
    size_t kl[NKEYS];
    pc_mget_item_t *items = NULL;

    for (int i = 0; i < NKEYS; i++) {
        key_of(i, keys[i], sizeof(keys[i]));
        kp[i] = keys[i];
        kl[i] = strlen(keys[i]);
    }
    pthread_mutex_lock(&F.mu);
    F.node[1].retry_reads = 1;
    pthread_mutex_unlock(&F.mu);
    assert_int_equal(pc_client_mget(c, NKEYS, kp, kl, &items), 0);
    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(items[i].status, 0);
        assert_string_equal((const char *)items[i].value.data, placement(keys[i], 0, owner));
    }
    pc_mget_free(items, NKEYS);
    assert_int_equal(count(&F.node[0].n_mget), NNODES + 1);
    assert_int_equal(counters(c).retry_answers, 1);
    assert_int_equal(counters(c).retries, 1);

    for (int i = 0; i < NNODES; i++)
        fake_ctl('k', i);
    assert_int_equal(pc_client_mget(c, NKEYS, kp, kl, &items), PC_ECONN);
    assert_null(items);
    assert_true(strlen(pc_client_errmsg(c)) > 0);
    pc_client_free(&c);
}

/* A reply with another ring's fingerprint makes the client refresh, and
 * route by the new ring from then on. */
static void test_fingerprint_change_refreshes(void **state)
{
    (void)state;
    pc_client_t *c = client(0, 2000, 0);
    char key[32], owner[32];
    uint64_t fp1;

    key_owned_by(2, key, sizeof(key));
    get_from(c, key, F.node[2].name);
    fp1 = pc_client_ring_fingerprint(c);
    pthread_mutex_lock(&F.mu);
    F.node[2].state = PC_WIRE_LEFT; /* node-c leaves, but still answers */
    fake_members_changed();
    pthread_mutex_unlock(&F.mu);
    assert_int_not_equal(F.cluster_fp, fp1);

    /* This answer still comes from node-c (our ring says so); it shows
     * the new fingerprint, so the client refreshes after it. */
    get_from(c, key, F.node[2].name);
    assert_int_equal(counters(c).ring_fp_mismatches, 1);
    assert_int_equal(counters(c).ring_refreshes, 2);
    assert_int_equal(pc_client_ring_fingerprint(c), F.cluster_fp);
    get_from(c, key, placement(key, 0, owner));
    assert_string_not_equal(owner, F.node[2].name);
    pc_client_free(&c);
}

/* The owner is down (its port refuses) but still in the ring: reads fall
 * back to the replica; a write fails and is sent nowhere else. */
static void test_owner_down(void **state)
{
    (void)state;
    pc_client_t *c = client(0, 2000, 0);
    char key[32], replica[32];
    int sets;

    key_owned_by(1, key, sizeof(key));
    get_from(c, key, F.node[1].name);
    fake_ctl('k', 1);

    get_from(c, key, placement(key, 1, replica));
    pc_client_counters_t k = counters(c);
    assert_int_equal(k.replica_fallbacks, 1);
    assert_int_equal(k.node_failures, 1);
    assert_int_equal(k.retries, 1);

    sets = count(&F.node[0].n_set);
    assert_int_equal(pc_client_set(c, key, strlen(key), "v", 1, NULL, NULL), PC_ECONN);
    assert_non_null(strstr(pc_client_errmsg(c), F.node[1].addr));
    assert_int_equal(count(&F.node[0].n_set), sets);

    /* MGET: the down node's keys come from their replicas too. */
    const void *kp[1] = {key};
    size_t kl[1] = {strlen(key)};
    pc_mget_item_t *items = NULL;
    assert_int_equal(pc_client_mget(c, 1, kp, kl, &items), 0);
    assert_int_equal(items[0].status, 0);
    assert_string_equal((const char *)items[0].value.data, replica);
    pc_mget_free(items, 1);

    /* Once the hold is over, the next call refreshes first (the ring is
     * the same: the cluster has not noticed yet). */
    struct timespec hold = {0, 150 * 1000000L};
    uint64_t refreshes = counters(c).ring_refreshes;
    char other[32];
    nanosleep(&hold, NULL);
    key_owned_by(0, other, sizeof(other));
    get_from(c, other, F.node[0].name);
    assert_int_equal(counters(c).ring_refreshes, refreshes + 1);

    /* The cluster declares it dead: the next write that meets the dead
     * node refreshes (the hold is over) and goes to the new owner. The
     * others' replies keep the old fingerprint, so that only the failure
     * can tell the client. */
    uint64_t old_fp = pc_client_ring_fingerprint(c);
    pthread_mutex_lock(&F.mu);
    F.node[1].state = PC_WIRE_DEAD;
    fake_members_changed();
    F.node[0].fp = F.node[2].fp = old_fp;
    pthread_mutex_unlock(&F.mu);
    nanosleep(&hold, NULL);
    uint64_t retries = counters(c).retries;
    assert_int_equal(pc_client_set(c, key, strlen(key), "v", 1, NULL, NULL), 0);
    assert_int_equal(counters(c).retries, retries + 1);
    assert_int_equal(count(&F.node[0].n_set), sets + 1);
    assert_int_equal(pc_client_ring_fingerprint(c), F.cluster_fp);
    pc_client_free(&c);
}

/* RETRY: refresh, pause, send again; bounded. */
static void test_retry_answers(void **state)
{
    (void)state;
    pc_client_t *c = client(0, 2000, 0);
    char key[32];
    int64_t t0;

    key_owned_by(2, key, sizeof(key));
    get_from(c, key, F.node[2].name);

    pthread_mutex_lock(&F.mu);
    F.node[2].retry_writes = 2;
    pthread_mutex_unlock(&F.mu);
    t0 = now_ms();
    assert_int_equal(pc_client_set(c, key, strlen(key), "v", 1, NULL, NULL), 0);
    assert_true(now_ms() - t0 >= 20 + 50);
    pc_client_counters_t k = counters(c);
    assert_int_equal(k.retry_answers, 2);
    assert_int_equal(k.retries, 2);
    assert_int_equal(k.ring_refreshes, 3);
    assert_int_equal(F.node[2].n_set, 3);

    /* A read too, and then a cluster that never settles. */
    pthread_mutex_lock(&F.mu);
    F.node[2].retry_reads = 1;
    F.node[2].retry_writes = 100;
    pthread_mutex_unlock(&F.mu);
    get_from(c, key, F.node[2].name);
    t0 = now_ms();
    assert_int_equal(pc_client_del(c, key, strlen(key)), PC_ERETRY);
    assert_true(now_ms() - t0 >= 20 + 50 + 100);
    assert_int_equal(F.node[2].n_del, 4); /* first try + 3 retries */
    pc_client_free(&c);
}

/* A write that may have arrived is never sent again. */
static void test_write_timeout_not_retried(void **state)
{
    (void)state;
    pc_client_t *c = client(0, 300, 0);
    char key[32];

    key_owned_by(2, key, sizeof(key));
    pthread_mutex_lock(&F.mu);
    F.node[2].blackhole_writes = true;
    pthread_mutex_unlock(&F.mu);
    assert_int_equal(pc_client_set(c, key, strlen(key), "v", 1, NULL, NULL), PC_ETIMEDOUT);
    /* The fake counts the SET when its thread reads it, which the client's
     * timeout does not wait for: waited for (with a deadline), then held
     * to exactly one. */
    int64_t until = now_ms() + 10000;
    while (count(&F.node[0].n_set) < 1 && now_ms() < until) {
        struct timespec ms = {0, 1000000L};
        nanosleep(&ms, NULL);
    }
    assert_int_equal(count(&F.node[0].n_set), 1);
    assert_int_equal(counters(c).retries, 0);
    pc_client_free(&c);
}

/* Seed-only mode: everything through the first node, no CLUSTER. */
static void test_no_ring(void **state)
{
    (void)state;
    pc_client_t *c = client(1, 2000, 1);
    char key[32];

    for (int i = 0; i < 20; i++) {
        key_of(i, key, sizeof(key));
        get_from(c, key, F.node[1].name);
    }
    assert_int_equal(count(&F.node[0].n_cluster), 0);
    assert_int_equal(counters(c).owner_requests, 0);
    assert_int_equal(pc_client_ring_fingerprint(c), 0);
    pc_client_free(&c);
}

/* A node that answers CLUSTER with an error, or with an address clients
 * cannot use, leaves the client seed-only, asking only once. */
static void test_unusable_cluster_answers(void **state)
{
    (void)state;
    char key[32];

    pthread_mutex_lock(&F.mu);
    F.node[0].no_cluster = true;
    for (int i = 0; i < NNODES; i++)
        F.node[i].fp = 0; /* a node outside any cluster */
    pthread_mutex_unlock(&F.mu);
    pc_client_t *c = client(0, 2000, 0);
    for (int i = 0; i < 20; i++) {
        key_of(i, key, sizeof(key));
        get_from(c, key, F.node[0].name);
    }
    assert_int_equal(count(&F.node[0].n_cluster), 1);
    assert_int_equal(pc_client_ring_fingerprint(c), 0);
    pc_client_free(&c);

    pthread_mutex_lock(&F.mu);
    F.node[0].no_cluster = false;
    fake_members_changed();
    snprintf(F.advertise0, sizeof(F.advertise0), "0.0.0.0:%d", F.node[0].port);
    pthread_mutex_unlock(&F.mu);
    c = client(1, 2000, 0);
    for (int i = 0; i < 20; i++) {
        key_of(i, key, sizeof(key));
        get_from(c, key, F.node[1].name);
    }
    assert_int_equal(count(&F.node[0].n_cluster), 2);
    assert_int_equal(pc_client_ring_fingerprint(c), 0);
    pc_client_free(&c);
}

/* pc_client_cluster: members by name, states, shares that add up. */
static void test_cluster_info(void **state)
{
    (void)state;
    pc_client_t *c = client(2, 2000, 0);
    pc_cluster_info_t *ci = NULL;
    uint32_t slots = 0;

    pthread_mutex_lock(&F.mu);
    F.node[0].state = PC_WIRE_SUSPECT;
    F.node[1].state = PC_WIRE_DEAD;
    fake_members_changed();
    pthread_mutex_unlock(&F.mu);
    assert_int_equal(pc_client_cluster(c, &ci), 0);
    assert_int_equal(ci->fingerprint, F.cluster_fp);
    assert_int_equal(ci->replicas, 2);
    assert_string_equal(ci->from, F.node[2].addr);
    assert_int_equal(ci->nmembers, NNODES);
    for (size_t i = 0; i < ci->nmembers; i++) {
        assert_string_equal(ci->members[i].name, F.node[i].name);
        assert_string_equal(ci->members[i].addr, F.node[i].addr);
        assert_int_equal(ci->members[i].incarnation, i + 10);
        slots += ci->members[i].owned_slots;
    }
    assert_int_equal(ci->members[0].state, PC_CLIENT_MEMBER_SUSPECT);
    assert_string_equal(pc_client_member_state_name(ci->members[1].state), "dead");
    assert_int_equal(ci->members[1].owned_slots, 0);
    assert_true(ci->members[0].share > 0.4 && ci->members[0].share < 0.6);
    assert_int_equal(slots, PC_CLIENT_RING_SLOTS);
    /* ... and it is the client's ring now */
    assert_int_equal(pc_client_ring_fingerprint(c), F.cluster_fp);
    pc_cluster_info_free(&ci);
    assert_null(ci);
    pc_client_free(&c);
}

/* One node that is its own cluster: everything to it, directly. */
static void test_single_node(void **state)
{
    (void)state;
    char key[32];

    pthread_mutex_lock(&F.mu);
    F.node[1].state = F.node[2].state = PC_WIRE_LEFT;
    fake_members_changed();
    pthread_mutex_unlock(&F.mu);
    pc_client_t *c = client(0, 2000, 0);
    for (int i = 0; i < 20; i++) {
        key_of(i, key, sizeof(key));
        get_from(c, key, F.node[0].name);
    }
    assert_int_equal(counters(c).owner_requests, 20);
    assert_int_equal(count(&F.node[0].n_hello), 1);
    pc_client_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes_to_owner, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_mget_one_request_per_owner, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_mget_retry_and_all_down, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_fingerprint_change_refreshes, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_owner_down, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_retry_answers, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_write_timeout_not_retried, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_no_ring, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_unusable_cluster_answers, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_cluster_info, fake_up, fake_down),
        cmocka_unit_test_setup_teardown(test_single_node, fake_up, fake_down),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
