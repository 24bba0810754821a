/*
 * test_config.c -- pc_config: defaults, the three sources and their
 * precedence, every error path, size/duration parsing, and --help.
 *
 * Tests pass their own argv and envp arrays, so nothing here depends on
 * the environment the test runs in. Config files are written to a fresh
 * mkstemp() file and removed by the test that made it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pc_config.h"

#define MIB ((size_t)1024 * 1024)
#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

/* Every load runs without a cluster key unless a test says otherwise. */
static char *no_env[] = {"PEERCACHE_INSECURE=1", NULL};

/* Writes `text` to a new temporary file; returns its malloc'd path. */
static char *write_temp(const char *text)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(PATH_MAX);
    int fd;
    size_t len = strlen(text);

    assert_non_null(path);
    snprintf(path, PATH_MAX, "%s/pc_test_config.XXXXXX", dir && *dir ? dir : "/tmp");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

/* Loads and expects success; fails the test with errbuf otherwise. */
static void load_ok(pc_config_t *cfg, int argc, char **argv, char **envp)
{
    char err[256];
    int rc = pc_config_load(cfg, argc, argv, envp, err, sizeof(err));

    if (rc != 0)
        fail_msg("pc_config_load: %d: %s", rc, err);
}

/* Loads, expects `want`, and checks that the message contains each of
 * the NULL-terminated substrings. */
static void load_fails(int want, int argc, char **argv, char **envp, ...)
{
    pc_config_t cfg;
    char err[512];
    const char *needle;
    va_list ap;
    int rc = pc_config_load(&cfg, argc, argv, envp, err, sizeof(err));

    if (rc != want)
        fail_msg("expected %d, got %d (%s) for %s %s", want, rc, err,
                 argc > 1 ? argv[1] : "", argc > 2 ? argv[2] : "");
    va_start(ap, envp);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (strstr(err, needle) == NULL)
            fail_msg("message '%s' lacks '%s'", err, needle);
    }
    va_end(ap);
    /* A failed load leaves nothing to free, and freeing is still safe. */
    assert_null(cfg.listen);
    pc_config_free(&cfg);
}

static void test_defaults(void **state)
{
    char *argv[] = {"peercached", NULL};
    pc_config_t cfg;

    (void)state;
    load_ok(&cfg, ARGC(argv), argv, no_env);
    assert_null(cfg.config_file);
    assert_string_equal(cfg.listen, "127.0.0.1:7400");
    assert_string_equal(cfg.name, "127.0.0.1:7400");
    assert_string_equal(cfg.redis, "127.0.0.1:6379");
    assert_string_equal(cfg.redis_prefix, "");
    assert_int_equal(cfg.redis_timeout_ms, 1000);
    assert_string_equal(cfg.redis_user, "");
    assert_string_equal(cfg.redis_password_file, "");
    assert_int_equal(cfg.redis_wait, 0);
    assert_int_equal(cfg.memory, 64 * MIB);
    assert_string_equal(cfg.eviction, "s3fifo");
    assert_int_equal(cfg.max_connections, 10000);
    assert_int_equal(cfg.idle_timeout_ms, 300000);
    assert_int_equal(cfg.max_frame, 1179648);
    assert_int_equal(cfg.max_frame, MIB + 128 * 1024);
    assert_int_equal(cfg.max_key, 65536);
    assert_int_equal(cfg.max_value, MIB);
    assert_int_equal(cfg.max_mget_keys, 1024);
    assert_int_equal(cfg.max_inflight, 1024);
    assert_int_equal(cfg.max_output, 4 * MIB);
    assert_int_equal(cfg.shutdown_timeout_ms, 5000);
    assert_int_equal(cfg.sweep_interval_ms, 100);
    assert_int_equal(cfg.tcp_rto_min_ms, 10);
    assert_string_equal(cfg.log_level, "info");
    pc_config_free(&cfg);
    assert_null(cfg.listen);
    /* Free twice, and argc 0, are both fine. */
    pc_config_free(&cfg);
    load_ok(&cfg, 0, NULL, no_env);
    assert_string_equal(cfg.listen, "127.0.0.1:7400");
    pc_config_free(&cfg);
}

/* The security options: a key or an explicit --insecure, bool flags, and
 * a token that never comes from argv. */
