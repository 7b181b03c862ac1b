"""The projector: a full replica of ``task.events`` folded into a local RocksDB store.

Every instance reads every partition (manual assignment, no consumer group), so any instance
answers any query and read capacity grows by adding instances. Per poll batch: decode, fold,
then write the table changes, the counters and the next offset of every partition in one
``WriteBatch``. The store is the truth on restart; the counters are also kept in memory.

Undecodable records are skipped with a warning and counted; an error in the fold or the store
stops the projector loudly (``wait()`` raises it, ``running()`` turns false).

It lives with the HTTP process it feeds, not in ``projections/``: it is the read model's I/O
(the Kafka consumer, the RocksDB store in ``api.projection_store``), and ``projections/``
stays the fold and the queries, importing no plumbing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from projections.activity import RecentActivity
from projections.errors import ProjectionError, ProjectionStoreError
from projections.fold import apply, skip
from projections.reader import ProjectionReader
from projections.tables import Tables
from schemas.codec import CODEC, AvroCodec
from schemas.errors import DecodeError
from schemas.events import Event
from streams.kafka import client_kwargs, consumer_kwargs
from streams.kafka.fetch_wait import FetchWait, starved
from streams.kafka.profile import broker_profile
from streams.settings import Settings

from .projection_store import ProjectionStore

log = logging.getLogger(__name__)

GATHER_MS = 100
"""How long the projector gathers a steady stream's polls into one fold and write (a library
default): the read side answers at most this much later than it would fold poll by poll."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: events folded so far of those in the log when the replay began."""


def store_path(settings: Settings) -> Path:
    """Where a projector keeps its store by default: one directory per events topic."""
    return settings.data_dir / "projection" / settings.topic("events")


async def events_partitions(settings: Settings, *, wait_s: float = 60.0) -> int:
    """The partition count of the events topic, waiting for the processor to create it.

    Describes all topics (no names): naming a missing topic may auto-create it with the
    broker's default partition count, which would break co-partitioning.
    """
    topic = settings.topic("events")
    deadline = time.monotonic() + wait_s
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        while True:
            described = await admin.describe_topics()
            for entry in described:
                if entry["topic"] == topic and entry.get("error_code", 0) == 0:
                    if entry["partitions"]:
                        return len(entry["partitions"])
            if time.monotonic() > deadline:
                raise ProjectionError(
                    f"topic {topic} does not exist after {wait_s:.0f} s; "
                    "start the processor (it creates the topics) or check TASKSTREAM_TOPIC_PREFIX"
                )
            await asyncio.sleep(0.25)
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    partitions: int
    offsets: dict[int, int]


