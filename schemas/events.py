"""Events: every lifecycle fact the processor records on ``task.events``.

Each class mirrors ``schemas/avro/<Name>.avsc``; ``TYPE`` is the seed's dotted event name.
Runtime metadata (the causing command's partition/offset, index and count) travels in Kafka
record headers, not in these bodies, so the domain stays free of transport concerns.
"""

from __future__ import annotations

from typing import ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field

from schemas.commands import ResourcesUsed, TaskAssignee, TaskAttachment, TaskStep
from schemas.fields import JsonObject


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str] = ""

    client_id: str
    occurred_at_ms: int


class TaskEvent(Event):
    task_id: str


class TaskAccepted(TaskEvent):
    """A SubmitTask passed validation; carries the whole task specification."""

    TYPE: ClassVar[str] = "task.accepted"
    operation: str
    payload: JsonObject = Field(default_factory=dict)
    priority: int
    explicit_priority: bool = False
    max_retries: int
    timeout_ms: int
    scheduled_for_ms: int | None = None
    requires_review: bool = False
    depends_on: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    batchable: bool = False
    session_required: bool = True
    actor: str | None = None
    title: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: JsonObject = Field(default_factory=dict)
    due_at_ms: int | None = None
    assigned_to: TaskAssignee | None = None
    steps: list[TaskStep] = Field(default_factory=list)
    attachments: list[TaskAttachment] = Field(default_factory=list)


class TaskPendingReview(TaskEvent):
    TYPE: ClassVar[str] = "task.pending_review"


class TaskApproved(TaskEvent):
    TYPE: ClassVar[str] = "task.approved"
    reviewer: str | None = None
    actor: str | None = None


class TaskScheduled(TaskEvent):
    TYPE: ClassVar[str] = "task.scheduled"
    due_at_ms: int


class TaskWaiting(TaskEvent):
    """The task waits for the tasks it depends on."""

    TYPE: ClassVar[str] = "task.waiting"
    waiting_on: list[str]


class TaskQueued(TaskEvent):
    TYPE: ClassVar[str] = "task.queued"
    priority: int
    attempt: int
    reason: str = "submitted"


class TaskExpedited(TaskEvent):
    TYPE: ClassVar[str] = "task.expedited"
    priority: int
    actor: str | None = None


class TaskBatched(TaskEvent):
    TYPE: ClassVar[str] = "task.batched"
    batch_id: str
    operation: str


class BatchProcessed(Event):
    """A batch closed (window elapsed or size reached) and was dispatched as one assignment."""

    TYPE: ClassVar[str] = "batch.processed"
    batch_id: str
    operation: str
    task_ids: list[str]
    session_id: str | None = None
    fencing_token: int
    closed_by: str = "window"


class TaskAssigned(TaskEvent):
    TYPE: ClassVar[str] = "task.assigned"
    operation: str
    session_id: str | None = None
    batch_id: str | None = None
    attempt: int
    fencing_token: int
    deadline_at_ms: int
    priority: int


class TaskStartedEvent(TaskEvent):
    TYPE: ClassVar[str] = "task.started"
    session_id: str | None = None
    fencing_token: int


class TaskProgressed(TaskEvent):
    TYPE: ClassVar[str] = "task.progress"
    fencing_token: int
    progress: float
    message: str | None = None


class TaskCompleted(TaskEvent):
    TYPE: ClassVar[str] = "task.completed"
    operation: str
    attempt: int
    session_id: str | None = None
    batch_id: str | None = None
    output: JsonObject = Field(default_factory=dict)
    execution_time_ms: int = 0
    resources_used: ResourcesUsed | None = None
    quality: float | None = None

    @property
    def outcome(self) -> str:
        """Always ``completed``; ``TaskFailed.outcome`` says how other endings ended."""
        return OUTCOME_COMPLETED


class AttemptRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: int
    session_id: str | None = None
    error: str
    at_ms: int


