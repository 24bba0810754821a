/*
 * pc_redis_cmd.c -- the Redis front door's commands (pc_redis_int.h):
 * each checked as Redis checks it, then made into the node's requests or
 * answered here. docs/REDIS.md is the table in prose.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pc_auth.h"
#include "pc_loop.h"
#include "pc_redis_int.h"
#include "pc_vclock.h"

static void reply_ok(cmdctx_t *x)
{
    pc_buf_t *b = pc_redis_tmp(x);
    (void)pc_resp_simple(b, "OK");
    pc_redis_reply_lit(x, b);
}

static void syntax_error(cmdctx_t *x) { pc_redis_reply_error(x, "ERR syntax error"); }

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
        pc_redis_reply_error(x, "ERR empty keys are not supported by peercache");
        return -1;
    }
    if (k->len > x->c->cs->set.proto.max_key) {
        pc_redis_reply_error(x, "ERR key of %u bytes is over max-key (%u)", k->len,
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
        pc_redis_reply_error(x, "ERR value of %u bytes is over max-value (%u)", v->len,
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
        pc_redis_reply_error(x, "ERR invalid expire time in '%s' command", x->name);
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
    (void)pc_redis_submit(x, &rq, kind, 1, NULL, 0);
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
            pc_redis_reply_error(x, "ERR SET KEEPTTL is not supported by peercache "
                                    "(docs/REDIS.md)");
            return;
        } else if ((arg_is(x, i, "EX") || arg_is(x, i, "PX") || arg_is(x, i, "EXAT") ||
                    arg_is(x, i, "PXAT")) &&
                   !has_ttl && i + 1 < x->cmd->argc) {
            int64_t n;
            int ms = arg_is(x, i, "PX") || arg_is(x, i, "PXAT");
            int at = arg_is(x, i, "EXAT") || arg_is(x, i, "PXAT");
            if (arg_int(x, ++i, &n) < 0) {
                pc_redis_reply_error(x, "ERR value is not an integer or out of range");
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
            (void)pc_redis_submit(x, &rq, K_GONE, 1, NULL, 0);
            return;
        }
    } else if (gone) { /* with NX or XX the condition decides: stored, 1 ms to live */
        rq.ttl_ms = 1;
    }
    if (get) {
        pc_request_t g = {.op = PC_OP_GET, .key = *k};
        if (pc_redis_submit(x, &g, K_SAVE, 0, NULL, 0) < 0)
            return;
        (void)pc_redis_submit(x, &rq, K_SET_SAVED, 1, NULL, 0);
        return;
    }
    (void)pc_redis_submit(x, &rq, K_SET, 1, NULL, 0);
}

/* SETEX key seconds value, PSETEX key ms value */
static void cmd_setex(cmdctx_t *x)
{
    int64_t n;
    uint64_t ttl = 0;
    if (arg_int(x, 2, &n) < 0) {
        pc_redis_reply_error(x, "ERR value is not an integer or out of range");
        return;
    }
    if (ttl_from(x, n, x->name[0] == 'p' ? 1 : 1000, 0, &ttl) < 1)
        return;
    if (key_ok(x, arg(x, 1)) < 0 || value_ok(x, arg(x, 3)) < 0)
        return;
    pc_request_t rq = {.op = PC_OP_SET, .key = *arg(x, 1), .value = *arg(x, 3), .ttl_ms = ttl};
    (void)pc_redis_submit(x, &rq, K_SET, 1, NULL, 0);
}

/* DEL, UNLINK: one native DEL per key, counted. */
static void cmd_del(cmdctx_t *x)
{
    if (keys_ok(x) < 0)
        return;
    for (uint32_t i = 1; i < x->cmd->argc; i++) {
        pc_request_t rq = {.op = PC_OP_DEL, .key = *arg(x, i)};
        if (pc_redis_submit(x, &rq, K_COUNT, i + 1 == x->cmd->argc, NULL, 0) < 0)
            return;
    }
}

/* MGET, EXISTS, TOUCH: one native MGET. */
static void cmd_mget(cmdctx_t *x)
{
    uint32_t n = x->cmd->argc - 1, max = x->c->cs->set.proto.max_mget_keys;
    if (n > max) {
        pc_redis_reply_error(x, "ERR %s of %u keys is over max-mget-keys (%u)", x->name, n, max);
        return;
    }
    if (keys_ok(x) < 0)
        return;
    pc_request_t rq = {.op = PC_OP_MGET, .nkeys = n, .keys = x->cmd->argv + 1};
    (void)pc_redis_submit(x, &rq, strcmp(x->name, "mget") == 0 ? K_MGET : K_MGET_NUM, 1, NULL, 0);
}

