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
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import commands as c
from schemas import events as ev
from schemas.states import ACTIVE_STATES, TERMINAL_STATES
from streams.domain import PartitionState, Status, decide, tick
from streams.domain.state import DEAD, Circuit
from tests.support.gwt import Harness, config, of, register

CFG = config(
    batch_window_ms=100,
    max_batch_size=3,
    retry_base_ms=10,
    retry_max_ms=40,
    session_stale_ms=20_000,
    default_timeout_ms=5_000,
    aging_step_ms=1_000,
    circuit_cooldown_ms=500,
)
CLIENTS = ("A", "B")
OPS = ("workflow_trigger", "conversation_read", "tag_add", "contact_create", "integration_sync")
TASKS = [f"t{i}" for i in range(8)]
SESSIONS = [f"s{i}" for i in range(4)]


def session_client(session_id: str) -> str:
    return CLIENTS[int(session_id[1:]) % 2]


def task_client(task_id: str) -> str:
    return CLIENTS[int(task_id[1:]) % 2]  # t0, t2, ... belong to A; t1, t3, ... to B


_rarely = st.sampled_from([False, False, False, True])
_submit = st.tuples(
    st.just("submit"),
    st.sampled_from(TASKS),
    st.sampled_from(OPS),
    _rarely,  # requires review
    _rarely,  # scheduled
    st.one_of(st.just([]), st.just([]), st.lists(st.sampled_from(TASKS), max_size=2)),
    st.integers(0, 2),  # max retries
)
_register = st.tuples(st.just("register"), st.sampled_from(SESSIONS))
_result = st.tuples(st.just("result"), st.sampled_from(TASKS), st.booleans(), st.booleans())
_tick = st.tuples(st.just("tick"), st.integers(1, 6_000))
# Weighted by repetition: mostly submits, sessions and results, some of everything else.
actions = st.one_of(
    _submit,
    _submit,
    _submit,
    _register,
    _register,
    _result,
    _result,
    _result,
    _tick,
    _tick,
    st.tuples(st.sampled_from(["release", "heartbeat"]), st.sampled_from(SESSIONS)),
    st.tuples(
        st.sampled_from(["cancel", "approve", "reject", "expedite", "start", "retry_due"]),
        st.sampled_from(TASKS),
    ),
)


def to_command(h: Harness, action: tuple[Any, ...]) -> c.Command | None:
    kind = action[0]
    if kind == "submit":
        _, tid, op, review, scheduled, deps, retries = action
        return c.SubmitTask(
            client_id=task_client(tid),
            task_id=tid,
            operation=op,
            requires_review=review,
            scheduled_for_ms=h.now + 300 if scheduled else None,
            depends_on=[d for d in deps if task_client(d) == task_client(tid)],
            max_retries=retries,
        )
    if kind == "register":
        sid = action[1]
        return register(sid, client=session_client(sid), max_concurrent=1 + int(sid[1:]) % 3)
    if kind == "release":
        return c.ReleaseSession(client_id=session_client(action[1]), session_id=action[1])
    if kind == "heartbeat":
        return c.SessionHeartbeat(client_id=session_client(action[1]), session_id=action[1])
    tid = action[1]
    client = task_client(tid)
    task = h.state.tasks.get(tid)
    token = task.fencing_token if task is not None and task.fencing_token is not None else 0
    if kind == "cancel":
        return c.CancelTask(client_id=client, task_id=tid)
    if kind == "approve":
        return c.ApproveTask(client_id=client, task_id=tid)
    if kind == "reject":
        return c.RejectTask(client_id=client, task_id=tid)
    if kind == "expedite":
        return c.ExpediteTask(client_id=client, task_id=tid)
    if kind == "start":
        return c.TaskStarted(client_id=client, task_id=tid, fencing_token=token)
    if kind == "retry_due":
        attempt = task.attempt if task is not None else 1
        due = task.due_at_ms if task is not None and task.due_at_ms is not None else h.now
        what = "scheduled" if task is not None and task.status == Status.SCHEDULED else "retry"
        return c.RetryDue(client_id=client, task_id=tid, attempt=attempt, due_at_ms=due, kind=what)
    if kind == "result":
        _, _, success, stale = action
        if task is not None and task.batch_id is not None and task.status in ACTIVE_STATES:
            return c.ReportResult(
                client_id=client,
                batch_id=task.batch_id,
                fencing_token=token,
                success=success,
                items=[c.ItemResult(task_id=tid, success=success, error="item error")],
            )
        return c.ReportResult(
            client_id=client,
            task_id=tid,
            fencing_token=token + (1 if stale else 0),
            success=success,
            error=None if success else "boom",
        )
    raise AssertionError(action)


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
            deps = [state.tasks.get(d) for d in task.depends_on]
            assert not any(d is not None and d.status in DEAD for d in deps), "dead dependency"
            assert not all(d is not None and d.status == Status.COMPLETED for d in deps)
    rebuilt = h.reloaded()
    assert rebuilt == state
    assert rebuilt.indices() == state.indices()


