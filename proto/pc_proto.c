/*
 * pc_proto.c -- frames, validation, decoding and encoding of peercache
 * messages. docs/PROTOCOL.md describes the bytes; pc_proto.h the contract.
 *
 * Decoding runs in three steps, each trusting only what the previous one
 * proved:
 *   1. pc_proto_validate() walks the raw bytes with no allocation and
 *      rejects anything whose headers claim more than the body holds.
 *      msgpack-c's unpacker allocates `count * 16` bytes as soon as it sees
 *      an array header, so without this step a 5-byte body claiming 2^32
 *      elements would make it try to reserve 64 GiB.
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

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

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

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- streaming frame reader ------------------------------------------ */

/* An empty buffer bigger than this is given back to malloc in reserve(),
 * so one large frame does not pin a megabyte to an idle connection. */
#define READER_KEEP (4 * (size_t)PC_PROTO_READ_CHUNK)

void pc_proto_reader_init(pc_proto_reader_t *r, uint32_t max_frame)
{
    if (max_frame == 0)
        max_frame = PC_PROTO_DEFAULT_MAX_FRAME;
    r->max_frame = max_frame;
    r->off = 0;
    /* One whole frame plus one read's worth: a reader that drains next()
     * always has room for the next read. Saturate on 32-bit size_t. */
    size_t cap = (size_t)max_frame;
    size_t slack = 4 + (size_t)PC_PROTO_READ_CHUNK;
    cap = cap > SIZE_MAX - slack ? SIZE_MAX : cap + slack;
    pc_buf_init(&r->buf, cap);
    r->lent = NULL;
    r->lent_len = 0;
}

void pc_proto_reader_free(pc_proto_reader_t *r)
{
    pc_buf_free(&r->buf);
    r->off = 0;
    r->lent = NULL;
    r->lent_len = 0;
}

void pc_proto_reader_account(pc_proto_reader_t *r, size_t *acct)
{
    pc_buf_set_account(&r->buf, acct);
}

/* The bytes next() reads from: the lent ones while there are, else ours. */
static const uint8_t *reader_bytes(const pc_proto_reader_t *r, size_t *len)
{
    if (r->lent != NULL) {
        *len = r->lent_len;
        return r->lent;
    }
    *len = r->buf.len;
    return r->buf.data;
}

int pc_proto_reader_lend(pc_proto_reader_t *r, const uint8_t *p, size_t n)
{
    if (pc_proto_reader_pending(r) != 0 || p == NULL)
        return PC_EINVAL;
    pc_buf_free(&r->buf);
    r->off = 0;
    r->lent = p;
    r->lent_len = n;
    return 0;
}

int pc_proto_reader_keep(pc_proto_reader_t *r)
{
    if (r->lent == NULL)
        return 0;
    const uint8_t *tail = r->lent + r->off;
    size_t n = r->lent_len - r->off;
    r->lent = NULL;
    r->lent_len = 0;
    r->off = 0;
    r->buf.len = 0;
    if (n > r->buf.max)
        return PC_ETOOBIG;
    return pc_buf_append(&r->buf, tail, n);
}

/* Moves the unconsumed tail to the front. Only reserve() and feed() call
 * it, which is what keeps bodies returned by next() valid until then. */
static void reader_compact(pc_proto_reader_t *r)
{
    if (r->off == 0)
        return;
    pc_buf_consume(&r->buf, r->off);
    r->off = 0;
}

int pc_proto_reader_reserve(pc_proto_reader_t *r, size_t want, uint8_t **p, size_t *avail)
{
    int krc = pc_proto_reader_keep(r);
    if (krc != 0)
        return krc;
    reader_compact(r);
    if (r->buf.len == 0 && r->buf.cap > READER_KEEP)
        pc_buf_free(&r->buf);

    size_t room = r->buf.max - r->buf.len;
    if (room == 0)
        return PC_ETOOBIG;
    if (want == 0)
        want = PC_PROTO_READ_CHUNK;
    if (want > room)
        want = room;
    /* Growth doubles, but not past the end of the frame being read when
     * the caller asks for no more than its rest: a partial frame then
     * costs its own size, not up to twice that. */
    size_t max = r->buf.max, end = 0;
    if (r->buf.len >= 4) {
        uint32_t n = get_be32(r->buf.data);
        if (n != 0 && n <= r->max_frame)
            end = 4 + (size_t)n;
    }
    if (end != 0 && r->buf.len + want <= end && end < max)
        r->buf.max = end;
    int rc = pc_buf_reserve(&r->buf, want);
    r->buf.max = max;
    if (rc != 0)
        return rc;
    *p = r->buf.data + r->buf.len;
    *avail = r->buf.cap - r->buf.len;
    return 0;
}

