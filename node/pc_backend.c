/*
 * pc_backend.c -- Redis behind the node, on hiredis' async API and the
 * node's own libuv adapter for it (pc_hiredis_uv.h).
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
 *
 * Every command is a script, run by EVALSHA, because each touches two
 * keys at once: the value R and its companion record (pc_rkey.h, and
 * docs/OPERATIONS.md "What a node keeps in Redis"). Both are passed as
 * KEYS[], as Redis Cluster requires; pc_rkey puts them in one slot. The
 * scripts, the commands that call them and their answers are pc_rscript's.
 *
 * Every connection loads the scripts first (SCRIPT LOAD, pipelined, right
 * after connecting), so a Redis that restarted empty gets them again
 * before any EVALSHA can miss them, and it is reported up once they are
 * loaded. Commands are taken from the moment the connection is made,
 * though, as they always were: one that comes while a script's load is
 * still unanswered is sent as EVAL with the script's text, behind the
 * loads on the same connection, so a fresh node does not fail fast for
 * one more round trip than it needs to -- except after a connection was
 * dropped because Redis did not answer in time (`unanswered`): a stopped
 * Redis still accepts connections (its kernel does the handshake), so
 * until one has loaded the scripts, calls fail at once rather than wait
 * out another timeout each. A NOSCRIPT reply means someone flushed the
 * script cache under us: that command fails like any refused one, and
 * the connection is closed gracefully (replies already on their way are
 * still delivered, new commands fail fast) so that the reconnect loads
 * the scripts again. A command is never sent a second time: that could
 * reorder it behind later commands on the same key, and the server relies
 * on the order (an -ASK in a Redis Cluster is the one exception, and
 * pc_rcluster.c says why it keeps the order).
 *
 * Before the loads a connection sends AUTH, SELECT and (Sentinel mode)
 * ROLE; in Sentinel mode pc_sentinel says where to connect. With
 * --redis-wait, a WAIT follows each loop turn's writes (before_write),
 * and a write's callback waits in `await` for it. In cluster mode one
 * backend is a shell around pc_rcluster, and each of its links is a
 * backend like any other (pc_backend_int.h).
 */
#include "pc_backend.h"
#include "pc_backend_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "pc_hiredis_uv.h"
#include "pc_resp.h"
#include "pc_rkey.h"
#include "pc_rscript.h"
#include "pc_sentinel.h"
#include "pc_sock.h"
#include "pc_vclock.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 250 /* Redis back within a quarter second of its return (issue 15) */

/* Write fencing (docs/CONSISTENCY.md "Failed writes stay failed"). */
#define CLOCK_EVERY_MS 10000        /* Redis' clock is read again this often */
#define FENCE_SLACK_US 2000         /* under every fence, for what the clocks drift between reads */
#define FENCE_UNMEASURED_US 250000  /* the offset's uncertainty before Redis' clock was ever read */
#define CLOCK_WARN_US 100000        /* an offset this large is logged as a warning */

enum cmd_kind { CMD_GET, CMD_SET, CMD_DEL, CMD_EXPIRE, CMD_WAIT };

/*
 * DOWN -> [RESOLVING (Sentinel mode: asking the sentinels) ->] CONNECTING
 * -> LOADING (AUTH, SELECT, ROLE, the scripts) -> UP; DRAINING is a
 * graceful close after NOSCRIPT, a refusal or a failed load. Commands are
 * taken in UP, and in LOADING outside Sentinel mode. CONNECTING, LOADING
 * and DRAINING end by phase_deadline at the latest (which also bounds the
 * commands sent while LOADING: they were sent after it started);
 * RESOLVING by the sentinels' own deadlines.
 */
enum state { ST_DOWN, ST_RESOLVING, ST_CONNECTING, ST_LOADING, ST_UP, ST_DRAINING, ST_CLOSING };

typedef struct cmd {
    struct cmd *next;
    struct pc_backend *b;
    enum cmd_kind kind;
    uint64_t deadline; /* loop clock, ms: given up on then */
    uint64_t until_ms; /* a write: wall-clock ms it may be applied until; 0 = deadline only */
    uint64_t sent_ns;  /* uv_hrtime() when it was queued for Redis */
    int applied;       /* a write waiting for its WAIT: what Redis answered */
    /* A cluster link's command: as sent, but for a write's fence (the
     * last argument), to send it again on the node an -ASK names. */
    uint8_t *wire;
    size_t wire_len;
    int redirected;    /* sent after an -ASK: never redirected again */
    union {
        pc_backend_get_cb get;
        pc_backend_done_cb done;
    } cb;
    void *arg;
} cmd_t;

struct pc_backend {
    uv_loop_t *loop;
    const pc_log_t *log;
    pc_rcluster_t *rc;     /* cluster mode: this backend only routes (pc_backend_int.h) */
    pc_rcluster_t *router; /* a cluster link: the router it reports to */
    pc_backend_addr_t addr;
    /* Where the connection goes: the TCP address (in Sentinel mode the
     * primary the sentinels named last) or the Unix socket; and as
     * logged. */
    char host[sizeof ((pc_backend_host_t *)0)->host];
    int port;
    char name[sizeof ((pc_backend_host_t *)0)->host + sizeof ((pc_backend_addr_t *)0)->master + 16];
    pc_cred_t *cred;
    pc_sentinel_t *sentinel; /* Sentinel mode */
    int need_resolve;        /* ask the sentinels before the next connect */
    int reconnect_now;       /* the next reconnect without backoff (a failover) */
    /* The last refusal logged (AUTH, SELECT, ROLE, NOAUTH...): a repeat is
     * logged at debug level until a connection is up again. */
    char last_refusal[128];
    unsigned wait_replicas;
    uint64_t wait_timeout_ms;
    int writes_unwaited;     /* writes sent since the last WAIT */
    int wait_warned;         /* a short WAIT was logged; again after one that was not */
    /* Writes Redis applied whose WAIT has not answered yet, oldest first. */
    cmd_t *await_head, *await_tail;
    pc_buf_t auth;           /* this connection's AUTH, formatted */
    char *prefix;
    size_t prefix_len;
    uint64_t timeout_ms;
    uint64_t tcp_rto_min_ms; /* 0 = the kernel's */

