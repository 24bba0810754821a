/*
 * pc_uring.c -- a loop's io_uring for client sockets: multishot receive
 * into provided buffers, sends batched per loop iteration, completions
 * through an eventfd on the libuv loop.
 */
#include "pc_uring.h"

#include <errno.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pc_error.h"

/* Submission queue entries; the completion queue holds four times as
 * many (every receive may post several completions per submission). */
#define SQ_ENTRIES 1024u
#define CQ_ENTRIES (4u * SQ_ENTRIES)
/* The provided buffers: BUF_COUNT of BUF_SIZE bytes (BUF_COUNT a power of
 * two). A receive takes a whole buffer however little came, and holds it
 * until its completion is handled, so there are many: with 1000
 * connections at pipeline 16 on one loop, 256 of 16 KiB ran out about
 * once per 300 requests (each time a receive to arm again). Pages are
 * touched only as the kernel fills them, so an idle node does not hold
 * them; a busy one holds them all, PC_URING_BUF_BYTES per loop. */
#define BUF_COUNT 1024u
#define BUF_SIZE (PC_URING_BUF_BYTES / BUF_COUNT)
#define BUF_GROUP 0
/* Rounds of submit-and-complete before the loop polls (pc_uring_submit). */
#define SUBMIT_ROUNDS 4

/* user_data: who | tag; 0 = a cancellation, whose completion is ignored. */
#define TAG_RECV 1u
#define TAG_SEND 2u
#define TAG_MASK 3u

struct pc_uring {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    int efd;
    uv_poll_t poll;
    /* Started when pc_uring_submit leaves completions for later: keeps
     * the loop from sleeping over them. */
    uv_idle_t again;
    int handles; /* poll and again, until both closed */
    const pc_uring_hooks_t *hooks;
    unsigned inflight; /* receives armed and sends queued, not yet ended */
    int reaping;       /* inside complete(): no nesting */
    int closing;
    void (*closed)(void *arg);
    void *closed_arg;
    pc_uring_counters_t n;
};

static void set_why(char *why, size_t len, const char *what, int err)
{
    if (why != NULL && len > 0)
        snprintf(why, len, "%s: %s", what, strerror(err));
}

/* ---- the ring and its buffers ------------------------------------------- */

static int ring_init(struct io_uring *ring, unsigned entries, unsigned cq, char *why,
                     size_t len)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = cq;
    int rc = io_uring_queue_init_params(entries, ring, &p);
    if (rc == -EINVAL) { /* a kernel before 5.18: without SUBMIT_ALL */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = cq;
        rc = io_uring_queue_init_params(entries, ring, &p);
    }
    if (rc < 0) {
        set_why(why, len, "io_uring_setup", -rc);
        return PC_ENOTSUP;
    }
    return 0;
}

/* A ring of `count` buffers of `size` bytes at bufs, registered as group
 * BUF_GROUP; *out is the ring (page-aligned, freed with free()). */
static int bufs_register(struct io_uring *ring, uint8_t *bufs, unsigned count, unsigned size,
                         struct io_uring_buf_ring **out, char *why, size_t len)
{
    void *mem = NULL;
    if (posix_memalign(&mem, 4096, count * sizeof(struct io_uring_buf)) != 0) {
        set_why(why, len, "provided buffer ring", ENOMEM);
        return PC_ENOMEM;
    }
    struct io_uring_buf_ring *br = mem;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = count;
    reg.bgid = BUF_GROUP;
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc < 0) {
        free(mem);
        set_why(why, len, "io_uring_register_buf_ring (rings of provided buffers need Linux "
                "5.19)", -rc);
        return PC_ENOTSUP;
    }
    io_uring_buf_ring_init(br);
    int mask = io_uring_buf_ring_mask(count);
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * size, size, (unsigned short)i, mask,
                              (int)i);
    io_uring_buf_ring_advance(br, (int)count);
    *out = br;
    return 0;
}

/* ---- the probe ------------------------------------------------------------ */

