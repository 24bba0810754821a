/*
 * test_proto_reader.c -- unit tests for the frame reader
 * (pc_proto_reader.h): frames in any chunking and in batches, the look
 * ahead for prefetching, bad length prefixes, the buffer's cap and how it
 * shrinks, missing(), lending and keeping. The frames are the sample
 * requests of proto_samples.h, encoded and decoded by the codec.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pc_buf.h"
#include "pc_error.h"
#include "pc_proto.h"
#include "pc_proto_reader.h"
#include "proto_samples.h"

/* ---- the frame reader --------------------------------------------------- */

static void encode_all_requests(pc_buf_t *b, pc_request_t *reqs, size_t *n)
{
    *n = sample_requests(reqs, SAMPLE_REQUESTS);
    pc_buf_init(b, 0);
    for (size_t i = 0; i < *n; i++)
        assert_int_equal(pc_proto_encode_request(b, &reqs[i]), 0);
}

static void test_reader_byte_at_a_time(void **state)
{
    pc_proto_decoder_t *d = *state;
    pc_request_t reqs[SAMPLE_REQUESTS];
    size_t n;
    pc_buf_t all;
    encode_all_requests(&all, reqs, &n);

    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 0);
    size_t got = 0;
    for (size_t i = 0; i < all.len; i++) {
        assert_int_equal(pc_proto_reader_feed(&r, all.data + i, 1), 0);
        const uint8_t *body;
        uint32_t len;
        int rc;
        while ((rc = pc_proto_reader_next(&r, &body, &len)) == 1) {
            pc_request_t req;
            assert_true(got < n);
            assert_int_equal(pc_proto_decode_request(d, body, len, &req), 0);
            assert_request_equal(&req, &reqs[got]);
            got++;
        }
        assert_int_equal(rc, 0);
    }
    assert_int_equal(got, n);
    assert_int_equal(pc_proto_reader_pending(&r), 0);
    pc_proto_reader_free(&r);
    pc_buf_free(&all);
}

/* reserve/commit in uneven chunks; then the pipelining guarantee: every
 * body returned by next() since the last reserve stays valid, so a whole
 * batch can be pulled out first and decoded afterwards. */
static void test_reader_chunks_and_batches(void **state)
{
    pc_proto_decoder_t *d = *state;
    pc_request_t reqs[SAMPLE_REQUESTS];
    size_t n;
    pc_buf_t all;
    encode_all_requests(&all, reqs, &n);
    static const size_t chunks[] = {1, 2, 3, 5, 7, 64, 1000};

    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 0);
    const uint8_t *bodies[SAMPLE_REQUESTS];
    uint32_t lens[SAMPLE_REQUESTS];
    size_t got = 0;
    size_t pos = 0;
    for (size_t c = 0; pos < all.len; c++) {
        size_t want = chunks[c % ARRAY_LEN(chunks)];
        uint8_t *p;
        size_t avail;
        assert_int_equal(pc_proto_reader_reserve(&r, want, &p, &avail), 0);
        assert_true(avail >= want);
        size_t k = want < all.len - pos ? want : all.len - pos;
        memcpy(p, all.data + pos, k);
        pc_proto_reader_commit(&r, k);
        pos += k;
        /* Decode the batch only after next() has been drained. */
        size_t first = got;
        while (pc_proto_reader_next(&r, &bodies[got], &lens[got]) == 1)
            got++;
        for (size_t i = first; i < got; i++) {
            pc_request_t req;
            assert_int_equal(pc_proto_decode_request(d, bodies[i], lens[i], &req), 0);
            assert_request_equal(&req, &reqs[i]);
        }
    }
    assert_int_equal(got, n);

    /* Everything at once: all n bodies out of one buffer, decoded after. */
    pc_proto_reader_t r2;
    pc_proto_reader_init(&r2, 0);
    assert_int_equal(pc_proto_reader_feed(&r2, all.data, all.len), 0);
    got = 0;
    while (pc_proto_reader_next(&r2, &bodies[got], &lens[got]) == 1)
        got++;
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) {
        pc_request_t req;
        assert_int_equal(pc_proto_decode_request(d, bodies[i], lens[i], &req), 0);
        assert_request_equal(&req, &reqs[i]);
    }
    pc_proto_reader_free(&r2);
    pc_proto_reader_free(&r);
    pc_buf_free(&all);
}

