#!/usr/bin/env bash
# Load benchmark of the palisade sidecar on loopback, against nginx and HAProxy as plain
# reverse proxies in front of the same fast upstream, all in one run.
#
# Usage: bench/proxy/run.sh
#   DURATION=10s      every wrk run lasts exactly this long
#   ROUNDS=4          rounds of all targets per layout, in alternating order; medians
#                     are reported
#   LAYOUTS="pinned shared"
#                     pinned: wrk (and the connection holder) on CPU 1, the upstream and
#                             the proxy under test on CPU 0, every server with one worker
#                     shared: nothing pinned; the proxies use both cores (nginx
#                             worker_processes 2, haproxy nbthread 2, palisade 2 tokio
#                             workers), the upstream keeps one worker
#   CONNS=64          connections of the saturation run (the latency run uses 1)
#   PAIRS=10          after the rounds, short saturation runs of HAProxy, palisade and
#                     nginx back to back, this many times, palisade always between the
#                     other two (alternating which comes first): ratios from runs seconds
#                     apart, so that the machine's drift cancels; 0 skips them
#   LATENCY_PAIRS=10  then short one-connection runs of direct, palisade and nginx back
#                     to back, this many times (palisade between the other two): added
#                     p50 ratios from runs seconds apart; 0 skips them
#   PAIR_DURATION=3s  each of those runs
#   IDLE_CONNS=1000   open keep-alive connections for the memory measurement
#   BUILD=pgo         the palisade binary measured: pgo, the release build optimised with
#                     a profile of `palisade demo` (scripts/build-pgo.sh); plain, the
#                     `cargo build --release` one; given, the binary PALISADE names
#                     (built before, e.g. by scripts/build-pgo.sh from a clean worktree)
#   REFUSAL_PAIRS=10  then short runs of a proxied request and of both refusals by the
#                     breaker forced open (503, fallback) back to back, with the
#                     upstream's answer from memory and nginx proxying for reference, at
#                     one connection and at CONNS: refusal-to-proxied CPU ratios from runs
#                     seconds apart; 0 skips them
#   REFUSAL_CONNS="1 64"
#                     the connection counts of those runs (default: 1 and CONNS)
#                     (paired runs alternate which comes first; PAIR_DURATION each)
#   OUT=target/bench-proxy
#                     raw wrk output, logs, results.tsv and summary.md go here
#
# Targets, each measured with the same wrk settings:
#   direct          wrk -> upstream (nginx, `return 200 "ok"` from memory)
#   nginx           wrk -> nginx proxy_pass (upstream keepalive) -> upstream
#   haproxy         wrk -> haproxy (mode http, keep-alive and reuse to the server) -> upstream
#   palisade        wrk -> palisade, every policy on (see palisade_config) -> upstream
#   open-fallback   palisade with the breaker forced open: the route's fallback answers
#   open-503        palisade with the breaker forced open, route without fallback: 503
#
# Everything listens on 127.0.0.1 only, on free ports, with its own config under a temp
# dir; no system service is touched. Every load run has a fixed duration, every wait is
# bounded, and everything started here is stopped on exit (trap).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-4}"
PAIRS="${PAIRS:-10}"
LATENCY_PAIRS="${LATENCY_PAIRS:-10}"
REFUSAL_PAIRS="${REFUSAL_PAIRS:-10}"
REFUSAL_CONNS="${REFUSAL_CONNS:-1 ${CONNS:-64}}"
PAIR_DURATION="${PAIR_DURATION:-3s}"
LAYOUTS="${LAYOUTS:-pinned shared}"
CONNS="${CONNS:-64}"
IDLE_CONNS="${IDLE_CONNS:-1000}"
OUT="${OUT:-$ROOT/target/bench-proxy}"
BUILD="${BUILD:-pgo}"
HOLD_SECS=5 # how long the idle connections are held (palisade's header_timeout is 10s)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------
# Process bookkeeping: everything started is killed on exit.
# ---------------------------------------------------------------------------------------
declare -A PID=()  # name -> pid of a server
BG_PIDS=()         # wrk / connection holders in the background
WORK=""
CREATED_POLICY=""

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? name pid
    trap - EXIT INT TERM
    for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
    for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
    [[ -n $CREATED_POLICY ]] && rm -f /usr/sbin/policy-rc.d
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------
install_missing() {
    local need=()
    command -v wrk >/dev/null || need+=(wrk)
    command -v nginx >/dev/null || need+=(nginx-light)
    command -v haproxy >/dev/null || need+=(haproxy)
    command -v python3 >/dev/null || need+=(python3)
    command -v curl >/dev/null || need+=(curl)
    command -v taskset >/dev/null || need+=(util-linux)
    command -v timeout >/dev/null || need+=(coreutils)
    ((${#need[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "missing ${need[*]}; run as root to install them with apt-get"
    # Installing nginx or haproxy must not start the system services: deny service
    # starts for the duration of the install unless a policy is already in place.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        CREATED_POLICY=1
    fi
    log "installing ${need[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
    if [[ -n $CREATED_POLICY ]]; then
        rm -f /usr/sbin/policy-rc.d
        CREATED_POLICY=""
    fi
}

install_missing
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
((IDLE_CONNS + 200 < $(ulimit -n))) || die "open-file limit $(ulimit -n) too low for $IDLE_CONNS connections"

case $BUILD in
pgo)
    log "building palisade (release, profile-guided: scripts/build-pgo.sh)"
    PALISADE="$("$ROOT/scripts/build-pgo.sh" | tail -n 1)"
    ;;
plain)
    log "building palisade (release)"
    (cd "$ROOT" && cargo build --release -p palisade-proxy)
    PALISADE="${CARGO_TARGET_DIR:-$ROOT/target}/release/palisade"
    ;;
given)
    [[ -n ${PALISADE:-} ]] || die "BUILD=given needs PALISADE=<path of the binary>"
    log "measuring the given binary $PALISADE (not built here)"
    ;;
