#!/usr/bin/env bash
# test_cluster_sh.sh -- deploy/cluster.sh start --redis-mode sentinel, end
# to end: 2 nodes in front of a primary, two replicas and three sentinels;
# a write through the nodes lands in the primary the sentinels name; after
# kill -9 of that primary, writes through the nodes work again within 60 s,
# and the new primary (another port) holds the keys from before and after;
# status names it, add gives a new node the sentinel address, stop leaves
# nothing running.
#
# Then start --redis-mode cluster: 2 nodes in front of a Redis Cluster of
# six servers (three primaries, a replica each; every port, the cluster
# bus ports too, picked once); 30 keys set through the nodes are in the
# cluster, spread over the three primaries; after kill -9 of the primary
# of slot 0, a write of a key in its slots works again within 60 s;
# status shows the replica that took over; stop leaves nothing running.
# Also: an unknown mode is refused before anything starts.
#
# Environment: PEERCACHE_BUILD (the build directory; default build). The
# state directory is always a private one under a mktemp directory. Run as
# root, cluster.sh runs everything as the user peercache (setpriv).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
cluster=$here/deploy/cluster.sh
build=${PEERCACHE_BUILD:-build}
case $build in /*) ;; *) build=$here/$build ;; esac
export PEERCACHE_BUILD=$build
cli_bin=$build/client/peercache-cli
master=peercache

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_cluster_sh.XXXXXX")
# Run as root, the state directory inside becomes peercache's: it must be
# able to reach it.
chmod 0711 "$tmp"
dir=$tmp/cluster
# The cluster-mode section's own state directory.
rdir=$tmp/rcluster
export PEERCACHE_CLUSTER_DIR=$dir

say() { echo "test_cluster_sh: $*"; }
fail() {
  echo "test_cluster_sh: FAIL: $*" >&2
  exit 1
}

ok=0
cleanup() {
  local f d
  for d in "$dir" "$rdir"; do
    [ ! -d "$d" ] || PEERCACHE_CLUSTER_DIR=$d "$cluster" stop >/dev/null 2>&1 || true
  done
  if [ $ok = 1 ]; then
    rm -rf "$tmp"
    return
  fi
  for f in "$dir"/*.log "$rdir"/*.log; do
    [ -e "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
  echo "test_cluster_sh: logs kept in $tmp" >&2
}
trap cleanup EXIT

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# alive PID: a process (not a zombie) with this pid exists.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# named_primary PORT: the port of the primary sentinel PORT names now
# (empty if it does not answer).
named_primary() {
  redis-cli -h 127.0.0.1 -p "$1" SENTINEL get-master-addr-by-name "$master" 2>/dev/null |
    tr -d '\r' | sed -n 2p || true
}

# agreed_primary: the port all three sentinels name, or empty while they
# differ (one may learn of a failover a moment after the others).
agreed_primary() {
  local k p first=''
  for k in 1 2 3; do
    p=$(named_primary "$(cat "$dir/sentinel$k.port")")
    [ -n "$p" ] || return 0
    [ -z "$first" ] || [ "$p" = "$first" ] || return 0
    first=$p
  done
  echo "$first"
}

rget() { redis-cli -h 127.0.0.1 -p "$1" get "$2" 2>/dev/null | tr -d '\r' || true; }

# ---- an unknown mode is refused: nothing starts ----------------------------

mode=bogus
rc=0
out=$("$cluster" start 2 --redis-mode "$mode" 2>&1) || rc=$?
[ $rc -ne 0 ] || fail "start --redis-mode $mode succeeded: $out"
want="unknown --redis-mode '$mode'"
[[ $out == *"$want"* ]] || fail "start --redis-mode $mode: no message '$want' in: $out"
[ ! -e "$dir" ] || fail "start --redis-mode $mode created $dir: $(ls -A "$dir")"
say "start --redis-mode $mode refused (exit $rc): ${out%%$'\n'*}"
if pgrep -af -- "$tmp" >&2; then fail "processes mention $tmp after a refused start"; fi

# ---- sentinel mode ----------------------------------------------------------

t0=$(date +%s%N)
out=$("$cluster" start 2 --redis-mode sentinel) || fail "start 2 --redis-mode sentinel failed"
start_ms=$(ms_since "$t0")
printf '%s\n' "$out"
say "sentinel-mode cluster of 2 nodes started in $start_ms ms"
[ "$(cat "$dir/redis.mode")" = sentinel ] || fail "redis.mode is not sentinel"
sentinel_addrs=$(for k in 1 2 3; do echo "127.0.0.1:$(cat "$dir/sentinel$k.port")"; done | paste -sd,)
[[ $out == *"redis mode: sentinel"* ]] || fail "start does not say the mode"
[[ $out == *"sentinel://$sentinel_addrs/$master"* ]] || fail "start does not list the sentinels ($sentinel_addrs)"

# Every process is on its own port.
ports=$(cat "$dir"/*.port "$dir"/node*.http "$dir"/node*.resp)
[ -z "$(sort <<<"$ports" | uniq -d)" ] || fail "a port is handed out twice: $(sort <<<"$ports" | uniq -d | paste -sd' ')"

# The nodes were given the sentinels.
for i in 1 2; do
  cmd=$(tr '\0' ' ' <"/proc/$(cat "$dir/node$i.pid")/cmdline")
  [[ $cmd == *"--redis sentinel://$sentinel_addrs/$master "* ]] || fail "node$i: $cmd"
done
if [ "$(id -u)" -eq 0 ]; then
  for k in 1 2 3; do
    [ "$(stat -c %U "$dir/sentinel$k.conf")" = peercache ] || fail "sentinel$k.conf is not peercache's"
    [ "$(stat -c %U "/proc/$(cat "$dir/sentinel$k.pid")")" = peercache ] || fail "sentinel$k does not run as peercache"
  done
  [ "$(stat -c %U "/proc/$(cat "$dir/redis.pid")")" = peercache ] || fail "redis-server does not run as peercache"
fi

nodes=$("$cluster" nodes)
"$cli_bin" --nodes "$nodes" set k1 v1 >/dev/null || fail "set k1 v1 failed"
old=$(agreed_primary)
[ -n "$old" ] || fail "the sentinels do not agree on a primary"
[ "$old" = "$(cat "$dir/redis.port")" ] || fail "the sentinels name port $old, not redis.port $(cat "$dir/redis.port")"
[ "$(rget "$old" k1)" = v1 ] || fail "k1 is not v1 in the primary (port $old): '$(rget "$old" k1)'"
# Replication is asynchronous: both replicas have k1 before the crash.
[ "$(redis-cli -h 127.0.0.1 -p "$old" WAIT 2 5000 | tr -d '\r')" = 2 ] ||
  fail "k1 did not reach both replicas within 5 s"

# ---- kill -9 of the primary -------------------------------------------------

pid=$(cat "$dir/redis.pid")
[[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *redis-server* ]] || fail "pid $pid is not the redis-server"
kill -KILL "$pid"
t0=$(date +%s%N)
deadline=$((SECONDS + 60))
tries=0 last='' err=''
until last=$("$cli_bin" --nodes "$nodes" --timeout 1000 set k2 v2 2>&1); do
  tries=$((tries + 1)) err=$last
  [ $SECONDS -lt $deadline ] || fail "set k2 v2 still fails 60 s after kill -9 of the primary: $last"
  sleep 0.2
done
failover_ms=$(ms_since "$t0")
say "writes through the nodes work again $failover_ms ms after kill -9 of the primary ($tries failed tries before; the last: ${err//$'\n'/ })"

deadline=$((SECONDS + 20))
until new=$(agreed_primary) && [ -n "$new" ] && [ "$new" != "$old" ]; do
  [ $SECONDS -lt $deadline ] || fail "the sentinels do not agree on a new primary: $(for k in 1 2 3; do named_primary "$(cat "$dir/sentinel$k.port")"; done | paste -sd' ')"
  sleep 0.2
done
say "the sentinels name port $new now (was $old)"
[[ " $(cat "$dir/redis-replica1.port") $(cat "$dir/redis-replica2.port") " == *" $new "* ]] ||
  fail "the new primary (port $new) is none of the replicas"
[ "$(rget "$new" k1)" = v1 ] || fail "k1 is not v1 in the new primary: '$(rget "$new" k1)'"
[ "$(rget "$new" k2)" = v2 ] || fail "k2 is not v2 in the new primary: '$(rget "$new" k2)'"

rc=0
status=$("$cluster" status 2>&1) || rc=$?
printf '%s\n' "$status"
[ $rc -eq 0 ] || fail "status exited $rc"
[[ $status == *"primary: 127.0.0.1:$new"* ]] || fail "status does not name the new primary 127.0.0.1:$new"
[[ $status == *"redis-server 127.0.0.1:$old (not running)"* ]] || fail "status does not show the old primary down"

# add: needs the sentinels, not the first primary; the new node gets them.
"$cluster" add || fail "add after the failover failed"
cmd=$(tr '\0' ' ' <"/proc/$(cat "$dir/node3.pid")/cmdline")
[[ $cmd == *"--redis sentinel://$sentinel_addrs/$master "* ]] || fail "node3: $cmd"
nodes=$("$cluster" nodes)
[ "$("$cli_bin" --nodes "$nodes" get k2)" = v2 ] || fail "get k2 through 3 nodes is not v2"

# ---- stop: nothing of the cluster runs --------------------------------------

"$cluster" stop || fail "stop failed"
left=''
for f in "$dir"/*.pid; do
  p=$(cat "$f")
  if alive "$p"; then left+=" $(basename "$f" .pid)=$p"; fi
done
[ -z "$left" ] || fail "still running after stop:$left"
# Nor anything else of ours: the nodes' command lines name the state
# directory, the Redis processes' titles their address.
if pgrep -af -- "$tmp" >&2; then fail "processes mention $tmp after stop"; fi
for f in "$dir"/redis*.port "$dir"/sentinel*.port; do
  port=$(cat "$f")
  if pgrep -af -- "127\.0\.0\.1:$port([^0-9]|$)" >&2; then fail "a process on port $port after stop"; fi
done

# ---- cluster mode ------------------------------------------------------------

export PEERCACHE_CLUSTER_DIR=$rdir
t0=$(date +%s%N)
out=$("$cluster" start 2 --redis-mode cluster) || fail "start 2 --redis-mode cluster failed"
rstart_ms=$(ms_since "$t0")
printf '%s\n' "$out"
say "cluster-mode cluster of 2 nodes started in $rstart_ms ms"
[ "$(cat "$rdir/redis.mode")" = cluster ] || fail "redis.mode is not cluster"
seeds=$(for k in 1 2 3; do echo "127.0.0.1:$(cat "$rdir/redis-cluster$k.port")"; done | paste -sd,)
[[ $out == *"redis mode: cluster"* ]] || fail "start does not say the mode"
[[ $out == *"cluster://$seeds"* ]] || fail "start does not list the seeds ($seeds)"

# Every process, and every cluster bus, is on its own port.
ports=$(cat "$rdir"/*.port "$rdir"/*.bus "$rdir"/node*.http "$rdir"/node*.resp)
[ -z "$(sort <<<"$ports" | uniq -d)" ] || fail "a port is handed out twice: $(sort <<<"$ports" | uniq -d | paste -sd' ')"
[ "$(wc -l <<<"$ports")" = 18 ] || fail "expected 18 ports (6 servers, 6 buses, 2 nodes x 3), got: $(paste -sd' ' <<<"$ports")"
cports=()
for k in 1 2 3 4 5 6; do
  p=$(cat "$rdir/redis-cluster$k.port")
  cports+=("$p")
  bus=$(redis-cli -h 127.0.0.1 -p "$p" CONFIG GET cluster-port | tr -d '\r' | sed -n 2p)
  [ "$bus" = "$(cat "$rdir/redis-cluster$k.bus")" ] || fail "redis-cluster$k: cluster-port $bus, redis-cluster$k.bus $(cat "$rdir/redis-cluster$k.bus")"
  info=$(redis-cli -h 127.0.0.1 -p "$p" CLUSTER INFO | tr -d '\r')
  for want in cluster_state:ok cluster_slots_assigned:16384 cluster_known_nodes:6 cluster_size:3; do
    grep -qx "$want" <<<"$info" || fail "redis-cluster$k (port $p): no $want in CLUSTER INFO"
  done
done

for i in 1 2; do
  cmd=$(tr '\0' ' ' <"/proc/$(cat "$rdir/node$i.pid")/cmdline")
  [[ $cmd == *"--redis cluster://$seeds "* ]] || fail "node$i: $cmd"
done
if [ "$(id -u)" -eq 0 ]; then
  for k in 1 2 3 4 5 6; do
    p=${cports[k - 1]}
    [ "$(stat -c %U "$rdir/nodes-$p.conf")" = peercache ] || fail "nodes-$p.conf is not peercache's"
    [ "$(stat -c %U "/proc/$(cat "$rdir/redis-cluster$k.pid")")" = peercache ] || fail "redis-cluster$k does not run as peercache"
  done
fi

# 30 keys through the nodes: each is in the cluster (redis-cli -c follows
# MOVED to its slot's primary), and every primary holds some.
nodes=$("$cluster" nodes)
for j in $(seq 1 30); do
  "$cli_bin" --nodes "$nodes" set "ck$j" "cv$j" >/dev/null || fail "set ck$j cv$j failed"
done
for j in $(seq 1 30); do
  v=$(redis-cli -c -h 127.0.0.1 -p "${cports[0]}" get "ck$j" | tr -d '\r')
  [ "$v" = "cv$j" ] || fail "ck$j is '$v' in the Redis Cluster, not cv$j"
done

rc=0
status=$("$cluster" status 2>&1) || rc=$?
printf '%s\n' "$status"
[ $rc -eq 0 ] || fail "status exited $rc"
primaries=$(grep -c '^primary 127\.0\.0\.1:[0-9]* slots ' <<<"$status" || true)
[ "$primaries" = 3 ] || fail "status lists $primaries primaries with slots, not 3"
[ "$(grep -c '^redis-cluster[1-6] .* role replica$' <<<"$status" || true)" = 3 ] || fail "status does not list 3 replicas"
total=0
while read -r p; do
  n=$(redis-cli -h 127.0.0.1 -p "$p" DBSIZE | tr -d '\r')
  [ "$n" -gt 0 ] || fail "the primary on port $p holds none of the 30 keys"
  total=$((total + n))
done < <(sed -n 's/^primary 127\.0\.0\.1:\([0-9]*\) slots .*/\1/p' <<<"$status")
[ "$total" = 30 ] || fail "the primaries hold $total keys, not 30"

