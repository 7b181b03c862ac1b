"""The pure fold of ``task.events`` into the read model: ``apply(tables, event, partition, offset)``.

No I/O here. ``Tables`` reads missing rows through a function it is given (a RocksDB get, or a
dict lookup in tests), keeps the rows one write batch touches, and hands back the changes,
the counters and the offsets with ``drain()`` so the caller writes them all at once.

Events of one task, one batch and one session share a partition (all are keyed by client id),
so each row sees its events in log order. Aggregates are sums and maxima only, so instances
that interleave partitions differently end up equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from schemas import events as ev
from schemas.events import Event

from . import keys
from .batch_jobs import BATCH_JOB_FOLDS
from .rows import (
    ACTIVE_STATES,
    SLA_MS,
    TERMINAL_STATES,
    ActiveSession,
    Attempt,
    BatchRow,
    Counters,
    DeadLetterRow,
    Execution,
    HistoryEntry,
    Row,
    SessionRow,
    TaskRow,
    bump,
    priority_name,
)

R = TypeVar("R", bound=Row)

HISTORY_LIMIT = 200
"""Entries a task row keeps in ``history``: the first one and the latest ones."""
Change = tuple[bytes, bytes | None]


class Tables:
    """The rows touched since the last ``drain()`` over a read function for the others."""

    def __init__(
        self,
        read: Callable[[bytes], bytes | None],
        counters: Counters | None = None,
        offsets: dict[int, int] | None = None,
    ) -> None:
        self._read = read
        self.counters = counters if counters is not None else Counters()
        self.offsets: dict[int, int] = dict(offsets or {})
        self._cache: dict[bytes, Row | None] = {}
        self._dirty: set[bytes] = set()
        self._index: dict[bytes, bool] = {}

    # rows -------------------------------------------------------------------------------
    def _get(self, key: bytes, model: type[R]) -> R | None:
        if key in self._cache:
            return cast(R | None, self._cache[key])
        raw = self._read(key)
        row = None if raw is None else model.model_validate_json(raw)
        self._cache[key] = row
        return row

    def _put(self, key: bytes, row: Row) -> None:
        self._cache[key] = row
        self._dirty.add(key)

    def task(self, task_id: str) -> TaskRow | None:
        return self._get(keys.task_key(task_id), TaskRow)

    def put_task(self, row: TaskRow) -> None:
        self._put(keys.task_key(row.task_id), row)

    def session(self, session_id: str) -> SessionRow | None:
        return self._get(keys.session_key(session_id), SessionRow)

    def put_session(self, row: SessionRow) -> None:
        self._put(keys.session_key(row.session_id), row)

    def batch(self, batch_id: str) -> BatchRow | None:
        return self._get(keys.batch_key(batch_id), BatchRow)

    def put_batch(self, row: BatchRow) -> None:
        self._put(keys.batch_key(row.batch_id), row)

    def dead_letter(self, task_id: str) -> DeadLetterRow | None:
        return self._get(keys.dead_key(task_id), DeadLetterRow)

    def put_dead_letter(self, row: DeadLetterRow) -> None:
        self._put(keys.dead_key(row.task_id), row)

    def index(self, key: bytes, present: bool) -> None:
        self._index[key] = present

    # write batch --------------------------------------------------------------------------
    def drain(self) -> list[Change]:
        """Every change since the last drain, plus the counters and offsets rows."""
        changes: list[Change] = []
        for key in sorted(self._dirty):
            row = self._cache[key]
            changes.append((key, None if row is None else row.model_dump_json().encode()))
        for key, present in sorted(self._index.items()):
            changes.append((key, b"" if present else None))
        changes.append((keys.COUNTERS_KEY, self.counters.model_dump_json().encode()))
        for partition, offset in sorted(self.offsets.items()):
            changes.append((keys.offset_key(partition), str(offset).encode()))
        self._cache.clear()
        self._dirty.clear()
        self._index.clear()
        return changes


# --------------------------------------------------------------------------------------
# Task footprint: what one task contributes to counters and indexes.


@dataclass(frozen=True, slots=True)
class _Footprint:
    state: str | None
    priority: str | None
    operation: str | None
    client_id: str | None
    session_id: str | None  # only while assigned / in progress
    awaiting_retry: bool


_ABSENT = _Footprint(None, None, None, None, None, False)


def _footprint(row: TaskRow) -> _Footprint:
    active = row.state in ACTIVE_STATES and row.session_id is not None
    return _Footprint(
        row.state,
        row.priority_name,
        row.operation,
        row.client_id,
        row.session_id if active else None,
        row.awaiting_retry,
    )


def _state_parts(fp: _Footprint) -> list[tuple[bytes, tuple[str, ...]]]:
    parts: list[tuple[bytes, tuple[str, ...]]] = []
    if fp.client_id is not None:
        parts.append((keys.BY_CLIENT, (fp.client_id,)))
    if fp.state is not None:
        parts.append((keys.BY_STATE, (fp.state,)))
        if fp.client_id is not None:
            parts.append((keys.BY_CLIENT_STATE, (fp.client_id, fp.state)))
    if fp.operation is not None:
        parts.append((keys.BY_OPERATION, (fp.operation,)))
    return parts


def _contribute(tables: Tables, fp: _Footprint, sign: int) -> None:
    c = tables.counters
    if fp.state is not None:
        bump(c.by_state, fp.state, sign)
        if fp.state == "queued":
            bump(c.queued_by_priority, fp.priority, sign)
            bump(c.queued_by_operation, fp.operation, sign, prune=True)
    bump(c.by_operation, fp.operation, sign, prune=True)
    if fp.awaiting_retry:
        c.awaiting_retry += sign
    if fp.session_id is not None:
        bump(c.in_flight, fp.session_id, sign, prune=True)
        session = _session(tables, fp.session_id)
        session.in_flight += sign
        tables.put_session(session)


def _move(tables: Tables, task_id: str, before: _Footprint, after: _Footprint) -> None:
    if before == after:
        return
    _contribute(tables, before, -1)
    _contribute(tables, after, +1)
    old = set(_state_parts(before))
    new = set(_state_parts(after))
    for kind, parts in old - new:
        tables.index(keys.index_key(kind, parts, task_id), False)
    for kind, parts in new - old:
        tables.index(keys.index_key(kind, parts, task_id), True)


def _change_task(
    tables: Tables,
    event: ev.TaskEvent,
    mutate: Callable[[TaskRow], None],
    *,
    create: bool = True,
    detail: str | None = None,
) -> TaskRow | None:
    row = tables.task(event.task_id)
    if row is None:
        if not create:
            return None
        row = TaskRow(task_id=event.task_id, client_id=event.client_id)
        tables.counters.tasks += 1
        before = _ABSENT
    else:
        before = _footprint(row)
    mutate(row)
    row.history.append(HistoryEntry(type=event.TYPE, at_ms=event.occurred_at_ms, detail=detail))
    if len(row.history) > HISTORY_LIMIT:
        # Keep the first entry (how the task began) and the latest ones: a task that gets
        # endless progress reports or stale results must not grow a row without bound.
        del row.history[1 : len(row.history) - HISTORY_LIMIT + 1]
    row.updated_at_ms = max(row.updated_at_ms, event.occurred_at_ms)
    _move(tables, row.task_id, before, _footprint(row))
    tables.put_task(row)
    return row


def _set_priority(row: TaskRow, priority: int) -> None:
    row.priority = priority
    row.priority_name = cast(Any, priority_name(priority))


def _make_ready(row: TaskRow, at_ms: int) -> None:
    if row.ready_at_ms is None:
        row.ready_at_ms = at_ms
    row.awaiting_retry = False
    row.retry_due_at_ms = None


_OPEN = ("assigned", "in_progress")


def _execution(
    row: TaskRow,
    *,
    token: int | None = None,
    attempt: int | None = None,
    session_id: str | None = None,
    status: tuple[str, ...] = _OPEN,
) -> Execution | None:
    """The latest execution of ``row`` in one of ``status`` matching what the event names
    (the fencing token when it carries one: attempt numbers repeat after a requeue)."""
    for execution in reversed(row.executions):
        if (
            execution.status in status
            and (token is None or execution.fencing_token == token)
            and (attempt is None or execution.attempt == attempt)
            and (session_id is None or execution.session_id == session_id)
        ):
            return execution
    return None


def _end_execution(
    execution: Execution | None, status: str, at_ms: int, error: str | None = None
) -> None:
    if execution is None:
        return
    execution.status = cast(Any, status)
    execution.finished_at_ms = at_ms
    if error is not None:
        execution.error = error


def _record_outcome(tables: Tables, at_ms: int, *, succeeded: bool) -> None:
    c = tables.counters
    if succeeded:
        c.succeeded += 1
    else:
        c.failed += 1
    c.last_processed_at_ms = max(c.last_processed_at_ms or at_ms, at_ms)


# --------------------------------------------------------------------------------------
# Sessions and batches.


def _session(tables: Tables, session_id: str) -> SessionRow:
    row = tables.session(session_id)
    return row if row is not None else SessionRow(session_id=session_id)


def _touch_session(tables: Tables, session_id: str | None, at_ms: int) -> SessionRow | None:
    if session_id is None:
        return None
    row = _session(tables, session_id)
    row.last_seen_ms = max(row.last_seen_ms or at_ms, at_ms)
    tables.put_session(row)
    return row


def _health_status(status: str, score: float) -> str:
    if status in ("healthy", "degraded", "unhealthy"):
        return status
    if score > 0.7:
        return "healthy"
    return "degraded" if score >= 0.3 else "unhealthy"


def _batch_counter(c: Counters, state: str | None, sign: int) -> None:
    if state == "open":
        c.open_batches += sign
    elif state == "dispatched":
        c.dispatched_batches += sign
    elif state == "consolidated":
        c.consolidated_batches += sign


def _change_batch(
    tables: Tables, batch_id: str, client_id: str, mutate: Callable[[BatchRow], None]
) -> None:
    row = tables.batch(batch_id)
    before = None if row is None else row.state
    if row is None:
        row = BatchRow(batch_id=batch_id, client_id=client_id)
    mutate(row)
    if before != row.state:
        _batch_counter(tables.counters, before, -1)
        _batch_counter(tables.counters, row.state, +1)
    tables.put_batch(row)


# --------------------------------------------------------------------------------------
# Handlers, one per event type.


def _accepted(tables: Tables, e: ev.TaskAccepted) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "accepted"
        row.operation = e.operation
        row.payload = dict(e.payload)
        _set_priority(row, e.priority)
        row.explicit_priority = e.explicit_priority
        row.max_retries = e.max_retries
        row.timeout_ms = e.timeout_ms
        row.scheduled_for_ms = e.scheduled_for_ms
        row.requires_review = e.requires_review
        row.depends_on = list(e.depends_on)
        row.capabilities = list(e.capabilities)
        row.batchable = e.batchable
        row.session_required = e.session_required
        row.accepted_at_ms = e.occurred_at_ms

    _change_task(tables, e, mutate)


def _pending_review(tables: Tables, e: ev.TaskPendingReview) -> None:
    _change_task(tables, e, lambda row: setattr(row, "state", "pending_review"))


def _approved(tables: Tables, e: ev.TaskApproved) -> None:
    _change_task(tables, e, lambda row: setattr(row, "reviewer", e.reviewer), detail=e.reviewer)


def _scheduled(tables: Tables, e: ev.TaskScheduled) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "scheduled"
        row.due_at_ms = e.due_at_ms

    _change_task(tables, e, mutate)


def _waiting(tables: Tables, e: ev.TaskWaiting) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "waiting"
        row.waiting_on = list(e.waiting_on)

    _change_task(tables, e, mutate)


def _queued(tables: Tables, e: ev.TaskQueued) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "queued"
        _set_priority(row, e.priority)
        row.attempt = e.attempt
        row.session_id = None
        row.batch_id = None
        row.waiting_on = []
        _make_ready(row, e.occurred_at_ms)

    _change_task(tables, e, mutate, detail=e.reason)


def _expedited(tables: Tables, e: ev.TaskExpedited) -> None:
    _change_task(tables, e, lambda row: _set_priority(row, e.priority))


def _batched(tables: Tables, e: ev.TaskBatched) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "batched"
        row.batch_id = e.batch_id
        row.operation = row.operation or e.operation
        _make_ready(row, e.occurred_at_ms)

    _change_task(tables, e, mutate, detail=e.batch_id)

    def add(batch: BatchRow) -> None:
        batch.operation = batch.operation or e.operation
        if batch.opened_at_ms is None:
            batch.opened_at_ms = e.occurred_at_ms
        if e.task_id not in batch.task_ids:
            batch.task_ids.append(e.task_id)

    _change_batch(tables, e.batch_id, e.client_id, add)


def _batch_processed(tables: Tables, e: ev.BatchProcessed) -> None:
    def mutate(batch: BatchRow) -> None:
        batch.state = "dispatched"
        batch.operation = e.operation
        batch.task_ids = list(e.task_ids)
        batch.session_id = e.session_id
        batch.fencing_token = e.fencing_token
        batch.closed_by = e.closed_by
        batch.dispatched_at_ms = e.occurred_at_ms
        if batch.opened_at_ms is None:
            batch.opened_at_ms = e.occurred_at_ms

    _change_batch(tables, e.batch_id, e.client_id, mutate)


def _assigned(tables: Tables, e: ev.TaskAssigned) -> None:
    def mutate(row: TaskRow) -> None:
        if row.ready_at_ms is not None:
            name = row.priority_name or priority_name(e.priority)
            if name is not None:
                wait = max(0, e.occurred_at_ms - row.ready_at_ms)
                tables.counters.wait_by_priority[name].add(wait, SLA_MS[name])
            row.ready_at_ms = None
        row.state = "assigned"
        row.operation = row.operation or e.operation
        row.session_id = e.session_id
        row.batch_id = e.batch_id
        row.attempt = e.attempt
        row.fencing_token = e.fencing_token
        row.deadline_at_ms = e.deadline_at_ms
        _set_priority(row, e.priority)
        row.assigned_at_ms = e.occurred_at_ms
        row.progress = None
        row.progress_message = None
        row.awaiting_retry = False
        for stale in row.executions:
            if stale.status in _OPEN:
                _end_execution(stale, "interrupted", e.occurred_at_ms)
        row.executions.append(
            Execution(
                attempt=e.attempt,
                session_id=e.session_id,
                batch_id=e.batch_id,
                fencing_token=e.fencing_token,
                assigned_at_ms=e.occurred_at_ms,
            )
        )

    _change_task(tables, e, mutate, detail=e.session_id)


def _started(tables: Tables, e: ev.TaskStartedEvent) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "in_progress"
        if e.session_id is not None:
            row.session_id = e.session_id
        row.started_at_ms = e.occurred_at_ms
        execution = _execution(row, token=e.fencing_token)
        if execution is not None:
            execution.status = "in_progress"
            execution.started_at_ms = e.occurred_at_ms

    row = _change_task(tables, e, mutate)
    _touch_session(tables, e.session_id or (row.session_id if row else None), e.occurred_at_ms)


def _progressed(tables: Tables, e: ev.TaskProgressed) -> None:
    def mutate(row: TaskRow) -> None:
        row.progress = e.progress
        row.progress_message = e.message

    _change_task(tables, e, mutate, create=False)


def _completed(tables: Tables, e: ev.TaskCompleted) -> None:
    first = [False]

    def mutate(row: TaskRow) -> None:
        first[0] = row.state != "completed"
        session = row.session_id
        row.state = "completed"
        row.operation = row.operation or e.operation
        row.attempt = e.attempt
        row.session_id = e.session_id or session
        row.batch_id = e.batch_id or row.batch_id
        row.output = dict(e.output)
        row.execution_time_ms = e.execution_time_ms
        row.finished_at_ms = e.occurred_at_ms
        row.awaiting_retry = False
        row.retry_due_at_ms = None
        execution = _execution(row, attempt=e.attempt) or _execution(row)
        if execution is not None:
            _end_execution(execution, "completed", e.occurred_at_ms)
            execution.execution_time_ms = e.execution_time_ms
            execution.output = dict(e.output)

    row = _change_task(tables, e, mutate)
    if first[0]:
        _record_outcome(tables, e.occurred_at_ms, succeeded=True)
        session = _touch_session(
            tables, e.session_id or (row.session_id if row else None), e.occurred_at_ms
        )
        if session is not None:
            session.tasks_completed += 1


def _attempt_failed(tables: Tables, e: ev.TaskAttemptFailed) -> None:
    def mutate(row: TaskRow) -> None:
        row.attempts.append(
            Attempt(
                attempt=e.attempt, session_id=e.session_id, error=e.error, at_ms=e.occurred_at_ms
            )
        )
        row.last_error = e.error
        row.execution_time_ms = e.execution_time_ms
        execution = _execution(row, attempt=e.attempt)
        if execution is not None:
            _end_execution(execution, "failed", e.occurred_at_ms, e.error)
        else:  # a timeout ended the execution just before its failure
            execution = _execution(row, attempt=e.attempt, status=("timed_out",))
            if execution is not None:
                execution.error = e.error
        if execution is not None:
            execution.execution_time_ms = e.execution_time_ms

    row = _change_task(tables, e, mutate, detail=e.error)
    tables.counters.attempts_failed += 1
    session = _touch_session(
        tables, e.session_id or (row.session_id if row else None), e.occurred_at_ms
    )
    if session is not None:
        session.tasks_failed += 1


def _retry_scheduled(tables: Tables, e: ev.TaskRetryScheduled) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "retry_scheduled"
        row.awaiting_retry = True
        row.retry_due_at_ms = e.due_at_ms
        row.last_error = e.error
        row.ready_at_ms = None

    _change_task(tables, e, mutate, detail=f"attempt {e.attempt} in {e.delay_ms} ms")
    tables.counters.retries += 1


def _retrying(tables: Tables, e: ev.TaskRetrying) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "queued"
        row.attempt = e.attempt
        row.session_id = None
        row.batch_id = None
        _make_ready(row, e.occurred_at_ms)

    _change_task(tables, e, mutate)


def _failed(tables: Tables, e: ev.TaskFailed) -> None:
    first = [False]

    def mutate(row: TaskRow) -> None:
        first[0] = row.state != "failed"
        row.state = "failed"
        row.operation = row.operation or e.operation
        row.attempt = e.attempt
        row.last_error = e.error
        row.reason = e.reason
        if e.attempts:
            row.attempts = [Attempt.model_validate(a.model_dump()) for a in e.attempts]
        row.finished_at_ms = e.occurred_at_ms
        row.awaiting_retry = False
        row.retry_due_at_ms = None
        row.ready_at_ms = None

    _change_task(tables, e, mutate, detail=e.reason)
    if first[0]:
        _record_outcome(tables, e.occurred_at_ms, succeeded=False)


def _cancelled(tables: Tables, e: ev.TaskCancelled) -> None:
    def mutate(row: TaskRow) -> None:
        row.state = "cancelled"
        row.reason = e.reason
        if e.fencing_token is not None:
            execution = _execution(row, token=e.fencing_token)
            _end_execution(execution, "cancelled", e.occurred_at_ms, e.reason)
        row.finished_at_ms = e.occurred_at_ms
        row.awaiting_retry = False
        row.retry_due_at_ms = None
        row.ready_at_ms = None

    _change_task(tables, e, mutate, detail=e.reason)


def _rejected(tables: Tables, e: ev.TaskRejected) -> None:
    """A refused submission of a new task id, or a reviewer rejecting a task under review, ends
    the task; any other refused command (a duplicate submit, a cancel of a finished task, a
    review of a task not under review) is only noted in the task's history."""
    existing = tables.task(e.task_id)
    if existing is None:
        ends_task = e.command == "SubmitTask"
    else:
        ends_task = e.command == "RejectTask" and existing.state == "pending_review"

    def mutate(row: TaskRow) -> None:
        if ends_task:
            row.state = "rejected"
            row.reason = e.reason
            row.reviewer = e.reviewer or row.reviewer
            row.finished_at_ms = e.occurred_at_ms
            row.awaiting_retry = False
            row.ready_at_ms = None

    _change_task(tables, e, mutate, create=ends_task, detail=f"{e.command}: {e.reason}")
    if not ends_task:
        tables.counters.commands_rejected += 1


