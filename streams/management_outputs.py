"""What the task management events put on other topics: timers through the delay tiers.

A deferred task comes back at its time (``RetryDue`` kind ``deferred``); a task with a due date
is looked at again then (kind ``overdue``), at acceptance and whenever an edit moves the date.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from schemas.commands import RetryDue
from streams.domain.state import PartitionState

Timer = Callable[[RetryDue, int], Any]


def management_outputs(
    timer: Timer,
) -> dict[type[ev.Event], Callable[[PartitionState, Any], list[Any]]]:
    def due(e: ev.TaskEvent, at_ms: int, kind: str, attempt: int) -> list[Any]:
        return [
            timer(
                RetryDue(
                    client_id=e.client_id,
                    task_id=e.task_id,
                    attempt=attempt,
                    due_at_ms=at_ms,
                    kind=kind,
                ),
                e.occurred_at_ms,
            )
        ]

    def accepted(state: PartitionState, e: ev.TaskAccepted) -> list[Any]:
        return [] if e.due_at_ms is None else due(e, e.due_at_ms, "overdue", 1)

    def updated(state: PartitionState, e: ev.TaskUpdated) -> list[Any]:
        if "due_at_ms" not in e.changed or e.due_at_ms is None:
            return []
        return due(e, e.due_at_ms, "overdue", 1)

    def deferred(state: PartitionState, e: ev.TaskDeferred) -> list[Any]:
        return due(e, e.due_at_ms, "deferred", e.attempt)

    return {ev.TaskAccepted: accepted, ev.TaskUpdated: updated, ev.TaskDeferred: deferred}
