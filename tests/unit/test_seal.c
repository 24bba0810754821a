/*
 * test_seal.c -- unit tests for proto/pc_seal: keyring parsing and files,
 * sealing and opening, and the replay filter.
 *
 * Sealed messages are checked from the outside: the bytes of the header
 * against pc_seal.h, every single-byte change and every truncation must
 * fail to open with the code that names the reason. The key id is pinned
 * to vectors computed independently (Python's hashlib.blake2b), so a
 * change of its definition fails here. The replay filter is checked case
 * by case and against a plain model that remembers every accepted seq.
 * All times are parameters: no test sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "pc_buf.h"
#include "pc_error.h"
#include "pc_proto.h"
#include "pc_proto_reader.h"
#include "pc_seal.h"

/* Keys as a key file spells them. */
#define KEY_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEY_B "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
#define KEY_C "8f2b0e6ad1c34f0e9b7a55e4c1d2f3a4b5c6d7e8f90112233445566778899aab"
/* blake2b("peercache key id" || key, 32 bytes)[0..4], from hashlib. */
#define ID_A 0x4289bc6cu
#define ID_B 0xbb7adfc6u

static pc_keyring_t *ring(const char *text)
{
    pc_keyring_t *kr = NULL;
    char err[256] = "";
    int rc = pc_keyring_parse(text, strlen(text), &kr, err, sizeof(err));

    if (rc != 0)
        fail_msg("pc_keyring_parse: %s: %s", pc_errname(rc), err);
    return kr;
}

static int setup(void **state)
{
    (void)state;
    return pc_seal_init();
}

/* ---- key ids ------------------------------------------------------------ */

static void test_key_id_vectors(void **state)
{
    (void)state;
    uint8_t key[PC_SEAL_KEYBYTES];

    for (int i = 0; i < PC_SEAL_KEYBYTES; i++)
        key[i] = (uint8_t)i;
    assert_int_equal(pc_seal_key_id(key), ID_A);
    memset(key, 0xff, sizeof(key));
    assert_int_equal(pc_seal_key_id(key), ID_B);

    pc_keyring_t *kr = ring(KEY_A "\n" KEY_B "\n");
    assert_int_equal(pc_keyring_count(kr), 2);
    assert_int_equal(pc_keyring_id(kr, 0), ID_A);
    assert_int_equal(pc_keyring_id(kr, 1), ID_B);
    assert_int_equal(pc_keyring_id(kr, 2), 0);
    pc_keyring_free(&kr);
    assert_null(kr);
    pc_keyring_free(&kr); /* NULL-safe */
    pc_keyring_free(NULL);
}

/* ---- keyring text --------------------------------------------------------- */

static void parse_fails(const char *text, size_t len, const char *want)
{
    pc_keyring_t *kr = (pc_keyring_t *)&kr; /* must come back NULL */
    char err[256] = "";
    int rc = pc_keyring_parse(text, len, &kr, err, sizeof(err));

    assert_int_equal(rc, PC_EINVAL);
    assert_null(kr);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' does not contain '%s'", err, want);
    /* A message never quotes key material. */
    assert_null(strstr(err, "0a0b0c"));
    assert_null(strstr(err, "ffffffff"));
}

static void test_parse_accepts(void **state)
{
    (void)state;
    /* Comments (also indented), blank lines, blanks around keys, CRLF,
     * upper case, and no newline after the last key. */
    static const char text[] = "# cluster key\n"
                               "\n"
                               "   # indented comment\n"
                               "\t " KEY_B "  \r\n"
                               "\r\n"
                               "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
    pc_keyring_t *kr = NULL;

    assert_int_equal(pc_keyring_parse(text, strlen(text), &kr, NULL, 0), 0);
    assert_int_equal(pc_keyring_count(kr), 2);
    assert_int_equal(pc_keyring_id(kr, 0), ID_B);
    assert_int_equal(pc_keyring_id(kr, 1), ID_A);
    pc_keyring_free(&kr);

    /* Text need not be NUL-terminated: only len bytes count. */
    char buf[2 * 65];
    memcpy(buf, KEY_A "\n" KEY_B "\n", sizeof(buf));
    assert_int_equal(pc_keyring_parse(buf, 65, &kr, NULL, 0), 0);
    assert_int_equal(pc_keyring_count(kr), 1);
    assert_int_equal(pc_keyring_id(kr, 0), ID_A);
    pc_keyring_free(&kr);

    /* Exactly PC_KEYRING_MAX keys is fine. */
    char many[PC_KEYRING_MAX * 66 + 1];
    size_t n = 0;
    uint32_t ids[PC_KEYRING_MAX];
    for (int i = 0; i < PC_KEYRING_MAX; i++) {
        pc_keyring_new_key_line(many + n, &ids[i]);
        n += 65;
    }
    assert_int_equal(pc_keyring_parse(many, n, &kr, NULL, 0), 0);
    assert_int_equal(pc_keyring_count(kr), PC_KEYRING_MAX);
    for (int i = 0; i < PC_KEYRING_MAX; i++)
        assert_int_equal(pc_keyring_id(kr, (size_t)i), ids[i]);
    pc_keyring_free(&kr);
}

