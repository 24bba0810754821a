/*
 * pc_rkey.c -- companion names and records (pc_rkey.h). The slot half of
 * the module is pc_rkey_slot.c; the tag table is generated at build time
 * into pc_rkey_tags.c (node/CMakeLists.txt).
 */
#include "pc_rkey.h"

#include <string.h>

#include <sodium.h>

/* Defined in the generated pc_rkey_tags.c. */
extern const char pc_rkey_tag_table[PC_RKEY_SLOTS][PC_RKEY_TAG_MAX + 1];

const char *pc_rkey_tag(unsigned slot) { return pc_rkey_tag_table[slot & (PC_RKEY_SLOTS - 1)]; }

size_t pc_rkey_companion(const void *rkey, size_t rlen, uint8_t *out)
{
    const char *tag = pc_rkey_tag(pc_rkey_slot(rkey, rlen));
    size_t tlen = strlen(tag), n = 0;
    memcpy(out, PC_RKEY_COMPANION_PREFIX "{", sizeof PC_RKEY_COMPANION_PREFIX);
    n += sizeof PC_RKEY_COMPANION_PREFIX;
    memcpy(out + n, tag, tlen);
    n += tlen;
    memcpy(out + n, "}:", 2);
    n += 2;
    if (rlen > 0)
        memcpy(out + n, rkey, rlen);
    return n + rlen;
}

/*
 * SipHash-2-4 (libsodium's crypto_shorthash_siphash24, 8 bytes) under a
 * fixed, public key. The digest only has to tell "the bytes a node wrote"
 * from "bytes another program wrote since", not resist an attacker who
 * can write to Redis (such a writer can rewrite the record as well), so a
 * keyed hash with a known key is enough, and 64 bits keep the record
 * small. It runs on the loop thread for every SET with flags and every
 * read-through that finds a record, so speed matters for large values:
 * 0.4-0.5 ms per MiB where BLAKE2b (crypto_generichash) took 2-2.5 ms
 * (docs/OPERATIONS.md). The key and the hash are part of the record
 * format: test_rkey pins both.
 */
static const uint8_t DIGEST_KEY[crypto_shorthash_siphash24_KEYBYTES] = "peercache-digest";

void pc_rkey_digest(const void *val, size_t vlen, char hex[PC_RKEY_DIGEST_HEX + 1])
{
    uint8_t h[crypto_shorthash_siphash24_BYTES];
    _Static_assert(sizeof h * 2 == PC_RKEY_DIGEST_HEX, "digest size");
    (void)crypto_shorthash_siphash24(h, val, vlen, DIGEST_KEY);
    sodium_bin2hex(hex, PC_RKEY_DIGEST_HEX + 1, h, sizeof h);
}

/* A decimal uint32 written the way the node writes one ("%u"), or -1. */
static int64_t parse_u32(const char *s, size_t n)
{
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= UINT32_MAX ? v : -1;
}

uint32_t pc_rkey_record_flags(const void *val, size_t vlen, const char *f, size_t flen,
                              const char *d, size_t dlen)
{
    if (f == NULL || d == NULL || dlen != PC_RKEY_DIGEST_HEX)
        return 0;
    int64_t flags = parse_u32(f, flen);
    if (flags <= 0)
        return 0;
    char want[PC_RKEY_DIGEST_HEX + 1];
    pc_rkey_digest(val, vlen, want);
    return memcmp(want, d, PC_RKEY_DIGEST_HEX) == 0 ? (uint32_t)flags : 0;
}
