/*
 * test_slotmap.c -- pc_slotmap: slot maps built from CLUSTER SLOTS
 * replies, every refusal, comparison and lookup, and MOVED/ASK parsing.
 *
 * Replies are RESP text turned into redisReply trees by hiredis' own
 * reader, as pc_backend gets them. Three are the exact bytes a Redis
 * 7.0.15 cluster (3 primaries, 3 replicas, on loopback) sent, once per
 * cluster-preferred-endpoint-type: ip, hostname (one node announcing a
 * hostname, the others "?"), unknown-endpoint (NULL hosts). The same
 * cluster gave the MOVED and ASK texts below. The other replies are
 * written in a short notation (see nota()) so that a table row stays one
 * line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "pc_rkey.h"
#include "pc_slotmap.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- replies ---------------------------------------------------------------- */

/* The one reply in len bytes of RESP; fails the test if there is not
 * exactly one. Free with freeReplyObject. */
static redisReply *resp(const char *text, size_t len)
{
    redisReader *rd = redisReaderCreate();
    void *reply = NULL, *more = NULL;

    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, text, len), REDIS_OK);
    if (redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL)
        fail_msg("not one whole RESP reply: '%.*s'", (int)len, text);
    assert_int_equal(redisReaderGetReply(rd, &more), REDIS_OK);
    assert_null(more); /* nothing left over */
    redisReaderFree(rd);
    return reply;
}

/* A growing text. */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void putf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(buf_t *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert_in_range(n, 0, (int)sizeof(tmp) - 1);
    put(b, tmp, (size_t)n);
}

/*
 * The notation: [a b ...] an array, 123 or -1 an integer, "text" a bulk
 * string (no escapes), nil a null bulk string, E"text" an error, S"text"
 * a status. Spaces separate. One value at *s is written to b as RESP.
 */
static void nota_value(const char **s, buf_t *b)
{
    const char *p = *s;

    while (*p == ' ')
        p++;
    if (*p == '[') {
        buf_t items = {0};
        size_t n = 0;

        p++;
        for (;;) {
            while (*p == ' ')
                p++;
            if (*p == ']')
                break;
            if (*p == '\0')
                fail_msg("notation: unclosed '['");
            nota_value(&p, &items);
            n++;
        }
        p++;
        putf(b, "*%zu\r\n", n);
        if (n > 0)
            put(b, items.p, items.len);
        free(items.p);
    } else if (*p == '"' || ((*p == 'E' || *p == 'S') && p[1] == '"')) {
        char kind = *p == '"' ? '$' : *p == 'E' ? '-' : '+';
        const char *q, *start = strchr(p, '"') + 1;

        q = strchr(start, '"');
        if (q == NULL)
            fail_msg("notation: unclosed '\"'");
        if (kind == '$')
            putf(b, "$%zu\r\n", (size_t)(q - start));
        else
            put(b, &kind, 1);
        put(b, start, (size_t)(q - start));
        put(b, "\r\n", 2);
        p = q + 1;
    } else if (strncmp(p, "nil", 3) == 0) {
        put(b, "$-1\r\n", 5);
        p += 3;
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
        char *e;
        long long v = strtoll(p, &e, 10);

        putf(b, ":%lld\r\n", v);
        p = e;
    } else {
        fail_msg("notation: unexpected '%s'", p);
    }
    *s = p;
}

/* The reply written in the notation. */
static redisReply *nota(const char *text)
{
    buf_t b = {0};
    const char *p = text;
    redisReply *r;

    nota_value(&p, &b);
    while (*p == ' ')
        p++;
    if (*p != '\0')
        fail_msg("notation: trailing '%s'", p);
    r = resp(b.p, b.len);
    free(b.p);
    return r;
}

/* pc_slotmap_from_slots of a reply in the notation. */
static int build(const char *text, const char *asked, pc_slotmap_t *m)
{
    redisReply *r = nota(text);
    int rc = pc_slotmap_from_slots(r, asked, m);

    freeReplyObject(r);
    return rc;
}

static void build_ok(const char *text, const char *asked, pc_slotmap_t *m)
{
    int rc = build(text, asked, m);

    if (rc != 0)
        fail_msg("'%s': %d, want 0", text, rc);
}

/* Slots [from, to] all owned by shard index i. */
static void assert_owned(const pc_slotmap_t *m, unsigned from, unsigned to, unsigned i)
{
    for (unsigned s = from; s <= to; s++)
        if (pc_slotmap_owner(m, s) != i)
            fail_msg("slot %u: owner %u, want %u", s, pc_slotmap_owner(m, s), i);
}

static void assert_shard(const pc_slotmap_t *m, size_t i, const char *host, int port)
{
    assert_true(i < m->nshards);
    assert_string_equal(m->shards[i].host, host);
    assert_int_equal(m->shards[i].port, port);
}

/* ---- real replies from Redis 7.0.15 ------------------------------------------ */

#define ID0 "77a4fc554a2694573d64c12ec89279887199200d"
#define ID1 "b7340c1ae7ce25c5153d026389c5f1e9efcbcc39"
#define ID2 "7fb7bc4fe38f97b4714a823f47e38204f2896379"
#define ID3 "c59d52baffff44d1997aadc7aa9a3db35393733e"
#define ID4 "4a92ce10dd1065ee0e42332c1249743606cad01e"
#define ID5 "210aace5fe326d5ae5a3cfcd9d4e213df07f9270"

/* cluster-preferred-endpoint-type ip (the default): RESP2 writes the
 * empty metadata map as an empty array. */
