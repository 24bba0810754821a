/*
 * pc_harness.h -- real processes for integration tests.
 *
 * Starts redis-server and peercached on free loopback ports in a private
 * temporary directory, waits for them with deadlines (never fixed
 * sleeps), and stops them. Children die with the test process
 * (PR_SET_PDEATHSIG), so a crashed test leaves nothing running.
 *
 * The peercached binary comes from $PC_PEERCACHED, the CLI from $PC_CLI
 * (ctest sets both); redis-server from $PC_REDIS_SERVER or the PATH;
 * redis-sentinel from the PATH.
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

/* A fresh temp directory for this test process (created once). */
const char *pc_h_tmpdir(void);

/* A port on 127.0.0.1 that nothing uses right now, for TCP and UDP alike
 * (a node gossips over UDP on its listen port). */
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

/* Synchronous hiredis connection to a started redis. */
redisContext *pc_h_redis_connect(const pc_h_proc_t *redis);
/* The same, then AUTH password (user NULL) or AUTH user password; NULL
 * if it cannot connect or AUTH is not answered +OK (the error is
 * printed). password NULL: no AUTH, as pc_h_redis_connect. */
redisContext *pc_h_redis_connect_auth(const pc_h_proc_t *redis, const char *user,
                                      const char *password);

/*
 * Redis Sentinel on loopback: a primary, two replicas and three sentinels
 * (quorum 2) that monitor them, all on free ports, in pc_h_tmpdir(). The
 * sentinels run as `redis-sentinel <conf>` if redis-sentinel (Debian's
 * package redis-sentinel) is in the PATH, else as `redis-server <conf>
 * --sentinel` (redis-server as for pc_h_redis_start). Each has its own
 * config file, sentinel-<port>.conf, which it rewrites as it learns the
 * topology; its log is sentinel-<port>.log. Like the harness' other
 * processes they die with the test process.
 */
typedef struct pc_h_sentinel_group {
    pc_h_proc_t redis[3];    /* [0] the first primary, [1] [2] its replicas */
    pc_h_proc_t sentinel[3];
    char master[32];         /* the master name the sentinels monitor */
    char sentinels[256];     /* "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" */
} pc_h_sentinel_group_t;

/* 1 if sentinels can be started (redis-sentinel, or redis-server for
 * --sentinel, found), else 0: tests skip without. */
int pc_h_sentinel_available(void);

/*
 * Starts a group monitored as `master` (letters, digits, '-', '_', '.';
 * under 32 bytes) with the sentinels' down-after-milliseconds and
 * failover-timeout (parallel-syncs 1). The replicas are started with
 * --replicaof the primary, all three with --repl-diskless-sync-delay 0
 * (Redis 7 waits 5 s for more replicas before a first full sync
 * otherwise). Waits until
 *   - the primary's INFO replication shows connected_slaves:2, both
 *     online (state=online: replicas WAIT counts), and each
 *     replica's master_link_status:up (deadline 15 s), then each sentinel
 *     answers PING (10 s each), then
 *   - every sentinel's SENTINEL master <master> shows num-slaves 2 and
 *     num-other-sentinels 2 (20 s): from then on a failover can happen.
 * 0, or -1 with what was missing and the logs printed and everything
 * started stopped again.
 */
int pc_h_sentinel_group_start(pc_h_sentinel_group_t *g, const char *master, int down_after_ms,
                              int failover_timeout_ms);

/* The primary the sentinels name now: asks the running sentinels in turn
 * (SENTINEL get-master-addr-by-name) and returns the port of the first
 * answer, or -1 if none answers. During a failover a sentinel names the
 * promoted replica once that replica reports itself primary. */
int pc_h_sentinel_primary_port(const pc_h_sentinel_group_t *g);

/* Index into g->redis[] of the process with that port, or -1. */
int pc_h_sentinel_group_index(const pc_h_sentinel_group_t *g, int port);

/* Stops the sentinels, then the Redis servers, that still run (SIGTERM,
 * 5 s each, then SIGKILL). */
void pc_h_sentinel_group_stop(pc_h_sentinel_group_t *g);

/*
 * Redis Cluster on loopback: six redis-servers in cluster mode, made into
 * three primaries with one replica each by `redis-cli --cluster create
 * --cluster-replicas 1`. Each listens on a free port and has its cluster
 * bus on another free port (--cluster-port: the default, port + 10000,
 * may be taken or above 65535); its node table is nodes-<port>.conf in
 * pc_h_tmpdir() (removed before the start: a node that finds one rejoins
 * the cluster it names), its log redis-<port>.log. redis-cli is
 * $PC_REDIS_CLI or redis-cli from the PATH, run by env(1) with TERM=dumb
 * (plain logs) and a password in REDISCLI_AUTH, not -a (which warns on
 * stderr and shows in ps). Like the harness' other processes they die
 * with the test process.
 *
 * After the start redis[0], redis[1], redis[2] are the primaries and own
 * slots 0-5460, 5461-10922 and 10923-16383; redis[3..5] are replicas,
 * which of which is redis-cli's choice (pc_h_rcluster_replica_of).
 */
