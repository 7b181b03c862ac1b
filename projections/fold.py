"""The pure fold of ``task.events`` into the read model: ``apply(tables, event, partition, offset)``.

No I/O here. ``Tables`` reads missing rows through a function it is given (a RocksDB get, or a
dict lookup in tests), keeps the rows one write batch touches, and hands back the changes,
the counters and the offsets with ``drain()`` so the caller writes them all at once.

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
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from pydantic_core import from_json, to_json

from schemas import events as ev
from schemas.catalog import PRIORITY_NAMES
from schemas.events import Event

from . import keys
from .batch_jobs import BATCH_JOB_FOLDS
from .rows import (
    ACTIVE_STATES,
    SLA_MS,
    TERMINAL_STATES,
    ActiveSession,
    AttemptDoc,
    BatchDoc,
    BatchRow,
    Counters,
    DeadLetterDoc,
    DeadLetterRow,
    ExecutionDoc,
    HistoryDoc,
    Row,
    SessionDoc,
    SessionRow,
    TaskDoc,
    TaskRow,
    bump,
    new_batch,
    new_execution,
    new_session,
    new_task,
    priority_name,
)

R = TypeVar("R", bound=Row)

HISTORY_LIMIT = 200
"""Entries a task row keeps in ``history``: the first one and the latest ones."""
Change = tuple[bytes, bytes | None]

_MISSING: Any = object()


class Tables:
    """The rows touched since the last ``drain()`` over a read function for the others.

    The fold's rows (tasks, sessions, batches, dead letters) are cached as documents;
    ``task()``/``put_task()`` and the like convert from and to the row models for callers
    outside the fold. ``_get``/``_put`` keep rows of other folds (batch jobs) as models.
    """

    def __init__(
        self,
        read: Callable[[bytes], bytes | None],
        counters: Counters | None = None,
        offsets: dict[int, int] | None = None,
    ) -> None:
        self._read = read
        self.counters = counters if counters is not None else Counters()
        self.offsets: dict[int, int] = dict(offsets or {})
        self._cache: dict[bytes, Any] = {}
        self._dirty: set[bytes] = set()
        self._index: dict[bytes, bool] = {}
        self._born: set[bytes] = set()

    # documents --------------------------------------------------------------------------
    def _doc(self, key: bytes) -> Any:
        doc = self._cache.get(key, _MISSING)
        if doc is _MISSING:
            raw = self._read(key)
            doc = None if raw is None else from_json(raw)
            self._cache[key] = doc
        return doc

    def _put_doc(self, key: bytes, doc: Any) -> None:
        self._cache[key] = doc
        self._dirty.add(key)

    def task_doc(self, task_id: str) -> TaskDoc | None:
        """The task's document as the fold has it (shared: do not change it)."""
        return cast(TaskDoc | None, self._doc(keys.task_key(task_id)))

    def session_doc(self, session_id: str) -> SessionDoc | None:
        return cast(SessionDoc | None, self._doc(keys.session_key(session_id)))

    def batch_doc(self, batch_id: str) -> BatchDoc | None:
        return cast(BatchDoc | None, self._doc(keys.batch_key(batch_id)))

    def dead_letter_doc(self, task_id: str) -> DeadLetterDoc | None:
        return cast(DeadLetterDoc | None, self._doc(keys.dead_key(task_id)))

    # rows as models (a copy: change them with put_*) -------------------------------------
    def task(self, task_id: str) -> TaskRow | None:
        doc = self.task_doc(task_id)
        return None if doc is None else TaskRow.model_validate(doc)

    def put_task(self, row: TaskRow) -> None:
        self._put_doc(keys.task_key(row.task_id), row.model_dump())

    def session(self, session_id: str) -> SessionRow | None:
        doc = self.session_doc(session_id)
        return None if doc is None else SessionRow.model_validate(doc)

    def put_session(self, row: SessionRow) -> None:
        self._put_doc(keys.session_key(row.session_id), row.model_dump())

    def batch(self, batch_id: str) -> BatchRow | None:
        doc = self.batch_doc(batch_id)
        return None if doc is None else BatchRow.model_validate(doc)

    def put_batch(self, row: BatchRow) -> None:
        self._put_doc(keys.batch_key(row.batch_id), row.model_dump())

    def dead_letter(self, task_id: str) -> DeadLetterRow | None:
        doc = self.dead_letter_doc(task_id)
        return None if doc is None else DeadLetterRow.model_validate(doc)

    def put_dead_letter(self, row: DeadLetterRow) -> None:
        self._put_doc(keys.dead_key(row.task_id), row.model_dump())

    # rows kept as models (folds outside this module) --------------------------------------
    def _get(self, key: bytes, model: type[R]) -> R | None:
        row = self._cache.get(key, _MISSING)
        if row is _MISSING:
            raw = self._read(key)
            row = None if raw is None else model.model_validate_json(raw)
            self._cache[key] = row
        return cast(R | None, row)

    def _put(self, key: bytes, row: Row) -> None:
        self._put_doc(key, row)

    # indexes ----------------------------------------------------------------------------
    def index(self, key: bytes, present: bool) -> None:
        """Add or remove an index entry. An entry added and removed within one write batch
        (a task passing through a state) is never written: no put, no tombstone."""
        written = self._index
        if present:
            if key not in written:
                self._born.add(key)
            written[key] = True
        elif written.get(key) is True and key in self._born:
            del written[key]
            self._born.discard(key)
        else:
            written[key] = False

    # write batch --------------------------------------------------------------------------
    def drain(self) -> list[Change]:
        """Every change since the last drain, plus the counters and offsets rows."""
        changes: list[Change] = []
        cache = self._cache
        for key in sorted(self._dirty):
            row = cache[key]
            if row is None:
                changes.append((key, None))
            elif isinstance(row, BaseModel):
                changes.append((key, row.model_dump_json().encode()))
            else:
                # As ``model_dump_json`` writes the row models: NaN and infinities as null.
                changes.append((key, to_json(row, inf_nan_mode="null")))
        for key, present in sorted(self._index.items()):
            changes.append((key, b"" if present else None))
        changes.append((keys.COUNTERS_KEY, self.counters.model_dump_json().encode()))
        for partition, offset in sorted(self.offsets.items()):
            changes.append((keys.offset_key(partition), str(offset).encode()))
        self._cache.clear()
        self._dirty.clear()
        self._index.clear()
        self._born.clear()
        return changes


