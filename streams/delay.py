"""Delay agents: hold ``RetryDue`` records on the delay tiers until they fall due.

One consumer group (``<group_id>-delay``) reads all six tiers (``task.retry.1s`` …
``task.retry.32s``). A tier partition is a FIFO queue: its head record is held until
``min(due_at_ms, record.timestamp + tier_ms)``; then it goes to ``task.commands`` when due, or
back to the tier that fits its remaining delay. A partition whose head is not yet due is
*paused* (never slept on), so every other partition keeps flowing; the poll timeout is the
scheduled wake-up for the earliest held head.

Both go to a partition number, never to where a key hashes: the command partition that the tier
record's ``ts-home`` header names (where the task's state is; ``streams.kafka.routing``), or,
on a record without one, the client's home partition; a re-tiered record keeps that number.

Delivery is at least once: offsets are committed only after the records produced for them are
acknowledged. The processor ignores a ``RetryDue`` for an attempt it already retried, so the
duplicates a crash or a rebalance can cause are harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas.codec import CODEC
from schemas.commands import RetryDue
from schemas.errors import DecodeError
from schemas.records import DeadLetter
from streams.domain.retry import RETRY_TIERS_MS, tier_for_delay
from streams.errors import BrokerError, ProcessingError
from streams.kafka import producer_kwargs, topic_partitions
from streams.kafka.fetch_wait import FetchWait, starved
from streams.kafka.membership import group_consumer
from streams.kafka.profile import broker_profile
from streams.kafka.routing import header_partition, home_partition
from streams.settings import Settings, retry_tier_name

__all__ = [
    "DelayAgent",
    "WakeupPlan",
    "destination_tier",
    "plan_wakeups",
    "release_at_ms",
]

log = logging.getLogger(__name__)

K = TypeVar("K")

# Upper bound of one poll, so a stop request is noticed quickly even when nothing is held.
MAX_POLL_WAIT_MS = 500
_UNLIMITED = 1 << 62  # getmany without max_records: no poll is cut short for room


# --- timing rules (pure) -------------------------------------------------------------------


def release_at_ms(due_at_ms: int, record_timestamp_ms: int, tier_ms: int) -> int:
    """When a tier record is looked at again: when due, or when its tier's delay is over."""
    return min(due_at_ms, record_timestamp_ms + tier_ms)


def destination_tier(due_at_ms: int, now_ms: int) -> int | None:
    """``None`` when the record is due (send it to the commands topic), else the tier for the
    remaining delay."""
    if due_at_ms <= now_ms:
        return None
    return tier_for_delay(due_at_ms - now_ms)


@dataclass(frozen=True, slots=True)
class WakeupPlan(Generic[K]):
    """Which held partitions to resume now, and when the next one falls due (``None``: none)."""

    resume: tuple[K, ...]
    next_wakeup_ms: int | None


def plan_wakeups(held: Mapping[K, int], now_ms: int) -> WakeupPlan[K]:
    """Given each held partition's head release time, decide what to resume at ``now_ms``."""
    resume = tuple(key for key, at in held.items() if at <= now_ms)
    later = [at for at in held.values() if at > now_ms]
    return WakeupPlan(resume, min(later) if later else None)


def poll_timeout_ms(next_wakeup_ms: int | None, now_ms: int, max_wait_ms: int) -> int:
    """How long one poll may wait: until the next scheduled wake-up, at most ``max_wait_ms``."""
    if next_wakeup_ms is None:
        return max_wait_ms
    return max(0, min(max_wait_ms, next_wakeup_ms - now_ms))


# --- the agent -----------------------------------------------------------------------------


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, agent: DelayAgent) -> None:
        self._agent = agent

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._agent._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._agent._on_assigned(set(assigned))


