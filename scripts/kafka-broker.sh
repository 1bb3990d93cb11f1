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
# 19092), GMV_BROKER_STORAGE (memory, the default, or sqlite: a log on disk,
# which needs GMV_TANSU_FEATURES=dynostore,libsql at install; docs/faults.md
# says how it fares across a restart). State (log, pid file, tansu.db) lives
# in ${TMPDIR:-/tmp}/gmv-tansu-PORT/. The memory store never frees: restart
# the broker to empty it.
set -euo pipefail

TANSU_VERSION=0.6.0
GMV_TANSU_ROOT=${GMV_TANSU_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/gmv-stream/tansu}
TANSU=$GMV_TANSU_ROOT/bin/tansu
START_TIMEOUT_S=10
STOP_TIMEOUT_S=10

die() { echo "kafka-broker: $*" >&2; exit 1; }
log() { echo "kafka-broker: $*" >&2; }

usage() {
  sed -n '2,19s/^# \{0,1\}//p' "$0" >&2
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
    *) die "GMV_BROKER_STORAGE must be memory or sqlite, not ${GMV_BROKER_STORAGE}" ;;
  esac
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
  port_open && die "port $PORT is already in use by another process"
  mkdir -p "$STATE_DIR"
  rm -f "$PID_FILE"
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
