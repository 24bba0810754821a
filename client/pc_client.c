/*
 * pc_client.c -- libpeercache: blocking connections, one request at a
 * time, each sent to the node that owns its key.
 *
 * Sockets are non-blocking from the moment they are made, and every wait
 * goes through poll() with the call's deadline. That is what gives each
 * call a real upper bound: a blocking connect() or recv() could hang for
 * minutes on a node that vanished without a RST.
 *
 * Request/response pairing is the next thing the code is careful about.
 * A call waits for one request at a time -- two during a hedged read,
 * on two connections -- and every request has a fresh id. A request we
 * stopped waiting for without closing its connection (the loser of a
 * hedged read, or a probe) is that connection's orphan: its reply, when
 * it comes, is read and dropped by id before anything else is taken from
 * the connection. Any other failure after a byte was sent (timeout,
 * broken connection, a reply that does not match) closes the connection,
 * so a reply that arrives late lands on a closed socket. Either way a
 * late reply can never be taken as the answer to a later request.
 *
 * Endpoints. Every node the client may talk to is an endpoint with its own
 * connection: first the seeds from the node list, in order, then the ring
 * members that are not seeds (found by address, so a member that is also
 * a seed shares its connection). Endpoints are freed only at the start of
 * a public call, never in the middle of one, so pointers held while a call
 * routes (the node that failed, the node to refresh from) stay valid.
 *
 * Retry policy, kept deliberately small:
 *  - Before a request goes out on a connection that was already open, a
 *    zero-timeout poll() checks that the server has not closed it (idle
 *    timeout, restart) and that nothing unexpected is waiting. If it has,
 *    the connection is replaced before anything is sent; that is not a
 *    retry, since nothing was sent.
 *  - A read that then still fails with a broken connection on such a
 *    reused connection is sent once more on a fresh one to the same node:
 *    the server may have closed the idle connection just as we wrote.
 *    Reads are idempotent, so this is safe.
 *  - Routed reads that fail on a node go to the key's next placement.
 *  - A GET its owner has not answered within a hedge delay also goes to
 *    the next placement (hedged_get); the first answer wins. Nodes that
 *    stop answering are left alone for a back-off (pc_health.h): reads go
 *    past them, writes for them fail unsent.
 *  - A write is sent again only when we know no byte of it left (the
 *    connect failed), or when the node said RETRY, which guarantees that
 *    nothing was applied. Once it may have left, only the caller can
 *    decide what to do.
 *  - RETRY rounds are bounded (RETRY_ROUNDS), with a short sleep before
 *    each, so a cluster that keeps changing cannot hold a call forever.
 *  - In seed-only mode timeouts are never retried: the call's time is
 *    used up.
 *
 * Files. The rules above hold for the whole library, which is split by
 * subject; its files share the layouts and functions in the private
 * pc_client_int.h:
 *  - pc_client.c (this file): routed calls (placements, hedged reads, the
 *    breakers), argument checks, the node list, the public API and the
 *    cluster;
 *  - pc_client_conn.c: small helpers, endpoints, connecting, one exchange
 *    on an open connection, orphans;
 *  - pc_client_ring.c: learning and refreshing the ring, calls through
 *    the seeds;
 *  - pc_client_mget.c: MGET.
 */
#include "pc_client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_addr.h"
#include "pc_client_int.h"
#include "pc_health.h"
#include "pc_proto.h"
#include "pc_ring.h"

#define DEFAULT_TIMEOUT_MS 2000

_Static_assert(PC_CLIENT_COND_NONE == PC_COND_NONE && PC_CLIENT_COND_NX == PC_COND_NX &&
                   PC_CLIENT_COND_XX == PC_COND_XX,
               "pc_client.h condition values must match the wire values");
_Static_assert(PC_CLIENT_MEMBER_ALIVE == PC_WIRE_ALIVE &&
                   PC_CLIENT_MEMBER_SUSPECT == PC_WIRE_SUSPECT &&
                   PC_CLIENT_MEMBER_DEAD == PC_WIRE_DEAD && PC_CLIENT_MEMBER_LEFT == PC_WIRE_LEFT,
               "pc_client.h member states must match the wire values");
