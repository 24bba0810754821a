/*
 * pc_rcluster.c -- the node's Redis as a Redis Cluster: one link (a
 * pc_backend to one server) per primary, and the slot map that routes
 * each key to one (contract: pc_backend_int.h).
 *
 * The map comes from CLUSTER SLOTS, asked on any link that is up: at
 * start (links to the seeds first), every REFRESH_EVERY_MS, and soon
 * after anything that says it changed -- a -MOVED or -CLUSTERDOWN
 * answer, a slot the map does not cover, a link that lost its
 * connection. A new map gets links for the primaries that have none;
 * links no primary needs any more are retired: they take no new
 * commands and are closed once nothing is in flight on them (closing
 * earlier would report their writes failed before their fences).
 *
 * Redirections, and why each is handled as it is:
 *  - -MOVED: the slot has a new owner, and the command was not applied.
 *    It fails with PC_ERETRY (the client is told RETRY, and retries) and
 *    the map is refreshed. It is not re-sent: commands for the same key
 *    sent after it may already have gone to the new owner, and re-sending
 *    it would apply it after them.
 *  - -ASK: the slot is moving, and this key has moved already. The
 *    command goes once to the named node after ASKING, as Redis Cluster
 *    asks. Every command for the slot still goes to the old owner first,
 *    whose answers come in order, so the re-sent ones keep their order --
 *    unless the map already names the new owner (it was refreshed after
 *    the command left): then commands sent since may have gone straight
 *    there, and the command fails with PC_ERETRY instead.
 *  - -TRYAGAIN (a multi-key command while its keys are split by a move):
 *    PC_ERETRY. -CLUSTERDOWN: PC_EBACKEND, and a refresh.
 * None of them was applied, so none can break the fence's promise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_backend_int.h"
#include "pc_hist.h"
#include "pc_rkey.h"
#include "pc_slotmap.h"

#define REFRESH_EVERY_MS 5000 /* the map is asked for again this often */
#define REFRESH_MIN_MS 100    /* and never more often than this */
#define SEEDS_AFTER_MS 1000   /* no link up this long: links to the seeds again */
#define TICK_MS 50

typedef struct rlink {
    pc_backend_t *b;
    int retired; /* takes no new commands; closed once idle */
} rlink_t;

struct pc_rcluster {
    uv_loop_t *loop;
    const pc_log_t *log;
    pc_backend_config_t cfg; /* for the links; addr points at seeds */
    pc_backend_addr_t seeds;
    char *prefix;
    size_t prefix_len;

    pc_slotmap_t map;
    pc_backend_t **shard; /* the link of each of map's primaries */
    rlink_t *links;
    size_t nlinks, caplinks;

    int refresh_wanted;
    int refresh_inflight;
    uint64_t refresh_sent;  /* loop ms the CLUSTER SLOTS in flight was sent */
    uint64_t refresh_not_before;
    uint64_t next_refresh;
    size_t rr;         /* where the next refresh looks for a link that is up */
    uint64_t last_up;  /* loop ms when a link was last seen up */
    char last_err[128]; /* a bad map, logged once */
    int down_warned;    /* -CLUSTERDOWN logged; again after a full map */

    pc_backend_stats_t gone; /* the counters of links closed */
    uv_timer_t timer;
    int closing;
    int open; /* links closing, and the timer */
    void (*closed)(void *);
    void *closed_arg;
};

/* The slot of the key's Redis name (prefix + key). */
static unsigned key_slot(const pc_rcluster_t *rc, const void *key, size_t klen)
{
    uint8_t stackbuf[1024];
    uint8_t *buf = stackbuf;
    size_t len = rc->prefix_len + klen;
    if (len > sizeof stackbuf && (buf = malloc(len)) == NULL)
        return PC_SLOTMAP_SLOTS; /* no owner: the call fails at once */
    memcpy(buf, rc->prefix, rc->prefix_len);
    if (klen > 0)
        memcpy(buf + rc->prefix_len, key, klen);
    unsigned slot = pc_rkey_slot(buf, len);
    if (buf != stackbuf)
        free(buf);
    return slot;
}

pc_backend_t *pc_rcluster_route(pc_rcluster_t *rc, const void *key, size_t klen)
{
    unsigned sh = pc_slotmap_owner(&rc->map, key_slot(rc, key, klen));
    if (sh == PC_SLOTMAP_NONE || rc->shard[sh] == NULL) {
        rc->refresh_wanted = 1;
        return NULL;
    }
    return rc->shard[sh];
}