OUTCOME_COMPLETED: Final = "completed"
OUTCOME_FAILED: Final = "failed"
OUTCOME_CANCELLED: Final = "cancelled"
OUTCOME_REJECTED: Final = "rejected"
OUTCOME_REFUSED: Final = "refused"
OUTCOMES: Final = (
    OUTCOME_COMPLETED,
    OUTCOME_FAILED,
    OUTCOME_CANCELLED,
    OUTCOME_REJECTED,
    OUTCOME_REFUSED,
)
"""How a task can end: ``TaskCompleted.outcome`` is always ``completed``; ``TaskFailed.outcome``
is one of the others (``docs/protocol.md``, "Endings")."""


class TaskFailed(TaskEvent):
    """The task failed permanently, or (``outcome``, on ``task.failed`` only) ended otherwise
    than by completing: cancelled, rejected by a reviewer, refused at submit."""

    TYPE: ClassVar[str] = "task.failed"
    operation: str
    attempt: int
    error: str
    reason: str = "error"
    attempts: list[AttemptRecord] = Field(default_factory=list)
    outcome: str = OUTCOME_FAILED


class TaskAttemptFailed(TaskEvent):
    """One attempt failed; a retry or a permanent failure follows."""

    TYPE: ClassVar[str] = "task.attempt_failed"
    attempt: int
    session_id: str | None = None
    batch_id: str | None = None
    error: str
    execution_time_ms: int = 0
    failure_class: str | None = None
    """``schemas.commands.FAILURE_CLASSES``; None (older records) counts as the session's fault."""
    retry_after_ms: int | None = None
    traceback: str | None = None
    resources_used: ResourcesUsed | None = None
    quality: float | None = None


class TaskRetryScheduled(TaskEvent):
    TYPE: ClassVar[str] = "task.retry_scheduled"
    attempt: int
    delay_ms: int
    due_at_ms: int
    tier_ms: int
    error: str


class TaskRetrying(TaskEvent):
    TYPE: ClassVar[str] = "task.retrying"
    attempt: int


class TaskCancelled(TaskEvent):
    TYPE: ClassVar[str] = "task.cancelled"
    reason: str | None = None
    session_id: str | None = None
    fencing_token: int | None = None
    actor: str | None = None


class TaskRejected(TaskEvent):
    """A command about a task was refused, or a reviewer rejected the task."""

    TYPE: ClassVar[str] = "task.rejected"
    reason: str
    command: str = "SubmitTask"
    reviewer: str | None = None
    operation: str | None = None
    actor: str | None = None
    # A refused SubmitTask, for its dead letter (``streams.domain.refusals.refused_submit``).
    submit: JsonObject = Field(default_factory=dict)


class TaskDeadLettered(TaskEvent):
    TYPE: ClassVar[str] = "task.dead_lettered"
    operation: str
    reason: str
    attempts: list[AttemptRecord] = Field(default_factory=list)


class TaskTimedOut(TaskEvent):
    TYPE: ClassVar[str] = "task.timed_out"
    attempt: int
    session_id: str | None = None
    fencing_token: int


class ResultIgnored(TaskEvent):
    """A result for a stale attempt (older fencing token) was recorded and ignored."""

    TYPE: ClassVar[str] = "task.result_ignored"
    fencing_token: int
    current_fencing_token: int | None = None
    reason: str


class BatchResultConsolidated(Event):
    TYPE: ClassVar[str] = "batch.result_consolidated"
    batch_id: str
    operation: str
    session_id: str | None = None
    success_count: int
    failure_count: int
    consolidated_output: JsonObject = Field(default_factory=dict)
    health_effect: str | None = None
    batch_size: int | None = None
    """The client's batch size for the operation after this outcome (adaptive batch sizing);
    None: the operation's own size (also records before this field)."""
    """``success``, ``failure`` or ``none``; None (older records): from the counts."""


class SessionRegistered(Event):
    TYPE: ClassVar[str] = "session.registered"
    session_id: str
    agent_id: str
    max_concurrent: int
    capabilities: list[str] = Field(default_factory=list)
    incarnation: str | None = None
    requeued_task_ids: list[str] = Field(default_factory=list)


class SessionReleased(Event):
    TYPE: ClassVar[str] = "session.released"
    session_id: str
    reason: str | None = None
    requeued_task_ids: list[str] = Field(default_factory=list)


