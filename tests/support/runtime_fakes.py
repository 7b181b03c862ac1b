"""Fakes of the runtime's unit tests: an in-memory broker (its partitions, reads and
transactions), a store, a journal of what the processor wrote, and the topics they use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from streams.runtime.processing import RuntimeTopics
from streams.runtime.store import StoredOffsets

TOPICS = RuntimeTopics("p.commands", "p.events")


class Journal:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.added: list[tuple[str, int | None, bytes | None, bytes, Any]] = []

    # sink
    def add(
        self, topic: str, partition: int | None, key: bytes | None, value: bytes, headers: Any = ()
    ) -> None:
        self.calls.append(("produce", topic))
        self.added.append((topic, partition, key, value, tuple(headers)))
        if partition is not None:
            tp = (topic, partition)
            self.next_offsets[tp] = self.next_offsets.get(tp, 0) + 1

    async def flush(self) -> dict[tuple[str, int], int]:
        self.calls.append(("flush", None))
        return dict(self.next_offsets)

    async def place(self, topic: str, key: bytes | None) -> int:
        return 0

    async def position(self, topic: str, partition: int) -> int:
        return self.next_offsets.get((topic, partition), 0)

    async def commit(self, offsets: dict[int, int]) -> None:
        self.calls.append(("commit", offsets))


class FakeStore:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.data: dict[bytes, bytes] = {}
        self.offsets: StoredOffsets | None = None
        self.staged: dict[str, Any] = {}

    def write(self, changes: Any, offsets: StoredOffsets, staged: Any = ()) -> None:
        changes = list(changes)
        self.journal.calls.append(("store-write", (changes, offsets)))
        for key, value in changes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        self.offsets = offsets
        self.staged.update((s.output_id, s) for s in staged)

    def unstage(self, output_ids: Any) -> None:
        self.journal.calls.append(("store-unstage", None))
        for output_id in output_ids:
            del self.staged[output_id]

    def close(self) -> None:
        pass


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Broker:
    """In-memory topics that are both the sink and the log reader."""

    logs: dict[tuple[str, int], list[Rec]] = field(default_factory=dict)
    pending: list[tuple[str, int | None, bytes | None, bytes, Any]] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    fail_after: int | None = None  # keep only this many of the next flush's records

    def add(
        self, topic: str, partition: int | None, key: bytes | None, value: bytes, headers: Any = ()
    ) -> None:
        self.pending.append((topic, partition, key, value, tuple(headers)))

    async def flush(self) -> dict[tuple[str, int], int]:
        pending, self.pending = self.pending, []
        if self.fail_after is not None:
            pending, self.fail_after = pending[: self.fail_after], None
        ends: dict[tuple[str, int], int] = {}
        for topic, partition, key, value, headers in pending:
            log = self.logs.setdefault((topic, partition or 0), [])
            log.append(Rec(topic, partition or 0, len(log), 0, value, key, headers))
            ends[(topic, partition or 0)] = len(log)
        return ends

    async def place(self, topic: str, key: bytes | None) -> int:
        return 0

    async def position(self, topic: str, partition: int) -> int:
        return len(self.log(topic, partition))

    async def commit(self, offsets: dict[int, int]) -> None:
        self.committed.update(offsets)

    def log(self, topic: str, partition: int = 0) -> list[Rec]:
        return self.logs.setdefault((topic, partition), [])

    def command(self, value: tuple[str, bytes], timestamp: int = 1_000) -> Rec:
        log = self.log(TOPICS.commands)
        record = Rec(TOPICS.commands, 0, len(log), timestamp, value[1])
        log.append(record)
        return record

    async def end_offset(self, topic: str, partition: int) -> int:
        return len(self.log(topic, partition))

    async def read(self, topic: str, partition: int, start: int, end: int) -> AsyncIterator[Rec]:
        for record in self.log(topic, partition)[start:end]:
            yield record

    async def fetch(self, topic: str, partition: int, offset: int) -> Rec | None:
        log = self.log(topic, partition)
        return log[offset] if offset < len(log) else None
