"""The worker pool without Kafka: commands it reports are collected in a list."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from schemas.commands import ReportProgress, ReportResult, TaskStarted
from schemas.records import Assignment, AssignmentItem
from streams.executor import (
    CANCELLED,
    SHUTDOWN,
    TIMEOUT,
    PermanentError,
    PoolClosedError,
    RetryableError,
    SessionFaultError,
    TaskContext,
    WorkerPool,
)
from streams.executor.context import Handler
from tests.support.pool_recorder import Recorder, until


def task(
    task_id: str, *, token: int = 1, timeout_ms: int = 0, op: str = "op", **payload: Any
) -> Assignment:
    return Assignment(
        kind="task",
        client_id="c1",
        session_id="s1",
        operation=op,
        task_id=task_id,
        fencing_token=token,
        timeout_ms=timeout_ms,
        items=[AssignmentItem(task_id=task_id, payload=payload)],
    )


def batch(batch_id: str, task_ids: list[str], *, token: int = 7, op: str = "op") -> Assignment:
    return Assignment(
        kind="batch",
        client_id="c1",
        session_id="s1",
        operation=op,
        batch_id=batch_id,
        fencing_token=token,
        items=[AssignmentItem(task_id=t, payload={"n": i}) for i, t in enumerate(task_ids)],
    )


def cancel(
    *, task_id: str | None = None, batch_id: str | None = None, token: int = 0
) -> Assignment:
    return Assignment(
        kind="cancel",
        client_id="c1",
        session_id="s1",
        operation="op",
        task_id=task_id,
        batch_id=batch_id,
        fencing_token=token,
    )


async def make_pool(handler: Handler, recorder: Recorder, **kwargs: Any) -> WorkerPool:
    pool = WorkerPool({"op": handler}, report=recorder, **kwargs)
    await pool.start()
    return pool


class ConcurrencyCounter:
    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.calls = 0

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        self.active += 1
        self.calls += 1
        self.peak = max(self.peak, self.active)
        try:
            for _ in range(5):
                await asyncio.sleep(0)
            await asyncio.sleep(0.005)
            return {"task": ctx.task_id}
        finally:
            self.active -= 1


async def test_never_more_handlers_running_than_the_concurrency() -> None:
    recorder, counter = Recorder(), ConcurrencyCounter()
    pool = await make_pool(counter, recorder, concurrency=3, queue_size=50)
    for i in range(20):
        await pool.submit(task(f"t{i}"))
    await pool.submit(batch("b1", [f"b{i}" for i in range(10)]))
    assert await pool.close(drain_timeout_s=10)

    assert counter.calls == 30
    assert counter.peak == 3  # reached, never exceeded
    results = recorder.of(ReportResult)
    assert len(results) == 21
    assert all(r.success for r in results)
    batch_result = next(r for r in results if r.batch_id == "b1")
    assert [i.task_id for i in batch_result.items] == [f"b{i}" for i in range(10)]
    assert batch_result.fencing_token == 7
    assert batch_result.output == {"succeeded": 10, "failed": 0}
    m = pool.metrics()
    assert (m.total, m.completed, m.failed, m.cancelled, m.pending, m.running) == (
        30,
        30,
        0,
        0,
        0,
        0,
    )
    assert m.workers == 3


async def test_sync_handlers_run_in_threads_within_the_concurrency() -> None:
    recorder = Recorder()
    lock = threading.Lock()
    state = {"active": 0, "peak": 0}
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    release = threading.Event()

    def handler(ctx: TaskContext) -> dict[str, Any]:
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
            threads.add(threading.get_ident())
        release.wait(5)
        with lock:
            state["active"] -= 1
        return {"ok": True}

    pool = await make_pool(handler, recorder, concurrency=2, queue_size=10)
    for i in range(6):
        await pool.submit(task(f"t{i}"))
    await until(lambda: state["peak"] == 2, "two handlers running")
    # The event loop is not blocked by the sync handlers: this coroutine still runs.
    assert pool.metrics().running == 2
    release.set()
    assert await pool.close(drain_timeout_s=10)
    assert state["peak"] == 2
    assert loop_thread not in threads
    assert len([r for r in recorder.of(ReportResult) if r.success]) == 6


async def test_timeout_is_reported_as_a_failure() -> None:
    recorder = Recorder()
    seen_cancel = asyncio.Event()

    async def stuck(ctx: TaskContext) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen_cancel.set()
            raise
        return {}

    pool = await make_pool(stuck, recorder, concurrency=1, queue_size=2)
    await pool.submit(task("t1", timeout_ms=30, token=4))
    await until(lambda: bool(recorder.of(ReportResult)), "a result")
    result = recorder.result("t1")
    assert (result.success, result.error, result.fencing_token) == (False, TIMEOUT, 4)
    assert seen_cancel.is_set()
    assert pool.metrics().failed == 1
    await pool.close(1)


async def test_default_timeout_applies_when_the_assignment_has_none() -> None:
    recorder = Recorder()
    flags: list[bool] = []

    def stuck_sync(ctx: TaskContext) -> dict[str, Any]:
        while not ctx.cancelled:  # a sync handler polls the flag
            threading.Event().wait(0.005)
        flags.append(ctx.cancelled)
        return {}

    pool = await make_pool(stuck_sync, recorder, concurrency=1, queue_size=2, default_timeout_ms=30)
    await pool.submit(task("t1"))
    await until(lambda: bool(recorder.of(ReportResult)), "a result")
    assert recorder.result("t1").error == TIMEOUT
    await until(lambda: flags == [True], "the thread saw the cancelled flag")
    await pool.close(1)


async def test_cancel_reaches_a_running_handler_and_reports_nothing() -> None:
    recorder = Recorder()
    running = asyncio.Event()
    outcome: list[str] = []
    contexts: list[TaskContext] = []

    async def long(ctx: TaskContext) -> dict[str, Any]:
        contexts.append(ctx)
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        return {}

    pool = await make_pool(long, recorder, concurrency=2, queue_size=4)
    await pool.submit(task("t1", token=3))
    await running.wait()
    assert pool.cancel(cancel(task_id="t1", token=3)) == 1
    await until(lambda: pool.metrics().cancelled == 1, "the cancel counted")
    assert outcome == ["cancelled"]
    assert contexts[0].cancelled
    assert recorder.of(ReportResult) == []  # the processor already cancelled the task
    assert [c.task_id for c in recorder.of(TaskStarted)] == ["t1"]
    assert await pool.close(1)


async def test_cancel_of_queued_work_stops_it_before_it_starts() -> None:
    recorder = Recorder()
    gate = asyncio.Event()

    async def gated(ctx: TaskContext) -> dict[str, Any]:
        await gate.wait()
        return {"task": ctx.task_id}

    pool = await make_pool(gated, recorder, concurrency=1, queue_size=4)
    await pool.submit(task("t1"))
    await pool.submit(task("t2"))
    await until(lambda: pool.metrics().running == 1, "t1 running")
    assert pool.cancel(cancel(task_id="t2")) == 1
    assert pool.cancel(cancel(task_id="unknown")) == 0
    gate.set()
    assert await pool.close(5)
    assert [c.task_id for c in recorder.of(TaskStarted)] == ["t1"]
    assert [r.task_id for r in recorder.of(ReportResult)] == ["t1"]
    assert pool.metrics().cancelled == 1


async def test_a_cancel_older_than_the_work_leaves_it_alone() -> None:
    recorder = Recorder()
    gate = asyncio.Event()

    async def gated(ctx: TaskContext) -> dict[str, Any]:
        await gate.wait()
        return {}

    pool = await make_pool(gated, recorder, concurrency=1, queue_size=4)
    await pool.submit(task("t1", token=9))
    await until(lambda: pool.metrics().running == 1, "t1 running")
    assert pool.cancel(cancel(task_id="t1", token=8)) == 0
    gate.set()
    assert await pool.close(5)
    assert recorder.result("t1").success


async def test_cancelling_one_batch_item_reports_it_failed_and_the_rest_succeed() -> None:
    recorder = Recorder()
    ran: list[str] = []
    gate = asyncio.Event()

    async def item(ctx: TaskContext) -> dict[str, Any]:
        ran.append(ctx.task_id)
        await gate.wait()
        return {"item": ctx.task_id, "n": ctx.payload["n"]}

    pool = await make_pool(item, recorder, concurrency=3, queue_size=2)
    await pool.submit(batch("b1", ["a", "b", "c"], token=5))
    await until(lambda: ran == ["a"], "the first item running")  # items run one at a time
    assert pool.cancel(cancel(task_id="b", token=5)) == 1
    gate.set()
    assert await pool.close(5)
    assert ran == ["a", "c"]  # the cancelled item never started
    [result] = recorder.of(ReportResult)
    assert (result.batch_id, result.fencing_token, result.success) == ("b1", 5, False)
    assert [(i.task_id, i.success, i.error) for i in result.items] == [
        ("a", True, None),
        ("b", False, CANCELLED),
        ("c", True, None),
    ]
    assert result.items[2].output == {"item": "c", "n": 2}
    assert result.output == {"succeeded": 2, "failed": 1}


async def test_cancelling_a_whole_batch_reports_nothing() -> None:
    recorder = Recorder()

    async def forever(ctx: TaskContext) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    pool = await make_pool(forever, recorder, concurrency=2, queue_size=2)
    await pool.submit(batch("b1", ["a", "b", "c"]))
    await until(lambda: pool.metrics().running == 1, "the first item running")
    assert pool.cancel(cancel(batch_id="b1")) == 3
    assert await pool.close(5)
    assert recorder.of(ReportResult) == []
    assert pool.metrics().cancelled == 3


async def test_full_queue_makes_submit_wait_and_nothing_is_dropped() -> None:
    recorder = Recorder()
    gate = asyncio.Event()

    async def gated(ctx: TaskContext) -> dict[str, Any]:
        await gate.wait()
        return {"task": ctx.task_id}

    pool = await make_pool(gated, recorder, concurrency=1, queue_size=2)
    await pool.submit(task("t0"))
    await until(lambda: pool.metrics().running == 1, "t0 running")
    await pool.submit(task("t1"))
    await pool.submit(task("t2"))
    assert pool.room() == 0
    blocked = asyncio.create_task(pool.submit(task("t3")))
    waiter = asyncio.create_task(pool.wait_for_room())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not blocked.done() and not waiter.done()
    assert pool.metrics().pending == 3  # t1, t2 queued; t3 counted but waiting to enter
    gate.set()
    await blocked
    await waiter
    assert await pool.close(5)
    assert sorted(r.task_id or "" for r in recorder.of(ReportResult)) == ["t0", "t1", "t2", "t3"]


async def test_graceful_close_drains_running_and_queued_work() -> None:
    recorder = Recorder()

    async def short(ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"task": ctx.task_id}

    pool = await make_pool(short, recorder, concurrency=2, queue_size=10)
    for i in range(8):
        await pool.submit(task(f"t{i}"))
    assert await pool.close(drain_timeout_s=10)
    assert len([r for r in recorder.of(ReportResult) if r.success]) == 8
    with pytest.raises(PoolClosedError):
        await pool.submit(task("late"))


async def test_close_cancels_what_does_not_finish_within_the_bound() -> None:
    recorder = Recorder()
    saw_cancel: list[str] = []

    async def forever(ctx: TaskContext) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.append(ctx.task_id)
            raise
        return {}

    pool = await make_pool(forever, recorder, concurrency=1, queue_size=4)
    await pool.submit(task("running"))
    await pool.submit(task("queued"))
    await until(lambda: pool.metrics().running == 1, "one running")
    assert not await pool.close(drain_timeout_s=0.05)
    assert saw_cancel == ["running"]
    assert recorder.result("running").error == SHUTDOWN
    assert recorder.result("queued").error == SHUTDOWN
    assert not recorder.result("queued").success
    assert [c.task_id for c in recorder.of(TaskStarted)] == ["running"]
    assert pool.metrics().cancelled == 2


async def test_progress_is_reported_between_start_and_result() -> None:
    recorder = Recorder()

    async def async_steps(ctx: TaskContext) -> dict[str, Any]:
        ctx.report_progress(0.25, "quarter")
        await asyncio.sleep(0)
        ctx.report_progress(1.7)  # clamped
        return {}

    def sync_steps(ctx: TaskContext) -> dict[str, Any]:
        ctx.report_progress(0.5, "from a thread")
        return {"sync": True}

    pool = WorkerPool({"a": async_steps, "s": sync_steps}, report=recorder, concurrency=2)
    await pool.start()
    await pool.submit(task("ta", op="a", token=11))
    await pool.submit(task("ts", op="s", token=12))
    assert await pool.close(5)
    for task_id, token in (("ta", 11), ("ts", 12)):
        mine = [c for c in recorder.commands if getattr(c, "task_id", None) == task_id]
        kinds = [type(c) for c in mine]
        assert kinds[0] is TaskStarted and kinds[-1] is ReportResult
        assert all(k is ReportProgress for k in kinds[1:-1]) and len(kinds) > 2
        assert all(getattr(c, "fencing_token", None) == token for c in mine)
    progress = [(p.task_id, p.progress, p.message) for p in recorder.of(ReportProgress)]
    assert ("ta", 0.25, "quarter") in progress
    assert ("ta", 1.0, None) in progress
    assert ("ts", 0.5, "from a thread") in progress


@pytest.mark.parametrize(
    ("handler", "error", "failure_class", "retry_after_ms"),
    [
        (lambda: _raiser(ValueError("contact not found")), "contact not found", "retryable", None),
        (lambda: _raiser(RuntimeError()), "RuntimeError", "retryable", None),
        (lambda: _raiser(PermanentError("HTTP 404")), "HTTP 404", "permanent", None),
        (lambda: _raiser(RetryableError("HTTP 429", 1500)), "HTTP 429", "retryable", 1500),
        (lambda: _raiser(SessionFaultError("browser died")), "browser died", "session", None),
        (lambda: _returner(42), "handler returned int, expected a dict", "permanent", None),
        (lambda: _returner({"when": object()}), "handler output is not JSON", "permanent", None),
    ],
)
async def test_handler_failures_become_failed_results(
    handler: Callable[[], Handler], error: str, failure_class: str, retry_after_ms: int | None
) -> None:
    recorder = Recorder()
    pool = await make_pool(handler(), recorder, concurrency=1)
    await pool.submit(task("t1", token=2))
    assert await pool.close(5)
    result = recorder.result("t1")
    assert not result.success
    assert result.error is not None and result.error.startswith(error)
    assert (result.failure_class, result.retry_after_ms) == (failure_class, retry_after_ms)
    assert pool.metrics().failed == 1


async def test_unknown_operation_fails_without_starting() -> None:
    recorder = Recorder()
    pool = await make_pool(ConcurrencyCounter(), recorder)
    await pool.submit(task("t1", op="nope"))
    assert await pool.close(5)
    assert recorder.of(TaskStarted) == []
    assert recorder.result("t1").error == "no handler for operation 'nope'"
    assert recorder.result("t1").failure_class == "permanent"


async def test_default_handler_serves_other_operations() -> None:
    recorder = Recorder()

    async def fallback(ctx: TaskContext) -> dict[str, Any]:
        return {"op": ctx.operation, "payload": dict(ctx.payload)}

    pool = WorkerPool({}, report=recorder, default_handler=fallback)
    await pool.start()
    await pool.submit(task("t1", op="anything", x=1))
    assert await pool.close(5)
    assert recorder.result("t1").output == {"op": "anything", "payload": {"x": 1}}


def _raiser(exc: Exception) -> Handler:
    async def handler(ctx: TaskContext) -> dict[str, Any]:
        raise exc

    return handler


def _returner(value: Any) -> Handler:
    async def handler(ctx: TaskContext) -> Any:
        return value

    return handler


async def test_a_submit_given_up_while_waiting_for_room_leaves_no_trace() -> None:
    recorder = Recorder()
    gate = asyncio.Event()

    async def gated(ctx: TaskContext) -> dict[str, Any]:
        await gate.wait()
        return {}

    pool = await make_pool(gated, recorder, concurrency=1, queue_size=1)
    await pool.submit(task("t0"))
    await until(lambda: pool.metrics().running == 1, "t0 running")
    await pool.submit(task("t1"))
    blocked = asyncio.create_task(pool.submit(task("t2")))
    await asyncio.sleep(0)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert pool.metrics().total == 2
    assert pool.cancel(cancel(task_id="t2")) == 0
    gate.set()
    assert await pool.close(5)
    assert sorted(r.task_id or "" for r in recorder.of(ReportResult)) == ["t0", "t1"]
    assert pool.metrics().pending == 0


async def test_close_of_an_idle_pool_reports_drained_even_with_no_time() -> None:
    pool = await make_pool(ConcurrencyCounter(), Recorder())
    assert await pool.close(0)


async def test_finished_work_is_freed_without_the_cyclic_collector() -> None:
    """A finished job leaves no reference cycle: with the collector off, its contexts are
    gone once the pool is done with them (cyclic garbage made the executor's full
    collections stall its loop for ~100 ms at a thousand tasks a second)."""
    import gc
    import weakref

    recorder = Recorder()
    contexts: list[weakref.ref[TaskContext]] = []

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        contexts.append(weakref.ref(ctx))
        ctx.report_progress(0.5)
        return {"ok": True}

    pool = await make_pool(handler, recorder, concurrency=2)
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        await pool.submit(task("t1"))
        await pool.submit(batch("b1", ["t2", "t3"]))
        await until(lambda: len(recorder.of(ReportResult)) == 2, "both results")
        # Each worker holds its last job until the next one comes: more work, then those.
        await pool.submit(task("t4"))
        await pool.submit(task("t5"))
        await until(lambda: len(recorder.of(ReportResult)) == 4, "the later results")
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(contexts) == 5
        assert [ref() for ref in contexts[:3]] == [None, None, None]
    finally:
        if was_enabled:
            gc.enable()
        await pool.close(5)
