#!/usr/bin/env bash
# Backups in BENCHMARKS.md, on one ledger of EVENTS events (default 300,000) filled by the load
# generator (100-event batches, 8 clients): a full online backup, the same while 8 clients
# append, an incremental one after INCREMENT more events (default 10,000), verify --backup and
# restore; beside them, in the same run, the offline export and import of the same ledger.
# Each timed step is repeated RUNS times (default 3) into fresh directories; medians printed.
#   usage: benches/backup.sh
events=${EVENTS:-300000}
increment=${INCREMENT:-10000}
runs=${RUNS:-3}
source "$(dirname "$0")/common.sh"

secs() { # runs the command given, prints its wall time in seconds on stdout, its output on stderr
  local began
  began=$(date +%s.%N)
  "$@" >&2
  python3 -c "print(round($(date +%s.%N) - $began, 3))"
}

echo "== filling a ledger with $events events"
start_server
"$bin" loadgen --addr "$addr" --clients 8 --batch 100 --duration 600 --events "$events" --output json >/dev/null 2>&1
echo "log: $("$bin" status --addr "$addr" --output json | field position) events, $(du -sb "$work/data" | cut -f1) bytes on disk"

full=(); loaded=(); incr=(); verify=(); restore=()
for run in $(seq "$runs"); do
  rm -rf "$work/b" "$work/r"
  full+=("$(secs "$bin" backup --addr "$addr" --to "$work/b" --output json)")
  echo "full backup $run: ${full[-1]} s, $(du -sb "$work/b" | cut -f1) bytes"
  verify+=("$(secs "$bin" verify --backup "$work/b" --output json)")
  restore+=("$(secs "$bin" restore --from "$work/b" --data "$work/r" --output json)")
  echo "verify --backup $run: ${verify[-1]} s; restore $run: ${restore[-1]} s"
  "$bin" loadgen --addr "$addr" --clients 8 --batch 100 --duration 600 --events "$increment" --output json >/dev/null 2>&1
  incr+=("$(secs "$bin" backup --addr "$addr" --to "$work/b" --output json)")
  echo "incremental backup $run ($increment events): ${incr[-1]} s, segment $(ls -S "$work/b"/*.segment | tail -1 | xargs stat -c %s) bytes"
done

echo "== appends alone, then with a full backup running beside them (8 clients, 100-event batches, 10 s)"
alone=(); beside=()
for run in $(seq "$runs"); do
  line=$("$bin" loadgen --addr "$addr" --clients 8 --batch 100 --duration 10 --output json 2>/dev/null)
  alone+=("$(echo "$line" | field events_per_sec)")
  rm -rf "$work/b2"
  ( sleep 1; "$bin" backup --addr "$addr" --to "$work/b2" --output json >"$work/b2.out" 2>&1 ) &
  beside_backup=$!
  line=$("$bin" loadgen --addr "$addr" --clients 8 --batch 100 --duration 10 --output json 2>/dev/null)
  wait "$beside_backup"
  beside+=("$(echo "$line" | field events_per_sec)")
  echo "run $run: alone ${alone[-1]} events/s, beside a backup ${beside[-1]} events/s; backup: $(cat "$work/b2.out")"
done
stop_server

echo "== offline, same ledger (server stopped): export and import"
export_s=(); import_s=()
for run in $(seq "$runs"); do
  rm -rf "$work/e.jsonl" "$work/i"
  export_s+=("$(secs "$bin" export --data "$work/data" --to "$work/e.jsonl" --output json)")
  import_s+=("$(secs "$bin" import --bundle "$work/e.jsonl" --data "$work/i" --output json)")
done

echo "== medians of $runs"
echo "full online backup: $(median "${full[@]}") s for $events events"
echo "incremental backup of $increment events: $(median "${incr[@]}") s"
echo "verify --backup: $(median "${verify[@]}") s; restore: $(median "${restore[@]}") s"
echo "offline export: $(median "${export_s[@]}") s; import: $(median "${import_s[@]}") s"
echo "appends: alone $(median "${alone[@]}") events/s, beside a backup $(median "${beside[@]}") events/s"
