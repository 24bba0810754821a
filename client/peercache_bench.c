/*
 * peercache_bench.c -- peercache-bench, a load generator that speaks
 * peercache's protocol, Redis' (RESP) and memcached's text protocol, so one
 * tool measures every server the same way.
 *
 * Shape of a run: connect every socket (up to 5 s), prefill (SET every key
 * once, so that reads can hit), then the clock starts: warm-up, whose
 * figures are thrown away, then the measured duration. A progress line is
 * printed once a second on stderr, and the summary at the end (text, or
 * one JSON object with --json).
 *
 * Threads and sockets. Each of --threads threads owns connections /
 * threads "clients" and runs its own epoll loop over their sockets, with
 * no locks and no allocation once running: a request is encoded straight
 * into its socket's output buffer, a reply parsed in place from its input
 * buffer (pc_bench.h). A client keeps up to --pipeline requests
 * outstanding. It has one socket, to the nodes in turn (client i to node
 * i mod N) -- or, in ring mode, one socket per cluster member, and sends
 * each request to the socket of its key's owner, so the pipeline depth is
 * per client, across its sockets.
 *
 * Closed and open loop. Closed loop (no --rate): a client sends a new
 * request as soon as one of its outstanding requests is answered, and a
 * latency is counted from the moment the request was written to the
 * output buffer. Open loop (--rate R): thread t issues its share of R
 * (R x its clients / all clients) on a fixed schedule, the j-th request
 * at start + j / R_t going to client j mod clients -- so each client sends
 * at fixed intervals, its clients' slots interleaved. A request's latency
 * counts from its scheduled time, not from when it was actually sent: a
 * client whose pipeline is full, or a generator that fell behind, makes
 * the requests wait and the wait shows in the latency ("coordinated
 * omission" corrected). A client that is behind sends as fast as its
 * pipeline allows, still stamping each request with its scheduled time.
 * Requests scheduled but never sent by the end are reported as unsent.
 *
 * Failures are counted and the run goes on: an error reply counts once; a
 * connection that closes, breaks or sends something that is not the reply
 * expected is closed, each request on it counts as an error, so does the
 * failure itself, and it reconnects after a back-off (50 ms doubling to
 * 1 s). Requests a client makes while its socket is down wait in that
 * socket's buffer and go out after the reconnect (their latency includes
 * the wait).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "pc_addr.h"
#include "pc_bench.h"
#include "pc_client.h"
#include "pc_proto.h"
#include "pc_ring.h"
#include "pc_seal.h"

#ifndef PC_VERSION_STRING
#define PC_VERSION_STRING "unknown"
#endif

#define PROG "peercache-bench"

enum exit_code { EXIT_DONE = 0, EXIT_NOCONN = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull
#define CONNECT_WAIT_NS (5 * NS_PER_S)  /* connect phase: at most this long */
#define PREFILL_STALL_NS (10 * NS_PER_S) /* prefill without progress: give up */
#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 1000u
#define EVENTS_PER_WAIT 256
#define MAX_POLL_MS 10 /* how late a worker may notice a phase change */
#define MAX_PIPELINE 1024u /* a node's default --max-inflight */
#define MAX_CONNECTIONS 1000000u
#define MAX_THREADS 256u
#define MAX_VALUE (1024u * 1024u) /* a node's default --max-value */
#define MAX_MEMORY ((uint64_t)4 << 30) /* buffers, all sockets together */
#define MAX_SERVER_PIDS 16

/* ---- options ---------------------------------------------------------------- */

typedef struct opts {
    enum pc_bench_proto proto;
    const char *nodes; /* NULL: the protocol's default */
    unsigned connections, threads, pipeline;
    unsigned reads, writes;
    size_t value_size;
    uint64_t keys;
    double zipf_s; /* 0 = uniform */
    double duration_s, warmup_s;
    double rate; /* 0 = closed loop */
    int prefill; /* -1 = on when there are reads */
    int ring;    /* -1 = on when more than one node is given */
    const char *token;
    bool token_flag; /* --token or --token-file (not the environment) */
    char token_buf[4096];
    bool json, quiet;
    uint64_t seed;
    const char *ratio_arg, *dist_arg;
    unsigned npids; /* --server-pid */
    int pids[MAX_SERVER_PIDS];
} opts_t;

enum opt_id {
    O_PROTOCOL = 1000, O_NODES, O_CONNECTIONS, O_THREADS, O_PIPELINE, O_RATIO, O_VALUE_SIZE,
    O_KEYS, O_DISTRIBUTION, O_DURATION, O_WARMUP, O_RATE, O_PREFILL, O_NO_PREFILL, O_RING,
    O_NO_RING, O_TOKEN, O_TOKEN_FILE, O_SERVER_PID, O_JSON, O_QUIET, O_SEED, O_HELP, O_VERSION,
};

/* The one table of options: getopt_long's list and --help come from it. */
typedef struct optdef {
    const char *name;
    const char *metavar; /* NULL: a flag */
    int id;
    const char *help;
} optdef_t;

static const optdef_t OPTIONS[] = {
    {"protocol", "peercache|redis|memcache", O_PROTOCOL,
     "Protocol to speak (default peercache)."},
    {"nodes", "HOST:PORT[,...]", O_NODES,
     "Servers (default 127.0.0.1:7400, :6379 for redis, :11211 for\n"
     "memcache). Connections go to them in turn; in ring mode they\n"
     "are only asked for the cluster's members."},
    {"connections", "N", O_CONNECTIONS,
     "Clients, each with up to --pipeline requests outstanding\n"
     "(default 50). In ring mode each has one socket per member."},
    {"threads", "N", O_THREADS, "Threads, each running connections/threads clients (default 1)."},
    {"pipeline", "N", O_PIPELINE, "Requests a client keeps outstanding, 1..1024 (default 1)."},
    {"ratio", "R:W", O_RATIO, "GETs to SETs, e.g. 7:3 = 70% GET, 1:0 = reads only (default 7:3)."},
    {"value-size", "BYTES", O_VALUE_SIZE, "Bytes of every value SET, 0..1048576 (default 100)."},
    {"keys", "N", O_KEYS, "Distinct keys, \"key:\" and a zero-padded index (default 100000)."},
    {"distribution", "uniform|zipf:S", O_DISTRIBUTION,
     "Key popularity: uniform, or Zipf with exponent S in (0, 10],\n"
     "key:0 the hottest (default uniform)."},
    {"duration", "SECONDS", O_DURATION, "Measured time, after the warm-up (default 15)."},
    {"warmup", "SECONDS", O_WARMUP, "Load before the measurement, not counted (default 2)."},
    {"rate", "OPS", O_RATE,
     "Open loop: OPS requests per second in all, on a fixed schedule;\n"
     "latency counts from the scheduled time. Default: closed loop."},
    {"prefill", NULL, O_PREFILL,
     "SET every key once before the warm-up (default when R > 0)."},
    {"no-prefill", NULL, O_NO_PREFILL, "Do not prefill."},
    {"ring", NULL, O_RING,
     "peercache: learn the members (CLUSTER) and send each key to\n"
     "its owner. Default when --nodes lists more than one node."},
    {"no-ring", NULL, O_NO_RING, "peercache: send to --nodes in turn; nodes forward keys."},
    {"token", "TOKEN", O_TOKEN,
     "peercache: client token sent in HELLO on every connection\n"
     "(also $PEERCACHE_TOKEN, which keeps it out of ps)."},
    {"token-file", "FILE", O_TOKEN_FILE, "peercache: the token is the first line of FILE (mode 0600)."},
    {"server-pid", "PID[,...]", O_SERVER_PID,
     "Also report the CPU time (user + system, every thread) these\n"
     "local server processes used in the measured window, and per\n"
     "operation: steadier than ops/s on a shared machine."},
    {"json", NULL, O_JSON, "Summary as one JSON object on stdout (text goes to stderr)."},
    {"quiet", NULL, O_QUIET, "No progress lines."},
    {"seed", "N", O_SEED, "Seed of the key and operation choices (default 1)."},
    {"help", NULL, O_HELP, "This text."},
    {"version", NULL, O_VERSION, "Version."},
};
#define NOPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static const char *const PROTO_NAMES[] = {"peercache", "redis", "memcache"};
static const int DEFAULT_PORTS[] = {7400, 6379, 11211};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s [options]\n"
            "Drives peercached, redis-server or memcached with a closed-loop or\n"
            "open-loop load and reports throughput, hit ratio, errors and latency\n"
            "percentiles (from a histogram with under 1%% error).\n\n",
            PROG);
    for (size_t i = 0; i < NOPTIONS; i++) {
        char head[64];
        snprintf(head, sizeof head, "--%s%s%s", OPTIONS[i].name, OPTIONS[i].metavar ? " " : "",
                 OPTIONS[i].metavar ? OPTIONS[i].metavar : "");
        fprintf(f, "  %s\n", head);
        for (const char *h = OPTIONS[i].help; *h;) {
            size_t n = strcspn(h, "\n");
            fprintf(f, "      %.*s\n", (int)n, h);
            h += n + (h[n] == '\n');
        }
    }
    fprintf(f,
            "\nOutput: a progress line every second on stderr (elapsed, ops/s and\n"
            "p99 of the last second, errors, sockets up), then throughput, hit\n"
            "ratio (GET hits / GETs), errors, p50/p90/p99/p99.9/max latency and\n"
            "(--server-pid) the servers' CPU time.\n"
            "Errors are error replies, requests lost in a connection that\n"
            "closed, and failed or broken connections (which reconnect).\n\n"
            "Exit status: 0 the run completed, 1 no connection could be made (or\n"
            "the ring could not be learned with --ring), 2 usage error, 130\n"
            "interrupted (the summary of what was measured is still printed).\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", PROG);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(%s --help lists the options)\n", PROG);
    return EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return false;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= min) || !(v <= max))
        return false;
    *out = v;
    return true;
}

