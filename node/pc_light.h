/*
 * pc_light.h -- whether a client connection's turns may be light: the
 * share of the loop's time it has been taking (pc_conn.c "fair turns").
 *
 * A turn that runs out of input says that the client asked for no more
 * than it got, not how often it asks. A flood of PINGs sent in blocks
 * that each fit one turn, answered into the kernel's buffers until they
 * are full, looks light turn after turn: a thousand that connected at
 * once were served as light clients, each the moment a poll reported it,
 * and a light client waited behind them (docs/PERFORMANCE.md "Light is a
 * rate"). So light is also a rate, kept as a token bucket of loop time:
 * a connection earns 1/PC_LIGHT_RATE_DIV of the time that passes, and
 * banks up to PC_LIGHT_BANK_NS of it; every turn spends what it took (at
 * most PC_LIGHT_TURN_MAX_NS: a one-request turn that the kernel preempted
 * is no flood); a connection whose balance is below 0 is heavy. The
 * balance goes no lower than -PC_LIGHT_DEBT_NS, so that a client that
 * stops flooding is light again after PC_LIGHT_DEBT_NS *
 * PC_LIGHT_RATE_DIV of time (3.2 ms). A connection starts with nothing
 * banked at accept: a flood that connects is heavy from its first turn.
 * And time a connection spends waiting for its turn (pc_light_wait, as it
 * is queued), or not read (pc_light_wait as reading stops, pc_light_idle
 * as it resumes with nothing to do), earns nothing: it was asking, or
 * nobody was listening. Else waiting was a bank: 1,000 floods that
 * connected at once waited 0.4 s in the heavy queue, each banked 2 ms,
 * and once their turns ran out of input they were served light -- 10-24
 * turns of about 60 us in each poll, ahead of a light client's request.
 *
 * What that allows: a client asking a few microseconds of work 1,000
 * times a second takes 2-3% of the loop and stays light; one that asks
 * without pause does not, once its bank is spent. The bank is for
 * bursts: a client that sends a run of requests one after the other (a
 * page built from 50 GETs, or a client catching up after a stall) stays
 * light through 2 ms of the loop's work. With a bank of 100 us a probe
 * that had fallen behind asked back to back, turned heavy, waited in the
 * heavy queue behind 100 floods, fell further behind, and did so again:
 * 180 ms of answers 1-16 ms late. Being heavy costs nothing while the
 * loop is not contended (a heavy connection is served at once when
 * nobody waits).
 *
 * Pure: time comes in as an argument (ns, any monotonic clock). No
 * allocation, no errors. Thread rules: the owner's (one loop).
 */
#ifndef PC_LIGHT_H
#define PC_LIGHT_H

#include <stdint.h>

#define PC_LIGHT_RATE_DIV 32
#define PC_LIGHT_BANK_NS ((int64_t)2000 * 1000)
#define PC_LIGHT_DEBT_NS ((int64_t)100 * 1000)
#define PC_LIGHT_TURN_MAX_NS ((uint64_t)50 * 1000)

typedef struct pc_light {
    int64_t balance; /* ns of loop time it may still take */
    uint64_t at;     /* when it was last brought up to date */
    int waiting;     /* since `at` it has waited for a turn, or not been read: earns nothing */
} pc_light_t;

/* A new connection, at `now`: nothing earned yet. */
void pc_light_init(pc_light_t *l, uint64_t now);

/*
 * A turn of `work` ns ended at `now`: earn what the time since the last
 * call is worth, then spend the turn. Returns 1 if the balance is still
 * 0 or more (its next turn may be light), else 0. A `now` before the last
 * one (clocks of two threads) earns nothing.
 */
int pc_light_spend(pc_light_t *l, uint64_t now, uint64_t work);

/* From `now` on its input waits for a turn (it is queued), or is not
 * read: it earns what it had until now, and nothing more until its turn
 * (pc_light_spend) or pc_light_idle. */
void pc_light_wait(pc_light_t *l, uint64_t now);

/* From `now` on it is read again and asks nothing: it earns again (a
 * no-op unless it was waiting). */
void pc_light_idle(pc_light_t *l, uint64_t now);

#endif
