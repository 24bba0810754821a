/*
 * test_hostile.c -- hostile clients against one live node (real
 * redis-server, real peercached, loopback): malformed and oversized input,
 * thousands of idle and half-sent connections, slowloris, a crowd of
 * connections waiting to be accepted at once, and legal frames that must
 * be refused before their work is done (a body far over what its op can
 * use, a TTL Redis cannot take). Clients that stop reading their replies
 * are test_nonreaders.c's; the fixture both use is hostile_fixture.h.
 *
 * What every test holds the node to: the hostile connection is closed (or
 * answered with an error and closed), the node keeps answering, a normal
 * client on the side keeps working and reads back what it wrote, and the
 * node's memory stays bounded. Waits are polls with deadlines; the only
 * sleeps pace an attacker, never synchronise with the node.
 *
 * The existing limits each have a test in test_node.c too:
 * --max-connections (test_max_connections_and_idle_timeout: the excess is
 * told BUSY and closed at once), --idle-timeout (same), --max-inflight
 * (test_max_inflight_pauses_reading), --max-key / --max-value /
 * --max-mget-keys (test_request_limits_on_the_wire), --max-output
 * (test_slow_reader_memory_is_bounded).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hostile_fixture.h"
#include "pc_h_assert.h"
#include "pc_proto_reader.h"
#include "pc_uring.h"

/* ---- helpers (the shared fixture is hostile_fixture.h) ---------------- */

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* ---- raw connections ---------------------------------------------------- */

static int send_bytes(int fd, const void *p, size_t n)
{
    pc_buf_t b = {.data = (uint8_t *)p, .len = n, .cap = n};
    return pc_h_send_all(fd, &b);
}

/* One connection-level error (id 0, the given status), then the close. */
static void expect_error_then_close(int port, const void *bytes, size_t n, uint32_t status)
{
    int fd = pc_h_connect(port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(send_bytes(fd, bytes, n), 0);
    seen_t s;
    expect_closed(fd, &s);
    close(fd);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.id[0], 0);
    assert_int_equal(s.status[0], status);
}

/*
 * What the node will make of a byte stream, worked out with the same
 * reader and decoder and the node's (default) limits: 1 if it holds a
 * frame the node counts as bad (and closes on), 0 if every whole frame is
 * a request it answers.
 */
static int oracle_bad(const uint8_t *p, size_t n)
{
    pc_proto_reader_t rd;
    pc_proto_reader_init(&rd, 0);
    pc_proto_decoder_t *dec = NULL;
    assert_int_equal(pc_proto_decoder_new(NULL, &dec), 0);
    assert_int_equal(pc_proto_reader_feed(&rd, p, n), 0);
    int bad = 0;
    for (;;) {
        const uint8_t *body;
        uint32_t len;
        int rc = pc_proto_reader_next(&rd, &body, &len);
        if (rc <= 0) {
            bad = rc < 0;
            break;
        }
        pc_request_t rq;
        rc = pc_proto_decode_request(dec, body, len, &rq);
        if (rc == PC_EPROTO || rc == PC_ENOMEM) {
            bad = 1;
            break;
        }
    }
    pc_proto_decoder_free(&dec);
    pc_proto_reader_free(&rd);
    return bad;
}

/* Sends the stream, half-closes (so a stream that ends mid-frame ends),
 * and waits for the node to close the connection. */
static void send_stream_expect_close(int port, const uint8_t *p, size_t n)
{
    int fd = pc_h_connect(port, 5000);
    assert_true(fd >= 0);
    /* the node may hang up mid-send after a bad frame: fine */
    (void)send_bytes(fd, p, n);
    shutdown(fd, SHUT_WR);
    seen_t s;
    expect_closed(fd, &s);
    close(fd);
}

/* ---- 1. malformed and oversized input ------------------------------------ */

