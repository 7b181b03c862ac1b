"""The table cache of the fold: the rows one write batch touches, over a read function for the
others (a RocksDB get, or a dict lookup in tests), and the index entries it adds and removes.
``drain()`` hands back every change, the counters and the offsets, so the caller writes them
all in one batch. No I/O here.

Rows are cached as documents (plain dicts typed in ``rows.py``) parsed and written with
pydantic-core's JSON functions, so the store holds the same JSON the row models read.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from pydantic_core import from_json, to_json

from . import keys
from .rows import (
    BatchDoc,
    BatchRow,
    Counters,
    DeadLetterDoc,
    DeadLetterRow,
    Row,
    SessionDoc,
    SessionRow,
    TaskDoc,
    TaskRow,
)

R = TypeVar("R", bound=Row)


Change = tuple[bytes, bytes | None]


_MISSING: Any = object()

# Rows the last drains wrote (or found absent) kept parsed for the next batches: a task's
# events arrive over a few batches, so most reads would otherwise get and parse the row the
# batch before wrote. Only the fold writes the store, so a kept row is the stored one.
KEPT_ROWS = 1024


class Tables:
    """The rows touched since the last ``drain()`` over a read function for the others.

    The fold's rows (tasks, sessions, batches, dead letters) are cached as documents;
    ``task()``/``put_task()`` and the like convert from and to the row models for callers
    outside the fold. ``get_model``/``put_model`` keep rows of other folds (batch jobs) as models.
    """

    def __init__(
        self,
        read: Callable[[bytes], bytes | None],
        counters: Counters | None = None,
        offsets: dict[int, int] | None = None,
    ) -> None:
        self._read = read
        self.counters = counters if counters is not None else Counters()
        self.offsets: dict[int, int] = dict(offsets or {})
        self._cache: dict[bytes, Any] = {}
        self._dirty: set[bytes] = set()
        self._kept: dict[bytes, Any] = {}  # at most KEPT_ROWS, least recently used first
        self._index: dict[bytes, bool] = {}
        self._born: set[bytes] = set()
        self._moved: dict[str, list[keys.IndexedFields]] = {}

    # documents --------------------------------------------------------------------------
    def doc(self, key: bytes) -> Any:
        doc = self._cache.get(key, _MISSING)
        if doc is _MISSING:
            doc = self._kept.pop(key, _MISSING)
            if doc is _MISSING:
                raw = self._read(key)
                doc = None if raw is None else from_json(raw)
            self._cache[key] = doc
        return doc

    def put_doc(self, key: bytes, doc: Any) -> None:
        self._cache[key] = doc
        self._dirty.add(key)

    def task_doc(self, task_id: str) -> TaskDoc | None:
        """The task's document as the fold has it (shared: do not change it)."""
        return cast("TaskDoc | None", self.doc(keys.task_key(task_id)))

    def session_doc(self, session_id: str) -> SessionDoc | None:
        return cast("SessionDoc | None", self.doc(keys.session_key(session_id)))

    def batch_doc(self, batch_id: str) -> BatchDoc | None:
        return cast("BatchDoc | None", self.doc(keys.batch_key(batch_id)))

    def dead_letter_doc(self, task_id: str) -> DeadLetterDoc | None:
        return cast("DeadLetterDoc | None", self.doc(keys.dead_key(task_id)))

    # rows as models (a copy: change them with put_*) -------------------------------------
    def task(self, task_id: str) -> TaskRow | None:
        doc = self.task_doc(task_id)
        return None if doc is None else TaskRow.model_validate(doc)

    def put_task(self, row: TaskRow) -> None:
        self.put_doc(keys.task_key(row.task_id), row.model_dump())

    def session(self, session_id: str) -> SessionRow | None:
        doc = self.session_doc(session_id)
        return None if doc is None else SessionRow.model_validate(doc)

    def put_session(self, row: SessionRow) -> None:
        self.put_doc(keys.session_key(row.session_id), row.model_dump())

    def batch(self, batch_id: str) -> BatchRow | None:
        doc = self.batch_doc(batch_id)
        return None if doc is None else BatchRow.model_validate(doc)

    def put_batch(self, row: BatchRow) -> None:
        self.put_doc(keys.batch_key(row.batch_id), row.model_dump())

    def dead_letter(self, task_id: str) -> DeadLetterRow | None:
        doc = self.dead_letter_doc(task_id)
        return None if doc is None else DeadLetterRow.model_validate(doc)

    def put_dead_letter(self, row: DeadLetterRow) -> None:
        self.put_doc(keys.dead_key(row.task_id), row.model_dump())

    # rows kept as models (folds outside this module) --------------------------------------
    def get_model(self, key: bytes, model: type[R]) -> R | None:
        row = self._cache.get(key, _MISSING)
        if row is _MISSING:
            row = self._kept.pop(key, _MISSING)
            if row is _MISSING or not (row is None or isinstance(row, model)):
                raw = self._read(key)
                row = None if raw is None else model.model_validate_json(raw)
            self._cache[key] = row
        return cast(R | None, row)

    def put_model(self, key: bytes, row: Row) -> None:
        self.put_doc(key, row)

    # indexes ----------------------------------------------------------------------------
    def index(self, key: bytes, present: bool) -> None:
        """Add or remove an index entry. An entry added and removed within one write batch
        (a task passing through a state) is never written: no put, no tombstone."""
        written = self._index
        if present:
            if key not in written:
                self._born.add(key)
            written[key] = True
        elif written.get(key) is True and key in self._born:
            del written[key]
            self._born.discard(key)
        else:
            written[key] = False

    def move_indexes(
        self, task_id: str, before: keys.IndexedFields, after: keys.IndexedFields
    ) -> None:
        """Note that what the task is indexed by went from ``before`` to ``after``;
        ``drain()`` moves its index entries from its first value in the batch to its last
        (``keys.task_index_changes``)."""
        moved = self._moved.get(task_id)
        if moved is None:
            self._moved[task_id] = [before, after]
        else:
            moved[1] = after

    def _move_task_indexes(self) -> None:
        index = self.index
        for task_id, (before, after) in self._moved.items():
            if before != after:
                for key, present in keys.task_index_changes(task_id, before, after):
                    index(key, present)
        self._moved.clear()

    # write batch --------------------------------------------------------------------------
    def drain(self) -> list[Change]:
        """Every change since the last drain, plus the counters and offsets rows."""
        self._move_task_indexes()
        changes: list[Change] = []
        cache = self._cache
        for key in sorted(self._dirty):
            row = cache[key]
            if row is None:
                changes.append((key, None))
            elif isinstance(row, BaseModel):
                changes.append((key, row.model_dump_json().encode()))
            else:
                # As ``model_dump_json`` writes the row models: NaN and infinities as null.
                changes.append((key, to_json(row, inf_nan_mode="null")))
        for key, present in sorted(self._index.items()):
            changes.append((key, b"" if present else None))
        changes.append((keys.COUNTERS_KEY, self.counters.model_dump_json().encode()))
        for partition, offset in sorted(self.offsets.items()):
            changes.append((keys.offset_key(partition), str(offset).encode()))
        self._keep(cache)
        self._dirty.clear()
        self._index.clear()
        self._born.clear()
        return changes

    def _keep(self, cache: dict[bytes, Any]) -> None:
        """Move the batch's rows to the kept ones (most recent last), within KEPT_ROWS."""
        kept = self._kept
        kept.update(cache)
        cache.clear()
        excess = len(kept) - KEPT_ROWS
        if excess > 0:
            for key in list(itertools.islice(kept, excess)):
                del kept[key]
