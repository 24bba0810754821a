/*
 * pc_cluster.c -- membership I/O and the ring.
 *
 * pc_member decides everything (whom to probe, what to gossip, when a
 * member is dead); this file only moves its bytes: datagrams in and out
 * on one UDP socket, push/pull as SYNC requests through the peer pool,
 * and a timer armed for the state machine's next deadline. After every
 * input, drain() empties the state machine's outputs in a fixed order:
 * packets, events, ring rebuild, sync request, timer.
 *
 * Gossip addresses are IP literals: datagrams are sent with
 * uv_udp_try_send() straight from the event loop, and a name lookup there
 * would block it. (TCP addresses may be host names: the peer pool resolves
 * them asynchronously.) A datagram the kernel will not take at once is
 * dropped, as the network may drop any datagram; SWIM is built for that.
 */
#include "pc_cluster.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "pc_addr.h"
#include "pc_member.h"

#define JOIN_RETRY_MIN_MS 500
#define JOIN_RETRY_MAX_MS 10000
#define LEAVE_POLL_MS 50
#define LEAVE_MAX_MS 2000
#define UDP_BUF 65536

typedef struct sync_ctx {
    pc_cluster_t *c;
    int join;
} sync_ctx_t;

typedef struct seed_req {
    uv_getaddrinfo_t req;
    pc_cluster_t *c;
    int port;
} seed_req_t;

struct pc_cluster {
    uv_loop_t *loop;
    const pc_log_t *log;
    pc_peer_pool_t *peers;
    pc_member_t *m;
    pc_proto_decoder_t *dec;
    char *name, *addr, *gossip, *join;
    unsigned replicas;

    uv_udp_t udp;
    uv_timer_t timer;      /* the state machine's next deadline */
    uv_timer_t join_timer; /* join retries */
    uv_timer_t leave_timer;
    int handles;           /* open handles */
    int started;
    int closing;
    void (*closed)(void *);
    void *closed_arg;

    pc_guard_t *guard;      /* NULL or keyless = gossip goes unsealed */
    pc_seal_stream_t seal;  /* our datagrams */
    pc_buf_t sealed;        /* an outgoing datagram, sealed */
    pc_buf_t pkt;  /* outgoing datagram */
    pc_buf_t req;  /* outgoing SYNC frame */
    uint8_t rbuf[UDP_BUF];

    /* The ring and, per ring index, what the server needs to reach it. */
    pc_ring_t *ring;
    long self; /* this node's index in ring, -1 = not in it (kept with ring) */
    char **addrs;
    uint8_t *suspect;
    uint64_t member_epoch;
    struct ring_job *building; /* a ring being built off the loop, or NULL */
    int build_again;           /* the member set changed meanwhile */
    pc_cluster_ring_cb ring_cb;
    void *ring_arg;
    pc_cluster_regain_cb regain_cb;
    void *regain_arg;
    pc_cluster_lease_cb lease_cb;
    void *lease_arg;
    uint64_t lease_until; /* as last published; UINT64_MAX = none needed */
    int lease_held;       /* the lease was ever valid */
    uint64_t declared_dead; /* pc_member's counts, as last seen */
    uint64_t dead_came_back;

    pc_cluster_member_t *mlist; /* CLUSTER answer scratch */
    size_t mlist_cap;

    int joined;
    unsigned join_pending;  /* join syncs in flight */
    uint64_t join_backoff;

    void (*left)(void *);
    void *left_arg;
    uint64_t leave_started;

    pc_cluster_stats_t stats;
};

static uint64_t now_ms(const pc_cluster_t *c) { return uv_now(c->loop); }

/* ---- the ring ----------------------------------------------------------- */

static void free_index(char **addrs, size_t n)
{
    for (size_t i = 0; addrs && i < n; i++)
        free(addrs[i]);
    free(addrs);
}

/*
 * Tables indexed by the positions of `ring`: each member's address and
 * whether it is suspect, from the membership as it is now. A member that
 * is no longer known (it was reaped while its ring was built) gets an
 * empty address: nothing reaches it, and the next rebuild drops it.
 * 0 or PC_ENOMEM (nothing changed).
 */