_Static_assert(PC_CLIENT_RING_SLOTS == PC_RING_SLOTS, "pc_client.h must match pc_ring.h");

/* ---- routed calls ------------------------------------------------------------- */

/* The placements of a key on the client's ring, owner first. */
size_t pc_cl_placements(const pc_client_t *c, pc_bytes_t key, uint32_t *out)
{
    return pc_ring_slot_members(c->ring, pc_ring_slot(key.ptr, key.len), out,
                                PC_RING_MAX_REPLICAS);
}

/*
 * A probe of a node whose breaker is open (pc_health.h): a PING that is
 * not waited for (its answer, read before e's next request, closes the
 * breaker), or, without a connection, a connect + HELLO within the stall
 * limit, whose success closes it at once. Nothing of the call's is sent.
 */
static void probe(pc_client_t *c, ep_t *e, int64_t now, int64_t stall)
{
    char saved[ERRMSG_MAX];
    pc_request_t req;
    pc_response_t resp;
    bool sent = false;
    int rc;

    c->counters.probes++;
    pc_health_probed(&e->health, now);
    if (e->fd >= 0 && e->orphan_id != 0) {
        /* The last one is still unanswered: the node still is not. */
        (void)pc_health_fail(&e->health, now);
        return;
    }
    memcpy(saved, c->errmsg, sizeof(saved));
    if (e->fd >= 0) {
        memset(&req, 0, sizeof(req));
        req.op = PC_OP_PING;
        rc = pc_cl_encode_request(c, e, &req, now + stall);
        if (rc == 0)
            rc = pc_cl_send_request(c, e, &req, &resp, now + stall, &sent);
        if (rc == 0) {
            e->orphan_id = req.id;
            e->orphan_at_ms = now;
        } else {
            pc_cl_conn_close(e);
            (void)pc_health_fail(&e->health, pc_cl_now_ms());
        }
    } else {
        rc = pc_cl_connect_node(c, e, now + stall);
        if (rc == 0)
            rc = pc_cl_hello(c, e, now + stall);
        if (rc != 0) {
            pc_cl_conn_close(e);
            (void)pc_health_fail(&e->health, pc_cl_now_ms());
        }
    }
    memcpy(c->errmsg, saved, sizeof(saved));
}

/*
 * Whether e is to be left alone now: its breaker is open, or a request it
 * was sent has gone unanswered for the stall limit (which opens the
 * breaker). With `wait` (a write, which would queue behind it), a younger
 * unanswered request is first waited for, up to that limit. When a probe
 * is due, sends it, and says no only if it already closed the breaker.
 */
bool pc_cl_unresponsive(pc_client_t *c, ep_t *e, bool wait)
{
    int64_t stall = pc_health_stall_ms(&e->health, c->timeout_ms);
    int64_t now;

    if (e->fd >= 0 && e->orphan_id != 0)
        (void)pc_cl_orphan_settle(c, e, wait ? e->orphan_at_ms + stall : 0);
    now = pc_cl_now_ms();
    if (e->fd >= 0 && e->orphan_id != 0 && now - e->orphan_at_ms >= stall &&
        pc_health_state(&e->health, now) == PC_HEALTH_CLOSED) {
        (void)pc_health_fail(&e->health, now);
        c->counters.breaker_opens++;
        c->ring_doubt = c->ring_aware;
    }
    switch (pc_health_state(&e->health, now)) {
    case PC_HEALTH_CLOSED:
        return false;
    case PC_HEALTH_OPEN:
        return true;
    default:
        probe(c, e, now, stall);
        return pc_health_state(&e->health, pc_cl_now_ms()) != PC_HEALTH_CLOSED;
    }
}

/* A read is better sent elsewhere: e stopped answering, or has not yet
 * answered one we gave up on. */
bool pc_cl_avoid(pc_client_t *c, ep_t *e)
{
    return pc_cl_unresponsive(c, e, false) || e->orphan_id != 0;
}

