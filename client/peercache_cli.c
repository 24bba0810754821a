/*
 * peercache_cli.c -- peercache-cli, a command-line client for scripts and
 * operators, built on libpeercache only (no protocol details here).
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
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pc_client.h"

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

/* Options that only some commands take. */
enum {
    ALLOW_RAW = 1 << 0, /* --raw */
    ALLOW_SET = 1 << 1, /* --ttl --flags --nx --xx --cas */
};

typedef struct cli {
    const char *nodes;
    const char *nodes_from; /* "--nodes", "PEERCACHE_NODES" or NULL (default) */
    const char *token;
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
    int (*run)(pc_client_t *c, const cli_t *cli);
} cmd_t;

/* ---- output helpers ------------------------------------------------------------ */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, <= U+10FFFF. */
static bool utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t b = p[i];
        size_t len;
        uint32_t cp, min;

        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xe0) == 0xc0) {
            len = 2, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* Writes p[0..n) as a JSON string; the bytes must be valid UTF-8. */
static void json_string(FILE *out, const uint8_t *p, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];

        switch (ch) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            /* DEL is legal raw JSON but escaped so that output shown on a
             * terminal cannot carry control characters. */
            if (ch < 0x20 || ch == 0x7f)
                fprintf(out, "\\u%04x", ch);
            else
                fputc(ch, out);
        }
    }
    fputc('"', out);
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
    if (utf8_valid(p, n)) {
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
    size_t n = strlen(s);
    char *copy;

    if (utf8_valid((const uint8_t *)s, n)) {
        json_string(out, (const uint8_t *)s, n);
        return;
    }
    copy = strdup(s);
    if (copy == NULL) {
        fputs("\"?\"", out);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if ((uint8_t)copy[i] >= 0x80)
            copy[i] = '?';
    }
    json_string(out, (const uint8_t *)copy, n);
    free(copy);
}

/* {"key":..,"found":true,"value":..,...} for one value. */
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

static const cmd_t cmds[] = {
    {"get", 1, 1, ALLOW_RAW, "KEY", cmd_get},
    {"set", 1, 2, ALLOW_SET, "KEY [VALUE]", cmd_set},
    {"del", 1, 1, 0, "KEY", cmd_del},
    {"touch", 2, 2, 0, "KEY MS", cmd_touch},
    {"mget", 1, INT_MAX, 0, "KEY...", cmd_mget},
    {"ping", 0, 0, 0, "no arguments", cmd_ping},
    {"stats", 0, 0, 0, "no arguments", cmd_stats},
    {"cluster", 0, 0, 0, "no arguments", cmd_cluster},
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
            "answers. Options may come before or after the command; \"--\"\n"
            "ends the options (for keys or values that start with '-').\n"
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
            "\n"
            "Options:\n"
            "  --nodes HOST:PORT[,HOST:PORT...]\n"
            "                    Nodes to try, in order (default: $PEERCACHE_NODES,\n"
            "                    else " DEFAULT_NODES "). IPv6: [::1]:7400.\n"
            "  --timeout MS      Time limit per call in milliseconds (default\n"
            "                    2000), for connecting and for each request.\n"
            "  --token TOKEN     Client token sent on connect (default:\n"
            "                    $PEERCACHE_TOKEN, which keeps it out of `ps`).\n"
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
            "     condition failed (--nx, --xx, --cas), or for mget at least\n"
            "     one key was not found.\n"
            "  2  any other error, with a message on stderr, e.g.\n"
            "     \"" PROG ": set: backend unavailable: <server message>\".\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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
static const char *const value_opts[] = {"nodes", "timeout", "token", "ttl", "flags", "cas",
                                         NULL};

static bool takes_value(const char *name, size_t len)
{
    for (size_t i = 0; value_opts[i] != NULL; i++) {
        if (strlen(value_opts[i]) == len && strncmp(value_opts[i], name, len) == 0)
            return true;
    }
    return false;
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
