/*
 * test_conn.c -- client connections alone (pc_conn, pc_conns): frames and
 * answers, closes, accepts and limits. The fixture and its rules are in
 * conn_fixture.h; the fair-turn classes are tested in test_conn_turns.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "conn_fixture.h"

/* ---- tests ------------------------------------------------------------------ */

/*
 * 1. An internal connection (a relay's receiving end, on a socketpair):
 * frames written in one go, or split anywhere -- inside a length prefix,
 * inside a body -- reach the frame hook whole, once each and in order;
 * each answer reaches the client in order with its id and the ring's
 * fingerprint; on EOF the connection closes once its answers are out,
 * and is freed (gone) once.
 */
static void test_internal_frames_and_answers(void **state)
{
    fx_t *f = *state;
    enum { N = 64, FIRST = 10 };
    client_t *cl;
    pc_conn_t *c = internal_client(f, &cl);
    assert_true(c->internal);
    assert_int_equal(f->opened, 0);        /* opened is for accepted clients */
    assert_int_equal(f->cs.nconns, 0);     /* internal ones are not counted */
    assert_int_equal(atomic_load(&f->node_conns), 0);

    pc_buf_t b;
    pc_buf_init(&b, 0);
    encode_pings(&b, 1, FIRST);
    size_t cut1 = b.len + 2; /* inside frame FIRST + 1's length prefix */
    encode_pings(&b, FIRST + 1, FIRST + 1);
    size_t cut2 = b.len - 2; /* inside its body */
    encode_pings(&b, FIRST + 2, N);

    client_send(f, cl, b.data, cut1);
    RUN_UNTIL(f, f->frames == FIRST && c->bytes_in == cut1);
    run_some(f, 3);
    assert_int_equal(f->frames, FIRST);
    assert_int_equal(pc_proto_reader_pending(&c->rd), 2);

    client_send(f, cl, b.data + cut1, cut2 - cut1);
    RUN_UNTIL(f, c->bytes_in == cut2);
    run_some(f, 3);
    assert_int_equal(f->frames, FIRST); /* half a frame is no frame */

    client_send(f, cl, b.data + cut2, b.len - cut2);
    RUN_UNTIL(f, f->frames == N);
    pc_buf_free(&b);

    assert_int_equal(f->decode_errors, 0);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(f->ops[i], PC_OP_PING);
        assert_int_equal(f->ids[i], i + 1);
        assert_ptr_equal(f->frame_conn[i], c);
    }
    RUN_UNTIL(f, client_pump(cl) == N);
    assert_int_equal(cl->bad, 0);
    for (unsigned i = 0; i < N; i++)
        assert_ping_answer(cl, i, i + 1);

    /* The client goes: EOF, nothing owed, the connection closes. */
    assert_int_equal(f->gone, 0);
    assert_int_equal(shutdown(cl->fd, SHUT_WR), 0);
    RUN_UNTIL(f, f->gone == 1);
    assert_int_equal(f->cs.nconn_all, 0);
    RUN_UNTIL(f, (client_pump(cl), cl->eof));
    assert_int_equal(cl->err, 0);
    assert_int_equal(cl->n, N); /* nothing more came */
    assert_int_equal(f->frames, N);
    assert_int_equal(f->stats.bad_frames, 0);
}

/*
 * A frame far bigger than a read (a SET with a 300 KiB value, over a
 * 64 KiB read chunk), written in small pieces: the connection gathers it
 * and hands it up once, whole, then its buffers go back to 0.
 */
