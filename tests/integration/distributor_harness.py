"""Helpers for the distributor integration tests: the processor (in-process or as its own OS
process), a delay agent, a scripted fake executor speaking only through the public topics,
and readers of the output topics decoded with the codec.

Run as a process: ``python -m tests.integration.distributor_harness SETTINGS_JSON`` runs the
distributor processor with those settings until SIGTERM (or dies with SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from schemas import commands as c
from schemas import events as ev
from schemas.codec import CODEC
from schemas.records import Assignment
from streams.delay import DelayAgent
from streams.distributor import Distributor
from streams.kafka.reader import KafkaLogReader
from streams.kafka.topics import ensure_topics
from streams.runtime import run_processor
from streams.runtime.causation import cause_of
from streams.settings import Settings
from tests.support.task_configs import valid_payload

# Short group timings and a fast tick: the embedded broker settles groups slowly otherwise.
FAST: dict[str, Any] = {
    "kafka_session_timeout_ms": 3000,
    "kafka_heartbeat_interval_ms": 300,
    "tick_interval_ms": 50,
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def layout(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    """Isolated settings (fast group timings unless overridden) with every topic created."""
    settings: Settings = make_settings(**{**FAST, **overrides})
    await ensure_topics(settings)
    return settings


# ---- processor and delay agent ------------------------------------------------------------


class InProcessProcessor:
    """The distributor processor as a task of the test's event loop."""

    def __init__(self, settings: Settings, name: str = "processor") -> None:
        self.settings = settings
        self.name = name
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> InProcessProcessor:
        self.task = asyncio.create_task(
            run_processor(
                Distributor, self.settings, name=self.name, stop=self.stop_event, ready=self.ready
            )
        )
        waiter = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait(
            {waiter, self.task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if self.task in done:
            waiter.cancel()
            self.task.result()
            raise AssertionError("the processor stopped before it was ready")
        if waiter not in done:
            waiter.cancel()
            raise AssertionError(f"the processor was not ready within {timeout_s}s")
        return self

    def check(self) -> None:
        """Raise the processor's error if it died."""
        if self.task is not None and self.task.done():
            self.task.result()
            raise AssertionError("the processor stopped")

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 20)


class ProcessorProcess:
    """The distributor processor as its own OS process (``python -m`` this module)."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessorProcess:
        root = Path(__file__).resolve().parents[2]
        values = self.settings.model_dump(mode="json", exclude_none=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.distributor_harness", json.dumps(values)],
            cwd=root,
            env=dict(os.environ),
            stderr=open(self.log_path, "ab"),  # noqa: SIM115 - handed to the child
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return int(self.proc.wait(timeout=30))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class DelayRunner:
    """A delay agent as a task of the test's event loop."""

    def __init__(self, settings: Settings) -> None:
        self.agent = DelayAgent(settings)
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> DelayRunner:
        self.task = asyncio.create_task(self.agent.run(self.stop_event))
        await asyncio.wait_for(self.agent.ready.wait(), timeout_s)
        return self

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 20)


# ---- producing commands -------------------------------------------------------------------


class Commands:
    """Produces commands to ``task.commands`` keyed by client id, like an upstream system."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic("commands")
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_idempotence=False,
            linger_ms=2,
        )

    async def __aenter__(self) -> Commands:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, *commands: c.Command) -> None:
        futures = [
            await self.producer.send(
                self.topic, CODEC.encode(command), key=command.client_id.encode()
            )
            for command in commands
        ]
        await asyncio.gather(*futures)

    async def send_raw(self, value: bytes, key: str | None) -> None:
        await self.producer.send_and_wait(
            self.topic, value, key=key.encode() if key is not None else None
        )


def submit(client: str, task_id: str, operation: str, **fields: Any) -> c.SubmitTask:
    """A SubmitTask; without a ``payload``, the operation's valid example config."""
    fields.setdefault("payload", valid_payload(operation))
    return c.SubmitTask(client_id=client, task_id=task_id, operation=operation, **fields)


def register(client: str, session: str, max_concurrent: int = 1, **fields: Any) -> c.Command:
    return c.RegisterSession(
        client_id=client,
        session_id=session,
        agent_id=f"agent-{session}",
        max_concurrent=max_concurrent,
        **fields,
    )


# ---- the fake executor ----------------------------------------------------------------------


@dataclass
class Reply:
    """How the fake executor answers one assignment."""

    success: bool = True
    error: str | None = None
    delay_s: float = 0.0
    items: dict[str, bool] | None = None  # per-item outcomes of a batch
    output: dict[str, Any] = field(default_factory=dict)


# The script decides per assignment: a Reply, or None for silence (no result at all).
Script = Callable[[Assignment], Reply | None]


def always_succeed(assignment: Assignment) -> Reply | None:
    return Reply(output={"ok": True})


@dataclass
class Received:
    assignment: Assignment
    topic: str
    timestamp: int  # record CreateTime (set by the processor's producer)
    wall_ms: int


