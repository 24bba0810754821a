/*
 * pc_backend_probe.c -- the start-up check of the Redis behind a node
 * (pc_backend_probe in pc_backend.h): blocking hiredis, before the loops
 * run, so that a configuration Redis refuses stops the node at once with
 * a message that names the cause.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <sodium.h>

#include <hiredis/hiredis.h>

#include "pc_backend.h"
#include "pc_backend_int.h"
#include "pc_buf.h"


static redisReply *probe_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    void *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return r;
}

/* Sentinel mode: the primary's address from the first sentinel that
 * knows the master. 0, PC_EINVAL (those that answered do not know it),
 * PC_EBACKEND (none answered). */
static int probe_sentinels(const pc_backend_addr_t *a, const struct timeval *tv, char *host,
                           size_t hostlen, int *port, char *err, size_t errlen)
{
    int answered = 0;
    for (size_t i = 0; i < a->nhosts; i++) {
        redisContext *c = redisConnectWithTimeout(a->hosts[i].host, a->hosts[i].port, *tv);
        if (c == NULL || c->err) {
            redisFree(c);
            continue;
        }
        (void)redisSetTimeout(c, *tv);
        redisReply *r = probe_cmd(c, "SENTINEL get-master-addr-by-name %s", a->master);
        int found = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                    r->element[0]->type == REDIS_REPLY_STRING &&
                    r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len < hostlen;
        if (r != NULL)
            answered = 1;
        if (found) {
            memcpy(host, r->element[0]->str, r->element[0]->len);
            host[r->element[0]->len] = '\0';
            *port = atoi(r->element[1]->str);
        }
        freeReplyObject(r);
        redisFree(c);
        if (found && *port > 0 && *port <= 65535)
            return 0;
    }
    snprintf(err, errlen, answered ? "no sentinel knows a master named '%s'"
                                   : "no sentinel answered (asking for '%s')",
             a->master);
    return answered ? PC_EINVAL : PC_EBACKEND;
}

/* The checks of pc_backend_probe on one server: host:port, or the Unix
 * socket of a SINGLE address. */
static int probe_one(const pc_backend_config_t *cfg, const struct timeval tv, const char *host,
                     int port, const char *name, char *err, size_t errlen)
{
    const pc_backend_addr_t *a = cfg->addr;
    redisContext *c = a->path[0] != '\0' && a->mode == PC_BACKEND_SINGLE
                          ? redisConnectUnixWithTimeout(a->path, tv)
                          : redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        snprintf(err, errlen, "cannot connect to Redis at %s: %s", name,
                 c != NULL ? c->errstr : "out of memory");
        redisFree(c);
        return PC_EBACKEND;
    }
    (void)redisSetTimeout(c, tv);
    int rc = 0;
    redisReply *r = NULL;
    pc_buf_t auth;
    pc_buf_init(&auth, 0);
    int have = pc_cred_auth(cfg->cred, &auth);
    if (have == 1) {
        if (redisAppendFormattedCommand(c, (const char *)auth.data, auth.len) != REDIS_OK ||
            redisGetReply(c, (void **)&r) != REDIS_OK)
            r = NULL;
        sodium_memzero(auth.data, auth.len);
        if (r == NULL) {
            snprintf(err, errlen, "Redis at %s did not answer AUTH: %s", name, c->errstr);
            rc = PC_EBACKEND;
        } else if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis at %s refused the credentials: %s", name, r->str);
            rc = PC_EPERM;
        }
        freeReplyObject(r);
        r = NULL;
    }
    pc_buf_free(&auth);
    if (rc == 0 && a->db != 0) {
        r = probe_cmd(c, "SELECT %d", a->db);
        if (r == NULL) {
            snprintf(err, errlen, "Redis at %s did not answer SELECT: %s", name, c->errstr);
            rc = PC_EBACKEND;
        } else if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis at %s refused SELECT %d: %s%s", name, a->db, r->str,
                     pc_backend_refusal_hint(r));
            rc = strncmp(r->str, "NOAUTH", 6) == 0 ? PC_EPERM : PC_EINVAL;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (rc == 0) {
        r = a->mode == PC_BACKEND_SENTINEL  ? probe_cmd(c, "ROLE")
            : a->mode == PC_BACKEND_CLUSTER ? probe_cmd(c, "CLUSTER SLOTS")
                                            : probe_cmd(c, "PING");
        if (r == NULL) {
            snprintf(err, errlen, "Redis at %s did not answer: %s", name, c->errstr);
            rc = PC_EBACKEND;
        } else if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis at %s: %s%s", name, r->str, pc_backend_refusal_hint(r));
            rc = strncmp(r->str, "NOAUTH", 6) == 0 || strncmp(r->str, "WRONGPASS", 9) == 0
                     ? PC_EPERM
                 : a->mode == PC_BACKEND_CLUSTER && strstr(r->str, "cluster support disabled")
                     ? PC_EINVAL /* cluster:// names a server that is not in a cluster */
                     : PC_EBACKEND;
        } else if (a->mode == PC_BACKEND_SENTINEL &&
                   !(r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                     r->element[0]->type == REDIS_REPLY_STRING &&
                     strcmp(r->element[0]->str, "master") == 0)) {
            /* a failover in progress, most likely: the backend asks again */
            snprintf(err, errlen, "the sentinels name %s, which is not a primary (yet?)", name);
            rc = PC_EBACKEND;
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return rc;
}

/* The probe waits at most this long for a server (or --redis-timeout if
 * shorter): it is there to catch configuration mistakes, and a Redis that
 * is slow to answer must not hold up the node's start (it starts anyway
 * and keeps trying). */
#define PROBE_MAX_MS 1000

int pc_backend_probe(const pc_backend_config_t *cfg, char *err, size_t errlen)
{
    const pc_backend_addr_t *a = cfg->addr;
    uint64_t ms = cfg->timeout_ms < PROBE_MAX_MS ? cfg->timeout_ms : PROBE_MAX_MS;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
                         .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    char host[sizeof a->hosts[0].host];
    int port = 0;
    char name[sizeof host + sizeof a->master + 32];
    if (a->mode == PC_BACKEND_CLUSTER) {
        /* the first seed that answers speaks for the cluster */
        int rc = PC_EBACKEND;
        for (size_t i = 0; i < a->nhosts && rc == PC_EBACKEND; i++) {
            snprintf(name, sizeof name, "%s:%d (cluster seed)", a->hosts[i].host,
                     a->hosts[i].port);
            rc = probe_one(cfg, tv, a->hosts[i].host, a->hosts[i].port, name, err, errlen);
        }
        return rc;
    }
    if (a->mode == PC_BACKEND_SENTINEL) {
        int rc = probe_sentinels(a, &tv, host, sizeof host, &port, err, errlen);
        if (rc < 0)
            return rc;
        snprintf(name, sizeof name, "%s:%d (the primary of %s)", host, port, a->master);
    } else if (a->path[0] != '\0') {
        snprintf(name, sizeof name, "unix:%s", a->path);
    } else {
        snprintf(host, sizeof host, "%s", a->hosts[0].host);
        port = a->hosts[0].port;
        snprintf(name, sizeof name, "%s:%d", host, port);
    }
    return probe_one(cfg, tv, host, port, name, err, errlen);
}
