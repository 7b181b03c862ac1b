"""The soak's stack, handlers and load: four clients, one session of capacity 64 each plus the
pool, the soak's mix of session, batched and pool operations, a paced load through the client
SDK, the log offsets it is measured by, and the burst that measures the maximum rate.

The executor loads this module's ``HANDLERS`` (``--handlers bench.soak_load``).
"""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.processes import ProcessStack
from streams.executor.context import TaskContext
from streams.kafka import consumer_kwargs
from streams.kafka.reader import KafkaLogReader
from streams.settings import Settings

# --- soak handlers (``--handlers bench.soak_load``) --------------------------------------------

SOAK_FAILING_PERCENT = 1
"""Share of soak tasks (by a hash of the task id) that fail on every attempt: they take the
retry path through the delay tiers and end as dead letters."""


def soak_fails(task_id: str, percent: int = SOAK_FAILING_PERCENT) -> bool:
    return zlib.crc32(task_id.encode()) % 100 < percent


async def _soak_handler(ctx: TaskContext) -> dict[str, Any]:
    if soak_fails(ctx.task_id):
        raise RuntimeError(f"soak task {ctx.task_id} fails on every attempt")
    await asyncio.sleep(0.002)
    return {"ok": True}


HANDLERS = {
    "conversation_send": _soak_handler,
    "tag_add": _soak_handler,
    "integration_sync": _soak_handler,
}

# One client per partition of the default 4: the Kafka default partitioner (murmur2 of the key)
# sends these to partitions 0, 1, 2 and 3 (soak_client_1..4 would use only two of them).
SOAK_CLIENTS = ("soak_client_10", "soak_client_2", "soak_client_7", "soak_client_1")
# (operation, share): a session task, a batchable one, a pool one.
SOAK_MIX = (("conversation_send", 7), ("tag_add", 2), ("integration_sync", 1))


def soak_stack(
    workdir: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    broker_kind: str = "kafka",
    handlers: str = "bench.soak_load",
) -> ProcessStack:
    """The soak's stack: processor, delay agent, view and one executor serving the four
    clients' sessions (64 each) and the pool, with ``handlers`` (a module of ``HANDLERS``)."""
    env = {
        "TASKSTREAM_DEFAULT_TIMEOUT_MS": "30000",
        "TASKSTREAM_SESSION_STALE_MS": "60000",
        # Quiet by default; TASKSTREAM_LOG_LEVEL=INFO (or DEBUG) in the soak's environment
        # reaches the parts' logs.
        "TASKSTREAM_LOG_LEVEL": os.environ.get("TASKSTREAM_LOG_LEVEL", "WARNING"),
        **(extra_env or {}),
    }
    stack = ProcessStack(workdir, env=env, broker_kind=broker_kind)
    stack.add("processor", ["processor"])
    stack.add("delay", ["delay"])
    stack.add("view", ["view"])
    # 256 for the four sessions' 64 each, 256 for the pool (what the sessions leave).
    worker = ["worker", "--handlers", handlers, "--pool", "--concurrency", "512"]
    for i, client in enumerate(SOAK_CLIENTS):
        worker += ["--session", f"soak_session_{i + 1}:{client}:64"]
    stack.add("worker", worker)
    return stack


# --- load, sampling --------------------------------------------------------------------------


class Load:
    """Submits tasks at a paced rate with the client SDK until stopped."""

    def __init__(self, settings: Settings, rate_per_s: float, tag: str) -> None:
        self.settings = settings
        self.rate = rate_per_s
        self.tag = tag
        self.submitted = 0
        self.errors = 0
        self.first_submit: float | None = None  # time.monotonic() of the first submit
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def _task(self, n: int) -> tuple[str, str, str]:
        client = SOAK_CLIENTS[n % len(SOAK_CLIENTS)]
        slot = n % sum(share for _, share in SOAK_MIX)
        operation = SOAK_MIX[-1][0]
        for name, share in SOAK_MIX:
            if slot < share:
                operation = name
                break
            slot -= share
        return client, operation, f"{self.tag}-{n:08d}"

    async def run(self, limit: int | None = None) -> int:
        """Submit until stopped (or ``limit``). A paced load spaces its submits evenly, one
        every ``1 / rate`` seconds, as the BullMQ and Celery peers do (``bench/peers``); each
        submit goes on while the earlier ones wait for their acknowledgement. An unpaced one
        (rate 0) submits 500 at a time, as fast as the producer takes them."""
        from streams.client import TaskstreamClient
        from streams.errors import BrokerError

        async with TaskstreamClient(self.settings) as client:

            async def one(n: int) -> None:
                client_id, operation, task_id = self._task(n)
                try:
                    await client.submit(client_id, operation, {"n": n}, task_id=task_id)
                except BrokerError:
                    self.errors += 1

            in_flight: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            while not self._stop.is_set() and (limit is None or self.submitted < limit):
                if self.rate <= 0:
                    count = 500 if limit is None else min(500, limit - self.submitted)
                    if self.first_submit is None:
                        self.first_submit = time.monotonic()
                    first = self.submitted
                    self.submitted += count
                    await asyncio.gather(*(one(first + i) for i in range(count)))
                    continue
                now = time.monotonic()
                due = int(self.rate * (now - started)) + 1 - self.submitted
                if limit is not None:
                    due = min(due, limit - self.submitted)
                if due <= 0:
                    await asyncio.sleep(self.submitted / self.rate - (now - started))
                    continue
                if self.first_submit is None:
                    self.first_submit = now
                for _ in range(due):
                    submit = asyncio.ensure_future(one(self.submitted))
                    in_flight.add(submit)
                    submit.add_done_callback(in_flight.discard)
                    self.submitted += 1
                await asyncio.sleep(0)  # let the submits go out before the next is due
            if in_flight:
                await asyncio.gather(*in_flight)
        return self.submitted