def _dead_lettered(tables: Tables, e: ev.TaskDeadLettered) -> None:
    attempts = [Attempt.model_validate(a.model_dump()) for a in e.attempts]
    first = [False]

    def mutate(row: TaskRow) -> None:
        row.dead_lettered = True
        row.operation = row.operation or e.operation
        if attempts:
            row.attempts = attempts
        if row.state not in TERMINAL_STATES:
            first[0] = True
            row.state = "failed"
            row.reason = e.reason
            row.finished_at_ms = e.occurred_at_ms
            row.awaiting_retry = False
            row.ready_at_ms = None

    row = _change_task(tables, e, mutate, detail=e.reason)
    if first[0]:
        _record_outcome(tables, e.occurred_at_ms, succeeded=False)

    c = tables.counters
    old = tables.dead_letter(e.task_id)
    if old is not None:
        for kind, value, table in _dlq_parts(old, c):
            bump(table, value, -1, prune=True)
            tables.index(keys.index_key(kind, (value,), old.task_id), False)
    else:
        c.dead_letters += 1
    dead = DeadLetterRow(
        task_id=e.task_id,
        client_id=e.client_id,
        operation=e.operation,
        reason=e.reason,
        last_error=row.last_error if row else None,
        attempts=attempts or (list(row.attempts) if row else []),
        at_ms=e.occurred_at_ms,
    )
    for kind, value, table in _dlq_parts(dead, c):
        bump(table, value, +1, prune=True)
        tables.index(keys.index_key(kind, (value,), dead.task_id), True)
    tables.put_dead_letter(dead)


