"""Commands: what upstream systems, executors and delay agents ask of the processor.

Each class mirrors ``schemas/avro/<Name>.avsc`` field for field; the Avro record name is the
class name. All commands are keyed by ``client_id`` on ``task.commands``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import JsonObject


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1)


class SubmitTask(Command):
    task_id: str = Field(min_length=1)
    operation: str = Field(min_length=1)
    payload: JsonObject = Field(default_factory=dict)
    priority: int | None = Field(default=None, ge=1, le=5)
    max_retries: int | None = Field(default=None, ge=0)
    timeout_ms: int | None = Field(default=None, ge=1)
    scheduled_for_ms: int | None = None
    requires_review: bool = False
    depends_on: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)


class CancelTask(Command):
    task_id: str = Field(min_length=1)
    reason: str | None = None


class ApproveTask(Command):
    task_id: str = Field(min_length=1)
    reviewer: str | None = None


class RejectTask(Command):
    task_id: str = Field(min_length=1)
    reviewer: str | None = None
    reason: str | None = None


class ExpediteTask(Command):
    """Raise a waiting task to critical priority."""

    task_id: str = Field(min_length=1)


class RegisterSession(Command):
    session_id: str = Field(min_length=1)
    agent_id: str = Field(min_length=1)
    max_concurrent: int = Field(default=1, ge=1)
    capabilities: list[str] = Field(default_factory=list)


class ReleaseSession(Command):
    session_id: str = Field(min_length=1)
    reason: str | None = None


class SessionHeartbeat(Command):
    session_id: str = Field(min_length=1)


class TaskStarted(Command):
    """An executor began work on an assignment (the task goes in_progress)."""

    task_id: str = Field(min_length=1)
    fencing_token: int


class ReportProgress(Command):
    task_id: str = Field(min_length=1)
    fencing_token: int
    progress: float = Field(ge=0.0, le=1.0)
    message: str | None = None


class ItemResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    success: bool
    output: JsonObject = Field(default_factory=dict)
    error: str | None = None


class ReportResult(Command):
    """The outcome of one assignment: a single task, or a batch with per-item results.

    ``fencing_token`` is the token of the assignment; a result carrying an older token is
    recorded and ignored.
    """

    task_id: str | None = None
    batch_id: str | None = None
    session_id: str | None = None
    fencing_token: int
    success: bool
    output: JsonObject = Field(default_factory=dict)
    error: str | None = None
    items: list[ItemResult] = Field(default_factory=list)
    execution_time_ms: int = Field(default=0, ge=0)


class RetryDue(Command):
    """Emitted by a delay agent when a retry or a scheduled start falls due."""

    task_id: str = Field(min_length=1)
    attempt: int = Field(ge=0)
    due_at_ms: int
    kind: str = "retry"


COMMAND_TYPES: tuple[type[Command], ...] = (
    SubmitTask,
    CancelTask,
    ApproveTask,
    RejectTask,
    ExpediteTask,
    RegisterSession,
    ReleaseSession,
    SessionHeartbeat,
    TaskStarted,
    ReportProgress,
    ReportResult,
    RetryDue,
)
