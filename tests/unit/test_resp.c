/*
 * test_resp.c -- pc_resp: Redis protocol commands (multibulk and inline,
 * whole, split at every byte, pipelined, and every way they can be
 * wrong, with Redis' own error words) and replies (exact bytes, RESP2 and
 * RESP3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pc_resp.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static void assert_arg(const pc_resp_cmd_t *c, uint32_t i, const char *want, size_t n)
{
    assert_true(i < c->argc);
    assert_int_equal(c->argv[i].len, n);
    assert_memory_equal(c->argv[i].ptr, want, n);
}

static void test_multibulk(void **state)
{
    (void)state;
    pc_resp_parser_t p;
    pc_resp_parser_init(&p, NULL);
    static const char cmd[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\na\r\nb\0c\r\n";
    const size_t len = sizeof cmd - 1;
    pc_resp_cmd_t c;
    size_t used;
    assert_int_equal(pc_resp_parse(&p, (const uint8_t *)cmd, len, &c, &used), 1);
    assert_int_equal(used, len);
    assert_int_equal(c.argc, 3);
    assert_arg(&c, 0, "SET", 3);
    assert_arg(&c, 1, "k", 1);
    assert_arg(&c, 2, "a\r\nb\0c", 6); /* binary-safe */
    /* Every shorter prefix: not whole yet, nothing consumed. */
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(pc_resp_parse(&p, (const uint8_t *)cmd, n, &c, &used), 0);
        assert_int_equal(used, 0);
    }
    /* Pipelined: one at a time, in order. */
    static const char two[] = "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    assert_int_equal(pc_resp_parse(&p, S(two), &c, &used), 1);
    assert_int_equal(used, 14);
    assert_arg(&c, 0, "PING", 4);
    assert_int_equal(pc_resp_parse(&p, (const uint8_t *)two + used, sizeof two - 1 - used, &c,
                                   &used),
                     1);
    assert_int_equal(c.argc, 2);
    assert_arg(&c, 1, "k", 1);
    /* *0 and an empty bulk. */
    assert_int_equal(pc_resp_parse(&p, S("*0\r\n"), &c, &used), 1);
    assert_int_equal(c.argc, 0);
    assert_int_equal(used, 4);
    assert_int_equal(pc_resp_parse(&p, S("*1\r\n$0\r\n\r\n"), &c, &used), 1);
    assert_int_equal(c.argc, 1);
    assert_int_equal(c.argv[0].len, 0);
    pc_resp_parser_free(&p);
}

static void test_inline(void **state)
{
    (void)state;
    pc_resp_parser_t p;
    pc_resp_parser_init(&p, NULL);
    pc_resp_cmd_t c;
    size_t used;
    assert_int_equal(pc_resp_parse(&p, S("PING\r\n"), &c, &used), 1);
    assert_int_equal(c.argc, 1);
    assert_int_equal(used, 6);
    assert_int_equal(pc_resp_parse(&p, S("  set k\t \"v w\"\n"), &c, &used), 1);
    assert_int_equal(c.argc, 4); /* quotes are not interpreted */
    assert_arg(&c, 0, "set", 3);
    assert_arg(&c, 2, "\"v", 2);
    assert_int_equal(pc_resp_parse(&p, S("\r\n"), &c, &used), 1);
    assert_int_equal(c.argc, 0);
    assert_int_equal(used, 2);
    assert_int_equal(pc_resp_parse(&p, S("GET k"), &c, &used), 0); /* no end of line yet */
    pc_resp_parser_free(&p);
}

