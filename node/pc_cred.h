/*
 * pc_cred.h -- the credentials a node sends Redis (AUTH), shared by every
 * loop's backend and replaced on SIGHUP (--redis-password-file).
 *
 * A backend formats the AUTH command from them each time it connects
 * (pc_cred_auth), so a new password is used from the next connection on;
 * connections already authenticated stay as they are.
 *
 * Secrets: the password is copied, and every copy the module made is
 * zeroed (sodium_memzero) before it is freed -- when replaced and when
 * the credentials are freed. pc_cred_auth's output holds it too; its
 * caller zeroes that.
 *
 * Thread rules: any thread; one mutex, taken for each call (a set happens
 * on SIGHUP, an auth at each connect).
 */
#ifndef PC_CRED_H
#define PC_CRED_H

#include "pc_buf.h"

typedef struct pc_cred pc_cred_t;

/* 0 or PC_ENOMEM. Starts empty: no AUTH is sent. */
int pc_cred_new(pc_cred_t **out);

/* user NULL or "": AUTH password (Redis' default user); password NULL or
 * "": no AUTH (and no user). Both copied. 0, or PC_ENOMEM with the old
 * credentials kept. */
int pc_cred_set(pc_cred_t *c, const char *user, const char *password);

/* Appends the AUTH command for c's credentials now, in RESP, to out:
 * 1 when it did, 0 when there is none to send (c NULL or no password; out
 * untouched), PC_ENOMEM (out may hold part of it). */
int pc_cred_auth(pc_cred_t *c, pc_buf_t *out);

/* NULL-safe; zeroes the password, frees, sets *c to NULL. */
void pc_cred_free(pc_cred_t **c);

#endif
