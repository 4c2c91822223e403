#!/usr/bin/env bash
# lameduck's benchmark suite, one command (BENCHMARKS.md):
#
#   bench/run.sh [--only SECTION,...] [runner flags...]
#
# Installs wrk, h2load, Go, valgrind and HAProxy (Debian's wrk,
# nghttp2-client, golang-go, valgrind, haproxy) if missing, builds the demo server and the untracked baseline
# with every runtime binding, the runner (release) and the Go peer, runs
# the core micro-benchmarks (divan), raises the descriptor limit, and runs
# the end-to-end runner. The report is printed, written to
# bench/results.md, and put into BENCHMARKS.md, each section between its
# own markers.
#
# --only takes sections: drain, overhead, threads, scale, restart, micro,
# fleet, h2, tls (all by default); only those run, only what they need is built,
# and the other sections' results in BENCHMARKS.md stay as they are. Every
# argument goes to the runner (its flags: bench/src/bin/runner/main.rs),
# e.g. `bench/run.sh --only overhead,threads --rounds 3`.
set -euo pipefail

started=$SECONDS
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

say() { printf 'bench/run.sh: %s\n' "$*" >&2; }

# --- which sections ----------------------------------------------------------
sections="drain,overhead,threads,scale,restart,micro,fleet,h2,tls"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[i]}" = --only ] && [ $((i + 1)) -lt ${#args[@]} ]; then
        sections="${args[i + 1]}"
    fi
done
wants() { [[ ",$sections," == *",$1,"* ]]; }
wants_any() {
    local s
    for s in "$@"; do
        if wants "$s"; then return 0; fi
    done
    return 1
}
# Every runtime binding, for the demo and the baseline alike.
features="compio,tokio,async-std"

# --- tools -------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v go >/dev/null || missing+=(golang-go)
command -v callgrind_annotate >/dev/null || missing+=(valgrind)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    say "installing ${missing[*]} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- builds ------------------------------------------------------------------
say "building (release, runtimes: smol,$features): the demo server, the baseline, the runner"
if wants tls; then
    # The tls section's demo: with lameduck's tls feature too, kept as
    # serve-tls, so that the other sections run the demo built as before.
    say "building the demo with lameduck's tls feature (the tls section)"
    cargo build --release -p lameduck --example serve --features "$features,tls"
    cp "$target/release/examples/serve" "$target/release/examples/serve-tls"
fi
cargo build --release -p lameduck --example serve --features "$features"
cargo build --release -p lameduck-bench --bins --features "$features"

if wants_any drain overhead scale; then
    say "building the Go peer (standard library only, no network)"
    export GOCACHE="${GOCACHE:-$target/go-build-cache}"
    export GOPATH="${GOPATH:-$target/go-path}"
    (cd bench/go-peer && GOPROXY=off GOFLAGS=-mod=mod go build -o "$target/release/go-peer" .)
fi

micro="$target/bench-micro.txt"
if wants micro; then
    say "core micro-benchmarks (divan)"
    cargo bench -p lameduck-core --bench lifecycle 2>&1 | tee "$micro" >&2
fi

# --- descriptor limit --------------------------------------------------------
# The scale section holds 50,000 connections: as many descriptors in the
# server. Raise the hard limit if allowed (root with CAP_SYS_RESOURCE), else
# use the hard limit as it is; the runner reports what it could run.
hard="$(ulimit -Hn)"
if [ "$hard" != unlimited ] && [ "$hard" -lt 65536 ]; then
    ulimit -Hn 65536 2>/dev/null || say "cannot raise the hard descriptor limit above $hard"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "descriptor limit: $(ulimit -n)"

# --- the runner --------------------------------------------------------------
say "running the benchmarks (output: bench/results.md, BENCHMARKS.md)"
"$target/release/runner" \
    --bin-dir "$target/release" \
    --micro "$micro" \
    --out "$root/bench/results.md" \
    --doc "$root/BENCHMARKS.md" \
    "$@"

say "done in $((SECONDS - started)) s"
