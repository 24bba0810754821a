/*
 * pc_light.c -- a connection's share of its loop's time, as a token
 * bucket (see pc_light.h).
 */
#include "pc_light.h"

void pc_light_init(pc_light_t *l, uint64_t now)
{
    l->balance = 0;
    l->at = now;
    l->waiting = 0;
}

/* Brings the balance up to `now`: what the time since `at` is worth,
 * unless the connection was waiting for its turn all that time. */
static void earn(pc_light_t *l, uint64_t now)
{
    uint64_t since = now > l->at ? now - l->at : 0;
    if (now > l->at)
        l->at = now;
    if (l->waiting)
        return;
    uint64_t earned = since / PC_LIGHT_RATE_DIV;
    int64_t b = l->balance;
    /* Each step bounded: no overflow, however long it was idle. */
    b += earned > (uint64_t)(PC_LIGHT_BANK_NS + PC_LIGHT_DEBT_NS)
             ? PC_LIGHT_BANK_NS + PC_LIGHT_DEBT_NS
             : (int64_t)earned;
    if (b > PC_LIGHT_BANK_NS)
        b = PC_LIGHT_BANK_NS;
    l->balance = b;
}

void pc_light_wait(pc_light_t *l, uint64_t now)
{
    earn(l, now);
    l->waiting = 1;
}

void pc_light_idle(pc_light_t *l, uint64_t now)
{
    earn(l, now);
    l->waiting = 0;
}

int pc_light_spend(pc_light_t *l, uint64_t now, uint64_t work)
{
    earn(l, now);
    l->waiting = 0;
    int64_t b = l->balance;
    b -= (int64_t)(work < PC_LIGHT_TURN_MAX_NS ? work : PC_LIGHT_TURN_MAX_NS);
    if (b < -PC_LIGHT_DEBT_NS)
        b = -PC_LIGHT_DEBT_NS;
    l->balance = b;
    return b >= 0;
}
