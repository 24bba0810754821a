/*
 * pc_proto.c -- frames, validation, decoding and encoding of peercache
 * messages. docs/PROTOCOL.md describes the bytes; pc_proto.h the contract.
 *
 * Decoding runs in three steps, each trusting only what the previous one
 * proved:
 *   1. shape() walks the raw bytes with no allocation and rejects
 *      anything whose headers claim more than the body holds (the rules of
 *      pc_proto_validate()). msgpack-c's unpacker allocates `count * 16`
 *      bytes as soon as it sees an array header, so without this step a
 *      5-byte body claiming 2^32 elements would make it try to reserve 64
 *      GiB. On the way it reads [op, id] and holds the rest to what that
 *      op can use ("budgets" below), because msgpack-c also spends ~100 ns
 *      on every value of an honest body, however useless.
 *   2. msgpack_unpack_next() builds a msgpack_object tree. What we found
 *      in msgpack-c 4.0.0 (and pin in the unit tests): str, bin and ext
 *      objects point into the input bytes (zero copy), so only the tree
 *      nodes live in the zone. msgpack_unpack_next() frees the previous
 *      zone and creates a new one on every call, so a zone cannot really
 *      be reused across calls through this API; the decoder instead drops
 *      the zone as soon as a message is mapped (nothing we return points
 *      into it), which means an idle decoder holds no msgpack memory.
 *   3. The tree is mapped field by field into pc_request_t /
 *      pc_response_t with strict type checks. Arrays of slices (MGET keys,
 *      MGET entries, STATS pairs) go into scratch arrays owned by the
 *      decoder and reused across calls.
 */
#include "pc_proto.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "pc_gossip.h" /* PC_GOSSIP_MAX_NODES */

/* ---- names and status mapping ---------------------------------------- */

static const char *const op_names[PC_OP_MAX + 1] = {
    [PC_OP_HELLO] = "HELLO", [PC_OP_PING] = "PING", [PC_OP_GET] = "GET",
    [PC_OP_MGET] = "MGET",   [PC_OP_SET] = "SET",   [PC_OP_DEL] = "DEL",
    [PC_OP_TOUCH] = "TOUCH", [PC_OP_STATS] = "STATS", [PC_OP_CLUSTER] = "CLUSTER",
    [PC_OP_FORWARD] = "FORWARD", [PC_OP_SYNC] = "SYNC", [PC_OP_REPLICATE] = "REPLICATE",
};

const char *pc_op_name(uint32_t op)
{
    if (op > PC_OP_MAX || op_names[op] == NULL)
        return "UNKNOWN";
    return op_names[op];
}

struct status_info {
    const char *name;
    const char *msg;
};

static const struct status_info status_table[PC_ST_MAX + 1] = {
    [PC_ST_OK] = {"OK", "ok"},
    [PC_ST_NOT_FOUND] = {"NOT_FOUND", "key not found"},
    [PC_ST_EXISTS] = {"EXISTS", "key exists or its version differs"},
    [PC_ST_NOT_STORED] = {"NOT_STORED", "not stored: the key does not exist"},
    [PC_ST_BAD_REQUEST] = {"BAD_REQUEST", "bad request"},
    [PC_ST_TOO_LARGE] = {"TOO_LARGE", "too large: over a size limit"},
    [PC_ST_BACKEND_UNAVAILABLE] = {"BACKEND_UNAVAILABLE", "backend unavailable"},
    [PC_ST_BUSY] = {"BUSY", "server busy, retry later"},
    [PC_ST_INTERNAL] = {"INTERNAL", "internal server error"},
    [PC_ST_AUTH_REQUIRED] = {"AUTH_REQUIRED", "authentication required"},
    [PC_ST_RETRY] = {"RETRY", "the cluster is changing: nothing was applied, retry"},
};

const char *pc_status_name(uint32_t status)
{
    if (status > PC_ST_MAX || status_table[status].name == NULL)
        return "UNKNOWN";
    return status_table[status].name;
}

const char *pc_status_message(uint32_t status)
{
    if (status > PC_ST_MAX || status_table[status].msg == NULL)
        return "unknown status";
    return status_table[status].msg;
}

int pc_status_to_err(uint32_t status)
{
    switch (status) {
    case PC_ST_OK:
        return 0;
    case PC_ST_NOT_FOUND:
        return PC_ENOTFOUND;
    case PC_ST_EXISTS:
        return PC_EEXISTS;
    case PC_ST_NOT_STORED:
        return PC_ENOTSTORED;
    case PC_ST_BAD_REQUEST:
        return PC_EBADREQ;
    case PC_ST_TOO_LARGE:
        return PC_ETOOBIG;
    case PC_ST_BACKEND_UNAVAILABLE:
        return PC_EBACKEND;
    case PC_ST_BUSY:
        return PC_EBUSY;
    case PC_ST_AUTH_REQUIRED:
        return PC_EPERM;
    case PC_ST_RETRY:
        return PC_ERETRY;
    case PC_ST_INTERNAL:
    default:
        return PC_EINTERNAL;
    }
}

uint32_t pc_err_to_status(int err)
{
    switch (err) {
    case 0:
        return PC_ST_OK;
    case PC_ENOTFOUND:
        return PC_ST_NOT_FOUND;
    case PC_EEXISTS:
        return PC_ST_EXISTS;
    case PC_ENOTSTORED:
        return PC_ST_NOT_STORED;
    case PC_EBADREQ:
    case PC_EPROTO:
    case PC_EINVAL:
        return PC_ST_BAD_REQUEST;
    case PC_ETOOBIG:
        return PC_ST_TOO_LARGE;
    case PC_EBACKEND:
    case PC_ETIMEDOUT:
    case PC_ECONN:
        return PC_ST_BACKEND_UNAVAILABLE;
    case PC_EBUSY:
    case PC_ENOMEM:
    case PC_ECLOSED:
        return PC_ST_BUSY;
    case PC_ERETRY:
        return PC_ST_RETRY;
    case PC_EPERM:
        return PC_ST_AUTH_REQUIRED;
    default:
        return PC_ST_INTERNAL;
    }
}

void pc_proto_limits_default(pc_proto_limits_t *l)
{
    l->max_frame = PC_PROTO_DEFAULT_MAX_FRAME;
    l->max_key = PC_PROTO_DEFAULT_MAX_KEY;
    l->max_value = PC_PROTO_DEFAULT_MAX_VALUE;
    l->max_mget_keys = PC_PROTO_DEFAULT_MAX_MGET_KEYS;
}

/* ---- validation ------------------------------------------------------ */

static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * What one msgpack header byte announces: `lenbytes` big-endian bytes of
 * size or count follow the tag, then `fixed` bytes of payload (ext type
 * byte, number bytes), then for str/bin/ext the announced size.
 */
struct mp_head {
    uint8_t lenbytes;
    uint8_t fixed;
    uint8_t kind; /* HEAD_SCALAR, HEAD_SIZED, HEAD_ARRAY, HEAD_MAP */
    uint32_t inline_n; /* size or count carried in the tag itself */
};

enum { HEAD_SCALAR, HEAD_SIZED, HEAD_ARRAY, HEAD_MAP, HEAD_BAD };

