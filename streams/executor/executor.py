"""The executor: consumes work from Kafka, runs it in a ``WorkerPool``, reports commands.

Where work comes from:

- ``task.assignments`` (sessions): every partition by manual assignment, no consumer group,
  keeping the records whose ``session_id`` is one of ours. Reading starts at the end of each
  partition, fixed *before* the sessions are registered, so every assignment the processor
  makes for them is seen. Nothing is committed: after a restart, assignments made while the
  executor was away are not replayed. Instead every start registers its sessions with a new
  ``incarnation`` id, and the processor re-queues what the sessions held for an earlier start
  at once (under new fencing tokens), so the new start gets that work back within moments.
- ``task.pool`` (``pool=True``): consumer group ``<prefix>-pool``, from the committed offsets
  (earliest for a new group). An offset is committed only once the results of it and of every
  record before it on its partition are delivered to ``task.commands``: at-least-once, so a
  member that dies mid-task leaves its work to the member that takes its partitions over.

Back-pressure: before each fetch the executor asks for at most as many records as the queue
has room for; when it is full, the consumers pause their partitions until a worker frees room.
Nothing is dropped.

All commands go to ``task.commands`` keyed by ``client_id`` through one ordered outbox, so a
task's ``TaskStarted``, ``ReportProgress`` and ``ReportResult`` arrive in that order (a start
held back up to 20 ms travels in its result when that comes: ``streams.executor.start_folding``).
They go to the client's home partition by number (``streams.kafka.routing``; the partition
an assignment's ``ts-home`` header names), not wherever the producer's partitioner hashes a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from schemas.codec import CODEC
from schemas.commands import (
    Command,
    RegisterPool,
    RegisterSession,
    ReleasePool,
    ReleaseSession,
    ReportResult,
    SessionHeartbeat,
)
from schemas.errors import DecodeError
from schemas.records import Assignment
from streams.client import default_actor
from streams.executor.context import Handler
from streams.executor.errors import ExecutorError
from streams.executor.pool import ExecutorMetrics, WorkerPool
from streams.executor.pool_capacity import PoolCapacity
from streams.executor.pool_offsets import OffsetTracker
from streams.executor.start_folding import StartHold
from streams.executor.watch import ProgressCallback, TaskError
from streams.executor.workload import Workload, WorkloadSource
from streams.kafka import consumer_kwargs, producer_kwargs, topic_partitions
from streams.kafka.fetch_wait import FetchWait, starved
from streams.kafka.membership import group_consumer
from streams.kafka.profile import broker_profile
from streams.kafka.routing import home_partition
from streams.secrets import Keyring
from streams.settings import Settings

log = logging.getLogger(__name__)

_POLL_MS = 200
_START_HOLD_S = 0.02  # how long a TaskStarted may wait for its result (start_folding)


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """A session this executor registers and serves."""

    session_id: str
    client_id: str
    agent_id: str
    max_concurrent: int = 1
    capabilities: tuple[str, ...] = ()


class _PoolRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._executor._commit_pool(revoked)
        self._executor._tracker.forget(revoked)
        self._executor._emit_all(
            self._executor.pool_capacity.revoked(tp.partition for tp in revoked)
        )

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("pool partitions assigned: %s", sorted(tp.partition for tp in assigned))
        # Capacity for the command partitions whose pool partitions we now consume.
        self._executor._emit_all(
            self._executor.pool_capacity.assigned(tp.partition for tp in assigned)
        )


class Executor:
    """Serves sessions and/or the shared pool with handlers keyed by operation.

    Each session's ``max_concurrent`` bounds the handler calls running for it (batch items
    included); ``concurrency`` bounds them all and defaults to the sessions' ``max_concurrent``
    summed (+4 with ``pool``),
    ``queue_size`` to twice the concurrency, the per-task timeout (when an assignment carries
    none) to ``settings.default_timeout_ms``, the heartbeat interval to a tenth of
    ``settings.session_stale_ms`` capped at 30 s. The local queue hands out the most urgent
    assignment first; ``errors()`` and ``on_progress(task_id, status, percent, message)``
    watch the work from this process (``streams.executor.watch``). Each heartbeat reports
    the workload (``streams.executor.workload``): ``workload=`` or ``set_workload`` replace
    the default, running handler calls over the concurrency.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        handlers: Mapping[str, Handler],
        sessions: Iterable[SessionSpec] = (),
        pool: bool = False,
        concurrency: int | None = None,
        queue_size: int | None = None,
        default_handler: Handler | None = None,
        default_timeout_ms: int | None = None,
        heartbeat_interval_ms: int | None = None,
        drain_timeout_s: float = 10.0,
        commit_interval_ms: int = 1000,
        topic_wait_s: float = 30.0,
        on_progress: ProgressCallback | None = None,
        workload: WorkloadSource | None = None,
    ) -> None:
        self.settings = settings
        self.sessions: tuple[SessionSpec, ...] = tuple(sessions)
        ids = [s.session_id for s in self.sessions]
        if len(set(ids)) != len(ids):
            raise ExecutorError(f"session ids must be unique, got {ids}")
        if not self.sessions and not pool:
            raise ExecutorError("nothing to serve: give sessions, pool=True, or both")
        if concurrency is None:
            concurrency = sum(s.max_concurrent for s in self.sessions) + (4 if pool else 0)
        concurrency = max(1, concurrency)
        self.pool_enabled = pool
        self._session_ids = frozenset(ids)
        # What the pool may take at once: the concurrency the sessions leave (``domain.pool``).
        left = concurrency - sum(s.max_concurrent for s in self.sessions)
        if pool and left < 1:
            log.warning(
                "concurrency %d leaves nothing for the pool after the sessions' %d: it registers"
                " 1 per pool partition; raise the concurrency to give the pool more",
                concurrency,
                concurrency - left,
            )
        self.pool_capacity = PoolCapacity(left, actor=settings.actor or default_actor())
        self._pool = WorkerPool(
            handlers,
            report=self._emit,
            concurrency=concurrency,
            queue_size=queue_size if queue_size is not None else 2 * concurrency,
            default_timeout_ms=default_timeout_ms or settings.default_timeout_ms,
            default_handler=default_handler,
            keyring=Keyring.from_settings(settings),
            session_limits={s.session_id: s.max_concurrent for s in self.sessions},
            on_progress=on_progress,
        )
        self._workload = Workload(
            lambda: self._pool.metrics().running / concurrency, workload, settings.max_workload
        )
        # This start of the executor: its registrations take the sessions over at once, so
        # the processor re-queues what an earlier (crashed) start still held.
        self.incarnation = uuid.uuid4().hex
        self.actor = settings.actor or default_actor()  # who its session commands name
        self._heartbeat_s = (
            heartbeat_interval_ms or max(100, min(30_000, settings.session_stale_ms // 10))
        ) / 1000
        self._drain_timeout_s = drain_timeout_s
        self._commit_interval_s = commit_interval_ms / 1000
        self._topic_wait_s = topic_wait_s
        self._commands_topic = settings.topic("commands")
        self._outbox: asyncio.Queue[BaseModel] = asyncio.Queue()
        self._producer: AIOKafkaProducer | None = None
        self._assignments: AIOKafkaConsumer | None = None
        self._pool_consumer: AIOKafkaConsumer | None = None
        self._tracker = OffsetTracker()
        self._sender: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None
        self._started = False
        self._stopped = False
        self._paused: set[str] = set()

    # -- public ------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while a consumer is paused because the queue is full."""
        return bool(self._paused)

    def metrics(self) -> ExecutorMetrics:
        return self._pool.metrics()

    def running_by_session(self) -> dict[str, int]:
        return self._pool.running_by_session()

    def set_workload(self, value: float | WorkloadSource | None) -> None:
        """The workload (0..1) the next heartbeats report: a value, a function, or None for
        the default (running handler calls over the concurrency)."""
        self._workload.set(value)

    def errors(self) -> list[TaskError]:
        """The recent failed attempts of this executor (task id, error, class), oldest first."""
        return self._pool.errors()

    async def start(self) -> None:
        """Connect, position the consumers, register the sessions, start the loops."""
        if self._started:
            return
        self._started = True
        try:
            await self._start()
        except BaseException:
            self._stopped = True  # nothing was registered that stop() would have to release
            await self._pool.close(0)
            await self._close_clients()
            raise

    async def wait(self) -> None:
        """Until ``stop()`` is called or a background loop fails (then raises its error)."""
        await self._stopping.wait()
        if self._failure is not None:
            raise ExecutorError(f"executor stopped: {self._failure}") from self._failure

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """Graceful shutdown: stop taking work, drain running work within the bound (then
        cancel it, reported as failure ``"shutdown"``), commit, release the sessions."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        self._stopping.set()
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops = []
        bound = self._drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        try:
            await self._pool.close(bound)
            if self._failure is None:
                if self._pool_consumer is not None:
                    await self._commit_pool(None)
                self._emit_all(self.pool_capacity.release_all())
                for s in self.sessions:
                    self._emit(
                        ReleaseSession(
                            client_id=s.client_id,
                            session_id=s.session_id,
                            reason="shutdown",
                            actor=self.actor,
                        )
                    )
                await self._flush()
        finally:
            await self._close_clients()

    async def run(self) -> None:
        """Start, serve until stopped or failed, stop."""
        await self.start()
        try:
            await self.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Executor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- start-up ----------------------------------------------------------------------------

    async def _start(self) -> None:
        self._producer = AIOKafkaProducer(**producer_kwargs(self.settings))
        await self._producer.start()
        self._sender = self._spawn(self._send_loop(), "taskstream-executor-sender")
        await self._pool.start()
        if self.sessions:
            self._assignments = await self._open_assignments()
            for s in self.sessions:
                self._emit(
                    RegisterSession(
                        client_id=s.client_id,
                        session_id=s.session_id,
                        agent_id=s.agent_id,
                        max_concurrent=s.max_concurrent,
                        capabilities=list(s.capabilities),
                        actor=self.actor,
                        incarnation=self.incarnation,
                    )
                )
            await self._flush()
            self._loops.append(
                self._spawn(
                    self._consume(self._assignments, "assignments", None),
                    "taskstream-executor-assignments",
                )
            )
        if self.sessions or self.pool_enabled:
            self._loops.append(self._spawn(self._heartbeats(), "taskstream-executor-heartbeats"))
        if self.pool_enabled:
            self._pool_consumer = group_consumer(
                self.settings, f"{self.settings.topic_prefix}-pool", part="pool", hot_path=True
            )
            await self._pool_consumer.start()
            self._pool_consumer.subscribe(
                [self.settings.topic("pool")], listener=_PoolRebalance(self)
            )
            self._loops.append(
                self._spawn(
                    self._consume(self._pool_consumer, "pool", self._tracker),
                    "taskstream-executor-pool",
                )
            )

    async def _open_assignments(self) -> AIOKafkaConsumer:
        topic = self.settings.topic("assignments")
        kwargs = consumer_kwargs(self.settings, None, hot_path=True)
        kwargs["auto_offset_reset"] = "latest"
        consumer = AIOKafkaConsumer(**kwargs)
        await consumer.start()
        try:
            deadline = time.monotonic() + self._topic_wait_s
            partitions: set[int] | None = None
            while True:
                partitions = await topic_partitions(consumer, topic)
                if partitions or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.5)
            if not partitions:
                raise ExecutorError(
                    f"topic {topic} does not exist after {self._topic_wait_s:.0f}s; "
                    "create the topics first (taskstream starts them with the processor)"
                )
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve now: later assignments for our sessions must be seen
                await consumer.position(tp)
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._watch)
        return task

    def _watch(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._failure is None:
            log.error("executor loop %s failed: %s", task.get_name(), exc, exc_info=exc)
            self._failure = exc
            self._stopping.set()

    # -- consuming ---------------------------------------------------------------------------

    async def _consume(
        self, consumer: AIOKafkaConsumer, name: str, tracker: OffsetTracker | None
    ) -> None:
        last_commit = time.monotonic()
        fetch_wait = FetchWait(
            consumer,
            name=f"executor {name}",
            enabled=broker_profile(self.settings).starves_fetches,
        )
        while True:
            room = self._pool.room()
            if room == 0:
                # Back-pressure: stop fetching until a worker takes a job off the queue.
                consumer.pause(*consumer.assignment())
                self._paused.add(name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._pool.wait_for_room(), _POLL_MS / 1000)
                if self._pool.room() == 0:
                    # Keep polling (paused partitions return nothing) so the group stays joined.
                    batch = await consumer.getmany(timeout_ms=0)
                    await self._handle_batch(batch, tracker)
                    continue
            if name in self._paused:
                consumer.resume(*consumer.paused())
                self._paused.discard(name)
            batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=max(1, room))
            fetch_wait.observe(starved(consumer, batch, max(1, room)))
            await self._handle_batch(batch, tracker)
            if tracker is not None and time.monotonic() - last_commit >= self._commit_interval_s:
                await self._commit_pool(None)
                last_commit = time.monotonic()

    async def _handle_batch(
        self, batch: Mapping[TopicPartition, list[Any]], tracker: OffsetTracker | None
    ) -> None:
        for tp, records in batch.items():
            for record in records:
                if tracker is not None:
                    tracker.seen(tp, record.offset)
                on_done = _done_callback(tracker, tp, record.offset)
                accepted = await self._handle(record.value, tracker is not None, on_done)
                if not accepted:
                    on_done()

    async def _handle(
        self, value: bytes | None, from_pool: bool, on_done: Callable[[], None]
    ) -> bool:
        """Give one record to the pool; False when it needs no work (not ours, a cancel)."""
        if value is None:
            return False
        try:
            assignment = CODEC.decode_as(value, Assignment)
        except DecodeError as exc:
            log.warning("skipping an undecodable assignment record: %s", exc)
            return False
        if not from_pool and assignment.session_id not in self._session_ids:
            return False
        if assignment.kind == "cancel":
            reached = self._pool.cancel(assignment)
            log.info(
                "cancel for task %s batch %s reached %d running or queued tasks",
                assignment.task_id,
                assignment.batch_id,
                reached,
            )
            return False
        if assignment.kind not in ("task", "batch"):
            log.warning("skipping an assignment of unknown kind %r", assignment.kind)
            return False
        try:
            await self._pool.submit(assignment, on_done)
        except ExecutorError as exc:
            if self._pool.closing:
                raise
            log.warning("skipping a malformed assignment: %s", exc)
            return False
        return True

    async def _commit_pool(self, tps: Iterable[TopicPartition] | None) -> None:
        consumer = self._pool_consumer
        if consumer is None:
            return
        offsets = self._tracker.committable(tps)
        if not offsets:
            return
        await self._flush()  # the results of what we commit past must be on task.commands
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance took the partition; its new owner re-runs from the last commit.
            log.warning("pool offset commit failed (work may run again): %s", exc)
            return
        self._tracker.committed(offsets)

    # -- reporting ---------------------------------------------------------------------------

    def _emit(self, command: BaseModel) -> None:
        self._outbox.put_nowait(command)
        if type(command) is ReportResult and self._workload.fell():
            self._report_workload()  # the agent has room again: say so now

    def _emit_all(self, commands: Iterable[BaseModel]) -> None:
        for command in commands:
            self._emit(command)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            self._emit_all(self.pool_capacity.heartbeat())
            self._report_workload()

    def _report_workload(self) -> None:
        workload = self._workload.report()
        for s in self.sessions:
            self._emit(
                SessionHeartbeat(client_id=s.client_id, session_id=s.session_id, workload=workload)
            )

    async def _send_loop(self) -> None:
        """Produce the outbox in order; mark items done only once delivered."""
        producer = self._producer
        assert producer is not None
        partitions = len(await producer.partitions_for(self._commands_topic))
        hold = StartHold(_START_HOLD_S)
        loop = asyncio.get_running_loop()
        while True:
            wait_s = hold.wait_s(loop.time())
            queued: list[BaseModel] = []
            if wait_s is None:
                queued.append(await self._outbox.get())
            elif wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    queued.append(await asyncio.wait_for(self._outbox.get(), wait_s))
            while not self._outbox.empty():
                queued.append(self._outbox.get_nowait())
            commands, settled = hold.round(queued, loop.time())
            futures = []
            for command in commands:
                if not isinstance(command, Command):
                    raise ExecutorError(f"not a command: {type(command).__name__}")
                # Pool capacity is for the partition it names; all else goes home.
                partition = (
                    command.partition
                    if isinstance(command, (RegisterPool, ReleasePool))
                    else home_partition(command.client_id, partitions)
                )
                futures.append(
                    await producer.send(
                        self._commands_topic,
                        CODEC.encode(command),
                        key=command.client_id.encode(),
                        partition=partition,
                    )
                )
            await asyncio.gather(*futures)
            for _ in range(settled):
                self._outbox.task_done()

    async def _flush(self) -> None:
        """Wait until every command emitted so far is delivered (or the sender failed)."""
        sender = self._sender
        if sender is None:
            return
        joined = asyncio.ensure_future(self._outbox.join())
        try:
            await asyncio.wait({joined, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        if sender.done():
            exc = None if sender.cancelled() else sender.exception()
            raise ExecutorError(f"the command sender stopped: {exc}") from exc

    async def _close_clients(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
            self._sender = None
        for consumer in (self._assignments, self._pool_consumer):
            if consumer is not None:
                with contextlib.suppress(KafkaError):
                    await consumer.stop()
        self._assignments = None
        self._pool_consumer = None
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.stop()
            self._producer = None


def _done_callback(
    tracker: OffsetTracker | None, tp: TopicPartition, offset: int
) -> Callable[[], None]:
    if tracker is None:
        return lambda: None
    return lambda: tracker.done(tp, offset)