/* MSET k v [k v ...]: one native SET per pair; not atomic. */
static void cmd_mset(cmdctx_t *x)
{
    if (x->cmd->argc % 2 != 1) {
        pc_redis_reply_error(x, "ERR wrong number of arguments for 'mset' command");
        return;
    }
    for (uint32_t i = 1; i < x->cmd->argc; i += 2)
        if (key_ok(x, arg(x, i)) < 0 || value_ok(x, arg(x, i + 1)) < 0)
            return;
    for (uint32_t i = 1; i < x->cmd->argc; i += 2) {
        pc_request_t rq = {.op = PC_OP_SET, .key = *arg(x, i), .value = *arg(x, i + 1)};
        if (pc_redis_submit(x, &rq, K_MSET, i + 2 >= x->cmd->argc, NULL, 0) < 0)
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
            pc_redis_reply_error(x,
                                 "ERR %s options (NX, XX, GT, LT) are not supported by peercache",
                                 x->name);
            return;
        }
        int64_t n;
        if (arg_int(x, 2, &n) < 0) {
            pc_redis_reply_error(x, "ERR value is not an integer or out of range");
            return;
        }
        int ms = x->name[0] == 'p';
        int at = strstr(x->name, "at") != NULL;
        int t = ttl_from(x, n, ms ? 1 : 1000, at, &ttl);
        if (t < 0)
            return;
        if (t == 0) { /* a time already past: the key goes now */
            pc_request_t d = {.op = PC_OP_DEL, .key = *arg(x, 1)};
            (void)pc_redis_submit(x, &d, K_COUNT, 1, NULL, 0);
            return;
        }
    }
    pc_request_t rq = {.op = PC_OP_TOUCH, .key = *arg(x, 1), .ttl_ms = ttl};
    (void)pc_redis_submit(x, &rq, K_COUNT, 1, NULL, 0);
}

/* GETDEL key: GET, then DEL. */
static void cmd_getdel(cmdctx_t *x)
{
    if (key_ok(x, arg(x, 1)) < 0)
        return;
    pc_request_t g = {.op = PC_OP_GET, .key = *arg(x, 1)};
    pc_request_t d = {.op = PC_OP_DEL, .key = *arg(x, 1)};
    if (pc_redis_submit(x, &g, K_SAVE, 0, NULL, 0) == 0)
        (void)pc_redis_submit(x, &d, K_RET_SAVED, 1, NULL, 0);
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
            pc_redis_reply_error(x, "ERR value is not an integer or out of range");
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
        (void)pc_redis_submit(x, &g, K_GET, 1, NULL, 0);
        return;
    }
    if (pc_redis_submit(x, &g, K_SAVE, 0, NULL, 0) < 0)
        return;
    pc_request_t t = gone ? (pc_request_t){.op = PC_OP_DEL, .key = *k}
                          : (pc_request_t){.op = PC_OP_TOUCH, .key = *k, .ttl_ms = ttl};
    (void)pc_redis_submit(x, &t, K_RET_SAVED, 1, NULL, 0);
}

static void cmd_ping(cmdctx_t *x)
{
    pc_buf_t *b = pc_redis_tmp(x);
    if (x->cmd->argc == 2)
        (void)pc_resp_bulk(b, arg(x, 1)->ptr, arg(x, 1)->len);
    else
        (void)pc_resp_simple(b, "PONG");
    pc_redis_reply_lit(x, b);
}

static void cmd_echo(cmdctx_t *x)
{
    pc_buf_t *b = pc_redis_tmp(x);
    (void)pc_resp_bulk(b, arg(x, 1)->ptr, arg(x, 1)->len);
    pc_redis_reply_lit(x, b);
}