static struct mp_head classify(uint8_t b)
{
    struct mp_head h = {0, 0, HEAD_SCALAR, 0};
    if (b <= 0x7f || b >= 0xe0)
        return h; /* fixints */
    if (b <= 0x8f) {
        h.kind = HEAD_MAP;
        h.inline_n = b & 0x0fu;
        return h;
    }
    if (b <= 0x9f) {
        h.kind = HEAD_ARRAY;
        h.inline_n = b & 0x0fu;
        return h;
    }
    if (b <= 0xbf) {
        h.kind = HEAD_SIZED;
        h.inline_n = b & 0x1fu;
        return h;
    }
    switch (b) {
    case 0xc0: /* nil */
    case 0xc2: /* false */
    case 0xc3: /* true */
        return h;
    case 0xc4: /* bin 8/16/32 */
    case 0xd9: /* str 8 */
        h.kind = HEAD_SIZED;
        h.lenbytes = 1;
        return h;
    case 0xc5:
    case 0xda:
        h.kind = HEAD_SIZED;
        h.lenbytes = 2;
        return h;
    case 0xc6:
    case 0xdb:
        h.kind = HEAD_SIZED;
        h.lenbytes = 4;
        return h;
    case 0xc7: /* ext 8/16/32: size, then a type byte, then the data */
    case 0xc8:
    case 0xc9:
        h.kind = HEAD_SIZED;
        h.lenbytes = (uint8_t)(b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4);
        h.fixed = 1;
        return h;
    case 0xca: /* float 32/64 */
        h.fixed = 4;
        return h;
    case 0xcb:
        h.fixed = 8;
        return h;
    case 0xcc: /* uint 8..64, int 8..64 */
    case 0xd0:
        h.fixed = 1;
        return h;
    case 0xcd:
    case 0xd1:
        h.fixed = 2;
        return h;
    case 0xce:
    case 0xd2:
        h.fixed = 4;
        return h;
    case 0xcf:
    case 0xd3:
        h.fixed = 8;
        return h;
    case 0xd4: /* fixext 1/2/4/8/16: type byte + data */
        h.fixed = 2;
        return h;
    case 0xd5:
        h.fixed = 3;
        return h;
    case 0xd6:
        h.fixed = 5;
        return h;
    case 0xd7:
        h.fixed = 9;
        return h;
    case 0xd8:
        h.fixed = 17;
        return h;
    case 0xdc: /* array 16/32 */
        h.kind = HEAD_ARRAY;
        h.lenbytes = 2;
        return h;
    case 0xdd:
        h.kind = HEAD_ARRAY;
        h.lenbytes = 4;
        return h;
    case 0xde: /* map 16/32 */
        h.kind = HEAD_MAP;
        h.lenbytes = 2;
        return h;
    case 0xdf:
        h.kind = HEAD_MAP;
        h.lenbytes = 4;
        return h;
    default: /* 0xc1 is "never used" in the spec */
        h.kind = HEAD_BAD;
        return h;
    }
}

/*
 * A walk over msgpack bytes, one value header at a time, checking the
 * structural rules as it goes (PROTOCOL.md §3). pc_proto_validate() runs
 * one to the end; the decoders run one under a budget and may stop it
 * early (see "budgets" below), which is why it steps instead of looping.
 */
struct mp_walk {
    const uint8_t *p;
    size_t len;
    size_t pos;
    unsigned depth; /* containers open */
    unsigned max_depth;
    /* Values still to read in total: the sum of open[] plus the top value.
     * Every value takes at least one byte, so owing more than the bytes
     * left is already proof of a lie. */
    uint64_t owed;
    uint64_t values; /* value headers read so far, containers included */
    /* open[i] = values still owed by the i-th open container. uint64
     * because a map32 owes 2 * (2^32 - 1) values. */
    uint64_t open[PC_PROTO_VALIDATE_DEPTH_CAP];
};

/* One value as walk_next() found it. */
struct mp_val {
    uint8_t kind;   /* HEAD_SCALAR, HEAD_SIZED, HEAD_ARRAY, HEAD_MAP */
    unsigned depth; /* containers around it: 0 for the body's own value */
    uint64_t n;     /* array count, map pairs, or str/bin/ext size */
    size_t at;      /* offset of its first byte */
};

static void walk_init(struct mp_walk *w, const uint8_t *body, size_t len, unsigned max_depth)
{
    w->p = body;
    w->len = len;
    w->pos = 0;
    w->depth = 0;
    w->max_depth = max_depth > PC_PROTO_VALIDATE_DEPTH_CAP ? PC_PROTO_VALIDATE_DEPTH_CAP
                                                            : max_depth;
    w->owed = 1;
    w->values = 0;
}

/* 1: *v is the next value (a container's elements come next). 0: the body
 * ended exactly where its value did. PC_EPROTO: it breaks a rule. */
static int walk_next(struct mp_walk *w, struct mp_val *v)
{
    const uint8_t *body = w->p;
    size_t len = w->len, pos = w->pos;

    if (w->owed == 0)
        return pos == len ? 0 : PC_EPROTO;
    if (pos >= len)
        return PC_EPROTO;
    v->at = pos;
    v->depth = w->depth;
    struct mp_head h = classify(body[pos++]);
    if (h.kind == HEAD_BAD)
        return PC_EPROTO;

    uint64_t n = h.inline_n;
    if (h.lenbytes > 0) {
        if (len - pos < h.lenbytes)
            return PC_EPROTO;
        n = get_be(body + pos, h.lenbytes);
        pos += h.lenbytes;
    }
    uint64_t skip = h.fixed;
    if (h.kind == HEAD_SIZED)
        skip += n;
    if (skip > len - pos)
        return PC_EPROTO;
    pos += (size_t)skip;

    w->owed--;
    w->values++;
    if (w->depth > 0)
        w->open[w->depth - 1]--;

    if (h.kind == HEAD_ARRAY || h.kind == HEAD_MAP) {
        uint64_t count = h.kind == HEAD_MAP ? 2 * n : n;
        if (w->depth >= w->max_depth)
            return PC_EPROTO;
        if (w->owed + count > len - pos)
            return PC_EPROTO;
        w->owed += count;
        if (count > 0)
            w->open[w->depth++] = count;
    }
    while (w->depth > 0 && w->open[w->depth - 1] == 0)
        w->depth--;
    w->pos = pos;
    v->kind = h.kind;
    v->n = n;
    return 1;
}

int pc_proto_validate(const uint8_t *body, size_t len, unsigned max_depth)
{
    struct mp_walk w;
    struct mp_val v;
    int rc;

    if (body == NULL)
        return PC_EPROTO;
    walk_init(&w, body, len, max_depth);
    while ((rc = walk_next(&w, &v)) == 1)
        ;
    return rc;
}

/* The value of a non-negative integer in any int format, as msgpack-c reads
 * it (it turns a signed form holding a value >= 0 into a positive one).
 * false for anything else. */
static bool val_uint(const struct mp_walk *w, const struct mp_val *v, uint64_t *u)
{
    uint8_t b = w->p[v->at];
    const uint8_t *q = w->p + v->at + 1;
    if (b <= 0x7f) {
        *u = b;
        return true;
    }
    if (b >= 0xcc && b <= 0xcf) { /* uint 8..64 */
        *u = get_be(q, (size_t)1 << (b - 0xcc));
        return true;
    }
    if (b >= 0xd0 && b <= 0xd3) { /* int 8..64 */
        size_t n = (size_t)1 << (b - 0xd0);
        uint64_t raw = get_be(q, n);
        if (raw >> (8 * n - 1))
            return false;
        *u = raw;
        return true;
    }
    return false;
}

/* ---- decoder --------------------------------------------------------- */

struct pc_proto_decoder {
    pc_proto_limits_t lim;
    msgpack_unpacked unp;
    /* Scratch for the arrays a message points to; grown on demand, never
     * shrunk, each bounded by a limit or by the frame size. */
    pc_bytes_t *keys;
    uint32_t keys_cap;
    pc_entry_t *entries;
    uint32_t entries_cap;
    pc_stat_t *stats;
    uint32_t stats_cap;
    pc_repl_entry_t *repl;
    uint32_t repl_cap;
    pc_cluster_member_t *members;
    uint32_t members_cap;
    /* pc_proto_decoder_why(): why the last decode failed, "" after a
     * success. Once [op, id] are read, the subject (subj_op, subj_reply)
     * names the op ("GET", "MGET reply", "op 13") and every reason starts
     * with it; it is formatted only when a decode fails (refuse), never
     * on the path of a good frame. */
    char why[160];
    bool subj_set, subj_reply;
    uint32_t subj_op;
};

int pc_proto_decoder_new(const pc_proto_limits_t *limits, pc_proto_decoder_t **out)
{
    pc_proto_decoder_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return PC_ENOMEM;
    pc_proto_limits_default(&d->lim);
    if (limits != NULL) {
        if (limits->max_frame != 0)
            d->lim.max_frame = limits->max_frame;
        if (limits->max_key != 0)
            d->lim.max_key = limits->max_key;
        if (limits->max_value != 0)
            d->lim.max_value = limits->max_value;
        if (limits->max_mget_keys != 0)
            d->lim.max_mget_keys = limits->max_mget_keys;
    }
    msgpack_unpacked_init(&d->unp);
    *out = d;
    return 0;
}

void pc_proto_decoder_free(pc_proto_decoder_t **dp)
{
    if (dp == NULL || *dp == NULL)
        return;
    pc_proto_decoder_t *d = *dp;
    msgpack_unpacked_destroy(&d->unp);
    free(d->keys);
    free(d->entries);
    free(d->stats);
    free(d->repl);
    free(d->members);
    free(d);
    *dp = NULL;
}