static void test_hostile_input_closes_only_that_connection(void **state)
{
    (void)state;
    pc_h_proc_t node;
    node_up(&node, NULL);
    normal_t nc = {client_for(&node, 5000), 0, "input"};
    normal_step(&nc);
    long rss0 = pc_h_rss_kb(node.pid);
    int64_t bad0 = pc_h_stat(nc.cl, "bad_frames");
    int64_t conns0 = pc_h_stat(nc.cl, "connections");
    int expect_bad = 0;

    /* random streams, the length prefix random too */
    uint64_t rng = 0x2545f4914f6cdd1dull;
    uint8_t *buf = malloc(16384);
    for (int seed = 0; seed < 8; seed++) {
        size_t n = 1 + xorshift(&rng) % 4096;
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)xorshift(&rng);
        expect_bad += oracle_bad(buf, n);
        send_stream_expect_close(node.port, buf, n);
        normal_step(&nc);
    }
    /* random bodies behind a prefix that fits: they reach the decoder */
    for (int seed = 0; seed < 8; seed++) {
        size_t n = 1 + xorshift(&rng) % 4096;
        buf[0] = 0;
        buf[1] = 0;
        buf[2] = (uint8_t)(n >> 8);
        buf[3] = (uint8_t)n;
        for (size_t i = 0; i < n; i++)
            buf[4 + i] = (uint8_t)xorshift(&rng);
        /* half of them look like a request array at least */
        if (seed % 2 == 0)
            buf[4] = (uint8_t)(0x90 | (xorshift(&rng) % 16));
        expect_bad += oracle_bad(buf, n + 4);
        send_stream_expect_close(node.port, buf, n + 4);
        normal_step(&nc);
    }
    fprintf(stderr, "random input: %d of 16 streams held a bad frame\n", expect_bad);

    /* a length prefix of 2^32-1, and of max-frame + 1 (default max-frame) */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x90};
    expect_error_then_close(node.port, huge, sizeof huge, PC_ST_TOO_LARGE);
    expect_bad++;
    normal_step(&nc);
    uint32_t over = PC_PROTO_DEFAULT_MAX_FRAME + 1;
    const uint8_t over_max[] = {(uint8_t)(over >> 24), (uint8_t)(over >> 16),
                                (uint8_t)(over >> 8), (uint8_t)over, 0x93};
    expect_error_then_close(node.port, over_max, sizeof over_max, PC_ST_TOO_LARGE);
    expect_bad++;
    normal_step(&nc);

    /* an array header claiming 2^28 elements in a 5-byte body */
    const uint8_t bomb[] = {0, 0, 0, 5, 0xdd, 0x10, 0x00, 0x00, 0x00};
    expect_error_then_close(node.port, bomb, sizeof bomb, PC_ST_BAD_REQUEST);
    expect_bad++;
    normal_step(&nc);

    /* 10,000 nested arrays */
    enum { DEPTH = 10000 };
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = (uint8_t)((DEPTH + 1) >> 8);
    buf[3] = (uint8_t)(DEPTH + 1);
    memset(buf + 4, 0x91, DEPTH);
    buf[4 + DEPTH] = 0xc0;
    expect_error_then_close(node.port, buf, DEPTH + 5, PC_ST_BAD_REQUEST);
    expect_bad++;
    normal_step(&nc);

    /* a truncated frame, then the client hangs up: nothing to answer, the
     * node lets the connection go */
    int fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    const uint8_t half[] = {0, 0, 0, 50, 0x93, 0x03, 0x01};
    assert_int_equal(send_bytes(fd, half, sizeof half), 0);
    close(fd);
    pc_h_stat_arg_t back = {nc.cl, "connections", conns0};
    assert_true(pc_h_poll(pc_h_stat_is, &back, 5000));
    normal_step(&nc);

    /* garbage after a valid request: the request is answered, then the
     * error, then the close */
    pc_buf_t out;
    pc_buf_init(&out, 0);
    pc_request_t ping = {.op = PC_OP_PING, .id = 77};
    assert_int_equal(pc_proto_encode_request(&out, &ping), 0);
    /* (0xc1 first would be a sealed peer frame: closed without a word) */
    const uint8_t garbage[] = {0, 0, 0, 3, 0x92, 0xc1, 0xc1};
    pc_buf_append(&out, garbage, sizeof garbage);
    fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(pc_h_send_all(fd, &out), 0);
    pc_buf_free(&out);
    seen_t s;
    expect_closed(fd, &s);
    close(fd);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.id[0], 77);
    assert_int_equal(s.status[0], PC_ST_OK);
    assert_int_equal(s.id[1], 0);
    assert_int_equal(s.status[1], PC_ST_BAD_REQUEST);
    expect_bad++;
    normal_step(&nc);

    /* the counter saw exactly the bad frames sent, the hostile connections
     * are all gone, their buffers with them, and memory is where it was */
    assert_int_equal(pc_h_stat(nc.cl, "bad_frames") - bad0, expect_bad);
    assert_true(pc_h_poll(pc_h_stat_is, &back, 5000));
    int64_t bufmem = pc_h_stat(nc.cl, "buffer_memory");
    long rss1 = pc_h_rss_kb(node.pid);
    fprintf(stderr, "hostile input: node RSS %ld KiB before, %ld KiB after; buffers %lld bytes\n",
            rss0, rss1, (long long)bufmem);
    assert_true(bufmem >= 0 && bufmem < 64 * 1024); /* the normal client's only */
    assert_true(rss1 - rss0 < 32 * 1024 + RSS_SLACK_KB);
    free(buf);
    pc_client_free(&nc.cl);
    node_down(&node);
}

