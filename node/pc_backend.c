/*
 * pc_backend.c -- Redis behind the node, on hiredis' async API and its
 * libuv adapter.
 *
 * Every command we send gets a struct cmd, kept in a FIFO that mirrors
 * hiredis' own reply queue. The FIFO lets one repeating timer enforce the
 * per-command deadline by looking at the oldest command only: replies come
 * back in order, so if the oldest is late, the connection is stuck.
 *
 * All failure paths go through hiredis itself: we call redisAsyncFree()
 * (only ever from a timer callback, never from inside a hiredis callback),
 * hiredis runs every pending reply callback with a NULL reply, and
 * reply_cb() turns that into PC_EBACKEND for the caller. So each command's
 * callback runs exactly once whatever happens.
 */
#include "pc_backend.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "pc_proto.h" /* enum pc_cond */

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/*
 * Reads value and TTL in one round trip, atomically: a pipelined GET +
 * PTTL could see the key expire in between.
 */
static const char GET_SCRIPT[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v then return {v, redis.call('PTTL', KEYS[1])} end "
    "return false";

/* PERSIST alone cannot tell "no such key" from "had no TTL". */
static const char EXPIRE_SCRIPT[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "if ARGV[1] == '0' then redis.call('PERSIST', KEYS[1]) "
    "else redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
    "return 1";

enum cmd_kind { CMD_GET, CMD_SET, CMD_DEL, CMD_EXPIRE };

enum state { ST_DOWN, ST_CONNECTING, ST_UP, ST_CLOSING };

typedef struct cmd {
    struct cmd *next;
    struct pc_backend *b;
    enum cmd_kind kind;
    uint64_t deadline;
    union {
        pc_backend_get_cb get;
        pc_backend_done_cb done;
    } cb;
    void *arg;
} cmd_t;

struct pc_backend {
    uv_loop_t *loop;
    const pc_log_t *log;
    char *host;
    int port;
    char *prefix;
    size_t prefix_len;
    uint64_t timeout_ms;

    redisAsyncContext *ac; /* NULL unless CONNECTING or UP */
    enum state state;
    uint64_t connect_deadline;
    uint64_t backoff_ms;

    cmd_t *head, *tail; /* commands in flight, oldest first */

    uv_timer_t watchdog;  /* deadlines */
    uv_timer_t reconnect; /* backoff */
    int open_handles;
    void (*closed)(void *);
    void *closed_arg;

    pc_backend_stats_t stats;
};

static void start_connect(pc_backend_t *b);

static void reconnect_cb(uv_timer_t *t) { start_connect(t->data); }

static void schedule_reconnect(pc_backend_t *b)
{
    if (b->state == ST_CLOSING)
        return;
    b->state = ST_DOWN;
    b->ac = NULL;
    b->stats.up = 0;
    uv_timer_start(&b->reconnect, reconnect_cb, b->backoff_ms, 0);
    b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    pc_backend_t *b = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context itself after a failed connect. */
        pc_log_debug(b->log, "redis %s:%d: connect failed: %s", b->host, b->port,
                     ac->errstr ? ac->errstr : "?");
        schedule_reconnect(b);
        return;
    }
    if (b->stats.connects == 0 || b->backoff_ms > BACKOFF_MIN_MS)
        pc_log_info(b->log, "redis %s:%d: connected", b->host, b->port);
    b->state = ST_UP;
    b->stats.up = 1;
    b->stats.connects++;
    b->backoff_ms = BACKOFF_MIN_MS;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    pc_backend_t *b = ac->data;
    if (b->state == ST_CLOSING) {
        b->ac = NULL;
        return;
    }
    pc_log_warn(b->log, "redis %s:%d: connection lost%s%s", b->host, b->port,
                ac->errstr ? ": " : "", ac->errstr ? ac->errstr : "");
    schedule_reconnect(b);
}

static void start_connect(pc_backend_t *b)
{
    if (b->state == ST_CLOSING)
        return;
    redisAsyncContext *ac = redisAsyncConnect(b->host, b->port);
    if (ac == NULL) {
        schedule_reconnect(b);
        return;
    }
    if (ac->err) {
        pc_log_debug(b->log, "redis %s:%d: %s", b->host, b->port, ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(b);
        return;
    }
    ac->data = b;
    if (redisLibuvAttach(ac, b->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(b);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    b->ac = ac;
    b->state = ST_CONNECTING;
    b->connect_deadline = uv_now(b->loop) + b->timeout_ms;
}

/* Drops the connection from a timer callback; hiredis fails every pending
 * command through reply_cb with a NULL reply. */
static void drop_connection(pc_backend_t *b)
{
    redisAsyncContext *ac = b->ac;
    int was_up = b->state == ST_UP;
    b->ac = NULL;
    if (ac != NULL)
        redisAsyncFree(ac);
    /* A connected context reports through on_disconnect (which schedules
     * the reconnect); a half-open one does not. */
    if (!was_up)
        schedule_reconnect(b);
}

static void watchdog_cb(uv_timer_t *t)
{
    pc_backend_t *b = t->data;
    uint64_t now = uv_now(b->loop);
    if (b->state == ST_CONNECTING && now >= b->connect_deadline) {
        pc_log_debug(b->log, "redis %s:%d: connect timed out", b->host, b->port);
        drop_connection(b);
    } else if (b->state == ST_UP && b->head != NULL && now >= b->head->deadline) {
        /* A busy loop may simply not have read replies that Redis sent in
         * time; read what is there before blaming Redis. */
        uv_update_time(b->loop);
        redisAsyncHandleRead(b->ac);
        if (b->state != ST_UP || b->head == NULL || now < b->head->deadline)
            return;
        pc_log_warn(b->log, "redis %s:%d: no reply within %llu ms; dropping the connection",
                    b->host, b->port, (unsigned long long)b->timeout_ms);
        b->stats.timeouts++;
        drop_connection(b);
        /* on_disconnect reported "connection lost"; the reason was ours. */
    }
}

static cmd_t *cmd_pop(pc_backend_t *b, cmd_t *c)
{
    /* Replies arrive in order, so c is the head; be defensive anyway. */
    if (b->head == c) {
        b->head = c->next;
        if (b->head == NULL)
            b->tail = NULL;
        return c;
    }
    for (cmd_t *p = b->head; p != NULL; p = p->next)
        if (p->next == c) {
            p->next = c->next;
            if (b->tail == c)
                b->tail = p;
            return c;
        }
    return c;
}

static void fail_cmd(cmd_t *c)
{
    if (c->kind == CMD_GET)
        c->cb.get(c->arg, PC_EBACKEND, 0, NULL, 0, -1);
    else
        c->cb.done(c->arg, PC_EBACKEND, 0);
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    cmd_t *c = privdata;
    pc_backend_t *b = c->b;
    redisReply *reply = r;
    cmd_pop(b, c);

    if (reply == NULL) {
        b->stats.errors++;
        fail_cmd(c);
        free(c);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        pc_log_warn(b->log, "redis: command refused: %.*s", (int)reply->len, reply->str);
        b->stats.errors++;
        fail_cmd(c);
        free(c);
        return;
    }

    switch (c->kind) {
    case CMD_GET:
        if (reply->type == REDIS_REPLY_NIL) {
            c->cb.get(c->arg, 0, 0, NULL, 0, -1);
        } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
                   reply->element[0]->type == REDIS_REPLY_STRING &&
                   reply->element[1]->type == REDIS_REPLY_INTEGER) {
            long long pttl = reply->element[1]->integer;
            c->cb.get(c->arg, 0, 1, (const uint8_t *)reply->element[0]->str,
                      reply->element[0]->len, pttl < 0 ? -1 : (int64_t)pttl);
        } else {
            b->stats.errors++;
            fail_cmd(c);
        }
        break;
    case CMD_SET:
        /* "OK" when stored, nil when NX/XX said no. */
        c->cb.done(c->arg, 0, reply->type == REDIS_REPLY_STATUS);
        break;
    case CMD_DEL:
    case CMD_EXPIRE:
        c->cb.done(c->arg, 0, reply->type == REDIS_REPLY_INTEGER && reply->integer > 0);
        break;
    }
    free(c);
}

/*
 * Queues one command. argv[1] is the bare key: the prefix is added here.
 * Fails at once (PC_EBACKEND) unless connected.
 */
static int send_cmd(pc_backend_t *b, cmd_t *c, int argc, const char **argv, size_t *argvlen,
                    int key_index)
{
    if (b->state != ST_UP || b->ac == NULL) {
        b->stats.rejected++;
        free(c);
        return PC_EBACKEND;
    }
    char stackkey[512];
    char *key = stackkey;
    size_t klen = b->prefix_len + argvlen[key_index];
    if (b->prefix_len > 0) {
        if (klen > sizeof stackkey && (key = malloc(klen)) == NULL) {
            free(c);
            return PC_ENOMEM;
        }
        memcpy(key, b->prefix, b->prefix_len);
        memcpy(key + b->prefix_len, argv[key_index], argvlen[key_index]);
        argv[key_index] = key;
        argvlen[key_index] = klen;
    }
    c->b = b;
    c->next = NULL;
    c->deadline = uv_now(b->loop) + b->timeout_ms;
    int rc = redisAsyncCommandArgv(b->ac, reply_cb, c, argc, argv, argvlen);
    if (key != stackkey)
        free(key);
    if (rc != REDIS_OK) {
        b->stats.rejected++;
        free(c);
        return PC_EBACKEND;
    }
    if (b->tail)
        b->tail->next = c;
    else
        b->head = c;
    b->tail = c;
    b->stats.commands++;
    return 0;
}

static cmd_t *cmd_new(enum cmd_kind kind, void *arg)
{
    cmd_t *c = calloc(1, sizeof *c);
    if (c) {
        c->kind = kind;
        c->arg = arg;
    }
    return c;
}

int pc_backend_get(pc_backend_t *b, const void *key, size_t klen, pc_backend_get_cb cb,
                   void *arg)
{
    cmd_t *c = cmd_new(CMD_GET, arg);
    if (c == NULL)
        return PC_ENOMEM;
    c->cb.get = cb;
    const char *argv[] = {"EVAL", GET_SCRIPT, "1", key};
    size_t argvlen[] = {4, sizeof GET_SCRIPT - 1, 1, klen};
    return send_cmd(b, c, 4, argv, argvlen, 3);
}

int pc_backend_set(pc_backend_t *b, const void *key, size_t klen, const void *val, size_t vlen,
                   uint64_t ttl_ms, int cond, pc_backend_done_cb cb, void *arg)
{
    cmd_t *c = cmd_new(CMD_SET, arg);
    if (c == NULL)
        return PC_ENOMEM;
    c->cb.done = cb;
    const char *argv[6] = {"SET", key, val};
    size_t argvlen[6] = {3, klen, vlen};
    int argc = 3;
    char ttlbuf[24];
    if (ttl_ms > 0) {
        argv[argc] = "PX";
        argvlen[argc++] = 2;
        int n = snprintf(ttlbuf, sizeof ttlbuf, "%llu", (unsigned long long)ttl_ms);
        argv[argc] = ttlbuf;
        argvlen[argc++] = (size_t)n;
    }
    if (cond == PC_COND_NX || cond == PC_COND_XX) {
        argv[argc] = cond == PC_COND_NX ? "NX" : "XX";
        argvlen[argc++] = 2;
    }
    return send_cmd(b, c, argc, argv, argvlen, 1);
}

int pc_backend_del(pc_backend_t *b, const void *key, size_t klen, pc_backend_done_cb cb,
                   void *arg)
{
    cmd_t *c = cmd_new(CMD_DEL, arg);
    if (c == NULL)
        return PC_ENOMEM;
    c->cb.done = cb;
    const char *argv[] = {"DEL", key};
    size_t argvlen[] = {3, klen};
    return send_cmd(b, c, 2, argv, argvlen, 1);
}

int pc_backend_expire(pc_backend_t *b, const void *key, size_t klen, uint64_t ttl_ms,
                      pc_backend_done_cb cb, void *arg)
{
    cmd_t *c = cmd_new(CMD_EXPIRE, arg);
    if (c == NULL)
        return PC_ENOMEM;
    c->cb.done = cb;
    char ttlbuf[24];
    int n = snprintf(ttlbuf, sizeof ttlbuf, "%llu", (unsigned long long)ttl_ms);
    const char *argv[] = {"EVAL", EXPIRE_SCRIPT, "1", key, ttlbuf};
    size_t argvlen[] = {4, sizeof EXPIRE_SCRIPT - 1, 1, klen, (size_t)n};
    return send_cmd(b, c, 5, argv, argvlen, 3);
}

int pc_backend_new(uv_loop_t *loop, const pc_backend_config_t *cfg, const pc_log_t *log,
                   pc_backend_t **out)
{
    if (cfg == NULL || cfg->host == NULL || cfg->port <= 0 || cfg->timeout_ms == 0)
        return PC_EINVAL;
    pc_backend_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return PC_ENOMEM;
    b->host = strdup(cfg->host);
    b->prefix = strdup(cfg->prefix ? cfg->prefix : "");
    if (b->host == NULL || b->prefix == NULL) {
        free(b->host);
        free(b->prefix);
        free(b);
        return PC_ENOMEM;
    }
    b->loop = loop;
    b->log = log;
    b->port = cfg->port;
    b->prefix_len = strlen(b->prefix);
    b->timeout_ms = cfg->timeout_ms;
    b->backoff_ms = BACKOFF_MIN_MS;
    b->state = ST_DOWN;

    uv_timer_init(loop, &b->watchdog);
    uv_timer_init(loop, &b->reconnect);
    b->watchdog.data = b;
    b->reconnect.data = b;
    b->open_handles = 2;
    uint64_t tick = b->timeout_ms / 10;
    uv_timer_start(&b->watchdog, watchdog_cb, tick < 10 ? 10 : tick, tick < 10 ? 10 : tick);
    start_connect(b);
    *out = b;
    return 0;
}

int pc_backend_up(const pc_backend_t *b) { return b->state == ST_UP; }

void pc_backend_fail_pending(pc_backend_t *b)
{
    if (b->state != ST_UP || b->head == NULL)
        return;
    pc_log_warn(b->log, "redis %s:%d: giving up on the commands in flight", b->host, b->port);
    drop_connection(b);
}

void pc_backend_stats(const pc_backend_t *b, pc_backend_stats_t *out)
{
    *out = b->stats;
    out->up = b->state == ST_UP;
}

static void handle_closed(uv_handle_t *h)
{
    pc_backend_t *b = h->data;
    if (--b->open_handles > 0)
        return;
    void (*closed)(void *) = b->closed;
    void *arg = b->closed_arg;
    free(b->host);
    free(b->prefix);
    free(b);
    if (closed)
        closed(arg);
}

void pc_backend_close(pc_backend_t *b, void (*closed)(void *arg), void *arg)
{
    b->closed = closed;
    b->closed_arg = arg;
    b->state = ST_CLOSING;
    redisAsyncContext *ac = b->ac;
    b->ac = NULL;
    /* Fails pending commands through reply_cb; the adapter closes its poll
     * handle on its own (and frees it in its own close callback). */
    if (ac != NULL)
        redisAsyncFree(ac);
    uv_close((uv_handle_t *)&b->watchdog, handle_closed);
    uv_close((uv_handle_t *)&b->reconnect, handle_closed);
}
