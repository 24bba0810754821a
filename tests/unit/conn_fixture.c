/*
 * conn_fixture.c -- the fixture of test_conn and test_conn_turns (its
 * contract is conn_fixture.h): a uv loop, a connection set with the
 * test's own hooks, and the test's end of each connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
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

#include "pc_sock.h"

void run_some(fx_t *f, int n)
{
    for (int i = 0; i < n; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* ---- hooks ---------------------------------------------------------------- */

uint8_t pattern(size_t i) { return (uint8_t)(i * 31u + 7u); }

static void hook_frame(pc_conn_t *c, const uint8_t *body, uint32_t len)
{
    fx_t *f = pc_conn_owner(c);
    unsigned k = f->frames++;
    if (f->share_given)
        c->light.balance = PC_LIGHT_BANK_NS;
    if (f->spin_ns > 0) {
        uint64_t t0 = uv_hrtime();
        while (uv_hrtime() - t0 < f->spin_ns)
            ;
    }
    for (int i = 0; i < 3; i++) {
        const pc_conn_t *o = f->floods[i];
        if (o == NULL || o == c)
            continue;
        int queued = pc_sched_queued(&o->sched[PC_CONN_HEAVY]);
        if (queued) {
            f->heavy_waiting_seen++;
            f->heavy_waiting_watched += o->reading != 0;
        }
        if (o->read_owed) {
            f->owed_seen++;
            f->owed_watched += o->reading != 0;
            f->owed_unqueued += !queued;
        }
    }
    if (c == f->cut_light && f->cut_sent) {
        unsigned d = (unsigned)(c->cs->turns - f->cut_turns_at);
        f->cut_samples++;
        f->cut_sum += d;
        f->cut_within2 += d <= 2;
        f->cut_max = d > f->cut_max ? d : f->cut_max;
        f->cut_sent = 0;
        f->cut_armed = 1;
    } else if (f->cut_armed && c != f->cut_light && c->heavy && c->cs->turn_work == 0) {
        pc_buf_t b;
        pc_buf_init(&b, 0);
        encode_pings(&b, 1000 + f->cut_samples, 1000 + f->cut_samples);
        size_t sent = b.len;
        assert_int_equal(send(f->cut_fd, b.data, sent, MSG_DONTWAIT | MSG_NOSIGNAL),
                         (ssize_t)sent);
        pc_buf_free(&b);
        /* The test is what the loop does once the request has come: it
         * waits for the kernel to have it on the node's side (on
         * loopback the send delivers it, unless the kernel left that to
         * its softirq thread, which a busy machine runs late -- then
         * heavy turns went on meanwhile, up to 6 of them). */
        uint64_t t0 = uv_hrtime();
        while (pc_sock_unread(f->cut_light->fd) < sent) {
            if (uv_hrtime() - t0 > (uint64_t)5 * 1000 * 1000 * 1000)
                fail_msg("the light client's PING did not reach the node's socket in 5 s");
        }
        f->cut_turns_at = c->cs->turns; /* this turn is not counted yet */
        f->cut_sent = 1;
        f->cut_armed = 0;
    }
    pc_request_t req;
    if (pc_proto_decode_request(f->dec, body, len, &req) != 0) {
        f->decode_errors++;
        pc_conn_bad_frame(c, PC_ST_BAD_REQUEST, "test: undecodable");
        return;
    }
    if (k < MAX_FRAMES) {
        f->ops[k] = req.op;
        f->ids[k] = req.id;
        f->frame_conn[k] = c;
        f->frame_heavy[k] = (uint8_t)c->heavy;
        f->frame_backlog[k] = (uint8_t)c->writing;
        f->frame_turn[k] = c->turn_t0;
        f->frame_rto_us[k] = c->fd >= 0 ? (uint32_t)pc_sock_rto_min_us(c->fd) : 0;
        f->value_len[k] = req.value.len;
        int ok = 1;
        for (uint32_t i = 0; i < req.value.len; i++)
            ok &= req.value.ptr[i] == pattern(i);
        f->value_ok[k] = ok;
    }
    if (f->mode == KEEP_ALL || (f->mode == KEEP_FIRST && k == 0)) {
        if (f->nkept >= MAX_KEPT) {
            f->decode_errors++; /* the test asked for too many: fails it */
            return;
        }
        pc_req_t *r = pc_req_new(c, req.op, req.id, sizeof *r);
        if (r == NULL) {
            f->decode_errors++;
            return;
        }
        r->waiting = 1; /* a callback of ours will come for it */
        f->kept[f->nkept++] = r;
        return;
    }
    pc_response_t resp = {.op = req.op, .id = req.id, .status = PC_ST_OK};
    if (req.op == PC_OP_SET)
        resp.version = req.id * 10;
    pc_conn_answer(c, &resp);
}

