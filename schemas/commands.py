"""Commands: what upstream systems, executors and delay agents ask of the processor.

Each class mirrors ``schemas/avro/<Name>.avsc`` field for field; the Avro record name is the
class name. All commands are keyed by ``client_id`` on ``task.commands``.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import MAX_ID_LENGTH, JsonInput


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)


MAX_TRACEBACK_LENGTH: Final = 16_384
"""Longest traceback a result carries (the executor keeps the end, where the error is)."""


class ResourcesUsed(BaseModel):
    """What one attempt used, as its handler reported it (the seed's ``resourcesUsed``):
    CPU seconds, peak memory and disk written in MiB."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: float = Field(default=0.0, ge=0)
    memory: float = Field(default=0.0, ge=0)
    disk: float = Field(default=0.0, ge=0)


class TaskAssignee(BaseModel):
    """Who alone may run a task: every session of an agent (``kind="agent"``, ``id`` = the
    agent id) or one session (``kind="session"``). A string kind, checked by the decider, so a
    bad value is refused with a reason instead of failing to decode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    id: str = Field(max_length=MAX_ID_LENGTH)


class TaskStep(BaseModel):
    """One step of a multi-step task (shape rules: ``streams.domain.submission``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(max_length=MAX_ID_LENGTH)
    name: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    operation: str = Field(max_length=MAX_ID_LENGTH)
    config: JsonInput = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    failure_policy: str = Field(default="fail_task", max_length=MAX_ID_LENGTH)


class TaskAttachment(BaseModel):
    """A reference to a file kept elsewhere: its URL, a name people see, its size and media
    type when known. Shape rules (http/https, lengths, at most 20 a task) are the decider's
    (``streams.domain.attachments``), so a raw producer's bad attachment is refused with a
    reason instead of failing to decode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    name: str
    size_bytes: int | None = None
    content_type: str | None = None


class SubmitTask(Command):
    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    operation: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    payload: JsonInput = Field(default_factory=dict)
    priority: int | None = Field(default=None, ge=1, le=5)
    max_retries: int | None = Field(default=None, ge=0)
    timeout_ms: int | None = Field(default=None, ge=1)
    scheduled_for_ms: int | None = None
    requires_review: bool = False
    depends_on: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    title: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: JsonInput = Field(default_factory=dict)
    due_at_ms: int | None = None
    assigned_to: TaskAssignee | None = None
    steps: list[TaskStep] = Field(default_factory=list)
    template: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    attachments: list[TaskAttachment] = Field(default_factory=list)


def submit_document(command: SubmitTask) -> dict[str, Any]:
    """The submit as a JSON object: its fields by name, the payload and every nested record
    or document as objects rather than JSON text (what a dead letter's ``submit`` holds, ready
    to be validated as a SubmitTask again)."""
    return {name: _plain(getattr(command, name)) for name in SubmitTask.model_fields}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


class CancelTask(Command):
    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    reason: str | None = None
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class ApproveTask(Command):
    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    reviewer: str | None = None
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class RejectTask(Command):
    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    reviewer: str | None = None
    reason: str | None = None
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class ExpediteTask(Command):
    """Raise a waiting task to critical priority."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class RegisterSession(Command):
    session_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    agent_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    max_concurrent: int = Field(default=1, ge=1)
    capabilities: list[str] = Field(default_factory=list)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    incarnation: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class ReleaseSession(Command):
    session_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    reason: str | None = None
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class SessionHeartbeat(Command):
    session_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    workload: float | None = Field(default=None, ge=0.0, le=1.0)


class CleanupSessions(Command):
    """Clean the client's stale sessions now (the seed's ``cleanupStaleSessions()``): those
    silent for the stale timeout, as the processor's ticks do; their work is queued again."""

    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class TaskStarted(Command):
    """An executor began work on an assignment (the task goes in_progress)."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    fencing_token: int


class ReportProgress(Command):
    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    fencing_token: int
    progress: float = Field(ge=0.0, le=1.0)
    message: str | None = None


PERMANENT: Final = "permanent"
"""No retry: the task fails at once; not the session's fault (bad input, a 4xx, no handler)."""
RETRYABLE: Final = "retryable"
"""Retried with backoff (at least ``retry_after_ms``); not the session's fault."""
SESSION: Final = "session"
"""Retried, and the session's health drops (its browser died, it overran its time)."""
FAILURE_CLASSES: Final = (PERMANENT, RETRYABLE, SESSION)
"""A failure's class; ``None`` (writers that do not classify) means retryable and the session's
fault, as every failure was before classes existed. A value outside the set counts as ``None``
(``streams.domain.failure_classes.effective``): the result is still used."""


class ItemResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str = Field(max_length=MAX_ID_LENGTH)
    success: bool
    output: JsonInput = Field(default_factory=dict)
    error: str | None = None
    failure_class: str | None = None
    retry_after_ms: int | None = Field(default=None, ge=0)
    started: bool = False
    """The item's ``TaskStarted`` travels here instead of on its own (see ReportResult)."""


class ReportResult(Command):
    """The outcome of one assignment: a single task, or a batch with per-item results.

    ``fencing_token`` is the token of the assignment; a result carrying an older token is
    recorded and ignored.
    """

    task_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    batch_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    session_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    fencing_token: int
    success: bool
    output: JsonInput = Field(default_factory=dict)
    error: str | None = None
    items: list[ItemResult] = Field(default_factory=list)
    execution_time_ms: int = Field(default=0, ge=0)
    failure_class: str | None = None
    retry_after_ms: int | None = Field(default=None, ge=0)
    traceback: str | None = Field(default=None, max_length=MAX_TRACEBACK_LENGTH)
    """A failed attempt's full traceback, masked by the executor (``schemas.masking``)."""
    resources_used: ResourcesUsed | None = None
    quality: float | None = Field(default=None, ge=0, le=1)
    started: bool = False
    """The attempt's ``TaskStarted`` travels in the result: an executor that had not sent it
    when the handler finished sends one record instead of two. The processor records the start
    before the outcome, as if the TaskStarted had come first."""


class RetryDue(Command):
    """Emitted by a delay agent when a retry or a scheduled start falls due."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    attempt: int = Field(ge=0)
    due_at_ms: int
    kind: str = "retry"


class BatchJobItem(BaseModel):
    """One item of a batch job; ``task_id`` defaults to ``f"{batch_job_id}.{index}"``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str | None = None
    payload: JsonInput = Field(default_factory=dict)


class SubmitBatchJob(Command):
    """Run every item as a child task of ``operation``, at most ``parallelism`` unfinished at once.

    The children are ordinary tasks (priority, batching, retries, dead letters); the job
    tracks their progress and ends with an aggregated result.
    """

    batch_job_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    operation: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    items: list[BatchJobItem] = Field(default_factory=list)
    parallelism: int = Field(default=1, ge=1)
    priority: int | None = Field(default=None, ge=1, le=5)
    max_retries: int | None = Field(default=None, ge=0)
    timeout_ms: int | None = Field(default=None, ge=1)
    capabilities: list[str] = Field(default_factory=list)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class RegisterPool(Command):
    """A pool executor's capacity for one ``task.commands`` partition (``client_id``: its
    member id). Applied on the partition it is read from; see ``streams.domain.pool``."""

    partition: int = Field(ge=0)
    capacity: int = Field(default=1, ge=1)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class ReleasePool(Command):
    partition: int = Field(ge=0)
    reason: str | None = None
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


POOL_COMMANDS: tuple[type[Command], ...] = (RegisterPool, ReleasePool)
"""Commands about a partition's pool capacity, not about a client: applied where they are read."""


class CreateSchedule(Command):
    """A recurring schedule: one task per occurrence (``streams.domain.schedules``)."""

    schedule_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    cron: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    interval_ms: int | None = Field(default=None, ge=1000)
    timezone: str = Field(default="UTC", max_length=MAX_ID_LENGTH)
    start_at_ms: int | None = None
    end_at_ms: int | None = None
    missed: str = Field(default="run", max_length=MAX_ID_LENGTH)
    task: JsonInput = Field(default_factory=dict)
    template: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class DeleteSchedule(Command):
    schedule_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class DefineTemplate(Command):
    """A named task template: defaults for the tasks of the schedules that name it."""

    name: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    task: JsonInput = Field(default_factory=dict)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class DeleteTemplate(Command):
    name: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


# -- task management (issue 15): edit, archive, run now, people in the loop ------------------


class UpdateTask(Command):
    """Change a task that has not started: the fields named in ``changed`` take the values
    given (null clears a nullable one); the others are left as they are. A task that was
    handed to an executor (or ended) refuses it: ``TaskRejected`` naming ``UpdateTask``."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    changed: list[str] = Field(default_factory=list)
    priority: int | None = None
    payload: JsonInput = Field(default_factory=dict)
    scheduled_for_ms: int | None = None
    due_at_ms: int | None = None
    tags: list[str] = Field(default_factory=list)
    assigned_to: TaskAssignee | None = None
    title: str | None = None
    description: str | None = None
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    attachments: list[TaskAttachment] = Field(default_factory=list)


class ArchiveTask(Command):
    """Hide a task from default listings, keeping its history; unfinished work is cancelled."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    reason: str | None = None
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class RunTask(Command):
    """Run now: a scheduled, retry-waiting or deferred task (or a waiting one whose
    dependencies are met) is queued at once."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class ProvideInput(Command):
    """A person's answer to a task waiting for input; the task runs again with it."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    input: JsonInput = Field(default_factory=dict)
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class RequestInput(Command):
    """An executor ends its attempt asking a person (``prompt``): the task waits for input."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    fencing_token: int
    prompt: str
    session_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    execution_time_ms: int = Field(default=0, ge=0)


class DeferTask(Command):
    """An executor ends its attempt putting the task off until ``until_ms``: it is deferred
    and queued again then (no retry is used up)."""

    task_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    fencing_token: int
    until_ms: int
    reason: str | None = None
    session_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    execution_time_ms: int = Field(default=0, ge=0)


class CancelBatchJob(Command):
    """Stop a batch job: no further item is released and unfinished children are cancelled."""

    batch_job_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    reason: str | None = None
    actor: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


COMMAND_TYPES: tuple[type[Command], ...] = (
    SubmitTask,
    CancelTask,
    ApproveTask,
    RejectTask,
    ExpediteTask,
    RegisterSession,
    ReleaseSession,
    SessionHeartbeat,
    CleanupSessions,
    TaskStarted,
    ReportProgress,
    ReportResult,
    RetryDue,
    SubmitBatchJob,
    RegisterPool,
    ReleasePool,
    CreateSchedule,
    DeleteSchedule,
    DefineTemplate,
    DeleteTemplate,
    UpdateTask,
    ArchiveTask,
    RunTask,
    ProvideInput,
    RequestInput,
    DeferTask,
    CancelBatchJob,
)
