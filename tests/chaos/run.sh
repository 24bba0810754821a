#!/usr/bin/env bash
# tests/chaos/run.sh -- the fault-injection ("Jepsen-style") suite
# (tests/chaos/README.md says what it does, checks and why).
#
#   tests/chaos/run.sh [--short] [--build DIR] [--out DIR] [--threads N] [SCENARIO...|all]
#
# As root. Each scenario gets a fresh world in network namespaces pcx-*
# (redis-server in pcx-r, nodes n1..n5 in pcx-n1..pcx-n5, the clients in
# pcx-c, all joined by a bridge in pcx-br, addresses 10.99.0.0/24), runs
# the load of pc_chaos_load through one fault, then tests/chaos/check.py
# over the history, Redis' append-only file and the node logs. Exits 0
# only if every scenario it ran passed. Nothing is installed, and nothing
# is put in the root namespace; whatever it started is killed and its
# namespaces deleted on exit, whatever the exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

ALL_SCENARIOS=(kill9 stop partition loss redis_kill redis_stop cutoff)

usage() {
  cat <<EOF
Usage: $0 [options] [SCENARIO...|all]    (as root; default: all)
Scenarios: ${ALL_SCENARIOS[*]}
Options:
  --short        scaled-down timeline (a smoke run: about a third as long)
  --build DIR    build tree with node/peercached, client/peercache-cli and
                 tests/pc_chaos_load (default: $root/build/ci)
  --out DIR      where each scenario's run directory goes
                 (default: /tmp/pcx-chaos/<date-time>)
  --threads N    client threads of the load (default 10)
  --stale-bound-ms MS, --heal-bound-ms MS, --quiesce-ms MS
                 passed on (defaults: 10000, 3000, 10000; see README.md)
  --targets-report-only
                 report missed throughput / recovery targets (issue 15
                 req. 3) without failing on them: what CI runs, on a
                 shared machine where speed is measured, not asserted
EOF
}

short=0
build=$root/build/ci
out=
threads=10
stale_bound_ms=10000
heal_bound_ms=3000
quiesce_ms=10000
targets_flag=
scenarios=()
while [ $# -gt 0 ]; do
  case $1 in
    --short) short=1 ;;
    --build) build=$2; shift ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    --stale-bound-ms) stale_bound_ms=$2; shift ;;
    --heal-bound-ms) heal_bound_ms=$2; shift ;;
    --quiesce-ms) quiesce_ms=$2; shift ;;
    --targets-report-only) targets_flag=--targets-report-only ;;
    -h|--help) usage; exit 0 ;;
    all) scenarios+=("${ALL_SCENARIOS[@]}") ;;
    -*) echo "chaos: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      ok=0
      for s in "${ALL_SCENARIOS[@]}"; do [ "$s" = "$1" ] && ok=1; done
      if [ $ok = 0 ]; then echo "chaos: unknown scenario $1" >&2; usage >&2; exit 2; fi
      scenarios+=("$1") ;;
  esac
  shift
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${ALL_SCENARIOS[@]}")

# ---- refuse clearly -------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "chaos: must run as root (network namespaces, iptables)" >&2
  exit 2
fi
for t in ip iptables ss redis-server redis-cli python3; do
  if ! command -v "$t" >/dev/null 2>&1; then
    echo "chaos: '$t' not found (deploy/install-deps.sh installs what this needs)" >&2
    exit 2
  fi
done
PEERCACHED=$build/node/peercached
CLI=$build/client/peercache-cli
LOAD=$build/tests/pc_chaos_load
for b in "$PEERCACHED" "$CLI" "$LOAD"; do
  if [ ! -x "$b" ]; then
    echo "chaos: $b not built (bash deploy/build.sh $build)" >&2
    exit 2
  fi
done
# Default timings and settings: nothing from the environment. The C
# locale: $EPOCHREALTIME's decimal point is a '.'.
for v in ${!PEERCACHE_@}; do unset "$v"; done
export LC_ALL=C

# ---- timeline (seconds) ---------------------------------------------------
if [ $short = 1 ]; then
  PRE=3; POST=6
  declare -A FAULT_S=([kill9]=4 [stop]=4 [partition]=8 [loss]=10 [redis_kill]=4 [redis_stop]=4 [cutoff]=8)
else
  PRE=10; POST=15
  declare -A FAULT_S=([kill9]=10 [stop]=10 [partition]=20 [loss]=60 [redis_kill]=10 [redis_stop]=10 [cutoff]=30)
fi

NET=10.99.0
REDIS=$NET.10:6379
NODES=(1 2 3 4 5)
NODE_LIST=$(printf "$NET.%s:7400," "${NODES[@]}"); NODE_LIST=${NODE_LIST%,}

