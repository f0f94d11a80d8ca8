#!/usr/bin/env bash
# Runs etcd's own e2e tests one at a time with the REAL etcd server and OUR binary as etcdctl,
# from a private bin directory, so the shared links in ${E2E_CACHE:-/var/tmp/etcd-e2e}/bin (which
# e2e-each.sh rewrites) are left alone.
#
#   scripts/e2e-ctl.sh CTL_BINARY TEST...      e.g. scripts/e2e-ctl.sh /tmp/snap-ctl/rampart TestCtlV3Snapshot
#
# The tests use fixed ports (10000, 20000+): while another e2e run is active this waits. They
# also name fixtures relative to tests/e2e (JWT keys: ../../integration/fixtures), so they run
# from a directory that mirrors that layout. Prints PASS/FAIL/SKIP per test; logs in $work/<test>.log.
set -uo pipefail
ctl=$(readlink -f "$1"); shift
src=/usr/share/gocode/src/go.etcd.io/etcd
testbin=${E2E_CACHE:-/var/tmp/etcd-e2e}/e2e.test
[ -x "$testbin" ] || { echo "no $testbin: run ../shared/conformance/etcd-e2e.sh once to build it" >&2; exit 2; }
work=$(mktemp -d /tmp/e2e-ctl.XXXXXX)
mkdir -p "$work/bin" "$work/x/tests/e2e"
ln -s /usr/bin/etcd "$work/bin/etcd"
ln -s "$ctl" "$work/bin/etcdctl"
ln -s "$src/integration" "$work/x/integration"
fail=0
for t in "$@"; do
  while pgrep -f 'e2e.test|etcd-e2e' >/dev/null; do echo "waiting: another e2e run is active" >&2; sleep 20; done
  out=$(cd "$work/x/tests/e2e" && timeout --kill-after=5s "${PER_TEST:-120}" "$testbin" -test.v -test.run "^$t\$" \
        -test.timeout 10m -bin-dir "$work/bin" -cert-dir "$src/integration/fixtures" 2>&1)
  echo "$out" > "$work/$t.log"
  if grep -q "^--- PASS: $t " <<<"$out"; then echo "PASS $t"
  elif grep -q "^--- SKIP: $t " <<<"$out"; then echo "SKIP $t"
  else echo "FAIL $t"; fail=1; fi
done
echo "logs: $work" >&2
exit $fail
