"""A whole run with a planted credential: submitted through the SDK, decided by the processor,
projected, run by an executor whose api_call sends it to a local server. Afterwards the raw
bytes of every record on every topic, every file of every RocksDB store and every value in
those stores are searched for it: only the server ever saw it. The history names the SDK's
actor."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr
from rocksdict import AccessType, Rdict

from api.projector import Projector
from streams.client import TaskstreamClient
from streams.distributor import Distributor
from streams.executor import Executor
from streams.executor.handlers import builtin_handlers
from streams.kafka.reader import KafkaLogReader
from streams.kafka.topics import ensure_topics, topic_layout
from streams.runtime import run_processor
from streams.secrets import new_key_entry
from streams.settings import Settings

pytestmark = pytest.mark.integration

SECRET = f"sk-live-{uuid.uuid4().hex}"
PASSWORD = f"pw-{uuid.uuid4().hex}"


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback server: /ok answers 200, /down 503; yields (base URL, Authorization seen)."""
    seen: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"ok": True})

    async def down(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=503, text="down")

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/down", down)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def raw_records(settings: Settings) -> dict[str, list[bytes]]:
    """Key, value and header bytes of every record of every topic, by topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    out: dict[str, list[bytes]] = {}
    try:
        reader = KafkaLogReader(consumer)
        for spec in topic_layout(settings):
            blobs: list[bytes] = []
            for partition in range(spec.partitions):
                end = await reader.end_offset(spec.name, partition)
                async for r in reader.read(spec.name, partition, 0, end):
                    blobs.append((r.key or b"") + (r.value or b""))
                    blobs.extend(v for _, v in r.headers or ())
            out[spec.logical] = blobs
    finally:
        await consumer.stop()
    return out


def store_contents(data_dir: Path) -> tuple[list[bytes], list[bytes]]:
    """(raw bytes of every file under ``data_dir``, every key+value of every RocksDB store)."""
    files = [p.read_bytes() for p in data_dir.rglob("*") if p.is_file()]
    values: list[bytes] = []
    for current in data_dir.rglob("CURRENT"):
        db = Rdict(str(current.parent), access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                values.append(_bytes(key) + _bytes(value))
        finally:
            db.close()
    return files, values


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def test_no_record_and_no_store_holds_a_planted_credential(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        secrets_key=SecretStr(new_key_entry("k1")),
        outbound_allow="127.0.0.1",
        actor="ops-bot",
        partitions=2,
        tick_interval_ms=50,
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=500,
    )
    await ensure_topics(settings)
    stop, ready = asyncio.Event(), asyncio.Event()
    processor = asyncio.create_task(
        run_processor(lambda s: Distributor(s), settings, stop=stop, ready=ready)
    )
    projector = Projector(settings, poll_ms=50)
    async with receiver() as (base, seen), builtin_handlers(settings) as handlers:
        executor = Executor(settings, pool=True, handlers=handlers, commit_interval_ms=100)
        await asyncio.wait_for(ready.wait(), 60)
        await projector.start()
        await executor.start()
        try:
            async with TaskstreamClient(settings) as client:
                ok = await client.submit(
                    "acme",
                    "api_call",
                    {
                        "apiEndpoint": f"{base}/ok",
                        "apiMethod": "POST",
                        "authType": "bearer",
                        "bearerToken": SECRET,
                        "customHeaders": {"X-Api-Key": SECRET},
                    },
                )
                failed = await client.submit(
                    "acme",
                    "api_call",
                    {
                        "apiEndpoint": f"{base}/down",
                        "apiMethod": "POST",
                        "authType": "basic",
                        "username": "ops",
                        "password": PASSWORD,
                    },
                    max_retries=0,
                )
                endings: dict[str, str] = {}
                async with client.outcomes(group_id=f"{settings.topic_prefix}-out") as stream:
                    async for outcome in stream:
                        endings[outcome.task_id] = outcome.outcome
                        if {ok, failed} <= set(endings):
                            break
            assert endings == {ok: "completed", failed: "failed"}
            # The dead letter is projected too before the stores are searched.
            deadline = asyncio.get_running_loop().time() + 30
            while projector.reader.dead_letter(failed) is None:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
            # The SDK named its identity; the task's history shows it.
            row = projector.reader.task(ok)
            assert row is not None and row.history[0].type == "task.accepted"
            assert row.history[0].actor == "ops-bot"
        finally:
            await executor.stop()
            await projector.stop()
            stop.set()
            await asyncio.wait_for(processor, 30)

    # Opened in the executor, and only there.
    assert f"Bearer {SECRET}" in seen and any(a.startswith("Basic ") for a in seen)
    records = await raw_records(settings)
    assert records["events"] and records["commands"] and records["dlq"]
    for topic, blobs in records.items():
        for blob in blobs:
            assert SECRET.encode() not in blob and PASSWORD.encode() not in blob, topic
    # What is searched holds the sealed credentials (so the search could have found them).
    assert any(b"$sealed" in blob for blob in records["events"])
    assert any(b"$sealed" in blob for blob in records["dlq"])
    files, values = store_contents(Path(settings.data_dir))
    assert files and values and any(b"$sealed" in v for v in values)
    for blob in files + values:
        assert SECRET.encode() not in blob and PASSWORD.encode() not in blob
