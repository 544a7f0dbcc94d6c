#!/usr/bin/env bash
# The PostgreSQL reference of issue 6, measured on this machine beside our own figures: a
# Message DB-style event table (global position, per-stream position, unique (stream, position)
# and unique id; one function that takes an advisory lock per stream, checks the expected
# version and inserts), durable commits (fsync on, synchronous_commit on, the defaults), driven
# by pgbench with the same workload as `pax-ledger loadgen`: each client's events alternate
# between a commitment (a new stream) and a change of the client's own export rule (its
# stream's next version, checked), ≈ 200-byte payloads.
#
# Then the same scenarios against `pax-ledger serve` with `pax-ledger loadgen`, alternating
# run by run, so that both are measured in the same minutes of the same noisy machine.
#   usage: benches/postgres.sh [seconds per run, default 8]   (RUNS=3 by default)
secs=${1:-8}
runs=${RUNS:-3}
pg_port=${PG_PORT:-54329}
source "$(dirname "$0")/common.sh"

if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
# PostgreSQL refuses to run as root: the cluster belongs to the `postgres` user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
on_exit() { as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; }

mkdir "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
cat >>"$work/pg/postgresql.conf" <<EOF
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/pg'
max_connections = 200
shared_buffers = 256MB
# Durability as shipped: every commit waits for its WAL fdatasync.
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w start >/dev/null
psql() { command psql -q -X -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
pgbench() { command "$pgbin/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }

schema() {
  psql -d postgres -c 'DROP DATABASE IF EXISTS ledger' -c 'CREATE DATABASE ledger' 2>&1 | grep -v NOTICE || true
  psql -d ledger <<'SQL'
CREATE TABLE messages (
  global_position bigserial PRIMARY KEY,
  position bigint NOT NULL,
  time timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
  stream_name text NOT NULL,
  type text NOT NULL,
  data jsonb,
  metadata jsonb,
  id uuid NOT NULL
);
CREATE UNIQUE INDEX messages_id ON messages (id);
CREATE UNIQUE INDEX messages_stream ON messages (stream_name, position);

-- Message DB's write_message, reduced to what it does per write: lock the stream, read its
-- version, check the expected one, insert.
CREATE FUNCTION write_message(_id uuid, _stream text, _type text, _data jsonb, _metadata jsonb,
                              _expected bigint DEFAULT NULL) RETURNS bigint AS $$
DECLARE
  _version bigint;
  _next bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(_stream, 0));
  SELECT max(position) INTO _version FROM messages WHERE stream_name = _stream;
  _version := coalesce(_version, -1);
  IF _expected IS NOT NULL AND _expected <> _version THEN
    RAISE EXCEPTION 'Wrong expected version: % (stream: %, stream version: %)', _expected, _stream, _version;
  END IF;
  _next := _version + 1;
  INSERT INTO messages (id, stream_name, position, type, data, metadata)
    VALUES (_id, _stream, _next, _type, _data, _metadata);
  RETURN _next;
END;
$$ LANGUAGE plpgsql;
SQL
}

# One pgbench transaction of `batch` events: per event, a commitment (a new stream, expected
# version -1) or the client's export rule changed (no expected version, like loadgen's appends).
script() { # batch
  local batch=$1 file="$work/append-$1.sql"
  {
    [ "$batch" -gt 1 ] && echo 'BEGIN;'
    for i in $(seq "$batch"); do
      if [ $((i % 2)) = 1 ]; then
        echo "SELECT write_message(gen_random_uuid(), 'commitment-' || gen_random_uuid(), 'commitment_made', ('{\"member\": \"LG' || :client_id || '\", \"pillar\": \"ai_compute\", \"description\": \"Load-test commitment of client ' || :client_id || '\", \"due_on\": \"2027-06-30\"}')::jsonb, '{\"actor\": \"loadgen\", \"labels\": {\"illustrative\": \"true\"}}'::jsonb, -1);"
      else
        echo "SELECT write_message(gen_random_uuid(), 'export-rule-loadgen-' || :client_id, 'export_rule_changed', '{\"item\": \"Load-test accelerator\", \"origin\": \"US\", \"destination\": \"CN\", \"treatment\": \"allowed_with_levy\", \"levy_bps\": 25, \"effective_from\": \"2026-01-01\", \"authority\": \"Load test\"}'::jsonb, '{\"actor\": \"loadgen\", \"labels\": {\"illustrative\": \"true\"}}'::jsonb);"
      fi
    done
    [ "$batch" -gt 1 ] && echo 'COMMIT;'
  } >"$file"
  chmod 644 "$file"
  echo "$file"
}

pg_run() { # clients batch → one JSON line
  local clients=$1 batch=$2 file
  file=$(script "$batch")
  schema
  rm -f "$work"/pgbench_log.*
  if ! (cd "$work" && pgbench -n -d ledger -c "$clients" -j 2 -T "$secs" -f "$file" -l --log-prefix="$work/pgbench_log" >"$work/pgbench.out" 2>&1) \
     || grep -q 'failed transactions: [1-9]' "$work/pgbench.out"; then
    cat "$work/pgbench.out" >&2
    exit 1
  fi
  local bytes
  bytes=$(psql -d ledger -At -c "SELECT pg_total_relation_size('messages')")
  local events
  events=$(psql -d ledger -At -c "SELECT count(*) FROM messages")
  cat "$work"/pgbench_log.* | python3 -c '
import json, sys
lat = sorted(int(line.split()[2]) / 1000 for line in sys.stdin)  # µs → ms
secs, batch, events, size = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(json.dumps({"events_per_sec": events / secs, "p50_ms": q(0.5), "p99_ms": q(0.99), "acked": events,
                  "bytes_per_event": round(size / max(events, 1))}))' "$secs" "$batch" "$events" "$bytes"
}

ours_run() { # clients batch → one JSON line
  local clients=$1 batch=$2
  FRESH=1 start_server
  "$bin" loadgen --addr "$addr" --duration "$secs" --output json --clients "$clients" --batch "$batch"
  stop_server
}

scenario() { # name clients batch
  local name=$1 clients=$2 batch=$3 pg=() ours=()
  for run in $(seq "$runs"); do
    local line
    line=$(pg_run "$clients" "$batch"); echo "$name postgres run $run: $line"; pg+=("$line")
    line=$(ours_run "$clients" "$batch"); echo "$name pax-ledger run $run: $line"; ours+=("$line")
  done
  python3 - "$name" "${pg[@]}" -- "${ours[@]}" <<'PY'
import json, statistics, sys
name, rest = sys.argv[1], sys.argv[2:]
cut = rest.index("--")
pg, ours = [json.loads(x) for x in rest[:cut]], [json.loads(x) for x in rest[cut + 1:]]
m = lambda rows, k: statistics.median(r[k] for r in rows)
print("%s median: postgres %.0f events/s (p99 %.2f ms), pax-ledger %.0f events/s (p99 %.2f ms), ratio %.2f"
      % (name, m(pg, "events_per_sec"), m(pg, "p99_ms"), m(ours, "events_per_sec"), m(ours, "p99_ms"),
         m(ours, "events_per_sec") / m(pg, "events_per_sec")))
PY
}

scenario "1 event x 32 clients" 32 1
scenario "100 events x 8 clients" 8 100
