/*
 * pc_relay.c -- relays between the loops of a node (pc_relay.h).
 */
#include "pc_relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pc_conns.h"
#include "pc_loops.h"

#define READ_CHUNK (64 * 1024)

/* The sending end of a relay: frames out, answers back. */
typedef struct relay {
    pc_loop_t *loop;
    size_t to; /* the loop it goes to */
    uv_pipe_t pipe;
    pc_buf_t out, wbuf;
    uv_write_t wreq;
    int writing;
    int open;
    int made; /* the pipe handle was initialised */
    pc_proto_reader_t rd;
    pc_list_t waits; /* pc_relay_wait_t's, oldest first */
    uint64_t next_id;
} relay_t;

typedef struct pc_relays {
    relay_t core[2];  /* a worker's: [0] clients', [1] peers' requests */
    int fds[4];       /* a worker's socketpairs to the core until start */
    relay_t *home;    /* [nhome]: to each home loop but this one ([0] on a
                         worker: core[0] is used) */
    size_t nhome;
    uv_check_t check; /* flushes the relays once per loop turn */
    int check_made;
    void (*gone)(pc_loop_t *l);
} pc_relays_t;

/* A request relayed whole: the client's request, waiting. */
typedef struct relayed {
    pc_req_t req;
    pc_relay_wait_t rw;
    int write; /* counts in c->relayed_writes */
} relayed_t;

static void relay_init(relay_t *rl)
{
    pc_buf_init(&rl->out, 0);
    pc_buf_init(&rl->wbuf, 0);
    pc_list_init(&rl->waits);
}

int pc_relays_new(pc_loop_t *l)
{
    pc_relays_t *rs = calloc(1, sizeof *rs);
    if (rs == NULL)
        return PC_ENOMEM;
    l->relays = rs;
    rs->fds[0] = rs->fds[1] = rs->fds[2] = rs->fds[3] = -1;
    relay_init(&rs->core[0]);
    relay_init(&rs->core[1]);
    if (!pc_loop_is_core(l) &&
        (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rs->fds) < 0 ||
         socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rs->fds + 2) < 0))
        return PC_EIO;
    return 0;
}

static void relay_free(relay_t *rl)
{
    pc_buf_free(&rl->out);
    pc_buf_free(&rl->wbuf);
    pc_proto_reader_free(&rl->rd);
}

void pc_relays_free(pc_loop_t *l)
{
    pc_relays_t *rs = l->relays;
    if (rs == NULL)
        return;
    relay_free(&rs->core[0]);
    relay_free(&rs->core[1]);
    for (size_t h = 0; h < rs->nhome; h++)
        relay_free(&rs->home[h]);
    free(rs->home);
    for (size_t i = 0; i < 4; i++)
        if (rs->fds[i] >= 0)
            close(rs->fds[i]);
    free(rs);
    l->relays = NULL;
}

/* ---- the sending end -------------------------------------------------------- */

static void relay_flush(relay_t *rl);

static void relay_fail_all(relay_t *rl, const char *why)
{
    if (rl->open)
        pc_log_error(rl->loop->log, "loop %zu: relay to loop %zu: %s", rl->loop->index, rl->to,
                     why);
    rl->open = 0;
    uv_read_stop((uv_stream_t *)&rl->pipe);
    while (!pc_list_empty(&rl->waits)) {
        pc_relay_wait_t *w = pc_list_entry(rl->waits.next, pc_relay_wait_t, link);
        pc_list_remove(&w->link);
        w->done(w, NULL);
    }
}

static void relay_write_cb(uv_write_t *w, int status)
{
    relay_t *rl = w->data;
    rl->writing = 0;
    pc_buf_reset(&rl->wbuf);
    if (status < 0) {
        relay_fail_all(rl, uv_strerror(status));
        return;
    }
    relay_flush(rl);
}

