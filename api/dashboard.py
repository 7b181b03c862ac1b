"""The live dashboard: a page at ``/``, its assets under ``/static``, and a snapshot of the
projection pushed every second as server-sent events on ``GET /live``.

The page and its assets hold no data and are public. ``GET /dashboard/snapshot`` is an API
route like the others (bearer token when one is configured). ``GET /live`` is read by the
browser's ``EventSource``, which cannot send headers, so it takes the token either as
``Authorization: Bearer`` or as ``?token=``; both are looked up in constant time. The snapshot
adds up every client, so both need a token for every client (``api.access``).

Snapshots are built on the projector's loop, between write batches, like every other answer,
and shared between the open streams that ask within the same interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from projections.activity import (
    DepthSample,
    LatencySummary,
    RecentActivity,
    RecentEvent,
    Throughput,
)
from projections.errors import ProjectionError
from projections.reader import HealthStats, ProjectionInfo, ProjectionReader, QueueStatus
from projections.rows import BatchRow, DeadLetterRow, SessionRow
from schemas.catalog import PRIORITY_NAMES, load_catalog
from schemas.states import TaskState
from streams.redrive import redrive_id

from .access import OPEN, AccessBook, Principal
from .redact import masked_batch, masked_dead_letter

LIVE_PATH = "/live"
SNAPSHOT_PATH = "/dashboard/snapshot"
OPERATIONS_PATH = "/dashboard/operations"

_STATIC = ("api", "static")
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class Condition(BaseModel):
    """Whether the figures can be trusted, with a message written for the operator."""

    level: Literal["ok", "warning", "error"]
    code: Literal["ok", "behind", "stale", "stopped"]
    message: str


class DeadLetterView(DeadLetterRow):
    task_state: TaskState | None = None
    redrive_task_id: str
    """The id a redrive submits this task under (``streams.redrive.redrive_id``)."""
    redrive_state: TaskState | None = None
    """State of that redriven task; None while it has not been redriven (or not yet seen)."""


class DashboardSnapshot(BaseModel):
    now_ms: int
    condition: Condition
    status: QueueStatus
    projection: ProjectionInfo | None
    health: HealthStats
    sessions: list[SessionRow]
    dead_letters: list[DeadLetterView]
    open_batches: int
    dispatched_batches: int
    batches: list[BatchRow]
    events: list[RecentEvent]
    throughput: Throughput
    latency: LatencySummary
    depth: list[DepthSample]
    lag_threshold: int


class OperationInfo(BaseModel):
    name: str
    priority: str
    batchable: bool


class DashboardOptions(BaseModel):
    """Tuning of the dashboard; the defaults suit a person watching."""

    interval_s: float = 1.0
    lag_threshold: int = 1000
    """Events behind the log above which the page says the projection is behind."""
    stale_after_s: float = 15.0
    """Seconds without any answer from the broker after which the page says it is stale."""
    history_s: int = 600
    sessions: int = 50
    dead_letters: int = 20
    batches: int = 20
    events: int = 50


class SnapshotBuilder:
    def __init__(
        self,
        reader: ProjectionReader,
        options: DashboardOptions,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._options = options
        self._clock = clock
        self._cached: tuple[float, str] | None = None

    def build(self) -> DashboardSnapshot:
        reader, o = self._reader, self._options
        now_ms = int(self._clock() * 1000)
        activity = reader.activity() or RecentActivity()
        counters = reader.counters
        try:
            projection: ProjectionInfo | None = reader.projection()
        except ProjectionError:
            projection = None
        sessions: list[SessionRow] = []
        dead: list[DeadLetterView] = []
        batches: list[BatchRow] = []
        readable = True
        try:
            sessions = reader.sessions(state="active", limit=o.sessions).items
            dead = self._dead_letters(activity)
            batches = self._open_batches(activity)
        except ProjectionError:  # the projector stopped and closed its store
            readable = False
        return DashboardSnapshot(
            now_ms=now_ms,
            condition=self._condition(now_ms, projection, activity, readable),
            status=reader.status(),
            projection=projection,
            health=reader.health(),
            sessions=sessions,
            dead_letters=dead,
            open_batches=counters.open_batches,
            dispatched_batches=counters.dispatched_batches,
            batches=batches,
            events=activity.tail(o.events),
            throughput=activity.throughput(now_ms),
            latency=activity.latency(now_ms),
            depth=activity.depth_since(now_ms - o.history_s * 1000),
            lag_threshold=o.lag_threshold,
        )

    def _dead_letters(self, activity: RecentActivity) -> list[DeadLetterView]:
        """The newest dead letters (the activity ring), then others in id order to fill up;
        each with the state of its redrive, if any."""
        reader, limit = self._reader, self._options.dead_letters
        rows: dict[str, DeadLetterRow] = {}
        for task_id in reversed(activity.dead_ids):
            if len(rows) == limit:
                break
            row = reader.dead_letter(task_id)
            if row is not None:
                rows[task_id] = row
        if len(rows) < limit:
            for row in reader.dead_letters(limit=limit).items:
                if len(rows) == limit:
                    break
                rows.setdefault(row.task_id, row)
        views = []
        for row in rows.values():
            task = reader.task(row.task_id)
            again = redrive_id(row.task_id)
            redriven = reader.task(again)
            views.append(
                DeadLetterView(
                    **masked_dead_letter(row).model_dump(),
                    task_state=task.state if task is not None else None,
                    redrive_task_id=again,
                    redrive_state=redriven.state if redriven is not None else None,
                )
            )
        return views

    def _open_batches(self, activity: RecentActivity) -> list[BatchRow]:
        """Recently seen batches that are not consolidated yet, newest first."""
        limit = self._options.batches
        batches: list[BatchRow] = []
        for batch_id in reversed(list(activity.batch_ids)[-4 * limit :]):
            batch = self._reader.batch(batch_id)
            if batch is not None and batch.state != "consolidated":
                batches.append(masked_batch(batch))
                if len(batches) == limit:
                    break
        return batches

    def _condition(
        self,
        now_ms: int,
        projection: ProjectionInfo | None,
        activity: RecentActivity,
        readable: bool,
    ) -> Condition:
        o = self._options
        if not self._reader.running() or not readable or projection is None:
            return Condition(
                level="error",
                code="stopped",
                message=(
                    "The projector has stopped (/health answers 503): the figures below are "
                    "frozen at the last projected event. Check the projector's log and restart it."
                ),
            )
        fetched = activity.last_fetch_ms
        if fetched is not None and now_ms - fetched > o.stale_after_s * 1000:
            silent = (now_ms - fetched) / 1000
            return Condition(
                level="error",
                code="stale",
                message=(
                    f"No answer from the Kafka broker for {silent:.0f} s: the broker may be "
                    "unreachable, and the figures below may be out of date."
                ),
            )
        if projection.lag_events > o.lag_threshold:
            return Condition(
                level="warning",
                code="behind",
                message=(
                    f"The projection is {projection.lag_events} events behind the event log "
                    f"(threshold {o.lag_threshold}): the figures below lag behind and will "
                    "catch up."
                ),
            )
        return Condition(level="ok", code="ok", message="Live")

    def json(self) -> str:
        """The snapshot as JSON, reused by streams that ask within half an interval."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._options.interval_s / 2:
            return self._cached[1]
        text = self.build().model_dump_json()
        self._cached = (now, text)
        return text


