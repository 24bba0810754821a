/*
 * pc_handoff.c -- streaming moved keys to their new owners (pc_handoff.h).
 */
#include "pc_handoff.h"

#include <stdlib.h>
#include <string.h>

#include "pc_loops.h"
#include "pc_route.h"
#include "pc_slots.h"

/* Entries per batch, bytes per batch, batches in flight, items examined
 * per scan step, the pause before streaming starts, and how a batch is
 * sent again when the receiver has not yet heard of the new ring (it
 * answers RETRY: what it stored before gaining the slot would be dropped
 * at the gain, so it stores nothing early). */
#define HANDOFF_BATCH 128
#define HANDOFF_BATCH_BYTES (256 * 1024)
#define HANDOFF_INFLIGHT 4
#define HANDOFF_STEP 256
#define HANDOFF_DELAY_MS 20
#define HANDOFF_TICK_MS 5
#define HANDOFF_RESEND_MS 100
#define HANDOFF_TRIES 30

/* One batch on its way (kept until answered, to send again). */
typedef struct hsend {
    struct hsend *next;
    pc_loop_t *core;
    char *addr;
    uint32_t tries;
    uint64_t when; /* send again at */
    pc_buf_t frame;
} hsend_t;

typedef struct hbatch {
    uint32_t n;
    size_t bytes;
    pc_item_t *items[HANDOFF_BATCH];
} hbatch_t;

typedef struct pc_handoff {
    /* Per slot, 1 + the index in addrs of the member it goes to (0 = not
     * moving; PC_HANDOFF_PURGE = dropped). NULL: no hand-off planned. */
    uint16_t *target;
    char **addrs;
    size_t naddrs;
    hbatch_t *batches; /* one per address */
    uint64_t cursor;
    int scanning;
    unsigned inflight;
    hsend_t *resend; /* batches to send again, unordered */
    uint64_t started;
    uint64_t sent0; /* stats.handoff_sent when it started */
    uint64_t rate;  /* bytes per second */
    double tokens;
    uint64_t last_ms;
    uv_timer_t timer;
    int timer_open;
    void (*done)(void *);
    void *done_arg;
} pc_handoff_t;

size_t pc_handoff_plan(const pc_ring_t *nw, long self, const uint8_t *lost, const uint16_t *prev,
                       int send, uint16_t *target, uint32_t *dest, size_t *npurge)
{
    size_t ndest = 0;
    *npurge = 0;
    for (uint32_t slot = 0; slot < PC_RING_SLOTS; slot++) {
        uint16_t was = prev ? prev[slot] : 0;
        int moving = (lost[slot] & PC_SLOT_HAND_OFF) || (was != 0 && was != PC_HANDOFF_PURGE);
        int purge = (lost[slot] & PC_SLOT_PURGE) || was == PC_HANDOFF_PURGE;
        target[slot] = 0;
        if (moving && send) {
            long o = pc_ring_slot_owner(nw, slot);
            if (o >= 0 && o != self) {
                if (dest[o] == 0)
                    dest[o] = (uint32_t)++ndest;
                target[slot] = (uint16_t)dest[o];
                continue;
            }
        }
        if ((moving || purge) && pc_route_role(nw, self, slot) == PC_ROLE_NONE) {
            target[slot] = PC_HANDOFF_PURGE;
            (*npurge)++;
        }
    }
    return ndest;
}

int pc_handoff_new(pc_loop_t *core, uint64_t bytes_per_s)
{
    pc_handoff_t *h = calloc(1, sizeof *h);
    if (h == NULL)
        return PC_ENOMEM;
    h->rate = bytes_per_s;
    core->handoff = h;
    return 0;
}

static void hsend_free(hsend_t *s)
{
    free(s->addr);
    pc_buf_free(&s->frame);
    free(s);
}

/* Drops the plan (items batched and not sent are released). */
static void handoff_clear(pc_loop_t *core)
{
    pc_handoff_t *h = core->handoff;
    for (size_t t = 0; t < h->naddrs; t++) {
        hbatch_t *b = &h->batches[t];
        for (uint32_t i = 0; i < b->n; i++)
            pc_store_release(core->store, b->items[i]);
        free(h->addrs[t]);
    }
    free(h->addrs);
    free(h->batches);
    free(h->target);
    h->addrs = NULL;
    h->batches = NULL;
    h->target = NULL;
    h->naddrs = 0;
    h->scanning = 0;
}