int pc_uring_probe(char *why, size_t len)
{
    struct io_uring ring;
    int rc = ring_init(&ring, 8, 32, why, len);
    if (rc < 0)
        return PC_ENOTSUP;
    uint8_t bufs[4][64];
    struct io_uring_buf_ring *br = NULL;
    int sv[2] = {-1, -1};
    rc = bufs_register(&ring, &bufs[0][0], 4, 64, &br, why, len);
    if (rc < 0)
        goto out;
    rc = PC_ENOTSUP;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
        set_why(why, len, "socketpair", errno);
        goto out;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, 1);
    if (write(sv[1], "x", 1) != 1) {
        set_why(why, len, "write to a socket pair", errno);
        goto out;
    }
    struct io_uring_cqe *cqe;
    int e = io_uring_submit_and_wait(&ring, 1);
    if (e >= 0)
        e = io_uring_wait_cqe(&ring, &cqe);
    if (e < 0) {
        set_why(why, len, "io_uring_enter", -e);
        goto out;
    }
    if (cqe->res != 1 || !(cqe->flags & IORING_CQE_F_BUFFER) ||
        !(cqe->flags & IORING_CQE_F_MORE)) {
        set_why(why, len, "multishot receive (needs Linux 6.0)",
                cqe->res < 0 ? -cqe->res : EOPNOTSUPP);
        goto out;
    }
    rc = 0;
out:
    if (sv[0] >= 0) {
        close(sv[0]);
        close(sv[1]);
    }
    io_uring_queue_exit(&ring); /* cancels the receive */
    free(br);
    return rc;
}

/* ---- completions ----------------------------------------------------------- */

static void maybe_closed(pc_uring_t *u);

static void buf_return(pc_uring_t *u, unsigned bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE,
                          (unsigned short)bid, io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

/* Handles every completion posted so far. Each is taken off the queue
 * before its hook runs; a hook may queue (and, with the submission queue
 * full, submit) more, whose completions this same loop then finds. */
static void complete(pc_uring_t *u)
{
    if (u->reaping)
        return;
    u->reaping = 1;
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        unsigned flags = cqe->flags;
        io_uring_cqe_seen(&u->ring, cqe);
        u->n.cqes++;
        if (ud == 0)
            continue; /* a cancellation's own */
        void *who = (void *)(uintptr_t)(ud & ~(uint64_t)TAG_MASK);
        if ((ud & TAG_MASK) == TAG_SEND) {
            u->inflight--;
            u->hooks->sent(who, res);
            continue;
        }
        if (flags & IORING_CQE_F_BUFFER) {
            unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
            if (res > 0)
                u->hooks->recv(who, u->bufs + (size_t)bid * BUF_SIZE, (size_t)res);
            buf_return(u, bid);
        }
        if (!(flags & IORING_CQE_F_MORE)) {
            u->inflight--;
            if (res > 0 || res == -ENOBUFS) {
                u->n.rearms++;
                res = PC_URING_AGAIN;
            }
            u->hooks->recv_end(who, res);
        }
    }
    u->reaping = 0;
    maybe_closed(u);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    pc_uring_t *u = h->data;
    (void)status;
    (void)events;
    eventfd_t v;
    (void)eventfd_read(u->efd, &v); /* nonblocking: 0 or EAGAIN */
    u->n.wakes++;
    complete(u);
}

/* ---- queueing ---------------------------------------------------------- */

static int enter(pc_uring_t *u)
{
    u->n.enters++;
    int rc = io_uring_submit(&u->ring);
    return rc < 0 ? rc : 0;
}

static struct io_uring_sqe *sqe_get(pc_uring_t *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe == NULL) { /* the queue is full: submit it now, then queue */
        (void)enter(u);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

/* Once closing, nothing waits for a prepare handle: submitted at once. */
static void queued(pc_uring_t *u)
{
    if (u->closing)
        (void)enter(u);
}

int pc_uring_recv(pc_uring_t *u, int fd, void *who)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return PC_EIO;
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)who | TAG_RECV);
    u->inflight++;
    queued(u);
    return 0;
}

int pc_uring_send(pc_uring_t *u, int fd, void *who, const void *data, size_t n)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return PC_EIO;
    io_uring_prep_send(sqe, fd, data, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)who | TAG_SEND);
    u->inflight++;
    queued(u);
    return 0;
}

static void cancel(pc_uring_t *u, void *who, unsigned tag)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return; /* the ring failed; closing it ends everything */
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)who | tag, 0);
    io_uring_sqe_set_data64(sqe, 0);
    queued(u);
}

void pc_uring_cancel_recv(pc_uring_t *u, void *who) { cancel(u, who, TAG_RECV); }

void pc_uring_cancel_send(pc_uring_t *u, void *who) { cancel(u, who, TAG_SEND); }

static void again_cb(uv_idle_t *h) { uv_idle_stop(h); }

/*
 * Completions posted while this runs need no wake-up: they are handled
 * here. So the eventfd is switched off meanwhile (a flag in the shared
 * ring, no system call) -- else every batch of sends that completes in
 * the submitting call would wake the loop once more for nothing. Once it
 * is on again, anything already posted is looked for: completions come
 * from task work on this thread, at its system calls, so one posted while
 * it was off is in the queue by then; a completion from another thread
 * (an io-wq worker, not used for sockets) that races the switch is found
 * by the next iteration's call at the latest, which always looks.
 */
