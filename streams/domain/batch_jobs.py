"""Batch jobs (seed 004 US-003): N items of one operation, at most ``parallelism`` unfinished.

A job's items become ordinary child tasks (priority, batching windows, retries, dead letters
all apply), submitted by the job itself: ``parallelism`` of them at once, the next one each
time a child reaches a terminal state. The rest are *held* in the job record. A child counts
as succeeded when it completes and as failed when it fails for good (after its retries), is
cancelled, or its id is already taken when its turn comes. Once every child is terminal the
job completes with the counts and every item's output or error.

Child ids are ``f"{batch_job_id}.{index}"`` unless the item names one. Every counter in
``BatchJobProgressed`` is a running total, so progress never goes back.

Cancelling a job (``CancelBatchJob``) raises ``batch_job.cancelled``; the held items end failed
at once (never released), the unfinished children are cancelled like a ``CancelTask`` each, and
the job completes as their cancellations settle (the read side keeps it ``cancelled``).

Batchable operations: a released child joins a batching window like any task, so children
travel in batches of at most ``min(parallelism, max_batch_size)`` and a freed slot waits up
to ``batch_window_ms`` for its batch to close.
"""

from __future__ import annotations

from schemas import commands as cmd
from schemas import events as ev
from schemas import management_events as mev
from schemas.credentials import credentials, describe
from schemas.states import TERMINAL_STATES
from streams.domain import lifecycle, task_commands
from streams.domain.batch_job_fold import job_digest
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.refusals import reject_command
from streams.domain.spec import canonical_json
from streams.domain.state import PartitionState
from streams.domain.submission import config_problems

RELEASE_REASON = "batch_job"


def child_id(batch_job_id: str, index: int, item: cmd.BatchJobItem) -> str:
    return item.task_id if item.task_id is not None else f"{batch_job_id}.{index}"


def _reject(ctx: Decision, c: cmd.SubmitBatchJob, reason: str) -> None:
    ctx.emit(
        ev.BatchJobRejected(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            batch_job_id=c.batch_job_id,
            reason=reason,
        )
    )


def _accepted_event(
    ctx: Decision, c: cmd.SubmitBatchJob, template: ev.TaskAccepted
) -> ev.BatchJobAccepted:
    return ev.BatchJobAccepted(
        client_id=c.client_id,
        occurred_at_ms=ctx.now,
        batch_job_id=c.batch_job_id,
        operation=c.operation,
        parallelism=c.parallelism,
        total=len(c.items),
        children=[
            ev.BatchJobChild(task_id=child_id(c.batch_job_id, i, item), payload=item.payload)
            for i, item in enumerate(c.items)
        ],
        priority=template.priority,
        explicit_priority=template.explicit_priority,
        max_retries=template.max_retries,
        timeout_ms=template.timeout_ms,
        capabilities=template.capabilities,
        batchable=template.batchable,
        session_required=template.session_required,
    )


def _problem(ctx: Decision, accepted: ev.BatchJobAccepted) -> str | None:
    st, cfg = ctx.state, ctx.config
    if not accepted.children:
        return "a batch job needs at least one item"
    seen: set[str] = set()
    for index, child in enumerate(accepted.children):
        config = config_problems(accepted.operation, child.payload, f"items[{index}].payload.")
        if config:
            return config[0]
        if not child.task_id:
            return "invalid item: empty task_id"
        if child.task_id in seen:
            return f"task id {child.task_id!r} appears twice in the job"
        seen.add(child.task_id)
        if st.knows(child.task_id):
            return f"task id {child.task_id!r} already exists"
        if child.payload and len(canonical_json(child.payload)) > cfg.max_payload_bytes:
            return (
                f"payload of item {child.task_id!r} larger than {cfg.max_payload_bytes} bytes "
                "(TASKSTREAM_MAX_PAYLOAD_BYTES)"
            )
        plaintext = next(credentials(child.payload), None)
        if plaintext is not None:
            return (
                f"item {child.task_id!r}: {describe(plaintext[0])} holds a credential in "
                "plaintext: submit through the SDK or the gateway with TASKSTREAM_SECRETS_KEY "
                "set, which seal it"
            )
    unfinished = st.open_tasks.get(accepted.client_id, 0)
    if unfinished >= cfg.max_queued_per_client:
        return (
            f"queue full: client {accepted.client_id!r} has {unfinished} unfinished tasks, "
            f"the limit is {cfg.max_queued_per_client} (TASKSTREAM_MAX_QUEUED_PER_CLIENT)"
        )
    return None


