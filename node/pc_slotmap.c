/*
 * pc_slotmap.c -- the slot map of a Redis Cluster (see pc_slotmap.h).
 *
 * A CLUSTER SLOTS reply is read twice. The first pass checks all of it
 * and counts the ranges with a reachable primary, touching nothing of the
 * caller's; only then is memory taken, and the second pass, which cannot
 * fail, fills the map. So a reply is accepted or refused whole, and *out
 * is never half-written.
 *
 * Bounds come from the slots, not from the reply's counts: ranges are
 * non-empty and may not overlap, so a reply that passes has at most 16384
 * ranges, hence at most 16384 primaries, and an index fits a uint16_t
 * below PC_SLOTMAP_NONE. A reply claiming more ranges is refused at the
 * 16385th, before anything is allocated for it.
 *
 * Primaries are told apart by host:port through a small open-addressing
 * table that lives for one call, so a reply with thousands of primaries
 * costs linear time, not a comparison of every pair.
 */
#include "pc_slotmap.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "pc_rkey.h"

_Static_assert(PC_SLOTMAP_SLOTS == PC_RKEY_SLOTS, "a slot map covers Redis' slots");
_Static_assert(PC_SLOTMAP_NONE >= PC_SLOTMAP_SLOTS, "no shard index reads as NONE");

/* What one node entry of a reply says. */
typedef struct node {
    const char *host; /* NULL: the server that was asked */
    size_t hlen;
    int unknown;      /* host "?": nowhere to go */
    int port;
} node_t;

/* 1 if the n bytes at s are a host as pc_slotmap.h defines one. */
static int host_ok(const char *s, size_t n)
{
    if (n == 0 || n > PC_SLOTMAP_HOST_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c <= ' ' || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Element i of array a, or NULL if there is none. */
static const redisReply *elem(const redisReply *a, size_t i)
{
    return i < a->elements ? a->element[i] : NULL;
}

/* Reads a node entry [host, port, id, ...] into *out; 0 if malformed. */
static int node_read(const redisReply *n, node_t *out)
{
    const redisReply *h, *p, *id;

    if (n == NULL || n->type != REDIS_REPLY_ARRAY || n->elements < 2)
        return 0;
    h = elem(n, 0);
    p = elem(n, 1);
    id = elem(n, 2);
    if (h == NULL || p == NULL)
        return 0;
    out->host = NULL;
    out->hlen = 0;
    out->unknown = 0;
    if (h->type == REDIS_REPLY_STRING && h->len > 0) {
        if (!host_ok(h->str, h->len))
            return 0;
        out->unknown = h->len == 1 && h->str[0] == PC_SLOTMAP_HOST_UNKNOWN[0];
        out->host = h->str;
        out->hlen = h->len;
    } else if (h->type != REDIS_REPLY_STRING && h->type != REDIS_REPLY_NIL) {
        return 0;
    }
    if (p->type != REDIS_REPLY_INTEGER || p->integer < 1 || p->integer > 65535)
        return 0;
    out->port = (int)p->integer;
    /* The node id, since Redis 3.2 (absent before); what follows it is
     * metadata for other clients. */
    if (n->elements > 2 && (id == NULL || id->type != REDIS_REPLY_STRING))
        return 0;
    return 1;
}

/* Reads a range [start, end, primary, replica...]; 0 if malformed. */
static int range_read(const redisReply *e, unsigned *start, unsigned *end, node_t *primary)
{
    const redisReply *s, *t;

    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 3)
        return 0;
    s = elem(e, 0);
    t = elem(e, 1);
    if (s == NULL || t == NULL || s->type != REDIS_REPLY_INTEGER ||
        t->type != REDIS_REPLY_INTEGER)
        return 0;
    if (s->integer < 0 || t->integer >= (long long)PC_SLOTMAP_SLOTS || s->integer > t->integer)
        return 0;
    *start = (unsigned)s->integer;
    *end = (unsigned)t->integer;
    for (size_t i = 2; i < e->elements; i++) {
        node_t n;

        if (!node_read(e->element[i], &n))
            return 0;
        if (i == 2)
            *primary = n;
    }
    return 1;
}

/* FNV-1a of host and port. */
static size_t shard_hash(const char *host, size_t hlen, int port)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < hlen; i++)
        h = (h ^ (unsigned char)host[i]) * 16777619u;
    h = (h ^ ((unsigned)port & 0xff)) * 16777619u;
    h = (h ^ ((unsigned)port >> 8)) * 16777619u;
    return h;
}

