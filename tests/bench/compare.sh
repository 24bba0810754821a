#!/usr/bin/env bash
#
# peercached side by side with memcached and redis-server, on loopback.
#
# Starts every server on free loopback ports (never the default 6379 and
# 11211, in case something real runs there), then runs the same
# peercache-bench workloads against each in turn, several rounds, the
# servers alternating inside each round (A B C D, A B C D, ...) so that a
# noisy minute on a shared machine hurts all of them alike. Prints one
# table of medians with ratios against memcached and Redis. Everything
# started is stopped on exit.
#
# Workloads (docs/PERFORMANCE.md, "Side by side"):
#   a  closed loop, C connections, 70% GET / 30% SET, 100-byte values,
#      100,000 keys, no pipelining
#   b  the same with pipeline depth 16
#   c  open loop at half the median capacity (a) of the slowest server,
#      the same rate for each: latency at a sane load
#   d  3 memory-only nodes (--replicas 2) driven by the ring-aware client,
#      against one node driven by the same client
#
# Two modes:
#   per machine (the default): every server uses the machine as it likes
#      (the node one loop per core, memcached -t 2 and -t 4), and so does
#      the generator.
#   --pinned: per core. Every server single-threaded (peercached
#      --threads 1, memcached -t 1, redis-server) and pinned to CPU 0,
#      the generator to CPU 1 (the Redis behind the node shares CPU 1 with
#      the generator); workload d, a cluster, is not run.
# In both, every run also reads the server's CPU time (user + system, all
# threads, from /proc) over the measured window (peercache-bench
# --server-pid), printed as CPU-seconds per million operations (the same
# number as microseconds per operation): on a shared machine that is
# steadier than ops/s. For d it is the three nodes' CPU together.
#
# The nodes run with --insecure: gossip and peer traffic unauthenticated,
# fine on loopback for a benchmark, never for a deployment; and with
# --max-conns-per-source 0, since every connection comes from 127.0.0.1.
#
# Usage: tests/bench/compare.sh [--rounds N] [--duration S] [--quick]
#            [--json FILE] [--build DIR] [--connections N] [--keys N]
#            [--memcached-threads "2 4"] [--peercached-threads "1"]
#            [--node-threads N] [--node-io "epoll uring"] [--workloads abcd]
#            [--pinned] [--install]
#
# "peercached" is a node with its default --threads (one loop per core),
# or --node-threads N for every node started (also (d)'s three);
# --peercached-threads adds memory-only nodes with those thread counts
# (rows peercached-tN), to show what the loops add. --node-io LIST runs
# the memory-only node once per transport (--io; rows peercached-epoll,
# peercached-uring), interleaved like every other server; the node with
# Redis behind it and (d)'s nodes use the first of the list.

set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
rounds=3
duration=10
warmup=2
build=$here/build
json_out=
conns=1000
keys=100000
mc_threads="2 4"
pc_threads=
node_threads=()
node_io=
workloads=abcd
install=0
pinned=0
rounds_set=0
duration_set=0

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; rounds_set=1; shift 2 ;;
    --duration) duration=$2; duration_set=1; shift 2 ;;
    --quick) quick=1; shift ;;
    --json) json_out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --memcached-threads) mc_threads=$2; shift 2 ;;
    --peercached-threads) pc_threads=$2; shift 2 ;;
    --node-threads) node_threads=(--threads "$2"); shift 2 ;;
    --node-io) node_io=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --pinned) pinned=1; shift ;;
    --install) install=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
done
# --quick: 2 rounds of 3 s, 1 s warm-up; explicit --rounds/--duration win.
if [ "${quick:-0}" = 1 ]; then
    [ $rounds_set = 1 ] || rounds=2
    [ $duration_set = 1 ] || duration=3
    warmup=1
fi