static void test_parse_errors(void **state)
{
    (void)state;
    char text[PC_KEYRING_MAX * 66 + 200];
    uint32_t id;
    size_t n;

    /* bad hex: 'g' as the 10th character of the key on line 2 */
    snprintf(text, sizeof(text), "# x\n%.9sg%s\n", KEY_A, &KEY_A[10]);
    parse_fails(text, strlen(text), "line 2: expected 64 hex digits; character 10 is not one");
    /* a NUL byte inside a key */
    memcpy(text, KEY_A "\n", 66);
    text[5] = '\0';
    parse_fails(text, 65, "line 1: expected 64 hex digits; character 6 is not one");
    /* short and long lines */
    snprintf(text, sizeof(text), "\n\n%.63s\n", KEY_A);
    parse_fails(text, strlen(text), "line 3: expected 64 hex digits, found 63 characters");
    snprintf(text, sizeof(text), "%s0\n", KEY_A);
    parse_fails(text, strlen(text), "line 1: expected 64 hex digits, found 65 characters");
    /* two keys on one line */
    snprintf(text, sizeof(text), "%s %s\n", KEY_A, KEY_B);
    parse_fails(text, strlen(text), "line 1: expected 64 hex digits, found 129 characters");
    /* a trailing comment is not a comment */
    snprintf(text, sizeof(text), "%s # primary\n", KEY_A);
    parse_fails(text, strlen(text), "line 1: expected 64 hex digits, found 74 characters");
    /* duplicate, also when spelled in another case */
    snprintf(text, sizeof(text), "%s\n%s\n# c\n%s\n", KEY_A, KEY_B, KEY_A);
    parse_fails(text, strlen(text), "line 4: the same key as line 1");
    snprintf(text, sizeof(text), "%s\n%s\n", KEY_B, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                                                   "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF");
    parse_fails(text, strlen(text), "line 2: the same key as line 1");
    /* too many: the 17th key, on line 18 after a comment */
    n = (size_t)snprintf(text, sizeof(text), "# many\n");
    for (int i = 0; i <= PC_KEYRING_MAX; i++) {
        pc_keyring_new_key_line(text + n, &id);
        n += 65;
    }
    parse_fails(text, n, "line 18: more than 16 keys");
    /* no key at all */
    parse_fails("", 0, "no key");
    parse_fails("\n\n  \n", 5, "no key");
    parse_fails("# only\n# comments\n", 18, "no key");

    /* err may be NULL, or too short: still the right code. */
    pc_keyring_t *kr = NULL;
    char tiny[8];
    assert_int_equal(pc_keyring_parse("x", 1, &kr, NULL, 0), PC_EINVAL);
    assert_int_equal(pc_keyring_parse("x", 1, &kr, tiny, sizeof(tiny)), PC_EINVAL);
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

static int cmp_id(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x >> 32, b = *(const uint64_t *)y >> 32;
    return a < b ? -1 : a > b;
}

/* Two different keys whose ids collide: found by a birthday search over
 * keys from a fixed seed (about 200,000 of them give a collision with
 * probability 99%; with this seed one is found, always the same). */
static int find_id_collision(uint8_t a[PC_SEAL_KEYBYTES], uint8_t b[PC_SEAL_KEYBYTES])
{
    enum { N = 200000 };
    static const uint8_t seed[randombytes_SEEDBYTES] = "peercache collision seed 000001";
    uint8_t *keys = malloc((size_t)N * PC_SEAL_KEYBYTES);
    uint64_t *ent = malloc(N * sizeof(*ent));
    int found = 0;

    assert_non_null(keys);
    assert_non_null(ent);
    randombytes_buf_deterministic(keys, (size_t)N * PC_SEAL_KEYBYTES, seed);
    for (uint32_t i = 0; i < N; i++)
        ent[i] = (uint64_t)pc_seal_key_id(keys + (size_t)i * PC_SEAL_KEYBYTES) << 32 | i;
    qsort(ent, N, sizeof(*ent), cmp_id); /* by id, the high half */
    for (size_t i = 1; i < N && !found; i++) {
        if (ent[i] >> 32 == ent[i - 1] >> 32) {
            memcpy(a, keys + (ent[i - 1] & 0xffffffffu) * PC_SEAL_KEYBYTES, PC_SEAL_KEYBYTES);
            memcpy(b, keys + (ent[i] & 0xffffffffu) * PC_SEAL_KEYBYTES, PC_SEAL_KEYBYTES);
            found = 1;
        }
    }
    free(keys);
    free(ent);
    return found;
}

static void key_text(char out[66], const uint8_t key[PC_SEAL_KEYBYTES])
{
    sodium_bin2hex(out, 65, key, PC_SEAL_KEYBYTES);
    out[64] = '\n';
    out[65] = '\0';
}

/* ---- sealing ---------------------------------------------------------------- */

/* Seals payload with a fresh stream into *out (reset first). */
static void seal_one(const pc_keyring_t *kr, uint8_t kind, uint64_t now, const void *payload,
                     size_t len, pc_buf_t *out, pc_seal_stream_t *st)
{
    pc_buf_reset(out);
    pc_seal_stream_init(st);
    assert_int_equal(pc_seal(kr, st, kind, now, payload, len, out), 0);
    assert_int_equal(out->len, PC_SEAL_OVERHEAD + len);
}

static void test_roundtrip_every_kind(void **state)
{
    (void)state;
    pc_keyring_t *kr = ring(KEY_A "\n" KEY_B "\n");
    static const uint8_t kinds[] = {PC_SEAL_GOSSIP, PC_SEAL_PEER_REQ, PC_SEAL_PEER_RESP};
    /* 0 and 1 bytes, and sizes either side of the stack scratch. */
    static const size_t sizes[] = {0, 1, 100, 2048 - PC_SEAL_INNER, 2049 - PC_SEAL_INNER, 70000};
    uint8_t *payload = malloc(70000);
    pc_buf_t out;
    pc_seal_stream_t st;

    assert_non_null(payload);
    randombytes_buf(payload, 70000);
    pc_buf_init(&out, 0);
    pc_seal_stream_init(&st);
    assert_true(st.id != 0);
    assert_int_equal(st.seq, 0);

    uint64_t seq = 0;
    for (size_t k = 0; k < sizeof(kinds); k++) {
        for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
            uint64_t now = 1700000000000ull + k * 1000 + z;
            pc_seal_opened_t o;

            pc_buf_reset(&out);
            assert_int_equal(pc_seal(kr, &st, kinds[k], now, payload, sizes[z], &out), 0);
            assert_int_equal(st.seq, ++seq);
            assert_int_equal(out.len, PC_SEAL_OVERHEAD + sizes[z]);
            /* the clear header, byte by byte */
            assert_int_equal(out.data[0], 0xC1);
            assert_int_equal(out.data[1], PC_SEAL_VERSION);
            assert_int_equal(out.data[2], kinds[k]);
            assert_memory_equal(out.data + 3, "\x42\x89\xbc\x6c", 4);
            assert_true(pc_seal_is_sealed(out.data, out.len));
            /* the payload is not in the clear */
            if (sizes[z] >= 16)
                assert_memory_not_equal(out.data + 55, payload, 16);

            assert_int_equal(pc_seal_open(kr, out.data, out.len, &o), 0);
            assert_int_equal(o.kind, kinds[k]);
            assert_int_equal(o.key_id, ID_A);
            assert_int_equal(o.stream, st.id);
            assert_int_equal(o.seq, seq);
            assert_int_equal(o.ts_ms, now);
            assert_int_equal(o.len, sizes[z]);
            assert_ptr_equal(o.payload, out.data + PC_SEAL_OVERHEAD - PC_SEAL_TAG);
            if (sizes[z] > 0)
                assert_memory_equal(o.payload, payload, sizes[z]);
        }
    }

    /* Two seals of the same bytes differ (fresh nonce), and both open. */
    pc_buf_t b2;
    pc_buf_init(&b2, 0);
    pc_buf_reset(&out);
    assert_int_equal(pc_seal(kr, &st, PC_SEAL_GOSSIP, 5, payload, 32, &out), 0);
    assert_int_equal(pc_seal(kr, &st, PC_SEAL_GOSSIP, 5, payload, 32, &b2), 0);
    assert_memory_not_equal(out.data + 7, b2.data + 7, PC_SEAL_NONCE);
    /* pc_seal appends: a second message after the first */
    size_t first = out.len;
    assert_int_equal(pc_seal(kr, &st, PC_SEAL_GOSSIP, 5, payload, 10, &out), 0);
    assert_int_equal(out.len, first + PC_SEAL_OVERHEAD + 10);
    pc_seal_opened_t o;
    assert_int_equal(pc_seal_open(kr, out.data + first, out.len - first, &o), 0);
    assert_int_equal(o.len, 10);
    assert_int_equal(pc_seal_open(kr, out.data, first, &o), 0);
    assert_int_equal(o.len, 32);

    assert_false(pc_seal_is_sealed(out.data, 0));
    assert_false(pc_seal_is_sealed((const uint8_t *)"\x93\x01", 2));

    pc_buf_free(&out);
    pc_buf_free(&b2);
    free(payload);
    pc_keyring_free(&kr);
}

