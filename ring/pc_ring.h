/*
 * pc_ring.h -- key placement: which members own a key, and what moves when
 * the member set changes.
 *
 * Pure: no I/O, no clocks, no globals, no randomness. The same code runs in
 * the node and in the client library, so both compute the same owner.
 *
 * Scheme (chosen by measurement, docs/RING.md): the key space is cut into
 * PC_RING_SLOTS slots. A key's slot is pc_ring_hash(key) mod PC_RING_SLOTS.
 * Each slot is filled by weighted rendezvous (highest random weight)
 * hashing: every member scores the slot, and the slot's owner is the member
 * with the highest score, its replicas the next R-1 in score order. So
 *   - a member that joins takes slots only from others, and a member that
 *     leaves gives its slots only to others: no slot moves between two
 *     members that both stay;
 *   - a member of weight w gets about w / sum(weights) of the slots;
 *   - a lookup is one hash and one table read.
 *
 * Placement is fixed by the hash functions and the scoring rule; golden
 * vectors in tests/unit/test_ring.c pin it. Changing either changes where
 * every key lives in every deployed cluster: bump PC_RING_SCHEME then.
 *
 * A ring is immutable once built. Thread rules: every function is safe to
 * call from any thread on a ring whose reference it holds.
 */
#ifndef PC_RING_H
#define PC_RING_H

#include <stddef.h>
#include <stdint.h>

#include "pc_error.h"

#define PC_RING_SLOTS 65536u      /* power of two; part of the placement */
#define PC_RING_SCHEME 1u         /* mixed into the fingerprint */
#define PC_RING_MAX_MEMBERS 4096u /* members in one ring */
#define PC_RING_MAX_REPLICAS 8u   /* owner included */
#define PC_RING_MAX_WEIGHT 1000u
#define PC_RING_MAX_NAME 255u     /* bytes in a member name */

typedef struct pc_ring pc_ring_t;

typedef struct pc_ring_member {
    const char *name; /* unique, 1..PC_RING_MAX_NAME bytes, NUL-terminated */
    uint32_t weight;  /* 1..PC_RING_MAX_WEIGHT */
} pc_ring_member_t;

/*
 * Builds a ring of n members (n may be 0: an empty ring owns nothing) where
 * each key has min(replicas, n) distinct placements. The input order does
 * not matter: members are kept sorted by name (bytewise, strcmp order),
 * and member indexes below are positions in that order. Names are copied.
 * 0, PC_EINVAL (duplicate, NULL, empty or too long name, weight out of range,
 * replicas 0 or over PC_RING_MAX_REPLICAS, n over PC_RING_MAX_MEMBERS) or
 * PC_ENOMEM; also PC_EINVAL for a NULL out, or NULL members with n > 0.
 * On failure *out is NULL. Cost: O(PC_RING_SLOTS * n) hash evaluations
 * (about 5 ms for 10 members, up to 1 s for 4096: build off any event
 * loop; figures in docs/RING.md).
 */
int pc_ring_new(const pc_ring_member_t *members, size_t n, unsigned replicas, pc_ring_t **out);

/* Drops a reference and sets *r to NULL; the last one frees the ring.
 * NULL-safe. */
void pc_ring_free(pc_ring_t **r);

/* Another reference to r (for a thread that reads the ring while its
 * maker may move on): each pc_ring_ref needs its own pc_ring_free. The
 * count is atomic: refs may be taken and dropped on any thread. */
pc_ring_t *pc_ring_ref(const pc_ring_t *r);

/* The fixed 64-bit hash of a key that places it. Not keyed, not secret:
 * clients and nodes in every process must agree on it (its definition is
 * in docs/RING.md). key may be NULL when len is 0. */
uint64_t pc_ring_hash(const void *key, size_t len);

/* The slot of a key, in [0, PC_RING_SLOTS). */
uint32_t pc_ring_slot(const void *key, size_t len);

/*
 * The two building blocks of a slot's scores, exposed so that tests and
 * implementations in other languages can check themselves against this
 * one (docs/RING.md defines both exactly):
 *   pc_ring_draw: member's uniform 64-bit draw for a slot, from
 *     pc_ring_hash of its name;
 *   pc_ring_neglog2: -log2(x / 2^64) in fixed point with 48 fraction bits
 *     (x = 0 counts as 1), in [0, 2^54], never increasing with x.
 * A member of weight w with draw x scores w / pc_ring_neglog2(x): the
 * highest score owns the slot (ties: larger draw, then name order).
 */
