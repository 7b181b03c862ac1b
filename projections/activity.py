"""Recent activity of the projection, kept in memory for the live dashboard.

Bounded rings fed by the projector as it folds: the last events (a live tail), first-attempt
submit→assigned latencies, completions per second of event time, queue depth per priority
sampled once per second of event time, and the ids of recent batches and dead letters. Nothing here is
persisted: after a restart the rings refill from the events folded since. Pure, no I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import Any, cast

from pydantic import BaseModel

from schemas import events as ev
from schemas.events import Event
from schemas.masking import mask_text

from .rows import PRIORITY_ORDER, Counters
from .tables import Tables

EVENT_RING = 200
LATENCY_RING = 5000
DEPTH_RING = 900  # 15 minutes at one sample per second
OUTCOME_WINDOW_S = 900
BATCH_RING = 256
DEAD_RING = 100

_DETAIL_FIELDS = ("reason", "error", "operation", "status", "message")
_DETAIL_CHARS = 160


class RecentEvent(BaseModel):
    """One event of the tail, flattened for display (its text masked like the view's rows)."""

    type: str
    at_ms: int
    partition: int
    offset: int
    client_id: str
    task_id: str | None = None
    session_id: str | None = None
    batch_id: str | None = None
    detail: str | None = None


class LatencySummary(BaseModel):
    """Submit (accepted) → first assignment, over the tasks assigned in the window."""

    window_s: int
    count: int
    p50_ms: int | None
    p90_ms: int | None
    p99_ms: int | None
    max_ms: int | None


class Throughput(BaseModel):
    """Tasks finishing per second (event time), averaged over the window."""

    window_s: int
    completed_per_s: float
    failed_per_s: float
    completed: int
    failed: int


class DepthSample(BaseModel):
    at_ms: int
    depth: dict[str, int]


def _summarize(event: Event, partition: int, offset: int) -> RecentEvent:
    fields: dict[str, Any] = dict(event)
    detail = None
    for name in _DETAIL_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value:
            value = mask_text(value)
            detail = value if len(value) <= _DETAIL_CHARS else value[: _DETAIL_CHARS - 1] + "…"
            break
    return RecentEvent(
        type=event.TYPE,
        at_ms=event.occurred_at_ms,
        partition=partition,
        offset=offset,
        client_id=event.client_id,
        task_id=fields.get("task_id"),
        session_id=fields.get("session_id"),
        batch_id=fields.get("batch_id"),
        detail=detail,
    )


def percentile(sorted_values: list[int], q: float) -> int | None:
    """Nearest-rank percentile of an ascending list (``q`` in (0, 1])."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _remember(ring: OrderedDict[str, None], key: str, bound: int) -> None:
    """Put ``key`` last in ``ring`` (most recent), dropping the oldest beyond ``bound``."""
    ring[key] = None
    ring.move_to_end(key)
    while len(ring) > bound:
        ring.popitem(last=False)


class RecentActivity:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        # Raw (event, partition, offset): flattened only when asked, the fold stays fast.
        self.events: deque[tuple[Event, int, int]] = deque(maxlen=EVENT_RING)
        self.latencies: deque[tuple[int, int]] = deque(maxlen=LATENCY_RING)
        self.depth: deque[DepthSample] = deque(maxlen=DEPTH_RING)
        self.batch_ids: OrderedDict[str, None] = OrderedDict()
        self.dead_ids: OrderedDict[str, None] = OrderedDict()
        self._outcomes: dict[int, list[int]] = {}
        self._latest_ms: int | None = None
        self.last_fetch_ms: int | None = None
        """Wall-clock time of the projector's latest answer from the broker (all partitions)."""

    # feeding ------------------------------------------------------------------------------
    def observe(self, tables: Tables, event: Event, partition: int, offset: int) -> None:
        """Record one event just folded into ``tables`` (on the fold's hot path: keep it cheap)."""
        self.events.append((event, partition, offset))
        at = event.occurred_at_ms
        if self._latest_ms is None or at > self._latest_ms:
            self._latest_ms = at
        kind = type(event)
        if kind is ev.TaskAssigned:
            assigned = cast(ev.TaskAssigned, event)
            if assigned.attempt == 1:
                row = tables.task_doc(assigned.task_id)
                if row is not None and row["accepted_at_ms"] is not None:
                    self.latencies.append((at, max(0, at - row["accepted_at_ms"])))
            if assigned.batch_id is not None:
                self._remember_batch(assigned.batch_id)
        elif kind is ev.TaskCompleted or kind is ev.TaskFailed:
            self._count_outcome(at, ok=kind is ev.TaskCompleted)
        elif kind is ev.TaskBatched or kind is ev.BatchProcessed:
            self._remember_batch(cast(ev.TaskBatched | ev.BatchProcessed, event).batch_id)
        elif kind is ev.TaskDeadLettered:
            _remember(self.dead_ids, cast(ev.TaskDeadLettered, event).task_id, DEAD_RING)

    def _count_outcome(self, at_ms: int, *, ok: bool) -> None:
        slot = self._outcomes.setdefault(at_ms // 1000, [0, 0])
        slot[0 if ok else 1] += 1
        if len(self._outcomes) > OUTCOME_WINDOW_S + 60:
            floor = max(self._outcomes) - OUTCOME_WINDOW_S
            for key in [k for k in self._outcomes if k < floor]:
                del self._outcomes[key]

    def _remember_batch(self, batch_id: str) -> None:
        _remember(self.batch_ids, batch_id, BATCH_RING)

    def sample(self, counters: Counters) -> None:
        """Record the queue depth after a write batch: one sample per second of event time."""
        if self._latest_ms is None:
            return
        depth = {name: counters.queued_by_priority.get(name, 0) for name in PRIORITY_ORDER}
        second = self._latest_ms // 1000 * 1000
        if self.depth and self.depth[-1].at_ms >= second:
            self.depth[-1] = DepthSample(at_ms=self.depth[-1].at_ms, depth=depth)
        else:
            self.depth.append(DepthSample(at_ms=second, depth=depth))

    def fetched(self, at_ms: int | None) -> None:
        self.last_fetch_ms = at_ms

    # reading ------------------------------------------------------------------------------
    def tail(self, limit: int) -> list[RecentEvent]:
        """The latest ``limit`` events, newest first."""
        items = list(self.events)[-limit:] if limit > 0 else []
        items.reverse()
        return [_summarize(*item) for item in items]

    def latency(self, now_ms: int, window_s: int = 300) -> LatencySummary:
        since = now_ms - window_s * 1000
        values = sorted(ms for at, ms in self.latencies if at >= since)
        return LatencySummary(
            window_s=window_s,
            count=len(values),
            p50_ms=percentile(values, 0.5),
            p90_ms=percentile(values, 0.9),
            p99_ms=percentile(values, 0.99),
            max_ms=values[-1] if values else None,
        )

    def throughput(self, now_ms: int, window_s: int = 60) -> Throughput:
        floor = now_ms // 1000 - window_s
        completed = failed = 0
        for second, (ok, bad) in self._outcomes.items():
            if second > floor:
                completed += ok
                failed += bad
        return Throughput(
            window_s=window_s,
            completed_per_s=round(completed / window_s, 3),
            failed_per_s=round(failed / window_s, 3),
            completed=completed,
            failed=failed,
        )

    def depth_since(self, since_ms: int) -> list[DepthSample]:
        """Depth samples from ``since_ms`` on, led by the last one before it (the level then)."""
        samples = list(self.depth)
        start = 0
        for i, sample in enumerate(samples):
            if sample.at_ms < since_ms:
                start = i
            else:
                break
        return samples[start:]