static void test_security_options(void **state)
{
    char *bare[] = {"peercached", NULL};
    char *empty_env[] = {NULL};
    char *key[] = {"peercached", "--cluster-key", "/etc/peercache/key", NULL};
    char *both[] = {"peercached", "--cluster-key=/k", "--insecure", NULL};
    char *flag_false[] = {"peercached", "--insecure=false", NULL};
    char *flag_bad[] = {"peercached", "--insecure=maybe", NULL};
    char *token_flag[] = {"peercached", "--insecure", "--token", "s3cret", NULL};
    char *limits[] = {"peercached", "--insecure", "--frame-timeout", "0",
                      "--output-timeout=2s", "--max-buffer-memory", "8mb",
                      "--token-file", "/run/tok", "--replay-window", "30s", NULL};
    char *token_env[] = {"PEERCACHE_TOKEN=from-env", "PEERCACHE_INSECURE=on", NULL};
    pc_config_t cfg;

    (void)state;
    load_fails(PC_EINVAL, ARGC(bare), bare, empty_env, "no --cluster-key", "--insecure",
               "keygen", NULL);
    load_ok(&cfg, ARGC(key), key, empty_env);
    assert_string_equal(cfg.cluster_key, "/etc/peercache/key");
    assert_int_equal(cfg.insecure, 0);
    assert_int_equal(cfg.replay_window_ms, 60000);
    assert_int_equal(cfg.frame_timeout_ms, 10000);
    assert_int_equal(cfg.output_timeout_ms, 10000);
    assert_int_equal(cfg.max_buffer_memory, 256 * MIB);
    assert_string_equal(cfg.token, "");
    assert_string_equal(cfg.token_file, "");
    pc_config_free(&cfg);
    load_fails(PC_EINVAL, ARGC(both), both, empty_env, "contradict", NULL);
    load_fails(PC_EINVAL, ARGC(flag_false), flag_false, empty_env, "no --cluster-key", NULL);
    load_fails(PC_EINVAL, ARGC(flag_bad), flag_bad, empty_env, "--insecure", "'maybe'",
               "true or false", NULL);
    load_fails(PC_EINVAL, ARGC(token_flag), token_flag, empty_env, "--token",
               "PEERCACHE_TOKEN", NULL);
    load_ok(&cfg, ARGC(limits), limits, empty_env);
    assert_int_equal(cfg.insecure, 1);
    assert_int_equal(cfg.frame_timeout_ms, 0);
    assert_int_equal(cfg.output_timeout_ms, 2000);
    assert_int_equal(cfg.max_buffer_memory, 8 * MIB);
    assert_string_equal(cfg.token_file, "/run/tok");
    assert_int_equal(cfg.replay_window_ms, 30000);
    pc_config_free(&cfg);
    load_ok(&cfg, ARGC(bare), bare, token_env);
    assert_string_equal(cfg.token, "from-env");
    assert_int_equal(cfg.insecure, 1);
    pc_config_free(&cfg);
}

static void test_flags_both_syntaxes(void **state)
{
    char *argv[] = {"peercached",      "--listen",          "0.0.0.0:9000",
                    "--memory=128mb",  "--redis",           "none",
                    "--redis-prefix=", "--idle-timeout=2s", "--eviction",
                    "LRU",             "--log-level=debug", "--max-connections",
                    "7",               "--name=n1",         "--redis-timeout",
                    "250ms",           NULL};
    pc_config_t cfg;

    (void)state;
    load_ok(&cfg, ARGC(argv), argv, no_env);
    assert_string_equal(cfg.listen, "0.0.0.0:9000");
    assert_int_equal(cfg.memory, 128 * MIB);
    assert_string_equal(cfg.redis, "none");
    assert_string_equal(cfg.redis_prefix, "");
    assert_int_equal(cfg.idle_timeout_ms, 2000);
    assert_string_equal(cfg.eviction, "lru"); /* stored in canonical case */
    assert_string_equal(cfg.log_level, "debug");
    assert_int_equal(cfg.max_connections, 7);
    assert_string_equal(cfg.name, "n1");
    assert_int_equal(cfg.redis_timeout_ms, 250);
    pc_config_free(&cfg);
}

static void test_name_defaults_to_listen(void **state)
{
    char *argv[] = {"peercached", "--listen=[::1]:7401", NULL};
    pc_config_t cfg;

    (void)state;
    load_ok(&cfg, ARGC(argv), argv, no_env);
    assert_string_equal(cfg.name, "[::1]:7401");
    pc_config_free(&cfg);
}

static void test_last_flag_wins_and_reload(void **state)
{
    char *argv[] = {"peercached", "--memory", "2mb", "--memory=3mb", NULL};
    pc_config_t cfg;

    (void)state;
    load_ok(&cfg, ARGC(argv), argv, no_env);
    assert_int_equal(cfg.memory, 3 * MIB);
    pc_config_free(&cfg);
    load_ok(&cfg, ARGC(argv), argv, no_env);
    assert_int_equal(cfg.memory, 3 * MIB);
    pc_config_free(&cfg);
}

/*
 * One option per level: each is set in every source up to its level, so
 * each assertion shows exactly which source won.
 */
static void test_precedence(void **state)
{
    char *path = write_temp("# a comment\n"
                            "\n"
                            "   # an indented comment\n"
                            "memory = 8mb\n"
                            "max-connections=11\n"
                            "  log-level   =   warn  \r\n"
                            "redis-prefix = app#1: \n"
                            "max-inflight = 12\n");
    char config_env[PATH_MAX + 32];
    char *envp[] = {config_env,
                    "PEERCACHE_INSECURE=yes",
                    "PEERCACHE_MAX_CONNECTIONS=21",
                    "PEERCACHE_MAX_INFLIGHT=22",
                    "PEERCACHE_NODES=ignored:1", /* the CLI's; not an error */
                    "HOME=/nowhere",
                    NULL};
    char *argv[] = {"peercached", "--max-inflight", "32", NULL};
    pc_config_t cfg;

    (void)state;
    snprintf(config_env, sizeof(config_env), "PEERCACHE_CONFIG=%s", path);
    load_ok(&cfg, ARGC(argv), argv, envp);
    assert_string_equal(cfg.config_file, path);
    assert_int_equal(cfg.sweep_interval_ms, 100);      /* default */
    assert_int_equal(cfg.memory, 8 * MIB);             /* file */
    assert_string_equal(cfg.log_level, "warn");        /* file, trimmed */
    assert_string_equal(cfg.redis_prefix, "app#1:");   /* '#' inside a value */
    assert_int_equal(cfg.max_connections, 21);         /* env over file */
    assert_int_equal(cfg.max_inflight, 32);            /* flag over env */
    pc_config_free(&cfg);
    remove_temp(path);
}

