"""Queries over the read model: what the HTTP view asks, answered from the store and counters.

A reader works on any ``Source``: the live projector (RocksDB) or a ``MemorySource`` (tests).
Lists are ordered by id and paged with an opaque cursor (the last id returned), so a page
is found by one index seek whatever the table size.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from . import keys
from .activity import RecentActivity
from .batch_jobs import BATCH_JOB, BatchJobRow
from .errors import BadQueryError
from .rows import (
    PRIORITY_ORDER,
    SLA_MS,
    BatchRow,
    Counters,
    DeadLetterRow,
    Row,
    SessionRow,
    TaskRow,
)
from .storage import Store
from .tables import Tables

R = TypeVar("R", bound=Row)


class Source(Protocol):
    """What a reader needs from a projector."""

    @property
    def store(self) -> Store: ...

    @property
    def tables(self) -> Tables: ...

    def lag(self) -> dict[int, int]:
        """Events between the projection and the end of the log, per partition."""
        ...

    def running(self) -> bool: ...


# --------------------------------------------------------------------------------------
# Answers.


class ProjectionInfo(BaseModel):
    """How far the answer is behind the event log."""

    lag_events: int
    lag_by_partition: dict[str, int]
    as_of_offsets: dict[str, int]
    """Next offset to read per partition of ``task.events``: the answer reflects all before."""


class WaitTimes(BaseModel):
    sla_ms: int
    assigned: int
    avg_wait_ms: float | None
    max_wait_ms: int
    sla_breaches: int


class StarvedClientStatus(BaseModel):
    """A client whose work waits with no usable session (or no pool capacity)."""

    client_id: str
    reason: str
    """no_session, circuit_open or no_pool_capacity."""
    starved_since: str | None
    waiting_tasks: int
    """Tasks waiting when it was found starved."""
    oldest_queued_at: str | None
    sla_breaches: int
    """This client's SLA breaches so far (all priorities)."""


class QueueStatus(BaseModel):
    queue_length: int
    """Tasks waiting for a session or the pool: queued and batched (in a batch not dispatched
    yet)."""
    active_assignments: int
    active_batches: int
    active_sessions: int
    failed_tasks_awaiting_retry: int
    overdue_tasks: int = 0
    """Tasks past their due date (``due_at_ms``) and not finished."""
    tasks_by_priority: dict[str, int]
    tasks_by_operation: dict[str, int]
    session_health: dict[str, int]
    tasks_total: int
    tasks_by_state: dict[str, int]
    wait_times: dict[str, WaitTimes]
    sla_breaches: int
    dead_letters: int
    retries: int
    starved_clients: list[StarvedClientStatus] = []
    sla_breaches_by_client: dict[str, int] = {}
    batch_efficiency: float | None = None
    """Success rate of batched operations: items of consolidated batches that succeeded, of
    all their items (seed 000); null before any batch was consolidated."""
    retry_rate: float | None = None
    """Retries scheduled per task seen (seed 000: "should be < 10 % of total tasks")."""
    session_utilisation: float | None = None
    """Busy units of the active sessions over their capacity (a batch is one unit); null
    without active sessions."""
    session_busy_units: int = 0
    session_capacity: int = 0
    batch_sizes: dict[str, dict[str, int]] = {}
    """Adaptive batch sizing: client -> operation -> its batch size now, where failed batches
    brought it below the operation's own (``max_batch_size``)."""


class HealthStats(BaseModel):
    processed: int
    succeeded: int
    failed: int
    success_rate: float | None
    last_processed_at: str | None


class Page(BaseModel, Generic[R]):
    items: list[R]
    next_cursor: str | None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(keys.encode(last_id)).decode().rstrip("=")


