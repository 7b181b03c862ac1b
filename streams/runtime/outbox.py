"""Records of one processing cycle, sent as few large batches and awaited once.

Appending is synchronous and cheap (no await per record): a record goes straight into the
producer batch of its topic-partition (a new one when that is full); :meth:`Outbox.flush`
sends the batches and waits until every one is acknowledged. Records of one partition keep
their order (aiokafka sends one request per broker at a time), which recovery relies on: a
partition's events are a prefix of what was decided, never a sequence with holes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka.partitioner import DefaultPartitioner

__all__ = ["Outbox", "Sink"]

Headers = Sequence[tuple[str, bytes]]

_KEY_CACHE_SIZE = 100_000


class Sink(Protocol):
    """Where a cycle's records go: what the processing code needs from the outbox."""

    def add(
        self,
        topic: str,
        partition: int | None,
        key: bytes | None,
        value: bytes,
        headers: Headers = (),
    ) -> None: ...

    async def flush(self) -> dict[tuple[str, int], int]: ...

    async def place(self, topic: str, key: bytes | None) -> int:
        """The partition a record with ``key`` goes to (decided now, so it can be staged)."""
        ...

    async def position(self, topic: str, partition: int) -> int:
        """An offset at or before where the next record of ``topic[partition]`` lands."""
        ...


# Asks the broker for end offsets: ``{(topic, partition): offset}`` (a lower bound is enough).
EndOffsets = Callable[[list[tuple[str, int]]], Awaitable[dict[tuple[str, int], int]]]


class Outbox:
    """Collects records, then sends them in per-partition batches on :meth:`flush`.

    It also remembers, per partition written, the next offset its acknowledgements showed:
    a lower bound of where the next record lands (``position``), which staged side records
    carry so that recovery knows where to look for them.
    """

    def __init__(self, producer: Any, end_offsets: EndOffsets | None = None) -> None:
        self._producer = producer
        self._end_offsets = end_offsets
        self._ends: dict[tuple[str, int], int] = {}
        # Per topic-partition: [open batch, records in it, [(full batch, records), ...]]
        self._batches: dict[tuple[str, int], list[Any]] = {}
        self._unpartitioned: list[tuple[str, bytes | None, bytes, Headers]] = []
        self._partitions: dict[str, list[int]] = {}
        self._key_cache: dict[str, dict[bytes, int]] = {}

    def __len__(self) -> int:
        held: int = sum(slot[1] + sum(n for _, n in slot[2]) for slot in self._batches.values())
        return held + len(self._unpartitioned)

    def add(
        self,
        topic: str,
        partition: int | None,
        key: bytes | None,
        value: bytes,
        headers: Headers = (),
    ) -> None:
        if partition is None:
            self._unpartitioned.append((topic, key, value, headers))
            return
        slot = self._batches.get((topic, partition))
        if slot is None:
            slot = self._batches[(topic, partition)] = [self._producer.create_batch(), 0, []]
        # The batch builder takes headers as a list only.
        listed = headers if headers.__class__ is list else list(headers)
        if slot[0].append(key=key, value=value, timestamp=None, headers=listed) is None:
            slot[2].append((slot[0], slot[1]))  # full
            slot[0] = self._producer.create_batch()
            slot[0].append(key=key, value=value, timestamp=None, headers=listed)
            slot[1] = 0
        slot[1] += 1

    async def place(self, topic: str, key: bytes | None) -> int:
        return (await self._partitioner(topic))(key)

    async def position(self, topic: str, partition: int) -> int:
        tp = (topic, partition)
        known = self._ends.get(tp)
        if known is None:
            known = 0
            if self._end_offsets is not None:
                known = (await self._end_offsets([tp])).get(tp, 0)
            self._ends[tp] = known
        return known

    async def _partitioner(self, topic: str) -> Callable[[bytes | None], int]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = sorted(await self._producer.partitions_for(topic))
            self._partitions[topic] = partitions
        cache = self._key_cache.setdefault(topic, {})
        if len(cache) > _KEY_CACHE_SIZE:
            cache.clear()
        every = partitions

        def partition_for(key: bytes | None) -> int:
            if key is None:
                return random.choice(every)
            found = cache.get(key)
            if found is None:
                # The producer's own rule: keyed side records land where a plain send puts them.
                found = cache[key] = int(DefaultPartitioner()(key, every, every))
            return found

        return partition_for

    async def flush(self) -> dict[tuple[str, int], int]:
        """Send everything collected; return the next offset of each partition written."""
        partitioners: dict[str, Callable[[bytes | None], int]] = {}
        unpartitioned, self._unpartitioned = self._unpartitioned, []
        for topic, key, value, headers in unpartitioned:
            partition_for = partitioners.get(topic)
            if partition_for is None:
                partition_for = partitioners[topic] = await self._partitioner(topic)
            self.add(topic, partition_for(key), key, value, headers)
        batches, self._batches = self._batches, {}
        if not batches:
            return {}
        sends: list[tuple[tuple[str, int], asyncio.Future[Any], int]] = []
        for tp, (batch, count, full) in batches.items():
            for full_batch, full_count in full:
                sends.append((tp, await self._send(full_batch, tp), full_count))
            sends.append((tp, await self._send(batch, tp), count))
        results = await asyncio.gather(*(future for _, future, _ in sends))
        next_offsets: dict[tuple[str, int], int] = {}
        for (tp, _, count), metadata in zip(sends, results, strict=True):
            next_offsets[tp] = max(next_offsets.get(tp, 0), int(metadata.offset) + count)
        for tp, end in next_offsets.items():
            self._ends[tp] = max(self._ends.get(tp, 0), end)
        return next_offsets

    async def _send(self, batch: Any, tp: tuple[str, int]) -> asyncio.Future[Any]:
        # A closed batch leaves at once; an open one waits out the producer's linger_ms.
        batch.close()
        future: asyncio.Future[Any] = await self._producer.send_batch(batch, tp[0], partition=tp[1])
        return future
