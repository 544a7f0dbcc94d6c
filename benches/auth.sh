#!/usr/bin/env bash
# The cost of authentication, side by side in one run: single-event appends (1 event × 32
# clients) and batches (100 events × 8 clients) against a fresh release server per run, in six
# setups, alternated run by run (ROUNDS rounds, default 3; the order of the setups rotates each
# round), then the median per setup and its ratio to the baselines:
#   plain-open   plaintext, no principal (the ledger is open): the baseline
#   plain-token  plaintext, an admin's bearer token (bootstrapped on the fresh data directory)
#   tls-open     TLS (server certificate only), no principal: the cost of TLS itself
#   tls-token    TLS, the admin's bearer token
#   mtls-open    mutual TLS (a client certificate is required), no principal
#   mtls-cert    mutual TLS, the client certificate bound to the admin: no token sent
#   plain-signed plaintext, the admin's token, and every event signed with a key registered to
#                the admin (loadgen --sign-key): the cost of signed events, against plain-token
# The per-principal rate limit is set far above what the runs reach
# (PAX_LEDGER_PRINCIPAL_REQUESTS_PER_SECOND=1000000, against the default 5000 that 32 clients of
# one principal would hit), so that it never refuses, yet its bucket is still taken on every
# request as in production (0 would skip it); every run must end with 0 errors.
# A throwaway CA, server and client certificate are made with openssl. SETUPS="…" runs a subset
# of the setups, WORKLOADS="1x32" (or "100x8") one of the workloads.
# `cargo bench --bench auth_layer` measures the layer's CPU per request without the network.
#   usage: [ROUNDS=3] benches/auth.sh [seconds per run, default 10]
secs=${1:-10}
rounds=${ROUNDS:-3}
setups=(${SETUPS:-plain-open plain-token tls-open tls-token mtls-open mtls-cert plain-signed})
source "$(dirname "$0")/common.sh"
export PAX_LEDGER_PRINCIPAL_REQUESTS_PER_SECOND=1000000
unset PAX_LEDGER_TOKEN PAX_LEDGER_ADDR PAX_LEDGER_CA_CERT PAX_LEDGER_CLIENT_CERT PAX_LEDGER_CLIENT_KEY

# A throwaway PKI (as in the README): a CA, a server certificate for localhost, a client's.
pki=$work/pki
mkdir -p "$pki"
(
  cd "$pki"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.pem
  openssl req "${ec[@]}" -subj /CN=localhost -keyout server.key -out server.csr
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -days 2 -out server.pem \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth')
  openssl req "${ec[@]}" -subj /CN=bench-admin -keyout client.key -out client.csr
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -days 2 -out client.pem \
    -extfile <(printf 'extendedKeyUsage=clientAuth')
) 2>"$work/openssl.err" || { cat "$work/openssl.err" >&2; exit 1; }
tls_serve=(--tls-cert "$pki/server.pem" --tls-key "$pki/server.key")
mtls_serve=("${tls_serve[@]}" --tls-client-ca "$pki/ca.pem")
https="https://localhost:$port"
client_cert=(--client-cert "$pki/client.pem" --client-key "$pki/client.key")

# Starts a fresh server for `setup` and sets `client` to the loadgen flags that reach it.
start_setup() {
  local setup=$1 token=""
  rm -rf "$work/data"
  case $setup in
    *-token | *-cert | *-signed) token=$("$bin" principal bootstrap --data "$work/data" 2>/dev/null) ;;
  esac
  case $setup in
    plain-*) start_server ;;
    tls-*) start_server "${tls_serve[@]}" ;;
    mtls-*) start_server "${mtls_serve[@]}" ;;
  esac
  case $setup in
    plain-open) client=(--addr "$addr") ;;
    plain-token) client=(--addr "$addr" --token "$token") ;;
    tls-open) client=(--addr "$https" --ca-cert "$pki/ca.pem") ;;
    tls-token) client=(--addr "$https" --ca-cert "$pki/ca.pem" --token "$token") ;;
    mtls-open) client=(--addr "$https" --ca-cert "$pki/ca.pem" "${client_cert[@]}") ;;
    plain-signed)
      rm -f "$work/admin.key"
      "$bin" key new "$work/admin.key" >/dev/null
      "$bin" principal register-key admin --key "$work/admin.key" --addr "$addr" --token "$token" >/dev/null
      client=(--addr "$addr" --token "$token" --sign-key "$work/admin.key")
      ;;
    mtls-cert)
      "$bin" principal bind-cert admin --cert "$pki/client.pem" \
        --addr "$https" --ca-cert "$pki/ca.pem" "${client_cert[@]}" --token "$token" >/dev/null
      client=(--addr "$https" --ca-cert "$pki/ca.pem" "${client_cert[@]}")
      ;;
    *) echo "unknown setup $setup" >&2; exit 2 ;;
  esac
}

