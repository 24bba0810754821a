/*
 * pc_guard.c -- the checks every sealed message passes, in one place.
 */
#include "pc_guard.h"

#include <time.h>

/* Live streams the replay filter remembers: each member has one gossip
 * stream and one per peer connection and direction, so this allows for
 * hundreds of members. A full filter drops new streams (counted), it
 * never forgets live ones. */
#define REPLAY_STREAMS 8192

int pc_guard_init(pc_guard_t *g, pc_keyring_t *kr, uint64_t window_ms)
{
    *g = (pc_guard_t){0};
    if (kr != NULL) {
        int rc = pc_replay_new(window_ms, REPLAY_STREAMS, &g->replay);
        if (rc < 0)
            return rc;
    }
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        pc_replay_free(&g->replay);
        return PC_ENOMEM;
    }
    g->keyring = kr;
    g->on = kr != NULL;
    g->started_ms = pc_guard_wall_ms();
    return 0;
}

void pc_guard_free(pc_guard_t *g)
{
    pc_keyring_free(&g->keyring);
    pc_replay_free(&g->replay);
    pthread_mutex_destroy(&g->lock);
}

pc_keyring_t *pc_guard_swap(pc_guard_t *g, pc_keyring_t *kr)
{
    pthread_mutex_lock(&g->lock);
    pc_keyring_t *old = g->keyring;
    g->keyring = kr;
    pthread_mutex_unlock(&g->lock);
    return old;
}

void pc_guard_snapshot(pc_guard_t *g, pc_guard_stats_t *st, uint32_t *key_id, size_t *nkeys)
{
    pthread_mutex_lock(&g->lock);
    *st = g->stats;
    *key_id = g->keyring ? pc_keyring_id(g->keyring, 0) : 0;
    *nkeys = g->keyring ? pc_keyring_count(g->keyring) : 0;
    pthread_mutex_unlock(&g->lock);
}

uint64_t pc_guard_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int guard_open(pc_guard_t *g, uint8_t kind, uint8_t *msg, size_t len, uint8_t **payload,
                      size_t *plen)
{
    pc_guard_stats_t *st = &g->stats;
    if (!pc_seal_is_sealed(msg, len)) {
        st->unsealed++;
        return PC_EPROTO;
    }
    pc_seal_opened_t o;
    int rc = pc_seal_open(g->keyring, msg, len, &o);
    if (rc == PC_ENOKEY) {
        st->unknown_key++;
        return rc;
    }
    if (rc < 0) {
        st->bad_seal++;
        return rc;
    }
    if (o.kind != kind) {
        st->wrong_kind++;
        return PC_EBADREQ;
    }
    rc = o.ts_ms < g->started_ms
             ? PC_ESTALE
             : pc_replay_check(g->replay, o.stream, o.seq, o.ts_ms, pc_guard_wall_ms());
    if (rc == PC_ESTALE)
        st->stale++;
    else if (rc == PC_EREPLAY)
        st->replayed++;
    else if (rc < 0)
        st->overflow++;
    if (rc < 0)
        return rc;
    st->opened++;
    *payload = o.payload;
    *plen = o.len;
    return 0;
}

int pc_guard_open(pc_guard_t *g, uint8_t kind, uint8_t *msg, size_t len, uint8_t **payload,
                  size_t *plen)
{
    pthread_mutex_lock(&g->lock);
    int rc = guard_open(g, kind, msg, len, payload, plen);
    pthread_mutex_unlock(&g->lock);
    return rc;
}

int pc_guard_seal_frame(pc_guard_t *g, pc_seal_stream_t *st, uint8_t kind, pc_buf_t *out,
                        size_t start)
{
    pthread_mutex_lock(&g->lock);
    int rc = pc_seal_frame(g->keyring, st, kind, pc_guard_wall_ms(), out, start);
    if (rc == 0)
        g->stats.sealed++;
    pthread_mutex_unlock(&g->lock);
    return rc;
}

int pc_guard_seal(pc_guard_t *g, pc_seal_stream_t *st, uint8_t kind, const uint8_t *payload,
                  size_t len, pc_buf_t *out)
{
    pthread_mutex_lock(&g->lock);
    int rc = pc_seal(g->keyring, st, kind, pc_guard_wall_ms(), payload, len, out);
    if (rc == 0)
        g->stats.sealed++;
    pthread_mutex_unlock(&g->lock);
    return rc;
}
