/*
 * pc_server.c -- the node's loops wired from the modules of node/: made,
 * started, switched between home loops and the core, and stopped
 * (pc_server.h; docs/ARCHITECTURE.md "node/").
 */
#include "pc_server.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pc_addr.h"
#include "pc_sock.h"
#include "pc_admin.h"
#include "pc_auth.h"
#include "pc_conns.h"
#include "pc_dispatch.h"
#include "pc_handoff.h"
#include "pc_keys.h"
#include "pc_loop.h"
#include "pc_loops.h"
#include "pc_redis.h"
#include "pc_relay.h"
#include "pc_slots.h"
#include "pc_view.h"

#define TICK_MS 100

struct pc_server {
    pc_shared_t *sh; /* sh->loops[0] is the core */
    char *listen;
    char *name;
    char *http;         /* --http, NULL = none */
    char *resp;         /* --resp, NULL = none */
    pc_admin_t *admin;  /* its endpoint, on the core, once started */
    int reuseport; /* listen with SO_REUSEPORT (more than one loop) */
    uint64_t sweep_interval_ms;
    void (*loop_stopped)(void *arg, size_t index);
    void *loop_stopped_arg;
};

static pc_loop_t *core_of(const pc_server_t *s) { return s->sh->loops[0]; }

/* ---- handles and the end of a loop -------------------------------------- */

/* A loop is done once its own handles are closed and its connections and
 * their handles are gone. */
static void loop_maybe_done(pc_loop_t *l)
{
    if (l->handles_open == 0 && pc_conns_idle(&l->conns) && l->on_done) {
        void (*done)(void *) = l->on_done;
        l->on_done = NULL;
        done(l->on_done_arg);
    }
}

static void handle_gone(pc_loop_t *l)
{
    l->handles_open--;
    loop_maybe_done(l);
}

static void handle_closed(uv_handle_t *h) { handle_gone(h->data); }

static void conn_gone(void *owner) { loop_maybe_done(owner); }

static const pc_conn_hooks_t conn_hooks = {
    .frame = pc_dispatch_frame,
    .ahead = pc_dispatch_ahead,
    .opened = pc_auth_opened,
    .tick = pc_auth_tick,
    .gone = conn_gone,
    .redis_open = pc_redis_open,
    .redis_command = pc_redis_command,
    .redis_answer = pc_redis_answer,
    .redis_free = pc_redis_free,
};

/* ---- home loops on and off ------------------------------------------------ */

/*
 * On the core: turns home loops on or off (pc_loops.h). They are on while
 * the ring is settled: no ring change for a settle window, no slot gained
 * within one, no hand-off running, and every worker holding a view of the
 * current ring. Then no key needs the core's per-slot state (tombstones,
 * settle caps, the hand-off scan), and what the workers need of the ring
 * is in their view. Turning on waits until the core has nothing in flight
 * to Redis for keys homed elsewhere; turning off (also first thing on a
 * ring change) makes the core stop reading, and the hand-off wait, until
 * the workers have nothing in flight: no two Redis connections ever carry
 * one key's commands at once, and the hand-off scan sees every write the
 * homes acknowledged.
 */
static void homes_update(pc_loop_t *core)
{
    pc_shared_t *sh = core->sh;
    if (sh->nloops < 2 || core->handles_open == 0)
        return;
    uint64_t now = pc_loop_now(core);
    int want = pc_view_settled(core) &&
               now >= atomic_load_explicit(&sh->settle_until, memory_order_relaxed) &&
               pc_slots_settled(core, now) && pc_handoff_idle(core) && !core->shutting_down &&
               !core->workers_stopping;
    int on = atomic_load(&sh->homes);
    if (on && !want)
        pc_loops_homes_off(core);
    else if (!on && want && !core->draining && pc_keys_foreign(core) == 0)
        pc_loops_homes_on_now(core);
}

/* ---- making the loops ------------------------------------------------------- */

/* What every loop is made with; the caller filled in the fields above
 * the codec scratch (pc_loop.h). */
