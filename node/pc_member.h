/*
 * pc_member.h -- cluster membership: a SWIM failure detector with
 * Lifeguard's local health, gossip dissemination and push/pull state
 * exchange, as a pure state machine. docs/MEMBERSHIP.md has the protocol,
 * the packet bytes, the timers and measured figures.
 *
 * Pure: no sockets, no clock reads, no global randomness. The caller
 * passes the time (`now_ms`, any monotonic millisecond clock, never going
 * back) and a seed; received datagrams go in through pc_member_recv();
 * what to send, what changed and when to sync come out through the
 * pc_member_next_*() calls. The I/O layer's loop is:
 *
 *     on timer:   pc_member_tick(m, now)
 *     on datagram: pc_member_recv(m, now, "host:port", bytes, len)
 *     after either (and after merge_state / leave):
 *         while (pc_member_next_packet(m, to, sizeof(to), &buf) == 1)
 *             send buf to `to` over UDP;
 *         while (pc_member_next_event(m, &ev) == 1)
 *             update the ring;
 *         if (pc_member_next_sync(m, addr, sizeof(addr)) == 1)
 *             start a TCP push/pull with addr;
 *         rearm the timer for pc_member_next_deadline(m).
 *
 * Push/pull (join and anti-entropy) runs over the caller's TCP: each side
 * sends pc_member_encode_state() and feeds what it receives to
 * pc_member_merge_state(). Joining a cluster is exactly one push/pull
 * with any member (a seed); gossip spreads the news from there.
 *
 * Members are named. Addresses are opaque "host:port" strings: `addr` is
 * a member's TCP address (clients and push/pull), `gossip` its UDP one.
 * Replies go to the `from` string the I/O layer passes to recv(), so that
 * string must be something it can send to.
 *
 * Beyond SWIM/memberlist, measured necessary in the simulation
 * (docs/MEMBERSHIP.md): a member holding a suspicion pings the suspect
 * itself before acting on it; a suspicion at a newer incarnation starts
 * over; push/pull takes the peer's own record as a refutation, sometimes
 * goes to DEAD members (reconnect) and is repeated soon after a merge that
 * brought news; a leave is sent to every member directly.
 *
 * Incarnations: every member's record carries an incarnation number that
 * only its owner raises. A newer incarnation wins; at the same
 * incarnation SUSPECT beats ALIVE and DEAD/LEFT beat both. A member that
 * hears itself suspected or declared dead refutes by raising its own
 * incarnation and gossiping ALIVE. A process that restarts under the same
 * name must beat its previous life: pass a fresh cfg->incarnation, e.g.
 * wall-clock seconds. Passing 0 also works as long as some member still
 * remembers the old record (it is refuted on the first push/pull), but
 * not if the old life is forgotten everywhere and a stale ALIVE survives.
 *
 * Ownership: the pc_member_t owns everything it allocates. Strings handed
 * out (pc_member_info_t, pc_member_event_t) are owned by it and valid as
 * documented per call. The config strings are copied.
 *
 * Thread rules: none; a pc_member_t belongs to one thread (the node's
 * event loop). Different instances are independent.
 */
#ifndef PC_MEMBER_H
#define PC_MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_error.h"

/* Limits. They equal pc_ring's (PC_RING_MAX_MEMBERS, _NAME, _WEIGHT) so
 * every member list the state machine holds can become a ring. */
#define PC_MEMBER_MAX 4096u       /* members known at once, self included */
#define PC_MEMBER_NAME_MAX 255u   /* bytes in a name */
#define PC_MEMBER_ADDR_MAX 255u   /* bytes in a "host:port" */
#define PC_MEMBER_MAX_WEIGHT 1000u

/* Wire values of pc_gossip's state records; do not renumber. */
typedef enum pc_member_state {
    PC_MEMBER_ALIVE = 0,
    PC_MEMBER_SUSPECT = 1, /* failed a probe; DEAD unless it refutes in time */
    PC_MEMBER_DEAD = 2,
    PC_MEMBER_LEFT = 3, /* left gracefully */
} pc_member_state_t;

