"""The fold's row documents against the row models the view parses them with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from projections import keys
from projections.fold import apply
from projections.rows import (
    BatchDoc,
    BatchRow,
    Execution,
    SessionRow,
    TaskRow,
    new_batch,
    new_execution,
    new_session,
    new_task,
)
from projections.tables import Tables
from schemas import events as ev


def _same_as_model(doc: Any, model: BaseModel) -> None:
    assert list(doc) == list(type(model).model_fields)
    assert doc == model.model_dump()


def test_new_documents_are_the_models_defaults() -> None:
    _same_as_model(new_task("t", "c"), TaskRow(task_id="t", client_id="c"))
    _same_as_model(new_session("s"), SessionRow(session_id="s"))
    batch: BatchDoc = new_batch("b", "c")
    _same_as_model(batch, BatchRow(batch_id="b", client_id="c"))
    _same_as_model(
        new_execution(2, "s", None, 7, 1000),
        Execution(attempt=2, session_id="s", fencing_token=7, assigned_at_ms=1000),
    )


def _accept(now: int, task_id: str) -> ev.Event:
    return ev.TaskAccepted(
        client_id="A",
        task_id=task_id,
        occurred_at_ms=now,
        operation="contact_update",
        priority=3,
        max_retries=3,
        timeout_ms=1000,
    )


def _queued(now: int, task_id: str) -> ev.Event:
    return ev.TaskQueued(
        client_id="A", task_id=task_id, occurred_at_ms=now, priority=3, attempt=1, reason="new"
    )


def test_a_stored_document_reads_back_as_the_row_the_fold_made() -> None:
    store: dict[bytes, bytes] = {}
    tables = Tables(store.get)
    apply(tables, _accept(1, "t"), 0, 0)
    apply(tables, _queued(2, "t"), 0, 1)
    folded = tables.task("t")
    for key, value in tables.drain():
        if value is not None:
            store[key] = value
    stored = TaskRow.model_validate_json(store[keys.task_key("t")])
    assert stored == folded
    assert stored.state == "queued"
    assert [h.type for h in stored.history] == ["task.accepted", "task.queued"]


def test_an_index_entry_added_and_removed_in_one_batch_is_never_written() -> None:
    store: dict[bytes, bytes] = {}
    tables = Tables(store.get)
    apply(tables, _accept(1, "t"), 0, 0)
    apply(tables, _queued(2, "t"), 0, 1)
    changes = dict(tables.drain())
    accepted = keys.index_key(keys.BY_STATE, ("accepted",), "t")
    queued = keys.index_key(keys.BY_STATE, ("queued",), "t")
    assert accepted not in changes  # neither a put nor a tombstone
    assert changes[queued] == b""
    store.update({k: v for k, v in changes.items() if v is not None})

    # In a later batch the queued entry exists in the store: leaving the state deletes it.
    apply(
        tables,
        ev.TaskCancelled(client_id="A", task_id="t", occurred_at_ms=3, reason="user"),
        0,
        2,
    )
    changes = dict(tables.drain())
    assert changes[queued] is None
    assert changes[keys.index_key(keys.BY_STATE, ("cancelled",), "t")] == b""


def test_put_task_stores_the_model_and_the_fold_continues_from_it() -> None:
    store: dict[bytes, bytes] = {}
    tables = Tables(store.get)
    tables.put_task(TaskRow(task_id="t", client_id="A", state="accepted", operation="x"))
    apply(tables, _queued(5, "t"), 0, 0)
    row = tables.task("t")
    assert row is not None
    assert row.state == "queued"
    assert row.operation == "x"
    assert row.ready_at_ms == 5
