"""Failure classes: which failures retry, which end a task at once, which are the session's.

An executor reports a failure as ``permanent`` (bad input, a 4xx, no handler: retrying cannot
help), ``retryable`` (a 429 or 5xx, a transport error: retried, at least ``retry_after_ms``
later) or ``session`` (the session's browser died, the handler overran its time: retried, and
the session's health drops). Only session faults move a session towards an open circuit, so
one poison task cannot stall a healthy session's client. A report without a class (writers
from before classes existed) keeps the old meaning: retryable and the session's fault. A task
that times out on the processor's clock is the session's fault too.
"""

from __future__ import annotations

from typing import Final

from schemas.commands import FAILURE_CLASSES, PERMANENT, RETRYABLE, SESSION

__all__ = [
    "MAX_RETRY_AFTER_MS",
    "PERMANENT",
    "PERMANENT_FAILURE",
    "RETRYABLE",
    "SESSION",
    "batch_health_effect",
    "effective",
    "is_session_fault",
    "retry_delay_ms",
]

PERMANENT_FAILURE: Final = "permanent failure"
"""``TaskFailed.reason`` of a task ended by a permanent failure."""

MAX_RETRY_AFTER_MS: Final = 3_600_000
"""A Retry-After longer than an hour is taken as an hour (a misbehaving server cannot park a
task for days)."""

HEALTH_SUCCESS: Final = "success"
HEALTH_FAILURE: Final = "failure"
HEALTH_NONE: Final = "none"


def effective(failure_class: str | None) -> str:
    """The class a failure counts as: an unclassified one (or one this version does not know)
    is the session's, the rule before classes existed."""
    return failure_class if failure_class in FAILURE_CLASSES else SESSION


def is_session_fault(failure_class: str | None) -> bool:
    """Whether a failure of this class (as recorded in an event) lowers the session's health."""
    return failure_class is None or failure_class == SESSION


def retry_delay_ms(backoff_ms: int, retry_after_ms: int | None) -> int:
    """The wait before a retry: the backoff, or the server's Retry-After when that is longer."""
    if retry_after_ms is None:
        return backoff_ms
    return max(backoff_ms, min(retry_after_ms, MAX_RETRY_AFTER_MS))


def batch_health_effect(outcomes: list[tuple[bool, str | None]]) -> str:
    """What a batch result does to its session: (success, failure class) per item.

    Any success counts as a success (the session works); a batch whose items all failed is a
    failure only when one of them failed by the session's fault, else it changes nothing.
    """
    if not outcomes or any(success for success, _ in outcomes):
        return HEALTH_SUCCESS
    if any(is_session_fault(effective(cls)) for _, cls in outcomes):
        return HEALTH_FAILURE
    return HEALTH_NONE
