/*
 * conn_fixture.h -- the fixture that test_conn.c and test_conn_turns.c
 * share: client connections alone (pc_conn, pc_conns), on a uv loop with
 * a hooks table of the test's own and no dispatch behind them. In the
 * style of libuv's own tests, each test counts callbacks, and the
 * teardown closes everything and asserts that uv_loop_close() finds
 * nothing left (every handle closed; ASan checks the memory) and that
 * the buffer accounting came back to 0.
 *
 * The test's end of each connection is a plain socket (one end of a
 * socketpair for an internal connection, a blocking TCP client on
 * 127.0.0.1 otherwise), written and read without blocking the loop. The
 * loop is driven with UV_RUN_ONCE until a condition holds; a repeating
 * timer (BEAT_MS) bounds each wait, and RUN_UNTIL fails the test after
 * MAX_ITERS iterations. Nothing sleeps.
 *
 * One test process, one thread: everything here runs on the test's
 * thread. The fixture (fx_t) is made by setup() and freed by teardown();
 * clients (client_t) belong to it and are closed by teardown().
 */
#ifndef PC_TEST_CONN_FIXTURE_H
#define PC_TEST_CONN_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <uv.h>

#include "pc_conn.h"
#include "pc_conns.h"
#include "pc_proto.h"
#include "pc_sources.h"

#define BEAT_MS 5
#define MAX_ITERS 4000 /* at most ~20 s of waiting (BEAT_MS each) */
#define MAX_FRAMES 4096
#define MAX_ANSWERS 256
#define MAX_CLIENTS 4
#define MAX_KEPT 8
#define RING_FP 0x5eedf00du

/* ---- the test's end of a connection -------------------------------------- */

typedef struct answer {
    uint32_t op;
    uint64_t id;
    uint32_t status;
    uint64_t ring_fp;
    uint64_t version;
} answer_t;

typedef struct client {
    int fd;
    pc_proto_reader_t rd;
    pc_proto_decoder_t *dec;
    int eof;       /* read 0, or an error (err) */
    int err;       /* errno of a failed read, 0 if none */
    int bad;       /* an answer that did not decode */
    size_t n;      /* answers read */
    answer_t got[MAX_ANSWERS];
} client_t;

/* ---- the fixture ------------------------------------------------------------ */

