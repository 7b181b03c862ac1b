"""The soak: the whole stack as processes under a steady load for minutes, on each broker.

``python -m bench.soak --minutes 10 --rate R`` (from the source checkout) runs the stack under a
steady load of ``R`` tasks per second, samples the resident memory of every process, the
projection lag and the processor's lag every 10 s, and writes a table to ``docs/soak.md``.
Without ``--rate`` it first measures the maximum rate (a burst of tasks, completed tasks per
second from the first submit to the last outcome) on a fresh stack and soaks at half of it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.processes import ROOT, ProcessStack, rss_kib
from bench.soak_load import (
    SOAK_CLIENTS,
    SOAK_FAILING_PERCENT,
    Burst,
    Load,
    LogOffsets,
    measure_max_rate,
    soak_stack,
    start_all,
    wait_view,
)
from streams.kafka.profile import broker_profile

__all__ = ["broker_kinds", "main", "soak"]

log = logging.getLogger(__name__)


@dataclass
class Sample:
    t_s: float
    rss_kib: dict[str, int | None]
    projection_lag: int | None
    processor_lag: int
    submitted: int
    completed: int
    failed: int
    projected_completed: int | None


async def _sample(stack: ProcessStack, offsets: LogOffsets, load: Load, t0: float) -> Sample:
    rss = {name: rss_kib(pid) for name, pid in stack.pids().items()}
    lag: int | None = None
    projected: int | None = None
    try:
        body, headers = await asyncio.to_thread(stack.view_get, "/status")
        lag = int(headers.get("x-projection-lag", body["projection"]["lag_events"]))
        projected = int(body["tasks_by_state"].get("completed", 0))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("view did not answer: %s", exc)
    return Sample(
        t_s=time.monotonic() - t0,
        rss_kib=rss,
        projection_lag=lag,
        processor_lag=await offsets.processor_lag(),
        submitted=load.submitted,
        completed=await offsets.end("completed"),
        failed=await offsets.end("failed"),
        projected_completed=projected,
    )


async def soak(
    workdir: Path,
    minutes: float,
    rate: float,
    interval_s: float = 10.0,
    broker_kind: str = "kafka",
    bootstrap: str | None = None,
) -> tuple[list[Sample], dict[str, Any]]:
    from bench.common import load_average

    samples: list[Sample] = []
    loads: list[tuple[float, float, float]] = [load_average()]
    external = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap} if bootstrap else None
    with soak_stack(workdir, external, broker_kind=broker_kind) as stack:
        await asyncio.to_thread(start_all, stack, bootstrap is None)
        await wait_view(stack, sessions=len(SOAK_CLIENTS))
        settings = stack.settings()
        load = Load(settings, rate, "soak")
        t0 = time.monotonic()
        generating = asyncio.create_task(load.run())
        async with LogOffsets(settings) as offsets:
            samples.append(await _sample(stack, offsets, load, t0))
            end = t0 + minutes * 60
            while time.monotonic() < end:
                await asyncio.sleep(min(interval_s, max(0.0, end - time.monotonic())))
                if generating.done():
                    generating.result()
                dead = stack.dead_parts()
                if dead:
                    raise RuntimeError(f"parts died during the soak: {dead}")
                samples.append(await _sample(stack, offsets, load, t0))
                loads.append(load_average())
                print(_row(samples[-1], list(samples[0].rss_kib)), flush=True)
            load.stop()
            await generating
            # Drain: let the backlog settle, then one last sample.
            drain_deadline = time.monotonic() + 60
            while time.monotonic() < drain_deadline:
                s = await _sample(stack, offsets, load, t0)
                if s.processor_lag == 0 and (s.projection_lag or 0) == 0:
                    break
                await asyncio.sleep(1)
            samples.append(await _sample(stack, offsets, load, t0))
        summary = {
            "submitted": load.submitted,
            "submit_errors": load.errors,
            "load_min": min(x[0] for x in loads),
            "load_max": max(x[0] for x in loads),
            "profile": broker_profile(settings).name,
        }
    return samples, summary


# --- report ----------------------------------------------------------------------------------


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def _row(s: Sample, names: list[str]) -> str:
    cells = [f"{s.t_s:.0f}", *(_mib(s.rss_kib.get(n)) for n in names)]
    cells += [
        "-" if s.projection_lag is None else str(s.projection_lag),
        str(s.processor_lag),
        str(s.submitted),
        str(s.completed),
        str(s.failed),
    ]
    return "| " + " | ".join(cells) + " |"


@dataclass
class SoakRun:
    """One broker's soak: the burst it was paced from (None with ``--rate``), the samples."""

    broker: str
    rate: float
    burst: Burst | None
    samples: list[Sample]
    summary: dict[str, Any]
    started_at: str
    others: list[str]


BROKER_TITLES = {"kafka": "Apache Kafka 4 (KRaft, one node)", "embedded": "embedded broker (Tansu)"}


