"""Waiting made visible: SLA breaches while tasks wait, and starved clients (on ticks).

* ``task.sla_breached``: a queued or batched task has waited longer than the queue-wait SLA of
  its priority (``DomainConfig.sla_ms``). Recorded once per wait, while it still waits, so a
  task that never gets a session is counted too (not only when it is finally assigned).
* ``client.starved``: the client has work waiting and nothing that could take it -- no
  session registered (``no_session``), every session's circuit open (``circuit_open``), or,
  for pool work, no pool capacity on the partition (``no_pool_capacity``) -- and its oldest
  waiting work waited ``starved_after_ms``. ``client.served`` ends the episode once something
  could take the work again or nothing waits any more. Busy sessions and rate limits are not
  starvation: the work will go.

Lanes are in sequence order and a task's ``queued_at_ms`` grows with its sequence number, so
the tasks past their SLA are a prefix of each lane; the client record keeps, per lane, the
highest sequence number already reported, and a check only looks past it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from schemas.events import ClientServed, ClientStarved, TaskSlaBreached
from streams.domain.context import Decision
from streams.domain.dispatch_records import (
    BATCHED_LANE_BASE,
    POOL_LANE_BASE,
    ClientRecord,
    lane_key,
)
from streams.domain.state import Circuit, Lane, PartitionState, Status, TaskRecord

NO_SESSION = "no_session"
CIRCUIT_OPEN = "circuit_open"
NO_POOL_CAPACITY = "no_pool_capacity"


def due(ctx: Decision) -> bool:
    """Whether this tick looks at waiting work (about once per ``watch_interval_ms``)."""
    cfg = ctx.config
    window = 2 * cfg.tick_interval_ms
    return cfg.watch_interval_ms <= window or ctx.now % cfg.watch_interval_ms < window


def watch(ctx: Decision) -> None:
    st = ctx.state
    clients = set(st.open_tasks)
    clients.update(c.client_id for c in st.clients.values() if c.starved_at_ms is not None)
    for client_id in sorted(clients):
        _sla(ctx, client_id)
        _starvation(ctx, client_id)


# -- SLA -------------------------------------------------------------------------------------


def _lanes(st: PartitionState, client_id: str) -> Iterator[tuple[int, int, Lane]]:
    """(watermark key, queue priority, lane) of the client's session and pool lanes."""
    for priority, lane in st.lanes.get(client_id, {}).items():
        yield priority, priority, lane
    for priority, lane in st.pool_lanes.get(client_id, {}).items():
        yield POOL_LANE_BASE + priority, priority, lane


def _breach(ctx: Decision, task: TaskRecord, sla_ms: int, *, at_assignment: bool = False) -> None:
    ctx.emit(
        TaskSlaBreached(
            client_id=task.client_id,
            task_id=task.task_id,
            occurred_at_ms=ctx.now,
            priority=task.queue_priority,
            queued_at_ms=task.queued_at_ms,
            sla_ms=sla_ms,
            at_assignment=at_assignment,
        )
    )


def at_assignment(ctx: Decision, task: TaskRecord) -> None:
    """A task about to be assigned that crossed its SLA since the last check is counted now,
    so every breach is recorded once (``lifecycle.assign`` calls this)."""
    sla_ms = ctx.config.sla_ms.get(task.queue_priority)
    if sla_ms is None or ctx.now - task.queued_at_ms <= sla_ms:
        return
    record = ctx.state.clients.get(task.client_id)
    key = lane_key(task, task.status == Status.BATCHED)
    if record is not None and task.seq <= record.sla_seq.get(key, 0):
        return  # reported while it waited
    _breach(ctx, task, sla_ms, at_assignment=True)