*) die "BUILD=$BUILD: plain, pgo or given" ;;
esac
[[ -x $PALISADE ]] || die "no $PALISADE after the build"

WORK="$(mktemp -d /tmp/palisade-bench-proxy.XXXXXX)"
mkdir -p "$OUT"
rm -rf "$OUT/raw" "$OUT/logs"
mkdir -p "$OUT/raw" "$OUT/logs"
RESULTS="$OUT/results.tsv"
PAIRED="$OUT/paired.tsv"
MEMORY="$OUT/memory.tsv"
printf 'layout\tround\ttarget\tconns\trequests\tduration_us\tp50_us\tp90_us\tp99_us\terr_status\terr_socket\tproxy_cpu_ns\tupstream_cpu_ns\n' >"$RESULTS"
head -n 1 "$RESULTS" >"$PAIRED"
printf 'layout\ttarget\tstate\trss_kb\tdetail\n' >"$MEMORY"

# wrk prints exact figures through this script (latency in microseconds).
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT %d %d %.1f %.1f %.1f %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
EOF

# Opens N keep-alive connections one after the other, with one request and its answer
# on each (so the proxy needs only one upstream connection), holds them all open for
# HOLD seconds, then sends a second request on each to prove they stayed open.
cat >"$WORK/hold.py" <<'EOF'
import socket, sys, time

port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

def answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head.split(b"\r\n")[0]

socks = []
first = 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(req)
    if (answer(s) or b"").startswith(b"HTTP/1.1 200"):
        first += 1
    socks.append(s)
print(f"READY open={len(socks)} first_200={first}", flush=True)
time.sleep(hold)
second = 0
for s in socks:
    try:
        s.sendall(req)
        if (answer(s) or b"").startswith(b"HTTP/1.1 200"):
            second += 1
    except OSError:
        pass
print(f"DONE second_200={second}", flush=True)
for s in socks:
    s.close()
EOF

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
# paired_runs LAYOUT COUNT PREFIX CONNS FIRST MIDDLE LAST: COUNT short runs of the three
# targets back to back into paired.tsv (rounds PREFIX1, PREFIX2, ...), every other pair
# in reverse order, so that neither outer target always runs first.
paired_runs() {
    local layout=$1 count=$2 prefix=$3 conns=$4 pair t order
    shift 4
    for ((pair = 1; pair <= count; pair++)); do
        order=("$@")
        ((pair % 2 == 0)) && order=("$3" "$2" "$1")
        for t in "${order[@]}"; do
            RESULTS="$PAIRED" DURATION="$PAIR_DURATION" \
                measure "$layout" "$prefix$pair" "$t" "${URL[$t]}" "$conns"
        done
    done
}

