"""The executor on a real broker. The test plays the processor: it writes Assignment records to
task.assignments / task.pool and reads what the executor says on task.commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from schemas.codec import CODEC
from schemas.commands import (
    RegisterSession,
    ReleaseSession,
    ReportProgress,
    ReportResult,
    SessionHeartbeat,
    TaskStarted,
)
from schemas.records import Assignment, AssignmentItem
from streams.executor import Executor, ExecutorError, SessionSpec, TaskContext
from streams.kafka import consumer_kwargs, producer_kwargs, topic_partitions
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration


class CommandLog:
    """Everything on task.commands, read from the beginning of every partition."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.commands: list[BaseModel] = []
        self.partition_of: dict[int, int] = {}
        self._consumer = AIOKafkaConsumer(**consumer_kwargs(settings, None))

    async def start(self) -> None:
        await self._consumer.start()
        topic = self.settings.topic("commands")
        partitions = await topic_partitions(self._consumer, topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def until(self, predicate: Callable[[list[BaseModel]], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not predicate(self.commands):
            if loop.time() > deadline:
                raise AssertionError(f"never happened: {what}; got {self.commands}")
            batch = await self._consumer.getmany(timeout_ms=100)
            for tp, records in batch.items():
                for record in records:
                    command = CODEC.decode(record.value)
                    self.partition_of[id(command)] = tp.partition
                    assert record.key == command.client_id.encode()  # type: ignore[attr-defined]
                    self.commands.append(command)

    def of(self, kind: type[BaseModel], **match: Any) -> list[Any]:
        return [
            c
            for c in self.commands
            if isinstance(c, kind) and all(getattr(c, k) == v for k, v in match.items())
        ]


async def produce(settings: Settings, topic: str, key: str, assignment: Assignment) -> None:
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(topic), CODEC.encode(assignment), key=key.encode()
        )
    finally:
        await producer.stop()


def task(task_id: str, session: str | None, client: str, token: int, **payload: Any) -> Assignment:
    return Assignment(
        kind="task",
        client_id=client,
        session_id=session,
        operation="work",
        task_id=task_id,
        fencing_token=token,
        items=[AssignmentItem(task_id=task_id, payload=payload)],
    )


class Work:
    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.started: dict[str, asyncio.Event] = {}
        self.gate = asyncio.Event()

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        self.started.setdefault(ctx.task_id, asyncio.Event()).set()
        ctx.report_progress(0.5, "half way")
        if ctx.payload.get("block"):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(ctx.task_id)
                raise
        if ctx.payload.get("gate"):
            await self.gate.wait()
        if ctx.payload.get("fail"):
            raise ValueError(f"item {ctx.task_id} is bad")
        return {"task": ctx.task_id, "v": ctx.payload.get("v")}


async def test_executor_serves_sessions_and_the_pool(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(kafka_session_timeout_ms=6000, kafka_heartbeat_interval_ms=500)
    await ensure_topics(settings)
    log = CommandLog(settings)
    await log.start()
    work = Work()
    progress_seen: list[tuple[str, str, int, str | None]] = []
    executor = Executor(
        settings,
        on_progress=lambda *seen: progress_seen.append(seen),
        sessions=[
            SessionSpec("s1", client_id="c1", agent_id="a1", max_concurrent=2, capabilities=("x",)),
            SessionSpec("s2", client_id="c2", agent_id="a1", max_concurrent=2),
        ],
        pool=True,
        handlers={"work": work},
        heartbeat_interval_ms=200,
        commit_interval_ms=100,
    )
    await executor.start()
    try:
        await log.until(
            lambda cs: len([c for c in cs if isinstance(c, RegisterSession)]) == 2, "registered"
        )
        [reg] = log.of(RegisterSession, session_id="s1")
        assert (reg.client_id, reg.agent_id, reg.max_concurrent, reg.capabilities) == (
            "c1",
            "a1",
            2,
            ["x"],
        )

        # A single task for s1, and one for a session that is not ours.
        await produce(settings, "assignments", "other", task("t-other", "other", "c9", 1))
        await produce(settings, "assignments", "s1", task("t1", "s1", "c1", 11, v=42))
        await log.until(lambda cs: bool(log.of(ReportResult, task_id="t1")), "t1 result")
        [result] = log.of(ReportResult, task_id="t1")
        assert (result.success, result.fencing_token, result.session_id, result.client_id) == (
            True,
            11,
            "s1",
            "c1",
        )
        assert result.output == {"task": "t1", "v": 42}
        t1 = [c for c in log.commands if getattr(c, "task_id", None) == "t1"]
        assert [type(c) for c in t1] == [TaskStarted, ReportProgress, ReportResult]
        progress = t1[1]
        assert isinstance(progress, ReportProgress)
        assert progress.progress == 0.5 and progress.fencing_token == 11
        assert [p for p in progress_seen if p[0] == "t1"] == [
            ("t1", "in_progress", 0, None),
            ("t1", "in_progress", 50, "half way"),
            ("t1", "completed", 100, None),
        ]

        # A batch for s2 with one bad item: one result with per-item outcomes.
        batch = Assignment(
            kind="batch",
            client_id="c2",
            session_id="s2",
            operation="work",
            batch_id="b1",
            fencing_token=21,
            items=[
                AssignmentItem(task_id="b1-0", payload={"v": 0}),
                AssignmentItem(task_id="b1-1", payload={"fail": True}),
                AssignmentItem(task_id="b1-2", payload={"v": 2}),
            ],
        )
        await produce(settings, "assignments", "s2", batch)
        await log.until(lambda cs: bool(log.of(ReportResult, batch_id="b1")), "batch result")
        [batch_result] = log.of(ReportResult, batch_id="b1")
        assert batch_result.fencing_token == 21 and not batch_result.success
        assert [(i.task_id, i.success, i.error) for i in batch_result.items] == [
            ("b1-0", True, None),
            ("b1-1", False, "item b1-1 is bad"),
            ("b1-2", True, None),
        ]
        assert [(e.task_id, e.error) for e in executor.errors()] == [("b1-1", "item b1-1 is bad")]
        # Every item started: a TaskStarted, or folded into the result (items[].started).
        started = {c.task_id for c in log.of(TaskStarted, fencing_token=21)}
        folded = {i.task_id for i in batch_result.items if i.started}
        assert started | folded == {"b1-0", "b1-1", "b1-2"} and not started & folded

        # Cancel a running task: the handler is interrupted and no result is reported.
        await produce(settings, "assignments", "s1", task("t2", "s1", "c1", 12, block=True))
        await log.until(lambda cs: bool(log.of(TaskStarted, task_id="t2")), "t2 started")
        cancel = Assignment(
            kind="cancel",
            client_id="c1",
            session_id="s1",
            operation="work",
            task_id="t2",
            fencing_token=12,
            reason="user asked",
        )
        await produce(settings, "assignments", "s1", cancel)
        for _ in range(300):
            if work.cancelled:
                break
            await asyncio.sleep(0.05)
        assert work.cancelled == ["t2"]

        # Pool work: no session, consumed through the group.
        await produce(settings, "pool", "p1", task("p1", None, "c3", 31, v="pool"))
        await log.until(lambda cs: bool(log.of(ReportResult, task_id="p1")), "pool result")
        [pool_result] = log.of(ReportResult, task_id="p1")
        assert (pool_result.session_id, pool_result.fencing_token) == (None, 31)
        assert pool_result.output == {"task": "p1", "v": "pool"}

        await log.until(
            lambda cs: (
                {c.session_id for c in cs if isinstance(c, SessionHeartbeat)} == {"s1", "s2"}
            ),
            "heartbeats",
        )
        m = executor.metrics()
        assert (m.total, m.completed, m.failed, m.cancelled) == (6, 4, 1, 1)
    finally:
        await executor.stop(drain_timeout_s=2)

    await log.until(
        lambda cs: len([c for c in cs if isinstance(c, ReleaseSession)]) == 2, "released"
    )
    assert log.of(ReportResult, task_id="t2") == []
    assert log.of(TaskStarted, task_id="t-other") == []
    # Commands are keyed by client_id, so one client's commands share one partition.
    c1_partitions = {
        log.partition_of[id(c)] for c in log.commands if getattr(c, "client_id", "") == "c1"
    }
    assert len(c1_partitions) == 1
    await log.stop()

    # The pool offset was committed past the finished record.
    probe = AIOKafkaConsumer(**consumer_kwargs(settings, f"{settings.topic_prefix}-pool"))
    await probe.start()
    try:
        topic = settings.topic("pool")
        committed = {
            p: await probe.committed(TopicPartition(topic, p))
            for p in await topic_partitions(probe, topic) or set()
        }
    finally:
        await probe.stop()
    assert sorted(v for v in committed.values() if v) == [1]


async def test_a_full_queue_pauses_consumption_without_dropping(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    log = CommandLog(settings)
    await log.start()
    work = Work()
    executor = Executor(
        settings,
        sessions=[SessionSpec("s1", client_id="c1", agent_id="a1")],
        handlers={"work": work},
        concurrency=1,
        queue_size=1,
    )
    await executor.start()
    try:
        await log.until(lambda cs: bool(log.of(RegisterSession)), "registered")
        for i in range(6):
            await produce(
                settings, "assignments", "s1", task(f"q{i}", "s1", "c1", i + 1, gate=True)
            )
        for _ in range(300):
            if executor.paused:
                break
            await asyncio.sleep(0.02)
        assert executor.paused
        m = executor.metrics()
        assert (m.running, m.queued_jobs) == (1, 1)
        assert log.of(ReportResult) == []
        work.gate.set()
        await log.until(lambda cs: len(log.of(ReportResult)) == 6, "six results")
        assert sorted(r.task_id for r in log.of(ReportResult) if r.success) == [
            f"q{i}" for i in range(6)
        ]
        assert not executor.paused
    finally:
        await executor.stop(drain_timeout_s=2)
        await log.stop()


async def test_start_fails_clearly_when_the_topics_do_not_exist(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()  # no ensure_topics
    executor = Executor(
        settings,
        sessions=[SessionSpec("s1", client_id="c1", agent_id="a1")],
        handlers={"work": Work()},
        topic_wait_s=0.3,
    )
    with pytest.raises(ExecutorError, match=r"topic .*\.assignments does not exist"):
        await executor.start()
    await executor.stop()  # nothing to stop; must not hang or raise


def test_executor_rejects_a_configuration_with_nothing_to_serve(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ExecutorError, match="nothing to serve"):
        Executor(make_settings(), handlers={})
    with pytest.raises(ExecutorError, match="unique"):
        Executor(
            make_settings(),
            handlers={},
            sessions=[SessionSpec("s", "c", "a"), SessionSpec("s", "c", "a")],
        )
