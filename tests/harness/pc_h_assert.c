/* pc_h_assert.c -- see pc_h_assert.h. */
#include "pc_h_assert.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

redisReply *pc_h_rcmd(redisContext *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (r == NULL)
        fail_msg("redis: no reply (%s)", rc->err ? rc->errstr : "?");
    return r;
}

void pc_h_assert_redis_string(redisContext *rc, const char *key, const char *want)
{
    redisReply *r = pc_h_rcmd(rc, "GET %s", key);
    if (want == NULL) {
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    } else {
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_int_equal(r->len, strlen(want));
        assert_memory_equal(r->str, want, r->len);
    }
    freeReplyObject(r);
}
