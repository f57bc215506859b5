#!/usr/bin/env bash
# syscalls.sh - count the syscalls one `ambassador forward` hop makes per
# request, the profile behind CPU per request. Counts, not timings, so a
# busy machine does not skew them.
#
# Usage: bench/syscalls.sh BINARY [redis-benchmark args]
#   default args: -t get -n 20000 -c 50   (per GET)
#   new connections: -t ping_inline -k 0 -n 2000 -c 20
# Needs redis-server, redis-benchmark and strace. Loopback only: Redis on
# 127.0.0.1:26379, the hop on 127.0.0.1:26380. Everything started is
# stopped at exit.
set -euo pipefail
BIN=${1:?usage: $0 BINARY [redis-benchmark args]}
shift
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(-t get -n 20000 -c 50)
OUT=$(mktemp)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -f "$OUT"' EXIT
redis-server --port 26379 --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 & PIDS+=($!)
"$BIN" forward --log-level warn 127.0.0.1:26380=127.0.0.1:26379 2>/dev/null & P=$!; PIDS+=($P)
for _ in $(seq 50); do redis-cli -p 26380 ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -p 26380 -t get -n 2000 -c 50 -q >/dev/null   # warm up
timeout 120 strace -f -c -o "$OUT" -p "$P" 2>/dev/null & S=$!
sleep 0.5   # let strace attach to every thread
timeout 120 redis-benchmark -p 26380 "${ARGS[@]}" -q
kill -INT "$S"; wait "$S" 2>/dev/null || true
head -16 "$OUT"
