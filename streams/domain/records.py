"""The records of a partition state (tasks, sessions, batches, batch jobs, meta) and the
store key each is kept under.

Records are small mutable slotted dataclasses keyed by id; ``PartitionState``
(``streams.domain.state``) holds them and journals every write. Their states are the
contract's (``schemas.states``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from operator import attrgetter
from typing import Any, Final, TypeVar

from schemas.commands import TaskStep
from schemas.states import TaskStatus

R = TypeVar("R")


def _cloner(cls: type[R]) -> Callable[[R], R]:
    """A fast shallow copy for a slotted dataclass (about 8x faster than ``copy.copy``)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    get = attrgetter(*names)

    def clone(record: R) -> R:
        return cls(*get(record))

    return clone


class Status(TaskStatus):
    """Task lifecycle states: the contract's, and ``ATTEMPT_FAILED``, which (like ``ACCEPTED``)
    only exists inside one decision."""

    ATTEMPT_FAILED: Final = "attempt_failed"


# A dependency in one of these states can never complete: its dependents fail.
DEAD: Final = frozenset({Status.FAILED, Status.CANCELLED, Status.REJECTED})


class Circuit:
    CLOSED: Final = "closed"
    OPEN: Final = "open"
    HALF_OPEN: Final = "half_open"


class BatchStatus:
    OPEN: Final = "open"  # collecting or closed-and-waiting for a session (not dispatched)
    DISPATCHED: Final = "dispatched"


@dataclass(slots=True)
class Failure:
    """One failed attempt (mirrors ``schemas.events.AttemptRecord``)."""

    attempt: int
    session_id: str | None
    error: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class StepRun:
    """A step of a multi-step task that started or ended (``streams.domain.steps``); a step
    without one is pending."""

    step_id: str
    status: str  # running, completed, failed, skipped
    child_task_id: str | None = None
    output: dict[str, Any] | None = None
    error: str | None = None


@dataclass(slots=True)
class TaskRecord:
    task_id: str
    client_id: str
    operation: str
    payload: dict[str, Any] | None  # dropped once completed/cancelled/rejected (but notices')
    priority: int  # base: catalog urgency or the explicit override
    explicit_priority: bool
    max_retries: int
    timeout_ms: int
    scheduled_for_ms: int | None
    requires_review: bool
    depends_on: tuple[str, ...]
    capabilities: tuple[str, ...]
    batchable: bool
    session_required: bool
    spec_digest: str  # what a duplicate SubmitTask is compared against
    accepted_at_ms: int
    accepted_seq: int
    status: str = Status.ACCEPTED
    attempt: int = 1  # the current attempt, or the next one while queued / waiting for a retry
    queue_priority: int = 3  # the priority it was queued with (before aging)
    expedited: bool = False
    queued_at_ms: int = 0
    seq: int = 0  # arrival order among queued tasks and batches of the partition
    session_id: str | None = None
    batch_id: str | None = None
    fencing_token: int | None = None
    deadline_at_ms: int = 0
    due_at_ms: int | None = None  # scheduled start or retry
    progress: float = 0.0
    failures: tuple[Failure, ...] = ()
    finished_at_ms: int | None = None
    # Task management (``streams.domain.management``); added later, so old pickles lack them.
    assigned_to: tuple[str, str] | None = None  # (kind "agent" | "session", id)
    deadline_due_ms: int | None = None  # the submitter's due date (TaskAccepted.due_at_ms)
    overdue: bool = False  # task.overdue was raised
    archived: bool = False
    prompt: str | None = None  # what a task waiting for input asks
    steps: tuple[TaskStep, ...] = ()
    step_runs: tuple[StepRun, ...] = ()  # in the order they started or ended

    def clone(self) -> TaskRecord:
        return _clone_task(self)

    def __getstate__(self) -> tuple[Any, ...]:
        """The field values in declaration order, without their names: a third of the bytes
        of pickle's slot dict, in half the time. New fields therefore go at the end."""
        return _TASK_LAYOUT.values(self)

    def __setstate__(self, state: Any) -> None:
        """Unpickle, with the defaults for fields added after the record was stored (a tuple
        shorter than the fields, or a slot dict of a record stored before tuples)."""
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = state[1]  # (None, slots) from pickle's generic slot protocol
        layout = _TASK_LAYOUT
        if not isinstance(state, dict):
            state = dict(zip(layout.names, state, strict=False))
        setter = object.__setattr__
        for name, default, factory in layout.fields:
            if name in state:
                setter(self, name, state[name])
            elif factory is not None:
                setter(self, name, factory())
            else:
                setter(self, name, default)


@dataclass(slots=True)
class SessionRecord:
    session_id: str
    client_id: str
    agent_id: str
    max_concurrent: int
    capabilities: tuple[str, ...]
    registered_at_ms: int
    reg_seq: int
    last_seen_ms: int
    score: float = 1.0
    circuit: str = Circuit.CLOSED
    circuit_since_ms: int = 0
    # Units of capacity in use, in the order they were taken (a dict as an ordered set: a
    # session with thousands of units adds and frees one in O(1)): "t:<task_id>" for a single
    # task, "b:<batch_id>" for a batch.
    units: dict[str, None] = field(default_factory=dict)
    successes: int = 0
    failures: int = 0
    incarnation: str | None = None  # the executor start that registered it last
    workload: float = 0.0  # the agent's last reported workload, 0..1 (heartbeats)

    def clone(self) -> SessionRecord:
        copy = _clone_session(self)
        copy.units = dict(self.units)
        return copy


