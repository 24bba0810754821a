/*
 * pc_http.c -- operators' HTTP server (pc_http.h): libuv sockets,
 * http-parser for the requests, one request per connection.
 */
#include "pc_http.h"

#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hconn hconn_t;

struct pc_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    pc_http_handler_fn handler;
    void *arg;
    unsigned max_conns;
    uint64_t timeout_ms;
    pc_http_counters_t counters;
    hconn_t *conns;  /* every open connection, for pc_http_close */
    unsigned nconns; /* of them, not yet closed */
    size_t reqs;     /* requests the handler holds */
    int listening;   /* the listener is not closed yet */
    int closing;
    void (*done)(void *arg);
    void *done_arg;
};

struct pc_http_req {
    pc_http_t *h;
    hconn_t *c; /* NULL once the connection is gone */
    int head;   /* HEAD: no body in the answer */
};

struct hconn {
    pc_http_t *h;
    hconn_t *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int handles; /* of tcp and timer, not yet closed */
    int closing;
    http_parser parser;
    size_t head_bytes; /* read so far */
    char url[PC_HTTP_MAX_PATH + 1];
    size_t url_len;
    int status;   /* a 4xx the server answers itself, 0 = none yet */
    int complete; /* the whole request is in */
    int answered; /* an answer is being written */
    pc_http_req_t *req;
    uv_write_t wr;
    char *out;
    char in[2048];
};

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* ---- freeing ---------------------------------------------------------------- */

static void maybe_done(pc_http_t *h)
{
    if (!h->closing || h->listening || h->conns != NULL || h->reqs > 0)
        return;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    free(h);
    if (done != NULL)
        done(arg);
}

static void on_conn_handle_closed(uv_handle_t *hd)
{
    hconn_t *c = hd->data;
    if (--c->handles > 0)
        return;
    pc_http_t *h = c->h;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->out);
    free(c);
    maybe_done(h);
}

static void conn_close(hconn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->h->nconns--;
    if (c->req != NULL) {
        c->req->c = NULL; /* the handler still answers it, to nobody */
        c->req = NULL;
    }
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

/* ---- answering -------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t)
{
    hconn_t *c = t->data;
    c->h->counters.timeouts++;
    conn_close(c);
}

static void on_written(uv_write_t *wr, int status)
{
    (void)status;
    conn_close(wr->data); /* one request per connection */
}

/* Writes the answer; the connection closes when it is written (or at
 * the timeout, if the client does not take it). */
static void send_answer(hconn_t *c, int status, const char *type, const char *body, size_t len,
                        int head)
{
    char hdr[320];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                     status, reason(status), type, len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t blen = head ? 0 : len;
    c->answered = 1;
    c->out = malloc((size_t)n + blen);
    if (n < 0 || (size_t)n >= sizeof hdr || c->out == NULL) {
        conn_close(c);
        return;
    }
    memcpy(c->out, hdr, (size_t)n);
    if (blen > 0)
        memcpy(c->out + n, body, blen);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)((size_t)n + blen));
    c->wr.data = c;
    uv_timer_start(&c->timer, on_timeout, c->h->timeout_ms, 0);
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0)
        conn_close(c);
}

/* An answer the server gives itself (a bad request). */
static void refuse(hconn_t *c, int status)
{
    char msg[96];
    snprintf(msg, sizeof msg, "%d %s\n", status, reason(status));
    c->h->counters.bad++;
    send_answer(c, status, "text/plain; charset=utf-8", msg, strlen(msg),
                c->parser.method == HTTP_HEAD);
}

void pc_http_reply(pc_http_req_t *req, int status, const char *content_type, const char *body,
                   size_t len)
{
    pc_http_t *h = req->h;
    hconn_t *c = req->c;
    if (c != NULL) {
        c->req = NULL;
        send_answer(c, status, content_type, body, len, req->head);
    }
    free(req);
    h->reqs--;
    maybe_done(h);
}

