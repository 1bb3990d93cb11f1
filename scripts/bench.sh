#!/usr/bin/env bash
# End-to-end benchmark: `gmv run` over a generated 11.11 file of EVENTS
# records (default 5M, ~158 bytes each), printing events/s, latency
# percentiles (per batch, read to aggregated) and peak RSS; then the criterion
# decode+aggregate benchmark (one core) unless BENCH_SKIP_CRITERION=1.
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
RUST_LOG=warn "$GMV" run --input "$INPUT" --workers "$WORKERS" --progress never \
  --report "$OUT/report.json" --dead-letter "$OUT/dead-letters.jsonl" &
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
python3 - "$OUT/report.json" "$start" "$end" "$peak_kb" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
seconds = float(sys.argv[3]) - float(sys.argv[2])
consumed = report["accounting"]["consumed"]
lat = report["latency_ms"]
print(f"gmv run: {consumed} records in {seconds:.2f}s = {consumed / seconds / 1e6:.2f}M events/s (wall, incl. start-up and report)")
print(f"batch latency (read -> aggregated): p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, p999 {lat['p999']:.2f} ms, max {lat['max']:.2f} ms")
print(f"peak RSS: {int(sys.argv[4]) / 1024:.0f} MiB; merchants {report['merchants']}; dedup ids {report['dedup']['ids_held']} in {report['dedup']['bytes'] / 2**20:.0f} MiB")
print(f"GMV CNY {report['gmv_cny']}, rejected {report['accounting']['rejected']}")
PY
if [[ "${BENCH_SKIP_CRITERION:-0}" != 1 ]]; then
  cargo bench -p gmv-core --bench decode_aggregate 2>&1 | grep -E "^engine|time:|thrpt:|mean record"
fi
