"""When a recurring schedule fires: cron expressions (croniter) and fixed intervals.

Part of the contract (``CreateSchedule``): the occurrences of a schedule are a pure function of
its cron expression or interval, its time zone and its start and end, so the processor, the read
side and a client preview agree on them. Cron expressions are read by croniter (a maintained
library, five fields: minute hour day-of-month month day-of-week) in the schedule's IANA time
zone, so "0 9 * * *" in Europe/Berlin is 09:00 local time on both sides of a DST change.
Intervals count from ``start_at_ms`` (or the creation) in milliseconds, ignoring time zones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from pydantic import ValidationError

from schemas.commands import SubmitTask

MIN_INTERVAL_MS: Final = 1000
MISSED_POLICIES: Final = ("run", "skip")


@dataclass(frozen=True, slots=True)
class Recurrence:
    cron: str | None
    interval_ms: int | None
    timezone: str
    start_at_ms: int | None
    end_at_ms: int | None
    anchor_ms: int  # the creation: intervals without a start count from it


def problem(
    cron: str | None,
    interval_ms: int | None,
    timezone: str,
    start_at_ms: int | None,
    end_at_ms: int | None,
) -> str | None:
    """What is wrong with a recurrence, naming the field; None when it is usable."""
    if (cron is None) == (interval_ms is None):
        return "cron or interval_ms: give exactly one"
    if interval_ms is not None and interval_ms < MIN_INTERVAL_MS:
        return f"interval_ms: must be at least {MIN_INTERVAL_MS}"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"timezone: unknown time zone {timezone[:100]!r} (an IANA name such as UTC)"
    if cron is not None:
        if len(cron.split()) != 5:
            return f"cron: {cron[:100]!r} is not a five-field cron expression"
        try:
            croniter(cron)
        except (CroniterBadCronError, ValueError, KeyError) as exc:
            return f"cron: {cron[:100]!r} is not a cron expression ({exc})"
    if start_at_ms is not None and end_at_ms is not None and end_at_ms < start_at_ms:
        return "end_at_ms: before start_at_ms"
    return None


def next_after(rec: Recurrence, after_ms: int) -> int | None:
    """The first occurrence later than ``after_ms`` (and not before the start), or None when
    there is none up to the end."""
    floor = after_ms + 1
    if rec.start_at_ms is not None:
        floor = max(floor, rec.start_at_ms)
    if rec.interval_ms is not None:
        anchor = rec.start_at_ms if rec.start_at_ms is not None else rec.anchor_ms
        steps = max(0, -(-(floor - anchor) // rec.interval_ms))
        at = anchor + steps * rec.interval_ms
    else:
        assert rec.cron is not None
        zone = ZoneInfo(rec.timezone)
        # croniter's get_next is strictly after its start: start one millisecond before.
        start = datetime.fromtimestamp((floor - 1) / 1000, tz=UTC).astimezone(zone)
        try:
            found = croniter(rec.cron, start).get_next(datetime)
        except CroniterBadDateError:
            return None
        at = int(found.timestamp() * 1000)
    if rec.end_at_ms is not None and at > rec.end_at_ms:
        return None
    return at


def latest_due(rec: Recurrence, first_ms: int, now_ms: int, limit: int) -> tuple[int, int]:
    """(the latest occurrence at or before ``now_ms`` from ``first_ms`` on, how many come
    before it), counting at most ``limit`` of them. ``first_ms`` must be due."""
    at, before = first_ms, 0
    if rec.interval_ms is not None:
        steps = (now_ms - first_ms) // rec.interval_ms
        if rec.end_at_ms is not None:
            steps = min(steps, (rec.end_at_ms - first_ms) // rec.interval_ms)
        return first_ms + steps * rec.interval_ms, steps
    while before < limit:
        following = next_after(rec, at)
        if following is None or following > now_ms:
            break
        at, before = following, before + 1
    return at, before


def submit_of(fields: dict[str, Any]) -> SubmitTask | str:
    """The SubmitTask ``fields`` make, or what is wrong with them (``task.<field>: ...``):
    a schedule's task is SubmitTask fields held as JSON, checked like a command."""
    try:
        return SubmitTask.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "task"
        return f"task.{where}: {first['msg']}"
