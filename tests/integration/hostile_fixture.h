/*
 * hostile_fixture.h -- what test_hostile.c and test_nonreaders.c share:
 * one Redis for the test program (group_setup, group_teardown), a node
 * on it (node_up, node_down), the normal client that must go on working
 * beside the hostile ones, and the raw-connection checks. Everything runs
 * on the test's thread; what a function allocates it frees, but the
 * client of client_for, which the caller frees (pc_client_free).
 */
#ifndef PC_TEST_HOSTILE_FIXTURE_H
#define PC_TEST_HOSTILE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pc_client.h"
#include "pc_harness.h"
#include "pc_proto.h"

/* AddressSanitizer (the node is built like this test) keeps freed memory
 * in quarantine and adds shadow memory, so the node's RSS grows with what
 * it has freed, not only with what it holds; the memory bounds below are
 * for what a release build holds and get this much room under ASan. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK_KB (256L * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_SLACK_KB (256L * 1024)
#endif
#endif
#ifndef RSS_SLACK_KB
#define RSS_SLACK_KB 0L
#endif

/* The Redis every node of the program runs on (group_setup starts it). */
extern pc_h_proc_t redis;

/* cmocka group setup and teardown: Redis up, and down again. */
int group_setup(void **state);
int group_teardown(void **state);

/* What main() does first: raises the soft limit on open files to the
 * hard one (thousands of connections here, and in the node, which
 * inherits it), ignores SIGPIPE (a write to a closed connection fails),
 * and with PC_TEST_FILTER set (a pattern, * and ? allowed) runs only the
 * tests it matches: one test again and again, by hand. */
void hostile_prelude(void);

/* Starts a node on our Redis with extra flags (NULL-terminated). */
void node_up(pc_h_proc_t *node, const char *first, ...);
/* A clean SIGTERM exit, and buffer accounting that came back to zero. */
void node_down(pc_h_proc_t *node);
/* A client of node's, with this timeout; the caller frees it. */
pc_client_t *client_for(const pc_h_proc_t *node, int timeout_ms);
/* CLOCK_MONOTONIC, microseconds. */
uint64_t now_us(void);

/* A well-behaved client that writes one more key per step and reads back
 * every key it wrote so far. */
typedef struct normal {
    pc_client_t *cl;
    int nkeys;
    const char *tag;
} normal_t;

/* One more key written, and every key written so far read back. */
void normal_step(normal_t *nc);
/* n round trips (SET and GET in turn) on the normal client: all must
 * succeed; their p50 and p99 in microseconds (printed with `when`). */
void latency(normal_t *nc, int n, const char *when, uint64_t *p50, uint64_t *p99);
/* qsort's comparison of uint64_t. */
int cmp_u64(const void *a, const void *b);

/* Whatever the node sent must be whole, well-formed response frames. */
typedef struct seen {
    int n;
    uint32_t status[8];
    uint64_t id[8];
} seen_t;

/* pc_h_decode_responses' callback: each response into a seen_t. */
int collect(void *arg, int i, const pc_response_t *r);
/* Waits until the node closes fd (the socket's receive timeout is the
 * deadline), checks that what came first is well-formed frames, and
 * returns them in *s. */
void expect_closed(int fd, seen_t *s);

#endif