static void relay_flush(relay_t *rl)
{
    if (!rl->open || rl->writing || rl->out.len == 0)
        return;
    pc_buf_t t = rl->wbuf;
    rl->wbuf = rl->out;
    rl->out = t;
    uv_buf_t b = uv_buf_init((char *)rl->wbuf.data, (unsigned)rl->wbuf.len);
    rl->wreq.data = rl;
    int rc = uv_write(&rl->wreq, (uv_stream_t *)&rl->pipe, &b, 1, relay_write_cb);
    if (rc < 0) {
        relay_fail_all(rl, uv_strerror(rc));
        return;
    }
    rl->writing = 1;
}

/* Once per loop turn, after every connection read: all the frames relayed
 * meanwhile leave in one write per relay. */
static void check_cb(uv_check_t *h)
{
    pc_loop_t *l = h->data;
    pc_relays_t *rs = l->relays;
    if (!pc_loop_is_core(l)) {
        relay_flush(&rs->core[0]);
        relay_flush(&rs->core[1]);
    }
    for (size_t i = 0; i < rs->nhome; i++)
        relay_flush(&rs->home[i]);
    uv_check_stop(h);
}

static void relay_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    relay_t *rl = h->data;
    uint8_t *p = NULL;
    size_t avail = 0;
    (void)suggested;
    if (pc_proto_reader_reserve(&rl->rd, READ_CHUNK, &p, &avail) < 0)
        avail = 0;
    *buf = uv_buf_init((char *)p, (unsigned)(avail < READ_CHUNK ? avail : READ_CHUNK));
}

static void relay_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    relay_t *rl = st->data;
    (void)buf;
    if (n < 0) {
        pc_loop_t *l = rl->loop;
        if (n == UV_EOF && pc_list_empty(&rl->waits) && (l->shutting_down || l->workers_stopping)) {
            /* the other loop stopped first, as a stop does: nothing lost */
            pc_log_debug(l->log, "loop %zu: relay to loop %zu closed (stopping)", l->index,
                         rl->to);
            rl->open = 0;
        }
        relay_fail_all(rl, n == UV_EOF ? "the other end closed it" : uv_strerror((int)n));
        return;
    }
    pc_proto_reader_commit(&rl->rd, (size_t)n);
    const uint8_t *body;
    uint32_t len;
    int rc;
    while ((rc = pc_proto_reader_next(&rl->rd, &body, &len)) > 0) {
        pc_response_t resp;
        if (pc_proto_decode_response(rl->loop->pdec, body, len, &resp) < 0) {
            relay_fail_all(rl, "malformed answer");
            return;
        }
        /* Mostly in order: the oldest requests are answered first. */
        pc_relay_wait_t *w = NULL;
        for (pc_list_t *l = rl->waits.next; l != &rl->waits; l = l->next) {
            pc_relay_wait_t *q = pc_list_entry(l, pc_relay_wait_t, link);
            if (q->id == resp.id) {
                w = q;
                break;
            }
        }
        if (w == NULL) {
            relay_fail_all(rl, "an answer nobody asked for");
            return;
        }
        pc_list_remove(&w->link);
        w->done(w, &resp);
    }
    if (rc < 0)
        relay_fail_all(rl, "bad frame");
}

/* w waits on rl for the answer to the frame just queued under id. */
static void wait_add(relay_t *rl, pc_relay_wait_t *w, uint64_t id)
{
    pc_loop_t *l = rl->loop;
    pc_relays_t *rs = l->relays;
    w->id = id;
    pc_list_push_back(&rl->waits, &w->link);
    if (rl->to == 0)
        l->stats.relayed++;
    else
        l->stats.home_relayed++;
    if (!uv_is_active((uv_handle_t *)&rs->check))
        uv_check_start(&rs->check, check_cb);
}

/* ---- opening and closing -------------------------------------------------- */

