"""The HTTP view over the read model (FastAPI; OpenAPI at ``/openapi.json``).

Every answer says how far behind the event log it is: a ``projection`` object in JSON bodies
and the ``X-Projection-Lag`` header on every response. With a token configured every route
but the OpenAPI document needs ``Authorization: Bearer <token>``; which token sees which
clients and may send which commands is ``api.access``. Payloads, outputs and errors
are shown masked (``api.redact``). The live dashboard (``api.dashboard``) adds
a page at ``/`` and its assets, which hold no data and are public, and ``/live``, which also
takes the token as ``?token=`` (``EventSource`` cannot send headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import uvicorn
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, SecretStr

from projections.errors import BadQueryError, ProjectionError
from projections.reader import HealthStats, ProjectionInfo, ProjectionReader, QueueStatus
from projections.rows import BatchRow, DeadLetterRow, Execution, SessionRow, TaskRow
from schemas.states import TaskState
from streams.redrive import CommandSender
from streams.settings import Settings

from .access import OPEN, AccessBook, Caller, Principal, Scope
from .batch_jobs import batch_jobs_router
from .dashboard import install_dashboard
from .errors import ApiError
from .gateway import gateway_for, mount
from .metrics import render
from .redact import masked_batch, masked_dead_letter, masked_executions, masked_task
from .webhooks import ACTIVITY_PATH as WEBHOOK_ACTIVITY
from .webhooks import PATH_PREFIX as WEBHOOKS_PREFIX
from .webhooks import Webhooks, activity_router, mount_webhooks, render_counts
from .workflows import workflows_router

log = logging.getLogger(__name__)

LAG_HEADER = "X-Projection-Lag"
SERVICE = "taskstream-projector"

R = TypeVar("R", bound=BaseModel)


class _UnauthorizedError(Exception):
    pass


class _ForbiddenError(Exception):
    pass


# Routes whose answer adds up every client: only a token for every client reads them.
SERVICE_WIDE = frozenset(
    {"/status", "/health", "/metrics", "/dashboard/snapshot", WEBHOOK_ACTIVITY}
)


def required_scope(method: str, path: str) -> Scope:
    """The scope a request needs: reads need ``read``, the redrive ``admin``, any other
    command ``write`` (a route added later is a command unless it is a GET)."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    if path == "/dlq/redrive":
        return "admin"
    return "write"


def refusal(principal: Principal, method: str, path: str) -> str | None:
    """Why ``principal`` may not make this request at all, or None."""
    scope = required_scope(method, path)
    if not principal.can(scope):
        return (
            f"token {principal.name!r} has scope {principal.scope}; {method} {path} needs {scope}"
        )
    if path in SERVICE_WIDE and not principal.every_client:
        return (
            f"{path} adds up every client; token {principal.name!r} is limited to some "
            'clients (give it clients = ["*"] to read service-wide figures)'
        )
    return None


class Problem(BaseModel):
    detail: str


class Answer(BaseModel):
    projection: ProjectionInfo


class StatusAnswer(QueueStatus, Answer):
    pass


class TaskAnswer(TaskRow, Answer):
    pass


class SessionAnswer(SessionRow, Answer):
    pass


class BatchAnswer(BatchRow, Answer):
    pass


class TaskList(Answer):
    items: list[TaskRow]
    next_cursor: str | None


class ExecutionList(Answer):
    """A task's executions, newest first (the seed's ``getExecutions(taskId, limit)``)."""

    task_id: str
    items: list[Execution]
    total: int
    """Executions the task has had (``items`` holds at most ``limit`` of them)."""


class SessionList(Answer):
    items: list[SessionRow]
    next_cursor: str | None


class DeadLetterList(Answer):
    items: list[DeadLetterRow]
    next_cursor: str | None


class HealthAnswer(Answer):
    status: Literal["healthy", "unhealthy"]
    service: str
    timestamp: str
    stats: HealthStats


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Bad request (for example an invalid cursor)"},
    401: {"model": Problem, "description": "Missing or wrong bearer token"},
    403: {"model": Problem, "description": "The token's scope or clients do not cover this"},
    422: {"model": Problem, "description": "Invalid parameters"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown id"},
}

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (1..1000)")]
Cursor = Annotated[
    str | None, Query(max_length=4096, description="next_cursor of the previous page")
]


Bearer = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(HTTPBearer(auto_error=False, description="Needed when TASKSTREAM_HTTP_TOKEN is set")),
]