# The primary of slot 0, its last slot of that range, and its state name.
[[ $status =~ primary\ 127\.0\.0\.1:([0-9]+)\ slots\ 0-([0-9]+) ]] || fail "status names no primary of slot 0"
old=${BASH_REMATCH[1]} last=${BASH_REMATCH[2]}
victim=''
for k in 1 2 3 4 5 6; do [ "${cports[k - 1]}" != "$old" ] || victim=redis-cluster$k; done
[ -n "$victim" ] || fail "the primary of slot 0 (port $old) is none of the cluster servers"
# A key in its slots 0..$last.
key=''
for j in $(seq 0 99); do
  slot=$(redis-cli -h 127.0.0.1 -p "$old" CLUSTER KEYSLOT "s0k$j" | tr -d '\r')
  [ "$slot" -gt "$last" ] || { key=s0k$j; break; }
done
[ -n "$key" ] || fail "no key s0k0..s0k99 in slots 0-$last"
"$cli_bin" --nodes "$nodes" set "$key" before >/dev/null || fail "set $key before failed"
[ "$(rget "$old" "$key")" = before ] || fail "$key (slot $slot) is not in the primary of slot 0 (port $old)"
# Replication is asynchronous: the replica has every key before the crash.
[ "$(redis-cli -h 127.0.0.1 -p "$old" WAIT 1 5000 | tr -d '\r')" = 1 ] ||
  fail "the writes did not reach the replica of port $old within 5 s"

