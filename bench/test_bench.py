#!/usr/bin/env python3
"""Tests of the benchmark runner: its parsers and renderers, and a --quick
run of the whole benchmark (one run per scenario) whose output files are
checked for sanity. Run with `make bench-smoke` or `python3 bench/test_bench.py`
after `make build`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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
            self.assertEqual(kinds, {"nonlive", "live"})
            for s in doc["scenarios"]:
                self.assertEqual(set(s["results"]), set(xb.IMPLS), s["name"])
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
                if s["kind"] == "nonlive":
                    self.assertGreater(s["baseline"]["median"]["save_gib_s"], 0)
            md = (Path(out) / "results.md").read_text()
            self.assertIn("| xcmig |", md)
            self.assertIn("| libxenguest |", md)


if __name__ == "__main__":
    unittest.main(verbosity=2)
