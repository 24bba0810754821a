/*
 * test_route.c -- pc_route: placement and this node's role on a real ring
 * (pc_route_place, pc_route_role), the member a request goes to
 * (pc_route_target), and the routing decision (pc_route_decide,
 * pc_route_mget_key) row by row against the rules of docs/ARCHITECTURE.md
 * "Threads" (the homes-on table, "Homes off", "Relays") and the comment
 * above pc_route_decide in node/pc_route.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pc_proto.h"
#include "pc_ring.h"
#include "pc_route.h"

/* ---- rings ------------------------------------------------------------------ */

static pc_ring_t *ring_of(size_t n, unsigned replicas)
{
    static const pc_ring_member_t m[] = {{"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}};
    pc_ring_t *r = NULL;
    assert_true(n <= 4);
    assert_int_equal(pc_ring_new(m, n, replicas, &r), 0);
    assert_non_null(r);
    assert_int_equal(pc_ring_size(r), n);
    return r;
}

static void test_place_owner_first(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        unsigned replicas;
    } shapes[] = {{3, 2}, {4, 3}, {4, 2}, {3, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        pc_ring_t *r = ring_of(shapes[s].n, shapes[s].replicas);
        for (long self = -1; self < (long)shapes[s].n; self++) {
            uint8_t roles[PC_RING_SLOTS];
            pc_ring_roles(r, self, roles);
            uint32_t seen[3] = {0};
            for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
                pc_route_t rt;
                memset(&rt, 0xAB, sizeof rt);
                pc_route_place(r, self, slot, &rt);
                assert_int_equal(rt.slot, slot);
                assert_int_equal(rt.n, shapes[s].replicas);
                assert_int_equal(rt.at[0], pc_ring_slot_owner(r, slot));
                uint32_t at[PC_RING_MAX_REPLICAS];
                assert_int_equal(pc_ring_slot_members(r, slot, at, PC_RING_MAX_REPLICAS), rt.n);
                assert_memory_equal(rt.at, at, rt.n * sizeof at[0]);
                /* the role of self: its position in the placement */
                unsigned want = PC_ROLE_NONE;
                for (size_t i = 0; i < rt.n; i++)
                    if ((long)rt.at[i] == self)
                        want = i == 0 ? PC_ROLE_OWNER : PC_ROLE_REPLICA;
                if (rt.role != want || rt.role != roles[slot]) {
                    print_error("ring %zu/%u, self %ld, slot %u: role %u, expected %u "
                                "(pc_ring_roles: %u)\n",
                                shapes[s].n, shapes[s].replicas, self, slot, rt.role, want,
                                roles[slot]);
                    fail();
                }
                assert_int_equal(pc_route_role(r, self, slot), want);
                seen[want]++;
            }
            if (self < 0) {
                assert_int_equal(seen[PC_ROLE_NONE], PC_RING_SLOTS);
            } else {
                /* every member owns some slots, is a replica of some, and
                 * (with fewer placements than members) has no place in some */
                assert_int_equal(seen[PC_ROLE_OWNER], pc_ring_owned_slots(r, (size_t)self));
                assert_true(seen[PC_ROLE_OWNER] > 0);
                assert_true(seen[PC_ROLE_REPLICA] > 0);
                if (shapes[s].replicas < shapes[s].n)
                    assert_true(seen[PC_ROLE_NONE] > 0);
                else
                    assert_int_equal(seen[PC_ROLE_NONE], 0);
            }
        }
        pc_ring_free(&r);
    }
}

/* pc_route_suspect_fn; arg: a bit mask of suspect members. */
static int suspect_mask(const void *arg, size_t i)
{
    return (*(const unsigned *)arg >> i) & 1u;
}

static void test_place_no_ring(void **state)
{
    (void)state;
    /* no cluster: this node owns everything */
    for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot += 4099) {
        pc_route_t rt;
        memset(&rt, 0xAB, sizeof rt);
        pc_route_place(NULL, -1, slot, &rt);
        assert_int_equal(rt.slot, slot);
        assert_int_equal(rt.role, PC_ROLE_OWNER);
        assert_int_equal(rt.n, 0);
        pc_route_place(NULL, 0, slot, &rt);
        assert_int_equal(rt.role, PC_ROLE_OWNER);
        /* ... and serves every request itself, whoever is suspect */
        unsigned all = ~0u;
        assert_int_equal(pc_route_target(&rt, 0, 1, suspect_mask, &all), -1);
        assert_int_equal(pc_route_target(&rt, 0, 0, suspect_mask, &all), -1);
        /* pc_route_role: NONE for a NULL ring or self < 0 (the header) */
        assert_int_equal(pc_route_role(NULL, 0, slot), PC_ROLE_NONE);
    }
    pc_ring_t *r = ring_of(3, 2);
    for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot += 4099)
        assert_int_equal(pc_route_role(r, -1, slot), PC_ROLE_NONE);
    pc_ring_free(&r);
}

/* ---- pc_route_target ---------------------------------------------------------- */

/* The first slot whose placement on r is exactly at[0..n-1]; fails if none. */
static uint32_t slot_placed(const pc_ring_t *r, const uint32_t *want, size_t n)
{
    for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
        uint32_t at[PC_RING_MAX_REPLICAS];
        size_t got = pc_ring_slot_members(r, slot, at, PC_RING_MAX_REPLICAS);
        if (got == n && memcmp(at, want, n * sizeof at[0]) == 0)
            return slot;
    }
    fail_msg("no slot placed on the wanted members");
    return 0;
}

#define BIT(i) (1u << (i))

static long target(const pc_ring_t *r, long self, uint32_t slot, int read, unsigned suspects)
{
    pc_route_t rt;
    pc_route_place(r, self, slot, &rt);
    return pc_route_target(&rt, self, read, suspect_mask, &suspects);
}

