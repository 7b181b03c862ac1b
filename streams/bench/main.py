"""``taskstream bench``: every figure next to its baseline, in one run, on each broker.

Rows: the raw aiokafka ceiling (a producer ``send`` per record, and the client's batch API),
the trivial pipeline on our runtime, the same pipeline as a faust-streaming agent, the full
task lifecycle through the distributor, a projection replay, and the whole stack as processes.
The input of the pipelines is one pre-filled topic of Avro commands, so each reads the same
bytes; filling is never timed.

``--broker kafka|embedded|both`` (repeatable) starts each named broker in turn and runs every
row on it, so one invocation gives both columns side by side; the default is both (Apache
Kafka first), since figures on the embedded broker alone say little about what users run and
the two columns are only comparable when measured minutes apart. ``--bootstrap`` (or
``KAFKA_BOOTSTRAP_SERVERS`` when no ``--broker`` is given) uses a running cluster instead.
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

from streams.bench.common import (
    BenchResult,
    busy_processes,
    create_topics,
    fill,
    heartbeat_records,
    load_average,
)
from streams.settings import Settings

__all__ = [
    "BENCHMARKS",
    "BROKER_CHOICES",
    "BenchOptions",
    "Report",
    "bench_brokers",
    "register",
    "run_bench",
    "run_suite",
]

BENCHMARKS = ("ceiling", "runtime", "faust", "lifecycle", "replay", "stack")
BROKER_CHOICES = ("kafka", "embedded", "both")
EXTERNAL = "external"

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
    stack_tasks: int = 20_000
    stack_seconds: float = 10.0


@dataclass
class Report:
    bootstrap: str
    results: list[BenchResult] = field(default_factory=list)
    broker: str = EXTERNAL
    """``kafka``, ``embedded`` (started by the harness) or ``external`` (``--bootstrap``)."""
    started_at: str = ""
    others: list[str] = field(default_factory=list)
    """Processes outside the benchmark that used CPU when the broker's run started."""
    profile: str = ""
    """What the broker answered the profile probe (``streams.kafka.profile``): ``kafka`` or
    ``embedded``, so the report shows which broker the figures came from."""

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
            "broker": self.broker,
            "profile": self.profile,
            "bootstrap": self.bootstrap,
            "other_processes": self.others,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "measured_at": self.started_at or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
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
        "--broker",
        action="append",
        choices=BROKER_CHOICES,
        help="broker the harness starts and runs every row on (repeatable; both = kafka, then "
        "embedded; default: both, unless --bootstrap or KAFKA_BOOTSTRAP_SERVERS names a cluster)",
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="a running Kafka cluster to use instead of starting brokers",
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
    parser.add_argument(
        "--stack-tasks", type=int, default=20_000, help="tasks for the whole stack's max rate"
    )
    parser.add_argument(
        "--stack-seconds",
        type=float,
        default=10.0,
        help="duration of the whole stack's half-rate latency phase",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run BullMQ and Celery on a Redis started here (the same no-op work) and "
        "print our rows as multiples of theirs",
    )
    parser.add_argument(
        "--peer-tasks", type=int, default=None, help="tasks per peer row (default: --stack-tasks)"
    )
    parser.set_defaults(handler=run_bench)
    return parser