static int read_token_file(opts_t *o, const char *path)
{
    char err[512];
    if (pc_seal_init() != 0 ||
        pc_secret_file_line(path, "token file", o->token_buf, sizeof o->token_buf, err,
                            sizeof err) != 0) {
        fprintf(stderr, "%s: --token-file: %s\n", PROG, err);
        return EXIT_USAGE;
    }
    o->token = o->token_buf;
    return 0;
}

/* One option; 0 or EXIT_USAGE (said why), or -1 for --help/--version. */
static int apply_option(opts_t *o, int id, const char *v)
{
    uint64_t u;
    switch (id) {
    case O_PROTOCOL:
        for (int p = 0; p < 3; p++) {
            if (strcmp(v, PROTO_NAMES[p]) == 0) {
                o->proto = (enum pc_bench_proto)p;
                return 0;
            }
        }
        return usage_error("--protocol: '%s' is not peercache, redis or memcache", v);
    case O_NODES:
        o->nodes = v;
        return 0;
    case O_CONNECTIONS:
        if (!parse_u64(v, 1, MAX_CONNECTIONS, &u))
            return usage_error("--connections: '%s' is not a number from 1 to %u", v,
                               MAX_CONNECTIONS);
        o->connections = (unsigned)u;
        return 0;
    case O_THREADS:
        if (!parse_u64(v, 1, MAX_THREADS, &u))
            return usage_error("--threads: '%s' is not a number from 1 to %u", v, MAX_THREADS);
        o->threads = (unsigned)u;
        return 0;
    case O_PIPELINE:
        if (!parse_u64(v, 1, MAX_PIPELINE, &u))
            return usage_error("--pipeline: '%s' is not a number from 1 to %u", v, MAX_PIPELINE);
        o->pipeline = (unsigned)u;
        return 0;
    case O_RATIO: {
        char buf[64];
        const char *colon = strchr(v, ':');
        uint64_t r, w;
        if (colon == NULL || (size_t)(colon - v) >= sizeof buf)
            return usage_error("--ratio: '%s' is not R:W (such as 7:3)", v);
        memcpy(buf, v, (size_t)(colon - v));
        buf[colon - v] = '\0';
        if (!parse_u64(buf, 0, 1000000, &r) || !parse_u64(colon + 1, 0, 1000000, &w) ||
            r + w == 0)
            return usage_error("--ratio: '%s' is not R:W with whole numbers, not both 0", v);
        o->reads = (unsigned)r;
        o->writes = (unsigned)w;
        o->ratio_arg = v;
        return 0;
    }
    case O_VALUE_SIZE:
        if (!parse_u64(v, 0, MAX_VALUE, &u))
            return usage_error("--value-size: '%s' is not a number from 0 to %u", v, MAX_VALUE);
        o->value_size = (size_t)u;
        return 0;
    case O_KEYS:
        if (!parse_u64(v, 1, 1000000000000ull, &u))
            return usage_error("--keys: '%s' is not a number from 1 to 10^12", v);
        o->keys = u;
        return 0;
    case O_DISTRIBUTION:
        if (strcmp(v, "uniform") == 0) {
            o->zipf_s = 0;
        } else if (strncmp(v, "zipf:", 5) == 0 &&
                   parse_double(v + 5, 1e-9, PC_BENCH_ZIPF_MAX_S, &o->zipf_s)) {
            /* parsed */
        } else {
            return usage_error("--distribution: '%s' is not uniform or zipf:S with S in (0, 10]",
                               v);
        }
        o->dist_arg = v;
        return 0;
    case O_DURATION:
        if (!parse_double(v, 0.001, 86400, &o->duration_s))
            return usage_error("--duration: '%s' is not a number of seconds in (0, 86400]", v);
        return 0;
    case O_WARMUP:
        if (!parse_double(v, 0, 86400, &o->warmup_s))
            return usage_error("--warmup: '%s' is not a number of seconds in [0, 86400]", v);
        return 0;
    case O_RATE:
        if (!parse_double(v, 0.001, 1e9, &o->rate))
            return usage_error("--rate: '%s' is not a number of requests per second in (0, 1e9]",
                               v);
        return 0;
    case O_PREFILL:
    case O_NO_PREFILL:
        o->prefill = id == O_PREFILL;
        return 0;
    case O_RING:
    case O_NO_RING:
        o->ring = id == O_RING;
        return 0;
    case O_TOKEN:
        o->token = v;
        o->token_flag = true;
        return 0;
    case O_TOKEN_FILE:
        o->token_flag = true;
        return read_token_file(o, v);
    case O_SERVER_PID:
        for (const char *p = v;;) {
            char one[24];
            size_t n = strcspn(p, ",");
            if (n == 0 || n >= sizeof one || o->npids == MAX_SERVER_PIDS)
                return usage_error("--server-pid: '%s' is not a list of up to %d process ids", v,
                                   MAX_SERVER_PIDS);
            memcpy(one, p, n);
            one[n] = '\0';
            if (!parse_u64(one, 1, INT_MAX, &u))
                return usage_error("--server-pid: '%s' is not a process id", one);
            o->pids[o->npids++] = (int)u;
            if (p[n] == '\0')
                break;
            p += n + 1;
        }
        return 0;
    case O_JSON:
        o->json = true;
        return 0;
    case O_QUIET:
        o->quiet = true;
        return 0;
    case O_SEED:
        if (!parse_u64(v, 0, UINT64_MAX, &u))
            return usage_error("--seed: '%s' is not a number", v);
        o->seed = u;
        return 0;
    case O_HELP:
        usage(stdout);
        return -1;
    case O_VERSION:
        printf("%s %s\n", PROG, PC_VERSION_STRING);
        return -1;
    }
    return usage_error("unknown option");
}

