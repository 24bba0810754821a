/*
 * pc_proto.h -- the peercache wire format: frames, messages, limits.
 *
 * Pure: no sockets, no clocks, no globals. docs/PROTOCOL.md is the
 * normative description of the bytes; this header is the C contract.
 *
 * Frame  = 4-byte big-endian body length L (1 <= L <= max_frame)
 *          followed by L bytes holding exactly one msgpack value.
 * Request  body = array [op, id, args...]
 * Response body = array [op, id, status, results...]
 *
 * Zero copy: decoded messages hold pc_bytes_t slices that point into the
 * body that was decoded (and, for arrays such as MGET keys, into scratch
 * memory owned by the pc_proto_decoder_t). They are valid until the next
 * decode on the same decoder, or until the body's buffer changes, whichever
 * comes first. Copy what must live longer.
 *
 * Bounds: before msgpack-c sees a body, the decoder walks it with the
 * rules of pc_proto_validate() -- every container count fits in the bytes
 * that remain, nesting is at most PC_PROTO_MAX_DEPTH -- so no header can
 * make it allocate more than a small multiple of the frame size. The same
 * walk holds the body to its op's budget: the elements the op defines plus
 * PC_PROTO_SLACK_ELEMENTS, and the msgpack values those can hold plus
 * PC_PROTO_SLACK_VALUES (lists counted from their headers, up to their
 * limits). msgpack-c builds an object per value (~100 ns each), so this is
 * what bounds a decode: a 1.1 MiB body of one-byte nils would take ~100 ms
 * to unpack; now the walk stops at the first value past the budget, and
 * no request at default limits is unpacked into more than 8,214 objects
 * (a REPLICATE of 1,024 entries; a full MGET 1,044, any other op 25).
 * Within the budget the walk reads each value's header once and skips
 * str/bin payloads, so its cost is bounded per value and per byte alike.
 *
 * Thread rules: a reader or decoder belongs to one thread at a time;
 * encoders and pc_proto_validate are reentrant.
 */
#ifndef PC_PROTO_H
#define PC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_error.h"

#define PC_PROTO_VERSION 1
#define PC_PROTO_MAX_DEPTH 4 /* deepest legal message nests 3 levels */

/*
 * Forward compatibility, bounded (PROTOCOL.md §4, §8). A receiver ignores
 * what comes after the elements its op defines, so a newer peer can add
 * optional trailing arguments; but a body may hold at most
 *   PC_PROTO_SLACK_ELEMENTS elements after the last one its op defines,
 *   PC_PROTO_SLACK_VALUES msgpack values beyond what its defined elements
 *     can hold (whatever holds them: trailing elements, their contents,
 *     or a container where a scalar belongs),
 *   PC_PROTO_ITEM_SLACK more values per item of a list of records
 *     (REPLICATE entries, MGET reply entries, CLUSTER members), so that a
 *     record can grow a field too.
 * Version 1's widest op (SET) defines 8 elements; 8 more, 16 values in
 * all, leave room for a version to double it, or to add a small map of
 * options, while 16 values cost about 2 us to unpack.
 */
#define PC_PROTO_SLACK_ELEMENTS 8u
#define PC_PROTO_SLACK_VALUES 16u
#define PC_PROTO_ITEM_SLACK 2u

/* Items in a STATS reply's map, and members in a CLUSTER reply (equal to
 * PC_GOSSIP_MAX_NODES, which bounds a node's member table). A reply with
 * more is malformed; the encoder refuses to write one (PC_EINVAL). */
#define PC_PROTO_MAX_STATS 4096u
#define PC_PROTO_MAX_MEMBERS 4096u

/*
 * The largest ttl_ms of SET and TOUCH: 2^62 ms, about 146 million years.
 * Redis refuses SET PX / PEXPIRE when now_ms + ttl overflows a signed
 * 64-bit integer (ERR invalid expire time), so a TTL from 2^63 - now up
 * was refused by the backend after the node had dropped its copy. 2^62 is
 * the round figure that stays clear of that for any clock this side of
 * the year 146,000,000, and also leaves the node's own now + ttl in range.
 * Over it: BAD_REQUEST at decode, PC_EINVAL at encode.
 */
