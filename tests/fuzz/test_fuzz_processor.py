"""Fuzzing the processor on the embedded broker: a stream of random bytes, damaged records,
hostile SubmitTasks, JSON bombs and oversized records on ``task.commands``. The processor keeps
running; every record it cannot decode lands in ``task.dlq`` with its reason and raw bytes;
oversized ones name the limit; and a valid task sent after all of them is still assigned.

The hostile records are drawn by hypothesis with a fixed seed and budget (``derandomize``), so
every run sends the same stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import commands as cmd
from schemas import events as ev
from schemas.codec import CODEC
from schemas.errors import DecodeError
from schemas.records import DeadLetter
from streams.distributor import Distributor
from streams.kafka import consumer_kwargs, producer_kwargs
from streams.kafka.topics import ensure_topics
from streams.runtime import run_processor
from streams.settings import Settings

from .hostile import JSON_BOMBS, hostile_submit, mutated, random_bytes, raw_record, submit_fields

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

LIMIT = 16_384  # max_payload_bytes for this test: oversized records stay small


def _draw(strategy: st.SearchStrategy[bytes], count: int) -> list[bytes]:
    drawn: list[bytes] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None)
    @given(strategy)
    def collect(value: bytes) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


def hostile_stream() -> list[bytes]:
    values = _draw(random_bytes(), 40) + _draw(mutated(), 60) + _draw(hostile_submit(), 25)
    values += [
        raw_record(cmd.SubmitTask, submit_fields(task_id=f"bomb-{i}", payload=bomb[:LIMIT]))
        for i, bomb in enumerate(JSON_BOMBS)
    ]
    oversized = '{"a":"' + "x" * (LIMIT * 2) + '"}'
    values.append(raw_record(cmd.SubmitTask, submit_fields(task_id="huge", payload=oversized)))
    values += [b"", b"\xc3\x01"]
    return values


async def _read_all(
    settings: Settings, topic: str, until: Callable[[list[Any]], bool]
) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the start) until ``until`` holds."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    await consumer.start()
    records: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 60
        while not until(records):
            assert time.monotonic() < deadline, f"{topic}: gave up after {len(records)} records"
            batch = await consumer.getmany(timeout_ms=300)
            for rs in batch.values():
                records.extend(rs)
    finally:
        await consumer.stop()
    return records


def _undecodable(app: Distributor, value: bytes) -> bool:
    try:
        app.decode_command(value)
    except DecodeError:
        return True
    return False


async def test_the_processor_survives_a_hostile_stream_and_dead_letters_it(
    make_settings: Callable[..., Settings],
) -> None:
    s: Settings = make_settings(
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=300,
        tick_interval_ms=50,
        batch_window_ms=100,
        max_payload_bytes=LIMIT,
        partitions=2,
    )
    await ensure_topics(s)
    app = Distributor(s)
    values = hostile_stream()
    expected_dead = [v for v in values if _undecodable(app, v)]
    assert len(expected_dead) > 100  # the stream is mostly noise

    stop, ready = asyncio.Event(), asyncio.Event()
    processor = asyncio.create_task(
        run_processor(lambda x: Distributor(x), s, stop=stop, ready=ready)
    )
    producer = AIOKafkaProducer(**producer_kwargs(s))
    await producer.start()
    try:
        await asyncio.wait_for(ready.wait(), 30)
        topic = s.topic("commands")
        for i, value in enumerate(values):
            # Keys spread the noise over both partitions; some records have no key at all.
            key = None if i % 7 == 0 else f"k{i % 3}".encode()
            await producer.send(topic, value, key=key)
        sane = [
            cmd.RegisterSession(client_id="sane", session_id="sane-s", agent_id="a"),
            cmd.SubmitTask(client_id="sane", task_id="sane-t", operation="workflow_trigger"),
        ]
        for command in sane:
            await producer.send(topic, CODEC.encode(command), key=b"sane")
        await producer.flush()

        def assigned(records: list[Any]) -> bool:
            assert not processor.done(), "the processor stopped"
            return any(
                isinstance(e, ev.TaskAssigned) and e.task_id == "sane-t"
                for e in (CODEC.decode(r.value) for r in records)
            )

        await _read_all(s, s.topic("events"), assigned)
        dlq = await _read_all(
            s, s.topic("dlq"), lambda rs: len(rs) >= len(expected_dead) or processor.done()
        )
        assert not processor.done(), "the processor stopped"
    finally:
        stop.set()
        await producer.stop()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(processor, 20)
    processor.result()  # stopped cleanly, no error

    letters = [CODEC.decode_as(r.value, DeadLetter) for r in dlq]
    undecoded = [d for d in letters if d.source_topic == s.topic("commands")]
    assert len(undecoded) == len(expected_dead)
    remaining = list(expected_dead)
    for letter in sorted(undecoded, key=lambda d: "raw bytes cut" in d.reason):
        raw = letter.raw or b""
        if "raw bytes cut" in letter.reason:  # only the head of a record over the limit
            match = next(v for v in remaining if v.startswith(raw) and len(v) > len(raw))
        else:
            match = raw
        remaining.remove(match)  # each record has its own dead letter
    for letter in undecoded:
        assert letter.reason.startswith("undecodable command: ")
        assert letter.source_partition is not None and letter.source_offset is not None
    oversized = [v for v in values if len(v) > LIMIT]
    named = [d for d in undecoded if "bytes is over the limit of" in d.reason]
    assert len(named) == len(oversized) > 0
    for letter in named:
        assert f"over the limit of {LIMIT} bytes (TASKSTREAM_MAX_PAYLOAD_BYTES)" in letter.reason
    # Decodable but refused submits are dead-lettered by the decider, each with its reason.
    assert all(d.reason for d in letters)
    assert all(len(r.value) <= LIMIT for r in dlq)