static int index_build(pc_cluster_t *c, const pc_ring_t *ring, char ***addrs_out,
                       uint8_t **suspect_out)
{
    size_t n = pc_ring_size(ring);
    char **addrs = calloc(n ? n : 1, sizeof *addrs);
    uint8_t *suspect = calloc(n ? n : 1, 1);
    for (size_t i = 0; addrs != NULL && suspect != NULL && i < n; i++) {
        pc_member_info_t mi;
        int known = pc_member_lookup(c->m, pc_ring_name(ring, i), &mi) == 0;
        addrs[i] = strdup(known ? mi.addr : "");
        suspect[i] = known && mi.state == PC_MEMBER_SUSPECT;
        if (addrs[i] == NULL) {
            free_index(addrs, n);
            addrs = NULL;
        }
    }
    if (addrs == NULL || suspect == NULL) {
        free_index(addrs, n);
        free(suspect);
        return PC_ENOMEM;
    }
    *addrs_out = addrs;
    *suspect_out = suspect;
    return 0;
}

/* The tables for the current ring, from the membership as it is now (a
 * suspicion changes no placement, but does change where reads go). */
static void index_refresh(pc_cluster_t *c)
{
    char **addrs;
    uint8_t *suspect;
    if (c->ring == NULL || index_build(c, c->ring, &addrs, &suspect) < 0)
        return; /* keep the old tables: the next event retries */
    free_index(c->addrs, pc_ring_size(c->ring));
    free(c->suspect);
    c->addrs = addrs;
    c->suspect = suspect;
}

/* Makes nr the ring (consumed), with its tables, and announces it. */
static void ring_install(pc_cluster_t *c, pc_ring_t *nr)
{
    char **addrs;
    uint8_t *suspect;
    if (index_build(c, nr, &addrs, &suspect) < 0) {
        pc_ring_free(&nr);
        c->build_again = 1; /* try again with the next event */
        return;
    }
    if (c->ring)
        free_index(c->addrs, pc_ring_size(c->ring));
    free(c->suspect);
    c->addrs = addrs;
    c->suspect = suspect;
    pc_ring_t *old = c->ring;
    c->ring = nr;
    c->self = pc_ring_find(nr, c->name); /* asked for every request: found once here */
    c->stats.ring_changes++;
    if (c->ring_cb)
        c->ring_cb(c->ring_arg, old, nr);
    pc_ring_free(&old);
}

/*
 * A ring built on libuv's thread pool. Placement costs O(PC_RING_SLOTS x
 * members) hash evaluations -- about half a second for 4,096 members --
 * and the loop that gossips and serves clients must not wait for it. The
 * job owns a copy of the member list; the ring it builds is installed on
 * the loop (ring_job_done), in order: one job at a time, and a change
 * that comes while one runs is built after it, from the membership as it
 * is then.
 */
typedef struct ring_job {
    uv_work_t req;
    pc_cluster_t *c;
    pc_ring_member_t *rm;
    size_t n;
    unsigned replicas;
    pc_ring_t *ring;
    int rc;
} ring_job_t;

static void ring_job_free(ring_job_t *j)
{
    for (size_t i = 0; i < j->n; i++)
        free((char *)j->rm[i].name);
    free(j->rm);
    pc_ring_free(&j->ring);
    free(j);
}

static void ring_job_work(uv_work_t *req)
{
    ring_job_t *j = req->data;
    j->rc = pc_ring_new(j->rm, j->n, j->replicas, &j->ring);
}

static void rebuild_ring(pc_cluster_t *c);
static void handle_closed(uv_handle_t *h);
static void cluster_part_done(pc_cluster_t *c);

static void ring_job_done(uv_work_t *req, int status)
{
    ring_job_t *j = req->data;
    pc_cluster_t *c = j->c;
    c->building = NULL;
    if (!c->closing && status == 0 && j->rc == 0) {
        pc_ring_t *nr = j->ring;
        j->ring = NULL;
        if (c->ring == NULL || pc_ring_fingerprint(c->ring) != pc_ring_fingerprint(nr))
            ring_install(c, nr);
        else
            pc_ring_free(&nr);
    } else if (!c->closing && status == 0) {
        pc_log_error(c->log, "cluster: cannot build the ring: %s", pc_strerror(j->rc));
    }
    ring_job_free(j);
    if (!c->closing && c->build_again) {
        c->build_again = 0;
        rebuild_ring(c);
    }
    cluster_part_done(c); /* the job counted as one of the handles */
}

