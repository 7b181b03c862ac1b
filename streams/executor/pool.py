"""The worker pool: bounded concurrency, a bounded queue, timeouts, cancellation, drain.

It knows assignments and commands but no Kafka: what it says goes to a ``report`` callable
(the executor puts it on ``task.commands``; tests collect it in a list).

Units: the queue holds *jobs* (one assignment each, a batch is one job), so back-pressure maps
one-to-one onto consumed records; ``concurrency`` bounds the *handler calls* running at once
across everything, and ``session_limits`` (a session's ``max_concurrent``) bounds those running
for one session: a browser session that does one thing at a time never gets two calls. The
items of a batch run one after another, each taking the session's slot while it runs, unless
the handler takes the whole batch at once (``handle_batch``, one slot for the whole batch).

Nothing starts after its assignment's deadline (``deadline_at_ms``, this machine's clock): it is
reported failed (retryable, ``DEADLINE_PASSED``) unrun; no call gets more time than that.

What gets reported (failures carry their class, ``streams.executor.outcomes``):

- a task: ``TaskStarted`` when its handler starts, then one ``ReportResult`` with the
  assignment's fencing token (failure ``"timeout"`` when it overran, ``str(exc)`` when the
  handler raised, ``"shutdown"`` when the pool was closed before it could finish);
- a batch: ``TaskStarted`` per item, then one ``ReportResult`` with an ``ItemResult`` each;
- a task cancelled by a cancel assignment: nothing (the processor cancelled it before it told
  us); a cancelled item of a batch still running: an ``ItemResult`` failure ``"cancelled"``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from pydantic import BaseModel

from schemas.commands import (
    PERMANENT,
    RETRYABLE,
    ItemResult,
    ReportProgress,
    ReportResult,
    TaskStarted,
)
from schemas.records import Assignment
from schemas.states import TaskStatus
from streams.executor.context import AsyncHandler, BatchContext, Handler, SyncHandler, TaskContext
from streams.executor.errors import ExecutorError, PoolClosedError
from streams.executor.job_index import JobIndex, cancel_item
from streams.executor.jobs import (
    ExecutorMetrics,
    Item,
    Job,
    batch_entry,
    consume_result,
    is_async_handler,
    item_outcome,
    items_of,
    least,
    release,
    stop_runner,
)
from streams.executor.outcomes import (
    CANCELLED,
    DEADLINE_PASSED,
    SHUTDOWN,
    TIMEOUT,
    Outcome,
    failed,
    output,
    raised,
    stopped,
    task_report,
    timed_out,
    waits,
)
from streams.executor.watch import ErrorLog, ProgressCallback, ProgressHook, TaskError, percent
from streams.secrets import Keyring, SealedValueError, open_payload

log = logging.getLogger(__name__)

__all__ = ["CANCELLED", "SHUTDOWN", "TIMEOUT", "ExecutorMetrics", "WorkerPool"]

Report = Callable[[BaseModel], None]
"""Receives each command the pool emits, in order, on the event loop thread; must not block."""


class WorkerPool:
    """Runs assignments through handlers with at most ``concurrency`` handler calls at once.

    The queue hands out the most urgent job first (the assignment's ``priority``, 1 first, 5
    last; arrival order among equals), keeps the last ``errors_kept`` failures for ``errors()``
    and calls ``on_progress`` (``streams.executor.watch``).
    """

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
        session_limits: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        on_progress: ProgressCallback | None = None,
        errors_kept: int = 100,
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
        self._queue: asyncio.PriorityQueue[tuple[int, int, Job]] = asyncio.PriorityQueue(
            maxsize=queue_size
        )
        self._arrivals = itertools.count()
        self._errors = ErrorLog(errors_kept)
        self._on_progress = ProgressHook(on_progress)
        self._slots = asyncio.Semaphore(concurrency)
        limits = dict(session_limits or {})
        if any(limit < 1 for limit in limits.values()):
            raise ExecutorError(f"session limits must be at least 1, got {limits}")
        # A session not named here is bounded by ``concurrency`` alone.
        self._session_slots = {s: asyncio.Semaphore(n) for s, n in limits.items()}
        self._running_by_session: dict[str, int] = dict.fromkeys(limits, 0)
        self._clock = clock
        self._expired = 0
        self._room = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._index = JobIndex()
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
                for item in self._index.every_item():
                    cancel_item(item, SHUTDOWN)
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
        items: list[Item] = []
        for task_id, payload in items_of(assignment):
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
            items.append(Item(task_id=task_id, payload=payload, ctx=ctx))
        job = Job(assignment=assignment, items=items, on_done=on_done)
        for item in items:
            item.job = job
            item.ctx._progress = self._progress_sink(job, item)
        self._index.add(job)
        self._total += len(items)
        self._jobs += 1
        try:
            await self._queue.put((assignment.priority, next(self._arrivals), job))
        except BaseException:
            # Not accepted (the caller gave up waiting for room): as if never submitted.
            self._index.forget(job)
            self._total -= len(items)
            self._jobs -= 1
            raise

    def cancel(self, cancel: Assignment) -> int:
        """Apply a cancel assignment to queued and running work (``JobIndex.targets``);
        returns the tasks it reached."""
        return sum(1 for item in self._index.targets(cancel) if cancel_item(item, CANCELLED))

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
            expired=self._expired,
        )

    def running_by_session(self) -> dict[str, int]:
        """Handler calls running now per session named in ``session_limits``."""
        return dict(self._running_by_session)

    def errors(self) -> list[TaskError]:
        """The recent failed attempts (timeouts included, cancels not), oldest first."""
        return self._errors.recent()

    # -- work --------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            _, _, job = await self._queue.get()
            self._room.set()
            try:
                await self._run_job(job)
            except Exception:
                # A bug here must not kill the worker silently and stall the queue.
                log.exception("worker failed on assignment %s", job.assignment)
            finally:
                self._index.forget(job)
                self._jobs -= 1
                self._queue.task_done()
                if job.on_done is not None:
                    job.on_done()
                release(job)

    async def _run_job(self, job: Job) -> None:
        a = job.assignment
        started = time.monotonic()
        handler = self._handler_for(a.operation)
        whole = batch_entry(handler)
        outcomes: list[Outcome]
        if whole is not None and (a.kind == "batch" or not callable(handler)):
            outcomes = await self._run_whole(job, whole)
        else:
            outcomes = []
            for item in job.items:  # one after another, each within the session's limit
                outcomes.append(await self._run_item(job, item, handler))
        elapsed_ms = int((time.monotonic() - started) * 1000)
        if a.kind == "task":
            outcome, ctx = outcomes[0], job.items[0].ctx
            if outcome.cancelled:
                return
            self._report(task_report(a, outcome, elapsed_ms, ctx))
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
                        failure_class=None if o.success else o.failure_class,
                        retry_after_ms=None if o.success else o.retry_after_ms,
                    )
                    for item, o in zip(job.items, outcomes, strict=True)
                ],
                execution_time_ms=elapsed_ms,
            )
        )

    def _handler_for(self, operation: str) -> Handler | None:
        return self._handlers.get(operation, self._default_handler)

    def _count(self, job: Job, item: Item, outcome: Outcome) -> None:
        task_id = item.task_id
        if outcome.success:
            self._completed += 1
            self._on_progress(task_id, TaskStatus.COMPLETED, 100)
        elif outcome.cancelled or outcome.error == SHUTDOWN:
            self._cancelled += 1
            self._on_progress(task_id, TaskStatus.CANCELLED, self._on_progress.last(task_id))
        elif job.assignment.kind == "task" and waits(outcome):
            # NeedsInput / Defer: the attempt ends, the task waits; not a failure.
            status = TaskStatus.WAITING_INPUT if outcome.prompt else TaskStatus.DEFERRED
            self._on_progress(task_id, status, self._on_progress.last(task_id), outcome.error)
        else:
            self._failed += 1
            a = job.assignment
            error = outcome.error or "failed"
            self._errors.add(
                TaskError(
                    task_id=task_id,
                    error=error,
                    operation=a.operation,
                    attempt=a.attempt,
                    failure_class=outcome.failure_class,
                    at_ms=int(self._clock() * 1000),
                )
            )
            self._on_progress(task_id, TaskStatus.FAILED, self._on_progress.last(task_id), error)

    def _session_slot(self, session_id: str | None) -> contextlib.AbstractAsyncContextManager[Any]:
        slot = self._session_slots.get(session_id) if session_id is not None else None
        return slot if slot is not None else contextlib.nullcontext()

    def _remaining_s(self, a: Assignment) -> float | None:
        """Seconds until the assignment's deadline (None: it has none)."""
        if a.deadline_at_ms <= 0:
            return None
        return (a.deadline_at_ms - self._clock() * 1000) / 1000

    def _started(self, a: Assignment, item: Item) -> str | None:
        """Open the item's sealed credentials and report it started; else the reason not."""
        try:
            # Sealed credentials are opened here and nowhere else (streams.secrets).
            item.ctx.payload = open_payload(self._keyring, a.client_id, item.ctx.payload)
        except SealedValueError as exc:
            return str(exc)
        self._report(
            TaskStarted(client_id=a.client_id, task_id=item.task_id, fencing_token=a.fencing_token)
        )
        self._on_progress(item.task_id, TaskStatus.IN_PROGRESS, 0)
        return None

    def _running_delta(self, session_id: str | None, delta: int) -> None:
        self._running += delta
        if session_id in self._running_by_session:
            self._running_by_session[session_id] += delta

    async def _run_item(self, job: Job, item: Item, handler: Handler | None) -> Outcome:
        try:
            outcome = await self._attempt(job, item, handler)
        finally:
            item.finished = True
        self._count(job, item, outcome)
        return outcome

    async def _attempt(self, job: Job, item: Item, handler: Handler | None) -> Outcome:
        a = job.assignment
        async with self._session_slot(a.session_id), self._slots:
            if item.cancel_reason is not None:
                return stopped(item.cancel_reason)
            if handler is None:
                return failed(f"no handler for operation {a.operation!r}", PERMANENT)
            remaining = self._remaining_s(a)
            if remaining is not None and remaining <= 0:
                self._expired += 1
                return failed(DEADLINE_PASSED, RETRYABLE)
            refused = self._started(a, item)
            if refused is not None:
                return failed(refused, PERMANENT)
            item.ctx.timeout_s = least(item.ctx.timeout_s, remaining)
            self._running_delta(a.session_id, 1)
            try:
                return await self._call(handler, item)
            finally:
                self._running_delta(a.session_id, -1)

    async def _call(self, handler: Handler, item: Item) -> Outcome:
        ctx = item.ctx
        runner: asyncio.Future[Any]
        if is_async_handler(handler):
            runner = asyncio.ensure_future(cast(AsyncHandler, handler)(ctx))
        else:
            loop = asyncio.get_running_loop()
            runner = loop.run_in_executor(self._threads, cast(SyncHandler, handler), ctx)
        item.runner = runner
        runner.add_done_callback(consume_result)
        try:
            done, _ = await asyncio.wait({runner}, timeout=ctx.timeout_s)
        except asyncio.CancelledError:
            ctx.mark_cancelled()
            runner.cancel()
            raise
        if not done:
            item.cancel_reason = item.cancel_reason or TIMEOUT
            ctx.mark_cancelled()
            await stop_runner(runner)
            return timed_out()
        if item.cancel_reason is not None:
            # Cancelled while running; whatever the handler did on its way out does not count.
            return stopped(item.cancel_reason)
        if runner.cancelled():
            return failed(CANCELLED, RETRYABLE)
        exc = runner.exception()
        if exc is not None:
            return raised(exc)
        return output(runner.result())

    async def _run_whole(self, job: Job, whole: Callable[..., Any]) -> list[Outcome]:
        """One ``handle_batch`` call for every item still wanted, in one slot of the session."""
        a = job.assignment
        result: dict[int, Outcome] = {}
        try:
            async with self._session_slot(a.session_id), self._slots:
                live = self._whole_live(job, result)
                if live:
                    self._running_delta(a.session_id, len(live))
                    try:
                        await self._call_whole(job, whole, live, result)
                    finally:
                        self._running_delta(a.session_id, -len(live))
        finally:
            for item in job.items:
                item.finished = True
        outcomes = [result[id(item)] for item in job.items]
        for item, outcome in zip(job.items, outcomes, strict=True):
            self._count(job, item, outcome)
        return outcomes

    def _whole_live(self, job: Job, result: dict[int, Outcome]) -> list[Item]:
        """The items a whole-batch call runs (started); the others get their outcome now."""
        a = job.assignment
        remaining = self._remaining_s(a)
        live: list[Item] = []
        for item in job.items:
            if item.cancel_reason is not None:
                result[id(item)] = stopped(item.cancel_reason)
            elif remaining is not None and remaining <= 0:
                self._expired += 1
                result[id(item)] = failed(DEADLINE_PASSED, RETRYABLE)
            else:
                refused = self._started(a, item)
                if refused is not None:
                    result[id(item)] = failed(refused, PERMANENT)
                else:
                    live.append(item)
        return live

    async def _call_whole(
        self, job: Job, whole: Callable[..., Any], live: list[Item], result: dict[int, Outcome]
    ) -> None:
        a = job.assignment
        budget = sum(item.ctx.timeout_s or 0.0 for item in live) or None
        ctx = BatchContext(
            batch_id=a.batch_id or a.task_id or "",
            client_id=a.client_id,
            operation=a.operation,
            attempt=a.attempt,
            fencing_token=a.fencing_token,
            session_id=a.session_id,
            timeout_s=least(budget, self._remaining_s(a)),
            items=tuple(item.ctx for item in live),
        )
        args = (ctx, [item.ctx for item in live])
        runner: asyncio.Future[Any]
        if inspect.iscoroutinefunction(whole):
            runner = asyncio.ensure_future(whole(*args))
        else:
            runner = asyncio.get_running_loop().run_in_executor(self._threads, whole, *args)
        job.runner = runner
        runner.add_done_callback(consume_result)
        try:
            done, _ = await asyncio.wait({runner}, timeout=ctx.timeout_s)
        except asyncio.CancelledError:
            runner.cancel()
            raise
        if not done:
            await stop_runner(runner)
        for i, item in enumerate(live):
            if not done:
                item.cancel_reason = item.cancel_reason or TIMEOUT
                item.ctx.mark_cancelled()
                result[id(item)] = timed_out()
            elif item.cancel_reason is not None:
                result[id(item)] = stopped(item.cancel_reason)
            elif runner.cancelled():
                result[id(item)] = failed(CANCELLED, RETRYABLE)
            elif runner.exception() is not None:
                result[id(item)] = raised(cast(BaseException, runner.exception()))
            else:
                result[id(item)] = item_outcome(runner.result(), i, len(live))

    def _progress_sink(self, job: Job, item: Item) -> Callable[[float, str | None], None]:
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
            self._on_progress(item.task_id, TaskStatus.IN_PROGRESS, percent(fraction), message)

        return sink
