#!/usr/bin/env bash
# Runs every palisade-bench criterion group with short settings, then prints
# ns/call for every contender, the ours ÷ peer ratios with their targets, the
# allocations per call and the call futures' sizes each group printed.
#
# Usage: crates/palisade-bench/run.sh [GROUP...]    (default: all six groups)
#   ROUNDS=2 crates/palisade-bench/run.sh             run every group twice, report the best
#   REPORT_ONLY=1 crates/palisade-bench/run.sh        re-print the tables from the last run
#   WARM_UP=1 MEASURE=3 SAMPLES=40                     criterion settings (seconds, count)
#
# One cargo process at a time (the machine has 2 cores). A time is criterion's median
# estimate from target/criterion/<group>/<bench>/new/estimates.json; with ROUNDS > 1 the
# table shows the lowest median of the rounds (noise from other processes only ever adds
# time) and the highest, so the spread is visible. /proc/loadavg is logged per group.
set -euo pipefail

cd "$(dirname "$0")/../.."
ALL_GROUPS=(breaker rate_limit bulkhead retry pipeline contention overload)
if [[ $# -gt 0 ]]; then GROUPS_TO_RUN=("$@"); else GROUPS_TO_RUN=("${ALL_GROUPS[@]}"); fi
WARM_UP="${WARM_UP:-1}"
MEASURE="${MEASURE:-3}"
SAMPLES="${SAMPLES:-40}"
ROUNDS="${ROUNDS:-1}"

TARGET_DIR="$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
CRITERION_DIR="$TARGET_DIR/criterion"
ALLOC_LOG="$CRITERION_DIR/palisade-allocs.txt"
LOAD_LOG="$CRITERION_DIR/palisade-load.txt"
SUMMARY="$CRITERION_DIR/palisade-summary.md"
mkdir -p "$CRITERION_DIR"

# Copies the medians of the last run of every group into palisade-round-$1.json.
snapshot() {
    python3 - "$CRITERION_DIR" "$1" <<'PY'
import glob, json, os, sys
root, round_no = sys.argv[1], sys.argv[2]
medians = {}
for path in glob.glob(os.path.join(root, "*", "*", "new", "estimates.json")):
    bench_dir = os.path.dirname(os.path.dirname(path))
    key = os.path.basename(os.path.dirname(bench_dir)) + "/" + os.path.basename(bench_dir)
    with open(path) as f:
        medians[key] = json.load(f)["median"]["point_estimate"]
with open(os.path.join(root, f"palisade-round-{round_no}.json"), "w") as f:
    json.dump(medians, f, indent=1, sort_keys=True)
PY
}

if [[ "${REPORT_ONLY:-0}" != 1 ]]; then
    cargo bench -p palisade-bench --no-run
    rm -f "$CRITERION_DIR"/palisade-round-*.json "$LOAD_LOG"
    for round in $(seq 1 "$ROUNDS"); do
        for group in "${GROUPS_TO_RUN[@]}"; do
            echo "=== round $round: $group"
            log="$CRITERION_DIR/palisade-$group.log"
            echo "round $round $group before: $(cat /proc/loadavg)" >> "$LOAD_LOG"
            cargo bench -p palisade-bench --bench "$group" -- \
                --warm-up-time "$WARM_UP" --measurement-time "$MEASURE" \
                --sample-size "$SAMPLES" 2>&1 | tee "$log"
            echo "round $round $group after:  $(cat /proc/loadavg)" >> "$LOAD_LOG"
        done
        snapshot "$round"
    done
    cat "$CRITERION_DIR"/palisade-*.log | grep -E '^(ALLOCS|FUTURE_BYTES) ' > "$ALLOC_LOG" || true
elif ! compgen -G "$CRITERION_DIR/palisade-round-*.json" > /dev/null; then
    snapshot 1 # report-only after a plain `cargo bench`: use criterion's latest estimates
fi

python3 - "$CRITERION_DIR" "$ALLOC_LOG" "$LOAD_LOG" <<'PY' | tee "$SUMMARY"
import glob, json, os, sys

root, alloc_log, load_log = sys.argv[1], sys.argv[2], sys.argv[3]

rounds = []
for path in sorted(glob.glob(os.path.join(root, "palisade-round-*.json"))):
    with open(path) as f:
        rounds.append(json.load(f))

def samples(group, bench):
    key = f"{group}/{bench}"
    return [r[key] for r in rounds if key in r]

def ns(group, bench):
    """The lowest median over the rounds."""
    values = samples(group, bench)
    return min(values) if values else None

def ns_max(group, bench):
    values = samples(group, bench)
    return max(values) if values else None

CONTENDERS = {
    "breaker": ["sync_palisade", "sync_recloser", "sync_failsafe", "async_palisade",
                "async_recloser", "async_failsafe", "tower_palisade", "tower_resilience"],
    "rate_limit": ["direct_palisade", "direct_palisade_default_clock", "direct_governor",
                   "keyed_palisade", "keyed_governor"],
    "bulkhead": ["sync_palisade", "sync_tokio_semaphore", "async_palisade", "tower_palisade",
                 "tower_concurrency_limit", "tower_resilience"],
    "retry": ["bare", "palisade_call", "tower_bare", "tower_palisade", "tower_retry",
              "tower_resilience"],
    "pipeline": ["palisade_call", "palisade_layer", "tower_stack", "resilience_stack",
                 "bare_call", "bare_service"],
    "contention": ["breaker_1_thread", "breaker_2_threads", "recloser_1_thread",
                   "recloser_2_threads", "pipeline_1_thread", "pipeline_2_threads"],
    "overload": ["adaptive_palisade", "adaptive_congestion_limiter", "shed_decision",
                 "throttle_decision", "fault_off", "no_policy"],
}

# (group, ours, peer, target ratio or None)
RATIOS = [
    ("breaker", "sync_palisade", "sync_recloser", 1.0),
    ("breaker", "sync_palisade", "sync_failsafe", 0.25),
    ("breaker", "async_palisade", "async_recloser", None),
    ("breaker", "async_palisade", "async_failsafe", None),
    ("breaker", "tower_palisade", "tower_resilience", None),
    ("rate_limit", "direct_palisade", "direct_governor", 1.0),
    ("rate_limit", "keyed_palisade", "keyed_governor", 1.0),
    ("rate_limit", "direct_palisade_default_clock", "direct_governor", None),
    ("bulkhead", "tower_palisade", "tower_concurrency_limit", 1.0),
    ("bulkhead", "tower_palisade", "tower_resilience", None),
    ("bulkhead", "sync_palisade", "sync_tokio_semaphore", 1.0),
    ("retry", "palisade_call", "bare", None),
    ("retry", "tower_palisade", "tower_retry", None),
    ("retry", "tower_palisade", "tower_resilience", None),
    ("pipeline", "palisade_layer", "tower_stack", None),
    ("pipeline", "palisade_layer", "resilience_stack", None),
    ("pipeline", "palisade_call", "tower_stack", None),
    ("contention", "breaker_2_threads", "breaker_1_thread", 2.0),
    ("contention", "recloser_2_threads", "recloser_1_thread", None),
    ("contention", "pipeline_2_threads", "pipeline_1_thread", 2.0),
    ("overload", "adaptive_palisade", "adaptive_congestion_limiter", 1.0),
    ("overload", "fault_off", "no_policy", None),
]

# (description, value function, limit in ns)
def diff(group, a, b):
    x, y = ns(group, a), ns(group, b)
    return None if x is None or y is None else x - y

ABSOLUTE = [
    ("retry overhead: palisade_call - bare (ns)", lambda: diff("retry", "palisade_call", "bare"), 5.0),
    ("pipeline palisade_call (ns/call)", lambda: ns("pipeline", "palisade_call"), 100.0),
    ("pipeline palisade_layer (ns/call)", lambda: ns("pipeline", "palisade_layer"), 100.0),
    ("shed decision (ns)", lambda: ns("overload", "shed_decision"), 20.0),
    ("throttle decision (ns)", lambda: ns("overload", "throttle_decision"), 20.0),
    ("fault injection off over no policy (ns)", lambda: diff("overload", "fault_off", "no_policy"), 2.0),
]

def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"

def verdict(value, limit):
    if limit is None:
        return ""
    if value is None:
        return "not run"
    return "met" if value <= limit else "MISSED"

print(f"## ns/call (criterion median; best and worst of {len(rounds)} round(s))\n")
print("| group | contender | ns/call | worst round |")
print("|---|---|---:|---:|")
for group, benches in CONTENDERS.items():
    for bench in benches:
        print(f"| {group} | {bench} | {fmt(ns(group, bench))} | {fmt(ns_max(group, bench))} |")

print("\n## ratios (ours ÷ peer; contention: 2 threads ÷ 1 thread)\n")
print("| group | ours | peer | ratio | target | verdict |")
print("|---|---|---|---:|---:|---|")
for group, ours, peer, target in RATIOS:
    a, b = ns(group, ours), ns(group, peer)
    r = None if a is None or b is None else a / b
    t = "" if target is None else f"≤ {target:g}"
    print(f"| {group} | {ours} | {peer} | {fmt(r, 2)} | {t} | {verdict(r, target)} |")

print("\n## absolute targets\n")
print("| figure | value | target | verdict |")
print("|---|---:|---:|---|")
for name, value, limit in ABSOLUTE:
    v = value()
    print(f"| {name} | {fmt(v)} | < {limit:g} | {verdict(v, limit)} |")

lines = []
if os.path.exists(alloc_log):
    with open(alloc_log) as f:
        lines = [line.split() for line in f if line.strip()]

print("\n## heap allocations per call (10,000 calls, success path)\n")
print("| group | contender | allocations/call |")
print("|---|---|---:|")
for kind, group, contender, value in lines:
    if kind == "ALLOCS":
        print(f"| {group} | {contender} | {value} |")

print("\n## size of one call's future (bytes; a boxed future shows as 16)\n")
print("| group | contender | bytes |")
print("|---|---|---:|")
for kind, group, contender, value in lines:
    if kind == "FUTURE_BYTES":
        print(f"| {group} | {contender} | {value} |")

if os.path.exists(load_log):
    print("\n## /proc/loadavg around each group\n")
    print("```")
    with open(load_log) as f:
        print(f.read().rstrip())
    print("```")
PY
echo "summary written to $SUMMARY"