def decode_cursor(cursor: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise BadQueryError(f"invalid cursor {cursor!r}: pass back a next_cursor value") from None


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class ProjectionReader:
    def __init__(self, source: Source) -> None:
        self._source = source

    @property
    def counters(self) -> Counters:
        return self._source.tables.counters

    def running(self) -> bool:
        return self._source.running()

    def activity(self) -> RecentActivity | None:
        """The source's recent-activity rings (``activity`` attribute), if it keeps them."""
        activity = getattr(self._source, "activity", None)
        return activity if isinstance(activity, RecentActivity) else None

    def projection(self) -> ProjectionInfo:
        lag = self._source.lag()
        offsets = self._source.tables.offsets
        partitions = sorted(set(lag) | set(offsets))
        return ProjectionInfo(
            lag_events=sum(lag.values()),
            lag_by_partition={str(p): lag.get(p, 0) for p in partitions},
            as_of_offsets={str(p): offsets.get(p, 0) for p in partitions},
        )

    # single rows ----------------------------------------------------------------------
    def _row(self, key: bytes, model: type[R]) -> R | None:
        raw = self._source.store.get(key)
        return None if raw is None else model.model_validate_json(raw)

    def task(self, task_id: str) -> TaskRow | None:
        return self._row(keys.task_key(task_id), TaskRow)

    def session(self, session_id: str) -> SessionRow | None:
        return self._row(keys.session_key(session_id), SessionRow)

    def batch(self, batch_id: str) -> BatchRow | None:
        return self._row(keys.batch_key(batch_id), BatchRow)

    def dead_letter(self, task_id: str) -> DeadLetterRow | None:
        return self._row(keys.dead_key(task_id), DeadLetterRow)

    # aggregates -------------------------------------------------------------------------
    def status(self) -> QueueStatus:
        c = self.counters
        health = {"healthy": 0, "degraded": 0, "unhealthy": 0}
        for session in c.active_sessions.values():
            health[session.status] += 1
        waits = {}
        for name in PRIORITY_ORDER:
            w = c.wait_by_priority[name]
            waits[name] = WaitTimes(
                sla_ms=c.sla_ms.get(name, SLA_MS[name]),
                assigned=w.count,
                avg_wait_ms=round(w.total_ms / w.count, 3) if w.count else None,
                max_wait_ms=w.max_ms,
                sla_breaches=w.breaches,
            )
        starved = [
            StarvedClientStatus(
                client_id=client_id,
                reason=s.reason,
                starved_since=iso_ms(s.starved_at_ms),
                waiting_tasks=s.waiting_tasks,
                oldest_queued_at=iso_ms(s.oldest_queued_at_ms),
                sla_breaches=c.sla_breaches_by_client.get(client_id, 0),
            )
            for client_id, s in sorted(c.starved_clients.items())
        ]
        batched = c.batch_items_succeeded + c.batch_items_failed
        busy = capacity = 0
        for session_id, session in c.active_sessions.items():
            capacity += session.capacity
            alone = c.in_flight.get(session_id, 0) - c.batch_items.get(session_id, 0)
            busy += max(0, alone) + c.batch_units.get(session_id, 0)
        return QueueStatus(
            batch_efficiency=round(c.batch_items_succeeded / batched, 4) if batched else None,
            retry_rate=round(c.retries / c.tasks, 4) if c.tasks else None,
            session_utilisation=round(busy / capacity, 4) if capacity else None,
            session_busy_units=busy,
            session_capacity=capacity,
            batch_sizes={
                client: dict(sorted(ops.items())) for client, ops in sorted(c.batch_sizes.items())
            },
            queue_length=c.by_state["queued"] + c.by_state["batched"],
            active_assignments=c.by_state["assigned"] + c.by_state["in_progress"],
            active_batches=c.open_batches + c.dispatched_batches,
            active_sessions=len(c.active_sessions),
            failed_tasks_awaiting_retry=c.awaiting_retry,
            overdue_tasks=max(0, c.overdue),
            tasks_by_priority=dict(c.queued_by_priority),
            tasks_by_operation=dict(sorted(c.queued_by_operation.items())),
            session_health=health,
            tasks_total=c.tasks,
            tasks_by_state=dict(c.by_state),
            wait_times=waits,
            sla_breaches=sum(w.breaches for w in c.wait_by_priority.values()),
            dead_letters=c.dead_letters,
            retries=c.retries,
            starved_clients=starved,
            sla_breaches_by_client=dict(sorted(c.sla_breaches_by_client.items())),
        )

    def health(self) -> HealthStats:
        c = self.counters
        processed = c.succeeded + c.failed
        return HealthStats(
            processed=processed,
            succeeded=c.succeeded,
            failed=c.failed,
            success_rate=round(c.succeeded / processed, 4) if processed else None,
            last_processed_at=iso_ms(c.last_processed_at_ms),
        )

    # lists ------------------------------------------------------------------------------
    def _page(
        self,
        rows: Iterator[tuple[str, R]],
        keep: Callable[[R], bool],
        limit: int,
    ) -> Page[R]:
        items: list[R] = []
        last: str | None = None
        for row_id, row in rows:
            if not keep(row):
                continue
            if len(items) == limit:
                return Page[R](items=items, next_cursor=encode_cursor(last or ""))
            items.append(row)
            last = row_id
        return Page[R](items=items, next_cursor=None)

    def _scan_rows(
        self, prefix: bytes, cursor: str | None, model: type[R]
    ) -> Iterator[tuple[str, R]]:
        after = None if cursor is None else prefix + decode_cursor(cursor)
        for key, value in self._source.store.scan(prefix, after):
            yield keys.decode(key[len(prefix) :]), model.model_validate_json(value)

    def _scan_index(
        self,
        prefix: bytes,
        cursor: str | None,
        load: Callable[[str], R | None],
    ) -> Iterator[tuple[str, R]]:
        after = None if cursor is None else prefix + decode_cursor(cursor)
        for key, _ in self._source.store.scan(prefix, after):
            row_id = keys.decode(key[len(prefix) :])
            row = load(row_id)
            if row is not None:
                yield row_id, row

    def tasks(
        self,
        *,
        client_id: str | None = None,
        status: str | None = None,
        operation: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        clients: frozenset[str] | None = None,
        tag: str | None = None,
        title: str | None = None,
        overdue: bool | None = None,
        include_archived: bool = False,
    ) -> Page[TaskRow]:
        """A page of tasks matching every filter given; ``clients`` (the caller's client ids,
        None for all) bounds what may be listed at all. Archived tasks are left out unless
        ``include_archived``; ``title`` matches text in the title, case-insensitively."""
        words = title.casefold() if title else None
        if clients is not None and client_id is None and len(clients) == 1:
            [client_id] = clients  # the client index instead of a scan
        c = self.counters
        rows: Iterator[tuple[str, TaskRow]]
        if client_id is not None and status is not None:
            prefix = keys.index_prefix(keys.BY_CLIENT_STATE, client_id, status)
        elif client_id is not None:
            prefix = keys.index_prefix(keys.BY_CLIENT, client_id)
        elif status is not None and operation is not None:
            if c.by_state.get(status, 0) <= c.by_operation.get(operation, 0):
                prefix = keys.index_prefix(keys.BY_STATE, status)
            else:
                prefix = keys.index_prefix(keys.BY_OPERATION, operation)
        elif status is not None:
            prefix = keys.index_prefix(keys.BY_STATE, status)
        elif operation is not None:
            prefix = keys.index_prefix(keys.BY_OPERATION, operation)
        else:
            prefix = b""
        if prefix:
            rows = self._scan_index(prefix, cursor, self.task)
        else:
            rows = self._scan_rows(keys.TASK, cursor, TaskRow)

        def keep(row: TaskRow) -> bool:
            return (
                (client_id is None or row.client_id == client_id)
                and (clients is None or row.client_id in clients)
                and (status is None or row.state == status)
                and (operation is None or row.operation == operation)
                and (include_archived or not row.archived)
                and (tag is None or tag in row.tags)
                and (words is None or (row.title is not None and words in row.title.casefold()))
                and (overdue is None or row.overdue == overdue)
            )

        return self._page(rows, keep, limit)

    def sessions(
        self,
        *,
        state: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        clients: frozenset[str] | None = None,
    ) -> Page[SessionRow]:
        rows = self._scan_rows(keys.SESSION, cursor, SessionRow)

        def keep(row: SessionRow) -> bool:
            return (state is None or row.state == state) and (
                clients is None or row.client_id in clients
            )

        return self._page(rows, keep, limit)

    def dead_letters(
        self,
        *,
        reason: str | None = None,
        client_id: str | None = None,
        operation: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        clients: frozenset[str] | None = None,
    ) -> Page[DeadLetterRow]:
        if clients is not None and client_id is None and len(clients) == 1:
            [client_id] = clients
        c = self.counters
        candidates = [
            (c.dlq_by_reason, keys.DLQ_BY_REASON, reason),
            (c.dlq_by_client, keys.DLQ_BY_CLIENT, client_id),
            (c.dlq_by_operation, keys.DLQ_BY_OPERATION, operation),
        ]
        given = [(t.get(v, 0), kind, v) for t, kind, v in candidates if v is not None]
        rows: Iterator[tuple[str, DeadLetterRow]]
        if given:
            _, kind, value = min(given, key=lambda item: item[0])
            rows = self._scan_index(keys.index_prefix(kind, value), cursor, self.dead_letter)
        else:
            rows = self._scan_rows(keys.DEAD, cursor, DeadLetterRow)

        def keep(row: DeadLetterRow) -> bool:
            return (
                (reason is None or row.reason == reason)
                and (client_id is None or row.client_id == client_id)
                and (clients is None or row.client_id in clients)
                and (operation is None or row.operation == operation)
            )

        return self._page(rows, keep, limit)

    def batches(
        self,
        *,
        client_id: str | None = None,
        state: str | None = None,
        operation: str | None = None,
        session_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        clients: frozenset[str] | None = None,
    ) -> Page[BatchRow]:
        """A page of batches (tasks that travelled together), by batch id."""
        rows = self._scan_rows(keys.BATCH, cursor, BatchRow)

        def keep(row: BatchRow) -> bool:
            return (
                (client_id is None or row.client_id == client_id)
                and (clients is None or row.client_id in clients)
                and (state is None or row.state == state)
                and (operation is None or row.operation == operation)
                and (session_id is None or row.session_id == session_id)
            )

        return self._page(rows, keep, limit)

    def batch_jobs(
        self,
        *,
        client_id: str | None = None,
        state: str | None = None,
        operation: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        clients: frozenset[str] | None = None,
    ) -> Page[BatchJobRow]:
        """A page of batch jobs, by job id."""
        rows = self._scan_rows(BATCH_JOB, cursor, BatchJobRow)

        def keep(row: BatchJobRow) -> bool:
            return (
                (client_id is None or row.client_id == client_id)
                and (clients is None or row.client_id in clients)
                and (state is None or row.state == state)
                and (operation is None or row.operation == operation)
            )

        return self._page(rows, keep, limit)
