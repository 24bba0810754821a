/*
 * pc_http.h -- a small HTTP/1.1 server for operators' endpoints
 * (/metrics, /healthz, /readyz, /cluster: pc_admin.h), on one libuv loop.
 * Requests are parsed by Debian's http-parser library; this module only
 * accepts, bounds and answers.
 *
 * What it serves and how it is bounded (docs/OPERATIONS.md "HTTP
 * endpoint"):
 *  - GET and HEAD only (405 otherwise), no request body (413), a request
 *    line and headers of at most PC_HTTP_MAX_HEAD bytes (431), a path of
 *    at most PC_HTTP_MAX_PATH bytes (414); a malformed request is 400.
 *  - One request per connection: every answer says `Connection: close`
 *    and the connection closes once it is written. Scrapers and probes
 *    open a connection per request anyway, and a server that never keeps
 *    a connection idle needs no idle limit.
 *  - At most `max_conns` connections at once: one more is closed at once.
 *  - A whole request must arrive within `timeout_ms` of the connection,
 *    and its answer must be taken by the client within `timeout_ms` more;
 *    otherwise the connection is closed.
 *
 * Ownership: the server owns its connections and their requests. The
 * handler is given a request and must answer it exactly once, with
 * pc_http_reply(), at once or later on the same loop; the request stays
 * valid until then even if its client went away (the answer is then
 * dropped).
 *
 * Thread rules: everything on the loop's thread.
 *
 * Errors: libuv's negative error codes (pc_http_new), else none.
 */
#ifndef PC_HTTP_H
#define PC_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PC_HTTP_MAX_HEAD 8192
#define PC_HTTP_MAX_PATH 1024

typedef struct pc_http pc_http_t;
typedef struct pc_http_req pc_http_req_t;

/* A request's path (without the query string, which is ignored), NUL
 * terminated; valid until the request is answered. */
typedef void (*pc_http_handler_fn)(void *arg, pc_http_req_t *req, const char *path);

typedef struct pc_http_counters {
    uint64_t requests;   /* requests handed to the handler */
    uint64_t refused;    /* connections closed at once: over max_conns */
    uint64_t bad;        /* requests answered 4xx by the server itself */
    uint64_t timeouts;   /* connections closed by the timeout */
} pc_http_counters_t;

/*
 * Listens on addr (IPv4 or IPv6, port given) on `loop`. 0, or a libuv
 * error code (the address is taken, say); *out is then NULL.
 */
int pc_http_new(uv_loop_t *loop, const struct sockaddr *addr, unsigned max_conns,
                uint64_t timeout_ms, pc_http_handler_fn handler, void *arg, pc_http_t **out);

/*
 * Answers req: `status` (200, 404, 503 ...), a Content-Type, and the body
 * (copied; sent without it for HEAD). Frees req. If req's connection is
 * gone, only frees it.
 */
void pc_http_reply(pc_http_req_t *req, int status, const char *content_type, const char *body,
                   size_t len);

/* The port it listens on (useful with port 0). */
int pc_http_port(const pc_http_t *h);

void pc_http_counters(const pc_http_t *h, pc_http_counters_t *out);

/*
 * Stops listening and closes every connection; requests the handler still
 * holds stay valid until answered (their answers are dropped). The server
 * is freed once every handle has closed and every request was answered;
 * done(arg), if not NULL, is called then, on the loop.
 */
void pc_http_close(pc_http_t *h, void (*done)(void *arg), void *arg);

#endif