/* The live link to host:port, or NULL. */
static rlink_t *find_link(pc_rcluster_t *rc, const char *host, int port)
{
    for (size_t i = 0; i < rc->nlinks; i++)
        if (rc->links[i].b != NULL && pc_backend_link_port(rc->links[i].b) == port &&
            strcmp(pc_backend_link_host(rc->links[i].b), host) == 0)
            return &rc->links[i];
    return NULL;
}

/* A link to host:port: the one there is (no longer retired), or a new
 * one. NULL on failure (logged). */
static pc_backend_t *get_link(pc_rcluster_t *rc, const char *host, int port)
{
    rlink_t *e = find_link(rc, host, port);
    if (e != NULL) {
        e->retired = 0;
        return e->b;
    }
    if (rc->nlinks == rc->caplinks) {
        size_t cap = rc->caplinks ? rc->caplinks * 2 : 8;
        rlink_t *n = realloc(rc->links, cap * sizeof *n);
        if (n == NULL)
            return NULL;
        rc->links = n;
        rc->caplinks = cap;
    }
    pc_backend_addr_t a = {.mode = PC_BACKEND_SINGLE, .nhosts = 1};
    snprintf(a.hosts[0].host, sizeof a.hosts[0].host, "%s", host);
    a.hosts[0].port = port;
    pc_backend_config_t cfg = rc->cfg;
    cfg.addr = &a;
    pc_backend_t *b = NULL;
    int err = pc_backend_link_new(rc->loop, &cfg, rc->log, rc, &b);
    if (err < 0) {
        pc_log_warn(rc->log, "redis cluster: no link to %s:%d: %s", host, port, pc_strerror(err));
        return NULL;
    }
    rc->links[rc->nlinks++] = (rlink_t){.b = b};
    return b;
}

static void stats_add(pc_backend_stats_t *sum, const pc_backend_stats_t *x)
{
    sum->commands += x->commands;
    sum->errors += x->errors;
    sum->timeouts += x->timeouts;
    sum->rejected += x->rejected;
    sum->connects += x->connects;
    sum->late += x->late;
    sum->held += x->held;
    sum->wait_short += x->wait_short;
    sum->refusals += x->refusals;
    sum->switches += x->switches;
    sum->redirects += x->redirects;
    pc_hist_merge(&sum->rtt, &x->rtt);
}

static void maybe_closed(pc_rcluster_t *rc)
{
    if (!rc->closing || rc->open > 0)
        return;
    void (*closed)(void *) = rc->closed;
    void *arg = rc->closed_arg;
    pc_slotmap_free(&rc->map);
    free(rc->shard);
    free(rc->links);
    free(rc->prefix);
    free(rc);
    if (closed)
        closed(arg);
}

static void link_closed(void *arg)
{
    pc_rcluster_t *rc = arg;
    rc->open--;
    maybe_closed(rc);
}

/* Closes link i (its counters kept) and takes it out of the list. */
static void close_link(pc_rcluster_t *rc, size_t i)
{
    pc_backend_t *b = rc->links[i].b;
    pc_backend_stats_t st;
    pc_backend_stats(b, &st);
    stats_add(&rc->gone, &st);
    rc->links[i] = rc->links[--rc->nlinks];
    rc->open++;
    pc_backend_close(b, link_closed, rc);
}

/* Retires every link the map does not use (seeds that are replicas,
 * primaries that are no more). */
static void retire_unused(pc_rcluster_t *rc)
{
    for (size_t i = 0; i < rc->nlinks; i++) {
        int used = 0;
        for (size_t k = 0; k < rc->map.nshards && !used; k++)
            used = rc->shard[k] == rc->links[i].b;
        rc->links[i].retired = !used;
    }
}

/* Installs a new map (taken over): a link for each primary, the others
 * retired. */
static void apply_map(pc_rcluster_t *rc, pc_slotmap_t *nm)
{
    pc_backend_t **shard = calloc(nm->nshards ? nm->nshards : 1, sizeof *shard);
    if (shard == NULL) {
        pc_slotmap_free(nm);
        rc->refresh_wanted = 1;
        return;
    }
    for (size_t i = 0; i < nm->nshards; i++)
        shard[i] = get_link(rc, nm->shards[i].host, nm->shards[i].port);
    /* A reshard changes the map many times: said at info level only when
     * the primaries or the coverage change. */
    size_t covered = pc_slotmap_covered(nm);
    int news = rc->shard == NULL || nm->nshards != rc->map.nshards ||
               covered != pc_slotmap_covered(&rc->map);
    for (size_t i = 0; i < nm->nshards && !news; i++)
        news = pc_slotmap_find(&rc->map, nm->shards[i].host, nm->shards[i].port) < 0;
    pc_log_write(rc->log, news ? PC_LOG_INFO : PC_LOG_DEBUG,
                 "redis cluster: %zu primar%s, %zu of %u slots mapped", nm->nshards,
                 nm->nshards == 1 ? "y" : "ies", covered, (unsigned)PC_SLOTMAP_SLOTS);
    pc_slotmap_free(&rc->map);
    free(rc->shard);
    rc->map = *nm;
    rc->shard = shard;
    retire_unused(rc);
}

