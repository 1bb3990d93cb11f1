#!/usr/bin/env bash
# Kafka end-to-end benchmark against a local tansu broker (scripts/kafka-broker.sh).
#
# Phase "throughput": fresh broker; preload BENCH_EVENTS records with
#   `gmv generate --kafka --rate 0` (produce rate printed), then drain them with
#   `gmv run --kafka --exit-when-idle 3s`. Prints events/s (from the first
#   partition assignment to the end of the busy period, so consumer-group join
#   and the idle wait are excluded; the mid-run rate and the `done` log line's
#   figure are printed too), CPU time (user+sys), peak RSS, per-thread CPU split,
#   broker CPU over the same run, checkpoint directory size and merchants.
# Phase "latency": fresh broker; start `gmv run --kafka` first, wait until every
#   member logged `assigned`, then `gmv generate --kafka --rate BENCH_LATENCY_RATE`
#   for BENCH_LATENCY_EVENTS records; prints the achieved produce rate and the
#   report's latency_ms (Kafka CreateTime -> first snapshot published with it).
#
#   scripts/bench-kafka.sh                                # both phases, defaults
#   BENCH_EVENTS=2000000 BENCH_PHASES=throughput scripts/bench-kafka.sh
#   BENCH_COMPARE_CHECKPOINTS=1 scripts/bench-kafka.sh    # checkpoints dir vs topic vs off
#
# Environment (defaults):
#   BENCH_EVENTS=10000000          records preloaded for the throughput phase
#   BENCH_LATENCY_EVENTS=7680000   records produced in the latency phase (256000*30)
#   BENCH_LATENCY_RATE=256000      produce rate in the latency phase, records/s
#   BENCH_PHASES=throughput,latency
#   BENCH_LATENCY_IDLE=10s         --exit-when-idle of the latency run (see below)
#   BENCH_CHECKPOINTS=on           on: a checkpoint directory; topic: a changelog
#                                  topic (kafka.checkpoint.store = "topic");
#                                  off: GMV__KAFKA__CHECKPOINT__INTERVAL=1h
#   BENCH_COMPARE_CHECKPOINTS=0    1: drain the preloaded topic three times (on,
#                                  topic, off; separate groups, same broker)
#   BENCH_WORKERS=0                gmv run --workers (0 = one per core)
#   BENCH_PUBLISH_INTERVAL=        gmv run --publish-interval (empty = config)
#   BENCH_SEED=11                  generate --seed
#   BENCH_BROKER_PORT=19392        dedicated tansu port (stopped on exit)
#   BENCH_OUT=target/bench-kafka   work files: logs, reports, checkpoints
#   BENCH_NO_BUILD=0               1: use target/release/gmv as it is
#   BENCH_KEEP_CHECKPOINTS=0       1: keep checkpoint dirs (0: deleted after du)
# GMV_CONFIG=FILE and GMV__... variables reach gmv unchanged, e.g. a TOML with
#   [kafka.consumer]
#   "fetch.queue.backoff.ms" = "10"
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${BENCH_EVENTS:-10000000}
LAT_RATE=${BENCH_LATENCY_RATE:-256000}
LAT_EVENTS=${BENCH_LATENCY_EVENTS:-$((LAT_RATE * 30))}
PHASES=${BENCH_PHASES:-throughput,latency}
CHECKPOINTS=${BENCH_CHECKPOINTS:-on}
COMPARE=${BENCH_COMPARE_CHECKPOINTS:-0}
[[ $CHECKPOINTS =~ ^(on|topic|off)$ ]] || { echo "bench-kafka: BENCH_CHECKPOINTS must be on, topic or off (got $CHECKPOINTS)" >&2; exit 2; }
WORKERS=${BENCH_WORKERS:-0}
PUBLISH_INTERVAL=${BENCH_PUBLISH_INTERVAL:-}
SEED=${BENCH_SEED:-11}
PORT=${BENCH_BROKER_PORT:-19392}
OUT=${BENCH_OUT:-target/bench-kafka}
IDLE=3s
# The latency run waits (idle) for the generator while its members join; the
# second member's join can take ~3 s on tansu, so 3 s idle could end it first.
LAT_IDLE=${BENCH_LATENCY_IDLE:-10s}
GMV=target/release/gmv
BROKER_SCRIPT=scripts/kafka-broker.sh

