#!/usr/bin/env bash
# test_cluster_sh.sh -- deploy/cluster.sh start --redis-mode sentinel, end
# to end: 2 nodes in front of a primary, two replicas and three sentinels;
# a write through the nodes lands in the primary the sentinels name; after
# kill -9 of that primary, writes through the nodes work again within 60 s,
# and the new primary (another port) holds the keys from before and after;
# status names it, add gives a new node the sentinel address, stop leaves
# nothing running. Also: --redis-mode cluster and an unknown mode are
# refused before anything starts.
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
export PEERCACHE_CLUSTER_DIR=$dir

say() { echo "test_cluster_sh: $*"; }
fail() {
  echo "test_cluster_sh: FAIL: $*" >&2
  exit 1
}

ok=0
cleanup() {
  local f
  "$cluster" stop >/dev/null 2>&1 || true
  if [ $ok = 1 ]; then
    rm -rf "$tmp"
    return
  fi
  for f in "$dir"/*.log; do
    [ -e "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
  echo "test_cluster_sh: logs kept in $dir" >&2
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

# ---- refused modes: nothing starts -----------------------------------------

for mode in cluster bogus; do
  rc=0
  out=$("$cluster" start 2 --redis-mode "$mode" 2>&1) || rc=$?
  [ $rc -ne 0 ] || fail "start --redis-mode $mode succeeded: $out"
  case $mode in
    cluster) want="does not support Redis Cluster" ;;
    *) want="unknown --redis-mode '$mode'" ;;
  esac
  [[ $out == *"$want"* ]] || fail "start --redis-mode $mode: no message '$want' in: $out"
  [ ! -e "$dir" ] || fail "start --redis-mode $mode created $dir: $(ls -A "$dir")"
  say "start --redis-mode $mode refused (exit $rc): ${out%%$'\n'*}"
done
if pgrep -af -- "$tmp" >&2; then fail "processes mention $tmp after refused starts"; fi

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

say "PASS (start $start_ms ms, writes back $failover_ms ms after kill -9 of the primary)"
ok=1
