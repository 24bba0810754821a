/* Sentinel groups and Redis Clusters: see pc_harness_redis.h. */
#include "pc_harness_redis.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- Redis Sentinel --------------------------------------------------------- */

/* 1 if name (no '/') is an executable file in a PATH directory. */
static int in_path(const char *name)
{
    const char *path = getenv("PATH");
    char dir[4096], file[4352];
    while (path && *path) {
        size_t len = strcspn(path, ":");
        if (len == 0)
            snprintf(dir, sizeof dir, ".");
        else
            snprintf(dir, sizeof dir, "%.*s", (int)len, path);
        snprintf(file, sizeof file, "%s/%s", dir, name);
        if (access(file, X_OK) == 0)
            return 1;
        path += len;
        if (*path == ':')
            path++;
    }
    return 0;
}

/* How sentinels start: redis-sentinel (*flag 0), or redis-server with
 * --sentinel (*flag 1); NULL if neither is there. */
static const char *sentinel_bin(int *flag)
{
    *flag = 0;
    if (in_path("redis-sentinel"))
        return "redis-sentinel";
    *flag = 1;
    const char *bin = pc_h_redis_server_bin();
    if (strchr(bin, '/') ? access(bin, X_OK) == 0 : in_path(bin))
        return bin;
    return NULL;
}

int pc_h_sentinel_available(void)
{
    int flag;
    return sentinel_bin(&flag) != NULL;
}

/* One command on a fresh connection to 127.0.0.1:port (1 s timeouts); the
 * reply or NULL. */
static redisReply *port_command(int port, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static redisReply *port_command(int port, const char *fmt, ...)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *r = NULL;
    if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK) {
        va_list ap;
        va_start(ap, fmt);
        r = redisvCommand(c, fmt, ap);
        va_end(ap);
    }
    if (c)
        redisFree(c);
    return r;
}

/* What a group still waits for, for the message when it never comes. */
struct group_wait {
    const pc_h_sentinel_group_t *g;
    char why[512];
};

static int replication_up(void *arg)
{
    struct group_wait *w = arg;
    const pc_h_sentinel_group_t *g = w->g;
    redisReply *r = port_command(g->redis[0].port, "INFO replication");
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "connected_slaves:2\r\n");
    /* both online on the primary's side too (what WAIT counts): after a
     * sync, that is the replica's first ACK, up to a second later */
    if (ok) {
        const char *p = strstr(r->str, "state=online");
        ok = p != NULL && strstr(p + 1, "state=online") != NULL;
    }
    if (!ok)
        snprintf(w->why, sizeof w->why, "primary %s has not 2 replicas online",
                 g->redis[0].addr);
    if (r)
        freeReplyObject(r);
    for (int i = 1; ok && i < 3; i++) {
        r = port_command(g->redis[i].port, "INFO replication");
        ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "master_link_status:up\r\n");
        if (!ok)
            snprintf(w->why, sizeof w->why, "replica %s: master_link_status not up",
                     g->redis[i].addr);
        if (r)
            freeReplyObject(r);
    }
    return ok;
}

/* A field of SENTINEL master's reply (a flat name/value array), or NULL. */
static const char *master_field(const redisReply *r, const char *name)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, name) == 0 &&
            r->element[i + 1]->type == REDIS_REPLY_STRING)
            return r->element[i + 1]->str;
    return NULL;
}

static int sentinels_see_all(void *arg)
{
    struct group_wait *w = arg;
    const pc_h_sentinel_group_t *g = w->g;
    for (int i = 0; i < 3; i++) {
        redisReply *r = port_command(g->sentinel[i].port, "SENTINEL master %s", g->master);
        const char *slaves = NULL, *others = NULL;
        if (r && r->type == REDIS_REPLY_ARRAY) {
            slaves = master_field(r, "num-slaves");
            others = master_field(r, "num-other-sentinels");
        }
        int ok = slaves && others && strcmp(slaves, "2") == 0 && strcmp(others, "2") == 0;
        if (!ok)
            snprintf(w->why, sizeof w->why,
                     "sentinel %s: num-slaves %s, num-other-sentinels %s (want 2 and 2)%s%s",
                     g->sentinel[i].addr, slaves ? slaves : "?", others ? others : "?",
                     r && r->type == REDIS_REPLY_ERROR ? ": " : "",
                     r && r->type == REDIS_REPLY_ERROR ? r->str : "");
        if (r)
            freeReplyObject(r);
        if (!ok)
            return 0;
    }
    return 1;
}