/*
 * The ring from the live (ALIVE or SUSPECT) members. When they place
 * keys as the current ring does (the same names and weights: a suspicion
 * came or went), only the tables are refreshed. Otherwise a ring of up to
 * RING_INLINE_MAX members is built at once -- a few milliseconds, and
 * every node switches in the same turn it learns of the change, as a
 * node always did -- and a bigger one off the loop (ring_job_t), where
 * it would hold the loop for up to half a second.
 */
#define RING_INLINE_MAX 16
static void rebuild_ring(pc_cluster_t *c)
{
    size_t total = pc_member_count(c->m);
    pc_ring_member_t *rm = calloc(total ? total : 1, sizeof *rm);
    if (rm == NULL)
        return; /* keep the old ring; the next event retries */
    size_t n = 0;
    c->stats.members_alive = c->stats.members_suspect = c->stats.members_dead = 0;
    for (size_t i = 0; i < total; i++) {
        pc_member_info_t mi;
        if (pc_member_get(c->m, i, &mi) != 0)
            continue;
        if (mi.state == PC_MEMBER_ALIVE || mi.state == PC_MEMBER_SUSPECT) {
            rm[n].name = mi.name;
            rm[n].weight = mi.weight ? mi.weight : 1;
            n++;
            if (mi.state == PC_MEMBER_ALIVE)
                c->stats.members_alive++;
            else
                c->stats.members_suspect++;
        } else {
            c->stats.members_dead++;
        }
    }
    c->member_epoch = pc_member_epoch(c->m);
    uint64_t fp = pc_ring_fingerprint_of(rm, n, c->replicas);
    if (c->building != NULL) {
        c->build_again = 1; /* after the one being built */
        index_refresh(c);
        free(rm);
        return;
    }
    if (c->ring != NULL && fp != 0 && fp == pc_ring_fingerprint(c->ring)) {
        index_refresh(c);
        free(rm);
        return;
    }
    if (n <= RING_INLINE_MAX) {
        pc_ring_t *nr = NULL;
        int rc = pc_ring_new(rm, n, c->replicas, &nr);
        free(rm);
        if (rc < 0)
            pc_log_error(c->log, "cluster: cannot build the ring: %s", pc_strerror(rc));
        else
            ring_install(c, nr);
        return;
    }
    ring_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        free(rm);
        return;
    }
    j->c = c;
    j->rm = rm;
    j->replicas = c->replicas;
    for (size_t i = 0; i < n; i++) { /* the names go with the job */
        if ((rm[i].name = strdup(rm[i].name)) == NULL) {
            j->n = i;
            ring_job_free(j);
            return;
        }
    }
    j->n = n;
    j->req.data = j;
    if (uv_queue_work(c->loop, &j->req, ring_job_work, ring_job_done) != 0) {
        ring_job_free(j);
        return;
    }
    c->building = j;
    c->handles++;
    c->stats.ring_builds_offloop++;
}

/* ---- datagrams ------------------------------------------------------------ */

static int to_sockaddr(const char *hostport, struct sockaddr_storage *ss)
{
    char host[256];
    int port;
    if (pc_addr_parse(hostport, host, sizeof host, &port) < 0)
        return PC_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return PC_EINVAL;
}

static void send_datagram(pc_cluster_t *c, const char *to, const uint8_t *p, size_t n)
{
    struct sockaddr_storage ss;
    if (to_sockaddr(to, &ss) < 0) {
        pc_log_debug(c->log, "gossip: cannot send to '%s': not an IP address", to);
        return;
    }
    if (pc_guard_on(c->guard)) {
        c->sealed.len = 0;
        if (pc_guard_seal(c->guard, &c->seal, PC_SEAL_GOSSIP, p, n, &c->sealed) < 0)
            return; /* out of memory: as good as a lost datagram */
        p = c->sealed.data;
        n = c->sealed.len;
    }
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    if (uv_udp_try_send(&c->udp, &b, 1, (const struct sockaddr *)&ss) >= 0)
        c->stats.gossip_out++;
}

static void start_sync(pc_cluster_t *c, const char *addr, int join);
static void timer_cb(uv_timer_t *t);
static void join_schedule(pc_cluster_t *c);

