/*
 * pc_config.c -- the loader: the three sources that feed the option table
 * (pc_config_opts.c; the row format is in the private pc_config_int.h),
 * the checks between options, and the size and duration parsers.
 *
 * Loading order (later wins): defaults, file, environment, flags. Every
 * value goes through the same opt_set(), which parses, range-checks and
 * stores it, and which knows where the value came from so the error can
 * say so ("--memory: ...", "PEERCACHE_MEMORY: ...", "config file x line 3:
 * memory: ..."). Checks that involve two options run once at the end,
 * on the merged result, because no single source is wrong on its own.
 *
 * Everything is loaded into a scratch pc_config_t and only copied out on
 * success, so a failed load never leaves a half-filled config behind.
 */
#include "pc_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "pc_addr.h"
#include "pc_backend_addr.h"
#include "pc_config_int.h"

/*
 * Bytes a frame needs besides one key and value. A client's SET: array
 * header, op, id, TTL, flags, CAS and the msgpack headers of key and value
 * come to about 45. Between nodes the same key and value may travel in a
 * FORWARD (about 10 more), or in a REPLICATE (the sender's name, up to
 * 255, and the entry's fields, about 40), and sealed (71 more, SECURITY.md).
 * max-frame must leave this much room beside max-key + max-value, or a
 * write the limits allow could not be sent on, and nodes would need a
 * larger frame limit than clients get.
 */
#define FRAME_SLACK 512

/* Where a value came from, for error messages. */
enum src_kind { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

typedef struct src {
    enum src_kind kind;
    const char *file; /* SRC_FILE */
    unsigned line;    /* SRC_FILE */
} src_t;

/*
 * The config being built plus where each option's current value came
 * from, so a check between two options can say which source to fix.
 */
typedef struct loader {
    pc_config_t cfg;
    src_t origin[NOPTIONS_MAX]; /* indexed like pc_opt_table[] */
} loader_t;

/* ---- small helpers ---------------------------------------------------- */

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static char **field_str(pc_config_t *cfg, const opt_t *o)
{
    return (char **)(void *)((char *)cfg + o->offset);
}

static uint64_t *field_u64(pc_config_t *cfg, const opt_t *o)
{
    return (uint64_t *)(void *)((char *)cfg + o->offset);
}

static size_t *field_size(pc_config_t *cfg, const opt_t *o)
{
    return (size_t *)(void *)((char *)cfg + o->offset);
}

/* The first "NAME=value" in envp, like getenv(), but on any array. */
static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);

    for (; envp != NULL && *envp != NULL; envp++) {
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    }
    return NULL;
}

/* "--memory", "PEERCACHE_MEMORY" or "config file f line 3: memory". */
static void describe_source(const src_t *src, const opt_t *o, char *buf, size_t len)
{
    char env[ENV_NAME_MAX];

    switch (src->kind) {
    case SRC_FLAG:
        snprintf(buf, len, "--%s", o->name);
        break;
    case SRC_ENV:
        pc_opt_env_name(o, env, sizeof(env));
        snprintf(buf, len, "%s", env);
        break;
    case SRC_FILE:
        snprintf(buf, len, "config file %s line %u: %s", src->file, src->line, o->name);
        break;
    case SRC_DEFAULT:
    default:
        snprintf(buf, len, "default of %s", o->name);
        break;
    }
}

/*
 * Decimal digits only: no sign, no spaces, no "0x". strtoull() would
 * accept "-1" (as a huge number) and leading blanks, which in a config
 * file are more likely a mistake than an intent.
 * 0, PC_EINVAL, or PC_ERANGE if over UINT64_MAX. *end is the first
 * non-digit.
 */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t n = 0;
    const char *p = s;
    bool overflow = false;

    if (!isdigit((unsigned char)*p))
        return PC_EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');

        if (n > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            n = n * 10 + d;
    }
    *end = p;
    *out = n;
    return overflow ? PC_ERANGE : 0;
}

/* ---- public parsers ----------------------------------------------------- */

