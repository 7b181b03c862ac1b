"""Dispatch: priority order and aging, capacity, client isolation, capabilities, strategies."""

from __future__ import annotations

from collections import Counter

from schemas import commands as c
from schemas import events as ev
from streams.domain import Status
from streams.domain.priority import effective_priority
from tests.support.gwt import Harness, config, names, of, register, submit

OPS_BY_PRIORITY = {
    1: "workflow_trigger",
    2: "pipeline_update",
    4: "conversation_read",
    5: "report_generate",
}
MINUTE = 60_000


def assigned(events: list[ev.Event]) -> list[str]:
    return [e.task_id for e in of(events, ev.TaskAssigned)]


def test_queue_order_is_priority_then_arrival() -> None:
    h = Harness()
    order = [("bg", 5), ("low", 4), ("crit1", 1), ("high", 2), ("crit2", 1), ("normal", 3)]
    for i, (task_id, priority) in enumerate(order):
        op = OPS_BY_PRIORITY.get(priority, "pipeline_update")
        h.do(submit(task_id, operation=op, priority=priority), at=i)
    served = assigned(h.do(register("s1"), at=10))
    for _ in range(len(order) - 1):
        served += assigned(h.succeed(served[-1], at=11))
    assert served == ["crit1", "crit2", "high", "normal", "low", "bg"]


def test_aging_lifts_a_waiting_low_priority_task() -> None:
    assert effective_priority(5, 0, 4 * MINUTE, MINUTE) == 1
    assert effective_priority(5, 0, 10 * MINUTE, MINUTE) == 1  # never better than critical
    assert effective_priority(5, 0, MINUTE - 1, MINUTE) == 5
    h = Harness()
    h.do(submit("old-bg", operation="report_generate"), at=0)
    h.do(submit("new-crit", operation="workflow_trigger"), at=4 * MINUTE)
    # After four aging steps the background task competes as critical and arrived first.
    assert assigned(h.do(register("s1"), at=4 * MINUTE)) == ["old-bg"]


def test_without_aging_the_newer_critical_task_goes_first() -> None:
    h = Harness()
    h.do(submit("old-bg", operation="report_generate"), at=0)
    h.do(submit("new-crit", operation="workflow_trigger"), at=MINUTE)
    assert assigned(h.do(register("s1"), at=MINUTE)) == ["new-crit"]


def test_a_session_never_holds_more_than_max_concurrent() -> None:
    h = Harness().given(register("s1", max_concurrent=2))
    for i in range(5):
        h.do(submit(f"t{i}", operation="workflow_trigger"))
    assert [h.status(f"t{i}") for i in range(5)] == ["assigned"] * 2 + ["queued"] * 3
    assert len(h.state.sessions["s1"].units) == 2
    assert assigned(h.succeed("t0")) == ["t2"]
    assert len(h.state.sessions["s1"].units) == 2


def test_a_clients_tasks_only_go_to_its_own_sessions() -> None:
    h = Harness().given(register("b-session", client="B", max_concurrent=10))
    for i in range(3):
        h.do(submit(f"a{i}", operation="workflow_trigger", client="A"))
    assert of(h.log, ev.TaskAssigned) == []
    events = h.do(register("a-session", client="A", max_concurrent=10))
    assert {(e.task_id, e.session_id) for e in of(events, ev.TaskAssigned)} == {
        ("a0", "a-session"),
        ("a1", "a-session"),
        ("a2", "a-session"),
    }


def test_pool_work_goes_at_once_while_no_pool_executor_registered_capacity() -> None:
    h = Harness()
    events = h.do(submit("sync", operation="integration_sync"), at=3)
    # the client's first dispatch records the bucket it is charged to
    assert names(events) == ["TaskAccepted", "TaskQueued", "ClientRateLimit", "TaskAssigned"]
    (work,) = of(events, ev.TaskAssigned)
    assert work.session_id is None and work.fencing_token == 1
    assert h.status("sync") == Status.ASSIGNED
    assert names(h.succeed("sync")) == ["TaskCompleted"]