static const char slots_ip[] =
    "*3\r\n"
    "*4\r\n:0\r\n:5460\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:26129\r\n$40\r\n" ID0 "\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:26134\r\n$40\r\n" ID5 "\r\n*0\r\n"
    "*4\r\n:5461\r\n:10922\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:26130\r\n$40\r\n" ID1 "\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:26132\r\n$40\r\n" ID3 "\r\n*0\r\n"
    "*4\r\n:10923\r\n:16383\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:26131\r\n$40\r\n" ID2 "\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:26133\r\n$40\r\n" ID4 "\r\n*0\r\n";

/* hostname: the first primary announces r-0.example, the rest none ("?");
 * the metadata holds the IP. */
static const char slots_hostname[] =
    "*3\r\n"
    "*4\r\n:0\r\n:5460\r\n"
    "*4\r\n$11\r\nr-0.example\r\n:26129\r\n$40\r\n" ID0 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n$1\r\n?\r\n:26134\r\n$40\r\n" ID5 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n:5461\r\n:10922\r\n"
    "*4\r\n$1\r\n?\r\n:26130\r\n$40\r\n" ID1 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n$1\r\n?\r\n:26132\r\n$40\r\n" ID3 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n:10923\r\n:16383\r\n"
    "*4\r\n$1\r\n?\r\n:26131\r\n$40\r\n" ID2 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n$1\r\n?\r\n:26133\r\n$40\r\n" ID4 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n";

/* unknown-endpoint: NULL hosts. */
static const char slots_unknown[] =
    "*3\r\n"
    "*4\r\n:0\r\n:5460\r\n"
    "*4\r\n$-1\r\n:26129\r\n$40\r\n" ID0 "\r\n"
    "*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$11\r\nr-0.example\r\n"
    "*4\r\n$-1\r\n:26134\r\n$40\r\n" ID5 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n:5461\r\n:10922\r\n"
    "*4\r\n$-1\r\n:26130\r\n$40\r\n" ID1 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n$-1\r\n:26132\r\n$40\r\n" ID3 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n:10923\r\n:16383\r\n"
    "*4\r\n$-1\r\n:26131\r\n$40\r\n" ID2 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "*4\r\n$-1\r\n:26133\r\n$40\r\n" ID4 "\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n";

static void test_redis7_ip(void **state)
{
    redisReply *r = resp(slots_ip, sizeof(slots_ip) - 1);
    pc_slotmap_t m;

    (void)state;
    memset(&m, 0x5a, sizeof(m));
    assert_int_equal(pc_slotmap_from_slots(r, "10.9.9.9", &m), 0);
    freeReplyObject(r); /* the map keeps nothing of the reply */

    assert_int_equal(m.nshards, 3);
    assert_shard(&m, 0, "127.0.0.1", 26129);
    assert_shard(&m, 1, "127.0.0.1", 26130);
    assert_shard(&m, 2, "127.0.0.1", 26131);
    assert_owned(&m, 0, 5460, 0);
    assert_owned(&m, 5461, 10922, 1);
    assert_owned(&m, 10923, 16383, 2);
    assert_int_equal(pc_slotmap_covered(&m), PC_SLOTMAP_SLOTS);

    /* primaries are found, replicas are not in the map */
    assert_int_equal(pc_slotmap_find(&m, "127.0.0.1", 26130), 1);
    assert_int_equal(pc_slotmap_find(&m, "127.0.0.1", 26134), -1);

    /* keys: "foo" is slot 12182, which this cluster sent MOVED for to
     * 26131; a hash tag goes where its tag goes */
    assert_int_equal(pc_slotmap_key_owner(&m, "foo", 3), 2);
    assert_int_equal(pc_slotmap_key_owner(&m, "{user1000}.following", 20),
                     pc_slotmap_owner(&m, pc_rkey_slot("user1000", 8)));
    assert_int_equal(pc_slotmap_key_owner(&m, "somekey", 7), 2); /* 11058 */
    assert_int_equal(pc_slotmap_key_owner(&m, "", 0), 0);

    pc_slotmap_free(&m);
}

static void test_redis7_hostname(void **state)
{
    redisReply *r = resp(slots_hostname, sizeof(slots_hostname) - 1);
    pc_slotmap_t m;

    (void)state;
    assert_int_equal(pc_slotmap_from_slots(r, "127.0.0.1", &m), 0);
    freeReplyObject(r);
    /* "?" is no address, not the server asked: only r-0's slots are owned */
    assert_int_equal(m.nshards, 1);
    assert_shard(&m, 0, "r-0.example", 26129);
    assert_owned(&m, 0, 5460, 0);
    assert_owned(&m, 5461, 16383, PC_SLOTMAP_NONE);
    assert_int_equal(pc_slotmap_covered(&m), 5461);
    assert_int_equal(pc_slotmap_find(&m, "?", 26130), -1);
    assert_int_equal(pc_slotmap_find(&m, "127.0.0.1", 26130), -1);
    pc_slotmap_free(&m);
}

static void test_redis7_unknown_endpoint(void **state)
{
    redisReply *r = resp(slots_unknown, sizeof(slots_unknown) - 1);
    pc_slotmap_t m;

    (void)state;
    assert_int_equal(pc_slotmap_from_slots(r, "lb.example", &m), 0);
    freeReplyObject(r);
    /* every NULL host is the load balancer the command went through */
    assert_int_equal(m.nshards, 3);
    assert_shard(&m, 0, "lb.example", 26129);
    assert_shard(&m, 1, "lb.example", 26130);
    assert_shard(&m, 2, "lb.example", 26131);
    assert_owned(&m, 10923, 16383, 2);
    assert_int_equal(pc_slotmap_covered(&m), PC_SLOTMAP_SLOTS);
    pc_slotmap_free(&m);
}

