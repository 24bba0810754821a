/*
 * pc_redis.c -- the Redis-protocol front door (pc_redis.h).
 */
#include "pc_redis.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pc_auth.h"
#include "pc_dispatch.h"
#include "pc_loop.h"
#include "pc_loops.h"
#include "pc_resp.h"
#include "pc_vclock.h"

/* How an answer is rendered (its slot's kind). */
enum kind {
    K_LIT,       /* the slot's literal reply, whatever the answer */
    K_GET,       /* GET: bulk, or null */
    K_TTL,       /* GET: the remaining time to live, in s */
    K_PTTL,      /* ... in ms */
    K_SET,       /* SET: +OK, or null when NX/XX held it back */
    K_GONE,      /* DEL made of a SET whose time is past: +OK */
    K_SAVE,      /* GET kept for the next slot (GETDEL, GETEX, SET GET) */
    K_SET_SAVED, /* SET after K_SAVE: the saved value, or the error */
    K_RET_SAVED, /* DEL or TOUCH after K_SAVE: the saved value */
    K_COUNT,     /* DEL/TOUCH of one key each: :n over the command */
    K_MSET,      /* SET of one pair each: +OK over the command */
    K_MGET,      /* MGET: an array */
    K_MGET_NUM,  /* MGET: how many keys were found (EXISTS, TOUCH) */
    K_AUTH,      /* HELLO: +OK, or WRONGPASS */
    K_HELLO,     /* HELLO: the literal (the map), or WRONGPASS */
    K_DBSIZE,    /* STATS: items */
    K_INFO,      /* STATS: INFO's text; the literal holds the sections asked */
};

typedef struct slot {
    uint8_t kind;
    uint8_t r3;    /* HELLO 3 was in force when the command was read */
    uint8_t last;  /* the last answer of its command */
    uint8_t write; /* a write: 1 = its key's hash is in wkeys, 2 = counted in wover */
    uint64_t wkey; /* the hash of a write's key */
    uint8_t *lit;  /* K_LIT, K_HELLO, K_INFO: owned */
    size_t litlen;
} slot_t;

/* Writes of a connection still out, by key: a read of one of those keys
 * waits until they are answered, so a pipeline reads its own writes, as
 * Redis serves a connection's commands one after the other. (The node
 * answers a cached key at once while a write of it waits on Redis:
 * docs/CONSISTENCY.md.) Past WTRACK_MAX writes out, every read waits. */
#define WTRACK_MAX 64

typedef struct redis_conn {
    pc_resp_parser_t parser;
    int r3;
    uint64_t id; /* CLIENT ID */
    uint64_t next_rid;
    char *name; /* CLIENT SETNAME; NULL = none */
    /* The slots of answers not yet given, in order: a ring. */
    slot_t *q;
    size_t qcap, qhead, qlen;
    /* A command of several answers, summed up as they leave. */
    int64_t agg_n;
    uint32_t agg_status; /* its first failure (OK: none) */
    pc_buf_t agg_msg;
    int saved;           /* K_SAVE: 1 = a value, 0 = none (NOT_FOUND) */
    uint32_t saved_status;
    pc_buf_t saved_val;
    pc_buf_t tmp; /* literal replies are built here */
    uint64_t wkeys[WTRACK_MAX];
    uint32_t nw;    /* of wkeys in use */
    uint32_t wover; /* writes out beyond them */
} redis_conn_t;

static uint64_t key_hash(const pc_bytes_t *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint32_t i = 0; i < k->len; i++)
        h = (h ^ k->ptr[i]) * 1099511628211ull;
    return h;
}

static void write_out(redis_conn_t *r, slot_t *s, const pc_bytes_t *key)
{
    if (r->nw < WTRACK_MAX) {
        s->wkey = key_hash(key);
        r->wkeys[r->nw++] = s->wkey;
        s->write = 1;
    } else {
        r->wover++;
        s->write = 2;
    }
}

static void write_done(redis_conn_t *r, const slot_t *s)
{
    if (s->write == 2) {
        r->wover--;
        return;
    }
    for (uint32_t i = 0; i < r->nw; i++)
        if (r->wkeys[i] == s->wkey) {
            r->wkeys[i] = r->wkeys[--r->nw];
            return;
        }
}

/* Does a read of these keys have to wait for this connection's writes? */
static int read_waits(const redis_conn_t *r, const pc_bytes_t *keys, uint32_t n)
{
    if (r->wover > 0)
        return 1;
    if (r->nw == 0)
        return 0;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t h = key_hash(&keys[k]);
        for (uint32_t i = 0; i < r->nw; i++)
            if (r->wkeys[i] == h)
                return 1;
    }
    return 0;
}

static redis_conn_t *rc_of(pc_conn_t *c) { return c->redis; }

/* ---- the connection ---------------------------------------------------- */

int pc_redis_open(pc_conn_t *c)
{
    pc_loop_t *l = pc_loop_of(c);
    redis_conn_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return PC_ENOMEM;
    pc_resp_limits_t lim = {.max_args = PC_RESP_DEFAULT_MAX_ARGS,
                            .max_bulk = c->cs->set.proto.max_frame,
                            .max_inline = PC_RESP_DEFAULT_MAX_INLINE};
    pc_resp_parser_init(&r->parser, &lim);
    r->id = atomic_fetch_add(&l->sh->redis_ids, 1) + 1;
    pc_buf_init(&r->agg_msg, 0);
    pc_buf_init(&r->saved_val, 0);
    pc_buf_init(&r->tmp, 0);
    c->redis = r;
    pc_proto_reader_unframed(&c->rd);
    return 0;
}

void pc_redis_free(pc_conn_t *c)
{
    redis_conn_t *r = rc_of(c);
    for (size_t i = 0; i < r->qlen; i++)
        free(r->q[(r->qhead + i) % r->qcap].lit);
    free(r->q);
    free(r->name);
    pc_resp_parser_free(&r->parser);
    pc_buf_free(&r->agg_msg);
    pc_buf_free(&r->saved_val);
    pc_buf_free(&r->tmp);
    free(r);
    c->redis = NULL;
}

static int q_push(redis_conn_t *r, slot_t s)
{
    if (r->qlen == r->qcap) {
        size_t ncap = r->qcap ? r->qcap * 2 : 8;
        slot_t *nq = malloc(ncap * sizeof *nq);
        if (nq == NULL)
            return PC_ENOMEM;
        for (size_t i = 0; i < r->qlen; i++)
            nq[i] = r->q[(r->qhead + i) % r->qcap];
        free(r->q);
        r->q = nq;
        r->qcap = ncap;
        r->qhead = 0;
    }
    r->q[(r->qhead + r->qlen) % r->qcap] = s;
    r->qlen++;
    return 0;
}

