"""The pieces of the worker pool's work: jobs and their items, the metrics snapshot, and the
small rules about handlers and their results that need no pool state."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from schemas.commands import PERMANENT
from schemas.records import Assignment
from streams.executor.context import Handler, TaskContext
from streams.executor.errors import ExecutorError
from streams.executor.outcomes import Outcome, failed, output, raised


@dataclass(frozen=True, slots=True)
class ExecutorMetrics:
    """A snapshot. Counts are per task (each batch item counts once)."""

    total: int
    """Tasks received."""
    completed: int
    failed: int
    """Failures, timeouts included."""
    cancelled: int
    """Stopped by a cancel assignment or by shutdown."""
    pending: int
    """Received, handler not started yet."""
    running: int
    """Handler running now."""
    workers: int
    """Concurrency: handler calls allowed at once."""
    queued_jobs: int
    queue_size: int
    expired: int = 0
    """Not started: the assignment's deadline had passed."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(eq=False)
class Item:
    task_id: str
    payload: dict[str, Any]
    ctx: TaskContext
    cancel_reason: str | None = None
    runner: asyncio.Future[Any] | None = None
    finished: bool = False
    job: Job | None = None


@dataclass(eq=False)
class Job:
    assignment: Assignment
    items: list[Item]
    on_done: Callable[[], None] | None
    runner: asyncio.Future[Any] | None = None
    """The one call of a handler that takes the whole batch."""


def release(job: Job) -> None:
    """Break the references between a finished job, its items and their contexts.

    An item points at its job and the job at its items; a context's progress sink closes over
    both. Left alone, every finished job is cyclic garbage (about 27 objects a task) that only
    the cyclic collector frees, and at a thousand tasks a second its full collections stall the
    executor's loop for about 100 ms each. A handler still holding the context (a thread that
    ignored its timeout) finds no sink and reports nothing, as a finished item should.
    """
    job.runner = None
    for item in job.items:
        item.finished = True
        item.job = None
        item.runner = None
        item.ctx._progress = None


def is_async_handler(handler: Handler) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(call)


def batch_entry(handler: object) -> Callable[..., Any] | None:
    """The handler's ``handle_batch``, when it has one."""
    entry = getattr(handler, "handle_batch", None)
    return entry if callable(entry) else None


def items_of(assignment: Assignment) -> list[tuple[str, dict[str, Any]]]:
    if assignment.kind == "task":
        if assignment.task_id is None:
            raise ExecutorError("task assignment without task_id")
        payload: dict[str, Any] = {}
        for item in assignment.items:
            if item.task_id == assignment.task_id:
                payload = dict(item.payload)
                break
        else:
            if assignment.items:
                payload = dict(assignment.items[0].payload)
        return [(assignment.task_id, payload)]
    if assignment.kind == "batch":
        if not assignment.items:
            raise ExecutorError(f"batch assignment {assignment.batch_id} without items")
        return [(item.task_id, dict(item.payload)) for item in assignment.items]
    raise ExecutorError(f"cannot run an assignment of kind {assignment.kind!r}")


def least(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def consume_result(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned runner's outcome so asyncio does not warn about it."""
    if not future.cancelled():
        future.exception()


def item_outcome(results: Any, index: int, count: int) -> Outcome:
    """Item ``index`` of what ``handle_batch`` returned: one entry per item, in order."""
    if not isinstance(results, (list, tuple)) or len(results) != count:
        size = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
        return failed(f"handle_batch returned {size} results for {count} items", PERMANENT)
    entry = results[index]
    if isinstance(entry, BaseException):
        return raised(entry)
    return output(entry)


_UNWIND_S = 0.5


async def stop_runner(runner: asyncio.Future[Any]) -> None:
    """Cancel an overrunning call and give it a moment to unwind, so its result is reported
    after it stopped (a handler that ignores cancellation, or one in a thread, is left)."""
    runner.cancel()
    await asyncio.wait({runner}, timeout=_UNWIND_S)
