"""Which sessions take work besides capacity and capabilities: the reuse threshold (seed 000:
"verify session health is above threshold (0.5)"), the agent's reported workload ("workload <
0.9"), and the on-demand cleanup of stale sessions (``cleanupStaleSessions()``)."""

from __future__ import annotations

import pytest

from schemas import commands as c
from schemas import events as ev
from streams.domain import dispatch
from streams.domain.context import Decision
from streams.domain.state import SessionRecord
from tests.support.gwt import Harness, config, names, of, register, submit


def degraded(session_id: str, score: float) -> ev.SessionHealthChanged:
    return ev.SessionHealthChanged(
        client_id="A",
        occurred_at_ms=0,
        session_id=session_id,
        score=score,
        status="degraded",
        previous_status="healthy",
        circuit="closed",
    )


def beat(session_id: str, workload: float | None, client: str = "A") -> c.SessionHeartbeat:
    return c.SessionHeartbeat(client_id=client, session_id=session_id, workload=workload)


def sessions_of(events: list[ev.Event]) -> list[str | None]:
    return [e.session_id for e in of(events, ev.TaskAssigned)]


def test_a_session_below_the_reuse_threshold_is_passed_over_then_probed_one_unit_at_a_time() -> (
    None
):
    h = Harness(config(dispatch_strategy="round-robin")).given(
        register("s1", max_concurrent=3), register("s2", max_concurrent=1), degraded("s1", 0.4)
    )
    served = [sessions_of(h.do(submit(f"t{i}", operation="workflow_trigger"))) for i in range(4)]
    # s2 (healthy) first; then s1, below 0.5, takes one unit because nothing better can.
    assert served == [["s2"], ["s1"], [], []]
    # A success lifts s1 to 0.5: reused again, at its full concurrency.
    assert sessions_of(h.succeed("t1")) == ["s1", "s1"]
    assert h.state.sessions["s1"].score == 0.5


def test_the_reuse_threshold_is_configurable() -> None:
    h = Harness(config(dispatch_strategy="round-robin", session_reuse_threshold=0.3)).given(
        register("s1", max_concurrent=3), register("s2", max_concurrent=1), degraded("s1", 0.4)
    )
    served = [sessions_of(h.do(submit(f"t{i}", operation="workflow_trigger"))) for i in range(4)]
    assert served == [["s1"], ["s2"], ["s1"], ["s1"]]


def test_the_health_bounds_and_probe_recovery_come_from_the_config() -> None:
    h = Harness(
        config(
            session_unhealthy_below=0.5, session_probe_recovery_score=0.95, circuit_cooldown_ms=10
        )
    ).given(register("s1"), submit("t1", operation="workflow_trigger"))
    h.fail("t1", at=1)  # 1.0 -> 0.6
    h.retry_due("t1")
    [change] = of(h.fail("t1"), ev.SessionHealthChanged)  # 0.36: below 0.5, the circuit opens
    assert (change.status, change.circuit) == ("unhealthy", "open")
    h.retry_due("t1")
    h.tick(h.now + 10)  # half-open: the probe
    h.succeed("t1")
    assert (h.state.sessions["s1"].circuit, h.state.sessions["s1"].score) == ("closed", 0.95)


def test_an_agent_at_or_above_the_workload_limit_gets_no_new_work() -> None:
    h = Harness(config(dispatch_strategy="round-robin")).given(
        register("s1", max_concurrent=5), register("s2", max_concurrent=5)
    )
    h.do(beat("s1", 0.95))
    h.do(beat("s2", 0.9))  # at the limit counts as full
    assert sessions_of(h.do(submit("t1", operation="workflow_trigger"))) == []
    # The heartbeat that reports room again dispatches the waiting work at once.
    assert sessions_of(h.do(beat("s2", 0.3))) == ["s2"]
    assert sessions_of(h.do(submit("t2", operation="workflow_trigger"))) == ["s2"]
    # A heartbeat that reports none keeps the last value: s1 stays out.
    h.do(beat("s1", None))
    assert h.state.sessions["s1"].workload == 0.95
    assert sessions_of(h.do(submit("t3", operation="workflow_trigger"))) == ["s2"]


