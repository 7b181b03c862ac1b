"""Per-session concurrency, whole-batch handlers and deadlines in the worker pool."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from schemas.commands import ReportResult, TaskStarted
from schemas.records import Assignment, AssignmentItem
from streams.executor import BatchContext, PermanentError, RetryableError, TaskContext, WorkerPool
from streams.executor.outcomes import DEADLINE_PASSED, TIMEOUT
from tests.support.pool_recorder import Recorder, until


def work(
    task_id: str, session: str, *, batch: list[str] | None = None, deadline_at_ms: int = 0
) -> Assignment:
    items = batch or [task_id]
    return Assignment(
        kind="batch" if batch else "task",
        client_id="c1",
        session_id=session,
        operation="op",
        task_id=None if batch else task_id,
        batch_id=task_id if batch else None,
        fencing_token=3,
        deadline_at_ms=deadline_at_ms,
        items=[AssignmentItem(task_id=t, payload={"n": i}) for i, t in enumerate(items)],
    )


class PerSession:
    """Counts the calls running per session; s1's calls wait for a gate."""

    def __init__(self) -> None:
        self.active: dict[str | None, int] = {}
        self.peak: dict[str | None, int] = {}
        self.gate = asyncio.Event()
        self.done: list[str] = []

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        s = ctx.session_id
        self.active[s] = self.active.get(s, 0) + 1
        self.peak[s] = max(self.peak.get(s, 0), self.active[s])
        try:
            if s == "s1":
                await self.gate.wait()
            for _ in range(3):
                await asyncio.sleep(0)
            self.done.append(ctx.task_id)
            return {}
        finally:
            self.active[s] -= 1


async def test_a_session_never_runs_more_calls_than_its_limit_batches_included() -> None:
    handler = PerSession()
    recorder = Recorder()
    pool = WorkerPool(
        {"op": handler},
        report=recorder,
        concurrency=6,
        queue_size=10,
        session_limits={"s1": 1, "s2": 2},
    )
    await pool.start()
    await pool.submit(work("t1", "s1"))
    await pool.submit(work("b1", "s1", batch=["b1-0", "b1-1", "b1-2"]))
    await pool.submit(work("t2", "s1"))
    for i in range(4):
        await pool.submit(work(f"u{i}", "s2"))
    # s1 is held at its gate, one call at a time; s2's work goes past it.
    await until(lambda: len([t for t in handler.done if t.startswith("u")]) == 4, "s2 done")
    assert pool.running_by_session()["s1"] == 1
    handler.gate.set()
    assert await pool.close(5)
    assert handler.peak["s1"] == 1
    assert handler.peak["s2"] <= 2
    assert len(recorder.of(ReportResult)) == 7


class TagAdder:
    """One browser interaction for a whole batch; a single task runs as a batch of one."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def handle_batch(self, ctx: BatchContext, items: list[TaskContext]) -> list[Any]:
        self.calls.append([i.task_id for i in items])
        assert ctx.operation == "op" and ctx.items == tuple(items)
        return [
            PermanentError("no such contact") if i.payload["n"] == 1 else {"tagged": i.task_id}
            for i in items
        ]


async def test_a_handler_may_take_the_whole_batch_in_one_call() -> None:
    adder = TagAdder()
    recorder = Recorder()
    pool = WorkerPool({"op": adder}, report=recorder, session_limits={"s1": 1})
    await pool.start()
    await pool.submit(work("b1", "s1", batch=["a", "b", "c"]))
    await pool.submit(work("t1", "s1"))
    assert await pool.close(5)
    assert adder.calls == [["a", "b", "c"], ["t1"]]
    assert [s.task_id for s in recorder.of(TaskStarted)] == ["a", "b", "c", "t1"]
    batch = next(r for r in recorder.of(ReportResult) if r.batch_id == "b1")
    assert [(i.task_id, i.success, i.failure_class) for i in batch.items] == [
        ("a", True, None),
        ("b", False, "permanent"),
        ("c", True, None),
    ]
    assert batch.items[2].output == {"tagged": "c"}
    assert recorder.result("t1").output == {"tagged": "t1"}


async def test_a_whole_batch_call_that_raises_fails_every_item_with_its_class() -> None:
    class Limited:
        async def handle_batch(self, ctx: BatchContext, items: list[TaskContext]) -> list[Any]:
            raise RetryableError("HTTP 429", retry_after_ms=2_000)

    recorder = Recorder()
    pool = WorkerPool({"op": Limited()}, report=recorder)
    await pool.start()
    await pool.submit(work("b1", "s1", batch=["a", "b"]))
    assert await pool.close(5)
    [result] = recorder.of(ReportResult)
    assert {(i.failure_class, i.retry_after_ms) for i in result.items} == {("retryable", 2_000)}


async def test_work_past_its_deadline_never_starts() -> None:
    calls: list[str] = []

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        calls.append(ctx.task_id)
        return {}

    recorder = Recorder()
    now_s = 1_000_000.0
    pool = WorkerPool({"op": handler}, report=recorder, clock=lambda: now_s)
    await pool.start()
    past = int(now_s * 1000) - 1
    await pool.submit(work("t1", "s1", deadline_at_ms=past))
    await pool.submit(work("b1", "s1", batch=["a", "b"], deadline_at_ms=past))
    await pool.submit(work("t2", "s1", deadline_at_ms=past + 60_000))
    assert await pool.close(5)
    assert calls == ["t2"]
    assert [s.task_id for s in recorder.of(TaskStarted)] == ["t2"]
    late = recorder.result("t1")
    assert (late.success, late.error, late.failure_class) == (False, DEADLINE_PASSED, "retryable")
    batch = next(r for r in recorder.of(ReportResult) if r.batch_id == "b1")
    assert {(i.error, i.failure_class) for i in batch.items} == {(DEADLINE_PASSED, "retryable")}
    assert pool.metrics().expired == 3


async def test_a_call_gets_no_more_time_than_its_deadline_leaves() -> None:
    async def slow(ctx: TaskContext) -> dict[str, Any]:
        assert ctx.timeout_s is not None and ctx.timeout_s <= 0.06
        await asyncio.Event().wait()
        return {}

    recorder = Recorder()
    pool = WorkerPool({"op": slow}, report=recorder, default_timeout_ms=600_000)
    await pool.start()
    loop_now_ms = int(time.time() * 1000)
    await pool.submit(work("t1", "s1", deadline_at_ms=loop_now_ms + 50))
    assert await pool.close(5)
    result = recorder.result("t1")
    assert (result.error, result.failure_class) == (TIMEOUT, "session")