/*
 * A GET to e, the key's owner, that also goes to `alt`, a replica (with
 * `here` set, so that it answers itself instead of relaying to the
 * owner), if e has not answered within its hedge delay. The first answer
 * wins; the other request becomes its node's orphan, whose reply is
 * dropped when it comes. 0 with *resp from *who; else the error, with
 * every node that failed marked so.
 */
static int hedged_get(pc_client_t *c, ep_t *e, ep_t *alt, pc_request_t *req,
                      pc_response_t *resp, ep_t **who)
{
    int64_t t0 = pc_cl_now_us(), t0_ms = pc_cl_now_ms(), t2 = 0, deadline = t0_ms + c->timeout_ms;
    pc_request_t r2;
    bool reused = false, sent = false, sent2 = false;
    int rc = pc_cl_ep_ready(c, e, &reused), last = 0;

    *who = e;
    if (rc == 0)
        rc = pc_cl_encode_request(c, e, req, deadline);
    if (rc == 0)
        rc = pc_cl_send_request(c, e, req, resp, deadline, &sent);
    if (rc == 0)
        rc = pc_cl_await_reply(c, e, req, resp,
                               t0_ms + pc_health_hedge_ms(&e->health, c->timeout_ms));
    if (rc == 0) {
        pc_health_ok(&e->health, pc_cl_now_us() - t0);
        return 0;
    }
    if (rc != PC_ETIMEDOUT) {
        if (e->fd >= 0)
            pc_cl_conn_close(e);
        if (rc == PC_ECONN && reused) /* closed while idle: once more, as pc_cl_ep_call does */
            rc = pc_cl_ep_call(c, e, req, resp, &sent);
        if (rc != 0 && pc_cl_try_next_node(rc))
            pc_cl_node_failed(c, e);
        return rc;
    }

    /* No answer yet: ask the replica too. */
    c->counters.hedged_reads++;
    r2 = *req;
    r2.here = 1;
    rc = pc_cl_ep_ready(c, alt, &reused);
    t2 = pc_cl_now_us();
    if (rc == 0)
        rc = pc_cl_encode_request(c, alt, &r2, deadline);
    if (rc == 0)
        rc = pc_cl_send_request(c, alt, &r2, resp, deadline, &sent2);
    if (rc != 0) {
        if (alt->fd >= 0)
            pc_cl_conn_close(alt);
        if (pc_cl_try_next_node(rc))
            pc_cl_node_failed(c, alt);
        alt = NULL;
    }
    for (;;) {
        struct pollfd pfd[2];
        ep_t *on[2];
        nfds_t n = 0;
        int64_t left = deadline - pc_cl_now_ms();

        for (int i = 0; i < 2; i++) {
            ep_t *x = i == 0 ? e : alt;

            if (x != NULL) {
                on[n] = x;
                pfd[n++] = (struct pollfd){.fd = x->fd, .events = POLLIN};
            }
        }
        if (n == 0)
            return last;
        if (left <= 0)
            break;
        if (poll(pfd, n, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno != EINTR) {
            pc_cl_set_msg(c, "poll: %s", strerror(errno));
            return PC_EIO; /* both connections are left as they are */
        }
        for (nfds_t i = 0; i < n; i++) {
            bool first = on[i] == e;
            ep_t *x = on[i], *other = first ? alt : e;

            if (pfd[i].revents == 0)
                continue;
            rc = pc_cl_await_reply(c, x, first ? req : &r2, resp, 0);
            if (rc == PC_ETIMEDOUT)
                continue; /* not a whole frame yet */
            if (rc == 0) {
                if (other != NULL && other->orphan_id != 0) {
                    /* It owes an older answer too, and one orphan is all
                     * a connection keeps track of: start it afresh. */
                    pc_cl_conn_close(other);
                } else if (other != NULL) {
                    other->orphan_id = first ? r2.id : req->id;
                    other->orphan_at_ms = first ? t2 / 1000 : t0_ms;
                }
                if (!first)
                    c->counters.hedge_wins++;
                pc_health_ok(&x->health, pc_cl_now_us() - (first ? t0 : t2));
                *who = x;
                return 0;
            }
            pc_cl_conn_close(x);
            if (pc_cl_try_next_node(rc))
                pc_cl_node_failed(c, x);
            last = rc;
            *who = x;
            if (first)
                e = NULL;
            else
                alt = NULL;
        }
    }
    /* Neither answered in time: as after any timeout, their connections
     * go (a late reply must never be taken for a later request's). */
    pc_cl_set_msg(c, "%s: no reply within %d ms", (e != NULL ? e : alt)->label, c->timeout_ms);
    if (e != NULL && alt != NULL) {
        size_t used = strlen(c->errmsg);

        snprintf(c->errmsg + used, sizeof(c->errmsg) - used, ", nor from %s asked after %lld ms",
                 alt->label, (long long)(t2 / 1000 - t0_ms));
    }
    for (int i = 0; i < 2; i++) {
        ep_t *x = i == 0 ? e : alt;

        if (x != NULL) {
            pc_cl_conn_close(x);
            pc_cl_node_failed(c, x);
        }
    }
    return PC_ETIMEDOUT;
}

/*
 * One single-key request in ring-aware mode (see pc_client.h for the
 * rules). Maps a non-OK status to its error like pc_cl_seed_call().
 */
static int routed_call(pc_client_t *c, pc_request_t *req, pc_response_t *resp)
{
    bool read = pc_cl_is_read_op(req->op), first = true;
    char lastmsg[ERRMSG_MAX] = "";
    int last = 0, rounds = 0;

    for (;;) {
        uint32_t pl[PC_RING_MAX_REPLICAS];
        size_t np, k = 0;
        bool sent = false;
        ep_t *e, *alt = NULL;
        int rc = pc_cl_ring_ensure(c);

        if (rc != 0) {
            if (last == 0)
                return rc;
            memcpy(c->errmsg, lastmsg, sizeof(lastmsg));
            return last;
        }
        if (c->ring == NULL) {
            if (!first)
                c->counters.retries++;
            return pc_cl_seed_call(c, req, resp, NULL);
        }
        np = pc_cl_placements(c, req->key, pl);
        while (k < np && pc_cl_failed(c, c->member_ep[pl[k]]))
            k++;
        /* A write goes to the owner or nowhere: a replica would only
         * relay it to the same owner. */
        if (k == np || (!read && k > 0)) {
            if (last == 0) { /* the node failed in this call's refresh */
                pc_cl_set_msg(c, "%s: the key's owner cannot be reached",
                              c->member_ep[pl[0]]->label);
                return PC_ECONN;
            }
            memcpy(c->errmsg, lastmsg, sizeof(lastmsg));
            return last;
        }
        e = c->member_ep[pl[k]];
        if (read) {
            /* Past a node that stopped answering to the first that has
             * not; if none has, the first one not failed in this call. */
            size_t j = k;

            while (j < np &&
                   (pc_cl_failed(c, c->member_ep[pl[j]]) || pc_cl_avoid(c, c->member_ep[pl[j]])))
                j++;
            if (j < np && j != k) {
                c->counters.unresponsive_skips++;
                k = j;
                e = c->member_ep[pl[k]];
            }
            /* A GET to the owner goes to the next placement that is not
             * unresponsive too if the owner is slow to answer
             * (hedged_get); one still owing an answer will do. */
            for (j = k + 1; k == 0 && req->op == PC_OP_GET && alt == NULL && j < np; j++) {
                if (!pc_cl_failed(c, c->member_ep[pl[j]]) &&
                    !pc_cl_unresponsive(c, c->member_ep[pl[j]], false))
                    alt = c->member_ep[pl[j]];
            }
        } else if (pc_cl_unresponsive(c, e, true)) {
            /* Known not to answer: the write fails now, unsent, rather
             * than after the whole timeout with an unknown outcome. Once
             * the cluster declares the node dead, the refreshed ring
             * names another owner, and the write goes there. */
            c->counters.fast_failures++;
            e->failed_call = c->call_seq;
            c->ring_doubt = true;
            first = false; /* going elsewhere after this counts as a retry */
            last = PC_ECONN;
            pc_cl_set_msg(c, "%s: the key's owner has not answered for %lld ms or more; the write "
                             "was not sent",
                          e->label, (long long)pc_health_stall_ms(&e->health, c->timeout_ms));
            memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
            continue;
        }
        /* A read not sent to the owner is answered by the node it reaches,
         * not relayed to an owner that is failing (PROTOCOL.md §5.3). */
        req->here = k > 0 && req->op == PC_OP_GET;
        if (k == 0)
            c->counters.owner_requests++;
        else
            c->counters.replica_fallbacks++;
        if (!first)
            c->counters.retries++;
        first = false;

        if (alt != NULL) {
            rc = hedged_get(c, e, alt, req, resp, &e);
        } else {
            rc = pc_cl_ep_call(c, e, req, resp, &sent);
            if (rc != 0 && pc_cl_try_next_node(rc))
                pc_cl_node_failed(c, e);
        }
        if (rc == 0) {
            pc_cl_note_fp(c, e, resp->ring_fp);
            if (resp->status == PC_ST_RETRY) {
                c->counters.retry_answers++;
                if (rounds < RETRY_ROUNDS) {
                    pc_cl_sleep_ms(retry_pause_ms[rounds++]);
                    c->ring_stale = true;
                    c->stale_from = e;
                    continue;
                }
            }
            if (resp->status != PC_ST_OK)
                return pc_cl_status_error(c, resp->status, resp->message);
            c->errmsg[0] = '\0';
            return 0;
        }
        if (!pc_cl_try_next_node(rc))
            return rc;
        last = rc;
        memcpy(lastmsg, c->errmsg, sizeof(lastmsg));
        if (!read && sent)
            return rc; /* the write may have been applied */
    }
}

/* A single-key call in either mode. */
static int key_call(pc_client_t *c, pc_request_t *req, pc_response_t *resp)
{
    int rc = c->ring_aware ? routed_call(c, req, resp) : pc_cl_seed_call(c, req, resp, NULL);

    pc_cl_end_call(c);
    return rc;
}

/* ---- argument checks and copies ---------------------------------------------- */

int pc_cl_check_key(pc_client_t *c, const void *key, size_t klen)
{
    if (key == NULL || klen == 0) {
        pc_cl_set_msg(c, "empty key");
        return PC_EINVAL;
    }
    if (klen > UINT32_MAX) {
        pc_cl_set_msg(c, "key of %zu bytes is over the protocol's 4 GiB limit", klen);
        return PC_ETOOBIG;
    }
    return 0;
}

pc_bytes_t pc_cl_bytes(const void *p, size_t len)
{
    pc_bytes_t b = {.ptr = p, .len = (uint32_t)len};

    return b;
}

int pc_cl_copy_value(pc_value_t *dst, const pc_entry_t *e)
{
    dst->data = malloc((size_t)e->value.len + 1);
    if (dst->data == NULL)
        return PC_ENOMEM;
    if (e->value.len > 0)
        memcpy(dst->data, e->value.ptr, e->value.len);
    dst->data[e->value.len] = '\0';
    dst->len = e->value.len;
    dst->flags = e->flags;
    dst->version = e->version;
    dst->ttl_ms = e->ttl_ms;
    return 0;
}

/* A copy of wire text with control bytes (NUL included) replaced, for
 * terminals and logs. NULL: no memory. */
static char *printable_copy(pc_bytes_t b)
{
    char *s = malloc((size_t)b.len + 1);

    if (s == NULL)
        return NULL;
    for (uint32_t i = 0; i < b.len; i++)
        s[i] = b.ptr[i] < 0x20 || b.ptr[i] == 0x7f ? '?' : (char)b.ptr[i];
    s[b.len] = '\0';
    return s;
}

/* ---- node list -------------------------------------------------------------- */

static int add_seed(void *arg, const char *host, int port)
{
    pc_client_t *c = arg;
    ep_t *e = pc_cl_ep_new(c, host, port);

    if (e == NULL)
        return PC_ENOMEM;
    e->seed = true;
    if (pc_cl_ep_append(c, e) != 0) {
        pc_cl_ep_free(e);
        return PC_ENOMEM;
    }
    c->nseeds++;
    return 0;
}

/* ---- public API -------------------------------------------------------------- */

int pc_client_new(const pc_client_options_t *opt, pc_client_t **out)
{
    pc_client_t *c;
    int rc;

    if (out == NULL)
        return PC_EINVAL;
    *out = NULL;
    if (opt == NULL || opt->nodes == NULL || opt->timeout_ms < 0)
        return PC_EINVAL;
    if (opt->token != NULL && strlen(opt->token) > UINT32_MAX)
        return PC_EINVAL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PC_ENOMEM;
    c->next_id = 1;
    c->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->ring_aware = opt->no_ring == 0;
    /* The readers must take any reply a node sends; the largest is a GET
     * or MGET answer filling one max frame of the node's. */
    pc_proto_limits_t lim;
    pc_proto_limits_default(&lim);
    if (opt->max_frame != 0)
        lim.max_frame = opt->max_frame;
    lim.max_mget_keys = UINT32_MAX; /* we choose how many we ask for */
    c->max_frame = lim.max_frame;
    pc_buf_init(&c->out, 0);
    rc = pc_addr_parse_list(opt->nodes, add_seed, c);
    if (rc == 0 && c->nseeds == 0)
        rc = PC_EINVAL;
    if (rc == 0 && opt->token != NULL && opt->token[0] != '\0') {
        c->token = strdup(opt->token);
        c->token_len = strlen(opt->token);
        if (c->token == NULL)
            rc = PC_ENOMEM;
    }
    if (rc == 0)
        rc = pc_proto_decoder_new(&lim, &c->dec);
    if (rc != 0) {
        pc_client_free(&c);
        return rc == PC_ENOMEM ? rc : PC_EINVAL;
    }
    *out = c;
    return 0;
}

void pc_client_free(pc_client_t **cp)
{
    pc_client_t *c;

    if (cp == NULL || *cp == NULL)
        return;
    c = *cp;
    pc_cl_ring_drop(c);
    for (size_t i = 0; i < c->neps; i++)
        pc_cl_ep_free(c->eps[i]);
    free(c->eps);
    pc_buf_free(&c->out);
    pc_proto_decoder_free(&c->dec);
    free(c->token);
    free(c);
    *cp = NULL;
}

const char *pc_client_errmsg(const pc_client_t *c)
{
    return c != NULL ? c->errmsg : "no client";
}

int pc_client_ping(pc_client_t *c)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL)
        return PC_EINVAL;
    pc_cl_begin_call(c);
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_PING;
    rc = pc_cl_seed_call(c, &req, &resp, NULL);
    pc_cl_end_call(c);
    return rc;
}