void pc_handoff_free(pc_loop_t *core)
{
    pc_handoff_t *h = core->handoff;
    if (h == NULL)
        return;
    handoff_clear(core);
    while (h->resend) {
        hsend_t *s = h->resend;
        h->resend = s->next;
        hsend_free(s);
    }
    free(h);
    core->handoff = NULL;
}

int pc_handoff_active(const pc_loop_t *l) { return l->handoff && l->handoff->target != NULL; }

int pc_handoff_idle(const pc_loop_t *l)
{
    const pc_handoff_t *h = l->handoff;
    return h == NULL || (h->target == NULL && h->resend == NULL && h->inflight == 0);
}

static void handoff_sent_cb(void *arg, int err, const uint8_t *body, size_t len)
{
    hsend_t *s = arg;
    pc_loop_t *core = s->core;
    pc_handoff_t *h = core->handoff;
    h->inflight--;
    pc_response_t resp;
    if (err == 0 && pc_proto_decode_response(core->pdec, body, len, &resp) != 0)
        err = PC_EPROTO;
    if (err == 0 && resp.status == PC_ST_RETRY && ++s->tries < HANDOFF_TRIES &&
        !core->shutting_down) {
        s->when = pc_loop_now(core) + HANDOFF_RESEND_MS;
        s->next = h->resend;
        h->resend = s;
        return;
    }
    if (err != 0 || resp.status != PC_ST_OK)
        core->stats.handoff_errors++;
    hsend_free(s);
}

/* Sends (or sends again) a batch; 0 or the peer pool's error. */
static int hsend_go(pc_loop_t *core, hsend_t *s)
{
    int rc = pc_peer_request(core->peers, s->addr, s->frame.data, s->frame.len, handoff_sent_cb,
                             s);
    if (rc == 0)
        core->handoff->inflight++;
    return rc;
}

static void batch_flush(pc_loop_t *core, size_t t)
{
    pc_handoff_t *h = core->handoff;
    hbatch_t *b = &h->batches[t];
    if (b->n == 0)
        return;
    pc_repl_entry_t ents[HANDOFF_BATCH];
    uint64_t now = pc_loop_now(core);
    for (uint32_t i = 0; i < b->n; i++) {
        const pc_item_t *it = b->items[i];
        ents[i] = (pc_repl_entry_t){
            .key = {pc_item_key(it), (uint32_t)pc_item_klen(it)},
            .value = {pc_item_value(it), (uint32_t)pc_item_vlen(it)},
            .has_value = 1,
            .flags = pc_item_flags(it),
            .version = pc_item_version(it),
            .ttl_ms = pc_loop_ttl_left(pc_item_expire(it), now),
        };
    }
    pc_request_t rq = {.op = PC_OP_REPLICATE, .mode = PC_REPL_HANDOFF,
                       .from = {(const uint8_t *)core->name, (uint32_t)strlen(core->name)},
                       .nentries = b->n, .entries = ents};
    hsend_t *s = calloc(1, sizeof *s);
    int rc = PC_ENOMEM;
    if (s != NULL && (s->addr = strdup(h->addrs[t])) != NULL) {
        s->core = core;
        pc_buf_init(&s->frame, 0);
        rc = pc_proto_encode_request(&s->frame, &rq);
        if (rc == 0)
            rc = hsend_go(core, s);
    }
    if (rc == 0) {
        core->stats.handoff_sent += b->n;
        h->tokens -= (double)b->bytes;
    } else {
        if (s)
            hsend_free(s);
        core->stats.handoff_errors++;
    }
    for (uint32_t i = 0; i < b->n; i++)
        pc_store_release(core->store, b->items[i]);
    b->n = 0;
    b->bytes = 0;
}

