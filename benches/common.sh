# Shared by the benchmark scripts (sourced, not run): a release build, a scratch directory
# removed on exit, and a fresh `pax-ledger serve` started and stopped on PORT.
#   after sourcing: $bin, $work, $port, $addr; start_server, stop_server, median, field
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
port=${PORT:-50777}
addr="http://127.0.0.1:$port"
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/pax-ledger
work=$(mktemp -d)
chmod 755 "$work"
# A script may define `on_exit` for more clean-up (it runs first).
trap 'declare -F on_exit >/dev/null && on_exit; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Starts a server on $work/data (kept unless FRESH=1 is given), with any further `serve` flags
# given as arguments; sets $server (its pid) and $serving (seconds from exec to its `listening`
# line).
start_server() {
  [ "${FRESH:-0}" = 1 ] && rm -rf "$work/data"
  : >"$work/serve.out"
  local began
  began=$(date +%s.%N)
  "$bin" serve --data "$work/data" --listen "127.0.0.1:$port" "$@" >"$work/serve.out" 2>"$work/serve.err" &
  server=$!
  until grep -q listening "$work/serve.out" 2>/dev/null; do
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.err" >&2; echo "the server did not start" >&2; exit 1; }
    sleep 0.01
  done
  serving=$(python3 -c "print(round($(date +%s.%N) - $began, 3))")
}
# Stops the server; prints its commit-group statistics (the writer logs them at stop) to stderr.
stop_server() {
  kill -TERM "$server"
  wait "$server" || true
  grep -o 'groups=.*' "$work/serve.err" | sed 's/^/  server: /' >&2 || true
}
# The median of the numbers given as arguments.
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# One field of the JSON object on stdin.
field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }
