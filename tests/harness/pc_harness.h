/*
 * pc_harness.h -- real processes for integration tests.
 *
 * Starts redis-server and peercached on free loopback ports in a private
 * temporary directory, waits for them with deadlines (never fixed
 * sleeps), and stops them. Children die with the test process
 * (PR_SET_PDEATHSIG), so a crashed test leaves nothing running.
 *
 * The peercached binary comes from $PC_PEERCACHED, the CLI from $PC_CLI
 * (ctest sets both); redis-server from $PC_REDIS_SERVER or the PATH.
 * Sentinel groups and Redis Clusters are in pc_harness_redis.h.
 *
 * Thread rules: call from the test's main thread.
 */
#ifndef PC_HARNESS_H
#define PC_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "pc_client.h"
#include "pc_proto.h"
#include "pc_seal.h"

typedef struct pc_h_proc {
    pid_t pid;
    int port;
    char addr[64]; /* "127.0.0.1:port" */
    char log[512]; /* stderr of the process */
    int node;      /* started by pc_h_node_start*: pc_h_stop checks it */
} pc_h_proc_t;

/* Monotonic milliseconds. */
uint64_t pc_h_now_ms(void);

/* A fresh temp directory for this test process (created once), for the
 * logs of the processes it starts and any file a test writes. */
const char *pc_h_tmpdir(void);

/* The end of a test program: `return pc_h_finish(failed);` with failed the
 * number of failed tests (cmocka_run_group_tests' result). Removes
 * pc_h_tmpdir() and all in it when nothing failed and PC_KEEP_TMP is unset
 * (or "0"); else leaves it and names it on stderr, for the logs. Returns
 * the exit status: 0, or 1 if anything failed. A test that aborts never
 * gets here, so its directory stays too. */
int pc_h_finish(int failed);

/* "<pc_h_tmpdir()>/<name>", in one of 16 static buffers used in turn:
 * valid until 16 more calls (the result may be kept as a test's path for
 * a while, not for good). Not thread-safe. */
const char *pc_h_tmp_path(const char *name);

/* A port on 127.0.0.1 that nothing uses right now, for TCP and UDP alike
 * (a node gossips over UDP on its listen port), chosen at random below
 * the kernel's range for outgoing connections' local ports, so that no
 * connect() takes it before it is bound (pc_harness.c). */
int pc_h_free_port(void);

/* Starts redis-server on a free port (or `port` if > 0), with no
 * persistence and a dump file of its own (redis-<port>.rdb in
 * pc_h_tmpdir(); a replica's full sync writes one); waits until it
 * answers PING (deadline 10 s). 0 or -1. */
int pc_h_redis_start(pc_h_proc_t *p, int port);
/* The same with the NULL-terminated `extra` arguments (or NULL) appended
 * to redis-server's command line, e.g. {"--requirepass", "pw", NULL} or
 * {"--replicaof", "127.0.0.1", "6400", NULL}; they override the harness'
 * own (--save "", --appendonly no, --dbfilename, ...). Any answer
 * to PING counts as ready, an error too (-NOAUTH under --requirepass,
 * -LOADING): the server is up. 0 or -1 (the log is printed; also -1 for
 * more than 48 extra arguments). */
int pc_h_redis_start_args(pc_h_proc_t *p, int port, const char *const *extra);

/* Writes a key file of nkeys fresh random keys (mode 0600). 0 or -1. */
int pc_h_write_key_file(const char *path, int nkeys);

/* The key file every node of this test process shares (written once, in
 * pc_h_tmpdir()), or NULL if it cannot be written. */
const char *pc_h_cluster_key(void);

/* Starts peercached with extra arguments (NULL-terminated list) on a free
 * port, adding --listen, and --cluster-key pc_h_cluster_key() unless args
 * hold --cluster-key or --insecure; waits until it accepts connections
 * (10 s). 0 or -1 (the log is printed). */
int pc_h_node_start(pc_h_proc_t *p, const char *const *args);
/* Same on a given port (> 0; e.g. to restart a node where it was), or a
 * free one (0). */