# refusal_pairs LAYOUT COUNT CONNS: COUNT pairs of short runs into paired.tsv (rounds
# q<CONNS>-1, q<CONNS>-2, ...): palisade proxying, then with the breaker forced open its
# two refusals (fallback, 503); and for reference the upstream answering from memory
# (`direct`: nginx's cheapest answer, on the same CPU as the proxy in `pinned`) and nginx
# proxying. Every other pair in reverse order.
refusal_pairs() {
    local layout=$1 count=$2 conns=$3 pair t order
    for ((pair = 1; pair <= count; pair++)); do
        order=(palisade open-fallback open-503 direct nginx)
        ((pair % 2 == 0)) && order=(nginx direct open-503 open-fallback palisade)
        for t in "${order[@]}"; do
            case $t in
            palisade) admin_circuit auto ;;
            open-*) admin_circuit open ;;
            esac
            RESULTS="$PAIRED" DURATION="$PAIR_DURATION" \
                measure "$layout" "q$conns-$pair" "$t" "${URL[$t]}" "$conns"
        done
    done
    admin_circuit auto
}

# start NAME CPUS CMD... : runs CMD in the background (pinned to CPUS if not empty).
start() {
    local name=$1 cpus=$2
    shift 2
    if [[ -n $cpus ]]; then
        taskset -c "$cpus" "$@" >"$OUT/logs/$name.log" 2>&1 &
    else
        "$@" >"$OUT/logs/$name.log" 2>&1 &
    fi
    PID[$name]=$!
}

wait_port() {
    local name=$1 port=$2 i
    for ((i = 0; i < 100; i++)); do
        kill -0 "${PID[$name]}" 2>/dev/null || {
            cat "$OUT/logs/$name.log" >&2
            die "$name exited before listening on $port"
        }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name not listening on 127.0.0.1:$port after 10 s"
}

stop() {
    local name=$1
    [[ -n ${PID[$name]:-} ]] || return 0
    stop_pid "${PID[$name]}"
    unset "PID[$name]"
}

# A process and its children (nginx: master and workers).
family() {
    local p
    for p in "$@"; do
        echo "$p"
        cat /proc/"$p"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true
    done
}