static void test_large_frame_across_reads(void **state)
{
    fx_t *f = *state;
    enum { VLEN = 300 * 1024 };
    client_t *cl;
    pc_conn_t *c = internal_client(f, &cl);

    uint8_t *v = malloc(VLEN);
    assert_non_null(v);
    for (size_t i = 0; i < VLEN; i++)
        v[i] = pattern(i);
    pc_buf_t b;
    pc_buf_init(&b, 0);
    pc_request_t set = {.op = PC_OP_SET, .id = 7, .key = {(const uint8_t *)"k", 1},
                        .value = {v, VLEN}};
    assert_int_equal(pc_proto_encode_request(&b, &set), 0);
    size_t set_len = b.len;
    encode_pings(&b, 8, 8);
    free(v);
    for (size_t off = 0; off < b.len; off += 7000) {
        size_t n = b.len - off < 7000 ? b.len - off : 7000;
        client_send(f, cl, b.data + off, n);
        RUN_UNTIL(f, c->bytes_in == off + n);
        if (off + n < set_len) /* not a byte of the SET is missing */
            assert_int_equal(f->frames, 0);
    }
    RUN_UNTIL(f, f->frames == 2);
    pc_buf_free(&b);
    assert_int_equal(f->ops[0], PC_OP_SET);
    assert_int_equal(f->ids[0], 7);
    assert_int_equal(f->value_len[0], VLEN);
    assert_true(f->value_ok[0]);
    assert_int_equal(f->ids[1], 8);
    RUN_UNTIL(f, client_pump(cl) == 2);
    assert_int_equal(cl->got[0].op, PC_OP_SET);
    assert_int_equal(cl->got[0].id, 7);
    assert_int_equal(cl->got[0].version, 70);
    assert_ping_answer(cl, 1, 8);
    assert_int_equal(pc_proto_reader_pending(&c->rd), 0);
    /* The input buffer went back once the frame was out: only output
     * buffers are left (trimmed by the tick, not here). */
    assert_int_equal(c->rd.buf.cap, 0);
    assert_int_equal(f->cs.buf_bytes, c->out.cap + c->wbuf.cap);
}

/*
 * 2. Answers leave in request order on a client connection: frame 1's
 * request waits (pc_req_new), frame 2 is answered at once -- its answer
 * is held behind 1's, and nothing reaches the client until 1 is answered
 * (from a timer callback); then both, 1 first.
 */
static void test_answers_in_request_order(void **state)
{
    fx_t *f = *state;
    f->mode = KEEP_FIRST;
    client_t *cl;
    pc_conn_t *c = tcp_client(f, &cl);
    send_pings(f, cl, 1, 2);
    RUN_UNTIL(f, f->frames == 2);
    assert_int_equal(f->nkept, 1);
    assert_int_equal(c->nreqs, 2); /* the waiting one and the held answer */
    assert_true(c->held > 0);
    run_some(f, 5);
    assert_int_equal(client_pump(cl), 0);
    assert_false(cl->eof);

    answer_later(f);
    RUN_UNTIL(f, client_pump(cl) == 2);
    assert_int_equal(f->later_calls, 1);
    assert_int_equal(cl->bad, 0);
    assert_ping_answer(cl, 0, 1);
    assert_ping_answer(cl, 1, 2);
    assert_int_equal(c->nreqs, 0);
    assert_int_equal(c->held, 0);

    /* Again on the same connection, two answers held behind the first. */
    f->frames = 0; /* KEEP_FIRST keeps frame 0 of the count: id 3 */
    send_pings(f, cl, 3, 5);
    RUN_UNTIL(f, f->frames == 3);
    assert_int_equal(f->nkept, 1);
    assert_int_equal(c->nreqs, 3);
    run_some(f, 5);
    assert_int_equal(client_pump(cl), 2);
    answer_later(f);
    RUN_UNTIL(f, client_pump(cl) == 5);
    assert_int_equal(f->later_calls, 2);
    assert_ping_answer(cl, 2, 3);
    assert_ping_answer(cl, 3, 4);
    assert_ping_answer(cl, 4, 5);
    assert_int_equal(c->nreqs, 0);
    assert_int_equal(f->gone, 0);
}

/*
 * The other side of the contract (pc_conn.c, req_deliver): the receiving
 * end of a relay carries many clients' requests and answers each as soon
 * as it can -- their own loops put them back in order -- so there answer
 * 2 leaves before answer 1.
 */
