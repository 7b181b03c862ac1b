"""The pure fold of ``task.events`` into the read model: ``apply(tables, event, partition, offset)``.

No I/O here. ``Tables`` (``projections.tables``) caches the rows one write batch touches and
hands back the changes; the counters and indexes a task contributes to move with it
(``projections.indexes``). This module folds the task events; sessions, batches and batch jobs
have their folds beside it (``session_folds``, ``batch_folds``, ``batch_jobs``).

Events of one task, one batch and one session share a partition (all are keyed by client id),
so each row sees its events in log order. Aggregates are sums and maxima only, so instances
that interleave partitions differently end up equal.

The fold works on row documents (plain dicts typed in ``rows.py``), not on the pydantic row
models: a replay changes ~16 fields per event, and a dict write costs a tenth of a model's
``__setattr__``. Documents are parsed and written with pydantic-core's JSON functions, so the
store holds the same JSON the row models read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from schemas.events import Event
from schemas.states import TERMINAL_STATES

from . import keys, workflows
from .batch_folds import BATCH_FOLDS, change_batch
from .batch_jobs import BATCH_JOB_FOLDS
from .documents import (
    OPEN_STATUSES,
    attempt_details,
    attempt_docs,
    end_execution,
    latest_execution,
    make_ready,
    record_outcome,
    set_priority,
    touch_session,
)
from .indexes import ABSENT, Footprint, footprint, move
from .management import accepted_fields, management_folds
from .rows import (
    BatchDoc,
    Counters,
    DeadLetterDoc,
    HistoryDoc,
    TaskDoc,
    bump,
    new_execution,
    new_task,
    priority_name,
)
from .session_folds import SESSION_FOLDS
from .tables import Tables
from .waiting_folds import WAITING_FOLDS
from .workflows import WORKFLOW_FOLDS

HISTORY_LIMIT = 200
"""Entries a task row keeps in ``history``: the first one and the latest ones."""


# --------------------------------------------------------------------------------------
# Opening and closing a task's row around one of its events.


Opened = tuple[bytes, TaskDoc, Footprint]


def _open(tables: Tables, event: ev.TaskEvent) -> Opened:
    """The task's document (created if new) and its footprint before the event."""
    key = keys.task_key(event.task_id)
    row: TaskDoc | None = tables.doc(key)
    if row is None:
        tables.counters.tasks += 1
        return key, new_task(event.task_id, event.client_id), ABSENT
    return key, row, footprint(row)


def _open_existing(tables: Tables, event: ev.TaskEvent) -> Opened | None:
    """Like ``_open``, but an event about an unknown task changes nothing (None)."""
    key = keys.task_key(event.task_id)
    row: TaskDoc | None = tables.doc(key)
    if row is None:
        return None
    return key, row, footprint(row)


def _close(
    tables: Tables, opened: Opened, event: ev.TaskEvent, detail: str | None = None
) -> TaskDoc:
    """Note the event in the task's history and move its footprint; returns the row."""
    key, row, before = opened
    history = row["history"]
    entry: HistoryDoc = {"type": event.TYPE, "at_ms": event.occurred_at_ms, "detail": detail}
    # The field dict, not getattr: on an event without the field, getattr goes through
    # pydantic's __getattr__ and an AttributeError, which cost more than the rest of _close.
    actor = event.__dict__.get("actor")
    if actor is not None:  # who sent the command (the token's name, the SDK's identity)
        entry["actor"] = actor
    history.append(entry)
    if len(history) > HISTORY_LIMIT:
        # Keep the first entry (how the task began) and the latest ones: a task that gets
        # endless progress reports or stale results must not grow a row without bound.
        del history[1 : len(history) - HISTORY_LIMIT + 1]
    if event.occurred_at_ms > row["updated_at_ms"]:
        row["updated_at_ms"] = event.occurred_at_ms
    move(tables, row["task_id"], before, footprint(row))
    tables.put_doc(key, row)
    return row


# --------------------------------------------------------------------------------------
# Handlers, one per task event.


