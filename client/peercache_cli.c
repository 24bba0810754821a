/*
 * peercache_cli.c -- peercache-cli, a command-line client for scripts and
 * operators, built on libpeercache only (no protocol details here), and
 * the tool that makes and edits cluster key files (proto/pc_seal; those
 * commands never touch the network).
 *
 * Output is meant to be usable from a shell both ways: text by default
 * (values as stored, one per line), JSON with --json for anything that
 * must survive newlines or binary bytes. Exit status separates "the
 * answer is no" (1: not found, condition failed) from "something is
 * wrong" (2), so `if peercache-cli get k >/dev/null` means what it says.
 *
 * Commands and options are described once, in cmds[] and usage(); the
 * checks of which option fits which command are driven by cmds[] too.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "pc_buf.h"
#include "pc_client.h"
#include "pc_json.h"
#include "pc_seal.h"
#include "peercache_cli_top.h"

#ifndef PC_VERSION_STRING
#define PC_VERSION_STRING "unknown"
#endif

#define PROG "peercache-cli"
#define DEFAULT_NODES "127.0.0.1:7400"

/*
 * Most bytes `set` reads from stdin. Far above any sensible max-value
 * (the server's default is 1 MiB); it exists so that a mistake such as
 * `yes | peercache-cli set k` fails instead of eating all memory.
 */
#define STDIN_MAX ((size_t)64 * 1024 * 1024)

enum exit_code { EXIT_OK = 0, EXIT_NO = 1, EXIT_ERR = 2 };

/* Options that only some commands take, and commands that need no node. */
enum {
    ALLOW_RAW = 1 << 0, /* --raw */
    ALLOW_SET = 1 << 1, /* --ttl --flags --nx --xx --cas */
    LOCAL = 1 << 2,     /* works on local files: no client, no --nodes */
};

typedef struct cli {
    const char *nodes;
    const char *nodes_from; /* "--nodes", "PEERCACHE_NODES" or NULL (default) */
    const char *token;
    char token_buf[4096]; /* --token-file's first line */
    int timeout_ms;
    bool no_ring;
    bool json;
    bool raw;
    const char *set_opt; /* first set-only option given, for messages */
    pc_set_options_t set;
    const char *cmd;
    char **args; /* the command's arguments */
    int nargs;
} cli_t;

typedef struct cmd {
    const char *name;
    int min_args, max_args;
    unsigned allow;
    const char *args_help; /* for "expected ..." messages */
    int (*run)(pc_client_t *c, const cli_t *cli); /* c is NULL for LOCAL commands */
} cmd_t;

/* ---- output helpers ------------------------------------------------------------ */

/* Writes p[0..n) as a JSON string; the bytes must be valid UTF-8
 * (pc_json.h). */
static void json_string(FILE *out, const uint8_t *p, size_t n)
{
    pc_buf_t b;

    pc_buf_init(&b, 0);
    if (pc_json_string(&b, p, n) == 0)
        fwrite(b.data, 1, b.len, out);
    else
        fputs("\"?\"", out); /* out of memory */
    pc_buf_free(&b);
}

static void base64(FILE *out, const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t left = n - i;

        if (left > 1)
            v |= (uint32_t)p[i + 1] << 8;
        if (left > 2)
            v |= p[i + 2];
        fputc(tab[v >> 18 & 63], out);
        fputc(tab[v >> 12 & 63], out);
        fputc(left > 1 ? tab[v >> 6 & 63] : '=', out);
        fputc(left > 2 ? tab[v & 63] : '=', out);
    }
}

/*
 * Writes "field":"text" if the bytes are UTF-8, else "field_base64":"..."
 * -- JSON strings hold text, and \u escapes of single bytes would silently
 * turn binary into different bytes; base64 round-trips exactly.
 */
static void json_bytes(FILE *out, const char *field, const void *p, size_t n)
{
    if (pc_json_utf8_valid(p, n)) {
        fprintf(out, "\"%s\":", field);
        json_string(out, p, n);
    } else {
        fprintf(out, "\"%s_base64\":\"", field);
        base64(out, p, n);
        fputc('"', out);
    }
}

/* A C string that should be text (messages, stat names), as a JSON string;
 * bytes that are not UTF-8 become '?'. */
static void json_text(FILE *out, const char *s)
{
    pc_buf_t b;

    pc_buf_init(&b, 0);
    if (pc_json_text(&b, s) == 0)
        fwrite(b.data, 1, b.len, out);
    else
        fputs("\"?\"", out); /* out of memory */
    pc_buf_free(&b);
}

static void json_value(FILE *out, const char *key, const pc_value_t *v)
{
    fputc('{', out);
    json_bytes(out, "key", key, strlen(key));
    fputs(",\"found\":true,", out);
    json_bytes(out, "value", v->data, v->len);
    fprintf(out, ",\"flags\":%" PRIu32 ",\"version\":%" PRIu64 ",\"ttl_ms\":%" PRId64 "}",
            v->flags, v->version, v->ttl_ms);
}

static void json_missing(FILE *out, const char *key, int status)
{
    fputc('{', out);
    json_bytes(out, "key", key, strlen(key));
    fputs(",\"found\":false", out);
    if (status != PC_ENOTFOUND) {
        fputs(",\"error\":", out);
        json_text(out, pc_strerror(status));
    }
    fputc('}', out);
}

/* ---- errors ------------------------------------------------------------------------ */

static int exit_for(int rc)
{
    if (rc == 0)
        return EXIT_OK;
    if (rc == PC_ENOTFOUND || rc == PC_EEXISTS || rc == PC_ENOTSTORED)
        return EXIT_NO;
    return EXIT_ERR;
}

/*
 * "peercache-cli: set: backend unavailable: <server message>". The
 * client's message is left out when it says nothing the code does not.
 */
