/*
 * pc_gossip.c -- encoding and decoding of gossip packets and push/pull
 * states. docs/MEMBERSHIP.md describes the bytes; pc_gossip.h the contract.
 *
 * Decoding trusts the input in steps, as pc_proto.c does:
 *   1. pc_proto_validate() walks the raw bytes without allocating and
 *      rejects lying sizes and anything nested deeper than 3.
 *   2. We read the two array headers of the frame ourselves (the outer
 *      array and the message / node list) and hand msgpack-c one element
 *      at a time: each scalar of the header, then each message or node,
 *      after checking from its header that it is an array of at most
 *      PC_GOSSIP_MAX_FIELDS elements. msgpack-c's tree costs about 24
 *      bytes per value, so unpacking a whole 64 KiB packet of fixints
 *      could take 1.5 MiB (and a 4 MiB state 100 MiB); one element at a
 *      time it is at most 17 values. Elements after the known ones are
 *      validated but never unpacked.
 *   3. Each element is mapped with strict type checks into scratch arrays
 *      owned by the decoder. str/bin objects point into the input bytes
 *      (msgpack-c 4 unpacks them without copying; test_proto pins it), so
 *      the zone can be dropped right after the mapping.
 */
#include "pc_gossip.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

static const char *const type_names[PC_GOSSIP_TYPE_MAX + 1] = {
    [PC_GOSSIP_PING] = "PING",   [PC_GOSSIP_PING_REQ] = "PING_REQ",
    [PC_GOSSIP_ACK] = "ACK",     [PC_GOSSIP_NACK] = "NACK",
    [PC_GOSSIP_ALIVE] = "ALIVE", [PC_GOSSIP_SUSPECT] = "SUSPECT",
    [PC_GOSSIP_DEAD] = "DEAD",   [PC_GOSSIP_LEFT] = "LEFT",
};

const char *pc_gossip_type_name(uint32_t type)
{
    if (type > PC_GOSSIP_TYPE_MAX || type_names[type] == NULL)
        return "UNKNOWN";
    return type_names[type];
}

/* A text field as both sides enforce it: 1..max bytes, no NUL inside. */
static bool text_ok(pc_bytes_t b, uint32_t max)
{
    return b.len > 0 && b.len <= max && b.ptr != NULL && memchr(b.ptr, 0, b.len) == NULL;
}

/* ---- decoding -------------------------------------------------------- */

struct pc_gossip_decoder {
    msgpack_unpacked unp;
    pc_gossip_msg_t *msgs; /* PC_GOSSIP_MAX_MSGS, allocated on first use */
    pc_gossip_node_t *nodes;
    uint32_t nodes_cap;
};

int pc_gossip_decoder_new(pc_gossip_decoder_t **out)
{
    if (out == NULL)
        return PC_EINVAL;
    *out = NULL;
    pc_gossip_decoder_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return PC_ENOMEM;
    msgpack_unpacked_init(&d->unp);
    *out = d;
    return 0;
}

void pc_gossip_decoder_free(pc_gossip_decoder_t **dp)
{
    if (dp == NULL || *dp == NULL)
        return;
    pc_gossip_decoder_t *d = *dp;
    msgpack_unpacked_destroy(&d->unp);
    free(d->msgs);
    free(d->nodes);
    free(d);
    *dp = NULL;
}

/*
 * Reads an array header at *pos. Only called on validated input, but it
 * still checks bounds so that a bug elsewhere cannot turn into a read
 * past the end. PC_EPROTO if the value there is not an array.
 */
static int read_array(const uint8_t *p, size_t len, size_t *pos, uint32_t *n)
{
    if (*pos >= len)
        return PC_EPROTO;
    uint8_t b = p[*pos];
    size_t hdr;
    if (b >= 0x90 && b <= 0x9f) {
        *n = b & 0x0fu;
        hdr = 1;
    } else if (b == 0xdc) {
        if (len - *pos < 3)
            return PC_EPROTO;
        *n = (uint32_t)p[*pos + 1] << 8 | p[*pos + 2];
        hdr = 3;
    } else if (b == 0xdd) {
        if (len - *pos < 5)
            return PC_EPROTO;
        *n = (uint32_t)p[*pos + 1] << 24 | (uint32_t)p[*pos + 2] << 16 |
             (uint32_t)p[*pos + 3] << 8 | p[*pos + 4];
        hdr = 5;
    } else {
        return PC_EPROTO;
    }
    *pos += hdr;
    return 0;
}

