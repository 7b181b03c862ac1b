"""Pool work: tasks whose operation needs no session, handed out like session work.

Pool executors register capacity per ``task.commands`` partition (``RegisterPool``, produced
to the partition whose ``task.pool`` partition they consume; again as their heartbeat). The
partition keeps its clients' pool work queued by priority, with aging, and hands it out
within the capacity of its live members, best work first *across its clients*: a critical
reminder of one client overtakes a background report of another. What does not fit waits in
the queue, not on ``task.pool``, so a backlog never ages into timeouts, retries and duplicate
runs. Rate limits (``streams.domain.rates``) apply as for session work.

Until a member registers on a partition, its pool is unbounded (work goes out at once, as
for executors that do not register, such as older SDKs); from the first registration on, the
capacity bounds it, and with no live member pool work waits (``client.starved``).
"""

from __future__ import annotations

from schemas import commands as cmd
from schemas.events import PoolRegistered, PoolReleased
from streams.domain import lifecycle, rates
from streams.domain.context import Decision
from streams.domain.priority import effective_priority
from streams.domain.state import PartitionState

STALE = "stale"


def free_capacity(st: PartitionState) -> int | None:
    """Pool units the partition may hand out now; None while unbounded."""
    pool = st.pool
    if not pool.bounded:
        return None
    return max(0, pool.capacity - len(st.pool_inflight))


def _next(ctx: Decision, blocked: set[str], skipped: set[str]) -> str | None:
    """The best queued pool task of any client not rate-blocked, by (aged priority, arrival)."""
    st, now, step = ctx.state, ctx.now, ctx.config.aging_step_ms
    best_key: tuple[int, int, int] | None = None
    best: str | None = None
    for client_id, lanes in st.pool_lanes.items():
        if client_id in blocked:
            continue
        for priority, lane in lanes.items():
            for seq, task_id in lane:
                if task_id in skipped or not st.lane_valid(priority, seq, task_id):
                    continue
                task = st.tasks[task_id]
                key = (
                    effective_priority(task.queue_priority, task.queued_at_ms, now, step),
                    task.queued_at_ms,
                    task.seq,
                )
                if best_key is None or key < best_key:
                    best_key, best = key, task_id
                break
    return best


def dispatch_pool(ctx: Decision) -> None:
    """Hand out queued pool work within the free capacity."""
    st = ctx.state
    if not st.pool_queued:
        return
    free = free_capacity(st)
    blocked: set[str] = set()
    skipped: set[str] = set()
    while free is None or free > 0:
        task_id = _next(ctx, blocked, skipped)
        if task_id is None:
            return
        task = st.tasks[task_id]
        if not rates.client_allows(ctx, task.client_id):
            blocked.add(task.client_id)
            continue
        if not rates.allows(ctx, task.client_id, task.operation):
            skipped.add(task_id)  # its operation's bucket is empty; the client's others may go
            continue
        lifecycle.assign(
            ctx,
            task_id,
            None,
            fencing_token=ctx.next_fencing_token(),
            deadline_at_ms=ctx.now + task.timeout_ms,
            priority=effective_priority(
                task.queue_priority, task.queued_at_ms, ctx.now, ctx.config.aging_step_ms
            ),
        )
        if free is not None:
            free -= 1


def register(ctx: Decision, c: cmd.RegisterPool) -> None:
    ctx.emit(PoolRegistered(client_id=c.client_id, occurred_at_ms=ctx.now, capacity=c.capacity))
    dispatch_pool(ctx)


def release(ctx: Decision, c: cmd.ReleasePool) -> None:
    if c.client_id not in ctx.state.pool.members:
        return  # released already, or cleaned as stale
    ctx.emit(PoolReleased(client_id=c.client_id, occurred_at_ms=ctx.now, reason=c.reason))


def clean(ctx: Decision) -> None:
    """Members silent for the session stale time lose their capacity (tick)."""
    members = ctx.state.pool.members
    stale_ms = ctx.config.session_stale_ms
    for member_id, (_, last_seen, _) in sorted(members.items(), key=lambda m: m[1][2]):
        if ctx.now - last_seen >= stale_ms:
            ctx.emit(PoolReleased(client_id=member_id, occurred_at_ms=ctx.now, reason=STALE))