static int loop_setup(pc_server_t *s, pc_loop_t *l)
{
    pc_shared_t *sh = s->sh;
    l->sh = sh;
    l->server = s;
    l->name = s->name;
    pthread_mutex_init(&l->xq_lock, NULL);
    int rc = pc_loop_init(l);
    pc_conns_config_t cc = {.limits = l->set.conn, .loop = l->uv, .log = l->log,
                            .guard = l->guard, .stats = &l->stats, .lat = l->lat,
                            .hooks = &conn_hooks,
                            .owner = l, .node_conns = &sh->nconns, .sources = sh->sources,
                            .ring_fp = &sh->ring_fp, .io_uring = l->set.io_uring};
    if (rc == 0)
        rc = pc_conns_init(&l->conns, &cc);
    if (rc == 0)
        rc = pc_keys_new(l);
    if (rc == 0)
        rc = pc_relays_new(l);
    return rc;
}

static void loop_free(pc_loop_t *l)
{
    if (l == NULL)
        return;
    pc_keys_free(l);
    pc_slots_free(l);
    pc_handoff_free(l);
    pc_relays_free(l);
    pc_view_drop(l);
    pc_conns_free(&l->conns);
    pc_loops_free_calls(l);
    pthread_mutex_destroy(&l->xq_lock);
    pc_loop_free(l);
    free(l);
}

int pc_server_new(uv_loop_t *loop, const pc_config_t *cfg, pc_store_t *store,
                  pc_backend_t *backend, pc_cluster_t *cluster, pc_peer_pool_t *peers,
                  pc_guard_t *guard, const pc_log_t *log, pc_server_t **out)
{
    pc_server_t *s = calloc(1, sizeof *s);
    pc_shared_t *sh = calloc(1, sizeof *sh);
    pc_loop_t *l = calloc(1, sizeof *l);
    pc_loop_t **loops = calloc(1, sizeof *loops);
    if (s == NULL || sh == NULL || l == NULL || loops == NULL) {
        free(s);
        free(sh);
        free(l);
        free(loops);
        return PC_ENOMEM;
    }
    s->sh = sh;
    sh->loops = loops;
    sh->loops[0] = l;
    pc_auth_shared_init(&sh->auth);
    sh->has_backend = backend != NULL;
    sh->recheck = homes_update;
    /* No cluster: everything is ours, whatever its epoch. */
    atomic_init(&sh->alone, cluster == NULL);
    atomic_init(&sh->lease_until, UINT64_MAX);
    /* Every connection accepted is counted by address, and no more than
     * --max-connections (+1, refused on arrival) are open. */
    uint64_t cap = cfg->max_connections < (1u << 22) ? cfg->max_connections : (1u << 22);
    int rc = pc_sources_new((size_t)cap + 64, &sh->sources);
    if (rc == 0 && cfg->threads > 1 && cluster != NULL) {
        sh->gate = calloc(PC_RING_SLOTS, sizeof *sh->gate);
        for (size_t i = 0; sh->gate != NULL && i < PC_RING_SLOTS; i++)
            atomic_init(&sh->gate[i], PC_GATE_NONE);
        if (sh->gate == NULL)
            rc = PC_ENOMEM;
    }
    s->listen = strdup(cfg->listen);
    s->name = strdup(cfg->name ? cfg->name : cfg->listen);
    if (cfg->resp != NULL && cfg->resp[0] != '\0' && strcmp(cfg->resp, "none") != 0 &&
        (s->resp = strdup(cfg->resp)) == NULL)
        rc = PC_ENOMEM;
    if (cfg->http != NULL && cfg->http[0] != '\0' && strcmp(cfg->http, "none") != 0 &&
        (s->http = strdup(cfg->http)) == NULL)
        rc = PC_ENOMEM;
    s->reuseport = cfg->threads > 1;
    s->sweep_interval_ms = cfg->sweep_interval_ms;
    if (s->listen == NULL || s->name == NULL)
        rc = PC_ENOMEM;

    pc_conn_limits_t *lim = &l->set.conn;
    pc_proto_limits_default(&lim->proto);
    lim->proto.max_frame = (uint32_t)cfg->max_frame;
    lim->proto.max_key = (uint32_t)cfg->max_key;
    lim->proto.max_value = (uint32_t)cfg->max_value;
    lim->proto.max_mget_keys = (uint32_t)cfg->max_mget_keys;
    lim->max_connections = cfg->max_connections;
    lim->max_conns_per_source = cfg->max_conns_per_source;
    lim->hello_timeout_ms = cfg->hello_timeout_ms ? cfg->hello_timeout_ms : 1;
    lim->idle_timeout_ms = cfg->idle_timeout_ms;
    lim->max_inflight = cfg->max_inflight ? cfg->max_inflight : 1;
    lim->max_output = cfg->max_output;
    lim->frame_timeout_ms = cfg->frame_timeout_ms;
    lim->output_timeout_ms = cfg->output_timeout_ms ? cfg->output_timeout_ms : 1;
    lim->max_buffer_memory = cfg->max_buffer_memory ? cfg->max_buffer_memory : SIZE_MAX;
    lim->tcp_rto_min_ms = cfg->tcp_rto_min_ms;
    l->set.settle_ms = cfg->ring_settle_ms;
    l->set.shutdown_timeout_ms = cfg->shutdown_timeout_ms;
    l->set.io_uring = cfg->io != NULL && strcmp(cfg->io, "uring") == 0;
    l->uv = loop;
    l->index = 0;
    l->log = log;
    l->store = store;
    l->backend = backend;
    l->peers = peers;
    l->guard = guard;
    l->cluster = cluster;
    if (rc == 0)
        rc = loop_setup(s, l);
    if (rc == 0 && cluster != NULL) {
        rc = pc_slots_new(l);
        if (rc == 0)
            rc = pc_handoff_new(l, cfg->handoff_rate);
    }
    if (rc < 0) {
        pc_server_free(&s);
        return rc == PC_EINVAL ? PC_EINVAL : PC_ENOMEM;
    }
    *out = s;
    return 0;
}