# Pinned: one core each; the cluster workload needs more than one.
srv_cpu=(); gen_cpu=()
if [ $pinned = 1 ]; then
    [ "$(nproc)" -ge 2 ] || { echo "compare.sh: --pinned needs 2 CPUs" >&2; exit 2; }
    command -v taskset >/dev/null || { echo "compare.sh: --pinned needs taskset (util-linux)" >&2; exit 2; }
    srv_cpu=(taskset -c 0); gen_cpu=(taskset -c 1)
    mc_threads=1; pc_threads=; node_threads=(--threads 1)
    workloads=${workloads//d/}
fi

PCD=$build/node/peercached
BENCH=$build/client/peercache-bench
for b in "$PCD" "$BENCH"; do
    [ -x "$b" ] || { echo "compare.sh: $b not built (deploy/build.sh)" >&2; exit 1; }
done
if [ $install = 1 ]; then
    bash "$here/deploy/install-deps.sh"
fi
have_redis=1; have_mc=1
command -v redis-server >/dev/null || { have_redis=0;
    echo "compare.sh: redis-server not installed (deploy/install-deps.sh): skipping Redis and the node with Redis behind it" >&2; }
command -v memcached >/dev/null || { have_mc=0;
    echo "compare.sh: memcached not installed (deploy/install-deps.sh): skipping it" >&2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc-compare.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: random in 20000-31999 (below the usual ephemeral
# range, where outgoing connections would collide), nothing listening, not
# handed out already in this run.
used=" "
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        case $used in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            used="$used$p "
            echo "$p"
            return
        fi
    done
}

wait_port() {
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "compare.sh: nothing listens on 127.0.0.1:$1 after 10 s" >&2
    return 1
}

# start NAME PORT CMD...: runs CMD in the background (on CPU 0 when
# pinned), logs to $tmp/NAME.log; its pid goes in spid[NAME]
declare -A spid
start() {
    local name=$1 port=$2
    shift 2
    "${srv_cpu[@]}" "$@" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    spid[$name]=$!
    wait_port "$port" || { echo "compare.sh: $name did not start:" >&2; cat "$tmp/$name.log" >&2; exit 1; }
}

# ---- servers ---------------------------------------------------------------

# Each server: label, protocol, address. The labels are the table's.
servers=()
declare -A proto addr

declare -A cpupid
node_io_first=()
if [ -z "$node_io" ]; then
    p=$(free_port)
    start pc-mem "$p" "$PCD" --insecure --max-conns-per-source 0 --redis none --listen "127.0.0.1:$p" \
        --log-level warn "${node_threads[@]}"
    servers+=(peercached); proto[peercached]=peercache; addr[peercached]=127.0.0.1:$p
    cpupid[peercached]=${spid[pc-mem]}
else
    for io in $node_io; do
        p=$(free_port)
        start "pc-mem-$io" "$p" "$PCD" --insecure --max-conns-per-source 0 --redis none \
            --listen "127.0.0.1:$p" --log-level info --io "$io" "${node_threads[@]}"
        # a kernel that refuses io_uring makes the node fall back: the row would lie
        if [ "$io" = uring ] && grep -q "refuses it" "$tmp/pc-mem-$io.log"; then
            echo "compare.sh: --io uring refused here:" >&2
            grep "refuses it" "$tmp/pc-mem-$io.log" >&2
            exit 1
        fi
        servers+=("peercached-$io"); proto[peercached-$io]=peercache
        addr[peercached-$io]=127.0.0.1:$p; cpupid[peercached-$io]=${spid[pc-mem-$io]}
        [ ${#node_io_first[@]} -gt 0 ] || node_io_first=(--io "$io")
    done
fi
for t in $pc_threads; do
    p=$(free_port)
    start "pc-mem-t$t" "$p" "$PCD" --insecure --max-conns-per-source 0 --redis none --listen "127.0.0.1:$p" \
        --log-level warn --threads "$t"
    servers+=("peercached-t$t"); proto[peercached-t$t]=peercache; addr[peercached-t$t]=127.0.0.1:$p
    cpupid[peercached-t$t]=${spid[pc-mem-t$t]}
done

if [ $have_redis = 1 ]; then
    # Redis as a cache: no snapshots, no AOF.
    p=$(free_port)
    mkdir -p "$tmp/redis"
    start redis "$p" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$tmp/redis"
    servers+=(redis-server); proto[redis-server]=redis; addr[redis-server]=127.0.0.1:$p
    cpupid[redis-server]=${spid[redis]}

    # The node with Redis behind it gets its own Redis, so the two
    # measurements do not share a dataset.
    rp=$(free_port)
    mkdir -p "$tmp/redis-behind"
    # (pinned: on the generator's CPU, so that CPU 0 is the node's alone)
    srv_cpu_was=("${srv_cpu[@]}")
    [ $pinned = 1 ] && srv_cpu=(taskset -c 1)
    start redis-behind "$rp" redis-server --port "$rp" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$tmp/redis-behind"
    srv_cpu=("${srv_cpu_was[@]}")
    p=$(free_port)
    start pc-redis "$p" "$PCD" --insecure --max-conns-per-source 0 --redis "127.0.0.1:$rp" --listen "127.0.0.1:$p" \
        --log-level warn "${node_threads[@]}" "${node_io_first[@]}"
    servers+=(peercached+redis); proto[peercached+redis]=peercache
    addr[peercached+redis]=127.0.0.1:$p; cpupid[peercached+redis]=${spid[pc-redis]}
fi

if [ $have_mc = 1 ]; then
    for t in $mc_threads; do
        p=$(free_port)
        mcuser=()
        [ "$(id -u)" = 0 ] && mcuser=(-u root) # memcached refuses root without it
        start "memcached-t$t" "$p" memcached -l 127.0.0.1 -p "$p" -U 0 -c 4096 -m 256 \
            -t "$t" "${mcuser[@]}"
        servers+=("memcached-t$t"); proto[memcached-t$t]=memcache
        addr[memcached-t$t]=127.0.0.1:$p; cpupid[memcached-t$t]=${spid[memcached-t$t]}
    done
fi

# ---- runs ---------------------------------------------------------------------

# Every run appends one line to $runs: workload server round JSON.
runs=$tmp/runs
: >"$runs"

# bench WORKLOAD SERVER ROUND [extra bench options]
bench() {
    local w=$1 s=$2 r=$3 out
    shift 3
    local cmd=("${gen_cpu[@]}" "$BENCH" --protocol "${proto[$s]}" --nodes "${addr[$s]}"
        --connections "$conns" --threads 1 --ratio 7:3 --value-size 100 --keys "$keys"
        --duration "$duration" --warmup "$warmup" --server-pid "${cpupid[$s]}" --json --quiet "$@")
    [ "$r" = 1 ] && echo "  $w $s: ${cmd[*]#$here/}" >&2
    if ! out=$("${cmd[@]}" 2>"$tmp/bench.err"); then
        echo "compare.sh: $w against $s failed:" >&2
        cat "$tmp/bench.err" >&2
        return 1
    fi
    printf '%s %s %s %s\n' "$w" "$s" "$r" "$out" >>"$runs"
}

# field NAME < JSON: one number of the bench's JSON
field() { grep -o "\"$1\": *[-0-9.e+]*" | head -1 | sed 's/.*: *//'; }

# median WORKLOAD SERVER FIELD: the median over rounds
median() {
    awk -v w="$1" -v s="$2" '$1 == w && $2 == s { print }' "$runs" | cut -d' ' -f4- |
        while read -r line; do echo "$line" | field "$3"; done |
        sort -g | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "nan"; exit }
            if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "compare.sh: $rounds rounds of ${duration}s (+${warmup}s warm-up), $conns connections," \
    "$keys keys; servers: ${servers[*]}" >&2

has() { case $workloads in *"$1"*) return 0 ;; esac; return 1; }

for w in a b; do
    has $w || continue
    depth=1; [ $w = b ] && depth=16
    for r in $(seq "$rounds"); do
        for s in "${servers[@]}"; do bench $w "$s" "$r" --pipeline $depth; done
    done
done

rate=
if has c; then
    # Half of the slowest server's median capacity in (a), or of a short
    # measurement if (a) was not run.
    if ! has a; then
        for s in "${servers[@]}"; do bench a "$s" 1 --pipeline 1; done
    fi
    slow=
    for s in "${servers[@]}"; do
        m=$(median a "$s" ops_per_sec)
        if [ -z "$slow" ] || awk -v m="$m" -v x="$slow" 'BEGIN { exit !(m < x) }'; then slow=$m; fi
    done
    rate=$(awk -v x="$slow" 'BEGIN { printf "%d", x / 2 }')
    for r in $(seq "$rounds"); do
        for s in "${servers[@]}"; do bench c "$s" "$r" --pipeline 1 --rate "$rate"; done
    done
fi

if has d; then
    # Three memory-only nodes in one cluster, each key on 2 of them.
    cl=()
    p0=$(free_port)
    start pc-n0 "$p0" "$PCD" --insecure --max-conns-per-source 0 --redis none --replicas 2 \
        --listen "127.0.0.1:$p0" --log-level warn "${node_threads[@]}" "${node_io_first[@]}"
    cl+=("127.0.0.1:$p0")
    for i in 1 2; do
        p=$(free_port)
        start "pc-n$i" "$p" "$PCD" --insecure --max-conns-per-source 0 --redis none --replicas 2 \
            --listen "127.0.0.1:$p" --join "127.0.0.1:$p0" --log-level warn "${node_threads[@]}" \
            "${node_io_first[@]}"
        cl+=("127.0.0.1:$p")
    done
    nodes=$(IFS=,; echo "${cl[*]}")
    # Wait until every node sees all three (the same ring).
    for _ in $(seq 100); do
        n=0
        for a in "${cl[@]}"; do
            "$build/client/peercache-cli" --nodes "$a" cluster 2>/dev/null |
                grep -q 'members 3' && n=$((n + 1))
        done
        [ $n = 3 ] && break
        sleep 0.2
    done
    [ $n = 3 ] || { echo "compare.sh: the 3-node cluster did not form" >&2; exit 1; }
    servers_d=("${servers[0]}" 3-nodes) # the (first) memory-only node
    proto[3-nodes]=peercache; addr[3-nodes]=$nodes
    cpupid[3-nodes]=${spid[pc-n0]},${spid[pc-n1]},${spid[pc-n2]}
    for r in $(seq "$rounds"); do
        for s in "${servers_d[@]}"; do bench d "$s" "$r" --pipeline 1 --ring; done
    done
fi

# ---- the table ---------------------------------------------------------------

# The references of the ratio columns: memcached at its best thread
# count, and Redis.
ref_mc() {
    local best= s m
    for s in "${servers[@]}"; do
        case $s in memcached-*) ;; *) continue ;; esac
        m=$(median "$1" "$s" "$2")
        if [ -z "$best" ] || awk -v m="$m" -v b="$best" -v lo="$3" \
            'BEGIN { exit !(lo ? m < b : m > b) }'; then best=$m; fi
    done
    echo "${best:-nan}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "nan" || b == 0 || a == "nan") print "-"; else printf "%.2f", a / b }'; }
fmt_int() { awk -v x="$1" 'BEGIN { if (x == "nan") print "-"; else printf "%d", x + 0.5 }'; }
fmt_cpu() { awk -v x="$1" 'BEGIN { if (x == "nan") print "-"; else printf "%.2f", x }'; }
fmt_us() { awk -v x="$1" 'BEGIN { if (x == "nan") print "-"; else printf "%.0f", x }'; }

title() {
    case $1 in
    a) echo "a: $conns conn, pipeline 1" ;;
    b) echo "b: $conns conn, pipeline 16" ;;
    c) echo "c: open loop $rate/s" ;;
    d) echo "d: ring client" ;;
    esac
}

