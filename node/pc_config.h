/*
 * pc_config.h -- peercached's configuration: one table of options behind
 * the command line, the environment and the config file, and --help.
 *
 * Sources, later ones winning: built-in defaults < config file
 * (--config FILE or PEERCACHE_CONFIG) < environment (PEERCACHE_<NAME>, the
 * option name upper-cased with '-' -> '_') < command-line flags
 * (--name value or --name=value).
 *
 * Config file: one "name = value" per line; blank lines and lines starting
 * with '#' are ignored; names are the long option names without "--".
 *
 * Errors: pc_config_load() returns 0, PC_EINVAL (unknown option, bad value,
 * missing argument) with a one-line reason in errbuf, PC_EIO (config
 * file unreadable), or PC_EPERM (the config file sets a secret -- a
 * non-empty token -- while group or others may access it; errbuf says
 * "chmod 600"). It never prints or exits; main() decides.
 *
 * Ownership: strings in pc_config_t are owned by the config; free with
 * pc_config_free(). Thread rules: none (used by main only).
 */
#ifndef PC_CONFIG_H
#define PC_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pc_error.h"

typedef struct pc_config {
    char *config_file;          /* --config */
    int check_config;           /* --check-config: check, say so, start nothing */
    char *listen;               /* --listen HOST:PORT, default 127.0.0.1:7400 */
    char *name;                 /* --name, default = listen */
    char *redis;                /* --redis ADDRESS, default 127.0.0.1:6379: one that
                                   pc_backend_addr_parse() accepts (checked) */
    char *redis_prefix;         /* --redis-prefix, default "" */
    uint64_t redis_timeout_ms;  /* --redis-timeout, default 1000 */
    char *redis_user;           /* --redis-user, default "" = the default user
                                   (AUTH password); needs redis_password_file */
    char *redis_password_file;  /* --redis-password-file FILE, default "" = no
                                   AUTH; only the path: main reads the file */
    uint64_t redis_wait;        /* --redis-wait N, default 0 = off: replicas
                                   each write waits for (Redis WAIT) */
    size_t memory;              /* --memory, default 64mb */
    char *eviction;             /* --eviction s3fifo|lru, default s3fifo */
    uint64_t threads;           /* --threads, default 0 = one per core */
    char *io;                   /* --io uring|epoll: how loops read and write client
                                   sockets (main falls back to epoll if io_uring
                                   is refused) */
    uint64_t max_connections;   /* --max-connections, default 10000 */
    uint64_t max_conns_per_source; /* --max-conns-per-source, default 1024 (0 = off) */
    uint64_t hello_timeout_ms;  /* --hello-timeout, default 3000 */
    uint64_t idle_timeout_ms;   /* --idle-timeout, default 300000 (0 = off) */
    size_t max_frame;           /* --max-frame, default 1mb+128kb */
    size_t max_key;             /* --max-key, default 64kb */
    size_t max_value;           /* --max-value, default 1mb */
    uint64_t max_mget_keys;     /* --max-mget-keys, default 1024 */
    uint64_t max_inflight;      /* --max-inflight, per connection, default 1024 */
    size_t max_output;          /* --max-output, per connection, default 4mb:
                                   reading pauses while more is queued */
    uint64_t output_timeout_ms; /* --output-timeout, default 10000: a client
                                   that stays over max-output this long
                                   (stopped reading) is disconnected */
    uint64_t frame_timeout_ms;  /* --frame-timeout, default 10000 (0 = off) */
    size_t max_buffer_memory;   /* --max-buffer-memory, all connections, 256mb */
    uint64_t shutdown_timeout_ms; /* --shutdown-timeout, default 5000 */
    uint64_t sweep_interval_ms; /* --sweep-interval, default 100 */
    uint64_t tcp_rto_min_ms;    /* --tcp-rto-min, default 10 (0 = the kernel's) */
    char *log_level;            /* --log-level error|warn|info|debug, default info */
    char *log_format;           /* --log-format text|json, default text */
    char *http;                 /* --http HOST:PORT or "none", default none */
    char *resp;                 /* --resp HOST:PORT or "none", default none */

    /* security (docs/SECURITY.md) */
    char *cluster_key;          /* --cluster-key FILE, default "" */
    int insecure;               /* --insecure: no key; required if no cluster-key */
    uint64_t replay_window_ms;  /* --replay-window, default 60000 */
    char *token_file;           /* --token-file FILE, default "" */
    char *token;                /* token (PEERCACHE_TOKEN / file only), "" = none */

    /* cluster (docs/MEMBERSHIP.md, docs/CONSISTENCY.md) */
    char *join;                 /* --join HOST:PORT[,...], default "" (start alone) */
    char *advertise;            /* --advertise HOST:PORT, default = listen */
    char *gossip;               /* --gossip HOST:PORT (UDP), default = listen */
    uint64_t replicas;          /* --replicas, default 2 */
    uint64_t weight;            /* --weight, default 1 */
    uint64_t probe_interval_ms; /* --probe-interval, default 1000 */
    uint64_t probe_timeout_ms;  /* --probe-timeout, default 500 */
    uint64_t indirect_probes;   /* --indirect-probes, default 3 */
    uint64_t suspicion_mult;    /* --suspicion-mult, default 4 */
    uint64_t gossip_interval_ms; /* --gossip-interval, default 200 */
    uint64_t pushpull_interval_ms; /* --pushpull-interval, default 30000 (0 = off) */
    uint64_t peer_timeout_ms;   /* --peer-timeout, default 2000 */
    uint64_t ring_settle_ms;    /* --ring-settle, default 5000 */
    size_t handoff_rate;        /* --handoff-rate, bytes/s, default 64mb */
} pc_config_t;

/* Fills *cfg from defaults, file, environment and argv (argv[0] skipped).
 * envp is a NULL-terminated "NAME=value" array (pass `environ`), so tests
 * can pass their own. On PC_EINVAL, errbuf holds the reason.
 * If argv holds --help or -h, returns 1 and does nothing else;
 * --version returns 2. (Either wins over errors elsewhere in argv.)
 * *cfg is overwritten, not freed: pc_config_free() a loaded config before
 * loading into it again. On any return but 0, *cfg is left all zero (and
 * pc_config_free() on it is harmless). Environment variables that start
 * with PEERCACHE_ but name no option are ignored, not errors. */
int pc_config_load(pc_config_t *cfg, int argc, char **argv, char **envp, char *errbuf,
                   size_t errlen);

/* Frees owned strings; the struct may be loaded again. */
void pc_config_free(pc_config_t *cfg);

/* Writes the --help text (every option, its env name, default, meaning). */
void pc_config_usage(FILE *out, const char *prog);

/* Parses "64mb", "512k", "1g", "1048576", "1mb+128kb" is NOT accepted:
 * one number with an optional unit b/k/kb/m/mb/g/gb (powers of 1024,
 * case-insensitive). 0, PC_EINVAL, or PC_ERANGE on overflow. */
int pc_parse_size(const char *s, size_t *out);

/* Parses a duration: "500" (ms), "500ms", "2s", "1m", "1h" (units
 * case-insensitive; one number, one unit). 0, PC_EINVAL, PC_ERANGE. */
int pc_parse_duration_ms(const char *s, uint64_t *out);

#endif
