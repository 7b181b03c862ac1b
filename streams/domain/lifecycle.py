"""Task transitions shared by commands and ticks: admit, queue, complete, fail, retry, requeue.

Order of gates for a new or approved task: human review, then the scheduled start, then the
dependencies, then the queue. Dependencies are tasks of the same client in the same
partition; an id that is not known yet is waited for (it may be submitted later). A
dependency that failed, was cancelled or was rejected fails its dependents (and theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schemas.commands import ResourcesUsed
from schemas.events import (
    AttemptRecord,
    SessionHealthChanged,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskDeadLettered,
    TaskFailed,
    TaskQueued,
    TaskRetryScheduled,
    TaskScheduled,
    TaskStartedEvent,
    TaskWaiting,
)
from schemas.states import ACTIVE_STATES
from streams.domain import batching, failure_classes, health, watch
from streams.domain.context import Decision
from streams.domain.priority import queue_priority_for
from streams.domain.retry import backoff_ms, has_retry_left, tier_for_delay
from streams.domain.state import DEAD, PartitionState, Status, TaskRecord

RETRIES_EXHAUSTED = "retries exhausted"


def start(ctx: Decision, client_id: str, task_id: str, task: TaskRecord, token: int) -> None:
    """The attempt ``token`` of ``task`` began: a TaskStarted, or a result that carries it
    (``started``). Nothing when it is in progress already."""
    if task.status == Status.IN_PROGRESS:
        return
    ctx.emit(
        TaskStartedEvent(
            client_id=client_id,
            task_id=task_id,
            occurred_at_ms=ctx.now,
            session_id=task.session_id,
            fencing_token=token,
        )
    )


def dependency_state(st: PartitionState, task: TaskRecord) -> tuple[str | None, list[str]]:
    """(the first dead dependency or None, the dependencies not completed yet)."""
    unmet: list[str] = []
    for dep_id in task.depends_on:
        dep = st.task(dep_id)
        if dep is None or dep.client_id != task.client_id:
            unmet.append(dep_id)
        elif dep.status in DEAD:
            return dep_id, unmet
        elif dep.status != Status.COMPLETED:
            unmet.append(dep_id)
    return None, unmet


def admit(ctx: Decision, task_id: str, reason: str, *, check_schedule: bool = True) -> None:
    """Move an accepted (or approved, or due) task to scheduled, waiting or queued."""
    st, now = ctx.state, ctx.now
    task = st.tasks[task_id]
    if check_schedule and task.scheduled_for_ms is not None and task.scheduled_for_ms > now:
        ctx.emit(
            TaskScheduled(
                client_id=task.client_id,
                task_id=task_id,
                occurred_at_ms=now,
                due_at_ms=task.scheduled_for_ms,
            )
        )
        return
    dead, unmet = dependency_state(st, task)
    if dead is not None:
        fail_permanently(ctx, task_id, reason=f"dependency {dead} failed")
        return
    if unmet:
        ctx.emit(
            TaskWaiting(
                client_id=task.client_id, task_id=task_id, occurred_at_ms=now, waiting_on=unmet
            )
        )
        return
    enqueue(ctx, task_id, reason)


def enqueue(
    ctx: Decision, task_id: str, reason: str, *, retry: bool = False, priority: int | None = None
) -> None:
    """TaskQueued, then TaskBatched when that applies.

    Dispatch to sessions and to the pool happens at the end of the decision (``dispatch``).
    """
    st, now = ctx.state, ctx.now
    task = st.tasks[task_id]
    if task.steps:
        # A multi-step task is never queued itself: its steps are (``steps``).
        from streams.domain import steps  # noqa: PLC0415 (steps admits its children here)

        steps.start(ctx, task_id)
        return
    if priority is None:
        priority = queue_priority_for(task.priority, expedited=task.expedited, retry=retry)
    ctx.emit(
        TaskQueued(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=now,
            priority=priority,
            attempt=task.attempt,
            reason=reason,
        )
    )
    if task.session_required and batching.should_batch(task):
        batching.join(ctx, task_id)


def assign(
    ctx: Decision,
    task_id: str,
    session_id: str | None,
    *,
    fencing_token: int,
    deadline_at_ms: int,
    priority: int,
    batch_id: str | None = None,
) -> None:
    """TaskAssigned: the task's current attempt goes to ``session_id`` (None: the pool)."""
    task = ctx.state.tasks[task_id]
    watch.at_assignment(ctx, task)
    ctx.emit(
        TaskAssigned(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=ctx.now,
            operation=task.operation,
            session_id=session_id,
            batch_id=batch_id,
            attempt=task.attempt,
            fencing_token=fencing_token,
            deadline_at_ms=deadline_at_ms,
            priority=priority,
        )
    )