# --------------------------------------------------------------------------------------
# Task footprint: what one task contributes to counters and indexes:
# (state, priority name, operation, client id, session id while assigned or in progress,
# awaiting retry).

Footprint = tuple[str | None, str | None, str | None, str | None, str | None, bool]
_ABSENT: Footprint = (None, None, None, None, None, False)


def _footprint(row: TaskDoc) -> Footprint:
    state = row["state"]
    return (
        state,
        row["priority_name"],
        row["operation"],
        row["client_id"],
        row["session_id"] if state in ACTIVE_STATES else None,
        row["awaiting_retry"],
    )


def _move(tables: Tables, task_id: str, before: Footprint, after: Footprint) -> None:
    """Move the task's contribution to the counters and indexes from ``before`` to ``after``."""
    if before == after:
        return
    c = tables.counters
    b_state, b_priority, b_operation, b_client, b_session, b_retry = before
    a_state, a_priority, a_operation, a_client, a_session, a_retry = after
    if b_state != a_state:
        by_state = c.by_state
        if b_state is not None:
            by_state[b_state] = by_state.get(b_state, 0) - 1
        if a_state is not None:
            by_state[a_state] = by_state.get(a_state, 0) + 1
    b_queued = b_state == "queued"
    a_queued = a_state == "queued"
    if b_queued or a_queued:
        if b_queued:
            bump(c.queued_by_priority, b_priority, -1)
            bump(c.queued_by_operation, b_operation, -1, prune=True)
        if a_queued:
            bump(c.queued_by_priority, a_priority, +1)
            bump(c.queued_by_operation, a_operation, +1, prune=True)
    if b_operation != a_operation:
        bump(c.by_operation, b_operation, -1, prune=True)
        bump(c.by_operation, a_operation, +1, prune=True)
    if b_retry != a_retry:
        c.awaiting_retry += 1 if a_retry else -1
    if b_session != a_session:
        for session_id, sign in ((b_session, -1), (a_session, +1)):
            if session_id is not None:
                bump(c.in_flight, session_id, sign, prune=True)
                session = _session(tables, session_id)
                session["in_flight"] += sign
                tables._put_doc(keys.session_key(session_id), session)
    # Indexes: by client, by state, by client and state, by operation.
    index = tables.index
    prefix = keys.index_prefix_of
    tid = keys.encode(task_id)
    if b_client != a_client:
        if b_client is not None:
            index(prefix(keys.BY_CLIENT, (b_client,)) + tid, False)
        if a_client is not None:
            index(prefix(keys.BY_CLIENT, (a_client,)) + tid, True)
    if b_state != a_state:
        if b_state is not None:
            index(prefix(keys.BY_STATE, (b_state,)) + tid, False)
        if a_state is not None:
            index(prefix(keys.BY_STATE, (a_state,)) + tid, True)
    if b_state != a_state or b_client != a_client:
        if b_state is not None and b_client is not None:
            index(prefix(keys.BY_CLIENT_STATE, (b_client, b_state)) + tid, False)
        if a_state is not None and a_client is not None:
            index(prefix(keys.BY_CLIENT_STATE, (a_client, a_state)) + tid, True)
    if b_operation != a_operation:
        if b_operation is not None:
            index(prefix(keys.BY_OPERATION, (b_operation,)) + tid, False)
        if a_operation is not None:
            index(prefix(keys.BY_OPERATION, (a_operation,)) + tid, True)