static void test_target(void **state)
{
    (void)state;
    pc_ring_t *r = ring_of(4, 3);
    /* a slot placed on c (owner), b, d; a (0) has no place in it */
    const uint32_t cbd[] = {2, 1, 3};
    uint32_t slot = slot_placed(r, cbd, 3);

    /* owner not suspect: the owner, for reads and writes, whoever asks */
    for (long self = -1; self <= 3; self++) {
        if (self == 2)
            continue;
        assert_int_equal(target(r, self, slot, 1, 0), 2);
        assert_int_equal(target(r, self, slot, 0, 0), 2);
        /* other members' suspicion changes nothing while the owner is fine */
        assert_int_equal(target(r, self, slot, 1, BIT(0) | BIT(1) | BIT(3)), 2);
    }
    /* the owner itself serves it */
    assert_int_equal(target(r, 2, slot, 1, 0), -1);
    assert_int_equal(target(r, 2, slot, 0, 0), -1);
    assert_int_equal(target(r, 2, slot, 1, BIT(2)), -1);
    assert_int_equal(target(r, 2, slot, 0, BIT(2)), -1);

    /* a read with the owner suspect: the first replica not suspect */
    assert_int_equal(target(r, 0, slot, 1, BIT(2)), 1);
    assert_int_equal(target(r, -1, slot, 1, BIT(2)), 1);
    assert_int_equal(target(r, 0, slot, 1, BIT(2) | BIT(1)), 3);
    assert_int_equal(target(r, 0, slot, 1, BIT(2) | BIT(0)), 1);
    /* ... -1 if we are that replica */
    assert_int_equal(target(r, 1, slot, 1, BIT(2)), -1);
    assert_int_equal(target(r, 3, slot, 1, BIT(2) | BIT(1)), -1);
    /* ... and not us when an earlier replica is fine */
    assert_int_equal(target(r, 3, slot, 1, BIT(2)), 1);

    /* a write goes to the owner even if it is suspect */
    assert_int_equal(target(r, 0, slot, 0, BIT(2)), 2);
    assert_int_equal(target(r, 1, slot, 0, BIT(2)), 2);
    assert_int_equal(target(r, 3, slot, 0, BIT(2) | BIT(1)), 2);
    assert_int_equal(target(r, 0, slot, 0, BIT(0) | BIT(1) | BIT(2) | BIT(3)), 2);

    /* Not in the header: every placement suspect, and we are none of
     * them: the owner (there is nobody better to ask). */
    assert_int_equal(target(r, 0, slot, 1, BIT(1) | BIT(2) | BIT(3)), 2);

    /* replicas 2 on 3 members: the one replica, else the owner */
    pc_ring_t *r3 = ring_of(3, 2);
    const uint32_t ab[] = {0, 1};
    uint32_t s2 = slot_placed(r3, ab, 2);
    assert_int_equal(target(r3, 2, s2, 1, 0), 0);
    assert_int_equal(target(r3, 2, s2, 1, BIT(0)), 1);
    assert_int_equal(target(r3, 1, s2, 1, BIT(0)), -1);
    assert_int_equal(target(r3, 1, s2, 1, 0), 0);
    assert_int_equal(target(r3, 1, s2, 0, BIT(0)), 0);
    assert_int_equal(target(r3, 2, s2, 0, BIT(0)), 0);

    pc_ring_free(&r);
    pc_ring_free(&r3);
}

/* ---- pc_route_decide and pc_route_mget_key --------------------------------- */

static const char *kind_name(unsigned k)
{
    static const char *const names[] = {"SERVE", "SERVE_HERE", "FORWARD", "HOME", "CORE",
                                        "LOCAL", "SPLIT", "RETRY_RING", "RETRY_HOME"};
    return k < sizeof names / sizeof names[0] ? names[k] : "?";
}

typedef struct route_row {
    const char *name;
    pc_route_facts_t f;
    unsigned kind;
    int hits_first;
    long to; /* checked for FORWARD and HOME only */
} route_row_t;

/* Checks every row, prints each that differs; fails if any did. */
static void check_rows(const route_row_t *rows, size_t n,
                       pc_route_action_t (*fn)(const pc_route_facts_t *))
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const route_row_t *w = &rows[i];
        pc_route_action_t a = fn(&w->f);
        int to_matters = w->kind == PC_ROUTE_FORWARD || w->kind == PC_ROUTE_HOME;
        if (a.kind != w->kind || !a.hits_first != !w->hits_first ||
            (to_matters && a.to != w->to)) {
            print_error("row \"%s\": got %s hits_first=%d to=%ld, expected %s hits_first=%d "
                        "to=%ld\n",
                        w->name, kind_name(a.kind), a.hits_first, a.to, kind_name(w->kind),
                        w->hits_first, to_matters ? w->to : -1L);
            bad++;
        }
    }
    if (bad > 0)
        fail_msg("%zu of %zu rows differ", bad, n);
}

/*
 * The facts, by situation. Each macro sets its own fields (no field twice
 * in a row: -Woverride-init). Loops: the core is 0, "this" worker is 1,
 * the other home is 2; members: the owner elsewhere is 3.
 */
/* homes on, Redis behind, keys' traffic split between the homes */
#define ON .several = 1, .homes = 1, .homed = 1, .has_backend = 1
/* homes on, memory-only: every loop is home to every key */
#define ON_MEM .several = 1, .homes = 1, .homed = 0, .has_backend = 0
/* homes off (a ring change under way), Redis behind */
#define OFF .several = 1, .homes = 0, .homed = 1, .has_backend = 1
#define OFF_MEM .several = 1, .homes = 0, .homed = 0, .has_backend = 0
#define ONE_LOOP .several = 0, .homes = 0, .homed = 0, .has_backend = 1
#define WORKER .core = 0, .index = 1
#define CORE_LOOP .core = 1, .index = 0
/* a key: ours (gate and ring) homed here / elsewhere; another member's */
#define OURS_HOMED_AT(h) .owns = 1, .role = PC_ROLE_OWNER, .target = -1, .home = (h)
#define OURS_HOMED_HERE(index) OURS_HOMED_AT(index)
#define THEIRS(t) .owns = 0, .role = PC_ROLE_NONE, .target = (t), .home = 2
#define REPLICA_OF(t) .owns = 0, .role = PC_ROLE_REPLICA, .target = (t), .home = 2
/* a member's FORWARD (the request inside it), on a peer's connection */
#define PEER .hops = 1, .sealed = 1
/* a GET that says `here` (PROTOCOL.md §5.3): a hedged read */
#define HERE .here = 1

#define GET .op = PC_OP_GET
#define SET .op = PC_OP_SET
#define DEL .op = PC_OP_DEL
#define TOUCH .op = PC_OP_TOUCH
#define MGET .op = PC_OP_MGET

