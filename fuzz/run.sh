#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS_PER_TARGET seconds (default 60):
#
#     fuzz/run.sh [SECONDS_PER_TARGET]
#
# First every regression input under tests/data/fuzz/<target>/ is replayed once; then
# each target is fuzzed with its dictionary (fuzz/dict/<target>.dict), its committed
# seeds (fuzz/seeds/<target>/) and the git-ignored working corpus
# (fuzz/corpus/<target>/, which grows from run to run). Crashing inputs go to
# fuzz/artifacts/<target>/. One line per target:
#
#     fuzz <target>: <executions> execs, <crashes> crashes, <seconds> s
#
# Exit status: non-zero if a regression input or a fuzzing run crashed (or the build
# failed). FUZZ_TARGETS="text binary" runs a subset; FUZZ_KNOWN_ISSUES skips the
# checks of reported bugs (see README.md). Needs only the stable toolchain:
# cargo-fuzz's nightly flags are allowed with RUSTC_BOOTSTRAP=1; cargo-fuzz itself is
# installed from crates.io when missing.
set -euo pipefail

secs="${1:-60}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz_dir")"
cd "$fuzz_dir"
targets="${FUZZ_TARGETS:-text binary auth session snapshot cluster}"
export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# Per-target input size limits: above the parsers' thresholds (2048-byte lines,
# 16 KiB -Y blocks, -I 1k..16k items, a snapshot of a few blocks), small enough to
# stay fast.
max_len() {
    case "$1" in
        auth) echo 20480 ;;
        snapshot) echo 16384 ;;
        *) echo 8192 ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo-fuzz is not installed: cargo install cargo-fuzz --locked"
    timeout 1200 cargo install cargo-fuzz --locked
fi
echo "== $(cargo fuzz --version)"

# No sanitizer by default: the parsers are safe Rust (no `unsafe` in src/protocol or
# src/auth), where ASan finds nothing and costs 5x the executions. FUZZ_SANITIZER=address
# turns it back on (for dependencies' unsafe code, say).
sanitizer="${FUZZ_SANITIZER:-none}"
echo "== build (cargo fuzz build -O -a -s $sanitizer: release, debug assertions, overflow checks)"
build_start=$(date +%s)
timeout 1800 cargo fuzz build -O -a -s "$sanitizer"
echo "== built in $(( $(date +%s) - build_start )) s"
bin="$fuzz_dir/target/x86_64-unknown-linux-gnu/release"

failed=0

echo "== regression inputs (tests/data/fuzz/<target>/)"
mkdir -p logs
for t in $targets; do
    dir="$root/tests/data/fuzz/$t"
    files=()
    if [ -d "$dir" ]; then
        while IFS= read -r -d '' f; do files+=("$f"); done \
            < <(find "$dir" -type f ! -name '*.md' -print0 | sort -z)
    fi
    bad=0
    for f in "${files[@]+"${files[@]}"}"; do
        if ! timeout 60 "$bin/$t" -runs=1 "$f" >"logs/replay-$t.log" 2>&1; then
            echo "regression $t: FAILED ${f#"$root"/}"
            grep -m1 -A1 "panicked at" "logs/replay-$t.log" | sed 's/^/    /' || true
            bad=$((bad + 1))
        fi
    done
    rm -f "logs/replay-$t.log"
    echo "regression $t: ${#files[@]} inputs, $bad failed"
    [ "$bad" -eq 0 ] || failed=1
done

echo "== fuzzing, ${secs} s per target"
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    log="logs/$t.log"
    start=$(date +%s)
    set +e
    timeout $((secs + 300)) "$bin/$t" "corpus/$t" "seeds/$t" \
        -dict="dict/$t.dict" -max_total_time="$secs" -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # died without writing an artifact (build mismatch, timeout(1), ...)
    fi
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)
    echo "fuzz $t: ${execs:-0} execs, $crashes crashes, $took s"
    [ -z "$cov" ] || echo "    $cov"
    if [ "$crashes" -ne 0 ]; then
        failed=1
        grep -m1 -A3 -E "panicked at|ERROR: libFuzzer" "$log" | sed 's/^/    /' || true
        echo "    log: fuzz/$log; inputs: fuzz/artifacts/$t/"
    fi
done
exit "$failed"
