/*
 * pc_member.c -- SWIM membership with Lifeguard local health, as a pure
 * state machine. pc_member.h is the contract, docs/MEMBERSHIP.md the
 * protocol and its figures. The behaviour follows hashicorp/memberlist
 * (the de-facto reference for SWIM + Lifeguard) wherever the brief does
 * not say otherwise; the places where it differs say why.
 *
 * Layout: members live in `mv` (self first) behind pointers that stay put
 * until a member is reaped, with an open-addressing index by name. What
 * we know about a member and what we gossip about it are the same record:
 * every accepted change re-arms that member's one pending update, so an
 * older update about a member can never be sent after a newer one (what
 * memberlist gets from "invalidating" queued broadcasts by name).
 */
#include "pc_member.h"

#include <stdlib.h>
#include <string.h>

#include "pc_gossip.h"

_Static_assert((int)PC_MEMBER_ALIVE == PC_GOSSIP_ST_ALIVE &&
                   (int)PC_MEMBER_SUSPECT == PC_GOSSIP_ST_SUSPECT &&
                   (int)PC_MEMBER_DEAD == PC_GOSSIP_ST_DEAD &&
                   (int)PC_MEMBER_LEFT == PC_GOSSIP_ST_LEFT,
               "member states are the wire values of state records");
_Static_assert(PC_MEMBER_NAME_MAX == PC_GOSSIP_MAX_NAME &&
                   PC_MEMBER_ADDR_MAX == PC_GOSSIP_MAX_ADDR &&
                   PC_MEMBER_MAX <= PC_GOSSIP_MAX_NODES,
               "member limits fit the codec's");

/* Queue bounds (documented in the header). */
#define OUT_MAX 1024u
#define EVENTS_MAX 8192u
/* PING_REQs we relay at once; a flood of them from one requester must not
 * make us hold unbounded state. The oldest is dropped when full. */
#define RELAYS_MAX 64u
/* The longest a requester can make us wait before NACKing. */
#define RELAY_MAX_MS 10000u
/* A packet this big holds any single message with maximal names and
 * addresses (262-byte header + 787-byte ALIVE), so every update and every
 * probe message can always be sent. */
#define MIN_PACKET 1200u
#define KNOB_MAX 32u
/* Pings a suspicion holder sends the suspect itself (suspicions_run()):
 * one every REMIND_PERIODS probe intervals while the suspicion lasts, and
 * LAST_CHANCE_PINGS in the last probe timeouts before its deadline. */
#define REMIND_PERIODS 5u
#define LAST_CHANCE_PINGS 3u
/* A graceful leave tells at most this many members directly (the rest
 * hear it by gossip), well inside the outgoing queue's bound. */
#define LEAVE_DIRECT_MAX 512u
/* Lease pings waiting for their ACK (lease_renew()); the oldest is
 * forgotten when full. Room for four rounds to LEASE_MAX_KNOWN / 2 + 1
 * members (one lease's worth of retries). */
#define LEASE_PINGS_MAX 160u
/* Up to this many members known (self included) the lease is renewed by
 * ACKs -- at most about LEASE_MAX_KNOWN / 2 lease pings per half lease
 * per member; beyond, only the membership rule applies (pc_member.h). */
#define LEASE_MAX_KNOWN 64u

/* ---- small helpers ---------------------------------------------------- */

/*
 * xoshiro256** seeded through splitmix64: a small, well-tested generator
 * we own, so runs are reproducible from the seed alone and nothing
 * touches the process-wide rand() state.
 */
struct rng {
    uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n), n > 0. Rejection keeps it unbiased. */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = rng_next(r);
    } while (x >= lim);
    return x % n;
}

/*
 * Natural log for x > 0. The library builds without libm, and two
 * formulas need a logarithm (suspicion scale, Lifeguard's confirmation
 * curve); a series on the mantissa is exact to double precision here.
 */
static double ln_approx(double x)
{
    int k = 0;
    while (x >= 2.0) {
        x /= 2.0;
        k++;
    }
    while (x < 1.0) {
        x *= 2.0;
        k--;
    }
    double y = (x - 1.0) / (x + 1.0), y2 = y * y, term = y, sum = 0.0;
    for (int i = 1; i < 40; i += 2) {
        sum += term / i;
        term *= y2;
    }
    return 2.0 * sum + k * 0.69314718055994530942;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static char *dup_bytes(pc_bytes_t b)
{
    char *s = malloc((size_t)b.len + 1);
    if (s != NULL) {
        if (b.len > 0)
            memcpy(s, b.ptr, b.len);
        s[b.len] = '\0';
    }
    return s;
}

static pc_bytes_t str_bytes(const char *s)
{
    pc_bytes_t b = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return b;
}

static bool bytes_eq_str(pc_bytes_t b, const char *s)
{
    return strlen(s) == b.len && memcmp(s, b.ptr, b.len) == 0;
}

static bool bytes_eq(pc_bytes_t a, pc_bytes_t b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* A config / caller string: 1..max bytes. */
static bool cstr_ok(const char *s, size_t max)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, max + 1);
    return n > 0 && n <= max;
}

static uint64_t u64_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* a + b without wrapping: deadlines far in the future saturate. */
static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* A FIFO of fixed-size records in one array, bounded by `max`. */
struct fifo {
    uint8_t *items;
    size_t size;
    uint32_t head, len, cap, max;
};

static void fifo_init(struct fifo *f, size_t size, uint32_t max)
{
    memset(f, 0, sizeof(*f));
    f->size = size;
    f->max = max;
}

static uint32_t fifo_count(const struct fifo *f)
{
    return f->len - f->head;
}

/* A slot for a new record, or NULL if full (or out of memory). */
static void *fifo_push(struct fifo *f)
{
    if (fifo_count(f) >= f->max)
        return NULL;
    if (f->len == f->cap) {
        if (f->head > 0) {
            memmove(f->items, f->items + (size_t)f->head * f->size,
                    (size_t)(f->len - f->head) * f->size);
            f->len -= f->head;
            f->head = 0;
        } else {
            uint32_t ncap = f->cap != 0 ? f->cap * 2 : 16;
            if (ncap > f->max)
                ncap = f->max;
            uint8_t *p = realloc(f->items, (size_t)ncap * f->size);
            if (p == NULL)
                return NULL;
            f->items = p;
            f->cap = ncap;
        }
    }
    return f->items + (size_t)f->len++ * f->size;
}

static void *fifo_peek(const struct fifo *f)
{
    return f->head < f->len ? f->items + (size_t)f->head * f->size : NULL;
}

static void fifo_pop(struct fifo *f)
{
    if (++f->head == f->len)
        f->head = f->len = 0;
}

/* ---- state ------------------------------------------------------------ */

struct member {
    char *name;
    char *addr;
    char *gossip;
    uint64_t hash; /* of the name: index slot and suspicion confirmer id */
    uint32_t weight;
    pc_member_state_t state;
    uint64_t incarnation;
    uint64_t since_ms;

    /* The partition lease: whether it ever ACKed a PING of ours itself
     * and when we sent the latest such PING; when we last sent it a
     * lease ping. */
    bool acked;
    uint64_t acked_ms;
    bool lease_pinged;
    uint64_t lease_pinged_at;

    /* Suspicion timer, while state == SUSPECT. */
    uint64_t susp_start;
    uint64_t susp_min;
    uint64_t susp_max;
    uint64_t susp_deadline;
    uint32_t susp_k;     /* confirmations that bring it down to min */
    uint32_t susp_n;     /* confirmations so far */
    uint32_t susp_pings;    /* last-chance pings sent */
    uint64_t susp_pinged_at;
    uint64_t susp_remind_at; /* next reminder ping */
    uint64_t susp_told_at; /* last time we told it directly */
    uint64_t *susp_from; /* hashes of who said so: initial + confirmers */

    /* The pending update about this member: its current record. */
    bool bc_active;
    uint32_t bc_sent;
    uint64_t bc_order; /* newer updates go first among equally sent */
    char *bc_from;     /* SUSPECT / DEAD: who says so */
};

struct probe {
    bool active; /* waiting for an ACK */
    bool indirect_sent;
    uint32_t seq;
    uint64_t inc; /* the target's incarnation when probed */
    uint64_t sent_at;
    uint64_t timeout_at; /* PING_REQs go out */
    uint64_t end_at;     /* period over: no ACK means failure */
    uint32_t expected_nacks;
    uint32_t nacks;
    char target[PC_MEMBER_NAME_MAX + 1];
};

struct relay {
    uint32_t seq;     /* of our PING to the target */
    uint32_t req_seq; /* the requester's */
    uint64_t deadline;
    bool nack;
    char to[PC_MEMBER_ADDR_MAX + 1];
};

struct lease_ping {
    bool used;
    uint32_t seq;
    uint64_t hash; /* of the member's name */
    uint64_t sent_at;
};

struct outpkt {
    uint8_t *data;
    size_t len;
    char to[PC_MEMBER_ADDR_MAX + 1];
};

struct event {
    char *strs; /* name \0 addr \0 gossip \0 */
    size_t addr_off, gossip_off;
    uint32_t weight;
    uint64_t incarnation;
    pc_member_state_t state, prev;
    bool joined;
};

struct pc_member {
    pc_member_config_t cfg; /* timers resolved; self strings not kept */
    struct rng rng;
    struct rng lease_rng; /* the lease's own, so SWIM's choices stay as they were */
    uint64_t now;
    uint32_t seq;
    uint64_t epoch;
    uint64_t bc_counter;
    unsigned health;
    bool left;

    struct member **mv; /* mv[0] is self */
    size_t n, cap;
    uint32_t *index; /* open addressing: member index + 1, 0 = empty */
    size_t index_cap;

