"""Recurring schedules and named task templates (seed 001 "scheduled automation").

A schedule (``CreateSchedule``) submits one task per occurrence of its cron expression or
interval (``schemas.recurrence``), from its task template. Its next occurrence is a timer of the
partition state (``streams.domain.timers``): the tick at or after that time emits
``ScheduleFired`` and decides a ``SubmitTask`` of the task with the id
``<schedule_id>@<occurrence epoch ms>`` exactly as if a client had sent it. The occurrence is a
decision recorded in the event log, so a processor that restarts (even killed mid-write)
neither loses nor repeats one: recovery folds the recorded ``ScheduleFired``, and a repeated
submit of a derived id would be a redelivery anyway.

Downtime: occurrences whose time passed while no processor ticked are *missed* (an occurrence
is missed when the next one's time came before it ran). ``missed="run"`` (the default) runs
each of them once, one a tick, in order; ``missed="skip"`` runs only the latest due one and
counts the others as skipped. Occurrences already past when the schedule is created never run.

Templates (``DefineTemplate``) are named per client; a schedule naming one takes the
template's fields as the defaults of its task (payload keys merge, the schedule's win), resolved
once, when the schedule is created: a later change of the template does not change it.
"""

from __future__ import annotations

from typing import Any, Final

from schemas import commands as cmd
from schemas import events as ev
from schemas.recurrence import (
    MISSED_POLICIES,
    Recurrence,
    latest_due,
    next_after,
    problem,
    submit_of,
)
from streams.domain.context import Decision
from streams.domain.schedule_fold import schedule_digest
from streams.domain.state import ScheduleRecord, template_id
from streams.domain.submit import accepted_event
from streams.domain.submit import submit as submit_task

SKIP_COUNT_LIMIT: Final = 10_000
"""Missed cron occurrences one firing counts at most (intervals are counted exactly)."""

_RESERVED: Final = ("client_id", "task_id")


def occurrence_task_id(schedule_id: str, occurrence_ms: int) -> str:
    return f"{schedule_id}@{occurrence_ms}"


def recurrence_of(s: ScheduleRecord) -> Recurrence:
    return Recurrence(
        s.cron, s.interval_ms, s.timezone, s.start_at_ms, s.end_at_ms, s.created_at_ms
    )


def _reject(ctx: Decision, c: cmd.Command, schedule_id: str, reason: str) -> None:
    ctx.emit(
        ev.ScheduleRejected(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            schedule_id=schedule_id,
            command=type(c).__name__,
            reason=reason,
            actor=getattr(c, "actor", None),
        )
    )


def _refuse_template(
    ctx: Decision, c: cmd.DefineTemplate | cmd.DeleteTemplate, reason: str
) -> None:
    ctx.emit(
        ev.CommandRejected(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            command=type(c).__name__,
            reason=f"template {c.name[:100]!r}: {reason}",
        )
    )


def task_problem(
    ctx: Decision, client_id: str, task: dict[str, Any], *, partial: bool
) -> str | None:
    """Why ``task`` cannot be the SubmitTask fields of an occurrence (``partial``: a template,
    which may leave the operation to the schedule), naming the field; None when it can."""
    named = [key for key in _RESERVED if key in task]
    if named:
        return f"task.{named[0]}: set by the schedule, not by its task"
    probe: dict[str, Any] = {**task, "client_id": client_id, "task_id": "probe"}
    if partial and "operation" not in task:
        probe["operation"] = "probe"
    submit = submit_of(probe)
    if isinstance(submit, str):
        return submit
    if partial and "operation" not in task:
        return None
    if "operation" not in task:
        return "task.operation: required (in the task or its template)"
    accepted = accepted_event(ctx, submit, list(dict.fromkeys(submit.depends_on)))
    return f"task: {accepted}" if isinstance(accepted, str) else None


def _resolved_task(ctx: Decision, c: cmd.CreateSchedule) -> dict[str, Any] | str:
    """The schedule's task with its template's defaults, or why there is none."""
    task = dict(c.task)
    task.pop("scheduled_for_ms", None)  # the occurrence is the start
    if c.template is None:
        return task
    template = ctx.state.templates.get(template_id(c.client_id, c.template))
    if template is None:
        return f"template: unknown template {c.template[:100]!r}"
    merged = {**template.task, **task}
    payload = template.task.get("payload")
    if isinstance(payload, dict) and isinstance(task.get("payload"), dict):
        merged["payload"] = {**payload, **task["payload"]}
    merged.pop("scheduled_for_ms", None)
    return merged


