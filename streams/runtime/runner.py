"""The stream runtime: a consumer group on the command topic, one store per owned partition,
cycles of :mod:`streams.runtime.processing`, recovery of :mod:`streams.runtime.recovery` on
every assignment, and ticks.

One task runs the loop: fetch a batch (waiting at most until the next tick is due), apply the
commands, apply the tick if due, complete the cycle. Ticks therefore neither starve command
batches (a tick is one call per partition) nor get starved by them (checked every cycle).
The rebalance listener runs in aiokafka's coordinator task; a lock makes it wait for the cycle
in flight before it closes stores.

Recovery runs in the loop, not in the listener: aiokafka sends no heartbeat while the
assignment callback runs, so a recovery longer than the session timeout (a store of a million
tasks loads for tens of seconds) got the member expelled, and it recovered again after every
rejoin, forever. The listener only pauses newly assigned partitions and notes them; the loop
recovers one partition per turn (loading the store in a thread, so heartbeats keep going) and
resumes it, so recovered partitions already process while the others still load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from streams.errors import ProcessingError
from streams.kafka import consumer_kwargs, producer_kwargs, topic_partitions
from streams.kafka.fetch_wait import FetchWait, starved
from streams.kafka.membership import group_consumer
from streams.kafka.profile import broker_profile
from streams.kafka.reader import KafkaLogReader
from streams.runtime.outbox import Outbox
from streams.runtime.partition import PartitionRun
from streams.runtime.processing import Processor, RuntimeTopics, tick_time, wall_clock_ms
from streams.runtime.protocol import Application
from streams.runtime.recovery import open_store, recover_partition
from streams.runtime.store import store_path
from streams.settings import Settings

__all__ = ["AppFactory", "StreamRuntime", "main_process", "run_processor"]

log = logging.getLogger(__name__)

S = TypeVar("S")

AppFactory = Callable[[Settings], Application[Any]]

# Library defaults (not operator settings): records per fetch, and bounds on shutdown steps.
MAX_POLL_RECORDS = 10_000
CLOSE_TIMEOUT_S = 5.0


class StreamRuntime(Generic[S]):
    """Runs ``app`` over ``settings``' command topic until :meth:`stop` (or an error).

    ``ready`` is set once the first assignment is recovered (possibly an empty one: more
    processors than partitions). ``owned`` lists the partitions currently owned.
    """

    def __init__(
        self,
        app: Application[S],
        settings: Settings,
        *,
        name: str = "processor",
        stop: asyncio.Event | None = None,
        crash_after_events: int | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.name = name
        self.topics = RuntimeTopics(settings.topic("commands"), settings.topic("events"))
        self.ready = asyncio.Event()
        self._stop = stop or asyncio.Event()
        self._crash_after_events = crash_after_events
        self._lock = asyncio.Lock()
        self._runs: dict[int, PartitionRun[S]] = {}
        self._pending: set[int] = set()  # assigned, paused until recovered
        self._fatal: BaseException | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._processor: Processor[S] | None = None
        self._uncommitted: dict[int, int] = {}
        self._committing: asyncio.Task[None] | None = None
        self.recoveries: list[Any] = []

    @property
    def owned(self) -> list[int]:
        return sorted(self._runs)

    @property
    def processor(self) -> Processor[S]:
        if self._processor is None:
            raise ProcessingError("the runtime is not running")
        return self._processor

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        settings = self.settings
        producer = AIOKafkaProducer(**producer_kwargs(settings))
        consumer = group_consumer(
            settings,
            settings.group_id,
            part=self.name,
            hot_path=True,
            max_poll_records=MAX_POLL_RECORDS,
        )
        reader_consumer = AIOKafkaConsumer(**consumer_kwargs(settings, hot_path=True))
        self._consumer = consumer
        started: list[Any] = []
        try:
            for client in (producer, reader_consumer, consumer):
                await client.start()
                started.append(client)
            outbox = Outbox(producer, _end_offsets(reader_consumer))
            partitions = await topic_partitions(reader_consumer, self.topics.commands)
            if not partitions:
                raise ProcessingError(
                    f"{self.name}: topic {self.topics.commands} does not exist; "
                    "run `taskstream topics create` first"
                )
            self._processor = Processor(
                self.app,
                self.topics,
                outbox,
                self._commit,
                partitions=len(partitions),
                max_skew_ms=settings.max_clock_skew_ms,
                crash_after_events=self._crash_after_events,
                overlap_outputs=True,
            )
            reader = KafkaLogReader(reader_consumer, profile=broker_profile(settings))
            consumer.subscribe([self.topics.commands], listener=_Listener(self))
            log.info(
                "%s: joining group %s on %s", self.name, settings.group_id, self.topics.commands
            )
            await self._loop(consumer, reader, outbox)
        finally:
            await self._close(started)

    async def _loop(
        self, consumer: AIOKafkaConsumer, reader: KafkaLogReader, outbox: Outbox
    ) -> None:
        interval_s = self.settings.tick_interval_ms / 1000
        next_tick = time.monotonic() + interval_s
        processor = self.processor
        fetch_wait = FetchWait(
            consumer, name=self.name, enabled=broker_profile(self.settings).starves_fetches
        )
        while not self._stop.is_set():
            self._raise_if_fatal()
            if self._pending:
                await self._recover_next(reader, outbox)
            wait_ms = 0 if self._pending else max(0, int((next_tick - time.monotonic()) * 1000))
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=MAX_POLL_RECORDS)
            self._raise_if_fatal()
            fetch_wait.observe(starved(consumer, batch, MAX_POLL_RECORDS))
            now = time.monotonic()
            tick_due = now >= next_tick
            if tick_due:
                next_tick = now + interval_s
            if not batch and not (tick_due and self._runs):
                continue
            async with self._lock:
                for tp, records in batch.items():
                    run = self._runs.get(tp.partition)
                    if run is not None:  # else revoked meanwhile: its new owner handles it
                        processor.apply_commands(run, records)
                if tick_due:
                    now_ms = wall_clock_ms()
                    for run in self._runs.values():
                        tp = TopicPartition(self.topics.commands, run.partition)
                        processor.apply_tick(run, tick_time(now_ms, run, consumer.highwater(tp)))
                await processor.complete()

    async def _commit(self, offsets: dict[int, int]) -> None:
        """Step 7 of a cycle, off the cycle's path. The commit is advisory (the stores hold the
        offsets that matter), so the next cycle does not wait for the coordinator's answer (on
        Apache Kafka a commit is a round trip and a log append, about a tenth of a loaded
        cycle). One commit is in flight at a time, in cycle order; offsets of cycles completed
        meanwhile are merged into the next one, so under load commits coalesce. A commit that
        fails with anything but a Kafka error stops the loop at the next cycle."""
        committing = self._committing
        if committing is not None and committing.done():
            self._committing = None
            self._raise_if_commit_failed_unexpectedly(committing)
        self._uncommitted.update(offsets)
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_pending())

    def _raise_if_commit_failed_unexpectedly(self, task: asyncio.Task[None] | None) -> None:
        if task is not None and not task.cancelled() and task.exception() is not None:
            raise ProcessingError(f"{self.name}: committing offsets failed") from task.exception()

    async def _commit_pending(self) -> None:
        while self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            await self._commit_now(offsets)

    async def _commit_now(self, offsets: dict[int, int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        commit = {
            tp: offset
            for partition, offset in offsets.items()
            if (tp := TopicPartition(self.topics.commands, partition)) in assigned
        }
        if not commit:
            return
        try:
            await consumer.commit(commit)
        except (CommitFailedError, KafkaError) as exc:
            # Advisory only: the stores hold the offsets that matter.
            log.warning("%s: committing command offsets failed (%s); continuing", self.name, exc)

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise ProcessingError(
                f"{self.name}: partition recovery failed: {self._fatal}"
            ) from self._fatal

    async def _revoke(self, partitions: list[int]) -> None:
        async with self._lock:  # waits for the cycle (or the recovery) in flight
            if self._processor is not None:
                await self._processor.settle()  # the last cycle's side records, then close
            self._pending.difference_update(partitions)
            for partition in partitions:
                run = self._runs.pop(partition, None)
                if run is not None:
                    run.store.close()
            if partitions:
                log.info("%s: released partitions %s", self.name, partitions)

    def _assigned(self, partitions: list[int]) -> None:
        """The listener's half of an assignment: pause what is new until it is recovered."""
        consumer = self._consumer
        assert consumer is not None
        new = [p for p in partitions if p not in self._runs]
        consumer.pause(*(TopicPartition(self.topics.commands, p) for p in new))
        self._pending.update(new)
        if not self._pending:
            self.ready.set()

    async def _recover_next(self, reader: KafkaLogReader, outbox: Outbox) -> None:
        """Recover the lowest pending partition, seek it to its next command and resume it."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            if not self._pending:
                return
            partition = min(self._pending)
            tp = TopicPartition(self.topics.commands, partition)
            path = store_path(self.settings.data_dir, self.name, partition)
            store, reason = await open_store(path)
            if reason:
                log.warning("%s: partition %d: %s; rebuilding", self.name, partition, reason)
            try:
                committed = await consumer.committed(tp)
                run, report = await recover_partition(
                    self.app,
                    store,
                    partition,
                    self.topics,
                    reader,
                    outbox,
                    committed,
                    rebuilt_reason=reason,
                )
            except BaseException:
                store.close()
                raise
            if report.rebuilt_reason and not reason:
                log.warning(
                    "%s: partition %d: %s; rebuilt from the event log",
                    self.name,
                    partition,
                    report.rebuilt_reason,
                )
            self._pending.discard(partition)
            self._runs[partition] = run
            self.recoveries.append(report)
            if tp in consumer.assignment():  # else revoked while its recovery awaited
                consumer.seek(tp, run.next_command_offset)
                consumer.resume(tp)
            log.info(
                "%s: partition %d recovered: %d events replayed, %d duplicates skipped, "
                "%d missing events completed, %d side records re-produced; commands resume "
                "at %d",
                self.name,
                partition,
                report.replayed,
                report.duplicates,
                report.completed_partial,
                report.outputs,
                run.next_command_offset,
            )
            if not self._pending:
                self.ready.set()

    async def _close(self, started: list[Any]) -> None:
        if self._committing is not None:  # the last cycles' commit, before the consumer goes
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._committing), CLOSE_TIMEOUT_S)
        async with self._lock:
            if self._processor is not None:
                try:
                    await asyncio.wait_for(self._processor.settle(), CLOSE_TIMEOUT_S)
                except Exception as exc:  # they stay staged: recovery produces them
                    log.warning("%s: side records not acknowledged at close: %r", self.name, exc)
            for run in self._runs.values():
                run.store.close()
            self._runs.clear()
        for client in reversed(started):
            try:
                await asyncio.wait_for(client.stop(), CLOSE_TIMEOUT_S)
            except (TimeoutError, KafkaError) as exc:
                log.warning("%s: closing a Kafka client: %r", self.name, exc)
        log.info("%s: stopped", self.name)


def _end_offsets(consumer: AIOKafkaConsumer) -> Any:
    """End offsets through the (group-less) reader consumer; a short answer is a fine lower
    bound for staged side records (``streams.runtime.staging``)."""

    async def ask(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        ends = await consumer.end_offsets([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    return ask


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands rebalances to the runtime; errors become fatal for the loop (aiokafka would
    otherwise log them and carry on with a partition nobody processes). Returns quickly:
    no heartbeat goes out while an assignment callback runs."""

    def __init__(self, runtime: StreamRuntime[Any]):
        self._runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._guard(self._runtime._revoke(sorted(tp.partition for tp in revoked)))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            self._runtime._assigned(sorted(tp.partition for tp in assigned))
        except Exception as exc:
            self._fail(exc)

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        log.exception("%s: rebalance handling failed", self._runtime.name)
        self._runtime._fatal = exc
        self._runtime.stop()


async def run_processor(
    app_factory: AppFactory,
    settings: Settings,
    *,
    name: str = "processor",
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the processor until ``stop`` is set; raise on an unrecoverable error.

    ``ready`` (optional) is set once the first partition assignment is recovered.
    """
    runtime: StreamRuntime[Any] = StreamRuntime(
        app_factory(settings), settings, name=name, stop=stop
    )
    if ready is not None:
        watcher = asyncio.create_task(_relay(runtime.ready, ready))
    try:
        await runtime.run()
    finally:
        if ready is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def main_process(
    app_factory: AppFactory,
    settings: Settings,
    *,
    name: str = "processor",
    grace_s: float = 10.0,
) -> int:
    """Run the processor in this process until SIGTERM/SIGINT; return the exit code
    (0 after a clean stop, 1 after an unhandled error, which is logged with its traceback)."""
    from streams.runtime.signals import run_part

    async def work(stop: asyncio.Event) -> None:
        await run_processor(app_factory, settings, name=name, stop=stop)

    return run_part(work, name=name, grace_s=grace_s)