    redisAsyncContext *ac; /* NULL unless CONNECTING, LOADING, UP or DRAINING */
    enum state state;
    uint64_t phase_deadline;
    uint64_t backoff_ms;
    /* From this connection's SCRIPT LOADs; "" = not yet. */
    char sha[PC_RSCRIPT_COUNT][PC_RSCRIPT_SHA_HEX + 1];
    int loads_pending;
    /* The last connection was dropped because Redis did not answer in
     * time: until a new one has loaded the scripts (Redis answered),
     * calls fail at once instead of waiting on a Redis that may still be
     * stopped -- whose kernel completes the TCP handshake all the same. */
    int unanswered;

    cmd_t *head, *tail; /* commands in flight, oldest first */
    /* Writes whose connection was dropped before their deadline: Redis
     * may still apply them until then, so their callbacks wait for it
     * (the watchdog runs them), oldest first. */
    cmd_t *held_head, *held_tail;

    /* Redis' clock against ours, for the fence: offset_us = Redis' time
     * minus ours, known to within unc_us; kept across reconnects. */
    int64_t offset_us;
    int64_t unc_us;
    int have_offset;
    int clock_pending;     /* a TIME in flight */
    int64_t clock_sent_us; /* our wall clock when it was sent */
    uint64_t clock_at;     /* loop clock when it was sent */

    uv_timer_t watchdog;  /* deadlines */
    uv_timer_t reconnect; /* backoff */
    int open_handles;
    void (*closed)(void *);
    void *closed_arg;

    /* Each command is formatted here (RESP, by pc_resp) and handed to
     * hiredis whole: its own formatting (redisFormatSdsCommandArgv) cost
     * an sds, sdscatfmt and strlen per argument. */
    pc_buf_t fmt;
    /* Spent commands kept for the next ones (cmd_new, cmd_free): at
     * pipeline depth hundreds are in flight at once, more than glibc's
     * per-thread cache holds, and a calloc each was 4.5% of a write's CPU. */
    cmd_t *pool;
    unsigned npool;

    pc_backend_stats_t stats;
};

#define CMD_POOL_MAX 1024u

/* Under AddressSanitizer commands are not kept, so that a use after the
 * end of one is still caught. */
static void cmd_free(pc_backend_t *b, cmd_t *c)
{
    free(c->wire);
    c->wire = NULL;
#if !defined(__SANITIZE_ADDRESS__)
    if (b->npool < CMD_POOL_MAX) {
        c->next = b->pool;
        b->pool = c;
        b->npool++;
        return;
    }
#else
    (void)b;
#endif
    free(c);
}

/* c, just handed to hiredis, joins the commands in flight (in the order
 * Redis will answer them); a write also waits for the turn's WAIT. */
static void cmd_sent(pc_backend_t *b, cmd_t *c)
{
    c->b = b;
    c->next = NULL;
    if (b->tail)
        b->tail->next = c;
    else
        b->head = c;
    b->tail = c;
    b->stats.commands++;
    if (c->kind != CMD_GET && c->kind != CMD_WAIT && b->wait_replicas > 0)
        b->writes_unwaited++;
}

static void start_connect(pc_backend_t *b);
static cmd_t *cmd_new(pc_backend_t *b, enum cmd_kind kind, void *arg);

/*
 * The fence of a command whose loop-clock deadline is deadline_ms: the
 * wall time at which the loop's clock reaches it (uv_now() is a cached,
 * coarse reading of the monotonic clock, so the node gives up no earlier
 * than that), moved onto Redis' clock and made earlier by everything the
 * offset may be wrong by. In ms.
 */
static int64_t fence_ms(const pc_backend_t *b, uint64_t deadline_ms, uint64_t until_ms)
{
    int64_t give_up_us =
        pc_vclock_wall_at_us((int64_t)deadline_ms * 1000, (int64_t)(uv_hrtime() / 1000));
    if (until_ms != 0 && (int64_t)until_ms * 1000 < give_up_us)
        give_up_us = (int64_t)until_ms * 1000;
    int64_t off = b->have_offset ? b->offset_us : 0;
    int64_t unc = b->have_offset ? b->unc_us : FENCE_UNMEASURED_US;
    return (give_up_us + off - unc - FENCE_SLACK_US) / 1000;
}

static void clock_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    pc_backend_t *b = privdata;
    redisReply *reply = r;
    b->clock_pending = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    int64_t back = pc_vclock_wall_us();
    int64_t redis_us = strtoll(reply->element[0]->str, NULL, 10) * 1000000 +
                       strtoll(reply->element[1]->str, NULL, 10);
    int64_t rtt = back - b->clock_sent_us;
    if (rtt < 0)
        return; /* our clock stepped back meanwhile: try again next time */
    /* Redis read its clock somewhere within the round trip. */
    int64_t off = redis_us - (b->clock_sent_us + rtt / 2);
    int64_t unc = rtt / 2 + 1;
    int64_t was = b->offset_us;
    int first = !b->have_offset;
    b->offset_us = off;
    b->unc_us = unc;
    b->have_offset = 1;
    int64_t mag = off < 0 ? -off : off;
    if (first || (was - off > CLOCK_WARN_US / 2 || off - was > CLOCK_WARN_US / 2)) {
        if (mag >= CLOCK_WARN_US)
            pc_log_warn(b->log,
                        "redis %s: its clock is %lld ms %s ours (+-%lld us): "
                        "writes are fenced by it (docs/CONSISTENCY.md)",
                        b->name, (long long)(mag / 1000), off < 0 ? "behind" : "ahead of",
                        (long long)unc);
        else
            pc_log_debug(b->log, "redis %s: clock offset %lld us (+-%lld us)", b->name,
                         (long long)off, (long long)unc);
    }
}

/* Reads Redis' clock (TIME) on the connection, for the fence. */
static void clock_read(pc_backend_t *b, redisAsyncContext *ac)
{
    if (b->clock_pending)
        return;
    b->clock_sent_us = pc_vclock_wall_us();
    b->clock_at = uv_now(b->loop);
    if (redisAsyncCommand(ac, clock_cb, b, "TIME") == REDIS_OK)
        b->clock_pending = 1;
}

