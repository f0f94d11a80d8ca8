#!/usr/bin/env bash
# Installs what the tests need, then runs the whole test suite.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p rampart-wal   # extra arguments go to `cargo nextest run`
#
# Needs: the Rust toolchain (cargo). Installs, when missing and run as root: Debian's etcd-server and
# etcd-client (the reference etcd 3.4 and etcdctl, used as independent clients and servers), openssl, and
# cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
command -v etcdctl >/dev/null || need_pkgs+=(etcd-client)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need_pkgs[*]}: run as root or install them (apt-get install ${need_pkgs[*]})" >&2
    exit 2
  fi
  echo "installing ${need_pkgs[*]} ..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest >/dev/null
fi

# Two cores here: two test threads; tests that start clusters run one at a time (.config/nextest.toml).
cargo nextest run --workspace --no-fail-fast -j "${TEST_THREADS:-2}" "$@"

# etcd's own e2e tests for what Rampart implements (installs Go and etcd's test sources once).
if [ $# -eq 0 ] && [ -d ../shared/conformance ]; then
  cargo build -p rampart
  scripts/e2e-conformance.sh target/debug/rampart
  # The side-by-side benchmark script stays runnable: one short pair (its numbers are not used).
  bench_out=$(mktemp -d)
  scripts/bench-vs-etcd.sh --rampart target/debug/rampart --pairs 1 --duration 1s --keys 2000 \
    --no-check-perf --out "$bench_out" >/dev/null
  grep -q '| put, 256 clients' "$bench_out/benchmarks.md"
  rm -rf "$bench_out"
fi
