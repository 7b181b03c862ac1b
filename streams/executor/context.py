"""What a handler sees of one task, and the handler signatures the executor accepts."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from schemas.commands import ResourcesUsed
from streams.executor.errors import ExecutorError

ProgressSink: TypeAlias = Callable[[float, str | None], None]


@dataclass(eq=False)
class TaskContext:
    """One task (or one item of a batch) handed to a handler.

    ``report_progress`` is a plain (non-async) call that never blocks, so sync handlers running
    in a worker thread can call it too. ``cancelled`` turns true when the task is cancelled or
    times out: async handlers are also interrupted with ``CancelledError``; a sync handler in a
    thread cannot be interrupted and should poll the flag.
    """

    task_id: str
    client_id: str
    operation: str
    payload: Mapping[str, Any]
    attempt: int
    fencing_token: int
    session_id: str | None = None
    batch_id: str | None = None
    timeout_s: float | None = None
    resources_used: ResourcesUsed | None = None
    """Set by ``report_resources``; sent with the result (``ReportResult.resources_used``)."""
    quality: float | None = None
    """Set by ``report_quality``; sent with the result (``ReportResult.quality``)."""
    _progress: ProgressSink | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    # A plain flag, not a ``threading.Event``: a thread reads it and the loop sets it once,
    # which needs no lock, and an Event (a Condition and a lock) per task cost the executor
    # 4 % of its CPU.
    _cancelled: bool = field(default=False, repr=False)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1] (clamped); sent as a ``ReportProgress`` command."""
        if self._progress is None or self.cancelled:
            return
        value = min(1.0, max(0.0, float(fraction)))
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self._progress(value, message)
        else:
            loop.call_soon_threadsafe(self._progress, value, message)

    def report_resources(self, cpu: float = 0.0, memory: float = 0.0, disk: float = 0.0) -> None:
        """What this attempt used (CPU seconds, peak memory and disk written in MiB), sent
        with its result and shown per execution in the view (the seed's ``resourcesUsed``)."""
        values = {"cpu": cpu, "memory": memory, "disk": disk}
        bad = {k: v for k, v in values.items() if not (math.isfinite(v) and v >= 0)}
        if bad:
            raise ExecutorError(f"resources used must be finite and >= 0, got {bad}")
        self.resources_used = ResourcesUsed(cpu=cpu, memory=memory, disk=disk)

    def report_quality(self, quality: float) -> None:
        """The handler's own score of its result, 0 to 1 (the seed's ``quality``)."""
        value = float(quality)
        if not 0.0 <= value <= 1.0:  # NaN is refused too
            raise ExecutorError(f"quality must be between 0 and 1, got {quality!r}")
        self.quality = value

    def mark_cancelled(self) -> None:
        self._cancelled = True


@dataclass(eq=False)
class BatchContext:
    """A whole batch handed to a handler's ``handle_batch(ctx, items)`` (one browser
    interaction for ten tag adds). ``items`` are the items' own contexts, in batch order;
    ``timeout_s`` is what the batch has left until its deadline."""

    batch_id: str
    client_id: str
    operation: str
    attempt: int
    fencing_token: int
    session_id: str | None
    timeout_s: float | None
    items: tuple[TaskContext, ...]

    @property
    def cancelled(self) -> bool:
        """True once every item is cancelled (or the batch timed out)."""
        return all(item.cancelled for item in self.items)

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """The same progress for every item."""
        for item in self.items:
            item.report_progress(fraction, message)


AsyncHandler: TypeAlias = Callable[[TaskContext], Awaitable[Mapping[str, Any] | None]]
SyncHandler: TypeAlias = Callable[[TaskContext], Mapping[str, Any] | None]


class BatchHandler(Protocol):
    """A handler object that takes a whole batch in one call (see ``Handler``)."""

    def handle_batch(self, ctx: BatchContext, items: list[TaskContext]) -> Any: ...


Handler: TypeAlias = AsyncHandler | SyncHandler | BatchHandler
"""``async def handler(ctx) -> dict`` (or a plain function, run in a worker thread).
Returning means success with that output (``None`` = ``{}``); raising means failure with
``str(exc)`` as the error, classed by the exception (``streams.executor.outcomes``).

A handler object may also have ``handle_batch(ctx: BatchContext, items) -> list``
(async, or plain and run in a thread): the executor then hands it a whole batch in one call
(a task alone runs as a batch of one when the object has no ``__call__``). The list has one
entry per item, in order: a dict (or ``None``) for success, an exception instance for that
item's failure. Raising fails every item. Without ``handle_batch`` the items of a batch run one
after another, each within the session's ``max_concurrent``."""

BatchResult: TypeAlias = list[Mapping[str, Any] | BaseException | None]