static int report(pc_client_t *c, const char *cmd, int rc)
{
    const char *what = pc_strerror(rc);
    const char *msg = pc_client_errmsg(c);

    if (msg[0] == '\0' || strcasecmp(msg, what) == 0)
        fprintf(stderr, "%s: %s: %s\n", PROG, cmd, what);
    else
        fprintf(stderr, "%s: %s: %s: %s\n", PROG, cmd, what, msg);
    return exit_for(rc);
}

/* ---- commands ---------------------------------------------------------------------- */

static int cmd_get(pc_client_t *c, const cli_t *cli)
{
    const char *key = cli->args[0];
    pc_value_t v;
    int rc = pc_client_get(c, key, strlen(key), &v);

    if (rc == PC_ENOTFOUND && cli->json) {
        json_missing(stdout, key, rc);
        fputc('\n', stdout);
        return EXIT_NO;
    }
    if (rc != 0)
        return report(c, "get", rc);
    if (cli->json) {
        json_value(stdout, key, &v);
        fputc('\n', stdout);
    } else {
        fwrite(v.data, 1, v.len, stdout);
        if (!cli->raw)
            fputc('\n', stdout);
    }
    pc_value_free(&v);
    return EXIT_OK;
}

/* Prints why set's value could not be read; EXIT_ERR. */
static int stdin_error(const char *why)
{
    fprintf(stderr, "%s: set: %s\n", PROG, why);
    return EXIT_ERR;
}

/*
 * Reads all of stdin into a malloc'd buffer, up to STDIN_MAX bytes. The
 * buffer never grows past STDIN_MAX + 1: that one extra byte is how an
 * oversized input is told apart from one of exactly STDIN_MAX bytes.
 * 0 or EXIT_ERR (after a message).
 */
static int read_stdin(uint8_t **out, size_t *len)
{
    size_t cap = 64 * 1024, n = 0;
    uint8_t *buf = malloc(cap);

    if (buf == NULL)
        return stdin_error("out of memory");
    for (;;) {
        size_t got;

        if (n == cap) {
            uint8_t *grown;

            if (n > STDIN_MAX) {
                free(buf);
                return stdin_error("the value on stdin is larger than 64 MiB");
            }
            cap = cap > STDIN_MAX / 2 ? STDIN_MAX + 1 : cap * 2;
            grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                return stdin_error("out of memory");
            }
            buf = grown;
        }
        got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(stdin)) {
        free(buf);
        return stdin_error("cannot read stdin");
    }
    *out = buf;
    *len = n;
    return 0;
}

static int cmd_set(pc_client_t *c, const cli_t *cli)
{
    const char *key = cli->args[0];
    uint8_t *from_stdin = NULL;
    const void *val;
    size_t vlen;
    uint64_t version = 0;
    int rc;

    if (cli->nargs < 2 || strcmp(cli->args[1], "-") == 0) {
        rc = read_stdin(&from_stdin, &vlen);
        if (rc != 0)
            return rc;
        val = from_stdin;
    } else {
        val = cli->args[1];
        vlen = strlen(cli->args[1]);
    }
    rc = pc_client_set(c, key, strlen(key), val, vlen, &cli->set, &version);
    free(from_stdin);
    if (rc != 0)
        return report(c, "set", rc);
    if (cli->json)
        printf("{\"ok\":true,\"version\":%" PRIu64 "}\n", version);
    else
        printf("OK version=%" PRIu64 "\n", version);
    return EXIT_OK;
}

static void print_ok(const cli_t *cli, const char *text)
{
    if (cli->json)
        puts("{\"ok\":true}");
    else
        puts(text);
}

static int cmd_del(pc_client_t *c, const cli_t *cli)
{
    const char *key = cli->args[0];
    int rc = pc_client_del(c, key, strlen(key));

    if (rc != 0)
        return report(c, "del", rc);
    print_ok(cli, "OK");
    return EXIT_OK;
}

/* Decimal digits only (strtoull would take "-1" and " 5"). */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        unsigned d = (unsigned)(*s - '0');

        if (*s < '0' || *s > '9' || v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int cmd_touch(pc_client_t *c, const cli_t *cli)
{
    const char *key = cli->args[0];
    uint64_t ttl;
    int rc;

    if (!parse_u64(cli->args[1], UINT64_MAX, &ttl)) {
        fprintf(stderr, "%s: touch: '%s' is not a number of milliseconds\n", PROG,
                cli->args[1]);
        return EXIT_ERR;
    }
    rc = pc_client_touch(c, key, strlen(key), ttl);
    if (rc != 0)
        return report(c, "touch", rc);
    print_ok(cli, "OK");
    return EXIT_OK;
}

static int cmd_mget(pc_client_t *c, const cli_t *cli)
{
    size_t n = (size_t)cli->nargs;
    const void **keys = malloc(n * sizeof(*keys));
    size_t *lens = malloc(n * sizeof(*lens));
    pc_mget_item_t *items = NULL;
    int rc, worst = EXIT_OK;

    if (keys == NULL || lens == NULL) {
        free(keys);
        free(lens);
        fprintf(stderr, "%s: mget: out of memory\n", PROG);
        return EXIT_ERR;
    }
    for (size_t i = 0; i < n; i++) {
        keys[i] = cli->args[i];
        lens[i] = strlen(cli->args[i]);
    }
    rc = pc_client_mget(c, n, (const void *const *)keys, lens, &items);
    free(keys);
    free(lens);
    if (rc != 0)
        return report(c, "mget", rc);

    if (cli->json)
        fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
        const char *key = cli->args[i];
        int st = items[i].status;

        if (st != 0 && exit_for(st) > worst)
            worst = exit_for(st);
        if (cli->json) {
            if (i > 0)
                fputc(',', stdout);
            if (st == 0)
                json_value(stdout, key, &items[i].value);
            else
                json_missing(stdout, key, st);
            continue;
        }
        if (st == 0) {
            printf("%s\t", key);
            fwrite(items[i].value.data, 1, items[i].value.len, stdout);
            fputc('\n', stdout);
        } else if (st == PC_ENOTFOUND) {
            printf("%s\t(not found)\n", key);
        } else {
            printf("%s\t(error: %s)\n", key, pc_strerror(st));
        }
        if (st != 0 && st != PC_ENOTFOUND)
            fprintf(stderr, "%s: mget: %s: %s\n", PROG, key, pc_strerror(st));
    }
    if (cli->json)
        fputs("]\n", stdout);
    pc_mget_free(items, n);
    return worst;
}

