/*
 * pc_gossip.h -- the bytes of peercache's gossip membership protocol:
 * UDP packets (PING, ACK, membership updates...) and the full state that
 * TCP push/pull exchanges. docs/MEMBERSHIP.md describes the bytes; this
 * header is the C contract. node/pc_member is the state machine that
 * decides what to send.
 *
 * Pure: bytes in, bytes out. No sockets, clocks, randomness or globals,
 * and no crypto: sealing (AEAD) wraps the bytes this module produces and
 * is opened before they reach it.
 *
 * Packet = msgpack array [version, sender, [msg, msg, ...]]
 * State  = msgpack array [version, sender, [node, node, ...]]
 * Every msg and node is an array of scalars; nothing nests deeper than 3.
 * Receivers ignore elements past the ones they know (at every level), and
 * skip messages of an unknown type, so a later version can add fields and
 * message types without breaking this one.
 *
 * Zero copy: decoded messages and nodes hold pc_bytes_t slices into the
 * bytes that were decoded; the arrays of them are scratch memory of the
 * pc_gossip_decoder_t. Both stay valid until the next decode on the same
 * decoder, or until the input bytes change, whichever comes first.
 *
 * Bounds: a packet is at most PC_GOSSIP_MAX_PACKET bytes and
 * PC_GOSSIP_MAX_MSGS messages; a state at most PC_GOSSIP_MAX_STATE bytes
 * and PC_GOSSIP_MAX_NODES nodes. Before msgpack-c sees any byte, the
 * input passes pc_proto_validate() (honest sizes, depth <= 3); msgpack-c
 * then unpacks one message or node at a time, each at most
 * PC_GOSSIP_MAX_FIELDS scalars, so its memory is a few hundred bytes
 * whatever the input claims. The decoder's scratch arrays are bounded by
 * the count limits.
 *
 * Thread rules: a decoder or writer belongs to one thread at a time;
 * pc_gossip_encode_state is reentrant.
 */
#ifndef PC_GOSSIP_H
#define PC_GOSSIP_H

#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_error.h"
#include "pc_proto.h" /* pc_bytes_t */

#define PC_GOSSIP_VERSION 1
#define PC_GOSSIP_MAX_DEPTH 3        /* packet/state -> list -> msg/node */
#define PC_GOSSIP_MAX_NAME 255u      /* bytes in a member name */
#define PC_GOSSIP_MAX_ADDR 255u      /* bytes in a "host:port" */
#define PC_GOSSIP_MAX_PACKET 65507u  /* largest UDP payload over IPv4 */
#define PC_GOSSIP_MAX_MSGS 256u      /* messages in one packet */
#define PC_GOSSIP_MAX_FIELDS 16u     /* elements in one msg or node */
#define PC_GOSSIP_MAX_NODES 4096u    /* nodes in one state */
#define PC_GOSSIP_MAX_STATE (4u * 1024u * 1024u) /* bytes of one state */

/* Message types (wire values, never renumber). */
enum pc_gossip_type {
    PC_GOSSIP_PING = 1,     /* [1, seq, target]: answer ACK(seq) to the sender */
    PC_GOSSIP_PING_REQ = 2, /* [2, seq, target, target_gossip, nack_ms] */
    PC_GOSSIP_ACK = 3,      /* [3, seq] */
    PC_GOSSIP_NACK = 4,     /* [4, seq]: a PING_REQ's target did not answer */
    PC_GOSSIP_ALIVE = 5,    /* [5, name, incarnation, addr, gossip, weight] */
    PC_GOSSIP_SUSPECT = 6,  /* [6, name, incarnation, from] */
    PC_GOSSIP_DEAD = 7,     /* [7, name, incarnation, from] */
    PC_GOSSIP_LEFT = 8,     /* [8, name, incarnation] */
};
#define PC_GOSSIP_TYPE_MAX 8

/* Member states in a state record (wire values, never renumber). */
enum pc_gossip_state_value {
    PC_GOSSIP_ST_ALIVE = 0,
    PC_GOSSIP_ST_SUSPECT = 1,
    PC_GOSSIP_ST_DEAD = 2,
    PC_GOSSIP_ST_LEFT = 3,
};
#define PC_GOSSIP_ST_MAX 3

/* Type name ("PING_REQ"), or "UNKNOWN". Static storage. */
const char *pc_gossip_type_name(uint32_t type);

/*
 * One message. Fields a type does not use are zero / empty.
 * Text fields (name, addr, gossip, from) are 1..255 bytes with no NUL
 * byte in them (addr and gossip: PC_GOSSIP_MAX_ADDR, the others
 * PC_GOSSIP_MAX_NAME), so a receiver can copy them into C strings.
 */
typedef struct pc_gossip_msg {
    uint32_t type;        /* enum pc_gossip_type */
    uint32_t seq;         /* PING PING_REQ ACK NACK */
    uint32_t nack_ms;     /* PING_REQ: NACK if no ACK within this; 0 = never */
    uint32_t weight;      /* ALIVE */
    uint64_t incarnation; /* ALIVE SUSPECT DEAD LEFT */
    pc_bytes_t name;      /* PING PING_REQ: the target; updates: the subject */
    pc_bytes_t addr;      /* ALIVE: its TCP host:port */
    pc_bytes_t gossip;    /* ALIVE: its UDP host:port; PING_REQ: the target's */
    pc_bytes_t from;      /* SUSPECT DEAD: the member that says so */
} pc_gossip_msg_t;