static int q_pop(redis_conn_t *r, slot_t *out)
{
    if (r->qlen == 0)
        return 0;
    *out = r->q[r->qhead];
    r->qhead = (r->qhead + 1) % r->qcap;
    r->qlen--;
    return 1;
}

/* ---- rendering answers --------------------------------------------------- */

/* The Redis error for a failed native answer: "CODE message". */
static int put_error(pc_buf_t *b, uint32_t status, const pc_bytes_t *msg, int auth)
{
    const char *code = "ERR";
    if (auth && status == PC_ST_AUTH_REQUIRED)
        code = "WRONGPASS";
    else if (status == PC_ST_AUTH_REQUIRED)
        code = "NOAUTH";
    else if (status == PC_ST_RETRY || status == PC_ST_BUSY)
        code = "TRYAGAIN";
    char line[320];
    if (auth && status == PC_ST_AUTH_REQUIRED)
        snprintf(line, sizeof line, "%s invalid username-password pair or user is disabled.",
                 code);
    else if (msg != NULL && msg->len > 0)
        snprintf(line, sizeof line, "%s %s: %.*s", code, pc_status_name(status),
                 (int)(msg->len > 256 ? 256 : msg->len), (const char *)msg->ptr);
    else
        snprintf(line, sizeof line, "%s %s: %s", code, pc_status_name(status),
                 pc_status_message(status));
    for (char *p = line; *p; p++) /* a simple string has no line breaks */
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    return pc_resp_error(b, line);
}

static void agg_fail(redis_conn_t *r, uint32_t status, const pc_bytes_t *msg)
{
    if (r->agg_status != PC_ST_OK)
        return;
    r->agg_status = status;
    pc_buf_reset(&r->agg_msg);
    if (msg->len > 0)
        (void)pc_buf_append(&r->agg_msg, msg->ptr, msg->len);
}

/* The summed-up reply of a command of several answers, at its last. */
static int agg_end(redis_conn_t *r, pc_buf_t *b, int mset)
{
    int rc;
    if (r->agg_status != PC_ST_OK) {
        pc_bytes_t m = {r->agg_msg.data, (uint32_t)r->agg_msg.len};
        rc = put_error(b, r->agg_status, &m, 0);
    } else {
        rc = mset ? pc_resp_simple(b, "OK") : pc_resp_int(b, r->agg_n);
    }
    r->agg_n = 0;
    r->agg_status = PC_ST_OK;
    return rc;
}

static int put_saved(redis_conn_t *r, pc_buf_t *b, uint32_t status, const pc_bytes_t *msg,
                     int r3, int set)
{
    int rc;
    if (r->saved_status != PC_ST_OK && r->saved_status != PC_ST_NOT_FOUND) {
        pc_bytes_t m = {r->agg_msg.data, (uint32_t)r->agg_msg.len};
        rc = put_error(b, r->saved_status, &m, 0);
    } else if (status != PC_ST_OK && status != PC_ST_NOT_FOUND &&
               !(set && (status == PC_ST_EXISTS || status == PC_ST_NOT_STORED))) {
        rc = put_error(b, status, msg, 0);
    } else if (r->saved) {
        rc = pc_resp_bulk(b, r->saved_val.data, r->saved_val.len);
    } else {
        rc = pc_resp_null(b, r3);
    }
    r->saved = 0;
    r->saved_status = PC_ST_OK;
    return rc;
}

/* INFO's text from a STATS answer: the sections asked (lit: names
 * separated by spaces, lower case; empty = the default ones). */
static int put_info(pc_conn_t *c, pc_buf_t *b, const slot_t *s, const pc_response_t *st);

static int64_t stat_of(const pc_response_t *st, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < st->nstats; i++)
        if (st->stats[i].name.len == n && memcmp(st->stats[i].name.ptr, name, n) == 0)
            return st->stats[i].value;
    return 0;
}

static int render(pc_conn_t *c, redis_conn_t *r, const slot_t *s, const pc_response_t *a,
                  const pc_bytes_t *msg)
{
    pc_buf_t *b = &c->out;
    uint32_t st = a->status;
    int ok = st == PC_ST_OK;
    switch (s->kind) {
    case K_LIT:
        return pc_buf_append(b, s->lit, s->litlen);
    case K_GET:
        if (ok)
            return pc_resp_bulk(b, a->entry.value.ptr, a->entry.value.len);
        return st == PC_ST_NOT_FOUND ? pc_resp_null(b, s->r3) : put_error(b, st, msg, 0);
    case K_TTL:
    case K_PTTL:
        if (st == PC_ST_NOT_FOUND)
            return pc_resp_int(b, -2);
        if (!ok)
            return put_error(b, st, msg, 0);
        if (a->entry.ttl_ms < 0)
            return pc_resp_int(b, -1);
        return pc_resp_int(b, s->kind == K_PTTL ? a->entry.ttl_ms
                                                : (a->entry.ttl_ms + 500) / 1000);
    case K_SET:
        if (ok)
            return pc_resp_simple(b, "OK");
        if (st == PC_ST_EXISTS || st == PC_ST_NOT_STORED)
            return pc_resp_null(b, s->r3);
        return put_error(b, st, msg, 0);
    case K_GONE:
        return ok || st == PC_ST_NOT_FOUND ? pc_resp_simple(b, "OK") : put_error(b, st, msg, 0);
    case K_SAVE:
        r->saved = ok;
        r->saved_status = st;
        pc_buf_reset(&r->saved_val);
        pc_buf_reset(&r->agg_msg);
        if (ok)
            return pc_buf_append(&r->saved_val, a->entry.value.ptr, a->entry.value.len);
        if (msg->len > 0)
            return pc_buf_append(&r->agg_msg, msg->ptr, msg->len);
        return 0;
    case K_SET_SAVED:
    case K_RET_SAVED:
        return put_saved(r, b, st, msg, s->r3, s->kind == K_SET_SAVED);
    case K_COUNT:
    case K_MSET:
        if (ok)
            r->agg_n++;
        else if (st != PC_ST_NOT_FOUND || s->kind == K_MSET)
            agg_fail(r, st, msg);
        return s->last ? agg_end(r, b, s->kind == K_MSET) : 0;
    case K_MGET:
    case K_MGET_NUM: {
        if (!ok)
            return put_error(b, st, msg, 0);
        int64_t found = 0;
        int rc = s->kind == K_MGET ? pc_resp_array(b, a->nentries) : 0;
        for (uint32_t i = 0; i < a->nentries && rc == 0; i++) {
            const pc_entry_t *e = &a->entries[i];
            found += e->status == PC_ST_OK;
            if (s->kind == K_MGET_NUM)
                continue;
            if (e->status == PC_ST_OK)
                rc = pc_resp_bulk(b, e->value.ptr, e->value.len);
            else if (e->status == PC_ST_NOT_FOUND)
                rc = pc_resp_null(b, s->r3);
            else
                rc = put_error(b, e->status, NULL, 0);
        }
        return rc == 0 && s->kind == K_MGET_NUM ? pc_resp_int(b, found) : rc;
    }
    case K_AUTH:
        return ok ? pc_resp_simple(b, "OK") : put_error(b, st, msg, 1);
    case K_HELLO:
        return ok ? pc_buf_append(b, s->lit, s->litlen) : put_error(b, st, msg, 1);
    case K_DBSIZE:
        return ok ? pc_resp_int(b, stat_of(a, "items")) : put_error(b, st, msg, 0);
    case K_INFO:
        return ok ? put_info(c, b, s, a) : put_error(b, st, msg, 0);
    default:
        return pc_resp_error(b, "ERR internal: unknown reply kind");
    }
}

