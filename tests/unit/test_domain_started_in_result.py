"""A result that carries its attempt's start (``started``): the start is recorded first."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from streams.domain import Status
from tests.support.gwt import Harness, names, of, register, submit
from tests.unit.test_domain_batching import dispatched_batch

OP = "workflow_trigger"


def result(h: Harness, task_id: str, **kw: object) -> c.ReportResult:
    fields = {"success": True, "output": {"ok": 1}, **kw}
    return c.ReportResult(client_id="A", task_id=task_id, fencing_token=h.token(task_id), **fields)


def test_a_result_with_started_records_the_start_then_the_outcome() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    assert h.status("t1") == Status.ASSIGNED
    events = h.do(result(h, "t1", started=True))
    assert names(events)[:2] == ["TaskStartedEvent", "TaskCompleted"]
    (start,) = of(events, ev.TaskStartedEvent)
    assert (start.task_id, start.session_id, start.fencing_token) == ("t1", "s1", h.token("t1"))
    assert h.status("t1") == Status.COMPLETED
    assert h.replayed() == h.state


def test_the_same_as_a_separate_start_then_the_result() -> None:
    folded = Harness().given(register("s1"), submit("t1", operation=OP))
    apart = Harness().given(register("s1"), submit("t1", operation=OP))
    one = folded.do(result(folded, "t1", started=True))
    two = apart.do(c.TaskStarted(client_id="A", task_id="t1", fencing_token=apart.token("t1")))
    two += apart.do(result(apart, "t1"))
    assert one == two
    assert folded.state == apart.state


def test_started_on_a_task_already_in_progress_adds_no_second_start() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    h.do(c.TaskStarted(client_id="A", task_id="t1", fencing_token=h.token("t1")))
    assert names(h.do(result(h, "t1", started=True)))[0] == "TaskCompleted"


def test_a_failed_result_with_started_counts_as_a_started_attempt() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    events = h.do(result(h, "t1", started=True, success=False, error="boom"))
    assert names(events)[:2] == ["TaskStartedEvent", "TaskAttemptFailed"]


def test_a_stale_result_with_started_records_no_start() -> None:
    h = Harness().given(register("s1"), submit("t1", operation=OP))
    stale = c.ReportResult(
        client_id="A", task_id="t1", fencing_token=h.token("t1") + 5, success=True, started=True
    )
    assert names(h.do(stale)) == ["ResultIgnored"]
    assert h.status("t1") == Status.ASSIGNED


def test_a_batch_result_starts_the_items_that_carry_started() -> None:
    h = Harness()
    batch = dispatched_batch(h, 3)
    events = h.do(
        c.ReportResult(
            client_id="A",
            batch_id=batch.batch_id,
            fencing_token=batch.fencing_token,
            success=True,
            items=[
                c.ItemResult(task_id="t0", success=True, started=True),
                c.ItemResult(task_id="t1", success=True),
                c.ItemResult(task_id="t2", success=False, error="x", started=True),
            ],
        )
    )
    assert [e.task_id for e in of(events, ev.TaskStartedEvent)] == ["t0", "t2"]
    assert names(events)[:3] == ["TaskStartedEvent", "TaskStartedEvent", "BatchResultConsolidated"]
    assert h.status("t0") == Status.COMPLETED and h.status("t1") == Status.COMPLETED
    assert h.replayed() == h.state


def test_a_batch_level_result_with_started_starts_every_item() -> None:
    h = Harness()
    batch = dispatched_batch(h, 2)
    whole = c.ReportResult(
        client_id="A",
        batch_id=batch.batch_id,
        fencing_token=batch.fencing_token,
        success=True,
        started=True,
    )
    assert names(h.do(whole)) == [
        "TaskStartedEvent",
        "TaskStartedEvent",
        "BatchResultConsolidated",
        "TaskCompleted",
        "TaskCompleted",
    ]