enum mode {
    ANSWER_ALL,   /* every frame answered at once (pc_conn_answer) */
    KEEP_FIRST,   /* the first frame's request is kept (waiting), the rest answered */
    KEEP_ALL,     /* every frame's request is kept (waiting) */
};

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t beat;
    pc_conns_t cs;
    pc_counters_t stats;
    pc_sources_t *sources;
    _Atomic uint64_t node_conns;
    _Atomic uint64_t ring_fp;
    pc_log_t log;
    pc_conn_hooks_t hooks;
    pc_proto_decoder_t *dec; /* the frame hook's */

    /* what the hooks saw */
    enum mode mode;
    int owe_token; /* new client connections owe a token (authed 0) */
    unsigned frames, opened, gone;
    unsigned decode_errors;  /* frames the hook could not decode */
    uint32_t ops[MAX_FRAMES];
    uint64_t ids[MAX_FRAMES];
    uint32_t value_len[MAX_FRAMES];
    int value_ok[MAX_FRAMES]; /* a SET's value had the test's pattern */
    pc_conn_t *frame_conn[MAX_FRAMES];
    uint8_t frame_heavy[MAX_FRAMES]; /* the class of the turn that served it */
    uint8_t frame_backlog[MAX_FRAMES]; /* its connection's write was waiting */
    uint64_t frame_turn[MAX_FRAMES];   /* the start of the turn that served it */
    uint32_t frame_rto_us[MAX_FRAMES]; /* its socket's retransmission floor then */
    uint64_t spin_ns; /* each frame takes this long (busy), to make turns long */
    /* Every frame's connection gets its whole share of the loop's time
     * (pc_light.h) as the frame is served, so that its turn ends in its
     * share: the class tests check the other rules, each alone. */
    int share_given;
    pc_conn_t *conns_opened[MAX_CLIENTS];
    pc_conn_t *floods[3];           /* the tests' floods, while open */
    unsigned heavy_waiting_seen;    /* frames served while another waited heavy */
    unsigned heavy_waiting_watched; /* ... and that one's socket was watched */
    unsigned owed_seen;             /* frames served while another's read was owed */
    unsigned owed_watched;          /* ... and that one's socket was watched */
    unsigned owed_unqueued;         /* ... or it did not wait for a turn */
    /* test_light_request_cuts_heavy_share: at the first frame of a heavy
     * turn that starts an iteration's heavy work (turn_work 0), the frame
     * hook sends a PING from cut_fd (the light client's end) if armed;
     * when that PING is served, the turns served in between. */
    pc_conn_t *cut_light;
    int cut_fd;
    int cut_armed;
    int cut_sent;          /* a PING is on its way, sent at turn cut_turns_at */
    uint64_t cut_turns_at; /* (0 is a turn like any other: the loop's first) */
    unsigned cut_samples, cut_max, cut_sum, cut_within2; /* ...within: after at most 2 */
    unsigned conns_attached; /* internal connections the test made */
    pc_req_t *kept[MAX_KEPT];
    unsigned nkept;

    /* the test's own handles */
    uv_tcp_t listener;
    int listening;
    int port;
    uv_timer_t later;    /* answers a kept request */
    int later_open;
    unsigned later_calls;
    unsigned handles_closed; /* of the test's own handles */

    client_t cl[MAX_CLIENTS];
    unsigned ncl;
} fx_t;

#define RUN_UNTIL(f, cond)                                                                     \
    do {                                                                                       \
        int it_ = 0;                                                                           \
        while (!(cond)) {                                                                      \
            if (++it_ > MAX_ITERS)                                                             \
                fail_msg("%s:%d: not reached in %d loop iterations: %s", __FILE__, __LINE__, \
                         MAX_ITERS, #cond);                                                    \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                                   \
        }                                                                                      \
    } while (0)


/* A few more iterations, for asserting that something does NOT happen. */
void run_some(fx_t *f, int n);

/* The byte at offset i of every value the tests send. */
uint8_t pattern(size_t i);

/* The oldest request the frame hook kept, now the test's to answer. */
pc_req_t *take_kept(fx_t *f);

/* cmocka setup and teardown: *state is the fixture. */
int setup(void **state);
int teardown(void **state);

/* The test's end of an internal connection (a socketpair, the other end
 * attached to the set). Returns the connection. */
pc_conn_t *internal_client(fx_t *f, client_t **out);

/* A blocking TCP client connected to the fixture's listener (made on first
 * use); the loop accepts it (the opened hook runs). Returns the
 * connection. With rcvbuf > 0, the client's receive buffer is rcvbuf
 * bytes (set before it connects, so that its window is scaled for it). */
pc_conn_t *tcp_client(fx_t *f, client_t **out);
pc_conn_t *tcp_client_rcvbuf(fx_t *f, client_t **out, int rcvbuf);

/* Writes all of p, running the loop whenever the socket is full. */
void client_send(fx_t *f, client_t *cl, const void *p, size_t n);

/* Reads what has arrived without blocking; returns the answers read so far. */
size_t client_pump(client_t *cl);

/* Encodes PINGs with ids [from, to] into b; send_pings sends them. */
void encode_pings(pc_buf_t *b, uint64_t from, uint64_t to);
void send_pings(fx_t *f, client_t *cl, uint64_t from, uint64_t to);

/* The answer i of cl is an OK PING answer to id, with the ring. */
void assert_ping_answer(const client_t *cl, size_t i, uint64_t id);

/* The oldest kept request is answered (OK) from a timer callback. */
void answer_later(fx_t *f);

#endif