def create(ctx: Decision, c: cmd.CreateSchedule) -> None:
    task = _resolved_task(ctx, c)
    reason = problem(c.cron, c.interval_ms, c.timezone, c.start_at_ms, c.end_at_ms)
    if reason is None and c.missed not in MISSED_POLICIES:
        reason = f"missed: must be one of {', '.join(MISSED_POLICIES)}"
    if reason is None and isinstance(task, str):
        reason = task
    if reason is None and isinstance(task, dict):
        reason = task_problem(ctx, c.client_id, task, partial=False)
    existing = ctx.state.schedules.get(c.schedule_id)
    if reason is not None or not isinstance(task, dict):
        if existing is not None:
            reason = "duplicate schedule_id with a different specification"
        _reject(ctx, c, c.schedule_id, reason or "invalid schedule")
        return
    rec = Recurrence(
        c.cron, c.interval_ms, c.timezone, c.start_at_ms, c.end_at_ms, anchor_ms=ctx.now
    )
    # Past occurrences never run: the first is at or after now (and the start).
    after = ctx.now if c.start_at_ms is None else max(ctx.now, c.start_at_ms) - 1
    created = ev.ScheduleCreated(
        client_id=c.client_id,
        occurred_at_ms=ctx.now,
        schedule_id=c.schedule_id,
        cron=c.cron,
        interval_ms=c.interval_ms,
        timezone=c.timezone,
        start_at_ms=c.start_at_ms,
        end_at_ms=c.end_at_ms,
        missed=c.missed,
        task=task,
        template=c.template,
        next_at_ms=next_after(rec, after),
        actor=c.actor,
    )
    if existing is not None:
        same = existing.client_id == c.client_id and existing.spec_digest == schedule_digest(
            created
        )
        if not same:
            _reject(ctx, c, c.schedule_id, "duplicate schedule_id with a different specification")
        return  # an identical repeat is a redelivery
    ctx.emit(created)


def delete(ctx: Decision, c: cmd.DeleteSchedule) -> None:
    existing = ctx.state.schedules.get(c.schedule_id)
    if existing is None or existing.client_id != c.client_id:
        _reject(ctx, c, c.schedule_id, "unknown schedule")
        return
    ctx.emit(
        ev.ScheduleDeleted(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            schedule_id=c.schedule_id,
            actor=c.actor,
        )
    )


def fire(ctx: Decision, schedule_id: str) -> str:
    """The due occurrence of ``schedule_id``: ``ScheduleFired``, then its task's submit.
    Returns the schedule's client."""
    schedule = ctx.state.schedules[schedule_id]
    assert schedule.next_at_ms is not None
    rec = recurrence_of(schedule)
    occurrence, skipped = schedule.next_at_ms, 0
    if schedule.missed == "skip":
        occurrence, skipped = latest_due(rec, occurrence, ctx.now, SKIP_COUNT_LIMIT)
    task_id = occurrence_task_id(schedule_id, occurrence)
    client_id = schedule.client_id
    ctx.emit(
        ev.ScheduleFired(
            client_id=client_id,
            occurred_at_ms=ctx.now,
            schedule_id=schedule_id,
            occurrence_ms=occurrence,
            task_id=task_id,
            skipped=skipped,
            next_at_ms=next_after(rec, occurrence),
        )
    )
    submit = submit_of({**schedule.task, "client_id": client_id, "task_id": task_id})
    if isinstance(submit, str):  # the task was valid at creation; the schema moved on
        ctx.emit(
            ev.ScheduleRejected(
                client_id=client_id,
                occurred_at_ms=ctx.now,
                schedule_id=schedule_id,
                command="occurrence",
                reason=f"occurrence {occurrence}: {submit}",
            )
        )
        return client_id
    submit_task(ctx, submit)
    return client_id


def define_template(ctx: Decision, c: cmd.DefineTemplate) -> None:
    reason = task_problem(ctx, c.client_id, dict(c.task), partial=True)
    if reason is not None:
        _refuse_template(ctx, c, reason)
        return
    existing = ctx.state.templates.get(template_id(c.client_id, c.name))
    if existing is not None and existing.task == dict(c.task):
        return  # a repeat changes nothing
    ctx.emit(
        ev.TemplateDefined(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            name=c.name,
            task=c.task,
            actor=c.actor,
        )
    )


def delete_template(ctx: Decision, c: cmd.DeleteTemplate) -> None:
    if template_id(c.client_id, c.name) not in ctx.state.templates:
        _refuse_template(ctx, c, "unknown template")
        return
    ctx.emit(
        ev.TemplateDeleted(
            client_id=c.client_id, occurred_at_ms=ctx.now, name=c.name, actor=c.actor
        )
    )
