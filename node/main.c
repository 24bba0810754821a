/*
 * main.c -- peercached: wires config, log, store, backend, peer pool,
 * cluster and server together in that order and tears them down in
 * reverse.
 *
 * Shutdown (SIGTERM / SIGINT): leave the cluster first, so that the others
 * stop sending us keys while we still answer; then drain the client
 * connections; then close the cluster's socket, the peer connections and
 * Redis. All of it within --shutdown-timeout: a drain that had to cut
 * requests exits 1, and a stop still not over at the deadline logs what
 * it waits for and exits 1 at once.
 *
 * SIGHUP reloads the cluster key file, the token file (key rotation,
 * docs/SECURITY.md) and the Redis password file (used from the next
 * connection to Redis on). A file that does not load leaves the old key,
 * token or password in force.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "pc_backend.h"
#include "pc_cluster.h"
#include "pc_config.h"
#include "pc_guard.h"
#include "pc_log.h"
#include "pc_peer.h"
#include "pc_proto.h"
#include "pc_server.h"
#include "pc_sock.h"
#include "pc_store.h"
#include "pc_uring.h"

extern char **environ;

typedef struct app {
    uv_loop_t loop;
    pc_config_t cfg;
    pc_log_t log;
    pc_store_t *store;
    pc_backend_t *backend;
    pc_cred_t *cred; /* Redis' AUTH, shared by every loop's backend */
    pc_peer_pool_t *peers;
    pc_cluster_t *cluster;
    pc_server_t *server;
    pc_guard_t guard;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t deadline; /* the stop's (on_signal) */
    int stopping;
    size_t nworkers;      /* --threads - 1 worker loops, a thread each */
    uv_loop_t *wloops;
    uv_thread_t *wthreads;
    /* Each worker loop's own Redis connection and peer pool: made here on
     * that loop, closed on its thread once it stopped serving
     * (worker_stopped), freed after the thread is joined. */
    pc_backend_t **wbackends;
    pc_peer_pool_t **wpeers;
} app_t;

static void worker_thread(void *arg)
{
    uv_run(arg, UV_RUN_DEFAULT);
}

/* On worker loop `index`'s thread: it serves nothing more, so its Redis
 * connection and peer pool close (then its loop ends). */
static void worker_stopped(void *arg, size_t index)
{
    app_t *a = arg;
    if (a->wbackends[index - 1] != NULL) {
        pc_backend_close(a->wbackends[index - 1], NULL, NULL);
        a->wbackends[index - 1] = NULL;
    }
    pc_peer_pool_close(a->wpeers[index - 1], NULL, NULL);
}

#define TOKEN_MAX 4096

/* The token the node requires (file wins over PEERCACHE_TOKEN / config),
 * installed in the server; with no cluster key, also sent by our peer
 * connections so that peer operations pass the same check. */
static int load_token(app_t *a, char *err, size_t errlen)
{
    char tok[TOKEN_MAX];
    const char *t = a->cfg.token;
    if (a->cfg.token_file[0] != '\0') {
        int rc = pc_secret_file_line(a->cfg.token_file, "token file", tok, sizeof tok, err,
                                     errlen);
        if (rc < 0)
            return rc;
        t = tok;
    }
    size_t len = strlen(t);
    pc_server_set_token(a->server, t, len);
    if (!pc_guard_on(&a->guard)) {
        pc_buf_t b;
        pc_buf_init(&b, 0);
        pc_request_t hello = {.op = PC_OP_HELLO, .id = 0, .proto_version = PC_PROTO_VERSION,
                              .token = {(const uint8_t *)t, (uint32_t)len}};
        int rc = len ? pc_proto_encode_request(&b, &hello) : 0;
        if (rc == 0)
            rc = pc_server_set_peer_hello(a->server, b.data, b.len);
        pc_buf_free(&b);
        if (rc < 0) {
            snprintf(err, errlen, "token: %s", pc_strerror(rc));
            return rc;
        }
    }
    sodium_memzero(tok, sizeof tok);
    return 0;
}