/* The index of host:port in shards[0..*n), appending it if new. tab
 * (mask + 1 entries, PC_SLOTMAP_NONE when free) is at most half full, so
 * the probe ends. */
static uint16_t shard_intern(pc_slotmap_shard_t *shards, size_t *n, uint16_t *tab, size_t mask,
                             const char *host, size_t hlen, int port)
{
    for (size_t h = shard_hash(host, hlen, port) & mask;; h = (h + 1) & mask) {
        uint16_t i = tab[h];

        if (i == PC_SLOTMAP_NONE) {
            i = (uint16_t)*n;
            memcpy(shards[i].host, host, hlen);
            shards[i].host[hlen] = '\0';
            shards[i].port = port;
            tab[h] = i;
            (*n)++;
            return i;
        }
        if (shards[i].port == port && strncmp(shards[i].host, host, hlen) == 0 &&
            shards[i].host[hlen] == '\0')
            return i;
    }
}

void pc_slotmap_init(pc_slotmap_t *m)
{
    m->nshards = 0;
    m->shards = NULL;
    memset(m->owner, 0xff, sizeof(m->owner)); /* every owner PC_SLOTMAP_NONE */
}

int pc_slotmap_from_slots(const redisReply *r, const char *asked_host, pc_slotmap_t *out)
{
    uint8_t seen[PC_SLOTMAP_SLOTS / 8];
    size_t asked_len, nowned = 0, cap, n = 0;
    pc_slotmap_shard_t *shards = NULL;
    uint16_t *tab;

    if (r == NULL || asked_host == NULL || out == NULL)
        return PC_EINVAL;
    asked_len = strnlen(asked_host, PC_SLOTMAP_HOST_MAX + 1);
    if (!host_ok(asked_host, asked_len))
        return PC_EINVAL;
    if (r->type != REDIS_REPLY_ARRAY)
        return PC_EPROTO;

    /* Pass 1: the whole reply is well formed and its ranges disjoint. */
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < r->elements; i++) {
        unsigned start, end;
        node_t p;

        if (!range_read(r->element[i], &start, &end, &p))
            return PC_EPROTO;
        for (unsigned s = start; s <= end; s++) {
            if (seen[s / 8] & (1u << (s % 8)))
                return PC_EPROTO;
            seen[s / 8] |= (uint8_t)(1u << (s % 8));
        }
        if (!p.unknown)
            nowned++;
    }

    /* Room for every primary being new, and a table at most half full. */
    for (cap = 2; cap < 2 * nowned; cap *= 2)
        ;
    tab = malloc(cap * sizeof(*tab));
    if (nowned > 0)
        shards = malloc(nowned * sizeof(*shards));
    if (tab == NULL || (nowned > 0 && shards == NULL)) {
        free(tab);
        free(shards);
        return PC_ENOMEM;
    }
    memset(tab, 0xff, cap * sizeof(*tab));

    /* Pass 2: cannot fail. */
    memset(out->owner, 0xff, sizeof(out->owner));
    for (size_t i = 0; i < r->elements; i++) {
        unsigned start, end;
        node_t p;
        uint16_t idx;

        if (!range_read(r->element[i], &start, &end, &p) || p.unknown)
            continue; /* (pass 1 has refused a malformed range) */
        if (p.host == NULL)
            idx = shard_intern(shards, &n, tab, cap - 1, asked_host, asked_len, p.port);
        else
            idx = shard_intern(shards, &n, tab, cap - 1, p.host, p.hlen, p.port);
        for (unsigned s = start; s <= end; s++)
            out->owner[s] = idx;
    }
    free(tab);
    if (n == 0) {
        free(shards);
        shards = NULL;
    } else if (n < nowned) {
        /* One primary named in several ranges: give back what it did not
         * need. A failure to shrink leaves the larger block, still valid. */
        pc_slotmap_shard_t *less = realloc(shards, n * sizeof(*shards));

        if (less != NULL)
            shards = less;
    }
    out->nshards = n;
    out->shards = shards;
    return 0;
}

void pc_slotmap_free(pc_slotmap_t *m)
{
    if (m == NULL)
        return;
    free(m->shards);
    pc_slotmap_init(m);
}