def test_capabilities_must_be_a_subset_and_do_not_block_others() -> None:
    h = Harness().given(register("plain", max_concurrent=5))
    h.do(submit("needs-pdf", operation="workflow_trigger", capabilities=["pdf"]), at=1)
    events = h.do(submit("any", operation="workflow_trigger"), at=2)
    assert assigned(events) == ["any"]
    assert h.status("needs-pdf") == Status.QUEUED
    events = h.do(register("pdf", capabilities=["pdf", "browser"]), at=3)
    assert [(e.task_id, e.session_id) for e in of(events, ev.TaskAssigned)] == [
        ("needs-pdf", "pdf")
    ]


def test_session_aware_prefers_the_healthier_session() -> None:
    h = Harness().given(register("s1", max_concurrent=5), register("s2", max_concurrent=5))
    h.do(submit("t0", operation="workflow_trigger"))
    first = of(h.log, ev.TaskAssigned)[0].session_id
    h.fail("t0")  # that session's score drops to 0.6 (degraded)
    events = h.do(submit("t1", operation="workflow_trigger"))
    (work,) = of(events, ev.TaskAssigned)
    assert work.session_id != first


def test_session_aware_balances_equally_healthy_sessions() -> None:
    h = Harness().given(register("s1", max_concurrent=3), register("s2", max_concurrent=3))
    for i in range(4):
        h.do(submit(f"t{i}", operation="workflow_trigger"))
    sessions = Counter(e.session_id for e in of(h.log, ev.TaskAssigned))
    assert sessions == {"s1": 2, "s2": 2}


def test_least_loaded_picks_the_session_with_the_lowest_load() -> None:
    h = Harness(config(dispatch_strategy="least-loaded")).given(
        register("big", max_concurrent=4), register("small", max_concurrent=1)
    )
    for i in range(3):
        h.do(submit(f"t{i}", operation="workflow_trigger"))
    assert [e.session_id for e in of(h.log, ev.TaskAssigned)] == ["big", "small", "big"]


def test_round_robin_rotates_through_sessions() -> None:
    h = Harness(config(dispatch_strategy="round-robin")).given(
        register("s1", max_concurrent=9),
        register("s2", max_concurrent=9),
        register("s3", max_concurrent=9),
    )
    for i in range(5):
        h.do(submit(f"t{i}", operation="workflow_trigger"))
    assert [e.session_id for e in of(h.log, ev.TaskAssigned)] == ["s1", "s2", "s3", "s1", "s2"]


def test_capability_based_prefers_the_closest_match() -> None:
    h = Harness(config(dispatch_strategy="capability-based")).given(
        register("generalist", max_concurrent=5, capabilities=["pdf", "browser", "email", "sms"]),
        register("specialist", max_concurrent=5, capabilities=["pdf"]),
    )
    events = h.do(submit("t1", operation="workflow_trigger", capabilities=["pdf"]))
    assert of(events, ev.TaskAssigned)[0].session_id == "specialist"


def test_retried_task_requeues_at_high_priority() -> None:
    h = Harness().given(register("s1"), submit("bg", operation="report_generate"))
    h.fail("bg", at=10)  # retry due at 1010
    h.do(submit("filler", operation="workflow_trigger"), at=20)  # takes the session
    h.do(submit("normal", operation="pipeline_update", priority=3), at=30)
    queued = of(h.retry_due("bg"), ev.TaskQueued)[0]
    assert (queued.priority, queued.reason, queued.attempt) == (2, "retry", 2)
    # Priority 2 beats the normal task that was queued before it.
    assert assigned(h.succeed("filler", at=2_000)) == ["bg"]


def test_expedited_task_retries_at_critical() -> None:
    h = Harness().given(submit("bg", operation="report_generate"))
    h.do(c.ExpediteTask(client_id="A", task_id="bg"))
    h.do(register("s1"))
    assert h.status("bg") == Status.ASSIGNED
    assert names(h.do(c.ExpediteTask(client_id="A", task_id="bg"))) == ["TaskRejected"]
    h.fail("bg")
    assert of(h.retry_due("bg"), ev.TaskQueued)[0].priority == 1
