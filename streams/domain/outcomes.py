"""The outcome record of a task: one per submitted task id, on ``task.completed`` or
``task.failed``.

Upstream systems follow the outcome topics, not the event log, so every way a task can end has
to appear there exactly once: completed (``TaskCompleted``), failed for good (``TaskFailed``),
and, as ``TaskFailed`` records whose ``outcome`` says which, cancelled, rejected by a reviewer,
and refused at submit (an invalid ``SubmitTask``: the task never existed, but its submitter
still hears of it). A refused submit that reuses the id of one of the client's own tasks
gets no outcome of its own: that id's outcome is the existing task's.

``outcome_record`` is a function of the state *after* the event was folded and the event,
like every side record, so recovery derives the same record again.
"""

from __future__ import annotations

from schemas import events as ev
from streams.domain.state import PartitionState, Status, TaskRecord


def outcome_record(
    state: PartitionState, event: ev.Event
) -> ev.TaskCompleted | ev.TaskFailed | None:
    """The outcome ``event`` stands for, or ``None`` when it ends no task."""
    if isinstance(event, ev.TaskCompleted | ev.TaskFailed):
        return event
    if isinstance(event, ev.TaskCancelled):
        task = state.task(event.task_id)
        if task is None or task.status != Status.CANCELLED:
            return None
        ran = 1 if event.fencing_token is not None else 0  # cancelled while it ran
        return _ended(
            event,
            task,
            ev.OUTCOME_CANCELLED,
            reason=event.reason or "cancelled",
            error="cancelled" + (f": {event.reason}" if event.reason else ""),
            attempt=len(task.failures) + ran,
        )
    if isinstance(event, ev.TaskRejected):
        task = state.task(event.task_id)
        if event.command == "RejectTask":
            if task is None or task.status != Status.REJECTED:
                return None
            return _ended(
                event,
                task,
                ev.OUTCOME_REJECTED,
                reason=event.reason,
                error=f"rejected: {event.reason}",
                attempt=len(task.failures),
            )
        if event.command == "SubmitTask":
            if task is not None and task.client_id == event.client_id:
                return None  # a conflicting resubmit of the client's own task
            return ev.TaskFailed(
                client_id=event.client_id,
                task_id=event.task_id,
                occurred_at_ms=event.occurred_at_ms,
                operation=event.operation or "",
                attempt=0,
                error=f"refused: {event.reason}",
                reason=event.reason,
                outcome=ev.OUTCOME_REFUSED,
            )
    return None


def _ended(
    event: ev.TaskEvent, task: TaskRecord, outcome: str, *, reason: str, error: str, attempt: int
) -> ev.TaskFailed:
    return ev.TaskFailed(
        client_id=task.client_id,
        task_id=task.task_id,
        occurred_at_ms=event.occurred_at_ms,
        operation=task.operation,
        attempt=attempt,
        error=error,
        reason=reason,
        attempts=[
            ev.AttemptRecord(
                attempt=f.attempt, session_id=f.session_id, error=f.error, at_ms=f.at_ms
            )
            for f in task.failures
        ],
        outcome=outcome,
    )