size_t pc_slotmap_covered(const pc_slotmap_t *m)
{
    size_t n = 0;

    if (m == NULL)
        return 0;
    for (unsigned s = 0; s < PC_SLOTMAP_SLOTS; s++)
        n += m->owner[s] != PC_SLOTMAP_NONE;
    return n;
}

static int shard_equal(const pc_slotmap_shard_t *a, const pc_slotmap_shard_t *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

int pc_slotmap_same(const pc_slotmap_t *a, const pc_slotmap_t *b)
{
    /* Owners come in long runs: remember the last pair found equal. */
    unsigned last_a = PC_SLOTMAP_NONE, last_b = PC_SLOTMAP_NONE;

    if (a == NULL || b == NULL)
        return a == b;
    for (unsigned s = 0; s < PC_SLOTMAP_SLOTS; s++) {
        unsigned ia = a->owner[s], ib = b->owner[s];

        if (ia == PC_SLOTMAP_NONE || ib == PC_SLOTMAP_NONE) {
            if (ia != ib)
                return 0;
            continue;
        }
        if (ia == last_a && ib == last_b)
            continue;
        if (!shard_equal(&a->shards[ia], &b->shards[ib]))
            return 0;
        last_a = ia;
        last_b = ib;
    }
    return 1;
}

int pc_slotmap_find(const pc_slotmap_t *m, const char *host, int port)
{
    if (m == NULL || host == NULL)
        return -1;
    for (size_t i = 0; i < m->nshards; i++)
        if (m->shards[i].port == port && strcmp(m->shards[i].host, host) == 0)
            return (int)i;
    return -1;
}

unsigned pc_slotmap_owner(const pc_slotmap_t *m, unsigned slot)
{
    if (m == NULL || slot >= PC_SLOTMAP_SLOTS)
        return PC_SLOTMAP_NONE;
    return m->owner[slot];
}

unsigned pc_slotmap_key_owner(const pc_slotmap_t *m, const void *key, size_t len)
{
    return pc_slotmap_owner(m, pc_rkey_slot(key, len));
}

/* The decimal number of 1..maxdigits digits at s (n bytes) in *v; 0 if
 * it is not one. */
static int decimal(const char *s, size_t n, size_t maxdigits, long *v)
{
    long x = 0;

    if (n == 0 || n > maxdigits)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 1;
}

int pc_slotmap_redirect(const char *err, size_t len, int *ask, unsigned *slot, char *host,
                        size_t hostlen, int *port)
{
    const char *p, *end, *sp, *colon = NULL, *h;
    size_t hl;
    long s, pt;
    int is_ask;

    if (err == NULL || ask == NULL || slot == NULL || host == NULL || hostlen == 0 ||
        port == NULL)
        return PC_EINVAL;
    end = err + len;
    if (len >= 6 && memcmp(err, "MOVED ", 6) == 0) {
        is_ask = 0;
        p = err + 6;
    } else if (len >= 4 && memcmp(err, "ASK ", 4) == 0) {
        is_ask = 1;
        p = err + 4;
    } else {
        return PC_EPROTO;
    }

    sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL || !decimal(p, (size_t)(sp - p), 5, &s) || s >= (long)PC_SLOTMAP_SLOTS)
        return PC_EPROTO;

    /* host:port, split at the last ':', since a bare IPv6 host has its own. */
    for (const char *q = sp + 1; q < end; q++)
        if (*q == ':')
            colon = q;
    if (colon == NULL || !decimal(colon + 1, (size_t)(end - colon - 1), 5, &pt) || pt < 1 ||
        pt > 65535)
        return PC_EPROTO;
    h = sp + 1;
    hl = (size_t)(colon - h);
    if (hl > 0 && h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']')
            return PC_EPROTO;
        h++;
        hl -= 2;
    }
    for (size_t i = 0; i < hl; i++)
        if (h[i] == '[' || h[i] == ']')
            return PC_EPROTO;
    if (hl > 0 && !host_ok(h, hl))
        return PC_EPROTO;
    if (hl >= hostlen)
        return PC_EPROTO;

    memcpy(host, h, hl);
    host[hl] = '\0';
    *ask = is_ask;
    *slot = (unsigned)s;
    *port = (int)pt;
    return 0;
}
