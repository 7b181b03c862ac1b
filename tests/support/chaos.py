"""Helpers of the chaos suite (``tests/chaos``): the steady load, the event log read back, the
checks that every accepted task ended once as its handler dictates, the load-under-faults-
then-drain loop both chaos tests run, and the waits that pace a fault schedule on conditions
(a restarted part back at work, the load flowing again) rather than on fixed seconds."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.processes import ProcessStack
from schemas import events as ev
from schemas.codec import CODEC
from streams.client import TaskstreamClient
from streams.errors import BrokerError
from streams.kafka import consumer_kwargs
from streams.kafka.reader import KafkaLogReader
from streams.settings import Settings
from tests.chaos.handlers import OPERATIONS, always_fails

CLIENTS = ("chaos_client_1", "chaos_client_2", "chaos_client_3")


RATE_PER_S = 20


DRAIN_TIMEOUT_S = 120.0


GAP_S = 2.0
"""Load on the whole, healed stack between one fault and the next: a fault schedule waits
until the part it restarted is back at work, then this long, before its next fault."""


BACK_TIMEOUT_S = 60.0


TERMINAL = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled, ev.TaskRejected)


ENV = {
    # Assignments lost with a killed executor time out and take the retry path.
    "TASKSTREAM_DEFAULT_TIMEOUT_MS": "4000",
    "TASKSTREAM_SESSION_STALE_MS": "60000",
    "TASKSTREAM_MAX_RETRIES": "3",
    "TASKSTREAM_LOG_LEVEL": "INFO",
}


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.5)


class SteadyLoad:
    """Submits ``RATE_PER_S`` tasks a second over ``clients``; remembers which submits the
    broker acknowledged."""

    def __init__(
        self, settings: Settings, clients: tuple[str, ...] = CLIENTS, prefix: str = "chaos"
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.prefix = prefix
        self.acked: set[str] = set()
        self.unsure: set[str] = set()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with TaskstreamClient(self.settings) as client:
            started, n = time.monotonic(), 0

            async def one(i: int) -> None:
                task_id = f"{self.prefix}-{i:05d}"
                try:
                    await client.submit(
                        self.clients[i % len(self.clients)],
                        OPERATIONS[i % len(OPERATIONS)],
                        {"i": i},
                        task_id=task_id,
                    )
                except BrokerError:
                    self.unsure.add(task_id)  # may or may not have reached the log
                else:
                    self.acked.add(task_id)

            while not self.stop.is_set():
                due = int(RATE_PER_S * (time.monotonic() - started)) - n
                if due > 0:
                    await asyncio.gather(*(one(n + k) for k in range(due)))
                    n += due
                else:
                    await asyncio.sleep(0.05)


async def read_log(settings: Settings, name: str) -> list[tuple[int, int, Any]]:
    """Every record of a topic, decoded: (partition, offset, model)."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    await consumer.start()
    try:
        reader = KafkaLogReader(consumer)
        topic = settings.topic(name)
        out = []
        for p in range(settings.partitions):
            end = await reader.end_offset(topic, p)
            async for record in reader.read(topic, p, 0, end):
                out.append((p, record.offset, CODEC.decode(record.value)))
        return out
    finally:
        await consumer.stop()


def terminal_by_task(events: list[tuple[int, int, Any]]) -> tuple[set[str], dict[str, list[Any]]]:
    accepted: set[str] = set()
    terminal: dict[str, list[Any]] = defaultdict(list)
    for _, _, event in events:
        if isinstance(event, ev.TaskAccepted):
            accepted.add(event.task_id)
        elif isinstance(event, TERMINAL):
            terminal[event.task_id].append(event)
    return accepted, terminal


def as_dictated(task_id: str, outcome: Any) -> bool:
    """The handler decides the outcome; faults (lost or timed-out attempts) may only use up a
    succeeding task's retries, which then shows in its attempt history."""
    if always_fails(task_id):
        return isinstance(outcome, ev.TaskFailed)
    if isinstance(outcome, ev.TaskCompleted):
        return True
    return isinstance(outcome, ev.TaskFailed) and any(
        "fails on" not in a.error for a in outcome.attempts
    )