def submit(ctx: Decision, c: cmd.SubmitBatchJob, template: ev.TaskAccepted | str) -> None:
    """Accept a job and release its first children, or refuse it with ``BatchJobRejected``.

    ``template`` is what a SubmitTask of the job's child spec would be accepted as (or the
    reason it would be refused): children are validated exactly like single tasks.
    """
    accepted = _accepted_event(ctx, c, template) if not isinstance(template, str) else None
    existing = ctx.state.batch_jobs.get(c.batch_job_id)
    if existing is not None:
        same = (
            accepted is not None
            and existing.client_id == c.client_id
            and job_digest(accepted) == existing.spec_digest
        )
        if not same:
            _reject(ctx, c, "duplicate batch_job_id with a different specification")
        return  # an identical resubmit is a redelivery: nothing happens
    if accepted is None:
        assert isinstance(template, str)
        _reject(ctx, c, template)
        return
    problem = _problem(ctx, accepted)
    if problem is not None:
        _reject(ctx, c, problem)
        return
    ctx.emit(accepted)
    advance(ctx, c.batch_job_id, [])
    dispatch(ctx, c.client_id)


def advance(ctx: Decision, batch_job_id: str, finished: list[ev.BatchJobItemResult]) -> None:
    """Record finished children, release held items into the free slots, complete when done."""
    st, now = ctx.state, ctx.now
    job = st.batch_jobs[batch_job_id]
    done = {r.task_id for r in finished}
    free = job.parallelism - sum(1 for t in job.running if t not in done)
    results = list(finished)
    released: list[tuple[str, int]] = []
    index = job.next_index
    while free > 0 and index < len(job.task_ids):
        task_id = job.task_ids[index]
        if st.knows(task_id):  # taken by a SubmitTask after the job was accepted
            results.append(
                ev.BatchJobItemResult(
                    task_id=task_id,
                    index=index,
                    success=False,
                    error=f"task id {task_id!r} was taken by another task",
                )
            )
        else:
            released.append((task_id, index))
            free -= 1
        index += 1
    succeeded = job.succeeded + sum(1 for r in results if r.success)
    failed = job.failed + sum(1 for r in results if not r.success)
    payloads = job.payloads or ()
    ctx.emit(
        ev.BatchJobProgressed(
            client_id=job.client_id,
            occurred_at_ms=now,
            batch_job_id=batch_job_id,
            total=len(job.task_ids),
            processed=succeeded + failed,
            succeeded=succeeded,
            failed=failed,
            finished=results,
            released=[task_id for task_id, _ in released],
            next_index=index,
        )
    )
    for task_id, i in released:
        ctx.emit(
            ev.TaskAccepted(
                client_id=job.client_id,
                task_id=task_id,
                occurred_at_ms=now,
                operation=job.operation,
                payload=payloads[i] if i < len(payloads) else {},
                priority=job.priority,
                explicit_priority=job.explicit_priority,
                max_retries=job.max_retries,
                timeout_ms=job.timeout_ms,
                capabilities=list(job.capabilities),
                batchable=job.batchable,
                session_required=job.session_required,
            )
        )
        lifecycle.admit(ctx, task_id, RELEASE_REASON)
    if succeeded + failed == len(job.task_ids):
        _complete(ctx, batch_job_id)


def _complete(ctx: Decision, batch_job_id: str) -> None:
    job = ctx.state.batch_jobs[batch_job_id]
    ordered = sorted(job.results.items(), key=lambda kv: kv[1][0])
    ctx.emit(
        ev.BatchJobCompleted(
            client_id=job.client_id,
            occurred_at_ms=ctx.now,
            batch_job_id=batch_job_id,
            operation=job.operation,
            status="failed" if job.succeeded == 0 else "completed",
            total=len(job.task_ids),
            succeeded=job.succeeded,
            failed=job.failed,
            results=[
                ev.BatchJobItemResult(
                    task_id=task_id, index=index, success=success, output=output, error=error
                )
                for task_id, (index, success, output, error) in ordered
            ],
        )
    )


