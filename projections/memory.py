"""A dict-backed projection store: the same reads as the RocksDB store, for tests and tools."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from schemas.events import Event

from .activity import RecentActivity
from .fold import apply
from .tables import Tables


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(self, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        start = prefix if after is None else after
        i = bisect.bisect_left(self._keys, start)
        while i < len(self._keys):
            key = self._keys[i]
            i += 1
            if not key.startswith(prefix):
                return
            if after is not None and key == after:
                continue
            value = self._data.get(key)
            if value is not None:
                yield key, value

    def write(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in changes:
            if value is None:
                if self._data.pop(key, None) is not None:
                    self._keys.pop(bisect.bisect_left(self._keys, key))
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value


class MemorySource:
    """A complete in-process projection over a ``MemoryStore``: feed events, then read.

    Used by tests as the reference fold and by tools that project a handful of events."""

    def __init__(self) -> None:
        self.memory = MemoryStore()
        self._tables = Tables(self.memory.get)
        self.activity = RecentActivity()

    @property
    def store(self) -> MemoryStore:
        return self.memory

    @property
    def tables(self) -> Tables:
        return self._tables

    def feed(self, event: Event, partition: int = 0, offset: int | None = None) -> None:
        if offset is None:
            offset = self._tables.offsets.get(partition, 0)
        apply(self._tables, event, partition, offset)
        self.activity.observe(self._tables, event, partition, offset)

    def flush(self) -> None:
        self.activity.sample(self._tables.counters)
        self.memory.write(self._tables.drain())

    def lag(self) -> dict[int, int]:
        return {p: 0 for p in self._tables.offsets}

    def running(self) -> bool:
        return True
