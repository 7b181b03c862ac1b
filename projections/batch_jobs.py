"""The read side of batch jobs: one row per job, folded from the ``batch_job.*`` events.

``processed``, ``succeeded`` and ``failed`` are running totals from the processor; the fold
only ever raises them, so the view's progress never goes back. ``results`` fills in as
children finish (keyed by child task id) and is replaced by the final aggregate when the job
completes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

from pydantic import Field

from schemas import events as ev
from schemas import management_events as mev

from . import keys
from .rows import Row
from .tables import Tables

BATCH_JOB: Final = b"j\x00"

BatchJobState = Literal["processing", "completed", "failed", "rejected", "cancelled"]
BATCH_JOB_STATES: Final = ("processing", "completed", "failed", "rejected", "cancelled")
FINISHED_JOB_STATES: Final = frozenset({"completed", "failed", "rejected", "cancelled"})


def batch_job_key(batch_job_id: str) -> bytes:
    return BATCH_JOB + keys.encode(batch_job_id)


class BatchJobItemRow(Row):
    index: int
    success: bool
    output: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class BatchJobRow(Row):
    batch_job_id: str
    client_id: str
    operation: str | None = None
    state: BatchJobState = "processing"
    reason: str | None = None
    parallelism: int = 0
    total: int = 0
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    held: int = 0
    results: dict[str, BatchJobItemRow] = Field(default_factory=dict)
    accepted_at_ms: int | None = None
    updated_at_ms: int | None = None
    completed_at_ms: int | None = None
    released: int = 0  # items handed out so far (released or failed at release)

    def refresh(self) -> None:
        self.held = max(0, self.total - self.released)
        self.running = max(0, self.released - self.processed)


def _item(r: ev.BatchJobItemResult) -> BatchJobItemRow:
    return BatchJobItemRow(index=r.index, success=r.success, output=dict(r.output), error=r.error)


def _row(tables: Tables, e: ev.BatchJobEvent) -> BatchJobRow | None:
    return tables.get_model(batch_job_key(e.batch_job_id), BatchJobRow)


def _put(tables: Tables, row: BatchJobRow, at_ms: int) -> None:
    row.updated_at_ms = max(row.updated_at_ms or at_ms, at_ms)
    row.refresh()
    tables.put_model(batch_job_key(row.batch_job_id), row)


def _accepted(tables: Tables, e: ev.BatchJobAccepted) -> None:
    row = _row(tables, e)
    if row is not None and row.state != "rejected":
        return
    row = BatchJobRow(batch_job_id=e.batch_job_id, client_id=e.client_id)
    row.operation = e.operation
    row.parallelism = e.parallelism
    row.total = e.total
    row.accepted_at_ms = e.occurred_at_ms
    _put(tables, row, e.occurred_at_ms)


def _progressed(tables: Tables, e: ev.BatchJobProgressed) -> None:
    row = _row(tables, e) or BatchJobRow(batch_job_id=e.batch_job_id, client_id=e.client_id)
    row.total = max(row.total, e.total)
    row.processed = max(row.processed, e.processed)
    row.succeeded = max(row.succeeded, e.succeeded)
    row.failed = max(row.failed, e.failed)
    row.released = max(row.released, e.next_index)
    for r in e.finished:
        row.results[r.task_id] = _item(r)
    _put(tables, row, e.occurred_at_ms)


def _completed(tables: Tables, e: ev.BatchJobCompleted) -> None:
    row = _row(tables, e) or BatchJobRow(batch_job_id=e.batch_job_id, client_id=e.client_id)
    row.operation = row.operation or e.operation
    if row.state != "cancelled":  # a cancelled job completes too, and stays cancelled
        row.state = "failed" if e.status == "failed" else "completed"
    row.total = e.total
    row.succeeded = e.succeeded
    row.failed = e.failed
    row.processed = e.succeeded + e.failed
    row.released = e.total
    row.results = {r.task_id: _item(r) for r in e.results}
    row.completed_at_ms = e.occurred_at_ms
    _put(tables, row, e.occurred_at_ms)


def _rejected(tables: Tables, e: ev.BatchJobRejected) -> None:
    row = _row(tables, e)
    if row is not None and row.state != "rejected":
        return  # a refused duplicate id: the job that owns the id stays as it is
    row = BatchJobRow(batch_job_id=e.batch_job_id, client_id=e.client_id)
    row.state = "rejected"
    row.reason = e.reason
    _put(tables, row, e.occurred_at_ms)


def _cancelled(tables: Tables, e: mev.BatchJobCancelled) -> None:
    row = _row(tables, e)
    if row is None or row.state == "rejected":
        return
    row.state = "cancelled"
    row.reason = e.reason
    _put(tables, row, e.occurred_at_ms)


BATCH_JOB_FOLDS: dict[type[ev.Event], Callable[[Tables, Any], None]] = {
    ev.BatchJobAccepted: _accepted,
    ev.BatchJobProgressed: _progressed,
    ev.BatchJobCompleted: _completed,
    ev.BatchJobRejected: _rejected,
    mev.BatchJobCancelled: _cancelled,
}
