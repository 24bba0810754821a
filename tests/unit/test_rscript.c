/* Unit tests for pc_rscript: the commands that call the scripts (their
 * arguments in the order the scripts read them, a write's fence last) and
 * how their answers are read. The scripts themselves run against a real
 * redis-server in the integration tests (test_node, test_flags). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pc_error.h"
#include "pc_proto.h"
#include "pc_rkey.h"
#include "pc_rscript.h"

static const char SHA[] = "0123456789abcdef0123456789abcdef01234567";

/* keys = "k" + its companion record, as pc_backend lays them out. */
typedef struct keys {
    uint8_t buf[64];
    size_t rlen, mlen;
} keys_t;

static keys_t keys_of(const char *r)
{
    keys_t k;
    k.rlen = strlen(r);
    memcpy(k.buf, r, k.rlen);
    k.mlen = pc_rkey_companion(k.buf, k.rlen, k.buf + k.rlen);
    return k;
}

/* The command for call as text (it is all printable here), and where its
 * fence begins. */
static void format_text(pc_rscript_call_t *call, const keys_t *k, char *out, size_t cap,
                        size_t *fence_at)
{
    call->keys = k->buf;
    call->rlen = k->rlen;
    call->mlen = k->mlen;
    pc_buf_t b;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_rscript_format(&b, call, fence_at), 0);
    assert_true(b.len < cap);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    pc_buf_free(&b);
}

static void test_get_by_sha(void **state)
{
    (void)state;
    keys_t k = keys_of("p:k");
    char rec[64];
    snprintf(rec, sizeof rec, "%.*s", (int)k.mlen, (const char *)k.buf + k.rlen);
    pc_rscript_call_t call = {.script = PC_RSCRIPT_GET, .sha = SHA};
    char out[512], want[512];
    size_t fence_at;
    format_text(&call, &k, out, sizeof out, &fence_at);
    snprintf(want, sizeof want,
             "*5\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n2\r\n$3\r\np:k\r\n$%zu\r\n%s\r\n", SHA,
             strlen(rec), rec);
    assert_string_equal(out, want);
    assert_int_equal(fence_at, strlen(out)); /* no fence: the whole command */
    assert_false(pc_rscript_writes(PC_RSCRIPT_GET));
}

static void test_eval_before_the_load(void **state)
{
    (void)state;
    keys_t k = keys_of("k");
    pc_rscript_call_t call = {.script = PC_RSCRIPT_DEL, .fence_ms = 1700000000123};
    char out[4096];
    size_t len;
    const char *text = pc_rscript_text(PC_RSCRIPT_DEL, &len);
    char head[64];
    snprintf(head, sizeof head, "*6\r\n$4\r\nEVAL\r\n$%zu\r\n", len);
    format_text(&call, &k, out, sizeof out, NULL);
    assert_memory_equal(out, head, strlen(head));
    assert_memory_equal(out + strlen(head), text, len);
    /* the fence is the last argument */
    const char *tail = "$13\r\n1700000000123\r\n";
    assert_string_equal(out + strlen(out) - strlen(tail), tail);
}

/* SET's ARGV: value, TTL, condition, flags, digest, fence. The digest is
 * computed only when there are flags to keep. */
static void test_set_arguments(void **state)
{
    (void)state;
    keys_t k = keys_of("k");
    char rec[64];
    snprintf(rec, sizeof rec, "%.*s", (int)k.mlen, (const char *)k.buf + k.rlen);
    char out[512], want[512], digest[PC_RKEY_DIGEST_HEX + 1];
    size_t fence_at;

    pc_rscript_call_t plain = {.script = PC_RSCRIPT_SET, .sha = SHA, .val = "hello", .vlen = 5,
                               .fence_ms = 42};
    format_text(&plain, &k, out, sizeof out, &fence_at);
    snprintf(want, sizeof want,
             "*11\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n2\r\n$1\r\nk\r\n$%zu\r\n%s\r\n"
             "$5\r\nhello\r\n$1\r\n0\r\n$0\r\n\r\n$1\r\n0\r\n$0\r\n\r\n$2\r\n42\r\n",
             SHA, strlen(rec), rec);
    assert_string_equal(out, want);
    assert_string_equal(out + fence_at, "$2\r\n42\r\n");

    pc_rkey_digest("hello", 5, digest);
    pc_rscript_call_t typed = {.script = PC_RSCRIPT_SET, .sha = SHA, .val = "hello", .vlen = 5,
                               .ttl_ms = 60000, .cond = PC_COND_NX, .flags = 7,
                               .fence_ms = 42};
    format_text(&typed, &k, out, sizeof out, &fence_at);
    snprintf(want, sizeof want,
             "*11\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n2\r\n$1\r\nk\r\n$%zu\r\n%s\r\n"
             "$5\r\nhello\r\n$5\r\n60000\r\n$2\r\nNX\r\n$1\r\n7\r\n$16\r\n%s\r\n$2\r\n42\r\n",
             SHA, strlen(rec), rec, digest);
    assert_string_equal(out, want);

    pc_rscript_call_t xx = {.script = PC_RSCRIPT_SET, .sha = SHA, .cond = PC_COND_XX,
                            .fence_ms = 1};
    format_text(&xx, &k, out, sizeof out, NULL); /* an empty value, val NULL */
    assert_non_null(strstr(out, "$0\r\n\r\n$1\r\n0\r\n$2\r\nXX\r\n"));
}

