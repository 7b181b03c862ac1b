"""The rows of the read model: what the fold writes and the HTTP view answers with.

Rows are JSON documents in the store (one key per task, session, batch and dead letter);
``Counters`` is the small aggregate kept in memory and persisted as one row per write batch.
Every aggregate is a sum or a maximum, so replicas that interleave partitions differently
still agree.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from schemas.catalog import PRIORITY_NAMES, PriorityName
from schemas.states import TASK_STATES, TaskState

PRIORITY_ORDER: tuple[str, ...] = tuple(PRIORITY_NAMES[p] for p in sorted(PRIORITY_NAMES))

SLA_MS: dict[str, int] = {
    "critical": 60_000,
    "high": 5 * 60_000,
    "normal": 30 * 60_000,
    "low": 2 * 3_600_000,
    # Seed 004 says "best effort"; a day is the bound we report breaches against.
    "background": 24 * 3_600_000,
}
"""Queue-wait SLAs of seed 004: from becoming ready (queued or batched) to being assigned."""

WAIT_BUCKETS_S: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 86400)
WAIT_BUCKETS_MS: tuple[float, ...] = tuple(bound * 1000 for bound in WAIT_BUCKETS_S)


def priority_name(priority: int | None) -> str | None:
    if priority is None:
        return None
    return PRIORITY_NAMES.get(priority)


class Row(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HistoryEntry(Row):
    type: str
    at_ms: int
    detail: str | None = None
    actor: str | None = None
    """Who sent the command behind the entry, when the command named one."""


class Attempt(Row):
    attempt: int
    session_id: str | None = None
    error: str
    at_ms: int


ExecutionStatus = Literal[
    "assigned", "in_progress", "completed", "failed", "timed_out", "cancelled", "interrupted"
]


class Execution(Row):
    """One attempt of a task on an executor (seed 001 ``task_executions``): opened by
    ``task.assigned``, ended by completion, failure, timeout, cancel or its session ending
    (``interrupted``: the task went back to the queue)."""

    attempt: int
    session_id: str | None = None
    batch_id: str | None = None
    fencing_token: int | None = None
    status: ExecutionStatus = "assigned"
    assigned_at_ms: int
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    execution_time_ms: int | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    """A failed attempt's full traceback, masked by the executor."""
    resources_used: dict[str, float] | None = None
    """cpu (seconds), memory and disk (MiB), as the handler reported them."""
    quality: float | None = None


class Attachment(Row):
    """A file the task refers to (``SubmitTask.attachments``); taskstream keeps no content."""

    url: str
    name: str
    size_bytes: int | None = None
    content_type: str | None = None


class TaskRow(Row):
    task_id: str
    client_id: str
    state: TaskState | None = None
    operation: str | None = None
    priority: int | None = None
    priority_name: PriorityName | None = None
    explicit_priority: bool = False
    payload: dict[str, Any] = Field(default_factory=dict)
    max_retries: int | None = None
    timeout_ms: int | None = None
    requires_review: bool = False
    reviewer: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    waiting_on: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    batchable: bool = False
    session_required: bool = True
    scheduled_for_ms: int | None = None
    due_at_ms: int | None = None
    session_id: str | None = None
    batch_id: str | None = None
    attempt: int = 0
    fencing_token: int | None = None
    deadline_at_ms: int | None = None
    awaiting_retry: bool = False
    retry_due_at_ms: int | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    executions: list[Execution] = Field(default_factory=list)
    timeouts: int = 0
    last_error: str | None = None
    reason: str | None = None
    dead_lettered: bool = False
    output: dict[str, Any] | None = None
    execution_time_ms: int | None = None
    progress: float | None = None
    progress_message: str | None = None
    accepted_at_ms: int | None = None
    ready_at_ms: int | None = None
    assigned_at_ms: int | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    updated_at_ms: int = 0
    history: list[HistoryEntry] = Field(default_factory=list)
    # Task management (``projections.management_folds``); rows folded before lack them.
    title: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    due_by_ms: int | None = None  # the submitter's due date (SubmitTask.due_at_ms)
    overdue: bool = False
    archived: bool = False
    assigned_to: dict[str, str] | None = None  # {"kind": "agent" | "session", "id": ...}
    prompt: str | None = None  # what a task waiting for input asks
    input: dict[str, Any] | None = None  # the latest answer
    submitted_by: str | None = None
    """The actor of the task's ``task.accepted`` (the token's name, ``webhook:<source>`` for a
    task made from an inbound webhook); None when the submitter named none."""
    attachments: list[Attachment] = Field(default_factory=list)