log() { echo "bench-kafka: $*" >&2; }
die() { log "$*"; exit 1; }

BROKER_UP=0
cleanup() {
  local rc=$?
  if ((BROKER_UP)); then
    "$BROKER_SCRIPT" stop "$PORT" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# --- build (retry: the tree may be mid-edit) --------------------------------
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  for attempt in 1 2 3 4 5; do
    if cargo build --release --quiet --bin gmv; then break; fi
    ((attempt < 5)) || die "cargo build failed 5 times"
    log "build failed (attempt $attempt); retrying in 60s"
    sleep 60
  done
fi
[[ -x $GMV ]] || die "$GMV missing"
[[ -x /usr/bin/python3 || -n $(command -v python3) ]] || die "python3 needed"

# --- helpers -----------------------------------------------------------------
broker_start() {
  "$BROKER_SCRIPT" stop "$PORT" >/dev/null 2>&1 || true
  BROKERS=$("$BROKER_SCRIPT" start "$PORT" 2>/dev/null) || die "broker failed to start on $PORT"
  BROKER_UP=1
  BROKER_PID=$(<"${TMPDIR:-/tmp}/gmv-tansu-$PORT/tansu.pid")
}
broker_stop() {
  "$BROKER_SCRIPT" stop "$PORT" >/dev/null 2>&1 || true
  BROKER_UP=0
}
broker_rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$BROKER_PID/status" 2>/dev/null || echo "?"; }

# The monitor runs a command, timestamps its stderr lines (both \n and the
# progress line's \r), samples VmHWM, per-thread CPU and the broker's CPU every
# 100 ms, and writes a JSON summary. With --ready FILE it creates FILE once
# every consumer-group member has logged `assigned`.
MONITOR=$OUT/monitor.py
cat >"$MONITOR" <<'PY'
import json, os, re, sys, threading, time, subprocess
args = sys.argv[1:]
opts = {}
while args and args[0].startswith("--") and args[0] != "--":
    opts[args[0][2:]] = args[1]; args = args[2:]
if args and args[0] == "--": args = args[1:]
TICK = os.sysconf("SC_CLK_TCK")
ansi = re.compile(r"\x1b\[[0-9;]*m")
def cpu_of(stat_path):
    try:
        s = open(stat_path).read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / TICK
broker_pid = opts.get("broker-pid")
broker_cpu0 = cpu_of(f"/proc/{broker_pid}/stat") if broker_pid else None
t0 = time.time()
proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
members_assigned = set()
events = {"assigned": [], "progress": [], "members": None, "done": None, "done_line": None}
log = open(opts["log"], "w")
def reader():
    buf = b""
    while True:
        chunk = proc.stderr.read1(65536)
        if not chunk: break
        buf += chunk
        parts = re.split(rb"[\r\n]", buf)
        buf = parts.pop()
        now = time.time() - t0
        for raw in parts:
            line = ansi.sub("", raw.decode("utf-8", "replace")).strip()
            if not line: continue
            log.write(f"{now:9.3f} {line}\n")
            # A log line may follow the progress line on the same line.
            m = re.match(r"(\d+) records\s+[\d.]+M/s.*?rejected \d+\s*", line)
            if m:
                events["progress"].append((now, int(m.group(1))))
                line = line[m.end():]
            if " consuming " in line:
                m = re.search(r"members=(\d+)", line)
                if m: events["members"] = int(m.group(1))
            m = re.search(r"\bassigned member=(\S+)", line)
            if m:
                events["assigned"].append(now)
                # Ready once every member holds an assignment (a member can be
                # assigned everything, revoked, then assigned its share).
                members_assigned.add(m.group(1))
                if opts.get("ready") and events["members"] and len(members_assigned) >= events["members"]:
                    open(opts["ready"], "w").close()
            if re.search(r"\bdone consumed=", line):
                events["done"] = now; events["done_line"] = line
    log.flush()
th = threading.Thread(target=reader, daemon=True); th.start()
hwm_kb = 0; threads = {}; busy = []  # busy: (t, process cpu seconds)
pid = proc.pid
while True:
    try:
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmHWM:"): hwm_kb = max(hwm_kb, int(l.split()[1]))
    except OSError:
        pass
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    total = 0.0
    for tid in tids:
        c = cpu_of(f"/proc/{pid}/task/{tid}/stat")
        if c is None: continue
        try: name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
        except OSError: continue
        threads[tid] = (name, c)
    pc = cpu_of(f"/proc/{pid}/stat")
    if pc is not None: busy.append((time.time() - t0, pc))
    if proc.poll() is not None: break
    time.sleep(0.1)
proc.wait()
wall = time.time() - t0
th.join(5)
broker_cpu1 = cpu_of(f"/proc/{broker_pid}/stat") if broker_pid else None
# End of the busy period: the last 100 ms sample in which the process used
# more than 30% of a core (before the `done` line).
end_busy = None
for (ta, ca), (tb, cb) in zip(busy, busy[1:]):
    if events["done"] and tb > events["done"]: break
    if tb > ta and (cb - ca) / (tb - ta) > 0.3: end_busy = tb
# Per-thread CPU by name: rusage covers exited threads too; the samples give the split.
by_name = {}
for name, c in threads.values():
    key = re.sub(r"\d+$", "#", name)
    by_name[key] = by_name.get(key, 0.0) + c
res = {
    "returncode": proc.returncode,
    "wall_s": wall,
    "members": events["members"],
    "assigned_s": events["assigned"],
    "done_s": events["done"],
    "done_line": events["done_line"],
    "end_busy_s": end_busy,
    "progress": events["progress"],
    "peak_rss_kb": hwm_kb,
    "threads_cpu_s": dict(sorted(by_name.items(), key=lambda kv: -kv[1])),
    "threads_count": len(threads),
    "process_cpu_s": busy[-1][1] if busy else None,
    "broker_cpu_s": (broker_cpu1 - broker_cpu0) if broker_cpu0 is not None and broker_cpu1 is not None else None,
}
json.dump(res, open(opts["out"], "w"), indent=1)
sys.exit(proc.returncode or 0)
PY

# Runs `gmv run --kafka` under the monitor. $1 label, $2 ready-file ("" = none),
# $3 --exit-when-idle, then extra NAME=VALUE environment entries. Results in $OUT/$label/.
run_consumer() {
  local label=$1 ready=$2 idle=$3
  shift 3
  local dir=$OUT/$label
  rm -rf "$dir"
  mkdir -p "$dir"
  local extra=()
  [[ -n $PUBLISH_INTERVAL ]] && extra+=(--publish-interval "$PUBLISH_INTERVAL")
  local ready_opt=()
  [[ -n $ready ]] && ready_opt=(--ready "$ready")
  env "$@" python3 "$MONITOR" --out "$dir/monitor.json" --log "$dir/stderr.log" \
    --broker-pid "$BROKER_PID" "${ready_opt[@]}" -- \
    "$GMV" run --kafka "$BROKERS" --group "bench-$label-$$" \
    --checkpoint-dir "$dir/checkpoints" --exit-when-idle "$idle" \
    --report "$dir/report.json" --dead-letter "$dir/dead-letters.jsonl" \
    --workers "$WORKERS" --progress always "${extra[@]}"
}

# Produces with `gmv generate --kafka`; $1 label, $2 events, $3 rate. Prints the
# summary line; CPU and RSS from /usr/bin/time when available.
produce() {
  local label=$1 n=$2 rate=$3 dir=$OUT/$1
  mkdir -p "$dir"
  local timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$dir/generate.time")
  "${timer[@]}" "$GMV" generate --kafka "$BROKERS" --events "$n" --rate "$rate" --seed "$SEED" \
    2>"$dir/generate.raw.log"
  sed 's/\x1b\[[0-9;]*m//g' "$dir/generate.raw.log" >"$dir/generate.log"
  local line
  line=$(grep -E '^gmv: produced' "$dir/generate.log" | tail -1 || true)
  [[ -n $line ]] || { cat "$dir/generate.log" >&2; die "generate printed no summary"; }
  echo "  generate: ${line#gmv: }"
  if [[ -s $dir/generate.time ]]; then
    awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {r=$2}
      END {printf "  generate: CPU %.1f s (user %.1f + sys %.1f), peak RSS %.0f MiB\n", u+s, u, s, r/1024}' \
      "$dir/generate.time"
  fi
}

# Prints the summary of one `run` from its monitor JSON and report.
summarize() {
  local label=$1 what=$2 idle=$3 dir=$OUT/$1
  python3 - "$dir" "$what" "$idle" <<'PY'
import json, os, subprocess, sys
d, what, idle = sys.argv[1], sys.argv[2], float(sys.argv[3].rstrip("s"))
m = json.load(open(f"{d}/monitor.json"))
r = json.load(open(f"{d}/report.json"))
consumed = r["accounting"]["consumed"]
tcpu = sum(m["threads_cpu_s"].values())
cpu = m["process_cpu_s"] or tcpu
first = m["assigned_s"][0] if m["assigned_s"] else 0.0
last = m["assigned_s"][-1] if m["assigned_s"] else 0.0
print(f"  consumed {consumed:,} records ({r['accounting']['rejected']:,} rejected), exit {m['returncode']}, wall {m['wall_s']:.2f} s")
print(f"  members {m['members']}, {len(m['assigned_s'])} assignments at +{first:.2f}s .. +{last:.2f}s after start; `done` at +{m['done_s'] or float('nan'):.2f}s")
if what == "throughput":
    if m["end_busy_s"]:
        active = m["end_busy_s"] - first
        print(f"  events/s (first assignment -> end of busy period, {active:.2f} s): {consumed/active:,.0f}")
    p = m["progress"]
    if len(p) >= 2:
        lo = [x for x in p if x[1] >= 0.1 * consumed]
        hi = [x for x in p if x[1] <= 0.9 * consumed]
        if lo and hi and hi[-1][0] > lo[0][0]:
            a, b = lo[0], hi[-1]
            print(f"  events/s (mid-run, progress {a[1]:,} -> {b[1]:,} over {b[0]-a[0]:.1f} s): {(b[1]-a[1])/(b[0]-a[0]):,.0f}")
    if m["done_line"]:
        import re
        s = float(re.search(r'seconds="?([\d.]+)', m["done_line"]).group(1))
        eps = re.search(r"events_per_second=(\d+)", m["done_line"]).group(1)
        print(f"  `done` line: seconds={s:.3f} events_per_second={int(eps):,} (incl. join and {idle:.0f}s idle);"
              f" minus idle: {consumed/max(s-idle,1e-9):,.0f}/s")
print(f"  CPU: {cpu:.2f} s user+sys (process, /proc)"
      + (f" = {cpu/consumed*1e6:.2f} us/record" if consumed else "")
      + (f"; broker (tansu) {m['broker_cpu_s']:.2f} s over the same run" if m["broker_cpu_s"] is not None else ""))
print(f"  peak RSS (VmHWM): {m['peak_rss_kb']/1024:.0f} MiB")
th = m["threads_cpu_s"]
split = ", ".join(f"{k} {v:.2f}s ({100*v/tcpu:.0f}%)" for k, v in list(th.items())[:12] if v > 0.005) if tcpu else "-"
print(f"  per-thread CPU ({m['threads_count']} threads, by name): {split}")
lat = r.get("latency_ms") or {}
if lat:
    print(f"  latency_ms (CreateTime -> snapshot publish): p50 {lat['p50']:.1f}, p99 {lat['p99']:.1f}, "
          f"p999 {lat['p999']:.1f}, max {lat['max']:.1f} (count {lat['count']:,})")
ck = f"{d}/checkpoints"
if os.path.isdir(ck):
    size = int(subprocess.check_output(["du", "-sb", ck]).split()[0])
    merchants = r["merchants"]
    per = f", {size / merchants * 100000 / 2**20:.1f} MiB per 100k merchants" if merchants else ""
    print(f"  checkpoint dir: {size:,} bytes (du -sb); merchants {merchants:,}{per}")
PY
  [[ ${BENCH_KEEP_CHECKPOINTS:-0} == 1 ]] || rm -rf "$dir/checkpoints"
}

# The environment of checkpoint mode $1 (on, topic, off) for run label $2.
checkpoint_env() {
  case $1 in
    on) ;;
    topic) echo "GMV__KAFKA__CHECKPOINT__STORE=topic GMV__KAFKA__CHECKPOINT__TOPIC=bench-changelog-$2-$$" ;;
    off) echo "GMV__KAFKA__CHECKPOINT__INTERVAL=1h" ;;
    *) die "BENCH_CHECKPOINTS must be on, topic or off (got $1)" ;;
  esac
}