    struct member **order; /* probe round, shuffled */
    size_t order_n, order_cap, order_i;
    struct member **scratch; /* candidates / updates, cap >= cap */

    struct probe probe;
    uint64_t next_probe;
    uint64_t next_gossip;
    uint64_t next_pushpull;
    uint64_t next_reconnect;
    uint64_t followup_at; /* extra push/pull after a merge with news; 0 = none */
    struct relay relays[RELAYS_MAX];
    uint32_t nrelays;
    uint64_t lease_until; /* pc_member_lease_until() */
    uint64_t next_lease;  /* lease_renew() runs */
    struct lease_ping lps[LEASE_PINGS_MAX];
    uint32_t lps_next; /* the slot the next lease ping takes */

    struct fifo out;    /* struct outpkt */
    struct fifo events; /* struct event */
    char *ev_cur;       /* strings of the event last handed out */
    bool sync_due;
    char sync_addr[PC_MEMBER_ADDR_MAX + 1];

    pc_gossip_decoder_t *dec;
    pc_member_stats_t st;
};

const char *pc_member_state_name(pc_member_state_t s)
{
    switch (s) {
    case PC_MEMBER_ALIVE:
        return "alive";
    case PC_MEMBER_SUSPECT:
        return "suspect";
    case PC_MEMBER_DEAD:
        return "dead";
    case PC_MEMBER_LEFT:
        return "left";
    default:
        return "unknown";
    }
}

static struct member *self_of(const pc_member_t *m)
{
    return m->mv[0];
}

static bool is_live(const struct member *mb)
{
    return mb->state == PC_MEMBER_ALIVE || mb->state == PC_MEMBER_SUSPECT;
}

static size_t live_count(const pc_member_t *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++)
        n += is_live(m->mv[i]);
    return n;
}

static uint64_t scaled(const pc_member_t *m, uint32_t ms)
{
    return (uint64_t)ms * (m->health + 1);
}

static void health_add(pc_member_t *m, int delta)
{
    int h = (int)m->health + delta;
    int max = (int)m->cfg.awareness_max - 1;
    m->health = (unsigned)(h < 0 ? 0 : h > max ? max : h);
}

/* ---- member index ----------------------------------------------------- */

static struct member *find(const pc_member_t *m, pc_bytes_t name)
{
    uint64_t h = fnv1a(name.ptr, name.len);
    size_t mask = m->index_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t slot = m->index[i];
        if (slot == 0)
            return NULL;
        struct member *mb = m->mv[slot - 1];
        if (mb->hash == h && bytes_eq_str(name, mb->name))
            return mb;
    }
}

static struct member *find_str(const pc_member_t *m, const char *name)
{
    return find(m, str_bytes(name));
}

/* Rebuilds the index for the current mv[], growing it (never shrinking)
 * to keep the load at most one half for `want` members. Without growth
 * it cannot fail, which reap() relies on. */
static int index_rebuild(pc_member_t *m, size_t want)
{
    size_t cap = m->index_cap != 0 ? m->index_cap : 16;
    while (cap < want * 2)
        cap *= 2;
    if (cap != m->index_cap) {
        uint32_t *p = calloc(cap, sizeof(*p));
        if (p == NULL)
            return PC_ENOMEM;
        free(m->index);
        m->index = p;
        m->index_cap = cap;
    } else {
        memset(m->index, 0, cap * sizeof(*m->index));
    }
    size_t mask = cap - 1;
    for (size_t k = 0; k < m->n; k++) {
        size_t i = (size_t)m->mv[k]->hash & mask;
        while (m->index[i] != 0)
            i = (i + 1) & mask;
        m->index[i] = (uint32_t)k + 1;
    }
    return 0;
}

/* ---- probe order ------------------------------------------------------ */

static void shuffle_with(struct rng *r, struct member **a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i);
        struct member *t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static void shuffle(pc_member_t *m, struct member **a, size_t n)
{
    shuffle_with(&m->rng, a, n);
}

/* A new round: every member but self, shuffled. The array has room for
 * m->cap members, so this cannot fail. */
static void order_reset(pc_member_t *m)
{
    m->order_n = 0;
    for (size_t i = 1; i < m->n; i++)
        m->order[m->order_n++] = m->mv[i];
    shuffle(m, m->order, m->order_n);
    m->order_i = 0;
}

/* A new member joins the current round at a random place still ahead,
 * so it is probed within one round (as memberlist does). */
static void order_insert(pc_member_t *m, struct member *mb)
{
    size_t ahead = m->order_n - m->order_i;
    size_t pos = m->order_i + (size_t)rng_below(&m->rng, ahead + 1);
    memmove(&m->order[pos + 1], &m->order[pos], (m->order_n - pos) * sizeof(*m->order));
    m->order[pos] = mb;
    m->order_n++;
}

/* Next member to probe: round robin over a shuffled list, skipping
 * DEAD/LEFT ones, reshuffled at the end of each round. */
static struct member *order_next(pc_member_t *m)
{
    for (int pass = 0; pass < 2; pass++) {
        while (m->order_i < m->order_n) {
            struct member *mb = m->order[m->order_i++];
            if (is_live(mb))
                return mb;
        }
        order_reset(m);
    }
    return NULL;
}

/* ---- members ---------------------------------------------------------- */

static void suspicion_clear(struct member *mb)
{
    free(mb->susp_from);
    mb->susp_from = NULL;
    mb->susp_n = mb->susp_k = mb->susp_pings = 0;
}

static void member_free(struct member *mb)
{
    if (mb == NULL)
        return;
    suspicion_clear(mb);
    free(mb->name);
    free(mb->addr);
    free(mb->gossip);
    free(mb->bc_from);
    free(mb);
}

/* Grows mv, order and scratch together so that order_reset() and the
 * candidate lists never need to allocate. */
static int reserve_members(pc_member_t *m, size_t want)
{
    if (want <= m->cap)
        return 0;
    size_t ncap = m->cap != 0 ? m->cap * 2 : 16;
    if (ncap < want)
        ncap = want;
    struct member **a = realloc(m->mv, ncap * sizeof(*a));
    if (a == NULL)
        return PC_ENOMEM;
    m->mv = a;
    a = realloc(m->order, ncap * sizeof(*a));
    if (a == NULL)
        return PC_ENOMEM;
    m->order = a;
    a = realloc(m->scratch, ncap * sizeof(*a));
    if (a == NULL)
        return PC_ENOMEM;
    m->scratch = a;
    m->cap = ncap;
    return 0;
}

/* Adds a member; NULL if the list is full or memory ran out. */
static struct member *member_add(pc_member_t *m, pc_bytes_t name, pc_bytes_t addr,
                                 pc_bytes_t gossip, uint32_t weight, uint64_t inc,
                                 pc_member_state_t state, uint64_t now)
{
    if (m->n >= PC_MEMBER_MAX || reserve_members(m, m->n + 1) != 0)
        return NULL;
    if ((m->n + 1) * 2 > m->index_cap && index_rebuild(m, m->n + 1) != 0)
        return NULL;
    struct member *mb = calloc(1, sizeof(*mb));
    if (mb == NULL)
        return NULL;
    mb->name = dup_bytes(name);
    mb->addr = dup_bytes(addr);
    mb->gossip = dup_bytes(gossip);
    if (mb->name == NULL || mb->addr == NULL || mb->gossip == NULL) {
        member_free(mb);
        return NULL;
    }
    mb->hash = fnv1a(name.ptr, name.len);
    mb->weight = weight;
    mb->incarnation = inc;
    mb->state = state;
    mb->since_ms = now;

    m->mv[m->n++] = mb;
    size_t mask = m->index_cap - 1;
    size_t i = (size_t)mb->hash & mask;
    while (m->index[i] != 0)
        i = (i + 1) & mask;
    m->index[i] = (uint32_t)m->n;
    if (m->n > 1)
        order_insert(m, mb);
    return mb;
}

/* Replaces a string field if it differs. true if it changed (on ENOMEM
 * the old value stays: an address a moment stale beats a crash). */
static bool set_str(char **field, pc_bytes_t v)
{
    if (bytes_eq_str(v, *field))
        return false;
    char *s = dup_bytes(v);
    if (s == NULL)
        return false;
    free(*field);
    *field = s;
    return true;
}

/* ---- events ----------------------------------------------------------- */

static void emit(pc_member_t *m, const struct member *mb, pc_member_state_t prev, bool joined)
{
    m->epoch++;
    struct event *ev = fifo_push(&m->events);
    if (ev == NULL) {
        m->st.events_dropped++;
        return;
    }
    size_t ln = strlen(mb->name) + 1, la = strlen(mb->addr) + 1, lg = strlen(mb->gossip) + 1;
    ev->strs = malloc(ln + la + lg);
    if (ev->strs == NULL) {
        m->events.len--; /* give the slot back */
        m->st.events_dropped++;
        return;
    }
    memcpy(ev->strs, mb->name, ln);
    memcpy(ev->strs + ln, mb->addr, la);
    memcpy(ev->strs + ln + la, mb->gossip, lg);
    ev->addr_off = ln;
    ev->gossip_off = ln + la;
    ev->weight = mb->weight;
    ev->incarnation = mb->incarnation;
    ev->state = mb->state;
    ev->prev = prev;
    ev->joined = joined;
}

static void set_state(struct member *mb, pc_member_state_t state, uint64_t now)
{
    if (mb->state == PC_MEMBER_SUSPECT && state != PC_MEMBER_SUSPECT)
        suspicion_clear(mb);
    mb->state = state;
    mb->since_ms = now;
}

/* ---- updates (the broadcast queue) ------------------------------------ */

/* Re-arms the member's update with its current record. `from` names who
 * said SUSPECT/DEAD (NULL: us). */