/* The look-ahead for prefetching: ahead() sees the same bodies next()
 * will return, stops at a partial or refused frame, never consumes. */
static void test_reader_ahead(void **state)
{
    (void)state;
    pc_request_t reqs[SAMPLE_REQUESTS];
    size_t n;
    pc_buf_t all;
    encode_all_requests(&all, reqs, &n);
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 0);
    pc_bytes_t ahead[SAMPLE_REQUESTS];
    assert_int_equal(pc_proto_reader_ahead(&r, ahead, SAMPLE_REQUESTS), 0);
    /* all but the last byte: every frame but the last is whole */
    assert_int_equal(pc_proto_reader_feed(&r, all.data, all.len - 1), 0);
    assert_int_equal(pc_proto_reader_ahead(&r, ahead, SAMPLE_REQUESTS), n - 1);
    assert_int_equal(pc_proto_reader_ahead(&r, ahead, 3), 3); /* at most max */
    assert_int_equal(pc_proto_reader_ahead(&r, ahead, SAMPLE_REQUESTS), n - 1); /* kept */
    assert_int_equal(pc_proto_reader_feed(&r, all.data + all.len - 1, 1), 0);
    assert_int_equal(pc_proto_reader_ahead(&r, ahead, SAMPLE_REQUESTS), n);
    for (size_t i = 0; i < n; i++) {
        /* from each frame on, ahead() starts where next() is */
        assert_int_equal(pc_proto_reader_ahead(&r, ahead, SAMPLE_REQUESTS), n - i);
        const uint8_t *body;
        uint32_t len;
        assert_int_equal(pc_proto_reader_next(&r, &body, &len), 1);
        assert_ptr_equal(ahead[0].ptr, body);
        assert_int_equal(ahead[0].len, len);
    }
    assert_int_equal(pc_proto_reader_ahead(&r, ahead, SAMPLE_REQUESTS), 0);
    /* a frame next() refuses ends the look-ahead before it */
    static const uint8_t zero[4] = {0, 0, 0, 0};
    assert_int_equal(pc_proto_reader_feed(&r, all.data, all.len), 0);
    assert_int_equal(pc_proto_reader_feed(&r, zero, 4), 0);
    assert_int_equal(pc_proto_reader_feed(&r, all.data, all.len), 0);
    assert_int_equal(pc_proto_reader_ahead(&r, ahead, SAMPLE_REQUESTS), n);
    pc_proto_reader_free(&r);
    /* an unframed reader has no frames to show */
    pc_proto_reader_init(&r, 0);
    pc_proto_reader_unframed(&r);
    assert_int_equal(pc_proto_reader_feed(&r, all.data, all.len), 0);
    assert_int_equal(pc_proto_reader_ahead(&r, ahead, SAMPLE_REQUESTS), 0);
    pc_proto_reader_free(&r);
    pc_buf_free(&all);
}

/* pc_proto_peek_get_key agrees with the decoder: 1 exactly for a GET, with
 * its key, whatever the id's and the key's encodings; 0, reading nothing
 * past the body (ASan), for every truncation that cuts the key. */
