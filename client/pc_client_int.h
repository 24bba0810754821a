/*
 * pc_client_int.h -- the internal contract between the files of
 * libpeercache: the layouts of an endpoint and of the client, and the
 * functions that more than one of those files needs. Shared by
 * pc_client.c (routed calls, breakers, argument checks, the public API,
 * the cluster), pc_client_conn.c (endpoints and their connections),
 * pc_client_ring.c (the ring, calls through the seeds) and
 * pc_client_mget.c (MGET) only. Nothing else may include it, and it is
 * not installed; the library's contract is pc_client.h.
 *
 * Thread rules and ownership are pc_client.h's: a client is used by one
 * thread at a time, so nothing here locks. The client owns its endpoints
 * (eps), their connections and its ring; endpoints are freed only at the
 * start of a public call (pc_cl_begin_call), so an ep_t pointer held
 * during a call stays valid until the call ends (see the top of
 * pc_client.c). Each function is described where it is defined.
 */
#ifndef PC_CLIENT_INT_H
#define PC_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_client.h"
#include "pc_health.h"
#include "pc_nodeclock.h"
#include "pc_proto.h"
#include "pc_proto_reader.h"
#include "pc_ring.h"

#define ERRMSG_MAX 512

/*
 * RETRY answers are retried this many times, after these pauses. RETRY is
 * sent while two nodes disagree about a key's owner, which lasts about
 * one gossip round; the pauses give the cluster that long to settle
 * without adding much to a call that was unlucky once.
 */
#define RETRY_ROUNDS 3
static const int retry_pause_ms[RETRY_ROUNDS] = {20, 50, 100};

typedef struct ep {
    char *host;  /* as given, without IPv6 brackets */
    int port;
    char *label; /* "host:port" or "[v6]:port", for messages */
    bool seed;   /* from the node list: kept for the client's life */
    bool used;   /* scratch for prune_endpoints() */
    int fd;      /* -1 when not connected */
    pc_proto_reader_t reader;
    uint64_t failed_call;  /* == c->call_seq: failed during this call */
    uint64_t refresh_seq;  /* == c->refresh_seq: asked in this refresh */
    /* The node's wall clock against ours, from its HELLO answer
     * (PROTOCOL.md §5.1). Writes carry their deadline on its clock. */
    pc_nodeclock_t clock;
    pc_health_t health;
    /* A request on this connection whose answer we stopped waiting for
     * (a hedged read that another node answered first, or a probe): its
     * reply is read and dropped before the next one. 0 = none. */
    uint64_t orphan_id;
    int64_t orphan_at_ms; /* when it was sent */
} ep_t;

struct pc_client {
    ep_t **eps;       /* eps[0..nseeds) are the seeds, in list order */
    size_t neps;
    size_t nseeds;
    size_t cur;       /* seed to try first: the last one that worked */
    int timeout_ms;
    uint32_t max_frame;
    char *token;      /* NULL = none */
    size_t token_len;
    uint64_t next_id; /* ids are never reused within a client */
    pc_proto_decoder_t *dec;
    pc_buf_t out;
    char errmsg[ERRMSG_MAX];

    /* Ring-aware routing. ring != NULL means routing by it; ring == NULL
     * with ring_none means the nodes gave us nothing usable (seed-only
     * until a reply shows another fingerprint); neither means not learned
     * yet. */
    bool ring_aware;
    pc_ring_t *ring;
    ep_t **member_ep;     /* endpoint of ring member i */
    uint64_t ring_fp;     /* pc_ring_fingerprint(ring), 0 without a ring */
    bool ring_none;
    uint64_t unusable_fp; /* fingerprint of the last answer we could not use */
    uint64_t seen_fp;     /* the last fingerprint a reply showed */
    bool ring_stale;      /* refresh before routing the next request */
    bool ring_doubt;      /* a node failed: refresh, at most every
                             REFRESH_HOLD_MS */
    int64_t last_refresh_ms;
    ep_t *stale_from;     /* a node whose reply showed another ring; only
                             valid during the call that set it */
    bool prune_pending;   /* endpoints may have left the ring */
    uint64_t call_seq;
    uint64_t refresh_seq;
    pc_client_counters_t counters;
};

