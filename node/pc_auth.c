/*
 * pc_auth.c -- client tokens, HELLO, and the back-off of bad ones.
 */
#include "pc_auth.h"

#include <string.h>

#include "pc_loop.h"
#include "pc_loops.h"
#include "pc_vclock.h"

#define AUTH_DELAY_MS 100
#define AUTH_DELAY_MAX_SHIFT 4
#define AUTH_STORM 100
#define AUTH_SOURCE_STORM 10
#define AUTH_STORM_DELAY_MS 2000
/* Tokens compared for one address in any two seconds running: past that,
 * its HELLOs are refused unread (pc_auth_hello). */
#define AUTH_SOURCE_COMPARES 20

void pc_auth_shared_init(pc_auth_shared_t *a)
{
    pthread_mutex_init(&a->lock, NULL);
    a->required = 0;
    atomic_init(&a->window, 0);
}

void pc_auth_shared_destroy(pc_auth_shared_t *a)
{
    sodium_memzero(a->hash, sizeof a->hash);
    pthread_mutex_destroy(&a->lock);
}

static void token_hash(const uint8_t *p, size_t n, uint8_t out[crypto_generichash_BYTES])
{
    crypto_generichash(out, crypto_generichash_BYTES, p, n, NULL, 0);
}

void pc_auth_set_token(pc_auth_shared_t *a, const char *token, size_t len)
{
    uint8_t h[crypto_generichash_BYTES];
    int req = token != NULL && len > 0;
    if (req)
        token_hash((const uint8_t *)token, len, h);
    pthread_mutex_lock(&a->lock);
    a->required = req;
    if (req)
        memcpy(a->hash, h, sizeof h);
    pthread_mutex_unlock(&a->lock);
    sodium_memzero(h, sizeof h);
}

/* Constant time whatever the candidate: both sides are hashed to a fixed
 * length first, so neither the length nor any prefix of the token leaks
 * through timing. */
static int token_ok(pc_auth_shared_t *a, const pc_bytes_t *tok)
{
    uint8_t h[crypto_generichash_BYTES], want[crypto_generichash_BYTES];
    token_hash(tok->ptr, tok->len, h);
    pthread_mutex_lock(&a->lock);
    memcpy(want, a->hash, sizeof want);
    pthread_mutex_unlock(&a->lock);
    return sodium_memcmp(h, want, sizeof h) == 0;
}

void pc_auth_opened(pc_conn_t *c) { c->authed = !pc_auth_required(c); }

int pc_auth_required(pc_conn_t *c)
{
    pc_auth_shared_t *a = &pc_loop_of(c)->sh->auth;
    pthread_mutex_lock(&a->lock);
    int req = a->required;
    pthread_mutex_unlock(&a->lock);
    return req;
}

int pc_auth_is_peer_op(uint32_t op)
{
    return op == PC_OP_FORWARD || op == PC_OP_SYNC || op == PC_OP_REPLICATE;
}

uint64_t pc_auth_delay(unsigned fails, uint32_t node_fails, uint32_t source_fails)
{
    if (node_fails > AUTH_STORM || source_fails > AUTH_SOURCE_STORM)
        return AUTH_STORM_DELAY_MS;
    unsigned shift = fails == 0 ? 0 : fails - 1;
    if (shift > AUTH_DELAY_MAX_SHIFT)
        shift = AUTH_DELAY_MAX_SHIFT;
    return (uint64_t)AUTH_DELAY_MS << shift;
}

uint32_t pc_auth_window_fail(pc_auth_shared_t *a, uint64_t now_ms)
{
    uint64_t sec = now_ms / 1000, w = atomic_load(&a->window), n;
    /* Only a later second starts a new count: a loop whose cached time
     * is still in the previous second adds to the current one. (Resetting
     * on any other second let two loops a second apart zero each other's
     * count for as long as their clocks straddled the boundary.) */
    do
        n = (w >> 32) >= sec ? w + 1 : (sec << 32) | 1;
    while (!atomic_compare_exchange_weak(&a->window, &w, n));
    return (uint32_t)n;
}

static void auth_fail(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    /* The delay is a minimum (PROTOCOL.md 5.1), so it counts from now, not
     * from the loop's cached time: that is when the poll returned, and a
     * loaded loop (or one the kernel preempted) may have been serving
     * others since -- the answer went out that much early. */
    uv_update_time(l->uv);
    uint64_t now = pc_loop_now(l);
    l->stats.auth_failures++;
    uint32_t node_fails = pc_auth_window_fail(&l->sh->auth, now);
    uint32_t source_fails =
        c->source_counted ? pc_sources_auth_fail(l->sh->sources, &c->source, now) : 0;
    c->auth.fails++;
    if (c->auth.fails == 1 || c->auth.fails % 5 == 0)
        pc_log_info(l->log, "client %s: bad token (%u failures on this connection)", c->peer,
                    c->auth.fails);
    c->auth.pending = 1;
    c->auth.until = now + pc_auth_delay(c->auth.fails, node_fails, source_fails);
    c->auth.id = rq->id;
}

