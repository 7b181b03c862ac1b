"""A handler that raises ``NeedsInput`` or ``Defer`` ends its attempt without failing it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.commands import DeferTask, ReportResult, RequestInput
from streams.executor import Defer, NeedsInput, TaskContext, WorkerPool
from tests.support.pool_recorder import Recorder
from tests.unit.test_executor_pool import batch, task


def _raising(exc: Exception) -> Any:
    async def handler(ctx: TaskContext) -> dict[str, Any]:
        raise exc

    return handler


async def _run(exc: Exception, assignment: Any) -> Recorder:
    recorder = Recorder()
    pool = WorkerPool({"op": _raising(exc)}, report=recorder, concurrency=1)
    await pool.start()
    await pool.submit(assignment)
    assert await pool.close(5)
    return recorder


async def test_needs_input_asks_for_input_with_the_attempts_token() -> None:
    recorder = await _run(NeedsInput("which list?"), task("t1", token=3))
    assert recorder.of(ReportResult) == []
    (asked,) = recorder.of(RequestInput)
    assert (asked.task_id, asked.fencing_token, asked.prompt) == ("t1", 3, "which list?")
    assert asked.session_id == "s1"


async def test_defer_puts_the_task_off_until_its_time() -> None:
    until = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    recorder = await _run(Defer(until, reason="office closed"), task("t1", token=4))
    assert recorder.of(ReportResult) == []
    (deferred,) = recorder.of(DeferTask)
    assert deferred.until_ms == int(until.timestamp() * 1000)
    assert (deferred.task_id, deferred.fencing_token, deferred.reason) == ("t1", 4, "office closed")


async def test_defer_takes_epoch_milliseconds() -> None:
    recorder = await _run(Defer(1_900_000_000_000), task("t1"))
    assert recorder.of(DeferTask)[0].until_ms == 1_900_000_000_000


async def test_in_a_batch_an_item_that_needs_input_fails_for_good() -> None:
    recorder = await _run(NeedsInput("which list?"), batch("b1", ["a"]))
    assert recorder.of(RequestInput) == []
    (report,) = recorder.of(ReportResult)
    assert [(i.success, i.failure_class) for i in report.items] == [(False, "permanent")]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: NeedsInput(""), ValueError),
        (lambda: Defer(datetime(2030, 1, 1)), ValueError),
        (lambda: Defer(-1), ValueError),
        (lambda: Defer("tomorrow"), TypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_signals_are_refused_when_raised(make: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()


async def test_a_task_that_waits_is_neither_failed_nor_completed_for_the_watchers() -> None:
    seen: list[tuple[str, str]] = []
    recorder = Recorder()
    pool = WorkerPool(
        {"op": _raising(NeedsInput("which list?"))},
        report=recorder,
        concurrency=1,
        on_progress=lambda task_id, status, pct, message: seen.append((task_id, status)),
    )
    await pool.start()
    await pool.submit(task("t1"))
    assert await pool.close(5)
    assert pool.metrics().failed == 0 and pool.errors() == []
    assert seen[-1] == ("t1", "waiting_input")
