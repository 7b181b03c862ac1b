"""Properties of the decider over random command sequences (hypothesis).

* deciding is pure and deterministic (checked by the harness on every step);
* replaying the event log, or loading the persisted records, gives the same state;
* a task is never in two places (queue lane, batch, session unit, dependency wait) at once and
  every index agrees with the task statuses;
* no session ever holds more than ``max_concurrent`` units, and open circuits get no work;
* every task driven to the end reaches exactly one terminal state, recorded by exactly one
  terminal event.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import commands as c
from schemas import events as ev
from schemas.states import TERMINAL_STATES
from streams.domain import PartitionState, Status, decide, tick
from streams.domain.state import DEAD, Circuit
from tests.support.domain_walks import (
    CFG,
    CLIENTS,
    TASKS,
    actions,
    drive_to_the_end,
    random_walk,
    task_client,
    to_command,
)
from tests.support.gwt import Harness, of


class CheckedHarness(Harness):
    """Checks capacity and circuits at every assignment, before the event is folded in."""

    def apply(self, events: list[ev.Event]) -> list[ev.Event]:
        for event in events:
            session_id = None
            if isinstance(event, ev.BatchProcessed) or (
                isinstance(event, ev.TaskAssigned) and event.batch_id is None
            ):
                session_id = event.session_id
            if session_id is not None:
                session = self.state.sessions[session_id]
                assert session.client_id == event.client_id, "work crossed clients"
                assert session.circuit != Circuit.OPEN, "an open circuit got work"
                if session.circuit == Circuit.HALF_OPEN:
                    assert not session.units, "more than one probe"
                assert len(session.units) < session.max_concurrent, "capacity exceeded"
            super().apply([event])
        return events


def check_invariants(h: Harness) -> None:
    state = h.state
    places: Counter[str] = Counter()
    for client in state.lanes:
        for entries in state.lane_entries(client).values():
            places.update(entries)
    for batch in state.batches.values():
        places.update(batch.live)
        assert batch.client_id in CLIENTS
    for session in state.sessions.values():
        assert len(session.units) <= session.max_concurrent
        for unit in session.units:
            if unit.startswith("t:"):
                places[unit[2:]] += 1
    for waiting in {t for ids in state.dependents.values() for t in ids}:
        places[waiting] += 1
    for task_id, count in places.items():
        assert count == 1, f"{task_id} is in {count} places"
        assert state.tasks[task_id].status not in TERMINAL_STATES
    for task in state.tasks.values():
        assert task.status not in (Status.ACCEPTED, Status.ATTEMPT_FAILED), (
            "transient status at rest"
        )
        if task.status in (Status.QUEUED, Status.BATCHED, Status.WAITING) and task.session_required:
            assert places[task.task_id] == 1, f"{task.task_id} ({task.status}) is nowhere"
        if task.status in TERMINAL_STATES and task.status != Status.FAILED:
            assert task.payload is None
        if task.status == Status.WAITING:
            deps = [state.task(d) for d in task.depends_on]
            assert not any(d is not None and d.status in DEAD for d in deps), "dead dependency"
            assert not all(d is not None and d.status == Status.COMPLETED for d in deps)
    rebuilt = h.reloaded()
    assert rebuilt == state
    assert rebuilt.indices() == state.indices()


def terminal_events(log: list[ev.Event]) -> Counter[str]:
    ends: Counter[str] = Counter()
    for e in log:
        if isinstance(e, ev.TaskCompleted | ev.TaskFailed | ev.TaskCancelled):
            ends[e.task_id] += 1
        elif isinstance(e, ev.TaskRejected) and e.command == "RejectTask":
            ends[e.task_id] += 1
    return ends


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(actions, min_size=5, max_size=50),
    st.sampled_from(["session-aware", "capability-based", "least-loaded", "round-robin"]),
)
def test_random_command_sequences_keep_every_invariant(
    steps: list[tuple[Any, ...]], strategy: str
) -> None:
    h = CheckedHarness(replace(CFG, dispatch_strategy=strategy))  # type: ignore[arg-type]
    for action in steps:
        if action[0] == "tick":
            h.tick(h.now + action[1])
        else:
            command = to_command(h, action)
            assert command is not None
            h.do(command, at=h.now + 7)
        check_invariants(h)
    replayed = h.replayed()
    assert replayed == h.state and replayed.indices() == h.state.indices()

    drive_to_the_end(h)
    check_invariants(h)
    ends = terminal_events(h.log)
    accepted = {e.task_id for e in h.log if isinstance(e, ev.TaskAccepted)}
    assert set(ends) == accepted
    assert all(n == 1 for n in ends.values()), ends
    assert h.replayed() == h.state


@settings(max_examples=60, deadline=None)
@given(st.lists(actions, min_size=5, max_size=30), st.sampled_from(TASKS), st.integers(0, 10_000))
def test_deciding_on_equal_states_gives_equal_events(
    steps: list[tuple[Any, ...]], task_id: str, later: int
) -> None:
    h = Harness(CFG)
    for action in steps:
        if action[0] == "tick":
            h.tick(h.now + action[1])
        else:
            command = to_command(h, action)
            assert command is not None
            h.do(command, at=h.now + 3)
    copy: PartitionState = h.reloaded()
    probe = c.SubmitTask(client_id=task_client(task_id), task_id=task_id, operation="tag_add")
    assert decide(probe, copy, h.now + later, CFG) == decide(probe, h.state, h.now + later, CFG)
    assert tick(copy, h.now + later, CFG) == tick(h.state, h.now + later, CFG)


@pytest.mark.parametrize("seed", range(12))
def test_long_random_walks_keep_every_invariant(seed: int) -> None:
    """Longer sequences than hypothesis likes to generate, with the same checks."""
    rng = random.Random(seed)
    strategy = ["session-aware", "capability-based", "least-loaded", "round-robin"][seed % 4]
    h = CheckedHarness(replace(CFG, dispatch_strategy=strategy))  # type: ignore[arg-type]
    for _ in random_walk(rng, h):
        check_invariants(h)
    assert len(of(h.log, ev.TaskAssigned)) > 10  # the walk did exercise dispatch
    drive_to_the_end(h)
    check_invariants(h)
    ends = terminal_events(h.log)
    assert set(ends) == {e.task_id for e in of(h.log, ev.TaskAccepted)}
    assert all(n == 1 for n in ends.values()), ends
    replayed = h.replayed()
    assert replayed == h.state and replayed.indices() == h.state.indices()


# -- retention ---------------------------------------------------------------------------------

RETAINING = replace(CFG, task_retention_ms=300)


class RetainingHarness(CheckedHarness):
    """Also checks that only finished, unpinned work past the window is ever forgotten."""

    def apply(self, events: list[ev.Event]) -> list[ev.Event]:
        for event in events:
            if isinstance(event, ev.TasksForgotten):
                cutoff = event.occurred_at_ms - self.config.task_retention_ms
                assert event.finished_by_ms == cutoff
                for task_id in event.task_ids:
                    task = self.record(task_id)
                    assert task.client_id == event.client_id
                    assert task.status in TERMINAL_STATES, (
                        f"{task_id} forgotten while {task.status}"
                    )
                    assert task.finished_at_ms is not None and task.finished_at_ms <= cutoff
                    assert not self.state.pinned(task), f"{task_id} forgotten while referred to"
                for job_id in event.batch_job_ids:
                    job = self.state.batch_jobs[job_id]
                    assert job.completed_at_ms is not None and job.completed_at_ms <= cutoff
            super().apply([event])
        return events


def check_lifetimes(log: list[ev.Event]) -> None:
    """Each acceptance of an id ends in exactly one terminal event before the id comes back."""
    ends_since_accepted: dict[str, int] = {}
    for e in log:
        if isinstance(e, ev.TaskAccepted):
            assert ends_since_accepted.get(e.task_id, 1) == 1, f"{e.task_id} accepted twice"
            ends_since_accepted[e.task_id] = 0
        elif terminal_events([e]):
            ends_since_accepted[e.task_id] += 1  # type: ignore[attr-defined]
    assert all(n == 1 for n in ends_since_accepted.values()), ends_since_accepted


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, min_size=5, max_size=50), st.integers(0, 10_000))
def test_forgetting_keeps_every_invariant_and_replays_to_the_same_state(
    steps: list[tuple[Any, ...]], later: int
) -> None:
    h = RetainingHarness(RETAINING)
    for action in steps:
        if action[0] == "tick":
            h.tick(h.now + action[1])
        else:
            command = to_command(h, action)
            assert command is not None
            h.do(command, at=h.now + 7)
        check_invariants(h)  # includes: the reloaded state and its indices are equal
    replayed = h.replayed()
    assert replayed == h.state and replayed.indices() == h.state.indices()
    copy = h.reloaded()
    assert tick(copy, h.now + later, RETAINING) == tick(h.state, h.now + later, RETAINING)

    drive_to_the_end(h)
    check_lifetimes(h.log)
    for _ in range(3):  # 500 ids a tick at most; these examples have far fewer
        h.tick(h.now + RETAINING.task_retention_ms)
    assert h.state.tasks == {} and h.state.batch_jobs == {}
    assert h.replayed() == h.state


@pytest.mark.parametrize("seed", range(8))
def test_long_random_walks_with_a_short_retention_keep_every_invariant(seed: int) -> None:
    """Tasks are forgotten while others still run, and some ids come back as new tasks."""
    rng = random.Random(1000 + seed)
    h = RetainingHarness(RETAINING)
    for _ in random_walk(rng, h):
        check_invariants(h)
        replayed, reloaded = h.replayed(), h.reloaded()
        assert replayed == h.state and replayed.indices() == h.state.indices()
        for later in (1, 290, 310, 329, 331, 2_000):  # around the window and the sweep
            now = h.now + later
            live = tick(h.state, now, RETAINING)
            assert tick(reloaded, now, RETAINING) == live
            assert tick(replayed, now, RETAINING) == live
    assert of(h.log, ev.TasksForgotten)  # the walk did forget while work was going on
    drive_to_the_end(h)
    check_invariants(h)
    check_lifetimes(h.log)
    for _ in range(3):
        h.tick(h.now + RETAINING.task_retention_ms)
    assert h.state.tasks == {} and h.state.batch_jobs == {}
    replayed = h.replayed()
    assert replayed == h.state and replayed.indices() == h.state.indices()
