#!/usr/bin/env bash
# Local Kafka-protocol broker (tansu 0.6.0) for the integration tests, fault
# tests and benchmarks: no Docker or JVM needed.
#
#   scripts/kafka-broker.sh install        build tansu once into a cache
#   scripts/kafka-broker.sh start  [PORT]  start (idempotent); prints the
#                                          bootstrap address, nothing else
#   scripts/kafka-broker.sh stop   [PORT]  stop and wait for exit
#   scripts/kafka-broker.sh status [PORT]  exit 0 if running, 1 if not
#
#   KAFKA_BROKERS=$(scripts/kafka-broker.sh start)
#
# Environment: GMV_TANSU_ROOT (install root, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/gmv-stream/tansu), GMV_BROKER_PORT (default
# 19092), GMV_BROKER_STORAGE: memory (the default), sqlite (a log on disk;
# needs GMV_TANSU_FEATURES=dynostore,libsql at install) or postgres (a
# PostgreSQL cluster of the broker's own on port PORT+1, started and stopped
# with it; needs GMV_TANSU_FEATURES=dynostore,postgres at install, the
# postgresql package, and GMV_TANSU_PG_SCHEMA: tansu's PostgreSQL schema,
# etc/initdb.d/010-schema.sql in its repository at v0.6.0). docs/faults.md
# says how each fares across a restart. State (log, pid file, tansu.db,
# pgdata) lives in ${TMPDIR:-/tmp}/gmv-tansu-PORT/. The memory store never
# frees: restart the broker to empty it.
set -euo pipefail

TANSU_VERSION=0.6.0
GMV_TANSU_ROOT=${GMV_TANSU_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/gmv-stream/tansu}
TANSU=$GMV_TANSU_ROOT/bin/tansu
START_TIMEOUT_S=10
STOP_TIMEOUT_S=10

die() { echo "kafka-broker: $*" >&2; exit 1; }
log() { echo "kafka-broker: $*" >&2; }

usage() {
  sed -n '2,23s/^# \{0,1\}//p' "$0" >&2
  exit "${1:-2}"
}

# Sets PORT, STATE_DIR, PID_FILE, LOG_FILE, ADDR, STORAGE.
setup_port() {
  PORT=${1:-${GMV_BROKER_PORT:-19092}}
  [[ $PORT =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "bad port: $PORT"
  STATE_DIR=${TMPDIR:-/tmp}/gmv-tansu-$PORT
  PID_FILE=$STATE_DIR/tansu.pid
  LOG_FILE=$STATE_DIR/tansu.log
  ADDR=127.0.0.1:$PORT
  case ${GMV_BROKER_STORAGE:-memory} in
    memory) STORAGE=memory://tansu/ ;;
    # tansu reads the path as relative, so it is opened from STATE_DIR.
    sqlite) STORAGE=sqlite://tansu.db ;;
    postgres)
      PG_PORT=$((PORT + 1))
      PG_DATA=$STATE_DIR/pgdata
      STORAGE=postgres://postgres:postgres@127.0.0.1:$PG_PORT/postgres
      ;;
    *) die "GMV_BROKER_STORAGE must be memory, sqlite or postgres, not ${GMV_BROKER_STORAGE}" ;;
  esac
}

# PostgreSQL refuses to run as root: as root, its commands run as the
# postgres user.
as_postgres() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Starts the broker's own PostgreSQL cluster (made, with tansu's schema, on
# first use; kept across broker restarts: that is the point of it).
pg_start() {
  local bin
  bin=$(pg_bin)
  local log=$STATE_DIR/postgres.log
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    local schema=${GMV_TANSU_PG_SCHEMA:-}
    [[ -f $schema ]] || die "GMV_BROKER_STORAGE=postgres needs GMV_TANSU_PG_SCHEMA: tansu's PostgreSQL schema (etc/initdb.d/010-schema.sql in tansu's repository at v$TANSU_VERSION)"
    mkdir -p "$PG_DATA"
    chmod 700 "$PG_DATA"
    echo postgres >"$STATE_DIR/pg.password"
    if ((EUID == 0)); then
      # The postgres user must reach its directory.
      chmod o+x "$STATE_DIR" "$(dirname "$STATE_DIR")"
      chown postgres "$PG_DATA" "$STATE_DIR/pg.password"
      touch "$log" && chown postgres "$log"
    fi
    as_postgres "$bin/initdb" -D "$PG_DATA" -U postgres --auth=scram-sha-256 \
      --pwfile="$STATE_DIR/pg.password" >>"$log" 2>&1 || die "initdb failed; log: $log"
    pg_run "$bin" "$log"
    PGPASSWORD=postgres "$bin/psql" -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -p "$PG_PORT" \
      -U postgres -d postgres -f "$schema" >>"$log" 2>&1 || die "applying $schema failed; log: $log"
  elif ! as_postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    pg_run "$bin" "$log"
  fi
}

