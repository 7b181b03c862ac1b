"""A scripted event log covering every task state, batches, retries, a dead letter and several
sessions, with the state each task must end in. Shared by the view tests."""

from __future__ import annotations

from tests.support.view_scenario import EXPECTED_STATES, scenario


def test_the_scenario_ends_every_task_in_its_expected_state() -> None:
    from projections.memory import MemorySource
    from projections.reader import ProjectionReader

    source = MemorySource()
    for event in scenario():
        source.feed(event)
    source.flush()
    reader = ProjectionReader(source)
    states = {task_id: reader.task(task_id).state for task_id in EXPECTED_STATES}  # type: ignore[union-attr]
    assert states == EXPECTED_STATES
    every_state = {
        "pending_review",
        "scheduled",
        "waiting",
        "queued",
        "batched",
        "assigned",
        "in_progress",
        "retry_scheduled",
        "completed",
        "failed",
        "cancelled",
        "rejected",
    }
    assert set(EXPECTED_STATES.values()) == every_state
    status = reader.status()
    assert status.queue_length == 4  # b-queued, g-approved, d-req, and b-open (batched)
    assert status.active_assignments == 2  # a-running, a-assigned
    assert status.failed_tasks_awaiting_retry == 2  # a-retry, b-3
    assert status.active_batches == 1  # B-2 still open
    assert status.active_sessions == 4  # sa1, sa2, sb1, sd1
    assert status.session_health == {"healthy": 3, "degraded": 1, "unhealthy": 0}
    assert status.dead_letters == 1
    assert reader.session("sd2").state == "released"  # type: ignore[union-attr]
    assert reader.session("sd-old").state == "cleaned"  # type: ignore[union-attr]
    assert reader.session("sa1").in_flight == 1  # type: ignore[union-attr]
    assert reader.task("a-running").progress == 0.5  # type: ignore[union-attr]
    assert reader.task("g-cancel").history[-1].type == "task.rejected"  # type: ignore[union-attr]