static void test_config_flag_beats_config_env(void **state)
{
    char *from_env = write_temp("memory = 2mb\n");
    char *from_flag = write_temp("memory = 3mb\n");
    char config_env[PATH_MAX + 32];
    char *envp[] = {config_env, "PEERCACHE_INSECURE=1", NULL};
    char *argv[] = {"peercached", "--config", from_flag, NULL};
    char *argv_off[] = {"peercached", "--config=", NULL};
    pc_config_t cfg;

    (void)state;
    snprintf(config_env, sizeof(config_env), "PEERCACHE_CONFIG=%s", from_env);
    load_ok(&cfg, ARGC(argv), argv, envp);
    assert_int_equal(cfg.memory, 3 * MIB);
    assert_string_equal(cfg.config_file, from_flag);
    pc_config_free(&cfg);

    /* An empty --config switches the file off. */
    load_ok(&cfg, ARGC(argv_off), argv_off, envp);
    assert_int_equal(cfg.memory, 64 * MIB);
    assert_null(cfg.config_file);
    pc_config_free(&cfg);
    remove_temp(from_env);
    remove_temp(from_flag);
}

static void test_help_and_version(void **state)
{
    char *help[] = {"peercached", "--help", NULL};
    char *h[] = {"peercached", "--memory", "1mb", "-h", NULL};
    char *help_after_error[] = {"peercached", "--bogus", "--help", NULL};
    char *version[] = {"peercached", "--memory=1x", "--version", NULL};
    char *version_and_help[] = {"peercached", "--version", "-h", NULL};
    char *help_as_value[] = {"peercached", "--name", "--help", NULL};
    char err[128];
    pc_config_t cfg;

    (void)state;
    assert_int_equal(pc_config_load(&cfg, ARGC(help), help, no_env, err, sizeof(err)), 1);
    assert_int_equal(pc_config_load(&cfg, ARGC(h), h, no_env, err, sizeof(err)), 1);
    assert_int_equal(
        pc_config_load(&cfg, ARGC(help_after_error), help_after_error, no_env, err, sizeof(err)),
        1);
    assert_int_equal(pc_config_load(&cfg, ARGC(version), version, no_env, err, sizeof(err)), 2);
    assert_int_equal(pc_config_load(&cfg, ARGC(version_and_help), version_and_help, no_env, err,
                                    sizeof(err)),
                     1);
    assert_null(cfg.listen);
    pc_config_free(&cfg);
    /* Like getopt, a flag's value is the next argument, whatever it is. */
    load_ok(&cfg, ARGC(help_as_value), help_as_value, no_env);
    assert_string_equal(cfg.name, "--help");
    pc_config_free(&cfg);
}

/* ---- errors ----------------------------------------------------------------- */

#define FLAG_FAILS(msg1, msg2, ...)                                                         \
    do {                                                                                    \
        char *argv_[] = {"peercached", __VA_ARGS__, NULL};                                  \
        load_fails(PC_EINVAL, ARGC(argv_), argv_, no_env, msg1, msg2, (const char *)NULL); \
    } while (0)

static void test_flag_errors(void **state)
{
    (void)state;
    FLAG_FAILS("--memory: '64xb' is not a size (use e.g. 64mb)", NULL, "--memory", "64xb");
    FLAG_FAILS("--memory", "below the minimum of 1mb", "--memory=512kb");
    FLAG_FAILS("--memory", "too large", "--memory=99999999999999999999");
    FLAG_FAILS("--memory", "too large", "--memory=17179869184gb");
    FLAG_FAILS("unknown option '--bogus'", NULL, "--bogus", "1");
    FLAG_FAILS("unknown option '--bogus'", NULL, "--bogus=1");
    FLAG_FAILS("unknown option '-x'", NULL, "-x");
    FLAG_FAILS("unexpected argument 'stray'", NULL, "stray");
    FLAG_FAILS("unexpected argument '--'", NULL, "--");
    FLAG_FAILS("--help takes no value", NULL, "--help=yes");
    FLAG_FAILS("--listen: missing value", NULL, "--listen");
    FLAG_FAILS("--memory", "'--listen' is not a size", "--memory", "--listen", "x:1");
    FLAG_FAILS("--listen", "'localhost' is not a HOST:PORT", "--listen", "localhost");
    FLAG_FAILS("--listen", "'h:0'", "--listen=h:0");
    FLAG_FAILS("--listen", "'::1:80'", "--listen=::1:80");
    FLAG_FAILS("--redis: 'nowhere' is not a Redis address", "has no port", "--redis",
               "nowhere");
    FLAG_FAILS("--eviction: 'fifo' is not one of s3fifo|lru", NULL, "--eviction", "fifo");
    FLAG_FAILS("--log-level", "error|warn|info|debug", "--log-level=loud");
    FLAG_FAILS("--max-connections", "'-1' is not a whole number", "--max-connections", "-1");
    FLAG_FAILS("--max-connections", "'10k' is not a whole number", "--max-connections=10k");
    FLAG_FAILS("--max-connections", "below the minimum of 1", "--max-connections=0");
    FLAG_FAILS("--max-connections", "too large", "--max-connections=18446744073709551616");
    FLAG_FAILS("--max-mget-keys", "above the maximum of 4294967295",
               "--max-mget-keys=4294967296");
    FLAG_FAILS("--idle-timeout", "'5x' is not a duration", "--idle-timeout", "5x");
    FLAG_FAILS("--idle-timeout", "' 5'", "--idle-timeout", " 5");
    FLAG_FAILS("--sweep-interval", "below the minimum of 1ms", "--sweep-interval=0");
    FLAG_FAILS("--redis-timeout", "''", "--redis-timeout=");
    FLAG_FAILS("--max-frame", "above the maximum", "--max-frame=4gb");
    FLAG_FAILS("--max-key", "below the minimum of 1", "--max-key=0");
    /* Cross-checks name both options. */
    FLAG_FAILS("--max-frame", "--max-key", "--max-key=1mb");
    FLAG_FAILS("--max-frame", "--max-value", "--max-value=2mb");
    FLAG_FAILS("--max-output", "--max-frame", "--max-output=1mb");
}

