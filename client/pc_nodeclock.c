/*
 * pc_nodeclock.c -- a node's wall clock as a client knows it (pc_nodeclock.h).
 */
#include "pc_nodeclock.h"

#include <stdint.h>

void pc_nodeclock_measure(pc_nodeclock_t *nc, int64_t sent_wall_ms, int64_t back_wall_ms,
                          uint64_t node_now_ms)
{
    if (node_now_ms == 0 || node_now_ms > INT64_MAX || back_wall_ms < sent_wall_ms)
        return;
    /* The node read its clock somewhere within the round trip: the
     * offset is taken at its middle, and may be wrong by the other half.
     * Both the node's reading and ours are whole milliseconds, truncated,
     * each up to 1 ms behind: 2 ms more. (With 1, a write could be taken
     * up to 1.7 ms after the client gave up: tests/unit/test_nodeclock.c.) */
    int64_t half = (back_wall_ms - sent_wall_ms) / 2;
    nc->known = true;
    nc->off_ms = (int64_t)node_now_ms - (sent_wall_ms + half);
    nc->unc_ms = half + 2;
}

uint64_t pc_nodeclock_deadline(const pc_nodeclock_t *nc, int64_t wall_now_ms,
                               int64_t mono_now_ms, int64_t give_up_mono_ms)
{
    if (!nc->known)
        return 0;
    /* The two readings now are each up to 1 ms behind, and not by the same
     * amount: the give-up moment mapped through them can be up to 1 ms
     * late. That millisecond comes off too. */
    int64_t at = wall_now_ms + (give_up_mono_ms - mono_now_ms) + nc->off_ms - nc->unc_ms - 1;
    return at > 0 ? (uint64_t)at : 1;
}
