"""The fold of batch events into batch rows and the batch counters (a task's ``TaskBatched``
is folded with the task's events, ``projections.fold``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import events as ev
from schemas.events import Event

from . import keys
from .rows import BatchDoc, Counters, bump, new_batch
from .tables import Tables


def _batch_counter(c: Counters, state: str | None, sign: int) -> None:
    if state == "open":
        c.open_batches += sign
    elif state == "dispatched":
        c.dispatched_batches += sign
    elif state == "consolidated":
        c.consolidated_batches += sign


def change_batch(
    tables: Tables, batch_id: str, client_id: str, mutate: Callable[[BatchDoc], None]
) -> None:
    key = keys.batch_key(batch_id)
    row: BatchDoc | None = tables.doc(key)
    before = None if row is None else row["state"]
    if row is None:
        row = new_batch(batch_id, client_id)
    mutate(row)
    if before != row["state"]:
        _batch_counter(tables.counters, before, -1)
        _batch_counter(tables.counters, row["state"], +1)
    tables.put_doc(key, row)


def _load(c: Counters, session_id: str | None, items: int, sign: int) -> None:
    """A dispatched batch is one unit of its session's capacity, whatever its items."""
    if session_id is not None:
        bump(c.batch_units, session_id, sign, prune=True)
        bump(c.batch_items, session_id, sign * items, prune=True)


def _batch_processed(tables: Tables, e: ev.BatchProcessed) -> None:
    row: BatchDoc | None = tables.doc(keys.batch_key(e.batch_id))
    if row is None or row["state"] != "dispatched":
        _load(tables.counters, e.session_id, len(e.task_ids), +1)

    def mutate(batch: BatchDoc) -> None:
        batch["state"] = "dispatched"
        batch["operation"] = e.operation
        batch["task_ids"] = list(e.task_ids)
        batch["session_id"] = e.session_id
        batch["fencing_token"] = e.fencing_token
        batch["closed_by"] = e.closed_by
        batch["dispatched_at_ms"] = e.occurred_at_ms
        if batch["opened_at_ms"] is None:
            batch["opened_at_ms"] = e.occurred_at_ms

    change_batch(tables, e.batch_id, e.client_id, mutate)


def _consolidated(tables: Tables, e: ev.BatchResultConsolidated) -> None:
    c = tables.counters
    row: BatchDoc | None = tables.doc(keys.batch_key(e.batch_id))
    if row is not None and row["state"] == "dispatched":
        _load(c, row["session_id"], len(row["task_ids"]), -1)
    if row is None or row["state"] != "consolidated":
        c.batch_items_succeeded += e.success_count
        c.batch_items_failed += e.failure_count
    sizes = c.batch_sizes.setdefault(e.client_id, {})
    if e.batch_size is None:
        sizes.pop(e.operation, None)
    else:
        sizes[e.operation] = e.batch_size
    if not sizes:
        del c.batch_sizes[e.client_id]

    def mutate(batch: BatchDoc) -> None:
        batch["state"] = "consolidated"
        batch["operation"] = batch["operation"] or e.operation
        batch["session_id"] = e.session_id or batch["session_id"]
        batch["success_count"] = e.success_count
        batch["failure_count"] = e.failure_count
        batch["consolidated_output"] = dict(e.consolidated_output)
        batch["consolidated_at_ms"] = e.occurred_at_ms

    change_batch(tables, e.batch_id, e.client_id, mutate)


BATCH_FOLDS: dict[type[Event], Callable[[Tables, Any], None]] = {
    ev.BatchProcessed: _batch_processed,
    ev.BatchResultConsolidated: _consolidated,
}
