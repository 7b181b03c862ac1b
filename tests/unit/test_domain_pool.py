"""Pool work like session work (``streams.domain.pool``): registered capacity bounds it, the
best work goes first across the partition's clients, aging lifts what waits."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from schemas.catalog import UNLIMITED, OperationSpec, load_catalog
from streams.domain import pool
from tests.support.gwt import Harness, config, names, of, submit

CRITICAL_POOL = "urgent_ping"  # urgency 1, no session (added below)
BACKGROUND_POOL = "integration_sync"  # urgency 5, no session
AGING = 1000
CATALOG = {
    **load_catalog(),
    CRITICAL_POOL: OperationSpec(
        name=CRITICAL_POOL, urgency=1, expected_duration_ms=100, session_required=False
    ),
}
CFG = config(catalog=CATALOG, client_rate_limit=UNLIMITED, aging_step_ms=AGING)


def capacity(n: int, member: str = "m1") -> c.RegisterPool:
    return c.RegisterPool(client_id=member, partition=0, capacity=n)


def assigned(events: list[ev.Event]) -> list[str]:
    return [e.task_id for e in of(events, ev.TaskAssigned)]


def bounded(n: int = 1) -> Harness:
    return Harness(CFG).given(capacity(n), at=0)


def reminder(task_id: str, client: str = "A") -> c.SubmitTask:
    return submit(task_id, operation=CRITICAL_POOL, client=client)


def test_pool_work_waits_for_registered_capacity_and_goes_within_it() -> None:
    h = bounded(2)
    went = []
    for i in range(4):
        went += assigned(h.do(submit(f"s{i}", operation=BACKGROUND_POOL), at=10 + i))
    assert went == ["s0", "s1"]
    assert [h.status(f"s{i}") for i in range(4)] == ["assigned", "assigned", "queued", "queued"]
    assert pool.free_capacity(h.state) == 0
    # A result frees a unit: the next one goes, in arrival order.
    assert assigned(h.succeed("s0", at=20)) == ["s2"]
    assert h.replayed() == h.state
    assert h.reloaded().indices() == h.state.indices()


def test_critical_pool_work_of_one_client_overtakes_background_work_of_another() -> None:
    h = bounded(1)
    for i in range(3):
        h.do(submit(f"bg{i}", operation=BACKGROUND_POOL, client="B"), at=10 + i)
    h.do(reminder("crit", client="A"), at=20)
    assert h.status("crit") == "queued"  # bg0 holds the only unit
    assert assigned(h.succeed("bg0", at=30)) == ["crit"]
    assert assigned(h.succeed("crit", at=40)) == ["bg1"]


def test_aging_lifts_waiting_background_pool_work_over_newer_critical_work() -> None:
    h = bounded(1)
    h.do(submit("hold", operation=BACKGROUND_POOL), at=0)
    h.do(submit("old-bg", operation=BACKGROUND_POOL, client="B"), at=100)
    # Four aging steps later the background task competes as critical, and arrived first.
    h.do(reminder("new-crit"), at=100 + 4 * AGING)
    events = h.succeed("hold", at=100 + 4 * AGING + 1)
    assert assigned(events) == ["old-bg"]
    (handed,) = of(events, ev.TaskAssigned)
    assert handed.priority == 1  # aged from background to critical


def test_until_a_member_registers_pool_work_goes_at_once() -> None:
    h = Harness(CFG)
    events = h.do(submit("s0", operation=BACKGROUND_POOL), at=1)
    assert names(events) == ["TaskAccepted", "TaskQueued", "TaskAssigned"]
    assert pool.free_capacity(h.state) is None


def test_a_member_gone_stale_takes_its_capacity_with_it() -> None:
    h = Harness(config(catalog=CATALOG, client_rate_limit=UNLIMITED, session_stale_ms=1000))
    h.given(capacity(1), at=0)
    h.tick(999)
    events = h.tick(1000)
    assert of(events, ev.PoolReleased) == [
        ev.PoolReleased(client_id="m1", occurred_at_ms=1000, reason="stale")
    ]
    assert h.do(submit("s0", operation=BACKGROUND_POOL), at=1001)[-1].TYPE == "task.queued"
    assert h.status("s0") == "queued"
    # Registering again (the heartbeat) brings the capacity back, and the work goes.
    assert assigned(h.do(capacity(1), at=1002)) == ["s0"]


def test_a_release_withdraws_the_capacity_and_in_flight_work_keeps_its_unit() -> None:
    h = bounded(1)
    h.do(submit("s0", operation=BACKGROUND_POOL), at=1)
    h.do(c.ReleasePool(client_id="m1", partition=0, reason="shutdown"), at=2)
    assert h.state.pool.capacity == 0 and h.state.pool.bounded
    assert h.do(c.ReleasePool(client_id="m1", partition=0), at=3) == []  # already gone
    h.do(submit("s1", operation=BACKGROUND_POOL), at=4)
    h.do(capacity(1, member="m2"), at=5)
    assert h.status("s1") == "queued"  # s0 still holds the one unit
    assert assigned(h.succeed("s0", at=6)) == ["s1"]