def _accepted(tables: Tables, e: ev.TaskAccepted) -> None:
    opened = _open(tables, e)
    row = opened[1]
    if row["state"] in TERMINAL_STATES:
        # The processor forgot the finished task (TASKSTREAM_TASK_RETENTION_MS) and accepted
        # its id again: a new lifecycle starts in the same row, the old one stays in history.
        fresh = new_task(e.task_id, e.client_id)
        fresh["history"] = row["history"]
        fresh["updated_at_ms"] = row["updated_at_ms"]
        row.update(fresh)
    row["state"] = "accepted"
    row["operation"] = e.operation
    row["payload"] = dict(e.payload)
    set_priority(row, e.priority)
    row["explicit_priority"] = e.explicit_priority
    row["max_retries"] = e.max_retries
    row["timeout_ms"] = e.timeout_ms
    row["scheduled_for_ms"] = e.scheduled_for_ms
    row["requires_review"] = e.requires_review
    row["depends_on"] = list(e.depends_on)
    row["capabilities"] = list(e.capabilities)
    row["batchable"] = e.batchable
    row["session_required"] = e.session_required
    row["accepted_at_ms"] = e.occurred_at_ms
    row["submitted_by"] = e.actor
    accepted_fields(row, e)
    _close(tables, opened, e)
    workflows.accepted(tables, e)


def _pending_review(tables: Tables, e: ev.TaskPendingReview) -> None:
    opened = _open(tables, e)
    opened[1]["state"] = "pending_review"
    _close(tables, opened, e)


def _approved(tables: Tables, e: ev.TaskApproved) -> None:
    opened = _open(tables, e)
    opened[1]["reviewer"] = e.reviewer
    _close(tables, opened, e, e.reviewer)


def _scheduled(tables: Tables, e: ev.TaskScheduled) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "scheduled"
    row["due_at_ms"] = e.due_at_ms
    _close(tables, opened, e)


def _waiting(tables: Tables, e: ev.TaskWaiting) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "waiting"
    row["waiting_on"] = list(e.waiting_on)
    _close(tables, opened, e)


def _queued(tables: Tables, e: ev.TaskQueued) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "queued"
    set_priority(row, e.priority)
    row["attempt"] = e.attempt
    row["session_id"] = None
    row["batch_id"] = None
    row["waiting_on"] = []
    make_ready(row, e.occurred_at_ms)
    _close(tables, opened, e, e.reason)


def _expedited(tables: Tables, e: ev.TaskExpedited) -> None:
    opened = _open(tables, e)
    set_priority(opened[1], e.priority)
    _close(tables, opened, e)


def _batched(tables: Tables, e: ev.TaskBatched) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "batched"
    row["batch_id"] = e.batch_id
    row["operation"] = row["operation"] or e.operation
    make_ready(row, e.occurred_at_ms)
    _close(tables, opened, e, e.batch_id)

    def add(batch: BatchDoc) -> None:
        batch["operation"] = batch["operation"] or e.operation
        if batch["opened_at_ms"] is None:
            batch["opened_at_ms"] = e.occurred_at_ms
        if e.task_id not in batch["task_ids"]:
            batch["task_ids"].append(e.task_id)

    change_batch(tables, e.batch_id, e.client_id, add)


def _assigned(tables: Tables, e: ev.TaskAssigned) -> None:
    opened = _open(tables, e)
    row = opened[1]
    ready_at_ms = row["ready_at_ms"]
    if ready_at_ms is not None:
        name = row["priority_name"] or priority_name(e.priority)
        if name is not None:
            wait = max(0, e.occurred_at_ms - ready_at_ms)
            tables.counters.wait_by_priority[name].add(wait)
        row["ready_at_ms"] = None
    row["state"] = "assigned"
    row["operation"] = row["operation"] or e.operation
    row["session_id"] = e.session_id
    row["batch_id"] = e.batch_id
    row["attempt"] = e.attempt
    row["fencing_token"] = e.fencing_token
    row["deadline_at_ms"] = e.deadline_at_ms
    set_priority(row, e.priority)
    row["assigned_at_ms"] = e.occurred_at_ms
    row["progress"] = None
    row["progress_message"] = None
    row["awaiting_retry"] = False
    executions = row["executions"]
    for stale in executions:
        if stale["status"] in OPEN_STATUSES:
            end_execution(stale, "interrupted", e.occurred_at_ms)
    executions.append(
        new_execution(e.attempt, e.session_id, e.batch_id, e.fencing_token, e.occurred_at_ms)
    )
    _close(tables, opened, e, e.session_id)


