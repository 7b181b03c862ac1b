"""The projection's RocksDB store: rows, indexes, counters and consumed offsets in one database.

Commit order: the fold's changes, the counters row and the next offset of every partition go
into ONE ``WriteBatch``. After a crash the store therefore holds a state and exactly the
offsets it reflects; the projector resumes from those offsets. A store that cannot be opened,
has another layout, or claims offsets the log does not have is dropped and rebuilt by replay.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rocksdict import Options, WriteBatch

from projections import keys
from projections.errors import ProjectionStoreError
from projections.rows import Counters
from streams import rocksdb
from streams.errors import StoreError
from streams.rocksdb import StoreLockedError

log = logging.getLogger(__name__)

LAYOUT_VERSION = 4  # 4: TaskRow.submitted_by and attachments
_WHAT = "projection store"


WRITE_BUFFER_BYTES = 32 * 1024 * 1024
BLOCK_CACHE_BYTES = 32 * 1024 * 1024


def _options() -> Options:
    """Options that keep the store's memory small whatever its size: two 32 MB memtables at
    most and a 32 MB block cache. The bloom filter spares the fold a data-block read for every
    new task (a get that misses). Index and filter blocks stay outside the cache; they grow
    with the data, ~10 bits per key in the filters."""
    return rocksdb.options(rocksdb.Sizes(WRITE_BUFFER_BYTES, BLOCK_CACHE_BYTES, 10))


class ProjectionStore:
    """One RocksDB directory per projector instance and events topic, locked by this process
    from open to close (``streams.rocksdb``)."""

    def __init__(self, path: Path, topic: str) -> None:
        self.path = path
        self.topic = topic
        self._db: Any = None
        try:
            self._lock = rocksdb.lock(path, f"projection store {path} is in use by another process")
        except StoreLockedError as exc:
            raise ProjectionStoreError(str(exc)) from None
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise

    def _open(self) -> None:
        try:
            layout = self._open_layout()
        except StoreError as exc:
            raise ProjectionStoreError(str(exc)) from exc
        wanted = {"version": LAYOUT_VERSION, "topic": self.topic}
        if layout is not None and json.loads(layout) != wanted:
            log.warning(
                "projection store %s has layout %s, want %s; rebuilding it",
                self.path,
                layout.decode(),
                wanted,
            )
            self._drop_db()
            self._open()
            return
        if layout is None:
            self._db.put(keys.LAYOUT_KEY, json.dumps(wanted).encode())

    def _open_layout(self) -> bytes | None:
        """Open the database (rebuilt empty if it cannot be opened or read) and its layout."""
        self._db, why = rocksdb.open_or_rebuild(self.path, _options(), _WHAT)
        if why is not None:
            log.warning("%s; rebuilding it", why)
            return None
        try:
            layout = self._db.get(keys.LAYOUT_KEY)
        except Exception as exc:  # rocksdict raises plain Exception on corruption
            log.warning("%s %s cannot be read (%s); rebuilding it", _WHAT, self.path, exc)
            self._drop_db()
            self._db = rocksdb.create(self.path, _options(), _WHAT)
            return None
        return None if layout is None else bytes(layout)

    # reads ------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def scan(self, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        start = prefix if after is None else after
        for key, value in self._db.items(from_key=start):
            if not key.startswith(prefix):
                return
            if after is not None and key == after:
                continue
            yield key, value

    def load(self) -> tuple[Counters, dict[int, int]]:
        """The persisted counters and the next offset of every partition."""
        raw = self.get(keys.COUNTERS_KEY)
        counters = Counters() if raw is None else Counters.model_validate_json(raw)
        offsets = {
            keys.partition_of(key): int(value) for key, value in self.scan(keys.OFFSET_PREFIX)
        }
        return counters, offsets

    # writes -----------------------------------------------------------------------------
    def write(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch)

    def drop(self) -> None:
        """Delete everything and start empty (same path, same topic; the lock stays held)."""
        self._drop_db()
        self._open()

    def _drop_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        rocksdb.destroy(self.path, _options())

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._lock.release()