int pc_redis_answer(pc_conn_t *c, const pc_response_t *resp, const char *errmsg,
                    const uint8_t *body, size_t len)
{
    redis_conn_t *r = rc_of(c);
    pc_response_t dec;
    if (resp == NULL) {
        if (pc_proto_decode_response(pc_loop_of(c)->rdec, body, len, &dec) != 0) {
            memset(&dec, 0, sizeof dec);
            dec.status = PC_ST_INTERNAL;
        }
        resp = &dec;
    }
    slot_t s;
    if (!q_pop(r, &s)) { /* an answer no command asked for: a defect */
        pc_log_error(c->cs->log, "client %s: a Redis reply with no command to answer", c->peer);
        return pc_resp_error(&c->out, "ERR internal: reply without a command");
    }
    if (s.write)
        write_done(r, &s);
    pc_bytes_t msg = resp->message;
    if (errmsg != NULL && resp->status != PC_ST_OK)
        msg = (pc_bytes_t){(const uint8_t *)errmsg, (uint32_t)strlen(errmsg)};
    int rc = render(c, r, &s, resp, &msg);
    free(s.lit);
    return rc;
}

/* ---- commands ------------------------------------------------------------ */

typedef struct cmdctx {
    pc_conn_t *c;
    redis_conn_t *r;
    const pc_resp_cmd_t *cmd;
    const char *name; /* lower case, as the table has it */
} cmdctx_t;

/* A reply made here, that leaves in its turn: straight out when nothing
 * is ahead of it, else queued as a slot behind the answers ahead. */
static void reply_lit(cmdctx_t *x, const pc_buf_t *lit)
{
    pc_conn_t *c = x->c;
    redis_conn_t *r = x->r;
    if (r->qlen == 0 && pc_list_empty(&c->reqs)) {
        if (pc_buf_append(&c->out, lit->data, lit->len) < 0)
            pc_conn_close(c, "out of memory for a reply");
        return;
    }
    slot_t s = {.kind = K_LIT, .r3 = (uint8_t)r->r3, .last = 1, .litlen = lit->len};
    s.lit = malloc(lit->len ? lit->len : 1);
    if (s.lit == NULL || q_push(r, s) < 0) {
        free(s.lit);
        pc_conn_close(c, "out of memory for a reply");
        return;
    }
    memcpy(s.lit, lit->data, lit->len);
    pc_response_t a = {.op = PC_OP_PING, .id = ++r->next_rid, .status = PC_ST_OK};
    pc_conn_answer(c, &a);
}

static pc_buf_t *tmp(cmdctx_t *x)
{
    pc_buf_reset(&x->r->tmp);
    return &x->r->tmp;
}

