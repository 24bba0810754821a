/*
 * pc_metrics.h -- the one table of what a node reports in STATS.
 *
 * PC_STATS(C, V) lists every STATS field, in the order STATS sends them:
 *
 *   C(name, help)  a counter each event loop keeps for itself, a plain
 *                  uint64_t of pc_counters_t (no atomics on the hot path);
 *                  STATS sends the sum over the loops (pc_counters_add).
 *   V(name, kind, expr, help)
 *                  a value read when STATS is answered: expr is written
 *                  over `v`, the snapshot pc_stats.c assembles (the store,
 *                  the Redis connections, the membership, the guard ...);
 *                  kind is COUNTER (it only grows) or GAUGE.
 *
 * `help` is the one-line description the metrics endpoint sends (HELP
 * lines of /metrics, docs/OPERATIONS.md "HTTP endpoint"), where every
 * field is a metric named peercache_<name>, with _total added to a
 * counter's name, and a unit in the name (_s, _us) spelled out as
 * seconds, the value converted.
 *
 * The counters struct, the per-loop sum and the STATS list are all made
 * from it, so a counter cannot be added to one and forgotten in another;
 * tests/unit/test_metrics.c checks the list against the counter tables
 * of docs/OPERATIONS.md. Names are the wire's: never rename one (clients
 * and dashboards read them).
 *
 * Header only; no dependencies (the V expressions are expanded only in
 * pc_stats.c, where the snapshot's types are known).
 */
#ifndef PC_METRICS_H
#define PC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "pc_hist.h"

