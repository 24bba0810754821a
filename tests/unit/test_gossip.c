/*
 * test_gossip.c -- unit tests for proto/pc_gossip: the gossip packet and
 * push/pull state codec.
 *
 * Good inputs are built with the codec's own writer; malformed ones two
 * ways: with msgpack-c's packer (well-formed msgpack with wrong fields)
 * and as literal bytes (msgpack that lies about its sizes, which no packer
 * produces). Every decode of garbage must return an error without
 * crashing; the mutation test and the ASan build turn any out-of-bounds
 * read into a failure.
 *
 * Bounded allocations are measured, not assumed: outside sanitizer builds
 * this file replaces malloc and friends with counting wrappers around
 * glibc's __libc_* entry points (glibc documents replacing malloc in the
 * main program), so a test can read the peak bytes held during a decode.
 * Under ASan the wrappers are left out (ASan owns malloc) and those
 * assertions are skipped; ASan still checks everything else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>
#include <msgpack.h>

#include "pc_buf.h"
#include "pc_error.h"
#include "pc_gossip.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- allocation accounting ------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define PC_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define PC_TEST_SANITIZED 1
#endif
#endif

#ifndef PC_TEST_SANITIZED
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

/* Bytes held since alloc_reset(); may go below 0 when older blocks are
 * freed, which only makes the peak an underestimate of nothing we test. */
static long long alloc_cur, alloc_peak;

static void alloc_note(long long delta)
{
    alloc_cur += delta;
    if (alloc_cur > alloc_peak)
        alloc_peak = alloc_cur;
}

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    if (p != NULL)
        alloc_note((long long)malloc_usable_size(p));
    return p;
}

void *calloc(size_t a, size_t b)
{
    void *p = __libc_calloc(a, b);
    if (p != NULL)
        alloc_note((long long)malloc_usable_size(p));
    return p;
}

void *realloc(void *old, size_t n)
{
    long long before = old != NULL ? (long long)malloc_usable_size(old) : 0;
    void *p = __libc_realloc(old, n);
    if (p != NULL)
        alloc_note((long long)malloc_usable_size(p) - before);
    else if (n == 0)
        alloc_note(-before);
    return p;
}

void free(void *p)
{
    if (p != NULL)
        alloc_note(-(long long)malloc_usable_size(p));
    __libc_free(p);
}

static void alloc_reset(void)
{
    alloc_cur = 0;
    alloc_peak = 0;
}

static long long alloc_peak_bytes(void)
{
    return alloc_peak;
}
#endif

/* ---- helpers ---------------------------------------------------------- */

static pc_bytes_t bs(const char *s)
{
    pc_bytes_t b = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return b;
}

static void assert_bytes_str(pc_bytes_t b, const char *s)
{
    assert_int_equal(b.len, strlen(s));
    assert_memory_equal(b.ptr, s, b.len);
}

static int setup_decoder(void **state)
{
    pc_gossip_decoder_t *d = NULL;
    assert_int_equal(pc_gossip_decoder_new(&d), 0);
    assert_non_null(d);
    *state = d;
    return 0;
}

static int teardown_decoder(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_decoder_free(&d);
    assert_null(d);
    return 0;
}

static pc_gossip_msg_t msg_alive(const char *name, uint64_t inc, const char *addr,
                                 const char *gossip, uint32_t weight)
{
    pc_gossip_msg_t m = {.type = PC_GOSSIP_ALIVE,
                         .name = bs(name),
                         .incarnation = inc,
                         .addr = bs(addr),
                         .gossip = bs(gossip),
                         .weight = weight};
    return m;
}

/* One packet from `sender` holding msgs, into a fresh buffer. */
static void build_packet(pc_buf_t *b, const char *sender, const pc_gossip_msg_t *msgs, size_t n)
{
    pc_gossip_writer_t w;
    pc_buf_init(b, 0);
    assert_int_equal(pc_gossip_writer_begin(&w, b, bs(sender), 0), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pc_gossip_writer_add(&w, &msgs[i]), 0);
    assert_int_equal(pc_gossip_writer_end(&w), b->len);
}

/* ---- msgpack building helpers (for wrong-but-well-formed input) ------- */

typedef struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp_t;

