/*
 * test_rkey.c -- unit tests for node/pc_rkey: Redis Cluster slots, slot
 * tags, companion names and records.
 *
 * Slots must agree with Redis Cluster's, or a node's two-key scripts fail
 * on a cluster (CROSSSLOT) and records land beside the wrong keys. The
 * golden vectors come from the Redis Cluster specification and the
 * CLUSTER KEYSLOT documentation, and the examples of the hash-tag rule
 * are the specification's own. Every tag of the generated table was also
 * checked once against a cluster-enabled redis-server 7.0 (CLUSTER
 * KEYSLOT of "{TAG}" for all 16,384 slots); the tests below check it
 * against the rule, without a server.
 *
 * The digest vectors pin the record format: a node must recognise the
 * records that older nodes wrote. They were computed outside this code,
 * by a Python SipHash-2-4 written from the paper (Aumasson and Bernstein,
 * 2012) and checked against its test vector, which the first case below
 * repeats with the paper's key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pc_rkey.h"

/* splitmix64: a seeded, local PRNG so runs are reproducible. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned slot_of(const char *s) { return pc_rkey_slot(s, strlen(s)); }

static unsigned crc_slot(const char *s) { return pc_rkey_crc16(s, strlen(s)) & 16383u; }

/* ---- slots --------------------------------------------------------------- */

static void test_crc16_golden(void **state)
{
    (void)state;
    /* the specification's check value of CRC16/XMODEM */
    assert_int_equal(pc_rkey_crc16("123456789", 9), 0x31C3);
    assert_int_equal(pc_rkey_crc16(NULL, 0), 0);
    assert_int_equal(pc_rkey_crc16("\0", 1), 0);
    /* CLUSTER KEYSLOT in the Redis documentation */
    assert_int_equal(slot_of("somekey"), 11058);
    assert_int_equal(slot_of("foo{hash_tag}"), 2515);
    assert_int_equal(slot_of("foo"), 12182);
}

static void test_hash_tag_rule(void **state)
{
    (void)state;
    /* the specification's examples */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    assert_int_equal(slot_of("{user1000}.following"), crc_slot("user1000"));
    assert_int_equal(slot_of("foo{}{bar}"), crc_slot("foo{}{bar}"));
    assert_int_equal(slot_of("foo{{bar}}zap"), crc_slot("{bar"));
    assert_int_equal(slot_of("foo{bar}{zap}"), crc_slot("bar"));
    /* no tag: a lone brace, an unclosed one, a closing one first */
    assert_int_equal(slot_of("{"), crc_slot("{"));
    assert_int_equal(slot_of("a{b"), crc_slot("a{b"));
    assert_int_equal(slot_of("a}b{"), crc_slot("a}b{"));
    assert_int_equal(slot_of("{}"), crc_slot("{}"));
    assert_int_equal(slot_of(""), 0);
    /* a '}' before the first '{' does not count; the first '}' after it does */
    assert_int_equal(slot_of("}x{y}z}"), crc_slot("y"));
    assert_int_equal(slot_of("{a}}"), crc_slot("a"));
    /* the tag is a byte string like any other */
    const char bin[] = {'k', '{', '\0', '\xff', '}', 'z'};
    assert_int_equal(pc_rkey_slot(bin, sizeof bin), pc_rkey_crc16(bin + 2, 2) & 16383u);
    const char nul[] = {'\0', '{', '}', '\0'};
    assert_int_equal(pc_rkey_slot(nul, sizeof nul), pc_rkey_crc16(nul, sizeof nul) & 16383u);
}

/* ---- tags ---------------------------------------------------------------- */

static char computed[PC_RKEY_SLOTS][PC_RKEY_TAG_MAX + 1];

static int tag_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void test_every_tag_maps_to_its_slot(void **state)
{
    (void)state;
    for (unsigned s = 0; s < PC_RKEY_SLOTS; s++) {
        const char *t = pc_rkey_tag(s);
        size_t n = strlen(t);
        assert_in_range(n, 1, PC_RKEY_TAG_MAX);
        for (size_t i = 0; i < n; i++)
            assert_true(tag_char(t[i])); /* so no braces either */
        assert_int_equal(pc_rkey_crc16(t, n) & 16383u, s);
        /* as a hash tag, too */
        char key[16];
        snprintf(key, sizeof key, "x{%s}y", t);
        assert_int_equal(slot_of(key), s);
    }
    /* slots wrap */
    assert_string_equal(pc_rkey_tag(PC_RKEY_SLOTS + 5), pc_rkey_tag(5));
}

/* The generated table is what the function computes now: a change to the
 * search or a stale generated file fails here. */
