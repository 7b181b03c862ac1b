"""The topic layout taskstream needs, and its creation at start-up.

Topics are created explicitly because brokers that auto-create topics pick their own partition
count (the embedded broker picks 4), which would break the co-partitioning of commands and
events that the processor relies on: an event is written to the partition of its command.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from streams.errors import BrokerError, TopicLayoutError
from streams.kafka import client_kwargs
from streams.settings import RETRY_TIERS_MS, Settings, retry_tier_name

__all__ = ["TopicSpec", "ensure_topics", "topic_layout"]

log = logging.getLogger(__name__)

# Kafka protocol error codes met while creating topics.
_TOPIC_ALREADY_EXISTS = 36
_CREATE_WAIT_S = 30.0

# Topics whose partition count is part of the contract: events go to their command's partition.
CO_PARTITIONED = ("commands", "events")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    logical: str
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_layout(settings: Settings) -> list[TopicSpec]:
    """Every topic of the public contract, with its partition count and configuration."""
    logical = ["commands", "events", "assignments", "pool", "completed", "failed", "dlq"]
    logical += [retry_tier_name(ms) for ms in RETRY_TIERS_MS]
    specs = []
    for name in logical:
        # The event log is the source of truth: it is never deleted by age or size.
        config = {"retention.ms": "-1", "retention.bytes": "-1"} if name == "events" else {}
        specs.append(
            TopicSpec(
                logical=name,
                name=settings.topic(name),
                partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                config=config,
            )
        )
    return specs


async def _existing_partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    # Describe all topics (no names): asking for names may auto-create them on some brokers.
    described = await admin.describe_topics()
    return {t["topic"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}


def _check_partitions(settings: Settings, existing: dict[str, int]) -> None:
    layout = {spec.logical: spec for spec in topic_layout(settings)}
    counts = {name: existing[layout[name].name] for name in CO_PARTITIONED}
    if len(set(counts.values())) > 1:
        raise TopicLayoutError(
            f"topics {layout['commands'].name} ({counts['commands']} partitions) and "
            f"{layout['events'].name} ({counts['events']} partitions) must have the same "
            "partition count: each event is written to its command's partition"
        )
    for name in CO_PARTITIONED:
        if counts[name] != settings.partitions:
            raise TopicLayoutError(
                f"topic {layout[name].name} has {counts[name]} partitions but "
                f"TASKSTREAM_PARTITIONS is {settings.partitions}; set TASKSTREAM_PARTITIONS="
                f"{counts[name]} or recreate the topics (changing the count re-partitions "
                "clients and is not supported on a live log)"
            )
    for spec in layout.values():
        actual = existing[spec.name]
        if spec.logical not in CO_PARTITIONED and actual != spec.partitions:
            log.warning(
                "topic %s has %d partitions (configured %d); keeping it",
                spec.name,
                actual,
                spec.partitions,
            )


async def _events_retention(admin: AIOKafkaAdminClient, topic: str) -> str | None:
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=None)]
        )
    except KafkaError:
        return None
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "retention.ms":
                    return str(entry[1])
    return None


async def ensure_topics(settings: Settings) -> None:
    """Create the missing topics of the layout; check the partitions of those that exist.

    Idempotent: safe on every start and when several processes start at once.
    Raises ``TopicLayoutError`` when commands and events are not co-partitioned as configured.
    """
    specs = topic_layout(settings)
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise BrokerError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    try:
        existing = await _existing_partition_counts(admin)
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=spec.replication_factor,
                        topic_configs=spec.config,
                    )
                    for spec in missing
                ]
            )
            _raise_create_errors(response)
            log.info("created topics: %s", ", ".join(spec.name for spec in missing))
            # Kafka answers CreateTopics before every broker's metadata has the new topics
            # (and with all their partitions): wait until the layout is there.
            deadline = time.monotonic() + _CREATE_WAIT_S
            while True:
                existing = await _existing_partition_counts(admin)
                absent = [
                    spec.name for spec in missing if existing.get(spec.name, 0) < spec.partitions
                ]
                if not absent or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        absent = [spec.name for spec in specs if spec.name not in existing]
        if absent:
            raise BrokerError(
                f"topics still missing {_CREATE_WAIT_S:.0f} s after creation: {', '.join(absent)}"
            )
        _check_partitions(settings, existing)
        events = settings.topic("events")
        retention = await _events_retention(admin, events)
        if retention is not None and retention != "-1":
            log.warning(
                "topic %s has retention.ms=%s; the event log is the source of truth and "
                "should keep everything (retention.ms=-1)",
                events,
                retention,
            )
    except KafkaError as exc:
        raise BrokerError(f"cannot create or describe topics: {exc}") from exc
    finally:
        await admin.close()


def _raise_create_errors(response: Any) -> None:
    errors = []
    for topic_error in response.topic_errors:
        name, code = topic_error[0], topic_error[1]
        message = topic_error[2] if len(topic_error) > 2 else None
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            errors.append(f"{name}: error {code} {message or ''}".strip())
    if errors:
        raise BrokerError("cannot create topics: " + "; ".join(errors))
