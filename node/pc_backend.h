/*
 * pc_backend.h -- Redis as the durable store behind a node.
 *
 * One hiredis async connection on the caller's libuv loop. Commands are
 * pipelined on it and answered in the order they were sent, which the
 * server relies on: a read-through GET and a SET of the same key resolve
 * in the order Redis applied them.
 *
 * Values are plain Redis strings under R = `prefix` + key, so other
 * programs can read and write them. A value's flags, when not 0, are kept
 * beside it in a companion record, the Redis hash "pcm:{TAG}:" R in R's
 * Redis Cluster slot (pc_rkey.h), with a digest of the value they belong
 * to: a value another program wrote over R reads with flags 0. Every
 * command is one server-side script over both keys, so value and record
 * change together. docs/OPERATIONS.md, "What a node keeps in Redis", is
 * the full account (fields, TTLs, orphans).
 *
 * Callback contract (as libuv's): if a call returns an error, its callback
 * never runs; if it returns 0, the callback runs exactly once, later, from
 * the loop -- with err = 0 on success, or PC_EBACKEND when Redis refused,
 * the connection broke, or no reply came within the timeout. A call made
 * while Redis is unreachable fails at once with PC_EBACKEND (fail fast:
 * requests never queue behind a dead backend).
 *
 * Liveness: the connection is watched with a per-command deadline
 * (timeout_ms). A command past its deadline fails every command in flight
 * and drops the connection (with a reset, so unsent bytes die with it),
 * since nothing later on it can be trusted to arrive in time either.
 * Fencing (docs/CONSISTENCY.md "Failed writes stay failed"): every write
 * carries its deadline, moved onto Redis' clock (read with TIME at each
 * connect and every 10 s), and its script changes nothing once Redis'
 * clock is past it. A write's callback never reports a failure before
 * that deadline: the writes of a dropped connection are held until then.
 * So a write reported failed is never applied afterwards. Reconnects run
 * in the background with backoff (100 ms doubling to 250 ms) until Redis
 * answers again. Each connection
 * loads the scripts first (SCRIPT LOAD) and counts as up once they are
 * loaded; calls are taken from the moment it is made (those that come
 * before the loads have answered are sent with the script's text). If
 * Redis loses the scripts (SCRIPT FLUSH), the command that finds them
 * missing fails with PC_EBACKEND, and the connection is closed and made
 * again, which loads them again; commands are never sent twice or out
 * of order. After a connection was dropped for a timeout, calls fail at
 * once (PC_EBACKEND, stats `rejected`) until a new connection has loaded
 * the scripts, i.e. until Redis answers again: a stopped Redis still
 * accepts connections.
 *
 * Each connection opens with AUTH (when credentials are set) and SELECT
 * (a database other than 0), and in Sentinel mode ROLE; a refusal of any
 * of them, or NOAUTH, WRONGPASS, NOPERM or READONLY on a later command,
 * closes the connection (logged once per connection; a repeat of the same
 * refusal at debug level), and the backend reconnects -- in Sentinel mode
 * after asking the sentinels again. Commands are taken during those
 * loads only outside Sentinel mode: there, only once ROLE said primary.
 *
 * Thread rules: loop thread only (pc_backend_probe excepted, as it says).
 */
#ifndef PC_BACKEND_H
#define PC_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pc_backend_addr.h"
#include "pc_cred.h"
#include "pc_error.h"
#include "pc_hist.h"
#include "pc_log.h"

typedef struct pc_backend pc_backend_t;

typedef struct pc_backend_config {
    /* PC_BACKEND_SINGLE (TCP or a Unix socket), PC_BACKEND_SENTINEL or
     * PC_BACKEND_CLUSTER; copied. In Sentinel mode the backend asks the
     * sentinels for the primary before each connection, checks it with
     * ROLE, and follows +switch-master (pc_sentinel.h). In cluster mode
     * it routes each key by its slot to one connection per primary, each
     * as described above, and a command whose slot moved fails with
     * PC_ERETRY: nothing was applied (pc_backend_int.h). */
    const pc_backend_addr_t *addr;
    pc_cred_t *cred;         /* NULL = no AUTH; must outlive the backend */
    const char *prefix;      /* copied; "" = none */
    uint64_t timeout_ms;     /* per command and for connecting */
    uint64_t tcp_rto_min_ms; /* set on each connection; 0 = the kernel's */
    /* > 0: after the writes of a loop turn, WAIT wait_replicas
     * (timeout_ms / 2); the writes are reported done only when that many
     * replicas confirmed them, else failed with PC_EBACKEND -- though the
     * primary applied them (docs/CONSISTENCY.md "--redis-wait"). */
    unsigned wait_replicas;
} pc_backend_config_t;