now_ns() { local t=$EPOCHREALTIME; echo "${t/./}000"; }   # µs resolution, as ns
now_ms() { local t=$EPOCHREALTIME; t=${t/./}; echo $((t / 1000)); }
log() { printf '%s chaos: %s\n' "$(date -u +%H:%M:%S.%3N)" "$*" >&2; }
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

# ---- processes ------------------------------------------------------------
declare -A PIDS=()   # name -> pid of every process this run started

# kill_tree PID: PID and its descendants (by parent id, children first
# found, so nothing is reparented out of reach).
kill_tree() {
  local c
  kill -STOP "$1" 2>/dev/null || true
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$c"; done
  kill -KILL "$1" 2>/dev/null || true
  kill -CONT "$1" 2>/dev/null || true
}

kill_started() {
  local name pid
  for name in "${!PIDS[@]}"; do
    pid=${PIDS[$name]}
    kill_tree "$pid"
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
  done
}

# Deletes every pcx-* namespace, after killing what runs inside (only this
# suite puts processes there: leftovers of an aborted run, or this one's).
net_down() {
  local n p
  for n in $(ip netns list 2>/dev/null | awk '$1 ~ /^pcx-/ {print $1}'); do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
}

cleanup() {
  set +e
  kill_started
  net_down
  [ "$BASHPID" != "$$" ] || rm -f "$LOCK"
}