static void queue_update(pc_member_t *m, struct member *mb, const pc_bytes_t *from)
{
    char *f = NULL;
    if (from != NULL)
        f = dup_bytes(*from);
    free(mb->bc_from);
    mb->bc_from = f; /* NULL on ENOMEM: we then vouch for it ourselves */
    mb->bc_active = true;
    mb->bc_sent = 0;
    mb->bc_order = ++m->bc_counter;
}

static void update_msg(const pc_member_t *m, const struct member *mb, pc_gossip_msg_t *msg)
{
    memset(msg, 0, sizeof(*msg));
    msg->name = str_bytes(mb->name);
    msg->incarnation = mb->incarnation;
    switch (mb->state) {
    case PC_MEMBER_ALIVE:
        msg->type = PC_GOSSIP_ALIVE;
        msg->addr = str_bytes(mb->addr);
        msg->gossip = str_bytes(mb->gossip);
        msg->weight = mb->weight;
        break;
    case PC_MEMBER_SUSPECT:
    case PC_MEMBER_DEAD:
        msg->type = mb->state == PC_MEMBER_SUSPECT ? PC_GOSSIP_SUSPECT : PC_GOSSIP_DEAD;
        msg->from = str_bytes(mb->bc_from != NULL ? mb->bc_from : self_of(m)->name);
        break;
    default:
        msg->type = PC_GOSSIP_LEFT;
        break;
    }
}

/* memberlist's retransmit limit: mult * ceil(log10(n + 1)). */
static uint32_t retransmit_limit(const pc_member_t *m)
{
    uint32_t digits = 0;
    for (uint64_t v = 1; v < (uint64_t)m->n + 1; v *= 10)
        digits++;
    if (digits == 0)
        digits = 1;
    return m->cfg.retransmit_mult * digits;
}

static int cmp_update(const void *a, const void *b)
{
    const struct member *x = *(struct member *const *)a, *y = *(struct member *const *)b;
    if (x->bc_sent != y->bc_sent)
        return x->bc_sent < y->bc_sent ? -1 : 1;
    return x->bc_order > y->bc_order ? -1 : x->bc_order < y->bc_order ? 1 : 0;
}

static bool any_update(const pc_member_t *m)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->mv[i]->bc_active)
            return true;
    }
    return false;
}

/* Fills the packet with pending updates, least sent first (then newest
 * first), skipping those that do not fit in what is left. */
static void piggyback(pc_member_t *m, pc_gossip_writer_t *w)
{
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->mv[i]->bc_active)
            m->scratch[k++] = m->mv[i];
    }
    if (k == 0)
        return;
    qsort(m->scratch, k, sizeof(*m->scratch), cmp_update);
    uint32_t limit = retransmit_limit(m);
    for (size_t i = 0; i < k; i++) {
        /* The smallest message (ACK) is 3 bytes; nothing fits below that. */
        if (pc_gossip_writer_size(w) + 3 > w->limit)
            break;
        struct member *mb = m->scratch[i];
        pc_gossip_msg_t msg;
        update_msg(m, mb, &msg);
        if (pc_gossip_writer_add(w, &msg) != 0)
            continue;
        if (++mb->bc_sent >= limit)
            mb->bc_active = false;
    }
}

/*
 * Queues one packet to `to`: msgs[0..nreq) must go in, msgs[nreq..n) go
 * in if they fit, then pending updates fill the rest. A packet that ends
 * up empty is not sent.
 */
static void send_packet(pc_member_t *m, const char *to, const pc_gossip_msg_t *msgs, size_t nreq,
                        size_t n)
{
    /* Check for room first: building the packet counts the updates in it
     * as sent, which must not happen for a packet that is then dropped. */
    if (fifo_count(&m->out) >= m->out.max) {
        m->st.packets_dropped++;
        return;
    }
    pc_buf_t b;
    pc_gossip_writer_t w;
    pc_buf_init(&b, m->cfg.max_packet);
    if (pc_gossip_writer_begin(&w, &b, str_bytes(self_of(m)->name), m->cfg.max_packet) != 0) {
        m->st.packets_dropped++;
        pc_buf_free(&b);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (pc_gossip_writer_add(&w, &msgs[i]) != 0 && i < nreq) {
            /* Cannot happen with max_packet >= MIN_PACKET and valid
             * fields, short of ENOMEM. */
            m->st.packets_dropped++;
            pc_buf_free(&b);
            return;
        }
    }
    piggyback(m, &w);
    if (pc_gossip_writer_count(&w) == 0) {
        pc_buf_free(&b);
        return;
    }
    size_t len = pc_gossip_writer_end(&w);
    struct outpkt *op = fifo_push(&m->out);
    if (op == NULL) {
        m->st.packets_dropped++;
        pc_buf_free(&b);
        return;
    }
    op->data = b.data; /* ownership moves to the queue */
    op->len = len;
    strcpy(op->to, to); /* both sides bounded by PC_MEMBER_ADDR_MAX */
    m->st.packets_out++;
    m->st.bytes_out += len;
}

/* Up to k random members passing `ok`, excluding self and `not`, into
 * m->scratch; returns how many. */
static size_t pick(pc_member_t *m, size_t k, const struct member *not,
                   bool (*ok)(const pc_member_t *, const struct member *))
{
    size_t c = 0;
    for (size_t i = 1; i < m->n; i++) {
        struct member *mb = m->mv[i];
        if (mb != not && ok(m, mb))
            m->scratch[c++] = mb;
    }
    /* Partial Fisher-Yates: the first k are a uniform sample. */
    if (k > c)
        k = c;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)rng_below(&m->rng, c - i);
        struct member *t = m->scratch[i];
        m->scratch[i] = m->scratch[j];
        m->scratch[j] = t;
    }
    return k;
}

static bool ok_alive(const pc_member_t *m, const struct member *mb)
{
    (void)m;
    return mb->state == PC_MEMBER_ALIVE;
}

static bool ok_live(const pc_member_t *m, const struct member *mb)
{
    (void)m;
    return is_live(mb);
}

/* Gossip goes to live members and, for a while, to dead ones: a member
 * wrongly declared dead (a partition that healed) hears it and refutes. */
static bool ok_gossip(const pc_member_t *m, const struct member *mb)
{
    return is_live(mb) || m->now - mb->since_ms < m->cfg.gossip_dead_ms;
}

static void gossip_round(pc_member_t *m)
{
    if (!any_update(m))
        return;
    size_t k = pick(m, m->cfg.gossip_nodes, NULL, ok_gossip);
    /* pick() leaves its choice in scratch, which piggyback() reuses. */
    struct member *to[KNOB_MAX];
    memcpy(to, m->scratch, k * sizeof(*to));
    for (size_t i = 0; i < k; i++)
        send_packet(m, to[i]->gossip, NULL, 0, 0);
}

/* ---- the rules -------------------------------------------------------- */

/* Someone claims something about us that is at least as new as what we
 * said: outbid it with a higher incarnation. Lifeguard counts having to
 * refute against our own health: it often means we are the slow one. */
static void refute(pc_member_t *m, uint64_t inc)
{
    struct member *self = self_of(m);
    if (inc > self->incarnation)
        self->incarnation = inc;
    self->incarnation++;
    queue_update(m, self, NULL);
    health_add(m, 1);
    m->st.refutes++;
}

/*
 * Someone says we are SUSPECT, DEAD or LEFT. At our incarnation or above:
 * refute. Below it, the claim is stale -- we refuted already -- but its
 * sender evidently missed the refutation, so our ALIVE goes out again
 * (same incarnation): the reply to a last-chance ping then carries it
 * straight back to the member that was about to declare us dead.
 */
#define REFUTE_SPAN 1000

static void claim_about_self(pc_member_t *m, uint64_t inc)
{
    if (m->left)
        return;
    if (inc >= self_of(m)->incarnation)
        refute(m, inc);
    else
        queue_update(m, self_of(m), NULL);
}

/*
 * Suspicion timeout (memberlist's suspicionTimeout with Lifeguard):
 * min = suspicion_mult * max(1, log10(n)) * probe_interval,
 * max = suspicion_max_mult * min.
 */
static void susp_bounds(const pc_member_t *m, size_t n, uint64_t *min, uint64_t *max)
{
    double scale = n > 10 ? ln_approx((double)n) / ln_approx(10.0) : 1.0;
    *min = (uint64_t)((double)m->cfg.suspicion_mult * scale * m->cfg.probe_interval_ms);
    *max = *min * m->cfg.suspicion_max_mult;
}

void pc_member_suspicion_bounds(const pc_member_t *m, size_t n, uint64_t *min_ms,
                                uint64_t *max_ms)
{
    susp_bounds(m, n, min_ms, max_ms);
}

static int suspicion_alloc(pc_member_t *m, struct member *mb, pc_bytes_t from, uint64_t now)
{
    size_t n = live_count(m);
    uint32_t k = m->cfg.suspicion_mult > 2 ? m->cfg.suspicion_mult - 2 : 0;
    /* Too few members to ever gather k independent confirmations: then
     * waiting for them would only delay detection to max. */
    if (n < (size_t)k + 2)
        k = 0;
    suspicion_clear(mb);
    mb->susp_from = calloc((size_t)k + 1, sizeof(*mb->susp_from));
    if (mb->susp_from == NULL)
        return PC_ENOMEM;
    mb->susp_from[0] = fnv1a(from.ptr, from.len);
    mb->susp_k = k;
    mb->susp_n = 0;
    mb->susp_start = now;
    mb->susp_remind_at = now + (uint64_t)REMIND_PERIODS * m->cfg.probe_interval_ms;
    susp_bounds(m, n, &mb->susp_min, &mb->susp_max);
    mb->susp_deadline = now + (k == 0 ? mb->susp_min : mb->susp_max);
    return 0;
}

