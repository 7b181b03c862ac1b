"""What an executor's own process can watch without asking Kafka: its recent failures
(``errors()``, the seed's ``GetErrors``) and a local progress hook (``on_progress``, the seed's
``SetProgressCallback``), besides the ``ReportProgress`` commands the processor folds.

The hook is called on the event loop thread, with a status from ``schemas.states``
(``in_progress`` when the handler starts and on each ``report_progress``, then ``completed``,
``failed`` or ``cancelled``) and a percentage 0-100. An exception it raises is logged and
otherwise ignored: watching a task never fails it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from schemas.states import TaskStatus

log = logging.getLogger(__name__)

ProgressCallback: TypeAlias = Callable[[str, str, int, str | None], None]
"""``on_progress(task_id, status, percent, message)``."""

ERRORS_KEPT: Final = 100
"""How many recent failures ``errors()`` keeps by default (the oldest go first)."""


@dataclass(frozen=True, slots=True)
class TaskError:
    """One failed attempt as this executor saw it."""

    task_id: str
    error: str
    operation: str
    attempt: int
    failure_class: str | None
    at_ms: int
    """This machine's clock when the attempt ended."""


class ErrorLog:
    """The last ``limit`` failures, oldest first."""

    def __init__(self, limit: int = ERRORS_KEPT) -> None:
        self._errors: deque[TaskError] = deque(maxlen=max(1, limit))

    def add(self, error: TaskError) -> None:
        self._errors.append(error)

    def recent(self) -> list[TaskError]:
        return list(self._errors)


def percent(fraction: float) -> int:
    """A progress fraction in [0, 1] as a whole percentage 0-100."""
    return round(min(1.0, max(0.0, fraction)) * 100)


class ProgressHook:
    """Calls the user's ``on_progress`` (if any), remembering each task's last percentage."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last: dict[str, int] = {}

    def __call__(self, task_id: str, status: str, pct: int, message: str | None = None) -> None:
        if self._callback is None:
            return
        if status == TaskStatus.IN_PROGRESS:
            self._last[task_id] = pct
        else:
            self._last.pop(task_id, None)
        try:
            self._callback(task_id, status, pct, message)
        except Exception:
            log.exception("on_progress callback failed for task %s", task_id)

    def last(self, task_id: str) -> int:
        """The last percentage reported for a running task (0 before any)."""
        return self._last.get(task_id, 0)
