#!/usr/bin/env bash
# Where a proxy's time goes between its system calls, at one connection: the proxy under
# test runs on CPU 0 with the upstream (as in run.sh's pinned layout), wrk keeps one
# connection busy from CPU 1, and `perf record` traces the proxy's system calls for a few
# seconds. gaps.py prints the median time of each step between two calls (reading a
# request to writing it upstream, a wake-up to the first read, ...) and inside each call.
# The tracing slows every call a little, the same for every proxy; compare steps across
# proxies, not with run.sh's latencies. Needs no CPU counters (tracepoints only).
#
# Usage: bench/proxy/gaps.sh [palisade|nginx|haproxy] [BINARY]
#   BINARY   the palisade binary (default target/release/palisade)
#   TRACE=2  seconds traced, in the middle of a wrk run twice as long plus 4 s
#
# Needs perf (Debian: linux-perf), nginx, haproxy, wrk, curl and python3. Everything
# listens on 127.0.0.1 free ports and is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=bench/proxy/configs.sh
source "$ROOT/bench/proxy/configs.sh"
WHAT="${1:-palisade}"
BIN="${2:-${CARGO_TARGET_DIR:-$ROOT/target}/release/palisade}"
TRACE="${TRACE:-2}"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
for tool in perf nginx wrk curl python3 taskset; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/palisade-gaps.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

read -r UP PORT ADMIN <<<"$(free_ports 3)"

mkdir -p "$WORK/up" "$WORK/proxy"
upstream_config "$WORK/up" "$UP" >"$WORK/up/nginx.conf"
taskset -c 0 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -g 'daemon off;' &
PIDS+=("$!")

case $WHAT in
nginx)
    nginx_proxy_config "$WORK/proxy" "$PORT" "$UP" 1 >"$WORK/proxy/nginx.conf"
    taskset -c 0 nginx -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf" \
        -g 'daemon off; master_process off;' &
    ;;
haproxy)
    haproxy_config "$PORT" "$UP" 1 >"$WORK/haproxy.cfg"
    taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" &
    ;;
palisade)
    [[ -x $BIN ]] || { echo "no $BIN: cargo build --release -p palisade-proxy" >&2; exit 1; }
    palisade_config "$PORT" "$ADMIN" "$UP" >"$WORK/palisade.toml"
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$BIN" run --config "$WORK/palisade.toml" \
        2>"$WORK/palisade.log" &
    ;;
*)
    echo "unknown target $WHAT (palisade, nginx, haproxy)" >&2
    exit 1
    ;;
esac
TARGET=$!
PIDS+=("$TARGET")

for ((i = 0; i < 50; i++)); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.2
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/" || { echo "$WHAT does not answer" >&2; exit 1; }

taskset -c 1 wrk -t1 -c1 -d"$((TRACE * 2 + 4))s" --latency "http://127.0.0.1:$PORT/" \
    >"$WORK/wrk.txt" &
WRK=$!
sleep "$((TRACE / 2 + 2))"
perf record -q -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -p "$TARGET" \
    -o "$WORK/perf.data" -- sleep "$TRACE" >/dev/null 2>&1
wait "$WRK"
echo "$WHAT: one connection, wrk p50 (traced part included): $(awk '/^ +50%/ {print $2}' "$WORK/wrk.txt")"
perf script -i "$WORK/perf.data" --ns -F tid,time,event,trace 2>/dev/null |
    python3 "$ROOT/bench/proxy/gaps.py"
