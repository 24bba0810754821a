/*
 * pc_nodeclock.h -- a node's wall clock as a client knows it, and a
 * write's deadline moved onto it (PROTOCOL.md §5.1, §5.5).
 *
 * HELLO's answer carries the node's wall clock (now_ms), read somewhere
 * within the round trip: the offset is taken at the round trip's middle,
 * and the uncertainty covers the rest of it. A write then carries the
 * moment its call gives up, on the node's clock, made earlier by all the
 * offset may be wrong by -- so that a node that applies a write only
 * before that moment (its clock read in whole milliseconds) never applies
 * it after the client has given up.
 *
 * Every clock reading is whole milliseconds, truncated: each may be up to
 * 1 ms behind the moment it stands for. The uncertainty counts that for
 * the node's reading and ours at HELLO, and pc_nodeclock_deadline takes
 * 1 ms more off for the two readings it converts with (wall and
 * monotonic, which can leave out different fractions of a millisecond).
 *
 * Pure: every clock is an argument. No allocation, no errors.
 */
#ifndef PC_NODECLOCK_H
#define PC_NODECLOCK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct pc_nodeclock {
    bool known;     /* false: the node sent no clock; writes carry no deadline */
    int64_t off_ms; /* the node's clock minus ours */
    int64_t unc_ms; /* what off_ms may be wrong by, at most */
} pc_nodeclock_t;

/* From one HELLO: our wall clock when it was sent and when its answer
 * came, and the node's now_ms (0 = not sent). A round trip that went
 * backwards (our clock was set back) teaches nothing: *nc is left. */
void pc_nodeclock_measure(pc_nodeclock_t *nc, int64_t sent_wall_ms, int64_t back_wall_ms,
                          uint64_t node_now_ms);

/* The deadline to send with a write: give_up_mono_ms (our monotonic clock)
 * on the node's wall clock, given our wall and monotonic clocks read now.
 * Earlier than the true moment by at least the offset's uncertainty and
 * the readings' truncation. 0 = none (the clock is not known); else at
 * least 1. */
uint64_t pc_nodeclock_deadline(const pc_nodeclock_t *nc, int64_t wall_now_ms,
                               int64_t mono_now_ms, int64_t give_up_mono_ms);

#endif
