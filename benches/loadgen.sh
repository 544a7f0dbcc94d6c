#!/usr/bin/env bash
# End-to-end append scenarios of BENCHMARKS.md: a fresh release server per scenario, the
# load generator in the same machine, each scenario run RUNS times (default 3); prints every
# run's JSON and the median events/s and p99.
#   usage: benches/loadgen.sh [seconds per run, default 10]
secs=${1:-10}
runs=${RUNS:-3}
source "$(dirname "$0")/common.sh"

scenario() { # name, then loadgen flags
  local name=$1; shift
  local results=()
  for run in $(seq "$runs"); do
    FRESH=1 start_server
    local line
    line=$("$bin" loadgen --addr "$addr" --duration "$secs" --output json "$@")
    local rss_kib
    rss_kib=$(ps -o rss= -p "$server" | tr -d ' ')
    stop_server
    local bytes
    bytes=$(du -sb "$work/data" | cut -f1)
    echo "$name run $run: $line rss_mib=$((rss_kib / 1024)) disk_bytes=$bytes"
    results+=("$line")
  done
  printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin]
print("'"$name"' median: %.0f events/s, p99 %.2f ms" % (statistics.median(r["events_per_sec"] for r in rows), statistics.median(r["p99_ms"] for r in rows)))'
}

scenario "1 event x 1 client" --clients 1 --batch 1
scenario "1 event x 8 clients" --clients 8 --batch 1
scenario "1 event x 32 clients" --clients 32 --batch 1
scenario "1 event x 128 clients" --clients 128 --batch 1
scenario "100 events x 8 clients" --clients 8 --batch 100