typedef struct pc_gossip_packet {
    uint32_t version;
    pc_bytes_t sender;           /* the sending member's name */
    uint32_t nmsgs;
    const pc_gossip_msg_t *msgs; /* known types only, in packet order */
    uint32_t skipped;            /* messages of an unknown type */
} pc_gossip_packet_t;

/* One member in a full state. */
typedef struct pc_gossip_node {
    pc_bytes_t name;
    pc_bytes_t addr;
    pc_bytes_t gossip;
    uint32_t weight;
    uint32_t state; /* enum pc_gossip_state_value */
    uint64_t incarnation;
} pc_gossip_node_t;

typedef struct pc_gossip_state {
    uint32_t version;
    pc_bytes_t sender;
    uint32_t nnodes;
    const pc_gossip_node_t *nodes;
    uint32_t skipped; /* nodes with a state value newer than this version */
} pc_gossip_state_t;

/* ---- decoding -------------------------------------------------------- */

typedef struct pc_gossip_decoder pc_gossip_decoder_t;

/* 0 or PC_ENOMEM. */
int pc_gossip_decoder_new(pc_gossip_decoder_t **out);
/* Frees the decoder and sets *d to NULL. NULL-safe. */
void pc_gossip_decoder_free(pc_gossip_decoder_t **d);

/*
 * Decodes one packet. *out is zeroed first and left zeroed on error.
 *   0           ok (nmsgs may be 0).
 *   PC_EPROTO   malformed: not msgpack, dishonest sizes, nested deeper
 *               than 3, version 0, a missing or mistyped field, a text
 *               field empty / too long / holding a NUL.
 *   PC_ETOOBIG  len over PC_GOSSIP_MAX_PACKET or more than
 *               PC_GOSSIP_MAX_MSGS messages.
 *   PC_ENOMEM   out of memory.
 * Any version >= 1 is accepted: the layout above is fixed for all.
 */
int pc_gossip_decode_packet(pc_gossip_decoder_t *d, const uint8_t *p, size_t len,
                            pc_gossip_packet_t *out);

/* Decodes one full state, same rules and codes (PC_ETOOBIG: over
 * PC_GOSSIP_MAX_STATE bytes or PC_GOSSIP_MAX_NODES nodes). A node whose
 * state value is above PC_GOSSIP_ST_MAX is skipped and counted. */
int pc_gossip_decode_state(pc_gossip_decoder_t *d, const uint8_t *p, size_t len,
                           pc_gossip_state_t *out);

/* ---- encoding -------------------------------------------------------- */

/*
 * Builds one packet in place, message by message, under a byte limit: the
 * state machine adds its own message(s), then as many queued updates as
 * fit. Usage:
 *     pc_gossip_writer_begin(&w, out, sender, limit);
 *     pc_gossip_writer_add(&w, &msg)...;   PC_ETOOBIG = "does not fit"
 *     pc_gossip_writer_end(&w);
 * The packet occupies out->data[start, out->len) where start is out->len
 * at begin(). The message list is always written as an array 16 so its
 * count can be filled in at end(); receivers accept any array format.
 * The writer holds `out` until end() or abort(); nothing else may append
 * to it in between.
 */
typedef struct pc_gossip_writer {
    pc_buf_t *out;
    size_t start;    /* packet's first byte in out */
    size_t count_at; /* where the 2-byte message count goes */
    size_t limit;    /* max packet bytes */
    uint32_t n;      /* messages added */
} pc_gossip_writer_t;

/* Writes the header. limit 0 = PC_GOSSIP_MAX_PACKET (larger is clamped to
 * it). 0, PC_EINVAL (sender not a valid name), PC_ETOOBIG (the header
 * alone passes limit, or out's cap), PC_ENOMEM. On error out is unchanged
 * and the writer must not be used. */
int pc_gossip_writer_begin(pc_gossip_writer_t *w, pc_buf_t *out, pc_bytes_t sender,
                           size_t limit);

/* Appends one message if it fits. 0; PC_ETOOBIG (it would pass the limit
 * or out's cap, or PC_GOSSIP_MAX_MSGS are in already); PC_EINVAL (unknown
 * type, or a text field the decoder would reject); PC_ENOMEM. On any error
 * nothing was added and the writer stays usable. */
int pc_gossip_writer_add(pc_gossip_writer_t *w, const pc_gossip_msg_t *m);

/* Messages added so far, and bytes of the packet so far. */
uint32_t pc_gossip_writer_count(const pc_gossip_writer_t *w);
size_t pc_gossip_writer_size(const pc_gossip_writer_t *w);

/* Fills in the count; the packet is complete. Returns its size in bytes. */
size_t pc_gossip_writer_end(pc_gossip_writer_t *w);

/* Removes the packet from out (out->len goes back to start). */
void pc_gossip_writer_abort(pc_gossip_writer_t *w);

/* Appends one whole state. 0, PC_EINVAL (NULL, bad sender, a node with a
 * bad text field or a state above PC_GOSSIP_ST_MAX), PC_ETOOBIG (n over
 * PC_GOSSIP_MAX_NODES, the result over PC_GOSSIP_MAX_STATE, or out's cap),
 * PC_ENOMEM. On error out is left as it was. */
int pc_gossip_encode_state(pc_buf_t *out, pc_bytes_t sender, const pc_gossip_node_t *nodes,
                           size_t n);

#endif