class SessionRow(Row):
    session_id: str
    client_id: str | None = None
    agent_id: str | None = None
    state: Literal["unregistered", "active", "released", "cleaned"] = "unregistered"
    max_concurrent: int | None = None
    capabilities: list[str] = Field(default_factory=list)
    health_score: float = 1.0
    health_status: Literal["healthy", "degraded", "unhealthy"] = "healthy"
    circuit: str = "closed"
    in_flight: int = 0
    tasks_completed: int = 0
    tasks_failed: int = 0
    registered_at_ms: int | None = None
    last_seen_ms: int | None = None
    ended_at_ms: int | None = None
    end_reason: str | None = None


class BatchRow(Row):
    batch_id: str
    client_id: str
    operation: str | None = None
    state: Literal["open", "dispatched", "consolidated"] = "open"
    task_ids: list[str] = Field(default_factory=list)
    session_id: str | None = None
    fencing_token: int | None = None
    closed_by: str | None = None
    success_count: int = 0
    failure_count: int = 0
    consolidated_output: dict[str, Any] = Field(default_factory=dict)
    opened_at_ms: int | None = None
    dispatched_at_ms: int | None = None
    consolidated_at_ms: int | None = None


class DeadLetterRow(Row):
    task_id: str
    client_id: str
    operation: str
    reason: str
    last_error: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    at_ms: int


class WaitStats(Row):
    """Queue waits (ready -> assigned) of one priority class, with SLA breaches."""

    count: int = 0
    total_ms: int = 0
    max_ms: int = 0
    breaches: int = 0
    buckets: list[int] = Field(default_factory=lambda: [0] * len(WAIT_BUCKETS_S))

    def add(self, wait_ms: int) -> None:
        """One assignment's wait. Breaches are counted from ``task.sla_breached`` events, which
        the processor records while a task waits past its SLA (or as it is assigned)."""
        # Once per assignment, on the fold's hot path: plain writes to the field dict skip
        # pydantic's ``__setattr__`` (no assignment validation is configured, so it is equal).
        fields = self.__dict__
        fields["count"] += 1
        fields["total_ms"] += wait_ms
        if wait_ms > self.max_ms:
            fields["max_ms"] = wait_ms
        buckets = self.buckets
        for i, bound in enumerate(WAIT_BUCKETS_MS):
            if wait_ms <= bound:
                buckets[i] += 1


class StarvedClient(Row):
    """A client with waiting work and nothing that could take it (``client.starved``)."""

    reason: str
    starved_at_ms: int
    waiting_tasks: int
    oldest_queued_at_ms: int


class ActiveSession(Row):
    status: Literal["healthy", "degraded", "unhealthy"] = "healthy"
    score: float = 1.0
    client_id: str | None = None
    capacity: int = 1
    """Its ``max_concurrent``: units of work (a task, or a whole batch) at once."""


def _zero_by_priority() -> dict[str, int]:
    return dict.fromkeys(PRIORITY_ORDER, 0)


class Counters(Row):
    """Aggregates kept in memory (and persisted): small whatever the number of tasks."""

    events: int = 0
    events_by_type: dict[str, int] = Field(default_factory=dict)
    undecodable: int = 0
    tasks: int = 0
    by_state: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(TASK_STATES, 0))
    queued_by_priority: dict[str, int] = Field(default_factory=_zero_by_priority)
    queued_by_operation: dict[str, int] = Field(default_factory=dict)
    by_operation: dict[str, int] = Field(default_factory=dict)
    awaiting_retry: int = 0
    overdue: int = 0
    """Tasks past their due date and not finished."""
    open_batches: int = 0
    dispatched_batches: int = 0
    consolidated_batches: int = 0
    active_sessions: dict[str, ActiveSession] = Field(default_factory=dict)
    in_flight: dict[str, int] = Field(default_factory=dict)
    succeeded: int = 0
    failed: int = 0
    last_processed_at_ms: int | None = None
    attempts_failed: int = 0
    retries: int = 0
    timeouts: int = 0
    results_ignored: int = 0
    commands_rejected: int = 0
    dead_letters: int = 0
    dlq_by_reason: dict[str, int] = Field(default_factory=dict)
    dlq_by_client: dict[str, int] = Field(default_factory=dict)
    dlq_by_operation: dict[str, int] = Field(default_factory=dict)
    wait_by_priority: dict[str, WaitStats] = Field(
        default_factory=lambda: {name: WaitStats() for name in PRIORITY_ORDER}
    )
    last_event_at_ms: int | None = None
    starved_clients: dict[str, StarvedClient] = Field(default_factory=dict)
    sla_breaches_by_client: dict[str, int] = Field(default_factory=dict)
    sla_ms: dict[str, int] = Field(default_factory=dict)
    """The SLAs the processor judged by (from its events), by priority name."""
    batch_items_succeeded: int = 0
    batch_items_failed: int = 0
    """Items of consolidated batches by outcome: the batch efficiency (seed 000)."""
    batch_units: dict[str, int] = Field(default_factory=dict)
    batch_items: dict[str, int] = Field(default_factory=dict)
    """Per session: its dispatched batches (a unit each) and their items (in ``in_flight``)."""
    batch_sizes: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Adaptive batch sizing: client -> operation -> size, where below the operation's own."""


