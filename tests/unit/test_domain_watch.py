"""Waiting made visible (``streams.domain.watch``): SLA breaches recorded while tasks wait,
once each; starved clients and their end."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from schemas.catalog import UNLIMITED
from tests.support.gwt import Harness, config, of, register, submit

CRITICAL = "workflow_trigger"  # urgency 1, session, not batchable
BATCHABLE = "contact_update"  # urgency 3, batchable
POOL_OP = "integration_sync"  # urgency 5, no session
CFG = config(
    client_rate_limit=UNLIMITED,
    sla_ms={1: 1000, 2: 5000, 3: 2000, 4: 10_000, 5: 10_000},
    starved_after_ms=3000,
    watch_interval_ms=1000,
    tick_interval_ms=100,
)


def breached(events: list[ev.Event]) -> list[str]:
    return [e.task_id for e in of(events, ev.TaskSlaBreached)]


def test_a_waiting_task_is_counted_once_when_it_passes_its_sla() -> None:
    h = Harness(CFG)
    h.do(submit("c1", operation=CRITICAL), at=0)
    h.do(submit("c2", operation=CRITICAL), at=500)
    h.do(submit("n1", operation=BATCHABLE), at=0)  # batched: waits in a batch
    assert breached(h.tick(1000)) == []  # c1 waited exactly its SLA: not over it
    assert breached(h.tick(2000)) == ["c1", "c2"]
    assert breached(h.tick(3000)) == ["n1"]
    assert breached(h.tick(4000)) == []  # once per wait
    (e,) = of(h.log, ev.TaskSlaBreached)[:1]
    assert (e.priority, e.queued_at_ms, e.sla_ms, e.at_assignment) == (1, 0, 1000, False)
    # Assigned later: not counted again.
    events = h.do(register("s1", max_concurrent=10), at=4500)
    assert breached(events) == [] and len(of(events, ev.TaskAssigned)) == 3
    assert h.replayed() == h.state
    assert h.reloaded().indices() == h.state.indices()


def test_a_task_that_crosses_its_sla_between_checks_is_counted_as_it_is_assigned() -> None:
    h = Harness(CFG)
    h.do(submit("c1", operation=CRITICAL), at=10)
    events = h.do(register("s1"), at=1500)  # no tick looked since it crossed at 1010
    assert [(e.task_id, e.at_assignment) for e in of(events, ev.TaskSlaBreached)] == [("c1", True)]
    assert breached(h.tick(2000)) == []


def test_only_ticks_near_the_watch_interval_look() -> None:
    h = Harness(CFG)
    h.do(submit("c1", operation=CRITICAL), at=0)
    assert breached(h.tick(1500)) == []  # not in the first ticks of a second
    assert breached(h.tick(2050)) == ["c1"]


def test_a_client_without_sessions_is_starved_then_served() -> None:
    h = Harness(CFG)
    h.do(submit("c1", operation=CRITICAL), at=0)
    h.do(submit("c2", operation=CRITICAL), at=100)
    assert of(h.tick(2000), ev.ClientStarved) == []  # not waited starved_after_ms yet
    (starved,) = of(h.tick(3000), ev.ClientStarved)
    assert (starved.reason, starved.waiting_tasks, starved.oldest_queued_at_ms) == (
        "no_session",
        2,
        0,
    )
    assert of(h.tick(4000), ev.ClientStarved) == []  # once per episode
    h.do(register("s1"), at=4500)
    (served,) = of(h.tick(5000), ev.ClientServed)
    assert served.starved_at_ms == 3000
    assert h.state.clients["A"].starved_at_ms is None


def test_open_circuits_starve_a_client_busy_sessions_do_not() -> None:
    h = Harness(CFG).given(register("s1"), at=0)
    h.do(submit("c1", operation=CRITICAL), at=0)  # takes the only slot
    h.do(submit("c2", operation=CRITICAL), at=0)
    assert of(h.tick(5000), ev.ClientStarved) == []  # busy, not starved
    h.given(
        ev.SessionHealthChanged(
            client_id="A",
            occurred_at_ms=5100,
            session_id="s1",
            score=0.2,
            status="unhealthy",
            previous_status="healthy",
            circuit="open",
        )
    )
    assert h.state.sessions["s1"].circuit == "open"
    (starved,) = of(h.tick(9000), ev.ClientStarved)
    assert starved.reason == "circuit_open"


def test_pool_work_with_no_pool_capacity_starves_its_client() -> None:
    h = Harness(CFG).given(c.RegisterPool(client_id="m1", partition=0, capacity=1), at=0)
    h.do(c.ReleasePool(client_id="m1", partition=0), at=1)
    h.do(submit("p1", operation=POOL_OP), at=10)
    (starved,) = of(h.tick(4000), ev.ClientStarved)
    assert starved.reason == "no_pool_capacity"
    h.do(c.RegisterPool(client_id="m2", partition=0, capacity=1), at=4100)
    assert h.status("p1") == "assigned"
    assert len(of(h.tick(5000), ev.ClientServed)) == 1
