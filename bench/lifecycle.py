"""The full task lifecycle on one processor: submit -> assigned -> executed -> completed.

The distributor (``streams.distributor.Distributor``) runs in its own process, as in a
deployment. This process plays everyone else: it registers sessions (large
``max_concurrent``) for a few clients, runs a fake executor that answers every assignment at
once with a successful ``ReportResult`` carrying the fencing token, and submits tasks of a
non-batchable critical operation.

Two phases:

1. max rate: submit ``tasks`` as fast as the producer goes; sustained throughput is tasks
   completed per second, from the first submit to the last completion;
2. half that rate, for ``latency_seconds``: submit -> assigned latency per task, from the
   event log: the ``TaskAssigned`` record's timestamp minus the ``TaskAccepted`` event's time
   (the decider takes the ``SubmitTask`` record's timestamp as its time);
3. the issue's fixed rate, ``TARGET_RATE`` tasks/s (when the max rate is above it), for
   ``latency_seconds``: the same latency, so the target's figure does not move with the max.

The fake executor and the completion watcher fetch with the settings' ``fetch_max_wait_ms``,
as the real executor does.

Run as ``python -m bench.lifecycle processor --bootstrap B --prefix P --data-dir D``
to get the processor alone (what the harness spawns).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import BenchResult, kafka_kwargs, partition_sizes, topic_size
from schemas.codec import CODEC
from schemas.commands import RegisterSession, ReportResult, SubmitTask
from schemas.events import TaskAccepted, TaskAssigned
from schemas.records import Assignment
from streams.kafka.headers import TYPE_HEADER
from streams.kafka.process import free_loopback_port
from streams.kafka.reader import KafkaLogReader
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

__all__ = ["percentile", "processor_settings", "run_lifecycle"]

OPERATION = "conversation_send"  # critical, needs a session, not batchable
_ROOT = Path(__file__).resolve().parents[1]
# Submits per pacing slot in the paced phases.
_SLOT_S = 0.02
# The rate the latency target is stated at (p99 submit -> assigned <= 10 ms).
TARGET_RATE = 1_000.0


def processor_settings(bootstrap: str, prefix: str, data_dir: Path, partitions: int) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        group_id=f"{prefix}-processor",
        data_dir=data_dir,
        partitions=partitions,
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=500,
        client_rate_limit="none",  # a throughput figure: no per-client bucket (100/10s)
    )


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


class _Harness:
    def __init__(self, settings: Settings, clients: int, sessions_per_client: int) -> None:
        self.settings = settings
        self.bootstrap = str(settings.kafka_bootstrap_servers)
        self.commands = settings.topic("commands")
        self.clients = [f"client-{c:03d}" for c in range(clients)]
        self.sessions = [
            (client, f"{client}-session-{s}")
            for client in self.clients
            for s in range(sessions_per_client)
        ]
        self.answered = 0
        self.completed = 0
        self.completed_changed = asyncio.Event()
        # The upstream system that submits and the executor that reports are different
        # clients in a deployment, each with its own producer (aiokafka's defaults: no linger).
        # Sharing one made a submit wait behind the results' request in flight (aiokafka keeps
        # one produce request in flight per broker), and that wait counted as latency.
        self.producer = AIOKafkaProducer(**kafka_kwargs(self.bootstrap))
        self.results_producer = AIOKafkaProducer(**kafka_kwargs(self.bootstrap))

    async def executor(self) -> None:
        """Answer every task assignment at once (all partitions, no group, from the start)."""
        topic = self.settings.topic("assignments")
        consumer = AIOKafkaConsumer(
            **kafka_kwargs(self.bootstrap),
            enable_auto_commit=False,
            max_poll_records=5000,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                futures = []
                for records in batch.values():
                    for record in records:
                        work = CODEC.decode_as(record.value, Assignment)
                        if work.kind != "task" or work.task_id is None:
                            continue
                        result = ReportResult(
                            client_id=work.client_id,
                            task_id=work.task_id,
                            session_id=work.session_id,
                            fencing_token=work.fencing_token,
                            success=True,
                        )
                        futures.append(await self._send(result, self.results_producer))
                        self.answered += 1
                if futures:
                    await asyncio.gather(*futures)
        finally:
            await consumer.stop()

    async def watch_completed(self) -> None:
        """Count records on ``task.completed`` (one per completed task)."""
        topic = self.settings.topic("completed")
        consumer = AIOKafkaConsumer(
            **kafka_kwargs(self.bootstrap),
            enable_auto_commit=False,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                count = sum(len(records) for records in batch.values())
                if count:
                    self.completed += count
                    self.completed_changed.set()
        finally:
            await consumer.stop()

    async def wait_completed(self, target: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.completed < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.completed_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.completed_changed.wait(), min(remaining, 1.0))
        return True

    async def _send(self, command: Any, producer: AIOKafkaProducer | None = None) -> Any:
        return await (producer or self.producer).send(
            self.commands, CODEC.encode(command), key=command.client_id.encode()
        )

    async def register(self) -> None:
        futures = [
            await self._send(
                RegisterSession(
                    client_id=client,
                    session_id=session,
                    agent_id=f"bench-{session}",
                    max_concurrent=1_000_000,
                )
            )
            for client, session in self.sessions
        ]
        await asyncio.gather(*futures)

    async def submit_paced(self, prefix: str, rate: float, seconds: float) -> int:
        """Submit at ``rate`` tasks/s for ``seconds``; return how many were submitted."""
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(rate * elapsed) + 1
            if due > sent:
                await self.submit_range(prefix, sent, due)
                sent = due
            await asyncio.sleep(_SLOT_S)
        return sent

    async def submit_range(self, prefix: str, start: int, end: int) -> None:
        futures = []
        for i in range(start, end):
            client = self.clients[i % len(self.clients)]
            command = SubmitTask(client_id=client, task_id=f"{prefix}{i}", operation=OPERATION)
            futures.append(await self._send(command))
        # Not awaited one by one: the producer batches them; all acknowledged before returning.
        await asyncio.gather(*futures)


async def _wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:.0f}s")
        await asyncio.sleep(0.2)


async def submit_to_assigned_ms(bootstrap: str, events_topic: str, task_prefix: str) -> list[float]:
    """Latency per task whose id starts with ``task_prefix``, read from the event log."""
    accepted: dict[str, int] = {}
    assigned: dict[str, int] = {}
    wanted = {TaskAccepted.TYPE.encode(), TaskAssigned.TYPE.encode()}
    consumer = AIOKafkaConsumer(**kafka_kwargs(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        reader = KafkaLogReader(consumer)
        ends = await partition_sizes(bootstrap, events_topic)
        for partition, end in ends.items():
            async for record in reader.read(events_topic, partition, 0, end):
                kind = dict(record.headers).get(TYPE_HEADER)
                if kind not in wanted:
                    continue
                event = CODEC.decode(record.value)
                if isinstance(event, TaskAccepted) and event.task_id.startswith(task_prefix):
                    accepted[event.task_id] = event.occurred_at_ms
                elif isinstance(event, TaskAssigned) and event.task_id.startswith(task_prefix):
                    assigned.setdefault(event.task_id, record.timestamp)
    finally:
        await consumer.stop()
    return [float(assigned[t] - accepted[t]) for t in assigned if t in accepted]


async def run_lifecycle(
    bootstrap: str,
    prefix: str,
    work_dir: Path,
    *,
    tasks: int,
    latency_seconds: float,
    partitions: int = 4,
    clients: int = 8,
    sessions_per_client: int = 2,
    timeout_s: float = 600.0,
) -> BenchResult:
    """Spawn the distributor, run both phases, stop it; the result's rate is tasks/s."""
    settings = processor_settings(bootstrap, prefix, work_dir / "data", partitions)
    await ensure_topics(settings)
    harness = _Harness(settings, clients, sessions_per_client)
    log_path = work_dir / "processor.log"
    proc = _spawn_processor(settings, log_path)
    view_port = free_loopback_port()
    view = _spawn_view(settings, work_dir, view_port)
    lag_path = work_dir / "projection-lag.txt"
    sampler = _spawn_lag_sampler(settings, work_dir, view_port, lag_path)
    await harness.producer.start()
    await harness.results_producer.start()
    helpers = [
        asyncio.create_task(harness.executor()),
        asyncio.create_task(harness.watch_completed()),
    ]
    events_topic = settings.topic("events")
    load_started = load_ended = math.inf
    try:
        await harness.register()

        async def registered() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the processor exited with {proc.returncode}; see {log_path}")
            return await topic_size(bootstrap, events_topic) >= len(harness.sessions)

        await _wait_for(registered, 120, "the processor did not register the sessions")

        # Phase 1: max rate. Projection lag is kept from here to the end of phase 2.
        load_started = time.time()
        started = time.perf_counter()
        await harness.submit_range("max-", 0, tasks)
        if not await harness.wait_completed(tasks, timeout_s):
            return BenchResult(
                "lifecycle",
                "failed",
                events=harness.completed,
                detail=f"{harness.completed} of {tasks} tasks completed in {timeout_s:.0f}s",
            )
        seconds = time.perf_counter() - started
        max_rate = tasks / seconds

        # Phase 2: half rate, latency.
        rate = max_rate / 2
        submitted = await harness.submit_paced("lat-", rate, latency_seconds)
        total = tasks + submitted
        if not await harness.wait_completed(total, timeout_s):
            return BenchResult(
                "lifecycle",
                "failed",
                events=harness.completed,
                detail=f"{harness.completed} of {total} tasks completed in {timeout_s:.0f}s",
            )
        # Phase 3: the target's fixed rate, when the processor goes faster than that.
        at_target = 0
        if max_rate > TARGET_RATE:
            at_target = await harness.submit_paced("tgt-", TARGET_RATE, latency_seconds)
            total += at_target
            if not await harness.wait_completed(total, timeout_s):
                return BenchResult(
                    "lifecycle",
                    "failed",
                    events=harness.completed,
                    detail=f"{harness.completed} of {total} tasks completed in {timeout_s:.0f}s",
                )
        load_ended = time.time()
        latencies = await submit_to_assigned_ms(bootstrap, events_topic, "lat-")
        target_latencies = (
            await submit_to_assigned_ms(bootstrap, events_topic, "tgt-") if at_target else []
        )
    finally:
        for helper in helpers:
            helper.cancel()
        for helper in helpers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await helper
        await harness.producer.stop()
        await harness.results_producer.stop()
        for child in (sampler, proc, view):
            if child.poll() is None:
                child.terminate()
                try:
                    await asyncio.to_thread(child.wait, 20)
                except subprocess.TimeoutExpired:
                    child.kill()
                    await asyncio.to_thread(child.wait)
    completed_records = await topic_size(bootstrap, settings.topic("completed"))
    lag_samples, lag_upper = _read_lag_samples(lag_path, load_started, load_ended)
    return BenchResult(
        "lifecycle",
        "ok",
        events=tasks,
        seconds=seconds,
        detail=(
            f"distributor: submit -> assigned -> result -> completed ({OPERATION}, "
            f"{len(harness.sessions)} sessions)"
        ),
        extra={
            "tasks_per_s": max_rate,
            "latency_rate": rate,
            "latency_tasks": submitted,
            "latency_samples": len(latencies),
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p99_ms": percentile(latencies, 99),
            "latency_max_ms": max(latencies) if latencies else None,
            "target_rate": TARGET_RATE if at_target else None,
            "target_tasks": at_target,
            "target_p50_ms": percentile(target_latencies, 50),
            "target_p99_ms": percentile(target_latencies, 99),
            "target_max_ms": max(target_latencies) if target_latencies else None,
            "projection_lag_samples": len(lag_samples),
            "projection_lag_p50_events": percentile(lag_samples, 50),
            "projection_lag_p99_events": percentile(lag_samples, 99),
            "projection_lag_max_events": max(lag_samples) if lag_samples else None,
            "projection_lag_upper_p50_events": percentile(lag_upper, 50),
            "projection_lag_upper_p99_events": percentile(lag_upper, 99),
            "projection_lag_upper_max_events": max(lag_upper) if lag_upper else None,
            "projection_lag_series": [int(x) for x in lag_samples],
            "projection_lag_upper_series": [int(x) for x in lag_upper],
            "completed": completed_records,
            "answered": harness.answered,
            "sessions": len(harness.sessions),
        },
    )