static int start_sentinel(pc_h_proc_t *p, const pc_h_sentinel_group_t *g, int down_after_ms,
                          int failover_timeout_ms)
{
    int port = pc_h_free_port();
    char conf[600], name[64];
    snprintf(name, sizeof name, "sentinel-%d", port);
    snprintf(conf, sizeof conf, "%s/%s.conf", pc_h_tmpdir(), name);
    /* Sentinel refuses a config file it cannot rewrite: one each. */
    FILE *f = fopen(conf, "w");
    if (f == NULL) {
        fprintf(stderr, "cannot write %s: %s\n", conf, strerror(errno));
        return -1;
    }
    fprintf(f,
            "port %d\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            "logfile \"\"\n"
            "dir \"%s\"\n"
            "sentinel monitor %s 127.0.0.1 %d 2\n"
            "sentinel down-after-milliseconds %s %d\n"
            "sentinel failover-timeout %s %d\n"
            "sentinel parallel-syncs %s 1\n",
            port, pc_h_tmpdir(), g->master, g->redis[0].port, g->master, down_after_ms,
            g->master, failover_timeout_ms, g->master);
    if (fclose(f) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", conf, strerror(errno));
        return -1;
    }
    int flag;
    const char *bin = sentinel_bin(&flag);
    if (bin == NULL) {
        fprintf(stderr, "neither redis-sentinel nor redis-server found\n");
        return -1;
    }
    const char *argv[] = {bin, conf, flag ? "--sentinel" : NULL, NULL};
    if (pc_h_spawn(p, argv, name) != 0)
        return -1;
    p->port = port;
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", port);
    return pc_h_wait_ready(p, 1);
}

static int master_name_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n >= sizeof((pc_h_sentinel_group_t *)0)->master)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((m[i] >= 'a' && m[i] <= 'z') || (m[i] >= 'A' && m[i] <= 'Z') ||
              (m[i] >= '0' && m[i] <= '9') || m[i] == '-' || m[i] == '_' || m[i] == '.'))
            return 0;
    return 1;
}

int pc_h_sentinel_group_start(pc_h_sentinel_group_t *g, const char *master, int down_after_ms,
                              int failover_timeout_ms)
{
    memset(g, 0, sizeof *g);
    if (!master_name_ok(master)) {
        fprintf(stderr, "pc_h_sentinel_group_start: bad master name '%s'\n", master);
        return -1;
    }
    snprintf(g->master, sizeof g->master, "%s", master);
    struct group_wait w = {g, ""};
    char port0[16];
    /* Any of them may become the primary: none waits 5 s for more
     * replicas before a full sync. */
    const char *primary_args[] = {"--repl-diskless-sync-delay", "0", NULL};
    const char *replica_args[] = {"--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1",
                                  port0, NULL};
    size_t off = 0;

    if (pc_h_redis_start_args(&g->redis[0], 0, primary_args) != 0)
        goto fail;
    snprintf(port0, sizeof port0, "%d", g->redis[0].port);
    for (int i = 1; i < 3; i++)
        if (pc_h_redis_start_args(&g->redis[i], 0, replica_args) != 0)
            goto fail;
    if (!pc_h_poll(replication_up, &w, 15000)) {
        fprintf(stderr, "sentinel group: replication not up within 15 s: %s\n", w.why);
        goto fail_logs;
    }
    for (int i = 0; i < 3; i++) {
        if (start_sentinel(&g->sentinel[i], g, down_after_ms, failover_timeout_ms) != 0)
            goto fail;
        off += (size_t)snprintf(g->sentinels + off, sizeof g->sentinels - off, "%s%s",
                                i ? "," : "", g->sentinel[i].addr);
    }
    if (!pc_h_poll(sentinels_see_all, &w, 20000)) {
        fprintf(stderr,
                "sentinel group: the sentinels did not all see 2 replicas and 2 other "
                "sentinels within 20 s: %s\n",
                w.why);
        goto fail_logs;
    }
    return 0;
fail_logs:
    for (int i = 0; i < 3; i++)
        pc_h_print_log(&g->redis[i]);
    for (int i = 0; i < 3; i++)
        pc_h_print_log(&g->sentinel[i]);
fail:
    pc_h_sentinel_group_stop(g);
    return -1;
}

