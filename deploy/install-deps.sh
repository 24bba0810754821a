#!/usr/bin/env bash
# Installs everything peercache needs to build, run and test, from
# Debian 12's own packages. Safe to run again: it skips the package
# manager when everything is already there.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libuv1-dev libmsgpack-dev libhiredis-dev libsodium-dev libcmocka-dev
  # --io uring (node/pc_uring.c)
  liburing-dev
  # the operators' HTTP endpoint parses requests with http-parser
  libhttp-parser-dev
  redis-server redis-tools
  # test_sentinel's sentinels; Debian starts its service on 26379, which the tests do not use
  redis-sentinel
  # peercache-bench's memcache protocol is tested against a real one
  # (test_bench_tool skips that part without it)
  memcached
  # clang + its runtime build the libFuzzer targets (optional for users,
  # used by the test command)
  clang libclang-rt-dev
  # the fault-injection suite (tests/chaos/): network namespaces (ip,
  # ss), iptables for loss and partitions, python3 for its checker;
  # test_tcp_rto reads the node's sockets with ss (skips without it)
  iproute2 iptables python3
  # promtool checks the node's /metrics (test_http); the package's own
  # server is stopped and disabled below
  prometheus
  # test_cli_top runs peercache-cli top on a terminal tmux provides
  tmux
  # tests/deploy/check_k8s.py reads the Kubernetes manifests
  python3-yaml
  # tests/integration/test_redis_tools.py talks to peercached --resp with
  # redis-py (and drives redis-tools' redis-cli and redis-benchmark)
  python3-redis
  # tests/integration/test_protocol_doc.py cross-checks its msgpack decoder with it
  python3-msgpack
  # deploy/cluster.sh prometheus waits for the server with it
  curl
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the prometheus package's server (on every address, port
# 9090) where systemd runs; nothing here wants it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled prometheus >/dev/null 2>&1; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
# Debian starts a redis-server service on 6379 (and memcached on 11211)
# when one is installed; the demo and the tests start their own on other
# loopback ports and do not use or need them.
echo "install-deps: done"