int pc_parse_size(const char *s, size_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},     {"b", 1},     {"k", KIB}, {"kb", KIB}, {"m", MIB},
        {"mb", MIB}, {"g", GIB},   {"gb", GIB},
    };
    uint64_t n, mult = 0;
    const char *unit;
    int rc;

    if (s == NULL || out == NULL)
        return PC_EINVAL;
    rc = parse_digits(s, &n, &unit);
    if (rc == PC_EINVAL)
        return rc;
    /* The unit is checked before the overflow so that "99999999999xx"
     * is reported as malformed, not as too large. */
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(unit, units[i].unit) == 0)
            mult = units[i].mult;
    }
    if (mult == 0)
        return PC_EINVAL;
    if (rc == PC_ERANGE || n > UINT64_MAX / mult || n * mult > SIZE_MAX)
        return PC_ERANGE;
    *out = (size_t)(n * mult);
    return 0;
}

int pc_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000},
    };
    uint64_t n, mult = 0;
    const char *unit;
    int rc;

    if (s == NULL || out == NULL)
        return PC_EINVAL;
    rc = parse_digits(s, &n, &unit);
    if (rc == PC_EINVAL)
        return rc;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(unit, units[i].unit) == 0)
            mult = units[i].mult;
    }
    if (mult == 0)
        return PC_EINVAL;
    if (rc == PC_ERANGE || n > UINT64_MAX / mult)
        return PC_ERANGE;
    *out = n * mult;
    return 0;
}

/* ---- setting one option --------------------------------------------------- */

static int set_string(pc_config_t *cfg, const opt_t *o, const char *value)
{
    char **field = field_str(cfg, o);
    char *copy = strdup(value);

    if (copy == NULL)
        return PC_ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

/* Parses a numeric value of option o; on failure, why = the reason. */
static int parse_number(const opt_t *o, const char *value, uint64_t *out, const char **why)
{
    size_t sz;
    const char *end;
    int rc;

    switch (o->type) {
    case OPT_UINT:
        rc = parse_digits(value, out, &end);
        if (rc == 0 && *end != '\0')
            rc = PC_EINVAL;
        *why = "is not a whole number";
        break;
    case OPT_SIZE:
        rc = pc_parse_size(value, &sz);
        *out = sz;
        *why = "is not a size (use e.g. 64mb)";
        break;
    case OPT_DURATION:
        rc = pc_parse_duration_ms(value, out);
        *why = "is not a duration (use e.g. 500ms, 2s, 1m)";
        break;
    default:
        rc = PC_EINTERNAL;
        *why = "has an unknown type (bug)";
        break;
    }
    if (rc == PC_ERANGE)
        *why = "is too large";
    return rc;
}

/*
 * Parses `value` for option o and stores it in cfg. src says where the
 * value came from; it is used only for the error message.
 */
static int opt_set(loader_t *ld, const opt_t *o, const char *value, const src_t *src,
                   char *errbuf, size_t errlen)
{
    pc_config_t *cfg = &ld->cfg;
    char where[512], lim[32], whybuf[320];
    const char *why = NULL;
    uint64_t n = 0;
    int rc;

    describe_source(src, o, where, sizeof(where));
    ld->origin[o - pc_opt_table] = *src;

    switch (o->type) {
    case OPT_STRING:
        if (o->check != NULL && (why = o->check(value, whybuf, sizeof whybuf)) != NULL) {
            /* The message goes to stderr and from there to logs. A value
             * with an '@' (a URL's "user:password@") or a '?' (a query
             * such as "?password=") may hold a secret: it is not quoted. */
            if (strpbrk(value, "@?") != NULL)
                set_err(errbuf, errlen, "%s: the value given (not repeated here) %s", where,
                        why);
            else
                set_err(errbuf, errlen, "%s: '%s' %s", where, value, why);
            return PC_EINVAL;
        }
        return set_string(cfg, o, value);

    case OPT_BOOL: {
        static const char *const yes[] = {"1", "true", "yes", "on", NULL};
        static const char *const no[] = {"0", "false", "no", "off", NULL};
        for (size_t i = 0; yes[i] != NULL; i++)
            if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
                *(int *)(void *)((char *)cfg + o->offset) = strcasecmp(value, yes[i]) == 0;
                return 0;
            }
        set_err(errbuf, errlen, "%s: '%s' is not true or false", where, value);
        return PC_EINVAL;
    }

    case OPT_ENUM:
        for (size_t i = 0; o->choices[i] != NULL; i++) {
            /* Store the table's spelling so users of cfg compare with
             * plain strcmp whatever case was written. */
            if (strcasecmp(value, o->choices[i]) == 0)
                return set_string(cfg, o, o->choices[i]);
        }
        {
            char list[128] = "";
            size_t used = 0;

            for (size_t i = 0; o->choices[i] != NULL && used < sizeof(list); i++)
                used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
                                         i ? "|" : "", o->choices[i]);
            set_err(errbuf, errlen, "%s: '%s' is not one of %s", where, value, list);
        }
        return PC_EINVAL;

    case OPT_UINT:
    case OPT_SIZE:
    case OPT_DURATION:
        rc = parse_number(o, value, &n, &why);
        if (rc != 0) {
            set_err(errbuf, errlen, "%s: '%s' %s", where, value, why);
            return PC_EINVAL;
        }
        if (n < o->min) {
            pc_opt_format_value(o->type, o->min, lim, sizeof(lim));
            set_err(errbuf, errlen, "%s: '%s' is below the minimum of %s", where, value, lim);
            return PC_EINVAL;
        }
        if (n > o->max) {
            pc_opt_format_value(o->type, o->max, lim, sizeof(lim));
            set_err(errbuf, errlen, "%s: '%s' is above the maximum of %s", where, value, lim);
            return PC_EINVAL;
        }
        if (o->type == OPT_SIZE)
            *field_size(cfg, o) = (size_t)n;
        else
            *field_u64(cfg, o) = n;
        return 0;
    }
    set_err(errbuf, errlen, "%s: option has an unknown type (bug)", where);
    return PC_EINTERNAL;
}