# CPU time in nanoseconds (user + system, every thread) of the given processes and their
# children: the scheduler's own count (/proc/<pid>/task/<tid>/schedstat, first field),
# exact to the nanosecond, where utime + stime in /proc/<pid>/stat are sampled at each
# clock tick (100 Hz: a 3 s run of a half-busy proxy gets about 150 samples, ±8%).
cpu_ns() {
    local p
    for p in $(family "$@"); do
        cat /proc/"$p"/task/*/schedstat 2>/dev/null || true
    done | awk '{total += $1} END {printf "%d\n", total}'
}

# VmRSS in kB of the given processes and their children.
rss_kb() {
    local total=0 p v
    for p in $(family "$@"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

http_check() { # NAME URL EXPECTED_STATUS EXPECTED_BODY (- for any) [HEADER_REGEX]
    local name=$1 url=$2 status=$3 body=$4 header=${5:-} out
    out="$(curl -sS -i --max-time 5 "$url" | tr -d '\r')" || die "$name: $url unreachable"
    grep -q "^HTTP/1.1 $status" <<<"$out" || die "$name: $url: expected $status, got: $out"
    if [[ $body != - && "$(tail -n 1 <<<"$out")" != "$body" ]]; then
        die "$name: $url: expected body '$body', got: $out"
    fi
    if [[ -n $header ]]; then grep -qi "$header" <<<"$out" || die "$name: $url: no '$header' in: $out"; fi
    return 0
}

admin_circuit() { # STATE
    local out
    out="$(curl -sS --max-time 5 -X POST -H 'content-type: application/json' \
        -d "{\"state\":\"$1\"}" -w ' %{http_code}' \
        "http://127.0.0.1:$ADMIN_PORT/admin/upstream/fast/circuit")"
    [[ $out =~ \ 2[0-9][0-9]$ ]] || die "admin circuit $1: $out"
}

breaker_states() {
    curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/admin/state" | python3 -c '
import json, sys
s = json.load(sys.stdin)
up = [u for u in s["upstreams"] if u["name"] == "fast"][0]
print(" ".join(e["breaker"]["state"] for e in up["endpoints"] if isinstance(e.get("breaker"), dict)))'
}

# measure LAYOUT ROUND TARGET URL CONNS: one wrk run, one row of results.tsv.
measure() {
    local layout=$1 round=$2 target=$3 url=$4 conns=$5 threads=$WRK_THREADS
    ((conns < threads)) && threads=$conns
    local raw="$OUT/raw/$layout-r$round-$target-c$conns.txt"
    local proxy_pids=()
    case $target in
    nginx) proxy_pids=("${PID[nginx]}") ;;
    haproxy) proxy_pids=("${PID[haproxy]}") ;;
    palisade | open-*) proxy_pids=("${PID[palisade]}") ;;
    esac
    local p0=0 p1=0 u0 u1
    ((${#proxy_pids[@]})) && p0=$(cpu_ns "${proxy_pids[@]}")
    u0=$(cpu_ns "${PID[upstream]}")
    # In the background, so that a signal to this script is handled at once.
    "${CLIENT_PIN[@]}" timeout 120 wrk -t"$threads" -c"$conns" -d"$DURATION" --latency \
        -s "$WORK/report.lua" "$url" >"$raw" 2>&1 &
    BG_PIDS+=("$!")
    wait "$!" || die "wrk failed: $(cat "$raw")"
    ((${#proxy_pids[@]})) && p1=$(cpu_ns "${proxy_pids[@]}")
    u1=$(cpu_ns "${PID[upstream]}")
    local r
    r=$(grep '^RESULT ' "$raw") || die "no RESULT line in $raw"
    read -r _ req dur p50 p90 p99 est esock <<<"$r"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$layout" "$round" "$target" \
        "$conns" "$req" "$dur" "$p50" "$p90" "$p99" "$est" "$esock" $((p1 - p0)) $((u1 - u0)) >>"$RESULTS"
    log "  $layout r$round $target c$conns: $(awk -v r="$req" -v d="$dur" 'BEGIN {printf "%.0f", r / d * 1e6}') req/s, p50 ${p50} us, non-2xx $est, socket errors $esock"
}

# memory LAYOUT TARGET PORT PIDNAME: RSS before, with IDLE_CONNS idle keep-alive
# connections, and under wrk -cIDLE_CONNS.
memory() {
    local layout=$1 target=$2 port=$3 name=$4 base peak v i hold_out
    base=$(rss_kb "${PID[$name]}")
    printf '%s\t%s\tbefore\t%s\t\n' "$layout" "$target" "$base" >>"$MEMORY"

    hold_out="$OUT/raw/$layout-hold-$target.txt"
    "${CLIENT_PIN[@]}" timeout 60 python3 "$WORK/hold.py" "$port" "$IDLE_CONNS" "$HOLD_SECS" >"$hold_out" 2>&1 &
    local hp=$!
    BG_PIDS+=("$hp")
    for ((i = 0; i < 300; i++)); do
        grep -qs '^READY' "$hold_out" && break
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^READY' "$hold_out" || die "$target: connections not opened: $(cat "$hold_out")"
    peak=0
    for ((i = 0; i < HOLD_SECS * 2 - 1; i++)); do
        v=$(rss_kb "${PID[$name]}")
        ((v > peak)) && peak=$v
        sleep 0.5
    done
    wait "$hp" || die "$target: connection holder failed: $(cat "$hold_out")"
    printf '%s\t%s\tidle-%s\t%s\t%s\n' "$layout" "$target" "$IDLE_CONNS" "$peak" \
        "$(tr '\n' ' ' <"$hold_out")" >>"$MEMORY"

    local wrk_out="$OUT/raw/$layout-wrk$IDLE_CONNS-$target.txt"
    "${CLIENT_PIN[@]}" timeout 60 wrk -t"$WRK_THREADS" -c"$IDLE_CONNS" -d5s \
        -s "$WORK/report.lua" "http://127.0.0.1:$port/" >"$wrk_out" 2>&1 &
    local wp=$!
    BG_PIDS+=("$wp")
    peak=0
    for ((i = 0; i < 12; i++)); do
        sleep 0.4
        v=$(rss_kb "${PID[$name]}")
        ((v > peak)) && peak=$v
    done
    wait "$wp" || die "$target: wrk -c$IDLE_CONNS failed: $(cat "$wrk_out")"
    printf '%s\t%s\twrk-c%s\t%s\t%s\n' "$layout" "$target" "$IDLE_CONNS" "$peak" \
        "$(grep '^RESULT' "$wrk_out")" >>"$MEMORY"
    log "  $layout $target RSS: before $base kB; $(tail -n 2 "$MEMORY" | awk -F'\t' '{printf "%s %s kB; ", $3, $4}')"
}

# ---------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------
# free_ports N, upstream_config, nginx_proxy_config, palisade_config and haproxy_config:
# shared with callgrind.sh and gaps.sh.
# shellcheck source=bench/proxy/configs.sh
source "$ROOT/bench/proxy/configs.sh"

# ---------------------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------------------
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- crates || echo ' (crates/ modified)')"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores$(grep -q hypervisor /proc/cpuinfo && echo ', hypervisor')"
    echo "memory: $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //') ($(dpkg-query -W -f='${Package} ${Version}' nginx-light 2>/dev/null || echo '?'))"
    echo "haproxy: $(haproxy -v | head -n 1)"
    echo "wrk: $(wrk -v 2>&1 | head -n 1 || true)"
    echo "rustc: $(rustc -V)"
    echo "palisade build: $BUILD ($PALISADE)"
    echo "settings: DURATION=$DURATION ROUNDS=$ROUNDS PAIRS=$PAIRS LATENCY_PAIRS=$LATENCY_PAIRS REFUSAL_PAIRS=$REFUSAL_PAIRS REFUSAL_CONNS='$REFUSAL_CONNS' PAIR_DURATION=$PAIR_DURATION LAYOUTS='$LAYOUTS' CONNS=$CONNS IDLE_CONNS=$IDLE_CONNS"
    echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
for layout in $LAYOUTS; do
    case $layout in
    pinned)
        SERVER_CPUS=0
        CLIENT_PIN=(taskset -c 1)
        WORKERS=1
        WRK_THREADS=1
        ;;
    shared)
        SERVER_CPUS=""
        CLIENT_PIN=()
        WORKERS=2
        WRK_THREADS=2
        ;;
    *) die "unknown layout $layout (pinned, shared)" ;;
    esac
    log "layout $layout"
    read -r UP_PORT NGINX_PORT HAPROXY_PORT PAL_PORT ADMIN_PORT <<<"$(free_ports 5)"

    d="$WORK/$layout"
    mkdir -p "$d/upstream" "$d/nginx" "$d/haproxy" "$d/palisade"
    upstream_config "$d/upstream" "$UP_PORT" >"$d/upstream/nginx.conf"
    nginx_proxy_config "$d/nginx" "$NGINX_PORT" "$UP_PORT" "$WORKERS" >"$d/nginx/nginx.conf"
    haproxy_config "$HAPROXY_PORT" "$UP_PORT" "$WORKERS" >"$d/haproxy/haproxy.cfg"
    palisade_config "$PAL_PORT" "$ADMIN_PORT" "$UP_PORT" >"$d/palisade/palisade.toml"
    cp "$d/upstream/nginx.conf" "$OUT/logs/$layout-upstream.nginx.conf"
    cp "$d/nginx/nginx.conf" "$OUT/logs/$layout-proxy.nginx.conf"
    cp "$d/haproxy/haproxy.cfg" "$OUT/logs/$layout-haproxy.cfg"
    cp "$d/palisade/palisade.toml" "$OUT/logs/$layout-palisade.toml"
    "$PALISADE" check --config "$d/palisade/palisade.toml" >/dev/null || die "palisade config refused"
    haproxy -c -q -f "$d/haproxy/haproxy.cfg" || die "haproxy config refused"

    # The upstream always has one worker; in the pinned layout it shares CPU 0 with the
    # proxy under test (the other proxies are idle meanwhile).
    start upstream "$SERVER_CPUS" nginx -e "$d/upstream/error.log" -p "$d/upstream" \
        -c "$d/upstream/nginx.conf" -g 'daemon off;'
    start nginx "$SERVER_CPUS" nginx -e "$d/nginx/error.log" -p "$d/nginx" \
        -c "$d/nginx/nginx.conf" -g 'daemon off;'
    start haproxy "$SERVER_CPUS" haproxy -db -f "$d/haproxy/haproxy.cfg"
    start palisade "$SERVER_CPUS" env TOKIO_WORKER_THREADS="$WORKERS" RUST_LOG=info \
        "$PALISADE" run --config "$d/palisade/palisade.toml"
    wait_port upstream "$UP_PORT"
    wait_port nginx "$NGINX_PORT"
    wait_port haproxy "$HAPROXY_PORT"
    wait_port palisade "$PAL_PORT"
    wait_port palisade "$ADMIN_PORT"

    declare -A URL=(
        [direct]="http://127.0.0.1:$UP_PORT/"
        [nginx]="http://127.0.0.1:$NGINX_PORT/"
        [haproxy]="http://127.0.0.1:$HAPROXY_PORT/"
        [palisade]="http://127.0.0.1:$PAL_PORT/"
        [open-fallback]="http://127.0.0.1:$PAL_PORT/"
        [open-503]="http://127.0.0.1:$PAL_PORT/nofallback"
    )
    http_check direct "${URL[direct]}" 200 ok
    http_check nginx "${URL[nginx]}" 200 ok
    http_check haproxy "${URL[haproxy]}" 200 ok
    http_check palisade "${URL[palisade]}" 200 ok 'x-palisade-attempts: 1'
    http_check palisade "http://127.0.0.1:$PAL_PORT/nofallback" 200 ok 'x-palisade-attempts: 1'

    log "warm-up"
    for t in direct nginx haproxy palisade; do
        "${CLIENT_PIN[@]}" timeout 60 wrk -t"$WRK_THREADS" -c"$CONNS" -d3s "${URL[$t]}" >/dev/null
    done

    for ((round = 1; round <= ROUNDS; round++)); do
        echo "loadavg before $layout round $round: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
        [[ "$(breaker_states)" == closed ]] || die "breaker not closed before round $round: $(breaker_states)"
        # Odd rounds go one way, even rounds the other, so that no contender always runs
        # right after another (and inherits its state of the machine).
        order=(direct nginx haproxy palisade)
        ((round % 2 == 0)) && order=(palisade haproxy nginx direct)
        for t in "${order[@]}"; do
            measure "$layout" "$round" "$t" "${URL[$t]}" 1
            measure "$layout" "$round" "$t" "${URL[$t]}" "$CONNS"
        done
        [[ "$(breaker_states)" == closed ]] || die "breaker left closed state during the proxied runs: $(breaker_states)"
        admin_circuit open
        [[ "$(breaker_states)" == forced-open ]] || die "breaker not forced open: $(breaker_states)"
        http_check open-fallback "${URL[open-fallback]}" 200 fallback 'x-palisade-fallback: 1'
        http_check open-503 "${URL[open-503]}" 503 - 'x-palisade-reason: circuit-open'
        for t in open-fallback open-503; do
            measure "$layout" "$round" "$t" "${URL[$t]}" 1
            measure "$layout" "$round" "$t" "${URL[$t]}" "$CONNS"
        done
        admin_circuit auto
    done

    # Paired short runs, so that each ratio compares runs a few seconds apart: at
    # saturation HAProxy, palisade and nginx back to back; at one connection direct,
    # palisade and nginx (for the added p50). Palisade is always in the middle.
    ((PAIRS > 0)) && log "paired saturation runs: $PAIRS × ($PAIR_DURATION each)"
    paired_runs "$layout" "$PAIRS" p "$CONNS" haproxy palisade nginx
    ((LATENCY_PAIRS > 0)) && log "paired latency runs: $LATENCY_PAIRS × ($PAIR_DURATION each)"
    paired_runs "$layout" "$LATENCY_PAIRS" l 1 direct palisade nginx
    [[ "$(breaker_states)" == closed ]] || die "breaker left closed state during the paired runs: $(breaker_states)"
    if ((REFUSAL_PAIRS > 0)); then
        for conns in $REFUSAL_CONNS; do
            log "paired refusal runs at c$conns: $REFUSAL_PAIRS × ($PAIR_DURATION each)"
            refusal_pairs "$layout" "$REFUSAL_PAIRS" "$conns"
        done
        [[ "$(breaker_states)" == closed ]] || die "breaker not closed after the refusal pairs: $(breaker_states)"
    fi

    log "memory with $IDLE_CONNS connections"
    memory "$layout" palisade "$PAL_PORT" palisade
    memory "$layout" nginx "$NGINX_PORT" nginx
    memory "$layout" haproxy "$HAPROXY_PORT" haproxy

    curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
        grep '^palisade_requests_total' >"$OUT/raw/$layout-palisade-requests.txt" || true

    for name in palisade haproxy nginx upstream; do stop "$name"; done
    unset URL
done
echo "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

python3 "$(dirname "${BASH_SOURCE[0]}")/summarize.py" "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
log "raw output, configs and logs: $OUT"