static void mp_init(mp_t *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_destroy(mp_t *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

static void mp_str(mp_t *m, const char *s, size_t n)
{
    msgpack_pack_str(&m->pk, n);
    msgpack_pack_str_body(&m->pk, s, n);
}

/*
 * A field value by kind: 'u' uint (u), 'i' negative int, 's' str (s, n
 * bytes), 'b' bin (s), 'n' nil, 'f' float, 'B' true, 'a' empty array.
 */
typedef struct fv {
    char kind;
    uint64_t u;
    const char *s;
    size_t n;
} fv_t;

#define U(x) ((fv_t){'u', (x), NULL, 0})
#define S(x) ((fv_t){'s', 0, (x), sizeof(x) - 1})

static void mp_field(mp_t *m, fv_t f)
{
    switch (f.kind) {
    case 'u':
        msgpack_pack_uint64(&m->pk, f.u);
        break;
    case 'i':
        msgpack_pack_int64(&m->pk, -1);
        break;
    case 's':
        mp_str(m, f.s, f.n);
        break;
    case 'b':
        msgpack_pack_bin(&m->pk, f.n);
        msgpack_pack_bin_body(&m->pk, f.s, f.n);
        break;
    case 'n':
        msgpack_pack_nil(&m->pk);
        break;
    case 'f':
        msgpack_pack_double(&m->pk, 1.5);
        break;
    case 'B':
        msgpack_pack_true(&m->pk);
        break;
    default:
        msgpack_pack_array(&m->pk, 0);
        break;
    }
}

/* [1, "s", [[fields...]]] */
static void mp_packet1(mp_t *m, const fv_t *f, size_t n)
{
    mp_init(m);
    msgpack_pack_array(&m->pk, 3);
    msgpack_pack_uint32(&m->pk, 1);
    mp_str(m, "s", 1);
    msgpack_pack_array(&m->pk, 1);
    msgpack_pack_array(&m->pk, n);
    for (size_t i = 0; i < n; i++)
        mp_field(m, f[i]);
}

static int decode_mp(pc_gossip_decoder_t *d, mp_t *m, pc_gossip_packet_t *out)
{
    return pc_gossip_decode_packet(d, (const uint8_t *)m->sb.data, m->sb.size, out);
}

/* ---- tests ------------------------------------------------------------ */

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(pc_gossip_type_name(PC_GOSSIP_PING), "PING");
    assert_string_equal(pc_gossip_type_name(PC_GOSSIP_PING_REQ), "PING_REQ");
    assert_string_equal(pc_gossip_type_name(PC_GOSSIP_LEFT), "LEFT");
    assert_string_equal(pc_gossip_type_name(0), "UNKNOWN");
    assert_string_equal(pc_gossip_type_name(99), "UNKNOWN");
}

static void test_roundtrip_all_types(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_msg_t in[8];
    memset(in, 0, sizeof(in));
    in[0].type = PC_GOSSIP_PING;
    in[0].seq = 7;
    in[0].name = bs("node-b");
    in[1].type = PC_GOSSIP_PING_REQ;
    in[1].seq = UINT32_MAX;
    in[1].name = bs("node-c");
    in[1].gossip = bs("10.0.0.3:7946");
    in[1].nack_ms = 400;
    in[2].type = PC_GOSSIP_ACK;
    in[2].seq = 0;
    in[3].type = PC_GOSSIP_NACK;
    in[3].seq = 65536;
    in[4] = msg_alive("node-d", UINT64_MAX, "10.0.0.4:7400", "10.0.0.4:7946", 1000);
    in[5].type = PC_GOSSIP_SUSPECT;
    in[5].name = bs("node-e");
    in[5].incarnation = 42;
    in[5].from = bs("node-a");
    in[6].type = PC_GOSSIP_DEAD;
    in[6].name = bs("node-f");
    in[6].incarnation = 1ull << 40;
    in[6].from = bs("node-a");
    in[7].type = PC_GOSSIP_LEFT;
    in[7].name = bs("node-g");
    in[7].incarnation = 3;

    pc_buf_t b;
    build_packet(&b, "node-a", in, ARRAY_LEN(in));
    pc_gossip_packet_t pk;
    assert_int_equal(pc_gossip_decode_packet(d, b.data, b.len, &pk), 0);
    assert_int_equal(pk.version, PC_GOSSIP_VERSION);
    assert_bytes_str(pk.sender, "node-a");
    assert_int_equal(pk.nmsgs, ARRAY_LEN(in));
    assert_int_equal(pk.skipped, 0);
    for (size_t i = 0; i < ARRAY_LEN(in); i++) {
        const pc_gossip_msg_t *o = &pk.msgs[i];
        assert_int_equal(o->type, in[i].type);
        assert_int_equal(o->seq, in[i].seq);
        assert_int_equal(o->nack_ms, in[i].nack_ms);
        assert_int_equal(o->weight, in[i].weight);
        assert_true(o->incarnation == in[i].incarnation);
        assert_int_equal(o->name.len, in[i].name.len);
        assert_int_equal(o->addr.len, in[i].addr.len);
        assert_int_equal(o->gossip.len, in[i].gossip.len);
        assert_int_equal(o->from.len, in[i].from.len);
        if (in[i].name.len > 0)
            assert_memory_equal(o->name.ptr, in[i].name.ptr, o->name.len);
        if (in[i].gossip.len > 0)
            assert_memory_equal(o->gossip.ptr, in[i].gossip.ptr, o->gossip.len);
        if (in[i].addr.len > 0)
            assert_memory_equal(o->addr.ptr, in[i].addr.ptr, o->addr.len);
        if (in[i].from.len > 0)
            assert_memory_equal(o->from.ptr, in[i].from.ptr, o->from.len);
    }
    /* Zero copy: slices point into the input, not into msgpack's zone. */
    assert_true(pk.sender.ptr > b.data && pk.sender.ptr < b.data + b.len);
    assert_true(pk.msgs[4].addr.ptr > b.data && pk.msgs[4].addr.ptr < b.data + b.len);
    pc_buf_free(&b);
}

static void test_writer_limit(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_buf_t b;
    pc_gossip_writer_t w;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_gossip_writer_begin(&w, &b, bs("me"), 300), 0);
    size_t header = pc_gossip_writer_size(&w);
    assert_int_equal(header, 1 + 1 + 3 + 3);

    char name[16];
    int added = 0, rc;
    for (int i = 0;; i++) {
        snprintf(name, sizeof(name), "node-%03d", i);
        pc_gossip_msg_t m = msg_alive(name, (uint64_t)i, "10.0.0.1:7400", "10.0.0.1:7946", 1);
        size_t before = b.len;
        rc = pc_gossip_writer_add(&w, &m);
        if (rc != 0) {
            assert_int_equal(rc, PC_ETOOBIG);
            assert_int_equal(b.len, before); /* nothing half-added */
            break;
        }
        added++;
        assert_true(pc_gossip_writer_size(&w) <= 300);
    }
    assert_true(added >= 5);
    /* A smaller message still fits after a refused bigger one. */
    pc_gossip_msg_t ack = {.type = PC_GOSSIP_ACK, .seq = 1};
    assert_int_equal(pc_gossip_writer_add(&w, &ack), 0);
    assert_int_equal(pc_gossip_writer_count(&w), (uint32_t)added + 1);
    size_t len = pc_gossip_writer_end(&w);
    assert_true(len <= 300);

    pc_gossip_packet_t pk;
    assert_int_equal(pc_gossip_decode_packet(d, b.data, b.len, &pk), 0);
    assert_int_equal(pk.nmsgs, (uint32_t)added + 1);
    assert_int_equal(pk.msgs[added].type, PC_GOSSIP_ACK);

    /* abort() takes the whole packet back out, leaving what was before. */
    pc_buf_reset(&b);
    assert_int_equal(pc_buf_append(&b, "xyz", 3), 0);
    assert_int_equal(pc_gossip_writer_begin(&w, &b, bs("me"), 0), 0);
    assert_int_equal(pc_gossip_writer_add(&w, &ack), 0);
    pc_gossip_writer_abort(&w);
    assert_int_equal(b.len, 3);

    /* A second packet appended after the first starts at its own offset. */
    pc_buf_reset(&b);
    assert_int_equal(pc_buf_append(&b, "xyz", 3), 0);
    assert_int_equal(pc_gossip_writer_begin(&w, &b, bs("me"), 0), 0);
    assert_int_equal(pc_gossip_writer_add(&w, &ack), 0);
    len = pc_gossip_writer_end(&w);
    assert_int_equal(len, b.len - 3);
    assert_int_equal(pc_gossip_decode_packet(d, b.data + 3, len, &pk), 0);
    assert_int_equal(pk.nmsgs, 1);
    pc_buf_free(&b);
}