/* Grows a scratch array to hold n elements of size `size`. */
static int grow(void **arr, uint32_t *cap, uint32_t n, size_t size)
{
    if (n <= *cap)
        return 0;
    size_t ncap = (size_t)*cap * 2;
    if (ncap < n)
        ncap = n;
    if (ncap < 16)
        ncap = 16;
    if (ncap > UINT32_MAX)
        ncap = UINT32_MAX;
    if (ncap > SIZE_MAX / size)
        return PC_ENOMEM;
    void *p = realloc(*arr, ncap * size);
    if (p == NULL)
        return PC_ENOMEM;
    *arr = p;
    *cap = (uint32_t)ncap;
    return 0;
}

const char *pc_proto_decoder_why(const pc_proto_decoder_t *d)
{
    return d != NULL ? d->why : "";
}

/* Records why the current decode fails and returns rc, so that a failure
 * reads `return refuse(d, PC_EBADREQ, "key is empty");`. */
static int refuse(pc_proto_decoder_t *d, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(pc_proto_decoder_t *d, int rc, const char *fmt, ...)
{
    size_t n = 0;
    if (d->subj_set) {
        const char *re = d->subj_reply ? " reply" : "";
        int k = d->subj_op >= 1 && d->subj_op <= PC_OP_MAX
                    ? snprintf(d->why, sizeof(d->why), "%s%s: ", op_names[d->subj_op], re)
                    : snprintf(d->why, sizeof(d->why), "op %" PRIu32 "%s: ", d->subj_op, re);
        n = k > 0 && (size_t)k < sizeof(d->why) ? (size_t)k : 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why + n, sizeof(d->why) - n, fmt, ap);
    va_end(ap);
    return rc;
}

/*
 * Budgets. msgpack-c builds an object of 24 bytes or more for every value,
 * at 70-100 ns each, while str and bin bytes are not copied: a 1 MiB
 * value costs it nothing, but a legal 1.1 MiB body whose ignored last
 * element is an array of 1.18M nils cost 100 ms of a node's loop. What
 * each op can use is small and known, so step 1 checks the body against
 * it as it walks, and stops at the first value past it -- before
 * msgpack-c sees the body, having read one value more than the budget
 * at most. The budget of a message is
 *   elements: what its op defines + PC_PROTO_SLACK_ELEMENTS trailing;
 *   values:   what those elements hold at most (its list, if it has one,
 *             counted from the list's header: PC_PROTO_ITEM_SLACK more per
 *             item) + PC_PROTO_SLACK_VALUES.
 * A list whose header claims more items than its limit is refused there
 * too, as TOO_LARGE (a request) or malformed (a reply). A field that
 * should be a scalar but is a container spends the values it holds, so a
 * key that is an array of a million nils is refused the same way.
 * So at default limits a request is never unpacked into more than 8,214
 * objects (a REPLICATE of 1,024 entries), and one of any other op into
 * at most 1,044 (a full MGET).
 */
enum { LIST_NONE, LIST_MGET_KEYS, LIST_STATS, LIST_MEMBERS };

struct budget {
    uint8_t elements;  /* elements the op defines, op and id included */
    uint8_t values;    /* values those elements hold, its list empty */
    uint8_t list;      /* index of its list element, 0 = it has none */
    uint8_t list_kind; /* HEAD_ARRAY or HEAD_MAP */
    uint8_t per_item;  /* values per list item, PC_PROTO_ITEM_SLACK included */
    uint8_t limit;     /* LIST_*: what bounds the list's length */
    const char *items; /* what the list holds, for reasons */
};

/* [key, value, flags, version, ttl_ms], and the same shape for MGET reply
 * hits and CLUSTER members: the array and its five values. */
#define RECORD_VALUES (6 + PC_PROTO_ITEM_SLACK)

/* Index 0 is for ops this build does not know: [op, id]. */
static const struct budget request_budget[PC_OP_MAX + 1] = {
    [0] = {2, 3, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_HELLO] = {4, 5, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_PING] = {2, 3, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_GET] = {4, 5, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_MGET] = {4, 5, 2, HEAD_ARRAY, 1, LIST_MGET_KEYS, "keys"},
    [PC_OP_SET] = {9, 10, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_DEL] = {4, 5, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_TOUCH] = {5, 6, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_STATS] = {2, 3, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_CLUSTER] = {2, 3, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_FORWARD] = {5, 6, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_SYNC] = {3, 4, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_REPLICATE] = {5, 6, 4, HEAD_ARRAY, RECORD_VALUES, LIST_MGET_KEYS, "entries"},
};

/* OK replies, the trailing ring fingerprint included (CLUSTER has none). */
static const struct budget response_budget[PC_OP_MAX + 1] = {
    [0] = {3, 4, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_HELLO] = {8, 9, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_PING] = {4, 5, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_GET] = {8, 9, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_MGET] = {5, 6, 3, HEAD_ARRAY, RECORD_VALUES, LIST_MGET_KEYS, "entries"},
    [PC_OP_SET] = {5, 6, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_DEL] = {4, 5, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_TOUCH] = {4, 5, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_STATS] = {5, 6, 3, HEAD_MAP, 2, LIST_STATS, "stats"},
    [PC_OP_CLUSTER] = {6, 7, 5, HEAD_ARRAY, RECORD_VALUES, LIST_MEMBERS, "members"},
    [PC_OP_FORWARD] = {5, 6, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_SYNC] = {5, 6, 0, 0, 0, LIST_NONE, NULL},
    [PC_OP_REPLICATE] = {5, 6, 0, 0, 0, LIST_NONE, NULL},
};

/* Any status but OK: [op, id, status, message, ring_fp]. */
static const struct budget error_budget = {5, 6, 0, 0, 0, LIST_NONE, NULL};

/* Every node a gossip state can name can be a CLUSTER member. */
_Static_assert(PC_PROTO_MAX_MEMBERS >= PC_GOSSIP_MAX_NODES, "CLUSTER must fit every member");

static uint64_t list_limit(const pc_proto_decoder_t *d, uint8_t limit)
{
    switch (limit) {
    case LIST_MGET_KEYS:
        return d->lim.max_mget_keys;
    case LIST_STATS:
        return PC_PROTO_MAX_STATS;
    case LIST_MEMBERS:
        return PC_PROTO_MAX_MEMBERS;
    default:
        return 0;
    }
}

/* What step 1 reads on its way: the values that say what the rest is. */
struct head {
    uint32_t op;
    uint64_t id;
    uint32_t status; /* replies */
};

/*
 * Step 1: walks the body under the rules of pc_proto_validate(), reads
 * [op, id] (and a reply's status) on the way -- the one place that
 * decides whether a body is a message at all -- and then holds the rest
 * to its op's budget. 0: a message within its budget, safe to unpack.
 * PC_EPROTO: malformed, or not [op, id, ...]. For a request over its
 * budget PC_EBADREQ, or PC_ETOOBIG for a list over its limit, *h set; a
 * reply over its budget is PC_EPROTO (the peer broke the protocol).
 */
static int shape(pc_proto_decoder_t *d, const uint8_t *body, size_t len, bool reply,
                 struct head *h)
{
    const int over = reply ? PC_EPROTO : PC_EBADREQ;
    const int too_long = reply ? PC_EPROTO : PC_ETOOBIG;
    const unsigned nhead = reply ? 3 : 2;
    struct mp_walk w;
    struct mp_val v;
    uint64_t f[3];
    int rc;

    walk_init(&w, body, len, PC_PROTO_MAX_DEPTH);
    if (walk_next(&w, &v) != 1)
        return refuse(d, PC_EPROTO, "malformed msgpack");
    if (v.kind != HEAD_ARRAY || v.n < nhead)
        return refuse(d, PC_EPROTO, "not an array [op, id, %s...]", reply ? "status, " : "");
    uint64_t n = v.n;
    for (unsigned i = 0; i < nhead; i++) {
        if (walk_next(&w, &v) != 1)
            return refuse(d, PC_EPROTO, "malformed msgpack");
        if (!val_uint(&w, &v, &f[i]) || (i != 1 && f[i] > UINT32_MAX))
            return refuse(d, PC_EPROTO, "no %s", i == 0 ? "op" : i == 1 ? "id" : "status");
    }
    h->op = (uint32_t)f[0];
    h->id = f[1];
    h->status = reply ? (uint32_t)f[2] : 0;
    d->subj_set = true;
    d->subj_op = h->op;
    d->subj_reply = reply;

    const struct budget *b = &error_budget;
    if (!reply || h->status == PC_ST_OK) {
        const struct budget *tab = reply ? response_budget : request_budget;
        b = &tab[h->op <= PC_OP_MAX ? h->op : 0];
    }
    if (n > (uint64_t)b->elements + PC_PROTO_SLACK_ELEMENTS)
        return refuse(d, over, "%" PRIu64 " elements, at most %u + %u trailing", n, b->elements,
                      PC_PROTO_SLACK_ELEMENTS);

    uint64_t uses = b->values;
    uint64_t index = nhead; /* of the next element of the body's array */
    while ((rc = walk_next(&w, &v)) == 1) {
        if (v.depth == 1) {
            if (index == b->list && b->list != 0 && v.kind == b->list_kind) {
                uint64_t max = list_limit(d, b->limit);
                if (v.n > max)
                    return refuse(d, too_long, "%" PRIu64 " %s, at most %" PRIu64, v.n, b->items,
                                  max);
                uses += v.n * b->per_item;
            }
            index++;
        }
        if (w.values > uses + PC_PROTO_SLACK_VALUES)
            return refuse(d, over,
                          "over %" PRIu64 " msgpack values, at most %" PRIu64
                          " for its fields + %u ignored",
                          uses + PC_PROTO_SLACK_VALUES, uses, PC_PROTO_SLACK_VALUES);
    }
    if (rc == 0)
        return 0;
    if (!reply)
        d->subj_set = false; /* not a request after all: no op to name */
    return refuse(d, PC_EPROTO, "malformed msgpack");
}

/* Steps 1 and 2 of the header comment. On success the tree is d->unp.data
 * and the caller must call msgpack_unpacked_destroy(&d->unp) when done;
 * on PC_EBADREQ / PC_ETOOBIG (a request over its budget) *h is set. */
static int unpack_body(pc_proto_decoder_t *d, const uint8_t *body, size_t len, bool reply,
                       struct head *h, const msgpack_object **root)
{
    d->why[0] = '\0';
    d->subj_set = false;
    if (body == NULL || len == 0)
        return refuse(d, PC_EPROTO, "empty body");
    if (len > d->lim.max_frame)
        return refuse(d, PC_EPROTO, "body of %zu bytes, over max_frame (%" PRIu32 ")", len,
                      d->lim.max_frame);
    int rc = shape(d, body, len, reply, h);
    if (rc != 0)
        return rc;

    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&d->unp, (const char *)body, len, &off);
    switch (ret) {
    case MSGPACK_UNPACK_SUCCESS:
        break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        return refuse(d, PC_ENOMEM, "out of memory");
    case MSGPACK_UNPACK_PARSE_ERROR:
        /* After validation the only parse failure msgpack-c has left is its
         * zone allocation failing (it reports that as a parse error). The
         * fuzz target checks that validate and msgpack-c agree. */
        return refuse(d, PC_ENOMEM, "out of memory");
    default:
        msgpack_unpacked_destroy(&d->unp);
        return refuse(d, PC_EPROTO, "malformed msgpack");
    }
    if (off != len) {
        msgpack_unpacked_destroy(&d->unp);
        return refuse(d, PC_EPROTO, "malformed msgpack");
    }
    *root = &d->unp.data;
    return 0;
}