static void hook_opened(pc_conn_t *c)
{
    fx_t *f = pc_conn_owner(c);
    c->authed = !f->owe_token; /* as pc_auth_opened decides it in a node */
    if (f->opened < MAX_CLIENTS)
        f->conns_opened[f->opened] = c;
    f->opened++;
}

static void hook_gone(void *owner)
{
    fx_t *f = owner;
    f->gone++;
}

/* The oldest request the frame hook kept, now the test's to answer. */
pc_req_t *take_kept(fx_t *f)
{
    assert_true(f->nkept > 0);
    pc_req_t *r = f->kept[0];
    memmove(f->kept, f->kept + 1, (f->nkept - 1) * sizeof *f->kept);
    f->nkept--;
    return r;
}

static void beat_cb(uv_timer_t *t) { (void)t; }

static void test_handle_closed(uv_handle_t *h)
{
    fx_t *f = h->data;
    f->handles_closed++;
}

/* ---- setup and teardown ------------------------------------------------------ */

int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->log = (pc_log_t){.out = tmpfile(), .level = PC_LOG_DEBUG, .name = "test_conn"};
    assert_non_null(f->log.out);
    assert_int_equal(pc_sources_new(64, &f->sources), 0);
    atomic_init(&f->node_conns, 0);
    atomic_init(&f->ring_fp, RING_FP);
    f->hooks = (pc_conn_hooks_t){.frame = hook_frame, .opened = hook_opened, .gone = hook_gone};

    pc_conn_limits_t lim = {
        .max_connections = 100,
        .max_conns_per_source = 0,
        .hello_timeout_ms = 3000,
        .idle_timeout_ms = 0,
        .max_inflight = 16,
        .max_output = 1u << 20,
        .frame_timeout_ms = 0,
        .output_timeout_ms = 10000,
        .max_buffer_memory = (size_t)64 << 20,
    };
    pc_proto_limits_default(&lim.proto);
    assert_int_equal(pc_proto_decoder_new(&lim.proto, &f->dec), 0);
    pc_conns_config_t cfg = {.limits = lim,
                             .loop = &f->loop,
                             .log = &f->log,
                             .guard = NULL,
                             .stats = &f->stats,
                             .hooks = &f->hooks,
                             .owner = f,
                             .node_conns = &f->node_conns,
                             .sources = f->sources,
                             .ring_fp = &f->ring_fp};
    assert_int_equal(pc_conns_init(&f->cs, &cfg), 0);
    pc_conns_start(&f->cs);

    assert_int_equal(uv_timer_init(&f->loop, &f->beat), 0);
    f->beat.data = f;
    assert_int_equal(uv_timer_start(&f->beat, beat_cb, BEAT_MS, BEAT_MS), 0);
    *state = f;
    return 0;
}

static void client_free(client_t *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = -1;
    pc_proto_reader_free(&cl->rd);
    pc_proto_decoder_free(&cl->dec);
}