# --------------------------------------------------------------------------------------
# Documents: the same rows as plain dicts, for the fold.
#
# The fold changes ~16 fields per event; on pydantic models every change is a ``__setattr__``
# call, so the fold works on the JSON documents themselves (``TypedDict`` keeps mypy checking
# the field names and types) and the models above only parse what the view serves. Each
# document has exactly its model's fields, so a stored document validates into the model;
# ``tests/unit/test_projection_docs.py`` holds the two in step. Changing a row's shape needs a
# ``LAYOUT_VERSION`` bump in ``api/projection_store.py``: old stores are then rebuilt, not misread.


class HistoryDoc(TypedDict):
    type: str
    at_ms: int
    detail: str | None
    actor: NotRequired[str]


class AttemptDoc(TypedDict):
    attempt: int
    session_id: str | None
    error: str
    at_ms: int


class ExecutionDoc(TypedDict):
    attempt: int
    session_id: str | None
    batch_id: str | None
    fencing_token: int | None
    status: ExecutionStatus
    assigned_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    execution_time_ms: int | None
    output: dict[str, Any] | None
    error: str | None
    traceback: NotRequired[str | None]
    resources_used: NotRequired[dict[str, float] | None]
    quality: NotRequired[float | None]


class TaskDoc(TypedDict):
    task_id: str
    client_id: str
    state: TaskState | None
    operation: str | None
    priority: int | None
    priority_name: PriorityName | None
    explicit_priority: bool
    payload: dict[str, Any]
    max_retries: int | None
    timeout_ms: int | None
    requires_review: bool
    reviewer: str | None
    depends_on: list[str]
    waiting_on: list[str]
    capabilities: list[str]
    batchable: bool
    session_required: bool
    scheduled_for_ms: int | None
    due_at_ms: int | None
    session_id: str | None
    batch_id: str | None
    attempt: int
    fencing_token: int | None
    deadline_at_ms: int | None
    awaiting_retry: bool
    retry_due_at_ms: int | None
    attempts: list[AttemptDoc]
    executions: list[ExecutionDoc]
    timeouts: int
    last_error: str | None
    reason: str | None
    dead_lettered: bool
    output: dict[str, Any] | None
    execution_time_ms: int | None
    progress: float | None
    progress_message: str | None
    accepted_at_ms: int | None
    ready_at_ms: int | None
    assigned_at_ms: int | None
    started_at_ms: int | None
    finished_at_ms: int | None
    updated_at_ms: int
    history: list[HistoryDoc]
    title: str | None
    description: str | None
    tags: list[str]
    metadata: dict[str, Any]
    due_by_ms: int | None
    overdue: bool
    archived: bool
    assigned_to: dict[str, str] | None
    prompt: str | None
    input: dict[str, Any] | None
    submitted_by: str | None
    attachments: list[dict[str, Any]]


SessionState = Literal["unregistered", "active", "released", "cleaned"]
HealthStatus = Literal["healthy", "degraded", "unhealthy"]


class SessionDoc(TypedDict):
    session_id: str
    client_id: str | None
    agent_id: str | None
    state: SessionState
    max_concurrent: int | None
    capabilities: list[str]
    health_score: float
    health_status: HealthStatus
    circuit: str
    in_flight: int
    tasks_completed: int
    tasks_failed: int
    registered_at_ms: int | None
    last_seen_ms: int | None
    ended_at_ms: int | None
    end_reason: str | None