int pc_h_sentinel_primary_port(const pc_h_sentinel_group_t *g)
{
    for (int i = 0; i < 3; i++) {
        if (g->sentinel[i].pid <= 0)
            continue;
        redisReply *r =
            port_command(g->sentinel[i].port, "SENTINEL get-master-addr-by-name %s", g->master);
        int port = -1;
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[1]->type == REDIS_REPLY_STRING)
            port = atoi(r->element[1]->str);
        if (r)
            freeReplyObject(r);
        if (port > 0)
            return port;
    }
    return -1;
}

int pc_h_sentinel_group_index(const pc_h_sentinel_group_t *g, int port)
{
    for (int i = 0; i < 3; i++)
        if (port > 0 && g->redis[i].port == port)
            return i;
    return -1;
}

void pc_h_sentinel_group_stop(pc_h_sentinel_group_t *g)
{
    for (int i = 0; i < 3; i++)
        if (g->sentinel[i].pid > 0)
            pc_h_stop(&g->sentinel[i], SIGTERM, 5000);
    for (int i = 0; i < 3; i++)
        if (g->redis[i].pid > 0)
            pc_h_stop(&g->redis[i], SIGTERM, 5000);
}

/* ---- Redis Cluster ---------------------------------------------------------- */

static const char *redis_cli_bin(void)
{
    const char *bin = getenv("PC_REDIS_CLI");
    return bin ? bin : "redis-cli";
}

static int bin_found(const char *bin)
{
    return strchr(bin, '/') ? access(bin, X_OK) == 0 : in_path(bin);
}

int pc_h_rcluster_available(void)
{
    return bin_found(pc_h_redis_server_bin()) && bin_found(redis_cli_bin());
}

unsigned pc_h_rcluster_keyslot(const char *key, size_t len)
{
    /* Only what is between the first '{' and the next '}' counts, if
     * that is not empty. */
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open + 1 - key);
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1) {
            len = (size_t)(close - open - 1);
            key = open + 1;
        }
    }
    uint16_t crc = 0; /* CRC16-CCITT (XMODEM): poly 0x1021, init 0 */
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)key[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc & 16383;
}

/* Connections kept open while polling a cluster (six fresh connections
 * and more every 10 ms would fill the port range with TIME_WAIT). */
struct rc_conns {
    const pc_h_rcluster_t *c;
    redisContext *conn[6];
    char why[512];
};

static void rc_conns_close(struct rc_conns *w)
{
    for (int i = 0; i < 6; i++)
        if (w->conn[i]) {
            redisFree(w->conn[i]);
            w->conn[i] = NULL;
        }
}

/* A connection to node i (1 s timeouts, AUTH if the cluster has a
 * password), or NULL. No output: it is polled. */
static redisContext *rc_open(const pc_h_rcluster_t *c, int i, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", c->redis[i].port, tv);
    if (ctx == NULL || ctx->err || redisSetTimeout(ctx, tv) != REDIS_OK) {
        if (ctx)
            redisFree(ctx);
        return NULL;
    }
    if (c->password[0] != '\0') {
        redisReply *r = redisCommand(ctx, "AUTH %s", c->password);
        int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            redisFree(ctx);
            return NULL;
        }
    }
    return ctx;
}

/* One command to running node i over w's connection (opened on demand,
 * dropped after an I/O error); the reply or NULL. */
