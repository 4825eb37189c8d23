#!/usr/bin/env bash
# Test services for mailparity: a throwaway PostgreSQL, Redis and Dovecot (IMAP) on 127.0.0.1, on
# free ports, with every file (data, sockets, logs, pids) under ./.services/ of the repository.
#
#   scripts/services.sh start          start them (or reuse the running ones); prints the exports
#   scripts/services.sh stop           stop them
#   scripts/services.sh env            print the exports of the running services
#   scripts/services.sh run CMD...     start, run CMD with the variables below, stop what this call
#                                      started, exit with CMD's exit code
#
# Exported to CMD: MAILPARITY_TEST_POSTGRES_URL (postgresql+psycopg://...) and
# MAILPARITY_TEST_REDIS_URL (redis://127.0.0.1:PORT/0), and for Dovecot MAILPARITY_TEST_IMAP_HOST,
# MAILPARITY_TEST_IMAP_PORT (cleartext and STARTTLS), MAILPARITY_TEST_IMAPS_PORT (implicit TLS),
# MAILPARITY_TEST_IMAP_PASSWORD (every user name signs in with it; each test uses its own users,
# hence its own empty mailboxes), MAILPARITY_TEST_IMAP_CA (the self-signed certificate) and
# MAILPARITY_TEST_IMAP_MAILDIR (%u: the user). A variable already set in the environment
# is kept and its service is not started (CI may provide its own servers).
#
# Missing servers are installed from Debian packages (apt-get update once, then apt-get install -y
# postgresql redis-server dovecot-imapd) when running as root with apt-get; otherwise the service is skipped
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
imap_dir="$base/dovecot"
if [ "$(id -u)" = 0 ] && [ -z "${MAILPARITY_SERVICES_DIR:-}" ]; then
  # Dovecot's mail processes run as an unprivileged user too: same reasoning as PostgreSQL.
  imap_dir="/tmp/mailparity-dovecot-$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
fi
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
  if [ -z "${MAILPARITY_TEST_IMAP_PORT:-}" ] && ! dovecot_bin >/dev/null; then
    missing+=(dovecot-imapd)
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

stop_pid_file() {
  # stop_pid_file FILE: end the process whose pid FILE holds, waiting up to 5 s for it.
  local pid
  pid="$(cat "$1")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
}

redis_stop() {
  [ -f "$redis_dir/redis.pid" ] || return 0
  stop_pid_file "$redis_dir/redis.pid"
  rm -f "$redis_dir/redis.pid" "$redis_dir/port"
  log "Redis stopped"
}

# ------------------------------------------------------------------------------ Dovecot (IMAP)

dovecot_bin() {
  local bin
  for bin in "$(command -v dovecot 2>/dev/null || true)" /usr/sbin/dovecot; do
    if [ -n "$bin" ] && [ -x "$bin" ]; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}

