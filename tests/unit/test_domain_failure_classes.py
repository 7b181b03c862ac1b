"""Failure classes: permanent failures end a task at once, only session faults lower health,
a Retry-After stretches the retry delay, and batches follow the same rules per item."""

from __future__ import annotations

import pickle

from schemas import commands as c
from schemas import events as ev
from streams.domain import Status
from streams.domain.failure_classes import PERMANENT_FAILURE
from streams.state_codec import dump_all, load_state
from tests.support.gwt import Harness, names, of, register, submit

OP = "workflow_trigger"  # needs a session, not batchable


def fail(
    h: Harness, task_id: str, failure_class: str | None, retry_after_ms: int | None = None
) -> list[ev.Event]:
    return h.do(
        c.ReportResult(
            client_id="A",
            task_id=task_id,
            fencing_token=h.token(task_id),
            success=False,
            error="HTTP 400: bad phone number",
            failure_class=failure_class,
            retry_after_ms=retry_after_ms,
        )
    )


def running(h: Harness, task_id: str, max_retries: int = 3) -> None:
    h.do(submit(task_id, operation=OP, max_retries=max_retries))
    assert h.status(task_id) == Status.ASSIGNED


def test_a_permanent_failure_ends_the_task_after_one_attempt_and_spares_the_session() -> None:
    h = Harness().given(register("s1", max_concurrent=3))
    running(h, "t1")
    events = fail(h, "t1", "permanent")
    assert names(events) == ["TaskAttemptFailed", "TaskFailed", "TaskDeadLettered"]
    assert of(events, ev.TaskAttemptFailed)[0].failure_class == "permanent"
    failed = of(events, ev.TaskFailed)[0]
    assert (failed.reason, failed.error, failed.attempt) == (
        PERMANENT_FAILURE,
        "HTTP 400: bad phone number",
        1,
    )
    dead = of(events, ev.TaskDeadLettered)[0]
    assert "not retried" in dead.reason and "bad phone number" in dead.reason
    assert h.status("t1") == Status.FAILED
    session = h.state.sessions["s1"]
    assert (session.score, session.failures, session.circuit) == (1.0, 0, "closed")


def test_many_permanent_failures_never_open_the_circuit() -> None:
    h = Harness().given(register("s1", max_concurrent=1))
    for i in range(5):
        running(h, f"t{i}")
        fail(h, f"t{i}", "permanent")
    assert of(h.log, ev.SessionHealthChanged) == []
    assert h.state.sessions["s1"].score == 1.0


def test_a_retryable_failure_retries_without_blaming_the_session() -> None:
    h = Harness().given(register("s1"))
    running(h, "t1")
    events = fail(h, "t1", "retryable")
    assert names(events) == ["TaskAttemptFailed", "TaskRetryScheduled"]
    assert h.state.sessions["s1"].score == 1.0


def test_a_retry_after_is_the_least_delay_before_the_retry() -> None:
    h = Harness().given(register("s1"))
    running(h, "t1")
    events = fail(h, "t1", "retryable", retry_after_ms=45_000)
    retry = of(events, ev.TaskRetryScheduled)[0]
    assert retry.delay_ms == 45_000 and retry.due_at_ms == h.now + 45_000
    assert of(events, ev.TaskAttemptFailed)[0].retry_after_ms == 45_000
    # A Retry-After shorter than the backoff leaves the backoff.
    h2 = Harness().given(register("s1"))
    running(h2, "t1")
    assert of(fail(h2, "t1", "retryable", retry_after_ms=10), ev.TaskRetryScheduled)[
        0
    ].delay_ms == (h2.config.retry_base_ms)


def test_session_faults_and_unclassified_failures_lower_health() -> None:
    for failure_class in ("session", None):
        h = Harness().given(register("s1"))
        running(h, "t1")
        events = fail(h, "t1", failure_class)
        assert of(events, ev.TaskAttemptFailed)[0].failure_class == "session"
        assert h.state.sessions["s1"].score == 0.6
        assert of(events, ev.SessionHealthChanged)[0].status == "degraded"


def test_an_older_attempt_failed_record_without_a_class_still_lowers_health() -> None:
    h = Harness().given(register("s1"))
    running(h, "t1")
    h.apply(
        [
            ev.TaskAttemptFailed(
                client_id="A", task_id="t1", occurred_at_ms=1, attempt=1, session_id="s1", error="x"
            )
        ]
    )
    assert h.state.sessions["s1"].score == 0.6


def batch_of(h: Harness, count: int) -> ev.BatchProcessed:
    h.given(register("s1", max_concurrent=2))
    for i in range(count):
        h.do(submit(f"b{i}", operation="tag_add"), at=i)
    h.tick(2_000)
    return of(h.log, ev.BatchProcessed)[-1]


def report_batch(h: Harness, batch: ev.BatchProcessed, *classes: str | None) -> list[ev.Event]:
    return h.do(
        c.ReportResult(
            client_id="A",
            batch_id=batch.batch_id,
            fencing_token=batch.fencing_token,
            success=False,
            items=[
                c.ItemResult(task_id=t, success=False, error="nope", failure_class=k)
                for t, k in zip(batch.task_ids, classes, strict=True)
            ],
        )
    )


def test_a_batch_whose_items_fail_permanently_fails_them_and_leaves_health_alone() -> None:
    h = Harness()
    batch = batch_of(h, 2)
    events = report_batch(h, batch, "permanent", "permanent")
    assert of(events, ev.BatchResultConsolidated)[0].health_effect == "none"
    assert names(events).count("TaskDeadLettered") == 2
    assert of(events, ev.SessionHealthChanged) == []
    assert h.state.sessions["s1"].score == 1.0
    assert {h.status(t) for t in batch.task_ids} == {Status.FAILED}


def test_a_batch_failing_by_the_session_lowers_health_and_retries_what_can_retry() -> None:
    h = Harness()
    batch = batch_of(h, 2)
    events = report_batch(h, batch, "session", "permanent")
    assert of(events, ev.BatchResultConsolidated)[0].health_effect == "failure"
    assert h.state.sessions["s1"].score == 0.6
    assert h.status(batch.task_ids[0]) == Status.RETRY_SCHEDULED
    assert h.status(batch.task_ids[1]) == Status.FAILED


def test_an_unknown_failure_class_counts_as_the_session_fault_it_was_before_classes() -> None:
    h = Harness().given(register("s1"))
    running(h, "t1")
    events = fail(h, "t1", "fatal")
    assert of(events, ev.TaskAttemptFailed)[0].failure_class == "session"
    assert names(events) == ["TaskAttemptFailed", "SessionHealthChanged", "TaskRetryScheduled"]


def test_a_session_stored_before_incarnations_loads_with_none() -> None:
    h = Harness().given(register("s1"))
    stored = dict(dump_all(h.state))
    old = h.state.sessions["s1"].clone()
    del old.incarnation  # what a record pickled before the field holds
    stored[b"session/s1"] = pickle.dumps(old)
    loaded = load_state(stored.items())
    assert loaded.sessions["s1"].incarnation is None
    assert loaded.sessions["s1"].score == 1.0
