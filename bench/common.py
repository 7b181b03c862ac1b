"""What every benchmark shares: the result record, topic set-up, pre-filling and counting.

The input of the pipeline benchmarks is one pre-filled topic of Avro ``SessionHeartbeat``
commands keyed by client id, so the ceiling, our runtime and faust read the same bytes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.codec import CODEC
from schemas.commands import SessionHeartbeat
from streams.errors import BrokerError
from streams.kafka import client_kwargs, topic_partitions
from streams.kafka.reader import KafkaLogReader
from streams.settings import Settings

__all__ = [
    "BenchResult",
    "Status",
    "busy_processes",
    "cpu_seconds",
    "create_topics",
    "fill",
    "heartbeat_records",
    "load_average",
    "partition_sizes",
    "topic_size",
]

Status = Literal["ok", "not installed", "failed"]

# Records per producer batch when pre-filling (one request per partition batch).
_FILL_BATCH_RECORDS = 5_000


@dataclass
class BenchResult:
    """One row of the report. ``events_per_s`` is None unless ``status`` is "ok"."""

    name: str
    status: Status
    events: int = 0
    seconds: float = 0.0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float | None:
        if self.status != "ok" or self.seconds <= 0:
            return None
        return self.events / self.seconds

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["events_per_s"] = self.events_per_s
        return out


def heartbeat_records(count: int, clients: int = 1000) -> list[tuple[bytes, bytes]]:
    """``count`` Avro ``SessionHeartbeat`` commands over ``clients`` client ids (key, value)."""
    encoded = []
    for i in range(min(count, clients)):
        client = f"client-{i:05d}"
        command = SessionHeartbeat(client_id=client, session_id=f"session-{i:05d}")
        encoded.append((client.encode(), CODEC.encode(command)))
    return [encoded[i % len(encoded)] for i in range(count)] if encoded else []


def kafka_kwargs(bootstrap: str) -> dict[str, Any]:
    """``bootstrap`` plus the SASL/TLS settings of the environment (``TASKSTREAM_KAFKA_*``),
    for every client the benchmarks make: a secured cluster works as for the service."""
    return client_kwargs(Settings(kafka_bootstrap_servers=bootstrap))


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """Create ``names`` with ``partitions`` partitions (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        existing = {t["topic"] for t in await admin.describe_topics()}
        missing = [n for n in names if n not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name=n, num_partitions=partitions, replication_factor=1) for n in missing]
            )
            failed = [str(e[0]) for e in response.topic_errors if e[1] not in (0, 36)]
            if failed:
                raise BrokerError(f"cannot create benchmark topics: {', '.join(failed)}")
    finally:
        await admin.close()


async def fill(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]]) -> float:
    """Produce ``records`` (key, value) to ``topic`` with the producer's own partitioner, in
    large batches; return the seconds it took (all acknowledged)."""
    producer = AIOKafkaProducer(
        **kafka_kwargs(bootstrap),
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1_048_576,
        max_request_size=4_194_304,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for start in range(0, len(records), _FILL_BATCH_RECORDS):
            futures = [
                await producer.send(topic, value, key=key)
                for key, value in records[start : start + _FILL_BATCH_RECORDS]
            ]
            await producer.flush()
            for future in futures:
                await future
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def partition_sizes(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of ``topic`` (the broker-safe way, see reader.py)."""
    consumer = AIOKafkaConsumer(**kafka_kwargs(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic) or set()
        reader = KafkaLogReader(consumer)
        return {p: await reader.end_offset(topic, p) for p in sorted(partitions)}
    finally:
        await consumer.stop()


async def topic_size(bootstrap: str, topic: str) -> int:
    return sum((await partition_sizes(bootstrap, topic)).values())


async def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """The sum of ``group``'s committed offsets on ``topic`` (0 for uncommitted partitions)."""
    consumer = AIOKafkaConsumer(**kafka_kwargs(bootstrap), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            committed = await consumer.committed(TopicPartition(topic, p))
            total += committed or 0
        return total
    finally:
        await consumer.stop()


def load_average() -> tuple[float, float, float]:
    """``uptime``'s 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (from /proc), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_by_process() -> dict[int, tuple[str, float, int]]:
    out: dict[int, tuple[str, float, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        out[int(entry.name)] = (name, ticks / os.sysconf("SC_CLK_TCK"), int(fields[1]))
    return out


def busy_processes(seconds: float = 1.0, min_share: float = 0.05) -> list[str]:
    """What else runs on the machine: processes outside this one's tree that used at least
    ``min_share`` of a core over ``seconds`` ("name pid: 37%"), busiest first. Benchmarks on a
    shared machine say this beside their figures."""
    before = _cpu_by_process()
    time.sleep(seconds)
    after = _cpu_by_process()
    parents = {pid: info[2] for pid, info in after.items()}
    me = os.getpid()

    def ours(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid == me:
                return True
            pid = parents.get(pid, 0)
            seen += 1
        return False

    busy: list[tuple[float, str]] = []
    for pid, (name, cpu, _) in after.items():
        share = (cpu - before[pid][1]) / seconds if pid in before else 0.0
        if share >= min_share and not ours(pid):
            busy.append((share, f"{name} {pid}: {share:.0%}"))
    return [text for _, text in sorted(busy, reverse=True)]