static int cmd_ping(pc_client_t *c, const cli_t *cli)
{
    int rc = pc_client_ping(c);

    if (rc != 0)
        return report(c, "ping", rc);
    print_ok(cli, "PONG");
    return EXIT_OK;
}

static int cmd_stats(pc_client_t *c, const cli_t *cli)
{
    pc_stat_entry_t *stats;
    size_t n;
    int rc = pc_client_stats(c, &stats, &n);

    if (rc != 0)
        return report(c, "stats", rc);
    if (cli->json)
        fputc('{', stdout);
    for (size_t i = 0; i < n; i++) {
        if (cli->json) {
            if (i > 0)
                fputc(',', stdout);
            json_text(stdout, stats[i].name);
            printf(":%" PRId64, stats[i].value);
        } else {
            printf("%s %" PRId64 "\n", stats[i].name, stats[i].value);
        }
    }
    if (cli->json)
        fputs("}\n", stdout);
    pc_stats_free(stats, n);
    return EXIT_OK;
}

/* A fingerprint as JSON carries it: a string of 16 hex digits, since JSON
 * numbers above 2^53 lose digits in most parsers. */
static void print_cluster_json(const pc_cluster_info_t *ci)
{
    printf("{\"fingerprint\":\"%016" PRIx64 "\",\"replicas\":%u,\"from\":", ci->fingerprint,
           ci->replicas);
    json_text(stdout, ci->from);
    fputs(",\"members\":[", stdout);
    for (size_t i = 0; i < ci->nmembers; i++) {
        const pc_client_member_t *m = &ci->members[i];

        if (i > 0)
            fputc(',', stdout);
        fputs("{\"name\":", stdout);
        json_text(stdout, m->name);
        fputs(",\"addr\":", stdout);
        json_text(stdout, m->addr);
        printf(",\"state\":\"%s\",\"incarnation\":%" PRIu64 ",\"weight\":%" PRIu32
               ",\"owned_slots\":%" PRIu32 ",\"share\":%.6f}",
               pc_client_member_state_name(m->state), m->incarnation, m->weight,
               m->owned_slots, m->share);
    }
    fputs("]}\n", stdout);
}

/*
 * One header line, then one line per member with tab-separated fields:
 * name, address, state, incarnation, weight, share of the keyspace. The
 * share is rounded to 0.1%, so a 3-way split shows as 33.3% or 33.4%.
 */
static int cmd_cluster(pc_client_t *c, const cli_t *cli)
{
    pc_cluster_info_t *ci = NULL;
    int rc = pc_client_cluster(c, &ci);

    if (rc != 0)
        return report(c, "cluster", rc);
    if (cli->json) {
        print_cluster_json(ci);
    } else {
        printf("fingerprint %016" PRIx64 " replicas %u members %zu (from %s)\n", ci->fingerprint,
               ci->replicas, ci->nmembers, ci->from);
        for (size_t i = 0; i < ci->nmembers; i++) {
            const pc_client_member_t *m = &ci->members[i];

            printf("%s\t%s\t%s\t%" PRIu64 "\t%" PRIu32 "\t%.1f%%\n", m->name, m->addr,
                   pc_client_member_state_name(m->state), m->incarnation, m->weight,
                   m->share * 100.0);
        }
    }
    pc_cluster_info_free(&ci);
    return EXIT_OK;
}

static int cmd_top(pc_client_t *c, const cli_t *cli)
{
    if (cli->json) {
        fprintf(stderr, "%s: top: --json does not apply (the view is for a terminal)\n", PROG);
        return EXIT_ERR;
    }
    return cli_top_run(c, cli->token, cli->timeout_ms);
}

/* ---- key files ------------------------------------------------------------------- */

/*
 * keygen and keyring edit the key file a node loads with --cluster-key
 * (format and rules: pc_seal.h, docs/SECURITY.md). Every edit keeps the
 * file's comments and blank lines, checks that the result parses to the
 * keys intended, and replaces the file atomically: a new file (mode 0600)
 * in the same directory, fsync'd, renamed over the old one, so a node
 * reloading on SIGHUP sees the old file or the new one, never a mix.
 * Buffers that held key text are wiped before they are freed.
 */

#define KEY_FILE_MAX (64 * 1024) /* as pc_keyring_load_file reads */

static const char key_file_comment[] =
    "# peercache cluster keys, one per line: the first seals, all open (peercache-cli keyring)\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int key_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "peercache-cli: keyring: <message>"; EXIT_ERR. */
static int key_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: %s: ", PROG, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_ERR;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Makes a rename or create in path's directory durable. Best effort:
 * some file systems refuse fsync on a directory, and the data itself is
 * already on disk by then. */
static void fsync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = slash == NULL ? strdup(".") : strndup(path, len);
    int fd;

    if (dir == NULL)
        return;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* An id as keyring list prints it: exactly 8 hex digits, either case. */