results=$work/results.tsv
: >"$results"
workloads=()
for workload in "1x32:--clients 32 --batch 1" "100x8:--clients 8 --batch 100"; do
  [[ " ${WORKLOADS:-1x32 100x8} " == *" ${workload%%:*} "* ]] && workloads+=("$workload")
done
tick=$(getconf CLK_TCK)
# CPU seconds (user + system, all threads) the server has used so far.
server_cpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$server/stat"; }
echo "$(nproc) cores; $rounds rounds of ${#setups[@]} setups × ${#workloads[@]} workloads, $secs s per run; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  # Rotate the order each round, so that no setup always runs first (or last) in a round.
  shift_by=$(((round - 1) % ${#setups[@]}))
  order=("${setups[@]:shift_by}" "${setups[@]:0:shift_by}")
  for workload in "${workloads[@]}"; do
    name=${workload%%:*}
    read -r -a flags <<<"${workload#*:}"
    for setup in "${order[@]}"; do
      start_setup "$setup"
      before=$(server_cpu)
      # The load generator's own CPU (user and system seconds) too: TLS costs the client as well.
      TIMEFORMAT='%U %S'
      { time "$bin" loadgen "${client[@]}" --duration "$secs" --output json "${flags[@]}" \
        >"$work/loadgen.out" 2>"$work/loadgen.err"; } 2>"$work/loadgen.time" || {
        echo "loadgen failed in $setup $name: $(cat "$work/loadgen.out" "$work/loadgen.err")" >&2
        exit 1
      }
      after=$(server_cpu)
      stop_server
      read -r eps p99 errors server_us client_us < <(python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).read())
user, system = map(float, open(sys.argv[2]).read().split()[-2:])
acked = max(r["acked"], 1)
print(round(r["events_per_sec"]), r["p99_ms"], r["errors"],
      round((float(sys.argv[4]) - float(sys.argv[3])) * 1e6 / acked, 1), round((user + system) * 1e6 / acked, 1))
' "$work/loadgen.out" "$work/loadgen.time" "$before" "$after")
      [ "$errors" = 0 ] || { echo "$setup $name: $errors errors: $(cat "$work/loadgen.out")" >&2; exit 1; }
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$setup" "$eps" "$p99" "$server_us" "$client_us" >>"$results"
      printf 'round %s  %-6s %-12s %8s events/s  p99 %6.2f ms  CPU µs/event: server %6.1f  loadgen %6.1f\n' \
        "$round" "$name" "$setup" "$eps" "$p99" "$server_us" "$client_us"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "${setups[*]}" <<'EOF'
import statistics, sys
from collections import defaultdict
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
setups = sys.argv[2].split()
eps, p99, server, client = (defaultdict(dict) for _ in range(4))
for round_, workload, setup, e, p, s, c in rows:
    eps[workload, setup][round_] = int(e)
    p99[workload, setup][round_] = float(p)
    server[workload, setup][round_] = float(s)
    client[workload, setup][round_] = float(c)
def med(d):
    return statistics.median(d.values())
# The ratio of two setups: of their medians, and the median of the per-round ratios (the two
# ran minutes apart at most, so a slow spell of the machine tends to touch both).
def ratios(table, workload, a, b):
    x, y = table[workload, a], table[workload, b]
    paired = statistics.median(x[r] / y[r] for r in x if r in y)
    return f"{med(x) / med(y):.3f} / {paired:.3f}"
# The baseline of each setup: the open ledger on the same transport for the authenticated ones
# (the cost of authentication alone), plain-open for the open TLS ones (the cost of TLS).
baseline = {"plain-token": "plain-open", "tls-open": "plain-open", "tls-token": "tls-open",
            "mtls-open": "plain-open", "mtls-cert": "mtls-open", "plain-signed": "plain-token"}
for workload in dict.fromkeys(row[1] for row in rows):
    n = len(eps[workload, setups[0]])
    print(f"\n{workload}: events/s per round and their median; medians of p99 and of CPU µs per event (server,")
    print("loadgen); ratios as 'of the medians / median of the per-round ratios'")
    print("| setup | " + " | ".join(f"round {i + 1}" for i in range(n))
          + " | median events/s | p99 | server CPU µs/event | loadgen CPU µs/event"
          + " | events/s ÷ plain-open | events/s ÷ baseline | server CPU ÷ baseline |")
    print("|---|" + "---:|" * (n + 7))
    for s in setups:
        base = baseline.get(s)
        has_base = base in setups
        cells = [f"{x:,}" for x in eps[workload, s].values()]
        print(f"| {s} | " + " | ".join(cells)
              + f" | {med(eps[workload, s]):,.0f} | {med(p99[workload, s]):.2f} ms"
              + f" | {med(server[workload, s]):.1f} | {med(client[workload, s]):.1f}"
              + (f" | {ratios(eps, workload, s, 'plain-open')}" if "plain-open" in setups and s != "plain-open" else " | —")
              + (f" | {ratios(eps, workload, s, base)} ({base})" if has_base else " | —")
              + (f" | {ratios(server, workload, s, base)}" if has_base else " | —") + " |")
EOF
