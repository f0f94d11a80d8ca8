#!/usr/bin/env bash
# Side-by-side benchmark: a 3-member mutual-TLS etcd 3.4 and a 3-member mutual-TLS Rampart on
# loopback, one at a time, alternating etcd/Rampart; writes docs/benchmarks.md and its chart.
#
#   scripts/bench-vs-etcd.sh                      # full run (~25 min): 5 pairs x 10 s, 1M keys, check perf
#   scripts/bench-vs-etcd.sh --pairs 1 --duration 2s --keys 5000 --no-check-perf --out /tmp/b   # a quick look
#
# Needs Debian's etcd-server and etcd-client (installed when missing and run as root) and python3.
# Builds Rampart in release mode unless --rampart names a binary. All options: --help.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
command -v etcdctl >/dev/null || need_pkgs+=(etcd-client)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need_pkgs[*]}: run as root or install them (apt-get install ${need_pkgs[*]})" >&2
    exit 2
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

case " $* " in
  *" --rampart"*) ;;
  *) cargo build --release -p rampart >&2 ;;
esac
exec python3 scripts/bench_vs_etcd.py "$@"