/* True if the value at pos is an array or a map. */
static bool is_container(uint8_t b)
{
    return (b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf);
}

/*
 * Unpacks the one value at *pos with msgpack-c and advances *pos past it.
 * The caller has checked that the value is small (a scalar, or an array
 * of at most PC_GOSSIP_MAX_FIELDS scalars). The object lives in d->unp
 * until the next call; its str/bin point into p.
 */
static int unpack_at(pc_gossip_decoder_t *d, const uint8_t *p, size_t len, size_t *pos,
                     const msgpack_object **o)
{
    msgpack_unpack_return ret = msgpack_unpack_next(&d->unp, (const char *)p, len, pos);
    switch (ret) {
    case MSGPACK_UNPACK_SUCCESS:
        *o = &d->unp.data;
        return 0;
    case MSGPACK_UNPACK_NOMEM_ERROR:
    case MSGPACK_UNPACK_PARSE_ERROR:
        /* After validation the only parse failure left is msgpack-c's
         * zone allocation failing, which it reports as a parse error. */
        return PC_ENOMEM;
    default:
        return PC_EPROTO;
    }
}

/* A scalar at *pos, unpacked. */
static int unpack_scalar(pc_gossip_decoder_t *d, const uint8_t *p, size_t len, size_t *pos,
                         const msgpack_object **o)
{
    if (*pos >= len || is_container(p[*pos]))
        return PC_EPROTO;
    return unpack_at(d, p, len, pos, o);
}

/* An array of 1..PC_GOSSIP_MAX_FIELDS elements at *pos, unpacked. Depth
 * <= 3 was validated, so at the third level its elements are scalars. */
static int unpack_record(pc_gossip_decoder_t *d, const uint8_t *p, size_t len, size_t *pos,
                         const msgpack_object **o)
{
    size_t peek = *pos;
    uint32_t n;
    if (read_array(p, len, &peek, &n) != 0 || n == 0 || n > PC_GOSSIP_MAX_FIELDS)
        return PC_EPROTO;
    return unpack_at(d, p, len, pos, o);
}

static const msgpack_object *elem(const msgpack_object *arr, uint32_t i)
{
    return i < arr->via.array.size ? &arr->via.array.ptr[i] : NULL;
}

static bool as_uint(const msgpack_object *o, uint64_t max, uint64_t *v)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
        return false;
    *v = o->via.u64;
    return true;
}

static bool as_u32(const msgpack_object *o, uint32_t *v)
{
    uint64_t x;
    if (!as_uint(o, UINT32_MAX, &x))
        return false;
    *v = (uint32_t)x;
    return true;
}

/* str or bin, checked as a text field of at most max bytes. */
static bool as_text(const msgpack_object *o, uint32_t max, pc_bytes_t *b)
{
    if (o == NULL)
        return false;
    if (o->type == MSGPACK_OBJECT_STR) {
        b->ptr = (const uint8_t *)o->via.str.ptr;
        b->len = o->via.str.size;
    } else if (o->type == MSGPACK_OBJECT_BIN) {
        b->ptr = (const uint8_t *)o->via.bin.ptr;
        b->len = o->via.bin.size;
    } else {
        return false;
    }
    return text_ok(*b, max);
}

/* The header shared by packets and states: [version, sender, <list>...].
 * Leaves *pos at the list and its count in *n. */
