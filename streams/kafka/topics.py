"""The topic layout taskstream needs: its creation, its check, and the way out of a wrong one.

Topics are created explicitly because brokers that auto-create topics pick their own partition
count (Kafka's ``num.partitions``, 1 by default; the embedded broker picks 4), which would break
the co-partitioning of commands and events that the processor relies on: an event is written
to the partition of its command, and a client's home partition depends on the count.

``taskstream topics create`` (``create_topics``) is what an operator runs before anything
produces: it creates what is missing and grows what can safely grow. A ``task.commands`` that an
upstream system's first produce auto-created with too few partitions can grow while no processor
has written state (``task.events`` empty): its records are forwarded to their home partitions on
the processor's first start. The delay tiers can always grow (a tier record names its home
partition). ``taskstream topics check`` (``check_topics``) reports; every part checks the layout
when it starts (``ensure_topics``), and the client SDK before its first send
(``layout_problems`` over the client's metadata). Every problem says how to fix it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError

from streams.domain.retry import RETRY_TIERS_MS
from streams.errors import BrokerError, TopicLayoutError
from streams.kafka import client_kwargs
from streams.settings import Settings, retry_tier_name

__all__ = [
    "LayoutReport",
    "TopicSpec",
    "check_topics",
    "create_topics",
    "ensure_topics",
    "layout_problems",
    "topic_layout",
]

log = logging.getLogger(__name__)

# Kafka protocol error codes met while creating topics.
_TOPIC_ALREADY_EXISTS = 36
_CREATE_WAIT_S = 30.0

# Topics whose partition count is part of the contract: events go to their command's partition.
CO_PARTITIONED = ("commands", "events")
# Topics a record is put on by partition number (a tier record on its home's number): they
# need at least as many partitions as the commands topic, and may always grow.
NUMBERED = tuple(retry_tier_name(ms) for ms in RETRY_TIERS_MS)


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


def layout_problems(
    settings: Settings, existing: dict[str, int], *, state_exists: bool | None = None
) -> list[str]:
    """What is wrong with the topics ``existing`` (name -> partition count) for ``settings``,
    each with how to fix it; empty when the layout is usable.

    ``state_exists``: whether ``task.events`` holds any record (None: not known). Without
    state, too few command partitions can still grow (``create_topics``)."""
    layout = {spec.logical: spec for spec in topic_layout(settings)}
    problems = [
        f"topic {spec.name} does not exist: run `taskstream topics create`"
        for spec in layout.values()
        if spec.name not in existing
    ]
    counts = {name: existing.get(layout[name].name) for name in CO_PARTITIONED}
    commands, events = counts["commands"], counts["events"]
    if commands is not None and events is not None and commands != events:
        problems.append(
            f"topics {layout['commands'].name} ({commands} partitions) and "
            f"{layout['events'].name} ({events} partitions) must have the same "
            "partition count: each event is written to its command's partition"
            + (
                "; nothing was processed yet, so `taskstream topics create` grows the smaller"
                if state_exists is False and max(commands, events) <= settings.partitions
                else ""
            )
        )
    for name in CO_PARTITIONED:
        count = counts[name]
        if count is None or count == settings.partitions:
            continue
        text = (
            f"topic {layout[name].name} has {count} partitions but TASKSTREAM_PARTITIONS is "
            f"{settings.partitions}; "
        )
        if count < settings.partitions and state_exists is not True:
            if state_exists is None:
                text += "if no processor has run yet, "
            else:
                text += "no processor has written state yet, so "
            text += (
                f"`taskstream topics create` grows it to {settings.partitions} (commands already "
                f"on it are forwarded to their home partitions); otherwise set "
                f"TASKSTREAM_PARTITIONS={count}"
            )
        else:
            text += (
                f"set TASKSTREAM_PARTITIONS={count} or recreate the topics (changing the count "
                "re-partitions clients and is not supported on a live log)"
            )
        problems.append(text)
    want = commands if commands is not None else settings.partitions
    for name in NUMBERED:
        count = existing.get(layout[name].name)
        if count is not None and count < want:
            problems.append(
                f"delay tier {layout[name].name} has {count} partitions, fewer than the {want} "
                f"of {layout['commands'].name}: run `taskstream topics create` to grow it "
                "(tier records name their home partition, so growing one is safe)"
            )
    return problems


def _layout_warnings(settings: Settings, existing: dict[str, int]) -> list[str]:
    return [
        f"topic {spec.name} has {existing[spec.name]} partitions (configured "
        f"{spec.partitions}); keeping it"
        for spec in topic_layout(settings)
        if spec.logical not in CO_PARTITIONED
        and spec.logical not in NUMBERED
        and spec.name in existing
        and existing[spec.name] != spec.partitions
    ]


@dataclass(frozen=True, slots=True)
class LayoutReport:
    """The layout as found (``counts``: name -> partitions of the layout's topics that exist),
    what was done to it, and what is still wrong (each problem says how to fix it)."""

    counts: dict[str, int]
    problems: list[str]
    warnings: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    grown: list[str] = field(default_factory=list)
    state_exists: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


async def _events_hold_records(settings: Settings, existing: dict[str, int]) -> bool:
    """Whether ``task.events`` holds any record (a missing one holds none: every processor
    creates it before it writes)."""
    topic = settings.topic("events")
    count = existing.get(topic)
    if count is None:
        return False
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(count)])
    finally:
        await consumer.stop()
    return any(int(end) > 0 for end in ends.values())


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

    What every part does when it starts. Idempotent: safe on every start and when several
    processes start at once. Raises ``TopicLayoutError`` (saying how to fix it) when the layout
    is not usable; it never changes a topic that exists (``create_topics`` grows what can).
    """
    report = await _apply_layout(settings, grow=False)
    for warning in report.warnings:
        log.warning("%s", warning)
    if report.problems:
        raise TopicLayoutError("; ".join(report.problems))


async def create_topics(settings: Settings) -> LayoutReport:
    """``taskstream topics create``: create the missing topics, grow the delay tiers and, while
    no processor has written state, too small command and event topics; then check."""
    return await _apply_layout(settings, grow=True)


async def check_topics(settings: Settings) -> LayoutReport:
    """``taskstream topics check``: the layout as it is, changing nothing."""
    admin = await _admin(settings)
    try:
        existing = _ours(settings, await _existing_partition_counts(admin))
    except KafkaError as exc:
        raise BrokerError(f"cannot describe topics: {exc}") from exc
    finally:
        await admin.close()
    state = await _events_hold_records(settings, existing)
    return LayoutReport(
        counts=existing,
        problems=layout_problems(settings, existing, state_exists=state),
        warnings=_layout_warnings(settings, existing),
        state_exists=state,
    )


def _ours(settings: Settings, existing: dict[str, int]) -> dict[str, int]:
    names = {spec.name for spec in topic_layout(settings)}
    return {name: count for name, count in existing.items() if name in names}


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise BrokerError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    return admin


async def _grow(
    admin: AIOKafkaAdminClient, settings: Settings, existing: dict[str, int]
) -> tuple[list[str], list[str]]:
    """Grow what may grow (see the module docstring): the topics grown, and the problems of a
    broker that cannot add partitions."""
    layout = {spec.logical: spec for spec in topic_layout(settings)}
    target = settings.partitions
    grow: dict[str, int] = {}
    co = [layout[name].name for name in CO_PARTITIONED if layout[name].name in existing]
    if co and max(existing[n] for n in co) <= target and any(existing[n] < target for n in co):
        if await _events_hold_records(settings, existing) is not True:
            grow.update({n: target for n in co if existing[n] < target})
    commands = layout["commands"].name
    want = grow.get(commands, existing.get(commands, target))
    for name in NUMBERED:
        topic = layout[name].name
        if topic in existing and existing[topic] < want:
            grow[topic] = want
    if not grow:
        return [], []
    try:
        response = await admin.create_partitions(
            {topic: NewPartitions(total_count=count) for topic, count in grow.items()}
        )
    except IncompatibleBrokerVersion as exc:
        have = existing.get(commands)
        advice = (
            f"set TASKSTREAM_PARTITIONS={have} (the count {commands} has) and run "
            "`taskstream topics create` again"
            if have is not None and commands in grow
            else "recreate them with the configured count"
        )
        return [], [
            f"this broker cannot add partitions ({exc}), so {', '.join(sorted(grow))} cannot "
            f"grow: {advice}"
        ]
    _raise_create_errors(response, "grow")
    log.info("grew topics: %s", ", ".join(f"{t} to {n}" for t, n in grow.items()))
    await _await_layout(admin, grow)
    return sorted(grow), []


def _creatable(settings: Settings, existing: dict[str, int]) -> list[TopicSpec]:
    """The missing topics to create: none while commands or events exist with another count
    than configured. Creating topics then would cement a layout that the fix (growing those,
    or configuring the count they have) must change again."""
    specs = topic_layout(settings)
    if any(
        spec.logical in CO_PARTITIONED
        and existing.get(spec.name, spec.partitions) != spec.partitions
        for spec in specs
    ):
        return []
    return [spec for spec in specs if spec.name not in existing]


async def _await_layout(admin: AIOKafkaAdminClient, want: dict[str, int]) -> dict[str, int]:
    # Kafka answers CreateTopics/CreatePartitions before every broker's metadata has the
    # change (and all the partitions): wait until it is there.
    deadline = time.monotonic() + _CREATE_WAIT_S
    while True:
        existing = await _existing_partition_counts(admin)
        absent = [name for name, count in want.items() if existing.get(name, 0) < count]
        if not absent:
            return existing
        if time.monotonic() > deadline:
            raise BrokerError(
                f"topics not complete {_CREATE_WAIT_S:.0f} s after the change: {', '.join(absent)}"
            )
        await asyncio.sleep(0.05)


async def _apply_layout(settings: Settings, *, grow: bool) -> LayoutReport:
    admin = await _admin(settings)
    created: list[str] = []
    grown: list[str] = []
    refused: list[str] = []
    try:
        existing = await _existing_partition_counts(admin)
        if grow:
            grown, refused = await _grow(admin, settings, _ours(settings, existing))
            if grown:
                existing = await _existing_partition_counts(admin)
        missing = _creatable(settings, existing)
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
            _raise_create_errors(response, "create")
            log.info("created topics: %s", ", ".join(spec.name for spec in missing))
            created = [spec.name for spec in missing]
            existing = await _await_layout(admin, {spec.name: spec.partitions for spec in missing})
        existing = _ours(settings, existing)
        events = settings.topic("events")
        retention = await _events_retention(admin, events)
        warnings = _layout_warnings(settings, existing)
        if retention is not None and retention != "-1":
            warnings.append(
                f"topic {events} has retention.ms={retention}; the event log is the source of "
                "truth and should keep everything (retention.ms=-1)"
            )
    except KafkaError as exc:
        raise BrokerError(f"cannot create or describe topics: {exc}") from exc
    finally:
        await admin.close()
    problems = layout_problems(settings, existing, state_exists=None)
    state: bool | None = None
    if problems or refused:  # only then is it worth asking whether state exists (the advice)
        state = await _events_hold_records(settings, existing)
        problems = refused + layout_problems(settings, existing, state_exists=state)
    return LayoutReport(existing, problems, warnings, created, grown, state)


def _raise_create_errors(response: Any, what: str) -> None:
    errors = []
    for topic_error in response.topic_errors:
        name, code = topic_error[0], topic_error[1]
        message = topic_error[2] if len(topic_error) > 2 else None
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            errors.append(f"{name}: error {code} {message or ''}".strip())
    if errors:
        raise BrokerError(f"cannot {what} topics: " + "; ".join(errors))
