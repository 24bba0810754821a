/*
 * pc_config_opts.c -- the option table, the checks on single values, and
 * --help. Part of the config, apart from the loader (pc_config.c) because
 * the table is a subject of its own: the row format and the helpers the
 * loader shares with it are in the private pc_config_int.h.
 *
 * Every option is described exactly once, in pc_opt_table[] below. The
 * flag parser, the environment reader, the config-file reader, the
 * defaults and --help all walk that one table, so an option cannot exist
 * in one place and be missing (or spelled differently, or documented with
 * a stale default) in another. Adding an option = one field in
 * pc_config_t plus one row here.
 */
#include "pc_config.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pc_addr.h"
#include "pc_backend_addr.h"
#include "pc_config_int.h"
#include "pc_sock.h"

#ifndef PC_VERSION_STRING
#define PC_VERSION_STRING "unknown"
#endif

/* Host names in addresses: the longest DNS name is 253 characters. */
#define HOST_MAX 256

/*
 * Field offsets with a type check: _Generic has no branch for any other
 * type, so a row whose option type and struct field disagree (a size_t
 * option pointed at a uint64_t field, say) fails to compile instead of
 * scribbling over the struct at run time. The expression is unevaluated.
 */
#define FIELD_STR(f) \
    (offsetof(pc_config_t, f) + 0 * sizeof(_Generic(((pc_config_t *)0)->f, char *: 1)))
#define FIELD_U64(f) \
    (offsetof(pc_config_t, f) + 0 * sizeof(_Generic(((pc_config_t *)0)->f, uint64_t: 1)))
#define FIELD_SIZE(f) \
    (offsetof(pc_config_t, f) + 0 * sizeof(_Generic(((pc_config_t *)0)->f, size_t: 1)))
#define FIELD_BOOL(f) \
    (offsetof(pc_config_t, f) + 0 * sizeof(_Generic(((pc_config_t *)0)->f, int: 1)))

static const char *check_addr(const char *value, char *buf, size_t len);
static const char *check_addr_or_none(const char *value, char *buf, size_t len);
static const char *check_addr_list(const char *value, char *buf, size_t len);
static const char *check_redis(const char *value, char *buf, size_t len);