static void test_writer_max_msgs(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_buf_t b;
    pc_gossip_writer_t w;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_gossip_writer_begin(&w, &b, bs("me"), PC_GOSSIP_MAX_PACKET), 0);
    pc_gossip_msg_t ack = {.type = PC_GOSSIP_ACK};
    for (uint32_t i = 0; i < PC_GOSSIP_MAX_MSGS; i++) {
        ack.seq = i;
        assert_int_equal(pc_gossip_writer_add(&w, &ack), 0);
    }
    assert_int_equal(pc_gossip_writer_add(&w, &ack), PC_ETOOBIG);
    pc_gossip_writer_end(&w);
    pc_gossip_packet_t pk;
    assert_int_equal(pc_gossip_decode_packet(d, b.data, b.len, &pk), 0);
    assert_int_equal(pk.nmsgs, PC_GOSSIP_MAX_MSGS);
    assert_int_equal(pk.msgs[255].seq, 255);
    pc_buf_free(&b);
}

static void test_writer_invalid(void **state)
{
    (void)state;
    char long_name[PC_GOSSIP_MAX_NAME + 2];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const uint8_t nul_name[3] = {'a', 0, 'b'};
    pc_bytes_t with_nul = {nul_name, 3};

    pc_buf_t b;
    pc_gossip_writer_t w;
    pc_buf_init(&b, 0);

    /* begin: bad senders, a limit below the header, out's own cap. */
    assert_int_equal(pc_gossip_writer_begin(&w, &b, bs(""), 0), PC_EINVAL);
    assert_int_equal(pc_gossip_writer_begin(&w, &b, bs(long_name), 0), PC_EINVAL);
    assert_int_equal(pc_gossip_writer_begin(&w, &b, with_nul, 0), PC_EINVAL);
    assert_int_equal(pc_gossip_writer_begin(NULL, &b, bs("me"), 0), PC_EINVAL);
    assert_int_equal(pc_gossip_writer_begin(&w, &b, bs("me"), 5), PC_ETOOBIG);
    assert_int_equal(b.len, 0);
    pc_buf_t small;
    pc_buf_init(&small, 4);
    assert_int_equal(pc_gossip_writer_begin(&w, &small, bs("me"), 0), PC_ETOOBIG);
    assert_int_equal(small.len, 0);
    pc_buf_free(&small);

    assert_int_equal(pc_gossip_writer_begin(&w, &b, bs("me"), 0), 0);
    size_t len0 = b.len;
    pc_gossip_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = 0;
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL);
    m.type = 99;
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL);
    m.type = PC_GOSSIP_PING; /* no target */
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL);
    m.name = bs(long_name);
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL);
    m.name = with_nul;
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL);
    m = msg_alive("n", 1, "", "g:1", 1);
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL);
    m = msg_alive("n", 1, "a:1", "", 1);
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL);
    memset(&m, 0, sizeof(m));
    m.type = PC_GOSSIP_SUSPECT;
    m.name = bs("n");
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL); /* no from */
    m.type = PC_GOSSIP_PING_REQ;
    m.gossip = bs("");
    assert_int_equal(pc_gossip_writer_add(&w, &m), PC_EINVAL);
    assert_int_equal(pc_gossip_writer_add(&w, NULL), PC_EINVAL);
    assert_int_equal(b.len, len0);

    /* Still usable after all of that. */
    m.type = PC_GOSSIP_LEFT;
    assert_int_equal(pc_gossip_writer_add(&w, &m), 0);
    assert_int_equal(pc_gossip_writer_count(&w), 1);
    pc_buf_free(&b);
}

static void test_state_roundtrip(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_node_t in[4] = {
        {bs("a"), bs("h:1"), bs("h:2"), 1, PC_GOSSIP_ST_ALIVE, 0},
        {bs("b"), bs("h:3"), bs("h:4"), 1000, PC_GOSSIP_ST_SUSPECT, 17},
        {bs("c"), bs("h:5"), bs("h:6"), 7, PC_GOSSIP_ST_DEAD, UINT64_MAX},
        {bs("d"), bs("h:7"), bs("h:8"), 2, PC_GOSSIP_ST_LEFT, 1},
    };
    pc_buf_t b;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), in, 4), 0);
    pc_gossip_state_t s;
    assert_int_equal(pc_gossip_decode_state(d, b.data, b.len, &s), 0);
    assert_int_equal(s.version, PC_GOSSIP_VERSION);
    assert_bytes_str(s.sender, "a");
    assert_int_equal(s.nnodes, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s.nodes[i].name.len, in[i].name.len);
        assert_memory_equal(s.nodes[i].name.ptr, in[i].name.ptr, in[i].name.len);
        assert_memory_equal(s.nodes[i].addr.ptr, in[i].addr.ptr, in[i].addr.len);
        assert_memory_equal(s.nodes[i].gossip.ptr, in[i].gossip.ptr, in[i].gossip.len);
        assert_int_equal(s.nodes[i].weight, in[i].weight);
        assert_int_equal(s.nodes[i].state, in[i].state);
        assert_true(s.nodes[i].incarnation == in[i].incarnation);
    }

    /* Empty state. */
    pc_buf_reset(&b);
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), NULL, 0), 0);
    assert_int_equal(pc_gossip_decode_state(d, b.data, b.len, &s), 0);
    assert_int_equal(s.nnodes, 0);

    /* A packet is not a state and vice versa (the element shapes differ). */
    pc_buf_t p;
    pc_gossip_msg_t ack = {.type = PC_GOSSIP_ACK, .seq = 1};
    build_packet(&p, "a", &ack, 1);
    assert_int_equal(pc_gossip_decode_state(d, p.data, p.len, &s), PC_EPROTO);
    pc_buf_reset(&b);
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), in, 1), 0);
    pc_gossip_packet_t pk;
    assert_int_equal(pc_gossip_decode_packet(d, b.data, b.len, &pk), PC_EPROTO);
    pc_buf_free(&p);
    pc_buf_free(&b);
}