/* Element i of an array object, or NULL past its end (an omitted arg). */
static const msgpack_object *elem(const msgpack_object *arr, uint32_t i)
{
    return i < arr->via.array.size ? &arr->via.array.ptr[i] : NULL;
}

static bool absent(const msgpack_object *o)
{
    return o == NULL || o->type == MSGPACK_OBJECT_NIL;
}

/* A non-negative integer <= max. Any msgpack int form is accepted: msgpack-c
 * already turns a signed encoding of a non-negative value into
 * POSITIVE_INTEGER, so a client in a language that only packs signed ints
 * still works. */
static bool as_uint(const msgpack_object *o, uint64_t max, uint64_t *v)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
        return false;
    *v = o->via.u64;
    return true;
}

/* Absent or nil decodes as 0; anything else must be an int <= max. */
static bool opt_uint(const msgpack_object *o, uint64_t max, uint64_t *v)
{
    if (absent(o)) {
        *v = 0;
        return true;
    }
    return as_uint(o, max, v);
}

static bool as_int64(const msgpack_object *o, int64_t *v)
{
    if (o == NULL)
        return false;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return true;
    }
    return false;
}

/* str or bin, as a slice into the body (see the header comment). */
static bool as_bytes(const msgpack_object *o, pc_bytes_t *b)
{
    if (o == NULL)
        return false;
    if (o->type == MSGPACK_OBJECT_BIN) {
        b->ptr = (const uint8_t *)o->via.bin.ptr;
        b->len = o->via.bin.size;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_STR) {
        b->ptr = (const uint8_t *)o->via.str.ptr;
        b->len = o->via.str.size;
        return true;
    }
    return false;
}

static bool opt_bytes(const msgpack_object *o, pc_bytes_t *b)
{
    if (absent(o)) {
        b->ptr = NULL;
        b->len = 0;
        return true;
    }
    return as_bytes(o, b);
}

/* `what` names the field in the reason ("key", "a key", "an entry's key"). */
static int req_key(pc_proto_decoder_t *d, const msgpack_object *o, const char *what, pc_bytes_t *k)
{
    if (!as_bytes(o, k))
        return refuse(d, PC_EBADREQ, "%s missing or not bytes", what);
    if (k->len == 0)
        return refuse(d, PC_EBADREQ, "%s is empty", what);
    if (k->len > d->lim.max_key)
        return refuse(d, PC_ETOOBIG, "%s of %" PRIu32 " bytes, at most %" PRIu32, what, k->len,
                      d->lim.max_key);
    return 0;
}

/*
 * [key, here?]. `here` is an int, 0 or 1, like every other flag of the
 * protocol (cond, mode): bool is the wrong type for every field (§3), and
 * one rule for all fields keeps every client's encoder simple. Absent or
 * nil is 0, so a version-1 GET of three elements reads as it always did.
 */
static int req_get(pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    int rc = req_key(d, elem(a, 2), "key", &out->key);
    if (rc != 0)
        return rc;
    uint64_t here;
    if (!opt_uint(elem(a, 3), 1, &here))
        return refuse(d, PC_EBADREQ, "here is not 0 or 1");
    out->here = (uint8_t)here;
    return 0;
}

/* SET and TOUCH: a TTL the backend can add to its clock (pc_proto.h). */
static int req_ttl(pc_proto_decoder_t *d, uint64_t ttl)
{
    if (ttl > PC_PROTO_MAX_TTL_MS)
        return refuse(d, PC_EBADREQ, "ttl_ms %" PRIu64 " over the largest TTL, %" PRIu64 " ms", ttl,
                      PC_PROTO_MAX_TTL_MS);
    return 0;
}

static int req_hello(pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    uint64_t v;
    if (!as_uint(elem(a, 2), UINT32_MAX, &v))
        return refuse(d, PC_EBADREQ, "proto_version missing or not a uint32");
    if (!opt_bytes(elem(a, 3), &out->token))
        return refuse(d, PC_EBADREQ, "token is not bytes");
    out->proto_version = (uint32_t)v;
    if (out->token.len > d->lim.max_key)
        return refuse(d, PC_ETOOBIG, "token of %" PRIu32 " bytes, at most %" PRIu32,
                      out->token.len, d->lim.max_key);
    return 0;
}

static int req_set(pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    int rc = req_key(d, elem(a, 2), "key", &out->key);
    if (rc != 0)
        return rc;
    if (!as_bytes(elem(a, 3), &out->value))
        return refuse(d, PC_EBADREQ, "value missing or not bytes");
    if (out->value.len > d->lim.max_value)
        return refuse(d, PC_ETOOBIG, "value of %" PRIu32 " bytes, at most %" PRIu32,
                      out->value.len, d->lim.max_value);

    uint64_t flags, cond;
    if (!opt_uint(elem(a, 4), UINT64_MAX, &out->ttl_ms))
        return refuse(d, PC_EBADREQ, "ttl_ms is not a uint64");
    rc = req_ttl(d, out->ttl_ms);
    if (rc != 0)
        return rc;
    if (!opt_uint(elem(a, 5), UINT32_MAX, &flags))
        return refuse(d, PC_EBADREQ, "flags is not a uint32");
    if (!opt_uint(elem(a, 6), PC_COND_XX, &cond))
        return refuse(d, PC_EBADREQ, "cond is not 0, 1 or 2");
    if (!opt_uint(elem(a, 7), UINT64_MAX, &out->cas))
        return refuse(d, PC_EBADREQ, "cas is not a uint64");
    if (!opt_uint(elem(a, 8), UINT64_MAX, &out->deadline_ms))
        return refuse(d, PC_EBADREQ, "deadline_ms is not a uint64");
    out->flags = (uint32_t)flags;
    out->cond = (uint32_t)cond;
    return 0;
}

