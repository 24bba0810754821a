/*
 * pc_client_ring.c -- libpeercache: learning the cluster's ring and
 * keeping it fresh (CLUSTER, fingerprints, the endpoints of its members),
 * and calls through the seeds, which work with or without a ring. The
 * rules are pc_client.h's ("Ring-aware routing"); the layouts it shares
 * are in pc_client_int.h.
 */
#include "pc_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pc_addr.h"
#include "pc_client_int.h"
#include "pc_health.h"
#include "pc_proto.h"
#include "pc_ring.h"

/*
 * A refresh that already has a ring to fall back on gives up after this
 * many unreachable nodes: the old ring still works (nodes relay keys they
 * do not own), and each dead node can cost a whole timeout.
 */
#define REFRESH_MAX_FAILURES 3

/*
 * After a node fails, the ring is refreshed at most this often. Until the
 * cluster declares the node dead, every refresh would bring back the same
 * ring, and a busy client would ask for it on every request that meets
 * the dead node. The moment the cluster does change its ring, replies
 * show the new fingerprint, which triggers a refresh regardless.
 */
#define REFRESH_HOLD_MS 100

/* ---- the ring: learning and refreshing it ------------------------------------- */

/*
 * A reply showed the answering node's ring. If it is not ours (and not
 * one we already found unusable), refresh from that node. A client that
 * has not tried to learn a ring yet (only PING or STATS so far) leaves
 * that to its first routed call.
 */
void pc_cl_note_fp(pc_client_t *c, ep_t *e, uint64_t fp)
{
    if (!c->ring_aware || fp == 0 || fp == c->ring_fp || fp == c->unusable_fp ||
        (c->ring == NULL && !c->ring_none))
        return;
    c->counters.ring_fp_mismatches++;
    c->seen_fp = fp;
    c->ring_stale = true;
    c->stale_from = e;
}

bool pc_cl_in_ring(uint32_t state)
{
    return state == PC_WIRE_ALIVE || state == PC_WIRE_SUSPECT;
}

/* The member's name as the ring needs it (NUL-terminated, 1..255 bytes,
 * no NUL inside), in buf. */
bool pc_cl_member_name(const pc_cluster_member_t *m, char buf[PC_RING_MAX_NAME + 1])
{
    if (m->name.len == 0 || m->name.len > PC_RING_MAX_NAME ||
        memchr(m->name.ptr, '\0', m->name.len) != NULL)
        return false;
    memcpy(buf, m->name.ptr, m->name.len);
    buf[m->name.len] = '\0';
    return true;
}

/*
 * Builds the ring a CLUSTER answer describes: its alive and suspect
 * members with their weights, and its replica count. 0 with *out (which
 * may be an empty ring), PC_EPROTO (member data the ring refuses, with a
 * message) or PC_ENOMEM.
 */
int pc_cl_ring_build(pc_client_t *c, const pc_response_t *resp, pc_ring_t **out)
{
    typedef char name_t[PC_RING_MAX_NAME + 1];
    pc_ring_member_t *rm = malloc(((size_t)resp->nmembers + 1) * sizeof(*rm));
    name_t *names = malloc(((size_t)resp->nmembers + 1) * sizeof(*names));
    size_t n = 0;
    int rc = 0;

    *out = NULL;
    if (rm == NULL || names == NULL) {
        rc = PC_ENOMEM;
        pc_cl_set_msg(c, "out of memory");
    }
    for (uint32_t i = 0; rc == 0 && i < resp->nmembers; i++) {
        const pc_cluster_member_t *m = &resp->members[i];

        if (!pc_cl_in_ring(m->state))
            continue;
        if (!pc_cl_member_name(m, names[n])) {
            pc_cl_set_msg(c, "member %u has a name the ring cannot hold", i);
            rc = PC_EPROTO;
            break;
        }
        rm[n].name = names[n];
        rm[n].weight = m->weight;
        n++;
    }
    if (rc == 0) {
        unsigned replicas = resp->replicas > PC_RING_MAX_REPLICAS ? 0 : resp->replicas;

        rc = pc_ring_new(rm, n, replicas, out);
        if (rc == PC_EINVAL) {
            pc_cl_set_msg(c, "the cluster's members do not form a ring (%zu members, %u replicas: "
                             "a duplicate name, a weight out of range or a bad replica count)",
                          n, resp->replicas);
            rc = PC_EPROTO;
        } else if (rc != 0) {
            pc_cl_set_msg(c, "building the ring: %s", pc_strerror(rc));
        }
    }
    free(rm);
    free(names);
    return rc;
}