def health_snapshot(st: PartitionState, session_id: str | None) -> tuple[float, str] | None:
    if session_id is None or session_id not in st.sessions:
        return None
    session = st.sessions[session_id]
    return session.score, session.circuit


def health_after(
    ctx: Decision, session_id: str | None, before: tuple[float, str] | None, success: bool
) -> None:
    """After an outcome event moved a session's score: open/close the circuit, report changes."""
    if session_id is None or before is None or session_id not in ctx.state.sessions:
        return
    cfg = ctx.config
    session = ctx.state.sessions[session_id]
    prev_score, prev_circuit = before
    circuit, score = health.next_circuit(prev_circuit, session.score, success, cfg)
    status = health.status_for(score, cfg)
    previous = health.status_for(prev_score, cfg)
    if circuit != prev_circuit or status != previous:
        ctx.emit(
            SessionHealthChanged(
                client_id=session.client_id,
                occurred_at_ms=ctx.now,
                session_id=session_id,
                score=score,
                status=status,
                previous_status=previous,
                circuit=circuit,
            )
        )


@dataclass(frozen=True, slots=True)
class AttemptDetails:
    """What a result says about its attempt beyond the outcome: the traceback of a failure
    (masked by the executor), the resources used and the handler's quality score."""

    traceback: str | None = None
    resources_used: ResourcesUsed | None = None
    quality: float | None = None


NO_DETAILS: Final = AttemptDetails()


def complete(
    ctx: Decision,
    task_id: str,
    output: dict[str, object],
    execution_time_ms: int,
    details: AttemptDetails = NO_DETAILS,
) -> None:
    st = ctx.state
    task = st.tasks[task_id]
    session_id, batch_id = task.session_id, task.batch_id
    before = health_snapshot(st, session_id) if batch_id is None else None
    ctx.emit(
        TaskCompleted(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=ctx.now,
            operation=task.operation,
            attempt=task.attempt,
            session_id=session_id,
            batch_id=batch_id,
            output=output,
            execution_time_ms=execution_time_ms,
            resources_used=details.resources_used,
            quality=details.quality,
        )
    )
    health_after(ctx, session_id, before, success=True)
    release_dependents(ctx, task_id)


def attempt_failed(
    ctx: Decision,
    task_id: str,
    error: str,
    execution_time_ms: int = 0,
    *,
    failure_class: str | None = None,
    retry_after_ms: int | None = None,
    details: AttemptDetails = NO_DETAILS,
) -> None:
    """One attempt failed: retry with backoff (at least ``retry_after_ms``), or fail for good
    when no retry is left or the failure is permanent (``failure_classes``). Only a session
    fault (``failure_class`` None counts as one) lowers the session's health."""
    st, now, cfg = ctx.state, ctx.now, ctx.config
    task = st.tasks[task_id]
    session_id, batch_id, attempt = task.session_id, task.batch_id, task.attempt
    kind = failure_classes.effective(failure_class)
    session_fault = failure_classes.is_session_fault(kind)
    before = health_snapshot(st, session_id) if batch_id is None and session_fault else None
    ctx.emit(
        TaskAttemptFailed(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=now,
            attempt=attempt,
            session_id=session_id,
            batch_id=batch_id,
            error=error,
            execution_time_ms=execution_time_ms,
            failure_class=kind,
            retry_after_ms=retry_after_ms,
            traceback=details.traceback,
            resources_used=details.resources_used,
            quality=details.quality,
        )
    )
    health_after(ctx, session_id, before, success=False)
    task = st.tasks[task_id]
    if kind == failure_classes.PERMANENT:
        fail_permanently(ctx, task_id, reason=failure_classes.PERMANENT_FAILURE, error=error)
    elif has_retry_left(attempt, task.max_retries):
        delay = failure_classes.retry_delay_ms(
            backoff_ms(attempt, cfg.retry_base_ms, cfg.retry_max_ms), retry_after_ms
        )
        ctx.emit(
            TaskRetryScheduled(
                client_id=task.client_id,
                task_id=task_id,
                occurred_at_ms=now,
                attempt=attempt + 1,
                delay_ms=delay,
                due_at_ms=now + delay,
                tier_ms=tier_for_delay(delay),
                error=error,
            )
        )
    else:
        fail_permanently(ctx, task_id, reason=RETRIES_EXHAUSTED, error=error)