/* The start every single-key call shares: a zeroed request for op with
 * its key, after the key was checked. 0 or the check's error. */
static int key_request(pc_client_t *c, uint32_t op, const void *key, size_t klen,
                       pc_request_t *req)
{
    int rc;

    pc_cl_begin_call(c);
    rc = pc_cl_check_key(c, key, klen);
    if (rc != 0)
        return rc;
    memset(req, 0, sizeof(*req));
    req->op = op;
    req->key = pc_cl_bytes(key, klen);
    return 0;
}

int pc_client_get(pc_client_t *c, const void *key, size_t klen, pc_value_t *out)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL || out == NULL)
        return PC_EINVAL;
    memset(out, 0, sizeof(*out));
    rc = key_request(c, PC_OP_GET, key, klen, &req);
    if (rc != 0)
        return rc;
    rc = c->ring_aware ? routed_call(c, &req, &resp) : pc_cl_seed_call(c, &req, &resp, NULL);
    /* Copied before pc_cl_end_call(), which may exchange again. */
    if (rc == 0)
        rc = pc_cl_copy_value(out, &resp.entry);
    if (rc == PC_ENOMEM)
        pc_cl_set_msg(c, "out of memory copying the value");
    pc_cl_end_call(c);
    return rc;
}

int pc_client_set(pc_client_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                  const pc_set_options_t *opt, uint64_t *version_out)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL)
        return PC_EINVAL;
    rc = key_request(c, PC_OP_SET, key, klen, &req);
    if (rc != 0)
        return rc;
    if (val == NULL && vlen > 0) {
        pc_cl_set_msg(c, "NULL value with a length");
        return PC_EINVAL;
    }
    if (vlen > UINT32_MAX) {
        pc_cl_set_msg(c, "value of %zu bytes is over the protocol's 4 GiB limit", vlen);
        return PC_ETOOBIG;
    }
    if (opt != NULL && (opt->cond < PC_COND_NONE || opt->cond > PC_COND_XX)) {
        pc_cl_set_msg(c, "unknown SET condition %d", opt->cond);
        return PC_EINVAL;
    }
    req.value = pc_cl_bytes(vlen > 0 ? val : "", vlen);
    if (opt != NULL) {
        req.ttl_ms = opt->ttl_ms;
        req.flags = opt->flags;
        req.cond = (uint32_t)opt->cond;
        req.cas = opt->cas;
    }
    rc = c->ring_aware ? routed_call(c, &req, &resp) : pc_cl_seed_call(c, &req, &resp, NULL);
    if (rc == 0 && version_out != NULL)
        *version_out = resp.version;
    pc_cl_end_call(c);
    return rc;
}

