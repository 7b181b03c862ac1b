"""Batching: collection by window and size, one unit per batch, consolidation, item retries."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from schemas.catalog import load_catalog
from streams.domain import Status
from tests.support.gwt import Harness, config, names, of, register, submit


def batches(events: list[ev.Event]) -> list[ev.BatchProcessed]:
    return of(events, ev.BatchProcessed)


def test_25_tag_adds_go_as_10_10_and_5_when_the_window_closes() -> None:
    h = Harness().given(register("s1", max_concurrent=3))
    for i in range(25):
        h.do(submit(f"t{i}", operation="tag_add"), at=100 + i)
    sizes = [(len(b.task_ids), b.closed_by) for b in batches(h.log)]
    assert sizes == [(10, "size"), (10, "size")]
    assert h.tick(1_999 + 120) == []  # the third batch's window is still open
    events = h.tick(2_120)
    (last,) = batches(events)
    assert (len(last.task_ids), last.closed_by) == (5, "window")
    assert [b.task_ids for b in batches(h.log)] == [
        [f"t{i}" for i in range(0, 10)],
        [f"t{i}" for i in range(10, 20)],
        [f"t{i}" for i in range(20, 25)],
    ]
    # One assignment per batch: every item shares the batch's fencing token.
    for batch in batches(h.log):
        tokens = {
            e.fencing_token for e in of(h.log, ev.TaskAssigned) if e.batch_id == batch.batch_id
        }
        assert tokens == {batch.fencing_token}
    assert len(h.state.sessions["s1"].units) == 3  # a batch is one unit of capacity


def test_a_closed_batch_waits_for_capacity() -> None:
    h = Harness()
    for i in range(3):
        h.do(submit(f"t{i}", operation="tag_add"), at=i)
    assert h.tick(5_000) == []  # closed, but no session
    events = h.do(register("s1"), at=6_000)
    (batch,) = batches(events)
    assert (batch.task_ids, batch.session_id, batch.closed_by) == (
        ["t0", "t1", "t2"],
        "s1",
        "window",
    )
    assert {h.status(f"t{i}") for i in range(3)} == {Status.ASSIGNED}


def test_a_batch_occupies_one_unit_and_blocks_other_work_on_a_full_session() -> None:
    h = Harness().given(register("s1", max_concurrent=1))
    for i in range(10):
        h.do(submit(f"t{i}", operation="tag_add"))
    h.do(submit("single", operation="workflow_trigger"))
    assert h.status("single") == Status.QUEUED
    assert list(h.state.sessions["s1"].units) == ["b:b-A-1"]


def test_batches_are_per_client_and_operation_and_never_for_unbatchable_work() -> None:
    h = Harness().given(
        register("a", client="A", max_concurrent=5), register("b", client="B", max_concurrent=5)
    )
    h.do(submit("a1", operation="tag_add", client="A"))
    h.do(submit("a2", operation="tag_remove", client="A"))
    h.do(submit("b1", operation="tag_add", client="B"))
    h.do(submit("solo", operation="pipeline_update", client="A"))
    assert of(h.log, ev.TaskBatched)[-1].task_id == "b1"
    assert "solo" not in {e.task_id for e in of(h.log, ev.TaskBatched)}
    events = h.tick(2_000)
    assert sorted((b.client_id, b.operation, tuple(b.task_ids)) for b in batches(events)) == [
        ("A", "tag_add", ("a1",)),
        ("A", "tag_remove", ("a2",)),
        ("B", "tag_add", ("b1",)),
    ]
    assert {(b.client_id, b.session_id) for b in batches(events)} == {("A", "a"), ("B", "b")}


def test_an_item_arriving_after_the_window_starts_a_new_batch() -> None:
    h = Harness()
    h.do(submit("t0", operation="tag_add"), at=0)
    h.do(submit("t1", operation="tag_add"), at=2_500)
    assert [e.batch_id for e in of(h.log, ev.TaskBatched)] == ["b-A-1", "b-A-2"]


def dispatched_batch(h: Harness, count: int) -> ev.BatchProcessed:
    h.given(register("s1", max_concurrent=2))
    for i in range(count):
        h.do(submit(f"t{i}", operation="tag_add"), at=i)
    h.tick(2_000)
    return batches(h.log)[-1]


def test_batch_result_is_consolidated_and_failed_items_retry_alone() -> None:
    h = Harness()
    batch = dispatched_batch(h, 3)
    result = c.ReportResult(
        client_id="A",
        batch_id=batch.batch_id,
        session_id="s1",
        fencing_token=batch.fencing_token,
        success=False,
        items=[
            c.ItemResult(task_id="t0", success=True, output={"tag": "ok"}),
            c.ItemResult(task_id="t1", success=False, error="contact not found"),
            c.ItemResult(task_id="t2", success=True, output={"tag": "ok2"}),
        ],
        execution_time_ms=700,
    )
    events = h.do(result, at=2_500)
    assert names(events) == [
        "BatchResultConsolidated",
        "TaskCompleted",
        "TaskAttemptFailed",
        "TaskRetryScheduled",
        "TaskCompleted",
    ]
    (summary,) = of(events, ev.BatchResultConsolidated)
    assert (summary.success_count, summary.failure_count) == (2, 1)
    assert summary.consolidated_output == {
        "t0": {"tag": "ok"},
        "t1": {"error": "contact not found"},
        "t2": {"tag": "ok2"},
    }
    assert h.state.sessions["s1"].units == {}
    assert h.state.batches == {}
    retry = h.retry_due("t1")
    assert names(retry) == ["TaskRetrying", "TaskQueued", "TaskAssigned"]
    assert of(retry, ev.TaskAssigned)[0].batch_id is None  # alone, not re-batched
    # The same result delivered again is recorded and ignored.
    assert set(names(h.do(result))) == {"ResultIgnored"}


def test_a_batch_level_report_covers_every_item_and_missing_items_fail() -> None:
    h = Harness()
    batch = dispatched_batch(h, 2)
    whole = c.ReportResult(
        client_id="A", batch_id=batch.batch_id, fencing_token=batch.fencing_token, success=True
    )
    assert names(h.do(whole)) == ["BatchResultConsolidated", "TaskCompleted", "TaskCompleted"]
    h2 = Harness()
    batch2 = dispatched_batch(h2, 2)
    partial = c.ReportResult(
        client_id="A",
        batch_id=batch2.batch_id,
        fencing_token=batch2.fencing_token,
        success=True,
        items=[c.ItemResult(task_id="t0", success=True)],
    )
    events = h2.do(partial)
    assert of(events, ev.TaskAttemptFailed)[0].error == "no result reported for this item"


def test_a_batch_timing_out_fails_every_item_once() -> None:
    h = Harness(config(default_timeout_ms=10_000))
    batch = dispatched_batch(h, 2)
    # Its items may run one after another: the second gets the catalog's expected duration.
    due = 2_000 + 10_000 + load_catalog()["tag_add"].expected_duration_ms
    assert {a.deadline_at_ms for a in of(h.log, ev.TaskAssigned)} == {due}
    assert names(h.tick(due - 1)) == []
    events = h.tick(due)
    assert names(events) == [
        "BatchResultConsolidated",
        "SessionHealthChanged",
        "TaskTimedOut",
        "TaskAttemptFailed",
        "TaskRetryScheduled",
        "TaskTimedOut",
        "TaskAttemptFailed",
        "TaskRetryScheduled",
    ]
    late = c.ReportResult(
        client_id="A", batch_id=batch.batch_id, fencing_token=batch.fencing_token, success=True
    )
    # The batch is gone and the report names no items: refused, nothing changes.
    (refused,) = h.do(late)
    assert (
        isinstance(refused, ev.CommandRejected)
        and refused.reason == f"unknown batch {batch.batch_id}"
    )
    assert names(
        h.do(late.model_copy(update={"items": [c.ItemResult(task_id="t0", success=True)]}))
    ) == ["ResultIgnored"]
