"""Task management events (issue 15): edits, archiving, run now, people in the loop, overdue.

Part of the event vocabulary on ``task.events`` beside ``schemas.events.EVENT_TYPES`` (the codec
registers both); each class mirrors ``schemas/avro/<Name>.avsc``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.commands import TaskAssignee, TaskAttachment
from schemas.events import BatchJobEvent, Event, TaskEvent
from schemas.fields import JsonObject


class TaskUpdated(TaskEvent):
    """A task that had not started was changed; ``changed`` names the fields, and each named
    field carries its new value (``assigned_to`` null with ``assigned_to`` in ``changed``:
    unassigned)."""

    TYPE: ClassVar[str] = "task.updated"
    changed: list[str] = Field(default_factory=list)
    priority: int | None = None
    explicit_priority: bool = False
    payload: JsonObject = Field(default_factory=dict)
    scheduled_for_ms: int | None = None
    due_at_ms: int | None = None
    tags: list[str] = Field(default_factory=list)
    assigned_to: TaskAssignee | None = None
    title: str | None = None
    description: str | None = None
    actor: str | None = None
    attachments: list[TaskAttachment] = Field(default_factory=list)


class TaskArchived(TaskEvent):
    """Hidden from default listings; its history stays. Unfinished work was cancelled first."""

    TYPE: ClassVar[str] = "task.archived"
    reason: str | None = None
    actor: str | None = None


class TaskRunRequested(TaskEvent):
    """Someone asked to run the task now; ``from_status`` is what it was waiting in."""

    TYPE: ClassVar[str] = "task.run_requested"
    from_status: str
    actor: str | None = None


class TaskWaitingInput(TaskEvent):
    """The executor ended the attempt asking a person: the task waits for ``ProvideInput``."""

    TYPE: ClassVar[str] = "task.waiting_input"
    prompt: str
    attempt: int
    fencing_token: int
    session_id: str | None = None
    execution_time_ms: int = 0


class TaskInputProvided(TaskEvent):
    """A person answered; the task runs again as attempt ``attempt`` with the answer in its
    payload under ``input`` (an input round does not use up a retry)."""

    TYPE: ClassVar[str] = "task.input_provided"
    input: JsonObject = Field(default_factory=dict)
    prompt: str | None = None
    attempt: int
    actor: str | None = None


class TaskDeferred(TaskEvent):
    """The executor put the task off; it is queued again at ``due_at_ms``."""

    TYPE: ClassVar[str] = "task.deferred"
    due_at_ms: int
    attempt: int
    fencing_token: int
    session_id: str | None = None
    reason: str | None = None
    execution_time_ms: int = 0


class TaskOverdue(TaskEvent):
    """An unfinished task passed its due date (raised once per task)."""

    TYPE: ClassVar[str] = "task.overdue"
    due_at_ms: int
    status: str


class BatchJobCancelled(BatchJobEvent):
    """No further item of the job is released; its unfinished children were cancelled."""

    TYPE: ClassVar[str] = "batch_job.cancelled"
    reason: str | None = None
    actor: str | None = None
    cancelled_task_ids: list[str] = Field(default_factory=list)
    unreleased: int = 0


MANAGEMENT_EVENTS: tuple[type[Event], ...] = (
    TaskUpdated,
    TaskArchived,
    TaskRunRequested,
    TaskWaitingInput,
    TaskInputProvided,
    TaskDeferred,
    TaskOverdue,
    BatchJobCancelled,
)
