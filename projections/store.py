"""The projection's RocksDB store: rows, indexes, counters and consumed offsets in one database.

Commit order: the fold's changes, the counters row and the next offset of every partition go
into ONE ``WriteBatch``. After a crash the store therefore holds a state and exactly the
offsets it reflects; the projector resumes from those offsets. A store that cannot be opened,
has another layout, or claims offsets the log does not have is dropped and rebuilt by replay.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from . import keys
from .errors import ProjectionStoreError
from .rows import Counters

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1


WRITE_BUFFER_BYTES = 32 * 1024 * 1024
BLOCK_CACHE_BYTES = 32 * 1024 * 1024


def _options() -> Any:
    """Options that keep the store's memory small whatever its size: two 32 MB memtables at
    most and a 32 MB block cache. The bloom filter spares the fold a data-block read for every
    new task (a get that misses). Index and filter blocks stay outside the cache (a cache
    lookup per get cost the replay 14% CPU at 200,000 tasks); they grow with the data, ~10
    bits per key in the filters."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    return options


class ProjectionStore:
    """One RocksDB directory per projector instance and events topic."""

    def __init__(self, path: Path, topic: str) -> None:
        self.path = path
        self.topic = topic
        self._db: Any = None
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = Rdict(str(self.path), _options())
            layout = self._db.get(keys.LAYOUT_KEY)
        except Exception as exc:  # rocksdict raises plain Exception on corruption and locks
            if "lock" in str(exc).lower():
                raise ProjectionStoreError(
                    f"projection store {self.path} is in use by another process: {exc}"
                ) from None
            log.warning("projection store %s cannot be opened (%s); rebuilding it", self.path, exc)
            self._db = None
            shutil.rmtree(self.path, ignore_errors=True)
            self._db = Rdict(str(self.path), _options())
            layout = None
        wanted = {"version": LAYOUT_VERSION, "topic": self.topic}
        if layout is not None and json.loads(layout) != wanted:
            log.warning(
                "projection store %s has layout %s, want %s; rebuilding it",
                self.path,
                layout.decode(),
                wanted,
            )
            self.drop()
            return
        if layout is None:
            self._db.put(keys.LAYOUT_KEY, json.dumps(wanted).encode())

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
        """Delete everything and start empty (same path, same topic)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._open()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
