#!/usr/bin/env bash
# Links libxcmig.so (soname libxcmig.so.0) from the crate's staticlib with
# symbol version nodes: xc_domain_save/xc_domain_restore get the node of the
# installed libxenguest (VERS_4.17.0 on Debian 12), the xcmig_* functions
# XCMIG_0 (abi/libxcmig.map.in). Output: ${CARGO_TARGET_DIR:-target}/PROFILE/
# libxcmig.so, plus libxcmig.map (the filled-in version script) and
# libxcmig.xen-version (the Xen release it was linked for, for xcmig.pc).
#
#   scripts/link-lib.sh [release|debug]     (default: release)
#
# XCMIG_ARCHIVE=path overrides the archive (tests link the one `cargo test`
# rebuilt in <profile>/deps/); XCMIG_OUT=path the output library;
# XENGUEST_LIB=path the libxenguest whose node is taken (default: the one
# the compiler links, `$CC -print-file-name=libxenguest.so`).
#
# Why not the cdylib: rustc writes its own anonymous version script for a
# cdylib and GNU ld refuses to combine it with named nodes, so exports of a
# cdylib are always unversioned ("Base"). The xensim shims solve the same
# problem the same way (scripts/link-shims.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:-release}
case "$profile" in
release | debug) ;;
*)
    echo "usage: $0 [release|debug]" >&2
    exit 2
    ;;
esac
target=${CARGO_TARGET_DIR:-$root/target}
archive=${XCMIG_ARCHIVE:-$target/$profile/libxcmig.a}
out=${XCMIG_OUT:-$target/$profile/libxcmig.so}
CC=${CC:-gcc}

if [ ! -f "$archive" ]; then
    echo "link-lib: $archive not found; build it first (cargo build${profile/debug/}${profile/release/ --release} -p xcmig)" >&2
    exit 1
fi

xenguest=${XENGUEST_LIB:-$($CC -print-file-name=libxenguest.so)}
if [ ! -e "$xenguest" ]; then
    echo "link-lib: libxenguest.so not found ($xenguest); install libxen-dev or set XENGUEST_LIB" >&2
    exit 1
fi
# The node of libxenguest's own definitions, e.g. "xc_domain_save@@VERS_4.17.0".
node=$(readelf --dyn-syms -W "$xenguest" | sed -n 's/.* xc_domain_save@@\([A-Za-z0-9_.]*\)$/\1/p' | head -n 1)
restore_node=$(readelf --dyn-syms -W "$xenguest" | sed -n 's/.* xc_domain_restore@@\([A-Za-z0-9_.]*\)$/\1/p' | head -n 1)
if [ -z "$node" ] || [ "$node" != "$restore_node" ]; then
    echo "link-lib: $xenguest does not define xc_domain_save and xc_domain_restore in one version node (save: '${node:-none}', restore: '${restore_node:-none}'); xcmig cannot take its place" >&2
    exit 1
fi
# VERS_4.17.0 (4.17) or libxenguest_4.20.0 (4.18 on) -> 4.17.0 / 4.20.0:
# the release the callback structs come from.
xen_version=${node##*_}

mkdir -p "$(dirname "$out")"
map="${out%.so}.map"
sed "s/@XENGUEST_NODE@/$node/" "$root/abi/libxcmig.map.in" > "$map.tmp"
mv -f "$map.tmp" "$map"

# Native libraries: the Xen ones the crate binds (build.rs), the system
# libzstd (page compression, through the zstd crate), and those a Rust
# staticlib needs on linux-gnu. --as-needed drops libxentoollog, which only
# the crate's unit tests use.
"$CC" -shared -o "$out.tmp" \
    -Wl,-soname,libxcmig.so.0 \
    -Wl,--version-script="$map" \
    -Wl,--gc-sections -Wl,--no-undefined -Wl,-z,relro -Wl,-z,now \
    ${LDFLAGS:-} \
    -Wl,--whole-archive "$archive" -Wl,--no-whole-archive \
    -Wl,--as-needed -lxenguest -lxenctrl -lxenforeignmemory -lxentoollog -lzstd \
    -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
mv -f "$out.tmp" "$out"
echo "$xen_version" > "${out%.so}.xen-version"
echo "link-lib: $out (xc_domain_* in $node, xcmig_* in XCMIG_0)"
