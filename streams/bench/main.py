"""``taskstream bench``: every figure next to its baseline, in one run, on one broker.

Rows: the raw aiokafka ceiling (a producer ``send`` per record, and the client's batch API),
the trivial pipeline on our runtime, the same pipeline as a faust-streaming agent, and the
full task lifecycle through the distributor. The input of the pipelines is one pre-filled
topic of Avro commands, so each reads the same bytes; filling is never timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.bench.common import BenchResult, create_topics, fill, heartbeat_records
from streams.settings import Settings

__all__ = ["BENCHMARKS", "BenchOptions", "Report", "register", "run_bench", "run_suite"]

BENCHMARKS = ("ceiling", "runtime", "faust", "lifecycle", "replay")

# The performance targets for the runtime pipeline.
TARGET_VS_FAUST = 20.0
TARGET_VS_CEILING = 0.5


@dataclass(frozen=True)
class BenchOptions:
    events: int = 100_000
    faust_events: int = 20_000
    only: tuple[str, ...] = BENCHMARKS
    partitions: int = 4
    lifecycle_tasks: int = 10_000
    lifecycle_seconds: float = 5.0
    repeat: int = 1
    replay_tasks: int = 20_000


@dataclass
class Report:
    bootstrap: str
    results: list[BenchResult] = field(default_factory=list)

    def get(self, name: str) -> BenchResult | None:
        return next((r for r in self.results if r.name == name), None)

    def rate(self, name: str) -> float | None:
        result = self.get(name)
        return result.events_per_s if result is not None else None

    def ratios(self) -> dict[str, float | None]:
        runtime = self.rate("runtime")

        def ratio(base: str) -> float | None:
            other = self.rate(base)
            return runtime / other if runtime and other else None

        return {
            "runtime_vs_faust": ratio("faust"),
            "runtime_vs_ceiling": ratio("ceiling"),
            "runtime_vs_ceiling_batch": ratio("ceiling-batch"),
        }

    def as_dict(self, command: Sequence[str]) -> dict[str, Any]:
        return {
            "command": list(command),
            "bootstrap": self.bootstrap,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "results": [r.as_dict() for r in self.results],
            "ratios": self.ratios(),
            "targets": {
                "runtime_vs_faust": TARGET_VS_FAUST,
                "runtime_vs_ceiling": TARGET_VS_CEILING,
            },
        }


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to a ``taskstream`` sub-parser set."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure the runtime against the raw Kafka ceiling and faust-streaming",
        description=__doc__,
    )
    parser.add_argument(
        "--events", type=int, default=100_000, help="records for the ceiling and our runtime"
    )
    parser.add_argument(
        "--faust-events", type=int, default=20_000, help="records for the faust agent (slow)"
    )
    parser.add_argument(
        "--only",
        choices=BENCHMARKS,
        action="append",
        help="run only this benchmark (repeatable; default: all)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="Kafka cluster to use (default: KAFKA_BOOTSTRAP_SERVERS, else the embedded broker)",
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of the ceiling and runtime benchmarks; the best round is reported",
    )
    parser.add_argument(
        "--lifecycle-tasks", type=int, default=10_000, help="tasks for the max-rate lifecycle phase"
    )
    parser.add_argument(
        "--lifecycle-seconds",
        type=float,
        default=5.0,
        help="duration of the half-rate latency phase",
    )
    parser.add_argument(
        "--replay-tasks",
        type=int,
        default=20_000,
        help="tasks whose lifecycle events fill the log the replay benchmark rebuilds from",
    )
    parser.set_defaults(handler=run_bench)
    return parser


def run_bench(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run the suite; print the table; write JSON if asked. 1 if a benchmark failed."""
    options = BenchOptions(
        events=args.events,
        faust_events=args.faust_events,
        only=tuple(dict.fromkeys(args.only)) if args.only else BENCHMARKS,
        partitions=args.partitions,
        lifecycle_tasks=args.lifecycle_tasks,
        lifecycle_seconds=args.lifecycle_seconds,
        repeat=args.repeat,
        replay_tasks=args.replay_tasks,
    )
    servers = args.bootstrap or (settings.kafka_bootstrap_servers if settings else None)
    with tempfile.TemporaryDirectory(prefix="taskstream-bench-") as tmp:
        work_dir = Path(tmp)
        if servers:
            report = asyncio.run(run_suite(servers, options, work_dir))
        else:
            from streams.kafka.embedded import EmbeddedBroker

            print("starting the embedded broker ...", file=sys.stderr)
            with EmbeddedBroker(log_path=work_dir / "broker.log") as broker:
                report = asyncio.run(run_suite(broker.bootstrap_servers, options, work_dir))
    print(format_report(report))
    if args.json is not None:
        command = ["taskstream", *sys.argv[1:]] if sys.argv else ["taskstream", "bench"]
        args.json.write_text(json.dumps(report.as_dict(command), indent=2) + "\n")
        print(f"results written to {args.json}")
    return 1 if any(r.status == "failed" for r in report.results) else 0


