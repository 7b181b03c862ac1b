"""The runtime in a consumer group: two processes split the partitions, the survivor of a
kill -9 takes them all over with state intact; bad input goes to the dead-letter topic."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.topics import ensure_topics
from streams.runtime.runner import StreamRuntime
from tests.integration.runtime_app import (
    CounterApp,
    check_event_log,
    incr,
    key_on_partition,
    produce,
    read_all,
    settings_for,
    spawn,
    wait_until,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4


async def test_two_processes_split_partitions_and_one_takes_over_after_a_kill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, f"g{uuid.uuid4().hex[:8]}", tmp_path / "unused")
    await ensure_topics(settings)
    commands, completed = settings.topic("commands"), settings.topic("completed")
    keys = [key_on_partition(p, PARTITIONS) for p in range(PARTITIONS)]
    sent = 0

    async def round_pids() -> set[str]:
        """One increment per partition; the processes whose outputs answered this round."""
        nonlocal sent
        sent += 1
        await produce(kafka_bootstrap, commands, [incr(k) for k in keys])

        async def answered() -> dict[str, str] | None:
            records = await read_all(kafka_bootstrap, completed)
            latest = {
                json.loads(r.value)["key"]: dict(r.headers)["pid"].decode()
                for r in records
                if json.loads(r.value)["total"] == sent
            }
            return latest if len(latest) == len(keys) else None

        return set((await wait_until(answered, 40)).values())

    a = spawn(kafka_bootstrap, settings.topic_prefix, tmp_path / "a")
    b = spawn(kafka_bootstrap, settings.topic_prefix, tmp_path / "b")
    try:

        async def split() -> bool:
            return await round_pids() == {str(a.pid), str(b.pid)}

        await wait_until(split, 60, interval_s=0.5)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)

        async def taken_over() -> bool:
            return await round_pids() == {str(b.pid)}

        await wait_until(taken_over, 60, interval_s=0.5)
        b.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(b.wait, 20) == 0
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
    events = await read_all(kafka_bootstrap, settings.topic("events"))
    assert check_event_log(events) == {k: sent for k in keys}


async def test_undecodable_command_goes_to_the_dlq_and_processing_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, f"d{uuid.uuid4().hex[:8]}", tmp_path / "data")
    await ensure_topics(settings)
    runtime: StreamRuntime[Any] = StreamRuntime(CounterApp(settings.topic_prefix), settings)
    task = asyncio.ensure_future(runtime.run())
    try:
        await asyncio.wait_for(runtime.ready.wait(), 30)
        garbage = b"\x00\xffnot a command"
        await produce(
            kafka_bootstrap, settings.topic("commands"), [incr("a"), ("a", garbage), incr("a")]
        )

        async def two_events() -> list[Any] | None:
            events = await read_all(kafka_bootstrap, settings.topic("events"))
            return events if len(events) == 2 else None

        events = await wait_until(two_events, 30)
    finally:
        runtime.stop()
        await task
    assert check_event_log(events) == {"a": 2}
    (letter,) = await read_all(kafka_bootstrap, settings.topic("dlq"))
    body = json.loads(letter.value)
    assert base64.b64decode(body["raw"]) == garbage
    assert body["reason"].startswith("undecodable command")
    assert (body["topic"], body["offset"]) == (settings.topic("commands"), 1)
