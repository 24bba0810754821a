/*
 * test_slots.c -- pc_slots_diff, the slot diff of a ring change, for every
 * pair of roles (NONE, OWNER, REPLICA on the old and the new ring), with
 * joining 0/1 and memory_only 0/1, against the rules of node/pc_slots.h:
 *
 *   GAINED    became the owner (unless a replica promoted on a
 *             memory-only node: it keeps its copy, all there is), or a
 *             replica from nothing; joining (was alone, now has company):
 *             every slot it keeps is gained, whatever its role;
 *   HAND_OFF  no longer its owner: hand its keys over (what the
 *             hand-off plan then does with them is test_handoff's);
 *   PURGE     a replica no more: drop its copies. Never with HAND_OFF.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "pc_route.h"
#include "pc_slots.h"

#define NONE PC_ROLE_NONE
#define OWNER PC_ROLE_OWNER
#define REPLICA PC_ROLE_REPLICA
#define G PC_SLOT_GAINED
#define H PC_SLOT_HAND_OFF
#define P PC_SLOT_PURGE
#define ALL (G | H | P)

static const char *role_name(unsigned r)
{
    return r == OWNER ? "OWNER" : r == REPLICA ? "REPLICA" : r == NONE ? "NONE" : "?";
}

typedef struct {
    unsigned ro, rn;
    /* the flags for (joining, memory_only) = (0,0), (0,1), (1,0), (1,1) */
    unsigned want[4];
    unsigned care; /* the flags checked (ALL but where noted) */
} diff_row_t;

static const diff_row_t rows[] = {
    /* no place before or after: nothing */
    {NONE, NONE, {0, 0, 0, 0}, ALL},
    /* from nothing to owner or replica: gained, whatever else */
    {NONE, OWNER, {G, G, G, G}, ALL},
    {NONE, REPLICA, {G, G, G, G}, ALL},
    /* owner stays owner: nothing, but joining gains every slot kept */
    {OWNER, OWNER, {0, 0, G, G}, ALL},
    /* owner demoted to replica: hand off (and gained when joining) */
    {OWNER, REPLICA, {H, H, G | H, G | H}, ALL},
    /* owner to nothing: hand-off alone */
    {OWNER, NONE, {H, H, H, H}, ALL},
    /* replica promoted: gained with Redis behind (its copy may lack the
     * dead owner's last writes), not on a memory-only node (its copy is
     * all there is) -- unless joining, which gains every slot kept */
    {REPLICA, OWNER, {G, 0, G, G}, ALL},
    /* replica stays replica: nothing, but joining gains it */
    {REPLICA, REPLICA, {0, 0, G, G}, ALL},
    /* replica to nothing: purge */
    {REPLICA, NONE, {P, P, P, P}, ALL},
};

static void test_diff_every_combination(void **state)
{
    (void)state;
    size_t bad = 0, checked = 0;
    unsigned covered = 0; /* (ro, rn) pairs seen, as bits ro * 3 + rn */
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const diff_row_t *w = &rows[i];
        covered |= 1u << (w->ro * 3 + w->rn);
        for (int joining = 0; joining <= 1; joining++) {
            for (int mem = 0; mem <= 1; mem++) {
                unsigned want = w->want[joining * 2 + mem];
                unsigned got = pc_slots_diff(w->ro, w->rn, joining, mem);
                checked++;
                if ((got & w->care) != (want & w->care) || (got & ~ALL) != 0) {
                    print_error("%s -> %s, joining %d, memory_only %d: flags %#x, expected %#x "
                                "(checked %#x)\n",
                                role_name(w->ro), role_name(w->rn), joining, mem, got, want,
                                w->care);
                    bad++;
                }
            }
        }
    }
    assert_int_equal(covered, (1u << 9) - 1); /* all nine pairs */
    assert_int_equal(checked, 36);
    if (bad > 0)
        fail_msg("%zu of %zu combinations differ", bad, checked);
}

/* The rules one by one over all 36 combinations, as properties. */
static void test_diff_rules(void **state)
{
    (void)state;
    const unsigned roles[] = {NONE, OWNER, REPLICA};
    for (size_t a = 0; a < 3; a++) {
        for (size_t b = 0; b < 3; b++) {
            unsigned ro = roles[a], rn = roles[b];
            for (int joining = 0; joining <= 1; joining++) {
                for (int mem = 0; mem <= 1; mem++) {
                    unsigned f = pc_slots_diff(ro, rn, joining, mem);
                    /* hand off exactly when it stops owning */
                    assert_int_equal(!!(f & H), ro == OWNER && rn != OWNER);
                    /* nothing is gained in a slot it has no place in */
                    if (rn == NONE)
                        assert_false(f & G);
                    /* joining: every slot it keeps is gained */
                    if (joining && rn != NONE)
                        assert_true(f & G);
                    /* a replica dropping out purges; a slot it is still in
                     * is never purged */
                    if (ro == REPLICA && rn == NONE)
                        assert_true(f & P);
                    if (rn != NONE)
                        assert_false(f & P);
                    /* hand-off and purge never come together */
                    assert_false((f & H) && (f & P));
                    /* nothing changes, nobody joins: nothing to do */
                    if (ro == rn && !joining)
                        assert_int_equal(f, 0);
                }
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff_every_combination),
        cmocka_unit_test(test_diff_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