# PostgreSQL's programs: GMV_PG_BIN, else the newest Debian install.
pg_bin() {
  local bin=${GMV_PG_BIN:-}
  if [[ -z $bin ]]; then
    bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  fi
  [[ -x $bin/pg_ctl ]] || die "no PostgreSQL found (install the postgresql package, or set GMV_PG_BIN)"
  echo "$bin"
}

pg_run() {
  as_postgres "$1/pg_ctl" -D "$PG_DATA" -l "$2" -w -o \
    "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1" start >/dev/null 2>&1 ||
    die "PostgreSQL did not start on 127.0.0.1:$PG_PORT; log: $2"
}

pg_stop() {
  [[ -f $PG_DATA/postmaster.pid ]] || return 0
  local bin
  bin=$(pg_bin)
  as_postgres "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Alive and not a zombie (an init that does not reap would leave one).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# Prints the pid of our broker for PORT if it is alive (and really tansu).
broker_pid() {
  local pid
  [[ -f $PID_FILE ]] || return 1
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q tansu || return 1
  echo "$pid"
}

# The memory store (dynostore) is all the tests need; add libsql for the
# sqlite store: GMV_TANSU_FEATURES=dynostore,libsql (a longer build).
TANSU_FEATURES=${GMV_TANSU_FEATURES:-dynostore}

# Whether the cached tansu was built with every feature in $1 (cargo records
# each install's features beside the binary).
installed_with_features() {
  [[ -x $TANSU ]] || return 1
  local feature
  for feature in ${1//,/ }; do
    grep -q "\"tansu $TANSU_VERSION [^}]*\"$feature\"" "$GMV_TANSU_ROOT/.crates2.json" 2>/dev/null || return 1
  done
}

cmd_install() {
  if installed_with_features "$TANSU_FEATURES"; then
    log "tansu already installed: $TANSU"
    return 0
  fi
  command -v cargo >/dev/null || die "cargo not found"
  log "installing tansu $TANSU_VERSION into $GMV_TANSU_ROOT (takes several minutes)"
  cargo install tansu --version "$TANSU_VERSION" --locked --force \
    --features "$TANSU_FEATURES" --root "$GMV_TANSU_ROOT" >&2
  [[ -x $TANSU ]] || die "install finished but $TANSU is missing"
}

cmd_start() {
  setup_port "$@"
  local pid
  if pid=$(broker_pid); then
    port_open || die "broker pid $pid is running but $ADDR does not accept connections; see $LOG_FILE"
    echo "$ADDR"
    return 0
  fi
  [[ -x $TANSU ]] || die "tansu not installed at $TANSU; run: $0 install"
  if [[ $STORAGE == sqlite* ]] && ! installed_with_features libsql; then
    die "this tansu has no sqlite store; run: GMV_TANSU_FEATURES=dynostore,libsql $0 install"
  fi
  if [[ $STORAGE == postgres* ]] && ! installed_with_features postgres; then
    die "this tansu has no postgres store; run: GMV_TANSU_FEATURES=dynostore,postgres $0 install"
  fi
  port_open && die "port $PORT is already in use by another process"
  mkdir -p "$STATE_DIR"
  rm -f "$PID_FILE"
  [[ $STORAGE == postgres* ]] && pg_start
  # stdout/stderr must not inherit ours: callers use $(... start).
  (cd "$STATE_DIR" && exec nohup "$TANSU" broker \
    --listener-url "tcp://$ADDR" \
    --advertised-listener-url "tcp://$ADDR" \
    --storage-engine "$STORAGE" \
    >>"$LOG_FILE" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until port_open; do
    if ! alive "$pid"; then
      rm -f "$PID_FILE"
      tail -n 20 "$LOG_FILE" >&2 || true
      die "tansu exited during startup; log: $LOG_FILE"
    fi
    if ((SECONDS >= deadline)); then
      kill "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      tail -n 20 "$LOG_FILE" >&2 || true
      die "tansu did not accept connections on $ADDR within ${START_TIMEOUT_S}s; log: $LOG_FILE"
    fi
    sleep 0.05
  done
  log "tansu pid $pid listening on $ADDR, storage $STORAGE (log: $LOG_FILE)"
  echo "$ADDR"
}

cmd_stop() {
  setup_port "$@"
  local pid
  if ! pid=$(broker_pid); then
    rm -f "$PID_FILE"
    [[ $STORAGE == postgres* ]] && pg_stop
    log "not running on $ADDR"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT_S))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "pid $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
      deadline=$((SECONDS + STOP_TIMEOUT_S))
    fi
    sleep 0.05
  done
  rm -f "$PID_FILE"
  [[ $STORAGE == postgres* ]] && pg_stop
  log "stopped pid $pid on $ADDR"
}

cmd_status() {
  setup_port "$@"
  local pid
  if pid=$(broker_pid) && port_open; then
    echo "running: pid $pid on $ADDR (log: $LOG_FILE)"
  else
    echo "not running on $ADDR"
    return 1
  fi
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
  install) cmd_install ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
