"""Task management decisions: edit, archive, run now, input, defer, overdue, assignment."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from schemas import management_events as mev
from streams.domain import Status
from tests.support.gwt import Harness, of, register, submit

OP = "workflow_trigger"  # session operation, not batchable


def consistent(h: Harness) -> None:
    assert h.replayed() == h.state
    assert h.reloaded() == h.state


def test_an_edit_before_start_takes_effect_and_requeues() -> None:
    h = Harness().given(submit("t1", operation=OP, payload={"a": 1}))
    events = h.do(
        c.UpdateTask(
            client_id="A", task_id="t1", changed=["priority", "payload", "tags"],
            priority=5, payload={"a": 2}, tags=["x"],
        )
    )  # fmt: skip
    (updated,) = of(events, mev.TaskUpdated)
    assert updated.changed == ["priority", "payload", "tags"]
    (queued,) = of(events, ev.TaskQueued)
    assert (queued.priority, queued.reason) == (5, "updated")
    task = h.record("t1")
    assert (task.payload, task.priority, task.status) == ({"a": 2}, 5, Status.QUEUED)
    consistent(h)


def test_an_edit_after_start_is_refused() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    assert h.status("t1") == Status.ASSIGNED
    (refused,) = h.do(c.UpdateTask(client_id="A", task_id="t1", changed=["priority"], priority=5))
    assert isinstance(refused, ev.TaskRejected) and refused.command == "UpdateTask"
    assert "already started" in refused.reason
    assert h.record("t1").priority == 1  # workflow_trigger is critical


def test_an_edit_naming_no_editable_field_is_refused() -> None:
    h = Harness().given(submit("t1", operation=OP))
    (refused,) = h.do(c.UpdateTask(client_id="A", task_id="t1", changed=["operation"]))
    assert isinstance(refused, ev.TaskRejected) and refused.reason.startswith("changed:")


def test_a_new_start_time_moves_a_scheduled_task_and_the_old_timer_is_stale() -> None:
    h = Harness().given(submit("t1", operation=OP, scheduled_for_ms=1000), at=0)
    h.do(c.UpdateTask(client_id="A", task_id="t1", changed=["scheduled_for_ms"],
                      scheduled_for_ms=5000))  # fmt: skip
    assert (h.status("t1"), h.record("t1").due_at_ms) == (Status.SCHEDULED, 5000)
    assert h.tick(1000) == []
    assert h.status("t1") == Status.SCHEDULED
    assert of(h.tick(5000), ev.TaskQueued)[0].reason == "scheduled"


def test_archive_cancels_unfinished_work_then_archives() -> None:
    h = Harness().given(submit("t1", operation=OP))
    events = h.do(c.ArchiveTask(client_id="A", task_id="t1"))
    assert [type(e) for e in events] == [ev.TaskCancelled, mev.TaskArchived]
    task = h.record("t1")
    assert (task.status, task.archived) == (Status.CANCELLED, True)
    assert h.do(c.ArchiveTask(client_id="A", task_id="t1")) == []
    consistent(h)


def test_archive_of_a_finished_task_only_archives() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    h.succeed("t1")
    events = h.do(c.ArchiveTask(client_id="A", task_id="t1"))
    assert [type(e) for e in events] == [mev.TaskArchived]
    assert h.status("t1") == Status.COMPLETED


def test_run_starts_a_scheduled_task_now() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP, scheduled_for_ms=10_000), at=0)
    assert h.status("t1") == Status.SCHEDULED
    events = h.do(c.RunTask(client_id="A", task_id="t1"), at=5)
    assert isinstance(events[0], mev.TaskRunRequested) and events[0].from_status == "scheduled"
    assert h.status("t1") == Status.ASSIGNED
    assert not of(h.tick(10_000), ev.TaskAssigned)


def test_run_starts_a_retry_waiting_task_now() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    h.fail("t1")
    assert h.status("t1") == Status.RETRY_SCHEDULED
    h.do(c.RunTask(client_id="A", task_id="t1"))
    assert h.status("t1") == Status.ASSIGNED
    assert h.record("t1").attempt == 2


def test_run_refuses_a_task_waiting_on_dependencies() -> None:
    h = Harness().given(submit("t1", operation=OP, depends_on=["t0"]))
    assert h.status("t1") == Status.WAITING
    (refused,) = h.do(c.RunTask(client_id="A", task_id="t1"))
    assert isinstance(refused, ev.TaskRejected) and "t0" in refused.reason


def test_a_task_waits_for_input_and_resumes_with_the_answer_on_a_new_attempt() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP, payload={"q": 1}))
    token = h.token("t1")
    events = h.do(c.RequestInput(client_id="A", task_id="t1", fencing_token=token, prompt="Ok?"))
    (waiting,) = of(events, mev.TaskWaitingInput)
    assert waiting.prompt == "Ok?"
    assert h.status("t1") == Status.WAITING_INPUT
    assert h.state.sessions["s1"].units == {}
    events = h.do(c.ProvideInput(client_id="A", task_id="t1", input={"answer": "yes"}))
    (provided,) = of(events, mev.TaskInputProvided)
    assert provided.attempt == 2
    (assigned,) = of(events, ev.TaskAssigned)
    assert assigned.attempt == 2 and assigned.fencing_token > token
    task = h.record("t1")
    assert task.payload == {"q": 1, "input": {"answer": "yes"}}
    assert task.max_retries == 4  # the input round used up no retry
    consistent(h)


def test_input_for_a_task_not_waiting_is_refused() -> None:
    h = Harness().given(submit("t1", operation=OP))
    (refused,) = h.do(c.ProvideInput(client_id="A", task_id="t1", input={"a": 1}))
    assert isinstance(refused, ev.TaskRejected) and "not waiting for input" in refused.reason


def test_a_stale_request_for_input_is_ignored() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    (ignored,) = h.do(c.RequestInput(client_id="A", task_id="t1", fencing_token=999, prompt="?"))
    assert isinstance(ignored, ev.ResultIgnored)


def test_a_deferred_task_is_queued_again_at_its_time() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP), at=0)
    token = h.token("t1")
    h.do(c.DeferTask(client_id="A", task_id="t1", fencing_token=token, until_ms=60_000), at=10)
    assert (h.status("t1"), h.record("t1").due_at_ms) == (Status.DEFERRED, 60_000)
    assert h.tick(59_999) == []
    events = h.tick(60_000)
    assert of(events, ev.TaskQueued)[0].reason == "deferred"
    assert h.status("t1") == Status.ASSIGNED
    consistent(h)


def test_run_starts_a_deferred_task_now() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP), at=0)
    h.do(c.DeferTask(client_id="A", task_id="t1", fencing_token=h.token("t1"), until_ms=60_000))
    h.do(c.RunTask(client_id="A", task_id="t1"), at=20)
    assert h.status("t1") == Status.ASSIGNED


def test_an_unfinished_task_past_its_due_date_is_overdue_once() -> None:
    h = Harness().given(submit("t1", operation=OP, due_at_ms=1000), at=0)
    assert h.tick(999) == []
    (overdue,) = h.tick(1000)
    assert isinstance(overdue, mev.TaskOverdue) and overdue.status == Status.QUEUED
    assert h.record("t1").overdue
    assert h.tick(1001) == []
    consistent(h)


def test_a_task_finished_in_time_is_not_overdue() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP, due_at_ms=1000), at=0)
    h.succeed("t1", at=10)
    assert h.tick(1000) == []


def test_an_assigned_task_goes_only_to_its_agent() -> None:
    h = Harness().given(register("s1"), register("s2"))
    h.do(submit("t1", operation=OP, assigned_to=c.TaskAssignee(kind="agent", id="agent-s2")))
    assert h.record("t1").session_id == "s2"
    h.do(submit("t2", operation=OP, assigned_to=c.TaskAssignee(kind="session", id="s9")))
    assert h.status("t2") == Status.QUEUED  # no such session: it waits
    consistent(h)
