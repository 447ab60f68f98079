#!/usr/bin/env python3
"""xcmig-bench: xcmig and Debian's libxenguest side by side on xensim.

Runs the C toolstack harnesses (capi-tests/xg-save, xg-restore) on the same
simulated domains twice per run: once with LD_PRELOAD=libxcmig.so (the
drop-in path a toolstack uses) and once without (Debian's libxenguest), plus
a raw-copy baseline, and writes results.md, results.json and plot.png.

See bench/README.md for how to run it and how to read the table.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import hashlib
import json
import mmap
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PAGE = 4096
MiB = 1 << 20
GiB = 1 << 30
# A copy chunk of 1024 pages: the batch size both libraries use.
CHUNK = 1024 * PAGE
SYSTEM_XEN_LIBDIR = "/usr/lib/x86_64-linux-gnu"
REPO = Path(__file__).resolve().parent.parent

IMPLS = ("libxenguest", "xcmig")
# live-hot adds xcmig with auto-converge (XCMIG_AUTO_CONVERGE=1) as a third
# variant; the other scenarios keep the two implementations.
HOT_VARIANTS = ("libxenguest", "xcmig", "xcmig+ac")
ALL_VARIANTS = HOT_VARIANTS
# The downtime the live-hot evidence is checked against: xcmig's target
# (XCMIG_TARGET_DOWNTIME_MS, default 300).
DEFAULT_TARGET_DOWNTIME_MS = 300
# The weight and cap a domain starts with (credit2; cap 0 = no cap).
DEFAULT_SCHED = {"weight": 256, "cap": 0}


class BenchError(Exception):
    """A failure that ends the benchmark with a one-line reason."""


# --------------------------------------------------------------------------
# Child processes


@dataclass
class ChildResult:
    """What a finished child did, with its own resource usage."""

    name: str
    argv: list[str]
    returncode: int
    start_ns: int
    end_ns: int
    utime: float
    stime: float
    stdout: str
    # (arrival time in CLOCK_MONOTONIC ns, line) for every stderr line.
    stderr: list[tuple[int, str]]

    @property
    def wall(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def cpu(self) -> float:
        return self.utime + self.stime

    def stderr_text(self) -> str:
        return "\n".join(line for _, line in self.stderr)

    def tail(self, n: int = 15) -> str:
        return "\n".join("    " + line for _, line in self.stderr[-n:])

    def check(self) -> "ChildResult":
        if self.returncode != 0:
            raise BenchError(
                f"{self.name} exited with status {self.returncode}: "
                f"{' '.join(self.argv)}\n  last stderr lines:\n{self.tail()}"
            )
        return self


class Child:
    """A child process in its own process group, reaped with wait4 so its
    CPU time (including its own reaped children) is known exactly."""

    live: set["Child"] = set()

    def __init__(self, name: str, argv: list[str], env: dict[str, str],
                 pass_fds: tuple[int, ...] = ()):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.start_ns = time.monotonic_ns()
        try:
            self.proc = subprocess.Popen(
                self.argv, env=env, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True)
        except OSError as e:
            raise BenchError(f"cannot start {name} ({self.argv[0]}): {e}") from e
        Child.live.add(self)
        self._stdout: list[bytes] = []
        self._stderr: list[tuple[int, str]] = []
        self._done = threading.Event()
        self._status = 0
        self._ru = None
        self.end_ns = 0
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()
        threading.Thread(target=self._reap, daemon=True).start()

    def _read_stdout(self) -> None:
        for chunk in iter(lambda: self.proc.stdout.read(65536), b""):
            self._stdout.append(chunk)

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            self._stderr.append(
                (time.monotonic_ns(), raw.decode("utf-8", "replace").rstrip("\n")))

    def _reap(self) -> None:
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.end_ns = time.monotonic_ns()
        self._status = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self._status  # Popen must not reap it again
        self._ru = ru
        self._done.set()

    def running(self) -> bool:
        return not self._done.is_set()

    def kill(self) -> None:
        if self.running():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> ChildResult:
        if not self._done.wait(timeout):
            self.kill()
            self._done.wait(30)
            for t in self._readers:
                t.join(5)
            Child.live.discard(self)
            raise BenchError(
                f"{self.name} did not finish within {timeout:.0f} s and was "
                f"killed: {' '.join(self.argv)}\n  last stderr lines:\n"
                + "\n".join("    " + l for _, l in self._stderr[-15:]))
        for t in self._readers:
            t.join(30)
        Child.live.discard(self)
        return ChildResult(
            name=self.name, argv=self.argv, returncode=self._status,
            start_ns=self.start_ns, end_ns=self.end_ns,
            utime=self._ru.ru_utime, stime=self._ru.ru_stime,
            stdout=b"".join(self._stdout).decode("utf-8", "replace"),
            stderr=list(self._stderr))

    @classmethod
    def kill_all(cls) -> None:
        for c in list(cls.live):
            c.kill()
            c._done.wait(10)
        cls.live.clear()


# --------------------------------------------------------------------------
# The built pieces and the simulated host


@dataclass
class Build:
    """Paths of what `make build` produced."""

    target: Path

    @classmethod
    def locate(cls) -> "Build":
        t = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
        b = cls(t if t.is_absolute() else REPO / t)
        missing = [p for p in (b.xensim, b.xcmig, b.libxcmig, b.xg_save,
                               b.xg_restore, b.shim_dir / "libxenctrl.so.4.17")
                   if not p.exists()]
        if missing:
            raise BenchError(
                "missing build outputs (run `make build` first): "
                + ", ".join(str(p) for p in missing))
        return b

    @property
    def xensim(self) -> Path:
        return self.target / "release" / "xensim"

    @property
    def xcmig(self) -> Path:
        return self.target / "release" / "xcmig"

    @property
    def libxcmig(self) -> Path:
        return self.target / "release" / "libxcmig.so"

    @property
    def xg_save(self) -> Path:
        return self.target / "capi-tests" / "xg-save"

    @property
    def xg_restore(self) -> Path:
        return self.target / "capi-tests" / "xg-restore"

    @property
    def shim_dir(self) -> Path:
        return self.target / "xensim" / "lib"


class SimHost:
    """A xensim host directory, removed by close()."""

    def __init__(self, base: Path, build: Build, timeout: float):
        self.dir = Path(tempfile.mkdtemp(prefix="xcmig-bench-", dir=base))
        self.build = build
        self.timeout = timeout

    def env(self, impl: str | None = None) -> dict[str, str]:
        """The environment of a child on this host. `xcmig+ac` is xcmig with
        XCMIG_AUTO_CONVERGE=1; every other variant runs with that variable
        removed (the tuning variables XCMIG_AUTO_CONVERGE_* pass through)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "XENSIM_FAULTS", "XCMIG_AUTO_CONVERGE")}
        env["XENSIM_HOST"] = str(self.dir)
        env["LD_LIBRARY_PATH"] = f"{self.build.shim_dir}:{SYSTEM_XEN_LIBDIR}"
        if impl in ("xcmig", "xcmig+ac"):
            env["LD_PRELOAD"] = str(self.build.libxcmig)
        if impl == "xcmig+ac":
            env["XCMIG_AUTO_CONVERGE"] = "1"
        return env

    def xensim(self, *args: str, timeout: float | None = None) -> str:
        c = Child("xensim " + " ".join(args[:2]),
                  [self.build.xensim, *args], self.env())
        return c.wait(timeout or self.timeout).check().stdout

    def create(self, guest_type: str, memory: int, vcpus: int, fill: str | None,
               seed: int = 0) -> int:
        args = ["domain", "create", "--type", guest_type, "--memory",
                f"{memory // MiB}M", "--vcpus", str(vcpus)]
        args += ["--fill", fill, "--seed", str(seed)] if fill else ["--empty"]
        return int(self.xensim(*args).split()[-1])

    def info(self, domid: int) -> dict[str, str]:
        out = self.xensim("domain", "info", str(domid))
        return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)

    def digest(self, domid: int) -> str:
        return self.xensim("domain", "digest", str(domid)).split()[-1]

    def destroy(self, domid: int) -> None:
        self.xensim("domain", "destroy", str(domid))

    def resume_if_suspended(self, domid: int) -> None:
        if self.info(domid).get("shutdown") == "1":
            self.xensim("domain", "resume", str(domid))

    def sched(self, domid: int, history: bool = False) -> dict:
        """`xensim domain sched DOMID --json [--history]`: weight, cap and,
        with history, every change ({"time_ns", "weight", "cap", ...})."""
        out = self.xensim("domain", "sched", str(domid), "--json",
                          *(["--history"] if history else []))
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise BenchError(f"xensim domain sched {domid} --json: not JSON ({e}): "
                             f"{out[:200]!r}") from e

    def set_sched(self, domid: int, weight: int, cap: int) -> dict:
        out = self.xensim("domain", "sched", str(domid), "--weight", str(weight),
                          "--cap", str(cap), "--json")
        return json.loads(out)

    def domain_dir(self, domid: int) -> Path:
        return self.dir / "domains" / str(domid)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Raw-copy baseline (also run as subcommands of this script)