static void test_peek_get_key(void **state)
{
    pc_proto_decoder_t *d = *state;
    pc_request_t reqs[SAMPLE_REQUESTS];
    size_t n;
    pc_buf_t all;
    encode_all_requests(&all, reqs, &n);
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 0);
    assert_int_equal(pc_proto_reader_feed(&r, all.data, all.len), 0);
    const uint8_t *body;
    uint32_t len;
    size_t gets = 0;
    while (pc_proto_reader_next(&r, &body, &len) == 1) {
        pc_request_t req;
        pc_bytes_t k = {0};
        assert_int_equal(pc_proto_decode_request(d, body, len, &req), 0);
        int got = pc_proto_peek_get_key(body, len, &k);
        assert_int_equal(got, req.op == PC_OP_GET);
        if (got) {
            gets++;
            assert_int_equal(k.len, req.key.len);
            assert_memory_equal(k.ptr, req.key.ptr, k.len);
        }
    }
    assert_true(gets > 0);
    pc_proto_reader_free(&r);
    pc_buf_free(&all);

    static const uint64_t ids[] = {0, 1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX,
                                   (uint64_t)UINT32_MAX + 1, UINT64_MAX};
    static const size_t klens[] = {1, 31, 32, 255, 256, 1000, 65535};
    static uint8_t key[65535];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    for (size_t a = 0; a < ARRAY_LEN(ids); a++)
        for (size_t b = 0; b < ARRAY_LEN(klens); b++)
            for (int here = 0; here <= 1; here++) {
                pc_request_t g = {.op = PC_OP_GET, .id = ids[a], .here = (uint8_t)here,
                                  .key = {key, (uint32_t)klens[b]}};
                pc_buf_t e;
                pc_buf_init(&e, 0);
                assert_int_equal(pc_proto_encode_request(&e, &g), 0);
                const uint8_t *bd = e.data + 4; /* past the length prefix */
                size_t bl = e.len - 4;
                pc_bytes_t k = {0};
                assert_int_equal(pc_proto_peek_get_key(bd, bl, &k), 1);
                assert_int_equal(k.len, klens[b]);
                assert_true(k.ptr > bd && k.ptr + k.len <= bd + bl);
                assert_memory_equal(k.ptr, key, k.len);
                /* truncated anywhere before the key's end: 0 */
                size_t key_end = (size_t)(k.ptr - bd) + k.len;
                for (size_t cut = 0; cut < key_end; cut += cut < 64 ? 1 : 997) {
                    uint8_t *copy = malloc(cut ? cut : 1);
                    memcpy(copy, bd, cut);
                    assert_int_equal(pc_proto_peek_get_key(copy, cut, &k), 0);
                    free(copy);
                }
                pc_buf_free(&e);
            }
    /* a str key, as other clients may send one: [3, 9, "ab"] */
    static const uint8_t str_key[] = {0x93, 0x03, 0x09, 0xa2, 'a', 'b'};
    pc_bytes_t k = {0};
    assert_int_equal(pc_proto_peek_get_key(str_key, sizeof str_key, &k), 1);
    assert_int_equal(k.len, 2);
    assert_memory_equal(k.ptr, "ab", 2);
    /* not a GET: a SET, a map, an array too short */
    static const uint8_t set_req[] = {0x94, 0x05, 0x09, 0xa2, 'a', 'b'};
    static const uint8_t map_req[] = {0x83, 0x03, 0x09, 0xa2, 'a', 'b'};
    static const uint8_t short_arr[] = {0x92, 0x03, 0x09, 0xa2, 'a', 'b'};
    assert_int_equal(pc_proto_peek_get_key(set_req, sizeof set_req, &k), 0);
    assert_int_equal(pc_proto_peek_get_key(map_req, sizeof map_req, &k), 0);
    assert_int_equal(pc_proto_peek_get_key(short_arr, sizeof short_arr, &k), 0);
}

static void expect_reader_error(uint32_t max_frame, const uint8_t *bytes, size_t n, int want)
{
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, max_frame);
    const uint8_t *body;
    uint32_t len;
    /* Nothing is decided before the fourth prefix byte... */
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(pc_proto_reader_feed(&r, bytes + i, 1), 0);
        assert_int_equal(pc_proto_reader_next(&r, &body, &len), 0);
    }
    /* ...and everything is decided by it, before any of the body. */
    assert_int_equal(pc_proto_reader_feed(&r, bytes + 3, n - 3), 0);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), want);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), want); /* sticky */
    pc_proto_reader_free(&r);
}

