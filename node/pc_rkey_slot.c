/*
 * pc_rkey_slot.c -- where a Redis key lives: CRC16, slots, and the search
 * for each slot's tag (pc_rkey.h).
 *
 * This half of the module needs nothing but libc, because the build
 * compiles it a second time into pc_rkey_gen, the program that writes the
 * tag table; the other half (pc_rkey.c) reads that table.
 */
#include "pc_rkey.h"

#include <string.h>

#include "pc_error.h"

/*
 * Bit by bit, most significant bit first. A lookup table would be about
 * four times faster, but keys are short (a 250-byte key costs about two
 * microseconds) and this is the form that can be checked against the
 * definition at a glance.
 */
uint16_t pc_rkey_crc16(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

unsigned pc_rkey_slot(const void *key, size_t len)
{
    const uint8_t *k = key;
    const uint8_t *open = len ? memchr(k, '{', len) : NULL;
    if (open != NULL) {
        size_t from = (size_t)(open - k) + 1;
        const uint8_t *close = from < len ? memchr(k + from, '}', len - from) : NULL;
        if (close != NULL && close > k + from)
            return pc_rkey_crc16(k + from, (size_t)(close - (k + from))) & (PC_RKEY_SLOTS - 1);
    }
    return pc_rkey_crc16(k, len) & (PC_RKEY_SLOTS - 1);
}

/* In byte order, so "shortest, then smallest" is the order we visit. */
static const char ALPHABET[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/*
 * Every string of 1, 2, then 3 characters, each length in byte order:
 * the first string to reach a slot is its tag. One pass over all 242,234
 * candidates instead of a search per slot.
 */
int pc_rkey_tags_compute(char tags[PC_RKEY_SLOTS][PC_RKEY_TAG_MAX + 1])
{
    enum { N = sizeof ALPHABET - 1 };
    size_t filled = 0;
    memset(tags, 0, (size_t)PC_RKEY_SLOTS * sizeof tags[0]);
    for (unsigned len = 1; len <= PC_RKEY_TAG_MAX && filled < PC_RKEY_SLOTS; len++) {
        unsigned idx[PC_RKEY_TAG_MAX] = {0};
        for (;;) {
            char s[PC_RKEY_TAG_MAX + 1] = {0};
            for (unsigned i = 0; i < len; i++)
                s[i] = ALPHABET[idx[i]];
            unsigned slot = pc_rkey_crc16(s, len) & (PC_RKEY_SLOTS - 1);
            if (tags[slot][0] == '\0') {
                memcpy(tags[slot], s, sizeof s);
                filled++;
            }
            /* next string: the last position moves fastest */
            unsigned i = len;
            while (i > 0 && ++idx[i - 1] == N)
                idx[--i] = 0;
            if (i == 0)
                break;
        }
    }
    return filled == PC_RKEY_SLOTS ? 0 : PC_EINTERNAL;
}