void pc_proto_reader_commit(pc_proto_reader_t *r, size_t n)
{
    /* Clamp rather than trust: committing more than was reserved would
     * expose uninitialised memory as frame bytes. */
    size_t space = r->buf.cap - r->buf.len;
    r->buf.len += n < space ? n : space;
}

int pc_proto_reader_feed(pc_proto_reader_t *r, const void *p, size_t n)
{
    int krc = pc_proto_reader_keep(r);
    if (krc != 0)
        return krc;
    reader_compact(r);
    if (n > r->buf.max - r->buf.len)
        return PC_ETOOBIG;
    return pc_buf_append(&r->buf, p, n);
}

int pc_proto_reader_next(pc_proto_reader_t *r, const uint8_t **body, uint32_t *len)
{
    size_t have;
    const uint8_t *bytes = reader_bytes(r, &have);
    size_t pending = have - r->off;
    if (pending < 4)
        return 0;
    const uint8_t *h = bytes + r->off;
    uint32_t n = get_be32(h);
    if (n == 0)
        return PC_EPROTO;
    if (n > r->max_frame)
        return PC_ETOOBIG;
    if (pending - 4 < n)
        return 0;
    *body = h + 4;
    *len = n;
    r->off += 4 + (size_t)n;
    return 1;
}

size_t pc_proto_reader_pending(const pc_proto_reader_t *r)
{
    size_t have;
    reader_bytes(r, &have);
    return have - r->off;
}