static int req_mget(pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    const msgpack_object *ks = elem(a, 2);
    if (ks == NULL || ks->type != MSGPACK_OBJECT_ARRAY)
        return refuse(d, PC_EBADREQ, "keys missing or not an array");
    if (ks->via.array.size == 0)
        return refuse(d, PC_EBADREQ, "no keys");
    /* shape() refused a longer list before unpacking; checked again here
     * because the scratch array below is sized by it. */
    uint32_t n = ks->via.array.size;
    if (n > d->lim.max_mget_keys)
        return refuse(d, PC_ETOOBIG, "%" PRIu32 " keys, at most %" PRIu32, n,
                      d->lim.max_mget_keys);
    int rc = grow((void **)&d->keys, &d->keys_cap, n, sizeof(*d->keys));
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        rc = req_key(d, &ks->via.array.ptr[i], "a key", &d->keys[i]);
        if (rc != 0)
            return rc;
    }
    uint64_t here;
    if (!opt_uint(elem(a, 3), 1, &here))
        return refuse(d, PC_EBADREQ, "here is not 0 or 1");
    out->here = (uint8_t)here;
    out->nkeys = n;
    out->keys = d->keys;
    return 0;
}

/* [hops, body, deadline_ms?]: the relayed request stays opaque here; the
 * receiver decodes it as a request of its own. */
static int req_forward(pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    uint64_t hops;
    if (!as_uint(elem(a, 2), UINT32_MAX, &hops) || hops == 0)
        return refuse(d, PC_EBADREQ, "hops missing, 0 or not a uint32");
    if (!as_bytes(elem(a, 3), &out->body) || out->body.len == 0)
        return refuse(d, PC_EBADREQ, "body missing, empty or not bytes");
    if (!opt_uint(elem(a, 4), UINT64_MAX, &out->deadline_ms))
        return refuse(d, PC_EBADREQ, "deadline_ms is not a uint64");
    out->hops = (uint32_t)hops;
    return 0;
}

/* [key, value|nil, flags, version, ttl_ms]; i is its index, for reasons. */
static int repl_entry(pc_proto_decoder_t *d, const msgpack_object *eo, uint32_t i,
                      pc_repl_entry_t *e)
{
    uint64_t flags;
    memset(e, 0, sizeof(*e));
    if (eo->type != MSGPACK_OBJECT_ARRAY)
        return refuse(d, PC_EBADREQ, "entry %" PRIu32 " is not an array", i);
    int rc = req_key(d, elem(eo, 0), "an entry's key", &e->key);
    if (rc != 0)
        return rc;
    const msgpack_object *v = elem(eo, 1);
    if (v == NULL)
        return refuse(d, PC_EBADREQ, "entry %" PRIu32 " has no value", i);
    if (v->type != MSGPACK_OBJECT_NIL) {
        if (!as_bytes(v, &e->value))
            return refuse(d, PC_EBADREQ, "entry %" PRIu32 ": value is not bytes or nil", i);
        if (e->value.len > d->lim.max_value)
            return refuse(d, PC_ETOOBIG, "entry %" PRIu32 ": value of %" PRIu32
                          " bytes, at most %" PRIu32, i, e->value.len, d->lim.max_value);
        e->has_value = 1;
    }
    if (!as_uint(elem(eo, 2), UINT32_MAX, &flags) || !as_uint(elem(eo, 3), UINT64_MAX, &e->version) ||
        !as_int64(elem(eo, 4), &e->ttl_ms) || e->ttl_ms < -1)
        return refuse(d, PC_EBADREQ, "entry %" PRIu32 ": flags, version or ttl_ms wrong", i);
    e->flags = (uint32_t)flags;
    return 0;
}

/* [mode, from, [entry, ...]]; entries bounded like MGET keys. */
static int req_replicate(pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    uint64_t mode;
    if (!as_uint(elem(a, 2), PC_REPL_HANDOFF, &mode))
        return refuse(d, PC_EBADREQ, "mode is not 0 or 1");
    if (!as_bytes(elem(a, 3), &out->from) || out->from.len == 0)
        return refuse(d, PC_EBADREQ, "from missing, empty or not text");
    out->mode = (uint32_t)mode;
    const msgpack_object *es = elem(a, 4);
    if (es == NULL || es->type != MSGPACK_OBJECT_ARRAY)
        return refuse(d, PC_EBADREQ, "entries missing or not an array");
    /* Refused by shape() already; the scratch array is sized by it. */
    uint32_t n = es->via.array.size;
    if (n > d->lim.max_mget_keys)
        return refuse(d, PC_ETOOBIG, "%" PRIu32 " entries, at most %" PRIu32, n,
                      d->lim.max_mget_keys);
    int rc = grow((void **)&d->repl, &d->repl_cap, n, sizeof(*d->repl));
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        rc = repl_entry(d, &es->via.array.ptr[i], i, &d->repl[i]);
        if (rc != 0)
            return rc;
    }
    out->nentries = n;
    out->entries = d->repl;
    return 0;
}

/* The fields after [op, id]; shape() has read those into *out. */
static int map_request(pc_proto_decoder_t *d, const msgpack_object *root, pc_request_t *out)
{
    int rc;
    switch (out->op) {
    case PC_OP_HELLO:
        return req_hello(d, root, out);
    case PC_OP_PING:
    case PC_OP_STATS:
    case PC_OP_CLUSTER:
        return 0;
    case PC_OP_GET:
        return req_get(d, root, out);
    case PC_OP_DEL:
        rc = req_key(d, elem(root, 2), "key", &out->key);
        if (rc == 0 && !opt_uint(elem(root, 3), UINT64_MAX, &out->deadline_ms))
            return refuse(d, PC_EBADREQ, "deadline_ms is not a uint64");
        return rc;
    case PC_OP_FORWARD:
        return req_forward(d, root, out);
    case PC_OP_SYNC:
        return as_bytes(elem(root, 2), &out->body)
                   ? 0
                   : refuse(d, PC_EBADREQ, "state missing or not bytes");
    case PC_OP_REPLICATE:
        return req_replicate(d, root, out);
    case PC_OP_MGET:
        return req_mget(d, root, out);
    case PC_OP_SET:
        return req_set(d, root, out);
    case PC_OP_TOUCH:
        rc = req_key(d, elem(root, 2), "key", &out->key);
        if (rc != 0)
            return rc;
        if (!as_uint(elem(root, 3), UINT64_MAX, &out->ttl_ms))
            return refuse(d, PC_EBADREQ, "ttl_ms missing or not a uint64");
        if (!opt_uint(elem(root, 4), UINT64_MAX, &out->deadline_ms))
            return refuse(d, PC_EBADREQ, "deadline_ms is not a uint64");
        return req_ttl(d, out->ttl_ms);
    default:
        return refuse(d, PC_EBADREQ, "unknown op");
    }
}

int pc_proto_decode_request(pc_proto_decoder_t *d, const uint8_t *body, size_t len,
                            pc_request_t *out)
{
    const msgpack_object *root;
    struct head h = {0, 0, 0};
    memset(out, 0, sizeof(*out));
    int rc = unpack_body(d, body, len, false, &h, &root);
    if (rc == 0) {
        out->op = h.op;
        out->id = h.id;
        rc = map_request(d, root, out);
        msgpack_unpacked_destroy(&d->unp);
    }
    if (rc == PC_EPROTO || rc == PC_ENOMEM) {
        /* Contract: only BADREQ / TOOBIG promise op and id; don't let a
         * caller come to rely on half-filled fields after the others. */
        memset(out, 0, sizeof(*out));
    } else if (rc != 0) {
        memset(out, 0, sizeof(*out));
        out->op = h.op;
        out->id = h.id;
    }
    if (rc != 0 && d->why[0] == '\0')
        refuse(d, rc, rc == PC_ENOMEM ? "out of memory" : "fields wrong or missing");
    return rc;
}

/* value, flags, version, ttl_ms: the tail shared by GET and MGET hits. */
static bool entry_fields(const msgpack_object *arr, uint32_t first, pc_entry_t *e)
{
    uint64_t flags;
    if (!as_bytes(elem(arr, first), &e->value) ||
        !as_uint(elem(arr, first + 1), UINT32_MAX, &flags) ||
        !as_uint(elem(arr, first + 2), UINT64_MAX, &e->version) ||
        !as_int64(elem(arr, first + 3), &e->ttl_ms))
        return false;
    e->flags = (uint32_t)flags;
    return true;
}

