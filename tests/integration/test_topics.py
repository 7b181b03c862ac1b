"""Topic creation on a real broker: layout, event-log retention, idempotence, wrong counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.errors import TopicLayoutError
from streams.kafka.topics import ensure_topics, topic_layout
from streams.settings import Settings

pytestmark = pytest.mark.integration


async def describe(admin: AIOKafkaAdminClient, prefix: str) -> dict[str, int]:
    topics = await admin.describe_topics()
    return {t["topic"]: len(t["partitions"]) for t in topics if t["topic"].startswith(prefix)}


async def test_layout_is_created_once_with_infinite_event_retention(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=3)
    await ensure_topics(settings)
    await ensure_topics(settings)  # a restart finds everything in place
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        counts = await describe(admin, settings.topic_prefix + ".")
        expected = {spec.name: 3 for spec in topic_layout(settings)}
        assert counts == expected
        assert {
            "commands",
            "events",
            "assignments",
            "pool",
            "completed",
            "failed",
            "dlq",
            "retry.1s",
            "retry.2s",
            "retry.4s",
            "retry.8s",
            "retry.16s",
            "retry.32s",
        } == {name.removeprefix(settings.topic_prefix + ".") for name in counts}
        responses: Any = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topic("events"), configs=None)]
        )
        entries = {e[0]: e[1] for r in responses for res in r.resources for e in res[4]}
        assert entries["retention.ms"] == "-1"
    finally:
        await admin.close()


async def test_existing_topics_with_another_partition_count_are_refused(
    make_settings: Callable[..., Settings],
) -> None:
    await ensure_topics(make_settings(partitions=2))
    with pytest.raises(TopicLayoutError, match="has 2 partitions but TASKSTREAM_PARTITIONS is 5"):
        await ensure_topics(make_settings(partitions=5))


async def test_commands_and_events_must_be_co_partitioned(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=2)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topic("events"), 3, 1)])
    finally:
        await admin.close()
    # commands is not created beside it: that would cement the split
    with pytest.raises(TopicLayoutError, match="events has 3 partitions but TASKSTREAM_PARTI"):
        await ensure_topics(settings)
