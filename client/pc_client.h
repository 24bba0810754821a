/*
 * pc_client.h -- libpeercache, the blocking C client.
 *
 * A pc_client_t talks to one or more peercached nodes over blocking TCP
 * sockets with per-call timeouts. It works in one of two modes:
 *
 *  - Ring-aware (the default). The client learns the cluster's members
 *    and builds the same placement ring the nodes use (ring/pc_ring.h),
 *    then sends each single-key request straight to the key's owner, so
 *    no node has to relay it. It keeps at most one connection per node,
 *    opened when first needed.
 *  - Seed-only (options.no_ring = 1). One connection at a time, to the
 *    first node of the list that answers; any node relays a key to its
 *    owner, so this works against a cluster too, at the cost of a hop.
 *
 * A client never silently sends a write twice: once a write may have
 * reached a node, a failure (timeout, broken connection) is returned as
 * PC_ETIMEDOUT or PC_ECONN, because the write may have been applied.
 *
 * The node list ("seeds"), both modes:
 *  - Nodes are tried in list order starting from the last one that
 *    worked. Each node gets timeout_ms for TCP connect + HELLO; a
 *    refused, timed-out, busy or garbled node moves on to the next, an
 *    answer such as AUTH_REQUIRED (PC_EINVAL) does not. So a call that
 *    must connect can take up to (nodes tried + 1) x timeout_ms. Host
 *    names are resolved on each connect; getaddrinfo() is not bounded by
 *    the timeout.
 *  - PING, STATS and pc_client_cluster() always go to the seeds this
 *    way, in ring-aware mode too: they ask "a node", not "the owner".
 *
 * Ring-aware routing, in detail:
 *  - Learning the ring: lazily, on the first single-key call or MGET, the
 *    client sends CLUSTER to the seeds (in the order above) and builds a
 *    ring from the members that are alive or suspect, with their weights
 *    and the cluster's replica count. Members are then reached at the
 *    addresses they advertise, not through the seed list.
 *  - Staying seed-only: if the node answers CLUSTER with an error (a node
 *    outside any cluster, or one older than CLUSTER), or its member list
 *    cannot be used (an address that is not HOST:PORT or is a wildcard
 *    such as 0.0.0.0, a ring that does not reproduce the node's
 *    fingerprint, an answer over max_frame), the client works seed-only
 *    until a reply shows a different ring fingerprint; then it tries
 *    again.
 *  - Refreshing: every reply carries the answering node's ring
 *    fingerprint. When it is non-zero and differs from the client's, the
 *    call completes normally and the client then fetches CLUSTER again,
 *    from that node first. A node that fails (connect error, broken
 *    connection, timeout, BUSY at connect) also makes the client refresh,
 *    from a node other than the failed one (members whose connection is
 *    open first, then the other members, then the seeds), but at most
 *    once per 100 ms: until the cluster declares the node dead, every
 *    refresh would bring back the same ring, and once it does, replies
 *    show the new fingerprint anyway. A refresh that reaches nobody (it
 *    gives up after 3 unreachable nodes when it has a ring to keep) keeps
 *    the ring it had and is tried again on the next call. Each node is
 *    tried at most once per call. A refresh that brings back the same
 *    fingerprint only takes the members' addresses.
 *  - Reads (GET, MGET) go to the key's owner; if it fails they fall back
 *    to the key's next placement on the refreshed ring that has not failed
 *    in this call (the new owner if the ring changed, else the replicas in
 *    ring order). So a read may take up to (placements tried) x
 *    timeout_ms, plus the refreshes.
 *  - Writes (SET, DEL, TOUCH) go to the key's owner only. If the owner
 *    cannot be reached before any byte of the write was sent (connect or
 *    HELLO failed, or the idle connection was found closed and could not
 *    be reopened), the ring is refreshed (within the 100 ms limit above)
 *    and the write goes to the new owner if there is one; if the ring
 *    still names the failed node, the call fails with its error
 *    (PC_ECONN / PC_ETIMEDOUT). Once a byte may have been sent, a write
 *    is never sent again: a timeout or a broken connection is returned
 *    as it is (the outcome is unknown), and the ring is refreshed on the
 *    next call. Each write carries the moment the call gives up, on the
 *    node's clock (measured from its HELLO answer; PROTOCOL.md §5.5),
 *    so a write returned PC_ETIMEDOUT is applied, if at all, before that
 *    moment: never after a later write that succeeded.
 *  - Riding through a slow or stopped node (client/pc_health.h). The
 *    client keeps, per node, a smoothed round trip and its variation,
 *    and a breaker:
 *     - A GET whose owner has not answered within the hedge delay
 *       (smoothed round trip + 4 x its variation, at least 10 ms, at most
 *       timeout_ms / 4; 50 ms before anything was measured) is sent to
 *       the key's next placement too, with `here` set (PROTOCOL.md §5.3)
 *       so that node answers itself rather than relaying to the owner;
 *       the first answer wins. The other request's late reply is read and
 *       dropped before that connection's next request.
 *     - A node is unresponsive when a request to it failed (no reply
 *       within timeout_ms, a refused or broken connection) or has gone
 *       unanswered for the stall limit (4 hedge delays, at least 300 ms,
 *       at most timeout_ms / 2). Its breaker then opens for 200 ms,
 *       doubling with each failure in a row up to 2 s. While it is open,
 *       reads go to the next placement that is not unresponsive (a node
 *       still owing an answer is passed over too), and a write for the
 *       node fails at once with PC_ECONN and a message saying it was not
 *       sent (nothing was applied) -- after a refresh of the ring, within
 *       the 100 ms limit above, in case the cluster already named a new
 *       owner. A write for a node that still owes an answer waits for it
 *       up to the stall limit first.
 *     - When the back-off has passed, the next call that would use the
 *       node sends it a PING without waiting for it (or, with no
 *       connection, connects and says HELLO within the stall limit); any
 *       answer from the node closes the breaker.
 *    So with a key's owner stopped, reads of it take about one hedge
 *    delay, and writes fail fast once the stall limit has passed, until
 *    the cluster declares the owner dead and the ring names another.
 *  - TCP: every connection lowers its retransmission timeout floor to
 *    10 ms where the kernel allows it (TCP_RTO_MIN_US, Linux 6.15+; as the
 *    node's --tcp-rto-min, docs/OPERATIONS.md "Lost packets").
 *  - RETRY (PC_ERETRY) means the node applied nothing because the
 *    cluster is changing. Reads and writes alike are then retried after
 *    a refresh from the node that answered: up to 3 more times, after
 *    20, 50 and 100 ms. If the last attempt still says RETRY, the call
 *    fails with PC_ERETRY (nothing was applied). In seed-only mode there
 *    is no ring to refresh, and PC_ERETRY is returned at once.
 *  - MGET groups the keys by owner and sends one MGET per owner, one
 *    after the other, then puts the answers back in request order. Keys
 *    whose owner is unresponsive go to their next placement, as a GET's
 *    do. An owner that has not answered its MGET within its stall limit
 *    is given up on (not after the whole timeout: an MGET's time grows
 *    with its keys, so the hedge delay of single reads would not fit
 *    it): the request is left as that connection's orphan, the node's
 *    breaker opens, and its keys go to their next placements (at most
 *    once per key and call; counted in mget_hedges). An MGET sent to a
 *    node for keys it does not own says `here` (PROTOCOL.md §5.4), so
 *    that node answers them itself. Keys of a node that fails fall back
 *    to their next placements as for GET; a key with no placement left
 *    gets its own error status (the last failure, e.g. PC_ECONN), and a
 *    key still answered RETRY after the retries gets PC_ERETRY. The call itself fails only if no node
 *    answered at all (the code of the last failure), or if a node rejects
 *    the request itself (PC_ETOOBIG for more keys than a node takes,
 *    PC_EBADREQ, PC_EINVAL, PC_ENOMEM).
 *  - Between refreshes the client's ring may be out of date; a node that
 *    receives a key it does not own relays it to the owner, so a stale
 *    ring costs a hop, not a wrong answer.
 *  - PING and STATS never make the client learn a ring; once it has one
 *    (or has found that the nodes offer none), their replies' fingerprints
 *    count like any other's.
 *
 * One exchange, both modes:
 *  - Exchange: sending the request and receiving its reply share one
 *    timeout_ms deadline. Any failure on the way (timeout, broken
 *    connection, a reply whose id or op does not match) closes that
 *    connection, so a late reply can never be taken for a later
 *    request's; the next call to that node connects again.
 *  - Stale connections: before a request is sent on an idle connection,
 *    the client checks that the server has not closed it meanwhile (idle
 *    timeout, restart) and if so reconnects first -- nothing was sent, so
 *    this is safe for writes too. A read (GET, MGET, PING, STATS,
 *    CLUSTER) that still fails with PC_ECONN on a reused connection is
 *    sent once more on a new one to the same node; writes never are, and
 *    in seed-only mode timeouts never are.
 *  - Limits: replies up to the protocol's default max frame (1 MiB +
 *    128 KiB) are accepted; a larger one fails with PC_ETOOBIG. Requests
 *    are limited only by the protocol (4 GiB); the server enforces its own
 *    limits (TOO_LARGE -> PC_ETOOBIG, or it may close the connection).
 *
 * Errors: every call returns 0 or a negative pc_err code (pc_error.h).
 * Server-side conditions map to codes: NOT_FOUND -> PC_ENOTFOUND,
 * EXISTS -> PC_EEXISTS, NOT_STORED -> PC_ENOTSTORED, TOO_LARGE ->
 * PC_ETOOBIG, BACKEND_UNAVAILABLE -> PC_EBACKEND, BUSY -> PC_EBUSY,
 * BAD_REQUEST -> PC_EBADREQ, INTERNAL -> PC_EINTERNAL, RETRY ->
 * PC_ERETRY (after the retries above). After any failure,
 * pc_client_errmsg() gives the human message (the server's, if it sent
 * one), valid until the next call on the client.
 *
 * Ownership: values returned to the caller are malloc'd copies owned by the
 * caller: free a pc_value_t with pc_value_free(), an MGET result with
 * pc_mget_free(), stats with pc_stats_free(), cluster information with
 * pc_cluster_info_free().
 *
 * Thread rules: a client is not thread-safe; use one per thread (they are
 * cheap: one socket per node they talk to).
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
    int no_ring;          /* 0 (default) = ring-aware: route each key to
                             its owner; 1 = seed-only, as before rings:
                             every request goes to the first node of
                             `nodes` that answers. Last, so that older
                             initialisers keep the default. */
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

