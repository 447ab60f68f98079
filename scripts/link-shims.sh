#!/usr/bin/env bash
# Links the xensim-shim staticlib into the four shared libraries that replace
# Xen's on a simulated host, with Debian Xen 4.17's sonames and symbol version
# nodes, into ${CARGO_TARGET_DIR:-target}/xensim/lib/.
#
#   scripts/link-shims.sh [release|debug]     (default: release)
#
# SHIM_ARCHIVE=path overrides the archive (the tests use the one cargo test
# built, which stays in <profile>/deps/).
#
# Why not a cdylib: rustc's own version script wins, and exported symbols end
# up as "Base" instead of VERS_4.17.0 (DESIGN section 6). So each library is
# linked here with gcc from the whole archive and its own version script,
# which exports exactly that library's symbols; everything else is local.
# Each library thus carries its own copy of the code; the handles they pass
# each other come from one archive, so their layouts agree. The archive also
# holds the shim's C part (c/variadic.c, compiled by xensim/shim/build.rs):
# only libxenctrl's version script exports it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=${1:-release}
case "$profile" in
release | debug) ;;
*)
    echo "usage: $0 [release|debug]" >&2
    exit 2
    ;;
esac
target=${CARGO_TARGET_DIR:-target}
archive=${SHIM_ARCHIVE:-$target/$profile/libxensim_shim.a}
vers="xensim/shim/vers"
out="$target/xensim/lib"
CC=${CC:-gcc}

if [ ! -f "$archive" ]; then
    echo "link-shims: $archive not found; build it first (cargo build -p xensim-shim${profile/debug/}${profile/release/ --release})" >&2
    exit 1
fi
mkdir -p "$out"

# Native libraries a Rust staticlib needs on linux-gnu, plus the real
# libxentoollog that the loggers belong to.
natives=(-lxentoollog -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)

# link NAME SONAME REALNAME MAPFILE [extra flags...]
link() {
    local soname=$2 real=$3 map=$4
    shift 4
    "$CC" -shared -o "$out/$real.tmp" \
        -Wl,-soname,"$soname" \
        -Wl,--version-script="$vers/$map" \
        -Wl,--gc-sections -Wl,--no-undefined -Wl,-z,relro -Wl,-z,now \
        "$@" \
        -Wl,--whole-archive "$archive" -Wl,--no-whole-archive \
        "${natives[@]}"
    mv -f "$out/$real.tmp" "$out/$real"
    ln -sfn "$real" "$out/$soname"
    ln -sfn "$soname" "$out/${soname%%.so*}.so"
}

link xencall libxencall.so.1 libxencall.so.1.3 libxencall.map
link xenforeignmemory libxenforeignmemory.so.1 libxenforeignmemory.so.1.4 libxenforeignmemory.map
link xenevtchn libxenevtchn.so.1 libxenevtchn.so.1.2 libxenevtchn.map

# libxenctrl NEEDs the other three, as the real one does: libxenguest imports
# xencall1 and xenforeignmemory_* without naming their libraries.
link xenctrl libxenctrl.so.4.17 libxenctrl.so.4.17.0 libxenctrl.map \
    -L"$out" -Wl,--no-as-needed \
    -l:libxencall.so.1 -l:libxenforeignmemory.so.1 -l:libxenevtchn.so.1 -Wl,--as-needed

echo "link-shims: $(cd "$out" && ls libxen*.so.* | tr '\n' ' ')-> $out"