/*
 * The partition lease (pc_member_lease_until): publishes it to the server
 * and logs when it runs out and comes back. The data loops compare it
 * with their own clock, so they stop serving copies the moment it runs
 * out even if this loop is late. When a new lease follows one that ran
 * out -- or may have, for a loop whose clock read a little later than
 * ours -- whatever the node cached meanwhile is not to be trusted: the
 * regain callback runs before the new lease is published.
 */
#define LEASE_SKEW_MS 100
static uint64_t add_ms(uint64_t t, uint64_t ms) { return t > UINT64_MAX - ms ? UINT64_MAX : t + ms; }

static void lease_check(pc_cluster_t *c)
{
    uint64_t now = now_ms(c), until = pc_member_lease_until(c->m);
    int cut = now >= until;
    size_t live, known, acked;
    if (!cut && until != c->lease_until && c->lease_until <= add_ms(now, LEASE_SKEW_MS)) {
        pc_member_cut_off(c->m, now, &live, &known, &acked);
        if (!c->lease_held) {
            pc_log_info(c->log, "cluster: in touch with a majority (%zu of the %zu members "
                                "it knows answered): serving copies and taking writes",
                        acked + 1, known);
        } else {
            if (c->stats.cut_off)
                pc_log_warn(c->log, "cluster: in touch with a majority again (%zu of the %zu "
                                    "members it knows answered): serving copies and taking "
                                    "writes; what it cached before is read through again",
                            acked + 1, known);
            if (c->regain_cb && c->ring)
                c->regain_cb(c->regain_arg, c->ring);
        }
    }
    if (!cut && until != UINT64_MAX)
        c->lease_held = 1;
    if (cut && !c->stats.cut_off && c->lease_held) {
        pc_member_cut_off(c->m, now, &live, &known, &acked);
        c->stats.lease_lapses++;
        pc_log_warn(c->log, "cluster: cut off -- %zu of the %zu members it knows answered in "
                            "the last %llu ms and %zu are alive or suspect, no majority: it "
                            "serves no cached copies and takes no writes until it hears from "
                            "one (docs/CONSISTENCY.md §4)",
                    acked + 1, known, (unsigned long long)pc_member_lease_ms(c->m), live);
    }
    c->stats.cut_off = (uint64_t)cut;
    if (until != c->lease_until) {
        c->lease_until = until;
        if (c->lease_cb)
            c->lease_cb(c->lease_arg, until);
    }
}

/* Empties the state machine's outputs; see the file comment. */
static void drain(pc_cluster_t *c)
{
    pc_member_stats_t ms;
    pc_member_stats(c->m, &ms);
    if (ms.declared_dead != c->declared_dead || ms.dead_came_back != c->dead_came_back) {
        c->declared_dead = ms.declared_dead;
        c->dead_came_back = ms.dead_came_back;
        pc_log_warn(c->log, "cluster: a partition healed (members held dead came back, or "
                            "had held this node dead): its cached copies of its keys are "
                            "dropped from use");
        if (c->regain_cb && c->ring)
            c->regain_cb(c->regain_arg, c->ring);
    }
    char to[PC_MEMBER_ADDR_MAX + 1];
    while (pc_member_next_packet(c->m, to, sizeof to, &c->pkt) == 1) {
        if (c->started && !c->closing)
            send_datagram(c, to, c->pkt.data, c->pkt.len);
    }
    pc_member_event_t ev;
    while (pc_member_next_event(c->m, &ev) == 1) {
        if (ev.joined)
            pc_log_info(c->log, "cluster: %s (%s) joined, %s, incarnation %llu", ev.name, ev.addr,
                        pc_member_state_name(ev.state), (unsigned long long)ev.incarnation);
        else if (ev.state != ev.prev)
            pc_log_info(c->log, "cluster: %s is %s (was %s), incarnation %llu", ev.name,
                        pc_member_state_name(ev.state), pc_member_state_name(ev.prev),
                        (unsigned long long)ev.incarnation);
        if ((ev.state == PC_MEMBER_DEAD || ev.state == PC_MEMBER_LEFT) &&
            strcmp(ev.name, c->name) != 0)
            pc_peer_forget(c->peers, ev.addr);
    }
    if (pc_member_epoch(c->m) != c->member_epoch)
        rebuild_ring(c);
    lease_check(c);
    char addr[PC_MEMBER_ADDR_MAX + 1];
    if (pc_member_next_sync(c->m, addr, sizeof addr) == 1 && !c->closing)
        start_sync(c, addr, 0);
    /* Alone again (everyone else dead and forgotten): the state machine
     * has nobody to sync with, so go back to the seeds. */
    if (c->joined && c->started && !c->closing && pc_member_count(c->m) == 1 &&
        c->join[0] != '\0' && c->join_pending == 0 && !uv_is_active((uv_handle_t *)&c->join_timer)) {
        c->joined = 0;
        c->join_backoff = JOIN_RETRY_MIN_MS;
        join_schedule(c);
    }
    if (c->started && !c->closing) {
        uint64_t d = pc_member_next_deadline(c->m), now = now_ms(c);
        if (d != UINT64_MAX)
            uv_timer_start(&c->timer, timer_cb, d > now ? d - now : 0, 0);
    }
}

