"""The read side of multi-step tasks, recurring schedules and task templates.

* one ``StepsRow`` per task submitted with steps (``w\\x00<task id>``): each step's spec and
  its status (``pending`` until ``task.step_started``, then ``running``, then what
  ``task.step_finished`` says), its child task id, output or error and times. The child task
  itself is an ordinary task row (attempts, progress, executions).
* one ``ScheduleRow`` per schedule (``c\\x00<schedule id>``): its spec, ``state`` (active,
  ended, deleted, rejected), the next occurrence and how many fired or were skipped.
* one ``TemplateRow`` per client's template (``p\\x00<client>/<name>``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import Field

from schemas import events as ev

from . import keys
from .rows import Row

if TYPE_CHECKING:
    from .tables import Tables

STEPS: Final = b"w\x00"
SCHEDULE: Final = b"c\x00"
TEMPLATE: Final = b"p\x00"

StepState = Literal["pending", "running", "completed", "failed", "skipped"]
ScheduleState = Literal["active", "ended", "deleted", "rejected"]


def steps_key(task_id: str) -> bytes:
    return STEPS + keys.encode(task_id)


def schedule_key(schedule_id: str) -> bytes:
    return SCHEDULE + keys.encode(schedule_id)


def template_key(client_id: str, name: str) -> bytes:
    return TEMPLATE + keys.encode(f"{client_id}/{name}")


class StepRow(Row):
    id: str
    name: str
    operation: str
    config: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    failure_policy: str = "fail_task"
    status: StepState = "pending"
    task_id: str | None = None  # the child task that runs the step
    output: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None


class StepsRow(Row):
    task_id: str
    client_id: str
    steps: list[StepRow] = Field(default_factory=list)
    updated_at_ms: int | None = None


class ScheduleRow(Row):
    schedule_id: str
    client_id: str
    state: ScheduleState = "active"
    reason: str | None = None
    cron: str | None = None
    interval_ms: int | None = None
    timezone: str = "UTC"
    start_at_ms: int | None = None
    end_at_ms: int | None = None
    missed: str = "run"
    task: dict[str, Any] = Field(default_factory=dict)
    template: str | None = None
    next_at_ms: int | None = None
    fired: int = 0
    skipped: int = 0
    last_occurrence_ms: int | None = None
    last_task_id: str | None = None
    created_at_ms: int | None = None
    updated_at_ms: int | None = None


class TemplateRow(Row):
    client_id: str
    name: str
    task: dict[str, Any] = Field(default_factory=dict)
    deleted: bool = False
    defined_at_ms: int | None = None
    updated_at_ms: int | None = None


# -- steps ------------------------------------------------------------------------------------


def accepted(tables: Tables, e: ev.TaskAccepted) -> None:
    """A task with steps was accepted: its steps, all pending (``fold`` calls this)."""
    if not e.steps:
        return
    row = StepsRow(
        task_id=e.task_id,
        client_id=e.client_id,
        steps=[
            StepRow(
                id=s.id,
                name=s.name or s.id,
                operation=s.operation,
                config=dict(s.config),
                depends_on=list(s.depends_on),
                failure_policy=s.failure_policy,
            )
            for s in e.steps
        ],
        updated_at_ms=e.occurred_at_ms,
    )
    tables.put_model(steps_key(e.task_id), row)


def _step(tables: Tables, task_id: str, step_id: str) -> tuple[StepsRow, StepRow] | None:
    row = tables.get_model(steps_key(task_id), StepsRow)
    if row is None:
        return None
    found = next((s for s in row.steps if s.id == step_id), None)
    return None if found is None else (row, found)


def step_started(tables: Tables, e: ev.TaskStepStarted) -> None:
    found = _step(tables, e.task_id, e.step_id)
    if found is None:
        return
    row, step = found
    step.status = "running"
    step.task_id = e.child_task_id
    step.started_at_ms = e.occurred_at_ms
    row.updated_at_ms = e.occurred_at_ms
    tables.put_model(steps_key(e.task_id), row)


def step_finished(tables: Tables, e: ev.TaskStepFinished) -> None:
    found = _step(tables, e.task_id, e.step_id)
    if found is None:
        return
    row, step = found
    step.status = e.status if e.status in ("completed", "failed", "skipped") else "failed"  # type: ignore[assignment]
    step.task_id = e.child_task_id or step.task_id
    step.output = dict(e.output)
    step.error = e.error
    step.finished_at_ms = e.occurred_at_ms
    row.updated_at_ms = e.occurred_at_ms
    tables.put_model(steps_key(e.task_id), row)


# -- schedules --------------------------------------------------------------------------------


def _schedule(tables: Tables, e: ev.ScheduleEvent) -> ScheduleRow | None:
    return tables.get_model(schedule_key(e.schedule_id), ScheduleRow)


def _put_schedule(tables: Tables, row: ScheduleRow, at_ms: int) -> None:
    row.updated_at_ms = max(row.updated_at_ms or at_ms, at_ms)
    tables.put_model(schedule_key(row.schedule_id), row)


def _created(tables: Tables, e: ev.ScheduleCreated) -> None:
    row = _schedule(tables, e)
    if row is not None and row.state in ("active", "ended"):
        return
    row = ScheduleRow(
        schedule_id=e.schedule_id,
        client_id=e.client_id,
        state="active" if e.next_at_ms is not None else "ended",
        cron=e.cron,
        interval_ms=e.interval_ms,
        timezone=e.timezone,
        start_at_ms=e.start_at_ms,
        end_at_ms=e.end_at_ms,
        missed=e.missed,
        task=dict(e.task),
        template=e.template,
        next_at_ms=e.next_at_ms,
        created_at_ms=e.occurred_at_ms,
    )
    _put_schedule(tables, row, e.occurred_at_ms)


def _fired(tables: Tables, e: ev.ScheduleFired) -> None:
    row = _schedule(tables, e)
    if row is None:
        return
    row.fired += 1
    row.skipped += e.skipped
    row.last_occurrence_ms = e.occurrence_ms
    row.last_task_id = e.task_id
    row.next_at_ms = e.next_at_ms
    if e.next_at_ms is None:
        row.state = "ended"
    _put_schedule(tables, row, e.occurred_at_ms)


def _deleted(tables: Tables, e: ev.ScheduleDeleted) -> None:
    row = _schedule(tables, e)
    if row is None:
        return
    row.state = "deleted"
    row.next_at_ms = None
    _put_schedule(tables, row, e.occurred_at_ms)


def _rejected(tables: Tables, e: ev.ScheduleRejected) -> None:
    row = _schedule(tables, e)
    if row is not None and row.state != "rejected":
        return  # a refused duplicate or delete: the schedule stays as it is
    if e.command != "CreateSchedule":
        return
    row = ScheduleRow(
        schedule_id=e.schedule_id, client_id=e.client_id, state="rejected", reason=e.reason
    )
    _put_schedule(tables, row, e.occurred_at_ms)


# -- templates --------------------------------------------------------------------------------


def _template_defined(tables: Tables, e: ev.TemplateDefined) -> None:
    key = template_key(e.client_id, e.name)
    row = tables.get_model(key, TemplateRow) or TemplateRow(client_id=e.client_id, name=e.name)
    if row.deleted or row.defined_at_ms is None:
        row.defined_at_ms = e.occurred_at_ms
    row.task = dict(e.task)
    row.deleted = False
    row.updated_at_ms = e.occurred_at_ms
    tables.put_model(key, row)


def _template_deleted(tables: Tables, e: ev.TemplateDeleted) -> None:
    key = template_key(e.client_id, e.name)
    row = tables.get_model(key, TemplateRow)
    if row is None:
        return
    row.deleted = True
    row.updated_at_ms = e.occurred_at_ms
    tables.put_model(key, row)


WORKFLOW_FOLDS: dict[type[ev.Event], Callable[[Tables, Any], None]] = {
    ev.ScheduleCreated: _created,
    ev.ScheduleFired: _fired,
    ev.ScheduleDeleted: _deleted,
    ev.ScheduleRejected: _rejected,
    ev.TemplateDefined: _template_defined,
    ev.TemplateDeleted: _template_deleted,
}