def _started(tables: Tables, e: ev.TaskStartedEvent) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "in_progress"
    if e.session_id is not None:
        row["session_id"] = e.session_id
    row["started_at_ms"] = e.occurred_at_ms
    execution = latest_execution(row, token=e.fencing_token)
    if execution is not None:
        execution["status"] = "in_progress"
        execution["started_at_ms"] = e.occurred_at_ms
    _close(tables, opened, e)
    touch_session(tables, e.session_id or row["session_id"], e.occurred_at_ms)


def _progressed(tables: Tables, e: ev.TaskProgressed) -> None:
    opened = _open_existing(tables, e)
    if opened is None:
        return
    row = opened[1]
    row["progress"] = e.progress
    row["progress_message"] = e.message
    _close(tables, opened, e)


def _completed(tables: Tables, e: ev.TaskCompleted) -> None:
    opened = _open(tables, e)
    row = opened[1]
    first = row["state"] != "completed"
    session = row["session_id"]
    row["state"] = "completed"
    row["operation"] = row["operation"] or e.operation
    row["attempt"] = e.attempt
    row["session_id"] = e.session_id or session
    row["batch_id"] = e.batch_id or row["batch_id"]
    row["output"] = dict(e.output)
    row["execution_time_ms"] = e.execution_time_ms
    row["finished_at_ms"] = e.occurred_at_ms
    row["awaiting_retry"] = False
    row["retry_due_at_ms"] = None
    execution = latest_execution(row, attempt=e.attempt) or latest_execution(row)
    if execution is not None:
        end_execution(execution, "completed", e.occurred_at_ms)
        execution["execution_time_ms"] = e.execution_time_ms
        execution["output"] = dict(e.output)
        attempt_details(execution, e)
    _close(tables, opened, e)
    if first:
        record_outcome(tables, e.occurred_at_ms, succeeded=True)
        touched = touch_session(tables, e.session_id or row["session_id"], e.occurred_at_ms)
        if touched is not None:
            touched["tasks_completed"] += 1


def _attempt_failed(tables: Tables, e: ev.TaskAttemptFailed) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["attempts"].append(
        {
            "attempt": e.attempt,
            "session_id": e.session_id,
            "error": e.error,
            "at_ms": e.occurred_at_ms,
        }
    )
    row["last_error"] = e.error
    row["execution_time_ms"] = e.execution_time_ms
    execution = latest_execution(row, attempt=e.attempt)
    if execution is not None:
        end_execution(execution, "failed", e.occurred_at_ms, e.error)
    else:  # a timeout ended the execution just before its failure
        execution = latest_execution(row, attempt=e.attempt, status=("timed_out",))
        if execution is not None:
            execution["error"] = e.error
    if execution is not None:
        execution["execution_time_ms"] = e.execution_time_ms
        attempt_details(execution, e)
        execution["traceback"] = e.traceback
    _close(tables, opened, e, e.error)
    tables.counters.attempts_failed += 1
    session = touch_session(tables, e.session_id or row["session_id"], e.occurred_at_ms)
    if session is not None:
        session["tasks_failed"] += 1


def _retry_scheduled(tables: Tables, e: ev.TaskRetryScheduled) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "retry_scheduled"
    row["awaiting_retry"] = True
    row["retry_due_at_ms"] = e.due_at_ms
    row["last_error"] = e.error
    row["ready_at_ms"] = None
    _close(tables, opened, e, f"attempt {e.attempt} in {e.delay_ms} ms")
    tables.counters.retries += 1


def _retrying(tables: Tables, e: ev.TaskRetrying) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "queued"
    row["attempt"] = e.attempt
    row["session_id"] = None
    row["batch_id"] = None
    make_ready(row, e.occurred_at_ms)
    _close(tables, opened, e)


