"""Recurring schedules, templates and far-future starts (``streams.domain.schedules``,
``streams.domain.timers``), given/when/then."""

from __future__ import annotations

from typing import Any

from schemas import commands as c
from schemas import events as ev
from schemas.recurrence import Recurrence, next_after
from tests.support.gwt import Harness, names, of, submit

HOUR = 3_600_000


def schedule(schedule_id: str = "every2s", **kw: Any) -> c.CreateSchedule:
    fields: dict[str, Any] = {
        "interval_ms": 2000,
        "task": {"operation": "contact_update", "payload": {"n": 1}},
    }
    fields.update(kw)
    return c.CreateSchedule(client_id="A", schedule_id=schedule_id, **fields)


def fired(h: Harness) -> list[ev.ScheduleFired]:
    return of(h.log, ev.ScheduleFired)


def test_a_task_scheduled_hours_ahead_is_started_by_the_tick_at_its_time() -> None:
    h = Harness()
    h.when(submit("later", scheduled_for_ms=6 * HOUR), at=1_000).then_names(
        "TaskAccepted", "TaskScheduled"
    )
    for at in (2_000, HOUR, 6 * HOUR - 1):
        h.when_tick(at).then()  # nothing while it waits
    assert names(h.tick(6 * HOUR))[:2] == ["TaskQueued", "TaskBatched"]
    assert of(h.log, ev.TaskQueued)[0].reason == "scheduled"
    assert h.tick(6 * HOUR + 100) == []  # started once


def test_the_timer_survives_a_reload_and_a_replay() -> None:
    h = Harness().given(submit("later", scheduled_for_ms=HOUR), at=5)
    for state in (h.reloaded(), h.replayed()):
        assert state.due_timers(HOUR) == [(HOUR, 0, "later")]
        assert state.due_timers(HOUR - 1) == []


def test_a_cancelled_scheduled_task_does_not_start() -> None:
    h = Harness().given(submit("later", scheduled_for_ms=HOUR), at=5)
    h.do(c.CancelTask(client_id="A", task_id="later"))
    h.when_tick(HOUR).then()
    assert h.state.timers == []  # the stale timer was dropped


def test_a_schedule_submits_one_task_per_occurrence() -> None:
    h = Harness()
    (created,) = h.do(schedule(), at=10_000)
    assert isinstance(created, ev.ScheduleCreated) and created.next_at_ms == 12_000
    h.when_tick(11_999).then()
    events = h.tick(12_000)
    assert names(events)[:2] == ["ScheduleFired", "TaskAccepted"]
    assert of(events, ev.TaskAccepted)[0].task_id == "every2s@12000"
    assert of(events, ev.TaskAccepted)[0].payload == {"n": 1}
    assert h.tick(12_050) == []
    h.tick(14_000)
    assert [f.task_id for f in fired(h)] == ["every2s@12000", "every2s@14000"]


def test_missed_occurrences_run_once_each_by_default() -> None:
    h = Harness().given(schedule(), at=10_000)
    for at in (19_000, 19_100, 19_200, 19_300, 19_400):  # a processor back after 7 s
        h.tick(at)
    assert [f.occurrence_ms for f in fired(h)] == [12_000, 14_000, 16_000, 18_000]
    assert h.state.schedules["every2s"].next_at_ms == 20_000


def test_missed_occurrences_can_be_skipped() -> None:
    h = Harness().given(schedule(missed="skip"), at=10_000)
    h.tick(19_000)
    h.tick(19_100)
    (only,) = fired(h)
    assert (only.occurrence_ms, only.skipped, only.next_at_ms) == (18_000, 3, 20_000)


def test_a_redelivered_create_is_a_no_op_and_a_different_one_is_refused() -> None:
    h = Harness().given(schedule(), at=10_000)
    h.when(schedule(), at=10_500).then()
    (refused,) = h.do(schedule(interval_ms=5000))
    assert isinstance(refused, ev.ScheduleRejected) and "different" in refused.reason


