/*
 * pc_store_scan.c -- pc_store_scan(): the store's keys in bounded steps
 * (the contract is pc_store.h, the design docs/STORE.md §8). Part of the
 * store, apart from pc_store.c because the order of the walk is a subject
 * of its own. It uses the layouts in pc_store_int.h and, as pc_store.c
 * does, starts with do_ the names of functions that expect the caller to
 * hold the shard's lock.
 */
#include "pc_store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_store_int.h"

/*
 * scan() walks each shard in a fixed order of hash values that does not
 * depend on the table, so a table that doubles between two calls cannot
 * make it skip anything.
 *
 * An item's position in its shard is its 64-bit hash with the shard bits
 * (which are the same for the whole shard) left out, rearranged so that
 * each bucket of every table size is one contiguous range of positions:
 *
 *   position = rev32(low 32 bits) << (32 - S)  |  (high 32 bits) >> S
 *
 * where S = log2(shards) and rev32 reverses the bits, as in Redis' SCAN.
 * With 2^k buckets an item's bucket is the low k bits of the hash, i.e.
 * the top k bits of its position, so bucket b covers the positions whose
 * top k bits are rev_k(b); after a doubling that range is split in two,
 * the two new buckets, in order. The cursor is (shard, position): "resume
 * at the first item whose position is >= this". It moves only forward,
 * which is why no key comes back twice; and every position ahead of it is
 * still ahead of it whatever the table's size, which is why no key present
 * throughout is missed.
 *
 * Mid-resize, bucket b's items are in the new table's bucket b or in the
 * old bucket feeding it; both are walked and the old one filtered by the
 * hash, without moving anything (a scan changes nothing but refcounts).
 *
 * A bucket whose wanted items all fit in out[] is taken whole, with no
 * ordering and no hashing. Only the bucket where out[] runs out is taken
 * in position order, so the call can stop inside it; that needs the high
 * 32 bits, which are not stored, so SipHash runs again there (and when a
 * call resumes inside a bucket, for items whose stored bits tie with the
 * cursor's). Items with the same position -- keys sharing all 64 bits --
 * are taken together or not at all, except when they alone are more than
 * out[] holds (the exception in the header).
 */
#define SCAN_VISITS_PER_ITEM 16u

struct scan {
    pc_store_t *s;
    unsigned width;  /* bits of a position: 64 - shard_bits */
    uint64_t last;   /* the largest position */
    uint64_t now_ms;
    int (*want)(void *arg, const uint8_t *key, size_t klen);
    void *arg;
    pc_item_t **out;
    size_t max, n;   /* capacity of out[], items stored in it */
    size_t visits, max_visits;
};

static uint32_t rev32(uint32_t x)
{
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}

static unsigned log2_pow2(size_t n)
{
    unsigned k = 0;

    while (((size_t)1 << k) < n)
        k++;
    return k;
}

/* The full position of an item in its shard (runs SipHash). */
static uint64_t scan_pos(const struct scan *sc, const pc_item_t *it)
{
    unsigned sb = sc->s->shard_bits;
    uint32_t hi = (uint32_t)(key_hash(sc->s, it->data, it->klen) >> 32);

    return ((uint64_t)rev32(it->hash) << (32 - sb)) | (hi >> sb);
}

/* Whether an item's position is >= pos; hashes only when the stored bits tie. */
static bool scan_at_or_after(const struct scan *sc, const pc_item_t *it, uint64_t pos)
{
    uint32_t a = rev32(it->hash), b = (uint32_t)(pos >> (sc->width - 32));

    if (a != b)
        return a > b;
    return scan_pos(sc, it) >= pos;
}

static bool scan_wanted(const struct scan *sc, const pc_item_t *it)
{
    return !sc->want || sc->want(sc->arg, it->data, it->klen) != 0;
}

static void scan_take(struct scan *sc, pc_item_t *it)
{
    /* The table's reference keeps it alive while we hold the lock. */
    atomic_fetch_add_explicit(&it->refs, 1, memory_order_relaxed);
    sc->out[sc->n++] = it;
}

/*
 * The chains holding bucket b of the current table: its own and, while
 * resizing, the old bucket feeding it (whose items also belong to b's
 * sibling: callers filter with hash & (nb - 1) == b).
 */
static unsigned do_scan_chains(const struct shard *sh, size_t b, pc_item_t *chains[2])
{
    chains[0] = sh->tab[b];
    if (!sh->old)
        return 1;
    chains[1] = sh->old[b & (sh->old_nb - 1)];
    return 2;
}

static bool do_scan_candidate(const struct scan *sc, const struct shard *sh, const pc_item_t *it,
                              size_t b)
{
    return (it->hash & (sh->nb - 1)) == b && !item_expired(it, sc->now_ms);
}

/*
 * Takes bucket b's wanted items in position order, starting at *pos, until
 * out[] is full. Called when they do not all fit, so it always ends the
 * call: false with *pos where the next call resumes, or true if that is
 * past the shard's last position.
 */
