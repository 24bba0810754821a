/*
 * pc_client.h -- libpeercache, the thin blocking C client.
 *
 * A pc_client_t talks to one or more peercached nodes over blocking TCP
 * sockets with per-call timeouts. It keeps one connection open at a time,
 * to the first node in its list that answers; when a call fails with a
 * connection error it reconnects (to the next node if need be) and the
 * call fails with PC_ECONN or PC_ETIMEDOUT -- it never silently retries a
 * write, because the write may have been applied.
 *
 * In detail:
 *  - Connecting: nodes are tried in list order starting from the last one
 *    that worked. Each node gets timeout_ms for TCP connect + HELLO; a
 *    refused, timed-out, busy or garbled node moves on to the next, an
 *    answer such as AUTH_REQUIRED (PC_EINVAL) does not. So a call that
 *    must connect can take up to (nodes tried + 1) x timeout_ms. Host
 *    names are resolved on each connect; getaddrinfo() is not bounded by
 *    the timeout.
 *  - Exchange: after connecting, sending the request and receiving its
 *    reply share one timeout_ms deadline. Any failure on the way (timeout,
 *    broken connection, a reply whose id or op does not match) closes the
 *    connection, so a late reply can never be taken for a later request's;
 *    the next call connects again.
 *  - Stale connections: before a request is sent on an idle connection,
 *    the client checks that the server has not closed it meanwhile (idle
 *    timeout, restart) and if so reconnects first -- nothing was sent, so
 *    this is safe for writes too. A read (GET, MGET, PING, STATS) that
 *    still fails with PC_ECONN on a reused connection is sent once more on
 *    a new one; writes never are, and timeouts never are.
 *  - Limits: replies up to the protocol's default max frame (1 MiB +
 *    128 KiB) are accepted; a larger one fails with PC_ETOOBIG. Requests
 *    are limited only by the protocol (4 GiB); the server enforces its own
 *    limits (TOO_LARGE -> PC_ETOOBIG, or it may close the connection).
 *
 * Errors: every call returns 0 or a negative pc_err code (pc_error.h).
 * Server-side conditions map to codes: NOT_FOUND -> PC_ENOTFOUND,
 * EXISTS -> PC_EEXISTS, NOT_STORED -> PC_ENOTSTORED, TOO_LARGE ->
 * PC_ETOOBIG, BACKEND_UNAVAILABLE -> PC_EBACKEND, BUSY -> PC_EBUSY,
 * BAD_REQUEST -> PC_EBADREQ, INTERNAL -> PC_EINTERNAL. After any failure,
 * pc_client_errmsg() gives the human message (the server's, if it sent
 * one), valid until the next call on the client.
 *
 * Ownership: values returned to the caller are malloc'd copies owned by the
 * caller: free a pc_value_t with pc_value_free(), an MGET result with
 * pc_mget_free(), stats with pc_stats_free().
 *
 * Thread rules: a client is not thread-safe; use one per thread (they are
 * cheap: one socket each).
 */
#ifndef PC_CLIENT_H
#define PC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "pc_error.h"

typedef struct pc_client pc_client_t;

typedef struct pc_client_options {
    const char *nodes;    /* "host:port[,host:port...]", required */
    int timeout_ms;       /* per call (connect, send, receive); 0 = 2000 */
    const char *token;    /* optional client token, sent in HELLO */
    uint32_t max_frame;   /* largest reply accepted, bytes; 0 = the protocol
                             default (1 MiB + 128 KiB). Raise it to match a
                             node run with a larger --max-frame. */
} pc_client_options_t;

/* A value the caller owns. */
typedef struct pc_value {
    uint8_t *data; /* NUL-terminated for convenience; len excludes it */
    size_t len;
    uint32_t flags;
    uint64_t version;
    int64_t ttl_ms; /* remaining; -1 = no expiry */
} pc_value_t;

/* One MGET answer: status 0 = found (value set), else a pc_err code. */
typedef struct pc_mget_item {
    int status;
    pc_value_t value;
} pc_mget_item_t;

typedef struct pc_stat_entry {
    char *name;
    int64_t value;
} pc_stat_entry_t;

/* Values of pc_set_options_t.cond. They equal pc_proto.h's PC_COND_*
 * (checked at compile time), which installed programs cannot include. */
#define PC_CLIENT_COND_NONE 0 /* store unconditionally */
#define PC_CLIENT_COND_NX 1   /* only if the key is absent, else PC_EEXISTS */
#define PC_CLIENT_COND_XX 2   /* only if the key is present, else PC_ENOTSTORED */

/* SET options; NULL means all zero: no TTL, flags 0, no condition. */
typedef struct pc_set_options {
    uint64_t ttl_ms;  /* 0 = no expiry */
    uint32_t flags;
    int cond;         /* PC_COND_NONE / _NX / _XX (pc_proto.h values 0/1/2),
                         a.k.a. PC_CLIENT_COND_* above */
    uint64_t cas;     /* expected version, 0 = no check; a different
                         version fails with PC_EEXISTS */
} pc_set_options_t;

/* Creates a client; parses the node list but does not connect yet (the
 * first call does). 0, PC_EINVAL (bad node list) or PC_ENOMEM. */
int pc_client_new(const pc_client_options_t *opt, pc_client_t **out);
/* Closes the connection and frees; *c = NULL. NULL-safe. */
void pc_client_free(pc_client_t **c);

/* Human message for the last failed call ("" after a success). Never
 * NULL; valid until the next call on c. */
const char *pc_client_errmsg(const pc_client_t *c);

int pc_client_ping(pc_client_t *c);
/* On success *out holds a copy the caller frees with pc_value_free. On
 * failure *out is all zero (pc_value_free on it is harmless). */
int pc_client_get(pc_client_t *c, const void *key, size_t klen, pc_value_t *out);
/* *version_out (may be NULL) receives the version now stored. */
int pc_client_set(pc_client_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                  const pc_set_options_t *opt, uint64_t *version_out);
int pc_client_del(pc_client_t *c, const void *key, size_t klen);
int pc_client_touch(pc_client_t *c, const void *key, size_t klen, uint64_t ttl_ms);
/* Fetches n keys in one request. On 0, *out is an array of n items (free
 * with pc_mget_free(*out, n)); each item has its own status. n == 0
 * returns 0 with *out = NULL without asking the server. */
int pc_client_mget(pc_client_t *c, size_t n, const void *const *keys, const size_t *klens,
                   pc_mget_item_t **out);
/* On 0, *out is an array of *n entries; free with pc_stats_free. */
int pc_client_stats(pc_client_t *c, pc_stat_entry_t **out, size_t *n);

void pc_value_free(pc_value_t *v);
void pc_mget_free(pc_mget_item_t *items, size_t n);
void pc_stats_free(pc_stat_entry_t *stats, size_t n);

#endif
