/*
 * pc_rscript.h -- the Lua scripts a node runs in Redis, the commands that
 * call them, and what their answers mean.
 *
 * Every read and write of a key is one script over two Redis keys, R =
 * prefix + key (the value, a plain Redis string) and its companion record
 * (pc_rkey.h, in R's Redis Cluster slot), so that the two change together.
 * Every write begins with a fence: its last argument is the last moment,
 * in ms on Redis' own clock, at which it may still be applied; later the
 * script changes nothing and answers -1 (docs/CONSISTENCY.md "Failed
 * writes stay failed"). docs/OPERATIONS.md "What a node keeps in Redis"
 * is the account for operators.
 *
 * Pure: commands are formatted (RESP) into a caller's buffer and answers
 * are read from hiredis reply objects as data; the connection, its script
 * loads and the fence's clock are pc_backend's. Any thread.
 */
#ifndef PC_RSCRIPT_H
#define PC_RSCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "pc_buf.h"

enum pc_rscript {
    PC_RSCRIPT_GET,    /* value, TTL and flags in one round trip */
    PC_RSCRIPT_SET,    /* value and record replaced together (NX/XX, TTL) */
    PC_RSCRIPT_DEL,    /* both gone */
    PC_RSCRIPT_EXPIRE, /* a new TTL (or none) for both */
    PC_RSCRIPT_COUNT
};

/* Characters of a script's SHA1 as SCRIPT LOAD answers it (hex). */
#define PC_RSCRIPT_SHA_HEX 40u

/* The script's text (for SCRIPT LOAD, and EVAL before the load answered),
 * len bytes, not NUL-counted. sc < PC_RSCRIPT_COUNT. */
const char *pc_rscript_text(enum pc_rscript sc, size_t *len);

/* 1 for the scripts that write (and so carry a fence), else 0. */
int pc_rscript_writes(enum pc_rscript sc);

/* One call of a script; the fields a script does not use are ignored. */
typedef struct pc_rscript_call {
    enum pc_rscript script;
    /* PC_RSCRIPT_SHA_HEX characters from this connection's SCRIPT LOAD,
     * or NULL: EVAL with the text. */
    const char *sha;
    /* R (rlen bytes) and, right after it, its companion record (mlen
     * bytes), as pc_rkey_companion writes them. */
    const uint8_t *keys;
    size_t rlen, mlen;
    const void *val; /* SET: the value (NULL when vlen is 0) */
    size_t vlen;
    uint64_t ttl_ms; /* SET, EXPIRE: 0 = none; at most PC_PROTO_MAX_TTL_MS */
    int cond;        /* SET: PC_COND_NONE, PC_COND_NX or PC_COND_XX */
    uint32_t flags;  /* SET: kept in the record (with the value's digest) when not 0 */
    int64_t fence_ms; /* a write: the last moment to apply it, Redis' clock, ms */
} pc_rscript_call_t;

/*
 * Appends the command for call to f: EVALSHA sha (or EVAL text) 2 R record
 * and the script's arguments, a write's fence last. *fence_at (if not
 * NULL) is where in f the fence's argument begins (f's length when the
 * script does not write): a command redirected to another server is sent
 * again up to there, with a fence on that server's clock. 0, or PC_ENOMEM
 * (f's limit; f may hold part of the command).
 */
int pc_rscript_format(pc_buf_t *f, const pc_rscript_call_t *call, size_t *fence_at);

/* What PC_RSCRIPT_GET answered. data points into the reply. */
typedef struct pc_rscript_value {
    int found;          /* 0: no such key (the rest is unset) */
    const uint8_t *data;
    size_t len;
    uint32_t flags;     /* 0 unless the record vouches for this value */
    int64_t pttl_ms;    /* -1 = no TTL */
} pc_rscript_value_t;

/* Reads PC_RSCRIPT_GET's answer (not an error reply: those are the
 * caller's). 0, or -1 when it is not what the script returns. */
int pc_rscript_get_reply(const redisReply *reply, pc_rscript_value_t *out);

/* What a write script answered (not an error reply): 1 applied, 0 not
 * (NX/XX, or no such key to delete or expire), -1 refused by its fence
 * (never applied). */
int pc_rscript_write_reply(const redisReply *reply);

#endif
