/*
 * pc_hist.c -- latency histograms (pc_hist.h).
 */
#include "pc_hist.h"

#include <stdio.h>

#include "pc_error.h"

const uint64_t pc_hist_bounds_ns[PC_HIST_BOUNDS] = {
    10000,       25000,       50000,       100000,      250000,     500000,     1000000,
    2500000,     5000000,     10000000,    25000000,    50000000,   100000000,  250000000,
    500000000,   1000000000,  2500000000,  5000000000,  10000000000,
};

void pc_hist_merge(pc_hist_t *sum, const pc_hist_t *x)
{
    for (size_t i = 0; i <= PC_HIST_BOUNDS; i++)
        sum->bucket[i] += x->bucket[i];
    sum->count += x->count;
    sum->sum_ns += x->sum_ns;
}

int pc_hist_prometheus(pc_buf_t *out, const char *name, const char *labels, const pc_hist_t *h)
{
    char line[256];
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cum = 0;
    for (size_t i = 0; i <= PC_HIST_BOUNDS; i++) {
        char le[32];
        cum += h->bucket[i];
        if (i < PC_HIST_BOUNDS)
            snprintf(le, sizeof le, "%g", (double)pc_hist_bounds_ns[i] / 1e9);
        else
            snprintf(le, sizeof le, "+Inf");
        int n = snprintf(line, sizeof line, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep,
                         le, (unsigned long long)cum);
        if (n < 0 || (size_t)n >= sizeof line || pc_buf_append(out, line, (size_t)n) != 0)
            return PC_ENOMEM;
    }
    const char *lb = labels[0] != '\0' ? "{" : "", *rb = labels[0] != '\0' ? "}" : "";
    int n = snprintf(line, sizeof line, "%s_sum%s%s%s %.9f\n%s_count%s%s%s %llu\n", name, lb,
                     labels, rb, (double)h->sum_ns / 1e9, name, lb, labels, rb,
                     (unsigned long long)h->count);
    if (n < 0 || (size_t)n >= sizeof line || pc_buf_append(out, line, (size_t)n) != 0)
        return PC_ENOMEM;
    return 0;
}
