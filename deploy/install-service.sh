#!/usr/bin/env bash
# Installs peercached as a systemd service on this machine (run as root,
# after bash deploy/build.sh). Safe to run again: it replaces the binaries
# and the unit, and keeps an existing config file and key.
#
#   /usr/local/bin/peercached, peercache-cli   the binaries
#   /etc/peercache/                           root:peercache 0750
#   /etc/peercache/peercached.conf            root:peercache 0640 (from the example)
#   /etc/peercache/cluster.key                peercache 0600 (peercache-cli keygen)
#   /etc/systemd/system/peercached.service    the unit (deploy/peercached.service)
#
# It does not enable or start the service; it prints how. CI never runs
# it (it changes the system); see deploy/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=deploy/peercache-user.sh
. "$here/deploy/peercache-user.sh"

build=${PEERCACHE_BUILD:-build}
case $build in /*) ;; *) build=$here/$build ;; esac
etc=/etc/peercache
key=$etc/cluster.key
conf=$etc/peercached.conf
unit=/etc/systemd/system/peercached.service

die() { echo "install-service.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"
for b in node/peercached client/peercache-cli; do
  [ -x "$build/$b" ] || die "no $build/$b (build first: bash deploy/build.sh, or set PEERCACHE_BUILD)"
done

pc_ensure_user

install -d -m 0755 -o root -g root /usr/local/bin
install -m 0755 -o root -g root "$build/node/peercached" /usr/local/bin/peercached
install -m 0755 -o root -g root "$build/client/peercache-cli" /usr/local/bin/peercache-cli
install -d -m 0755 -o root -g root /usr/local/share/doc/peercache
install -m 0644 -o root -g root "$here/deploy/README.md" /usr/local/share/doc/peercache/README.md

# The node reads its config and key but may not change them: the
# directory and config belong to root, readable by the group.
install -d -m 0750 -o root -g "$PEERCACHE_USER" "$etc"
if [ ! -e "$conf" ]; then
  install -m 0640 -o root -g "$PEERCACHE_USER" "$here/deploy/peercached.conf.example" "$conf"
  echo "wrote $conf (from deploy/peercached.conf.example: edit listen, join, redis)"
fi
if [ ! -e "$key" ]; then
  (umask 077 && /usr/local/bin/peercache-cli keygen "$key" >/dev/null) || die "could not write $key"
  echo "wrote $key (copy the same file to every member of the cluster)"
fi
# The node refuses a key file that group or others can read.
chown "$PEERCACHE_USER:$PEERCACHE_USER" "$key"
chmod 0600 "$key"

install -m 0644 -o root -g root "$here/deploy/peercached.service" "$unit"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "installed $unit"
cat <<MSG

Next:
  edit $conf (listen, join, redis; every member uses the same key file)
  systemctl enable --now peercached     start now and at boot
  journalctl -u peercached -f           its log
  systemctl reload peercached           re-read $key (key rotation)
MSG
