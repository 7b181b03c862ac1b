"""The raw aiokafka ceiling: consume a pre-filled topic and produce every record to a sink.

No decoding, no state, no per-record work beyond copying: fetch a batch, produce each record,
wait for the acknowledgements, commit. Two ways to produce, both reported:

- ``send``: ``producer.send()`` per record, what an aiokafka application writes (the
  ``ceiling`` row; the runtime's target is a fraction of it);
- ``batch``: one ``create_batch()``/``send_batch()`` per partition and fetch, the cheapest
  path through the client (the ``ceiling-batch`` row; the runtime's outbox uses it too).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import BenchResult, kafka_kwargs, topic_size

__all__ = ["Mode", "run_ceiling"]

Mode = Literal["send", "batch"]

MAX_RECORDS = 10_000


async def run_ceiling(
    bootstrap: str, source: str, sink: str, count: int, partitions: int, mode: Mode = "send"
) -> BenchResult:
    """Move the first ``count`` records of ``source`` to ``sink``; timed from the first fetch.

    The consumer is manually assigned (no group join to exclude) and commits to a fresh
    group after every batch, like a processor.
    """
    consumer = AIOKafkaConsumer(
        **kafka_kwargs(bootstrap),
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_RECORDS,
    )
    producer = AIOKafkaProducer(
        **kafka_kwargs(bootstrap),
        enable_idempotence=False,
        acks="all",
        linger_ms=2,
        max_batch_size=1_048_576,
        max_request_size=4_194_304,
    )
    await producer.start()
    await consumer.start()
    tps = [TopicPartition(source, p) for p in range(partitions)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    moved = 0
    started = 0.0
    try:
        while moved < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
            if not batches:
                continue
            if not started:
                started = time.perf_counter()
            futures: list[Any] = []
            for tp, records in batches.items():
                records = records[: count - moved]
                if mode == "send":
                    for record in records:
                        futures.append(
                            await producer.send(
                                sink, record.value, key=record.key, partition=tp.partition
                            )
                        )
                else:
                    futures += await _send_batches(producer, sink, tp.partition, records)
                moved += len(records)
            await asyncio.gather(*futures)
            await consumer.commit()
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()
    produced = await topic_size(bootstrap, sink)
    how = "a send() per record" if mode == "send" else "one producer batch per partition"
    return BenchResult(
        "ceiling" if mode == "send" else "ceiling-batch",
        "ok",
        events=moved,
        seconds=seconds,
        detail=f"aiokafka consume -> produce ({how}), no decoding, no state",
        extra={"produced": produced},
    )


async def _send_batches(
    producer: AIOKafkaProducer, topic: str, partition: int, records: list[Any]
) -> list[Any]:
    futures = []
    batch = producer.create_batch()
    for record in records:
        if not batch.append(key=record.key, value=record.value, timestamp=None):
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=record.key, value=record.value, timestamp=None)
    futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
