#!/usr/bin/env bash
# Builds the sidecar's release binary with profile-guided optimisation (PGO).
#
# Usage: scripts/build-pgo.sh
#   PGO_TARGET_DIR=target/pgo    the builds and the profile go here
#   TRAIN_DURATION=20s           how long the training run lasts
#
# Prints the optimised binary's path on its last line:
#   target/pgo/use/<host triple>/release/palisade
#
# Three steps:
#   1. an instrumented build (`-Cprofile-generate`), which counts every branch taken;
#   2. a training run: `palisade demo` (the zero-setup demo: a steady, a flaky-then-down
#      and a hanging upstream behind the proxy, with retries, breakers, fallbacks and
#      refusals), so the profile comes from the proxy's own mixed traffic, not from the
#      load benchmark it is measured with (bench/proxy/run.sh);
#   3. the optimised build (`-Cprofile-use`): LLVM lays the hot paths out together and
#      moves cold code away, so a request touches fewer instruction cache lines.
# See docs/BENCHMARKS.md ("The eighth round") for what it changes and by how much.
#
# Builds with `--target <host>`, so that the flags apply to the binary's crates only, not
# to build scripts or proc macros. Needs rustup's llvm-tools component for llvm-profdata;
# it is added when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PGO_TARGET_DIR:-$ROOT/target/pgo}"
TRAIN_DURATION="${TRAIN_DURATION:-20s}"

log() { printf '[build-pgo] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

HOST="$(rustc -vV | sed -n 's/^host: //p')"
[[ -n $HOST ]] || die "cannot read the host triple from rustc -vV"
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [[ ! -x $PROFDATA ]]; then
    log "adding rustup's llvm-tools component (for llvm-profdata)"
    rustup component add llvm-tools >&2 ||
        die "cannot add llvm-tools: install it with 'rustup component add llvm-tools' (bench/proxy/run.sh: or measure the plain build with BUILD=plain)"
fi
[[ -x $PROFDATA ]] || die "no llvm-profdata at $PROFDATA after adding llvm-tools"

PROFILES="$OUT/profiles"
rm -rf "$PROFILES"
mkdir -p "$PROFILES"

log "1/3 instrumented build"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$PROFILES" CARGO_TARGET_DIR="$OUT/generate" \
    cargo build --release --locked -p palisade-proxy --target "$HOST" >&2)

log "2/3 training run: palisade demo --duration $TRAIN_DURATION"
LLVM_PROFILE_FILE="$PROFILES/palisade-%p-%m.profraw" \
    "$OUT/generate/$HOST/release/palisade" demo --duration "$TRAIN_DURATION" >"$OUT/training.log" 2>&1 ||
    die "the training run failed; see $OUT/training.log"
compgen -G "$PROFILES/palisade-*.profraw" >/dev/null || die "the training run wrote no profile"
"$PROFDATA" merge -o "$PROFILES/merged.profdata" "$PROFILES"/palisade-*.profraw
# Named by its content: cargo rebuilds when the flags change, not when a file they name
# does, so a new profile must come with a new name.
PROFILE="$OUT/palisade-$(sha256sum "$PROFILES/merged.profdata" | cut -c1-16).profdata"
rm -f "$OUT"/palisade-*.profdata
cp "$PROFILES/merged.profdata" "$PROFILE"

log "3/3 optimised build"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$PROFILE" CARGO_TARGET_DIR="$OUT/use" \
    cargo build --release --locked -p palisade-proxy --target "$HOST" >&2)

BIN="$OUT/use/$HOST/release/palisade"
[[ -x $BIN ]] || die "no $BIN after the build"
echo "$BIN"
