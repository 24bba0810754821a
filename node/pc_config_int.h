/*
 * pc_config_int.h -- the option table that the config's files share.
 * Shared by the files of the config only: pc_config_opts.c, which owns
 * the table (its rows, the per-option value checks, --help), and
 * pc_config.c, the loader (defaults, file, environment, flags, the checks
 * between options), which only reads it. Nothing else may include it;
 * the config's contract is pc_config.h.
 *
 * The table is constant and its order is fixed at build time: the loader
 * keeps per-option arrays indexed like pc_opt_table[] (o - pc_opt_table),
 * sized NOPTIONS_MAX, which pc_config_opts.c checks the table against at
 * compile time.
 */
#ifndef PC_CONFIG_INT_H
#define PC_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_config.h"

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* Names are short; this bounds "PEERCACHE_" + the longest name. */
#define ENV_NAME_MAX 64

/* Rows pc_opt_table[] may have; raise it when the table outgrows it. */
#define NOPTIONS_MAX 64

enum opt_type {
    OPT_STRING,   /* char *, any text (maybe checked by opt->check) */
    OPT_UINT,     /* uint64_t, plain decimal */
    OPT_SIZE,     /* size_t, pc_parse_size() */
    OPT_DURATION, /* uint64_t milliseconds, pc_parse_duration_ms() */
    OPT_ENUM,     /* char *, one of opt->choices (stored canonical) */
    OPT_BOOL,     /* int 0/1: a flag alone ("--insecure") means 1; values
                     true/false, yes/no, on/off, 1/0 (any case) */
};

/*
 * Extra validation for string options. Returns NULL if `value` is fine,
 * else the end of a sentence that starts with "'value' " ("is not a
 * HOST:PORT address"): a constant, or one written into buf (len bytes)
 * when it names the problem in more detail.
 */
typedef const char *(*opt_check_fn)(const char *value, char *buf, size_t len);

typedef struct opt {
    const char *name;     /* long name without "--"; also the file key */
    enum opt_type type;
    const char *metavar;  /* shown in --help after the flag; NULL for enums */
    const char *def;      /* default as a user would write it; NULL = unset */
    const char *def_help; /* --help text for the default when def is NULL */
    size_t offset;        /* of the field in pc_config_t */
    const char *const *choices; /* OPT_ENUM: NULL-terminated */
    uint64_t min, max;    /* numeric types: allowed range, inclusive */
    opt_check_fn check;   /* OPT_STRING: optional */
    bool not_in_file;     /* only "config": a file cannot name another file */
    bool not_flag;        /* a secret: environment or file only, not argv
                             (ps shows argv), and only from a file that
                             group and others cannot access (load_file) */
    const char *help;     /* one line per '\n', each under ~66 columns */
} opt_t;

/* Every option, in --help order; pc_opt_count rows (<= NOPTIONS_MAX). */
extern const opt_t pc_opt_table[];
extern const size_t pc_opt_count;

/* The option named by the len bytes at name, or NULL. */
const opt_t *pc_opt_find(const char *name, size_t len);

/* "redis-timeout" -> "PEERCACHE_REDIS_TIMEOUT". */
void pc_opt_env_name(const opt_t *o, char *buf, size_t len);

/* Prints a number the way a user would write it for this option type. */
void pc_opt_format_value(enum opt_type type, uint64_t v, char *buf, size_t len);

#endif
