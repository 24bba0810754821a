/*
 * pc_sentinel.c -- asking Redis Sentinel for the primary and hearing of
 * failovers (pc_sentinel.h), on hiredis' async API and the node's libuv
 * adapter for it (pc_hiredis_uv.h).
 *
 * Two kinds of connection, each to one sentinel at a time:
 *  - an ask: connect, SENTINEL get-master-addr-by-name, close; on any
 *    failure (refused, an error or nil answer, no answer by its deadline)
 *    the next sentinel, until each was tried once in this ask;
 *  - the subscription: SUBSCRIBE +switch-master, kept open; when it
 *    breaks, made again on the next sentinel after a pause.
 *
 * hiredis runs every callback of a context that goes away with a NULL
 * reply, sometimes after we have moved on to another context; each
 * callback therefore checks that its context is still the current one
 * and ignores it otherwise. Contexts are freed with redisAsyncFree only
 * from the timer callback or from outside any hiredis callback; inside
 * one, redisAsyncDisconnect (hiredis ends the context once the callback
 * returns).
 */
#include "pc_sentinel.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "pc_error.h"
#include "pc_hiredis_uv.h"

#define SUB_RETRY_MS 1000 /* after the subscription broke or could not be made */
#define TICK_MIN_MS 10

struct pc_sentinel {
    uv_loop_t *loop;
    const pc_log_t *log;
    pc_backend_addr_t addr;
    uint64_t timeout_ms;
    pc_sentinel_moved_cb moved;
    void *moved_arg;

    /* The ask in progress: qcb != NULL. */
    pc_sentinel_found_cb qcb;
    void *qarg;
    redisAsyncContext *qac; /* the sentinel being asked, or NULL */
    size_t qfrom;           /* the sentinel that answered last: asks start there */
    size_t qtried;          /* sentinels tried in this ask */
    size_t qcur;            /* index of the one being asked */
    int qnotfound;          /* one of them answered that it does not know MASTER */
    uint64_t qdeadline;

    /* The subscription. */
    redisAsyncContext *sac; /* NULL while none */
    size_t snext;           /* the sentinel to subscribe on next */
    int subscribed;         /* confirmed */
    int ever_subscribed;
    uint64_t sdeadline;     /* connecting: given up on then */
    uint64_t sretry_at;     /* none: made again then */

    uv_timer_t timer;
    int closing;
};

static void ask_next(pc_sentinel_t *s);
static void sub_start(pc_sentinel_t *s);

static const pc_backend_host_t *host_at(const pc_sentinel_t *s, size_t i)
{
    return &s->addr.hosts[i % s->addr.nhosts];
}

static void ask_finish(pc_sentinel_t *s, int err, const char *host, int port)
{
    pc_sentinel_found_cb cb = s->qcb;
    void *arg = s->qarg;
    s->qcb = NULL;
    s->qarg = NULL;
    if (cb != NULL)
        cb(arg, err, host, port);
}

