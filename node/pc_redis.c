/*
 * pc_redis.c -- the Redis-protocol front door (pc_redis.h): the
 * connection, its reply slots, rendering answers, reading commands. The
 * commands themselves are in pc_redis_cmd.c (pc_redis_int.h).
 */
#include "pc_redis.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pc_dispatch.h"
#include "pc_loop.h"
#include "pc_loops.h"
#include "pc_redis_int.h"


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

/* ---- what the commands answer with (pc_redis_int.h) ------------------------ */

void pc_redis_reply_lit(cmdctx_t *x, const pc_buf_t *lit)
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

pc_buf_t *pc_redis_tmp(cmdctx_t *x)
{
    pc_buf_reset(&x->r->tmp);
    return &x->r->tmp;
}

void pc_redis_reply_error(cmdctx_t *x, const char *fmt, ...)
{
    char line[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pc_buf_t *b = pc_redis_tmp(x);
    if (pc_resp_error(b, line) < 0) {
        pc_conn_close(x->c, "out of memory for a reply");
        return;
    }
    pc_redis_reply_lit(x, b);
}

/* The slot is queued before the request goes: the answer may come at once. */
int pc_redis_submit(cmdctx_t *x, pc_request_t *rq, uint8_t kind, int last, uint8_t *lit,
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

/* ---- reading commands ---------------------------------------------------- */

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
    const command_t *k = pc_redis_lookup(&cmd.argv[0]);
    if (k != NULL && k->reads != R_NONE && cmd.argc >= 2 && r->nw + r->wover > 0 &&
        reads_own_write(r, k, &cmd))
        return 2; /* read again when this connection's writes are answered */
    l->stats.redis_commands++;
    cmdctx_t x = {.c = c, .r = r, .cmd = &cmd};
    if (k == NULL) {
        x.name = "?";
        pc_redis_unknown(&x);
        return 1;
    }
    x.name = k->name;
    if ((k->arity > 0 && cmd.argc != (uint32_t)k->arity) ||
        (k->arity < 0 && cmd.argc < (uint32_t)-k->arity)) {
        pc_redis_reply_error(&x, "ERR wrong number of arguments for '%s' command", k->name);
        return 1;
    }
    if (!c->authed && !k->noauth) {
        l->stats.auth_refused++;
        pc_redis_reply_error(&x, "NOAUTH Authentication required.");
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