imap_password() {
  # One random password per started server (every user signs in with it).
  [ -f "$imap_dir/password" ] || (umask 077 && head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$imap_dir/password")
  cat "$imap_dir/password"
}

imap_running() {
  [ -f "$imap_dir/port" ] && [ -f "$imap_dir/run/master.pid" ] || return 1
  kill -0 "$(cat "$imap_dir/run/master.pid")" 2>/dev/null || return 1
  (exec 3<>"/dev/tcp/127.0.0.1/$(cat "$imap_dir/port")") 2>/dev/null
}

imap_start() {
  local bin port sport user group uid gid
  bin="$(dovecot_bin)" || { log "Dovecot is not installed"; return 1; }
  if imap_running; then
    return 0
  fi
  command -v openssl >/dev/null 2>&1 || { log "openssl is needed for Dovecot's certificate"; return 1; }
  if [ "$(id -u)" = 0 ]; then
    user="$(id dovecot >/dev/null 2>&1 && echo dovecot || pg_user)" || {
      log "cannot find or create an unprivileged user for Dovecot"
      return 1
    }
    login_user="$(id dovenull >/dev/null 2>&1 && echo dovenull || echo "$user")"
  else
    user="$(id -un)"
    login_user="$user"
  fi
  uid="$(id -u "$user")"
  gid="$(id -g "$user")"
  group="$(id -gn "$user")"
  rm -rf "$imap_dir"
  mkdir -p "$imap_dir/run" "$imap_dir/state" "$imap_dir/mail"
  if ! openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$imap_dir/key.pem" -out "$imap_dir/cert.pem" >"$imap_dir/openssl.log" 2>&1; then
    log "could not make Dovecot's certificate (see $imap_dir/openssl.log)"
    return 1
  fi
  port="$(free_port)"
  sport="$(free_port)"
  while [ "$sport" = "$port" ]; do sport="$(free_port)"; done
  # Throwaway: any user name signs in with the one password (each test gets fresh mailboxes);
  # cleartext sign-in is allowed because it only listens on 127.0.0.1.
  cat >"$imap_dir/dovecot.conf" <<CONF
instance_name = mailparity-test-$port
base_dir = $imap_dir/run
state_dir = $imap_dir/state
log_path = $imap_dir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <$imap_dir/cert.pem
ssl_key = <$imap_dir/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = $user
default_internal_group = $group
default_login_user = $login_user
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
last_valid_gid = $gid
mail_location = maildir:$imap_dir/mail/%u
mail_max_userip_connections = 200
# New mail is noticed by inotify; where that is unavailable, check every second while IDLE.
mailbox_idle_check_interval = 1 secs
# A refused sign-in answers at once (the default waits 2 s; the tests refuse on purpose).
auth_failure_delay = 0 secs
passdb {
  driver = static
  args = password=$(imap_password)
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$imap_dir/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $sport
    ssl = yes
  }
}
service anvil {
  chroot =
  # No authentication penalty: its growing delay per address would slow every later test.
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
protocol imap {
  mail_max_userip_connections = 200
}
CONF
  chmod 644 "$imap_dir/cert.pem" "$imap_dir/dovecot.conf"
  if [ "$(id -u)" = 0 ]; then
    chown -R "$user:$group" "$imap_dir/mail"
    chmod 755 "$imap_dir"
  fi
  if ! "$bin" -c "$imap_dir/dovecot.conf" >"$imap_dir/start.log" 2>&1; then
    log "Dovecot did not start (see $imap_dir/start.log and $imap_dir/dovecot.log)"
    return 1
  fi
  echo "$port" >"$imap_dir/port"
  echo "$sport" >"$imap_dir/sport"
  for _ in $(seq 1 100); do
    if imap_running; then
      log "Dovecot $("$bin" --version | awk '{print $1}') on 127.0.0.1:$port (IMAPS $sport)"
      return 0
    fi
    sleep 0.1
  done
  log "Dovecot did not answer (see $imap_dir/dovecot.log)"
  return 1
}

imap_stop() {
  [ -f "$imap_dir/run/master.pid" ] || return 0
  stop_pid_file "$imap_dir/run/master.pid"
  rm -f "$imap_dir/port" "$imap_dir/sport"
  log "Dovecot stopped"
}

# ------------------------------------------------------------------------------ commands

started_pg=0
started_redis=0
started_imap=0
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
  if [ -z "${MAILPARITY_TEST_IMAP_PORT:-}" ]; then
    if imap_running; then
      :
    elif imap_start; then
      started_imap=1
    else
      failed=1
    fi
    if imap_running; then
      export MAILPARITY_TEST_IMAP_HOST=127.0.0.1
      export MAILPARITY_TEST_IMAP_PORT="$(cat "$imap_dir/port")"
      export MAILPARITY_TEST_IMAPS_PORT="$(cat "$imap_dir/sport")"
      export MAILPARITY_TEST_IMAP_PASSWORD="$(imap_password)"
      export MAILPARITY_TEST_IMAP_CA="$imap_dir/cert.pem"
      export MAILPARITY_TEST_IMAP_MAILDIR="$imap_dir/mail/%u"
    fi
  fi
  {
    [ -n "${MAILPARITY_TEST_POSTGRES_URL:-}" ] \
      && echo "export MAILPARITY_TEST_POSTGRES_URL=${MAILPARITY_TEST_POSTGRES_URL}"
    [ -n "${MAILPARITY_TEST_REDIS_URL:-}" ] \
      && echo "export MAILPARITY_TEST_REDIS_URL=${MAILPARITY_TEST_REDIS_URL}"
    if [ -n "${MAILPARITY_TEST_IMAP_PORT:-}" ]; then
      local name
      for name in HOST PORT PASSWORD CA MAILDIR; do
        eval "[ -n \"\${MAILPARITY_TEST_IMAP_$name:-}\" ] && echo \"export MAILPARITY_TEST_IMAP_$name=\${MAILPARITY_TEST_IMAP_$name}\""
      done
      [ -n "${MAILPARITY_TEST_IMAPS_PORT:-}" ] \
        && echo "export MAILPARITY_TEST_IMAPS_PORT=${MAILPARITY_TEST_IMAPS_PORT}"
    fi
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
  imap_stop
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
      if [ "$started_imap" = 1 ]; then with_lock imap_stop; fi
      if [ "$started_pg" = 1 ] || [ "$started_redis" = 1 ] || [ "$started_imap" = 1 ]; then
        rm -f "$state"
      fi
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