/* ---- reading ---------------------------------------------------------------- */

static int on_url(http_parser *p, const char *at, size_t len)
{
    hconn_t *c = p->data;
    if (c->url_len + len > PC_HTTP_MAX_PATH) {
        c->status = 414;
        return 1; /* stops the parser */
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    hconn_t *c = p->data;
    if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
        c->status = 405;
        return 1;
    }
    if ((p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX)) {
        c->status = 413; /* nothing here takes a body */
        return 1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hconn_t *c = p->data;
    c->complete = 1;
    http_parser_pause(p, 1); /* one request per connection: the rest is not read */
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* The whole request is in: to the handler, or refused. */
static void dispatch(hconn_t *c)
{
    pc_http_t *h = c->h;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
        refuse(c, 400);
        return;
    }
    pc_http_req_t *req = calloc(1, sizeof *req);
    if (req == NULL) {
        conn_close(c);
        return;
    }
    req->h = h;
    req->c = c;
    req->head = c->parser.method == HTTP_HEAD;
    c->req = req;
    h->reqs++;
    h->counters.requests++;
    /* The path in place: what follows it (a query) is dropped. */
    c->url[u.field_data[UF_PATH].off + u.field_data[UF_PATH].len] = '\0';
    h->handler(h->arg, req, c->url + u.field_data[UF_PATH].off);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    hconn_t *c = hd->data;
    (void)suggested;
    *buf = uv_buf_init(c->in, sizeof c->in);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hconn_t *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) { /* EOF before a whole request, or an error */
        conn_close(c);
        return;
    }
    c->head_bytes += (size_t)nread;
    if (c->head_bytes > PC_HTTP_MAX_HEAD) { /* however the request ends */
        uv_read_stop(s);
        refuse(c, 431);
        return;
    }
    http_parser_execute(&c->parser, &settings, buf->base, (size_t)nread);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->complete || c->status != 0 || (e != HPE_OK && e != HPE_PAUSED)) {
        uv_read_stop(s);
        if (c->status != 0)
            refuse(c, c->status);
        else if (c->complete)
            dispatch(c);
        else
            refuse(c, 400);
    }
}

/* ---- accepting -------------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status)
{
    pc_http_t *h = server->data;
    if (status < 0)
        return;
    hconn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return; /* the connection waits in the backlog */
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    c->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (h->nconns > h->max_conns) {
        h->counters.refused++;
        conn_close(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_timer_start(&c->timer, on_timeout, h->timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

int pc_http_new(uv_loop_t *loop, const struct sockaddr *addr, unsigned max_conns,
                uint64_t timeout_ms, pc_http_handler_fn handler, void *arg, pc_http_t **out)
{
    *out = NULL;
    pc_http_t *h = calloc(1, sizeof *h);
    if (h == NULL)
        return UV_ENOMEM;
    h->loop = loop;
    h->handler = handler;
    h->arg = arg;
    h->max_conns = max_conns > 0 ? max_conns : 1;
    h->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->listening = 1;
    int rc = uv_tcp_bind(&h->listener, addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
    if (rc != 0) {
        pc_http_close(h, NULL, NULL);
        return rc;
    }
    *out = h;
    return 0;
}

int pc_http_port(const pc_http_t *h)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
}

void pc_http_counters(const pc_http_t *h, pc_http_counters_t *out)
{
    *out = h->counters;
}

static void on_listener_closed(uv_handle_t *hd)
{
    pc_http_t *h = hd->data;
    h->listening = 0;
    maybe_done(h);
}

void pc_http_close(pc_http_t *h, void (*done)(void *arg), void *arg)
{
    if (h == NULL) {
        if (done != NULL)
            done(arg);
        return;
    }
    h->closing = 1;
    h->done = done;
    h->done_arg = arg;
    for (hconn_t *c = h->conns; c != NULL; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
}
