/*
 * pc_conn_uring.c -- a connection's bytes through its loop's io_uring
 * (--io uring): the receive armed and cancelled as the connection wants
 * input, what comes into the reader (or spilled), sends, and the close
 * that waits for the ring. pc_conn_int.h is what it shares with
 * pc_conn.c; pc_uring.h is the ring.
 */
#include <errno.h>
#include <string.h>

#include "pc_conn_int.h"
#include "pc_conns.h"

/*
 * A loop reads and writes its client and peer sockets either through
 * libuv (epoll: alloc_cb and read_cb in pc_conn.c, uv_try_write in
 * pc_conn_flush), or with --io uring through the loop's ring (pc_uring.h),
 * here. Everything above the bytes -- framing, turns, limits, answers in
 * order -- is the same for both.
 *
 * Reading. While the connection wants input (pc_conn_update_reading), one
 * multishot receive is armed on its socket, which costs nothing per
 * request; when it does not, the receive is cancelled, and armed again
 * when it wants input again. Data keeps coming until the cancellation is
 * in (the kernel may have read more before), and all of it is taken:
 * into the reader while it has room, else into `spill`, which the frame
 * loop drains into the reader as frames leave it (pc_conn_unspill). Nothing
 * is read while anything is spilled, and the buffer cap counts it.
 *
 * Writing. pc_conn_flush queues a send of everything ready (the same
 * double buffering as with epoll: new answers go to `out` while `wbuf` is
 * sent); the loop submits every queued send in one system call before it
 * polls. A short send sends the rest.
 *
 * Closing. The socket must stay open while the ring may still use it:
 * the receive and any send are cancelled, and the handle closes when the
 * last of them has ended (pc_conn_ur_settle).
 */

void pc_conn_ur_reading(pc_conn_t *c, int want)
{
    c->reading = want;
    if (want && !c->ur_recv) {
        if (pc_uring_recv(c->cs->uring, c->fd, c) < 0) {
            pc_conn_close(c, "io_uring: no room to queue a receive");
            return;
        }
        c->ur_recv = 1;
        c->ur_cancel = 0;
        c->refs++;
    } else if (!want && c->ur_recv && !c->ur_cancel) {
        pc_uring_cancel_recv(c->cs->uring, c);
        c->ur_cancel = 1;
    }
}

void pc_conn_ur_settle(pc_conn_t *c)
{
    if (c->ur_close && !c->ur_recv && !c->writing) {
        c->ur_close = 0;
        uv_close(&c->h.handle, pc_conn_closed_cb);
    }
}

void pc_conn_ur_send(pc_conn_t *c)
{
    pc_buf_t t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->wsent = 0;
    if (pc_uring_send(c->cs->uring, c->fd, c, c->wbuf.data, c->wbuf.len) < 0) {
        pc_conn_close(c, "io_uring: no room to queue a send");
        return;
    }
    c->writing = 1;
    c->refs++;
}

void pc_conn_ur_close(pc_conn_t *c)
{
    if (c->ur_recv && !c->ur_cancel) {
        pc_uring_cancel_recv(c->cs->uring, c);
        c->ur_cancel = 1;
    }
    if (c->writing)
        pc_uring_cancel_send(c->cs->uring, c);
    c->ur_close = 1;
    pc_conn_ur_settle(c);
}

/* Copies what fits of p[0..n) into c's reader; returns how much. */
static size_t conn_reader_take(pc_conn_t *c, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        uint8_t *dst;
        size_t avail;
        if (pc_proto_reader_reserve(&c->rd, n - done, &dst, &avail) < 0 || avail == 0)
            break;
        size_t k = avail < n - done ? avail : n - done;
        memcpy(dst, p + done, k);
        pc_proto_reader_commit(&c->rd, k);
        done += k;
    }
    return done;
}

size_t pc_conn_unspill(pc_conn_t *c)
{
    size_t k = conn_reader_take(c, c->spill.data, c->spill.len);
    pc_buf_consume(&c->spill, k);
    if (c->spill.len == 0)
        pc_buf_free(&c->spill);
    return k;
}

static void ur_recv(void *who, const uint8_t *data, size_t n)
{
    pc_conn_t *c = who;
    if (c->closing)
        return;
    c->bytes_in += (uint64_t)n;
    c->last_active = uv_now(c->cs->loop);
    if (c->spill.len == 0 && pc_proto_reader_pending(&c->rd) == 0) {
        pc_conn_read_lent(c, data, n);
        (void)pc_conns_shed_over_cap(c);
        return;
    }
    size_t k = c->spill.len == 0 ? conn_reader_take(c, data, n) : 0;
    if (k < n && pc_buf_append(&c->spill, data + k, n - k) < 0) {
        pc_conn_close(c, "out of memory for input");
        return;
    }
    if (pc_conns_shed_over_cap(c))
        return;
    pc_conn_run(c);
    if (!c->closing)
        pc_conn_update_reading(c);
}

static void ur_recv_end(void *who, int res)
{
    pc_conn_t *c = who;
    c->ur_recv = 0;
    c->ur_cancel = 0;
    c->refs--; /* the handle's reference is still held: c stays */
    if (c->closing) {
        pc_conn_ur_settle(c);
        return;
    }
    if (res == 0) { /* the client may have half-closed and still want its answers */
        c->eof = 1;
        pc_conn_run(c);
        return;
    }
    if (res < 0 && res != -ECANCELED) {
        pc_conn_close(c, strerror(-res));
        return;
    }
    pc_conn_update_reading(c); /* armed again if it still wants input */
}

static void ur_sent(void *who, int res)
{
    pc_conn_t *c = who;
    if (res > 0 && !c->closing && c->wsent + (size_t)res < c->wbuf.len) {
        c->wsent += (size_t)res; /* a short send: the rest */
        c->wfull = 1;
        if (pc_uring_send(c->cs->uring, c->fd, c, c->wbuf.data + c->wsent,
                          c->wbuf.len - c->wsent) == 0)
            return;
        res = -EIO;
    } else if (res == 0 && c->wbuf.len > 0) {
        res = -EPIPE; /* took nothing and said no error: not going on */
    }
    pc_conn_write_done(c, res < 0 ? res : 0);
}

const pc_uring_hooks_t pc_conn_uring_hooks = {
    .recv = ur_recv,
    .recv_end = ur_recv_end,
    .sent = ur_sent,
};
