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

Access (``api.access``): a command for a client the token does not cover is ``403``; a
command about another client's task or session is ``404``, as if it did not exist; a redrive
takes only the dead letters of the token's clients.

The routes are module-level (``router``); what they act on -- the reader, the command sender,
the catalog, the payload limit, the dead-letter source -- is one ``Gateway`` that ``mount``
puts on the app and each route takes as a dependency.
"""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query
from starlette.requests import Request

from projections.batch_jobs import FINISHED_JOB_STATES
from projections.rows import TaskRow
from schemas.commands import (
    ApproveTask,
    CancelBatchJob,
    CancelTask,
    CleanupSessions,
    ExpediteTask,
    RegisterSession,
    RejectTask,
    ReleaseSession,
    SubmitBatchJob,
)
from schemas.errors import TaskstreamError
from schemas.states import TERMINAL_STATES
from streams.domain.submission import SubmitRefused, build_submit
from streams.errors import PayloadTooLargeError
from streams.redrive import RedriveError, RedriveReport, Selection, redrive, task_link

from .access import Caller
from .batch_jobs import batch_job
from .gateway_context import (
    CommandSender,
    DeadLetterSource,
    Gateway,
    SentBy,
    gateway_for,
    priority_level,
    spec_difference,
)
from .gateway_models import (
    ApproveRequest,
    BatchJobAccepted,
    BatchJobRequest,
    CancelRequest,
    CleanupAccepted,
    CleanupRequest,
    GatewayProblem,
    RejectRequest,
    SessionAccepted,
    SessionRequest,
    SubmitRequest,
    TaskAccepted,
    problem,
    problems,
)
from .management_routes import router as management_router
from .workflows import install_commands

__all__ = ["CommandSender", "DeadLetterSource", "Gateway", "gateway_for", "mount", "router"]


def mount(app: FastAPI, gateway: Gateway) -> None:
    """Serve the command routes on ``app``, acting on ``gateway``."""
    app.state.gateway = gateway
    app.include_router(router)
    app.include_router(management_router)


def _current(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


CurrentGateway = Annotated[Gateway, Depends(_current)]

router = APIRouter(tags=["commands"])
install_commands(router)  # schedules and templates (``api.workflows``)


# -- tasks --------------------------------------------------------------------------


@router.post(
    "/tasks",
    status_code=202,
    response_model=TaskAccepted,
    responses=problems(409, 413, 422, 503),
    summary="Submit a task (task_id is an idempotency key)",
)
async def submit(request: SubmitRequest, caller: Caller, gateway: CurrentGateway) -> Any:
    forbidden = gateway.not_theirs(caller, request.client_id)
    if forbidden is not None:
        return forbidden
    if request.operation not in gateway.catalog:
        return gateway.unknown_operation(request.operation)
    try:
        # The one submission door (streams.domain.submission), as the SDK and CLI use it.
        command = build_submit(
            gateway.catalog,
            gateway.max_payload_bytes,
            **request.model_dump(exclude={"priority", "task_id"}),
            task_id=request.task_id or str(uuid.uuid4()),
            priority=priority_level(request.priority),
        )
    except SubmitRefused as exc:
        return problem(413 if exc.too_large else 422, str(exc))
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        return problem(422, str(exc).splitlines()[0])
    answer = TaskAccepted(
        task_id=command.task_id, link=task_link(command.task_id), command="SubmitTask"
    )
    existing = gateway.reader.task(command.task_id)
    if existing is not None and not caller.sees(existing.client_id):
        # Another client's task: say nothing about it.
        return problem(409, f"task_id: {command.task_id!r} is taken; use another task_id")
    if existing is not None and existing.operation is not None:
        differs = spec_difference(existing, command)
        if differs is not None:
            return problem(
                409,
                f"task_id: {command.task_id!r} already names a task with a different "
                f"{differs}; use another task_id for another task",
            )
        answer.duplicate = True
        return answer
    return await gateway.send(command, answer, caller)


def finished(row: TaskRow) -> str | None:
    return f"it is already {row.state}" if row.state in TERMINAL_STATES else None


def not_in_review(row: TaskRow) -> str | None:
    if not row.requires_review:
        return "it does not require review"
    if row.state not in (None, "accepted", "pending_review"):
        return f"it is {row.state}, no longer pending review"
    return None


task_responses = problems(404, 409, 413, 422, 503)

# -- batch jobs ---------------------------------------------------------------------


@router.post(
    "/batch-jobs",
    status_code=202,
    response_model=BatchJobAccepted,
    responses=problems(409, 413, 422, 503),
    summary="Create a batch job: items run as child tasks, `parallelism` at once",
    description=(
        "Follow it with GET /batch-jobs/{batch_job_id}. Items are validated like single "
        "tasks; the whole command must fit TASKSTREAM_MAX_PAYLOAD_BYTES (else 413: split "
        "the job). The processor ignores an identical repeat of a batch_job_id and "
        "refuses a different one."
    ),
)
async def submit_batch_job(
    request: BatchJobRequest, caller: Caller, gateway: CurrentGateway
) -> Any:
    forbidden = gateway.not_theirs(caller, request.client_id)
    if forbidden is not None:
        return forbidden
    if request.operation not in gateway.catalog:
        return gateway.unknown_operation(request.operation)
    seen: set[str] = set()
    for index, item in enumerate(request.items):
        where = f"items[{index}]"
        if item.task_id is not None:
            if item.task_id in seen:
                return problem(422, f"{where}.task_id: {item.task_id!r} appears twice")
            seen.add(item.task_id)
        refused = gateway.payload_problem(request.operation, item.payload, where=f"{where}.")
        if refused is not None:
            return refused
    batch_job_id = request.batch_job_id or str(uuid.uuid4())
    existing = batch_job(gateway.reader, batch_job_id)
    if existing is not None and not caller.sees(existing.client_id):
        return problem(409, f"batch_job_id: {batch_job_id!r} is taken; use another batch_job_id")
    if existing is not None and existing.state != "rejected":
        known_spec = (existing.client_id, existing.operation, existing.total)
        asked = (request.client_id, request.operation, len(request.items))
        if known_spec != asked:
            return problem(
                409,
                f"batch_job_id: {batch_job_id!r} already names a job with a different "
                "specification; use another batch_job_id for another job",
            )
    priority = priority_level(request.priority)
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
        return problem(422, str(exc).splitlines()[0])
    link = "/batch-jobs/" + task_link(batch_job_id)[len("/tasks/") :]
    return await gateway.send(
        command, BatchJobAccepted(batch_job_id=batch_job_id, link=link), caller
    )


@router.post(
    "/batch-jobs/{batch_job_id:path}/cancel",
    status_code=202,
    response_model=BatchJobAccepted,
    responses=problems(404, 409, 503),
    summary="Cancel a batch job: held items are not released, unfinished children are cancelled",
)
async def cancel_batch_job(
    batch_job_id: str,
    caller: Caller,
    gateway: CurrentGateway,
    request: Annotated[CancelRequest | None, Body()] = None,
) -> Any:
    row = batch_job(gateway.reader, batch_job_id)
    if row is None or not caller.sees(row.client_id):
        return gateway.unknown("batch job", batch_job_id)
    if row.state in FINISHED_JOB_STATES:
        return problem(409, f"batch job {batch_job_id!r} is {row.state}: nothing to cancel")
    command = CancelBatchJob(
        client_id=row.client_id,
        batch_job_id=batch_job_id,
        reason=request.reason if request else None,
    )
    link = "/batch-jobs/" + task_link(batch_job_id)[len("/tasks/") :]
    answer = BatchJobAccepted(batch_job_id=batch_job_id, link=link, command="CancelBatchJob")
    return await gateway.send(command, answer, caller)


@router.post(
    "/tasks/{task_id:path}/cancel",
    status_code=202,
    response_model=TaskAccepted,
    responses=task_responses,
    summary="Cancel a task (a running one is told to stop)",
)
async def cancel(
    task_id: str,
    caller: Caller,
    gateway: CurrentGateway,
    request: Annotated[CancelRequest | None, Body()] = None,
) -> Any:
    reason = request.reason if request else None
    return await gateway.task_command(
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
    task_id: str,
    caller: Caller,
    gateway: CurrentGateway,
    request: Annotated[ApproveRequest | None, Body()] = None,
) -> Any:
    reviewer = request.reviewer if request else None
    return await gateway.task_command(
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
    task_id: str,
    caller: Caller,
    gateway: CurrentGateway,
    request: Annotated[RejectRequest | None, Body()] = None,
) -> Any:
    reviewer = request.reviewer if request else None
    reason = request.reason if request else None
    return await gateway.task_command(
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
async def expedite(task_id: str, caller: Caller, gateway: CurrentGateway) -> Any:
    return await gateway.task_command(
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
    responses=problems(413, 422, 503),
    summary="Register an executor session",
)
async def register(request: SessionRequest, caller: Caller, gateway: CurrentGateway) -> Any:
    forbidden = gateway.not_theirs(caller, request.client_id)
    if forbidden is not None:
        return forbidden
    return await gateway.send_session(
        RegisterSession(
            client_id=request.client_id,
            session_id=request.session_id or str(uuid.uuid4()),
            agent_id=request.agent_id,
            max_concurrent=request.max_concurrent,
            capabilities=list(dict.fromkeys(request.capabilities)),
        ),
        caller,
    )


@router.post(
    "/sessions/cleanup",
    status_code=202,
    response_model=CleanupAccepted,
    responses=problems(404, 413, 422, 503),
    summary="Clean stale sessions now (the seed's cleanupStaleSessions())",
    description=(
        "Sends CleanupSessions for the client named, or for every client the caller sees "
        "with active sessions: the processor cleans each of their sessions silent for "
        "TASKSTREAM_SESSION_STALE_MS (session.cleaned) and queues their work again."
    ),
)
async def cleanup(
    caller: Caller,
    gateway: CurrentGateway,
    request: Annotated[CleanupRequest | None, Body()] = None,
) -> Any:
    wanted = request.client_id if request is not None else None
    if wanted is not None and not caller.sees(wanted):
        return gateway.unknown("client", wanted)
    clients = frozenset([wanted]) if wanted is not None else caller.clients
    now_ms = int(time.time() * 1000)
    stale_after = gateway.session_stale_ms
    client_ids: set[str] = set() if wanted is None else {wanted}
    stale: list[str] = []
    cursor: str | None = None
    while True:
        page = gateway.reader.sessions(state="active", limit=500, cursor=cursor, clients=clients)
        for row in page.items:
            if row.client_id is None:
                continue
            client_ids.add(row.client_id)
            if row.last_seen_ms is not None and now_ms - row.last_seen_ms > stale_after:
                stale.append(row.session_id)
        cursor = page.next_cursor
        if cursor is None:
            break
    answer = CleanupAccepted(client_ids=sorted(client_ids), stale_session_ids=sorted(stale))
    for client_id in answer.client_ids:
        sent = await gateway.send(CleanupSessions(client_id=client_id), answer, caller)
        if sent is not answer:
            return sent
    return answer


@router.delete(
    "/sessions/{session_id:path}",
    status_code=202,
    response_model=SessionAccepted,
    responses=problems(404, 413, 422, 503),
    summary="Release a session (its in-flight work is re-queued)",
)
async def release(
    session_id: str,
    caller: Caller,
    gateway: CurrentGateway,
    reason: Annotated[str | None, Query(max_length=1000)] = None,
) -> Any:
    row = gateway.reader.session(session_id)
    if row is None or row.client_id is None or not caller.sees(row.client_id):
        return gateway.unknown("session", session_id)
    return await gateway.send_session(
        ReleaseSession(client_id=row.client_id, session_id=session_id, reason=reason),
        caller,
    )


# -- dead letters -------------------------------------------------------------------


@router.post(
    "/dlq/redrive",
    status_code=202,
    response_model=RedriveReport,
    responses={
        **problems(422, 503),
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
async def redrive_dead_letters(
    selection: Selection, caller: Caller, gateway: CurrentGateway
) -> Any:
    if gateway.dead_letters is None:
        return problem(503, "no dead-letter topic configured for this view")
    try:
        entries = [
            e
            for e in await gateway.dead_letters()
            if caller.every_client or (e.letter is not None and caller.sees(e.letter.client_id))
        ]
        report = await redrive(
            entries,
            selection,
            SentBy(gateway.commands, caller),
            known=lambda t: gateway.reader.task(t) is not None,
            door=partial(build_submit, gateway.catalog, gateway.max_payload_bytes),
        )
    except RedriveError as exc:
        return problem(503, str(exc))
    except PayloadTooLargeError as exc:
        return problem(413, str(exc))
    except TaskstreamError as exc:
        return problem(503, f"the redrive stopped: {exc}")
    if selection.task_ids is not None and len(report.not_found) == len(set(selection.task_ids)):
        missing = ", ".join(repr(t) for t in report.not_found)
        return problem(404, f"task_ids: no dead letter for {missing}")
    return report
