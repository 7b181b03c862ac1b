"""``evolve(state, event) -> state``: fold one event into the partition state (in place).

Evolve never decides: every value it stores comes from the event or from a fixed rule (the
health score steps), so replaying the event log always rebuilds the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from schemas.states import ACTIVE_STATES, TERMINAL_STATES
from streams.domain import buckets, health
from streams.domain.batch_job_fold import BATCH_JOB_FOLDS
from streams.domain.dispatch_fold import DISPATCH_FOLDS
from streams.domain.errors import DomainError
from streams.domain.failure_classes import HEALTH_FAILURE, HEALTH_SUCCESS, is_session_fault
from streams.domain.management_fold import management_folds
from streams.domain.notices import kept_on_finish
from streams.domain.records import StepRun
from streams.domain.schedule_fold import SCHEDULE_FOLDS
from streams.domain.session_fold import SESSION_FOLDS, seen
from streams.domain.spec import spec_digest
from streams.domain.state import (
    RETIRED_JOB,
    RETIRED_TASK,
    TIMER_TASK,
    BatchRecord,
    BatchStatus,
    Failure,
    PartitionState,
    Status,
    TaskRecord,
)


def evolve(state: PartitionState, event: ev.Event) -> PartitionState:
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise DomainError(f"evolve cannot fold {type(event).__name__}: not a taskstream event")
    if event.occurred_at_ms > state.meta.clock:
        state.edit_meta().clock = event.occurred_at_ms
    handler(state, event)
    if isinstance(event, ev.TaskEvent):
        state.lane_compact(event.client_id)
    state.prune_timers()
    return state


# -- shared mechanics ------------------------------------------------------------------------


def _task(st: PartitionState, task_id: str) -> TaskRecord | None:
    return st.edit_known_task(task_id)


def _free_unit(st: PartitionState, session_id: str | None, unit: str) -> None:
    st.delete(st.inflight, unit)
    if session_id is None:
        st.delete(st.pool_inflight, unit)
    if session_id is not None and session_id in st.sessions:
        session = st.edit_session(session_id)
        session.units.pop(unit, None)


def _unpend_batch(st: PartitionState, batch: BatchRecord) -> None:
    """Take an undispatched batch out of the pending indices."""
    st.index_remove(st.pending_batches, batch.client_id, batch.batch_id)
    st.delete(st.batch_ages, batch.batch_id)
    key = (batch.client_id, batch.operation)
    if st.current_batch.get(key) != batch.batch_id:
        return
    newest: str | None = None
    for other in st.pending_batches.get(batch.client_id, {}):
        cand = st.batches[other]
        if cand.operation == batch.operation and (
            newest is None or cand.seq > st.batches[newest].seq
        ):
            newest = other
    if newest is None:
        st.delete(st.current_batch, key)
    else:
        st.put(st.current_batch, key, newest)


def _leave_batch(st: PartitionState, batch_id: str | None, task_id: str) -> None:
    if batch_id is None or batch_id not in st.batches:
        return
    batch = st.edit_batch(batch_id)
    batch.live = tuple(t for t in batch.live if t != task_id)
    if batch.live:
        return
    if batch.status == BatchStatus.OPEN:
        _unpend_batch(st, batch)
    elif not batch.reported:
        _free_unit(st, batch.session_id, "b:" + batch_id)
    st.remove_batch(batch_id)
    for item in batch.task_ids:
        _unpinned(st, item)


def _unpinned(st: PartitionState, task_id: str) -> None:
    """Live work stopped referring to ``task_id``: if it is finished, retention may forget it."""
    task = st.task(task_id)
    if (
        task is not None
        and task.finished_at_ms is not None
        and task.status in TERMINAL_STATES
        and not st.pinned(task)
    ):
        st.retire(task.finished_at_ms, RETIRED_TASK, task_id)


def _detach(st: PartitionState, task: TaskRecord) -> None:
    """Remove a task from every index its current status puts it in."""
    status = task.status
    if status == Status.BATCHED:
        _leave_batch(st, task.batch_id, task.task_id)
    elif status in ACTIVE_STATES:
        if task.batch_id is not None:
            _leave_batch(st, task.batch_id, task.task_id)
        else:
            _free_unit(st, task.session_id, "t:" + task.task_id)
    elif status == Status.QUEUED and not task.session_required:
        st.delete(st.pool_queued, task.task_id)
    elif status == Status.WAITING:
        for dep in task.depends_on:
            st.index_remove(st.dependents, dep, task.task_id)
            _unpinned(st, dep)


def _finish(
    st: PartitionState, task: TaskRecord, status: str, at_ms: int, *, keep_payload: bool = False
) -> None:
    if task.status not in TERMINAL_STATES:
        st.count_open(task.client_id, -1)
        if task.client_id not in st.open_tasks:
            buckets.idle(st, task.client_id)
    task.status = status
    task.finished_at_ms = at_ms
    task.due_at_ms = None
    if not keep_payload:
        task.payload = kept_on_finish(task.payload)  # a notice of its outcome may need them
    st.finished(task)
    if not st.pinned(task):
        st.retire(at_ms, RETIRED_TASK, task.task_id)  # else when released (``_unpinned``)


# -- task events -----------------------------------------------------------------------------


def _accepted(st: PartitionState, e: ev.TaskAccepted) -> None:
    meta = st.edit_meta()
    meta.seq += 1
    old = st.task(e.task_id)
    if old is None or old.status in TERMINAL_STATES:
        st.count_open(e.client_id, 1)
    st.add_task(
        TaskRecord(
            task_id=e.task_id,
            client_id=e.client_id,
            operation=e.operation,
            payload=e.payload,
            priority=e.priority,
            explicit_priority=e.explicit_priority,
            max_retries=e.max_retries,
            timeout_ms=e.timeout_ms,
            scheduled_for_ms=e.scheduled_for_ms,
            requires_review=e.requires_review,
            depends_on=tuple(e.depends_on),
            capabilities=tuple(e.capabilities),
            batchable=e.batchable,
            session_required=e.session_required,
            spec_digest=spec_digest(e),
            accepted_at_ms=e.occurred_at_ms,
            accepted_seq=meta.seq,
            queue_priority=e.priority,
            assigned_to=(
                (e.assigned_to.kind, e.assigned_to.id) if e.assigned_to is not None else None
            ),
            deadline_due_ms=e.due_at_ms,
            steps=tuple(e.steps),
        )
    )


def _pending_review(st: PartitionState, e: ev.TaskPendingReview) -> None:
    task = _task(st, e.task_id)
    if task is not None:
        _detach(st, task)
        task.status = Status.PENDING_REVIEW


def _approved(st: PartitionState, e: ev.TaskApproved) -> None:
    """The status changes with the event that follows (scheduled, waiting or queued)."""


def _scheduled(st: PartitionState, e: ev.TaskScheduled) -> None:
    task = _task(st, e.task_id)
    if task is not None:
        _detach(st, task)
        task.status = Status.SCHEDULED
        task.due_at_ms = e.due_at_ms
        st.arm(e.due_at_ms, TIMER_TASK, e.task_id)


def _waiting(st: PartitionState, e: ev.TaskWaiting) -> None:
    task = _task(st, e.task_id)
    if task is None:
        return
    _detach(st, task)
    task.status = Status.WAITING
    for dep in task.depends_on:
        st.index_add(st.dependents, dep, task.task_id)


def _queued(st: PartitionState, e: ev.TaskQueued) -> None:
    task = _task(st, e.task_id)
    if task is None:
        return
    _detach(st, task)
    meta = st.edit_meta()
    meta.seq += 1
    task.status = Status.QUEUED
    task.attempt = e.attempt
    task.queue_priority = e.priority
    task.queued_at_ms = e.occurred_at_ms
    task.seq = meta.seq
    task.session_id = None
    task.batch_id = None
    task.fencing_token = None
    task.due_at_ms = None
    task.progress = 0.0
    if task.session_required:
        st.lane_add(task.client_id, task.queue_priority, task.seq, task.task_id)
    else:
        st.lane_add(task.client_id, task.queue_priority, task.seq, task.task_id, pool=True)
        st.put(st.pool_queued, task.task_id, None)


def _expedited(st: PartitionState, e: ev.TaskExpedited) -> None:
    task = _task(st, e.task_id)
    if task is None:
        return
    task.expedited = True
    if task.status == Status.QUEUED:
        # Re-queue at the new priority: lanes stay in arrival order.
        meta = st.edit_meta()
        meta.seq += 1
        task.queue_priority = e.priority
        task.queued_at_ms = e.occurred_at_ms
        task.seq = meta.seq
        pool = not task.session_required
        st.lane_add(task.client_id, task.queue_priority, task.seq, task.task_id, pool=pool)
    elif task.status == Status.BATCHED:
        task.queue_priority = e.priority
        if task.batch_id is not None:
            st.delete(st.batch_ages, task.batch_id)  # ``batching.batch_priority`` reads it


def _batched(st: PartitionState, e: ev.TaskBatched) -> None:
    task = _task(st, e.task_id)
    if task is None:
        return
    _detach(st, task)
    if e.batch_id not in st.batches:
        meta = st.edit_meta()
        meta.seq += 1
        meta.batch_seq += 1
        st.add_batch(
            BatchRecord(
                batch_id=e.batch_id,
                client_id=e.client_id,
                operation=e.operation,
                opened_at_ms=e.occurred_at_ms,
                seq=meta.seq,
            )
        )
        st.index_add(st.pending_batches, e.client_id, e.batch_id)
        st.put(st.current_batch, (e.client_id, e.operation), e.batch_id)
    batch = st.edit_batch(e.batch_id)
    batch.task_ids = (*batch.task_ids, e.task_id)
    batch.live = (*batch.live, e.task_id)
    task.status = Status.BATCHED
    task.batch_id = e.batch_id


def batch_deadline(st: PartitionState, task_ids: tuple[str, ...] | list[str], now_ms: int) -> int:
    """A batch must finish within the longest timeout of its items."""
    return now_ms + max((st.tasks[t].timeout_ms for t in task_ids if t in st.tasks), default=0)


def _stretch_batch(st: PartitionState, batch_id: str, deadline_at_ms: int) -> None:
    """A batch is due when its items are: their assignments carry the decided deadline
    (``batching.deadline``), which may be later than ``batch_deadline`` (records before it
    carry exactly that one)."""
    batch = st.batches.get(batch_id)
    if batch is None or batch.reported or deadline_at_ms <= batch.deadline_at_ms:
        return
    batch = st.edit_batch(batch_id)
    batch.deadline_at_ms = deadline_at_ms
    unit = "b:" + batch_id
    if unit in st.inflight:
        st.put(st.inflight, unit, deadline_at_ms)


def _batch_processed(st: PartitionState, e: ev.BatchProcessed) -> None:
    if e.batch_id not in st.batches:
        return
    batch = st.edit_batch(e.batch_id)
    if batch.status == BatchStatus.OPEN:
        _unpend_batch(st, batch)
    batch.status = BatchStatus.DISPATCHED
    batch.session_id = e.session_id
    batch.fencing_token = e.fencing_token
    batch.closed_by = e.closed_by
    batch.deadline_at_ms = batch_deadline(st, e.task_ids, e.occurred_at_ms)
    unit = "b:" + e.batch_id
    st.put(st.inflight, unit, batch.deadline_at_ms)
    meta = st.edit_meta()
    meta.fencing = max(meta.fencing, e.fencing_token)
    if e.session_id is not None and e.session_id in st.sessions:
        session = st.edit_session(e.session_id)
        session.units[unit] = None
        meta.rr_cursor[e.client_id] = session.reg_seq
    buckets.fold_charge(st, e.client_id, e.operation, len(e.task_ids), e.occurred_at_ms)


def _assigned(st: PartitionState, e: ev.TaskAssigned) -> None:
    task = _task(st, e.task_id)
    if task is None:
        return
    if e.batch_id is None:
        _detach(st, task)
    task.status = Status.ASSIGNED
    task.attempt = e.attempt
    task.session_id = e.session_id
    task.batch_id = e.batch_id
    task.fencing_token = e.fencing_token
    task.deadline_at_ms = e.deadline_at_ms
    task.progress = 0.0
    meta = st.edit_meta()
    meta.fencing = max(meta.fencing, e.fencing_token)
    if e.batch_id is not None:
        _stretch_batch(st, e.batch_id, e.deadline_at_ms)
        return
    unit = "t:" + e.task_id
    st.put(st.inflight, unit, e.deadline_at_ms)
    if e.session_id is None:
        st.put(st.pool_inflight, unit, None)
    elif e.session_id in st.sessions:
        session = st.edit_session(e.session_id)
        session.units[unit] = None
        meta.rr_cursor[e.client_id] = session.reg_seq
    buckets.fold_charge(st, e.client_id, e.operation, 1, e.occurred_at_ms)


def _started(st: PartitionState, e: ev.TaskStartedEvent) -> None:
    task = _task(st, e.task_id)
    if task is not None and task.status in ACTIVE_STATES:
        task.status = Status.IN_PROGRESS
        seen(st, task.session_id, e.occurred_at_ms)


def _progressed(st: PartitionState, e: ev.TaskProgressed) -> None:
    task = _task(st, e.task_id)
    if task is not None and task.status in ACTIVE_STATES:
        task.status = Status.IN_PROGRESS
        task.progress = e.progress
        seen(st, task.session_id, e.occurred_at_ms)


def _completed(st: PartitionState, e: ev.TaskCompleted) -> None:
    task = _task(st, e.task_id)
    if task is None:
        return
    _detach(st, task)
    task.attempt = e.attempt
    _finish(st, task, Status.COMPLETED, e.occurred_at_ms)
    session = seen(st, e.session_id, e.occurred_at_ms)
    if session is not None and e.batch_id is None:
        session.score = health.after_success(session.score)
        session.successes += 1


def _attempt_failed(st: PartitionState, e: ev.TaskAttemptFailed) -> None:
    task = _task(st, e.task_id)
    if task is None:
        return
    _detach(st, task)
    task.status = Status.ATTEMPT_FAILED
    task.failures = (
        *task.failures,
        Failure(e.attempt, e.session_id, e.error, e.occurred_at_ms),
    )
    session = seen(st, e.session_id, e.occurred_at_ms)
    if session is not None and e.batch_id is None and is_session_fault(e.failure_class):
        session.score = health.after_failure(session.score)
        session.failures += 1
    retry_after_ms = getattr(e, "retry_after_ms", None)
    if retry_after_ms:
        buckets.fold_pause(st, e.client_id, e.occurred_at_ms + retry_after_ms)


def _retry_scheduled(st: PartitionState, e: ev.TaskRetryScheduled) -> None:
    task = _task(st, e.task_id)
    if task is not None:
        _detach(st, task)
        task.status = Status.RETRY_SCHEDULED
        task.attempt = e.attempt
        task.due_at_ms = e.due_at_ms


def _nothing(st: PartitionState, e: Any) -> None:
    """Recorded for the log and the read side; the state only moves its clock."""


def _cancelled(st: PartitionState, e: ev.TaskCancelled) -> None:
    task = _task(st, e.task_id)
    if task is not None and task.status not in TERMINAL_STATES:
        _detach(st, task)
        _finish(st, task, Status.CANCELLED, e.occurred_at_ms)


def _rejected(st: PartitionState, e: ev.TaskRejected) -> None:
    """Only a reviewer's rejection changes a task; other rejections refuse a command."""
    if e.command != "RejectTask":
        return
    task = st.edit_known_task(e.task_id)
    if task is not None and task.status not in TERMINAL_STATES:
        _detach(st, task)
        _finish(st, task, Status.REJECTED, e.occurred_at_ms)