static bool parse_key_id(const char *s, uint32_t *out)
{
    uint32_t v = 0;

    if (strlen(s) != 8)
        return false;
    for (int i = 0; i < 8; i++) {
        char c = s[i];
        unsigned d;

        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

static int cmd_keygen(pc_client_t *c, const cli_t *cli)
{
    const char *path = cli->args[0];
    char line[66];
    uint32_t id;
    int fd, err = 0;

    /* O_EXCL: never overwrite (nor follow a symlink planted there); mode
     * 0600 from the start, so the key is never readable by others. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST)
        return key_fail("keygen",
                        "%s already exists; not overwriting it (to add a key: %s keyring add %s)",
                        path, PROG, path);
    if (fd < 0)
        return key_fail("keygen", "cannot create %s: %s", path, strerror(errno));
    pc_keyring_new_key_line(line, &id);
    if (fchmod(fd, 0600) != 0 || write_all(fd, key_file_comment, strlen(key_file_comment)) != 0 ||
        write_all(fd, line, 65) != 0 || fsync(fd) != 0)
        err = errno;
    sodium_memzero(line, sizeof(line));
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err != 0) {
        unlink(path);
        return key_fail("keygen", "cannot write %s: %s", path, strerror(err));
    }
    fsync_dir(path);
    printf("key id %08" PRIx32 " written to %s\n", id, path);
    return EXIT_OK;
}

typedef struct key_line {
    size_t off, len; /* the line's bytes in the text, without its '\n' */
    bool is_key;
    uint32_t id; /* if is_key */
} key_line_t;

typedef struct key_file {
    const char *path;
    char *text; /* the file as read; wiped before it is freed */
    size_t len;
    key_line_t *line;
    size_t nlines;
    size_t nkeys;
    size_t first_key; /* index in line[] of the primary */
    pc_keyring_t *kr;
} key_file_t;

static void key_file_free(key_file_t *kf)
{
    if (kf->text != NULL)
        sodium_memzero(kf->text, kf->len);
    free(kf->text);
    free(kf->line);
    pc_keyring_free(&kf->kr);
}

static int read_text(const char *cmd, const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = malloc(KEY_FILE_MAX + 1);
    size_t n = 0;
    ssize_t r;

    if (fd < 0 || buf == NULL) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        free(buf);
        return key_fail(cmd, "cannot read %s: %s", path, strerror(e));
    }
    for (;;) {
        r = read(fd, buf + n, KEY_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n > KEY_FILE_MAX)
            break;
    }
    if (r < 0 || n > KEY_FILE_MAX) {
        int e = r < 0 ? errno : EFBIG;
        sodium_memzero(buf, n);
        free(buf);
        close(fd);
        return key_fail(cmd, "cannot read %s: %s", path, strerror(e));
    }
    close(fd);
    *out = buf;
    *len = n;
    return 0;
}

/*
 * Loads a key file the way a node does (pc_keyring_load_file: the mode
 * check and the parse), then its text line by line, so that an edit can
 * keep everything but the line it changes. 0 or EXIT_ERR.
 */
static int key_file_load(const char *cmd, const char *path, key_file_t *kf)
{
    char err[512];
    size_t k = 0;
    int rc;

    memset(kf, 0, sizeof(*kf));
    kf->path = path;
    rc = pc_keyring_load_file(path, &kf->kr, err, sizeof(err));
    if (rc != 0)
        return key_fail(cmd, "%s", err);
    rc = read_text(cmd, path, &kf->text, &kf->len);
    if (rc != 0)
        return rc;

    kf->line = calloc(kf->len + 1, sizeof(*kf->line));
    if (kf->line == NULL)
        return key_fail(cmd, "out of memory");
    for (size_t pos = 0; pos < kf->len;) {
        key_line_t *l = &kf->line[kf->nlines++];
        const char *nl = memchr(kf->text + pos, '\n', kf->len - pos);
        pc_keyring_t *one = NULL;

        l->off = pos;
        l->len = nl != NULL ? (size_t)(nl - kf->text) - pos : kf->len - pos;
        pos += l->len + (nl != NULL);
        /* The whole file parsed, so a line that holds no key is a comment
         * or blank; the module's parser says which, by the same rules. */
        if (pc_keyring_parse(kf->text + l->off, l->len, &one, NULL, 0) != 0)
            continue;
        l->is_key = true;
        l->id = pc_keyring_id(one, 0);
        pc_keyring_free(&one);
        if (k == 0)
            kf->first_key = kf->nlines - 1;
        if (k >= pc_keyring_count(kf->kr) || pc_keyring_id(kf->kr, k) != l->id)
            return key_fail(cmd, "%s changed while it was read; try again", path);
        k++;
    }
    if (k != pc_keyring_count(kf->kr))
        return key_fail(cmd, "%s changed while it was read; try again", path);
    kf->nkeys = k;
    return 0;
}

/* Index in line[] of the key with this id, or SIZE_MAX. */
static size_t key_file_find(const key_file_t *kf, uint32_t id)
{
    for (size_t i = 0; i < kf->nlines; i++) {
        if (kf->line[i].is_key && kf->line[i].id == id)
            return i;
    }
    return SIZE_MAX;
}

/*
 * Writes kf's lines again, with line `move` (SIZE_MAX: none) placed just
 * before the primary, line `drop` (SIZE_MAX: none) left out, and `extra`
 * (a whole line, or NULL) appended; checks that the result parses to the
 * ids `want` in order; and replaces the file atomically. 0 or EXIT_ERR.
 */
static int key_file_rewrite(const char *cmd, const key_file_t *kf, size_t move, size_t drop,
                            const char *extra, const uint32_t *want, size_t nwant)
{
    size_t cap = kf->len + kf->nlines + (extra != NULL ? strlen(extra) : 0) + 1;
    char *out = malloc(cap), *real = NULL, *tmp = NULL;
    pc_keyring_t *check = NULL;
    size_t n = 0;
    int fd = -1, rc = EXIT_ERR, err = 0;

    if (out == NULL)
        return key_fail(cmd, "out of memory");
    for (size_t i = 0; i < kf->nlines; i++) {
        const key_line_t *l;

        if (i == move || i == drop)
            continue;
        if (i == kf->first_key && move != SIZE_MAX) {
            l = &kf->line[move];
            memcpy(out + n, kf->text + l->off, l->len);
            n += l->len;
            out[n++] = '\n';
        }
        l = &kf->line[i];
        memcpy(out + n, kf->text + l->off, l->len);
        n += l->len;
        out[n++] = '\n';
    }
    if (extra != NULL) {
        memcpy(out + n, extra, strlen(extra));
        n += strlen(extra);
    }

    /* Never write a file that a node would refuse or read differently. */
    if (pc_keyring_parse(out, n, &check, NULL, 0) != 0 || pc_keyring_count(check) != nwant) {
        key_fail(cmd, "internal error: the new key file would not parse as intended");
        goto done;
    }
    for (size_t i = 0; i < nwant; i++) {
        if (pc_keyring_id(check, i) != want[i]) {
            key_fail(cmd, "internal error: the new key file would not parse as intended");
            goto done;
        }
    }

    /* Rewrite the file a symlink points to, next to it, not the link. */
    real = realpath(kf->path, NULL);
    if (real == NULL || (tmp = malloc(strlen(real) + sizeof(".tmp.XXXXXX"))) == NULL) {
        key_fail(cmd, "cannot resolve %s: %s", kf->path, strerror(errno));
        goto done;
    }
    sprintf(tmp, "%s.tmp.XXXXXX", real);
    fd = mkstemp(tmp); /* O_EXCL, mode 0600 */
    if (fd < 0) {
        key_fail(cmd, "cannot create a file next to %s: %s", real, strerror(errno));
        goto done;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, out, n) != 0 || fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err == 0 && rename(tmp, real) != 0)
        err = errno;
    if (err != 0) {
        unlink(tmp);
        key_fail(cmd, "cannot write %s: %s", real, strerror(err));
        goto done;
    }
    fsync_dir(real);
    rc = 0;
done:
    sodium_memzero(out, cap);
    free(out);
    free(tmp);
    free(real);
    pc_keyring_free(&check);
    return rc;
}