static void test_internal_answers_as_ready(void **state)
{
    fx_t *f = *state;
    f->mode = KEEP_FIRST;
    client_t *cl;
    pc_conn_t *c = internal_client(f, &cl);
    send_pings(f, cl, 1, 2);
    RUN_UNTIL(f, f->frames == 2);
    RUN_UNTIL(f, client_pump(cl) == 1);
    assert_ping_answer(cl, 0, 2);
    assert_int_equal(c->nreqs, 1);
    answer_later(f);
    RUN_UNTIL(f, client_pump(cl) == 2);
    assert_ping_answer(cl, 1, 1);
    assert_int_equal(f->later_calls, 1);
}

/* Connects a client and sends one PING whose request is kept waiting;
 * returns the connection and the request. */
static pc_conn_t *client_with_waiting_request(fx_t *f, client_t **cl, pc_req_t **r)
{
    f->mode = KEEP_ALL;
    pc_conn_t *c = tcp_client(f, cl);
    send_pings(f, *cl, 1, 1);
    RUN_UNTIL(f, f->frames == 1);
    assert_int_equal(f->nkept, 1);
    *r = take_kept(f);
    assert_ptr_equal((*r)->c, c);
    assert_int_equal((*r)->id, 1);
    return c;
}

/* The client resets the connection (SO_LINGER 0): the read fails, and the
 * connection closes at once, request or not. */
static void client_reset(client_t *cl)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(cl->fd);
    cl->fd = -1;
}

/*
 * 3. A request that waits while its connection closes keeps the
 * connection's memory: the handle closes (closing, uncounted), but the
 * connection is freed -- gone -- only when the request is let go
 * (pc_req_gone, which says the answer would go nowhere).
 */
static void test_waiting_request_outlives_close(void **state)
{
    fx_t *f = *state;
    client_t *cl;
    pc_req_t *r;
    pc_conn_t *c = client_with_waiting_request(f, &cl, &r);
    assert_int_equal(pc_req_gone(r), 0); /* open: not gone */
    assert_int_equal(f->cs.nconns, 1);

    client_reset(cl);
    RUN_UNTIL(f, c->closing && c->refs == 1); /* the handle is closed */
    run_some(f, 3);
    assert_int_equal(f->gone, 0);
    assert_int_equal(f->cs.nconns, 0);
    assert_int_equal(atomic_load(&f->node_conns), 0);
    assert_int_equal(f->cs.nconn_all, 1);
    assert_int_equal(c->nreqs, 1);

    assert_int_equal(pc_req_gone(r), 1); /* frees r, and c with it */
    assert_int_equal(f->gone, 1);
    assert_int_equal(f->cs.nconn_all, 0);
}

/* The same, let go by answering it: the answer is dropped. */
static void test_answer_after_close_is_dropped(void **state)
{
    fx_t *f = *state;
    client_t *cl;
    pc_req_t *r;
    pc_conn_t *c = client_with_waiting_request(f, &cl, &r);
    client_reset(cl);
    RUN_UNTIL(f, c->closing && c->refs == 1);
    assert_int_equal(f->gone, 0);
    pc_response_t resp = {.op = PC_OP_PING, .id = 1, .status = PC_ST_OK};
    pc_req_answer(r, &resp, NULL);
    assert_int_equal(f->gone, 1);
    assert_int_equal(f->cs.nconn_all, 0);
}

/*
 * A client that half-closes (EOF) still gets its answers: the connection
 * stays open while its request waits, answers, then closes.
 */
static void test_half_close_still_answered(void **state)
{
    fx_t *f = *state;
    client_t *cl;
    pc_req_t *r;
    pc_conn_t *c = client_with_waiting_request(f, &cl, &r);
    assert_int_equal(shutdown(cl->fd, SHUT_WR), 0);
    RUN_UNTIL(f, c->eof);
    run_some(f, 3);
    assert_false(c->closing);
    assert_int_equal(f->gone, 0);
    pc_response_t resp = {.op = PC_OP_PING, .id = 1, .status = PC_ST_OK};
    pc_req_answer(r, &resp, NULL);
    RUN_UNTIL(f, (client_pump(cl), cl->eof));
    assert_int_equal(cl->err, 0);
    assert_int_equal(cl->n, 1);
    assert_ping_answer(cl, 0, 1);
    RUN_UNTIL(f, f->gone == 1);
    assert_int_equal(f->cs.nconns, 0);
}

