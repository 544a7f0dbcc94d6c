#!/usr/bin/env bash
# The read side of BENCHMARKS.md on one ledger of EVENTS events (default 1,000,000), filled by
# the load generator (100-event batches, 8 clients: half commitments, each a new stream, half
# export-rule changes): query latency alone and under appends, cold start, rebuild, RSS and
# bytes on disk. Each measurement is repeated RUNS times (default 3) and the median printed.
#   usage: benches/views.sh
events=${EVENTS:-1000000}
runs=${RUNS:-3}
source "$(dirname "$0")/common.sh"

echo "== filling a ledger with $events events"
start_server
"$bin" loadgen --addr "$addr" --clients 8 --batch 100 --duration 600 --events "$events" --output json
until [ "$("$bin" status --addr "$addr" --output json | field lag)" = 0 ]; do sleep 0.2; done
"$bin" status --addr "$addr" --output json
stop_server
echo "disk: $(du -sb "$work/data" | cut -f1) bytes for $("$bin" verify --data "$work/data" --output json | field position) events"

echo "== cold start (to 'listening', the ledger and its views open) and RSS after it"
starts=()
for run in $(seq "$runs"); do
  start_server
  sleep 1
  rss=$(ps -o rss= -p "$server" | tr -d ' ')
  echo "start $run: ${serving} s, RSS $((rss / 1024)) MiB, views lag $("$bin" status --addr "$addr" --output json | field lag)"
  starts+=("$serving")
  [ "$run" = "$runs" ] || stop_server
done
echo "cold start median: $(median "${starts[@]}") s"

echo "== queries (8 clients, open loop), alone and beside appends"
query() { # label, then loadgen flags
  local label=$1; shift
  local p50=() p99=()
  for run in $(seq "$runs"); do
    local line
    line=$("$bin" loadgen --addr "$addr" --duration 10 --output json "$@")
    echo "$label run $run: $line"
    p50+=("$(echo "$line" | field query_p50_ms)"); p99+=("$(echo "$line" | field query_p99_ms)")
  done
  echo "$label median: p50 $(median "${p50[@]}") ms, p99 $(median "${p99[@]}") ms"
}
query "GetMember at 5,000/s" --clients 8 --query get-member --rate 5000
query "ListExportRules at 1,000/s" --clients 8 --query list-export-rules --rate 1000
query "GetMember 90 % + appends 10 %, 32 clients closed loop" --clients 32 --query get-member --query-percent 90
query "ListExportRules 90 % + appends 10 %, 32 clients closed loop" --clients 32 --query list-export-rules --query-percent 90
rss=$(ps -o rss= -p "$server" | tr -d ' ')
echo "RSS after the query runs: $((rss / 1024)) MiB"

echo "== 32 writers (one event per request) on this ledger: throughput and the server's peak RSS"
line=$("$bin" loadgen --addr "$addr" --clients 32 --batch 1 --duration 10 --output json)
echo "32 writers: $line"
echo "peak RSS (VmHWM) with $events+ events and 32 writers: $(($(awk '/VmHWM/ {print $2}' "/proc/$server/status") / 1024)) MiB"

echo "== rebuild of every view from the log"
rates=()
for run in $(seq "$runs"); do
  line=$("$bin" rebuild --addr "$addr" --output json)
  echo "rebuild $run: $line"
  rates+=("$(echo "$line" | field events_per_sec)")
done
echo "rebuild median: $(median "${rates[@]}") events/s"
rss=$(ps -o rss= -p "$server" | tr -d ' ')
echo "RSS after the rebuilds: $((rss / 1024)) MiB"
stop_server