/* Every byte flipped (two ways), every truncation, one byte more: never
 * 0, and the code says why. */
static void test_every_byte_flipped(void **state)
{
    (void)state;
    pc_keyring_t *kr = ring(KEY_A "\n");
    pc_buf_t msg;
    pc_seal_stream_t st;
    uint8_t payload[40];
    uint8_t copy[PC_SEAL_OVERHEAD + sizeof(payload) + 1];
    pc_seal_opened_t o;

    pc_buf_init(&msg, 0);
    memset(payload, 'p', sizeof(payload));
    seal_one(kr, PC_SEAL_PEER_REQ, 1000, payload, sizeof(payload), &msg, &st);

    for (size_t i = 0; i < msg.len; i++) {
        static const uint8_t masks[] = {0x01, 0x80};
        for (size_t m = 0; m < sizeof(masks); m++) {
            int want = i < 2 ? PC_EPROTO : i >= 3 && i < 7 ? PC_ENOKEY : PC_EAUTH;

            memcpy(copy, msg.data, msg.len);
            copy[i] ^= masks[m];
            int rc = pc_seal_open(kr, copy, msg.len, &o);
            if (rc != want)
                fail_msg("byte %zu ^ %02x: %s, expected %s", i, masks[m], pc_errname(rc),
                         pc_errname(want));
            assert_null(o.payload);
        }
    }
    for (size_t n = 0; n < msg.len; n++) {
        memcpy(copy, msg.data, msg.len);
        int want = n < PC_SEAL_OVERHEAD ? PC_EPROTO : PC_EAUTH;
        assert_int_equal(pc_seal_open(kr, copy, n, &o), want);
    }
    memcpy(copy, msg.data, msg.len);
    copy[msg.len] = 0;
    assert_int_equal(pc_seal_open(kr, copy, msg.len + 1, &o), PC_EAUTH);
    /* and the untouched copy still opens */
    memcpy(copy, msg.data, msg.len);
    assert_int_equal(pc_seal_open(kr, copy, msg.len, &o), 0);
    assert_memory_equal(o.payload, payload, sizeof(payload));

    pc_buf_free(&msg);
    pc_keyring_free(&kr);
}