def _failed(st: PartitionState, e: ev.TaskFailed) -> None:
    task = _task(st, e.task_id)
    if task is not None and task.status not in TERMINAL_STATES:
        _detach(st, task)
        # The payload stays: the dead letter carries the original submit.
        _finish(st, task, Status.FAILED, e.occurred_at_ms, keep_payload=True)


def _step_started(st: PartitionState, e: ev.TaskStepStarted) -> None:
    task = _task(st, e.task_id)
    if task is None or task.status in TERMINAL_STATES:
        return
    _detach(st, task)
    task.status = Status.RUNNING
    task.step_runs = (*task.step_runs, StepRun(e.step_id, Status.RUNNING, e.child_task_id))
    st.put(st.step_children, e.child_task_id, e.task_id)


def _step_finished(st: PartitionState, e: ev.TaskStepFinished) -> None:
    if e.child_task_id is not None and st.step_children.get(e.child_task_id) == e.task_id:
        st.delete(st.step_children, e.child_task_id)
    task = _task(st, e.task_id)
    if task is None:
        return
    run = StepRun(e.step_id, e.status, e.child_task_id, dict(e.output), e.error)
    task.step_runs = (*(r for r in task.step_runs if r.step_id != e.step_id), run)


def _batch_consolidated(st: PartitionState, e: ev.BatchResultConsolidated) -> None:
    if e.batch_id not in st.batches:
        return
    batch = st.edit_batch(e.batch_id)
    if batch.reported:
        return
    batch.reported = True
    _free_unit(st, batch.session_id, "b:" + e.batch_id)
    record = st.clients.get(batch.client_id)
    if e.batch_size is not None:
        st.edit_client(batch.client_id).batch_sizes[batch.operation] = e.batch_size
    elif record is not None and batch.operation in record.batch_sizes:
        del st.edit_client(batch.client_id).batch_sizes[batch.operation]
    session = seen(st, batch.session_id, e.occurred_at_ms)
    if session is None:
        return
    effect = e.health_effect
    if effect is None:  # records before health_effect: from the counts
        effect = HEALTH_FAILURE if e.success_count == 0 and e.failure_count > 0 else HEALTH_SUCCESS
    if effect == HEALTH_FAILURE:
        session.score = health.after_failure(session.score)
        session.failures += 1
    elif effect == HEALTH_SUCCESS:
        session.score = health.after_success(session.score)
        session.successes += 1


