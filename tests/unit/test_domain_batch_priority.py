"""A waiting batch competes with the best aged priority of its items, also after its items or
their priorities change (``batching.batch_priority`` keeps one pair per priority)."""

from __future__ import annotations

import random

from schemas import commands as c
from schemas import events as ev
from streams.domain import batching
from streams.domain.priority import CRITICAL, LOWEST
from streams.domain.state import PartitionState
from tests.support.gwt import Harness, of, register, submit

MINUTE = 60_000


def item_by_item(st: PartitionState, batch_id: str, now: int, step: int) -> int:
    """The rule as written: each item's queue priority less one per aging step waited."""
    best = LOWEST
    for task_id in st.batches[batch_id].live:
        task = st.tasks[task_id]
        best = min(best, task.queue_priority - max(0, now - task.queued_at_ms) // step)
    return max(best, CRITICAL)


def dispatched(events: list[ev.Event]) -> list[str]:
    return [b.operation for b in of(events, ev.BatchProcessed)]


def test_the_priority_of_a_batch_is_its_best_aged_item_at_any_time() -> None:
    rng = random.Random(7)
    h = Harness()
    for i in range(40):
        h.do(
            submit(
                f"t{i}", operation=rng.choice(["tag_add", "tag_remove"]), priority=rng.randint(1, 5)
            ),
            at=i * 40,
        )
    st, cfg = h.state, h.config
    assert st.batches
    for now in [0, 1_999, 2_000, MINUTE - 1, MINUTE, 2 * MINUTE + 7, 3 * MINUTE, 10 * MINUTE]:
        for batch_id, batch in st.batches.items():
            expected = item_by_item(st, batch_id, now, cfg.aging_step_ms)
            assert batching.batch_priority(st, batch, now, cfg) == expected
            assert batching.batch_priority(st, batch, now, cfg) == expected  # read again
    cancelled = next(iter(st.batches.values())).live[0]
    h.do(c.CancelTask(client_id="A", task_id=cancelled), at=2_500)
    for batch_id, batch in h.state.batches.items():
        assert cancelled not in batch.live
        expected = item_by_item(h.state, batch_id, 5 * MINUTE, cfg.aging_step_ms)
        assert batching.batch_priority(h.state, batch, 5 * MINUTE, cfg) == expected


def waiting_tag_batches() -> Harness:
    """A tag_add batch opened at 0 and a tag_remove batch opened at 100, both closed and
    waiting (no session), both at priority 4; their priorities were read once."""
    h = Harness()
    for i in range(3):
        h.do(submit(f"add{i}", operation="tag_add"), at=i)
        h.do(submit(f"rm{i}", operation="tag_remove"), at=100 + i)
    h.tick(3_000)
    for batch in h.state.batches.values():
        assert batching.batch_priority(h.state, batch, 3_000, h.config) == 4
    return h


def test_the_older_of_two_equal_batches_goes_first() -> None:
    h = waiting_tag_batches()
    assert dispatched(h.do(register("s1", max_concurrent=1), at=3_000)) == ["tag_add"]


def test_an_item_expedited_while_batched_lifts_its_batch() -> None:
    h = waiting_tag_batches()
    h.do(c.ExpediteTask(client_id="A", task_id="rm1"), at=3_000)
    assert h.state.tasks["rm1"].queue_priority == CRITICAL
    assert dispatched(h.do(register("s1", max_concurrent=1), at=3_000)) == ["tag_remove"]


def test_an_item_whose_priority_is_edited_while_batched_counts_at_its_new_priority() -> None:
    h = waiting_tag_batches()
    h.do(c.UpdateTask(client_id="A", task_id="rm2", changed=["priority"], priority=2), at=3_000)
    assert h.state.tasks["rm2"].queue_priority == 2
    for batch_id, batch in h.state.batches.items():
        expected = item_by_item(h.state, batch_id, 3_000, h.config.aging_step_ms)
        assert batching.batch_priority(h.state, batch, 3_000, h.config) == expected
    assert {
        batching.batch_priority(h.state, b, 3_000, h.config) for b in h.state.batches.values()
    } == {2, 4}
