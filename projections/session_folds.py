"""The fold of session events into session rows and the active-session counters; a session
that ends puts its tasks in flight back in the queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from schemas import events as ev
from schemas.events import Event
from schemas.states import ACTIVE_STATES

from . import keys
from .documents import (
    end_execution,
    latest_execution,
    make_ready,
    put_session,
    session_or_new,
    touch_session,
)
from .indexes import footprint, move
from .rows import ActiveSession, TaskDoc
from .tables import Tables


def _health_status(status: str, score: float) -> str:
    if status in ("healthy", "degraded", "unhealthy"):
        return status
    if score > 0.7:
        return "healthy"
    return "degraded" if score >= 0.3 else "unhealthy"


def _session_registered(tables: Tables, e: ev.SessionRegistered) -> None:
    row = session_or_new(tables, e.session_id)
    if row["state"] != "active":
        row["health_score"] = 1.0
        row["health_status"] = "healthy"
        row["circuit"] = "closed"
        row["ended_at_ms"] = None
        row["end_reason"] = None
    row["state"] = "active"
    row["client_id"] = e.client_id
    row["agent_id"] = e.agent_id
    row["max_concurrent"] = e.max_concurrent
    row["capabilities"] = list(e.capabilities)
    row["registered_at_ms"] = e.occurred_at_ms
    row["last_seen_ms"] = max(row["last_seen_ms"] or e.occurred_at_ms, e.occurred_at_ms)
    put_session(tables, row)
    tables.counters.active_sessions[e.session_id] = ActiveSession(
        status=row["health_status"],
        score=row["health_score"],
        client_id=e.client_id,
        capacity=e.max_concurrent,
    )


def _session_ended(
    tables: Tables, e: ev.SessionReleased | ev.SessionCleaned, state: str, reason: str | None
) -> None:
    row = session_or_new(tables, e.session_id)
    row["state"] = cast(Any, state)
    row["ended_at_ms"] = e.occurred_at_ms
    row["end_reason"] = reason
    put_session(tables, row)
    tables.counters.active_sessions.pop(e.session_id, None)
    tables.counters.batch_units.pop(e.session_id, None)
    tables.counters.batch_items.pop(e.session_id, None)
    for task_id in e.requeued_task_ids:
        key = keys.task_key(task_id)
        task: TaskDoc | None = tables.doc(key)
        if task is None or task["state"] not in ACTIVE_STATES or task["session_id"] != e.session_id:
            continue
        before = footprint(task)
        execution = latest_execution(task, session_id=e.session_id)
        end_execution(execution, "interrupted", e.occurred_at_ms, f"session {state}")
        task["state"] = "queued"
        task["session_id"] = None
        task["batch_id"] = None
        make_ready(task, e.occurred_at_ms)
        task["history"].append({"type": e.TYPE, "at_ms": e.occurred_at_ms, "detail": reason})
        task["updated_at_ms"] = max(task["updated_at_ms"], e.occurred_at_ms)
        move(tables, task_id, before, footprint(task))
        tables.put_doc(key, task)


def _session_released(tables: Tables, e: ev.SessionReleased) -> None:
    _session_ended(tables, e, "released", e.reason)


def _session_cleaned(tables: Tables, e: ev.SessionCleaned) -> None:
    _session_ended(tables, e, "cleaned", "stale")
    row = session_or_new(tables, e.session_id)
    row["last_seen_ms"] = e.last_seen_ms
    put_session(tables, row)


def _heartbeat(tables: Tables, e: ev.SessionHeartbeatReceived) -> None:
    touch_session(tables, e.session_id, e.occurred_at_ms)


def _health_changed(tables: Tables, e: ev.SessionHealthChanged) -> None:
    row = session_or_new(tables, e.session_id)
    row["health_score"] = e.score
    row["health_status"] = cast(Any, _health_status(e.status, e.score))
    row["circuit"] = e.circuit
    put_session(tables, row)
    active = tables.counters.active_sessions.get(e.session_id)
    if active is not None and row["state"] == "active":
        active.status = row["health_status"]
        active.score = row["health_score"]


SESSION_FOLDS: dict[type[Event], Callable[[Tables, Any], None]] = {
    ev.SessionRegistered: _session_registered,
    ev.SessionReleased: _session_released,
    ev.SessionCleaned: _session_cleaned,
    ev.SessionHeartbeatReceived: _heartbeat,
    ev.SessionHealthChanged: _health_changed,
}
