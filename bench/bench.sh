#!/usr/bin/env bash
# bench/bench.sh: one `ambassador forward` hop side by side with a direct
# connection and HAProxy (Debian's haproxy, mode tcp, when installed), on
# loopback only. `go tool -modfile=tools/go.mod task bench` runs it.
#
# Usage: bench/bench.sh [--quick] [--rounds N] [--idle-conns N] [--out FILE]
#
# Needs redis-server, redis-benchmark, iperf3 (Debian: redis-server
# redis-tools iperf3); haproxy is optional. It builds ./bin/ambassador and
# bench/holdconns, starts redis-server on 127.0.0.1:26379 and iperf3 -s on
# 127.0.0.1:25201, ambassador on 27001/27002 and haproxy on 27011/27012,
# and stops all of them at exit. Every test runs for every peer back to
# back before the next test, and each round reverses the peer order, so
# that drift on the machine hits all peers alike.
#
# Figures, per peer, with the ratio to direct:
#   iperf3 1 and 4 streams (Gbit/s, receiver side)
#   redis-benchmark -t set,get -c 50: ops/s, p50 and p99 ms
#   the same with -P 16 (pipelined): ops/s
#   redis-benchmark -t ping_inline -k 0: new connections/s
#   proxy CPU (utime+stime) during set,get, µs per request
#   memory per idle connection while --idle-conns connections are held:
#   the proxy's RSS, the machine's Slab (kernel objects: sockets and the
#   like, from /proc/meminfo; it includes the client's and Redis's sockets,
#   so compare with direct), and the pipes the proxy holds open (splice
#   pipes of up to 1 MiB each).
set -euo pipefail

QUICK=0 ROUNDS="" IDLE="" OUT=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --idle-conns) IDLE=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "bench: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  ISECS=2 RBN=50000 PIPEN=200000 NEWN=5000; : "${ROUNDS:=1}" "${IDLE:=500}"
else
  ISECS=5 RBN=200000 PIPEN=1000000 NEWN=20000; : "${ROUNDS:=2}" "${IDLE:=2000}"
fi
for c in redis-server redis-benchmark iperf3 go; do
  command -v $c >/dev/null || { echo "bench: $c not found (Debian: apt-get install redis-server redis-tools iperf3)" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/ambassador-bench.XXXXXX)
REDIS=26379 IPERF=25201
declare -A RPORT=([direct]=$REDIS [ambassador]=27001 [haproxy]=27011)
declare -A IPORT=([direct]=$IPERF [ambassador]=27002 [haproxy]=27012)
declare -A PID=()
PEERS=(direct ambassador)
command -v haproxy >/dev/null && PEERS+=(haproxy) || echo "bench: haproxy not installed; skipping it" >&2