static const char *const eviction_choices[] = {"s3fifo", "lru", NULL};
static const char *const log_level_choices[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_choices[] = {"text", "json", NULL};
static const char *const io_choices[] = {"epoll", "uring", NULL};

/* The wire format carries lengths and counts as 32-bit numbers. */
#define WIRE_MAX ((uint64_t)UINT32_MAX)

const opt_t pc_opt_table[] = {
    {.name = "config", .type = OPT_STRING, .metavar = "FILE", .def_help = "none",
     .offset = FIELD_STR(config_file), .not_in_file = true,
     .help = "Config file of \"name = value\" lines ('#' starts a comment\n"
             "line). Read before the environment and the flags. Empty = none."},
    {.name = "check-config", .type = OPT_BOOL, .metavar = "", .def = "false",
     .offset = FIELD_BOOL(check_config), .not_in_file = true,
     .help = "Read the configuration (file, environment, flags), check\n"
             "every value, print \"configuration OK\" and exit 0 -- or the\n"
             "first error, exit 2. Starts nothing."},
    {.name = "listen", .type = OPT_STRING, .metavar = "HOST:PORT", .def = "127.0.0.1:7400",
     .offset = FIELD_STR(listen), .check = check_addr,
     .help = "Address to accept client connections on."},
    {.name = "name", .type = OPT_STRING, .metavar = "NAME", .def_help = "the --listen value",
     .offset = FIELD_STR(name),
     .help = "This node's name, as reported to clients and in logs."},
    {.name = "redis", .type = OPT_STRING, .metavar = "ADDRESS", .def = "127.0.0.1:6379",
     .offset = FIELD_STR(redis), .check = check_redis,
     .help = "The Redis behind the cache: one server as HOST:PORT,\n"
             "redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]; the master\n"
             "Sentinel names, sentinel://HOST[:PORT][,...]/MASTER[/DB];\n"
             "a Redis Cluster through its seeds, cluster://HOST[:PORT][,...];\n"
             "or \"none\" to run without a backend (a pure memory cache).\n"
             "Never a user or password (see --redis-password-file).\n"
             "Details: docs/OPERATIONS.md \"Redis behind the nodes\"."},
    {.name = "redis-prefix", .type = OPT_STRING, .metavar = "PREFIX", .def = "",
     .offset = FIELD_STR(redis_prefix),
     .help = "Prepended to every key in Redis, to share a Redis database\n"
             "(flag records are named pcm:{TAG}: + PREFIX + key; see\n"
             "docs/OPERATIONS.md)."},
    {.name = "redis-timeout", .type = OPT_DURATION, .metavar = "DURATION", .def = "1000ms",
     .offset = FIELD_U64(redis_timeout_ms), .min = 1, .max = UINT64_MAX,
     .help = "How long a Redis command may take before the request fails."},
    {.name = "redis-user", .type = OPT_STRING, .metavar = "NAME", .def = "",
     .offset = FIELD_STR(redis_user),
     .help = "Redis user (an ACL user, Redis 6+) to authenticate as, with\n"
             "AUTH NAME PASSWORD. Needs --redis-password-file. Empty = the\n"
             "default user (plain AUTH PASSWORD)."},
    {.name = "redis-password-file", .type = OPT_STRING, .metavar = "FILE", .def = "",
     .offset = FIELD_STR(redis_password_file),
     .help = "File whose first line is the Redis password (mode 0600;\n"
             "refused otherwise, as a --token-file is). Reloaded on SIGHUP,\n"
             "used from the next connection to Redis. The password itself\n"
             "is never given on the command line. Empty = no AUTH."},
    {.name = "redis-wait", .type = OPT_UINT, .metavar = "N", .def = "0",
     .offset = FIELD_U64(redis_wait), .min = 0, .max = 64,
     .help = "After each write, wait until N replicas have it (Redis WAIT).\n"
             "A write that fewer replicas confirmed within half of\n"
             "--redis-timeout is answered BACKEND_UNAVAILABLE (it may have\n"
             "been applied on the primary). 0 = off. docs/CONSISTENCY.md\n"
             "says what it guarantees."},
    {.name = "memory", .type = OPT_SIZE, .metavar = "SIZE", .def = "64mb",
     .offset = FIELD_SIZE(memory), .min = MIB, .max = SIZE_MAX,
     .help = "Memory limit of the store: keys, values and overhead.\n"
             "At least 1mb."},
    {.name = "eviction", .type = OPT_ENUM, .def = "s3fifo", .offset = FIELD_STR(eviction),
     .choices = eviction_choices,
     .help = "What to evict when memory is full."},
    {.name = "threads", .type = OPT_UINT, .metavar = "N", .def = "0",
     .offset = FIELD_U64(threads), .min = 0, .max = 64,
     .help = "Event loops serving clients, one thread each, each accepting\n"
             "on its own SO_REUSEPORT socket, with its own Redis and peer\n"
             "connections (docs/ARCHITECTURE.md \"Threads\"). 0 = one per\n"
             "core."},
    {.name = "io", .type = OPT_ENUM, .def = "epoll", .offset = FIELD_STR(io),
     .choices = io_choices,
     .help = "How each loop reads and writes its client sockets: epoll\n"
             "(libuv), or uring: one multishot receive per socket into\n"
             "kernel-picked buffers, and each loop turn's sends submitted\n"
             "in one call (Linux 6.0+). If the kernel refuses io_uring the\n"
             "node says so in its log and uses epoll."},
    {.name = "max-connections", .type = OPT_UINT, .metavar = "N", .def = "10000",
     .offset = FIELD_U64(max_connections), .min = 1, .max = UINT64_MAX,
     .help = "Client connections accepted at once; more are refused."},
    {.name = "max-conns-per-source", .type = OPT_UINT, .metavar = "N", .def = "1024",
     .offset = FIELD_U64(max_conns_per_source), .min = 0, .max = UINT64_MAX,
     .help = "Client connections one source address (an IPv4 address, an\n"
             "IPv6 /64) may hold at once; more are refused (BUSY). 0 = no\n"
             "limit but --max-connections."},
    {.name = "hello-timeout", .type = OPT_DURATION, .metavar = "DURATION", .def = "3s",
     .offset = FIELD_U64(hello_timeout_ms), .min = 1, .max = UINT64_MAX,
     .help = "With a client token required, a connection that has not sent\n"
             "a good HELLO this long after it opened (or after its last bad\n"
             "HELLO was answered) is closed."},
    {.name = "idle-timeout", .type = OPT_DURATION, .metavar = "DURATION", .def = "300000ms",
     .offset = FIELD_U64(idle_timeout_ms), .min = 0, .max = UINT64_MAX,
     .help = "Close client connections idle this long. 0 = never."},
    {.name = "max-frame", .type = OPT_SIZE, .metavar = "SIZE", .def = "1179648",
     .offset = FIELD_SIZE(max_frame), .min = 1 * KIB, .max = WIRE_MAX,
     .help = "Largest request frame (1mb+128kb by default). Must hold\n"
             "max-key + max-value + 512 bytes."},
    {.name = "max-key", .type = OPT_SIZE, .metavar = "SIZE", .def = "64kb",
     .offset = FIELD_SIZE(max_key), .min = 1, .max = WIRE_MAX,
     .help = "Longest key accepted."},
    {.name = "max-value", .type = OPT_SIZE, .metavar = "SIZE", .def = "1mb",
     .offset = FIELD_SIZE(max_value), .min = 1, .max = WIRE_MAX,
     .help = "Largest value accepted."},
    {.name = "max-mget-keys", .type = OPT_UINT, .metavar = "N", .def = "1024",
     .offset = FIELD_U64(max_mget_keys), .min = 1, .max = WIRE_MAX,
     .help = "Most keys in one MGET request."},
    {.name = "max-inflight", .type = OPT_UINT, .metavar = "N", .def = "1024",
     .offset = FIELD_U64(max_inflight), .min = 1, .max = UINT64_MAX,
     .help = "Requests one connection may have in progress at once."},
    {.name = "max-output", .type = OPT_SIZE, .metavar = "SIZE", .def = "4mb",
     .offset = FIELD_SIZE(max_output), .min = 1 * KIB, .max = SIZE_MAX,
     .help = "Replies queued per connection before reading from it pauses,\n"
             "at most: each connection's budget is its fair share of\n"
             "--max-buffer-memory (at least 64kb), 16kb before a client\n"
             "sends the token. At least max-frame."},
    {.name = "output-timeout", .type = OPT_DURATION, .metavar = "DURATION", .def = "10s",
     .offset = FIELD_U64(output_timeout_ms), .min = 1, .max = UINT64_MAX,
     .help = "A connection whose queued replies stay over its output\n"
             "budget this long (its client stopped reading) is closed."},
    {.name = "frame-timeout", .type = OPT_DURATION, .metavar = "DURATION", .def = "10s",
     .offset = FIELD_U64(frame_timeout_ms), .min = 0, .max = UINT64_MAX,
     .help = "A frame must arrive whole within this long of its first\n"
             "byte, or the connection is closed (slowloris). 0 = no limit."},
    {.name = "max-buffer-memory", .type = OPT_SIZE, .metavar = "SIZE", .def = "256mb",
     .offset = FIELD_SIZE(max_buffer_memory), .min = 1 * MIB, .max = SIZE_MAX,
     .help = "Memory all connection buffers together may use (input not\n"
             "yet processed, replies not yet sent), split between the\n"
             "loops. Past 7/8 of it, the connections holding more than\n"
             "their fair share are closed (those without the token first,\n"
             "then the biggest); new connections are refused only while it\n"
             "stays over."},
    {.name = "shutdown-timeout", .type = OPT_DURATION, .metavar = "DURATION", .def = "5000ms",
     .offset = FIELD_U64(shutdown_timeout_ms), .min = 0, .max = UINT64_MAX,
     .help = "On SIGTERM, how long the whole stop may take: the hand-off of\n"
             "a leave (at most half of it), then requests in progress\n"
             "finish. Past it what is left is cut, and the exit status is 1."},
    {.name = "sweep-interval", .type = OPT_DURATION, .metavar = "DURATION", .def = "100ms",
     .offset = FIELD_U64(sweep_interval_ms), .min = 1, .max = UINT64_MAX,
     .help = "How often the background sweep removes expired entries."},
    /* The upper bound is the kernel's (pc_sock.h): it only lowers its
     * 200 ms floor and refuses more. 0 is the one value below 1ms. */
    {.name = "tcp-rto-min", .type = OPT_DURATION, .metavar = "DURATION", .def = "10ms",
     .offset = FIELD_U64(tcp_rto_min_ms), .min = 0, .max = PC_SOCK_RTO_MIN_MAX_MS,
     .help = "Least time this node's TCP connections (clients', other\n"
             "members', Redis) wait before resending a lost packet, in\n"
             "place of the kernel's 200 ms (Linux 6.15+; older kernels\n"
             "keep theirs, said once at start). A client that floods or\n"
             "does not read has the kernel's while it does. 0 = the\n"
             "kernel's. At most 200ms; the kernel rounds it up to its\n"
             "clock tick."},
    {.name = "log-level", .type = OPT_ENUM, .def = "info", .offset = FIELD_STR(log_level),
     .choices = log_level_choices,
     .help = "Least severe messages written to stderr."},
    {.name = "log-format", .type = OPT_ENUM, .def = "text", .offset = FIELD_STR(log_format),
     .choices = log_format_choices,
     .help = "text: one line per message; json: one JSON object per line\n"
             "(time, level, node, msg), for log shippers."},
    {.name = "resp", .type = OPT_STRING, .metavar = "HOST:PORT", .def = "none",
     .offset = FIELD_STR(resp), .check = check_addr_or_none,
     .help = "Also serve Redis clients (RESP2, RESP3 after HELLO 3) on this\n"
             "address: the same keys, routing, write-through, limits and\n"
             "token (as AUTH) as the client port. Off by default.\n"
             "Commands and differences: docs/REDIS.md."},
    {.name = "http", .type = OPT_STRING, .metavar = "HOST:PORT", .def = "none",
     .offset = FIELD_STR(http), .check = check_addr_or_none,
     .help = "Operators' HTTP endpoint: /metrics (Prometheus), /healthz,\n"
             "/readyz, /cluster (JSON). Off by default; give a loopback\n"
             "address unless the scraper is on another host (it has no\n"
             "token)."},

    /* security (docs/SECURITY.md) */
    {.name = "cluster-key", .type = OPT_STRING, .metavar = "FILE", .def = "",
     .offset = FIELD_STR(cluster_key),
     .help = "Key file (peercache-cli keygen; mode 0600) that seals all\n"
             "gossip and peer traffic. One key per line: the first seals,\n"
             "all open. Reloaded on SIGHUP (key rotation)."},
    {.name = "insecure", .type = OPT_BOOL, .metavar = "", .def = "false",
     .offset = FIELD_BOOL(insecure),
     .help = "Run without --cluster-key: gossip and peer traffic are\n"
             "neither authenticated nor encrypted. Required to start\n"
             "without a key."},
    {.name = "replay-window", .type = OPT_DURATION, .metavar = "DURATION", .def = "60s",
     .offset = FIELD_U64(replay_window_ms), .min = 1000, .max = 3600000,
     .help = "Sealed messages stamped further than this from this node's\n"
             "clock are dropped, and repeats within it. Keep member\n"
             "clocks closer than this."},
    {.name = "token-file", .type = OPT_STRING, .metavar = "FILE", .def = "",
     .offset = FIELD_STR(token_file),
     .help = "File whose first line is the token clients must send in\n"
             "HELLO before any other request but PING (mode 0600)."},
    {.name = "token", .type = OPT_STRING, .metavar = "TOKEN", .def = "",
     .offset = FIELD_STR(token), .not_flag = true,
     .help = "The client token itself. Environment or config file only\n"
             "(a flag would show in ps); --token-file wins. A config\n"
             "file that sets it must be private, like a token file\n"
             "(chmod 600), or the node refuses to start."},

    /* cluster */
    {.name = "join", .type = OPT_STRING, .metavar = "HOST:PORT[,...]", .def = "",
     .offset = FIELD_STR(join), .check = check_addr_list,
     .help = "Members (or one DNS name with many addresses, such as a\n"
             "Kubernetes headless service) to join through. Empty = start\n"
             "a new cluster alone. Unreachable seeds are retried."},
    {.name = "advertise", .type = OPT_STRING, .metavar = "HOST:PORT",
     .def_help = "the --listen value", .offset = FIELD_STR(advertise), .check = check_addr,
     .help = "Address other members and clients use to reach this node\n"
             "(set it when --listen is a wildcard such as 0.0.0.0)."},
    {.name = "gossip", .type = OPT_STRING, .metavar = "HOST:PORT",
     .def_help = "the --listen value, over UDP", .offset = FIELD_STR(gossip),
     .check = check_addr,
     .help = "UDP address for membership gossip: an IP address, not a name."},
    {.name = "replicas", .type = OPT_UINT, .metavar = "R", .def = "2",
     .offset = FIELD_U64(replicas), .min = 1, .max = 8,
     .help = "Copies of each key in the cluster, owner included (1..8).\n"
             "Every member must use the same value."},
    {.name = "weight", .type = OPT_UINT, .metavar = "W", .def = "1",
     .offset = FIELD_U64(weight), .min = 1, .max = 1000,
     .help = "This node's share of the keyspace relative to the others."},
    {.name = "probe-interval", .type = OPT_DURATION, .metavar = "DURATION", .def = "1000ms",
     .offset = FIELD_U64(probe_interval_ms), .min = 10, .max = 3600000,
     .help = "How often this node probes one other member."},
    {.name = "probe-timeout", .type = OPT_DURATION, .metavar = "DURATION", .def = "500ms",
     .offset = FIELD_U64(probe_timeout_ms), .min = 1, .max = 3600000,
     .help = "How long a probe waits for its ack before asking others\n"
             "to probe indirectly. Less than --probe-interval."},
    {.name = "indirect-probes", .type = OPT_UINT, .metavar = "K", .def = "3",
     .offset = FIELD_U64(indirect_probes), .min = 0, .max = 16,
     .help = "Members asked to probe a member that missed its ack."},
    {.name = "suspicion-mult", .type = OPT_UINT, .metavar = "N", .def = "4",
     .offset = FIELD_U64(suspicion_mult), .min = 1, .max = 100,
     .help = "A suspect is declared dead after about N x log10(members)\n"
             "probe intervals (sooner as others confirm it)."},
    {.name = "gossip-interval", .type = OPT_DURATION, .metavar = "DURATION", .def = "200ms",
     .offset = FIELD_U64(gossip_interval_ms), .min = 1, .max = 3600000,
     .help = "How often membership news is sent to a few members."},
    {.name = "pushpull-interval", .type = OPT_DURATION, .metavar = "DURATION",
     .def = "30000ms", .offset = FIELD_U64(pushpull_interval_ms), .min = 0, .max = 3600000,
     .help = "How often the full member list is exchanged with one member\n"
             "over TCP. 0 = only on join."},
    {.name = "peer-timeout", .type = OPT_DURATION, .metavar = "DURATION", .def = "2000ms",
     .offset = FIELD_U64(peer_timeout_ms), .min = 1, .max = UINT64_MAX,
     .help = "How long a request to another member may take. A relayed\n"
             "write is applied by its owner only within it. Keep it above\n"
             "--redis-timeout: a relayed write waits for the owner's Redis\n"
             "round trip."},
    {.name = "ring-settle", .type = OPT_DURATION, .metavar = "DURATION", .def = "5000ms",
     .offset = FIELD_U64(ring_settle_ms), .min = 1, .max = 3600000,
     .help = "How long after gaining keys a node treats what it caches\n"
             "for them as provisional (kept at most twice this long), since\n"
             "members still on the old ring may write Redis meanwhile.\n"
             "Set it above the time membership news takes to spread."},
    {.name = "handoff-rate", .type = OPT_SIZE, .metavar = "SIZE", .def = "64mb",
     .offset = FIELD_SIZE(handoff_rate), .min = 0, .max = SIZE_MAX,
     .help = "Bytes per second a node streams to the new owners of keys\n"
             "it no longer owns (after a join or when it leaves).\n"
             "0 = no hand-off: new owners read the moved keys from Redis."},
};

#define NOPTIONS (sizeof(pc_opt_table) / sizeof(pc_opt_table[0]))

_Static_assert(NOPTIONS <= NOPTIONS_MAX, "raise NOPTIONS_MAX in pc_config_int.h");

const size_t pc_opt_count = NOPTIONS;

const opt_t *pc_opt_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strlen(pc_opt_table[i].name) == len && memcmp(pc_opt_table[i].name, name, len) == 0)
            return &pc_opt_table[i];
    }
    return NULL;
}