static void reconnect_cb(uv_timer_t *t) { start_connect(t->data); }

static void fail_cmd(cmd_t *c);

/* Fails the writes that wait for a WAIT which will not answer now (the
 * connection went): Redis applied them, but no replica was seen to. */
static void fail_awaiting(pc_backend_t *b)
{
    while (b->await_head != NULL) {
        cmd_t *c = b->await_head;
        b->await_head = c->next;
        b->stats.errors++;
        fail_cmd(c);
        cmd_free(b, c);
    }
    b->await_tail = NULL;
}

static void schedule_reconnect(pc_backend_t *b)
{
    if (b->state == ST_CLOSING)
        return;
    b->state = ST_DOWN;
    b->ac = NULL;
    b->stats.up = 0;
    b->writes_unwaited = 0;
    fail_awaiting(b);
    if (b->router != NULL)
        pc_rcluster_link_down(b->router, b);
    if (b->reconnect_now) {
        /* a failover: the sentinels named the new primary already */
        b->reconnect_now = 0;
        uv_timer_start(&b->reconnect, reconnect_cb, 0, 0);
        return;
    }
    if (b->sentinel != NULL)
        b->need_resolve = 1;
    uv_timer_start(&b->reconnect, reconnect_cb, b->backoff_ms, 0);
    b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
}

/* Closes the connection once the replies already due have come (from
 * inside a hiredis callback too); new commands fail fast meanwhile. */
static void drain_connection(pc_backend_t *b, redisAsyncContext *ac)
{
    b->state = ST_DRAINING;
    b->stats.up = 0;
    b->phase_deadline = uv_now(b->loop) + b->timeout_ms;
    redisAsyncDisconnect(ac);
}

/* pc_backend_int.h */
const char *pc_backend_refusal_hint(const redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR)
        return "";
    if (strncmp(reply->str, "NOAUTH", 6) == 0)
        return " (Redis wants a password: --redis-password-file)";
    if (strncmp(reply->str, "WRONGPASS", 9) == 0)
        return " (check --redis-user and --redis-password-file)";
    if (strncmp(reply->str, "NOPERM", 6) == 0)
        return " (the user lacks a permission the node needs: docs/OPERATIONS.md)";
    if (strncmp(reply->str, "READONLY", 8) == 0)
        return " (a replica, not the primary)";
    return "";
}

/* An error that makes the connection useless for us: its end and a new
 * one (in Sentinel mode to the primary the sentinels name then). */
static int refusal_error(const redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR &&
           (strncmp(reply->str, "NOAUTH", 6) == 0 || strncmp(reply->str, "WRONGPASS", 9) == 0 ||
            strncmp(reply->str, "NOPERM", 6) == 0 || strncmp(reply->str, "READONLY", 8) == 0);
}

/* Logs why a connection is given up, or cannot be made: a warning the
 * first time, at debug level while the same reason repeats (until a
 * connection is up again). */
static void log_once(pc_backend_t *b, const char *msg, const char *hint)
{
    if (strcmp(msg, b->last_refusal) == 0) {
        pc_log_debug(b->log, "redis %s: %s%s; reconnecting", b->name, msg, hint);
        return;
    }
    snprintf(b->last_refusal, sizeof b->last_refusal, "%s", msg);
    pc_log_warn(b->log, "redis %s: %s%s; reconnecting", b->name, msg, hint);
}

/* A refusal by Redis (stats `refusals`), logged once. */
static void log_refusal(pc_backend_t *b, const char *what, const redisReply *reply)
{
    char msg[sizeof b->last_refusal];
    int elen = reply != NULL && reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0;
    snprintf(msg, sizeof msg, "%s%s%.*s", what, elen ? ": " : "", elen,
             elen ? reply->str : "");
    b->stats.refusals++;
    log_once(b, msg, pc_backend_refusal_hint(reply));
}

enum setup { SETUP_AUTH, SETUP_SELECT };

/* AUTH and SELECT: any error ends the connection. */
static void setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    pc_backend_t *b = ac->data;
    redisReply *reply = r;
    if (reply == NULL || b->state != ST_LOADING || reply->type != REDIS_REPLY_ERROR)
        return;
    log_refusal(b, (uintptr_t)privdata == SETUP_AUTH ? "AUTH refused" : "SELECT refused", reply);
    drain_connection(b, ac);
}

/* ROLE (Sentinel mode): at connect, and every CLOCK_EVERY_MS after. */
static void role_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    pc_backend_t *b = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (reply == NULL || (b->state != ST_LOADING && b->state != ST_UP))
        return;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_STRING && reply->element[0]->len == 6 &&
        memcmp(reply->element[0]->str, "master", 6) == 0)
        return;
    log_refusal(b, reply->type == REDIS_REPLY_ERROR ? "ROLE refused"
                                                    : "not the primary (ROLE); asking the sentinels again",
                reply);
    drain_connection(b, ac);
}

static void load_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    pc_backend_t *b = ac->data;
    redisReply *reply = r;
    size_t i = (size_t)(uintptr_t)privdata;
    /* NULL: the connection is going away, and on_disconnect (or the
     * closing backend) deals with that. */
    if (reply == NULL || b->state != ST_LOADING)
        return;
    if (reply->type != REDIS_REPLY_STRING || reply->len != PC_RSCRIPT_SHA_HEX) {
        log_refusal(b, "SCRIPT LOAD refused", reply);
        drain_connection(b, ac);
        return;
    }
    memcpy(b->sha[i], reply->str, PC_RSCRIPT_SHA_HEX);
    b->sha[i][PC_RSCRIPT_SHA_HEX] = '\0';
    if (--b->loads_pending > 0)
        return;
    if (b->stats.connects == 0 || b->backoff_ms > BACKOFF_MIN_MS || b->last_refusal[0] != '\0')
        pc_log_info(b->log, "redis %s: connected", b->name);
    b->state = ST_UP;
    b->unanswered = 0;
    b->last_refusal[0] = '\0';
    b->stats.up = 1;
    b->stats.connects++;
    b->backoff_ms = BACKOFF_MIN_MS;
}

