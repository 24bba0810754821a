/*
 * pc_redis_int.h -- what the two files of the Redis front door share
 * (private to node/pc_redis.c and node/pc_redis_cmd.c; pc_redis.h is the
 * module's contract).
 *
 *   pc_redis.c      the connection's state, the reply slots, rendering
 *                   answers as Redis replies, reading a command and
 *                   dispatching it through the command table.
 *   pc_redis_cmd.c  the command table and each command: its arguments
 *                   checked, made into the node's requests (pc_redis_submit)
 *                   or answered here (pc_redis_reply_lit).
 *
 * Thread rules: a connection's loop, as pc_redis.h.
 */
#ifndef PC_REDIS_INT_H
#define PC_REDIS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pc_conn.h"
#include "pc_resp.h"

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

typedef struct cmdctx {
    pc_conn_t *c;
    redis_conn_t *r;
    const pc_resp_cmd_t *cmd;
    const char *name; /* lower case, as the table has it */
} cmdctx_t;

typedef struct command {
    const char *name;
    int arity; /* as Redis counts: n = exactly n arguments with the name, -n = at least n */
    void (*fn)(cmdctx_t *x);
    int noauth; /* allowed before AUTH */
    int reads;  /* the keys it reads: R_KEY argv[1], R_KEYS argv[1..], R_SET with GET */
} command_t;

enum { R_NONE = 0, R_KEY, R_KEYS, R_SET };

/* ---- pc_redis.c, for the commands ---------------------------------------- */

/* The connection's buffer for a literal reply (emptied). */
pc_buf_t *pc_redis_tmp(cmdctx_t *x);

/* A reply made here (lit, copied), leaving in its turn: straight out when
 * nothing is ahead of it, else as a slot behind the answers ahead. Out of
 * memory closes the connection. */
void pc_redis_reply_lit(cmdctx_t *x, const pc_buf_t *lit);

/* "-<fmt...>" as a literal reply; fmt starts with the error code. */
void pc_redis_reply_error(cmdctx_t *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One of the node's requests for the command: its slot (rendered as
 * `kind`; `last` = the command's last answer; lit owned by the slot)
 * queued first, then rq dispatched (rq->id is set here). 0, or PC_ENOMEM
 * / PC_ECLOSED when the connection was closed. */
int pc_redis_submit(cmdctx_t *x, pc_request_t *rq, uint8_t kind, int last, uint8_t *lit,
                    size_t litlen);

/* ---- pc_redis_cmd.c, for the reading ------------------------------------- */

/* The command named `name` (any case), or NULL. */
const command_t *pc_redis_lookup(const pc_bytes_t *name);

/* -ERR unknown command '...', with args beginning with: ... */
void pc_redis_unknown(cmdctx_t *x);

#endif
