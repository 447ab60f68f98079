#!/usr/bin/env bash
# For `make test` and CI: the fuzz library's own tests (the mutator, the
# restore driver on the committed seeds), then for every cargo-fuzz target
# of fuzz/Cargo.toml (each [[bin]]: the parsers, the whole restore of each
# guest type, and any other) a replay of its committed corpus
# (fuzz/corpus/TARGET, every input run once: a regression fails here) and
# a short fuzzing run from it.
#
#   FUZZ_SECONDS   run time of the libxc reader (default 60); every other
#                  target gets a third of it
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
cargo test --release --lib
cargo fuzz build
bindir="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
targets=$(sed -n '/^\[\[bin\]\]/,/^$/s/^name = "\(.*\)"/\1/p' Cargo.toml)
for fuzz_target in $targets; do
    t=$secs
    [[ $fuzz_target == stream_reader ]] || t=$(( (secs + 2) / 3 ))
    opts=(-malloc_limit_mb=64 -rss_limit_mb=1024)
    # Whole restores: inputs are streams of 1 MiB guests (seeds up to
    # ~130 KiB, room for added pages); the simulated host and ASan's
    # quarantine take more resident memory than the parsers. One allocation
    # of a restore may reach 64 MiB from a small input: a PV guest's p2m
    # frame list, indexed by frame up to X86_PV_P2M_FRAMES's 32-bit end_pfn
    # (a documented term of docs/memory.md); 80 MiB still catches anything
    # sized by a record's claimed length.
    case $fuzz_target in
        restore_*) opts=(-malloc_limit_mb=80 -rss_limit_mb=2048 -max_len=262144) ;;
        # The save engine over a simulated host: 3 header bytes, 32 rules.
        save_hypercalls) opts=(-malloc_limit_mb=64 -rss_limit_mb=2048 -max_len=259 -len_control=0) ;;
    esac
    # The committed corpus: the seeds, and the campaigns' finds packed in
    # corpus/TARGET.found.tar.xz (see scripts/fuzz-campaign.sh).
    mkdir -p "$work/$fuzz_target" "$work/$fuzz_target.found" "corpus/$fuzz_target"
    if [[ -f corpus/$fuzz_target.found.tar.xz ]]; then
        tar -xJf "corpus/$fuzz_target.found.tar.xz" -C "$work/$fuzz_target.found"
    fi
    if compgen -G "corpus/$fuzz_target/*" >/dev/null || compgen -G "$work/$fuzz_target.found/*" >/dev/null; then
        cp "corpus/$fuzz_target"/* "$work/$fuzz_target.found"/* "$work/$fuzz_target/" 2>/dev/null || true
        echo "fuzz-smoke: $fuzz_target: replaying $(ls "corpus/$fuzz_target" | wc -l) seeds and $(ls "$work/$fuzz_target.found" | wc -l) campaign finds"
        "$bindir/$fuzz_target" "${opts[@]}" -runs=0 "corpus/$fuzz_target" "$work/$fuzz_target.found"
    fi
    echo "fuzz-smoke: $fuzz_target for ${t}s"
    "$bindir/$fuzz_target" "$work/$fuzz_target" "${opts[@]}" \
        -max_total_time="$t" -print_final_stats=1 -artifact_prefix="$work/"
done