def bench_brokers(chosen: Sequence[str] | None, servers: str | None) -> list[str]:
    """The brokers to run on, in order: ``--broker`` values (``both`` = kafka, embedded),
    else ``external`` when a cluster is named, else both."""
    if not chosen:
        return [EXTERNAL] if servers else ["kafka", "embedded"]
    kinds: list[str] = []
    for value in chosen:
        for kind in ("kafka", "embedded") if value == "both" else (value,):
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def run_bench(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run the suite on each broker; print the tables; write JSON if asked. 1 if a
    benchmark failed, 2 if the options contradict each other."""
    options = BenchOptions(
        events=args.events,
        faust_events=args.faust_events,
        only=tuple(dict.fromkeys(args.only)) if args.only else BENCHMARKS,
        partitions=args.partitions,
        lifecycle_tasks=args.lifecycle_tasks,
        lifecycle_seconds=args.lifecycle_seconds,
        repeat=args.repeat,
        replay_tasks=args.replay_tasks,
        stack_tasks=args.stack_tasks,
        stack_seconds=args.stack_seconds,
    )
    if args.broker and args.bootstrap:
        print(
            "give --broker (brokers the harness starts) or --bootstrap, not both", file=sys.stderr
        )
        return 2
    servers = args.bootstrap or (
        settings.kafka_bootstrap_servers if settings and not args.broker else None
    )
    from streams.bench import peer_rows

    reports: list[Report] = []
    peers: list[BenchResult] | None = None
    with tempfile.TemporaryDirectory(prefix="taskstream-bench-") as tmp:
        for kind in bench_brokers(args.broker, servers):
            work_dir = Path(tmp) / kind
            work_dir.mkdir()
            reports.append(_run_on(kind, servers, options, work_dir))
        if getattr(args, "peers", False):
            peer_tasks = args.peer_tasks or options.stack_tasks
            peers = peer_rows.run_peers(peer_tasks, options.stack_seconds, Path(tmp) / "peers")
    print(format_reports(reports))
    ours = [(r.broker, r.results) for r in reports]
    if peers is not None:
        print("\n" + peer_rows.format_peers(peers, ours))
    if args.json is not None:
        command = ["taskstream", *sys.argv[1:]] if sys.argv else ["taskstream", "bench"]
        doc: dict[str, Any] = {
            "command": command,
            "runs": [r.as_dict(command) for r in reports],
        }
        if peers is not None:
            doc["peers"] = peer_rows.as_dict(peers, ours)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results written to {args.json}")
    failed = any(r.status == "failed" for report in reports for r in report.results) or any(
        r.status == "failed" for r in peers or ()
    )
    return 1 if failed else 0


def _run_on(kind: str, servers: str | None, options: BenchOptions, work_dir: Path) -> Report:
    """Every selected row on one broker: ``servers`` for ``external``, else a broker of
    ``kind`` started here (and stopped after). A broker that does not start fails its rows."""
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    others = busy_processes()
    if kind == EXTERNAL:
        assert servers is not None
        report = asyncio.run(run_suite(servers, options, work_dir, broker=EXTERNAL))
    else:
        from streams.kafka.local import local_broker

        _say(f"starting the {kind} broker ...")
        broker = local_broker(kind, work_dir / "broker")
        try:
            broker.start()
        except Exception as exc:
            report = Report("", broker=kind)
            detail = f"the {kind} broker did not start: {type(exc).__name__}: {exc}"
            report.results = [BenchResult(name, "failed", detail=detail) for name in options.only]
        else:
            try:
                report = asyncio.run(
                    run_suite(
                        broker.bootstrap_servers,
                        options,
                        work_dir,
                        broker=kind,
                        broker_pid=broker.pid,
                    )
                )
            finally:
                broker.stop()
    report.started_at = started_at
    report.others = others
    return report


async def run_suite(
    bootstrap: str,
    options: BenchOptions,
    work_dir: Path,
    *,
    broker: str = EXTERNAL,
    broker_pid: int | None = None,
) -> Report:
    """Run the selected benchmarks against ``bootstrap`` (a broker of kind ``broker``, whose
    process is ``broker_pid`` when the harness started it); the ceiling and runtime rows keep
    the best of ``options.repeat`` rounds (each on freshly filled topics)."""
    from streams.kafka.profile import broker_profile

    report = Report(bootstrap, broker=broker)
    report.profile = broker_profile(Settings(kafka_bootstrap_servers=bootstrap)).name
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
                    partitions=options.partitions,
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
    if "stack" in options.only:
        from streams.bench.stack import run_stack

        _say(f"stack: {options.stack_tasks} tasks through the whole stack, then half rate ...")
        report.results.append(
            await _guard(
                "stack",
                run_stack(
                    bootstrap,
                    work_dir / "stack",
                    tasks=options.stack_tasks,
                    latency_seconds=options.stack_seconds,
                    broker=broker if broker != EXTERNAL else "kafka",
                    broker_pid=broker_pid,
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
    """A benchmark that raises becomes a failed row; the others still run. Every row carries
    the load average before and after it (``uptime``'s three figures)."""
    before = load_average()
    try:
        result: BenchResult = await work
    except Exception as exc:
        result = BenchResult(name, "failed", detail=f"{type(exc).__name__}: {exc}")
    result.extra["load_before"] = before
    result.extra["load_after"] = load_average()
    return result


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _load(r: BenchResult) -> str:
    before, after = r.extra.get("load_before"), r.extra.get("load_after")
    return f"{before[0]:.1f}-{after[0]:.1f}" if before and after else "-"


def format_report(report: Report) -> str:
    """One broker's rows; every row names the broker and the 1-minute load average before and
    after it."""
    b = report.broker
    lines = [
        f"{'broker':<10}{'benchmark':<15}{'events':>10}{'seconds':>10}{'events/s':>12}"
        f"{'load':>10}  notes"
    ]
    if report.started_at or report.others:
        lines.insert(
            0,
            f"{b} (answers as {report.profile or '?'}): started {report.started_at or '-'}; "
            "other processes using CPU: "
            f"{', '.join(report.others) or 'none'}",
        )
    pad = " " * 25
    for r in report.results:
        rate = r.events_per_s
        if r.status != "ok":
            lines.append(
                f"{b:<10}{r.name:<15}{'-':>10}{'-':>10}{'-':>12}{_load(r):>10}  "
                f"{r.status}: {r.detail}"
            )
            continue
        lines.append(
            f"{b:<10}{r.name:<15}{r.events:>10}{r.seconds:>10.2f}{rate or 0:>12,.0f}"
            f"{_load(r):>10}  {r.detail}"
        )
        x = r.extra
        if r.name == "lifecycle":
            lines.append(
                f"{pad}submit->assigned at {x.get('latency_rate', 0):,.0f} tasks/s: "
                f"p50 {x.get('latency_p50_ms')} ms, p99 {x.get('latency_p99_ms')} ms "
                f"({x.get('latency_samples')} tasks)"
            )
            lines.append(
                f"{pad}projection lag under this load (events): p50 "
                f"{x.get('projection_lag_p50_events')}-{x.get('projection_lag_upper_p50_events')}, p99 "
                f"{x.get('projection_lag_p99_events')}-{x.get('projection_lag_upper_p99_events')}, "
                f"max {x.get('projection_lag_max_events')}-"
                f"{x.get('projection_lag_upper_max_events')} "
                f"({x.get('projection_lag_samples')} samples every 100 ms; log end read by a "
                "consumer of its own just before / just after each view answer)"
            )
        if r.name == "replay":
            lines.append(
                f"{pad}peak RSS {x.get('peak_rss_mb', 0):,.0f} MB ({x.get('tasks', 0):,} tasks)"
            )
            sampled = x.get("peak_rss_sampled")
            if sampled:
                lines.append(
                    f"{pad}highest 50 ms sample {sampled['rss_mb']:,.0f} MB, "
                    f"{sampled['phase']} at {sampled['events']:,} events"
                )
        if r.name == "stack":
            lines.append(
                f"{pad}submit->completed at {x.get('latency_rate', 0):,.0f} tasks/s: "
                f"p50 {x.get('latency_p50_ms')} ms, p99 {x.get('latency_p99_ms')} ms "
                f"({x.get('latency_samples')} tasks)"
            )
            cpu = x.get("cpu_s_per_1000_tasks") or {}
            lines.append(
                f"{pad}CPU seconds per 1,000 tasks: "
                + ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
            )
    ratios = report.ratios()
    if ratios["runtime_vs_faust"] is not None:
        verdict = "met" if ratios["runtime_vs_faust"] >= TARGET_VS_FAUST else "MISSED"
        lines.append(
            f"{b}: runtime / faust:         {ratios['runtime_vs_faust']:.1f}x"
            f"  (target >= {TARGET_VS_FAUST:.0f}x: {verdict})"
        )
    if ratios["runtime_vs_ceiling"] is not None:
        verdict = "met" if ratios["runtime_vs_ceiling"] >= TARGET_VS_CEILING else "MISSED"
        lines.append(
            f"{b}: runtime / ceiling:       {ratios['runtime_vs_ceiling']:.0%}"
            f"  (target >= {TARGET_VS_CEILING:.0%}: {verdict})"
        )
    if ratios["runtime_vs_ceiling_batch"] is not None:
        lines.append(f"{b}: runtime / ceiling-batch: {ratios['runtime_vs_ceiling_batch']:.0%}")
    return "\n".join(lines)


def _figures(report: Report) -> dict[str, str]:
    """The headline figure of each row, as the side-by-side table shows it."""
    out: dict[str, str] = {}
    for r in report.results:
        if r.status != "ok":
            out[r.name] = r.status
            continue
        x, load = r.extra, _load(r)
        rate = f"{r.events_per_s or 0:,.0f}"
        if r.name in ("ceiling", "ceiling-batch", "faust"):
            out[r.name] = f"{rate} events/s (load {load})"
        elif r.name == "runtime":
            share = report.ratios()["runtime_vs_ceiling"]
            of = f", {share:.0%} of the ceiling" if share is not None else ""
            out[r.name] = f"{rate} events/s{of} (load {load})"
        elif r.name == "lifecycle":
            out[r.name] = f"{rate} tasks/s (load {load})"
            out["lifecycle latency"] = (
                f"p50 {x.get('latency_p50_ms')} / p99 {x.get('latency_p99_ms')} ms at "
                f"{x.get('latency_rate', 0):,.0f} tasks/s"
            )
        elif r.name == "replay":
            out[r.name] = (
                f"{rate} events/s, peak RSS {x.get('peak_rss_mb', 0):,.0f} MB (load {load})"
            )
        elif r.name == "stack":
            out[r.name] = f"{rate} tasks/s (load {load})"
            out["stack latency"] = (
                f"p50 {x.get('latency_p50_ms')} / p99 {x.get('latency_p99_ms')} ms at "
                f"{x.get('latency_rate', 0):,.0f} tasks/s"
            )
    return out


_SIDE_BY_SIDE = (
    ("ceiling", "raw ceiling, send per record"),
    ("ceiling-batch", "raw ceiling, batch API"),
    ("runtime", "runtime pipeline"),
    ("faust", "faust pipeline"),
    ("lifecycle", "lifecycle (processor + fake executor)"),
    ("lifecycle latency", "submit->assigned at half rate"),
    ("replay", "projection replay"),
    ("stack", "whole stack max rate"),
    ("stack latency", "submit->completed at half rate"),
)


def format_reports(reports: Sequence[Report]) -> str:
    """Each broker's rows, then (with more than one broker) the rows side by side."""
    parts = [format_report(r) for r in reports]
    if len(reports) > 1:
        figures = [_figures(r) for r in reports]
        head = ["row", *(r.broker for r in reports)]
        table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for key, title in _SIDE_BY_SIDE:
            cells = [f.get(key, "") for f in figures]
            if any(cells):
                table.append("| " + " | ".join([title, *cells]) + " |")
        parts.append("\n".join(table))
    return "\n\n".join(parts)
