"""Routes of multi-step tasks, recurring schedules and task templates.

Reads (``workflows_router``): ``GET /tasks/{id}/steps``, ``GET /schedules``,
``GET /schedules/{id}``, ``GET /templates``. Commands (``install_commands``, on the gateway's
router): ``POST /schedules``, ``DELETE /schedules/{id}``, ``POST /templates``,
``DELETE /templates/{name}``. Like every command they answer ``202`` once the command is on
``task.commands``; what the gateway can check at once (the recurrence, the task's fields and
operation, the payload) is ``422`` naming the field, and the processor checks it all again
(``schedule.rejected``) for producers that skip the gateway.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from projections.reader import ProjectionInfo, ProjectionReader
from projections.rows import TaskRow
from projections.workflows import (
    SCHEDULE,
    TEMPLATE,
    ScheduleRow,
    ScheduleState,
    StepRow,
    StepsRow,
    TemplateRow,
    schedule_key,
    steps_key,
)
from schemas.commands import CreateSchedule, DefineTemplate, DeleteSchedule, DeleteTemplate
from schemas.masking import mask_document
from schemas.masking import mask_text as mask_secrets
from schemas.recurrence import MISSED_POLICIES, problem, submit_of
from streams.redrive import task_link

from .access import Caller
from .gateway_context import Gateway
from .gateway_models import problem as answer_problem
from .gateway_models import problems

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (1..1000)")]
Cursor = Annotated[
    str | None, Query(max_length=4096, description="next_cursor of the previous page")
]


class StepAnswer(StepRow):
    """A step, with what its child task is doing (``task_state``, ``progress``, ``attempt``)."""

    task_state: str | None = None
    progress: float | None = None
    attempt: int | None = None


class StepsAnswer(BaseModel):
    task_id: str
    client_id: str
    state: str | None = None
    steps: list[StepAnswer]
    projection: ProjectionInfo


class ScheduleAnswer(ScheduleRow):
    projection: ProjectionInfo


class ScheduleList(BaseModel):
    items: list[ScheduleRow]
    next_cursor: str | None
    projection: ProjectionInfo


class TemplateList(BaseModel):
    items: list[TemplateRow]
    next_cursor: str | None
    projection: ProjectionInfo


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=512)
    schedule_id: str | None = Field(
        default=None, min_length=1, max_length=512, description="Generated when left out"
    )
    cron: str | None = Field(default=None, max_length=512, description="Five-field cron")
    interval_ms: int | None = Field(default=None, ge=1000, description="Every N ms (>= 1000)")
    timezone: str = Field(default="UTC", max_length=512, description="IANA zone of cron")
    start_at_ms: int | None = None
    end_at_ms: int | None = None
    missed: str = Field(default="run", description="run (each missed once) or skip")
    task: dict[str, Any] = Field(
        default_factory=dict,
        description="SubmitTask fields of every occurrence's task (operation, payload, ...)",
    )
    template: str | None = Field(default=None, min_length=1, max_length=512)


# Template names are text without control characters, so every name can be named in a path.
TEMPLATE_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class TemplateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=512)
    name: str = Field(
        min_length=1,
        max_length=512,
        pattern=TEMPLATE_NAME_PATTERN,
        description="any text without control characters (it is a path segment of DELETE)",
    )
    task: dict[str, Any] = Field(default_factory=dict, description="SubmitTask fields")


class ScheduleAccepted(BaseModel):
    schedule_id: str
    link: str
    command: str


class TemplateAccepted(BaseModel):
    client_id: str
    name: str
    link: str
    command: str


def _schedule_link(schedule_id: str) -> str:
    return "/schedules/" + task_link(schedule_id)[len("/tasks/") :]


def _masked_schedule(row: ScheduleRow) -> ScheduleRow:
    return row.model_copy(update={"task": mask_document(row.task)})


def _masked_template(row: TemplateRow) -> TemplateRow:
    return row.model_copy(update={"task": mask_document(row.task)})


def _masked_step(step: StepAnswer) -> StepAnswer:
    return step.model_copy(
        update={
            "config": mask_document(step.config),
            "output": mask_document(step.output),
            "error": None if step.error is None else mask_secrets(step.error),
        }
    )


def workflows_router(reader: ProjectionReader) -> APIRouter:
    router = APIRouter(tags=["workflows"])

    @router.get(
        "/tasks/{task_id:path}/steps",
        response_model=StepsAnswer,
        responses={404: {"description": "no task with steps with that id"}},
        summary="The steps of a multi-step task: status, child task, output or error",
    )
    async def task_steps(task_id: str, caller: Caller) -> Any:
        row = reader._row(steps_key(task_id), StepsRow)
        if row is None or not caller.sees(row.client_id):
            return JSONResponse(
                {"detail": f"no task with steps with id {task_id!r}"}, status_code=404
            )
        parent = reader.task(task_id)
        steps: list[StepAnswer] = []
        for step in row.steps:
            child: TaskRow | None = reader.task(step.task_id) if step.task_id else None
            steps.append(
                _masked_step(
                    StepAnswer(
                        **step.model_dump(),
                        task_state=child.state if child is not None else None,
                        progress=child.progress if child is not None else None,
                        attempt=child.attempt if child is not None else None,
                    )
                )
            )
        return StepsAnswer(
            task_id=row.task_id,
            client_id=row.client_id,
            state=parent.state if parent is not None else None,
            steps=steps,
            projection=reader.projection(),
        )

    @router.get(
        "/schedules",
        response_model=ScheduleList,
        summary="Recurring schedules, paged by id",
    )
    async def schedules(
        caller: Caller,
        limit: Limit = 100,
        cursor: Cursor = None,
        client_id: str | None = None,
        state: ScheduleState | None = None,
    ) -> ScheduleList:
        page = reader._page(
            reader._scan_rows(SCHEDULE, cursor, ScheduleRow),
            lambda row: (
                caller.sees(row.client_id)
                and (client_id is None or row.client_id == client_id)
                and (state is None or row.state == state)
            ),
            limit,
        )
        return ScheduleList(
            items=[_masked_schedule(r) for r in page.items],
            next_cursor=page.next_cursor,
            projection=reader.projection(),
        )

    @router.get(
        "/schedules/{schedule_id:path}",
        response_model=ScheduleAnswer,
        responses={404: {"description": "no schedule with that id"}},
        summary="One schedule: spec, state, next occurrence, occurrences fired and skipped",
    )
    async def schedule(schedule_id: str, caller: Caller) -> Any:
        row = reader._row(schedule_key(schedule_id), ScheduleRow)
        if row is None or not caller.sees(row.client_id):
            return JSONResponse({"detail": f"no schedule with id {schedule_id!r}"}, 404)
        return ScheduleAnswer(**_masked_schedule(row).model_dump(), projection=reader.projection())

    @router.get("/templates", response_model=TemplateList, summary="Named task templates")
    async def templates(
        caller: Caller,
        limit: Limit = 100,
        cursor: Cursor = None,
        client_id: str | None = None,
    ) -> TemplateList:
        page = reader._page(
            reader._scan_rows(TEMPLATE, cursor, TemplateRow),
            lambda row: (
                not row.deleted
                and caller.sees(row.client_id)
                and (client_id is None or row.client_id == client_id)
            ),
            limit,
        )
        return TemplateList(
            items=[_masked_template(r) for r in page.items],
            next_cursor=page.next_cursor,
            projection=reader.projection(),
        )

    return router


def _task_problem(gateway: Gateway, task: dict[str, Any], *, partial: bool) -> JSONResponse | None:
    """422 naming the field of what the processor would refuse in a schedule's task."""
    for reserved in ("client_id", "task_id"):
        if reserved in task:
            return answer_problem(422, f"task.{reserved}: set by the schedule, not by its task")
    probe = {**task, "client_id": "probe", "task_id": "probe"}
    operation = task.get("operation")
    if operation is None:
        if not partial:
            return None  # a template may give it; the processor checks the resolved task
        probe["operation"] = next(iter(gateway.catalog), "probe")
    built = submit_of(probe)
    if isinstance(built, str):
        return answer_problem(422, built)
    if operation is None:
        return None
    if operation not in gateway.catalog:
        return answer_problem(422, f"task.operation: unknown operation {str(operation)[:100]!r}")
    return gateway.payload_problem(built.operation, built.payload, where="task.payload.")


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway  # put there by ``api.gateway.mount``
    return gateway


