"""The client SDK produces valid, correctly keyed commands onto task.commands."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from schemas.codec import CODEC
from schemas.commands import (
    ApproveTask,
    CancelTask,
    ExpediteTask,
    RegisterSession,
    RejectTask,
    ReleaseSession,
    RetryDue,
    SessionHeartbeat,
    SubmitTask,
)
from streams.client import TaskstreamClient
from streams.errors import PayloadTooLargeError
from streams.kafka.headers import TYPE_HEADER
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration


def expected_partition(client_id: str, partitions: int) -> int:
    """The Java client's default partitioner, which upstream producers in any language match."""
    return int(murmur2(client_id.encode()) & 0x7FFFFFFF) % partitions


async def read_all(settings: Settings, expected: int) -> list[tuple[int, object, object, object]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic("commands"), p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[int, object, object, object]] = []
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=250)
            for tp, records in batch.items():
                out += [(tp.partition, r.key, CODEC.decode(r.value), r.headers) for r in records]
            if len(out) >= expected and not batch:
                break
        return out
    finally:
        await consumer.stop()


async def test_every_command_lands_decodable_on_its_clients_partition(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(actor="tester")  # every command names its sender
    await ensure_topics(settings)
    async with TaskstreamClient(settings) as client:
        generated = await client.submit(
            "acme", "conversation_send", {"to": "+15550100"}, priority=2
        )
        given = await client.submit(
            "acme",
            "contact_update",
            task_id="task-given",
            requires_review=True,
            depends_on=[generated],
            capabilities=["email"],
            scheduled_for_ms=1_900_000_000_000,
        )
        await client.cancel("acme", given, reason="changed my mind")
        await client.approve("acme", given, reviewer="ann")
        await client.reject("acme", given, reviewer="bob", reason="spam")
        await client.expedite("acme", generated)
        await client.register_session("globex", "s1", "agent-7", max_concurrent=3)
        await client.heartbeat("globex", "s1")
        await client.release_session("globex", "s1", reason="shift over")
        sent = await client.send(
            RetryDue(client_id="globex", task_id="t9", attempt=2, due_at_ms=5, kind="retry")
        )

    assert given == "task-given"
    assert uuid.UUID(generated).version == 4
    records = await read_all(settings, expected=10)
    assert len(records) == 10
    by_client: dict[str, list[object]] = {}
    for partition, key, command, headers in records:
        client_id = command.client_id  # type: ignore[attr-defined]
        assert key == client_id.encode()
        assert partition == expected_partition(client_id, settings.partitions)
        assert (TYPE_HEADER, type(command).__name__.encode()) in list(headers)  # type: ignore[call-overload]
        by_client.setdefault(client_id, []).append(command)
    assert sent.partition == expected_partition("globex", settings.partitions)

    # One client's commands keep their order on its partition.
    assert by_client["acme"] == [
        SubmitTask(
            client_id="acme",
            task_id=generated,
            operation="conversation_send",
            payload={"to": "+15550100"},
            priority=2,
            actor="tester",
        ),
        SubmitTask(
            client_id="acme",
            task_id="task-given",
            operation="contact_update",
            requires_review=True,
            depends_on=[generated],
            capabilities=["email"],
            scheduled_for_ms=1_900_000_000_000,
            actor="tester",
        ),
        CancelTask(
            client_id="acme", task_id="task-given", reason="changed my mind", actor="tester"
        ),
        ApproveTask(client_id="acme", task_id="task-given", reviewer="ann", actor="tester"),
        RejectTask(
            client_id="acme", task_id="task-given", reviewer="bob", reason="spam", actor="tester"
        ),
        ExpediteTask(client_id="acme", task_id=generated, actor="tester"),
    ]
    assert by_client["globex"] == [
        RegisterSession(
            client_id="globex",
            session_id="s1",
            agent_id="agent-7",
            max_concurrent=3,
            actor="tester",
        ),
        SessionHeartbeat(client_id="globex", session_id="s1"),
        ReleaseSession(client_id="globex", session_id="s1", reason="shift over", actor="tester"),
        RetryDue(client_id="globex", task_id="t9", attempt=2, due_at_ms=5),
    ]


async def test_an_oversized_payload_is_refused_and_nothing_is_sent(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(max_payload_bytes=2048)
    await ensure_topics(settings)
    async with TaskstreamClient(settings) as client:
        with pytest.raises(PayloadTooLargeError, match="2,048"):
            await client.submit("acme", "conversation_send", {"body": "x" * 4000}, task_id="big")
        await client.submit("acme", "conversation_send", {"body": "x" * 100}, task_id="small")
    records = await read_all(settings, expected=1)
    assert [command.task_id for _, _, command, _ in records] == ["small"]  # type: ignore[attr-defined]
