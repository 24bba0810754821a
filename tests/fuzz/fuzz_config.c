/*
 * fuzz_config.c -- libFuzzer target for the config loader (node/pc_config)
 * and its size and duration parsers.
 *
 * Input layout, so that one input reaches all three sources at once:
 *
 *     FILE \0 ARG \0 ARG ... \0 \0 ENV \0 ENV ...
 *
 * FILE is the config file's text (no NUL in it). The pieces after it are
 * argv[1..] up to the first empty one, the pieces after that environment
 * entries, each given "PEERCACHE_" in front. At most MAX_ARGS of each are
 * used. The file is an in-memory file (memfd_create) that the loader opens
 * as /proc/self/fd/N, so no run touches the disk; whatever names the file
 * (the value after "--config", "--config=...", "PEERCACHE_CONFIG=...") is
 * replaced by that path, unless it is empty ("no file"), so the fuzzer
 * can never make the loader open a real file (or /dev/zero).
 *
 * Properties (pc_config.h), any violation abort()s:
 *   - the result is 0, 1 (--help), 2 (--version) or PC_EINVAL;
 *   - on 0: every string field set (config_file: NULL or non-empty),
 *     max_frame >= max_key + max_value + 64, max_output >= max_frame,
 *     probe_timeout < probe_interval, exactly one of --insecure and
 *     --cluster-key, values within their ranges, addresses that parse;
 *     loading the same input again gives the same config;
 *   - on an error: errbuf says why, and cfg is all zero;
 *   - a shorter error buffer (or none) gets the same message cut short,
 *     never written past its end;
 *   - pc_config_free always leaves cfg all zero.
 * Every argv and environment piece is also given to pc_parse_size and
 * pc_parse_duration_ms, checked against a reference parser written here
 * and for round trips (a parsed value printed back parses to itself).
 */
#define _GNU_SOURCE /* memfd_create */
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pc_addr.h"
#include "pc_backend_addr.h"
#include "pc_config.h"
#include "pc_error.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 64 /* more than there are options */
#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

static int file_fd = -1;
static char file_path[64];

/* ---- pc_parse_size / pc_parse_duration_ms ---------------------------- */

struct unit {
    const char *name;
    uint64_t mult;
};

static const struct unit size_units[] = {
    {"", 1}, {"b", 1}, {"k", KIB}, {"kb", KIB}, {"m", MIB}, {"mb", MIB}, {"g", GIB}, {"gb", GIB},
    {NULL, 0},
};
static const struct unit duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {NULL, 0},
};

/* The documented grammar, independently: digits, then one unit of the
 * list in any case; PC_ERANGE if the product passes `max`. */
static int reference_parse(const char *s, const struct unit *units, uint64_t max, uint64_t *out)
{
    uint64_t n = 0;
    bool overflow = false;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return PC_EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, *p - '0', &n))
            overflow = true;
    }
    for (const struct unit *u = units; u->name != NULL; u++) {
        if (strcasecmp(p, u->name) != 0)
            continue;
        uint64_t v;
        if (overflow || __builtin_mul_overflow(n, u->mult, &v) || v > max)
            return PC_ERANGE;
        *out = v;
        return 0;
    }
    return PC_EINVAL;
}

/* v printed with the largest unit of the list that divides it, the unit
 * in upper case when `upper`. */