static int read_frame_head(pc_gossip_decoder_t *d, const uint8_t *p, size_t len, size_t *pos,
                           uint32_t *version, pc_bytes_t *sender, uint32_t *n)
{
    uint32_t top;
    int rc = read_array(p, len, pos, &top);
    if (rc != 0 || top < 3)
        return PC_EPROTO;

    const msgpack_object *o;
    rc = unpack_scalar(d, p, len, pos, &o);
    if (rc != 0)
        return rc;
    if (!as_u32(o, version) || *version == 0)
        return PC_EPROTO;
    rc = unpack_scalar(d, p, len, pos, &o);
    if (rc != 0)
        return rc;
    if (!as_text(o, PC_GOSSIP_MAX_NAME, sender))
        return PC_EPROTO;
    return read_array(p, len, pos, n);
}

/* Maps one message array. 1 = known type, 0 = unknown type (skip it),
 * PC_EPROTO = a known type with bad fields. */
static int map_msg(const msgpack_object *a, pc_gossip_msg_t *m)
{
    uint64_t type;
    memset(m, 0, sizeof(*m));
    if (!as_uint(elem(a, 0), UINT32_MAX, &type))
        return PC_EPROTO;
    m->type = (uint32_t)type;

    switch (type) {
    case PC_GOSSIP_PING:
        if (!as_u32(elem(a, 1), &m->seq) || !as_text(elem(a, 2), PC_GOSSIP_MAX_NAME, &m->name))
            return PC_EPROTO;
        return 1;
    case PC_GOSSIP_PING_REQ:
        if (!as_u32(elem(a, 1), &m->seq) ||
            !as_text(elem(a, 2), PC_GOSSIP_MAX_NAME, &m->name) ||
            !as_text(elem(a, 3), PC_GOSSIP_MAX_ADDR, &m->gossip) || !as_u32(elem(a, 4), &m->nack_ms))
            return PC_EPROTO;
        return 1;
    case PC_GOSSIP_ACK:
    case PC_GOSSIP_NACK:
        return as_u32(elem(a, 1), &m->seq) ? 1 : PC_EPROTO;
    case PC_GOSSIP_ALIVE:
        if (!as_text(elem(a, 1), PC_GOSSIP_MAX_NAME, &m->name) ||
            !as_uint(elem(a, 2), UINT64_MAX, &m->incarnation) ||
            !as_text(elem(a, 3), PC_GOSSIP_MAX_ADDR, &m->addr) ||
            !as_text(elem(a, 4), PC_GOSSIP_MAX_ADDR, &m->gossip) || !as_u32(elem(a, 5), &m->weight))
            return PC_EPROTO;
        return 1;
    case PC_GOSSIP_SUSPECT:
    case PC_GOSSIP_DEAD:
        if (!as_text(elem(a, 1), PC_GOSSIP_MAX_NAME, &m->name) ||
            !as_uint(elem(a, 2), UINT64_MAX, &m->incarnation) ||
            !as_text(elem(a, 3), PC_GOSSIP_MAX_NAME, &m->from))
            return PC_EPROTO;
        return 1;
    case PC_GOSSIP_LEFT:
        if (!as_text(elem(a, 1), PC_GOSSIP_MAX_NAME, &m->name) ||
            !as_uint(elem(a, 2), UINT64_MAX, &m->incarnation))
            return PC_EPROTO;
        return 1;
    default:
        return 0;
    }
}

static int decode_packet(pc_gossip_decoder_t *d, const uint8_t *p, size_t len,
                         pc_gossip_packet_t *out)
{
    if (len > PC_GOSSIP_MAX_PACKET)
        return PC_ETOOBIG;
    if (p == NULL || len == 0 || pc_proto_validate(p, len, PC_GOSSIP_MAX_DEPTH) != 0)
        return PC_EPROTO;

    size_t pos = 0;
    uint32_t n;
    int rc = read_frame_head(d, p, len, &pos, &out->version, &out->sender, &n);
    if (rc != 0)
        return rc;
    if (n > PC_GOSSIP_MAX_MSGS)
        return PC_ETOOBIG;
    if (n > 0 && d->msgs == NULL) {
        d->msgs = malloc(PC_GOSSIP_MAX_MSGS * sizeof(*d->msgs));
        if (d->msgs == NULL)
            return PC_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *o;
        rc = unpack_record(d, p, len, &pos, &o);
        if (rc != 0)
            return rc;
        rc = map_msg(o, &d->msgs[out->nmsgs]);
        if (rc < 0)
            return rc;
        if (rc == 1)
            out->nmsgs++;
        else
            out->skipped++;
    }
    out->msgs = d->msgs;
    return 0;
}