/* ---- 2. thousands of idle and half-sent connections --------------------- */

enum { MANY = 5000 };

/* A partial frame: a length prefix that promises 100 bytes, and 3 of them. */
static const uint8_t partial[] = {0, 0, 0, 100, 0x93, 0x03, 0x01};

static void open_many(int port, int *fds, int n, int half_sent)
{
    for (int i = 0; i < n; i++) {
        fds[i] = pc_h_connect(port, 3000);
        assert_true(fds[i] >= 0);
        if (half_sent)
            assert_int_equal(send_bytes(fds[i], partial, sizeof partial), 0);
    }
}

static void close_many(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* Still open: no FIN and no data waiting. */
static int still_open(int fd)
{
    uint8_t b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void test_5000_idle_and_half_sent_connections(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2 * MANY + 256) {
        fprintf(stderr, "open file limit %llu: too low for %d connections, skipped\n",
                (unsigned long long)rl.rlim_cur, MANY);
        skip();
    }
    int *idle = malloc(MANY / 2 * sizeof *idle), *half = malloc(MANY / 2 * sizeof *half);

    /* A frame timeout well past the measurement, so that the half-sent
     * connections are all still open while it runs; and no limit per
     * address, since all 5000 come from 127.0.0.1 (the limit has a test of
     * its own in test_client_auth). */
    pc_h_proc_t node;
    node_up(&node, "--frame-timeout", "60s", "--max-conns-per-source", "0", NULL);
    normal_t nc = {client_for(&node, 5000), 0, "many"};
    normal_step(&nc);
    uint64_t p50a, p99a, p50b, p99b;
    latency(&nc, 2000, "before", &p50a, &p99a);
    long rss0 = pc_h_rss_kb(node.pid);

    open_many(node.port, idle, MANY / 2, 0);
    open_many(node.port, half, MANY / 2, 1);
    pc_h_stat_arg_t all = {nc.cl, "connections", MANY + 1};
    assert_true(pc_h_poll(pc_h_stat_at_least, &all, 20000));
    /* every half-sent frame has been read: each holds a small buffer */
    pc_h_stat_arg_t held = {nc.cl, "buffer_memory", MANY / 2 * (int64_t)sizeof partial};
    assert_true(pc_h_poll(pc_h_stat_at_least, &held, 20000));

    latency(&nc, 2000, "with 5000 idle and half-sent connections", &p50b, &p99b);
    normal_step(&nc);
    long rss1 = pc_h_rss_kb(node.pid);
    int64_t bufmem = pc_h_stat(nc.cl, "buffer_memory");
    fprintf(stderr, "%d connections: node RSS %ld KiB before, %ld KiB with them (+%ld KiB); "
            "connection buffers %lld bytes\n",
            MANY, rss0, rss1, rss1 - rss0, (long long)bufmem);
    assert_int_equal(pc_h_stat(nc.cl, "connections"), MANY + 1);
    assert_int_equal(pc_h_stat(nc.cl, "frame_timeouts"), 0);
    /*
     * The machine is shared (2 cores, other builds and tests), so only a
     * generous bound is asserted: 250 ms is hundreds of times a loopback
     * round trip, and what it catches is a node that stalls on its idle
     * connections (a scan per request, a wait per connection), not
     * jitter. The figures printed above are the measurement.
     */
    assert_true(p99b < 250 * 1000);
    /*
     * Memory. An idle connection holds no buffer at all, a half-sent one
     * just its partial frame (a 256-byte buffer): the exact count of
     * connection buffers must stay under 512 bytes each. (When every
     * connection kept a 64 KiB read chunk, these 2500 allocated 160 MiB;
     * RSS showed only the pages touched, about 20 MiB.) Add the conn_t
     * and libuv's share, about a kilobyte a connection: 5000 fit in a few
     * MiB of RSS, and 16 MiB leaves room for malloc's own overhead.
     */
    assert_true(bufmem < MANY / 2 * 512);
    assert_true(rss1 - rss0 < 16 * 1024 + RSS_SLACK_KB);
    close_many(idle, MANY / 2);
    close_many(half, MANY / 2);
    pc_h_stat_arg_t gone = {nc.cl, "connections", 1};
    assert_true(pc_h_poll(pc_h_stat_is, &gone, 20000));
    pc_client_free(&nc.cl);
    node_down(&node);

    /* The same crowd on a node with a 1 s frame timeout: the half-sent go
     * after it, the idle stay until their idle timeout. */
    node_up(&node, "--frame-timeout", "1s", "--idle-timeout", "10s", "--max-conns-per-source", "0",
            NULL);
    nc = (normal_t){client_for(&node, 5000), 0, "many2"};
    normal_step(&nc);
    uint64_t t0 = pc_h_now_ms();
    open_many(node.port, half, MANY / 2, 1);
    open_many(node.port, idle, MANY / 2, 0);
    pc_h_stat_arg_t timed = {nc.cl, "frame_timeouts", MANY / 2};
    assert_true(pc_h_poll(pc_h_stat_is, &timed, 8000));
    uint64_t t1 = pc_h_now_ms();
    fprintf(stderr, "frame timeout 1 s: %d half-sent connections closed %llu ms after the first "
            "was opened\n", MANY / 2, (unsigned long long)(t1 - t0));
    normal_step(&nc);
    assert_int_equal(pc_h_stat(nc.cl, "idle_timeouts"), 0);
    for (int i = 0; i < MANY / 2; i++)
        assert_true(still_open(idle[i]));
    for (int i = 0; i < MANY / 2; i++) {
        seen_t s;
        expect_closed(half[i], &s); /* told why, then closed */
        assert_int_equal(s.n, 1);
        assert_int_equal(s.status[0], PC_ST_BAD_REQUEST);
    }
    pc_h_stat_arg_t idled = {nc.cl, "idle_timeouts", MANY / 2};
    assert_true(pc_h_poll(pc_h_stat_at_least, &idled, 30000));
    for (int i = 0; i < MANY / 2; i++) {
        seen_t s;
        expect_closed(idle[i], &s);
        assert_int_equal(s.n, 0);
    }
    normal_step(&nc);
    close_many(idle, MANY / 2);
    close_many(half, MANY / 2);
    pc_client_free(&nc.cl);
    node_down(&node);
    free(idle);
    free(half);
}

/* ---- 3. slowloris ------------------------------------------------------- */

/*
 * Two clients dribble one byte every 200 ms. The attacker's frame never
 * ends; it is closed at the frame timeout although it is never idle. The
 * other is slow but honest: each of its PINGs arrives whole within the
 * frame timeout, so it is served however long it goes on.
 */
static void test_slowloris(void **state)
{
    (void)state;
    pc_h_proc_t node;
    node_up(&node, "--frame-timeout", "2500ms", "--idle-timeout", "1s", NULL);
    normal_t nc = {client_for(&node, 5000), 0, "slow"};
    normal_step(&nc);

    int bad = pc_h_connect(node.port, 5000), slow = pc_h_connect(node.port, 5000);
    assert_true(bad >= 0 && slow >= 0);
    uint8_t frame[68] = {0, 0, 0, 64, 0x93, 0x03};
    memset(frame + 6, 0xa0, sizeof frame - 6);
    pc_buf_t pings;
    pc_buf_init(&pings, 0);
    for (int i = 0; i < 4; i++) {
        pc_request_t ping = {.op = PC_OP_PING, .id = (uint64_t)i + 1};
        assert_int_equal(pc_proto_encode_request(&pings, &ping), 0);
    }
    uint64_t start = pc_h_now_ms(), closed_at = 0;
    size_t sent = 0;
    while (closed_at == 0 || sent < pings.len) {
        if (closed_at == 0)
            assert_int_equal(send(bad, frame + sent % sizeof frame, 1, 0), 1);
        if (sent < pings.len)
            assert_int_equal(send(slow, pings.data + sent, 1, 0), 1);
        sent++;
        /* the normal client, served throughout (and so never idle) */
        assert_int_equal(pc_client_ping(nc.cl), 0);
        /* the pace of the attack; a close ends it at once */
        struct pollfd p = {.fd = bad, .events = POLLIN};
        if (poll(&p, closed_at == 0 ? 1 : 0, 200) == 1) {
            seen_t s;
            expect_closed(bad, &s);
            closed_at = pc_h_now_ms();
            assert_int_equal(s.n, 1);
            assert_int_equal(s.status[0], PC_ST_BAD_REQUEST);
        }
        assert_true(pc_h_now_ms() - start < 15000);
        assert_true(closed_at != 0 || sent < sizeof frame); /* it never ends its frame */
    }
    uint64_t took = closed_at - start;
    fprintf(stderr, "slowloris: closed %llu ms after its first byte (frame timeout 2500 ms, idle "
            "timeout 1000 ms); the honest client dribbled for %llu ms\n",
            (unsigned long long)took, (unsigned long long)(pc_h_now_ms() - start));
    assert_true(took >= 2400 && took < 6000);
    assert_int_equal(pc_h_stat(nc.cl, "frame_timeouts"), 1);
    assert_int_equal(pc_h_stat(nc.cl, "idle_timeouts"), 0);

    /* the honest one, slower overall than the frame timeout, has all its
     * answers */
    assert_true(pc_h_now_ms() - start > 2500);
    seen_t s = {0};
    assert_int_equal(pc_h_read_responses(slow, 4, collect, &s), 4);
    for (int i = 0; i < 4; i++)
        assert_true(s.id[i] == (uint64_t)i + 1 && s.status[i] == PC_ST_OK);
    pc_buf_free(&pings);
    close(slow);
    close(bad);
    normal_step(&nc);
    pc_client_free(&nc.cl);
    node_down(&node);
}

/* ---- 4. legal frames the node must refuse before doing their work ------- */

/* One answer, kept past the callback (pc_h_read_responses). */
typedef struct kept {
    uint32_t op;
    uint32_t status;
    uint64_t id;
    char text[160]; /* the error message, or a GET's value */
} kept_t;

typedef struct kept_list {
    int n;
    kept_t k[4];
} kept_list_t;

static int keep(void *arg, int i, const pc_response_t *r)
{
    kept_list_t *l = arg;
    if (i >= 4)
        return 1;
    kept_t *k = &l->k[i];
    pc_bytes_t t = r->status == PC_ST_OK ? r->entry.value : r->message;
    size_t n = t.len < sizeof k->text - 1 ? t.len : sizeof k->text - 1;
    k->op = r->op;
    k->status = r->status;
    k->id = r->id;
    if (n > 0)
        memcpy(k->text, t.ptr, n);
    k->text[n] = '\0';
    l->n = i + 1;
    return 0;
}

/* Sends b (whole frames) on fd and reads n answers into *l. */
static void exchange(int fd, const pc_buf_t *b, int n, kept_list_t *l)
{
    memset(l, 0, sizeof *l);
    assert_int_equal(pc_h_send_all(fd, b), 0);
    assert_int_equal(pc_h_read_responses(fd, n, keep, l), n);
}

/*
 * A max-frame SET whose ignored trailing element is an array of ~1.18M
 * nils: legal msgpack, and it used to be unpacked whole (~100 ms of the
 * node's loop per frame) and then stored. Now it is BAD_REQUEST with its
 * id, nothing is stored, and the connection goes on (pipelined PING
 * answered, and another after).
 */
static void test_nil_tail_refused_connection_kept(void **state)
{
    (void)state;
    pc_h_proc_t node;
    node_up(&node, NULL);
    normal_t nc = {client_for(&node, 5000), 0, "tail"};
    normal_step(&nc);
    int64_t bad0 = pc_h_stat(nc.cl, "bad_frames");

    uint32_t len = PC_PROTO_DEFAULT_MAX_FRAME;
    static const uint8_t head[] = {0x99, 0x05, 0xcd, 0x10, 0x92, 0xa6, 't',  'a',  'i',
                                   'l',  ':',  'k',  0xa1, 'v',  0xc0, 0xc0, 0xc0, 0xc0};
    uint32_t nils = len - (uint32_t)sizeof head - 5;
    pc_buf_t out;
    pc_buf_init(&out, 0);
    uint8_t pfx[9] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len, 0xdd, (uint8_t)(nils >> 24), (uint8_t)(nils >> 16),
                      (uint8_t)(nils >> 8), (uint8_t)nils};
    assert_int_equal(pc_buf_append(&out, pfx, 4), 0);
    assert_int_equal(pc_buf_append(&out, head, sizeof head), 0);
    assert_int_equal(pc_buf_append(&out, pfx + 4, 5), 0);
    assert_int_equal(pc_buf_reserve(&out, nils), 0);
    memset(out.data + out.len, 0xc0, nils);
    out.len += nils;
    assert_int_equal(out.len, 4 + (size_t)len);
    pc_request_t ping = {.op = PC_OP_PING, .id = 4243};
    assert_int_equal(pc_proto_encode_request(&out, &ping), 0);

    int fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    kept_list_t got;
    exchange(fd, &out, 2, &got);
    fprintf(stderr, "nil tail: %s \"%s\"\n", pc_status_name(got.k[0].status), got.k[0].text);
    assert_int_equal(got.k[0].op, PC_OP_SET);
    assert_int_equal(got.k[0].id, 4242);
    assert_int_equal(got.k[0].status, PC_ST_BAD_REQUEST);
    assert_non_null(strstr(got.k[0].text, "SET: over 26 msgpack values"));
    assert_int_equal(got.k[1].op, PC_OP_PING);
    assert_int_equal(got.k[1].id, 4243);
    assert_int_equal(got.k[1].status, PC_ST_OK);

    pc_buf_reset(&out);
    ping.id = 4244;
    assert_int_equal(pc_proto_encode_request(&out, &ping), 0);
    exchange(fd, &out, 1, &got);
    assert_int_equal(got.k[0].id, 4244);
    assert_int_equal(got.k[0].status, PC_ST_OK);
    close(fd);
    pc_buf_free(&out);

    pc_value_t v;
    assert_int_equal(pc_client_get(nc.cl, "tail:k", 6, &v), PC_ENOTFOUND);
    assert_int_equal(pc_h_stat(nc.cl, "bad_frames"), bad0);
    normal_step(&nc);
    pc_client_free(&nc.cl);
    node_down(&node);
}

