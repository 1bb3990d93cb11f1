#!/usr/bin/env bash
# Kafka end-to-end benchmark against a local tansu broker (scripts/kafka-broker.sh),
# with a bare librdkafka consumer (crates/gmv-kafka/examples/bare_consumer.rs:
# gmv's client settings, counts and nothing else) as the baseline on the same
# broker and topic.
#
# Phase "throughput": fresh broker; preload BENCH_EVENTS records with
#   `gmv generate --kafka --rate 0` (produce rate printed); drain them with the
#   bare consumer (fresh group, as many members as gmv has workers), then with
#   `gmv run --kafka --exit-when-idle 3s`, then with the bare consumer again.
#   Prints the bare rates (first -> last message, and mid-run: 10% -> 90% of
#   the records), gmv's rates (process start -> exit less the idle wait; first
#   partition assignment -> end of the busy period; mid-run from the progress
#   line; the `done` line's figure less the idle wait), each gmv rate as a
#   ratio to the mean of the two bare runs, gmv's CPU time (user+sys), peak
#   RSS, per-thread CPU split, broker CPU, checkpoint directory size.
# Phase "latency": fresh broker; start `gmv run --kafka` and the bare consumer
#   in latency mode (its own group) together, wait until both have every
#   member assigned, then `gmv generate --kafka --rate BENCH_LATENCY_RATE` for
#   BENCH_LATENCY_EVENTS records. Prints the achieved produce rate, gmv's
#   latency (CreateTime -> first snapshot published with the record, from the
#   `done` log line), the bare consumer's (CreateTime -> polled) and the p99
#   difference: what gmv adds over consuming alone on this box.
# At the end a summary, one line per figure, for pasting into docs (also
#   written to $BENCH_OUT/summary.txt).
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
#   BENCH_LATENCY_IDLE=10s         --exit-when-idle of the latency run, whole
#                                  seconds (the bare consumer's idle too)
#   BENCH_CHECKPOINTS=on           on: a checkpoint directory; topic: a changelog
#                                  topic (kafka.checkpoint.store = "topic");
#                                  off: GMV__KAFKA__CHECKPOINT__INTERVAL=1h
#   BENCH_COMPARE_CHECKPOINTS=0    1: drain the preloaded topic three times (on,
#                                  topic, off; separate groups, same broker),
#                                  between the two bare runs
#   BENCH_WORKERS=0                gmv run --workers (0 = one per core); the bare
#                                  consumer runs as many members (0: nproc)
#   BENCH_PUBLISH_INTERVAL=        gmv run --publish-interval (empty = config)
#   BENCH_SEED=11                  generate --seed
#   BENCH_BROKER_PORT=19392        dedicated tansu port (stopped on exit)
#   BENCH_OUT=target/bench-kafka   work files: logs, reports, checkpoints
#   BENCH_GMV=target/release/gmv   the gmv binary measured (e.g. a previous
#                                  commit's, to compare before/after)
#   BENCH_NO_BUILD=0               1: use target/release/gmv and
#                                  target/release/examples/bare_consumer as they are
#   BENCH_KEEP_CHECKPOINTS=0       1: keep checkpoint dirs (0: deleted after du)
# GMV_CONFIG=FILE and GMV__... variables reach gmv unchanged, e.g. a TOML with
#   [kafka.consumer]
#   "fetch.queue.backoff.ms" = "10"
# The bare consumer reads the same merged configuration (`gmv config`): the
# input topic, and kafka.client and kafka.consumer laid over its defaults.
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
GMV=${BENCH_GMV:-target/release/gmv}
# What the summary calls the binary measured: the checkout's commit, or the
# path given in BENCH_GMV (a previous commit's binary is not this checkout).
gmv_label() {
  if [[ -n ${BENCH_GMV:-} ]]; then
    echo "$BENCH_GMV"
  else
    git describe --always --dirty 2>/dev/null || echo '?'
  fi
}
BARE=target/release/examples/bare_consumer
BROKER_SCRIPT=scripts/kafka-broker.sh

log() { echo "bench-kafka: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $LAT_IDLE =~ ^[0-9]+s$ ]] || die "BENCH_LATENCY_IDLE must be whole seconds, e.g. 10s (got $LAT_IDLE)"
IDLE_S=${IDLE%s}
LAT_IDLE_S=${LAT_IDLE%s}
[[ $WORKERS =~ ^[0-9]+$ ]] || die "BENCH_WORKERS must be a number (got $WORKERS)"
# The bare consumer runs as many group members as gmv has workers.
BARE_THREADS=$WORKERS
((BARE_THREADS > 0)) || BARE_THREADS=$(nproc)

# Ends a background job and what it started (by pid: the job is a subshell
# running python, which runs gmv or the bare consumer).
kill_tree() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}

