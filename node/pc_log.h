/*
 * pc_log.h -- leveled logging to a FILE (stderr in the daemon).
 *
 * A pc_log_t is a small value owned by main() and passed by pointer to
 * every subsystem at init, so there is no global logger and tests can log
 * to a memory stream. Lines look like:
 *   2026-11-27T17:40:00.123Z WARN  peercached[n1] redis: connection lost
 * or, with `json` (--log-format json, for log shippers), one object each:
 *   {"time":"2026-11-27T17:40:00.123Z","level":"warn","node":"n1",
 *    "msg":"redis: connection lost"}
 * (on one line; strings escaped as pc_json.h writes them).
 *
 * Thread rules: pc_log_write() may be called from any thread; each line is
 * written with one fprintf so lines never interleave mid-line.
 */
#ifndef PC_LOG_H
#define PC_LOG_H

#include <stdio.h>

enum pc_log_level {
    PC_LOG_ERROR = 0,
    PC_LOG_WARN = 1,
    PC_LOG_INFO = 2,
    PC_LOG_DEBUG = 3,
};

typedef struct pc_log {
    FILE *out;
    int level;        /* lines above this level are dropped */
    const char *name; /* node name shown on every line; not owned */
    int json;         /* one JSON object per line instead of text */
} pc_log_t;

/* "error", "warn", "info", "debug" -> level; -1 if unknown. */
int pc_log_level_parse(const char *s);

void pc_log_write(const pc_log_t *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define pc_log_error(l, ...) pc_log_write((l), PC_LOG_ERROR, __VA_ARGS__)
#define pc_log_warn(l, ...) pc_log_write((l), PC_LOG_WARN, __VA_ARGS__)
#define pc_log_info(l, ...) pc_log_write((l), PC_LOG_INFO, __VA_ARGS__)
#define pc_log_debug(l, ...)                                                   \
    do {                                                                       \
        if ((l)->level >= PC_LOG_DEBUG)                                        \
            pc_log_write((l), PC_LOG_DEBUG, __VA_ARGS__);                      \
    } while (0)

#endif