int pc_client_del(pc_client_t *c, const void *key, size_t klen)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL)
        return PC_EINVAL;
    rc = key_request(c, PC_OP_DEL, key, klen, &req);
    return rc != 0 ? rc : key_call(c, &req, &resp);
}

int pc_client_touch(pc_client_t *c, const void *key, size_t klen, uint64_t ttl_ms)
{
    pc_request_t req;
    pc_response_t resp;
    int rc;

    if (c == NULL)
        return PC_EINVAL;
    rc = key_request(c, PC_OP_TOUCH, key, klen, &req);
    if (rc != 0)
        return rc;
    req.ttl_ms = ttl_ms;
    return key_call(c, &req, &resp);
}

int pc_client_stats(pc_client_t *c, pc_stat_entry_t **out, size_t *n)
{
    pc_request_t req;
    pc_response_t resp;
    pc_stat_entry_t *stats;
    int rc;

    if (c == NULL || out == NULL || n == NULL)
        return PC_EINVAL;
    *out = NULL;
    *n = 0;
    pc_cl_begin_call(c);
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_STATS;
    rc = pc_cl_seed_call(c, &req, &resp, NULL);
    if (rc != 0) {
        pc_cl_end_call(c);
        return rc;
    }
    /* One extra element so an empty answer still allocates (and a NULL
     * *out always means failure). */
    stats = calloc((size_t)resp.nstats + 1, sizeof(*stats));
    if (stats == NULL) {
        pc_cl_set_msg(c, "out of memory");
        return PC_ENOMEM;
    }
    for (uint32_t i = 0; i < resp.nstats; i++) {
        const pc_stat_t *s = &resp.stats[i];

        stats[i].name = malloc((size_t)s->name.len + 1);
        if (stats[i].name == NULL) {
            pc_stats_free(stats, i);
            pc_cl_set_msg(c, "out of memory");
            return PC_ENOMEM;
        }
        if (s->name.len > 0)
            memcpy(stats[i].name, s->name.ptr, s->name.len);
        stats[i].name[s->name.len] = '\0';
        stats[i].value = s->value;
    }
    *out = stats;
    *n = resp.nstats;
    pc_cl_end_call(c);
    return 0;
}