def drive_to_the_end(h: Harness) -> None:
    """Approve, start, succeed, wait and register until every task is terminal."""
    for client in CLIENTS:
        h.do(register(f"finisher-{client}", client=client, max_concurrent=50))
    for _ in range(60):
        live = [t for t in h.state.tasks.values() if t.status not in TERMINAL_STATES]
        if not live:
            return
        for task in sorted(live, key=lambda t: t.accepted_seq):
            task = h.state.tasks[task.task_id]
            if task.status == Status.PENDING_REVIEW:
                h.do(c.ApproveTask(client_id=task.client_id, task_id=task.task_id))
            elif task.status in (Status.SCHEDULED, Status.RETRY_SCHEDULED):
                h.retry_due(task.task_id, at=max(h.now, task.due_at_ms or 0))
            elif task.status in ACTIVE_STATES:
                if task.batch_id is not None:
                    batch = h.state.batches[task.batch_id]
                    assert batch.fencing_token is not None
                    h.do(
                        c.ReportResult(
                            client_id=task.client_id,
                            batch_id=task.batch_id,
                            fencing_token=batch.fencing_token,
                            success=True,
                        )
                    )
                else:
                    h.succeed(task.task_id)
            elif task.status == Status.WAITING:
                deps = [h.state.tasks.get(d) for d in task.depends_on]
                if any(d is None for d in deps):  # waits for a task nobody submits
                    h.do(c.CancelTask(client_id=task.client_id, task_id=task.task_id))
        h.tick(h.now + 1_000)
        for client in CLIENTS:  # keep the finishers alive
            h.do(c.SessionHeartbeat(client_id=client, session_id=f"finisher-{client}"))
    raise AssertionError(
        f"not finished: {[(t.task_id, t.status) for t in h.state.tasks.values() if t.status not in TERMINAL_STATES]}"
    )


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


def random_action(rng: random.Random, h: Harness) -> tuple[Any, ...]:
    """A state-aware random step: fresh task ids, results mostly for work in flight."""
    known = sorted(h.state.tasks)
    active = sorted(t.task_id for t in h.state.tasks.values() if t.status in ACTIVE_STATES)
    roll = rng.random()
    if roll < 0.35:
        newest = max((int(k[1:]) for k in known), default=-1)
        fresh = (
            f"t{newest + rng.randint(1, 2)}" if rng.random() < 0.95 else rng.choice(known or TASKS)
        )
        same_client = [k for k in known if task_client(k) == task_client(fresh)]
        deps = rng.sample(same_client, min(len(same_client), rng.choice([0, 0, 0, 1, 2])))
        return (
            "submit",
            fresh,
            rng.choice(OPS),
            rng.random() < 0.15,
            rng.random() < 0.15,
            deps,
            rng.randint(0, 2),
        )
    if roll < 0.45:
        return ("register", rng.choice(SESSIONS))
    if roll < 0.70:
        target = rng.choice(active) if active and rng.random() < 0.9 else rng.choice(TASKS)
        return ("result", target, rng.random() < 0.75, rng.random() < 0.05)
    if roll < 0.82:
        return ("tick", rng.choice([50, 150, 600, 3_000, 6_000]))
    if roll < 0.86:
        return (rng.choice(["release", "heartbeat", "heartbeat"]), rng.choice(SESSIONS))
    return (
        rng.choice(["cancel", "approve", "approve", "reject", "expedite", "start", "retry_due"]),
        rng.choice(known or TASKS),
    )


def random_walk(rng: random.Random, h: Harness, steps: int = 150) -> Iterator[int]:
    """Random commands and ticks on ``h``; yields after every tenth step for the checks."""
    for step in range(steps):
        action = random_action(rng, h)
        if action[0] == "tick":
            h.tick(h.now + action[1])
        else:
            command = to_command(h, action)
            assert command is not None
            h.do(command, at=h.now + rng.randint(0, 40))
        if step % 10 == 0:
            yield step


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
                    task = self.state.tasks[task_id]
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