static void suspicion_start(pc_member_t *m, struct member *mb, pc_bytes_t from, uint64_t now)
{
    if (suspicion_alloc(m, mb, from, now) == 0)
        return;
    /* No memory for the confirmer list: keep the timer at max. */
    mb->susp_k = 0;
    susp_bounds(m, live_count(m), &mb->susp_min, &mb->susp_max);
    mb->susp_start = now;
    mb->susp_remind_at = now + (uint64_t)REMIND_PERIODS * m->cfg.probe_interval_ms;
    mb->susp_deadline = now + mb->susp_max;
}

/*
 * Lifeguard's dynamic suspicion: each independent confirmation (a SUSPECT
 * from a member not heard before) shortens the timeout along
 *     max - (max - min) * ln(c + 1) / ln(k + 1)
 * so k confirmations bring it to min. true if this one counted (it is
 * then re-gossiped, so the others get the confirmation too).
 */
static bool suspicion_confirm(struct member *mb, pc_bytes_t from)
{
    if (mb->susp_from == NULL || mb->susp_n >= mb->susp_k)
        return false;
    uint64_t h = fnv1a(from.ptr, from.len);
    for (uint32_t i = 0; i <= mb->susp_n; i++) {
        if (mb->susp_from[i] == h)
            return false;
    }
    mb->susp_from[++mb->susp_n] = h;
    double frac = ln_approx(mb->susp_n + 1.0) / ln_approx(mb->susp_k + 1.0);
    uint64_t span = mb->susp_max - mb->susp_min;
    uint64_t timeout = mb->susp_max - (uint64_t)(frac * (double)span);
    if (timeout < mb->susp_min)
        timeout = mb->susp_min;
    mb->susp_deadline = mb->susp_start + timeout;
    return true;
}

struct upd {
    pc_bytes_t name, addr, gossip;
    uint32_t weight;
    uint64_t incarnation;
};

/* `direct`: the record comes from the member itself over push/pull. */
static void alive_node(pc_member_t *m, const struct upd *u, bool direct, uint64_t now)
{
    if (u->weight == 0 || u->weight > PC_MEMBER_MAX_WEIGHT) {
        m->st.bad_msgs++;
        return;
    }
    struct member *mb = find(m, u->name);
    if (mb == self_of(m)) {
        /* Our own record coming back is normal. A newer one, or the same
         * incarnation with other addresses, is an older life of ours or
         * an impostor: outbid it. */
        if (m->left || u->incarnation < mb->incarnation)
            return;
        if (u->incarnation == mb->incarnation && bytes_eq_str(u->addr, mb->addr) &&
            bytes_eq_str(u->gossip, mb->gossip) && u->weight == mb->weight)
            return;
        refute(m, u->incarnation);
        return;
    }
    if (mb == NULL) {
        mb = member_add(m, u->name, u->addr, u->gossip, u->weight, u->incarnation,
                        PC_MEMBER_ALIVE, now);
        if (mb == NULL) {
            m->st.bad_msgs++;
            return;
        }
        m->st.joins++;
        queue_update(m, mb, NULL);
        emit(m, mb, PC_MEMBER_ALIVE, true);
        return;
    }
    /*
     * Only a newer incarnation beats what we have, whatever its state: at
     * the same incarnation SUSPECT, DEAD and LEFT win over ALIVE. One
     * exception: in a push/pull the peer's own ALIVE record comes from the
     * peer, over a connection that works now, so it counts as a refutation
     * at the same incarnation. That is what lets two sides of a long
     * partition, which hold each other DEAD and no longer gossip to each
     * other, heal in one exchange (each also refutes the DEAD record it
     * finds about itself in the other's state).
     */
    if (u->incarnation < mb->incarnation ||
        (u->incarnation == mb->incarnation && !(direct && mb->state != PC_MEMBER_ALIVE)))
        return;
    pc_member_state_t prev = mb->state;
    /* Back from DEAD in the same life: it refuted (each refutation adds
     * one; fewer than REFUTE_SPAN in a life) rather than restarted (a new
     * life starts from the wall clock in ms, pc_member.h, so a restart
     * less than a second after the last start is taken for a refutation:
     * that errs towards distrust). */
    if (prev == PC_MEMBER_DEAD && u->incarnation - mb->incarnation < REFUTE_SPAN)
        m->st.dead_came_back++;
    bool changed = set_str(&mb->addr, u->addr);
    changed |= set_str(&mb->gossip, u->gossip);
    changed |= mb->weight != u->weight;
    mb->weight = u->weight;
    mb->incarnation = u->incarnation;
    if (prev != PC_MEMBER_ALIVE)
        set_state(mb, PC_MEMBER_ALIVE, now);
    queue_update(m, mb, NULL);
    if (changed || prev != PC_MEMBER_ALIVE)
        emit(m, mb, prev, false);
}

static void suspect_node(pc_member_t *m, pc_bytes_t name, uint64_t inc, pc_bytes_t from,
                         uint64_t now)
{
    struct member *mb = find(m, name);
    if (mb == NULL)
        return;
    if (mb == self_of(m)) {
        claim_about_self(m, inc);
        return;
    }
    if (inc < mb->incarnation)
        return;
    if (mb->state == PC_MEMBER_SUSPECT) {
        if (inc == mb->incarnation) {
            if (suspicion_confirm(mb, from))
                queue_update(m, mb, &from);
            return;
        }
        /*
         * A suspicion of a newer incarnation: the member refuted the one
         * we hold (we missed the refutation) and is suspected afresh.
         * Confirmations and time spent on the old one say nothing about
         * the new one, so start over. (memberlist counts it as a
         * confirmation of the old timer, which can then fire at once --
         * the simulation at 10% loss caught exactly that.)
         */
        mb->incarnation = inc;
        mb->since_ms = now;
        suspicion_start(m, mb, from, now);
        queue_update(m, mb, &from);
        return;
    }
    if (mb->state != PC_MEMBER_ALIVE)
        return;
    pc_member_state_t prev = mb->state;
    mb->incarnation = inc;
    set_state(mb, PC_MEMBER_SUSPECT, now);
    suspicion_start(m, mb, from, now);
    m->st.suspects++;
    queue_update(m, mb, &from);
    emit(m, mb, prev, false);
}

static void dead_node(pc_member_t *m, pc_bytes_t name, uint64_t inc, pc_bytes_t from, bool left,
                      uint64_t now)
{
    struct member *mb = find(m, name);
    if (mb == NULL)
        return;
    if (mb == self_of(m)) {
        /* A current claim (not one we refuted already): some members
         * held us gone, so others owned our keys meanwhile. */
        if (!m->left && inc >= mb->incarnation)
            m->st.declared_dead++;
        claim_about_self(m, inc);
        return;
    }
    if (inc < mb->incarnation)
        return;
    if (mb->state == PC_MEMBER_DEAD || mb->state == PC_MEMBER_LEFT)
        return;
    pc_member_state_t prev = mb->state;
    mb->incarnation = inc;
    set_state(mb, left ? PC_MEMBER_LEFT : PC_MEMBER_DEAD, now);
    if (left)
        m->st.lefts++;
    else
        m->st.deaths++;
    queue_update(m, mb, left ? NULL : &from);
    emit(m, mb, prev, false);
}

/* ---- probing ---------------------------------------------------------- */

static void probe_start(pc_member_t *m, uint64_t now)
{
    struct probe *p = &m->probe;
    p->active = false;
    m->next_probe = now + scaled(m, m->cfg.probe_interval_ms);
    struct member *mb = order_next(m);
    if (mb == NULL)
        return;

    p->active = true;
    p->indirect_sent = false;
    p->seq = ++m->seq;
    p->sent_at = now;
    p->timeout_at = now + scaled(m, m->cfg.probe_timeout_ms);
    p->end_at = m->next_probe;
    p->expected_nacks = p->nacks = 0;
    strcpy(p->target, mb->name);
    p->inc = mb->incarnation;
    m->st.probes++;

    pc_gossip_msg_t msgs[2];
    memset(msgs, 0, sizeof(msgs));
    msgs[0].type = PC_GOSSIP_PING;
    msgs[0].seq = p->seq;
    msgs[0].name = str_bytes(mb->name);
    size_t n = 1;
    if (mb->state == PC_MEMBER_SUSPECT) {
        /* Lifeguard's "buddy system": tell a suspect member directly, so
         * it can refute now rather than when gossip reaches it. */
        update_msg(m, mb, &msgs[1]);
        n = 2;
    }
    send_packet(m, mb->gossip, msgs, 1, n);
}

static void probe_indirect(pc_member_t *m, uint64_t now)
{
    struct probe *p = &m->probe;
    p->indirect_sent = true;
    struct member *target = find_str(m, p->target);
    if (target == NULL || !is_live(target))
        return;
    size_t k = pick(m, m->cfg.indirect_probes, target, ok_alive);
    /* The relays must NACK before our period ends or the NACK is wasted:
     * give them four fifths of what is left. */
    uint64_t left = p->end_at > now ? p->end_at - now : 1;
    uint64_t nack_ms = left * 4 / 5;
    if (nack_ms == 0)
        nack_ms = 1;
    if (nack_ms > RELAY_MAX_MS)
        nack_ms = RELAY_MAX_MS;

    struct member *via[KNOB_MAX];
    memcpy(via, m->scratch, k * sizeof(*via));
    for (size_t i = 0; i < k; i++) {
        pc_gossip_msg_t msg;
        memset(&msg, 0, sizeof(msg));
        msg.type = PC_GOSSIP_PING_REQ;
        msg.seq = p->seq;
        msg.name = str_bytes(target->name);
        msg.gossip = str_bytes(target->gossip);
        msg.nack_ms = (uint32_t)nack_ms;
        send_packet(m, via[i]->gossip, &msg, 1, 1);
        p->expected_nacks++;
        m->st.ping_reqs_sent++;
    }
}