/* The ids an edit should leave, in order: line `move` first, line `drop`
 * left out, *add (if not NULL) last. */
static size_t ids_after(const key_file_t *kf, size_t move, size_t drop, const uint32_t *add,
                        uint32_t ids[PC_KEYRING_MAX + 1])
{
    size_t n = 0;

    if (move != SIZE_MAX)
        ids[n++] = kf->line[move].id;
    for (size_t i = 0; i < kf->nlines; i++) {
        if (kf->line[i].is_key && i != move && i != drop)
            ids[n++] = kf->line[i].id;
    }
    if (add != NULL)
        ids[n++] = *add;
    return n;
}

static int keyring_list(const key_file_t *kf)
{
    for (size_t i = 0; i < kf->nkeys; i++)
        printf("%zu %08" PRIx32 "%s\n", i + 1, pc_keyring_id(kf->kr, i), i == 0 ? " primary" : "");
    return EXIT_OK;
}

static int keyring_add(const key_file_t *kf)
{
    uint32_t ids[PC_KEYRING_MAX + 1], id;
    char line[66];
    int rc;

    if (kf->nkeys >= PC_KEYRING_MAX)
        return key_fail("keyring",
                        "%s already holds %d keys, the most a key file may hold: remove one first",
                        kf->path, PC_KEYRING_MAX);
    /* A fresh key whose id no key in the ring has (ids are 32 bits). */
    do {
        pc_keyring_new_key_line(line, &id);
    } while (key_file_find(kf, id) != SIZE_MAX);
    rc = key_file_rewrite("keyring", kf, SIZE_MAX, SIZE_MAX, line, ids,
                          ids_after(kf, SIZE_MAX, SIZE_MAX, &id, ids));
    sodium_memzero(line, sizeof(line));
    if (rc != 0)
        return rc;
    printf("key id %08" PRIx32 " added to %s\n", id, kf->path);
    return EXIT_OK;
}

static int keyring_use(const key_file_t *kf, uint32_t id)
{
    uint32_t ids[PC_KEYRING_MAX + 1];
    size_t i = key_file_find(kf, id);
    int rc;

    if (i == SIZE_MAX) {
        key_fail("keyring", "no key with id %08" PRIx32 " in %s", id, kf->path);
        return EXIT_NO;
    }
    if (i == kf->first_key) {
        printf("key id %08" PRIx32 " is already the primary in %s\n", id, kf->path);
        return EXIT_OK;
    }
    rc = key_file_rewrite("keyring", kf, i, SIZE_MAX, NULL, ids,
                          ids_after(kf, i, SIZE_MAX, NULL, ids));
    if (rc != 0)
        return rc;
    printf("key id %08" PRIx32 " is now the primary in %s\n", id, kf->path);
    return EXIT_OK;
}

static int keyring_remove(const key_file_t *kf, uint32_t id)
{
    uint32_t ids[PC_KEYRING_MAX + 1];
    size_t i = key_file_find(kf, id);
    int rc;

    if (i == SIZE_MAX) {
        key_fail("keyring", "no key with id %08" PRIx32 " in %s", id, kf->path);
        return EXIT_NO;
    }
    if (kf->nkeys == 1)
        return key_fail("keyring",
                        "key id %08" PRIx32 " is the only key in %s: a key file needs one", id,
                        kf->path);
    if (i == kf->first_key)
        return key_fail("keyring",
                        "key id %08" PRIx32 " is the primary: make another key primary first "
                        "(%s keyring use %s ID)",
                        id, PROG, kf->path);
    rc = key_file_rewrite("keyring", kf, SIZE_MAX, i, NULL, ids,
                          ids_after(kf, SIZE_MAX, i, NULL, ids));
    if (rc != 0)
        return rc;
    printf("key id %08" PRIx32 " removed from %s\n", id, kf->path);
    return EXIT_OK;
}