/* 0, EXIT_USAGE, or -1 (--help / --version: exit 0). */
static int parse_args(opts_t *o, int argc, char **argv)
{
    struct option longopts[NOPTIONS + 1];
    memset(o, 0, sizeof *o);
    o->proto = PC_BENCH_PEERCACHE;
    o->connections = 50;
    o->threads = 1;
    o->pipeline = 1;
    o->reads = 7;
    o->writes = 3;
    o->ratio_arg = "7:3";
    o->value_size = 100;
    o->keys = 100000;
    o->dist_arg = "uniform";
    o->duration_s = 15;
    o->warmup_s = 2;
    o->prefill = -1;
    o->ring = -1;
    o->seed = 1;
    o->token = getenv("PEERCACHE_TOKEN");
    if (o->token != NULL && o->token[0] == '\0')
        o->token = NULL;
    for (size_t i = 0; i < NOPTIONS; i++) {
        longopts[i] = (struct option){OPTIONS[i].name,
                                      OPTIONS[i].metavar ? required_argument : no_argument, NULL,
                                      OPTIONS[i].id};
    }
    longopts[NOPTIONS] = (struct option){0};
    opterr = 0;
    optind = 1;
    for (;;) {
        int c = getopt_long(argc, argv, "h", longopts, NULL);
        if (c == -1)
            break;
        if (c == 'h')
            c = O_HELP;
        if (c == '?' || c == ':') {
            if (optopt >= O_PROTOCOL)
                return usage_error("%s: missing value", argv[optind - 1]);
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
        int rc = apply_option(o, c, optarg);
        if (rc != 0)
            return rc;
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->threads > o->connections)
        return usage_error("--threads %u is more than --connections %u", o->threads,
                           o->connections);
    if (o->proto != PC_BENCH_PEERCACHE && o->ring == 1)
        return usage_error("--ring is for --protocol peercache");
    if (o->proto != PC_BENCH_PEERCACHE && o->token_flag)
        return usage_error("--token and --token-file are for --protocol peercache");
    if (o->proto != PC_BENCH_PEERCACHE)
        o->token = NULL;
    if (o->prefill < 0)
        o->prefill = o->reads > 0;
    return 0;
}

/* ---- nodes ----------------------------------------------------------------- */

typedef struct node {
    char addr[PC_RING_MAX_NAME + 16]; /* as given or advertised */
    struct sockaddr_storage sa;
    socklen_t salen;
} node_t;

typedef struct node_list {
    node_t *v;
    size_t n, cap;
    const char *err;
} node_list_t;

static int add_node(void *arg, const char *host, int port)
{
    node_list_t *l = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char portstr[16];
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        node_t *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return PC_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    node_t *nd = &l->v[l->n];
    memset(nd, 0, sizeof *nd);
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || res == NULL) {
        fprintf(stderr, "%s: %s: %s\n", PROG, host, rc ? gai_strerror(rc) : "no address");
        return PC_EINVAL;
    }
    memcpy(&nd->sa, res->ai_addr, res->ai_addrlen);
    nd->salen = res->ai_addrlen;
    freeaddrinfo(res);
    if (strchr(host, ':') != NULL)
        snprintf(nd->addr, sizeof nd->addr, "[%s]:%d", host, port);
    else
        snprintf(nd->addr, sizeof nd->addr, "%s:%d", host, port);
    l->n++;
    return 0;
}

/*
 * Ring mode: asks the nodes for the members (libpeercache's CLUSTER call),
 * builds the same ring the nodes use and checks its fingerprint against
 * theirs. On 0, *ring and *members (one node per ring member, in the
 * ring's member order) are the caller's.
 */
static int learn_ring(const opts_t *o, const char *seeds, pc_ring_t **ring, node_list_t *members)
{
    pc_client_options_t co = {.nodes = seeds, .timeout_ms = 2000, .token = o->token};
    pc_client_t *c = NULL;
    pc_cluster_info_t *info = NULL;
    pc_ring_member_t *rm = NULL;
    int rc = pc_client_new(&co, &c);
    if (rc == 0)
        rc = pc_client_cluster(c, &info);
    if (rc != 0) {
        fprintf(stderr, "%s: CLUSTER: %s (%s)\n", PROG, pc_strerror(rc),
                c ? pc_client_errmsg(c) : "");
        pc_client_free(&c);
        return rc;
    }
    rm = calloc(info->nmembers + 1, sizeof *rm);
    size_t n = 0;
    for (size_t i = 0; rm != NULL && i < info->nmembers; i++) {
        int st = info->members[i].state;
        if (st == PC_CLIENT_MEMBER_ALIVE || st == PC_CLIENT_MEMBER_SUSPECT)
            rm[n++] = (pc_ring_member_t){info->members[i].name, info->members[i].weight};
    }
    rc = rm == NULL ? PC_ENOMEM : pc_ring_new(rm, n, info->replicas, ring);
    if (rc == 0 && (n == 0 || pc_ring_fingerprint(*ring) != info->fingerprint)) {
        fprintf(stderr, "%s: the members do not give the nodes' ring (fingerprint %016" PRIx64
                        ", theirs %016" PRIx64 ")\n",
                PROG, n ? pc_ring_fingerprint(*ring) : 0, info->fingerprint);
        rc = PC_EPROTO;
    }
    /* the ring sorts its members by name; the node list follows it */
    for (size_t i = 0; rc == 0 && i < pc_ring_size(*ring); i++) {
        const char *name = pc_ring_name(*ring, i);
        for (size_t j = 0; j < info->nmembers; j++) {
            if (strcmp(info->members[j].name, name) != 0)
                continue;
            rc = pc_addr_parse_list(info->members[j].addr, add_node, members);
            if (rc != 0)
                fprintf(stderr, "%s: member %s advertises '%s', not a usable HOST:PORT\n", PROG,
                        name, info->members[j].addr);
            break;
        }
    }
    if (rc == 0 && members->n != pc_ring_size(*ring))
        rc = PC_EPROTO;
    if (rc != 0)
        pc_ring_free(ring);
    free(rm);
    pc_cluster_info_free(&info);
    pc_client_free(&c);
    return rc;
}

/* ---- the run's shared state ----------------------------------------------------- */

enum phase { PH_CONNECT, PH_PREFILL, PH_RUN, PH_STOP };

typedef struct shared {
    const opts_t *o;
    node_t *nodes;
    size_t nnodes;
    const pc_ring_t *ring; /* ring mode: member i is nodes[i] */
    pc_bench_keys_t keys;
    uint64_t mix;
    unsigned key_width;
    uint8_t *value;
    size_t req_max, hello_len;
    size_t in_max; /* longest reply accepted */
    uint8_t hello[4200];
    /* Written by main before it publishes PH_RUN (release); read-only then. */
    uint64_t t_start, t_warm_end, t_end;
    _Atomic int phase;
} shared_t;

/* ---- workers ---------------------------------------------------------------- */

enum sock_state { S_DOWN, S_CONNECTING, S_UP };
enum { F_PREFILL = 1 };

typedef struct pend {
    uint64_t t;  /* intended send time (ns) */
    uint8_t op;  /* enum pc_bench_op */
    uint8_t flags;
} pend_t;

struct client;

typedef struct bsock {
    int fd;
    uint8_t state;
    bool dirty;
    uint32_t events; /* registered with epoll */
    uint32_t node;
    struct client *cl;
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    uint8_t *in;
    size_t in_len, in_cap;
    pend_t *q; /* ring buffer of what awaits a reply, in send order */
    uint32_t q_head, q_len, q_cap;
    uint64_t next_id, ack_id; /* peercache request ids */
    uint64_t retry_at;
    uint32_t backoff_ms;
} bsock_t;

typedef struct client {
    bsock_t *socks; /* one, or one per ring member */
    uint32_t outstanding;
    uint32_t index; /* within its thread: its slot in the open-loop schedule */
    uint64_t due, sent; /* open loop: requests scheduled, sent */
    uint64_t pf_next, pf_end; /* prefill: keys [pf_next, pf_end) still to SET */
} client_t;

typedef struct counters {
    uint64_t gets, sets, hits, misses;
    uint64_t fail_replies; /* the server answered with an error */
    uint64_t lost;         /* requests on a connection that failed */
    uint64_t conn_errors;  /* connects that failed, connections that broke */
} counters_t;

typedef struct worker {
    shared_t *sh;
    unsigned id;
    pthread_t tid;
    int ep, tfd;
    client_t *clients;
    size_t nclients;
    bsock_t *socks;
    size_t nsocks, socks_per_client;
    bsock_t **dirty;
    size_t ndirty;
    pc_bench_rng_t rng;
    uint64_t now;
    int phase;
    bool warm_done;
    uint64_t pf_total, pf_errors; /* prefill: SETs to make, failed */
    /* open loop */
    double interval_ns;
    uint64_t j_next, armed;
    /* reconnects */
    size_t ndown;
    uint64_t next_retry;
    /* results of the measured window: this thread's only, merged at the end */
    counters_t c;
    pc_bench_hist_t hist;
    /* read by the main thread while the run goes on */
    _Atomic uint64_t live_ops, live_errors, live_pf_done;
    _Atomic uint32_t live_up;
    _Atomic bool ever_up, prefilled;
    _Atomic uint64_t live_hist[PC_BENCH_HIST_BUCKETS];
} worker_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Counters one thread writes and another reads: a relaxed load and store,
 * not an atomic add -- there is one writer, and the hot path stays free
 * of locked instructions. */
static inline void live_inc(_Atomic uint64_t *a)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void mark_dirty(worker_t *w, bsock_t *s)
{
    if (!s->dirty) {
        s->dirty = true;
        w->dirty[w->ndirty++] = s;
    }
}

