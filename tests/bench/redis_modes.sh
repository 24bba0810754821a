#!/usr/bin/env bash
# tests/bench/redis_modes.sh -- one node in front of each kind of Redis
# deploy/cluster.sh can start, side by side in one run: a single
# redis-server, a Sentinel-managed primary with two replicas, and a Redis
# Cluster of three primaries with a replica each.
#
#   bash tests/bench/redis_modes.sh [--build DIR] [--rounds N] [--duration S]
#        [--connections N] [--modes "single sentinel cluster"] [--threads N]
#
# Each mode gets its own state directory and one peercached (--threads N,
# default 2). For each round, each workload -- write-heavy (1:9 GET:SET)
# and read-heavy (9:1) -- and each mode, in an order that rotates every
# round, peercache-bench runs a closed loop (100-byte values, 100,000
# uniform keys, prefilled once per mode) and the CPU time of the node and
# of every redis-server of the mode (primaries and replicas; sentinels
# not) is read from /proc before and after. Printed: medians over rounds
# of ops/s, p99, node CPU us per operation, Redis CPU us per operation
# (all servers), and Redis CPU us per SET on the primaries alone (the
# figure a fleet's write capacity scales with, docs/PERFORMANCE.md).
# Everything runs on the machine's cores unpinned: there are more
# processes than cores, so the figures compare the modes with each other,
# not with a machine that has a core per Redis.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=$(pwd)

build=build
rounds=5
duration=8
conns=50
modes="single sentinel cluster"
threads=2
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "redis_modes.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case $build in /*) ;; *) build=$here/$build ;; esac
bench=$build/client/peercache-bench
[ -x "$bench" ] && [ -x "$build/node/peercached" ] ||
  { echo "redis_modes.sh: build $build first" >&2; exit 2; }

tmp=$(mktemp -d)
chmod 0711 "$tmp" # the nodes may run as the peercache user (cluster.sh as root)
cs() { PEERCACHE_BUILD=$build PEERCACHE_CLUSTER_DIR=$tmp/$1 bash deploy/cluster.sh "${@:2}"; }
cleanup() {
  for m in $modes; do cs "$m" stop >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

declare -A node_addr node_pid redis_pids primary_pids
for m in $modes; do
  cs "$m" start 1 --redis-mode "$m" -- --threads "$threads" --memory 256mb >"$tmp/$m.start" 2>&1 ||
    { cat "$tmp/$m.start" >&2; exit 1; }
  node_addr[$m]=$(cs "$m" nodes)
  node_pid[$m]=$(cat "$tmp/$m/node1.pid")
  # every redis-server of the mode (not the sentinels), and its primaries
  all=() prim=()
  for f in "$tmp/$m"/redis*.pid; do
    p=$(cat "$f")
    port=$(cat "${f%.pid}.port")
    all+=("$p")
    role=$(redis-cli -p "$port" role 2>/dev/null | head -1 || true)
    [ "$role" = master ] && prim+=("$p")
  done
  redis_pids[$m]="${all[*]}"
  primary_pids[$m]="${prim[*]}"
  echo "$m: node ${node_addr[$m]}, redis-server pids ${all[*]} (primaries ${prim[*]})" >&2
  "$bench" --nodes "${node_addr[$m]}" --connections "$conns" --keys 100000 --value-size 100 \
    --ratio 0:1 --prefill --duration 1 --warmup 0 --quiet --json >/dev/null
done

cpu_ticks() { # summed user+system ticks of the pids
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
hz=$(getconf CLK_TCK)
field() { sed -n "s/.*\"$1\": \\([0-9.]*\\).*/\\1/p"; }

declare -A ratio=([write]=1:9 [read]=9:1)
workloads="write read"
mlist=($modes)
results=$tmp/results
: >"$results"
for ((r = 0; r < rounds; r++)); do
  for w in $workloads; do
    for ((k = 0; k < ${#mlist[@]}; k++)); do
      m=${mlist[$(((k + r) % ${#mlist[@]}))]}
      # shellcheck disable=SC2086
      n0=$(cpu_ticks ${node_pid[$m]}) r0=$(cpu_ticks ${redis_pids[$m]}) p0=$(cpu_ticks ${primary_pids[$m]})
      out=$("$bench" --nodes "${node_addr[$m]}" --connections "$conns" --keys 100000 \
        --value-size 100 --ratio "${ratio[$w]}" --no-prefill --warmup 1 --duration "$duration" \
        --quiet --json 2>/dev/null)
      # shellcheck disable=SC2086
      n1=$(cpu_ticks ${node_pid[$m]}) r1=$(cpu_ticks ${redis_pids[$m]}) p1=$(cpu_ticks ${primary_pids[$m]})
      ops=$(echo "$out" | field ops)
      opsps=$(echo "$out" | field ops_per_sec)
      p99=$(echo "$out" | field p99_us)
      errs=$(echo "$out" | field errors)
      sets=$(awk -v n="$ops" -v w="$w" 'BEGIN{print (w == "write") ? n * 0.9 : n * 0.1}')
      row=$(awk -v n="$ops" -v s="$sets" -v hz="$hz" -v dn=$((n1 - n0)) -v dr=$((r1 - r0)) \
        -v dp=$((p1 - p0)) 'BEGIN{printf "%.2f %.2f %.2f", dn*1e6/hz/n, dr*1e6/hz/n, dp*1e6/hz/s}')
      echo "$w $m $opsps $p99 $row ${errs:-0}" >>"$results"
      printf 'round %d %-5s %-8s %9.0f ops/s p99 %6s us  node %s  redis %s us/op  primaries %s us/SET  errors %s\n' \
        $((r + 1)) "$w" "$m" "$opsps" "$p99" $row "${errs:-0}" >&2
    done
  done
done

median() { sort -n | awk '{v[NR]=$1} END{if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }
echo
echo "one node (--threads $threads) in front of each mode, $conns connections, 100-byte values,"
echo "100,000 uniform keys; medians of $rounds interleaved rounds of ${duration} s; $(nproc) CPUs, unpinned"
printf '%-6s %-9s %10s %8s %12s %13s %17s %7s\n' load mode "ops/s" "p99 us" "node us/op" "redis us/op" "primaries us/SET" errors
for w in $workloads; do
  for m in $modes; do
    col() { awk -v w="$w" -v m="$m" -v c="$1" '$1==w && $2==m {print $c}' "$results" | median; }
    printf '%-6s %-9s %10.0f %8.0f %12.2f %13.2f %17.2f %7.0f\n' "$w" "$m" "$(col 3)" "$(col 4)" \
      "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)"
  done
done