class Projector:
    """Consumes all of ``task.events`` into a ``ProjectionStore``; ``reader`` answers queries."""

    def __init__(
        self,
        settings: Settings,
        *,
        path: Path | None = None,
        codec: AvroCodec = CODEC,
        poll_ms: int = 200,
        max_records: int = 2000,
        topic_wait_s: float = 60.0,
        gather_ms: int = GATHER_MS,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic("events")
        self.path = path if path is not None else store_path(settings)
        self._codec = codec
        self._poll_ms = poll_ms
        self._max_records = max_records
        self._gather_ms = gather_ms
        self._topic_wait_s = topic_wait_s
        self._store: ProjectionStore | None = None
        self._tables = Tables(lambda key: None)
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._highwater: dict[int, int] = {}
        self._verified: set[int] = set()
        self._highwater_at: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._progress: Progress | None = None
        self._folded = 0
        self.activity = RecentActivity()
        self.reader = ProjectionReader(self)

    # Source protocol (see reader.py) ---------------------------------------------------
    @property
    def store(self) -> ProjectionStore:
        if self._store is None:
            raise ProjectionError("the projector is not started")
        return self._store

    @property
    def tables(self) -> Tables:
        return self._tables

    def lag(self) -> dict[int, int]:
        offsets = self._tables.offsets
        return {
            tp.partition: max(
                0, self._highwater.get(tp.partition, 0) - offsets.get(tp.partition, 0)
            )
            for tp in self._partitions
        }

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # lifecycle --------------------------------------------------------------------------
    async def start(self, *, fresh: bool = False) -> None:
        """Open the store, assign every partition at the stored offsets, start folding."""
        count = await events_partitions(self.settings, wait_s=self._topic_wait_s)
        self._store = ProjectionStore(self.path, self.topic)
        if fresh:
            self._store.drop()
        kwargs = consumer_kwargs(self.settings)
        # An out-of-range position means the log was replaced or truncated under the store:
        # we rebuild, never silently jump (that would fold part of the log twice).
        kwargs["auto_offset_reset"] = "none"
        consumer = AIOKafkaConsumer(
            **kwargs,
            client_id=f"{self.settings.topic_prefix}-projector",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        self._consumer = consumer
        try:
            self._partitions = [TopicPartition(self.topic, p) for p in range(count)]
            consumer.assign(self._partitions)
            ends = await self._end_offsets()
            counters, offsets = self._store.load()
            self._tables = Tables(self._store.get, counters, offsets)
            for tp in self._partitions:
                consumer.seek(tp, offsets.get(tp.partition, 0))
            self._highwater = dict(ends)
            self._highwater_at = {}
            self._verified = set()
            log.info(
                "projector on %s (%d partitions) resumes at %s, log ends at %s",
                self.topic,
                count,
                offsets,
                ends,
            )
        except BaseException:
            await self._close()
            raise
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="projector")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close()

    async def _close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._store is not None:
            self._store.close()
            self._store = None

    async def wait(self) -> None:
        """Until the projector stops; re-raises the error that stopped it."""
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> Projector:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _end_offsets(self) -> dict[int, int]:
        assert self._consumer is not None
        ends: Mapping[TopicPartition, int] = await self._consumer.end_offsets(self._partitions)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def wait_caught_up(self, timeout_s: float = 30.0) -> dict[int, int]:
        """Wait until everything in the log now has been folded; return those end offsets.

        The end is the high watermark of a fetch answered after this call: the embedded
        broker's ListOffsets answers the last batch's base offset + 1, not the log end.
        """
        started_ms = int(time.time() * 1000)
        for p, end in (await self._end_offsets()).items():
            self._highwater[p] = max(self._highwater.get(p, 0), end)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._task is None or self._task.done():
                await self.wait()
                raise ProjectionError("the projector is not running")
            ends = {tp.partition: self._highwater.get(tp.partition, 0) for tp in self._partitions}
            if self._fetched_since(started_ms) and all(
                self._tables.offsets.get(p, 0) >= end for p, end in ends.items()
            ):
                return ends
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"projection did not reach {ends} within {timeout_s} s "
                    f"(at {self._tables.offsets})"
                )
            await asyncio.sleep(0.02)

    def _fetched_since(self, started_ms: int) -> bool:
        """The loop has checked a high watermark fetched after ``started_ms`` everywhere."""
        return all(self._highwater_at.get(tp.partition, 0) > started_ms for tp in self._partitions)

    # the loop ---------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        # The embedded broker answers fetches empty once a partition holds more record batches
        # than it can list within the fetch wait (streams.kafka.fetch_wait).
        fetch_wait = FetchWait(
            self._consumer,
            name=f"projector of {self.topic}",
            enabled=broker_profile(self.settings).starves_fetches,
        )
        try:
            while not self._stopping:
                try:
                    batch = await self._consumer.getmany(
                        timeout_ms=self._poll_ms, max_records=self._max_records
                    )
                except OffsetOutOfRangeError as exc:
                    await self._restart_from_scratch(f"positions out of range ({exc})")
                    continue
                fetch_wait.observe(starved(self._consumer, batch, self._max_records))
                if batch:
                    self._fold(await self._gather(batch))
                if await self._check_highwater() and len(self._highwater_at) == len(
                    self._partitions
                ):
                    self.activity.fetched(min(self._highwater_at.values()))
        except asyncio.CancelledError:
            raise
        except KafkaError as exc:
            log.error("projector stopped: Kafka error on %s: %s", self.topic, exc)
            raise ProjectionError(f"projector stopped: Kafka error on {self.topic}: {exc}") from exc
        except Exception:
            log.exception("projector stopped: cannot fold %s", self.topic)
            raise

    async def _gather(
        self, batch: Mapping[TopicPartition, list[Any]]
    ) -> Mapping[TopicPartition, list[Any]]:
        """``batch`` and what else arrives within ``gather_ms`` of it (up to ``max_records``),
        to be folded and written as one. Under a steady stream each poll brings one processor
        cycle's events; folding each on its own rewrote the same task, session and counter
        rows several times a second (a task's events span several cycles). Nothing is folded
        before the write, so readers see rows and counters of the same offsets as before."""
        assert self._consumer is not None
        count = sum(len(records) for records in batch.values())
        if count >= self._max_records or self._gather_ms <= 0:
            return batch
        merged = {tp: list(records) for tp, records in batch.items()}
        deadline = time.monotonic() + self._gather_ms / 1000
        while count < self._max_records and not self._stopping:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            try:
                more = await self._consumer.getmany(
                    timeout_ms=left_ms, max_records=self._max_records - count
                )
            except OffsetOutOfRangeError:
                break  # the next poll meets it again and handles it
            if not more:
                break
            for tp, records in more.items():
                merged.setdefault(tp, []).extend(records)
                count += len(records)
        return merged

    async def _check_highwater(self) -> bool:
        """Record fetched high watermarks; the first one of each partition must not be below
        the stored position (that means the log was replaced: rebuild). False on rebuild."""
        assert self._consumer is not None
        for tp in self._partitions:
            hw = self._consumer.highwater(tp)
            if hw is None:
                continue
            if tp.partition not in self._verified:
                stored = self._tables.offsets.get(tp.partition, 0)
                if stored > hw:
                    await self._restart_from_scratch(
                        f"partition {tp.partition} ends at {hw} but the store is at {stored}"
                    )
                    return False
                self._verified.add(tp.partition)
            self._highwater[tp.partition] = hw
            self._highwater_at[tp.partition] = self._consumer.last_poll_timestamp(tp) or 0
        return True

    async def _restart_from_scratch(self, why: str) -> None:
        assert self._consumer is not None
        log.warning(
            "projection store %s does not match %s: %s; rebuilding it", self.path, self.topic, why
        )
        self.store.drop()
        counters, offsets = self.store.load()
        self._tables = Tables(self.store.get, counters, offsets)
        self._highwater = {}
        self._highwater_at = {}
        self._verified = set()
        self._folded = 0
        self.activity.clear()
        await self._consumer.seek_to_beginning(*self._partitions)

    def _fold(self, batch: Mapping[TopicPartition, list[Any]]) -> None:
        """Fold one poll batch and write it with its offsets. Synchronous on purpose: readers
        on the same loop never see counters ahead of the rows."""
        # No cyclic garbage collection within the batch: the fold allocates some hundred
        # thousand short-lived objects (events, row documents, history entries) that reference
        # counting frees, and every collection they trigger walks all the objects alive. Any
        # cycle made meanwhile is collected after the batch, as usual.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._fold_batch(batch)
        finally:
            if collecting:
                gc.enable()

    def _fold_batch(self, batch: Mapping[TopicPartition, list[Any]]) -> None:
        tables = self._tables
        decode = self._decode
        observe = self.activity.observe
        n = 0
        for tp, records in batch.items():
            partition = tp.partition
            n += len(records)
            for record in records:
                offset = record.offset
                event = decode(record.value, partition, offset)
                if event is None:
                    tables.counters.undecodable += 1
                    skip(tables, partition, offset)
                else:
                    apply(tables, event, partition, offset)
                    observe(tables, event, partition, offset)
        try:
            self.store.write(tables.drain())
        except Exception as exc:  # rocksdict raises plain Exception
            raise ProjectionStoreError(
                f"cannot write the projection store {self.path}: {exc}"
            ) from exc
        self.activity.sample(tables.counters)
        self._folded += n
        if self._progress is not None:
            total = max(self._folded, sum(self._highwater.values()))
            self._progress(self._folded, total)

    def _decode(self, value: bytes | None, partition: int, offset: int) -> Event | None:
        if value is None:
            log.warning("skipping an empty record at %s/%d@%d", self.topic, partition, offset)
            return None
        try:
            # task.events is written by the processor alone: no second pydantic validation.
            event = self._codec.decode_trusted(value)
        except DecodeError as exc:
            log.warning(
                "skipping an undecodable record at %s/%d@%d: %s", self.topic, partition, offset, exc
            )
            return None
        if not isinstance(event, Event):
            log.warning(
                "skipping a %s record at %s/%d@%d: not an event",
                type(event).__name__,
                self.topic,
                partition,
                offset,
            )
            return None
        return event


async def rebuild(
    settings: Settings,
    progress: Progress | None = None,
    *,
    path: Path | None = None,
    timeout_s: float = 3600.0,
) -> RebuildReport:
    """Drop the projection store and replay ``task.events`` from offset 0 to its current end.

    ``progress(done, total)`` is called after every write batch (the CLI draws a tqdm bar).
    """
    projector = Projector(settings, path=path, max_records=10_000)
    await projector.start(fresh=True)
    try:
        projector._progress = progress
        if progress is not None:
            progress(0, sum(projector._highwater.values()))
        ends = await projector.wait_caught_up(timeout_s)
        return RebuildReport(
            events=projector.tables.counters.events + projector.tables.counters.undecodable,
            partitions=len(ends),
            offsets=dict(projector.tables.offsets),
        )
    finally:
        await projector.stop()
