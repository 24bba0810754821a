/*
 * pc_arrivals.c -- input arrivals on watched sockets (pc_arrivals.h): an
 * edge-triggered epoll instance, looked at without waiting.
 */
#include "pc_arrivals.h"

#include <sys/epoll.h>
#include <unistd.h>

/* Reports taken per epoll_wait. */
#define BATCH 32

int pc_arrivals_init(pc_arrivals_t *a)
{
    a->ep = epoll_create1(EPOLL_CLOEXEC);
    return a->ep >= 0 ? 0 : PC_EIO;
}

void pc_arrivals_free(pc_arrivals_t *a)
{
    if (a->ep >= 0)
        close(a->ep);
    a->ep = -1;
}

int pc_arrivals_add(pc_arrivals_t *a, int fd, void *arg)
{
    if (a->ep < 0)
        return PC_EINVAL;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = arg};
    return epoll_ctl(a->ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : PC_EIO;
}

int pc_arrivals_any(pc_arrivals_t *a, unsigned max, int (*want)(void *arg, void *ctx),
                    void *ctx)
{
    if (a->ep < 0)
        return 0;
    struct epoll_event ev[BATCH];
    while (max > 0) {
        int room = max < BATCH ? (int)max : BATCH;
        int n = epoll_wait(a->ep, ev, room, 0);
        if (n <= 0)
            return 0; /* none (or EINTR: the next look sees them) */
        for (int i = 0; i < n; i++)
            if (want(ev[i].data.ptr, ctx))
                return 1;
        if (n < room)
            return 0;
        max -= (unsigned)n;
    }
    return 0;
}
