"""Delay agents that die or stop before committing: their records come again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.delay import DelayAgent
from streams.settings import Settings
from tests.support.delay_agent import (
    assert_not_early,
    collecting,
    delay_settings,
    now_ms,
    produce,
    retry,
    running,
    task_ids,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

AGENT_SCRIPT = """
import asyncio
from streams.delay import DelayAgent
from streams.settings import Settings

async def main() -> None:
    agent = DelayAgent(Settings())
    task = asyncio.create_task(agent.run(asyncio.Event()))
    await agent.ready.wait()
    print("ready", flush=True)
    await task

asyncio.run(main())
"""


async def test_killed_agent_leaves_held_records_to_the_next(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "TASKSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "TASKSTREAM_GROUP_ID": settings.group_id,
        "TASKSTREAM_PARTITIONS": str(settings.partitions),
        "TASKSTREAM_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
        "TASKSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka_heartbeat_interval_ms),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AGENT_SCRIPT, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"ready"
        async with collecting(settings, "commands") as commands:
            t0 = now_ms()
            early = [(1000, retry(f"early-{i}", t0 + 200)) for i in range(3)]
            late = [(4000, retry(f"late-{i}", t0 + 4000)) for i in range(3)]
            await produce(settings, early + late)
            seen = await commands.wait_for(3, timeout_s=15)
            assert sorted(task_ids(seen)) == ["early-0", "early-1", "early-2"]
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert now_ms() < t0 + 4000, "the agent was killed too late for this test"

            # The killed member held the late records without committing them.
            async with running(DelayAgent(settings)):
                await commands.wait_for(6, timeout_s=30)
            seen = list(commands.seen)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    ids = task_ids(seen)
    assert {"late-0", "late-1", "late-2"} <= set(ids)
    assert set(ids) == {f"{kind}-{i}" for kind in ("early", "late") for i in range(3)}
    assert_not_early(seen)


class NoCommitAgent(DelayAgent):
    """Dies, in effect, between producing and committing."""

    async def _commit(self, offsets: dict[TopicPartition, int]) -> bool:
        return False


async def test_records_produced_but_not_committed_are_redelivered(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    t0 = now_ms()
    await produce(settings, [(1000, retry(f"r{i}", t0)) for i in range(3)])
    async with collecting(settings, "commands") as commands:
        async with running(NoCommitAgent(settings)):
            await commands.wait_for(3, timeout_s=15)
        assert sorted(task_ids(commands.seen)) == ["r0", "r1", "r2"]

        async with running(DelayAgent(settings)) as agent:
            await commands.wait_for(6, timeout_s=15)
        assert agent.forwarded == 3
        assert sorted(task_ids(commands.seen)) == ["r0", "r0", "r1", "r1", "r2", "r2"]

    # The second agent committed past what it forwarded.
    probe = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.group_id}-delay",
        enable_auto_commit=False,
    )
    await probe.start()
    try:
        tier = settings.topic("retry.1s")
        offsets = [
            await probe.committed(TopicPartition(tier, p)) for p in range(settings.partitions)
        ]
    finally:
        await probe.stop()
    assert sum(o or 0 for o in offsets) == 3
