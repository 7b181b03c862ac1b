"""What one handler call came to, and the failure class each way of failing reports.

``PermanentError`` -> ``permanent`` (no retry), ``SessionFaultError`` -> ``session`` (retried,
the session's health drops), ``RetryableError`` and every other exception -> ``retryable``
(with its ``retry_after_ms``). The executor's own verdicts: a handler that overran its time is
the session's fault; a missing handler, a sealed credential that cannot be opened and an output
that is not a JSON object are permanent (trying again gives the same); work whose deadline
passed before it started, and work stopped by a shutdown, are retryable.

Two exceptions are not failures: ``NeedsInput`` ends a task's attempt with ``RequestInput``
(the task waits for a person's answer) and ``Defer`` with ``DeferTask`` (queued again at its
time). A batch item cannot wait on its own, so in a batch they fail the item (permanent).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.commands import (
    MAX_TRACEBACK_LENGTH,
    PERMANENT,
    RETRYABLE,
    SESSION,
    Command,
    DeferTask,
    ReportResult,
    RequestInput,
)
from schemas.credentials import credentials
from schemas.masking import Masker, mask_text
from schemas.records import Assignment
from streams.executor.context import TaskContext
from streams.executor.errors import (
    Defer,
    NeedsInput,
    PermanentError,
    RetryableError,
    SessionFaultError,
)

TIMEOUT: Final = "timeout"
CANCELLED: Final = "cancelled"
SHUTDOWN: Final = "shutdown"
DEADLINE_PASSED: Final = "deadline passed before the work started"


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    cancelled: bool = False
    """Stopped by a cancel assignment (not reported for single tasks)."""
    failure_class: str | None = None
    retry_after_ms: int | None = None
    traceback: str | None = None
    """The full traceback when the handler raised, not masked yet (``masked_traceback``)."""
    prompt: str | None = None
    """The handler raised ``NeedsInput``: the attempt ends waiting for a person."""
    defer_until_ms: int | None = None
    """The handler raised ``Defer``: the attempt ends, the task runs again then."""


def failed(error: str, failure_class: str, retry_after_ms: int | None = None) -> Outcome:
    return Outcome(False, error=error, failure_class=failure_class, retry_after_ms=retry_after_ms)


def classify(exc: BaseException) -> tuple[str, int | None]:
    """(failure class, retry after) of an exception a handler raised."""
    if isinstance(exc, SessionFaultError):
        return SESSION, exc.retry_after_ms
    if isinstance(exc, RetryableError):
        return RETRYABLE, exc.retry_after_ms
    if isinstance(exc, PermanentError):
        return PERMANENT, None
    return RETRYABLE, None


def raised(exc: BaseException) -> Outcome:
    if isinstance(exc, NeedsInput):
        return Outcome(False, error=str(exc), failure_class=PERMANENT, prompt=exc.prompt)
    if isinstance(exc, Defer):
        return Outcome(False, error=str(exc), failure_class=PERMANENT, defer_until_ms=exc.until_ms)
    failure_class, retry_after_ms = classify(exc)
    return Outcome(
        False,
        error=str(exc) or type(exc).__name__,
        failure_class=failure_class,
        retry_after_ms=retry_after_ms,
        traceback="".join(traceback.format_exception(exc)),
    )


_NO_SECRETS: Final = Masker(())


def payload_masker(payload: Mapping[str, Any]) -> Masker:
    """Masks the payload's credentials (opened for the handler, so an error message or a
    traceback may quote them) in what the executor reports."""
    return Masker(leaf for _path, value in credentials(dict(payload)) for leaf in _leaves(value))


def masked_traceback(text: str | None, masker: Masker) -> str | None:
    """A traceback fit to leave the executor: the payload's credentials and anything that
    looks like one masked (``schemas.masking``), cut to its last ``MAX_TRACEBACK_LENGTH``
    characters (the end names the error)."""
    if text is None:
        return None
    text = mask_text(masker.text(text))
    if len(text) > MAX_TRACEBACK_LENGTH:
        text = "...\n" + text[-(MAX_TRACEBACK_LENGTH - 4) :]
    return text


def timed_out() -> Outcome:
    return failed(TIMEOUT, SESSION)


def stopped(reason: str) -> Outcome:
    """Work stopped by a cancel (not reported for a task) or a shutdown (retried elsewhere)."""
    if reason == CANCELLED:
        return Outcome(False, error=CANCELLED, cancelled=True, failure_class=RETRYABLE)
    if reason == TIMEOUT:
        return timed_out()
    return failed(reason, RETRYABLE)


def output(result: Any) -> Outcome:
    """A handler's return value as an outcome: a JSON object (``None`` = ``{}``) succeeds."""
    if result is None:
        return Outcome(True, output={})
    if not isinstance(result, Mapping):
        return failed(f"handler returned {type(result).__name__}, expected a dict", PERMANENT)
    value = dict(result)
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        return failed(f"handler output is not JSON: {exc}", PERMANENT)
    return Outcome(True, output=value)


def _leaves(value: Any) -> list[str]:
    """The scalar values inside a credential (a token, or a dict of them), as text."""
    if isinstance(value, Mapping):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)] if value not in (None, "") else []


def waits(outcome: Outcome) -> bool:
    """The handler raised ``NeedsInput`` or ``Defer``."""
    return outcome.prompt is not None or outcome.defer_until_ms is not None


def task_report(a: Assignment, outcome: Outcome, elapsed_ms: int, ctx: TaskContext) -> Command:
    """The command that ends a single task's attempt: ``RequestInput``, ``DeferTask`` or
    ``ReportResult`` (with the handler's resources and quality, and the error and traceback
    masked with the payload's credentials)."""
    assert a.task_id is not None
    if outcome.prompt is not None:
        return RequestInput(
            client_id=a.client_id,
            task_id=a.task_id,
            fencing_token=a.fencing_token,
            prompt=outcome.prompt,
            session_id=a.session_id,
            execution_time_ms=elapsed_ms,
        )
    if outcome.defer_until_ms is not None:
        return DeferTask(
            client_id=a.client_id,
            task_id=a.task_id,
            fencing_token=a.fencing_token,
            until_ms=outcome.defer_until_ms,
            reason=outcome.error,
            session_id=a.session_id,
            execution_time_ms=elapsed_ms,
        )
    # Only an error or a traceback can quote the payload's credentials: a success is reported
    # without looking for them (that look was 5 % of the executor's CPU per no-op task).
    quotes = outcome.error is not None or outcome.traceback is not None
    masker = payload_masker(ctx.payload) if quotes else _NO_SECRETS
    return ReportResult(
        client_id=a.client_id,
        task_id=a.task_id,
        session_id=a.session_id,
        fencing_token=a.fencing_token,
        success=outcome.success,
        output=outcome.output,
        error=None if outcome.error is None else masker.text(outcome.error),
        execution_time_ms=elapsed_ms,
        failure_class=None if outcome.success else outcome.failure_class,
        retry_after_ms=None if outcome.success else outcome.retry_after_ms,
        traceback=masked_traceback(outcome.traceback, masker),
        resources_used=ctx.resources_used,
        quality=ctx.quality,
    )
