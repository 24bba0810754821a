/* pc_h_assert.c -- see pc_h_assert.h. */
#include "pc_h_assert.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

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

void pc_h_encode(pc_buf_t *b, const pc_request_t *rq)
{
    assert_int_equal(pc_proto_encode_request(b, rq), 0);
}

int pc_h_exchange(int port, const pc_buf_t *b, int n, const pc_keyring_t *kr, pc_h_reply_t *x,
                  int expect_close, int *closed)
{
    int fd = pc_h_connect(port, 3000);
    assert_true(fd >= 0);
    assert_int_equal(pc_h_send_all(fd, b), 0);
    int got = n == 0 ? 0
              : kr   ? pc_h_read_sealed_responses(fd, n, kr, pc_h_on_reply, x)
                     : pc_h_read_responses(fd, n, pc_h_on_reply, x);
    if (expect_close)
        *closed = pc_h_wait_closed(fd, NULL, 0, NULL);
    close(fd);
    return got;
}

int pc_h_ping_on(int fd)
{
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t ping = {.op = PC_OP_PING, .id = 77};
    pc_h_encode(&b, &ping);
    pc_h_reply_t x = {0};
    int ok = pc_h_send_all(fd, &b) == 0 && pc_h_read_responses(fd, 1, pc_h_on_reply, &x) == 1;
    pc_buf_free(&b);
    return ok ? (int)x.status : -1;
}

int pc_h_socket_reset(void *arg)
{
    int fd = *(int *)arg;
    uint8_t b[65536];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        assert_int_not_equal(n, 0);
        if (n < 0 && errno == ECONNRESET)
            return 1;
        if (n < 0)
            return 0;
    }
}

int pc_h_tcp_state(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
    return ti.tcpi_state;
}
