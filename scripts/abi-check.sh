#!/usr/bin/env bash
# Compares the interface libxcmig.so.0 exports with the previous release's,
# recorded in abi/libxcmig.so.0.abi (abidw, from abigail-tools), with
# abidiff. Part of `make test`.
#
#   scripts/abi-check.sh [LIB]        check (default: target/release/libxcmig.so)
#   scripts/abi-check.sh --self-test  also show the check fails on a removal
#   scripts/abi-check.sh --update     rewrite the baseline (at a release)
#
# Fails on an incompatible change (abidiff's bit 8: a removed or changed
# function or type), which needs a new soname; a compatible one (an added
# function, in a new XCMIG_n node) is reported and passes, and the baseline
# is updated at the next release. Exit: 0 compatible, 1 incompatible,
# 2 the tools failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
baseline="$root/abi/libxcmig.so.0.abi"
target=${CARGO_TARGET_DIR:-$root/target}
mode=check
case "${1:-}" in
--self-test | --update)
    mode=${1#--}
    shift
    ;;
esac
lib=${1:-$target/release/libxcmig.so}
[ -f "$lib" ] || { echo "abi-check: $lib not found; run make lib" >&2; exit 2; }
command -v abidw >/dev/null || { echo "abi-check: abidw not found (Debian package abigail-tools)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --no-corpus-path: the baseline must not depend on where it was built.
abidw --no-corpus-path --no-comp-dir-path "$lib" > "$tmp/current.abi"

if [ "$mode" = update ]; then
    cp "$tmp/current.abi" "$baseline"
    echo "abi-check: baseline $baseline rewritten from $lib"
    exit 0
fi

# abidiff's status is a bit field: 1 error, 2 usage, 4 change, 8 incompatible.
compare() {
    set +e
    abidiff "$1" "$2" > "$3" 2>&1
    local st=$?
    set -e
    if (( st & 3 )); then
        cat "$3" >&2
        echo "abi-check: abidiff failed ($st)" >&2
        exit 2
    fi
    return $st
}

if [ "$mode" = self-test ]; then
    # A baseline that also exports xcmig_gone: the library then lacks a
    # function the previous release had, which must be refused.
    sed "0,/<elf-symbol name='xcmig_version'/s//<elf-symbol name='xcmig_gone' version='XCMIG_0' is-default-version='yes' type='func-type' binding='global-binding' visibility='default-visibility' is-defined='yes'\/>\n    &/" \
        "$baseline" > "$tmp/with-removal.abi"
    grep -q xcmig_gone "$tmp/with-removal.abi" || { echo "abi-check: self-test could not edit the baseline" >&2; exit 2; }
    st=0
    compare "$tmp/with-removal.abi" "$tmp/current.abi" "$tmp/self.txt" || st=$?
    if ! (( st & 8 )) || ! grep -q "xcmig_gone" "$tmp/self.txt"; then
        cat "$tmp/self.txt" >&2
        echo "abi-check: self-test: a removed function was not reported as incompatible ($st)" >&2
        exit 1
    fi
    echo "abi-check: self-test: a removed function is refused"
fi

st=0
compare "$baseline" "$tmp/current.abi" "$tmp/report.txt" || st=$?
if (( st & 8 )); then
    cat "$tmp/report.txt"
    echo "abi-check: INCOMPATIBLE with the previous release ($baseline): this needs a new soname" >&2
    exit 1
elif (( st & 4 )); then
    cat "$tmp/report.txt"
    echo "abi-check: compatible changes since the previous release (update the baseline at the next release: $0 --update)"
else
    echo "abi-check: the exported interface equals the previous release's ($(grep -c '<elf-symbol ' "$baseline") symbols)"
fi
