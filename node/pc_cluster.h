/*
 * pc_cluster.h -- this node's view of the cluster: gossip membership over
 * UDP (pc_member is the state machine; this module is its I/O), the join
 * and periodic full-state push/pull over TCP (the SYNC op, through the
 * peer pool), and the hash ring derived from the live members.
 *
 * The ring holds every member that is ALIVE or SUSPECT: a suspect keeps
 * its keys (reads may go to its replicas meanwhile) so that a false
 * suspicion moves nothing; DEAD and LEFT members drop out. Whenever that
 * set changes a new ring is built and the ring callback runs with the old
 * and the new one; the fingerprint identifies the ring to clients.
 *
 * Thread rules: loop thread only. Pointers returned by the accessors are
 * valid until the next ring change (i.e. until control returns to the
 * loop); copy what must live longer.
 */
#ifndef PC_CLUSTER_H
#define PC_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pc_buf.h"
#include "pc_config.h"
#include "pc_guard.h"
#include "pc_log.h"
#include "pc_peer.h"
#include "pc_proto.h"
#include "pc_ring.h"

typedef struct pc_cluster pc_cluster_t;

typedef struct pc_cluster_stats {
    uint64_t members_alive;
    uint64_t members_suspect;
    uint64_t members_dead; /* dead or left, not yet forgotten */
    uint64_t ring_changes;
    uint64_t ring_builds_offloop; /* rings too big to build on the loop, built on the pool */
    uint64_t gossip_in;      /* datagrams received */
    uint64_t gossip_out;     /* datagrams sent */
    uint64_t gossip_bad;     /* datagrams dropped as malformed */
    uint64_t gossip_rejected; /* dropped by the cluster-key check (pc_guard) */
    uint64_t syncs;          /* push/pulls completed (either side) */
    uint64_t sync_errors;
    uint64_t health;         /* local health score (0 = healthy) */
    uint64_t incarnation;    /* this node's */
    uint64_t cut_off;        /* 1 while this node holds no partition lease (pc_member.h) */
    uint64_t lease_lapses;   /* times a lease it held ran out */
} pc_cluster_stats_t;

/* Called after every ring change; old is valid during the call only (it
 * may be NULL the first time). */
typedef void (*pc_cluster_ring_cb)(void *arg, const pc_ring_t *old, const pc_ring_t *nw);

/* Creates the cluster state from cfg (name, advertise, gossip, join,
 * replicas, weight, timers). The node starts as a ring of one: itself.
 * peers, log and guard (may be NULL) must outlive it. With a keyring in
 * the guard every datagram is sealed (PC_SEAL_GOSSIP) and one that does
 * not open is dropped unseen by the membership state machine. (SYNC goes
 * through the peer pool, which seals it.) 0, PC_EINVAL (message logged),
 * PC_ENOMEM. */
int pc_cluster_new(uv_loop_t *loop, const pc_config_t *cfg, pc_peer_pool_t *peers,
                   const pc_log_t *log, pc_guard_t *guard, pc_cluster_t **out);

void pc_cluster_set_ring_cb(pc_cluster_t *c, pc_cluster_ring_cb cb, void *arg);

/*
 * Called when a partition has healed: this node learns that other
 * members had declared it DEAD, or a member it held DEAD comes back in
 * the same life (pc_member_stats_t declared_dead, dead_came_back). They
 * owned its keys meanwhile and may have written them to Redis, so what it
 * cached for them is not to be trusted (pc_server_regain). `ring` is the current
 * ring, valid during the call.
 */
typedef void (*pc_cluster_regain_cb)(void *arg, const pc_ring_t *ring);
void pc_cluster_set_regain_cb(pc_cluster_t *c, pc_cluster_regain_cb cb, void *arg);

/*
 * The partition lease (pc_member_lease_until): called with its new end
 * (this loop's uv_now() clock, milliseconds; UINT64_MAX = none needed, 0 =
 * none held) whenever it changes, and once when set. Until that time the
 * node may serve cached copies and take writes; from then on it is cut
 * off, without another call. When a lease follows one that ran out, the
 * regain callback has run just before: what the node cached meanwhile is
 * not to be trusted either. Running out and coming back are logged.
 */
typedef void (*pc_cluster_lease_cb)(void *arg, uint64_t until_ms);
void pc_cluster_set_lease_cb(pc_cluster_t *c, pc_cluster_lease_cb cb, void *arg);

/* Binds the gossip socket, starts the timers, and starts joining through
 * the seeds (retried until one answers). 0 or PC_EIO (message logged). */
int pc_cluster_start(pc_cluster_t *c);

/* The current ring; never NULL after pc_cluster_new. */
const pc_ring_t *pc_cluster_ring(const pc_cluster_t *c);
/* This node's index in the current ring. */
long pc_cluster_self(const pc_cluster_t *c);
const char *pc_cluster_name(const pc_cluster_t *c);
uint64_t pc_cluster_fingerprint(const pc_cluster_t *c);
unsigned pc_cluster_replicas(const pc_cluster_t *c);
/* TCP address ("host:port") of ring member i. */
const char *pc_cluster_addr(const pc_cluster_t *c, size_t i);
/* 1 if ring member i is currently SUSPECT. */
int pc_cluster_suspect(const pc_cluster_t *c, size_t i);

/*
 * Serves a SYNC request: merges the sender's state and writes ours into
 * *reply (appended). 0, PC_EPROTO (not a state), PC_ENOMEM.
 */
int pc_cluster_sync(pc_cluster_t *c, const uint8_t *state, size_t len, pc_buf_t *reply);

/*
 * Every known member (self included, dead ones until forgotten) for the
 * CLUSTER op: *out points at an array owned by the cluster, valid until the
 * next call or ring change.
 */
size_t pc_cluster_members(pc_cluster_t *c, const pc_cluster_member_t **out);

void pc_cluster_stats(const pc_cluster_t *c, pc_cluster_stats_t *out);

/*
 * Graceful leave: tells the cluster this node is leaving (LEFT gossip) and
 * calls done(arg) once the news had time to spread (a few gossip rounds).
 * The node keeps answering gossip meanwhile. Call once.
 */
void pc_cluster_leave(pc_cluster_t *c, void (*done)(void *arg), void *arg);

/* Closes the socket and timers; done(arg) runs when all are closed. */
void pc_cluster_close(pc_cluster_t *c, void (*done)(void *arg), void *arg);

/* Frees a closed cluster. NULL-safe; sets *c to NULL. */
void pc_cluster_free(pc_cluster_t **c);

#endif
