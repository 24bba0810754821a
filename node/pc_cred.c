/* Redis credentials: see pc_cred.h. */
#include "pc_cred.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pc_error.h"
#include "pc_resp.h"

struct pc_cred {
    pthread_mutex_t lock;
    char *user;     /* NULL = none */
    char *password; /* NULL = no AUTH */
};

int pc_cred_new(pc_cred_t **out)
{
    pc_cred_t *c = calloc(1, sizeof *c);
    if (c == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return PC_ENOMEM;
    }
    *out = c;
    return 0;
}

static void secret_free(char *p)
{
    if (p != NULL) {
        sodium_memzero(p, strlen(p));
        free(p);
    }
}

/* A copy of s, NULL for NULL or "". 0, or PC_ENOMEM. */
static int copy_or_null(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL || s[0] == '\0')
        return 0;
    *out = strdup(s);
    return *out != NULL ? 0 : PC_ENOMEM;
}

int pc_cred_set(pc_cred_t *c, const char *user, const char *password)
{
    char *u = NULL, *p = NULL;
    if (copy_or_null(password, &p) < 0 || (p != NULL && copy_or_null(user, &u) < 0)) {
        secret_free(p);
        return PC_ENOMEM;
    }
    pthread_mutex_lock(&c->lock);
    char *ou = c->user, *op = c->password;
    c->user = u;
    c->password = p;
    pthread_mutex_unlock(&c->lock);
    free(ou);
    secret_free(op);
    return 0;
}

int pc_cred_auth(pc_cred_t *c, pc_buf_t *out)
{
    if (c == NULL)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    if (c->password != NULL) {
        int user = c->user != NULL;
        rc = pc_resp_array(out, user ? 3 : 2);
        if (rc == 0)
            rc = pc_resp_bulk(out, "AUTH", 4);
        if (rc == 0 && user)
            rc = pc_resp_bulk(out, c->user, strlen(c->user));
        if (rc == 0)
            rc = pc_resp_bulk(out, c->password, strlen(c->password));
        rc = rc == 0 ? 1 : PC_ENOMEM;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void pc_cred_free(pc_cred_t **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    pc_cred_t *c = *cp;
    free(c->user);
    secret_free(c->password);
    pthread_mutex_destroy(&c->lock);
    free(c);
    *cp = NULL;
}