def populated_runs(bitmap: Path) -> list[tuple[int, int]]:
    """(first gfn, count) of each run of populated gfns in xensim's
    `populated` bitmap (64-bit little-endian words, bit g%64 of word g/64)."""
    data = bitmap.read_bytes()
    runs: list[tuple[int, int]] = []
    start = None
    full = (1 << 64) - 1
    for w in range(len(data) // 8):
        word = int.from_bytes(data[w * 8:w * 8 + 8], "little")
        base = w * 64
        if word == 0 or word == full:
            bit_set = word == full
            if bit_set and start is None:
                start = base
            elif not bit_set and start is not None:
                runs.append((start, base - start))
                start = None
            continue
        for b in range(64):
            if (word >> b) & 1:
                if start is None:
                    start = base + b
            elif start is not None:
                runs.append((start, base + b - start))
                start = None
    if start is not None:
        runs.append((start, len(data) * 8 - start))
    return runs


def write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


class CopyTimer:
    """Wall and CPU time of the copy itself, without the interpreter's start,
    written as JSON to a report file when the copy ends."""

    def __init__(self, report: str | None):
        self.report = report

    def __enter__(self) -> "CopyTimer":
        self.t0 = time.monotonic_ns()
        self.r0 = resource.getrusage(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc) -> None:
        t1 = time.monotonic_ns()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if self.report and exc[0] is None:
            cpu = (r1.ru_utime + r1.ru_stime) - (self.r0.ru_utime + self.r0.ru_stime)
            Path(self.report).write_text(json.dumps(
                {"wall_s": (t1 - self.t0) / 1e9, "cpu_s": cpu}))


def cmd_copy_mem(args: argparse.Namespace) -> int:
    """Writes the populated frames of a domain's memory file to stdout, in
    1024-page chunks from one shared mapping: what a save must at least do."""
    mem = Path(args.domain_dir) / "mem"
    runs = populated_runs(Path(args.domain_dir) / "populated")
    end = max((s + n for s, n in runs), default=0) * PAGE
    out = sys.stdout.fileno()
    with CopyTimer(args.report), open(mem, "rb") as f:
        mm = mmap.mmap(f.fileno(), end, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        view = memoryview(mm)
        for s, n in runs:
            for off in range(s * PAGE, (s + n) * PAGE, CHUNK):
                write_all(out, view[off:min(off + CHUNK, (s + n) * PAGE)])
        view.release()
        mm.close()
    return 0


def cmd_copy_in(args: argparse.Namespace) -> int:
    """Reads a flat file of pages into a fresh shared mapping of a new sparse
    file, 1024 pages per read: what a restore must at least do."""
    size = os.path.getsize(args.source)
    with CopyTimer(args.report), open(args.dest, "w+b") as d, \
            open(args.source, "rb", buffering=0) as s:
        d.truncate(max(size, PAGE))
        mm = mmap.mmap(d.fileno(), max(size, PAGE), flags=mmap.MAP_SHARED)
        view = memoryview(mm)
        off = 0
        while off < size:
            n = s.readinto(view[off:min(off + CHUNK, size)])
            if not n:
                raise BenchError(f"{args.source}: short read at {off}")
            off += n
        view.release()
        mm.close()
    return 0


# --------------------------------------------------------------------------
# Parsing the harnesses' output

PROGRESS_RE = re.compile(
    r'^xg-save: progress context=\S+ what="([^"]*)" done=(\d+) total=(\d+)$')
TIMESTAMP_RE = re.compile(r"^xg-(?:save|restore): timestamp event=(\w+) monotonic_ns=(\d+)$")


@dataclass
class SaveLog:
    """What xg-save's stderr says about a save."""

    suspended_ns: int | None = None
    # Totals of the memory passes ("Frames..." phases) before the suspend.
    precopy_totals: list[int] = field(default_factory=list)
    # Total of the memory pass after the suspend (stop and copy).
    suspended_pages: int | None = None


def parse_save_log(lines: list[tuple[int, str]]) -> SaveLog:
    """Reads the suspend moment and the memory passes from xg-save output.

    A pass is a progress phase whose "what" starts with "Frames"; its total
    is on the line where done == total. The suspend moment is the
    `timestamp event=suspended` line, or, from an older harness, the arrival
    time of the `suspend domid=` line."""
    log = SaveLog()
    suspended = False
    phase_after: list[int] = []
    for arrival, line in lines:
        m = TIMESTAMP_RE.match(line)
        if m and m.group(1) == "suspended":
            log.suspended_ns = int(m.group(2))
            continue
        if line.startswith("xg-save: suspend domid="):
            suspended = True
            if log.suspended_ns is None:
                log.suspended_ns = arrival
            continue
        m = PROGRESS_RE.match(line)
        if not m or not m.group(1).startswith("Frames"):
            continue
        done, total = int(m.group(2)), int(m.group(3))
        if done != total:
            continue
        if suspended:
            phase_after.append(total)
        else:
            log.precopy_totals.append(total)
    if suspended and phase_after:
        log.suspended_pages = phase_after[0]
    elif suspended:
        log.suspended_pages = 0
    return log


def restore_done_ns(res: ChildResult) -> int:
    """When xc_domain_restore returned: the harness's timestamp, or the
    arrival of its result line, or its exit."""
    for arrival, line in res.stderr:
        m = TIMESTAMP_RE.match(line)
        if m and m.group(1) == "restored":
            return int(m.group(2))
    for arrival, line in res.stderr:
        if line.startswith("xg-restore: result "):
            return arrival
    return res.end_ns


# --------------------------------------------------------------------------
# The relay that counts bytes on the wire


class LinkShaper:
    """A link of `rate` bytes/s as a token bucket (in its virtual-time form)
    that banks at most `burst` seconds of credit: a chunk of n bytes that
    reaches the link at `now` leaves it n/rate seconds after the link is
    free: when the previous chunk has left, or, if the link has been idle
    since, at `now - burst`. So a pause in the stream (the saver scanning
    its dirty bitmap) does not let a burst above the rate through
    afterwards, beyond `burst` of the link. The small default (20 ms, two
    chunks) absorbs the relay's own wake-up latency: a relay thread that
    oversleeps does not lower the link's rate, which matters on a loaded
    machine; `burst=0` is a link with no credit at all."""

    def __init__(self, rate: float, burst: float = 0.02):
        if rate <= 0:
            raise ValueError("a link rate must be positive")
        self.rate = float(rate)
        self.burst = max(0.0, float(burst))
        self.free_at: float | None = None

    def delay(self, n: int, now: float) -> float:
        """Seconds from `now` until the n bytes arriving at `now` have left
        (0 or less: they may go at once)."""
        start = now if self.free_at is None else max(self.free_at, now - self.burst)
        self.free_at = start + n / self.rate
        return self.free_at - now

    def chunk(self) -> int:
        """Bytes moved per step: about 10 ms of the link, 64 KiB to 1 MiB."""
        return max(64 * 1024, min(MiB, int(self.rate / 100)))


class Relay:
    """Moves the stream from the saver's socket to the restorer's socket
    through a pipe with splice(2) (no copy through user space), counting
    bytes. Closing the saver's end propagates as EOF to the restorer.

    With `rate` (bytes/s), each chunk is held in the pipe until a
    `LinkShaper` lets it go: the link, not the machine, limits the stream,
    and the saver blocks on its full socket as on a slow network."""

    def __init__(self, rate: float | None = None) -> None:
        self.save_end, self._in = socket.socketpair()
        self._out, self.restore_end = socket.socketpair()
        self.bytes = 0
        self.error: str | None = None
        self.shaper = LinkShaper(rate) if rate else None
        # CLOCK_MONOTONIC ns of the first byte in and the last byte out.
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        r, w = os.pipe()
        try:
            try:
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, MiB)
            except OSError:
                pass  # the default pipe size only costs more splice calls
            src, dst = self._in.fileno(), self._out.fileno()
            chunk = self.shaper.chunk() if self.shaper else MiB
            while True:
                n = os.splice(src, w, chunk)
                if n == 0:
                    break
                if self.first_ns is None:
                    self.first_ns = time.monotonic_ns()
                if self.shaper:
                    wait = self.shaper.delay(n, time.monotonic())
                    if wait > 0:
                        time.sleep(wait)
                self.bytes += n
                while n:
                    n -= os.splice(r, dst, n)
                self.last_ns = time.monotonic_ns()
        except OSError as e:
            self.error = str(e)
        finally:
            os.close(r)
            os.close(w)
            try:
                self._out.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._in.close()

    def close_child_ends(self) -> None:
        """After the children have inherited their ends."""
        self.save_end.close()
        self.restore_end.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._out.close()


# --------------------------------------------------------------------------
# Scenarios


@dataclass
class Scenario:
    name: str
    kind: str  # "nonlive", "live" or "live-hot" (live over a rate-limited link)
    memory: int
    fill: str
    vcpus: int = 2
    dirty_rate: int = 0  # MiB/s
    working_set: int = 0  # bytes
    title: str = ""
    guest: str = "hvm"  # xensim --type: hvm, pvh or pv (64-bit PV, linear p2m)
    link_rate: int = 0  # bytes/s of the relay's link; 0 = as fast as the machine
    variants: tuple[str, ...] = IMPLS

    def params(self) -> dict:
        p = {"memory_bytes": self.memory, "fill": self.fill, "vcpus": self.vcpus,
             "guest_type": self.guest}
        if self.kind in ("live", "live-hot"):
            p.update(dirty_rate_mib_s=self.dirty_rate,
                     working_set_bytes=self.working_set)
        if self.link_rate:
            p["link_bytes_s"] = self.link_rate
        return p


def live_hot(quick: bool) -> Scenario:
    """A guest that dirties memory twice as fast as the link carries it."""
    if quick:
        return Scenario("live-hot", "live-hot", 256 * MiB, "random", vcpus=1,
                        dirty_rate=64, working_set=64 * MiB, link_rate=32 * MiB,
                        variants=HOT_VARIANTS,
                        title="live, 64 MiB/s over 64 MiB, 1 vCPU, link 32 MiB/s")
    return Scenario("live-hot", "live-hot", 1 * GiB, "random", vcpus=1,
                    dirty_rate=128, working_set=512 * MiB, link_rate=64 * MiB,
                    variants=HOT_VARIANTS,
                    title="live, 128 MiB/s over 512 MiB, 1 vCPU, link 64 MiB/s")


def scenarios(quick: bool) -> list[Scenario]:
    if quick:
        m = 256 * MiB
        return [
            Scenario("random", "nonlive", m, "random",
                     title="non-live save+restore, random HVM 256 MiB"),
            Scenario("mixed", "nonlive", m, "mixed",
                     title="non-live save+restore, half-zero HVM 256 MiB"),
            Scenario("live-converging", "live", m, "random", dirty_rate=8,
                     working_set=4 * MiB,
                     title="live, 8 MiB/s over 4 MiB"),
            Scenario("live-busy", "live", m, "random", dirty_rate=256,
                     working_set=128 * MiB,
                     title="live, 256 MiB/s over 128 MiB"),
            Scenario("pv-mixed", "nonlive", m, "mixed", guest="pv",
                     title="non-live save+restore, half-zero 64-bit PV 256 MiB"),
            Scenario("pv-live-busy", "live", m, "random", dirty_rate=256,
                     working_set=128 * MiB, guest="pv",
                     title="live PV, 256 MiB/s over 128 MiB"),
            live_hot(True),
        ]
    m = 2 * GiB
    return [
        Scenario("random", "nonlive", m, "random",
                 title="non-live save+restore, random HVM 2 GiB"),
        Scenario("mixed", "nonlive", m, "mixed",
                 title="non-live save+restore, half-zero (mixed) HVM 2 GiB"),
        Scenario("live-converging", "live", m, "random", dirty_rate=16,
                 working_set=16 * MiB,
                 title="live, 16 MiB/s over a 16 MiB working set"),
        Scenario("live-moderate", "live", m, "random", dirty_rate=64,
                 working_set=256 * MiB,
                 title="live, 64 MiB/s over 256 MiB"),
        Scenario("live-busy", "live", m, "random", dirty_rate=256,
                 working_set=1 * GiB,
                 title="live, 256 MiB/s over 1 GiB"),
        Scenario("pv-random", "nonlive", m, "random", guest="pv",
                 title="non-live save+restore, random 64-bit PV 2 GiB"),
        Scenario("pv-mixed", "nonlive", m, "mixed", guest="pv",
                 title="non-live save+restore, half-zero 64-bit PV 2 GiB"),
        Scenario("pv-live-busy", "live", m, "random", dirty_rate=256,
                 working_set=1 * GiB, guest="pv",
                 title="live PV, 256 MiB/s over 1 GiB"),
        live_hot(False),
    ]


class Bench:
    def __init__(self, args: argparse.Namespace, build: Build):
        self.args = args
        self.build = build
        self.timeout = args.timeout

    def log(self, msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    # ---- helpers

    def save(self, host: SimHost, impl: str, domid: int, target: str,
             live: bool, pass_fds: tuple[int, ...] = ()) -> Child:
        argv = [self.build.xg_save] + (["--live"] if live else []) + [str(domid), target]
        return Child(f"xg-save ({impl})", argv, host.env(impl), pass_fds)

    def restore(self, host: SimHost, impl: str, domid: int, source: str,
                pass_fds: tuple[int, ...] = ()) -> Child:
        argv = [self.build.xg_restore, str(domid), source]
        return Child(f"xg-restore ({impl})", argv, host.env(impl), pass_fds)

    def inspect(self, path: Path) -> dict:
        c = Child("xcmig inspect", [self.build.xcmig, "inspect", "--json", path],
                  dict(os.environ))
        res = c.wait(self.timeout)
        try:
            report = json.loads(res.stdout)
        except json.JSONDecodeError as e:
            raise BenchError(f"xcmig inspect --json {path}: not JSON ({e})") from e
        if not report.get("valid"):
            raise BenchError(f"stream {path} is not valid: {report.get('error')}")
        return report

    def keep_log(self, tag: str, res: ChildResult) -> None:
        """With --logs DIR, keeps a child's stderr for a post-mortem."""
        if self.args.logs:
            d = Path(self.args.logs)
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{tag}.log").write_text(
                f"$ {' '.join(res.argv)}\n# exit {res.returncode}, wall {res.wall:.3f} s, "
                f"cpu {res.cpu:.3f} s\n" + res.stderr_text() + "\n")

    def variants(self, sc: Scenario) -> list[str]:
        return [i for i in sc.variants if i in self.args.impl]

    def order(self, run: int, sc: Scenario | None = None) -> list[str]:
        """The variants in the order of this run: rotated by one each run
        (for two, alternating which goes first)."""
        impls = self.variants(sc) if sc else [i for i in IMPLS if i in self.args.impl]
        k = run % len(impls) if impls else 0
        return impls[k:] + impls[:k]

    def verify_run(self, run: int) -> bool:
        return self.args.verify == "all" or (self.args.verify == "first" and run == 0)

    # ---- non-live

    def run_nonlive(self, sc: Scenario, host: SimHost) -> dict:
        seed = self.args.seed
        src = host.create(sc.guest, sc.memory, sc.vcpus, sc.fill, seed)
        guest_pages = int(host.info(src)["tot_pages"])
        guest_bytes = guest_pages * PAGE
        scratch = host.dir / "scratch"
        scratch.mkdir()
        runs: dict[str, list[dict]] = {i: [] for i in self.variants(sc)}
        base_runs: list[dict] = []
        src_digest = None
        for run in range(self.args.runs):
            if not self.args.no_baseline:
                base_runs.append(self.baseline(host, src, guest_bytes, scratch))
            for impl in self.order(run, sc):
                host.resume_if_suspended(src)
                img = scratch / f"{impl}.img"
                s = self.save(host, impl, src, str(img), live=False).wait(self.timeout)
                self.keep_log(f"{sc.name}-{run + 1}-{impl}-save", s)
                s.check()
                stream_bytes = img.stat().st_size
                dst = host.create(sc.guest, sc.memory, sc.vcpus, None)
                r = self.restore(host, impl, dst, str(img)).wait(self.timeout)
                self.keep_log(f"{sc.name}-{run + 1}-{impl}-restore", r)
                r.check()
                m = {
                    "save_wall_s": s.wall, "save_cpu_s": s.cpu,
                    "save_gib_s": guest_bytes / GiB / s.wall,
                    "restore_wall_s": r.wall, "restore_cpu_s": r.cpu,
                    "restore_gib_s": guest_bytes / GiB / r.wall,
                    "stream_bytes": stream_bytes,
                }
                if run == 0:
                    rep = self.inspect(img)
                    m["page_entries"] = rep["pages"]["entries"]
                    m["data_pages"] = rep["pages"]["data_pages"]
                if self.verify_run(run):
                    if src_digest is None:
                        src_digest = host.digest(src)
                    got = host.digest(dst)
                    if got != src_digest:
                        raise BenchError(f"{sc.name}: {impl}'s restored domain {dst} "
                                         f"differs from its source ({got} != {src_digest})")
                    m["verified"] = True
                host.destroy(dst)
                img.unlink()
                runs[impl].append(m)
                self.log(f"{sc.name} run {run + 1} {impl}: save {s.wall:.2f} s "
                         f"({m['save_gib_s']:.2f} GiB/s), restore {r.wall:.2f} s "
                         f"({m['restore_gib_s']:.2f} GiB/s), stream {stream_bytes / GiB:.3f} GiB")
        host.destroy(src)
        out = {"guest_pages": guest_pages, "guest_bytes": guest_bytes,
               "results": {i: summarise(v) for i, v in runs.items()}}
        if base_runs:
            out["baseline"] = summarise(base_runs)
        return out

    def baseline(self, host: SimHost, src: int, guest_bytes: int, scratch: Path) -> dict:
        """Raw copies of the same bytes with no format, timed inside the
        copier (the interpreter's start is left out): guest memory into a
        pipe read by cat, guest memory into a file, and that file into fresh
        guest memory."""
        me = [sys.executable, str(Path(__file__).resolve())]
        ddir = host.domain_dir(src)
        flat, fresh = scratch / "flat.bin", scratch / "fresh.mem"
        reports = [scratch / f"copy-{i}.json" for i in range(3)]
        q = " ".join(f"'{a}'" for a in me)
        steps = [
            ("baseline copy-mem | cat",
             ["sh", "-c", f"{q} copy-mem '{ddir}' --report '{reports[0]}' | cat >/dev/null"]),
            ("baseline copy-mem > file",
             ["sh", "-c", f"{q} copy-mem '{ddir}' --report '{reports[1]}' > '{flat}'"]),
            ("baseline copy-in", [*me, "copy-in", flat, fresh, "--report", reports[2]]),
        ]
        for name, argv in steps:
            Child(name, argv, dict(os.environ)).wait(self.timeout).check()
        if flat.stat().st_size != guest_bytes:
            raise BenchError(f"baseline copied {flat.stat().st_size} bytes, "
                             f"the guest has {guest_bytes}")
        pipe, to_file, back = (json.loads(r.read_text()) for r in reports)
        for p in [flat, fresh, *reports]:
            p.unlink()
        return {"pipe_wall_s": pipe["wall_s"], "pipe_cpu_s": pipe["cpu_s"],
                "pipe_gib_s": guest_bytes / GiB / pipe["wall_s"],
                "save_wall_s": to_file["wall_s"], "save_cpu_s": to_file["cpu_s"],
                "save_gib_s": guest_bytes / GiB / to_file["wall_s"],
                "restore_wall_s": back["wall_s"], "restore_cpu_s": back["cpu_s"],
                "restore_gib_s": guest_bytes / GiB / back["wall_s"],
                "stream_bytes": guest_bytes}

    # ---- live

    def run_live(self, sc: Scenario, host: SimHost) -> dict:
        src = host.create(sc.guest, sc.memory, sc.vcpus, sc.fill, self.args.seed)
        guest_pages = int(host.info(src)["tot_pages"])
        guest_bytes = guest_pages * PAGE
        runs: dict[str, list[dict]] = {i: [] for i in self.variants(sc)}
        for run in range(self.args.runs):
            for impl in self.order(run, sc):
                host.resume_if_suspended(src)
                m = self.live_once(sc, host, src, impl, run)
                runs[impl].append(m)
                extra = ""
                if "lowest_share" in m:
                    extra = (f", lowest CPU share {m['lowest_share']:.0%}, throttled "
                             f"{m['throttled_s']:.2f} s of {m['wall_s']:.2f} s"
                             f"{'' if m['sched_restored'] else ', cap NOT restored'}")
                self.log(f"{sc.name} run {run + 1} {impl}: {m['wall_s']:.2f} s, "
                         f"wire {m['wire_bytes'] / GiB:.3f} GiB, "
                         f"{m['precopy_passes']} precopy passes, "
                         f"{m['suspended_pages']} pages suspended, "
                         f"downtime {m['downtime_ms']:.0f} ms{extra}")
        host.destroy(src)
        return {"guest_pages": guest_pages, "guest_bytes": guest_bytes,
                "results": {i: summarise(v) for i, v in runs.items()}}

    def live_once(self, sc: Scenario, host: SimHost, src: int, impl: str, run: int) -> dict:
        dst = host.create(sc.guest, sc.memory, sc.vcpus, None)
        hot = sc.kind == "live-hot"
        sched_reset = False
        if hot:
            # Every variant starts from the default weight and cap, whatever
            # an earlier save left behind (the evidence then shows it).
            before = host.sched(src)
            if (before["weight"], before["cap"]) != (DEFAULT_SCHED["weight"],
                                                     DEFAULT_SCHED["cap"]):
                before = host.set_sched(src, DEFAULT_SCHED["weight"], DEFAULT_SCHED["cap"])
                sched_reset = True
        wl = Child("xensim domain run", [
            self.build.xensim, "domain", "run", str(src), "--dirty-rate",
            str(sc.dirty_rate), "--working-set", f"{sc.working_set // MiB}M",
            "--seed", str(self.args.seed + run), "--duration",
            str(int(self.timeout))], host.env())
        relay = Relay(sc.link_rate or None)
        saver = restorer = None
        # CLOCK_MONOTONIC ns + this = Unix ns (the scheduler history's clock).
        unix_off = time.time_ns() - time.monotonic_ns()
        try:
            time.sleep(self.args.warmup)
            if not wl.running():
                res = wl.wait(1)
                raise BenchError(f"the workload exited before the migration:\n{res.tail()}")
            sfd, rfd = relay.save_end.fileno(), relay.restore_end.fileno()
            relay.start()
            restorer = self.restore(host, impl, dst, f"fd:{rfd}", (rfd,))
            saver = self.save(host, impl, src, f"fd:{sfd}", True, (sfd,))
            relay.close_child_ends()
            s = saver.wait(self.timeout)
            r = restorer.wait(self.timeout)
            relay.join(30)
            self.keep_log(f"{sc.name}-{run + 1}-{impl}-save", s)
            self.keep_log(f"{sc.name}-{run + 1}-{impl}-restore", r)
            # One side failing makes the other fail too (EPIPE, early EOF):
            # report both, so the cause is in the message.
            failed = []
            for res in (r, s):
                try:
                    res.check()
                except BenchError as e:
                    failed.append(str(e))
            if failed:
                raise BenchError("\n".join(failed))
            w = wl.wait(60).check()
        finally:
            for c in (saver, restorer, wl):
                if c is not None:
                    c.kill()
            # Idempotent; on an early failure it lets the relay see EOF.
            relay.close_child_ends()
        if relay.error:
            raise BenchError(f"relay: {relay.error}")
        log = parse_save_log(s.stderr)
        if log.suspended_ns is None:
            raise BenchError(f"{impl}: xg-save never reported a suspend")
        done = restore_done_ns(r)
        m = {
            "wall_s": (max(s.end_ns, r.end_ns) - s.start_ns) / 1e9,
            "save_cpu_s": s.cpu, "restore_cpu_s": r.cpu,
            "cpu_s": s.cpu + r.cpu,
            "wire_bytes": relay.bytes,
            "wire_gib_s": relay.bytes / GiB / ((max(s.end_ns, r.end_ns) - s.start_ns) / 1e9),
            "precopy_passes": len(log.precopy_totals),
            "precopy_totals": log.precopy_totals,
            "suspended_pages": log.suspended_pages or 0,
            "downtime_ms": (done - log.suspended_ns) / 1e6,
            "workload_pages_written": int(w.stdout.split()[-1]) if w.stdout.split() else 0,
        }
        if hot:
            m["rounds"] = len(log.precopy_totals) + (1 if log.suspended_pages is not None else 0)
            m["dirty_per_round"] = log.precopy_totals + (
                [log.suspended_pages] if log.suspended_pages is not None else [])
            if relay.first_ns is not None and relay.last_ns and relay.last_ns > relay.first_ns:
                m["link_mib_s"] = relay.bytes / MiB / ((relay.last_ns - relay.first_ns) / 1e9)
            hist = host.sched(src, history=True)
            after = {"weight": hist["weight"], "cap": hist["cap"]}
            m["save_start_unix_ns"] = s.start_ns + unix_off
            m["save_end_unix_ns"] = s.end_ns + unix_off
            m["migration_end_unix_ns"] = max(s.end_ns, r.end_ns) + unix_off
            m.update(throttle_summary(
                hist.get("history", []), before, after, sc.vcpus,
                m["save_start_unix_ns"], m["save_end_unix_ns"]))
            m["throttle_within_migration"] = bool(
                m["throttled_s"] == 0 or (
                    m["throttle_start_unix_ns"] >= m["save_start_unix_ns"]
                    and m["throttle_end_unix_ns"] is not None
                    and m["throttle_end_unix_ns"] <= m["migration_end_unix_ns"]))
            m["sched_reset_before"] = sched_reset
        # The rate the workload reached (it shares the CPUs with the saver).
        m["workload_mib_s"] = m["workload_pages_written"] * PAGE / MiB / max(w.wall, 1e-9)
        if self.verify_run(run):
            a, b = host.digest(src), host.digest(dst)
            if a != b:
                raise BenchError(f"{sc.name}: {impl}'s restored domain {dst} differs "
                                 f"from its suspended source ({b} != {a})")
            m["verified"] = True
        host.destroy(dst)
        return m


def throttle_summary(history: list[dict], before: dict, after: dict, vcpus: int,
                     start_ns: int, end_ns: int) -> dict:
    """What a save did to the guest's CPU, from the source domain's scheduler
    history (`xensim domain sched --history --json`, Unix ns).

    `before` and `after` are the weight and cap before the save and after it;
    only changes at or after `start_ns` count (earlier ones belong to earlier
    saves or to the bench's reset). The throttle starts at the first change
    away from `before` and ends at the first change back to it (None if it
    never came back). The lowest cap is the lowest non-zero cap in force
    during the save; its share is cap / (100 × vCPUs), 100% without a cap.
    `share_steps` is the share over time, in seconds from `start_ns`."""
    events = sorted((e for e in history if e["time_ns"] >= start_ns),
                    key=lambda e: e["time_ns"])

    def share(cap: int) -> float:
        return 1.0 if cap == 0 else min(1.0, cap / (100 * max(vcpus, 1)))

    orig = (before["weight"], before["cap"])
    t_start = t_end = None
    caps = [before["cap"]] if before["cap"] else []
    steps = [(0.0, share(before["cap"]))]
    for e in events:
        params = (e["weight"], e["cap"])
        if e["time_ns"] <= end_ns and e["cap"]:
            caps.append(e["cap"])
        steps.append(((e["time_ns"] - start_ns) / 1e9, share(e["cap"])))
        if t_start is None and params != orig:
            t_start = e["time_ns"]
        elif t_start is not None and t_end is None and params == orig:
            t_end = e["time_ns"]
    lowest = min(caps) if caps else 0
    restored = (after["weight"], after["cap"]) == orig
    if t_start is None:
        throttled = 0.0
    elif t_end is None:
        throttled = (end_ns - t_start) / 1e9  # at least until the save's end
    else:
        throttled = (t_end - t_start) / 1e9
    return {
        "sched_before": dict(before), "sched_after": dict(after),
        "sched_changes": len(events),
        "lowest_cap": lowest, "lowest_share": share(lowest),
        "throttle_start_unix_ns": t_start, "throttle_end_unix_ns": t_end,
        "throttled_s": throttled,
        "sched_restored": restored and (t_start is None or t_end is not None),
        "share_steps": steps,
    }


def summarise(runs: list[dict]) -> dict:
    """Median of every numeric metric over the runs, plus the runs."""
    med = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if k in r]
        if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            med[k] = statistics.median(vals)
    return {"median": med, "runs": runs}