/* Opens the relay's end `fd` (taken) on l's loop, going to loop `to`. */
static int relay_open(pc_loop_t *l, relay_t *rl, int fd, size_t to)
{
    pc_relays_t *rs = l->relays;
    if (!rs->check_made) {
        uv_check_init(l->uv, &rs->check);
        rs->check.data = l;
        rs->check_made = 1;
        l->handles_open++;
    }
    rl->loop = l;
    rl->to = to;
    pc_proto_reader_init(&rl->rd, l->set.conn.proto.max_frame);
    uv_pipe_init(l->uv, &rl->pipe, 0);
    rl->pipe.data = rl;
    rl->made = 1;
    l->handles_open++;
    int rc = uv_pipe_open(&rl->pipe, fd);
    if (rc < 0)
        close(fd);
    else
        rc = uv_read_start((uv_stream_t *)&rl->pipe, relay_alloc_cb, relay_read_cb);
    if (rc < 0) {
        pc_log_error(l->log, "relay of loop %zu to loop %zu: %s", l->index, to, uv_strerror(rc));
        return PC_EIO;
    }
    rl->open = 1;
    return 0;
}

int pc_relays_start_worker(pc_loop_t *w, pc_loop_t *core)
{
    pc_relays_t *rs = w->relays;
    for (int k = 0; k < 2; k++) {
        int rc = relay_open(w, &rs->core[k], rs->fds[2 * k], 0);
        rs->fds[2 * k] = -1;
        if (rc < 0)
            return rc;
        char name[64];
        snprintf(name, sizeof name, "loop %zu (%s)", w->index, k ? "peers" : "clients");
        rc = pc_conns_attach_internal(&core->conns, rs->fds[2 * k + 1], name);
        rs->fds[2 * k + 1] = -1;
        if (rc < 0)
            return rc;
    }
    return 0;
}

int pc_relays_start_homes(pc_shared_t *sh)
{
    for (size_t i = 0; i < sh->nloops; i++) {
        pc_loop_t *l = sh->loops[i];
        pc_relays_t *rs = l->relays;
        rs->home = calloc(sh->nhomes, sizeof *rs->home);
        if (rs->home == NULL)
            return PC_ENOMEM;
        rs->nhome = sh->nhomes;
        for (size_t h = 0; h < sh->nhomes; h++)
            relay_init(&rs->home[h]);
        for (size_t h = 1; h < sh->nhomes; h++) {
            int fds[2];
            if (h == i)
                continue;
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
                pc_log_error(l->log, "relay socketpair: %s", strerror(errno));
                return PC_EIO;
            }
            int rc = relay_open(l, &rs->home[h], fds[0], h);
            if (rc < 0) {
                close(fds[1]);
                return rc;
            }
            char name[64];
            snprintf(name, sizeof name, "loop %zu (clients)", i);
            if ((rc = pc_conns_attach_internal(&sh->loops[h]->conns, fds[1], name)) < 0)
                return rc;
        }
    }
    return 0;
}

static void pipe_closed(uv_handle_t *h)
{
    relay_t *rl = h->data;
    rl->loop->relays->gone(rl->loop);
}

static void check_closed(uv_handle_t *h)
{
    pc_loop_t *l = h->data;
    l->relays->gone(l);
}

static void relay_close(relay_t *rl)
{
    if (!rl->made || uv_is_closing((uv_handle_t *)&rl->pipe))
        return;
    rl->open = 0; /* (relay_fail_all logs only an unexpected end) */
    relay_fail_all(rl, NULL);
    uv_close((uv_handle_t *)&rl->pipe, pipe_closed);
}

void pc_relays_close(pc_loop_t *l, void (*gone)(pc_loop_t *l))
{
    pc_relays_t *rs = l->relays;
    if (rs == NULL)
        return;
    rs->gone = gone;
    if (rs->check_made && !uv_is_closing((uv_handle_t *)&rs->check))
        uv_close((uv_handle_t *)&rs->check, check_closed);
    relay_close(&rs->core[0]);
    relay_close(&rs->core[1]);
    for (size_t h = 0; h < rs->nhome; h++)
        relay_close(&rs->home[h]);
}

/* ---- relaying ----------------------------------------------------------- */

/* A request relayed whole has its answer: its id put back to the
 * client's (resp NULL: the relay failed). */
