/*
 * pc_sched.h -- fair sharing of one event loop between its connections.
 *
 * Start-time fair queuing. Each entry (one per connection) carries a
 * virtual time: where its next turn starts. Serving it advances its
 * virtual time by the work the turn cost (pc_sched_charge), so a client
 * that makes the loop work a lot moves back, and one that asks little
 * stays in front. The scheduler's clock is the start time of the turn
 * being served; an entry that becomes ready after being idle starts at
 * the clock, never before it (idleness earns no credit), so a client that
 * only now sends a request is next after those that started before it, and
 * waits for at most one turn of each of them -- not for everything they
 * have queued. Work is a caller's unit (the node counts bytes in and out
 * plus a fixed cost per request).
 *
 * The ready set is a binary min-heap of entries, ordered by virtual time
 * and, among equals, by the order they were pushed; push, pop and remove
 * are O(log n). Entries are embedded in their owner (intrusive) and stay
 * owned by it: the scheduler only points to them, and an entry must be
 * removed before its memory goes.
 *
 * Pure: no I/O, no clock, no allocation but the heap's array. Thread
 * rules: one thread (the loop's) per scheduler.
 */
#ifndef PC_SCHED_H
#define PC_SCHED_H

#include <stddef.h>
#include <stdint.h>

typedef struct pc_sched_entry {
    uint64_t vtime; /* start of its next turn (see above) */
    uint64_t seq;   /* push order, to break ties */
    size_t pos;     /* 1 + its index in the heap; 0 = not queued */
} pc_sched_entry_t;

typedef struct pc_sched {
    pc_sched_entry_t **heap;
    size_t n, cap;
    uint64_t vclock; /* start time of the turn served last */
    uint64_t seq;
} pc_sched_t;

/* An empty scheduler (zeroed memory is one too). */
void pc_sched_init(pc_sched_t *s);
/* Frees the heap array. Entries still queued are simply forgotten. */
void pc_sched_free(pc_sched_t *s);

/* A new entry: not queued, its virtual time 0 (it starts at the clock). */
void pc_sched_entry_init(pc_sched_entry_t *e);

static inline int pc_sched_queued(const pc_sched_entry_t *e) { return e->pos != 0; }
static inline size_t pc_sched_count(const pc_sched_t *s) { return s->n; }

/* Makes room for n entries, so that pushes up to that many cannot fail.
 * 0 or PC_ENOMEM. */
int pc_sched_reserve(pc_sched_t *s, size_t n);

/*
 * Queues e (ready for a turn) at max(its virtual time, the clock). A no-op
 * if it is queued already. 0, or PC_ENOMEM (growing the heap failed: e is
 * not queued).
 */
int pc_sched_push(pc_sched_t *s, pc_sched_entry_t *e);

/* Takes the entry whose turn starts first and moves the clock to its
 * start; NULL when none is queued. */
pc_sched_entry_t *pc_sched_pop(pc_sched_t *s);

/* Takes e out of the queue if it is in it. */
void pc_sched_remove(pc_sched_t *s, pc_sched_entry_t *e);

/*
 * e (not queued) was served `work` units: its next turn starts that much
 * later. Serving an entry that was not popped -- one served at once
 * because nobody waited -- starts at the clock too: the clock moves to
 * its start, so the entries that become ready next line up behind it.
 */
void pc_sched_charge(pc_sched_t *s, pc_sched_entry_t *e, uint64_t work);

#endif