static void set_events(worker_t *w, bsock_t *s, uint32_t ev)
{
    if (s->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = s};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, s->fd, &e) == 0)
        s->events = ev;
}

static pend_t *q_push_back(bsock_t *s)
{
    pend_t *p = &s->q[(s->q_head + s->q_len) % s->q_cap];
    s->q_len++;
    return p;
}

static bool in_window(const worker_t *w)
{
    return w->phase == PH_RUN && w->now < w->sh->t_end;
}

/* The server may have answered with an error, or a socket failed: one
 * more error, visible in the progress line at once. */
static void count_error(worker_t *w, uint64_t *counter, uint64_t n)
{
    *counter += n;
    for (uint64_t i = 0; i < n; i++)
        live_inc(&w->live_errors);
}

/*
 * Makes one request of client c, stamped with intended time t: a SET of
 * the next prefill key, or in the run a GET or SET of a sampled key, to
 * the socket of the key's owner in ring mode.
 */
static void issue(worker_t *w, client_t *c, uint64_t t, bool prefill)
{
    const shared_t *sh = w->sh;
    char key[PC_BENCH_KEY_MAX];
    uint64_t k;
    enum pc_bench_op op;
    if (prefill) {
        k = c->pf_next++;
        op = PC_BENCH_SET;
    } else {
        op = pc_bench_mix_is_get(sh->mix, &w->rng) ? PC_BENCH_GET : PC_BENCH_SET;
        k = pc_bench_keys_next(&sh->keys, &w->rng);
    }
    size_t klen = pc_bench_key_format(key, k, sh->key_width);
    bsock_t *s = &c->socks[0];
    if (sh->ring != NULL)
        s = &c->socks[pc_ring_owner(sh->ring, key, klen)];
    if (s->out_len + sh->req_max > s->out_cap) {
        /* cannot overflow: a socket holds at most pipeline requests and a
         * HELLO, and out_cap has room for one more; only a partial write
         * can leave a gap at the front */
        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
        s->out_len -= s->out_off;
        s->out_off = 0;
    }
    size_t vlen = op == PC_BENCH_SET ? sh->o->value_size : 0;
    s->out_len += pc_bench_encode(sh->o->proto, op, s->out + s->out_len, s->next_id++, key, klen,
                                  sh->value, vlen);
    pend_t *p = q_push_back(s);
    p->t = t;
    p->op = (uint8_t)op;
    p->flags = prefill ? F_PREFILL : 0;
    c->outstanding++;
    mark_dirty(w, s);
}

static uint64_t sched_time(const worker_t *w, uint64_t j)
{
    return w->sh->t_start + (uint64_t)((double)j * w->interval_ns);
}

/* Fills client c's pipeline with what it may send now. */
static void pump(worker_t *w, client_t *c)
{
    unsigned depth = w->sh->o->pipeline;
    if (w->phase == PH_PREFILL) {
        while (c->outstanding < depth && c->pf_next < c->pf_end)
            issue(w, c, w->now, true);
        return;
    }
    if (!in_window(w))
        return;
    if (w->interval_ns == 0) {
        while (c->outstanding < depth)
            issue(w, c, w->now, false);
        return;
    }
    while (c->outstanding < depth && c->sent < c->due) {
        issue(w, c, sched_time(w, c->sent * w->nclients + c->index), false);
        c->sent++;
    }
}

/* Open loop: hands every request whose time has come to its client. */
static void schedule(worker_t *w)
{
    for (;;) {
        uint64_t t = sched_time(w, w->j_next);
        if (t > w->now || t >= w->sh->t_end)
            return;
        client_t *c = &w->clients[w->j_next % w->nclients];
        c->due++;
        w->j_next++;
        pump(w, c);
    }
}

/* ---- sockets ---------------------------------------------------------------- */

static void retry_later(worker_t *w, bsock_t *s)
{
    count_error(w, &w->c.conn_errors, 1);
    s->state = S_DOWN;
    s->retry_at = w->now + (uint64_t)s->backoff_ms * NS_PER_MS;
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
    w->ndown++;
    if (s->retry_at < w->next_retry)
        w->next_retry = s->retry_at;
}

/*
 * Closes s and schedules its reconnect. Every request of an open
 * connection is lost (it may have been sent: its outcome is unknown) and
 * counts as an error; requests queued behind a connect that failed were
 * never sent and wait for the next attempt.
 */
static void sock_down(worker_t *w, bsock_t *s)
{
    client_t *c = s->cl;
    bool was_up = s->state == S_UP;
    if (s->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }
    s->events = 0;
    retry_later(w, s);
    if (!was_up)
        return;
    atomic_store_explicit(&w->live_up, atomic_load_explicit(&w->live_up, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    uint64_t lost = 0;
    for (uint32_t i = 0; i < s->q_len; i++) {
        const pend_t *p = &s->q[(s->q_head + i) % s->q_cap];
        if (p->op == PC_BENCH_HELLO)
            continue;
        c->outstanding--;
        if (p->flags & F_PREFILL) {
            w->pf_errors++;
            live_inc(&w->live_pf_done);
        } else {
            lost++;
        }
    }
    count_error(w, &w->c.lost, lost);
    s->q_head = s->q_len = 0;
    s->out_off = s->out_len = 0;
    s->in_len = 0;
    s->ack_id = s->next_id;
    pump(w, c);
}

static void sock_connect(worker_t *w, bsock_t *s)
{
    const node_t *nd = &w->sh->nodes[s->node];
    int one = 1;
    w->ndown--;
    int fd = socket(nd->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        retry_later(w, s);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = s};
    if ((connect(fd, (const struct sockaddr *)&nd->sa, nd->salen) != 0 && errno != EINPROGRESS) ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
        close(fd);
        retry_later(w, s);
        return;
    }
    s->fd = fd;
    s->events = EPOLLOUT;
    s->state = S_CONNECTING;
}

static void reconnect_due(worker_t *w)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < w->nsocks; i++) {
        bsock_t *s = &w->socks[i];
        if (s->state != S_DOWN)
            continue;
        if (s->retry_at <= w->now)
            sock_connect(w, s);
        if (s->state == S_DOWN && s->retry_at < next)
            next = s->retry_at;
    }
    w->next_retry = next;
}

/* The connect finished: HELLO (with the token) goes before anything queued. */
static void on_connected(worker_t *w, bsock_t *s, uint32_t events)
{
    const shared_t *sh = w->sh;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 ||
        (events & (EPOLLERR | EPOLLHUP))) {
        sock_down(w, s);
        return;
    }
    s->state = S_UP;
    atomic_store_explicit(&w->live_up, atomic_load_explicit(&w->live_up, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&w->ever_up, true, memory_order_relaxed);
    if (sh->hello_len > 0) {
        memmove(s->out + sh->hello_len, s->out + s->out_off, s->out_len - s->out_off);
        memcpy(s->out, sh->hello, sh->hello_len);
        s->out_len = s->out_len - s->out_off + sh->hello_len;
        s->out_off = 0;
        s->q_head = (s->q_head + s->q_cap - 1) % s->q_cap;
        s->q_len++;
        s->q[s->q_head] = (pend_t){.t = w->now, .op = PC_BENCH_HELLO};
    }
    set_events(w, s, EPOLLIN);
    mark_dirty(w, s);
}

static void flush(worker_t *w, bsock_t *s)
{
    if (s->state != S_UP || s->out_off == s->out_len)
        return;
    ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            set_events(w, s, EPOLLIN | EPOLLOUT);
        else
            sock_down(w, s);
        return;
    }
    s->out_off += (size_t)n;
    if (s->out_off == s->out_len) {
        s->out_off = s->out_len = 0;
        set_events(w, s, EPOLLIN);
    } else {
        set_events(w, s, EPOLLIN | EPOLLOUT);
    }
}

/* A stack, not a queue: a socket is on it at most once (its dirty flag),
 * even when flushing one socket makes requests for others. */
static void flush_dirty(worker_t *w)
{
    while (w->ndirty > 0) {
        bsock_t *s = w->dirty[--w->ndirty];
        s->dirty = false;
        flush(w, s);
    }
}

