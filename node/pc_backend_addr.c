/*
 * pc_backend_addr.c -- the --redis value, parsed (see pc_backend_addr.h).
 *
 * The grammar is narrow on purpose, like pc_addr's: whatever is not one
 * of the documented forms is refused here, at start, with a message that
 * says what is wrong, rather than turning into a connection that fails
 * later or a setting silently ignored (a URL parser that skips unknown
 * query parameters would let "?ssl=true" pass and mean nothing).
 *
 * Host names keep one home: each host is split off here, so that the
 * message can be precise, and then handed to pc_addr_parse, whose rules
 * (characters, brackets) decide whether it is a host at all -- the same
 * rules as for --listen and --join.
 *
 * A user or password in the address is the one thing checked before the
 * scheme or the syntax, and nothing of the input is quoted in a message
 * before that check: whatever is quoted goes to stderr and the logs.
 */
#include "pc_backend_addr.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pc_addr.h"

#define REDIS_PORT 6379
#define SENTINEL_PORT 26379
#define DB_MAX 1000000

/* The most bytes of the input quoted in one place of a message: enough
 * to recognise a host, short enough to keep the message one line. */
#define QUOTE_MAX 64

static const char forms[] = "HOST:PORT, redis://HOST[:PORT][/DB], unix:///PATH[?db=N], "
                            "sentinel://HOST[:PORT][,...]/MASTER[/DB], "
                            "cluster://HOST[:PORT][,...] or none";

static const char no_secrets[] =
    "a user or password is never given in --redis or on the command line (every local "
    "user can read it with ps, and the address is logged): use --redis-user and "
    "--redis-password-file";

enum scheme { SCHEME_NONE, SCHEME_REDIS, SCHEME_UNIX, SCHEME_SENTINEL, SCHEME_CLUSTER,
              SCHEME_UNKNOWN };

/* A piece of the input made fit to quote in a message. */
typedef struct quote {
    char s[QUOTE_MAX + 4];
} quote_t;

/* ---- messages ------------------------------------------------------------ */

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the message and returns rc, so that a parser can `return fail(...)`. */
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* The n bytes at p, cut to QUOTE_MAX (marked "...") and with control
 * characters as '?', so that a message stays one printable line. */
static const char *quote(const char *p, size_t n, quote_t *q)
{
    size_t k = n < QUOTE_MAX ? n : QUOTE_MAX;

    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)p[i];

        q->s[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (k < n) {
        memcpy(q->s + k, "...", 3);
        k += 3;
    }
    q->s[k] = '\0';
    return q->s;
}

/* ---- pieces ----------------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool equals(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

static enum scheme scheme_of(const char *p, size_t n)
{
    if (equals(p, n, "redis"))
        return SCHEME_REDIS;
    if (equals(p, n, "unix"))
        return SCHEME_UNIX;
    if (equals(p, n, "sentinel"))
        return SCHEME_SENTINEL;
    if (equals(p, n, "cluster"))
        return SCHEME_CLUSTER;
    return SCHEME_UNKNOWN;
}

/*
 * A query parameter meant to carry a credential, as other clients'
 * URLs allow ("unix:///s?password=x"). Refused as userinfo is, with the
 * same advice, rather than as just an unknown parameter.
 */
static bool query_has_secret(const char *q)
{
    while (*q != '\0') {
        size_t n = strcspn(q, "=&");

        if (equals(q, n, "password") || equals(q, n, "pass") || equals(q, n, "user") ||
            equals(q, n, "username"))
            return true;
        q += strcspn(q, "&");
        if (*q == '&')
            q++;
    }
    return false;
}

/* A database: decimal digits only, 0..DB_MAX. */
static int parse_db(const char *p, size_t n, int *db, char *err, size_t errlen)
{
    long v = 0;
    quote_t q;

    if (n == 0)
        return fail(err, errlen, PC_EINVAL, "empty database number (0..%d)", DB_MAX);
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return fail(err, errlen, PC_EINVAL, "database '%s' is not a decimal number 0..%d",
                        quote(p, n, &q), DB_MAX);
        if (v <= DB_MAX)
            v = v * 10 + (p[i] - '0');
    }
    if (v > DB_MAX)
        return fail(err, errlen, PC_ERANGE, "database %s is over the maximum of %d",
                    quote(p, n, &q), DB_MAX);
    *db = (int)v;
    return 0;
}