static void slots_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    pc_rcluster_t *rc = privdata;
    redisReply *reply = r;
    rc->refresh_inflight = 0;
    if (rc->closing)
        return;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        rc->refresh_wanted = 1;
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
            strncmp(rc->last_err, reply->str, sizeof rc->last_err - 1) != 0) {
            snprintf(rc->last_err, sizeof rc->last_err, "%s", reply->str);
            pc_log_warn(rc->log, "redis cluster: CLUSTER SLOTS refused: %s", reply->str);
        }
        return;
    }
    const pc_backend_t *l = ac->data;
    pc_slotmap_t nm;
    int err = pc_slotmap_from_slots(reply, pc_backend_link_host(l), &nm);
    if (err != 0) {
        rc->refresh_wanted = 1;
        if (strcmp(rc->last_err, "bad map") != 0) {
            snprintf(rc->last_err, sizeof rc->last_err, "bad map");
            pc_log_warn(rc->log, "redis cluster: %s:%d answered CLUSTER SLOTS with a map "
                        "that does not parse (%s)",
                        pc_backend_link_host(l), pc_backend_link_port(l), pc_strerror(err));
        }
        return;
    }
    rc->last_err[0] = '\0';
    rc->next_refresh = uv_now(rc->loop) + REFRESH_EVERY_MS;
    /* A map with holes (a failover under way) is used, and asked again. */
    rc->refresh_wanted = pc_slotmap_covered(&nm) < PC_SLOTMAP_SLOTS;
    if (!rc->refresh_wanted)
        rc->down_warned = 0;
    if (rc->shard != NULL && pc_slotmap_same(&rc->map, &nm)) {
        pc_slotmap_free(&nm);
        retire_unused(rc);
        return;
    }
    apply_map(rc, &nm);
}

/* Links to every seed that has none (when no link has been up for a
 * while: the map may name only servers that are gone). */
static void seed_links(pc_rcluster_t *rc)
{
    for (size_t i = 0; i < rc->seeds.nhosts; i++)
        if (find_link(rc, rc->seeds.hosts[i].host, rc->seeds.hosts[i].port) == NULL)
            (void)get_link(rc, rc->seeds.hosts[i].host, rc->seeds.hosts[i].port);
}

static void tick_cb(uv_timer_t *t)
{
    pc_rcluster_t *rc = t->data;
    uint64_t now = uv_now(rc->loop);
    for (size_t i = 0; i < rc->nlinks;) {
        if (rc->links[i].retired && pc_backend_link_idle(rc->links[i].b))
            close_link(rc, i); /* the last one moves to i */
        else
            i++;
    }
    pc_backend_t *up = NULL;
    for (size_t k = 0; k < rc->nlinks && up == NULL; k++) {
        size_t i = (rc->rr + k) % rc->nlinks;
        if (pc_backend_up(rc->links[i].b)) {
            up = rc->links[i].b;
            rc->rr = i + 1;
        }
    }
    /* An answer that does not come within --redis-timeout (a server that
     * hangs with nothing else in flight on that link to notice it by):
     * ask another. A late answer is still taken; the next refresh
     * corrects a map it made stale. */
    if (rc->refresh_inflight && now - rc->refresh_sent > rc->cfg.timeout_ms) {
        rc->refresh_inflight = 0;
        rc->refresh_wanted = 1;
    }
    if (up != NULL)
        rc->last_up = now;
    else if (now - rc->last_up >= SEEDS_AFTER_MS)
        seed_links(rc);
    if (up != NULL && !rc->refresh_inflight && now >= rc->refresh_not_before &&
        (rc->refresh_wanted || now >= rc->next_refresh || rc->shard == NULL)) {
        if (pc_backend_link_command(up, slots_cb, rc, "CLUSTER SLOTS") == 0) {
            rc->refresh_inflight = 1;
            rc->refresh_sent = now;
            rc->refresh_not_before = now + REFRESH_MIN_MS;
        }
    }
}

