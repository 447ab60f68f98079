#!/usr/bin/env bash
# make demo: live-migrates a simulated HVM guest (1 GiB, 2 vCPUs, a workload
# dirtying its memory) from one simulated Xen host to another through
# libxcmig, over a TCP connection on 127.0.0.1, then compares the digests
# and prints a summary. The work is done by xcmig-demo (demo/), which
# `make build` puts next to libxcmig.so; arguments are passed on to it:
#
#   scripts/demo.sh [--memory 4G] [--dirty-rate 200] [--transport unix]
#                   [--engine libxenguest] [--keep] ...   (see --help)
#
# Exit status: xcmig-demo's (0 success, 1 failure, 130 interrupted).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-target}
demo=$target/release/xcmig-demo
if [[ ! -x $demo ]]; then
    echo "demo: $demo not found; run \`make build\` first" >&2
    exit 1
fi
exec "$demo" --target-dir "$target" "$@"
