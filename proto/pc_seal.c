/*
 * pc_seal.c -- the cluster key: keyring, sealed messages, replay filter.
 *
 * AEAD is libsodium's crypto_aead_xchacha20poly1305_ietf in combined mode
 * (ciphertext, then the 16-byte tag), with a random 24-byte nonce per
 * message: XChaCha20's nonce is long enough that random nonces do not
 * collide in practice, so senders need no shared counter state.
 *
 * Buffers never overlap. libsodium documents in-place operation ("c and
 * m can overlap") for crypto_secretbox_easy() and crypto_box_easy(), but
 * says nothing of the kind for the crypto_aead_* functions, so this
 * module does not rely on it: the plaintext (inner fields + payload) is
 * staged in a scratch buffer -- on the stack for messages up to a typical
 * datagram, on the heap above that -- and encrypted from there into the
 * destination, or decrypted into scratch and copied back over the
 * ciphertext. The extra copy is memcpy-speed, small next to the cipher.
 */
#include "pc_seal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* The wire layout in pc_seal.h must agree with what libsodium uses. */
_Static_assert(PC_SEAL_KEYBYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");
_Static_assert(PC_SEAL_NONCE == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(PC_SEAL_TAG == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(PC_REPLAY_BITS % 64 == 0, "replay bitmap is whole words");

/* Offsets in a sealed message. */
#define OFF_KEY_ID 3
#define OFF_NONCE PC_SEAL_HEADER
#define OFF_CIPHER (PC_SEAL_HEADER + PC_SEAL_NONCE)

/* Plaintexts up to this size are staged on the stack: every gossip
 * datagram that fits an Ethernet MTU, and most peer frames. */
#define SCRATCH_LOCAL 2048

/* A key file larger than this is not a key file (16 keys take 1 KiB). */
#define KEY_FILE_MAX (64 * 1024)

/* Domain separation for key ids: the same 32 bytes used elsewhere with
 * another label give an unrelated id. Exactly 16 bytes, no NUL. */
static const char key_id_label[16] = {'p', 'e', 'e', 'r', 'c', 'a', 'c', 'h',
                                      'e', ' ', 'k', 'e', 'y', ' ', 'i', 'd'};

/* ---- small helpers ------------------------------------------------------ */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* err may be NULL (or errlen 0) when the caller wants only the code. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

typedef struct scratch {
    uint8_t *p;
    uint8_t *heap;
    uint8_t local[SCRATCH_LOCAL];
} scratch_t;

/* Points s->p at n usable bytes. 0 or PC_ENOMEM. */
static int scratch_get(scratch_t *s, size_t n)
{
    s->heap = NULL;
    if (n <= sizeof(s->local)) {
        s->p = s->local;
        return 0;
    }
    s->heap = malloc(n);
    if (s->heap == NULL)
        return PC_ENOMEM;
    s->p = s->heap;
    return 0;
}

static void scratch_put(scratch_t *s)
{
    free(s->heap);
    s->heap = NULL;
    s->p = NULL;
}

/* ---- keys --------------------------------------------------------------- */

int pc_seal_init(void)
{
    return sodium_init() < 0 ? PC_EINTERNAL : 0;
}

uint32_t pc_seal_key_id(const uint8_t key[PC_SEAL_KEYBYTES])
{
    uint8_t in[sizeof(key_id_label) + PC_SEAL_KEYBYTES];
    uint8_t h[32];

    memcpy(in, key_id_label, sizeof(key_id_label));
    memcpy(in + sizeof(key_id_label), key, PC_SEAL_KEYBYTES);
    crypto_generichash(h, sizeof(h), in, sizeof(in), NULL, 0);
    sodium_memzero(in, sizeof(in));
    return get_be32(h);
}

/*
 * The key bytes live in one sodium_malloc() region (guard pages, mlock'd
 * where the limit allows, left out of core dumps, zeroed by sodium_free)
 * that is made read-only once the ring is built: a keyring is immutable,
 * and a stray write into it should crash rather than corrupt a key.
 */
struct pc_keyring {
    size_t n;
    uint32_t id[PC_KEYRING_MAX];
    uint8_t (*key)[PC_SEAL_KEYBYTES]; /* PC_KEYRING_MAX of them */
};

static int keyring_alloc(pc_keyring_t **out)
{
    pc_keyring_t *kr = calloc(1, sizeof(*kr));

    if (kr == NULL)
        return PC_ENOMEM;
    kr->key = sodium_allocarray(PC_KEYRING_MAX, PC_SEAL_KEYBYTES);
    if (kr->key == NULL) {
        free(kr);
        return PC_ENOMEM;
    }
    *out = kr;
    return 0;
}

void pc_keyring_free(pc_keyring_t **kr)
{
    if (kr == NULL || *kr == NULL)
        return;
    sodium_free((*kr)->key);
    free(*kr);
    *kr = NULL;
}

size_t pc_keyring_count(const pc_keyring_t *kr)
{
    return kr->n;
}

uint32_t pc_keyring_id(const pc_keyring_t *kr, size_t i)
{
    return i < kr->n ? kr->id[i] : 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Decodes one trimmed key line into kr->key[kr->n]. 0 or PC_EINVAL. */
static int parse_key_line(pc_keyring_t *kr, const char *p, size_t n, size_t lineno, char *err,
                          size_t errlen)
{
    uint8_t *key = kr->key[kr->n];
    size_t bin_len = 0;
    const char *end = NULL;

    /* Messages give lengths and positions, never the text: it is a key. */
    if (n != 2 * PC_SEAL_KEYBYTES) {
        set_err(err, errlen, "line %zu: expected 64 hex digits, found %zu characters", lineno, n);
        return PC_EINVAL;
    }
    if (sodium_hex2bin(key, PC_SEAL_KEYBYTES, p, n, NULL, &bin_len, &end) != 0 ||
        bin_len != PC_SEAL_KEYBYTES || end != p + n) {
        size_t bad = 0;

        while (bad < n && strchr("0123456789abcdefABCDEF", p[bad]) != NULL && p[bad] != '\0')
            bad++;
        set_err(err, errlen, "line %zu: expected 64 hex digits; character %zu is not one", lineno,
                bad + 1);
        return PC_EINVAL;
    }
    return 0;
}

/* Refuses the key just decoded (kr->key[kr->n], id `id`) if it equals
 * an earlier one, or if its id does (the id picks the key that opens a
 * message, so two keys with one id could not both be used). */
static int check_unique(const pc_keyring_t *kr, uint32_t id, const size_t *lines, size_t lineno,
                        char *err, size_t errlen)
{
    const uint8_t *key = kr->key[kr->n];

    for (size_t i = 0; i < kr->n; i++) {
        if (sodium_memcmp(kr->key[i], key, PC_SEAL_KEYBYTES) == 0) {
            set_err(err, errlen, "line %zu: the same key as line %zu", lineno, lines[i]);
            return PC_EINVAL;
        }
        if (kr->id[i] == id) {
            set_err(err, errlen,
                    "line %zu: key id %08" PRIx32 " is also the id of the key on line %zu; "
                    "generate another key",
                    lineno, id, lines[i]);
            return PC_EINVAL;
        }
    }
    return 0;
}

int pc_keyring_parse(const char *text, size_t len, pc_keyring_t **out, char *err, size_t errlen)
{
    pc_keyring_t *kr = NULL;
    size_t lines[PC_KEYRING_MAX]; /* line number of each key, for messages */
    size_t pos = 0, lineno = 0;
    int rc;

    *out = NULL;
    rc = keyring_alloc(&kr);
    if (rc != 0) {
        set_err(err, errlen, "out of memory");
        return rc;
    }
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        size_t b = pos, e = end;

        lineno++;
        pos = nl != NULL ? end + 1 : len;
        while (b < e && is_blank(text[b]))
            b++;
        while (e > b && is_blank(text[e - 1]))
            e--;
        if (b == e || text[b] == '#')
            continue;
        if (kr->n == PC_KEYRING_MAX) {
            set_err(err, errlen, "line %zu: more than %d keys", lineno, PC_KEYRING_MAX);
            rc = PC_EINVAL;
            goto fail;
        }
        rc = parse_key_line(kr, text + b, e - b, lineno, err, errlen);
        if (rc != 0)
            goto fail;
        kr->id[kr->n] = pc_seal_key_id(kr->key[kr->n]);
        rc = check_unique(kr, kr->id[kr->n], lines, lineno, err, errlen);
        if (rc != 0)
            goto fail;
        lines[kr->n] = lineno;
        kr->n++;
    }
    if (kr->n == 0) {
        set_err(err, errlen, "no key (expected a line of 64 hex digits)");
        rc = PC_EINVAL;
        goto fail;
    }
    /* Best effort: a failure leaves the keys writable, nothing worse. */
    (void)sodium_mprotect_readonly(kr->key);
    *out = kr;
    return 0;

fail:
    pc_keyring_free(&kr);
    return rc;
}

/* Reads all of fd, at most KEY_FILE_MAX bytes, into a malloc'd buffer the
 * caller wipes and frees. 0, PC_ENOMEM, PC_EIO (errno says why) or
 * PC_ETOOBIG. */
static int read_small(int fd, char **out, size_t *len)
{
    char *buf = malloc(KEY_FILE_MAX + 1);
    size_t n = 0;

    if (buf == NULL)
        return PC_ENOMEM;
    for (;;) {
        ssize_t r = read(fd, buf + n, KEY_FILE_MAX + 1 - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            sodium_memzero(buf, n);
            free(buf);
            errno = e;
            return PC_EIO;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > KEY_FILE_MAX) {
            sodium_memzero(buf, n);
            free(buf);
            return PC_ETOOBIG;
        }
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int pc_secret_file_read(const char *path, const char *what, char **text, size_t *len,
                        char *err, size_t errlen)
{
    struct stat st;
    int fd, rc;

    *text = NULL;
    *len = 0;
    /* Symlinks are followed (Kubernetes mounts secrets through them); the
     * checks below are on the file actually opened, so nothing can swap
     * it between check and read. O_NONBLOCK: a FIFO must not hang us. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        set_err(err, errlen, "cannot open %s %s: %s", what, path, strerror(errno));
        return PC_EIO;
    }
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "cannot stat %s %s: %s", what, path, strerror(errno));
        close(fd);
        return PC_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s %s is not a regular file", what, path);
        close(fd);
        return PC_EIO;
    }
    if ((st.st_mode & 077) != 0) {
        set_err(err, errlen,
                "%s %s is readable or writable by group/others (mode %04o): chmod 600 %s", what,
                path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return PC_EPERM;
    }
    rc = read_small(fd, text, len);
    if (rc == PC_EIO)
        set_err(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
    close(fd);
    if (rc == PC_ETOOBIG) {
        set_err(err, errlen, "%s %s is larger than %d KiB", what, path, KEY_FILE_MAX / 1024);
        return PC_EINVAL;
    }
    if (rc == PC_ENOMEM)
        set_err(err, errlen, "out of memory");
    return rc;
}

int pc_secret_file_line(const char *path, const char *what, char *out, size_t cap, char *err,
                        size_t errlen)
{
    char *text;
    size_t len;
    int rc = pc_secret_file_read(path, what, &text, &len, err, errlen);
    if (rc != 0)
        return rc;
    size_t n = strcspn(text, "\r\n");
    if (n == 0 || n >= cap) {
        set_err(err, errlen, "%s %s: the first line is %s", what, path,
                n == 0 ? "empty" : "too long");
        rc = PC_EINVAL;
    } else {
        memcpy(out, text, n);
        out[n] = '\0';
    }
    sodium_memzero(text, len);
    free(text);
    return rc;
}

int pc_keyring_load_file(const char *path, pc_keyring_t **out, char *err, size_t errlen)
{
    char *text;
    size_t len;
    char perr[256];

    *out = NULL;
    int rc = pc_secret_file_read(path, "key file", &text, &len, err, errlen);
    if (rc != 0)
        return rc;
    rc = pc_keyring_parse(text, len, out, perr, sizeof(perr));
    sodium_memzero(text, len);
    free(text);
    if (rc != 0)
        set_err(err, errlen, "key file %s: %s", path, perr);
    return rc;
}

void pc_keyring_new_key_line(char line[66], uint32_t *id)
{
    uint8_t key[PC_SEAL_KEYBYTES];

    crypto_aead_xchacha20poly1305_ietf_keygen(key);
    sodium_bin2hex(line, 65, key, sizeof(key));
    line[64] = '\n';
    line[65] = '\0';
    *id = pc_seal_key_id(key);
    sodium_memzero(key, sizeof(key));
}

/* ---- sealing ------------------------------------------------------------ */

void pc_seal_stream_init(pc_seal_stream_t *st)
{
    do {
        randombytes_buf(&st->id, sizeof(st->id));
    } while (st->id == 0);
    st->seq = 0;
}

/*
 * Writes the whole sealed message to dst (PC_SEAL_OVERHEAD + len bytes):
 * header, fresh nonce, and the encryption of stream | seq | ts | payload,
 * staged in scratch so that no libsodium buffer overlaps another. payload
 * may overlap dst (pc_seal_frame seals a body where it lies); it is fully
 * copied before dst is written. 0 or PC_ENOMEM (dst untouched).
 */
static int seal_to(const pc_keyring_t *kr, uint64_t stream, uint64_t seq, uint8_t kind,
                   uint64_t now_ms, const uint8_t *payload, size_t len, uint8_t *dst)
{
    scratch_t s;
    size_t plen = PC_SEAL_INNER + len;
    int rc = scratch_get(&s, plen);

    if (rc != 0)
        return rc;
    put_be64(s.p, stream);
    put_be64(s.p + 8, seq);
    put_be64(s.p + 16, now_ms);
    if (len > 0)
        memcpy(s.p + PC_SEAL_INNER, payload, len);

    dst[0] = PC_SEAL_MAGIC;
    dst[1] = PC_SEAL_VERSION;
    dst[2] = kind;
    put_be32(dst + OFF_KEY_ID, kr->id[0]);
    randombytes_buf(dst + OFF_NONCE, PC_SEAL_NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt(dst + OFF_CIPHER, NULL, s.p, plen, dst,
                                               PC_SEAL_HEADER, NULL, dst + OFF_NONCE,
                                               kr->key[0]);
    scratch_put(&s);
    return 0;
}

int pc_seal(const pc_keyring_t *kr, pc_seal_stream_t *st, uint8_t kind, uint64_t now_ms,
            const uint8_t *payload, size_t len, pc_buf_t *out)
{
    int rc;

    if (len > SIZE_MAX - PC_SEAL_OVERHEAD)
        return PC_ETOOBIG;
    rc = pc_buf_reserve(out, PC_SEAL_OVERHEAD + len);
    if (rc != 0)
        return rc;
    rc = seal_to(kr, st->id, st->seq + 1, kind, now_ms, payload, len, out->data + out->len);
    if (rc != 0)
        return rc;
    st->seq++;
    out->len += PC_SEAL_OVERHEAD + len;
    return 0;
}

int pc_seal_frame(const pc_keyring_t *kr, pc_seal_stream_t *st, uint8_t kind, uint64_t now_ms,
                  pc_buf_t *out, size_t start)
{
    uint8_t *frame;
    uint32_t body;
    int rc;

    if (start > out->len || out->len - start < 4)
        return PC_EINVAL;
    body = get_be32(out->data + start);
    if ((uint64_t)body != (uint64_t)(out->len - start - 4))
        return PC_EINVAL;
    if (body > UINT32_MAX - PC_SEAL_OVERHEAD)
        return PC_ETOOBIG;
    rc = pc_buf_reserve(out, PC_SEAL_OVERHEAD);
    if (rc != 0)
        return rc;
    /* The reserve may have moved the buffer: take the pointer after it. */
    frame = out->data + start;
    rc = seal_to(kr, st->id, st->seq + 1, kind, now_ms, frame + 4, body, frame + 4);
    if (rc != 0)
        return rc;
    st->seq++;
    put_be32(frame, body + PC_SEAL_OVERHEAD);
    out->len += PC_SEAL_OVERHEAD;
    return 0;
}

int pc_seal_is_sealed(const uint8_t *msg, size_t len)
{
    return len >= 1 && msg[0] == PC_SEAL_MAGIC;
}

int pc_seal_open(const pc_keyring_t *kr, uint8_t *msg, size_t len, pc_seal_opened_t *out)
{
    const uint8_t *key = NULL;
    uint32_t id;
    size_t plen;
    scratch_t s;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len < PC_SEAL_OVERHEAD || msg[0] != PC_SEAL_MAGIC || msg[1] != PC_SEAL_VERSION)
        return PC_EPROTO;
    id = get_be32(msg + OFF_KEY_ID);
    for (size_t i = 0; i < kr->n; i++) {
        if (kr->id[i] == id)
            key = kr->key[i];
    }
    if (key == NULL)
        return PC_ENOKEY;

    plen = len - OFF_CIPHER - PC_SEAL_TAG;
    rc = scratch_get(&s, plen);
    if (rc != 0)
        return rc;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(s.p, NULL, NULL, msg + OFF_CIPHER,
                                                   len - OFF_CIPHER, msg, PC_SEAL_HEADER,
                                                   msg + OFF_NONCE, key) != 0) {
        scratch_put(&s);
        return PC_EAUTH;
    }
    memcpy(msg + OFF_CIPHER, s.p, plen);
    scratch_put(&s);

    out->kind = msg[2];
    out->key_id = id;
    out->stream = get_be64(msg + OFF_CIPHER);
    out->seq = get_be64(msg + OFF_CIPHER + 8);
    out->ts_ms = get_be64(msg + OFF_CIPHER + 16);
    out->payload = msg + OFF_CIPHER + PC_SEAL_INNER;
    out->len = plen - PC_SEAL_INNER;
    return 0;
}

/* ---- replay filter -------------------------------------------------------- */

#define NIL UINT32_MAX
#define SEEN_WORDS (PC_REPLAY_BITS / 64)

/*
 * One remembered stream. seen bit j says that seq top - 1 - j was
 * accepted (top itself always was), so offsets 1..PC_REPLAY_BITS below
 * the highest are tracked and anything further below is too old to tell.
 *
 * keep_until is the newest accepted ts_ms plus the window: until then a
 * copy of some accepted message can still pass the time check, so the
 * stream must be remembered; after it, every accepted message is stale
 * and the slot can go. (Counting from when a message was *heard* would
 * be wrong by up to a window when the sender's clock runs ahead.)
 */
typedef struct rp_slot {
    uint64_t stream;
    uint64_t top;
    uint64_t keep_until;
    uint64_t seen[SEEN_WORDS];
    uint32_t hnext;      /* next slot in the same hash bucket */
    uint32_t prev, next; /* LRU list by last acceptance; next also links the free list */
} rp_slot_t;

/*
 * Fixed memory: max_streams slots allocated up front, a bucket array of
 * chain heads (a power of two >= max_streams), and two lists threaded
 * through the slots by index: released slots, and live slots from least
 * to most recently accepted. Slots never used yet are not on the free
 * list: they are handed out in order from `fresh`, so that the slot array
 * (calloc'd, 1.4 MB for 8192 streams) stays untouched -- and costs no
 * resident memory and no page faults at start -- until streams use it. Expired slots are reclaimed from the LRU head,
 * so finding room is O(1) amortised; an expired slot stuck behind a live
 * one waits at most one more window (keep_until <= last accept + 2 *
 * window for every slot), and meanwhile a lookup that finds it expired
 * treats it as new. Memory per stream: sizeof(rp_slot_t) (168 bytes)
 * plus 4 to 8 bytes of buckets.
 */
struct pc_replay {
    uint64_t window_ms;
    size_t live;
    size_t mask; /* buckets - 1 */
    uint32_t *bucket;
    rp_slot_t *slot;
    uint32_t free_head; /* released slots */
    uint32_t fresh;     /* slots fresh .. nslots - 1 were never used */
    uint32_t nslots;
    uint32_t lru_head, lru_tail;
};

int pc_replay_new(uint64_t window_ms, size_t max_streams, pc_replay_t **out)
{
    pc_replay_t *r;
    size_t nb = 1;

    *out = NULL;
    /* Slot indexes are 32-bit with one value reserved for "none". */
    if (window_ms == 0 || max_streams == 0 || max_streams >= NIL)
        return PC_EINVAL;
    while (nb < max_streams)
        nb *= 2;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return PC_ENOMEM;
    r->bucket = malloc(nb * sizeof(*r->bucket));
    r->slot = calloc(max_streams, sizeof(*r->slot));
    if (r->bucket == NULL || r->slot == NULL) {
        pc_replay_free(&r);
        return PC_ENOMEM;
    }
    r->window_ms = window_ms;
    r->mask = nb - 1;
    for (size_t i = 0; i < nb; i++)
        r->bucket[i] = NIL;
    r->free_head = NIL;
    r->fresh = 0;
    r->nslots = (uint32_t)max_streams;
    r->lru_head = r->lru_tail = NIL;
    *out = r;
    return 0;
}

void pc_replay_free(pc_replay_t **r)
{
    if (r == NULL || *r == NULL)
        return;
    free((*r)->bucket);
    free((*r)->slot);
    free(*r);
    *r = NULL;
}

size_t pc_replay_streams(const pc_replay_t *r)
{
    return r->live;
}

/* Stream ids are random (chosen by key holders only), so a multiplicative
 * hash spreads them well enough. */
static size_t rp_bucket(const pc_replay_t *r, uint64_t stream)
{
    return (size_t)((stream * 0x9e3779b97f4a7c15ull) >> 32) & r->mask;
}

static uint32_t rp_find(const pc_replay_t *r, uint64_t stream)
{
    uint32_t i = r->bucket[rp_bucket(r, stream)];

    while (i != NIL && r->slot[i].stream != stream)
        i = r->slot[i].hnext;
    return i;
}

static void lru_unlink(pc_replay_t *r, uint32_t i)
{
    rp_slot_t *s = &r->slot[i];

    if (s->prev != NIL)
        r->slot[s->prev].next = s->next;
    else
        r->lru_head = s->next;
    if (s->next != NIL)
        r->slot[s->next].prev = s->prev;
    else
        r->lru_tail = s->prev;
}

static void lru_push(pc_replay_t *r, uint32_t i)
{
    rp_slot_t *s = &r->slot[i];

    s->prev = r->lru_tail;
    s->next = NIL;
    if (r->lru_tail != NIL)
        r->slot[r->lru_tail].next = i;
    else
        r->lru_head = i;
    r->lru_tail = i;
}

static void rp_release(pc_replay_t *r, uint32_t i)
{
    uint32_t *link = &r->bucket[rp_bucket(r, r->slot[i].stream)];

    while (*link != i)
        link = &r->slot[*link].hnext;
    *link = r->slot[i].hnext;
    lru_unlink(r, i);
    r->slot[i].next = r->free_head;
    r->free_head = i;
    r->live--;
}

/* Releases expired slots from the least recently accepted end. */
static void rp_reclaim(pc_replay_t *r, uint64_t now_ms)
{
    while (r->lru_head != NIL && now_ms > r->slot[r->lru_head].keep_until)
        rp_release(r, r->lru_head);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Moves every seen bit `by` offsets further from the top. */
static void seen_shift(uint64_t seen[SEEN_WORDS], uint64_t by)
{
    size_t words, bits;

    if (by >= PC_REPLAY_BITS) {
        memset(seen, 0, SEEN_WORDS * sizeof(seen[0]));
        return;
    }
    words = (size_t)by / 64;
    bits = (size_t)by % 64;
    /* High words first: each reads only words below it, not yet moved. */
    for (size_t i = SEEN_WORDS; i-- > 0;) {
        uint64_t v = 0;

        if (i >= words) {
            v = seen[i - words] << bits;
            if (bits != 0 && i > words)
                v |= seen[i - words - 1] >> (64 - bits);
        }
        seen[i] = v;
    }
}

static void slot_start(rp_slot_t *s, uint64_t stream, uint64_t seq, uint64_t keep_until)
{
    s->stream = stream;
    s->top = seq;
    s->keep_until = keep_until;
    memset(s->seen, 0, sizeof(s->seen));
}

int pc_replay_check(pc_replay_t *r, uint64_t stream, uint64_t seq, uint64_t ts_ms,
                    uint64_t now_ms)
{
    uint64_t keep = add_sat(ts_ms, r->window_ms);
    rp_slot_t *s;
    uint32_t i;

    if (seq == 0)
        return PC_ESTALE;
    if (ts_ms < now_ms ? now_ms - ts_ms > r->window_ms : ts_ms - now_ms > r->window_ms)
        return PC_ESTALE;
    rp_reclaim(r, now_ms);

    i = rp_find(r, stream);
    if (i == NIL) {
        if (r->free_head != NIL) {
            i = r->free_head;
            r->free_head = r->slot[i].next;
        } else if (r->fresh < r->nslots) {
            i = r->fresh++;
        } else {
            return PC_EBUSY;
        }
        s = &r->slot[i];
        slot_start(s, stream, seq, keep);
        s->hnext = r->bucket[rp_bucket(r, stream)];
        r->bucket[rp_bucket(r, stream)] = i;
        lru_push(r, i);
        r->live++;
        return 0;
    }

    s = &r->slot[i];
    if (now_ms > s->keep_until) {
        /* Everything it accepted is stale now: a new life for the id. */
        slot_start(s, stream, seq, keep);
    } else if (seq > s->top) {
        uint64_t by = seq - s->top;

        seen_shift(s->seen, by);
        if (by <= PC_REPLAY_BITS)
            s->seen[(by - 1) / 64] |= 1ull << ((by - 1) % 64);
        s->top = seq;
    } else {
        uint64_t off = s->top - seq;
        uint64_t bit;

        if (off == 0)
            return PC_EREPLAY;
        if (off > PC_REPLAY_BITS)
            return PC_ESTALE;
        bit = 1ull << ((off - 1) % 64);
        if (s->seen[(off - 1) / 64] & bit)
            return PC_EREPLAY;
        s->seen[(off - 1) / 64] |= bit;
    }
    if (keep > s->keep_until)
        s->keep_until = keep;
    lru_unlink(r, i);
    lru_push(r, i);
    return 0;
}
