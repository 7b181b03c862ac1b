"""Task management routes of the gateway (issue 15): edit, archive, run now, answer input.

* ``PUT /tasks/{id}`` changes what the body names (priority, payload, schedule, due date, tags,
  assignment, title, description, attachments) while the task has not started; ``409`` once it has.
* ``DELETE /tasks/{id}`` archives: unfinished work is cancelled, the task leaves default
  listings (``GET /tasks?include_archived=true`` shows it) and keeps its history.
* ``POST /tasks/{id}/run`` runs a scheduled, retry-waiting or deferred task (or a waiting one
  whose dependencies are met) now.
* ``POST /tasks/{id}/input`` answers a task waiting for input; it runs again with the answer.

Each is ``202`` with a link, like every command of the gateway (``api.gateway``); the
processor has the last word (a refusal shows in the task's history as ``task.rejected``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from projections.rows import TaskRow
from schemas.catalog import PriorityName
from schemas.commands import (
    ArchiveTask,
    ProvideInput,
    RunTask,
    TaskAssignee,
    TaskAttachment,
    UpdateTask,
)
from schemas.states import TERMINAL_STATES
from streams.domain.attachments import attachment_problems

from .access import Caller
from .gateway_context import Gateway, priority_level
from .gateway_models import AssigneeRequest, AttachmentRequest, Tag, TaskAccepted, problem, problems

__all__ = ["router"]

NOT_STARTED = frozenset({"accepted", "pending_review", "scheduled", "waiting", "queued", "batched"})
RUNNABLE = frozenset({"scheduled", "retry_scheduled", "deferred", "waiting"})


def _current(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


CurrentGateway = Annotated[Gateway, Depends(_current)]
router = APIRouter(tags=["commands"])
responses = problems(404, 409, 413, 422, 503)


class UpdateRequest(BaseModel):
    """The fields to change; a field left out stays as it is, ``null`` clears it."""

    model_config = ConfigDict(extra="forbid")

    priority: Annotated[int, Field(ge=1, le=5)] | PriorityName | None = None
    payload: dict[str, Any] | None = None
    scheduled_for_ms: int | None = Field(default=None, ge=0)
    due_at_ms: int | None = Field(default=None, ge=0)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    assigned_to: AssigneeRequest | None = None
    title: str | None = Field(default=None, max_length=512)
    description: str | None = Field(default=None, max_length=10_000)
    attachments: list[AttachmentRequest] | None = Field(
        default=None, description="The whole new list (null or [] removes every attachment)"
    )


class InputRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(description="The answer; the task's payload gets it as input")


def not_started(row: TaskRow) -> str | None:
    if row.state in TERMINAL_STATES:
        return f"it is already {row.state}"
    if row.state not in NOT_STARTED or row.attempts:
        return f"it has started ({row.state}); only a task that has not started can be edited"
    return None


def not_runnable(row: TaskRow) -> str | None:
    if row.state not in RUNNABLE:
        return f"it is {row.state}; only a scheduled, retry-waiting or deferred task runs now"
    if row.state == "waiting" and row.waiting_on:
        return f"it waits on dependencies: {', '.join(row.waiting_on)}"
    return None


def not_waiting_input(row: TaskRow) -> str | None:
    return None if row.state == "waiting_input" else f"it is {row.state}, not waiting for input"


@router.put(
    "/tasks/{task_id:path}",
    status_code=202,
    response_model=TaskAccepted,
    responses=responses,
    summary="Edit a task that has not started (409 once it has)",
)
async def update(
    task_id: str, request: UpdateRequest, caller: Caller, gateway: CurrentGateway
) -> Any:
    changed = [name for name in UpdateRequest.model_fields if name in request.model_fields_set]
    if not changed:
        return problem(422, "body: name at least one field to change")
    row = gateway.reader.task(task_id)
    if row is not None and "payload" in changed and row.operation is not None:
        refused = gateway.payload_problem(row.operation, request.payload or {})
        if refused is not None:
            return refused
    attachments = [TaskAttachment(**a.model_dump()) for a in request.attachments or []]
    wrong = attachment_problems(attachments) if "attachments" in changed else []
    if wrong:
        return problem(422, "; ".join(wrong))
    assignee = request.assigned_to
    return await gateway.task_command(
        task_id,
        "edit",
        not_started,
        lambda row: UpdateTask(
            client_id=row.client_id,
            task_id=task_id,
            changed=changed,
            priority=priority_level(request.priority),
            payload=request.payload or {},
            scheduled_for_ms=request.scheduled_for_ms,
            due_at_ms=request.due_at_ms,
            tags=request.tags or [],
            assigned_to=TaskAssignee(kind=assignee.kind, id=assignee.id) if assignee else None,
            title=request.title,
            description=request.description,
            attachments=attachments,
        ),
        caller,
    )


def _not_archived(row: TaskRow) -> str | None:
    return "it is already archived" if row.archived else None


@router.delete(
    "/tasks/{task_id:path}",
    status_code=202,
    response_model=TaskAccepted,
    responses=responses,
    summary="Archive a task: unfinished work is cancelled, its history stays",
)
async def archive(
    task_id: str,
    caller: Caller,
    gateway: CurrentGateway,
    reason: Annotated[str | None, Query(max_length=1000)] = None,
) -> Any:
    return await gateway.task_command(
        task_id,
        "archive",
        _not_archived,
        lambda row: ArchiveTask(client_id=row.client_id, task_id=task_id, reason=reason),
        caller,
    )


@router.post(
    "/tasks/{task_id:path}/run",
    status_code=202,
    response_model=TaskAccepted,
    responses=responses,
    summary="Run a scheduled, retry-waiting or deferred task now",
)
async def run(task_id: str, caller: Caller, gateway: CurrentGateway) -> Any:
    return await gateway.task_command(
        task_id,
        "run",
        not_runnable,
        lambda row: RunTask(client_id=row.client_id, task_id=task_id),
        caller,
    )


@router.post(
    "/tasks/{task_id:path}/input",
    status_code=202,
    response_model=TaskAccepted,
    responses=responses,
    summary="Answer a task waiting for input; it runs again with the answer",
)
async def provide_input(
    task_id: str,
    caller: Caller,
    gateway: CurrentGateway,
    request: Annotated[InputRequest, Body()],
) -> Any:
    return await gateway.task_command(
        task_id,
        "answer",
        not_waiting_input,
        lambda row: ProvideInput(client_id=row.client_id, task_id=task_id, input=request.input),
        caller,
    )