def _as_is(row: R) -> R:
    return row


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else ".".join(loc)
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    reader: ProjectionReader,
    *,
    token: SecretStr | str | None = None,
    commands: CommandSender | None = None,
    settings: Settings | None = None,
    access: AccessBook | None = None,
) -> FastAPI:
    """The HTTP view over ``reader``. With ``token`` set (an admin token) or ``access`` (the
    tokens of ``api.access``), requests need a bearer token the book knows.

    With ``commands`` (a ``streams.client.TaskstreamClient``) the command gateway is mounted
    too (``api.gateway``), using the catalog, payload limit and dead-letter topic of
    ``settings``.
    """
    book = access if access is not None else AccessBook.build(token=token)

    async def authorize(request: Request, credentials: Bearer) -> None:
        if request.method == "POST" and request.url.path.startswith(WEBHOOKS_PREFIX):
            return  # a sender signs its message instead (api.webhooks); GETs need the token
        principal = OPEN
        if book is not None:
            given = credentials.credentials if credentials is not None else ""
            found = book.principal(given) if given else None
            if found is None:
                raise _UnauthorizedError
            principal = found
        why = refusal(principal, request.method, request.url.path)
        if why is not None:
            raise _ForbiddenError(why)
        request.state.principal = principal

    # Handlers are coroutines on purpose: they run on the projector's loop, between write
    # batches, so an answer never mixes counters and rows of different batches.
    app = FastAPI(
        title="taskstream read view",
        version="1",
        description=__doc__,
        dependencies=[Depends(authorize)],
        responses=_PROBLEMS,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _describe(exc)}, status_code=422)

    @app.exception_handler(BadQueryError)
    async def bad_query(request: Request, exc: BadQueryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(_UnauthorizedError)
    async def unauthorized(request: Request, exc: _UnauthorizedError) -> JSONResponse:
        return JSONResponse(
            {"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(_ForbiddenError)
    async def forbidden(request: Request, exc: _ForbiddenError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.middleware("http")
    async def lag_header(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        try:
            response.headers[LAG_HEADER] = str(reader.projection().lag_events)
        except ProjectionError:  # the projector is stopping: no store to ask
            pass
        return response

    def one(
        answer: type[Answer],
        kind: str,
        key: str,
        row: R | None,
        mask: Callable[[R], R],
        caller: Principal,
    ) -> Any:
        """``row`` (masked) as ``answer``, or a 404 naming the ``kind`` and ``key`` -- also
        when the row is another client's than the caller's (it does not exist for them)."""
        if row is None or not caller.sees(getattr(row, "client_id", None)):
            return JSONResponse({"detail": f"no {kind} with id {key!r}"}, status_code=404)
        return answer(**mask(row).model_dump(), projection=reader.projection())

    # Before GET /tasks/{task_id:path}, which would take ".../steps" as a task id.
    app.include_router(workflows_router(reader))

    @app.get("/status", response_model=StatusAnswer, summary="Queue status (seed getQueueStatus)")
    async def status() -> StatusAnswer:
        return StatusAnswer(**reader.status().model_dump(), projection=reader.projection())

    @app.get(
        "/tasks/{task_id:path}/executions",
        response_model=ExecutionList,
        responses=_NOT_FOUND,
        summary="A task's executions, newest first (seed getExecutions)",
    )
    async def executions(task_id: str, caller: Caller, limit: Limit = 10) -> Any:
        row = reader.task(task_id)
        if row is None or not caller.sees(row.client_id):
            return JSONResponse({"detail": f"no task with id {task_id!r}"}, status_code=404)
        newest = list(reversed(row.executions))
        return ExecutionList(
            task_id=task_id,
            items=masked_executions(newest[:limit]),
            total=len(newest),
            projection=reader.projection(),
        )

    @app.get(
        "/tasks/{task_id:path}",
        response_model=TaskAnswer,
        responses=_NOT_FOUND,
        summary="One task: state, attempts, history",
    )
    async def task(task_id: str, caller: Caller) -> Any:
        return one(TaskAnswer, "task", task_id, reader.task(task_id), masked_task, caller)

    @app.get("/tasks", response_model=TaskList, summary="Tasks, filtered and paged by id")
    async def tasks(
        caller: Caller,
        limit: Limit = 100,
        cursor: Cursor = None,
        client_id: str | None = None,
        status: TaskState | None = None,
        operation: str | None = None,
        tag: Annotated[str | None, Query(max_length=128)] = None,
        title: Annotated[str | None, Query(max_length=512, description="Text in the title")] = None,
        overdue: bool | None = None,
        include_archived: bool = False,
    ) -> TaskList:
        page = reader.tasks(
            client_id=client_id,
            status=status,
            operation=operation,
            tag=tag,
            title=title,
            overdue=overdue,
            include_archived=include_archived,
            limit=limit,
            cursor=cursor,
            clients=caller.clients,
        )
        return TaskList(
            items=[masked_task(row) for row in page.items],
            next_cursor=page.next_cursor,
            projection=reader.projection(),
        )

    @app.get("/sessions", response_model=SessionList, summary="Executor sessions")
    async def sessions(
        caller: Caller,
        limit: Limit = 100,
        cursor: Cursor = None,
        state: Literal["unregistered", "active", "released", "cleaned"] | None = None,
    ) -> SessionList:
        page = reader.sessions(state=state, limit=limit, cursor=cursor, clients=caller.clients)
        return SessionList(
            items=page.items, next_cursor=page.next_cursor, projection=reader.projection()
        )

    @app.get(
        "/sessions/{session_id:path}",
        response_model=SessionAnswer,
        responses=_NOT_FOUND,
        summary="One session: health, circuit, in flight",
    )
    async def session(session_id: str, caller: Caller) -> Any:
        row = reader.session(session_id)
        return one(SessionAnswer, "session", session_id, row, _as_is, caller)

    @app.get(
        "/batches/{batch_id:path}",
        response_model=BatchAnswer,
        responses=_NOT_FOUND,
        summary="One batch and its consolidated result (seed getBatchResults)",
    )
    async def batch(batch_id: str, caller: Caller) -> Any:
        row = reader.batch(batch_id)
        return one(BatchAnswer, "batch", batch_id, row, masked_batch, caller)

    @app.get("/dlq", response_model=DeadLetterList, summary="Dead-lettered tasks")
    async def dlq(
        caller: Caller,
        limit: Limit = 100,
        cursor: Cursor = None,
        reason: str | None = None,
        client_id: str | None = None,
        operation: str | None = None,
    ) -> DeadLetterList:
        page = reader.dead_letters(
            reason=reason,
            client_id=client_id,
            operation=operation,
            limit=limit,
            cursor=cursor,
            clients=caller.clients,
        )
        return DeadLetterList(
            items=[masked_dead_letter(row) for row in page.items],
            next_cursor=page.next_cursor,
            projection=reader.projection(),
        )

    @app.get(
        "/health",
        response_model=HealthAnswer,
        responses={503: {"model": HealthAnswer, "description": "The projector has stopped"}},
        summary="Liveness and processing statistics",
    )
    async def health() -> Any:
        alive = reader.running()
        answer = HealthAnswer(
            status="healthy" if alive else "unhealthy",
            service=SERVICE,
            timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
            stats=reader.health(),
            projection=reader.projection(),
        )
        if alive:
            return answer
        return JSONResponse(answer.model_dump(mode="json"), status_code=503)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
        summary="Prometheus metrics",
    )
    async def metrics() -> Response:
        hooks = getattr(app.state, "webhooks", None)
        return Response(render(reader) + render_counts(hooks), media_type=CONTENT_TYPE_LATEST)

    app.include_router(batch_jobs_router(reader))
    app.state.webhooks = Webhooks(None, None)  # counts nothing until the gateway is mounted
    app.include_router(activity_router)
    if commands is not None:
        gateway = gateway_for(reader, commands, settings)
        mount(app, gateway)
        rules_file = settings.webhook_rules_file if settings is not None else None
        mount_webhooks(app, Webhooks.from_file(rules_file, gateway))
    install_dashboard(
        app, reader, access=book, operations_file=settings.operations_file if settings else None
    )
    return app


# --------------------------------------------------------------------------------------
# Serving inside the caller's event loop.


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process owner (CLI, supervisor) handles signals; uvicorn must not take them.
        yield


class ViewServer:
    """uvicorn running ``app`` as a task of the current loop; ``port`` is the bound port."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            access_log=False,
            log_level="warning",
            # Open event streams (/live) never end on their own: cancel them on stop.
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self.host = host

    async def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="view")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise ApiError("the HTTP view stopped while starting")
            await asyncio.sleep(0.01)

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit:  # uvicorn exits the process when it cannot bind
            raise ApiError(
                f"the HTTP view cannot listen on {self.host}:{self._server.config.port}"
            ) from None

    @property
    def port(self) -> int:
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self._server.config.port)

    async def wait(self) -> None:
        """Until the server stops; cancelling the waiter leaves the server to ``stop()``."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def serve(settings: Settings, projector: Any, commands: CommandSender | None = None) -> None:
    """Serve the view of ``projector`` (anything with a ``reader``) on settings.http_host:
    http_port until cancelled or the server stops; cancel the task to stop it."""
    reader: ProjectionReader = projector.reader
    server = ViewServer(
        create_app(
            reader,
            commands=commands,
            settings=settings,
            access=AccessBook.build(
                token=settings.http_token, tokens_file=settings.http_tokens_file
            ),
        ),
        settings.http_host,
        settings.http_port,
    )
    await server.start()
    log.info("HTTP view on http://%s:%d/", settings.http_host, server.port)
    try:
        await server.wait()
    finally:
        await server.stop()
