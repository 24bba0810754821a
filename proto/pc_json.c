/*
 * pc_json.c -- JSON strings (pc_json.h).
 */
#include "pc_json.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pc_error.h"

bool pc_json_utf8_valid(const void *data, size_t n)
{
    const uint8_t *p = data;
    size_t i = 0;

    while (i < n) {
        uint8_t b = p[i];
        size_t len;
        uint32_t cp, min;

        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xe0) == 0xc0) {
            len = 2, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* p[0..n) between quotes, escaped; with `ascii`, a byte >= 0x80 is '?'. */
static int quoted(pc_buf_t *out, const uint8_t *p, size_t n, bool ascii)
{
    int rc = pc_buf_append(out, "\"", 1);

    for (size_t i = 0; i < n && rc == 0; i++) {
        uint8_t ch = ascii && p[i] >= 0x80 ? '?' : p[i];
        char esc[8];
        const char *s = NULL;

        switch (ch) {
        case '"': s = "\\\""; break;
        case '\\': s = "\\\\"; break;
        case '\n': s = "\\n"; break;
        case '\r': s = "\\r"; break;
        case '\t': s = "\\t"; break;
        default:
            /* DEL is legal raw JSON but escaped so that output shown on a
             * terminal cannot carry control characters. */
            if (ch < 0x20 || ch == 0x7f) {
                snprintf(esc, sizeof esc, "\\u%04x", ch);
                s = esc;
            }
        }
        rc = s != NULL ? pc_buf_append(out, s, strlen(s)) : pc_buf_append(out, &ch, 1);
    }
    return rc == 0 ? pc_buf_append(out, "\"", 1) : rc;
}

int pc_json_string(pc_buf_t *out, const void *p, size_t n)
{
    return quoted(out, p, n, false);
}

int pc_json_text(pc_buf_t *out, const char *s)
{
    size_t n = strlen(s);

    return quoted(out, (const uint8_t *)s, n, !pc_json_utf8_valid(s, n));
}