/*
 * The period ended with no ACK. Lifeguard: if we asked others and they
 * NACKed, the target is the problem; every NACK we expected and did not
 * get suggests the problem is us (our packets are late or lost), and
 * raises our health score, which slows our probing and makes our
 * timeouts more forgiving. With nobody to ask, the failure itself counts.
 */
static void probe_fail(pc_member_t *m, uint64_t now)
{
    struct probe *p = &m->probe;
    p->active = false;
    /* It left or was declared dead meanwhile, or is in a newer life (a
     * restart, or a refutation) than the one we asked: nothing failed
     * that a suspicion of it now could be about. */
    struct member *target = find_str(m, p->target);
    if (target == NULL || !is_live(target) || target->incarnation != p->inc)
        return;
    m->st.probe_failures++;
    if (p->expected_nacks > 0)
        health_add(m, (int)(p->expected_nacks - p->nacks)); /* nacks <= expected */
    else
        health_add(m, 1);
    m->st.suspicions++;
    suspect_node(m, str_bytes(target->name), target->incarnation, str_bytes(self_of(m)->name),
                 now);
}

static void relays_expire(pc_member_t *m, uint64_t now)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->nrelays; i++) {
        struct relay *r = &m->relays[i];
        if (r->deadline > now) {
            m->relays[k++] = *r;
            continue;
        }
        if (r->nack) {
            pc_gossip_msg_t msg;
            memset(&msg, 0, sizeof(msg));
            msg.type = PC_GOSSIP_NACK;
            msg.seq = r->req_seq;
            send_packet(m, r->to, &msg, 1, 1);
            m->st.nacks_sent++;
        }
    }
    m->nrelays = k;
}

/* ---- timers ----------------------------------------------------------- */

/* memberlist's pushPullScale: above 32 members, one more interval per
 * doubling, so the cluster's total push/pull load grows slowly. */
static uint64_t pushpull_interval(const pc_member_t *m)
{
    if (m->cfg.pushpull_interval_ms == PC_MEMBER_PUSHPULL_NEVER)
        return UINT64_MAX / 2; /* never, and `now + it` cannot wrap */
    uint64_t mult = 1;
    for (size_t v = 32; v < m->n; v *= 2)
        mult++;
    return (uint64_t)m->cfg.pushpull_interval_ms * mult;
}

static bool ok_dead(const pc_member_t *m, const struct member *mb)
{
    (void)m;
    return mb->state == PC_MEMBER_DEAD;
}

/*
 * Push/pull usually goes to a random ALIVE member. Sometimes it goes to a
 * DEAD one instead (Serf's "reconnect"), with probability dead / (alive +
 * dead), and always when nobody is alive: after a partition longer than
 * gossip_dead_ms both sides hold the other DEAD and no longer gossip to
 * it, so without this they would never hear each other again. One
 * exchange heals both views: each side takes the peer's own ALIVE record
 * at face value (alive_node) and refutes the DEAD record it finds about
 * itself in the peer's state.
 */
static void pushpull_due(pc_member_t *m)
{
    size_t alive = 0, dead = 0;
    for (size_t i = 1; i < m->n; i++) {
        alive += m->mv[i]->state == PC_MEMBER_ALIVE;
        dead += m->mv[i]->state == PC_MEMBER_DEAD;
    }
    bool (*ok)(const pc_member_t *, const struct member *) = ok_alive;
    if (dead > 0 && (alive == 0 || rng_below(&m->rng, alive + dead) < dead))
        ok = ok_dead;
    if (pick(m, 1, NULL, ok) == 0)
        return;
    strcpy(m->sync_addr, m->scratch[0]->addr);
    m->sync_due = true;
    m->st.pushpulls++;
}

/*
 * Every reconnect_interval_ms, a push/pull with one DEAD member picked at
 * random, unless one is already due. A member declared DEAD in a
 * partition stays DEAD on the other side until the two exchange states;
 * the periodic push/pull above reaches the dead only now and then (every
 * 30 s, and then only by chance), which made partitions take 10-30 s to
 * heal. This one reaches some DEAD member every second, so the first
 * exchange after a heal comes within about a second. Where the member
 * really is gone, it costs one failed connection a second, until it is
 * reaped (dead_reap_ms).
 */
static void reconnect_due(pc_member_t *m)
{
    if (m->sync_due || pick(m, 1, NULL, ok_dead) == 0)
        return;
    strcpy(m->sync_addr, m->scratch[0]->addr);
    m->sync_due = true;
    m->st.pushpulls++;
    m->st.reconnects++;
}

/*
 * When the next ping to a suspect is due: a reminder every REMIND_PERIODS
 * probe intervals, then LAST_CHANCE_PINGS in the last probe timeouts
 * before the deadline, one timeout apart. UINT64_MAX when none is left.
 */
static uint64_t suspect_ping_due(const pc_member_t *m, const struct member *mb)
{
    if (mb->susp_pings >= LAST_CHANCE_PINGS)
        return UINT64_MAX;
    uint64_t to = m->cfg.probe_timeout_ms;
    uint64_t lead = (uint64_t)(LAST_CHANCE_PINGS - mb->susp_pings) * to;
    uint64_t due = mb->susp_deadline > lead ? mb->susp_deadline - lead : 0;
    if (mb->susp_pings > 0 && due < mb->susp_pinged_at + to)
        due = mb->susp_pinged_at + to;
    if (mb->susp_pings == 0 && mb->susp_remind_at < due)
        due = mb->susp_remind_at;
    return due < mb->susp_deadline ? due : UINT64_MAX;
}

/*
 * Suspicion timers, and pings to the suspect itself carrying the
 * suspicion (as the buddy system does), both additions to SWIM/memberlist
 * that the simulation showed are needed:
 *   - last chance: a refutation reaches each member as a handful of
 *     random copies, so at 10% loss a member now and then misses all of
 *     them and, without this, declares a healthy member DEAD (4 times in
 *     30 simulated runs of 300 s; 0 with it);
 *   - reminders: a member whose SUSPECT updates all went out while its own
 *     packets were being lost (it was the partitioned one) holds a
 *     suspicion nobody else knows of, and would until its deadline.
 * The suspect answers a ping carrying a stale suspicion with its current
 * ALIVE record (claim_about_self), which clears ours. Members that got
 * the refutation in time send none of these; a member that is really
 * gone costs each holder a few small packets.
 */
static void suspicions_run(pc_member_t *m, uint64_t now)
{
    struct member *self = self_of(m);
    for (size_t i = 1; i < m->n; i++) {
        struct member *mb = m->mv[i];
        if (mb->state != PC_MEMBER_SUSPECT)
            continue;
        if (mb->susp_deadline <= now) {
            m->st.deaths_declared++;
            dead_node(m, str_bytes(mb->name), mb->incarnation, str_bytes(self->name), false,
                      now);
            continue;
        }
        if (now < suspect_ping_due(m, mb))
            continue;
        uint64_t to = m->cfg.probe_timeout_ms;
        uint64_t lead = (uint64_t)LAST_CHANCE_PINGS * to;
        if (mb->susp_deadline > lead && now < mb->susp_deadline - lead) {
            mb->susp_remind_at = now + (uint64_t)REMIND_PERIODS * m->cfg.probe_interval_ms;
        } else {
            mb->susp_pings++;
            mb->susp_pinged_at = now;
        }
        m->st.suspect_pings++;
        pc_gossip_msg_t msgs[2];
        memset(msgs, 0, sizeof(msgs));
        msgs[0].type = PC_GOSSIP_PING;
        msgs[0].seq = ++m->seq;
        msgs[0].name = str_bytes(mb->name);
        update_msg(m, mb, &msgs[1]);
        send_packet(m, mb->gossip, msgs, 1, 2);
    }
}

static void reap(pc_member_t *m, uint64_t now)
{
    size_t k = 1;
    bool any = false;
    for (size_t i = 1; i < m->n; i++) {
        struct member *mb = m->mv[i];
        if ((mb->state == PC_MEMBER_DEAD || mb->state == PC_MEMBER_LEFT) &&
            now - mb->since_ms >= m->cfg.dead_reap_ms) {
            member_free(mb);
            m->st.reaped++;
            any = true;
            continue;
        }
        m->mv[k++] = mb;
    }
    if (!any)
        return;
    m->n = k;
    m->epoch++;
    /* Fewer members, same table: cannot fail. The round restarts without
     * the reaped members (their pointers are gone). */
    (void)index_rebuild(m, m->n);
    order_reset(m);
}

/* ---- the partition lease ---------------------------------------------- */

static int cmp_acked_desc(const void *a, const void *b)
{
    const struct member *x = *(struct member *const *)a, *y = *(struct member *const *)b;
    return x->acked_ms < y->acked_ms ? 1 : x->acked_ms > y->acked_ms ? -1 : 0;
}

/*
 * Recomputes lease_until (pc_member_lease_until()). `known` counts self
 * and every member not LEFT; a majority of them is known / 2 peers
 * besides self. The lease runs lease_ms from the send time of the PING
 * that the last of the known / 2 most recently acking live peers ACKed.
 */
static void lease_update(pc_member_t *m)
{
    size_t known = 1, alive = 1, live = 1, k = 0;
    for (size_t i = 1; i < m->n; i++) {
        struct member *mb = m->mv[i];
        if (mb->state == PC_MEMBER_LEFT)
            continue;
        known++;
        alive += mb->state == PC_MEMBER_ALIVE;
        live += is_live(mb);
        if (mb->acked && is_live(mb))
            m->scratch[k++] = mb;
    }
    if (known < 3 || m->cfg.lease_ms == PC_MEMBER_LEASE_NEVER) {
        m->lease_until = UINT64_MAX;
        return;
    }
    size_t need = known / 2;
    if (known > LEASE_MAX_KNOWN) {
        m->lease_until = 2 * alive <= known ? 0 : UINT64_MAX;
        return;
    }
    if (2 * live <= known || k < need) {
        m->lease_until = 0;
        return;
    }
    qsort(m->scratch, k, sizeof(*m->scratch), cmp_acked_desc);
    m->lease_until = add_sat(m->scratch[need - 1]->acked_ms, m->cfg.lease_ms);
}