echo
mode="per machine (unpinned)"
[ $pinned = 1 ] && mode="per core (servers on CPU 0, single-threaded; generator on CPU 1)"
echo "$mode"
printf '%-26s %-17s %10s %9s %9s %9s %9s %7s %7s %7s %7s\n' workload server "ops/s" "p50 us" \
    "p99 us" "p99.9 us" "cpu s/Mop" "/ mc" "/ redis" "cpu mc" "cpu rd"
printf '%s\n' "-----------------------------------------------------------------------------------------------------------------------"
json_rows=()
for w in a b c d; do
    has $w || continue
    list=("${servers[@]}")
    [ $w = d ] && list=("${servers_d[@]}")
    # Throughput ratios, except for (c) where every server gets the same
    # rate: there the ratios are of p99 (lower is better).
    key=ops_per_sec; lo=0
    [ $w = c ] && { key=p99_us; lo=1; }
    mc=$(ref_mc "$w" $key $lo)
    rd=nan
    [ $have_redis = 1 ] && [ $w != d ] && rd=$(median "$w" redis-server $key)
    one=nan
    [ $w = d ] && one=$(median d "${servers_d[0]}" ops_per_sec)
    # CPU per operation: the reference's over the row's (higher is better)
    cmc=$(ref_mc "$w" server_cpu_us_per_op 1)
    crd=nan
    [ $have_redis = 1 ] && [ $w != d ] && crd=$(median "$w" redis-server server_cpu_us_per_op)
    for s in "${list[@]}"; do
        ops=$(median "$w" "$s" ops_per_sec)
        p50=$(median "$w" "$s" p50_us)
        p99=$(median "$w" "$s" p99_us)
        p999=$(median "$w" "$s" p999_us)
        errs=$(median "$w" "$s" errors)
        mine=$(median "$w" "$s" $key)
        cpu=$(median "$w" "$s" server_cpu_us_per_op)
        if [ $w = d ]; then
            r1=$(ratio "$ops" "$one"); r2="-"; c1="-"; c2="-"
        else
            r1=$(ratio "$mine" "$mc"); r2=$(ratio "$mine" "$rd")
            c1=$(ratio "$cmc" "$cpu"); c2=$(ratio "$crd" "$cpu")
        fi
        printf '%-26s %-17s %10s %9s %9s %9s %9s %7s %7s %7s %7s\n' "$(title $w)" "$s" \
            "$(fmt_int "$ops")" "$(fmt_us "$p50")" "$(fmt_us "$p99")" "$(fmt_us "$p999")" \
            "$(fmt_cpu "$cpu")" "$r1" "$r2" "$c1" "$c2"
        json_rows+=("{\"workload\": \"$w\", \"server\": \"$s\", \"ops_per_sec\": $ops, \"p50_us\": $p50, \"p99_us\": $p99, \"p999_us\": $p999, \"cpu_s_per_mop\": $cpu, \"errors\": $errs, \"ratio_mc\": \"$r1\", \"ratio_redis\": \"$r2\", \"cpu_ratio_mc\": \"$c1\", \"cpu_ratio_redis\": \"$c2\"}")
    done
