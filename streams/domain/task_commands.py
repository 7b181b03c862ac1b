"""Commands about one task: cancel, approve, reject (by a reviewer), expedite, started,
progress, and the RetryDue a delay tier sends back."""

from __future__ import annotations

from schemas import commands as cmd
from schemas.events import (
    TaskApproved,
    TaskCancelled,
    TaskExpedited,
    TaskProgressed,
    TaskRetrying,
)
from schemas.states import ACTIVE_STATES
from streams.domain import lifecycle
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.priority import CRITICAL
from streams.domain.refusals import (
    UNKNOWN_TASK,
    attempt_or_ignore,
    open_task_or_reject,
    own_task,
    reject_command,
    reject_task,
    task_or_reject,
)
from streams.domain.state import Status


def cancel(ctx: Decision, c: cmd.CancelTask) -> None:
    task = open_task_or_reject(ctx, c, c.task_id)
    if task is None:
        return
    active = task.status in ACTIVE_STATES
    ctx.emit(
        TaskCancelled(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            reason=c.reason,
            session_id=task.session_id if active else None,
            fencing_token=task.fencing_token if active else None,
            actor=c.actor,
        )
    )
    lifecycle.cascade_failure(ctx, c.task_id)
    dispatch(ctx, c.client_id)


def approve(ctx: Decision, c: cmd.ApproveTask) -> None:
    task = task_or_reject(ctx, c, c.task_id)
    if task is None:
        return
    if task.status != Status.PENDING_REVIEW:
        reject_task(ctx, c, c.task_id, f"task is {task.status}, not pending review")
        return
    ctx.emit(
        TaskApproved(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            reviewer=c.reviewer,
            actor=c.actor,
        )
    )
    lifecycle.admit(ctx, c.task_id, "approved")
    dispatch(ctx, c.client_id)


def reject(ctx: Decision, c: cmd.RejectTask) -> None:
    task = own_task(ctx, c.client_id, c.task_id)
    if task is None:
        reject_command(ctx, c, UNKNOWN_TASK, task_id=c.task_id)
        return
    if task.status != Status.PENDING_REVIEW:
        reject_command(ctx, c, f"task is {task.status}, not pending review", task_id=c.task_id)
        return
    reject_task(ctx, c, c.task_id, c.reason or "rejected by reviewer", reviewer=c.reviewer)
    lifecycle.cascade_failure(ctx, c.task_id)
    dispatch(ctx, c.client_id)


def expedite(ctx: Decision, c: cmd.ExpediteTask) -> None:
    task = open_task_or_reject(ctx, c, c.task_id)
    if task is None:
        return
    if task.status in ACTIVE_STATES:
        reject_task(ctx, c, c.task_id, "task is already assigned")
        return
    if task.expedited:
        return
    ctx.emit(
        TaskExpedited(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            priority=CRITICAL,
            actor=c.actor,
        )
    )
    dispatch(ctx, c.client_id)


def started(ctx: Decision, c: cmd.TaskStarted) -> None:
    task = attempt_or_ignore(ctx, c, c.task_id, c.fencing_token)
    if task is not None:
        lifecycle.start(ctx, c.client_id, c.task_id, task, c.fencing_token)


def progress(ctx: Decision, c: cmd.ReportProgress) -> None:
    task = attempt_or_ignore(ctx, c, c.task_id, c.fencing_token)
    if task is None:
        return
    ctx.emit(
        TaskProgressed(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            fencing_token=c.fencing_token,
            progress=c.progress,
            message=c.message,
        )
    )


def retry_due(ctx: Decision, c: cmd.RetryDue) -> None:
    task = task_or_reject(ctx, c, c.task_id)
    if task is None:
        return
    if c.kind == "retry":
        if task.status != Status.RETRY_SCHEDULED or task.attempt != c.attempt:
            return  # stale or duplicate
        ctx.emit(
            TaskRetrying(
                client_id=c.client_id, task_id=c.task_id, occurred_at_ms=ctx.now, attempt=c.attempt
            )
        )
        lifecycle.enqueue(ctx, c.task_id, "retry", retry=True)
    elif c.kind == "scheduled":
        if task.status != Status.SCHEDULED or task.attempt != c.attempt:
            return
        if task.due_at_ms is not None and task.due_at_ms != c.due_at_ms:
            return  # rescheduled (UpdateTask): the new time has its own RetryDue
        lifecycle.admit(ctx, c.task_id, "scheduled", check_schedule=False)
    else:
        reject_command(ctx, c, f"unknown RetryDue kind {c.kind!r}", task_id=c.task_id)
        return
    dispatch(ctx, c.client_id)