static void test_state_encode_errors(void **state)
{
    (void)state;
    pc_gossip_node_t nd = {bs("a"), bs("h:1"), bs("h:2"), 1, PC_GOSSIP_ST_ALIVE, 0};
    pc_buf_t b;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_gossip_encode_state(NULL, bs("a"), &nd, 1), PC_EINVAL);
    assert_int_equal(pc_gossip_encode_state(&b, bs(""), &nd, 1), PC_EINVAL);
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), NULL, 1), PC_EINVAL);
    nd.state = 4;
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), &nd, 1), PC_EINVAL);
    nd.state = 0;
    nd.addr = bs("");
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), &nd, 1), PC_EINVAL);
    nd.addr = bs("h:1");
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), &nd, PC_GOSSIP_MAX_NODES + 1),
                     PC_ETOOBIG);
    assert_int_equal(b.len, 0);

    /* The byte cap holds the largest legal state: 4096 nodes with every
     * text field at its maximum. */
    static char big[PC_GOSSIP_MAX_NAME + 1];
    memset(big, 'z', PC_GOSSIP_MAX_NAME);
    pc_gossip_node_t *many = calloc(PC_GOSSIP_MAX_NODES, sizeof(*many));
    assert_non_null(many);
    for (size_t i = 0; i < PC_GOSSIP_MAX_NODES; i++) {
        many[i].name = bs(big);
        many[i].addr = bs(big);
        many[i].gossip = bs(big);
    }
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), many, PC_GOSSIP_MAX_NODES), 0);
    assert_true(b.len <= PC_GOSSIP_MAX_STATE);
    pc_gossip_decoder_t *d = NULL;
    assert_int_equal(pc_gossip_decoder_new(&d), 0);
    pc_gossip_state_t s;
    assert_int_equal(pc_gossip_decode_state(d, b.data, b.len, &s), 0);
    assert_int_equal(s.nnodes, PC_GOSSIP_MAX_NODES);
    pc_gossip_decoder_free(&d);
    free(many);
    pc_buf_reset(&b);

    /* out's own cap, with the buffer left as it was. */
    pc_buf_t small;
    pc_buf_init(&small, 10);
    assert_int_equal(pc_buf_append(&small, "ab", 2), 0);
    assert_int_equal(pc_gossip_encode_state(&small, bs("a"), &nd, 1), PC_ETOOBIG);
    assert_int_equal(small.len, 2);
    pc_buf_free(&small);
    pc_buf_free(&b);
}

/* Later versions may add fields, message types, state values and top-level
 * elements; this version must read what it knows and skip the rest. */
static void test_forward_compat(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_packet_t pk;
    mp_t m;

    mp_init(&m);
    msgpack_pack_array(&m.pk, 5);         /* two extra top-level elements */
    msgpack_pack_uint32(&m.pk, 7);        /* a future version */
    msgpack_pack_bin(&m.pk, 2);           /* text as bin */
    msgpack_pack_bin_body(&m.pk, "me", 2);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_array(&m.pk, 4);         /* ACK with two extra fields */
    msgpack_pack_uint32(&m.pk, PC_GOSSIP_ACK);
    msgpack_pack_uint32(&m.pk, 9);
    msgpack_pack_nil(&m.pk);
    mp_str(&m, "extra", 5);
    msgpack_pack_array(&m.pk, 2);         /* unknown type: skipped */
    msgpack_pack_uint32(&m.pk, 200);
    msgpack_pack_array(&m.pk, 0);         /* (whatever it carries) */
    msgpack_pack_array(&m.pk, 1);         /* unknown type, no fields */
    msgpack_pack_uint32(&m.pk, 9);
    msgpack_pack_array(&m.pk, 2);         /* extra top-level: an array */
    msgpack_pack_array(&m.pk, 0);
    msgpack_pack_uint32(&m.pk, 1);
    msgpack_pack_map(&m.pk, 0);
    /* The unknown type carries a nested array at depth 4: rejected. */
    assert_int_equal(decode_mp(d, &m, &pk), PC_EPROTO);
    mp_destroy(&m);

    mp_init(&m);
    msgpack_pack_array(&m.pk, 5);
    msgpack_pack_uint32(&m.pk, 7);
    msgpack_pack_bin(&m.pk, 2);
    msgpack_pack_bin_body(&m.pk, "me", 2);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_array(&m.pk, 4);
    msgpack_pack_uint32(&m.pk, PC_GOSSIP_ACK);
    msgpack_pack_uint32(&m.pk, 9);
    msgpack_pack_nil(&m.pk);
    mp_str(&m, "extra", 5);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_uint32(&m.pk, 200);
    msgpack_pack_true(&m.pk);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_uint32(&m.pk, 9);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 0);
    msgpack_pack_uint32(&m.pk, 1);
    msgpack_pack_map(&m.pk, 0);
    assert_int_equal(decode_mp(d, &m, &pk), 0);
    assert_int_equal(pk.version, 7);
    assert_bytes_str(pk.sender, "me");
    assert_int_equal(pk.nmsgs, 1);
    assert_int_equal(pk.skipped, 2);
    assert_int_equal(pk.msgs[0].type, PC_GOSSIP_ACK);
    assert_int_equal(pk.msgs[0].seq, 9);
    mp_destroy(&m);

    /* array 32 headers and signed encodings of non-negative ints. */
    static const uint8_t a32[] = {0xdd, 0, 0, 0, 3, 0xd0, 1, 0xa1, 'x', 0xdd, 0, 0, 0, 1,
                                  0xdd, 0, 0, 0, 2, 0xd3, 0, 0, 0, 0, 0, 0, 0, 3, 0x05};
    assert_int_equal(pc_gossip_decode_packet(d, a32, sizeof(a32), &pk), 0);
    assert_int_equal(pk.nmsgs, 1);
    assert_int_equal(pk.msgs[0].type, PC_GOSSIP_ACK);
    assert_int_equal(pk.msgs[0].seq, 5);

    /* A state node with a state value from the future is skipped. */
    mp_init(&m);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_uint32(&m.pk, 1);
    mp_str(&m, "me", 2);
    msgpack_pack_array(&m.pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_array(&m.pk, 7);
        mp_str(&m, i == 0 ? "x" : "y", 1);
        mp_str(&m, "h:1", 3);
        mp_str(&m, "h:2", 3);
        msgpack_pack_uint32(&m.pk, 1);
        msgpack_pack_uint32(&m.pk, 5);
        msgpack_pack_uint32(&m.pk, i == 0 ? 9 : 0);
        msgpack_pack_nil(&m.pk); /* an extra field */
    }
    pc_gossip_state_t s;
    assert_int_equal(
        pc_gossip_decode_state(d, (const uint8_t *)m.sb.data, m.sb.size, &s), 0);
    assert_int_equal(s.nnodes, 1);
    assert_int_equal(s.skipped, 1);
    assert_bytes_str(s.nodes[0].name, "y");
    mp_destroy(&m);
}

