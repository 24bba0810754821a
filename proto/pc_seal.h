/*
 * pc_seal.h -- the cluster key: a keyring, sealed messages, and the replay
 * filter that guard node-to-node traffic (gossip datagrams and peer frames).
 *
 * Pure apart from libsodium's random numbers and pc_keyring_load_file's
 * one read of a file: times come in as parameters, so tests need no sleeps.
 * docs/SECURITY.md is the normative description; this is the C contract.
 *
 * Sealed message (all integers big-endian):
 *   magic    1  0xC1 -- the one byte msgpack never uses, so a sealed frame
 *                body can never be mistaken for a plain request
 *   version  1  PC_SEAL_VERSION
 *   kind     1  enum pc_seal_kind (a gossip datagram cannot be replayed as
 *                a peer frame, nor a reply as a request)
 *   key id   4  pc_seal_key_id() of the key that sealed it
 *   nonce   24  random, fresh for every message (XChaCha20)
 *   ciphertext of: stream 8 | seq 8 | ts_ms 8 | payload
 *   tag     16  Poly1305
 * The 7 header bytes are the associated data. Overhead: PC_SEAL_OVERHEAD.
 *
 * stream is a random 64-bit id a sender picks per sending context (one per
 * gossip socket, one per TCP connection and direction); seq counts the
 * messages of that stream from 1; ts_ms is the sender's wall clock.
 *
 * Key file: text; one key per line as 64 hex digits; blank lines and lines
 * starting with '#' are ignored; the first key is the primary (it seals),
 * the others only open. At most PC_KEYRING_MAX keys, no duplicates.
 *
 * Thread rules: a keyring is immutable after it is built (share it read-
 * only; swap the pointer to rotate). A stream and a replay filter belong
 * to one thread at a time. Every function is reentrant otherwise.
 * Requires sodium_init() to have been called (pc_seal_init does it).
 */
#ifndef PC_SEAL_H
#define PC_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "pc_buf.h"
#include "pc_error.h"

#define PC_SEAL_KEYBYTES 32
#define PC_SEAL_MAGIC 0xC1
#define PC_SEAL_VERSION 1
#define PC_SEAL_HEADER 7  /* magic, version, kind, key id */
#define PC_SEAL_NONCE 24
#define PC_SEAL_INNER 24  /* stream, seq, ts_ms */
#define PC_SEAL_TAG 16
#define PC_SEAL_OVERHEAD (PC_SEAL_HEADER + PC_SEAL_NONCE + PC_SEAL_INNER + PC_SEAL_TAG)
#define PC_KEYRING_MAX 16

enum pc_seal_kind {
    PC_SEAL_GOSSIP = 1,    /* a UDP gossip datagram */
    PC_SEAL_PEER_REQ = 2,  /* a frame body a node sends to a peer */
    PC_SEAL_PEER_RESP = 3, /* a frame body a node answers a peer with */
};

/* Initialises libsodium. 0 or PC_EINTERNAL. Idempotent. */
int pc_seal_init(void);

/* The id of a key: the first 4 bytes (big-endian) of BLAKE2b-256 keyed by
 * nothing over "peercache key id" || key. Public: it is logged, shown by
 * the CLI and sent in clear; it tells nothing about the key. */
uint32_t pc_seal_key_id(const uint8_t key[PC_SEAL_KEYBYTES]);

/* ---- keyring ---------------------------------------------------------- */

typedef struct pc_keyring pc_keyring_t;

/* Parses key-file text (need not be NUL-terminated). 0, PC_EINVAL (a bad
 * line, no key at all, a duplicate -- the same key, or another key with
 * the same id --, more than PC_KEYRING_MAX; err names the line and never
 * quotes it), PC_ENOMEM. *out is NULL on error. Blanks around a key are
 * allowed (CRLF files parse). The keys live in memory locked, read-only
 * and zeroed on free (sodium_malloc). err may be NULL. */
int pc_keyring_parse(const char *text, size_t len, pc_keyring_t **out, char *err, size_t errlen);

/* Reads and parses a key file, following symlinks; the checks are made
 * on the file actually opened. PC_EPERM (err says "chmod 600") if group
 * or others have any access to it (mode & 077 != 0); PC_EIO if it cannot
 * be opened or read (err has strerror) or is not a regular file (a
 * directory, a FIFO); PC_EINVAL if it is over 64 KiB. Otherwise as
 * pc_keyring_parse, with err prefixed by the path. */
int pc_keyring_load_file(const char *path, pc_keyring_t **out, char *err, size_t errlen);

/* Reads a whole secret file (a key file, a token file) of at most 64 KiB
 * into *text (malloc'd, NUL-terminated, *len bytes; the caller zeroes and
 * frees it), with the same rules as pc_keyring_load_file: PC_EPERM if
 * group or others have any access, PC_EIO (unreadable, not a regular
 * file), PC_EINVAL (too big), PC_ENOMEM. `what` names the file in err
 * ("token file"). */
int pc_secret_file_read(const char *path, const char *what, char **text, size_t *len,
                        char *err, size_t errlen);

/* The first line of a secret file (a client token): read as by
 * pc_secret_file_read, copied to out (cap bytes, NUL-terminated) without
 * its line end. PC_EINVAL (err says why) if that line is empty or does not
 * fit; otherwise as pc_secret_file_read. The file's copy is zeroed. */
