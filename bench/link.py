#!/usr/bin/env python3
"""xcmig-bench link scenarios: migrations over a real TCP link between two
network namespaces, shaped by tc (tbf) to 1 Gbit/s and 10 Gbit/s, with a
realistic guest (`xensim domain create --fill realistic`).

Variants: Debian's libxenguest, xcmig, and xcmig with XCMIG_COMPRESS=lz4,
zstd and auto. Writes link.md, link.json and link.png (default: into
bench/results/). See bench/README.md, "Link scenarios".

    link.py [--quick] [--runs N] [--scenario NAME ...] [--impl V ...] [--out DIR]
    link.py serve ADDR PORT -- ARGV...      (inside a namespace: accept, exec)
    link.py connect ADDR PORT -- ARGV...    (inside a namespace: connect, exec)
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xcmig_bench as xb  # noqa: E402

MiB, GiB, PAGE = xb.MiB, xb.GiB, xb.PAGE
VARIANTS = ("libxenguest", "xcmig", "xcmig+lz4", "xcmig+zstd", "xcmig+auto")
COMPRESS = {"xcmig+lz4": "lz4", "xcmig+zstd": "zstd", "xcmig+auto": "auto"}
TARGET_DOWNTIME_MS = xb.DEFAULT_TARGET_DOWNTIME_MS
# The stream goes over this address pair and port in the namespaces.
SRC_ADDR, DST_ADDR, PORT = "10.213.0.1", "10.213.0.2", 5791
# The socket the wrappers hand to the harnesses.
STREAM_FD = 3


# --------------------------------------------------------------------------
# Inside a namespace: the wrappers that make a TCP socket the harness's fd.


def exec_with_socket(sock: socket.socket, argv: list[str]) -> None:
    """Makes `sock` fd STREAM_FD and execs argv (with the preload the bench
    asked for: set only now, so that `ip` and Python never load it)."""
    os.dup2(sock.fileno(), STREAM_FD)
    os.set_inheritable(STREAM_FD, True)
    pre = os.environ.pop("BENCH_PRELOAD", "")
    if pre:
        os.environ["LD_PRELOAD"] = pre
    os.execvp(argv[0], argv)


def cmd_serve(addr: str, port: int, argv: list[str]) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    print("listening", flush=True)
    c, _ = s.accept()
    s.close()
    exec_with_socket(c, argv)
    return 1


def cmd_connect(addr: str, port: int, argv: list[str]) -> int:
    deadline = time.monotonic() + 30
    while True:
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            c.connect((addr, port))
            break
        except OSError:
            c.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    exec_with_socket(c, argv)
    return 1


# --------------------------------------------------------------------------
# The link


def sh(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise xb.BenchError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


class NetnsLink:
    """Two namespaces joined by a veth pair; the source side's egress shaped
    by tbf to `rate_bits` per second (the stream flows that way; ACKs go
    back unshaped, as on a full-duplex link). Names carry the bench's pid,
    so two runs cannot collide; close() removes them (also at exit)."""

    def __init__(self, rate_bits: int):
        if os.geteuid() != 0:
            raise xb.BenchError("the link scenarios need root (ip netns, tc)")
        for tool in ("ip", "tc"):
            if not any((Path(d) / tool).exists() for d in ("/usr/sbin", "/sbin", "/usr/bin")):
                raise xb.BenchError(f"{tool} not found: install iproute2 (make deps)")
        tag = f"{os.getpid() % 100000}"
        self.src_ns, self.dst_ns = f"xcmsrc{tag}", f"xcmdst{tag}"
        self.src_if, self.dst_if = f"xcs{tag}", f"xcd{tag}"
        self.rate_bits = rate_bits
        self.closed = False
        atexit.register(self.close)
        try:
            sh("ip", "netns", "add", self.src_ns)
            sh("ip", "netns", "add", self.dst_ns)
            sh("ip", "link", "add", self.src_if, "type", "veth", "peer", "name", self.dst_if)
            sh("ip", "link", "set", self.src_if, "netns", self.src_ns)
            sh("ip", "link", "set", self.dst_if, "netns", self.dst_ns)
            for ns, dev, addr in ((self.src_ns, self.src_if, SRC_ADDR),
                                  (self.dst_ns, self.dst_if, DST_ADDR)):
                sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            # Bucket: 2 ms of the link, at least 256 KiB (a GSO packet is up
            # to 64 KiB); queue: 20 ms of it.
            burst = max(256 * 1024, rate_bits // 8 // 500)
            sh("tc", "-n", self.src_ns, "qdisc", "add", "dev", self.src_if, "root", "tbf",
               "rate", f"{rate_bits}bit", "burst", str(burst), "latency", "20ms")
        except BaseException:
            self.close()
            raise

    def tx_bytes(self) -> int:
        """Octets the source side sent on the veth (IP and TCP headers
        included)."""
        out = sh("ip", "netns", "exec", self.src_ns, "cat",
                 f"/sys/class/net/{self.src_if}/statistics/tx_bytes")
        return int(out.strip())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for ns in (self.src_ns, self.dst_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# --------------------------------------------------------------------------
# Scenarios


@dataclass
class LinkScenario:
    name: str
    kind: str  # "nonlive" or "live"
    rate_bits: int
    memory: int
    dirty_rate: int = 0  # MiB/s
    working_set: int = 0  # bytes
    title: str = ""


def scenarios(quick: bool) -> list[LinkScenario]:
    out = []
    rates = [(1, 10**9)] if quick else [(1, 10**9), (10, 10**10)]
    m = 256 * MiB if quick else 2 * GiB
    for g, rate in rates:
        out.append(LinkScenario(f"link-{g}g-nonlive", "nonlive", rate, m,
                                title=f"non-live migration over {g} Gbit/s"))
        if quick:
            out.append(LinkScenario(f"link-{g}g-live-moderate", "live", rate, m, 32,
                                    64 * MiB, f"live, 32 MiB/s over 64 MiB, {g} Gbit/s"))
        else:
            out.append(LinkScenario(f"link-{g}g-live-moderate", "live", rate, m, 64,
                                    256 * MiB, f"live, 64 MiB/s over 256 MiB, {g} Gbit/s"))
            out.append(LinkScenario(f"link-{g}g-live-busy", "live", rate, m, 256,
                                    1 * GiB, f"live, 256 MiB/s over 1 GiB, {g} Gbit/s"))
    return out


class LinkBench:
    def __init__(self, args: argparse.Namespace, build: xb.Build):
        self.args = args
        self.build = build
        self.me = str(Path(__file__).resolve())

    def log(self, msg: str) -> None:
        print(f"bench-link: {msg}", file=sys.stderr, flush=True)

    def env(self, host: xb.SimHost, variant: str) -> dict[str, str]:
        env = host.env(None)
        env.pop("XCMIG_COMPRESS", None)
        if variant != "libxenguest":
            env["BENCH_PRELOAD"] = str(self.build.libxcmig)
        if variant in COMPRESS:
            env["XCMIG_COMPRESS"] = COMPRESS[variant]
        return env

    def in_ns(self, ns: str, mode: str, addr: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, sys.executable, self.me, mode, addr, str(PORT),
                "--", *[str(a) for a in argv]]

    def migrate(self, sc: LinkScenario, link: NetnsLink, host: xb.SimHost, src: int,
                variant: str, run: int) -> dict:
        dst = host.create("hvm", sc.memory, 2, None)
        live = sc.kind == "live"
        wl = None
        if live:
            wl = xb.Child("xensim domain run", [
                self.build.xensim, "domain", "run", str(src), "--dirty-rate",
                str(sc.dirty_rate), "--working-set", f"{sc.working_set // MiB}M",
                "--pattern", "realistic", "--seed", str(self.args.seed + run),
                "--duration", str(int(self.args.timeout))], host.env())
            time.sleep(self.args.warmup)
        env = self.env(host, variant)
        restorer = saver = None
        tx0 = link.tx_bytes()
        try:
            restorer = xb.Child(f"xg-restore ({variant})", self.in_ns(
                link.dst_ns, "serve", DST_ADDR,
                [self.build.xg_restore, dst, f"fd:{STREAM_FD}"]), env)
            saver = xb.Child(f"xg-save ({variant})", self.in_ns(
                link.src_ns, "connect", DST_ADDR,
                [self.build.xg_save, *(["--live"] if live else []), src,
                 f"fd:{STREAM_FD}"]), env)
            s = saver.wait(self.args.timeout)
            r = restorer.wait(self.args.timeout)
            failed = []
            for res in (r, s):
                try:
                    res.check()
                except xb.BenchError as e:
                    failed.append(str(e))
            if failed:
                raise xb.BenchError("\n".join(failed))
            w = wl.wait(60).check() if wl else None
        finally:
            for c in (saver, restorer, wl):
                if c is not None:
                    c.kill()
        log = xb.parse_save_log(s.stderr)
        if log.suspended_ns is None:
            raise xb.BenchError(f"{variant}: xg-save never reported a suspend")
        total = (max(s.end_ns, r.end_ns) - s.start_ns) / 1e9
        m = {
            "total_s": total,
            "downtime_ms": (xb.restore_done_ns(r) - log.suspended_ns) / 1e6,
            "wire_bytes": link.tx_bytes() - tx0,
            "rounds": len(log.precopy_totals) + 1,
            "save_cpu_s": s.cpu, "restore_cpu_s": r.cpu,
        }
        if w is not None:
            m["workload_pages_written"] = int(w.stdout.split()[-1]) if w.stdout.split() else 0
        compress_lines = [l for _, l in s.stderr if "compression auto:" in l]
        if compress_lines:
            m["auto_decisions"] = compress_lines
        if self.args.verify == "all" or (self.args.verify == "first" and run == 0):
            a, b = host.digest(src), host.digest(dst)
            if a != b:
                raise xb.BenchError(f"{sc.name}: {variant}'s restored domain differs "
                                    f"from its suspended source ({b} != {a})")
            m["verified"] = True
        host.destroy(dst)
        return m

    def file_save(self, host: xb.SimHost, src: int, variant: str, scratch: Path) -> dict:
        """The same guest saved to a file and restored from it, no link."""
        env = self.env(host, variant)
        if "BENCH_PRELOAD" in env:
            env["LD_PRELOAD"] = env.pop("BENCH_PRELOAD")
        img = scratch / f"{variant}.img"
        s = xb.Child(f"xg-save ({variant})", [self.build.xg_save, src, img], env)
        s = s.wait(self.args.timeout).check()
        size = img.stat().st_size
        dst = host.create("hvm", self.memory, 2, None)
        r = xb.Child(f"xg-restore ({variant})", [self.build.xg_restore, dst, img], env)
        r = r.wait(self.args.timeout).check()
        host.destroy(dst)
        img.unlink()
        return {"file_bytes": size, "save_s": s.wall, "save_cpu_s": s.cpu,
                "restore_s": r.wall, "restore_cpu_s": r.cpu}

    def run(self) -> dict:
        results: dict = {"scenarios": {}, "file": {}}
        chosen = [s for s in scenarios(self.args.quick)
                  if not self.args.scenario or s.name in self.args.scenario
                  or any(s.name.startswith(p) for p in self.args.scenario)]
        variants = [v for v in VARIANTS if v in self.args.impl]
        self.memory = chosen[0].memory if chosen else (256 * MiB if self.args.quick else 2 * GiB)
        for rate in sorted({s.rate_bits for s in chosen}):
            link = NetnsLink(rate)
            try:
                for sc in (s for s in chosen if s.rate_bits == rate):
                    host = xb.SimHost(xb.pick_host_base(self.args.host_base, 3 * sc.memory, self.log),
                                      self.build, self.args.timeout)
                    try:
                        src = host.create("hvm", sc.memory, 2, "realistic", self.args.seed)
                        runs: dict[str, list[dict]] = {v: [] for v in variants}
                        for run in range(self.args.runs):
                            k = run % len(variants)
                            for v in variants[k:] + variants[:k]:
                                host.resume_if_suspended(src)
                                m = self.migrate(sc, link, host, src, v, run)
                                runs[v].append(m)
                                self.log(f"{sc.name} run {run + 1} {v}: {m['total_s']:.2f} s, "
                                         f"downtime {m['downtime_ms']:.0f} ms, wire "
                                         f"{m['wire_bytes'] / GiB:.3f} GiB, {m['rounds']} rounds")
                        results["scenarios"][sc.name] = {
                            "title": sc.title, "kind": sc.kind, "rate_bits": rate,
                            "memory_bytes": sc.memory, "dirty_rate_mib_s": sc.dirty_rate,
                            "working_set_bytes": sc.working_set,
                            "results": {v: xb.summarise(r) for v, r in runs.items()}}
                    finally:
                        host.close()
            finally:
                link.close()
        if not self.args.no_file:
            host = xb.SimHost(xb.pick_host_base(self.args.host_base, 3 * self.memory, self.log), self.build,
                              self.args.timeout)
            try:
                src = host.create("hvm", self.memory, 2, "realistic", self.args.seed)
                scratch = host.dir / "scratch"
                scratch.mkdir()
                for v in variants:
                    host.resume_if_suspended(src)
                    m = self.file_save(host, src, v, scratch)
                    results["file"][v] = m
                    self.log(f"file {v}: {m['file_bytes'] / GiB:.3f} GiB, save "
                             f"{m['save_s']:.2f} s, restore {m['restore_s']:.2f} s")
            finally:
                host.close()
        return results


# --------------------------------------------------------------------------
# Output


def med(sc: dict, v: str, k: str) -> float | None:
    r = sc["results"].get(v)
    return r["median"].get(k) if r else None


def evidence(res: dict) -> list[str]:
    lines = []
    for name, sc in res["scenarios"].items():
        lx = med(sc, "libxenguest", "total_s")
        if sc["rate_bits"] == 10**9 and sc["kind"] == "live" and "moderate" in name and lx:
            for v in ("xcmig+lz4", "xcmig+zstd", "xcmig+auto"):
                t, d = med(sc, v, "total_s"), med(sc, v, "downtime_ms")
                if t is None:
                    continue
                ok = t <= 0.4 * lx and d <= TARGET_DOWNTIME_MS
                lines.append(
                    f"- {name}, {v}: total {t:.2f} s = {t / lx:.2f}x libxenguest's {lx:.2f} s "
                    f"(target <= 0.40x), downtime {d:.0f} ms (target <= {TARGET_DOWNTIME_MS}): "
                    f"**{'met' if ok else 'missed'}**")
        if sc["rate_bits"] == 10**10:
            a, x = med(sc, "xcmig+auto", "total_s"), med(sc, "xcmig", "total_s")
            if a is not None and x is not None:
                lines.append(
                    f"- {name}: xcmig+auto {a:.2f} s vs uncompressed xcmig {x:.2f} s: "
                    f"**{'never slower: met' if a <= x else f'slower by {(a / x - 1) * 100:.1f} %: missed'}**")
    return lines


def render(res: dict, out: Path) -> None:
    cfg = res.get("config", {})
    md = ["# Link scenarios: migrations over a shaped TCP link", "",
          f"Run {res.get('date', '?')} at {res.get('git', {}).get('commit', '?')}; "
          f"{cfg.get('runs', '?')} run(s) each, medians; guest: "
          f"`--fill realistic --seed {cfg.get('seed', '?')}`, HVM, 2 vCPUs. "
          "Link: two network namespaces joined by a veth pair, the source side's egress "
          "shaped by `tc qdisc ... tbf`; the stream goes over TCP. See bench/README.md.", ""]
    md += ["## Evidence (issue 13)", ""] + (evidence(res) or ["- (no scenario for it in this run)"]) + [""]
    for name, sc in res["scenarios"].items():
        md += [f"## {name}: {sc['title']}", "",
               "| variant | total s | x libxenguest | downtime ms | wire GiB | rounds | "
               "save CPU s | restore CPU s |", "|---|---|---|---|---|---|---|---|"]
        lx = med(sc, "libxenguest", "total_s")
        for v in sc["results"]:
            g = lambda k: med(sc, v, k)  # noqa: E731
            ratio = f"{g('total_s') / lx:.2f}" if lx else "-"
            md.append(f"| {v} | {g('total_s'):.2f} | {ratio} | {g('downtime_ms'):.0f} | "
                      f"{g('wire_bytes') / GiB:.3f} | {g('rounds'):.0f} | "
                      f"{g('save_cpu_s'):.2f} | {g('restore_cpu_s'):.2f} |")
        dec = [d for v in sc["results"] for r in sc["results"][v]["runs"]
               for d in r.get("auto_decisions", [])]
        if dec:
            md += ["", "xcmig+auto's decisions (run 1 first): " + "; ".join(
                d.split("compression auto: ", 1)[-1] for d in dec[:4])]
        md.append("")
    if res.get("file"):
        md += ["## The same guest saved to a file (/dev/shm, no link)", "",
               "| variant | file GiB | x libxenguest | save s | restore s | save CPU s |",
               "|---|---|---|---|---|---|"]
        lx = res["file"].get("libxenguest", {}).get("file_bytes")
        for v, m in res["file"].items():
            ratio = f"{m['file_bytes'] / lx:.2f}" if lx else "-"
            md.append(f"| {v} | {m['file_bytes'] / GiB:.3f} | {ratio} | {m['save_s']:.2f} | "
                      f"{m['restore_s']:.2f} | {m['save_cpu_s']:.2f} |")
        md.append("")
    if res.get("notes"):
        md += ["## Notes", "", res["notes"].rstrip(), ""]
    (out / "link.md").write_text("\n".join(md))
    plot(res, out / "link.png")


def plot(res: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench-link: matplotlib missing, no plot (make deps installs it)", file=sys.stderr)
        return
    names = list(res["scenarios"])
    if not names:
        return
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    variants = [v for v in VARIANTS if any(v in res["scenarios"][n]["results"] for n in names)]
    width = 0.8 / max(len(variants), 1)
    for ax, key, label, scale in ((axes[0], "total_s", "total time, s", 1),
                                  (axes[1], "wire_bytes", "bytes on the wire, GiB", GiB),
                                  (axes[2], "downtime_ms", "downtime, ms", 1)):
        for i, v in enumerate(variants):
            ys = [(med(res["scenarios"][n], v, key) or 0) / scale for n in names]
            ax.bar([x + i * width for x in range(len(names))], ys, width, label=v)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))])
        ax.set_xticklabels([n.replace("link-", "") for n in names], rotation=30, ha="right")
        ax.set_title(label)
        if key == "downtime_ms":
            ax.axhline(TARGET_DOWNTIME_MS, color="grey", ls="--", lw=1)
    axes[0].legend(fontsize=8)
    fig.suptitle("Migration of a realistic HVM guest over a tbf-shaped veth link")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "connect"):
        mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
        argv = sys.argv[sys.argv.index("--") + 1:]
        return (cmd_serve if mode == "serve" else cmd_connect)(addr, port, argv)
    if len(sys.argv) > 1 and sys.argv[1] == "render":
        d = Path(sys.argv[2])
        render(json.loads((d / "link.json").read_text()), d)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="256 MiB guest, 1 Gbit/s only")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--scenario", action="append", default=[],
                   help="a scenario name or prefix (e.g. link-1g); repeatable")
    p.add_argument("--impl", action="append", default=[], choices=VARIANTS)
    p.add_argument("--out", default=str(xb.REPO / "bench" / "results"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--verify", choices=("all", "first", "none"), default="first")
    p.add_argument("--host-base", default=None)
    p.add_argument("--no-file", action="store_true", help="skip the file saves")
    p.add_argument("--notes", default=None, help="markdown file kept as Notes")
    args = p.parse_args()
    args.impl = args.impl or list(VARIANTS)
    build = xb.Build.locate()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        res = LinkBench(args, build).run()
    except xb.BenchError as e:
        print(f"bench-link: {e}", file=sys.stderr)
        return 1
    finally:
        xb.Child.kill_all()
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    res["git"] = xb.git_state()
    res["config"] = {"runs": args.runs, "seed": args.seed, "quick": args.quick,
                     "warmup_s": args.warmup, "cpus": os.cpu_count()}
    if args.notes:
        res["notes"] = Path(args.notes).read_text()
    (out / "link.json").write_text(json.dumps(res, indent=1) + "\n")
    render(res, out)
    print(f"bench-link: wrote {out}/link.md, link.json, link.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