void pc_uring_submit(pc_uring_t *u)
{
    (void)io_uring_cq_eventfd_toggle(&u->ring, false);
    for (int round = 0; round < SUBMIT_ROUNDS; round++) {
        if (io_uring_sq_ready(&u->ring) == 0 && io_uring_cq_ready(&u->ring) == 0)
            break;
        if (io_uring_sq_ready(&u->ring) > 0)
            (void)enter(u);
        complete(u); /* what completed in the call: handled now */
    }
    (void)io_uring_cq_eventfd_toggle(&u->ring, true);
    atomic_thread_fence(memory_order_seq_cst);
    if (io_uring_sq_ready(&u->ring) > 0) /* more than the rounds allowed: it goes now */
        (void)enter(u);
    if (io_uring_cq_ready(&u->ring) > 0)
        (void)uv_idle_start(&u->again, again_cb); /* and the loop comes back for the rest */
}

void pc_uring_counters(const pc_uring_t *u, pc_uring_counters_t *out) { *out = u->n; }

/* ---- life ------------------------------------------------------------------ */

static void free_on_close(uv_handle_t *h) { pc_uring_free(h->data); }

int pc_uring_new(uv_loop_t *loop, const pc_uring_hooks_t *hooks, pc_uring_t **out, char *why,
                 size_t len)
{
    pc_uring_t *u = calloc(1, sizeof *u);
    if (u == NULL) {
        set_why(why, len, "io_uring state", ENOMEM);
        return PC_ENOMEM;
    }
    u->hooks = hooks;
    u->efd = -1;
    int rc = ring_init(&u->ring, SQ_ENTRIES, CQ_ENTRIES, why, len);
    if (rc < 0) {
        free(u);
        return rc;
    }
    u->bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
    if (u->bufs == NULL) {
        set_why(why, len, "io_uring buffers", ENOMEM);
        rc = PC_ENOMEM;
        goto fail;
    }
    rc = bufs_register(&u->ring, u->bufs, BUF_COUNT, BUF_SIZE, &u->br, why, len);
    if (rc < 0)
        goto fail;
    u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->efd < 0) {
        set_why(why, len, "eventfd", errno);
        rc = PC_EIO;
        goto fail;
    }
    int e = io_uring_register_eventfd(&u->ring, u->efd);
    if (e < 0) {
        set_why(why, len, "io_uring_register_eventfd", -e);
        rc = PC_ENOTSUP;
        goto fail;
    }
    e = uv_poll_init(loop, &u->poll, u->efd);
    if (e < 0) {
        snprintf(why, len, "polling the ring's eventfd: %s", uv_strerror(e));
        rc = PC_EIO;
        goto fail;
    }
    u->poll.data = u;
    e = uv_poll_start(&u->poll, UV_READABLE, poll_cb);
    if (e < 0) { /* the handle is the loop's now: freed once it has closed */
        snprintf(why, len, "polling the ring's eventfd: %s", uv_strerror(e));
        uv_close((uv_handle_t *)&u->poll, free_on_close);
        return PC_EIO;
    }
    uv_idle_init(loop, &u->again);
    u->again.data = u;
    u->handles = 2;
    *out = u;
    return 0;
fail:
    pc_uring_free(u);
    return rc;
}

static void handle_closed(uv_handle_t *h)
{
    pc_uring_t *u = h->data;
    if (--u->handles == 0 && u->closed != NULL)
        u->closed(u->closed_arg);
}

static void maybe_closed(pc_uring_t *u)
{
    if (!u->closing || u->inflight > 0 || uv_is_closing((uv_handle_t *)&u->poll))
        return;
    uv_close((uv_handle_t *)&u->again, handle_closed);
    uv_close((uv_handle_t *)&u->poll, handle_closed);
}

void pc_uring_close(pc_uring_t *u, void (*closed)(void *arg), void *arg)
{
    u->closing = 1;
    u->closed = closed;
    u->closed_arg = arg;
    if (io_uring_sq_ready(&u->ring) > 0)
        (void)enter(u);
    maybe_closed(u);
}

void pc_uring_free(pc_uring_t *u)
{
    if (u == NULL)
        return;
    io_uring_queue_exit(&u->ring);
    if (u->efd >= 0)
        close(u->efd);
    free(u->br);
    free(u->bufs);
    free(u);
}