/* One reply to the request p of socket s. */
static void complete(worker_t *w, bsock_t *s, const pend_t *p, const pc_bench_reply_t *r)
{
    client_t *c = s->cl;
    s->backoff_ms = BACKOFF_MIN_MS;
    if (p->op == PC_BENCH_HELLO) {
        if (r->result != PC_BENCH_OK)
            count_error(w, &w->c.fail_replies, 1);
        return;
    }
    c->outstanding--;
    if (p->flags & F_PREFILL) {
        if (r->result == PC_BENCH_FAIL)
            w->pf_errors++;
        live_inc(&w->live_pf_done);
    } else if (in_window(w)) {
        uint64_t lat = w->now > p->t ? w->now - p->t : 0;
        pc_bench_hist_record(&w->hist, lat);
        live_inc(&w->live_hist[pc_bench_hist_bucket(lat)]);
        live_inc(&w->live_ops);
        if (p->op == PC_BENCH_GET) {
            w->c.gets++;
            w->c.hits += r->result == PC_BENCH_HIT;
            w->c.misses += r->result == PC_BENCH_MISS;
        } else {
            w->c.sets++;
        }
        if (r->result == PC_BENCH_FAIL)
            count_error(w, &w->c.fail_replies, 1);
    }
    pump(w, c);
}

/* Parses every whole reply in s's input. */
static void parse_input(worker_t *w, bsock_t *s)
{
    const shared_t *sh = w->sh;
    size_t off = 0;
    while (s->q_len > 0) {
        pend_t p = s->q[s->q_head];
        pc_bench_reply_t r;
        size_t used = 0;
        int rc = pc_bench_parse_reply(sh->o->proto, (enum pc_bench_op)p.op, s->in + off,
                                      s->in_len - off, sh->in_max, &used, &r);
        if (rc == 0)
            break;
        if (rc < 0) {
            sock_down(w, s);
            return;
        }
        if (sh->o->proto == PC_BENCH_PEERCACHE) {
            /* requests carry 1, 2, 3, ... per connection, HELLO 0 */
            uint64_t want = p.op == PC_BENCH_HELLO ? 0 : s->ack_id;
            if (r.id != want) {
                sock_down(w, s);
                return;
            }
            if (p.op != PC_BENCH_HELLO)
                s->ack_id++;
        }
        off += used;
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        complete(w, s, &p, &r);
    }
    if (off < s->in_len && s->q_len == 0) {
        sock_down(w, s); /* bytes nobody asked for */
        return;
    }
    if (off > 0) {
        memmove(s->in, s->in + off, s->in_len - off);
        s->in_len -= off;
    }
}

static void on_readable(worker_t *w, bsock_t *s)
{
    const shared_t *sh = w->sh;
    for (int round = 0; round < 4 && s->state == S_UP; round++) {
        if (s->in_len == s->in_cap) {
            /* one reply longer than the buffer (a value bigger than ours,
             * set by someone else): grow, off the usual path */
            size_t cap = s->in_cap * 2 > sh->in_max ? sh->in_max : s->in_cap * 2;
            uint8_t *p = cap > s->in_cap ? realloc(s->in, cap) : NULL;
            if (p == NULL) {
                sock_down(w, s);
                return;
            }
            s->in = p;
            s->in_cap = cap;
        }
        size_t room = s->in_cap - s->in_len;
        ssize_t n = recv(s->fd, s->in + s->in_len, room, 0);
        if (n > 0) {
            s->in_len += (size_t)n;
            w->now = now_ns();
            parse_input(w, s);
            if ((size_t)n < room)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        sock_down(w, s); /* closed by the server, or broken */
        return;
    }
}

static void on_event(worker_t *w, const struct epoll_event *e)
{
    if (e->data.ptr == NULL) { /* the open-loop timer */
        uint64_t expirations;
        if (read(w->tfd, &expirations, sizeof expirations) < 0) {
            /* nothing to do: a spurious wake-up costs one loop */
        }
        return;
    }
    bsock_t *s = e->data.ptr;
    w->now = now_ns();
    if (s->state == S_CONNECTING) {
        on_connected(w, s, e->events);
    } else if (s->state == S_UP) {
        if (e->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            on_readable(w, s);
        if (s->state == S_UP && (e->events & EPOLLOUT))
            mark_dirty(w, s);
    }
    flush_dirty(w);
}

/* ---- the worker loop -------------------------------------------------------------- */

static void reset_results(worker_t *w)
{
    memset(&w->c, 0, sizeof w->c);
    pc_bench_hist_reset(&w->hist);
}

static void enter_phase(worker_t *w, int ph)
{
    w->phase = ph;
    if (ph == PH_PREFILL) {
        for (size_t i = 0; i < w->nclients; i++)
            pump(w, &w->clients[i]);
    } else if (ph == PH_RUN) {
        reset_results(w);
        w->warm_done = false;
        w->j_next = 0;
        if (w->interval_ns == 0) {
            for (size_t i = 0; i < w->nclients; i++)
                pump(w, &w->clients[i]);
        }
    }
}

/* How long epoll_wait may sleep: until the next reconnect or phase
 * boundary, and never more than MAX_POLL_MS, so that a phase change by
 * the main thread is seen soon. The open-loop schedule has its timer. */
static int wait_ms(const worker_t *w)
{
    uint64_t until = w->now + MAX_POLL_MS * NS_PER_MS;
    if (w->ndown > 0 && w->next_retry < until)
        until = w->next_retry;
    if (w->phase == PH_RUN) {
        if (!w->warm_done && w->sh->t_warm_end < until)
            until = w->sh->t_warm_end;
        if (w->sh->t_end < until)
            until = w->sh->t_end;
    }
    if (until <= w->now)
        return 0;
    return (int)((until - w->now + NS_PER_MS - 1) / NS_PER_MS);
}

/* Open loop: wake up at the next scheduled request (the timer has
 * nanosecond resolution, epoll_wait's timeout only milliseconds). */
static void arm_timer(worker_t *w)
{
    uint64_t t = sched_time(w, w->j_next);
    if (t >= w->sh->t_end || t == w->armed)
        return;
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(t / NS_PER_S),
                                          .tv_nsec = (long)(t % NS_PER_S)}};
    if (timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        w->armed = t;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    struct epoll_event evs[EVENTS_PER_WAIT];

    /* a 50 us default timer slack would shift every open-loop send */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    for (;;) {
        w->now = now_ns();
        int ph = atomic_load_explicit(&sh->phase, memory_order_acquire);
        if (ph == PH_STOP)
            break;
        if (ph != w->phase)
            enter_phase(w, ph);
        if (w->phase == PH_PREFILL &&
            atomic_load_explicit(&w->live_pf_done, memory_order_relaxed) == w->pf_total)
            atomic_store_explicit(&w->prefilled, true, memory_order_release);
        if (w->phase == PH_RUN) {
            if (!w->warm_done && w->now >= sh->t_warm_end) {
                reset_results(w);
                w->warm_done = true;
            }
            if (w->now >= sh->t_end)
                break;
            if (w->interval_ns > 0) {
                schedule(w);
                arm_timer(w);
            }
        }
        if (w->ndown > 0 && w->now >= w->next_retry)
            reconnect_due(w);
        flush_dirty(w);
        int n = epoll_wait(w->ep, evs, EVENTS_PER_WAIT, wait_ms(w));
        for (int i = 0; i < n; i++)
            on_event(w, &evs[i]);
    }
    for (size_t i = 0; i < w->nsocks; i++) {
        if (w->socks[i].fd >= 0)
            close(w->socks[i].fd);
        w->socks[i].fd = -1;
    }
    return NULL;
}

/* ---- setting up ---------------------------------------------------------------- */

static void worker_free(worker_t *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; w->socks != NULL && i < w->nsocks; i++) {
        free(w->socks[i].out);
        free(w->socks[i].in);
        free(w->socks[i].q);
    }
    free(w->socks);
    free(w->clients);
    free(w->dirty);
    if (w->ep >= 0)
        close(w->ep);
    if (w->tfd >= 0)
        close(w->tfd);
    free(w);
}

/* Buffers of one socket: output for pipeline requests, a HELLO and one
 * more request (room for what issue() appends before a compaction);
 * input for a pipeline of replies, up to 64 KiB, grown if a reply needs it. */
static size_t out_cap_of(const shared_t *sh)
{
    return ((size_t)sh->o->pipeline + 1) * sh->req_max + sh->hello_len;
}

static size_t in_cap_of(const shared_t *sh)
{
    size_t want = (size_t)sh->o->pipeline * (sh->o->value_size + 64);
    if (want < 4096)
        want = 4096;
    if (want > 65536)
        want = 65536;
    if (want < sh->o->value_size + 128)
        want = sh->o->value_size + 128;
    return want > sh->in_max ? sh->in_max : want;
}