static void format_with_unit(uint64_t v, const struct unit *units, bool upper, char *buf,
                             size_t len)
{
    const struct unit *best = &units[0];
    for (const struct unit *u = units; u->name != NULL; u++)
        if (v != 0 && v % u->mult == 0 && u->mult > best->mult)
            best = u;
    int n = snprintf(buf, len, "%" PRIu64 "%s", v / best->mult, best->name);
    for (int i = 0; upper && i < n; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
}

static void check_size(const char *s)
{
    size_t v = 12345, again = 0;
    uint64_t want = 0;
    int rc = pc_parse_size(s, &v);
    CHECK(rc == 0 || rc == PC_EINVAL || rc == PC_ERANGE);
    CHECK(rc == reference_parse(s, size_units, SIZE_MAX, &want));
    if (rc != 0) {
        CHECK(v == 12345); /* untouched on error */
        return;
    }
    CHECK((uint64_t)v == want);
    char buf[64];
    snprintf(buf, sizeof(buf), "%zu", v);
    CHECK(pc_parse_size(buf, &again) == 0 && again == v);
    format_with_unit(v, size_units, v & 1, buf, sizeof(buf));
    CHECK(pc_parse_size(buf, &again) == 0 && again == v);
}

static void check_duration(const char *s)
{
    uint64_t v = 12345, again = 0, want = 0;
    int rc = pc_parse_duration_ms(s, &v);
    CHECK(rc == 0 || rc == PC_EINVAL || rc == PC_ERANGE);
    CHECK(rc == reference_parse(s, duration_units, UINT64_MAX, &want));
    if (rc != 0) {
        CHECK(v == 12345);
        return;
    }
    CHECK(v == want);
    char buf[64];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    CHECK(pc_parse_duration_ms(buf, &again) == 0 && again == v);
    format_with_unit(v, duration_units, v & 1, buf, sizeof(buf));
    CHECK(pc_parse_duration_ms(buf, &again) == 0 && again == v);
}

/* ---- pc_config_load ---------------------------------------------------- */

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

static bool is_addr(const char *s)
{
    char host[256];
    int port;
    return pc_addr_parse(s, host, sizeof(host), &port) == 0 && port >= 1 && port <= 65535;
}

static int count_addr(void *arg, const char *host, int port)
{
    (void)host;
    CHECK(port >= 1 && port <= 65535);
    ++*(int *)arg;
    return 0;
}

static bool one_of(const char *s, const char *const *choices)
{
    for (; *choices != NULL; choices++)
        if (strcmp(s, *choices) == 0)
            return true;
    return false;
}

/* The fields, by name, for the checks that walk all of them. */
#define STRING_FIELDS(X)                                                                           \
    X(listen) X(name) X(redis) X(redis_prefix) X(eviction) X(log_level) X(cluster_key)            \
    X(token_file) X(token) X(join) X(advertise) X(gossip)
#define NUMBER_FIELDS(X)                                                                           \
    X(redis_timeout_ms) X(memory) X(max_connections) X(idle_timeout_ms) X(max_frame) X(max_key)   \
    X(max_value) X(max_mget_keys) X(max_inflight) X(max_output) X(output_timeout_ms)              \
    X(frame_timeout_ms) X(max_buffer_memory) X(shutdown_timeout_ms) X(sweep_interval_ms)          \
    X(insecure) X(replay_window_ms) X(replicas) X(weight) X(probe_interval_ms)                    \
    X(probe_timeout_ms) X(indirect_probes) X(suspicion_mult) X(gossip_interval_ms)                \
    X(pushpull_interval_ms) X(peer_timeout_ms) X(ring_settle_ms) X(handoff_rate)

static void check_loaded(const pc_config_t *c)
{
#define NOT_NULL(f) CHECK(c->f != NULL);
    STRING_FIELDS(NOT_NULL)
#undef NOT_NULL
    /* NULL is how "no config file" reads. */
    CHECK(c->config_file == NULL || c->config_file[0] != '\0');

    CHECK((uint64_t)c->max_frame >= (uint64_t)c->max_key + c->max_value + 64);
    CHECK(c->max_output >= c->max_frame);
    CHECK(c->probe_timeout_ms < c->probe_interval_ms);
    CHECK((c->insecure == 1) != (c->cluster_key[0] != '\0'));
    CHECK(c->insecure == 0 || c->insecure == 1);

    CHECK(is_addr(c->listen) && is_addr(c->advertise) && is_addr(c->gossip));
    pc_backend_addr_t ra;
    CHECK(pc_backend_addr_parse(c->redis, &ra, NULL, 0) == 0);
    int n = 0;
    CHECK(c->join[0] == '\0' || (pc_addr_parse_list(c->join, count_addr, &n) == 0 && n > 0));
    CHECK(c->name[0] != '\0' && strlen(c->name) <= 255);
    static const char *const evictions[] = {"s3fifo", "lru", NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    CHECK(one_of(c->eviction, evictions) && one_of(c->log_level, levels));

    /* Ranges of the option table that the rest of the node relies on. */
    CHECK(c->memory >= MIB && c->max_key >= 1 && c->max_value >= 1);
    CHECK(c->max_frame >= KIB && c->max_frame <= UINT32_MAX);
    CHECK(c->max_mget_keys >= 1 && c->max_mget_keys <= UINT32_MAX);
    CHECK(c->max_connections >= 1 && c->max_inflight >= 1);
    CHECK(c->replicas >= 1 && c->replicas <= 8 && c->weight >= 1 && c->weight <= 1000);
    CHECK(c->replay_window_ms >= 1000 && c->replay_window_ms <= 3600000);
    CHECK(c->probe_interval_ms >= 10 && c->probe_interval_ms <= 3600000);
    CHECK(c->indirect_probes <= 16 && c->suspicion_mult >= 1 && c->suspicion_mult <= 100);
    CHECK(c->redis_timeout_ms >= 1 && c->peer_timeout_ms >= 1 && c->output_timeout_ms >= 1);
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void same_config(const pc_config_t *a, const pc_config_t *b)
{
#define SAME_STR(f) CHECK(same_str(a->f, b->f));
#define SAME_NUM(f) CHECK(a->f == b->f);
    STRING_FIELDS(SAME_STR)
    NUMBER_FIELDS(SAME_NUM)
#undef SAME_STR
#undef SAME_NUM
    CHECK(same_str(a->config_file, b->config_file));
}

struct input {
    char *copy; /* the input, NUL-terminated, pieces split in place */
    char *file;
    size_t file_len;
    char *argv[MAX_ARGS + 2];
    int argc;
    char *envp[MAX_ARGS + 1];
    int envc;
    char *owned[3 * MAX_ARGS]; /* env entries and rewritten pieces, to free */
    int nowned;
};

static char *own(struct input *in, const char *prefix, const char *rest)
{
    size_t a = strlen(prefix), b = strlen(rest);
    char *s = malloc(a + b + 1);
    CHECK(s != NULL);
    memcpy(s, prefix, a);
    memcpy(s + a, rest, b + 1);
    in->owned[in->nowned++] = s;
    return s;
}

static void split(struct input *in, const uint8_t *data, size_t size)
{
    memset(in, 0, sizeof(*in));
    in->copy = malloc(size + 1);
    CHECK(in->copy != NULL);
    memcpy(in->copy, data, size);
    in->copy[size] = '\0';

    char *end = in->copy + size;
    char *p = in->copy;
    in->file = p;
    in->file_len = strlen(p);
    p += in->file_len;
    if (p < end)
        p++;

    in->argv[in->argc++] = "peercached";
    while (p < end && *p != '\0' && in->argc <= MAX_ARGS) {
        in->argv[in->argc++] = p;
        p += strlen(p) + 1;
    }
    while (p < end && *p != '\0') /* arguments past the cap */
        p += strlen(p) + 1;
    if (p < end)
        p++; /* the empty piece that ends argv */
    while (p < end && in->envc < MAX_ARGS) {
        if (*p != '\0')
            in->envp[in->envc++] = own(in, "PEERCACHE_", p);
        p += strlen(p) + 1;
    }
    in->argv[in->argc] = NULL;
    in->envp[in->envc] = NULL;

    /* Point every way of naming the config file at the memfd. */
    for (int i = 1; i < in->argc; i++) {
        if (strcmp(in->argv[i], "--config") == 0 && i + 1 < in->argc &&
            in->argv[i + 1][0] != '\0')
            in->argv[i + 1] = file_path;
        else if (strncmp(in->argv[i], "--config=", 9) == 0 && in->argv[i][9] != '\0')
            in->argv[i] = own(in, "--config=", file_path);
    }
    for (int i = 0; i < in->envc; i++) {
        if (strncmp(in->envp[i], "PEERCACHE_CONFIG=", 17) == 0 && in->envp[i][17] != '\0')
            in->envp[i] = own(in, "PEERCACHE_CONFIG=", file_path);
    }
}

static void free_input(struct input *in)
{
    for (int i = 0; i < in->nowned; i++)
        free(in->owned[i]);
    free(in->copy);
}

static void set_file(const char *text, size_t len)
{
    CHECK(ftruncate(file_fd, 0) == 0);
    CHECK(pwrite(file_fd, text, len, 0) == (ssize_t)len);
}

static bool argv_has(const struct input *in, const char *a, const char *b)
{
    for (int i = 1; i < in->argc; i++)
        if (strcmp(in->argv[i], a) == 0 || (b != NULL && strcmp(in->argv[i], b) == 0))
            return true;
    return false;
}

/*
 * The same input again, with a short error buffer (or none): the same
 * result and, on success, the same config (nothing depends on leftovers
 * of the first load), and the message cut short, never overrun.
 */
static void check_again(struct input *in, const pc_config_t *first, int first_rc,
                        const char *first_err)
{
    static const size_t lens[] = {0, 1, 7, 64};
    size_t len = lens[(in->argc + in->envc) % 4];
    char small[64 + 1];
    pc_config_t cfg;

    memset(small, 'x', sizeof(small));
    int rc = pc_config_load(&cfg, in->argc, in->argv, in->envp, len ? small : NULL, len);
    CHECK(rc == first_rc);
    CHECK(small[len] == 'x' && small[64] == 'x');
    if (len > 0) {
        size_t want = strlen(first_err) < len - 1 ? strlen(first_err) : len - 1;
        CHECK(strlen(small) == want && memcmp(small, first_err, want) == 0);
    }
    if (rc == 0)
        same_config(first, &cfg);
    pc_config_free(&cfg);
}

static void check_load(struct input *in)
{
    pc_config_t cfg;
    char err[512];
    memset(&cfg, 0xa5, sizeof(cfg)); /* overwritten, never freed */
    memset(err, 'x', sizeof(err));

    int rc = pc_config_load(&cfg, in->argc, in->argv, in->envp, err, sizeof(err));
    CHECK(rc == 0 || rc == 1 || rc == 2 || rc == PC_EINVAL);
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    if (rc == 1)
        CHECK(argv_has(in, "--help", "-h"));
    if (rc == 2)
        CHECK(argv_has(in, "--version", NULL));
    if (in->argc > 1 && (strcmp(in->argv[1], "--help") == 0 || strcmp(in->argv[1], "-h") == 0))
        CHECK(rc == 1);

    check_again(in, &cfg, rc, err);
    if (rc != 0) {
        CHECK(all_zero(&cfg, sizeof(cfg)));
        if (rc < 0)
            CHECK(err[0] != '\0');
        pc_config_free(&cfg);
        CHECK(all_zero(&cfg, sizeof(cfg)));
        return;
    }
    check_loaded(&cfg);
    pc_config_free(&cfg);
    CHECK(all_zero(&cfg, sizeof(cfg)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (file_fd < 0) {
        file_fd = memfd_create("fuzz_config", MFD_CLOEXEC);
        CHECK(file_fd >= 0);
        /* A memfd is created mode 0777, and a config file that others
         * can read may not hold a token (PC_EPERM): make it private, as
         * a file with secrets is deployed, so tokens in the file load. */
        CHECK(fchmod(file_fd, 0600) == 0);
        snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);
    }
    struct input in;
    split(&in, data, size);
    set_file(in.file, in.file_len);

    for (int i = 1; i < in.argc; i++) {
        check_size(in.argv[i]);
        check_duration(in.argv[i]);
    }
    for (int i = 0; i < in.envc; i++) {
        const char *eq = strchr(in.envp[i], '=');
        const char *value = eq ? eq + 1 : in.envp[i];
        check_size(value);
        check_duration(value);
    }
    check_load(&in);
    free_input(&in);
    return 0;
}
