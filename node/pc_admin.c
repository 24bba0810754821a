/*
 * pc_admin.c -- /metrics, /healthz and /readyz over pc_http (pc_admin.h).
 */
#include "pc_admin.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_buf.h"
#include "pc_cluster.h"
#include "pc_error.h"
#include "pc_http.h"
#include "pc_json.h"
#include "pc_keys.h"
#include "pc_log.h"
#include "pc_ring.h"
#include "pc_sock.h"
#include "pc_stats.h"
#include "pc_view.h"

/* Scrapers and probes: a handful at once is plenty, and each must be
 * done within 5 s (a Prometheus scrape times out after 10 s by default). */
#define ADMIN_MAX_CONNS 16
#define ADMIN_TIMEOUT_MS 5000

static const char TEXT[] = "text/plain; charset=utf-8";
static const char PROM[] = "text/plain; version=0.0.4; charset=utf-8";

struct pc_admin {
    pc_loop_t *core;
    pc_http_t *http;
    char *node;
    char *listen;
    void (*done)(void *arg);
    void *done_arg;
};

/* A request waiting for the loops' counters. */
typedef struct pending {
    pc_admin_t *a;
    pc_http_req_t *req;
    int ready; /* /readyz, else /metrics */
} pending_t;

static uint64_t ring_fp(const pc_loop_t *core)
{
    return core->cluster != NULL ? pc_cluster_fingerprint(core->cluster) : 0;
}

static void metrics_answer(const pending_t *p, const pc_stats_t *st)
{
    pc_buf_t b;
    pc_buf_init(&b, 0);
    if (pc_stats_prometheus(st, p->a->node, ring_fp(p->a->core), &b) == 0)
        pc_http_reply(p->req, 200, PROM, (const char *)b.data, b.len);
    else
        pc_http_reply(p->req, 500, TEXT, "out of memory\n", 14);
    pc_buf_free(&b);
}

/* Why the node is not ready, a line per reason; empty when it is. */
static void ready_answer(const pending_t *p, const pc_stats_t *st)
{
    const pc_loop_t *core = p->a->core;
    char why[512] = "";
    size_t n = 0;
#define WHY(s)                                                                                     \
    do {                                                                                           \
        int w_ = snprintf(why + n, sizeof why - n, "%s\n", s);                                     \
        if (w_ > 0 && (size_t)w_ < sizeof why - n)                                                 \
            n += (size_t)w_;                                                                       \
    } while (0)
    if (pc_stats_get(st, "backend_enabled") == 1 && pc_stats_get(st, "backend_up") != 1)
        WHY("redis: not connected");
    /* Settled: joined, and every loop routes by the current ring. Not
     * the --ring-settle window after a change: that would take every
     * node out of its load balancer at once whenever a member joins. */
    if (!pc_view_settled(core))
        WHY("ring: this node has not joined it, or its loops do not all hold the current one yet");
    if (pc_keys_cut_off(core))
        WHY("cluster: cut off (no partition lease: it hears from no majority)");
#undef WHY
    if (n == 0)
        pc_http_reply(p->req, 200, TEXT, "ready\n", 6);
    else
        pc_http_reply(p->req, 503, TEXT, why, n);
}

static void gathered(void *arg, const pc_stats_t *st)
{
    pending_t *p = arg;
    if (st == NULL)
        pc_http_reply(p->req, 500, TEXT, "out of memory\n", 14);
    else if (p->ready)
        ready_answer(p, st);
    else
        metrics_answer(p, st);
    free(p);
}

static const char *state_name(uint32_t state)
{
    switch (state) {
    case PC_WIRE_ALIVE: return "alive";
    case PC_WIRE_SUSPECT: return "suspect";
    case PC_WIRE_DEAD: return "dead";
    case PC_WIRE_LEFT: return "left";
    default: return "unknown";
    }
}

/* A member's name or address as the CLI shows it: control characters
 * are '?' (and bytes that are not UTF-8, in pc_json_text). */
static int json_member_text(pc_buf_t *b, pc_bytes_t s)
{
    char *t = malloc((size_t)s.len + 1);
    if (t == NULL)
        return PC_ENOMEM;
    for (uint32_t i = 0; i < s.len; i++)
        t[i] = s.ptr[i] < 0x20 || s.ptr[i] == 0x7f ? '?' : (char)s.ptr[i];
    t[s.len] = '\0';
    int rc = pc_json_text(b, t);
    free(t);
    return rc;
}

static int cmp_name(const void *x, const void *y)
{
    const pc_cluster_member_t *a = *(const pc_cluster_member_t *const *)x;
    const pc_cluster_member_t *b = *(const pc_cluster_member_t *const *)y;
    int c = memcmp(a->name.ptr, b->name.ptr, a->name.len < b->name.len ? a->name.len : b->name.len);
    return c != 0 ? c : (a->name.len > b->name.len) - (a->name.len < b->name.len);
}