void pc_cl_ring_drop(pc_client_t *c)
{
    pc_ring_free(&c->ring);
    free(c->member_ep);
    c->member_ep = NULL;
    c->ring_fp = 0;
    c->prune_pending = true;
}

/* Routing by nothing until a reply shows a fingerprint other than fp. */
static void ring_give_up(pc_client_t *c, uint64_t fp)
{
    pc_cl_ring_drop(c);
    c->ring_none = true;
    c->unusable_fp = fp;
    c->ring_stale = false;
    c->ring_doubt = false;
}

/* 0.0.0.0 or ::, a listen address a node may advertise by mistake:
 * connecting to it reaches the client's own machine, not the node. */
static bool wildcard_host(const char *host)
{
    static const unsigned char zero[sizeof(struct in6_addr)];
    unsigned char a[sizeof(struct in6_addr)];

    if (inet_pton(AF_INET, host, a) == 1)
        return memcmp(a, zero, sizeof(struct in_addr)) == 0;
    if (inet_pton(AF_INET6, host, a) == 1)
        return memcmp(a, zero, sizeof(struct in6_addr)) == 0;
    return false;
}

/*
 * Maps each member of ring r to the endpoint of its advertised address.
 * 0 with *out (one per ring member), PC_EPROTO if an address cannot be
 * used by a client (message set), or PC_ENOMEM.
 */
