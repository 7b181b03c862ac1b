"""Retention: finished tasks and completed batch jobs are forgotten after the window.

See ``streams.domain.retention`` for the rules; these tests pin them down one by one.
"""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from schemas.catalog import UNLIMITED
from streams.domain import tick
from streams.domain.retention import FORGET_LIMIT, sweep_ms
from streams.state_codec import load_state, retired_key
from tests.support.gwt import Harness, config, names, of, register, submit

RETENTION = 10_000
SWEEP = sweep_ms(RETENTION)  # a sweep starts once the oldest is this much past the window
DUE = RETENTION + SWEEP
# Many tasks of one client in a few ms: no rate limit here (``test_domain_rates`` has them).
CFG = config(task_retention_ms=RETENTION, client_rate_limit=UNLIMITED)
POOL_OP = "integration_sync"  # no session, not batchable: assigned to the pool at once
BATCH_OP = "contact_update"  # needs a session, batchable


def finished(
    task_id: str = "t1", at: int = 100, client: str = "A", h: Harness | None = None
) -> Harness:
    """A harness where ``task_id`` was submitted at ``at - 10`` and completed at ``at``."""
    h = h if h is not None else Harness(CFG)
    h.do(submit(task_id, operation=POOL_OP, client=client), at=at - 10)
    h.succeed(task_id, at=at)
    return h


def forgotten(h: Harness) -> list[str]:
    return [t for e in of(h.log, ev.TasksForgotten) for t in e.task_ids]


def store_of(h: Harness, store: dict[bytes, bytes]) -> None:
    """What the harness's store holds now (it writes each step's changes, incrementally)."""
    store.clear()
    store.update(h.store.data)


def test_a_finished_task_is_kept_until_the_window_and_the_sweep_delay_have_passed() -> None:
    assert SWEEP == 1_000  # a tenth of the window (at most a minute)
    h = finished(at=100)
    h.when_tick(100 + DUE - 1).then()
    assert h.status("t1") == "completed"


def test_a_sweep_forgets_everything_finished_before_the_window() -> None:
    h = finished("t1", at=100)
    finished("t2", at=1_100, h=h)
    finished("t3", at=1_101, h=h)
    h.when_tick(100 + DUE).then(
        ev.TasksForgotten(
            client_id="A",
            occurred_at_ms=100 + DUE,
            finished_by_ms=100 + SWEEP,
            task_ids=["t1", "t2"],
        )
    )
    assert set(h.state.all_tasks()) == {"t3"} and h.state.tasks == {}  # t3 is in the store
    h.when_tick(100 + DUE + 1).then()  # t3 waits for the next sweep
    h.when_tick(1_101 + DUE).then_names("TasksForgotten")
    h.when_tick(100 * DUE).then()  # forgotten once


def test_failed_cancelled_and_rejected_tasks_are_forgotten_too() -> None:
    h = Harness(CFG)
    h.do(submit("fails", operation=POOL_OP, max_retries=0), at=10)
    h.fail("fails", at=20)
    h.do(submit("cancelled", operation=POOL_OP), at=30)
    h.do(c.CancelTask(client_id="A", task_id="cancelled"), at=40)
    h.do(submit("reviewed", operation=POOL_OP, requires_review=True), at=50)
    h.do(c.RejectTask(client_id="A", task_id="reviewed"), at=60)
    assert [h.status(t) for t in ("fails", "cancelled", "reviewed")] == [
        "failed",
        "cancelled",
        "rejected",
    ]
    h.tick(60 + DUE)
    assert forgotten(h) == ["fails", "cancelled", "reviewed"]  # in the order they finished
    assert h.state.tasks == {}


def test_unfinished_tasks_are_never_forgotten() -> None:
    h = Harness(CFG).given(
        submit("queued", operation="workflow_trigger"),  # no session: stays queued
        submit("review", operation=POOL_OP, requires_review=True),
        submit("waiting", operation=POOL_OP, depends_on=["nobody"]),
        submit("running", operation=POOL_OP),
        at=10,
    )
    h.tick(100 * RETENTION)
    assert forgotten(h) == []
    assert set(h.state.tasks) == {"queued", "review", "waiting", "running"}


def test_a_resubmit_within_the_window_is_a_redelivery() -> None:
    h = finished(at=100)
    h.when(submit("t1", operation=POOL_OP), at=100 + RETENTION - 1).then()
    h.when_tick(100 + RETENTION - 1).then()
    # the window is a minimum: until the sweep, a resubmit is still a redelivery
    h.when(submit("t1", operation=POOL_OP), at=100 + DUE - 1).then()
    assert h.status("t1") == "completed"


