"""Typed failures of the built-in handlers; each message is the task's reported error."""

from __future__ import annotations

from streams.executor.errors import HandlerError, PermanentError, RetryableError

__all__ = [
    "BrowserAutomationError",
    "GhlActionError",
    "GhlPermanentError",
    "GhlRetryableError",
    "NoBrowserDriverError",
    "NotificationError",
    "OutboundRefusedError",
    "ReportError",
    "TaskConfigError",
]


class TaskConfigError(PermanentError):
    """A task's payload is invalid for its type; the message names every bad field."""


class GhlActionError(HandlerError):
    """A GoHighLevel request failed (no API key, transport error, timeout, non-2xx)."""


class GhlPermanentError(GhlActionError, PermanentError):
    """A GoHighLevel call that retrying cannot fix: a 4xx answer other than 408 and 429, a
    payload the operation cannot use, a client without credentials, a refused destination."""


class GhlRetryableError(GhlActionError, RetryableError):
    """A GoHighLevel call worth trying again: 429 (``retry_after_ms`` from its Retry-After, or
    the rate-limit window), 408, a 5xx answer, a timeout or a broken connection."""

    def __init__(self, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message, retry_after_ms)


class NotificationError(HandlerError):
    """A notification or reminder could not be delivered to its webhook."""


class ReportError(HandlerError):
    """A report could not be computed (the read side did not answer as expected)."""


class BrowserAutomationError(HandlerError):
    """A browser step failed, or its result cannot be reported."""


class NoBrowserDriverError(BrowserAutomationError, PermanentError):
    """A browser task reached an executor that has no ``BrowserDriver`` configured."""


class OutboundRefusedError(PermanentError):
    """A request's destination (after DNS resolution, or a redirect's) is not a public address
    and ``TASKSTREAM_OUTBOUND_ALLOW`` does not list it; retrying cannot help."""
