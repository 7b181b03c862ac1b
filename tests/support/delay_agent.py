"""Helpers of the delay agent's integration tests: settings for a short-tier agent, producing
tier records, collecting what comes back on ``task.commands`` and the dead letters, and the
checks that a record never comes back early."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import CODEC
from schemas.commands import RetryDue
from streams.delay import DelayAgent
from streams.kafka.topics import ensure_topics
from streams.settings import Settings, retry_tier_name

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