Opened = tuple[bytes, TaskDoc, Footprint]


def _open(tables: Tables, event: ev.TaskEvent) -> Opened:
    """The task's document (created if new) and its footprint before the event."""
    key = keys.task_key(event.task_id)
    row: TaskDoc | None = tables._doc(key)
    if row is None:
        tables.counters.tasks += 1
        return key, new_task(event.task_id, event.client_id), _ABSENT
    return key, row, _footprint(row)


def _open_existing(tables: Tables, event: ev.TaskEvent) -> Opened | None:
    """Like ``_open``, but an event about an unknown task changes nothing (None)."""
    key = keys.task_key(event.task_id)
    row: TaskDoc | None = tables._doc(key)
    if row is None:
        return None
    return key, row, _footprint(row)


def _close(
    tables: Tables, opened: Opened, event: ev.TaskEvent, detail: str | None = None
) -> TaskDoc:
    """Note the event in the task's history and move its footprint; returns the row."""
    key, row, before = opened
    history = row["history"]
    entry: HistoryDoc = {"type": event.TYPE, "at_ms": event.occurred_at_ms, "detail": detail}
    actor = getattr(event, "actor", None)
    if actor is not None:  # who sent the command (the token's name, the SDK's identity)
        entry["actor"] = actor
    history.append(entry)
    if len(history) > HISTORY_LIMIT:
        # Keep the first entry (how the task began) and the latest ones: a task that gets
        # endless progress reports or stale results must not grow a row without bound.
        del history[1 : len(history) - HISTORY_LIMIT + 1]
    if event.occurred_at_ms > row["updated_at_ms"]:
        row["updated_at_ms"] = event.occurred_at_ms
    _move(tables, row["task_id"], before, _footprint(row))
    tables._put_doc(key, row)
    return row


def _set_priority(row: TaskDoc, priority: int) -> None:
    row["priority"] = priority
    row["priority_name"] = cast(Any, PRIORITY_NAMES.get(priority))


def _make_ready(row: TaskDoc, at_ms: int) -> None:
    if row["ready_at_ms"] is None:
        row["ready_at_ms"] = at_ms
    row["awaiting_retry"] = False
    row["retry_due_at_ms"] = None


_OPEN = ("assigned", "in_progress")