class LogOffsets:
    """End offsets and a consumer group's committed offsets, for lag and outcome counts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: Any = None
        self._group: Any = None

    async def __aenter__(self) -> LogOffsets:
        self._consumer = AIOKafkaConsumer(**consumer_kwargs(self.settings))
        await self._consumer.start()
        self._group = AIOKafkaConsumer(**consumer_kwargs(self.settings, self.settings.group_id))
        await self._group.start()
        self._reader = KafkaLogReader(self._consumer, stall_timeout_s=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for consumer in (self._consumer, self._group):
            if consumer is not None:
                await consumer.stop()

    async def end(self, name: str) -> int:
        topic = self.settings.topic(name)
        return sum(
            [await self._reader.end_offset(topic, p) for p in range(self.settings.partitions)]
        )

    async def processor_lag(self) -> int:
        """Commands not yet committed by the processor group (its commits are advisory and
        trail the stores by at most one cycle)."""
        topic = self.settings.topic("commands")
        lag = 0
        for p in range(self.settings.partitions):
            end = await self._reader.end_offset(topic, p)
            committed = await self._group.committed(TopicPartition(topic, p))
            lag += end - (committed or 0)
        return lag


async def wait_view(stack: ProcessStack, timeout_s: float = 60.0, sessions: int = 0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        dead = stack.dead_parts()
        if dead:
            raise RuntimeError(f"parts exited while starting: {dead}")
        try:
            body, _ = await asyncio.to_thread(stack.view_get, "/status", 2.0)
            if int(body["active_sessions"]) >= sessions:
                return
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the view did not show {sessions} sessions within {timeout_s}s")
        await asyncio.sleep(0.5)


def start_all(stack: ProcessStack, own_broker: bool = True) -> None:
    """Start the broker (unless the stack's environment names one), the topics, the parts."""
    if own_broker:
        stack.start_broker()
    asyncio.run(_ensure(stack.settings()))
    for name in ("processor", "delay", "view", "worker"):
        stack.start(name)


async def _ensure(settings: Settings) -> None:
    from streams.kafka.topics import ensure_topics

    await ensure_topics(settings)


@dataclass
class Burst:
    """A burst of tasks through the whole stack: completed tasks per second from the first
    submit to the last completion, and the CPU each process spent meanwhile."""

    broker: str
    tasks: int
    seconds: float
    cpu_s: dict[str, float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 else 0.0

    def cpu_per_1000(self) -> dict[str, float]:
        """CPU seconds per 1,000 tasks of every part (the broker too when it is known)."""
        return {n: round(s * 1000 / max(1, self.tasks), 3) for n, s in self.cpu_s.items()}


async def burst(
    stack: ProcessStack,
    tasks: int,
    tag: str = "ramp",
    counts: Callable[[str], bool] | None = None,
    extra_pids: Mapping[str, int] | None = None,
    timeout_s: float = 300.0,
) -> Burst:
    """Submit ``tasks`` as fast as the producer goes and wait until every task ``counts``
    says will complete (default: all but the soak's always-failing share) is on
    ``task.completed``. The stack's parts must be running."""
    from bench.common import cpu_seconds, load_average

    counted = counts or (lambda task_id: not soak_fails(task_id))
    settings = stack.settings()
    pids = {**stack.pids(), **(extra_pids or {})}
    load_before = load_average()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own_before = time.process_time()
    load = Load(settings, 0, tag)
    async with LogOffsets(settings) as offsets:
        baseline = await offsets.end("completed")
        expected = baseline + sum(1 for n in range(tasks) if counted(load._task(n)[2]))
        started = time.monotonic()
        await load.run(limit=tasks)
        deadline = time.monotonic() + timeout_s
        while await offsets.end("completed") < expected:
            if time.monotonic() > deadline or stack.dead_parts():
                raise RuntimeError(f"burst did not complete: {stack.dead_parts()}")
            await asyncio.sleep(0.05)
        # From the first submit (the client connected: its start is not the stack's time).
        elapsed = time.monotonic() - (load.first_submit or started)
    cpu = {
        name: round(after - before, 2)
        for name, pid in pids.items()
        if (before := cpu_before[name]) is not None and (after := cpu_seconds(pid)) is not None
    }
    cpu["harness"] = round(time.process_time() - own_before, 2)
    return Burst(stack.broker_kind, expected - baseline, elapsed, cpu, load_before, load_average())


async def measure_max_rate(workdir: Path, tasks: int, broker_kind: str = "kafka") -> Burst:
    """The soak's burst on a fresh stack with a broker of its own."""
    with soak_stack(workdir, broker_kind=broker_kind) as stack:
        await asyncio.to_thread(start_all, stack)
        await wait_view(stack, sessions=len(SOAK_CLIENTS))
        return await burst(stack, tasks)