static void lease_ping(pc_member_t *m, struct member *mb, uint64_t now)
{
    struct lease_ping *lp = &m->lps[m->lps_next];
    m->lps_next = (m->lps_next + 1) % LEASE_PINGS_MAX;
    lp->used = true;
    lp->seq = ++m->seq;
    lp->hash = mb->hash;
    lp->sent_at = now;
    mb->lease_pinged = true;
    mb->lease_pinged_at = now;
    pc_gossip_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PC_GOSSIP_PING;
    msg.seq = lp->seq;
    msg.name = str_bytes(mb->name);
    send_packet(m, mb->gossip, &msg, 1, 1);
    m->st.lease_pings++;
}

/*
 * Keeps the lease from running out while a majority is reachable:
 * probes alone reach one member per probe interval (slower on a node in
 * poor health), so when fewer than a majority plus one live peers have
 * ACKed a PING sent within the last half lease, PING some of the others,
 * chosen at random. A peer whose ACK is lost is pinged again an eighth of
 * a lease later, so it has four chances before its part runs out; the
 * spare peer covers the rare one that misses all four.
 */
static void lease_renew(pc_member_t *m, uint64_t now)
{
    size_t known = 1, live = 0, fresh = 0, k = 0;
    uint64_t renew = m->cfg.lease_ms / 2, retry = m->cfg.lease_ms / 8;
    for (size_t i = 1; i < m->n; i++) {
        struct member *mb = m->mv[i];
        if (mb->state == PC_MEMBER_LEFT)
            continue;
        known++;
        if (!is_live(mb))
            continue;
        live++;
        if ((mb->acked && mb->acked_ms + renew > now) ||
            (mb->lease_pinged && now < mb->lease_pinged_at + retry))
            fresh++; /* renewed, or its ACK may be on the way */
        else
            m->scratch[k++] = mb;
    }
    size_t want = known / 2 + 1;
    if (want > live)
        want = live;
    if (known < 3 || known > LEASE_MAX_KNOWN || fresh >= want ||
        m->cfg.lease_ms == PC_MEMBER_LEASE_NEVER)
        return;
    shuffle_with(&m->lease_rng, m->scratch, k);
    /* send_packet() reuses scratch (piggyback): take the choice out first. */
    struct member *to[LEASE_MAX_KNOWN];
    size_t nto = 0;
    for (size_t j = 0; j < k && fresh + nto < want; j++)
        to[nto++] = m->scratch[j];
    for (size_t j = 0; j < nto; j++)
        lease_ping(m, to[j], now);
}

/* After every call that may change acks, states or members. */
static void lease_run(pc_member_t *m, uint64_t now)
{
    lease_renew(m, now);
    lease_update(m);
}

uint64_t pc_member_lease_until(const pc_member_t *m)
{
    return m != NULL ? m->lease_until : 0;
}

uint32_t pc_member_lease_ms(const pc_member_t *m)
{
    return m != NULL ? m->cfg.lease_ms : 0;
}

void pc_member_tick(pc_member_t *m, uint64_t now)
{
    if (m == NULL)
        return;
    if (now < m->now)
        now = m->now;
    m->now = now;

    relays_expire(m, now);
    struct probe *p = &m->probe;
    if (p->active && !p->indirect_sent && now >= p->timeout_at)
        probe_indirect(m, now);
    if (!m->left && now >= m->next_probe) {
        if (p->active)
            probe_fail(m, now);
        probe_start(m, now);
    }
    suspicions_run(m, now);
    if (now >= m->next_gossip) {
        gossip_round(m);
        m->next_gossip = now + m->cfg.gossip_interval_ms;
    }
    if (now >= m->next_pushpull) {
        if (!m->left)
            pushpull_due(m);
        m->next_pushpull = now + pushpull_interval(m);
    }
    if (m->followup_at != 0 && now >= m->followup_at) {
        m->followup_at = 0;
        if (!m->left)
            pushpull_due(m);
    }
    if (now >= m->next_reconnect) {
        if (!m->left)
            reconnect_due(m);
        m->next_reconnect = now + m->cfg.reconnect_interval_ms;
    }
    reap(m, now);
    if (now >= m->next_lease)
        m->next_lease = now + m->cfg.lease_ms / 16;
    lease_run(m, now);
}

uint64_t pc_member_next_deadline(const pc_member_t *m)
{
    if (m == NULL)
        return UINT64_MAX;
    uint64_t d = u64_min(m->next_pushpull, m->next_reconnect);
    if (m->followup_at != 0)
        d = u64_min(d, m->followup_at);
    if (!m->left)
        d = u64_min(d, m->next_probe);
    if (m->probe.active && !m->probe.indirect_sent)
        d = u64_min(d, m->probe.timeout_at);
    for (uint32_t i = 0; i < m->nrelays; i++)
        d = u64_min(d, m->relays[i].deadline);
    bool updates = false;
    for (size_t i = 0; i < m->n; i++) {
        const struct member *mb = m->mv[i];
        updates |= mb->bc_active;
        if (i == 0)
            continue;
        if (mb->state == PC_MEMBER_SUSPECT)
            d = u64_min(d, u64_min(mb->susp_deadline, suspect_ping_due(m, mb)));
        else if (mb->state == PC_MEMBER_DEAD || mb->state == PC_MEMBER_LEFT)
            d = u64_min(d, add_sat(mb->since_ms, m->cfg.dead_reap_ms));
    }
    if (updates)
        d = u64_min(d, m->next_gossip);
    if (m->lease_until != UINT64_MAX) {
        d = u64_min(d, m->next_lease);
        if (m->lease_until > m->now)
            d = u64_min(d, m->lease_until); /* the caller sees it run out */
    }
    return d;
}

/* ---- receiving -------------------------------------------------------- */

static void apply_update(pc_member_t *m, const pc_gossip_msg_t *g, uint64_t now)
{
    struct upd u;
    switch (g->type) {
    case PC_GOSSIP_ALIVE:
        u.name = g->name;
        u.addr = g->addr;
        u.gossip = g->gossip;
        u.weight = g->weight;
        u.incarnation = g->incarnation;
        alive_node(m, &u, false, now);
        break;
    case PC_GOSSIP_SUSPECT:
        suspect_node(m, g->name, g->incarnation, g->from, now);
        break;
    case PC_GOSSIP_DEAD:
        dead_node(m, g->name, g->incarnation, g->from, false, now);
        break;
    case PC_GOSSIP_LEFT:
        dead_node(m, g->name, g->incarnation, g->name, true, now);
        break;
    default:
        break;
    }
}

static void on_ping_req(pc_member_t *m, const char *from, const pc_gossip_msg_t *g, uint64_t now)
{
    pc_gossip_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    if (bytes_eq_str(g->name, self_of(m)->name)) {
        msg.type = PC_GOSSIP_ACK;
        msg.seq = g->seq;
        send_packet(m, from, &msg, 1, 1);
        return;
    }
    /* Ping the address we know for that name if we know it: it is as
     * fresh as the requester's, and a forged request cannot point us at
     * an arbitrary host for a member we know. */
    struct member *target = find(m, g->name);
    char to[PC_MEMBER_ADDR_MAX + 1];
    if (target != NULL) {
        strcpy(to, target->gossip);
    } else {
        memcpy(to, g->gossip.ptr, g->gossip.len);
        to[g->gossip.len] = '\0';
    }
    if (m->nrelays == RELAYS_MAX) {
        memmove(&m->relays[0], &m->relays[1], (RELAYS_MAX - 1) * sizeof(m->relays[0]));
        m->nrelays--;
    }
    struct relay *r = &m->relays[m->nrelays++];
    r->seq = ++m->seq;
    r->req_seq = g->seq;
    r->nack = g->nack_ms > 0;
    r->deadline = now + (r->nack ? u64_min(g->nack_ms, RELAY_MAX_MS) : m->cfg.probe_timeout_ms);
    strcpy(r->to, from);
    m->st.ping_reqs_served++;

    msg.type = PC_GOSSIP_PING;
    msg.seq = r->seq;
    msg.name = g->name;
    send_packet(m, to, &msg, 1, 1);
}

/*
 * A member we hold SUSPECT just sent us a packet, so it runs; if it had
 * heard of our suspicion it would have refuted it. This happens when our
 * SUSPECT updates were all sent while our own packets were being lost (a
 * partition of ours that has healed): tell it directly, as the buddy
 * system does, at most once per probe interval. Its refutation then
 * reaches us like any update.
 */
static void tell_suspect(pc_member_t *m, pc_bytes_t sender, const char *from, uint64_t now)
{
    struct member *mb = find(m, sender);
    if (mb == NULL || mb->state != PC_MEMBER_SUSPECT ||
        (mb->susp_told_at != 0 && now - mb->susp_told_at < m->cfg.probe_interval_ms))
        return;
    mb->susp_told_at = now;
    pc_gossip_msg_t msg;
    update_msg(m, mb, &msg);
    send_packet(m, from, &msg, 1, 1);
}

/* An ACK from `sender` itself to a PING we sent at sent_at renews its
 * part of the lease. */
static void lease_credit(pc_member_t *m, pc_bytes_t sender, uint64_t sent_at)
{
    struct member *mb = find(m, sender);
    if (mb != NULL && mb != self_of(m) && (!mb->acked || sent_at > mb->acked_ms)) {
        mb->acked = true;
        mb->acked_ms = sent_at;
    }
}

