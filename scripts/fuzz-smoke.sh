#!/usr/bin/env bash
# Short fuzzing run of the libxc stream reader (cargo-fuzz target
# `stream_reader`, fuzz/), for `make test` and CI.
#
#   FUZZ_SECONDS   run time (default 60)
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

# Fuzz in a scratch copy so the committed seed corpus does not grow.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp fuzz/corpus/stream_reader/* "$work/"

cd fuzz
cargo fuzz run stream_reader "$work" -- \
    -max_total_time="$secs" -malloc_limit_mb=64 -rss_limit_mb=1024 -print_final_stats=1