/*
 * One "HOST[:PORT]" (or "[V6][:PORT]") of n bytes into *h. def_port 0
 * means the port is required (the legacy form). Splits and diagnoses
 * here, then lets pc_addr_parse judge the host itself.
 */
static int parse_host(const char *p, size_t n, int def_port, pc_backend_host_t *h, char *err,
                      size_t errlen)
{
    const char *host, *port = NULL;
    size_t hlen, plen = 0;
    bool bracketed = n > 0 && p[0] == '[';
    char buf[sizeof(h->host) + 16];
    quote_t q1, q2;
    long v = 0;

    if (n == 0)
        return fail(err, errlen, PC_EINVAL, "empty host");
    if (bracketed) {
        const char *close = memchr(p, ']', n);

        if (close == NULL)
            return fail(err, errlen, PC_EINVAL, "'%s' has no closing ']'", quote(p, n, &q1));
        host = p + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < p + n) {
            if (close[1] != ':')
                return fail(err, errlen, PC_EINVAL,
                            "unexpected '%s' after ']' in '%s' (expected ':PORT')",
                            quote(close + 1, (size_t)(p + n - close - 1), &q1),
                            quote(p, n, &q2));
            port = close + 2;
            plen = (size_t)(p + n - port);
        }
    } else {
        const char *colon = memchr(p, ':', n);

        host = p;
        hlen = colon != NULL ? (size_t)(colon - p) : n;
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(p + n - colon - 1)) != NULL)
            return fail(err, errlen, PC_EINVAL,
                        "'%s' has more than one ':' (an IPv6 address goes in brackets, "
                        "as [::1]:6379)",
                        quote(p, n, &q1));
        if (colon != NULL) {
            port = colon + 1;
            plen = (size_t)(p + n - port);
        }
    }
    if (hlen == 0)
        return fail(err, errlen, PC_EINVAL, "empty host in '%s'", quote(p, n, &q1));
    if (hlen >= sizeof(h->host))
        return fail(err, errlen, PC_ERANGE, "host name of %zu bytes is longer than %zu", hlen,
                    sizeof(h->host) - 1);

    if (port == NULL) {
        if (def_port == 0)
            return fail(err, errlen, PC_EINVAL,
                        "'%s' has no port: write HOST:PORT, or redis://HOST for port %d",
                        quote(p, n, &q1), REDIS_PORT);
        v = def_port;
    } else {
        if (plen == 0)
            return fail(err, errlen, PC_EINVAL, "empty port after ':' in '%s'",
                        quote(p, n, &q1));
        for (size_t i = 0; i < plen; i++) {
            if (!is_digit(port[i]))
                return fail(err, errlen, PC_EINVAL, "port '%s' of '%s' is not a number",
                            quote(port, plen, &q1), quote(host, hlen, &q2));
            if (v <= 65535)
                v = v * 10 + (port[i] - '0');
        }
        /* More than five digits is refused even when they are leading
         * zeros, as pc_addr_parse refuses it. */
        if (v < 1 || v > 65535 || plen > 5)
            return fail(err, errlen, PC_ERANGE, "port %s of '%s' is out of range 1..65535",
                        quote(port, plen, &q1), quote(host, hlen, &q2));
    }

    snprintf(buf, sizeof(buf), bracketed ? "[%.*s]:%ld" : "%.*s:%ld", (int)hlen, host, v);
    if (pc_addr_parse(buf, h->host, sizeof(h->host), &h->port) != 0)
        return fail(err, errlen, PC_EINVAL,
                    bracketed ? "'%s' is not an IPv6 address"
                              : "'%s' is not a host name or IPv4 address (letters, digits, "
                                "'.', '-', '_'; IPv6 goes in brackets)",
                    quote(host, hlen, &q1));
    return 0;
}