def test_a_resubmit_after_the_task_was_forgotten_is_a_new_task() -> None:
    h = finished(at=100)
    h.tick(100 + DUE)
    events = h.do(submit("t1", operation=POOL_OP, payload={"again": True}), at=100 + DUE)
    assert names(events) == ["TaskAccepted", "TaskQueued", "TaskAssigned"]
    assert h.status("t1") == "assigned" and h.record("t1").payload == {"again": True}
    # ... and the new task is forgotten in its own time, not the old one's.
    h.succeed("t1", at=200 + DUE)
    h.when_tick(199 + 2 * DUE).then()
    h.when_tick(200 + 2 * DUE).then_names("TasksForgotten")


def test_a_different_spec_within_the_window_is_still_refused() -> None:
    h = finished(at=100)
    events = h.do(submit("t1", operation=POOL_OP, payload={"other": 1}), at=200)
    assert names(events) == ["TaskRejected"]
    assert "duplicate task_id" in events[0].reason  # type: ignore[attr-defined]


def test_commands_about_a_forgotten_task_name_an_unknown_task() -> None:
    h = finished(at=100)
    h.tick(100 + DUE)
    h.when(c.CancelTask(client_id="A", task_id="t1"), at=100 + DUE).then(
        ev.TaskRejected(
            client_id="A",
            task_id="t1",
            occurred_at_ms=100 + DUE,
            reason="unknown task",
            command="CancelTask",
        )
    )