#define REDIS_PASSWORD_MAX 4096

/* --redis-user and the first line of --redis-password-file into the
 * backends' credentials. 0, or < 0 with err set. */
static int load_redis_password(app_t *a, char *err, size_t errlen)
{
    if (a->cfg.redis_password_file[0] == '\0')
        return 0;
    char pw[REDIS_PASSWORD_MAX];
    int rc = pc_secret_file_line(a->cfg.redis_password_file, "redis password file", pw,
                                 sizeof pw, err, errlen);
    if (rc == 0 && (rc = pc_cred_set(a->cred, a->cfg.redis_user, pw)) < 0)
        snprintf(err, errlen, "redis password: %s", pc_strerror(rc));
    sodium_memzero(pw, sizeof pw);
    return rc;
}

/* SIGHUP: a new keyring, token and Redis password, or the old ones if they
 * do not load. */
static void reload(app_t *a)
{
    char err[512];
    if (pc_guard_on(&a->guard)) {
        pc_keyring_t *kr = NULL;
        int rc = pc_keyring_load_file(a->cfg.cluster_key, &kr, err, sizeof err);
        if (rc < 0) {
            pc_log_error(&a->log, "SIGHUP: %s; keeping the current keys", err);
        } else {
            pc_keyring_t *old = pc_guard_swap(&a->guard, kr);
            pc_log_info(&a->log,
                        "SIGHUP: cluster key reloaded: %zu keys, primary %08x (was %08x)",
                        pc_keyring_count(kr), (unsigned)pc_keyring_id(kr, 0),
                        (unsigned)pc_keyring_id(old, 0));
            pc_keyring_free(&old);
        }
    }
    if (a->cfg.token_file[0] != '\0') {
        if (load_token(a, err, sizeof err) < 0)
            pc_log_error(&a->log, "SIGHUP: %s; keeping the current token", err);
        else
            pc_log_info(&a->log, "SIGHUP: client token reloaded");
    }
    if (a->cfg.redis_password_file[0] != '\0') {
        if (load_redis_password(a, err, sizeof err) < 0)
            pc_log_error(&a->log, "SIGHUP: %s; keeping the current Redis password", err);
        else
            pc_log_info(&a->log, "SIGHUP: Redis password reloaded (used from the next "
                                 "connection to Redis)");
    }
}

static void backend_closed(void *arg)
{
    app_t *a = arg;
    a->backend = NULL;
}

static void peers_closed(void *arg)
{
    app_t *a = arg;
    if (a->backend)
        pc_backend_close(a->backend, backend_closed, a);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
    uv_close((uv_handle_t *)&a->deadline, NULL);
}

static void cluster_closed(void *arg)
{
    app_t *a = arg;
    pc_peer_pool_close(a->peers, peers_closed, a);
}

static void server_done(void *arg)
{
    app_t *a = arg;
    pc_log_info(&a->log, "all connections closed");
    pc_cluster_close(a->cluster, cluster_closed, a);
}

static void handed_off(void *arg)
{
    app_t *a = arg;
    pc_server_shutdown(a->server, server_done, a);
}

/* The others know we left: stream our keys to their new owners (the
 * hand-off our own ring change started), then drain and stop. */
static void cluster_left(void *arg)
{
    app_t *a = arg;
    pc_server_after_handoff(a->server, handed_off, a);
}

/* The stop is still not over at its deadline: something waits on what
 * will never come. Say what, and end without unwinding (the other loops
 * may be anywhere). */
static void stop_overdue(uv_timer_t *t)
{
    app_t *a = t->data;
    char what[512];
    pc_server_pending(a->server, what, sizeof what);
    pc_log_error(&a->log, "shutdown: not over after --shutdown-timeout (%llu ms); still "
                 "pending: %s; exiting", (unsigned long long)a->cfg.shutdown_timeout_ms, what);
    fflush(stderr);
    _exit(1);
}

