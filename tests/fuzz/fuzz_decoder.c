/*
 * fuzz_decoder.c -- libFuzzer target for the frame reader and decoders.
 *
 * The input is a byte stream as a peer would send it. It goes through two
 * readers with different chunkings (reserve/commit in whole reads, feed in
 * small uneven pieces); both must yield the same frames and end the same
 * way. Every frame is then decoded as a request and as a response, with
 * default limits and with tiny ones (so the TOO_LARGE paths are reachable
 * from short inputs), and whatever decodes is re-encoded and decoded again:
 * the fields must survive, and encoding must be a fixed point.
 *
 * Cross-checks against msgpack-c itself: a body that pc_proto_validate()
 * accepts must unpack with msgpack-c, consuming every byte.
 *
 * A body pc_proto_validate() rejects is malformed to both decoders, with
 * one exception (pc_proto.h): a request whose walk crosses its op's
 * budget before the malformed byte is refused there, BAD_REQUEST (or
 * TOO_LARGE for a list header over its limit), and the reason says so.
 * pc_proto_decoder_why() is empty exactly when a decode succeeded.
 *
 * Any violated property calls abort(), which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "pc_proto.h"
#include "pc_proto_reader.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough that a fuzzer-sized input can cross it. */
#define FUZZ_MAX_FRAME 2048

struct frames {
    uint8_t **body;
    uint32_t *len;
    size_t n;
    size_t cap;
    int end; /* last non-1 result of next() */
};

static void frames_add(struct frames *f, const uint8_t *body, uint32_t len)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->body = realloc(f->body, f->cap * sizeof(*f->body));
        f->len = realloc(f->len, f->cap * sizeof(*f->len));
        CHECK(f->body != NULL && f->len != NULL);
    }
    f->body[f->n] = malloc(len);
    CHECK(f->body[f->n] != NULL);
    memcpy(f->body[f->n], body, len);
    f->len[f->n] = len;
    f->n++;
}

static void frames_free(struct frames *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->body[i]);
    free(f->body);
    free(f->len);
}

/* Pulls every ready frame; returns the first result that is not 1. Also
 * checks the batch guarantee: bodies returned since the last reserve/feed
 * are still intact after later next() calls. */
static int drain(pc_proto_reader_t *r, struct frames *f)
{
    const uint8_t *live[64];
    size_t first = f->n;
    size_t nlive = 0;
    const uint8_t *body;
    uint32_t len;
    int rc;
    /* the look-ahead shows exactly the frames next() is about to return */
    pc_bytes_t ahead[64];
    size_t nahead = pc_proto_reader_ahead(r, ahead, 64);
    while ((rc = pc_proto_reader_next(r, &body, &len)) == 1) {
        CHECK(len >= 1 && len <= FUZZ_MAX_FRAME);
        size_t k = f->n - first;
        if (k < nahead)
            CHECK(ahead[k].ptr == body && ahead[k].len == len);
        frames_add(f, body, len);
        if (nlive < 64)
            live[nlive++] = body;
    }
    CHECK(f->n - first >= nahead);
    for (size_t i = 0; i < nlive; i++)
        CHECK(memcmp(live[i], f->body[first + i], f->len[first + i]) == 0);
    CHECK(rc == 0 || rc == PC_ETOOBIG || rc == PC_EPROTO);
    return rc;
}

static void read_whole(const uint8_t *data, size_t size, struct frames *f)
{
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, FUZZ_MAX_FRAME);
    size_t pos = 0;
    for (;;) {
        int rc = drain(&r, f);
        if (rc != 0 || pos == size) {
            f->end = rc;
            break;
        }
        uint8_t *p;
        size_t avail;
        /* A drained reader always has room (pc_proto.h). */
        CHECK(pc_proto_reader_reserve(&r, 0, &p, &avail) == 0);
        CHECK(avail > 0);
        size_t k = avail < size - pos ? avail : size - pos;
        memcpy(p, data + pos, k);
        pc_proto_reader_commit(&r, k);
        pos += k;
    }
    if (f->end == 0)
        CHECK(pc_proto_reader_pending(&r) < 4 + FUZZ_MAX_FRAME);
    pc_proto_reader_free(&r);
}

