/*
 * pc_vclock.c -- the version clock (pc_vclock.h).
 */
#include "pc_vclock.h"

#include <time.h>

uint64_t pc_vclock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) << 16;
}

int64_t pc_vclock_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t pc_vclock_wall_at_us(int64_t mono_at_us, int64_t mono_now_us)
{
    return pc_vclock_wall_us() + (mono_at_us - mono_now_us);
}

uint64_t pc_vclock_next(pc_vclock_t *vc, uint64_t wall)
{
    uint64_t last = atomic_load_explicit(&vc->last, memory_order_relaxed), v;
    do
        v = wall > last ? wall : last + 1;
    while (!atomic_compare_exchange_weak_explicit(&vc->last, &last, v, memory_order_relaxed,
                                                  memory_order_relaxed));
    return v;
}

int pc_vclock_observe(pc_vclock_t *vc, uint64_t v, uint64_t wall)
{
    if (v > wall + PC_VCLOCK_AHEAD_MAX)
        return 0;
    uint64_t last = atomic_load_explicit(&vc->last, memory_order_relaxed);
    while (v > last && !atomic_compare_exchange_weak_explicit(&vc->last, &last, v,
                                                              memory_order_relaxed,
                                                              memory_order_relaxed))
        ;
    return 1;
}
