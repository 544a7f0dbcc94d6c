#!/usr/bin/env bash
# Issue 6's latency target: single-event durable appends at half of the peak single-event rate
# must have p99 ≤ 2 × the p99 of one fdatasync on this disk. Measures, in one session:
#   1. the fdatasync tail (`cargo bench --bench fsync`);
#   2. the peak: 1 event × 32 clients, closed loop (median of RUNS runs, fresh server each);
#   3. the same 32 clients open loop at half that rate (`loadgen --rate`), RUNS runs.
#   usage: benches/half_peak.sh [seconds per run, default 8]
secs=${1:-8}
runs=${RUNS:-3}
source "$(dirname "$0")/common.sh"

fsync=$(cargo bench --quiet --bench fsync -- 3000 2>/dev/null | tail -1)
echo "fdatasync: $fsync"

run() { # loadgen flags → JSON line
  FRESH=1 start_server
  "$bin" loadgen --addr "$addr" --duration "$secs" --output json --clients 32 --batch 1 "$@"
  stop_server
}

# The median of one field over the JSON lines on stdin.
median_of() { python3 -c 'import json, statistics, sys; print(statistics.median(json.loads(l)[sys.argv[1]] for l in sys.stdin))' "$1"; }

peaks=()
for i in $(seq "$runs"); do line=$(run); echo "peak run $i: $line"; peaks+=("$line"); done
peak=$(printf '%s\n' "${peaks[@]}" | median_of events_per_sec)
rate=$(python3 -c "print(round($peak / 2))")
halves=()
for i in $(seq "$runs"); do line=$(run --rate "$rate"); echo "half-peak run $i ($rate events/s): $line"; halves+=("$line"); done
p99=$(printf '%s\n' "${halves[@]}" | median_of p99_ms)
python3 - "$fsync" "$peak" "$rate" "$p99" <<'PY'
import json, sys
fsync, peak, rate, p99 = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
bound = 2 * fsync["p99_us"] / 1000
print("peak %.0f events/s; at %s events/s: p99 %.2f ms; fdatasync p99 %.2f ms; target p99 <= %.2f ms: %s"
      % (peak, rate, p99, fsync["p99_us"] / 1000, bound, "met" if p99 <= bound else "missed by %.1fx" % (p99 / bound)))
PY
