/*
 * pc_health.c -- a node's health as a client sees it (pc_health.h).
 */
#include "pc_health.h"

void pc_health_init(pc_health_t *h)
{
    h->srtt_us = 0;
    h->rttvar_us = 0;
    h->fails = 0;
    h->open_until_ms = 0;
}

void pc_health_ok(pc_health_t *h, int64_t rtt_us)
{
    h->fails = 0;
    h->open_until_ms = 0;
    if (rtt_us < 0)
        return;
    if (h->srtt_us == 0) {
        h->srtt_us = rtt_us > 0 ? rtt_us : 1;
        h->rttvar_us = rtt_us / 2;
        return;
    }
    /* RFC 6298's gains: 1/4 for the deviation, 1/8 for the mean. */
    int64_t err = rtt_us - h->srtt_us;
    h->rttvar_us += ((err < 0 ? -err : err) - h->rttvar_us) / 4;
    h->srtt_us += err / 8;
    if (h->srtt_us <= 0)
        h->srtt_us = 1;
}

static int64_t backoff_ms(uint32_t fails)
{
    int64_t ms = PC_HEALTH_BACKOFF_MIN_MS;

    for (uint32_t i = 1; i < fails && ms < PC_HEALTH_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < PC_HEALTH_BACKOFF_MAX_MS ? ms : PC_HEALTH_BACKOFF_MAX_MS;
}

int pc_health_fail(pc_health_t *h, int64_t now_ms)
{
    int was_closed = h->fails == 0;

    if (h->fails < UINT32_MAX)
        h->fails++;
    h->open_until_ms = now_ms + backoff_ms(h->fails);
    return was_closed;
}

void pc_health_probed(pc_health_t *h, int64_t now_ms)
{
    if (h->fails > 0)
        h->open_until_ms = now_ms + backoff_ms(h->fails);
}

int pc_health_state(const pc_health_t *h, int64_t now_ms)
{
    if (h->fails == 0)
        return PC_HEALTH_CLOSED;
    return now_ms < h->open_until_ms ? PC_HEALTH_OPEN : PC_HEALTH_PROBE;
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    if (v > hi)
        v = hi;
    return v < lo ? lo : v;
}

int64_t pc_health_hedge_ms(const pc_health_t *h, int64_t timeout_ms)
{
    int64_t ms = PC_HEALTH_HEDGE_DEFAULT_MS;

    if (h->srtt_us > 0)
        ms = (h->srtt_us + 4 * h->rttvar_us + 999) / 1000;
    /* A tiny timeout wins over the floor: the hedge must come before it. */
    int64_t hi = timeout_ms / 4;
    return clamp(ms, PC_HEALTH_HEDGE_MIN_MS < hi ? PC_HEALTH_HEDGE_MIN_MS : hi, hi);
}

int64_t pc_health_stall_ms(const pc_health_t *h, int64_t timeout_ms)
{
    int64_t ms = 4 * pc_health_hedge_ms(h, timeout_ms);

    if (ms < PC_HEALTH_STALL_MIN_MS)
        ms = PC_HEALTH_STALL_MIN_MS;
    return ms < timeout_ms / 2 ? ms : timeout_ms / 2;
}