/* --tcp-rto-min: 0 (the kernel's), or 1ms up to the kernel's own 200 ms
 * floor, which the socket option may only lower; from every source. */
static void test_tcp_rto_min(void **state)
{
    static const struct {
        const char *value;
        uint64_t ms;
    } good[] = {{"0", 0}, {"1ms", 1}, {"1", 1}, {"12ms", 12}, {"200ms", 200}};
    char *env[] = {"PEERCACHE_INSECURE=1", "PEERCACHE_TCP_RTO_MIN=25ms", NULL};
    char *bare[] = {"peercached", NULL};
    char *file_argv[] = {"peercached", "--config", NULL, NULL};
    pc_config_t cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char *argv[] = {"peercached", "--tcp-rto-min", (char *)good[i].value, NULL};

        load_ok(&cfg, ARGC(argv), argv, no_env);
        assert_int_equal(cfg.tcp_rto_min_ms, good[i].ms);
        pc_config_free(&cfg);
    }
    load_ok(&cfg, ARGC(bare), bare, env);
    assert_int_equal(cfg.tcp_rto_min_ms, 25);
    pc_config_free(&cfg);
    file_argv[2] = write_temp("tcp-rto-min = 40ms\n");
    load_ok(&cfg, ARGC(file_argv), file_argv, no_env);
    assert_int_equal(cfg.tcp_rto_min_ms, 40);
    pc_config_free(&cfg);
    remove_temp(file_argv[2]);

    FLAG_FAILS("--tcp-rto-min", "'201ms' is above the maximum of 200ms", "--tcp-rto-min=201ms");
    FLAG_FAILS("--tcp-rto-min", "'1s' is above the maximum of 200ms", "--tcp-rto-min", "1s");
    FLAG_FAILS("--tcp-rto-min", "'5us' is not a duration", "--tcp-rto-min", "5us");
    FLAG_FAILS("--tcp-rto-min", "'-1' is not a duration", "--tcp-rto-min=-1");
}

/*
 * --redis in its URL forms, and the options that go with it: each from a
 * flag, the environment and a file, and the rules between them.
 */
static void test_redis_options(void **state)
{
    char *flags[] = {"peercached", "--redis", "sentinel://s1,s2:26380/mymaster/2",
                     "--redis-user", "app", "--redis-password-file=/run/redis.pw",
                     "--redis-wait", "2", NULL};
    char *bare[] = {"peercached", NULL};
    char *env[] = {"PEERCACHE_INSECURE=1", "PEERCACHE_REDIS=unix:///run/redis.sock?db=2",
                   "PEERCACHE_REDIS_USER=env-user",
                   "PEERCACHE_REDIS_PASSWORD_FILE=/run/env.pw", "PEERCACHE_REDIS_WAIT=1",
                   NULL};
    char *file_argv[] = {"peercached", "--config", NULL, NULL};
    static const char *const good[] = {"redis://r1", "redis://[::1]:6380/3", "REDIS://r1/",
                                       "cluster://r1:7000,r2:7000", "unix:///run/r.sock",
                                       "NONE", "10.0.0.9:6379"};
    pc_config_t cfg;

    (void)state;
    load_ok(&cfg, ARGC(flags), flags, no_env);
    assert_string_equal(cfg.redis, "sentinel://s1,s2:26380/mymaster/2");
    assert_string_equal(cfg.redis_user, "app");
    assert_string_equal(cfg.redis_password_file, "/run/redis.pw");
    assert_int_equal(cfg.redis_wait, 2);
    pc_config_free(&cfg);

    load_ok(&cfg, ARGC(bare), bare, env);
    assert_string_equal(cfg.redis, "unix:///run/redis.sock?db=2");
    assert_string_equal(cfg.redis_user, "env-user");
    assert_string_equal(cfg.redis_password_file, "/run/env.pw");
    assert_int_equal(cfg.redis_wait, 1);
    pc_config_free(&cfg);

    file_argv[2] = write_temp("redis = cluster://r1:7000,r2:7000\n"
                              "redis-user = file-user\n"
                              "redis-password-file = /etc/peercache/redis.pw\n"
                              "redis-wait = 64\n");
    load_ok(&cfg, ARGC(file_argv), file_argv, no_env);
    assert_string_equal(cfg.redis, "cluster://r1:7000,r2:7000");
    assert_string_equal(cfg.redis_user, "file-user");
    assert_string_equal(cfg.redis_password_file, "/etc/peercache/redis.pw");
    assert_int_equal(cfg.redis_wait, 64);
    pc_config_free(&cfg);
    remove_temp(file_argv[2]);

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char *argv[] = {"peercached", "--redis", (char *)good[i], NULL};

        load_ok(&cfg, ARGC(argv), argv, no_env);
        assert_string_equal(cfg.redis, good[i]);
        pc_config_free(&cfg);
    }
    /* A password file without a user is the default user's; --redis-wait
     * 0 is off, and so fine without a Redis. */
    {
        char *argv[] = {"peercached", "--redis-password-file", "/run/pw", NULL};
        char *none_wait0[] = {"peercached", "--redis", "none", "--redis-wait", "0", NULL};

        load_ok(&cfg, ARGC(argv), argv, no_env);
        assert_string_equal(cfg.redis_user, "");
        pc_config_free(&cfg);
        load_ok(&cfg, ARGC(none_wait0), none_wait0, no_env);
        pc_config_free(&cfg);
    }

    FLAG_FAILS("--redis-wait", "above the maximum of 64", "--redis-wait=65");
    FLAG_FAILS("--redis-wait", "'x' is not a whole number", "--redis-wait", "x");
    FLAG_FAILS("--redis: 'redis://r1:0' is not a Redis address", "out of range 1..65535", "--redis",
               "redis://r1:0");
    FLAG_FAILS("--redis", "is not a Redis address", "--redis=sentinel://a:1,,b:2/m");
    FLAG_FAILS("--redis", "is not a Redis address", "--redis=sentinel://a:1");
    FLAG_FAILS("--redis", "is not a Redis address", "--redis=cluster://r1/2");
    FLAG_FAILS("--redis", "is not a Redis address", "--redis=unix://run/redis.sock");
}

