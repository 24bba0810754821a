/*
 * pc_top.h -- what `peercache-cli top` shows, computed from STATS
 * readings: per node, requests per second, hit ratio, memory used of its
 * limit, connections, the state of its Redis connections, the 99th
 * percentile of its answer times and how busy its event loops were, each
 * over the time between two readings of the node's counters. Pure:
 * readings and times are inputs, the frame is text in a buffer; the
 * terminal and the network are peercache_cli_top.c's.
 */
#ifndef PC_TOP_H
#define PC_TOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_client.h"

#define PC_TOP_LAT 20 /* the lat_le_* fields of STATS, in order */

/* One reading of one node's STATS. */
typedef struct pc_top_sample {
    bool ok;         /* the node answered (the rest is valid) */
    uint64_t at_ms;  /* when it was taken (monotonic) */
    uint64_t requests, hits, misses, bytes, memory_limit, connections;
    uint64_t threads, loop_busy_us;
    bool has_busy;   /* the node sends loop_busy_us (older ones do not) */
    bool backend_enabled, backend_up;
    bool has_lat;    /* the node sends lat_le_* (older ones do not) */
    uint64_t lat[PC_TOP_LAT]; /* cumulative: answered within each bound; the last: all */
    int64_t lat_us[PC_TOP_LAT]; /* those bounds, from the fields' names (INT64_MAX: all) */
} pc_top_sample_t;

/* Picks the fields above from a STATS answer. */
void pc_top_sample_from_stats(const pc_stat_entry_t *st, size_t n, uint64_t at_ms,
                              pc_top_sample_t *out);

/* One node's line, over the time between two readings. */
typedef struct pc_top_row {
    bool rates;         /* two readings: ops_per_s, hit_pct and p99 are set */
    double ops_per_s;
    double hit_pct;     /* < 0: no reads in the interval */
    int64_t p99_us;     /* the bucket bound the 99th percentile is under;
                           -1: no operation timed; INT64_MAX: over 10 s */
    double busy_pct;    /* the loops' working time over their wall time,
                           averaged over the loops; < 0: not sent */
} pc_top_row_t;

void pc_top_row(const pc_top_sample_t *prev, const pc_top_sample_t *cur, pc_top_row_t *out);

/* A member as the frame shows it. */
typedef struct pc_top_node {
    const char *addr;
    const char *state;    /* "alive", "suspect" ... */
    const char *error;    /* why it did not answer STATS, or NULL */
    pc_top_sample_t cur;
    pc_top_row_t row;
} pc_top_node_t;

/*
 * The frame: a title line (members, ring fingerprint, the time, how to
 * quit), a header, and one line per node, each line at most `width`
 * columns. 0 or PC_ENOMEM.
 */
int pc_top_format(pc_buf_t *out, const pc_top_node_t *nodes, size_t n, uint64_t fingerprint,
                  const char *clock, int width);

#endif
