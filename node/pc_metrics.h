/*
 * pc_metrics.h -- the one table of what a node reports in STATS.
 *
 * PC_STATS(C, V) lists every STATS field, in the order STATS sends them:
 *
 *   C(name)        a counter each event loop keeps for itself, a plain
 *                  uint64_t of pc_counters_t (no atomics on the hot path);
 *                  STATS sends the sum over the loops (pc_counters_add).
 *   V(name, expr)  a value read when STATS is answered: expr is written
 *                  over `v`, the snapshot pc_stats.c assembles (the store,
 *                  the Redis connections, the membership, the guard ...).
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

#define PC_STATS(C, V)                                                                         \
    V(uptime_s, v->uptime_s)                                                                   \
    V(connections, v->nconns)                                                                  \
    C(connections_total)                                                                       \
    C(connections_rejected)                                                                    \
    C(idle_timeouts)                                                                           \
    C(frame_timeouts)                                                                          \
    C(output_timeouts)                                                                         \
    V(buffer_memory, v->buf_bytes)                                                             \
    V(buffer_full, v->buf_full)                                                                \
    C(buffer_full_rejects) /* connections refused: buffers over the cap */                     \
    C(buffer_evictions)    /* connections closed to bring the buffers under it */              \
    C(requests)                                                                                \
    V(threads, v->threads)                                                                     \
    C(worker_requests)  /* worker loops' `requests`, set when STATS gathers */                 \
    C(relayed)          /* worker: requests relayed to the core loop */                        \
    C(home_relayed)     /* requests relayed to their key's home loop */                        \
    C(worker_forwarded) /* worker loops' `forwarded`, set when STATS gathers */                \
    V(home_loops, v->home_loops)                                                               \
    C(bad_frames)                                                                              \
    V(items, v->store.items)                                                                   \
    V(bytes, v->store.bytes)                                                                   \
    V(memory_limit, v->store.limit)                                                            \
    V(hits, v->store.hits)                                                                     \
    V(misses, v->store.misses)                                                                 \
    V(sets, v->store.sets)                                                                     \
    V(deletes, v->store.deletes)                                                               \
    V(evictions, v->store.evictions)                                                           \
    V(expirations, v->store.expirations)                                                       \
    V(backend_enabled, v->backend_enabled)                                                     \
    V(backend_up, v->nbackends > 0 && (uint64_t)v->backend.up == v->nbackends)                 \
    V(backend_connections, v->nbackends)                                                       \
    C(backend_reads)                                                                           \
    C(backend_reads_coalesced)                                                                 \
    C(backend_writes)                                                                          \
    V(backend_errors, v->backend.errors)                                                       \
    V(backend_timeouts, v->backend.timeouts)                                                   \
    V(backend_rejected, v->backend.rejected)                                                   \
    V(backend_connects, v->backend.connects)                                                   \
    V(backend_writes_late, v->backend.late)                                                    \
    V(backend_writes_held, v->backend.held)                                                    \
    V(cluster_members_alive, v->cluster.members_alive)                                         \
    V(cluster_members_suspect, v->cluster.members_suspect)                                     \
    V(cluster_members_dead, v->cluster.members_dead)                                           \
    V(cluster_ring_changes, v->cluster.ring_changes)                                           \
    V(cluster_ring_builds_offloop, v->cluster.ring_builds_offloop)                             \
    V(cluster_incarnation, v->cluster.incarnation)                                             \
    V(cluster_health, v->cluster.health)                                                       \
    V(cluster_cut_off, v->cluster.cut_off)                                                     \
    V(cluster_lease_lapses, v->cluster.lease_lapses)                                           \
    V(gossip_in, v->cluster.gossip_in)                                                         \
    V(gossip_out, v->cluster.gossip_out)                                                       \
    V(gossip_bad, v->cluster.gossip_bad)                                                       \
    V(syncs, v->cluster.syncs)                                                                 \
    V(sync_errors, v->cluster.sync_errors)                                                     \
    C(forwarded)       /* requests relayed to their owner */                                   \
    C(forward_errors)  /* ... that failed (owner unreachable) */                               \
    C(forwarded_in)    /* FORWARD requests served here */                                      \
    C(forwarded_late)  /* forwarded writes refused: past their deadline */                     \
    C(writes_late)     /* client writes refused: past the client's deadline */                 \
    C(writes_cut_off)  /* writes refused: the node hears from no majority */                   \
    C(not_owner_reads) /* reads served here as a replica / from Redis */                       \
    C(here_reads)      /* ... of them, GETs and MGET keys that said `here` (hedged reads) */    \
    C(retry_answers)   /* writes refused: relayed to a non-owner */                            \
    C(replicated)      /* entries sent to replicas */                                          \
    C(replicate_errors)                                                                        \
    C(replica_applied) /* entries received and applied */                                      \
    C(replica_ignored) /* ... refused (older, or not ours) */                                  \
    C(stale_dropped)   /* copies from before this node gained a slot */                        \
    C(handoff_sent)                                                                            \
    C(handoff_received)                                                                        \
    C(handoff_refused)   /* entries the receiver kept its own for */                           \
    C(handoff_confirmed) /* ... of which confirmed it (same value) */                          \
    C(handoff_untrusted) /* copies not handed off: made before a gain or a heal */             \
    C(purged)            /* copies dropped from slots we left */                               \
    C(handoff_errors)    /* batches that failed to send */                                     \
    C(handoffs)          /* hand-offs completed */                                             \
    V(handoff_active, v->handoff_active)                                                       \
    C(settle_capped) /* entries whose expiry the settle window cut */                          \
    V(peer_requests, v->peers.requests)                                                        \
    V(peer_errors, v->peers.errors)                                                            \
    V(peer_timeouts, v->peers.timeouts)                                                        \
    V(peer_connects, v->peers.connects)                                                        \
    V(peer_writes_held, v->peers.held)                                                         \
    C(auth_failures)        /* HELLOs with a wrong or missing token */                         \
    C(auth_refused)         /* requests refused before a good HELLO */                         \
    C(hello_timeouts)       /* connections closed: no good HELLO in time */                    \
    C(source_limit_rejects) /* connections refused: their address holds too many */           \
    C(peer_refused)         /* peer ops refused: not sealed (or no token) */                   \
    C(peer_rejected)        /* peer connections closed: frame failed the key check */          \
    V(gossip_rejected, v->cluster.gossip_rejected)                                             \
    V(seal_enabled, v->guard != NULL)                                                          \
    V(sealed_out, v->guard ? v->guard->sealed : 0)                                             \
    V(sealed_in, v->guard ? v->guard->opened : 0)                                              \
    V(seal_unsealed, v->guard ? v->guard->unsealed : 0)                                        \
    V(seal_bad, v->guard ? v->guard->bad_seal : 0)                                             \
    V(seal_unknown_key, v->guard ? v->guard->unknown_key : 0)                                  \
    V(seal_wrong_kind, v->guard ? v->guard->wrong_kind : 0)                                    \
    V(seal_stale, v->guard ? v->guard->stale : 0)                                              \
    V(seal_replayed, v->guard ? v->guard->replayed : 0)                                        \
    V(seal_overflow, v->guard ? v->guard->overflow : 0)                                        \
    V(seal_key_id, v->key_id)                                                                  \
    V(seal_keys, v->nkeys)

#define PC_METRICS_FIELD_(name) uint64_t name;
#define PC_METRICS_NONE_(name, expr)

/* One loop's counters. Owned by the loop; read by another thread only
 * through a cross-loop call (pc_stats.c). */
typedef struct pc_counters {
    PC_STATS(PC_METRICS_FIELD_, PC_METRICS_NONE_)
} pc_counters_t;

/* sum += x, counter by counter. */
static inline void pc_counters_add(pc_counters_t *sum, const pc_counters_t *x)
{
#define PC_METRICS_ADD_(name) sum->name += x->name;
    PC_STATS(PC_METRICS_ADD_, PC_METRICS_NONE_)
#undef PC_METRICS_ADD_
}

/* Every STATS name, in order, and how many: for tests and for readers of
 * the table that are not STATS (a metrics endpoint). Static storage. */
const char *const *pc_metrics_names(size_t *n);

#endif