BatchState = Literal["open", "dispatched", "consolidated"]


class BatchDoc(TypedDict):
    batch_id: str
    client_id: str
    operation: str | None
    state: BatchState
    task_ids: list[str]
    session_id: str | None
    fencing_token: int | None
    closed_by: str | None
    success_count: int
    failure_count: int
    consolidated_output: dict[str, Any]
    opened_at_ms: int | None
    dispatched_at_ms: int | None
    consolidated_at_ms: int | None


class DeadLetterDoc(TypedDict):
    task_id: str
    client_id: str
    operation: str
    reason: str
    last_error: str | None
    attempts: list[AttemptDoc]
    at_ms: int


def new_task(task_id: str, client_id: str) -> TaskDoc:
    """``TaskRow(task_id=..., client_id=...)`` as a document."""
    return {
        "task_id": task_id,
        "client_id": client_id,
        "state": None,
        "operation": None,
        "priority": None,
        "priority_name": None,
        "explicit_priority": False,
        "payload": {},
        "max_retries": None,
        "timeout_ms": None,
        "requires_review": False,
        "reviewer": None,
        "depends_on": [],
        "waiting_on": [],
        "capabilities": [],
        "batchable": False,
        "session_required": True,
        "scheduled_for_ms": None,
        "due_at_ms": None,
        "session_id": None,
        "batch_id": None,
        "attempt": 0,
        "fencing_token": None,
        "deadline_at_ms": None,
        "awaiting_retry": False,
        "retry_due_at_ms": None,
        "attempts": [],
        "executions": [],
        "timeouts": 0,
        "last_error": None,
        "reason": None,
        "dead_lettered": False,
        "output": None,
        "execution_time_ms": None,
        "progress": None,
        "progress_message": None,
        "accepted_at_ms": None,
        "ready_at_ms": None,
        "assigned_at_ms": None,
        "started_at_ms": None,
        "finished_at_ms": None,
        "updated_at_ms": 0,
        "history": [],
        "title": None,
        "description": None,
        "tags": [],
        "metadata": {},
        "due_by_ms": None,
        "overdue": False,
        "archived": False,
        "assigned_to": None,
        "prompt": None,
        "input": None,
        "submitted_by": None,
        "attachments": [],
    }


def new_execution(
    attempt: int,
    session_id: str | None,
    batch_id: str | None,
    fencing_token: int | None,
    assigned_at_ms: int,
) -> ExecutionDoc:
    return {
        "attempt": attempt,
        "session_id": session_id,
        "batch_id": batch_id,
        "fencing_token": fencing_token,
        "status": "assigned",
        "assigned_at_ms": assigned_at_ms,
        "started_at_ms": None,
        "finished_at_ms": None,
        "execution_time_ms": None,
        "output": None,
        "error": None,
        "traceback": None,
        "resources_used": None,
        "quality": None,
    }


def new_session(session_id: str) -> SessionDoc:
    """``SessionRow(session_id=...)`` as a document."""
    return {
        "session_id": session_id,
        "client_id": None,
        "agent_id": None,
        "state": "unregistered",
        "max_concurrent": None,
        "capabilities": [],
        "health_score": 1.0,
        "health_status": "healthy",
        "circuit": "closed",
        "in_flight": 0,
        "tasks_completed": 0,
        "tasks_failed": 0,
        "registered_at_ms": None,
        "last_seen_ms": None,
        "ended_at_ms": None,
        "end_reason": None,
    }


def new_batch(batch_id: str, client_id: str) -> BatchDoc:
    """``BatchRow(batch_id=..., client_id=...)`` as a document."""
    return {
        "batch_id": batch_id,
        "client_id": client_id,
        "operation": None,
        "state": "open",
        "task_ids": [],
        "session_id": None,
        "fencing_token": None,
        "closed_by": None,
        "success_count": 0,
        "failure_count": 0,
        "consolidated_output": {},
        "opened_at_ms": None,
        "dispatched_at_ms": None,
        "consolidated_at_ms": None,
    }


def bump(table: dict[str, int], key: str | None, delta: int, *, prune: bool = False) -> None:
    """Add ``delta`` to ``table[key]``; with ``prune``, a key that reaches zero is dropped."""
    if key is None:
        return
    value = table.get(key, 0) + delta
    if prune and value == 0:
        table.pop(key, None)
    else:
        table[key] = value
