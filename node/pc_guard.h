/*
 * pc_guard.h -- a node's cluster-key state, shared by everything that
 * talks to other members: the gossip socket (pc_cluster), outgoing peer
 * connections (pc_peer) and incoming ones (pc_server).
 *
 * It holds the current keyring (NULL when the node runs --insecure), the
 * one replay filter every sealed message passes through, and the counters
 * of what was dropped and why (STATS reports them). Sealing and opening
 * go through here so that every path applies the same checks in the same
 * order: sealed at all -> known key -> authentic -> the expected kind ->
 * fresh (docs/SECURITY.md).
 *
 * Ownership: main owns the guard and the keyring in it; pc_guard_swap()
 * installs a new keyring (SIGHUP) and hands back the old one to free.
 * Users keep a pointer to the guard, never to the keyring, so a rotation
 * reaches all of them at once.
 *
 * Thread rules: every function is thread-safe (a multi-loop node shares
 * one guard, and one replay filter, among its loops): a mutex covers the
 * keyring, the filter and the counters. pc_guard_on() needs no lock: a
 * node never switches between keyed and insecure while it runs.
 */
#ifndef PC_GUARD_H
#define PC_GUARD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_error.h"
#include "pc_seal.h"

typedef struct pc_guard_stats {
    uint64_t sealed;      /* messages sealed and sent */
    uint64_t opened;      /* messages accepted */
    uint64_t unsealed;    /* plain messages where a sealed one was required */
    uint64_t bad_seal;    /* malformed, tampered, or a key with a colliding id */
    uint64_t unknown_key; /* sealed with a key not in our ring */
    uint64_t wrong_kind;  /* e.g. a gossip datagram sent as a peer frame */
    uint64_t stale;       /* stamped outside the replay window */
    uint64_t replayed;    /* seen before */
    uint64_t overflow;    /* the replay filter was full */
} pc_guard_stats_t;

typedef struct pc_guard {
    pthread_mutex_t lock;  /* over keyring, replay and stats */
    int on;                /* a keyring is installed; fixed at init */
    pc_keyring_t *keyring; /* NULL = insecure: nothing sealed or required */
    pc_replay_t *replay;   /* NULL iff keyring is NULL */
    uint64_t started_ms;   /* wall clock at init: older stamps are refused,
                              since this process's replay filter cannot
                              have seen them */
    pc_guard_stats_t stats;
} pc_guard_t;

/* Takes ownership of kr (NULL = insecure) and makes a replay filter with
 * the window. 0, PC_ENOMEM (then kr is still the caller's). */
int pc_guard_init(pc_guard_t *g, pc_keyring_t *kr, uint64_t window_ms);
/* Frees the keyring, the filter and the lock. */
void pc_guard_free(pc_guard_t *g);

/* Installs kr as the keyring and returns the previous one (the caller
 * frees it). Only between two keyed rings: a node does not switch
 * between keyed and insecure while it runs. */
pc_keyring_t *pc_guard_swap(pc_guard_t *g, pc_keyring_t *kr);

/* 1 if traffic is sealed (a keyring is installed). */
static inline int pc_guard_on(const pc_guard_t *g) { return g != NULL && g->on; }

/* A consistent copy of the counters, and the primary key's id and the
 * number of keys (0 and 0 when insecure). */
void pc_guard_snapshot(pc_guard_t *g, pc_guard_stats_t *st, uint32_t *key_id, size_t *nkeys);

/* The wall clock in milliseconds (what seals are stamped with). */
uint64_t pc_guard_wall_ms(void);

/*
 * Opens a message that must be sealed with the given kind, in place.
 * 0 with *payload and *plen set; otherwise the message is to be dropped and
 * the reason was counted: PC_EPROTO (not sealed, or malformed), PC_ENOKEY,
 * PC_EAUTH, PC_EBADREQ (wrong kind), PC_ESTALE (outside the window, or
 * stamped before this node started: a restarted node's new replay filter
 * has not seen what its previous life accepted), PC_EREPLAY, PC_EBUSY
 * (replay filter full). Only with a keyring (pc_guard_on).
 */
int pc_guard_open(pc_guard_t *g, uint8_t kind, uint8_t *msg, size_t len, uint8_t **payload,
                  size_t *plen);

/* pc_seal_frame / pc_seal with the current primary key and the wall
 * clock, counting. Only with a keyring. */
int pc_guard_seal_frame(pc_guard_t *g, pc_seal_stream_t *st, uint8_t kind, pc_buf_t *out,
                        size_t start);
int pc_guard_seal(pc_guard_t *g, pc_seal_stream_t *st, uint8_t kind, const uint8_t *payload,
                  size_t len, pc_buf_t *out);

#endif