/* /cluster: what `peercache-cli cluster --json` prints, from this node. */
static void cluster_answer(pc_admin_t *a, pc_http_req_t *req)
{
    pc_cluster_t *cl = a->core->cluster;
    if (cl == NULL) {
        static const char msg[] = "this node is not in a cluster\n";
        pc_http_reply(req, 404, TEXT, msg, sizeof msg - 1);
        return;
    }
    const pc_cluster_member_t *ms;
    size_t n = pc_cluster_members(cl, &ms);
    const pc_ring_t *ring = pc_cluster_ring(cl);
    const pc_cluster_member_t **sorted = malloc((n + 1) * sizeof *sorted);
    pc_buf_t b;
    char line[256];
    pc_buf_init(&b, 0);
    int rc = sorted != NULL ? 0 : PC_ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++)
        sorted[i] = &ms[i];
    if (rc == 0)
        qsort(sorted, n, sizeof *sorted, cmp_name);
    int len = snprintf(line, sizeof line, "{\"fingerprint\":\"%016" PRIx64 "\",\"replicas\":%u,"
                       "\"from\":", pc_cluster_fingerprint(cl), pc_cluster_replicas(cl));
    if (rc == 0)
        rc = pc_buf_append(&b, line, (size_t)len);
    if (rc == 0)
        rc = pc_json_text(&b, a->listen);
    if (rc == 0)
        rc = pc_buf_append(&b, ",\"members\":[", 12);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const pc_cluster_member_t *m = sorted[i];
        char name[PC_RING_MAX_NAME + 1];
        uint32_t owned = 0;
        int in_ring = m->state == PC_WIRE_ALIVE || m->state == PC_WIRE_SUSPECT;
        if (in_ring && ring != NULL && m->name.len <= PC_RING_MAX_NAME) {
            memcpy(name, m->name.ptr, m->name.len);
            name[m->name.len] = '\0';
            long idx = pc_ring_find(ring, name);
            if (idx >= 0)
                owned = pc_ring_owned_slots(ring, (size_t)idx);
        }
        rc = pc_buf_append(&b, i > 0 ? ",{\"name\":" : "{\"name\":", i > 0 ? 9 : 8);
        if (rc == 0)
            rc = json_member_text(&b, m->name);
        if (rc == 0)
            rc = pc_buf_append(&b, ",\"addr\":", 8);
        if (rc == 0)
            rc = json_member_text(&b, m->addr);
        len = snprintf(line, sizeof line,
                       ",\"state\":\"%s\",\"incarnation\":%" PRIu64 ",\"weight\":%" PRIu32
                       ",\"owned_slots\":%" PRIu32 ",\"share\":%.6f}",
                       state_name(m->state), m->incarnation, m->weight, owned,
                       (double)owned / (double)PC_RING_SLOTS);
        if (rc == 0)
            rc = pc_buf_append(&b, line, (size_t)len);
    }
    if (rc == 0)
        rc = pc_buf_append(&b, "]}\n", 3);
    if (rc == 0)
        pc_http_reply(req, 200, "application/json", (const char *)b.data, b.len);
    else
        pc_http_reply(req, 500, TEXT, "out of memory\n", 14);
    pc_buf_free(&b);
    free(sorted);
}

static void on_request(void *arg, pc_http_req_t *req, const char *path)
{
    pc_admin_t *a = arg;
    int ready = strcmp(path, "/readyz") == 0;
    if (strcmp(path, "/healthz") == 0) {
        pc_http_reply(req, 200, TEXT, "ok\n", 3);
        return;
    }
    if (strcmp(path, "/cluster") == 0) {
        cluster_answer(a, req);
        return;
    }
    if (!ready && strcmp(path, "/metrics") != 0) {
        static const char msg[] =
            "not found: /metrics, /healthz, /readyz and /cluster are served here\n";
        pc_http_reply(req, 404, TEXT, msg, sizeof msg - 1);
        return;
    }
    pending_t *p = malloc(sizeof *p);
    if (p != NULL) {
        *p = (pending_t){a, req, ready};
        if (pc_stats_gather(a->core, gathered, p) == 0)
            return;
        free(p);
    }
    pc_http_reply(req, 500, TEXT, "out of memory\n", 14);
}

int pc_admin_start(pc_loop_t *core, const char *addr, const char *node, const char *listen,
                   pc_admin_t **out)
{
    char why[320];
    struct addrinfo *ai = NULL;
    *out = NULL;
    int rc = pc_sock_listen_addr(addr, &ai, why, sizeof why);
    if (rc != 0) {
        pc_log_error(core->log, "http: %s", why);
        return rc;
    }
    pc_admin_t *a = calloc(1, sizeof *a);
    if (a == NULL || (a->node = strdup(node)) == NULL || (a->listen = strdup(listen)) == NULL) {
        if (a != NULL)
            free(a->node);
        free(a);
        freeaddrinfo(ai);
        return PC_ENOMEM;
    }
    a->core = core;
    rc = pc_http_new(core->uv, ai->ai_addr, ADMIN_MAX_CONNS, ADMIN_TIMEOUT_MS, on_request, a,
                         &a->http);
    freeaddrinfo(ai);
    if (rc != 0) {
        pc_log_error(core->log, "http %s: %s", addr, uv_strerror(rc));
        free(a->node);
        free(a->listen);
        free(a);
        return PC_EIO;
    }
    *out = a;
    return 0;
}

int pc_admin_port(const pc_admin_t *a)
{
    return pc_http_port(a->http);
}

static void http_closed(void *arg)
{
    pc_admin_t *a = arg;
    void (*done)(void *) = a->done;
    void *done_arg = a->done_arg;
    free(a->node);
    free(a->listen);
    free(a);
    if (done != NULL)
        done(done_arg);
}

void pc_admin_close(pc_admin_t *a, void (*done)(void *arg), void *arg)
{
    a->done = done;
    a->done_arg = arg;
    pc_http_close(a->http, http_closed, a);
}