int teardown(void **state)
{
    fx_t *f = *state;
    /* Every request the test kept should have been answered or let go by
     * the test (asserted below, once everything is released). */
    unsigned kept_left = f->nkept;
    /* Drain: each connection closes once its answers are out... */
    pc_conns_stop(&f->cs);
    for (int i = 0; i < 100 && !pc_list_empty(&f->cs.conns); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    /* ...and whatever is left is closed. */
    pc_conns_cut(&f->cs);
    while (f->nkept > 0)
        (void)pc_req_gone(take_kept(f));
    pc_conns_close(&f->cs);
    unsigned mine = 0;
    if (f->listening) {
        uv_close((uv_handle_t *)&f->listener, test_handle_closed);
        mine++;
    }
    if (f->later_open) {
        uv_close((uv_handle_t *)&f->later, test_handle_closed);
        mine++;
    }
    /* The beat goes last: until then it bounds each wait (a handle left
     * open would otherwise block UV_RUN_ONCE for ever). */
    int it = 0;
    while (!(pc_conns_idle(&f->cs) && f->handles_closed == mine) && ++it <= MAX_ITERS)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&f->beat, test_handle_closed);
    mine++;
    for (it = 0; f->handles_closed < mine && it < 100; it++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(kept_left, 0);
    assert_true(pc_conns_idle(&f->cs));
    assert_int_equal(f->handles_closed, mine);
    /* gone: once per connection freed, once per handle of the set. */
    assert_int_equal(f->gone, f->opened + f->conns_attached + 2);
    assert_int_equal(f->cs.nconns, 0);
    assert_int_equal(f->cs.nconn_all, 0);
    assert_int_equal(atomic_load(&f->node_conns), 0);
    assert_int_equal(f->cs.buf_bytes, 0);
    assert_int_equal(pc_sources_count(f->sources), 0);
    pc_conns_free(&f->cs);
    for (unsigned i = 0; i < f->ncl; i++)
        client_free(&f->cl[i]);
    pc_sources_free(&f->sources);
    pc_proto_decoder_free(&f->dec);
    fclose(f->log.out);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* ---- clients ---------------------------------------------------------------- */

static client_t *client_add(fx_t *f, int fd)
{
    assert_true(f->ncl < MAX_CLIENTS);
    client_t *cl = &f->cl[f->ncl++];
    memset(cl, 0, sizeof *cl);
    cl->fd = fd;
    pc_proto_reader_init(&cl->rd, 0);
    assert_int_equal(pc_proto_decoder_new(NULL, &cl->dec), 0);
    return cl;
}

/* The test's end of an internal connection (a socketpair, the other end
 * attached to the set). Returns the connection. */
pc_conn_t *internal_client(fx_t *f, client_t **out)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    size_t before = f->cs.nconn_all;
    assert_int_equal(pc_conns_attach_internal(&f->cs, sv[0], "test relay"), 0);
    f->conns_attached++;
    assert_int_equal(f->cs.nconn_all, before + 1);
    *out = client_add(f, sv[1]);
    return pc_list_entry(f->cs.conns.prev, pc_conn_t, link);
}

static void listener_cb(uv_stream_t *server, int status)
{
    fx_t *f = server->data;
    if (status < 0)
        return;
    pc_conns_accept(&f->cs, server, 0);
}

static void listen_local(fx_t *f)
{
    struct sockaddr_in sa;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_init(&f->loop, &f->listener), 0);
    f->listener.data = f;
    f->listening = 1;
    assert_int_equal(uv_tcp_bind(&f->listener, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 16, listener_cb), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(&f->listener, (struct sockaddr *)&ss, &len), 0);
    f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    assert_true(f->port > 0);
}

/* A blocking TCP client connected to the listener; the loop accepts it
 * (the opened hook runs). Returns the connection. */
pc_conn_t *tcp_client(fx_t *f, client_t **out) { return tcp_client_rcvbuf(f, out, 0); }

