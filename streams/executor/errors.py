"""Typed errors of the executor SDK."""

from __future__ import annotations

from streams.errors import TaskstreamError

__all__ = [
    "ApiCallConfigError",
    "ApiCallError",
    "ExecutorError",
    "HandlerError",
    "PoolClosedError",
    "SimulatedFailure",
]


class ExecutorError(TaskstreamError):
    """The executor cannot run (bad arguments, missing topics, a failed background loop)."""


class PoolClosedError(ExecutorError):
    """Work was submitted to a worker pool that is shutting down."""


class HandlerError(TaskstreamError):
    """A handler failed a task on purpose; the message becomes the reported error."""


class SimulatedFailure(HandlerError):
    """The simulated GHL handler drew a failure."""


class ApiCallConfigError(HandlerError):
    """An ``api_call`` payload is invalid; the message names every bad field."""


class ApiCallError(HandlerError):
    """An ``api_call`` request failed (transport error, timeout or a non-2xx answer)."""
