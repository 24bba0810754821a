#include "pc_log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pc_json.h"

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
    if (log->json) {
        static const char *const lower[] = {"error", "warn", "info", "debug"};
        char head[96];
        pc_buf_t b;
        pc_buf_init(&b, 0);
        snprintf(head, sizeof head, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"node\":", when,
                 ts.tv_nsec / 1000000L, lower[level]);
        int rc = pc_buf_append(&b, head, strlen(head));
        if (rc == 0)
            rc = pc_json_text(&b, log->name ? log->name : "-");
        if (rc == 0)
            rc = pc_buf_append(&b, ",\"msg\":", 7);
        if (rc == 0)
            rc = pc_json_text(&b, msg);
        if (rc == 0)
            rc = pc_buf_append(&b, "}\n", 3); /* with its NUL */
        if (rc == 0)
            fputs((const char *)b.data, log->out);
        pc_buf_free(&b);
    } else {
        fprintf(log->out, "%s.%03ldZ %s peercached[%s] %s\n", when, ts.tv_nsec / 1000000L,
                level_names[level], log->name ? log->name : "-", msg);
    }
    fflush(log->out);
}