static void test_errors(void **state)
{
    (void)state;
    pc_resp_limits_t lim = {.max_args = 4, .max_bulk = 16, .max_inline = 32};
    pc_resp_parser_t p;
    pc_resp_parser_init(&p, &lim);
    static const struct {
        const char *in;
        int rc;
        const char *why;
    } cases[] = {
        {"*x\r\n", PC_EPROTO, "Protocol error: invalid multibulk length"},
        {"*1\n", 0, ""}, /* as Redis: a header ends at \r\n, so it waits for one */
        {"*1\nx\r\n", PC_EPROTO, "Protocol error: invalid multibulk length"},
        {"*5\r\n", PC_ETOOBIG, "Protocol error: invalid multibulk length"},
        {"*2\r\n:1\r\n", PC_EPROTO, "Protocol error: expected '$', got ':'"},
        {"*1\r\n$-1\r\n", PC_EPROTO, "Protocol error: invalid bulk length"},
        {"*1\r\n$17\r\n", PC_ETOOBIG, "Protocol error: invalid bulk length"},
        {"*1\r\n$1x\r\n", PC_EPROTO, "Protocol error: invalid bulk length"},
        {"*1\r\n$3\r\nabcX\n", PC_EPROTO, "Protocol error: bulk not followed by CRLF"},
        {"*1\r\n$3\r\n", 0, ""},
        {"*1\r\n$3\r\nab", 0, ""},
        {"*1\r\n$1234567890123456789012345678901234567890123456789012345678901234567", PC_ETOOBIG,
         "Protocol error: too big bulk count string"},
        {"a b c d e f\n", PC_ETOOBIG, "Protocol error: too many arguments in inline request"},
        {"GET 01234567890123456\n", PC_ETOOBIG, "Protocol error: invalid bulk length"},
        {"0123456789012345678901234567890123456789", PC_ETOOBIG,
         "Protocol error: too big inline request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_resp_cmd_t c;
        size_t used = 99;
        int rc = pc_resp_parse(&p, (const uint8_t *)cases[i].in, strlen(cases[i].in), &c, &used);
        if (rc != cases[i].rc || strcmp(pc_resp_why(&p), cases[i].why) != 0)
            fail_msg("\"%s\": rc %d why \"%s\", want %d \"%s\"", cases[i].in, rc, pc_resp_why(&p),
                     cases[i].rc, cases[i].why);
        assert_int_equal(used, 0);
    }
    pc_resp_parser_free(&p);
}

static void expect(pc_buf_t *b, const uint8_t *want, size_t n)
{
    if (b->len != n || memcmp(b->data, want, n) != 0)
        fail_msg("got \"%.*s\", want \"%.*s\"", (int)b->len, (const char *)b->data, (int)n,
                 (const char *)want);
    pc_buf_reset(b);
}

static void test_replies(void **state)
{
    (void)state;
    pc_buf_t b;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_resp_simple(&b, "OK"), 0);
    expect(&b, S("+OK\r\n"));
    assert_int_equal(pc_resp_error(&b, "ERR no\r\nsuch"), 0); /* one line, always */
    expect(&b, S("-ERR no\r\n"));
    assert_int_equal(pc_resp_int(&b, -42), 0);
    expect(&b, S(":-42\r\n"));
    assert_int_equal(pc_resp_int(&b, 0), 0);
    expect(&b, S(":0\r\n"));
    assert_int_equal(pc_resp_int(&b, INT64_MAX), 0);
    expect(&b, S(":9223372036854775807\r\n"));
    assert_int_equal(pc_resp_int(&b, INT64_MIN), 0);
    expect(&b, S(":-9223372036854775808\r\n"));
    /* a number as a command's argument: a bulk of its digits */
    assert_int_equal(pc_resp_bulk_int(&b, 0), 0);
    expect(&b, S("$1\r\n0\r\n"));
    assert_int_equal(pc_resp_bulk_int(&b, 4611686018427387904), 0); /* 2^62 */
    expect(&b, S("$19\r\n4611686018427387904\r\n"));
    assert_int_equal(pc_resp_bulk_int(&b, -15), 0);
    expect(&b, S("$3\r\n-15\r\n"));
    /* a bulk into a buffer whose cap is exactly its size, then one over */
    pc_buf_t small;
    pc_buf_init(&small, 9);
    assert_int_equal(pc_resp_bulk(&small, "abc", 3), 0);
    expect(&small, S("$3\r\nabc\r\n"));
    assert_int_equal(pc_resp_bulk(&small, "abcd", 4), PC_ETOOBIG);
    assert_int_equal(small.len, 0); /* nothing of it written */
    pc_buf_free(&small);
    assert_int_equal(pc_resp_bulk(&b, "a\r\nb", 4), 0);
    expect(&b, S("$4\r\na\r\nb\r\n"));
    assert_int_equal(pc_resp_bulk(&b, NULL, 0), 0);
    expect(&b, S("$0\r\n\r\n"));
    assert_int_equal(pc_resp_null(&b, 0), 0);
    expect(&b, S("$-1\r\n"));
    assert_int_equal(pc_resp_null(&b, 1), 0);
    expect(&b, S("_\r\n"));
    assert_int_equal(pc_resp_null_array(&b, 0), 0);
    expect(&b, S("*-1\r\n"));
    assert_int_equal(pc_resp_array(&b, 3), 0);
    expect(&b, S("*3\r\n"));
    assert_int_equal(pc_resp_map(&b, 2, 1), 0);
    expect(&b, S("%2\r\n"));
    assert_int_equal(pc_resp_map(&b, 2, 0), 0);
    expect(&b, S("*4\r\n"));
    assert_int_equal(pc_resp_bool(&b, 1, 1), 0);
    expect(&b, S("#t\r\n"));
    assert_int_equal(pc_resp_bool(&b, 0, 0), 0);
    expect(&b, S(":0\r\n"));
    assert_int_equal(pc_resp_double(&b, 1.5, 1), 0);
    expect(&b, S(",1.5\r\n"));
    assert_int_equal(pc_resp_double(&b, 1.5, 0), 0);
    expect(&b, S("$3\r\n1.5\r\n"));
    pc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
