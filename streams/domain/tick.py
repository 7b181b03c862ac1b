"""``tick(state, now_ms, config) -> list[Event]``: what the passing of time alone causes.

In order: finished work past the retention window is forgotten (``retention``), scheduled
starts and schedule occurrences that fell due are started (``timers``), stale
sessions are cleaned (their work re-queued, same attempt: losing a session is not the
task's fault), overdue assignments time out (the retry path), open circuits whose
cooldown passed go half-open, and every client with something newly dispatchable (a batch
whose window closed, freed capacity) gets a dispatch round. Iteration follows sequence
numbers, so a recovered state ticks exactly like the live one.
"""

from __future__ import annotations

from schemas.events import (
    BatchResultConsolidated,
    Event,
    SessionHealthChanged,
    TaskTimedOut,
)
from schemas.states import ACTIVE_STATES
from streams.domain import (
    batch_jobs,
    batching,
    health,
    lifecycle,
    pool,
    rates,
    retention,
    session_commands,
    steps,
    timers,
    watch,
)
from streams.domain.config import DomainConfig
from streams.domain.context import Decision, Observer
from streams.domain.dispatch import dispatch
from streams.domain.state import Circuit, PartitionState


def tick(state: PartitionState, now_ms: int, config: DomainConfig) -> list[Event]:
    return _ticks(state, now_ms, config, None, keep=False)


def tick_folded(
    state: PartitionState, now_ms: int, config: DomainConfig, observe: Observer | None = None
) -> list[Event]:
    """``tick``, with its events left folded into ``state`` (see ``decide_folded``)."""
    return _ticks(state, now_ms, config, observe, keep=True)


def _ticks(
    state: PartitionState,
    now_ms: int,
    config: DomainConfig,
    observe: Observer | None,
    *,
    keep: bool,
) -> list[Event]:
    ctx = Decision(state, max(now_ms, state.meta.clock), config, observe)
    state.begin()
    try:
        _ticked(ctx)
    except BaseException:
        state.rollback()
        raise
    if keep:
        ctx.keep()
    else:
        state.rollback()
    return ctx.events


def _ticked(ctx: Decision) -> None:
    retention.forget(ctx)
    timers.fire(ctx)
    _run(ctx)
    batch_jobs.settle(ctx)
    steps.settle(ctx)
    if watch.due(ctx):
        watch.watch(ctx)


def _run(ctx: Decision) -> None:
    st, now, cfg = ctx.state, ctx.now, ctx.config
    touched: set[str] = set()
    for session_id in session_commands.stale(ctx, list(st.sessions)):
        touched.add(st.sessions[session_id].client_id)
        session_commands.clean(ctx, session_id)
    overdue = sorted((deadline, unit) for unit, deadline in st.inflight.items() if deadline <= now)
    for _, unit in overdue:
        if unit in st.inflight:
            touched.add(_time_out(ctx, unit))
    for session in sorted(st.sessions.values(), key=lambda s: s.reg_seq):
        if (
            session.circuit == Circuit.OPEN
            and now >= session.circuit_since_ms + cfg.circuit_cooldown_ms
        ):
            status = health.status_for(session.score, cfg)
            ctx.emit(
                SessionHealthChanged(
                    client_id=session.client_id,
                    occurred_at_ms=now,
                    session_id=session.session_id,
                    score=session.score,
                    status=status,
                    previous_status=status,
                    circuit=Circuit.HALF_OPEN,
                )
            )
            touched.add(session.client_id)
    for client_id, batch_ids in st.pending_batches.items():
        if any(batching.is_closed(st, st.batches[b], now, cfg) for b in batch_ids):
            touched.add(client_id)
    pool.clean(ctx)
    touched.update(rates.due(st, now))  # buckets refilled, pauses over
    for client_id in sorted(touched):
        dispatch(ctx, client_id)
    pool.dispatch_pool(ctx)


def _timed_out(ctx: Decision, task_id: str) -> None:
    task = ctx.state.tasks[task_id]
    ctx.emit(
        TaskTimedOut(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=ctx.now,
            attempt=task.attempt,
            session_id=task.session_id,
            fencing_token=task.fencing_token if task.fencing_token is not None else 0,
        )
    )


def _time_out(ctx: Decision, unit: str) -> str:
    """An overdue assignment fails its attempt(s); returns the client to dispatch for."""
    st = ctx.state
    kind, unit_id = unit[0], unit[2:]
    if kind == "t":
        task = st.tasks[unit_id]
        error = f"timed out after {task.timeout_ms} ms"
        _timed_out(ctx, unit_id)
        lifecycle.attempt_failed(ctx, unit_id, error)
        return task.client_id
    batch = st.batches[unit_id]
    items = [t for t in batch.live if st.tasks[t].status in ACTIVE_STATES]
    before = lifecycle.health_snapshot(st, batch.session_id)
    longest = max((st.tasks[t].timeout_ms for t in batch.live), default=0)
    error = f"batch timed out after {longest} ms"
    ctx.emit(
        BatchResultConsolidated(
            client_id=batch.client_id,
            occurred_at_ms=ctx.now,
            batch_id=unit_id,
            operation=batch.operation,
            session_id=batch.session_id,
            success_count=0,
            failure_count=len(items),
            consolidated_output={t: {"error": error} for t in items},
            batch_size=batching.adapted(st, batch, 0, len(items), ctx.config),
        )
    )
    lifecycle.health_after(ctx, batch.session_id, before, success=not items)
    for task_id in items:
        _timed_out(ctx, task_id)
        lifecycle.attempt_failed(ctx, task_id, error)
    return batch.client_id