#define PC_STATS(C, V)                                                                             \
    V(uptime_s, GAUGE, v->uptime_s, "Seconds since the node started")                              \
    V(connections, GAUGE, v->nconns, "Client and peer connections open now")                       \
    C(connections_total, "Connections accepted")                                                   \
    C(connections_rejected, "Connections refused (over a limit)")                                  \
    C(accepts_deferred, "Times a loop left connections to accept for its next iteration")          \
    C(ticks_deferred, "Times a loop left connections' limit checks for its next iteration")       \
    C(sheds_deferred, "Times a loop left connections it sheds for its next iteration")            \
    C(idle_timeouts, "Connections closed for being idle too long")                                 \
    C(frame_timeouts, "Connections closed because a frame did not arrive whole in time")           \
    C(output_timeouts, "Connections closed because their client stopped reading answers")          \
    V(buffer_memory, GAUGE, v->buf_bytes, "Bytes all connection buffers hold now")                 \
    V(buffer_full, GAUGE, v->buf_full, "1 while connection buffers are over --max-buffer-memory")  \
    C(buffer_full_rejects, "Connections refused while the buffers were over their cap")            \
    C(buffer_evictions, "Connections closed to bring the buffers under their cap")                 \
    C(requests, "Requests: frames decoded, and those made from Redis commands")                   \
    C(redis_commands, "Commands read on the Redis-protocol port (--resp)")                         \
    V(threads, GAUGE, v->threads, "Event loops (--threads)")                                       \
    C(loop_iterations, "Event-loop iterations (each polls for events once)")                      \
    C(loop_busy_us, "Time the event loops worked, not waiting for events (STATS: microseconds)")   \
    V(io_uring_loops, GAUGE, v->uring_loops, "Loops whose client sockets use io_uring (--io)")     \
    V(io_uring_enters, COUNTER, v->uring.enters, "io_uring_enter calls (each submits a batch)")     \
    V(io_uring_wakes, COUNTER, v->uring.wakes, "Times a ring's eventfd woke its loop")             \
    V(io_uring_completions, COUNTER, v->uring.cqes, "io_uring completions handled")                \
    V(io_uring_rearms, COUNTER, v->uring.rearms, "Receives the kernel ended and that were re-armed") \
    C(worker_requests, "Requests read by the worker loops")                                        \
    C(relayed, "Requests a worker loop relayed to the core loop")                                  \
    C(home_relayed, "Requests relayed to their key's home loop")                                   \
    C(worker_forwarded, "Requests the worker loops relayed to their owners")                       \
    V(home_loops, GAUGE, v->home_loops, "Loops that serve this node's keys themselves now")        \
    C(bad_frames, "Frames that closed a connection")                                               \
    V(items, GAUGE, v->store.items, "Items in the store")                                          \
    V(bytes, GAUGE, v->store.bytes, "Bytes the store holds")                                       \
    V(memory_limit, GAUGE, v->store.limit, "The store limit in bytes (--memory)")                  \
    V(hits, COUNTER, v->store.hits, "Store lookups that found a valid item")                       \
    V(misses, COUNTER, v->store.misses, "Store lookups that found none")                           \
    V(sets, COUNTER, v->store.sets, "Items stored")                                                \
    V(deletes, COUNTER, v->store.deletes, "Items deleted")                                         \
    V(evictions, COUNTER, v->store.evictions, "Items evicted to stay under the memory limit")      \
    V(expirations, COUNTER, v->store.expirations, "Items dropped because their TTL ran out")       \
    V(backend_enabled, GAUGE, v->backend_enabled, "1 if Redis is behind the node")                 \
    V(backend_up, GAUGE, v->nbackends > 0 && (uint64_t)v->backend.up == v->nbackends,              \
        "1 while every loop's Redis connection is up")                                             \
    V(backend_connections, GAUGE, v->nbackends, "Redis connections (one per loop)")                \
    C(backend_reads, "Redis reads (misses read through)")                                          \
    C(backend_reads_coalesced,                                                                     \
        "Reads that waited for a Redis read of the same key already on its way")                   \
    C(backend_writes, "Redis writes")                                                              \
    V(backend_errors, COUNTER, v->backend.errors, "Redis commands that failed")                    \
    V(backend_timeouts, COUNTER, v->backend.timeouts,                                              \
        "Redis commands not answered within --redis-timeout")                                      \
    V(backend_rejected, COUNTER, v->backend.rejected,                                              \
        "Redis commands refused at once while Redis was down")                                     \
    V(backend_connects, COUNTER, v->backend.connects, "Redis connections made")                    \
    V(backend_writes_late, COUNTER, v->backend.late,                                               \
        "Writes Redis refused because they reached it after their deadline")                       \
    V(backend_writes_held, COUNTER, v->backend.held,                                               \
        "Writes whose Redis connection dropped, reported failed once their deadline passed")\
    V(backend_writes_unreplicated, COUNTER, v->backend.wait_short,                                 \
        "Writes Redis applied but fewer replicas than --redis-wait confirmed (reported failed)")   \
    V(backend_refusals, COUNTER, v->backend.refusals,                                              \
        "Redis connections given up on a refusal (AUTH, SELECT, ROLE, NOAUTH, READONLY, ...)")     \
    V(backend_primary_switches, COUNTER, v->backend.switches,                                      \
        "Moves to a new Redis primary announced by Sentinel (summed over the loops)")              \
    V(backend_redirects, COUNTER, v->backend.redirects,                                            \
        "Redis Cluster redirections (-MOVED, -ASK, -TRYAGAIN, -CLUSTERDOWN) the node was answered") \
    V(cluster_members_alive, GAUGE, v->cluster.members_alive, "Members this node sees alive")      \
    V(cluster_members_suspect, GAUGE, v->cluster.members_suspect, "Members this node suspects")    \
    V(cluster_members_dead, GAUGE, v->cluster.members_dead,                                        \
        "Members this node sees dead or left, not yet forgotten")                                  \
    V(cluster_ring_changes, COUNTER, v->cluster.ring_changes, "Ring rebuilds")                     \
    V(cluster_ring_builds_offloop, COUNTER, v->cluster.ring_builds_offloop,                        \
        "Ring rebuilds done off the event loop")                                                   \
    V(cluster_incarnation, GAUGE, v->cluster.incarnation, "This node's incarnation number")        \
    V(cluster_health, GAUGE, v->cluster.health,                                                    \
        "This node's Lifeguard health score (0 = healthy; it rises when this node is slow)")       \
    V(cluster_cut_off, GAUGE, v->cluster.cut_off, "1 while this node holds no partition lease")    \
    V(cluster_lease_lapses, COUNTER, v->cluster.lease_lapses,                                      \
        "Times the partition lease ran out")                                                       \
    V(gossip_in, COUNTER, v->cluster.gossip_in, "Gossip datagrams received")                       \
    V(gossip_out, COUNTER, v->cluster.gossip_out, "Gossip datagrams sent")                         \
    V(gossip_bad, COUNTER, v->cluster.gossip_bad, "Malformed gossip datagrams")                    \
    V(syncs, COUNTER, v->cluster.syncs, "Full-state exchanges done")                               \
    V(sync_errors, COUNTER, v->cluster.sync_errors, "Full-state exchanges that failed")            \
    C(forwarded, "Requests relayed to their owner")                                                \
    C(forward_errors, "Relayed requests that failed (owner unreachable)")                          \
    C(forwarded_in, "FORWARD requests served here")                                                \
    C(forwarded_late, "Forwarded writes refused: past their deadline")                             \
    C(writes_late, "Client writes refused: past the client's deadline")                            \
    C(writes_cut_off, "Writes refused while this node held no partition lease")                    \
    C(not_owner_reads, "Reads served here for keys this node does not own")                        \
    C(here_reads, "Of those, GETs and MGET keys that said here (hedged reads)")                    \
    C(retry_answers, "Relayed writes refused with RETRY")                                          \
    C(replicated, "Entries sent to replicas")                                                      \
    C(replicate_errors, "Entries that could not be sent to a replica")                             \
    C(replica_applied, "Replicated entries received and applied")                                  \
    C(replica_ignored, "Replicated entries refused (older, or not ours)")                          \
    C(stale_dropped, "Copies refused because they predate this node gaining the slot")             \
    C(handoff_sent, "Entries handed to new owners")                                                \
    C(handoff_received, "Entries received in hand-offs")                                           \
    C(handoff_refused, "Handed-off entries the receiver kept its own copy for")                    \
    C(handoff_confirmed, "Of those, the ones with the same value")                                 \
    C(handoff_untrusted, "Copies not handed off: made before a gain or a heal")                    \
    C(purged, "Copies dropped from slots this node left")                                          \
    C(handoff_errors, "Hand-off batches that failed to send")                                      \
    C(handoffs, "Hand-offs completed")                                                             \
    V(handoff_active, GAUGE, v->handoff_active, "1 while a hand-off runs")                         \
    C(settle_capped, "Entries whose expiry the settle window cut")                                 \
    V(peer_requests, COUNTER, v->peers.requests, "Requests sent to other members")                 \
    V(peer_errors, COUNTER, v->peers.errors, "Requests to other members that failed")              \
    V(peer_timeouts, COUNTER, v->peers.timeouts,                                                   \
        "Requests to other members not answered within --peer-timeout")                            \
    V(peer_connects, COUNTER, v->peers.connects, "Connections made to other members")              \
    V(peer_writes_held, COUNTER, v->peers.held,                                                    \
        "Forwarded writes whose connection failed before their deadline, answered once it passed") \
    C(auth_failures, "HELLOs with a wrong or missing token")                                       \
    C(auth_refused, "Requests refused before a good HELLO")                                        \
    C(auth_unchecked, "HELLOs refused unread: their address had too many bad tokens just before")  \
    C(hello_timeouts, "Connections closed: no good HELLO in time")                                 \
    C(source_limit_rejects, "Connections refused: their address holds too many")                   \
    C(peer_refused, "Peer operations refused: not sealed")                                         \
    C(peer_rejected, "Peer connections closed: a frame failed the key check")                      \
    V(gossip_rejected, COUNTER, v->cluster.gossip_rejected,                                        \
        "Gossip datagrams dropped by the key check")                                               \
    V(seal_enabled, GAUGE, v->guard != NULL, "1 if the node has a cluster key")                    \
    V(sealed_out, COUNTER, v->guard ? v->guard->sealed : 0, "Sealed messages sent")                \
    V(sealed_in, COUNTER, v->guard ? v->guard->opened : 0,                                         \
        "Sealed messages received and accepted")                                                   \
    V(seal_unsealed, COUNTER, v->guard ? v->guard->unsealed : 0,                                   \
        "Messages dropped: not sealed where they must be")                                         \
    V(seal_bad, COUNTER, v->guard ? v->guard->bad_seal : 0,                                        \
        "Sealed messages dropped: tampered or malformed")                                          \
    V(seal_unknown_key, COUNTER, v->guard ? v->guard->unknown_key : 0,                             \
        "Sealed messages dropped: a key not in the keyring")                                       \
    V(seal_wrong_kind, COUNTER, v->guard ? v->guard->wrong_kind : 0,                               \
        "Sealed messages dropped: sealed for another use")                                         \
    V(seal_stale, COUNTER, v->guard ? v->guard->stale : 0,                                         \
        "Sealed messages dropped: stamped outside --replay-window")                                \
    V(seal_replayed, COUNTER, v->guard ? v->guard->replayed : 0,                                   \
        "Sealed messages dropped: seen before")                                                    \
    V(seal_overflow, COUNTER, v->guard ? v->guard->overflow : 0,                                   \
        "Sealed messages dropped: the replay filter was full")                                     \
    V(seal_key_id, GAUGE, v->key_id, "The primary cluster key's id")                               \
    V(seal_keys, GAUGE, v->nkeys, "Keys in the cluster keyring")

