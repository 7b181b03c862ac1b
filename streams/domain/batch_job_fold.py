"""``evolve`` for batch-job events (the rules that emit them live in ``batch_jobs``).

Kept apart from ``batch_jobs`` because ``evolve`` must not import the decision machinery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from schemas import events as ev
from schemas import management_events as mev
from schemas.credentials import comparable
from streams.domain.spec import canonical_json
from streams.domain.state import RETIRED_JOB, BatchJobRecord, PartitionState


def job_digest(e: ev.BatchJobAccepted) -> str:
    """What a repeated SubmitBatchJob is compared against (everything but time, and not the
    items' credentials: each submit seals them afresh, ``schemas.credentials``)."""
    doc = e.model_dump(mode="json", exclude={"client_id", "occurred_at_ms", "batch_job_id"})
    for child, dumped in zip(e.children, doc["children"], strict=True):
        shown = comparable(child.payload)
        if shown != child.payload:
            dumped["payload"] = canonical_json(shown)
    return hashlib.blake2b(canonical_json(doc).encode(), digest_size=16).hexdigest()


def _accepted(st: PartitionState, e: ev.BatchJobAccepted) -> None:
    if e.batch_job_id in st.batch_jobs:
        return
    st.add_batch_job(
        BatchJobRecord(
            batch_job_id=e.batch_job_id,
            client_id=e.client_id,
            operation=e.operation,
            parallelism=e.parallelism,
            spec_digest=job_digest(e),
            task_ids=tuple(child.task_id for child in e.children),
            payloads=tuple(child.payload for child in e.children),
            priority=e.priority,
            explicit_priority=e.explicit_priority,
            max_retries=e.max_retries,
            timeout_ms=e.timeout_ms,
            capabilities=tuple(e.capabilities),
            batchable=e.batchable,
            session_required=e.session_required,
            accepted_at_ms=e.occurred_at_ms,
        )
    )


def _progressed(st: PartitionState, e: ev.BatchJobProgressed) -> None:
    if e.batch_job_id not in st.batch_jobs:
        return
    job = st.edit_batch_job(e.batch_job_id)
    for item in e.finished:
        job.running.pop(item.task_id, None)
        st.delete(st.job_children, item.task_id)
        job.results[item.task_id] = (item.index, item.success, dict(item.output), item.error)
    first = job.next_index
    for offset, task_id in enumerate(job.task_ids[first : e.next_index]):
        if task_id in e.released:
            job.running[task_id] = first + offset
            st.put(st.job_children, task_id, e.batch_job_id)
    job.next_index = max(job.next_index, e.next_index)
    job.succeeded = e.succeeded
    job.failed = e.failed


def _completed(st: PartitionState, e: ev.BatchJobCompleted) -> None:
    if e.batch_job_id not in st.batch_jobs:
        return
    job = st.edit_batch_job(e.batch_job_id)
    for task_id in job.running:
        st.delete(st.job_children, task_id)
    job.running = {}
    job.completed_at_ms = e.occurred_at_ms
    # The event log and the read side keep the items and results; the state keeps the summary.
    job.payloads = None
    job.results = {}
    st.retire(e.occurred_at_ms, RETIRED_JOB, e.batch_job_id)


def _rejected(st: PartitionState, e: ev.BatchJobRejected) -> None:
    """A refused submit changes nothing."""


def _cancelled(st: PartitionState, e: mev.BatchJobCancelled) -> None:
    """The change is in the ``BatchJobProgressed`` and ``TaskCancelled`` events that follow."""


BATCH_JOB_FOLDS: dict[type[ev.Event], Callable[[PartitionState, Any], None]] = {
    ev.BatchJobAccepted: _accepted,
    ev.BatchJobProgressed: _progressed,
    ev.BatchJobCompleted: _completed,
    ev.BatchJobRejected: _rejected,
    mev.BatchJobCancelled: _cancelled,
}