/* AUTH (when there are credentials), SELECT (a database but 0) and ROLE
 * (Sentinel mode) on a new connection, before the scripts' loads. 0, or
 * -1 when the context refused a command (it is closing). */
static int send_setup(pc_backend_t *b, redisAsyncContext *ac)
{
    int rc = pc_cred_auth(b->cred, &b->auth);
    if (rc < 0) {
        pc_log_warn(b->log, "redis %s: out of memory for AUTH", b->name);
        return -1;
    }
    if (rc == 1) {
        rc = redisAsyncFormattedCommand(ac, setup_cb, (void *)(uintptr_t)SETUP_AUTH,
                                        (const char *)b->auth.data, b->auth.len);
        sodium_memzero(b->auth.data, b->auth.len);
        pc_buf_free(&b->auth);
        if (rc != REDIS_OK)
            return -1;
    }
    if (b->addr.db != 0 && redisAsyncCommand(ac, setup_cb, (void *)(uintptr_t)SETUP_SELECT,
                                             "SELECT %d", b->addr.db) != REDIS_OK)
        return -1;
    if (b->sentinel != NULL && redisAsyncCommand(ac, role_cb, NULL, "ROLE") != REDIS_OK)
        return -1;
    return 0;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    pc_backend_t *b = cac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context itself after a failed connect. */
        pc_log_debug(b->log, "redis %s: connect failed: %s", b->name,
                     cac->errstr ? cac->errstr : "?");
        schedule_reconnect(b);
        return;
    }
    /* Before the first command, so that none waits the kernel's 200 ms
     * for a resend. Ignored on failure (a Unix socket has no RTO): it
     * only shortens that wait, and main's start-up check (check_rto_min)
     * found the kernel takes this value or made it 0. */
    if (b->addr.path[0] == '\0')
        (void)pc_sock_set_rto_min(cac->c.fd, b->tcp_rto_min_ms);
    /* Up only once the scripts are loaded (and within one more timeout).
     * The backoff is reset then too, so a Redis that refuses them is not
     * hammered. */
    redisAsyncContext *ac = b->ac;
    b->state = ST_LOADING;
    b->phase_deadline = uv_now(b->loop) + b->timeout_ms;
    b->loads_pending = PC_RSCRIPT_COUNT;
    b->writes_unwaited = 0;
    memset(b->sha, 0, sizeof b->sha);
    if (send_setup(b, ac) != 0) {
        pc_log_debug(b->log, "redis %s: setup not sent", b->name);
        return; /* only a context already closing refuses; its end is on the way */
    }
    for (size_t i = 0; i < PC_RSCRIPT_COUNT; i++) {
        size_t len;
        const char *text = pc_rscript_text((enum pc_rscript)i, &len);
        if (redisAsyncCommand(ac, load_cb, (void *)(uintptr_t)i, "SCRIPT LOAD %b", text, len) !=
            REDIS_OK) {
            pc_log_debug(b->log, "redis %s: SCRIPT LOAD not sent", b->name);
            return;
        }
    }
    b->clock_pending = 0; /* one on a connection gone was answered with NULL */
    clock_read(b, ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    pc_backend_t *b = ac->data;
    (void)status;
    if (b->state == ST_CLOSING) {
        b->ac = NULL;
        return;
    }
    if (b->state == ST_DRAINING || b->reconnect_now) /* our own close; its reason was logged */
        pc_log_debug(b->log, "redis %s: closed; reconnecting", b->name);
    else
        pc_log_warn(b->log, "redis %s: connection lost%s%s", b->name,
                    ac->errstr ? ": " : "", ac->errstr ? ac->errstr : "");
    schedule_reconnect(b);
}

/* The next connections go to host:port (Sentinel mode). */
static void set_target(pc_backend_t *b, const char *host, int port)
{
    if (strcmp(host, b->host) == 0 && port == b->port)
        return;
    if (b->host[0] != '\0' || b->stats.connects == 0)
        pc_log_info(b->log, "redis: the sentinels name %s:%d as the primary of %s", host, port,
                    b->addr.master);
    snprintf(b->host, sizeof b->host, "%s", host);
    b->port = port;
    snprintf(b->name, sizeof b->name, "%s:%d (%s)", host, port, b->addr.master);
}

static void before_write(void *arg);

