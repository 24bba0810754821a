/*
 * pc_harness_redis.h -- Redis Sentinel groups and Redis Clusters of real
 * redis-server processes for integration tests.
 *
 * Built on pc_harness.h (free ports, pc_h_tmpdir(), processes that die
 * with the test process, deadlines instead of sleeps). Thread rules: call
 * from the test's main thread.
 */
#ifndef PC_HARNESS_REDIS_H
#define PC_HARNESS_REDIS_H

#include "pc_harness.h"

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

#endif