static void test_table_matches_computation(void **state)
{
    (void)state;
    assert_int_equal(pc_rkey_tags_compute(computed), 0);
    for (unsigned s = 0; s < PC_RKEY_SLOTS; s++)
        assert_string_equal(pc_rkey_tag(s), computed[s]);
}

/*
 * Shortest, checked without the search: the slots that some string of
 * length <= L reaches, enumerated here independently, are exactly the
 * slots whose tag is that short. And the smallest of its length, checked
 * on a sample: no string of the same length before it in byte order
 * reaches its slot.
 */
static void test_tags_are_shortest_and_smallest(void **state)
{
    (void)state;
    static const char A[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    enum { N = sizeof A - 1 };
    static unsigned char reach1[PC_RKEY_SLOTS], reach2[PC_RKEY_SLOTS];
    for (int i = 0; i < N; i++) {
        char s[3] = {A[i], 0, 0};
        reach1[pc_rkey_crc16(s, 1) & 16383u] = 1;
        reach2[pc_rkey_crc16(s, 1) & 16383u] = 1;
        for (int j = 0; j < N; j++) {
            s[1] = A[j];
            reach2[pc_rkey_crc16(s, 2) & 16383u] = 1;
        }
    }
    unsigned len[4] = {0};
    for (unsigned s = 0; s < PC_RKEY_SLOTS; s++) {
        size_t n = strlen(pc_rkey_tag(s));
        assert_int_equal(reach1[s], n == 1);
        assert_int_equal(reach2[s], n <= 2);
        len[n]++;
    }
    assert_int_equal(len[1], N); /* 62 one-character strings, 62 slots */
    assert_int_equal(len[1] + len[2] + len[3], PC_RKEY_SLOTS);

    for (unsigned s = 0; s < PC_RKEY_SLOTS; s += 97) {
        const char *t = pc_rkey_tag(s);
        size_t n = strlen(t);
        char c[4] = {0};
        /* every string of length n before t in byte order */
        unsigned idx[3] = {0}, total = 1;
        for (size_t i = 0; i < n; i++)
            total *= N;
        for (unsigned k = 0; k < total; k++) {
            unsigned v = k;
            for (size_t i = n; i-- > 0; v /= N)
                idx[i] = v % N;
            for (size_t i = 0; i < n; i++)
                c[i] = A[idx[i]];
            if (memcmp(c, t, n) >= 0)
                break;
            assert_int_not_equal(pc_rkey_crc16(c, n) & 16383u, s);
        }
    }
}

/* ---- companion names ----------------------------------------------------- */

static void check_companion(const void *key, size_t klen)
{
    uint8_t *out = malloc(klen + PC_RKEY_COMPANION_EXTRA);
    assert_non_null(out);
    size_t n = pc_rkey_companion(key, klen, out);
    unsigned slot = pc_rkey_slot(key, klen);
    const char *tag = pc_rkey_tag(slot);
    size_t tlen = strlen(tag);

    assert_true(n <= klen + PC_RKEY_COMPANION_EXTRA);
    assert_int_equal(n, 5 + tlen + 2 + klen);
    assert_memory_equal(out, "pcm:{", 5);
    assert_memory_equal(out + 5, tag, tlen);
    assert_memory_equal(out + 5 + tlen, "}:", 2);
    if (klen)
        assert_memory_equal(out + 5 + tlen + 2, key, klen);
    /* the whole point: the record is in its key's slot */
    assert_int_equal(pc_rkey_slot(out, n), slot);
    free(out);
}

static void test_companion_in_key_slot(void **state)
{
    (void)state;
    static const char *keys[] = {
        "", "k", "user:1000", "app1:user:1000", "{user1000}.following", "foo{}{bar}",
        "foo{{bar}}zap", "foo{bar}{zap}", "{", "}", "{}", "}{", "pcm:{0}:k", "pcm:{x}:{y}",
        "a{b", "{a}", "{0}", "{{}}",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        check_companion(keys[i], strlen(keys[i]));
    /* a companion's own companion is a different name in the same slot */
    uint8_t a[64], b[128];
    size_t na = pc_rkey_companion("x{y}", 4, a);
    size_t nb = pc_rkey_companion(a, na, b);
    assert_int_equal(pc_rkey_slot(b, nb), pc_rkey_slot("x{y}", 4));
    assert_true(nb > na);

    /* the exact names, pinned: records written by older nodes must still
     * be found. "foo" is in slot 12182, whose tag is "9Le"; slot 0's is
     * "06S" and slot 1's "Qi" (the first entries of the table). */
    size_t n = pc_rkey_companion("foo", 3, a);
    assert_int_equal(n, strlen("pcm:{9Le}:foo"));
    assert_memory_equal(a, "pcm:{9Le}:foo", n);
    assert_string_equal(pc_rkey_tag(0), "06S");
    assert_string_equal(pc_rkey_tag(1), "Qi");
}

/* Binary keys of every length up to 300 with braces, NULs and 0xff
 * bytes common, so tags and near-tags turn up everywhere. */
static void test_companion_binary_keys(void **state)
{
    (void)state;
    static const uint8_t pick[] = {'{', '}', 0, 0xff, 'a', ':'};
    uint64_t rng = 42;
    uint8_t key[300];
    for (int round = 0; round < 20000; round++) {
        size_t len = rng_next(&rng) % sizeof key;
        for (size_t i = 0; i < len; i++) {
            uint64_t r = rng_next(&rng);
            key[i] = r % 3 == 0 ? pick[(r >> 8) % sizeof pick] : (uint8_t)(r >> 16);
        }
        check_companion(key, len);
    }
}

/* ---- records ------------------------------------------------------------- */

static void test_digest_golden(void **state)
{
    (void)state;
    /* the paper's vector: key 00..0f, message 00..0e, output
     * 0xa129ca6149be45e5, whose bytes come little-endian */
    uint8_t key[16], msg[256], h[8];
    for (int i = 0; i < 256; i++)
        msg[i] = (uint8_t)i;
    memcpy(key, msg, sizeof key);
    crypto_shorthash_siphash24(h, msg, 15, key);
    assert_memory_equal(h, "\xe5\x45\xbe\x49\x61\xca\x29\xa1", 8);

    char hex[PC_RKEY_DIGEST_HEX + 1];
    pc_rkey_digest("", 0, hex);
    assert_string_equal(hex, "2be0e9090aa19634");
    pc_rkey_digest("hello", 5, hex);
    assert_string_equal(hex, "90528d3c9e9aaaa6");
    pc_rkey_digest("\0\xff", 2, hex);
    assert_string_equal(hex, "43675677cfe19810");
    pc_rkey_digest(msg, 256, hex);
    assert_string_equal(hex, "d68c25fb5ed5d951");
}

static uint32_t rec(const char *val, const char *f, const char *d)
{
    return pc_rkey_record_flags(val, strlen(val), f, f ? strlen(f) : 0, d, d ? strlen(d) : 0);
}

static void test_record_flags(void **state)
{
    (void)state;
    char d[PC_RKEY_DIGEST_HEX + 1];
    pc_rkey_digest("hello", 5, d);

    assert_int_equal(rec("hello", "7", d), 7);
    assert_int_equal(rec("hello", "4294967295", d), 4294967295u);
    assert_int_equal(rec("hello", "1", "90528d3c9e9aaaa6"), 1);
    /* another program wrote the value: the record no longer vouches */
    assert_int_equal(rec("hellO", "7", d), 0);
    assert_int_equal(rec("", "7", d), 0);
    /* fields missing or damaged */
    assert_int_equal(rec("hello", NULL, d), 0);
    assert_int_equal(rec("hello", "7", NULL), 0);
    assert_int_equal(rec("hello", "7", "90528D3C9E9AAAA6"), 0);
    assert_int_equal(rec("hello", "7", "90528d3c9e9aaaa"), 0);
    assert_int_equal(rec("hello", "7", "90528d3c9e9aaaa60"), 0);
    assert_int_equal(rec("hello", "", d), 0);
    assert_int_equal(rec("hello", "0", d), 0);
    assert_int_equal(rec("hello", "07", d), 0);
    assert_int_equal(rec("hello", "+7", d), 0);
    assert_int_equal(rec("hello", "-7", d), 0);
    assert_int_equal(rec("hello", " 7", d), 0);
    assert_int_equal(rec("hello", "7 ", d), 0);
    assert_int_equal(rec("hello", "7x", d), 0);
    assert_int_equal(rec("hello", "4294967296", d), 0);
    assert_int_equal(rec("hello", "99999999999", d), 0);
    /* binary values */
    char bd[PC_RKEY_DIGEST_HEX + 1];
    pc_rkey_digest("\0\xff", 2, bd);
    assert_int_equal(pc_rkey_record_flags("\0\xff", 2, "9", 1, bd, 16), 9);
    assert_int_equal(pc_rkey_record_flags("\0\xfe", 2, "9", 1, bd, 16), 0);
}

static int setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_golden),
        cmocka_unit_test(test_hash_tag_rule),
        cmocka_unit_test(test_every_tag_maps_to_its_slot),
        cmocka_unit_test(test_table_matches_computation),
        cmocka_unit_test(test_tags_are_shortest_and_smallest),
        cmocka_unit_test(test_companion_in_key_slot),
        cmocka_unit_test(test_companion_binary_keys),
        cmocka_unit_test(test_digest_golden),
        cmocka_unit_test(test_record_flags),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