static void reply_error(cmdctx_t *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_error(cmdctx_t *x, const char *fmt, ...)
{
    char line[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pc_buf_t *b = tmp(x);
    if (pc_resp_error(b, line) < 0) {
        pc_conn_close(x->c, "out of memory for a reply");
        return;
    }
    reply_lit(x, b);
}

static void reply_ok(cmdctx_t *x)
{
    pc_buf_t *b = tmp(x);
    (void)pc_resp_simple(b, "OK");
    reply_lit(x, b);
}

static void syntax_error(cmdctx_t *x) { reply_error(x, "ERR syntax error"); }

/* Makes a request of c's: its slot first (the answer may come at once). */
static int submit(cmdctx_t *x, pc_request_t *rq, uint8_t kind, int last, uint8_t *lit,
                  size_t litlen)
{
    slot_t s = {.kind = kind, .r3 = (uint8_t)x->r->r3, .last = (uint8_t)last, .lit = lit,
                .litlen = litlen};
    if (rq->op == PC_OP_SET || rq->op == PC_OP_DEL || rq->op == PC_OP_TOUCH)
        write_out(x->r, &s, &rq->key);
    if (q_push(x->r, s) < 0) {
        free(lit);
        pc_conn_close(x->c, "out of memory for a request");
        return PC_ENOMEM;
    }
    rq->id = ++x->r->next_rid;
    pc_dispatch_request(x->c, rq);
    return x->c->closing ? PC_ECLOSED : 0;
}

static const pc_bytes_t *arg(cmdctx_t *x, uint32_t i) { return &x->cmd->argv[i]; }

static int arg_is(cmdctx_t *x, uint32_t i, const char *word)
{
    const pc_bytes_t *a = arg(x, i);
    size_t n = strlen(word);
    return a->len == n && strncasecmp((const char *)a->ptr, word, n) == 0;
}

/* A whole decimal integer, as Redis reads one. 0, or -1 (not one). */
static int arg_int(cmdctx_t *x, uint32_t i, int64_t *out)
{
    const pc_bytes_t *a = arg(x, i);
    char s[32];
    if (a->len == 0 || a->len >= sizeof s)
        return -1;
    memcpy(s, a->ptr, a->len);
    s[a->len] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != 0 || isspace((unsigned char)s[0]))
        return -1;
    *out = v;
    return 0;
}

/* A key the node can hold: 1..max_key bytes. 0, or an error replied. */
static int key_ok(cmdctx_t *x, const pc_bytes_t *k)
{
    if (k->len == 0) {
        reply_error(x, "ERR empty keys are not supported by peercache");
        return -1;
    }
    if (k->len > x->c->cs->set.proto.max_key) {
        reply_error(x, "ERR key of %u bytes is over max-key (%u)", k->len,
                    x->c->cs->set.proto.max_key);
        return -1;
    }
    return 0;
}

/* Every argument from the first after the name is a key. */
static int keys_ok(cmdctx_t *x)
{
    for (uint32_t i = 1; i < x->cmd->argc; i++)
        if (key_ok(x, arg(x, i)) < 0)
            return -1;
    return 0;
}

static int value_ok(cmdctx_t *x, const pc_bytes_t *v)
{
    if (v->len > x->c->cs->set.proto.max_value) {
        reply_error(x, "ERR value of %u bytes is over max-value (%u)", v->len,
                    x->c->cs->set.proto.max_value);
        return -1;
    }
    return 0;
}

/* The node's wall clock, Unix ms (EXAT, PXAT, EXPIREAT). */
static int64_t wall_ms(void) { return (int64_t)(pc_vclock_wall() >> 16); }

/* A time to live in ms from `v` in `unit_ms` units, absolute (since the
 * Unix epoch) or not. 1 = a TTL in *ttl; 0 = already past (the key is to
 * go now); -1 = not a valid expire time (replied). */
static int ttl_from(cmdctx_t *x, int64_t v, int64_t unit_ms, int absolute, uint64_t *ttl)
{
    if ((!absolute && v <= 0) || v < 0 || v > (int64_t)(PC_PROTO_MAX_TTL_MS / (uint64_t)unit_ms)) {
        if (!absolute && v <= 0 && (strcmp(x->name, "expire") == 0 ||
                                    strcmp(x->name, "pexpire") == 0))
            return 0; /* EXPIRE k 0: Redis deletes the key */
        reply_error(x, "ERR invalid expire time in '%s' command", x->name);
        return -1;
    }
    int64_t ms = v * unit_ms;
    if (absolute) {
        ms -= wall_ms();
        if (ms <= 0)
            return 0;
    }
    *ttl = (uint64_t)ms;
    return 1;
}

/* GET, TTL, PTTL */
static void cmd_get(cmdctx_t *x)
{
    if (key_ok(x, arg(x, 1)) < 0)
        return;
    pc_request_t rq = {.op = PC_OP_GET, .key = *arg(x, 1)};
    uint8_t kind = strcmp(x->name, "ttl") == 0 ? K_TTL : strcmp(x->name, "pttl") == 0 ? K_PTTL
                                                                                         : K_GET;
    (void)submit(x, &rq, kind, 1, NULL, 0);
}

/* SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] */
static void cmd_set(cmdctx_t *x)
{
    const pc_bytes_t *k = arg(x, 1), *v = arg(x, 2);
    uint32_t cond = PC_COND_NONE;
    int get = 0, has_ttl = 0, gone = 0;
    uint64_t ttl = 0;
    for (uint32_t i = 3; i < x->cmd->argc; i++) {
        if (arg_is(x, i, "NX") && cond == PC_COND_NONE) {
            cond = PC_COND_NX;
        } else if (arg_is(x, i, "XX") && cond == PC_COND_NONE) {
            cond = PC_COND_XX;
        } else if (arg_is(x, i, "GET") && !get) {
            get = 1;
        } else if (arg_is(x, i, "KEEPTTL")) {
            reply_error(x, "ERR SET KEEPTTL is not supported by peercache (docs/REDIS.md)");
            return;
        } else if ((arg_is(x, i, "EX") || arg_is(x, i, "PX") || arg_is(x, i, "EXAT") ||
                    arg_is(x, i, "PXAT")) &&
                   !has_ttl && i + 1 < x->cmd->argc) {
            int64_t n;
            int ms = arg_is(x, i, "PX") || arg_is(x, i, "PXAT");
            int at = arg_is(x, i, "EXAT") || arg_is(x, i, "PXAT");
            if (arg_int(x, ++i, &n) < 0) {
                reply_error(x, "ERR value is not an integer or out of range");
                return;
            }
            int t = ttl_from(x, n, ms ? 1 : 1000, at, &ttl);
            if (t < 0)
                return;
            gone = t == 0;
            has_ttl = 1;
        } else {
            syntax_error(x);
            return;
        }
    }
    if (key_ok(x, k) < 0 || value_ok(x, v) < 0)
        return;
    pc_request_t rq = {.op = PC_OP_SET, .key = *k, .value = *v, .ttl_ms = ttl, .cond = cond};
    if (gone && cond == PC_COND_NONE) {
        /* EXAT or PXAT already past: Redis stores the key and it is gone
         * at once -- a delete. */
        rq = (pc_request_t){.op = PC_OP_DEL, .key = *k};
        if (!get) {
            (void)submit(x, &rq, K_GONE, 1, NULL, 0);
            return;
        }
    } else if (gone) { /* with NX or XX the condition decides: stored, 1 ms to live */
        rq.ttl_ms = 1;
    }
    if (get) {
        pc_request_t g = {.op = PC_OP_GET, .key = *k};
        if (submit(x, &g, K_SAVE, 0, NULL, 0) < 0)
            return;
        (void)submit(x, &rq, K_SET_SAVED, 1, NULL, 0);
        return;
    }
    (void)submit(x, &rq, K_SET, 1, NULL, 0);
}

/* SETEX key seconds value, PSETEX key ms value */
static void cmd_setex(cmdctx_t *x)
{
    int64_t n;
    uint64_t ttl = 0;
    if (arg_int(x, 2, &n) < 0) {
        reply_error(x, "ERR value is not an integer or out of range");
        return;
    }
    if (ttl_from(x, n, x->name[0] == 'p' ? 1 : 1000, 0, &ttl) < 1)
        return;
    if (key_ok(x, arg(x, 1)) < 0 || value_ok(x, arg(x, 3)) < 0)
        return;
    pc_request_t rq = {.op = PC_OP_SET, .key = *arg(x, 1), .value = *arg(x, 3), .ttl_ms = ttl};
    (void)submit(x, &rq, K_SET, 1, NULL, 0);
}

/* DEL, UNLINK: one native DEL per key, counted. */
static void cmd_del(cmdctx_t *x)
{
    if (keys_ok(x) < 0)
        return;
    for (uint32_t i = 1; i < x->cmd->argc; i++) {
        pc_request_t rq = {.op = PC_OP_DEL, .key = *arg(x, i)};
        if (submit(x, &rq, K_COUNT, i + 1 == x->cmd->argc, NULL, 0) < 0)
            return;
    }
}

/* MGET, EXISTS, TOUCH: one native MGET. */
static void cmd_mget(cmdctx_t *x)
{
    uint32_t n = x->cmd->argc - 1, max = x->c->cs->set.proto.max_mget_keys;
    if (n > max) {
        reply_error(x, "ERR %s of %u keys is over max-mget-keys (%u)", x->name, n, max);
        return;
    }
    if (keys_ok(x) < 0)
        return;
    pc_request_t rq = {.op = PC_OP_MGET, .nkeys = n, .keys = x->cmd->argv + 1};
    (void)submit(x, &rq, strcmp(x->name, "mget") == 0 ? K_MGET : K_MGET_NUM, 1, NULL, 0);
}

/* MSET k v [k v ...]: one native SET per pair; not atomic. */
static void cmd_mset(cmdctx_t *x)
{
    if (x->cmd->argc % 2 != 1) {
        reply_error(x, "ERR wrong number of arguments for 'mset' command");
        return;
    }
    for (uint32_t i = 1; i < x->cmd->argc; i += 2)
        if (key_ok(x, arg(x, i)) < 0 || value_ok(x, arg(x, i + 1)) < 0)
            return;
    for (uint32_t i = 1; i < x->cmd->argc; i += 2) {
        pc_request_t rq = {.op = PC_OP_SET, .key = *arg(x, i), .value = *arg(x, i + 1)};
        if (submit(x, &rq, K_MSET, i + 2 >= x->cmd->argc, NULL, 0) < 0)
            return;
    }
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key n; PERSIST key */
static void cmd_expire(cmdctx_t *x)
{
    if (key_ok(x, arg(x, 1)) < 0)
        return;
    uint64_t ttl = 0; /* PERSIST: no expiry */
    if (strcmp(x->name, "persist") != 0) {
        if (x->cmd->argc > 3) {
            reply_error(x, "ERR %s options (NX, XX, GT, LT) are not supported by peercache",
                        x->name);
            return;
        }
        int64_t n;
        if (arg_int(x, 2, &n) < 0) {
            reply_error(x, "ERR value is not an integer or out of range");
            return;
        }
        int ms = x->name[0] == 'p';
        int at = strstr(x->name, "at") != NULL;
        int t = ttl_from(x, n, ms ? 1 : 1000, at, &ttl);
        if (t < 0)
            return;
        if (t == 0) { /* a time already past: the key goes now */
            pc_request_t d = {.op = PC_OP_DEL, .key = *arg(x, 1)};
            (void)submit(x, &d, K_COUNT, 1, NULL, 0);
            return;
        }
    }
    pc_request_t rq = {.op = PC_OP_TOUCH, .key = *arg(x, 1), .ttl_ms = ttl};
    (void)submit(x, &rq, K_COUNT, 1, NULL, 0);
}

/* GETDEL key: GET, then DEL. */
static void cmd_getdel(cmdctx_t *x)
{
    if (key_ok(x, arg(x, 1)) < 0)
        return;
    pc_request_t g = {.op = PC_OP_GET, .key = *arg(x, 1)};
    pc_request_t d = {.op = PC_OP_DEL, .key = *arg(x, 1)};
    if (submit(x, &g, K_SAVE, 0, NULL, 0) == 0)
        (void)submit(x, &d, K_RET_SAVED, 1, NULL, 0);
}

/* GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]: GET, then TOUCH. */
static void cmd_getex(cmdctx_t *x)
{
    const pc_bytes_t *k = arg(x, 1);
    uint64_t ttl = 0;
    int touch = 0, gone = 0;
    if (x->cmd->argc == 3 && arg_is(x, 2, "PERSIST")) {
        touch = 1;
    } else if (x->cmd->argc == 4 && (arg_is(x, 2, "EX") || arg_is(x, 2, "PX") ||
                                     arg_is(x, 2, "EXAT") || arg_is(x, 2, "PXAT"))) {
        int64_t n;
        if (arg_int(x, 3, &n) < 0) {
            reply_error(x, "ERR value is not an integer or out of range");
            return;
        }
        int ms = arg_is(x, 2, "PX") || arg_is(x, 2, "PXAT");
        int at = arg_is(x, 2, "EXAT") || arg_is(x, 2, "PXAT");
        int t = ttl_from(x, n, ms ? 1 : 1000, at, &ttl);
        if (t < 0)
            return;
        gone = t == 0;
        touch = 1;
    } else if (x->cmd->argc != 2) {
        syntax_error(x);
        return;
    }
    if (key_ok(x, k) < 0)
        return;
    pc_request_t g = {.op = PC_OP_GET, .key = *k};
    if (!touch) {
        (void)submit(x, &g, K_GET, 1, NULL, 0);
        return;
    }
    if (submit(x, &g, K_SAVE, 0, NULL, 0) < 0)
        return;
    pc_request_t t = gone ? (pc_request_t){.op = PC_OP_DEL, .key = *k}
                          : (pc_request_t){.op = PC_OP_TOUCH, .key = *k, .ttl_ms = ttl};
    (void)submit(x, &t, K_RET_SAVED, 1, NULL, 0);
}

static void cmd_ping(cmdctx_t *x)
{
    pc_buf_t *b = tmp(x);
    if (x->cmd->argc == 2)
        (void)pc_resp_bulk(b, arg(x, 1)->ptr, arg(x, 1)->len);
    else
        (void)pc_resp_simple(b, "PONG");
    reply_lit(x, b);
}

static void cmd_echo(cmdctx_t *x)
{
    pc_buf_t *b = tmp(x);
    (void)pc_resp_bulk(b, arg(x, 1)->ptr, arg(x, 1)->len);
    reply_lit(x, b);
}

static void cmd_select(cmdctx_t *x)
{
    int64_t db;
    if (arg_int(x, 1, &db) < 0)
        reply_error(x, "ERR value is not an integer or out of range");
    else if (db != 0)
        reply_error(x, "ERR DB index is out of range");
    else
        reply_ok(x);
}

static void cmd_quit(cmdctx_t *x)
{
    reply_ok(x);
    x->c->eof = 1; /* what is asked is answered, then the connection closes */
}

/* AUTH [user] password: the node's token, as a native HELLO. */
static int auth_as_hello(cmdctx_t *x, const pc_bytes_t *user, const pc_bytes_t *pass,
                         uint8_t kind, uint8_t *lit, size_t litlen)
{
    if (user != NULL && !(user->len == 7 && memcmp(user->ptr, "default", 7) == 0)) {
        free(lit);
        reply_error(x, "WRONGPASS invalid username-password pair or user is disabled.");
        return -1;
    }
    if (!pc_auth_required(x->c)) {
        /* As Redis' default user without a password: a user name and
         * any password are taken; a password alone is a mistake. */
        if (user == NULL) {
            free(lit);
            reply_error(x, "ERR AUTH <password> called without any password configured for "
                           "the default user. Are you sure your configuration is correct?");
            return -1;
        }
        pc_buf_t *b = tmp(x);
        if (kind == K_HELLO)
            (void)pc_buf_append(b, lit, litlen);
        else
            (void)pc_resp_simple(b, "OK");
        free(lit);
        reply_lit(x, b);
        return 0;
    }
    pc_request_t rq = {.op = PC_OP_HELLO, .proto_version = PC_PROTO_VERSION, .token = *pass};
    return submit(x, &rq, kind, 1, lit, litlen);
}

static void cmd_auth(cmdctx_t *x)
{
    if (x->cmd->argc > 3) {
        syntax_error(x);
        return;
    }
    (void)auth_as_hello(x, x->cmd->argc == 3 ? arg(x, 1) : NULL, arg(x, x->cmd->argc - 1),
                        K_AUTH, NULL, 0);
}

static int put_str(pc_buf_t *b, const char *s) { return pc_resp_bulk(b, s, strlen(s)); }

/* HELLO [protover [AUTH user pass] [SETNAME name]] */
static void cmd_hello(cmdctx_t *x)
{
    redis_conn_t *r = x->r;
    int proto = r->r3 ? 3 : 2;
    const pc_bytes_t *user = NULL, *pass = NULL, *name = NULL;
    if (x->cmd->argc >= 2) {
        int64_t v;
        if (arg_int(x, 1, &v) < 0) {
            reply_error(x, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (v != 2 && v != 3) {
            reply_error(x, "NOPROTO unsupported protocol version");
            return;
        }
        proto = (int)v;
    }
    for (uint32_t i = 2; i < x->cmd->argc; i++) {
        if (arg_is(x, i, "AUTH") && i + 2 < x->cmd->argc) {
            user = arg(x, i + 1);
            pass = arg(x, i + 2);
            i += 2;
        } else if (arg_is(x, i, "SETNAME") && i + 1 < x->cmd->argc) {
            name = arg(x, ++i);
        } else {
            reply_error(x, "ERR Syntax error in HELLO option '%.*s'", (int)arg(x, i)->len,
                        (const char *)arg(x, i)->ptr);
            return;
        }
    }
    if (!x->c->authed && pass == NULL) {
        reply_error(x, "NOAUTH HELLO must be called with the client already authenticated, "
                       "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                       "authenticate the client and select the RESP protocol version at the "
                       "same time");
        return;
    }
    if (name != NULL) {
        char *nn = strndup((const char *)name->ptr, name->len);
        if (nn == NULL) {
            pc_conn_close(x->c, "out of memory");
            return;
        }
        free(r->name);
        r->name = nn;
    }
    r->r3 = proto == 3;
    pc_buf_t *b = tmp(x);
    (void)pc_resp_map(b, 7, r->r3);
    (void)put_str(b, "server");
    (void)put_str(b, "peercache");
    (void)put_str(b, "version");
    (void)put_str(b, PC_VERSION_STRING);
    (void)put_str(b, "proto");
    (void)pc_resp_int(b, proto);
    (void)put_str(b, "id");
    (void)pc_resp_int(b, (int64_t)r->id);
    (void)put_str(b, "mode");
    (void)put_str(b, "standalone");
    (void)put_str(b, "role");
    (void)put_str(b, "master");
    (void)put_str(b, "modules");
    (void)pc_resp_array(b, 0);
    if (pass == NULL) {
        reply_lit(x, b);
        return;
    }
    uint8_t *lit = malloc(b->len);
    if (lit == NULL) {
        pc_conn_close(x->c, "out of memory");
        return;
    }
    memcpy(lit, b->data, b->len);
    (void)auth_as_hello(x, user, pass, K_HELLO, lit, b->len);
}

static void client_info_line(cmdctx_t *x, pc_buf_t *b)
{
    char line[512];
    int n = snprintf(line, sizeof line,
                     "id=%" PRIu64 " addr=%s laddr= fd=0 name=%s age=0 idle=0 flags=N db=0 "
                     "sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 "
                     "rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client user=default "
                     "redir=-1 resp=%d\n",
                     x->r->id, x->c->peer, x->r->name ? x->r->name : "", x->r->r3 ? 3 : 2);
    (void)pc_resp_bulk(b, line, n > 0 && (size_t)n < sizeof line ? (size_t)n : 0);
}

/* CLIENT SETNAME|GETNAME|ID|INFO|LIST|SETINFO */
static void cmd_client(cmdctx_t *x)
{
    redis_conn_t *r = x->r;
    pc_buf_t *b = tmp(x);
    if (arg_is(x, 1, "SETNAME") && x->cmd->argc == 3) {
        const pc_bytes_t *n = arg(x, 2);
        for (uint32_t i = 0; i < n->len; i++)
            if (n->ptr[i] <= ' ' || n->ptr[i] > '~') {
                reply_error(x, "ERR Client names cannot contain spaces, newlines or special "
                               "characters.");
                return;
            }
        free(r->name);
        r->name = n->len ? strndup((const char *)n->ptr, n->len) : NULL;
        reply_ok(x);
    } else if (arg_is(x, 1, "GETNAME") && x->cmd->argc == 2) {
        if (r->name != NULL)
            (void)put_str(b, r->name);
        else
            (void)pc_resp_null(b, r->r3);
        reply_lit(x, b);
    } else if (arg_is(x, 1, "ID") && x->cmd->argc == 2) {
        (void)pc_resp_int(b, (int64_t)r->id);
        reply_lit(x, b);
    } else if ((arg_is(x, 1, "INFO") || arg_is(x, 1, "LIST")) && x->cmd->argc == 2) {
        client_info_line(x, b);
        reply_lit(x, b);
    } else if (arg_is(x, 1, "SETINFO") && x->cmd->argc == 4) {
        reply_ok(x);
    } else {
        reply_error(x, "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try "
                       "CLIENT HELP.",
                    (int)(arg(x, 1)->len > 64 ? 64 : arg(x, 1)->len),
                    (const char *)arg(x, 1)->ptr);
    }
}

/* COMMAND [COUNT|DOCS|INFO ...]: enough for clients' start-up. */
static void cmd_command(cmdctx_t *x);

/* CONFIG GET name...: "save" and "appendonly" (what redis-benchmark asks
 * at start: nothing is saved here); any other name is not shown. */
static void cmd_config(cmdctx_t *x)
{
    pc_buf_t *b = tmp(x);
    if (arg_is(x, 1, "GET")) {
        int save = 0, aof = 0;
        for (uint32_t i = 2; i < x->cmd->argc; i++) {
            save |= arg_is(x, i, "save");
            aof |= arg_is(x, i, "appendonly");
        }
        (void)pc_resp_map(b, (size_t)(save + aof), x->r->r3);
        if (save) {
            (void)put_str(b, "save");
            (void)put_str(b, "");
        }
        if (aof) {
            (void)put_str(b, "appendonly");
            (void)put_str(b, "no");
        }
        reply_lit(x, b);
        return;
    }
    reply_error(x, "ERR CONFIG %.*s is not supported by peercache (only CONFIG GET, which "
                   "shows nothing)",
                (int)(arg(x, 1)->len > 64 ? 64 : arg(x, 1)->len), (const char *)arg(x, 1)->ptr);
}

static void cmd_dbsize(cmdctx_t *x)
{
    pc_request_t rq = {.op = PC_OP_STATS};
    (void)submit(x, &rq, K_DBSIZE, 1, NULL, 0);
}

static void cmd_info(cmdctx_t *x)
{
    /* The sections asked, lower case, each followed by a space. */
    size_t n = 0;
    for (uint32_t i = 1; i < x->cmd->argc; i++)
        n += arg(x, i)->len + 1;
    uint8_t *lit = malloc(n + 1);
    if (lit == NULL) {
        pc_conn_close(x->c, "out of memory");
        return;
    }
    size_t at = 0;
    for (uint32_t i = 1; i < x->cmd->argc; i++) {
        for (uint32_t j = 0; j < arg(x, i)->len; j++)
            lit[at++] = (uint8_t)tolower(arg(x, i)->ptr[j]);
        lit[at++] = ' ';
    }
    pc_request_t rq = {.op = PC_OP_STATS};
    (void)submit(x, &rq, K_INFO, 1, lit, at);
}

static void cmd_unsupported(cmdctx_t *x)
{
    reply_error(x, "ERR %s is not supported by peercache: it cannot be made atomic through the "
                   "cache tier (docs/REDIS.md)",
                x->name);
}

typedef struct command {
    const char *name;
    int arity; /* as Redis counts: n = exactly n arguments with the name, -n = at least n */
    void (*fn)(cmdctx_t *x);
    int noauth; /* allowed before AUTH */
    int reads;  /* the keys it reads: R_KEY argv[1], R_KEYS argv[1..], R_SET with GET */
} command_t;

enum { R_NONE = 0, R_KEY, R_KEYS, R_SET };

static const command_t commands[] = {
    {"get", 2, cmd_get, 0, R_KEY},
    {"set", -3, cmd_set, 0, R_SET},
    {"setex", 4, cmd_setex, 0, R_NONE},
    {"psetex", 4, cmd_setex, 0, R_NONE},
    {"del", -2, cmd_del, 0, R_NONE},
    {"unlink", -2, cmd_del, 0, R_NONE},
    {"exists", -2, cmd_mget, 0, R_KEYS},
    {"touch", -2, cmd_mget, 0, R_KEYS},
    {"mget", -2, cmd_mget, 0, R_KEYS},
    {"mset", -3, cmd_mset, 0, R_NONE},
    {"expire", -3, cmd_expire, 0, R_NONE},
    {"pexpire", -3, cmd_expire, 0, R_NONE},
    {"expireat", -3, cmd_expire, 0, R_NONE},
    {"pexpireat", -3, cmd_expire, 0, R_NONE},
    {"persist", 2, cmd_expire, 0, R_NONE},
    {"ttl", 2, cmd_get, 0, R_KEY},
    {"pttl", 2, cmd_get, 0, R_KEY},
    {"getdel", 2, cmd_getdel, 0, R_KEY},
    {"getex", -2, cmd_getex, 0, R_KEY},
    {"incr", 2, cmd_unsupported, 0, R_NONE},
    {"decr", 2, cmd_unsupported, 0, R_NONE},
    {"incrby", 3, cmd_unsupported, 0, R_NONE},
    {"decrby", 3, cmd_unsupported, 0, R_NONE},
    {"incrbyfloat", 3, cmd_unsupported, 0, R_NONE},
    {"append", 3, cmd_unsupported, 0, R_NONE},
    {"ping", -1, cmd_ping, 0, R_NONE},
    {"echo", 2, cmd_echo, 0, R_NONE},
    {"select", 2, cmd_select, 0, R_NONE},
    {"quit", -1, cmd_quit, 1, R_NONE},
    {"auth", -2, cmd_auth, 1, R_NONE},
    {"hello", -1, cmd_hello, 1, R_NONE},
    {"client", -2, cmd_client, 0, R_NONE},
    {"info", -1, cmd_info, 0, R_NONE},
    {"dbsize", 1, cmd_dbsize, 0, R_NONE},
    {"command", -1, cmd_command, 0, R_NONE},
    {"config", -2, cmd_config, 0, R_NONE},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void cmd_command(cmdctx_t *x)
{
    pc_buf_t *b = tmp(x);
    if (x->cmd->argc >= 2 && arg_is(x, 1, "COUNT"))
        (void)pc_resp_int(b, (int64_t)NCOMMANDS);
    else if (x->cmd->argc >= 2 && arg_is(x, 1, "DOCS"))
        (void)pc_resp_map(b, 0, x->r->r3);
    else
        (void)pc_resp_array(b, 0);
    reply_lit(x, b);
}

static const command_t *lookup(const pc_bytes_t *name)
{
    if (name->len == 0 || name->len > 16)
        return NULL;
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strlen(commands[i].name) == name->len &&
            strncasecmp(commands[i].name, (const char *)name->ptr, name->len) == 0)
            return &commands[i];
    return NULL;
}

/* The printable start of an argument, for an error line. */
static void quoted(char *out, size_t cap, const pc_bytes_t *a)
{
    size_t n = 0;
    for (uint32_t i = 0; i < a->len && n + 2 < cap && i < 64; i++)
        out[n++] = a->ptr[i] >= ' ' && a->ptr[i] <= '~' && a->ptr[i] != '\'' ? (char)a->ptr[i]
                                                                              : '?';
    out[n] = 0;
}

static void unknown_command(cmdctx_t *x)
{
    char name[72], args[200] = "";
    quoted(name, sizeof name, arg(x, 0));
    size_t at = 0;
    for (uint32_t i = 1; i < x->cmd->argc && at + 72 < sizeof args; i++) {
        char a[72];
        quoted(a, sizeof a, arg(x, i));
        at += (size_t)snprintf(args + at, sizeof args - at, "'%s' ", a);
    }
    reply_error(x, "ERR unknown command '%s', with args beginning with: %s", name, args);
}

/* Does command `cmd` read a key this connection's writes still hold? */
static int reads_own_write(const redis_conn_t *r, const command_t *k, const pc_resp_cmd_t *cmd)
{
    if (k->reads == R_SET) {
        int get = 0;
        for (uint32_t i = 3; i < cmd->argc; i++)
            get |= cmd->argv[i].len == 3 &&
                   strncasecmp((const char *)cmd->argv[i].ptr, "GET", 3) == 0;
        if (!get)
            return 0;
    }
    return read_waits(r, &cmd->argv[1], k->reads == R_KEYS ? cmd->argc - 1 : 1);
}

int pc_redis_command(pc_conn_t *c, const uint8_t *in, size_t n, size_t *used)
{
    redis_conn_t *r = rc_of(c);
    pc_loop_t *l = pc_loop_of(c);
    pc_resp_cmd_t cmd;
    int rc = pc_resp_parse(&r->parser, in, n, &cmd, used);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        pc_conn_bad_frame(c, rc == PC_ETOOBIG ? PC_ST_TOO_LARGE : PC_ST_BAD_REQUEST,
                          pc_resp_why(&r->parser)); /* "Protocol error: ..." */
        return rc;
    }
    if (cmd.argc == 0) /* an empty inline line */
        return 1;
    const command_t *k = lookup(&cmd.argv[0]);
    if (k != NULL && k->reads != R_NONE && cmd.argc >= 2 && r->nw + r->wover > 0 &&
        reads_own_write(r, k, &cmd))
        return 2; /* read again when this connection's writes are answered */
    l->stats.redis_commands++;
    cmdctx_t x = {.c = c, .r = r, .cmd = &cmd};
    if (k == NULL) {
        x.name = "?";
        unknown_command(&x);
        return 1;
    }
    x.name = k->name;
    if ((k->arity > 0 && cmd.argc != (uint32_t)k->arity) ||
        (k->arity < 0 && cmd.argc < (uint32_t)-k->arity)) {
        reply_error(&x, "ERR wrong number of arguments for '%s' command", k->name);
        return 1;
    }
    if (!c->authed && !k->noauth) {
        l->stats.auth_refused++;
        reply_error(&x, "NOAUTH Authentication required.");
        return 1;
    }
    k->fn(&x);
    if (c->eof) /* QUIT: nothing after it is read */
        *used = n;
    return 1;
}

/* ---- INFO ---------------------------------------------------------------- */

static int want_section(const slot_t *s, const char *name, int in_default)
{
    if (s->litlen == 0)
        return in_default;
    const char *p = (const char *)s->lit, *end = p + s->litlen;
    size_t n = strlen(name);
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        size_t len = (size_t)(sp - p);
        if ((len == n && memcmp(p, name, n) == 0) || (len == 3 && memcmp(p, "all", 3) == 0) ||
            (len == 10 && memcmp(p, "everything", 10) == 0) ||
            (len == 7 && memcmp(p, "default", 7) == 0 && in_default))
            return 1;
        p = sp + 1;
    }
    return 0;
}

static int put_info(pc_conn_t *c, pc_buf_t *b, const slot_t *s, const pc_response_t *st)
{
    pc_loop_t *l = pc_loop_of(c);
    pc_buf_t t;
    pc_buf_init(&t, 0);
    char line[256];
#define LINE(...)                                                                                  \
    do {                                                                                           \
        int n_ = snprintf(line, sizeof line, __VA_ARGS__);                                         \
        if (n_ > 0)                                                                                \
            (void)pc_buf_append(&t, line, (size_t)n_ < sizeof line ? (size_t)n_ : 0);             \
    } while (0)
    if (want_section(s, "server", 1)) {
        LINE("# Server\r\nredis_version:7.0.0\r\npeercache_version:%s\r\nredis_mode:standalone\r\n"
             "arch_bits:%d\r\nrun_id:%s\r\nuptime_in_seconds:%" PRId64 "\r\n\r\n",
             PC_VERSION_STRING, (int)(sizeof(void *) * 8), l->name, stat_of(st, "uptime_s"));
    }
    if (want_section(s, "clients", 1))
        LINE("# Clients\r\nconnected_clients:%" PRId64 "\r\n\r\n", stat_of(st, "connections"));
    if (want_section(s, "memory", 1))
        LINE("# Memory\r\nused_memory:%" PRId64 "\r\nmaxmemory:%" PRId64
             "\r\nmaxmemory_policy:peercache\r\n\r\n",
             stat_of(st, "bytes"), stat_of(st, "memory_limit"));
    if (want_section(s, "stats", 1))
        LINE("# Stats\r\ntotal_connections_received:%" PRId64
             "\r\ntotal_commands_processed:%" PRId64 "\r\nkeyspace_hits:%" PRId64
             "\r\nkeyspace_misses:%" PRId64 "\r\nevicted_keys:%" PRId64
             "\r\nexpired_keys:%" PRId64 "\r\n\r\n",
             stat_of(st, "connections_total"), stat_of(st, "redis_commands"),
             stat_of(st, "hits"), stat_of(st, "misses"), stat_of(st, "evictions"),
             stat_of(st, "expirations"));
    if (want_section(s, "replication", 1))
        LINE("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
    if (want_section(s, "keyspace", 1))
        LINE("# Keyspace\r\ndb0:keys=%" PRId64 ",expires=0,avg_ttl=0\r\n\r\n",
             stat_of(st, "items"));
    if (want_section(s, "peercache", 0)) {
        LINE("# Peercache\r\n");
        for (uint32_t i = 0; i < st->nstats; i++)
            LINE("%.*s:%" PRId64 "\r\n", (int)st->stats[i].name.len,
                 (const char *)st->stats[i].name.ptr, st->stats[i].value);
        LINE("\r\n");
    }
#undef LINE
    size_t n = t.len >= 2 ? t.len - 2 : 0;
    int rc;
    if (s->r3) { /* a verbatim string, as Redis sends INFO in RESP3 */
        char head[32];
        int h = snprintf(head, sizeof head, "=%zu\r\ntxt:", n + 4);
        rc = pc_buf_append(b, head, (size_t)h);
        if (rc == 0 && n > 0)
            rc = pc_buf_append(b, t.data, n);
        if (rc == 0)
            rc = pc_buf_append(b, "\r\n", 2);
    } else {
        rc = n > 0 ? pc_resp_bulk(b, t.data, n) : pc_resp_bulk(b, "", 0);
    }
    pc_buf_free(&t);
    return rc;
}
