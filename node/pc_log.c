#include "pc_log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const level_names[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

int pc_log_level_parse(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    return -1;
}

void pc_log_write(const pc_log_t *log, int level, const char *fmt, ...)
{
    if (log == NULL || log->out == NULL || level > log->level || level < 0)
        return;

    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

    /* One fprintf per line: stdio locks the stream for the call, so lines
     * from different threads never interleave. */
    fprintf(log->out, "%s.%03ldZ %s peercached[%s] %s\n", when, ts.tv_nsec / 1000000L,
            level_names[level], log->name ? log->name : "-", msg);
    fflush(log->out);
}
