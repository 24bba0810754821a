/*
 * fuzz_gossip.c -- libFuzzer target for the gossip codec (proto/pc_gossip).
 *
 * The input is one datagram or one push/pull state as a peer would send
 * it; it is decoded both ways. What decodes must hold to the contract in
 * pc_gossip.h (known types only, text fields 1..255 bytes without NUL,
 * unused fields zero, counts within their limits), must be msgpack that
 * msgpack-c reads whole, and must survive a round trip: encoding it with
 * the writer (or pc_gossip_encode_state) gives bytes that decode to the
 * same fields, and encoding those again gives the same bytes.
 *
 * The writer's byte limit is exercised too: the decoded messages are
 * written again under a limit and into a capped buffer taken from the
 * input; every message the writer accepts must come back out, and the
 * packet must stay under both bounds.
 *
 * On an error the output must be all zero. Any violated property calls
 * abort(), which libFuzzer reports as a crash.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "pc_buf.h"
#include "pc_error.h"
#include "pc_gossip.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Two decoders: `dec` for the input, `again` for what we re-encode, so
 * the first one's messages stay valid while the second one works. They
 * live across runs on purpose: reusing scratch memory is part of the
 * contract being tested. */
static pc_gossip_decoder_t *dec, *again;

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

static bool empty(pc_bytes_t b)
{
    return b.len == 0 && b.ptr == NULL;
}

static void check_text(pc_bytes_t b, uint32_t max)
{
    CHECK(b.ptr != NULL && b.len >= 1 && b.len <= max);
    CHECK(memchr(b.ptr, 0, b.len) == NULL);
}

static void same_bytes(pc_bytes_t a, pc_bytes_t b)
{
    CHECK(a.len == b.len);
    CHECK(a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* A decoded message as pc_gossip.h promises it: the fields of its type
 * valid, every other field zero or empty. */
static void check_msg(const pc_gossip_msg_t *m)
{
    bool seq = false, nack = false, weight = false, inc = false;
    bool name = false, addr = false, gossip = false, from = false;

    switch (m->type) {
    case PC_GOSSIP_PING:
        seq = name = true;
        break;
    case PC_GOSSIP_PING_REQ:
        seq = name = gossip = nack = true;
        break;
    case PC_GOSSIP_ACK:
    case PC_GOSSIP_NACK:
        seq = true;
        break;
    case PC_GOSSIP_ALIVE:
        name = inc = addr = gossip = weight = true;
        break;
    case PC_GOSSIP_SUSPECT:
    case PC_GOSSIP_DEAD:
        name = inc = from = true;
        break;
    case PC_GOSSIP_LEFT:
        name = inc = true;
        break;
    default:
        CHECK(!"decoded a message of an unknown type");
    }
    CHECK(seq || m->seq == 0);
    CHECK(nack || m->nack_ms == 0);
    CHECK(weight || m->weight == 0);
    CHECK(inc || m->incarnation == 0);
    if (name)
        check_text(m->name, PC_GOSSIP_MAX_NAME);
    else
        CHECK(empty(m->name));
    if (addr)
        check_text(m->addr, PC_GOSSIP_MAX_ADDR);
    else
        CHECK(empty(m->addr));
    if (gossip)
        check_text(m->gossip, PC_GOSSIP_MAX_ADDR);
    else
        CHECK(empty(m->gossip));
    if (from)
        check_text(m->from, PC_GOSSIP_MAX_NAME);
    else
        CHECK(empty(m->from));
}

static void same_msg(const pc_gossip_msg_t *a, const pc_gossip_msg_t *b)
{
    CHECK(a->type == b->type && a->seq == b->seq && a->nack_ms == b->nack_ms);
    CHECK(a->weight == b->weight && a->incarnation == b->incarnation);
    same_bytes(a->name, b->name);
    same_bytes(a->addr, b->addr);
    same_bytes(a->gossip, b->gossip);
    same_bytes(a->from, b->from);
}

static void check_node(const pc_gossip_node_t *n)
{
    check_text(n->name, PC_GOSSIP_MAX_NAME);
    check_text(n->addr, PC_GOSSIP_MAX_ADDR);
    check_text(n->gossip, PC_GOSSIP_MAX_ADDR);
    CHECK(n->state <= PC_GOSSIP_ST_MAX);
}

static void same_node(const pc_gossip_node_t *a, const pc_gossip_node_t *b)
{
    same_bytes(a->name, b->name);
    same_bytes(a->addr, b->addr);
    same_bytes(a->gossip, b->gossip);
    CHECK(a->weight == b->weight && a->state == b->state && a->incarnation == b->incarnation);
}

/* Whatever the decoder accepted is one msgpack value that msgpack-c
 * reads to the last byte. */
static void check_msgpack(const uint8_t *data, size_t size)
{
    msgpack_unpacked u;
    size_t off = 0;

    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, (const char *)data, size, &off) == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == size);
    msgpack_unpacked_destroy(&u);
}

