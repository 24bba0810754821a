/* The scripts and their calls: see pc_rscript.h. */
#include "pc_rscript.h"

#include <string.h>

#include "pc_error.h"
#include "pc_proto.h" /* enum pc_cond */
#include "pc_resp.h"
#include "pc_rkey.h"

/*
 * In every script KEYS[1] is R (prefix + key) and KEYS[2] its companion
 * record.
 *
 * A record name that holds anything but a hash is not ours: it is some
 * program's value under a name that happens to look like a record (only
 * possible when R itself may begin with "pcm:{", e.g. with no
 * --redis-prefix). The scripts leave such a value alone -- never delete,
 * expire or overwrite it -- and the key's flags then read as 0.
 *
 * GET: value, TTL and the record's fields in one round trip, atomically:
 * a pipelined GET + PTTL + HMGET could see the key expire or change in
 * between.
 */
static const char GET_SCRIPT[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then return false end "
    "local m = {} "
    "if redis.call('TYPE', KEYS[2]).ok == 'hash' then "
    "m = redis.call('HMGET', KEYS[2], '" PC_RKEY_FIELD_FLAGS "', '" PC_RKEY_FIELD_DIGEST "') "
    "end "
    "return {v, redis.call('PTTL', KEYS[1]), m}";

/*
 * The fence every write script begins with: its last ARGV is the last
 * moment, in ms on Redis' own clock, at which the node that sent it may
 * still apply it (it gives up on the command then). Later, the script
 * changes nothing and returns -1: a write that reached Redis after the
 * node told its client it failed is never applied.
 */
#define FENCE(n)                                                                               \
    "local t = redis.call('TIME') "                                                            \
    "if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[" #n "]) "  \
    "then return -1 end "

/*
 * SET: ARGV = value, TTL in ms ('0' = none), 'NX' / 'XX' / '', flags,
 * digest of the value, fence. Only a SET that applied touches the record: it is
 * replaced (DEL first, so no field or TTL of an older record survives)
 * with the same expiry as the value when the flags are not 0, and
 * removed when they are, so a record never outlives the write it
 * describes. Returns 1 when the SET applied, 0 when its condition failed.
 */
static const char SET_SCRIPT[] =
    FENCE(6)
    "local a = {'SET', KEYS[1], ARGV[1]} "
    "if ARGV[2] ~= '0' then a[#a + 1] = 'PX' a[#a + 1] = ARGV[2] end "
    "if ARGV[3] ~= '' then a[#a + 1] = ARGV[3] end "
    "if not redis.call(unpack(a)) then return 0 end "
    "local t = redis.call('TYPE', KEYS[2]).ok "
    "if t == 'hash' then redis.call('DEL', KEYS[2]) elseif t ~= 'none' then return 1 end "
    "if ARGV[4] ~= '0' then "
    "redis.call('HSET', KEYS[2], '" PC_RKEY_FIELD_FLAGS "', ARGV[4], '" PC_RKEY_FIELD_DIGEST "', ARGV[5]) "
    "if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end "
    "end "
    "return 1";

/* DEL: ARGV = fence. applied = R existed; an orphaned record goes either
 * way. */
static const char DEL_SCRIPT[] =
    FENCE(1)
    "local n = redis.call('DEL', KEYS[1]) "
    "if redis.call('TYPE', KEYS[2]).ok == 'hash' then redis.call('DEL', KEYS[2]) end "
    "return n";

/* EXPIRE: ARGV = new TTL in ms ('0' = none), fence. PERSIST alone cannot
 * tell "no such key" from "had no TTL". The record follows the value. */
static const char EXPIRE_SCRIPT[] =
    FENCE(2)
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local rec = redis.call('TYPE', KEYS[2]).ok == 'hash' "
    "if ARGV[1] == '0' then redis.call('PERSIST', KEYS[1]) "
    "if rec then redis.call('PERSIST', KEYS[2]) end "
    "else redis.call('PEXPIRE', KEYS[1], ARGV[1]) "
    "if rec then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end end "
    "return 1";

static const struct {
    const char *text;
    size_t len;
    int nargs; /* ARGV before a write's fence */
} SCRIPTS[PC_RSCRIPT_COUNT] = {
    [PC_RSCRIPT_GET] = {GET_SCRIPT, sizeof GET_SCRIPT - 1, 0},
    [PC_RSCRIPT_SET] = {SET_SCRIPT, sizeof SET_SCRIPT - 1, 5},
    [PC_RSCRIPT_DEL] = {DEL_SCRIPT, sizeof DEL_SCRIPT - 1, 0},
    [PC_RSCRIPT_EXPIRE] = {EXPIRE_SCRIPT, sizeof EXPIRE_SCRIPT - 1, 1},
};

const char *pc_rscript_text(enum pc_rscript sc, size_t *len)
{
    *len = SCRIPTS[sc].len;
    return SCRIPTS[sc].text;
}

int pc_rscript_writes(enum pc_rscript sc) { return sc != PC_RSCRIPT_GET; }

/* The arguments of SET_SCRIPT but its fence. */
static int set_args(pc_buf_t *f, const pc_rscript_call_t *c)
{
    char digest[PC_RKEY_DIGEST_HEX + 1] = "";
    /* The digest is only needed, and only paid for, when there is a
     * record to write. */
    if (c->flags != 0)
        pc_rkey_digest(c->val, c->vlen, digest);
    const char *cond = c->cond == PC_COND_NX ? "NX" : c->cond == PC_COND_XX ? "XX" : "";
    int rc = pc_resp_bulk(f, c->vlen ? c->val : "", c->vlen);
    if (rc == 0) /* ttl_ms is at most PC_PROTO_MAX_TTL_MS (2^62): an int64_t */
        rc = pc_resp_bulk_int(f, (int64_t)c->ttl_ms);
    if (rc == 0)
        rc = pc_resp_bulk(f, cond, strlen(cond));
    if (rc == 0)
        rc = pc_resp_bulk_int(f, (int64_t)c->flags);
    if (rc == 0)
        rc = pc_resp_bulk(f, digest, strlen(digest));
    return rc;
}

int pc_rscript_format(pc_buf_t *f, const pc_rscript_call_t *c, size_t *fence_at)
{
    enum pc_rscript sc = c->script;
    int write = pc_rscript_writes(sc);
    int rc = pc_resp_array(f, (size_t)(5 + SCRIPTS[sc].nargs + write));
    if (rc == 0)
        rc = c->sha != NULL ? pc_resp_bulk(f, "EVALSHA", 7) : pc_resp_bulk(f, "EVAL", 4);
    if (rc == 0)
        rc = c->sha != NULL ? pc_resp_bulk(f, c->sha, PC_RSCRIPT_SHA_HEX)
                            : pc_resp_bulk(f, SCRIPTS[sc].text, SCRIPTS[sc].len);
    if (rc == 0)
        rc = pc_resp_bulk(f, "2", 1);
    if (rc == 0)
        rc = pc_resp_bulk(f, c->keys, c->rlen);
    if (rc == 0)
        rc = pc_resp_bulk(f, c->keys + c->rlen, c->mlen);
    if (rc == 0 && sc == PC_RSCRIPT_SET)
        rc = set_args(f, c);
    if (rc == 0 && sc == PC_RSCRIPT_EXPIRE)
        rc = pc_resp_bulk_int(f, (int64_t)c->ttl_ms);
    if (fence_at != NULL)
        *fence_at = f->len;
    if (rc == 0 && write)
        rc = pc_resp_bulk_int(f, c->fence_ms);
    return rc < 0 ? PC_ENOMEM : 0;
}

static int is_str(const redisReply *r) { return r->type == REDIS_REPLY_STRING; }

/* GET_SCRIPT's answer: nil, or [value, pttl, [f, d] or []]. */
int pc_rscript_get_reply(const redisReply *reply, pc_rscript_value_t *out)
{
    memset(out, 0, sizeof *out);
    out->pttl_ms = -1;
    if (reply->type == REDIS_REPLY_NIL)
        return 0;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 || !is_str(reply->element[0]) ||
        reply->element[1]->type != REDIS_REPLY_INTEGER ||
        reply->element[2]->type != REDIS_REPLY_ARRAY)
        return -1;
    const redisReply *v = reply->element[0], *m = reply->element[2];
    if (m->elements == 2 && is_str(m->element[0]) && is_str(m->element[1]))
        out->flags = pc_rkey_record_flags(v->str, v->len, m->element[0]->str, m->element[0]->len,
                                          m->element[1]->str, m->element[1]->len);
    out->found = 1;
    out->data = (const uint8_t *)v->str;
    out->len = v->len;
    long long pttl = reply->element[1]->integer;
    out->pttl_ms = pttl < 0 ? -1 : (int64_t)pttl;
    return 0;
}

int pc_rscript_write_reply(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_INTEGER)
        return 0;
    return reply->integer < 0 ? -1 : reply->integer > 0;
}