static void on_signal(uv_signal_t *h, int signum)
{
    app_t *a = h->data;
    if (signum == SIGHUP) {
        reload(a);
        return;
    }
    if (a->stopping) {
        pc_log_warn(&a->log, "second signal: exiting now");
        exit(1);
    }
    a->stopping = 1;
    pc_log_info(&a->log, "%s: leaving the cluster, draining and shutting down",
                signum == SIGTERM ? "SIGTERM" : "SIGINT");
    pc_server_begin_stop(a->server);
    uv_timer_start(&a->deadline, stop_overdue, a->cfg.shutdown_timeout_ms, 0);
    pc_cluster_leave(a->cluster, cluster_left, a);
}

/*
 * Every client connection is a file descriptor, and the usual soft limit
 * (1024) is far below --max-connections: take all the hard limit allows.
 * If even that is too few, accept() starts failing before the node can
 * tell the excess BUSY -- say so at start. The 64 are for the listener,
 * Redis, the peers, the gossip socket, the log and the loop's own.
 */
static void raise_fd_limit(const pc_config_t *cfg, const pc_log_t *log)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
        else
            pc_log_debug(log, "could not raise the open file limit to %llu",
                         (unsigned long long)rl.rlim_max);
    }
    uint64_t need = cfg->max_connections > UINT64_MAX - 64 ? UINT64_MAX
                                                            : cfg->max_connections + 64;
    if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
        pc_log_warn(log,
                    "open file limit %llu is too low for --max-connections %llu (+64 for the "
                    "node itself): raise it (ulimit -n, LimitNOFILE=) or lower --max-connections",
                    (unsigned long long)rl.rlim_cur, (unsigned long long)cfg->max_connections);
}

/*
 * --tcp-rto-min is tried once here, on a scratch socket, so that the
 * sockets made later need no error handling and the log says once (not
 * per connection) what the kernel made of it. A kernel without the
 * option is no reason not to start: the node runs as it did before it,
 * on the kernel's floor (cfg's value becomes 0, nothing is set). One
 * under the kernel's own floor is raised to it.
 */
/*
 * --io uring on a kernel that refuses it -- too old, or io_uring turned
 * off (kernel.io_uring_disabled, a container's seccomp profile) -- is no
 * reason not to start: the node says why and uses epoll.
 */
static void check_io(pc_config_t *cfg, const pc_log_t *log)
{
    if (strcmp(cfg->io, "uring") != 0)
        return;
    char why[200];
    if (pc_uring_probe(why, sizeof why) == 0) {
        pc_log_info(log, "--io uring: client sockets use io_uring");
        return;
    }
    pc_log_warn(log, "--io uring: this kernel refuses it (%s); using epoll", why);
    char *epoll = strdup("epoll");
    if (epoll != NULL) {
        free(cfg->io);
        cfg->io = epoll;
    }
}

static void check_rto_min(pc_config_t *cfg, const pc_log_t *log)
{
    uint64_t want = cfg->tcp_rto_min_ms, effective_us = 0;
    if (want == 0)
        return;
    int rc = pc_sock_rto_min_check(&cfg->tcp_rto_min_ms, &effective_us);
    if (rc == PC_ENOTSUP) {
        pc_log_info(log, "--tcp-rto-min %llums: not supported by this kernel (TCP_RTO_MIN_US "
                    "needs Linux 6.15+); TCP connections keep the kernel's retransmission "
                    "timeout floor (200 ms unless a route sets rto_min)",
                    (unsigned long long)want);
        cfg->tcp_rto_min_ms = 0;
    } else if (rc < 0) {
        pc_log_warn(log, "--tcp-rto-min %llums: %s (%s); TCP connections keep the kernel's "
                    "retransmission timeout floor", (unsigned long long)want, pc_strerror(rc),
                    strerror(errno));
        cfg->tcp_rto_min_ms = 0;
    } else if (cfg->tcp_rto_min_ms != want) {
        pc_log_info(log, "--tcp-rto-min %llums is below this kernel's floor (two clock ticks); "
                    "using %llums (%llu us)", (unsigned long long)want,
                    (unsigned long long)cfg->tcp_rto_min_ms, (unsigned long long)effective_us);
    } else {
        pc_log_debug(log, "--tcp-rto-min %llums: the kernel uses %llu us",
                     (unsigned long long)want, (unsigned long long)effective_us);
    }
}