/* Writes sender + msgs[0..n) into out with the writer, no limit.
 * Returns the writer's first error, 0 if all went in. */
static int write_packet(pc_buf_t *out, pc_bytes_t sender, const pc_gossip_msg_t *msgs,
                        uint32_t n)
{
    pc_gossip_writer_t w;
    int rc = pc_gossip_writer_begin(&w, out, sender, 0);
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        rc = pc_gossip_writer_add(&w, &msgs[i]);
        if (rc != 0) {
            pc_gossip_writer_abort(&w);
            return rc;
        }
    }
    CHECK(pc_gossip_writer_count(&w) == n);
    size_t len = pc_gossip_writer_end(&w);
    CHECK(len == out->len && len == pc_gossip_writer_size(&w));
    return 0;
}

/*
 * Writes the messages again under a byte limit and into a buffer with a
 * cap, both taken from the input, skipping what does not fit. Whatever
 * was accepted must decode back, in order, and the packet must respect
 * both bounds.
 */
static void check_writer_limits(const uint8_t *data, size_t size, const pc_gossip_packet_t *pk)
{
    /* Anywhere from below the header (or 0, "no limit") to past the
     * whole packet; the cap, when there is one, near the limit. */
    size_t limit = ((size_t)data[size - 1] + 256u * data[size / 2]) % (size + 16);
    size_t cap = data[size / 3] & 1 ? limit + (data[size / 3] >> 1) : 0;
    size_t max = limit == 0 ? PC_GOSSIP_MAX_PACKET : limit;
    uint32_t kept[PC_GOSSIP_MAX_MSGS];
    uint32_t nkept = 0;
    pc_buf_t out;
    pc_gossip_writer_t w;

    pc_buf_init(&out, cap);
    int rc = pc_gossip_writer_begin(&w, &out, pk->sender, limit);
    if (rc != 0) {
        CHECK(rc == PC_ETOOBIG && out.len == 0);
        pc_buf_free(&out);
        return;
    }
    for (uint32_t i = 0; i < pk->nmsgs; i++) {
        size_t before = pc_gossip_writer_size(&w);
        rc = pc_gossip_writer_add(&w, &pk->msgs[i]);
        CHECK(rc == 0 || rc == PC_ETOOBIG);
        if (rc == 0)
            kept[nkept++] = i;
        else
            CHECK(pc_gossip_writer_size(&w) == before);
        CHECK(pc_gossip_writer_size(&w) <= max);
        CHECK(cap == 0 || out.len <= cap);
    }
    CHECK(pc_gossip_writer_count(&w) == nkept);
    size_t len = pc_gossip_writer_end(&w);
    CHECK(len <= max && len == out.len);

    pc_gossip_packet_t back;
    CHECK(pc_gossip_decode_packet(again, out.data, out.len, &back) == 0);
    CHECK(back.nmsgs == nkept && back.skipped == 0);
    same_bytes(back.sender, pk->sender);
    for (uint32_t i = 0; i < nkept; i++)
        same_msg(&back.msgs[i], &pk->msgs[kept[i]]);
    pc_buf_free(&out);
}

