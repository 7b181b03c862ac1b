"""Each benchmark runs end to end with a tiny N and processes every record (no timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.bench.faust_pipeline import INSTALL_HINT, faust_installed
from streams.bench.main import BenchOptions, run_suite

pytestmark = pytest.mark.integration

N = 2_000


async def test_ceiling_and_runtime_process_every_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    options = BenchOptions(events=N, only=("ceiling", "runtime"))
    report = await run_suite(kafka_bootstrap, options, tmp_path)
    assert [r.name for r in report.results] == ["ceiling", "ceiling-batch", "runtime"]
    assert all(r.status == "ok" for r in report.results), [r.detail for r in report.results]
    for name in ("ceiling", "ceiling-batch"):
        ceiling = report.get(name)
        assert ceiling is not None
        assert ceiling.events == N and ceiling.extra["produced"] == N
    runtime = report.get("runtime")
    assert runtime is not None and runtime.events == N
    assert runtime.extra["events_written"] == N
    assert runtime.extra["outputs_written"] == N
    assert runtime.extra["commands_committed"] == N
    assert len(runtime.extra["rounds"]) == 1
    assert runtime.events_per_s is not None and runtime.events_per_s > 0
    assert set(report.ratios()) == {
        "runtime_vs_faust",
        "runtime_vs_ceiling",
        "runtime_vs_ceiling_batch",
    }
    assert report.ratios()["runtime_vs_faust"] is None  # faust not run


@pytest.mark.skipif(not faust_installed(), reason=f"faust-streaming not installed: {INSTALL_HINT}")
async def test_faust_pipeline_processes_every_record(kafka_bootstrap: str, tmp_path: Path) -> None:
    report = await run_suite(
        kafka_bootstrap, BenchOptions(faust_events=N, only=("faust",)), tmp_path
    )
    (faust,) = report.results
    assert faust.status == "ok", faust.detail
    assert faust.events == N and faust.seconds > 0


async def test_lifecycle_completes_every_task(kafka_bootstrap: str, tmp_path: Path) -> None:
    options = BenchOptions(only=("lifecycle",), lifecycle_tasks=300, lifecycle_seconds=1.0)
    report = await run_suite(kafka_bootstrap, options, tmp_path)
    (lifecycle,) = report.results
    assert lifecycle.status == "ok", lifecycle.detail
    extra = lifecycle.extra
    total = 300 + extra["latency_tasks"]
    assert extra["latency_tasks"] > 0
    assert extra["completed"] == total
    assert extra["answered"] == total
    assert extra["latency_samples"] == extra["latency_tasks"]
    assert extra["latency_p50_ms"] is not None and extra["latency_p50_ms"] >= 0
    assert extra["latency_p99_ms"] >= extra["latency_p50_ms"]