static bool do_scan_ordered(struct scan *sc, const struct shard *sh, size_t b, uint64_t *pos)
{
    pc_item_t *chains[2];
    unsigned nchains = do_scan_chains(sh, b, chains);
    uint64_t lo = *pos;

    for (;;) {
        uint64_t least = 0;
        size_t group = 0, room = sc->max - sc->n;
        bool found = false;

        /* The least position >= lo in the bucket... */
        for (unsigned c = 0; c < nchains; c++) {
            for (pc_item_t *it = chains[c]; it; it = it->hnext) {
                uint64_t p;

                sc->visits++;
                if (!do_scan_candidate(sc, sh, it, b))
                    continue;
                p = scan_pos(sc, it);
                if (p >= lo && (!found || p < least)) {
                    least = p;
                    found = true;
                }
            }
        }
        if (!found) {
            /* Only if want() changed its mind; the bucket is done either way. */
            *pos = lo;
            return false;
        }
        /* ...and how many wanted items share it. */
        for (unsigned c = 0; c < nchains; c++)
            for (pc_item_t *it = chains[c]; it; it = it->hnext)
                if (do_scan_candidate(sc, sh, it, b) && scan_pos(sc, it) == least &&
                    scan_wanted(sc, it))
                    group++;
        if (group > room && sc->n > 0) {
            *pos = least; /* the next call starts with this group */
            return false;
        }
        /* All of the group, or (the documented exception) the first `room`. */
        for (unsigned c = 0; c < nchains; c++)
            for (pc_item_t *it = chains[c]; it && sc->n < sc->max; it = it->hnext)
                if (do_scan_candidate(sc, sh, it, b) && scan_pos(sc, it) == least &&
                    scan_wanted(sc, it))
                    scan_take(sc, it);
        if (least == sc->last)
            return true;
        lo = least + 1;
        if (sc->n == sc->max) {
            *pos = lo;
            return false;
        }
    }
}

/*
 * Takes bucket b's wanted items at positions >= *pos (from the bucket's
 * start if `from_start`). True when the whole bucket was taken, else the
 * call ends with *pos where the next one resumes (see do_scan_ordered).
 */
static bool do_scan_bucket(struct scan *sc, const struct shard *sh, size_t b, uint64_t *pos,
                           bool from_start, bool *shard_done)
{
    pc_item_t *chains[2];
    unsigned nchains = do_scan_chains(sh, b, chains);
    size_t room = sc->max - sc->n, wanted = 0;

    /* Optimistically, straight into out[]: refs are only taken if all fit. */
    for (unsigned c = 0; c < nchains; c++) {
        sc->visits++;
        for (pc_item_t *it = chains[c]; it; it = it->hnext) {
            sc->visits++;
            if (!do_scan_candidate(sc, sh, it, b) ||
                (!from_start && !scan_at_or_after(sc, it, *pos)) || !scan_wanted(sc, it))
                continue;
            if (wanted < room)
                sc->out[sc->n + wanted] = it;
            wanted++;
        }
    }
    if (wanted <= room) {
        for (size_t i = 0; i < wanted; i++)
            scan_take(sc, sc->out[sc->n]); /* stores it where it already is */
        return true;
    }
    *shard_done = do_scan_ordered(sc, sh, b, pos);
    return false;
}

/*
 * Scans one shard from *pos. True when its last bucket is done; false when
 * out[] is full or the visit budget is spent, with *pos where to resume.
 * The first bucket is always done (visits start at 0), so every call makes
 * progress.
 */
static bool do_scan_shard(struct scan *sc, const struct shard *sh, uint64_t *pos)
{
    unsigned k = log2_pow2(sh->nb), shift = sc->width - k;

    for (;;) {
        uint64_t t = *pos >> shift;
        size_t b = rev32((uint32_t)t) >> (32 - k);
        bool from_start = (*pos & (((uint64_t)1 << shift) - 1)) == 0, shard_done = false;

        if (sc->n == sc->max || sc->visits >= sc->max_visits)
            return false;
        if (!do_scan_bucket(sc, sh, b, pos, from_start, &shard_done))
            return shard_done;
        if (t + 1 == ((uint64_t)1 << k))
            return true;
        *pos = (t + 1) << shift;
    }
}

size_t pc_store_scan(pc_store_t *s, uint64_t *cursor, uint64_t now_ms,
                     int (*want)(void *arg, const uint8_t *key, size_t klen), void *arg,
                     pc_item_t **out, size_t max)
{
    struct scan sc;
    unsigned sb, shard;
    uint64_t pos;

    if (!s || !cursor || !out || max == 0)
        return 0;
    sb = s->shard_bits;
    sc = (struct scan){
        .s = s,
        .width = 64 - sb,
        .last = UINT64_MAX >> sb,
        .now_ms = now_ms,
        .want = want,
        .arg = arg,
        .out = out,
        .max = max,
        .max_visits = max > SIZE_MAX / SCAN_VISITS_PER_ITEM ? SIZE_MAX
                                                            : max * SCAN_VISITS_PER_ITEM,
    };
    /* The cursor: the shard in the top S bits, the position below. */
    shard = sb ? (unsigned)(*cursor >> (64 - sb)) : 0;
    pos = *cursor & sc.last;
    for (;;) {
        struct shard *sh = &s->shards[shard];
        bool done;

        pthread_mutex_lock(&sh->lock);
        done = do_scan_shard(&sc, sh, &pos);
        pthread_mutex_unlock(&sh->lock);
        if (done) {
            if (++shard == s->nshards) {
                *cursor = 0;
                break;
            }
            pos = 0;
        }
        if (!done || sc.n == sc.max || sc.visits >= sc.max_visits) {
            *cursor = (sb ? (uint64_t)shard << (64 - sb) : 0) | pos;
            break;
        }
    }
    return sc.n;
}