#define PC_PROTO_MAX_TTL_MS (UINT64_C(1) << 62)

/* Operations (wire values, never renumber). */
enum pc_op {
    PC_OP_HELLO = 1,
    PC_OP_PING = 2,
    PC_OP_GET = 3,
    PC_OP_MGET = 4,
    PC_OP_SET = 5,
    PC_OP_DEL = 6,
    PC_OP_TOUCH = 7,
    PC_OP_STATS = 8,
    PC_OP_CLUSTER = 9,   /* members, their state, and the ring fingerprint */
    /* Peer operations: sent node to node (a client may send them, but has
     * no reason to). */
    PC_OP_FORWARD = 10,  /* a client request relayed to its owner */
    PC_OP_SYNC = 11,     /* membership push/pull: full state both ways */
    PC_OP_REPLICATE = 12, /* versioned entries to a replica or new owner */
};
#define PC_OP_MAX 12

/* REPLICATE modes: why entries are sent (the receiver counts them apart). */
enum pc_repl_mode {
    PC_REPL_WRITE = 0,   /* the owner's write or delete, to its replicas */
    PC_REPL_HANDOFF = 1, /* keys streamed to their new owner on a ring change */
};

/* Member states as CLUSTER reports them (the membership states). */
enum pc_member_wire_state {
    PC_WIRE_ALIVE = 0,
    PC_WIRE_SUSPECT = 1,
    PC_WIRE_DEAD = 2,
    PC_WIRE_LEFT = 3,
};

/* Statuses (wire values, never renumber). */
enum pc_status {
    PC_ST_OK = 0,
    PC_ST_NOT_FOUND = 1,
    PC_ST_EXISTS = 2,     /* NX on an existing key, or CAS version differs */
    PC_ST_NOT_STORED = 3, /* XX on a missing key */
    PC_ST_BAD_REQUEST = 4,
    PC_ST_TOO_LARGE = 5,
    PC_ST_BACKEND_UNAVAILABLE = 6,
    PC_ST_BUSY = 7,
    PC_ST_INTERNAL = 8,
    PC_ST_AUTH_REQUIRED = 9, /* send HELLO with the token first; or a peer
                                op on a connection without the cluster key */
    PC_ST_RETRY = 10,        /* the ring is changing under this request:
                                nothing was applied; refresh and retry */
};
#define PC_ST_MAX 10

/* SET conditions. */
enum pc_cond {
    PC_COND_NONE = 0,
    PC_COND_NX = 1, /* only if absent */
    PC_COND_XX = 2, /* only if present */
};

/* Op name ("GET"), or "UNKNOWN". Static storage. */
const char *pc_op_name(uint32_t op);
/* Status name ("NOT_FOUND"), or "UNKNOWN". Static storage. */
const char *pc_status_name(uint32_t status);
/* Default human message for a status. Static storage. */
const char *pc_status_message(uint32_t status);
/* Maps a wire status to a pc_err code (OK -> 0). AUTH_REQUIRED ->
 * PC_EPERM (no token, a wrong one, or a peer op without the cluster key); unknown statuses from
 * a newer peer -> PC_EINTERNAL. */
int pc_status_to_err(uint32_t status);
/* Maps a pc_err code to the wire status a server should answer with.
 * PC_EPROTO / PC_EINVAL -> BAD_REQUEST; PC_ETIMEDOUT / PC_ECONN ->
 * BACKEND_UNAVAILABLE (on a node they come from the backend); PC_ENOMEM /
 * PC_ECLOSED -> BUSY (retryable); anything unlisted -> INTERNAL. */
uint32_t pc_err_to_status(int err);

typedef struct pc_bytes {
    const uint8_t *ptr;
    uint32_t len;
} pc_bytes_t;

/* One member in a CLUSTER reply. */
typedef struct pc_cluster_member {
    pc_bytes_t name;
    pc_bytes_t addr; /* host:port of its client (and peer) listener */
    uint32_t state;  /* enum pc_member_wire_state */
    uint64_t incarnation;
    uint32_t weight;
} pc_cluster_member_t;