def _dlq_parts(row: DeadLetterRow, c: Counters) -> list[tuple[bytes, str, dict[str, int]]]:
    return [
        (keys.DLQ_BY_REASON, row.reason, c.dlq_by_reason),
        (keys.DLQ_BY_CLIENT, row.client_id, c.dlq_by_client),
        (keys.DLQ_BY_OPERATION, row.operation, c.dlq_by_operation),
    ]


def _timed_out(tables: Tables, e: ev.TaskTimedOut) -> None:
    def mutate(row: TaskRow) -> None:
        row.timeouts += 1
        row.last_error = f"attempt {e.attempt} timed out"
        execution = _execution(row, token=e.fencing_token) or _execution(row, attempt=e.attempt)
        _end_execution(execution, "timed_out", e.occurred_at_ms, row.last_error)

    _change_task(tables, e, mutate, detail=e.session_id)
    tables.counters.timeouts += 1


def _result_ignored(tables: Tables, e: ev.ResultIgnored) -> None:
    _change_task(tables, e, lambda row: None, create=False, detail=e.reason)
    tables.counters.results_ignored += 1


def _consolidated(tables: Tables, e: ev.BatchResultConsolidated) -> None:
    def mutate(batch: BatchRow) -> None:
        batch.state = "consolidated"
        batch.operation = batch.operation or e.operation
        batch.session_id = e.session_id or batch.session_id
        batch.success_count = e.success_count
        batch.failure_count = e.failure_count
        batch.consolidated_output = dict(e.consolidated_output)
        batch.consolidated_at_ms = e.occurred_at_ms

    _change_batch(tables, e.batch_id, e.client_id, mutate)