/* ---- sources -------------------------------------------------------------- */

static int load_defaults(loader_t *ld, char *errbuf, size_t errlen)
{
    const src_t src = {.kind = SRC_DEFAULT};

    for (size_t i = 0; i < pc_opt_count; i++) {
        int rc;

        if (pc_opt_table[i].def == NULL)
            continue;
        /* A failure here is a bad row in pc_opt_table[]; test_config's
         * defaults test catches it before anyone else can. */
        rc = opt_set(ld, &pc_opt_table[i], pc_opt_table[i].def, &src, errbuf, errlen);
        if (rc != 0)
            return rc == PC_EINVAL ? PC_EINTERNAL : rc;
    }
    return 0;
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return s;
}

/*
 * Reads "name = value" lines. The value is the rest of the line with
 * surrounding blanks removed: there are no quotes and no trailing
 * comments, because a value such as a Redis key prefix may itself
 * contain '#' or quote characters. "name =" sets the empty string.
 *
 * A file that sets a secret (a non-empty token) is held to the rule of
 * a --token-file (pc_secret_file_read): no access at all for group or
 * others. Config files are often world-readable, which is fine for the
 * rest of what they say, so the rule applies only once a secret is
 * found; the mode is that of the file actually opened (symlinks
 * followed), so nothing can swap it between the check and the read.
 */
