/*
 * pc_light.c -- a connection's share of its loop's time, as a token
 * bucket (see pc_light.h).
 */
#include "pc_light.h"

void pc_light_init(pc_light_t *l, uint64_t now)
{
    l->balance = 0;
    l->at = now;
}

int pc_light_spend(pc_light_t *l, uint64_t now, uint64_t work)
{
    uint64_t since = now > l->at ? now - l->at : 0;
    if (now > l->at)
        l->at = now;
    uint64_t earned = since / PC_LIGHT_RATE_DIV;
    int64_t b = l->balance;
    /* Each step bounded: no overflow, however long it was idle. */
    b += earned > (uint64_t)(PC_LIGHT_BANK_NS + PC_LIGHT_DEBT_NS)
             ? PC_LIGHT_BANK_NS + PC_LIGHT_DEBT_NS
             : (int64_t)earned;
    if (b > PC_LIGHT_BANK_NS)
        b = PC_LIGHT_BANK_NS;
    b -= (int64_t)(work < PC_LIGHT_TURN_MAX_NS ? work : PC_LIGHT_TURN_MAX_NS);
    if (b < -PC_LIGHT_DEBT_NS)
        b = -PC_LIGHT_DEBT_NS;
    l->balance = b;
    return b >= 0;
}