def render(command: str, minutes: float, runs: Sequence[SoakRun]) -> str:
    lines = [
        "# Soak results",
        "",
        f"Produced by `{command}` ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}); "
        f"brokers: {', '.join(r.broker for r in runs)}, one after the other, each with a "
        "fresh stack.",
        "",
        f"Each soak: **{minutes:g} minutes**; the mix is 70 % `conversation_send` (session), "
        "20 % `tag_add` (batched), 10 % `integration_sync` (pool); a 2 ms handler; "
        f"{SOAK_FAILING_PERCENT} % of tasks fail on every attempt (retries through the delay "
        "tiers, then dead letters). Samples every 10 s; RSS from /proc; projection lag from the "
        "view's `X-Projection-Lag`; processor lag = command-log end minus the processor group's "
        "committed offsets; completed/failed = records on `task.completed` / `task.failed`. The "
        "last row is taken after the load stopped, once the processor and projection lags "
        "settled (at most 60 s); tasks still queued then are not waited for. The maximum rate "
        "is a burst on a fresh stack (completed tasks per second from the first submit to the "
        "last completion of the tasks that do not always fail).",
        "",
    ]
    for run in runs:
        lines += _render_run(run)
    return "\n".join(lines)


def _render_run(run: SoakRun) -> list[str]:
    samples, summary = run.samples, run.summary
    names = list(samples[0].rss_kib)
    head = ["t (s)", *(f"{n} RSS (MiB)" for n in names)]
    head += ["projection lag (events)", "processor lag (commands)", "submitted", "completed"]
    head += ["failed"]
    lines = [
        f"## {BROKER_TITLES.get(run.broker, run.broker)}",
        "",
        f"The broker answered the profile probe as `{summary.get('profile')}`.",
        "",
    ]
    if run.burst is not None:
        b = run.burst
        cpu = ", ".join(f"{n} {v:.2f}" for n, v in b.cpu_per_1000().items())
        lines += [
            f"Maximum rate ({run.started_at}, load average {b.load_before[0]:.2f} before, "
            f"{b.load_after[0]:.2f} after): **{b.rate:.0f} tasks/s** ({b.tasks} tasks in "
            f"{b.seconds:.1f} s). CPU seconds per 1,000 tasks: {cpu}.",
            "",
        ]
    lines += [
        f"Soak at **{run.rate:.0f} tasks/s** (load average {summary.get('load_min')}–"
        f"{summary.get('load_max')} during the soak; other processes using CPU at the start: "
        f"{', '.join(run.others) or 'none'}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += [_row(s, names) for s in samples]
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    lines += ["", "Summary:", ""]
    for n in names:
        values = [v for s in samples if (v := s.rss_kib.get(n)) is not None]
        lines.append(
            f"- {n}: RSS {_mib(first.rss_kib.get(n))} MiB after 10 s, "
            f"{_mib(last.rss_kib.get(n))} MiB at the end, max {_mib(max(values) if values else None)} MiB"
        )
    lags = [s.projection_lag for s in samples[:-1] if s.projection_lag is not None]
    plags = [s.processor_lag for s in samples[:-1]]
    lines += [
        f"- projection lag under load: max {max(lags) if lags else '-'} events; "
        f"processor lag: max {max(plags) if plags else '-'} commands",
        f"- submitted {summary.get('submitted')} tasks ({summary.get('submit_errors')} submit "
        f"errors); {last.completed} completed, {last.failed} failed permanently",
        "",
    ]
    return lines


def broker_kinds(chosen: Sequence[str] | None) -> list[str]:
    """``--broker`` values (repeatable; ``both`` means kafka then embedded) as broker kinds
    without repeats; none given means both."""
    from streams.kafka.local import BROKER_KINDS

    kinds: list[str] = []
    for value in chosen or ["both"]:
        for kind in BROKER_KINDS if value == "both" else (value,):
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def main(argv: Sequence[str] | None = None) -> int:
    from bench.common import busy_processes
    from streams.kafka.local import BROKER_KINDS

    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None, help="tasks/s (default: half max)")
    parser.add_argument("--burst", type=int, default=6000, help="tasks for the max-rate burst")
    parser.add_argument(
        "--broker",
        action="append",
        choices=[*BROKER_KINDS, "both"],
        help="broker to soak on, started by the soak (repeatable; default: both, kafka first)",
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="soak on this running broker (host:port) instead of starting one; needs --rate",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "soak.md")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    command = "python -m bench.soak " + shlex.join(argv if argv is not None else sys.argv[1:])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="taskstream-soak-"))
    runs: list[SoakRun] = []
    if args.bootstrap and args.rate is None:
        parser.error("--bootstrap needs --rate (the max-rate burst starts a broker of its own)")
    kinds = ["kafka"] if args.bootstrap else broker_kinds(args.broker)
    for kind in kinds:
        started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        others = busy_processes()
        max_burst: Burst | None = None
        rate = args.rate
        if rate is None:
            max_burst = asyncio.run(measure_max_rate(workdir / kind / "ramp", args.burst, kind))
            rate = max_burst.rate / 2
            print(
                f"{kind}: max rate {max_burst.rate:.0f} tasks/s; soaking at {rate:.0f} tasks/s",
                flush=True,
            )
        samples, summary = asyncio.run(
            soak(
                workdir / kind / "soak",
                args.minutes,
                rate,
                broker_kind=kind,
                bootstrap=args.bootstrap,
            )
        )
        runs.append(SoakRun(kind, rate, max_burst, samples, summary, started_at, others))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(command, args.minutes, runs))  # after each broker
    print(f"wrote {args.out} (process logs in {workdir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
