/*
 * pc_sources.c -- per-source accounting (see pc_sources.h): an open-
 * addressing hash table, linear probing, at most half full, with
 * backward-shift deletion (no tombstones), under one mutex.
 */
#include "pc_sources.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pc_error.h"

typedef struct entry {
    pc_source_t key;
    uint32_t conns;
    uint32_t fail_sec; /* the second (now_ms / 1000) fail_n counts in */
    uint32_t fail_n;
    uint32_t prev_n;   /* failures in the second before fail_sec */
    uint8_t used;
} entry_t;

struct pc_sources {
    pthread_mutex_t lock;
    entry_t *slots;
    size_t mask;     /* slots - 1, a power of two minus one */
    size_t count;    /* entries used */
    size_t capacity; /* entries allowed */
    uint8_t hashkey[crypto_shorthash_KEYBYTES];
};

void pc_source_of(const struct sockaddr *sa, pc_source_t *out)
{
    memset(out, 0, sizeof *out);
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out->b[10] = out->b[11] = 0xff; /* as ::ffff:a.b.c.d */
        memcpy(out->b + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a = in6->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, sizeof mapped) == 0)
            memcpy(out->b, a, 16); /* IPv4-mapped: the IPv4 address */
        else
            memcpy(out->b, a, 8); /* the /64 */
    }
}

int pc_sources_new(size_t capacity, pc_sources_t **out)
{
    if (capacity == 0 || capacity > SIZE_MAX / 4 / sizeof(entry_t))
        return PC_EINVAL;
    size_t n = 16;
    while (n < 2 * capacity)
        n *= 2;
    pc_sources_t *t = calloc(1, sizeof *t);
    if (t == NULL || (t->slots = calloc(n, sizeof *t->slots)) == NULL) {
        free(t);
        return PC_ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->mask = n - 1;
    t->capacity = capacity;
    randombytes_buf(t->hashkey, sizeof t->hashkey);
    *out = t;
    return 0;
}

void pc_sources_free(pc_sources_t **tp)
{
    pc_sources_t *t = *tp;
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t->slots);
    free(t);
    *tp = NULL;
}

static size_t home(const pc_sources_t *t, const pc_source_t *k)
{
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, k->b, sizeof k->b, t->hashkey);
    return (size_t)h & t->mask;
}

/* The slot holding k, or the empty slot where it would go. */
static size_t find(const pc_sources_t *t, const pc_source_t *k)
{
    size_t i = home(t, k);
    while (t->slots[i].used && memcmp(&t->slots[i].key, k, sizeof *k) != 0)
        i = (i + 1) & t->mask;
    return i;
}

/* Empties slot i and shifts back the entries after it that probed past
 * it, so every entry stays reachable from its home slot. */
static void erase(pc_sources_t *t, size_t i)
{
    size_t j = i;
    t->slots[i].used = 0;
    t->count--;
    for (;;) {
        j = (j + 1) & t->mask;
        if (!t->slots[j].used)
            return;
        size_t h = home(t, &t->slots[j].key);
        /* j's entry may fill the hole at i unless its home lies
         * cyclically in (i, j] */
        if (i <= j ? (h > i && h <= j) : (h > i || h <= j))
            continue;
        t->slots[i] = t->slots[j];
        t->slots[j].used = 0;
        i = j;
    }
}

/* Failures in second `sec` and the one before it. A second before
 * fail_sec (a loop whose clock is behind) counts as fail_sec. */
static uint32_t recent(const entry_t *e, uint32_t sec)
{
    if (sec <= e->fail_sec)
        return e->fail_n + e->prev_n;
    return sec == e->fail_sec + 1 ? e->fail_n : 0;
}

static int idle(const entry_t *e, uint32_t sec)
{
    return e->conns == 0 && recent(e, sec) == 0;
}

/* Drops every source with no connection and no failure in the last two
 * seconds. */
static void purge(pc_sources_t *t, uint32_t sec)
{
    for (size_t i = 0; i <= t->mask;) {
        if (t->slots[i].used && idle(&t->slots[i], sec))
            erase(t, i); /* i now holds what shifted back: look again */
        else
            i++;
    }
}

int pc_sources_open(pc_sources_t *t, const pc_source_t *src, uint32_t max, uint64_t now_ms)
{
    uint32_t sec = (uint32_t)(now_ms / 1000);
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    size_t i = find(t, src);
    if (!t->slots[i].used) {
        if (t->count >= t->capacity) {
            purge(t, sec);
            i = find(t, src);
        }
        if (t->count >= t->capacity) {
            rc = PC_ENOMEM;
            goto out;
        }
        memset(&t->slots[i], 0, sizeof t->slots[i]);
        t->slots[i].key = *src;
        t->slots[i].used = 1;
        t->count++;
    }
    if (max > 0 && t->slots[i].conns >= max)
        rc = PC_EBUSY;
    else
        t->slots[i].conns++;
out:
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void pc_sources_close(pc_sources_t *t, const pc_source_t *src, uint64_t now_ms)
{
    pthread_mutex_lock(&t->lock);
    size_t i = find(t, src);
    if (t->slots[i].used && t->slots[i].conns > 0 &&
        --t->slots[i].conns == 0 && idle(&t->slots[i], (uint32_t)(now_ms / 1000)))
        erase(t, i);
    pthread_mutex_unlock(&t->lock);
}

uint32_t pc_sources_conns(pc_sources_t *t, const pc_source_t *src)
{
    pthread_mutex_lock(&t->lock);
    size_t i = find(t, src);
    uint32_t n = t->slots[i].used ? t->slots[i].conns : 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}

uint32_t pc_sources_auth_fail(pc_sources_t *t, const pc_source_t *src, uint64_t now_ms)
{
    uint32_t sec = (uint32_t)(now_ms / 1000), n = 1;
    pthread_mutex_lock(&t->lock);
    size_t i = find(t, src);
    if (t->slots[i].used) {
        entry_t *e = &t->slots[i];
        if (sec > e->fail_sec) { /* loops' clocks differ: never back */
            e->prev_n = sec == e->fail_sec + 1 ? e->fail_n : 0;
            e->fail_sec = sec;
            e->fail_n = 0;
        }
        n = ++e->fail_n;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

uint32_t pc_sources_auth_recent(pc_sources_t *t, const pc_source_t *src, uint64_t now_ms)
{
    uint32_t sec = (uint32_t)(now_ms / 1000), n = 0;
    pthread_mutex_lock(&t->lock);
    size_t i = find(t, src);
    if (t->slots[i].used)
        n = recent(&t->slots[i], sec);
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t pc_sources_count(pc_sources_t *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}
