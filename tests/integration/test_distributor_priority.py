"""Priority and aging on the embedded broker: one session of capacity 1 drains a queue of mixed
non-batchable operations (issue 3, "Done when" 1).

The order is checked against an oracle folded from the event log alone: at every
``task.assigned`` the task handed out must be the best queued one by (aged priority, arrival).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from schemas import events as ev
from schemas.catalog import load_catalog
from streams.domain.priority import effective_priority
from streams.settings import Settings
from tests.integration.distributor_harness import register, rig, submit

pytestmark = pytest.mark.integration

AGING_STEP_MS = 400

# Non-batchable operations that need a session, over every urgency level.
NON_BATCHABLE = sorted(
    name for name, spec in load_catalog().items() if spec.session_required and not spec.batchable
)


def check_priority_order(events: list[Any], client: str) -> list[str]:
    """Fold the client's events; at each assignment, the assigned task is the best queued one.

    Returns the task ids in assignment order."""
    queued: dict[str, tuple[int, int, int]] = {}  # task -> (priority, queued_at, arrival)
    arrival = 0
    order: list[str] = []
    for e in events:
        if getattr(e, "client_id", None) != client:
            continue
        if isinstance(e, ev.TaskQueued):
            arrival += 1
            queued[e.task_id] = (e.priority, e.occurred_at_ms, arrival)
        elif isinstance(e, ev.TaskAssigned):
            now = e.occurred_at_ms
            assert e.task_id in queued, f"{e.task_id} assigned without being queued"

            def key(task_id: str, now: int = now) -> tuple[int, int, int]:
                priority, at, seq = queued[task_id]
                return (effective_priority(priority, at, now, AGING_STEP_MS), at, seq)

            best = min(queued, key=key)
            assert key(e.task_id) == key(best), (
                f"assigned {e.task_id} {key(e.task_id)} while {best} {key(best)} was waiting"
            )
            assert e.priority == key(e.task_id)[0]
            del queued[e.task_id]
            order.append(e.task_id)
    assert not queued, f"never assigned: {sorted(queued)}"
    return order


async def test_one_session_takes_work_by_priority_then_arrival_and_aging_lifts_background(
    make_settings: Callable[..., Settings],
) -> None:
    rnd = random.Random(3)
    catalog = load_catalog()
    async with rig(make_settings, delay=False, aging_step_ms=AGING_STEP_MS) as r:
        # Client B: a background task waits longer than the aging bound (4 steps) ...
        await r.send(submit("B", "old-bg", "report_generate"))
        # ... meanwhile client A queues 50 mixed tasks with no session to take them.
        tasks = [(f"a{i:02d}", rnd.choice(NON_BATCHABLE)) for i in range(50)]
        await r.send(*(submit("A", task_id, op) for task_id, op in tasks))
        await r.send(register("A", "A-s1", max_concurrent=1))
        await asyncio.sleep(4 * AGING_STEP_MS / 1000 + 0.3)
        # ... and then new normal-priority tasks arrive before B's session appears.
        await r.send(*(submit("B", f"new{i}", "browser_automation") for i in range(5)))
        await r.send(register("B", "B-s1", max_concurrent=1))

        events = await r.wait(
            lambda es: sum(isinstance(e, ev.TaskCompleted) for e in es) == 56, timeout_s=40
        )

    order = check_priority_order(events, "A")
    assert sorted(order) == sorted(t for t, _ in tasks)
    # Not arrival order: the queue really was reordered by priority.
    assert order != [t for t, _ in tasks]
    urgency = dict(tasks)
    # The session's first task: the earliest critical one (nothing had aged yet).
    assert order[0] == next(t for t, op in tasks if catalog[op].urgency == 1)
    assert catalog[urgency[order[-1]]].urgency > 1

    b_order = check_priority_order(events, "B")
    assert b_order[0] == "old-bg"
    old_queued = next(e for e in events if isinstance(e, ev.TaskQueued) and e.task_id == "old-bg")
    assert old_queued.priority == 5
    first_b = next(e for e in events if isinstance(e, ev.TaskAssigned) and e.client_id == "B")
    assert first_b.priority == 1  # aged from background to critical
    # Every assignment went to the session of its own client.
    for e in events:
        if isinstance(e, ev.TaskAssigned):
            assert e.session_id == f"{e.client_id}-s1"