/*
 * The keys client g (of all connections) SETs in the prefill. Every key
 * must reach every server that will be asked for it: in ring mode, or with
 * one node, all clients share the keys (each sent to its owner); with
 * several nodes in turn -- separate servers, or a cluster without --ring --
 * the clients of each node share all the keys, so each node gets them all.
 */
static void prefill_range(const shared_t *sh, size_t g, uint64_t *from, uint64_t *to)
{
    uint64_t keys = sh->o->keys, group = sh->o->connections, rank = g;
    if (sh->ring == NULL && sh->nnodes > 1) {
        size_t node = g % sh->nnodes;
        group = (sh->o->connections - node + sh->nnodes - 1) / sh->nnodes;
        rank = g / sh->nnodes;
    }
    *from = keys * rank / group;
    *to = keys * (rank + 1) / group;
}

/* Thread t runs clients [first, first + n) of all connections. */
static worker_t *worker_new(shared_t *sh, unsigned t, size_t first, size_t n)
{
    const opts_t *o = sh->o;
    worker_t *w = aligned_alloc(64, (sizeof(worker_t) + 63) / 64 * 64);
    if (w == NULL)
        return NULL;
    memset(w, 0, sizeof *w);
    w->sh = sh;
    w->id = t;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    w->phase = PH_CONNECT;
    w->nclients = n;
    w->socks_per_client = sh->ring != NULL ? sh->nnodes : 1;
    w->nsocks = n * w->socks_per_client;
    w->clients = calloc(n, sizeof *w->clients);
    w->socks = calloc(w->nsocks, sizeof *w->socks);
    w->dirty = calloc(w->nsocks, sizeof *w->dirty);
    pc_bench_rng_seed(&w->rng, o->seed * 0x100000001b3ULL + t);
    pc_bench_hist_reset(&w->hist);
    if (o->rate > 0)
        w->interval_ns = 1e9 / (o->rate * (double)n / (double)o->connections);
    w->ndown = w->nsocks;
    w->next_retry = 0;
    if (w->ep < 0 || w->tfd < 0 || w->clients == NULL || w->socks == NULL || w->dirty == NULL) {
        worker_free(w);
        return NULL;
    }
    struct epoll_event te = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->tfd, &te) != 0) {
        worker_free(w);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        client_t *c = &w->clients[i];
        c->index = (uint32_t)i;
        c->socks = &w->socks[i * w->socks_per_client];
        for (size_t k = 0; k < w->socks_per_client; k++) {
            bsock_t *s = &c->socks[k];
            s->fd = -1;
            s->cl = c;
            s->node = (uint32_t)(sh->ring != NULL ? k : (first + i) % sh->nnodes);
            s->state = S_DOWN;
            s->backoff_ms = BACKOFF_MIN_MS;
            s->next_id = s->ack_id = 1;
            s->out_cap = out_cap_of(sh);
            s->in_cap = in_cap_of(sh);
            s->q_cap = o->pipeline + 1;
            s->out = malloc(s->out_cap);
            s->in = malloc(s->in_cap);
            s->q = calloc(s->q_cap, sizeof *s->q);
            if (s->out == NULL || s->in == NULL || s->q == NULL) {
                worker_free(w);
                return NULL;
            }
        }
        prefill_range(sh, first + i, &c->pf_next, &c->pf_end);
        w->pf_total += c->pf_end - c->pf_next;
    }
    return w;
}

/* ---- the main thread: phases, progress, summary ------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* The CPU time of every --server-pid process, in ticks; -1 when one of
 * them could not be read (gone, or not ours to see). */
static int64_t servers_cpu(const opts_t *o)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < o->npids; i++) {
        char path[64], line[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", o->pids[i]);
        FILE *f = fopen(path, "r");
        uint64_t t;
        int ok = f != NULL && fgets(line, sizeof line, f) != NULL &&
                 pc_bench_proc_cpu_ticks(line, &t) == 0;
        if (f != NULL)
            fclose(f);
        if (!ok) {
            fprintf(stderr, "%s: --server-pid: cannot read the CPU time of %d\n", PROG,
                    o->pids[i]);
            return -1;
        }
        sum += t;
    }
    return (int64_t)sum;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / NS_PER_S), .tv_nsec = (long)(t % NS_PER_S)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL); /* EINTR: the caller looks */
}

static uint64_t sum_live(worker_t **w, unsigned n, size_t field_off)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++)
        sum += atomic_load_explicit((_Atomic uint64_t *)((char *)w[i] + field_off),
                                    memory_order_relaxed);
    return sum;
}

static uint32_t sockets_up(worker_t **w, unsigned n)
{
    uint32_t up = 0;
    for (unsigned i = 0; i < n; i++)
        up += atomic_load_explicit(&w[i]->live_up, memory_order_relaxed);
    return up;
}

typedef struct summary {
    counters_t c;
    pc_bench_hist_t *hist;
    double duration_s, prefill_s; /* prefill_s < 0: none */
    uint64_t pf_errors, unsent;
    size_t sockets, nodes;
    bool ring, interrupted;
    double server_cpu_s; /* --server-pid: < 0 when not measured */
} summary_t;

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void print_text(FILE *f, const opts_t *o, const char *nodes, const summary_t *s)
{
    const counters_t *c = &s->c;
    uint64_t ops = c->gets + c->sets, errors = c->fail_replies + c->lost + c->conn_errors;
    fprintf(f, "%s: %s, %s%s, %u connections (%zu sockets to %zu node%s), %u thread%s, "
               "pipeline %u, ",
            PROG, PROTO_NAMES[o->proto], nodes, s->ring ? " (ring)" : "", o->connections,
            s->sockets, s->nodes, s->nodes == 1 ? "" : "s", o->threads,
            o->threads == 1 ? "" : "s", o->pipeline);
    if (o->rate > 0)
        fprintf(f, "open loop at %.0f ops/s\n", o->rate);
    else
        fprintf(f, "closed loop\n");
    fprintf(f, "  %" PRIu64 " keys (%s), values of %zu bytes, ratio %s, warm-up %g s, "
               "measured %.2f s%s\n",
            o->keys, o->dist_arg, o->value_size, o->ratio_arg, o->warmup_s, s->duration_s,
            s->interrupted ? " (interrupted)" : "");
    if (s->prefill_s >= 0)
        fprintf(f, "  prefill      %" PRIu64 " keys%s in %.2f s, %" PRIu64 " errors\n", o->keys,
                !s->ring && s->nodes > 1 ? " on each node" : "", s->prefill_s, s->pf_errors);
    fprintf(f, "  throughput   %.0f ops/s (%" PRIu64 " ops: %" PRIu64 " GET, %" PRIu64 " SET)\n",
            s->duration_s > 0 ? (double)ops / s->duration_s : 0.0, ops, c->gets, c->sets);
    if (c->gets > 0)
        fprintf(f, "  hit ratio    %.2f%% (%" PRIu64 " hits, %" PRIu64 " misses)\n",
                100.0 * (double)c->hits / (double)c->gets, c->hits, c->misses);
    fprintf(f, "  errors       %" PRIu64 " (%" PRIu64 " error replies, %" PRIu64
               " lost with a connection, %" PRIu64 " connection failures)\n",
            errors, c->fail_replies, c->lost, c->conn_errors);
    if (o->rate > 0)
        fprintf(f, "  unsent       %" PRIu64 " (scheduled but never sent)\n", s->unsent);
    if (s->server_cpu_s >= 0)
        fprintf(f, "  server CPU   %.2f s (%.2f us per operation)\n", s->server_cpu_s,
                ops > 0 ? s->server_cpu_s * 1e6 / (double)ops : 0.0);
    const pc_bench_hist_t *h = s->hist;
    fprintf(f, "  latency us   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
            us(pc_bench_hist_percentile(h, 50)), us(pc_bench_hist_percentile(h, 90)),
            us(pc_bench_hist_percentile(h, 99)), us(pc_bench_hist_percentile(h, 99.9)),
            us(h->max), pc_bench_hist_mean(h) / 1000.0);
}

/* Every string printed was checked to hold no character JSON would need
 * escaped: protocol and distribution come from fixed lists or numbers,
 * the node list passed pc_addr_parse_list. */