static int cmd_keyring(pc_client_t *c, const cli_t *cli)
{
    static const struct {
        const char *name;
        int nargs; /* after the subcommand */
        const char *help;
    } subs[] = {
        {"list", 1, "FILE"}, {"add", 1, "FILE"}, {"use", 2, "FILE ID"}, {"remove", 2, "FILE ID"},
    };
    const char *sub = cli->args[0];
    key_file_t kf;
    uint32_t id = 0;
    size_t s;
    int rc;

    for (s = 0; s < sizeof(subs) / sizeof(subs[0]); s++) {
        if (strcmp(sub, subs[s].name) == 0)
            break;
    }
    if (s == sizeof(subs) / sizeof(subs[0]))
        return usage_error("keyring: unknown subcommand '%s' (list, add, use or remove)", sub);
    if (cli->nargs - 1 != subs[s].nargs)
        return usage_error("keyring %s: expected %s", sub, subs[s].help);
    if (subs[s].nargs == 2 && !parse_key_id(cli->args[2], &id))
        return usage_error("keyring %s: '%s' is not a key id (8 hex digits, as 'keyring list' "
                           "prints them)",
                           sub, cli->args[2]);

    rc = key_file_load("keyring", cli->args[1], &kf);
    if (rc == 0) {
        switch (s) {
        case 0: rc = keyring_list(&kf); break;
        case 1: rc = keyring_add(&kf); break;
        case 2: rc = keyring_use(&kf, id); break;
        default: rc = keyring_remove(&kf, id); break;
        }
    }
    key_file_free(&kf);
    return rc;
}

static const cmd_t cmds[] = {
    {"get", 1, 1, ALLOW_RAW, "KEY", cmd_get},
    {"set", 1, 2, ALLOW_SET, "KEY [VALUE]", cmd_set},
    {"del", 1, 1, 0, "KEY", cmd_del},
    {"touch", 2, 2, 0, "KEY MS", cmd_touch},
    {"mget", 1, INT_MAX, 0, "KEY...", cmd_mget},
    {"ping", 0, 0, 0, "no arguments", cmd_ping},
    {"stats", 0, 0, 0, "no arguments", cmd_stats},
    {"cluster", 0, 0, 0, "no arguments", cmd_cluster},
    {"top", 0, 0, 0, "no arguments", cmd_top},
    {"keygen", 1, 1, LOCAL, "FILE", cmd_keygen},
    {"keyring", 2, 3, LOCAL, "list|add FILE, or use|remove FILE ID", cmd_keyring},
};