def test_the_workload_limit_is_configurable() -> None:
    h = Harness(config(max_workload=0.5)).given(register("s1", max_concurrent=5))
    h.do(beat("s1", 0.6))
    assert sessions_of(h.do(submit("t1", operation="workflow_trigger"))) == []


def test_a_new_incarnation_reports_its_workload_afresh() -> None:
    take_over = c.RegisterSession(
        client_id="A", session_id="s1", agent_id="agent-s1", max_concurrent=2, incarnation="i2"
    )
    h = Harness().given(register("s1", max_concurrent=2))
    h.do(beat("s1", 0.99))
    h.do(take_over)
    assert h.state.sessions["s1"].workload == 0.0


def test_capability_based_and_least_loaded_prefer_the_agent_with_less_workload() -> None:
    for strategy in ("capability-based", "least-loaded"):
        h = Harness(config(dispatch_strategy=strategy)).given(
            register("s1", max_concurrent=5), register("s2", max_concurrent=5)
        )
        h.do(beat("s1", 0.7))
        h.do(beat("s2", 0.1))
        assert sessions_of(h.do(submit("t1", operation="workflow_trigger"))) == ["s2"], strategy


def test_cleanup_cleans_the_clients_stale_sessions_now_and_requeues_their_work() -> None:
    h = Harness(config(session_stale_ms=1000)).given(
        register("old", max_concurrent=1),
        submit("t1", operation="workflow_trigger"),
        register("b-old", client="B"),
        at=0,
    )
    assert h.status("t1") == "assigned"
    h.do(register("fresh", max_concurrent=1), at=600)
    assert names(h.do(c.CleanupSessions(client_id="A"), at=900)) == []  # nothing stale yet
    events = h.do(c.CleanupSessions(client_id="A"), at=1000)
    [cleaned] = of(events, ev.SessionCleaned)
    assert (cleaned.session_id, cleaned.last_seen_ms, cleaned.requeued_task_ids) == (
        "old",
        0,
        ["t1"],
    )
    assert sessions_of(events) == ["fresh"]  # the work goes to a live session at once
    assert "old" not in h.state.sessions
    assert "b-old" in h.state.sessions  # another client's session: not this command's
    assert names(h.do(c.CleanupSessions(client_id="B"), at=1000)) == ["SessionCleaned"]


def _counting_choices(monkeypatch: pytest.MonkeyPatch) -> list[frozenset[str]]:
    calls: list[frozenset[str]] = []
    original = dispatch.choose_session

    def counted(
        ctx: Decision,
        client_id: str,
        required: frozenset[str],
        assignee: tuple[str, str] | None = None,
    ) -> SessionRecord | None:
        calls.append(required)
        return original(ctx, client_id, required, assignee)

    monkeypatch.setattr(dispatch, "choose_session", counted)
    return calls


def test_an_overloaded_agent_stops_dispatch_without_trying_every_waiting_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness().given(register("s1", max_concurrent=2), beat("s1", 0.95))
    for i in range(50):
        h.do(submit(f"t{i}", operation="workflow_trigger"))
    calls = _counting_choices(monkeypatch)
    h.do(submit("t50", operation="workflow_trigger"))
    assert calls == []  # no session can take any unit: nothing is tried
    assert sessions_of(h.do(beat("s1", 0.5))) == ["s1", "s1"]
    assert len(calls) == 2 * 2  # the harness decides twice (its determinism check)


def test_units_no_session_can_take_are_tried_once_per_requirement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness().given(register("s1", max_concurrent=1))
    h.do(submit("busy", operation="workflow_trigger"))
    for i in range(30):  # older than the plain ones, so they come first in the queue
        h.do(submit(f"pdf{i}", operation="workflow_trigger", capabilities=["pdf"]))
    for i in range(3):
        h.do(submit(f"plain{i}", operation="workflow_trigger"))
    calls = _counting_choices(monkeypatch)
    events = h.succeed("busy")
    # The first pdf task is refused once; the other 29 are passed over without a try.
    assert [e.task_id for e in of(events, ev.TaskAssigned)] == ["plain0"]
    assert calls == [frozenset({"pdf"}), frozenset()] * 2  # the harness decides twice
    assert all(h.status(f"pdf{i}") == "queued" for i in range(30))
