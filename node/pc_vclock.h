/*
 * pc_vclock.h -- the version clock of a node: the versions that order the
 * writes of a key's owner (docs/ARCHITECTURE.md "Versions").
 *
 * A version is wall-clock milliseconds in the high 48 bits and a counter
 * in the low 16, never going backwards on a node even if the wall clock
 * does; and raised past every version the node is shown by a peer (a
 * hybrid logical clock: a write here after a hand-off outranks the old
 * owner's). One clock serves every loop of the node.
 *
 * Pure: the wall clock is a parameter (pc_vclock_wall reads it), so the
 * tests need no sleeps. Thread-safe: one compare-and-swap per call, which
 * nobody contends with on a node of one loop.
 */
#ifndef PC_VCLOCK_H
#define PC_VCLOCK_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct pc_vclock {
    _Atomic uint64_t last;
} pc_vclock_t;

/*
 * How far ahead of this node's wall clock a version from a peer may be:
 * a minute (clocks that NTP keeps agree to milliseconds). The clock
 * follows every version it is shown, so one from far ahead -- 2^64 - 1
 * made the next write's version wrap to 0 -- would drag every later
 * version with it; such a version is refused instead.
 */
#define PC_VCLOCK_AHEAD_MAX ((uint64_t)60000 << 16)

/* The wall clock as a version: CLOCK_REALTIME milliseconds << 16. */
uint64_t pc_vclock_wall(void);

/* CLOCK_REALTIME in microseconds since the Unix epoch. */
int64_t pc_vclock_wall_us(void);

/* The wall-clock time (µs, Unix) at which a monotonic clock that reads
 * mono_now_us now will read mono_at_us: how a deadline kept on the loop's
 * clock (uv_now, uv_hrtime) is given to another machine (write deadlines,
 * docs/CONSISTENCY.md §1). */
int64_t pc_vclock_wall_at_us(int64_t mono_at_us, int64_t mono_now_us);

/* The next version, given the wall clock `wall` (pc_vclock_wall()):
 * above every version given or observed so far. */
uint64_t pc_vclock_next(pc_vclock_t *vc, uint64_t wall);

/* A peer's version v, seen at wall clock `wall`: the next version will be
 * above it. 1 = observed; 0 = v is more than PC_VCLOCK_AHEAD_MAX ahead
 * of `wall` (not observed: refuse what carries it). */
int pc_vclock_observe(pc_vclock_t *vc, uint64_t v, uint64_t wall);

#endif