#define ROW(nm, kd, hf, t, ...)                                                                \
    {.name = (nm), .f = {__VA_ARGS__}, .kind = (kd), .hits_first = (hf), .to = (t)}

static void test_decide_homes_on(void **state)
{
    (void)state;
    static const route_row_t rows[] = {
        /* "GET hit (a key this node owns, a valid item) | on the loop that read
         * it"; "GET miss ... of a key this node owns | on the key's home" */
        ROW("on: GET of ours homed elsewhere: hit here, else its home", PC_ROUTE_HOME, 1, 2,
            ON, WORKER, GET, OURS_HOMED_AT(2)),
        ROW("on: GET of ours homed elsewhere, on the core", PC_ROUTE_HOME, 1, 2, ON, CORE_LOOP,
            GET, OURS_HOMED_AT(2)),
        ROW("on: GET of ours homed on the core, from a worker", PC_ROUTE_HOME, 1, 0, ON, WORKER,
            GET, OURS_HOMED_AT(0)),
        ROW("on: GET of ours (alone: the gate) homed elsewhere", PC_ROUTE_HOME, 1, 2, ON, WORKER,
            GET, .alone = 1, .owns = 0, .role = PC_ROLE_OWNER, .target = -1, .home = 2),
        ROW("on: GET of ours homed here", PC_ROUTE_SERVE, 0, -1, ON, WORKER, GET,
            OURS_HOMED_HERE(1)),
        ROW("on: GET of ours homed here, on the core", PC_ROUTE_SERVE, 0, -1, ON, CORE_LOOP, GET,
            OURS_HOMED_HERE(0)),
        /* "SET, DEL, TOUCH of a key this node owns | on the key's home: here,
         * or relayed to it" */
        ROW("on: SET of ours homed elsewhere", PC_ROUTE_HOME, 0, 2, ON, WORKER, SET,
            OURS_HOMED_AT(2)),
        ROW("on: DEL of ours homed elsewhere", PC_ROUTE_HOME, 0, 2, ON, WORKER, DEL,
            OURS_HOMED_AT(2)),
        ROW("on: TOUCH of ours homed elsewhere", PC_ROUTE_HOME, 0, 2, ON, WORKER, TOUCH,
            OURS_HOMED_AT(2)),
        ROW("on: SET of ours homed on the core, from a worker", PC_ROUTE_HOME, 0, 0, ON, WORKER,
            SET, OURS_HOMED_AT(0)),
        ROW("on: SET of ours homed elsewhere, on the core", PC_ROUTE_HOME, 0, 2, ON, CORE_LOOP,
            SET, OURS_HOMED_AT(2)),
        ROW("on: SET of ours homed here", PC_ROUTE_SERVE, 0, -1, ON, WORKER, SET,
            OURS_HOMED_HERE(1)),
        ROW("on: DEL of ours homed here, on the core", PC_ROUTE_SERVE, 0, -1, ON, CORE_LOOP, DEL,
            OURS_HOMED_HERE(0)),
        /* memory-only: every loop is home to every key (home = this loop) */
        ROW("on, memory-only: GET of ours", PC_ROUTE_SERVE, 0, -1, ON_MEM, WORKER, GET,
            OURS_HOMED_HERE(1)),
        ROW("on, memory-only: SET of ours", PC_ROUTE_SERVE, 0, -1, ON_MEM, WORKER, SET,
            OURS_HOMED_HERE(1)),
        /* "anything for another member's key | forwarded to the owner from
         * this loop" (or served here if its member is unreachable, reads) */
        ROW("on: GET of another member's key", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, GET,
            THEIRS(3)),
        ROW("on: GET of another member's key, on the core", PC_ROUTE_FORWARD, 0, 3, ON,
            CORE_LOOP, GET, THEIRS(3)),
        ROW("on: GET of a key we replicate", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, GET,
            REPLICA_OF(3)),
        ROW("on: GET of another's key homed here", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, GET,
            .owns = 0, .role = PC_ROLE_NONE, .target = 3, .home = 1),
        ROW("on: GET of another's key, owner suspect, we are the replica", PC_ROUTE_SERVE_HERE, 0,
            -1, ON, WORKER, GET, REPLICA_OF(-1)),
        ROW("on: GET of another's key, nobody to ask", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER,
            GET, THEIRS(-1)),
        ROW("on: SET of another member's key", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, SET,
            THEIRS(3)),
        ROW("on: DEL of a key we replicate", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, DEL,
            REPLICA_OF(3)),
        ROW("on: TOUCH of another member's key, on the core", PC_ROUTE_FORWARD, 0, 3, ON,
            CORE_LOOP, TOUCH, THEIRS(3)),
        ROW("on, memory-only: SET of another member's key", PC_ROUTE_FORWARD, 0, 3, ON_MEM,
            WORKER, SET, THEIRS(3)),
        /* a GET that says `here`, at a node that does not own its key:
         * served on the loop that read it, never forwarded */
        ROW("on: here-GET of another member's key", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER, GET,
            HERE, THEIRS(3)),
        ROW("on: here-GET of a key we replicate", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER, GET,
            HERE, REPLICA_OF(3)),
        ROW("on: here-GET of a key we replicate, on the core", PC_ROUTE_SERVE_HERE, 0, -1, ON,
            CORE_LOOP, GET, HERE, REPLICA_OF(3)),
        ROW("on: here-GET of another's key homed here", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER,
            GET, HERE, .owns = 0, .role = PC_ROLE_NONE, .target = 3, .home = 1),
        ROW("on: here-GET of a key we replicate, owner suspect", PC_ROUTE_SERVE_HERE, 0, -1, ON,
            WORKER, GET, HERE, REPLICA_OF(-1)),
        ROW("on, memory-only: here-GET of another member's key", PC_ROUTE_SERVE_HERE, 0, -1,
            ON_MEM, WORKER, GET, HERE, THEIRS(3)),
        /* ... the gate says ours but the ring does not (it is moving): a
         * hit here, else its home, which serves it as not-owner */
        ROW("on: here-GET, gate ours, ring not, homed elsewhere", PC_ROUTE_HOME, 1, 2, ON,
            WORKER, GET, HERE, .owns = 1, .role = PC_ROLE_REPLICA, .target = 3, .home = 2),
        ROW("on: here-GET, gate ours, ring not, on its home", PC_ROUTE_SERVE_HERE, 0, -1, ON,
            WORKER, GET, HERE, .owns = 1, .role = PC_ROLE_REPLICA, .target = 3, .home = 1),
        ROW("on: GET, gate ours, ring not, on its home", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, GET,
            .owns = 1, .role = PC_ROLE_REPLICA, .target = 3, .home = 1),
        /* on a peer's connection a worker sends it to the core, which
         * serves it as not-owner */
        ROW("on: here-GET on a peer's connection", PC_ROUTE_CORE, 0, -1, ON, WORKER, .sealed = 1,
            GET, HERE, THEIRS(3)),
        ROW("on: here-GET on a peer relay to the core", PC_ROUTE_SERVE_HERE, 0, -1, ON,
            CORE_LOOP, .sealed = 1, GET, HERE, THEIRS(3)),
        /* for the owner nothing changes */
        ROW("on: here-GET of ours homed elsewhere: hit here, else its home", PC_ROUTE_HOME, 1, 2,
            ON, WORKER, GET, HERE, OURS_HOMED_AT(2)),
        ROW("on: here-GET of ours homed here", PC_ROUTE_SERVE, 0, -1, ON, WORKER, GET, HERE,
            OURS_HOMED_HERE(1)),
        /* `here` is a GET's alone: on a write it changes nothing */
        ROW("on: SET of another member's key, here set", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, SET,
            HERE, THEIRS(3)),
        ROW("on: DEL of a key we replicate, here set", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, DEL,
            HERE, REPLICA_OF(3)),
        ROW("on: MGET, here set", PC_ROUTE_SPLIT, 0, -1, ON, WORKER, MGET, HERE, .target = -1),
        /* "MGET | split on the loop that read it" */
        ROW("on: MGET", PC_ROUTE_SPLIT, 0, -1, ON, WORKER, MGET, .target = -1),
        ROW("on: MGET, on the core", PC_ROUTE_SPLIT, 0, -1, ON, CORE_LOOP, MGET, .target = -1),
        ROW("on, memory-only: MGET", PC_ROUTE_SPLIT, 0, -1, ON_MEM, WORKER, MGET, .target = -1),
        /* "a peer's FORWARD of a single key this node owns | relayed to the
         * key's home, FORWARD and hops and all" (whole: no hit first) */
        ROW("on: peer's FORWARD of GET of ours homed elsewhere", PC_ROUTE_HOME, 0, 2, ON, WORKER,
            PEER, GET, OURS_HOMED_AT(2)),
        ROW("on: peer's FORWARD of SET of ours homed elsewhere", PC_ROUTE_HOME, 0, 2, ON, WORKER,
            PEER, SET, OURS_HOMED_AT(2)),
        ROW("on: peer's FORWARD of DEL of ours homed elsewhere, on the core", PC_ROUTE_HOME, 0,
            2, ON, CORE_LOOP, PEER, DEL, OURS_HOMED_AT(2)),
        ROW("on: peer's FORWARD of GET of ours homed here", PC_ROUTE_SERVE, 0, -1, ON, WORKER,
            PEER, GET, OURS_HOMED_HERE(1)),
        ROW("on: peer's FORWARD of SET of ours homed here", PC_ROUTE_SERVE, 0, -1, ON, WORKER,
            PEER, SET, OURS_HOMED_HERE(1)),
        /* "(a peer's forwarded MGET goes to the home as a FORWARD, hops
         * kept)": split here, key by key (pc_route_mget_key) */
        ROW("on: peer's FORWARD of MGET", PC_ROUTE_SPLIT, 0, -1, ON, WORKER, PEER, MGET,
            .target = -1),
        ROW("on: peer's FORWARD of MGET, on the core", PC_ROUTE_SPLIT, 0, -1, ON, CORE_LOOP,
            PEER, MGET, .target = -1),
        /* (an MGET's facts have no key: the key fields play no part) */
        ROW("on: peer's FORWARD of MGET, whatever the key fields", PC_ROUTE_SPLIT, 0, -1, ON,
            WORKER, PEER, MGET, OURS_HOMED_AT(2)),
        ROW("on: MGET, whatever the key fields", PC_ROUTE_SPLIT, 0, -1, ON, WORKER, MGET,
            OURS_HOMED_AT(2)),
        /* a member's FORWARD is served here, never sent on: a write not
         * ours is RETRY_RING, a read SERVE_HERE */
        ROW("on: peer's FORWARD of SET not ours", PC_ROUTE_RETRY_RING, 0, -1, ON, WORKER, PEER,
            SET, THEIRS(3)),
        ROW("on: peer's FORWARD of DEL not ours, we replicate", PC_ROUTE_RETRY_RING, 0, -1, ON,
            WORKER, PEER, DEL, REPLICA_OF(3)),
        ROW("on: peer's FORWARD of TOUCH not ours, on the core", PC_ROUTE_RETRY_RING, 0, -1, ON,
            CORE_LOOP, PEER, TOUCH, THEIRS(3)),
        ROW("on: peer's FORWARD of GET not ours", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER, PEER,
            GET, THEIRS(3)),
        ROW("on: peer's FORWARD of GET, we replicate", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER,
            PEER, GET, REPLICA_OF(3)),
        ROW("on: hops 2 (relayed twice), SET not ours", PC_ROUTE_RETRY_RING, 0, -1, ON, WORKER,
            .hops = 2, .sealed = 1, SET, THEIRS(3)),
        /* "a write whose key's Redis traffic is another loop's is
         * RETRY_HOME": the ring says ours, but it reached a loop that is
         * not its home by a way that does not relay it there */
        ROW("on: peer's SET of ours, gate not yet, homed elsewhere", PC_ROUTE_RETRY_HOME, 0, -1,
            ON, WORKER, PEER, SET, .owns = 0, .role = PC_ROLE_OWNER, .target = -1, .home = 2),
        ROW("on: client SET, gate not yet ours, ring ours, homed elsewhere", PC_ROUTE_RETRY_HOME,
            0, -1, ON, WORKER, SET, .owns = 0, .role = PC_ROLE_OWNER, .target = -1, .home = 2),
        ROW("on: SET of ours homed elsewhere on a peer relay to the core", PC_ROUTE_RETRY_HOME,
            0, -1, ON, CORE_LOOP, .sealed = 1, SET, OURS_HOMED_AT(2)),
        ROW("on: DEL of ours homed elsewhere on a peer relay to the core", PC_ROUTE_RETRY_HOME,
            0, -1, ON, CORE_LOOP, .sealed = 1, DEL, OURS_HOMED_AT(2)),
        /* ... but a read is served, and so is a write where the traffic is
         * not another loop's */
        ROW("on: GET of ours homed elsewhere on a peer relay to the core", PC_ROUTE_SERVE, 0, -1,
            ON, CORE_LOOP, .sealed = 1, GET, OURS_HOMED_AT(2)),
        ROW("on, memory-only: SET, peer relay to the core", PC_ROUTE_SERVE, 0, -1, ON_MEM,
            CORE_LOOP, .sealed = 1, SET, OURS_HOMED_AT(2)),
        ROW("on, homed but no Redis: SET, peer relay to the core", PC_ROUTE_SERVE, 0, -1,
            .several = 1, .homes = 1, .homed = 1, .has_backend = 0, CORE_LOOP, .sealed = 1, SET,
            OURS_HOMED_AT(2)),
        ROW("on, not homed: SET, peer relay to the core", PC_ROUTE_SERVE, 0, -1, .several = 1,
            .homes = 1, .homed = 0, .has_backend = 1, CORE_LOOP, .sealed = 1, SET,
            OURS_HOMED_AT(2)),
    };
    check_rows(rows, sizeof rows / sizeof rows[0], pc_route_decide);
}

