#!/usr/bin/env python3
"""Tests of the benchmark runner: its parsers and renderers, and a --quick
run of the whole benchmark (one run per scenario) whose output files are
checked for sanity. Run with `make bench-smoke` or `python3 bench/test_bench.py`
after `make build`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xcmig_bench as xb  # noqa: E402


def lines(*texts: str) -> list[tuple[int, str]]:
    return [(1000 + i, t) for i, t in enumerate(texts)]


class PopulatedRuns(unittest.TestCase):
    def test_runs_follow_little_endian_words_and_cross_word_boundaries(self):
        words = [0] * 4
        for g in list(range(3, 10)) + list(range(60, 140)) + [255]:
            words[g // 64] |= 1 << (g % 64)
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "populated"
            p.write_bytes(b"".join(w.to_bytes(8, "little") for w in words))
            self.assertEqual(xb.populated_runs(p), [(3, 7), (60, 80), (255, 1)])

    def test_empty_bitmap_has_no_runs(self):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "populated"
            p.write_bytes(bytes(64))
            self.assertEqual(xb.populated_runs(p), [])


class SaveLog(unittest.TestCase):
    def test_live_log_counts_precopy_passes_and_the_pass_after_suspend(self):
        log = xb.parse_save_log(lines(
            'xg-save: progress context=xc what="Frames iteration 0" done=0 total=1000',
            'xg-save: progress context=xc what="Frames iteration 0" done=1000 total=1000',
            'xg-save: progress context=xc what="Frames iteration 1" done=0 total=300',
            'xg-save: progress context=xc what="Frames iteration 1" done=300 total=300',
            "xg-save: suspend domid=3 rc=0",
            "xg-save: timestamp event=suspended monotonic_ns=123456789",
            'xg-save: progress context=xc what="Domain now suspended" done=0 total=0',
            'xg-save: progress context=xc what="Frames iteration 1" done=0 total=42',
            'xg-save: progress context=xc what="Frames iteration 1" done=42 total=42',
            "xg-save: result rc=0 errno=0 (ok) suspends=1",
        ))
        self.assertEqual(log.precopy_totals, [1000, 300])
        self.assertEqual(log.suspended_pages, 42)
        self.assertEqual(log.suspended_ns, 123456789)

    def test_without_timestamp_line_the_suspend_line_arrival_is_used(self):
        log = xb.parse_save_log(lines("xg-save: suspend domid=3 rc=0"))
        self.assertEqual(log.suspended_ns, 1000)
        self.assertEqual(log.suspended_pages, 0)

    def test_no_suspend_means_no_suspended_pages(self):
        log = xb.parse_save_log(lines(
            'xg-save: progress context=xc what="Frames" done=5 total=5'))
        self.assertIsNone(log.suspended_ns)
        self.assertIsNone(log.suspended_pages)
        self.assertEqual(log.precopy_totals, [5])

    def test_restore_done_prefers_the_harness_timestamp(self):
        res = xb.ChildResult("r", [], 0, 0, 9999, 0.0, 0.0, "", lines(
            "xg-restore: timestamp event=restored monotonic_ns=777",
            "xg-restore: result rc=0 errno=0 (ok) store_gfn=0x1 console_gfn=0x2"))
        self.assertEqual(xb.restore_done_ns(res), 777)
        res.stderr = lines("xg-restore: result rc=0 errno=0 (ok)")
        self.assertEqual(xb.restore_done_ns(res), 1000)
        res.stderr = []
        self.assertEqual(xb.restore_done_ns(res), 9999)


class Summaries(unittest.TestCase):
    def test_median_of_numbers_only(self):
        s = xb.summarise([{"a": 1.0, "b": [1], "v": True}, {"a": 3.0, "b": [2], "v": True},
                          {"a": 2.0, "b": [3], "v": True}])
        self.assertEqual(s["median"], {"a": 2.0})
        self.assertEqual(len(s["runs"]), 3)

    def test_markdown_names_both_implementations_and_the_commit(self):
        nl = {"save_wall_s": 1.0, "save_cpu_s": 1.0, "save_gib_s": 2.0,
              "restore_wall_s": 1.0, "restore_cpu_s": 1.0, "restore_gib_s": 2.0,
              "stream_bytes": xb.GiB, "data_pages": 10}
        lv = {"wall_s": 3.0, "save_cpu_s": 1.0, "restore_cpu_s": 1.0, "wire_bytes": xb.GiB,
              "precopy_passes": 5, "suspended_pages": 900, "downtime_ms": 250.0, "cpu_s": 2.0,
              "precopy_totals": [100000, 9000, 5000, 3000, 2000], "workload_mib_s": 60.0}
        doc = {
            "git": {"commit": "abcdef0123456789", "subject": "s", "uncommitted": []},
            "libxcmig_sha256": "00", "date": "d",
            "machine": {"cpus": 2, "cpu_model": "m", "memory_bytes": xb.GiB, "kernel": "k",
                        "loadavg_start": "0", "loadavg_end": "0"},
            "config": {"runs": 1, "quick": True, "host_base": "/dev/shm"},
            "scenarios": [
                {"name": "random", "kind": "nonlive", "title": "t", "guest_pages": 1,
                 "params": {}, "baseline": {"median": {**nl, "pipe_wall_s": 1.0, "pipe_cpu_s": 1.0, "pipe_gib_s": 2.0}},
                 "results": {"libxenguest": {"median": nl}, "xcmig": {"median": nl}}},
                {"name": "live", "kind": "live", "title": "t", "guest_pages": 1,
                 "params": {"dirty_rate_mib_s": 8, "working_set_bytes": 4 * xb.MiB},
                 "results": {"libxenguest": {"median": lv, "runs": [lv]},
                             "xcmig": {"median": lv, "runs": [lv]}}},
            ],
        }
        md = xb.render_markdown(doc)
        self.assertIn("abcdef012345", md)
        for row in ("| random | baseline (pipe) |", "| random | baseline (file) |", "| random | libxenguest |", "| random | xcmig |",
                    "| live (8 MiB/s, 4 MiB) | xcmig |"):
            self.assertIn(row, md)
        self.assertIn("downtime 1.00×", md)
        self.assertIn("hit its 5-iteration limit in 1 of 1 runs", md)
        with tempfile.TemporaryDirectory() as d:
            xb.render_plot(doc, Path(d) / "p.png")
            self.assertEqual((Path(d) / "p.png").read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
            # `render` rebuilds results.md and the plot from results.json, with notes.
            (Path(d) / "results.json").write_text(json.dumps(doc))
            (Path(d) / "notes.md").write_text("Measured on a quiet machine.")
            self.assertEqual(xb.main(["render", d, "--notes", str(Path(d) / "notes.md")]), 0)
            md = (Path(d) / "results.md").read_text()
            self.assertIn("## Notes\n\nMeasured on a quiet machine.", md)
            self.assertIn("| random | xcmig |", md)
            self.assertGreater((Path(d) / "plot.png").stat().st_size, 0)
            self.assertEqual(xb.main(["render", str(Path(d) / "missing")]), 1)


class LinkRateLimit(unittest.TestCase):
    def test_chunks_leave_at_the_link_rate(self):
        link = xb.LinkShaper(1000, burst=0)  # bytes/s
        self.assertAlmostEqual(link.delay(100, 10.0), 0.1)
        # The next chunk arriving at once queues behind the first.
        self.assertAlmostEqual(link.delay(100, 10.0), 0.2)
        # Arriving after the link has caught up: only its own time.
        self.assertAlmostEqual(link.delay(500, 10.2), 0.5)

    def test_an_idle_link_banks_no_credit(self):
        link = xb.LinkShaper(1000, burst=0)
        link.delay(100, 0.0)
        # Idle from 0.1 s to 5 s: a burst then still goes at the rate.
        self.assertAlmostEqual(link.delay(1000, 5.0), 1.0)
        self.assertAlmostEqual(link.delay(1000, 5.0), 2.0)

    def test_credit_is_capped_at_the_burst(self):
        link = xb.LinkShaper(1000)  # default burst 20 ms
        self.assertEqual(link.burst, 0.02)
        self.assertAlmostEqual(link.delay(100, 0.0), 0.1)
        # A relay that wakes 5 ms late loses nothing: the link was busy.
        self.assertAlmostEqual(link.delay(100, 0.105), 0.095)
        # After a long pause only 20 ms of credit: 20 bytes of 100 at once.
        self.assertAlmostEqual(link.delay(100, 10.0), 0.08)
        self.assertAlmostEqual(link.delay(100, 10.0), 0.18)
        # Over a long stream with late wake-ups the rate is the link's.
        link, now = xb.LinkShaper(1000), 0.0
        for _ in range(1000):
            now += max(0.0, link.delay(10, now)) + 0.005  # 5 ms late each time
        self.assertAlmostEqual(10 * 1000 / now, 1000, delta=5)

    def test_chunk_is_about_10_ms_of_the_link_within_bounds(self):
        self.assertEqual(xb.LinkShaper(64 * xb.MiB).chunk(), int(64 * xb.MiB / 100))
        self.assertEqual(xb.LinkShaper(1000).chunk(), 64 * 1024)
        self.assertEqual(xb.LinkShaper(10 * xb.GiB).chunk(), xb.MiB)
        with self.assertRaises(ValueError):
            xb.LinkShaper(0)

    def _relay(self, rate, size):
        relay = xb.Relay(rate)
        relay.start()
        got = bytearray()

        def reader():
            while True:
                b = relay.restore_end.recv(1 << 16)
                if not b:
                    break
                got.extend(b)

        t = threading.Thread(target=reader)
        t.start()
        t0 = time.monotonic()
        relay.save_end.sendall(bytes(range(256)) * (size // 256))
        relay.save_end.shutdown(socket.SHUT_WR)
        t.join(30)
        elapsed = time.monotonic() - t0
        relay.join(30)
        relay.close_child_ends()
        return relay, bytes(got), elapsed

    def test_relay_moves_every_byte_at_the_rate_limit(self):
        size = 2 * xb.MiB
        relay, got, elapsed = self._relay(8 * xb.MiB, size)
        self.assertIsNone(relay.error)
        self.assertEqual(relay.bytes, size)
        self.assertEqual(got, bytes(range(256)) * (size // 256))
        # 2 MiB at 8 MiB/s: 0.25 s, less at most the 20 ms of credit.
        self.assertGreaterEqual(elapsed, 0.225)
        self.assertLess(elapsed, 5)
        self.assertGreater(relay.last_ns, relay.first_ns)

    def test_relay_without_a_rate_is_not_limited(self):
        relay, got, elapsed = self._relay(None, 4 * xb.MiB)
        self.assertEqual((relay.bytes, len(got)), (4 * xb.MiB, 4 * xb.MiB))
        self.assertIsNone(relay.shaper)


class Throttle(unittest.TestCase):
    T0 = 1_700_000_000_000_000_000

    def ev(self, dt_s, cap, weight=256):
        return {"time_ns": self.T0 + int(dt_s * 1e9), "scheduler": "credit2",
                "weight": weight, "cap": cap}

    def test_never_capped_is_full_share_and_no_throttle(self):
        d = xb.DEFAULT_SCHED
        t = xb.throttle_summary([self.ev(-50, 0)], d, d, 1, self.T0, self.T0 + 10**10)
        self.assertEqual((t["lowest_cap"], t["lowest_share"], t["throttled_s"]), (0, 1.0, 0.0))
        self.assertIsNone(t["throttle_start_unix_ns"])
        self.assertTrue(t["sched_restored"])
        self.assertEqual(t["sched_changes"], 0)  # the change before the save is not its own

    def test_caps_lowered_then_restored(self):
        d = xb.DEFAULT_SCHED
        hist = [self.ev(-30, 10), self.ev(-29, 0),  # an earlier save
                self.ev(20, 50), self.ev(25, 30), self.ev(28, 10), self.ev(30, 0)]
        t = xb.throttle_summary(hist, d, d, 1, self.T0, self.T0 + 31 * 10**9)
        self.assertEqual(t["lowest_cap"], 10)
        self.assertAlmostEqual(t["lowest_share"], 0.10)
        self.assertEqual(t["throttle_start_unix_ns"], self.T0 + 20 * 10**9)
        self.assertEqual(t["throttle_end_unix_ns"], self.T0 + 30 * 10**9)
        self.assertAlmostEqual(t["throttled_s"], 10.0)
        self.assertTrue(t["sched_restored"])
        self.assertEqual(t["sched_changes"], 4)
        self.assertEqual([round(x, 3) for x, _ in t["share_steps"]], [0.0, 20.0, 25.0, 28.0, 30.0])
        self.assertEqual([v for _, v in t["share_steps"]], [1.0, 0.5, 0.3, 0.1, 1.0])

    def test_share_is_per_vcpu_and_a_cap_left_behind_is_reported(self):
        d = xb.DEFAULT_SCHED
        hist = [self.ev(1, 100), self.ev(2, 20)]
        t = xb.throttle_summary(hist, d, {"weight": 256, "cap": 20}, 4, self.T0,
                                self.T0 + 5 * 10**9)
        self.assertEqual(t["lowest_cap"], 20)
        self.assertAlmostEqual(t["lowest_share"], 0.05)  # 20 / (100 × 4)
        self.assertIsNone(t["throttle_end_unix_ns"])
        self.assertAlmostEqual(t["throttled_s"], 4.0)  # until the save's end at least
        self.assertFalse(t["sched_restored"])

    def test_a_weight_change_is_a_throttle_too(self):
        d = xb.DEFAULT_SCHED
        hist = [self.ev(1, 0, weight=64), self.ev(3, 0, weight=256)]
        t = xb.throttle_summary(hist, d, d, 1, self.T0, self.T0 + 5 * 10**9)
        self.assertAlmostEqual(t["throttled_s"], 2.0)
        self.assertEqual(t["lowest_share"], 1.0)


class Variants(unittest.TestCase):
    def test_env_of_each_variant(self):
        host = xb.SimHost.__new__(xb.SimHost)
        host.dir = Path("/nonexistent")
        host.build = xb.Build(Path("/t"))
        old = os.environ.get("XCMIG_AUTO_CONVERGE")
        os.environ["XCMIG_AUTO_CONVERGE"] = "1"  # must not leak into the others
        os.environ["XCMIG_AUTO_CONVERGE_FLOOR"] = "7"
        try:
            lx, x, ac = (host.env(v) for v in xb.HOT_VARIANTS)
        finally:
            if old is None:
                del os.environ["XCMIG_AUTO_CONVERGE"]
            else:
                os.environ["XCMIG_AUTO_CONVERGE"] = old
            del os.environ["XCMIG_AUTO_CONVERGE_FLOOR"]
        self.assertNotIn("LD_PRELOAD", lx)
        self.assertEqual(x["LD_PRELOAD"], "/t/release/libxcmig.so")
        self.assertEqual(ac["LD_PRELOAD"], "/t/release/libxcmig.so")
        self.assertNotIn("XCMIG_AUTO_CONVERGE", lx)
        self.assertNotIn("XCMIG_AUTO_CONVERGE", x)
        self.assertEqual(ac["XCMIG_AUTO_CONVERGE"], "1")
        self.assertEqual(ac["XCMIG_AUTO_CONVERGE_FLOOR"], "7")

    def test_live_hot_has_three_variants_and_a_link_slower_than_the_guest(self):
        for quick in (True, False):
            sc = [s for s in xb.scenarios(quick) if s.name == "live-hot"]
            self.assertEqual(len(sc), 1)
            sc = sc[0]
            self.assertEqual(sc.variants, xb.HOT_VARIANTS)
            self.assertEqual(sc.vcpus, 1)
            self.assertGreater(sc.dirty_rate * xb.MiB, sc.link_rate)
            self.assertEqual(sc.params()["link_bytes_s"], sc.link_rate)
            for other in xb.scenarios(quick):
                if other.name != "live-hot":
                    self.assertEqual(other.variants, xb.IMPLS)
                    self.assertEqual(other.link_rate, 0)

    def test_order_rotates_the_variants(self):
        b = xb.Bench.__new__(xb.Bench)
        b.args = types.SimpleNamespace(impl=list(xb.ALL_VARIANTS))
        sc = xb.live_hot(True)
        self.assertEqual([b.order(r, sc) for r in range(3)],
                         [["libxenguest", "xcmig", "xcmig+ac"],
                          ["xcmig", "xcmig+ac", "libxenguest"],
                          ["xcmig+ac", "libxenguest", "xcmig"]])
        self.assertEqual([b.order(r) for r in range(2)],
                         [["libxenguest", "xcmig"], ["xcmig", "libxenguest"]])


def hot_run(downtime, passes, throttled=0.0, share=1.0, restored=True, changes=0,
            within=True):
    totals = [524288] + [100000] * (passes - 1)
    return {"wall_s": 60.0, "save_cpu_s": 1.0, "restore_cpu_s": 1.0, "cpu_s": 2.0,
            "wire_bytes": 3 * xb.GiB, "precopy_passes": passes, "precopy_totals": totals,
            "suspended_pages": 1000, "downtime_ms": downtime, "rounds": passes + 1,
            "dirty_per_round": totals + [1000], "workload_mib_s": 100.0, "link_mib_s": 63.0,
            "lowest_share": share, "lowest_cap": int(share * 100) % 100,
            "throttled_s": throttled, "sched_restored": restored, "sched_changes": changes,
            "throttle_within_migration": within,
            "share_steps": [[0.0, 1.0]] + ([[40.0, 0.5], [45.0, share], [58.0, 1.0]]
                                           if throttled else [])}


def hot_doc(ac_downtime=120.0, lx_downtime=6500.0, **ac):
    runs = {"libxenguest": hot_run(lx_downtime, 5), "xcmig": hot_run(6400.0, 7),
            "xcmig+ac": hot_run(ac_downtime, 9, throttled=18.0, share=0.05, changes=5, **ac)}
    return {
        "git": {"commit": "abcdef0123456789", "subject": "s", "uncommitted": []},
        "libxcmig_sha256": "00", "date": "d",
        "machine": {"cpus": 2, "cpu_model": "m", "memory_bytes": xb.GiB, "kernel": "k",
                    "loadavg_start": "0", "loadavg_end": "0"},
        "config": {"runs": 1, "quick": False, "host_base": "/dev/shm",
                   "target_downtime_ms": 300},
        "scenarios": [
            {"name": "live-hot", "kind": "live-hot", "title": "t", "guest_pages": 524288,
             "params": {"dirty_rate_mib_s": 128, "working_set_bytes": 512 * xb.MiB,
                        "link_bytes_s": 64 * xb.MiB},
             "results": {v: xb.summarise([m]) for v, m in runs.items()}},
        ],
    }


class HotRender(unittest.TestCase):
    def test_table_rounds_and_evidence_met(self):
        md = xb.render_hot_markdown(hot_doc())
        self.assertIn("| live-hot (128 MiB/s, 512 MiB, link 64 MiB/s) | xcmig+ac | 120 |", md)
        self.assertIn("| libxenguest | 6500 |", md)
        self.assertIn("- xcmig+ac: 524,288, 100,000", md)
        self.assertIn("xcmig+ac downtime 120 ms ≤ the 300 ms target: met", md)
        self.assertIn("libxenguest downtime 6500 ms ≥ 10 × the target (3000 ms); 54× "
                      "xcmig+ac's: met", md)
        self.assertIn("| 5% | 18.00 | 1/1 |", md)
        self.assertIn("Overall: met.", md)

    def test_evidence_missed_when_downtime_or_throttle_is_off(self):
        for kw in ({"ac_downtime": 900.0}, {"lx_downtime": 2000.0},
                   {"restored": False}, {"within": False}):
            md = xb.render_hot_markdown(hot_doc(**kw))
            self.assertIn("Overall: **not met**", md, kw)

    def test_outputs_of_a_live_hot_run_alone_leave_results_md_alone(self):
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "results.md").write_text("old")
            written = xb.write_outputs(hot_doc(), Path(d), True)
            self.assertEqual(sorted(written), ["live-hot.json", "live-hot.md", "live-hot.png"])
            self.assertEqual((Path(d) / "results.md").read_text(), "old")
            self.assertEqual((Path(d) / "live-hot.png").read_bytes()[:4], b"\x89PNG")
            # render re-renders live-hot.* from live-hot.json.
            (Path(d) / "live-hot.md").unlink()
            self.assertEqual(xb.main(["render", d]), 0)
            self.assertIn("Overall: met.", (Path(d) / "live-hot.md").read_text())
            # Given one file, only that one, with the notes.
            (Path(d) / "notes.md").write_text("Hot notes.")
            (Path(d) / "results.json").write_text(json.dumps({**hot_doc(), "scenarios": []}))
            self.assertEqual(xb.main(["render", str(Path(d) / "live-hot.json"),
                                      "--notes", str(Path(d) / "notes.md")]), 0)
            self.assertIn("## Notes\n\nHot notes.", (Path(d) / "live-hot.md").read_text())
            self.assertEqual((Path(d) / "results.md").read_text(), "old")
            self.assertIn("Hot notes.", (Path(d) / "live-hot.json").read_text())

    def test_a_full_run_puts_live_hot_in_results_md_too_but_not_in_issue5(self):
        doc = hot_doc()
        lv = hot_run(250.0, 4)
        doc["scenarios"].insert(0, {
            "name": "live-busy", "kind": "live", "title": "t", "guest_pages": 1,
            "params": {"dirty_rate_mib_s": 256, "working_set_bytes": xb.GiB},
            "results": {"libxenguest": xb.summarise([lv]), "xcmig": xb.summarise([lv])}})
        with tempfile.TemporaryDirectory() as d:
            written = xb.write_outputs(doc, Path(d), False)
            self.assertEqual(sorted(written), ["live-hot.json", "live-hot.md",
                                               "results.json", "results.md"])
            md = (Path(d) / "results.md").read_text()
            hot = json.loads((Path(d) / "live-hot.json").read_text())
        self.assertIn("(live-hot)", md)
        self.assertIn("| live-busy (256 MiB/s, 1024 MiB) | xcmig |", md)
        self.assertNotIn("| live-hot (128 MiB/s, 512 MiB) | xcmig |", md)
        self.assertNotIn("- live-hot downtime ≤ ½", md)
        self.assertEqual([s["name"] for s in hot["scenarios"]], ["live-hot"])


class Robustness(unittest.TestCase):
    def test_missing_build_outputs_are_named_in_the_error(self):
        old = os.environ.get("CARGO_TARGET_DIR")
        with tempfile.TemporaryDirectory() as d:
            os.environ["CARGO_TARGET_DIR"] = d
            try:
                with self.assertRaises(xb.BenchError) as e:
                    xb.Build.locate()
            finally:
                if old is None:
                    del os.environ["CARGO_TARGET_DIR"]
                else:
                    os.environ["CARGO_TARGET_DIR"] = old
        self.assertIn("make build", str(e.exception))
        self.assertIn("xg-save", str(e.exception))

    def test_a_child_past_its_timeout_is_killed_and_reported(self):
        c = xb.Child("sleeper", ["sh", "-c", "echo started >&2; sleep 30"], dict(os.environ))
        with self.assertRaises(xb.BenchError) as e:
            c.wait(0.5)
        self.assertIn("did not finish within", str(e.exception))
        self.assertFalse(c.running())

    def test_child_reports_exit_status_cpu_and_stderr_lines(self):
        r = xb.Child("t", ["sh", "-c", "echo out; echo err >&2; exit 3"],
                     dict(os.environ)).wait(30)
        self.assertEqual((r.returncode, r.stdout, r.stderr_text()), (3, "out\n", "err"))
        self.assertGreater(r.wall, 0)
        with self.assertRaises(xb.BenchError):
            r.check()


class QuickRun(unittest.TestCase):
    """The whole benchmark in --quick mode with one run per scenario."""

    def test_quick_run_writes_sane_results_for_both_implementations(self):
        with tempfile.TemporaryDirectory() as out:
            p = subprocess.run(
                [sys.executable, str(Path(xb.__file__)), "--quick", "--runs", "1",
                 "--out", out, "--timeout", "300"],
                capture_output=True, text=True, timeout=900)
            self.assertEqual(p.returncode, 0, p.stderr[-4000:])
            for name in ("results.md", "results.json", "plot.png"):
                self.assertGreater((Path(out) / name).stat().st_size, 0, name)
            self.assertEqual((Path(out) / "plot.png").read_bytes()[:4], b"\x89PNG")
            doc = json.loads((Path(out) / "results.json").read_text())
            kinds = {s["kind"] for s in doc["scenarios"]}
            self.assertEqual(kinds, {"nonlive", "live", "live-hot"})
            for name in ("live-hot.md", "live-hot.json", "live-hot.png"):
                self.assertGreater((Path(out) / name).stat().st_size, 0, name)
            for s in doc["scenarios"]:
                want = xb.HOT_VARIANTS if s["kind"] == "live-hot" else xb.IMPLS
                self.assertEqual(set(s["results"]), set(want), s["name"])
                for impl, r in s["results"].items():
                    m = r["median"]
                    ctx = f"{s['name']} {impl}: {m}"
                    self.assertTrue(r["runs"][0].get("verified"), ctx)
                    if s["kind"] == "nonlive":
                        for k in ("save_wall_s", "save_gib_s", "restore_wall_s",
                                  "restore_gib_s", "stream_bytes", "data_pages"):
                            self.assertGreater(m[k], 0, ctx)
                        # A stream carries at least the guest's non-zero pages.
                        self.assertGreater(m["stream_bytes"], s["guest_bytes"] // 4, ctx)
                    else:
                        for k in ("wall_s", "cpu_s", "wire_bytes", "downtime_ms"):
                            self.assertGreater(m[k], 0, ctx)
                        self.assertGreaterEqual(m["precopy_passes"], 1, ctx)
                        self.assertGreater(m["wire_bytes"], s["guest_bytes"] // 4, ctx)
                    if s["kind"] == "live-hot":
                        run = r["runs"][0]
                        self.assertEqual(run["rounds"], len(run["dirty_per_round"]), ctx)
                        self.assertTrue(run["sched_restored"], ctx)
                        self.assertTrue(run["throttle_within_migration"], ctx)
                        # The link, not the machine, set the pace.
                        link = s["params"]["link_bytes_s"] / xb.MiB
                        self.assertLess(run["link_mib_s"], link * 1.05, ctx)
                        if impl != "xcmig+ac":
                            self.assertEqual(run["sched_changes"], 0, ctx)
                            self.assertEqual(run["lowest_share"], 1.0, ctx)
                if s["kind"] == "nonlive":
                    self.assertGreater(s["baseline"]["median"]["save_gib_s"], 0)
            md = (Path(out) / "results.md").read_text()
            self.assertIn("| xcmig |", md)
            self.assertIn("| libxenguest |", md)


class LinkScenarios(unittest.TestCase):
    """bench/link.py: its scenarios, its evidence lines and a --quick run
    over a real shaped link (root: network namespaces and tc)."""

    def test_scenarios_cover_both_links_and_every_variant(self):
        import link
        full = {s.name for s in link.scenarios(False)}
        for g in ("1g", "10g"):
            for k in ("nonlive", "live-moderate", "live-busy"):
                self.assertIn(f"link-{g}-{k}", full)
        self.assertEqual(link.VARIANTS, ("libxenguest", "xcmig", "xcmig+lz4",
                                         "xcmig+zstd", "xcmig+auto"))

    def test_evidence_checks_the_ratio_the_downtime_and_auto(self):
        import link
        def sc(rate, kind, totals, downtime=100):
            return {"rate_bits": rate, "kind": kind, "results": {
                v: {"median": {"total_s": t, "downtime_ms": downtime}}
                for v, t in totals.items()}}
        res = {"scenarios": {
            "link-1g-live-moderate": sc(10**9, "live", {
                "libxenguest": 10.0, "xcmig+lz4": 4.5, "xcmig+zstd": 3.9}),
            "link-10g-nonlive": sc(10**10, "nonlive", {"xcmig": 2.0, "xcmig+auto": 2.1}),
        }}
        ev = "\n".join(link.evidence(res))
        self.assertIn("xcmig+lz4: total 4.50 s = 0.45x", ev)
        self.assertIn("0.45x libxenguest's 10.00 s (target <= 0.40x), downtime 100 ms "
                      "(target <= 300): **missed**", ev)
        self.assertIn("xcmig+zstd: total 3.90 s = 0.39x", ev)
        self.assertIn("slower by 5.0 %: missed", ev)

    def test_quick_link_run_moves_every_variant_over_the_shaped_link(self):
        self.assertEqual(os.geteuid(), 0, "the link scenarios need root")
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run(
                [sys.executable, str(Path(xb.__file__).parent / "link.py"), "--quick",
                 "--scenario", "link-1g-live", "--out", out],
                capture_output=True, text=True, timeout=900)
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            doc = json.loads((Path(out) / "link.json").read_text())
            sc = doc["scenarios"]["link-1g-live-moderate"]
            lx = sc["results"]["libxenguest"]["median"]
            # The link, not the machine, limits it: 1 Gbit/s is 119 MiB/s.
            rate = lx["wire_bytes"] / lx["total_s"]
            self.assertLess(rate, 125e6 * 1.05, lx)
            for v, res in sc["results"].items():
                self.assertTrue(res["runs"][0].get("verified"), v)
            zstd = sc["results"]["xcmig+zstd"]["median"]
            self.assertLess(zstd["wire_bytes"], lx["wire_bytes"] / 2, zstd)
            self.assertEqual(set(doc["file"]), set(sc["results"]))
            for name in ("link.md", "link.png"):
                self.assertGreater((Path(out) / name).stat().st_size, 0, name)
            # No namespace is left behind.
            left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
            self.assertFalse([l for l in left.stdout.splitlines() if l.startswith("xcm")],
                             left.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