static void relayed_done(pc_relay_wait_t *w, pc_response_t *resp)
{
    relayed_t *r = pc_list_entry(w, relayed_t, rw);
    pc_conn_t *c = r->req.c;
    r->req.waiting = 0;
    c->relayed--;
    c->relayed_writes -= (unsigned)r->write;
    if (pc_req_gone(&r->req))
        return;
    if (resp == NULL) {
        pc_req_answer_status(&r->req, PC_ST_INTERNAL,
                             "the node is stopping; the request may or may not have been "
                             "applied");
        return;
    }
    resp->id = r->req.id;
    pc_req_answer(&r->req, resp, NULL);
}

/* Sends the request being dispatched (opened, if it came sealed) over
 * relay rl, under an id of the relay's: the other loop answers each as
 * soon as it can, and the answer goes back to the client under its own
 * id, in the client's order. */
static void relay_to(pc_conn_t *c, const pc_request_t *rq, relay_t *rl)
{
    pc_loop_t *l = pc_loop_of(c);
    if (!rl->open) {
        pc_conn_answer_error(c, rq->op, rq->id, PC_ST_INTERNAL, "the node is stopping");
        return;
    }
    uint64_t rid = rl->next_id + 1;
    uint32_t op = rq->op;
    uint64_t id = rq->id;
    pc_request_t in;
    /* The answer to a FORWARD carries the id of the request inside it
     * (PROTOCOL.md): that is the id to make the relay's own. One that
     * does not decode goes as it is, for the other loop to refuse. */
    int inner = rq->op == PC_OP_FORWARD &&
                pc_proto_decode_request(l->fdec, rq->body.ptr, rq->body.len, &in) == 0;
    if (inner) {
        op = in.op;
        id = in.id;
    }
    relayed_t *r = (relayed_t *)pc_req_new(c, op, id, sizeof *r);
    int rc = PC_ENOMEM;
    if (r != NULL) {
        if (inner) {
            in.id = rid;
            rc = pc_proto_encode_forward(&rl->out, rq->hops, rq->deadline_ms, &in, &l->fbuf);
        } else {
            pc_request_t f = *rq;
            f.id = rid;
            rc = pc_proto_encode_request(&rl->out, &f);
        }
    }
    if (rc < 0) {
        if (r)
            pc_req_free(&r->req);
        pc_conn_answer_error(c, rq->op, rq->id, rc == PC_EINVAL ? PC_ST_BAD_REQUEST : PC_ST_INTERNAL,
                             rc == PC_EINVAL ? "bad request" : "out of memory");
        return;
    }
    rl->next_id = rid;
    r->write = rq->op != PC_OP_GET && rq->op != PC_OP_MGET;
    r->req.waiting = 1;
    r->req.waits_on = PC_REQ_RELAYED;
    r->rw.done = relayed_done;
    wait_add(rl, &r->rw, rid);
    c->relayed++;
    c->relayed_writes += (unsigned)r->write;
}

void pc_relay_to_core(pc_conn_t *c, const pc_request_t *rq)
{
    relay_to(c, rq, &pc_loop_of(c)->relays->core[c->sealed ? 1 : 0]);
}

/* The relay to home loop h (not this one). */
static relay_t *home_relay(pc_loop_t *l, size_t h)
{
    return h == 0 && !pc_loop_is_core(l) ? &l->relays->core[0] : &l->relays->home[h];
}

void pc_relay_to_home(pc_conn_t *c, const pc_request_t *rq, size_t h)
{
    relay_to(c, rq, home_relay(pc_loop_of(c), h));
}

int pc_relay_mget(pc_loop_t *l, size_t h, uint32_t hops, const pc_bytes_t *keys, uint32_t n,
                  pc_relay_wait_t *w)
{
    relay_t *rl = home_relay(l, h);
    if (!rl->open)
        return PC_ECLOSED;
    uint64_t id = rl->next_id + 1;
    pc_request_t mg = {.op = PC_OP_MGET, .id = id, .nkeys = n, .keys = keys};
    /* A peer's FORWARD goes on as one, its hops kept, so that the home
     * never relays it to another member. */
    int rc = hops == 0 ? pc_proto_encode_request(&rl->out, &mg)
                       : pc_proto_encode_forward(&rl->out, hops, 0, &mg, &l->fbuf);
    if (rc < 0)
        return rc;
    rl->next_id = id;
    wait_add(rl, w, id);
    return 0;
}
