/*
 * pc_proto_reader.c -- the stream frame reader (pc_proto_reader.h): the
 * buffer, lending, the frames next() returns, and the look ahead
 * (ahead(), pc_proto_peek_get_key) that the node prefetches from. The
 * codec, pc_proto.c, shares no code with it.
 */
#include "pc_proto_reader.h"

#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_error.h"
#include "pc_proto.h" /* PC_OP_GET, PC_PROTO_DEFAULT_MAX_FRAME */

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
    r->unframed = 0;
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
    if (r->buf.len >= 4 && !r->unframed) {
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

size_t pc_proto_reader_ahead(const pc_proto_reader_t *r, pc_bytes_t *out, size_t max)
{
    size_t have, n = 0;
    const uint8_t *bytes = reader_bytes(r, &have);
    if (r->unframed)
        return 0;
    for (size_t off = r->off; n < max && have - off >= 4;) {
        uint32_t len = get_be32(bytes + off);
        if (len == 0 || len > r->max_frame || have - off - 4 < len)
            break;
        out[n].ptr = bytes + off + 4;
        out[n].len = len;
        n++;
        off += 4 + (size_t)len;
    }
    return n;
}

/* A msgpack unsigned integer at *p (positive fixint, uint 8/16/32/64). */
static int peek_uint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    if (*p >= end)
        return 0;
    uint8_t b = *(*p)++;
    size_t n;
    if (b < 0x80) {
        *v = b;
        return 1;
    }
    switch (b) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    default: return 0;
    }
    if ((size_t)(end - *p) < n)
        return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = x << 8 | (*p)[i];
    *p += n;
    *v = x;
    return 1;
}

int pc_proto_peek_get_key(const uint8_t *body, size_t len, pc_bytes_t *key)
{
    const uint8_t *p = body, *end = body + len;
    uint64_t op, id;
    /* a fixarray of 3.. elements (a GET has 3 or 4) */
    if (len < 4 || *p < 0x93 || *p > 0x9f)
        return 0;
    p++;
    if (!peek_uint(&p, end, &op) || op != PC_OP_GET || !peek_uint(&p, end, &id) || p >= end)
        return 0;
    uint8_t b = *p++;
    size_t klen;
    if ((b & 0xe0) == 0xa0) { /* fixstr */
        klen = b & 0x1f;
    } else if (b == 0xc4 || b == 0xd9) { /* bin 8, str 8 */
        if (p >= end)
            return 0;
        klen = *p++;
    } else if (b == 0xc5 || b == 0xda) { /* bin 16, str 16 */
        if (end - p < 2)
            return 0;
        klen = (size_t)p[0] << 8 | p[1];
        p += 2;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < klen)
        return 0;
    key->ptr = p;
    key->len = (uint32_t)klen;
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
    if (pending == 0 || r->unframed)
        return 0;
    if (pending < 4)
        return 4 - pending;
    uint32_t n = get_be32(bytes + r->off);
    if (n == 0 || n > r->max_frame)
        return 0;
    size_t whole = 4 + (size_t)n;
    return pending >= whole ? 0 : whole - pending;
}

void pc_proto_reader_unframed(pc_proto_reader_t *r) { r->unframed = 1; }

const uint8_t *pc_proto_reader_peek(const pc_proto_reader_t *r)
{
    size_t have;
    return reader_bytes(r, &have) + r->off;
}

void pc_proto_reader_skip(pc_proto_reader_t *r, size_t n)
{
    size_t pending = pc_proto_reader_pending(r);
    r->off += n < pending ? n : pending;
}

size_t pc_proto_reader_cap(const pc_proto_reader_t *r) { return r->buf.max; }
