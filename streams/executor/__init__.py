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
"""

from streams.executor.context import Handler, TaskContext
from streams.executor.errors import (
    ApiCallConfigError,
    ApiCallError,
    ExecutorError,
    HandlerError,
    PoolClosedError,
    SimulatedFailure,
)
from streams.executor.executor import Executor, SessionSpec
from streams.executor.pool import CANCELLED, SHUTDOWN, TIMEOUT, ExecutorMetrics, WorkerPool

__all__ = [
    "CANCELLED",
    "SHUTDOWN",
    "TIMEOUT",
    "ApiCallConfigError",
    "ApiCallError",
    "Executor",
    "ExecutorError",
    "ExecutorMetrics",
    "Handler",
    "HandlerError",
    "PoolClosedError",
    "SessionSpec",
    "SimulatedFailure",
    "TaskContext",
    "WorkerPool",
]
