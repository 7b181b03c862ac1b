"""Recovery against a real broker: kill -9 mid-stream, crash between two events of one command
or one tick, and stores that are deleted or corrupt. The processor runs as its own OS process
(``tests/integration/runtime_app.py``) where it has to die for real."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.topics import ensure_topics
from streams.runtime.causation import cause_of
from streams.runtime.runner import StreamRuntime
from streams.settings import Settings
from tests.integration.runtime_app import (
    CounterApp,
    check_event_log,
    incr,
    produce,
    read_all,
    schedule,
    settings_for,
    spawn,
    wait_until,
)

pytestmark = pytest.mark.integration


async def new_layout(bootstrap: str, tmp_path: Path) -> Settings:
    settings = settings_for(bootstrap, f"r{uuid.uuid4().hex[:8]}", tmp_path / "data")
    await ensure_topics(settings)
    return settings


async def events_of(settings: Settings) -> list[Any]:
    return await read_all(str(settings.kafka_bootstrap_servers), settings.topic("events"))


async def wait_for_events(settings: Settings, count: int, timeout_s: float = 40.0) -> list[Any]:
    async def enough() -> list[Any] | None:
        events = await events_of(settings)
        return events if len(events) >= count else None

    return list(await wait_until(enough, timeout_s))


def stop(proc: Any, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return int(proc.wait(timeout=20))


@pytest.mark.smoke
async def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await new_layout(kafka_bootstrap, tmp_path)
    commands = [incr(f"k{i % 13}", by=i % 5 + 1, times=1 + i % 3) for i in range(1500)]
    expected: Counter[str] = Counter()
    for key, value in commands:
        command = json.loads(value)
        expected[key] += command["by"] * command["times"]
    total_events = sum(json.loads(v)["times"] for _, v in commands)

    first = spawn(kafka_bootstrap, settings.topic_prefix, settings.data_dir)
    try:
        await produce(kafka_bootstrap, settings.topic("commands"), commands[:300])
        await wait_for_events(settings, 1)
        feeding = asyncio.ensure_future(
            produce(
                kafka_bootstrap, settings.topic("commands"), commands[300:], chunk=30, pause_s=0.1
            )
        )
        await wait_for_events(settings, 1000)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        await feeding
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = len(await events_of(settings))
    assert killed_at < total_events, "the kill came after the work was done"

    second = spawn(kafka_bootstrap, settings.topic_prefix, settings.data_dir)
    try:
        events = await wait_for_events(settings, total_events, timeout_s=60)
        assert stop(second) == 0
    finally:
        if second.poll() is None:
            second.kill()
    events = await events_of(settings)
    assert len(events) == total_events
    assert check_event_log(events) == dict(expected)
    completed = await read_all(kafka_bootstrap, settings.topic("completed"))
    assert {r.value for r in completed} == {r.value for r in events}  # at least once


async def crash_and_recover(
    settings: Settings, commands: list[tuple[str, bytes]], crash_after: int, expect_events: int
) -> list[Any]:
    bootstrap = str(settings.kafka_bootstrap_servers)
    first = spawn(
        bootstrap,
        settings.topic_prefix,
        settings.data_dir,
        TASKSTREAM_TEST_CRASH_AFTER_EVENTS=str(crash_after),
    )
    try:
        await produce(bootstrap, settings.topic("commands"), commands)
        assert await asyncio.to_thread(first.wait, 40) == 137
    finally:
        if first.poll() is None:
            first.kill()
    written = await events_of(settings)
    assert len(written) == crash_after
    last = cause_of(written[-1].headers, written[-1].partition)
    assert last is not None and not last.is_last, "the crash did not split a group"

    second = spawn(bootstrap, settings.topic_prefix, settings.data_dir)
    try:
        await wait_for_events(settings, expect_events)
        await asyncio.sleep(0.5)  # nothing more may come
        assert stop(second) == 0
    finally:
        if second.poll() is None:
            second.kill()
    events = await events_of(settings)
    assert len(events) == expect_events
    return events


async def test_crash_between_two_events_of_one_command_is_completed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await new_layout(kafka_bootstrap, tmp_path)
    events = await crash_and_recover(settings, [incr("a", 7, times=5)], 2, expect_events=5)
    assert check_event_log(events) == {"a": 35}
    completed = await read_all(kafka_bootstrap, settings.topic("completed"))
    # side records are at-least-once: those of the two events written before the crash were
    # flushed too, and recovery re-produces the side records of every replayed event
    assert {json.loads(r.value)["total"] for r in completed} == {7, 14, 21, 28, 35}


async def test_crash_between_two_events_of_one_tick_is_completed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await new_layout(kafka_bootstrap, tmp_path)
    # 3 "scheduled" events, then one tick fires 3 increments: crash after the first of them
    events = await crash_and_recover(
        settings, [schedule("a", 2, delay_ms=300, times=3)], 4, expect_events=6
    )
    assert check_event_log(events) == {"a": 6}
    ticks = {cause_of(r.headers, r.partition).group for r in events[3:]}  # type: ignore[union-attr]
    assert len(ticks) == 1  # the tick was re-run at its recorded time, not a new one


async def test_deleted_and_corrupt_stores_are_rebuilt_from_the_log(
    make_settings: Callable[..., Settings],
) -> None:
    base = make_settings()
    settings = settings_for(
        str(base.kafka_bootstrap_servers), base.topic_prefix, base.data_dir, tick_interval_ms=50
    )
    await ensure_topics(settings)
    bootstrap = str(settings.kafka_bootstrap_servers)
    keys = [f"k{i}" for i in range(40)]

    async def run_once(batch: list[tuple[str, bytes]], expect: int) -> StreamRuntime[Any]:
        runtime: StreamRuntime[Any] = StreamRuntime(CounterApp(settings.topic_prefix), settings)
        task = asyncio.ensure_future(runtime.run())
        try:
            await asyncio.wait_for(runtime.ready.wait(), 30)
            await produce(bootstrap, settings.topic("commands"), batch)
            await wait_for_events(settings, expect)
        finally:
            runtime.stop()
            await task
        return runtime

    await run_once([incr(k, 2) for k in keys], 40)
    stores = settings.data_dir / "processor"
    import shutil

    shutil.rmtree(stores / "0")  # deleted
    (stores / "1" / "CURRENT").write_bytes(b"garbage")  # RocksDB cannot open it
    from streams.runtime.store import PartitionStore

    store, _ = PartitionStore.open(stores / "2")  # contents the application cannot load
    store.db[b"total:k0"] = b"not a number"
    store.close()

    runtime = await run_once([incr(k, 1) for k in keys], 80)
    rebuilt = {r.partition: r.rebuilt_reason for r in runtime.recoveries}
    assert rebuilt[0] is None  # a missing store is simply empty: rebuilt without complaint
    assert rebuilt[1] is not None and "cannot open" in rebuilt[1]
    assert rebuilt[2] is not None and "unusable store contents" in rebuilt[2]
    assert rebuilt[3] is None
    events = await events_of(settings)
    assert check_event_log(events) == {k: 3 for k in keys}
    # rebuilt stores replay the log, but commands committed before were flushed with their
    # outputs: nothing is produced twice
    completed = await read_all(bootstrap, settings.topic("completed"))
    assert len(completed) == 80