/* "alive", "suspect", "dead", "left", or "unknown". Static storage. */
const char *pc_member_state_name(pc_member_state_t s);

typedef struct pc_member_config {
    /* Self. name, addr and gossip are required: 1..255 bytes each. */
    const char *name;
    const char *addr;     /* TCP host:port (clients and push/pull) */
    const char *gossip;   /* UDP host:port */
    uint32_t weight;      /* 1..PC_MEMBER_MAX_WEIGHT; 0 = 1 */
    uint64_t incarnation; /* starting incarnation; see the header comment */

    /* Timers and knobs; 0 takes the default (memberlist's LAN profile). */
    uint32_t probe_interval_ms;    /* 1000: one probe per period */
    uint32_t probe_timeout_ms;     /* 500: direct ACK wait before PING_REQ */
    uint32_t indirect_probes;      /* 3: PING_REQs per failed direct probe */
    uint32_t suspicion_mult;       /* 4: suspicion min = mult*log10(n)*interval */
    uint32_t suspicion_max_mult;   /* 6: suspicion max = this * min */
    uint32_t retransmit_mult;      /* 4: sends per update = mult*ceil(log10(n+1)) */
    uint32_t gossip_interval_ms;   /* 200 */
    uint32_t gossip_nodes;         /* 3: members per gossip round */
    uint32_t gossip_dead_ms;       /* 30000: keep gossiping to dead members */
    uint32_t awareness_max;        /* 8: health score is 0..awareness_max-1 */
    uint32_t pushpull_interval_ms; /* 30000 (scaled up above 32 members);
                                      PC_MEMBER_PUSHPULL_NEVER: only on join */
    uint32_t max_packet;           /* 1400: UDP payload bytes before sealing */
    uint32_t dead_reap_ms;         /* 60000: forget DEAD/LEFT members after */
    uint32_t reconnect_interval_ms; /* 1000: push/pull with one DEAD member this
                                       often, so a healed partition heals fast */
    uint32_t lease_ms; /* suspicion_mult * probe_interval / 2 (2000): the
                          partition lease, pc_member_lease_until(); 8 ..
                          suspicion_mult * probe_interval, or
                          PC_MEMBER_LEASE_NEVER */
} pc_member_config_t;

/* pushpull_interval_ms meaning "never periodically" (0 means the default). */
#define PC_MEMBER_PUSHPULL_NEVER UINT32_MAX
/* lease_ms meaning "no lease": pc_member_lease_until() is always
 * UINT64_MAX and no lease pings are sent (a cluster with nothing behind
 * it, whose copies are all there is). */
#define PC_MEMBER_LEASE_NEVER UINT32_MAX

/* Fills *cfg's timer fields with the defaults above (self fields are left
 * alone), so a caller can show or tweak them. */
void pc_member_config_defaults(pc_member_config_t *cfg);

typedef struct pc_member pc_member_t;

/* A member as seen now. Strings are owned by the pc_member_t and valid
 * until the next call that takes a non-const pc_member_t *. */
typedef struct pc_member_info {
    const char *name;
    const char *addr;
    const char *gossip;
    uint32_t weight;
    uint64_t incarnation;
    pc_member_state_t state;
    uint64_t since_ms; /* when it entered this state (our clock) */
} pc_member_info_t;

/*
 * A change in one member: it appeared (`joined`, prev == state), changed
 * state, or changed addr / gossip / weight (state == prev). Incarnation
 * changes alone (a refuted suspicion we never saw) make no event. The
 * first event after pc_member_new() is self joining. Reaping a DEAD/LEFT
 * member makes no event (it is already out of any ring); it bumps the
 * epoch. Strings valid until the next pc_member_next_event() or
 * pc_member_free().
 */
