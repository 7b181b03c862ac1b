"""How session events fold into the partition state (``evolve`` dispatches them here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from streams.domain.state import PartitionState, SessionRecord


def seen(st: PartitionState, session_id: str | None, at_ms: int) -> SessionRecord | None:
    """The session, its last-seen time moved up to ``at_ms`` (None when unknown)."""
    if session_id is None or session_id not in st.sessions:
        return None
    session = st.edit_session(session_id)
    if at_ms > session.last_seen_ms:
        session.last_seen_ms = at_ms
    return session


def _session_registered(st: PartitionState, e: ev.SessionRegistered) -> None:
    if e.session_id in st.sessions:
        session = st.edit_session(e.session_id)
        session.agent_id = e.agent_id
        session.max_concurrent = e.max_concurrent
        session.capabilities = tuple(e.capabilities)
        session.last_seen_ms = max(session.last_seen_ms, e.occurred_at_ms)
        if session.incarnation != e.incarnation:
            session.workload = 0.0  # a new start of the executor reports afresh
        session.incarnation = e.incarnation
        return
    meta = st.edit_meta()
    meta.session_seq += 1
    st.add_session(
        SessionRecord(
            session_id=e.session_id,
            client_id=e.client_id,
            agent_id=e.agent_id,
            max_concurrent=e.max_concurrent,
            capabilities=tuple(e.capabilities),
            registered_at_ms=e.occurred_at_ms,
            reg_seq=meta.session_seq,
            last_seen_ms=e.occurred_at_ms,
            incarnation=e.incarnation,
        )
    )
    st.index_add(st.client_sessions, e.client_id, e.session_id)


def _remove_session(st: PartitionState, session_id: str) -> None:
    session = st.sessions.get(session_id)
    if session is None:
        return
    for unit in session.units:
        st.delete(st.inflight, unit)
    st.index_remove(st.client_sessions, session.client_id, session_id)
    st.remove_session(session_id)


def _session_released(st: PartitionState, e: ev.SessionReleased) -> None:
    _remove_session(st, e.session_id)


def _session_cleaned(st: PartitionState, e: ev.SessionCleaned) -> None:
    _remove_session(st, e.session_id)


def _heartbeat(st: PartitionState, e: ev.SessionHeartbeatReceived) -> None:
    session = seen(st, e.session_id, e.occurred_at_ms)
    if session is not None and e.workload is not None:
        session.workload = e.workload


def _health_changed(st: PartitionState, e: ev.SessionHealthChanged) -> None:
    if e.session_id not in st.sessions:
        return
    session = st.edit_session(e.session_id)
    session.score = e.score
    if e.circuit != session.circuit:
        session.circuit = e.circuit
        session.circuit_since_ms = e.occurred_at_ms


SESSION_FOLDS: dict[type[ev.Event], Callable[[PartitionState, Any], None]] = {
    ev.SessionRegistered: _session_registered,
    ev.SessionReleased: _session_released,
    ev.SessionCleaned: _session_cleaned,
    ev.SessionHeartbeatReceived: _heartbeat,
    ev.SessionHealthChanged: _health_changed,
}