#define PC_METRICS_FIELD_(name, help) uint64_t name;
#define PC_METRICS_NONE_(name, kind, expr, help)

/* One loop's counters. Owned by the loop; read by another thread only
 * through a cross-loop call (pc_stats.c). */
typedef struct pc_counters {
    PC_STATS(PC_METRICS_FIELD_, PC_METRICS_NONE_)
} pc_counters_t;

/* sum += x, counter by counter. */
static inline void pc_counters_add(pc_counters_t *sum, const pc_counters_t *x)
{
#define PC_METRICS_ADD_(name, help) sum->name += x->name;
    PC_STATS(PC_METRICS_ADD_, PC_METRICS_NONE_)
#undef PC_METRICS_ADD_
}

/*
 * Server-side latency, per operation (docs/OPERATIONS.md "HTTP
 * endpoint"): one pc_hist_t per class in each loop, recorded by the
 * connection that read the request, from the start of the event-loop
 * turn that read it to the moment its answer was queued (for an answer
 * given in that same turn: the end of the turn, so a hit costs no clock
 * read of its own). Names are the `op` label's values.
 */
enum pc_lat_op {
    PC_LAT_GET_HIT,  /* GET answered in the turn that read it (a hit; or absent without Redis) */
    PC_LAT_GET_MISS, /* GET answered later: read through Redis (here or on its home loop) */
    PC_LAT_SET,      /* SET, whatever the answer */
    PC_LAT_DEL,      /* DEL, whatever the answer */
    PC_LAT_FORWARD,  /* a single-key request relayed to its owner, until its answer came */
    PC_LAT_OPS,
    PC_LAT_NONE = PC_LAT_OPS /* not recorded (MGET, TOUCH, STATS ...) */
};
#define PC_LAT_NAMES {"get_hit", "get_miss", "set", "del", "forward"}