/* ---- shapes accepted ---------------------------------------------------------- */

/* Before Redis 7: [ip, port, id]; Redis 3.0: [ip, port]. Metadata in any
 * form after the id is ignored. */
static void test_older_and_newer_node_entries(void **state)
{
    pc_slotmap_t m;

    (void)state;
    build_ok("[[0 8191 [\"10.0.0.1\" 6379 \"a\"] [\"10.0.0.4\" 6379 \"d\"]]"
             " [8192 16383 [\"10.0.0.2\" 6379]]]",
             "seed", &m);
    assert_int_equal(m.nshards, 2);
    assert_shard(&m, 0, "10.0.0.1", 6379);
    assert_shard(&m, 1, "10.0.0.2", 6379);
    assert_owned(&m, 0, 8191, 0);
    assert_owned(&m, 8192, 16383, 1);
    pc_slotmap_free(&m);

    build_ok("[[0 16383 [\"h\" 7000 \"id\" [\"ip\" \"1.2.3.4\"] 5 nil [[]]]]]", "seed", &m);
    assert_int_equal(m.nshards, 1);
    assert_shard(&m, 0, "h", 7000);
    assert_int_equal(pc_slotmap_covered(&m), PC_SLOTMAP_SLOTS);
    pc_slotmap_free(&m);

    /* bare IPv6, as Redis writes it; a 255-byte name */
    char text[600], host[256];
    memset(host, 'n', 255);
    host[255] = '\0';
    snprintf(text, sizeof(text), "[[0 0 [\"::1\" 7000 \"x\"]] [1 1 [\"%s\" 1 \"y\"]]]", host);
    build_ok(text, "seed", &m);
    assert_shard(&m, 0, "::1", 7000);
    assert_shard(&m, 1, host, 1);
    assert_int_equal(pc_slotmap_covered(&m), 2);
    pc_slotmap_free(&m);
}

/* "" (Redis before 7, a node that has not learnt its IP) and NULL are the
 * server asked; "?" owns nothing. The asked server named explicitly too
 * is one shard, not two. */
static void test_empty_nil_and_unknown_hosts(void **state)
{
    pc_slotmap_t m;

    (void)state;
    build_ok("[[0 99 [\"\" 7000 \"a\"]] [100 199 [nil 7000 \"a\"]]"
             " [200 299 [\"?\" 7001 \"b\"]] [300 399 [\"10.0.0.7\" 7000 \"a\"]]"
             " [400 499 [\"\" 7002 \"c\"]]]",
             "10.0.0.7", &m);
    assert_int_equal(m.nshards, 2);
    assert_shard(&m, 0, "10.0.0.7", 7000);
    assert_shard(&m, 1, "10.0.0.7", 7002);
    assert_owned(&m, 0, 199, 0);
    assert_owned(&m, 200, 299, PC_SLOTMAP_NONE);
    assert_owned(&m, 300, 399, 0);
    assert_owned(&m, 400, 499, 1);
    assert_owned(&m, 500, 16383, PC_SLOTMAP_NONE);
    assert_int_equal(pc_slotmap_covered(&m), 400);
    pc_slotmap_free(&m);

    /* nothing but "?" */
    build_ok("[[0 16383 [\"?\" 7000 \"a\"]]]", "seed", &m);
    assert_int_equal(m.nshards, 0);
    assert_null(m.shards);
    assert_int_equal(pc_slotmap_covered(&m), 0);
    pc_slotmap_free(&m);
}

/* One primary with several ranges (after a resharding), and gaps. */
static void test_split_ranges_and_gaps(void **state)
{
    pc_slotmap_t m;

    (void)state;
    build_ok("[[0 100 [\"a\" 1]] [101 101 [\"b\" 2]] [102 5000 [\"a\" 1]]"
             " [6000 6000 [\"b\" 2]] [16383 16383 [\"a\" 1]]]",
             "seed", &m);
    assert_int_equal(m.nshards, 2);
    assert_shard(&m, 0, "a", 1);
    assert_shard(&m, 1, "b", 2);
    assert_owned(&m, 0, 100, 0);
    assert_owned(&m, 101, 101, 1);
    assert_owned(&m, 102, 5000, 0);
    assert_owned(&m, 5001, 5999, PC_SLOTMAP_NONE);
    assert_owned(&m, 6000, 6000, 1);
    assert_owned(&m, 6001, 16382, PC_SLOTMAP_NONE);
    assert_owned(&m, 16383, 16383, 0);
    assert_int_equal(pc_slotmap_covered(&m), 101 + 1 + 4899 + 1 + 1);
    /* same host, other port: another shard */
    pc_slotmap_free(&m);
    build_ok("[[0 0 [\"a\" 1]] [1 1 [\"a\" 2]] [2 2 [\"A\" 1]]]", "seed", &m);
    assert_int_equal(m.nshards, 3);
    pc_slotmap_free(&m);
}

/* Hosts that are prefixes of one another, longest first, all on one
 * port: 255 shards, none taken for another. */
static void test_hosts_that_prefix_each_other(void **state)
{
    buf_t b = {0};
    pc_slotmap_t m;
    redisReply *r;
    char host[256];

    (void)state;
    putf(&b, "*%u\r\n", 255u);
    for (unsigned len = 255; len >= 1; len--) {
        memset(host, 'x', len);
        putf(&b, "*3\r\n:%u\r\n:%u\r\n*2\r\n$%u\r\n", len, len, len);
        put(&b, host, len);
        put(&b, "\r\n:1\r\n", 6);
    }
    r = resp(b.p, b.len);
    assert_int_equal(pc_slotmap_from_slots(r, "seed", &m), 0);
    assert_int_equal(m.nshards, 255);
    for (unsigned len = 1; len <= 255; len++) {
        memset(host, 'x', len);
        host[len] = '\0';
        assert_int_equal(pc_slotmap_find(&m, host, 1), (int)(255 - len));
        assert_int_equal(pc_slotmap_owner(&m, len), 255 - len);
    }
    pc_slotmap_free(&m);
    freeReplyObject(r);
    free(b.p);
}