static int ring_endpoints(pc_client_t *c, const pc_response_t *resp, const pc_ring_t *r,
                          ep_t ***out)
{
    size_t n = pc_ring_size(r);
    ep_t **map = calloc(n ? n : 1, sizeof(*map));
    char name[PC_RING_MAX_NAME + 1];

    *out = NULL;
    if (map == NULL)
        return PC_ENOMEM;
    for (uint32_t i = 0; i < resp->nmembers; i++) {
        const pc_cluster_member_t *m = &resp->members[i];
        char addr[PC_RING_MAX_NAME + 16], host[PC_RING_MAX_NAME + 1];
        int port;
        long idx;

        if (!pc_cl_in_ring(m->state) || !pc_cl_member_name(m, name))
            continue;
        idx = pc_ring_find(r, name);
        if (idx < 0)
            continue;
        if (m->addr.len >= sizeof(addr) || memchr(m->addr.ptr, '\0', m->addr.len) != NULL) {
            pc_cl_set_msg(c, "member '%s' has no usable address", name);
            free(map);
            return PC_EPROTO;
        }
        memcpy(addr, m->addr.ptr, m->addr.len);
        addr[m->addr.len] = '\0';
        if (pc_addr_parse(addr, host, sizeof(host), &port) != 0 || wildcard_host(host)) {
            pc_cl_set_msg(c, "member '%s' advertises '%s', which clients cannot connect to", name,
                          addr);
            free(map);
            return PC_EPROTO;
        }
        map[idx] = pc_cl_ep_get(c, host, port);
        if (map[idx] == NULL) {
            free(map);
            return PC_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (map[i] == NULL) { /* cannot happen: every ring member came from resp */
            free(map);
            pc_cl_set_msg(c, "ring member '%s' is missing from the answer", pc_ring_name(r, i));
            return PC_EPROTO;
        }
    }
    *out = map;
    return 0;
}

/*
 * Makes r (consumed) the client's ring, as described by the CLUSTER
 * answer resp. An answer the client cannot route by makes it seed-only
 * until the nodes' fingerprint changes. 0 (either way) or PC_ENOMEM.
 */
int pc_cl_ring_adopt(pc_client_t *c, const pc_response_t *resp, pc_ring_t *r)
{
    ep_t **map = NULL;
    int rc = 0;

    if (pc_ring_size(r) == 0 ||
        (resp->fingerprint != 0 && pc_ring_fingerprint(r) != resp->fingerprint)) {
        /* Our ring would place keys differently from the node's (another
         * placement scheme?): routing by it would only add hops. */
        rc = PC_EPROTO;
    } else {
        rc = ring_endpoints(c, resp, r, &map);
    }
    if (rc == PC_ENOMEM) {
        pc_ring_free(&r);
        return rc;
    }
    if (rc != 0) {
        pc_ring_free(&r);
        ring_give_up(c, resp->fingerprint);
        return 0;
    }
    pc_cl_ring_drop(c);
    c->ring = r;
    c->member_ep = map;
    c->ring_fp = pc_ring_fingerprint(r);
    c->ring_none = false;
    c->unusable_fp = 0;
    c->ring_stale = false;
    c->ring_doubt = false;
    return 0;
}

/*
 * A CLUSTER answer with the fingerprint of the ring we have: the placement
 * is the same, so only the members' addresses are taken (a member may
 * come back at another address under the same name). 0 or PC_ENOMEM.
 */
static int ring_remap(pc_client_t *c, const pc_response_t *resp)
{
    ep_t **map = NULL;
    int rc = ring_endpoints(c, resp, c->ring, &map);

    if (rc == PC_ENOMEM)
        return rc;
    if (rc != 0) {
        ring_give_up(c, resp->fingerprint);
        return 0;
    }
    free(c->member_ep);
    c->member_ep = map;
    c->prune_pending = true;
    c->ring_stale = false;
    c->ring_doubt = false;
    return 0;
}

/*
 * The next node to ask for CLUSTER: the node whose reply showed another
 * ring, then members we hold a connection to (cheap, and just shown to
 * work), then the other members, then the seeds. None that failed in
 * this call, none twice in one refresh.
 */
static ep_t *refresh_source(pc_client_t *c, ep_t *prefer)
{
#define USABLE(e)                                                                        \
    ((e)->refresh_seq != c->refresh_seq && !pc_cl_failed(c, (e)) &&                       \
     pc_health_state(&(e)->health, now) != PC_HEALTH_OPEN)
    int64_t now = pc_cl_now_ms();
    size_t n = c->ring != NULL ? pc_ring_size(c->ring) : 0;

    if (prefer != NULL && USABLE(prefer))
        return prefer;
    for (size_t i = 0; i < n; i++) {
        if (c->member_ep[i]->fd >= 0 && USABLE(c->member_ep[i]))
            return c->member_ep[i];
    }
    for (size_t i = 0; i < n; i++) {
        if (USABLE(c->member_ep[i]))
            return c->member_ep[i];
    }
    for (size_t k = 0; k < c->nseeds; k++) {
        ep_t *e = c->eps[(c->cur + k) % c->nseeds];

        if (USABLE(e))
            return e;
    }
    return NULL;
#undef USABLE
}

/*
 * Fetches CLUSTER and adopts the answer. 0 when a node answered (with a
 * ring, or with an error that makes the client seed-only); else the error
 * of the last node tried, with every node's reason in the message.
 */
static int ring_refresh(pc_client_t *c)
{
    ep_t *prefer = c->stale_from;
    char all[ERRMSG_MAX] = "";
    int failures = 0, rc = PC_ECONN;
    ep_t *e;

    c->stale_from = NULL;
    c->refresh_seq++;
    c->last_refresh_ms = pc_cl_now_ms();
    while ((e = refresh_source(c, prefer)) != NULL) {
        pc_request_t req;
        pc_response_t resp;
        pc_ring_t *r = NULL;
        bool sent;

        e->refresh_seq = c->refresh_seq;
        memset(&req, 0, sizeof(req));
        req.op = PC_OP_CLUSTER;
        rc = pc_cl_ep_call(c, e, &req, &resp, &sent);
        if (rc == 0 && resp.status == PC_ST_OK) {
            c->counters.ring_refreshes++;
            if (c->ring != NULL && resp.fingerprint == c->ring_fp)
                return ring_remap(c, &resp);
            rc = pc_cl_ring_build(c, &resp, &r);
            if (rc == PC_EPROTO) {
                ring_give_up(c, resp.fingerprint);
                return 0;
            }
            return rc != 0 ? rc : pc_cl_ring_adopt(c, &resp, r);
        }
        if (rc == 0 && resp.status != PC_ST_BUSY) {
            /* An answer, but no ring: a node outside any cluster, or one
             * that predates CLUSTER (BAD_REQUEST). Seed-only it is. */
            ring_give_up(c, resp.ring_fp);
            return 0;
        }
        if (rc == 0)
            rc = pc_cl_status_error(c, resp.status, resp.message);
        if (rc == PC_ETOOBIG) {
            /* A member list over our frame limit (thousands of members,
             * or a small max_frame): no ring for us, but requests still
             * work through the seeds. */
            ring_give_up(c, c->seen_fp);
            return 0;
        }
        if (!pc_cl_try_next_node(rc))
            return rc;
        pc_cl_node_failed(c, e);
        pc_cl_add_reason(all, sizeof(all), c->errmsg);
        if (c->ring != NULL && ++failures >= REFRESH_MAX_FAILURES)
            break;
    }
    c->counters.ring_refresh_errors++;
    if (all[0] != '\0')
        pc_cl_set_msg(c, "%s", all);
    else
        pc_cl_set_msg(c, "no node left to ask for the cluster's members");
    return rc;
}

/*
 * Before routing: learns the ring if there is none yet, refreshes it if
 * it is stale. A failed refresh keeps what we had (a stale ring still
 * works, since nodes relay) and the message of the call so far; only a
 * client that never learned anything fails, with the refresh's error.
 */
int pc_cl_ring_ensure(pc_client_t *c)
{
    char saved[ERRMSG_MAX];
    int rc;

    if (!c->ring_stale && (c->ring != NULL || c->ring_none) &&
        !(c->ring_doubt && pc_cl_now_ms() - c->last_refresh_ms >= REFRESH_HOLD_MS))
        return 0;
    memcpy(saved, c->errmsg, sizeof(saved));
    rc = ring_refresh(c);
    if (rc == 0 || rc == PC_ENOMEM)
        return rc;
    if (c->ring != NULL || c->ring_none) {
        memcpy(c->errmsg, saved, sizeof(saved));
        return 0;
    }
    return rc;
}

/*
 * The end of every call in ring-aware mode: a reply during the call
 * showed another ring, so refresh now, while the answering node is known
 * to be up. The call's own result and message stand whatever happens.
 */
void pc_cl_end_call(pc_client_t *c)
{
    char saved[ERRMSG_MAX];

    if (!c->ring_aware || !c->ring_stale || c->stale_from == NULL)
        return;
    memcpy(saved, c->errmsg, sizeof(saved));
    (void)ring_refresh(c);
    memcpy(c->errmsg, saved, sizeof(saved));
}

/* ---- calls through the seeds ---------------------------------------------------- */

/*
 * Opens a connection to a seed, trying them in order from the last one
 * that worked (keeping an open one). Each gets the full timeout for
 * connect + HELLO. When all fail, the message lists each one's reason and
 * the code is the last one's.
 */
static int seed_open(pc_client_t *c)
{
    char all[ERRMSG_MAX] = "";
    int rc = PC_ECONN;

    for (size_t k = 0; k < c->nseeds; k++) {
        size_t idx = (c->cur + k) % c->nseeds;
        ep_t *e = c->eps[idx];

        pc_cl_ep_check(c, e);
        rc = e->fd >= 0 ? 0 : pc_cl_ep_open(c, e);
        if (rc == 0) {
            c->cur = idx;
            return 0;
        }
        if (pc_cl_try_next_node(rc))
            e->failed_call = c->call_seq;
        pc_cl_add_reason(all, sizeof(all), c->errmsg);
        if (!pc_cl_try_next_node(rc))
            break;
    }
    if (c->nseeds > 1)
        pc_cl_set_msg(c, "%s", all);
    return rc;
}

/*
 * One call through the seeds (seed-only mode, PING, STATS, CLUSTER):
 * makes sure a connection is open, exchanges req for *resp and maps a
 * non-OK reply status to its error. *via (may be NULL) receives the node
 * that answered. See the top of pc_client.c for when it sends a second
 * time.
 */
int pc_cl_seed_call(pc_client_t *c, pc_request_t *req, pc_response_t *resp, ep_t **via)
{
    for (int attempt = 0;; attempt++) {
        bool reused = false, sent = false;
        ep_t *e = c->eps[c->cur];
        int rc;

        pc_cl_ep_check(c, e);
        if (e->fd >= 0)
            reused = true;
        else if ((rc = seed_open(c)) != 0)
            return rc;
        e = c->eps[c->cur];
        rc = pc_cl_exchange(c, e, req, resp, pc_cl_now_ms() + c->timeout_ms, &sent);
        if (rc == PC_ECONN && reused && attempt == 0 && pc_cl_is_read_op(req->op))
            continue;
        if (rc != 0)
            return rc;
        pc_cl_note_fp(c, e, resp->ring_fp);
        if (via != NULL)
            *via = e;
        if (resp->status != PC_ST_OK)
            return pc_cl_status_error(c, resp->status, resp->message);
        /* Nodes skipped on the way left their reasons here. */
        c->errmsg[0] = '\0';
        return 0;
    }
}
