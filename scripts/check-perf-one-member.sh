#!/usr/bin/env bash
# `etcdctl check perf --load=l` against the cheapest server there is: one plaintext member on
# loopback (no replication, no TLS), etcd or Rampart. Where even this fails, the 3-member
# mutual-TLS check of docs/benchmarks.md cannot pass on the machine: see the notes there and
# scripts/check-perf-limiter.go.
#
#   scripts/check-perf-one-member.sh etcd
#   scripts/check-perf-one-member.sh rampart [BINARY]     # default target/release/rampart
#
# Prints etcdctl's verdict and the CPU seconds etcdctl and the member used. PORT (client, default
# 12379) and PEER_PORT (default PORT+1) must be free. Takes about 70 s; the member is stopped and its data removed at the end.
set -euo pipefail

system=${1:?usage: $0 etcd|rampart [BINARY]}
port=${PORT:-12379}
case "$system" in
  etcd) server=${2:-/usr/bin/etcd} ;;
  rampart) server=${2:-target/release/rampart}; server="$server server" ;;
  *) echo "usage: $0 etcd|rampart [BINARY]" >&2; exit 2 ;;
esac
for tool in etcdctl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install etcd-client time)" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/check-perf-one-XXXXXX)
client=http://127.0.0.1:$port
peer=http://127.0.0.1:${PEER_PORT:-$((port + 1))}
# shellcheck disable=SC2086 # $server is the binary and, for Rampart, its subcommand
$server --name default --data-dir "$dir/data" --listen-client-urls "$client" \
  --advertise-client-urls "$client" --listen-peer-urls "$peer" \
  --initial-advertise-peer-urls "$peer" --initial-cluster "default=$peer" >"$dir/log" 2>&1 &
member=$!
cleanup() {
  kill "$member" 2>/dev/null || true
  wait "$member" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 100); do
  etcdctl --endpoints="$client" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
etcdctl --endpoints="$client" endpoint health >/dev/null 2>&1 || { cat "$dir/log" >&2; exit 1; }

/usr/bin/time -f "etcdctl CPU: %U s user + %S s system, %e s elapsed" -o "$dir/time" \
  etcdctl --endpoints="$client" check perf --load=l >"$dir/check" 2>&1 || true
# The progress bar shares lines with the verdict: keep the verdict lines only.
tr '\r' '\n' <"$dir/check" | grep -E '^(PASS|FAIL)|too long|too low'
grep -v '^Command exited' "$dir/time"
ticks=$(getconf CLK_TCK)
awk -v t="$ticks" '{ printf "member CPU: %.1f s\n", ($14 + $15) / t }' "/proc/$member/stat"