def _principal(request: Request, access: AccessBook | None) -> Principal | None:
    if access is None:
        return OPEN
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else ""
    if not given:
        given = request.query_params.get("token", "")
    return access.principal(given) if given else None


def install_dashboard(
    app: FastAPI,
    reader: ProjectionReader,
    *,
    access: AccessBook | None,
    options: DashboardOptions | None = None,
    operations_file: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> SnapshotBuilder:
    """Add the page, its assets, ``/live`` and ``/dashboard/*`` to the view ``app``."""
    options = options or DashboardOptions()
    builder = SnapshotBuilder(reader, options, clock)
    page = resources.files(_STATIC[0]).joinpath(_STATIC[1], "index.html")

    @app.get(
        SNAPSHOT_PATH,
        response_model=DashboardSnapshot,
        summary="Everything the dashboard shows, once (the body of each /live event)",
    )
    async def dashboard_snapshot() -> DashboardSnapshot:
        return builder.build()

    @app.get(
        OPERATIONS_PATH,
        response_model=list[OperationInfo],
        summary="Operations of the catalog, for the dashboard's submit form",
    )
    async def dashboard_operations() -> list[OperationInfo]:
        catalog = load_catalog(operations_file)
        return [
            OperationInfo(
                name=spec.name, priority=PRIORITY_NAMES[spec.urgency], batchable=spec.batchable
            )
            for spec in sorted(catalog.values(), key=lambda s: (s.urgency, s.name))
        ]

    async def index(request: Request) -> Response:
        return FileResponse(str(page), media_type="text/html", headers=_PAGE_HEADERS)

    async def live(request: Request) -> Response:
        principal = _principal(request, access)
        if principal is None:
            return JSONResponse(
                {"detail": "missing or wrong token (Authorization: Bearer <token> or ?token=)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.every_client:
            return JSONResponse(
                {
                    "detail": f"{LIVE_PATH} adds up every client; token {principal.name!r} is "
                    'limited to some clients (give it clients = ["*"])'
                },
                status_code=403,
            )

        async def events() -> AsyncIterator[str]:
            yield f"retry: {int(options.interval_s * 3000)}\n\n"
            sequence = 0
            while not await request.is_disconnected():
                sequence += 1
                yield f"id: {sequence}\nevent: snapshot\ndata: {builder.json()}\n\n"
                await asyncio.sleep(options.interval_s)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # Plain routes: outside the API's bearer dependency (the page holds no data, and /live
    # checks the token itself) and outside the OpenAPI document.
    app.router.routes.append(Route("/", index, methods=["GET"], name="dashboard"))
    app.router.routes.append(Route(LIVE_PATH, live, methods=["GET"], name="live"))
    app.mount("/static", StaticFiles(packages=[_STATIC]), name="static")
    return builder