static void check_packet(const uint8_t *data, size_t size)
{
    pc_gossip_packet_t pk;
    int rc = pc_gossip_decode_packet(dec, data, size, &pk);

    CHECK(rc == 0 || rc == PC_EPROTO || rc == PC_ETOOBIG);
    if (rc != 0) {
        CHECK(all_zero(&pk, sizeof(pk)));
        return;
    }
    CHECK(size <= PC_GOSSIP_MAX_PACKET);
    CHECK(pk.version >= 1);
    check_text(pk.sender, PC_GOSSIP_MAX_NAME);
    CHECK(pk.nmsgs + pk.skipped <= PC_GOSSIP_MAX_MSGS);
    CHECK(pk.nmsgs == 0 || pk.msgs != NULL);
    for (uint32_t i = 0; i < pk.nmsgs; i++)
        check_msg(&pk.msgs[i]);
    check_msgpack(data, size);

    /* Round trip. The writer always spends 3 bytes on the message count,
     * so it may need 2 bytes more than a sender that used a fixarray:
     * only an input that close to the limit may fail to fit. */
    pc_buf_t b1, b2;
    pc_buf_init(&b1, 0);
    pc_buf_init(&b2, 0);
    rc = write_packet(&b1, pk.sender, pk.msgs, pk.nmsgs);
    if (rc == PC_ETOOBIG) {
        CHECK(size + 2 > PC_GOSSIP_MAX_PACKET);
    } else {
        CHECK(rc == 0 && b1.len <= size + 2);
        pc_gossip_packet_t back;
        CHECK(pc_gossip_decode_packet(again, b1.data, b1.len, &back) == 0);
        CHECK(back.version == PC_GOSSIP_VERSION && back.skipped == 0);
        same_bytes(back.sender, pk.sender);
        CHECK(back.nmsgs == pk.nmsgs);
        for (uint32_t i = 0; i < pk.nmsgs; i++)
            same_msg(&back.msgs[i], &pk.msgs[i]);
        /* Encoding is a fixed point. */
        CHECK(write_packet(&b2, back.sender, back.msgs, back.nmsgs) == 0);
        CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    }
    pc_buf_free(&b1);
    pc_buf_free(&b2);

    check_writer_limits(data, size, &pk);
}

static void check_state(const uint8_t *data, size_t size)
{
    pc_gossip_state_t st;
    int rc = pc_gossip_decode_state(dec, data, size, &st);

    CHECK(rc == 0 || rc == PC_EPROTO || rc == PC_ETOOBIG);
    if (rc != 0) {
        CHECK(all_zero(&st, sizeof(st)));
        return;
    }
    CHECK(size <= PC_GOSSIP_MAX_STATE);
    CHECK(st.version >= 1);
    check_text(st.sender, PC_GOSSIP_MAX_NAME);
    CHECK(st.nnodes + st.skipped <= PC_GOSSIP_MAX_NODES);
    CHECK(st.nnodes == 0 || st.nodes != NULL);
    for (uint32_t i = 0; i < st.nnodes; i++)
        check_node(&st.nodes[i]);
    check_msgpack(data, size);

    pc_buf_t b1, b2;
    pc_buf_init(&b1, 0);
    pc_buf_init(&b2, 0);
    /* Minimal headers throughout: never larger than what was decoded. */
    CHECK(pc_gossip_encode_state(&b1, st.sender, st.nodes, st.nnodes) == 0);
    CHECK(b1.len <= size);
    pc_gossip_state_t back;
    CHECK(pc_gossip_decode_state(again, b1.data, b1.len, &back) == 0);
    CHECK(back.version == PC_GOSSIP_VERSION && back.skipped == 0);
    same_bytes(back.sender, st.sender);
    CHECK(back.nnodes == st.nnodes);
    for (uint32_t i = 0; i < st.nnodes; i++)
        same_node(&back.nodes[i], &st.nodes[i]);
    CHECK(pc_gossip_encode_state(&b2, back.sender, back.nodes, back.nnodes) == 0);
    CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    pc_buf_free(&b1);
    pc_buf_free(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dec == NULL) {
        CHECK(pc_gossip_decoder_new(&dec) == 0);
        CHECK(pc_gossip_decoder_new(&again) == 0);
    }
    check_packet(data, size);
    check_state(data, size);
    return 0;
}