static void test_rotation(void **state)
{
    (void)state;
    pc_keyring_t *old_only = ring(KEY_A "\n");
    pc_keyring_t *both = ring(KEY_B "\n" KEY_A "\n"); /* [new, old] */
    pc_keyring_t *new_only = ring(KEY_B "\n");
    pc_keyring_t *other = ring(KEY_C "\n");
    pc_buf_t msg;
    pc_seal_stream_t st;
    pc_seal_opened_t o;
    uint8_t copy[PC_SEAL_OVERHEAD + 5];

    pc_buf_init(&msg, 0);
    /* step 1: a node still on [old] talks to one on [new, old] */
    seal_one(old_only, PC_SEAL_GOSSIP, 1, "hello", 5, &msg, &st);
    memcpy(copy, msg.data, msg.len);
    assert_int_equal(pc_seal_open(both, copy, msg.len, &o), 0);
    assert_int_equal(o.key_id, ID_A);
    assert_memory_equal(o.payload, "hello", 5);
    /* and back: [new, old] seals with new, which [old] cannot open ... */
    seal_one(both, PC_SEAL_GOSSIP, 1, "hello", 5, &msg, &st);
    assert_memory_equal(msg.data + 3, "\xbb\x7a\xdf\xc6", 4);
    memcpy(copy, msg.data, msg.len);
    assert_int_equal(pc_seal_open(old_only, copy, msg.len, &o), PC_ENOKEY);
    assert_int_equal(pc_seal_open(other, copy, msg.len, &o), PC_ENOKEY);
    /* ... which is why `keyring use` waits until every node holds it:
     * [new, old] opens it, and so does [new] after `keyring remove`. */
    memcpy(copy, msg.data, msg.len);
    assert_int_equal(pc_seal_open(both, copy, msg.len, &o), 0);
    assert_int_equal(o.key_id, ID_B);
    memcpy(copy, msg.data, msg.len);
    assert_int_equal(pc_seal_open(new_only, copy, msg.len, &o), 0);
    assert_memory_equal(o.payload, "hello", 5);

    pc_buf_free(&msg);
    pc_keyring_free(&old_only);
    pc_keyring_free(&both);
    pc_keyring_free(&new_only);
    pc_keyring_free(&other);
}

static void test_forged_key_id(void **state)
{
    (void)state;
    uint8_t a[PC_SEAL_KEYBYTES], b[PC_SEAL_KEYBYTES];
    char ta[66], tb[66], both[140];
    pc_buf_t msg;
    pc_seal_stream_t st;
    pc_seal_opened_t o;

    assert_true(find_id_collision(a, b));
    assert_memory_not_equal(a, b, PC_SEAL_KEYBYTES);
    assert_int_equal(pc_seal_key_id(a), pc_seal_key_id(b));

    key_text(ta, a);
    key_text(tb, b);
    pc_keyring_t *ra = ring(ta);
    pc_keyring_t *rb = ring(tb);
    pc_buf_init(&msg, 0);
    seal_one(ra, PC_SEAL_PEER_RESP, 7, "secret", 6, &msg, &st);
    assert_int_equal(pc_seal_open(rb, msg.data, msg.len, &o), PC_EAUTH);

    /* A ring cannot hold both: the id would not say which key opens. */
    snprintf(both, sizeof(both), "%s%s", ta, tb);
    char err[256];
    pc_keyring_t *kr = NULL;
    assert_int_equal(pc_keyring_parse(both, strlen(both), &kr, err, sizeof(err)), PC_EINVAL);
    assert_non_null(strstr(err, "line 2: key id"));
    assert_non_null(strstr(err, "also the id of the key on line 1"));

    /* Rewriting a message's key id to another key's fails too: the
     * header is authenticated. */
    pc_keyring_t *ab = ring(KEY_A "\n" KEY_B "\n");
    seal_one(ab, PC_SEAL_PEER_RESP, 7, "secret", 6, &msg, &st);
    memcpy(msg.data + 3, "\xbb\x7a\xdf\xc6", 4);
    assert_int_equal(pc_seal_open(ab, msg.data, msg.len, &o), PC_EAUTH);

    pc_buf_free(&msg);
    pc_keyring_free(&ra);
    pc_keyring_free(&rb);
    pc_keyring_free(&ab);
}