int pc_h_node_start_port(pc_h_proc_t *p, int port, const char *const *args);

/*
 * Sends sig (0 = none, just wait) and waits for exit up to timeout_ms;
 * returns the exit status as waitpid reports it (>= 0), or -1 on timeout
 * (then SIGKILLs).
 *
 * For a peercached node it also checks how the node ended, and aborts the
 * test process with the node's log on stderr if
 *   - its log holds a sanitizer report (AddressSanitizer, LeakSanitizer,
 *     UBSan's "runtime error:"), whatever the signal: a SIGKILL cannot
 *     produce one, so a report there came before it; or
 *   - it was stopped with SIGTERM and did not exit 0 (the leak check at
 *     exit turns a leak into a non-zero exit, too).
 * Nodes stopped with SIGKILL, or with sig 0 (the test signalled it and
 * judges the status itself), are exempt from the exit check. No test
 * expects a node to fail these, so aborting is the loudest and surest
 * failure: it does not depend on each caller checking the result.
 */
int pc_h_stop(pc_h_proc_t *p, int sig, int timeout_ms);

/* Starts any program (argv[0] looked up in PATH) with stdout and stderr
 * in pc_h_tmpdir()/<name>.log; it dies with the test process. pc_h_stop
 * ends it. 0 or -1. */
int pc_h_spawn(pc_h_proc_t *p, const char *const *argv, const char *name);

/* Waits (up to 10 s) until p accepts connections -- and, if redis, answers
 * PING (an error answer counts: -NOAUTH, -LOADING) -- or exits; 0, or -1
 * with its log copied to stderr (and p->pid 0 if it exited). */
int pc_h_wait_ready(pc_h_proc_t *p, int redis);

/* Copies p's log to stderr (for a failure's diagnosis). */
void pc_h_print_log(const pc_h_proc_t *p);

/* The redis-server to run: $PC_REDIS_SERVER, else "redis-server". */
const char *pc_h_redis_server_bin(void);

/* A waitpid status in words ("exited with status 1", "was killed by
 * signal 9 (Killed)"), NUL-terminated in buf. */
void pc_h_describe_status(int status, char *buf, size_t len);

/* Synchronous hiredis connection to a started redis. */
redisContext *pc_h_redis_connect(const pc_h_proc_t *redis);
/* The same, then AUTH password (user NULL) or AUTH user password; NULL
 * if it cannot connect or AUTH is not answered +OK (the error is
 * printed). password NULL: no AUTH, as pc_h_redis_connect. */
redisContext *pc_h_redis_connect_auth(const pc_h_proc_t *redis, const char *user,
                                      const char *password);
/* 1 if the server on c answers ROLE with "master", else 0 (NULL-safe). */
int pc_h_redis_is_master(redisContext *c);

/* A connected blocking TCP socket to 127.0.0.1:port with a receive
 * timeout, or -1. */
int pc_h_connect(int port, int rcv_timeout_ms);
/* The same from source address `from` (a dotted IPv4 address on this
 * host: on loopback any of 127.0.0.0/8, so that a node sees another
 * client address), or from the kernel's choice if from is NULL. */
int pc_h_connect_from(const char *from, int port, int rcv_timeout_ms);

/* Reads until EOF or error or the socket's timeout; returns 1 if the peer
 * closed (EOF/reset), 0 if it timed out while still open. Bytes read are
 * discarded (up to the first `keep` kept in buf if buf != NULL). */
int pc_h_wait_closed(int fd, uint8_t *buf, size_t keep, size_t *got);

/*
 * Raw protocol, for tests that need control over the bytes: fn is called
 * for each response in order (r valid only during the call) and returns 0
 * to go on, non-zero to stop. pc_h_read_responses reads from fd until n
 * responses came (or EOF, the socket's timeout, a decode error, or fn
 * said stop); pc_h_decode_responses decodes what is in buf. Both return
 * how many responses were passed to fn and accepted by it.
 */
