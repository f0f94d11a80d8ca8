#!/usr/bin/env bash
# Runs every top-level test of etcd's e2e suite alone, each with its own time limit, against a
# server binary, and prints PASS/FAIL/SKIP per test and an "N passed, N failed" summary.
#
# Why not one sequential run: when one of etcd's tests fails midway it can leave its members
# running, and every later test then fails to bind its ports; a hanging test would eat the
# whole time budget. Alone, each test gets a clean machine.
#
#   scripts/e2e-each.sh [SERVER] [REGEX]     (defaults: target/debug/rampart, every test)
#   PER_TEST=40 scripts/e2e-each.sh          (seconds per test)
#   CTL=target/debug/rampart scripts/e2e-each.sh /usr/bin/etcd   (our binary as etcdctl)
#   PROXY_MODE=1 scripts/e2e-each.sh ...      (etcd's proxy mode: clients reach every member
#                                              through `etcd --proxy on` and `etcd grpc-proxy`)
set -uo pipefail
cd "$(dirname "$0")/.."
server=$(readlink -f "${1:-target/debug/rampart}")
filter=${2:-.}
# Builds the test binary once (and installs Go and etcd's sources when missing).
mode=()
[ -n "${PROXY_MODE:-}" ] && mode=(--proxy-mode)
bash ../shared/conformance/etcd-e2e.sh "${mode[@]}" --server "$server" --run '^TestCtlV3Version$' --timeout 5m >/dev/null 2>&1 || true
cache=${E2E_CACHE:-/var/tmp/etcd-e2e}
testbin="$cache/e2e${PROXY_MODE:+-cluster_proxy}.test"
src=/usr/share/gocode/src/go.etcd.io/etcd
ln -sf "$server" "$cache/bin/etcd"
ln -sf "$(readlink -f "${CTL:-/usr/bin/etcdctl}")" "$cache/bin/etcdctl"
pass=0; fail=0; skip=0
cd "$src/tests/e2e"
for t in $("$testbin" -test.list "$filter" | grep '^Test'); do
  out=$(timeout --kill-after=5s "${PER_TEST:-30}" "$testbin" -test.v -test.run "^$t\$" -test.timeout 10m \
        -bin-dir "$cache/bin" -cert-dir "$src/integration/fixtures" 2>&1)
  pkill -f "$cache/bin/etcd" 2>/dev/null
  if grep -q "^--- PASS: $t " <<<"$out"; then echo "PASS $t"; pass=$((pass+1))
  elif grep -q "^--- SKIP: $t " <<<"$out"; then echo "SKIP $t"; skip=$((skip+1))
  else echo "FAIL $t"; fail=$((fail+1)); fi
done
echo "e2e (each test alone): $pass passed, $fail failed, $skip skipped"