static void print_json(FILE *f, const opts_t *o, const char *nodes, const summary_t *s)
{
    const counters_t *c = &s->c;
    const pc_bench_hist_t *h = s->hist;
    uint64_t ops = c->gets + c->sets, errors = c->fail_replies + c->lost + c->conn_errors;
    fprintf(f, "{\"protocol\": \"%s\", \"nodes\": \"%s\", \"ring\": %s, \"connections\": %u, "
               "\"sockets\": %zu, \"threads\": %u, \"pipeline\": %u, \"ratio\": \"%u:%u\", "
               "\"value_size\": %zu, \"keys\": %" PRIu64 ", \"distribution\": \"%s\", "
               "\"duration_s\": %.3f, \"warmup_s\": %g, ",
            PROTO_NAMES[o->proto], nodes, s->ring ? "true" : "false", o->connections, s->sockets,
            o->threads, o->pipeline, o->reads, o->writes, o->value_size, o->keys, o->dist_arg,
            s->duration_s, o->warmup_s);
    if (o->rate > 0)
        fprintf(f, "\"rate\": %.3f, \"unsent\": %" PRIu64 ", ", o->rate, s->unsent);
    else
        fprintf(f, "\"rate\": null, ");
    if (s->prefill_s >= 0)
        fprintf(f, "\"prefill_s\": %.3f, \"prefill_errors\": %" PRIu64 ", ", s->prefill_s,
                s->pf_errors);
    else
        fprintf(f, "\"prefill_s\": null, ");
    fprintf(f, "\"interrupted\": %s, \"ops\": %" PRIu64 ", \"ops_per_sec\": %.1f, "
               "\"gets\": %" PRIu64 ", \"sets\": %" PRIu64 ", \"hits\": %" PRIu64
               ", \"misses\": %" PRIu64 ", \"hit_ratio\": %.6f, \"errors\": %" PRIu64
               ", \"error_replies\": %" PRIu64 ", \"lost\": %" PRIu64
               ", \"conn_errors\": %" PRIu64 ", ",
            s->interrupted ? "true" : "false", ops,
            s->duration_s > 0 ? (double)ops / s->duration_s : 0.0, c->gets, c->sets, c->hits,
            c->misses, c->gets ? (double)c->hits / (double)c->gets : 0.0, errors,
            c->fail_replies, c->lost, c->conn_errors);
    if (s->server_cpu_s >= 0)
        fprintf(f, "\"server_cpu_s\": %.3f, \"server_cpu_us_per_op\": %.3f, ", s->server_cpu_s,
                ops > 0 ? s->server_cpu_s * 1e6 / (double)ops : 0.0);
    else
        fprintf(f, "\"server_cpu_s\": null, \"server_cpu_us_per_op\": null, ");
    fprintf(f, "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
               "\"max_us\": %.1f, \"mean_us\": %.1f}\n",
            us(pc_bench_hist_percentile(h, 50)), us(pc_bench_hist_percentile(h, 90)),
            us(pc_bench_hist_percentile(h, 99)), us(pc_bench_hist_percentile(h, 99.9)),
            us(h->max), pc_bench_hist_mean(h) / 1000.0);
}

/* Enough descriptors for every socket: raises the soft limit to the hard
 * one if needed. 0, or -1 after saying why. */