int pc_gossip_decode_packet(pc_gossip_decoder_t *d, const uint8_t *p, size_t len,
                            pc_gossip_packet_t *out)
{
    if (d == NULL || out == NULL)
        return PC_EINVAL;
    memset(out, 0, sizeof(*out));
    int rc = decode_packet(d, p, len, out);
    msgpack_unpacked_destroy(&d->unp);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* Node record: [name, addr, gossip, weight, incarnation, state].
 * 1 = ok, 0 = a state from a newer version (skip), PC_EPROTO. */
static int map_node(const msgpack_object *a, pc_gossip_node_t *nd)
{
    uint64_t inc;
    memset(nd, 0, sizeof(*nd));
    if (!as_text(elem(a, 0), PC_GOSSIP_MAX_NAME, &nd->name) ||
        !as_text(elem(a, 1), PC_GOSSIP_MAX_ADDR, &nd->addr) ||
        !as_text(elem(a, 2), PC_GOSSIP_MAX_ADDR, &nd->gossip) || !as_u32(elem(a, 3), &nd->weight) ||
        !as_uint(elem(a, 4), UINT64_MAX, &inc) || !as_u32(elem(a, 5), &nd->state))
        return PC_EPROTO;
    nd->incarnation = inc;
    return nd->state <= PC_GOSSIP_ST_MAX ? 1 : 0;
}

static int decode_state(pc_gossip_decoder_t *d, const uint8_t *p, size_t len,
                        pc_gossip_state_t *out)
{
    if (len > PC_GOSSIP_MAX_STATE)
        return PC_ETOOBIG;
    if (p == NULL || len == 0 || pc_proto_validate(p, len, PC_GOSSIP_MAX_DEPTH) != 0)
        return PC_EPROTO;

    size_t pos = 0;
    uint32_t n;
    int rc = read_frame_head(d, p, len, &pos, &out->version, &out->sender, &n);
    if (rc != 0)
        return rc;
    if (n > PC_GOSSIP_MAX_NODES)
        return PC_ETOOBIG;
    if (n > d->nodes_cap) {
        /* n is honest (validated) and capped, so this is at most
         * PC_GOSSIP_MAX_NODES records, and only for inputs that long. */
        pc_gossip_node_t *nn = realloc(d->nodes, (size_t)n * sizeof(*nn));
        if (nn == NULL)
            return PC_ENOMEM;
        d->nodes = nn;
        d->nodes_cap = n;
    }
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *o;
        rc = unpack_record(d, p, len, &pos, &o);
        if (rc != 0)
            return rc;
        rc = map_node(o, &d->nodes[out->nnodes]);
        if (rc < 0)
            return rc;
        if (rc == 1)
            out->nnodes++;
        else
            out->skipped++;
    }
    out->nodes = d->nodes;
    return 0;
}