/* A user or password in --redis is refused, and not repeated in the
 * message (it is printed, and logged). */
static void test_redis_secret_refused(void **state)
{
    static const char *const values[] = {"redis://app:s3cret@r1:6379", "redis://:s3cret@r1",
                                         "s3cret@r1:6379", "unix:///run/r.sock?password=s3cret"};
    char env_value[128];
    char *env[] = {"PEERCACHE_INSECURE=1", env_value, NULL};
    char *bare[] = {"peercached", NULL};
    char err[512];
    pc_config_t cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *argv[] = {"peercached", "--redis", (char *)values[i], NULL};

        assert_int_equal(pc_config_load(&cfg, ARGC(argv), argv, no_env, err, sizeof(err)),
                         PC_EINVAL);
        assert_non_null(strstr(err, "--redis:"));
        assert_non_null(strstr(err, "--redis-user and --redis-password-file"));
        assert_null(strstr(err, "s3cret"));

        snprintf(env_value, sizeof(env_value), "PEERCACHE_REDIS=%s", values[i]);
        assert_int_equal(pc_config_load(&cfg, ARGC(bare), bare, env, err, sizeof(err)),
                         PC_EINVAL);
        assert_non_null(strstr(err, "PEERCACHE_REDIS:"));
        assert_null(strstr(err, "s3cret"));
    }
}

static void test_redis_cross_errors(void **state)
{
    char *none_env[] = {"PEERCACHE_INSECURE=1", "PEERCACHE_REDIS=none", NULL};
    char *user_only[] = {"peercached", "--redis-user", "app", NULL};
    char *file_argv[] = {"peercached", "--config", NULL, NULL};
    char *pwfile[] = {"peercached", "--redis-password-file", "/run/pw", NULL};
    char *wait[] = {"peercached", "--redis-wait=3", NULL};

    (void)state;
    FLAG_FAILS("--redis-user (from --redis-user) needs --redis-password-file", NULL,
               "--redis-user", "app");
    FLAG_FAILS("--redis-password-file (from --redis-password-file) is set but --redis "
               "(from --redis) is none",
               "no Redis to authenticate to", "--redis", "none", "--redis-password-file",
               "/run/pw");
    /* With no Redis, that is the mistake to report, not the missing file. */
    FLAG_FAILS("--redis-user (from --redis-user) is set but --redis (from --redis) is none",
               NULL, "--redis", "none", "--redis-user", "app");
    FLAG_FAILS("--redis-wait 1 (from --redis-wait)", "--redis (from --redis) is none",
               "--redis=None", "--redis-wait", "1");

    /* The sources of both options are named, whichever they are. */
    load_fails(PC_EINVAL, ARGC(pwfile), pwfile, none_env, "--redis (from PEERCACHE_REDIS)",
               "--redis-password-file (from --redis-password-file)", NULL);
    load_fails(PC_EINVAL, ARGC(wait), wait, none_env, "--redis-wait 3 (from --redis-wait)",
               "--redis (from PEERCACHE_REDIS) is none", NULL);
    file_argv[2] = write_temp("redis-user = app\n");
    load_fails(PC_EINVAL, ARGC(file_argv), file_argv, no_env, "--redis-user (from config file",
               "line 1) needs --redis-password-file", NULL);
    load_fails(PC_EINVAL, ARGC(file_argv), file_argv, none_env, "is set but --redis", NULL);
    remove_temp(file_argv[2]);
    load_fails(PC_EINVAL, ARGC(user_only), user_only, none_env,
               "--redis-user (from --redis-user) is set", NULL);
}

static void test_env_errors(void **state)
{
    char *argv[] = {"peercached", NULL};
    char *bad_size[] = {"PEERCACHE_MEMORY=64xb", NULL};
    char *bad_enum[] = {"PEERCACHE_LOG_LEVEL=verbose", NULL};
    char *bad_addr[] = {"PEERCACHE_LISTEN=", NULL};
    char *missing_file[] = {"PEERCACHE_CONFIG=/nonexistent/peercache.conf", NULL};

    (void)state;
    load_fails(PC_EINVAL, 1, argv, bad_size, "PEERCACHE_MEMORY: '64xb' is not a size", NULL);
    load_fails(PC_EINVAL, 1, argv, bad_enum, "PEERCACHE_LOG_LEVEL", "'verbose'", NULL);
    load_fails(PC_EINVAL, 1, argv, bad_addr, "PEERCACHE_LISTEN: ''", NULL);
    load_fails(PC_EIO, 1, argv, missing_file, "config file /nonexistent/peercache.conf",
               "No such file", NULL);
}