/*
 * "H1[:P1],H2[:P2]..." of n bytes into a->hosts. Every element must be
 * there: an empty one is a typo more often than an intent.
 */
static int parse_list(const char *p, size_t n, int def_port, const char *scheme,
                      pc_backend_addr_t *a, char *err, size_t errlen)
{
    const char *end = p + n;

    if (n == 0)
        return fail(err, errlen, PC_EINVAL, "no host after '%s://'", scheme);
    for (size_t i = 0;; i++) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);
        int rc;

        if (i == PC_BACKEND_ADDR_MAX)
            return fail(err, errlen, PC_ERANGE, "more than %d hosts in the %s:// list",
                        PC_BACKEND_ADDR_MAX, scheme);
        if (len == 0)
            return fail(err, errlen, PC_EINVAL,
                        "host %zu of the %s:// list is empty (two commas in a row, or one "
                        "at an end)",
                        i + 1, scheme);
        rc = parse_host(p, len, def_port, &a->hosts[i], err, errlen);
        if (rc != 0)
            return rc;
        a->nhosts = i + 1;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

/* ---- the forms ------------------------------------------------------------- */

/* "HOST:PORT": one host, port required. */
static int parse_legacy(const char *p, size_t n, pc_backend_addr_t *a, char *err, size_t errlen)
{
    quote_t q;

    if (memchr(p, ',', n) != NULL)
        return fail(err, errlen, PC_EINVAL,
                    "'%s' is a list of hosts: a list needs sentinel:// or cluster://",
                    quote(p, n, &q));
    if (memchr(p, '/', n) != NULL)
        return fail(err, errlen, PC_EINVAL,
                    "'%s' has a '/': a database needs redis://HOST:PORT/DB, a socket "
                    "unix:///PATH",
                    quote(p, n, &q));
    a->mode = PC_BACKEND_SINGLE;
    a->nhosts = 1;
    return parse_host(p, n, 0, &a->hosts[0], err, errlen);
}

/* After "redis://": "HOST[:PORT][/DB]", or "HOST[:PORT]/" (database 0). */
static int parse_redis(const char *p, size_t n, pc_backend_addr_t *a, char *err, size_t errlen)
{
    const char *slash = memchr(p, '/', n);
    size_t hlen = slash != NULL ? (size_t)(slash - p) : n;
    int rc;

    if (hlen == 0)
        return fail(err, errlen, PC_EINVAL, "no host after 'redis://'");
    a->mode = PC_BACKEND_SINGLE;
    a->nhosts = 1;
    rc = parse_host(p, hlen, REDIS_PORT, &a->hosts[0], err, errlen);
    if (rc != 0 || slash == NULL || slash + 1 == p + n)
        return rc;
    return parse_db(slash + 1, (size_t)(p + n - slash - 1), &a->db, err, errlen);
}

/* The query of unix:// (after '?'): exactly one "db=N". */
static int parse_unix_query(const char *q, pc_backend_addr_t *a, char *err, size_t errlen)
{
    bool seen = false;
    quote_t q1;

    if (*q == '\0')
        return fail(err, errlen, PC_EINVAL, "empty query after '?': write unix:///PATH?db=N");
    for (;;) {
        size_t len = strcspn(q, "&");
        size_t klen = strcspn(q, "=&");
        int rc;

        if (klen != 2 || strncmp(q, "db", 2) != 0)
            return fail(err, errlen, PC_EINVAL,
                        "unknown query parameter '%s': unix:// takes only ?db=N",
                        quote(q, klen, &q1));
        if (q[klen] != '=')
            return fail(err, errlen, PC_EINVAL, "db has no value: write ?db=N");
        if (seen)
            return fail(err, errlen, PC_EINVAL, "db= is given twice");
        seen = true;
        rc = parse_db(q + klen + 1, len - klen - 1, &a->db, err, errlen);
        if (rc != 0)
            return rc;
        if (q[len] == '\0')
            return 0;
        q += len + 1; /* past the '&'; an empty parameter after it is refused */
    }
}