async def run_suite(bootstrap: str, options: BenchOptions, work_dir: Path) -> Report:
    """Run the selected benchmarks against ``bootstrap``; the ceiling and runtime rows keep
    the best of ``options.repeat`` rounds (each on freshly filled topics)."""
    report = Report(bootstrap)
    run_id = uuid.uuid4().hex[:8]
    rounds: dict[str, list[BenchResult]] = {}
    fast = [b for b in ("ceiling", "runtime") if b in options.only]
    first_input: tuple[str, int] | None = None
    for round_no in range(max(1, options.repeat) if fast else 0):
        prefix = f"bench-{run_id}-{round_no}"
        source = await _prepare_input(bootstrap, prefix, options.events, options.partitions)
        first_input = first_input or (source, options.events)
        for result in await _run_round(bootstrap, prefix, source, options, work_dir, fast):
            rounds.setdefault(result.name, []).append(result)
    for results in rounds.values():
        report.results.append(_best(results))
    if "faust" in options.only:
        from streams.bench.faust_pipeline import run_faust

        prefix = f"bench-{run_id}-faust"
        if first_input is None or first_input[1] < options.faust_events:
            source = await _prepare_input(
                bootstrap, prefix, options.faust_events, options.partitions
            )
        else:
            source = first_input[0]
        await create_topics(bootstrap, [f"{prefix}.sink"], options.partitions)
        _say(f"faust: processing {options.faust_events} commands ...")
        report.results.append(
            await _guard(
                "faust",
                run_faust(
                    bootstrap,
                    source,
                    f"{prefix}.sink",
                    options.faust_events,
                    work_dir / "faust",
                ),
            )
        )
    if "lifecycle" in options.only:
        from streams.bench.lifecycle import run_lifecycle

        _say(f"lifecycle: {options.lifecycle_tasks} tasks at max rate, then half rate ...")
        report.results.append(
            await _guard(
                "lifecycle",
                run_lifecycle(
                    bootstrap,
                    f"bench-{run_id}-lc",
                    work_dir / "lifecycle",
                    tasks=options.lifecycle_tasks,
                    latency_seconds=options.lifecycle_seconds,
                    partitions=options.partitions,
                ),
            )
        )
    if "replay" in options.only:
        from streams.bench.replay import run_replay

        report.results.append(
            await _guard(
                "replay",
                run_replay(
                    bootstrap,
                    f"bench-{run_id}-replay",
                    work_dir / "replay",
                    tasks=options.replay_tasks,
                    partitions=options.partitions,
                ),
            )
        )
    return report


async def _prepare_input(bootstrap: str, prefix: str, count: int, partitions: int) -> str:
    """Create ``prefix``'s topics and fill ``<prefix>.commands`` with ``count`` commands."""
    source = f"{prefix}.commands"
    names = [source, f"{prefix}.events", f"{prefix}.completed", f"{prefix}.dlq"]
    names += [f"{prefix}.sink-send", f"{prefix}.sink-batch"]
    await create_topics(bootstrap, names, partitions)
    _say(f"pre-filling {source} with {count} Avro commands ...")
    await fill(bootstrap, source, heartbeat_records(count))
    return source