/* ---- command line ------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROG " [OPTIONS] COMMAND [ARGS...]\n"
            "\n"
            "Talks to a peercache cluster. Each key is sent straight to the\n"
            "node that owns it (learned from the nodes given with --nodes);\n"
            "ping, stats and cluster ask the first of those nodes that\n"
            "answers. keygen and keyring edit a local key file and never\n"
            "touch the network. Options may come before or after the\n"
            "command; \"--\" ends the options (for keys or values that start\n"
            "with '-').\n"
            "\n"
            "Commands:\n"
            "  get KEY           Print the value of KEY, followed by a newline\n"
            "                    (none with --raw: the bytes exactly as stored).\n"
            "  set KEY [VALUE]   Store VALUE under KEY. Without VALUE, or with\n"
            "                    VALUE '-', the value is all of stdin, byte for\n"
            "                    byte (a trailing newline is kept). Prints\n"
            "                    \"OK version=N\".\n"
            "  del KEY           Delete KEY. Prints \"OK\".\n"
            "  touch KEY MS      Set KEY to expire MS milliseconds from now\n"
            "                    (0 = never). Prints \"OK\".\n"
            "  mget KEY...       Fetch several keys at once. Prints one line per\n"
            "                    key, in order: \"KEY<TAB>VALUE\", \"KEY<TAB>(not\n"
            "                    found)\" or \"KEY<TAB>(error: MESSAGE)\". Use\n"
            "                    --json for values that may hold newlines or\n"
            "                    binary data.\n"
            "  ping              Check that a node answers. Prints \"PONG\".\n"
            "  stats             Print the node's counters, one \"NAME VALUE\"\n"
            "                    line each.\n"
            "  cluster           Print the cluster as the node sees it: a line\n"
            "                    \"fingerprint HEX replicas R members N (from\n"
            "                    NODE)\", then one line per member, sorted by\n"
            "                    name, with tab-separated NAME ADDRESS STATE\n"
            "                    INCARNATION WEIGHT SHARE; STATE is alive,\n"
            "                    suspect, dead or left, SHARE the part of the\n"
            "                    keyspace it owns (e.g. 33.4%%).\n"
            "  top               A live view of the cluster, refreshed every\n"
            "                    second until 'q': per member its state,\n"
            "                    requests/s, hit ratio, memory used of its\n"
            "                    limit, connections, Redis (up, DOWN, none),\n"
            "                    the 99th percentile of its answer times (the\n"
            "                    bucket bound it is under) and how busy its\n"
            "                    event loops were (BUSY%%), each over the last\n"
            "                    second.\n"
            "\n"
            "Cluster key files (peercached --cluster-key FILE; one key per line,\n"
            "the first one seals, every one opens; docs/SECURITY.md):\n"
            "  keygen FILE       Create FILE (mode 0600) holding one fresh key.\n"
            "                    An existing FILE is never overwritten. Prints\n"
            "                    \"key id ID written to FILE\".\n"
            "  keyring list FILE One line per key, in order: its position, its\n"
            "                    id (8 hex digits) and \"primary\" for the first.\n"
            "  keyring add FILE  Append a fresh key, not primary: it opens but\n"
            "                    does not seal yet. Prints \"key id ID added to\n"
            "                    FILE\".\n"
            "  keyring use FILE ID\n"
            "                    Make key ID the primary (move it first).\n"
            "  keyring remove FILE ID\n"
            "                    Remove key ID. Refuses the primary and the\n"
            "                    last key.\n"
            "  Edits keep comments and blank lines, refuse a FILE that group or\n"
            "  others can access (as a node does), and replace FILE atomically.\n"
            "  Key rotation, each step on every node, then SIGHUP to each:\n"
            "  keyring add; keyring use NEWID; keyring remove OLDID.\n"
            "\n"
            "Options:\n"
            "  --nodes HOST:PORT[,HOST:PORT...]\n"
            "                    Nodes to try, in order (default: $PEERCACHE_NODES,\n"
            "                    else " DEFAULT_NODES "). IPv6: [::1]:7400.\n"
            "  --timeout MS      Time limit per call in milliseconds (default\n"
            "                    2000), for connecting and for each request.\n"
            "  --token TOKEN     Client token sent on connect (default:\n"
            "                    $PEERCACHE_TOKEN, which keeps it out of `ps`).\n"
            "  --token-file FILE The token is FILE's first line (FILE must not be\n"
            "                    readable by group or others: chmod 600).\n"
            "  --no-ring         Send every request to the first node that\n"
            "                    answers, which relays it to the key's owner,\n"
            "                    instead of to the owner directly.\n"
            "  --json            Print JSON instead of text; see below.\n"
            "  --raw             get: no newline after the value.\n"
            "  --ttl MS          set: expire after MS milliseconds (default never).\n"
            "  --flags N         set: store the 32-bit number N with the value.\n"
            "  --nx              set: only if KEY does not exist yet.\n"
            "  --xx              set: only if KEY exists.\n"
            "  --cas VERSION     set: only if KEY's version is still VERSION (as\n"
            "                    printed by set, or by get --json).\n"
            "  -h, --help        Print this help and exit.\n"
            "  --version         Print the version and exit.\n"
            "\n"
            "JSON output (--json), one line:\n"
            "  get     {\"key\":K,\"found\":true,\"value\":V,\"flags\":N,\"version\":N,\n"
            "          \"ttl_ms\":N} (ttl_ms -1 = no expiry), or\n"
            "          {\"key\":K,\"found\":false}.\n"
            "  mget    [ one object per key as for get, in order; a key that\n"
            "          failed has \"found\":false and \"error\":MESSAGE ].\n"
            "  set     {\"ok\":true,\"version\":N}\n"
            "  del, touch, ping   {\"ok\":true}\n"
            "  stats   {\"NAME\":N,...}\n"
            "  cluster {\"fingerprint\":\"HEX\",\"replicas\":R,\"from\":NODE,\n"
            "          \"members\":[{\"name\":S,\"addr\":S,\"state\":S,\n"
            "          \"incarnation\":N,\"weight\":N,\"owned_slots\":N,\n"
            "          \"share\":F}, ...]} (share from 0 to 1).\n"
            "  Keys and values are JSON strings when they are valid UTF-8;\n"
            "  otherwise the field is \"key_base64\" / \"value_base64\" instead,\n"
            "  holding the exact bytes in standard base64 (RFC 4648, padded).\n"
            "\n"
            "Exit status:\n"
            "  0  success.\n"
            "  1  the answer is no: not found (get, del, touch), the set\n"
            "     condition failed (--nx, --xx, --cas), for mget at least\n"
            "     one key was not found, or keyring use/remove found no key\n"
            "     with that id.\n"
            "  2  any other error, with a message on stderr, e.g.\n"
            "     \"" PROG ": set: backend unavailable: <server message>\".\n");
}

/* Prints "peercache-cli: <message>" and a pointer to --help; EXIT_ERR. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", PROG);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", PROG);
    return EXIT_ERR;
}

/* Options that take a value. */
static const char *const value_opts[] = {"nodes", "timeout", "token", "token-file", "ttl",
                                         "flags", "cas", NULL};

static bool takes_value(const char *name, size_t len)
{
    for (size_t i = 0; value_opts[i] != NULL; i++) {
        if (strlen(value_opts[i]) == len && strncmp(value_opts[i], name, len) == 0)
            return true;
    }
    return false;
}

/* --token-file: the first line of a file only its owner may access, as
 * the node requires of its own token file. 0, or EXIT_ERR after saying why. */
static int read_token_file(cli_t *cli, const char *path)
{
    char err[512];
    if (pc_seal_init() != 0 ||
        pc_secret_file_line(path, "token file", cli->token_buf, sizeof cli->token_buf, err,
                            sizeof err) != 0) {
        fprintf(stderr, "%s: --token-file: %s\n", PROG, err);
        return EXIT_ERR;
    }
    cli->token = cli->token_buf;
    return EXIT_OK;
}

/* Applies one option. 0, or EXIT_ERR after printing why. */
static int apply_option(cli_t *cli, const char *name, const char *value, const char *arg)
{
    uint64_t v;

    if (strcmp(name, "nodes") == 0) {
        cli->nodes = value;
        cli->nodes_from = "--nodes";
    } else if (strcmp(name, "token") == 0) {
        cli->token = value;
    } else if (strcmp(name, "token-file") == 0) {
        return read_token_file(cli, value);
    } else if (strcmp(name, "timeout") == 0) {
        if (!parse_u64(value, INT_MAX, &v) || v == 0)
            return usage_error("--timeout: '%s' is not a number of milliseconds (1 or more)",
                               value);
        cli->timeout_ms = (int)v;
    } else if (strcmp(name, "ttl") == 0) {
        if (!parse_u64(value, UINT64_MAX, &v))
            return usage_error("--ttl: '%s' is not a number of milliseconds", value);
        cli->set.ttl_ms = v;
        cli->set_opt = cli->set_opt ? cli->set_opt : "--ttl";
    } else if (strcmp(name, "flags") == 0) {
        if (!parse_u64(value, UINT32_MAX, &v))
            return usage_error("--flags: '%s' is not a number from 0 to 4294967295", value);
        cli->set.flags = (uint32_t)v;
        cli->set_opt = cli->set_opt ? cli->set_opt : "--flags";
    } else if (strcmp(name, "cas") == 0) {
        if (!parse_u64(value, UINT64_MAX, &v) || v == 0)
            return usage_error("--cas: '%s' is not a version (a number, 1 or more)", value);
        cli->set.cas = v;
        cli->set_opt = cli->set_opt ? cli->set_opt : "--cas";
    } else if (strcmp(name, "json") == 0) {
        cli->json = true;
    } else if (strcmp(name, "raw") == 0) {
        cli->raw = true;
    } else if (strcmp(name, "no-ring") == 0) {
        cli->no_ring = true;
    } else if (strcmp(name, "nx") == 0 || strcmp(name, "xx") == 0) {
        int cond = name[0] == 'n' ? PC_CLIENT_COND_NX : PC_CLIENT_COND_XX;

        if (cli->set.cond != PC_CLIENT_COND_NONE && cli->set.cond != cond)
            return usage_error("--nx and --xx cannot be combined");
        cli->set.cond = cond;
        cli->set_opt = cli->set_opt ? cli->set_opt : (cond == PC_CLIENT_COND_NX ? "--nx" : "--xx");
    } else {
        return usage_error("unknown option '%s'", arg);
    }
    return 0;
}

