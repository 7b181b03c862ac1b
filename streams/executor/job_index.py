"""The worker pool's index of accepted work by task and by batch: what a cancel assignment
reaches, and how an item is stopped (its flag set, its running call cancelled)."""

from __future__ import annotations

from schemas.records import Assignment
from streams.executor.jobs import Item, Job


class JobIndex:
    """Accepted jobs (queued or running) by task id and by batch id."""

    def __init__(self) -> None:
        self._by_task: dict[str, list[tuple[Job, Item]]] = {}
        self._by_batch: dict[str, list[Job]] = {}

    def add(self, job: Job) -> None:
        for item in job.items:
            self._by_task.setdefault(item.task_id, []).append((job, item))
        batch_id = job.assignment.batch_id
        if batch_id is not None:
            self._by_batch.setdefault(batch_id, []).append(job)

    def forget(self, job: Job) -> None:
        for item in job.items:
            pairs = self._by_task.get(item.task_id)
            if pairs is not None:
                pairs[:] = [(j, i) for j, i in pairs if j is not job]
                if not pairs:
                    del self._by_task[item.task_id]
        batch_id = job.assignment.batch_id
        if batch_id is not None and batch_id in self._by_batch:
            jobs = [j for j in self._by_batch[batch_id] if j is not job]
            if jobs:
                self._by_batch[batch_id] = jobs
            else:
                del self._by_batch[batch_id]

    def targets(self, cancel: Assignment) -> list[Item]:
        """The items a cancel assignment reaches: by ``task_id`` (one task, or one item of a
        batch) or, without one, by ``batch_id``; work carrying a newer fencing token than a
        non-zero cancel token is left alone (the cancel predates it)."""
        found: list[Item] = []
        if cancel.task_id is not None:
            for job, item in self._by_task.get(cancel.task_id, []):
                if _cancel_applies(cancel, job):
                    found.append(item)
        elif cancel.batch_id is not None:
            for job in self._by_batch.get(cancel.batch_id, []):
                if _cancel_applies(cancel, job):
                    found.extend(job.items)
        return found

    def every_item(self) -> list[Item]:
        return [item for pairs in self._by_task.values() for _job, item in pairs]


def _cancel_applies(cancel: Assignment, job: Job) -> bool:
    token = cancel.fencing_token
    return token <= 0 or job.assignment.fencing_token <= token


def cancel_item(item: Item, reason: str) -> bool:
    """Stop one item unless it already ended or was stopped; True when this stopped it."""
    if item.finished or item.cancel_reason is not None:
        return False
    item.cancel_reason = reason
    item.ctx.mark_cancelled()
    if item.runner is not None:
        item.runner.cancel()
    job = item.job
    if job is not None and job.runner is not None:
        if all(i.cancel_reason is not None or i.finished for i in job.items):
            job.runner.cancel()  # a whole-batch call stops once none of its items is wanted
    return True
