"""Session commands: register (a repeat that changes nothing is a heartbeat), release (its
work is requeued), heartbeat (with the agent's workload) and the on-demand cleanup of stale
sessions (``clean`` is also what ticks do)."""

from __future__ import annotations

from schemas import commands as cmd
from schemas.events import (
    SessionCleaned,
    SessionHeartbeatReceived,
    SessionRegistered,
    SessionReleased,
)
from schemas.fields import MAX_ID_LENGTH
from streams.domain import health, incarnations, lifecycle
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.refusals import CONTROL_CHARACTERS, reject_command, session_or_reject


def register(ctx: Decision, c: cmd.RegisterSession) -> None:
    if CONTROL_CHARACTERS.search(c.session_id) or CONTROL_CHARACTERS.search(c.client_id):
        reject_command(
            ctx,
            c,
            "invalid session_id or client_id: control characters (line breaks, NUL, ...)",
            session_id=c.session_id,
        )
        return
    if any(len(name) > MAX_ID_LENGTH for name in c.capabilities):
        reject_command(
            ctx,
            c,
            f"invalid capabilities: a name longer than {MAX_ID_LENGTH} characters",
            session_id=c.session_id,
        )
        return
    session = ctx.state.sessions.get(c.session_id)
    if session is not None and session.client_id != c.client_id:
        reject_command(
            ctx, c, "session id already registered for another client", session_id=c.session_id
        )
        return
    capabilities = list(dict.fromkeys(c.capabilities))
    if incarnations.superseded(session, c):
        incarnations.take_over(ctx, c, capabilities)
    elif (
        session is not None
        and session.agent_id == c.agent_id
        and session.max_concurrent == c.max_concurrent
        and list(session.capabilities) == capabilities
    ):
        # A re-registration that changes nothing proves the session is alive.
        ctx.emit(
            SessionHeartbeatReceived(
                client_id=c.client_id, occurred_at_ms=ctx.now, session_id=c.session_id
            )
        )
    else:
        ctx.emit(
            SessionRegistered(
                client_id=c.client_id,
                occurred_at_ms=ctx.now,
                session_id=c.session_id,
                agent_id=c.agent_id,
                max_concurrent=c.max_concurrent,
                capabilities=capabilities,
                incarnation=c.incarnation,
            )
        )
    dispatch(ctx, c.client_id)


def release(ctx: Decision, c: cmd.ReleaseSession) -> None:
    if not session_or_reject(ctx, c):
        return
    held = lifecycle.inflight_tasks(ctx.state, c.session_id)
    ctx.emit(
        SessionReleased(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            session_id=c.session_id,
            reason=c.reason,
            requeued_task_ids=held,
        )
    )
    lifecycle.requeue(ctx, held)
    dispatch(ctx, c.client_id)


def heartbeat(ctx: Decision, c: cmd.SessionHeartbeat) -> None:
    if not session_or_reject(ctx, c):
        return
    was_overloaded = health.overloaded(ctx.state.sessions[c.session_id], ctx.config)
    ctx.emit(
        SessionHeartbeatReceived(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            session_id=c.session_id,
            workload=c.workload,
        )
    )
    if was_overloaded and not health.overloaded(ctx.state.sessions[c.session_id], ctx.config):
        dispatch(ctx, c.client_id)  # the agent has room again


def clean(ctx: Decision, session_id: str) -> None:
    """Clean a stale session: ``session.cleaned``, its work queued again (same attempt:
    losing a session is not the task's fault)."""
    st = ctx.state
    session = st.sessions[session_id]
    held = lifecycle.inflight_tasks(st, session_id)
    ctx.emit(
        SessionCleaned(
            client_id=session.client_id,
            occurred_at_ms=ctx.now,
            session_id=session_id,
            last_seen_ms=session.last_seen_ms,
            requeued_task_ids=held,
        )
    )
    lifecycle.requeue(ctx, held)


def stale(ctx: Decision, session_ids: list[str]) -> list[str]:
    """Those of ``session_ids`` silent for the stale timeout, in registration order."""
    sessions = [ctx.state.sessions[s] for s in session_ids]
    limit = ctx.config.session_stale_ms
    return [
        s.session_id
        for s in sorted(sessions, key=lambda s: s.reg_seq)
        if ctx.now - s.last_seen_ms >= limit
    ]


def cleanup(ctx: Decision, c: cmd.CleanupSessions) -> None:
    """The client's stale sessions cleaned now, as a tick would; its work dispatched again."""
    found = stale(ctx, list(ctx.state.client_sessions.get(c.client_id, {})))
    for session_id in found:
        clean(ctx, session_id)
    if found:
        dispatch(ctx, c.client_id)