/* After "unix://": "/ABSOLUTE/PATH", then the query (NULL if none). */
static int parse_unix(const char *p, size_t n, const char *query, pc_backend_addr_t *a,
                      char *err, size_t errlen)
{
    if (n == 0 || p[0] != '/')
        return fail(err, errlen, PC_EINVAL,
                    "the socket path must be absolute, as unix:///run/redis.sock (three "
                    "slashes)");
    if (n >= sizeof(a->path))
        return fail(err, errlen, PC_ERANGE, "socket path of %zu bytes is longer than %zu", n,
                    sizeof(a->path) - 1);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return fail(err, errlen, PC_EINVAL, "the socket path has a control character");
    }
    a->mode = PC_BACKEND_SINGLE;
    memcpy(a->path, p, n);
    a->path[n] = '\0';
    return query != NULL ? parse_unix_query(query, a, err, errlen) : 0;
}

/* After "sentinel://": "H[:P][,...]/MASTER[/DB]". */
static int parse_sentinel(const char *p, size_t n, pc_backend_addr_t *a, char *err,
                          size_t errlen)
{
    const char *slash = memchr(p, '/', n);
    const char *m, *end = p + n, *db;
    size_t mlen;
    quote_t q;
    int rc;

    a->mode = PC_BACKEND_SENTINEL;
    rc = parse_list(p, slash != NULL ? (size_t)(slash - p) : n, SENTINEL_PORT, "sentinel", a,
                    err, errlen);
    if (rc != 0)
        return rc;
    m = slash != NULL ? slash + 1 : end;
    db = memchr(m, '/', (size_t)(end - m));
    mlen = (size_t)((db != NULL ? db : end) - m);
    if (mlen == 0)
        return fail(err, errlen, PC_EINVAL,
                    "missing master name: write sentinel://HOST[:PORT][,...]/MASTER[/DB]");
    if (mlen >= sizeof(a->master))
        return fail(err, errlen, PC_ERANGE, "master name of %zu bytes is longer than %zu", mlen,
                    sizeof(a->master) - 1);
    for (size_t i = 0; i < mlen; i++) {
        char c = m[i];

        if (!is_digit(c) && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && c != '.' &&
            c != '-' && c != '_')
            return fail(err, errlen, PC_EINVAL,
                        "master name '%s' may hold only letters, digits, '.', '-' and '_'",
                        quote(m, mlen, &q));
    }
    memcpy(a->master, m, mlen);
    a->master[mlen] = '\0';
    if (db == NULL)
        return 0;
    return parse_db(db + 1, (size_t)(end - db - 1), &a->db, err, errlen);
}

/* After "cluster://": "H[:P][,...][/0]". */
static int parse_cluster(const char *p, size_t n, pc_backend_addr_t *a, char *err,
                         size_t errlen)
{
    const char *slash = memchr(p, '/', n);
    int db = 0, rc;

    a->mode = PC_BACKEND_CLUSTER;
    rc = parse_list(p, slash != NULL ? (size_t)(slash - p) : n, REDIS_PORT, "cluster", a, err,
                    errlen);
    if (rc != 0 || slash == NULL)
        return rc;
    rc = parse_db(slash + 1, (size_t)(p + n - slash - 1), &db, err, errlen);
    if (rc != 0)
        return rc;
    if (db != 0)
        return fail(err, errlen, PC_ERANGE,
                    "Redis Cluster has only database 0: drop the '/%d' from cluster://", db);
    return 0;
}

/* ---- public API ----------------------------------------------------------- */

