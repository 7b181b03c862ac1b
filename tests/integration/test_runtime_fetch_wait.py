"""A broker that answers a fetch empty when it cannot list the partition within the fetch's
wait (the embedded one, once a partition holds many small batches) does not stop the runtime:
it lengthens its wait and takes every command."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka.topics import ensure_topics
from streams.runtime.runner import StreamRuntime
from tests.integration.runtime_app import CounterApp, incr, read_all, settings_for, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.smoke]

BATCHES = 3000
WAIT_MS = 1


async def produce_one_per_batch(
    bootstrap: str, topic: str, records: list[tuple[str, bytes]]
) -> None:
    """Every record in a batch of its own (what a steady trickle of producers leaves behind)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        pending: list[Any] = []
        for key, value in records:
            batch = producer.create_batch()
            batch.append(key=key.encode(), value=value, timestamp=None)
            pending.append(await producer.send_batch(batch, topic, partition=0))
            if len(pending) >= 200:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def broker_starves(bootstrap: str, topic: str) -> bool:
    """Whether a plain consumer with the short wait gets nothing from the filled partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=WAIT_MS
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        batch = await consumer.getmany(tp, timeout_ms=3000)
        return not batch.get(tp)
    finally:
        await consumer.stop()


async def test_runtime_takes_every_command_from_a_partition_the_broker_is_slow_to_list(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(
        kafka_bootstrap,
        f"fw{uuid.uuid4().hex[:8]}",
        tmp_path / "data",
        partitions=1,
        kafka_fetch_max_wait_ms=WAIT_MS,
    )
    await ensure_topics(settings)
    commands = settings.topic("commands")
    await produce_one_per_batch(kafka_bootstrap, commands, [incr("k") for _ in range(BATCHES)])
    if not await broker_starves(kafka_bootstrap, commands):
        pytest.skip(f"this broker answers fetches of {BATCHES} batches within {WAIT_MS} ms")

    runtime: StreamRuntime[Any] = StreamRuntime(CounterApp(settings.topic_prefix), settings)
    task = asyncio.ensure_future(runtime.run())
    try:

        async def all_applied() -> bool:
            if task.done():
                task.result()
            return runtime.processor.commands_total >= BATCHES if runtime.ready.is_set() else False

        await wait_until(all_applied, 90, interval_s=0.5)
    finally:
        runtime.stop()
        await task
    events = await read_all(kafka_bootstrap, settings.topic("events"))
    assert len(events) == BATCHES