static void test_reader_bad_prefix(void **state)
{
    (void)state;
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    static const uint8_t over[] = {0x00, 0x12, 0x00, 0x01}; /* default max_frame + 1 */
    static const uint8_t zero[] = {0x00, 0x00, 0x00, 0x00, 0x92, 0x02, 0x01};
    assert_int_equal(PC_PROTO_DEFAULT_MAX_FRAME, 0x120000);
    expect_reader_error(0, huge, sizeof(huge), PC_ETOOBIG);
    expect_reader_error(0, over, sizeof(over), PC_ETOOBIG);
    expect_reader_error(0, zero, sizeof(zero), PC_EPROTO);
    static const uint8_t over16[] = {0x00, 0x00, 0x00, 0x11};
    expect_reader_error(16, over16, sizeof(over16), PC_ETOOBIG);

    /* A body of exactly max_frame is fine. */
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 16);
    uint8_t frame[20] = {0, 0, 0, 16};
    memset(frame + 4, 0xc0, 16);
    const uint8_t *body;
    uint32_t len;
    assert_int_equal(pc_proto_reader_feed(&r, frame, 19), 0);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 0);
    assert_int_equal(pc_proto_reader_feed(&r, frame + 19, 1), 0);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 1);
    assert_int_equal(len, 16);
    assert_int_equal(body[0], 0xc0);

    /* A good frame, then a bad prefix: the good one still comes out. */
    assert_int_equal(pc_proto_reader_feed(&r, frame, 20), 0);
    assert_int_equal(pc_proto_reader_feed(&r, huge, 4), 0);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 1);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), PC_ETOOBIG);
    pc_proto_reader_free(&r);
}

static void test_reader_cap(void **state)
{
    (void)state;
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 16);
    const size_t cap = 16 + 4 + PC_PROTO_READ_CHUNK;
    uint8_t frame[20] = {0, 0, 0, 16};
    memset(frame + 4, 0x01, 16);

    /* Without draining, the buffer fills up to its cap and no further. */
    size_t frames = 0;
    while (pc_proto_reader_feed(&r, frame, sizeof(frame)) == 0)
        frames++;
    size_t pending = pc_proto_reader_pending(&r);
    assert_int_equal(pending, frames * sizeof(frame));
    assert_true(pending <= cap && pending + sizeof(frame) > cap);
    assert_int_equal(pc_proto_reader_feed(&r, frame, cap - pending + 1), PC_ETOOBIG);
    assert_int_equal(pc_proto_reader_pending(&r), pending); /* all or nothing */
    assert_int_equal(pc_proto_reader_feed(&r, frame, cap - pending), 0);
    uint8_t *p;
    size_t avail;
    assert_int_equal(pc_proto_reader_reserve(&r, 1, &p, &avail), PC_ETOOBIG);

    /* Draining frees room; the reader never hands out more than its cap. */
    const uint8_t *body;
    uint32_t len;
    size_t out = 0;
    while (pc_proto_reader_next(&r, &body, &len) == 1)
        out++;
    assert_int_equal(out, frames);
    assert_int_equal(pc_proto_reader_reserve(&r, SIZE_MAX, &p, &avail), 0);
    assert_true(avail >= 1);
    assert_true(pc_proto_reader_pending(&r) + avail <= cap);
    pc_proto_reader_commit(&r, SIZE_MAX); /* clamped to what was reserved */
    assert_true(r.buf.len <= r.buf.cap);
    pc_proto_reader_free(&r);
}

/* After a big frame is consumed, reserve() gives the memory back; a
 * partial frame in the buffer survives compaction byte for byte. */
