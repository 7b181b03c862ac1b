"""Session commands: register (a repeat that changes nothing is a heartbeat), release (its
work is requeued) and heartbeat."""

from __future__ import annotations

from schemas import commands as cmd
from schemas.events import SessionHeartbeatReceived, SessionRegistered, SessionReleased
from schemas.fields import MAX_ID_LENGTH
from streams.domain import incarnations, lifecycle
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
    ctx.emit(
        SessionHeartbeatReceived(
            client_id=c.client_id, occurred_at_ms=ctx.now, session_id=c.session_id
        )
    )