def _session_registered(tables: Tables, e: ev.SessionRegistered) -> None:
    row = _session(tables, e.session_id)
    if row.state != "active":
        row.health_score = 1.0
        row.health_status = "healthy"
        row.circuit = "closed"
        row.ended_at_ms = None
        row.end_reason = None
    row.state = "active"
    row.client_id = e.client_id
    row.agent_id = e.agent_id
    row.max_concurrent = e.max_concurrent
    row.capabilities = list(e.capabilities)
    row.registered_at_ms = e.occurred_at_ms
    row.last_seen_ms = max(row.last_seen_ms or e.occurred_at_ms, e.occurred_at_ms)
    tables.put_session(row)
    tables.counters.active_sessions[e.session_id] = ActiveSession(
        status=row.health_status, score=row.health_score, client_id=e.client_id
    )


def _session_ended(
    tables: Tables, e: ev.SessionReleased | ev.SessionCleaned, state: str, reason: str | None
) -> None:
    row = _session(tables, e.session_id)
    row.state = cast(Any, state)
    row.ended_at_ms = e.occurred_at_ms
    row.end_reason = reason
    tables.put_session(row)
    tables.counters.active_sessions.pop(e.session_id, None)
    for task_id in e.requeued_task_ids:
        task = tables.task(task_id)
        if task is None or task.state not in ACTIVE_STATES or task.session_id != e.session_id:
            continue
        before = _footprint(task)
        execution = _execution(task, session_id=e.session_id)
        _end_execution(execution, "interrupted", e.occurred_at_ms, f"session {state}")
        task.state = "queued"
        task.session_id = None
        task.batch_id = None
        _make_ready(task, e.occurred_at_ms)
        task.history.append(HistoryEntry(type=e.TYPE, at_ms=e.occurred_at_ms, detail=reason))
        task.updated_at_ms = max(task.updated_at_ms, e.occurred_at_ms)
        _move(tables, task_id, before, _footprint(task))
        tables.put_task(task)


