"""The state's journal: a decision's writes are undone, and the records a caller holds never
change under it, whichever kinds of record share an id."""

from __future__ import annotations

from streams.domain.dispatch_records import ClientRecord
from streams.domain.state import Meta, PartitionState, ScheduleRecord


def _schedule(schedule_id: str) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=schedule_id,
        client_id="A",
        cron=None,
        interval_ms=1000,
        timezone="UTC",
        start_at_ms=None,
        end_at_ms=None,
        missed="run",
        task={},
        spec_digest="d",
        created_at_ms=0,
        next_at_ms=1000,
    )


def test_records_of_different_kinds_with_one_id_are_each_copied_before_an_edit() -> None:
    state = PartitionState()
    state.schedules["A"] = schedule = _schedule("A")
    state.clients["A"] = client = ClientRecord("A")
    state.dirty = set()
    state.begin()
    state.edit_schedule("A").fired = 5
    state.edit_client("A").paused_until_ms = 9  # the same id as the schedule: its own copy
    state.edit_meta().seq = 3
    assert (state.schedules["A"].fired, state.clients["A"].paused_until_ms) == (5, 9)
    state.rollback()
    assert state.schedules["A"] is schedule and schedule.fired == 0
    assert state.clients["A"] is client and client.paused_until_ms == 0
    assert state.meta == Meta() and state.dirty == set()


def test_a_record_added_in_a_decision_is_removed_by_the_rollback() -> None:
    state = PartitionState()
    state.begin()
    state.add_schedule(_schedule("S"))
    state.edit_schedule("S").fired = 1  # new in this decision: edited in place
    state.rollback()
    assert state.schedules == {}
