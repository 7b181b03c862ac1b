"""The read side of task management (issue 15): what edits, archiving, run now, input
requests, deferrals and due dates show on a task's row.

The fields live on ``TaskRow`` (title, tags, due_by_ms, overdue, archived, assigned_to,
prompt, input, attachments); ``GET /tasks`` hides archived tasks unless asked and filters by tag, title
text and overdue (``ProjectionReader.tasks``). Rows folded before these fields existed read
with their defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from schemas import management_events as mev

from .documents import set_priority
from .rows import TaskDoc
from .tables import Tables

Opened = tuple[bytes, TaskDoc, Any]
Open = Callable[[Tables, Any], Opened]
Close = Callable[..., TaskDoc]


def accepted_fields(row: TaskDoc, e: ev.TaskAccepted) -> None:
    """The management fields a ``task.accepted`` carries."""
    row["title"] = e.title
    row["description"] = e.description
    row["tags"] = list(e.tags)
    row["metadata"] = dict(e.metadata)
    row["due_by_ms"] = e.due_at_ms
    row["overdue"] = False
    row["archived"] = False
    row["assigned_to"] = e.assigned_to.model_dump() if e.assigned_to is not None else None
    row["prompt"] = None
    row["input"] = None
    row["attachments"] = [a.model_dump() for a in e.attachments]


def management_folds(open_: Open, close: Close) -> dict[type[Any], Callable[[Tables, Any], None]]:
    """The folds, with the task fold's open/close (history, footprint, indexes)."""

    def updated(tables: Tables, e: mev.TaskUpdated) -> None:
        opened = open_(tables, e)
        row = opened[1]
        changed = set(e.changed)
        if "priority" in changed and e.priority is not None:
            set_priority(row, e.priority)
            row["explicit_priority"] = e.explicit_priority
        if "payload" in changed:
            row["payload"] = dict(e.payload)
        if "scheduled_for_ms" in changed:
            row["scheduled_for_ms"] = e.scheduled_for_ms
        if "due_at_ms" in changed:
            row["due_by_ms"] = e.due_at_ms
            row["overdue"] = False
        if "tags" in changed:
            row["tags"] = list(e.tags)
        if "assigned_to" in changed:
            row["assigned_to"] = e.assigned_to.model_dump() if e.assigned_to else None
        if "title" in changed:
            row["title"] = e.title
        if "description" in changed:
            row["description"] = e.description
        if "attachments" in changed:
            row["attachments"] = [a.model_dump() for a in e.attachments]
        close(tables, opened, e, ", ".join(e.changed))

    def archived(tables: Tables, e: mev.TaskArchived) -> None:
        opened = open_(tables, e)
        opened[1]["archived"] = True
        close(tables, opened, e, e.reason)

    def run_requested(tables: Tables, e: mev.TaskRunRequested) -> None:
        opened = open_(tables, e)
        close(tables, opened, e, e.from_status)

    def waiting_input(tables: Tables, e: mev.TaskWaitingInput) -> None:
        opened = open_(tables, e)
        row = opened[1]
        row["state"] = "waiting_input"
        row["prompt"] = e.prompt
        row["session_id"] = None
        row["batch_id"] = None
        close(tables, opened, e, e.prompt)

    def input_provided(tables: Tables, e: mev.TaskInputProvided) -> None:
        opened = open_(tables, e)
        row = opened[1]
        row["input"] = dict(e.input)
        row["prompt"] = None
        row["payload"] = {**row["payload"], "input": dict(e.input)}
        row["attempt"] = e.attempt
        row["max_retries"] = (row["max_retries"] or 0) + 1
        close(tables, opened, e)

    def deferred(tables: Tables, e: mev.TaskDeferred) -> None:
        opened = open_(tables, e)
        row = opened[1]
        row["state"] = "deferred"
        row["due_at_ms"] = e.due_at_ms
        row["session_id"] = None
        row["batch_id"] = None
        row["ready_at_ms"] = None
        close(tables, opened, e, e.reason)

    def overdue(tables: Tables, e: mev.TaskOverdue) -> None:
        opened = open_(tables, e)
        opened[1]["overdue"] = True
        close(tables, opened, e, e.status)

    return {
        mev.TaskUpdated: updated,
        mev.TaskArchived: archived,
        mev.TaskRunRequested: run_requested,
        mev.TaskWaitingInput: waiting_input,
        mev.TaskInputProvided: input_provided,
        mev.TaskDeferred: deferred,
        mev.TaskOverdue: overdue,
    }