# The pids of a running suite (this shell and its scenario's subshell), so
# that a run can end what an aborted one (killed with -9) left running.
LOCK=/run/pcx-chaos.pids
kill_previous() {
  local p
  [ -f "$LOCK" ] || return 0
  for p in $(cat "$LOCK"); do
    [ "$p" != "$$" ] || continue
    if tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q 'chaos/run\.sh'; then
      log "ending an earlier run's process $p"
      kill_tree "$p"
    fi
  done
  rm -f "$LOCK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the network ----------------------------------------------------------
# pcx-br holds the bridge; every other namespace has one veth (eth0) whose
# peer is a port of that bridge. Nothing touches the root namespace.
net_up() {
  ip netns add pcx-br
  ip -n pcx-br link set lo up
  ip -n pcx-br link add br0 type bridge
  ip -n pcx-br link set br0 up
  local spec name addr
  for spec in r:10 c:20 n1:1 n2:2 n3:3 n4:4 n5:5; do
    name=${spec%%:*}; addr=$NET.${spec##*:}
    ip netns add "pcx-$name"
    ip -n pcx-br link add "$name" type veth peer name eth0 netns "pcx-$name"
    ip -n pcx-br link set "$name" master br0 up
    ip -n "pcx-$name" link set lo up
    ip -n "pcx-$name" addr add "$addr/24" dev eth0
    ip -n "pcx-$name" link set eth0 up
  done
}

# poll SECONDS WHAT CMD...: runs CMD until it succeeds, at most SECONDS.
poll() {
  local end=$(( $(now_ms) + $1 * 1000 )) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(now_ms)" -gt "$end" ]; then
      log "timed out waiting for $what"
      return 1
    fi
    sleep 0.05
  done
}

redis_cli() { in_ns pcx-r redis-cli -h "$NET.10" -p 6379 "$@"; }
redis_up() { [ "$(redis_cli ping 2>/dev/null)" = PONG ]; }

start_redis() {
  ip netns exec pcx-r redis-server --bind "$NET.10" --port 6379 --protected-mode no \
    --appendonly yes --appendfsync always --save '' --dir "$RUN/redis" \
    --auto-aof-rewrite-percentage 0 --aof-timestamp-enabled yes \
    --logfile "$RUN/redis.log" --daemonize no >/dev/null 2>&1 &
  PIDS[redis]=$!
  poll 20 "redis-server" redis_up
}

# start_node I [JOIN]. Started with `ip netns exec` itself (which execs),
# not through a function, so that $! is the node's own pid.
start_node() {
  local i=$1 join=${2:-}
  local args=(--name "n$i" --listen "$NET.$i:7400" --redis "$REDIS" --cluster-key "$RUN/cluster.key")
  [ -z "$join" ] || args+=(--join "$join")
  ip netns exec "pcx-n$i" "$PEERCACHED" "${args[@]}" >>"$RUN/n$i.log" 2>&1 &
  PIDS[n$i]=$!
  poll 20 "n$i listening" in_ns pcx-c "$CLI" --timeout 500 --nodes "$NET.$i:7400" ping
}

event() { echo "$1 ${2:-$(now_ns)}" >>"$RUN/events"; }

# Every node answers CLUSTER with the same ring fingerprint and all five
# members alive: pc_chaos_load --watch-ring polls that every 20 ms (in one
# process, so the busy machine does not slow the polling down) and prints
# the milliseconds since $1 (ns), or "timeout". Why it waited: heal.log.
measure_heal() {
  in_ns pcx-c "$LOAD" --watch-ring --nodes "$NODE_LIST" --expect ${#NODES[@]} \
    --since-ns "$1" --max-ms 120000 >"$RUN/heal_ms" 2>"$RUN/heal.log" || true
}

# Bytes a node still has queued to Redis (a dropped connection's unsent
# data is retransmitted by the kernel until it is acknowledged or given up).
redis_sendq() {
  local i total=0 q
  for i in "${NODES[@]}"; do
    q=$(in_ns "pcx-n$i" ss -tnH state all dst "$NET.10" 2>/dev/null | awk '{s += $3} END {print s + 0}')
    total=$((total + q))
  done
  echo "$total"
}
sendq_empty() { [ "$(redis_sendq)" -eq 0 ]; }

sleep_until() { # ns
  local d=$(( ($1 - $(now_ns)) / 1000 ))
  [ "$d" -le 0 ] || sleep "$(printf '%d.%06d' $((d / 1000000)) $((d % 1000000)))"
}

# ---- faults: begin_X / end_X ------------------------------------------------
VICTIM=3
begin_kill9() { kill -KILL "${PIDS[n$VICTIM]}"; wait "${PIDS[n$VICTIM]}" 2>/dev/null || true; unset "PIDS[n$VICTIM]"; }
end_kill9() { start_node "$VICTIM" "$NET.1:7400,$NET.2:7400"; }
begin_stop() { kill -STOP "${PIDS[n$VICTIM]}"; }
end_stop() { kill -CONT "${PIDS[n$VICTIM]}"; }
SIDE_A=(1 2); SIDE_B=(3 4 5)
begin_partition() {
  local a b
  for a in "${SIDE_A[@]}"; do
    for b in "${SIDE_B[@]}"; do
      in_ns "pcx-n$a" iptables -A INPUT -s "$NET.$b" -j DROP
      in_ns "pcx-n$b" iptables -A INPUT -s "$NET.$a" -j DROP
    done
  done
}
end_partition() { local i; for i in "${NODES[@]}"; do in_ns "pcx-n$i" iptables -F INPUT; done; }
begin_loss() {
  local i
  for i in "${NODES[@]}"; do
    in_ns "pcx-n$i" iptables -A INPUT -m statistic --mode random --probability 0.1 -j DROP
  done
}
end_loss() { end_partition; }
begin_redis_kill() { kill -KILL "${PIDS[redis]}"; wait "${PIDS[redis]}" 2>/dev/null || true; unset "PIDS[redis]"; }
end_redis_kill() { start_redis; }
begin_redis_stop() { kill -STOP "${PIDS[redis]}"; }
end_redis_stop() { kill -CONT "${PIDS[redis]}"; }
begin_cutoff() {
  in_ns pcx-r iptables -A INPUT -s "$NET.$VICTIM" -j DROP
  in_ns "pcx-n$VICTIM" iptables -A INPUT -s "$NET.10" -j DROP
}
end_cutoff() { in_ns pcx-r iptables -F INPUT; in_ns "pcx-n$VICTIM" iptables -F INPUT; }

# The checker's arguments for a scenario: who may be declared dead, and
# issue 15's targets (requirement 3, README.md): throughput with a node
# stopped and at 10% loss, and errors ending within 1 s of Redis' return.
check_args() {
  case $1 in
    kill9) echo "--victim n$VICTIM" ;;
    stop) echo "--victim n$VICTIM --tput-floor 0.7" ;;
    partition) echo "--partition n1,n2/n3,n4,n5" ;;
    loss) echo "--tput-floor 0.5" ;;
    redis_kill|redis_stop) echo "--error-tail-ms 1000" ;;
    *) echo "" ;;
  esac
}

