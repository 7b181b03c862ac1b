"""Reading outcomes with the client: commit after handling, redelivery of what was not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from schemas.codec import CODEC
from schemas.events import AttemptRecord, TaskCompleted, TaskFailed
from streams.client import Outcome, TaskstreamClient
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration

GROUP_TIMINGS = {"kafka_session_timeout_ms": 6000, "kafka_heartbeat_interval_ms": 300}


class Crash(Exception):
    pass


def completed(task_id: str, client_id: str = "acme") -> TaskCompleted:
    return TaskCompleted(
        client_id=client_id,
        occurred_at_ms=1_700_000_000_000,
        task_id=task_id,
        operation="send_sms",
        attempt=1,
        session_id="s1",
        output={"sid": task_id},
        execution_time_ms=12,
    )


def failed(task_id: str, client_id: str = "acme") -> TaskFailed:
    return TaskFailed(
        client_id=client_id,
        occurred_at_ms=1_700_000_000_000,
        task_id=task_id,
        operation="send_sms",
        attempt=4,
        error="carrier refused",
        attempts=[AttemptRecord(attempt=1, error="timeout", at_ms=1)],
    )


async def publish(settings: Settings, *outcomes: Outcome | tuple[str, bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        for item in outcomes:
            if isinstance(item, tuple):
                topic, value, key = item[0], item[1], b"acme"
            else:
                topic = "completed" if isinstance(item, TaskCompleted) else "failed"
                value, key = CODEC.encode(item), item.client_id.encode()
            await producer.send_and_wait(settings.topic(topic), value, key=key)
    finally:
        await producer.stop()


async def take(client: TaskstreamClient, group: str, count: int) -> list[Outcome]:
    """The first ``count`` outcomes, then leave the loop normally (all handled)."""
    got: list[Outcome] = []

    async def loop() -> None:
        async for outcome in client.outcomes(group_id=group):
            got.append(outcome)
            if len(got) == count:
                break

    await asyncio.wait_for(loop(), 30)
    return got


async def test_outcomes_from_both_topics_are_iterated_and_garbage_skipped(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(**GROUP_TIMINGS)
    await ensure_topics(settings)
    await publish(
        settings,
        # Same key as t1, so it comes before t1 on the same partition and must be skipped.
        ("completed", b"not an outcome"),
        completed("t1"),
        failed("t2"),
        completed("t3", client_id="globex"),
    )
    async with TaskstreamClient(settings) as client:
        got = await take(client, "billing", 3)
        stream = client._streams[0]
        assert stream.skipped == 1
    assert sorted(got, key=lambda o: o.task_id) == [
        completed("t1"),
        failed("t2"),
        completed("t3", client_id="globex"),
    ]


async def test_handled_outcomes_are_not_redelivered_and_the_one_in_hand_is(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(**GROUP_TIMINGS)
    await ensure_topics(settings)
    # t1..t3 share a key, so they keep this order; t4 is on the other topic.
    await publish(settings, completed("t1"), completed("t2"), completed("t3"), failed("t4"))

    handled: list[str] = []
    with pytest.raises(Crash):
        async with TaskstreamClient(settings) as client:
            async for outcome in client.outcomes(group_id="billing"):
                if outcome.task_id == "t3":
                    raise Crash  # the loop body dies while t3 is in hand
                handled.append(outcome.task_id)
    assert [t for t in handled if t != "t4"] == ["t1", "t2"]

    # Restart the group: exactly what was not handled comes again, t3 first on its partition.
    remaining = sorted({"t1", "t2", "t3", "t4"} - set(handled))
    async with TaskstreamClient(settings) as client:
        got = await take(client, "billing", len(remaining))
    assert sorted(o.task_id for o in got) == remaining

    # Leaving the loop normally committed the last one: a new outcome is the next thing seen.
    await publish(settings, completed("t5"))
    async with TaskstreamClient(settings) as client:
        got = await take(client, "billing", 1)
    assert [o.task_id for o in got] == ["t5"]

    # Another group reads everything from the beginning, independently.
    async with TaskstreamClient(settings) as client:
        got = await take(client, "audit", 5)
    assert sorted(o.task_id for o in got) == ["t1", "t2", "t3", "t4", "t5"]
