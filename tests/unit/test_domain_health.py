"""Session health, the circuit breaker with its half-open probe, stale sessions and release."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from streams.domain import Status
from tests.support.gwt import Harness, config, names, of, register, submit

OP = "workflow_trigger"
COOLDOWN = 1_000


def broken_session(h: Harness) -> None:
    """Three failures in a row on s1: 1.0 -> 0.6 -> 0.36 -> 0.216, the circuit opens."""
    h.given(register("s1", max_concurrent=3))
    for i in range(3):
        h.do(submit(f"f{i}", operation=OP, max_retries=0), at=10 * i)
    for i in range(3):
        h.fail(f"f{i}", at=100 + i)


def test_failures_degrade_then_open_the_circuit() -> None:
    h = Harness(config(circuit_cooldown_ms=COOLDOWN))
    broken_session(h)
    changes = [
        (e.score, e.status, e.previous_status, e.circuit)
        for e in of(h.log, ev.SessionHealthChanged)
    ]
    assert changes == [
        (0.6, "degraded", "healthy", "closed"),
        (0.216, "unhealthy", "degraded", "open"),
    ]
    assert h.state.sessions["s1"].score == 0.216


def test_an_open_circuit_gets_no_work_then_one_probe_after_the_cooldown() -> None:
    h = Harness(config(circuit_cooldown_ms=COOLDOWN))
    broken_session(h)  # opened at 102
    for i in range(3):
        h.do(submit(f"t{i}", operation=OP), at=200 + i)
    assert {h.status(f"t{i}") for i in range(3)} == {Status.QUEUED}
    assert h.tick(1_101) == []
    events = h.tick(1_102)
    assert names(events) == ["SessionHealthChanged", "TaskAssigned"]
    assert of(events, ev.SessionHealthChanged)[0].circuit == "half_open"
    assert [e.task_id for e in of(events, ev.TaskAssigned)] == ["t0"]  # exactly one probe
    assert h.tick(1_200) == []
    # The probe succeeds: the circuit closes, the score is back above the healthy line.
    events = h.succeed("t0", at=1_300)
    (closed,) = of(events, ev.SessionHealthChanged)
    assert (closed.circuit, closed.status, closed.score) == ("closed", "healthy", 0.8)
    assert [e.task_id for e in of(events, ev.TaskAssigned)] == ["t1", "t2"]


def test_a_failed_probe_reopens_the_circuit() -> None:
    h = Harness(config(circuit_cooldown_ms=COOLDOWN))
    broken_session(h)
    h.do(submit("t0", operation=OP), at=200)
    h.do(submit("t1", operation=OP), at=201)
    h.tick(1_102)
    events = h.fail("t0", at=1_200)
    (reopened,) = of(events, ev.SessionHealthChanged)
    assert reopened.circuit == "open"
    assert h.status("t1") == Status.QUEUED
    assert h.tick(2_199) == []
    assert names(h.tick(2_200)) == ["SessionHealthChanged", "TaskAssigned"]


def test_stale_sessions_are_cleaned_and_their_work_requeued() -> None:
    h = Harness(config(session_stale_ms=60_000)).given(
        register("old", max_concurrent=2), submit("t1", operation=OP), at=0
    )
    h.do(c.SessionHeartbeat(client_id="A", session_id="old"), at=50_000)
    assert h.tick(100_000) == []  # the heartbeat kept it alive
    h.do(register("fresh"), at=100_000)  # busy: nothing for it yet
    events = h.tick(110_000)
    assert names(events) == ["SessionCleaned", "TaskQueued", "TaskAssigned"]
    (cleaned,) = of(events, ev.SessionCleaned)
    assert (cleaned.last_seen_ms, cleaned.requeued_task_ids) == (50_000, ["t1"])
    queued = of(events, ev.TaskQueued)[0]
    assert (queued.reason, queued.attempt) == ("requeued", 1)  # losing a session costs no attempt
    assert of(events, ev.TaskAssigned)[0].session_id == "fresh"
    assert "old" not in h.state.sessions


def test_results_count_as_signs_of_life() -> None:
    h = Harness(config(session_stale_ms=60_000)).given(
        register("s1"), submit("t1", operation=OP), at=0
    )
    h.succeed("t1", at=59_000)
    assert h.tick(60_000) == []
    assert h.state.sessions["s1"].last_seen_ms == 59_000


def test_releasing_a_session_requeues_its_work_to_another() -> None:
    h = Harness().given(
        register("s1", max_concurrent=2), submit("t1", operation=OP), register("s2")
    )
    events = h.do(c.ReleaseSession(client_id="A", session_id="s1", reason="browser closed"))
    assert names(events) == ["SessionReleased", "TaskQueued", "TaskAssigned"]
    assert of(events, ev.SessionReleased)[0].requeued_task_ids == ["t1"]
    assert of(events, ev.TaskAssigned)[0].session_id == "s2"


def test_session_commands_for_unknown_or_foreign_sessions_are_refused() -> None:
    h = Harness().given(register("s1", client="A"))
    (unknown,) = h.do(c.SessionHeartbeat(client_id="A", session_id="nope"))
    assert isinstance(unknown, ev.CommandRejected) and unknown.reason == "unknown session"
    (foreign,) = h.do(register("s1", client="B"))
    assert isinstance(foreign, ev.CommandRejected)
    (release,) = h.do(c.ReleaseSession(client_id="B", session_id="s1"))
    assert isinstance(release, ev.CommandRejected)
    assert h.state.sessions["s1"].client_id == "A"


def test_re_registration_is_a_heartbeat_unless_something_changed() -> None:
    h = Harness().given(register("s1"), at=0)
    assert names(h.do(register("s1"), at=10)) == ["SessionHeartbeatReceived"]
    assert names(h.do(register("s1", max_concurrent=4), at=20)) == ["SessionRegistered"]
    assert h.state.sessions["s1"].max_concurrent == 4
    assert h.state.sessions["s1"].last_seen_ms == 20