/* One entry of a REPLICATE request: a value, or (has_value 0) a delete. */
typedef struct pc_repl_entry {
    pc_bytes_t key;
    pc_bytes_t value;
    int has_value;
    uint32_t flags;
    uint64_t version;
    int64_t ttl_ms; /* remaining; -1 = no expiry */
} pc_repl_entry_t;

typedef struct pc_proto_limits {
    uint32_t max_frame;     /* body bytes; default 1 MiB + 128 KiB */
    uint32_t max_key;       /* default 65536 */
    uint32_t max_value;     /* default 1 MiB */
    uint32_t max_mget_keys; /* default 1024 */
} pc_proto_limits_t;

#define PC_PROTO_DEFAULT_MAX_FRAME (1024u * 1024u + 128u * 1024u)
#define PC_PROTO_DEFAULT_MAX_KEY 65536u
#define PC_PROTO_DEFAULT_MAX_VALUE (1024u * 1024u)
#define PC_PROTO_DEFAULT_MAX_MGET_KEYS 1024u

/* Fills *l with the defaults above. */
void pc_proto_limits_default(pc_proto_limits_t *l);

/*
 * Requests. Fields not used by an op are zero. On decode, optional
 * trailing arguments that are absent (or nil) decode as zero.
 */
typedef struct pc_request {
    uint32_t op;
    uint64_t id;
    pc_bytes_t key;         /* GET SET DEL TOUCH */
    pc_bytes_t value;       /* SET */
    uint64_t ttl_ms;        /* SET TOUCH; 0 = no expiry; <= PC_PROTO_MAX_TTL_MS */
    uint32_t flags;         /* SET: opaque to the server */
    uint32_t cond;          /* SET: enum pc_cond */
    uint64_t cas;           /* SET: expected version, 0 = no check */
    uint32_t proto_version; /* HELLO */
    pc_bytes_t token;       /* HELLO, optional (len 0 = none) */
    uint32_t nkeys;         /* MGET */
    const pc_bytes_t *keys; /* MGET: nkeys slices */
    uint32_t hops;          /* FORWARD: relays so far, >= 1 */
    uint64_t deadline_ms;   /* FORWARD: wall-clock ms (Unix) after which the relaying node
                               has given up; SET DEL TOUCH: the same for the client, on
                               the node's clock; 0 = none (PROTOCOL.md §5.10, §5.5) */
    pc_bytes_t body;        /* FORWARD: the relayed request body; SYNC: state */
    uint32_t mode;          /* REPLICATE: enum pc_repl_mode */
    pc_bytes_t from;        /* REPLICATE: the sending member's name */
    uint32_t nentries;      /* REPLICATE */
    const pc_repl_entry_t *entries; /* REPLICATE: nentries */
    uint8_t here;           /* GET, MGET: 1 = answer from this node, never relay a key to
                               its owner (a hedged read at a replica, PROTOCOL.md §5.3,
                               §5.4); 0 or 1. Not defined for other ops: ignored there */
} pc_request_t;

/* One value as returned by GET and by each MGET entry. */
typedef struct pc_entry {
    uint32_t status; /* MGET entries: per-key status; GET: same as reply */
    pc_bytes_t value;
    uint32_t flags;
    uint64_t version;
    int64_t ttl_ms; /* remaining; -1 = no expiry */
} pc_entry_t;

typedef struct pc_stat {
    pc_bytes_t name;
    int64_t value;
} pc_stat_t;

