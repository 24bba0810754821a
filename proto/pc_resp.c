/*
 * pc_resp.c -- Redis protocol commands and replies (pc_resp.h).
 */
#include "pc_resp.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_error.h"

/* The longest header line ("*4096\r\n", "$1049600\r\n") Redis would take
 * before it calls the count "too big". */
#define HEADER_MAX 64

void pc_resp_parser_init(pc_resp_parser_t *p, const pc_resp_limits_t *lim)
{
    memset(p, 0, sizeof *p);
    if (lim != NULL) {
        p->lim = *lim;
    } else {
        p->lim.max_args = PC_RESP_DEFAULT_MAX_ARGS;
        p->lim.max_bulk = PC_RESP_DEFAULT_MAX_BULK;
        p->lim.max_inline = PC_RESP_DEFAULT_MAX_INLINE;
    }
}

void pc_resp_parser_free(pc_resp_parser_t *p)
{
    free(p->argv);
    p->argv = NULL;
    p->cap = 0;
}

const char *pc_resp_why(const pc_resp_parser_t *p)
{
    return p->why;
}

static int fail(pc_resp_parser_t *p, int rc, const char *why)
{
    snprintf(p->why, sizeof p->why, "Protocol error: %s", why);
    return rc;
}

static int grow(pc_resp_parser_t *p, uint32_t n)
{
    if (n <= p->cap)
        return 0;
    uint32_t cap = p->cap ? p->cap : 8;
    while (cap < n)
        cap *= 2;
    pc_bytes_t *a = realloc(p->argv, (size_t)cap * sizeof *a);
    if (a == NULL)
        return PC_ENOMEM;
    p->argv = a;
    p->cap = cap;
    return 0;
}

/*
 * A header line at buf[*at..len): its prefix character, then a decimal
 * number, then \r\n. 1 with *v (and *at past it), 0 if the line is not
 * whole yet, or an error.
 */
static int header(pc_resp_parser_t *p, const uint8_t *buf, size_t len, size_t *at, char prefix,
                  int64_t *v, const char *what)
{
    size_t i = *at;
    const uint8_t *cr = memchr(buf + i, '\r', len - i);
    if (cr == NULL) {
        if (len - i > HEADER_MAX)
            return fail(p, PC_ETOOBIG, prefix == '*' ? "too big mbulk count string"
                                                     : "too big bulk count string");
        return 0;
    }
    size_t end = (size_t)(cr - buf);
    if (end + 1 >= len)
        return 0; /* the \n is not here yet */
    if (buf[end + 1] != '\n' || buf[i] != (uint8_t)prefix)
        return fail(p, PC_EPROTO, what);
    int64_t n = 0;
    int neg = 0;
    size_t j = i + 1;
    if (j < end && buf[j] == '-') {
        neg = 1;
        j++;
    }
    if (j == end || end - j > 18)
        return fail(p, PC_EPROTO, what);
    for (; j < end; j++) {
        if (buf[j] < '0' || buf[j] > '9')
            return fail(p, PC_EPROTO, what);
        n = n * 10 + (buf[j] - '0');
    }
    *v = neg ? -n : n;
    *at = end + 2;
    return 1;
}

static int parse_multibulk(pc_resp_parser_t *p, const uint8_t *buf, size_t len,
                           pc_resp_cmd_t *out, size_t *used)
{
    size_t at = 0;
    int64_t argc;
    int rc = header(p, buf, len, &at, '*', &argc, "invalid multibulk length");
    if (rc != 1)
        return rc;
    if (argc > (int64_t)p->lim.max_args)
        return fail(p, PC_ETOOBIG, "invalid multibulk length");
    if (argc <= 0) { /* *0 and *-1: nothing to do, as Redis */
        out->argc = 0;
        out->argv = p->argv;
        *used = at;
        return 1;
    }
    if ((rc = grow(p, (uint32_t)argc)) != 0)
        return rc;
    for (int64_t k = 0; k < argc; k++) {
        int64_t n;
        if (at >= len)
            return 0;
        if (buf[at] != '$') {
            snprintf(p->why, sizeof p->why, "Protocol error: expected '$', got '%c'",
                     buf[at] >= 0x20 && buf[at] < 0x7f ? buf[at] : '?');
            return PC_EPROTO;
        }
        rc = header(p, buf, len, &at, '$', &n, "invalid bulk length");
        if (rc != 1)
            return rc;
        if (n < 0 || n > (int64_t)p->lim.max_bulk)
            return fail(p, n < 0 ? PC_EPROTO : PC_ETOOBIG, "invalid bulk length");
        if (len - at < (size_t)n + 2)
            return 0;
        if (buf[at + (size_t)n] != '\r' || buf[at + (size_t)n + 1] != '\n')
            return fail(p, PC_EPROTO, "bulk not followed by CRLF");
        p->argv[k] = (pc_bytes_t){buf + at, (uint32_t)n};
        at += (size_t)n + 2;
    }
    out->argc = (uint32_t)argc;
    out->argv = p->argv;
    *used = at;
    return 1;
}