class FakeExecutor:
    """Reads every partition of ``task.assignments`` and ``task.pool`` (manual assignment, from
    the beginning: topics are fresh per test) and answers with ``ReportResult`` commands that
    carry the assignment's fencing token."""

    def __init__(self, settings: Settings, script: Script = always_succeed) -> None:
        self.settings = settings
        self.script = script
        self.received: list[Received] = []
        self.answered: list[c.ReportResult] = []
        self._topics = [settings.topic("assignments"), settings.topic("pool")]
        self._commands = settings.topic("commands")
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,  # answer promptly: the broker may hold a fetch until then
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_idempotence=False,
            linger_ms=2,
        )
        self._task: asyncio.Task[None] | None = None
        self._replies: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.paused = False  # while True, new assignments are recorded but not answered

    async def start(self) -> FakeExecutor:
        await self._producer.start()
        await self._consumer.start()
        tps = [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in range(self.settings.partitions)
        ]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for reply in list(self._replies):
            reply.cancel()
        await self._consumer.stop()
        await self._producer.stop()

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            wall = now_ms()
            at_once: list[c.ReportResult] = []
            for tp, records in batch.items():
                for record in records:
                    assignment = CODEC.decode_as(record.value, Assignment)
                    self.received.append(Received(assignment, tp.topic, record.timestamp, wall))
                    if assignment.kind != "cancel" and not self.paused:
                        reply = self.script(assignment)
                        if reply is not None and not reply.delay_s:
                            at_once.append(result_for(assignment, reply))
                        else:
                            self.answer(assignment, reply)
            if at_once:
                await self.send_many(at_once)
            if batch:
                self._changed.set()

    def answer(self, assignment: Assignment, reply: Reply | None) -> None:
        if reply is None:
            return
        task = asyncio.create_task(self._reply(assignment, reply))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def send_many(self, commands: Sequence[c.Command]) -> None:
        for command in commands:
            if isinstance(command, c.ReportResult):
                self.answered.append(command)
        futures = [
            await self._producer.send(
                self._commands, CODEC.encode(command), key=command.client_id.encode()
            )
            for command in commands
        ]
        await asyncio.gather(*futures)

    async def _reply(self, assignment: Assignment, reply: Reply) -> None:
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        await self.send(result_for(assignment, reply))

    async def send(self, command: c.Command) -> None:
        if isinstance(command, c.ReportResult):
            self.answered.append(command)
        await self._producer.send_and_wait(
            self._commands, CODEC.encode(command), key=command.client_id.encode()
        )

    def work(self) -> list[Assignment]:
        """Task and batch assignments received so far, in arrival order."""
        return [r.assignment for r in self.received if r.assignment.kind != "cancel"]

    def cancels(self) -> list[Assignment]:
        return [r.assignment for r in self.received if r.assignment.kind == "cancel"]

    async def wait_for(
        self, check: Callable[[FakeExecutor], bool], timeout_s: float = 30.0
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not check(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"executor condition not met within {timeout_s}s "
                    f"({len(self.received)} assignments received)"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.2)


def result_for(assignment: Assignment, reply: Reply) -> c.ReportResult:
    items: list[c.ItemResult] = []
    if assignment.kind == "batch":
        outcomes = reply.items or {}
        for item in assignment.items:
            ok = outcomes.get(item.task_id, reply.success)
            items.append(
                c.ItemResult(
                    task_id=item.task_id,
                    success=ok,
                    output={"item": item.task_id} if ok else {},
                    error=None if ok else (reply.error or "item failed"),
                )
            )
    return c.ReportResult(
        client_id=assignment.client_id,
        task_id=assignment.task_id if assignment.kind == "task" else None,
        batch_id=assignment.batch_id if assignment.kind == "batch" else None,
        session_id=assignment.session_id,
        fencing_token=assignment.fencing_token,
        success=reply.success,
        output=reply.output if reply.success else {},
        error=None if reply.success else (reply.error or "executor failure"),
        items=items,
        execution_time_ms=1,
    )


# ---- reading outcomes -----------------------------------------------------------------------


@dataclass
class Rec:
    """A decoded record of an output topic."""

    value: Any
    key: bytes | None
    partition: int
    offset: int
    timestamp: int
    headers: tuple[tuple[str, bytes], ...]

    @property
    def cause(self) -> Any:
        return cause_of(self.headers, self.partition)


async def read_topic(settings: Settings, logical: str, decode: bool = True) -> list[Rec]:
    """Every record of ``<prefix>.<logical>`` up to its end, partition by partition, in order.

    Values are decoded with the codec (undecodable ones are kept as bytes)."""
    topic = settings.topic(logical)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        reader = KafkaLogReader(consumer)
        out: list[Rec] = []
        for partition in range(settings.partitions):
            end = await reader.end_offset(topic, partition)
            async for r in reader.read(topic, partition, 0, end):
                value: Any = r.value
                if decode:
                    try:
                        value = CODEC.decode(r.value)
                    except Exception:
                        value = r.value
                out.append(
                    Rec(value, r.key, partition, r.offset, r.timestamp, tuple(r.headers or ()))
                )
        return out
    finally:
        await consumer.stop()


async def read_events(settings: Settings) -> list[Rec]:
    return await read_topic(settings, "events")


def values(
    records: Iterable[Rec], kind: type[BaseModel] | tuple[type[BaseModel], ...]
) -> list[Any]:
    return [r.value for r in records if isinstance(r.value, kind)]


async def wait_for_events(
    settings: Settings,
    check: Callable[[list[Any]], bool],
    timeout_s: float = 30.0,
    processor: Any = None,
) -> list[Any]:
    """Poll the event log until ``check(events)`` holds; returns the decoded events."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = [r.value for r in await read_events(settings)]
        if check(events):
            return events
        if processor is not None and hasattr(processor, "check"):
            processor.check()
        if time.monotonic() > deadline:
            kinds: dict[str, int] = {}
            for e in events:
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
            raise AssertionError(f"event-log condition not met within {timeout_s}s: {kinds}")
        await asyncio.sleep(0.3)


class EventTail:
    """Follows every partition of the event log in the background, decoding as it goes (for
    long runs, where re-reading the whole log on every check would cost too much)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events: list[Any] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> EventTail:
        await self._consumer.start()
        topic = self.settings.topic("events")
        tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=20_000)
            for records in batch.values():
                self.events.extend(CODEC.decode(r.value) for r in records)

    async def wait(
        self, check: Callable[[list[Any]], bool], timeout_s: float, interval_s: float = 0.5
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not check(self.events):
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"event-log condition not met within {timeout_s}s")
            await asyncio.sleep(interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


def of_task(events: Sequence[Any], task_id: str) -> list[Any]:
    return [e for e in events if getattr(e, "task_id", None) == task_id]


TERMINAL_EVENTS = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled)