typedef struct pc_backend_stats {
    uint64_t commands;    /* sent */
    uint64_t errors;      /* failed (refused, broken, timed out) */
    uint64_t timeouts;    /* of which timed out */
    uint64_t rejected;    /* refused at once because Redis was down */
    uint64_t connects;    /* successful (re)connections */
    uint64_t late;        /* writes Redis refused as past their fence (also in errors) */
    uint64_t held;        /* writes whose connection was dropped, failed only at their deadline */
    uint64_t wait_short;  /* writes applied but confirmed by fewer replicas than --redis-wait (failed) */
    uint64_t refusals;    /* connections given up because Redis refused AUTH, SELECT or ROLE, or
                             answered NOAUTH, WRONGPASS, NOPERM or READONLY */
    uint64_t switches;    /* Sentinel mode: moves to a new primary */
    uint64_t redirects;   /* Cluster mode: -MOVED, -ASK, -TRYAGAIN, -CLUSTERDOWN answers */
    int up;               /* 1 while connected */
    pc_hist_t rtt;        /* round trips of the commands Redis answered (error answers too) */
} pc_backend_stats_t;

/*
 * GET result: found = 1 with the value (valid only during the callback),
 * its flags and pttl_ms (remaining TTL, -1 = none); found = 0 for a
 * missing key. flags are those of the last SET through a node, or 0 when
 * that SET had flags 0, or when the value in Redis is no longer the one
 * it wrote (another program wrote it; the record's digest tells).
 */
typedef void (*pc_backend_get_cb)(void *arg, int err, int found, const uint8_t *val, size_t vlen,
                                  uint32_t flags, int64_t pttl_ms);
/*
 * err, in both callbacks: 0; PC_EBACKEND (above); or, in cluster mode
 * only, PC_ERETRY: the key's slot moved between primaries and the command
 * was not applied -- the client may send it again.
 */
/*
 * Write result: `applied` is 1 when the write took effect, 0 when its
 * condition failed (SET NX/XX), the key was missing (DEL, EXPIRE).
 */
typedef void (*pc_backend_done_cb)(void *arg, int err, int applied);

/* Creates the backend and starts connecting. 0 or PC_ENOMEM/PC_EINVAL.
 * `log` must outlive the backend. */
int pc_backend_new(uv_loop_t *loop, const pc_backend_config_t *cfg, const pc_log_t *log,
                   pc_backend_t **out);

/*
 * A synchronous check for start-up, before the loops run: connects (in
 * Sentinel mode, asks the sentinels first), sends AUTH and SELECT as a
 * backend would, and PING (ROLE in Sentinel mode, CLUSTER SLOTS in
 * cluster mode). 0 when Redis took
 * them; PC_EPERM when Redis refused the credentials (or wants some and
 * none are configured); PC_EINVAL when it refused SELECT, or no sentinel
 * knows the master name, or a cluster:// seed is not in cluster mode;
 * PC_EBACKEND when nothing answered within cfg->timeout_ms or 1 s,
 * whichever is shorter, per server asked (the node may start anyway: the
 * backend keeps trying; a sentinel naming a server that is not a primary
 * yet is that too). err says which, and what Redis said.
 */
int pc_backend_probe(const pc_backend_config_t *cfg, char *err, size_t errlen);

/* 1 while connected. */
int pc_backend_up(const pc_backend_t *b);

/*
 * All four copy key (and value) before they return: the caller's buffers
 * may go at once. The writes take `until_ms`: a wall-clock moment (Unix
 * ms; 0 = none) after which Redis must not apply them even if the
 * backend's own deadline is later -- a forwarded write's, whose relaying
 * node gives up then. It tightens the write's fence (above).
 */
/* Reads value, flags and remaining TTL atomically (one script). */
int pc_backend_get(pc_backend_t *b, const void *key, size_t klen, pc_backend_get_cb cb,
                   void *arg);
/* SET key value [PX ttl_ms] [NX|XX]; cond is enum pc_cond. If it applied,
 * the record is written in the same script: flags (with the value's
 * digest, and the same TTL) when flags != 0, removed when flags == 0. */
int pc_backend_set(pc_backend_t *b, const void *key, size_t klen, const void *val, size_t vlen,
                   uint64_t ttl_ms, int cond, uint32_t flags, uint64_t until_ms,
                   pc_backend_done_cb cb, void *arg);
/* Deletes the value and its record; applied = 1 when the value existed. */
int pc_backend_del(pc_backend_t *b, const void *key, size_t klen, uint64_t until_ms,
                   pc_backend_done_cb cb, void *arg);
/* New TTL for an existing key (0 = remove the expiry), given to its record
 * too; applied = 0 when the key does not exist. */
int pc_backend_expire(pc_backend_t *b, const void *key, size_t klen, uint64_t ttl_ms,
                      uint64_t until_ms, pc_backend_done_cb cb, void *arg);

void pc_backend_stats(const pc_backend_t *b, pc_backend_stats_t *out);

/*
 * Fails every command in flight now (callbacks with PC_EBACKEND, as for a
 * timeout) by dropping the connection, which then reconnects as after any
 * loss. For a stop that cannot wait for Redis any longer. Not from inside
 * a backend callback.
 */
void pc_backend_fail_pending(pc_backend_t *b);

/*
 * Fails whatever is in flight (callbacks run with PC_EBACKEND), closes the
 * connection and timers, and calls closed(arg) once every handle is
 * closed; the backend memory is freed just before. Call once.
 */
void pc_backend_close(pc_backend_t *b, void (*closed)(void *arg), void *arg);

#endif
