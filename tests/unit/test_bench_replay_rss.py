"""The replay benchmark's peak RSS is the rebuild child's own, not its parent's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import BenchResult
from bench.replay import peak_rss_mb
from bench.report import Report, format_report

ROOT = Path(__file__).resolve().parents[2]
PARENT_MB = 400

CHILD = """
import json
from bench.common import BenchResult
from bench.report import Report, format_report
from bench.replay import peak_rss_mb
small = peak_rss_mb()
block = bytearray(64 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
print(json.dumps({"small": small, "after": peak_rss_mb()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_child_reports_its_own_peak_not_the_parents() -> None:
    # Before execve the child is a copy of this process: with ru_maxrss it would report
    # at least PARENT_MB (that is how the 1,000,000-task replay showed 868 MB).
    ballast = bytearray(PARENT_MB * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    assert peak_rss_mb() >= PARENT_MB
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, check=True
    )
    del ballast
    figures = json.loads(done.stdout)
    assert figures["small"] < PARENT_MB / 2
    # The high-water mark still follows the child's own allocations.
    assert figures["after"] >= figures["small"] + 60


def test_the_replay_row_shows_the_peak_and_where_it_was_sampled() -> None:
    report = Report("127.0.0.1:1")
    sampled = {"rss_mb": 221.4, "phase": "folding", "events": 3_699_001}
    report.results.append(
        BenchResult(
            "replay",
            "ok",
            events=6_210_421,
            seconds=400.0,
            extra={"tasks": 1_000_000, "peak_rss_mb": 221.4, "peak_rss_sampled": sampled},
        )
    )
    table = format_report(report)
    assert "peak RSS 221 MB (1,000,000 tasks)" in table
    assert "highest 50 ms sample 221 MB, folding at 3,699,001 events" in table