/*
 * STATS fields after those of PC_STATS, and only in STATS (/metrics has
 * the histograms themselves): L(name, i) is how many timed operations,
 * of every class and loop, were answered within pc_hist_bounds_ns[i]
 * (i = PC_HIST_BOUNDS: all of them), cumulative as Prometheus' `le`.
 * Two readings a second apart give that second's percentiles
 * (peercache-cli top).
 */
#define PC_STATS_LAT(L)                                                                            \
    L(lat_le_10us, 0)                                                                              \
    L(lat_le_25us, 1)                                                                              \
    L(lat_le_50us, 2)                                                                              \
    L(lat_le_100us, 3)                                                                             \
    L(lat_le_250us, 4)                                                                             \
    L(lat_le_500us, 5)                                                                             \
    L(lat_le_1ms, 6)                                                                               \
    L(lat_le_2500us, 7)                                                                            \
    L(lat_le_5ms, 8)                                                                               \
    L(lat_le_10ms, 9)                                                                              \
    L(lat_le_25ms, 10)                                                                             \
    L(lat_le_50ms, 11)                                                                             \
    L(lat_le_100ms, 12)                                                                            \
    L(lat_le_250ms, 13)                                                                            \
    L(lat_le_500ms, 14)                                                                            \
    L(lat_le_1s, 15)                                                                               \
    L(lat_le_2500ms, 16)                                                                           \
    L(lat_le_5s, 17)                                                                               \
    L(lat_le_10s, 18)                                                                              \
    L(lat_le_inf, 19)


/* Every STATS name, in order, and how many: for tests and for readers of
 * the table that are not STATS (a metrics endpoint). Static storage. */
const char *const *pc_metrics_names(size_t *n);

#endif
