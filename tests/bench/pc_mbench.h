/*
 * pc_mbench.h -- what the micro-benchmarks under tests/bench share: a
 * monotonic clock, the load average they print beside their figures, and
 * the median of a set of rounds.
 *
 * Plain functions with no state: callable from any thread.
 */
#ifndef PC_MBENCH_H
#define PC_MBENCH_H

#include <stddef.h>

/* CLOCK_MONOTONIC, in seconds. */
double pc_mbench_now_s(void);

/* The 1-minute load average from /proc/loadavg (printed beside timings,
 * to judge how noisy they are), or -1 if it cannot be read. */
double pc_mbench_loadavg(void);

/* qsort comparator for doubles, ascending. */
int pc_mbench_cmp_double(const void *a, const void *b);

/* The median of v[0..n): the middle value, or the mean of the two middle
 * ones when n is even; 0 when n is 0. v is not changed (a sorted copy is
 * made; -1 if that copy cannot be allocated). */
double pc_mbench_median(const double *v, size_t n);

#endif
