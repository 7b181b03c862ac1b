"""Each benchmark runs end to end with a tiny N and processes every record (no timings)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.faust_pipeline import INSTALL_HINT, faust_installed
from bench.main import BenchOptions, register, run_bench, run_suite

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


async def test_stack_completes_every_task(kafka_bootstrap: str, tmp_path: Path) -> None:
    options = BenchOptions(only=("stack",), stack_tasks=200, stack_seconds=1.0)
    report = await run_suite(kafka_bootstrap, options, tmp_path)
    (stack,) = report.results
    assert stack.status == "ok", stack.detail
    extra = stack.extra
    assert stack.events == extra["tasks"] == 200
    assert extra["latency_tasks"] > 0
    assert extra["latency_samples"] == extra["latency_tasks"]
    assert extra["latency_p99_ms"] >= extra["latency_p50_ms"] >= 0
    assert set(extra["cpu_s_per_1000_tasks"]) >= {"processor", "delay", "view", "worker"}


def test_each_broker_named_is_started_and_measured(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="taskstream")
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "bench.json"
    args = parser.parse_args(
        ["bench", "--broker", "embedded", "--broker", "kafka", "--only", "ceiling"]
        + ["--events", "300", "--repeat", "1", "--json", str(out)]
    )
    assert run_bench(args) == 0
    runs = json.loads(out.read_text())["runs"]
    # The probe answers from the broker itself: Tansu refuses InitProducerId, Kafka grants it.
    assert [(r["broker"], r["profile"]) for r in runs] == [
        ("embedded", "embedded"),
        ("kafka", "kafka"),
    ]
    for run in runs:
        assert {r["name"] for r in run["results"]} == {"ceiling", "ceiling-batch"}
        assert all(r["status"] == "ok" and r["events"] == 300 for r in run["results"])
        assert all(len(r["extra"]["load_before"]) == 3 for r in run["results"])
