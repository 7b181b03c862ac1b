"""Restart-to-processing of a processor that holds a large state, on Apache Kafka.

One processor process (``python -m streams.cli processor``, default group timings: 10 s
session, 1 s heartbeat) is filled with ``--tasks`` tasks (``SubmitTask`` of a session
operation for 64 clients with no session: they stay queued, so the processor holds every one
of them), then, each time after it caught up:

1. ``static-kill``: SIGKILL, restart at once (a static member takes its old place);
2. ``static-term``: SIGTERM (it leaves the group), start again at once;
3. ``dynamic-kill``: the same kill with a dynamic member, today's behaviour before static
   membership: this process holds the member id kept in the data dir, so the processor joins
   dynamically (what a second instance on one data dir does).

Right after the stop, one ``SubmitTask`` per partition is produced; restart-to-processing is
from starting the new process to seeing the last of their ``task.accepted`` events (and to the
first: partitions are recovered one by one, each processing as soon as it is). The
processor's log gives the phases: process start to joining the group (imports, clients),
joining to the last partition recovered (the group, then loading the stores of every
partition), and the rest (the first cycle).

Run: ``python -m bench.failover --tasks 1000000`` (prints one JSON line per mode and a
table; ``--json PATH`` writes them). The broker is a local Apache Kafka of its own
(``tools/kafka``, fetched with Maven when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import committed_total, kafka_kwargs, load_average, topic_size
from bench.processes import ProcessStack, rss_kib
from bench.soak_load import SOAK_CLIENTS
from schemas.codec import CODEC
from schemas.commands import SubmitTask
from schemas.events import TaskAccepted
from streams.kafka.headers import TYPE_HEADER
from streams.kafka.membership import member_id
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

__all__ = ["main", "run_failover"]

log = logging.getLogger(__name__)

OPERATION = "conversation_send"  # needs a session: with none registered, tasks stay queued
FILL_CLIENTS = 64
PARTITIONS = 4
# The service's defaults, not the tests' short ones: fail-over as a user gets it.
ENV = {
    "TASKSTREAM_KAFKA_SESSION_TIMEOUT_MS": "10000",
    "TASKSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "TASKSTREAM_TICK_INTERVAL_MS": "100",
    "TASKSTREAM_PARTITIONS": str(PARTITIONS),
    "TASKSTREAM_LOG_LEVEL": "INFO",
}
MODES = ("static-kill", "static-term", "dynamic-kill")


async def fill(settings: Settings, tasks: int) -> None:
    """Produce ``tasks`` SubmitTask commands (not timed)."""
    producer = AIOKafkaProducer(
        **kafka_kwargs(str(settings.kafka_bootstrap_servers)),
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1_048_576,
        max_request_size=4_194_304,
    )
    await producer.start()
    topic = settings.topic("commands")
    header = [(TYPE_HEADER, b"SubmitTask")]
    try:
        futures: list[Any] = []
        for i in range(tasks):
            client = f"failover-client-{i % FILL_CLIENTS:02d}"
            command = SubmitTask(client_id=client, task_id=f"fill-{i:07d}", operation=OPERATION)
            futures.append(
                await producer.send(
                    topic, CODEC.encode(command), key=client.encode(), headers=header
                )
            )
            if len(futures) >= 5_000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def caught_up(settings: Settings, stack: ProcessStack, timeout_s: float) -> float:
    """Wait until the processor committed the whole command topic; seconds waited."""
    bootstrap = str(settings.kafka_bootstrap_servers)
    topic = settings.topic("commands")
    started = time.monotonic()
    while True:
        dead = stack.dead_parts()
        if dead:
            raise RuntimeError(f"the processor exited: {dead}\n{stack.log_tail('processor')}")
        end = await topic_size(bootstrap, topic)
        done = await committed_total(bootstrap, settings.group_id, topic, PARTITIONS)
        if done >= end:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"processor at {done} of {end} commands after {timeout_s:.0f} s")
        await asyncio.sleep(1.0)


class AcceptedWatch:
    """Follows task.events from its end, noting when each TaskAccepted was seen."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen: dict[str, float] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **kafka_kwargs(str(self.settings.kafka_bootstrap_servers)),
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        tps = [TopicPartition(self.settings.topic("events"), p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for record in records:
                    event = CODEC.decode(record.value)
                    if isinstance(event, TaskAccepted):
                        self.seen.setdefault(event.task_id, now)

    async def wait_for(self, ids: set[str], timeout_s: float) -> tuple[float, float]:
        """When the first and the last of ``ids`` were accepted."""
        deadline = time.monotonic() + timeout_s
        while not ids <= self.seen.keys():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not accepted within {timeout_s:.0f} s: {ids - self.seen.keys()}"
                )
            await asyncio.sleep(0.02)
        return min(self.seen[i] for i in ids), max(self.seen[i] for i in ids)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()


async def probe(settings: Settings, tag: str) -> set[str]:
    """One SubmitTask on each partition (``SOAK_CLIENTS`` hash to 0..3)."""
    producer = AIOKafkaProducer(**kafka_kwargs(str(settings.kafka_bootstrap_servers)))
    await producer.start()
    try:
        ids = set()
        for i, client in enumerate(SOAK_CLIENTS):
            task_id = f"{tag}-{i}"
            command = SubmitTask(client_id=client, task_id=task_id, operation=OPERATION)
            await producer.send_and_wait(
                settings.topic("commands"),
                CODEC.encode(command),
                key=client.encode(),
                headers=[(TYPE_HEADER, b"SubmitTask")],
            )
            ids.add(task_id)
        return ids
    finally:
        await producer.stop()


def _log_time(line: str) -> float | None:
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def phases(log_text: str, started_at: float) -> dict[str, float | None]:
    """Seconds from the process start to joining the group and to the last partition
    recovered, from the processor's log of this start (the text after its start banner)."""
    joining = recovered = None
    for line in log_text.splitlines():
        at = _log_time(line)
        if at is None or at < started_at - 1:
            continue
        if joining is None and "joining group" in line:
            joining = at
        if " recovered: " in line:
            recovered = at
    return {
        "start_to_joining_s": round(joining - started_at, 2) if joining else None,
        "start_to_recovered_s": round(recovered - started_at, 2) if recovered else None,
    }


async def measure(
    settings: Settings, stack: ProcessStack, mode: str, sig: int, timeout_s: float
) -> dict[str, Any]:
    watch = AcceptedWatch(settings)
    await watch.start()
    try:
        # The processor to be stopped must be a member that processes, not one still starting.
        await watch.wait_for(await probe(settings, f"{mode}-before"), 600)
        await asyncio.to_thread(stack.kill, "processor", sig)
        ids = await probe(settings, mode)
        started_at = time.time()
        stack.restart("processor")
        first, last = await watch.wait_for(ids, timeout_s)
    finally:
        await watch.stop()
    rss = rss_kib(stack.parts["processor"].pid)
    return {
        "mode": mode,
        "restart_to_processing_s": round(last - started_at, 2),
        "restart_to_first_partition_s": round(first - started_at, 2),
        **phases(stack.log_tail("processor", 200_000), started_at),
        "processor_rss_mib": round(rss / 1024) if rss else None,
    }


async def run_failover(tasks: int, workdir: Path, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    stack = ProcessStack(workdir, env=dict(ENV), broker_kind="kafka")
    results: list[dict[str, Any]] = []
    with stack:
        await asyncio.to_thread(stack.start_broker)
        settings = stack.settings()
        await ensure_topics(settings)
        stack.add("processor", ["processor"])
        fill_started = time.monotonic()
        await fill(settings, tasks)
        fill_s = time.monotonic() - fill_started
        stack.start("processor")
        ingest_s = await caught_up(settings, stack, timeout_s=max(600.0, tasks / 200))
        log.info("filled %d tasks in %.0f s, processed in %.0f s", tasks, fill_s, ingest_s)
        common = {
            "tasks": tasks,
            "partitions": PARTITIONS,
            "fill_s": round(fill_s, 1),
            "first_ingest_s": round(ingest_s, 1),
            "session_timeout_ms": int(ENV["TASKSTREAM_KAFKA_SESSION_TIMEOUT_MS"]),
        }
        for mode in MODES:
            holder = None
            if mode == "dynamic-kill":
                # Hold the processor's kept member id: it joins as a dynamic member.
                await asyncio.to_thread(stack.kill, "processor", signal.SIGTERM)
                stack.parts["processor"].env["TASKSTREAM_INSTANCE_ID"] = ""
                holder = member_id(settings, settings.group_id, "processor")
                stack.restart("processor")
            try:
                await caught_up(settings, stack, timeout_s=600)
                sig = signal.SIGTERM if mode == "static-term" else signal.SIGKILL
                result = await measure(settings, stack, mode, sig, timeout_s)
                await caught_up(settings, stack, timeout_s=600)
            finally:
                if holder is not None:
                    holder.release()
            result.update(common, load_average=[round(x, 2) for x in load_average()])
            result["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            results.append(result)
            print(json.dumps(result), flush=True)
    return results


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | restart to processing (all partitions) | first partition | start to joining "
        "| start to recovered | RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['mode']} | {r['restart_to_processing_s']} s "
            f"| {r['restart_to_first_partition_s']} s | {r['start_to_joining_s']} s "
            f"| {r['start_to_recovered_s']} s | {r['processor_rss_mib']} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="failover-"))
    results = asyncio.run(run_failover(args.tasks, workdir))
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