def _execution(
    row: TaskDoc,
    *,
    token: int | None = None,
    attempt: int | None = None,
    session_id: str | None = None,
    status: tuple[str, ...] = _OPEN,
) -> ExecutionDoc | None:
    """The latest execution of ``row`` in one of ``status`` matching what the event names
    (the fencing token when it carries one: attempt numbers repeat after a requeue)."""
    execution: ExecutionDoc
    for execution in reversed(row["executions"]):
        if (
            execution["status"] in status
            and (token is None or execution["fencing_token"] == token)
            and (attempt is None or execution["attempt"] == attempt)
            and (session_id is None or execution["session_id"] == session_id)
        ):
            return execution
    return None


def _end_execution(
    execution: ExecutionDoc | None, status: str, at_ms: int, error: str | None = None
) -> None:
    if execution is None:
        return
    execution["status"] = cast(Any, status)
    execution["finished_at_ms"] = at_ms
    if error is not None:
        execution["error"] = error


def _attempt_docs(attempts: list[ev.AttemptRecord]) -> list[AttemptDoc]:
    return [
        {"attempt": a.attempt, "session_id": a.session_id, "error": a.error, "at_ms": a.at_ms}
        for a in attempts
    ]


def _record_outcome(tables: Tables, at_ms: int, *, succeeded: bool) -> None:
    c = tables.counters
    if succeeded:
        c.succeeded += 1
    else:
        c.failed += 1
    c.last_processed_at_ms = max(c.last_processed_at_ms or at_ms, at_ms)


# --------------------------------------------------------------------------------------
# Sessions and batches.


def _session(tables: Tables, session_id: str) -> SessionDoc:
    row = tables.session_doc(session_id)
    return row if row is not None else new_session(session_id)


def _put_session(tables: Tables, row: SessionDoc) -> None:
    tables._put_doc(keys.session_key(row["session_id"]), row)


def _touch_session(tables: Tables, session_id: str | None, at_ms: int) -> SessionDoc | None:
    if session_id is None:
        return None
    row = _session(tables, session_id)
    row["last_seen_ms"] = max(row["last_seen_ms"] or at_ms, at_ms)
    _put_session(tables, row)
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
    tables: Tables, batch_id: str, client_id: str, mutate: Callable[[BatchDoc], None]
) -> None:
    key = keys.batch_key(batch_id)
    row: BatchDoc | None = tables._doc(key)
    before = None if row is None else row["state"]
    if row is None:
        row = new_batch(batch_id, client_id)
    mutate(row)
    if before != row["state"]:
        _batch_counter(tables.counters, before, -1)
        _batch_counter(tables.counters, row["state"], +1)
    tables._put_doc(key, row)


# --------------------------------------------------------------------------------------
# Handlers, one per event type.


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
    _set_priority(row, e.priority)
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
    _close(tables, opened, e)


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
    _set_priority(row, e.priority)
    row["attempt"] = e.attempt
    row["session_id"] = None
    row["batch_id"] = None
    row["waiting_on"] = []
    _make_ready(row, e.occurred_at_ms)
    _close(tables, opened, e, e.reason)


def _expedited(tables: Tables, e: ev.TaskExpedited) -> None:
    opened = _open(tables, e)
    _set_priority(opened[1], e.priority)
    _close(tables, opened, e)


def _batched(tables: Tables, e: ev.TaskBatched) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "batched"
    row["batch_id"] = e.batch_id
    row["operation"] = row["operation"] or e.operation
    _make_ready(row, e.occurred_at_ms)
    _close(tables, opened, e, e.batch_id)

    def add(batch: BatchDoc) -> None:
        batch["operation"] = batch["operation"] or e.operation
        if batch["opened_at_ms"] is None:
            batch["opened_at_ms"] = e.occurred_at_ms
        if e.task_id not in batch["task_ids"]:
            batch["task_ids"].append(e.task_id)

    _change_batch(tables, e.batch_id, e.client_id, add)


def _batch_processed(tables: Tables, e: ev.BatchProcessed) -> None:
    def mutate(batch: BatchDoc) -> None:
        batch["state"] = "dispatched"
        batch["operation"] = e.operation
        batch["task_ids"] = list(e.task_ids)
        batch["session_id"] = e.session_id
        batch["fencing_token"] = e.fencing_token
        batch["closed_by"] = e.closed_by
        batch["dispatched_at_ms"] = e.occurred_at_ms
        if batch["opened_at_ms"] is None:
            batch["opened_at_ms"] = e.occurred_at_ms

    _change_batch(tables, e.batch_id, e.client_id, mutate)