static void file_fails(int want, const char *text, const char *msg1, const char *msg2)
{
    char *path = write_temp(text);
    char *argv[] = {"peercached", "--config", path, NULL};

    load_fails(want, ARGC(argv), argv, no_env, path, msg1, msg2, NULL);
    remove_temp(path);
}

static void test_file_errors(void **state)
{
    char *dir_argv[] = {"peercached", "--config", "/", NULL};

    (void)state;
    file_fails(PC_EINVAL, "memory = 8mb\n\nfoo = 1\n", "line 3: unknown option 'foo'", NULL);
    file_fails(PC_EINVAL, "# c\nmemory = 64xb\n", "line 2: memory: '64xb' is not a size",
               NULL);
    file_fails(PC_EINVAL, "memory 8mb\n", "line 1: expected 'name = value'", NULL);
    file_fails(PC_EINVAL, "= 8mb\n", "line 1: expected 'name = value'", NULL);
    file_fails(PC_EINVAL, "--memory = 8mb\n", "unknown option '--memory'", NULL);
    file_fails(PC_EINVAL, "config = other.conf\n", "line 1: 'config' cannot be set", NULL);
    file_fails(PC_EINVAL, "eviction = random", "line 1: eviction", "s3fifo|lru");
    /* A cross-check failure caused by the file still names the options. */
    file_fails(PC_EINVAL, "max-value = 4mb\n", "--max-value", NULL);
    load_fails(PC_EIO, ARGC(dir_argv), dir_argv, no_env, "config file /", NULL);
}

/*
 * A token in a config file is a secret at rest, like a --token-file: a
 * file group or others may read or write is refused as a token file is,
 * whatever else it says. A file without a secret in it (or with an empty
 * token, which is none) may be world-readable, as config files usually
 * are.
 */
static void test_file_secret_mode(void **state)
{
    static const char *const secret = "memory = 8mb\n# the client token\ntoken = s3cret\n";
    static const mode_t open_modes[] = {0644, 0640, 0604, 0620, 0602, 0660, 0666};
    char *path = write_temp(secret);
    char *argv[] = {"peercached", "--config", path, NULL};
    char want[PATH_MAX + 128];
    pc_config_t cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        assert_int_equal(chmod(path, open_modes[i]), 0);
        snprintf(want, sizeof(want),
                 "config file %s sets token (line 3) but is readable or writable by "
                 "group/others (mode %04o): chmod 600 %s, or move it to a token-file",
                 path, (unsigned)open_modes[i], path);
        load_fails(PC_EPERM, ARGC(argv), argv, no_env, want, NULL);
    }
    /* The environment would override the file's token, but the file is
     * refused all the same: its secret is exposed either way. */
    {
        char *env[] = {"PEERCACHE_INSECURE=1", "PEERCACHE_TOKEN=from-env", NULL};
        load_fails(PC_EPERM, ARGC(argv), argv, env, "chmod 600", NULL);
    }
    for (mode_t m = 0400; m <= 0600; m += 0200) {
        assert_int_equal(chmod(path, m), 0);
        load_ok(&cfg, ARGC(argv), argv, no_env);
        assert_string_equal(cfg.token, "s3cret");
        assert_int_equal(cfg.memory, 8 * MIB);
        pc_config_free(&cfg);
    }
    remove_temp(path);

    /* No secret, or an empty one: any mode loads. */
    path = write_temp("memory = 8mb\ntoken =\ntoken-file = /run/tok\n");
    argv[2] = path;
    assert_int_equal(chmod(path, 0644), 0);
    load_ok(&cfg, ARGC(argv), argv, no_env);
    assert_string_equal(cfg.token, "");
    assert_string_equal(cfg.token_file, "/run/tok");
    assert_int_equal(cfg.memory, 8 * MIB);
    pc_config_free(&cfg);
    remove_temp(path);
}

static void test_bad_flag_beats_file(void **state)
{
    /* Flag syntax errors are found before the file is even opened. */
    char *argv[] = {"peercached", "--config", "/nonexistent", "--nope", NULL};

    (void)state;
    load_fails(PC_EINVAL, ARGC(argv), argv, no_env, "unknown option '--nope'", NULL);
}

/* ---- parsers ------------------------------------------------------------------ */

