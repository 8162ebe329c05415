#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure that does not
# depend on the machine's load, for comparing one build of the sidecar with another (or
# with HAProxy) while iterating.
#
# Usage: bench/proxy/callgrind.sh [palisade|palisade-open|haproxy|nginx] [BINARY]
#   REQUESTS=3000   requests counted (after 500 not counted), one keep-alive connection
#   OUT=target/bench-proxy/callgrind   the callgrind file is kept here
#   CG_OPTS="--cache-sim=yes --branch-sim=yes"
#                   more callgrind options; with the cache simulation, first-level
#                   instruction-cache misses per request are printed too
#
# palisade        the release binary (default target/release/palisade) with every policy
#                 on (the config of run.sh) and one worker, in front of nginx
# palisade-open   the same with the upstream's breaker forced open: the route's fallback
# haproxy         HAProxy (nbthread 1) in front of the same nginx
# nginx           nginx (one worker, no master) as a plain reverse proxy in front of it,
#                 configured as in run.sh
#
# Prints `instructions/request N`. Everything listens on 127.0.0.1 free ports and is
# stopped on exit. Needs valgrind, nginx, haproxy, curl and python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=bench/proxy/configs.sh
source "$ROOT/bench/proxy/configs.sh"
WHAT="${1:-palisade}"
BIN="${2:-${CARGO_TARGET_DIR:-$ROOT/target}/release/palisade}"
REQUESTS="${REQUESTS:-3000}"
OUT="${OUT:-$ROOT/target/bench-proxy/callgrind}"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
for tool in valgrind callgrind_control nginx curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

read -ra CALLGRIND <<<"valgrind --tool=callgrind ${CG_OPTS:-}"

WORK="$(mktemp -d /tmp/palisade-callgrind.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

read -r UP PORT ADMIN <<<"$(free_ports 3)"

mkdir -p "$WORK/up"
upstream_config "$WORK/up" "$UP" >"$WORK/up/nginx.conf"
nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -g 'daemon off;' &
PIDS+=("$!")

case $WHAT in
haproxy)
    haproxy_config "$PORT" "$UP" 1 >"$WORK/haproxy.cfg"
    "${CALLGRIND[@]}" --callgrind-out-file="$OUT/$WHAT.out" \
        haproxy -db -f "$WORK/haproxy.cfg" 2>"$WORK/valgrind.log" &
    ;;
nginx)
    mkdir -p "$WORK/proxy"
    nginx_proxy_config "$WORK/proxy" "$PORT" "$UP" 1 >"$WORK/proxy/nginx.conf"
    "${CALLGRIND[@]}" --callgrind-out-file="$OUT/$WHAT.out" \
        nginx -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf" -g 'daemon off; master_process off;' \
        2>"$WORK/valgrind.log" &
    ;;
palisade | palisade-open)
    [[ -x $BIN ]] || { echo "no $BIN: cargo build --release -p palisade-proxy" >&2; exit 1; }
    palisade_config "$PORT" "$ADMIN" "$UP" >"$WORK/palisade.toml"
    TOKIO_WORKER_THREADS=1 "${CALLGRIND[@]}" --callgrind-out-file="$OUT/$WHAT.out" \
        "$BIN" run --config "$WORK/palisade.toml" 2>"$WORK/valgrind.log" &
    ;;
*)
    echo "unknown target $WHAT (palisade, palisade-open, haproxy, nginx)" >&2
    exit 1
    ;;
esac
TARGET=$!
PIDS+=("$TARGET")

for ((i = 0; i < 150; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.2
done
if [[ $WHAT == palisade-open ]]; then
    curl -sS --max-time 30 -X POST -H 'content-type: application/json' -d '{"state":"open"}' \
        "http://127.0.0.1:$ADMIN/admin/upstream/fast/circuit" >/dev/null
fi

# Sequential keep-alive requests on one connection; prints how many were answered 200.
cat >"$WORK/client.py" <<'EOF'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
s = socket.create_connection(("127.0.0.1", port), timeout=60)
buf, ok = b"", 0
for _ in range(n):
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(buf) < length:
        buf += s.recv(65536)
    buf = buf[length:]
    ok += head.startswith(b"HTTP/1.1 200")
print(ok)
EOF
python3 "$WORK/client.py" "$PORT" 500 >/dev/null # warm-up, not counted
callgrind_control -z "$TARGET" >/dev/null
answered=$(python3 "$WORK/client.py" "$PORT" "$REQUESTS")
callgrind_control -d "$TARGET" >/dev/null
[[ $answered == "$REQUESTS" ]] || { echo "only $answered of $REQUESTS answered 200" >&2; exit 1; }
sleep 1
dump=$(ls -t "$OUT/$WHAT.out".* | head -n 1)
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
echo "$WHAT: $total instructions for $REQUESTS requests"
echo "instructions/request $((total / REQUESTS))"
if [[ ${CG_OPTS:-} == *cache-sim=yes* ]]; then
    # The events are named on the `events:` line; I1mr counts first-level I-cache misses.
    awk -v n="$REQUESTS" '/^events:/ {for (i = 2; i <= NF; i++) col[$i] = i}
        /^(summary|totals):/ && !done {
            done = 1
            if ("I1mr" in col) printf "I1 misses/request %d\n", $(col["I1mr"]) / n
        }' "$dump"
fi
echo "profile: $dump (callgrind_annotate --inclusive=yes $dump)"