static int ensure_fds(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr, "%s: %zu sockets need %zu file descriptors; the limit is %llu "
                        "(ulimit -n)\n",
                PROG, need > 64 ? need - 64 : need, need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int check_addr(void *arg, const char *host, int port)
{
    (void)arg;
    (void)host;
    (void)port;
    return 0;
}

static void progress_line(const shared_t *sh, worker_t **w, unsigned nw, size_t nsocks,
                          uint64_t now, uint64_t *prev_t, uint64_t *prev_ops, uint64_t *prev,
                          uint64_t *cur, uint64_t err_base)
{
    uint64_t ops = sum_live(w, nw, offsetof(worker_t, live_ops)), total = 0;
    for (size_t b = 0; b < PC_BENCH_HIST_BUCKETS; b++) {
        uint64_t v = 0;
        for (unsigned i = 0; i < nw; i++)
            v += atomic_load_explicit(&w[i]->live_hist[b], memory_order_relaxed);
        cur[b] = v - prev[b]; /* this second's counts */
        prev[b] = v;
        total += cur[b];
    }
    double secs = (double)(now - *prev_t) / 1e9;
    fprintf(stderr, "[%4.0f s] %-7s %9.0f ops/s  p99 %8.1f us  errors %" PRIu64 "  up %u/%zu\n",
            (double)(now - sh->t_start) / 1e9, *prev_t < sh->t_warm_end ? "warm-up" : "",
            secs > 0 ? (double)(ops - *prev_ops) / secs : 0.0,
            us(pc_bench_counts_percentile(cur, total, 99)),
            sum_live(w, nw, offsetof(worker_t, live_errors)) - err_base, sockets_up(w, nw),
            nsocks);
    *prev_t = now;
    *prev_ops = ops;
}

static void stop_workers(shared_t *sh, worker_t **w, unsigned started)
{
    atomic_store_explicit(&sh->phase, PH_STOP, memory_order_release);
    for (unsigned i = 0; i < started; i++)
        pthread_join(w[i]->tid, NULL);
}

/* Waits for the connect phase; false if no socket ever connected. */
static bool wait_connected(worker_t **w, unsigned nw, size_t nsocks, const opts_t *o)
{
    uint64_t t0 = now_ns(), now = t0;
    uint32_t up = 0;
    while (!interrupted && now - t0 < CONNECT_WAIT_NS) {
        up = sockets_up(w, nw);
        if (up == nsocks)
            break;
        sleep_until(now + 10 * NS_PER_MS);
        now = now_ns();
    }
    bool any = false;
    for (unsigned i = 0; i < nw; i++)
        any |= atomic_load_explicit(&w[i]->ever_up, memory_order_relaxed);
    if (any && (up < nsocks || !o->quiet))
        fprintf(stderr, "%s: %u of %zu sockets connected in %.2f s\n", PROG, up, nsocks,
                (double)(now_ns() - t0) / 1e9);
    return any;
}

/* The prefill phase: seconds it took, or -1 if it stalled or was
 * interrupted (said why). */
static double run_prefill(shared_t *sh, worker_t **w, unsigned nw, const opts_t *o)
{
    uint64_t t0 = now_ns(), last_done = 0, last_progress = t0;
    atomic_store_explicit(&sh->phase, PH_PREFILL, memory_order_release);
    for (;;) {
        bool all = true;
        for (unsigned i = 0; i < nw; i++)
            all &= atomic_load_explicit(&w[i]->prefilled, memory_order_acquire);
        uint64_t now = now_ns();
        if (all)
            break;
        if (interrupted)
            return -1;
        uint64_t done = sum_live(w, nw, offsetof(worker_t, live_pf_done));
        if (done != last_done) {
            last_done = done;
            last_progress = now;
        } else if (now - last_progress > PREFILL_STALL_NS) {
            uint64_t total = 0;
            for (unsigned i = 0; i < nw; i++)
                total += w[i]->pf_total;
            fprintf(stderr, "%s: prefill made no progress for %llu s (%" PRIu64 " of %" PRIu64
                            " SETs answered)\n",
                    PROG, (unsigned long long)(PREFILL_STALL_NS / NS_PER_S), done, total);
            return -1;
        }
        sleep_until(now + 10 * NS_PER_MS);
    }
    double s = (double)(now_ns() - t0) / 1e9;
    if (!o->quiet)
        fprintf(stderr, "%s: prefill: %" PRIu64 " keys%s in %.2f s\n", PROG, o->keys,
                sh->ring == NULL && sh->nnodes > 1 ? " on each node" : "", s);
    return s;
}

int main(int argc, char **argv)
{
    opts_t o;
    int rc = parse_args(&o, argc, argv);
    if (rc < 0)
        return EXIT_DONE;
    if (rc > 0)
        return rc;

    char default_nodes[32];
    const char *nodes = o.nodes;
    if (nodes == NULL) {
        snprintf(default_nodes, sizeof default_nodes, "127.0.0.1:%d", DEFAULT_PORTS[o.proto]);
        nodes = default_nodes;
    }
    if (pc_addr_parse_list(nodes, check_addr, NULL) != 0)
        return usage_error("--nodes: '%s' is not a list of HOST:PORT", nodes);
    if (o.token != NULL && strlen(o.token) > 4096)
        return usage_error("the token is longer than 4096 bytes");

    node_list_t given = {0}, members = {0};
    if (pc_addr_parse_list(nodes, add_node, &given) != 0) {
        free(given.v);
        return EXIT_NOCONN;
    }
    bool ring = o.ring >= 0 ? o.ring == 1 : (o.proto == PC_BENCH_PEERCACHE && given.n > 1);
    pc_ring_t *ringp = NULL;
    node_list_t *use = &given;
    if (ring) {
        if (learn_ring(&o, nodes, &ringp, &members) == 0) {
            use = &members;
            if (o.ring < 0 && members.n == 1) {
                /* several nodes given, but the first that answered is a
                 * cluster of one: they are separate nodes, which the user
                 * surely wants to load alike */
                fprintf(stderr, "%s: %s is a cluster of one member: not ring-aware, "
                                "connections go to the given nodes in turn\n",
                        PROG, members.v[0].addr);
                pc_ring_free(&ringp);
                use = &given;
                ring = false;
            }
        } else if (o.ring == 1) {
            fprintf(stderr, "%s: --ring: the ring could not be learned\n", PROG);
            free(given.v);
            free(members.v);
            return EXIT_NOCONN;
        } else {
            fprintf(stderr, "%s: no ring: connections go to the given nodes in turn\n", PROG);
            ring = false;
        }
    }

    shared_t *sh = calloc(1, sizeof *sh);
    size_t nsocks = (size_t)o.connections * (ring ? use->n : 1);
    if (sh == NULL)
        return EXIT_NOCONN;
    sh->o = &o;
    sh->nodes = use->v;
    sh->nnodes = use->n;
    sh->ring = ringp;
    pc_bench_keys_init(&sh->keys, o.keys, o.zipf_s); /* both checked by parse_args */
    sh->mix = pc_bench_mix_threshold(o.reads, o.writes);
    sh->key_width = pc_bench_key_width(o.keys);
    sh->value = malloc(o.value_size + 1);
    for (size_t i = 0; sh->value != NULL && i < o.value_size; i++)
        sh->value[i] = (uint8_t)('a' + i % 26);
    sh->req_max = pc_bench_request_max(4 + sh->key_width, o.value_size);
    if (o.token != NULL)
        sh->hello_len = pc_bench_encode(PC_BENCH_PEERCACHE, PC_BENCH_HELLO, sh->hello, 0, o.token,
                                        strlen(o.token), NULL, 0);
    sh->in_max = o.proto == PC_BENCH_PEERCACHE
                     ? PC_PROTO_DEFAULT_MAX_FRAME + 4
                     : (o.value_size > MAX_VALUE ? o.value_size : MAX_VALUE) + 4096;
    atomic_init(&sh->phase, PH_CONNECT);

    uint64_t mem = (uint64_t)nsocks * (out_cap_of(sh) + in_cap_of(sh) +
                                       (o.pipeline + 1) * sizeof(pend_t) + sizeof(bsock_t));
    if (mem > MAX_MEMORY) {
        fprintf(stderr, "%s: %zu sockets x pipeline %u x %zu-byte values need %llu MiB of "
                        "buffers; use fewer\n",
                PROG, nsocks, o.pipeline, o.value_size, (unsigned long long)(mem >> 20));
        return EXIT_USAGE;
    }
    if (sh->value == NULL || ensure_fds(nsocks + 2 * (size_t)o.threads + 64) != 0)
        return EXIT_USAGE;

    worker_t **w = calloc(o.threads, sizeof *w);
    for (unsigned t = 0; w != NULL && t < o.threads; t++) {
        size_t first = (size_t)o.connections * t / o.threads;
        size_t last = (size_t)o.connections * (t + 1) / o.threads;
        w[t] = worker_new(sh, t, first, last - first);
        if (w[t] == NULL) {
            fprintf(stderr, "%s: out of memory (or of file descriptors)\n", PROG);
            return EXIT_NOCONN;
        }
    }
    if (w == NULL)
        return EXIT_NOCONN;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old); /* signals go to the main thread */
    unsigned started = 0;
    for (; started < o.threads; started++) {
        if (pthread_create(&w[started]->tid, NULL, worker_main, w[started]) != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    int code = EXIT_DONE;
    summary_t sum = {
        .prefill_s = -1, .sockets = nsocks, .nodes = use->n, .ring = ring, .server_cpu_s = -1};
    uint64_t *prev = calloc(PC_BENCH_HIST_BUCKETS, sizeof *prev);
    uint64_t *cur = calloc(PC_BENCH_HIST_BUCKETS, sizeof *cur);
    sum.hist = malloc(sizeof *sum.hist);
    if (started < o.threads || prev == NULL || cur == NULL || sum.hist == NULL) {
        fprintf(stderr, "%s: cannot start the threads\n", PROG);
        code = EXIT_NOCONN;
    } else if (!wait_connected(w, o.threads, nsocks, &o)) {
        fprintf(stderr, "%s: could not connect to %s\n", PROG, nodes);
        code = interrupted ? EXIT_INTERRUPTED : EXIT_NOCONN;
    } else if (o.prefill && (sum.prefill_s = run_prefill(sh, w, o.threads, &o)) < 0) {
        code = interrupted ? EXIT_INTERRUPTED : EXIT_NOCONN;
    }
    if (code != EXIT_DONE) {
        stop_workers(sh, w, started);
        goto out;
    }

    /* The clock starts: warm-up, then the measured duration. */
    sh->t_start = now_ns();
    sh->t_warm_end = sh->t_start + (uint64_t)(o.warmup_s * 1e9);
    sh->t_end = sh->t_warm_end + (uint64_t)(o.duration_s * 1e9);
    uint64_t err_base = sum_live(w, o.threads, offsetof(worker_t, live_errors));
    uint64_t prev_t = sh->t_start, prev_ops = 0, tick = sh->t_start + NS_PER_S;
    for (unsigned i = 0; i < o.threads; i++)
        prev_ops += atomic_load_explicit(&w[i]->live_ops, memory_order_relaxed);
    atomic_store_explicit(&sh->phase, PH_RUN, memory_order_release);
    /* the servers' CPU time, read when the measured window opens and closes */
    int64_t cpu0 = -1;
    bool cpu_due = o.npids > 0;
    while (!interrupted) {
        uint64_t next = tick < sh->t_end ? tick : sh->t_end;
        if (cpu_due && sh->t_warm_end < next)
            next = sh->t_warm_end;
        sleep_until(next);
        uint64_t now = now_ns();
        if (cpu_due && now >= sh->t_warm_end) {
            cpu0 = servers_cpu(&o);
            cpu_due = false;
        }
        if (interrupted || now >= sh->t_end)
            break;
        if (now < tick)
            continue;
        if (!o.quiet)
            progress_line(sh, w, o.threads, nsocks, now, &prev_t, &prev_ops, prev, cur, err_base);
        tick += NS_PER_S;
    }
    uint64_t stop = now_ns();
    int64_t cpu1 = cpu0 >= 0 ? servers_cpu(&o) : -1;
    stop_workers(sh, w, started);
    if (cpu0 >= 0 && cpu1 >= cpu0)
        sum.server_cpu_s = (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK);

    pc_bench_hist_reset(sum.hist);
    for (unsigned i = 0; i < o.threads; i++) {
        const counters_t *c = &w[i]->c;
        pc_bench_hist_merge(sum.hist, &w[i]->hist);
        sum.c.gets += c->gets;
        sum.c.sets += c->sets;
        sum.c.hits += c->hits;
        sum.c.misses += c->misses;
        sum.c.fail_replies += c->fail_replies;
        sum.c.lost += c->lost;
        sum.c.conn_errors += c->conn_errors;
        sum.pf_errors += w[i]->pf_errors;
        for (size_t k = 0; k < w[i]->nclients; k++)
            sum.unsent += w[i]->clients[k].due - w[i]->clients[k].sent;
    }
    sum.duration_s = o.duration_s;
    if (stop < sh->t_end) {
        sum.interrupted = true;
        sum.duration_s = stop > sh->t_warm_end ? (double)(stop - sh->t_warm_end) / 1e9 : 0.0;
        code = EXIT_INTERRUPTED;
    }
    if (o.json) {
        print_text(stderr, &o, nodes, &sum);
        print_json(stdout, &o, nodes, &sum);
    } else {
        print_text(stdout, &o, nodes, &sum);
    }
    fflush(stdout);

out:
    for (unsigned i = 0; i < o.threads; i++)
        worker_free(w[i]);
    free(w);
    free(prev);
    free(cur);
    free(sum.hist);
    free(sh->value);
    free(sh);
    pc_ring_free(&ringp);
    free(given.v);
    free(members.v);
    return code;
}