static void test_parse_size(void **state)
{
    size_t v = 0;

    (void)state;
    assert_int_equal(pc_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(pc_parse_size("1048576", &v), 0);
    assert_int_equal(v, MIB);
    assert_int_equal(pc_parse_size("17b", &v), 0);
    assert_int_equal(v, 17);
    assert_int_equal(pc_parse_size("512k", &v), 0);
    assert_int_equal(v, 512 * 1024);
    assert_int_equal(pc_parse_size("512KB", &v), 0);
    assert_int_equal(v, 512 * 1024);
    assert_int_equal(pc_parse_size("64mb", &v), 0);
    assert_int_equal(v, 64 * MIB);
    assert_int_equal(pc_parse_size("64M", &v), 0);
    assert_int_equal(v, 64 * MIB);
    assert_int_equal(pc_parse_size("1g", &v), 0);
    assert_int_equal(v, 1024 * MIB);
    assert_int_equal(pc_parse_size("2Gb", &v), 0);
    assert_int_equal(v, 2048 * MIB);

    v = 42;
    assert_int_equal(pc_parse_size("", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("mb", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("1mb+128kb", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("-1", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("+1", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size(" 1", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("1 ", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("64 mb", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("1.5mb", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("1tb", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size("0x10", &v), PC_EINVAL);
    assert_int_equal(pc_parse_size(NULL, &v), PC_EINVAL);
    assert_int_equal(v, 42); /* untouched on error */

    /* Overflow: in the digits, and in the multiplication. */
    assert_int_equal(pc_parse_size("18446744073709551616", &v), PC_ERANGE);
    assert_int_equal(pc_parse_size("99999999999999999999999999kb", &v), PC_ERANGE);
    assert_int_equal(pc_parse_size("17179869184gb", &v), PC_ERANGE);
    /* ...but a bad unit is reported as such, even on a huge number. */
    assert_int_equal(pc_parse_size("99999999999999999999999999xb", &v), PC_EINVAL);
    if (SIZE_MAX == UINT64_MAX) {
        assert_int_equal(pc_parse_size("18446744073709551615", &v), 0);
        assert_true(v == SIZE_MAX);
        assert_int_equal(pc_parse_size("17179869183gb", &v), 0);
        assert_int_equal(pc_parse_size("18014398509481984k", &v), PC_ERANGE);
    } else {
        assert_int_equal(pc_parse_size("4g", &v), PC_ERANGE);
    }
}

static void test_parse_duration(void **state)
{
    uint64_t v = 0;

    (void)state;
    assert_int_equal(pc_parse_duration_ms("500", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(pc_parse_duration_ms("500ms", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(pc_parse_duration_ms("2s", &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(pc_parse_duration_ms("1m", &v), 0);
    assert_int_equal(v, 60000);
    assert_int_equal(pc_parse_duration_ms("2h", &v), 0);
    assert_int_equal(v, 7200000);
    assert_int_equal(pc_parse_duration_ms("3S", &v), 0);
    assert_int_equal(v, 3000);
    assert_int_equal(pc_parse_duration_ms("0", &v), 0);
    assert_int_equal(v, 0);

    v = 42;
    assert_int_equal(pc_parse_duration_ms("", &v), PC_EINVAL);
    assert_int_equal(pc_parse_duration_ms("s", &v), PC_EINVAL);
    assert_int_equal(pc_parse_duration_ms("1.5s", &v), PC_EINVAL);
    assert_int_equal(pc_parse_duration_ms("-5", &v), PC_EINVAL);
    assert_int_equal(pc_parse_duration_ms("5d", &v), PC_EINVAL);
    assert_int_equal(pc_parse_duration_ms("5 s", &v), PC_EINVAL);
    assert_int_equal(pc_parse_duration_ms("1m30s", &v), PC_EINVAL);
    assert_int_equal(pc_parse_duration_ms(NULL, &v), PC_EINVAL);
    assert_int_equal(v, 42);

    assert_int_equal(pc_parse_duration_ms("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(pc_parse_duration_ms("18446744073709551616", &v), PC_ERANGE);
    assert_int_equal(pc_parse_duration_ms("18446744073709552s", &v), PC_ERANGE);
    assert_int_equal(pc_parse_duration_ms("18446744073709551s", &v), 0);
    assert_int_equal(pc_parse_duration_ms("5124095576030432h", &v), PC_ERANGE);
}

/* ---- usage -------------------------------------------------------------------- */

/* The example shipped in deploy/ must stay loadable and mean what it says. */
static void test_example_config_file(void **state)
{
    pc_config_t cfg;
    char *argv[] = {"peercached", "--config", PC_EXAMPLE_CONFIG, NULL};

    (void)state;
    load_ok(&cfg, ARGC(argv), argv, no_env);
    assert_string_equal(cfg.listen, "127.0.0.1:7400");
    assert_string_equal(cfg.name, "cache-1");
    assert_string_equal(cfg.redis_prefix, "app:");
    assert_int_equal(cfg.redis_timeout_ms, 500);
    assert_int_equal(cfg.memory, 256 * MIB);
    assert_int_equal(cfg.idle_timeout_ms, 300000);
    assert_int_equal(cfg.output_timeout_ms, 10000);
    assert_int_equal(cfg.frame_timeout_ms, 10000);
    assert_int_equal(cfg.max_buffer_memory, 256 * MIB);
    assert_string_equal(cfg.join, "127.0.0.1:7401,127.0.0.1:7402");
    assert_string_equal(cfg.gossip, "127.0.0.1:7400");
    assert_string_equal(cfg.advertise, "127.0.0.1:7400");
    assert_int_equal(cfg.replicas, 2);
    assert_int_equal(cfg.probe_interval_ms, 1000);
    pc_config_free(&cfg);
}

static void test_cluster_options(void **state)
{
    pc_config_t cfg;
    char err[512];
    (void)state;
    char *good[] = {"peercached", "--listen", "127.0.0.1:7500", "--join",
                    "127.0.0.1:7400, 127.0.0.1:7401", "--replicas", "3", "--weight", "5",
                    "--gossip", "127.0.0.1:7600", NULL};
    load_ok(&cfg, ARGC(good), good, no_env);
    assert_string_equal(cfg.name, "127.0.0.1:7500");
    assert_string_equal(cfg.advertise, "127.0.0.1:7500");
    assert_string_equal(cfg.gossip, "127.0.0.1:7600");
    assert_int_equal(cfg.replicas, 3);
    assert_int_equal(cfg.weight, 5);
    assert_int_equal(cfg.pushpull_interval_ms, 30000);
    pc_config_free(&cfg);

    /* Gossip goes to an address: --listen as a host name needs --gossip. */
    char *named[] = {"peercached", "--listen", "localhost:7500", NULL};
    assert_int_equal(pc_config_load(&cfg, ARGC(named), named, no_env, err, sizeof err),
                     PC_EINVAL);
    assert_non_null(strstr(err, "--gossip localhost:7500: must be an IP address"));
    char *named_ok[] = {"peercached", "--listen", "localhost:7500", "--gossip", "[::1]:7500",
                        NULL};
    load_ok(&cfg, ARGC(named_ok), named_ok, no_env);
    assert_string_equal(cfg.gossip, "[::1]:7500");
    pc_config_free(&cfg);
    char *bad_gossip[] = {"peercached", "--gossip", "gossip.example:7600", NULL};
    assert_int_equal(pc_config_load(&cfg, ARGC(bad_gossip), bad_gossip, no_env, err, sizeof err),
                     PC_EINVAL);
    assert_non_null(strstr(err, "must be an IP address"));

    char *bad_join[] = {"peercached", "--join", "127.0.0.1", NULL};
    assert_int_equal(pc_config_load(&cfg, ARGC(bad_join), bad_join, no_env, err, sizeof err),
                     PC_EINVAL);
    assert_non_null(strstr(err, "join"));
    char *bad_rep[] = {"peercached", "--replicas", "0", NULL};
    assert_int_equal(pc_config_load(&cfg, ARGC(bad_rep), bad_rep, no_env, err, sizeof err),
                     PC_EINVAL);
    char *bad_probe[] = {"peercached", "--probe-timeout", "2s", NULL};
    assert_int_equal(pc_config_load(&cfg, ARGC(bad_probe), bad_probe, no_env, err, sizeof err),
                     PC_EINVAL);
    assert_non_null(strstr(err, "probe-interval"));
}

static void test_usage_lists_every_option(void **state)
{
    static const char *const must[] = {
        "Usage: peercached [OPTIONS]",
        "--config FILE",      "PEERCACHE_CONFIG",
        "--listen HOST:PORT", "PEERCACHE_LISTEN",         "default: 127.0.0.1:7400",
        "--name NAME",        "default: the --listen value",
        "--redis ADDRESS",    "PEERCACHE_REDIS,",         "default: 127.0.0.1:6379",
        "sentinel://HOST[:PORT][,...]/MASTER[/DB]",       "\"Redis behind the nodes\"",
        "--redis-prefix",     "PEERCACHE_REDIS_PREFIX",
        "--redis-timeout",    "PEERCACHE_REDIS_TIMEOUT",
        "--redis-user NAME",  "PEERCACHE_REDIS_USER,",
        "--redis-password-file FILE",                     "PEERCACHE_REDIS_PASSWORD_FILE,",
        "--redis-wait N",     "PEERCACHE_REDIS_WAIT,",    "Redis WAIT",
        "--memory SIZE",      "PEERCACHE_MEMORY",         "default: 64mb",
        "--eviction s3fifo|lru",                          "PEERCACHE_EVICTION",
        "--max-connections",  "PEERCACHE_MAX_CONNECTIONS",
        "--idle-timeout",     "PEERCACHE_IDLE_TIMEOUT",   "default: 300000",
        "--max-frame",        "PEERCACHE_MAX_FRAME",      "default: 1179648",
        "--max-key",          "PEERCACHE_MAX_KEY",
        "--max-value",        "PEERCACHE_MAX_VALUE",
        "--max-mget-keys",    "PEERCACHE_MAX_MGET_KEYS",
        "--max-inflight",     "PEERCACHE_MAX_INFLIGHT",
        "--max-output",       "PEERCACHE_MAX_OUTPUT",
        "--shutdown-timeout", "PEERCACHE_SHUTDOWN_TIMEOUT",
        "--sweep-interval",   "PEERCACHE_SWEEP_INTERVAL",
        "--tcp-rto-min DURATION", "PEERCACHE_TCP_RTO_MIN",  "default: 10ms",
        "--log-level error|warn|info|debug",              "PEERCACHE_LOG_LEVEL",
        "--help",             "--version",
    };
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    (void)state;
    assert_non_null(out);
    pc_config_usage(out, NULL);
    fclose(out);
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
        if (strstr(text, must[i]) == NULL)
            fail_msg("usage lacks '%s':\n%s", must[i], text);
    }
    free(text);

    out = open_memstream(&text, &len);
    assert_non_null(out);
    pc_config_usage(out, "./my-node");
    fclose(out);
    assert_non_null(strstr(text, "Usage: ./my-node [OPTIONS]"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_security_options),
        cmocka_unit_test(test_flags_both_syntaxes),
        cmocka_unit_test(test_name_defaults_to_listen),
        cmocka_unit_test(test_last_flag_wins_and_reload),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_config_flag_beats_config_env),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_redis_options),
        cmocka_unit_test(test_redis_secret_refused),
        cmocka_unit_test(test_redis_cross_errors),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_tcp_rto_min),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_secret_mode),
        cmocka_unit_test(test_bad_flag_beats_file),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_example_config_file),
        cmocka_unit_test(test_usage_lists_every_option),
        cmocka_unit_test(test_cluster_options),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
