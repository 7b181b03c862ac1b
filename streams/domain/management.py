"""Task management decisions (issue 15): edit, archive, run now, people in the loop, overdue.

* ``UpdateTask`` changes a task that has not started: pending review, scheduled, waiting on
  dependencies, queued or batched (never handed to an executor, no attempt failed). A queued,
  batched, scheduled or waiting task leaves where it is and is admitted again with its new
  values (a new start time, priority or assignment takes effect at once).
* ``ArchiveTask`` cancels unfinished work (``task.cancelled`` first, so the task still ends with
  exactly one outcome) and marks the task archived; its history stays in the log.
* ``RunTask`` queues a scheduled, retry-waiting or deferred task now; a task waiting on
  dependencies that are not met is refused (run them first).
* ``RequestInput`` / ``DeferTask`` (from the executor holding the current attempt) end the
  attempt without failing it: ``waiting_input`` until ``ProvideInput``, or ``deferred`` until
  its time (a timer of the partition state, ``streams.domain.timers``).
* Overdue: at a task's due date (a timer too) an unfinished task raises ``task.overdue`` once.

Refusals follow the decider's rule: ``TaskRejected`` naming the command, the task unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import commands as cmd
from schemas import events as ev
from schemas import management_events as mev
from schemas.credentials import credentials, describe
from schemas.fields import MAX_ID_LENGTH
from schemas.states import ACTIVE_STATES as ACTIVE
from schemas.states import TERMINAL_STATES as TERMINAL
from streams.domain import lifecycle
from streams.domain.attachments import attachment_problems
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.spec import canonical_json
from streams.domain.state import Status, TaskRecord
from streams.domain.submission import (
    ASSIGNEE_KINDS,
    MAX_DESCRIPTION,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TITLE,
    config_problems,
)

__all__ = [
    "EDITABLE",
    "HANDLERS",
    "NOT_STARTED",
    "raise_overdue",
]

EDITABLE = (
    "priority",
    "payload",
    "scheduled_for_ms",
    "due_at_ms",
    "tags",
    "assigned_to",
    "title",
    "description",
    "attachments",
)
# States of a task no executor has seen yet (an attempt that failed or asked for input has).
NOT_STARTED = frozenset(
    {Status.PENDING_REVIEW, Status.SCHEDULED, Status.WAITING, Status.QUEUED, Status.BATCHED}
)
_READMIT = frozenset({Status.SCHEDULED, Status.WAITING, Status.QUEUED, Status.BATCHED})
RUNNABLE = frozenset({Status.SCHEDULED, Status.RETRY_SCHEDULED, Status.DEFERRED, Status.WAITING})


def _reject(ctx: Decision, c: Any, reason: str) -> None:
    ctx.emit(
        ev.TaskRejected(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            reason=reason,
            command=type(c).__name__,
            actor=getattr(c, "actor", None),
        )
    )


def _task(ctx: Decision, c: Any) -> TaskRecord | None:
    task = ctx.state.task(c.task_id)
    if task is None or task.client_id != c.client_id:
        _reject(ctx, c, "unknown task")
        return None
    return task


def _started(task: TaskRecord) -> str | None:
    """Why the task counts as started (or ended), if it does."""
    if task.status in TERMINAL:
        return f"task already {task.status}"
    if task.status not in NOT_STARTED or task.failures:
        return (
            f"task already started ({task.status}); only a task that has not started can be edited"
        )
    return None


def _edit_problem(ctx: Decision, c: cmd.UpdateTask, task: TaskRecord) -> str | None:
    unknown = [name for name in c.changed if name not in EDITABLE]
    if unknown:
        return f"changed: cannot edit {', '.join(map(repr, unknown))} (editable: {', '.join(EDITABLE)})"
    if not c.changed:
        return "changed: names no field to edit"
    fields = set(c.changed)
    if "priority" in fields and c.priority is not None and not 1 <= c.priority <= 5:
        return f"priority: {c.priority} is not 1 (critical) to 5 (background)"
    if "payload" in fields:
        plaintext = next(credentials(c.payload), None)
        if plaintext is not None:
            return f"{describe(plaintext[0])} holds a credential in plaintext: edit through the SDK or the gateway, which seal it"
        problems = config_problems(task.operation, c.payload, "payload.")
        if problems:
            return problems[0]
        if len(canonical_json(c.payload).encode()) > ctx.config.max_payload_bytes:
            return (
                f"payload larger than {ctx.config.max_payload_bytes} bytes "
                "(TASKSTREAM_MAX_PAYLOAD_BYTES)"
            )
    for name in ("scheduled_for_ms", "due_at_ms"):
        value = getattr(c, name)
        if name in fields and value is not None and value < 0:
            return f"{name}: must be epoch milliseconds (>= 0)"
    if "tags" in fields:
        if len(c.tags) > MAX_TAGS:
            return f"tags: more than {MAX_TAGS} tags"
        if any(not tag or len(tag) > MAX_TAG_LENGTH for tag in c.tags):
            return f"tags: each tag 1..{MAX_TAG_LENGTH} characters"
    if "assigned_to" in fields and c.assigned_to is not None:
        if c.assigned_to.kind not in ASSIGNEE_KINDS:
            return f"assigned_to.kind: must be one of {', '.join(ASSIGNEE_KINDS)}"
        if not c.assigned_to.id or len(c.assigned_to.id) > MAX_ID_LENGTH:
            return "assigned_to.id: must not be empty"
    if "title" in fields and c.title is not None and len(c.title) > MAX_TITLE:
        return f"title: longer than {MAX_TITLE} characters"
    if (
        "description" in fields
        and c.description is not None
        and len(c.description) > MAX_DESCRIPTION
    ):
        return f"description: longer than {MAX_DESCRIPTION} characters"
    if "attachments" in fields:
        problems = attachment_problems(c.attachments)
        if problems:
            return problems[0]
    return None


def _update(ctx: Decision, c: cmd.UpdateTask) -> None:
    task = _task(ctx, c)
    if task is None:
        return
    why = _started(task) or _edit_problem(ctx, c, task)
    if why is not None:
        _reject(ctx, c, why)
        return
    fields = list(dict.fromkeys(c.changed))
    readmit = task.status in _READMIT
    ctx.emit(
        mev.TaskUpdated(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            changed=fields,
            priority=c.priority if "priority" in fields else None,
            explicit_priority="priority" in fields and c.priority is not None,
            payload=c.payload if "payload" in fields else {},
            scheduled_for_ms=c.scheduled_for_ms if "scheduled_for_ms" in fields else None,
            due_at_ms=c.due_at_ms if "due_at_ms" in fields else None,
            tags=list(dict.fromkeys(c.tags)) if "tags" in fields else [],
            assigned_to=c.assigned_to if "assigned_to" in fields else None,
            title=c.title if "title" in fields else None,
            description=c.description if "description" in fields else None,
            actor=c.actor,
            attachments=c.attachments if "attachments" in fields else [],
        )
    )
    if readmit:
        lifecycle.admit(ctx, c.task_id, "updated")
    dispatch(ctx, c.client_id)


def _archive(ctx: Decision, c: cmd.ArchiveTask) -> None:
    task = _task(ctx, c)
    if task is None or task.archived:
        return
    if task.status not in TERMINAL:
        active = task.status in ACTIVE
        ctx.emit(
            ev.TaskCancelled(
                client_id=c.client_id,
                task_id=c.task_id,
                occurred_at_ms=ctx.now,
                reason=c.reason or "archived",
                session_id=task.session_id if active else None,
                fencing_token=task.fencing_token if active else None,
                actor=c.actor,
            )
        )
        lifecycle.cascade_failure(ctx, c.task_id)
    ctx.emit(
        mev.TaskArchived(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            reason=c.reason,
            actor=c.actor,
        )
    )
    dispatch(ctx, c.client_id)


def _run(ctx: Decision, c: cmd.RunTask) -> None:
    task = _task(ctx, c)
    if task is None:
        return
    status = task.status
    if status not in RUNNABLE:
        if status in (Status.QUEUED, Status.BATCHED):
            why = f"task is already {status}: it runs when a session is free (expedite raises it)"
        elif status in ACTIVE:
            why = "task is already running"
        else:
            why = f"task is {status}, nothing to run now"
        _reject(ctx, c, why)
        return
    if status == Status.WAITING:
        dead, unmet = lifecycle.dependency_state(ctx.state, task)
        if dead is not None or unmet:
            _reject(ctx, c, f"task waits on dependencies: {', '.join(unmet or [dead or ''])}")
            return
    ctx.emit(
        mev.TaskRunRequested(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            from_status=status,
            actor=c.actor,
        )
    )
    if status == Status.RETRY_SCHEDULED:
        ctx.emit(
            ev.TaskRetrying(
                client_id=c.client_id,
                task_id=c.task_id,
                occurred_at_ms=ctx.now,
                attempt=task.attempt,
            )
        )
        lifecycle.enqueue(ctx, c.task_id, "run_now", retry=True)
    elif status == Status.SCHEDULED:
        lifecycle.admit(ctx, c.task_id, "run_now", check_schedule=False)
    else:
        lifecycle.enqueue(ctx, c.task_id, "run_now")
    dispatch(ctx, c.client_id)


def _current_attempt(ctx: Decision, c: cmd.RequestInput | cmd.DeferTask) -> TaskRecord | None:
    """The task if ``c`` is about its current single-task attempt; refused/ignored otherwise."""
    task = _task(ctx, c)
    if task is None:
        return None
    reason = None
    if task.fencing_token != c.fencing_token:
        reason = "stale fencing token"
    elif task.status not in ACTIVE:
        reason = f"attempt already finished (task {task.status})"
    if reason is not None:
        ctx.emit(
            ev.ResultIgnored(
                client_id=c.client_id,
                task_id=c.task_id,
                occurred_at_ms=ctx.now,
                fencing_token=c.fencing_token,
                current_fencing_token=task.fencing_token,
                reason=reason,
            )
        )
        return None
    if task.batch_id is not None:
        _reject(ctx, c, "an item of a batch cannot wait for input or be deferred on its own")
        return None
    return task


def _request_input(ctx: Decision, c: cmd.RequestInput) -> None:
    task = _current_attempt(ctx, c)
    if task is None:
        return
    ctx.emit(
        mev.TaskWaitingInput(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            prompt=c.prompt[:10_000],
            attempt=task.attempt,
            fencing_token=c.fencing_token,
            session_id=task.session_id,
            execution_time_ms=c.execution_time_ms,
        )
    )
    dispatch(ctx, c.client_id)


def _defer(ctx: Decision, c: cmd.DeferTask) -> None:
    task = _current_attempt(ctx, c)
    if task is None:
        return
    ctx.emit(
        mev.TaskDeferred(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            due_at_ms=max(c.until_ms, ctx.now),
            attempt=task.attempt,
            fencing_token=c.fencing_token,
            session_id=task.session_id,
            reason=c.reason,
            execution_time_ms=c.execution_time_ms,
        )
    )
    dispatch(ctx, c.client_id)


def _provide_input(ctx: Decision, c: cmd.ProvideInput) -> None:
    task = _task(ctx, c)
    if task is None:
        return
    if task.status != Status.WAITING_INPUT:
        _reject(ctx, c, f"task is {task.status}, not waiting for input")
        return
    if next(credentials(c.input), None) is not None:
        _reject(
            ctx, c, "input holds a credential in plaintext: answer through the SDK or the gateway"
        )
        return
    ctx.emit(
        mev.TaskInputProvided(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            input=c.input,
            prompt=task.prompt,
            attempt=task.attempt + 1,
            actor=c.actor,
        )
    )
    lifecycle.enqueue(ctx, c.task_id, "input_provided")
    dispatch(ctx, c.client_id)


def raise_overdue(ctx: Decision, task_id: str) -> None:
    """A task's due date came (its timer): ``task.overdue``, once, for an unfinished task."""
    task = ctx.state.tasks[task_id]
    ctx.emit(
        mev.TaskOverdue(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=ctx.now,
            due_at_ms=task.deadline_due_ms or 0,
            status=task.status,
        )
    )


HANDLERS: dict[type[cmd.Command], Callable[[Decision, Any], None]] = {
    cmd.UpdateTask: _update,
    cmd.ArchiveTask: _archive,
    cmd.RunTask: _run,
    cmd.RequestInput: _request_input,
    cmd.DeferTask: _defer,
    cmd.ProvideInput: _provide_input,
}