/*
 * 4. A zero-length frame: the client is told why (id 0, BAD_REQUEST) and
 * the connection closes; counted in bad_frames; the frame hook is not
 * called, neither for it nor for a good frame behind it. On a client
 * connection and on an internal one alike: no connection is trusted with
 * a broken stream. A client that still owes the token is told
 * AUTH_REQUIRED instead (PROTOCOL.md §5.1), and closed the same way.
 */
static void zero_length_frame(fx_t *f, int internal, int owe_token)
{
    f->owe_token = owe_token;
    client_t *cl;
    if (internal)
        (void)internal_client(f, &cl);
    else
        (void)tcp_client(f, &cl);
    pc_buf_t b;
    pc_buf_init(&b, 0);
    static const uint8_t zero[4] = {0, 0, 0, 0};
    assert_int_equal(pc_buf_append(&b, zero, sizeof zero), 0);
    encode_pings(&b, 1, 1);
    client_send(f, cl, b.data, b.len);
    pc_buf_free(&b);
    RUN_UNTIL(f, (client_pump(cl), cl->eof));
    assert_int_equal(cl->err, 0);
    assert_int_equal(cl->bad, 0);
    assert_int_equal(cl->n, 1);
    assert_int_equal(cl->got[0].id, 0);
    assert_int_equal(cl->got[0].status, owe_token ? PC_ST_AUTH_REQUIRED : PC_ST_BAD_REQUEST);
    assert_int_equal(f->stats.bad_frames, 1);
    assert_int_equal(f->frames, 0);
    RUN_UNTIL(f, f->gone == 1);
    assert_int_equal(f->cs.nconns, 0);
}

static void test_zero_length_frame(void **state) { zero_length_frame(*state, 0, 0); }

static void test_zero_length_frame_internal(void **state) { zero_length_frame(*state, 1, 0); }

static void test_zero_length_frame_before_token(void **state)
{
    zero_length_frame(*state, 0, 1);
}

/*
 * 5. A TCP client through pc_conns_accept: opened once, counted (nconns,
 * the node's count, connections_total, its source), served, and on EOF
 * closed, freed and uncounted.
 */
static void test_tcp_accept(void **state)
{
    fx_t *f = *state;
    client_t *cl;
    pc_conn_t *c = tcp_client(f, &cl);
    assert_int_equal(f->opened, 1);
    assert_false(c->internal);
    assert_int_equal(f->cs.nconns, 1);
    assert_int_equal(atomic_load(&f->node_conns), 1);
    assert_int_equal(f->stats.connections_total, 1);
    assert_int_equal(f->stats.connections_rejected, 0);
    assert_int_equal(pc_sources_count(f->sources), 1);
    assert_true(c->source_counted);
    assert_int_equal(strncmp(c->peer, "127.0.0.1:", 10), 0);

    send_pings(f, cl, 1, 3);
    RUN_UNTIL(f, client_pump(cl) == 3);
    for (unsigned i = 0; i < 3; i++)
        assert_ping_answer(cl, i, i + 1);

    close(cl->fd);
    cl->fd = -1;
    RUN_UNTIL(f, f->gone == 1);
    assert_int_equal(f->opened, 1);
    assert_int_equal(f->cs.nconns, 0);
    assert_int_equal(atomic_load(&f->node_conns), 0);
    assert_int_equal(f->stats.connections_total, 1);
    assert_int_equal(f->frames, 3);
}

/*
 * Over max_connections, a newcomer is told BUSY (id 0) and closed, and
 * counted in connections_rejected; the one already in goes on.
 */