typedef struct pc_member_event {
    const char *name;
    const char *addr;
    const char *gossip;
    uint32_t weight;
    uint64_t incarnation;
    pc_member_state_t state;
    pc_member_state_t prev;
    bool joined;
} pc_member_event_t;

typedef struct pc_member_stats {
    uint64_t probes;           /* direct probes started */
    uint64_t probe_acks;       /* ... answered in time (directly or relayed) */
    uint64_t probe_failures;   /* ... not answered by the end of the period */
    uint64_t ping_reqs_sent;   /* PING_REQs we sent */
    uint64_t ping_reqs_served; /* PING_REQs we relayed for others */
    uint64_t nacks_sent;
    uint64_t nacks_received;
    uint64_t suspicions;       /* suspicions we raised from our own probes */
    uint64_t suspects;         /* members we moved to SUSPECT (any source) */
    uint64_t refutes;          /* times we refuted a claim about ourselves */
    uint64_t deaths;           /* members we moved to DEAD (any source) */
    uint64_t deaths_declared;  /* ... of those, by our own suspicion timer */
    uint64_t lefts;            /* members we saw leave */
    uint64_t joins;            /* members we learnt of */
    uint64_t reaped;           /* DEAD/LEFT members forgotten */
    uint64_t packets_in;
    uint64_t packets_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t bad_packets;      /* undecodable datagrams / states */
    uint64_t bad_msgs;         /* decodable but refused (bad weight, full list) */
    uint64_t misdirected;      /* PINGs for another name (address reuse) */
    uint64_t stale_acks;       /* ACK/NACK matching no waiting probe (late,
                                  or answering a suspect ping) */
    uint64_t suspect_pings;    /* pings to a suspect carrying our suspicion
                                  (reminders and last chances) */
    uint64_t packets_dropped;  /* outgoing queue full */
    uint64_t events_dropped;   /* event queue full: rebuild from the list */
    uint64_t pushpulls;        /* syncs requested */
    uint64_t reconnects;       /* ... of those, the once-a-second one with a DEAD member */
    uint64_t declared_dead;    /* current claims that we are DEAD or LEFT (refuted): others
                                  held us gone, and took our keys meanwhile */
    uint64_t dead_came_back;   /* members we held DEAD back ALIVE in the same life (their
                                  incarnation refuted, not restarted): a partition healed,
                                  and they may have taken our keys meanwhile */
    uint64_t merges;           /* states merged */
    uint64_t lease_pings;      /* PINGs sent only to renew the lease */
    uint64_t lease_acks;       /* ... ACKed by the member itself */
    uint32_t members;          /* known now, self included */
    uint32_t alive, suspect, dead, left;
    uint32_t health;           /* pc_member_health() */
} pc_member_stats_t;

/*
 * Creates the state machine with self ALIVE at cfg->incarnation. seed
 * drives every random choice (probe order, gossip targets), so equal
 * inputs give equal outputs. 0; PC_EINVAL (NULL, a missing or over-long
 * name/addr/gossip, weight over PC_MEMBER_MAX_WEIGHT); PC_ERANGE (a
 * knob out of range: probe_timeout >= probe_interval; suspicion_mult,
 * suspicion_max_mult, retransmit_mult, indirect_probes or gossip_nodes
 * over 32; awareness_max over 64; max_packet under 1200 -- one update
 * with every field at its longest must fit -- or over
 * PC_GOSSIP_MAX_PACKET); PC_ENOMEM. *out is NULL on error.
 */
int pc_member_new(const pc_member_config_t *cfg, uint64_t seed, uint64_t now_ms,
                  pc_member_t **out);

/* Frees everything and sets *m to NULL. NULL-safe. */
void pc_member_free(pc_member_t **m);

/* Runs every timer due at now_ms: probe steps, suspicion timeouts, gossip,
 * push/pull scheduling, reaping. Cheap to call early (does nothing). */