static int resp_mget(pc_proto_decoder_t *d, const msgpack_object *a, pc_response_t *out)
{
    const msgpack_object *es = elem(a, 3);
    if (es == NULL || es->type != MSGPACK_OBJECT_ARRAY)
        return PC_EPROTO;
    uint32_t n = es->via.array.size;
    if (n > d->lim.max_mget_keys)
        return PC_EPROTO;
    int rc = grow((void **)&d->entries, &d->entries_cap, n, sizeof(*d->entries));
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *eo = &es->via.array.ptr[i];
        pc_entry_t *e = &d->entries[i];
        uint64_t st;
        memset(e, 0, sizeof(*e));
        if (eo->type != MSGPACK_OBJECT_ARRAY || !as_uint(elem(eo, 0), UINT32_MAX, &st))
            return PC_EPROTO;
        e->status = (uint32_t)st;
        if (st == PC_ST_OK && !entry_fields(eo, 1, e))
            return PC_EPROTO;
    }
    out->nentries = n;
    out->entries = d->entries;
    return 0;
}

static int resp_stats(pc_proto_decoder_t *d, const msgpack_object *a, pc_response_t *out)
{
    const msgpack_object *m = elem(a, 3);
    if (m == NULL || m->type != MSGPACK_OBJECT_MAP)
        return PC_EPROTO;
    /* At most PC_PROTO_MAX_STATS pairs: shape() saw to that. */
    uint32_t n = m->via.map.size;
    int rc = grow((void **)&d->stats, &d->stats_cap, n, sizeof(*d->stats));
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (!as_bytes(&kv->key, &d->stats[i].name) || !as_int64(&kv->val, &d->stats[i].value))
            return PC_EPROTO;
    }
    out->nstats = n;
    out->stats = d->stats;
    return 0;
}

/* [fingerprint, replicas, [[name, addr, state, incarnation, weight], ...]],
 * at most PC_PROTO_MAX_MEMBERS members (shape() saw to that). */
static int resp_cluster(pc_proto_decoder_t *d, const msgpack_object *a, pc_response_t *out)
{
    uint64_t rep;
    const msgpack_object *ms = elem(a, 5);
    if (!as_uint(elem(a, 3), UINT64_MAX, &out->fingerprint) ||
        !as_uint(elem(a, 4), UINT32_MAX, &rep) || ms == NULL || ms->type != MSGPACK_OBJECT_ARRAY)
        return PC_EPROTO;
    out->replicas = (uint32_t)rep;
    uint32_t n = ms->via.array.size;
    int rc = grow((void **)&d->members, &d->members_cap, n, sizeof(*d->members));
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *mo = &ms->via.array.ptr[i];
        pc_cluster_member_t *m = &d->members[i];
        uint64_t st, w;
        if (mo->type != MSGPACK_OBJECT_ARRAY || !as_bytes(elem(mo, 0), &m->name) ||
            !as_bytes(elem(mo, 1), &m->addr) || !as_uint(elem(mo, 2), UINT32_MAX, &st) ||
            !as_uint(elem(mo, 3), UINT64_MAX, &m->incarnation) ||
            !as_uint(elem(mo, 4), UINT32_MAX, &w))
            return PC_EPROTO;
        m->state = (uint32_t)st;
        m->weight = (uint32_t)w;
    }
    out->nmembers = n;
    out->members = d->members;
    return 0;
}

/* The optional trailing ring fingerprint at index i (absent or nil: 0). */
static int ring_fp_at(const msgpack_object *a, uint32_t i, pc_response_t *out)
{
    return opt_uint(elem(a, i), UINT64_MAX, &out->ring_fp) ? 0 : PC_EPROTO;
}

/* The fields after [op, id, status]; shape() has read those into *out. */
static int map_response(pc_proto_decoder_t *d, const msgpack_object *root, pc_response_t *out)
{
    uint64_t v;

    /* Errors decode for any op, including ones this build does not know:
     * a server answers BAD_REQUEST to an op it does not know by echoing it. */
    if (out->status != PC_ST_OK) {
        if (!opt_bytes(elem(root, 3), &out->message))
            return PC_EPROTO;
        return ring_fp_at(root, 4, out);
    }

    int rc;
    switch (out->op) {
    case PC_OP_HELLO:
        if (!as_uint(elem(root, 3), UINT32_MAX, &v) || !as_bytes(elem(root, 4), &out->node_name) ||
            !as_bytes(elem(root, 5), &out->server_version))
            return PC_EPROTO;
        out->proto_version = (uint32_t)v;
        if (!opt_uint(elem(root, 7), UINT64_MAX, &out->now_ms))
            return PC_EPROTO;
        return ring_fp_at(root, 6, out);
    case PC_OP_PING:
    case PC_OP_DEL:
    case PC_OP_TOUCH:
        return ring_fp_at(root, 3, out);
    case PC_OP_GET:
        out->entry.status = PC_ST_OK;
        return entry_fields(root, 3, &out->entry) ? ring_fp_at(root, 7, out) : PC_EPROTO;
    case PC_OP_MGET:
        rc = resp_mget(d, root, out);
        return rc != 0 ? rc : ring_fp_at(root, 4, out);
    case PC_OP_SET:
        return as_uint(elem(root, 3), UINT64_MAX, &out->version) ? ring_fp_at(root, 4, out)
                                                                 : PC_EPROTO;
    case PC_OP_STATS:
        rc = resp_stats(d, root, out);
        return rc != 0 ? rc : ring_fp_at(root, 4, out);
    case PC_OP_CLUSTER:
        return resp_cluster(d, root, out);
    case PC_OP_FORWARD:
    case PC_OP_SYNC:
        return as_bytes(elem(root, 3), &out->body) ? ring_fp_at(root, 4, out) : PC_EPROTO;
    case PC_OP_REPLICATE:
        if (!as_uint(elem(root, 3), UINT32_MAX, &v))
            return PC_EPROTO;
        out->applied = (uint32_t)v;
        return ring_fp_at(root, 4, out);
    default:
        return PC_EPROTO;
    }
}

int pc_proto_decode_response(pc_proto_decoder_t *d, const uint8_t *body, size_t len,
                             pc_response_t *out)
{
    const msgpack_object *root;
    struct head h;
    memset(out, 0, sizeof(*out));
    int rc = unpack_body(d, body, len, true, &h, &root);
    if (rc != 0)
        return rc;
    out->op = h.op;
    out->id = h.id;
    out->status = h.status;
    rc = map_response(d, root, out);
    msgpack_unpacked_destroy(&d->unp);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        if (d->why[0] == '\0')
            refuse(d, rc, rc == PC_ENOMEM ? "out of memory" : "fields wrong or missing");
    }
    return rc;
}

/* ---- encoding -------------------------------------------------------- */

/*
 * msgpack-c packs through a write callback; ours appends to the pc_buf_t
 * and remembers the first failure. The failure is sticky so that a small
 * append after a refused large one cannot leave a frame with a hole in it;
 * frame_end() then rolls the buffer back in one place instead of every
 * pack call being checked.
 */
struct frame {
    pc_buf_t *out;
    size_t start;
    size_t apart; /* bytes of the frame that are not in out (pc_proto_encode_get_ref) */
    int err;
    msgpack_packer pk;
};

static int frame_write(void *data, const char *buf, size_t len)
{
    struct frame *f = data;
    if (f->err != 0)
        return -1;
    int rc = pc_buf_append(f->out, buf, len);
    if (rc != 0) {
        f->err = rc;
        return -1;
    }
    return 0;
}

static void frame_begin(struct frame *f, pc_buf_t *out)
{
    static const char placeholder[4] = {0, 0, 0, 0};
    f->out = out;
    f->start = out->len;
    f->apart = 0;
    f->err = 0;
    msgpack_packer_init(&f->pk, f, frame_write);
    frame_write(f, placeholder, sizeof(placeholder));
}

static int frame_end(struct frame *f)
{
    if (f->err == 0) {
        size_t n = f->out->len - f->start - 4 + f->apart;
        if (n > UINT32_MAX) {
            f->err = PC_ETOOBIG;
        } else {
            uint8_t *p = f->out->data + f->start;
            p[0] = (uint8_t)(n >> 24);
            p[1] = (uint8_t)(n >> 16);
            p[2] = (uint8_t)(n >> 8);
            p[3] = (uint8_t)n;
        }
    }
    if (f->err != 0)
        f->out->len = f->start;
    return f->err;
}