int pc_server_add_worker(pc_server_t *s, uv_loop_t *loop, pc_backend_t *backend,
                         pc_peer_pool_t *peers)
{
    pc_shared_t *sh = s->sh;
    pc_loop_t *core = core_of(s);
    if (core->handles_open != 0 || peers == NULL || (backend == NULL) != (core->backend == NULL))
        return PC_EINVAL;
    pc_loop_t **loops = realloc(sh->loops, (sh->nworkers + 2) * sizeof *loops);
    if (loops == NULL)
        return PC_ENOMEM;
    sh->loops = loops;
    pc_loop_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return PC_ENOMEM;
    w->set = core->set;
    w->uv = loop;
    w->index = sh->nworkers + 1;
    w->log = core->log;
    w->store = core->store;
    w->backend = backend;
    w->peers = peers;
    w->guard = core->guard;
    if (loop_setup(s, w) < 0) {
        loop_free(w);
        return PC_ENOMEM;
    }
    sh->loops[++sh->nworkers] = w;
    return 0;
}

void pc_server_on_loop_stopped(pc_server_t *s, void (*cb)(void *arg, size_t index), void *arg)
{
    s->loop_stopped = cb;
    s->loop_stopped_arg = arg;
}

int pc_server_set_token(pc_server_t *s, const char *token, size_t len)
{
    pc_auth_set_token(&s->sh->auth, token, len);
    return 0;
}

/* ---- peer hello (every loop's pool) ------------------------------------------ */

typedef struct hellomsg {
    size_t len;
    uint8_t frame[];
} hellomsg_t;

static void hello_take(pc_loop_t *w, void *arg) /* on a worker */
{
    hellomsg_t *m = arg;
    if (pc_peer_set_hello(w->peers, m->frame, m->len) < 0)
        pc_log_error(w->log, "loop %zu: no memory for the peer HELLO", w->index);
    free(m);
}

int pc_server_set_peer_hello(pc_server_t *s, const uint8_t *frame, size_t len)
{
    pc_shared_t *sh = s->sh;
    pc_loop_t *core = core_of(s);
    int rc = pc_peer_set_hello(core->peers, frame, len);
    for (size_t i = 1; rc == 0 && i <= sh->nworkers; i++) {
        pc_loop_t *w = sh->loops[i];
        if (core->handles_open == 0) { /* the core not started: no worker runs yet */
            rc = pc_peer_set_hello(w->peers, frame, len);
            continue;
        }
        hellomsg_t *m = malloc(sizeof *m + (len ? len : 1));
        if (m == NULL)
            return PC_ENOMEM;
        m->len = len;
        if (len)
            memcpy(m->frame, frame, len);
        if (pc_loops_call(w, hello_take, m) < 0)
            free(m); /* a stopping worker makes no new connections */
    }
    return rc;
}

/* ---- ring changes ------------------------------------------------------------- */

