#!/usr/bin/env bash
# Runs the C harnesses of capi-tests/ through the external contract only, the
# way an outside C toolstack would: target/release/xensim, target/xensim/lib
# on LD_LIBRARY_PATH ahead of the system's Xen libraries, XENSIM_HOST, and
# Debian's libxenguest behind xc_domain_save/xc_domain_restore.
#
#   1. xg-layout: xenguest.h's callback structs are self-consistent;
#   2. the harnesses reject bad command lines with status 2;
#   3. a small HVM guest is saved (non-live), the stream passes Debian's
#      verify-stream-v2, it is restored into an --empty domain, and the
#      digests match.
# The 256 MiB HVM/PVH evidence (live, libxl-save-helper, faults) runs in
# `cargo test -p xensim` (xensim/tests/).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
capi=$target/capi-tests
xensim=$target/release/xensim
shim=$target/xensim/lib

make -s -C capi-tests OUT="$capi"

fail() { echo "run-c-tests: FAIL: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/xcmig-c-tests.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. Layout.
timeout 60 "$capi/xg-layout" > "$work/layout" || fail "xg-layout reports an inconsistent struct"
for s in precopy_stats save_callbacks restore_callbacks; do
    grep -q "^size $s [0-9]" "$work/layout" || fail "xg-layout printed no size for $s"
done
echo "run-c-tests: xg-layout ok ($(wc -l < "$work/layout") facts)"

# 2. Usage errors.
for cmd in "xg-save" "xg-save 1" "xg-save --bogus 1 f" "xg-restore" \
           "xg-restore --store-evtchn x 1 f" "xg-suspend" "xg-suspend -1" \
           "xg-hvmparam 1" "xg-hvmparam 1 x"; do
    set +e
    # shellcheck disable=SC2086 # word splitting is the point
    timeout 60 "$capi"/$cmd 2> /dev/null
    rc=$?
    set -e
    [[ $rc -eq 2 ]] || fail "'$cmd' exited $rc, expected 2 (usage)"
done
echo "run-c-tests: usage errors ok"

# 3. A small round trip through Debian's libxenguest on xensim.
for f in "$xensim" "$shim/libxenctrl.so.4.17"; do
    [[ -e $f ]] || fail "$f is missing; run \`make build\` first"
done
export XENSIM_HOST=$work/host
mkdir -p "$XENSIM_HOST"
export LD_LIBRARY_PATH=$shim:/usr/lib/x86_64-linux-gnu
unset XENSIM_FAULTS LD_PRELOAD
xs() { timeout 120 "$xensim" domain "$1" --host "$XENSIM_HOST" "${@:2}"; }

src=$(xs create --type hvm --memory 64M --fill mixed --seed 7 | tail -n 1)
timeout 120 "$capi/xg-save" "$src" "$work/hvm.img" 2> "$work/save.log" \
    || { tail -n 20 "$work/save.log" >&2; fail "xg-save of domain $src"; }
PYTHONPATH=/usr/lib/xen-4.17/lib/python timeout 120 python3 \
    /usr/lib/xen-4.17/bin/verify-stream-v2 -f libxc -i "$work/hvm.img" \
    || fail "verify-stream-v2 rejected the stream"
src_digest=$(xs digest "$src" | tail -n 1)
dst=$(xs create --type hvm --memory 64M --empty | tail -n 1)
timeout 120 "$capi/xg-restore" "$dst" "$work/hvm.img" > "$work/restore.out" 2> "$work/restore.log" \
    || { tail -n 20 "$work/restore.log" >&2; fail "xg-restore into domain $dst"; }
dst_digest=$(xs digest "$dst" | tail -n 1)
[[ -n $src_digest && $src_digest == "$dst_digest" ]] \
    || fail "digests differ: source $src_digest, restored $dst_digest"
echo "run-c-tests: HVM 64 MiB save/verify/restore ok, $(cat "$work/restore.out"), digest $dst_digest"
