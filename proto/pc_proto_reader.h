/*
 * pc_proto_reader.h -- the stream frame reader: bytes in, in any
 * chunking, whole frame bodies out, and a look ahead over a pipelined
 * batch. Part of the proto module (library pc_proto); pc_proto.h has the
 * rest of its contract and describes the frames.
 *
 * Pure: no sockets, no clocks, no globals. Thread rules: a reader
 * belongs to one thread at a time; pc_proto_peek_get_key is reentrant.
 */
#ifndef PC_PROTO_READER_H
#define PC_PROTO_READER_H

#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_proto.h" /* pc_bytes_t, PC_PROTO_DEFAULT_MAX_FRAME */

/* ---- streaming frame reader ----------------------------------------- */

/*
 * Collects bytes in any chunking and yields whole frame bodies.
 * Usage: reserve() space, read into it, commit() what was read, then call
 * next() until it returns 0. A body returned by next() stays valid until
 * the next reserve(), feed() or free() on the reader.
 */
/* How much a reader asks for per read when the caller passes want == 0, and
 * the slack above one whole frame that its buffer may hold. */
#define PC_PROTO_READ_CHUNK 65536u

typedef struct pc_proto_reader {
    pc_buf_t buf;       /* buffered bytes */
    size_t off;         /* start of the first unconsumed frame (in lent or buf) */
    uint32_t max_frame; /* largest body accepted */
    const uint8_t *lent; /* pc_proto_reader_lend: the caller's bytes, or NULL */
    size_t lent_len;
    int unframed; /* pc_proto_reader_unframed: a byte stream, not frames */
} pc_proto_reader_t;

/* No allocation. max_frame 0 = PC_PROTO_DEFAULT_MAX_FRAME. The buffer is
 * capped at max_frame + 4 + PC_PROTO_READ_CHUNK bytes, and is released
 * (not kept at its high-water mark) whenever reserve() finds it empty and
 * larger than 4 * PC_PROTO_READ_CHUNK, so idle connections stay small. */
void pc_proto_reader_init(pc_proto_reader_t *r, uint32_t max_frame);
/* Frees the buffer (and forgets lent bytes without keeping them). The
 * reader stays usable, empty, with its max_frame and counter. */
void pc_proto_reader_free(pc_proto_reader_t *r);
/* Counts the buffer's allocation in *acct (pc_buf_set_account). */
void pc_proto_reader_account(pc_proto_reader_t *r, size_t *acct);
/* Gives at least min(want, room) writable bytes at *p (*avail of them).
 * While the rest of a partial frame is at least want, the buffer grows no
 * further than that frame's end. 
 * 0, PC_ENOMEM, or PC_ETOOBIG if no room is left (cannot happen while
 * next() is drained, because the buffer holds one max frame plus `want`). */
int pc_proto_reader_reserve(pc_proto_reader_t *r, size_t want, uint8_t **p, size_t *avail);
void pc_proto_reader_commit(pc_proto_reader_t *r, size_t n);
/* Compacts, then appends all n bytes, or none: PC_ETOOBIG if they do not
 * fit in the buffer's cap (drain next() between feeds), PC_ENOMEM. For
 * tests and the blocking client. */
int pc_proto_reader_feed(pc_proto_reader_t *r, const void *p, size_t n);
/* 1: a frame, *body and *len set. 0: need more bytes. PC_ETOOBIG: the length
 * prefix is over max_frame. PC_EPROTO: the length prefix is 0. After an
 * error the reader is unusable (close the connection). The error is seen
 * as soon as the 4 prefix bytes are in, before any of the body.
 * next() never moves or frees memory, so every body it returned since the
 * last reserve()/feed() stays valid: a server may decode a whole batch of
 * pipelined requests before reading again. */
int pc_proto_reader_next(pc_proto_reader_t *r, const uint8_t **body, uint32_t *len);
/* Bytes buffered and not yet returned by next(). */
size_t pc_proto_reader_pending(const pc_proto_reader_t *r);
/* Bytes still missing from the first frame next() has not returned: the
 * rest of its length prefix, or of its body. 0 when nothing is pending,
 * when next() has a whole frame to return, and when the prefix is one
 * next() rejects. So pending() > 0 with missing() > 0 is a partial frame,
 * and missing() is how much a read needs to complete it. */
size_t pc_proto_reader_missing(const pc_proto_reader_t *r);

/*
 * Lending: a caller that read bytes into memory of its own (say one read
 * buffer shared by many connections, so that idle ones hold none) lets
 * next() return frames straight from there, without a copy:
 *   lend(r, p, n)   only while pending() == 0, else PC_EINVAL. The
 *                   reader's own (empty) buffer is released.
 *   next() ...      bodies point into p, valid until the caller reuses p.
 *   keep(r)         before p is reused: copies what next() did not return
 *                   (a partial frame, or frames not taken yet) into the
 *                   reader's own buffer and forgets p. 0 (also when
 *                   nothing is lent), PC_ENOMEM or PC_ETOOBIG (more than
 *                   the buffer's cap); on error those bytes are lost and
 *                   the reader is empty: close the connection.
 * reserve() and feed() keep() first; free() forgets lent bytes. So the
 * reader never writes to, moves or frees lent memory.
 */
int pc_proto_reader_lend(pc_proto_reader_t *r, const uint8_t *p, size_t n);
int pc_proto_reader_keep(pc_proto_reader_t *r);

/*
 * Unframed use: the reader's buffering (reserve, commit, lend, keep, its
 * cap) for a stream that another parser splits -- the Redis protocol of
 * the node's front door. After unframed(), next() is not called and
 * missing() is 0; the parser looks at peek() and takes what it parsed
 * with skip() (bytes stay valid as next()'s bodies do). A command must fit
 * the buffer's cap as a frame must.
 */
void pc_proto_reader_unframed(pc_proto_reader_t *r);
/* The bodies of the whole frames buffered after the next one to be read,
 * that one included, without reading them: up to max, in order, into
 * out; returns how many. Stops at a frame not yet whole or one next()
 * would refuse. 0 on an unframed reader. For looking ahead only (a
 * prefetch hint): next() still returns each of them. */
size_t pc_proto_reader_ahead(const pc_proto_reader_t *r, pc_bytes_t *out, size_t max);

/* The key of a GET request, from the head of its body alone
 * ([op = GET, id, key, ...], the key a bin or str of up to 65,535 bytes):
 * 1 and *key pointing into body; 0 for anything else. Reads no further
 * than the key and checks nothing else: the decoder judges the request
 * when it is served. Pure, and far cheaper than decoding. */
int pc_proto_peek_get_key(const uint8_t *body, size_t len, pc_bytes_t *key);

/* The bytes not yet skipped: *p, pending() of them. */
const uint8_t *pc_proto_reader_peek(const pc_proto_reader_t *r);
/* Consumes n of them (n <= pending()). */
void pc_proto_reader_skip(pc_proto_reader_t *r, size_t n);
/* The most bytes the reader buffers (one whole frame or command and a
 * read's worth). */
size_t pc_proto_reader_cap(const pc_proto_reader_t *r);

#endif