/* No slots assigned yet: a map, but an empty one. */
static void test_empty_reply(void **state)
{
    pc_slotmap_t m;

    (void)state;
    memset(&m, 0x5a, sizeof(m));
    build_ok("[]", "seed", &m);
    assert_int_equal(m.nshards, 0);
    assert_null(m.shards);
    assert_int_equal(pc_slotmap_covered(&m), 0);
    assert_int_equal(pc_slotmap_owner(&m, 0), PC_SLOTMAP_NONE);
    pc_slotmap_free(&m);
}

/* The most a reply can hold: 16384 one-slot ranges, each its own primary.
 * One range more must overlap, and is refused. */
static void test_every_slot_its_own_primary(void **state)
{
    buf_t b = {0};
    pc_slotmap_t m, before;
    redisReply *r;

    (void)state;
    for (int pass = 0; pass < 2; pass++) {
        unsigned n = PC_SLOTMAP_SLOTS + (unsigned)pass;

        b.len = 0;
        putf(&b, "*%u\r\n", n);
        for (unsigned s = 0; s < n; s++) {
            unsigned slot = s % PC_SLOTMAP_SLOTS;

            putf(&b, "*3\r\n:%u\r\n:%u\r\n*2\r\n", slot, slot);
            putf(&b, "$%d\r\nh%05u\r\n:%u\r\n", 6, slot, 1 + slot % 3);
        }
        r = resp(b.p, b.len);
        if (pass == 0) {
            assert_int_equal(pc_slotmap_from_slots(r, "seed", &m), 0);
            assert_int_equal(m.nshards, PC_SLOTMAP_SLOTS);
            assert_int_equal(pc_slotmap_covered(&m), PC_SLOTMAP_SLOTS);
            for (unsigned s = 0; s < PC_SLOTMAP_SLOTS; s += 1111) {
                char host[8];

                snprintf(host, sizeof(host), "h%05u", s);
                assert_int_equal(pc_slotmap_owner(&m, s), s);
                assert_int_equal(pc_slotmap_find(&m, host, (int)(1 + s % 3)), (int)s);
            }
            pc_slotmap_free(&m);
        } else {
            memset(&m, 0x5a, sizeof(m));
            before = m;
            assert_int_equal(pc_slotmap_from_slots(r, "seed", &m), PC_EPROTO);
            assert_memory_equal(&m, &before, sizeof(m));
        }
        freeReplyObject(r);
    }
    free(b.p);
}

/* ---- refusals --------------------------------------------------------------- */

static const char *const malformed[] = {
    /* not an array of ranges */
    "E\"ERR This instance has cluster support disabled\"",
    "S\"OK\"",
    "5",
    "\"slots\"",
    "nil",
    "[5]",
    "[\"0 16383\"]",
    "[nil]",
    /* a range of the wrong shape */
    "[[]]",
    "[[0]]",
    "[[0 16383]]",
    "[[\"0\" 16383 [\"h\" 1]]]",
    "[[0 \"16383\" [\"h\" 1]]]",
    "[[nil 16383 [\"h\" 1]]]",
    "[[0 [] [\"h\" 1]]]",
    /* slots out of range, start > end */
    "[[-1 5 [\"h\" 1]]]",
    "[[0 16384 [\"h\" 1]]]",
    "[[16384 16384 [\"h\" 1]]]",
    "[[10 5 [\"h\" 1]]]",
    "[[0 99999999999 [\"h\" 1]]]",
    "[[-9223372036854775807 0 [\"h\" 1]]]",
    /* overlapping ranges */
    "[[0 10 [\"h\" 1]] [10 20 [\"i\" 1]]]",
    "[[0 100 [\"h\" 1]] [50 60 [\"h\" 1]]]",
    "[[5 5 [\"h\" 1]] [5 5 [\"h\" 1]]]",
    "[[100 200 [\"h\" 1]] [0 16383 [\"i\" 1]]]",
    /* a primary of the wrong shape */
    "[[0 1 \"h\"]]",
    "[[0 1 nil]]",
    "[[0 1 []]]",
    "[[0 1 [\"h\"]]]",
    "[[0 1 [5 1]]]",
    "[[0 1 [[\"h\"] 1]]]",
    "[[0 1 [\"h\" \"1\"]]]",
    "[[0 1 [\"h\" nil]]]",
    "[[0 1 [\"h\" 1 5]]]",
    "[[0 1 [\"h\" 1 nil]]]",
    "[[0 1 [\"h\" 1 []]]]",
    /* bad ports */
    "[[0 1 [\"h\" 0]]]",
    "[[0 1 [\"h\" -1]]]",
    "[[0 1 [\"h\" 65536]]]",
    "[[0 1 [\"h\" 4294967297]]]",
    /* bad hosts */
    "[[0 1 [\"a b\" 1]]]",
    "[[0 1 [\" h\" 1]]]",
    /* a replica of the wrong shape is still a malformed reply */
    "[[0 1 [\"h\" 1 \"id\"] \"r\"]]",
    "[[0 1 [\"h\" 1 \"id\"] []]]",
    "[[0 1 [\"h\" 1 \"id\"] [\"r\" 0 \"id\"]]]",
    "[[0 1 [\"h\" 1 \"id\"] [\"r\" 1 5]]]",
    /* one bad range among good ones, last */
    "[[0 100 [\"h\" 1]] [101 16383 [\"i\" 1]] [5]]",
};