static void timer_cb(uv_timer_t *t)
{
    pc_cluster_t *c = t->data;
    pc_member_tick(c->m, now_ms(c));
    drain(c);
}

static void udp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    pc_cluster_t *c = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)c->rbuf, sizeof c->rbuf);
}

static void udp_recv_cb(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *sa,
                        unsigned flags)
{
    pc_cluster_t *c = h->data;
    if (n <= 0 || sa == NULL || c->closing)
        return;
    if (flags & UV_UDP_PARTIAL) { /* over 64 KiB: never one of ours */
        c->stats.gossip_bad++;
        return;
    }
    char ip[64], from[80];
    if (sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
        snprintf(from, sizeof from, "[%s]:%d", ip,
                 ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
        snprintf(from, sizeof from, "%s:%d", ip,
                 ntohs(((const struct sockaddr_in *)sa)->sin_port));
    }
    c->stats.gossip_in++;
    uint8_t *p = (uint8_t *)buf->base;
    size_t len = (size_t)n;
    /* With a key, a datagram that does not open (a stranger, a tampered or
     * replayed one) is dropped before the state machine sees a byte of
     * it; the guard counts why. */
    if (pc_guard_on(c->guard) && pc_guard_open(c->guard, PC_SEAL_GOSSIP, p, len, &p, &len) < 0) {
        c->stats.gossip_rejected++;
        return;
    }
    /* A datagram that does not decode is counted by the state machine
     * (pc_cluster_stats adds its count to gossip_bad). */
    pc_member_recv(c->m, now_ms(c), from, p, len);
    drain(c);
}

/* ---- push/pull ------------------------------------------------------------ */

static void sync_done(void *arg, int err, const uint8_t *body, size_t len)
{
    sync_ctx_t *x = arg;
    pc_cluster_t *c = x->c;
    int join = x->join;
    free(x);
    if (join)
        c->join_pending--;
    if (c->closing)
        return;
    pc_response_t resp;
    if (err == 0 && (pc_proto_decode_response(c->dec, body, len, &resp) != 0 ||
                     resp.op != PC_OP_SYNC || resp.status != PC_ST_OK))
        err = PC_EPROTO;
    if (err == 0)
        err = pc_member_merge_state(c->m, now_ms(c), resp.body.ptr, resp.body.len);
    if (err != 0) {
        c->stats.sync_errors++;
        if (join)
            pc_log_debug(c->log, "cluster: join through a seed failed: %s", pc_strerror(err));
    } else {
        c->stats.syncs++;
        if (join && !c->joined) {
            c->joined = 1;
            pc_log_info(c->log, "cluster: joined (%zu members known)", pc_member_count(c->m));
        }
    }
    drain(c);
    if (join && c->join_pending == 0 && !c->joined)
        join_schedule(c);
}

/* One push/pull: our state goes in a SYNC request, theirs comes back. */
static void start_sync(pc_cluster_t *c, const char *addr, int join)
{
    if (strcmp(addr, c->addr) == 0)
        return;
    sync_ctx_t *x = malloc(sizeof *x);
    if (x == NULL)
        return;
    x->c = c;
    x->join = join;
    pc_buf_t state;
    pc_buf_init(&state, 0);
    int rc = pc_member_encode_state(c->m, &state);
    if (rc == 0) {
        pc_request_t rq = {.op = PC_OP_SYNC, .id = 1, .body = {state.data, (uint32_t)state.len}};
        pc_buf_reset(&c->req);
        rc = pc_proto_encode_request(&c->req, &rq);
    }
    pc_buf_free(&state);
    if (rc == 0)
        rc = pc_peer_request(c->peers, addr, c->req.data, c->req.len, sync_done, x);
    if (rc < 0) {
        free(x);
        c->stats.sync_errors++;
        return;
    }
    if (join)
        c->join_pending++;
}

static void seed_resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    seed_req_t *sr = req->data;
    pc_cluster_t *c = sr->c;
    int port = sr->port;
    free(sr);
    c->join_pending--;
    if (status == 0 && !c->closing) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            char ip[64], addr[80];
            if (ai->ai_family == AF_INET6) {
                uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
                snprintf(addr, sizeof addr, "[%s]:%d", ip, port);
            } else {
                uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
                snprintf(addr, sizeof addr, "%s:%d", ip, port);
            }
            start_sync(c, addr, 1);
        }
    } else if (status != 0) {
        pc_log_warn(c->log, "cluster: cannot resolve a seed: %s", uv_strerror(status));
    }
    uv_freeaddrinfo(res);
    if (c->join_pending == 0 && !c->joined && !c->closing)
        join_schedule(c);
}