static redisReply *rc_command(struct rc_conns *w, int i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static redisReply *rc_command(struct rc_conns *w, int i, const char *fmt, ...)
{
    if (w->c->redis[i].pid <= 0)
        return NULL;
    if (w->conn[i] == NULL && (w->conn[i] = rc_open(w->c, i, 1000)) == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(w->conn[i], fmt, ap);
    va_end(ap);
    if (r == NULL) {
        redisFree(w->conn[i]);
        w->conn[i] = NULL;
    }
    return r;
}

static int rc_index(const pc_h_rcluster_t *c, int port)
{
    for (int i = 0; i < c->n; i++)
        if (port > 0 && c->redis[i].port == port)
            return i;
    return -1;
}

/* Node i's CLUSTER SLOTS as owner[slot] (index or -1). 0, or -1 if it
 * did not answer with an array. */
static int rc_slot_map(struct rc_conns *w, int i, int *owner)
{
    redisReply *r = rc_command(w, i, "CLUSTER SLOTS");
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    for (int s = 0; s < 16384; s++)
        owner[s] = -1;
    /* [[start, end, [ip, port, id, ...] (the primary), replicas...], ...] */
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        int idx = rc_index(w->c, (int)e->element[2]->element[1]->integer);
        for (long long s = lo < 0 ? 0 : lo; s <= hi && s < 16384; s++)
            owner[s] = idx;
    }
    freeReplyObject(r);
    return 0;
}

/* A field of an INFO-style reply ("name:value\r\n") into buf; 1 if found. */
static int info_field(const redisReply *r, const char *name, char *buf, size_t len)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING)
        return 0;
    size_t n = strlen(name);
    for (const char *p = r->str; *p != '\0';) {
        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            size_t v = strcspn(p + n + 1, "\r\n");
            snprintf(buf, len, "%.*s", (int)v, p + n + 1);
            return 1;
        }
        const char *nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return 0;
}

/* Every running node says cluster_state:ok and names the same running
 * node as the primary of every slot. */
static int rc_agree(struct rc_conns *w)
{
    const pc_h_rcluster_t *c = w->c;
    static int first[16384], other[16384];
    int have = -1;
    for (int i = 0; i < c->n; i++) {
        if (c->redis[i].pid <= 0)
            continue;
        char state[32] = "?";
        redisReply *r = rc_command(w, i, "CLUSTER INFO");
        int ok = info_field(r, "cluster_state", state, sizeof state) && strcmp(state, "ok") == 0;
        if (!ok)
            snprintf(w->why, sizeof w->why, "node %d (%s): cluster_state:%s%s%s", i,
                     c->redis[i].addr, state, r && r->type == REDIS_REPLY_ERROR ? ": " : "",
                     r && r->type == REDIS_REPLY_ERROR ? r->str : "");
        if (r)
            freeReplyObject(r);
        if (!ok)
            return 0;
        int *map = have < 0 ? first : other;
        if (rc_slot_map(w, i, map) != 0) {
            snprintf(w->why, sizeof w->why, "node %d (%s): no answer to CLUSTER SLOTS", i,
                     c->redis[i].addr);
            return 0;
        }
        for (int s = 0; s < 16384; s++) {
            if (map[s] < 0 || c->redis[map[s]].pid <= 0) {
                snprintf(w->why, sizeof w->why,
                         "node %d (%s) names %s as the primary of slot %d", i, c->redis[i].addr,
                         map[s] < 0 ? "no running node" : c->redis[map[s]].addr, s);
                return 0;
            }
            if (have >= 0 && map[s] != first[s]) {
                snprintf(w->why, sizeof w->why,
                         "slot %d: node %d (%s) names node %d as its primary, node %d names %d",
                         s, have, c->redis[have].addr, first[s], i, map[s]);
                return 0;
            }
        }
        if (have < 0)
            have = i;
    }
    if (have < 0)
        snprintf(w->why, sizeof w->why, "no node runs");
    return have >= 0;
}

static int rc_agree_poll(void *arg) { return rc_agree(arg); }