static void put_frame(pc_buf_t *b, const void *body, uint32_t len)
{
    uint8_t pre[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    assert_int_equal(pc_buf_append(b, pre, 4), 0);
    assert_int_equal(pc_buf_append(b, body, len), 0);
}

static void test_seal_frame_in_place(void **state)
{
    (void)state;
    pc_keyring_t *kr = ring(KEY_A "\n");
    pc_buf_t out;
    pc_seal_stream_t st;
    pc_request_t req = {.op = PC_OP_GET, .id = 42, .key = {(const uint8_t *)"k1", 2}};

    /* Two plain frames, then the one to seal: a real request, and a body
     * large enough that the buffer must grow. */
    pc_buf_init(&out, 0);
    assert_int_equal(pc_proto_encode_request(&out, &req), 0);
    req.id = 43;
    assert_int_equal(pc_proto_encode_request(&out, &req), 0);
    size_t start = out.len;
    uint8_t value[3000];
    memset(value, 'v', sizeof(value));
    pc_request_t set = {.op = PC_OP_SET,
                        .id = 44,
                        .key = {(const uint8_t *)"big", 3},
                        .value = {value, sizeof(value)}};
    assert_int_equal(pc_proto_encode_request(&out, &set), 0);
    size_t body_len = out.len - start - 4;
    uint8_t *before = malloc(out.len);
    assert_non_null(before);
    memcpy(before, out.data, out.len);
    size_t old_len = out.len;

    pc_seal_stream_init(&st);
    assert_int_equal(pc_seal_frame(kr, &st, PC_SEAL_PEER_REQ, 99, &out, start), 0);
    assert_int_equal(st.seq, 1);
    assert_int_equal(out.len, old_len + PC_SEAL_OVERHEAD);
    assert_memory_equal(out.data, before, start); /* earlier frames untouched */

    /* It reads as three frames; the third is sealed and opens to the
     * original body, which decodes as the original request. */
    pc_proto_reader_t rd;
    const uint8_t *body;
    uint32_t len;
    pc_proto_reader_init(&rd, 0);
    assert_int_equal(pc_proto_reader_feed(&rd, out.data, out.len), 0);
    assert_int_equal(pc_proto_reader_next(&rd, &body, &len), 1);
    assert_int_equal(pc_proto_reader_next(&rd, &body, &len), 1);
    assert_int_equal(pc_proto_reader_next(&rd, &body, &len), 1);
    assert_int_equal(len, body_len + PC_SEAL_OVERHEAD);
    assert_int_equal(pc_proto_reader_next(&rd, &body, &len), 0);
    pc_proto_reader_free(&rd);

    pc_seal_opened_t o;
    uint8_t *sealed = out.data + start + 4;
    assert_true(pc_seal_is_sealed(sealed, body_len + PC_SEAL_OVERHEAD));
    assert_int_equal(pc_seal_open(kr, sealed, body_len + PC_SEAL_OVERHEAD, &o), 0);
    assert_int_equal(o.kind, PC_SEAL_PEER_REQ);
    assert_int_equal(o.seq, 1);
    assert_int_equal(o.ts_ms, 99);
    assert_int_equal(o.len, body_len);
    assert_memory_equal(o.payload, before + start + 4, body_len);
    pc_proto_decoder_t *dec;
    pc_request_t got;
    assert_int_equal(pc_proto_decoder_new(NULL, &dec), 0);
    assert_int_equal(pc_proto_decode_request(dec, o.payload, o.len, &got), 0);
    assert_int_equal(got.id, 44);
    assert_int_equal(got.value.len, sizeof(value));
    pc_proto_decoder_free(&dec);

    /* Not one whole frame: refused, nothing changes. */
    free(before);
    before = malloc(out.len);
    assert_non_null(before);
    memcpy(before, out.data, out.len);
    old_len = out.len;
    assert_int_equal(pc_seal_frame(kr, &st, 1, 99, &out, out.len + 1), PC_EINVAL);
    assert_int_equal(pc_seal_frame(kr, &st, 1, 99, &out, out.len - 3), PC_EINVAL);
    assert_int_equal(pc_seal_frame(kr, &st, 1, 99, &out, 0), PC_EINVAL); /* three frames */
    assert_int_equal(pc_seal_frame(kr, &st, 1, 99, &out, start + 1), PC_EINVAL);
    assert_int_equal(out.len, old_len);
    assert_memory_equal(out.data, before, old_len);
    assert_int_equal(st.seq, 1);

    /* A capped buffer: PC_ETOOBIG, the frame as it was. */
    pc_buf_t capped;
    pc_buf_init(&capped, 4 + 10 + PC_SEAL_OVERHEAD - 1);
    put_frame(&capped, "0123456789", 10);
    assert_int_equal(pc_seal_frame(kr, &st, 1, 99, &capped, 0), PC_ETOOBIG);
    assert_int_equal(capped.len, 14);
    assert_memory_equal(capped.data, "\0\0\0\x0a" "0123456789", 14);
    assert_int_equal(st.seq, 1);
    capped.max++;
    assert_int_equal(pc_seal_frame(kr, &st, 1, 99, &capped, 0), 0);
    assert_int_equal(capped.len, capped.max);
    assert_int_equal(st.seq, 2);

    pc_buf_free(&capped);
    free(before);
    pc_buf_free(&out);
    pc_keyring_free(&kr);
}

static void test_seal_capped_buffer(void **state)
{
    (void)state;
    pc_keyring_t *kr = ring(KEY_A "\n");
    pc_buf_t out;
    pc_seal_stream_t st;

    pc_buf_init(&out, 20 + PC_SEAL_OVERHEAD + 99);
    assert_int_equal(pc_buf_append(&out, "twenty bytes already", 20), 0);
    pc_seal_stream_init(&st);
    uint8_t payload[100] = {0};
    assert_int_equal(pc_seal(kr, &st, PC_SEAL_GOSSIP, 1, payload, 100, &out), PC_ETOOBIG);
    assert_int_equal(out.len, 20);
    assert_int_equal(st.seq, 0);
    assert_int_equal(pc_seal(kr, &st, PC_SEAL_GOSSIP, 1, payload, 99, &out), 0);
    assert_int_equal(out.len, out.max);
    assert_int_equal(st.seq, 1);
    assert_memory_equal(out.data, "twenty bytes already", 20);
    pc_buf_free(&out);
    pc_keyring_free(&kr);
}

/* ---- key files --------------------------------------------------------------- */

static char tmpdir[] = "/tmp/test_seal-XXXXXX";

static int setup_dir(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) == NULL ? -1 : pc_seal_init();
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static int load(const char *path, pc_keyring_t **kr, char *err, size_t errlen)
{
    *kr = (pc_keyring_t *)kr; /* must come back NULL on error */
    err[0] = '\0';
    int rc = pc_keyring_load_file(path, kr, err, errlen);
    if (rc != 0)
        assert_null(*kr);
    return rc;
}

static void test_load_file(void **state)
{
    (void)state;
    char path[256], link[256], dir[256], big[256], bad[256], err[512], want[600];
    pc_keyring_t *kr;
    static const char text[] = "# test\n" KEY_A "\n" KEY_B "\n";

    snprintf(path, sizeof(path), "%s/cluster.key", tmpdir);
    write_file(path, text, strlen(text), 0600);
    assert_int_equal(load(path, &kr, err, sizeof(err)), 0);
    assert_int_equal(pc_keyring_count(kr), 2);
    assert_int_equal(pc_keyring_id(kr, 0), ID_A);
    assert_int_equal(pc_keyring_id(kr, 1), ID_B);
    pc_keyring_free(&kr);
    /* owner read-only is fine too */
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(load(path, &kr, err, sizeof(err)), 0);
    pc_keyring_free(&kr);

    /* group or others: refused, with the mode and the fix */
    static const mode_t open_modes[] = {0640, 0604, 0620, 0602, 0601, 0644};
    for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        assert_int_equal(chmod(path, open_modes[i]), 0);
        assert_int_equal(load(path, &kr, err, sizeof(err)), PC_EPERM);
        snprintf(want, sizeof(want),
                 "key file %s is readable or writable by group/others (mode %04o): chmod 600 %s",
                 path, (unsigned)open_modes[i], path);
        assert_string_equal(err, want);
    }
    assert_int_equal(chmod(path, 0600), 0);

    /* a symlink to a 0600 file is followed (Kubernetes secrets) */
    snprintf(link, sizeof(link), "%s/link.key", tmpdir);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(load(link, &kr, err, sizeof(err)), 0);
    assert_int_equal(pc_keyring_id(kr, 0), ID_A);
    pc_keyring_free(&kr);
    /* and the target's mode is what counts */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(load(link, &kr, err, sizeof(err)), PC_EPERM);
    assert_int_equal(chmod(path, 0600), 0);

    /* a directory, a missing file: PC_EIO with the reason */
    snprintf(dir, sizeof(dir), "%s/adir", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(load(dir, &kr, err, sizeof(err)), PC_EIO);
    snprintf(want, sizeof(want), "key file %s is not a regular file", dir);
    assert_string_equal(err, want);
    snprintf(bad, sizeof(bad), "%s/missing.key", tmpdir);
    assert_int_equal(load(bad, &kr, err, sizeof(err)), PC_EIO);
    snprintf(want, sizeof(want), "cannot open key file %s: %s", bad, strerror(ENOENT));
    assert_string_equal(err, want);

    /* bad content: the parser's message, after the path */
    static const char broken[] = "# ok\n\n" KEY_A "\nnot a key\n";
    write_file(bad, broken, strlen(broken), 0600);
    assert_int_equal(load(bad, &kr, err, sizeof(err)), PC_EINVAL);
    snprintf(want, sizeof(want), "key file %s: line 4: expected 64 hex digits, found 9 characters",
             bad);
    assert_string_equal(err, want);

    /* over 64 KiB is not a key file; exactly 64 KiB of comment + key is */
    size_t n = 64 * 1024;
    char *blob = malloc(n + 1);
    assert_non_null(blob);
    memset(blob, '#', n);
    memcpy(blob + n - 65, KEY_A "\n", 65);
    blob[n - 66] = '\n';
    snprintf(big, sizeof(big), "%s/big.key", tmpdir);
    write_file(big, blob, n, 0600);
    assert_int_equal(load(big, &kr, err, sizeof(err)), 0);
    pc_keyring_free(&kr);
    blob[0] = '\n';
    memset(blob + 1, '#', n);
    write_file(big, blob, n + 1, 0600);
    assert_int_equal(load(big, &kr, err, sizeof(err)), PC_EINVAL);
    assert_non_null(strstr(err, "larger than 64 KiB"));
    free(blob);

    /* err may be NULL */
    assert_int_equal(pc_keyring_load_file(dir, &kr, NULL, 0), PC_EIO);
}

static void test_new_key_line(void **state)
{
    (void)state;
    char l1[66], l2[66];
    uint32_t id1, id2;
    pc_keyring_t *kr;

    memset(l1, 'x', sizeof(l1));
    pc_keyring_new_key_line(l1, &id1);
    pc_keyring_new_key_line(l2, &id2);
    assert_int_equal(strlen(l1), 65);
    assert_int_equal(l1[64], '\n');
    assert_int_equal(strspn(l1, "0123456789abcdef"), 64);
    assert_memory_not_equal(l1, l2, 64);
    assert_int_equal(pc_keyring_parse(l1, strlen(l1), &kr, NULL, 0), 0);
    assert_int_equal(pc_keyring_count(kr), 1);
    assert_int_equal(pc_keyring_id(kr, 0), id1);
    pc_keyring_free(&kr);

    /* the id is the key's: decode the hex ourselves */
    uint8_t key[PC_SEAL_KEYBYTES];
    size_t bl;
    assert_int_equal(sodium_hex2bin(key, sizeof(key), l2, 64, NULL, &bl, NULL), 0);
    assert_int_equal(bl, sizeof(key));
    assert_int_equal(pc_seal_key_id(key), id2);
}

/* ---- replay filter ------------------------------------------------------------ */

#define W 1000u /* window_ms in these tests */
#define T0 1700000000000ull

static pc_replay_t *replay(size_t max_streams)
{
    pc_replay_t *r = NULL;
    assert_int_equal(pc_replay_new(W, max_streams, &r), 0);
    assert_non_null(r);
    return r;
}

static void test_replay_basics(void **state)
{
    (void)state;
    pc_replay_t *r = replay(8);

    assert_int_equal(pc_replay_streams(r), 0);
    assert_int_equal(pc_replay_check(r, 7, 1, T0, T0), 0);
    assert_int_equal(pc_replay_streams(r), 1);
    assert_int_equal(pc_replay_check(r, 7, 1, T0, T0), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, 7, 1, T0 + 5, T0 + 5), PC_EREPLAY);
    /* the same seq on another stream is another message */
    assert_int_equal(pc_replay_check(r, 8, 1, T0, T0), 0);
    assert_int_equal(pc_replay_streams(r), 2);
    /* seq 0 is never sent */
    assert_int_equal(pc_replay_check(r, 9, 0, T0, T0), PC_ESTALE);
    assert_int_equal(pc_replay_streams(r), 2);

    /* the window, bounds included, either side */
    assert_int_equal(pc_replay_check(r, 7, 2, T0 - W, T0), 0);
    assert_int_equal(pc_replay_check(r, 7, 3, T0 + W, T0), 0);
    assert_int_equal(pc_replay_check(r, 7, 4, T0 - W - 1, T0), PC_ESTALE);
    assert_int_equal(pc_replay_check(r, 7, 5, T0 + W + 1, T0), PC_ESTALE);
    assert_int_equal(pc_replay_check(r, 10, 1, 0, T0), PC_ESTALE);
    assert_int_equal(pc_replay_check(r, 10, 1, UINT64_MAX, T0), PC_ESTALE);
    /* a stale message records nothing: 4 and 5 are still fresh */
    assert_int_equal(pc_replay_check(r, 7, 5, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, 7, 4, T0, T0), 0);
    assert_int_equal(pc_replay_streams(r), 2);
    /* now near 0: no wrap-around in the window arithmetic */
    assert_int_equal(pc_replay_check(r, 11, 1, 0, 10), 0);
    assert_int_equal(pc_replay_check(r, 11, 2, W + 10, 10), 0);
    assert_int_equal(pc_replay_check(r, 11, 3, W + 11, 10), PC_ESTALE);

    pc_replay_free(&r);
    assert_null(r);
    pc_replay_free(&r);
    pc_replay_free(NULL);

    assert_int_equal(pc_replay_new(0, 8, &r), PC_EINVAL);
    assert_null(r);
    assert_int_equal(pc_replay_new(W, 0, &r), PC_EINVAL);
    assert_null(r);
}