/* ---- the cluster ------------------------------------------------------------- */

static int cmp_member(const void *a, const void *b)
{
    return strcmp(((const pc_client_member_t *)a)->name, ((const pc_client_member_t *)b)->name);
}

/* Fills info's members from the answer, with each one's share of r. */
static int cluster_members(const pc_response_t *resp, const pc_ring_t *r,
                           pc_cluster_info_t *info)
{
    info->members = calloc((size_t)resp->nmembers + 1, sizeof(*info->members));
    if (info->members == NULL)
        return PC_ENOMEM;
    for (uint32_t i = 0; i < resp->nmembers; i++) {
        const pc_cluster_member_t *m = &resp->members[i];
        pc_client_member_t *o = &info->members[i];
        char name[PC_RING_MAX_NAME + 1];
        long idx = -1;

        o->name = printable_copy(m->name);
        o->addr = printable_copy(m->addr);
        info->nmembers = (size_t)i + 1;
        if (o->name == NULL || o->addr == NULL)
            return PC_ENOMEM;
        o->state = (int)(m->state > INT_MAX ? INT_MAX : m->state);
        o->incarnation = m->incarnation;
        o->weight = m->weight;
        if (pc_cl_in_ring(m->state) && pc_cl_member_name(m, name))
            idx = pc_ring_find(r, name);
        if (idx >= 0) {
            o->owned_slots = pc_ring_owned_slots(r, (size_t)idx);
            o->share = (double)o->owned_slots / (double)PC_RING_SLOTS;
        }
    }
    qsort(info->members, info->nmembers, sizeof(*info->members), cmp_member);
    return 0;
}