/*
 * Each seed is resolved (a DNS name may stand for many members, as a
 * headless service does) and every address gets a push/pull; one success
 * is a join. Until then, retried with back-off.
 */
static int join_seed(void *arg, const char *host, int port)
{
    pc_cluster_t *c = arg;
    seed_req_t *sr = malloc(sizeof *sr);
    if (sr == NULL)
        return 0;
    sr->c = c;
    sr->port = port;
    sr->req.data = sr;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (uv_getaddrinfo(c->loop, &sr->req, seed_resolved_cb, host, NULL, &hints) < 0) {
        free(sr);
        return 0;
    }
    c->join_pending++;
    return 0;
}

static void join_now(pc_cluster_t *c)
{
    if (c->joined || c->closing || c->join == NULL || c->join[0] == '\0')
        return;
    pc_addr_parse_list(c->join, join_seed, c);
    if (c->join_pending == 0)
        join_schedule(c);
}

static void join_timer_cb(uv_timer_t *t) { join_now(t->data); }

static void join_schedule(pc_cluster_t *c)
{
    if (c->closing)
        return;
    pc_log_info(c->log, "cluster: no seed answered yet; retrying in %llu ms",
                (unsigned long long)c->join_backoff);
    uv_timer_start(&c->join_timer, join_timer_cb, c->join_backoff, 0);
    c->join_backoff = c->join_backoff * 2 > JOIN_RETRY_MAX_MS ? JOIN_RETRY_MAX_MS
                                                              : c->join_backoff * 2;
}

/* ---- public --------------------------------------------------------------- */

int pc_cluster_new(uv_loop_t *loop, const pc_config_t *cfg, pc_peer_pool_t *peers,
                   const pc_log_t *log, pc_guard_t *guard, pc_cluster_t **out)
{
    struct sockaddr_storage ss;
    if (to_sockaddr(cfg->gossip, &ss) < 0) {
        pc_log_error(log, "--gossip %s: must be an IP address and port", cfg->gossip);
        return PC_EINVAL;
    }
    pc_cluster_t *c = calloc(1, sizeof *c);
    if (c != NULL)
        c->lease_until = UINT64_MAX; /* alone: none needed */
    if (c == NULL)
        return PC_ENOMEM;
    c->loop = loop;
    c->log = log;
    c->guard = guard;
    pc_seal_stream_init(&c->seal);
    pc_buf_init(&c->sealed, 0);
    c->peers = peers;
    c->replicas = (unsigned)cfg->replicas;
    c->name = strdup(cfg->name);
    c->addr = strdup(cfg->advertise);
    c->gossip = strdup(cfg->gossip);
    c->join = strdup(cfg->join ? cfg->join : "");
    c->join_backoff = JOIN_RETRY_MIN_MS;
    pc_buf_init(&c->pkt, 0);
    pc_buf_init(&c->req, 0);
    pc_proto_limits_t lim;
    pc_proto_limits_default(&lim);
    lim.max_frame = (uint32_t)cfg->max_frame;
    if (c->name == NULL || c->addr == NULL || c->gossip == NULL || c->join == NULL ||
        pc_proto_decoder_new(&lim, &c->dec) < 0) {
        pc_cluster_free(&c);
        return PC_ENOMEM;
    }

    /* A restarted node must outrank its previous life: wall-clock
     * milliseconds as the first incarnation (pc_member.h). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pc_member_config_t mc = {
        .name = c->name,
        .addr = c->addr,
        .gossip = c->gossip,
        .weight = (uint32_t)cfg->weight,
        .incarnation = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
        .probe_interval_ms = (uint32_t)cfg->probe_interval_ms,
        .probe_timeout_ms = (uint32_t)cfg->probe_timeout_ms,
        .indirect_probes = (uint32_t)cfg->indirect_probes,
        .suspicion_mult = (uint32_t)cfg->suspicion_mult,
        .gossip_interval_ms = (uint32_t)cfg->gossip_interval_ms,
        /* 0 on the command line is "only on join" (--help) */
        .pushpull_interval_ms = cfg->pushpull_interval_ms == 0 ? PC_MEMBER_PUSHPULL_NEVER
                                                               : (uint32_t)cfg->pushpull_interval_ms,
        /* Without Redis behind, the copies are all there is: no lease. */
        .lease_ms = strcasecmp(cfg->redis, "none") == 0 ? PC_MEMBER_LEASE_NEVER : 0,
    };
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    int rc = pc_member_new(&mc, seed, uv_now(loop), &c->m);
    if (rc < 0) {
        pc_log_error(log, "cluster: bad membership settings: %s", pc_strerror(rc));
        pc_cluster_free(&c);
        return PC_EINVAL;
    }
    drain(c); /* self joins: the first ring, of one */
    if (c->ring == NULL) {
        pc_cluster_free(&c);
        return PC_ENOMEM;
    }
    *out = c;
    return 0;
}

