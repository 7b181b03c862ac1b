"""An executor written from ``docs/protocol.md`` alone: plain aiokafka and fastavro over the
``.avsc`` files, none of taskstream's codec, SDKs or models.

It registers a session, reads ``task.assignments`` from the end of every partition, answers a
single task and a batch (leaving one item out, which must fail and come back as a single task),
gets a cancel for work it holds, replies to the partition the ``ts-home`` header names, and
finds exactly one outcome per task on the outcome topics.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from streams.settings import Settings
from tests.integration.distributor_harness import DelayRunner, InProcessProcessor, layout
from tests.support.codec import crc64_avro

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT, SESSION = "client_acme_001", "bb_session_proto"


class Wire:
    """Single-object encoding as the protocol page describes it: ``C3 01``, the little-endian
    CRC-64-AVRO of the schema's canonical form, the Avro body; old versions resolve to the
    current schema of their record."""

    def __init__(self) -> None:
        self.current: dict[str, tuple[bytes, Any]] = {}
        self.writers: dict[bytes, tuple[str, Any]] = {}
        for path in sorted((ROOT / "schemas" / "avro").glob("*.avsc")):
            schema = json.loads(path.read_text("utf-8"))
            canonical = to_parsing_canonical_form(schema).encode()
            fp = crc64_avro(canonical).to_bytes(8, "little")
            self.writers[fp] = (schema["name"], parse_schema(schema))
            if ".v" not in path.name:
                self.current[schema["name"]] = (fp, parse_schema(schema))

    def encode(self, name: str, datum: dict[str, Any]) -> bytes:
        fp, schema = self.current[name]
        out = io.BytesIO()
        out.write(b"\xc3\x01" + fp)
        schemaless_writer(out, schema, datum)
        return out.getvalue()

    def decode(self, blob: bytes) -> tuple[str, dict[str, Any]]:
        assert blob[:2] == b"\xc3\x01"
        name, writer = self.writers[blob[2:10]]
        record = schemaless_reader(io.BytesIO(blob[10:]), writer, self.current[name][1])
        assert isinstance(record, dict)
        return name, record


def home(client_id: str, partitions: int) -> int:
    return (int(murmur2(client_id.encode())) & 0x7FFFFFFF) % partitions


def header(headers: Any, name: str) -> bytes | None:
    return next((bytes(v) for k, v in headers or () if k == name), None)


class ProtocolExecutor:
    """Serves one session by the steps of docs/protocol.md, "Writing an executor"."""

    def __init__(self, settings: Settings, wire: Wire) -> None:
        self.settings = settings
        self.wire = wire
        self.commands = settings.topic("commands")
        bootstrap = settings.kafka_bootstrap_servers
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        self.received: list[tuple[int, dict[str, Any], int | None]] = []
        self.silent: set[str] = {"t-cancel"}  # work we hold on to without answering
        self.leave_out: set[str] = {"t-b2"}  # batch items we do not report
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        topic = self.settings.topic("assignments")
        tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # fix the positions before registering
            await self.consumer.position(tp)
        await self.send(
            "RegisterSession",
            {
                "client_id": CLIENT,
                "session_id": SESSION,
                "agent_id": "agent-proto",
                "max_concurrent": 3,
                "capabilities": [],
            },
        )
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()
        await self.producer.stop()

    async def send(self, name: str, datum: dict[str, Any], partition: int | None = None) -> None:
        if partition is None:
            partition = home(datum["client_id"], self.settings.partitions)
        await self.producer.send_and_wait(
            self.commands,
            self.wire.encode(name, datum),
            key=datum["client_id"].encode(),
            partition=partition,
        )

    async def run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    name, work = self.wire.decode(record.value)
                    assert name == "Assignment"
                    if work["session_id"] != SESSION:
                        continue
                    reply_to = header(record.headers, "ts-home")
                    partition = int(reply_to) if reply_to is not None else None
                    self.received.append((tp.partition, work, partition))
                    await self.answer(work, partition)

    async def answer(self, work: dict[str, Any], partition: int | None) -> None:
        result: dict[str, Any] = {
            "client_id": work["client_id"],
            "task_id": None,
            "batch_id": None,
            "session_id": SESSION,
            "fencing_token": work["fencing_token"],
            "success": True,
            "output": "{}",
            "error": None,
            "items": [],
            "execution_time_ms": 5,
        }
        if work["kind"] == "task":
            (item,) = work["items"]
            if item["task_id"] in self.silent:
                return
            await self.send(
                "TaskStarted",
                {
                    "client_id": work["client_id"],
                    "task_id": work["task_id"],
                    "fencing_token": work["fencing_token"],
                },
                partition,
            )
            ran = json.dumps({"ran": item["task_id"], "input": json.loads(item["payload"])})
            result.update(task_id=work["task_id"], output=ran)
        elif work["kind"] == "batch":
            result["batch_id"] = work["batch_id"]
            result["items"] = [
                {
                    "task_id": item["task_id"],
                    "success": True,
                    "output": json.dumps({"ran": item["task_id"]}),
                    "error": None,
                }
                for item in work["items"]
                if item["task_id"] not in self.leave_out
            ]
        else:
            return  # a cancel: stop the named work, report nothing
        await self.send("ReportResult", result, partition)

    def of(self, kind: str, task_id: str | None = None) -> list[dict[str, Any]]:
        return [
            w
            for _, w, _ in self.received
            if w["kind"] == kind
            and (task_id is None or task_id in (w["task_id"], *(i["task_id"] for i in w["items"])))
        ]


async def read_all(settings: Settings, wire: Wire, logical: str) -> list[dict[str, Any]]:
    topic = settings.topic(logical)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[dict[str, Any]] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                    out += [wire.decode(r.value)[1] for r in records]
        return out
    finally:
        await consumer.stop()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def submit(task_id: str, operation: str, **payload: Any) -> dict[str, Any]:
    return {
        "client_id": CLIENT,
        "task_id": task_id,
        "operation": operation,
        "payload": json.dumps(payload),
        "priority": None,
        "max_retries": None,
        "timeout_ms": None,
        "scheduled_for_ms": None,
        "requires_review": False,
        "depends_on": [],
        "capabilities": [],
    }


async def test_an_executor_written_from_the_protocol_page(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(
        make_settings, batch_window_ms=60_000, max_batch_size=3, retry_base_ms=100
    )
    wire = Wire()
    processor = InProcessProcessor(settings)
    delay = DelayRunner(settings)
    executor = ProtocolExecutor(settings, wire)
    await asyncio.gather(processor.start(), delay.start())
    try:
        await executor.start()
        await executor.send("SubmitTask", submit("t-single", "workflow_trigger", to="x"))
        for task_id in ("t-b1", "t-b2", "t-b3"):  # batched: tag_add, closed by size
            await executor.send("SubmitTask", submit(task_id, "tag_add", tag=task_id))
        await executor.send("SubmitTask", submit("t-cancel", "workflow_trigger"))
        await until(lambda: bool(executor.of("task", "t-cancel")), "t-cancel's assignment")
        await executor.send(
            "CancelTask", {"client_id": CLIENT, "task_id": "t-cancel", "reason": "stop"}
        )
        await until(lambda: bool(executor.of("cancel")), "the cancel")
        await until(lambda: bool(executor.of("task", "t-b2")), "t-b2 back as a single task")

        outcomes: list[dict[str, Any]] = []
        for _ in range(200):
            done = await read_all(settings, wire, "completed")
            failed = await read_all(settings, wire, "failed")
            outcomes = done + failed
            if len(outcomes) >= 5:
                break
            await asyncio.sleep(0.2)
    finally:
        await executor.stop()
        await asyncio.gather(delay.stop(), processor.stop())

    # Every reply went where ts-home said: the client's home partition.
    assert {p for _, _, p in executor.received} == {home(CLIENT, settings.partitions)}
    (batch,) = executor.of("batch")
    assert sorted(i["task_id"] for i in batch["items"]) == ["t-b1", "t-b2", "t-b3"]
    (cancel,) = executor.of("cancel")
    (held,) = executor.of("task", "t-cancel")
    assert (cancel["task_id"], cancel["fencing_token"]) == ("t-cancel", held["fencing_token"])
    by_partition = {w["kind"] + str(w["task_id"]): p for p, w, _ in executor.received}
    assert by_partition["cancelt-cancel"] == by_partition["taskt-cancel"]  # same partition

    ends = {o["task_id"]: o for o in outcomes}
    assert len(outcomes) == len(ends) == 5, outcomes
    assert {t: o.get("outcome", "completed") for t, o in ends.items()} == {
        "t-single": "completed",
        "t-b1": "completed",
        "t-b2": "completed",
        "t-b3": "completed",
        "t-cancel": "cancelled",
    }
    assert json.loads(ends["t-single"]["output"]) == {"ran": "t-single", "input": {"to": "x"}}
    assert ends["t-b2"]["attempt"] == 2 and ends["t-b1"]["attempt"] == 1
    assert ends["t-cancel"]["reason"] == "stop"