static void on_ack(pc_member_t *m, uint32_t seq, pc_bytes_t sender)
{
    struct probe *p = &m->probe;
    if (p->active && seq == p->seq) {
        p->active = false;
        m->st.probe_acks++;
        health_add(m, -1);
        /* Relayed ACKs come from the relay: no proof we reach the target. */
        if (bytes_eq_str(sender, p->target))
            lease_credit(m, sender, p->sent_at);
        return;
    }
    uint64_t h = fnv1a(sender.ptr, sender.len);
    for (uint32_t i = 0; i < LEASE_PINGS_MAX; i++) {
        struct lease_ping *lp = &m->lps[i];
        if (!lp->used || lp->seq != seq || lp->hash != h)
            continue;
        lease_credit(m, sender, lp->sent_at);
        lp->used = false;
        m->st.lease_acks++;
        return;
    }
    for (uint32_t i = 0; i < m->nrelays; i++) {
        struct relay *r = &m->relays[i];
        if (r->seq != seq)
            continue;
        pc_gossip_msg_t msg;
        memset(&msg, 0, sizeof(msg));
        msg.type = PC_GOSSIP_ACK;
        msg.seq = r->req_seq;
        char to[PC_MEMBER_ADDR_MAX + 1];
        strcpy(to, r->to);
        m->relays[i] = m->relays[--m->nrelays];
        send_packet(m, to, &msg, 1, 1);
        return;
    }
    m->st.stale_acks++;
}

int pc_member_recv(pc_member_t *m, uint64_t now, const char *from, const uint8_t *pkt,
                   size_t len)
{
    if (m == NULL || !cstr_ok(from, PC_MEMBER_ADDR_MAX) || (pkt == NULL && len > 0))
        return PC_EINVAL;
    if (now < m->now)
        now = m->now;
    m->now = now;
    m->st.packets_in++;
    m->st.bytes_in += len;

    pc_gossip_packet_t pk;
    int rc = pc_gossip_decode_packet(m->dec, pkt, len, &pk);
    if (rc == PC_ENOMEM)
        return rc;
    if (rc != 0) {
        m->st.bad_packets++;
        return rc;
    }
    /* Updates first, whatever their place in the packet, so that the
     * reply to a PING already carries a refutation of a SUSPECT that came
     * with it (the buddy system depends on it). */
    for (uint32_t i = 0; i < pk.nmsgs; i++)
        apply_update(m, &pk.msgs[i], now);
    tell_suspect(m, pk.sender, from, now);
    for (uint32_t i = 0; i < pk.nmsgs; i++) {
        const pc_gossip_msg_t *g = &pk.msgs[i];
        pc_gossip_msg_t msg;
        switch (g->type) {
        case PC_GOSSIP_PING:
            if (!bytes_eq_str(g->name, self_of(m)->name)) {
                m->st.misdirected++;
                break;
            }
            memset(&msg, 0, sizeof(msg));
            msg.type = PC_GOSSIP_ACK;
            msg.seq = g->seq;
            send_packet(m, from, &msg, 1, 1);
            break;
        case PC_GOSSIP_PING_REQ:
            on_ping_req(m, from, g, now);
            break;
        case PC_GOSSIP_ACK:
            on_ack(m, g->seq, pk.sender);
            break;
        case PC_GOSSIP_NACK:
            /* At most one per PING_REQ sent: a duplicated or replayed
             * NACK must not look like health. */
            if (m->probe.active && g->seq == m->probe.seq &&
                m->probe.nacks < m->probe.expected_nacks) {
                m->probe.nacks++;
                m->st.nacks_received++;
            } else {
                m->st.stale_acks++;
            }
            break;
        default:
            break;
        }
    }
    lease_run(m, now);
    return 0;
}

/* ---- push/pull -------------------------------------------------------- */

int pc_member_encode_state(pc_member_t *m, pc_buf_t *out)
{
    if (m == NULL || out == NULL)
        return PC_EINVAL;
    pc_gossip_node_t *nodes = calloc(m->n, sizeof(*nodes));
    if (nodes == NULL)
        return PC_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
        const struct member *mb = m->mv[i];
        nodes[i].name = str_bytes(mb->name);
        nodes[i].addr = str_bytes(mb->addr);
        nodes[i].gossip = str_bytes(mb->gossip);
        nodes[i].weight = mb->weight;
        nodes[i].state = (uint32_t)mb->state;
        nodes[i].incarnation = mb->incarnation;
    }
    int rc = pc_gossip_encode_state(out, str_bytes(self_of(m)->name), nodes, m->n);
    free(nodes);
    return rc;
}

int pc_member_merge_state(pc_member_t *m, uint64_t now, const uint8_t *p, size_t len)
{
    if (m == NULL || (p == NULL && len > 0))
        return PC_EINVAL;
    if (now < m->now)
        now = m->now;
    m->now = now;
    pc_gossip_state_t s;
    int rc = pc_gossip_decode_state(m->dec, p, len, &s);
    if (rc == PC_ENOMEM)
        return rc;
    if (rc != 0) {
        m->st.bad_packets++;
        return rc;
    }
    m->st.merges++;
    uint64_t joins = m->st.joins;
    for (uint32_t i = 0; i < s.nnodes; i++) {
        const pc_gossip_node_t *nd = &s.nodes[i];
        struct upd u;
        switch (nd->state) {
        case PC_GOSSIP_ST_ALIVE:
            u.name = nd->name;
            u.addr = nd->addr;
            u.gossip = nd->gossip;
            u.weight = nd->weight;
            u.incarnation = nd->incarnation;
            alive_node(m, &u, bytes_eq(nd->name, s.sender), now);
            break;
        case PC_GOSSIP_ST_LEFT:
            dead_node(m, nd->name, nd->incarnation, nd->name, true, now);
            break;
        default:
            /* A remote DEAD may be stale: let our own timer decide. A
             * current one about us still says the sender held us gone. */
            if (nd->state == PC_GOSSIP_ST_DEAD && !m->left &&
                find(m, nd->name) == self_of(m) && nd->incarnation >= self_of(m)->incarnation)
                m->st.declared_dead++;
            suspect_node(m, nd->name, nd->incarnation, s.sender, now);
            break;
        }
    }
    /*
     * The state taught us members we had not heard of: we are behind --
     * typically just joined, while others joined too -- and gossip may
     * not fill every gap (each update reaches a member as a handful of
     * random copies; in a burst of joins some member misses some). Sync
     * once more with another member a few periods from now -- late enough
     * for the news of the others to have spread, and on its own timer, so
     * a periodic sync that happens to fall sooner does not cancel it. Over
     * 200 simulated starts of 50 members this took the slowest
     * convergence from 27 s to a few seconds.
     */
    if (m->st.joins > joins && !m->left) {
        uint64_t soon = now + m->cfg.probe_interval_ms * (2 + rng_below(&m->rng, 4));
        if (m->followup_at == 0 || soon < m->followup_at)
            m->followup_at = soon;
    }
    lease_run(m, now);
    return 0;
}

/* ---- leave ------------------------------------------------------------ */

int pc_member_leave(pc_member_t *m, uint64_t now)
{
    if (m == NULL)
        return PC_EINVAL;
    if (m->left)
        return PC_ECLOSED;
    if (now < m->now)
        now = m->now;
    m->now = now;
    struct member *self = self_of(m);
    m->left = true;
    m->probe.active = false;
    self->incarnation++;
    set_state(self, PC_MEMBER_LEFT, now);
    queue_update(m, self, NULL);
    emit(m, self, PC_MEMBER_ALIVE, false);

    /* A leave is planned and rare: tell every live member directly
     * instead of trusting gossip alone, whose tail leaves about one
     * member in a few thousand unaware for seconds. Gossip still carries
     * it on (to the rest, beyond LEAVE_DIRECT_MAX, and past lost packets). */
    size_t k = pick(m, LEAVE_DIRECT_MAX, NULL, ok_live);
    /* send_packet() reuses scratch for piggybacking: copy the targets. */
    struct member **to = malloc(k * sizeof(*to) + 1);
    if (to != NULL) {
        memcpy(to, m->scratch, k * sizeof(*to));
        pc_gossip_msg_t msg;
        update_msg(m, self, &msg);
        /* The LEFT goes in each packet as its own message; keep it out of
         * the piggyback so these sends do not use up the gossip budget. */
        self->bc_active = false;
        for (size_t i = 0; i < k; i++)
            send_packet(m, to[i]->gossip, &msg, 1, 1);
        free(to);
        queue_update(m, self, NULL);
    }
    gossip_round(m);
    m->next_gossip = now + m->cfg.gossip_interval_ms;
    lease_run(m, now);
    return 0;
}

bool pc_member_leave_done(const pc_member_t *m)
{
    if (m == NULL || !m->left)
        return false;
    if (!self_of(m)->bc_active)
        return true;
    for (size_t i = 1; i < m->n; i++) {
        if (is_live(m->mv[i]))
            return false;
    }
    return true;
}

/* ---- output queues ---------------------------------------------------- */

int pc_member_next_packet(pc_member_t *m, char *to, size_t tocap, pc_buf_t *pkt)
{
    if (m == NULL || to == NULL || pkt == NULL)
        return PC_EINVAL;
    struct outpkt *op = fifo_peek(&m->out);
    if (op == NULL)
        return 0;
    if (strlen(op->to) >= tocap)
        return PC_ERANGE;
    strcpy(to, op->to);
    pc_buf_reset(pkt);
    int rc = pc_buf_append(pkt, op->data, op->len);
    free(op->data);
    fifo_pop(&m->out);
    return rc == 0 ? 1 : rc;
}

