#!/usr/bin/env bash
# End-to-end benchmark: `gmv run` over a generated 11.11 file of EVENTS
# records (default 5M, ~158 bytes each), printing events/s, latency
# percentiles (a chunk's read to the snapshot that includes it) and peak
# RSS; then the criterion decode+aggregate benchmark (one partition, one
# core) unless BENCH_SKIP_CRITERION=1.
#   scripts/bench.sh            # 5M events, all cores
#   EVENTS=10000000 WORKERS=1 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-5000000}
WORKERS=${WORKERS:-0}
OUT=target/bench
mkdir -p "$OUT"
cargo build --release --quiet --bin gmv
GMV=target/release/gmv
INPUT="$OUT/events-$EVENTS.jsonl"
if [[ ! -s "$INPUT" ]]; then
  echo "generating $EVENTS events into $INPUT"
  "$GMV" generate --events "$EVENTS" --seed 11 -o "$INPUT"
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "input: $INPUT ($(du -h "$INPUT" | cut -f1), $EVENTS records)"

# Peak RSS from /proc (VmHWM), sampled until the process ends.
RUST_LOG=warn,gmv=info "$GMV" --log-format json run --input "$INPUT" --workers "$WORKERS" --progress never \
  --report "$OUT/report.json" --dead-letter "$OUT/dead-letters.jsonl" 2>"$OUT/run.log" &
pid=$!
start=$(date +%s.%N)
peak_kb=0
while kill -0 "$pid" 2>/dev/null; do
  kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [[ -n "$kb" && "$kb" -gt "$peak_kb" ]] && peak_kb=$kb
  sleep 0.05
done
wait "$pid"
end=$(date +%s.%N)
rm -f "$OUT/dead-letters.jsonl"
python3 - "$OUT/report.json" "$start" "$end" "$peak_kb" "$OUT/run.log" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
seconds = float(sys.argv[3]) - float(sys.argv[2])
consumed = report["accounting"]["consumed"]
done = {}
for line in open(sys.argv[5]):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    if entry.get("fields", {}).get("message") == "done":
        done = entry["fields"]
print(f"gmv run: {consumed} records in {seconds:.2f}s = {consumed / seconds / 1e6:.2f}M events/s (wall, incl. start-up and report)")
if done:
    print(f"latency (chunk read -> snapshot published): p50 {done['latency_p50_ms']:.1f} ms, p99 {done['latency_p99_ms']:.1f} ms, p999 {done['latency_p999_ms']:.1f} ms")
    print(f"dedup ids {done['dedup_ids']} in {done['dedup_mib']} MiB")
print(f"peak RSS: {int(sys.argv[4]) / 1024:.0f} MiB; merchants {report['merchants']}")
print(f"GMV CNY {report['gmv_cny']}, rejected {report['accounting']['rejected']}")
PY
if [[ "${BENCH_SKIP_CRITERION:-0}" != 1 ]]; then
  cargo bench -p gmv-core --bench decode_aggregate 2>&1 | grep -E "^engine|time:|thrpt:|mean record"
fi