def _assigned(tables: Tables, e: ev.TaskAssigned) -> None:
    opened = _open(tables, e)
    row = opened[1]
    ready_at_ms = row["ready_at_ms"]
    if ready_at_ms is not None:
        name = row["priority_name"] or priority_name(e.priority)
        if name is not None:
            wait = max(0, e.occurred_at_ms - ready_at_ms)
            tables.counters.wait_by_priority[name].add(wait, SLA_MS[name])
        row["ready_at_ms"] = None
    row["state"] = "assigned"
    row["operation"] = row["operation"] or e.operation
    row["session_id"] = e.session_id
    row["batch_id"] = e.batch_id
    row["attempt"] = e.attempt
    row["fencing_token"] = e.fencing_token
    row["deadline_at_ms"] = e.deadline_at_ms
    _set_priority(row, e.priority)
    row["assigned_at_ms"] = e.occurred_at_ms
    row["progress"] = None
    row["progress_message"] = None
    row["awaiting_retry"] = False
    executions = row["executions"]
    for stale in executions:
        if stale["status"] in _OPEN:
            _end_execution(stale, "interrupted", e.occurred_at_ms)
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
    execution = _execution(row, token=e.fencing_token)
    if execution is not None:
        execution["status"] = "in_progress"
        execution["started_at_ms"] = e.occurred_at_ms
    _close(tables, opened, e)
    _touch_session(tables, e.session_id or row["session_id"], e.occurred_at_ms)


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
    execution = _execution(row, attempt=e.attempt) or _execution(row)
    if execution is not None:
        _end_execution(execution, "completed", e.occurred_at_ms)
        execution["execution_time_ms"] = e.execution_time_ms
        execution["output"] = dict(e.output)
    _close(tables, opened, e)
    if first:
        _record_outcome(tables, e.occurred_at_ms, succeeded=True)
        touched = _touch_session(tables, e.session_id or row["session_id"], e.occurred_at_ms)
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
    execution = _execution(row, attempt=e.attempt)
    if execution is not None:
        _end_execution(execution, "failed", e.occurred_at_ms, e.error)
    else:  # a timeout ended the execution just before its failure
        execution = _execution(row, attempt=e.attempt, status=("timed_out",))
        if execution is not None:
            execution["error"] = e.error
    if execution is not None:
        execution["execution_time_ms"] = e.execution_time_ms
    _close(tables, opened, e, e.error)
    tables.counters.attempts_failed += 1
    session = _touch_session(tables, e.session_id or row["session_id"], e.occurred_at_ms)
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
    _make_ready(row, e.occurred_at_ms)
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
        row["attempts"] = _attempt_docs(e.attempts)
    row["finished_at_ms"] = e.occurred_at_ms
    row["awaiting_retry"] = False
    row["retry_due_at_ms"] = None
    row["ready_at_ms"] = None
    _close(tables, opened, e, e.reason)
    if first:
        _record_outcome(tables, e.occurred_at_ms, succeeded=False)


def _cancelled(tables: Tables, e: ev.TaskCancelled) -> None:
    opened = _open(tables, e)
    row = opened[1]
    row["state"] = "cancelled"
    row["reason"] = e.reason
    if e.fencing_token is not None:
        execution = _execution(row, token=e.fencing_token)
        _end_execution(execution, "cancelled", e.occurred_at_ms, e.reason)
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
    attempts = _attempt_docs(e.attempts)
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
        _record_outcome(tables, e.occurred_at_ms, succeeded=False)

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
    tables._put_doc(keys.dead_key(e.task_id), dead)


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
    execution = _execution(row, token=e.fencing_token) or _execution(row, attempt=e.attempt)
    _end_execution(execution, "timed_out", e.occurred_at_ms, error)
    _close(tables, opened, e, e.session_id)
    tables.counters.timeouts += 1