# --- machine -------------------------------------------------------------------
echo "== machine"
echo "  $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //');" \
  "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM" \
  "($(awk '/MemAvailable/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) available); $(uname -r)"
echo "  gmv: $($GMV --version 2>/dev/null || echo '?'); broker: tansu (memory store) on 127.0.0.1:$PORT, same machine"
echo "  run: --workers $WORKERS, --exit-when-idle $IDLE${PUBLISH_INTERVAL:+, --publish-interval $PUBLISH_INTERVAL}"

# --- phase 1: throughput ---------------------------------------------------------
if [[ ,$PHASES, == *,throughput,* ]]; then
  echo "== throughput: preload $EVENTS records, then drain"
  broker_start
  produce throughput-generate "$EVENTS" 0
  echo "  broker RSS after preload: $(broker_rss_mib) MiB"
  if ((COMPARE)); then
    modes=(on topic off)
  else
    modes=("$CHECKPOINTS")
  fi
  for mode in "${modes[@]}"; do
    envs=($(checkpoint_env "$mode" "throughput-$mode"))
    echo "-- gmv run, checkpoints $mode${envs[*]:+ (${envs[*]})}"
    run_consumer "throughput-ck-$mode" "" "$IDLE" "${envs[@]}" || log "gmv run exited non-zero (see $OUT/throughput-ck-$mode/stderr.log)"
    summarize "throughput-ck-$mode" throughput "$IDLE"
  done
  echo "  broker RSS at end: $(broker_rss_mib) MiB"
  broker_stop
fi

# --- phase 2: latency ---------------------------------------------------------------
if [[ ,$PHASES, == *,latency,* ]]; then
  echo "== latency: gmv run first (--exit-when-idle $LAT_IDLE), once every member is assigned generate $LAT_EVENTS records at $LAT_RATE/s"
  broker_start
  envs=($(checkpoint_env "$CHECKPOINTS" latency))
  ready=$OUT/latency.ready
  rm -f "$ready"
  run_consumer latency "$ready" "$LAT_IDLE" "${envs[@]}" &
  run_pid=$!
  deadline=$((SECONDS + 60))
  until [[ -e $ready ]]; do
    kill -0 "$run_pid" 2>/dev/null || die "gmv run exited before assignment; see $OUT/latency/stderr.log"
    ((SECONDS < deadline)) || die "no assignment within 60s; see $OUT/latency/stderr.log"
    sleep 0.1
  done
  produce latency-generate "$LAT_EVENTS" "$LAT_RATE"
  wait "$run_pid" || log "gmv run exited non-zero (see $OUT/latency/stderr.log)"
  summarize latency latency "$LAT_IDLE"
  broker_stop
fi