int pc_rcluster_new(uv_loop_t *loop, const pc_backend_config_t *cfg, const pc_log_t *log,
                    pc_rcluster_t **out)
{
    if (cfg->addr->mode != PC_BACKEND_CLUSTER || cfg->addr->nhosts == 0)
        return PC_EINVAL;
    pc_rcluster_t *rc = calloc(1, sizeof *rc);
    if (rc == NULL)
        return PC_ENOMEM;
    rc->prefix = strdup(cfg->prefix ? cfg->prefix : "");
    if (rc->prefix == NULL) {
        free(rc);
        return PC_ENOMEM;
    }
    rc->prefix_len = strlen(rc->prefix);
    pc_slotmap_init(&rc->map);
    rc->loop = loop;
    rc->log = log;
    rc->cfg = *cfg;
    rc->seeds = *cfg->addr;
    rc->cfg.addr = &rc->seeds;
    rc->last_up = uv_now(loop);
    seed_links(rc);
    uv_timer_init(loop, &rc->timer);
    rc->timer.data = rc;
    uv_timer_start(&rc->timer, tick_cb, TICK_MS, TICK_MS);
    *out = rc;
    return 0;
}

int pc_rcluster_is_redirect(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ERROR)
        return 0;
    return strncmp(reply->str, "MOVED ", 6) == 0 || strncmp(reply->str, "ASK ", 4) == 0 ||
           strncmp(reply->str, "TRYAGAIN", 8) == 0 || strncmp(reply->str, "CLUSTERDOWN", 11) == 0;
}

int pc_rcluster_redirect(pc_rcluster_t *rc, pc_backend_t *from, struct cmd *c,
                         const redisReply *reply)
{
    if (strncmp(reply->str, "TRYAGAIN", 8) == 0)
        return PC_ERETRY;
    if (strncmp(reply->str, "CLUSTERDOWN", 11) == 0) {
        if (!rc->down_warned)
            pc_log_warn(rc->log, "redis cluster: %s:%d answered %s", pc_backend_link_host(from),
                        pc_backend_link_port(from), reply->str);
        rc->down_warned = 1;
        rc->refresh_wanted = 1;
        return PC_EBACKEND;
    }
    int ask;
    unsigned slot;
    char host[256];
    int port;
    rc->refresh_wanted = 1;
    if (pc_slotmap_redirect(reply->str, reply->len, &ask, &slot, host, sizeof host, &port) != 0)
        return PC_ERETRY;
    if (!ask || pc_backend_cmd_redirected(c))
        return PC_ERETRY;
    if (strcmp(host, PC_SLOTMAP_HOST_UNKNOWN) == 0)
        return PC_ERETRY; /* a node without a usable address: the refresh decides */
    if (host[0] == '\0')
        snprintf(host, sizeof host, "%s", pc_backend_link_host(from));
    /* The map names the new owner already: commands sent since may have
     * gone there directly, and this one must not land after them. */
    unsigned sh = pc_slotmap_owner(&rc->map, slot);
    if (sh != PC_SLOTMAP_NONE && rc->map.shards[sh].port == port &&
        strcmp(rc->map.shards[sh].host, host) == 0)
        return PC_ERETRY;
    pc_backend_t *to = get_link(rc, host, port);
    if (to == NULL || pc_backend_link_ask(to, c) != 0)
        return PC_ERETRY; /* a new link is not up yet: the client's retry finds it */
    return 0;
}

void pc_rcluster_link_down(pc_rcluster_t *rc, pc_backend_t *l)
{
    (void)l;
    rc->refresh_wanted = 1;
}

int pc_rcluster_up(const pc_rcluster_t *rc)
{
    if (rc->shard == NULL || pc_slotmap_covered(&rc->map) < PC_SLOTMAP_SLOTS)
        return 0;
    for (size_t i = 0; i < rc->map.nshards; i++)
        if (rc->shard[i] == NULL || !pc_backend_up(rc->shard[i]))
            return 0;
    return 1;
}

void pc_rcluster_stats(const pc_rcluster_t *rc, pc_backend_stats_t *out)
{
    *out = rc->gone;
    for (size_t i = 0; i < rc->nlinks; i++) {
        pc_backend_stats_t st;
        pc_backend_stats(rc->links[i].b, &st);
        stats_add(out, &st);
    }
    out->up = pc_rcluster_up(rc);
}

void pc_rcluster_fail_pending(pc_rcluster_t *rc)
{
    for (size_t i = 0; i < rc->nlinks; i++)
        pc_backend_fail_pending(rc->links[i].b);
}

static void timer_closed(uv_handle_t *h)
{
    pc_rcluster_t *rc = h->data;
    rc->open--;
    maybe_closed(rc);
}

void pc_rcluster_close(pc_rcluster_t *rc, void (*closed)(void *arg), void *arg)
{
    rc->closing = 1;
    rc->closed = closed;
    rc->closed_arg = arg;
    rc->open++;
    uv_close((uv_handle_t *)&rc->timer, timer_closed);
    while (rc->nlinks > 0)
        close_link(rc, rc->nlinks - 1);
}