/*
 * Startup failed (the reason is printed or logged): exit at once. What was
 * allocated so far is still referenced from main's frame -- LeakSanitizer
 * does not count it as leaked -- and the system reclaims it; unwinding
 * half-started libuv handles would buy nothing.
 */
static _Noreturn void startup_failed(int code)
{
    exit(code);
}

int main(int argc, char **argv)
{
    app_t a;
    memset(&a, 0, sizeof a);
    char err[512];

    int rc = pc_config_load(&a.cfg, argc, argv, environ, err, sizeof err);
    if (rc == 1) {
        pc_config_usage(stdout, argv[0]);
        return 0;
    }
    if (rc == 2) {
        printf("peercached %s\n", PC_VERSION_STRING);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "peercached: %s\n(see peercached --help)\n", err);
        return 2;
    }
    if (a.cfg.check_config) {
        printf("peercached: configuration OK\n");
        pc_config_free(&a.cfg);
        return 0;
    }

    a.log.out = stderr;
    a.log.level = pc_log_level_parse(a.cfg.log_level);
    a.log.name = a.cfg.name;
    a.log.json = strcmp(a.cfg.log_format, "json") == 0;
    if (sodium_init() < 0) {
        fprintf(stderr, "peercached: libsodium failed to initialise\n");
        startup_failed(1);
    }
    /* A client that disappears mid-write must not kill the node. */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(&a.cfg, &a.log);
    check_rto_min(&a.cfg, &a.log);
    check_io(&a.cfg, &a.log);

    pc_keyring_t *kr = NULL;
    if (!a.cfg.insecure) {
        if ((rc = pc_keyring_load_file(a.cfg.cluster_key, &kr, err, sizeof err)) < 0) {
            fprintf(stderr, "peercached: --cluster-key: %s\n", err);
            startup_failed(2);
        }
    }
    if ((rc = pc_guard_init(&a.guard, kr, a.cfg.replay_window_ms)) < 0) {
        fprintf(stderr, "peercached: %s\n", pc_strerror(rc));
        startup_failed(1);
    }
    if (a.cfg.insecure)
        pc_log_warn(&a.log, "running --insecure: gossip and peer traffic are neither "
                    "authenticated nor encrypted; anyone who can reach %s can join the "
                    "cluster and read or change its data", a.cfg.listen);
    else
        pc_log_info(&a.log, "cluster key %s: %zu keys, primary %08x", a.cfg.cluster_key,
                    pc_keyring_count(kr), (unsigned)pc_keyring_id(kr, 0));
    if (geteuid() == 0)
        pc_log_warn(&a.log, "running as root: run peercached as an unprivileged user "
                    "(deploy/peercached.service)");

    pc_store_config_t scfg = {
        .memory_limit = a.cfg.memory,
        .shards = pc_store_shards_for(a.cfg.memory, a.cfg.max_key + a.cfg.max_value),
        .policy = strcasecmp(a.cfg.eviction, "lru") == 0 ? PC_EVICT_LRU : PC_EVICT_S3FIFO,
    };
    if ((rc = pc_store_new(&scfg, &a.store)) < 0) {
        fprintf(stderr, "peercached: store: %s\n", pc_strerror(rc));
        startup_failed(1);
    }
    uv_loop_init(&a.loop);

    pc_backend_addr_t raddr;
    if (pc_backend_addr_parse(a.cfg.redis, &raddr, err, sizeof err) < 0) {
        fprintf(stderr, "peercached: --redis: %s\n", err);
        startup_failed(2);
    }
    if (pc_cred_new(&a.cred) < 0 || load_redis_password(&a, err, sizeof err) < 0) {
        fprintf(stderr, "peercached: %s\n", a.cred ? err : "out of memory");
        startup_failed(2);
    }
    pc_backend_config_t bcfg = {.addr = &raddr, .cred = a.cred, .prefix = a.cfg.redis_prefix,
                                .timeout_ms = a.cfg.redis_timeout_ms,
                                .tcp_rto_min_ms = a.cfg.tcp_rto_min_ms,
                                .wait_replicas = (unsigned)a.cfg.redis_wait};
    if (raddr.mode != PC_BACKEND_NONE) {
        /* Credentials Redis refuses, a database it does not have, a master
         * no sentinel knows: an operator's mistake, said now rather than
         * as a node that never comes up. An unreachable Redis is not: the
         * node starts and keeps trying (fail fast meanwhile). */
        rc = pc_backend_probe(&bcfg, err, sizeof err);
        if (rc == PC_EPERM || rc == PC_EINVAL) {
            fprintf(stderr, "peercached: redis: %s\n", err);
            startup_failed(2);
        }
        if (rc < 0)
            pc_log_warn(&a.log, "redis: %s; starting anyway, and trying again", err);
        if ((rc = pc_backend_new(&a.loop, &bcfg, &a.log, &a.backend)) < 0) {
            fprintf(stderr, "peercached: redis: %s\n", pc_strerror(rc));
            startup_failed(1);
        }
    }

    pc_peer_config_t pcfg = {.connect_timeout_ms = a.cfg.peer_timeout_ms,
                             .request_timeout_ms = a.cfg.peer_timeout_ms,
                             .max_frame = (uint32_t)a.cfg.max_frame,
                             .tcp_rto_min_ms = a.cfg.tcp_rto_min_ms};
    if ((rc = pc_peer_pool_new(&a.loop, &pcfg, &a.log, &a.guard, &a.peers)) < 0) {
        fprintf(stderr, "peercached: peers: %s\n", pc_strerror(rc));
        startup_failed(1);
    }
    if ((rc = pc_cluster_new(&a.loop, &a.cfg, a.peers, &a.log, &a.guard, &a.cluster)) < 0) {
        fprintf(stderr, "peercached: cluster: %s\n", pc_strerror(rc));
        startup_failed(rc == PC_EINVAL ? 2 : 1);
    }
    if (a.cfg.threads == 0) {
        unsigned n = uv_available_parallelism();
        a.cfg.threads = n < 1 ? 1 : n > 64 ? 64 : n;
    }
    if ((rc = pc_server_new(&a.loop, &a.cfg, a.store, a.backend, a.cluster, a.peers,
                            &a.guard, &a.log, &a.server)) < 0) {
        fprintf(stderr, "peercached: server: %s\n", pc_strerror(rc));
        startup_failed(1);
    }
    /* --threads: the core loop (this thread) and threads-1 workers. */
    a.nworkers = (size_t)a.cfg.threads - 1;
    a.wloops = calloc(a.nworkers + 1, sizeof *a.wloops);
    a.wthreads = calloc(a.nworkers + 1, sizeof *a.wthreads);
    a.wbackends = calloc(a.nworkers + 1, sizeof *a.wbackends);
    a.wpeers = calloc(a.nworkers + 1, sizeof *a.wpeers);
    if (a.wloops == NULL || a.wthreads == NULL || a.wbackends == NULL || a.wpeers == NULL) {
        fprintf(stderr, "peercached: out of memory\n");
        startup_failed(1);
    }
    for (size_t i = 0; i < a.nworkers; i++) {
        uv_loop_init(&a.wloops[i]);
        /* Each loop its own Redis connection and peer pool. */
        if (a.backend != NULL &&
            (rc = pc_backend_new(&a.wloops[i], &bcfg, &a.log, &a.wbackends[i])) < 0) {
            fprintf(stderr, "peercached: redis: %s\n", pc_strerror(rc));
            startup_failed(1);
        }
        if ((rc = pc_peer_pool_new(&a.wloops[i], &pcfg, &a.log, &a.guard, &a.wpeers[i])) < 0) {
            fprintf(stderr, "peercached: peers: %s\n", pc_strerror(rc));
            startup_failed(1);
        }
        if ((rc = pc_server_add_worker(a.server, &a.wloops[i], a.wbackends[i], a.wpeers[i])) < 0) {
            fprintf(stderr, "peercached: worker loop: %s\n", pc_strerror(rc));
            startup_failed(1);
        }
    }
    if ((rc = load_token(&a, err, sizeof err)) < 0) {
        fprintf(stderr, "peercached: %s\n", err);
        startup_failed(2);
    }
    pc_server_on_loop_stopped(a.server, worker_stopped, &a);
    pc_cluster_set_ring_cb(a.cluster, pc_server_ring_changed, a.server);
    pc_cluster_set_regain_cb(a.cluster, pc_server_regain, a.server);
    pc_cluster_set_lease_cb(a.cluster, pc_server_lease, a.server);
    /* Signals before the listener: once a client (or a test) can connect,
     * SIGTERM must already mean a graceful stop, not the default kill. */
    uv_signal_init(&a.loop, &a.sigterm);
    uv_signal_init(&a.loop, &a.sigint);
    uv_signal_init(&a.loop, &a.sighup);
    uv_timer_init(&a.loop, &a.deadline);
    a.deadline.data = &a;
    a.sigterm.data = a.sigint.data = a.sighup.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sighup, on_signal, SIGHUP);
    if (pc_server_start(a.server) < 0)
        startup_failed(1); /* reason logged */
    for (size_t i = 0; i < a.nworkers; i++) {
        if (uv_thread_create(&a.wthreads[i], worker_thread, &a.wloops[i]) != 0) {
            pc_log_error(&a.log, "cannot start thread %zu", i + 1);
            startup_failed(1);
        }
    }
    if (pc_cluster_start(a.cluster) < 0)
        startup_failed(1); /* reason logged */

    pc_log_info(&a.log,
                "peercached %s listening on %s, gossip %s (%llu thread%s, redis %s%s%s, memory "
                "%zu bytes, %s, replicas %llu%s%s)",
                PC_VERSION_STRING, a.cfg.listen, a.cfg.gossip, (unsigned long long)a.cfg.threads,
                a.cfg.threads == 1 ? "" : "s", a.cfg.redis,
                a.cfg.redis_prefix[0] ? ", prefix " : "", a.cfg.redis_prefix, a.cfg.memory,
                a.cfg.eviction, (unsigned long long)a.cfg.replicas,
                a.cfg.join[0] ? ", joining " : "", a.cfg.join);
    /* The line tests and scripts wait for. */
    fprintf(stdout, "ready %s\n", a.cfg.listen);
    fflush(stdout);

    uv_run(&a.loop, UV_RUN_DEFAULT);

    /* The workers stopped before the core did (pc_server_shutdown). */
    for (size_t i = 0; i < a.nworkers; i++)
        uv_thread_join(&a.wthreads[i]);

    int status = pc_server_shutdown_forced(a.server) ? 1 : 0;
    pc_server_free(&a.server);
    pc_cluster_free(&a.cluster);
    pc_peer_pool_free(&a.peers);
    if (uv_loop_close(&a.loop) != 0)
        pc_log_warn(&a.log, "event loop closed with handles still open");
    for (size_t i = 0; i < a.nworkers; i++) {
        pc_peer_pool_free(&a.wpeers[i]);
        if (uv_loop_close(&a.wloops[i]) != 0)
            pc_log_warn(&a.log, "event loop %zu closed with handles still open", i + 1);
    }
    free(a.wloops);
    free(a.wthreads);
    free(a.wbackends);
    free(a.wpeers);
    pc_store_free(&a.store);
    pc_guard_free(&a.guard);
    pc_log_info(&a.log, status == 0 ? "bye" : "bye (the drain cut requests in progress)");
    pc_cred_free(&a.cred);
    pc_config_free(&a.cfg);
    return status;
}