static void test_expire_arguments(void **state)
{
    (void)state;
    keys_t k = keys_of("k");
    char out[512];
    size_t fence_at;
    pc_rscript_call_t call = {.script = PC_RSCRIPT_EXPIRE, .sha = SHA,
                              .ttl_ms = 4611686018427387904ull, .fence_ms = 9};
    format_text(&call, &k, out, sizeof out, &fence_at);
    assert_memory_equal(out, "*7\r\n", 4);
    assert_string_equal(out + fence_at, "$1\r\n9\r\n");
    const char *ttl = "$19\r\n4611686018427387904\r\n$1\r\n9\r\n";
    assert_string_equal(out + strlen(out) - strlen(ttl), ttl);
    assert_true(pc_rscript_writes(PC_RSCRIPT_EXPIRE));
}

/* A buffer with a limit too small: PC_ENOMEM, never a partial success. */
static void test_out_of_room(void **state)
{
    (void)state;
    keys_t k = keys_of("k");
    pc_rscript_call_t call = {.script = PC_RSCRIPT_SET, .sha = SHA, .keys = k.buf, .rlen = k.rlen,
                              .mlen = k.mlen, .val = "v", .vlen = 1};
    pc_buf_t b;
    pc_buf_init(&b, 64);
    assert_int_equal(pc_rscript_format(&b, &call, NULL), PC_ENOMEM);
    pc_buf_free(&b);
}

/* ---- answers ---------------------------------------------------------- */

static redisReply str(const char *s)
{
    redisReply r = {.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};
    return r;
}

static void test_get_answers(void **state)
{
    (void)state;
    pc_rscript_value_t v;
    redisReply nil = {.type = REDIS_REPLY_NIL};
    assert_int_equal(pc_rscript_get_reply(&nil, &v), 0);
    assert_false(v.found);

    /* value, TTL, and a record that vouches for it: its flags */
    char digest[PC_RKEY_DIGEST_HEX + 1];
    pc_rkey_digest("hello", 5, digest);
    redisReply val = str("hello"), pttl = {.type = REDIS_REPLY_INTEGER, .integer = 1500};
    redisReply f = str("7"), d = str(digest);
    redisReply *fd[] = {&f, &d};
    redisReply rec = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = fd};
    redisReply *el[] = {&val, &pttl, &rec};
    redisReply all = {.type = REDIS_REPLY_ARRAY, .elements = 3, .element = el};
    assert_int_equal(pc_rscript_get_reply(&all, &v), 0);
    assert_true(v.found);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "hello", 5);
    assert_int_equal(v.flags, 7);
    assert_int_equal(v.pttl_ms, 1500);

    /* a record for another value (written over by another program): 0 */
    redisReply other = str("bye");
    el[0] = &other;
    assert_int_equal(pc_rscript_get_reply(&all, &v), 0);
    assert_int_equal(v.flags, 0);
    el[0] = &val;

    /* no record, no TTL (PTTL -1) */
    redisReply empty = {.type = REDIS_REPLY_ARRAY, .elements = 0};
    redisReply none = {.type = REDIS_REPLY_INTEGER, .integer = -1};
    el[1] = &none;
    el[2] = &empty;
    assert_int_equal(pc_rscript_get_reply(&all, &v), 0);
    assert_int_equal(v.flags, 0);
    assert_int_equal(v.pttl_ms, -1);

    /* not the script's shape: -1 */
    all.elements = 2;
    assert_int_equal(pc_rscript_get_reply(&all, &v), -1);
    all.elements = 3;
    el[1] = &val; /* a string where the TTL goes */
    assert_int_equal(pc_rscript_get_reply(&all, &v), -1);
    redisReply one = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    assert_int_equal(pc_rscript_get_reply(&one, &v), -1);
}

static void test_write_answers(void **state)
{
    (void)state;
    redisReply r = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    assert_int_equal(pc_rscript_write_reply(&r), 1);
    r.integer = 0; /* NX on a key that exists, XX on one that does not */
    assert_int_equal(pc_rscript_write_reply(&r), 0);
    r.integer = 3; /* DEL's count */
    assert_int_equal(pc_rscript_write_reply(&r), 1);
    r.integer = -1; /* past the fence */
    assert_int_equal(pc_rscript_write_reply(&r), -1);
    redisReply nil = {.type = REDIS_REPLY_NIL};
    assert_int_equal(pc_rscript_write_reply(&nil), 0);
}

/* Each write script checks its fence before anything else, and reads it
 * from the ARGV the command puts it in. */
static void test_fence_first(void **state)
{
    (void)state;
    static const struct {
        enum pc_rscript sc;
        const char *argv;
    } w[] = {{PC_RSCRIPT_SET, "ARGV[6]"},
             {PC_RSCRIPT_DEL, "ARGV[1]"},
             {PC_RSCRIPT_EXPIRE, "ARGV[2]"}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        size_t len;
        const char *text = pc_rscript_text(w[i].sc, &len);
        assert_int_equal(strlen(text), len);
        assert_memory_equal(text, "local t = redis.call('TIME') ", 29);
        const char *fence = strstr(text, w[i].argv);
        assert_non_null(fence);
        assert_true(fence < strstr(text, "then return -1 end"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_by_sha),
        cmocka_unit_test(test_eval_before_the_load),
        cmocka_unit_test(test_set_arguments),
        cmocka_unit_test(test_expire_arguments),
        cmocka_unit_test(test_out_of_room),
        cmocka_unit_test(test_get_answers),
        cmocka_unit_test(test_write_answers),
        cmocka_unit_test(test_fence_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
