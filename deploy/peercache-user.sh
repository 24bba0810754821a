# Sourced by deploy/install-service.sh and deploy/cluster.sh (not run).
# The unprivileged system user peercache runs every node that root starts.

PEERCACHE_USER=peercache

# pc_ensure_user: creates the system user and its group if missing (root
# only). No home directory and no login shell: it only runs peercached.
pc_ensure_user() {
  getent passwd "$PEERCACHE_USER" >/dev/null && return 0
  local group=(--user-group)
  getent group "$PEERCACHE_USER" >/dev/null && group=(--gid "$PEERCACHE_USER")
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    "${group[@]}" --comment "peercache node" "$PEERCACHE_USER"
  echo "created system user $PEERCACHE_USER" >&2
}