static void test_reader_shrink(void **state)
{
    (void)state;
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 0);
    size_t big = 300000;
    uint8_t *frame = calloc(1, big + 4 + 10);
    assert_non_null(frame);
    frame[0] = (uint8_t)(big >> 24);
    frame[1] = (uint8_t)(big >> 16);
    frame[2] = (uint8_t)(big >> 8);
    frame[3] = (uint8_t)big;
    memcpy(frame + 4 + big, "\x00\x00\x00\x05\x94\x01", 6);

    assert_int_equal(pc_proto_reader_feed(&r, frame, big + 4), 0);
    assert_true(r.buf.cap >= big);
    const uint8_t *body;
    uint32_t len;
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 1);
    assert_int_equal(len, big);
    uint8_t *p;
    size_t avail;
    assert_int_equal(pc_proto_reader_reserve(&r, 0, &p, &avail), 0);
    assert_true(r.buf.cap <= 4 * (size_t)PC_PROTO_READ_CHUNK);
    assert_true(avail >= PC_PROTO_READ_CHUNK);

    /* Read in chunks no bigger than the rest of the frame, it costs its own
     * size: the buffer's doubling stops at the frame's end. */
    pc_proto_reader_free(&r);
    size_t at = 0;
    while (at < big + 4) {
        size_t want = pc_proto_reader_missing(&r);
        if (want == 0 || want > PC_PROTO_READ_CHUNK)
            want = PC_PROTO_READ_CHUNK;
        assert_int_equal(pc_proto_reader_reserve(&r, want, &p, &avail), 0);
        size_t k = want < big + 4 - at ? want : big + 4 - at;
        memcpy(p, frame + at, k);
        pc_proto_reader_commit(&r, k);
        at += k;
    }
    assert_true(r.buf.cap == big + 4);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 1);
    assert_int_equal(len, big);

    /* Big frame plus the start of the next one: nothing is released. */
    pc_proto_reader_free(&r);
    pc_proto_reader_init(&r, 0);
    assert_int_equal(pc_proto_reader_feed(&r, frame, big + 4 + 6), 0);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 1);
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 0);
    assert_int_equal(pc_proto_reader_reserve(&r, 0, &p, &avail), 0);
    assert_int_equal(pc_proto_reader_pending(&r), 6);
    assert_memory_equal(r.buf.data, "\x00\x00\x00\x05\x94\x01", 6);
    pc_proto_reader_free(&r);
    free(frame);
}

static void test_reader_missing(void **state)
{
    (void)state;
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 16);
    const uint8_t frame[] = {0, 0, 0, 3, 0x92, 0x02, 0x01, 0, 0};
    const uint8_t *body;
    uint32_t len;
    assert_int_equal(pc_proto_reader_missing(&r), 0); /* nothing pending */
    assert_int_equal(pc_proto_reader_feed(&r, frame, 1), 0);
    assert_int_equal(pc_proto_reader_missing(&r), 3); /* rest of the prefix */
    assert_int_equal(pc_proto_reader_feed(&r, frame + 1, 4), 0);
    assert_int_equal(pc_proto_reader_missing(&r), 2); /* rest of the body */
    assert_int_equal(pc_proto_reader_feed(&r, frame + 5, 2), 0);
    assert_int_equal(pc_proto_reader_missing(&r), 0); /* a whole frame waits */
    assert_int_equal(pc_proto_reader_feed(&r, frame + 7, 2), 0);
    assert_int_equal(pc_proto_reader_missing(&r), 0); /* ... still */
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 1);
    assert_int_equal(pc_proto_reader_missing(&r), 2); /* the next one's prefix */
    pc_proto_reader_free(&r);

    /* a prefix next() rejects: nothing to wait for */
    const uint8_t over[] = {0, 0, 0, 17};
    pc_proto_reader_init(&r, 16);
    assert_int_equal(pc_proto_reader_feed(&r, over, 4), 0);
    assert_int_equal(pc_proto_reader_missing(&r), 0);
    pc_proto_reader_free(&r);
}

/* Frames come straight out of lent memory; keep() copies only what is left,
 * and the reader never writes or frees the lent bytes. */
