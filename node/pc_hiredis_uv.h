/*
 * pc_hiredis_uv.h -- hiredis' asynchronous context on a libuv loop, without
 * an epoll_ctl per command.
 *
 * hiredis 0.14's own libuv adapter (hiredis/adapters/libuv.h) asks for
 * POLLOUT whenever a command is queued and drops it when the buffer is
 * written, and re-arms reading after every read and write; each of those is
 * a uv_poll_start, which libuv 1.44 turns into EPOLL_CTL_ADD (failing with
 * EEXIST) and EPOLL_CTL_MOD at the next poll. Under write load that was
 * about four epoll_ctl per batch of commands, and every batch waited one
 * more loop turn for the POLLOUT to be reported.
 *
 * This adapter polls the socket for reading for as long as hiredis wants
 * it, and changes the poll only when the wanted set changes. Commands
 * queued while the connection is up are written in one write from a
 * prepare handle, just before the loop next waits -- so every command
 * queued in one loop turn leaves in one write, and no epoll_ctl is made.
 * POLLOUT is asked for only while connecting and when the socket does not
 * take the whole buffer.
 *
 * Thread rules: the loop's thread only, like the context. Commands must not
 * be queued from a prepare callback that runs after this adapter's in the
 * same turn (none of the node's does: they only write answers and shed
 * connections); such a command would wait for the next turn.
 *
 * Also unlike hiredis' adapter, a poll error (a refused connect, which
 * epoll reports as POLLERR) reaches hiredis, which then runs the connect
 * callback with REDIS_ERR; hiredis' adapter dropped it, and the connect
 * waited for its timeout.
 */
#ifndef PC_HIREDIS_UV_H
#define PC_HIREDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac (fresh from redisAsyncConnect) to loop. The adapter's state
 * is owned by the context: redisAsyncFree (or hiredis' own disconnect)
 * runs its cleanup, which closes its handles and frees it. 0 on success;
 * PC_EINVAL if ac already has event hooks or libuv refuses its socket,
 * PC_ENOMEM (ac is then untouched and still the caller's to free). */
int pc_hiredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

/*
 * fn(arg) runs just before each write of the queued commands to the socket
 * (once the connection is made), so that what it queues -- a command that
 * must follow everything else of the turn, such as WAIT -- leaves in the
 * same write. It may queue commands; it must not free the context. ac
 * must be attached. fn NULL removes it.
 */
void pc_hiredis_uv_before_write(redisAsyncContext *ac, void (*fn)(void *arg), void *arg);

#endif