static void pack_bin(msgpack_packer *pk, pc_bytes_t b)
{
    msgpack_pack_bin(pk, b.len);
    msgpack_pack_bin_body(pk, b.ptr, b.len);
}

static void pack_str(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, p, n);
}

/* A slice we can read: len 0, or a pointer to len bytes. */
static bool bytes_ok(pc_bytes_t b)
{
    return b.len == 0 || b.ptr != NULL;
}

static bool key_ok(pc_bytes_t k)
{
    return k.len > 0 && k.ptr != NULL;
}

static int check_request(const pc_request_t *req)
{
    switch (req->op) {
    case PC_OP_HELLO:
        return bytes_ok(req->token) ? 0 : PC_EINVAL;
    case PC_OP_PING:
    case PC_OP_STATS:
    case PC_OP_CLUSTER:
        return 0;
    case PC_OP_GET:
        return key_ok(req->key) && req->here <= 1 ? 0 : PC_EINVAL;
    case PC_OP_DEL:
        return key_ok(req->key) ? 0 : PC_EINVAL;
    case PC_OP_TOUCH:
        return key_ok(req->key) && req->ttl_ms <= PC_PROTO_MAX_TTL_MS ? 0 : PC_EINVAL;
    case PC_OP_FORWARD:
        return req->hops > 0 && key_ok(req->body) ? 0 : PC_EINVAL;
    case PC_OP_SYNC:
        return bytes_ok(req->body) ? 0 : PC_EINVAL;
    case PC_OP_REPLICATE:
        if (!key_ok(req->from) || req->mode > PC_REPL_HANDOFF ||
            (req->nentries > 0 && req->entries == NULL))
            return PC_EINVAL;
        for (uint32_t i = 0; i < req->nentries; i++) {
            const pc_repl_entry_t *e = &req->entries[i];
            if (!key_ok(e->key) || (e->has_value && !bytes_ok(e->value)) || e->ttl_ms < -1)
                return PC_EINVAL;
        }
        return 0;
    case PC_OP_SET:
        return key_ok(req->key) && bytes_ok(req->value) && req->cond <= PC_COND_XX &&
                       req->ttl_ms <= PC_PROTO_MAX_TTL_MS
                   ? 0
                   : PC_EINVAL;
    case PC_OP_MGET:
        if (req->nkeys == 0 || req->keys == NULL || req->here > 1)
            return PC_EINVAL;
        for (uint32_t i = 0; i < req->nkeys; i++) {
            if (!key_ok(req->keys[i]))
                return PC_EINVAL;
        }
        return 0;
    default:
        return PC_EINVAL;
    }
}

int pc_proto_encode_request(pc_buf_t *out, const pc_request_t *req)
{
    if (out == NULL || req == NULL)
        return PC_EINVAL;
    int rc = check_request(req);
    if (rc != 0)
        return rc;

    struct frame f;
    msgpack_packer *pk = &f.pk;
    frame_begin(&f, out);
    switch (req->op) {
    case PC_OP_HELLO:
        msgpack_pack_array(pk, req->token.len > 0 ? 4 : 3);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        msgpack_pack_uint32(pk, req->proto_version);
        if (req->token.len > 0)
            pack_bin(pk, req->token);
        break;
    case PC_OP_PING:
    case PC_OP_STATS:
    case PC_OP_CLUSTER:
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        break;
    case PC_OP_FORWARD:
        msgpack_pack_array(pk, req->deadline_ms != 0 ? 5 : 4);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        msgpack_pack_uint32(pk, req->hops);
        pack_bin(pk, req->body);
        if (req->deadline_ms != 0)
            msgpack_pack_uint64(pk, req->deadline_ms);
        break;
    case PC_OP_SYNC:
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        pack_bin(pk, req->body);
        break;
    case PC_OP_REPLICATE:
        msgpack_pack_array(pk, 5);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        msgpack_pack_uint32(pk, req->mode);
        pack_str(pk, req->from.ptr, req->from.len);
        msgpack_pack_array(pk, req->nentries);
        for (uint32_t i = 0; i < req->nentries; i++) {
            const pc_repl_entry_t *e = &req->entries[i];
            msgpack_pack_array(pk, 5);
            pack_bin(pk, e->key);
            if (e->has_value)
                pack_bin(pk, e->value);
            else
                msgpack_pack_nil(pk);
            msgpack_pack_uint32(pk, e->flags);
            msgpack_pack_uint64(pk, e->version);
            msgpack_pack_int64(pk, e->ttl_ms);
        }
        break;
    case PC_OP_GET:
        /* here = 0 is left out: a plain GET stays the three elements every
         * version-1 node reads. */
        msgpack_pack_array(pk, req->here != 0 ? 4 : 3);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        pack_bin(pk, req->key);
        if (req->here != 0)
            msgpack_pack_uint32(pk, req->here);
        break;
    case PC_OP_DEL: {
        int dl = req->deadline_ms != 0;
        msgpack_pack_array(pk, 3 + dl);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        pack_bin(pk, req->key);
        if (dl)
            msgpack_pack_uint64(pk, req->deadline_ms);
        break;
    }
    case PC_OP_TOUCH:
        msgpack_pack_array(pk, req->deadline_ms != 0 ? 5 : 4);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        pack_bin(pk, req->key);
        msgpack_pack_uint64(pk, req->ttl_ms);
        if (req->deadline_ms != 0)
            msgpack_pack_uint64(pk, req->deadline_ms);
        break;
    case PC_OP_MGET:
        msgpack_pack_array(pk, req->here != 0 ? 4 : 3); /* as GET's here */
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        msgpack_pack_array(pk, req->nkeys);
        for (uint32_t i = 0; i < req->nkeys; i++)
            pack_bin(pk, req->keys[i]);
        if (req->here != 0)
            msgpack_pack_uint32(pk, req->here);
        break;
    case PC_OP_SET: {
        /* Trailing optional args that are 0 are left out: the decoder reads
         * them back as 0, and a plain SET stays 4 elements long. */
        size_t n = req->deadline_ms != 0 ? 9
                   : req->cas != 0   ? 8
                   : req->cond != 0  ? 7
                   : req->flags != 0 ? 6
                   : req->ttl_ms != 0 ? 5
                                      : 4;
        msgpack_pack_array(pk, n);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        pack_bin(pk, req->key);
        pack_bin(pk, req->value);
        if (n > 4)
            msgpack_pack_uint64(pk, req->ttl_ms);
        if (n > 5)
            msgpack_pack_uint32(pk, req->flags);
        if (n > 6)
            msgpack_pack_uint32(pk, req->cond);
        if (n > 7)
            msgpack_pack_uint64(pk, req->cas);
        if (n > 8)
            msgpack_pack_uint64(pk, req->deadline_ms);
        break;
    }
    default:
        break; /* rejected by check_request */
    }
    return frame_end(&f);
}

/* An entry's fields after its value. */
static void pack_entry_tail(msgpack_packer *pk, const pc_entry_t *e)
{
    msgpack_pack_uint32(pk, e->flags);
    msgpack_pack_uint64(pk, e->version);
    msgpack_pack_int64(pk, e->ttl_ms);
}

static void pack_entry_fields(msgpack_packer *pk, const pc_entry_t *e)
{
    pack_bin(pk, e->value);
    pack_entry_tail(pk, e);
}

static void pack_head(msgpack_packer *pk, size_t n, uint32_t op, uint64_t id, uint32_t status)
{
    msgpack_pack_array(pk, n);
    msgpack_pack_uint32(pk, op);
    msgpack_pack_uint64(pk, id);
    msgpack_pack_uint32(pk, status);
}