/* PING and STATS ask the first seed that answers, in both modes. */
int pc_client_ping(pc_client_t *c);
/* On success *out holds a copy the caller frees with pc_value_free. On
 * failure *out is all zero (pc_value_free on it is harmless). */
int pc_client_get(pc_client_t *c, const void *key, size_t klen, pc_value_t *out);
/* *version_out (may be NULL) receives the version now stored. */
int pc_client_set(pc_client_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                  const pc_set_options_t *opt, uint64_t *version_out);
int pc_client_del(pc_client_t *c, const void *key, size_t klen);
int pc_client_touch(pc_client_t *c, const void *key, size_t klen, uint64_t ttl_ms);
/* Fetches n keys: in one request in seed-only mode, in one request per
 * owner in ring-aware mode (see the top of this file for fallbacks and
 * when the whole call fails). On 0, *out is an array of n items (free
 * with pc_mget_free(*out, n)) in request order; each item has its own
 * status. n == 0 returns 0 with *out = NULL without asking the server. */
int pc_client_mget(pc_client_t *c, size_t n, const void *const *keys, const size_t *klens,
                   pc_mget_item_t **out);
/* On 0, *out is an array of *n entries; free with pc_stats_free. */
int pc_client_stats(pc_client_t *c, pc_stat_entry_t **out, size_t *n);

