/*
 * pc_slotmap.h -- the slot map of a Redis Cluster behind the node: which
 * primary owns each of the 16384 slots, as one server of the cluster
 * reported it (CLUSTER SLOTS), and the redirections (MOVED, ASK) that
 * tell a client it asked the wrong one.
 *
 * Pure: no I/O, no clock, no globals. It reads hiredis' redisReply trees
 * as plain data and uses nothing else of hiredis; pc_backend sends the
 * commands and hands the replies here. Slots of keys come from pc_rkey.
 *
 * Hosts are kept as Redis wrote them: a name, an IPv4 address, or an
 * IPv6 address without brackets ("::1"), 1 to 255 bytes, none of them a
 * NUL, a space or another control character. Two spellings of one
 * server ("localhost" and "127.0.0.1") are two shards: nothing here
 * resolves names.
 *
 * Endpoints Redis does not know. Since Redis 7 a node's address in a
 * reply may be:
 *   - NULL (CLUSTER SLOTS) or "" (CLUSTER SLOTS of Redis before 7, whose
 *     node had not learnt its own IP yet; and MOVED/ASK ":6381"): the
 *     server that was asked, at the port given. Behind a load balancer,
 *     cluster-preferred-endpoint-type unknown-endpoint.
 *   - "?": cluster-preferred-endpoint-type hostname, and that node has
 *     announced none. There is no address to go to -- it is not the
 *     server that was asked -- so its slots are left without an owner
 *     (pc_slotmap_from_slots), and a redirection to it is returned as
 *     host "?" for the caller to refuse (pc_slotmap_redirect).
 *
 * Ownership. A pc_slotmap_t is a value the caller allocates (about 33
 * KB: it is meant to live in a longer-lived struct or on the heap, not in
 * a small stack frame) holding one heap array, shards, which the map
 * owns. It may be moved by assignment or memcpy, after which only the
 * new copy is freed; two live copies would share shards, so a map is
 * never duplicated that way.
 *
 * Thread rules: nothing shared between maps, no locks. Functions that
 * take a const map may run on the same map from several threads at
 * once, as long as none changes it.
 */
#ifndef PC_SLOTMAP_H
#define PC_SLOTMAP_H

#include <stddef.h>
#include <stdint.h>

#include "pc_error.h"

/* hiredis' reply (hiredis.h, read.h); only its public fields are read. */
struct redisReply;

#define PC_SLOTMAP_SLOTS 16384u /* = PC_RKEY_SLOTS */
#define PC_SLOTMAP_NONE 0xFFFFu /* owner of a slot nobody owns */
#define PC_SLOTMAP_HOST_MAX 255u /* bytes of a host, without its NUL */

/* The host Redis writes for a node whose hostname it does not know. */
#define PC_SLOTMAP_HOST_UNKNOWN "?"

/* A primary: where the slots it owns are written and read. */
typedef struct pc_slotmap_shard {
    char host[PC_SLOTMAP_HOST_MAX + 1]; /* NUL-terminated, never "" */
    int port;                           /* 1..65535 */
} pc_slotmap_shard_t;

typedef struct pc_slotmap {
    size_t nshards;             /* 0..PC_SLOTMAP_SLOTS */
    pc_slotmap_shard_t *shards; /* owned; the primaries in the order the
                                   reply first names them; NULL if none;
                                   no host:port twice */
    uint16_t owner[PC_SLOTMAP_SLOTS]; /* index into shards, or
                                         PC_SLOTMAP_NONE */
} pc_slotmap_t;

/* Makes *m an empty map: no shards, no slot owned. Needs no freeing. */
void pc_slotmap_init(pc_slotmap_t *m);

