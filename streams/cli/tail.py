"""``taskstream tail``: follow ``task.events``, one readable line per event."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from schemas.events import Event
from streams.cli.broker_address import reachable
from streams.cli.render import clock_text, describe_event
from streams.errors import ConfigurationError
from streams.settings import Settings


async def tail(
    settings: Settings,
    emit: Callable[[str], None],
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Follow ``task.events`` (all partitions, no group) and emit one line per event."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.codec import CODEC
    from schemas.errors import DecodeError
    from streams.kafka import consumer_kwargs, topic_partitions

    settings = await reachable(settings)
    topic = settings.topic("events")
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    await consumer.start()
    shown = 0
    try:
        partitions = await topic_partitions(consumer, topic) or set()
        if not partitions:
            raise ConfigurationError(f"topic {topic} does not exist; is taskstream running?")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        while (stop is None or not stop.is_set()) and (limit is None or shown < limit):
            batch = await consumer.getmany(timeout_ms=500)
            records = sorted(
                (r for rs in batch.values() for r in rs),
                key=lambda r: (r.timestamp, r.partition, r.offset),
            )
            for record in records:
                try:
                    event = CODEC.decode(record.value)
                except DecodeError as exc:
                    emit(
                        f"{clock_text(record.timestamp)} <undecodable p{record.partition}@{record.offset}: {exc}>"
                    )
                    continue
                if isinstance(event, Event):
                    emit(describe_event(event))
                    shown += 1
                    if limit is not None and shown >= limit:
                        break
    finally:
        await consumer.stop()
    return shown


def _cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    try:
        asyncio.run(tail(settings, print, from_beginning=args.from_beginning, limit=args.limit))
    except KeyboardInterrupt:
        pass
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("tail", help="follow task.events, one readable line per event")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="stop after N events")
    p.set_defaults(handler=_cmd_tail)