def _result_ignored(tables: Tables, e: ev.ResultIgnored) -> None:
    opened = _open_existing(tables, e)
    if opened is not None:
        _close(tables, opened, e, e.reason)
    tables.counters.results_ignored += 1


def _consolidated(tables: Tables, e: ev.BatchResultConsolidated) -> None:
    def mutate(batch: BatchDoc) -> None:
        batch["state"] = "consolidated"
        batch["operation"] = batch["operation"] or e.operation
        batch["session_id"] = e.session_id or batch["session_id"]
        batch["success_count"] = e.success_count
        batch["failure_count"] = e.failure_count
        batch["consolidated_output"] = dict(e.consolidated_output)
        batch["consolidated_at_ms"] = e.occurred_at_ms

    _change_batch(tables, e.batch_id, e.client_id, mutate)


def _session_registered(tables: Tables, e: ev.SessionRegistered) -> None:
    row = _session(tables, e.session_id)
    if row["state"] != "active":
        row["health_score"] = 1.0
        row["health_status"] = "healthy"
        row["circuit"] = "closed"
        row["ended_at_ms"] = None
        row["end_reason"] = None
    row["state"] = "active"
    row["client_id"] = e.client_id
    row["agent_id"] = e.agent_id
    row["max_concurrent"] = e.max_concurrent
    row["capabilities"] = list(e.capabilities)
    row["registered_at_ms"] = e.occurred_at_ms
    row["last_seen_ms"] = max(row["last_seen_ms"] or e.occurred_at_ms, e.occurred_at_ms)
    _put_session(tables, row)
    tables.counters.active_sessions[e.session_id] = ActiveSession(
        status=row["health_status"], score=row["health_score"], client_id=e.client_id
    )


def _session_ended(
    tables: Tables, e: ev.SessionReleased | ev.SessionCleaned, state: str, reason: str | None
) -> None:
    row = _session(tables, e.session_id)
    row["state"] = cast(Any, state)
    row["ended_at_ms"] = e.occurred_at_ms
    row["end_reason"] = reason
    _put_session(tables, row)
    tables.counters.active_sessions.pop(e.session_id, None)
    for task_id in e.requeued_task_ids:
        key = keys.task_key(task_id)
        task: TaskDoc | None = tables._doc(key)
        if task is None or task["state"] not in ACTIVE_STATES or task["session_id"] != e.session_id:
            continue
        before = _footprint(task)
        execution = _execution(task, session_id=e.session_id)
        _end_execution(execution, "interrupted", e.occurred_at_ms, f"session {state}")
        task["state"] = "queued"
        task["session_id"] = None
        task["batch_id"] = None
        _make_ready(task, e.occurred_at_ms)
        task["history"].append({"type": e.TYPE, "at_ms": e.occurred_at_ms, "detail": reason})
        task["updated_at_ms"] = max(task["updated_at_ms"], e.occurred_at_ms)
        _move(tables, task_id, before, _footprint(task))
        tables._put_doc(key, task)


def _session_released(tables: Tables, e: ev.SessionReleased) -> None:
    _session_ended(tables, e, "released", e.reason)


def _session_cleaned(tables: Tables, e: ev.SessionCleaned) -> None:
    _session_ended(tables, e, "cleaned", "stale")
    row = _session(tables, e.session_id)
    row["last_seen_ms"] = e.last_seen_ms
    _put_session(tables, row)


def _heartbeat(tables: Tables, e: ev.SessionHeartbeatReceived) -> None:
    _touch_session(tables, e.session_id, e.occurred_at_ms)


def _health_changed(tables: Tables, e: ev.SessionHealthChanged) -> None:
    row = _session(tables, e.session_id)
    row["health_score"] = e.score
    row["health_status"] = cast(Any, _health_status(e.status, e.score))
    row["circuit"] = e.circuit
    _put_session(tables, row)
    active = tables.counters.active_sessions.get(e.session_id)
    if active is not None and row["state"] == "active":
        active.status = row["health_status"]
        active.score = row["health_score"]


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
    ev.TasksForgotten: _forgotten,
    **BATCH_JOB_FOLDS,
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
