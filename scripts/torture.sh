#!/usr/bin/env bash
# Long robustness run: fresh 3-member mutual-TLS clusters of the real `rampart server`, one after
# another, each under random nemeses (isolate a member or the leader, majority/minority split,
# kill -9 and restart, SIGSTOP/SIGCONT, delay and loss, restart of all members) while clients and
# watchers record a history; every history is checked for linearizability, watch order and
# durability. Ends with the summary table; exits 1 if anything was found (failing histories are
# saved under target/torture/).
#
#   scripts/torture.sh --duration 10m
#   scripts/torture.sh --duration 30m --history 120s --nemeses kill,pause --seed 7
#   scripts/torture.sh --help          # every option
#
# As root, each member runs in its own network namespace (created and removed by the harness);
# otherwise members share loopback and faults go through TCP relays only.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p rampart -p rampart-robustness
exec target/debug/rampart-torture --rampart target/debug/rampart "$@"
