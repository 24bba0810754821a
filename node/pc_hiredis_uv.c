/*
 * pc_hiredis_uv.c -- hiredis on libuv: one write per loop turn, and the
 * poll changed only when what is wanted changes (pc_hiredis_uv.h).
 */
#include "pc_hiredis_uv.h"

#include <stdlib.h>

#include "pc_error.h"

typedef struct adapter {
    redisAsyncContext *ac; /* NULL once hiredis has let go (cleanup) */
    uv_poll_t poll;
    uv_prepare_t flush; /* active while queued commands wait for the turn's write */
    int polled;         /* UV_READABLE | UV_WRITABLE the poll has now */
    int want_read;      /* hiredis' addRead/delRead */
    int pollout;        /* connecting, or the socket took only part of the buffer */
    int writing;        /* inside redisAsyncHandleWrite */
    int open_handles;   /* freed when both are closed */
    void (*before_write)(void *arg); /* pc_hiredis_uv_before_write */
    void *before_write_arg;
} adapter_t;

static void poll_cb(uv_poll_t *h, int status, int events);

static void update_poll(adapter_t *a)
{
    if (a->ac == NULL)
        return;
    int events = (a->want_read ? UV_READABLE : 0) | (a->pollout ? UV_WRITABLE : 0);
    if (events == a->polled)
        return;
    a->polled = events;
    if (events != 0)
        (void)uv_poll_start(&a->poll, events, poll_cb);
    else
        (void)uv_poll_stop(&a->poll);
}

/* hiredis writes what it can; when it could not write everything it calls
 * addWrite again (with `writing` set), which asks for POLLOUT. */
static void handle_write(adapter_t *a)
{
    /* Whatever the owner appends now leaves in this write. */
    if (a->before_write != NULL && (a->ac->c.flags & REDIS_CONNECTED))
        a->before_write(a->before_write_arg);
    if (a->ac == NULL)
        return;
    a->writing = 1;
    redisAsyncHandleWrite(a->ac);
    a->writing = 0;
    update_poll(a);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    adapter_t *a = h->data;
    if (status < 0) {
        /* POLLERR (a refused connect, a reset): libuv has stopped the
         * poll. hiredis is told as a read: connecting, it takes the
         * socket's error and runs the connect callback with REDIS_ERR;
         * connected, the read fails and it disconnects. */
        a->polled = 0;
        if (a->ac != NULL)
            redisAsyncHandleRead(a->ac);
        update_poll(a);
        return;
    }
    if (a->ac != NULL && (events & UV_WRITABLE))
        handle_write(a);
    if (a->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(a->ac);
}

static void flush_cb(uv_prepare_t *h)
{
    adapter_t *a = h->data;
    if (a->ac != NULL && !a->pollout)
        handle_write(a);
    else
        (void)uv_prepare_stop(h);
}

static void add_read(void *privdata)
{
    adapter_t *a = privdata;
    a->want_read = 1;
    update_poll(a);
}

static void del_read(void *privdata)
{
    adapter_t *a = privdata;
    a->want_read = 0;
    update_poll(a);
}

static void add_write(void *privdata)
{
    adapter_t *a = privdata;
    /* Connecting (the first POLLOUT says connect(2) finished), or a write
     * that left bytes behind: wait for the socket. Otherwise the write is
     * the turn's, from the prepare handle. */
    if (a->writing || !(a->ac->c.flags & REDIS_CONNECTED)) {
        a->pollout = 1;
        (void)uv_prepare_stop(&a->flush);
        update_poll(a);
    } else if (!a->pollout) {
        (void)uv_prepare_start(&a->flush, flush_cb);
    }
}

static void del_write(void *privdata)
{
    adapter_t *a = privdata;
    a->pollout = 0;
    (void)uv_prepare_stop(&a->flush);
    update_poll(a);
}

static void closed_cb(uv_handle_t *h)
{
    adapter_t *a = h->data;
    if (--a->open_handles == 0)
        free(a);
}

static void cleanup(void *privdata)
{
    adapter_t *a = privdata;
    a->ac = NULL;
    uv_close((uv_handle_t *)&a->poll, closed_cb);
    uv_close((uv_handle_t *)&a->flush, closed_cb);
}

void pc_hiredis_uv_before_write(redisAsyncContext *ac, void (*fn)(void *arg), void *arg)
{
    adapter_t *a = ac->ev.data;
    a->before_write = fn;
    a->before_write_arg = arg;
}

int pc_hiredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data != NULL)
        return PC_EINVAL;
    adapter_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return PC_ENOMEM;
    if (uv_poll_init(loop, &a->poll, ac->c.fd) != 0) {
        free(a);
        return PC_EINVAL;
    }
    (void)uv_prepare_init(loop, &a->flush);
    a->poll.data = a;
    a->flush.data = a;
    a->open_handles = 2;
    a->ac = ac;
    ac->ev.data = a;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}
