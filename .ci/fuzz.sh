#!/usr/bin/env bash
# Fuzzes the data loaders and the request parsers (fuzz/) for a bounded time each, starting from
# the committed seeds in fuzz/seeds/<target>/. Fails on any panic, hang (>10 s per input) or OOM (>2 GB),
# and prints the reproducer and the command that replays it.
#   FUZZ_SECONDS=60 (per target)   FUZZ_TARGETS="data_loaders parquet requests"
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_TERM_COLOR=never
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TARGETS=${FUZZ_TARGETS:-"data_loaders parquet requests"}
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# No sanitizer: AddressSanitizer needs -Zsanitizer (nightly, or RUSTC_BOOTSTRAP=1 on stable), and it cut
# throughput 2-6x here for no gain in the safe Rust under test; panics, hangs and unbounded memory are
# what is hunted, and libFuzzer catches those without it. 16 codegen units halve the cold build on two
# cores (cargo-fuzz defaults to 1) at no measurable cost in executions per second. Release build with
# debug assertions and overflow checks (cargo-fuzz's default), in fuzz/target, apart from the main build.
echo "== building fuzz targets"
start=$(date +%s)
cargo fuzz build --sanitizer none --codegen-units 16
echo "== built in $(( $(date +%s) - start )) s"
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"

# The targets write their scratch machine folders under TMPDIR; keep them inside the ignored target dir.
export TMPDIR="$PWD/target/tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"

max_len() {
    case "$1" in
        parquet) echo 16384 ;;      # the seeds are simulator files of 1-7 KB
        data_loaders) echo 16384 ;; # a TOML plus up to three small CSVs
        *) echo 8192 ;;             # request bodies
    esac
}

failed=0
for t in $FUZZ_TARGETS; do
    rm -rf "artifacts/$t"
    mkdir -p "corpus/$t" "artifacts/$t"
    log="target/fuzz-$t.log"
    echo "== fuzzing $t for ${FUZZ_SECONDS} s"
    # Corpus first (new inputs go there, kept between local runs), then the committed seeds.
    if "$bin/$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        "corpus/$t" "seeds/$t" >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::peak_rss_mb' "$log" | sed 's/^/   /'
    else
        failed=1
        echo "!! $t FAILED; the end of its log ($PWD/$log):"
        grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' "$log" | tail -n 60
        for a in "artifacts/$t"/*; do
            [ -e "$a" ] || continue
            echo "!! reproducer: $PWD/$a"
            echo "!!   replay: (cd $PWD && cargo fuzz run --sanitizer none --codegen-units 16 $t $a)"
        done
    fi
done
rm -rf "$TMPDIR"
exit "$failed"
