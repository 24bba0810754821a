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
 * The first 8 bytes of BLAKE2b's shortest output (crypto_generichash_
 * BYTES_MIN, 16 bytes; libsodium documents nothing shorter). It only has
 * to tell "the bytes a node wrote" from "bytes another program wrote
 * since", not resist an attacker who can write to Redis (such a writer
 * can rewrite the record as well), so 64 bits are plenty and keep the
 * record small.
 */
void pc_rkey_digest(const void *val, size_t vlen, char hex[PC_RKEY_DIGEST_HEX + 1])
{
    uint8_t h[crypto_generichash_BYTES_MIN];
    _Static_assert(sizeof h >= PC_RKEY_DIGEST_HEX / 2, "digest longer than the hash");
    (void)crypto_generichash(h, sizeof h, val, vlen, NULL, 0);
    sodium_bin2hex(hex, PC_RKEY_DIGEST_HEX + 1, h, PC_RKEY_DIGEST_HEX / 2);
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
