"""Waiting for named tasks' outcomes (the SDK's ``wait``, seed 003's "wait for results").

The outcome topics (``task.completed``, ``task.failed``) are read without a consumer group, so
waiting commits nothing and takes nothing from anyone's outcome stream: every partition from
the first record at or after ``since_ms`` (by record timestamp; outcomes are produced after
their submit, so the submit time is a safe start), until every named task has its outcome or
the time is up. Every task ends with one outcome (``docs/protocol.md``, "Endings"), so the
wait ends for every id that was submitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.codec import CODEC
from schemas.errors import DecodeError, TaskstreamError
from schemas.events import TaskCompleted, TaskFailed
from streams.errors import BrokerError
from streams.kafka import consumer_kwargs, topic_partitions
from streams.outcome_stream import Outcome
from streams.settings import Settings

__all__ = ["WaitTimeout", "wait_for_outcomes"]


class WaitTimeout(TaskstreamError, TimeoutError):
    """Some tasks had no outcome in time; ``.done`` holds the outcomes that did arrive."""

    def __init__(self, missing: Iterable[str], done: Mapping[str, Outcome]) -> None:
        self.missing = sorted(missing)
        self.done = dict(done)
        shown = ", ".join(self.missing[:5]) + (" …" if len(self.missing) > 5 else "")
        super().__init__(f"{len(self.missing)} task(s) have no outcome yet: {shown}")


async def wait_for_outcomes(
    settings: Settings, task_ids: Iterable[str], *, since_ms: int, timeout_s: float
) -> dict[str, Outcome]:
    """Each of ``task_ids``'s outcome (the first one seen: there is one per task), read from
    the outcome topics from ``since_ms``; raises :class:`WaitTimeout` after ``timeout_s``."""
    wanted = set(task_ids)
    found: dict[str, Outcome] = {}
    if not wanted:
        return found
    deadline = time.monotonic() + timeout_s
    topics = [settings.topic("completed"), settings.topic("failed")]
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    try:
        await consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(await topic_partitions(consumer, topic) or ())
        ]
        consumer.assign(partitions)
        # The ends first: a partition with no record at or after since_ms is read from the end
        # it had before that question, so a record appended meanwhile is not skipped.
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times({tp: max(0, since_ms) for tp in partitions})
        for tp in partitions:
            start = starts.get(tp)
            consumer.seek(tp, start.offset if start is not None else ends[tp])
        while wanted - found.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(wanted - found.keys(), found)
            batch = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batch.values():
                for record in records:
                    outcome = _outcome(record.value)
                    if outcome is not None and outcome.task_id in wanted:
                        found.setdefault(outcome.task_id, outcome)
    except KafkaError as exc:
        raise BrokerError(f"cannot read the outcome topics: {exc}") from exc
    finally:
        await asyncio.shield(consumer.stop())
    return found


def _outcome(value: Any) -> Outcome | None:
    if value is None:
        return None
    try:
        decoded = CODEC.decode(value)
    except DecodeError:
        return None
    return decoded if isinstance(decoded, TaskCompleted | TaskFailed) else None