size_t pc_proto_reader_missing(const pc_proto_reader_t *r)
{
    size_t have;
    const uint8_t *bytes = reader_bytes(r, &have);
    size_t pending = have - r->off;
    if (pending == 0)
        return 0;
    if (pending < 4)
        return 4 - pending;
    uint32_t n = get_be32(bytes + r->off);
    if (n == 0 || n > r->max_frame)
        return 0;
    size_t whole = 4 + (size_t)n;
    return pending >= whole ? 0 : whole - pending;
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

int pc_proto_validate(const uint8_t *body, size_t len, unsigned max_depth)
{
    /* open[i] = values still owed by the i-th open container. uint64 because
     * a map32 owes 2 * (2^32 - 1) values. */
    uint64_t open[PC_PROTO_VALIDATE_DEPTH_CAP];
    unsigned depth = 0;
    /* Values still to read in total: the sum of open[] plus the top value.
     * Every value takes at least one byte, so owing more than the bytes
     * left is already proof of a lie. */
    uint64_t owed = 1;
    size_t pos = 0;

    if (body == NULL)
        return PC_EPROTO;
    if (max_depth > PC_PROTO_VALIDATE_DEPTH_CAP)
        max_depth = PC_PROTO_VALIDATE_DEPTH_CAP;

    while (owed > 0) {
        if (pos >= len)
            return PC_EPROTO;
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

        owed--;
        if (depth > 0)
            open[depth - 1]--;

        if (h.kind == HEAD_ARRAY || h.kind == HEAD_MAP) {
            uint64_t count = h.kind == HEAD_MAP ? 2 * n : n;
            if (depth >= max_depth)
                return PC_EPROTO;
            if (owed + count > len - pos)
                return PC_EPROTO;
            owed += count;
            if (count > 0)
                open[depth++] = count;
        }
        while (depth > 0 && open[depth - 1] == 0)
            depth--;
    }
    return pos == len ? 0 : PC_EPROTO;
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

/* Steps 1 and 2 of the header comment. On success the tree is d->unp.data
 * and the caller must call msgpack_unpacked_destroy(&d->unp) when done. */
static int unpack_body(pc_proto_decoder_t *d, const uint8_t *body, size_t len,
                       const msgpack_object **root)
{
    if (body == NULL || len == 0 || len > d->lim.max_frame)
        return PC_EPROTO;
    if (pc_proto_validate(body, len, PC_PROTO_MAX_DEPTH) != 0)
        return PC_EPROTO;

    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&d->unp, (const char *)body, len, &off);
    switch (ret) {
    case MSGPACK_UNPACK_SUCCESS:
        break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        return PC_ENOMEM;
    case MSGPACK_UNPACK_PARSE_ERROR:
        /* After validation the only parse failure msgpack-c has left is its
         * zone allocation failing (it reports that as a parse error). The
         * fuzz target checks that validate and msgpack-c agree. */
        return PC_ENOMEM;
    default:
        msgpack_unpacked_destroy(&d->unp);
        return PC_EPROTO;
    }
    if (off != len) {
        msgpack_unpacked_destroy(&d->unp);
        return PC_EPROTO;
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

static int req_key(const pc_proto_decoder_t *d, const msgpack_object *o, pc_bytes_t *k)
{
    if (!as_bytes(o, k) || k->len == 0)
        return PC_EBADREQ;
    if (k->len > d->lim.max_key)
        return PC_ETOOBIG;
    return 0;
}

static int req_hello(const pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    uint64_t v;
    if (!as_uint(elem(a, 2), UINT32_MAX, &v) || !opt_bytes(elem(a, 3), &out->token))
        return PC_EBADREQ;
    out->proto_version = (uint32_t)v;
    if (out->token.len > d->lim.max_key)
        return PC_ETOOBIG;
    return 0;
}

static int req_set(const pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    int rc = req_key(d, elem(a, 2), &out->key);
    if (rc != 0)
        return rc;
    if (!as_bytes(elem(a, 3), &out->value))
        return PC_EBADREQ;
    if (out->value.len > d->lim.max_value)
        return PC_ETOOBIG;

    uint64_t flags, cond;
    if (!opt_uint(elem(a, 4), UINT64_MAX, &out->ttl_ms) ||
        !opt_uint(elem(a, 5), UINT32_MAX, &flags) || !opt_uint(elem(a, 6), PC_COND_XX, &cond) ||
        !opt_uint(elem(a, 7), UINT64_MAX, &out->cas))
        return PC_EBADREQ;
    out->flags = (uint32_t)flags;
    out->cond = (uint32_t)cond;
    return 0;
}

static int req_mget(pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    const msgpack_object *ks = elem(a, 2);
    if (ks == NULL || ks->type != MSGPACK_OBJECT_ARRAY || ks->via.array.size == 0)
        return PC_EBADREQ;
    uint32_t n = ks->via.array.size;
    if (n > d->lim.max_mget_keys)
        return PC_ETOOBIG;
    int rc = grow((void **)&d->keys, &d->keys_cap, n, sizeof(*d->keys));
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        rc = req_key(d, &ks->via.array.ptr[i], &d->keys[i]);
        if (rc != 0)
            return rc;
    }
    out->nkeys = n;
    out->keys = d->keys;
    return 0;
}

/* [hops, body]: the relayed request stays opaque here; the receiver
 * decodes it as a request of its own. */
static int req_forward(const pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    uint64_t hops;
    if (!as_uint(elem(a, 2), UINT32_MAX, &hops) || hops == 0 || !as_bytes(elem(a, 3), &out->body) ||
        out->body.len == 0)
        return PC_EBADREQ;
    out->hops = (uint32_t)hops;
    return 0;
}

/* [key, value|nil, flags, version, ttl_ms] */
static int repl_entry(const pc_proto_decoder_t *d, const msgpack_object *eo, pc_repl_entry_t *e)
{
    uint64_t flags;
    memset(e, 0, sizeof(*e));
    if (eo->type != MSGPACK_OBJECT_ARRAY)
        return PC_EBADREQ;
    int rc = req_key(d, elem(eo, 0), &e->key);
    if (rc != 0)
        return rc;
    const msgpack_object *v = elem(eo, 1);
    if (v == NULL)
        return PC_EBADREQ;
    if (v->type != MSGPACK_OBJECT_NIL) {
        if (!as_bytes(v, &e->value))
            return PC_EBADREQ;
        if (e->value.len > d->lim.max_value)
            return PC_ETOOBIG;
        e->has_value = 1;
    }
    if (!as_uint(elem(eo, 2), UINT32_MAX, &flags) || !as_uint(elem(eo, 3), UINT64_MAX, &e->version) ||
        !as_int64(elem(eo, 4), &e->ttl_ms) || e->ttl_ms < -1)
        return PC_EBADREQ;
    e->flags = (uint32_t)flags;
    return 0;
}

/* [mode, from, [entry, ...]]; entries bounded like MGET keys. */
static int req_replicate(pc_proto_decoder_t *d, const msgpack_object *a, pc_request_t *out)
{
    uint64_t mode;
    if (!as_uint(elem(a, 2), PC_REPL_HANDOFF, &mode) || !as_bytes(elem(a, 3), &out->from) ||
        out->from.len == 0)
        return PC_EBADREQ;
    out->mode = (uint32_t)mode;
    const msgpack_object *es = elem(a, 4);
    if (es == NULL || es->type != MSGPACK_OBJECT_ARRAY)
        return PC_EBADREQ;
    uint32_t n = es->via.array.size;
    if (n > d->lim.max_mget_keys)
        return PC_ETOOBIG;
    int rc = grow((void **)&d->repl, &d->repl_cap, n, sizeof(*d->repl));
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        rc = repl_entry(d, &es->via.array.ptr[i], &d->repl[i]);
        if (rc != 0)
            return rc;
    }
    out->nentries = n;
    out->entries = d->repl;
    return 0;
}

static int map_request(pc_proto_decoder_t *d, const msgpack_object *root, pc_request_t *out)
{
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 2)
        return PC_EPROTO;
    uint64_t op, id;
    if (!as_uint(elem(root, 0), UINT32_MAX, &op) || !as_uint(elem(root, 1), UINT64_MAX, &id))
        return PC_EPROTO;
    out->op = (uint32_t)op;
    out->id = id;

    uint64_t ttl;
    int rc;
    switch (op) {
    case PC_OP_HELLO:
        return req_hello(d, root, out);
    case PC_OP_PING:
    case PC_OP_STATS:
    case PC_OP_CLUSTER:
        return 0;
    case PC_OP_GET:
    case PC_OP_DEL:
        return req_key(d, elem(root, 2), &out->key);
    case PC_OP_FORWARD:
        return req_forward(d, root, out);
    case PC_OP_SYNC:
        return as_bytes(elem(root, 2), &out->body) ? 0 : PC_EBADREQ;
    case PC_OP_REPLICATE:
        return req_replicate(d, root, out);
    case PC_OP_MGET:
        return req_mget(d, root, out);
    case PC_OP_SET:
        return req_set(d, root, out);
    case PC_OP_TOUCH:
        rc = req_key(d, elem(root, 2), &out->key);
        if (rc != 0)
            return rc;
        if (!as_uint(elem(root, 3), UINT64_MAX, &ttl))
            return PC_EBADREQ;
        out->ttl_ms = ttl;
        return 0;
    default:
        return PC_EBADREQ;
    }
}