/* The same with the client's receive buffer at rcvbuf bytes (set before
 * it connects, so that its window is scaled for it), if rcvbuf > 0. */
pc_conn_t *tcp_client_rcvbuf(fx_t *f, client_t **out, int rcvbuf)
{
    if (!f->listening)
        listen_local(f);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
    /* The kernel completes the handshake from the listen backlog. */
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    *out = client_add(f, fd);
    unsigned want = f->opened + 1;
    RUN_UNTIL(f, f->opened == want);
    return f->conns_opened[want - 1];
}

/* Writes all of p, running the loop whenever the socket is full. */
void client_send(fx_t *f, client_t *cl, const void *p, size_t n)
{
    const uint8_t *b = p;
    int it = 0;
    while (n > 0) {
        ssize_t w = send(cl->fd, b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        assert_true(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        if (++it > MAX_ITERS)
            fail_msg("client_send: the connection does not read");
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

/* Reads what has arrived without blocking; returns the answers read so
 * far. */
size_t client_pump(client_t *cl)
{
    uint8_t tmp[16384];
    while (!cl->eof) {
        ssize_t n = recv(cl->fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (n == 0) {
            cl->eof = 1;
            break;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            cl->err = errno;
            cl->eof = 1;
            break;
        }
        if (pc_proto_reader_feed(&cl->rd, tmp, (size_t)n) < 0) {
            cl->bad++;
            break;
        }
        const uint8_t *body;
        uint32_t len;
        int rc;
        while ((rc = pc_proto_reader_next(&cl->rd, &body, &len)) == 1) {
            pc_response_t resp;
            if (pc_proto_decode_response(cl->dec, body, len, &resp) != 0 ||
                cl->n >= MAX_ANSWERS) {
                cl->bad++;
                continue;
            }
            cl->got[cl->n++] = (answer_t){.op = resp.op, .id = resp.id, .status = resp.status,
                                          .ring_fp = resp.ring_fp, .version = resp.version};
        }
        if (rc < 0)
            cl->bad++;
    }
    return cl->n;
}

/* Encodes PINGs with ids [from, to] into b. */
void encode_pings(pc_buf_t *b, uint64_t from, uint64_t to)
{
    for (uint64_t id = from; id <= to; id++) {
        pc_request_t req = {.op = PC_OP_PING, .id = id};
        assert_int_equal(pc_proto_encode_request(b, &req), 0);
    }
}

void send_pings(fx_t *f, client_t *cl, uint64_t from, uint64_t to)
{
    pc_buf_t b;
    pc_buf_init(&b, 0);
    encode_pings(&b, from, to);
    client_send(f, cl, b.data, b.len);
    pc_buf_free(&b);
}

/* The answer i of cl is an OK PING answer to id, with the ring. */
void assert_ping_answer(const client_t *cl, size_t i, uint64_t id)
{
    assert_true(i < cl->n);
    assert_int_equal(cl->got[i].op, PC_OP_PING);
    assert_int_equal(cl->got[i].id, id);
    assert_int_equal(cl->got[i].status, PC_ST_OK);
    assert_int_equal(cl->got[i].ring_fp, RING_FP);
}

/* A kept request, answered (OK) from a timer callback of the test's. */
static void later_cb(uv_timer_t *t)
{
    fx_t *f = t->data;
    f->later_calls++;
    if (f->nkept == 0)
        return; /* (the test fails on the answers it misses) */
    pc_req_t *r = take_kept(f);
    pc_response_t resp = {.op = r->op, .id = r->id, .status = PC_ST_OK};
    pc_req_answer(r, &resp, NULL);
}

void answer_later(fx_t *f)
{
    if (!f->later_open) {
        assert_int_equal(uv_timer_init(&f->loop, &f->later), 0);
        f->later.data = f;
        f->later_open = 1;
    }
    assert_int_equal(uv_timer_start(&f->later, later_cb, 0, 0), 0);
}