/* ---- pc_client_conn.c: helpers, endpoints, connections ---------------------- */

void pc_cl_set_msg(pc_client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int64_t pc_cl_now_ms(void);
int64_t pc_cl_now_us(void);
void pc_cl_sleep_ms(int ms);
void pc_cl_add_reason(char *all, size_t size, const char *msg);
void pc_cl_conn_close(ep_t *e);

ep_t *pc_cl_ep_new(const pc_client_t *c, const char *host, int port);
void pc_cl_ep_free(ep_t *e);
int pc_cl_ep_append(pc_client_t *c, ep_t *e);
ep_t *pc_cl_ep_get(pc_client_t *c, const char *host, int port);
bool pc_cl_failed(const pc_client_t *c, const ep_t *e);
void pc_cl_node_failed(pc_client_t *c, ep_t *e);
void pc_cl_begin_call(pc_client_t *c);

int pc_cl_connect_node(pc_client_t *c, ep_t *e, int64_t deadline);
int pc_cl_status_error(pc_client_t *c, uint32_t status, pc_bytes_t message);
int pc_cl_encode_request(pc_client_t *c, const ep_t *e, pc_request_t *req, int64_t deadline);
int pc_cl_send_request(pc_client_t *c, ep_t *e, const pc_request_t *req, pc_response_t *resp,
                       int64_t deadline, bool *sent);
int pc_cl_await_reply(pc_client_t *c, ep_t *e, const pc_request_t *req, pc_response_t *resp,
                      int64_t deadline);
int pc_cl_exchange(pc_client_t *c, ep_t *e, pc_request_t *req, pc_response_t *resp,
                   int64_t deadline, bool *sent);
int pc_cl_hello(pc_client_t *c, ep_t *e, int64_t deadline);
bool pc_cl_try_next_node(int rc);
int pc_cl_ep_open(pc_client_t *c, ep_t *e);
bool pc_cl_is_read_op(uint32_t op);
int pc_cl_orphan_settle(pc_client_t *c, ep_t *e, int64_t deadline);
void pc_cl_ep_check(pc_client_t *c, ep_t *e);
int pc_cl_ep_ready(pc_client_t *c, ep_t *e, bool *reused);
int pc_cl_ep_call(pc_client_t *c, ep_t *e, pc_request_t *req, pc_response_t *resp, bool *sent);

/* ---- pc_client_ring.c: the ring, calls through the seeds -------------------- */

void pc_cl_note_fp(pc_client_t *c, ep_t *e, uint64_t fp);
bool pc_cl_in_ring(uint32_t state);
bool pc_cl_member_name(const pc_cluster_member_t *m, char buf[PC_RING_MAX_NAME + 1]);
int pc_cl_ring_build(pc_client_t *c, const pc_response_t *resp, pc_ring_t **out);
void pc_cl_ring_drop(pc_client_t *c);
int pc_cl_ring_adopt(pc_client_t *c, const pc_response_t *resp, pc_ring_t *r);
int pc_cl_ring_ensure(pc_client_t *c);
void pc_cl_end_call(pc_client_t *c);
int pc_cl_seed_call(pc_client_t *c, pc_request_t *req, pc_response_t *resp, ep_t **via);

/* ---- pc_client.c: placements, breakers, argument checks and copies ---------- */

size_t pc_cl_placements(const pc_client_t *c, pc_bytes_t key, uint32_t *out);
bool pc_cl_unresponsive(pc_client_t *c, ep_t *e, bool wait);
bool pc_cl_avoid(pc_client_t *c, ep_t *e);
int pc_cl_check_key(pc_client_t *c, const void *key, size_t klen);
pc_bytes_t pc_cl_bytes(const void *p, size_t len);
int pc_cl_copy_value(pc_value_t *dst, const pc_entry_t *e);

#endif