CurrentGateway = Annotated[Gateway, Depends(_gateway)]


def install_commands(router: APIRouter) -> None:
    """Add the command routes to the gateway's ``router``."""

    @router.post(
        "/schedules",
        status_code=202,
        response_model=ScheduleAccepted,
        responses=problems(403, 413, 422, 503),
        summary="Create a recurring schedule: one task per occurrence (cron or interval)",
    )
    async def create_schedule(
        request: ScheduleRequest, caller: Caller, gateway: CurrentGateway
    ) -> Any:
        forbidden = gateway.not_theirs(caller, request.client_id)
        if forbidden is not None:
            return forbidden
        why = problem(
            request.cron,
            request.interval_ms,
            request.timezone,
            request.start_at_ms,
            request.end_at_ms,
        )
        if why is not None:
            return answer_problem(422, why)
        if request.missed not in MISSED_POLICIES:
            return answer_problem(422, f"missed: must be one of {', '.join(MISSED_POLICIES)}")
        refused = _task_problem(gateway, request.task, partial=request.template is not None)
        if refused is not None:
            return refused
        if request.template is None and "operation" not in request.task:
            return answer_problem(422, "task.operation: required (in the task or a template)")
        schedule_id = request.schedule_id or str(uuid.uuid4())
        command = CreateSchedule(
            client_id=request.client_id,
            schedule_id=schedule_id,
            cron=request.cron,
            interval_ms=request.interval_ms,
            timezone=request.timezone,
            start_at_ms=request.start_at_ms,
            end_at_ms=request.end_at_ms,
            missed=request.missed,
            task=request.task,
            template=request.template,
        )
        answer = ScheduleAccepted(
            schedule_id=schedule_id, link=_schedule_link(schedule_id), command="CreateSchedule"
        )
        return await gateway.send(command, answer, caller)

    @router.delete(
        "/schedules/{schedule_id:path}",
        status_code=202,
        response_model=ScheduleAccepted,
        responses=problems(404, 503),
        summary="Delete a schedule: no more occurrences (its tasks go on)",
    )
    async def delete_schedule(schedule_id: str, caller: Caller, gateway: CurrentGateway) -> Any:
        row = gateway.reader._row(schedule_key(schedule_id), ScheduleRow)
        if row is None or not caller.sees(row.client_id) or row.state == "rejected":
            return gateway.unknown("schedule", schedule_id)
        command = DeleteSchedule(client_id=row.client_id, schedule_id=schedule_id)
        answer = ScheduleAccepted(
            schedule_id=schedule_id, link=_schedule_link(schedule_id), command="DeleteSchedule"
        )
        return await gateway.send(command, answer, caller)

    @router.post(
        "/templates",
        status_code=202,
        response_model=TemplateAccepted,
        responses=problems(403, 413, 422, 503),
        summary="Define (or replace) a named task template: defaults for schedules' tasks",
    )
    async def define_template(
        request: TemplateRequest, caller: Caller, gateway: CurrentGateway
    ) -> Any:
        forbidden = gateway.not_theirs(caller, request.client_id)
        if forbidden is not None:
            return forbidden
        refused = _task_problem(gateway, request.task, partial=True)
        if refused is not None:
            return refused
        command = DefineTemplate(client_id=request.client_id, name=request.name, task=request.task)
        answer = TemplateAccepted(
            client_id=request.client_id,
            name=request.name,
            link=f"/templates?client_id={request.client_id}",
            command="DefineTemplate",
        )
        return await gateway.send(command, answer, caller)

    @router.delete(
        "/templates/{name:path}",
        status_code=202,
        response_model=TemplateAccepted,
        # A path with a control character in it matches no route: 404, as for any unknown path.
        responses=problems(403, 404, 503),
        summary="Delete a named task template (schedules made from it keep their task)",
    )
    async def delete_template(
        name: str,
        caller: Caller,
        gateway: CurrentGateway,
        client_id: Annotated[str, Query(min_length=1, max_length=512)],
    ) -> Any:
        forbidden = gateway.not_theirs(caller, client_id)
        if forbidden is not None:
            return forbidden
        answer = TemplateAccepted(
            client_id=client_id,
            name=name,
            link=f"/templates?client_id={client_id}",
            command="DeleteTemplate",
        )
        return await gateway.send(DeleteTemplate(client_id=client_id, name=name), answer, caller)