static void read_pieces(const uint8_t *data, size_t size, struct frames *f)
{
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, FUZZ_MAX_FRAME);
    size_t pos = 0;
    for (size_t i = 0;; i++) {
        int rc = drain(&r, f);
        if (rc != 0 || pos == size) {
            f->end = rc;
            break;
        }
        /* Piece sizes 1..13 that depend on the data, so they vary. */
        size_t k = 1 + (i * 7 + data[i % size]) % 13;
        if (k > size - pos)
            k = size - pos;
        CHECK(pc_proto_reader_feed(&r, data + pos, k) == 0);
        pos += k;
    }
    pc_proto_reader_free(&r);
}

static void same_bytes(pc_bytes_t a, pc_bytes_t b)
{
    CHECK(a.len == b.len);
    CHECK(a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void same_request(const pc_request_t *a, const pc_request_t *b)
{
    CHECK(a->op == b->op && a->id == b->id);
    same_bytes(a->key, b->key);
    same_bytes(a->value, b->value);
    CHECK(a->ttl_ms == b->ttl_ms && a->flags == b->flags && a->cond == b->cond);
    CHECK(a->cas == b->cas && a->proto_version == b->proto_version && a->here == b->here);
    same_bytes(a->token, b->token);
    CHECK(a->nkeys == b->nkeys);
    for (uint32_t i = 0; i < a->nkeys; i++)
        same_bytes(a->keys[i], b->keys[i]);
    CHECK(a->hops == b->hops && a->mode == b->mode);
    same_bytes(a->body, b->body);
    same_bytes(a->from, b->from);
    CHECK(a->nentries == b->nentries);
    for (uint32_t i = 0; i < a->nentries; i++) {
        const pc_repl_entry_t *x = &a->entries[i], *y = &b->entries[i];
        same_bytes(x->key, y->key);
        same_bytes(x->value, y->value);
        CHECK(x->has_value == y->has_value && x->flags == y->flags);
        CHECK(x->version == y->version && x->ttl_ms == y->ttl_ms);
    }
}

static void same_entry(const pc_entry_t *a, const pc_entry_t *b)
{
    CHECK(a->status == b->status);
    if (a->status != PC_ST_OK)
        return;
    same_bytes(a->value, b->value);
    CHECK(a->flags == b->flags && a->version == b->version && a->ttl_ms == b->ttl_ms);
}

static void same_response(const pc_response_t *a, const pc_response_t *b)
{
    CHECK(a->op == b->op && a->id == b->id && a->status == b->status);
    CHECK(a->ring_fp == b->ring_fp);
    if (a->status != PC_ST_OK) {
        /* An empty message is re-encoded as the status's default text. */
        if (a->message.len == 0) {
            const char *m = pc_status_message(a->status);
            pc_bytes_t def = {(const uint8_t *)m, (uint32_t)strlen(m)};
            same_bytes(def, b->message);
        } else {
            same_bytes(a->message, b->message);
        }
        return;
    }
    CHECK(a->proto_version == b->proto_version);
    same_bytes(a->node_name, b->node_name);
    same_bytes(a->server_version, b->server_version);
    same_entry(&a->entry, &b->entry);
    CHECK(a->version == b->version);
    CHECK(a->nentries == b->nentries);
    for (uint32_t i = 0; i < a->nentries; i++)
        same_entry(&a->entries[i], &b->entries[i]);
    CHECK(a->nstats == b->nstats);
    for (uint32_t i = 0; i < a->nstats; i++) {
        same_bytes(a->stats[i].name, b->stats[i].name);
        CHECK(a->stats[i].value == b->stats[i].value);
    }
    CHECK(a->fingerprint == b->fingerprint && a->replicas == b->replicas);
    CHECK(a->nmembers == b->nmembers);
    for (uint32_t i = 0; i < a->nmembers; i++) {
        const pc_cluster_member_t *x = &a->members[i], *y = &b->members[i];
        same_bytes(x->name, y->name);
        same_bytes(x->addr, y->addr);
        CHECK(x->state == y->state && x->incarnation == y->incarnation);
        CHECK(x->weight == y->weight);
    }
    same_bytes(a->body, b->body);
    CHECK(a->applied == b->applied);
}

/* A refusal that came from the walk's budget, not from a field. */
static int budget_reason(const char *why)
{
    return strstr(why, " trailing") != NULL || strstr(why, " ignored") != NULL ||
           strstr(why, " keys, at most ") != NULL || strstr(why, " entries, at most ") != NULL;
}

static void check_request_limits(const pc_request_t *r, const pc_proto_limits_t *l)
{
    CHECK(r->op >= 1 && r->op <= PC_OP_MAX);
    if (r->op == PC_OP_SET || r->op == PC_OP_TOUCH)
        CHECK(r->ttl_ms <= PC_PROTO_MAX_TTL_MS);
    CHECK(r->key.len <= l->max_key && r->value.len <= l->max_value);
    CHECK(r->token.len <= l->max_key && r->cond <= PC_COND_XX && r->here <= 1);
    if (r->op != PC_OP_GET && r->op != PC_OP_MGET) /* the two that have it (§5.3, §5.4) */
        CHECK(r->here == 0);
    CHECK(r->nkeys <= l->max_mget_keys);
    for (uint32_t i = 0; i < r->nkeys; i++)
        CHECK(r->keys[i].len >= 1 && r->keys[i].len <= l->max_key);
    if (r->op == PC_OP_GET || r->op == PC_OP_SET || r->op == PC_OP_DEL || r->op == PC_OP_TOUCH)
        CHECK(r->key.len >= 1);
    if (r->op == PC_OP_MGET)
        CHECK(r->nkeys >= 1);
    if (r->op == PC_OP_FORWARD)
        CHECK(r->hops >= 1 && r->body.len >= 1);
    CHECK(r->mode <= PC_REPL_HANDOFF && r->nentries <= l->max_mget_keys);
    if (r->op == PC_OP_REPLICATE)
        CHECK(r->from.len >= 1);
    for (uint32_t i = 0; i < r->nentries; i++) {
        const pc_repl_entry_t *e = &r->entries[i];
        CHECK(e->key.len >= 1 && e->key.len <= l->max_key && e->value.len <= l->max_value);
        CHECK(e->has_value || e->value.len == 0);
        CHECK(e->ttl_ms >= -1);
    }
}

/* enc(dec(body)) decodes to the same fields, and encoding it once more
 * gives the same bytes. `again` must be a different decoder from the one
 * that produced *req, whose scratch the MGET keys live in. */
static void roundtrip_request(pc_proto_decoder_t *again, const pc_request_t *req)
{
    pc_buf_t b1, b2;
    pc_buf_init(&b1, 0);
    pc_buf_init(&b2, 0);
    CHECK(pc_proto_encode_request(&b1, req) == 0);
    pc_request_t r2;
    CHECK(pc_proto_decode_request(again, b1.data + 4, b1.len - 4, &r2) == 0);
    same_request(req, &r2);
    CHECK(pc_proto_encode_request(&b2, &r2) == 0);
    CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    pc_buf_free(&b1);
    pc_buf_free(&b2);
}

static void roundtrip_response(pc_proto_decoder_t *again, const pc_response_t *resp)
{
    pc_buf_t b1, b2;
    pc_buf_init(&b1, 0);
    pc_buf_init(&b2, 0);
    CHECK(pc_proto_encode_response(&b1, resp) == 0);
    pc_response_t r2;
    CHECK(pc_proto_decode_response(again, b1.data + 4, b1.len - 4, &r2) == 0);
    same_response(resp, &r2);
    CHECK(pc_proto_encode_response(&b2, &r2) == 0);
    CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    pc_buf_free(&b1);
    pc_buf_free(&b2);
}

struct decoders {
    pc_proto_limits_t lim[2];
    pc_proto_decoder_t *d[2];     /* default limits, tiny limits */
    pc_proto_decoder_t *again[2]; /* same limits, for round trips */
};

static void check_body(struct decoders *ds, const uint8_t *body, uint32_t len)
{
    int valid = pc_proto_validate(body, len, PC_PROTO_MAX_DEPTH);
    CHECK(valid == 0 || valid == PC_EPROTO);
    if (valid == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        CHECK(msgpack_unpack_next(&u, (const char *)body, len, &off) == MSGPACK_UNPACK_SUCCESS);
        CHECK(off == len);
        msgpack_unpacked_destroy(&u);
    }

    /* the GET key peeked for prefetching lies inside the body, and is the
     * decoder's key whenever both see a GET */
    pc_bytes_t pk = {0};
    int peeked = pc_proto_peek_get_key(body, len, &pk);
    CHECK(peeked == 0 || peeked == 1);
    if (peeked)
        CHECK(pk.ptr > body && pk.ptr + pk.len <= body + len);

    for (int i = 0; i < 2; i++) {
        pc_request_t req;
        int rc = pc_proto_decode_request(ds->d[i], body, len, &req);
        if (rc == 0 && req.op == PC_OP_GET && peeked)
            CHECK(pk.len == req.key.len && memcmp(pk.ptr, req.key.ptr, pk.len) == 0);
        const char *why = pc_proto_decoder_why(ds->d[i]);
        CHECK(rc == 0 || rc == PC_EPROTO || rc == PC_EBADREQ || rc == PC_ETOOBIG);
        CHECK((rc == 0) == (why[0] == '\0'));
        if (valid != 0)
            CHECK(rc == PC_EPROTO || budget_reason(why));
        if (rc == 0) {
            check_request_limits(&req, &ds->lim[i]);
            roundtrip_request(ds->again[i], &req);
        } else if (rc == PC_EPROTO) {
            CHECK(req.op == 0 && req.id == 0);
        } else {
            /* Only op and id carry meaning. */
            CHECK(req.key.len == 0 && req.nkeys == 0 && req.value.len == 0);
            CHECK(req.keys == NULL && req.token.len == 0 && req.body.len == 0);
            CHECK(req.from.len == 0 && req.nentries == 0 && req.entries == NULL);
            CHECK(req.hops == 0 && req.mode == 0 && req.ttl_ms == 0 && req.cas == 0);
        }

        pc_response_t resp;
        rc = pc_proto_decode_response(ds->d[i], body, len, &resp);
        CHECK(rc == 0 || rc == PC_EPROTO);
        CHECK((rc == 0) == (pc_proto_decoder_why(ds->d[i])[0] == '\0'));
        if (valid != 0)
            CHECK(rc == PC_EPROTO);
        if (rc == 0) {
            CHECK(resp.nentries <= ds->lim[i].max_mget_keys);
            CHECK(resp.nstats <= PC_PROTO_MAX_STATS && resp.nmembers <= PC_PROTO_MAX_MEMBERS);
            roundtrip_response(ds->again[i], &resp);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;

    struct frames a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    read_whole(data, size, &a);
    read_pieces(data, size, &b);
    CHECK(a.n == b.n && a.end == b.end);
    for (size_t i = 0; i < a.n; i++)
        CHECK(a.len[i] == b.len[i] && memcmp(a.body[i], b.body[i], a.len[i]) == 0);

    struct decoders ds;
    pc_proto_limits_default(&ds.lim[0]);
    ds.lim[0].max_frame = FUZZ_MAX_FRAME;
    ds.lim[1] = (pc_proto_limits_t){.max_frame = FUZZ_MAX_FRAME, .max_key = 4, .max_value = 8,
                                    .max_mget_keys = 2};
    for (int i = 0; i < 2; i++) {
        CHECK(pc_proto_decoder_new(&ds.lim[i], &ds.d[i]) == 0);
        CHECK(pc_proto_decoder_new(&ds.lim[i], &ds.again[i]) == 0);
    }
    for (size_t i = 0; i < a.n; i++)
        check_body(&ds, a.body[i], a.len[i]);
    /* The body alone, without a prefix, is also worth decoding: it lets
     * the fuzzer reach the decoders without first finding a length. */
    if (size <= FUZZ_MAX_FRAME)
        check_body(&ds, data, (uint32_t)size);
    for (int i = 0; i < 2; i++) {
        pc_proto_decoder_free(&ds.d[i]);
        pc_proto_decoder_free(&ds.again[i]);
    }
    frames_free(&a);
    frames_free(&b);
    return 0;
}