static void test_max_connections_refusal(void **state)
{
    fx_t *f = *state;
    f->cs.set.max_connections = 1;
    client_t *a, *b;
    pc_conn_t *ca = tcp_client(f, &a);
    (void)tcp_client(f, &b); /* opened runs for it too, before the refusal */
    RUN_UNTIL(f, (client_pump(b), b->eof));
    assert_int_equal(b->n, 1);
    assert_int_equal(b->got[0].id, 0);
    assert_int_equal(b->got[0].status, PC_ST_BUSY);
    assert_int_equal(f->stats.connections_total, 2);
    assert_int_equal(f->stats.connections_rejected, 1);
    RUN_UNTIL(f, f->gone == 1);
    assert_int_equal(f->cs.nconns, 1);
    assert_int_equal(atomic_load(&f->node_conns), 1);
    assert_int_equal(pc_sources_count(f->sources), 1);

    send_pings(f, a, 1, 1);
    RUN_UNTIL(f, client_pump(a) == 1);
    assert_ping_answer(a, 0, 1);
    assert_false(ca->closing);
    assert_int_equal(f->frames, 1);
}

/*
 * pc_conns_hold: a held set reads nothing more (a frame that was already
 * on its way is buffered, not handed up); released, the frame is served.
 */
static void test_hold_pauses_reading(void **state)
{
    fx_t *f = *state;
    client_t *cl;
    pc_conn_t *c = tcp_client(f, &cl);
    send_pings(f, cl, 1, 1);
    RUN_UNTIL(f, client_pump(cl) == 1);

    pc_conns_hold(&f->cs, 1);
    send_pings(f, cl, 2, 2);
    RUN_UNTIL(f, !c->reading);
    send_pings(f, cl, 3, 3);
    run_some(f, 5);
    assert_int_equal(f->frames, 1);
    assert_int_equal(client_pump(cl), 1);
    assert_false(c->reading);

    pc_conns_hold(&f->cs, 0);
    RUN_UNTIL(f, client_pump(cl) == 3);
    assert_int_equal(f->frames, 3);
    assert_ping_answer(cl, 1, 2);
    assert_ping_answer(cl, 2, 3);
    assert_true(c->reading);
}

/*
 * The tick's limit checks take a share of an iteration (pc_conns.c,
 * tick_sweep): a timeout that many connections reach at once closes each
 * of them, and the closes made one long iteration. With the share at 0,
 * one connection is checked an iteration. Four clients that never sent
 * HELLO are past --hello-timeout at one tick: the tick closes one and
 * leaves the rest, and each following iteration closes one more before
 * the loop polls; every client is told AUTH_REQUIRED.
 */
static void test_tick_checks_in_shares(void **state)
{
    fx_t *f = *state;
    f->owe_token = 1;
    f->cs.tick_share_ns = 0;
    client_t *cl[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++)
        tcp_client(f, &cl[i]);
    pc_conns_tick(&f->cs, uv_now(&f->loop) + f->cs.set.hello_timeout_ms);
    assert_int_equal(f->stats.hello_timeouts, 1);
    assert_int_equal(f->stats.ticks_deferred, 1);
    RUN_UNTIL(f, f->stats.hello_timeouts == MAX_CLIENTS);
    assert_int_equal(f->stats.ticks_deferred, MAX_CLIENTS - 1);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        RUN_UNTIL(f, client_pump(cl[i]) >= 1);
        assert_int_equal(cl[i]->got[0].status, PC_ST_AUTH_REQUIRED);
    }
}

/*
 * At --hello-timeout, a client that has stopped reading -- answers wait
 * at the node, its socket took no more -- is reset: it would not read
 * the error, and an orderly close left the socket to the kernel with the
 * answers unsent and the client's window shut, until its zero-window
 * probes gave up.
 * One that reads is told AUTH_REQUIRED, then closed in order. Both
 * buffers of the stopped client's connection are 4 KiB.
 */