def fail_permanently(ctx: Decision, task_id: str, reason: str, error: str | None = None) -> None:
    """TaskFailed + TaskDeadLettered with every attempt's record; dependents fail too."""
    st, now = ctx.state, ctx.now
    task = st.tasks[task_id]
    attempts = [
        AttemptRecord(attempt=f.attempt, session_id=f.session_id, error=f.error, at_ms=f.at_ms)
        for f in task.failures
    ]
    error = error if error is not None else reason
    ctx.emit(
        TaskFailed(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=now,
            operation=task.operation,
            attempt=len(attempts),
            error=error,
            reason=reason,
            attempts=attempts,
        )
    )
    dead_reason = reason
    if reason == RETRIES_EXHAUSTED:
        dead_reason = f"{reason} after {len(attempts)} attempts: {error}"
    elif reason == failure_classes.PERMANENT_FAILURE:
        dead_reason = f"{reason} on attempt {len(attempts)} (not retried): {error}"
    ctx.emit(
        TaskDeadLettered(
            client_id=task.client_id,
            task_id=task_id,
            occurred_at_ms=now,
            operation=task.operation,
            reason=dead_reason,
            attempts=attempts,
        )
    )
    cascade_failure(ctx, task_id)


def _waiting_dependents(st: PartitionState, task_id: str) -> list[str]:
    waiting = st.dependents.get(task_id)
    if not waiting:
        return []
    return sorted(waiting, key=lambda t: st.tasks[t].accepted_seq)


def cascade_failure(ctx: Decision, task_id: str) -> None:
    """A dead task fails every task waiting for it."""
    st = ctx.state
    for dependent in _waiting_dependents(st, task_id):
        if st.tasks[dependent].status == Status.WAITING:
            fail_permanently(ctx, dependent, reason=f"dependency {task_id} failed")


def release_dependents(ctx: Decision, task_id: str) -> None:
    """A completed task may let the tasks waiting for it go."""
    st = ctx.state
    for dependent in _waiting_dependents(st, task_id):
        task = st.tasks[dependent]
        if task.status != Status.WAITING:
            continue
        dead, unmet = dependency_state(st, task)
        if dead is not None:
            fail_permanently(ctx, dependent, reason=f"dependency {dead} failed")
        elif not unmet:
            enqueue(ctx, dependent, "dependencies_met")


def inflight_tasks(st: PartitionState, session_id: str) -> list[str]:
    """Tasks a session holds (single assignments and batch items), in assignment order."""
    session = st.sessions[session_id]
    held: list[str] = []
    for unit in session.units:
        kind, unit_id = unit[0], unit[2:]
        if kind == "t":
            task = st.tasks.get(unit_id)
            if task is not None and task.status in ACTIVE_STATES:
                held.append(unit_id)
        else:
            batch = st.batches.get(unit_id)
            if batch is not None:
                held.extend(t for t in batch.live if st.tasks[t].status in ACTIVE_STATES)
    return held


def requeue(ctx: Decision, task_ids: list[str]) -> None:
    """Work a lost or released session held goes back to the queue (same attempt)."""
    for task_id in task_ids:
        task = ctx.state.tasks[task_id]
        enqueue(ctx, task_id, "requeued", priority=task.queue_priority)