static void test_decide_homes_off(void **state)
{
    (void)state;
    static const route_row_t rows[] = {
        /* "Homes off ... the workers answer valid hits and relay the rest to
         * the core"; "a GET of a slot we own answers a valid hit here (LOCAL
         * on a memory-only node), everything else goes to the core" */
        ROW("off, worker: GET of ours: hit here, else the core", PC_ROUTE_CORE, 1, -1, OFF,
            WORKER, GET, OURS_HOMED_AT(2)),
        ROW("off, worker: GET of ours homed here: hit here, else the core", PC_ROUTE_CORE, 1, -1,
            OFF, WORKER, GET, OURS_HOMED_HERE(1)),
        ROW("off, worker: GET, alone (the gate)", PC_ROUTE_CORE, 1, -1, OFF, WORKER, GET,
            .alone = 1, .owns = 0, .role = PC_ROLE_OWNER, .target = -1),
        ROW("off, worker, memory-only: GET of ours", PC_ROUTE_LOCAL, 0, -1, OFF_MEM, WORKER, GET,
            OURS_HOMED_HERE(1)),
        ROW("off, worker: GET not ours", PC_ROUTE_CORE, 0, -1, OFF, WORKER, GET, THEIRS(3)),
        ROW("off, worker: GET not ours, nobody to ask", PC_ROUTE_CORE, 0, -1, OFF, WORKER, GET,
            THEIRS(-1)),
        ROW("off, worker: GET not ours by the gate, ours by the ring", PC_ROUTE_CORE, 0, -1, OFF,
            WORKER, GET, .owns = 0, .role = PC_ROLE_OWNER, .target = -1),
        ROW("off, worker, memory-only: GET not ours", PC_ROUTE_CORE, 0, -1, OFF_MEM, WORKER, GET,
            THEIRS(3)),
        ROW("off, worker: SET of ours", PC_ROUTE_CORE, 0, -1, OFF, WORKER, SET,
            OURS_HOMED_HERE(1)),
        ROW("off, worker: DEL not ours", PC_ROUTE_CORE, 0, -1, OFF, WORKER, DEL, THEIRS(3)),
        ROW("off, worker, memory-only: SET, not settled", PC_ROUTE_CORE, 0, -1, OFF_MEM, WORKER,
            SET, OURS_HOMED_HERE(1), .alone = 1, .local_writes = 0),
        /* LOCAL: "writes when the node is alone and settled" */
        ROW("off, worker, memory-only: SET, local writes", PC_ROUTE_LOCAL, 0, -1, OFF_MEM, WORKER,
            SET, OURS_HOMED_HERE(1), .alone = 1, .local_writes = 1),
        ROW("off, worker, memory-only: DEL, local writes", PC_ROUTE_LOCAL, 0, -1, OFF_MEM, WORKER,
            DEL, OURS_HOMED_HERE(1), .alone = 1, .local_writes = 1),
        ROW("off, worker, memory-only: TOUCH, local writes", PC_ROUTE_LOCAL, 0, -1, OFF_MEM,
            WORKER, TOUCH, OURS_HOMED_HERE(1), .alone = 1, .local_writes = 1),
        /* MGET: with Redis behind, the core's; memory-only, LOCAL ("from the
         * store by the gate ...; what it cannot, to the core") */
        ROW("off, worker: MGET", PC_ROUTE_CORE, 0, -1, OFF, WORKER, MGET, .target = -1),
        ROW("off, worker, memory-only: MGET", PC_ROUTE_LOCAL, 0, -1, OFF_MEM, WORKER, MGET,
            .target = -1),
        /* "a connection's requests follow a relayed write to the core until
         * it is answered" */
        ROW("off, worker: GET of ours after a write at the core", PC_ROUTE_CORE, 0, -1, OFF,
            WORKER, GET, OURS_HOMED_HERE(1), .relayed_writes = 1),
        ROW("off, worker, memory-only: GET of ours after a write at the core", PC_ROUTE_CORE, 0,
            -1, OFF_MEM, WORKER, GET, OURS_HOMED_HERE(1), .relayed_writes = 1),
        ROW("off, worker, memory-only: SET, local writes, after a write at the core",
            PC_ROUTE_CORE, 0, -1, OFF_MEM, WORKER, SET, OURS_HOMED_HERE(1), .alone = 1,
            .local_writes = 1, .relayed_writes = 1),
        ROW("off, worker, memory-only: MGET after a write at the core", PC_ROUTE_CORE, 0, -1,
            OFF_MEM, WORKER, MGET, .target = -1, .relayed_writes = 1),
        /* a peer's connection on a worker: the core's */
        ROW("off, worker: GET of ours on a peer's connection", PC_ROUTE_CORE, 0, -1, OFF, WORKER,
            .sealed = 1, GET, OURS_HOMED_HERE(1)),
        ROW("off, worker, memory-only: SET on a peer's connection, local writes", PC_ROUTE_CORE,
            0, -1, OFF_MEM, WORKER, .sealed = 1, SET, OURS_HOMED_HERE(1), .alone = 1,
            .local_writes = 1),
        /* "while they are off, a worker sends [a member's FORWARD] to the core" */
        ROW("off, worker: peer's FORWARD of GET of ours", PC_ROUTE_CORE, 0, -1, OFF, WORKER, PEER,
            GET, OURS_HOMED_HERE(1)),
        ROW("off, worker: peer's FORWARD of SET not ours", PC_ROUTE_CORE, 0, -1, OFF, WORKER,
            PEER, SET, THEIRS(3)),
        ROW("off, worker: peer's FORWARD of MGET", PC_ROUTE_CORE, 0, -1, OFF, WORKER, PEER, MGET,
            .target = -1),
        ROW("off, worker, memory-only: peer's FORWARD of GET of ours", PC_ROUTE_CORE, 0, -1,
            OFF_MEM, WORKER, PEER, GET, OURS_HOMED_HERE(1)),
        /* a here-GET on a worker goes as a GET does: not ours, to the core
         * (relayed, `here` and all); ours, a hit here first */
        ROW("off, worker: here-GET not ours", PC_ROUTE_CORE, 0, -1, OFF, WORKER, GET, HERE,
            THEIRS(3)),
        ROW("off, worker: here-GET of a key we replicate", PC_ROUTE_CORE, 0, -1, OFF, WORKER, GET,
            HERE, REPLICA_OF(3)),
        ROW("off, worker: here-GET of ours: hit here, else the core", PC_ROUTE_CORE, 1, -1, OFF,
            WORKER, GET, HERE, OURS_HOMED_AT(2)),
        ROW("off, worker, memory-only: here-GET of ours", PC_ROUTE_LOCAL, 0, -1, OFF_MEM, WORKER,
            GET, HERE, OURS_HOMED_HERE(1)),
        ROW("off, worker, memory-only: here-GET not ours", PC_ROUTE_CORE, 0, -1, OFF_MEM, WORKER,
            GET, HERE, THEIRS(3)),

        /* "On the core (or a node of one loop): served here as owner, or as
         * not-owner (SERVE_HERE / FORWARD as the ring says)" */
        ROW("off, core: GET of ours", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP, GET,
            OURS_HOMED_AT(2)),
        ROW("off, core: SET of ours homed elsewhere (homes off: the core's)", PC_ROUTE_SERVE, 0,
            -1, OFF, CORE_LOOP, SET, OURS_HOMED_AT(2)),
        ROW("off, core: DEL of ours", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP, DEL,
            OURS_HOMED_HERE(0)),
        ROW("off, core: GET another member's key", PC_ROUTE_FORWARD, 0, 3, OFF, CORE_LOOP, GET,
            THEIRS(3)),
        ROW("off, core: GET a key we replicate, owner fine", PC_ROUTE_FORWARD, 0, 3, OFF,
            CORE_LOOP, GET, REPLICA_OF(3)),
        ROW("off, core: GET a key we replicate, owner suspect", PC_ROUTE_SERVE_HERE, 0, -1, OFF,
            CORE_LOOP, GET, REPLICA_OF(-1)),
        ROW("off, core: GET another's key, nobody to ask", PC_ROUTE_SERVE_HERE, 0, -1, OFF,
            CORE_LOOP, GET, THEIRS(-1)),
        ROW("off, core: SET another member's key", PC_ROUTE_FORWARD, 0, 3, OFF, CORE_LOOP, SET,
            THEIRS(3)),
        ROW("off, core: TOUCH a key we replicate", PC_ROUTE_FORWARD, 0, 3, OFF, CORE_LOOP, TOUCH,
            REPLICA_OF(3)),
        ROW("off, core: MGET", PC_ROUTE_SPLIT, 0, -1, OFF, CORE_LOOP, MGET, .target = -1),
        ROW("off, core: GET relayed by a worker (sealed peer relay)", PC_ROUTE_SERVE, 0, -1, OFF,
            CORE_LOOP, .sealed = 1, GET, OURS_HOMED_HERE(0)),
        ROW("off, core: peer's FORWARD of GET of ours", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP,
            PEER, GET, OURS_HOMED_AT(2)),
        ROW("off, core: peer's FORWARD of SET of ours", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP,
            PEER, SET, OURS_HOMED_AT(2)),
        ROW("off, core: peer's FORWARD of GET not ours", PC_ROUTE_SERVE_HERE, 0, -1, OFF,
            CORE_LOOP, PEER, GET, THEIRS(3)),
        ROW("off, core: peer's FORWARD of SET not ours", PC_ROUTE_RETRY_RING, 0, -1, OFF,
            CORE_LOOP, PEER, SET, THEIRS(3)),
        ROW("off, core: peer's FORWARD of MGET", PC_ROUTE_SPLIT, 0, -1, OFF, CORE_LOOP, PEER,
            MGET, .target = -1),
        /* ... where a here-GET of a key not ours is served as not-owner */
        ROW("off, core: here-GET another member's key", PC_ROUTE_SERVE_HERE, 0, -1, OFF,
            CORE_LOOP, GET, HERE, THEIRS(3)),
        ROW("off, core: here-GET a key we replicate, owner fine", PC_ROUTE_SERVE_HERE, 0, -1, OFF,
            CORE_LOOP, GET, HERE, REPLICA_OF(3)),
        ROW("off, core: here-GET relayed by a worker (sealed peer relay)", PC_ROUTE_SERVE_HERE, 0,
            -1, OFF, CORE_LOOP, .sealed = 1, GET, HERE, REPLICA_OF(3)),
        ROW("off, core: here-GET of ours", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP, GET, HERE,
            OURS_HOMED_AT(2)),
        ROW("off, core: TOUCH a key we replicate, here set", PC_ROUTE_FORWARD, 0, 3, OFF,
            CORE_LOOP, TOUCH, HERE, REPLICA_OF(3)),

        /* a node of one loop */
        ROW("one loop: GET of ours", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, GET,
            OURS_HOMED_HERE(0)),
        ROW("one loop: SET of ours", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, SET,
            OURS_HOMED_HERE(0)),
        ROW("one loop: GET another member's key", PC_ROUTE_FORWARD, 0, 3, ONE_LOOP, CORE_LOOP,
            GET, THEIRS(3)),
        ROW("one loop: GET another's key, nobody to ask", PC_ROUTE_SERVE_HERE, 0, -1, ONE_LOOP,
            CORE_LOOP, GET, THEIRS(-1)),
        ROW("one loop: DEL another member's key", PC_ROUTE_FORWARD, 0, 3, ONE_LOOP, CORE_LOOP,
            DEL, THEIRS(3)),
        ROW("one loop: MGET", PC_ROUTE_SPLIT, 0, -1, ONE_LOOP, CORE_LOOP, MGET, .target = -1),
        ROW("one loop: peer's FORWARD of SET not ours", PC_ROUTE_RETRY_RING, 0, -1, ONE_LOOP,
            CORE_LOOP, PEER, SET, THEIRS(3)),
        ROW("one loop: peer's FORWARD of GET not ours", PC_ROUTE_SERVE_HERE, 0, -1, ONE_LOOP,
            CORE_LOOP, PEER, GET, THEIRS(3)),
        ROW("one loop: peer's FORWARD of SET of ours", PC_ROUTE_SERVE, 0, -1, ONE_LOOP,
            CORE_LOOP, PEER, SET, OURS_HOMED_HERE(0)),
        ROW("one loop, no cluster: SET", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, SET,
            .alone = 1, .owns = 1, .role = PC_ROLE_OWNER, .target = -1),
        ROW("one loop: here-GET another member's key", PC_ROUTE_SERVE_HERE, 0, -1, ONE_LOOP,
            CORE_LOOP, GET, HERE, THEIRS(3)),
        ROW("one loop: here-GET a key we replicate", PC_ROUTE_SERVE_HERE, 0, -1, ONE_LOOP,
            CORE_LOOP, GET, HERE, REPLICA_OF(3)),
        ROW("one loop: here-GET of ours", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, GET, HERE,
            OURS_HOMED_HERE(0)),
        ROW("one loop: peer's FORWARD of a here-GET not ours", PC_ROUTE_SERVE_HERE, 0, -1,
            ONE_LOOP, CORE_LOOP, PEER, GET, HERE, THEIRS(3)),
        ROW("one loop: SET another member's key, here set", PC_ROUTE_FORWARD, 0, 3, ONE_LOOP,
            CORE_LOOP, SET, HERE, THEIRS(3)),
    };
    check_rows(rows, sizeof rows / sizeof rows[0], pc_route_decide);
}

