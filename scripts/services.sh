#!/usr/bin/env bash
# Test services for mailparity: a throwaway PostgreSQL and Redis on 127.0.0.1, on free ports, with
# every file (data, sockets, logs, pids) under ./.services/ of the repository.
#
#   scripts/services.sh start          start them (or reuse the running ones); prints the exports
#   scripts/services.sh stop           stop them
#   scripts/services.sh env            print the exports of the running services
#   scripts/services.sh run CMD...     start, run CMD with the variables below, stop what this call
#                                      started, exit with CMD's exit code
#
# Exported to CMD: MAILPARITY_TEST_POSTGRES_URL (postgresql+psycopg://...) and
# MAILPARITY_TEST_REDIS_URL (redis://127.0.0.1:PORT/0). A variable already set in the environment
# is kept and its service is not started (CI may provide its own servers).
#
# Missing servers are installed from Debian packages (apt-get update once, then apt-get install -y
# postgresql redis-server) when running as root with apt-get; otherwise the service is skipped
# with a message and the tests that need it skip. With CI=true a service that cannot be started
# is an error (exit 1): CI must not pass by skipping.
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` system user (or
# a `mailparity` system user created for it). Auth is trust on 127.0.0.1 only: never expose it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
base="${MAILPARITY_SERVICES_DIR:-$root/.services}"
pg_dir="$base/postgres"
if [ "$(id -u)" = 0 ] && [ -z "${MAILPARITY_SERVICES_DIR:-}" ]; then
  # As root the cluster runs as an unprivileged user, who may not be able to reach a checkout
  # under a private folder (mktemp -d is 0700): keep its files in a per-checkout folder of /tmp.
  pg_dir="/tmp/mailparity-pg-$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
fi
redis_dir="$base/redis"
state="$base/state.env"

log() { printf 'services: %s\n' "$*" >&2; }

is_ci() {
  case "${CI:-}" in "" | 0 | false | False | FALSE | no) return 1 ;; *) return 0 ;; esac
}

free_port() {
  # Ask the kernel for a free port; fall back to probing when python3 is absent.
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    return
  fi
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  return 1
}

pg_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

apt_updated=0
apt_install() {
  # apt_install PACKAGE...: install from Debian packages if we can; never fatal here.
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not found: cannot install $*"
    return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    log "not root: cannot install $* (install them, or set the MAILPARITY_TEST_*_URL variables)"
    return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || { log "apt-get update failed"; return 1; }
    apt_updated=1
  fi
  log "apt-get install -y $*"
  # policy-rc.d-less containers may try to start the packaged services; that is harmless.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || { log "apt-get install $* failed"; return 1; }
}

ensure_installed() {
  local missing=()
  if [ -z "${MAILPARITY_TEST_POSTGRES_URL:-}" ] && ! pg_bindir >/dev/null; then
    missing+=(postgresql)
  fi
  if [ -z "${MAILPARITY_TEST_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
    missing+=(redis-server)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}" || true
  fi
}

# ------------------------------------------------------------------------------ PostgreSQL

pg_user() {
  # The unprivileged account that owns and runs the cluster when we are root.
  if id postgres >/dev/null 2>&1; then
    echo postgres
    return
  fi
  if ! id mailparity >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin mailparity >&2 || return 1
  fi
  echo mailparity
}

as_pg() {
  # as_pg CMD...: run CMD as the cluster's owner (ourselves when not root).
  if [ "$(id -u)" = 0 ]; then
    local user
    user="$(pg_user)"
    if command -v runuser >/dev/null 2>&1; then
      runuser -u "$user" -- "$@"
    else
      su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

pg_running() {
  [ -f "$pg_dir/port" ] || return 1
  local bindir
  bindir="$(pg_bindir)" || return 1
  [ -f "$pg_dir/data/postmaster.pid" ] || return 1
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$(cat "$pg_dir/port")" -t 2 >/dev/null 2>&1
}

pg_start() {
  local bindir port
  bindir="$(pg_bindir)" || { log "PostgreSQL is not installed"; return 1; }
  if pg_running; then
    return 0
  fi
  mkdir -p "$pg_dir/sock"
  if [ "$(id -u)" = 0 ]; then
    local user
    user="$(pg_user)" || { log "cannot find or create an unprivileged user for PostgreSQL"; return 1; }
    chown -R "$user" "$pg_dir"
    chmod 755 "$base"
  fi
  if [ ! -f "$pg_dir/data/PG_VERSION" ]; then
    rm -rf "$pg_dir/data"
    as_pg "$bindir/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 \
      --locale=C >"$pg_dir/initdb.log" 2>&1 || {
      log "initdb failed (see $pg_dir/initdb.log)"
      return 1
    }
  fi
  # A stale pid file of a killed server would make pg_ctl refuse to start.
  if [ -f "$pg_dir/data/postmaster.pid" ]; then
    as_pg "$bindir/pg_ctl" -D "$pg_dir/data" stop -m immediate >/dev/null 2>&1 || true
    rm -f "$pg_dir/data/postmaster.pid"
  fi
  port="$(free_port)"
  # Durability is pointless for test data: trade it for speed.
  if ! as_pg "$bindir/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$pg_dir/sock \
-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null; then
    log "PostgreSQL did not start (see $pg_dir/server.log)"
    return 1
  fi
  echo "$port" >"$pg_dir/port"
  log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

pg_stop() {
  local bindir
  [ -f "$pg_dir/data/postmaster.pid" ] || return 0
  bindir="$(pg_bindir)" || return 0
  as_pg "$bindir/pg_ctl" -D "$pg_dir/data" stop -m fast -w >/dev/null 2>&1 || true
  rm -f "$pg_dir/port"
  log "PostgreSQL stopped"
}

# ------------------------------------------------------------------------------ Redis

redis_running() {
  [ -f "$redis_dir/port" ] && [ -f "$redis_dir/redis.pid" ] || return 1
  kill -0 "$(cat "$redis_dir/redis.pid")" 2>/dev/null || return 1
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p "$(cat "$redis_dir/port")" ping 2>/dev/null)" = PONG ]
  fi
}

redis_start() {
  local port
  command -v redis-server >/dev/null 2>&1 || { log "Redis is not installed"; return 1; }
  if redis_running; then
    return 0
  fi
  mkdir -p "$redis_dir"
  rm -f "$redis_dir/redis.pid"
  port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$redis_dir" --daemonize yes \
    --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" \
    --unixsocket "$redis_dir/redis.sock" --save "" --appendonly no >/dev/null || {
    log "Redis did not start (see $redis_dir/redis.log)"
    return 1
  }
  echo "$port" >"$redis_dir/port"
  for _ in $(seq 1 100); do
    if redis_running; then
      log "Redis on 127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  log "Redis did not answer (see $redis_dir/redis.log)"
  return 1
}

redis_stop() {
  [ -f "$redis_dir/redis.pid" ] || return 0
  local pid
  pid="$(cat "$redis_dir/redis.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$redis_dir/redis.pid" "$redis_dir/port"
  log "Redis stopped"
}

# ------------------------------------------------------------------------------ commands

started_pg=0
started_redis=0
failed=0

do_start() {
  mkdir -p "$base"
  ensure_installed
  if [ -z "${MAILPARITY_TEST_POSTGRES_URL:-}" ]; then
    if pg_running; then
      :
    elif pg_start; then
      started_pg=1
    else
      failed=1
    fi
    if pg_running; then
      export MAILPARITY_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$(cat "$pg_dir/port")/postgres"
    fi
  fi
  if [ -z "${MAILPARITY_TEST_REDIS_URL:-}" ]; then
    if redis_running; then
      :
    elif redis_start; then
      started_redis=1
    else
      failed=1
    fi
    if redis_running; then
      export MAILPARITY_TEST_REDIS_URL="redis://127.0.0.1:$(cat "$redis_dir/port")/0"
    fi
  fi
  {
    [ -n "${MAILPARITY_TEST_POSTGRES_URL:-}" ] \
      && echo "export MAILPARITY_TEST_POSTGRES_URL=${MAILPARITY_TEST_POSTGRES_URL}"
    [ -n "${MAILPARITY_TEST_REDIS_URL:-}" ] \
      && echo "export MAILPARITY_TEST_REDIS_URL=${MAILPARITY_TEST_REDIS_URL}"
    true
  } >"$state"
  if [ "$failed" = 1 ]; then
    if is_ci; then
      log "CI is set and a test service could not be started"
      return 1
    fi
    log "continuing without the missing service(s); the tests that need them will skip"
  fi
  return 0
}

do_stop() {
  pg_stop
  redis_stop
  rm -f "$state"
}

with_lock() {
  # Serialize start/stop between concurrent invocations sharing .services/.
  mkdir -p "$base"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$base/.lock"
    flock -w 120 9 || { log "could not lock $base/.lock"; return 1; }
  fi
  "$@"
  local rc=$?
  if command -v flock >/dev/null 2>&1; then
    flock -u 9
  fi
  return "$rc"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  start)
    with_lock do_start
    cat "$state"
    ;;
  stop)
    with_lock do_stop
    ;;
  env)
    [ -f "$state" ] && cat "$state"
    ;;
  run)
    if [ $# -eq 0 ]; then
      log "usage: $0 run CMD..."
      exit 2
    fi
    stop_ours() {
      # Stop only what this call started: services someone else started keep running.
      if [ "$started_pg" = 1 ]; then with_lock pg_stop; fi
      if [ "$started_redis" = 1 ]; then with_lock redis_stop; fi
      if [ "$started_pg" = 1 ] || [ "$started_redis" = 1 ]; then rm -f "$state"; fi
    }
    if ! with_lock do_start; then
      stop_ours
      exit 1
    fi
    trap 'stop_ours; exit 130' INT TERM
    set +e
    "$@"
    rc=$?
    set -e
    trap - INT TERM
    stop_ours
    exit "$rc"
    ;;
  *)
    echo "usage: $0 {start|stop|env|run CMD...}" >&2
    exit 2
    ;;
esac