/* "redis-timeout" -> "PEERCACHE_REDIS_TIMEOUT". */
void pc_opt_env_name(const opt_t *o, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "PEERCACHE_%s", o->name);

    for (size_t i = sizeof("PEERCACHE_") - 1; i < n && i < len; i++)
        buf[i] = buf[i] == '-' ? '_' : (char)toupper((unsigned char)buf[i]);
}

/* Prints a number the way a user would write it for this option type. */
void pc_opt_format_value(enum opt_type type, uint64_t v, char *buf, size_t len)
{
    if (type == OPT_SIZE && v != 0 && v % GIB == 0)
        snprintf(buf, len, "%" PRIu64 "gb", v / GIB);
    else if (type == OPT_SIZE && v != 0 && v % MIB == 0)
        snprintf(buf, len, "%" PRIu64 "mb", v / MIB);
    else if (type == OPT_SIZE && v != 0 && v % KIB == 0)
        snprintf(buf, len, "%" PRIu64 "kb", v / KIB);
    else if (type == OPT_DURATION)
        snprintf(buf, len, "%" PRIu64 "ms", v);
    else
        snprintf(buf, len, "%" PRIu64, v);
}

static const char *check_addr(const char *value, char *buf, size_t len)
{
    (void)buf;
    (void)len;
    char host[HOST_MAX];
    int port;
    int rc = pc_addr_parse(value, host, sizeof(host), &port);

    if (rc == PC_ERANGE)
        return "has a host name that is too long";
    if (rc != 0)
        return "is not a HOST:PORT address (e.g. 127.0.0.1:7400 or [::1]:7400)";
    return NULL;
}

