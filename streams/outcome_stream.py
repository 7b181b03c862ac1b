"""Reading outcomes in a consumer group, committing each only once the caller handled it
(``TaskstreamClient.outcomes``; see ``streams.client`` for the contract)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas.codec import CODEC
from schemas.errors import DecodeError
from schemas.events import TaskCompleted, TaskFailed
from streams.errors import BrokerError
from streams.kafka import consumer_kwargs
from streams.settings import Settings

__all__ = ["Outcome", "OutcomeStream"]

log = logging.getLogger("streams.client")

Outcome = TaskCompleted | TaskFailed


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stream: OutcomeStream) -> None:
        self._stream = stream

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._stream._on_rebalance()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._stream._on_rebalance()


class OutcomeStream:
    """An async iterator of ``TaskCompleted`` / ``TaskFailed`` with commit-after-handling."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings = settings
        self.group_id = group_id
        self.topics = [settings.topic("completed"), settings.topic("failed")]
        self._consumer: Any = None
        self._buffer: deque[Any] = deque()
        # The outcome last handed out, as (partition, next offset, generation fetched in).
        self._in_hand: tuple[TopicPartition, int, int] | None = None
        self._generation = 0
        self._closed = False
        self.skipped = 0

    def __aiter__(self) -> AsyncIterator[Outcome]:
        return self

    async def __aenter__(self) -> OutcomeStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(handled=exc is None)

    async def __anext__(self) -> Outcome:
        if self._closed:
            raise StopAsyncIteration
        if self._in_hand is not None:
            # Asking for the next outcome means the previous one was handled.
            await self._commit(self._in_hand)
            self._in_hand = None
        if self._consumer is None:
            await self._start()
        while True:
            while not self._buffer:
                batch = await self._consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    self._buffer.extend(records)
            record = self._buffer.popleft()
            tp = TopicPartition(record.topic, record.partition)
            position = (tp, record.offset + 1, self._generation)
            try:
                outcome = CODEC.decode(record.value) if record.value is not None else None
            except DecodeError as exc:
                outcome = None
                log.warning(
                    "outcomes: skipping undecodable record %s[%d]@%d: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
            if isinstance(outcome, TaskCompleted | TaskFailed):
                self._in_hand = position
                return outcome
            # Not an outcome (undecodable, or another record type): nobody can handle it.
            self.skipped += 1
            await self._commit(position)

    async def close(self, *, handled: bool = True) -> None:
        """Stop reading. The outcome in hand is committed only when it was ``handled``."""
        if self._closed:
            return
        self._closed = True
        try:
            if handled and self._in_hand is not None and self._consumer is not None:
                await self._commit(self._in_hand)
        finally:
            self._in_hand = None
            if self._consumer is not None:
                await self._consumer.stop()

    async def _start(self) -> None:
        consumer = AIOKafkaConsumer(**consumer_kwargs(self.settings, self.group_id))
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise BrokerError(f"outcomes consumer cannot reach Kafka: {exc}") from exc
        consumer.subscribe(self.topics, listener=_Listener(self))
        self._consumer = consumer

    def _on_rebalance(self) -> None:
        # Positions restart from the committed offsets: buffered records come again.
        self._generation += 1
        self._buffer.clear()

    async def _commit(self, position: tuple[TopicPartition, int, int]) -> None:
        tp, offset, generation = position
        try:
            await self._consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("outcomes: commit failed, %s may be delivered again: %s", tp, exc)
            return
        if generation != self._generation and tp in self._consumer.assignment():
            # Fetched before a rebalance that handed the partition back from the committed
            # offset, which is now behind what was handled.
            self._consumer.seek(tp, offset)
