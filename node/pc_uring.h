/*
 * pc_uring.h -- one event loop's io_uring for its client sockets (the
 * `--io uring` transport; docs/ARCHITECTURE.md "Transports").
 *
 * What it does. Each socket has one multishot receive armed: the kernel
 * reads whatever arrives into a buffer it takes from a ring of buffers
 * this module provides (one group per loop), and posts a completion per
 * buffer, so a connection costs no system call to read. Sends are queued
 * during a loop iteration and submitted together, with every other queued
 * operation, by one io_uring_enter before the loop polls
 * (pc_uring_submit). Completions that happen then, in the submitting
 * call, are handled at once. Every other completion signals an eventfd
 * the ring is registered with (switched off while pc_uring_submit runs),
 * which the libuv loop polls like any other descriptor, so those that
 * happen later (data arrives, a full socket drains) wake the loop:
 * timers, Redis, peers and gossip stay on libuv, and nothing here ever
 * blocks.
 *
 * Naming. The caller names each socket's operations by a pointer `who`
 * (its connection; 4-byte aligned, low bits are tags here) that the hooks
 * get back. At most one receive and one send per `who` are in flight at
 * once. A receive stays armed until it ends (hooks->recv_end); a send
 * ends with hooks->sent.
 *
 * Ownership. pc_uring_new allocates the ring, the buffers and the poll
 * handle on the loop; pc_uring_close closes the handle once no operation
 * is in flight; pc_uring_free frees the rest after that. Sockets stay the
 * caller's, who must not close one while an operation on it is in flight
 * (cancel it, and close when its last hook has run: a descriptor number
 * closed with a send still queued could name another socket by then).
 *
 * Thread rules: the loop's thread only (pc_uring_probe: any thread).
 *
 * Errors: 0 or a negative PC_E* code; hooks get -errno as the kernel
 * gave it.
 */
#ifndef PC_URING_H
#define PC_URING_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct pc_uring pc_uring_t;

/* The buffers a ring provides the kernel to receive into (a busy loop
 * touches them all: memory beyond --max-buffer-memory). */
#define PC_URING_BUF_BYTES (4u * 1024u * 1024u)

/* recv_end's "the kernel stopped the receive on its own (no buffer was
 * free, or its completion queue was full): arm it again if still
 * wanted". */
#define PC_URING_AGAIN 1

typedef struct pc_uring_hooks {
    /* n > 0 bytes came on who's socket; data is valid during the call
     * only (the buffer goes back to the kernel after it). */
    void (*recv)(void *who, const uint8_t *data, size_t n);
    /* who's receive ended: 0 = end of stream (the peer shut its side);
     * PC_URING_AGAIN; -ECANCELED after pc_uring_cancel_recv; another
     * -errno = the socket failed. */
    void (*recv_end)(void *who, int res);
    /* who's send ended: res >= 0 bytes taken (maybe fewer than asked:
     * send the rest), or -errno (-ECANCELED after pc_uring_cancel_send). */
    void (*sent)(void *who, int res);
} pc_uring_hooks_t;

/* What one ring has done, for STATS (docs/OPERATIONS.md). */
typedef struct pc_uring_counters {
    uint64_t enters;   /* io_uring_enter calls (each submits a batch) */
    uint64_t wakes;    /* the eventfd woke the loop */
    uint64_t cqes;     /* completions handled */
    uint64_t rearms;   /* receives the kernel stopped and that were armed again */
} pc_uring_counters_t;

/* Whether this kernel gives the transport what it needs -- io_uring at
 * all (a container's seccomp profile may refuse it), rings of provided
 * buffers (Linux 5.19) and multishot receive (6.0) -- tried on a socket
 * pair. 0, or PC_ENOTSUP with the reason in why[len]. */
int pc_uring_probe(char *why, size_t len);

/* A ring for `loop`, its buffers, and its eventfd polled on the loop (a
 * handle: it keeps the loop alive until pc_uring_close). 0, or PC_ENOMEM
 * / PC_ENOTSUP / PC_EIO with the reason in why[len]. */
int pc_uring_new(uv_loop_t *loop, const pc_uring_hooks_t *hooks, pc_uring_t **out, char *why,
                 size_t len);

/* Arms the multishot receive on fd for who. 0, or PC_EIO if nothing could
 * be queued (the ring failed). */
int pc_uring_recv(pc_uring_t *u, int fd, void *who);

/* Ends who's receive soon: data that was already read still comes
 * (hooks->recv), then hooks->recv_end. */
void pc_uring_cancel_recv(pc_uring_t *u, void *who);

/* Queues a send of data[0..n) (valid until hooks->sent) on fd for who;
 * it leaves with the batch (pc_uring_submit). 0 or PC_EIO. */
int pc_uring_send(pc_uring_t *u, int fd, void *who, const void *data, size_t n);

/* Ends who's send in flight soon (hooks->sent follows). */
void pc_uring_cancel_send(pc_uring_t *u, void *who);

/* Submits what was queued, and handles what that completed at once --
 * which may queue more: it goes round a few times, and if work is still
 * left then, wakes the loop again rather than sleep on it. Call it before
 * the loop polls (a prepare handle). */
void pc_uring_submit(pc_uring_t *u);

/* Its counters so far. */
void pc_uring_counters(const pc_uring_t *u, pc_uring_counters_t *out);

/* No more use but to finish what is in flight (operations queued from
 * now on are submitted at once): once nothing is, its handle closes and
 * closed(arg) runs, on the loop. */
void pc_uring_close(pc_uring_t *u, void (*closed)(void *arg), void *arg);

/* Frees it (after closed() ran, or if the loop never ran). NULL is fine. */
void pc_uring_free(pc_uring_t *u);

#endif
