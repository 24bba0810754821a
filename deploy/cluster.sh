#!/usr/bin/env bash
# Runs a local peercache cluster on loopback: one redis-server of its own
# (or a Sentinel-managed group of them, or a Redis Cluster of six) and N
# peercached nodes. See `deploy/cluster.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/cluster.sh COMMAND [ARGS]

Runs a peercache cluster on this machine, loopback only: a redis-server
of its own (never 6379) and peercached nodes named node1, node2, ...,
each on a free 127.0.0.1 port (TCP for clients, UDP for gossip).

Commands:
  start [N] [--redis-mode MODE] [-- OPTION...]
              Start redis-server and N nodes (default 3): node1 first,
              the others --join node1. Waits until every node sees all
              N members alive, then prints the node addresses. OPTIONs
              are extra peercached flags for every node (they come
              last, so they win), remembered for restart and add, e.g.
              `start 5 -- --replicas 3 --memory 16mb`.
              MODE is how the nodes reach Redis (remembered for restart
              and add):
                single    one redis-server, --redis 127.0.0.1:PORT
                          (the default)
                sentinel  a primary, two replicas and three sentinels
                          (redis-sentinel) monitoring it as master
                          "peercache" (down-after-milliseconds 1000,
                          failover-timeout 3000, quorum 2); the nodes get
                          --redis sentinel://S1,S2,S3/peercache and follow
                          a failover (kill -9 the primary to see one)
                cluster   a Redis Cluster of six redis-servers, three
                          primaries with a replica each (redis-cli
                          --cluster create, cluster-node-timeout 2000);
                          the nodes get --redis cluster://P1,P2,P3 (the
                          first three servers as seeds), route each key
                          to its slot's primary and follow a failover
                          (kill -9 a primary to see one)
  stop        SIGTERM every node (each leaves the cluster and hands its
              keys over), SIGKILL what is still running after 20 s,
              then stop the sentinels, the replicas and redis-server
              (in cluster mode the six cluster servers).
              Logs stay in the state directory.
  status      Which processes run (in sentinel mode also each server's
              role and the primary the sentinels name now; in cluster
              mode each server's role and the slots of each primary),
              then `peercache-cli cluster` from the first node that
              answers.
  kill I      kill -9 node I (no leave: the others detect the failure).
  restart I   Stop node I if it runs (SIGTERM), start it again on the
              same port and name, joining the running nodes; wait until
              every running node sees the same members alive. Needs
              redis-server running (in sentinel mode: a sentinel; the
              first primary may have been replaced; in cluster mode:
              one of the six cluster servers).
  add         Start one more node (node N+1), joining the running nodes;
              wait as for restart.
  nodes       Print the node addresses, comma-separated (for --nodes).
  resp-port [I]
              Print the port of node I's Redis-protocol front door
              (--resp; default node 1), e.g. redis-cli -p "$(... resp-port)".
  prometheus  Start a Prometheus server (Debian's prometheus package) on
              a free 127.0.0.1 port, scraping every node's /metrics each
              second; print its address. `stop` stops it too.
  -h, --help  Print this help.

Environment:
  PEERCACHE_BUILD        build directory holding node/peercached and
                         client/peercache-cli (default: build, relative
                         to the repository root)
  PEERCACHE_CLUSTER_DIR  state directory (default: /tmp/peercache-cluster)
  PEERCACHE_CLUSTER_WAIT seconds to wait for a node, for membership to
                         settle, or (sentinel mode) for replication and
                         the sentinels, or (cluster mode) for the Redis
                         Cluster to form, before giving up (default: 30)

Nodes get --probe-interval 200ms --probe-timeout 100ms (loopback is
fast; a killed node is declared dead in about a second); pass other
values after `--` to override. Each node also serves its HTTP endpoint
(--http: /metrics, /healthz, /readyz, /cluster) and the Redis protocol
(--resp, docs/REDIS.md) on free 127.0.0.1 ports, listed by start and
status. Nodes also read PEERCACHE_* variables
from the environment, as always (flags win).

Run as root, the nodes and redis-server (and its replicas and sentinels,
or the cluster servers) run as the unprivileged system user peercache
instead (created if missing; started through setpriv): the state
directory is then owned by peercache with mode 0700 (the cluster servers
write their nodes-PORT.conf in it), the key file by peercache with mode
0600, and the sentinels' config files by peercache. Run as any other
user, they run as that user.

State directory: cluster.key (made by peercache-cli keygen on the first
start; every node gets --cluster-key with it), nodes (the addresses,
"127.0.0.1:P1,127.0.0.1:P2,..."), count, args, redis.mode (single,
sentinel or cluster), redis.port, redis.pid, redis.log (the primary, in
sentinel mode the first one; none in cluster mode); in sentinel mode also
redis-replicaK.port, .pid, .log (K = 1, 2), and sentinelK.conf (the
sentinel rewrites it), .port, .pid, .log (K = 1, 2, 3); in cluster mode
redis-clusterK.port, .pid, .log, .bus (its cluster bus port) and .rdb,
and nodes-PORT.conf (Redis' own cluster state; K = 1..6), and
redis-cluster-create.log (redis-cli --cluster create); and per node nodeI.port,
nodeI.http (its HTTP port), nodeI.resp (its Redis-protocol port), nodeI.pid, nodeI.log (stderr), nodeI.out (stdout); with
prometheus: prometheus.yml, prometheus.port, prometheus.pid, prometheus.log and
prometheus-data/.

Example:
  deploy/cluster.sh start 3
  build/client/peercache-cli --nodes "$(deploy/cluster.sh nodes)" set k v
  deploy/cluster.sh kill 2; deploy/cluster.sh status
  deploy/cluster.sh restart 2
  deploy/cluster.sh stop
  deploy/cluster.sh start 3 --redis-mode sentinel
  kill -9 "$(cat /tmp/peercache-cluster/redis.pid)"   # a failover
  deploy/cluster.sh status    # the primary the sentinels name now
  deploy/cluster.sh stop
  deploy/cluster.sh start 3 --redis-mode cluster
  deploy/cluster.sh status    # each server's role, each primary's slots
EOF
}

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=deploy/peercache-user.sh
. "$here/deploy/peercache-user.sh"
build=${PEERCACHE_BUILD:-build}
case $build in /*) ;; *) build=$here/$build ;; esac
node_bin=$build/node/peercached
cli_bin=$build/client/peercache-cli
dir=${PEERCACHE_CLUSTER_DIR:-/tmp/peercache-cluster}
wait_s=${PEERCACHE_CLUSTER_WAIT:-30}
host=127.0.0.1
default_args=(--probe-interval 200ms --probe-timeout 100ms)
# Sentinel mode: the master name, and the state names of the replicas and
# the sentinels (the primary is redis, as in single mode).
master=peercache
replicas=(redis-replica1 redis-replica2)
sentinels=(sentinel1 sentinel2 sentinel3)
# Cluster mode: the state names of the six cluster servers (the first
# three are the nodes' seeds).
cservers=(redis-cluster1 redis-cluster2 redis-cluster3 redis-cluster4 redis-cluster5 redis-cluster6)

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage_error() { echo "cluster.sh: $*" >&2; echo "Try 'deploy/cluster.sh --help'." >&2; exit 2; }

# ---- privileges ------------------------------------------------------------

# as_user: the prefix that runs a command as the user the cluster runs
# as. Root drops to peercache through setpriv, which execs the command,
# so $! of `"${as_user[@]}" cmd &` is the pid of the node or redis-server
# itself. For anyone else it is empty.
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  as_user=(setpriv --reuid="$PEERCACHE_USER" --regid="$PEERCACHE_USER" --init-groups --)
fi

# own_state_dir: as root, hands the state directory to peercache (0700).
# Only a directory that is empty or already holds a cluster is taken over,
# so a mistaken PEERCACHE_CLUSTER_DIR (say /tmp) is refused, not chowned.
own_state_dir() {
  [ ${#as_user[@]} -gt 0 ] || return 0
  [ ! -L "$dir" ] || die "state directory $dir is a symbolic link"
  if [ "$(stat -c %U "$dir")" != "$PEERCACHE_USER" ] && [ -n "$(ls -A "$dir")" ] &&
    [ ! -e "$dir/count" ] && [ ! -e "$dir/lock" ] && [ ! -e "$dir/cluster.key" ]; then
    die "state directory $dir is not empty and holds no cluster; set PEERCACHE_CLUSTER_DIR to a new directory"
  fi
  chown "$PEERCACHE_USER:$PEERCACHE_USER" "$dir"
  chmod 0700 "$dir"
}

# own_key: the key file readable by the nodes' user only.
own_key() {
  [ ${#as_user[@]} -eq 0 ] || chown "$PEERCACHE_USER:$PEERCACHE_USER" "$dir/cluster.key"
  chmod 0600 "$dir/cluster.key"
}

# ---- processes -------------------------------------------------------------

# running PID PATTERN: PID is a live (not zombie) process whose command
# line contains PATTERN, so a stale pid file never points us at a stranger.
running() {
  local pid=$1 pattern=$2 stat cmd
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmd == *"$pattern"* ]]
}

get() { cat "$dir/$1" 2>/dev/null || true; }
node_port() { get "node$1.port"; }
node_http() { get "node$1.http"; }
node_resp() { get "node$1.resp"; }
node_pid() { get "node$1.pid"; }
node_addr() { echo "$host:$(node_port "$1")"; }
node_running() { running "$(node_pid "$1")" "--listen $(node_addr "$1")"; }
redis_running() { running "$(get redis.pid)" "redis-server"; }
count() { local n; n=$(get count); echo "${n:-0}"; }
# redis_mode: single, sentinel or cluster (a state directory from before
# modes has no redis.mode: single).
redis_mode() { local m; m=$(get redis.mode); echo "${m:-single}"; }

# server_running NAME: the redis-server (redis, redis-replicaK,
# redis-clusterK) or sentinel (sentinelK) whose state is NAME.port,
# NAME.pid runs.
server_running() {
  case $1 in
    sentinel*) running "$(get "$1.pid")" "sentinel" ;;
    *) running "$(get "$1.pid")" "redis-server" ;;
  esac
}
live_servers() { # the names of the replicas, sentinels and cluster servers that run
  local name
  for name in "${replicas[@]}" "${sentinels[@]}" "${cservers[@]}"; do server_running "$name" && echo "$name"; done
  return 0
}
sentinel_list() { # 127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3
  local name list=()
  for name in "${sentinels[@]}"; do list+=("$host:$(get "$name.port")"); done
  (IFS=,; echo "${list[*]}")
}
seed_list() { # 127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3 (the first three cluster servers)
  local name list=()
  for name in "${cservers[@]:0:3}"; do list+=("$host:$(get "$name.port")"); done
  (IFS=,; echo "${list[*]}")
}
# redis_addr: the nodes' --redis.
redis_addr() {
  case $(redis_mode) in
    sentinel) echo "sentinel://$(sentinel_list)/$master" ;;
    cluster) echo "cluster://$(seed_list)" ;;
    *) echo "$host:$(get redis.port)" ;;
  esac
}
# redis_ask PORT ARG...: redis-cli's answer (no CRs), empty if none.
redis_ask() {
  local port=$1
  shift
  redis-cli -h "$host" -p "$port" "$@" 2>/dev/null | tr -d '\r' || true
}
# sentinel_primary: HOST:PORT of the primary the first sentinel that
# answers names now; empty if none answers.
sentinel_primary() {
  local name port out
  for name in "${sentinels[@]}"; do
    port=$(get "$name.port")
    { [ -n "$port" ] && server_running "$name"; } || continue
    out=$(redis_ask "$port" SENTINEL get-master-addr-by-name "$master")
    [[ $out =~ ^([^[:space:]]+)$'\n'([0-9]+)$ ]] || continue
    echo "${BASH_REMATCH[1]}:${BASH_REMATCH[2]}"
    return 0
  done
  return 0
}

# stop_pids SECONDS PATTERN PID...: SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pids() {
  local secs=$1 pattern=$2 pid left deadline
  shift 2
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + secs))
  while :; do
    left=()
    for pid in "$@"; do running "$pid" "$pattern" && left+=("$pid"); done
    [ ${#left[@]} -gt 0 ] || return 0
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: still running after ${secs}s, sending SIGKILL: ${left[*]}" >&2
      kill -KILL "${left[@]}" 2>/dev/null || true
      return 0
    fi
    sleep 0.05
  done
}

# ---- ports -----------------------------------------------------------------

# port_used P: some TCP or UDP socket (IPv4 or IPv6) has local port P.
# Both matter: a node listens on TCP and gossips on UDP. TCP sockets in
# TIME_WAIT (state 06) do not count: a listener may bind over them.
port_used() {
  local hex f files=()
  hex=$(printf ':%04X' "$1")
  for f in /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6; do
    [ -r "$f" ] && files+=("$f")
  done
  awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h &&
                     !(FILENAME ~ /tcp/ && $4 == "06") { found = 1; exit }
                   END { exit !found }' "${files[@]}"
}

# pick_port FROM: the first port from FROM up that no socket uses and this
# cluster has not handed out already.
pick_port() {
  local p=$1 i taken name
  while :; do
    taken=0
    port_used "$p" && taken=1
    [ "$p" = "$(get redis.port)" ] && taken=1
    [ "$p" = "$(get prometheus.port)" ] && taken=1
    for name in "${replicas[@]}" "${sentinels[@]}"; do
      [ "$p" = "$(get "$name.port")" ] && taken=1
    done
    for name in "${cservers[@]}"; do
      { [ "$p" = "$(get "$name.port")" ] || [ "$p" = "$(get "$name.bus")" ]; } && taken=1
    done
    for ((i = 1; i <= $(count); i++)); do
      { [ "$p" = "$(node_port "$i")" ] || [ "$p" = "$(node_http "$i")" ] ||
        [ "$p" = "$(node_resp "$i")" ]; } && taken=1
    done
    [ $taken = 1 ] || { echo "$p"; return; }
    p=$((p + 1))
    [ "$p" -lt 65536 ] || die "no free port found"
  done
}

# ---- cluster ---------------------------------------------------------------

live_nodes() { # the indexes of the nodes that run
  local i
  for ((i = 1; i <= $(count); i++)); do node_running "$i" && echo "$i"; done
  return 0
}

write_nodes() {
  local i list=()
  for ((i = 1; i <= $(count); i++)); do list+=("$(node_addr "$i")"); done
  (IFS=,; echo "${list[*]}") >"$dir/nodes"
}

# alive_names ADDR: the sorted names the node at ADDR reports alive, and
# "name:suspect" for each suspect.
alive_names() {
  "$cli_bin" --nodes "$1" --timeout 500 cluster 2>/dev/null |
    awk -F'\t' 'NR > 1 && $3 == "alive" { print $1 } NR > 1 && $3 == "suspect" { print $1 ":suspect" }' |
    sort | tr '\n' ' '
}

# wait_members: until every running node reports exactly the running nodes
# alive and none suspect (so a node killed meanwhile must have been
# declared dead).
wait_members() {
  local deadline=$((SECONDS + wait_s)) want i='' live seen='' ok
  while :; do
    mapfile -t live < <(live_nodes)
    want=$(for i in "${live[@]}"; do echo "node$i"; done | sort | tr '\n' ' ')
    ok=1
    for i in "${live[@]}"; do
      seen=$(alive_names "$(node_addr "$i")")
      [ "$seen" = "$want" ] || { ok=0; break; }
    done
    [ $ok = 1 ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: after ${wait_s}s, node$i sees alive: ${seen:-(no answer)}; expected: $want" >&2
      return 1
    fi
    sleep 0.1
  done
}

# launch I PORT JOIN: start node I and wait for its "ready" line. Returns 1
# if it exited first (its log is left in the state directory).
launch() {
  local i=$1 port=$2 join=$3 addr=$host:$2 pid deadline args=() http resp
  if [ -s "$dir/args" ]; then mapfile -t args <"$dir/args"; fi
  echo "$port" >"$dir/node$i.port"
  # Its HTTP port: kept across restarts, picked on the first start.
  http=$(node_http "$i")
  [ -n "$http" ] || { http=$(pick_port 9400) && echo "$http" >"$dir/node$i.http"; }
  resp=$(node_resp "$i")
  [ -n "$resp" ] || { resp=$(pick_port 6400) && echo "$resp" >"$dir/node$i.resp"; }
  "${as_user[@]}" "$node_bin" --name "node$i" --listen "$addr" --join "$join" \
    --redis "$(redis_addr)" --cluster-key "$dir/cluster.key" --http "$host:$http" \
    --resp "$host:$resp" \
    "${default_args[@]}" "${args[@]}" \
    </dev/null >"$dir/node$i.out" 2>"$dir/node$i.log" 9>&- &
  pid=$!
  echo "$pid" >"$dir/node$i.pid"
  deadline=$((SECONDS + wait_s))
  # Our own child: no command-line check, it may not have exec'd yet.
  until grep -qx "ready $addr" "$dir/node$i.out" 2>/dev/null; do
    if ! running "$pid" ""; then
      echo "cluster.sh: node$i ($addr) exited before it was ready; last lines of $dir/node$i.log:" >&2
      tail -n 5 "$dir/node$i.log" >&2
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: node$i ($addr) not ready after ${wait_s}s; killed it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.05
  done
}

# server_argv NAME PORT: sets argv (the caller's) to the command line of
# NAME: redis (the primary; in single mode exactly as ever), redis-replicaK
# or sentinelK, whose config file it writes, or redis-clusterK, whose
# cluster bus port it picks (NAME.bus).
server_argv() {
  local name=$1 port=$2 conf bus
  case $name in
    sentinel*)
      conf=$dir/$name.conf
      {
        echo "# written by deploy/cluster.sh start --redis-mode sentinel; the sentinel rewrites it"
        echo "port $port"
        echo "bind $host"
        echo "daemonize no"
        echo "dir \"$dir\""
        echo "sentinel monitor $master $host $(get redis.port) 2"
        echo "sentinel down-after-milliseconds $master 1000"
        echo "sentinel failover-timeout $master 3000"
        echo "sentinel parallel-syncs $master 1"
      } >"$conf"
      # A sentinel refuses a config file it cannot rewrite.
      [ ${#as_user[@]} -eq 0 ] || chown "$PEERCACHE_USER:$PEERCACHE_USER" "$conf"
      if command -v redis-sentinel >/dev/null; then
        argv=(redis-sentinel "$conf")
      else
        argv=(redis-server "$conf" --sentinel)
      fi
      return ;;
  esac
  argv=(redis-server --port "$port" --bind "$host" --save "" --appendonly no --dir "$dir")
  [ "$(redis_mode)" != single ] || return 0
  # Each its own RDB file (a replica writes the one it syncs from); any of
  # them may become the primary: none waits 5 s for more replicas before
  # a full sync.
  argv+=(--dbfilename "$name.rdb" --repl-diskless-sync-delay 0)
  case $name in
    redis) ;;
    redis-cluster*)
      # The cluster bus on a port of its own, picked like the others and
      # again on each try (Redis' default, PORT + 10000, may be taken or
      # beyond 65535). Redis writes nodes-PORT.conf (its node table).
      bus=$(pick_port 16390)
      echo "$bus" >"$dir/$name.bus"
      argv+=(--cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf"
        --cluster-port "$bus" --cluster-node-timeout 2000) ;;
    *) argv+=(--replicaof "$host" "$(get redis.port)") ;;
  esac
}

# start_server NAME FROM: start NAME (see server_argv) on the first free
# port from FROM up, again on another one if that was taken meanwhile;
# state NAME.port, NAME.pid, NAME.log. Ready when the server answering on
# the port says it has our pid (not some other redis that won the port).
start_server() {
  local name=$1 from=$2 what=$1 tries port pid deadline argv=()
  [ "$name" != redis ] || what=redis-server
  for tries in 1 2 3; do
    port=$(pick_port "$from")
    echo "$port" >"$dir/$name.port"
    server_argv "$name" "$port"
    "${as_user[@]}" "${argv[@]}" </dev/null >"$dir/$name.log" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$dir/$name.pid"
    deadline=$((SECONDS + wait_s))
    while running "$pid" ""; do
      if redis-cli -h "$host" -p "$port" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
        return 0
      fi
      if [ $SECONDS -ge $deadline ]; then
        kill -KILL "$pid" 2>/dev/null || true
        die "$what not answering after ${wait_s}s (log: $dir/$name.log)"
      fi
      sleep 0.05
    done
    echo "cluster.sh: $what on port $port exited:" >&2
    tail -n 3 "$dir/$name.log" >&2
  done
  die "could not start $what (log: $dir/$name.log)"
}

# wait_until CHECK: runs CHECK every 0.1 s until it leaves `why` empty
# (0), or for $wait_s, then says the last `why` (1). CHECK sets `why` to
# what is not there yet.
wait_until() {
  local deadline=$((SECONDS + wait_s))
  while :; do
    why=''
    "$1"
    [ -n "$why" ] || return 0
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: after ${wait_s}s, $why" >&2
      return 1
    fi
    sleep 0.1
  done
}

# replication_up: the primary has both replicas connected and each
# replica's link to it is up.
replication_up() {
  local name
  [[ $'\n'$(redis_ask "$(get redis.port)" info replication)$'\n' == *$'\nconnected_slaves:2\n'* ]] ||
    { why="redis-server $host:$(get redis.port) has not 2 replicas connected"; return; }
  for name in "${replicas[@]}"; do
    [[ $'\n'$(redis_ask "$(get "$name.port")" info replication)$'\n' == *$'\nmaster_link_status:up\n'* ]] ||
      { why="$name $host:$(get "$name.port"): master_link_status not up"; return; }
  done
}

# sentinels_ready: every sentinel's SENTINEL master shows both replicas
# and the two other sentinels.
sentinels_ready() {
  local name seen
  for name in "${sentinels[@]}"; do
    # The answer is name and value on alternate lines.
    seen=$(redis_ask "$(get "$name.port")" SENTINEL master "$master" |
      awk 'NR % 2 { k = $0; next } k == "num-slaves" { s = $0 } k == "num-other-sentinels" { o = $0 }
           END { print (s == "" ? "?" : s) " " (o == "" ? "?" : o) }')
    [ "$seen" = "2 2" ] || { why="$name $host:$(get "$name.port") sees ${seen% *} replicas and ${seen#* } other sentinels (want 2 and 2)"; return; }
  done
}

# rcluster_formed: every cluster server says cluster_state:ok,
# cluster_slots_assigned:16384 and cluster_known_nodes:6, and each
# replica's link to its primary is up (a replica that never synced would
# not be failed over to).
rcluster_formed() {
  local name port seen repl
  for name in "${cservers[@]}"; do
    port=$(get "$name.port")
    seen=$(redis_ask "$port" cluster info |
      awk -F: '$1 == "cluster_state" { s = $2 } $1 == "cluster_slots_assigned" { a = $2 }
               $1 == "cluster_known_nodes" { k = $2 }
               END { print "cluster_state:" (s == "" ? "?" : s) " cluster_slots_assigned:" (a == "" ? "?" : a) \
                       " cluster_known_nodes:" (k == "" ? "?" : k) }')
    [ "$seen" = "cluster_state:ok cluster_slots_assigned:16384 cluster_known_nodes:6" ] ||
      { why="$name $host:$port says $seen (want ok, 16384, 6)"; return; }
    repl=$'\n'$(redis_ask "$port" info replication)$'\n'
    [[ $repl != *$'\nrole:slave\n'* || $repl == *$'\nmaster_link_status:up\n'* ]] ||
      { why="$name $host:$port (a replica): master_link_status not up"; return; }
  done
}

# start_rcluster: the six cluster servers, then redis-cli --cluster create
# (three primaries, a replica each; TERM=dumb: no colours in its log),
# then wait until every server sees the cluster formed.
start_rcluster() {
  local name addrs=()
  for name in "${cservers[@]}"; do
    start_server "$name" 6390
    addrs+=("$host:$(get "$name.port")")
  done
  env TERM=dumb redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    </dev/null >"$dir/redis-cluster-create.log" 2>&1 9>&- || {
    echo "cluster.sh: redis-cli --cluster create failed; last lines of $dir/redis-cluster-create.log:" >&2
    tail -n 5 "$dir/redis-cluster-create.log" >&2
    return 1
  }
  wait_until rcluster_formed
}

# start_redis: single mode, redis-server; sentinel mode, the primary, its
# two replicas once it answers, and three sentinels once replication is
# up; then wait until every sentinel knows every other process; cluster
# mode, the Redis Cluster (start_rcluster).
start_redis() {
  local name
  if [ "$(redis_mode)" = cluster ]; then
    start_rcluster || die "the Redis Cluster did not form (logs: $dir)"
    return 0
  fi
  start_server redis 6390
  [ "$(redis_mode)" = sentinel ] || return 0
  for name in "${replicas[@]}"; do start_server "$name" 6390; done
  wait_until replication_up || die "replication did not come up (logs: $dir)"
  for name in "${sentinels[@]}"; do start_server "$name" 26390; done
  wait_until sentinels_ready || die "the sentinels did not see each other and both replicas (logs: $dir)"
}

# start_node I JOIN [PORT]: launch node I on PORT, or on a newly picked
# port (and again on another one if that was taken meanwhile, which the
# node reports as "address already in use").
start_node() {
  local i=$1 join=$2 port=${3:-} tries
  if [ -n "$port" ]; then
    launch "$i" "$port" "$join" || die "could not start node$i"
    return
  fi
  for tries in 1 2 3; do
    port=$(pick_port 7400)
    launch "$i" "$port" "$join" && return
    grep -q "address already in use" "$dir/node$i.log" || break
    rm -f "$dir/node$i.http" "$dir/node$i.resp" # one of them may be the port that was taken
    [ $tries -lt 3 ] && echo "cluster.sh: retrying node$i on other ports" >&2
  done
  die "could not start node$i"
}

join_list() { # the addresses of the running nodes other than node $1
  local i list=()
  for i in $(live_nodes); do [ "$i" = "$1" ] || list+=("$(node_addr "$i")"); done
  (IFS=,; echo "${list[*]}")
}

need_cluster() {
  [ -f "$dir/count" ] || die "no cluster in $dir (run: deploy/cluster.sh start)"
  local name up=0 names=() what
  case $(redis_mode) in
    # The first primary may be gone (replaced in a failover); the nodes
    # need a sentinel that names the one there is now.
    sentinel) names=("${sentinels[@]}") what=sentinel ;;
    # Any primary may have been replaced; the nodes learn the slots from
    # whichever server answers.
    cluster) names=("${cservers[@]}") what="Redis Cluster server" ;;
    *) redis_running || die "redis-server of $dir is not running (run: deploy/cluster.sh stop, then start)"
       return 0 ;;
  esac
  for name in "${names[@]}"; do
    if server_running "$name"; then up=1; else echo "cluster.sh: $name is not running" >&2; fi
  done
  [ $up = 1 ] || die "no $what of $dir is running (run: deploy/cluster.sh stop, then start)"
}

need_index() {
  [[ ${1:-} =~ ^[1-9][0-9]*$ ]] || usage_error "expected a node number, got '${1:-}'"
  [ "$1" -le "$(count)" ] || die "no node$1 (the cluster has $(count) nodes)"
}

print_nodes() {
  local i
  for ((i = 1; i <= $(count); i++)); do
    if node_running "$i"; then
      echo "node$i $(node_addr "$i") pid $(node_pid "$i") http $host:$(node_http "$i") resp $host:$(node_resp "$i")"
    else
      echo "node$i $(node_addr "$i") (not running)"
    fi
  done
}

# ---- commands --------------------------------------------------------------

# parse_start ARG...: start's arguments into start_n, start_mode and
# start_opts (the node options after --). Called before anything is
# touched, so a bad argument starts nothing.
start_n=3 start_mode=single start_opts=()
parse_start() {
  local n_seen=0
  while [ $# -gt 0 ]; do
    case $1 in
      --) shift; start_opts=("$@"); break ;;
      --redis-mode)
        [ $# -ge 2 ] || usage_error "start: --redis-mode needs a value: single, sentinel or cluster"
        start_mode=$2
        shift 2 ;;
      --redis-mode=*) start_mode=${1#*=}; shift ;;
      -*) usage_error "start: unexpected '$1' (node options go after --)" ;;
      *)
        [ $n_seen = 0 ] || usage_error "start: too many arguments"
        start_n=$1 n_seen=1
        shift ;;
    esac
  done
  [[ $start_n =~ ^[1-9][0-9]*$ ]] || usage_error "start: N must be a number from 1 up, got '$start_n'"
  case $start_mode in
    single | sentinel | cluster) ;;
    *) usage_error "start: unknown --redis-mode '$start_mode' (single, sentinel or cluster)" ;;
  esac
}

cmd_start() {
  local n=$start_n i
  { [ -x "$node_bin" ] && [ -x "$cli_bin" ]; } ||
    die "no binaries in $build (build first: bash deploy/build.sh, or set PEERCACHE_BUILD)"
  command -v redis-server >/dev/null || die "redis-server not found (bash deploy/install-deps.sh)"
  command -v redis-cli >/dev/null || die "redis-cli not found (bash deploy/install-deps.sh)"
  if [ -f "$dir/count" ]; then
    { redis_running || [ -n "$(live_servers)" ] || [ -n "$(live_nodes)" ]; } &&
      die "a cluster is already running in $dir (deploy/cluster.sh stop first)"
  fi
  # No data nor Redis Cluster node table of an earlier start (a cluster
  # server that knows other nodes refuses to join a new cluster).
  rm -f "$dir"/node*.* "$dir"/redis.* "$dir"/count "$dir"/nodes "$dir"/args "$dir"/*.rdb
  rm -f "$dir"/redis-replica*.* "$dir"/sentinel*.* "$dir"/redis-cluster*.* "$dir"/nodes-*.conf
  rm -rf "$dir"/prometheus.* "$dir"/prometheus-data
  echo "$start_mode" >"$dir/redis.mode"
  printf '%s\n' "${start_opts[@]}" >"$dir/args"
  [ ${#start_opts[@]} -gt 0 ] || : >"$dir/args"
  echo 0 >"$dir/count"
  # The key every node seals its gossip and peer traffic with (kept across
  # stop/start; delete it for a new one).
  [ -s "$dir/cluster.key" ] || (umask 077 && "$cli_bin" keygen "$dir/cluster.key" >/dev/null) ||
    die "could not write $dir/cluster.key"
  own_key

  # A start that fails half-way stops what it started (logs stay).
  trap 'echo "cluster.sh: start failed, stopping what was started" >&2; cmd_stop >/dev/null 2>&1' EXIT
  start_redis
  for ((i = 1; i <= n; i++)); do
    echo "$i" >"$dir/count"
    if [ "$i" = 1 ]; then start_node 1 ""; else start_node "$i" "$(node_addr 1)"; fi
    write_nodes
  done
  wait_members || die "the cluster did not settle (logs: $dir)"
  trap - EXIT
  if [ "$(redis_mode)" = sentinel ]; then
    echo "redis mode: sentinel (master $master; nodes use --redis $(redis_addr))"
    echo "redis-server $host:$(get redis.port) (primary)"
    for i in "${replicas[@]}"; do echo "$i $host:$(get "$i.port") (replica)"; done
    echo "sentinels: $(sentinel_list)"
  elif [ "$(redis_mode)" = cluster ]; then
    print_rcluster
  else
    echo "redis-server $host:$(get redis.port)"
  fi
  print_nodes
  echo "nodes: $(get nodes)"
}

cmd_stop() {
  [ -f "$dir/count" ] || { echo "no cluster in $dir"; return 0; }
  local i pids=()
  for ((i = 1; i <= $(count); i++)); do node_running "$i" && pids+=("$(node_pid "$i")"); done
  if [ ${#pids[@]} -gt 0 ]; then
    echo "stopping ${#pids[@]} node(s)"
    stop_pids 20 "peercached" "${pids[@]}"
  fi
  # Sentinels before the servers they watch, or they fail one over.
  local name what
  for what in sentinel replica; do
    pids=()
    if [ $what = sentinel ]; then
      for name in "${sentinels[@]}"; do server_running "$name" && pids+=("$(get "$name.pid")"); done
    else
      for name in "${replicas[@]}"; do server_running "$name" && pids+=("$(get "$name.pid")"); done
    fi
    [ ${#pids[@]} -gt 0 ] || continue
    echo "stopping ${#pids[@]} $what(s)"
    if [ $what = sentinel ]; then stop_pids 10 "sentinel" "${pids[@]}"; else stop_pids 10 "redis-server" "${pids[@]}"; fi
  done
  if redis_running; then
    echo "stopping redis-server"
    stop_pids 10 "redis-server" "$(get redis.pid)"
  fi
  pids=()
  for name in "${cservers[@]}"; do server_running "$name" && pids+=("$(get "$name.pid")"); done
  if [ ${#pids[@]} -gt 0 ]; then
    echo "stopping ${#pids[@]} Redis Cluster server(s)"
    stop_pids 10 "redis-server" "${pids[@]}"
  fi
  if prometheus_running; then
    echo "stopping prometheus"
    stop_pids 10 "prometheus" "$(get prometheus.pid)"
  fi
  echo "stopped (logs in $dir)"
}

prometheus_running() { running "$(get prometheus.pid)" "prometheus"; }

cmd_prometheus() {
  need_cluster
  command -v prometheus >/dev/null ||
    die "prometheus not found (apt-get install prometheus; bash deploy/install-deps.sh has it)"
  prometheus_running && die "prometheus already runs: http://$host:$(get prometheus.port)"
  local i targets=() port pid deadline
  for ((i = 1; i <= $(count); i++)); do targets+=("'$host:$(node_http "$i")'"); done
  {
    echo "# written by deploy/cluster.sh prometheus"
    echo "global:"
    echo "  scrape_interval: 1s"
    echo "  scrape_timeout: 1s"
    echo "scrape_configs:"
    echo "  - job_name: peercache"
    echo "    static_configs:"
    echo "      - targets: [$(IFS=,; echo "${targets[*]}")]"
  } >"$dir/prometheus.yml"
  port=$(pick_port 9090)
  echo "$port" >"$dir/prometheus.port"
  mkdir -p "$dir/prometheus-data"
  [ ${#as_user[@]} -eq 0 ] ||
    chown "$PEERCACHE_USER:$PEERCACHE_USER" "$dir/prometheus-data" "$dir/prometheus.yml"
  "${as_user[@]}" prometheus --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/prometheus-data" --web.listen-address="$host:$port" \
    </dev/null >"$dir/prometheus.log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$dir/prometheus.pid"
  deadline=$((SECONDS + wait_s))
  until curl -fs "http://$host:$port/-/ready" >/dev/null 2>&1; do
    running "$pid" "" || die "prometheus exited (log: $dir/prometheus.log)"
    [ $SECONDS -lt $deadline ] || die "prometheus not ready after ${wait_s}s (log: $dir/prometheus.log)"
    sleep 0.1
  done
  echo "prometheus http://$host:$port scraping ${#targets[@]} node(s) every second, e.g.:"
  echo "  curl -s 'http://$host:$port/api/v1/query?query=sum(rate(peercache_requests_total[1m]))'"
}

# print_servers: the primary, replicas and sentinels of sentinel mode,
# each server's role, and the primary the sentinels name now.
print_servers() {
  local name label role primary p
  echo "redis mode: sentinel (master $master; nodes use --redis $(redis_addr))"
  for name in redis "${replicas[@]}" "${sentinels[@]}"; do
    label=$name
    [ "$name" != redis ] || label=redis-server
    if ! server_running "$name"; then
      echo "$label $host:$(get "$name.port") (not running)"
      continue
    fi
    role=''
    case $name in
      sentinel*) ;;
      *)
        role=$(redis_ask "$(get "$name.port")" info replication | sed -n 's/^role:master$/ role primary/p; s/^role:slave$/ role replica/p') ;;
    esac
    echo "$label $host:$(get "$name.port") pid $(get "$name.pid")$role"
  done
  primary=$(sentinel_primary)
  if [ -z "$primary" ]; then
    echo "primary: (no sentinel answers)"
    return 0
  fi
  label=''
  for name in redis "${replicas[@]}"; do
    p=$(get "$name.port")
    [ "$primary" != "$host:$p" ] || label=" ($name)"
  done
  [ "$label" != " (redis)" ] || label=" (redis-server)"
  echo "primary: $primary$label, as the sentinels name $master now"
}

# print_rcluster: the mode and the seeds, each cluster server and its
# role, and the slots of each primary as the first server that answers
# sees them (CLUSTER NODES: one line per server, its flags and slots).
print_rcluster() {
  local name port role nodes
  echo "redis mode: cluster (nodes use --redis $(redis_addr))"
  echo "seeds: $(seed_list)"
  nodes=''
  for name in "${cservers[@]}"; do
    port=$(get "$name.port")
    if ! server_running "$name"; then
      echo "$name $host:$port (not running)"
      continue
    fi
    role=$(redis_ask "$port" role | head -n 1)
    case $role in master) role=primary ;; slave) role=replica ;; '') role='?' ;; esac
    echo "$name $host:$port pid $(get "$name.pid") bus $(get "$name.bus") role $role"
    [ -n "$nodes" ] || nodes=$(redis_ask "$port" cluster nodes)
  done
  if [ -z "$nodes" ]; then
    echo "slots: (no cluster server answers)"
    return 0
  fi
  # id addr@bus[,hostname] flags primary ping pong epoch link slot...; a
  # slot is N or N-M ([N->-id] and [N-<-id]: migrating, left out).
  awk '$3 ~ /(^|,)master(,|$)/ {
         s = ""
         for (i = 9; i <= NF; i++) if ($i !~ /^\[/) s = s (s == "" ? "" : ",") $i
         if (s == "") next
         split($2, a, "@")
         f = $3 ~ /fail\?/ ? " (failing?)" : $3 ~ /fail/ ? " (failed)" : ""
         print "primary " a[1] " slots " s f
       }' <<<"$nodes" | sort -t' ' -k4,4n
}

cmd_status() {
  [ -f "$dir/count" ] || die "no cluster in $dir"
  if [ "$(redis_mode)" = sentinel ]; then
    print_servers
  elif [ "$(redis_mode)" = cluster ]; then
    print_rcluster
  elif redis_running; then
    echo "redis-server $host:$(get redis.port) pid $(get redis.pid)"
  else
    echo "redis-server $host:$(get redis.port) (not running)"
  fi
  print_nodes
  [ -n "$(live_nodes)" ] || die "no node is running"
  echo
  "$cli_bin" --nodes "$(get nodes)" cluster
}

cmd_kill() {
  need_index "${1:-}"
  node_running "$1" || die "node$1 is not running"
  kill -KILL "$(node_pid "$1")"
  echo "killed node$1 ($(node_addr "$1"), pid $(node_pid "$1")) with SIGKILL"
}

cmd_restart() {
  need_cluster
  need_index "${1:-}"
  if node_running "$1"; then
    echo "stopping node$1"
    stop_pids 20 "--listen $(node_addr "$1")" "$(node_pid "$1")"
  fi
  start_node "$1" "$(join_list "$1")" "$(node_port "$1")"
  wait_members || die "the cluster did not settle (logs: $dir)"
  echo "node$1 $(node_addr "$1") pid $(node_pid "$1") (restarted)"
}

cmd_add() {
  need_cluster
  local i join
  i=$(($(count) + 1))
  join=$(join_list "$i")
  [ -n "$join" ] || die "no node is running to join"
  echo "$i" >"$dir/count"
  start_node "$i" "$join"
  write_nodes
  wait_members || die "the cluster did not settle (logs: $dir)"
  echo "node$i $(node_addr "$i") pid $(node_pid "$i") (added)"
  echo "nodes: $(get nodes)"
}

[ $# -gt 0 ] || { usage >&2; exit 2; }
cmd=$1
shift
case $cmd in
  -h | --help | help) usage; exit 0 ;;
  start | stop | status | kill | restart | add | nodes | resp-port | prometheus) ;;
  *) usage_error "unknown command '$cmd'" ;;
esac
case $cmd in
  start) parse_start "$@" ;;
  kill | restart) [ $# -eq 1 ] || usage_error "$cmd: expected a node number" ;;
  resp-port) [ $# -le 1 ] || usage_error "resp-port: expected at most a node number" ;;
  *) [ $# -eq 0 ] || usage_error "$cmd: takes no arguments" ;;
esac

if [ ${#as_user[@]} -gt 0 ]; then
  command -v setpriv >/dev/null || die "setpriv not found (util-linux), needed to drop root"
  pc_ensure_user
fi
mkdir -p -m 0700 "$dir"
own_state_dir
# One cluster.sh at a time per state directory (fd 9 is closed for the
# processes it starts, so they do not hold the lock).
exec 9>"$dir/lock"
flock -w "$wait_s" 9 || die "another cluster.sh is busy with $dir"

case $cmd in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  kill) cmd_kill "$1" ;;
  restart) cmd_restart "$1" ;;
  add) cmd_add ;;
  nodes) [ -s "$dir/nodes" ] || die "no cluster in $dir"; get nodes ;;
  resp-port)
    need_index "${1:-1}"
    [ -s "$dir/node${1:-1}.resp" ] || die "node${1:-1} has no Redis-protocol port yet (start it)"
    node_resp "${1:-1}" ;;
  prometheus) cmd_prometheus ;;
esac