typedef struct pc_response {
    uint32_t op;
    uint64_t id;
    uint32_t status;
    pc_bytes_t message;        /* status != OK: human-readable reason */
    pc_entry_t entry;          /* GET */
    uint64_t version;          /* SET: version now stored */
    uint32_t proto_version;    /* HELLO */
    pc_bytes_t node_name;      /* HELLO */
    pc_bytes_t server_version; /* HELLO */
    uint64_t now_ms;           /* HELLO: the node's wall clock, Unix ms (0 = not sent; only
                                  sent with a ring fingerprint, after it) */
    uint32_t nentries;         /* MGET */
    const pc_entry_t *entries; /* MGET: nentries, in request order */
    uint32_t nstats;           /* STATS */
    const pc_stat_t *stats;    /* STATS */
    uint64_t fingerprint;      /* CLUSTER: the ring the members form */
    uint32_t replicas;         /* CLUSTER: placements per key */
    uint32_t nmembers;         /* CLUSTER */
    const pc_cluster_member_t *members; /* CLUSTER */
    pc_bytes_t body;           /* FORWARD: the owner's response body; SYNC */
    uint32_t applied;          /* REPLICATE: entries that were newer */
    /* Every response but a successful CLUSTER reply (which carries it
     * in `fingerprint`) may end with the fingerprint of the answering
     * node's ring (0 = not sent / not known), so a ring-aware client
     * notices that its ring is out of date. */
    uint64_t ring_fp;
} pc_response_t;

/* ---- message decoding ------------------------------------------------ */

/*
 * Checks that body[0..len) is exactly one msgpack value whose container
 * counts fit in the remaining bytes and whose depth is <= max_depth.
 * 0 or PC_EPROTO. No allocation.
 * Depth counts containers: a top-level array is depth 1, a scalar depth 0.
 * The check is stricter than "each count fits": at every container header
 * the sum of all elements still owed by every open container must fit in
 * the bytes left, so a valid body holds at most `len` values in total.
 * max_depth above PC_PROTO_VALIDATE_DEPTH_CAP is treated as the cap (the
 * walker keeps its stack on the C stack).
 */
#define PC_PROTO_VALIDATE_DEPTH_CAP 64
int pc_proto_validate(const uint8_t *body, size_t len, unsigned max_depth);

typedef struct pc_proto_decoder pc_proto_decoder_t;

/* Creates a decoder with a copy of *limits (NULL = defaults; a field that
 * is 0 takes its default). 0 or PC_ENOMEM. */
int pc_proto_decoder_new(const pc_proto_limits_t *limits, pc_proto_decoder_t **out);
/* Frees the decoder and sets *d to NULL. NULL-safe. */
void pc_proto_decoder_free(pc_proto_decoder_t **d);

/*
 * Decodes one request body. *out is zeroed first, so on PC_EBADREQ and
 * PC_ETOOBIG only op and id carry meaning. When several problems exist,
 * the first one met in field order decides between the two codes.
 *   0           ok.
 *   PC_EPROTO   not a request at all (bad msgpack, not an array, no id):
 *               close the connection; *out is undefined.
 *   PC_EBADREQ  well-formed frame, bad request (unknown op, wrong types,
 *               empty key, bad cond, here not 0 or 1, ttl_ms
 *               over PC_PROTO_MAX_TTL_MS, more elements or values than
 *               the op's budget):
 *               out->op and out->id are set, answer BAD_REQUEST and keep
 *               the connection.
 *   PC_ETOOBIG  key/value/MGET count over the limits: out->op and out->id
 *               are set, answer TOO_LARGE and keep the connection.
 *   PC_ENOMEM   out of memory; *out is undefined (close the connection).
 * "No id" includes an op or id that is not a non-negative integer (op
 * must fit in 32 bits), since there would be nothing to echo back.
 *
 * Budgets (see the header comment) are checked while the body is walked,
 * before any field is read, so two things come before field order: the
 * length of a list (MGET keys, REPLICATE entries) is read from its header,
 * and over max_mget_keys it is PC_ETOOBIG whatever the fields before it
 * hold; and the walk stops at the first value past the budget, so a body
 * over it is PC_EBADREQ even if bytes after that point are malformed (the
 * frame's length prefix still delimits it: the stream is in step).
 */
int pc_proto_decode_request(pc_proto_decoder_t *d, const uint8_t *body, size_t len,
                            pc_request_t *out);

/* Decodes one response body. 0, PC_EPROTO (malformed) or PC_ENOMEM.
 * Any status != OK decodes for any op (message may be absent: len 0); an
 * OK response needs a known op and all of its result fields. A reply over
 * its budget is PC_EPROTO, as is one with more than max_mget_keys MGET
 * entries, PC_PROTO_MAX_STATS stats or PC_PROTO_MAX_MEMBERS members. */