int pc_backend_addr_parse(const char *s, pc_backend_addr_t *out, char *err, size_t errlen)
{
    pc_backend_addr_t a;
    const char *sep, *body, *query, *end, *secret_end;
    enum scheme scheme = SCHEME_NONE;
    quote_t q;
    int rc;

    fail(err, errlen, 0, "%s", "");
    if (out == NULL)
        return fail(err, errlen, PC_EINVAL, "pc_backend_addr_parse: no result to fill (bug)");
    if (s == NULL || s[0] == '\0')
        return fail(err, errlen, PC_EINVAL, "no address: write %s", forms);
    if (strcasecmp(s, "none") == 0) {
        memset(out, 0, sizeof(*out));
        out->mode = PC_BACKEND_NONE;
        return 0;
    }
    memset(&a, 0, sizeof(a));

    sep = strstr(s, "://");
    body = s;
    if (sep != NULL) {
        scheme = scheme_of(s, (size_t)(sep - s));
        body = sep + 3;
    }
    query = strchr(body, '?');
    end = query != NULL ? query : body + strlen(body);
    if (query != NULL)
        query++;

    /* A Unix socket's path may hold an '@' (systemd names its instances
     * so); there only what comes before the path could be a user. */
    secret_end = end;
    if (scheme == SCHEME_UNIX)
        secret_end = body + strcspn(body, "/?");
    if (memchr(s, '@', (size_t)(secret_end - s)) != NULL ||
        (query != NULL && query_has_secret(query)))
        return fail(err, errlen, PC_EPERM, "%s", no_secrets);

    if (scheme == SCHEME_UNKNOWN)
        return fail(err, errlen, PC_EINVAL, "unknown scheme '%s://': write %s",
                    quote(s, (size_t)(sep - s), &q), forms);
    if (query != NULL && scheme != SCHEME_UNIX)
        return fail(err, errlen, PC_EINVAL,
                    "query parameters ('?...') are not accepted: only unix:// takes ?db=N; "
                    "a database goes in the path, as redis://HOST:PORT/DB");

    switch (scheme) {
    case SCHEME_REDIS:
        rc = parse_redis(body, (size_t)(end - body), &a, err, errlen);
        break;
    case SCHEME_UNIX:
        rc = parse_unix(body, (size_t)(end - body), query, &a, err, errlen);
        break;
    case SCHEME_SENTINEL:
        rc = parse_sentinel(body, (size_t)(end - body), &a, err, errlen);
        break;
    case SCHEME_CLUSTER:
        rc = parse_cluster(body, (size_t)(end - body), &a, err, errlen);
        break;
    case SCHEME_NONE:
    default:
        rc = parse_legacy(body, (size_t)(end - body), &a, err, errlen);
        break;
    }
    if (rc != 0)
        return rc;
    *out = a;
    return 0;
}

static void put(char *out, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends to out[0..cap), keeping *len = strlen(out) when it is cut. */
static void put(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = (size_t)n < cap - *len ? *len + (size_t)n : cap - 1;
}

size_t pc_backend_addr_describe(const pc_backend_addr_t *a, char *out, size_t cap)
{
    size_t len = 0;

    if (out == NULL || cap == 0)
        return 0;
    out[0] = '\0';
    if (a == NULL)
        return 0;
    switch (a->mode) {
    case PC_BACKEND_NONE:
        put(out, cap, &len, "none");
        return len;
    case PC_BACKEND_SINGLE:
        if (a->path[0] != '\0')
            put(out, cap, &len, "unix://%s", a->path);
        else if (strchr(a->hosts[0].host, ':') != NULL)
            put(out, cap, &len, "[%s]:%d", a->hosts[0].host, a->hosts[0].port);
        else
            put(out, cap, &len, "%s:%d", a->hosts[0].host, a->hosts[0].port);
        break;
    case PC_BACKEND_SENTINEL:
        put(out, cap, &len, "sentinel %s via %zu sentinel%s", a->master, a->nhosts,
            a->nhosts == 1 ? "" : "s");
        break;
    case PC_BACKEND_CLUSTER:
        put(out, cap, &len, "cluster via %zu seed%s", a->nhosts, a->nhosts == 1 ? "" : "s");
        break;
    default:
        put(out, cap, &len, "(invalid mode %d)", (int)a->mode);
        break;
    }
    if (a->db != 0)
        put(out, cap, &len, " db %d", a->db);
    return len;
}
