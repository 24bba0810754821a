/*
 * pc_backend_addr.h -- the value of --redis, parsed: which Redis (or
 * none) is behind the node, and how to reach it.
 *
 * Accepted forms (schemes and "none" in any case; no spaces anywhere):
 *
 *   none                              no Redis: a pure memory cache
 *   HOST:PORT                         one server, the legacy form, with
 *                                     the host rules of pc_addr_parse:
 *                                     127.0.0.1:6379, redis-1:6379,
 *                                     [::1]:6379 (IPv6 in brackets)
 *   redis://HOST[:PORT][/DB]          one server; PORT 6379 by default:
 *                                     redis://10.0.0.9, redis://r1:6380/2,
 *                                     redis://[::1]/3; a trailing "/"
 *                                     alone is database 0 (redis://r1/)
 *   unix:///PATH[?db=N]               one server on a Unix socket, PATH
 *                                     absolute and up to the first '?':
 *                                     unix:///run/redis.sock,
 *                                     unix:///run/redis.sock?db=2
 *   sentinel://H[:P][,H[:P]...]/MASTER[/DB]
 *                                     the master that Redis Sentinel names
 *                                     MASTER ([A-Za-z0-9._-], 1..127
 *                                     bytes), asked of these sentinels;
 *                                     P 26379 by default:
 *                                     sentinel://s1,s2,s3:26380/mymaster/1
 *   cluster://H[:P][,H[:P]...][/0]    a Redis Cluster, found through these
 *                                     seeds; P 6379 by default:
 *                                     cluster://r1:7000,r2:7000
 *
 * DB is a decimal number 0..1000000 (0 = no SELECT). A list holds 1 to
 * PC_BACKEND_ADDR_MAX hosts; the same host may appear twice. Nothing else
 * is accepted: no percent-decoding, no query parameters but unix's db=,
 * and never a user or password -- those come from --redis-user and
 * --redis-password-file, because argv is visible to every local user
 * (ps) and addresses are written to logs.
 *
 * Pure: no I/O, no allocation, no name resolution. Thread-safe.
 */
#ifndef PC_BACKEND_ADDR_H
#define PC_BACKEND_ADDR_H

#include <stddef.h>

#include "pc_error.h"

enum pc_backend_mode {
    PC_BACKEND_NONE,     /* "none": no Redis */
    PC_BACKEND_SINGLE,   /* one server, over TCP or a Unix socket */
    PC_BACKEND_SENTINEL, /* the master a set of sentinels names */
    PC_BACKEND_CLUSTER,  /* a Redis Cluster, through seed nodes */
};

#define PC_BACKEND_ADDR_MAX 16 /* hosts in a sentinel:// or cluster:// list */

typedef struct pc_backend_host {
    char host[256]; /* a name, an IPv4 address, or an IPv6 address
                       without its brackets; NUL-terminated */
    int port;       /* 1..65535 */
} pc_backend_host_t;

typedef struct pc_backend_addr {
    enum pc_backend_mode mode;
    char path[108];   /* SINGLE over a Unix socket: its path; "" = TCP */
    size_t nhosts;    /* SINGLE over TCP: 1; SENTINEL: the sentinels;
                         CLUSTER: the seeds; else 0 */
    pc_backend_host_t hosts[PC_BACKEND_ADDR_MAX]; /* hosts[0..nhosts-1] */
    int db;           /* the database to SELECT; 0 = none (always 0 for
                         CLUSTER) */
    char master[128]; /* SENTINEL: the master name; else "" */
} pc_backend_addr_t;

/*
 * Parses s (one of the forms above) into *out, which is written only on
 * success and holds no pointers (it may be copied, and outlives s).
 *
 * Returns 0; PC_EINVAL for a malformed address (NULL or empty s, an
 * unknown scheme, an empty host or list element, a bad or missing port,
 * a bad database, a missing or malformed master name, a relative Unix
 * path, a query parameter); PC_ERANGE for a part that is well formed but
 * out of bounds (a port of 0 or over 65535, a database over 1000000,
 * more than PC_BACKEND_ADDR_MAX hosts, a host, path or master name longer
 * than its field, a database other than 0 for cluster://); PC_EPERM if s
 * carries a user or password ("user:pw@", "user@", "?password=").
 *
 * On failure err (errlen bytes; may be NULL if errlen is 0) gets one
 * line for an operator, without the "--redis: " prefix, naming what is
 * wrong ("port 0 of 'r1' is out of range 1..65535"). Parts of s are
 * quoted in it, shortened and with control characters replaced; a
 * password never is, because the user-or-password check comes before
 * anything is quoted. On success err is set to "".
 */
int pc_backend_addr_parse(const char *s, pc_backend_addr_t *out, char *err, size_t errlen);

/*
 * The address as a short text for logs: "none", "127.0.0.1:6379",
 * "[::1]:6379 db 2", "unix:///run/redis.sock db 2", "sentinel mymaster
 * via 3 sentinels", "cluster via 2 seeds". Never a user or password
 * (a parsed address holds none).
 *
 * Writes at most cap bytes, always NUL-terminated when cap > 0 (a text
 * that does not fit is cut); returns the length written, without the
 * NUL (strlen(out)). Nothing is written if cap is 0.
 */
size_t pc_backend_addr_describe(const pc_backend_addr_t *a, char *out, size_t cap);

#endif
