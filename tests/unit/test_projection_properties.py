"""Properties of the read-model fold: replicas agree whatever the partition interleaving and
the write-batch boundaries, and the in-memory counters always equal a recount of the rows."""

from __future__ import annotations

import json
from collections import Counter
from itertools import count
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections import keys
from projections.memory import MemorySource
from projections.rows import Counters, TaskRow
from schemas import events as ev
from schemas.events import Event
from schemas.states import ACTIVE_STATES

ROUTES = ["queued", "batched", "scheduled", "waiting", "review_ok", "review_no", "bad_submit"]
ROUNDS = ["retry", "timeout"]
ENDS = ["complete", "fail", "cancel", "open", "started"]
OPS = [("contact_update", 3), ("tag_add", 4), ("workflow_trigger", 1), ("report_generate", 5)]

script = st.tuples(
    st.sampled_from(ROUTES),
    st.lists(st.sampled_from(ROUNDS), max_size=2),
    st.sampled_from(ENDS),
    st.integers(0, len(OPS) - 1),
)


def lifecycle(client: str, task_id: str, session: str, plan: Any, clock: Any) -> list[Event]:
    route, rounds, end, op_index = plan
    op, priority = OPS[op_index]
    base = {"client_id": client, "task_id": task_id}

    def at() -> dict[str, Any]:
        return {**base, "occurred_at_ms": next(clock)}

    if route == "bad_submit":
        return [ev.TaskRejected(**at(), reason="unknown operation", command="SubmitTask")]
    out: list[Event] = [
        ev.TaskAccepted(**at(), operation=op, priority=priority, max_retries=3, timeout_ms=10)
    ]
    batch = None
    if route == "review_no":
        out.append(ev.TaskPendingReview(**at()))
        out.append(ev.TaskRejected(**at(), reason="no", command="RejectTask"))
        return out
    if route == "review_ok":
        out += [ev.TaskPendingReview(**at()), ev.TaskApproved(**at(), reviewer="r")]
    elif route == "scheduled":
        out.append(ev.TaskScheduled(**at(), due_at_ms=5))
    elif route == "waiting":
        out.append(ev.TaskWaiting(**at(), waiting_on=["x"]))
    if route == "batched":
        batch = f"B-{task_id}"
        out.append(ev.TaskBatched(**at(), batch_id=batch, operation=op))
        out.append(
            ev.BatchProcessed(
                client_id=client,
                occurred_at_ms=next(clock),
                batch_id=batch,
                operation=op,
                task_ids=[task_id],
                session_id=session,
                fencing_token=1,
            )
        )
    else:
        out.append(ev.TaskQueued(**at(), priority=priority, attempt=1))
    attempt = 1

    def assign() -> None:
        out.append(
            ev.TaskAssigned(
                **at(),
                operation=op,
                session_id=session,
                batch_id=batch,
                attempt=attempt,
                fencing_token=attempt,
                deadline_at_ms=0,
                priority=priority if attempt == 1 else 2,
            )
        )

    for kind in rounds:
        assign()
        if kind == "timeout":
            out.append(
                ev.TaskTimedOut(**at(), attempt=attempt, session_id=session, fencing_token=attempt)
            )
        out.append(ev.TaskAttemptFailed(**at(), attempt=attempt, session_id=session, error="e"))
        out.append(
            ev.TaskRetryScheduled(
                **at(), attempt=attempt + 1, delay_ms=1, due_at_ms=1, tier_ms=1000, error="e"
            )
        )
        attempt += 1
        out.append(ev.TaskRetrying(**at(), attempt=attempt))
        out.append(ev.TaskQueued(**at(), priority=2, attempt=attempt, reason="retry"))
        batch = None
    if end == "open":
        return out
    if end == "cancel":
        out.append(ev.TaskCancelled(**at(), reason="user"))
        return out
    assign()
    out.append(ev.TaskStartedEvent(**at(), session_id=session, fencing_token=attempt))
    if end == "complete":
        out.append(
            ev.TaskCompleted(
                **at(), operation=op, attempt=attempt, session_id=session, output={"n": attempt}
            )
        )
    elif end == "fail":
        out.append(ev.TaskAttemptFailed(**at(), attempt=attempt, session_id=session, error="last"))
        out.append(
            ev.TaskFailed(**at(), operation=op, attempt=attempt, error="last", reason="exhausted")
        )
        out.append(ev.TaskDeadLettered(**at(), operation=op, reason="exhausted"))
    return out


