/*
 * pc_rkey.h -- the Redis key space: where a Redis key lives in a Redis
 * Cluster, and the companion record a node keeps beside each value.
 *
 * Pure: no I/O, no clock, no globals that change. Nothing here talks to
 * Redis; pc_backend builds its commands from these answers, and the
 * tests check them against the rules below.
 *
 * Slots. Redis Cluster puts a key in slot CRC16(k) mod 16384, where CRC16
 * is the XMODEM variant (polynomial 0x1021, initial value 0, no
 * reflection, no final xor) and k is the key's hash tag if it has one:
 * the bytes between its first '{' and the first '}' after that, when
 * there is at least one byte between them; otherwise the whole key.
 * Keys that share a slot can be used together in one script or
 * transaction, which is what lets a value and its record be written
 * atomically even on a cluster.
 *
 * Tags. For every slot, pc_rkey_tag() is the shortest string over
 * [0-9A-Za-z] whose slot it is (ties: the smallest in byte order). Three
 * characters reach every slot. The table is computed once, at build
 * time, by pc_rkey_gen (node/pc_rkey_gen.c) from pc_rkey_tags_compute()
 * below, so a node pays nothing for it at start-up.
 *
 * The companion record of Redis key R (R = the node's --redis-prefix and
 * the client's key) is the Redis hash
 *
 *     "pcm:{" TAG(slot(R)) "}:" R
 *
 * Its own hash tag is TAG, so it is in R's slot whatever R contains
 * (braces included), and it is one name per R: one record, never two.
 * docs/OPERATIONS.md ("What a node keeps in Redis") has the fields and
 * the rules for writing them.
 *
 * Thread rules: every function is safe from any thread.
 */
#ifndef PC_RKEY_H
#define PC_RKEY_H

#include <stddef.h>
#include <stdint.h>

#define PC_RKEY_SLOTS 16384u
#define PC_RKEY_TAG_MAX 3u /* characters in the longest tag */

/* Bytes a companion name adds to R: "pcm:{" + TAG + "}:". */
#define PC_RKEY_COMPANION_PREFIX "pcm:"
#define PC_RKEY_COMPANION_EXTRA (sizeof PC_RKEY_COMPANION_PREFIX - 1 + 1 + PC_RKEY_TAG_MAX + 2)

/* Fields of the companion record (issue 15 adds a version, "v"). */
#define PC_RKEY_FIELD_FLAGS "f"
#define PC_RKEY_FIELD_DIGEST "d"

/* Characters of a value digest in hex (8 bytes of SipHash-2-4). */
#define PC_RKEY_DIGEST_HEX 16u

/* CRC16/XMODEM of len bytes (buf may be NULL when len is 0). */
uint16_t pc_rkey_crc16(const void *buf, size_t len);

/* The Redis Cluster slot of a key, 0..PC_RKEY_SLOTS-1, with the hash-tag
 * rule above. Keys are bytes: NULs and any other byte are fine. */
unsigned pc_rkey_slot(const void *key, size_t len);

/*
 * Fills tags[s] with the tag of every slot s (NUL-terminated, 1 to
 * PC_RKEY_TAG_MAX characters). Returns 0, or PC_EINTERNAL (pc_error.h) if
 * some slot has no tag of PC_RKEY_TAG_MAX characters or fewer, which the
 * CRC makes impossible; the build stops on it. About 240,000 CRCs: the
 * build runs it (pc_rkey_gen), and the unit test, to check the table.
 */
int pc_rkey_tags_compute(char tags[PC_RKEY_SLOTS][PC_RKEY_TAG_MAX + 1]);

/* The tag of slot (taken modulo PC_RKEY_SLOTS): static storage,
 * NUL-terminated, from the table the build generated. */
const char *pc_rkey_tag(unsigned slot);

/*
 * Writes the companion name of Redis key rkey (rlen bytes) to out, which
 * must hold rlen + PC_RKEY_COMPANION_EXTRA bytes; returns its length. No
 * NUL is written. rkey and out must not overlap.
 */
size_t pc_rkey_companion(const void *rkey, size_t rlen, uint8_t *out);

/* The digest of a value as the record's "d" field holds it: SipHash-2-4
 * of the value under the 16-byte key "peercache-digest", its 8 output
 * bytes (in the order libsodium gives them) as 16 lowercase hex
 * characters, NUL-terminated in hex[]. */
void pc_rkey_digest(const void *val, size_t vlen, char hex[PC_RKEY_DIGEST_HEX + 1]);

/*
 * The flags a companion record vouches for, given the value read from R:
 * `f` and `d` are the record's fields as Redis returned them (NULL when
 * absent). The answer is `f` only when `d` is the digest of exactly this
 * value and `f` is a decimal 0..4294967295 with no sign, spaces or leading
 * zeros; otherwise 0. So a value another program wrote over R reads as
 * flags 0, as it would have before records existed, and a damaged record
 * never yields made-up flags.
 */
uint32_t pc_rkey_record_flags(const void *val, size_t vlen, const char *f, size_t flen,
                              const char *d, size_t dlen);

#endif
