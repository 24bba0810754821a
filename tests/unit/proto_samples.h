/*
 * proto_samples.h -- what test_proto.c and test_proto_reader.c share: one
 * sample request of every op and shape, its equality check, and the
 * decoder fixture. Plain static, so every file that includes it must use
 * all of it (-Wunused-function).
 */
#ifndef PROTO_SAMPLES_H
#define PROTO_SAMPLES_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pc_proto.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static pc_bytes_t bs(const char *s)
{
    pc_bytes_t b = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return b;
}

static void assert_bytes_equal(pc_bytes_t a, pc_bytes_t b)
{
    assert_int_equal(a.len, b.len);
    if (a.len > 0)
        assert_memory_equal(a.ptr, b.ptr, a.len);
}

static int setup_decoder(void **state)
{
    pc_proto_decoder_t *d = NULL;
    assert_int_equal(pc_proto_decoder_new(NULL, &d), 0);
    assert_non_null(d);
    *state = d;
    return 0;
}

static int teardown_decoder(void **state)
{
    pc_proto_decoder_t *d = *state;
    pc_proto_decoder_free(&d);
    assert_null(d);
    return 0;
}

static const pc_bytes_t mget_keys[] = {
    {(const uint8_t *)"alpha", 5},
    {(const uint8_t *)"b", 1},
    {(const uint8_t *)"\x00\xff\x00", 3},
};

/* One request of every op, and every optional-arg shape of
 * SET/HELLO/GET/MGET: this many. */
#define SAMPLE_REQUESTS 17

static size_t sample_requests(pc_request_t *r, size_t max)
{
    size_t n = 0;
    assert_true(max >= SAMPLE_REQUESTS);
    memset(r, 0, max * sizeof(*r));
    r[n++] = (pc_request_t){.op = PC_OP_HELLO, .id = 1, .proto_version = PC_PROTO_VERSION};
    r[n++] = (pc_request_t){.op = PC_OP_HELLO, .id = 2, .proto_version = 7, .token = bs("s3cret")};
    r[n++] = (pc_request_t){.op = PC_OP_PING, .id = 0};
    r[n++] = (pc_request_t){.op = PC_OP_GET, .id = UINT64_MAX, .key = bs("user:42")};
    r[n++] = (pc_request_t){.op = PC_OP_GET, .id = 4, .key = bs("user:42"), .here = 1};
    r[n++] = (pc_request_t){.op = PC_OP_MGET, .id = 300, .nkeys = 3, .keys = mget_keys};
    r[n++] = (pc_request_t){.op = PC_OP_MGET, .id = 301, .nkeys = 3, .keys = mget_keys, .here = 1};
    r[n++] = (pc_request_t){.op = PC_OP_SET, .id = 5, .key = bs("k"), .value = bs("v")};
    r[n++] = (pc_request_t){.op = PC_OP_SET, .id = 6, .key = bs("k"), .value = {NULL, 0}};
    r[n++] = (pc_request_t){.op = PC_OP_SET, .id = 7, .key = bs("k"), .value = bs("v"), .ttl_ms = 60000};
    r[n++] = (pc_request_t){.op = PC_OP_SET, .id = 8, .key = bs("k"), .value = bs("v"), .flags = UINT32_MAX};
    r[n++] = (pc_request_t){.op = PC_OP_SET, .id = 9, .key = bs("k"), .value = bs("v"), .cond = PC_COND_NX};
    r[n++] = (pc_request_t){.op = PC_OP_SET, .id = 10, .key = bs("key"), .value = bs("value"),
                            .ttl_ms = PC_PROTO_MAX_TTL_MS, .flags = 3, .cond = PC_COND_XX,
                            .cas = 1ull << 40};
    r[n++] = (pc_request_t){.op = PC_OP_DEL, .id = 11, .key = bs("gone")};
    r[n++] = (pc_request_t){.op = PC_OP_TOUCH, .id = 12, .key = bs("t"), .ttl_ms = 0};
    r[n++] = (pc_request_t){.op = PC_OP_TOUCH, .id = 13, .key = bs("t"), .ttl_ms = 1ull << 33};
    r[n++] = (pc_request_t){.op = PC_OP_STATS, .id = 14};
    return n;
}

static void assert_request_equal(const pc_request_t *a, const pc_request_t *b)
{
    assert_int_equal(a->op, b->op);
    assert_int_equal(a->id, b->id);
    assert_bytes_equal(a->key, b->key);
    assert_bytes_equal(a->value, b->value);
    assert_int_equal(a->ttl_ms, b->ttl_ms);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->cond, b->cond);
    assert_int_equal(a->cas, b->cas);
    assert_int_equal(a->proto_version, b->proto_version);
    assert_bytes_equal(a->token, b->token);
    assert_int_equal(a->here, b->here);
    assert_int_equal(a->nkeys, b->nkeys);
    for (uint32_t i = 0; i < a->nkeys; i++)
        assert_bytes_equal(a->keys[i], b->keys[i]);
}

#endif
