#!/usr/bin/env bash
# Short fuzzing run of every parser's cargo-fuzz target (fuzz/), for
# `make test` and CI: the libxc stream reader, the libxl stream walk and the
# xl save-file header.
#
#   FUZZ_SECONDS   run time of the libxc reader (default 60); the smaller
#                  parsers get a third of it each
#   CARGO_TARGET_DIR  build dir (default target/, relative to the repo root);
#                  the fuzz build goes to $CARGO_TARGET_DIR/fuzz
#
# Installs cargo-fuzz when missing. `cargo fuzz` needs nightly features;
# RUSTC_BOOTSTRAP=1 enables them on the stable toolchain.
# -malloc_limit_mb makes any single allocation over 64 MiB a failure: inputs
# are at most a few KiB, so that can only come from trusting a length field.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECONDS:-60}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

target=${CARGO_TARGET_DIR:-target}
case $target in
    /*) ;;
    *) target="$PWD/$target" ;;
esac
export CARGO_TARGET_DIR="$target/fuzz"
export RUSTC_BOOTSTRAP=1

# Fuzz in scratch copies so the committed seed corpora do not grow.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd fuzz
for fuzz_target in stream_reader libxl_reader xl_header; do
    t=$secs
    [[ $fuzz_target == stream_reader ]] || t=$(( (secs + 2) / 3 ))
    mkdir -p "$work/$fuzz_target"
    cp "corpus/$fuzz_target"/* "$work/$fuzz_target/"
    echo "fuzz-smoke: $fuzz_target for ${t}s"
    cargo fuzz run "$fuzz_target" "$work/$fuzz_target" -- \
        -max_total_time="$t" -malloc_limit_mb=64 -rss_limit_mb=1024 -print_final_stats=1
done