int pc_client_cluster(pc_client_t *c, pc_cluster_info_t **out)
{
    pc_request_t req;
    pc_response_t resp;
    pc_cluster_info_t *info;
    pc_ring_t *r = NULL;
    ep_t *via = NULL;
    int rc;

    if (c == NULL || out == NULL)
        return PC_EINVAL;
    *out = NULL;
    pc_cl_begin_call(c);
    memset(&req, 0, sizeof(req));
    req.op = PC_OP_CLUSTER;
    rc = pc_cl_seed_call(c, &req, &resp, &via);
    if (rc != 0) {
        pc_cl_end_call(c);
        return rc;
    }
    c->counters.ring_refreshes++;
    rc = pc_cl_ring_build(c, &resp, &r);
    if (rc != 0)
        return rc;
    info = calloc(1, sizeof(*info));
    if (info == NULL || (info->from = strdup(via->label)) == NULL ||
        cluster_members(&resp, r, info) != 0) {
        pc_cluster_info_free(&info);
        pc_ring_free(&r);
        pc_cl_set_msg(c, "out of memory");
        return PC_ENOMEM;
    }
    info->fingerprint = resp.fingerprint;
    info->replicas = resp.replicas;
    /* The answer is as fresh as any refresh: route by it from now on. */
    if (c->ring_aware)
        rc = pc_cl_ring_adopt(c, &resp, r);
    else
        pc_ring_free(&r);
    if (rc != 0) {
        pc_cluster_info_free(&info);
        pc_cl_set_msg(c, "out of memory");
        return rc;
    }
    c->errmsg[0] = '\0';
    *out = info;
    return 0;
}