async def _run_round(
    bootstrap: str,
    prefix: str,
    source: str,
    options: BenchOptions,
    work_dir: Path,
    which: Sequence[str],
) -> list[BenchResult]:
    results: list[BenchResult] = []
    count = options.events
    if "ceiling" in which:
        from streams.bench.ceiling import Mode, run_ceiling

        modes: tuple[tuple[Mode, str], ...] = (("send", "ceiling"), ("batch", "ceiling-batch"))
        for mode, name in modes:
            _say(f"{name}: moving {count} records ...")
            sink = f"{prefix}.sink-{mode}"
            results.append(
                await _guard(
                    name, run_ceiling(bootstrap, source, sink, count, options.partitions, mode)
                )
            )
    if "runtime" in which:
        from streams.bench.pipeline import run_runtime

        _say(f"runtime: processing {count} commands ...")
        data_dir = work_dir / prefix / "runtime"
        results.append(
            await _guard(
                "runtime", run_runtime(bootstrap, prefix, count, data_dir, options.partitions)
            )
        )
    return results


def _best(results: list[BenchResult]) -> BenchResult:
    """The fastest successful round (the first failure if none succeeded), with every
    round's rate in ``extra["rounds"]``."""
    ok = [r for r in results if r.status == "ok"]
    best = max(ok, key=lambda r: r.events_per_s or 0.0) if ok else results[0]
    best.extra["rounds"] = [r.events_per_s for r in results]
    return best


async def _guard(name: str, work: Any) -> BenchResult:
    """A benchmark that raises becomes a failed row; the others still run."""
    try:
        result: BenchResult = await work
        return result
    except Exception as exc:
        return BenchResult(name, "failed", detail=f"{type(exc).__name__}: {exc}")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def format_report(report: Report) -> str:
    lines = [f"{'benchmark':<15}{'events':>10}{'seconds':>10}{'events/s':>12}  notes"]
    for r in report.results:
        rate = r.events_per_s
        if r.status != "ok":
            lines.append(f"{r.name:<15}{'-':>10}{'-':>10}{'-':>12}  {r.status}: {r.detail}")
            continue
        lines.append(f"{r.name:<15}{r.events:>10}{r.seconds:>10.2f}{rate or 0:>12,.0f}  {r.detail}")
        if r.name == "lifecycle":
            x = r.extra
            lines.append(
                f"{'':<15}submit->assigned at {x.get('latency_rate', 0):,.0f} tasks/s: "
                f"p50 {x.get('latency_p50_ms')} ms, p99 {x.get('latency_p99_ms')} ms "
                f"({x.get('latency_samples')} tasks)"
            )
            lines.append(
                f"{'':<15}projection lag under this load (events): p50 "
                f"{x.get('projection_lag_p50_events')}-{x.get('projection_lag_upper_p50_events')}, p99 "
                f"{x.get('projection_lag_p99_events')}-{x.get('projection_lag_upper_p99_events')}, "
                f"max {x.get('projection_lag_max_events')}-"
                f"{x.get('projection_lag_upper_max_events')} "
                f"({x.get('projection_lag_samples')} samples every 100 ms; log end read by a "
                "consumer of its own just before / just after each view answer)"
            )
        if r.name == "replay":
            lines.append(
                f"{'':<15}peak RSS {r.extra.get('peak_rss_mb', 0):,.0f} MB "
                f"({r.extra.get('tasks', 0):,} tasks)"
            )
            sampled = r.extra.get("peak_rss_sampled")
            if sampled:
                lines.append(
                    f"{'':<15}highest 50 ms sample {sampled['rss_mb']:,.0f} MB, "
                    f"{sampled['phase']} at {sampled['events']:,} events"
                )
    ratios = report.ratios()
    if ratios["runtime_vs_faust"] is not None:
        verdict = "met" if ratios["runtime_vs_faust"] >= TARGET_VS_FAUST else "MISSED"
        lines.append(
            f"runtime / faust:         {ratios['runtime_vs_faust']:.1f}x"
            f"  (target >= {TARGET_VS_FAUST:.0f}x: {verdict})"
        )
    if ratios["runtime_vs_ceiling"] is not None:
        verdict = "met" if ratios["runtime_vs_ceiling"] >= TARGET_VS_CEILING else "MISSED"
        lines.append(
            f"runtime / ceiling:       {ratios['runtime_vs_ceiling']:.0%}"
            f"  (target >= {TARGET_VS_CEILING:.0%}: {verdict})"
        )
    if ratios["runtime_vs_ceiling_batch"] is not None:
        lines.append(f"runtime / ceiling-batch: {ratios['runtime_vs_ceiling_batch']:.0%}")
    return "\n".join(lines)
