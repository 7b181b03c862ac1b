"""Batch jobs in the decider: parallelism, release on terminal children, progress, results."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import commands as c
from schemas import events as ev
from schemas.states import TERMINAL_STATES
from streams.state_codec import load_state
from tests.support.batch_jobs import POOL_OP, job
from tests.support.gwt import Harness, config, names, of, register, submit

SESSION_OP = "workflow_trigger"  # needs a session, not batchable
BATCH_OP = "contact_update"  # needs a session, batchable


def unfinished_children(h: Harness, batch_job_id: str = "J") -> list[str]:
    ids = [t for t in h.state.tasks if t.startswith(batch_job_id + ".")]
    return [t for t in ids if h.status(t) not in TERMINAL_STATES]


def progress(h: Harness, batch_job_id: str = "J") -> list[tuple[int, int, int]]:
    return [
        (e.processed, e.succeeded, e.failed)
        for e in of(h.log, ev.BatchJobProgressed)
        if e.batch_job_id == batch_job_id
    ]


def test_a_job_is_accepted_and_releases_parallelism_children() -> None:
    h = Harness()
    h.when(job(n=5, parallelism=2), at=10).then_names(
        "BatchJobAccepted",
        "BatchJobProgressed",
        "TaskAccepted",
        "TaskQueued",
        "TaskAccepted",
        "TaskQueued",
        "ClientRateLimit",
        "TaskAssigned",
        "TaskAssigned",
    )
    accepted = of(h.log, ev.BatchJobAccepted)[0]
    assert [ch.task_id for ch in accepted.children] == [f"J.{i}" for i in range(5)]
    assert accepted.total == 5 and accepted.session_required is False
    first = of(h.log, ev.BatchJobProgressed)[0]
    assert (first.processed, first.released, first.next_index) == (0, ["J.0", "J.1"], 2)
    assert h.record("J.0").payload == {"n": 0}
    assert unfinished_children(h) == ["J.0", "J.1"]
    assert h.state.batch_jobs["J"].running == {"J.0": 0, "J.1": 1}


def test_a_terminal_child_releases_the_next_item() -> None:
    h = Harness().given(job(n=3, parallelism=2), at=10)
    events = h.succeed("J.0", at=20, output={"ok": 0})
    assert names(events) == [
        "TaskCompleted",
        "BatchJobProgressed",
        "TaskAccepted",
        "TaskQueued",
        "TaskAssigned",
    ]
    step = of(events, ev.BatchJobProgressed)[0]
    assert (step.processed, step.succeeded, step.failed) == (1, 1, 0)
    assert step.finished == [
        ev.BatchJobItemResult(task_id="J.0", index=0, success=True, output={"ok": 0})
    ]
    assert step.released == ["J.2"]
    assert unfinished_children(h) == ["J.1", "J.2"]


def test_a_failing_child_keeps_its_slot_through_retries_then_counts_as_failed() -> None:
    h = Harness().given(job(n=3, parallelism=1, max_retries=1), at=0)
    first = h.fail("J.0", error="bad item", at=10)
    assert "BatchJobProgressed" not in names(first)  # a retry is coming: still running
    assert unfinished_children(h) == ["J.0"]
    h.retry_due("J.0")
    last = h.fail("J.0", error="bad item again", at=5_000)
    assert names(last)[:4] == [
        "TaskAttemptFailed",
        "TaskFailed",
        "TaskDeadLettered",
        "BatchJobProgressed",
    ]
    step = of(last, ev.BatchJobProgressed)[0]
    assert (step.processed, step.succeeded, step.failed) == (1, 0, 1)
    assert step.finished[0].error == "bad item again"
    assert step.released == ["J.1"]


def test_when_every_child_is_terminal_the_job_completes_with_counts_and_results() -> None:
    h = Harness().given(job(n=4, parallelism=2, max_retries=0), at=0)
    h.succeed("J.0", at=1, output={"v": 0})
    h.fail("J.1", error="e1", at=2)
    h.do(c.CancelTask(client_id="A", task_id="J.2", reason="not needed"), at=3)
    events = h.succeed("J.3", at=4, output={"v": 3})
    assert names(events)[-2:] == ["BatchJobProgressed", "BatchJobCompleted"]
    done = of(events, ev.BatchJobCompleted)[0]
    assert (done.status, done.total, done.succeeded, done.failed) == ("completed", 4, 2, 2)
    assert {r.task_id: (r.success, r.output, r.error) for r in done.results} == {
        "J.0": (True, {"v": 0}, None),
        "J.1": (False, {}, "e1"),
        "J.2": (False, {}, "cancelled: not needed"),
        "J.3": (True, {"v": 3}, None),
    }
    assert [r.index for r in done.results] == [0, 1, 2, 3]
    record = h.state.batch_jobs["J"]
    assert record.completed_at_ms == 4 and record.payloads is None and record.results == {}
    assert h.state.job_children == {}
    assert progress(h) == [(0, 0, 0), (1, 1, 0), (2, 1, 1), (3, 1, 2), (4, 2, 2)]


def test_a_job_where_every_child_fails_ends_failed() -> None:
    h = Harness().given(job(n=2, parallelism=2, max_retries=0), at=0)
    h.fail("J.0", at=1)
    h.fail("J.1", at=2)
    (done,) = of(h.log, ev.BatchJobCompleted)
    assert (done.status, done.succeeded, done.failed) == ("failed", 0, 2)


def test_session_children_respect_the_job_limit_not_only_the_session_capacity() -> None:
    h = Harness().given(register("s1", max_concurrent=10), at=0)
    h.do(job(n=6, parallelism=3, operation=SESSION_OP), at=1)
    assigned = of(h.log, ev.TaskAssigned)
    assert [a.task_id for a in assigned] == ["J.0", "J.1", "J.2"]
    assert all(a.session_id == "s1" for a in assigned)
    events = h.succeed("J.1", at=2)
    assert [a.task_id for a in of(events, ev.TaskAssigned)] == ["J.3"]


def test_batchable_children_join_a_batching_window() -> None:
    h = Harness(config(batch_window_ms=100)).given(register("s1", max_concurrent=5), at=0)
    h.do(job(n=5, parallelism=3, operation=BATCH_OP), at=1)
    assert [e.task_id for e in of(h.log, ev.TaskBatched)] == ["J.0", "J.1", "J.2"]
    (batch,) = of(h.tick(101), ev.BatchProcessed)
    assert batch.task_ids == ["J.0", "J.1", "J.2"]


def test_a_child_timing_out_in_a_tick_moves_the_job_on() -> None:
    h = Harness().given(job(n=2, parallelism=1, max_retries=0, timeout_ms=50), at=0)
    events = h.tick(60)
    assert "TaskTimedOut" in names(events)
    step = of(events, ev.BatchJobProgressed)[0]
    assert (step.failed, step.released) == (1, ["J.1"])
    assert h.record("J.1").status == "assigned"


def test_explicit_item_task_ids_are_used() -> None:
    items = [c.BatchJobItem(task_id="mine", payload={}), c.BatchJobItem(payload={"x": 1})]
    h = Harness().given(
        c.SubmitBatchJob(
            client_id="A", batch_job_id="J", operation=POOL_OP, items=items, parallelism=2
        ),
        at=0,
    )
    assert set(h.state.job_children) == {"mine", "J.1"}


def test_a_held_item_whose_id_was_taken_meanwhile_counts_as_failed() -> None:
    h = Harness().given(job(n=3, parallelism=1), at=0)
    h.do(submit("J.1", operation=POOL_OP), at=1)  # an unrelated task grabs a held id
    events = h.succeed("J.0", at=2)
    step = of(events, ev.BatchJobProgressed)[0]
    assert [(r.task_id, r.success) for r in step.finished] == [("J.0", True), ("J.1", False)]
    assert "taken" in (step.finished[1].error or "")
    assert step.released == ["J.2"] and step.next_index == 3


def test_invalid_jobs_are_rejected_with_a_reason() -> None:
    cases: list[tuple[c.SubmitBatchJob, str]] = [
        (job(operation="no_such_op"), "unknown operation"),
        (job(n=0), "at least one item"),
        (
            c.SubmitBatchJob(
                client_id="A",
                batch_job_id="J",
                operation=POOL_OP,
                items=[c.BatchJobItem(task_id="x"), c.BatchJobItem(task_id="x")],
            ),
            "appears twice",
        ),
        (
            c.SubmitBatchJob(
                client_id="A",
                batch_job_id="J",
                operation=POOL_OP,
                items=[c.BatchJobItem(task_id="")],
            ),
            "empty task_id",
        ),
        (job(capabilities=[""]), "empty capability"),
    ]
    for command, reason in cases:
        (rejected,) = Harness().when(command, at=0).events
        assert isinstance(rejected, ev.BatchJobRejected), rejected
        assert reason in rejected.reason, (reason, rejected.reason)


def test_an_item_id_that_already_exists_rejects_the_job() -> None:
    h = Harness().given(submit("J.3", operation=POOL_OP), at=0)
    (rejected,) = h.when(job(n=5), at=1).events
    assert isinstance(rejected, ev.BatchJobRejected) and "'J.3' already exists" in rejected.reason


def test_a_redelivered_submit_changes_nothing_and_a_different_one_is_refused() -> None:
    h = Harness().given(job(n=3, parallelism=1), at=0)
    h.when(job(n=3, parallelism=1), at=5).then()
    (rejected,) = h.when(job(n=3, parallelism=2), at=6).events
    assert isinstance(rejected, ev.BatchJobRejected) and "duplicate" in rejected.reason
    assert h.state.batch_jobs["J"].parallelism == 1


def test_a_full_job_queue_refuses_the_job() -> None:
    h = Harness(config(max_queued_per_client=1)).given(submit("t", operation=SESSION_OP), at=0)
    (rejected,) = h.when(job(), at=1).events
    assert isinstance(rejected, ev.BatchJobRejected) and "queue full" in rejected.reason


def test_state_round_trips_through_the_store_mid_job() -> None:
    store: dict[bytes, bytes] = {}

    def persist(h: Harness) -> None:
        """What the harness's store holds now (it writes each step's changes, incrementally)."""
        store.clear()
        store.update(h.store.data)

    h = Harness().given(register("s1", max_concurrent=4), at=0)
    h.do(job(n=6, parallelism=2, operation=SESSION_OP, max_retries=0), at=1)
    persist(h)
    h.succeed("J.0", at=2, output={"k": "v"})
    h.fail("J.1", at=3)
    persist(h)
    loaded = load_state(store.items())
    assert loaded == h.state
    assert loaded.indices() == h.state.indices()
    assert loaded.batch_jobs["J"].results == h.state.batch_jobs["J"].results
    assert h.replayed() == h.state  # the event log alone rebuilds it too
    # The reloaded state decides the rest of the job exactly like the live one.
    live = h.succeed("J.2", at=4)
    h.state = loaded
    h.log = h.log[: -len(live)]
    assert h.succeed("J.2", at=4) == live
    while unfinished_children(h):
        h.succeed(unfinished_children(h)[0], at=h.now + 1)
    persist(h)
    assert load_state(store.items()) == h.state
    assert h.state.batch_jobs["J"].completed_at_ms is not None


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    parallelism=st.integers(1, 5),
    choices=st.lists(st.tuples(st.integers(0, 10), st.sampled_from("sfc")), max_size=80),
)
def test_never_more_than_parallelism_unfinished_and_progress_only_grows(
    n: int, parallelism: int, choices: list[tuple[int, str]]
) -> None:
    h = Harness().given(job(n=n, parallelism=parallelism, max_retries=0), at=0)
    now = 1
    outcome: dict[str, bool] = {}
    for pick, action in [*choices, *[(0, "s")] * (n + 1)]:
        running = unfinished_children(h)
        assert len(running) <= parallelism
        assert len(running) == min(parallelism, n - len(outcome))
        if not running:
            break
        task_id = sorted(running)[pick % len(running)]
        if action == "s":
            h.succeed(task_id, at=now)
        elif action == "f":
            h.fail(task_id, at=now)
        else:
            h.do(c.CancelTask(client_id="A", task_id=task_id), at=now)
        outcome[task_id] = action == "s"
        now += 1
    steps = progress(h)
    assert steps == sorted(steps)
    (done,) = of(h.log, ev.BatchJobCompleted)
    assert done.succeeded == sum(outcome.values())
    assert done.failed == n - done.succeeded
    assert {r.task_id: r.success for r in done.results} == outcome
    assert h.replayed() == h.state