# --------------------------------------------------------------------------
# Output


def git_state() -> dict:
    def git(*a: str) -> str:
        p = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return p.stdout.rstrip("\n") if p.returncode == 0 else ""
    dirty = git("status", "--porcelain", "--untracked-files=no", "--",
                "src", "Cargo.toml", "Cargo.lock", "capi-tests", "xensim", "build.rs")
    return {"commit": git("rev-parse", "HEAD"),
            "subject": git("log", "-1", "--format=%s"),
            "uncommitted": [l[3:] for l in dirty.splitlines()]}


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def machine() -> dict:
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_bytes": mem,
            "kernel": platform.release()}


def fmt(v, digits=2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def render_header(doc: dict, title: str = "xcmig vs libxenguest on xensim") -> list[str]:
    g = doc["git"]
    return [
        f"# {title}",
        "",
        f"Measured commit `{g['commit'][:12]}` ({g['subject']})"
        + (f", with uncommitted changes in {', '.join(g['uncommitted'])} "
           f"(libxcmig.so sha256 `{doc['libxcmig_sha256'][:16]}`)" if g["uncommitted"] else "")
        + f", {doc['date']}.",
        f"Machine: {doc['machine']['cpus']} CPUs ({doc['machine']['cpu_model']}), "
        f"{doc['machine']['memory_bytes'] / GiB:.0f} GiB RAM, Linux {doc['machine']['kernel']}; "
        f"host directories on `{doc['config']['host_base']}`; load average "
        f"{doc['machine'].get('loadavg_start', '?')} at the start, "
        f"{doc['machine'].get('loadavg_end', '?')} at the end.",
        f"Medians of {doc['config']['runs']} runs{' (quick mode)' if doc['config']['quick'] else ''}. "
        "`xcmig` = the C harness with `LD_PRELOAD=libxcmig.so`; `libxenguest` = the same "
        "harness on Debian's `libxenguest.so.4.17`; `baseline` = the same guest bytes copied "
        "with no format (guest memory into a pipe read by `cat`, and a flat file into fresh "
        "guest memory). See `bench/README.md` for definitions.",
        "",
    ]


def render_markdown(doc: dict) -> str:
    lines = render_header(doc)
    nonlive = [s for s in doc["scenarios"] if s["kind"] == "nonlive"]
    live = [s for s in doc["scenarios"] if s["kind"] == "live"]
    if nonlive:
        lines += [
            "## Non-live save and restore",
            "",
            "| scenario | impl | save s | save CPU s | save GiB/s | restore s | restore CPU s "
            "| restore GiB/s | stream GiB | data pages |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in nonlive:
            rows = []
            if "baseline" in s:
                b = s["baseline"]["median"]
                rows.append(("baseline (pipe)", {
                    "save_wall_s": b["pipe_wall_s"], "save_cpu_s": b["pipe_cpu_s"],
                    "save_gib_s": b["pipe_gib_s"], "stream_bytes": b["stream_bytes"]}))
                rows.append(("baseline (file)", b))
            rows += [(i, s["results"][i]["median"]) for i in IMPLS if i in s["results"]]
            for name, m in rows:
                lines.append(
                    f"| {s['name']} | {name} | {fmt(m.get('save_wall_s'))} | "
                    f"{fmt(m.get('save_cpu_s'))} | {fmt(m.get('save_gib_s'))} | "
                    f"{fmt(m.get('restore_wall_s'))} | {fmt(m.get('restore_cpu_s'))} | "
                    f"{fmt(m.get('restore_gib_s'))} | {fmt(m.get('stream_bytes', 0) / GiB, 3)} | "
                    f"{fmt(m.get('data_pages'))} |")
        lines += ["", "Ratios (xcmig / libxenguest; xcmig / baseline):", ""]
        for s in nonlive:
            r = s["results"]
            if "xcmig" in r and "libxenguest" in r:
                x, l = r["xcmig"]["median"], r["libxenguest"]["median"]
                b = s.get("baseline", {}).get("median", {})
                lines.append(
                    f"- {s['name']}: save throughput {ratio(x['save_gib_s'], l['save_gib_s'])} "
                    f"libxenguest, {ratio(x['save_gib_s'], b.get('save_gib_s'))} baseline (file), "
                    f"{ratio(x['save_gib_s'], b.get('pipe_gib_s'))} baseline (pipe); "
                    f"restore throughput {ratio(x['restore_gib_s'], l['restore_gib_s'])} "
                    f"libxenguest, {ratio(x['restore_gib_s'], b.get('restore_gib_s'))} baseline; "
                    f"CPU seconds: save {ratio(x['save_cpu_s'], l['save_cpu_s'])}, restore "
                    f"{ratio(x['restore_cpu_s'], l['restore_cpu_s'])} libxenguest's; "
                    f"stream bytes {ratio(x['stream_bytes'], l['stream_bytes'])} libxenguest's.")
        lines.append("")
    if live:
        lines += [
            "## Live migration over a socket",
            "",
            "| scenario | impl | total s | save CPU s | restore CPU s | wire GiB | precopy passes "
            "| pages while suspended | downtime ms | dirtied MiB/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in live:
            for i in IMPLS:
                if i not in s["results"]:
                    continue
                m = s["results"][i]["median"]
                lines.append(
                    f"| {s['name']} ({s['params']['dirty_rate_mib_s']} MiB/s, "
                    f"{s['params']['working_set_bytes'] // MiB} MiB) | {i} | {fmt(m['wall_s'])} | "
                    f"{fmt(m['save_cpu_s'])} | {fmt(m['restore_cpu_s'])} | "
                    f"{fmt(m['wire_bytes'] / GiB, 3)} | {fmt(m['precopy_passes'], 0)} | "
                    f"{fmt(m['suspended_pages'], 0)} | {fmt(m['downtime_ms'], 0)} | "
                    f"{fmt(m.get('workload_mib_s'), 0)} |")
        lines += ["", "Ratios (xcmig / libxenguest):", ""]
        for s in live:
            r = s["results"]
            if "xcmig" in r and "libxenguest" in r:
                x, l = r["xcmig"]["median"], r["libxenguest"]["median"]
                forced = [r for r in s["results"]["libxenguest"]["runs"]
                          if r["precopy_passes"] >= 5 and r["precopy_totals"]
                          and r["precopy_totals"][-1] >= 50]
                how = (f"libxenguest hit its 5-iteration limit in {len(forced)} of "
                       f"{len(s['results']['libxenguest']['runs'])} runs"
                       if forced else "libxenguest converged (under 50 dirty pages)")
                lines.append(
                    f"- {s['name']}: downtime {ratio(x['downtime_ms'], l['downtime_ms'])}, "
                    f"wire bytes {ratio(x['wire_bytes'], l['wire_bytes'])}, "
                    f"total time {ratio(x['wall_s'], l['wall_s'])}, "
                    f"CPU seconds {ratio(x['cpu_s'], l['cpu_s'])}; {how}.")
        lines.append("")
    lines += render_hot(doc)
    if doc.get("notes"):
        lines += ["## Notes", "", doc["notes"].strip(), ""]
    lines += render_targets(doc)
    lines += ["## Scenarios", ""]
    for s in doc["scenarios"]:
        lines.append(f"- `{s['name']}`: {s['title']} ({s['guest_pages']} populated pages).")
    lines.append("")
    return "\n".join(lines)


def pct(v) -> str:
    return "–" if v is None else f"{v:.0%}"


def hot_evidence(s: dict, target_ms: float) -> list[tuple[str, bool | None]]:
    """The live-hot evidence, each item (text, met): xcmig with auto-converge
    meets the downtime target where libxenguest's downtime is at least ten
    times the target, with the guest throttled no longer than the migration
    (in every run: the throttle began at or after the save's start, ended by
    the migration's end, and left the weight and cap as they were)."""
    r = s["results"]
    out: list[tuple[str, bool | None]] = []
    ac = r.get("xcmig+ac", {}).get("median")
    lx = r.get("libxenguest", {}).get("median")
    if ac:
        out.append((f"xcmig+ac downtime {fmt(ac['downtime_ms'], 0)} ms ≤ the "
                    f"{target_ms:.0f} ms target", ac["downtime_ms"] <= target_ms))
    if lx:
        extra = ""
        if ac and ac.get("downtime_ms"):
            extra = f"; {lx['downtime_ms'] / ac['downtime_ms']:.0f}× xcmig+ac's"
        out.append((f"libxenguest downtime {fmt(lx['downtime_ms'], 0)} ms ≥ 10 × the target "
                    f"({10 * target_ms:.0f} ms){extra}", lx["downtime_ms"] >= 10 * target_ms))
    if ac:
        runs = r["xcmig+ac"]["runs"]
        within = all(m.get("throttle_within_migration") for m in runs)
        restored = all(m.get("sched_restored") for m in runs)
        capped = [m for m in runs if m.get("throttled_s")]
        longest = max(runs, key=lambda m: m.get("throttled_s", 0))
        out.append((f"guest throttled {fmt(longest.get('throttled_s'))} s at most, of a "
                    f"{fmt(longest['wall_s'])} s migration (lowest share "
                    f"{pct(longest.get('lowest_share'))}); in {len(capped)} of {len(runs)} runs "
                    f"capped, throttle inside the migration in "
                    f"{sum(1 for m in runs if m.get('throttle_within_migration'))} of {len(runs)}",
                    within and bool(capped)))
        out.append((f"weight and cap back to their values before the save in "
                    f"{sum(1 for m in runs if m.get('sched_restored'))} of {len(runs)} runs",
                    restored))
    for v in ("libxenguest", "xcmig"):
        if v in r:
            vr = r[v]["runs"]
            untouched = all(m.get("sched_changes", 0) == 0 for m in vr)
            out.append((f"{v} left the guest's scheduling alone in "
                        f"{sum(1 for m in vr if m.get('sched_changes', 0) == 0)} of {len(vr)} runs",
                        untouched))
    return out


def render_hot(doc: dict) -> list[str]:
    """The live-hot section: a guest out-dirtying a rate-limited link."""
    hot = [s for s in doc["scenarios"] if s["kind"] == "live-hot"]
    if not hot:
        return []
    target = doc.get("config", {}).get("target_downtime_ms", DEFAULT_TARGET_DOWNTIME_MS)
    lines = [
        "## Live migration of a guest that out-dirties the link (live-hot)",
        "",
        "| scenario | impl | downtime ms | total s | wire GiB | rounds | precopy passes "
        "| pages while suspended | save CPU s | restore CPU s | lowest CPU share "
        "| throttled s | cap restored | link MiB/s | dirtied MiB/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for s in hot:
        p = s["params"]
        label = (f"{s['name']} ({p['dirty_rate_mib_s']} MiB/s, "
                 f"{p['working_set_bytes'] // MiB} MiB, link "
                 f"{p.get('link_bytes_s', 0) // MiB} MiB/s)")
        for i in HOT_VARIANTS:
            if i not in s["results"]:
                continue
            m = s["results"][i]["median"]
            runs = s["results"][i]["runs"]
            restored = sum(1 for x in runs if x.get("sched_restored"))
            lines.append(
                f"| {label} | {i} | {fmt(m['downtime_ms'], 0)} | {fmt(m['wall_s'])} | "
                f"{fmt(m['wire_bytes'] / GiB, 3)} | {fmt(m.get('rounds'), 0)} | "
                f"{fmt(m['precopy_passes'], 0)} | {fmt(m['suspended_pages'], 0)} | "
                f"{fmt(m['save_cpu_s'])} | {fmt(m['restore_cpu_s'])} | "
                f"{pct(m.get('lowest_share'))} | {fmt(m.get('throttled_s'))} | "
                f"{restored}/{len(runs)} | {fmt(m.get('link_mib_s'), 1)} | "
                f"{fmt(m.get('workload_mib_s'), 0)} |")
        lines += ["", "Dirty set per round (pages; the last is the stop-and-copy round, "
                  "sent with the guest suspended), run 1:", ""]
        for i in HOT_VARIANTS:
            if i in s["results"]:
                d = s["results"][i]["runs"][0].get("dirty_per_round", [])
                lines.append(f"- {i}: " + ", ".join(f"{n:,}" for n in d))
        lines += ["", "CPU share of the guest during the save (xcmig+ac, run 1; seconds "
                  "after the save started → share):", ""]
        ac = s["results"].get("xcmig+ac")
        if ac:
            steps = ac["runs"][0].get("share_steps", [])
            lines.append("- " + ", ".join(f"{t:+.2f} s → {v:.0%}" for t, v in steps)
                         + f"; the migration ended at {ac['runs'][0]['wall_s']:.2f} s.")
        lines += ["", f"Evidence ({s['name']}): xcmig with auto-converge meets the "
                  f"{target:.0f} ms downtime target where libxenguest's downtime is at least "
                  "ten times that, with the guest throttled no longer than the migration lasts.",
                  ""]
        ev = hot_evidence(s, target)
        for text, ok in ev:
            lines.append(f"- {text}: {'met' if ok else '**missed**'}.")
        overall = "xcmig+ac" in s["results"] and all(ok for _, ok in ev)
        lines += ["", f"Overall: {'met' if overall else '**not met**'}"
                  + ("" if "xcmig+ac" in s["results"] else
                     " (xcmig+ac was not measured)") + ".", ""]
    return lines


def render_hot_markdown(doc: dict) -> str:
    lines = render_header(doc, "live-hot: xcmig (with and without auto-converge) vs "
                          "libxenguest over a rate-limited link")
    lines += render_hot(doc)
    if doc.get("notes"):
        lines += ["## Notes", "", doc["notes"].strip(), ""]
    lines += ["## Scenarios", ""]
    for s in doc["scenarios"]:
        if s["kind"] == "live-hot":
            lines.append(f"- `{s['name']}`: {s['title']} ({s['guest_pages']} populated pages).")
    lines.append("")
    return "\n".join(lines)


HOT_COLOURS = {"libxenguest": "#d62728", "xcmig": "#1f77b4", "xcmig+ac": "#2ca02c"}
HOT_MARKS = {"libxenguest": "s", "xcmig": "o", "xcmig+ac": "^"}


def render_hot_plot(doc: dict, path: Path) -> None:
    """live-hot: the dirty set per round of each variant (every run; the
    stop-and-copy round marked), and the guest's CPU share over the save."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    hot = [s for s in doc["scenarios"] if s["kind"] == "live-hot"]
    fig, axes = plt.subplots(len(hot), 2, figsize=(12, 4.5 * len(hot)), squeeze=False)
    for row, s in zip(axes, hot):
        ax, ax2 = row
        for v in HOT_VARIANTS:
            if v not in s["results"]:
                continue
            for k, m in enumerate(s["results"][v]["runs"]):
                d = m.get("dirty_per_round") or []
                if not d:
                    continue
                kw = {"color": HOT_COLOURS[v], "alpha": 1.0 if k == 0 else 0.35}
                xs = list(range(len(d)))
                # libxenguest and xcmig often overlap: different marks.
                ax.plot(xs, [max(n, 0.8) for n in d], marker=HOT_MARKS[v],
                        markersize=7 if v == "libxenguest" else 4,
                        markerfacecolor="none" if v == "libxenguest" else HOT_COLOURS[v],
                        linestyle="--" if v == "libxenguest" else "-",
                        label=(f"{v} ({m['downtime_ms']:.0f} ms down)" if k == 0 else None),
                        **kw)
                ax.plot([xs[-1]], [max(d[-1], 0.8)], marker="*", markersize=13, **kw)
            runs = s["results"][v]["runs"]
            t_end = runs[0]["wall_s"]
            steps = runs[0].get("share_steps") or [(0.0, 1.0)]
            xs = [t for t, _ in steps] + [t_end]
            ys = [100 * v_ for _, v_ in steps] + [100 * steps[-1][1]]
            ax2.step(xs, ys, where="post", color=HOT_COLOURS[v], label=v,
                     linestyle="-" if v == "xcmig+ac" else "--")
            ax2.axvline(t_end, color=HOT_COLOURS[v], linestyle=":", alpha=0.7)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round (★ = stop-and-copy, guest suspended)")
        ax.set_ylabel("dirty set (pages)")
        p = s["params"]
        ax.set_title(f"{s['name']}: dirty set per round ({p['dirty_rate_mib_s']} MiB/s over "
                     f"{p['working_set_bytes'] // MiB} MiB, link "
                     f"{p.get('link_bytes_s', 0) // MiB} MiB/s)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax2.set_ylim(0, 105)
        ax2.set_xlabel("seconds since the save started (dotted: migration end)")
        ax2.set_ylabel("guest CPU share (%)")
        ax2.set_title(f"{s['name']}: CPU share the guest was left with (run 1)", fontsize=10)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8)
    fig.suptitle(f"live-hot on xensim (commit {doc['git']['commit'][:12]})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_targets(doc: dict) -> list[str]:
    """Issue 5's targets, each checked against this run's medians."""
    out = ["## Issue 5 targets in this run", ""]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    for s in doc["scenarios"]:
        r = s["results"]
        if "xcmig" not in r or "libxenguest" not in r or s["kind"] == "live-hot":
            continue  # live-hot has its own evidence (render_hot)
        x, l = r["xcmig"]["median"], r["libxenguest"]["median"]
        if s["kind"] == "nonlive":
            b = s.get("baseline", {}).get("median", {})
            for op, base_key in (("save", "pipe_gib_s"), ("restore", "restore_gib_s")):
                vs_l = x[f"{op}_gib_s"] / l[f"{op}_gib_s"]
                out.append(f"- {s['name']} {op} throughput ≥ 2× libxenguest: "
                           f"{vs_l:.2f}×, {verdict(vs_l >= 2)}.")
                if b.get(base_key):
                    vs_b = x[f"{op}_gib_s"] / b[base_key]
                    out.append(f"- {s['name']} {op} throughput ≥ 70% of the baseline "
                               f"({'pipe' if op == 'save' else 'file → memory'}): "
                               f"{vs_b:.0%}, {verdict(vs_b >= 0.7)}.")
            if s["params"].get("fill") == "mixed":
                rb = x["stream_bytes"] / l["stream_bytes"]
                out.append(f"- {s['name']} stream ≤ 55% of libxenguest's bytes: "
                           f"{rb:.0%}, {verdict(rb <= 0.55)}.")
        else:
            rd = x["downtime_ms"] / l["downtime_ms"]
            rw = x["wire_bytes"] / l["wire_bytes"]
            out.append(f"- {s['name']} downtime ≤ ½ libxenguest's with no more bytes: "
                       f"downtime {rd:.2f}×, bytes {rw:.2f}×, "
                       f"{verdict(rd <= 0.5 and rw <= 1.0)}.")
    out.append("")
    return out


def render_plot(doc: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nonlive = [s for s in doc["scenarios"] if s["kind"] == "nonlive"]
    live = [s for s in doc["scenarios"] if s["kind"] == "live"]
    colours = {"baseline (pipe)": "#cccccc", "baseline (file)": "#888888",
               "libxenguest": "#d62728", "xcmig": "#1f77b4"}
    panels = (1 if nonlive else 0) + (2 if live else 0)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(5.5 * max(panels, 1), 4.5))
    if not isinstance(axes, (list, tuple)) and not hasattr(axes, "__len__"):
        axes = [axes]
    ax_i = 0

    def bars(ax, groups, series, title, ylabel, log=False):
        n = len(series)
        width = 0.8 / max(n, 1)
        for k, (name, values) in enumerate(series):
            xs = [g + (k - (n - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, [v or 0 for v in values], width, label=name,
                   color=colours.get(name, None))
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    if nonlive:
        groups, series = [], {}
        for s in nonlive:
            for op in ("save", "restore"):
                groups.append(f"{s['name']} {op}")
                base = s.get("baseline", {}).get("median", {})
                series.setdefault("baseline (pipe)", []).append(
                    base.get("pipe_gib_s") if op == "save" else None)
                series.setdefault("baseline (file)", []).append(base.get(f"{op}_gib_s"))
                for name in IMPLS:
                    src = s["results"].get(name)
                    series.setdefault(name, []).append(
                        src["median"].get(f"{op}_gib_s") if src else None)
        bars(axes[ax_i], groups, [(k, v) for k, v in series.items() if any(v)],
             "non-live throughput (guest GiB/s)", "GiB/s")
        ax_i += 1
    if live:
        groups = [s["name"] for s in live]
        series = [(i, [s["results"][i]["median"]["downtime_ms"] if i in s["results"] else None
                       for s in live]) for i in IMPLS]
        bars(axes[ax_i], groups, series, "live: downtime (suspend → restored)", "ms", log=True)
        series = [(i, [s["results"][i]["median"]["wire_bytes"] / GiB if i in s["results"] else None
                       for s in live]) for i in IMPLS]
        bars(axes[ax_i + 1], groups, series, "live: bytes on the wire", "GiB")
    fig.suptitle(f"xcmig vs libxenguest on xensim (commit {doc['git']['commit'][:12]})",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# Main


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def mem_available() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def pick_host_base(requested: str | None, need: int, log: Callable[[str], None]) -> Path:
    if requested:
        return Path(requested)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        free = shutil.disk_usage(shm).free
        # tmpfs pages are RAM: leave headroom for everyone else.
        if free >= need and mem_available() >= need + 2 * GiB:
            return shm
        log(f"/dev/shm lacks {need / GiB:.1f} GiB (+2 GiB headroom); "
            "using a directory on disk, which is slower")
    return Path(tempfile.gettempdir())


def target_downtime_ms() -> float:
    """xcmig's downtime target in this run's environment."""
    try:
        return float(os.environ.get("XCMIG_TARGET_DOWNTIME_MS", DEFAULT_TARGET_DOWNTIME_MS))
    except ValueError:
        return float(DEFAULT_TARGET_DOWNTIME_MS)


def run_bench(args: argparse.Namespace) -> int:
    build = Build.locate()
    bench = Bench(args, build)
    scs = [s for s in scenarios(args.quick)
           if not args.scenario or s.name in args.scenario]
    if not scs:
        raise BenchError(f"no scenario matches {args.scenario}")
    need = max(s.memory * (4 if s.kind == "nonlive" else 2) for s in scs) + 256 * MiB
    base = pick_host_base(args.host_base, need, bench.log)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "tool": "xcmig-bench",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_state(),
        "libxcmig_sha256": sha256_file(build.libxcmig),
        "machine": machine(),
        "config": {"runs": args.runs, "quick": args.quick, "seed": args.seed,
                   "host_base": str(base), "warmup_s": args.warmup,
                   "impls": [i for i in ALL_VARIANTS if i in args.impl],
                   "target_downtime_ms": target_downtime_ms(),
                   "auto_converge_env": {k: v for k, v in sorted(os.environ.items())
                                         if k.startswith("XCMIG_AUTO_CONVERGE_")}},
        "scenarios": [],
    }
    doc["machine"]["loadavg_start"] = loadavg()
    for sc in scs:
        bench.log(f"scenario {sc.name}: {sc.title}")
        host = SimHost(base, build, args.timeout)
        try:
            body = bench.run_nonlive(sc, host) if sc.kind == "nonlive" else bench.run_live(sc, host)
        finally:
            Child.kill_all()
            host.close()
        doc["scenarios"].append({"name": sc.name, "kind": sc.kind, "title": sc.title,
                                 "params": sc.params(), **body})
    doc["machine"]["loadavg_end"] = loadavg()
    if args.notes:
        doc["notes"] = Path(args.notes).read_text()
    written = write_outputs(doc, out_dir, not args.no_plot)
    bench.log(f"wrote {', '.join(str(out_dir / n) for n in written)}")
    for name in ("results.md", "live-hot.md"):
        if name in written:
            print((out_dir / name).read_text())
    return 0


def hot_doc(doc: dict) -> dict:
    """The document with only its live-hot scenarios."""
    return {**doc, "scenarios": [s for s in doc["scenarios"] if s["kind"] == "live-hot"]}


def write_outputs(doc: dict, out_dir: Path, plot: bool) -> list[str]:
    """Writes results.{json,md} and plot.png, and live-hot.{json,md,png}
    when the run has the live-hot scenario. A run of live-hot alone writes
    only the live-hot files, so the other scenarios' results stay. Returns
    the names written."""
    written = []
    hot = hot_doc(doc)
    if len(hot["scenarios"]) < len(doc["scenarios"]) or not hot["scenarios"]:
        (out_dir / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
        (out_dir / "results.md").write_text(render_markdown(doc))
        written += ["results.md", "results.json"]
        if plot:
            render_plot(doc, out_dir / "plot.png")
            written.append("plot.png")
    if hot["scenarios"]:
        (out_dir / "live-hot.json").write_text(json.dumps(hot, indent=1) + "\n")
        (out_dir / "live-hot.md").write_text(render_hot_markdown(hot))
        written += ["live-hot.md", "live-hot.json"]
        if plot:
            render_hot_plot(hot, out_dir / "live-hot.png")
            written.append("live-hot.png")
    return written


def cmd_render(args: argparse.Namespace) -> int:
    """Re-renders results.md and plot.png from a results.json, optionally
    replacing its notes (the measurements are kept as they are)."""
    out_dir = Path(args.dir)
    if out_dir.suffix == ".json" and not out_dir.is_dir():
        # One document: DIR/results.json or DIR/live-hot.json.
        names = [out_dir.name]
        out_dir = out_dir.parent
    else:
        names = [n for n in ("results.json", "live-hot.json") if (out_dir / n).exists()]
    if not names:
        names = ["results.json"]  # for the error message
    docs = []
    for name in names:
        try:
            docs.append(json.loads((out_dir / name).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            print(f"xcmig-bench: error: cannot read {out_dir}/{name}: {e}", file=sys.stderr)
            return 1
    # results.json with a live-hot scenario rewrites live-hot.* too; one
    # without it leaves live-hot.json to re-render on its own.
    if len(docs) == 2 and hot_doc(docs[0])["scenarios"]:
        docs = docs[:1]
    for doc in docs:
        if args.notes:
            doc["notes"] = Path(args.notes).read_text()
        write_outputs(doc, out_dir, True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="xcmig-bench",
        description="xcmig and Debian's libxenguest side by side on xensim.")
    sub = p.add_subparsers(dest="cmd", metavar="{render}")
    c = sub.add_parser("copy-mem")  # baseline copier, not listed
    c.add_argument("domain_dir")
    c.add_argument("--report")
    c = sub.add_parser("render", help="re-render results.md and plot.png from results.json "
                       "(and live-hot.md/.png from live-hot.json)")
    c.add_argument("dir", help="the output directory, or one JSON file in it "
                   "(results.json or live-hot.json) to render only that one")
    c.add_argument("--notes", help="markdown file to include as the Notes section")
    c = sub.add_parser("copy-in")  # baseline copier, not listed
    c.add_argument("source")
    c.add_argument("dest")
    c.add_argument("--report")
    p.add_argument("--runs", type=int, default=3, help="runs per scenario (median; default 3)")
    p.add_argument("--quick", action="store_true",
                   help="256 MiB guests and lighter workloads: a smoke test")
    p.add_argument("--out", default=str(REPO / "bench" / "results"),
                   help="output directory (default bench/results)")
    p.add_argument("--scenario", action="append",
                   help="run only this scenario (repeatable)")
    p.add_argument("--impl", action="append", choices=ALL_VARIANTS,
                   help="measure only this implementation (repeatable; xcmig+ac = "
                        "xcmig with XCMIG_AUTO_CONVERGE=1, live-hot only)")
    p.add_argument("--host-base", help="where host directories go (default /dev/shm if it fits)")
    p.add_argument("--timeout", type=float, default=900,
                   help="seconds before a child process is killed (default 900)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds the workload runs before a live migration starts")
    p.add_argument("--verify", choices=("first", "all", "none"), default="first",
                   help="compare restored and source digests (default: first run)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--logs", help="keep every harness's stderr in this directory")
    p.add_argument("--notes", help="markdown file to include in results.md as Notes")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "copy-mem":
        return cmd_copy_mem(args)
    if args.cmd == "copy-in":
        return cmd_copy_in(args)
    if args.cmd == "render":
        return cmd_render(args)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    args.impl = args.impl or list(ALL_VARIANTS)
    try:
        return run_bench(args)
    except BenchError as e:
        print(f"xcmig-bench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("xcmig-bench: interrupted", file=sys.stderr)
        return 130
    finally:
        Child.kill_all()


if __name__ == "__main__":
    sys.exit(main())