static void test_hello_timeout_resets_nonreader(void **state)
{
    fx_t *f = *state;
    enum { N = 2000 };
    f->owe_token = 1;
    client_t *stopped, *reader;
    int small = 4096;
    pc_conn_t *c = tcp_client_rcvbuf(f, &stopped, small);
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno(&c->h.handle, &fd), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    pc_conn_t *r = tcp_client(f, &reader);
    pc_buf_t b;
    pc_buf_init(&b, 0);
    encode_pings(&b, 1, N);
    assert_int_equal(send(stopped->fd, b.data, b.len, MSG_DONTWAIT | MSG_NOSIGNAL),
                     (ssize_t)b.len);
    pc_buf_free(&b);
    RUN_UNTIL(f, c->writing); /* answers wait: the socket took no more */
    send_pings(f, reader, 1, 1);
    RUN_UNTIL(f, client_pump(reader) == 1);
    assert_false(r->writing);

    pc_conns_tick(&f->cs, uv_now(&f->loop) + f->cs.set.hello_timeout_ms);
    RUN_UNTIL(f, f->stats.hello_timeouts == 2); /* the tick's share may leave one */
    RUN_UNTIL(f, (client_pump(stopped), stopped->eof));
    assert_int_equal(stopped->err, ECONNRESET);
    RUN_UNTIL(f, (client_pump(reader), reader->eof));
    assert_int_equal(reader->err, 0);
    assert_int_equal(reader->n, 2);
    assert_int_equal(reader->got[1].status, PC_ST_AUTH_REQUIRED);
}

/*
 * Shedding takes a share of an iteration (pc_conns.c, shed_some): each
 * close of a client that stopped reading frees its kernel send queue,
 * and many at once made one long iteration. With the share at 0, one
 * connection is closed an iteration. Four clients each hold a frame
 * still arriving, of 100-130 KB; the cap is lowered so that the three
 * biggest are over their fair share and must go for the rest to be
 * under 3/4 of it. The sweep (on the tick) chooses the three and closes
 * the biggest; one of the others closes by itself before its turn, and
 * its place is passed by; the last chosen is closed at the next
 * iteration, before the loop polls. The smallest is within its share,
 * is never closed and goes on reading: its frame, finished, is served.
 */
