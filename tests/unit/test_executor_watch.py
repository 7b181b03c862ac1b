"""Seed 003's worker pool conveniences: the local queue by priority, ``errors()`` and the
``on_progress`` hook (``streams.executor.watch``)."""

from __future__ import annotations

import asyncio
from typing import Any

from schemas.commands import ReportProgress, ReportResult
from schemas.records import Assignment, AssignmentItem
from streams.executor import PermanentError, TaskContext, TaskError, WorkerPool
from tests.support.pool_recorder import Recorder, until


def task(task_id: str, *, priority: int = 3, op: str = "op", attempt: int = 0) -> Assignment:
    return Assignment(
        kind="task",
        client_id="c1",
        session_id="s1",
        operation=op,
        task_id=task_id,
        fencing_token=1,
        attempt=attempt,
        priority=priority,
        items=[AssignmentItem(task_id=task_id, payload={})],
    )


async def test_the_local_queue_hands_out_the_most_urgent_work_first() -> None:
    recorder = Recorder()
    order: list[str] = []
    gate = asyncio.Event()

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        if ctx.task_id == "blocker":
            await gate.wait()
        order.append(ctx.task_id)
        return {}

    pool = WorkerPool({"op": handler}, report=recorder, concurrency=1, queue_size=10)
    await pool.start()
    await pool.submit(task("blocker"))
    await until(lambda: pool.metrics().running == 1, "the blocker runs")
    # Arrival order low, normal, high, normal, low: handed out high, normal, normal, low, low.
    for task_id, priority in [("low-1", 5), ("normal-1", 3), ("high", 1), ("normal-2", 3)]:
        await pool.submit(task(task_id, priority=priority))
    await pool.submit(task("low-2", priority=5))
    gate.set()
    assert await pool.close(drain_timeout_s=5)
    assert order == ["blocker", "high", "normal-1", "normal-2", "low-1", "low-2"]


async def test_errors_lists_recent_failures_with_task_id_and_error() -> None:
    recorder = Recorder()

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        if ctx.task_id.startswith("bad"):
            raise PermanentError(f"no contact for {ctx.task_id}")
        return {}

    pool = WorkerPool({"op": handler}, report=recorder, concurrency=1, errors_kept=2)
    await pool.start()
    for task_id in ["bad-1", "good", "bad-2", "bad-3"]:
        await pool.submit(task(task_id, attempt=2))
    assert await pool.close(drain_timeout_s=5)

    errors = pool.errors()
    assert all(isinstance(e, TaskError) for e in errors)
    # The oldest failure is dropped beyond errors_kept; successes never appear.
    assert [(e.task_id, e.error) for e in errors] == [
        ("bad-2", "no contact for bad-2"),
        ("bad-3", "no contact for bad-3"),
    ]
    assert {(e.operation, e.attempt, e.failure_class) for e in errors} == {("op", 2, "permanent")}
    assert not recorder.result("good").error


async def test_on_progress_sees_start_each_report_and_the_end_in_percent() -> None:
    recorder = Recorder()
    seen: list[tuple[str, str, int, str | None]] = []

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        ctx.report_progress(0.25, "a quarter")
        ctx.report_progress(0.5)
        if ctx.task_id == "fails":
            raise RuntimeError("boom")
        return {}

    def on_progress(task_id: str, status: str, percent: int, message: str | None) -> None:
        seen.append((task_id, status, percent, message))

    pool = WorkerPool({"op": handler}, report=recorder, concurrency=1, on_progress=on_progress)
    await pool.start()
    await pool.submit(task("works"))
    await pool.submit(task("fails"))
    assert await pool.close(drain_timeout_s=5)

    assert seen == [
        ("works", "in_progress", 0, None),
        ("works", "in_progress", 25, "a quarter"),
        ("works", "in_progress", 50, None),
        ("works", "completed", 100, None),
        ("fails", "in_progress", 0, None),
        ("fails", "in_progress", 25, "a quarter"),
        ("fails", "in_progress", 50, None),
        ("fails", "failed", 50, "boom"),
    ]
    # The hook is besides ReportProgress, not instead of it.
    assert [p.progress for p in recorder.of(ReportProgress)] == [0.25, 0.5, 0.25, 0.5]
    assert [r.success for r in recorder.of(ReportResult)] == [True, False]


async def test_a_failing_progress_hook_never_fails_the_task() -> None:
    recorder = Recorder()

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        ctx.report_progress(0.5)
        return {"ok": True}

    def on_progress(task_id: str, status: str, percent: int, message: str | None) -> None:
        raise ValueError("the dashboard is down")

    pool = WorkerPool({"op": handler}, report=recorder, on_progress=on_progress)
    await pool.start()
    await pool.submit(task("t1"))
    assert await pool.close(drain_timeout_s=5)
    assert recorder.result("t1").success
    assert pool.errors() == []