async def assert_each_task_ended_once(
    settings: Settings, acked: set[str]
) -> list[tuple[int, int, Any]]:
    """Invariants 1 and 2 on the final logs; returns the event log."""
    events = await read_log(settings, "events")
    accepted, terminal = terminal_by_task(events)

    # 1. Exactly one terminal state per accepted task, the one its handler dictates.
    assert acked <= accepted, f"acknowledged but never accepted: {acked - accepted}"
    twice = {t: [type(e).__name__ for e in es] for t, es in terminal.items() if len(es) != 1}
    assert not twice, f"tasks with more than one terminal event: {dict(list(twice.items())[:10])}"
    wrong = {
        t: type(terminal[t][0]).__name__ for t in accepted if not as_dictated(t, terminal[t][0])
    }
    assert not wrong, (
        f"tasks that ended in the wrong terminal state: {dict(list(wrong.items())[:10])}"
    )

    # 2. task.completed: one record per (task, attempt), and one per completed task.
    completed = [m for _, _, m in await read_log(settings, "completed")]
    per_attempt = Counter((m.task_id, m.attempt) for m in completed)
    duplicated = {k: n for k, n in per_attempt.items() if n > 1}
    assert not duplicated, f"task.completed repeats (task, attempt): {list(duplicated)[:10]}"
    completed_tasks = {t for t in accepted if isinstance(terminal[t][0], ev.TaskCompleted)}
    assert {m.task_id for m in completed} == completed_tasks
    return events


def log_mark(stack: ProcessStack, name: str) -> int:
    """The current end of a part's log (it is appended across restarts)."""
    path = stack.logs / f"{name}.log"
    return path.stat().st_size if path.exists() else 0


def log_since(stack: ProcessStack, name: str, since: int) -> str:
    """A part's log after ``since`` (a :func:`log_mark`)."""
    path = stack.logs / f"{name}.log"
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace")


def log_count(stack: ProcessStack, name: str, needle: str, since: int) -> int:
    """How many times ``needle`` appears in a part's log after ``since``."""
    return log_since(stack, name, since).count(needle)


def recovered_partitions(stack: ProcessStack, name: str, since: int) -> set[int]:
    """The partitions a processor logged as recovered after ``since``."""
    return {
        int(line.split("partition ", 1)[1].split()[0])
        for line in log_since(stack, name, since).splitlines()
        if " recovered: " in line
    }


async def logged(
    stack: ProcessStack, name: str, needle: str, since: int, what: str, count: int = 1
) -> None:
    """Wait until ``name`` has logged ``needle`` ``count`` times after ``since``."""

    async def seen() -> bool:
        return log_count(stack, name, needle, since) >= count

    await until(seen, BACK_TIMEOUT_S, what)


async def flowing(settings: Settings, load: SteadyLoad, before: set[str], what: str) -> None:
    """Wait until a task the broker acknowledged after ``before`` was taken is terminal in the
    event log: the whole pipeline (client, processor, executor) works again."""

    async def ended() -> bool:
        new = load.acked - before
        if not new:
            return False
        _, terminal = terminal_by_task(await read_log(settings, "events"))
        return any(terminal.get(t) for t in new)

    await until(ended, BACK_TIMEOUT_S, what)


async def load_with_faults_then_drain(
    settings: Settings,
    load: SteadyLoad,
    faults_done: Awaitable[None],
    *,
    faults_bound_s: float,
    quiet_s: float,
    no_part_died: Callable[[str], None],
) -> None:
    """Run ``load`` while ``faults_done`` injects its faults (within ``faults_bound_s``, only
    against a hang), keep loading for ``quiet_s`` after them, stop, then wait until every
    accepted task is terminal (read from the event log itself)."""
    loading = asyncio.create_task(load.run())
    started = time.monotonic()
    try:
        await asyncio.wait_for(faults_done, faults_bound_s)
        await asyncio.sleep(max(0.0, quiet_s))
        no_part_died("under load")
    finally:
        load.stop.set()
        await asyncio.wait_for(loading, 60)
    load_s = time.monotonic() - started
    assert len(load.acked) > RATE_PER_S * load_s * 0.5, "the load did not get through"

    async def all_terminal() -> bool:
        no_part_died("while draining")
        accepted, terminal = terminal_by_task(await read_log(settings, "events"))
        return bool(accepted) and all(terminal.get(t) for t in accepted)

    await until(all_terminal, DRAIN_TIMEOUT_S, "every accepted task terminal")