/* Refused with PC_EPROTO, and *out untouched. */
static void expect_refused(const char *what, redisReply *r)
{
    pc_slotmap_t m, before;
    int rc;

    memset(&m, 0x5a, sizeof(m));
    before = m;
    rc = pc_slotmap_from_slots(r, "seed", &m);
    if (rc != PC_EPROTO)
        fail_msg("%s: %d, want PC_EPROTO", what, rc);
    assert_memory_equal(&m, &before, sizeof(m));
}

static void test_malformed_replies(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(malformed); i++) {
        redisReply *r = nota(malformed[i]);

        expect_refused(malformed[i], r);
        freeReplyObject(r);
    }
}

/* Hosts that the notation cannot write: too long, a NUL, control
 * characters. */
static void test_malformed_hosts(void **state)
{
    static const struct {
        const char *text;
        size_t len;
    } raw[] = {
#define RAW(s) {s, sizeof(s) - 1}
        RAW("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\0b\r\n:1\r\n"),
        RAW("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\nab\n\r\n:1\r\n"),
        RAW("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\tb\r\n:1\r\n"),
        RAW("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$2\r\na\x7f\r\n:1\r\n"),
#undef RAW
    };
    char text[700], host[300];
    redisReply *r;

    (void)state;
    for (size_t i = 0; i < N(raw); i++) {
        r = resp(raw[i].text, raw[i].len);
        expect_refused("a host with a NUL or control character", r);
        freeReplyObject(r);
    }
    /* 256 bytes: one more than fits, as primary or replica */
    memset(host, 'n', 256);
    host[256] = '\0';
    snprintf(text, sizeof(text), "[[0 1 [\"%s\" 1]]]", host);
    r = nota(text);
    expect_refused("a 256-byte host", r);
    freeReplyObject(r);
    snprintf(text, sizeof(text), "[[0 1 [\"h\" 1] [\"%s\" 1]]]", host);
    r = nota(text);
    expect_refused("a 256-byte replica host", r);
    freeReplyObject(r);
}

static void test_arguments(void **state)
{
    redisReply *r = nota("[[0 16383 [\"\" 7000]]]");
    pc_slotmap_t m, before;
    char host[300];

    (void)state;
    memset(&m, 0x5a, sizeof(m));
    before = m;
    assert_int_equal(pc_slotmap_from_slots(NULL, "seed", &m), PC_EINVAL);
    assert_int_equal(pc_slotmap_from_slots(r, NULL, &m), PC_EINVAL);
    assert_int_equal(pc_slotmap_from_slots(r, "seed", NULL), PC_EINVAL);
    /* asked_host must be a host itself */
    assert_int_equal(pc_slotmap_from_slots(r, "", &m), PC_EINVAL);
    assert_int_equal(pc_slotmap_from_slots(r, "a b", &m), PC_EINVAL);
    memset(host, 'n', 256);
    host[256] = '\0';
    assert_int_equal(pc_slotmap_from_slots(r, host, &m), PC_EINVAL);
    assert_memory_equal(&m, &before, sizeof(m));
    /* 255 bytes is a host, and is what "" becomes */
    host[255] = '\0';
    assert_int_equal(pc_slotmap_from_slots(r, host, &m), 0);
    assert_shard(&m, 0, host, 7000);
    pc_slotmap_free(&m);
    freeReplyObject(r);
}

/* ---- the map as a value --------------------------------------------------------- */

static void test_init_and_free(void **state)
{
    pc_slotmap_t m, empty;

    (void)state;
    memset(&m, 0x5a, sizeof(m));
    pc_slotmap_init(&m);
    assert_int_equal(m.nshards, 0);
    assert_null(m.shards);
    assert_int_equal(pc_slotmap_covered(&m), 0);
    for (unsigned s = 0; s < PC_SLOTMAP_SLOTS; s++)
        assert_int_equal(m.owner[s], PC_SLOTMAP_NONE);
    empty = m;

    build_ok("[[0 16383 [\"h\" 1]]]", "seed", &m);
    pc_slotmap_free(&m);
    assert_memory_equal(&m, &empty, sizeof(m)); /* an empty map again */
    pc_slotmap_free(&m);                        /* harmless */
    assert_memory_equal(&m, &empty, sizeof(m));
    pc_slotmap_free(NULL);
}

static void test_owner_bounds(void **state)
{
    pc_slotmap_t m;

    (void)state;
    build_ok("[[0 16383 [\"h\" 1]]]", "seed", &m);
    assert_int_equal(pc_slotmap_owner(&m, 16383), 0);
    assert_int_equal(pc_slotmap_owner(&m, 16384), PC_SLOTMAP_NONE);
    assert_int_equal(pc_slotmap_owner(&m, 4294967295u), PC_SLOTMAP_NONE);
    assert_int_equal(pc_slotmap_owner(NULL, 0), PC_SLOTMAP_NONE);
    assert_int_equal(pc_slotmap_key_owner(NULL, "k", 1), PC_SLOTMAP_NONE);
    assert_int_equal(pc_slotmap_covered(NULL), 0);
    pc_slotmap_free(&m);
}

