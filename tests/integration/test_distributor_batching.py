"""Batching windows on the suite's broker with the real 2 s window and size 10 (issue 3,
"Done when" 2), plus the consolidation of a batch result and the individual retry of its
failed item."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from schemas import events as ev
from schemas.records import Assignment
from streams.settings import Settings
from tests.integration.distributor_harness import Reply, register, rig, submit

pytestmark = pytest.mark.integration

WINDOW_MS = 2000
TOLERANCE_MS = 500
FAILING_ITEM = "tag03"


def script(assignment: Assignment) -> Reply:
    if assignment.kind == "batch":
        # One item of the first batch fails; every other item succeeds.
        return Reply(items={FAILING_ITEM: False}, error="tag quota exceeded")
    return Reply(output={"ran": assignment.task_id})


async def test_batches_of_ten_ten_and_five_and_the_last_leaves_after_the_window(
    make_settings: Callable[..., Settings],
) -> None:
    async with rig(
        make_settings, script, batch_window_ms=WINDOW_MS, max_batch_size=10, retry_base_ms=100
    ) as r:
        await r.send(register("A", "A-s1", max_concurrent=4))
        # 25 tag_add within one second, with non-batchable work of the same client between.
        for chunk in range(5):
            await r.send(*(submit("A", f"tag{chunk * 5 + i:02d}", "tag_add") for i in range(5)))
            await r.send(
                submit("A", f"conv{chunk}", "conversation_send"),
                submit("A", f"pipe{chunk}", "pipeline_update"),
            )
            await asyncio.sleep(0.18)
        events = await r.wait(
            lambda es: sum(isinstance(e, ev.TaskCompleted) for e in es) == 35, timeout_s=30
        )
        received = r.executor.work()

    batched = [e for e in events if isinstance(e, ev.TaskBatched)]
    processed = [e for e in events if isinstance(e, ev.BatchProcessed)]
    first_sent = min(e.occurred_at_ms for e in events if isinstance(e, ev.TaskAccepted))
    last_sent = max(e.occurred_at_ms for e in events if isinstance(e, ev.TaskAccepted))
    assert last_sent - first_sent < 1000  # the 25 arrived within one second

    assert [len(p.task_ids) for p in processed] == [10, 10, 5]
    assert [p.closed_by for p in processed] == ["size", "size", "window"]
    assert [t for p in processed for t in p.task_ids] == [f"tag{i:02d}" for i in range(25)]
    last = processed[-1]
    opened = min(e.occurred_at_ms for e in batched if e.batch_id == last.batch_id)
    waited = last.occurred_at_ms - opened
    assert WINDOW_MS - TOLERANCE_MS <= waited <= WINDOW_MS + TOLERANCE_MS, waited
    # The two full batches left at once, long before a window could close.
    for p in processed[:2]:
        first = min(e.occurred_at_ms for e in batched if e.batch_id == p.batch_id)
        assert p.occurred_at_ms - first < WINDOW_MS - TOLERANCE_MS

    # Non-batchable operations never batch: alone in their assignment, no batch id.
    singles = {f"conv{i}" for i in range(5)} | {f"pipe{i}" for i in range(5)}
    assert not [e for e in batched if e.task_id in singles]
    for e in events:
        if isinstance(e, ev.TaskAssigned) and e.task_id in singles:
            assert e.batch_id is None
    batches = [a for a in received if a.kind == "batch"]
    assert [len(a.items) for a in batches] == [10, 10, 5]
    assert all(a.operation == "tag_add" for a in batches)
    assert {a.task_id for a in received if a.kind == "task"} >= singles

    # The first batch's result is consolidated; its failed item retries on its own.
    consolidated = [e for e in events if isinstance(e, ev.BatchResultConsolidated)]
    head = next(e for e in consolidated if e.batch_id == processed[0].batch_id)
    assert (head.success_count, head.failure_count) == (9, 1)
    assert sorted(head.consolidated_output) == sorted(processed[0].task_ids)
    assert head.consolidated_output[FAILING_ITEM] == {"error": "tag quota exceeded"}
    assert all(
        (e.success_count, e.failure_count) == (len(p.task_ids), 0)
        for e, p in zip(consolidated[1:], processed[1:], strict=True)
    )
    retry = [a for a in received if a.kind == "task" and a.task_id == FAILING_ITEM]
    assert len(retry) == 1 and retry[0].attempt == 2
    done = next(e for e in events if isinstance(e, ev.TaskCompleted) and e.task_id == FAILING_ITEM)
    assert done.attempt == 2 and done.batch_id is None