def _failed(tables: Tables, e: ev.TaskFailed) -> None:
    opened = _open(tables, e)
    row = opened[1]
    first = row["state"] != "failed"
    row["state"] = "failed"
    row["operation"] = row["operation"] or e.operation
    row["attempt"] = e.attempt
    row["last_error"] = e.error
    row["reason"] = e.reason
    if e.attempts:
        row["attempts"] = attempt_docs(e.attempts)
    row["finished_at_ms"] = e.occurred_at_ms
    row["awaiting_retry"] = False
    row["retry_due_at_ms"] = None
    row["ready_at_ms"] = None
    _close(tables, opened, e, e.reason)
    if first:
        record_outcome(tables, e.occurred_at_ms, succeeded=False)


def _cancelled(tables: Tables, e: ev.TaskCancelled) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "cancelled"
    row["reason"] = e.reason
    if e.fencing_token is not None:
        execution = latest_execution(row, token=e.fencing_token)
        end_execution(execution, "cancelled", e.occurred_at_ms, e.reason)
    row["finished_at_ms"] = e.occurred_at_ms
    row["awaiting_retry"] = False
    row["retry_due_at_ms"] = None
    row["ready_at_ms"] = None
    _close(tables, opened, e, e.reason)


def _rejected(tables: Tables, e: ev.TaskRejected) -> None:
    """A refused submission of a new task id, or a reviewer rejecting a task under review, ends
    the task; any other refused command (a duplicate submit, a cancel of a finished task, a
    review of a task not under review) is only noted in the task's history."""
    existing = tables.task_doc(e.task_id)
    if existing is None:
        ends_task = e.command == "SubmitTask"
    else:
        ends_task = e.command == "RejectTask" and existing["state"] == "pending_review"
    opened = _open(tables, e) if ends_task else _open_existing(tables, e)
    if opened is not None:
        row = opened[1]
        if ends_task:
            row["state"] = "rejected"
            row["reason"] = e.reason
            row["reviewer"] = e.reviewer or row["reviewer"]
            row["finished_at_ms"] = e.occurred_at_ms
            row["awaiting_retry"] = False
            row["ready_at_ms"] = None
        _close(tables, opened, e, f"{e.command}: {e.reason}")
    if not ends_task:
        tables.counters.commands_rejected += 1


def _dead_lettered(tables: Tables, e: ev.TaskDeadLettered) -> None:
    attempts = attempt_docs(e.attempts)
    opened = _open(tables, e)
    row = opened[1]
    first = False
    row["dead_lettered"] = True
    row["operation"] = row["operation"] or e.operation
    if attempts:
        row["attempts"] = attempts
    if row["state"] not in TERMINAL_STATES:
        first = True
        row["state"] = "failed"
        row["reason"] = e.reason
        row["finished_at_ms"] = e.occurred_at_ms
        row["awaiting_retry"] = False
        row["ready_at_ms"] = None
    _close(tables, opened, e, e.reason)
    if first:
        record_outcome(tables, e.occurred_at_ms, succeeded=False)

    c = tables.counters
    old = tables.dead_letter_doc(e.task_id)
    if old is not None:
        for kind, value, table in _dlq_parts(old, c):
            bump(table, value, -1, prune=True)
            tables.index(keys.index_key(kind, (value,), old["task_id"]), False)
    else:
        c.dead_letters += 1
    dead: DeadLetterDoc = {
        "task_id": e.task_id,
        "client_id": e.client_id,
        "operation": e.operation,
        "reason": e.reason,
        "last_error": row["last_error"],
        # A list of its own: the task's list grows with later attempts, this one does not.
        "attempts": list(attempts or row["attempts"]),
        "at_ms": e.occurred_at_ms,
    }
    for kind, value, table in _dlq_parts(dead, c):
        bump(table, value, +1, prune=True)
        tables.index(keys.index_key(kind, (value,), e.task_id), True)
    tables.put_doc(keys.dead_key(e.task_id), dead)


def _dlq_parts(row: DeadLetterDoc, c: Counters) -> list[tuple[bytes, str, dict[str, int]]]:
    return [
        (keys.DLQ_BY_REASON, row["reason"], c.dlq_by_reason),
        (keys.DLQ_BY_CLIENT, row["client_id"], c.dlq_by_client),
        (keys.DLQ_BY_OPERATION, row["operation"], c.dlq_by_operation),
    ]


