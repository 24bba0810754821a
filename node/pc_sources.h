/*
 * pc_sources.h -- what each source address is doing to a node: its client
 * connections open, and its failed HELLOs in the current second. Backs the
 * per-address limits (docs/SECURITY.md): --max-conns-per-source, and the
 * auth back-off that answers a guessing address slowly however many
 * connections it spreads its guesses over.
 *
 * A source is an IPv4 address, or an IPv6 /64 (the unit an ISP hands one
 * customer; anyone holding a /64 can use all of it); an IPv4-mapped IPv6
 * address counts as the IPv4 one. Other address families share one source.
 *
 * The table is sized at creation for a number of sources and never grows:
 * a source is present while it has a connection open or failures in the
 * current or the last second, and every failure is counted on a
 * connection that is open, so `capacity` = the most connections a node
 * accepts is enough.
 * Lookups hash with a random key (no flooding by chosen addresses).
 *
 * Time is an input (milliseconds, any monotonic origin). Thread-safe: one
 * mutex, taken for each call (connections come and go, and HELLOs fail,
 * far less often than requests arrive).
 */
#ifndef PC_SOURCES_H
#define PC_SOURCES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct pc_sources pc_sources_t;

/* A source, as the table keys it (see above). */
typedef struct pc_source {
    uint8_t b[16];
} pc_source_t;

/* The source of a peer address (a sockaddr_in or sockaddr_in6; any other
 * family gives the all-zero source). */
void pc_source_of(const struct sockaddr *sa, pc_source_t *out);

/* A table for up to `capacity` sources at once. 0, PC_EINVAL (0) or
 * PC_ENOMEM. */
int pc_sources_new(size_t capacity, pc_sources_t **out);
void pc_sources_free(pc_sources_t **t);

/*
 * A connection from src opens at now_ms. With max > 0 and src already
 * holding max connections, PC_EBUSY and nothing is counted; PC_ENOMEM if
 * the table holds `capacity` sources already, none of them idle (cannot
 * happen while capacity >= the connections a node accepts, and more than
 * that close in no two seconds). 0 = counted: call pc_sources_close once
 * when it closes. A source with no connection left stays until its
 * failures are two seconds old, so that closing and reopening does not
 * reset them.
 */
int pc_sources_open(pc_sources_t *t, const pc_source_t *src, uint32_t max, uint64_t now_ms);
void pc_sources_close(pc_sources_t *t, const pc_source_t *src, uint64_t now_ms);

/* Connections src holds now. */
uint32_t pc_sources_conns(pc_sources_t *t, const pc_source_t *src);

/* A failed HELLO from src (which holds a connection) at now_ms: returns
 * how many src has had in the current second, this one included. Only a
 * later second starts a new count; a now_ms from an earlier one (a loop
 * whose clock is behind) counts into the current second. */
uint32_t pc_sources_auth_fail(pc_sources_t *t, const pc_source_t *src, uint64_t now_ms);

/* Failed HELLOs from src in the current second and the one before it, as
 * of now_ms (0 for a source the table does not hold). Changes nothing. */
uint32_t pc_sources_auth_recent(pc_sources_t *t, const pc_source_t *src, uint64_t now_ms);

/* Sources in the table (for tests and STATS). */
size_t pc_sources_count(pc_sources_t *t);

#endif
