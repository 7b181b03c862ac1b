"""ReportResult: a single task's result or a batch's, fenced by the attempt's token.

A batch result is consolidated into one ``BatchResultConsolidated`` and one outcome per open
item; items it does not name fail (``no result reported for this item``)."""

from __future__ import annotations

from typing import Any

from schemas import commands as cmd
from schemas.events import BatchResultConsolidated
from schemas.states import ACTIVE_STATES
from streams.domain import batching, failure_classes, lifecycle
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.refusals import (
    attempt_or_ignore,
    ignore,
    own_task,
    reject_command,
    reject_or_ignore,
)
from streams.domain.state import BatchStatus


def _outcome(
    ctx: Decision, task_id: str, r: cmd.ReportResult | cmd.ItemResult, execution_time_ms: int
) -> None:
    # Traceback, resources and quality travel on a result, not on a batch's items.
    details = (
        lifecycle.AttemptDetails(r.traceback, r.resources_used, r.quality)
        if isinstance(r, cmd.ReportResult)
        else lifecycle.NO_DETAILS
    )
    if r.success:
        lifecycle.complete(ctx, task_id, r.output, execution_time_ms, details)
    else:
        lifecycle.attempt_failed(
            ctx,
            task_id,
            r.error or "failed",
            execution_time_ms,
            failure_class=r.failure_class,
            retry_after_ms=r.retry_after_ms,
            details=details,
        )


def _task_result(ctx: Decision, c: cmd.ReportResult, task_id: str) -> None:
    task = attempt_or_ignore(ctx, c, task_id, c.fencing_token)
    if task is None:
        return
    if c.started:
        lifecycle.start(ctx, c.client_id, task_id, task, c.fencing_token)
    _outcome(ctx, task_id, c, c.execution_time_ms)


def _batch_result(ctx: Decision, c: cmd.ReportResult, batch_id: str) -> None:
    st = ctx.state
    batch = st.batches.get(batch_id)
    limit = len(batch.task_ids) if batch is not None else batching.largest_size(ctx.config)
    if len(c.items) > limit:
        # One refusal, not one event per item: a result cannot name more items than a batch has.
        reject_command(
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
            reject_command(ctx, c, f"unknown batch {batch_id}")
        reject_or_ignore(ctx, c, names, "batch is not awaiting a result")
        return
    if batch.fencing_token != c.fencing_token:
        for task_id in list(reported) or list(batch.live):
            task = own_task(ctx, c.client_id, task_id)
            if task is not None:
                ignore(ctx, task, c.fencing_token, "stale fencing token")
        return
    items = [t for t in batch.live if st.tasks[t].status in ACTIVE_STATES]
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
    for task_id, r in outcomes:
        if r.started:  # the item's TaskStarted, folded into the result
            lifecycle.start(ctx, c.client_id, task_id, st.tasks[task_id], c.fencing_token)
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
            batch_size=batching.adapted(
                st, batch, successes, len(outcomes) - successes, ctx.config
            ),
        )
    )
    if effect != failure_classes.HEALTH_NONE:
        lifecycle.health_after(
            ctx, session_id, before, success=effect == failure_classes.HEALTH_SUCCESS
        )
    extra = [task_id for task_id in reported if task_id not in items]
    reject_or_ignore(ctx, c, extra, "not an open item of this batch")
    for task_id, r in outcomes:
        _outcome(ctx, task_id, r, c.execution_time_ms)


def result(ctx: Decision, c: cmd.ReportResult) -> None:
    if c.batch_id is None and len(c.items) > 1:
        reject_command(
            ctx, c, f"a single-task result names {len(c.items)} items", task_id=c.task_id
        )
        return
    if c.batch_id is not None:
        _batch_result(ctx, c, c.batch_id)
    elif c.task_id is not None:
        _task_result(ctx, c, c.task_id)
    else:
        reject_command(ctx, c, "a result must name a task_id or a batch_id")
        return
    dispatch(ctx, c.client_id)