def _spawn_view(settings: Settings, work_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """A projector + HTTP view on the benchmark's topics, to measure projection lag under load."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TASKSTREAM_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=str(settings.kafka_bootstrap_servers),
        TASKSTREAM_TOPIC_PREFIX=settings.topic_prefix,
        TASKSTREAM_PARTITIONS=str(settings.partitions),
        TASKSTREAM_DATA_DIR=str(work_dir / "view"),
        TASKSTREAM_HTTP_PORT=str(port),
        TASKSTREAM_LOG_LEVEL="WARNING",
    )
    with open(work_dir / "view.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "view"],
            cwd=_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _spawn_lag_sampler(
    settings: Settings, work_dir: Path, port: int, out: Path
) -> subprocess.Popen[bytes]:
    """The projection-lag sampler in a process of its own: in the harness's busy event loop
    its view of the log end would lag and make the projection look fresher than it is."""
    command = [
        sys.executable,
        "-m",
        "bench.lifecycle",
        "lag",
        "--port",
        str(port),
        "--bootstrap",
        str(settings.kafka_bootstrap_servers),
        "--topic",
        settings.topic("events"),
        "--partitions",
        str(settings.partitions),
        "--out",
        str(out),
    ]
    with open(work_dir / "lag-sampler.log", "ab") as log:
        return subprocess.Popen(command, cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT)


def _read_lag_samples(path: Path, since: float, until: float) -> tuple[list[float], list[float]]:
    """The samples (``<unix time> <lag from the end before> <lag from the end after>`` lines)
    taken between ``since`` and ``until``: (lower bounds, upper bounds)."""
    lower: list[float] = []
    upper: list[float] = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 3 and since <= float(fields[0]) <= until:
                lower.append(float(fields[1]))
                upper.append(float(fields[2]))
    return lower, upper


async def sample_projection_lag(
    port: int, bootstrap: str, topic: str, partitions: int, out: TextIO, every_s: float = 0.1
) -> None:
    """Every ``every_s``, append ``<unix time> <lower> <upper>`` to ``out``: how many events
    of ``topic`` the view on ``port`` has not folded yet.

    The log end comes from a consumer of our own that reads every partition of the events
    topic continuously (its fetch high watermarks are at most its 20 ms fetch wait old), not
    from the projector: the projector's own ``X-Projection-Lag`` counts only what its last
    fetch saw. Lag = sum over partitions of (log end - the view's ``as_of_offsets``), once
    with the end read just before the request (a lower bound: the view may answer only after
    a fold it was busy with) and once with the end read just after the answer (an upper
    bound: it counts events produced while the request was in flight).
    """
    url = f"http://127.0.0.1:{port}/health"
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    tail = AIOKafkaConsumer(
        **kafka_kwargs(bootstrap),
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await tail.start()
    try:
        tail.assign(tps)
        await tail.seek_to_end(*tps)

        async def follow() -> None:
            while True:
                await tail.getmany(timeout_ms=100, max_records=100_000)

        async def log_end() -> dict[int, int]:
            # The larger of two lower bounds: the tail's last fetch high watermark, and
            # ListOffsets (the embedded broker answers the last batch's base offset + 1).
            listed = await tail.end_offsets(tps)
            return {tp.partition: max(tail.highwater(tp) or 0, int(listed[tp])) for tp in tps}

        follower = asyncio.create_task(follow())
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
                while True:
                    before = await log_end()
                    try:
                        async with http.get(url) as answer:
                            body = await answer.json() if answer.status == 200 else None
                    except (aiohttp.ClientError, TimeoutError):
                        body = None  # not up yet
                    if body is not None:
                        after = await log_end()
                        folded = body["projection"]["as_of_offsets"]

                        low, high = (
                            sum(max(0, end - int(folded.get(str(p), 0))) for p, end in ends.items())
                            for ends in (before, after)
                        )
                        out.write(f"{time.time():.3f} {low} {high}\n")
                    await asyncio.sleep(every_s)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    finally:
        await tail.stop()


def _lag_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle lag")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt), open(args.out, "a", buffering=1) as out:
        asyncio.run(
            sample_projection_lag(args.port, args.bootstrap, args.topic, args.partitions, out)
        )
    return 0


def _spawn_processor(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.lifecycle",
                "processor",
                "--bootstrap",
                str(settings.kafka_bootstrap_servers),
                "--prefix",
                settings.topic_prefix,
                "--data-dir",
                str(settings.data_dir),
                "--partitions",
                str(settings.partitions),
            ],
            cwd=_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _processor_main(argv: list[str]) -> int:
    from streams.distributor import Distributor
    from streams.runtime.runner import main_process

    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle processor")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = processor_settings(args.bootstrap, args.prefix, args.data_dir, args.partitions)
    return main_process(Distributor, settings, name="bench-distributor")


if __name__ == "__main__":
    if sys.argv[1:2] == ["processor"]:
        sys.exit(_processor_main(sys.argv[2:]))
    if sys.argv[1:2] == ["lag"]:
        sys.exit(_lag_main(sys.argv[2:]))
    sys.exit(
        "usage: python -m bench.lifecycle processor --bootstrap B --prefix P ...\n"
        "       python -m bench.lifecycle lag --port P --bootstrap B --topic T --out F"
    )
