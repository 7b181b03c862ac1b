"""Submission, review, scheduling, dependencies, expedite and cancellation."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from streams.domain import Status
from tests.support.gwt import Harness, names, of, register, submit

# Non-batchable session operations, one per priority, so tasks queue individually.
CRITICAL_OP = "workflow_trigger"
HIGH_OP = "pipeline_update"
LOW_OP = "conversation_read"
BACKGROUND_OP = "report_generate"


def test_unknown_operation_is_rejected_with_the_reason_and_not_kept() -> None:
    h = Harness()
    h.when(submit("t1", operation="teleport"), at=7).then(
        ev.TaskRejected(
            client_id="A",
            task_id="t1",
            occurred_at_ms=7,
            reason="unknown operation 'teleport'",
            command="SubmitTask",
            operation="teleport",
            submit=c.submit_document(submit("t1", operation="teleport")),
        )
    )
    assert "t1" not in h.state.tasks


def test_invalid_fields_that_bypassed_validation_are_rejected() -> None:
    bad = c.SubmitTask.model_construct(
        client_id="A", task_id="t1", operation=CRITICAL_OP, payload={}, priority=9,
        max_retries=None, timeout_ms=None, scheduled_for_ms=None, requires_review=False,
        depends_on=[], capabilities=[],
    )  # fmt: skip
    (rejected,) = Harness().do(bad)
    assert isinstance(rejected, ev.TaskRejected)
    assert "invalid priority 9" in rejected.reason


def test_duplicate_submit_with_the_same_spec_is_a_no_op() -> None:
    h = Harness().given(submit("t1", payload={"a": 1}))
    h.when(submit("t1", payload={"a": 1}), at=99).then()


def test_duplicate_task_id_with_another_spec_is_rejected_and_the_original_kept() -> None:
    h = Harness().given(submit("t1", payload={"a": 1}))
    h.when(submit("t1", payload={"a": 2})).then(
        ev.TaskRejected(
            client_id="A",
            task_id="t1",
            occurred_at_ms=0,
            reason="duplicate task_id with a different specification",
            operation="contact_update",
            submit=c.submit_document(submit("t1", payload={"a": 2})),
        )
    )
    assert h.record("t1").payload == {"a": 1}


def test_duplicate_of_a_finished_task_is_still_recognised() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=CRITICAL_OP, payload={"a": 1}))
    h.succeed("t1")
    assert h.record("t1").payload is None  # terminal tasks keep no payload
    h.when(submit("t1", operation=CRITICAL_OP, payload={"a": 1})).then()
    assert names(h.do(submit("t1", operation=CRITICAL_OP, payload={"a": 2}))) == ["TaskRejected"]


def test_priority_comes_from_the_catalog_unless_overridden() -> None:
    h = Harness().given(
        submit("t1", operation=BACKGROUND_OP), submit("t2", operation=BACKGROUND_OP, priority=2)
    )
    assert h.record("t1").priority == 5
    assert h.record("t2").priority == 2
    assert h.record("t2").explicit_priority


def test_review_then_approve_queues_and_dispatches() -> None:
    h = Harness().given(register("s1"))
    h.when(submit("t1", operation=CRITICAL_OP, requires_review=True), at=1).then_names(
        "TaskAccepted", "TaskPendingReview"
    )
    assert h.status("t1") == Status.PENDING_REVIEW
    h.when(c.ApproveTask(client_id="A", task_id="t1", reviewer="ann"), at=2).then_names(
        "TaskApproved", "TaskQueued", "ClientRateLimit", "TaskAssigned"
    )
    assert of(h.log, ev.TaskApproved)[0].reviewer == "ann"
    assert of(h.log, ev.TaskQueued)[0].reason == "approved"


def test_reviewer_rejection_is_terminal() -> None:
    h = Harness().given(submit("t1", requires_review=True))
    h.when(c.RejectTask(client_id="A", task_id="t1", reviewer="bob", reason="spam"), at=3).then(
        ev.TaskRejected(
            client_id="A",
            task_id="t1",
            occurred_at_ms=3,
            reason="spam",
            command="RejectTask",
            reviewer="bob",
        )
    )
    assert h.status("t1") == Status.REJECTED
    (refused,) = h.do(c.ApproveTask(client_id="A", task_id="t1"))
    assert isinstance(refused, ev.TaskRejected) and refused.command == "ApproveTask"
    assert "not pending review" in refused.reason
    assert h.status("t1") == Status.REJECTED


def test_reject_of_a_task_not_in_review_is_a_command_rejection() -> None:
    h = Harness().given(submit("t1"))
    (refused,) = h.do(c.RejectTask(client_id="A", task_id="t1"))
    assert isinstance(refused, ev.CommandRejected) and refused.command == "RejectTask"
    assert h.status("t1") == Status.BATCHED


def test_scheduled_task_waits_for_its_due_time() -> None:
    h = Harness().given(register("s1"))
    h.when(submit("t1", operation=CRITICAL_OP, scheduled_for_ms=60_000), at=1_000).then_names(
        "TaskAccepted", "TaskScheduled"
    )
    assert of(h.log, ev.TaskScheduled)[0].due_at_ms == 60_000
    due = c.RetryDue(client_id="A", task_id="t1", attempt=1, due_at_ms=60_000, kind="scheduled")
    h.when(due, at=60_000).then_names("TaskQueued", "ClientRateLimit", "TaskAssigned")
    assert of(h.log, ev.TaskQueued)[0].reason == "scheduled"
    h.when(due, at=60_001).then()  # a redelivered RetryDue changes nothing


def test_scheduled_in_the_past_queues_at_once() -> None:
    Harness().when(submit("t1", operation=CRITICAL_OP, scheduled_for_ms=5), at=10).then_names(
        "TaskAccepted", "TaskQueued"
    )


def test_dependencies_wait_until_all_completed() -> None:
    h = Harness().given(
        register("s1", max_concurrent=5),
        submit("a", operation=CRITICAL_OP),
        submit("b", operation=CRITICAL_OP),
    )
    h.when(submit("c", operation=CRITICAL_OP, depends_on=["a", "b"])).then_names(
        "TaskAccepted", "TaskWaiting"
    )
    assert of(h.log, ev.TaskWaiting)[0].waiting_on == ["a", "b"]
    assert names(h.succeed("a")) == ["TaskCompleted"]
    assert h.status("c") == Status.WAITING
    events = h.succeed("b")
    assert names(events) == ["TaskCompleted", "TaskQueued", "TaskAssigned"]
    assert of(events, ev.TaskQueued)[0].reason == "dependencies_met"


def test_dependency_already_completed_does_not_wait() -> None:
    h = Harness().given(register("s1"), submit("a", operation=CRITICAL_OP))
    h.succeed("a")
    h.when(submit("b", operation=CRITICAL_OP, depends_on=["a"])).then_names(
        "TaskAccepted", "TaskQueued", "TaskAssigned"
    )


def test_failed_dependency_fails_the_chain_of_dependents() -> None:
    h = Harness().given(
        register("s1"),
        submit("a", operation=CRITICAL_OP, max_retries=0),
        submit("b", operation=CRITICAL_OP, depends_on=["a"]),
        submit("c", operation=CRITICAL_OP, depends_on=["b"]),
    )
    events = h.fail("a")
    assert names(events) == [
        "TaskAttemptFailed",
        "SessionHealthChanged",
        "TaskFailed",
        "TaskDeadLettered",
        "TaskFailed",
        "TaskDeadLettered",
        "TaskFailed",
        "TaskDeadLettered",
    ]
    failed = of(events, ev.TaskFailed)
    assert [(f.task_id, f.reason) for f in failed] == [
        ("a", "retries exhausted"),
        ("b", "dependency a failed"),
        ("c", "dependency b failed"),
    ]
    assert all(h.status(t) == Status.FAILED for t in "abc")


def test_cancelled_dependency_fails_dependents_and_late_submits() -> None:
    h = Harness().given(
        submit("a", operation=CRITICAL_OP), submit("b", operation=CRITICAL_OP, depends_on=["a"])
    )
    assert names(h.do(c.CancelTask(client_id="A", task_id="a"))) == [
        "TaskCancelled",
        "TaskFailed",
        "TaskDeadLettered",
    ]
    events = h.do(submit("c", operation=CRITICAL_OP, depends_on=["a"]))
    assert names(events) == ["TaskAccepted", "TaskFailed", "TaskDeadLettered"]
    assert of(events, ev.TaskFailed)[0].reason == "dependency a failed"


def test_unknown_dependency_is_waited_for_until_it_arrives_and_completes() -> None:
    h = Harness().given(register("s1"), submit("b", operation=CRITICAL_OP, depends_on=["a"]))
    assert h.status("b") == Status.WAITING
    h.do(submit("a", operation=CRITICAL_OP))
    assert names(h.succeed("a")) == ["TaskCompleted", "TaskQueued", "TaskAssigned"]


def test_dependency_cycles_and_foreign_dependencies_are_rejected() -> None:
    h = Harness().given(
        submit("a", operation=CRITICAL_OP, depends_on=["b"]), submit("x", client="B")
    )
    (cycle,) = h.do(submit("b", operation=CRITICAL_OP, depends_on=["a"]))
    assert isinstance(cycle, ev.TaskRejected) and cycle.reason == "dependency cycle"
    (itself,) = h.do(submit("c", operation=CRITICAL_OP, depends_on=["c"]))
    assert isinstance(itself, ev.TaskRejected) and "itself" in itself.reason
    (foreign,) = h.do(submit("d", operation=CRITICAL_OP, depends_on=["x"]))
    assert isinstance(foreign, ev.TaskRejected) and "another client" in foreign.reason


def test_cancel_a_queued_task() -> None:
    h = Harness().given(submit("t1", operation=CRITICAL_OP))
    h.when(c.CancelTask(client_id="A", task_id="t1", reason="no longer needed"), at=4).then(
        ev.TaskCancelled(client_id="A", task_id="t1", occurred_at_ms=4, reason="no longer needed")
    )
    assert h.state.indices()["lanes"] == {}
    h.do(register("s1"))
    assert of(h.log, ev.TaskAssigned) == []


def test_cancel_an_assigned_task_tells_the_session_and_frees_capacity() -> None:
    h = Harness().given(
        register("s1"), submit("t1", operation=CRITICAL_OP), submit("t2", operation=CRITICAL_OP)
    )
    token = h.token("t1")
    events = h.do(c.CancelTask(client_id="A", task_id="t1"), at=5)
    assert events[0] == ev.TaskCancelled(
        client_id="A", task_id="t1", occurred_at_ms=5, session_id="s1", fencing_token=token
    )
    assert names(events[1:]) == ["TaskAssigned"] and events[1].task_id == "t2"  # type: ignore[attr-defined]
    # The executor's late result for the cancelled task is recorded and ignored.
    late = c.ReportResult(client_id="A", task_id="t1", fencing_token=token, success=True)
    (ignored,) = h.do(late)
    assert isinstance(ignored, ev.ResultIgnored)


def test_cancel_a_batched_task_removes_it_from_the_batch() -> None:
    h = Harness().given(submit("t1", operation="tag_add"), submit("t2", operation="tag_add"))
    h.do(c.CancelTask(client_id="A", task_id="t1"))
    h.do(register("s1"))
    events = h.tick(2_000)
    (batch,) = of(events, ev.BatchProcessed)
    assert batch.task_ids == ["t2"]


def test_cancel_of_finished_or_unknown_tasks_is_rejected() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=CRITICAL_OP))
    h.succeed("t1")
    (done,) = h.do(c.CancelTask(client_id="A", task_id="t1"))
    assert isinstance(done, ev.TaskRejected) and done.reason == "task already completed"
    assert done.command == "CancelTask"
    (unknown,) = h.do(c.CancelTask(client_id="A", task_id="nope"))
    assert isinstance(unknown, ev.TaskRejected) and unknown.reason == "unknown task"
    assert h.status("t1") == Status.COMPLETED


def test_other_clients_tasks_are_invisible() -> None:
    h = Harness().given(submit("t1", client="A"))
    (refused,) = h.do(c.CancelTask(client_id="B", task_id="t1"))
    assert isinstance(refused, ev.TaskRejected) and refused.reason == "unknown task"
    assert h.status("t1") == Status.BATCHED


def test_expedite_moves_a_task_ahead_of_everything() -> None:
    h = Harness().given(
        submit("hi", operation=HIGH_OP),
        submit("bg", operation=BACKGROUND_OP),
    )
    h.when(c.ExpediteTask(client_id="A", task_id="bg"), at=3).then(
        ev.TaskExpedited(client_id="A", task_id="bg", occurred_at_ms=3, priority=1)
    )
    h.when(c.ExpediteTask(client_id="A", task_id="bg")).then()  # already expedited
    events = h.do(register("s1"))
    assert [e.task_id for e in of(events, ev.TaskAssigned)] == ["bg"]
    assert of(events, ev.TaskAssigned)[0].priority == 1