uint64_t pc_ring_draw(uint64_t name_hash, uint32_t slot);
uint64_t pc_ring_neglog2(uint64_t x);

/* Number of members, and replicas per key as built (min(replicas, n)). */
size_t pc_ring_size(const pc_ring_t *r);
unsigned pc_ring_replicas(const pc_ring_t *r);

/* Member i (0 <= i < size) in name order. The pointer lives as long as r. */
const char *pc_ring_name(const pc_ring_t *r, size_t i);
uint32_t pc_ring_weight(const pc_ring_t *r, size_t i);

/* Index of the member with this name, or -1. O(log n). */
long pc_ring_find(const pc_ring_t *r, const char *name);

/*
 * The placements of a slot: the owner first, then the replicas in
 * preference order, as member indexes. Returns how many were written:
 * min(max, pc_ring_replicas(r)); 0 for an empty ring or a slot out of
 * range.
 */
size_t pc_ring_slot_members(const pc_ring_t *r, uint32_t slot, uint32_t *out, size_t max);

/*
 * What member `self` is to every slot, in one pass: roles[slot] =
 * PC_RING_ROLE_OWNER if it owns the slot, PC_RING_ROLE_REPLICA if it is one
 * of the slot's other placements, else PC_RING_ROLE_NONE (all of them for
 * a NULL ring or self < 0). roles holds PC_RING_SLOTS bytes; the caller
 * owns it. The same as asking pc_ring_slot_members per slot, without
 * 65,536 calls (a node does this on every ring change).
 */
#define PC_RING_ROLE_NONE 0u
#define PC_RING_ROLE_OWNER 1u
#define PC_RING_ROLE_REPLICA 2u
void pc_ring_roles(const pc_ring_t *r, long self, uint8_t *roles);

/* Owner of a slot / of a key as a member index, or -1 for an empty ring
 * (or a slot out of range). */
long pc_ring_slot_owner(const pc_ring_t *r, uint32_t slot);
long pc_ring_owner(const pc_ring_t *r, const void *key, size_t len);

/*
 * Identifies the placement: equal for two rings built from the same
 * (name, weight) set and replica count, in any input order, in any
 * process; different (with overwhelming probability) otherwise. Never 0.
 * The replica count is the one built, min(replicas, n): rings of 2
 * members asked for 2 or for 3 replicas place identically and share it.
 */
uint64_t pc_ring_fingerprint(const pc_ring_t *r);

/*
 * The fingerprint pc_ring_new(members, n, replicas) would give its ring,
 * without building it: O(n log n), so a caller can tell whether a member
 * list places anything differently from the ring it has before paying
 * O(PC_RING_SLOTS * n) for a new one. 0 where pc_ring_new would fail
 * (invalid arguments, duplicate names) or memory runs out.
 */
uint64_t pc_ring_fingerprint_of(const pc_ring_member_t *members, size_t n, unsigned replicas);

/* Slots owned by member i (as owner, not replica). */
uint32_t pc_ring_owned_slots(const pc_ring_t *r, size_t i);

/*
 * What moves from ring a to ring b. Calls fn once per slot, in slot order,
 * whose placement list differs (compared by member name, in order: a
 * replica that changes rank counts as a change), with a's and b's lists as
 * member indexes into a and into b respectively (na, nb of them; the owner
 * first; valid during the call only). Either ring may be empty; fn may be
 * NULL to count only. Returns the number of slots reported, or, as soon as
 * fn returns non-zero, stops and returns that value: so fn should stop
 * with a negative value (a PC_E* code), never a positive one, which would
 * read as a count. PC_EINVAL if a or b is NULL. Never allocates.
 */
typedef int (*pc_ring_move_fn)(void *arg, uint32_t slot, const uint32_t *from, size_t na,
                               const uint32_t *to, size_t nb);
long pc_ring_diff(const pc_ring_t *a, const pc_ring_t *b, pc_ring_move_fn fn, void *arg);

#endif