typedef struct pc_h_rcluster {
    pc_h_proc_t redis[6]; /* pid 0 once stopped (pc_h_stop) */
    int bus_port[6];      /* each one's --cluster-port */
    int n;                /* 6 */
    char seeds[256];      /* "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3": redis[0..2] */
    char password[64];    /* "" or every node's requirepass and masterauth */
    int node_timeout_ms;  /* every node's --cluster-node-timeout */
} pc_h_rcluster_t;

/* 1 if redis-server and redis-cli are there (the PATH, or $PC_REDIS_SERVER
 * and $PC_REDIS_CLI), else 0: tests skip without. */
int pc_h_rcluster_available(void);

/*
 * Starts the six with --cluster-enabled yes, --cluster-node-timeout
 * node_timeout_ms, --repl-diskless-sync-delay 0 (Redis 7 waits 5 s for
 * more replicas before a full sync otherwise), no persistence as
 * pc_h_redis_start_args, and --requirepass and --masterauth password
 * unless password is NULL (at most 63 bytes); then `redis-cli --cluster
 * create ... --cluster-replicas 1 --cluster-yes` (deadline 30 s; its
 * output in rcluster-create-<port of redis[0]>.log). Waits (30 s) until
 * every node's CLUSTER INFO says cluster_state:ok,
 * cluster_slots_assigned:16384 and cluster_known_nodes:6, redis[0..2] are
 * primaries whose replica is online on their side (state=online: one that
 * WAIT counts), redis[3..5] replicas with master_link_status:up, and all
 * six name the same primary for every slot (CLUSTER SLOTS). 0, or -1
 * with what was missing and the logs printed and everything started
 * stopped again.
 */
int pc_h_rcluster_start(pc_h_rcluster_t *c, int node_timeout_ms, const char *password);

/* The slot of a key as Redis Cluster computes it: CRC16 (XMODEM) of the
 * key, or of what is between its first '{' and the next '}' if that is
 * not empty, mod 16384. Computed here, no Redis asked. */
unsigned pc_h_rcluster_keyslot(const char *key, size_t len);

/* The owner of every slot as the first running node that answers CLUSTER
 * SLOTS sees it: owner[slot] = index into c->redis[] of the primary, -1
 * if that node knows none (or one not in c->redis[]). 0, or -1 if no node
 * answered. The nodes may disagree for a while after a change:
 * pc_h_rcluster_wait_ok first. */
int pc_h_rcluster_slots(const pc_h_rcluster_t *c, int owner[16384]);

/* Starts node i again (stopped: pid 0) on its port, bus port and node
 * table: a killed primary comes back as a replica of the one that
 * replaced it. Waits as pc_h_redis_start does. 0 or -1. */
int pc_h_rcluster_restart(pc_h_rcluster_t *c, int i);

/* The same for one slot (< 16384): an index into c->redis[], or -1. */
int pc_h_rcluster_owner(const pc_h_rcluster_t *c, unsigned slot);

/* Index of a running replica (INFO replication) of the running node i,
 * or -1 if none or i is not a primary. */
int pc_h_rcluster_replica_of(const pc_h_rcluster_t *c, int i);

/* A connected hiredis context to node i, after AUTH if c has a password
 * (2 s timeouts); NULL if it is not running or cannot be reached. It
 * does not follow MOVED or ASK: the caller picks the node. */
redisContext *pc_h_rcluster_connect(const pc_h_rcluster_t *c, int i);

/* The cluster node id of node i (CLUSTER MYID: 40 hex characters and a
 * NUL) into id. 0 or -1. */
int pc_h_rcluster_node_id(const pc_h_rcluster_t *c, int i, char id[41]);

/*
 * Starts `redis-cli --cluster reshard <redis[from]> --cluster-from <id of
 * from> --cluster-to <id of to> --cluster-slots nslots --cluster-yes` in
 * the background (pc_h_spawn; log rcluster-reshard-<n>.log in
 * pc_h_tmpdir()) and returns at once: p gets the process, and
 * pc_h_stop(p, 0, timeout_ms) waits for it and returns its exit status.
 * redis-cli moves the source's lowest slots first, one at a time (SETSLOT
 * IMPORTING/MIGRATING, MIGRATE of the keys, SETSLOT NODE). 0 or -1.
 */
int pc_h_rcluster_reshard_start(const pc_h_rcluster_t *c, int from, int to, int nslots,
                                pc_h_proc_t *p);

/* Polls (up to deadline_ms) until every running node says
 * cluster_state:ok and all of them name the same running node as the
 * primary of every slot (CLUSTER SLOTS). 1, or 0 with what was missing
 * printed. */
int pc_h_rcluster_wait_ok(const pc_h_rcluster_t *c, int deadline_ms);

/* Stops the nodes that still run (SIGTERM to all, then up to 5 s each,
 * then SIGKILL). Safe on a zeroed or already stopped cluster. */
void pc_h_rcluster_stop(pc_h_rcluster_t *c);

/* A connected blocking TCP socket to 127.0.0.1:port with a receive
 * timeout, or -1. */
int pc_h_connect(int port, int rcv_timeout_ms);

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

/* 1 if a line of the file at path (a process' log) holds needle, else 0
 * (also when the file cannot be read). Lines longer than 4 KiB are read
 * in pieces. */
int pc_h_log_has(const char *path, const char *needle);

#endif