static void test_decide_other_ops(void **state)
{
    (void)state;
    /* "STATS, CLUSTER, SYNC, a hand-off, and unknown operations go to the
     * core; a worker applies a REPLICATE of writes itself while homes are
     * on (LOCAL), else it goes to the core. HELLO and PING anywhere." */
    static const route_row_t rows[] = {
        ROW("HELLO on a worker", PC_ROUTE_SERVE, 0, -1, ON, WORKER, .op = PC_OP_HELLO,
            .target = -1),
        ROW("HELLO on a worker, homes off", PC_ROUTE_SERVE, 0, -1, OFF, WORKER,
            .op = PC_OP_HELLO, .target = -1),
        ROW("HELLO on a peer's connection", PC_ROUTE_SERVE, 0, -1, OFF, WORKER, .sealed = 1,
            .op = PC_OP_HELLO, .target = -1),
        ROW("HELLO after a write at the core", PC_ROUTE_SERVE, 0, -1, OFF, WORKER,
            .relayed_writes = 1, .op = PC_OP_HELLO, .target = -1),
        ROW("HELLO on the core", PC_ROUTE_SERVE, 0, -1, ON, CORE_LOOP, .op = PC_OP_HELLO,
            .target = -1),
        ROW("PING on a worker", PC_ROUTE_SERVE, 0, -1, ON, WORKER, .op = PC_OP_PING,
            .target = -1),
        ROW("PING on a worker, homes off", PC_ROUTE_SERVE, 0, -1, OFF, WORKER, .op = PC_OP_PING,
            .target = -1),
        ROW("PING on the core", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP, .op = PC_OP_PING,
            .target = -1),
        ROW("PING, one loop", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, .op = PC_OP_PING,
            .target = -1),

        ROW("STATS on a worker", PC_ROUTE_CORE, 0, -1, ON, WORKER, .op = PC_OP_STATS,
            .target = -1),
        ROW("STATS on a worker, homes off", PC_ROUTE_CORE, 0, -1, OFF, WORKER, .op = PC_OP_STATS,
            .target = -1),
        ROW("STATS on the core", PC_ROUTE_SERVE, 0, -1, ON, CORE_LOOP, .op = PC_OP_STATS,
            .target = -1),
        ROW("STATS, one loop", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, .op = PC_OP_STATS,
            .target = -1),
        ROW("CLUSTER on a worker", PC_ROUTE_CORE, 0, -1, ON, WORKER, .op = PC_OP_CLUSTER,
            .target = -1),
        ROW("CLUSTER on the core", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP, .op = PC_OP_CLUSTER,
            .target = -1),
        ROW("SYNC on a worker (peer's connection)", PC_ROUTE_CORE, 0, -1, ON, WORKER, .sealed = 1,
            .op = PC_OP_SYNC, .target = -1),
        ROW("SYNC on the core", PC_ROUTE_SERVE, 0, -1, ON, CORE_LOOP, .sealed = 1,
            .op = PC_OP_SYNC, .target = -1),
        ROW("unknown op 0 on a worker", PC_ROUTE_CORE, 0, -1, ON, WORKER, .op = 0, .target = -1),
        ROW("unknown op 99 on a worker", PC_ROUTE_CORE, 0, -1, OFF, WORKER, .op = 99,
            .target = -1),
        ROW("unknown op 99 on the core", PC_ROUTE_SERVE, 0, -1, ON, CORE_LOOP, .op = 99,
            .target = -1),

        ROW("REPLICATE of writes on a worker, homes on", PC_ROUTE_LOCAL, 0, -1, ON, WORKER,
            .sealed = 1, .op = PC_OP_REPLICATE, .repl_write = 1, .target = -1),
        ROW("REPLICATE of writes on a worker, homes on, memory-only", PC_ROUTE_LOCAL, 0, -1,
            ON_MEM, WORKER, .sealed = 1, .op = PC_OP_REPLICATE, .repl_write = 1, .target = -1),
        ROW("REPLICATE of writes on a worker, homes off", PC_ROUTE_CORE, 0, -1, OFF, WORKER,
            .sealed = 1, .op = PC_OP_REPLICATE, .repl_write = 1, .target = -1),
        ROW("REPLICATE hand-off on a worker, homes on", PC_ROUTE_CORE, 0, -1, ON, WORKER,
            .sealed = 1, .op = PC_OP_REPLICATE, .repl_write = 0, .target = -1),
        ROW("REPLICATE hand-off on a worker, homes off", PC_ROUTE_CORE, 0, -1, OFF, WORKER,
            .sealed = 1, .op = PC_OP_REPLICATE, .repl_write = 0, .target = -1),
        ROW("REPLICATE of writes on the core, homes on", PC_ROUTE_SERVE, 0, -1, ON, CORE_LOOP,
            .sealed = 1, .op = PC_OP_REPLICATE, .repl_write = 1, .target = -1),
        ROW("REPLICATE hand-off on the core", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP, .sealed = 1,
            .op = PC_OP_REPLICATE, .repl_write = 0, .target = -1),
        ROW("REPLICATE, one loop", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, .sealed = 1,
            .op = PC_OP_REPLICATE, .repl_write = 1, .target = -1),
    };
    check_rows(rows, sizeof rows / sizeof rows[0], pc_route_decide);
}

