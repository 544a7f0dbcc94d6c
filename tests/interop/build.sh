#!/usr/bin/env bash
# Builds tests/interop/tlogcheck (pax-ledger's transparency artefacts checked with Go's
# golang.org/x/mod/sumdb/note and .../tlog) and runs its Go tests, fully offline:
# Debian's Go 1.19 and x/mod 0.7.0 (installed here if missing), GOPATH mode, no module
# proxy. Usage: tests/interop/build.sh [OUTPUT] (default: target/interop/tlogcheck
# under the repository root; a relative OUTPUT is taken from the current directory).
# Prints only the built binary's path on success; on failure, the failing step's output.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/interop/tlogcheck}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

xmod=/usr/share/gocode/src/golang.org/x/mod/sumdb
if ! command -v go >/dev/null 2>&1 || [ ! -f "$xmod/note/note.go" ] || [ ! -f "$xmod/tlog/tlog.go" ]; then
  log="$(mktemp)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-golang-x-mod-dev; } </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    echo "build.sh: installing golang-go golang-golang-x-mod-dev failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

# GOPATH mode against Debian's source tree; nothing from the environment (GOFLAGS,
# a go env file, a module proxy) may change that. The build cache lives in target/.
mkdir -p "$(dirname "$out")" "$root/target/interop/gocache"
# Test processes run this at once (nextest runs each test in its own process): one build
# at a time, and the binary is renamed into place whole, never overwritten while it runs.
exec 9>"$root/target/interop/.build.lock"
flock 9
goenv=(env GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOENV=off GOPROXY=off
  GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$root/target/interop/gocache")

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! (cd "$here" && "${goenv[@]}" go build -trimpath -o "$out.partial" .) </dev/null >"$log" 2>&1; then
  cat "$log" >&2
  echo "build.sh: go build failed" >&2
  exit 1
fi
if ! (cd "$here" && "${goenv[@]}" go test -count=1 .) </dev/null >"$log" 2>&1; then
  cat "$log" >&2
  echo "build.sh: go test failed" >&2
  exit 1
fi
mv -f "$out.partial" "$out"
echo "$out"
