import asyncio
import os
import signal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka.embedded import EmbeddedBroker

pytestmark = pytest.mark.smoke


async def test_the_suites_broker_carries_records(kafka_bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        meta = await producer.send_and_wait("probe.broker", b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        tp = TopicPartition("probe.broker", meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        batch = await consumer.getmany(tp, timeout_ms=5000)
        assert [r.value for r in batch[tp]] == [b"hello"]
    finally:
        await consumer.stop()


def test_embedded_broker_is_stopped_on_error(tmp_path: object) -> None:
    pid = None
    with pytest.raises(RuntimeError), EmbeddedBroker() as broker:
        pid = broker.pid
        raise RuntimeError("boom")
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    _ = signal, asyncio