def test_bad_schedules_are_refused_naming_the_field() -> None:
    cases = {
        "cron": schedule(cron="not a cron at all", interval_ms=None),
        "cron or interval_ms": schedule(interval_ms=None),
        "timezone": schedule(timezone="Mars/Olympus"),
        "missed": schedule(missed="sometimes"),
        "task.operation": schedule(task={"payload": {}}),
        "task: unknown operation": schedule(task={"operation": "teleport"}),
        "task.priority": schedule(task={"operation": "contact_update", "priority": 9}),
        "template": schedule(template="nope"),
    }
    for field, command in cases.items():
        (refused,) = Harness().do(command)
        assert isinstance(refused, ev.ScheduleRejected), field
        assert refused.reason.startswith(field), (field, refused.reason)


def test_a_deleted_schedule_stops() -> None:
    h = Harness().given(schedule(), at=10_000)
    h.tick(12_000)
    h.when(c.DeleteSchedule(client_id="A", schedule_id="every2s")).then_names("ScheduleDeleted")
    h.tick(14_000)
    assert len(fired(h)) == 1
    (refused,) = h.do(c.DeleteSchedule(client_id="A", schedule_id="every2s"))
    assert isinstance(refused, ev.ScheduleRejected) and refused.reason == "unknown schedule"


def test_a_schedule_ends_at_its_end() -> None:
    h = Harness().given(schedule(end_at_ms=14_000), at=10_000)
    h.tick(12_000)
    h.tick(14_000)
    assert [f.next_at_ms for f in fired(h)] == [14_000, None]
    h.tick(16_000)
    assert len(fired(h)) == 2


def test_cron_schedules_follow_the_time_zone() -> None:
    h = Harness()
    start = 1_767_225_600_000  # 2026-01-01T00:00:00Z = 01:00 in Berlin
    (created,) = h.do(
        schedule(cron="30 9 * * *", interval_ms=None, timezone="Europe/Berlin"), at=start
    )
    assert isinstance(created, ev.ScheduleCreated)
    assert created.next_at_ms == start + 8 * HOUR + 30 * 60_000  # 09:30 CET = 08:30Z


def test_templates_give_the_defaults_of_a_schedule() -> None:
    h = Harness()
    h.when(
        c.DefineTemplate(
            client_id="A",
            name="sync",
            task={"operation": "contact_update", "priority": 1, "payload": {"a": 1, "b": 1}},
        )
    ).then_names("TemplateDefined")
    (created,) = h.do(schedule(template="sync", task={"payload": {"b": 2}}), at=10_000)
    assert isinstance(created, ev.ScheduleCreated)
    assert created.task == {
        "operation": "contact_update",
        "priority": 1,
        "payload": {"a": 1, "b": 2},
    }
    h.tick(12_000)
    (accepted,) = of(h.log, ev.TaskAccepted)
    assert (accepted.priority, accepted.payload) == (1, {"a": 1, "b": 2})
    h.when(c.DeleteTemplate(client_id="A", name="sync")).then_names("TemplateDeleted")
    (refused,) = h.do(c.DeleteTemplate(client_id="A", name="sync"))
    assert isinstance(refused, ev.CommandRejected)


def test_schedules_and_templates_survive_a_reload_and_a_replay() -> None:
    h = Harness().given(
        c.DefineTemplate(client_id="A", name="t", task={"priority": 2}),
        schedule(),
        at=10_000,
    )
    h.tick(12_000)
    for state in (h.reloaded(), h.replayed()):
        assert state == h.state
        assert state.due_timers(14_000) == [(14_000, 1, "every2s")]


def test_interval_occurrences_count_from_the_start() -> None:
    rec = Recurrence(None, 2000, "UTC", 1_001, None, anchor_ms=0)
    assert next_after(rec, 0) == 1_001
    assert next_after(rec, 1_001) == 3_001


def test_a_submit_naming_a_template_takes_its_defaults() -> None:
    h = Harness().given(
        c.DefineTemplate(
            client_id="A", name="sync", task={"priority": 1, "payload": {"a": 1, "b": 1}}
        )
    )
    (accepted, *_) = h.do(submit("t1", template="sync", payload={"b": 2}, max_retries=5))
    assert isinstance(accepted, ev.TaskAccepted)
    assert (accepted.priority, accepted.payload, accepted.max_retries) == (1, {"a": 1, "b": 2}, 5)
    (refused,) = h.do(submit("t2", template="nope"))
    assert isinstance(refused, ev.TaskRejected) and refused.reason.startswith("template:")