/* The start's condition (pc_harness.h). */
static int rc_formed(void *arg)
{
    struct rc_conns *w = arg;
    const pc_h_rcluster_t *c = w->c;
    for (int i = 0; i < c->n; i++) {
        char state[32] = "?", assigned[32] = "?", known[32] = "?", role[32] = "?",
             link[32] = "?";
        redisReply *r = rc_command(w, i, "CLUSTER INFO");
        info_field(r, "cluster_state", state, sizeof state);
        info_field(r, "cluster_slots_assigned", assigned, sizeof assigned);
        info_field(r, "cluster_known_nodes", known, sizeof known);
        if (r)
            freeReplyObject(r);
        if (strcmp(state, "ok") != 0 || strcmp(assigned, "16384") != 0 ||
            strcmp(known, "6") != 0) {
            snprintf(w->why, sizeof w->why,
                     "node %d (%s): cluster_state:%s cluster_slots_assigned:%s "
                     "cluster_known_nodes:%s",
                     i, c->redis[i].addr, state, assigned, known);
            return 0;
        }
        r = rc_command(w, i, "INFO replication");
        info_field(r, "role", role, sizeof role);
        info_field(r, "master_link_status", link, sizeof link);
        /* A primary counts its replica for WAIT only once it is online on
         * its side too: after a sync that is the replica's first ACK,
         * up to a second after the replica says its link is up. */
        int online = r != NULL && r->type == REDIS_REPLY_STRING &&
                     strstr(r->str, "state=online") != NULL;
        if (r)
            freeReplyObject(r);
        const char *want = i < 3 ? "master" : "slave";
        if (i < 3 && strcmp(role, want) == 0 && !online) {
            snprintf(w->why, sizeof w->why, "node %d (%s): its replica is not online yet", i,
                     c->redis[i].addr);
            return 0;
        }
        if (strcmp(role, want) != 0 || (i >= 3 && strcmp(link, "up") != 0)) {
            snprintf(w->why, sizeof w->why, "node %d (%s): role:%s (want %s)%s%s", i,
                     c->redis[i].addr, role, want, i >= 3 ? " master_link_status:" : "",
                     i >= 3 ? link : "");
            return 0;
        }
    }
    return rc_agree(w);
}

static void rc_print_logs(const pc_h_rcluster_t *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->redis[i].log[0] != '\0')
            pc_h_print_log(&c->redis[i]);
}

/* A free port other than the ones in taken[0..n). */
static int rc_free_port(const int *taken, int n)
{
    for (int tries = 0; tries < 100; tries++) {
        int port = pc_h_free_port();
        int dup = port <= 0;
        for (int k = 0; !dup && k < n; k++)
            dup = taken[k] == port;
        if (!dup)
            return port;
    }
    return -1;
}

/* The start of redis-cli's argv: "env TERM=dumb [REDISCLI_AUTH=pw]
 * redis-cli". --cluster colours its output whenever TERM names an xterm,
 * a file too; a password in -a would make it warn on stderr and show in
 * ps. The number of entries used. */
static int rc_cli_argv(const pc_h_rcluster_t *c, const char **argv, char *authvar, size_t len)
{
    int n = 0;
    argv[n++] = "env";
    argv[n++] = "TERM=dumb";
    if (c->password[0] != '\0') {
        snprintf(authvar, len, "REDISCLI_AUTH=%s", c->password);
        argv[n++] = authvar;
    }
    argv[n++] = redis_cli_bin();
    return n;
}

/* Starts node i of c on port (its bus port, node timeout and password
 * from c), keeping a node table already there. */
static int rc_node_start(pc_h_rcluster_t *c, int i, int port)
{
    char conf[600], busstr[16], timeout[16];
    snprintf(conf, sizeof conf, "%s/nodes-%d.conf", pc_h_tmpdir(), port);
    snprintf(busstr, sizeof busstr, "%d", c->bus_port[i]);
    snprintf(timeout, sizeof timeout, "%d", c->node_timeout_ms);
    const char *args[20] = {"--cluster-enabled", "yes", "--cluster-config-file", conf,
                            "--cluster-port", busstr, "--cluster-node-timeout", timeout,
                            "--repl-diskless-sync-delay", "0"};
    int n = 10;
    if (c->password[0] != '\0') {
        args[n++] = "--requirepass";
        args[n++] = c->password;
        args[n++] = "--masterauth";
        args[n++] = c->password;
    }
    args[n] = NULL;
    return pc_h_redis_start_args(&c->redis[i], port, args);
}