/* An encoded SET or TOUCH of `key` whose ttl_ms, its last element, is
 * rewritten to `ttl` (the encoder refuses TTLs over the largest). */
static void encode_with_ttl(pc_buf_t *b, uint32_t op, uint64_t id, const char *key, uint64_t ttl)
{
    pc_request_t rq = {.op = op, .id = id, .key = {(const uint8_t *)key, (uint32_t)strlen(key)},
                       .value = {(const uint8_t *)"after", 5}, .ttl_ms = PC_PROTO_MAX_TTL_MS};
    assert_int_equal(pc_proto_encode_request(b, &rq), 0);
    uint8_t *p = b->data + b->len - 9;
    assert_int_equal(p[0], 0xcf); /* uint64 */
    for (int i = 0; i < 8; i++)
        p[1 + i] = (uint8_t)(ttl >> (56 - 8 * i));
}

/*
 * ttl_ms is a uint64, but Redis refuses a TTL it cannot add to its clock
 * in a signed 64-bit integer: a SET or TOUCH with 2^63 used to reach it,
 * be refused, come back as BACKEND_UNAVAILABLE and drop the node's copy.
 * Now it is BAD_REQUEST, naming the limit, and nothing is touched: the
 * earlier value and its TTL are still there, in the node and in Redis.
 * The largest TTL itself (PC_PROTO_MAX_TTL_MS) is one Redis accepts.
 */
