#!/usr/bin/env python3
"""Tests of summarize.py: the verdicts it gives on paired medians, its bootstrap interval,
and its CPU figures from run.sh's columns (nanoseconds now, clock ticks in old output).

Run: python3 -m unittest bench/proxy/test_summarize.py   (CI runs it)
"""

import contextlib
import io
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import summarize  # noqa: E402

HEADER = (
    "layout\tround\ttarget\tconns\trequests\tduration_us\tp50_us\tp90_us\tp99_us"
    "\terr_status\terr_socket\tproxy_cpu_ns\tupstream_cpu_ns\n"
)


def row(layout, rnd, target, conns, p50=50.0, proxy_us=0.0, upstream_us=0.0, requests=1000):
    return (
        f"{layout}\t{rnd}\t{target}\t{conns}\t{requests}\t3000000\t{p50}\t0\t0\t0\t0"
        f"\t{int(proxy_us * 1000 * requests)}\t{int(upstream_us * 1000 * requests)}\n"
    )


def run_summary(results, paired):
    """summarize.py's output for the given results.tsv and paired.tsv rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "results.tsv").write_text(HEADER + "".join(results))
        (out / "paired.tsv").write_text(HEADER + "".join(paired))
        (out / "memory.tsv").write_text("layout\ttarget\tstate\trss_kb\tdetail\n")
        (out / "machine.txt").write_text("test\n")
        argv, sys.argv = sys.argv, ["summarize.py", str(out)]
        text = io.StringIO()
        try:
            with contextlib.redirect_stdout(text):
                summarize.main()
        finally:
            sys.argv = argv
        return text.getvalue()


def verdict(text, target):
    """The verdict cell of the line of the verdict table whose target cell starts with `target`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[1].startswith(target):
            return cells[4]
    raise AssertionError(f"no verdict for {target!r} in:\n{text}")


def latency_pairs(ratios):
    """Paired one-connection rows: direct 40 µs, nginx adds 40 µs, palisade 40 × ratio."""
    rows = []
    for n, ratio in enumerate(ratios, 1):
        rows += [
            row("pinned", f"l{n}", "direct", 1, p50=40.0),
            row("pinned", f"l{n}", "palisade", 1, p50=40.0 + 40.0 * ratio),
            row("pinned", f"l{n}", "nginx", 1, p50=80.0),
        ]
    return rows


class Verdicts(unittest.TestCase):
    def test_an_interval_wholly_under_the_target_is_met(self):
        text = run_summary([], latency_pairs([0.8, 0.85, 0.9, 0.82, 0.88, 0.86, 0.84, 0.87]))
        self.assertEqual(verdict(text, "added p50 (c1): palisade ÷ nginx (paired"), "met")

    def test_an_interval_wholly_over_the_target_is_missed(self):
        text = run_summary([], latency_pairs([1.2, 1.25, 1.3, 1.22, 1.28, 1.26, 1.24, 1.27]))
        self.assertEqual(verdict(text, "added p50 (c1): palisade ÷ nginx (paired"), "**missed**")

    def test_an_interval_spanning_the_target_is_not_settled(self):
        text = run_summary([], latency_pairs([0.7, 1.3, 0.8, 1.2, 0.9, 1.1, 0.95, 1.05]))
        self.assertTrue(
            verdict(text, "added p50 (c1): palisade ÷ nginx (paired").startswith("not settled"),
            text,
        )

    def test_refusal_pairs_give_the_cpu_ratio_and_nginx_floor(self):
        rows = []
        for n in range(1, 9):
            q = f"q64-{n}"
            rows += [
                row("pinned", q, "palisade", 64, proxy_us=14.0),
                row("pinned", q, "open-fallback", 64, proxy_us=6.0 + n * 0.01),
                row("pinned", q, "open-503", 64, proxy_us=8.0 + n * 0.01),
                row("pinned", q, "direct", 64, upstream_us=7.0),
                row("pinned", q, "nginx", 64, proxy_us=14.0),
            ]
        text = run_summary([], rows)
        # 8.04 / 14 ≈ 0.57 in every pair: over ½ however the pairs are resampled.
        self.assertEqual(
            verdict(text, "rejected (open-503) ÷ proxied: palisade CPU per request (c64) (paired"),
            "**missed**",
        )
        self.assertEqual(
            verdict(text, "rejected (open-fallback) ÷ proxied: palisade CPU per request (c64) (paired"),
            "met",
        )
        self.assertIn("| for reference, nginx: answer from memory ÷ proxied (c64) | 0.50 |", text)


class Figures(unittest.TestCase):
    def test_the_interval_contains_the_median_and_is_repeatable(self):
        xs = [0.9, 1.1, 0.95, 1.05, 1.0, 0.97, 1.02, 0.99, 1.01]
        lo, hi = summarize.median_interval(xs)
        self.assertLessEqual(lo, summarize.med(xs))
        self.assertGreaterEqual(hi, summarize.med(xs))
        self.assertEqual((lo, hi), summarize.median_interval(xs))

    def test_cpu_comes_from_nanoseconds_or_from_old_clock_ticks(self):
        new = {"requests": "1000", "proxy_cpu_ns": "15000000"}
        old = {"requests": "1000", "proxy_ticks": "2"}
        self.assertAlmostEqual(summarize.cpu_us(new, "proxy", 1e4), 15.0)
        self.assertAlmostEqual(summarize.cpu_us(old, "proxy", 1e4), 20.0)


if __name__ == "__main__":
    unittest.main()
