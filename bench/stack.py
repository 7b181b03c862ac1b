"""The whole stack as users run it: processor, delay agent, view and one real executor as
separate processes on the benchmark's broker.

The stack is the soak's (``bench.soak_load.soak_stack``: four clients, one session of capacity 64
each plus the pool, the soak's mix of session, batched and pool operations) with handlers that
return at once and never fail (``--handlers bench.stack``), so neither the handlers nor
the retry path are the limit. Two phases:

1. max rate: submit ``tasks`` as fast as the client SDK goes; tasks completed per second from
   the first submit to the last completion, and the CPU seconds each process (the broker too,
   when the harness started it) spent per 1,000 tasks;
2. once the stack has digested the burst (the processor's and the view's lags back at 0, so
   the latency is the rate's, not a backlog's; the wait is reported as ``settled_s``), half
   that rate, for ``latency_seconds``: submit -> completed per task from record timestamps
   (the ``SubmitTask`` record on ``task.commands`` to the ``TaskCompleted`` event on
   ``task.events``), p50 and p99, over all tasks and per operation (the batched one waits for
   its window by design).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import BenchResult, load_average
from bench.lifecycle import percentile
from schemas.codec import CODEC
from schemas.commands import SubmitTask
from schemas.events import TaskCompleted
from streams.executor.context import TaskContext
from streams.kafka import consumer_kwargs
from streams.kafka.headers import TYPE_HEADER
from streams.settings import Settings

__all__ = ["HANDLERS", "by_operation", "run_stack", "settle", "submit_to_completed_ms"]


async def _no_op(ctx: TaskContext) -> dict[str, Any]:
    return {"ok": True}


HANDLERS = {"conversation_send": _no_op, "tag_add": _no_op, "integration_sync": _no_op}


async def run_stack(
    bootstrap: str,
    work_dir: Path,
    *,
    tasks: int,
    latency_seconds: float,
    broker: str,
    broker_pid: int | None = None,
) -> BenchResult:
    from bench.soak_load import SOAK_CLIENTS, Load, LogOffsets, soak_stack, start_all, wait_view

    stack = soak_stack(
        work_dir,
        {"KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        broker_kind=broker,
        handlers="bench.stack",
    )
    with stack:
        from bench.soak_load import burst

        await asyncio.to_thread(start_all, stack, False)
        await wait_view(stack, sessions=len(SOAK_CLIENTS))
        extra_pids = {"broker": broker_pid} if broker_pid else None
        peak = await burst(stack, tasks, "max", counts=lambda _: True, extra_pids=extra_pids)
        settings = stack.settings()
        async with LogOffsets(settings) as offsets:
            settled_s = await settle(stack, offsets)
        rate = peak.rate / 2
        load_before = load_average()
        load = Load(settings, rate, "half")
        runner = asyncio.create_task(load.run())
        await asyncio.sleep(latency_seconds)
        load.stop()
        submitted = await runner
        async with LogOffsets(settings) as offsets:
            target = peak.tasks + submitted
            deadline = time.monotonic() + 120
            while await offsets.end("completed") < target:
                if time.monotonic() > deadline or stack.dead_parts():
                    raise RuntimeError(f"half-rate phase did not complete: {stack.dead_parts()}")
                await asyncio.sleep(0.1)
        timed = await submit_to_completed_ms(settings, "half-")
        latencies = [ms for ms, _ in timed]
        dead = stack.dead_parts()
        if dead:
            raise RuntimeError(f"parts exited: {dead}")
    return BenchResult(
        "stack",
        "ok",
        events=peak.tasks,
        seconds=peak.seconds,
        detail="tasks/s; processor, delay, view, executor as processes, no-op handler",
        extra={
            "tasks": peak.tasks,
            "cpu_s": peak.cpu_s,
            "cpu_s_per_1000_tasks": peak.cpu_per_1000(),
            "load_burst": [peak.load_before, peak.load_after],
            "load_latency": [load_before, load_average()],
            "settled_s": settled_s,
            "latency_rate": rate,
            "latency_tasks": submitted,
            "latency_samples": len(latencies),
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p99_ms": percentile(latencies, 99),
            "latency_by_operation": by_operation(timed),
            "submit_errors": load.errors,
        },
    )


class _Lags(Protocol):
    async def processor_lag(self) -> int: ...


class _View(Protocol):
    def view_get(self, path: str, timeout_s: float = 5.0) -> tuple[dict[str, Any], dict[str, str]]:
        ...


async def settle(
    stack: _View, offsets: _Lags, *, timeout_s: float = 120.0, poll_s: float = 0.2
) -> float:
    """Seconds until the processor has no command left to read and the view no event, seen
    twice in a row; ``RuntimeError`` when that takes longer than ``timeout_s``."""
    started = time.monotonic()
    quiet = 0
    while quiet < 2:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the stack did not catch up within {timeout_s:.0f} s")
        await asyncio.sleep(poll_s)
        try:
            body, headers = await asyncio.to_thread(stack.view_get, "/status", 2.0)
            view_lag = int(headers.get("x-projection-lag", body["projection"]["lag_events"]))
        except (OSError, ValueError, KeyError):
            quiet = 0
            continue
        quiet = quiet + 1 if view_lag == 0 and await offsets.processor_lag() == 0 else 0
    return time.monotonic() - started


async def _read(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end now."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: Mapping[TopicPartition, int] = await consumer.end_offsets(tps)
        records: list[Any] = []
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                return records
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()


async def submit_to_completed_ms(settings: Settings, task_prefix: str) -> list[tuple[float, str]]:
    """(ms, operation) per task whose id starts with ``task_prefix``: the ``TaskCompleted``
    event's timestamp minus its ``SubmitTask`` record's."""
    submitted: dict[str, tuple[int, str]] = {}
    for record in await _read(settings, settings.topic("commands")):
        if record.value is None:
            continue
        command = CODEC.decode(record.value)
        if isinstance(command, SubmitTask) and command.task_id.startswith(task_prefix):
            submitted.setdefault(command.task_id, (record.timestamp, command.operation))
    completed_type = TaskCompleted.TYPE.encode()
    latencies: list[tuple[float, str]] = []
    for record in await _read(settings, settings.topic("events")):
        if dict(record.headers).get(TYPE_HEADER) != completed_type or record.value is None:
            continue
        event = CODEC.decode_trusted(record.value)
        start = submitted.pop(getattr(event, "task_id", ""), None)
        if start is not None:
            latencies.append((float(record.timestamp - start[0]), start[1]))
    return latencies


def by_operation(timed: list[tuple[float, str]]) -> dict[str, dict[str, float | int | None]]:
    """p50 / p99 and the count per operation: the mix's batched operation waits for its
    window by design, the others do not, so each is seen apart."""
    groups: dict[str, list[float]] = {}
    for ms, operation in timed:
        groups.setdefault(operation, []).append(ms)
    return {
        op: {"tasks": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
        for op, ms in sorted(groups.items())
    }
