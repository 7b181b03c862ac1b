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
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchResult,
    busy_processes,
    create_topics,
    fill,
    heartbeat_records,
    load_average,
)
from bench.report import (
    EXTERNAL,
    Report,
    format_reports,
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
    from bench import peer_rows

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
        from bench.faust_pipeline import run_faust

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
        from bench.lifecycle import run_lifecycle

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
        from bench.replay import run_replay

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
        from bench.stack import run_stack

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
        from bench.ceiling import Mode, run_ceiling

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
        from bench.pipeline import run_runtime

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