void pc_cluster_info_free(pc_cluster_info_t **info)
{
    pc_cluster_info_t *i;

    if (info == NULL || *info == NULL)
        return;
    i = *info;
    for (size_t k = 0; i->members != NULL && k < i->nmembers; k++) {
        free(i->members[k].name);
        free(i->members[k].addr);
    }
    free(i->members);
    free(i->from);
    free(i);
    *info = NULL;
}

const char *pc_client_member_state_name(int state)
{
    switch (state) {
    case PC_CLIENT_MEMBER_ALIVE:
        return "alive";
    case PC_CLIENT_MEMBER_SUSPECT:
        return "suspect";
    case PC_CLIENT_MEMBER_DEAD:
        return "dead";
    case PC_CLIENT_MEMBER_LEFT:
        return "left";
    default:
        return "unknown";
    }
}

void pc_client_counters(const pc_client_t *c, pc_client_counters_t *out)
{
    if (out == NULL)
        return;
    if (c == NULL)
        memset(out, 0, sizeof(*out));
    else
        *out = c->counters;
}

uint64_t pc_client_ring_fingerprint(const pc_client_t *c)
{
    return c != NULL ? c->ring_fp : 0;
}

void pc_value_free(pc_value_t *v)
{
    if (v == NULL)
        return;
    free(v->data);
    memset(v, 0, sizeof(*v));
}

void pc_mget_free(pc_mget_item_t *items, size_t n)
{
    if (items == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        pc_value_free(&items[i].value);
    free(items);
}

void pc_stats_free(pc_stat_entry_t *stats, size_t n)
{
    if (stats == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(stats[i].name);
    free(stats);
}
