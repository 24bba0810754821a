/*
 * pc_top.c -- the numbers and the frame of `peercache-cli top` (pc_top.h).
 */
#include "pc_top.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_error.h"

/* "lat_le_2500us" -> 2500; "lat_le_1s" -> 1000000; "lat_le_inf" ->
 * INT64_MAX; -1 if name is not such a field. */
static int64_t lat_bound_us(const char *name)
{
    static const char prefix[] = "lat_le_";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0)
        return -1;
    const char *p = name + sizeof prefix - 1;
    if (strcmp(p, "inf") == 0)
        return INT64_MAX;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p || v > 1000000000ull)
        return -1;
    if (strcmp(end, "us") == 0)
        return (int64_t)v;
    if (strcmp(end, "ms") == 0)
        return (int64_t)v * 1000;
    if (strcmp(end, "s") == 0)
        return (int64_t)v * 1000000;
    return -1;
}

void pc_top_sample_from_stats(const pc_stat_entry_t *st, size_t n, uint64_t at_ms,
                              pc_top_sample_t *out)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"requests", offsetof(pc_top_sample_t, requests)},
        {"hits", offsetof(pc_top_sample_t, hits)},
        {"misses", offsetof(pc_top_sample_t, misses)},
        {"bytes", offsetof(pc_top_sample_t, bytes)},
        {"memory_limit", offsetof(pc_top_sample_t, memory_limit)},
        {"connections", offsetof(pc_top_sample_t, connections)},
        {"threads", offsetof(pc_top_sample_t, threads)},
        {"loop_busy_us", offsetof(pc_top_sample_t, loop_busy_us)},
    };
    size_t nlat = 0;
    memset(out, 0, sizeof *out);
    out->ok = true;
    out->at_ms = at_ms;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = st[i].value < 0 ? 0 : (uint64_t)st[i].value;
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
            if (strcmp(st[i].name, fields[f].name) == 0)
                *(uint64_t *)(void *)((char *)out + fields[f].off) = v;
        }
        if (strcmp(st[i].name, "backend_enabled") == 0)
            out->backend_enabled = v != 0;
        else if (strcmp(st[i].name, "backend_up") == 0)
            out->backend_up = v != 0;
        else if (strcmp(st[i].name, "loop_busy_us") == 0)
            out->has_busy = true;
        int64_t b = lat_bound_us(st[i].name);
        if (b >= 0 && nlat < PC_TOP_LAT) {
            out->lat_us[nlat] = b;
            out->lat[nlat++] = v;
        }
    }
    out->has_lat = nlat == PC_TOP_LAT;
}

void pc_top_row(const pc_top_sample_t *prev, const pc_top_sample_t *cur, pc_top_row_t *out)
{
    memset(out, 0, sizeof *out);
    out->hit_pct = -1;
    out->p99_us = -1;
    out->busy_pct = -1;
    if (prev == NULL || !prev->ok || !cur->ok || cur->at_ms <= prev->at_ms ||
        cur->requests < prev->requests)
        return; /* no interval (or the node restarted: its counters began again) */
    out->rates = true;
    double secs = (double)(cur->at_ms - prev->at_ms) / 1000.0;
    out->ops_per_s = (double)(cur->requests - prev->requests) / secs;
    uint64_t hits = cur->hits - prev->hits, misses = cur->misses - prev->misses;
    if (hits + misses > 0)
        out->hit_pct = 100.0 * (double)hits / (double)(hits + misses);
    if (cur->has_busy && prev->has_busy && cur->threads > 0 &&
        cur->loop_busy_us >= prev->loop_busy_us)
        out->busy_pct = 100.0 * (double)(cur->loop_busy_us - prev->loop_busy_us) /
                        (secs * 1e6 * (double)cur->threads);
    if (!cur->has_lat || !prev->has_lat || memcmp(cur->lat_us, prev->lat_us, sizeof cur->lat_us))
        return;
    uint64_t all = cur->lat[PC_TOP_LAT - 1] - prev->lat[PC_TOP_LAT - 1];
    if (all == 0)
        return;
    /* The first bound within which 99% were answered. */
    for (size_t i = 0; i < PC_TOP_LAT; i++) {
        uint64_t within = cur->lat[i] - prev->lat[i];
        if ((double)within >= 0.99 * (double)all) {
            out->p99_us = cur->lat_us[i];
            return;
        }
    }
}

static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, len, "%.1fG", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, len, "%.1fM", (double)b / (double)(1ull << 20));
    else
        snprintf(buf, len, "%.0fK", (double)b / 1024.0);
}

static void fmt_p99(char *buf, size_t len, int64_t us)
{
    if (us < 0)
        snprintf(buf, len, "-");
    else if (us == INT64_MAX)
        snprintf(buf, len, ">10s");
    else if (us >= 1000000)
        snprintf(buf, len, "<=%gs", (double)us / 1e6);
    else if (us >= 1000)
        snprintf(buf, len, "<=%gms", (double)us / 1e3);
    else
        snprintf(buf, len, "<=%" PRId64 "us", us);
}

/* Appends one line, cut at width columns (the text is ASCII). */
static int put_line(pc_buf_t *out, const char *line, int width)
{
    size_t n = strlen(line);
    if (width > 0 && n > (size_t)width)
        n = (size_t)width;
    int rc = pc_buf_append(out, line, n);
    return rc == 0 ? pc_buf_append(out, "\n", 1) : rc;
}

int pc_top_format(pc_buf_t *out, const pc_top_node_t *nodes, size_t n, uint64_t fingerprint,
                  const char *clock, int width)
{
    char line[512];
    snprintf(line, sizeof line,
             "peercache top: %zu member%s, ring %016" PRIx64 ", %s (q quits)", n,
             n == 1 ? "" : "s", fingerprint, clock);
    int rc = put_line(out, line, width);
    snprintf(line, sizeof line, "%-22s %-8s %9s %6s %15s %6s %-5s %9s %5s", "NODE", "STATE",
             "OPS/S", "HIT%", "MEMORY", "CONNS", "REDIS", "P99", "BUSY%");
    if (rc == 0)
        rc = put_line(out, line, width);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const pc_top_node_t *t = &nodes[i];
        if (!t->cur.ok) {
            snprintf(line, sizeof line, "%-22s %-8s (no answer: %s)", t->addr, t->state,
                     t->error ? t->error : "?");
            rc = put_line(out, line, width);
            continue;
        }
        char ops[24] = "-", hit[16] = "-", used[16], lim[16], mem[40], p99[24] = "-";
        char busy[16] = "-";
        if (t->row.rates) {
            snprintf(ops, sizeof ops, "%.0f", t->row.ops_per_s);
            if (t->row.hit_pct >= 0)
                snprintf(hit, sizeof hit, "%.1f", t->row.hit_pct);
            if (t->row.busy_pct >= 0)
                snprintf(busy, sizeof busy, "%.0f", t->row.busy_pct);
            fmt_p99(p99, sizeof p99, t->row.p99_us);
        }
        fmt_bytes(used, sizeof used, t->cur.bytes);
        fmt_bytes(lim, sizeof lim, t->cur.memory_limit);
        snprintf(mem, sizeof mem, "%s/%s", used, lim);
        const char *redis = !t->cur.backend_enabled ? "none" : t->cur.backend_up ? "up" : "DOWN";
        snprintf(line, sizeof line, "%-22s %-8s %9s %6s %15s %6" PRIu64 " %-5s %9s %5s", t->addr,
                 t->state, ops, hit, mem, t->cur.connections, redis, p99, busy);
        rc = put_line(out, line, width);
    }
    return rc == 0 ? 0 : PC_ENOMEM;
}
