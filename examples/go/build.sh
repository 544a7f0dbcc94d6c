#!/usr/bin/env bash
# Builds the Go client (examples/go/client.go) fully offline, from Debian's packages (installed
# here if missing): Go 1.19 (golang-go), grpc-go 1.33 (golang-google-grpc-dev), Go protobuf
# 1.28 (golang-google-protobuf-dev) and protoc (protobuf-compiler, libprotobuf-dev for
# google/protobuf/timestamp.proto). GOPATH mode, no module proxy. protoc-gen-go and
# protoc-gen-go-grpc are built from those packages' sources (they support proto3 `optional`,
# which the protos use and the older protoc-gen-go 1.3 does not), and generate the stubs of
# proto/pax/ledger/v1 into target/go-client/gopath/src/paxledger/v1 (import path
# "paxledger/v1", given by protoc M flags: the protos name no go_package).
# Usage: examples/go/build.sh [OUTPUT] (default: target/go-client/pax-ledger-go-client under
# the repository root; a relative OUTPUT is taken from the current directory). Prints only the
# built client's path on success; on failure, the failing step's output.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/go-client/pax-ledger-go-client}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

gocode=/usr/share/gocode/src
if ! command -v go >/dev/null 2>&1 || ! command -v protoc >/dev/null 2>&1 ||
  [ ! -f "$gocode/google.golang.org/grpc/cmd/protoc-gen-go-grpc/main.go" ] ||
  [ ! -f "$gocode/google.golang.org/protobuf/cmd/protoc-gen-go/main.go" ] ||
  [ ! -f /usr/include/google/protobuf/timestamp.proto ]; then
  log="$(mktemp)"
  packages=(golang-go golang-google-grpc-dev golang-google-protobuf-dev protobuf-compiler libprotobuf-dev)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; } </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    echo "build.sh: installing ${packages[*]} failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

# GOPATH mode against Debian's source tree and the generated stubs; nothing from the
# environment (GOFLAGS, a go env file, a module proxy) may change that. The build cache lives
# in target/.
build="$root/target/go-client"
mkdir -p "$(dirname "$out")" "$build/gocache"
# Test processes run this at once (nextest runs each test in its own process): one build at a
# time; the stubs are generated into a fresh directory and the binary is renamed into place
# whole, never overwritten while it runs.
exec 9>"$build/.build.lock"
flock 9
partial="$build/gopath.partial"
rm -rf "$partial" && mkdir -p "$partial/bin" "$partial/src"
goenv=(env -C "$here" GO111MODULE=off GOPATH="$partial:/usr/share/gocode" GOFLAGS= GOENV=off GOPROXY=off
  GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$build/gocache")

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
step() {
  local what="$1"
  shift
  if ! "$@" </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    echo "build.sh: $what failed" >&2
    exit 1
  fi
}
step "building protoc-gen-go" "${goenv[@]}" go build -trimpath -o "$partial/bin/protoc-gen-go" \
  google.golang.org/protobuf/cmd/protoc-gen-go
step "building protoc-gen-go-grpc" "${goenv[@]}" go build -trimpath -o "$partial/bin/protoc-gen-go-grpc" \
  google.golang.org/grpc/cmd/protoc-gen-go-grpc
protos=("$root"/proto/pax/ledger/v1/*.proto)
mapping=""
for proto in "${protos[@]}"; do
  mapping+=",M${proto#"$root/proto/"}=paxledger/v1"
done
step "generating the stubs" protoc -I "$root/proto" \
  --plugin=protoc-gen-go="$partial/bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$partial/bin/protoc-gen-go-grpc" \
  --go_out="paths=import$mapping:$partial/src" \
  --go-grpc_out="paths=import$mapping:$partial/src" "${protos[@]}"
step "go vet" "${goenv[@]}" go vet .
step "go build" "${goenv[@]}" go build -trimpath -o "$out.partial" .
rm -rf "$build/gopath" && mv "$partial" "$build/gopath"
mv -f "$out.partial" "$out"
echo "$out"
