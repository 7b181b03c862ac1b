"""The fold keeps the rows it last wrote: the next batches read them without the store, and
what they read is what the store holds."""

from __future__ import annotations

import pytest
from pydantic_core import from_json

from projections import keys, tables
from projections.fold import apply
from projections.tables import Tables
from schemas import events as ev


class CountingStore:
    def __init__(self) -> None:
        self.rows: dict[bytes, bytes] = {}
        self.reads: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.reads.append(key)
        return self.rows.get(key)

    def write(self, changes: list[tuple[bytes, bytes | None]]) -> None:
        for key, value in changes:
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = value


def accepted(task_id: str, at: int = 1) -> ev.Event:
    return ev.TaskAccepted(
        client_id="A",
        task_id=task_id,
        occurred_at_ms=at,
        operation="contact_update",
        priority=3,
        max_retries=3,
        timeout_ms=1000,
    )


def queued(task_id: str, at: int = 2) -> ev.Event:
    return ev.TaskQueued(
        client_id="A", task_id=task_id, occurred_at_ms=at, priority=3, attempt=1, reason="new"
    )


def test_a_row_written_by_one_batch_is_read_by_the_next_without_the_store() -> None:
    store = CountingStore()
    t = Tables(store.get)
    apply(t, accepted("t1"), 0, 0)
    store.write(t.drain())
    store.reads.clear()
    apply(t, queued("t1"), 0, 1)
    assert keys.task_key("t1") not in store.reads
    store.write(t.drain())
    # What the kept row became is what was written, and a fresh reader sees the same.
    fresh = Tables(store.get)
    assert fresh.task_doc("t1") == t.task_doc("t1")
    assert t.task_doc("t1") == from_json(store.rows[keys.task_key("t1")])
    assert t.task_doc("t1")["state"] == "queued"  # type: ignore[index]


def test_kept_rows_are_bounded_and_the_least_recently_used_go_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tables, "KEPT_ROWS", 3)
    store = CountingStore()
    t = Tables(store.get)
    for i in range(5):
        apply(t, accepted(f"t{i}"), 0, i)
        store.write(t.drain())
    t.task_doc("t2")  # kept: used again, so t3 is now the least recently used
    store.write(t.drain())
    apply(t, accepted("t5"), 0, 5)
    store.write(t.drain())
    store.reads.clear()
    for i in range(6):
        assert t.task_doc(f"t{i}") is not None
    assert store.reads == [keys.task_key(f"t{i}") for i in (0, 1, 3)]