def _forgotten(st: PartitionState, e: ev.TasksForgotten) -> None:
    """Retention (``streams.domain.retention``): the records go, their store keys are deleted."""
    for task_id in e.task_ids:
        task = st.task(task_id)
        if task is not None and task.status in TERMINAL_STATES and not st.pinned(task):
            st.remove_task(task_id)
    for batch_job_id in e.batch_job_ids:
        job = st.batch_jobs.get(batch_job_id)
        if job is not None and job.completed_at_ms is not None:
            st.remove_batch_job(batch_job_id)
            st.unretire((job.completed_at_ms, RETIRED_JOB, batch_job_id))


_HANDLERS: dict[type[ev.Event], Callable[[PartitionState, Any], None]] = {
    ev.TaskAccepted: _accepted,
    ev.TaskPendingReview: _pending_review,
    ev.TaskApproved: _approved,
    ev.TaskScheduled: _scheduled,
    ev.TaskWaiting: _waiting,
    ev.TaskQueued: _queued,
    ev.TaskExpedited: _expedited,
    ev.TaskBatched: _batched,
    ev.BatchProcessed: _batch_processed,
    ev.TaskAssigned: _assigned,
    ev.TaskStartedEvent: _started,
    ev.TaskProgressed: _progressed,
    ev.TaskCompleted: _completed,
    ev.TaskFailed: _failed,
    ev.TaskAttemptFailed: _attempt_failed,
    ev.TaskRetryScheduled: _retry_scheduled,
    ev.TaskRetrying: _nothing,
    ev.TaskCancelled: _cancelled,
    ev.TaskRejected: _rejected,
    ev.TaskDeadLettered: _nothing,
    ev.TaskTimedOut: _nothing,
    ev.ResultIgnored: _nothing,
    ev.BatchResultConsolidated: _batch_consolidated,
    ev.CommandRejected: _nothing,
    ev.TasksForgotten: _forgotten,
    ev.TaskStepStarted: _step_started,
    ev.TaskStepFinished: _step_finished,
    **SESSION_FOLDS,
    **BATCH_JOB_FOLDS,
    **management_folds(_detach, seen, _accepted),
    **SCHEDULE_FOLDS,
    **DISPATCH_FOLDS,
}