static int check_response(const pc_response_t *r)
{
    if (r->status != PC_ST_OK)
        return bytes_ok(r->message) ? 0 : PC_EINVAL;
    switch (r->op) {
    case PC_OP_HELLO:
        return bytes_ok(r->node_name) && bytes_ok(r->server_version) ? 0 : PC_EINVAL;
    case PC_OP_PING:
    case PC_OP_DEL:
    case PC_OP_TOUCH:
    case PC_OP_SET:
    case PC_OP_REPLICATE:
        return 0;
    case PC_OP_GET:
        return bytes_ok(r->entry.value) ? 0 : PC_EINVAL;
    case PC_OP_FORWARD:
    case PC_OP_SYNC:
        return bytes_ok(r->body) ? 0 : PC_EINVAL;
    case PC_OP_CLUSTER:
        if ((r->nmembers > 0 && r->members == NULL) || r->nmembers > PC_PROTO_MAX_MEMBERS)
            return PC_EINVAL;
        for (uint32_t i = 0; i < r->nmembers; i++) {
            if (!bytes_ok(r->members[i].name) || !bytes_ok(r->members[i].addr))
                return PC_EINVAL;
        }
        return 0;
    case PC_OP_MGET:
        if (r->nentries > 0 && r->entries == NULL)
            return PC_EINVAL;
        for (uint32_t i = 0; i < r->nentries; i++) {
            if (r->entries[i].status == PC_ST_OK && !bytes_ok(r->entries[i].value))
                return PC_EINVAL;
        }
        return 0;
    case PC_OP_STATS:
        if ((r->nstats > 0 && r->stats == NULL) || r->nstats > PC_PROTO_MAX_STATS)
            return PC_EINVAL;
        for (uint32_t i = 0; i < r->nstats; i++) {
            if (!bytes_ok(r->stats[i].name))
                return PC_EINVAL;
        }
        return 0;
    default:
        return PC_EINVAL;
    }
}

int pc_proto_encode_response(pc_buf_t *out, const pc_response_t *resp)
{
    if (out == NULL || resp == NULL)
        return PC_EINVAL;
    int rc = check_response(resp);
    if (rc != 0)
        return rc;

    struct frame f;
    msgpack_packer *pk = &f.pk;
    /* The ring fingerprint, when there is one, is one more trailing
     * element after the op's own. A CLUSTER reply carries it in its own
     * field, but an error to CLUSTER has none and trails it like any
     * other error (the client gives up on that ring by it). */
    size_t fp = resp->ring_fp != 0 && (resp->op != PC_OP_CLUSTER || resp->status != PC_ST_OK);
    frame_begin(&f, out);
    if (resp->status != PC_ST_OK) {
        pack_head(pk, 4 + fp, resp->op, resp->id, resp->status);
        if (resp->message.len > 0) {
            pack_str(pk, resp->message.ptr, resp->message.len);
        } else {
            const char *m = pc_status_message(resp->status);
            pack_str(pk, m, strlen(m));
        }
        if (fp)
            msgpack_pack_uint64(pk, resp->ring_fp);
        return frame_end(&f);
    }

    switch (resp->op) {
    case PC_OP_HELLO:
        pack_head(pk, 6 + fp + (fp && resp->now_ms != 0), resp->op, resp->id, PC_ST_OK);
        msgpack_pack_uint32(pk, resp->proto_version);
        pack_str(pk, resp->node_name.ptr, resp->node_name.len);
        pack_str(pk, resp->server_version.ptr, resp->server_version.len);
        break;
    case PC_OP_PING:
    case PC_OP_DEL:
    case PC_OP_TOUCH:
        pack_head(pk, 3 + fp, resp->op, resp->id, PC_ST_OK);
        break;
    case PC_OP_GET:
        pack_head(pk, 7 + fp, resp->op, resp->id, PC_ST_OK);
        pack_entry_fields(pk, &resp->entry);
        break;
    case PC_OP_MGET:
        pack_head(pk, 4 + fp, resp->op, resp->id, PC_ST_OK);
        msgpack_pack_array(pk, resp->nentries);
        for (uint32_t i = 0; i < resp->nentries; i++) {
            const pc_entry_t *e = &resp->entries[i];
            if (e->status == PC_ST_OK) {
                msgpack_pack_array(pk, 5);
                msgpack_pack_uint32(pk, PC_ST_OK);
                pack_entry_fields(pk, e);
            } else {
                msgpack_pack_array(pk, 1);
                msgpack_pack_uint32(pk, e->status);
            }
        }
        break;
    case PC_OP_SET:
        pack_head(pk, 4 + fp, resp->op, resp->id, PC_ST_OK);
        msgpack_pack_uint64(pk, resp->version);
        break;
    case PC_OP_STATS:
        pack_head(pk, 4 + fp, resp->op, resp->id, PC_ST_OK);
        msgpack_pack_map(pk, resp->nstats);
        for (uint32_t i = 0; i < resp->nstats; i++) {
            pack_str(pk, resp->stats[i].name.ptr, resp->stats[i].name.len);
            msgpack_pack_int64(pk, resp->stats[i].value);
        }
        break;
    case PC_OP_CLUSTER:
        pack_head(pk, 6, resp->op, resp->id, PC_ST_OK);
        msgpack_pack_uint64(pk, resp->fingerprint);
        msgpack_pack_uint32(pk, resp->replicas);
        msgpack_pack_array(pk, resp->nmembers);
        for (uint32_t i = 0; i < resp->nmembers; i++) {
            const pc_cluster_member_t *m = &resp->members[i];
            msgpack_pack_array(pk, 5);
            pack_str(pk, m->name.ptr, m->name.len);
            pack_str(pk, m->addr.ptr, m->addr.len);
            msgpack_pack_uint32(pk, m->state);
            msgpack_pack_uint64(pk, m->incarnation);
            msgpack_pack_uint32(pk, m->weight);
        }
        break;
    case PC_OP_FORWARD:
    case PC_OP_SYNC:
        pack_head(pk, 4 + fp, resp->op, resp->id, PC_ST_OK);
        pack_bin(pk, resp->body);
        break;
    case PC_OP_REPLICATE:
        pack_head(pk, 4 + fp, resp->op, resp->id, PC_ST_OK);
        msgpack_pack_uint32(pk, resp->applied);
        break;
    default:
        break; /* rejected by check_response */
    }
    if (fp)
        msgpack_pack_uint64(pk, resp->ring_fp);
    /* HELLO's clock comes after the fingerprint, so that the fingerprint
     * stays the element after the op's own for every reader. */
    if (fp && resp->op == PC_OP_HELLO && resp->now_ms != 0)
        msgpack_pack_uint64(pk, resp->now_ms);
    return frame_end(&f);
}

int pc_proto_encode_get_ref(pc_buf_t *out, const pc_response_t *resp, size_t *value_at)
{
    if (out == NULL || resp == NULL || value_at == NULL || resp->op != PC_OP_GET ||
        resp->status != PC_ST_OK)
        return PC_EINVAL;
    int rc = check_response(resp);
    if (rc != 0)
        return rc;
    struct frame f;
    msgpack_packer *pk = &f.pk;
    const pc_entry_t *e = &resp->entry;
    size_t fp = resp->ring_fp != 0;
    frame_begin(&f, out);
    f.apart = e->value.len;
    /* As pack_entry_fields, but for the value's bytes. */
    pack_head(pk, 7 + fp, resp->op, resp->id, PC_ST_OK);
    msgpack_pack_bin(pk, e->value.len);
    *value_at = out->len;
    pack_entry_tail(pk, e);
    if (fp)
        msgpack_pack_uint64(pk, resp->ring_fp);
    return frame_end(&f);
}

int pc_proto_encode_error(pc_buf_t *out, uint32_t op, uint64_t id, uint32_t status,
                          const char *message)
{
    if (out == NULL || status == PC_ST_OK)
        return PC_EINVAL;
    pc_response_t r;
    memset(&r, 0, sizeof(r));
    r.op = op;
    r.id = id;
    r.status = status;
    if (message != NULL) {
        size_t n = strlen(message);
        if (n > UINT32_MAX)
            return PC_ETOOBIG;
        r.message.ptr = (const uint8_t *)message;
        r.message.len = (uint32_t)n;
    }
    return pc_proto_encode_response(out, &r);
}

int pc_proto_append_frame(pc_buf_t *out, const uint8_t *body, size_t len)
{
    if (len > UINT32_MAX)
        return PC_ETOOBIG;
    uint8_t pfx[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    size_t before = out->len;
    int rc = pc_buf_append(out, pfx, sizeof pfx);
    if (rc == 0 && len > 0)
        rc = pc_buf_append(out, body, len);
    if (rc < 0)
        out->len = before;
    return rc;
}

int pc_proto_encode_forward(pc_buf_t *out, uint32_t hops, uint64_t deadline_ms,
                            const pc_request_t *inner, pc_buf_t *tmp)
{
    pc_buf_reset(tmp);
    int rc = pc_proto_encode_request(tmp, inner);
    if (rc < 0)
        return rc;
    /* The body of the frame just encoded: past its length prefix. */
    pc_request_t fw = {.op = PC_OP_FORWARD, .id = inner->id, .hops = hops,
                       .deadline_ms = deadline_ms,
                       .body = {tmp->data + 4, (uint32_t)(tmp->len - 4)}};
    return pc_proto_encode_request(out, &fw);
}
