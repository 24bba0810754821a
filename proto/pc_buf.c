/*
 * pc_buf.c -- growable byte buffer with a hard cap.
 */
#include "pc_buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pc_error.h"

/* First allocation size: small enough that an idle connection's buffers
 * cost little, big enough that a typical request fits without a realloc. */
#define PC_BUF_MIN_CAP 256

void pc_buf_init(pc_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->acct = NULL;
}

/* The struct documents max == 0 as "no cap"; resolve it in one place so a
 * caller that sets the field directly gets the same meaning. */
static size_t buf_max(const pc_buf_t *b)
{
    return b->max != 0 ? b->max : SIZE_MAX;
}

void pc_buf_set_account(pc_buf_t *b, size_t *acct)
{
    if (b->acct != NULL)
        *b->acct -= b->cap;
    b->acct = acct;
    if (acct != NULL)
        *acct += b->cap;
}

void pc_buf_free(pc_buf_t *b)
{
    if (b->acct != NULL)
        *b->acct -= b->cap;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int pc_buf_reserve(pc_buf_t *b, size_t n)
{
    if (n <= b->cap - b->len)
        return 0;
    /* Written as a subtraction so len + n cannot wrap. */
    size_t max = buf_max(b);
    if (b->len > max || n > max - b->len)
        return PC_ETOOBIG;
    size_t need = b->len + n;

    /* Doubling keeps appends amortised O(1); the cap bounds the doubling so
     * a buffer capped at max never allocates more than max bytes. */
    size_t ncap = b->cap != 0 ? b->cap : PC_BUF_MIN_CAP;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    if (ncap > max)
        ncap = max;

    uint8_t *p = realloc(b->data, ncap);
    if (p == NULL)
        return PC_ENOMEM;
    if (b->acct != NULL)
        *b->acct += ncap - b->cap;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int pc_buf_append(pc_buf_t *b, const void *p, size_t n)
{
    /* memcpy with a NULL source is undefined even for n == 0, and empty
     * values legitimately arrive as (NULL, 0). */
    if (n == 0)
        return 0;
    int rc = pc_buf_reserve(b, n);
    if (rc != 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void pc_buf_consume(pc_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void pc_buf_reset(pc_buf_t *b)
{
    b->len = 0;
}