void pc_server_ring_changed(void *arg, const pc_ring_t *old, const pc_ring_t *nw)
{
    pc_server_t *s = arg;
    pc_loop_t *core = core_of(s);
    if (core->slots == NULL)
        return;
    /* First of all: the workers stop serving keys on their own (they
     * would route by the old ring), and the homes drain. */
    if (core->handles_open != 0)
        pc_loops_homes_off(core);
    long so = old ? pc_ring_find(old, s->name) : -1;
    long sn = pc_ring_find(nw, s->name);
    uint8_t *lost = old ? calloc(PC_RING_SLOTS, 1) : NULL;
    /* Our roles on both rings, each in one pass over the placement. */
    uint8_t *roles = malloc(2 * (size_t)PC_RING_SLOTS);
    const uint8_t *rold = roles, *rnew = roles ? roles + PC_RING_SLOTS : NULL;
    if (roles != NULL) {
        pc_ring_roles(old, so, roles);
        pc_ring_roles(nw, sn, roles + PC_RING_SLOTS);
    }
    uint32_t nlost = pc_slots_ring_changed(core, old, nw, rold, rnew, lost);
    pc_view_publish(core, nw, sn, rnew, pc_slots_epochs(core), pc_slots_epoch_max(core),
                    pc_slots_settle_until(core));
    homes_update(core); /* on again once settled and every worker has the view */
    free(roles);
    if (lost && (nlost > 0 || pc_handoff_active(core)))
        pc_handoff_ring_changed(core, nw, lost);
    free(lost);
}

void pc_server_regain(void *arg, const pc_ring_t *ring)
{
    pc_server_t *s = arg;
    pc_loop_t *core = core_of(s);
    if (core->slots == NULL || core->backend == NULL)
        return;
    long sn = pc_ring_find(ring, s->name);
    uint8_t *roles = malloc(PC_RING_SLOTS);
    if (roles == NULL)
        return; /* the copies stay in use: as before this existed */
    if (core->handles_open != 0)
        pc_loops_homes_off(core);
    pc_ring_roles(ring, sn, roles);
    pc_slots_regain(core, roles);
    pc_view_publish(core, ring, sn, roles, pc_slots_epochs(core), pc_slots_epoch_max(core),
                    pc_slots_settle_until(core));
    homes_update(core);
    free(roles);
}

void pc_server_lease(void *arg, uint64_t until_ms)
{
    pc_server_t *s = arg;
    /* release: the view pc_server_regain published just before (when the
     * lease comes back) is seen by any loop that sees the new lease. */
    atomic_store_explicit(&s->sh->lease_until, until_ms, memory_order_release);
}

void pc_server_after_handoff(pc_server_t *s, void (*done)(void *), void *arg)
{
    pc_handoff_after(core_of(s), done, arg);
}

/* ---- starting ------------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status)
{
    pc_loop_t *l = server->data;
    if (status < 0) {
        pc_log_warn(l->log, "accept: %s", uv_strerror(status));
        return;
    }
    pc_conns_accept(&l->conns, server, server == (uv_stream_t *)&l->resp_listener);
}

/* Binds and listens on h (the loop's client or Redis-protocol listener);
 * with SO_REUSEPORT when the node has several loops, each loop on its own
 * socket. A libuv error code. */
static int listen_on(pc_server_t *s, pc_loop_t *l, uv_tcp_t *h, const struct sockaddr *sa,
                     socklen_t salen)
{
    uv_tcp_init(l->uv, h);
    h->data = l;
    l->handles_open++;
    int rc;
    if (!s->reuseport) {
        rc = uv_tcp_bind(h, sa, 0);
    } else {
        int one = 1, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
            bind(fd, sa, salen) < 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        if ((rc = uv_tcp_open(h, fd)) < 0) {
            close(fd);
            return rc;
        }
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)h, 1024, on_connection);
    return rc;
}

/*
 * SO_REUSEPORT would let a second process of the same user bind the port
 * too and take a share of the connections. A plain bind first makes
 * "address in use" an error as it is with one loop: it fails if anyone
 * listens there, and a second peercached makes the same check.
 */
static int port_free(const struct sockaddr *sa, socklen_t salen)
{
    int one = 1, rc = 0, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, sa, salen) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