void pc_cluster_set_lease_cb(pc_cluster_t *c, pc_cluster_lease_cb cb, void *arg)
{
    c->lease_cb = cb;
    c->lease_arg = arg;
    if (cb)
        cb(arg, c->lease_until);
}

void pc_cluster_set_regain_cb(pc_cluster_t *c, pc_cluster_regain_cb cb, void *arg)
{
    c->regain_cb = cb;
    c->regain_arg = arg;
}

void pc_cluster_set_ring_cb(pc_cluster_t *c, pc_cluster_ring_cb cb, void *arg)
{
    c->ring_cb = cb;
    c->ring_arg = arg;
    if (cb)
        cb(arg, NULL, c->ring);
}

int pc_cluster_start(pc_cluster_t *c)
{
    struct sockaddr_storage ss;
    to_sockaddr(c->gossip, &ss);
    uv_udp_init(c->loop, &c->udp);
    c->udp.data = c;
    c->handles++;
    int rc = uv_udp_bind(&c->udp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_udp_recv_start(&c->udp, udp_alloc_cb, udp_recv_cb);
    if (rc < 0) {
        pc_log_error(c->log, "gossip %s (udp): %s", c->gossip, uv_strerror(rc));
        return PC_EIO;
    }
    uv_timer_init(c->loop, &c->timer);
    uv_timer_init(c->loop, &c->join_timer);
    uv_timer_init(c->loop, &c->leave_timer);
    c->timer.data = c->join_timer.data = c->leave_timer.data = c;
    c->handles += 3;
    c->started = 1;
    drain(c);
    join_now(c);
    return 0;
}

const pc_ring_t *pc_cluster_ring(const pc_cluster_t *c) { return c->ring; }

long pc_cluster_self(const pc_cluster_t *c) { return c->ring != NULL ? c->self : -1; }

const char *pc_cluster_name(const pc_cluster_t *c) { return c->name; }

uint64_t pc_cluster_fingerprint(const pc_cluster_t *c) { return pc_ring_fingerprint(c->ring); }

unsigned pc_cluster_replicas(const pc_cluster_t *c) { return c->replicas; }

const char *pc_cluster_addr(const pc_cluster_t *c, size_t i)
{
    return i < pc_ring_size(c->ring) ? c->addrs[i] : "";
}

int pc_cluster_suspect(const pc_cluster_t *c, size_t i)
{
    return i < pc_ring_size(c->ring) ? c->suspect[i] : 0;
}

int pc_cluster_sync(pc_cluster_t *c, const uint8_t *state, size_t len, pc_buf_t *reply)
{
    int rc = pc_member_merge_state(c->m, now_ms(c), state, len);
    if (rc < 0) {
        c->stats.sync_errors++;
        return rc == PC_ENOMEM ? rc : PC_EPROTO;
    }
    rc = pc_member_encode_state(c->m, reply);
    c->stats.syncs++;
    drain(c);
    return rc;
}

size_t pc_cluster_members(pc_cluster_t *c, const pc_cluster_member_t **out)
{
    size_t n = pc_member_count(c->m);
    if (n > c->mlist_cap) {
        pc_cluster_member_t *p = realloc(c->mlist, n * sizeof *p);
        if (p == NULL) {
            *out = NULL;
            return 0;
        }
        c->mlist = p;
        c->mlist_cap = n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        pc_member_info_t mi;
        if (pc_member_get(c->m, i, &mi) != 0)
            continue;
        pc_cluster_member_t *m = &c->mlist[k++];
        m->name.ptr = (const uint8_t *)mi.name;
        m->name.len = (uint32_t)strlen(mi.name);
        m->addr.ptr = (const uint8_t *)mi.addr;
        m->addr.len = (uint32_t)strlen(mi.addr);
        m->state = (uint32_t)mi.state;
        m->incarnation = mi.incarnation;
        m->weight = mi.weight;
    }
    *out = c->mlist;
    return k;
}

void pc_cluster_stats(const pc_cluster_t *c, pc_cluster_stats_t *out)
{
    *out = c->stats;
    pc_member_stats_t ms;
    pc_member_stats(c->m, &ms);
    out->gossip_bad += ms.bad_packets;
    out->health = pc_member_health(c->m);
    pc_member_info_t self;
    if (pc_member_lookup(c->m, c->name, &self) == 0)
        out->incarnation = self.incarnation;
}

static void leave_poll_cb(uv_timer_t *t)
{
    pc_cluster_t *c = t->data;
    if (!pc_member_leave_done(c->m) && now_ms(c) - c->leave_started < LEAVE_MAX_MS)
        return;
    uv_timer_stop(t);
    if (c->left) {
        void (*done)(void *) = c->left;
        c->left = NULL;
        done(c->left_arg);
    }
}

void pc_cluster_leave(pc_cluster_t *c, void (*done)(void *), void *arg)
{
    c->left = done;
    c->left_arg = arg;
    c->leave_started = now_ms(c);
    if (!c->started || pc_member_leave(c->m, now_ms(c)) < 0) {
        c->left = NULL;
        done(arg);
        return;
    }
    pc_log_info(c->log, "cluster: leaving");
    drain(c);
    uv_timer_start(&c->leave_timer, leave_poll_cb, LEAVE_POLL_MS, LEAVE_POLL_MS);
}

/* One of the handles (or a ring job) is gone: the last calls closed. */
static void cluster_part_done(pc_cluster_t *c)
{
    if (--c->handles == 0 && c->closed) {
        void (*done)(void *) = c->closed;
        c->closed = NULL;
        done(c->closed_arg);
    }
}

static void handle_closed(uv_handle_t *h) { cluster_part_done(h->data); }

void pc_cluster_close(pc_cluster_t *c, void (*done)(void *), void *arg)
{
    c->closing = 1;
    c->closed = done;
    c->closed_arg = arg;
    if (c->handles == 0) {
        c->closed = NULL;
        done(arg);
        return;
    }
    if (c->building != NULL)
        uv_cancel((uv_req_t *)&c->building->req); /* if it has not started */
    if (!c->started) /* only the ring job was open */
        return;
    uv_close((uv_handle_t *)&c->udp, handle_closed);
    if (c->started) {
        uv_close((uv_handle_t *)&c->timer, handle_closed);
        uv_close((uv_handle_t *)&c->join_timer, handle_closed);
        uv_close((uv_handle_t *)&c->leave_timer, handle_closed);
    }
}

void pc_cluster_free(pc_cluster_t **cp)
{
    pc_cluster_t *c = *cp;
    if (c == NULL)
        return;
    if (c->ring)
        free_index(c->addrs, pc_ring_size(c->ring));
    free(c->suspect);
    pc_ring_free(&c->ring);
    pc_member_free(&c->m);
    pc_proto_decoder_free(&c->dec);
    pc_buf_free(&c->pkt);
    pc_buf_free(&c->sealed);
    pc_buf_free(&c->req);
    free(c->mlist);
    free(c->name);
    free(c->addr);
    free(c->gossip);
    free(c->join);
    free(c);
    *cp = NULL;
}