BROKER_UP=0
BG_PIDS=()
cleanup() {
  local rc=$?
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill_tree "$pid"
  done
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
    if cargo build --release --quiet --bin gmv --example bare_consumer -p gmv -p gmv-kafka; then break; fi
    ((attempt < 5)) || die "cargo build failed 5 times"
    log "build failed (attempt $attempt); retrying in 60s"
    sleep 60
  done
fi
[[ -x $GMV ]] || die "$GMV missing"
[[ -x $BARE ]] || die "$BARE missing"
[[ -x /usr/bin/python3 || -n $(command -v python3) ]] || die "python3 needed"

# The input topic and client settings gmv will use (GMV_CONFIG and GMV__...
# included), so the bare consumer reads the same topic the same way.
"$GMV" config >"$OUT/config.toml" 2>"$OUT/config.log" || { cat "$OUT/config.log" >&2; die "gmv config failed"; }
mapfile -t CONFIG_LINES < <(python3 - "$OUT/config.toml" <<'PY'
import sys, tomllib
kafka = tomllib.load(open(sys.argv[1], "rb"))["kafka"]
print(kafka["input_topic"])
for table in ("client", "consumer"):
    for key, value in kafka.get(table, {}).items():
        if key not in ("group.id", "client.id"):
            print(f"{key}={value}")
PY
)
TOPIC=${CONFIG_LINES[0]:-}
[[ -n $TOPIC ]] || die "could not read kafka.input_topic from \`gmv config\` ($OUT/config.toml)"
BARE_X=()
for setting in "${CONFIG_LINES[@]:1}"; do BARE_X+=(-X "$setting"); done

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
            m = re.match(r"([\d,]+) records\s+[\d.]+M/s.*?rejected [\d,]+\s*", line)
            if m:
                events["progress"].append((now, int(m.group(1).replace(",", ""))))
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
# `gmv run --kafka` works in a child process (its worker); a process and
# its children are measured together.
def tree(pid):
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        kids = []
    return [pid] + [int(k) for k in kids]
last_cpu = {}
while True:
    for pid in tree(proc.pid):
        try:
            for l in open(f"/proc/{pid}/status"):
                if l.startswith("VmHWM:"): hwm_kb = max(hwm_kb, int(l.split()[1]))
        except OSError:
            pass
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            tids = []
        for tid in tids:
            c = cpu_of(f"/proc/{pid}/task/{tid}/stat")
            if c is None: continue
            try: name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            except OSError: continue
            threads[tid] = (name, c)
        pc = cpu_of(f"/proc/{pid}/stat")
        if pc is not None: last_cpu[pid] = pc
    busy.append((time.time() - t0, sum(last_cpu.values())))
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

# Prints the summary of one `run` from its monitor JSON, report and `done`
# line, and writes its figures to $OUT/$label/figures.json for the comparisons.
summarize() {
  local label=$1 what=$2 idle=$3 dir=$OUT/$1
  python3 - "$dir" "$what" "$idle" <<'PY'
import json, os, re, subprocess, sys
d, what, idle = sys.argv[1], sys.argv[2], float(sys.argv[3].rstrip("s"))
m = json.load(open(f"{d}/monitor.json"))
r = json.load(open(f"{d}/report.json"))
consumed = r["accounting"]["consumed"]
tcpu = sum(m["threads_cpu_s"].values())
cpu = m["process_cpu_s"] or tcpu
first = m["assigned_s"][0] if m["assigned_s"] else 0.0
last = m["assigned_s"][-1] if m["assigned_s"] else 0.0
fig = {"consumed": consumed, "members": m["members"], "wall_s": m["wall_s"], "rates": {},
       "cpu_us_per_record": cpu / consumed * 1e6 if consumed else None,
       "peak_rss_mib": m["peak_rss_kb"] / 1024}
# The `done` log line: seconds="1.234" events_per_second=N latency_p50_ms=x ...
done = dict(re.findall(r'(\w+)="?([\d.]+)"?', m["done_line"] or ""))
print(f"  consumed {consumed:,} records ({r['accounting']['rejected']:,} rejected), exit {m['returncode']}, wall {m['wall_s']:.2f} s")
print(f"  members {m['members']}, {len(m['assigned_s'])} assignments at +{first:.2f}s .. +{last:.2f}s after start; `done` at +{m['done_s'] or float('nan'):.2f}s")
if what == "throughput":
    rates = fig["rates"]
    active = m["wall_s"] - idle
    if active > 0:
        rates["start_to_exit"] = consumed / active
        print(f"  events/s (process start -> exit less {idle:.0f}s idle, {active:.2f} s): {rates['start_to_exit']:,.0f}")
    if m["end_busy_s"] and m["end_busy_s"] > first:
        active = m["end_busy_s"] - first
        rates["first_assignment_to_end"] = consumed / active
        print(f"  events/s (first assignment -> end of busy period, {active:.2f} s): {rates['first_assignment_to_end']:,.0f}")
    p = m["progress"]
    lo = [x for x in p if x[1] >= 0.1 * consumed]
    hi = [x for x in p if x[1] <= 0.9 * consumed]
    if lo and hi and hi[-1][0] > lo[0][0]:
        a, b = lo[0], hi[-1]
        rates["mid_run"] = (b[1] - a[1]) / (b[0] - a[0])
        print(f"  events/s (mid-run, progress {a[1]:,} -> {b[1]:,} over {b[0]-a[0]:.1f} s): {rates['mid_run']:,.0f}")
    else:
        print("  events/s (mid-run): too short to tell (fewer than two progress lines between 10% and 90%)")
    if "seconds" in done and "events_per_second" in done:
        s = float(done["seconds"])
        if s > idle:
            rates["done_line_less_idle"] = consumed / (s - idle)
        print(f"  `done` line: seconds={s:.3f} events_per_second={int(done['events_per_second']):,} (incl. join and {idle:.0f}s idle)"
              + (f"; less idle: {rates['done_line_less_idle']:,.0f}/s" if "done_line_less_idle" in rates else ""))
print(f"  CPU: {cpu:.2f} s user+sys (process, /proc)"
      + (f" = {cpu/consumed*1e6:.2f} us/record" if consumed else "")
      + (f"; broker (tansu) {m['broker_cpu_s']:.2f} s over the same run" if m["broker_cpu_s"] is not None else ""))
print(f"  peak RSS (VmHWM): {m['peak_rss_kb']/1024:.0f} MiB")
th = m["threads_cpu_s"]
split = ", ".join(f"{k} {v:.2f}s ({100*v/tcpu:.0f}%)" for k, v in list(th.items())[:12] if v > 0.005) if tcpu else "-"
print(f"  per-thread CPU ({m['threads_count']} threads, by name): {split}")
if "latency_p50_ms" in done:
    fig["latency_ms"] = {k: float(done[f"latency_{k}_ms"]) for k in ("p50", "p99", "p999") if f"latency_{k}_ms" in done}
    lat = fig["latency_ms"]
    print("  latency (CreateTime -> snapshot published, `done` line): "
          + ", ".join(f"{k} {v:,.1f} ms" for k, v in lat.items()))
elif what == "latency":
    print("  latency: no `done` line with latency figures (see stderr.log)")
ck = f"{d}/checkpoints"
if os.path.isdir(ck):
    size = int(subprocess.check_output(["du", "-sb", ck]).split()[0])
    merchants = r["merchants"]
    per = f", {size / merchants * 100000 / 2**20:.1f} MiB per 100k merchants" if merchants else ""
    print(f"  checkpoint dir: {size:,} bytes (du -sb); merchants {merchants:,}{per}")
json.dump(fig, open(f"{d}/figures.json", "w"), indent=1)
PY
  [[ ${BENCH_KEEP_CHECKPOINTS:-0} == 1 ]] || rm -rf "$dir/checkpoints"
}

# Runs the bare consumer (fresh group); $1 label, $2 count or latency, $3 idle
# seconds, $4 max seconds. Its JSON line goes to $OUT/$label/bare.json, its
# stderr (assignments, `ready`) to $OUT/$label/stderr.log.
run_bare() {
  local label=$1 mode=$2 idle=$3 max=$4 dir=$OUT/$1
  rm -rf "$dir"
  mkdir -p "$dir"
  local flags=("${BARE_X[@]}")
  [[ $mode == latency ]] && flags+=(--latency)
  local timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$dir/bare.time")
  "${timer[@]}" "$BARE" "${flags[@]}" "$BROKERS" "$TOPIC" "bench-bare-$label-$$" \
    "$BARE_THREADS" "$idle" "$max" >"$dir/bare.json" 2>"$dir/stderr.log"
}

# Prints one bare run from its JSON; $1 label, $2 records expected (0 = any).
bare_summary() {
  local label=$1 expected=$2 dir=$OUT/$1
  python3 - "$dir" "$expected" <<'PY'
import json, re, sys
d, expected = sys.argv[1], int(sys.argv[2])
try:
    b = json.loads(open(f"{d}/bare.json").read().strip().splitlines()[-1])
except (OSError, ValueError, IndexError):
    sys.exit(f"bench-kafka: the bare consumer printed no result; see {d}/stderr.log")
fmt = lambda v: f"{v:,.0f}/s" if v is not None else "too short to tell"
print(f"  {b['messages']:,} messages, {b['threads']} members, {b['partitions']} partitions; wall {b['wall_s']:.2f} s (stopped: {b['stopped']})")
print(f"  messages/s (first -> last message, {b['seconds']:.2f} s): {fmt(b['messages_per_second'])}; mid-run (10% -> 90%): {fmt(b['mid_run_per_second'])}")
try:
    t = open(f"{d}/bare.time").read()
    u = float(re.search(r"User time.*: ([\d.]+)", t).group(1))
    s = float(re.search(r"System time.*: ([\d.]+)", t).group(1))
    rss = int(re.search(r"Maximum resident.*: (\d+)", t).group(1))
    per = f" = {(u+s)/b['messages']*1e6:.2f} us/message" if b["messages"] else ""
    print(f"  CPU: {u+s:.2f} s (user {u:.2f} + sys {s:.2f}){per}; peak RSS {rss/1024:.0f} MiB")
except (OSError, AttributeError):
    pass
if "latency_ms" in b:
    l = b["latency_ms"]
    print(f"  latency (CreateTime -> polled): p50 {l['p50']:,.1f} ms, p99 {l['p99']:,.1f} ms, p999 {l['p999']:,.1f} ms, max {l['max']:,.1f} ms (count {l['count']:,})")
notes = []
if expected and b["messages"] != expected:
    notes.append(f"read {b['messages']:,} of the {expected:,} records")
if b["refetched"]:
    notes.append(f"{b['refetched']:,} fetched again after a rebalance (not counted)")
if b["errors"]:
    notes.append(f"{b['errors']} consumer errors (see {d}/stderr.log)")
if b["stopped"] != "idle":
    notes.append("stopped by its time limit, not idle")
for n in notes:
    print(f"  note: {n}")
PY
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

# Compares each gmv drain with the mean of the two bare runs around it; prints
# the ratios and adds the throughput lines to the summary. $1 bare before, $2
# bare after, $3 idle seconds, then the gmv run labels (label=checkpoint mode).
throughput_compare() {
  local before=$1 after=$2 idle=$3
  shift 3
  python3 - "$OUT" "$before" "$after" "$idle" "$@" <<'PY'
import json, sys
out, before, after, idle = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
runs = [a.split("=", 1) for a in sys.argv[5:]]
def bare(label):
    try:
        return json.loads(open(f"{out}/{label}/bare.json").read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
b0, b1 = bare(before), bare(after)
def mean(key):
    vals = [b[key] for b in (b0, b1) if b and b.get(key)]
    return sum(vals) / len(vals) if vals else None
def both(key):
    return " / ".join(f"{b[key]:,.0f}" if b and b.get(key) else "-" for b in (b0, b1))
base = {"rate": mean("messages_per_second"), "mid": mean("mid_run_per_second")}
spread = []
for key, name in (("messages_per_second", "first -> last"), ("mid_run_per_second", "mid-run")):
    if b0 and b1 and b0.get(key) and b1.get(key):
        spread.append(f"{name} after/before {b1[key] / b0[key]:.2f}")
fmt = lambda v: f"{v:,.0f}/s" if v else "-"
print(f"-- gmv / bare consumer (bare mean of before and after: {fmt(base['rate'])} first -> last,"
      f" {fmt(base['mid'])} mid-run{'; ' + ', '.join(spread) if spread else ''})")
summary = [f"bare consumer before / after gmv, first -> last message: {both('messages_per_second')} msg/s",
           f"bare consumer before / after gmv, mid-run (10% -> 90%): {both('mid_run_per_second')} msg/s"]
figures = (("start_to_exit", f"start -> exit less {idle}s idle", "rate"),
           ("first_assignment_to_end", "first assignment -> end of busy period", "rate"),
           ("done_line_less_idle", f"`done` line less {idle}s idle", "rate"),
           ("mid_run", "mid-run (10% -> 90%)", "mid"))
for label, mode in runs:
    try:
        f = json.load(open(f"{out}/{label}/figures.json"))
    except (OSError, ValueError):
        print(f"  checkpoints {mode}: no figures (see {out}/{label})")
        continue
    for key, name, against in figures:
        v = f["rates"].get(key)
        if v is None:
            text = "too short to tell"
        elif base[against]:
            text = f"{v:,.0f} events/s = {v / base[against]:.2f}x bare{' mid-run' if against == 'mid' else ''}"
        else:
            text = f"{v:,.0f} events/s (no bare figure to compare)"
        print(f"  checkpoints {mode}, {name}: {text}")
        if key != "done_line_less_idle":
            summary.append(f"gmv (checkpoints {mode}) {name}: {text}")
    if f.get("cpu_us_per_record") is not None:
        summary.append(f"gmv (checkpoints {mode}) CPU {f['cpu_us_per_record']:.2f} us/record, peak RSS {f['peak_rss_mib']:.0f} MiB")
with open(f"{out}/summary.txt", "a") as s:
    s.write("".join(line + "\n" for line in summary))
PY
}

# Prints gmv's latency beside the bare consumer's and adds them to the summary.
latency_compare() {
  python3 - "$OUT" "$LAT_EVENTS" "$LAT_RATE" <<'PY'
import json, re, sys
out, events, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    g = json.load(open(f"{out}/latency/figures.json")).get("latency_ms", {})
except (OSError, ValueError):
    g = {}
try:
    b = json.loads(open(f"{out}/latency-bare/bare.json").read().strip().splitlines()[-1]).get("latency_ms", {})
except (OSError, ValueError, IndexError):
    b = {}
achieved = None
try:
    m = re.search(r"([\d.]+) records/s", open(f"{out}/latency-generate/generate.log").read())
    achieved = float(m.group(1)) if m else None
except OSError:
    pass
ms = lambda d, k: f"{d[k]:,.1f} ms" if k in d else "-"
lines = [f"latency phase: {events:,} records asked at {rate:,}/s"
         + (f" (achieved {achieved:,.0f}/s)" if achieved else "") + "; gmv and the bare consumer reading together",
         f"gmv latency, CreateTime -> snapshot published: p50 {ms(g, 'p50')}, p99 {ms(g, 'p99')}",
         f"bare consumer latency, CreateTime -> polled: p50 {ms(b, 'p50')}, p99 {ms(b, 'p99')}"]
if "p99" in g and "p99" in b:
    lines.append(f"p99 gmv - bare: {g['p99'] - b['p99']:+,.1f} ms")
print("-- gmv / bare consumer latency")
for line in lines[1:]:
    print(f"  {line}")
with open(f"{out}/summary.txt", "a") as s:
    s.write("".join(line + "\n" for line in lines))
PY
}

# --- machine -------------------------------------------------------------------
MACHINE="$(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== machine"
echo "  $MACHINE;" \
  "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM" \
  "($(awk '/MemAvailable/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) available); $(uname -r)"
echo "  gmv: $($GMV --version 2>/dev/null || echo '?'); broker: tansu (memory store) on 127.0.0.1:$PORT, same machine; topic $TOPIC"
echo "  run: --workers $WORKERS, --exit-when-idle $IDLE${PUBLISH_INTERVAL:+, --publish-interval $PUBLISH_INTERVAL}"
echo "  bare consumer: $BARE_THREADS members, gmv's client settings + cooperative-sticky${BARE_X[*]:+, ${BARE_X[*]}}"
SUMMARY=$OUT/summary.txt
{
  echo "machine: $MACHINE; tansu memory store on the same box; gmv $(gmv_label)"
  echo "gmv run --workers $WORKERS; bare consumer $BARE_THREADS members (gmv's client settings + cooperative-sticky)"
} >"$SUMMARY"

# --- phase 1: throughput ---------------------------------------------------------
if [[ ,$PHASES, == *,throughput,* ]]; then
  echo "== throughput: preload $EVENTS records, then drain: bare consumer, gmv, bare consumer"
  broker_start
  produce throughput-generate "$EVENTS" 0
  echo "  broker RSS after preload: $(broker_rss_mib) MiB"
  sed -nE 's|^gmv: produced ([0-9]+) records .* in ([0-9.]+s), ([0-9]+) records/s.*|preload (gmv generate --rate 0): \1 records in \2, \3 records/s|p' \
    "$OUT/throughput-generate/generate.log" | tail -1 >>"$SUMMARY"
  if ((COMPARE)); then
    modes=(on topic off)
  else
    modes=("$CHECKPOINTS")
  fi
  bare_max=$((EVENTS / 20000 + 120))
  echo "-- bare consumer, before gmv ($BARE_THREADS members, group bench-bare-throughput-bare-before-$$)"
  run_bare throughput-bare-before count "$IDLE_S" "$bare_max" || log "bare consumer exited non-zero (see $OUT/throughput-bare-before/stderr.log)"
  bare_summary throughput-bare-before "$EVENTS" || true
  runs=()
  for mode in "${modes[@]}"; do
    read -ra envs <<<"$(checkpoint_env "$mode" "throughput-$mode")"
    echo "-- gmv run, checkpoints $mode${envs[*]:+ (${envs[*]})}"
    run_consumer "throughput-ck-$mode" "" "$IDLE" "${envs[@]}" || log "gmv run exited non-zero (see $OUT/throughput-ck-$mode/stderr.log)"
    summarize "throughput-ck-$mode" throughput "$IDLE"
    runs+=("throughput-ck-$mode=$mode")
  done
  echo "-- bare consumer, after gmv"
  run_bare throughput-bare-after count "$IDLE_S" "$bare_max" || log "bare consumer exited non-zero (see $OUT/throughput-bare-after/stderr.log)"
  bare_summary throughput-bare-after "$EVENTS" || true
  throughput_compare throughput-bare-before throughput-bare-after "$IDLE_S" "${runs[@]}"
  echo "  broker RSS at end: $(broker_rss_mib) MiB"
  broker_stop
fi

# --- phase 2: latency ---------------------------------------------------------------
if [[ ,$PHASES, == *,latency,* ]]; then
  echo "== latency: gmv run (--exit-when-idle $LAT_IDLE) and the bare consumer (latency mode, own group) start together;" \
    "once both have every member assigned, generate $LAT_EVENTS records at $LAT_RATE/s"
  broker_start
  read -ra envs <<<"$(checkpoint_env "$CHECKPOINTS" latency)"
  ready=$OUT/latency.ready
  rm -f "$ready"
  run_consumer latency "$ready" "$LAT_IDLE" "${envs[@]}" &
  run_pid=$!
  if ((LAT_RATE > 0)); then
    lat_max=$((LAT_EVENTS / LAT_RATE + LAT_IDLE_S + 120))
  else
    lat_max=$((LAT_EVENTS / 20000 + LAT_IDLE_S + 120))
  fi
  run_bare latency-bare latency "$LAT_IDLE_S" "$lat_max" &
  bare_pid=$!
  BG_PIDS=("$run_pid" "$bare_pid")
  deadline=$((SECONDS + 60))
  until [[ -e $ready ]] && grep -q '^bare consumer: ready' "$OUT/latency-bare/stderr.log" 2>/dev/null; do
    kill -0 "$run_pid" 2>/dev/null || die "gmv run exited before assignment; see $OUT/latency/stderr.log"
    kill -0 "$bare_pid" 2>/dev/null || die "bare consumer exited before assignment; see $OUT/latency-bare/stderr.log"
    ((SECONDS < deadline)) || die "gmv and the bare consumer not both assigned within 60s; see $OUT/latency/stderr.log and $OUT/latency-bare/stderr.log"
    sleep 0.1
  done
  produce latency-generate "$LAT_EVENTS" "$LAT_RATE"
  wait "$run_pid" || log "gmv run exited non-zero (see $OUT/latency/stderr.log)"
  wait "$bare_pid" || log "bare consumer exited non-zero (see $OUT/latency-bare/stderr.log)"
  BG_PIDS=()
  echo "-- gmv run"
  summarize latency latency "$LAT_IDLE"
  echo "-- bare consumer (latency mode, same topic, own group)"
  bare_summary latency-bare "$LAT_EVENTS" || true
  latency_compare
  broker_stop
fi

# --- summary ---------------------------------------------------------------------------
echo "== summary (also in $SUMMARY)"
sed 's/^/  /' "$SUMMARY"