/*
 * Builds *out from r, a reply to CLUSTER SLOTS. r is only read, and may
 * be freed as soon as this returns.
 *
 * The reply is an array of slot ranges, each an array
 *     [start, end, primary, replica...]
 * where start and end are integers 0..16383 with start <= end, and every
 * node (primary or replica) is an array [host, port, id, more...]: host
 * a string or NULL, port an integer 1..65535, then, if present, id a
 * string and anything after it (Redis 7's metadata, ignored). Replicas
 * are checked, then ignored. One primary may own several ranges; two
 * ranges may not share a slot. An empty array is a map with no slot
 * owned (a cluster with no slots assigned yet); the caller judges
 * whether a map is complete enough with pc_slotmap_covered.
 *
 * A NULL or empty host is asked_host (the server the command was sent
 * to); a host of "?" leaves the range without an owner (see above).
 *
 * *out is treated as uninitialised (a map it held is not freed: free it
 * first, or build into another map and move) and is written only on
 * success; on success the caller frees it with pc_slotmap_free.
 *
 * Returns 0; PC_EINVAL if r, asked_host or out is NULL, or asked_host
 * is not a host of the form above; PC_EPROTO for a reply not of that
 * shape: not an array (an error reply included), a range or node of the
 * wrong type or too few elements, a slot outside 0..16383, start > end,
 * ranges that overlap, a port outside 1..65535, a host that is longer
 * than PC_SLOTMAP_HOST_MAX or holds a NUL, space or control character;
 * PC_ENOMEM.
 */
int pc_slotmap_from_slots(const struct redisReply *r, const char *asked_host,
                          pc_slotmap_t *out);

/* Frees m's shards and leaves m an empty map (pc_slotmap_init). NULL is
 * ignored; freeing an empty map again is harmless. */
void pc_slotmap_free(pc_slotmap_t *m);

/* Slots with an owner: PC_SLOTMAP_SLOTS when the whole space is covered
 * (0 for NULL). */
size_t pc_slotmap_covered(const pc_slotmap_t *m);

/* 1 if a and b give every slot the same owner, compared by host:port
 * (so the order of the shards does not matter), or both none; else 0.
 * Two NULLs are the same; NULL and a map are not. */
int pc_slotmap_same(const pc_slotmap_t *a, const pc_slotmap_t *b);

/* The index of host:port among m's shards, or -1 (also for NULLs). The
 * host is compared byte for byte. */
int pc_slotmap_find(const pc_slotmap_t *m, const char *host, int port);

/* The owner of slot (an index into m->shards), or PC_SLOTMAP_NONE if
 * nobody owns it, slot >= PC_SLOTMAP_SLOTS or m is NULL. */
unsigned pc_slotmap_owner(const pc_slotmap_t *m, unsigned slot);

/* The owner of key (len bytes, with pc_rkey's hash-tag rule), as
 * pc_slotmap_owner. */
unsigned pc_slotmap_key_owner(const pc_slotmap_t *m, const void *key, size_t len);

/*
 * Parses a redirection, the text of an error reply without its '-'
 * (hiredis' reply->str and len; no NUL needed):
 *
 *     MOVED <slot> <endpoint>        ASK <slot> <endpoint>
 *
 * with one space between the parts and nothing after them. slot is 1 to
 * 5 decimal digits, below 16384. endpoint is host:port split at its last
 * ':': "127.0.0.1:6381", "redis-3:6381", "[::1]:6381", "::1:6381" (a
 * bare IPv6 address, as Redis writes it); port is 1 to 5 decimal digits,
 * 1..65535. An empty host (":6381") means the server that answered, and
 * host is set to ""; "?" is returned as it is (PC_SLOTMAP_HOST_UNKNOWN:
 * a node without an address).
 *
 * On success sets *ask (1 for ASK, 0 for MOVED), *slot, host (hostlen
 * bytes, NUL-terminated) and *port, and returns 0. Otherwise writes
 * nothing and returns PC_EINVAL for NULL arguments or hostlen 0, or
 * PC_EPROTO when err is not a redirection or is malformed: another
 * error, a prefix in another case, a missing or extra part, a non-digit
 * or too large slot or port, an unbalanced '[' or ']', a host with a
 * space or control character, or one longer than hostlen - 1 or
 * PC_SLOTMAP_HOST_MAX bytes.
 */
int pc_slotmap_redirect(const char *err, size_t len, int *ask, unsigned *slot, char *host,
                        size_t hostlen, int *port);

#endif
