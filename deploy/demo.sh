#!/usr/bin/env bash
# Installs what is needed, builds, starts a local redis-server and a
# 3-node peercached cluster in front of it (loopback only, via
# deploy/cluster.sh; as root, the nodes run as the unprivileged user
# peercache, sealing their traffic with a fresh cluster key), and walks
# through it with peercache-cli: shows the key and the sealed traffic, writes
# through one node and reads through the others, reads a key written
# straight into Redis, then kill -9s a node and shows that every key is
# still served by the survivors. Everything it starts is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash deploy/install-deps.sh
bash deploy/build.sh build >/dev/null
echo "build: ok (build/)"

cli=$here/build/client/peercache-cli
export PEERCACHE_BUILD=$here/build
PEERCACHE_CLUSTER_DIR=$(mktemp -d /tmp/peercache-demo.XXXXXX)
export PEERCACHE_CLUSTER_DIR
cleanup() {
  deploy/cluster.sh stop >/dev/null 2>&1 || true
  rm -rf "$PEERCACHE_CLUSTER_DIR"
}
trap cleanup EXIT

show() { # prints a command line, quoting only the words that need it
  local w line='$'
  for w in "$@"; do
    if [[ $w =~ ^[A-Za-z0-9_.,:/=+@-]+$ ]]; then line+=" $w"; else line+=" '${w//\'/\'\\\'\'}'"; fi
  done
  echo "$line"
}
pc() { show peercache-cli "$@"; "$cli" "$@"; }
rc() { show redis-cli -p "$redis_port" "$@"; redis-cli -p "$redis_port" "$@"; }
step() { printf '\n== %s\n' "$*"; }

step "start redis-server and 3 nodes: node1 first, node2 and node3 --join node1"
show deploy/cluster.sh start 3
deploy/cluster.sh start 3
IFS=, read -r n1 n2 n3 <"$PEERCACHE_CLUSTER_DIR/nodes"
redis_port=$(cat "$PEERCACHE_CLUSTER_DIR/redis.port")

step "the cluster as node1 sees it: 3 members alive, each owning about a third of the keys"
pc --nodes "$n1" cluster

step "gossip and peer traffic are sealed with the cluster key cluster.sh made (peercache-cli keygen)"
pc keyring list "$PEERCACHE_CLUSTER_DIR/cluster.key"
echo "\$ peercache-cli --nodes $n1 stats     # the seal counters of it"
"$cli" --nodes "$n1" stats | awk '$1 ~ /^(seal_enabled|sealed_in|sealed_out|seal_unknown_key|seal_bad)$/'
show ps -o user:10=,pid=,args= -C peercached
ps -o user:10=,pid=,args= -C peercached | cut -c1-110

step "write through node1 (--no-ring: talk to that node only; it forwards each key to its owner)"
pc --nodes "$n1" --no-ring set user:1 alice
pc --nodes "$n1" --no-ring set user:2 bob
pc --nodes "$n1" --no-ring set user:3 carol

step "read the same keys through node2 and through node3"
pc --nodes "$n2" --no-ring mget user:1 user:2 user:3
pc --nodes "$n3" --no-ring get user:2

step "values are plain Redis strings; a key written straight into Redis is read through"
rc get user:1
rc set written:by:redis "plain redis string"
pc --nodes "$n3" --no-ring get written:by:redis
keys=(user:1 user:2 user:3 written:by:redis)
before=$("$cli" --nodes "$n1" mget "${keys[@]}")

step "kill -9 node2, then wait until node1 and node3 both report it dead"
show deploy/cluster.sh kill 2
deploy/cluster.sh kill 2
state_of() { # state_of ADDR NAME: NAME's state as the node at ADDR sees it
  "$cli" --nodes "$1" --no-ring --timeout 500 cluster 2>/dev/null |
    awk -F'\t' -v n="$2" 'NR > 1 && $1 == n { print $3 }'
}
t0=$(date +%s%N)
deadline=$((SECONDS + 30))
until [ "$(state_of "$n1" node2)" = dead ] && [ "$(state_of "$n3" node2)" = dead ]; do
  [ $SECONDS -lt $deadline ] || { echo "node2 not reported dead after 30 s" >&2; exit 1; }
  sleep 0.1
done
ms=$((($(date +%s%N) - t0) / 1000000))
echo "node2 reported dead by node1 and node3 after $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s"
pc --nodes "$n3" cluster

step "every key written before is still served by the survivors, and writes work"
pc --nodes "$n1,$n3" mget "${keys[@]}"
after=$("$cli" --nodes "$n1,$n3" mget "${keys[@]}")
[ "$after" = "$before" ] || { echo "demo: values differ after the kill" >&2; exit 1; }
pc --nodes "$n3" --no-ring set user:4 dave
pc --nodes "$n1" --no-ring get user:4

echo
echo "demo done; the cluster (state and logs in $PEERCACHE_CLUSTER_DIR) is stopped and removed on exit"