static void connect_now(pc_backend_t *b)
{
    redisAsyncContext *ac = b->addr.path[0] != '\0' ? redisAsyncConnectUnix(b->addr.path)
                                                     : redisAsyncConnect(b->host, b->port);
    if (ac == NULL) {
        schedule_reconnect(b);
        return;
    }
    if (ac->err) {
        pc_log_debug(b->log, "redis %s: %s", b->name, ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(b);
        return;
    }
    ac->data = b;
    if (pc_hiredis_uv_attach(ac, b->loop) != 0) {
        redisAsyncFree(ac);
        schedule_reconnect(b);
        return;
    }
    if (b->wait_replicas > 0)
        pc_hiredis_uv_before_write(ac, before_write, b);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    b->ac = ac;
    b->state = ST_CONNECTING;
    b->phase_deadline = uv_now(b->loop) + b->timeout_ms;
}

/* Sentinel mode: the sentinels' answer. */
static void resolved(void *arg, int err, const char *host, int port)
{
    pc_backend_t *b = arg;
    if (b->state != ST_RESOLVING)
        return;
    if (err != 0) {
        char what[sizeof b->last_refusal];
        snprintf(what, sizeof what, err == PC_ENOTFOUND ? "no sentinel knows a master named %s"
                                                        : "no sentinel answered for %s",
                 b->addr.master);
        log_once(b, what, "");
        schedule_reconnect(b);
        return;
    }
    b->need_resolve = 0;
    set_target(b, host, port);
    connect_now(b);
}

static void start_connect(pc_backend_t *b)
{
    if (b->state == ST_CLOSING)
        return;
    if (b->sentinel != NULL && (b->need_resolve || b->host[0] == '\0')) {
        b->state = ST_RESOLVING;
        if (pc_sentinel_ask(b->sentinel, resolved, b) != 0)
            schedule_reconnect(b); /* an ask in progress: not while RESOLVING is left */
        return;
    }
    connect_now(b);
}

/* Drops the connection from a timer callback (or any callback but this
 * connection's own); hiredis fails every pending command through
 * reply_cb with a NULL reply. */
static void drop_connection(pc_backend_t *b)
{
    redisAsyncContext *ac = b->ac;
    int connected = b->state == ST_LOADING || b->state == ST_UP || b->state == ST_DRAINING;
    b->ac = NULL;
    if (ac != NULL) {
        /* Closed with a reset: what the kernel has not sent yet dies with
         * the connection instead of reaching Redis much later (a node cut
         * off from Redis would retransmit it for minutes). The fence keeps
         * late bytes from being applied anyway; this keeps them from
         * being sent. */
        if (ac->c.fd >= 0)
            (void)pc_sock_reset_on_close(ac->c.fd);
        redisAsyncFree(ac);
    }
    /* A connected context reports through on_disconnect (which schedules
     * the reconnect); a half-open one does not. */
    if (!connected)
        schedule_reconnect(b);
}

/* Sentinel mode: a failover ended (host NULL: the subscription was made
 * again, and one may have been missed). */
static void sentinel_moved(void *arg, const char *host, int port)
{
    pc_backend_t *b = arg;
    if (b->state == ST_CLOSING)
        return;
    if (host == NULL) {
        if (b->state == ST_UP)
            (void)redisAsyncCommand(b->ac, role_cb, NULL, "ROLE");
        return;
    }
    int same = strcmp(host, b->host) == 0 && port == b->port;
    set_target(b, host, port);
    b->need_resolve = 0;
    if (same && b->state != ST_DOWN && b->state != ST_DRAINING)
        return;
    b->stats.switches++;
    switch (b->state) {
    case ST_CONNECTING:
    case ST_LOADING:
    case ST_UP:
    case ST_DRAINING:
        /* The writes on the old connection are held to their fences as
         * for any drop: none is reported failed before it can no longer
         * be applied. */
        b->reconnect_now = 1;
        drop_connection(b);
        break;
    case ST_DOWN:
        uv_timer_stop(&b->reconnect);
        start_connect(b);
        break;
    case ST_RESOLVING: /* its answer comes; it names the new one too */
    case ST_CLOSING:
        break;
    }
}

/* Runs the callbacks of the held writes whose deadline has come. */
static void release_held(pc_backend_t *b, uint64_t now, int all)
{
    while (b->held_head != NULL && (all || now >= b->held_head->deadline)) {
        cmd_t *c = b->held_head;
        b->held_head = c->next;
        if (b->held_head == NULL)
            b->held_tail = NULL;
        b->stats.errors++;
        fail_cmd(c);
        cmd_free(b, c);
    }
}

static void watchdog_cb(uv_timer_t *t)
{
    pc_backend_t *b = t->data;
    uint64_t now = uv_now(b->loop);
    release_held(b, now, 0);
    if (b->state == ST_UP && now - b->clock_at >= CLOCK_EVERY_MS) {
        clock_read(b, b->ac);
        /* a failover whose +switch-master we missed */
        if (b->sentinel != NULL)
            (void)redisAsyncCommand(b->ac, role_cb, NULL, "ROLE");
    }
    if ((b->state == ST_CONNECTING || b->state == ST_LOADING || b->state == ST_DRAINING) &&
        now >= b->phase_deadline) {
        pc_log_debug(b->log, "redis %s: %s timed out", b->name,
                     b->state == ST_CONNECTING ? "connect"
                     : b->state == ST_LOADING  ? "loading the scripts"
                                               : "closing");
        if (b->state == ST_DRAINING && b->head != NULL)
            b->stats.timeouts++;
        if (b->state == ST_LOADING)
            b->unanswered = 1;
        drop_connection(b);
    } else if (b->state == ST_UP && b->head != NULL && now >= b->head->deadline) {
        /* A busy loop may simply not have read replies that Redis sent in
         * time; read what is there before blaming Redis. */
        uv_update_time(b->loop);
        redisAsyncHandleRead(b->ac);
        if (b->state != ST_UP || b->head == NULL || now < b->head->deadline)
            return;
        pc_log_warn(b->log, "redis %s: no reply within %llu ms; dropping the connection",
                    b->name, (unsigned long long)b->timeout_ms);
        b->stats.timeouts++;
        b->unanswered = 1;
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

static void fail_cmd_err(cmd_t *c, int err)
{
    if (c->kind == CMD_GET)
        c->cb.get(c->arg, err, 0, NULL, 0, 0, -1);
    else
        c->cb.done(c->arg, err, 0);
}

static void fail_cmd(cmd_t *c) { fail_cmd_err(c, PC_EBACKEND); }

/* A WAIT's answer decides the writes that wait for it: all those sent
 * before it whose own answers came (and said applied or not). */
static void wait_reply(pc_backend_t *b, redisAsyncContext *ac, const redisReply *reply)
{
    int ok = reply != NULL && reply->type == REDIS_REPLY_INTEGER &&
             reply->integer >= (long long)b->wait_replicas;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        if (!ok && !b->wait_warned)
            pc_log_warn(b->log,
                        "redis %s: WAIT: %lld of %u replicas confirmed within %llu ms; such "
                        "writes are answered BACKEND_UNAVAILABLE (--redis-wait)",
                        b->name, reply->integer, b->wait_replicas,
                        (unsigned long long)b->wait_timeout_ms);
        b->wait_warned = !ok;
    }
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        log_refusal(b, "WAIT refused", reply);
        if (b->state == ST_UP || b->state == ST_LOADING)
            drain_connection(b, ac);
    }
    while (b->await_head != NULL) {
        cmd_t *c = b->await_head;
        b->await_head = c->next;
        if (ok) {
            c->cb.done(c->arg, 0, c->applied);
        } else {
            b->stats.errors++;
            if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
                b->stats.wait_short++;
            fail_cmd(c);
        }
        cmd_free(b, c);
    }
    b->await_tail = NULL;
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    cmd_t *c = privdata;
    pc_backend_t *b = c->b;
    redisReply *reply = r;
    cmd_pop(b, c);
    if (reply != NULL)
        pc_hist_add(&b->stats.rtt, uv_hrtime() - c->sent_ns, 1);
    if (c->kind == CMD_WAIT) {
        wait_reply(b, ac, reply);
        cmd_free(b, c);
        return;
    }

    if (reply == NULL) {
        /* A write may still reach Redis and be applied until its fence:
         * its failure is told no earlier than that. */
        if (c->kind != CMD_GET && b->state != ST_CLOSING && uv_now(b->loop) < c->deadline) {
            c->next = NULL;
            if (b->held_tail)
                b->held_tail->next = c;
            else
                b->held_head = c;
            b->held_tail = c;
            b->stats.held++;
            return;
        }
        b->stats.errors++;
        fail_cmd(c);
        cmd_free(c->b, c);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && b->router != NULL && pc_rcluster_is_redirect(reply)) {
        /* -MOVED, -ASK, -TRYAGAIN, -CLUSTERDOWN: nothing was applied */
        b->stats.redirects++;
        int err = pc_rcluster_redirect(b->router, b, c, reply);
        if (err == 0)
            return; /* sent on to the node the -ASK named */
        b->stats.errors++;
        fail_cmd_err(c, err);
        cmd_free(b, c);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        int noscript = reply->len >= 8 && memcmp(reply->str, "NOSCRIPT", 8) == 0;
        int live = b->state == ST_UP || b->state == ST_LOADING;
        if (refusal_error(reply)) {
            /* AUTH or ACLs changed, or the server became a replica: the
             * connection is no use; say so once, not per command */
            if (live)
                log_refusal(b, "command refused", reply);
        } else if (!noscript) {
            pc_log_warn(b->log, "redis: command refused: %.*s", (int)reply->len, reply->str);
        } else if (live) {
            pc_log_warn(b->log, "redis %s: our scripts are gone (SCRIPT FLUSH?); "
                                "reconnecting to load them again", b->name);
        }
        /* Draining first, so that whatever the failed command's callback
         * sends next fails fast instead of meeting the same error. */
        if ((noscript || refusal_error(reply)) && live)
            drain_connection(b, ac);
        b->stats.errors++;
        fail_cmd(c);
        cmd_free(c->b, c);
        return;
    }

    switch (c->kind) {
    case CMD_GET: {
        pc_rscript_value_t v;
        if (pc_rscript_get_reply(reply, &v) < 0) {
            b->stats.errors++;
            fail_cmd(c);
        } else {
            c->cb.get(c->arg, 0, v.found, v.data, v.len, v.flags, v.pttl_ms);
        }
        break;
    }
    case CMD_SET:
    case CMD_DEL:
    case CMD_EXPIRE:
        c->applied = pc_rscript_write_reply(reply);
        if (c->applied < 0) {
            /* past its fence: not applied (and the node has given up
             * on it by now, unless the clocks moved) */
            b->stats.late++;
            b->stats.errors++;
            fail_cmd(c);
            break;
        }
        if (b->wait_replicas > 0) {
            /* done once the WAIT behind it says enough replicas have it */
            c->next = NULL;
            if (b->await_tail)
                b->await_tail->next = c;
            else
                b->await_head = c;
            b->await_tail = c;
            return;
        }
        c->cb.done(c->arg, 0, c->applied);
        break;
    case CMD_WAIT:
        break;
    }
    cmd_free(c->b, c);
}

/* Before the adapter writes (pc_hiredis_uv_before_write): one WAIT after
 * the writes of this turn, in the same write. */
static void before_write(void *arg)
{
    pc_backend_t *b = arg;
    if (b->writes_unwaited == 0 || b->ac == NULL)
        return;
    b->writes_unwaited = 0;
    cmd_t *c = cmd_new(b, CMD_WAIT, NULL);
    pc_buf_t *f = &b->fmt;
    pc_buf_reset(f);
    int rc = c == NULL ? PC_ENOMEM : pc_resp_array(f, 3);
    if (rc == 0)
        rc = pc_resp_bulk(f, "WAIT", 4);
    if (rc == 0)
        rc = pc_resp_bulk_int(f, (int64_t)b->wait_replicas);
    if (rc == 0)
        rc = pc_resp_bulk_int(f, (int64_t)b->wait_timeout_ms);
    if (rc == 0 && redisAsyncFormattedCommand(b->ac, reply_cb, c, (const char *)f->data,
                                              f->len) != REDIS_OK)
        rc = PC_EBACKEND;
    if (rc != 0) {
        /* The writes before it can never be confirmed: end the connection
         * (they fail when it is gone, fail_awaiting). */
        if (c != NULL)
            cmd_free(b, c);
        if (b->state == ST_UP || b->state == ST_LOADING)
            drain_connection(b, b->ac);
        return;
    }
    c->deadline = uv_now(b->loop) + b->timeout_ms;
    c->sent_ns = uv_hrtime();
    cmd_sent(b, c);
}

#define FMT_KEEP ((size_t)64 << 10) /* a larger format buffer is freed after use */

/*
 * Queues the script call on key: KEYS[1] = prefix + key, KEYS[2] = its
 * companion record, then the call's ARGV and a write's fence. EVALSHA
 * once the script's load has answered on this connection, EVAL with its
 * text before. Fails at once (PC_EBACKEND) unless connected; PC_ENOMEM.
 * c is consumed either way.
 */
static int send_script(pc_backend_t *b, cmd_t *c, pc_rscript_call_t *call, const void *key,
                       size_t klen)
{
    if ((b->state != ST_UP && (b->state != ST_LOADING || b->unanswered || b->sentinel != NULL)) ||
        b->ac == NULL) {
        b->stats.rejected++;
        cmd_free(b, c);
        return PC_EBACKEND;
    }
    /* R and its companion side by side: [R][pcm:{TAG}:R] */
    uint8_t stackbuf[1024];
    uint8_t *buf = stackbuf;
    size_t rlen = b->prefix_len + klen;
    size_t need = 2 * rlen + PC_RKEY_COMPANION_EXTRA;
    if (need > sizeof stackbuf && (buf = malloc(need)) == NULL) {
        cmd_free(b, c);
        return PC_ENOMEM;
    }
    memcpy(buf, b->prefix, b->prefix_len);
    if (klen > 0)
        memcpy(buf + b->prefix_len, key, klen);

    c->b = b;
    c->next = NULL;
    c->deadline = uv_now(b->loop) + b->timeout_ms;
    c->sent_ns = uv_hrtime();
    call->sha = b->sha[call->script][0] != '\0' ? b->sha[call->script] : NULL;
    call->keys = buf;
    call->rlen = rlen;
    call->mlen = pc_rkey_companion(buf, rlen, buf + rlen);
    if (pc_rscript_writes(call->script))
        call->fence_ms = fence_ms(b, c->deadline, c->until_ms);
    size_t fence_at;
    pc_buf_reset(&b->fmt);
    int rc = pc_rscript_format(&b->fmt, call, &fence_at);
    if (buf != stackbuf)
        free(buf);
    if (rc == 0 && b->router != NULL) {
        /* kept for an -ASK: all but the fence, which is the target's */
        c->wire_len = fence_at;
        if ((c->wire = malloc(c->wire_len)) == NULL)
            rc = PC_ENOMEM;
        else
            memcpy(c->wire, b->fmt.data, c->wire_len);
    }
    if (rc != 0) {
        cmd_free(b, c);
        return PC_ENOMEM;
    }
    rc = redisAsyncFormattedCommand(b->ac, reply_cb, c, (const char *)b->fmt.data, b->fmt.len);
    if (b->fmt.cap > FMT_KEEP)
        pc_buf_free(&b->fmt);
    if (rc != REDIS_OK) {
        b->stats.rejected++;
        cmd_free(b, c);
        return PC_EBACKEND;
    }
    cmd_sent(b, c);
    return 0;
}

/* Cluster mode: the link of key's primary (NULL: its slot is not mapped
 * yet; counted as rejected). */
static pc_backend_t *route(pc_backend_t *b, const void *key, size_t klen)
{
    pc_backend_t *l = pc_rcluster_route(b->rc, key, klen);
    if (l == NULL)
        b->stats.rejected++;
    return l;
}

static cmd_t *cmd_new(pc_backend_t *b, enum cmd_kind kind, void *arg)
{
    cmd_t *c = b->pool;
    if (c != NULL) {
        b->pool = c->next;
        b->npool--;
        memset(c, 0, sizeof *c);
    } else {
        c = calloc(1, sizeof *c);
    }
    if (c) {
        c->kind = kind;
        c->arg = arg;
    }
    return c;
}

int pc_backend_get(pc_backend_t *b, const void *key, size_t klen, pc_backend_get_cb cb,
                   void *arg)
{
    if (b->rc != NULL && (b = route(b, key, klen)) == NULL)
        return PC_EBACKEND;
    cmd_t *c = cmd_new(b, CMD_GET, arg);
    if (c == NULL)
        return PC_ENOMEM;
    c->cb.get = cb;
    pc_rscript_call_t call = {.script = PC_RSCRIPT_GET};
    return send_script(b, c, &call, key, klen);
}

int pc_backend_set(pc_backend_t *b, const void *key, size_t klen, const void *val, size_t vlen,
                   uint64_t ttl_ms, int cond, uint32_t flags, uint64_t until_ms,
                   pc_backend_done_cb cb, void *arg)
{
    if (b->rc != NULL && (b = route(b, key, klen)) == NULL)
        return PC_EBACKEND;
    cmd_t *c = cmd_new(b, CMD_SET, arg);
    if (c == NULL)
        return PC_ENOMEM;
    c->cb.done = cb;
    c->until_ms = until_ms;
    pc_rscript_call_t call = {.script = PC_RSCRIPT_SET, .val = val, .vlen = vlen,
                              .ttl_ms = ttl_ms, .cond = cond, .flags = flags};
    return send_script(b, c, &call, key, klen);
}

int pc_backend_del(pc_backend_t *b, const void *key, size_t klen, uint64_t until_ms,
                   pc_backend_done_cb cb, void *arg)
{
    if (b->rc != NULL && (b = route(b, key, klen)) == NULL)
        return PC_EBACKEND;
    cmd_t *c = cmd_new(b, CMD_DEL, arg);
    if (c == NULL)
        return PC_ENOMEM;
    c->cb.done = cb;
    c->until_ms = until_ms;
    pc_rscript_call_t call = {.script = PC_RSCRIPT_DEL};
    return send_script(b, c, &call, key, klen);
}

int pc_backend_expire(pc_backend_t *b, const void *key, size_t klen, uint64_t ttl_ms,
                      uint64_t until_ms, pc_backend_done_cb cb, void *arg)
{
    if (b->rc != NULL && (b = route(b, key, klen)) == NULL)
        return PC_EBACKEND;
    cmd_t *c = cmd_new(b, CMD_EXPIRE, arg);
    if (c == NULL)
        return PC_ENOMEM;
    c->cb.done = cb;
    c->until_ms = until_ms;
    pc_rscript_call_t call = {.script = PC_RSCRIPT_EXPIRE, .ttl_ms = ttl_ms};
    return send_script(b, c, &call, key, klen);
}

/* Cluster mode: the backend is a shell around the router. */
static int cluster_new(uv_loop_t *loop, const pc_backend_config_t *cfg, const pc_log_t *log,
                       pc_backend_t **out)
{
    pc_backend_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return PC_ENOMEM;
    b->loop = loop;
    b->log = log;
    b->state = ST_DOWN;
    int rc = pc_rcluster_new(loop, cfg, log, &b->rc);
    if (rc < 0) {
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

int pc_backend_new(uv_loop_t *loop, const pc_backend_config_t *cfg, const pc_log_t *log,
                   pc_backend_t **out)
{
    if (cfg != NULL && cfg->addr != NULL && cfg->addr->mode == PC_BACKEND_CLUSTER &&
        cfg->timeout_ms != 0 && cfg->addr->nhosts > 0)
        return cluster_new(loop, cfg, log, out);
    if (cfg == NULL || cfg->addr == NULL || cfg->timeout_ms == 0 ||
        (cfg->addr->mode != PC_BACKEND_SINGLE && cfg->addr->mode != PC_BACKEND_SENTINEL) ||
        (cfg->addr->path[0] == '\0' && cfg->addr->nhosts == 0))
        return PC_EINVAL;
    pc_backend_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return PC_ENOMEM;
    b->prefix = strdup(cfg->prefix ? cfg->prefix : "");
    if (b->prefix == NULL) {
        free(b);
        return PC_ENOMEM;
    }
    b->addr = *cfg->addr;
    b->loop = loop;
    b->log = log;
    b->cred = cfg->cred;
    if (b->addr.mode == PC_BACKEND_SENTINEL) {
        snprintf(b->name, sizeof b->name, "(%s, not found yet)", b->addr.master);
        int rc = pc_sentinel_new(loop, &b->addr, cfg->timeout_ms, log, sentinel_moved, b,
                                 &b->sentinel);
        if (rc < 0) {
            free(b->prefix);
            free(b);
            return rc;
        }
        b->need_resolve = 1;
    } else if (b->addr.path[0] != '\0') {
        snprintf(b->name, sizeof b->name, "unix:%s", b->addr.path);
    } else {
        snprintf(b->host, sizeof b->host, "%s", b->addr.hosts[0].host);
        b->port = b->addr.hosts[0].port;
        snprintf(b->name, sizeof b->name, "%s:%d", b->host, b->port);
    }
    b->prefix_len = strlen(b->prefix);
    b->timeout_ms = cfg->timeout_ms;
    b->tcp_rto_min_ms = cfg->tcp_rto_min_ms;
    b->wait_replicas = cfg->wait_replicas;
    b->wait_timeout_ms = cfg->timeout_ms / 2 > 0 ? cfg->timeout_ms / 2 : 1;
    b->backoff_ms = BACKOFF_MIN_MS;
    b->state = ST_DOWN;
    pc_buf_init(&b->fmt, 0);
    pc_buf_init(&b->auth, 0);

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

int pc_backend_link_new(uv_loop_t *loop, const pc_backend_config_t *cfg, const pc_log_t *log,
                        pc_rcluster_t *rc, pc_backend_t **out)
{
    if (cfg->addr->mode != PC_BACKEND_SINGLE || cfg->addr->path[0] != '\0')
        return PC_EINVAL;
    int err = pc_backend_new(loop, cfg, log, out);
    if (err == 0)
        (*out)->router = rc; /* before any callback: those come from the loop */
    return err;
}

const char *pc_backend_link_host(const pc_backend_t *l) { return l->host; }

int pc_backend_link_port(const pc_backend_t *l) { return l->port; }

int pc_backend_link_idle(const pc_backend_t *l)
{
    return l->head == NULL && l->held_head == NULL && l->await_head == NULL;
}

int pc_backend_link_command(pc_backend_t *l, redisCallbackFn *fn, void *priv, const char *fmt,
                            ...)
{
    if (l->state != ST_UP || l->ac == NULL)
        return PC_EBACKEND;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAsyncCommand(l->ac, fn, priv, fmt, ap);
    va_end(ap);
    return rc == REDIS_OK ? 0 : PC_EBACKEND;
}

int pc_backend_cmd_redirected(const struct cmd *c) { return c->redirected; }

int pc_backend_link_ask(pc_backend_t *l, struct cmd *c)
{
    if (l->state != ST_UP || l->ac == NULL || c->wire == NULL)
        return PC_EBACKEND;
    pc_buf_t *f = &l->fmt;
    pc_buf_reset(f);
    int rc = pc_buf_append(f, c->wire, c->wire_len);
    if (rc == 0 && c->kind != CMD_GET)
        rc = pc_resp_bulk_int(f, fence_ms(l, c->deadline, c->until_ms));
    if (rc != 0)
        return PC_EBACKEND;
    /* ASKING's +OK is not ours to read (NULL callback); the command's
     * answer follows it in order. */
    if (redisAsyncCommand(l->ac, NULL, NULL, "ASKING") != REDIS_OK ||
        redisAsyncFormattedCommand(l->ac, reply_cb, c, (const char *)f->data, f->len) !=
            REDIS_OK)
        return PC_EBACKEND;
    c->redirected = 1;
    cmd_sent(l, c);
    return 0;
}

int pc_backend_up(const pc_backend_t *b)
{
    return b->rc != NULL ? pc_rcluster_up(b->rc) : b->state == ST_UP;
}

void pc_backend_fail_pending(pc_backend_t *b)
{
    if (b->rc != NULL) {
        pc_rcluster_fail_pending(b->rc);
        return;
    }
    if (b->state != ST_UP || b->head == NULL)
        return;
    pc_log_warn(b->log, "redis %s: giving up on the commands in flight", b->name);
    drop_connection(b);
}

void pc_backend_stats(const pc_backend_t *b, pc_backend_stats_t *out)
{
    if (b->rc != NULL) {
        pc_rcluster_stats(b->rc, out);
        out->rejected += b->stats.rejected; /* keys of slots not mapped yet */
        return;
    }
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
    free(b->prefix);
    pc_buf_free(&b->fmt);
    pc_buf_free(&b->auth);
    while (b->pool != NULL) {
        cmd_t *c = b->pool;
        b->pool = c->next;
        free(c);
    }
    free(b);
    if (closed)
        closed(arg);
}

static void cluster_closed(void *arg)
{
    pc_backend_t *b = arg;
    void (*closed)(void *) = b->closed;
    void *carg = b->closed_arg;
    free(b);
    if (closed)
        closed(carg);
}

void pc_backend_close(pc_backend_t *b, void (*closed)(void *arg), void *arg)
{
    b->closed = closed;
    b->closed_arg = arg;
    if (b->rc != NULL) {
        pc_rcluster_close(b->rc, cluster_closed, b);
        return;
    }
    b->state = ST_CLOSING;
    pc_sentinel_close(b->sentinel);
    b->sentinel = NULL;
    redisAsyncContext *ac = b->ac;
    b->ac = NULL;
    /* Fails pending commands through reply_cb; the adapter closes its poll
     * handle on its own (and frees it in its own close callback). */
    if (ac != NULL)
        redisAsyncFree(ac);
    fail_awaiting(b);
    release_held(b, 0, 1);
    uv_close((uv_handle_t *)&b->watchdog, handle_closed);
    uv_close((uv_handle_t *)&b->reconnect, handle_closed);
}