int pc_proto_decode_request(pc_proto_decoder_t *d, const uint8_t *body, size_t len,
                            pc_request_t *out)
{
    const msgpack_object *root;
    memset(out, 0, sizeof(*out));
    int rc = unpack_body(d, body, len, &root);
    if (rc != 0)
        return rc;
    rc = map_request(d, root, out);
    msgpack_unpacked_destroy(&d->unp);
    if (rc == PC_EPROTO || rc == PC_ENOMEM) {
        /* Contract: only BADREQ / TOOBIG promise op and id; don't let a
         * caller come to rely on half-filled fields after the others. */
        memset(out, 0, sizeof(*out));
    } else if (rc != 0) {
        uint32_t op = out->op;
        uint64_t id = out->id;
        memset(out, 0, sizeof(*out));
        out->op = op;
        out->id = id;
    }
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
    /* No count limit of its own: validation already bounds the pairs by
     * half the frame size. */
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

/* [fingerprint, replicas, [[name, addr, state, incarnation, weight], ...]].
 * No count limit of its own: validation bounds it by the frame size. */
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

static int map_response(pc_proto_decoder_t *d, const msgpack_object *root, pc_response_t *out)
{
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 3)
        return PC_EPROTO;
    uint64_t op, id, status, v;
    if (!as_uint(elem(root, 0), UINT32_MAX, &op) || !as_uint(elem(root, 1), UINT64_MAX, &id) ||
        !as_uint(elem(root, 2), UINT32_MAX, &status))
        return PC_EPROTO;
    out->op = (uint32_t)op;
    out->id = id;
    out->status = (uint32_t)status;

    /* Errors decode for any op, including ones this build does not know:
     * a server answers BAD_REQUEST to an op it does not know by echoing it. */
    if (status != PC_ST_OK) {
        if (!opt_bytes(elem(root, 3), &out->message))
            return PC_EPROTO;
        return ring_fp_at(root, 4, out);
    }

    int rc;
    switch (op) {
    case PC_OP_HELLO:
        if (!as_uint(elem(root, 3), UINT32_MAX, &v) || !as_bytes(elem(root, 4), &out->node_name) ||
            !as_bytes(elem(root, 5), &out->server_version))
            return PC_EPROTO;
        out->proto_version = (uint32_t)v;
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
    memset(out, 0, sizeof(*out));
    int rc = unpack_body(d, body, len, &root);
    if (rc != 0)
        return rc;
    rc = map_response(d, root, out);
    msgpack_unpacked_destroy(&d->unp);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
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
    f->err = 0;
    msgpack_packer_init(&f->pk, f, frame_write);
    frame_write(f, placeholder, sizeof(placeholder));
}

static int frame_end(struct frame *f)
{
    if (f->err == 0) {
        size_t n = f->out->len - f->start - 4;
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
    case PC_OP_DEL:
    case PC_OP_TOUCH:
        return key_ok(req->key) ? 0 : PC_EINVAL;
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
        return key_ok(req->key) && bytes_ok(req->value) && req->cond <= PC_COND_XX ? 0
                                                                                    : PC_EINVAL;
    case PC_OP_MGET:
        if (req->nkeys == 0 || req->keys == NULL)
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
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        msgpack_pack_uint32(pk, req->hops);
        pack_bin(pk, req->body);
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
    case PC_OP_DEL:
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        pack_bin(pk, req->key);
        break;
    case PC_OP_TOUCH:
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        pack_bin(pk, req->key);
        msgpack_pack_uint64(pk, req->ttl_ms);
        break;
    case PC_OP_MGET:
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint32(pk, req->op);
        msgpack_pack_uint64(pk, req->id);
        msgpack_pack_array(pk, req->nkeys);
        for (uint32_t i = 0; i < req->nkeys; i++)
            pack_bin(pk, req->keys[i]);
        break;
    case PC_OP_SET: {
        /* Trailing optional args that are 0 are left out: the decoder reads
         * them back as 0, and a plain SET stays 4 elements long. */
        size_t n = req->cas != 0     ? 8
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
        break;
    }
    default:
        break; /* rejected by check_request */
    }
    return frame_end(&f);
}

static void pack_entry_fields(msgpack_packer *pk, const pc_entry_t *e)
{
    pack_bin(pk, e->value);
    msgpack_pack_uint32(pk, e->flags);
    msgpack_pack_uint64(pk, e->version);
    msgpack_pack_int64(pk, e->ttl_ms);
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
        if (r->nmembers > 0 && r->members == NULL)
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
        if (r->nstats > 0 && r->stats == NULL)
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
        pack_head(pk, 6 + fp, resp->op, resp->id, PC_ST_OK);
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
