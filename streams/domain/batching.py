"""Batching: batchable operations of one client and one operation travel as one assignment.

A batch collects for ``batch_window_ms`` after its first item or until ``max_batch_size``
items joined, whichever comes first; after that it is *closed* (no item joins any more) and
waits for a session. Closing needs no event: it follows from the batch's age and its join
count, both in the state, so live and recovered states agree. Only a task's first attempt
batches; retries run alone ("failed items take the retry path individually").

The window and the size are the operation's (``batch_window_ms`` and ``max_batch_size`` in the
catalog) or else the configured defaults. The size adapts per client and operation (seed 000's
"adaptive batch sizing"): a consolidated batch none of whose items succeeded halves it, one
whose items all succeeded doubles it back, always within ``[1, the operation's size]``. The
decider writes the new size into the ``BatchResultConsolidated`` (``batch_size``, null at the
operation's size) and ``evolve`` keeps it in the client's record, so a replay reproduces it.
"""

from __future__ import annotations

from schemas.events import TaskBatched
from streams.domain.config import DomainConfig
from streams.domain.context import Decision
from streams.domain.priority import CRITICAL, LOWEST
from streams.domain.state import BatchRecord, BatchStatus, PartitionState, TaskRecord

Limits = tuple[int, int]
"""A batch's size and window (ms): it closes once it holds the one or has waited the other."""


def should_batch(task: TaskRecord) -> bool:
    return task.batchable and task.session_required and task.attempt == 1


def window_ms(config: DomainConfig, operation: str) -> int:
    spec = config.catalog.get(operation)
    if spec is None or spec.batch_window_ms is None:
        return config.batch_window_ms
    return spec.batch_window_ms


def max_size(config: DomainConfig, operation: str) -> int:
    """The operation's batch size: the bound adaptive sizing stays within."""
    spec = config.catalog.get(operation)
    if spec is None or spec.max_batch_size is None:
        return config.max_batch_size
    return spec.max_batch_size


def largest_size(config: DomainConfig) -> int:
    """The largest batch any operation may have."""
    sizes = [s.max_batch_size for s in config.catalog.values() if s.max_batch_size is not None]
    return max([config.max_batch_size, *sizes])


def size(st: PartitionState, client_id: str, operation: str, config: DomainConfig) -> int:
    """The client's batch size for the operation now: the adapted one, else the operation's."""
    bound = max_size(config, operation)
    record = st.clients.get(client_id)
    if record is not None:
        adapted = record.batch_sizes.get(operation)
        if adapted is not None:
            return min(adapted, bound)
    return bound


def adapted(
    st: PartitionState, batch: BatchRecord, successes: int, failures: int, config: DomainConfig
) -> int | None:
    """The size after this batch's outcome (None: the operation's size): halved when no item
    succeeded, doubled when every item did, unchanged when some failed; within [1, bound]."""
    bound = max_size(config, batch.operation)
    now = size(st, batch.client_id, batch.operation, config)
    if failures and not successes:
        now = max(1, now // 2)
    elif successes and not failures:
        now = min(bound, now * 2)
    return None if now >= bound else now


def limits(st: PartitionState, client_id: str, operation: str, config: DomainConfig) -> Limits:
    """(size, window) of the client's batches of ``operation`` now: what closes one."""
    return size(st, client_id, operation, config), window_ms(config, operation)


def closed_within(batch: BatchRecord, now_ms: int, bounds: Limits) -> bool:
    """``is_closed`` with the batch's ``limits`` already looked up (a dispatch looks at dozens
    of a client's waiting batches, which share them per operation)."""
    batch_size, window = bounds
    return len(batch.task_ids) >= batch_size or now_ms >= batch.opened_at_ms + window


def is_closed(st: PartitionState, batch: BatchRecord, now_ms: int, config: DomainConfig) -> bool:
    return closed_within(batch, now_ms, limits(st, batch.client_id, batch.operation, config))


def closed_by(st: PartitionState, batch: BatchRecord, config: DomainConfig) -> str:
    full = len(batch.task_ids) >= size(st, batch.client_id, batch.operation, config)
    return "size" if full else "window"


def batch_priority(
    st: PartitionState, batch: BatchRecord, now_ms: int, config: DomainConfig
) -> int:
    """A batch competes with the best (aged) priority of its items.

    Of the items with one queue priority the oldest ages furthest, so only those count: one
    (queue priority, queued at) pair per priority, kept in ``st.batch_ages`` while the batch's
    items are the same ``live`` tuple (joining or leaving makes a new one; ``evolve`` drops the
    entry when an item's priority changes in place). This runs for every waiting batch a
    dispatch looks at, so it costs a pair per priority, not a step per item.
    """
    entry = st.batch_ages.get(batch.batch_id)
    if entry is None or entry[0] is not batch.live:
        entry = (batch.live, _oldest_by_priority(st, batch.live))
        st.put(st.batch_ages, batch.batch_id, entry)
    best, step = LOWEST, config.aging_step_ms
    for queue_priority, queued_at_ms in entry[1]:
        priority = queue_priority - max(0, now_ms - queued_at_ms) // step
        if priority < best:
            best = priority
    return max(best, CRITICAL)


def _oldest_by_priority(
    st: PartitionState, task_ids: tuple[str, ...]
) -> tuple[tuple[int, int], ...]:
    oldest: dict[int, int] = {}
    for task_id in task_ids:
        task = st.tasks[task_id]
        queued_at = oldest.get(task.queue_priority)
        if queued_at is None or task.queued_at_ms < queued_at:
            oldest[task.queue_priority] = task.queued_at_ms
    return tuple(oldest.items())


def deadline(
    st: PartitionState, task_ids: tuple[str, ...] | list[str], now_ms: int, config: DomainConfig
) -> int:
    """When a dispatched batch must have reported: its longest item timeout, plus the
    catalog's expected duration for every further item (an executor runs the items of a
    batch one after another unless its handler takes the whole batch at once)."""
    tasks = [st.tasks[t] for t in task_ids if t in st.tasks]
    if not tasks:
        return now_ms
    spec = config.catalog.get(tasks[0].operation)
    each = spec.expected_duration_ms if spec is not None else 0
    return now_ms + max(t.timeout_ms for t in tasks) + each * (len(tasks) - 1)


def join(ctx: Decision, task_id: str) -> None:
    """Put a freshly queued task into the open batch of its (client, operation) or a new one."""
    st = ctx.state
    task = st.tasks[task_id]
    batch_id: str | None = st.current_batch.get((task.client_id, task.operation))
    if batch_id is not None:
        batch = st.batches[batch_id]
        if batch.status != BatchStatus.OPEN or is_closed(st, batch, ctx.now, ctx.config):
            batch_id = None
    if batch_id is None:
        batch_id = f"b-{task.client_id}-{st.meta.batch_seq + 1}"
    ctx.emit(
        TaskBatched(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=ctx.now,
            batch_id=batch_id,
            operation=task.operation,
        )
    )
