/*
 * pc_h_assert.h -- harness helpers that fail the running cmocka test:
 * Redis checks for the integration tests that look at Redis directly
 * (test_node, test_flags, test_redis_auth), raw-protocol exchanges
 * with a node (test_security, test_client_auth), and a socket's reset
 * (test_hostile, test_io).
 *
 * Apart from pc_harness because they assert: the harness is also linked
 * by the benchmarks, which do not run under cmocka. Each function is
 * called from a test's thread, inside a cmocka test.
 */
#ifndef PC_H_ASSERT_H
#define PC_H_ASSERT_H

#include <hiredis/hiredis.h>

#include "pc_harness.h"
#include "pc_proto.h"
#include "pc_seal.h"

/* The reply to a command (redisCommand's format), never NULL: no reply
 * (the connection failed) fails the test. The caller frees it. */
redisReply *pc_h_rcmd(redisContext *rc, const char *fmt, ...);

/* Fails the test unless GET key answers `want` (NULL: the key is absent). */
void pc_h_assert_redis_string(redisContext *rc, const char *key, const char *want);

/* Appends rq's frame to b; fails the test if it cannot be encoded. */
void pc_h_encode(pc_buf_t *b, const pc_request_t *rq);

/*
 * Sends the frames in b on a new connection to 127.0.0.1:port (3 s
 * receive timeout) and reads n replies into x (pc_h_on_reply), sealed
 * ones if kr != NULL. Returns how many came; *closed = the node hung up
 * afterwards (checked, and closed written, only when expect_close). The
 * connection is closed on return. Fails the test if it cannot connect or
 * send.
 */
int pc_h_exchange(int port, const pc_buf_t *b, int n, const pc_keyring_t *kr, pc_h_reply_t *x,
                  int expect_close, int *closed);

/* PING on fd: the status of the answer, or -1 (none: closed, timed out). */
int pc_h_ping_on(int fd);

/* For pc_h_poll, arg an int *fd: reads what fd has (without waiting) and
 * returns 1 once the node reset it (ECONNRESET, after what its receive
 * queue held), 0 while it is open. An orderly end (EOF) fails the test:
 * a node that closed in order left the kernel delivering every answer it
 * had queued. It reads: polled on a client that is meant not to read,
 * it turns it into one (pc_h_tcp_state looks without reading). */
int pc_h_socket_reset(void *arg);

/* The TCP state of socket fd (TCP_ESTABLISHED; TCP_CLOSE_WAIT once the
 * other end closed in order; TCP_CLOSE once it reset a socket this end
 * never closed), from TCP_INFO: nothing is read. Fails the test if the
 * kernel does not say. */
int pc_h_tcp_state(int fd);

#endif
