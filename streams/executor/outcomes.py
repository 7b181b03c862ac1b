"""What one handler call came to, and the failure class each way of failing reports.

``PermanentError`` -> ``permanent`` (no retry), ``SessionFaultError`` -> ``session`` (retried,
the session's health drops), ``RetryableError`` and every other exception -> ``retryable``
(with its ``retry_after_ms``). The executor's own verdicts: a handler that overran its time is
the session's fault; a missing handler, a sealed credential that cannot be opened and an output
that is not a JSON object are permanent (trying again gives the same); work whose deadline
passed before it started, and work stopped by a shutdown, are retryable.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.commands import MAX_TRACEBACK_LENGTH, PERMANENT, RETRYABLE, SESSION
from schemas.credentials import credentials
from schemas.masking import Masker, mask_text
from streams.executor.errors import PermanentError, RetryableError, SessionFaultError

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
    failure_class, retry_after_ms = classify(exc)
    return Outcome(
        False,
        error=str(exc) or type(exc).__name__,
        failure_class=failure_class,
        retry_after_ms=retry_after_ms,
        traceback="".join(traceback.format_exception(exc)),
    )


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
