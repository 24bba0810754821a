/*
 * pc_arrivals.h -- which sockets got input since the last look, apart
 * from the loop's own poll. A loop that is busy with heavy turns (pc_conn.c
 * "Fair turns") asks it between them whether a light client's request has
 * come, so that the request waits for one heavy turn, not for all of the
 * heavy share.
 *
 * It is an epoll instance of its own, edge-triggered: each socket added
 * is reported once for every time input arrives after it was last
 * reported, whether or not anyone has read that input since (libuv's
 * poll, on its own instance, still reads it). A report is a hint, not a
 * promise that input is unread: pc_sock_unread says that. Reading it
 * changes nothing in libuv's view of the sockets.
 *
 * A socket stays watched until it is closed (the kernel drops it then, and
 * with it any report not yet taken; nothing in the node duplicates a
 * client socket, which would keep it open). So `arg` must stay valid
 * until the socket is closed.
 *
 * Errors: 0 or PC_EIO (the system call failed; errno says why).
 *
 * Thread rules: one thread at a time (the loop's).
 */
#ifndef PC_ARRIVALS_H
#define PC_ARRIVALS_H

#include "pc_error.h"

typedef struct pc_arrivals {
    int ep; /* the epoll instance; -1 = none (every look finds nothing) */
} pc_arrivals_t;

/* Makes the instance. On failure a->ep is -1, and the set works as
 * one that never reports. */
int pc_arrivals_init(pc_arrivals_t *a);

/* Closes the instance (and a->ep = -1). Idempotent. */
void pc_arrivals_free(pc_arrivals_t *a);

/* Watches socket fd for input arrivals; arg comes back with its reports.
 * 0, PC_EIO (then it is never reported), PC_EINVAL (no instance). */
int pc_arrivals_add(pc_arrivals_t *a, int fd, void *arg);

/* Takes the reports since the last look, at most `max` of them (the rest
 * stay for the next look), and calls want(arg, ctx) for each until one
 * says 1. Returns 1 if one did, else 0. The reports after that one in
 * the same batch are taken too, unread: a look asks only whether any
 * socket wants something. Never blocks. */
int pc_arrivals_any(pc_arrivals_t *a, unsigned max, int (*want)(void *arg, void *ctx),
                    void *ctx);

#endif