static void test_ttl_over_the_largest_touches_nothing(void **state)
{
    (void)state;
    pc_h_proc_t node;
    node_up(&node, NULL);
    pc_client_t *cl = client_for(&node, 5000);
    redisContext *rc = pc_h_redis_connect(&redis);
    assert_non_null(rc);
    pc_set_options_t minute = {.ttl_ms = 60000};
    assert_int_equal(pc_client_set(cl, "ttl:k", 5, "before", 6, &minute, NULL), 0);

    int fd = pc_h_connect(node.port, 5000);
    assert_true(fd >= 0);
    pc_buf_t out;
    pc_buf_init(&out, 0);
    encode_with_ttl(&out, PC_OP_SET, 51, "ttl:k", 1ull << 63);
    encode_with_ttl(&out, PC_OP_TOUCH, 52, "ttl:k", 1ull << 63);
    pc_request_t get = {.op = PC_OP_GET, .id = 53, .key = {(const uint8_t *)"ttl:k", 5}};
    assert_int_equal(pc_proto_encode_request(&out, &get), 0);
    kept_list_t got;
    exchange(fd, &out, 3, &got);
    fprintf(stderr, "ttl 2^63: %s \"%s\"\n", pc_status_name(got.k[0].status), got.k[0].text);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(got.k[i].op, i == 0 ? PC_OP_SET : PC_OP_TOUCH);
        assert_int_equal(got.k[i].id, 51 + i);
        assert_int_equal(got.k[i].status, PC_ST_BAD_REQUEST);
        assert_non_null(strstr(got.k[i].text,
                               "ttl_ms 9223372036854775808 over the largest TTL, "
                               "4611686018427387904 ms"));
    }
    assert_int_equal(got.k[2].id, 53);
    assert_int_equal(got.k[2].status, PC_ST_OK);
    assert_string_equal(got.k[2].text, "before");

    redisReply *r = redisCommand(rc, "GET ttl:k");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "before");
    freeReplyObject(r);
    r = redisCommand(rc, "PTTL ttl:k");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 0 && r->integer <= 60000);
    freeReplyObject(r);

    /* The largest TTL: stored, by the node and by Redis. */
    pc_buf_reset(&out);
    encode_with_ttl(&out, PC_OP_SET, 61, "ttl:max", PC_PROTO_MAX_TTL_MS);
    encode_with_ttl(&out, PC_OP_TOUCH, 62, "ttl:k", PC_PROTO_MAX_TTL_MS);
    exchange(fd, &out, 2, &got);
    assert_int_equal(got.k[0].status, PC_ST_OK);
    assert_int_equal(got.k[1].status, PC_ST_OK);
    r = redisCommand(rc, "PTTL ttl:max");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > (long long)(PC_PROTO_MAX_TTL_MS - 60000));
    freeReplyObject(r);
    pc_value_t v;
    assert_int_equal(pc_client_get(cl, "ttl:k", 5, &v), 0);
    assert_int_equal(v.len, 6);
    pc_value_free(&v);

    /* The client library refuses what the node would, before sending. */
    pc_set_options_t over = {.ttl_ms = PC_PROTO_MAX_TTL_MS + 1};
    assert_int_equal(pc_client_set(cl, "ttl:k", 5, "x", 1, &over, NULL), PC_EINVAL);
    assert_int_equal(pc_client_touch(cl, "ttl:k", 5, PC_PROTO_MAX_TTL_MS + 1), PC_EINVAL);

    close(fd);
    pc_buf_free(&out);
    redisFree(rc);
    pc_client_free(&cl);
    node_down(&node);
}

