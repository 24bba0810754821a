#!/usr/bin/env bash
# tests/bench/resp_compare.sh -- the Redis-protocol front door side by side
# with the node's native port and with redis-server itself, one core each:
# every server pinned to CPU 0, the generator to CPU 1, single-threaded
# servers (peercached --threads 1 --redis none: the cache tier alone, so
# the figures compare protocols, not Redis' write-through).
#
#   bash tests/bench/resp_compare.sh [--build DIR] [--rounds N] [--duration S]
#        [--connections N] [--pipelines "1 16"] [--keys N] [--no-redis-benchmark]
#
# For each round, each pipeline depth and each target (in an order that
# rotates every round), peercache-bench runs a closed loop (7:3 GET:SET,
# 100-byte values, uniform keys, all prefilled) and the server's CPU time
# is read from /proc before and after. Printed: the median over rounds of
# ops/s, server CPU µs per operation and p99, and the ratios. Then (unless
# --no-redis-benchmark) redis-benchmark -t set,get against the front
# door and against redis-server, interleaved the same way (plus MGET of
# 10 keys, as an arbitrary command: redis-benchmark has no MGET test),
# 100,000 requests a test times the pipeline depth.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build
rounds=5
duration=8
conns=50
pipelines="1 16"
keys=10000
rbench=1
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --pipelines) pipelines=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --no-redis-benchmark) rbench=0; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "resp_compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
node_bin=$build/node/peercached
bench=$build/client/peercache-bench
[ -x "$node_bin" ] && [ -x "$bench" ] || { echo "resp_compare.sh: build $build first" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "resp_compare.sh: needs 2 CPUs (server and generator apart)" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { # a port nobody listens on
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

wait_port() {
  local i
  for i in $(seq 1 200); do
    ss -Htln "sport = :$1" | grep -q . && return 0
    sleep 0.05
  done
  echo "resp_compare.sh: nothing listens on $1" >&2
  exit 1
}

rport=$(free_port)
taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!); redis_pid=$!
nport=$(free_port)
sport=$(free_port)
taskset -c 0 "$node_bin" --insecure --redis none --threads 1 --memory 256mb \
  --listen "127.0.0.1:$nport" --resp "127.0.0.1:$sport" >"$tmp/node.out" 2>"$tmp/node.log" &
pids+=($!); node_pid=$!
wait_port "$rport"; wait_port "$nport"; wait_port "$sport"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# target NAME -> protocol, address, pid
declare -A proto addr pid
proto[native]=peercache; addr[native]=127.0.0.1:$nport; pid[native]=$node_pid
proto[resp]=redis; addr[resp]=127.0.0.1:$sport; pid[resp]=$node_pid
proto[redis]=redis; addr[redis]=127.0.0.1:$rport; pid[redis]=$redis_pid
targets=(native resp redis)

common=(--connections "$conns" --keys "$keys" --ratio 7:3 --value-size 100 --quiet --json)
for t in native redis; do # the node's two ports share one store: one prefill
  taskset -c 1 "$bench" --protocol "${proto[$t]}" --nodes "${addr[$t]}" --no-ring "${common[@]}" \
    --prefill --duration 1 --warmup 0 >/dev/null 2>&1 ||
    taskset -c 1 "$bench" --protocol "${proto[$t]}" --nodes "${addr[$t]}" "${common[@]}" \
      --prefill --duration 1 --warmup 0 >/dev/null
done

field() { sed -n "s/.*\"$1\": \\([0-9.]*\\).*/\\1/p"; }
results=$tmp/results
: >"$results"
for ((r = 0; r < rounds; r++)); do
  for pl in $pipelines; do
    for ((k = 0; k < ${#targets[@]}; k++)); do
      t=${targets[$(((k + r) % ${#targets[@]}))]}
      ring=()
      [ "${proto[$t]}" = peercache ] && ring=(--no-ring)
      c0=$(cpu_ticks "${pid[$t]}")
      out=$(taskset -c 1 "$bench" --protocol "${proto[$t]}" --nodes "${addr[$t]}" "${ring[@]}" \
        "${common[@]}" --pipeline "$pl" --no-prefill --warmup 0 --duration "$duration" 2>/dev/null)
      c1=$(cpu_ticks "${pid[$t]}")
      ops=$(echo "$out" | field ops)
      opsps=$(echo "$out" | field ops_per_sec)
      p99=$(echo "$out" | field p99_us)
      errs=$(echo "$out" | field errors)
      [ "${errs:-1}" = 0 ] || { echo "resp_compare.sh: $t had errors: $out" >&2; exit 1; }
      cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v n="$ops" 'BEGIN{printf "%.3f", d * 1e6 / hz / n}')
      echo "$pl $t $opsps $cpu_us $p99" >>"$results"
      printf 'round %d pipeline %-3s %-7s %10.0f ops/s %7s us cpu/op p99 %s us\n' \
        $((r + 1)) "$pl" "$t" "$opsps" "$cpu_us" "$p99" >&2
    done
  done
done

median() { sort -n | awk '{v[NR]=$1} END{if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }
echo
echo "peercache-bench, one core each (server CPU 0, generator CPU 1), $conns connections,"
echo "7:3 GET:SET, 100-byte values, $keys keys; medians of $rounds interleaved rounds of ${duration} s"
printf '%-9s %-8s %12s %14s %10s\n' pipeline target "ops/s" "cpu us/op" "p99 us"
for pl in $pipelines; do
  for t in "${targets[@]}"; do
    o=$(awk -v p="$pl" -v t="$t" '$1==p && $2==t {print $3}' "$results" | median)
    c=$(awk -v p="$pl" -v t="$t" '$1==p && $2==t {print $4}' "$results" | median)
    q=$(awk -v p="$pl" -v t="$t" '$1==p && $2==t {print $5}' "$results" | median)
    printf '%-9s %-8s %12.0f %14.3f %10.0f\n' "$pl" "$t" "$o" "$c" "$q"
    eval "o_${t}_$pl=$o c_${t}_$pl=$c"
  done
  eval "echo \"pipeline $pl: resp/native ops \$(awk -v a=\$o_resp_$pl -v b=\$o_native_$pl 'BEGIN{printf \"%.3f\", a/b}')\
, cpu/op \$(awk -v a=\$c_resp_$pl -v b=\$c_native_$pl 'BEGIN{printf \"%.3f\", a/b}'); \
resp/redis-server ops \$(awk -v a=\$o_resp_$pl -v b=\$o_redis_$pl 'BEGIN{printf \"%.3f\", a/b}')\
, cpu/op \$(awk -v a=\$c_resp_$pl -v b=\$c_redis_$pl 'BEGIN{printf \"%.3f\", a/b}')\""
done

[ "$rbench" = 1 ] || exit 0
command -v redis-benchmark >/dev/null || { echo "redis-benchmark not installed: skipped" >&2; exit 0; }
echo
echo "redis-benchmark -t set,get and MGET of 10 keys, -c $conns -r $keys -d 100 (CPU 1), medians of $rounds rounds"
rb=$tmp/rb
: >"$rb"
for ((r = 0; r < rounds; r++)); do
  for pl in $pipelines; do
    # which goes first alternates, round by round
    order="resp redis"
    [ $((r % 2)) = 1 ] && order="redis resp"
    for t in $order; do
      port=${addr[$t]##*:}
      # SET then GET of the same keys; then MGET of 10 (redis-benchmark
      # has no MGET test: an arbitrary command, named by its words).
      # 100,000 requests a test (times the depth): about a second or more
      # each, so that connecting is a small part of it.
      { taskset -c 1 redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n $((100000 * pl)) \
          -c "$conns" -r "$keys" -d 100 -P "$pl" --csv 2>/dev/null
        taskset -c 1 redis-benchmark -h 127.0.0.1 -p "$port" -n $((50000 * pl)) -c "$conns" \
          -r "$keys" -P "$pl" --csv MGET $(printf 'key:__rand_int__ %.0s' $(seq 10)) 2>/dev/null |
          sed 's/^"MGET[^"]*"/"MGET"/'
      } | tr -d '"' | awk -F, -v p="$pl" -v t="$t" '$1!="test" {print p "|" t "|" $1 "|" $2}' >>"$rb"
    done
  done
done
printf '%-9s %-8s %12s %12s %15s\n' pipeline target "SET rps" "GET rps" "MGET(10) rps"
for pl in $pipelines; do
  for t in resp redis; do
    line=$(printf '%-9s %-8s' "$pl" "$t")
    for test in SET GET MGET; do
      m=$(awk -F'|' -v p="$pl" -v t="$t" -v n="$test" '$1==p && $2==t && $3==n {print $4}' "$rb" | median)
      line+=$(printf ' %12.0f' "${m:-0}")
    done
    echo "$line"
  done
done