static void test_find(void **state)
{
    pc_slotmap_t m;

    (void)state;
    build_ok("[[0 1 [\"10.0.0.1\" 7000]] [2 3 [\"r-2.example\" 7001]] [4 5 [\"::1\" 7002]]]",
             "seed", &m);
    assert_int_equal(pc_slotmap_find(&m, "10.0.0.1", 7000), 0);
    assert_int_equal(pc_slotmap_find(&m, "r-2.example", 7001), 1);
    assert_int_equal(pc_slotmap_find(&m, "::1", 7002), 2);
    assert_int_equal(pc_slotmap_find(&m, "10.0.0.1", 7001), -1);   /* other port */
    assert_int_equal(pc_slotmap_find(&m, "R-2.example", 7001), -1); /* bytes, not names */
    assert_int_equal(pc_slotmap_find(&m, "10.0.0.", 7000), -1);     /* a prefix */
    assert_int_equal(pc_slotmap_find(&m, "[::1]", 7002), -1);
    assert_int_equal(pc_slotmap_find(&m, NULL, 7000), -1);
    assert_int_equal(pc_slotmap_find(NULL, "10.0.0.1", 7000), -1);
    pc_slotmap_free(&m);
    pc_slotmap_init(&m);
    assert_int_equal(pc_slotmap_find(&m, "10.0.0.1", 7000), -1);
}

/* Rows: two replies, and whether their maps are the same. */
static const struct same_case {
    const char *a, *b;
    int same;
} same_cases[] = {
    /* the same reply */
    {"[[0 16383 [\"a\" 1]]]", "[[0 16383 [\"a\" 1]]]", 1},
    /* ranges in another order, so shards in another order */
    {"[[0 8191 [\"a\" 1]] [8192 16383 [\"b\" 2]]]", "[[8192 16383 [\"b\" 2]] [0 8191 [\"a\" 1]]]",
     1},
    /* one range or two, same owners */
    {"[[0 16383 [\"a\" 1]]]", "[[0 99 [\"a\" 1]] [100 16383 [\"a\" 1]]]", 1},
    /* replicas, ids and metadata do not count */
    {"[[0 16383 [\"a\" 1 \"x\"] [\"r\" 9 \"y\"]]]", "[[0 16383 [\"a\" 1 \"z\" []]]]", 1},
    /* NULL host and the asked server by name */
    {"[[0 16383 [nil 1]]]", "[[0 16383 [\"seed\" 1]]]", 1},
    /* both empty; both the same gaps */
    {"[]", "[]", 1},
    {"[[5 6 [\"a\" 1]]]", "[[5 5 [\"a\" 1]] [6 6 [\"a\" 1]]]", 1},
    /* one slot moved */
    {"[[0 8191 [\"a\" 1]] [8192 16383 [\"b\" 2]]]", "[[0 8192 [\"a\" 1]] [8193 16383 [\"b\" 2]]]",
     0},
    /* another port, another host */
    {"[[0 16383 [\"a\" 1]]]", "[[0 16383 [\"a\" 2]]]", 0},
    {"[[0 16383 [\"a\" 1]]]", "[[0 16383 [\"b\" 1]]]", 0},
    /* owned against not owned, at either end */
    {"[[0 16383 [\"a\" 1]]]", "[[0 16382 [\"a\" 1]]]", 0},
    {"[[1 16383 [\"a\" 1]]]", "[[0 16383 [\"a\" 1]]]", 0},
    {"[]", "[[0 0 [\"a\" 1]]]", 0},
    /* the last range differs: the runs before it must not hide it */
    {"[[0 16000 [\"a\" 1]] [16001 16383 [\"b\" 1]]]",
     "[[0 16000 [\"a\" 1]] [16001 16383 [\"c\" 1]]]", 0},
    /* a failover: the replica took over */
    {"[[0 16383 [\"a\" 1] [\"b\" 1]]]", "[[0 16383 [\"b\" 1] [\"a\" 1]]]", 0},
};

static void test_same(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(same_cases); i++) {
        pc_slotmap_t a, b;

        build_ok(same_cases[i].a, "seed", &a);
        build_ok(same_cases[i].b, "seed", &b);
        if (pc_slotmap_same(&a, &b) != same_cases[i].same ||
            pc_slotmap_same(&b, &a) != same_cases[i].same)
            fail_msg("'%s' vs '%s': want same=%d", same_cases[i].a, same_cases[i].b,
                     same_cases[i].same);
        assert_int_equal(pc_slotmap_same(&a, &a), 1);
        pc_slotmap_free(&a);
        pc_slotmap_free(&b);
    }
}

static void test_same_null_and_real(void **state)
{
    redisReply *r1 = resp(slots_ip, sizeof(slots_ip) - 1);
    redisReply *r2 = resp(slots_unknown, sizeof(slots_unknown) - 1);
    pc_slotmap_t a, b;

    (void)state;
    /* The same cluster seen directly and through a load balancer at the
     * same address are the same map. */
    assert_int_equal(pc_slotmap_from_slots(r1, "seed", &a), 0);
    assert_int_equal(pc_slotmap_from_slots(r2, "127.0.0.1", &b), 0);
    assert_int_equal(pc_slotmap_same(&a, &b), 1);
    pc_slotmap_free(&b);
    assert_int_equal(pc_slotmap_from_slots(r2, "127.0.0.2", &b), 0);
    assert_int_equal(pc_slotmap_same(&a, &b), 0);
    pc_slotmap_free(&b);

    assert_int_equal(pc_slotmap_same(NULL, NULL), 1);
    assert_int_equal(pc_slotmap_same(&a, NULL), 0);
    assert_int_equal(pc_slotmap_same(NULL, &a), 0);
    /* a freed map is an empty one */
    pc_slotmap_init(&b);
    assert_int_equal(pc_slotmap_same(&a, &b), 0);
    pc_slotmap_free(&a);
    assert_int_equal(pc_slotmap_same(&a, &b), 1);
    freeReplyObject(r1);
    freeReplyObject(r2);
}

