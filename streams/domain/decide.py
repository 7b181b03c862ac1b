"""``decide(command, state, now_ms, config) -> list[Event]``: what a command causes.

Pure: the state passed in is unchanged afterwards (see ``context``), ``now`` is an argument
(the command record's timestamp, never earlier than the state's clock), and ids come from
state counters, so deciding the same command on an equal state gives equal events.

Refusals are events, not exceptions: an invalid SubmitTask gives ``TaskRejected`` (command
``SubmitTask``, the task was never accepted); a refused command about a task gives
``TaskRejected`` naming that command (the task itself is unaffected) -- except ``RejectTask``,
whose refusals are ``CommandRejected`` so that ``TaskRejected(command="RejectTask")`` always
means a reviewer rejected the task. Refused session commands give ``CommandRejected``.
Redelivered commands are harmless: duplicates give ``[]`` or ``ResultIgnored``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from schemas import commands as cmd
from schemas.credentials import credentials, describe
from schemas.events import (
    BatchResultConsolidated,
    CommandRejected,
    Event,
    ResultIgnored,
    SessionHeartbeatReceived,
    SessionRegistered,
    SessionReleased,
    TaskAccepted,
    TaskApproved,
    TaskCancelled,
    TaskExpedited,
    TaskPendingReview,
    TaskProgressed,
    TaskRejected,
    TaskRetrying,
    TaskStartedEvent,
)
from schemas.fields import MAX_ID_LENGTH
from streams.domain import batch_jobs, failure_classes, incarnations, lifecycle
from streams.domain.config import DomainConfig
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.errors import UnknownCommandError
from streams.domain.priority import CRITICAL
from streams.domain.spec import canonical_json, spec_digest
from streams.domain.state import ACTIVE, TERMINAL, BatchStatus, PartitionState, Status, TaskRecord

# Ids travel in URLs, log lines and file names: control characters in them are refused.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

UNKNOWN_TASK = "unknown task"
UNKNOWN_SESSION = "unknown session"


def decide(
    command: cmd.Command, state: PartitionState, now_ms: int, config: DomainConfig
) -> list[Event]:
    handler = _HANDLERS.get(type(command))
    if handler is None:
        raise UnknownCommandError(f"no decision rule for {type(command).__name__}")
    ctx = Decision(state, max(now_ms, state.meta.clock), config)
    state.begin()
    try:
        handler(ctx, command)
        batch_jobs.settle(ctx)
    finally:
        state.rollback()
    return ctx.events


# -- helpers ---------------------------------------------------------------------------------


def _own_task(ctx: Decision, client_id: str, task_id: str) -> TaskRecord | None:
    """The task, if it exists and belongs to the client (other clients' tasks are invisible)."""
    task = ctx.state.tasks.get(task_id)
    if task is None or task.client_id != client_id:
        return None
    return task


def _task_or_reject(ctx: Decision, c: cmd.Command, task_id: str) -> TaskRecord | None:
    """The client's task, or None after rejecting ``c`` as naming an unknown task."""
    task = _own_task(ctx, c.client_id, task_id)
    if task is None:
        _reject_task(ctx, c, task_id, UNKNOWN_TASK)
    return task


def _open_task_or_reject(ctx: Decision, c: cmd.Command, task_id: str) -> TaskRecord | None:
    """The client's unfinished task, or None after rejecting ``c`` (unknown or finished)."""
    task = _task_or_reject(ctx, c, task_id)
    if task is not None and task.status in TERMINAL:
        _reject_task(ctx, c, task_id, f"task already {task.status}")
        return None
    return task


def _attempt_or_ignore(
    ctx: Decision, c: cmd.Command, task_id: str, token: int
) -> TaskRecord | None:
    """The client's task if a report for ``token`` concerns its current attempt; else None
    after rejecting ``c`` (unknown task) or ignoring it (stale report)."""
    task = _task_or_reject(ctx, c, task_id)
    if task is None:
        return None
    stale = _stale_reason(task, token)
    if stale is not None:
        _ignore(ctx, task, token, stale)
        return None
    return task


def _reject_or_ignore(
    ctx: Decision, c: cmd.ReportResult, task_ids: Iterable[str], reason: str
) -> None:
    """Each named task: rejected as unknown, or its report ignored for ``reason``."""
    for task_id in task_ids:
        task = _own_task(ctx, c.client_id, task_id)
        if task is None:
            _reject_task(ctx, c, task_id, UNKNOWN_TASK)
        else:
            _ignore(ctx, task, c.fencing_token, reason)


def _session_or_reject(ctx: Decision, c: cmd.ReleaseSession | cmd.SessionHeartbeat) -> bool:
    """Whether the session exists and belongs to the client; if not, ``c`` is rejected."""
    session = ctx.state.sessions.get(c.session_id)
    if session is None or session.client_id != c.client_id:
        _reject_command(ctx, c, UNKNOWN_SESSION, session_id=c.session_id)
        return False
    return True


def _reject_task(ctx: Decision, c: cmd.Command, task_id: str, reason: str, **extra: Any) -> None:
    ctx.emit(
        TaskRejected(
            client_id=c.client_id,
            task_id=task_id,
            occurred_at_ms=ctx.now,
            reason=reason,
            command=type(c).__name__,
            # A refused submit's outcome record names its operation (``domain.outcomes``).
            operation=c.operation if isinstance(c, cmd.SubmitTask) else None,
            actor=getattr(c, "actor", None),
            **extra,
        )
    )


def _reject_command(
    ctx: Decision,
    c: cmd.Command,
    reason: str,
    *,
    task_id: str | None = None,
    session_id: str | None = None,
) -> None:
    ctx.emit(
        CommandRejected(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            command=type(c).__name__,
            reason=reason,
            task_id=task_id,
            session_id=session_id,
        )
    )


def _ignore(ctx: Decision, task: TaskRecord, token: int, reason: str) -> None:
    ctx.emit(
        ResultIgnored(
            client_id=task.client_id,
            task_id=task.task_id,
            occurred_at_ms=ctx.now,
            fencing_token=token,
            current_fencing_token=task.fencing_token,
            reason=reason,
        )
    )


def _stale_reason(task: TaskRecord, token: int) -> str | None:
    """Why a report for ``token`` does not concern the task's current attempt, if it does not."""
    if task.fencing_token != token:
        return "stale fencing token"
    if task.status not in ACTIVE:
        return f"attempt already finished (task {task.status})"
    return None


# -- SubmitTask ------------------------------------------------------------------------------


def _accepted_event(ctx: Decision, c: cmd.SubmitTask, depends_on: list[str]) -> TaskAccepted | str:
    """The TaskAccepted a submit stands for, or the reason it cannot be accepted."""
    cfg = ctx.config
    spec = cfg.catalog.get(c.operation)
    if spec is None:
        shown = c.operation if len(c.operation) <= 100 else c.operation[:100] + "…"
        return f"unknown operation {shown!r}"
    if c.priority is not None and not 1 <= c.priority <= 5:
        return f"invalid priority {c.priority}: must be 1 (critical) to 5 (background)"
    if c.max_retries is not None and c.max_retries < 0:
        return f"invalid max_retries {c.max_retries}: must be >= 0"
    if c.timeout_ms is not None and c.timeout_ms < 1:
        return f"invalid timeout_ms {c.timeout_ms}: must be >= 1"
    if any(not cap for cap in c.capabilities):
        return "invalid capabilities: empty capability name"
    if _CONTROL.search(c.task_id) or _CONTROL.search(c.client_id):
        return "invalid task_id or client_id: control characters (line breaks, NUL, ...)"
    if any(len(name) > MAX_ID_LENGTH for name in (*c.capabilities, *c.depends_on)):
        return f"invalid capabilities or depends_on: a name longer than {MAX_ID_LENGTH} characters"
    plaintext = next(credentials(c.payload), None)
    if plaintext is not None:
        # A producer that skipped the SDK's sealing: refused, and not recorded anywhere.
        return (
            f"{describe(plaintext[0])} holds a credential in plaintext: submit through the SDK "
            "or the gateway with TASKSTREAM_SECRETS_KEY set, which seal it"
        )
    return TaskAccepted(
        client_id=c.client_id,
        task_id=c.task_id,
        occurred_at_ms=ctx.now,
        operation=c.operation,
        payload=c.payload,
        priority=c.priority if c.priority is not None else spec.urgency,
        explicit_priority=c.priority is not None,
        max_retries=c.max_retries if c.max_retries is not None else cfg.max_retries,
        timeout_ms=c.timeout_ms if c.timeout_ms is not None else cfg.default_timeout_ms,
        scheduled_for_ms=c.scheduled_for_ms,
        requires_review=c.requires_review,
        depends_on=depends_on,
        capabilities=list(dict.fromkeys(c.capabilities)),
        batchable=spec.batchable,
        session_required=spec.session_required,
        actor=c.actor,
    )


def _dependency_problem(ctx: Decision, c: cmd.SubmitTask, depends_on: list[str]) -> str | None:
    st = ctx.state
    for dep_id in depends_on:
        if not dep_id:
            return "invalid depends_on: empty task id"
        if dep_id == c.task_id:
            return "a task cannot depend on itself"
        dep = st.tasks.get(dep_id)
        if dep is not None and dep.client_id != c.client_id:
            return f"dependency {dep_id} belongs to another client"
    # A cycle can only close through tasks already known: walk their dependencies.
    seen: set[str] = set()
    stack = list(depends_on)
    while stack:
        dep_id = stack.pop()
        if dep_id == c.task_id:
            return "dependency cycle"
        if dep_id in seen:
            continue
        seen.add(dep_id)
        dep = st.tasks.get(dep_id)
        if dep is not None:
            stack.extend(dep.depends_on)
    return None


def _submit(ctx: Decision, c: cmd.SubmitTask) -> None:
    depends_on = list(dict.fromkeys(c.depends_on))
    accepted = _accepted_event(ctx, c, depends_on)
    existing = ctx.state.tasks.get(c.task_id)
    if existing is not None:
        same = (
            existing.client_id == c.client_id
            and isinstance(accepted, TaskAccepted)
            and spec_digest(accepted) == existing.spec_digest
        )
        if not same:
            _reject_task(ctx, c, c.task_id, "duplicate task_id with a different specification")
        return  # an identical resubmit is a redelivery: nothing happens
    if isinstance(accepted, str):
        _reject_task(ctx, c, c.task_id, accepted)
        return
    if c.payload and len(canonical_json(c.payload)) > ctx.config.max_payload_bytes:
        _reject_task(
            ctx,
            c,
            c.task_id,
            f"payload larger than {ctx.config.max_payload_bytes} bytes "
            "(TASKSTREAM_MAX_PAYLOAD_BYTES)",
        )
        return
    problem = _dependency_problem(ctx, c, depends_on)
    if problem is not None:
        _reject_task(ctx, c, c.task_id, problem)
        return
    unfinished = ctx.state.open_tasks.get(c.client_id, 0)
    if unfinished >= ctx.config.max_queued_per_client:
        _reject_task(
            ctx,
            c,
            c.task_id,
            f"queue full: client {c.client_id!r} has {unfinished} unfinished tasks, "
            f"the limit is {ctx.config.max_queued_per_client} (TASKSTREAM_MAX_QUEUED_PER_CLIENT)",
        )
        return
    ctx.emit(accepted)
    if c.requires_review:
        ctx.emit(
            TaskPendingReview(client_id=c.client_id, task_id=c.task_id, occurred_at_ms=ctx.now)
        )
    else:
        lifecycle.admit(ctx, c.task_id, "submitted")
    dispatch(ctx, c.client_id)


# -- task commands ---------------------------------------------------------------------------


def _cancel(ctx: Decision, c: cmd.CancelTask) -> None:
    task = _open_task_or_reject(ctx, c, c.task_id)
    if task is None:
        return
    active = task.status in ACTIVE
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


def _approve(ctx: Decision, c: cmd.ApproveTask) -> None:
    task = _task_or_reject(ctx, c, c.task_id)
    if task is None:
        return
    if task.status != Status.PENDING_REVIEW:
        _reject_task(ctx, c, c.task_id, f"task is {task.status}, not pending review")
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


def _reject(ctx: Decision, c: cmd.RejectTask) -> None:
    task = _own_task(ctx, c.client_id, c.task_id)
    if task is None:
        _reject_command(ctx, c, UNKNOWN_TASK, task_id=c.task_id)
        return
    if task.status != Status.PENDING_REVIEW:
        _reject_command(ctx, c, f"task is {task.status}, not pending review", task_id=c.task_id)
        return
    _reject_task(ctx, c, c.task_id, c.reason or "rejected by reviewer", reviewer=c.reviewer)
    lifecycle.cascade_failure(ctx, c.task_id)
    dispatch(ctx, c.client_id)


def _expedite(ctx: Decision, c: cmd.ExpediteTask) -> None:
    task = _open_task_or_reject(ctx, c, c.task_id)
    if task is None:
        return
    if task.status in ACTIVE:
        _reject_task(ctx, c, c.task_id, "task is already assigned")
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


def _started(ctx: Decision, c: cmd.TaskStarted) -> None:
    task = _attempt_or_ignore(ctx, c, c.task_id, c.fencing_token)
    if task is None:
        return
    if task.status == Status.IN_PROGRESS:
        return
    ctx.emit(
        TaskStartedEvent(
            client_id=c.client_id,
            task_id=c.task_id,
            occurred_at_ms=ctx.now,
            session_id=task.session_id,
            fencing_token=c.fencing_token,
        )
    )


def _progress(ctx: Decision, c: cmd.ReportProgress) -> None:
    task = _attempt_or_ignore(ctx, c, c.task_id, c.fencing_token)
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


# -- results ---------------------------------------------------------------------------------


def _outcome(
    ctx: Decision, task_id: str, r: cmd.ReportResult | cmd.ItemResult, execution_time_ms: int
) -> None:
    if r.success:
        lifecycle.complete(ctx, task_id, r.output, execution_time_ms)
    else:
        lifecycle.attempt_failed(
            ctx,
            task_id,
            r.error or "failed",
            execution_time_ms,
            failure_class=r.failure_class,
            retry_after_ms=r.retry_after_ms,
        )


def _task_result(ctx: Decision, c: cmd.ReportResult, task_id: str) -> None:
    if _attempt_or_ignore(ctx, c, task_id, c.fencing_token) is None:
        return
    _outcome(ctx, task_id, c, c.execution_time_ms)


def _batch_result(ctx: Decision, c: cmd.ReportResult, batch_id: str) -> None:
    st = ctx.state
    batch = st.batches.get(batch_id)
    limit = len(batch.task_ids) if batch is not None else ctx.config.max_batch_size
    if len(c.items) > limit:
        # One refusal, not one event per item: a result cannot name more items than a batch has.
        _reject_command(
            ctx,
            c,
            f"result names {len(c.items)} items, more than "
            + (
                f"batch {batch_id} has ({limit})"
                if batch is not None
                else f"max_batch_size ({limit})"
            ),
        )
        return
    reported = {item.task_id: item for item in c.items}
    usable = (
        batch is not None
        and batch.client_id == c.client_id
        and batch.status == BatchStatus.DISPATCHED
        and not batch.reported
    )
    if batch is None or not usable:
        # Unknown or already consolidated: every item it names is a stale report.
        names = list(reported) if reported else list(batch.task_ids if batch else ())
        if not names:
            _reject_command(ctx, c, f"unknown batch {batch_id}")
        _reject_or_ignore(ctx, c, names, "batch is not awaiting a result")
        return
    if batch.fencing_token != c.fencing_token:
        for task_id in list(reported) or list(batch.live):
            task = _own_task(ctx, c.client_id, task_id)
            if task is not None:
                _ignore(ctx, task, c.fencing_token, "stale fencing token")
        return
    items = [t for t in batch.live if st.tasks[t].status in ACTIVE]
    outcomes: list[tuple[str, cmd.ReportResult | cmd.ItemResult]] = []
    for task_id in items:
        item = reported.get(task_id)
        if item is not None:
            outcomes.append((task_id, item))
        elif not c.items:  # a batch-level report covers every item
            outcomes.append((task_id, c))
        else:
            missing = cmd.ItemResult(
                task_id=task_id, success=False, error="no result reported for this item"
            )
            outcomes.append((task_id, missing))
    consolidated: dict[str, Any] = {
        task_id: (r.output if r.success else {"error": r.error or "failed"})
        for task_id, r in outcomes
    }
    successes = sum(1 for _, r in outcomes if r.success)
    effect = failure_classes.batch_health_effect(
        [(r.success, r.failure_class) for _, r in outcomes]
    )
    session_id = batch.session_id
    before = lifecycle.health_snapshot(st, session_id)
    ctx.emit(
        BatchResultConsolidated(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            batch_id=batch_id,
            operation=batch.operation,
            session_id=session_id,
            success_count=successes,
            failure_count=len(outcomes) - successes,
            consolidated_output=consolidated,
            health_effect=effect,
        )
    )
    if effect != failure_classes.HEALTH_NONE:
        lifecycle.health_after(
            ctx, session_id, before, success=effect == failure_classes.HEALTH_SUCCESS
        )
    extra = [task_id for task_id in reported if task_id not in items]
    _reject_or_ignore(ctx, c, extra, "not an open item of this batch")
    for task_id, r in outcomes:
        _outcome(ctx, task_id, r, c.execution_time_ms)


def _result(ctx: Decision, c: cmd.ReportResult) -> None:
    if c.batch_id is None and len(c.items) > 1:
        _reject_command(
            ctx, c, f"a single-task result names {len(c.items)} items", task_id=c.task_id
        )
        return
    if c.batch_id is not None:
        _batch_result(ctx, c, c.batch_id)
    elif c.task_id is not None:
        _task_result(ctx, c, c.task_id)
    else:
        _reject_command(ctx, c, "a result must name a task_id or a batch_id")
        return
    dispatch(ctx, c.client_id)


def _submit_batch_job(ctx: Decision, c: cmd.SubmitBatchJob) -> None:
    """Children are validated like single tasks: check a SubmitTask of the job's child spec."""
    template = _accepted_event(
        ctx,
        cmd.SubmitTask(
            client_id=c.client_id,
            task_id=c.batch_job_id,
            operation=c.operation,
            priority=c.priority,
            max_retries=c.max_retries,
            timeout_ms=c.timeout_ms,
            capabilities=c.capabilities,
        ),
        [],
    )
    batch_jobs.submit(ctx, c, template)


def _retry_due(ctx: Decision, c: cmd.RetryDue) -> None:
    task = _task_or_reject(ctx, c, c.task_id)
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
        lifecycle.admit(ctx, c.task_id, "scheduled", check_schedule=False)
    else:
        _reject_command(ctx, c, f"unknown RetryDue kind {c.kind!r}", task_id=c.task_id)
        return
    dispatch(ctx, c.client_id)


# -- sessions --------------------------------------------------------------------------------


def _register(ctx: Decision, c: cmd.RegisterSession) -> None:
    if _CONTROL.search(c.session_id) or _CONTROL.search(c.client_id):
        _reject_command(
            ctx,
            c,
            "invalid session_id or client_id: control characters (line breaks, NUL, ...)",
            session_id=c.session_id,
        )
        return
    if any(len(name) > MAX_ID_LENGTH for name in c.capabilities):
        _reject_command(
            ctx,
            c,
            f"invalid capabilities: a name longer than {MAX_ID_LENGTH} characters",
            session_id=c.session_id,
        )
        return
    session = ctx.state.sessions.get(c.session_id)
    if session is not None and session.client_id != c.client_id:
        _reject_command(
            ctx, c, "session id already registered for another client", session_id=c.session_id
        )
        return
    capabilities = list(dict.fromkeys(c.capabilities))
    if incarnations.superseded(session, c):
        incarnations.take_over(ctx, c, capabilities)
    elif (
        session is not None
        and session.agent_id == c.agent_id
        and session.max_concurrent == c.max_concurrent
        and list(session.capabilities) == capabilities
    ):
        # A re-registration that changes nothing proves the session is alive.
        ctx.emit(
            SessionHeartbeatReceived(
                client_id=c.client_id, occurred_at_ms=ctx.now, session_id=c.session_id
            )
        )
    else:
        ctx.emit(
            SessionRegistered(
                client_id=c.client_id,
                occurred_at_ms=ctx.now,
                session_id=c.session_id,
                agent_id=c.agent_id,
                max_concurrent=c.max_concurrent,
                capabilities=capabilities,
                incarnation=c.incarnation,
            )
        )
    dispatch(ctx, c.client_id)


def _release(ctx: Decision, c: cmd.ReleaseSession) -> None:
    if not _session_or_reject(ctx, c):
        return
    held = lifecycle.inflight_tasks(ctx.state, c.session_id)
    ctx.emit(
        SessionReleased(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            session_id=c.session_id,
            reason=c.reason,
            requeued_task_ids=held,
        )
    )
    lifecycle.requeue(ctx, held)
    dispatch(ctx, c.client_id)


def _heartbeat(ctx: Decision, c: cmd.SessionHeartbeat) -> None:
    if not _session_or_reject(ctx, c):
        return
    ctx.emit(
        SessionHeartbeatReceived(
            client_id=c.client_id, occurred_at_ms=ctx.now, session_id=c.session_id
        )
    )


_HANDLERS: dict[type[cmd.Command], Callable[[Decision, Any], None]] = {
    cmd.SubmitTask: _submit,
    cmd.CancelTask: _cancel,
    cmd.ApproveTask: _approve,
    cmd.RejectTask: _reject,
    cmd.ExpediteTask: _expedite,
    cmd.RegisterSession: _register,
    cmd.ReleaseSession: _release,
    cmd.SessionHeartbeat: _heartbeat,
    cmd.TaskStarted: _started,
    cmd.ReportProgress: _progress,
    cmd.ReportResult: _result,
    cmd.RetryDue: _retry_due,
    cmd.SubmitBatchJob: _submit_batch_job,
}