GROUPS_STARTED=()
cleanup() {
  for g in "${GROUPS_STARTED[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
start() {  # start NAME CMD...: in its own process group; sets LAST
  setsid "${@:2}" >"$WORK/$1.log" 2>&1 </dev/null &
  LAST=$!
  GROUPS_STARTED+=("$LAST")
}
wait_port() {  # wait_port PORT NAME
  for _ in $(seq 100); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.1; done
  echo "bench: nothing listens on $1 ($2); its log:" >&2; tail -n 20 "$WORK/$2.log" >&2; exit 1
}
log() { printf '[%4ds] %s\n' "$SECONDS" "$*" >&2; }
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$WORK/results.tsv"; }
cpu() { [ -n "${PID[$1]:-}" ] && awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/${PID[$1]}/stat" || echo 0; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/${PID[$1]}/status"; }
slab() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
pipes() { find "/proc/${PID[$1]}/fd" -lname 'pipe:*' 2>/dev/null | wc -l; }

(cd "$ROOT" && go build -o "$WORK/ambassador" . && go build -o "$WORK/holdconns" ./bench/holdconns)
ulimit -n "$(ulimit -Hn)"
start redis redis-server --port $REDIS --bind 127.0.0.1 --save '' --appendonly no --maxclients 20000
start iperf iperf3 -s -B 127.0.0.1 -p $IPERF
wait_port $REDIS redis; wait_port $IPERF iperf
start ambassador "$WORK/ambassador" forward --log-level warn 127.0.0.1:27001=127.0.0.1:$REDIS 127.0.0.1:27002=127.0.0.1:$IPERF
PID[ambassador]=$LAST
if [[ " ${PEERS[*]} " == *" haproxy "* ]]; then
  cat >"$WORK/haproxy.cfg" <<CFG
global
    maxconn 8000
    nbthread 2
defaults
    mode tcp
    maxconn 8000
    timeout connect 5s
    timeout client 5m
    timeout server 5m
frontend fe_redis
    bind 127.0.0.1:27011
    default_backend be_redis
backend be_redis
    server redis 127.0.0.1:$REDIS
frontend fe_iperf
    bind 127.0.0.1:27012
    default_backend be_iperf
backend be_iperf
    server iperf 127.0.0.1:$IPERF
CFG
  start haproxy haproxy -db -f "$WORK/haproxy.cfg"
  PID[haproxy]=$LAST
fi
for p in "${PEERS[@]}"; do [ "$p" = direct ] || { wait_port "${RPORT[$p]}" "$p"; wait_port "${IPORT[$p]}" "$p"; }; done
: >"$WORK/results.tsv"
TCK=$(getconf CLK_TCK)

rb() { timeout -k 5 300 redis-benchmark -h 127.0.0.1 -p "$@" --csv 2>/dev/null | tr -d '"' | awk -F, '$1 ~ /^(SET|GET|PING_INLINE)$/ { print $1, $2, $5, $7 }'; }
# tw_drain waits (at most 70 s) until loopback holds fewer than 2,000
# sockets in TIME_WAIT. Each -k 0 run leaves one per connection on each
# side a proxy closes first (40,000 for a proxy at NEWN 20000), and
# TIME_WAIT lasts 60 s; 28,000 ephemeral ports cannot hold two peers' worth,
# so without the wait the peer that ran third found connect() searching
# for a free port and read about 12k new connections/s instead of 15k,
# whichever peer it was (session 14, shared peerbench).
tw_drain() {
  local n t0=$SECONDS
  while n=$(ss -Htan state time-wait 2>/dev/null | wc -l) && [ "$n" -ge 2000 ] && [ $((SECONDS - t0)) -lt 70 ]; do sleep 1; done
  [ $((SECONDS - t0)) -lt 2 ] || log "waited $((SECONDS - t0)) s for TIME_WAIT sockets to drain ($n left)"
}
order() { if [ $(($1 % 2)) = 0 ]; then printf '%s\n' "${PEERS[@]}" | tac; else printf '%s\n' "${PEERS[@]}"; fi; }

for r in $(seq "$ROUNDS"); do
  for n in 1 4; do
    for p in $(order "$r"); do
      g=$(timeout -k 5 $((ISECS + 30)) iperf3 -c 127.0.0.1 -p "${IPORT[$p]}" -t "$ISECS" -P $n -f g 2>&1 |
        awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Gbits/sec") v = $(i - 1) } END { print v }')
      rec "$p" "iperf$n@$r" "${g:-ERR}"; log "round $r iperf -P $n via $p: $g Gbit/s"
    done
  done
  for p in $(order "$r"); do
    c0=$(cpu "$p")
    out=$(rb "${RPORT[$p]}" -t set,get -n $RBN -c 50)
    c1=$(cpu "$p")
    for t in SET GET; do
      read -r _ ops p50 p99 <<<"$(grep "^$t " <<<"$out")"
      rec "$p" "${t,,}@$r" "$ops"; rec "$p" "${t,,}_p50@$r" "$p50"; rec "$p" "${t,,}_p99@$r" "$p99"
    done
    [ "$p" = direct ] || rec "$p" "cpu_us@$r" "$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n=$((2 * RBN)) 'BEGIN { print d / t / n * 1e6 }')"
    log "round $r set,get via $p: $(tr '\n' ' ' <<<"$out")"
    out=$(rb "${RPORT[$p]}" -t set,get -n $PIPEN -c 50 -P 16)
    for t in SET GET; do read -r _ ops _ <<<"$(grep "^$t " <<<"$out")"; rec "$p" "p${t,,}@$r" "$ops"; done
    tw_drain
    out=$(rb "${RPORT[$p]}" -t ping_inline -n $NEWN -c 50 -k 0)
    read -r _ ops _ <<<"$out"; rec "$p" "newconn@$r" "$ops"
    log "round $r pipelined and new connections via $p done"
  done
done

for p in "${PEERS[@]}"; do
  [ "$p" = direct ] || { r0=$(rss "$p"); p0=$(pipes "$p"); }
  s0=$(slab)
  start "hold-$p" "$WORK/holdconns" -addr "127.0.0.1:${RPORT[$p]}" -n "$IDLE" -hold 120s
  hp=$LAST
  for _ in $(seq 600); do grep -q '^READY' "$WORK/hold-$p.log" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  s1=$(slab)
  rec "$p" hold "$(grep -m1 '^READY' "$WORK/hold-$p.log" || echo ERR)"
  rec "$p" slab_kib "$(awk -v a="$s0" -v b="$s1" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }')"
  if [ "$p" != direct ]; then
    rec "$p" rss_kib "$(awk -v a="$r0" -v b="$(rss "$p")" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }')"
    rec "$p" pipes "$(( $(pipes "$p") - p0 ))"
  fi
  kill -TERM -- "-$hp" 2>/dev/null || true; wait "$hp" 2>/dev/null || true
  log "idle connections via $p: $(grep -m1 '^READY' "$WORK/hold-$p.log" || echo ERR)"
  sleep 2
done

report() {
  awk -v peers="${PEERS[*]}" -v rounds="$ROUNDS" -v idle="$IDLE" '
  BEGIN { FS = "\t"; np = split(peers, P, " ") }
  { V[$1, $2] = $3 }
  function get(p, k,   r, s, n) {
    if ((p, k) in V) return V[p, k]
    for (r = 1; r <= rounds; r++) if ((p, k "@" r) in V && V[p, k "@" r] ~ /^[0-9.]+$/) { s += V[p, k "@" r]; n++ }
    return n ? s / n : ""
  }
  function cell(p, k, fmt,   x, d) {
    x = get(p, k); if (x == "") return "-"
    d = get("direct", k)
    return sprintf(fmt, x) ((p != "direct" && d > 0) ? sprintf(" (%.2fx)", x / d) : "")
  }
  END {
    printf "| figure |"; for (i = 1; i <= np; i++) printf " %s |", P[i]; printf "\n|---|"; for (i = 1; i <= np; i++) printf "---|"; printf "\n"
    row("iperf3 1 stream, Gbit/s", "iperf1", "%.1f"); row("iperf3 4 streams, Gbit/s", "iperf4", "%.1f")
    row("SET ops/s (-c 50)", "set", "%.0f"); row("GET ops/s (-c 50)", "get", "%.0f")
    row("SET p50 ms", "set_p50", "%.3f"); row("SET p99 ms", "set_p99", "%.3f")
    row("GET p50 ms", "get_p50", "%.3f"); row("GET p99 ms", "get_p99", "%.3f")
    row("SET ops/s -P 16", "pset", "%.0f"); row("GET ops/s -P 16", "pget", "%.0f")
    row("new connections/s (-k 0)", "newconn", "%.0f")
    row("proxy CPU µs per request (set,get)", "cpu_us", "%.1f")
    row("proxy RSS KiB per idle conn (" idle " held)", "rss_kib", "%.1f")
    row("machine Slab KiB per idle conn (incl. client and Redis sockets)", "slab_kib", "%.1f")
    row("pipes held by the proxy (" idle " idle conns)", "pipes", "%d")
  }
  function row(name, k, fmt,   i) { printf "| %s |", name; for (i = 1; i <= np; i++) printf " %s |", cell(P[i], k, fmt); printf "\n" }
  ' "$WORK/results.tsv"
}
{
  echo "### One forward hop on loopback ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), rounds: $ROUNDS, ratios to direct)"
  echo
  report
  echo
  echo "haproxy: $(haproxy -v 2>/dev/null | head -1 || echo 'not installed'); ambassador: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null)"
} | tee ${OUT:+"$OUT"}