static int load_file(loader_t *ld, const char *path, char *errbuf, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    src_t src = {.kind = SRC_FILE, .file = path, .line = 0};
    struct stat st;
    int rc = 0;

    if (f == NULL) {
        set_err(errbuf, errlen, "config file %s: %s", path, strerror(errno));
        return PC_EIO;
    }
    if (fstat(fileno(f), &st) != 0) {
        set_err(errbuf, errlen, "config file %s: %s", path, strerror(errno));
        fclose(f);
        return PC_EIO;
    }
    for (;;) {
        char *name, *value, *eq;
        const opt_t *o;

        errno = 0;
        if (getline(&line, &cap, f) < 0) {
            if (ferror(f)) {
                set_err(errbuf, errlen, "config file %s: %s", path,
                        strerror(errno ? errno : EIO));
                rc = PC_EIO;
            }
            break;
        }
        src.line++;
        name = trim(line);
        if (*name == '\0' || *name == '#')
            continue;
        eq = strchr(name, '=');
        if (eq == NULL) {
            set_err(errbuf, errlen, "config file %s line %u: expected 'name = value', got '%s'",
                    path, src.line, name);
            rc = PC_EINVAL;
            break;
        }
        *eq = '\0';
        value = trim(eq + 1);
        name = trim(name);
        if (*name == '\0') {
            set_err(errbuf, errlen, "config file %s line %u: expected 'name = value', got no name",
                    path, src.line);
            rc = PC_EINVAL;
            break;
        }
        o = pc_opt_find(name, strlen(name));
        if (o == NULL) {
            set_err(errbuf, errlen, "config file %s line %u: unknown option '%s'", path,
                    src.line, name);
            rc = PC_EINVAL;
            break;
        }
        if (o->not_in_file) {
            set_err(errbuf, errlen,
                    "config file %s line %u: '%s' cannot be set in a config file", path,
                    src.line, name);
            rc = PC_EINVAL;
            break;
        }
        if (o->not_flag && *value != '\0' && (st.st_mode & 077) != 0) {
            set_err(errbuf, errlen,
                    "config file %s sets %s (line %u) but is readable or writable by "
                    "group/others (mode %04o): chmod 600 %s, or move it to a token-file",
                    path, o->name, src.line, (unsigned)(st.st_mode & 07777), path);
            rc = PC_EPERM;
            break;
        }
        rc = opt_set(ld, o, value, &src, errbuf, errlen);
        if (rc != 0)
            break;
    }
    free(line);
    fclose(f);
    return rc;
}

/*
 * Only the variables named after options are read. Other PEERCACHE_*
 * variables are not an error: PEERCACHE_NODES belongs to peercache-cli,
 * and a shell that exports it must still be able to start a node.
 * (PEERCACHE_TOKEN is shared on purpose: the node requires the token the
 * CLI sends.)
 */
