/*
 * pc_error.c -- names and messages for the pc_err codes.
 *
 * One table indexed by -code keeps the name and the message of a code next
 * to each other, so adding a code to pc_error.h means adding one line here;
 * the unit test walks every code and fails on a missing entry.
 */
#include "pc_error.h"

#include <stddef.h>

struct err_info {
    const char *name;
    const char *msg;
};

/* Index = -code. Designated initialisers keep the pairing explicit even if
 * the enum is ever reordered. */
static const struct err_info err_table[] = {
    [0] = {"PC_OK", "success"},
    [-PC_ENOMEM] = {"PC_ENOMEM", "out of memory"},
    [-PC_EINVAL] = {"PC_EINVAL", "invalid argument"},
    [-PC_EAGAIN] = {"PC_EAGAIN", "need more bytes"},
    [-PC_EPROTO] = {"PC_EPROTO", "malformed protocol data"},
    [-PC_ETOOBIG] = {"PC_ETOOBIG", "over a configured size limit"},
    [-PC_ENOTFOUND] = {"PC_ENOTFOUND", "not found"},
    [-PC_EEXISTS] = {"PC_EEXISTS", "key exists or version differs"},
    [-PC_ENOTSTORED] = {"PC_ENOTSTORED", "not stored: key missing"},
    [-PC_ETIMEDOUT] = {"PC_ETIMEDOUT", "timed out"},
    [-PC_ECONN] = {"PC_ECONN", "connection failed or broken"},
    [-PC_EBACKEND] = {"PC_EBACKEND", "backend unavailable"},
    [-PC_EBUSY] = {"PC_EBUSY", "server busy, retry later"},
    [-PC_EINTERNAL] = {"PC_EINTERNAL", "internal error"},
    [-PC_EBADREQ] = {"PC_EBADREQ", "request rejected as malformed"},
    [-PC_EIO] = {"PC_EIO", "system call failed"},
    [-PC_ECLOSED] = {"PC_ECLOSED", "closed or shutting down"},
    [-PC_ERANGE] = {"PC_ERANGE", "value out of range"},
    [-PC_ERETRY] = {"PC_ERETRY", "the cluster is changing: not applied, retry"},
    [-PC_EPERM] = {"PC_EPERM", "not permitted"},
    [-PC_ENOKEY] = {"PC_ENOKEY", "sealed with an unknown key"},
    [-PC_EAUTH] = {"PC_EAUTH", "authentication failed"},
    [-PC_ESTALE] = {"PC_ESTALE", "outside the replay window"},
    [-PC_EREPLAY] = {"PC_EREPLAY", "replayed message"},
    [-PC_ENOTSUP] = {"PC_ENOTSUP", "not supported by this kernel or platform"},
};

#define ERR_COUNT (sizeof(err_table) / sizeof(err_table[0]))

static const struct err_info *err_lookup(int err)
{
    /* Positive values and codes from newer headers fall through to NULL;
     * compare as unsigned only after ruling out positives so INT_MIN
     * cannot overflow on negation. */
    if (err > 0 || err < -(int)(ERR_COUNT - 1))
        return NULL;
    const struct err_info *e = &err_table[-err];
    return e->name != NULL ? e : NULL;
}

const char *pc_strerror(int err)
{
    const struct err_info *e = err_lookup(err);
    return e != NULL ? e->msg : "unknown error";
}

const char *pc_errname(int err)
{
    const struct err_info *e = err_lookup(err);
    return e != NULL ? e->name : "PC_E?";
}