static void test_malformed_structure(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_packet_t pk;
    pc_gossip_state_t s;
    const struct {
        const char *why;
        const uint8_t *p;
        size_t len;
    } cases[] = {
#define C(why, ...) {why, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})}
        C("not an array", 0x01),
        C("a map", 0x83, 1, 1, 2, 2, 3, 3),
        C("two elements", 0x92, 0x01, 0xa1, 'a'),
        C("version 0", 0x93, 0x00, 0xa1, 'a', 0x90),
        C("version negative", 0x93, 0xff, 0xa1, 'a', 0x90),
        C("version a string", 0x93, 0xa1, '1', 0xa1, 'a', 0x90),
        C("version over 32 bits", 0x93, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xa1, 'a', 0x90),
        C("version an array", 0x93, 0x91, 0x01, 0xa1, 'a', 0x90),
        C("sender an int", 0x93, 0x01, 0x05, 0x90),
        C("sender empty", 0x93, 0x01, 0xa0, 0x90),
        C("sender with NUL", 0x93, 0x01, 0xa2, 'a', 0, 0x90),
        C("sender an array", 0x93, 0x01, 0x91, 0xa1, 'a', 0x90),
        C("sender nil", 0x93, 0x01, 0xc0, 0x90),
        C("list a map", 0x93, 0x01, 0xa1, 'a', 0x80),
        C("list an int", 0x93, 0x01, 0xa1, 'a', 0x00),
        C("msg not an array", 0x93, 0x01, 0xa1, 'a', 0x91, 0x03),
        C("msg a map", 0x93, 0x01, 0xa1, 'a', 0x91, 0x81, 0x03, 0x01),
        C("msg empty", 0x93, 0x01, 0xa1, 'a', 0x91, 0x90),
        C("msg 17 fields", 0x93, 0x01, 0xa1, 'a', 0x91, 0xdc, 0, 17, 3, 1, 0, 0, 0, 0, 0, 0, 0,
          0, 0, 0, 0, 0, 0, 0, 0),
        C("trailing byte", 0x93, 0x01, 0xa1, 'a', 0x90, 0x00),
        C("reserved byte 0xc1", 0x93, 0x01, 0xa1, 'a', 0x91, 0x92, 0x03, 0xc1),
        C("ack without seq", 0x93, 0x01, 0xa1, 'a', 0x91, 0x91, 0x03),
        C("type negative", 0x93, 0x01, 0xa1, 'a', 0x91, 0x92, 0xff, 0x01),
        C("type a string", 0x93, 0x01, 0xa1, 'a', 0x91, 0x92, 0xa1, '3', 0x01),
#undef C
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int rc = pc_gossip_decode_packet(d, cases[i].p, cases[i].len, &pk);
        if (rc != PC_EPROTO)
            fail_msg("packet case \"%s\": got %d", cases[i].why, rc);
        assert_int_equal(pk.nmsgs, 0);
        assert_null(pk.msgs);
        rc = pc_gossip_decode_state(d, cases[i].p, cases[i].len, &s);
        if (rc != PC_EPROTO)
            fail_msg("state case \"%s\": got %d", cases[i].why, rc);
    }
    assert_int_equal(pc_gossip_decode_packet(d, NULL, 0, &pk), PC_EPROTO);
    assert_int_equal(pc_gossip_decode_packet(d, (const uint8_t *)"", 0, &pk), PC_EPROTO);
    assert_int_equal(pc_gossip_decode_packet(NULL, (const uint8_t *)"x", 1, &pk), PC_EINVAL);
    assert_int_equal(pc_gossip_decode_packet(d, (const uint8_t *)"x", 1, NULL), PC_EINVAL);
    assert_int_equal(pc_gossip_decode_state(d, NULL, 0, &s), PC_EPROTO);
}

