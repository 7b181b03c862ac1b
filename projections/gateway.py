"""The HTTP command gateway: the view's server also takes commands and puts them on
``task.commands``, keyed by client id, like any other producer.

Every command answer is ``202 Accepted`` with the id and a link to read it back: the processor
decides asynchronously and the read side shows the effect once it has folded the events.
What the gateway can tell at once it answers at once: malformed bodies, unknown operations and
invalid task configurations are ``422`` naming the field, oversized payloads ``413``, ids the
read side does not know ``404``, commands the read side proves hopeless (cancelling a finished
task, approving a task that needs no review) ``409``.

``POST /tasks`` takes ``task_id`` as an idempotency key: a repeat with the same specification
answers the same id and creates nothing (the processor ignores an identical submit of a known
task id); a repeat with a different specification is ``409``.

Access (``projections.access``): a command for a client the token does not cover is ``403``; a
command about another client's task or session is ``404``, as if it did not exist; a redrive
takes only the dead letters of the token's clients.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from schemas.catalog import PRIORITY_NAMES, Catalog, load_catalog
from schemas.commands import (
    ApproveTask,
    CancelTask,
    Command,
    ExpediteTask,
    RegisterSession,
    RejectTask,
    ReleaseSession,
    SubmitBatchJob,
    SubmitTask,
)
from schemas.credentials import comparable
from schemas.errors import TaskstreamError
from schemas.task_configs import validate_task_config
from streams.domain.spec import canonical_json
from streams.domain.submission import SubmitRefused, build_submit
from streams.errors import InvalidCommandError, PayloadTooLargeError
from streams.redrive import (
    CommandSender,
    DeadLetterEntry,
    RedriveError,
    RedriveReport,
    Selection,
    read_dead_letters,
    redrive,
    task_link,
)
from streams.settings import Settings

from .access import Caller, Principal
from .batch_jobs_view import batch_job
from .reader import ProjectionReader
from .rows import TERMINAL_STATES, TaskRow

__all__ = ["CommandSender", "DeadLetterSource", "gateway_router", "router_for"]

_PRIORITY_BY_NAME = {name: level for level, name in PRIORITY_NAMES.items()}
_ID_MAX = 512
_BATCH_JOB_ITEMS_MAX = 100_000

A = TypeVar("A", bound=BaseModel)
C = TypeVar("C", bound=Command)

DeadLetterSource = Callable[[], Awaitable[list[DeadLetterEntry]]]
"""Reads the dead letters a redrive chooses from (``task.dlq`` to its current end)."""


# --------------------------------------------------------------------------------------
# Request and answer models.

Id = Annotated[str, Field(min_length=1, max_length=_ID_MAX)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
PriorityName = Literal["critical", "high", "normal", "low", "background"]


class AssigneeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["agent", "session"]
    id: Id


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=128)]
    name: str | None = Field(default=None, max_length=512)
    operation: Name
    config: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=100
    )
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
    tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=50
    )
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
    items: list[BatchJobItemRequest] = Field(min_length=1, max_length=_BATCH_JOB_ITEMS_MAX)
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


class GatewayProblem(BaseModel):
    detail: str


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        404: "Unknown id (or not yet seen by the read side)",
        403: "The token may not act for this client",
        409: "The read side shows the command cannot succeed",
        413: "Payload larger than TASKSTREAM_MAX_PAYLOAD_BYTES",
        422: "Invalid request: the message names the field and the reason",
        503: "The command could not be produced to Kafka",
    }
    return {code: {"model": GatewayProblem, "description": text[code]} for code in codes}


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


# --------------------------------------------------------------------------------------
# The router.


def router_for(
    reader: ProjectionReader, commands: CommandSender, settings: Settings | None = None
) -> APIRouter:
    """The gateway with the catalog, payload limit and dead-letter topic of ``settings``
    (defaults without settings; then ``/dlq/redrive`` answers 503)."""
    if settings is None:
        default = Settings.model_fields["max_payload_bytes"].default
        return gateway_router(
            reader, commands, catalog=load_catalog(), max_payload_bytes=int(default)
        )
    dead_letters: DeadLetterSource | None = None
    if settings.kafka_bootstrap_servers:

        async def dead_letters() -> list[DeadLetterEntry]:
            return await read_dead_letters(settings)

    return gateway_router(
        reader,
        commands,
        catalog=load_catalog(settings.operations_file),
        max_payload_bytes=settings.max_payload_bytes,
        dead_letters=dead_letters,
    )


def gateway_router(
    reader: ProjectionReader,
    commands: CommandSender,
    *,
    catalog: Catalog,
    max_payload_bytes: int,
    dead_letters: DeadLetterSource | None = None,
) -> APIRouter:
    router = APIRouter(tags=["commands"])

    async def send(command: Command, answer: A, caller: Principal) -> A | JSONResponse:
        """Produce ``command`` as sent by ``caller`` (its actor is the token's name) and give
        ``answer``; an error answer if it could not be sent."""
        try:
            await commands.send(as_sent_by(command, caller))
        except PayloadTooLargeError as exc:
            return _problem(413, str(exc))
        except InvalidCommandError as exc:
            return _problem(422, str(exc))
        except TaskstreamError as exc:
            return _problem(503, f"the command was not sent: {exc}")
        return answer

    async def send_session(command: RegisterSession | ReleaseSession, caller: Principal) -> Any:
        session_id = command.session_id
        answer = SessionAccepted(
            session_id=session_id, link=_session_link(session_id), command=type(command).__name__
        )
        return await send(command, answer, caller)

    def not_theirs(caller: Principal, client_id: str) -> JSONResponse | None:
        """403 when ``caller`` may not act for ``client_id``."""
        if caller.sees(client_id):
            return None
        return _problem(403, f"client_id: token {caller.name!r} may not act for {client_id!r}")

    def unknown(kind: str, key: str) -> JSONResponse:
        lag = reader.projection().lag_events
        behind = f" (the read side is {lag} events behind the log)" if lag else ""
        return _problem(404, f"no {kind} with id {key!r}{behind}")

    def unknown_operation(operation: str) -> JSONResponse:
        known = ", ".join(sorted(catalog))
        return _problem(422, f"operation: unknown operation {operation!r} (known: {known})")

    def payload_problem(
        operation: str, payload: dict[str, Any], where: str = ""
    ) -> JSONResponse | None:
        """413 for a payload over the limit, 422 naming the fields of an invalid one; the
        field names start with ``where`` (``items[3].`` in a batch job)."""
        size = len(canonical_json(payload).encode())
        if size > max_payload_bytes:
            return _problem(
                413,
                f"{where}payload: {size:,} bytes, over the limit of {max_payload_bytes:,} "
                "(TASKSTREAM_MAX_PAYLOAD_BYTES); store large inputs elsewhere and pass a reference",
            )
        problems = validate_task_config(operation, payload)
        if problems:
            return _problem(422, "; ".join(where + _payload_field(p) for p in problems))
        return None

    # -- tasks --------------------------------------------------------------------------

    @router.post(
        "/tasks",
        status_code=202,
        response_model=TaskAccepted,
        responses=_problems(409, 413, 422, 503),
        summary="Submit a task (task_id is an idempotency key)",
    )
    async def submit(request: SubmitRequest, caller: Caller) -> Any:
        forbidden = not_theirs(caller, request.client_id)
        if forbidden is not None:
            return forbidden
        if request.operation not in catalog:
            return unknown_operation(request.operation)
        try:
            command = build_submit(
                catalog,
                max_payload_bytes,
                **request.model_dump(exclude={"priority", "task_id"}),
                task_id=request.task_id or str(uuid.uuid4()),
                priority=_priority_level(request.priority),
            )
        except SubmitRefused as exc:
            return _problem(413 if exc.too_large else 422, str(exc))
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            return _problem(422, str(exc).splitlines()[0])
        answer = TaskAccepted(
            task_id=command.task_id, link=task_link(command.task_id), command="SubmitTask"
        )
        existing = reader.task(command.task_id)
        if existing is not None and not caller.sees(existing.client_id):
            # Another client's task: say nothing about it.
            return _problem(409, f"task_id: {command.task_id!r} is taken; use another task_id")
        if existing is not None and existing.operation is not None:
            differs = _spec_difference(existing, command)
            if differs is not None:
                return _problem(
                    409,
                    f"task_id: {command.task_id!r} already names a task with a different "
                    f"{differs}; use another task_id for another task",
                )
            answer.duplicate = True
            return answer
        return await send(command, answer, caller)

    async def task_command(
        task_id: str,
        verb: str,
        conflict: Callable[[TaskRow], str | None],
        build: Callable[[TaskRow], Command],
        caller: Principal,
    ) -> Any:
        """A command about a task the read side knows; its client id comes from the row."""
        row = reader.task(task_id)
        if row is None or not caller.sees(row.client_id):
            return unknown("task", task_id)
        why = conflict(row)
        if why is not None:
            return _problem(409, f"cannot {verb} task {task_id!r}: {why}")
        command = build(row)
        answer = TaskAccepted(
            task_id=task_id, link=task_link(task_id), command=type(command).__name__
        )
        return await send(command, answer, caller)

    def finished(row: TaskRow) -> str | None:
        return f"it is already {row.state}" if row.state in TERMINAL_STATES else None

    def not_in_review(row: TaskRow) -> str | None:
        if not row.requires_review:
            return "it does not require review"
        if row.state not in (None, "accepted", "pending_review"):
            return f"it is {row.state}, no longer pending review"
        return None

    task_responses = _problems(404, 409, 413, 422, 503)

    # -- batch jobs ---------------------------------------------------------------------

    @router.post(
        "/batch-jobs",
        status_code=202,
        response_model=BatchJobAccepted,
        responses=_problems(409, 413, 422, 503),
        summary="Create a batch job: items run as child tasks, `parallelism` at once",
        description=(
            "Follow it with GET /batch-jobs/{batch_job_id}. Items are validated like single "
            "tasks; the whole command must fit TASKSTREAM_MAX_PAYLOAD_BYTES (else 413: split "
            "the job). The processor ignores an identical repeat of a batch_job_id and "
            "refuses a different one."
        ),
    )
    async def submit_batch_job(request: BatchJobRequest, caller: Caller) -> Any:
        forbidden = not_theirs(caller, request.client_id)
        if forbidden is not None:
            return forbidden
        if request.operation not in catalog:
            return unknown_operation(request.operation)
        seen: set[str] = set()
        for index, item in enumerate(request.items):
            where = f"items[{index}]"
            if item.task_id is not None:
                if item.task_id in seen:
                    return _problem(422, f"{where}.task_id: {item.task_id!r} appears twice")
                seen.add(item.task_id)
            refused = payload_problem(request.operation, item.payload, where=f"{where}.")
            if refused is not None:
                return refused
        batch_job_id = request.batch_job_id or str(uuid.uuid4())
        existing = batch_job(reader, batch_job_id)
        if existing is not None and not caller.sees(existing.client_id):
            return _problem(
                409, f"batch_job_id: {batch_job_id!r} is taken; use another batch_job_id"
            )
        if existing is not None and existing.state != "rejected":
            known_spec = (existing.client_id, existing.operation, existing.total)
            asked = (request.client_id, request.operation, len(request.items))
            if known_spec != asked:
                return _problem(
                    409,
                    f"batch_job_id: {batch_job_id!r} already names a job with a different "
                    "specification; use another batch_job_id for another job",
                )
        priority = _priority_level(request.priority)
        try:
            command = SubmitBatchJob(
                client_id=request.client_id,
                batch_job_id=batch_job_id,
                operation=request.operation,
                items=[item.model_dump() for item in request.items],
                parallelism=request.parallelism,
                priority=priority,
                max_retries=request.max_retries,
                timeout_ms=request.timeout_ms,
                capabilities=list(dict.fromkeys(request.capabilities)),
            )
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            return _problem(422, str(exc).splitlines()[0])
        link = "/batch-jobs/" + task_link(batch_job_id)[len("/tasks/") :]
        return await send(command, BatchJobAccepted(batch_job_id=batch_job_id, link=link), caller)

    @router.post(
        "/tasks/{task_id:path}/cancel",
        status_code=202,
        response_model=TaskAccepted,
        responses=task_responses,
        summary="Cancel a task (a running one is told to stop)",
    )
    async def cancel(
        task_id: str, caller: Caller, request: Annotated[CancelRequest | None, Body()] = None
    ) -> Any:
        reason = request.reason if request else None
        return await task_command(
            task_id,
            "cancel",
            finished,
            lambda row: CancelTask(client_id=row.client_id, task_id=task_id, reason=reason),
            caller,
        )

    @router.post(
        "/tasks/{task_id:path}/approve",
        status_code=202,
        response_model=TaskAccepted,
        responses=task_responses,
        summary="Approve a task pending review",
    )
    async def approve(
        task_id: str, caller: Caller, request: Annotated[ApproveRequest | None, Body()] = None
    ) -> Any:
        reviewer = request.reviewer if request else None
        return await task_command(
            task_id,
            "approve",
            not_in_review,
            lambda row: ApproveTask(client_id=row.client_id, task_id=task_id, reviewer=reviewer),
            caller,
        )

    @router.post(
        "/tasks/{task_id:path}/reject",
        status_code=202,
        response_model=TaskAccepted,
        responses=task_responses,
        summary="Reject a task pending review",
    )
    async def reject(
        task_id: str, caller: Caller, request: Annotated[RejectRequest | None, Body()] = None
    ) -> Any:
        reviewer = request.reviewer if request else None
        reason = request.reason if request else None
        return await task_command(
            task_id,
            "reject",
            not_in_review,
            lambda row: RejectTask(
                client_id=row.client_id, task_id=task_id, reviewer=reviewer, reason=reason
            ),
            caller,
        )

    @router.post(
        "/tasks/{task_id:path}/expedite",
        status_code=202,
        response_model=TaskAccepted,
        responses=task_responses,
        summary="Raise a waiting task to critical priority",
    )
    async def expedite(task_id: str, caller: Caller) -> Any:
        return await task_command(
            task_id,
            "expedite",
            finished,
            lambda row: ExpediteTask(client_id=row.client_id, task_id=task_id),
            caller,
        )

    # -- sessions -----------------------------------------------------------------------

    @router.post(
        "/sessions",
        status_code=202,
        response_model=SessionAccepted,
        responses=_problems(413, 422, 503),
        summary="Register an executor session",
    )
    async def register(request: SessionRequest, caller: Caller) -> Any:
        forbidden = not_theirs(caller, request.client_id)
        if forbidden is not None:
            return forbidden
        return await send_session(
            RegisterSession(
                client_id=request.client_id,
                session_id=request.session_id or str(uuid.uuid4()),
                agent_id=request.agent_id,
                max_concurrent=request.max_concurrent,
                capabilities=list(dict.fromkeys(request.capabilities)),
            ),
            caller,
        )

    @router.delete(
        "/sessions/{session_id:path}",
        status_code=202,
        response_model=SessionAccepted,
        responses=_problems(404, 413, 422, 503),
        summary="Release a session (its in-flight work is re-queued)",
    )
    async def release(
        session_id: str,
        caller: Caller,
        reason: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> Any:
        row = reader.session(session_id)
        if row is None or row.client_id is None or not caller.sees(row.client_id):
            return unknown("session", session_id)
        return await send_session(
            ReleaseSession(client_id=row.client_id, session_id=session_id, reason=reason),
            caller,
        )

    # -- dead letters -------------------------------------------------------------------

    @router.post(
        "/dlq/redrive",
        status_code=202,
        response_model=RedriveReport,
        responses={
            **_problems(422, 503),
            404: {"model": GatewayProblem, "description": "None of the task ids is dead-lettered"},
        },
        summary="Re-submit dead-lettered tasks: by task_ids, all, or filters",
        description=(
            "Each dead letter of task T is submitted again as T.r1 (T.r<n+1> for a redrive "
            "T = X.r<n>) with its original specification and key, so redriving the same "
            "entries again adds nothing. Entries without a recorded SubmitTask (undecodable "
            "input) are listed under not_redrivable."
        ),
    )
    async def redrive_dead_letters(selection: Selection, caller: Caller) -> Any:
        if dead_letters is None:
            return _problem(503, "no dead-letter topic configured for this view")
        try:
            entries = [
                e
                for e in await dead_letters()
                if caller.every_client or (e.letter is not None and caller.sees(e.letter.client_id))
            ]
            report = await redrive(
                entries,
                selection,
                _SentBy(commands, caller),
                known=lambda t: reader.task(t) is not None,
            )
        except RedriveError as exc:
            return _problem(503, str(exc))
        except PayloadTooLargeError as exc:
            return _problem(413, str(exc))
        except TaskstreamError as exc:
            return _problem(503, f"the redrive stopped: {exc}")
        if selection.task_ids is not None and len(report.not_found) == len(set(selection.task_ids)):
            missing = ", ".join(repr(t) for t in report.not_found)
            return _problem(404, f"task_ids: no dead letter for {missing}")
        return report

    return router


def as_sent_by(command: C, caller: Principal) -> C:
    """``command`` with the caller's name as its actor (commands that have one)."""
    if "actor" not in type(command).model_fields:
        return command
    return command.model_copy(update={"actor": caller.name})


class _SentBy:
    """A sender that names ``caller`` as the actor of every command (the redrive's)."""

    def __init__(self, commands: CommandSender, caller: Principal) -> None:
        self._commands = commands
        self._caller = caller

    async def send(self, command: Command) -> Any:
        return await self._commands.send(as_sent_by(command, self._caller))


def _priority_level(priority: int | str | None) -> int | None:
    """1..5 from a level or a priority name (``critical`` .. ``background``)."""
    return _PRIORITY_BY_NAME[priority] if isinstance(priority, str) else priority


def _session_link(session_id: str) -> str:
    return "/sessions/" + task_link(session_id)[len("/tasks/") :]


def _payload_field(problem: str) -> str:
    """``apiEndpoint: required`` -> ``payload.apiEndpoint: required``."""
    return problem if problem.startswith("payload") else f"payload.{problem}"


def _spec_difference(row: TaskRow, command: SubmitTask) -> str | None:
    """The first field in which ``command`` differs from the accepted task, or None."""
    checks: list[tuple[str, bool]] = [
        ("client_id", row.client_id == command.client_id),
        ("operation", row.operation == command.operation),
        # Credentials do not take part: each submit seals them afresh (schemas.credentials).
        ("payload", comparable(row.payload) == comparable(command.payload)),
        (
            "priority",
            row.priority == command.priority and row.explicit_priority
            if command.priority is not None
            else not row.explicit_priority,
        ),
        ("max_retries", command.max_retries is None or row.max_retries == command.max_retries),
        ("timeout_ms", command.timeout_ms is None or row.timeout_ms == command.timeout_ms),
        ("scheduled_for_ms", row.scheduled_for_ms == command.scheduled_for_ms),
        ("requires_review", row.requires_review == command.requires_review),
        ("depends_on", row.depends_on == command.depends_on),
        ("capabilities", row.capabilities == command.capabilities),
    ]
    for name, same in checks:
        if not same:
            return name
    return None
