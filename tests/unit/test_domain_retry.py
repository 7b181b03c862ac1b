"""Retries with backoff, permanent failure with the attempt history, timeouts and fencing."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from streams.domain import Status
from streams.domain.retry import backoff_ms
from tests.support.gwt import Harness, config, names, of, register, submit

OP = "workflow_trigger"


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff_ms(n, 1000, 32_000) for n in range(1, 9)] == [
        1000, 2000, 4000, 8000, 16_000, 32_000, 32_000, 32_000,
    ]  # fmt: skip
    assert backoff_ms(500, 1000, 32_000) == 32_000


def test_three_retries_at_1_2_4_seconds_then_failed_and_dead_lettered_with_4_attempts() -> None:
    # A pool operation: no session health gets in the way of the retries.
    h = Harness().given(submit("t1", operation="integration_sync"))
    now = 0
    delays = []
    for attempt in range(1, 4):
        now += 100
        events = h.fail("t1", error=f"err{attempt}", at=now)
        assert names(events)[0] == "TaskAttemptFailed"
        (scheduled,) = of(events, ev.TaskRetryScheduled)
        assert scheduled.attempt == attempt + 1 and scheduled.error == f"err{attempt}"
        assert scheduled.due_at_ms == now + scheduled.delay_ms
        assert scheduled.tier_ms == scheduled.delay_ms
        delays.append(scheduled.delay_ms)
        assert h.status("t1") == Status.RETRY_SCHEDULED
        retry = h.retry_due("t1")
        now = scheduled.due_at_ms
        assert names(retry) == ["TaskRetrying", "TaskQueued", "TaskAssigned"]
        assert of(retry, ev.TaskAssigned)[0].attempt == attempt + 1
    assert delays == [1000, 2000, 4000]
    events = h.fail("t1", error="err4", at=now + 100)
    failed = of(events, ev.TaskFailed)[0]
    dead = of(events, ev.TaskDeadLettered)[0]
    assert names(events)[-2:] == ["TaskFailed", "TaskDeadLettered"]
    assert failed.attempt == 4 and failed.error == "err4" and failed.reason == "retries exhausted"
    assert [(a.attempt, a.error, a.session_id) for a in failed.attempts] == [
        (1, "err1", None),
        (2, "err2", None),
        (3, "err3", None),
        (4, "err4", None),
    ]
    assert dead.attempts == failed.attempts
    assert dead.reason == "retries exhausted after 4 attempts: err4"
    assert h.status("t1") == Status.FAILED


def test_a_failing_session_loses_the_retry_to_a_healthy_one() -> None:
    h = Harness().given(register("s1"), register("s2"), submit("t1", operation=OP))
    first = of(h.log, ev.TaskAssigned)[0].session_id
    h.fail("t1")
    (again,) = of(h.retry_due("t1"), ev.TaskAssigned)
    assert {first, again.session_id} == {"s1", "s2"}


def test_fail_fail_succeed_completes_on_the_third_attempt() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    for _ in range(2):
        h.fail("t1")
        h.retry_due("t1")
    (done,) = of(h.succeed("t1", output={"id": 7}), ev.TaskCompleted)
    assert (done.attempt, done.output, done.session_id) == (3, {"id": 7}, "s1")
    assert len(h.record("t1").failures) == 2


def test_max_retries_zero_fails_at_once() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP, max_retries=0))
    events = h.fail("t1")
    assert of(events, ev.TaskRetryScheduled) == []
    assert len(of(events, ev.TaskFailed)[0].attempts) == 1


def test_stale_and_duplicate_retry_due_change_nothing() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    h.fail("t1")
    due = h.record("t1").due_at_ms
    assert due is not None
    old = c.RetryDue(client_id="A", task_id="t1", attempt=1, due_at_ms=due)
    h.when(old).then()
    fresh = c.RetryDue(client_id="A", task_id="t1", attempt=2, due_at_ms=due)
    assert names(h.do(fresh, at=due)) == ["TaskRetrying", "TaskQueued", "TaskAssigned"]
    h.when(fresh).then()


def test_timeout_takes_the_retry_path_and_the_late_result_is_ignored() -> None:
    h = Harness(config(default_timeout_ms=5_000)).given(register("s1"), submit("t1", operation=OP))
    old_token = h.token("t1")
    assert h.tick(4_999) == []
    events = h.tick(5_000)
    assert names(events) == [
        "TaskTimedOut",
        "TaskAttemptFailed",
        "SessionHealthChanged",
        "TaskRetryScheduled",
    ]
    assert of(events, ev.TaskAttemptFailed)[0].error == "timed out after 5000 ms"
    h.retry_due("t1")
    assert h.token("t1") != old_token
    late = c.ReportResult(client_id="A", task_id="t1", fencing_token=old_token, success=True)
    h.when(late, at=7_000).then(
        ev.ResultIgnored(
            client_id="A",
            task_id="t1",
            occurred_at_ms=7_000,
            fencing_token=old_token,
            current_fencing_token=h.token("t1"),
            reason="stale fencing token",
        )
    )
    assert h.status("t1") == Status.ASSIGNED


def test_a_duplicate_result_for_a_finished_attempt_is_ignored() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    token = h.token("t1")
    h.succeed("t1")
    again = c.ReportResult(client_id="A", task_id="t1", fencing_token=token, success=False)
    (ignored,) = h.do(again)
    assert isinstance(ignored, ev.ResultIgnored)
    assert ignored.reason == "attempt already finished (task completed)"
    assert h.status("t1") == Status.COMPLETED


def test_fencing_tokens_grow_per_partition() -> None:
    h = Harness().given(
        register("s1", max_concurrent=5), register("s2", client="B", max_concurrent=5)
    )
    for i in range(3):
        h.do(submit(f"a{i}", operation=OP, client="A"))
        h.do(submit(f"b{i}", operation=OP, client="B"))
    assert [e.fencing_token for e in of(h.log, ev.TaskAssigned)] == [1, 2, 3, 4, 5, 6]


def test_started_and_progress_need_the_current_token() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    token = h.token("t1")
    start = c.TaskStarted(client_id="A", task_id="t1", fencing_token=token)
    assert names(h.do(start)) == ["TaskStartedEvent"]
    assert h.status("t1") == Status.IN_PROGRESS
    h.when(start).then()  # redelivered
    progress = c.ReportProgress(client_id="A", task_id="t1", fencing_token=token, progress=0.5)
    assert names(h.do(progress)) == ["TaskProgressed"]
    stale = c.ReportProgress(client_id="A", task_id="t1", fencing_token=token + 7, progress=0.9)
    assert names(h.do(stale)) == ["ResultIgnored"]
    assert h.record("t1").progress == 0.5
    (unknown,) = h.do(c.TaskStarted(client_id="A", task_id="ghost", fencing_token=1))
    assert isinstance(unknown, ev.TaskRejected) and unknown.command == "TaskStarted"


def test_a_result_without_task_or_batch_is_refused() -> None:
    (refused,) = Harness().do(c.ReportResult(client_id="A", fencing_token=1, success=True))
    assert isinstance(refused, ev.CommandRejected)