class SessionCleaned(Event):
    TYPE: ClassVar[str] = "session.cleaned"
    session_id: str
    last_seen_ms: int
    requeued_task_ids: list[str] = Field(default_factory=list)


class SessionHeartbeatReceived(Event):
    TYPE: ClassVar[str] = "session.heartbeat"
    session_id: str
    workload: float | None = None


class SessionHealthChanged(Event):
    TYPE: ClassVar[str] = "session.health_changed"
    session_id: str
    score: float
    status: str
    previous_status: str
    circuit: str = "closed"


class CommandRejected(Event):
    """A command that is not about one task (or names none) was refused."""

    TYPE: ClassVar[str] = "command.rejected"
    command: str
    reason: str
    task_id: str | None = None
    session_id: str | None = None


class CommandForwarded(Event):
    """A command read away from its client's home partition, produced again to the home
    partition (``docs/partitioning.md``); recorded on the partition it arrived on."""

    TYPE: ClassVar[str] = "command.forwarded"
    command: str
    task_id: str | None = None
    source_partition: int
    source_offset: int
    home_partition: int
    key: bytes | None = None
    value: bytes


class TasksForgotten(Event):
    """The processor dropped these finished tasks and completed batch jobs of one client from
    its state: each finished at or before ``finished_by_ms``, the retention window ago
    (``TASKSTREAM_TASK_RETENTION_MS``). Their ids are unknown to it from now on (a new
    SubmitTask with such an id is a new task); the event log keeps their history."""

    TYPE: ClassVar[str] = "tasks.forgotten"
    finished_by_ms: int
    task_ids: list[str] = Field(default_factory=list)
    batch_job_ids: list[str] = Field(default_factory=list)


class BatchJobEvent(Event):
    batch_job_id: str


class BatchJobChild(BaseModel):
    """One item of an accepted batch job, its child task id resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    payload: JsonObject = Field(default_factory=dict)


class BatchJobItemResult(BaseModel):
    """The outcome of one child: its output when it completed, its error otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    index: int
    success: bool
    output: JsonObject = Field(default_factory=dict)
    error: str | None = None


class BatchJobAccepted(BatchJobEvent):
    """A SubmitBatchJob passed validation; carries the items and the resolved child spec."""

    TYPE: ClassVar[str] = "batch_job.accepted"
    operation: str
    parallelism: int
    total: int
    children: list[BatchJobChild] = Field(default_factory=list)
    priority: int
    explicit_priority: bool = False
    max_retries: int
    timeout_ms: int
    capabilities: list[str] = Field(default_factory=list)
    batchable: bool = False
    session_required: bool = True


class BatchJobProgressed(BatchJobEvent):
    """Children finished and/or were released; the counts are totals so far (they only grow)."""

    TYPE: ClassVar[str] = "batch_job.progressed"
    total: int
    processed: int
    succeeded: int
    failed: int
    finished: list[BatchJobItemResult] = Field(default_factory=list)
    released: list[str] = Field(default_factory=list)
    next_index: int = 0


class BatchJobCompleted(BatchJobEvent):
    """Every child is terminal. ``status`` is ``failed`` when no child succeeded."""

    TYPE: ClassVar[str] = "batch_job.completed"
    operation: str
    status: str
    total: int
    succeeded: int
    failed: int
    results: list[BatchJobItemResult] = Field(default_factory=list)


class BatchJobRejected(BatchJobEvent):
    TYPE: ClassVar[str] = "batch_job.rejected"
    reason: str


class PoolRegistered(Event):
    """A pool member (``client_id``: its member id) offers ``capacity`` on this partition."""

    TYPE: ClassVar[str] = "pool.registered"
    capacity: int


class PoolReleased(Event):
    TYPE: ClassVar[str] = "pool.released"
    reason: str | None = None


class ClientRateLimit(Event):
    """The token bucket (``streams.domain.rates``) a client's dispatches are charged to."""

    TYPE: ClassVar[str] = "client.rate_limit"
    bucket: str = ""
    limit: int
    period_ms: int


