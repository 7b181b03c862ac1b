"""What the command gateway (``api.gateway``) takes and answers: the request bodies, the
``202`` answers and the problem documents of its error answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from schemas.catalog import PriorityName

ID_MAX = 512
BATCH_JOB_ITEMS_MAX = 100_000

Id = Annotated[str, Field(min_length=1, max_length=ID_MAX)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


Tag = Annotated[str, Field(min_length=1, max_length=128)]
StepId = Annotated[str, Field(min_length=1, max_length=128)]


class AssigneeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["agent", "session"]
    id: Id


class AttachmentRequest(BaseModel):
    """A reference to a file kept elsewhere; the rules (http/https, a name of 1..255
    characters, size >= 0, at most 20) are the submission door's, answered as 422."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="An http or https URL (no user name or password)")
    name: str = Field(description="What people see, 1..255 characters")
    size_bytes: int | None = Field(default=None, description="The file's size, if known")
    content_type: str | None = Field(default=None, description="A media type, if known")


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StepId
    name: str | None = Field(default=None, max_length=512)
    operation: Name
    config: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[StepId] = Field(default_factory=list, max_length=100)
    failure_policy: Literal["fail_task", "skip_dependents", "continue"] = "fail_task"


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: Name
    operation: Name
    task_id: Id | None = Field(
        default=None, description="Idempotency key: a repeat creates nothing (a uuid if absent)"
    )
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: Annotated[int, Field(ge=1, le=5)] | PriorityName | None = Field(
        default=None, description="1 (critical) .. 5 (background) or a name; default from catalog"
    )
    max_retries: int | None = Field(default=None, ge=0, le=1000)
    timeout_ms: int | None = Field(default=None, ge=1)
    scheduled_for_ms: int | None = Field(default=None, ge=0)
    requires_review: bool = False
    depends_on: list[Id] = Field(default_factory=list, max_length=1000)
    capabilities: list[Name] = Field(default_factory=list, max_length=100)
    title: str | None = Field(default=None, max_length=512)
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Your own data, kept with the task, never executed"
    )
    due_at_ms: int | None = Field(
        default=None, ge=0, description="Finish by (epoch ms); past it the task is overdue"
    )
    assigned_to: AssigneeRequest | None = Field(
        default=None, description="Only this agent's sessions (or this one session) run it"
    )
    steps: list[StepRequest] = Field(default_factory=list, max_length=100)
    template: Id | None = Field(default=None, description="A named task template's defaults")
    attachments: list[AttachmentRequest] = Field(
        default_factory=list, description="References to files (at most 20), shown on the task"
    )


class BatchJobItemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: Id | None = Field(
        default=None, description="The child task's id; default <batch_job_id>.<index>"
    )
    payload: dict[str, Any] = Field(default_factory=dict)


class BatchJobRequest(BaseModel):
    """Seed 004 "create batch job": every item runs as a child task of ``operation``."""

    model_config = ConfigDict(extra="forbid")

    client_id: Name
    operation: Name
    items: list[BatchJobItemRequest] = Field(min_length=1, max_length=BATCH_JOB_ITEMS_MAX)
    batch_job_id: Id | None = Field(
        default=None, description="Idempotency key: a repeat creates nothing (a uuid if absent)"
    )
    parallelism: int = Field(default=1, ge=1, le=10_000)
    priority: Annotated[int, Field(ge=1, le=5)] | PriorityName | None = None
    max_retries: int | None = Field(default=None, ge=0, le=1000)
    timeout_ms: int | None = Field(default=None, ge=1)
    capabilities: list[Name] = Field(default_factory=list, max_length=100)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewer: str | None = Field(default=None, max_length=256)


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewer: str | None = Field(default=None, max_length=256)
    reason: str | None = Field(default=None, max_length=1000)


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: Name
    agent_id: Name
    session_id: Id | None = Field(default=None, description="A uuid if absent")
    max_concurrent: int = Field(default=1, ge=1, le=10_000)
    capabilities: list[Name] = Field(default_factory=list, max_length=100)


class TaskAccepted(BaseModel):
    task_id: str
    link: str
    command: str
    duplicate: bool = False
    """The task was already known with this specification: nothing was sent."""


class BatchJobAccepted(BaseModel):
    batch_job_id: str
    link: str
    command: str = "SubmitBatchJob"


class SessionAccepted(BaseModel):
    session_id: str
    link: str
    command: str


class CleanupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: Name | None = Field(
        default=None, description="One client; absent: every client with active sessions"
    )


class CleanupAccepted(BaseModel):
    command: str = "CleanupSessions"
    client_ids: list[str] = Field(description="The clients a CleanupSessions was sent for")
    stale_session_ids: list[str] = Field(
        description="Active sessions the view sees silent for longer than the stale timeout"
    )


class GatewayProblem(BaseModel):
    detail: str


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        404: "Unknown id (or not yet seen by the read side)",
        403: "The token may not act for this client",
        409: "The read side shows the command cannot succeed",
        413: "Payload larger than TASKSTREAM_MAX_PAYLOAD_BYTES",
        422: "Invalid request: the message names the field and the reason",
        503: "The command could not be produced to Kafka",
    }
    return {code: {"model": GatewayProblem, "description": text[code]} for code in codes}


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)