/* ---- redirections ------------------------------------------------------------- */

static const struct redirect_good {
    const char *err;
    int ask;
    unsigned slot;
    const char *host;
    int port;
} redirect_good[] = {
    /* as Redis 7.0.15 sent them */
    {"MOVED 12182 127.0.0.1:26131", 0, 12182, "127.0.0.1", 26131},
    {"ASK 12182 127.0.0.1:26129", 1, 12182, "127.0.0.1", 26129},
    {"MOVED 12182 :26131", 0, 12182, "", 26131},  /* unknown-endpoint */
    {"MOVED 12182 ?:26131", 0, 12182, "?", 26131}, /* hostname, none announced */
    /* the specification's */
    {"MOVED 3999 127.0.0.1:6381", 0, 3999, "127.0.0.1", 6381},
    {"ASK 3999 127.0.0.1:6381", 1, 3999, "127.0.0.1", 6381},
    {"ASK 3999 :6381", 1, 3999, "", 6381},
    /* hosts */
    {"MOVED 1 redis-3.example.com:6379", 0, 1, "redis-3.example.com", 6379},
    {"MOVED 1 [::1]:6381", 0, 1, "::1", 6381},
    {"MOVED 1 ::1:7000", 0, 1, "::1", 7000},
    {"MOVED 1 fe80::1%eth0:7000", 0, 1, "fe80::1%eth0", 7000},
    {"MOVED 1 [2001:db8::7]:7000", 0, 1, "2001:db8::7", 7000},
    /* bounds */
    {"MOVED 0 h:1", 0, 0, "h", 1},
    {"MOVED 16383 h:65535", 0, 16383, "h", 65535},
    {"ASK 00007 h:00080", 1, 7, "h", 80},
};

static void test_redirect_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(redirect_good); i++) {
        const struct redirect_good *g = &redirect_good[i];
        char host[256], buf[128];
        unsigned slot = 99999;
        int ask = -1, port = -1, rc;
        size_t len = strlen(g->err);

        /* not NUL-terminated: what follows len is not read */
        memcpy(buf, g->err, len);
        memcpy(buf + len, " 9x", 4);
        memset(host, 'x', sizeof(host));
        rc = pc_slotmap_redirect(buf, len, &ask, &slot, host, sizeof(host), &port);
        if (rc != 0)
            fail_msg("'%s': %d, want 0", g->err, rc);
        if (ask != g->ask || slot != g->slot || strcmp(host, g->host) != 0 || port != g->port)
            fail_msg("'%s': ask %d slot %u host '%s' port %d", g->err, ask, slot, host, port);
    }
}

static const char *const redirect_bad[] = {
    "",
    "MOVED",
    "MOVED ",
    "MOVED 1",
    "MOVED 1 ",
    "MOVED 1 h",
    "MOVED 1 h:",
    "MOVED 1 :",
    "ASK",
    "ASK 1",
    /* other errors */
    "ERR unknown command 'FOO'",
    "CROSSSLOT Keys in request don't hash to the same slot",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "CLUSTERDOWN Hash slot not served",
    "-MOVED 1 h:1",
    "moved 1 h:1",
    "Moved 1 h:1",
    "MOVEDX 1 h:1",
    "ASKING 1 h:1",
    "MOVED\t1 h:1",
    /* slots */
    "MOVED x h:1",
    "MOVED 1x h:1",
    "MOVED -1 h:1",
    "MOVED +1 h:1",
    "MOVED 16384 h:1",
    "MOVED 99999 h:1",
    "MOVED 000001 h:1",
    "MOVED 4294967296 h:1",
    "MOVED  1 h:1",
    "MOVED  h:1",
    "ASK  :1",
    "MOVED 1  h:1",
    /* ports */
    "MOVED 1 h:0",
    "MOVED 1 h:65536",
    "MOVED 1 h:99999",
    "MOVED 1 h:000080",
    "MOVED 1 h:-1",
    "MOVED 1 h:+1",
    "MOVED 1 h:x",
    "MOVED 1 h:1x",
    /* trailing garbage */
    "MOVED 1 h:1 ",
    "MOVED 1 h:1\r\n",
    "MOVED 1 h:1 extra",
    "MOVED 1 h:1:",
    /* hosts */
    "MOVED 1 a b:1",
    "MOVED 1 h\x01:1",
    "MOVED 1 [::1:7000",
    "MOVED 1 ::1]:7000",
    "MOVED 1 []:7000",
    "MOVED 1 [::1]x:7000",
    "MOVED 1 [[::1]]:7000",
    "MOVED 1 [::1]",
};

/* Refused with PC_EPROTO, nothing written. */
static void expect_redirect_refused(const char *what, const char *err, size_t len, size_t hostlen)
{
    char host[300];
    unsigned slot = 99999;
    int ask = -1, port = -1, rc;

    memset(host, 'x', sizeof(host));
    rc = pc_slotmap_redirect(err, len, &ask, &slot, host, hostlen, &port);
    if (rc != PC_EPROTO)
        fail_msg("'%s': %d, want PC_EPROTO", what, rc);
    assert_int_equal(ask, -1);
    assert_int_equal(slot, 99999);
    assert_int_equal(port, -1);
    assert_int_equal(host[0], 'x');
}