static const char *check_addr_or_none(const char *value, char *buf, size_t len)
{
    if (strcmp(value, "none") == 0)
        return NULL;
    if (check_addr(value, buf, len) == NULL)
        return NULL;
    return "is neither a HOST:PORT address (e.g. 127.0.0.1:6379) nor \"none\"";
}

/* pc_backend_addr_parse's own message, which names the part that is wrong
 * (and never repeats a password). */
static const char *check_redis(const char *value, char *buf, size_t len)
{
    pc_backend_addr_t a;
    char err[200];
    int rc = pc_backend_addr_parse(value, &a, err, sizeof err);

    if (rc == PC_EPERM)
        return "holds a user or password, which are never given in --redis or on the "
               "command line: use --redis-user and --redis-password-file";
    if (rc != 0) {
        snprintf(buf, len, "is not a Redis address: %s (the forms: peercached --help)", err);
        return buf;
    }
    return NULL;
}

static int addr_ok(void *arg, const char *host, int port)
{
    (void)arg;
    (void)host;
    (void)port;
    return 0;
}

static const char *check_addr_list(const char *value, char *buf, size_t len)
{
    (void)buf;
    (void)len;
    if (value[0] == '\0')
        return NULL;
    if (pc_addr_parse_list(value, addr_ok, NULL) != 0)
        return "is not a comma-separated list of HOST:PORT addresses";
    return NULL;
}

