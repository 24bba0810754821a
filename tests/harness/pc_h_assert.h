/*
 * pc_h_assert.h -- Redis checks that fail the running cmocka test, for
 * the integration tests that look at Redis directly (test_node,
 * test_flags, test_redis_auth).
 *
 * Apart from pc_harness because they assert: the harness is also linked
 * by the benchmarks, which do not run under cmocka. Each function is
 * called from a test's thread, inside a cmocka test.
 */
#ifndef PC_H_ASSERT_H
#define PC_H_ASSERT_H

#include <hiredis/hiredis.h>

/* The reply to a command (redisCommand's format), never NULL: no reply
 * (the connection failed) fails the test. The caller frees it. */
redisReply *pc_h_rcmd(redisContext *rc, const char *fmt, ...);

/* Fails the test unless GET key answers `want` (NULL: the key is absent). */
void pc_h_assert_redis_string(redisContext *rc, const char *key, const char *want);

#endif
