"""Executor incarnations: a new start takes the session's work back at once, fenced."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from streams.domain import Status
from tests.support.gwt import Harness, names, of, submit

OP = "workflow_trigger"


def register(incarnation: str | None, max_concurrent: int = 2) -> c.RegisterSession:
    return c.RegisterSession(
        client_id="A",
        session_id="s1",
        agent_id="agent-1",
        max_concurrent=max_concurrent,
        incarnation=incarnation,
    )


def test_a_new_incarnation_requeues_the_old_ones_work_and_fences_its_reports() -> None:
    h = Harness().given(register("inc-1"))
    h.do(submit("t1", operation=OP))
    h.do(submit("t2", operation=OP))
    old = {t: h.token(t) for t in ("t1", "t2")}
    events = h.do(register("inc-2"), at=50)
    registered = of(events, ev.SessionRegistered)[0]
    assert (registered.incarnation, registered.requeued_task_ids) == ("inc-2", ["t1", "t2"])
    # Re-queued and at once handed to the new incarnation's session, under new tokens.
    assert names(events).count("TaskQueued") == 2
    assigned = of(events, ev.TaskAssigned)
    assert [(a.task_id, a.session_id) for a in assigned] == [("t1", "s1"), ("t2", "s1")]
    assert all(a.fencing_token != old[a.task_id] for a in assigned)
    assert h.state.sessions["s1"].incarnation == "inc-2"
    # The old incarnation's late result changes nothing.
    late = h.do(c.ReportResult(client_id="A", task_id="t1", fencing_token=old["t1"], success=True))
    assert names(late) == ["ResultIgnored"]
    assert h.status("t1") == Status.ASSIGNED
    # The session's health was not touched: losing an executor is not a task failure.
    assert h.state.sessions["s1"].score == 1.0


def test_a_new_incarnation_releases_a_running_batch() -> None:
    h = Harness().given(register("inc-1", max_concurrent=1))
    for i in range(2):
        h.do(submit(f"b{i}", operation="tag_add"), at=i)
    h.tick(2_000)
    batch = of(h.log, ev.BatchProcessed)[-1]
    events = h.do(register("inc-2", max_concurrent=1), at=2_100)
    assert of(events, ev.SessionRegistered)[0].requeued_task_ids == list(batch.task_ids)
    # Still first attempts, the items batch again and go out once the new batch closes.
    rebatched = {e.batch_id for e in of(events, ev.TaskBatched)}
    assert len(rebatched) == 1 and batch.batch_id not in rebatched
    assert h.state.sessions["s1"].units == {}
    again = of(h.tick(2_100 + h.config.batch_window_ms), ev.BatchProcessed)
    assert [(b.session_id, b.task_ids) for b in again] == [("s1", batch.task_ids)]
    assert again[0].fencing_token != batch.fencing_token


def test_registering_again_with_the_same_incarnation_is_a_heartbeat() -> None:
    h = Harness().given(register("inc-1"))
    h.do(submit("t1", operation=OP))
    token = h.token("t1")
    assert names(h.do(register("inc-1"), at=10)) == ["SessionHeartbeatReceived"]
    assert h.token("t1") == token


def test_producers_without_incarnations_keep_the_heartbeat_rule() -> None:
    h = Harness().given(register(None))
    h.do(submit("t1", operation=OP))
    assert names(h.do(register(None), at=10)) == ["SessionHeartbeatReceived"]
    # A first incarnation id after none is a new start too.
    assert of(h.do(register("inc-1"), at=20), ev.SessionRegistered)[0].requeued_task_ids == ["t1"]