int pc_gossip_decode_state(pc_gossip_decoder_t *d, const uint8_t *p, size_t len,
                           pc_gossip_state_t *out)
{
    if (d == NULL || out == NULL)
        return PC_EINVAL;
    memset(out, 0, sizeof(*out));
    int rc = decode_state(d, p, len, out);
    msgpack_unpacked_destroy(&d->unp);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- encoding -------------------------------------------------------- */

/*
 * msgpack-c packs through a write callback; ours appends to a pc_buf_t
 * and remembers the first failure, so that a short append after a refused
 * long one cannot leave a hole. The caller rolls back to `start` in one
 * place on failure instead of checking every pack call.
 */
struct sink {
    pc_buf_t *out;
    size_t start;
    int err;
    msgpack_packer pk;
};

static int sink_write(void *data, const char *buf, size_t len)
{
    struct sink *s = data;
    if (s->err != 0)
        return -1;
    int rc = pc_buf_append(s->out, buf, len);
    if (rc != 0) {
        s->err = rc;
        return -1;
    }
    return 0;
}

static void sink_init(struct sink *s, pc_buf_t *out)
{
    s->out = out;
    s->start = out->len;
    s->err = 0;
    msgpack_packer_init(&s->pk, s, sink_write);
}

/* 0, or the first error after rolling out back to where it was. */
static int sink_end(struct sink *s)
{
    if (s->err != 0)
        s->out->len = s->start;
    return s->err;
}

static void pack_text(msgpack_packer *pk, pc_bytes_t b)
{
    msgpack_pack_str(pk, b.len);
    msgpack_pack_str_body(pk, b.ptr, b.len);
}

/* The text fields a message type carries must be valid, or a receiver
 * would drop the whole packet. */
static bool msg_ok(const pc_gossip_msg_t *m)
{
    switch (m->type) {
    case PC_GOSSIP_PING:
        return text_ok(m->name, PC_GOSSIP_MAX_NAME);
    case PC_GOSSIP_PING_REQ:
        return text_ok(m->name, PC_GOSSIP_MAX_NAME) && text_ok(m->gossip, PC_GOSSIP_MAX_ADDR);
    case PC_GOSSIP_ACK:
    case PC_GOSSIP_NACK:
        return true;
    case PC_GOSSIP_ALIVE:
        return text_ok(m->name, PC_GOSSIP_MAX_NAME) && text_ok(m->addr, PC_GOSSIP_MAX_ADDR) &&
               text_ok(m->gossip, PC_GOSSIP_MAX_ADDR);
    case PC_GOSSIP_SUSPECT:
    case PC_GOSSIP_DEAD:
        return text_ok(m->name, PC_GOSSIP_MAX_NAME) && text_ok(m->from, PC_GOSSIP_MAX_NAME);
    case PC_GOSSIP_LEFT:
        return text_ok(m->name, PC_GOSSIP_MAX_NAME);
    default:
        return false;
    }
}

static void pack_msg(msgpack_packer *pk, const pc_gossip_msg_t *m)
{
    switch (m->type) {
    case PC_GOSSIP_PING:
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint32(pk, m->type);
        msgpack_pack_uint32(pk, m->seq);
        pack_text(pk, m->name);
        break;
    case PC_GOSSIP_PING_REQ:
        msgpack_pack_array(pk, 5);
        msgpack_pack_uint32(pk, m->type);
        msgpack_pack_uint32(pk, m->seq);
        pack_text(pk, m->name);
        pack_text(pk, m->gossip);
        msgpack_pack_uint32(pk, m->nack_ms);
        break;
    case PC_GOSSIP_ACK:
    case PC_GOSSIP_NACK:
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint32(pk, m->type);
        msgpack_pack_uint32(pk, m->seq);
        break;
    case PC_GOSSIP_ALIVE:
        msgpack_pack_array(pk, 6);
        msgpack_pack_uint32(pk, m->type);
        pack_text(pk, m->name);
        msgpack_pack_uint64(pk, m->incarnation);
        pack_text(pk, m->addr);
        pack_text(pk, m->gossip);
        msgpack_pack_uint32(pk, m->weight);
        break;
    case PC_GOSSIP_SUSPECT:
    case PC_GOSSIP_DEAD:
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint32(pk, m->type);
        pack_text(pk, m->name);
        msgpack_pack_uint64(pk, m->incarnation);
        pack_text(pk, m->from);
        break;
    default: /* PC_GOSSIP_LEFT; msg_ok() ruled out the rest */
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint32(pk, m->type);
        pack_text(pk, m->name);
        msgpack_pack_uint64(pk, m->incarnation);
        break;
    }
}

static size_t clamp_limit(size_t limit)
{
    return limit == 0 || limit > PC_GOSSIP_MAX_PACKET ? PC_GOSSIP_MAX_PACKET : limit;
}

int pc_gossip_writer_begin(pc_gossip_writer_t *w, pc_buf_t *out, pc_bytes_t sender,
                           size_t limit)
{
    if (w == NULL || out == NULL || !text_ok(sender, PC_GOSSIP_MAX_NAME))
        return PC_EINVAL;
    struct sink s;
    sink_init(&s, out);
    msgpack_pack_array(&s.pk, 3);
    msgpack_pack_uint32(&s.pk, PC_GOSSIP_VERSION);
    pack_text(&s.pk, sender);
    /* array 16 with a zero count, patched by end(). */
    static const char list_hdr[3] = {(char)0xdc, 0, 0};
    sink_write(&s, list_hdr, sizeof(list_hdr));
    if (s.err == 0 && out->len - s.start > clamp_limit(limit))
        s.err = PC_ETOOBIG;
    int rc = sink_end(&s);
    if (rc != 0)
        return rc;
    w->out = out;
    w->start = s.start;
    w->count_at = out->len - 2;
    w->limit = clamp_limit(limit);
    w->n = 0;
    return 0;
}

int pc_gossip_writer_add(pc_gossip_writer_t *w, const pc_gossip_msg_t *m)
{
    if (w == NULL || m == NULL || !msg_ok(m))
        return PC_EINVAL;
    if (w->n >= PC_GOSSIP_MAX_MSGS)
        return PC_ETOOBIG;
    struct sink s;
    sink_init(&s, w->out);
    pack_msg(&s.pk, m);
    if (s.err == 0 && w->out->len - w->start > w->limit)
        s.err = PC_ETOOBIG;
    int rc = sink_end(&s);
    if (rc == 0)
        w->n++;
    return rc;
}

uint32_t pc_gossip_writer_count(const pc_gossip_writer_t *w)
{
    return w->n;
}

size_t pc_gossip_writer_size(const pc_gossip_writer_t *w)
{
    return w->out->len - w->start;
}

size_t pc_gossip_writer_end(pc_gossip_writer_t *w)
{
    w->out->data[w->count_at] = (uint8_t)(w->n >> 8);
    w->out->data[w->count_at + 1] = (uint8_t)w->n;
    return w->out->len - w->start;
}

void pc_gossip_writer_abort(pc_gossip_writer_t *w)
{
    w->out->len = w->start;
    w->n = 0;
}

int pc_gossip_encode_state(pc_buf_t *out, pc_bytes_t sender, const pc_gossip_node_t *nodes,
                           size_t n)
{
    if (out == NULL || (nodes == NULL && n > 0) || !text_ok(sender, PC_GOSSIP_MAX_NAME))
        return PC_EINVAL;
    if (n > PC_GOSSIP_MAX_NODES)
        return PC_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        const pc_gossip_node_t *nd = &nodes[i];
        if (!text_ok(nd->name, PC_GOSSIP_MAX_NAME) || !text_ok(nd->addr, PC_GOSSIP_MAX_ADDR) ||
            !text_ok(nd->gossip, PC_GOSSIP_MAX_ADDR) || nd->state > PC_GOSSIP_ST_MAX)
            return PC_EINVAL;
    }

    struct sink s;
    sink_init(&s, out);
    msgpack_pack_array(&s.pk, 3);
    msgpack_pack_uint32(&s.pk, PC_GOSSIP_VERSION);
    pack_text(&s.pk, sender);
    msgpack_pack_array(&s.pk, n);
    for (size_t i = 0; i < n && s.err == 0; i++) {
        const pc_gossip_node_t *nd = &nodes[i];
        msgpack_pack_array(&s.pk, 6);
        pack_text(&s.pk, nd->name);
        pack_text(&s.pk, nd->addr);
        pack_text(&s.pk, nd->gossip);
        msgpack_pack_uint32(&s.pk, nd->weight);
        msgpack_pack_uint64(&s.pk, nd->incarnation);
        msgpack_pack_uint32(&s.pk, nd->state);
        if (s.err == 0 && out->len - s.start > PC_GOSSIP_MAX_STATE)
            s.err = PC_ETOOBIG;
    }
    return sink_end(&s);
}