# ---- kill -9 of the primary of slot 0 ---------------------------------------

pid=$(cat "$rdir/$victim.pid")
[[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *redis-server* ]] || fail "pid $pid is not a redis-server"
kill -KILL "$pid"
t0=$(date +%s%N)
deadline=$((SECONDS + 60))
tries=0 last_out='' err=''
until last_out=$("$cli_bin" --nodes "$nodes" --timeout 1000 set "$key" after 2>&1); do
  tries=$((tries + 1)) err=$last_out
  [ $SECONDS -lt $deadline ] || fail "set $key after still fails 60 s after kill -9 of $victim (port $old): $last_out"
  sleep 0.2
done
rfailover_ms=$(ms_since "$t0")
say "writes of $key (slot $slot) work again $rfailover_ms ms after kill -9 of $victim, the primary of slots 0-$last ($tries failed tries before; the last: ${err//$'\n'/ })"

live=${cports[0]}
[ "$old" != "$live" ] || live=${cports[1]}
[ "$(redis-cli -c -h 127.0.0.1 -p "$live" get "$key" | tr -d '\r')" = after ] || fail "$key is not 'after' in the Redis Cluster"
for j in $(seq 1 30); do
  v=$(redis-cli -c -h 127.0.0.1 -p "$live" get "ck$j" | tr -d '\r')
  [ "$v" = "cv$j" ] || fail "after the failover, ck$j is '$v' in the Redis Cluster, not cv$j"