static void handoff_finished(pc_loop_t *core)
{
    pc_handoff_t *h = core->handoff;
    pc_log_info(core->log, "hand-off done: %llu entries sent in %llu ms",
                (unsigned long long)(core->stats.handoff_sent - h->sent0),
                (unsigned long long)(pc_loop_now(core) - h->started));
    handoff_clear(core);
    while (h->resend) { /* given up on (leaving in a hurry) */
        hsend_t *s = h->resend;
        h->resend = s->next;
        core->stats.handoff_errors++;
        hsend_free(s);
    }
    core->stats.handoffs++;
    if (h->timer_open)
        uv_timer_stop(&h->timer);
    if (h->done) {
        void (*done)(void *) = h->done;
        h->done = NULL;
        done(h->done_arg);
    }
}

/* A leave's hand-off has the first half of the stop: the drain the rest. */
static uint64_t stop_handoff_until(const pc_loop_t *core)
{
    uint64_t b = atomic_load(&core->sh->stop_began);
    if (b == 0)
        return core->handoff->started + core->set.shutdown_timeout_ms / 2;
    return b + core->set.shutdown_timeout_ms / 2;
}

static int want_key(void *arg, const uint8_t *k, size_t n)
{
    const pc_handoff_t *h = arg;
    return h->target[pc_ring_slot(k, n)] != 0;
}

static void handoff_step(uv_timer_t *t)
{
    pc_loop_t *core = t->data;
    pc_handoff_t *h = core->handoff;
    uint64_t now = pc_loop_now(core);
    if (h->done && now >= stop_handoff_until(core)) {
        /* Leaving: do not hold the shutdown hostage to a slow receiver, or
         * to home loops that cannot drain (a Redis that stopped answering). */
        pc_log_warn(core->log, "hand-off: not done after %llu ms (half of --shutdown-timeout); "
                    "leaving anyway", (unsigned long long)(now - h->started));
        handoff_finished(core);
        return;
    }
    /* Writes the home loops still have in flight land in the store before
     * the scan reads it (the homes' drain). */
    if (core->draining)
        return;
    h->tokens += (double)(now - h->last_ms) * (double)h->rate / 1000.0;
    if (h->tokens > (double)h->rate)
        h->tokens = (double)h->rate; /* at most a second's burst */
    h->last_ms = now;
    /* Batches the receiver was not ready for, when their time comes. */
    for (hsend_t **pp = &h->resend; *pp;) {
        hsend_t *s = *pp;
        if (s->when > now) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        if (hsend_go(core, s) < 0) {
            core->stats.handoff_errors++;
            hsend_free(s);
        }
    }
    /* A few scan steps per tick: the loop keeps serving in between. */
    for (int rounds = 0; rounds < 8 && h->scanning && h->inflight < HANDOFF_INFLIGHT &&
                         (h->tokens > 0 || h->naddrs == 0);
         rounds++) {
        pc_item_t *items[HANDOFF_STEP];
        size_t n = pc_store_scan(core->store, &h->cursor, now, want_key, h, items, HANDOFF_STEP);
        for (size_t i = 0; i < n; i++) {
            const pc_item_t *it = items[i];
            uint32_t slot = pc_ring_slot(pc_item_key(it), pc_item_klen(it));
            uint16_t dst = h->target[slot];
            if (dst != PC_HANDOFF_PURGE &&
                pc_slots_stale(core, it, pc_item_key(it), pc_item_klen(it), slot)) {
                /* A copy this node no longer trusts (made before it gained
                 * the slot, or before a partition healed: pc_slots_regain)
                 * is nobody's last word: handing it over could bring back
                 * a value the other side overwrote or deleted meanwhile. */
                core->stats.handoff_untrusted++;
                pc_store_release(core->store, items[i]);
                continue;
            }
            if (dst == PC_HANDOFF_PURGE) {
                /* Exactly this version: a newer copy stored meanwhile stays. */
                if (pc_item_version(it) < UINT64_MAX &&
                    pc_store_del_if_older(core->store, pc_item_key(it), pc_item_klen(it),
                                          pc_item_version(it) + 1, now) == 0)
                    core->stats.purged++;
                pc_store_release(core->store, items[i]);
                continue;
            }
            size_t tgt = dst - 1u;
            hbatch_t *b = &h->batches[tgt];
            b->items[b->n++] = items[i];
            b->bytes += pc_item_klen(it) + pc_item_vlen(it) + PC_PROTO_ENTRY_OVERHEAD;
            if (b->n == HANDOFF_BATCH || b->bytes >= HANDOFF_BATCH_BYTES)
                batch_flush(core, tgt);
        }
        if (h->cursor == 0) {
            h->scanning = 0;
            for (size_t tg = 0; tg < h->naddrs; tg++)
                batch_flush(core, tg);
        }
    }
    if (!h->scanning && h->inflight == 0 && h->resend == NULL)
        handoff_finished(core);
}

