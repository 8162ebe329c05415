#!/usr/bin/env bash
# What `palisade toxic` adds to a TCP round trip with no fault active, beside HAProxy in
# TCP mode and a direct connection, in one run (issue 21's target: p50 <= 50 us added).
#
# Usage: bench/toxic/run.sh [ROUNDS] [ECHOES_PER_ROUND]
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p palisade-proxy --bin palisade --example toxic_overhead
"$target/release/examples/toxic_overhead" "$target/release/palisade" "${1:-10}" "${2:-2000}"
