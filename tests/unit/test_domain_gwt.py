"""The tests of the given/when/then harness's basic contract (the harness itself lives in
``tests/support/gwt.py``)."""

from __future__ import annotations

from schemas import events as ev
from streams.domain import decide
from tests.support.gwt import CONFIG, Harness, register, submit

# -- the contract ------------------------------------------------------------------------------


def test_submit_is_accepted_with_its_full_spec_then_queued() -> None:
    Harness().when(submit("t1", payload={"x": 1}), at=5).then(
        ev.TaskAccepted(
            client_id="A",
            task_id="t1",
            occurred_at_ms=5,
            operation="contact_update",
            payload={"x": 1},
            priority=3,
            max_retries=3,
            timeout_ms=300_000,
            batchable=True,
            session_required=True,
        ),
        ev.TaskQueued(client_id="A", task_id="t1", occurred_at_ms=5, priority=3, attempt=1),
        ev.TaskBatched(
            client_id="A",
            task_id="t1",
            occurred_at_ms=5,
            batch_id="b-A-1",
            operation="contact_update",
        ),
    )


def test_given_events_build_the_state_decisions_read() -> None:
    h = Harness().given(
        ev.SessionRegistered(
            client_id="A", occurred_at_ms=1, session_id="s1", agent_id="x", max_concurrent=1
        )
    )
    h.when(submit("t1", operation="workflow_trigger"), at=10).then(
        ev.TaskAccepted(
            client_id="A",
            task_id="t1",
            occurred_at_ms=10,
            operation="workflow_trigger",
            priority=1,
            max_retries=3,
            timeout_ms=300_000,
        ),
        ev.TaskQueued(client_id="A", task_id="t1", occurred_at_ms=10, priority=1, attempt=1),
        ev.ClientRateLimit(
            client_id="A", occurred_at_ms=10, bucket="", limit=100, period_ms=10_000
        ),
        ev.TaskAssigned(
            client_id="A",
            task_id="t1",
            occurred_at_ms=10,
            operation="workflow_trigger",
            session_id="s1",
            attempt=1,
            fencing_token=1,
            deadline_at_ms=300_010,
            priority=1,
        ),
    )


def test_decide_leaves_the_state_untouched() -> None:
    h = Harness().given(register("s1"), submit("t1", operation="workflow_trigger"))
    before = h.reloaded()
    dirty = set(h.state.dirty)
    events = decide(submit("t2", operation="workflow_trigger"), h.state, 50, CONFIG)
    assert events
    assert h.state == before
    assert h.state.indices() == before.indices()
    assert h.state.dirty == dirty


def test_time_never_goes_back() -> None:
    h = Harness().given(register("s1"), at=1000)
    events = h.do(submit("t1", operation="workflow_trigger"), at=10)
    assert {e.occurred_at_ms for e in events} == {1000}