static void test_reader_lend_keep(void **state)
{
    pc_proto_decoder_t *d = *state;
    pc_request_t reqs[SAMPLE_REQUESTS];
    size_t n;
    pc_buf_t all;
    encode_all_requests(&all, reqs, &n);
    size_t acct = 0;
    pc_proto_reader_t r;
    pc_proto_reader_init(&r, 0);
    pc_proto_reader_account(&r, &acct);

    /* The stream in chunks of 37 bytes, each lent from one scratch buffer
     * that is overwritten between chunks (as a shared read buffer is). */
    uint8_t scratch[37];
    size_t got = 0, at = 0;
    while (at < all.len) {
        size_t k = all.len - at < sizeof scratch ? all.len - at : sizeof scratch;
        memcpy(scratch, all.data + at, k);
        at += k;
        if (pc_proto_reader_pending(&r) == 0) {
            assert_int_equal(pc_proto_reader_lend(&r, scratch, k), 0);
            assert_int_equal(acct, 0); /* its own buffer went back */
        } else {
            assert_int_equal(pc_proto_reader_lend(&r, scratch, k), PC_EINVAL);
            assert_int_equal(pc_proto_reader_feed(&r, scratch, k), 0);
        }
        const uint8_t *body;
        uint32_t len;
        while (pc_proto_reader_next(&r, &body, &len) == 1) {
            pc_request_t rq;
            assert_int_equal(pc_proto_decode_request(d, body, len, &rq), 0);
            assert_int_equal(rq.id, reqs[got].id);
            assert_int_equal(rq.op, reqs[got].op);
            got++;
        }
        size_t pending = pc_proto_reader_pending(&r);
        assert_int_equal(pc_proto_reader_keep(&r), 0);
        assert_int_equal(pc_proto_reader_pending(&r), pending);
        assert_int_equal(acct, r.buf.cap);
        memset(scratch, 0xc1, sizeof scratch); /* the next read reuses it */
    }
    assert_int_equal(got, n);
    assert_int_equal(pc_proto_reader_pending(&r), 0);

    /* Whole frames not taken yet are kept too, and come out later. */
    assert_int_equal(pc_proto_reader_lend(&r, all.data, all.len), 0);
    const uint8_t *body;
    uint32_t len;
    assert_int_equal(pc_proto_reader_next(&r, &body, &len), 1);
    assert_true(body > all.data && body < all.data + all.len); /* no copy */
    assert_int_equal(pc_proto_reader_keep(&r), 0);
    assert_int_equal(pc_proto_reader_keep(&r), 0); /* nothing lent: no-op */
    size_t later = 0;
    while (pc_proto_reader_next(&r, &body, &len) == 1) {
        assert_true(body >= r.buf.data && body < r.buf.data + r.buf.len);
        later++;
    }
    assert_int_equal(later, n - 1);

    /* reserve() keeps first: lent bytes are never written over */
    pc_proto_reader_free(&r);
    assert_int_equal(acct, 0);
    uint8_t half[] = {0, 0, 0, 9, 0x93};
    assert_int_equal(pc_proto_reader_lend(&r, half, sizeof half), 0);
    uint8_t *p;
    size_t avail;
    assert_int_equal(pc_proto_reader_reserve(&r, 16, &p, &avail), 0);
    assert_true(p < half || p >= half + sizeof half);
    assert_int_equal(pc_proto_reader_pending(&r), 5);
    assert_int_equal(pc_proto_reader_missing(&r), 8);
    assert_int_equal(acct, r.buf.cap);
    /* free() forgets lent bytes without touching them */
    pc_proto_reader_free(&r);
    assert_int_equal(pc_proto_reader_lend(&r, half, sizeof half), 0);
    pc_proto_reader_free(&r);
    assert_int_equal(pc_proto_reader_pending(&r), 0);
    assert_int_equal(acct, 0);

    /* more than the reader's cap cannot be kept */
    pc_proto_reader_t small;
    pc_proto_reader_init(&small, 16);
    size_t big = 16 + 4 + PC_PROTO_READ_CHUNK + 1;
    uint8_t *junk = calloc(1, big);
    junk[3] = 16;
    assert_int_equal(pc_proto_reader_lend(&small, junk, big), 0);
    assert_int_equal(pc_proto_reader_keep(&small), PC_ETOOBIG);
    assert_int_equal(pc_proto_reader_pending(&small), 0);
    pc_proto_reader_free(&small);
    free(junk);
    pc_buf_free(&all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reader_byte_at_a_time, setup_decoder,
                                        teardown_decoder),
        cmocka_unit_test_setup_teardown(test_reader_chunks_and_batches, setup_decoder,
                                        teardown_decoder),
        cmocka_unit_test(test_reader_bad_prefix),
        cmocka_unit_test(test_reader_cap),
        cmocka_unit_test(test_reader_shrink),
        cmocka_unit_test(test_reader_missing),
        cmocka_unit_test_setup_teardown(test_reader_lend_keep, setup_decoder, teardown_decoder),
        cmocka_unit_test_setup_teardown(test_reader_ahead, setup_decoder, teardown_decoder),
        cmocka_unit_test_setup_teardown(test_peek_get_key, setup_decoder, teardown_decoder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