@dataclass(slots=True)
class BatchRecord:
    batch_id: str
    client_id: str
    operation: str
    opened_at_ms: int
    seq: int
    task_ids: tuple[str, ...] = ()  # every item, in joining order
    live: tuple[str, ...] = ()  # items not resolved yet (the batch goes when this empties)
    status: str = BatchStatus.OPEN
    session_id: str | None = None
    fencing_token: int | None = None
    deadline_at_ms: int = 0
    closed_by: str | None = None
    reported: bool = False  # a result (or timeout) was consolidated; the unit is free

    def clone(self) -> BatchRecord:
        return _clone_batch(self)


@dataclass(slots=True)
class BatchJobRecord:
    """A batch job (``streams.domain.batch_jobs``): its items wait here until released."""

    batch_job_id: str
    client_id: str
    operation: str
    parallelism: int
    spec_digest: str
    task_ids: tuple[str, ...]  # child ids, in item order
    payloads: tuple[dict[str, Any], ...] | None  # dropped once the job completed
    # The resolved spec every child is accepted with.
    priority: int
    explicit_priority: bool
    max_retries: int
    timeout_ms: int
    capabilities: tuple[str, ...]
    batchable: bool
    session_required: bool
    accepted_at_ms: int
    next_index: int = 0  # items before it were released (or failed at release)
    running: dict[str, int] = field(default_factory=dict)  # unfinished child -> item index
    succeeded: int = 0
    failed: int = 0
    # task id -> (index, success, output, error); dropped once the job completed
    results: dict[str, tuple[int, bool, dict[str, Any], str | None]] = field(default_factory=dict)
    completed_at_ms: int | None = None

    def clone(self) -> BatchJobRecord:
        copy = _clone_batch_job(self)
        copy.running = dict(self.running)
        copy.results = dict(self.results)
        return copy


@dataclass(slots=True)
class ScheduleRecord:
    """A recurring schedule (``streams.domain.schedules``): a task per occurrence."""

    schedule_id: str
    client_id: str
    cron: str | None
    interval_ms: int | None
    timezone: str
    start_at_ms: int | None
    end_at_ms: int | None
    missed: str  # "run" or "skip": occurrences missed while nobody ticked
    task: dict[str, Any]  # the SubmitTask fields every occurrence's task is submitted with
    spec_digest: str  # what a repeated CreateSchedule is compared against
    created_at_ms: int
    next_at_ms: int | None  # the next occurrence; None once the schedule ended
    fired: int = 0  # occurrences that created a task
    skipped: int = 0  # occurrences missed and skipped (missed "skip")
    last_occurrence_ms: int | None = None

    def clone(self) -> ScheduleRecord:
        return _clone_schedule(self)


@dataclass(slots=True)
class TemplateRecord:
    """A named task template of a client (``streams.domain.schedules``)."""

    client_id: str
    name: str
    task: dict[str, Any]
    defined_at_ms: int


def template_id(client_id: str, name: str) -> str:
    """Templates are named per client: the key of ``PartitionState.templates``."""
    return f"{client_id}/{name}"


_clone_task = _cloner(TaskRecord)


class _Layout:
    """A dataclass's field names and defaults, computed once (unpickling reads them per record)."""

    __slots__ = ("fields", "names", "values")

    def __init__(self, cls: type) -> None:
        found = fields(cls)
        self.names = tuple(f.name for f in found)
        self.values: Callable[[Any], tuple[Any, ...]] = attrgetter(*self.names)
        self.fields = tuple(
            (
                f.name,
                f.default,
                f.default_factory if f.default_factory is not MISSING else None,
            )
            for f in found
        )


_TASK_LAYOUT: Final = _Layout(TaskRecord)
_clone_schedule = _cloner(ScheduleRecord)
_clone_session = _cloner(SessionRecord)
_clone_batch = _cloner(BatchRecord)
_clone_batch_job = _cloner(BatchJobRecord)


@dataclass(slots=True)
class Meta:
    clock: int = 0  # the latest time seen; decisions never go back in time
    seq: int = 0
    fencing: int = 0
    batch_seq: int = 0
    session_seq: int = 0
    rr_cursor: dict[str, int] = field(default_factory=dict)  # client -> reg_seq last served

    def clone(self) -> Meta:
        return Meta(
            self.clock,
            self.seq,
            self.fencing,
            self.batch_seq,
            self.session_seq,
            dict(self.rr_cursor),
        )


META_KEY: Final = b"meta"


def task_key(task_id: str) -> bytes:
    return b"task/" + task_id.encode()


def done_key(task_id: str) -> bytes:
    """A finished task's key: kept apart, so loading a state reads unfinished work only."""
    return b"done/" + task_id.encode()


def session_key(session_id: str) -> bytes:
    return b"session/" + session_id.encode()


def batch_key(batch_id: str) -> bytes:
    return b"batch/" + batch_id.encode()


def batch_job_key(batch_job_id: str) -> bytes:
    return b"batchjob/" + batch_job_id.encode()


def schedule_key(schedule_id: str) -> bytes:
    return b"schedule/" + schedule_id.encode()


def template_key(key: str) -> bytes:
    return b"template/" + key.encode()