static void test_mget_key(void **state)
{
    (void)state;
    /* The facts as for a GET of the key. "SERVE (look it up, a miss read
     * through here), HOME with hits_first (a miss read through on its home
     * loop), FORWARD, or SERVE_HERE" -- and the homes-on table's MGET row:
     * "hits answered there, misses of its home keys read through there,
     * the misses of each other home sent to that home ..., other members'
     * keys forwarded". */
    static const route_row_t rows[] = {
        ROW("mget: ours homed here", PC_ROUTE_SERVE, 0, -1, ON, WORKER, GET,
            OURS_HOMED_HERE(1)),
        ROW("mget: ours homed here, on the core", PC_ROUTE_SERVE, 0, -1, ON, CORE_LOOP, GET,
            OURS_HOMED_HERE(0)),
        ROW("mget: ours homed elsewhere", PC_ROUTE_HOME, 1, 2, ON, WORKER, GET, OURS_HOMED_AT(2)),
        ROW("mget: ours homed on the core", PC_ROUTE_HOME, 1, 0, ON, WORKER, GET,
            OURS_HOMED_AT(0)),
        ROW("mget: ours homed elsewhere, on the core", PC_ROUTE_HOME, 1, 2, ON, CORE_LOOP, GET,
            OURS_HOMED_AT(2)),
        ROW("mget: peer's MGET, ours homed elsewhere", PC_ROUTE_HOME, 1, 2, ON, WORKER, PEER, GET,
            OURS_HOMED_AT(2)),
        ROW("mget: ours homed elsewhere, homes off", PC_ROUTE_SERVE, 0, -1, OFF, CORE_LOOP, GET,
            OURS_HOMED_AT(2)),
        ROW("mget: ours, homes on, memory-only", PC_ROUTE_SERVE, 0, -1, ON_MEM, WORKER, GET,
            OURS_HOMED_HERE(1)),
        ROW("mget: ours homed elsewhere but no Redis", PC_ROUTE_SERVE, 0, -1, .several = 1,
            .homes = 1, .homed = 1, .has_backend = 0, WORKER, GET, OURS_HOMED_AT(2)),
        ROW("mget: ours, not homed", PC_ROUTE_SERVE, 0, -1, .several = 1, .homes = 1, .homed = 0,
            .has_backend = 1, WORKER, GET, OURS_HOMED_AT(2)),
        ROW("mget: ours, one loop", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, GET,
            OURS_HOMED_HERE(0)),
        ROW("mget: another member's key", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, GET, THEIRS(3)),
        ROW("mget: another member's key, homes off", PC_ROUTE_FORWARD, 0, 3, OFF, CORE_LOOP, GET,
            THEIRS(3)),
        ROW("mget: a key we replicate, owner fine", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, GET,
            REPLICA_OF(3)),
        ROW("mget: another's key, homed here", PC_ROUTE_FORWARD, 0, 3, ON, WORKER, GET,
            .owns = 0, .role = PC_ROLE_NONE, .target = 3, .home = 1),
        ROW("mget: a key we replicate, owner suspect", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER,
            GET, REPLICA_OF(-1)),
        ROW("mget: another's key, nobody to ask", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER, GET,
            THEIRS(-1)),
        ROW("mget: peer's MGET, another's key", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER, PEER, GET,
            THEIRS(3)),
        ROW("mget: peer's MGET, a key we replicate", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER, PEER,
            GET, REPLICA_OF(3)),
        ROW("mget: peer's MGET, another's key, one loop", PC_ROUTE_SERVE_HERE, 0, -1, ONE_LOOP,
            CORE_LOOP, PEER, GET, THEIRS(3)),
        /* an MGET that says `here` (PROTOCOL.md §5.4): its keys of other
         * members are served here, as a here-GET's; its own go as ever */
        ROW("mget here: another member's key", PC_ROUTE_SERVE_HERE, 0, -1, ON, WORKER, GET,
            HERE, THEIRS(3)),
        ROW("mget here: a key we replicate", PC_ROUTE_SERVE_HERE, 0, -1, ON, CORE_LOOP, GET,
            HERE, REPLICA_OF(3)),
        ROW("mget here: another member's key, homes off", PC_ROUTE_SERVE_HERE, 0, -1, OFF,
            CORE_LOOP, GET, HERE, THEIRS(3)),
        ROW("mget here: ours homed elsewhere", PC_ROUTE_HOME, 1, 2, ON, WORKER, GET, HERE,
            OURS_HOMED_AT(2)),
        ROW("mget here: ours, one loop", PC_ROUTE_SERVE, 0, -1, ONE_LOOP, CORE_LOOP, GET, HERE,
            OURS_HOMED_HERE(0)),
    };
    check_rows(rows, sizeof rows / sizeof rows[0], pc_route_mget_key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_place_owner_first), cmocka_unit_test(test_place_no_ring),
        cmocka_unit_test(test_target),            cmocka_unit_test(test_decide_homes_on),
        cmocka_unit_test(test_decide_homes_off),  cmocka_unit_test(test_decide_other_ops),
        cmocka_unit_test(test_mget_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