static void test_replay_window_of_seqs(void **state)
{
    (void)state;
    pc_replay_t *r = replay(4);
    uint64_t s = 0x1234;

    /* out of order within the bitmap */
    assert_int_equal(pc_replay_check(r, s, 10, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, 7, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, 9, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, 7, T0, T0), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, s, 8, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, 10, T0, T0), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, s, 1, T0, T0), 0);

    /* exactly PC_REPLAY_BITS below the highest: still tracked */
    uint64_t top = 5000;
    assert_int_equal(pc_replay_check(r, s, top, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, top - PC_REPLAY_BITS, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, top - PC_REPLAY_BITS, T0, T0), PC_EREPLAY);
    /* one more below: too old to tell */
    assert_int_equal(pc_replay_check(r, s, top - PC_REPLAY_BITS - 1, T0, T0), PC_ESTALE);
    assert_int_equal(pc_replay_check(r, s, 10, T0, T0), PC_ESTALE);

    /* A jump forward slides the bitmap: what was seen stays seen at its
     * new distance, and what falls off the end becomes stale. */
    assert_int_equal(pc_replay_check(r, s, top - 1, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, top - 70, T0, T0), 0);
    uint64_t jump = top + 100; /* 5100 */
    assert_int_equal(pc_replay_check(r, s, jump, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, top, T0, T0), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, s, top - 1, T0, T0), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, s, top - 70, T0, T0), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, s, top - 2, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, jump - 1, T0, T0), 0);
    /* top - 1024 was seen but is now 1124 below: stale, not replay */
    assert_int_equal(pc_replay_check(r, s, top - PC_REPLAY_BITS, T0, T0), PC_ESTALE);
    /* a jump of exactly the bitmap: the old top is the last tracked seq */
    top = jump;
    jump = top + PC_REPLAY_BITS;
    assert_int_equal(pc_replay_check(r, s, jump, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, top, T0, T0), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, s, top - 1, T0, T0), PC_ESTALE);
    assert_int_equal(pc_replay_check(r, s, top + 1, T0, T0), 0);
    /* a jump past the bitmap forgets everything below */
    top = jump;
    jump = top + PC_REPLAY_BITS + 1;
    assert_int_equal(pc_replay_check(r, s, jump, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, top, T0, T0), PC_ESTALE);
    assert_int_equal(pc_replay_check(r, s, top + 1, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, top + 1, T0, T0), PC_EREPLAY);
    /* and a huge one */
    assert_int_equal(pc_replay_check(r, s, UINT64_MAX, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, UINT64_MAX, T0, T0), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, s, UINT64_MAX - 1, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, s, jump, T0, T0), PC_ESTALE);
    assert_int_equal(pc_replay_streams(r), 1);
    pc_replay_free(&r);
}

