/*
 * pc_buf.h -- a growable byte buffer with a hard cap.
 *
 * Ownership: the caller owns the pc_buf_t struct (usually embedded); the
 * bytes it points to are owned by the buffer and freed by pc_buf_free().
 * A buffer never grows past `max` bytes: appends that would pass it fail
 * with PC_ETOOBIG and leave the buffer unchanged, so a peer can never make
 * us hold more than the configured amount.
 *
 * Accounting: a buffer may add the size of its allocation (cap) to a
 * counter the owner keeps (pc_buf_set_account), and takes it back as it
 * shrinks or is freed, so an owner can bound many buffers together with
 * one exact number and no bookkeeping at each call site.
 *
 * Thread rules: none; a buffer belongs to one thread at a time (and so
 * does its counter).
 */
#ifndef PC_BUF_H
#define PC_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct pc_buf {
    uint8_t *data; /* NULL until the first append */
    size_t len;    /* bytes in use */
    size_t cap;    /* bytes allocated */
    size_t max;    /* hard cap on len (0 = SIZE_MAX) */
    size_t *acct;  /* NULL, or the counter that holds cap (see above) */
} pc_buf_t;

/* Initialises an empty buffer (no allocation, no counter). */
void pc_buf_init(pc_buf_t *b, size_t max);

/* Frees the bytes; the struct is left empty and may be reused (it keeps
 * its max and its counter). */
void pc_buf_free(pc_buf_t *b);

/* Counts the allocation in *acct from now on (NULL = in none): what the
 * buffer holds now moves from the old counter to the new one. *acct must
 * outlive the buffer's allocation. A struct copy shares the counter, so
 * swapping two buffers of one owner keeps the total right. */
void pc_buf_set_account(pc_buf_t *b, size_t *acct);

/* Makes room for `n` more bytes. 0, PC_ENOMEM or PC_ETOOBIG. */
int pc_buf_reserve(pc_buf_t *b, size_t n);

/* Appends `n` bytes. 0, PC_ENOMEM or PC_ETOOBIG (buffer unchanged). */
int pc_buf_append(pc_buf_t *b, const void *p, size_t n);

/* Drops the first `n` bytes (memmove of the rest). n > len clears it. */
void pc_buf_consume(pc_buf_t *b, size_t n);

/* Sets len to 0, keeps the allocation. */
void pc_buf_reset(pc_buf_t *b);

#endif
