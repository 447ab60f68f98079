#!/usr/bin/env python3
"""Measures a xensim fill the way xensim/README.md reports it: the share of
zero pages, and the lz4 and zstd compression ratios of the non-zero pages,
per 4 KiB page and per 1 MiB block of consecutive non-zero pages, with the
Debian `lz4` and `zstd` tools (packages lz4 and zstd; `make deps`).

    scripts/measure-fill.py [--xensim BIN] [--memory 1G] [--seed 1]
                            [--fill realistic] [--sample 8]

It builds a PVH guest on a scratch host (a PVH guest's RAM is gfns 0..N with
no holes), reads its RAM from the memory file, writes every page (or every
`--sample`th non-zero page) and every block to its own file, and compresses
them with one tool invocation each: lz4 -1 and zstd -1/-3 (frames without
checksums; the frame headers, a dozen bytes, are counted).
"""

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile

PAGE = 4096
BLOCK = 1 << 20


def parse_size(s):
    units = {"K": 10, "M": 20, "G": 30}
    s = s.strip().upper().removesuffix("IB").removesuffix("B")
    if s and s[-1] in units:
        return int(s[:-1]) << units[s[-1]]
    return int(s)


def compressed(tool, args, chunks, where):
    """Total compressed size of `chunks`, each its own file and frame."""
    os.makedirs(where)
    names = []
    for i, c in enumerate(chunks):
        p = os.path.join(where, f"{i:07d}")
        with open(p, "wb") as f:
            f.write(c)
        names.append(p)
    ext = ".zst" if tool == "zstd" else ".lz4"
    total = 0
    # Batches keep the command line short.
    for i in range(0, len(names), 4096):
        batch = names[i : i + 4096]
        subprocess.run([tool, *args, *batch], check=True, stdin=subprocess.DEVNULL)
        total += sum(os.path.getsize(p + ext) for p in batch)
    shutil.rmtree(where)
    return total


PRINTABLE = set(range(0x20, 0x7F)) | {0x09, 0x0A}


def kind(p):
    """What a non-zero page looks like from its bytes alone (the same rules
    as xensim's tests: printable text, high-entropy random, heap words,
    else code)."""
    if set(p) <= PRINTABLE:
        return "text"
    counts = [0] * 256
    for b in p:
        counts[b] += 1
    h = -sum(c / PAGE * math.log2(c / PAGE) for c in counts if c)
    if h > 7.9:
        return "random"
    words = [int.from_bytes(p[i : i + 8], "little") for i in range(0, PAGE, 8)]
    structured = sum(1 for w in words if w < 1 << 32 or w >> 44 == 0xFFFF8 or w >> 40 == 0x55)
    if structured * 4 >= len(words) * 3 and h < 6.5:
        return "heap"
    return "code"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xensim", default=shutil.which("xensim") or "target/release/xensim")
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--fill", default="realistic")
    ap.add_argument("--sample", type=int, default=1, help="measure every Nth non-zero page")
    ap.add_argument("--by-kind", action="store_true",
                    help="also the per-page ratios of each kind of page, as it looks")
    a = ap.parse_args()
    size = parse_size(a.memory)
    tmp = tempfile.mkdtemp(prefix="measure-fill-", dir=os.environ.get("TMPDIR", "/dev/shm"))
    try:
        host = os.path.join(tmp, "host")
        out = subprocess.run(
            [a.xensim, "domain", "create", "--create-host", "--host", host, "--type", "pvh",
             "--memory", a.memory, "--fill", a.fill, "--seed", a.seed],
            check=True, capture_output=True, text=True).stdout
        domid = out.strip().splitlines()[-1]
        with open(os.path.join(host, "domains", domid, "mem"), "rb") as f:
            mem = f.read(size)
        shutil.rmtree(host)
        zero = bytes(PAGE)
        pages = [mem[i : i + PAGE] for i in range(0, len(mem), PAGE)]
        nonzero = [p for p in pages if p != zero]
        joined = b"".join(nonzero)
        blocks = [joined[i : i + BLOCK] for i in range(0, len(joined), BLOCK)]
        sample = nonzero[:: a.sample]
        print(f"fill {a.fill}, seed {a.seed}, {a.memory}: {len(pages)} pages, "
              f"zero share {1 - len(nonzero) / len(pages):.3f}")
        for tool, args in [("lz4", ["-q", "-m", "-f", "-1", "--no-frame-crc"]),
                           ("zstd", ["-q", "-f", "-1", "--no-check"]),
                           ("zstd", ["-q", "-f", "-3", "--no-check"])]:
            name = f"{tool} {args[3]}"
            per_page = len(sample) * PAGE / compressed(tool, args, sample, os.path.join(tmp, "p"))
            per_block = len(joined) / compressed(tool, args, blocks, os.path.join(tmp, "b"))
            print(f"  {name:8} non-zero pages: {per_page:.2f}x per 4 KiB page, "
                  f"{per_block:.2f}x per 1 MiB block")
        if a.by_kind:
            kinds = {}
            for p in sample:
                kinds.setdefault(kind(p), []).append(p)
            for k, ps in sorted(kinds.items()):
                r = []
                for tool, args in [("lz4", ["-q", "-m", "-f", "-1", "--no-frame-crc"]),
                                   ("zstd", ["-q", "-f", "-3", "--no-check"])]:
                    c = compressed(tool, args, ps, os.path.join(tmp, "k"))
                    r.append(f"{tool} {len(ps) * PAGE / c:.2f}x")
                print(f"  {k:7} {len(ps) / len(sample):6.1%} of non-zero pages: {', '.join(r)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