/* ---- 5. no memory for a new connection ------------------------------------ */

/*
 * A connection the node has no memory for (calloc fails: pc_failcalloc,
 * preloaded into the node). libuv stops a listener whose connection
 * callback does not accept, and the node used to return without accepting:
 * the listener was stopped for good, and every later connection waited
 * unanswered. Now it is accepted and closed at once, counted as rejected,
 * and once memory is back the node serves new connections.
 */
static void test_accept_without_memory(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* the shim cannot come before ASan's allocator */
#else
    char trigger[512];
    snprintf(trigger, sizeof trigger, "%s/failcalloc.on", pc_h_tmpdir());
    unlink(trigger);
    setenv("LD_PRELOAD", PC_FAILCALLOC, 1);
    setenv("PC_FAILCALLOC_FILE", trigger, 1);
    pc_h_proc_t node;
    node_up(&node, "--threads", "1", NULL);
    unsetenv("LD_PRELOAD");
    unsetenv("PC_FAILCALLOC_FILE");
    normal_t nc = {client_for(&node, 5000), 0, "nomem"};
    normal_step(&nc);
    int64_t rejected0 = pc_h_stat(nc.cl, "connections_rejected");

    FILE *f = fopen(trigger, "w"); /* from now on every calloc fails */
    assert_non_null(f);
    fclose(f);
    int fd = pc_h_connect(node.port, 3000);
    assert_true(fd >= 0);
    assert_int_equal(pc_h_wait_closed(fd, NULL, 0, NULL), 1); /* accepted, then closed */
    close(fd);
    unlink(trigger); /* memory is back */

    /* the listener still listens: a new connection is served */
    pc_client_t *again = client_for(&node, 3000);
    assert_int_equal(pc_client_ping(again), 0);
    pc_client_free(&again);
    assert_true(pc_h_stat(nc.cl, "connections_rejected") >= rejected0 + 1);
    normal_step(&nc);
    pc_client_free(&nc.cl);
    node_down(&node);
#endif
}