void pc_member_tick(pc_member_t *m, uint64_t now_ms);

/*
 * Absolute time of the next timer, or UINT64_MAX if none. Changes after
 * every non-const call: read it again before rearming. Packets, events and
 * syncs are not timers: drain them after each call instead.
 */
uint64_t pc_member_next_deadline(const pc_member_t *m);

/*
 * Handles one datagram from `from` ("host:port", NUL-terminated, at most
 * PC_MEMBER_ADDR_MAX bytes; replies go there). The bytes are read during
 * the call only. The sender name inside is trusted as given until packets
 * are sealed. 0; PC_EPROTO / PC_ETOOBIG for an undecodable packet
 * (counted in bad_packets and otherwise ignored); PC_EINVAL (NULL, bad
 * `from`); PC_ENOMEM. Messages inside a good packet that are refused one
 * by one (bad weight, member list full) count in bad_msgs; the call still
 * returns 0.
 */
int pc_member_recv(pc_member_t *m, uint64_t now_ms, const char *from, const uint8_t *pkt,
                   size_t len);

/*
 * Pops the oldest packet to send: copies its destination into to[tocap]
 * and replaces pkt's contents with its bytes (pkt->len = packet size,
 * <= max_packet). 1 = a packet, 0 = none; PC_ERANGE if tocap is too small
 * (PC_MEMBER_ADDR_MAX + 1 always suffices; the packet stays queued);
 * PC_ENOMEM / PC_ETOOBIG from pkt (the packet is dropped). Unsent packets
 * are capped at 1024; beyond that new ones are dropped (packets_dropped).
 */
int pc_member_next_packet(pc_member_t *m, char *to, size_t tocap, pc_buf_t *pkt);

/* Pops the oldest event: 1 or 0. At most 8192 wait; beyond that new ones
 * are dropped (events_dropped): then rebuild from pc_member_get(). */
int pc_member_next_event(pc_member_t *m, pc_member_event_t *ev);

/*
 * 1 when a periodic push/pull is due: copies the TCP address of a random
 * ALIVE member -- or, now and then, of a DEAD one, to heal partitions
 * (docs/MEMBERSHIP.md) -- into addr[cap] (PC_ERANGE if cap is too
 * small). 0 if none is due. Only the latest request is kept. The first
 * one comes a random fraction of an interval after pc_member_new(), so
 * members started together do not sync in lockstep. A failed TCP attempt
 * needs no report: the next one picks again. When pc_member_count() is 1
 * (alone: never joined, or everyone else reaped) there is nobody to pick;
 * the I/O layer should then retry its seeds.
 */
int pc_member_next_sync(pc_member_t *m, char *addr, size_t cap);

/* Appends our full state (every known member, self and not yet reaped
 * DEAD/LEFT ones included) for a push/pull. 0, PC_ENOMEM, PC_ETOOBIG
 * (out's cap; the state is at most PC_GOSSIP_MAX_STATE bytes). */
int pc_member_encode_state(pc_member_t *m, pc_buf_t *out);

/*
 * Merges a state received over push/pull, with the same rules as gossip,
 * except that a remote DEAD counts as SUSPECT (the remote view may be
 * stale; our own suspicion timer decides). Unknown members that are not
 * ALIVE are ignored. 0; PC_EPROTO / PC_ETOOBIG (counted in bad_packets,
 * nothing merged); PC_ENOMEM.
 */
int pc_member_merge_state(pc_member_t *m, uint64_t now_ms, const uint8_t *p, size_t len);

/*
 * Leaves gracefully: raises our incarnation, marks self LEFT, queues the
 * LEFT record to every live member (up to 512; the rest hear it by
 * gossip) right away and keeps gossiping it on later ticks (probing
 * stops; PINGs are still answered).
 * Keep ticking and draining until pc_member_leave_done() or a short
 * deadline, then stop. 0 or PC_ECLOSED (already left). A left instance
 * cannot rejoin; create a new one with a higher incarnation.
 */