/* ---- the cluster ------------------------------------------------------- */

/* Member states, as CLUSTER reports them. They equal pc_proto.h's
 * PC_WIRE_* (checked at compile time). Alive and suspect members hold
 * keys; dead and left ones do not. */
#define PC_CLIENT_MEMBER_ALIVE 0
#define PC_CLIENT_MEMBER_SUSPECT 1
#define PC_CLIENT_MEMBER_DEAD 2
#define PC_CLIENT_MEMBER_LEFT 3

/* The keyspace is cut into this many slots (pc_ring.h's PC_RING_SLOTS). */
#define PC_CLIENT_RING_SLOTS 65536u

typedef struct pc_client_member {
    char *name;          /* NUL-terminated; bytes < 0x20 and 0x7f become '?' */
    char *addr;          /* "host:port" clients connect to, same rule */
    int state;           /* PC_CLIENT_MEMBER_* (a newer node may send others) */
    uint64_t incarnation;
    uint32_t weight;
    uint32_t owned_slots; /* slots it owns (not as a replica); 0 when not
                             alive or suspect */
    double share;        /* owned_slots / PC_CLIENT_RING_SLOTS, 0..1 */
} pc_client_member_t;

typedef struct pc_cluster_info {
    uint64_t fingerprint;        /* the answering node's ring, never 0 */
    unsigned replicas;           /* placements per key, owner included */
    char *from;                  /* the node that answered, "host:port" */
    size_t nmembers;
    pc_client_member_t *members; /* sorted by name */
} pc_cluster_info_t;