/*
 * An address that has had AUTH_SOURCE_COMPARES tokens compared and found
 * wrong in this second and the last gets no more compared until that
 * falls: its HELLO is refused without a look at the token, after the
 * storm delay, and counted apart (auth_unchecked, not in the windows). An
 * answer that never depends on the token tells a guesser nothing, so one
 * address tests at most 20 tokens in two seconds however many
 * connections it spreads them over (before, each connection had a guess
 * out at a time: 1,024 connections, 500 a second). Other addresses are
 * compared as ever: one address's flood locks nobody else out.
 */
static int auth_source_spent(pc_conn_t *c, uint64_t now)
{
    pc_loop_t *l = pc_loop_of(c);
    return c->source_counted &&
           pc_sources_auth_recent(l->sh->sources, &c->source, now) >= AUTH_SOURCE_COMPARES;
}

static void auth_unchecked(pc_conn_t *c, const pc_request_t *rq, uint64_t now)
{
    pc_loop_t *l = pc_loop_of(c);
    l->stats.auth_unchecked++;
    c->auth.fails++;
    c->auth.unchecked = 1;
    c->auth.pending = 1;
    c->auth.until = now + AUTH_STORM_DELAY_MS;
    c->auth.id = rq->id;
}

void pc_auth_hello(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    /* A newer client is answered too: the reply carries the version this
     * node speaks and the client falls back to it (PROTOCOL.md §10).
     * There never was a version 0. */
    if (rq->proto_version == 0) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_BAD_REQUEST,
                             "unsupported protocol version");
        return;
    }
    if (!c->authed) {
        uint64_t now = pc_loop_now(l);
        if (auth_source_spent(c, now)) {
            auth_unchecked(c, rq, now);
            return;
        }
        if (!token_ok(&l->sh->auth, &rq->token)) {
            auth_fail(c, rq);
            return;
        }
        c->authed = 1;
    }
    pc_response_t resp = {
        .op = rq->op, .id = rq->id, .status = PC_ST_OK, .proto_version = PC_PROTO_VERSION,
        .node_name = {(const uint8_t *)l->name, (uint32_t)strlen(l->name)},
        .server_version = {(const uint8_t *)PC_VERSION_STRING,
                           (uint32_t)strlen(PC_VERSION_STRING)},
        /* the client sets its writes' deadlines by it (PROTOCOL.md §5.1) */
        .now_ms = pc_vclock_wall() >> 16};
    pc_conn_answer(c, &resp);
}

int pc_auth_tick(pc_conn_t *c, uint64_t now)
{
    if (!c->auth.pending || now < c->auth.until)
        return 0;
    c->auth.pending = 0;
    c->hello_since = now; /* the next try has its own --hello-timeout */
    pc_conn_answer_error(c, PC_OP_HELLO, c->auth.id, PC_ST_AUTH_REQUIRED,
                         c->auth.unchecked ? "token not checked: too many bad tokens from "
                                             "this address; try again later"
                                           : "bad token");
    c->auth.unchecked = 0;
    if (c->closing)
        return 1;
    if (c->auth.fails >= PC_AUTH_MAX_FAILS) {
        pc_conn_say_error(c, PC_ST_AUTH_REQUIRED, "too many bad tokens");
        pc_conn_flush(c);
        pc_conn_close(c, NULL);
        return 1;
    }
    pc_conn_run(c);
    return 1;
}

int pc_auth_refuse(pc_conn_t *c, const pc_request_t *rq)
{
    pc_loop_t *l = pc_loop_of(c);
    if (pc_auth_is_peer_op(rq->op) && pc_guard_on(l->guard) && !c->sealed && !c->internal) {
        l->stats.peer_refused++;
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_AUTH_REQUIRED,
                             "peer operations must be sealed with the cluster key");
        return 1;
    }
    if (!c->authed && rq->op != PC_OP_HELLO && rq->op != PC_OP_PING) {
        if (pc_auth_is_peer_op(rq->op))
            l->stats.peer_refused++;
        else
            l->stats.auth_refused++;
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_AUTH_REQUIRED,
                             "send HELLO with the token first");
        return 1;
    }
    return 0;
}