class ClientStarved(Event):
    """Work of the client waits and nothing could take it (``streams.domain.starvation``)."""

    TYPE: ClassVar[str] = "client.starved"
    reason: str
    waiting_tasks: int
    oldest_queued_at_ms: int


class ClientServed(Event):
    TYPE: ClassVar[str] = "client.served"
    starved_at_ms: int


class TaskSlaBreached(TaskEvent):
    """A task still waiting has waited longer than its priority's queue-wait SLA."""

    TYPE: ClassVar[str] = "task.sla_breached"
    priority: int
    queued_at_ms: int
    sla_ms: int
    at_assignment: bool = False


class TaskStepStarted(TaskEvent):
    """A step of the multi-step task ``task_id`` runs as the child task ``child_task_id``."""

    TYPE: ClassVar[str] = "task.step_started"
    step_id: str
    child_task_id: str


class TaskStepFinished(TaskEvent):
    """A step ended: ``completed``, ``failed`` or ``skipped`` (``streams.domain.steps``)."""

    TYPE: ClassVar[str] = "task.step_finished"
    step_id: str
    status: str
    child_task_id: str | None = None
    output: JsonObject = Field(default_factory=dict)
    error: str | None = None


class ScheduleEvent(Event):
    schedule_id: str


class ScheduleCreated(ScheduleEvent):
    """A CreateSchedule passed validation: the schedule, its task resolved, its first time."""

    TYPE: ClassVar[str] = "schedule.created"
    cron: str | None = None
    interval_ms: int | None = None
    timezone: str = "UTC"
    start_at_ms: int | None = None
    end_at_ms: int | None = None
    missed: str = "run"
    task: JsonObject = Field(default_factory=dict)
    template: str | None = None
    next_at_ms: int | None = None
    actor: str | None = None


class ScheduleFired(ScheduleEvent):
    """An occurrence fell due: its task (``task_id``) was submitted; its events follow."""

    TYPE: ClassVar[str] = "schedule.fired"
    occurrence_ms: int
    task_id: str
    skipped: int = 0
    next_at_ms: int | None = None


class ScheduleDeleted(ScheduleEvent):
    TYPE: ClassVar[str] = "schedule.deleted"
    actor: str | None = None


class ScheduleRejected(ScheduleEvent):
    TYPE: ClassVar[str] = "schedule.rejected"
    command: str
    reason: str
    actor: str | None = None


class TemplateDefined(Event):
    TYPE: ClassVar[str] = "template.defined"
    name: str
    task: JsonObject = Field(default_factory=dict)
    actor: str | None = None


class TemplateDeleted(Event):
    TYPE: ClassVar[str] = "template.deleted"
    name: str
    actor: str | None = None


EVENT_TYPES: tuple[type[Event], ...] = (
    TaskAccepted,
    TaskPendingReview,
    TaskApproved,
    TaskScheduled,
    TaskWaiting,
    TaskQueued,
    TaskExpedited,
    TaskBatched,
    BatchProcessed,
    TaskAssigned,
    TaskStartedEvent,
    TaskProgressed,
    TaskCompleted,
    TaskFailed,
    TaskAttemptFailed,
    TaskRetryScheduled,
    TaskRetrying,
    TaskCancelled,
    TaskRejected,
    TaskDeadLettered,
    TaskTimedOut,
    ResultIgnored,
    BatchResultConsolidated,
    SessionRegistered,
    SessionReleased,
    SessionCleaned,
    SessionHeartbeatReceived,
    SessionHealthChanged,
    CommandRejected,
    CommandForwarded,
    BatchJobAccepted,
    BatchJobProgressed,
    BatchJobCompleted,
    BatchJobRejected,
    TasksForgotten,
    PoolRegistered,
    PoolReleased,
    ClientRateLimit,
    ClientStarved,
    ClientServed,
    TaskSlaBreached,
    TaskStepStarted,
    TaskStepFinished,
    ScheduleCreated,
    ScheduleFired,
    ScheduleDeleted,
    ScheduleRejected,
    TemplateDefined,
    TemplateDeleted,
)

EVENTS_BY_TYPE: dict[str, type[Event]] = {cls.TYPE: cls for cls in EVENT_TYPES}