/* Every field of every message type, replaced by each wrong type. */
static void test_wrong_types(void **state)
{
    pc_gossip_decoder_t *d = *state;
    char too_long[PC_GOSSIP_MAX_NAME + 2];
    memset(too_long, 'x', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';

    const struct {
        const char *name;
        fv_t f[6];
        size_t n;
    } good[] = {
        {"PING", {U(1), U(7), S("n")}, 3},
        {"PING_REQ", {U(2), U(7), S("n"), S("g:1"), U(100)}, 5},
        {"ACK", {U(3), U(7)}, 2},
        {"NACK", {U(4), U(7)}, 2},
        {"ALIVE", {U(5), S("n"), U(9), S("a:1"), S("g:1"), U(1)}, 6},
        {"SUSPECT", {U(6), S("n"), U(9), S("f")}, 4},
        {"DEAD", {U(7), S("n"), U(9), S("f")}, 4},
        {"LEFT", {U(8), S("n"), U(9)}, 3},
    };
    const fv_t bad_for_uint[] = {{'s', 0, "1", 1}, {'n', 0, NULL, 0}, {'i', 0, NULL, 0},
                                 {'f', 0, NULL, 0}, {'B', 0, NULL, 0}, {'b', 0, "1", 1}};
    const fv_t bad_for_text[] = {{'u', 1, NULL, 0},      {'n', 0, NULL, 0},
                                 {'B', 0, NULL, 0},      {'f', 0, NULL, 0},
                                 {'s', 0, "", 0},        {'s', 0, "a\0b", 3},
                                 {'s', 0, too_long, PC_GOSSIP_MAX_NAME + 1}};
    int checked = 0;
    for (size_t t = 0; t < ARRAY_LEN(good); t++) {
        pc_gossip_packet_t pk;
        mp_t m;
        mp_packet1(&m, good[t].f, good[t].n);
        assert_int_equal(decode_mp(d, &m, &pk), 0);
        assert_int_equal(pk.nmsgs, 1);
        mp_destroy(&m);

        /* One field short. */
        mp_packet1(&m, good[t].f, good[t].n - 1);
        if (decode_mp(d, &m, &pk) != PC_EPROTO)
            fail_msg("%s with %zu fields decoded", good[t].name, good[t].n - 1);
        mp_destroy(&m);

        for (size_t i = 0; i < good[t].n; i++) {
            bool text = good[t].f[i].kind == 's';
            const fv_t *bad = text ? bad_for_text : bad_for_uint;
            size_t nbad = text ? ARRAY_LEN(bad_for_text) : ARRAY_LEN(bad_for_uint);
            for (size_t k = 0; k < nbad; k++) {
                fv_t f[6];
                memcpy(f, good[t].f, sizeof(f));
                f[i] = bad[k];
                mp_packet1(&m, f, good[t].n);
                int rc = decode_mp(d, &m, &pk);
                if (rc != PC_EPROTO)
                    fail_msg("%s field %zu as '%c' (%zu bytes): got %d", good[t].name, i,
                             bad[k].kind, bad[k].n, rc);
                mp_destroy(&m);
                checked++;
            }
        }
    }
    /* 32-bit fields refuse 2^32; incarnation takes the full 64 bits. */
    pc_gossip_packet_t pk;
    mp_t m;
    fv_t ack[] = {U(3), U(1ull << 32)};
    mp_packet1(&m, ack, 2);
    assert_int_equal(decode_mp(d, &m, &pk), PC_EPROTO);
    mp_destroy(&m);
    fv_t alive[] = {U(5), S("n"), U(UINT64_MAX), S("a:1"), S("g:1"), U(1ull << 32)};
    mp_packet1(&m, alive, 6);
    assert_int_equal(decode_mp(d, &m, &pk), PC_EPROTO);
    mp_destroy(&m);
    alive[5] = U(UINT32_MAX);
    mp_packet1(&m, alive, 6);
    assert_int_equal(decode_mp(d, &m, &pk), 0);
    assert_true(pk.msgs[0].incarnation == UINT64_MAX);
    mp_destroy(&m);
    print_message("wrong-type cases checked: %d\n", checked);
    assert_true(checked > 150);
}

static void test_huge_counts(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_packet_t pk;
    pc_gossip_state_t s;

    /* Headers that claim far more than the bytes hold. */
    static const uint8_t arr32[] = {0x93, 0x01, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x90};
    static const uint8_t top32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t str32[] = {0x93, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 0x90};
    static const uint8_t map32[] = {0x93, 0x01, 0xa1, 'a', 0x91, 0xdf, 0x7f, 0xff, 0xff, 0xff};
    static const uint8_t bin32[] = {0x93, 0x01, 0xa1, 'a', 0x91, 0x92, 0x03, 0xc6, 0xff, 0xff,
                                    0xff, 0xf0};
    static const uint8_t msg16[] = {0x93, 0x01, 0xa1, 'a', 0x91, 0xdc, 0xff, 0xff, 0x03};
    const uint8_t *lies[] = {arr32, top32, str32, map32, bin32, msg16};
    const size_t lens[] = {sizeof(arr32), sizeof(top32), sizeof(str32),
                           sizeof(map32), sizeof(bin32), sizeof(msg16)};
    for (size_t i = 0; i < ARRAY_LEN(lies); i++) {
        assert_int_equal(pc_gossip_decode_packet(d, lies[i], lens[i], &pk), PC_EPROTO);
        assert_int_equal(pc_gossip_decode_state(d, lies[i], lens[i], &s), PC_EPROTO);
    }

    /* Honest but over the limits. */
    mp_t m;
    mp_init(&m);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_uint32(&m.pk, 1);
    mp_str(&m, "a", 1);
    msgpack_pack_array(&m.pk, PC_GOSSIP_MAX_MSGS + 1);
    for (uint32_t i = 0; i <= PC_GOSSIP_MAX_MSGS; i++) {
        msgpack_pack_array(&m.pk, 2);
        msgpack_pack_uint32(&m.pk, PC_GOSSIP_ACK);
        msgpack_pack_uint32(&m.pk, i);
    }
    assert_int_equal(decode_mp(d, &m, &pk), PC_ETOOBIG);
    mp_destroy(&m);

    mp_init(&m);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_uint32(&m.pk, 1);
    mp_str(&m, "a", 1);
    msgpack_pack_array(&m.pk, PC_GOSSIP_MAX_NODES + 1);
    for (uint32_t i = 0; i <= PC_GOSSIP_MAX_NODES; i++) {
        msgpack_pack_array(&m.pk, 6);
        mp_str(&m, "n", 1);
        mp_str(&m, "a", 1);
        mp_str(&m, "g", 1);
        msgpack_pack_uint32(&m.pk, 1);
        msgpack_pack_uint32(&m.pk, 1);
        msgpack_pack_uint32(&m.pk, 0);
    }
    assert_int_equal(pc_gossip_decode_state(d, (const uint8_t *)m.sb.data, m.sb.size, &s),
                     PC_ETOOBIG);
    mp_destroy(&m);

    uint8_t *big = calloc(1, PC_GOSSIP_MAX_STATE + 1);
    assert_non_null(big);
    assert_int_equal(pc_gossip_decode_packet(d, big, PC_GOSSIP_MAX_PACKET + 1, &pk), PC_ETOOBIG);
    assert_int_equal(pc_gossip_decode_state(d, big, PC_GOSSIP_MAX_STATE + 1, &s), PC_ETOOBIG);
    free(big);
}

static void test_deep_nesting(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_packet_t pk;
    pc_gossip_state_t s;

    /* A field that is an array: depth 4. */
    static const uint8_t d4[] = {0x93, 0x01, 0xa1, 'a', 0x91, 0x92, 0x03, 0x90};
    assert_int_equal(pc_gossip_decode_packet(d, d4, sizeof(d4), &pk), PC_EPROTO);
    /* Depth 4 in an ignored trailing element counts too. */
    static const uint8_t d4t[] = {0x94, 0x01, 0xa1, 'a', 0x90, 0x91, 0x91, 0x91, 0x90};
    assert_int_equal(pc_gossip_decode_packet(d, d4t, sizeof(d4t), &pk), PC_EPROTO);
    static const uint8_t d3t[] = {0x94, 0x01, 0xa1, 'a', 0x90, 0x91, 0x91, 0x01};
    assert_int_equal(pc_gossip_decode_packet(d, d3t, sizeof(d3t), &pk), 0);

    /* 10,000 nested arrays: rejected at depth 4 without recursion. */
    size_t n = 10000;
    uint8_t *deep = malloc(n + 1);
    assert_non_null(deep);
    memset(deep, 0x91, n);
    deep[n] = 0x01;
    assert_int_equal(pc_gossip_decode_packet(d, deep, n + 1, &pk), PC_EPROTO);
    assert_int_equal(pc_gossip_decode_state(d, deep, n + 1, &s), PC_EPROTO);
    free(deep);
}

/* Every proper prefix of a good packet / state is malformed. */
static void test_truncated_everywhere(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_msg_t msgs[3] = {
        msg_alive("node-1", 300, "10.0.0.1:7400", "10.0.0.1:7946", 5),
        {.type = PC_GOSSIP_PING_REQ, .seq = 99999, .name = bs("node-2"),
         .gossip = bs("10.0.0.2:7946"), .nack_ms = 400},
        {.type = PC_GOSSIP_SUSPECT, .name = bs("node-3"), .incarnation = 1 << 20,
         .from = bs("node-1")},
    };
    pc_buf_t b;
    build_packet(&b, "node-1", msgs, 3);
    pc_gossip_packet_t pk;
    for (size_t len = 0; len < b.len; len++) {
        /* A copy of exactly len bytes, so ASan sees any read past it. */
        uint8_t *cut = malloc(len + 1);
        assert_non_null(cut);
        memcpy(cut, b.data, len);
        assert_int_equal(pc_gossip_decode_packet(d, cut, len, &pk), PC_EPROTO);
        free(cut);
    }
    assert_int_equal(pc_gossip_decode_packet(d, b.data, b.len, &pk), 0);
    pc_buf_free(&b);

    pc_gossip_node_t nodes[2] = {
        {bs("a"), bs("10.0.0.1:7400"), bs("10.0.0.1:7946"), 1, 0, 1ull << 33},
        {bs("bb"), bs("10.0.0.2:7400"), bs("10.0.0.2:7946"), 9, 3, 2},
    };
    pc_buf_init(&b, 0);
    assert_int_equal(pc_gossip_encode_state(&b, bs("a"), nodes, 2), 0);
    pc_gossip_state_t s;
    for (size_t len = 0; len < b.len; len++) {
        uint8_t *cut = malloc(len + 1);
        assert_non_null(cut);
        memcpy(cut, b.data, len);
        assert_int_equal(pc_gossip_decode_state(d, cut, len, &s), PC_EPROTO);
        free(cut);
    }
    pc_buf_free(&b);
}

static uint64_t rng_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static bool text_valid(pc_bytes_t b, const uint8_t *base, size_t len)
{
    return b.len >= 1 && b.len <= 255 && b.ptr >= base && b.ptr + b.len <= base + len &&
           memchr(b.ptr, 0, b.len) == NULL;
}

/*
 * Random corruption of good packets and states: flips, truncations,
 * insertions. Whatever decodes must satisfy the contract (text fields
 * inside the input, non-empty, NUL-free, counts within limits).
 */
static void test_mutations(void **state)
{
    pc_gossip_decoder_t *d = *state;
    pc_gossip_msg_t msgs[4] = {
        msg_alive("node-1", 300, "10.0.0.1:7400", "10.0.0.1:7946", 5),
        {.type = PC_GOSSIP_PING, .seq = 4, .name = bs("node-2")},
        {.type = PC_GOSSIP_DEAD, .name = bs("node-3"), .incarnation = 8, .from = bs("n")},
        {.type = PC_GOSSIP_NACK, .seq = 77},
    };
    pc_buf_t good;
    build_packet(&good, "node-1", msgs, 4);
    pc_gossip_node_t nodes[2] = {
        {bs("a"), bs("10.0.0.1:7400"), bs("10.0.0.1:7946"), 1, 0, 5},
        {bs("bb"), bs("10.0.0.2:7400"), bs("10.0.0.2:7946"), 9, 3, 2},
    };
    pc_buf_t goods;
    pc_buf_init(&goods, 0);
    assert_int_equal(pc_gossip_encode_state(&goods, bs("a"), nodes, 2), 0);

    uint64_t seed = 12345;
    uint8_t buf[512];
    int ok_packets = 0, ok_states = 0;
    for (int iter = 0; iter < 100000; iter++) {
        bool is_state = iter & 1;
        const pc_buf_t *src = is_state ? &goods : &good;
        size_t len = src->len;
        memcpy(buf, src->data, len);
        int edits = 1 + (int)(rng_next(&seed) % 4);
        for (int e = 0; e < edits; e++) {
            uint64_t r = rng_next(&seed);
            size_t pos = (size_t)(r >> 8) % len;
            switch (r % 4) {
            case 0:
                buf[pos] ^= (uint8_t)(1u << ((r >> 40) % 8));
                break;
            case 1:
                buf[pos] = (uint8_t)(r >> 48);
                break;
            case 2:
                if (len > 1)
                    len = pos + 1;
                break;
            default:
                if (len < sizeof(buf)) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = (uint8_t)(r >> 32);
                    len++;
                }
                break;
            }
        }
        uint8_t *cut = malloc(len);
        assert_non_null(cut);
        memcpy(cut, buf, len);
        if (!is_state) {
            pc_gossip_packet_t pk;
            int rc = pc_gossip_decode_packet(d, cut, len, &pk);
            assert_true(rc == 0 || rc == PC_EPROTO || rc == PC_ETOOBIG);
            if (rc == 0) {
                ok_packets++;
                assert_true(text_valid(pk.sender, cut, len));
                assert_true(pk.nmsgs <= PC_GOSSIP_MAX_MSGS);
                for (uint32_t i = 0; i < pk.nmsgs; i++) {
                    const pc_gossip_msg_t *g = &pk.msgs[i];
                    assert_true(g->type >= 1 && g->type <= PC_GOSSIP_TYPE_MAX);
                    if (g->name.len > 0)
                        assert_true(text_valid(g->name, cut, len));
                    if (g->from.len > 0)
                        assert_true(text_valid(g->from, cut, len));
                    if (g->addr.len > 0)
                        assert_true(text_valid(g->addr, cut, len));
                }
            }
        } else {
            pc_gossip_state_t s;
            int rc = pc_gossip_decode_state(d, cut, len, &s);
            assert_true(rc == 0 || rc == PC_EPROTO || rc == PC_ETOOBIG);
            if (rc == 0) {
                ok_states++;
                for (uint32_t i = 0; i < s.nnodes; i++) {
                    assert_true(text_valid(s.nodes[i].name, cut, len));
                    assert_true(text_valid(s.nodes[i].gossip, cut, len));
                    assert_true(s.nodes[i].state <= PC_GOSSIP_ST_MAX);
                }
            }
        }
        free(cut);
    }
    print_message("mutations: %d packets and %d states still decoded (of 50000 each)\n",
                  ok_packets, ok_states);
    pc_buf_free(&good);
    pc_buf_free(&goods);
}

