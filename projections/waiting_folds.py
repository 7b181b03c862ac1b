"""Folds of what the processor says about waiting: SLA breaches and starved clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from schemas.events import Event

from .rows import StarvedClient, priority_name
from .tables import Tables


def _sla_breached(tables: Tables, e: ev.TaskSlaBreached) -> None:
    c = tables.counters
    name = priority_name(e.priority)
    if name is not None:
        c.wait_by_priority[name].breaches += 1
        c.sla_ms[name] = e.sla_ms
    c.sla_breaches_by_client[e.client_id] = c.sla_breaches_by_client.get(e.client_id, 0) + 1


def _starved(tables: Tables, e: ev.ClientStarved) -> None:
    tables.counters.starved_clients[e.client_id] = StarvedClient(
        reason=e.reason,
        starved_at_ms=e.occurred_at_ms,
        waiting_tasks=e.waiting_tasks,
        oldest_queued_at_ms=e.oldest_queued_at_ms,
    )


def _served(tables: Tables, e: ev.ClientServed) -> None:
    tables.counters.starved_clients.pop(e.client_id, None)


WAITING_FOLDS: dict[type[Event], Callable[[Tables, Any], None]] = {
    ev.TaskSlaBreached: _sla_breached,
    ev.ClientStarved: _starved,
    ev.ClientServed: _served,
}
