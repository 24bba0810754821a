/*
 * pc_error.h -- the one list of error codes used by every peercache module.
 *
 * Contract: a function that can fail returns 0 (PC_OK) on success or one of
 * the negative codes below. Codes are stable within a build only; they never
 * travel on the wire (the wire carries pc_status values, see pc_proto.h).
 * pc_strerror() never returns NULL and the string is static.
 *
 * Thread rules: everything here is pure and thread-safe.
 */
#ifndef PC_ERROR_H
#define PC_ERROR_H

#define PC_OK 0

enum pc_err {
    PC_ENOMEM = -1,     /* allocation failed */
    PC_EINVAL = -2,     /* invalid argument from the caller */
    PC_EAGAIN = -3,     /* decoder: need more bytes */
    PC_EPROTO = -4,     /* decoder: malformed input */
    PC_ETOOBIG = -5,    /* over a configured limit (frame, key, value, count) */
    PC_ENOTFOUND = -6,  /* key not present */
    PC_EEXISTS = -7,    /* condition failed: key exists / version differs */
    PC_ENOTSTORED = -8, /* condition failed: key missing (XX) */
    PC_ETIMEDOUT = -9,  /* deadline passed */
    PC_ECONN = -10,     /* could not connect, or the connection broke */
    PC_EBACKEND = -11,  /* the backing store (Redis) is unavailable */
    PC_EBUSY = -12,     /* server overloaded or shutting down; retry later */
    PC_EINTERNAL = -13, /* a bug or an unexpected state */
    PC_EBADREQ = -14,   /* the peer rejected our request as malformed */
    PC_EIO = -15,       /* system call failed (see errno where documented) */
    PC_ECLOSED = -16,   /* the object is closed / shutting down */
    PC_ERANGE = -17,    /* a value is out of its allowed range (config) */
    PC_ERETRY = -18,    /* the cluster is changing: not applied, retry */
    PC_EPERM = -19,     /* not allowed: a key file others can read, a bad token */
    PC_ENOKEY = -20,    /* sealed with a key this node does not hold */
    PC_EAUTH = -21,     /* authentication failed: tampered or wrong key */
    PC_ESTALE = -22,    /* outside the replay window */
    PC_EREPLAY = -23,   /* a message seen before */
    PC_ENOTSUP = -24,   /* not supported by this kernel or platform */
};

/* Name-like human message for an error code ("not found"). Static storage. */
const char *pc_strerror(int err);

/* Symbolic name of an error code ("PC_ENOTFOUND"). Static storage. */
const char *pc_errname(int err);

#endif
