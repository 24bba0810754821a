/*
 * pc_unsent.c -- a client connection's bound on unsent bytes (pc_unsent.h).
 */
#include "pc_unsent.h"

size_t pc_unsent_target(size_t set, size_t budget, size_t earned)
{
    size_t e = earned > 0 ? earned : PC_UNSENT_START;
    size_t t = e < budget ? e : budget;
    if (t == set)
        return 0;
    /* Within 2x of a budget that moved: as it is. */
    if (set != 0 && (t > set ? t < 2 * set && t != e : t > set / 2))
        return 0;
    return t;
}

size_t pc_unsent_earn(size_t earned, size_t max)
{
    size_t e = earned > 0 ? earned : PC_UNSENT_START;
    return e < max ? 2 * e : e;
}