/*
 * What a decode may hold at its peak, for the worst inputs within the
 * limits: a 64 KiB packet whose ignored trailing element is 60,000
 * values (unpacking the whole tree would take ~1.4 MiB), a packet of 256
 * messages of 16 fields, and a 4 MiB state.
 */
static void test_bounded_alloc(void **state)
{
#ifdef PC_TEST_SANITIZED
    (void)state;
    skip();
#else
    pc_gossip_decoder_t *d = *state;
    pc_gossip_packet_t pk;
    pc_gossip_state_t s;

    /* Warm the decoder's scratch so the measurement shows per-decode cost
     * plus, separately, the scratch itself. */
    mp_t m;
    mp_init(&m);
    msgpack_pack_array(&m.pk, 4);
    msgpack_pack_uint32(&m.pk, 1);
    mp_str(&m, "a", 1);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_uint32(&m.pk, PC_GOSSIP_ACK);
    msgpack_pack_uint32(&m.pk, 1);
    msgpack_pack_array(&m.pk, 60000);
    for (int i = 0; i < 60000; i++)
        msgpack_pack_uint32(&m.pk, 1);
    assert_true(m.sb.size <= PC_GOSSIP_MAX_PACKET);
    alloc_reset();
    assert_int_equal(decode_mp(d, &m, &pk), 0);
    long long peak1 = alloc_peak_bytes();
    assert_int_equal(pk.nmsgs, 1);
    mp_destroy(&m);

    mp_init(&m);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_uint32(&m.pk, 1);
    mp_str(&m, "a", 1);
    msgpack_pack_array(&m.pk, PC_GOSSIP_MAX_MSGS);
    for (uint32_t i = 0; i < PC_GOSSIP_MAX_MSGS; i++) {
        msgpack_pack_array(&m.pk, PC_GOSSIP_MAX_FIELDS);
        msgpack_pack_uint32(&m.pk, PC_GOSSIP_ACK);
        for (uint32_t k = 1; k < PC_GOSSIP_MAX_FIELDS; k++)
            msgpack_pack_uint32(&m.pk, k);
    }
    alloc_reset();
    assert_int_equal(decode_mp(d, &m, &pk), 0);
    long long peak2 = alloc_peak_bytes();
    assert_int_equal(pk.nmsgs, PC_GOSSIP_MAX_MSGS);
    mp_destroy(&m);

    /* A 4 MiB state: 4096 nodes with long fields, after a large trailing
     * element that is never unpacked. */
    static char f[201];
    memset(f, 'q', 200);
    mp_init(&m);
    msgpack_pack_array(&m.pk, 4);
    msgpack_pack_uint32(&m.pk, 1);
    mp_str(&m, "a", 1);
    msgpack_pack_array(&m.pk, PC_GOSSIP_MAX_NODES);
    for (uint32_t i = 0; i < PC_GOSSIP_MAX_NODES; i++) {
        msgpack_pack_array(&m.pk, 6);
        char name[16];
        int nl = snprintf(name, sizeof(name), "n%u", i);
        mp_str(&m, name, (size_t)nl);
        mp_str(&m, f, 200);
        mp_str(&m, f, 200);
        msgpack_pack_uint32(&m.pk, 1);
        msgpack_pack_uint32(&m.pk, 1);
        msgpack_pack_uint32(&m.pk, 0);
    }
    size_t room = PC_GOSSIP_MAX_STATE - m.sb.size - 8;
    msgpack_pack_array(&m.pk, (uint32_t)room);
    for (size_t i = 0; i < room; i++)
        msgpack_pack_uint32(&m.pk, 1);
    assert_true(m.sb.size <= PC_GOSSIP_MAX_STATE);
    alloc_reset();
    assert_int_equal(pc_gossip_decode_state(d, (const uint8_t *)m.sb.data, m.sb.size, &s), 0);
    long long peak3 = alloc_peak_bytes();
    assert_int_equal(s.nnodes, PC_GOSSIP_MAX_NODES);
    mp_destroy(&m);

    print_message("peak bytes held while decoding: 64 KiB packet with 60k ignored values %lld, "
                  "256 x 16-field msgs %lld, 4 MiB state of 4096 nodes %lld\n",
                  peak1, peak2, peak3);
    /* Message scratch (256 x 80 B) + one msgpack zone (8 KiB chunk). */
    assert_true(peak1 <= 64 * 1024);
    assert_true(peak2 <= 64 * 1024);
    /* Node scratch (4096 x 72 B) + one zone. */
    assert_true(peak3 <= 512 * 1024);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test_setup_teardown(test_roundtrip_all_types, setup_decoder,
                                        teardown_decoder),
        cmocka_unit_test_setup_teardown(test_writer_limit, setup_decoder, teardown_decoder),
        cmocka_unit_test_setup_teardown(test_writer_max_msgs, setup_decoder, teardown_decoder),
        cmocka_unit_test(test_writer_invalid),
        cmocka_unit_test_setup_teardown(test_state_roundtrip, setup_decoder, teardown_decoder),
        cmocka_unit_test(test_state_encode_errors),
        cmocka_unit_test_setup_teardown(test_forward_compat, setup_decoder, teardown_decoder),
        cmocka_unit_test_setup_teardown(test_malformed_structure, setup_decoder,
                                        teardown_decoder),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup_decoder, teardown_decoder),
        cmocka_unit_test_setup_teardown(test_huge_counts, setup_decoder, teardown_decoder),
        cmocka_unit_test_setup_teardown(test_deep_nesting, setup_decoder, teardown_decoder),
        cmocka_unit_test_setup_teardown(test_truncated_everywhere, setup_decoder,
                                        teardown_decoder),
        cmocka_unit_test_setup_teardown(test_mutations, setup_decoder, teardown_decoder),
        cmocka_unit_test_setup_teardown(test_bounded_alloc, setup_decoder, teardown_decoder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