static void tick_cb(uv_timer_t *t)
{
    pc_loop_t *l = t->data;
    pc_server_t *s = l->server;
    uint64_t now = pc_loop_now(l);
    pc_conns_tick(&l->conns, now);
    if (s->sweep_interval_ms > 0 && now - l->last_sweep >= s->sweep_interval_ms) {
        /* Bounded work per tick: the loop never stalls on a big sweep. */
        pc_store_sweep(l->store, now, 1000);
        l->last_sweep = now;
    }
    if (pc_loop_is_core(l)) {
        pc_view_refresh(l);
        homes_update(l);
    }
}

static void start_handles(pc_loop_t *l)
{
    pc_conns_start(&l->conns);
    uv_timer_init(l->uv, &l->tick);
    l->tick.data = l;
    l->handles_open++;
    uv_timer_start(&l->tick, tick_cb, TICK_MS, TICK_MS);
    uv_timer_init(l->uv, &l->shutdown_timer);
    l->shutdown_timer.data = l;
    l->handles_open++;
    if (pc_loop_is_core(l)) {
        pc_loops_init_drain(l);
        pc_handoff_open(l);
    }
    pc_loops_open_calls(l);
}

/* A worker's listener on the core's address of h (its port, if that
 * was 0). 0 or PC_EIO. */
static int worker_listen(pc_server_t *s, pc_loop_t *w, uv_tcp_t *h, const uv_tcp_t *core_h,
                         const char *addr)
{
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    int rc = uv_tcp_getsockname(core_h, (struct sockaddr *)&ss, &sslen);
    if (rc == 0)
        rc = listen_on(s, w, h, (struct sockaddr *)&ss, (socklen_t)sslen);
    if (rc < 0) {
        pc_log_error(w->log, "listen %s (loop %zu): %s", addr, w->index, uv_strerror(rc));
        return PC_EIO;
    }
    return 0;
}

/* A worker's listeners, and its two relays, whose core ends become
 * internal connections. */
static int worker_start(pc_server_t *s, pc_loop_t *w)
{
    pc_loop_t *core = core_of(s);
    if (worker_listen(s, w, &w->listener, &core->listener, s->listen) < 0)
        return PC_EIO;
    w->listening = 1;
    if (s->resp != NULL) {
        if (worker_listen(s, w, &w->resp_listener, &core->resp_listener, s->resp) < 0)
            return PC_EIO;
        w->resp_listening = 1;
    }
    /* The share pc_server_start set. */
    w->set.conn.max_buffer_memory = core->set.conn.max_buffer_memory;
    w->conns.set.max_buffer_memory = core->set.conn.max_buffer_memory;
    start_handles(w);
    return pc_relays_start_worker(w, core);
}

/* The core's listener h on addr, checked free first when the loops
 * share it. 0, the address' error (pc_sock_listen_addr), or PC_EIO. */