def _sla(ctx: Decision, client_id: str) -> None:
    st, now, slas = ctx.state, ctx.now, ctx.config.sla_ms
    record = st.clients.get(client_id)
    marks = record.sla_seq if record is not None else {}
    for key, priority, lane in list(_lanes(st, client_id)):
        sla_ms = slas.get(priority)
        if sla_ms is None or not lane:
            continue
        front = st.tasks.get(lane[0][1])
        if front is None or front.queued_at_ms >= now - sla_ms:
            continue  # the oldest waits within its SLA, so does every later one
        start = bisect_right(lane, marks.get(key, 0), key=lambda entry: entry[0])
        for i in range(start, len(lane)):
            seq, task_id = lane[i]
            if not st.lane_valid(priority, seq, task_id):
                continue
            task = st.tasks[task_id]
            if task.queued_at_ms >= now - sla_ms:
                break
            _breach(ctx, task, sla_ms)
    for batch_id in list(st.pending_batches.get(client_id, {})):
        for task_id in st.batches[batch_id].live:
            task = st.tasks[task_id]
            sla_ms = slas.get(task.queue_priority)
            mark = marks.get(BATCHED_LANE_BASE + task.queue_priority, 0)
            if sla_ms is None or task.seq <= mark or task.queued_at_ms >= now - sla_ms:
                continue
            _breach(ctx, task, sla_ms)


# -- starvation ------------------------------------------------------------------------------


def _oldest(st: PartitionState, client_id: str, *, pool: bool) -> int | None:
    """When the client's oldest waiting session (or pool) work was queued."""
    oldest: int | None = None
    index = st.pool_lanes if pool else st.lanes
    for priority, lane in index.get(client_id, {}).items():
        for seq, task_id in lane:
            if st.lane_valid(priority, seq, task_id):
                at = st.tasks[task_id].queued_at_ms
                oldest = at if oldest is None else min(oldest, at)
                break
    if not pool:
        for batch_id in st.pending_batches.get(client_id, {}):
            for task_id in st.batches[batch_id].live:
                at = st.tasks[task_id].queued_at_ms
                oldest = at if oldest is None else min(oldest, at)
    return oldest


def _waiting(st: PartitionState, client_id: str, *, pool: bool) -> int:
    index = st.pool_lanes if pool else st.lanes
    count = sum(
        1
        for priority, lane in index.get(client_id, {}).items()
        for seq, task_id in lane
        if st.lane_valid(priority, seq, task_id)
    )
    if not pool:
        count += sum(len(st.batches[b].live) for b in st.pending_batches.get(client_id, {}))
    return count


def _session_problem(st: PartitionState, client_id: str) -> str | None:
    sessions = st.client_sessions.get(client_id)
    if not sessions:
        return NO_SESSION
    if all(st.sessions[s].circuit == Circuit.OPEN for s in sessions):
        return CIRCUIT_OPEN
    return None


def _pool_problem(st: PartitionState) -> str | None:
    return NO_POOL_CAPACITY if st.pool.bounded and st.pool.capacity == 0 else None


def _starvation(ctx: Decision, client_id: str) -> None:
    st, now = ctx.state, ctx.now
    reason: str | None = None
    oldest: int | None = None
    kinds: list[bool] = []
    for pool in (False, True):
        at = _oldest(st, client_id, pool=pool)
        if at is None:
            continue
        why = _pool_problem(st) if pool else _session_problem(st, client_id)
        if why is None:
            continue
        reason = reason or why
        oldest = at if oldest is None else min(oldest, at)
        kinds.append(pool)
    record: ClientRecord | None = st.clients.get(client_id)
    starved_at = record.starved_at_ms if record is not None else None
    if starved_at is not None:
        if reason is None:
            ctx.emit(
                ClientServed(client_id=client_id, occurred_at_ms=now, starved_at_ms=starved_at)
            )
        return
    if reason is not None and oldest is not None and now - oldest >= ctx.config.starved_after_ms:
        waiting = sum(_waiting(st, client_id, pool=pool) for pool in kinds)
        ctx.emit(
            ClientStarved(
                client_id=client_id,
                occurred_at_ms=now,
                reason=reason,
                waiting_tasks=waiting,
                oldest_queued_at_ms=oldest,
            )
        )
