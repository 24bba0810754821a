/*
 * pc_conn_answer.c -- a connection's requests and answers (pc_conn.h
 * "answers" and "requests"): answers leave in request order -- one that is
 * ready behind a request still out waits in a finished pc_req_t -- each
 * with the ring's fingerprint, sealed on a peer's connection, rendered on a
 * Redis-protocol one; large values are written from where they lie; and
 * each answer is timed for the latency histograms. Part of the connection
 * module, with pc_conn.c (pc_conn_int.h between them). Its loop's thread
 * only.
 */
#include <stdlib.h>
#include <string.h>

#include "pc_conn_int.h"

/* ---- latency (pc_metrics.h, enum pc_lat_op) ---- */

/* The class an answer of op is timed as: `now` = given in the turn that
 * read the request. */
static uint8_t lat_class(uint32_t op, int now)
{
    switch (op) {
    case PC_OP_GET: return now ? PC_LAT_GET_HIT : PC_LAT_GET_MISS;
    case PC_OP_SET: return PC_LAT_SET;
    case PC_OP_DEL: return PC_LAT_DEL;
    default: return PC_LAT_NONE;
    }
}

/* An answer of class k given now, in c's turn: timed at the end of the
 * turn, with the others (no clock read per answer). */
static void lat_in_turn(pc_conn_t *c, uint8_t k)
{
    if (k < PC_LAT_OPS && c->processing && !c->internal && c->turn_answers[k] < UINT16_MAX)
        c->turn_answers[k]++;
}

/* The answers of the turn that began at c->turn_t0 and ends at `end`. */
void pc_conn_lat_turn_done(pc_conn_t *c, uint64_t end)
{
    pc_hist_t *lat = c->cs->lat;
    for (size_t k = 0; k < PC_LAT_OPS; k++) {
        if (c->turn_answers[k] > 0 && lat != NULL)
            pc_hist_add(&lat[k], end - c->turn_t0, c->turn_answers[k]);
        c->turn_answers[k] = 0;
    }
}

/* A queued request's answer: in the turn that read it, as above; later,
 * timed now. */
static void lat_answered(pc_req_t *r)
{
    pc_conn_t *c = r->c;
    if (r->lat >= PC_LAT_OPS || c->internal || c->cs->lat == NULL)
        return;
    if (c->processing && r->t0 == c->turn_t0) {
        lat_in_turn(c, r->lat == PC_LAT_GET_MISS ? PC_LAT_GET_HIT : r->lat);
        return;
    }
    pc_hist_add(&c->cs->lat[r->lat], uv_hrtime() - r->t0, 1);
}

void pc_req_time_as(pc_req_t *r, unsigned k)
{
    r->lat = (uint8_t)(k < PC_LAT_OPS ? k : PC_LAT_NONE);
}

pc_req_t *pc_req_new(pc_conn_t *c, uint32_t op, uint64_t id, size_t size)
{
    pc_req_t *r = calloc(1, size);
    if (r == NULL)
        return NULL;
    r->c = c;
    r->op = op;
    r->id = id;
    r->lat = lat_class(op, 0);
    r->t0 = c->processing ? c->turn_t0 : uv_hrtime();
    pc_buf_init(&r->resp, 0);
    pc_buf_set_account(&r->resp, &c->cs->buf_bytes); /* held answers count */
    pc_list_push_back(&c->reqs, &r->link);
    c->nreqs++;
    c->refs++;
    return r;
}

void pc_req_free(pc_req_t *r)
{
    pc_conn_t *c = r->c;
    if (r->cleanup)
        r->cleanup(r);
    c->held -= r->resp.len;
    pc_buf_free(&r->resp);
    pc_list_remove(&r->link);
    c->nreqs--;
    c->refs--;
    free(r);
}

int pc_req_gone(pc_req_t *r)
{
    pc_conn_t *c = r->c;
    if (!c->closing)
        return 0;
    pc_req_free(r);
    pc_conn_maybe_free(c);
    return 1;
}

static int req_is_head(const pc_req_t *r) { return r->c->reqs.next == &r->link; }

/* Moves finished answers from the head of the queue to the output. */
static void conn_flush_ready(pc_conn_t *c)
{
    while (!pc_list_empty(&c->reqs)) {
        pc_req_t *r = pc_list_entry(c->reqs.next, pc_req_t, link);
        if (!r->done)
            break;
        int rc = 0;
        if (c->redis != NULL && r->resp.len > 4) /* the native frame, rendered */
            rc = c->cs->hooks->redis_answer(c, NULL, NULL, r->resp.data + 4, r->resp.len - 4);
        else if (r->resp.len > 0)
            rc = pc_buf_append(&c->out, r->resp.data, r->resp.len);
        if (rc < 0) {
            pc_req_free(r);
            pc_conn_close(c, "out of memory");
            return;
        }
        pc_req_free(r);
    }
}

/*
 * Where to encode an answer for (op, id) that is ready now: straight into
 * the output when nothing is queued ahead, else into a finished request
 * that waits its turn. NULL on allocation failure.
 */
static pc_buf_t *answer_target(pc_conn_t *c, uint32_t op, uint64_t id)
{
    if (pc_list_empty(&c->reqs) || c->internal)
        return &c->out;
    pc_req_t *r = pc_req_new(c, op, id, sizeof *r);
    if (r == NULL)
        return NULL;
    r->done = 1;
    return &r->resp;
}

/* On a peer's (sealed) connection, seals the frame just appended at
 * b->data[start..]; passes rc through otherwise. */
static int seal_answer(pc_conn_t *c, pc_buf_t *b, size_t start, int rc)
{
    if (rc < 0 || !c->sealed)
        return rc;
    rc = pc_guard_seal_frame(c->cs->guard, &c->seal, PC_SEAL_PEER_RESP, b, start);
    if (rc < 0)
        b->len = start;
    return rc;
}