static void test_redirect_bad(void **state)
{
    static const char truncated[] = "MOVED 3999 127.0.0.1:6381";
    char long_host[400];

    (void)state;
    for (size_t i = 0; i < N(redirect_bad); i++)
        expect_redirect_refused(redirect_bad[i], redirect_bad[i], strlen(redirect_bad[i]), 256);

    /* cut short anywhere before the last digit of the port that makes it
     * valid: refused unless the cut still leaves a valid port */
    for (size_t len = 0; len < sizeof(truncated) - 1; len++) {
        char host[256];
        unsigned slot;
        int ask, port;
        int rc = pc_slotmap_redirect(truncated, len, &ask, &slot, host, sizeof(host), &port);

        if (len >= strlen("MOVED 3999 127.0.0.1:6")) {
            /* "...:6", "...:63", "...:638": shorter ports, still redirections */
            assert_int_equal(rc, 0);
            assert_string_equal(host, "127.0.0.1");
        } else {
            expect_redirect_refused("a truncated MOVED", truncated, len, 256);
        }
    }

    /* a NUL inside the text is a byte like any other: refused */
    expect_redirect_refused("a NUL in the host", "MOVED 1 h\0i:1", 13, 256);
    expect_redirect_refused("a NUL after the port", "MOVED 1 h:1\0", 12, 256);

    /* a host longer than the buffer, or than any host may be */
    expect_redirect_refused("host of 6 bytes into 6", "MOVED 1 abcdef:1", 16, 6);
    memset(long_host, 0, sizeof(long_host));
    memcpy(long_host, "MOVED 1 ", 8);
    memset(long_host + 8, 'n', 256);
    memcpy(long_host + 8 + 256, ":1", 2);
    expect_redirect_refused("a 256-byte host", long_host, strlen(long_host), 300);
}

static void test_redirect_limits_and_arguments(void **state)
{
    char host[300], err[300];
    unsigned slot;
    int ask, port;

    (void)state;
    /* exactly fits: 6 bytes and the NUL */
    assert_int_equal(pc_slotmap_redirect("MOVED 1 abcdef:1", 16, &ask, &slot, host, 7, &port), 0);
    assert_string_equal(host, "abcdef");
    /* an empty host needs only the NUL */
    assert_int_equal(pc_slotmap_redirect("ASK 2 :3", 8, &ask, &slot, host, 1, &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(ask, 1);
    assert_int_equal(slot, 2);
    assert_int_equal(port, 3);
    /* 255 bytes, the most a host may be */
    memcpy(err, "MOVED 1 ", 8);
    memset(err + 8, 'n', 255);
    memcpy(err + 8 + 255, ":1", 3);
    assert_int_equal(pc_slotmap_redirect(err, strlen(err), &ask, &slot, host, sizeof(host),
                                         &port),
                     0);
    assert_int_equal(strlen(host), 255);

    assert_int_equal(pc_slotmap_redirect(NULL, 0, &ask, &slot, host, 8, &port), PC_EINVAL);
    assert_int_equal(pc_slotmap_redirect("MOVED 1 h:1", 11, NULL, &slot, host, 8, &port),
                     PC_EINVAL);
    assert_int_equal(pc_slotmap_redirect("MOVED 1 h:1", 11, &ask, NULL, host, 8, &port),
                     PC_EINVAL);
    assert_int_equal(pc_slotmap_redirect("MOVED 1 h:1", 11, &ask, &slot, NULL, 8, &port),
                     PC_EINVAL);
    assert_int_equal(pc_slotmap_redirect("MOVED 1 h:1", 11, &ask, &slot, host, 0, &port),
                     PC_EINVAL);
    assert_int_equal(pc_slotmap_redirect("MOVED 1 h:1", 11, &ask, &slot, host, 8, NULL),
                     PC_EINVAL);
}

/* A redirection's slot agrees with pc_rkey: the MOVED the real cluster
 * sent for "foo" names the slot the map and pc_rkey give it. */
static void test_redirect_agrees_with_map(void **state)
{
    redisReply *r = resp(slots_ip, sizeof(slots_ip) - 1);
    static const char moved[] = "MOVED 12182 127.0.0.1:26131";
    pc_slotmap_t m;
    char host[256];
    unsigned slot;
    int ask, port;

    (void)state;
    assert_int_equal(pc_slotmap_from_slots(r, "seed", &m), 0);
    assert_int_equal(pc_slotmap_redirect(moved, sizeof(moved) - 1, &ask, &slot, host,
                                         sizeof(host), &port),
                     0);
    assert_int_equal(slot, pc_rkey_slot("foo", 3));
    assert_int_equal(pc_slotmap_owner(&m, slot), (unsigned)pc_slotmap_find(&m, host, port));
    assert_int_equal(pc_slotmap_key_owner(&m, "foo", 3), (unsigned)pc_slotmap_find(&m, host, port));
    pc_slotmap_free(&m);
    freeReplyObject(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis7_ip),
        cmocka_unit_test(test_redis7_hostname),
        cmocka_unit_test(test_redis7_unknown_endpoint),
        cmocka_unit_test(test_older_and_newer_node_entries),
        cmocka_unit_test(test_empty_nil_and_unknown_hosts),
        cmocka_unit_test(test_split_ranges_and_gaps),
        cmocka_unit_test(test_hosts_that_prefix_each_other),
        cmocka_unit_test(test_empty_reply),
        cmocka_unit_test(test_every_slot_its_own_primary),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_malformed_hosts),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_init_and_free),
        cmocka_unit_test(test_owner_bounds),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_same_null_and_real),
        cmocka_unit_test(test_redirect_good),
        cmocka_unit_test(test_redirect_bad),
        cmocka_unit_test(test_redirect_limits_and_arguments),
        cmocka_unit_test(test_redirect_agrees_with_map),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
