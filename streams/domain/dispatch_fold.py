"""``evolve`` for the events of pool capacity, rate limits, starvation and SLA breaches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from streams.domain.buckets import fold_limit
from streams.domain.dispatch_records import lane_key
from streams.domain.state import PartitionState, Status


def _pool_registered(st: PartitionState, e: ev.PoolRegistered) -> None:
    pool = st.edit_pool()
    old = pool.members.get(e.client_id)
    if old is None:
        pool.seq += 1
        reg_seq = pool.seq
    else:
        reg_seq = old[2]
    pool.members[e.client_id] = (e.capacity, max(e.occurred_at_ms, old[1] if old else 0), reg_seq)
    pool.bounded = True


def _pool_released(st: PartitionState, e: ev.PoolReleased) -> None:
    if e.client_id in st.pool.members:
        del st.edit_pool().members[e.client_id]


def _rate_limit(st: PartitionState, e: ev.ClientRateLimit) -> None:
    fold_limit(st, e)


def _starved(st: PartitionState, e: ev.ClientStarved) -> None:
    st.edit_client(e.client_id).starved_at_ms = e.occurred_at_ms


def _served(st: PartitionState, e: ev.ClientServed) -> None:
    st.edit_client(e.client_id).starved_at_ms = None


def _sla_breached(st: PartitionState, e: ev.TaskSlaBreached) -> None:
    task = st.tasks.get(e.task_id)
    if e.at_assignment or task is None or task.status not in (Status.QUEUED, Status.BATCHED):
        return  # the watermark only covers breaches reported while waiting
    record = st.edit_client(e.client_id)
    key = lane_key(task, task.status == Status.BATCHED)
    if task.seq > record.sla_seq.get(key, 0):
        record.sla_seq[key] = task.seq


DISPATCH_FOLDS: dict[type[ev.Event], Callable[[PartitionState, Any], None]] = {
    ev.PoolRegistered: _pool_registered,
    ev.PoolReleased: _pool_released,
    ev.ClientRateLimit: _rate_limit,
    ev.ClientStarved: _starved,
    ev.ClientServed: _served,
    ev.TaskSlaBreached: _sla_breached,
}