static int core_listen(pc_server_t *s, pc_loop_t *core, uv_tcp_t *h, const char *addr)
{
    char why[320];
    struct addrinfo *ai = NULL;
    int lrc = pc_sock_listen_addr(addr, &ai, why, sizeof why);
    if (lrc != 0) {
        pc_log_error(core->log, "listen: %s", why);
        return lrc;
    }
    int port = ntohs(ai->ai_family == AF_INET6
                         ? ((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_port
                         : ((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_port);
    int rc = s->reuseport && port != 0 ? port_free(ai->ai_addr, ai->ai_addrlen) : 0;
    if (rc == 0)
        rc = listen_on(s, core, h, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc < 0) {
        pc_log_error(core->log, "listen %s: %s", addr, uv_strerror(rc));
        return PC_EIO;
    }
    return 0;
}

int pc_server_start(pc_server_t *s)
{
    pc_shared_t *sh = s->sh;
    pc_loop_t *core = core_of(s);
    /* The operators' endpoint first: once clients can connect, it
     * answers too (a start-up check may poll the client port). */
    if (s->http != NULL) {
        int arc = pc_admin_start(core, s->http, s->name, s->listen, &s->admin);
        if (arc < 0)
            return arc == PC_EINVAL ? PC_EINVAL : PC_EIO;
        core->handles_open++;
    }
    /* The Redis-protocol port before the client port, whose "listening"
     * line a start-up check waits for. */
    int rc;
    if (s->resp != NULL) {
        if ((rc = core_listen(s, core, &core->resp_listener, s->resp)) < 0)
            return rc;
        core->resp_listening = 1;
    }
    if ((rc = core_listen(s, core, &core->listener, s->listen)) < 0)
        return rc;
    core->listening = 1;
    /* The buffer cap is the node's: each loop gets an equal share. */
    core->set.conn.max_buffer_memory /= sh->nworkers + 1;
    core->conns.set.max_buffer_memory = core->set.conn.max_buffer_memory;
    start_handles(core);
    for (size_t i = 1; i <= sh->nworkers; i++)
        if ((rc = worker_start(s, sh->loops[i])) < 0)
            return rc;
    sh->nloops = sh->nworkers + 1;
    if (sh->has_backend && sh->nworkers > 0) {
        sh->nhomes = sh->nloops < PC_LOOPS_MAX_HOMES ? sh->nloops : PC_LOOPS_MAX_HOMES;
        if ((rc = pc_relays_start_homes(sh)) < 0)
            return rc;
    }
    homes_update(core);
    return 0;
}

int pc_server_http_port(const pc_server_t *s)
{
    return s->admin != NULL ? pc_admin_port(s->admin) : -1;
}

/* ---- stopping ----------------------------------------------------------------- */

static void close_listeners(pc_loop_t *l)
{
    if (l->listening) {
        uv_close((uv_handle_t *)&l->listener, handle_closed);
        l->listening = 0;
    }
    if (l->resp_listening) {
        uv_close((uv_handle_t *)&l->resp_listener, handle_closed);
        l->resp_listening = 0;
    }
}

static void close_handles(pc_loop_t *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->tick))
        uv_close((uv_handle_t *)&l->tick, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&l->shutdown_timer))
        uv_close((uv_handle_t *)&l->shutdown_timer, handle_closed);
    if (pc_loop_is_core(l) && !uv_is_closing((uv_handle_t *)&l->drain_timer))
        uv_close((uv_handle_t *)&l->drain_timer, handle_closed);
    pc_handoff_close(l, handle_closed);
    pc_relays_close(l, handle_gone);
    pc_conns_close(&l->conns);
    pc_loops_close_calls(l, handle_closed);
}

/* What this loop's stop still waits for, as a phrase for the log. */
static void loop_pending(const pc_loop_t *l, char *buf, size_t len)
{
    unsigned long long reqs, relayed, forwarded;
    pc_conns_pending(&l->conns, &reqs, &relayed, &forwarded);
    snprintf(buf, len, "loop %zu: %llu connection(s) open, %llu request(s) unanswered (%llu "
             "relayed to another loop, %llu forwarded to a peer), %zu key(s) with Redis "
             "commands in flight%s%s", l->index, (unsigned long long)l->conns.nconns, reqs,
             relayed, forwarded, pc_keys_count(l), l->draining ? ", home loops draining" : "",
             pc_handoff_active(l) ? ", a hand-off running" : "");
}

/* The drain reached the stop's deadline: what is left is cut, and the
 * node will exit non-zero (pc_server_shutdown_forced). */
static void shutdown_timeout_cb(uv_timer_t *t)
{
    pc_loop_t *l = t->data;
    char what[256];
    loop_pending(l, what, sizeof what);
    pc_log_warn(l->log, "shutdown: --shutdown-timeout (%llu ms) reached; closing what is left "
                "(%s)", (unsigned long long)l->set.shutdown_timeout_ms, what);
    atomic_store(&l->sh->forced, 1);
    pc_conns_cut(&l->conns);
    /* What the cut requests still wait on ends now too: their callbacks
     * find closed connections, and the loop can finish. */
    if (l->backend != NULL)
        pc_backend_fail_pending(l->backend);
    if (l->peers != NULL)
        pc_peer_pool_fail_all(l->peers);
    close_handles(l);
}

/* Polls until every connection has drained, then closes the handles. */
static void shutdown_poll_cb(uv_timer_t *t)
{
    pc_loop_t *l = t->data;
    if (l->conns.nconns == 0) {
        uv_timer_stop(&l->tick);
        close_handles(l);
    }
}

/* The stop's deadline (pc_server_begin_stop), or --shutdown-timeout from
 * now if it was never started. */
static uint64_t stop_deadline(const pc_loop_t *l)
{
    uint64_t d = atomic_load(&l->sh->stop_deadline);
    return d != 0 ? d : pc_loop_now(l) + l->set.shutdown_timeout_ms;
}

static void loop_shutdown(pc_loop_t *l, void (*done)(void *), void *arg)
{
    l->shutting_down = 1;
    l->on_done = done;
    l->on_done_arg = arg;
    if (l->handles_open == 0) { /* never started */
        l->on_done = NULL;
        done(arg);
        return;
    }
    close_listeners(l);
    /* Stop taking requests; each connection closes once its answers are
     * out. */
    pc_conns_stop(&l->conns);
    /* Cut what is left a little before the deadline, so that the node
     * still closes everything in order and exits before it. */
    uint64_t now = pc_loop_now(l), grace = l->set.shutdown_timeout_ms / 5;
    uint64_t cut = stop_deadline(l) - (grace < 1000 ? grace : 1000);
    uv_timer_start(&l->shutdown_timer, shutdown_timeout_cb, cut > now ? cut - now : 0, 0);
    uv_timer_start(&l->tick, shutdown_poll_cb, 10, 10);
}

/* Shutting down with workers: they stop first (their requests at the
 * core still need it), each reporting back here, then the core. */
static void core_worker_stopped(pc_loop_t *core, void *arg)
{
    (void)arg;
    if (--core->workers_running == 0)
        loop_shutdown(core, core->on_done, core->on_done_arg);
}

static void worker_stopped(void *arg)
{
    pc_loop_t *w = arg;
    pc_server_t *s = w->server;
    if (s->loop_stopped)
        s->loop_stopped(s->loop_stopped_arg, w->index);
    if (pc_loops_call(w->sh->loops[0], core_worker_stopped, NULL) < 0)
        pc_log_error(w->log, "loop %zu stopped, but could not tell the core", w->index);
}

static void worker_stop_call(pc_loop_t *w, void *arg)
{
    (void)arg;
    loop_shutdown(w, worker_stopped, w);
}

static void admin_closed(void *arg) { handle_gone(arg); }

void pc_server_shutdown(pc_server_t *s, void (*done)(void *), void *arg)
{
    pc_shared_t *sh = s->sh;
    pc_loop_t *core = core_of(s);
    if (s->admin != NULL) { /* operators see the node go at once */
        pc_admin_close(s->admin, admin_closed, core);
        s->admin = NULL;
    }
    if (sh->nworkers == 0 || core->workers_stopping || core->handles_open == 0) {
        loop_shutdown(core, done, arg);
        return;
    }
    core->workers_stopping = 1;
    core->on_done = done;
    core->on_done_arg = arg;
    homes_update(core); /* the core serves every key from now on */
    close_listeners(core); /* no new connections here either meanwhile */
    core->workers_running = sh->nworkers;
    for (size_t i = 1; i <= sh->nworkers; i++)
        if (pc_loops_call(sh->loops[i], worker_stop_call, NULL) < 0)
            core->workers_running--;
    if (core->workers_running == 0)
        loop_shutdown(core, done, arg);
}

void pc_server_begin_stop(pc_server_t *s)
{
    pc_loop_t *core = core_of(s);
    uint64_t now = pc_loop_now(core);
    uint64_t zero = 0;
    if (atomic_compare_exchange_strong(&s->sh->stop_began, &zero, now))
        atomic_store(&s->sh->stop_deadline, now + core->set.shutdown_timeout_ms);
}

int pc_server_shutdown_forced(const pc_server_t *s) { return atomic_load(&s->sh->forced); }

void pc_server_pending(const pc_server_t *s, char *buf, size_t len)
{
    const pc_loop_t *core = core_of(s);
    char own[256];
    loop_pending(core, own, sizeof own);
    if (core->workers_stopping && core->workers_running > 0)
        snprintf(buf, len, "%s; %zu worker loop(s) not stopped yet (%llu client connection(s) "
                 "open on all loops)", own, core->workers_running,
                 (unsigned long long)atomic_load(&s->sh->nconns));
    else
        snprintf(buf, len, "%s", own);
}

void pc_server_free(pc_server_t **sp)
{
    pc_server_t *s = *sp;
    if (s == NULL)
        return;
    pc_shared_t *sh = s->sh;
    for (size_t i = 0; sh->loops != NULL && i <= sh->nworkers; i++)
        loop_free(sh->loops[i]);
    free(sh->loops);
    free((void *)sh->gate);
    pc_sources_free(&sh->sources);
    pc_auth_shared_destroy(&sh->auth);
    free(sh);
    free(s->listen);
    free(s->name);
    free(s->http);
    free(s->resp);
    free(s);
    *sp = NULL;
}
