"""The executor SDK: serve sessions and/or the shared pool with handlers keyed by operation.

from streams.executor import Executor, SessionSpec, TaskContext

async def contact_create(ctx: TaskContext) -> dict:
    ctx.report_progress(0.5, "half way")
    return {"contact_id": "ct_1"}

executor = Executor(
    settings,
    sessions=[SessionSpec("s-1", client_id="acme", agent_id="agent-1", max_concurrent=3)],
    handlers={"contact_create": contact_create},
)
await executor.run()  # until executor.stop() (e.g. from a signal handler)

A handler fails a task by raising: ``PermanentError`` (no retry), ``RetryableError(msg,
retry_after_ms=...)`` (retried, the session not blamed), ``SessionFaultError`` (retried, the
session's health drops); any other exception is retryable. Two are not failures:
``NeedsInput(prompt)`` ends the attempt waiting for a person's answer (``waiting_input``;
``POST /tasks/{id}/input`` resumes it with ``payload["input"]``), ``Defer(until)`` (epoch
milliseconds or an aware datetime) puts the task off until then (``deferred``). A session's ``max_concurrent``
bounds the handler calls running for it, batch items included.
"""

from streams.executor.context import BatchContext, Handler, TaskContext
from streams.executor.errors import (
    ApiCallConfigError,
    ApiCallError,
    Defer,
    ExecutorError,
    HandlerError,
    NeedsInput,
    PermanentError,
    PoolClosedError,
    RetryableError,
    SessionFaultError,
    SimulatedFailure,
)
from streams.executor.executor import Executor, SessionSpec
from streams.executor.pool import CANCELLED, SHUTDOWN, TIMEOUT, ExecutorMetrics, WorkerPool
from streams.executor.watch import ProgressCallback, TaskError

__all__ = [
    "CANCELLED",
    "SHUTDOWN",
    "TIMEOUT",
    "ApiCallConfigError",
    "ApiCallError",
    "BatchContext",
    "Defer",
    "Executor",
    "ExecutorError",
    "ExecutorMetrics",
    "Handler",
    "HandlerError",
    "NeedsInput",
    "PermanentError",
    "PoolClosedError",
    "ProgressCallback",
    "RetryableError",
    "SessionFaultError",
    "SessionSpec",
    "SimulatedFailure",
    "TaskContext",
    "TaskError",
    "WorkerPool",
]
