/*
 * pc_addr.c -- "host:port" parsing.
 *
 * The grammar is deliberately narrow: a host name or IPv4 address made of
 * [A-Za-z0-9._-], or a bracketed IPv6 literal (optionally with a %zone),
 * then ':' and a decimal port. Anything else is rejected here rather than
 * later by getaddrinfo(), so a typo in a config file fails at startup with
 * a clear error instead of as a connect failure at runtime.
 */
#include "pc_addr.h"

#include <stdbool.h>
#include <string.h>

/* Longest host a list item may carry: DNS names are at most 253 bytes, and
 * an IPv6 literal with a zone id is far shorter. */
#define PC_ADDR_HOST_MAX 256

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool valid_name(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!is_alnum(c) && c != '.' && c != '-' && c != '_')
            return false;
    }
    return true;
}

/* Hex digits, ':' and '.' (for ::ffff:1.2.3.4), at least one ':', then an
 * optional non-empty "%zone" (interface names are alphanumeric plus . _ -). */
static bool valid_v6(const char *h, size_t n)
{
    size_t i = 0;
    bool colon = false;
    for (; i < n && h[i] != '%'; i++) {
        if (h[i] == ':')
            colon = true;
        else if (!is_hex(h[i]) && h[i] != '.')
            return false;
    }
    if (!colon)
        return false;
    if (i == n)
        return true;
    return i + 1 < n && valid_name(h + i + 1, n - i - 1);
}

static int parse_port(const char *p, size_t n, int *port)
{
    /* Five digits is the most a valid port needs (leading zeros allowed);
     * the bound also keeps the accumulator far from overflow. */
    if (n == 0 || n > 5)
        return PC_EINVAL;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return PC_EINVAL;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535)
        return PC_EINVAL;
    *port = v;
    return 0;
}

/* pc_addr_parse on a length-delimited string, so list items need no copy. */
static int addr_parse_n(const char *s, size_t n, char *hostbuf, size_t hostlen, int *port)
{
    const char *host;
    size_t hlen;
    const char *colon;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return PC_EINVAL;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
        if (colon >= s + n || *colon != ':' || !valid_v6(host, hlen))
            return PC_EINVAL;
    } else {
        colon = NULL;
        for (size_t i = n; i > 0; i--) {
            if (s[i - 1] == ':') {
                colon = s + i - 1;
                break;
            }
        }
        if (colon == NULL)
            return PC_EINVAL;
        host = s;
        hlen = (size_t)(colon - s);
        /* An unbracketed IPv6 address ("::1:80") is ambiguous; valid_name
         * rejects the extra ':' so the user is told to add brackets. */
        if (hlen == 0 || !valid_name(host, hlen))
            return PC_EINVAL;
    }

    int rc = parse_port(colon + 1, (size_t)(s + n - colon - 1), port);
    if (rc != 0)
        return rc;
    if (hlen >= hostlen)
        return PC_ERANGE;
    memcpy(hostbuf, host, hlen);
    hostbuf[hlen] = '\0';
    return 0;
}

int pc_addr_parse(const char *s, char *hostbuf, size_t hostlen, int *port)
{
    if (s == NULL || hostbuf == NULL || port == NULL)
        return PC_EINVAL;
    return addr_parse_n(s, strlen(s), hostbuf, hostlen, port);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Calls fn on every item, or (fn == NULL) only checks them. */
static int walk_list(const char *list, int (*fn)(void *arg, const char *host, int port),
                     void *arg)
{
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *a = p;
        const char *b = end;
        while (a < b && is_blank(*a))
            a++;
        while (b > a && is_blank(b[-1]))
            b--;
        if (a == b)
            return PC_EINVAL;

        char host[PC_ADDR_HOST_MAX];
        int port;
        int rc = addr_parse_n(a, (size_t)(b - a), host, sizeof(host), &port);
        if (rc == 0 && fn != NULL)
            rc = fn(arg, host, port);
        if (rc != 0)
            return rc;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

int pc_addr_parse_list(const char *list, int (*fn)(void *arg, const char *host, int port),
                       void *arg)
{
    if (list == NULL || fn == NULL)
        return PC_EINVAL;
    /* Check the whole list before the first callback, so a config error in
     * item 3 never leaves a caller holding items 1 and 2. */
    int rc = walk_list(list, NULL, NULL);
    if (rc != 0)
        return rc;
    return walk_list(list, fn, arg);
}