done
echo
echo "Medians of $rounds rounds. Ratios: ops/s of the row over memcached's (its best thread"
echo "count) and over redis-server's; for c (same rate for all) of p99, lower is better;"
echo "for d over one node driven by the same ring-aware client. cpu s/Mop: the server's"
echo "CPU-seconds per million operations (user + system, all threads, over the measured"
echo "window; for d the three nodes'); cpu mc / cpu rd: memcached's (its best) and Redis'"
echo "CPU per operation over the row's, higher is better."
errors=$(cut -d' ' -f4- "$runs" | while read -r l; do echo "$l" | field errors; done |
    awk '{ s += $1 } END { print s + 0 }')
[ "$errors" = 0 ] || echo "compare.sh: $errors errors in all runs (see --json)" >&2

if [ -n "$json_out" ]; then
    {
        echo "{\"rounds\": $rounds, \"duration_s\": $duration, \"connections\": $conns, \"keys\": $keys, \"pinned\": $pinned,"
        echo " \"open_loop_rate\": ${rate:-null}, \"medians\": ["
        (IFS=$'\n'; echo "${json_rows[*]}") | sed '$!s/$/,/'
        echo " ], \"runs\": ["
        awk '{ $1 = "{\"workload\": \"" $1 "\", \"server\": \"" $2 "\", \"round\": " $3 ", \"bench\": "; $2 = ""; $3 = ""; print $0 "}" }' "$runs" |
            sed '$!s/$/,/'
        echo "]}"
    } >"$json_out"
fi