class DelayAgent:
    """One member of the delay-agent consumer group. Run several for availability.

    ``ready`` is set once the member holds its first partition assignment. Group timings
    (fail-over time) come from ``settings.kafka_session_timeout_ms`` and the heartbeat interval.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.settings = settings
        self.ready = asyncio.Event()
        self.group_id = f"{settings.group_id}-delay"
        self._clock = clock
        self._tiers: dict[str, int] = {
            settings.topic(retry_tier_name(t)): t for t in RETRY_TIERS_MS
        }
        self._commands_topic = settings.topic("commands")
        self._dlq_topic = settings.topic("dlq")
        self._held: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._generation = 0
        self._consumer: Any = None
        self._producer: Any = None
        self._partitions: dict[str, int] = {}  # commands and tier topics: partition counts
        self._fetch_wait: FetchWait | None = None
        self.forwarded = 0
        self.retiered = 0
        self.dead_lettered = 0
        # Records produced whose offsets could not be committed: the most that can come twice.
        self.uncommitted = 0

    @property
    def tier_topics(self) -> list[str]:
        return list(self._tiers)

    @property
    def assignment(self) -> set[TopicPartition]:
        """The tier partitions this member owns now (empty before the first assignment)."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    @property
    def paused(self) -> set[TopicPartition]:
        return set(self._consumer.paused()) if self._consumer is not None else set()

    @property
    def held(self) -> dict[TopicPartition, int]:
        """Held partitions and the time their head is released (a copy, for inspection)."""
        return dict(self._held)

    async def run(self, stop: asyncio.Event) -> None:
        """Forward due records until ``stop`` is set. Errors it cannot continue from raise."""
        self._producer = AIOKafkaProducer(**producer_kwargs(self.settings))
        self._consumer = group_consumer(
            self.settings, self.group_id, part="delay", max_poll_records=500
        )
        try:
            await self._producer.start()
            await self._consumer.start()
        except KafkaError as exc:
            await self._close()
            raise BrokerError(f"delay agent cannot reach Kafka: {exc}") from exc
        try:
            await self._learn_partitions()
            self._consumer.subscribe(self.tier_topics, listener=_Listener(self))
            while not stop.is_set():
                await self._step()
        finally:
            await self._close()

    async def _learn_partitions(self) -> None:
        for topic in (self._commands_topic, *self._tiers):
            partitions = await topic_partitions(self._consumer, topic)
            if not partitions:
                raise BrokerError(
                    f"delay agent: topic {topic} does not exist; run `taskstream topics create`"
                )
            self._partitions[topic] = len(partitions)

    def _home(self, record: Any, client_id: str) -> int:
        """The command partition a tier record belongs to (see the module docstring)."""
        count = self._partitions[self._commands_topic]
        named = header_partition(record.headers)
        if named is not None and named < count:
            return named
        return home_partition(client_id, count)

    async def _close(self) -> None:
        # No commit on the way out: everything handled was committed when it was acknowledged.
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        self._held.clear()

    async def _step(self) -> None:
        now = self._clock()
        plan = plan_wakeups(self._held, now)
        for tp in plan.resume:
            del self._held[tp]
            self._consumer.resume(tp)
        generation = self._generation
        batch: dict[TopicPartition, list[Any]] = await self._consumer.getmany(
            timeout_ms=poll_timeout_ms(plan.next_wakeup_ms, now, MAX_POLL_WAIT_MS)
        )
        if self._fetch_wait is None or self._fetch_wait.consumer is not self._consumer:
            self._fetch_wait = FetchWait(
                self._consumer,
                name="delay agent",
                enabled=broker_profile(self.settings).starves_fetches,
            )
        self._fetch_wait.observe(starved(self._consumer, batch, _UNLIMITED))
        if not batch:
            return
        async with self._lock:
            if generation != self._generation:
                # A rebalance ran during the poll, so the batch may predate the assignment.
                # Rewind what we still own to the batch start and let it come again; the rest
                # goes to its new owner from the committed offset.
                assigned = self._consumer.assignment()
                for tp, records in batch.items():
                    if tp in assigned and records:
                        self._consumer.seek(tp, records[0].offset)
                return
            await self._handle(batch)

    async def _handle(self, batch: Mapping[TopicPartition, list[Any]]) -> None:
        now = self._clock()
        outgoing: list[_Outgoing] = []
        commits: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            tier_ms = self._tiers[tp.topic]
            for record in records:
                out = self._route(tp, record, tier_ms, now)
                if isinstance(out, int):
                    # Hold the partition at this record until ``out``: pause it and rewind to
                    # the head, so the records fetched behind it come again after the resume.
                    self._held[tp] = out
                    self._consumer.pause(tp)
                    self._consumer.seek(tp, record.offset)
                    break
                outgoing.append(out)
                commits[tp] = record.offset + 1
        if not commits:
            return
        await self._produce(outgoing)
        if not await self._commit(commits):
            self.uncommitted += len(outgoing)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> bool:
        """Commit only after the produced records were acknowledged (at least once)."""
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: the new owner starts from the last commit and
            # sends these records again (an allowed duplicate).
            log.warning("delay agent: commit failed, records will be redelivered: %s", exc)
            return False
        return True

    def _route(self, tp: TopicPartition, record: Any, tier_ms: int, now: int) -> _Outgoing | int:
        """The record to produce for ``record``, or the time to hold it until."""
        try:
            if record.value is None:
                raise DecodeError("empty record value")
            due = CODEC.decode_as(record.value, RetryDue)
        except DecodeError as exc:
            self.dead_lettered += 1
            log.warning(
                "delay agent: undecodable record %s[%d]@%d: %s",
                tp.topic,
                tp.partition,
                record.offset,
                exc,
            )
            letter = DeadLetter(
                reason=f"undecodable delay-tier record: {exc}",
                client_id=_text_or_none(record.key),
                source_topic=tp.topic,
                source_partition=tp.partition,
                source_offset=record.offset,
                raw=record.value,
                occurred_at_ms=now,
            )
            return _Outgoing(self._dlq_topic, record.key, CODEC.encode(letter))
        release = release_at_ms(due.due_at_ms, record.timestamp, tier_ms)
        if release > now:
            return release
        key = due.client_id.encode()
        headers = list(record.headers or ())
        home = self._home(record, due.client_id)
        tier = destination_tier(due.due_at_ms, now)
        if tier is None:
            self.forwarded += 1
            return _Outgoing(self._commands_topic, key, record.value, headers, home)
        self.retiered += 1
        topic = self.settings.topic(retry_tier_name(tier))
        return _Outgoing(topic, key, record.value, headers, home % self._partitions[topic])

    async def _produce(self, outgoing: list[_Outgoing]) -> None:
        try:
            futures = [
                await self._producer.send(
                    o.topic, o.value, key=o.key, partition=o.partition, headers=o.headers or None
                )
                for o in outgoing
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise ProcessingError(f"delay agent could not produce: {exc}") from exc

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Wait for a batch in flight to be produced and committed, then forget the partitions.
        async with self._lock:
            self._generation += 1
            for tp in revoked:
                self._held.pop(tp, None)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            self._generation += 1
            # New partitions start from their committed offset. aiokafka builds fresh partition
            # states on reassignment, so no pause survives; resume defensively in case one did.
            paused = self._consumer.paused()
            for tp in assigned:
                self._held.pop(tp, None)
                if tp in paused:
                    self._consumer.resume(tp)
            self.ready.set()
        log.info("delay agent %s: assigned %d partitions", self.group_id, len(assigned))


def _text_or_none(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None