def _session_released(tables: Tables, e: ev.SessionReleased) -> None:
    _session_ended(tables, e, "released", e.reason)


def _session_cleaned(tables: Tables, e: ev.SessionCleaned) -> None:
    _session_ended(tables, e, "cleaned", "stale")
    row = _session(tables, e.session_id)
    row.last_seen_ms = e.last_seen_ms
    tables.put_session(row)


def _heartbeat(tables: Tables, e: ev.SessionHeartbeatReceived) -> None:
    _touch_session(tables, e.session_id, e.occurred_at_ms)


def _health_changed(tables: Tables, e: ev.SessionHealthChanged) -> None:
    row = _session(tables, e.session_id)
    row.health_score = e.score
    row.health_status = cast(Any, _health_status(e.status, e.score))
    row.circuit = e.circuit
    tables.put_session(row)
    active = tables.counters.active_sessions.get(e.session_id)
    if active is not None and row.state == "active":
        active.status = row.health_status
        active.score = row.health_score


def _command_rejected(tables: Tables, e: ev.CommandRejected) -> None:
    tables.counters.commands_rejected += 1


_HANDLERS: dict[type[Event], Callable[[Tables, Any], None]] = {
    ev.TaskAccepted: _accepted,
    ev.TaskPendingReview: _pending_review,
    ev.TaskApproved: _approved,
    ev.TaskScheduled: _scheduled,
    ev.TaskWaiting: _waiting,
    ev.TaskQueued: _queued,
    ev.TaskExpedited: _expedited,
    ev.TaskBatched: _batched,
    ev.BatchProcessed: _batch_processed,
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
    ev.BatchResultConsolidated: _consolidated,
    ev.SessionRegistered: _session_registered,
    ev.SessionReleased: _session_released,
    ev.SessionCleaned: _session_cleaned,
    ev.SessionHeartbeatReceived: _heartbeat,
    ev.SessionHealthChanged: _health_changed,
    ev.CommandRejected: _command_rejected,
    **BATCH_JOB_FOLDS,
}


def apply(tables: Tables, event: Event, partition: int, offset: int) -> None:
    """Fold one event read at ``partition``/``offset`` of ``task.events`` into ``tables``."""
    c = tables.counters
    c.events += 1
    bump(c.events_by_type, event.TYPE, 1)
    c.last_event_at_ms = max(c.last_event_at_ms or event.occurred_at_ms, event.occurred_at_ms)
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(tables, event)
    skip(tables, partition, offset)


def skip(tables: Tables, partition: int, offset: int) -> None:
    """Move past a record without folding it (undecodable input is counted by the caller)."""
    tables.offsets[partition] = max(tables.offsets.get(partition, 0), offset + 1)