int pc_h_rcluster_restart(pc_h_rcluster_t *c, int i)
{
    if (i < 0 || i >= c->n || c->redis[i].pid > 0 || c->redis[i].port <= 0)
        return -1;
    return rc_node_start(c, i, c->redis[i].port);
}

int pc_h_rcluster_start(pc_h_rcluster_t *c, int node_timeout_ms, const char *password)
{
    memset(c, 0, sizeof *c);
    c->n = 6;
    if (password != NULL && strlen(password) >= sizeof c->password) {
        fprintf(stderr, "pc_h_rcluster_start: password too long\n");
        return -1;
    }
    snprintf(c->password, sizeof c->password, "%s", password ? password : "");
    c->node_timeout_ms = node_timeout_ms;
    struct rc_conns w = {c, {NULL}, ""};
    pc_h_proc_t create = {0};
    int taken[12], ntaken = 0;
    size_t off = 0;

    for (int i = 0; i < c->n; i++) {
        int port = rc_free_port(taken, ntaken);
        if (port > 0)
            taken[ntaken++] = port;
        int bus = rc_free_port(taken, ntaken);
        if (port <= 0 || bus <= 0) {
            fprintf(stderr, "pc_h_rcluster_start: no free port\n");
            goto fail;
        }
        taken[ntaken++] = bus;
        c->bus_port[i] = bus;
        char conf[600], rdb[600];
        /* A node table left by an earlier cluster on this port would make
         * the node rejoin it; a dump of a replica's full sync would load
         * keys ("Node is not empty" to --cluster create). */
        snprintf(conf, sizeof conf, "%s/nodes-%d.conf", pc_h_tmpdir(), port);
        snprintf(rdb, sizeof rdb, "%s/redis-%d.rdb", pc_h_tmpdir(), port);
        unlink(conf);
        unlink(rdb);
        if (rc_node_start(c, i, port) != 0)
            goto fail;
        if (i < 3)
            off += (size_t)snprintf(c->seeds + off, sizeof c->seeds - off, "%s%s", i ? "," : "",
                                    c->redis[i].addr);
    }

    const char *argv[24];
    char authvar[96], name[64];
    int n = rc_cli_argv(c, argv, authvar, sizeof authvar);
    argv[n++] = "--cluster";
    argv[n++] = "create";
    for (int i = 0; i < c->n; i++)
        argv[n++] = c->redis[i].addr;
    argv[n++] = "--cluster-replicas";
    argv[n++] = "1";
    argv[n++] = "--cluster-yes";
    argv[n] = NULL;
    snprintf(name, sizeof name, "rcluster-create-%d", c->redis[0].port);
    if (pc_h_spawn(&create, argv, name) != 0) {
        fprintf(stderr, "pc_h_rcluster_start: cannot start redis-cli\n");
        goto fail;
    }
    int st = pc_h_stop(&create, 0, 30000); /* prints the log on a timeout */
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char how[128] = "did not end within 30 s";
        if (st >= 0)
            pc_h_describe_status(st, how, sizeof how);
        fprintf(stderr, "pc_h_rcluster_start: redis-cli --cluster create %s\n", how);
        if (st >= 0)
            pc_h_print_log(&create);
        goto fail_logs;
    }
    if (!pc_h_poll(rc_formed, &w, 30000)) {
        fprintf(stderr, "pc_h_rcluster_start: the cluster did not form within 30 s: %s\n",
                w.why);
        pc_h_print_log(&create);
        goto fail_logs;
    }
    rc_conns_close(&w);
    return 0;
fail_logs:
    rc_print_logs(c);
fail:
    rc_conns_close(&w);
    pc_h_rcluster_stop(c);
    return -1;
}

int pc_h_rcluster_slots(const pc_h_rcluster_t *c, int owner[16384])
{
    struct rc_conns w = {c, {NULL}, ""};
    int rc = -1;
    for (int i = 0; rc != 0 && i < c->n; i++)
        rc = rc_slot_map(&w, i, owner);
    rc_conns_close(&w);
    return rc;
}

