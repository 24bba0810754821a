/*
 * test_log.c -- pc_log: levels, the text line, and the JSON line
 * (--log-format json): one object per line with time, level, node and
 * msg, strings escaped (quotes, backslashes, control characters), so
 * that a log shipper can parse every line whatever a message holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pc_log.h"

static char *logged(int json, int level, const char *name, const char *msg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    pc_log_t log = {.out = f, .level = PC_LOG_INFO, .name = name, .json = json};
    pc_log_write(&log, level, "%s", msg);
    fclose(f);
    return buf;
}

static void test_text_and_levels(void **state)
{
    (void)state;
    char *s = logged(0, PC_LOG_WARN, "n1", "redis: connection lost");
    /* 2026-11-27T17:40:00.123Z WARN  peercached[n1] redis: connection lost */
    assert_int_equal(strlen(s), 24 + 1 + 5 + 1 + 14 + 1 + 22 + 1);
    assert_memory_equal(s + 23, "Z WARN  peercached[n1] redis: connection lost\n", 46);
    free(s);
    s = logged(0, PC_LOG_DEBUG, "n1", "dropped"); /* above the level */
    assert_string_equal(s, "");
    free(s);
}

static void test_json_line(void **state)
{
    (void)state;
    char *s = logged(1, PC_LOG_ERROR, "n\"1", "say \"hi\"\\ \n\t\x01 done");
    /* {"time":"2026-11-27T17:40:00.123Z","level":"error","node":...} */
    assert_memory_equal(s, "{\"time\":\"", 9);
    assert_int_equal(s[9 + 23], 'Z');
    const char *rest = s + 9 + 24;
    assert_string_equal(rest, "\",\"level\":\"error\",\"node\":\"n\\\"1\","
                              "\"msg\":\"say \\\"hi\\\"\\\\ \\n\\t\\u0001 done\"}\n");
    assert_ptr_equal(strchr(s, '\n'), s + strlen(s) - 1); /* one line */
    free(s);
    s = logged(1, PC_LOG_INFO, NULL, "\xff not utf-8");
    assert_non_null(strstr(s, "\"node\":\"-\",\"msg\":\"? not utf-8\"}\n"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_levels),
        cmocka_unit_test(test_json_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
