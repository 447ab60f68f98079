#!/usr/bin/env bash
# The Debian packaging, end to end (part of `make test`; needs root):
#  1. builds the four packages offline (make vendor, dpkg-buildpackage -b) in
#     a copy of the tree, and runs lintian on them;
#  2. installs them and runs Debian's libxl-save-helper, now the
#     xcmig-libxl wrapper, through a save and a restore: both must bind to
#     the installed libxcmig.so.0 (LD_DEBUG=bindings), and to libxenguest
#     with XCMIG_DISABLE=1;
#  3. purges xcmig-libxl: the original helper is back byte for byte and the
#     calls bind to libxenguest again;
#  4. removes the other packages, leaving the machine as it was.
#
# Results: ${CARGO_TARGET_DIR:-target}/package-test/ (the .debs, lintian's
# output, the build log).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
work="$target/package-test"
helper=/usr/lib/xen-4.17/bin/libxl-save-helper
packages=(libxcmig0 libxcmig-dev xcmig-tools xcmig-libxl)

if [[ $(id -u) -ne 0 ]]; then
    if [[ ${CI:-} == true ]]; then
        echo "package-test: must run as root in CI" >&2
        exit 1
    fi
    echo "package-test: SKIPPED: installing packages needs root (CI runs it as root)" >&2
    exit 0
fi

step() { echo "package-test: $*"; }
installed() {
    local p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' && echo "$p"
    done
    return 0
}
cleanup() {
    # Leave the machine as found, whatever failed. dpkg, not apt: apt
    # refuses the whole command for a local package it no longer knows.
    local left
    left=$(installed)
    [[ -z $left ]] || dpkg --purge $left >/dev/null || echo "package-test: could not purge $left" >&2
    left=$(installed)
    [[ -z $left ]] || echo "package-test: still installed: $left" >&2
}
trap cleanup EXIT
already=$(installed)
if [[ -n $already ]]; then
    echo "package-test: already installed: $already; remove them first (this test installs and purges them)" >&2
    trap - EXIT
    exit 1
fi

rm -rf "$work"
mkdir -p "$work/src"
step "vendoring crates (make vendor)"
make -s vendor CARGO="${CARGO:-cargo}"

# A copy of the tracked files (as they are now, committed or not) plus
# vendor/: dpkg-buildpackage writes the packages beside the tree.
tree="$work/src/xcmig-$(dpkg-parsechangelog -S Version)"
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [[ -e $f ]] && printf '%s\0' "$f"
done | xargs -0 cp --parents -a -t "$tree"
cp -a vendor "$tree/vendor"

step "dpkg-buildpackage -us -uc -b (log: $work/build.log)"
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    echo "package-test: dpkg-buildpackage failed" >&2
    exit 1
fi
changes=$(ls "$work"/src/xcmig_*_amd64.changes)
for p in "${packages[@]}" libxcmig0-dbgsym; do
    ls "$work"/src/"${p}"_*.*deb >/dev/null || { echo "package-test: no package $p" >&2; exit 1; }
done

step "lintian $(basename "$changes")"
if ! lintian --fail-on error,warning --info "$changes" >"$work/lintian.txt" 2>&1; then
    cat "$work/lintian.txt" >&2
    echo "package-test: lintian failed" >&2
    exit 1
fi
cat "$work/lintian.txt"

# Dependencies as dpkg-shlibdeps computed them.
deps() { dpkg-deb -f "$1" Depends; }
lib_deps=$(deps "$work"/src/libxcmig0_*.deb)
tools_deps=$(deps "$work"/src/xcmig-tools_*.deb)
for want in libxenmisc4.17 libc6 libgcc-s1; do
    grep -q "$want" <<<"$lib_deps" || { echo "package-test: libxcmig0 Depends lacks $want: $lib_deps" >&2; exit 1; }
done
# xcmig needs no Xen; the shims stand in for it: only the real libxentoollog.
if grep -q "libxenmisc" <<<"$tools_deps"; then
    echo "package-test: xcmig-tools must not depend on Xen's libraries: $tools_deps" >&2
    exit 1
fi

original=$(sha256sum "$helper" | cut -d' ' -f1)
step "installing ${packages[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "$work"/src/libxcmig0_*_amd64.deb "$work"/src/libxcmig-dev_*_amd64.deb \
    "$work"/src/xcmig-tools_*_amd64.deb "$work"/src/xcmig-libxl_*_all.deb >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; exit 1; }
dpkg-divert --list "$helper" | grep -q "by xcmig-libxl" || { echo "package-test: $helper is not diverted" >&2; exit 1; }
[[ $(sha256sum "$helper.distrib" | cut -d' ' -f1) == "$original" ]] || { echo "package-test: diverted helper differs" >&2; exit 1; }
head -n 1 "$helper" | grep -q '^#!/bin/sh' || { echo "package-test: $helper is not the wrapper" >&2; exit 1; }

dropin() {
    local expect=$1
    shift
    step "libxl-save-helper save+restore, expecting $expect ${*:+($*)}"
    env "$@" XCMIG_PACKAGE_EXPECT="$expect" ${CARGO:-cargo} test --release -q -p xcmig --test capi_dropin -- \
        --ignored --exact packaged_libxl_save_helper_binds_where_the_package_state_says
}
dropin xcmig
dropin libxenguest XCMIG_DISABLE=1
# The installed commands work (xcmig needs no Xen; --help names exit codes).
/usr/bin/xcmig --version
/usr/bin/xensim --version
for page in man1/xcmig.1 man1/xensim.1 man7/libxcmig.7; do
    [[ -z $(MANROFFOPT=-ww man -l -Tutf8 "/usr/share/man/$page.gz" 2>&1 >/dev/null) ]] ||
        { echo "package-test: $page does not render cleanly" >&2; exit 1; }
done
for cmd in xcmig xensim; do
    bash -c "source /usr/share/bash-completion/completions/$cmd && complete -p $cmd" >/dev/null ||
        { echo "package-test: the installed bash completion of $cmd does not load" >&2; exit 1; }
done

step "apt-get purge xcmig-libxl"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq xcmig-libxl >>"$work/install.log" 2>&1
[[ $(sha256sum "$helper" | cut -d' ' -f1) == "$original" ]] || { echo "package-test: $helper is not the original after purge" >&2; exit 1; }
[[ ! -e $helper.distrib ]] || { echo "package-test: $helper.distrib left behind" >&2; exit 1; }
[[ ! -e /etc/default/xcmig ]] || { echo "package-test: /etc/default/xcmig left after purge" >&2; exit 1; }
dropin libxenguest
cleanup
trap - EXIT
[[ -z $(installed) ]] || { echo "package-test: the packages could not be purged" >&2; exit 1; }
step "OK: built, lintian clean, libxl-save-helper switched to xcmig and back, packages purged"
