#!/usr/bin/env bash
# Scale-out check on one box: a topic of SCALE_PARTITIONS partitions drained
# by SCALE_PROCESSES `gmv run --kafka` processes in one consumer group (each
# `--allow-partial`: it holds a share), then the global view assembled from
# the snapshots topic alone (`gmv serve --from-kafka --once`) is compared
# figure by figure with a `gmv run --input` of the same records: totals,
# transactions, mobile GMV, merchants per threshold, rejections, peak second,
# top merchants. Prints wall time, events/s, per-process CPU and peak RSS.
#
#   scripts/scale-out.sh                       # 64 partitions, 4 processes, 2M events
#   SCALE_EVENTS=4000000 SCALE_PROCESSES=8 scripts/scale-out.sh
#
# Environment (defaults): SCALE_PARTITIONS=64, SCALE_PROCESSES=4,
# SCALE_EVENTS=2000000, SCALE_WORKERS=1 (members per process),
# SCALE_BROKER_PORT=19792, SCALE_OUT=target/scale-out, SCALE_NO_BUILD=0.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTITIONS=${SCALE_PARTITIONS:-64}
PROCESSES=${SCALE_PROCESSES:-4}
EVENTS=${SCALE_EVENTS:-2000000}
WORKERS=${SCALE_WORKERS:-1}
PORT=${SCALE_BROKER_PORT:-19792}
OUT=${SCALE_OUT:-target/scale-out}
GMV=target/release/gmv

log() { echo "scale-out: $*" >&2; }
die() { log "$*"; exit 1; }
for n in "$PARTITIONS" "$PROCESSES" "$EVENTS" "$WORKERS"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "counts must be positive whole numbers (got $n)"
done

BROKER_UP=0
PIDS=()
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  ((BROKER_UP)) && scripts/kafka-broker.sh stop "$PORT" >/dev/null 2>&1
  exit "$rc"
}
trap cleanup EXIT

[[ ${SCALE_NO_BUILD:-0} == 1 ]] || cargo build --release --quiet --bin gmv
rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

scripts/kafka-broker.sh stop "$PORT" >/dev/null 2>&1 || true
BROKERS=$(scripts/kafka-broker.sh start "$PORT")
BROKER_UP=1
cat >"$OUT/gmv.toml" <<EOF
[kafka]
brokers = "$BROKERS"
group_id = "scale-out"
partitions = $PARTITIONS
[kafka.checkpoint]
dir = "$OUT/state"
EOF
export GMV_CONFIG=$OUT/gmv.toml

log "generating $EVENTS events into a file and into $PARTITIONS partitions"
"$GMV" generate --events "$EVENTS" --seed 11 -o "$OUT/events.jsonl" 2>/dev/null
"$GMV" generate --events "$EVENTS" --seed 11 --kafka "$BROKERS" --rate 0 2>"$OUT/produce.log"

log "the reference: gmv run --input on the same records"
"$GMV" run --input "$OUT/events.jsonl" --report "$OUT/file-report.json" \
  --dead-letter "$OUT/file-dead.jsonl" --progress never 2>"$OUT/file.log"

log "draining with $PROCESSES processes of $WORKERS member(s)"
started=$(date +%s.%N)
for i in $(seq 1 "$PROCESSES"); do
  /usr/bin/time -f "%U %S %M" -o "$OUT/time-$i" \
    "$GMV" run --kafka "$BROKERS" --workers "$WORKERS" --exit-when-idle 5s \
    --allow-partial --report "$OUT/report-$i.json" --progress never \
    2>"$OUT/run-$i.log" &
  PIDS+=($!)
done
for pid in "${PIDS[@]}"; do wait "$pid" || die "a process failed (see $OUT/run-*.log)"; done
PIDS=()
ended=$(date +%s.%N)

"$GMV" serve --from-kafka "$BROKERS" --once >"$OUT/global.json" 2>"$OUT/serve.log" \
  || die "gmv serve --from-kafka --once failed (see $OUT/serve.log)"

python3 - "$OUT" "$PROCESSES" "$EVENTS" "$started" "$ended" "$PARTITIONS" <<'PY'
import json, sys
out, processes, events, started, ended, partitions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
view = json.load(open(f"{out}/global.json"))
want = json.load(open(f"{out}/file-report.json"))
keys = ["gmv_cny", "gmv_usd", "transactions", "mobile_gmv_cny", "peak_tps", "peak_second",
        "merchants", "thresholds", "rejected"]
wrong = [k for k in keys if view.get(k) != want.get(k)]
top = lambda r: [(m["merchant_id"], m["gmv_cny"]) for m in r.get("top_merchants", [])[:10]]
if top(view) != top(want):
    wrong.append("top_merchants")
covered = len(view["accounting"]["partitions"])
if covered != partitions:
    wrong.append(f"accounting.partitions ({covered} of {partitions})")
if view["accounting"]["consumed"] != want["accounting"]["consumed"]:
    wrong.append("accounting.consumed")
wall = ended - started
cpu, rss = [], []
for i in range(1, processes + 1):
    user, system, kb = open(f"{out}/time-{i}").read().split()[-3:]
    cpu.append(float(user) + float(system))
    rss.append(int(kb) // 1024)
print(f"global view of {partitions} partitions from {processes} processes: "
      + ("exact (every figure equals gmv run --input)" if not wrong else "DIFFERS in " + ", ".join(wrong)))
print(f"  GMV {view['gmv_cny']} CNY, {view['transactions']} transactions, consumed {view['accounting']['consumed']}")
print(f"  drain wall {wall:.1f} s incl. group joins and the 5 s idle exit: {events / wall:,.0f} events/s")
print(f"  CPU per process: {', '.join(f'{c:.1f} s' for c in cpu)}; total {sum(cpu):.1f} s = {sum(cpu) / events * 1e6:.2f} µs/event")
print(f"  peak RSS per process: {', '.join(f'{r} MiB' for r in rss)}")
sys.exit(1 if wrong else 0)
PY