done

# status names the replica that took over slot 0 (every server may not
# have heard of it at the same moment: a few seconds' grace).
deadline=$((SECONDS + 10))
while :; do
  rc=0
  status=$("$cluster" status 2>&1) || rc=$?
  [ $rc -eq 0 ] || fail "status exited $rc after the failover: $status"
  if [[ $status =~ primary\ 127\.0\.0\.1:([0-9]+)\ slots\ 0- ]] && [ "${BASH_REMATCH[1]}" != "$old" ]; then
    break
  fi
  [ $SECONDS -lt $deadline ] || fail "status does not name a new primary of slot 0: $status"
  sleep 0.2
done
printf '%s\n' "$status"
new=${BASH_REMATCH[1]}
say "status names port $new the primary of slot 0 now (was $old)"
[[ $status == *"$victim 127.0.0.1:$old (not running)"* ]] || fail "status does not show $victim down"
[[ $status =~ redis-cluster[1-6]\ 127\.0\.0\.1:$new\ pid\ [0-9]+\ bus\ [0-9]+\ role\ primary ]] ||
  fail "status does not show port $new as a primary"

# ---- stop: nothing of the cluster-mode cluster runs --------------------------

"$cluster" stop || fail "stop (cluster mode) failed"
left=''
for f in "$rdir"/*.pid; do
  p=$(cat "$f")
  if alive "$p"; then left+=" $(basename "$f" .pid)=$p"; fi
done
[ -z "$left" ] || fail "still running after stop (cluster mode):$left"
if pgrep -af -- "$tmp" >&2; then fail "processes mention $tmp after stop (cluster mode)"; fi
for p in "${cports[@]}"; do
  if pgrep -af -- "127\.0\.0\.1:$p([^0-9]|$)" >&2; then fail "a process on port $p after stop (cluster mode)"; fi
done

say "PASS (sentinel mode: start $start_ms ms, writes back $failover_ms ms after kill -9 of the primary;" \
  "cluster mode: start $rstart_ms ms, writes back $rfailover_ms ms after kill -9 of the primary of slot 0)"
ok=1