# ---- one scenario -----------------------------------------------------------
run_scenario() {
  local sc=$1 fault_s=${FAULT_S[$1]}
  RUN=$out/$sc
  rm -rf "$RUN"
  mkdir -p "$RUN/redis"
  : >"$RUN/events"
  log "$sc: setting up ($RUN)"
  net_down
  net_up
  "$CLI" keygen "$RUN/cluster.key" >/dev/null
  start_redis
  start_node 1
  local i
  for i in 2 3 4 5; do start_node "$i" "$NET.1:7400"; done
  if ! in_ns pcx-c "$LOAD" --watch-ring --nodes "$NODE_LIST" --expect ${#NODES[@]} \
      --max-ms 60000 >/dev/null 2>"$RUN/ready.log"; then
    log "$sc: no ring of ${#NODES[@]} nodes within 60 s (ready.log)"
    return 1
  fi
  event cluster_ready

  local dur_ms=$(( (PRE + fault_s + POST) * 1000 ))
  local t0
  t0=$(now_ns)
  event load_start "$t0"
  ip netns exec pcx-c "$LOAD" --nodes "$NODE_LIST" --out "$RUN/history.tsv" --threads "$threads" \
    --duration-ms "$dur_ms" --quiesce-ms "$quiesce_ms" >"$RUN/load.log" 2>&1 &
  PIDS[load]=$!
  log "$sc: load for $((dur_ms / 1000)) s, fault at +$PRE s for $fault_s s"

  sleep_until $((t0 + PRE * 1000000000))
  event fault_start
  "begin_$sc"
  log "$sc: fault on"
  sleep_until $((t0 + (PRE + fault_s) * 1000000000))
  local tend
  tend=$(now_ns)
  event fault_end "$tend"
  "end_$sc"
  event fault_healed
  log "$sc: fault off"
  measure_heal "$tend" &
  PIDS[heal]=$!

  wait "${PIDS[load]}" || { log "$sc: pc_chaos_load failed (load.log)"; unset "PIDS[load]"; return 1; }
  unset "PIDS[load]"
  event load_end "$(awk '/load end/ {print $4}' "$RUN/load.log")"
  wait "${PIDS[heal]}" || true
  unset "PIDS[heal]"

  # Whatever a node still had queued to Redis either lands or is given up
  # on by the kernel (after a minute or two): wait for that, so that Redis'
  # final state and its log are final.
  local td
  td=$(now_ms)
  if poll 200 "nodes' queued bytes to Redis" sendq_empty; then
    echo $(( $(now_ms) - td )) >"$RUN/drain_ms"
  else
    echo "timeout $(redis_sendq)" >"$RUN/drain_ms"
  fi
  local keys=()
  for ((i = 0; i < 200; i++)); do keys+=("$(printf 'chaos:%03d' "$i")"); done
  redis_cli --raw MGET "${keys[@]}" | paste <(printf '%s\n' "${keys[@]}") - >"$RUN/redis_final.tsv"
  # Every key from every node once more, now that nothing can still land
  # in Redis: a difference that lasts (history_final.tsv, qget only).
  in_ns pcx-c "$LOAD" --nodes "$NODE_LIST" --out "$RUN/history_final.tsv" --threads 1 \
    --duration-ms 0 --quiesce-ms 0 >"$RUN/load_final.log" 2>&1 || log "$sc: final reads failed (load_final.log)"
  for i in "${NODES[@]}"; do
    in_ns pcx-c "$CLI" --timeout 2000 --nodes "$NET.$i:7400" stats >"$RUN/n$i.stats" 2>&1 || true
  done
  event end
  kill_started
  net_down

  python3 "$here/check.py" --run "$RUN" --scenario "$sc" --stale-bound-ms "$stale_bound_ms" \
    --heal-bound-ms "$heal_bound_ms" $(check_args "$sc") $targets_flag --row "$RUN/row.txt" >"$RUN/check.txt" 2>&1
}

# All of it in a function, read whole before it runs: editing this file
# while it runs cannot change what a running suite does.
main() {
  [ -n "$out" ] || out=/tmp/pcx-chaos/$(date -u +%Y%m%d-%H%M%S)
  mkdir -p "$out"
  # Absolute: the processes of a scenario start in other directories
  # (redis-server's --dir, the nodes' files) and must find it.
  out=$(cd "$out" && pwd)
  log "run directory $out"
  kill_previous   # leftovers of an aborted run: its shells,
  net_down        # then whatever runs in pcx-* namespaces
  echo "$$" >"$LOCK"

  failed=0
  rows=()
  for sc in "${scenarios[@]}"; do
    t_sc=$(now_ms)
    # Each scenario in a subshell of its own, so that `set -e` holds inside
    # it (it would not in a function called from an `if`); its EXIT trap
    # kills what it started. Waiting in the background keeps this shell
    # answering INT/TERM at once (its trap kills the subshell's tree).
    ( trap cleanup EXIT; run_scenario "$sc" ) &
    PIDS[scenario]=$!
    echo "$$ ${PIDS[scenario]}" >"$LOCK"
    rc=0
    wait "${PIDS[scenario]}" || rc=$?
    unset "PIDS[scenario]"
    if [ $rc = 0 ]; then status=pass; else status=FAIL; failed=1; fi
    secs=$(( ($(now_ms) - t_sc) / 1000 ))
    log "$sc: $status in $secs s (details: $out/$sc/check.txt)"
    row=$(cat "$out/$sc/row.txt" 2>/dev/null || echo "$sc  (no result: see $out/$sc)")
    rows+=("$row  ${secs}s")
    sed 's/^/    /' "$out/$sc/check.txt" >&2 2>/dev/null || true
  done

  python3 "$here/check.py" --header
  printf '%s\n' "${rows[@]}"
  if [ $failed = 0 ]; then echo "chaos: all scenarios passed"; else echo "chaos: violations found (see above)"; fi
  return $failed
}

main; exit $?   # one line: read before main runs
