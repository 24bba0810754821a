/*
 * pc_resp.h -- the Redis protocol (RESP2, and RESP3's reply types) as the
 * node's Redis-compatible front door will speak it: commands parsed from
 * a client's bytes, replies encoded. Pure: no I/O, no allocation but the
 * parser's argument array and the caller's output buffer.
 *
 * Commands come in the two forms Redis reads:
 *  - a multibulk array, what every client library and redis-cli send:
 *      *<argc>\r\n then argc times $<len>\r\n<len bytes>\r\n
 *  - an inline command, one line of arguments separated by spaces or
 *    tabs, for a person typing at telnet or nc: PING\r\n (a bare \n ends
 *    it too). Quotes are not interpreted: "a b" is two arguments. Each
 *    argument is held to max_bulk as a bulk would be.
 *
 * A command is parsed from the start of what has been read, and again
 * from the start when more arrives (a bulk's bytes are skipped by its
 * length, not scanned, so a large value costs no more than its headers).
 *
 * Errors: 0 / 1 as documented; PC_EPROTO for bytes that are not a command
 * (pc_resp_why says what, in the words Redis uses: the connection should
 * get "-ERR Protocol error: ..." and be closed, as Redis does);
 * PC_ETOOBIG for a count or length over the limits (the same); PC_ENOMEM.
 *
 * Thread rules: a parser belongs to one connection's thread.
 */
#ifndef PC_RESP_H
#define PC_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_proto.h"

typedef struct pc_resp_limits {
    uint32_t max_args;   /* arguments in one command */
    uint32_t max_bulk;   /* bytes of one argument */
    uint32_t max_inline; /* bytes of an inline command's line */
} pc_resp_limits_t;

/* Redis' own: 1,048,576 arguments... this node takes fewer (an MGET takes
 * at most max_mget_keys), so the defaults are smaller. */
#define PC_RESP_DEFAULT_MAX_ARGS 4096
#define PC_RESP_DEFAULT_MAX_BULK (1024u * 1024u + 1024u)
#define PC_RESP_DEFAULT_MAX_INLINE (64u * 1024u)

typedef struct pc_resp_parser {
    pc_resp_limits_t lim;
    pc_bytes_t *argv; /* grown to the largest command seen */
    uint32_t cap;
    char why[128];
} pc_resp_parser_t;

/* One command: argv[0] is its name. Slices point into the parsed bytes. */
typedef struct pc_resp_cmd {
    uint32_t argc;
    const pc_bytes_t *argv;
} pc_resp_cmd_t;

/* lim NULL = the defaults. */
void pc_resp_parser_init(pc_resp_parser_t *p, const pc_resp_limits_t *lim);
void pc_resp_parser_free(pc_resp_parser_t *p);

/*
 * Parses the command at the start of buf[0..len). 1: a whole command, in
 * *out (its slices valid while buf is), *used bytes long. 0: not whole
 * yet (*used = 0). An empty inline line is skipped: 1 with argc = 0.
 * Else an error code (see the top).
 */
int pc_resp_parse(pc_resp_parser_t *p, const uint8_t *buf, size_t len, pc_resp_cmd_t *out,
                  size_t *used);

/* Why the last parse failed ("" otherwise). */
const char *pc_resp_why(const pc_resp_parser_t *p);

/*
 * Replies, appended to b. 0 or PC_ENOMEM (b may hold part of one then).
 * `resp3`: the connection said HELLO 3, so null, maps, booleans and
 * doubles have their own types; in RESP2 a null is $-1 (or *-1 for an
 * array), a map an array of 2n, a boolean an integer, a double a bulk.
 */
int pc_resp_simple(pc_buf_t *b, const char *s);          /* +s */
int pc_resp_error(pc_buf_t *b, const char *s);           /* -s; s like "ERR ..." */
int pc_resp_int(pc_buf_t *b, int64_t v);                 /* :v */
int pc_resp_bulk(pc_buf_t *b, const void *p, size_t n);  /* $n ... */
int pc_resp_bulk_int(pc_buf_t *b, int64_t v);            /* v in decimal, as a bulk */
int pc_resp_null(pc_buf_t *b, int resp3);                /* _ or $-1 */
int pc_resp_null_array(pc_buf_t *b, int resp3);          /* _ or *-1 */
int pc_resp_array(pc_buf_t *b, size_t n);                /* *n, then n replies */
int pc_resp_map(pc_buf_t *b, size_t n, int resp3);       /* %n or *2n, then 2n replies */
int pc_resp_bool(pc_buf_t *b, int v, int resp3);         /* #t / #f, or :1 / :0 */
int pc_resp_double(pc_buf_t *b, double v, int resp3);    /* ,v, or a bulk */

#endif
