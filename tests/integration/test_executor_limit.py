"""An executor never runs more handlers at once than its limit, checked over the event log:
the intervals from ``task.started`` to the attempt's end never overlap more than
``concurrency`` deep, even when its session would take more."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from schemas import events as ev
from streams.executor import Executor, SessionSpec, TaskContext
from streams.settings import Settings

from .distributor_harness import Commands, InProcessProcessor, layout, submit, wait_for_events

LIMIT = 2
ENDS = (ev.TaskCompleted, ev.TaskAttemptFailed)


async def slow_send(ctx: TaskContext) -> Mapping[str, Any]:
    await asyncio.sleep(0.15)
    return {"sent": ctx.task_id}


def max_overlap(events: list[Any], start: type[ev.Event]) -> int:
    """Deepest overlap of the intervals from a ``start`` event to an attempt's end. An end at
    the same millisecond as a start counts first (the outbox sends an attempt's result before
    the next start)."""
    marks: list[tuple[int, int]] = []
    for event in events:
        if isinstance(event, start):
            marks.append((event.occurred_at_ms, 1))
        elif isinstance(event, ENDS):
            marks.append((event.occurred_at_ms, -1))
    depth = deepest = 0
    for _, step in sorted(marks):
        depth += step
        deepest = max(deepest, depth)
    return deepest


async def test_executor_concurrency_limit_holds_over_the_event_log(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(make_settings)
    processor = await InProcessProcessor(settings).start()
    executor = Executor(
        settings,
        sessions=[SessionSpec("s-wide", "client_limit", "agent-1", max_concurrent=6)],
        handlers={"conversation_send": slow_send},
        concurrency=LIMIT,
    )
    try:
        await executor.start()
        ids = [f"limit-{i}" for i in range(12)]
        async with Commands(settings) as commands:
            await commands.send(*(submit("client_limit", t, "conversation_send") for t in ids))

        def all_completed(events: list[Any]) -> bool:
            done = {e.task_id for e in events if isinstance(e, ev.TaskCompleted)}
            return set(ids) <= done

        events = await wait_for_events(settings, all_completed, timeout_s=60)
        assert len([e for e in events if isinstance(e, ev.TaskStartedEvent)]) == len(ids)
        # The processor handed the executor more at once than it may run (capacity 6) ...
        assert max_overlap(events, ev.TaskAssigned) > LIMIT
        # ... and the executor still never ran more than its limit.
        assert 1 <= max_overlap(events, ev.TaskStartedEvent) <= LIMIT
    finally:
        await executor.stop()
        await processor.stop()