void pc_handoff_open(pc_loop_t *core)
{
    pc_handoff_t *h = core->handoff;
    if (h == NULL)
        return;
    uv_timer_init(core->uv, &h->timer);
    h->timer.data = core;
    h->timer_open = 1;
    core->handles_open++;
    if (h->target) /* a ring change before start */
        uv_timer_start(&h->timer, handoff_step, HANDOFF_DELAY_MS, HANDOFF_TICK_MS);
}

void pc_handoff_close(pc_loop_t *core, uv_close_cb closed)
{
    pc_handoff_t *h = core->handoff;
    if (h != NULL && h->timer_open && !uv_is_closing((uv_handle_t *)&h->timer))
        uv_close((uv_handle_t *)&h->timer, closed);
}

void pc_handoff_ring_changed(pc_loop_t *core, const pc_ring_t *nw, const uint8_t *lost)
{
    pc_handoff_t *h = core->handoff;
    if (h == NULL)
        return;
    uint16_t *target = calloc(PC_RING_SLOTS, sizeof *target);
    uint32_t *dest = calloc(pc_ring_size(nw) + 1, sizeof *dest);
    if (target == NULL || dest == NULL) {
        free(target);
        free(dest);
        return;
    }
    long self = pc_ring_find(nw, core->name);
    int running = h->target != NULL;
    size_t npurge;
    size_t naddrs = pc_handoff_plan(nw, self, lost, h->target, h->rate > 0, target, dest, &npurge);
    /* What was batched for the old targets goes out first. */
    for (size_t t = 0; t < h->naddrs; t++)
        batch_flush(core, t);
    handoff_clear(core);
    if (naddrs == 0 && npurge == 0) {
        free(target);
        free(dest);
        if (h->inflight == 0 && h->done)
            handoff_finished(core);
        return;
    }
    h->addrs = calloc(naddrs + 1, sizeof *h->addrs);
    h->batches = calloc(naddrs + 1, sizeof *h->batches);
    if (h->addrs == NULL || h->batches == NULL) {
        free(h->addrs);
        free(h->batches);
        h->addrs = NULL;
        h->batches = NULL;
        free(target);
        free(dest);
        return;
    }
    for (size_t i = 0; i < pc_ring_size(nw); i++) {
        if (dest[i] > 0)
            h->addrs[dest[i] - 1] = strdup(pc_cluster_addr(core->cluster, i));
    }
    free(dest);
    h->naddrs = naddrs;
    h->target = target;
    h->cursor = 0;
    h->scanning = 1;
    if (!running) {
        h->started = pc_loop_now(core);
        h->sent0 = core->stats.handoff_sent;
    }
    h->last_ms = pc_loop_now(core);
    h->tokens = (double)h->rate / 10; /* a tenth of a second's worth */
    if (h->timer_open)
        uv_timer_start(&h->timer, handoff_step, HANDOFF_DELAY_MS, HANDOFF_TICK_MS);
    pc_log_info(core->log, "hand-off: streaming the keys of moved slots to %zu member(s); "
                           "dropping those of %zu slot(s) this node no longer holds",
                naddrs, npurge);
}

void pc_handoff_after(pc_loop_t *core, void (*done)(void *), void *arg)
{
    if (pc_handoff_idle(core)) {
        done(arg);
        return;
    }
    pc_handoff_t *h = core->handoff;
    h->done = done;
    h->done_arg = arg;
}