/* Port in [1, 65535] from a reply string, or -1. */
static int parse_port(const char *p, size_t len)
{
    if (len == 0 || len > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

static void ask_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    pc_sentinel_t *s = privdata;
    redisReply *reply = r;
    if (ac != s->qac || reply == NULL)
        return; /* a context given up on, or going away (its end is dealt with) */
    const pc_backend_host_t *h = host_at(s, s->qcur);
    s->qac = NULL;
    redisAsyncDisconnect(ac);
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING && reply->element[0]->len > 0 &&
        reply->element[0]->len < sizeof h->host) {
        int port = parse_port(reply->element[1]->str, reply->element[1]->len);
        if (port > 0) {
            char host[sizeof h->host];
            memcpy(host, reply->element[0]->str, reply->element[0]->len);
            host[reply->element[0]->len] = '\0';
            s->qfrom = s->qcur % s->addr.nhosts;
            ask_finish(s, 0, host, port);
            return;
        }
    }
    if (reply->type == REDIS_REPLY_NIL) {
        s->qnotfound = 1;
        pc_log_debug(s->log, "sentinel %s:%d does not know a master named %s", h->host, h->port,
                     s->addr.master);
    } else {
        pc_log_debug(s->log, "sentinel %s:%d: unexpected answer to get-master-addr-by-name%s%.*s",
                     h->host, h->port, reply->type == REDIS_REPLY_ERROR ? ": " : "",
                     reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    }
    ask_next(s);
}

static void ask_on_connect(const redisAsyncContext *ac, int status)
{
    pc_sentinel_t *s = ac->data;
    if (status == REDIS_OK || ac != s->qac)
        return;
    /* hiredis frees a context whose connect failed, after this returns */
    const pc_backend_host_t *h = host_at(s, s->qcur);
    pc_log_debug(s->log, "sentinel %s:%d: connect failed: %s", h->host, h->port,
                 ac->errstr ? ac->errstr : "?");
    s->qac = NULL;
    ask_next(s);
}

static void ask_on_disconnect(const redisAsyncContext *ac, int status)
{
    pc_sentinel_t *s = ac->data;
    (void)status;
    if (ac != s->qac || s->closing)
        return;
    s->qac = NULL; /* closed before it answered */
    ask_next(s);
}

/* A context to h with the adapter on, or NULL (logged). */
static redisAsyncContext *connect_to(pc_sentinel_t *s, const pc_backend_host_t *h)
{
    redisAsyncContext *ac = redisAsyncConnect(h->host, h->port);
    if (ac == NULL)
        return NULL;
    if (ac->err) {
        pc_log_debug(s->log, "sentinel %s:%d: %s", h->host, h->port, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    if (pc_hiredis_uv_attach(ac, s->loop) != 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    return ac;
}

static void ask_next(pc_sentinel_t *s)
{
    while (s->qtried < s->addr.nhosts) {
        s->qcur = s->qfrom + s->qtried++;
        const pc_backend_host_t *h = host_at(s, s->qcur);
        redisAsyncContext *ac = connect_to(s, h);
        if (ac == NULL)
            continue;
        redisAsyncSetConnectCallback(ac, ask_on_connect);
        redisAsyncSetDisconnectCallback(ac, ask_on_disconnect);
        if (redisAsyncCommand(ac, ask_reply, s, "SENTINEL get-master-addr-by-name %s",
                              s->addr.master) != REDIS_OK) {
            redisAsyncFree(ac);
            continue;
        }
        s->qac = ac;
        s->qdeadline = uv_now(s->loop) + s->timeout_ms;
        return;
    }
    ask_finish(s, s->qnotfound ? PC_ENOTFOUND : PC_EBACKEND, NULL, 0);
}

int pc_sentinel_ask(pc_sentinel_t *s, pc_sentinel_found_cb cb, void *arg)
{
    if (s->qcb != NULL)
        return PC_EBUSY;
    s->qcb = cb;
    s->qarg = arg;
    s->qtried = 0;
    s->qnotfound = 0;
    ask_next(s);
    return 0;
}

/* "+switch-master" messages: "MASTER oldip oldport newip newport". */
static void switch_message(pc_sentinel_t *s, const char *msg, size_t len)
{
    char buf[512];
    if (len >= sizeof buf)
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    char *save = NULL;
    const char *f[5];
    int n = 0;
    for (char *t = strtok_r(buf, " ", &save); t != NULL && n < 5; t = strtok_r(NULL, " ", &save))
        f[n++] = t;
    if (n != 5 || strcmp(f[0], s->addr.master) != 0)
        return;
    int port = parse_port(f[4], strlen(f[4]));
    if (port < 0 || strlen(f[3]) >= sizeof s->addr.hosts[0].host)
        return;
    pc_log_info(s->log, "sentinel: %s failed over from %s:%s to %s:%d", s->addr.master, f[1],
                f[2], f[3], port);
    s->moved(s->moved_arg, f[3], port);
}

static void sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    pc_sentinel_t *s = privdata;
    redisReply *reply = r;
    if (ac != s->sac || reply == NULL || s->closing)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = reply->element[0];
    if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0) {
        int again = s->ever_subscribed;
        s->subscribed = 1;
        s->ever_subscribed = 1;
        const pc_backend_host_t *h = host_at(s, s->snext - 1);
        pc_log_debug(s->log, "sentinel %s:%d: subscribed to +switch-master", h->host, h->port);
        if (again)
            s->moved(s->moved_arg, NULL, 0);
    } else if (kind->len == 7 && memcmp(kind->str, "message", 7) == 0 &&
               reply->element[2]->type == REDIS_REPLY_STRING) {
        switch_message(s, reply->element[2]->str, reply->element[2]->len);
    }
}

static void sub_lost(pc_sentinel_t *s)
{
    s->sac = NULL;
    s->subscribed = 0;
    s->sretry_at = uv_now(s->loop) + SUB_RETRY_MS;
}

static void sub_on_connect(const redisAsyncContext *ac, int status)
{
    pc_sentinel_t *s = ac->data;
    if (status == REDIS_OK || ac != s->sac)
        return;
    const pc_backend_host_t *h = host_at(s, s->snext - 1);
    pc_log_debug(s->log, "sentinel %s:%d: cannot subscribe: %s", h->host, h->port,
                 ac->errstr ? ac->errstr : "?");
    sub_lost(s);
}

static void sub_on_disconnect(const redisAsyncContext *ac, int status)
{
    pc_sentinel_t *s = ac->data;
    (void)status;
    if (ac != s->sac || s->closing)
        return;
    const pc_backend_host_t *h = host_at(s, s->snext - 1);
    pc_log_info(s->log, "sentinel %s:%d: subscription lost; trying the next sentinel", h->host,
                h->port);
    sub_lost(s);
}

static void sub_start(pc_sentinel_t *s)
{
    s->sretry_at = 0;
    const pc_backend_host_t *h = host_at(s, s->snext++);
    redisAsyncContext *ac = connect_to(s, h);
    if (ac == NULL) {
        sub_lost(s);
        return;
    }
    redisAsyncSetConnectCallback(ac, sub_on_connect);
    redisAsyncSetDisconnectCallback(ac, sub_on_disconnect);
    if (redisAsyncCommand(ac, sub_reply, s, "SUBSCRIBE +switch-master") != REDIS_OK) {
        redisAsyncFree(ac);
        sub_lost(s);
        return;
    }
    s->sac = ac;
    s->sdeadline = uv_now(s->loop) + s->timeout_ms;
}

static void timer_cb(uv_timer_t *t)
{
    pc_sentinel_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    if (s->qac != NULL && now >= s->qdeadline) {
        redisAsyncContext *ac = s->qac;
        const pc_backend_host_t *h = host_at(s, s->qcur);
        pc_log_debug(s->log, "sentinel %s:%d: no answer within %llu ms", h->host, h->port,
                     (unsigned long long)s->timeout_ms);
        s->qac = NULL;
        redisAsyncFree(ac); /* its callbacks see it is no longer current */
        ask_next(s);
    }
    if (s->sac != NULL && !s->subscribed && now >= s->sdeadline) {
        redisAsyncContext *ac = s->sac;
        s->sac = NULL;
        redisAsyncFree(ac);
        sub_lost(s);
    }
    if (s->sac == NULL && s->sretry_at != 0 && now >= s->sretry_at)
        sub_start(s);
}

int pc_sentinel_new(uv_loop_t *loop, const pc_backend_addr_t *addr, uint64_t timeout_ms,
                    const pc_log_t *log, pc_sentinel_moved_cb moved, void *moved_arg,
                    pc_sentinel_t **out)
{
    if (addr == NULL || addr->mode != PC_BACKEND_SENTINEL || addr->nhosts == 0 ||
        timeout_ms == 0 || moved == NULL)
        return PC_EINVAL;
    pc_sentinel_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return PC_ENOMEM;
    s->loop = loop;
    s->log = log;
    s->addr = *addr;
    s->timeout_ms = timeout_ms;
    s->moved = moved;
    s->moved_arg = moved_arg;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uint64_t tick = timeout_ms / 10 < TICK_MIN_MS ? TICK_MIN_MS : timeout_ms / 10;
    uv_timer_start(&s->timer, timer_cb, tick, tick);
    sub_start(s);
    *out = s;
    return 0;
}

int pc_sentinel_subscribed(const pc_sentinel_t *s) { return s->subscribed; }

static void timer_closed(uv_handle_t *h) { free(h->data); }

void pc_sentinel_close(pc_sentinel_t *s)
{
    if (s == NULL)
        return;
    s->closing = 1;
    s->qcb = NULL;
    if (s->qac != NULL) {
        redisAsyncContext *ac = s->qac;
        s->qac = NULL;
        redisAsyncFree(ac);
    }
    if (s->sac != NULL) {
        redisAsyncContext *ac = s->sac;
        s->sac = NULL;
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&s->timer, timer_closed);
}