int pc_proto_decode_response(pc_proto_decoder_t *d, const uint8_t *body, size_t len,
                             pc_response_t *out);

/*
 * Why the last decode on d failed, as a short text for logs and for the
 * message of an error answer, e.g. "GET: 12 elements, at most 3 + 8
 * trailing", "MGET: 2000 keys, at most 1024", "SET: ttl_ms
 * 9223372036854775808 over the largest TTL, 4611686018427387904 ms".
 * Once op and id are known the text starts with the op's name ("op 13"
 * for one this build does not know; "... reply" for responses). "" after
 * a successful decode or before the first. Owned by the decoder: valid
 * until the next decode on d or pc_proto_decoder_free(). NULL d gives "".
 */
const char *pc_proto_decoder_why(const pc_proto_decoder_t *d);

/* ---- message encoding ------------------------------------------------ */

/*
 * Each encoder appends one whole frame (length prefix included) to *out.
 * 0, PC_ENOMEM, PC_ETOOBIG (the out buffer's cap), or PC_EINVAL (unknown
 * op). On error *out is left as it was (len and bytes; cap may have grown).
 * Requests: PC_EINVAL also for what every server rejects anyway -- an
 * empty key, an MGET with no keys, cond > 2, a GET's or MGET's here > 1,
 * a SET or TOUCH ttl_ms over PC_PROTO_MAX_TTL_MS, or a slice with len > 0
 * and a NULL ptr -- so a client fails before sending. Trailing optional
 * arguments that are 0 (SET, HELLO, here ...) are omitted from the frame.
 * Responses: status != OK encodes [op, id, status, message] for any op;
 * an empty message is replaced by pc_status_message(status). OK needs a
 * known op, and at most PC_PROTO_MAX_STATS stats or PC_PROTO_MAX_MEMBERS
 * members (else PC_EINVAL). resp->entry.status is ignored for GET.
 */
int pc_proto_encode_request(pc_buf_t *out, const pc_request_t *req);
int pc_proto_encode_response(pc_buf_t *out, const pc_response_t *resp);

/*
 * A GET hit's answer (op GET, status OK) as pc_proto_encode_response
 * encodes it, less the value's bytes: out gets the frame up to the
 * value's bin header, then what follows the value, and *value_at is the
 * offset in out where the value's resp->entry.value.len bytes belong (the
 * frame's length prefix counts them). Sending out[..value_at), the value,
 * then out[value_at..] (a writev) sends the very frame, without copying
 * the value. Errors as pc_proto_encode_response, and PC_EINVAL for any
 * other op or status.
 */
int pc_proto_encode_get_ref(pc_buf_t *out, const pc_response_t *resp, size_t *value_at);
/* Shorthand for a non-OK response with a message (NULL = default).
 * PC_EINVAL if status is OK. Any op value is accepted, so a server can
 * echo an op it does not know. */
int pc_proto_encode_error(pc_buf_t *out, uint32_t op, uint64_t id, uint32_t status,
                          const char *message);

/* Appends `body` as one whole frame: its 4-byte big-endian length, then
 * the body as it is (an answer relayed untouched). 0, PC_ENOMEM or
 * PC_ETOOBIG (over 2^32 - 1 bytes, or the buffer's cap); on error *out is
 * left as it was. */
int pc_proto_append_frame(pc_buf_t *out, const uint8_t *body, size_t len);

/*
 * Appends a FORWARD of `inner` (PROTOCOL.md §7): the request re-encoded
 * as the FORWARD's body, both under inner->id, with `hops` and
 * `deadline_ms` (0 = none). `tmp` is the
 * caller's scratch buffer for the inner frame (its contents are
 * undefined afterwards). Errors as pc_proto_encode_request; on error
 * *out is left as it was.
 */
int pc_proto_encode_forward(pc_buf_t *out, uint32_t hops, uint64_t deadline_ms,
                            const pc_request_t *inner, pc_buf_t *tmp);

/* Bytes that the fixed parts of a GET/MGET entry can take at most; lets a
 * server budget an MGET reply against max_frame before encoding. */
#define PC_PROTO_ENTRY_OVERHEAD 48

#endif
