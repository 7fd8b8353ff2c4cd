#!/bin/bash
# Run one fuzz target (fuzz/fuzz_targets/TARGET.rs) for SECONDS with libFuzzer.
# Usage: scripts/fuzz.sh TARGET [SECONDS] [extra libFuzzer flags...]
#        scripts/fuzz.sh all [SECONDS]       every target in turn
# Built with sanitizer coverage on the stable toolchain (no cargo-fuzz, no nightly):
# -Cpasses=sancov-module plus libFuzzer's usual instrumentation flags, debug assertions
# and overflow checks on. The corpus lives in fuzz/corpus/TARGET (seeds in
# fuzz/seeds/TARGET), crashes in fuzz/artifacts/TARGET. One process (no -jobs): the
# machine is shared. Inputs are small (a few KiB), so an input that drives the process
# past 1 GiB of RSS (a length field making a reader allocate what the input lacks) or
# runs for more than 2 s (reported as a slow unit) or 10 s (a crash) is a finding.
# Without a sanitizer runtime libFuzzer's -malloc_limit_mb has no effect, so the RSS
# limit is the allocation check.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
TARGET=${1:?target (or all)}; SECS=${2:-60}; shift $(( $# < 2 ? $# : 2 ))
TARGETS=(image image_raw section_files section_signals busd_config)
if [ "$TARGET" = all ]; then
    for t in "${TARGETS[@]}"; do "$0" "$t" "$SECS" "$@"; done
    exit 0
fi
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks \
-Ccodegen-units=16"
features=()
[ "$TARGET" = busd_config ] && features=(--features busd)
# --target keeps RUSTFLAGS off build scripts and proc macros.
cargo build --release --target x86_64-unknown-linux-gnu --bin "$TARGET" "${features[@]}" >&2
mkdir -p "corpus/$TARGET" "artifacts/$TARGET"
seeds=()
[ -d "seeds/$TARGET" ] && seeds=("seeds/$TARGET")
exec "target/x86_64-unknown-linux-gnu/release/$TARGET" "corpus/$TARGET" "${seeds[@]}" \
    -max_total_time="$SECS" -rss_limit_mb=1024 -report_slow_units=2 \
    -timeout=10 -artifact_prefix="artifacts/$TARGET/" -print_final_stats=1 "$@"
