"""Session dispatch on the suite's broker: capacity and client isolation over a whole event
log under every strategy, and the health circuit of a failing session (issue 3, "Done when"
3 and 5)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from schemas import events as ev
from schemas.catalog import load_catalog
from schemas.records import Assignment
from streams.settings import Settings
from tests.integration.distributor_harness import Reply, register, rig, submit

pytestmark = pytest.mark.integration

SESSION_OPS = sorted(n for n, s in load_catalog().items() if s.session_required)


class Occupancy:
    """Folds the event log into each session's units in use; fails on any excess or any
    assignment across clients."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}  # session -> client
        self.capacity: dict[str, int] = {}
        self.units: dict[str, set[str]] = {}
        self.unit_of: dict[str, tuple[str, str]] = {}  # single task -> (session, unit)
        self.batch_live: dict[str, set[str]] = {}
        self.batch_session: dict[str, str] = {}
        self.task_batch: dict[str, str] = {}
        self.peak: dict[str, int] = {}
        self.assigned = 0

    def _take(self, session: str, unit: str, client: str) -> None:
        assert session in self.owner, f"{unit} went to unknown session {session}"
        assert self.owner[session] == client, (
            f"{unit} of client {client} went to {session} of client {self.owner[session]}"
        )
        units = self.units.setdefault(session, set())
        units.add(unit)
        self.peak[session] = max(self.peak.get(session, 0), len(units))
        assert len(units) <= self.capacity[session], (
            f"{session} holds {sorted(units)} > max_concurrent {self.capacity[session]}"
        )

    def _free(self, session: str, unit: str) -> None:
        self.units.get(session, set()).discard(unit)

    def _task_left(self, task_id: str) -> None:
        held = self.unit_of.pop(task_id, None)
        if held is not None:
            self._free(*held)
        batch = self.task_batch.pop(task_id, None)
        if batch is not None and batch in self.batch_live:
            live = self.batch_live[batch]
            live.discard(task_id)
            if not live:
                self._free(self.batch_session[batch], "b:" + batch)
                del self.batch_live[batch]

    def fold(self, e: Any) -> None:
        if isinstance(e, ev.SessionRegistered):
            self.owner[e.session_id] = e.client_id
            self.capacity[e.session_id] = e.max_concurrent
        elif isinstance(e, (ev.SessionReleased, ev.SessionCleaned)):
            self.units.pop(e.session_id, None)
        elif isinstance(e, ev.BatchProcessed):
            assert e.session_id is not None
            self._take(e.session_id, "b:" + e.batch_id, e.client_id)
            self.batch_live[e.batch_id] = set(e.task_ids)
            self.batch_session[e.batch_id] = e.session_id
            self.assigned += 1
        elif isinstance(e, ev.TaskAssigned):
            if e.batch_id is not None:
                assert self.batch_session.get(e.batch_id) == e.session_id
                self.task_batch[e.task_id] = e.batch_id
            elif e.session_id is not None:
                unit = "t:" + e.task_id
                self._take(e.session_id, unit, e.client_id)
                self.unit_of[e.task_id] = (e.session_id, unit)
                self.assigned += 1
        elif isinstance(e, ev.BatchResultConsolidated):
            if e.batch_id in self.batch_live:
                self._free(self.batch_session[e.batch_id], "b:" + e.batch_id)
                del self.batch_live[e.batch_id]
        elif isinstance(
            e,
            (
                ev.TaskCompleted,
                ev.TaskAttemptFailed,
                ev.TaskCancelled,
                ev.TaskQueued,
                ev.TaskFailed,
            ),
        ):
            self._task_left(e.task_id)


