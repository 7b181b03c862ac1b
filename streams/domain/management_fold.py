"""How the task management events (``streams.domain.management``) change the partition state.

``evolve`` passes in its own index mechanics (leaving a queue, batch or session, marking a
session seen), so these folds keep the indices exactly as the core folds do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from schemas import management_events as mev
from schemas.states import TERMINAL_STATES
from streams.domain.state import (
    TIMER_DEFERRED,
    TIMER_OVERDUE,
    PartitionState,
    Status,
    TaskRecord,
)

Detach = Callable[[PartitionState, TaskRecord], None]
Seen = Callable[[PartitionState, str | None, int], Any]


def management_folds(
    detach: Detach, seen: Seen, accept: Callable[[PartitionState, ev.TaskAccepted], None]
) -> dict[type[ev.Event], Callable[[PartitionState, Any], None]]:
    """The folds, with ``evolve``'s mechanics; ``accept`` is its TaskAccepted fold, which this
    one extends with the due date's timer."""

    def accepted(st: PartitionState, e: ev.TaskAccepted) -> None:
        accept(st, e)
        if e.due_at_ms is not None:
            st.arm(e.due_at_ms, TIMER_OVERDUE, e.task_id)  # task.overdue then, if unfinished

    def task(st: PartitionState, task_id: str) -> TaskRecord | None:
        return st.edit_known_task(task_id)

    def updated(st: PartitionState, e: mev.TaskUpdated) -> None:
        rec = task(st, e.task_id)
        if rec is None:
            return
        changed = set(e.changed)
        if "priority" in changed:
            if e.priority is not None:
                rec.priority = e.priority
                rec.queue_priority = e.priority
                if rec.batch_id is not None:
                    st.delete(st.batch_ages, rec.batch_id)  # ``batching.batch_priority``'s
            rec.explicit_priority = e.explicit_priority
        if "payload" in changed:
            rec.payload = e.payload
        if "scheduled_for_ms" in changed:
            rec.scheduled_for_ms = e.scheduled_for_ms
        if "due_at_ms" in changed:
            rec.deadline_due_ms = e.due_at_ms
            rec.overdue = False
            if e.due_at_ms is not None and rec.status not in TERMINAL_STATES:
                st.arm(e.due_at_ms, TIMER_OVERDUE, e.task_id)
        if "assigned_to" in changed:
            assignee = e.assigned_to
            rec.assigned_to = (assignee.kind, assignee.id) if assignee is not None else None
            if assignee is not None:
                rec.session_required = True
                rec.batchable = False
        if rec.status in (Status.SCHEDULED, Status.WAITING, Status.QUEUED, Status.BATCHED):
            # Admitted again by the decision that follows (scheduled, waiting or queued).
            detach(st, rec)
            rec.status = Status.ACCEPTED
            rec.due_at_ms = None

    def archived(st: PartitionState, e: mev.TaskArchived) -> None:
        rec = task(st, e.task_id)
        if rec is not None:
            rec.archived = True

    def nothing(st: PartitionState, e: Any) -> None:
        """The state changes with the events that follow."""

    def waiting_input(st: PartitionState, e: mev.TaskWaitingInput) -> None:
        rec = task(st, e.task_id)
        if rec is None:
            return
        detach(st, rec)
        rec.status = Status.WAITING_INPUT
        rec.prompt = e.prompt
        seen(st, e.session_id, e.occurred_at_ms)

    def input_provided(st: PartitionState, e: mev.TaskInputProvided) -> None:
        rec = task(st, e.task_id)
        if rec is None:
            return
        rec.payload = {**(rec.payload or {}), "input": e.input}
        rec.prompt = None
        # A new attempt that uses up no retry.
        rec.max_retries += max(0, e.attempt - rec.attempt)
        rec.attempt = e.attempt

    def deferred(st: PartitionState, e: mev.TaskDeferred) -> None:
        rec = task(st, e.task_id)
        if rec is None:
            return
        detach(st, rec)
        rec.status = Status.DEFERRED
        rec.due_at_ms = e.due_at_ms
        st.arm(e.due_at_ms, TIMER_DEFERRED, e.task_id)
        seen(st, e.session_id, e.occurred_at_ms)

    def overdue(st: PartitionState, e: mev.TaskOverdue) -> None:
        rec = task(st, e.task_id)
        if rec is not None:
            rec.overdue = True

    return {
        ev.TaskAccepted: accepted,
        mev.TaskUpdated: updated,
        mev.TaskArchived: archived,
        mev.TaskRunRequested: nothing,
        mev.TaskWaitingInput: waiting_input,
        mev.TaskInputProvided: input_provided,
        mev.TaskDeferred: deferred,
        mev.TaskOverdue: overdue,
    }
