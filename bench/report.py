"""The bench's report: one broker's rows (every row naming the broker and the load average
before and after it), the ratios against the issue's targets, and the brokers side by side."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.common import BenchResult

__all__ = ["EXTERNAL", "Report", "format_report", "format_reports"]

EXTERNAL = "external"

# The performance targets for the runtime pipeline.
TARGET_VS_FAUST = 20.0
TARGET_VS_CEILING = 0.5


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
            if x.get("target_rate"):
                lines.append(
                    f"{pad}submit->assigned at {x['target_rate']:,.0f} tasks/s (the target's "
                    f"rate): p50 {x.get('target_p50_ms')} ms, p99 {x.get('target_p99_ms')} ms "
                    f"({x.get('target_tasks')} tasks)"
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
                f"({x.get('latency_samples')} tasks"
                + (
                    f"; started {x['settled_s']:.1f} s after the burst, once the processor "
                    "and the view had caught up)"
                    if x.get("settled_s") is not None
                    else ")"
                )
            )
            ops = x.get("latency_by_operation") or {}
            if ops:
                lines.append(
                    f"{pad}by operation: "
                    + "; ".join(
                        f"{op} p50 {v['p50_ms']} / p99 {v['p99_ms']} ms ({v['tasks']})"
                        for op, v in ops.items()
                    )
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
            if x.get("target_rate"):
                out["lifecycle target latency"] = (
                    f"p50 {x.get('target_p50_ms')} / p99 {x.get('target_p99_ms')} ms at "
                    f"{x['target_rate']:,.0f} tasks/s"
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
    ("lifecycle target latency", "submit->assigned at 1,000 tasks/s"),
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