static void cmd_select(cmdctx_t *x)
{
    int64_t db;
    if (arg_int(x, 1, &db) < 0)
        pc_redis_reply_error(x, "ERR value is not an integer or out of range");
    else if (db != 0)
        pc_redis_reply_error(x, "ERR DB index is out of range");
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
        pc_redis_reply_error(x, "WRONGPASS invalid username-password pair or user is disabled.");
        return -1;
    }
    if (!pc_auth_required(x->c)) {
        /* As Redis' default user without a password: a user name and
         * any password are taken; a password alone is a mistake. */
        if (user == NULL) {
            free(lit);
            pc_redis_reply_error(x, "ERR AUTH <password> called without any password "
                                    "configured for the default user. Are you sure your "
                                    "configuration is correct?");
            return -1;
        }
        pc_buf_t *b = pc_redis_tmp(x);
        if (kind == K_HELLO)
            (void)pc_buf_append(b, lit, litlen);
        else
            (void)pc_resp_simple(b, "OK");
        free(lit);
        pc_redis_reply_lit(x, b);
        return 0;
    }
    pc_request_t rq = {.op = PC_OP_HELLO, .proto_version = PC_PROTO_VERSION, .token = *pass};
    return pc_redis_submit(x, &rq, kind, 1, lit, litlen);
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
            pc_redis_reply_error(x, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (v != 2 && v != 3) {
            pc_redis_reply_error(x, "NOPROTO unsupported protocol version");
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
            pc_redis_reply_error(x, "ERR Syntax error in HELLO option '%.*s'", (int)arg(x, i)->len,
                                 (const char *)arg(x, i)->ptr);
            return;
        }
    }
    if (!x->c->authed && pass == NULL) {
        pc_redis_reply_error(x, "NOAUTH HELLO must be called with the client already "
                                "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                                "option can be used to authenticate the client and select the "
                                "RESP protocol version at the same time");
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
    pc_buf_t *b = pc_redis_tmp(x);
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
        pc_redis_reply_lit(x, b);
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
    pc_buf_t *b = pc_redis_tmp(x);
    if (arg_is(x, 1, "SETNAME") && x->cmd->argc == 3) {
        const pc_bytes_t *n = arg(x, 2);
        for (uint32_t i = 0; i < n->len; i++)
            if (n->ptr[i] <= ' ' || n->ptr[i] > '~') {
                pc_redis_reply_error(x, "ERR Client names cannot contain spaces, newlines "
                                        "or special characters.");
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
        pc_redis_reply_lit(x, b);
    } else if (arg_is(x, 1, "ID") && x->cmd->argc == 2) {
        (void)pc_resp_int(b, (int64_t)r->id);
        pc_redis_reply_lit(x, b);
    } else if ((arg_is(x, 1, "INFO") || arg_is(x, 1, "LIST")) && x->cmd->argc == 2) {
        client_info_line(x, b);
        pc_redis_reply_lit(x, b);
    } else if (arg_is(x, 1, "SETINFO") && x->cmd->argc == 4) {
        reply_ok(x);
    } else {
        pc_redis_reply_error(x,
                             "ERR unknown subcommand or wrong number of arguments for '%.*s'. "
                             "Try CLIENT HELP.",
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
    pc_buf_t *b = pc_redis_tmp(x);
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
        pc_redis_reply_lit(x, b);
        return;
    }
    pc_redis_reply_error(x, "ERR CONFIG %.*s is not supported by peercache (only CONFIG GET)",
                         (int)(arg(x, 1)->len > 64 ? 64 : arg(x, 1)->len),
                         (const char *)arg(x, 1)->ptr);
}

static void cmd_dbsize(cmdctx_t *x)
{
    pc_request_t rq = {.op = PC_OP_STATS};
    (void)pc_redis_submit(x, &rq, K_DBSIZE, 1, NULL, 0);
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
    (void)pc_redis_submit(x, &rq, K_INFO, 1, lit, at);
}

static void cmd_unsupported(cmdctx_t *x)
{
    pc_redis_reply_error(x,
                         "ERR %s is not supported by peercache: it cannot be made atomic "
                         "through the cache tier (docs/REDIS.md)",
                         x->name);
}

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
    pc_buf_t *b = pc_redis_tmp(x);
    if (x->cmd->argc >= 2 && arg_is(x, 1, "COUNT"))
        (void)pc_resp_int(b, (int64_t)NCOMMANDS);
    else if (x->cmd->argc >= 2 && arg_is(x, 1, "DOCS"))
        (void)pc_resp_map(b, 0, x->r->r3);
    else
        (void)pc_resp_array(b, 0);
    pc_redis_reply_lit(x, b);
}

const command_t *pc_redis_lookup(const pc_bytes_t *name)
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

void pc_redis_unknown(cmdctx_t *x)
{
    char name[72], args[200] = "";
    quoted(name, sizeof name, arg(x, 0));
    size_t at = 0;
    for (uint32_t i = 1; i < x->cmd->argc && at + 72 < sizeof args; i++) {
        char a[72];
        quoted(a, sizeof a, arg(x, i));
        at += (size_t)snprintf(args + at, sizeof args - at, "'%s' ", a);
    }
    pc_redis_reply_error(x, "ERR unknown command '%s', with args beginning with: %s", name, args);
}