static int parse_inline(pc_resp_parser_t *p, const uint8_t *buf, size_t len, pc_resp_cmd_t *out,
                        size_t *used)
{
    const uint8_t *nl = memchr(buf, '\n', len);
    if (nl == NULL) {
        if (len > p->lim.max_inline)
            return fail(p, PC_ETOOBIG, "too big inline request");
        return 0;
    }
    size_t end = (size_t)(nl - buf), line = end;
    if (line > p->lim.max_inline)
        return fail(p, PC_ETOOBIG, "too big inline request");
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    uint32_t argc = 0;
    for (size_t i = 0; i < line;) {
        while (i < line && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        if (i == line)
            break;
        size_t start = i;
        while (i < line && buf[i] != ' ' && buf[i] != '\t')
            i++;
        if (argc == p->lim.max_args)
            return fail(p, PC_ETOOBIG, "too many arguments in inline request");
        if (i - start > p->lim.max_bulk) /* as a bulk would be */
            return fail(p, PC_ETOOBIG, "invalid bulk length");
        int rc = grow(p, argc + 1);
        if (rc != 0)
            return rc;
        p->argv[argc++] = (pc_bytes_t){buf + start, (uint32_t)(i - start)};
    }
    out->argc = argc;
    out->argv = p->argv;
    *used = end + 1;
    return 1;
}

int pc_resp_parse(pc_resp_parser_t *p, const uint8_t *buf, size_t len, pc_resp_cmd_t *out,
                  size_t *used)
{
    p->why[0] = '\0';
    *used = 0;
    out->argc = 0;
    out->argv = p->argv;
    if (len == 0)
        return 0;
    return buf[0] == '*' ? parse_multibulk(p, buf, len, out, used)
                         : parse_inline(p, buf, len, out, used);
}

/* ---- replies ---------------------------------------------------------------- */

static int line(pc_buf_t *b, char type, const char *s, size_t n)
{
    int rc = pc_buf_append(b, &type, 1);
    if (rc == 0 && n > 0)
        rc = pc_buf_append(b, s, n);
    return rc == 0 ? pc_buf_append(b, "\r\n", 2) : rc;
}

/* +s and -s carry no CR or LF: each is one line. */
static int one_line(pc_buf_t *b, char type, const char *s)
{
    size_t n = strcspn(s, "\r\n");
    return line(b, type, s, n);
}

int pc_resp_simple(pc_buf_t *b, const char *s)
{
    return one_line(b, '+', s);
}

int pc_resp_error(pc_buf_t *b, const char *s)
{
    return one_line(b, '-', s);
}

/* v in decimal at the end of s[0..24): its first byte (no printf: a
 * bulk header is on every reply's path). */
static char *decimal(char s[24], int64_t v)
{
    char *p = s + 24;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    return p;
}

/* <type><v>\r\n, and room reserved for `more` bytes after it. */
static int number_and(pc_buf_t *b, char type, int64_t v, size_t more)
{
    char s[24], *d = decimal(s, v);
    size_t n = (size_t)(s + 24 - d);
    int rc = pc_buf_reserve(b, 1 + n + 2 + more);
    if (rc != 0)
        return rc;
    uint8_t *w = b->data + b->len;
    w[0] = (uint8_t)type;
    memcpy(w + 1, d, n);
    w[1 + n] = '\r';
    w[2 + n] = '\n';
    b->len += 3 + n;
    return 0;
}

static int number(pc_buf_t *b, char type, int64_t v) { return number_and(b, type, v, 0); }

int pc_resp_int(pc_buf_t *b, int64_t v)
{
    return number(b, ':', v);
}

int pc_resp_bulk(pc_buf_t *b, const void *p, size_t n)
{
    int rc = number_and(b, '$', (int64_t)n, n + 2); /* one reservation for all of it */
    if (rc != 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    memcpy(b->data + b->len + n, "\r\n", 2);
    b->len += n + 2;
    return 0;
}

int pc_resp_bulk_int(pc_buf_t *b, int64_t v)
{
    char s[24], *d = decimal(s, v);
    return pc_resp_bulk(b, d, (size_t)(s + 24 - d));
}

int pc_resp_null(pc_buf_t *b, int resp3)
{
    return resp3 ? pc_buf_append(b, "_\r\n", 3) : pc_buf_append(b, "$-1\r\n", 5);
}

int pc_resp_null_array(pc_buf_t *b, int resp3)
{
    return resp3 ? pc_buf_append(b, "_\r\n", 3) : pc_buf_append(b, "*-1\r\n", 5);
}

int pc_resp_array(pc_buf_t *b, size_t n)
{
    return number(b, '*', (int64_t)n);
}

int pc_resp_map(pc_buf_t *b, size_t n, int resp3)
{
    return resp3 ? number(b, '%', (int64_t)n) : number(b, '*', (int64_t)(2 * n));
}

int pc_resp_bool(pc_buf_t *b, int v, int resp3)
{
    if (resp3)
        return pc_buf_append(b, v ? "#t\r\n" : "#f\r\n", 4);
    return pc_resp_int(b, v ? 1 : 0);
}

int pc_resp_double(pc_buf_t *b, double v, int resp3)
{
    char s[40];
    int n = isinf(v) ? snprintf(s, sizeof s, "%s", v > 0 ? "inf" : "-inf")
                     : snprintf(s, sizeof s, "%.17g", v);
    return resp3 ? line(b, ',', s, (size_t)n) : pc_resp_bulk(b, s, (size_t)n);
}