def partitions_of(plans: list[list[Any]]) -> dict[int, list[Event]]:
    """Client i lives on partition i % 2 with its own session; its events keep their order."""
    clock = count(1, 7)
    parts: dict[int, list[Event]] = {0: [], 1: []}
    for i, tasks in enumerate(plans):
        client, session = f"c{i}", f"s{i}"
        stream = parts[i % 2]
        stream.append(
            ev.SessionRegistered(
                client_id=client,
                occurred_at_ms=next(clock),
                session_id=session,
                agent_id="a",
                max_concurrent=3,
            )
        )
        for j, plan in enumerate(tasks):
            stream += lifecycle(client, f"{client}-t{j}", session, plan, clock)
        stream.append(
            ev.SessionHealthChanged(
                client_id=client,
                occurred_at_ms=next(clock),
                session_id=session,
                score=0.5,
                status="degraded",
                previous_status="healthy",
            )
        )
    return parts


def replay(parts: dict[int, list[Event]], picks: list[int], flush_every: int) -> MemorySource:
    source = MemorySource()
    pos = {p: 0 for p in parts}
    pending = [p for p in parts if parts[p]]
    n = 0
    k = 0
    while pending:
        p = pending[picks[k % len(picks)] % len(pending)] if picks else pending[0]
        k += 1
        source.feed(parts[p][pos[p]], partition=p, offset=pos[p])
        pos[p] += 1
        if pos[p] == len(parts[p]):
            pending.remove(p)
        n += 1
        if n % flush_every == 0:
            source.flush()
    source.flush()
    return source


def snapshot(source: MemorySource) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key, value in source.memory.scan(b""):
        out[key] = json.loads(value) if value else value
    return out


def recount(source: MemorySource) -> None:
    c: Counters = source.tables.counters
    rows = [TaskRow.model_validate_json(v) for _, v in source.memory.scan(keys.TASK)]
    assert c.tasks == len(rows)
    states: Counter[str | None] = Counter(r.state for r in rows)
    assert {s: n for s, n in c.by_state.items() if n} == {s: n for s, n in states.items() if s}
    queued = [r for r in rows if r.state == "queued"]
    assert {p: n for p, n in c.queued_by_priority.items() if n} == dict(
        Counter(r.priority_name for r in queued)
    )
    assert c.queued_by_operation == dict(Counter(r.operation for r in queued))
    assert c.awaiting_retry == sum(r.awaiting_retry for r in rows)
    in_flight = Counter(r.session_id for r in rows if r.state in ACTIVE_STATES and r.session_id)
    assert c.in_flight == dict(in_flight)
    for key, value in source.memory.scan(keys.SESSION):
        session = json.loads(value)
        assert session["in_flight"] == in_flight.get(session["session_id"], 0), key
    for state in c.by_state:
        indexed = sum(1 for _ in source.memory.scan(keys.index_prefix(keys.BY_STATE, state)))
        assert indexed == states.get(state, 0)
    assert c.succeeded == states["completed"]
    assert c.dead_letters == sum(1 for _ in source.memory.scan(keys.DEAD))


@settings(max_examples=60, deadline=None)
@given(
    plans=st.lists(st.lists(script, min_size=1, max_size=4), min_size=1, max_size=4),
    picks=st.lists(st.integers(0, 7), max_size=40),
    flush_every=st.integers(1, 15),
)
def test_replicas_agree_and_counters_match_rows(
    plans: list[list[Any]], picks: list[int], flush_every: int
) -> None:
    parts = partitions_of(plans)
    reference = replay(parts, [], 10_000)
    other = replay(parts, picks, flush_every)
    assert snapshot(other) == snapshot(reference)
    recount(reference)
    recount(other)
