"""Executor incarnations: a restarted executor takes its sessions back at once.

Every start of an executor has an id of its own (``RegisterSession.incarnation``). When a
session is registered by an incarnation other than the one that holds it, the earlier one is
gone (or must be treated as gone): the work it held is re-queued in the same decision, and
its next assignment carries a new fencing token, so whatever the earlier incarnation still
reports is ignored as stale. Without this, a restarted executor would wait for the assignment
timeouts of work that nobody runs any more. Registering again with the same incarnation (or
with none, as producers from before incarnations do) stays a heartbeat.
"""

from __future__ import annotations

from schemas import commands as cmd
from schemas.events import SessionRegistered
from streams.domain import lifecycle
from streams.domain.context import Decision
from streams.domain.state import SessionRecord


def superseded(session: SessionRecord | None, c: cmd.RegisterSession) -> bool:
    """Whether ``c`` comes from another incarnation than the one holding ``session``."""
    if session is None:
        return False
    return c.incarnation != session.incarnation


def take_over(ctx: Decision, c: cmd.RegisterSession, capabilities: list[str]) -> None:
    """SessionRegistered for the new incarnation, naming the work re-queued from the old."""
    held = lifecycle.inflight_tasks(ctx.state, c.session_id)
    ctx.emit(
        SessionRegistered(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            session_id=c.session_id,
            agent_id=c.agent_id,
            max_concurrent=c.max_concurrent,
            capabilities=capabilities,
            incarnation=c.incarnation,
            requeued_task_ids=held,
        )
    )
    lifecycle.requeue(ctx, held)
