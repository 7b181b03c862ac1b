"""``taskstream bench --peers``: the BullMQ and Celery rows run here, on a Redis the harness
starts, with the same no-op work as our rows, and our rows come out as multiples of theirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.common import BenchResult
from bench.peer_rows import format_peers, peers_dir, ratios, run_peers

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("node") is None,
    reason="needs Debian's redis-server and node (.ci/run installs redis-server)",
)


def test_peers_run_the_same_work_and_report_rates_and_latency(tmp_path: Path) -> None:
    rows = {r.name: r for r in run_peers(300, 1.0, tmp_path)}

    assert set(rows) == {"bullmq", "bullmq-priority", "celery"}
    for name, row in rows.items():
        assert row.status == "ok", (name, row.detail)
        assert row.events == 300
        assert (row.events_per_s or 0) > 0
    for name in ("bullmq", "celery"):
        x = rows[name].extra
        assert x["latency_samples"] == max(1, round(x["latency_rate"] * 1.0))
        assert 0 < x["latency_p50_ms"] <= x["latency_p99_ms"]
    assert rows["bullmq"].extra["version"] == "5.81.5"  # the lock file's version


def test_our_rows_are_printed_as_multiples_of_each_peer() -> None:
    peers = [
        BenchResult("bullmq", "ok", events=1000, seconds=0.1),
        BenchResult("celery", "ok", events=1000, seconds=2.0),
    ]
    ours = [("kafka", [BenchResult("stack", "ok", events=1000, seconds=0.5)])]

    assert ratios(ours, peers) == {"kafka:stack/bullmq": 0.2, "kafka:stack/celery": 4.0}
    text = format_peers(peers, ours)
    assert "kafka: whole stack / bullmq: 0.20x" in text
    assert "kafka: whole stack / celery: 4.00x" in text


def test_peers_are_found_from_the_source_checkout() -> None:
    assert (peers_dir() / "package-lock.json").is_file()
    assert (peers_dir() / "celery_peer.py").is_file()