/*
 * Asks a node (the seeds, as for PING) for the cluster's members and
 * computes each one's share of the keyspace with the same ring the nodes
 * use. On 0, *out is the caller's; free it with pc_cluster_info_free.
 * A node outside any cluster answers PC_EBADREQ; member data the client
 * cannot turn into a ring (a name over 255 bytes, say) is PC_EPROTO. In
 * ring-aware mode the answer also becomes the client's ring.
 */
int pc_client_cluster(pc_client_t *c, pc_cluster_info_t **out);
/* Frees and sets *info to NULL. NULL-safe. */
void pc_cluster_info_free(pc_cluster_info_t **info);
/* "alive", "suspect", "dead", "left" or "unknown". Static storage. */
const char *pc_client_member_state_name(int state);

/*
 * What the client did since it was created, for tests and monitoring.
 * Counts only ever grow. Field meanings:
 */
typedef struct pc_client_counters {
    uint64_t ring_refreshes;      /* CLUSTER answers fetched (the first
                                     load included; pc_client_cluster too) */
    uint64_t ring_refresh_errors; /* refreshes that found no node to answer */
    uint64_t ring_fp_mismatches;  /* replies carrying a ring fingerprint
                                     other than the client's */
    uint64_t owner_requests;      /* requests sent straight to the key's
                                     owner (an MGET: one per owner) */
    uint64_t replica_fallbacks;   /* reads sent to a later placement because
                                     the ones before it failed */
    uint64_t retries;             /* requests sent again: after RETRY, or a
                                     read / a never-sent write after a node
                                     failed */
    uint64_t retry_answers;       /* RETRY statuses received */
    uint64_t node_failures;       /* nodes that could not be reached, broke
                                     or timed out during a call */
    uint64_t hedged_reads;        /* GETs also sent to a replica because the
                                     owner had not answered within its hedge
                                     delay */
    uint64_t hedge_wins;          /* of those, the ones the replica answered
                                     first */
    uint64_t breaker_opens;       /* times a node was found not answering
                                     (its breaker opened) */
    uint64_t unresponsive_skips;  /* reads sent past such a node (or one
                                     still owing an answer) to a later
                                     placement */
    uint64_t fast_failures;       /* writes failed without being sent: their
                                     owner was not answering */
    uint64_t probes;              /* probes of a node whose breaker was open */
    uint64_t mget_hedges;         /* MGETs to a key's owner given up on at
                                     the owner's stall limit, their keys
                                     sent to their next placements */
} pc_client_counters_t;

/* Copies the counters into *out. */
void pc_client_counters(const pc_client_t *c, pc_client_counters_t *out);
/* Fingerprint of the ring the client routes by; 0 when it has none
 * (seed-only mode, not learned yet, or the nodes form no usable ring). */
uint64_t pc_client_ring_fingerprint(const pc_client_t *c);

void pc_value_free(pc_value_t *v);
void pc_mget_free(pc_mget_item_t *items, size_t n);
void pc_stats_free(pc_stat_entry_t *stats, size_t n);

#endif
