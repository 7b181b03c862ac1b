"""Delay agents against a real broker: due times, re-tiering, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import CODEC
from schemas.commands import RetryDue
from schemas.records import DeadLetter
from streams.delay import DelayAgent
from streams.settings import Settings, retry_tier_name
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

# Short group timings: a group settles (and fails over) faster than with the defaults.
GROUP_TIMINGS: dict[str, Any] = {
    "kafka_session_timeout_ms": 6000,
    "kafka_heartbeat_interval_ms": 300,
}
# Clock reads of the test and the agent may differ by a little scheduling noise.
EARLY_TOLERANCE_MS = 50


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def delay_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Isolated settings with short group timings and every topic created."""
    settings: Settings = make_settings(**GROUP_TIMINGS)
    await ensure_topics(settings)
    return settings


@dataclass
class Seen:
    value: Any
    key: bytes | None
    partition: int
    timestamp: int
    wall_ms: int


@dataclass
class Collector:
    """Reads every partition of one topic from the beginning, in the background."""

    settings: Settings
    topic: str
    seen: list[Seen] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.settings.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                wall = now_ms()
                for tp, records in batch.items():
                    for r in records:
                        try:
                            value: Any = CODEC.decode(r.value)
                        except Exception:
                            value = r.value
                        self.seen.append(Seen(value, r.key, tp.partition, r.timestamp, wall))
                        self.arrived.set()
        finally:
            await consumer.stop()

    async def wait_for(self, count: int, timeout_s: float) -> list[Seen]:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count and time.monotonic() < deadline:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), deadline - time.monotonic())
        return list(self.seen)


@contextlib.asynccontextmanager
async def collecting(settings: Settings, name: str) -> AsyncIterator[Collector]:
    collector = Collector(settings, settings.topic(name))
    task = asyncio.create_task(collector.run())
    try:
        yield collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running(agent: DelayAgent) -> AsyncIterator[DelayAgent]:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        ready = asyncio.create_task(agent.ready.wait())
        done, _ = await asyncio.wait({ready, task}, timeout=30, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # raises the agent's error
        assert ready in done, "delay agent did not get an assignment within 30 s"
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def retry(task_id: str, due_at_ms: int, client_id: str | None = None) -> RetryDue:
    return RetryDue(
        client_id=client_id or f"client-{task_id}", task_id=task_id, attempt=1, due_at_ms=due_at_ms
    )


async def produce(
    settings: Settings,
    items: Sequence[tuple[int, RetryDue] | tuple[int, RetryDue, int | None]],
) -> None:
    """Produce RetryDue records onto tiers: (tier_ms, record[, partition])."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        for item in items:
            tier, record = item[0], item[1]
            partition = item[2] if len(item) > 2 else None
            await producer.send_and_wait(
                settings.topic(retry_tier_name(tier)),
                CODEC.encode(record),
                key=record.client_id.encode(),
                partition=partition,
            )
    finally:
        await producer.stop()


def task_ids(seen: list[Seen]) -> list[str]:
    return [s.value.task_id for s in seen]


def assert_not_early(seen: list[Seen]) -> None:
    for s in seen:
        assert s.timestamp >= s.value.due_at_ms - EARLY_TOLERANCE_MS, (
            f"{s.value.task_id} forwarded {s.value.due_at_ms - s.timestamp} ms before it was due"
        )
        assert s.wall_ms >= s.value.due_at_ms - EARLY_TOLERANCE_MS


async def test_records_come_out_when_due_in_order_and_never_early(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    async with (
        running(DelayAgent(settings)) as agent,
        collecting(settings, "commands") as commands,
    ):
        t0 = now_ms()
        await produce(
            settings,
            [
                (1000, retry("one-second", t0 + 1000)),
                (2000, retry("two-seconds", t0 + 2000)),
                # One tier, two partitions: the heads held on partition 0 must not delay the
                # earlier record on partition 1.
                (4000, retry("held-head", t0 + 3500), 0),
                (4000, retry("four-seconds", t0 + 4000), 0),
                (4000, retry("not-blocked", t0 + 1500), 1),
            ],
        )
        seen = await commands.wait_for(5, timeout_s=20)
        assert agent.forwarded == 5

    assert sorted(task_ids(seen)) == sorted(
        ["one-second", "two-seconds", "four-seconds", "held-head", "not-blocked"]
    )
    in_time_order = [s.value.task_id for s in sorted(seen, key=lambda s: s.timestamp)]
    assert in_time_order == [
        "one-second",
        "not-blocked",
        "two-seconds",
        "held-head",
        "four-seconds",
    ]
    assert_not_early(seen)
    for s in seen:
        assert s.key == s.value.client_id.encode()
        assert s.wall_ms <= s.value.due_at_ms + 10_000
    # Forwarded records keep their keys, so they land where the client's commands do.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for s in seen:
            meta = await producer.send_and_wait(
                settings.topic("commands"), b"probe", key=s.value.client_id.encode()
            )
            assert meta.partition == s.partition
    finally:
        await producer.stop()


async def test_record_due_after_its_tier_is_re_tiered(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    async with (
        running(DelayAgent(settings)) as agent,
        collecting(settings, "commands") as commands,
        collecting(settings, retry_tier_name(2000)) as tier_2s,
    ):
        t0 = now_ms()
        record = retry("late", t0 + 3500)
        await produce(settings, [(1000, record)])
        seen = await commands.wait_for(1, timeout_s=20)
        re_tiered = await tier_2s.wait_for(1, timeout_s=1)
        assert agent.retiered >= 1

    assert task_ids(seen) == ["late"]
    assert_not_early(seen)
    # After the 1 s tier the record still had about 2.5 s to wait: it moved to the 2 s tier.
    assert [s.value for s in re_tiered] == [record]
    assert re_tiered[0].timestamp >= t0 + 1000 - EARLY_TOLERANCE_MS
    assert re_tiered[0].key == record.client_id.encode()


async def test_undecodable_record_is_dead_lettered_and_skipped(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        garbage = await producer.send_and_wait(
            settings.topic("retry.1s"), b"\x00garbage", key=b"client-x", partition=2
        )
    finally:
        await producer.stop()
    # A good record behind the bad one in the same partition still comes out.
    await produce(settings, [(1000, retry("after-garbage", now_ms(), "client-x"), 2)])

    async with (
        running(DelayAgent(settings)) as agent,
        collecting(settings, "commands") as commands,
        collecting(settings, "dlq") as dlq,
    ):
        seen = await commands.wait_for(1, timeout_s=20)
        letters = await dlq.wait_for(1, timeout_s=5)
        assert agent.dead_lettered == 1

    assert task_ids(seen) == ["after-garbage"]
    assert len(letters) == 1
    letter = letters[0].value
    assert isinstance(letter, DeadLetter)
    assert letter.raw == b"\x00garbage"
    assert letter.client_id == "client-x"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        settings.topic("retry.1s"),
        2,
        garbage.offset,
    )
    assert "Avro" in letter.reason or "undecodable" in letter.reason