/* 300 clients connect while the node cannot run (SIGSTOP), each with a
 * PING sent: when it runs again, all are waiting to be accepted at once.
 * Its loop takes them a share of an iteration at a time (pc_conns.c,
 * ACCEPT_SHARE_NS) -- 300 accepts are far over 100 us on any machine, so
 * some wait for the next iteration, which accepts_deferred counts -- and
 * every one of them is accepted and answered: a listener left with a
 * connection pending is started again. (The kernel queues them: the
 * node listens with a backlog of 1024, and net.core.somaxconn is 4096
 * since Linux 5.4.) */
#define CROWD 300

static void test_crowd_connecting_at_once(void **state)
{
    (void)state;
    pc_h_proc_t node;
    node_up(&node, "--threads", "1", NULL);
    pc_client_t *cl = client_for(&node, 5000);
    int64_t deferred0 = pc_h_stat(cl, "accepts_deferred");
    int64_t total0 = pc_h_stat(cl, "connections_total");
    assert_true(deferred0 >= 0 && total0 > 0);

    static int fds[CROWD];
    pc_buf_t ping;
    pc_buf_init(&ping, 0);
    pc_request_t rq = {.op = PC_OP_PING, .id = 7};
    pc_h_encode(&ping, &rq);
    int stopped = pc_h_stop_process(node.pid, 5000);
    int opened = 0, sent = 0;
    for (; stopped == 0 && opened < CROWD; opened++) {
        fds[opened] = pc_h_connect(node.port, 10000); /* the kernel completes it */
        if (fds[opened] < 0)
            break;
        sent += pc_h_send_all(fds[opened], &ping) == 0;
    }
    kill(node.pid, SIGCONT); /* before any assertion: never leave it stopped */
    pc_buf_free(&ping);
    assert_int_equal(stopped, 0);
    assert_int_equal(opened, CROWD);
    assert_int_equal(sent, CROWD);

    int answered = 0;
    for (int i = 0; i < CROWD; i++) {
        pc_h_reply_t x = {0};
        answered += pc_h_read_responses(fds[i], 1, pc_h_on_reply, &x) == 1 && x.status == PC_ST_OK;
        close(fds[i]);
    }
    assert_int_equal(answered, CROWD);
    assert_true(pc_h_stat(cl, "connections_total") >= total0 + CROWD);
    assert_true(pc_h_stat(cl, "accepts_deferred") > deferred0);
    assert_int_equal(pc_client_ping(cl), 0);
    pc_client_free(&cl);
    node_down(&node);
}

/* ---- main ------------------------------------------------------------------- */

int main(void)
{
    hostile_prelude();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_input_closes_only_that_connection),
        cmocka_unit_test(test_5000_idle_and_half_sent_connections),
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_accept_without_memory),
        cmocka_unit_test(test_crowd_connecting_at_once),
        cmocka_unit_test(test_nil_tail_refused_connection_kept),
        cmocka_unit_test(test_ttl_over_the_largest_touches_nothing),
    };
    return pc_h_finish(cmocka_run_group_tests(tests, group_setup, group_teardown));
}