int pc_member_leave(pc_member_t *m, uint64_t now_ms);

/* True once the LEFT record has been sent as often as any update is
 * (retransmit_mult * ceil(log10(n+1)) times), or when there is nobody to
 * tell. False before pc_member_leave(). */
bool pc_member_leave_done(const pc_member_t *m);

/* Members known, self included (index 0 is always self). */
size_t pc_member_count(const pc_member_t *m);

/*
 * The partition lease (docs/CONSISTENCY.md §4 point 5): until the time
 * this returns, this member is in touch with a majority of the members it
 * knows, and may serve cached copies and take writes; from then on it is
 * cut off. Let `known` be self and every member not LEFT (ALIVE, SUSPECT,
 * and DEAD ones not yet reaped):
 *  - known < 3, or lease_ms is PC_MEMBER_LEASE_NEVER: UINT64_MAX (with 2,
 *    the survivor of a crash could never tell it from a partition, and
 *    would stop);
 *  - known over 64: 0 when ALIVE members, self included, are at most half
 *    of known, else UINT64_MAX (renewing by ACKs would cost each member
 *    about known / 2 pings per half lease; only this membership rule
 *    applies);
 *  - live (ALIVE or SUSPECT: in the ring) members, self included, at most
 *    half of known: 0 (a node that holds most members DEAD places keys
 *    unlike the others);
 *  - else the time lease_ms after we sent the PING (a probe's or a lease
 *    ping's) ACKed by the member itself -- not through a relay -- that
 *    makes known / 2 live peers, with self a majority, heard since; 0 if
 *    fewer ever ACKed.
 * The lease counts from when the PING was sent, so an ACK that waited in
 * a socket while this process was stopped renews nothing it should not.
 * While a majority answers, it is renewed before it runs out: when fewer
 * than known / 2 + 1 live peers ACKed a PING sent within the last half
 * lease, the state machine sends some of the others lease pings (stats
 * lease_pings; each peer at most once per eighth of a lease).
 * pc_member_next_deadline() includes the time it runs out. It changes
 * only in pc_member_new/tick/recv/merge_state/leave.
 */
uint64_t pc_member_lease_until(const pc_member_t *m);
/* The lease's length in ms (the resolved lease_ms). */
uint32_t pc_member_lease_ms(const pc_member_t *m);

/* true when now_ms is at or past pc_member_lease_until() (m non-NULL).
 * For the log: *live (ALIVE or SUSPECT, self included), *known (as above)
 * and *acked (live peers that ACKed a PING sent less than lease_ms before
 * now_ms); each may be NULL. */
bool pc_member_cut_off(const pc_member_t *m, uint64_t now_ms, size_t *live, size_t *known,
                       size_t *acked);
/* Member i (0 <= i < count; order changes only when members are added or
 * reaped). 0 or PC_ENOTFOUND. Strings as for pc_member_info_t. */
int pc_member_get(const pc_member_t *m, size_t i, pc_member_info_t *out);
/* Member by name. 0 or PC_ENOTFOUND. */
int pc_member_lookup(const pc_member_t *m, const char *name, pc_member_info_t *out);

/* Bumps on every event and every reap: compare to know whether to rebuild. */
uint64_t pc_member_epoch(const pc_member_t *m);

/* Lifeguard local health score, 0 (healthy) .. awareness_max-1. Probe
 * interval and timeout are multiplied by (score + 1). */
unsigned pc_member_health(const pc_member_t *m);

/* Snapshot of the counters. */
void pc_member_stats(const pc_member_t *m, pc_member_stats_t *out);

/* The suspicion timeout range (ms) that a suspicion started now would
 * have with n live members: min after enough confirmations, max with
 * none. For docs, tests and the operator. */
void pc_member_suspicion_bounds(const pc_member_t *m, size_t n, uint64_t *min_ms,
                                uint64_t *max_ms);

#endif