int pc_secret_file_line(const char *path, const char *what, char *out, size_t cap, char *err,
                        size_t errlen);

/* Zeroes and frees; NULL-safe; sets *kr to NULL. */
void pc_keyring_free(pc_keyring_t **kr);

/* Number of keys (>= 1 for a parsed keyring). */
size_t pc_keyring_count(const pc_keyring_t *kr);
/* Id of key i (0 = primary); 0 if i is out of range. */
uint32_t pc_keyring_id(const pc_keyring_t *kr, size_t i);

/* Writes a fresh random key as one key-file line: 64 lowercase hex digits
 * and '\n', NUL-terminated (line must hold 66 bytes). Its id in *id. */
void pc_keyring_new_key_line(char line[66], uint32_t *id);

/* ---- sealing ------------------------------------------------------------ */

typedef struct pc_seal_stream {
    uint64_t id;  /* random, never 0 */
    uint64_t seq; /* last sequence number used */
} pc_seal_stream_t;

/* Picks a random stream id; seq = 0. */
void pc_seal_stream_init(pc_seal_stream_t *st);

/* Appends the sealed form of payload[0..len) to *out, sealed with the
 * primary key, stamped with ++st->seq and now_ms (wall clock). payload
 * must not point into *out (growing it may move it). 0, PC_ENOMEM,
 * PC_ETOOBIG (out's cap). On error out->len and st->seq are unchanged. */
int pc_seal(const pc_keyring_t *kr, pc_seal_stream_t *st, uint8_t kind, uint64_t now_ms,
            const uint8_t *payload, size_t len, pc_buf_t *out);

/* Seals, in place, the frame that occupies out->data[start..out->len): a
 * 4-byte big-endian length prefix and its body. Afterwards the same range
 * (now PC_SEAL_OVERHEAD bytes longer) holds one frame whose body is the
 * sealed body. For a server that encoded a reply straight into its output
 * buffer. 0, PC_ENOMEM, PC_ETOOBIG (out's cap), PC_EINVAL (the range is
 * not one whole frame). On error the frame is left as it was. */
int pc_seal_frame(const pc_keyring_t *kr, pc_seal_stream_t *st, uint8_t kind, uint64_t now_ms,
                  pc_buf_t *out, size_t start);

typedef struct pc_seal_opened {
    uint8_t kind;
    uint32_t key_id;
    uint64_t stream;
    uint64_t seq;
    uint64_t ts_ms;
    uint8_t *payload; /* points into the message that was opened */
    size_t len;
} pc_seal_opened_t;

/* 1 if msg starts like a sealed message (magic byte), else 0. */
int pc_seal_is_sealed(const uint8_t *msg, size_t len);

/*
 * Opens msg[0..len) in place (the plaintext overwrites the ciphertext).
 *   0           *out filled; out->payload points into msg.
 *   PC_ENOMEM   no memory to stage a message over 2 KiB (libsodium does
 *               not document in-place AEAD, so this module never asks
 *               for it); msg is untouched.
 *   PC_EPROTO   not a sealed message: no magic, unknown version, too short.
 *   PC_ENOKEY   no key in the ring has the message's key id.
 *   PC_EAUTH    the tag does not verify (tampered, or a different key with
 *               a colliding id); msg's bytes are then unspecified.
 * The kind is not checked here: the caller compares out->kind.
 */
int pc_seal_open(const pc_keyring_t *kr, uint8_t *msg, size_t len, pc_seal_opened_t *out);

/* ---- replay filter -------------------------------------------------------- */

/*
 * Remembers, per stream, the highest sequence number seen and which of the
 * PC_REPLAY_BITS below it were seen. A message is fresh when its ts_ms is
 * within window_ms of now_ms (either side, bounds included: clocks
 * differ), and its (stream, seq) was not seen and is not more than
 * PC_REPLAY_BITS below the stream's highest. A stream is forgotten once
 * now_ms passes the newest ts_ms it accepted plus window_ms: from then on
 * any copy of its messages is too old. For a sender whose clock agrees
 * with ours that is window_ms of silence; for one whose clock runs ahead,
 * up to twice that. Memory is reserved at pc_replay_new: max_streams *
 * ~180 bytes, of which only the slots of streams seen so far are ever
 * touched (so resident).
 */
#define PC_REPLAY_BITS 1024

typedef struct pc_replay pc_replay_t;

/* window_ms > 0, 0 < max_streams < 2^32 - 1. 0, PC_EINVAL, PC_ENOMEM. */
int pc_replay_new(uint64_t window_ms, size_t max_streams, pc_replay_t **out);
void pc_replay_free(pc_replay_t **r);

/*
 * 0: fresh, and now recorded as seen. PC_ESTALE: ts_ms outside the window,
 * or seq 0, or too far below the stream's highest. PC_EREPLAY: seen before.
 * PC_EBUSY: max_streams live streams already (nothing recorded; the caller
 * drops the message). Only call it for messages that opened (authentic),
 * so only key holders can create streams.
 */
int pc_replay_check(pc_replay_t *r, uint64_t stream, uint64_t seq, uint64_t ts_ms,
                    uint64_t now_ms);

/* Streams remembered now (for STATS and tests). */
size_t pc_replay_streams(const pc_replay_t *r);

#endif