@pytest.mark.parametrize(
    "strategy", ["session-aware", "capability-based", "least-loaded", "round-robin"]
)
async def test_no_session_exceeds_its_capacity_and_no_task_crosses_clients(
    make_settings: Callable[..., Settings], strategy: str
) -> None:
    rnd = random.Random(strategy)

    def script(a: Assignment) -> Reply:
        return Reply(
            success=rnd.random() > 0.1, error="flaky", delay_s=rnd.choice((0, 0.01, 0.03, 0.06))
        )

    clients = {"A": [1, 3], "B": [2], "C": [1, 1, 2]}
    async with rig(
        make_settings,
        script,
        dispatch_strategy=strategy,
        batch_window_ms=150,
        max_batch_size=4,
        retry_base_ms=50,
        max_retries=1,
        circuit_cooldown_ms=100,
    ) as r:
        for client, capacities in clients.items():
            await r.send(
                *(register(client, f"{client}-s{i}", cap) for i, cap in enumerate(capacities))
            )
        tasks = [
            (rnd.choice(list(clients)), f"t{i:03d}", rnd.choice(SESSION_OPS)) for i in range(90)
        ]
        for start in range(0, len(tasks), 30):
            await r.send(*(submit(c, t, op) for c, t, op in tasks[start : start + 30]))
            await asyncio.sleep(0.05)
        events = await r.wait(
            lambda es: (
                len({e.task_id for e in es if isinstance(e, (ev.TaskCompleted, ev.TaskFailed))})
                == len(tasks)
            ),
            timeout_s=60,
        )
        received = list(r.executor.received)

    occupancy = Occupancy()
    for e in events:
        occupancy.fold(e)
    assert occupancy.assigned >= len(tasks) // 2
    # Capacity was actually used: some session held more than one unit at once.
    assert any(occupancy.peak[s] > 1 for s in occupancy.peak)
    owner = occupancy.owner
    client_of = {t: c for c, t, _ in tasks}
    for rec in received:
        a = rec.assignment
        assert a.session_id is not None and owner[a.session_id] == a.client_id
        assert all(client_of[item.task_id] == a.client_id for item in a.items)


async def test_a_failing_session_turns_unhealthy_gets_no_work_and_is_probed_after_cooldown(
    make_settings: Callable[..., Settings],
) -> None:
    cooldown_ms = 1500
    bad_runs: list[str] = []

    def script(a: Assignment) -> Reply:
        if a.session_id == "bad":
            bad_runs.append(str(a.task_id))
            if len(bad_runs) <= 3:  # three failures in a row open the circuit
                return Reply(success=False, error="browser crashed")
        return Reply(output={"by": a.session_id})

    async with rig(
        make_settings, script, circuit_cooldown_ms=cooldown_ms, max_retries=0, delay=False
    ) as r:
        await r.send(register("A", "bad"), register("A", "good"))
        await r.send(*(submit("A", f"w{i:02d}", "conversation_send") for i in range(30)))

        def probing(es: list[Any]) -> bool:
            return any(
                isinstance(e, ev.SessionHealthChanged) and e.circuit == "half_open" for e in es
            )

        await r.wait(probing, timeout_s=20)
        await r.send(*(submit("A", f"p{i}", "conversation_send", priority=1) for i in range(6)))
        events = await r.wait(
            lambda es: (
                any(
                    isinstance(e, ev.SessionHealthChanged)
                    and e.session_id == "bad"
                    and e.circuit == "closed"
                    and e.status == "healthy"
                    for e in es
                )
                and sum(isinstance(e, ev.TaskCompleted) for e in es) >= 27 + 6
            ),
            timeout_s=20,
        )

    health = [e for e in events if isinstance(e, ev.SessionHealthChanged)]
    assert all(h.session_id == "bad" for h in health)
    opened = next(h for h in health if h.circuit == "open")
    assert opened.status == "unhealthy" and opened.score < 0.3
    half_open = next(h for h in health if h.circuit == "half_open")
    closed = next(h for h in health[health.index(half_open) :] if h.circuit == "closed")
    assert health[0].status == "degraded" and health[0].circuit == "closed"
    assert half_open.occurred_at_ms - opened.occurred_at_ms >= cooldown_ms

    failures = [e for e in events if isinstance(e, ev.TaskAttemptFailed)]
    assert len(failures) == 3 and {f.session_id for f in failures} == {"bad"}

    # While the circuit was open: work kept flowing, none of it to the bad session.
    assigned = [e for e in events if isinstance(e, ev.TaskAssigned)]
    while_open = [
        a for a in assigned if opened.occurred_at_ms <= a.occurred_at_ms < half_open.occurred_at_ms
    ]
    index_open, index_half = events.index(opened), events.index(half_open)
    between = [e for e in events[index_open:index_half] if isinstance(e, ev.TaskAssigned)]
    assert between and all(a.session_id == "good" for a in between)
    assert all(a.session_id == "good" for a in while_open)
    # Half-open: exactly one probe went to the bad session before the circuit closed.
    index_closed = events.index(closed)
    probes = [
        e
        for e in events[index_half:index_closed]
        if isinstance(e, ev.TaskAssigned) and e.session_id == "bad"
    ]
    assert len(probes) == 1
    probe_done = next(
        e for e in events if isinstance(e, ev.TaskCompleted) and e.task_id == probes[0].task_id
    )
    assert probe_done.session_id == "bad"
    assert closed.score >= 0.8 and closed.status == "healthy"
    assert bad_runs[3] == probes[0].task_id  # the probe was the first run after the failures