def cancel(ctx: Decision, c: cmd.CancelBatchJob) -> None:
    """Stop a job: held items fail unreleased, unfinished children are cancelled."""
    st = ctx.state
    job = st.batch_jobs.get(c.batch_job_id)
    if job is None or job.client_id != c.client_id:
        reject_command(ctx, c, f"no batch job {c.batch_job_id!r} for client {c.client_id!r}")
        return
    if job.completed_at_ms is not None:
        reject_command(ctx, c, f"batch job {c.batch_job_id!r} has already finished")
        return
    running = list(job.running)
    held = range(job.next_index, len(job.task_ids))
    error = "cancelled" + (f": {c.reason}" if c.reason else "")
    ctx.emit(
        mev.BatchJobCancelled(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            batch_job_id=c.batch_job_id,
            reason=c.reason,
            actor=c.actor,
            cancelled_task_ids=running,
            unreleased=len(held),
        )
    )
    if held:
        failed = job.failed + len(held)
        ctx.emit(
            ev.BatchJobProgressed(
                client_id=job.client_id,
                occurred_at_ms=ctx.now,
                batch_job_id=c.batch_job_id,
                total=len(job.task_ids),
                processed=job.succeeded + failed,
                succeeded=job.succeeded,
                failed=failed,
                finished=[
                    ev.BatchJobItemResult(
                        task_id=job.task_ids[i], index=i, success=False, error=error
                    )
                    for i in held
                ],
                released=[],
                next_index=len(job.task_ids),
            )
        )
    if not running:
        _complete(ctx, c.batch_job_id)
        return
    for task_id in running:  # each settles into the job (``settle``), the last completes it
        task_commands.cancel(
            ctx,
            cmd.CancelTask(client_id=c.client_id, task_id=task_id, reason=c.reason, actor=c.actor),
        )


def _child_result(st: PartitionState, event: ev.Event) -> tuple[str, ev.BatchJobItemResult] | None:
    """(job id, result) when ``event`` made a running child of a job terminal."""
    if not isinstance(event, ev.TaskEvent):
        return None
    job_id = st.job_children.get(event.task_id)
    task = st.task(event.task_id) if job_id is not None else None
    if job_id is None or task is None or task.status not in TERMINAL_STATES:
        return None
    index = st.batch_jobs[job_id].running[event.task_id]
    if isinstance(event, ev.TaskCompleted):
        return job_id, ev.BatchJobItemResult(
            task_id=event.task_id, index=index, success=True, output=event.output
        )
    if isinstance(event, ev.TaskFailed):
        error = event.error
    elif isinstance(event, ev.TaskCancelled):
        error = "cancelled" + (f": {event.reason}" if event.reason else "")
    elif isinstance(event, ev.TaskRejected) and event.command == "RejectTask":
        error = f"rejected: {event.reason}"
    else:
        return None
    return job_id, ev.BatchJobItemResult(
        task_id=event.task_id, index=index, success=False, error=error
    )


def settle(ctx: Decision) -> None:
    """After a decision: let every job whose children finished in it move on.

    Runs at the end of ``decide`` and ``tick`` over the events decided so far, so no rule
    that finishes a task needs to know about jobs.
    """
    st = ctx.state
    start = 0
    while st.job_children and start < len(ctx.events):
        end = len(ctx.events)
        finished: dict[str, dict[str, ev.BatchJobItemResult]] = {}
        for event in ctx.events[start:end]:
            found = _child_result(st, event)
            if found is not None:
                job_id, result = found
                finished.setdefault(job_id, {}).setdefault(result.task_id, result)
        start = end
        clients: dict[str, None] = {}
        for job_id, results in finished.items():
            advance(ctx, job_id, list(results.values()))
            clients[st.batch_jobs[job_id].client_id] = None
        for client_id in clients:
            dispatch(ctx, client_id)
