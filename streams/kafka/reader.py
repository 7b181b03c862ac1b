"""Reading one partition of a topic by offset, outside the consumer group (for recovery)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.errors import ProcessingError
from streams.kafka.fetch_wait import FetchWait
from streams.kafka.profile import EMBEDDED, BrokerProfile

__all__ = ["KafkaLogReader", "LogReader"]


class LogReader(Protocol):
    async def end_offset(self, topic: str, partition: int) -> int: ...

    def read(self, topic: str, partition: int, start: int, end: int) -> AsyncIterator[Any]: ...

    async def fetch(self, topic: str, partition: int, offset: int) -> Any | None: ...


class KafkaLogReader:
    """A manually assigned consumer (no group) that reads ranges of one partition at a time.

    ``profile`` says what the broker needs; without one the reader works around the embedded
    broker's quirks, which is correct (if slower) on any broker."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        stall_timeout_s: float = 30.0,
        *,
        profile: BrokerProfile = EMBEDDED,
    ) -> None:
        self._consumer = consumer
        self._profile = profile
        self._stall_timeout_s = stall_timeout_s
        self._fetch_wait: FetchWait | None = None  # made on first read (the consumer runs)

    async def end_offset(self, topic: str, partition: int) -> int:
        """The partition's high watermark.

        Kafka's ListOffsets answers it. The embedded broker (Tansu) answers with the base
        offset of the last record batch + 1, short of the end when that batch holds several
        records; there the high watermark of a fetch of the last record is taken.
        """
        tp = TopicPartition(topic, partition)
        consumer = self._consumer
        listed = int((await consumer.end_offsets([tp]))[tp])
        if listed == 0 or not self._profile.short_list_offsets:
            return listed
        consumer.assign([tp])
        consumer.seek(tp, listed - 1)
        await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        highwater = consumer.highwater(tp)
        return max(listed, int(highwater)) if highwater is not None else listed

    async def read(self, topic: str, partition: int, start: int, end: int) -> AsyncIterator[Any]:
        """Records with ``start <= offset < end``, in order."""
        if start >= end:
            return
        tp = TopicPartition(topic, partition)
        consumer = self._consumer
        consumer.assign([tp])
        consumer.seek(tp, start)
        position = start
        stalled_since = time.monotonic()
        if self._fetch_wait is None:
            self._fetch_wait = FetchWait(
                consumer, name="log reader", enabled=self._profile.starves_fetches
            )
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            records = batch.get(tp, ())
            self._fetch_wait.observe(not records)
            for record in records:
                if record.offset >= end:
                    return
                yield record
            new_position = await consumer.position(tp)
            if new_position > position:
                position, stalled_since = new_position, time.monotonic()
            elif time.monotonic() - stalled_since > self._stall_timeout_s:
                raise ProcessingError(
                    f"reading {topic}[{partition}] made no progress at offset {position} "
                    f"for {self._stall_timeout_s:.0f}s (end {end})"
                )

    async def fetch(self, topic: str, partition: int, offset: int) -> Any | None:
        """The record at ``offset``, or None if the log no longer holds it."""
        end = await self.end_offset(topic, partition)
        async for record in self.read(topic, partition, offset, min(end, offset + 1)):
            return record if record.offset == offset else None
        return None