typedef int (*pc_h_response_fn)(void *arg, int index, const pc_response_t *r);
int pc_h_read_responses(int fd, int n, pc_h_response_fn fn, void *arg);
int pc_h_decode_responses(const uint8_t *buf, size_t len, pc_h_response_fn fn, void *arg);

/* A pc_h_response_fn for any response: the last one's status and op in
 * the pc_h_reply_t at arg, and n counts them (start from {0}). */
typedef struct pc_h_reply {
    uint32_t status;
    uint32_t op;
    int n;
} pc_h_reply_t;
int pc_h_on_reply(void *arg, int index, const pc_response_t *r);

/* A pc_h_response_fn for STATS answers: status = the last response's
 * status; value = counter `name` wherever a response carries it (left as
 * the caller set it, e.g. -1, when none does). */
typedef struct pc_h_stat_q {
    const char *name;
    int64_t value;
    uint32_t status;
} pc_h_stat_q_t;
int pc_h_on_stat(void *arg, int index, const pc_response_t *r);

/* The same for a peer's connection: each reply must open with kr as a
 * sealed PC_SEAL_PEER_RESP before it is decoded (else the read stops). */
int pc_h_read_sealed_responses(int fd, int n, const pc_keyring_t *kr, pc_h_response_fn fn,
                               void *arg);

/* The keyring of pc_h_cluster_key() (loaded once; NULL on error). */
const pc_keyring_t *pc_h_keyring(void);

/* Seals, in place, every whole frame in b from offset `from` on, as a
 * peer's requests (PC_SEAL_PEER_REQ), stamped wall_ms. 0 or -1. */
int pc_h_seal_frames(pc_buf_t *b, size_t from, const pc_keyring_t *kr, pc_seal_stream_t *st,
                     uint64_t wall_ms);

/* Wall-clock milliseconds (what seals are stamped with). */
uint64_t pc_h_wall_ms(void);

/* Sends all of b; 0 or -1. */
int pc_h_send_all(int fd, const pc_buf_t *b);

/* Writes text to path with the given mode, atomically (a temporary file
 * renamed over it: a reader sees the old or the new content, whole);
 * 0, or -1 with the reason printed. */
int pc_h_write_file(const char *path, const char *text, mode_t mode);

/* Resident set size of a process in KiB, or -1. */
long pc_h_rss_kb(pid_t pid);

/* Runs a shell command line, captures stdout (up to cap-1 bytes, NUL
 * terminated) and returns the exit status (0..255), or -1. */
int pc_h_run(const char *cmdline, char *out, size_t cap);

/* A node's STATS counter `name` through client c (the first node it
 * reaches), or -1 if it cannot be read or there is no such counter. */
int64_t pc_h_stat(pc_client_t *c, const char *name);

/* For pc_h_poll: STATS field `name` of `cl` is `want` (pc_h_stat_is) or
 * at least `want` (pc_h_stat_at_least). */
typedef struct pc_h_stat_arg {
    pc_client_t *cl;
    const char *name;
    int64_t want;
} pc_h_stat_arg_t;
int pc_h_stat_is(void *arg);
int pc_h_stat_at_least(void *arg);

/* For pc_h_poll with a pc_client_t *: 1 once the node's STATS say
 * backend_up 1 (every loop's Redis connection is up; a node listens
 * before they are). */
int pc_h_backend_up(void *client);

/* Polls fn(arg) every 10 ms until it returns non-zero or timeout_ms
 * passes; returns the last value. */
int pc_h_poll(int (*fn)(void *arg), void *arg, int timeout_ms);

/* SIGSTOP to pid, then waits until every thread of it has stopped ('T'
 * in /proc/PID/task/TID/stat): kill() returns before the threads have
 * taken the signal, and one may still serve a request sent at once.
 * 0, or -1 if kill failed or a thread still ran after timeout_ms (the
 * caller sends SIGCONT either way when it is done). */
int pc_h_stop_process(pid_t pid, int timeout_ms);

/* 1 if a line of the file at path (a process' log) holds needle, else 0
 * (also when the file cannot be read). Lines longer than 4 KiB are read
 * in pieces. */
int pc_h_log_has(const char *path, const char *needle);

#endif