/*
 * Parses argv into *cli. Returns 0 to run a command, -1 after printing
 * help or the version (exit 0), or EXIT_ERR after a usage error.
 */
static int parse_args(int argc, char **argv, cli_t *cli, const cmd_t **cmd_out)
{
    const char *env_nodes = getenv("PEERCACHE_NODES");
    const char *env_token = getenv("PEERCACHE_TOKEN");
    bool only_args = false;
    const cmd_t *cmd = NULL;

    memset(cli, 0, sizeof(*cli));
    cli->nodes = env_nodes != NULL && env_nodes[0] != '\0' ? env_nodes : DEFAULT_NODES;
    cli->nodes_from = env_nodes != NULL && env_nodes[0] != '\0' ? "PEERCACHE_NODES" : NULL;
    cli->token = env_token;
    cli->args = calloc((size_t)argc + 1, sizeof(*cli->args));
    if (cli->args == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return EXIT_ERR;
    }

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *name, *eq, *value = NULL;
        char namebuf[32];
        size_t len;
        int rc;

        if (only_args || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (cli->cmd == NULL)
                cli->cmd = arg;
            else
                cli->args[cli->nargs++] = argv[i];
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_args = true;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s %s\n", PROG, PC_VERSION_STRING);
            return -1;
        }
        if (arg[1] != '-')
            return usage_error("unknown option '%s'", arg);
        name = arg + 2;
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        if (len >= sizeof(namebuf))
            return usage_error("unknown option '%s'", arg);
        memcpy(namebuf, name, len);
        namebuf[len] = '\0';
        if (takes_value(name, len)) {
            if (eq != NULL)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return usage_error("--%s: missing value", namebuf);
        } else if (eq != NULL) {
            return usage_error("--%s takes no value", namebuf);
        }
        rc = apply_option(cli, namebuf, value, arg);
        if (rc != 0)
            return rc;
    }

    if (cli->cmd == NULL)
        return usage_error("no command given");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(cli->cmd, cmds[i].name) == 0)
            cmd = &cmds[i];
    }
    if (cmd == NULL)
        return usage_error("unknown command '%s'", cli->cmd);
    if (cli->nargs < cmd->min_args || cli->nargs > cmd->max_args)
        return usage_error("%s: expected %s", cmd->name, cmd->args_help);
    if (cli->raw && !(cmd->allow & ALLOW_RAW))
        return usage_error("%s: --raw only applies to get", cmd->name);
    if (cli->raw && cli->json)
        return usage_error("--raw and --json cannot be combined");
    if (cli->set_opt != NULL && !(cmd->allow & ALLOW_SET))
        return usage_error("%s: %s only applies to set", cmd->name, cli->set_opt);
    if (cli->json && (cmd->allow & LOCAL))
        return usage_error("%s: --json only applies to commands that talk to a node", cmd->name);
    *cmd_out = cmd;
    return 0;
}

int main(int argc, char **argv)
{
    cli_t cli;
    const cmd_t *cmd = NULL;
    pc_client_options_t opt;
    pc_client_t *c = NULL;
    int rc = parse_args(argc, argv, &cli, &cmd);

    if (rc != 0) {
        free(cli.args);
        return rc < 0 ? EXIT_OK : rc;
    }
    if (cmd->allow & LOCAL) {
        /* No client: key files need no node, and a bad or absent node
         * list must not stop them. */
        if (pc_seal_init() != 0) {
            fprintf(stderr, "%s: cannot initialise libsodium\n", PROG);
            rc = EXIT_ERR;
        } else {
            rc = cmd->run(NULL, &cli);
        }
        goto out;
    }
    memset(&opt, 0, sizeof(opt));
    opt.nodes = cli.nodes;
    opt.timeout_ms = cli.timeout_ms;
    opt.token = cli.token;
    opt.no_ring = cli.no_ring;
    rc = pc_client_new(&opt, &c);
    if (rc == PC_EINVAL) {
        fprintf(stderr,
                "%s: bad node list '%s'%s%s%s: expected HOST:PORT[,HOST:PORT...]\n", PROG,
                cli.nodes, cli.nodes_from ? " (from " : "", cli.nodes_from ? cli.nodes_from : "",
                cli.nodes_from ? ")" : "");
        free(cli.args);
        return EXIT_ERR;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", PROG, pc_strerror(rc));
        free(cli.args);
        return EXIT_ERR;
    }

    rc = cmd->run(c, &cli);

out:
    /* Output that could not be written is a failure too: a script piping
     * `get` into a file on a full disk must not see exit status 0. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing output: %s\n", PROG, strerror(errno));
        rc = EXIT_ERR;
    }
    pc_client_free(&c);
    free(cli.args);
    return rc;
}