/* The filter against a model that remembers every accepted seq exactly:
 * random walks of seq on a few streams, with steps that cross word
 * boundaries of the bitmap and its end. */
static uint64_t rng(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_replay_against_model(void **state)
{
    (void)state;
    enum { STREAMS = 3, MAXSEQ = 1 << 20, OPS = 60000 };
    pc_replay_t *r = replay(STREAMS);
    uint8_t *seen = calloc(STREAMS, MAXSEQ);
    uint64_t top[STREAMS] = {0};
    uint64_t x = 42;
    int counts[4] = {0};

    assert_non_null(seen);
    for (int op = 0; op < OPS; op++) {
        int s = (int)(rng(&x) % STREAMS);
        uint64_t v = rng(&x);
        int64_t step;
        switch (v % 4) {
        case 0: step = (int64_t)(v >> 8) % 3 + 1; break;          /* forward 1..3 */
        case 1: step = -((int64_t)(v >> 8) % 80);                 /* a little back */ break;
        case 2: step = -950 - (int64_t)(v >> 8) % 150; break;     /* around the end */
        default: step = (int64_t)(v >> 8) % 140 - 20; break;      /* jumps over words */
        }
        int64_t q = (int64_t)top[s] + step;
        if (q < 0 || q >= MAXSEQ - 200)
            q = (int64_t)(v >> 20) % 2000;
        uint64_t seq = (uint64_t)q;

        int want;
        if (seq == 0)
            want = PC_ESTALE;
        else if (top[s] == 0 || seq > top[s])
            want = 0;
        else if (top[s] - seq > PC_REPLAY_BITS)
            want = PC_ESTALE;
        else if (seen[(size_t)s * MAXSEQ + seq])
            want = PC_EREPLAY;
        else
            want = 0;
        int got = pc_replay_check(r, (uint64_t)s + 100, seq, T0, T0);
        if (got != want)
            fail_msg("op %d stream %d seq %" PRIu64 " top %" PRIu64 ": %s, model %s", op, s, seq,
                     top[s], pc_errname(got), pc_errname(want));
        if (want == 0) {
            seen[(size_t)s * MAXSEQ + seq] = 1;
            if (seq > top[s])
                top[s] = seq;
        }
        counts[want == 0 ? 0 : want == PC_EREPLAY ? 1 : 2]++;
    }
    /* the walk exercised every outcome */
    assert_true(counts[0] > 1000 && counts[1] > 1000 && counts[2] > 1000);
    free(seen);
    pc_replay_free(&r);
}

static void test_replay_streams_bounded(void **state)
{
    (void)state;
    pc_replay_t *r = replay(2);

    assert_int_equal(pc_replay_check(r, 1, 1, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, 2, 1, T0, T0), 0);
    assert_int_equal(pc_replay_check(r, 3, 1, T0, T0), PC_EBUSY);
    assert_int_equal(pc_replay_streams(r), 2);
    /* known streams go on */
    assert_int_equal(pc_replay_check(r, 1, 2, T0 + 500, T0 + 500), 0);
    /* stream 2 was last heard at T0: still remembered at T0 + W ... */
    assert_int_equal(pc_replay_check(r, 3, 1, T0 + W, T0 + W), PC_EBUSY);
    /* ... and its message still a replay there */
    assert_int_equal(pc_replay_check(r, 2, 1, T0, T0 + W), PC_EREPLAY);
    /* one ms later its slot is free for stream 3 */
    assert_int_equal(pc_replay_check(r, 3, 1, T0 + W + 1, T0 + W + 1), 0);
    assert_int_equal(pc_replay_streams(r), 2);
    /* the copy of stream 2's message is too old to pass now */
    assert_int_equal(pc_replay_check(r, 2, 1, T0, T0 + W + 1), PC_ESTALE);
    /* after a window of silence from everyone, all slots are freed */
    assert_int_equal(pc_replay_check(r, 4, 1, T0 + 3 * W, T0 + 3 * W), 0);
    assert_int_equal(pc_replay_streams(r), 1);
    assert_int_equal(pc_replay_check(r, 5, 1, T0 + 3 * W, T0 + 3 * W), 0);
    assert_int_equal(pc_replay_streams(r), 2);
    /* a forgotten stream that comes back starts afresh */
    assert_int_equal(pc_replay_check(r, 1, 3, T0 + 5 * W, T0 + 5 * W), 0);
    assert_int_equal(pc_replay_check(r, 1, 2, T0 + 5 * W, T0 + 5 * W), 0);
    assert_int_equal(pc_replay_streams(r), 1);
    pc_replay_free(&r);
}

/* A sender whose clock runs ahead: its messages stay valid longer than a
 * window after we heard them, so the stream is remembered that long. */
static void test_replay_sender_ahead(void **state)
{
    (void)state;
    pc_replay_t *r = replay(2);
    uint64_t ts = T0 + 800; /* 800 ms ahead of us */

    assert_int_equal(pc_replay_check(r, 1, 1, ts, T0), 0);
    /* a window of silence later the copy is still within the window */
    assert_int_equal(pc_replay_check(r, 1, 1, ts, T0 + W + 1), PC_EREPLAY);
    assert_int_equal(pc_replay_check(r, 2, 1, T0 + W + 1, T0 + W + 1), 0);
    assert_int_equal(pc_replay_streams(r), 2);
    assert_int_equal(pc_replay_check(r, 1, 1, ts, T0 + 800 + W), PC_EREPLAY);
    /* past ts + window: stale, and the slot goes */
    assert_int_equal(pc_replay_check(r, 1, 1, ts, T0 + 800 + W + 1), PC_ESTALE);
    assert_int_equal(pc_replay_check(r, 3, 1, T0 + 1900, T0 + 1900), 0);
    assert_int_equal(pc_replay_streams(r), 2); /* 2 (kept until T0 + 2001) and 3 */
    pc_replay_free(&r);
}

/* An expired stream behind a live one in the reclaim order is treated as
 * new when it is looked up, even before its slot is reclaimed. */
static void test_replay_expired_lookup(void **state)
{
    (void)state;
    pc_replay_t *r = replay(4);

    assert_int_equal(pc_replay_check(r, 1, 1, T0 + 900, T0), 0); /* keep until T0 + 1900 */
    assert_int_equal(pc_replay_check(r, 2, 5, T0 + 100, T0 + 100), 0); /* until T0 + 1100 */
    assert_int_equal(pc_replay_check(r, 2, 5, T0 + 100, T0 + 1100), PC_EREPLAY);
    /* at T0 + 1200 stream 2 has expired, but 1 (older) holds the head */
    assert_int_equal(pc_replay_check(r, 2, 5, T0 + 1200, T0 + 1200), 0);
    assert_int_equal(pc_replay_streams(r), 2);
    assert_int_equal(pc_replay_check(r, 2, 4, T0 + 1200, T0 + 1200), 0);
    assert_int_equal(pc_replay_check(r, 2, 5, T0 + 1200, T0 + 1200), PC_EREPLAY);
    pc_replay_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_key_id_vectors, setup),
        cmocka_unit_test_setup(test_parse_accepts, setup),
        cmocka_unit_test_setup(test_parse_errors, setup),
        cmocka_unit_test_setup(test_roundtrip_every_kind, setup),
        cmocka_unit_test_setup(test_every_byte_flipped, setup),
        cmocka_unit_test_setup(test_rotation, setup),
        cmocka_unit_test_setup(test_forged_key_id, setup),
        cmocka_unit_test_setup(test_seal_frame_in_place, setup),
        cmocka_unit_test_setup(test_seal_capped_buffer, setup),
        cmocka_unit_test_setup_teardown(test_load_file, setup_dir, teardown_dir),
        cmocka_unit_test_setup(test_new_key_line, setup),
        cmocka_unit_test(test_replay_basics),
        cmocka_unit_test(test_replay_window_of_seqs),
        cmocka_unit_test(test_replay_against_model),
        cmocka_unit_test(test_replay_streams_bounded),
        cmocka_unit_test(test_replay_sender_ahead),
        cmocka_unit_test(test_replay_expired_lookup),
    };
    return cmocka_run_group_tests_name("seal", tests, NULL, NULL);
}
