/*
 * pc_hist.h -- latency histograms: fixed buckets from 10 us to 10 s (1,
 * 2.5, 5 of each decade), counts, and the sum, in nanoseconds. One
 * histogram belongs to one thread (an event loop records into its own);
 * a reader on another thread gets a copy made on the owner's thread and
 * merges copies (pc_hist_merge). No locks, no atomics: recording is an
 * add to a counter the loop owns, as STATS counters are (pc_metrics.h).
 *
 * Pure: no I/O, no clock (the caller measures).
 */
#ifndef PC_HIST_H
#define PC_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"

#define PC_HIST_BOUNDS 19 /* finite upper bounds; one bucket more above them */

/* The upper bounds (inclusive), in ns: 10 us, 25 us, 50 us, ..., 10 s. */
extern const uint64_t pc_hist_bounds_ns[PC_HIST_BOUNDS];

typedef struct pc_hist {
    uint64_t bucket[PC_HIST_BOUNDS + 1]; /* not cumulative; the last: over 10 s */
    uint64_t count;
    uint64_t sum_ns;
} pc_hist_t;

/* n observations of ns each. */
static inline void pc_hist_add(pc_hist_t *h, uint64_t ns, uint64_t n)
{
    size_t i = 0;
    while (i < PC_HIST_BOUNDS && ns > pc_hist_bounds_ns[i])
        i++;
    h->bucket[i] += n;
    h->count += n;
    h->sum_ns += ns * n;
}

/* sum += x. */
void pc_hist_merge(pc_hist_t *sum, const pc_hist_t *x);

/*
 * Appends h as one Prometheus histogram series: name_bucket{labels,le=...}
 * (cumulative, le in seconds, up to "+Inf"), name_sum (seconds) and
 * name_count. `labels` is "" or `key="value",...` without braces. The
 * HELP and TYPE lines are the caller's (one per metric name). 0 or
 * PC_ENOMEM.
 */
int pc_hist_prometheus(pc_buf_t *out, const char *name, const char *labels, const pc_hist_t *h);

#endif
