"""``evolve`` for schedule and template events (the rules that emit them: ``schedules``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from schemas import events as ev
from streams.domain.spec import canonical_json
from streams.domain.state import (
    TIMER_SCHEDULE,
    PartitionState,
    ScheduleRecord,
    TemplateRecord,
    template_id,
)


def schedule_digest(e: ev.ScheduleCreated) -> str:
    """What a repeated CreateSchedule is compared against (not time, not the first occurrence:
    a redelivery decided later computes a later one)."""
    doc = e.model_dump(mode="json", exclude={"client_id", "occurred_at_ms", "next_at_ms", "actor"})
    return hashlib.blake2b(canonical_json(doc).encode(), digest_size=16).hexdigest()


def _created(st: PartitionState, e: ev.ScheduleCreated) -> None:
    if e.schedule_id in st.schedules:
        return
    st.add_schedule(
        ScheduleRecord(
            schedule_id=e.schedule_id,
            client_id=e.client_id,
            cron=e.cron,
            interval_ms=e.interval_ms,
            timezone=e.timezone,
            start_at_ms=e.start_at_ms,
            end_at_ms=e.end_at_ms,
            missed=e.missed,
            task=dict(e.task),
            spec_digest=schedule_digest(e),
            created_at_ms=e.occurred_at_ms,
            next_at_ms=e.next_at_ms,
        )
    )
    if e.next_at_ms is not None:
        st.arm(e.next_at_ms, TIMER_SCHEDULE, e.schedule_id)


def _fired(st: PartitionState, e: ev.ScheduleFired) -> None:
    if e.schedule_id not in st.schedules:
        return
    schedule = st.edit_schedule(e.schedule_id)
    schedule.fired += 1
    schedule.skipped += e.skipped
    schedule.last_occurrence_ms = e.occurrence_ms
    schedule.next_at_ms = e.next_at_ms
    if e.next_at_ms is not None:
        st.arm(e.next_at_ms, TIMER_SCHEDULE, e.schedule_id)


def _deleted(st: PartitionState, e: ev.ScheduleDeleted) -> None:
    st.remove_schedule(e.schedule_id)


def _nothing(st: PartitionState, e: Any) -> None:
    """A refusal changes nothing."""


def _template_defined(st: PartitionState, e: ev.TemplateDefined) -> None:
    st.put_template(TemplateRecord(e.client_id, e.name, dict(e.task), e.occurred_at_ms))


def _template_deleted(st: PartitionState, e: ev.TemplateDeleted) -> None:
    st.remove_template(template_id(e.client_id, e.name))


SCHEDULE_FOLDS: dict[type[ev.Event], Callable[[PartitionState, Any], None]] = {
    ev.ScheduleCreated: _created,
    ev.ScheduleFired: _fired,
    ev.ScheduleDeleted: _deleted,
    ev.ScheduleRejected: _nothing,
    ev.TemplateDefined: _template_defined,
    ev.TemplateDeleted: _template_deleted,
}
