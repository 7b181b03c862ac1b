"""Index maintenance: what one task contributes to the counters and the secondary indexes (its
*footprint*), and moving that contribution when the task changes. The indexes are by client,
by state, by client and state, and by operation; the counters are the per-state, per-priority,
per-operation and per-session figures the status answers add up. The counters move with every
event; the index entries once per write batch (``Tables.move_indexes``)."""

from __future__ import annotations

from schemas.states import ACTIVE_STATES, TERMINAL_STATES

from . import keys
from .documents import session_or_new
from .rows import TaskDoc, bump
from .tables import Tables

# (state, priority name, operation, client id, session id while assigned or in progress,
# awaiting retry).
Footprint = tuple[str | None, str | None, str | None, str | None, str | None, bool, bool]
ABSENT: Footprint = (None, None, None, None, None, False, False)


def footprint(row: TaskDoc) -> Footprint:
    state = row["state"]
    return (
        state,
        row["priority_name"],
        row["operation"],
        row["client_id"],
        row["session_id"] if state in ACTIVE_STATES else None,
        row["awaiting_retry"],
        # Overdue and unfinished: what /status, /metrics and the dashboard count.
        row["overdue"] and state not in TERMINAL_STATES,
    )


def move(tables: Tables, task_id: str, before: Footprint, after: Footprint) -> None:
    """Move the task's contribution to the counters and indexes from ``before`` to ``after``."""
    if before == after:
        return
    c = tables.counters
    b_state, b_priority, b_operation, b_client, b_session, b_retry, b_overdue = before
    a_state, a_priority, a_operation, a_client, a_session, a_retry, a_overdue = after
    if b_state != a_state:
        by_state = c.by_state
        if b_state is not None:
            by_state[b_state] = by_state.get(b_state, 0) - 1
        if a_state is not None:
            by_state[a_state] = by_state.get(a_state, 0) + 1
    b_queued = b_state == "queued"
    a_queued = a_state == "queued"
    if b_queued or a_queued:
        if b_queued:
            bump(c.queued_by_priority, b_priority, -1)
            bump(c.queued_by_operation, b_operation, -1, prune=True)
        if a_queued:
            bump(c.queued_by_priority, a_priority, +1)
            bump(c.queued_by_operation, a_operation, +1, prune=True)
    if b_operation != a_operation:
        bump(c.by_operation, b_operation, -1, prune=True)
        bump(c.by_operation, a_operation, +1, prune=True)
    if b_retry != a_retry:
        c.awaiting_retry += 1 if a_retry else -1
    if b_overdue != a_overdue:
        c.overdue += 1 if a_overdue else -1
    if b_session != a_session:
        for session_id, sign in ((b_session, -1), (a_session, +1)):
            if session_id is not None:
                bump(c.in_flight, session_id, sign, prune=True)
                session = session_or_new(tables, session_id)
                session["in_flight"] += sign
                tables.put_doc(keys.session_key(session_id), session)
    # The index entries move once per write batch, from the footprint the batch began with to
    # the last one (``Tables.drain``): a task passing through states within one batch writes
    # what it ends up in, no put and tombstone per state it passed through.
    tables.move_indexes(task_id, (b_state, b_operation, b_client), (a_state, a_operation, a_client))