static void test_shed_in_shares(void **state)
{
    fx_t *f = *state;
    enum { N = 4, BASE = 100 * 1024, STEP = 10 * 1024, LEFT = 16 };
    f->mode = ANSWER_ALL;
    f->cs.shed_share_ns = 0;
    client_t *cl[N];
    pc_conn_t *c[N];
    pc_buf_t b[N];
    size_t total = 0;
    uint8_t *v = malloc(BASE + N * STEP);
    assert_non_null(v);
    for (size_t i = 0; i < BASE + N * STEP; i++)
        v[i] = pattern(i);
    for (int i = 0; i < N; i++) {
        c[i] = tcp_client(f, &cl[i]);
        pc_buf_init(&b[i], 0);
        pc_request_t set = {.op = PC_OP_SET, .id = (uint64_t)i + 1,
                            .key = {(const uint8_t *)"k", 1},
                            .value = {v, (uint32_t)(BASE + (size_t)i * STEP)}};
        assert_int_equal(pc_proto_encode_request(&b[i], &set), 0);
        client_send(f, cl[i], b[i].data, b[i].len - LEFT);
        RUN_UNTIL(f, c[i]->bytes_in == b[i].len - LEFT);
        total += pc_conn_usage(c[i]);
    }
    free(v);
    assert_int_equal(f->frames, 0);
    assert_int_equal(f->cs.buf_bytes, total);
    for (int i = 1; i < N; i++)
        assert_true(pc_conn_usage(c[i]) > pc_conn_usage(c[i - 1]));
    /* fair = cap / 4 is under the smallest; 3/4 of the cap is reached
     * only without the three biggest */
    f->cs.set.max_buffer_memory = total * 6 / 10;
    assert_true(pc_conn_usage(c[0]) > f->cs.set.max_buffer_memory / N);
    assert_true(pc_conn_usage(c[0]) <= f->cs.set.max_buffer_memory * 3 / 4);
    assert_true(pc_conn_usage(c[0]) + pc_conn_usage(c[1]) > f->cs.set.max_buffer_memory * 3 / 4);

    pc_conns_tick(&f->cs, uv_now(&f->loop));
    assert_int_equal(f->stats.buffer_evictions, 1);
    assert_int_equal(f->stats.sheds_deferred, 1);
    assert_true(c[3]->closing);
    assert_false(c[2]->closing);
    assert_false(c[1]->closing);
    assert_int_equal(c[2]->shed_at, 2);
    assert_int_equal(c[1]->shed_at, 3);
    assert_int_equal(c[0]->shed_at, 0);

    pc_conn_close(c[2], "the test closes it before its turn");
    assert_int_equal(c[2]->shed_at, 0);
    RUN_UNTIL(f, f->stats.buffer_evictions == 2); /* c[1]: it may be freed already */
    assert_int_equal(f->stats.sheds_deferred, 1); /* the closed one was passed by */
    run_some(f, 5);
    assert_int_equal(f->stats.buffer_evictions, 2);
    assert_false(c[0]->closing);
    assert_null(f->cs.shed_v);

    /* the shed ones are told why (they hold input, not unread answers),
     * and closed */
    for (int i = 1; i < N; i += 2) {
        RUN_UNTIL(f, (client_pump(cl[i]), cl[i]->eof));
        assert_int_equal(cl[i]->n, 1);
        assert_int_equal(cl[i]->got[0].status, PC_ST_BUSY);
    }
    client_send(f, cl[0], b[0].data + b[0].len - LEFT, LEFT);
    RUN_UNTIL(f, client_pump(cl[0]) == 1);
    assert_int_equal(cl[0]->got[0].status, PC_ST_OK);
    assert_int_equal(f->frames, 1);
    assert_int_equal(f->value_len[0], BASE);
    for (int i = 0; i < N; i++)
        pc_buf_free(&b[i]);
}

/*
 * pc_conns_stop: newcomers are refused ("shutting down"); a connection
 * with a request out stays until it is answered, then closes; one with
 * nothing owed closes at once.
 */
static void test_stop_drains(void **state)
{
    fx_t *f = *state;
    client_t *idle, *busy, *late;
    pc_req_t *r;
    f->mode = ANSWER_ALL;
    (void)tcp_client(f, &idle);
    pc_conn_t *c = client_with_waiting_request(f, &busy, &r);

    pc_conns_stop(&f->cs);
    RUN_UNTIL(f, (client_pump(idle), idle->eof));
    assert_int_equal(idle->n, 0);
    RUN_UNTIL(f, f->gone == 1);
    assert_false(c->closing);

    (void)tcp_client(f, &late);
    RUN_UNTIL(f, (client_pump(late), late->eof));
    assert_int_equal(late->n, 1);
    assert_int_equal(late->got[0].status, PC_ST_BUSY);
    assert_int_equal(f->stats.connections_rejected, 1);
    RUN_UNTIL(f, f->gone == 2);

    pc_response_t resp = {.op = PC_OP_PING, .id = 1, .status = PC_ST_OK};
    pc_req_answer(r, &resp, NULL);
    RUN_UNTIL(f, (client_pump(busy), busy->eof));
    assert_int_equal(busy->n, 1);
    assert_ping_answer(busy, 0, 1);
    RUN_UNTIL(f, f->gone == 3);
    assert_int_equal(f->cs.nconns, 0);
}

/* Room in the kernel for more than two reads' worth, whatever this
 * host's defaults (a flood must be there when the node reads): c's
 * receive buffer and its client's send buffer. */
int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as peercached does: writes to a gone peer fail */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_internal_frames_and_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_frame_across_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answers_in_request_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_internal_answers_as_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_request_outlives_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_after_close_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_still_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_frame_internal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_frame_before_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_pauses_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_checks_in_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shed_in_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_timeout_resets_nonreader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