def terminal_states(events: Iterable[Any]) -> dict[str, list[str]]:
    """Task id -> the terminal outcomes recorded for it (reviewer rejections included)."""
    out: dict[str, list[str]] = {}
    for e in events:
        if isinstance(e, TERMINAL_EVENTS):
            out.setdefault(e.task_id, []).append(e.TYPE)
        elif isinstance(e, ev.TaskRejected) and e.command == "RejectTask":
            out.setdefault(e.task_id, []).append("task.rejected")
    return out


def check_causation(records: Sequence[Rec]) -> None:
    """Every event carries a causation header; no (group, index) appears twice; groups are
    complete."""
    seen: set[tuple[Any, ...]] = set()
    groups: dict[tuple[Any, ...], set[int]] = {}
    for r in records:
        cause = r.cause
        assert cause is not None, f"event without causation header at {r.partition}@{r.offset}"
        ident = (r.partition, *cause.group, cause.index)
        assert ident not in seen, f"duplicate event {ident}"
        seen.add(ident)
        groups.setdefault((r.partition, *cause.group, cause.count), set()).add(cause.index)
    for (*group, count), indexes in groups.items():
        assert indexes == set(range(count)), f"incomplete group {group}: {sorted(indexes)}"


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.2)


# ---- everything at once -----------------------------------------------------------------------


@dataclass
class Rig:
    """A processor, a delay agent, a fake executor and a command producer for one test."""

    settings: Settings
    processor: InProcessProcessor
    delay: DelayRunner | None
    executor: FakeExecutor
    commands: Commands

    async def send(self, *commands: c.Command) -> None:
        await self.commands.send(*commands)

    async def events(self) -> list[Any]:
        return [r.value for r in await read_events(self.settings)]

    async def wait(self, check: Callable[[list[Any]], bool], timeout_s: float = 30.0) -> list[Any]:
        return await wait_for_events(self.settings, check, timeout_s, self.processor)


@contextlib.asynccontextmanager
async def rig(
    make_settings: Callable[..., Settings],
    script: Script = always_succeed,
    *,
    delay: bool = True,
    **overrides: Any,
) -> Any:
    """Start everything a distributor scenario needs (processor and delay agent join their
    groups concurrently); stop it all afterwards, also when the test fails."""
    settings = await layout(make_settings, **overrides)
    processor = InProcessProcessor(settings)
    runner = DelayRunner(settings) if delay else None
    executor = FakeExecutor(settings, script)
    commands = Commands(settings)
    started: list[Any] = []
    try:
        starts: list[Awaitable[Any]] = [processor.start(), executor.start(), commands.__aenter__()]
        if runner is not None:
            starts.append(runner.start())
        await asyncio.gather(*starts)
        started = [commands, executor, runner, processor]
        yield Rig(settings, processor, runner, executor, commands)
    finally:
        for part in started or [commands, executor, runner, processor]:
            if part is None:
                continue
            with contextlib.suppress(Exception):
                if isinstance(part, Commands):
                    await part.__aexit__(None, None, None)
                else:
                    await part.stop()


# ---- process entry point --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from streams.runtime import main_process

    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s [{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    settings = Settings(**json.loads(args[0]))
    return main_process(Distributor, settings, name="processor")


if __name__ == "__main__":
    sys.exit(main())
