#!/usr/bin/env bash
# Installs the Python client's packages (examples/python/requirements.txt) and generates its
# gRPC stubs from proto/ (pax.ledger.v1) and the vendored grpc.health.v1 and
# grpc.reflection.v1 protos (grpc's own, Apache-2.0, as tonic-health and tonic-reflection
# 0.14.9 ship them) into examples/python/gen/. Idempotent; one run at a time (test
# processes may call it at once). Prints nothing on success; on failure, the step's output.
#   usage: examples/python/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mkdir -p "$root/target"
exec 9>"$root/target/.python-setup.lock"
flock 9

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -r "$here/requirements.txt" </dev/null >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup.sh: pip install failed" >&2
  exit 1
fi
gen="$here/gen"
partial="$here/gen.partial"
rm -rf "$partial" && mkdir -p "$partial"
if ! python3 -m grpc_tools.protoc -I "$root/proto" -I "$here/proto" \
  --python_out="$partial" --grpc_python_out="$partial" \
  "$root"/proto/pax/ledger/v1/*.proto "$here/proto/grpc_health/v1/health.proto" \
  "$here/proto/grpc_reflection/v1/reflection.proto" >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup.sh: generating the stubs failed" >&2
  exit 1
fi
# Packages, so that `import pax.ledger.v1.ledger_pb2` works from gen/ on sys.path.
find "$partial" -type d -exec touch {}/__init__.py \;
rm -rf "$gen" && mv "$partial" "$gen"
