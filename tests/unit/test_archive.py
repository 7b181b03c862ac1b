"""Finished tasks live in the partition's store, not in memory (``streams.domain.archive``)."""

from __future__ import annotations

from pathlib import Path

from schemas import commands as c
from schemas import events as ev
from streams.distributor import Distributor
from streams.domain import PartitionState, decide, evolve
from streams.runtime.store import PartitionStore, StoredOffsets
from streams.settings import Settings
from tests.support.gwt import CONFIG, names, register, submit

N = 40


def _apply(
    app: Distributor, store: PartitionStore, state: PartitionState, events: list[ev.Event]
) -> None:
    """One processor cycle: fold, then state and offsets in one WriteBatch, then flush."""
    for event in events:
        evolve(state, event)
    store.write(app.dump_changes(state), StoredOffsets(0, 0))
    app.persisted(state)


def _run(
    app: Distributor, store: PartitionStore, state: PartitionState, command: c.Command, now: int
) -> list[ev.Event]:
    events = decide(command, state, now, CONFIG)
    _apply(app, store, state, events)
    return events


def _finish_n(app: Distributor, store: PartitionStore, state: PartitionState) -> None:
    _run(app, store, state, register("s1", max_concurrent=N), 1)
    for i in range(N):
        _run(app, store, state, submit(f"t{i}", operation="integration_sync"), 10 + i)
    for i in range(N):
        task = state.task(f"t{i}")
        assert task is not None and task.fencing_token is not None
        report = c.ReportResult(
            client_id="A", task_id=f"t{i}", fencing_token=task.fencing_token, success=True
        )
        assert "TaskCompleted" in names(_run(app, store, state, report, 100 + i))


def test_finished_tasks_leave_memory_and_are_still_recognised_after_a_restart(
    tmp_path: Path,
) -> None:
    app = Distributor(Settings())
    store, _ = PartitionStore.open(tmp_path / "p0")
    state = app.load_state(store)
    _finish_n(app, store, state)
    assert len(state.tasks) == 0  # all N finished: none of them is held in memory
    assert len(state.all_tasks()) == N and state.retired == []  # they are in the store
    for restart in (False, True):
        if restart:
            store.close()
            store, _ = PartitionStore.open(tmp_path / "p0")
            state = app.load_state(store)
            assert len(state.tasks) == 0
        # a duplicate submit of a finished task is a redelivery; a different spec is refused
        assert decide(submit("t3", operation="integration_sync"), state, 500, CONFIG) == []
        (refused,) = decide(submit("t3", operation="tag_add"), state, 500, CONFIG)
        assert isinstance(refused, ev.TaskRejected) and "different specification" in refused.reason
        # depending on a finished task: admitted at once
        events = decide(
            submit("after", operation="integration_sync", depends_on=["t5"]), state, 500, CONFIG
        )
        assert "TaskWaiting" not in names(events) and "TaskQueued" in names(events)
        # a command naming a finished task is refused as finished, not as unknown
        (cancel,) = decide(c.CancelTask(client_id="A", task_id="t7"), state, 500, CONFIG)
        assert isinstance(cancel, ev.TaskRejected) and cancel.reason == "task already completed"
    store.close()


def test_a_dependant_waits_while_its_dependency_runs_and_goes_when_it_finished(
    tmp_path: Path,
) -> None:
    app = Distributor(Settings())
    store, _ = PartitionStore.open(tmp_path / "p0")
    state = app.load_state(store)
    _run(app, store, state, register("s1", max_concurrent=4), 1)
    _run(app, store, state, submit("dep", operation="integration_sync"), 2)
    assert "TaskWaiting" in names(
        _run(app, store, state, submit("w", operation="integration_sync", depends_on=["dep"]), 3)
    )
    task = state.task("dep")
    assert task is not None and task.fencing_token is not None
    store.close()
    store, _ = PartitionStore.open(tmp_path / "p0")
    state = app.load_state(store)  # restart while waiting
    report = c.ReportResult(
        client_id="A", task_id="dep", fencing_token=task.fencing_token, success=True
    )
    events = _run(app, store, state, report, 4)
    assert "TaskCompleted" in names(events) and any(
        isinstance(e, ev.TaskQueued) and e.task_id == "w" for e in events
    )
    assert "dep" not in state.tasks and state.task("dep") is not None  # released: in the store
    store.close()
