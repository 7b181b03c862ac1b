"""Typed errors of the executor SDK."""

from __future__ import annotations

from datetime import datetime

from streams.errors import TaskstreamError

__all__ = [
    "ApiCallConfigError",
    "ApiCallError",
    "Defer",
    "ExecutorError",
    "HandlerError",
    "NeedsInput",
    "PermanentError",
    "PoolClosedError",
    "RetryableError",
    "SessionFaultError",
    "SimulatedFailure",
]


class ExecutorError(TaskstreamError):
    """The executor cannot run (bad arguments, missing topics, a failed background loop)."""


class PoolClosedError(ExecutorError):
    """Work was submitted to a worker pool that is shutting down."""


class HandlerError(TaskstreamError):
    """A handler failed a task on purpose; the message becomes the reported error."""


class PermanentError(HandlerError):
    """Retrying cannot help (bad config, a 4xx answer other than 408/429, a missing handler):
    the task fails at once, and the session is not blamed."""


class RetryableError(HandlerError):
    """Worth trying again later (a 429, a 5xx, a timeout of a call the handler made); the
    session is not blamed. ``retry_after_ms`` (a Retry-After) is the least wait before it."""

    def __init__(self, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        if retry_after_ms is not None and retry_after_ms < 0:
            raise ValueError(f"retry_after_ms must not be negative, got {retry_after_ms}")
        self.retry_after_ms = retry_after_ms


class SessionFaultError(RetryableError):
    """The session itself failed (its browser died, it lost its login): retried elsewhere or
    later, and the session's health drops."""


class NeedsInput(HandlerError):
    """Not a failure: the attempt ends asking a person ``prompt``. The task waits for input
    (``waiting_input``) and runs again with the answer in ``payload["input"]``."""

    def __init__(self, prompt: str) -> None:
        if not prompt:
            raise ValueError("NeedsInput needs a prompt for the person who answers")
        super().__init__(prompt)
        self.prompt = prompt


class Defer(HandlerError):
    """Not a failure: the attempt ends putting the task off until ``until`` (epoch
    milliseconds, or an aware datetime). The task is ``deferred`` and queued again then; no
    retry is used up."""

    def __init__(self, until: int | datetime, reason: str | None = None) -> None:
        if isinstance(until, datetime):
            if until.tzinfo is None:
                raise ValueError("Defer needs an aware datetime (with a time zone)")
            until_ms = int(until.timestamp() * 1000)
        elif isinstance(until, int) and not isinstance(until, bool):
            until_ms = until
        else:
            raise TypeError(f"Defer takes epoch milliseconds or a datetime, got {until!r}")
        if until_ms < 0:
            raise ValueError(f"Defer until must not be negative, got {until_ms}")
        super().__init__(reason or f"deferred until {until_ms}")
        self.until_ms = until_ms
        self.reason = reason


class SimulatedFailure(HandlerError):
    """The simulated GHL handler drew a failure."""


class ApiCallConfigError(PermanentError):
    """An ``api_call`` payload is invalid; the message names every bad field."""


class ApiCallError(HandlerError):
    """An ``api_call`` request failed (transport error, timeout or a non-2xx answer); raised as
    one of the classed subclasses below."""


class ApiCallRefusedError(ApiCallError, PermanentError):
    """An ``api_call`` answered with a 4xx other than 408 and 429: the request is wrong."""


class ApiCallRetryableError(ApiCallError, RetryableError):
    """An ``api_call`` answered 408, 429 or 5xx, timed out or lost its connection."""
