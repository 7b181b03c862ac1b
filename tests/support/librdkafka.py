"""A third party's clients, built on librdkafka (the ``confluent-kafka`` package) with its
defaults: a command producer (partitioner ``consistent_random``, CRC32 of the key) and an
executor that reads ``task.assignments`` and answers with ``ReportResult`` the way a client
author would from the protocol page, without taskstream's routing helpers.

librdkafka is synchronous: the executor polls in a thread, and the async test talks to it
through thread-safe lists and events.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from schemas import commands as c
from schemas.codec import CODEC
from schemas.records import Assignment
from streams.kafka.routing import home_partition

__all__ = ["RdExecutor", "RdProducer", "client_split_by_partitioner", "crc32_partition"]


def crc32_partition(key: str, partitions: int) -> int:
    """Where librdkafka's default partitioner puts a record with ``key``."""
    return zlib.crc32(key.encode()) % partitions


def client_split_by_partitioner(partitions: int, stem: str = "client") -> str:
    """A client id whose CRC32 partition is not its home: librdkafka's default partitioner
    sends its commands away from home."""
    for i in range(10_000):
        client = f"{stem}-{i}"
        if crc32_partition(client, partitions) != home_partition(client, partitions):
            return client
    raise AssertionError("no client id found whose partitions differ")


@dataclass
class Delivered:
    topic: str
    partition: int
    offset: int


class RdProducer:
    """Produces encoded commands keyed by client id with librdkafka's default settings (an
    explicit ``timestamp_ms`` plays a producer whose clock is off)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap})

    def send(self, command: c.Command, timestamp_ms: int | None = None) -> Delivered:
        delivered: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            delivered.append(err if err is not None else msg)

        kwargs: dict[str, Any] = {"key": command.client_id.encode(), "on_delivery": report}
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        self._producer.produce(self.topic, CODEC.encode(command), **kwargs)
        self._producer.flush(30)
        if not delivered or isinstance(delivered[0], KafkaError):
            raise AssertionError(f"librdkafka did not deliver {command!r}: {delivered}")
        msg = delivered[0]
        return Delivered(msg.topic(), msg.partition(), msg.offset())

    async def asend(self, command: c.Command, timestamp_ms: int | None = None) -> Delivered:
        return await asyncio.to_thread(self.send, command, timestamp_ms)


# How the executor answers an assignment: success (True) or an error text.
Answer = Callable[[Assignment], bool | str]


@dataclass
class RdExecutor:
    """Reads every partition of ``task.assignments`` from the beginning and answers the
    assignments of ``session_ids`` with a ``ReportResult`` (fencing token included), produced
    keyed by client id with librdkafka's default partitioner."""

    bootstrap: str
    assignments_topic: str
    commands_topic: str
    partitions: int
    session_ids: set[str]
    answer: Answer = lambda assignment: True  # noqa: E731
    received: list[Assignment] = field(default_factory=list)
    answered: list[c.ReportResult] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RdExecutor:
        self._thread = threading.Thread(target=self._run, name="rd-executor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.error is not None:
            raise AssertionError(f"the librdkafka executor failed: {self.error!r}")

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def _loop(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"rd-executor-{time.time_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        producer = Producer({"bootstrap.servers": self.bootstrap})
        consumer.assign(
            [
                TopicPartition(self.assignments_topic, p, OFFSET_BEGINNING)
                for p in range(self.partitions)
            ]
        )
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                err, value = msg.error(), msg.value()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"librdkafka consumer error: {err}")
                if value is None:
                    continue
                assignment = CODEC.decode_as(value, Assignment)
                if assignment.session_id not in self.session_ids or assignment.kind == "cancel":
                    continue
                self.received.append(assignment)
                outcome = self.answer(assignment)
                result = c.ReportResult(
                    client_id=assignment.client_id,
                    task_id=assignment.task_id,
                    session_id=assignment.session_id,
                    fencing_token=assignment.fencing_token,
                    success=outcome is True,
                    output={"by": "librdkafka"} if outcome is True else {},
                    error=None if outcome is True else str(outcome),
                    execution_time_ms=1,
                )
                producer.produce(
                    self.commands_topic, CODEC.encode(result), key=result.client_id.encode()
                )
                producer.flush(30)
                self.answered.append(result)
        finally:
            consumer.close()
            producer.flush(10)
