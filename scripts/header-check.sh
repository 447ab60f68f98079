#!/usr/bin/env bash
# Builds (cargo check) the library against each Xen release's xenguest.h in
# tests/fixtures/xenguest/ (the rest of the headers are the installed 4.17
# ones): 4.17 to 4.21 declare the prototypes src/capi/exports.rs implements
# and must build; 4.22's xc_domain_restore has a `memflags` parameter more,
# and build.rs must refuse it with a message naming the difference. Part of
# `make test`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")/header-check
fixtures=tests/fixtures/xenguest
CARGO=${CARGO:-cargo}

# VERSION EXPECTATION
expect=(
    "4.17 builds"
    "4.18 builds"
    "4.19 builds"
    "4.20 builds"
    "4.21 builds"
    "4.22 refuses"
)
status=0
for e in "${expect[@]}"; do
    v=${e% *}
    want=${e#* }
    log="$target/$v.log"
    mkdir -p "$target"
    if XEN_INCLUDE_DIR="$root/$fixtures/$v" CARGO_TARGET_DIR="$target" \
        "$CARGO" check -q -p xcmig --lib >"$log" 2>&1; then
        got=builds
    else
        got=refuses
    fi
    if [[ $got != "$want" ]]; then
        echo "header-check: xenguest.h $v: $got, expected it $want" >&2
        tail -n 20 "$log" >&2
        status=1
        continue
    fi
    if [[ $got == refuses ]]; then
        # Refused for the right reason, saying so plainly.
        if ! grep -q "declares xc_domain_restore(.*memflags: ::core::ffi::c_uint), but xcmig implements the prototype of Xen 4.17 to 4.21" "$log"; then
            echo "header-check: xenguest.h $v was refused, but not with the prototype message:" >&2
            tail -n 20 "$log" >&2
            status=1
            continue
        fi
        echo "header-check: xenguest.h $v: refused: $(grep -o 'declares xc_domain_restore(.*memflags[^)]*)' "$log" | head -n 1 | sed 's/(.*, *\(memflags[^)]*\))/(..., \1)/')"
    else
        echo "header-check: xenguest.h $v: builds"
    fi
done
exit $status
