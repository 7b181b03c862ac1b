"""Timers: what a tick starts because its time came (scheduled starts, schedule occurrences).

A task scheduled for later (``scheduled_for_ms``) waits in the partition state, not on a delay
tier: ``TaskScheduled`` arms a timer (``PartitionState.timers``, a heap rebuilt from the records
on load) and the first tick at or after its due time admits it, exactly as a ``RetryDue`` of
kind ``scheduled`` would. So a task scheduled hours or days ahead writes two events while it
waits (accepted, scheduled) and nothing else, where a delay-tier hop wrote a record every 32 s
(about 2,700 a day). The precision is the tick interval (``TASKSTREAM_TICK_INTERVAL_MS``,
100 ms by default). Retries keep the delay tiers: they are short and need no state.

Occurrences of recurring schedules use the same heap (``streams.domain.schedules``), and so do
a deferred task's return and a task's due date (``streams.domain.management``).

A tick fires at most ``FIRE_LIMIT`` timers; the rest go on the next ticks. The choice depends on
the records alone (``PartitionState.due_timers``), so a recovered state ticks like the live one.
"""

from __future__ import annotations

from typing import Final

from streams.domain import lifecycle, management, schedules
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.state import TIMER_DEFERRED, TIMER_OVERDUE, TIMER_TASK

FIRE_LIMIT: Final = 500
"""Timers one tick fires at most."""


def fire(ctx: Decision) -> None:
    """Start every scheduled task and schedule occurrence that is due at ``ctx.now``."""
    st = ctx.state
    clients: dict[str, None] = {}
    for due_at_ms, kind, record_id in st.due_timers(ctx.now)[:FIRE_LIMIT]:
        if not st.timer_valid((due_at_ms, kind, record_id)):
            continue  # an earlier timer of this tick changed it
        if kind == TIMER_TASK:
            lifecycle.admit(ctx, record_id, "scheduled", check_schedule=False)
            clients[st.tasks[record_id].client_id] = None
        elif kind == TIMER_DEFERRED:
            lifecycle.enqueue(ctx, record_id, "deferred")
            clients[st.tasks[record_id].client_id] = None
        elif kind == TIMER_OVERDUE:
            management.raise_overdue(ctx, record_id)
        else:
            clients[schedules.fire(ctx, record_id)] = None
    for client_id in sorted(clients):
        dispatch(ctx, client_id)
