"""Dispatch: hand queued work to sessions with free capacity, best work first.

Rules that hold for every strategy:

* a client's work only goes to sessions registered with that client (affinity and isolation);
* a session never holds more units than ``max_concurrent``; a batch is ONE unit, whatever its
  size (the executor runs it as one browser interaction);
* a session whose circuit is open gets nothing; a half-open one gets exactly one probe unit;
* a task's ``capabilities`` must be a subset of the session's (for a batch: all its items');
* a session whose agent reported a workload at or above ``max_workload`` gets nothing;
* a session whose health is below ``session_reuse_threshold`` is not reused while a session at
  or above it can take the unit; with none, it takes one unit at a time (like a probe), so
  its successes can lift it back;
* work goes in order of effective (aged) priority, then arrival. Work no free session can take
  (missing capabilities) is skipped, not blocking what comes after it.

The strategies only differ in which of the eligible sessions gets the next unit.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.events import BatchProcessed
from streams.domain import batching, health, lifecycle, pool, rates
from streams.domain.context import Decision
from streams.domain.priority import CRITICAL, effective_priority
from streams.domain.state import PartitionState, SessionRecord, TaskRecord

Candidate = tuple[SessionRecord, int]  # a session and its free capacity


def _session_aware(
    cands: list[Candidate], required: frozenset[str], ctx: Decision
) -> SessionRecord:
    cfg = ctx.config
    return min(
        cands,
        key=lambda c: (health.rank(c[0].score, cfg), -c[0].score, -c[1], c[0].reg_seq),
    )[0]


def _capability_based(
    cands: list[Candidate], required: frozenset[str], ctx: Decision
) -> SessionRecord:
    def score(c: Candidate) -> tuple[float, int, int]:
        session, free = c
        match = len(required) / len(session.capabilities) if session.capabilities else 1.0
        if not required:
            match = 1.0
        # Match, health, success rate and availability (the agent's free workload).
        value = (
            0.4 * match
            + 0.25 * session.score
            + 0.15 * health.success_rate(session)
            + 0.2 * (1.0 - session.workload)
        )
        return (-value, -free, session.reg_seq)

    return min(cands, key=score)[0]


def _least_loaded(cands: list[Candidate], required: frozenset[str], ctx: Decision) -> SessionRecord:
    return min(
        cands,
        key=lambda c: (
            max(len(c[0].units) / c[0].max_concurrent, c[0].workload),
            len(c[0].units),
            c[0].reg_seq,
        ),
    )[0]


def _round_robin(cands: list[Candidate], required: frozenset[str], ctx: Decision) -> SessionRecord:
    session0 = cands[0][0]
    cursor = ctx.state.meta.rr_cursor.get(session0.client_id, 0)
    after = [c[0] for c in cands if c[0].reg_seq > cursor]
    pool = after if after else [c[0] for c in cands]
    return min(pool, key=lambda s: s.reg_seq)


STRATEGIES: dict[str, Callable[[list[Candidate], frozenset[str], Decision], SessionRecord]] = {
    "session-aware": _session_aware,
    "capability-based": _capability_based,
    "least-loaded": _least_loaded,
    "round-robin": _round_robin,
}


def _sessions(st: PartitionState, client_id: str) -> list[SessionRecord]:
    return [st.sessions[s] for s in st.client_sessions.get(client_id, {})]


def can_take_work(ctx: Decision, client_id: str) -> bool:
    """Whether some session of the client can take a unit that needs nothing of it: free
    capacity, not overloaded, and reusable or idle (``choose_session``'s rules, without a
    unit's capabilities and assignee). When none can, no unit can be placed: dispatch stops
    instead of trying (and skipping) every waiting unit in turn."""
    cfg = ctx.config
    for session in _sessions(ctx.state, client_id):
        if (
            health.free_capacity(session) > 0
            and not health.overloaded(session, cfg)
            and (not session.units or health.reusable(session, cfg))
        ):
            return True
    return False


def _serves(session: SessionRecord, assignee: tuple[str, str] | None) -> bool:
    """Whether the session may take work assigned to ``assignee`` (an agent or a session)."""
    if assignee is None:
        return True
    kind, who = assignee
    return session.session_id == who if kind == "session" else session.agent_id == who


def choose_session(
    ctx: Decision,
    client_id: str,
    required: frozenset[str],
    assignee: tuple[str, str] | None = None,
) -> SessionRecord | None:
    cfg = ctx.config
    cands: list[Candidate] = []
    for session in _sessions(ctx.state, client_id):
        free = health.free_capacity(session)
        if (
            free > 0
            and required.issubset(session.capabilities)
            and _serves(session, assignee)
            and not health.overloaded(session, cfg)
        ):
            cands.append((session, free))
    reused = [c for c in cands if health.reusable(c[0], cfg)]
    # Below the reuse threshold only when nothing better can take it, one unit at a time.
    cands = reused or [(s, 1) for s, _ in cands if not s.units]
    if not cands:
        return None
    return STRATEGIES[ctx.config.dispatch_strategy](cands, required, ctx)


class _Passed:
    """What one dispatch has found it cannot place, so it is passed over without trying again.

    Within one dispatch a refusal stays a refusal: assigning only takes capacity and tokens,
    so an operation whose bucket is empty, or a (capabilities, assignee) no session can take,
    is refused for every unit that has it.
    """

    __slots__ = ("operations", "placements")

    def __init__(self) -> None:
        self.operations: set[str] = set()
        self.placements: set[tuple[frozenset[str], tuple[str, str] | None]] = set()

    def task(self, task: TaskRecord) -> bool:
        return (task.operation in self.operations) or (
            bool(self.placements)
            and (frozenset(task.capabilities), task.assigned_to) in self.placements
        )

    def batch(self, st: PartitionState, batch_id: str, operation: str) -> bool:
        return (operation in self.operations) or (
            bool(self.placements) and (_required(st, "b", batch_id), None) in self.placements
        )


def _next_unit(ctx: Decision, client_id: str, passed: _Passed) -> tuple[str, str] | None:
    """The best dispatchable unit: ("t", task_id) or ("b", batch_id)."""
    st, now, cfg = ctx.state, ctx.now, ctx.config
    best_key: tuple[int, int, int] | None = None
    best: tuple[str, str] | None = None
    for priority, lane in st.lanes.get(client_id, {}).items():
        # Lanes are in arrival order, so the first live task beats the rest of its lane.
        for seq, task_id in lane:
            if not st.lane_valid(priority, seq, task_id):
                continue
            task = st.tasks[task_id]
            if passed.task(task):
                continue
            key = (
                effective_priority(task.queue_priority, task.queued_at_ms, now, cfg.aging_step_ms),
                task.queued_at_ms,
                task.seq,
            )
            if best_key is None or key < best_key:
                best_key, best = key, ("t", task_id)
            break
    batches = st.batches
    # Size and window per operation: the same for every batch of the client in this call (a
    # dispatch in a burst looks at dozens of waiting batches).
    limits: dict[str, batching.Limits] = {}
    for batch_id in st.pending_batches.get(client_id, {}):
        batch = batches[batch_id]
        # No batch competes better than CRITICAL: one whose best possible key does not beat
        # the best so far is passed over without computing its (aged) priority. Keys never tie
        # (``seq`` is unique), so this picks exactly what the full comparison would.
        if best_key is not None and (CRITICAL, batch.opened_at_ms, batch.seq) > best_key:
            continue
        operation = batch.operation
        if passed.batch(st, batch_id, operation):
            continue
        bounds = limits.get(operation)
        if bounds is None:
            bounds = limits[operation] = batching.limits(st, client_id, operation, cfg)
        if not batching.closed_within(batch, now, bounds):
            continue
        key = (batching.batch_priority(st, batch, now, cfg), batch.opened_at_ms, batch.seq)
        if best_key is None or key < best_key:
            best_key, best = key, ("b", batch_id)
    return best


def _assign_task(ctx: Decision, task_id: str, session: SessionRecord) -> None:
    task = ctx.state.tasks[task_id]
    lifecycle.assign(
        ctx,
        task_id,
        session.session_id,
        fencing_token=ctx.next_fencing_token(),
        deadline_at_ms=ctx.now + task.timeout_ms,
        priority=effective_priority(
            task.queue_priority, task.queued_at_ms, ctx.now, ctx.config.aging_step_ms
        ),
    )


def _assign_batch(ctx: Decision, batch_id: str, session: SessionRecord) -> None:
    st, now, cfg = ctx.state, ctx.now, ctx.config
    batch = st.batches[batch_id]
    items = batch.live
    token = ctx.next_fencing_token()
    deadline = batching.deadline(st, items, now, cfg)
    priorities = {
        t: effective_priority(
            st.tasks[t].queue_priority, st.tasks[t].queued_at_ms, now, cfg.aging_step_ms
        )
        for t in items
    }
    ctx.emit(
        BatchProcessed(
            client_id=batch.client_id,
            occurred_at_ms=now,
            batch_id=batch_id,
            operation=batch.operation,
            task_ids=list(items),
            session_id=session.session_id,
            fencing_token=token,
            closed_by=batching.closed_by(st, batch, cfg),
        )
    )
    for task_id in items:
        lifecycle.assign(
            ctx,
            task_id,
            session.session_id,
            batch_id=batch_id,
            fencing_token=token,
            deadline_at_ms=deadline,
            priority=priorities[task_id],
        )


def _required(st: PartitionState, kind: str, unit_id: str) -> frozenset[str]:
    if kind == "t":
        return frozenset(st.tasks[unit_id].capabilities)
    caps: set[str] = set()
    for task_id in st.batches[unit_id].live:
        caps.update(st.tasks[task_id].capabilities)
    return frozenset(caps)


def _operation(st: PartitionState, kind: str, unit_id: str) -> str:
    return st.tasks[unit_id].operation if kind == "t" else st.batches[unit_id].operation


def dispatch(ctx: Decision, client_id: str) -> None:
    """Assign as much of the client's waiting work as its sessions can take now, within its
    rate limits (``rates``); and as much of the partition's pool work as the pool can take."""
    pool.dispatch_pool(ctx)
    st = ctx.state
    if not can_take_work(ctx, client_id):
        return
    passed = _Passed()
    while True:
        unit = _next_unit(ctx, client_id, passed)
        if unit is None:
            return
        kind, unit_id = unit
        if not rates.client_allows(ctx, client_id):
            return  # the client's bucket is empty: its work waits (ticks try again)
        operation = _operation(st, kind, unit_id)
        if not rates.allows(ctx, client_id, operation):
            passed.operations.add(operation)  # this operation's own bucket is empty
            continue
        assignee = st.tasks[unit_id].assigned_to if kind == "t" else None
        required = _required(st, kind, unit_id)
        session = choose_session(ctx, client_id, required, assignee)
        if session is None:
            passed.placements.add((required, assignee))  # no session takes such a unit
            continue
        if kind == "t":
            _assign_task(ctx, unit_id, session)
        else:
            _assign_batch(ctx, unit_id, session)
        if not can_take_work(ctx, client_id):
            return
