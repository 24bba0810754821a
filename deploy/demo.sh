#!/usr/bin/env bash
# Installs what is needed, builds, starts a local redis-server and one
# peercached in front of it (loopback only), and walks through the basic
# paths with peercache-cli. Everything it starts is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash deploy/install-deps.sh
bash deploy/build.sh build >/dev/null
echo "build: ok (build/)"

bin=$here/build
cli=$bin/client/peercache-cli
run=$(mktemp -d /tmp/peercache-demo.XXXXXX)

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }
wait_for() { # wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.05
  done
}

redis_port=$(pick_port 6390)
node_port=$(pick_port 7400)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$run" >"$run/redis.log" 2>&1 &
pids+=($!)
wait_for 10 redis-cli -p "$redis_port" ping
echo "redis-server: listening on 127.0.0.1:$redis_port"

"$bin/node/peercached" --listen "127.0.0.1:$node_port" --redis "127.0.0.1:$redis_port" \
  --memory 64mb >"$run/node.out" 2>"$run/node.log" &
pids+=($!)
wait_for 10 "$cli" --nodes "127.0.0.1:$node_port" ping
echo "peercached:   listening on 127.0.0.1:$node_port, Redis behind it"
echo

show() { printf '$ %s' "$1"; shift; printf ' %q' "$@"; echo; }
pc() { show peercache-cli "$@"; "$cli" --nodes "127.0.0.1:$node_port" "$@"; echo "  (exit $?)"; }
rc() { show redis-cli "$@"; redis-cli -p "$redis_port" "$@"; }

echo "== write through the cache: the value lands in Redis"
pc set greeting "hello from peercache" --ttl 60000
rc get greeting
echo
echo "== read it back from the node (a cache hit)"
pc get greeting
echo
echo "== a key written straight into Redis is read through on the first miss"
rc set written:by:redis "plain redis string"
pc get written:by:redis
pc stats | grep -E '^(hits|misses|backend_reads) '
echo
echo "== delete through the node: gone from the cache and from Redis"
pc del greeting
set +e
pc get greeting
rc exists greeting
set -e
echo
echo "demo done; logs were in $run (removed on exit)"
