/*
 * pc_route.h -- where a request goes: where a key lives on a ring, what
 * this node is to it, and the one decision of which loop or member serves
 * a request (pc_route_decide). Pure: the ring, this node's place in it,
 * and the state of the node's loops are parameters; pc_dispatch gathers
 * them and carries the decision out.
 */
#ifndef PC_ROUTE_H
#define PC_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "pc_ring.h"

enum {
    PC_ROLE_NONE = PC_RING_ROLE_NONE,
    PC_ROLE_OWNER = PC_RING_ROLE_OWNER,
    PC_ROLE_REPLICA = PC_RING_ROLE_REPLICA
};

/* A key's placement, and this node's role in it. */
typedef struct pc_route {
    uint32_t slot;
    unsigned role;                     /* PC_ROLE_* */
    size_t n;                          /* placements */
    uint32_t at[PC_RING_MAX_REPLICAS]; /* ring member indexes, owner first */
} pc_route_t;

/* Is member i suspect? (The membership's, or a ring view's flags.) */
typedef int (*pc_route_suspect_fn)(const void *arg, size_t i);

/* The placement of `slot` on `ring` (NULL: no cluster, this node owns
 * everything), with `self` this node's index in it (-1: not a member). */
void pc_route_place(const pc_ring_t *ring, long self, uint32_t slot, pc_route_t *rt);

/* This node's role in a slot on a ring (PC_ROLE_NONE if ring is NULL or
 * self < 0). */
unsigned pc_route_role(const pc_ring_t *ring, long self, uint32_t slot);

/*
 * The member a request for this placement should go to: the owner, or
 * for a read whose owner is suspect, the first replica that is not (and
 * not us). -1 if this node should serve it itself.
 */
long pc_route_target(const pc_route_t *rt, long self, int read, pc_route_suspect_fn suspect,
                     const void *arg);


/* ---- the decision ------------------------------------------------------------ */

/* What to do with a request that reached this loop. */
enum {
    PC_ROUTE_SERVE,      /* here, as the key's owner: a hit, or through Redis (the store alone,
                            memory-only); HELLO and the like: here */
    PC_ROUTE_SERVE_HERE, /* a key this node does not own, served here anyway: a replica's
                            copy, else read from Redis without caching it */
    PC_ROUTE_FORWARD,    /* to ring member `to` (a FORWARD over this loop's peer pool) */
    PC_ROUTE_HOME,       /* to home loop `to`, over a relay */
    PC_ROUTE_CORE,       /* to the core loop, over a relay */
    PC_ROUTE_LOCAL,      /* a worker while homes are off, memory-only: from the store by the
                            gate (a miss is NOT_FOUND: the store is the truth); writes when the
                            node is alone and settled; what it cannot, to the core */
    PC_ROUTE_SPLIT,      /* an MGET, split here key by key (pc_route_mget_key) */
    PC_ROUTE_RETRY_RING, /* a write relayed by a member for a key this node does not own on
                            its ring (two rings disagree for a moment): RETRY */
    PC_ROUTE_RETRY_HOME  /* a write for a key whose Redis traffic is another loop's right now
                            (it met a homes switch on its way): RETRY */
};

typedef struct pc_route_action {
    unsigned kind;  /* PC_ROUTE_* */
    int hits_first; /* answer a valid hit from the store here first; `kind` is for the rest */
    long to;        /* FORWARD: the member; HOME: the loop */
} pc_route_action_t;

/* What the decision is made of. The gate fields are the core's view of
 * ownership (pc_view.h); role and target come from this loop's ring. */
typedef struct pc_route_facts {
    uint32_t op;    /* PC_OP_*; a FORWARD is decided by the request inside it */
    uint32_t hops;  /* > 0: a member relayed it (the request inside a FORWARD) */
    int here;       /* a GET (or an MGET, for each of its keys) that asks to be answered by
                       this node, never relayed to the key's owner (PROTOCOL.md §5.3, §5.4);
                       0 for every other op */
    int sealed;     /* it came on a peer's connection */
    int repl_write; /* a REPLICATE of writes (not a hand-off) */
    int relayed_writes; /* a worker: a write of this connection waits at the core */
    int core;           /* this loop is the core */
    int several;        /* the node runs more than one loop */
    int homes;          /* home loops are on */
    int homed;          /* the keys' Redis traffic is split between home loops */
    int has_backend;    /* Redis behind */
    size_t index;       /* this loop */
    size_t home;        /* the key's home loop */
    int alone;          /* gate: this node is the only member */
    int owns;           /* gate: this node owns the key's slot */
    int local_writes;   /* a worker may write its store: memory-only, alone, settled */
    unsigned role;      /* this node's role for the key on this loop's ring */
    long target;        /* pc_route_target for the op (-1: here) */
} pc_route_facts_t;

/*
 * Where a request goes (docs/ARCHITECTURE.md "Threads" has the rules in
 * two tables, homes on and homes off):
 *
 *  - A member's FORWARD (hops > 0) of a key this node owns goes, while
 *    homes are on, to the key's home loop, whole; while they are off, a
 *    worker sends it to the core. Else it is served here, and never sent
 *    to another member again: a write this node does not own is
 *    RETRY_RING.
 *  - Homes on, a key operation from a client on any loop: another
 *    member's key is forwarded from here (or served here if its member
 *    is unreachable, for reads, or if a GET says `here`); a GET of ours
 *    answers a valid hit here and otherwise goes to the key's home; any
 *    other operation of ours goes to its home; an MGET is split here.
 *  - Homes off, on a worker: a GET of a slot we own answers a valid hit
 *    here (LOCAL on a memory-only node), everything else goes to the
 *    core, and so does everything after a write of the connection that
 *    is still at the core.
 *  - On the core (or a node of one loop): served here as owner, or as
 *    not-owner (SERVE_HERE / FORWARD as the ring says; a GET that says
 *    `here` is never forwarded: SERVE_HERE); a write whose key's Redis
 *    traffic is another loop's is RETRY_HOME.
 *  - STATS, CLUSTER, SYNC, a hand-off, and unknown operations go to the
 *    core; a worker applies a REPLICATE of writes itself while homes
 *    are on (LOCAL), else it goes to the core. HELLO and PING anywhere.
 *
 * So a GET that says `here`, at a node that does not own its key, ends in
 * SERVE_HERE on whichever loop serves it: the one that read it, its home,
 * or the core (`here` is a GET's and an MGET's alone: it changes nothing
 * for other ops).
 */
pc_route_action_t pc_route_decide(const pc_route_facts_t *f);

/* One key of an MGET split on this loop (the facts as for a GET of it,
 * `here` the MGET's): SERVE (look it up, a miss read through here), HOME
 * with hits_first (a miss read through on its home loop), FORWARD (never
 * with `here`), or SERVE_HERE. */
pc_route_action_t pc_route_mget_key(const pc_route_facts_t *f);

#endif