static int load_env(loader_t *ld, char **envp, char *errbuf, size_t errlen)
{
    const src_t src = {.kind = SRC_ENV};
    char name[ENV_NAME_MAX];

    for (size_t i = 0; i < pc_opt_count; i++) {
        const char *value;
        int rc;

        pc_opt_env_name(&pc_opt_table[i], name, sizeof(name));
        value = env_get(envp, name);
        if (value == NULL)
            continue;
        rc = opt_set(ld, &pc_opt_table[i], value, &src, errbuf, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

enum { FLAG_OPTION = 0, FLAG_HELP = 1, FLAG_VERSION = 2 };

/*
 * Reads the flag at argv[*i] (advancing *i past its value, if separate).
 * FLAG_OPTION with *opt and *value set, FLAG_HELP, FLAG_VERSION, or
 * PC_EINVAL with the reason in errbuf. A value is whatever the next
 * argument is, even if it starts with "-", as with getopt: that keeps
 * "--redis-prefix -x-" possible, and a mistake such as "--memory --listen"
 * still gets a precise error ("--memory: '--listen' is not a size").
 */
static int scan_flag(int argc, char **argv, int *i, const opt_t **opt, const char **value,
                     char *errbuf, size_t errlen)
{
    const char *arg = argv[*i];
    const char *name, *eq;
    size_t len;

    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
        return FLAG_HELP;
    if (strcmp(arg, "--version") == 0)
        return FLAG_VERSION;
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
        if (arg[0] == '-' && arg[1] != '\0' && arg[1] != '-')
            set_err(errbuf, errlen, "unknown option '%s' (options are --name, see --help)",
                    arg);
        else
            set_err(errbuf, errlen, "unexpected argument '%s' (options start with --)", arg);
        return PC_EINVAL;
    }
    name = arg + 2;
    eq = strchr(name, '=');
    len = eq ? (size_t)(eq - name) : strlen(name);
    *opt = pc_opt_find(name, len);
    if (*opt == NULL) {
        if ((len == 4 && memcmp(name, "help", 4) == 0) ||
            (len == 7 && memcmp(name, "version", 7) == 0))
            set_err(errbuf, errlen, "--%.*s takes no value", (int)len, name);
        else
            set_err(errbuf, errlen, "unknown option '--%.*s'", (int)len, name);
        return PC_EINVAL;
    }
    if ((*opt)->not_flag) {
        char env[ENV_NAME_MAX];

        pc_opt_env_name(*opt, env, sizeof(env));
        set_err(errbuf, errlen,
                "--%s cannot be a flag (it would show in ps): set %s or use a file", (*opt)->name,
                env);
        return PC_EINVAL;
    }
    if (eq != NULL) {
        *value = eq + 1;
    } else if ((*opt)->type == OPT_BOOL) {
        *value = "true"; /* a bool flag takes no separate value */
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        set_err(errbuf, errlen, "--%s: missing value (%s)", (*opt)->name,
                (*opt)->metavar ? (*opt)->metavar : "see --help");
        return PC_EINVAL;
    }
    return FLAG_OPTION;
}

/*
 * First pass over argv: finds --help / --version, the last --config, and
 * the first bad flag or value in argv order, without touching the real
 * config (values are tried on a scratch one). Checking values here, not
 * only when the flags are applied, keeps the first mistake the one that
 * is reported: "--memory --listen x:1" is about --memory, not about a
 * stray "x:1". --help wins over any error, so that a user who got an
 * option wrong can always ask for help (and --version likewise).
 */
static int check_flags(int argc, char **argv, const char **config, char *errbuf,
                       size_t errlen)
{
    const src_t src = {.kind = SRC_FLAG};
    loader_t scratch;
    int first_err = 0;
    bool help = false, version = false;

    memset(&scratch, 0, sizeof(scratch));
    for (int i = 1; i < argc; i++) {
        const opt_t *o = NULL;
        const char *value = NULL;
        /* Only the first error's message is kept. */
        char *eb = first_err ? NULL : errbuf;
        size_t el = first_err ? 0 : errlen;
        int rc = scan_flag(argc, argv, &i, &o, &value, eb, el);

        if (rc == FLAG_OPTION)
            rc = opt_set(&scratch, o, value, &src, eb, el);
        else if (rc == FLAG_VERSION)
            version = true;
        if (rc == FLAG_HELP) {
            help = true;
            break;
        }
        if (rc < 0 && first_err == 0)
            first_err = rc;
        if (rc == 0 && strcmp(o->name, "config") == 0)
            *config = value;
    }
    pc_config_free(&scratch.cfg);
    if (help)
        return FLAG_HELP;
    if (version)
        return FLAG_VERSION;
    return first_err;
}

static int load_flags(loader_t *ld, int argc, char **argv, char *errbuf, size_t errlen)
{
    const src_t src = {.kind = SRC_FLAG};

    for (int i = 1; i < argc; i++) {
        const opt_t *o = NULL;
        const char *value = NULL;
        int rc = scan_flag(argc, argv, &i, &o, &value, errbuf, errlen);

        if (rc != FLAG_OPTION)
            return rc < 0 ? rc : PC_EINTERNAL; /* check_flags saw these */
        rc = opt_set(ld, o, value, &src, errbuf, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Where o's current value came from: "default", "from --redis", "from
 * PEERCACHE_REDIS" or "from config file f line 3". */
static void describe_origin(loader_t *ld, const opt_t *o, char *buf, size_t len)
{
    const src_t *src = &ld->origin[o - pc_opt_table];

    if (src->kind == SRC_DEFAULT)
        snprintf(buf, len, "default");
    else if (src->kind == SRC_FILE)
        snprintf(buf, len, "from config file %s line %u", src->file, src->line);
    else if (src->kind == SRC_FLAG)
        snprintf(buf, len, "from --%s", o->name);
    else {
        char env[ENV_NAME_MAX];

        pc_opt_env_name(o, env, sizeof(env));
        snprintf(buf, len, "from %s", env);
    }
}

/* "--max-key 2mb (from PEERCACHE_MAX_KEY)", for cross-check messages. */
static void describe_value(loader_t *ld, const char *name, char *buf, size_t len)
{
    const opt_t *o = pc_opt_find(name, strlen(name));
    char value[32], where[512];
    uint64_t v = o->type == OPT_SIZE ? (uint64_t)*field_size(&ld->cfg, o)
                                     : *field_u64(&ld->cfg, o);

    pc_opt_format_value(o->type, v, value, sizeof(value));
    describe_origin(ld, o, where, sizeof(where));
    snprintf(buf, len, "--%s %s (%s)", o->name, value, where);
}

/* "--redis-user (from PEERCACHE_REDIS_USER)": a string option, named
 * without its value (which may be a path or a name nobody needs echoed). */
static void describe_set(loader_t *ld, const char *name, char *buf, size_t len)
{
    const opt_t *o = pc_opt_find(name, strlen(name));
    char where[512];

    describe_origin(ld, o, where, sizeof(where));
    snprintf(buf, len, "--%s (%s)", o->name, where);
}

/*
 * The Redis options among themselves. --redis has been checked by then
 * (opt_set), so it parses; whether it is "none" is pc_backend_addr's
 * decision, not a second string compare here.
 */
static int check_redis_options(loader_t *ld, char *errbuf, size_t errlen)
{
    pc_config_t *cfg = &ld->cfg;
    pc_backend_addr_t addr;
    bool none = pc_backend_addr_parse(cfg->redis, &addr, NULL, 0) == 0 &&
                addr.mode == PC_BACKEND_NONE;
    char a[600], b[600];

    if (none) {
        describe_set(ld, "redis", b, sizeof(b));
        if (cfg->redis_password_file[0] != '\0' || cfg->redis_user[0] != '\0') {
            describe_set(ld, cfg->redis_password_file[0] != '\0' ? "redis-password-file"
                                                                  : "redis-user",
                         a, sizeof(a));
            set_err(errbuf, errlen,
                    "%s is set but %s is none: there is no Redis to authenticate to", a, b);
            return PC_EINVAL;
        }
        if (cfg->redis_wait > 0) {
            describe_value(ld, "redis-wait", a, sizeof(a));
            set_err(errbuf, errlen,
                    "%s needs a Redis whose replicas to wait for, but %s is none", a, b);
            return PC_EINVAL;
        }
    }
    if (cfg->redis_user[0] != '\0' && cfg->redis_password_file[0] == '\0') {
        describe_set(ld, "redis-user", a, sizeof(a));
        set_err(errbuf, errlen,
                "%s needs --redis-password-file: a Redis user authenticates with a "
                "password (AUTH user password)",
                a);
        return PC_EINVAL;
    }
    return 0;
}

/* "a.b.c.d:port" or "[v6]:port": an address, not a name to resolve. */
static bool is_ip_hostport(const char *s)
{
    char host[256];
    int port;
    struct in6_addr a6;
    struct in_addr a4;
    if (s == NULL || pc_addr_parse(s, host, sizeof host, &port) != 0)
        return false;
    char *zone = strchr(host, '%');
    if (zone != NULL)
        *zone = '\0';
    return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

/*
 * Rules between options, checked on the merged result because each value
 * can be fine alone and come from a different source than the other.
 */

static int check_merged(loader_t *ld, char *errbuf, size_t errlen)
{
    pc_config_t *cfg = &ld->cfg;
    char a[600], b[600], c[600];
    uint64_t need;

    if (cfg->name == NULL || cfg->name[0] == '\0') {
        char *copy = strdup(cfg->listen);

        if (copy == NULL)
            return PC_ENOMEM;
        free(cfg->name);
        cfg->name = copy;
    }
    if (strlen(cfg->name) > 255) {
        set_err(errbuf, errlen, "--name is longer than 255 bytes");
        return PC_EINVAL;
    }
    if (cfg->advertise == NULL || cfg->advertise[0] == '\0') {
        char *copy = strdup(cfg->listen);

        if (copy == NULL)
            return PC_ENOMEM;
        free(cfg->advertise);
        cfg->advertise = copy;
    }
    if (cfg->gossip == NULL || cfg->gossip[0] == '\0') {
        char *copy = strdup(cfg->listen);

        if (copy == NULL)
            return PC_ENOMEM;
        free(cfg->gossip);
        cfg->gossip = copy;
    }
    /* Gossip datagrams go to the addresses members give, as given: a host
     * name there would fail at start (pc_cluster.c), so it fails here. */
    if (!is_ip_hostport(cfg->gossip)) {
        set_err(errbuf, errlen,
                "--gossip %s: must be an IP address and port (it defaults to --listen: "
                "with a host name there, set --gossip to the address to gossip on)",
                cfg->gossip);
        return PC_EINVAL;
    }
    if (cfg->probe_timeout_ms >= cfg->probe_interval_ms) {
        describe_value(ld, "probe-timeout", a, sizeof(a));
        describe_value(ld, "probe-interval", b, sizeof(b));
        set_err(errbuf, errlen, "%s must be less than %s", a, b);
        return PC_EINVAL;
    }
    /* Both are at most WIRE_MAX, so the sum cannot overflow. */
    need = (uint64_t)cfg->max_key + (uint64_t)cfg->max_value + FRAME_SLACK;
    if ((uint64_t)cfg->max_frame < need) {
        describe_value(ld, "max-frame", a, sizeof(a));
        describe_value(ld, "max-key", b, sizeof(b));
        describe_value(ld, "max-value", c, sizeof(c));
        set_err(errbuf, errlen,
                "%s is too small for %s + %s + %d bytes of framing: raise --max-frame to at "
                "least %" PRIu64 " or lower the others",
                a, b, c, FRAME_SLACK, need);
        return PC_EINVAL;
    }
    if (cfg->insecure && cfg->cluster_key[0] != '\0') {
        set_err(errbuf, errlen, "--insecure and --cluster-key contradict each other: pick one");
        return PC_EINVAL;
    }
    if (!cfg->insecure && cfg->cluster_key[0] == '\0') {
        set_err(errbuf, errlen,
                "no --cluster-key: create one with 'peercache-cli keygen FILE' and pass "
                "--cluster-key FILE, or run unprotected with --insecure");
        return PC_EINVAL;
    }
    if (cfg->max_output < cfg->max_frame) {
        describe_value(ld, "max-output", a, sizeof(a));
        describe_value(ld, "max-frame", b, sizeof(b));
        set_err(errbuf, errlen,
                "%s is smaller than %s: a whole reply must fit in the output queue", a, b);
        return PC_EINVAL;
    }
    return check_redis_options(ld, errbuf, errlen);
}

/* ---- public API ----------------------------------------------------------- */

int pc_config_load(pc_config_t *cfg, int argc, char **argv, char **envp, char *errbuf,
                   size_t errlen)
{
    loader_t ld;
    const char *config = NULL;
    int rc;

    set_err(errbuf, errlen, "%s", "");
    if (cfg == NULL || (argc > 0 && argv == NULL)) {
        set_err(errbuf, errlen, "pc_config_load: invalid arguments");
        return PC_EINVAL;
    }
    memset(cfg, 0, sizeof(*cfg));
    memset(&ld, 0, sizeof(ld));

    rc = check_flags(argc, argv, &config, errbuf, errlen);
    if (rc == FLAG_HELP || rc == FLAG_VERSION || rc < 0)
        return rc;
    if (config == NULL)
        config = env_get(envp, "PEERCACHE_CONFIG");

    rc = load_defaults(&ld, errbuf, errlen);
    if (rc == 0 && config != NULL && config[0] != '\0')
        rc = load_file(&ld, config, errbuf, errlen);
    if (rc == 0)
        rc = load_env(&ld, envp, errbuf, errlen);
    if (rc == 0)
        rc = load_flags(&ld, argc, argv, errbuf, errlen);
    if (rc == 0)
        rc = check_merged(&ld, errbuf, errlen);
    if (rc != 0) {
        if (rc == PC_ENOMEM)
            set_err(errbuf, errlen, "out of memory");
        pc_config_free(&ld.cfg);
        return rc;
    }
    /* "--config ''" switches off a PEERCACHE_CONFIG from the environment;
     * report that as no file rather than as an empty name. */
    if (ld.cfg.config_file != NULL && ld.cfg.config_file[0] == '\0') {
        free(ld.cfg.config_file);
        ld.cfg.config_file = NULL;
    }
    *cfg = ld.cfg;
    return 0;
}

void pc_config_free(pc_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < pc_opt_count; i++) {
        if (pc_opt_table[i].type == OPT_STRING || pc_opt_table[i].type == OPT_ENUM) {
            char **field = field_str(cfg, &pc_opt_table[i]);

            free(*field);
            *field = NULL;
        }
    }
    memset(cfg, 0, sizeof(*cfg));
}