int pc_h_rcluster_owner(const pc_h_rcluster_t *c, unsigned slot)
{
    static int owner[16384];
    if (slot >= 16384 || pc_h_rcluster_slots(c, owner) != 0)
        return -1;
    return owner[slot];
}

int pc_h_rcluster_replica_of(const pc_h_rcluster_t *c, int i)
{
    if (i < 0 || i >= c->n || c->redis[i].pid <= 0)
        return -1;
    struct rc_conns w = {c, {NULL}, ""};
    int found = -1;
    for (int k = 0; found < 0 && k < c->n; k++) {
        if (k == i)
            continue;
        char role[32] = "", port[32] = "";
        redisReply *r = rc_command(&w, k, "INFO replication");
        if (info_field(r, "role", role, sizeof role) && strcmp(role, "slave") == 0 &&
            info_field(r, "master_port", port, sizeof port) && atoi(port) == c->redis[i].port)
            found = k;
        if (r)
            freeReplyObject(r);
    }
    rc_conns_close(&w);
    return found;
}

redisContext *pc_h_rcluster_connect(const pc_h_rcluster_t *c, int i)
{
    if (i < 0 || i >= c->n || c->redis[i].pid <= 0)
        return NULL;
    return rc_open(c, i, 2000);
}

int pc_h_rcluster_node_id(const pc_h_rcluster_t *c, int i, char id[41])
{
    redisContext *ctx = pc_h_rcluster_connect(c, i);
    if (ctx == NULL)
        return -1;
    redisReply *r = redisCommand(ctx, "CLUSTER MYID");
    int rc = -1;
    if (r && r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy(id, r->str, 40);
        id[40] = '\0';
        rc = 0;
    }
    if (r)
        freeReplyObject(r);
    redisFree(ctx);
    return rc;
}

int pc_h_rcluster_reshard_start(const pc_h_rcluster_t *c, int from, int to, int nslots,
                                pc_h_proc_t *p)
{
    static int count;
    char from_id[41], to_id[41], slots[16], authvar[96], name[64];
    memset(p, 0, sizeof *p);
    if (from < 0 || from >= c->n || to < 0 || to >= c->n || from == to || nslots <= 0 ||
        pc_h_rcluster_node_id(c, from, from_id) != 0 ||
        pc_h_rcluster_node_id(c, to, to_id) != 0) {
        fprintf(stderr, "pc_h_rcluster_reshard_start: bad nodes %d -> %d\n", from, to);
        return -1;
    }
    snprintf(slots, sizeof slots, "%d", nslots);
    const char *argv[24];
    int n = rc_cli_argv(c, argv, authvar, sizeof authvar);
    argv[n++] = "--cluster";
    argv[n++] = "reshard";
    argv[n++] = c->redis[from].addr;
    argv[n++] = "--cluster-from";
    argv[n++] = from_id;
    argv[n++] = "--cluster-to";
    argv[n++] = to_id;
    argv[n++] = "--cluster-slots";
    argv[n++] = slots;
    argv[n++] = "--cluster-yes";
    argv[n] = NULL;
    snprintf(name, sizeof name, "rcluster-reshard-%d", ++count);
    return pc_h_spawn(p, argv, name);
}

int pc_h_rcluster_wait_ok(const pc_h_rcluster_t *c, int deadline_ms)
{
    struct rc_conns w = {c, {NULL}, ""};
    int ok = pc_h_poll(rc_agree_poll, &w, deadline_ms);
    if (!ok)
        fprintf(stderr, "pc_h_rcluster_wait_ok: not within %d ms: %s\n", deadline_ms, w.why);
    rc_conns_close(&w);
    return ok;
}

void pc_h_rcluster_stop(pc_h_rcluster_t *c)
{
    /* All at once: a primary stopping waits for lagging replicas (up to
     * shutdown-timeout); they go too. */
    for (int i = 0; i < 6; i++)
        if (c->redis[i].pid > 0)
            kill(c->redis[i].pid, SIGTERM);
    for (int i = 0; i < 6; i++)
        if (c->redis[i].pid > 0)
            pc_h_stop(&c->redis[i], 0, 5000);
}