def test_one_tick_forgets_at_most_the_limit_in_one_event_per_client() -> None:
    h = Harness(CFG)
    total = FORGET_LIMIT + 20
    for i in range(total):
        finished(f"t{i:04d}", at=100 + i // 2, client="AB"[i % 2], h=h)
    events = h.tick(100 + total + DUE)
    first = of(events, ev.TasksForgotten)
    assert len(first) == len(events) == 2
    assert [e.client_id for e in first] == ["A", "B"]
    ids = [t for e in first for t in e.task_ids]
    assert len(ids) == FORGET_LIMIT
    # the oldest first: (finished at, id) order, so the first 500 by index here
    assert sorted(ids) == [f"t{i:04d}" for i in range(FORGET_LIMIT)]
    second = of(h.tick(101 + total + DUE), ev.TasksForgotten)
    rest = [t for e in second for t in e.task_ids]
    assert sorted(rest) == [f"t{i:04d}" for i in range(FORGET_LIMIT, total)]
    assert h.state.tasks == {}
    assert h.tick(102 + total + DUE) == []
    # the index holds nothing of what was forgotten, also in a state replayed from the log
    assert list(h.state.retired_until(h.now)) == []
    assert list(h.replayed().retired_until(h.now)) == []


def test_a_completed_dependency_is_kept_while_a_dependant_waits() -> None:
    h = finished("dep", at=100)
    h.do(submit("child", operation=POOL_OP, depends_on=["dep", "later"]), at=200)
    assert h.status("child") == "waiting"
    h.tick(100 + 5 * RETENTION)
    assert forgotten(h) == []
    assert h.status("dep") == "completed"  # the dependant still needs to see it completed
    # "later" arrives and completes: the dependant goes, and "dep" may be forgotten.
    now = 100 + 5 * RETENTION
    finished("later", at=now + 10, h=h)
    assert h.status("child") == "assigned"
    h.when_tick(now + 11).then_names("TasksForgotten")
    assert forgotten(h) == ["dep"]


def test_a_dependant_submitted_after_its_dependency_was_forgotten_waits_like_for_an_unknown_id() -> (
    None
):
    h = finished("dep", at=100)
    h.tick(100 + DUE)
    at = 100 + DUE
    h.when(submit("child", operation=POOL_OP, depends_on=["dep"]), at=at).then_names(
        "TaskAccepted", "TaskWaiting"
    )
    never_seen = Harness(CFG)
    never_seen.when(submit("child", operation=POOL_OP, depends_on=["dep"]), at=at).then_names(
        "TaskAccepted", "TaskWaiting"
    )
    # the id may be submitted again; its completion releases the dependant
    finished("dep", at=at + 20, h=h)
    assert h.status("child") == "assigned"


def test_a_finished_item_is_kept_while_its_batch_is_open() -> None:
    h = Harness(CFG).given(
        submit("b1", operation=BATCH_OP), submit("b2", operation=BATCH_OP), at=10
    )
    batch_id = h.record("b1").batch_id
    assert batch_id is not None and h.record("b2").batch_id == batch_id
    h.do(c.CancelTask(client_id="A", task_id="b1"), at=20)
    h.tick(20 + 3 * RETENTION)  # no session: the batch waits, b2 with it
    assert forgotten(h) == [] and batch_id in h.state.batches
    h.do(c.CancelTask(client_id="A", task_id="b2"), at=30 + 3 * RETENTION)
    assert batch_id not in h.state.batches
    h.tick(31 + 3 * RETENTION)
    assert forgotten(h) == ["b1"]  # b2 finished within the window
    h.tick(30 + 3 * RETENTION + DUE)
    assert forgotten(h) == ["b1", "b2"]


def test_a_completed_batch_job_is_forgotten_after_the_window_a_running_one_never() -> None:
    def job(job_id: str) -> c.SubmitBatchJob:
        return c.SubmitBatchJob(
            client_id="A",
            batch_job_id=job_id,
            operation=POOL_OP,
            items=[c.BatchJobItem(payload={"n": i}) for i in range(2)],
            parallelism=2,
        )

    h = Harness(CFG).given(job("done"), job("running"), at=10)
    h.succeed("done.0", at=20)
    h.succeed("done.1", at=30)
    h.succeed("running.0", at=30)
    assert h.state.batch_jobs["done"].completed_at_ms == 30
    h.when(job("done"), at=29 + RETENTION).then()  # a redelivery within the window
    events = h.tick(30 + DUE)
    assert events == [
        ev.TasksForgotten(
            client_id="A",
            occurred_at_ms=30 + DUE,
            finished_by_ms=30 + SWEEP,
            task_ids=["done.0", "done.1", "running.0"],
            batch_job_ids=["done"],
        )
    ]
    assert set(h.state.batch_jobs) == {"running"}
    assert set(h.state.tasks) == {"running.1"}
    # the job keeps the result of its forgotten child and completes with it
    events = h.succeed("running.1", at=40 + RETENTION)
    done = of(events, ev.BatchJobCompleted)
    assert done and [r.task_id for r in done[0].results] == ["running.0", "running.1"]
    h.tick(100 * RETENTION)
    assert h.state.batch_jobs == {} and h.state.tasks == {}
    # a forgotten job id is a new job
    assert names(h.do(job("done"), at=100 * RETENTION))[0] == "BatchJobAccepted"


def test_replaying_and_reloading_give_the_state_that_forgot() -> None:
    h = Harness(CFG).given(register("s1"), at=0)
    for i in range(6):
        finished(f"t{i}", at=100 + 500 * i, h=h)
    h.do(submit("child", operation=POOL_OP, depends_on=["t0", "x"]), at=2_600)
    h.tick(1_100 + DUE)  # up to 2_100: t1..t4 (t0 is pinned by the waiting child)
    assert forgotten(h) == ["t1", "t2", "t3", "t4"]
    for state in (h.replayed(), h.reloaded()):
        assert state == h.state
        assert state.indices() == h.state.indices()
    # and a recovered state goes on forgetting exactly like the live one
    for now in (2_600 + DUE, 10 * DUE):
        assert tick(h.reloaded(), now, h.config) == tick(h.state, now, h.config)
        assert tick(h.replayed(), now, h.config) == tick(h.state, now, h.config)


def test_forgetting_deletes_the_store_keys() -> None:
    store: dict[bytes, bytes] = {}
    h = finished("t1", at=100)
    finished("t2", at=5_000, h=h)
    store_of(h, store)
    assert {b"done/t1", b"done/t2"} <= set(store)  # finished tasks: under their own keys
    assert not any(key.startswith(b"task/") for key in store)
    h.tick(100 + DUE)
    store_of(h, store)
    assert b"done/t1" not in store and b"done/t2" in store
    assert [k for k in store if k.startswith(b"retired/")] == [retired_key((5_000, 0, "t2"))]
    loaded = load_state(store.items())
    assert loaded == h.state and loaded.indices() == h.state.indices()
    h.tick(5_000 + DUE)
    store_of(h, store)
    assert not any(key.startswith((b"task/", b"done/", b"retired/")) for key in store)
    assert load_state(store.items()) == h.state


def test_the_retention_index_is_rebuilt_on_load() -> None:
    h = finished("t1", at=100)
    finished("t0", at=100, h=h)
    finished("t2", at=150, h=h)
    assert h.reloaded().indices()["retired"] == [(100, 0, "t0"), (100, 0, "t1"), (150, 0, "t2")]
    assert h.reloaded().indices() == h.state.indices()


def test_a_recovered_state_starts_sweeps_exactly_like_the_live_one() -> None:
    # "dep" stays (a waiting task depends on it); the live state dropped it from its index at
    # the first sweep, a reloaded state still has it there: neither may start a sweep for it.
    h = finished("dep", at=100)
    h.do(submit("child", operation=POOL_OP, depends_on=["dep", "later"]), at=200)
    h.tick(100 + DUE)
    finished("t1", at=5_000, h=h)
    for now in (5_000 + RETENTION + 10, 5_000 + DUE - 1, 5_000 + DUE):
        assert tick(h.reloaded(), now, h.config) == tick(h.state, now, h.config)
        assert tick(h.replayed(), now, h.config) == tick(h.state, now, h.config)
    assert h.tick(5_000 + DUE - 1) == []
    assert forgotten(h) == [] and names(h.tick(5_000 + DUE)) == ["TasksForgotten"]
    assert forgotten(h) == ["t1"]
