"""The worker pool: bounded concurrency, a bounded queue, timeouts, cancellation, drain.

It knows assignments and commands but no Kafka: what it has to say (``TaskStarted``,
``ReportProgress``, ``ReportResult``) goes to a ``report`` callable, so the executor can put it
on ``task.commands`` and tests can collect it in a list.

Units: the queue holds *jobs* (one assignment each, a batch is one job), so back-pressure maps
one-to-one onto consumed records; ``concurrency`` bounds the *handler calls* running at once
(a batch's items run concurrently and share those slots with everything else).

What gets reported:

- a task: ``TaskStarted`` when its handler starts, then one ``ReportResult`` with the
  assignment's fencing token (failure ``"timeout"`` when it overran, ``str(exc)`` when the
  handler raised, ``"shutdown"`` when the pool was closed before it could finish);
- a batch: ``TaskStarted`` per item, then one ``ReportResult`` with ``batch_id`` and one
  ``ItemResult`` per item;
- a task cancelled by a cancel assignment: nothing (the processor cancelled it before it told
  us); a cancelled item of a batch still running: an ``ItemResult`` failure ``"cancelled"``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from pydantic import BaseModel

from schemas.commands import ItemResult, ReportProgress, ReportResult, TaskStarted
from schemas.records import Assignment
from streams.executor.context import AsyncHandler, Handler, SyncHandler, TaskContext
from streams.executor.errors import ExecutorError, PoolClosedError
from streams.secrets import Keyring, SealedValueError, open_payload

log = logging.getLogger(__name__)

TIMEOUT = "timeout"
CANCELLED = "cancelled"
SHUTDOWN = "shutdown"

Report = Callable[[BaseModel], None]
"""Receives each command the pool emits, in order, on the event loop thread; must not block."""


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

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Outcome:
    success: bool
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    cancelled: bool = False
    """Stopped by a cancel assignment (not reported for single tasks)."""


@dataclass(eq=False)
class _Item:
    task_id: str
    payload: dict[str, Any]
    ctx: TaskContext
    cancel_reason: str | None = None
    runner: asyncio.Future[Any] | None = None
    finished: bool = False


@dataclass(eq=False)
class _Job:
    assignment: Assignment
    items: list[_Item]
    on_done: Callable[[], None] | None


def is_async_handler(handler: Handler) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(call)


def _items_of(assignment: Assignment) -> list[tuple[str, dict[str, Any]]]:
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


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class WorkerPool:
    """Runs assignments through handlers with at most ``concurrency`` handler calls at once."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        report: Report,
        concurrency: int = 4,
        queue_size: int = 8,
        default_timeout_ms: int = 300_000,
        default_handler: Handler | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        if concurrency < 1:
            raise ExecutorError(f"concurrency must be at least 1, got {concurrency}")
        if queue_size < 1:
            raise ExecutorError(f"queue_size must be at least 1, got {queue_size}")
        if default_timeout_ms < 1:
            raise ExecutorError(f"default_timeout_ms must be positive, got {default_timeout_ms}")
        self._handlers = dict(handlers)
        self._default_handler = default_handler
        self._keyring = keyring
        self._report = report
        self.concurrency = concurrency
        self.queue_size = queue_size
        self._default_timeout_ms = default_timeout_ms
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._slots = asyncio.Semaphore(concurrency)
        self._room = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._by_task: dict[str, list[tuple[_Job, _Item]]] = {}
        self._by_batch: dict[str, list[_Job]] = {}
        self._total = 0
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._running = 0
        self._jobs = 0  # accepted and not finished

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._workers:
            return
        self._loop = asyncio.get_running_loop()
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="taskstream-handler"
        )
        self._workers = [
            asyncio.create_task(self._worker(), name=f"taskstream-worker-{i}")
            for i in range(self.concurrency)
        ]

    async def close(self, drain_timeout_s: float = 10.0) -> bool:
        """Stop accepting work, let accepted work finish for up to ``drain_timeout_s``, then
        cancel what is left (reported as failure ``"shutdown"``). True when everything drained.
        """
        self._closing = True
        self._room.set()
        drained = True
        if self._workers and self._jobs:
            try:
                await asyncio.wait_for(self._queue.join(), drain_timeout_s)
            except TimeoutError:
                drained = False
                log.warning(
                    "drain bound of %.1fs reached; cancelling %d running and %d queued tasks",
                    drain_timeout_s,
                    self._running,
                    self._queue.qsize(),
                )
                self._cancel_everything(SHUTDOWN)
                with contextlib.suppress(TimeoutError):
                    # Cancelled work reports at once unless a handler ignores cancellation.
                    await asyncio.wait_for(self._queue.join(), max(1.0, drain_timeout_s))
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        return drained

    @property
    def closing(self) -> bool:
        return self._closing

    # -- intake ------------------------------------------------------------------------------

    def room(self) -> int:
        """How many more jobs the queue takes without waiting."""
        return max(0, self.queue_size - self._queue.qsize())

    async def wait_for_room(self) -> None:
        while self.room() == 0 and not self._closing:
            self._room.clear()
            await self._room.wait()

    async def submit(
        self, assignment: Assignment, on_done: Callable[[], None] | None = None
    ) -> None:
        """Queue a task or batch assignment; waits while the queue is full (never drops).

        ``on_done`` is called once the job's result has been handed to ``report`` (or the job
        ended without one), for offset tracking.
        """
        if self._closing:
            raise PoolClosedError("the worker pool is shutting down")
        if not self._workers:
            raise ExecutorError("the worker pool is not started")
        loop = self._loop
        items: list[_Item] = []
        for task_id, payload in _items_of(assignment):
            timeout_ms = assignment.timeout_ms or self._default_timeout_ms
            ctx = TaskContext(
                task_id=task_id,
                client_id=assignment.client_id,
                operation=assignment.operation,
                payload=payload,
                attempt=assignment.attempt,
                fencing_token=assignment.fencing_token,
                session_id=assignment.session_id,
                batch_id=assignment.batch_id,
                timeout_s=timeout_ms / 1000,
                _loop=loop,
            )
            items.append(_Item(task_id=task_id, payload=payload, ctx=ctx))
        job = _Job(assignment=assignment, items=items, on_done=on_done)
        for item in items:
            item.ctx._progress = self._progress_sink(job, item)
            self._by_task.setdefault(item.task_id, []).append((job, item))
        if assignment.batch_id is not None:
            self._by_batch.setdefault(assignment.batch_id, []).append(job)
        self._total += len(items)
        self._jobs += 1
        try:
            await self._queue.put(job)
        except BaseException:
            # Not accepted (the caller gave up waiting for room): as if never submitted.
            self._forget(job)
            self._total -= len(items)
            self._jobs -= 1
            raise

    def cancel(self, cancel: Assignment) -> int:
        """Apply a cancel assignment to queued and running work; returns the tasks it reached.

        It matches by ``task_id`` (one task, or one item of a batch) or, without one, by
        ``batch_id``; work carrying a newer fencing token than a non-zero cancel token is left
        alone (the cancel predates it).
        """
        targets: list[_Item] = []
        if cancel.task_id is not None:
            for job, item in self._by_task.get(cancel.task_id, []):
                if self._cancel_applies(cancel, job):
                    targets.append(item)
        elif cancel.batch_id is not None:
            for job in self._by_batch.get(cancel.batch_id, []):
                if self._cancel_applies(cancel, job):
                    targets.extend(job.items)
        reached = 0
        for item in targets:
            if self._cancel_item(item, CANCELLED):
                reached += 1
        return reached

    @staticmethod
    def _cancel_applies(cancel: Assignment, job: _Job) -> bool:
        token = cancel.fencing_token
        return token <= 0 or job.assignment.fencing_token <= token

    def _cancel_item(self, item: _Item, reason: str) -> bool:
        if item.finished or item.cancel_reason is not None:
            return False
        item.cancel_reason = reason
        item.ctx.mark_cancelled()
        if item.runner is not None:
            item.runner.cancel()
        return True

    def _cancel_everything(self, reason: str) -> None:
        for pairs in list(self._by_task.values()):
            for _job, item in pairs:
                self._cancel_item(item, reason)

    def metrics(self) -> ExecutorMetrics:
        finished = self._completed + self._failed + self._cancelled
        return ExecutorMetrics(
            total=self._total,
            completed=self._completed,
            failed=self._failed,
            cancelled=self._cancelled,
            pending=self._total - finished - self._running,
            running=self._running,
            workers=self.concurrency,
            queued_jobs=self._queue.qsize(),
            queue_size=self.queue_size,
        )

    # -- work --------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            self._room.set()
            try:
                await self._run_job(job)
            except Exception:
                # A bug here must not kill the worker silently and stall the queue.
                log.exception("worker failed on assignment %s", job.assignment)
            finally:
                self._forget(job)
                self._jobs -= 1
                self._queue.task_done()
                if job.on_done is not None:
                    job.on_done()

    def _forget(self, job: _Job) -> None:
        for item in job.items:
            pairs = self._by_task.get(item.task_id)
            if pairs is not None:
                pairs[:] = [(j, i) for j, i in pairs if j is not job]
                if not pairs:
                    del self._by_task[item.task_id]
        batch_id = job.assignment.batch_id
        if batch_id is not None and batch_id in self._by_batch:
            jobs = [j for j in self._by_batch[batch_id] if j is not job]
            if jobs:
                self._by_batch[batch_id] = jobs
            else:
                del self._by_batch[batch_id]

    async def _run_job(self, job: _Job) -> None:
        a = job.assignment
        started = time.monotonic()
        outcomes = await asyncio.gather(*(self._run_item(job, item) for item in job.items))
        elapsed_ms = int((time.monotonic() - started) * 1000)
        if a.kind == "task":
            outcome = outcomes[0]
            if outcome.cancelled:
                return
            self._report(
                ReportResult(
                    client_id=a.client_id,
                    task_id=a.task_id,
                    session_id=a.session_id,
                    fencing_token=a.fencing_token,
                    success=outcome.success,
                    output=outcome.output,
                    error=outcome.error,
                    execution_time_ms=elapsed_ms,
                )
            )
            return
        if all(o.cancelled for o in outcomes):
            return
        failures = sum(1 for o in outcomes if not o.success)
        self._report(
            ReportResult(
                client_id=a.client_id,
                batch_id=a.batch_id,
                session_id=a.session_id,
                fencing_token=a.fencing_token,
                success=failures == 0,
                output={"succeeded": len(outcomes) - failures, "failed": failures},
                error=None if failures == 0 else f"{failures} of {len(outcomes)} items failed",
                items=[
                    ItemResult(
                        task_id=item.task_id,
                        success=o.success,
                        output=o.output,
                        error=o.error,
                    )
                    for item, o in zip(job.items, outcomes, strict=True)
                ],
                execution_time_ms=elapsed_ms,
            )
        )

    def _handler_for(self, operation: str) -> Handler | None:
        return self._handlers.get(operation, self._default_handler)

    async def _run_item(self, job: _Job, item: _Item) -> _Outcome:
        try:
            outcome = await self._attempt(job, item)
        finally:
            item.finished = True
        if outcome.success:
            self._completed += 1
        elif outcome.cancelled or outcome.error == SHUTDOWN:
            self._cancelled += 1
        else:
            self._failed += 1
        return outcome

    async def _attempt(self, job: _Job, item: _Item) -> _Outcome:
        a = job.assignment
        async with self._slots:
            if item.cancel_reason is not None:
                return self._stopped(item)
            handler = self._handler_for(a.operation)
            if handler is None:
                return _Outcome(False, error=f"no handler for operation {a.operation!r}")
            try:
                # Sealed credentials are opened here and nowhere else (streams.secrets).
                item.ctx.payload = open_payload(self._keyring, a.client_id, item.ctx.payload)
            except SealedValueError as exc:
                return _Outcome(False, error=str(exc))
            self._report(
                TaskStarted(
                    client_id=a.client_id, task_id=item.task_id, fencing_token=a.fencing_token
                )
            )
            self._running += 1
            try:
                return await self._call(handler, item)
            finally:
                self._running -= 1

    def _stopped(self, item: _Item) -> _Outcome:
        if item.cancel_reason == CANCELLED:
            return _Outcome(False, error=CANCELLED, cancelled=True)
        return _Outcome(False, error=item.cancel_reason or CANCELLED)

    async def _call(self, handler: Handler, item: _Item) -> _Outcome:
        ctx = item.ctx
        runner: asyncio.Future[Any]
        if is_async_handler(handler):
            runner = asyncio.ensure_future(cast(AsyncHandler, handler)(ctx))
        else:
            loop = asyncio.get_running_loop()
            runner = loop.run_in_executor(self._threads, cast(SyncHandler, handler), ctx)
        item.runner = runner
        runner.add_done_callback(_consume_result)
        try:
            done, _ = await asyncio.wait({runner}, timeout=ctx.timeout_s)
        except asyncio.CancelledError:
            ctx.mark_cancelled()
            runner.cancel()
            raise
        if not done:
            item.cancel_reason = item.cancel_reason or TIMEOUT
            ctx.mark_cancelled()
            runner.cancel()
            return _Outcome(False, error=TIMEOUT)
        if item.cancel_reason is not None:
            # Cancelled while running; whatever the handler did on its way out does not count.
            return self._stopped(item)
        if runner.cancelled():
            return _Outcome(False, error=CANCELLED)
        exc = runner.exception()
        if exc is not None:
            return _Outcome(False, error=_error_text(exc))
        return _output(runner.result())

    def _progress_sink(self, job: _Job, item: _Item) -> Callable[[float, str | None], None]:
        a = job.assignment

        def sink(fraction: float, message: str | None) -> None:
            if item.finished or item.cancel_reason is not None:
                return  # late progress from a thread must not follow the result
            self._report(
                ReportProgress(
                    client_id=a.client_id,
                    task_id=item.task_id,
                    fencing_token=a.fencing_token,
                    progress=fraction,
                    message=message,
                )
            )

        return sink


def _consume_result(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned runner's outcome so asyncio does not warn about it."""
    if not future.cancelled():
        future.exception()


def _output(result: Any) -> _Outcome:
    if result is None:
        return _Outcome(True, output={})
    if not isinstance(result, Mapping):
        return _Outcome(False, error=f"handler returned {type(result).__name__}, expected a dict")
    output = dict(result)
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        return _Outcome(False, error=f"handler output is not JSON: {exc}")
    return _Outcome(True, output=output)