/* Every answer carries our ring's fingerprint (PROTOCOL.md §6). */
static int encode_answer(pc_conn_t *c, pc_buf_t *b, const pc_response_t *resp, const char *errmsg)
{
    pc_response_t r = *resp;
    size_t start = b->len;
    r.ring_fp = atomic_load_explicit(c->cs->ring_fp, memory_order_relaxed);
    if (r.status != PC_ST_OK && errmsg != NULL) {
        r.message.ptr = (const uint8_t *)errmsg;
        r.message.len = (uint32_t)strlen(errmsg);
    }
    return seal_answer(c, b, start, pc_proto_encode_response(b, &r));
}

static void answer_with(pc_conn_t *c, const pc_response_t *resp, const char *errmsg)
{
    lat_in_turn(c, lat_class(resp->op, 1));
    pc_buf_t *b = answer_target(c, resp->op, resp->id);
    int rc;
    if (b == NULL)
        rc = PC_ENOMEM;
    else if (b == &c->out && c->redis != NULL)
        rc = c->cs->hooks->redis_answer(c, resp, errmsg, NULL, 0);
    else
        rc = encode_answer(c, b, resp, errmsg);
    if (b != NULL && b != &c->out)
        c->held += b->len;
    if (rc < 0)
        pc_conn_close(c, "out of memory encoding a reply");
}

void pc_conn_answer(pc_conn_t *c, const pc_response_t *resp) { answer_with(c, resp, NULL); }

void pc_conn_answer_error(pc_conn_t *c, uint32_t op, uint64_t id, uint32_t status,
                          const char *msg)
{
    pc_response_t resp = {.op = op, .id = id, .status = status};
    answer_with(c, &resp, msg);
}

/*
 * The least value pc_conn_answer_ref writes from where it lies. Copying
 * a value into the output, and copying the output again as it grew, were
 * 57% of a loop's time serving 1,000 clients 1 MiB values (docs/
 * PERFORMANCE.md "Values written from where they lie"); for a small one,
 * a copy costs less than another buffer in the writev.
 */
#define PIN_MIN (16 * 1024)

void pc_conn_answer_ref(pc_conn_t *c, const pc_response_t *resp, void (*release)(void *obj),
                        void *obj)
{
    /* Copied: with io_uring (its send takes one buffer), for a Redis
     * client (RESP renders it) or a peer (the frame is sealed whole), and
     * behind a request still out (the answer waits in that request). */
    if (resp->op != PC_OP_GET || resp->status != PC_ST_OK || resp->entry.value.len < PIN_MIN ||
        c->ur || c->redis != NULL || c->sealed || c->internal || c->closing ||
        !pc_list_empty(&c->reqs) || c->opins.n == PC_CONN_PINS) {
        pc_conn_answer(c, resp);
        release(obj);
        return;
    }
    lat_in_turn(c, lat_class(resp->op, 1));
    pc_response_t r = *resp;
    r.ring_fp = atomic_load_explicit(c->cs->ring_fp, memory_order_relaxed);
    size_t at;
    if (pc_proto_encode_get_ref(&c->out, &r, &at) < 0) {
        release(obj);
        pc_conn_close(c, "out of memory encoding a reply");
        return;
    }
    pc_conn_pins_t *ps = &c->opins;
    ps->v[ps->n++] = (pc_conn_pin_t){.p = r.entry.value.ptr, .len = r.entry.value.len, .at = at,
                                     .release = release, .obj = obj};
    ps->bytes += r.entry.value.len;
    c->cs->buf_bytes += r.entry.value.len;
}

/* A queued request has its answer: resp encoded here, or (raw != NULL) a
 * response body already encoded. If the client is gone the answer is
 * dropped; if the request is at the head it goes out now. */
static void req_deliver(pc_req_t *r, const pc_response_t *resp, const char *errmsg,
                        const uint8_t *raw, size_t rawlen)
{
    pc_conn_t *c = r->c;
    /* Answered: nothing calls back for it any more. (An answer held behind
     * an unfinished request that still counted as waiting was never freed
     * when its connection closed, and held the connection for ever.) */
    r->waiting = 0;
    if (pc_req_gone(r))
        return;
    lat_answered(r);
    /* The receiving end of a relay answers as soon as it can: the relay's
     * requests are many clients', each put back in order by its loop. */
    pc_buf_t *b = req_is_head(r) || c->internal ? &c->out : &r->resp;
    size_t start = b->len;
    int rc;
    if (b == &c->out && c->redis != NULL)
        rc = c->cs->hooks->redis_answer(c, raw ? NULL : resp, errmsg, raw, rawlen);
    else
        rc = raw ? seal_answer(c, b, start, pc_proto_append_frame(b, raw, rawlen))
                 : encode_answer(c, b, resp, errmsg);
    r->done = 1;
    if (b == &c->out)
        pc_req_free(r);
    else
        c->held += b->len;
    if (rc < 0) {
        pc_conn_close(c, "out of memory encoding a reply");
        return;
    }
    conn_flush_ready(c);
    pc_conn_flush_later(c);
    pc_conn_schedule(c);
}

void pc_req_answer(pc_req_t *r, const pc_response_t *resp, const char *errmsg)
{
    req_deliver(r, resp, errmsg, NULL, 0);
}

void pc_req_answer_status(pc_req_t *r, uint32_t status, const char *msg)
{
    pc_response_t resp = {.op = r->op, .id = r->id, .status = status};
    pc_req_answer(r, &resp, msg ? msg : pc_status_message(status));
}

void pc_req_answer_raw(pc_req_t *r, const uint8_t *body, size_t len)
{
    req_deliver(r, NULL, NULL, body, len);
}
