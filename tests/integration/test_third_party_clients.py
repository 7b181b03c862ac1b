"""Any Kafka client can drive taskstream (issue 13): a librdkafka producer with its default
partitioner (CRC32 of the key, not the home partition's murmur2), a librdkafka executor that
answers the same way, and the Python SDK, all for one client: sessions, dispatch, retries and
scheduled starts work, and whatever arrived away from home was forwarded once and recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from schemas import events as ev
from schemas.records import Assignment
from streams.client import TaskstreamClient
from streams.kafka.routing import home_partition
from streams.settings import Settings
from tests.integration.distributor_harness import (
    DelayRunner,
    InProcessProcessor,
    layout,
    now_ms,
    of_task,
    read_events,
    read_topic,
    register,
    submit,
    wait_for_events,
)
from tests.support.librdkafka import (
    RdExecutor,
    RdProducer,
    client_split_by_partitioner,
    crc32_partition,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4


def completed(events: list[Any], *task_ids: str) -> bool:
    done = {e.task_id for e in events if isinstance(e, ev.TaskCompleted)}
    return all(t in done for t in task_ids)


async def test_librdkafka_producer_executor_and_sdk_mixed_for_one_client(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(make_settings, partitions=PARTITIONS, retry_base_ms=1000)
    assert settings.kafka_bootstrap_servers is not None
    client = client_split_by_partitioner(PARTITIONS)
    home, away = home_partition(client, PARTITIONS), crc32_partition(client, PARTITIONS)
    assert home != away

    attempts: dict[str, int] = {}

    def answer(assignment: Assignment) -> bool | str:
        assert assignment.task_id is not None
        attempts[assignment.task_id] = attempts.get(assignment.task_id, 0) + 1
        if assignment.task_id == "flaky" and assignment.attempt == 1:
            return "upstream 503, try again"
        return True

    producer = RdProducer(settings.kafka_bootstrap_servers, settings.topic("commands"))
    executor = RdExecutor(
        settings.kafka_bootstrap_servers,
        settings.topic("assignments"),
        settings.topic("commands"),
        PARTITIONS,
        {"s1"},
        answer,
    ).start()
    processor = await InProcessProcessor(settings).start()
    delay = await DelayRunner(settings).start()
    try:
        # The session and two tasks through librdkafka: they land away from home.
        landed = await producer.asend(register(client, "s1", max_concurrent=4))
        assert landed.partition == away
        await producer.asend(submit(client, "flaky", "conversation_send"))
        due = now_ms() + 1_500
        await producer.asend(submit(client, "later-rd", "conversation_send", scheduled_for_ms=due))
        # The same client through the SDK: sent home by number.
        async with TaskstreamClient(settings) as sdk:
            await sdk.submit(client, "conversation_send", task_id="plain-sdk")
            await sdk.submit(client, "conversation_send", task_id="later-sdk", scheduled_for_ms=due)

        tasks = ("flaky", "later-rd", "plain-sdk", "later-sdk")
        events = await wait_for_events(
            settings, lambda es: completed(es, *tasks), timeout_s=60, processor=processor
        )
    finally:
        await delay.stop()
        await processor.stop()
        await asyncio.to_thread(executor.stop)

    # the retry went through the delay tier and came back to the task's partition
    flaky = [type(e) for e in of_task(events, "flaky")]
    assert ev.TaskRetryScheduled in flaky and ev.TaskRetrying in flaky
    assert attempts["flaky"] == 2
    # scheduled starts from either library were held, then dispatched
    for task_id in ("later-rd", "later-sdk"):
        assert ev.TaskScheduled in [type(e) for e in of_task(events, task_id)]
    # the client's state lives on its home partition only; what came elsewhere was forwarded
    records = await read_events(settings)
    mine = [r for r in records if getattr(r.value, "client_id", None) == client]
    forwarded = [r for r in mine if isinstance(r.value, ev.CommandForwarded)]
    assert {r.partition for r in forwarded} == {away}
    assert {r.value.home_partition for r in forwarded} == {home}
    assert {r.value.command for r in forwarded} >= {"RegisterSession", "SubmitTask", "ReportResult"}
    assert {r.partition for r in mine if not isinstance(r.value, ev.CommandForwarded)} == {home}
    # nothing was refused, nothing dead-lettered
    assert not [r for r in mine if isinstance(r.value, ev.TaskRejected | ev.CommandRejected)]
    assert await read_topic(settings, "dlq") == []
    # the delay agent put RetryDue on the home partition by number
    commands = await read_topic(settings, "commands")
    retry_due = [r for r in commands if type(r.value).__name__ == "RetryDue"]
    assert retry_due and {r.partition for r in retry_due} == {home}