int pc_member_next_event(pc_member_t *m, pc_member_event_t *ev)
{
    if (m == NULL || ev == NULL)
        return PC_EINVAL;
    free(m->ev_cur);
    m->ev_cur = NULL;
    struct event *e = fifo_peek(&m->events);
    if (e == NULL)
        return 0;
    m->ev_cur = e->strs;
    ev->name = e->strs;
    ev->addr = e->strs + e->addr_off;
    ev->gossip = e->strs + e->gossip_off;
    ev->weight = e->weight;
    ev->incarnation = e->incarnation;
    ev->state = e->state;
    ev->prev = e->prev;
    ev->joined = e->joined;
    fifo_pop(&m->events);
    return 1;
}

int pc_member_next_sync(pc_member_t *m, char *addr, size_t cap)
{
    if (m == NULL || addr == NULL)
        return PC_EINVAL;
    if (!m->sync_due)
        return 0;
    if (strlen(m->sync_addr) >= cap)
        return PC_ERANGE;
    strcpy(addr, m->sync_addr);
    m->sync_due = false;
    return 1;
}

/* ---- lifecycle and queries --------------------------------------------- */

void pc_member_config_defaults(pc_member_config_t *c)
{
    c->probe_interval_ms = 1000;
    c->probe_timeout_ms = 500;
    c->indirect_probes = 3;
    c->suspicion_mult = 4;
    c->suspicion_max_mult = 6;
    c->retransmit_mult = 4;
    c->gossip_interval_ms = 200;
    c->gossip_nodes = 3;
    c->gossip_dead_ms = 30000;
    c->awareness_max = 8;
    c->pushpull_interval_ms = 30000;
    c->max_packet = 1400;
    c->dead_reap_ms = 60000;
    c->reconnect_interval_ms = 1000;
    c->lease_ms = 2000;
}

static int resolve_config(const pc_member_config_t *in, pc_member_config_t *c)
{
    pc_member_config_t d;
    pc_member_config_defaults(&d);
    *c = *in;
#define DEFAULT(f)                                                                                 \
    do {                                                                                           \
        if (c->f == 0)                                                                             \
            c->f = d.f;                                                                            \
    } while (0)
    DEFAULT(probe_interval_ms);
    DEFAULT(probe_timeout_ms);
    DEFAULT(indirect_probes);
    DEFAULT(suspicion_mult);
    DEFAULT(suspicion_max_mult);
    DEFAULT(retransmit_mult);
    DEFAULT(gossip_interval_ms);
    DEFAULT(gossip_nodes);
    DEFAULT(gossip_dead_ms);
    DEFAULT(awareness_max);
    DEFAULT(pushpull_interval_ms);
    DEFAULT(max_packet);
    DEFAULT(dead_reap_ms);
    DEFAULT(reconnect_interval_ms);
#undef DEFAULT
    if (c->lease_ms == 0)
        c->lease_ms = (uint32_t)((uint64_t)c->suspicion_mult * c->probe_interval_ms / 2);
    if (c->weight == 0)
        c->weight = 1;
    if (!cstr_ok(c->name, PC_MEMBER_NAME_MAX) || !cstr_ok(c->addr, PC_MEMBER_ADDR_MAX) ||
        !cstr_ok(c->gossip, PC_MEMBER_ADDR_MAX) || c->weight > PC_MEMBER_MAX_WEIGHT)
        return PC_EINVAL;
    if (c->probe_timeout_ms >= c->probe_interval_ms || c->suspicion_mult > KNOB_MAX ||
        c->suspicion_max_mult > KNOB_MAX || c->awareness_max > 64 ||
        c->max_packet < MIN_PACKET || c->max_packet > PC_GOSSIP_MAX_PACKET ||
        c->indirect_probes > KNOB_MAX || c->gossip_nodes > KNOB_MAX ||
        c->retransmit_mult > KNOB_MAX ||
        (c->lease_ms != PC_MEMBER_LEASE_NEVER &&
         (c->lease_ms < 8 || c->lease_ms > (uint64_t)c->suspicion_mult * c->probe_interval_ms)))
        return PC_ERANGE;
    return 0;
}

int pc_member_new(const pc_member_config_t *cfg, uint64_t seed, uint64_t now, pc_member_t **out)
{
    if (out == NULL)
        return PC_EINVAL;
    *out = NULL;
    if (cfg == NULL)
        return PC_EINVAL;
    pc_member_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return PC_ENOMEM;
    int rc = resolve_config(cfg, &m->cfg);
    if (rc != 0) {
        free(m);
        return rc;
    }
    rng_seed(&m->rng, seed);
    rng_seed(&m->lease_rng, seed ^ 0x6c65617365ULL);
    m->now = now;
    fifo_init(&m->out, sizeof(struct outpkt), OUT_MAX);
    fifo_init(&m->events, sizeof(struct event), EVENTS_MAX);
    rc = pc_gossip_decoder_new(&m->dec);
    if (rc == 0)
        rc = index_rebuild(m, 8);
    struct member *self = NULL;
    if (rc == 0) {
        self = member_add(m, str_bytes(cfg->name), str_bytes(cfg->addr), str_bytes(cfg->gossip),
                          m->cfg.weight, cfg->incarnation, PC_MEMBER_ALIVE, now);
        if (self == NULL)
            rc = PC_ENOMEM;
    }
    if (rc != 0) {
        pc_member_free(&m);
        return rc;
    }
    /* The strings belong to the caller; self's copies are the ones used. */
    m->cfg.name = self->name;
    m->cfg.addr = self->addr;
    m->cfg.gossip = self->gossip;

    /* Our own ALIVE rides on the first packets, as in memberlist: push/pull
     * tells the seed, gossip tells everyone else sooner. */
    queue_update(m, self, NULL);
    emit(m, self, PC_MEMBER_ALIVE, true);
    m->next_probe = now + m->cfg.probe_interval_ms;
    m->next_gossip = now + m->cfg.gossip_interval_ms;
    m->next_pushpull = m->cfg.pushpull_interval_ms == PC_MEMBER_PUSHPULL_NEVER
                           ? UINT64_MAX / 2
                           : now + 1 + rng_below(&m->rng, m->cfg.pushpull_interval_ms);
    m->next_reconnect = now + m->cfg.reconnect_interval_ms;
    m->next_lease = now;
    lease_update(m);
    *out = m;
    return 0;
}

void pc_member_free(pc_member_t **mp)
{
    if (mp == NULL || *mp == NULL)
        return;
    pc_member_t *m = *mp;
    for (size_t i = 0; i < m->n; i++)
        member_free(m->mv[i]);
    free(m->mv);
    free(m->order);
    free(m->scratch);
    free(m->index);
    for (struct outpkt *op; (op = fifo_peek(&m->out)) != NULL; fifo_pop(&m->out))
        free(op->data);
    free(m->out.items);
    for (struct event *e; (e = fifo_peek(&m->events)) != NULL; fifo_pop(&m->events))
        free(e->strs);
    free(m->events.items);
    free(m->ev_cur);
    pc_gossip_decoder_free(&m->dec);
    free(m);
    *mp = NULL;
}

static void fill_info(const struct member *mb, pc_member_info_t *out)
{
    out->name = mb->name;
    out->addr = mb->addr;
    out->gossip = mb->gossip;
    out->weight = mb->weight;
    out->incarnation = mb->incarnation;
    out->state = mb->state;
    out->since_ms = mb->since_ms;
}

size_t pc_member_count(const pc_member_t *m)
{
    return m != NULL ? m->n : 0;
}

bool pc_member_cut_off(const pc_member_t *m, uint64_t now_ms, size_t *live, size_t *known,
                       size_t *acked)
{
    size_t a = 1, k = 1, h = 0;
    if (m == NULL)
        return true;
    for (size_t i = 1; i < m->n; i++) {
        const struct member *mb = m->mv[i];
        if (mb->state == PC_MEMBER_LEFT)
            continue;
        k++;
        a += is_live(mb);
        h += mb->acked && is_live(mb) && add_sat(mb->acked_ms, m->cfg.lease_ms) > now_ms;
    }
    if (live != NULL)
        *live = a;
    if (known != NULL)
        *known = k;
    if (acked != NULL)
        *acked = h;
    return now_ms >= m->lease_until;
}

int pc_member_get(const pc_member_t *m, size_t i, pc_member_info_t *out)
{
    if (m == NULL || out == NULL || i >= m->n)
        return PC_ENOTFOUND;
    fill_info(m->mv[i], out);
    return 0;
}

int pc_member_lookup(const pc_member_t *m, const char *name, pc_member_info_t *out)
{
    if (m == NULL || out == NULL || !cstr_ok(name, PC_MEMBER_NAME_MAX))
        return PC_ENOTFOUND;
    const struct member *mb = find_str(m, name);
    if (mb == NULL)
        return PC_ENOTFOUND;
    fill_info(mb, out);
    return 0;
}

uint64_t pc_member_epoch(const pc_member_t *m)
{
    return m != NULL ? m->epoch : 0;
}

unsigned pc_member_health(const pc_member_t *m)
{
    return m != NULL ? m->health : 0;
}

void pc_member_stats(const pc_member_t *m, pc_member_stats_t *out)
{
    if (m == NULL || out == NULL)
        return;
    *out = m->st;
    out->members = (uint32_t)m->n;
    out->alive = out->suspect = out->dead = out->left = 0;
    for (size_t i = 0; i < m->n; i++) {
        switch (m->mv[i]->state) {
        case PC_MEMBER_ALIVE:
            out->alive++;
            break;
        case PC_MEMBER_SUSPECT:
            out->suspect++;
            break;
        case PC_MEMBER_DEAD:
            out->dead++;
            break;
        default:
            out->left++;
            break;
        }
    }
    out->health = m->health;
}