/* Writes `text` with every line indented by `indent` spaces. */
static void print_indented(FILE *out, const char *text, int indent)
{
    while (*text != '\0') {
        const char *nl = strchr(text, '\n');
        int len = nl ? (int)(nl - text) : (int)strlen(text);

        fprintf(out, "%*s%.*s\n", indent, "", len, text);
        text += len + (nl ? 1 : 0);
    }
}

void pc_config_usage(FILE *out, const char *prog)
{
    char env[ENV_NAME_MAX];

    if (prog == NULL || prog[0] == '\0')
        prog = "peercached";
    fprintf(out,
            "Usage: %s [OPTIONS]\n"
            "\n"
            "peercached is a cache node in front of Redis (version %s).\n"
            "\n"
            "Every option can be given as a flag (--name VALUE or --name=VALUE),\n"
            "as an environment variable (shown below each option), or as a\n"
            "\"name = value\" line in the config file. Flags override the\n"
            "environment, which overrides the config file, which overrides the\n"
            "defaults.\n"
            "\n"
            "Options:\n",
            prog, PC_VERSION_STRING);
    for (size_t i = 0; i < NOPTIONS; i++) {
        const opt_t *o = &pc_opt_table[i];

        if (o->not_flag) {
            fprintf(out, "  (%s %s)\n", o->name, o->metavar);
        } else if (o->type == OPT_BOOL) {
            fprintf(out, "  --%s\n", o->name);
        } else if (o->type == OPT_ENUM) {
            fprintf(out, "  --%s ", o->name);
            for (size_t j = 0; o->choices[j] != NULL; j++)
                fprintf(out, "%s%s", j ? "|" : "", o->choices[j]);
            fputc('\n', out);
        } else {
            fprintf(out, "  --%s %s\n", o->name, o->metavar);
        }
        print_indented(out, o->help, 6);
        pc_opt_env_name(o, env, sizeof(env));
        if (o->def == NULL)
            fprintf(out, "      env %s, default: %s\n", env, o->def_help);
        else if (o->def[0] == '\0')
            fprintf(out, "      env %s, default: \"\" (empty)\n", env);
        else
            fprintf(out, "      env %s, default: %s\n", env, o->def);
    }
    fprintf(out,
            "  -h, --help\n"
            "      Print this help and exit.\n"
            "  --version\n"
            "      Print the version and exit.\n"
            "\n"
            "SIZE is a number of bytes with an optional unit b, k/kb, m/mb or g/gb\n"
            "(powers of 1024, any case): 65536, 512k, 64mb, 1g.\n"
            "DURATION is milliseconds, or a number with a unit ms, s, m or h:\n"
            "500, 250ms, 2s, 5m.\n");
}
