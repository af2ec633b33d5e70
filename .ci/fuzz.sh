#!/usr/bin/env bash
# Fuzz the parsers of outside data (fuzz/README.md): build every cargo-fuzz
# target, run each for SECONDS (default 20, what CI spends), print each
# target's executions, and fail when any target crashed.
#
#   bash .ci/fuzz.sh        # CI: 20 s per target
#   bash .ci/fuzz.sh 600    # a longer hunt
#
# A crash's input lands in fuzz/artifacts/<target>/; the run's log in
# fuzz/target/logs/<target>.log. What each run adds to the corpus stays in
# fuzz/target/corpus/<target> (not committed), so longer runs build on
# earlier ones; the committed seeds are fuzz/corpus/<target>.
#
# The SSE parser gets a target here when the SSE transport exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-20}
case $seconds in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
started=$SECONDS

# cargo-fuzz, pinned, into the project's .tools/ (never installed by hand).
version=0.13.2
root=$PWD/.tools/cargo
if [ "$("$root/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $version" ]; then
    cargo install cargo-fuzz --locked --version "$version" --root "$root"
fi
export PATH=$root/bin:$PATH

# libFuzzer's instrumentation wants nightly; a machine with only the stable
# toolchain builds the same way with RUSTC_BOOTSTRAP (no sanitizer needs it).
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
fi
# No sanitizer by default: the fuzzed parsers are safe Rust (the crate's
# few unsafe blocks are in process and platform code), and without ASan the
# build is shorter and the targets run faster. FUZZ_SANITIZER=address for a
# hunt that wants it.
sanitizer=${FUZZ_SANITIZER:-none}
# The fuzz crate keeps its own target directory (fuzz/target).
unset CARGO_TARGET_DIR

build_started=$SECONDS
# 16 codegen units (cargo-fuzz's default is 1) let the large crates'
# code generation use both cores, for a slightly slower run; debug
# assertions and overflow checks stay on (cargo-fuzz's default).
cargo "${toolchain[@]}" fuzz build --sanitizer "$sanitizer" --codegen-units 16
echo "fuzz: build took $((SECONDS - build_started)) s"

triple=$(rustc "${toolchain[@]}" -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$triple/release
mkdir -p fuzz/target/logs
failed=()
for target in $(cargo "${toolchain[@]}" fuzz list); do
    work=fuzz/target/corpus/$target
    artifacts=fuzz/artifacts/$target
    log=fuzz/target/logs/$target.log
    mkdir -p "$work" "$artifacts"
    # New inputs go to the first directory (the uncommitted one); the
    # committed seeds are read only.
    if "$bin_dir/$target" "$work" "fuzz/corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1; then
        status=ok
    else
        status=CRASHED
        failed+=("$target")
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    printf 'fuzz: %-12s %-7s %10s execs in %s s\n' "$target" "$status" "${execs:-?}" "$seconds"
done

for target in "${failed[@]}"; do
    echo "---- fuzz/target/logs/$target.log (end) ----"
    tail -n 40 "fuzz/target/logs/$target.log"
done
echo "fuzz: total $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}; inputs in fuzz/artifacts/ (see fuzz/README.md)" >&2
    exit 1
fi