def _timed_out(tables: Tables, e: ev.TaskTimedOut) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["timeouts"] += 1
    error = f"attempt {e.attempt} timed out"
    row["last_error"] = error
    execution = latest_execution(row, token=e.fencing_token) or latest_execution(
        row, attempt=e.attempt
    )
    end_execution(execution, "timed_out", e.occurred_at_ms, error)
    _close(tables, opened, e, e.session_id)
    tables.counters.timeouts += 1


def _result_ignored(tables: Tables, e: ev.ResultIgnored) -> None:
    opened = _open_existing(tables, e)
    if opened is not None:
        _close(tables, opened, e, e.reason)
    tables.counters.results_ignored += 1


def _step_started(tables: Tables, e: ev.TaskStepStarted) -> None:
    """A step of the task started: the task runs its steps (``projections.workflows``)."""
    opened = _open_existing(tables, e)
    if opened is not None and opened[1]["state"] not in TERMINAL_STATES:
        opened[1]["state"] = "running"
        _close(tables, opened, e, f"step {e.step_id}: {e.child_task_id}")
    workflows.step_started(tables, e)


def _step_finished(tables: Tables, e: ev.TaskStepFinished) -> None:
    opened = _open_existing(tables, e)
    if opened is not None:
        _close(tables, opened, e, f"step {e.step_id} {e.status}")
    workflows.step_finished(tables, e)


def _command_rejected(tables: Tables, e: ev.CommandRejected) -> None:
    tables.counters.commands_rejected += 1


def _forgotten(tables: Tables, e: ev.TasksForgotten) -> None:
    """The processor's retention: the read model is the history, it keeps every row."""


_HANDLERS: dict[type[Event], Callable[[Tables, Any], None]] = {
    ev.TaskAccepted: _accepted,
    ev.TaskPendingReview: _pending_review,
    ev.TaskApproved: _approved,
    ev.TaskScheduled: _scheduled,
    ev.TaskWaiting: _waiting,
    ev.TaskQueued: _queued,
    ev.TaskExpedited: _expedited,
    ev.TaskBatched: _batched,
    ev.TaskAssigned: _assigned,
    ev.TaskStartedEvent: _started,
    ev.TaskProgressed: _progressed,
    ev.TaskCompleted: _completed,
    ev.TaskAttemptFailed: _attempt_failed,
    ev.TaskRetryScheduled: _retry_scheduled,
    ev.TaskRetrying: _retrying,
    ev.TaskFailed: _failed,
    ev.TaskCancelled: _cancelled,
    ev.TaskRejected: _rejected,
    ev.TaskDeadLettered: _dead_lettered,
    ev.TaskTimedOut: _timed_out,
    ev.ResultIgnored: _result_ignored,
    ev.CommandRejected: _command_rejected,
    ev.TasksForgotten: _forgotten,
    **BATCH_FOLDS,
    **SESSION_FOLDS,
    **BATCH_JOB_FOLDS,
    ev.TaskStepStarted: _step_started,
    ev.TaskStepFinished: _step_finished,
    **WORKFLOW_FOLDS,
    **management_folds(_open, _close),
    **WAITING_FOLDS,
}


def apply(tables: Tables, event: Event, partition: int, offset: int) -> None:
    """Fold one event read at ``partition``/``offset`` of ``task.events`` into ``tables``."""
    c = tables.counters
    # Once per event: write the counters' field dict, not through pydantic's __setattr__
    # (the counters configure no assignment validation, so the result is the same).
    fields = c.__dict__
    fields["events"] += 1
    by_type = c.events_by_type
    by_type[event.TYPE] = by_type.get(event.TYPE, 0) + 1
    at = event.occurred_at_ms
    last = fields["last_event_at_ms"]
    if not last or at > last:
        fields["last_event_at_ms"] = at
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(tables, event)
    offsets = tables.offsets
    if offsets.get(partition, 0) <= offset:
        offsets[partition] = offset + 1


def skip(tables: Tables, partition: int, offset: int) -> None:
    """Move past a record without folding it (undecodable input is counted by the caller)."""
    tables.offsets[partition] = max(tables.offsets.get(partition, 0), offset + 1)
