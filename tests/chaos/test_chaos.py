"""Chaos: SIGKILL every part under a steady load, freeze the broker, then check from the logs
that nothing was lost or done twice.

One run of the whole stack as OS processes (processor, delay agent, projector + view, two
executors), a steady load of tasks from the client SDK and, during it, in this order:
SIGKILL the processor (restarted), SIGKILL the delay agent (restarted), SIGKILL the processor
again, SIGKILL the projector/view (restarted), SIGKILL an executor (restarted), freeze the
broker for 10 s (SIGSTOP/SIGCONT), SIGKILL the processor a third time. Then the load stops,
every accepted task must become terminal within a bound, and the invariants are checked on
what the processes wrote:

1. every accepted task (``task.accepted`` in ``task.events``) ends in exactly one terminal
   state, and it is the one its handler dictates (see ``tests/chaos/handlers.py``);
2. no (task, attempt) appears twice on ``task.completed``; every completed task is there once;
3. the projection served over HTTP (``/status``, every row of ``/tasks``) equals a fold of
   the event log done here;
4. no process the test started is left running.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from bench.processes import ProcessStack
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import events as ev
from schemas.codec import CODEC
from streams.client import TaskstreamClient
from streams.errors import BrokerError
from streams.kafka import consumer_kwargs
from streams.kafka.reader import KafkaLogReader
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.chaos.conftest import chaos_broker
from tests.chaos.handlers import OPERATIONS, always_fails

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

CLIENTS = ("chaos_client_1", "chaos_client_2", "chaos_client_3")
RATE_PER_S = 20
LOAD_S = 75.0
DRAIN_TIMEOUT_S = 120.0
TERMINAL = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled, ev.TaskRejected)

ENV = {
    # Assignments lost with a killed executor time out and take the retry path.
    "TASKSTREAM_DEFAULT_TIMEOUT_MS": "4000",
    "TASKSTREAM_SESSION_STALE_MS": "60000",
    "TASKSTREAM_MAX_RETRIES": "3",
    "TASKSTREAM_LOG_LEVEL": "INFO",
}


def build_stack(workdir: Path) -> ProcessStack:
    stack = ProcessStack(workdir, env=ENV, broker_kind=chaos_broker())
    stack.add("processor", ["processor"])
    stack.add("delay", ["delay"])
    stack.add("view", ["view"])
    handlers = ["--handlers", "tests.chaos.handlers", "--pool"]
    stack.add(
        "worker-a",
        [
            "worker",
            *handlers,
            "--agent-id",
            "agent_a",
            "--session",
            f"chaos_session_1:{CLIENTS[0]}:8",
            "--session",
            f"chaos_session_2:{CLIENTS[1]}:8",
        ],
    )
    stack.add(
        "worker-b",
        [
            "worker",
            *handlers,
            "--agent-id",
            "agent_b",
            "--session",
            f"chaos_session_3:{CLIENTS[2]}:8",
        ],
    )
    return stack


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


async def load_with_faults_then_drain(
    settings: Settings,
    load: SteadyLoad,
    faults_done: Awaitable[None],
    *,
    load_s: float,
    quiet_s: float,
    no_part_died: Callable[[str], None],
) -> None:
    """Run ``load`` while ``faults_done`` injects its faults (within ``load_s``), keep loading
    for ``quiet_s`` after them, stop, then wait until every accepted task is terminal (read
    from the event log itself)."""
    loading = asyncio.create_task(load.run())
    try:
        await asyncio.wait_for(faults_done, load_s)
        await asyncio.sleep(max(0.0, quiet_s))
        no_part_died("under load")
    finally:
        load.stop.set()
        await asyncio.wait_for(loading, 60)
    assert len(load.acked) > RATE_PER_S * load_s * 0.5, "the load did not get through"

    async def all_terminal() -> bool:
        no_part_died("while draining")
        accepted, terminal = terminal_by_task(await read_log(settings, "events"))
        return bool(accepted) and all(terminal.get(t) for t in accepted)

    await until(all_terminal, DRAIN_TIMEOUT_S, "every accepted task terminal")


async def faults(stack: ProcessStack, log: list[str]) -> None:
    """The fault schedule, relative to the start of the load."""
    t0 = time.monotonic()

    async def at(second: float) -> None:
        await asyncio.sleep(max(0.0, t0 + second - time.monotonic()))

    async def kill_and_restart(name: str) -> None:
        pid = stack.parts[name].pid
        code = await asyncio.to_thread(stack.kill, name)
        log.append(f"{time.monotonic() - t0:5.1f}s SIGKILL {name} pid {pid} -> exit {code}")
        stack.restart(name)

    for second, name in ((6, "processor"), (13, "delay"), (20, "processor"), (27, "view")):
        await at(second)
        await kill_and_restart(name)
    await at(34)
    await kill_and_restart("worker-a")
    await at(42)
    assert stack.broker is not None
    stack.broker.pause()
    log.append(f"{time.monotonic() - t0:5.1f}s SIGSTOP broker")
    await asyncio.sleep(10)
    stack.broker.resume()
    log.append(f"{time.monotonic() - t0:5.1f}s SIGCONT broker")
    await at(60)
    await kill_and_restart("processor")


async def view_json(stack: ProcessStack, path: str) -> dict[str, Any]:
    body, _ = await asyncio.to_thread(stack.view_get, path)
    return body


async def view_answers(stack: ProcessStack, sessions: int) -> bool:
    try:
        status = await view_json(stack, "/status")
    except (OSError, ValueError):
        return False
    return int(status["active_sessions"]) >= sessions


async def all_view_tasks(stack: ProcessStack) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    cursor = ""
    while True:
        page = await view_json(stack, f"/tasks?limit=1000{cursor}")
        for row in page["items"]:
            rows[row["task_id"]] = row
        if not page["next_cursor"]:
            return rows
        cursor = f"&cursor={page['next_cursor']}"


async def test_no_task_lost_or_done_twice_when_parts_are_killed(
    chaos_workdir: Path, process_stacks: list[ProcessStack]
) -> None:
    stack = build_stack(chaos_workdir)
    process_stacks.append(stack)
    await asyncio.to_thread(stack.start_broker)
    settings = stack.settings()
    await ensure_topics(settings)
    for name in stack.parts:
        stack.start(name)

    def no_part_died(what: str) -> None:
        dead = stack.dead_parts()
        assert not dead, f"parts exited on their own ({what}): {dead}"

    async def ready() -> bool:
        no_part_died("while starting")
        return await view_answers(stack, sessions=3)

    await until(ready, 60, "the view showing the three executor sessions")

    load = SteadyLoad(settings)
    fault_log: list[str] = []
    try:
        await load_with_faults_then_drain(
            settings,
            load,
            faults(stack, fault_log),
            load_s=LOAD_S,
            quiet_s=LOAD_S - 62,
            no_part_died=no_part_died,
        )
    finally:
        print("\n".join(fault_log))

    # Quiesce: only the processor writes the event log; stop it (and what feeds it) so the
    # log is final, then compare everything against it.
    for name in ("worker-a", "worker-b", "delay", "processor"):
        code = await asyncio.to_thread(stack.kill, name, signal.SIGTERM)
        assert code == 0, f"{name} exited with {code} on SIGTERM"
    events = await assert_each_task_ended_once(settings, load.acked)

    # 3. The projection equals a fold of the event log.
    reference = MemorySource()
    for partition, offset, event in events:
        reference.feed(event, partition, offset)
    reference.flush()
    expected = ProjectionReader(reference)
    ends = {str(p): 0 for p in range(settings.partitions)}
    for partition, offset, _ in events:
        ends[str(partition)] = max(ends[str(partition)], offset + 1)

    async def caught_up() -> bool:
        status = await view_json(stack, "/status")
        return bool(status["projection"]["as_of_offsets"] == ends)

    await until(caught_up, 60, "the view folding the whole event log")
    status = await view_json(stack, "/status")
    status.pop("projection")
    assert status == expected.status().model_dump(mode="json")
    rows = await all_view_tasks(stack)
    reference_rows = {
        row.task_id: row.model_dump(mode="json") for row in expected.tasks(limit=100_000).items
    }
    assert rows.keys() == reference_rows.keys()
    differing = [t for t in rows if rows[t] != reference_rows[t]]
    assert not differing, f"view rows differ from the fold: {differing[:10]}"

    # 4. No process left running.
    codes = stack.stop_parts()
    assert codes["view"] == 0, f"the view exited with {codes['view']} on SIGTERM"
    assert stack.broker is not None
    stack.broker.stop()
    assert stack.left_running() == []
