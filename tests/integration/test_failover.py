"""Fail-over of group members, as processes on Apache Kafka, with a 60 s session timeout.

A processor or delay agent SIGKILLed and restarted at once must resume long before its old
member's session could expire: only static membership (the restarted member takes its old
place by its ``group.instance.id``) makes that happen. A processor stopped cleanly must hand
its partitions to the other processor at once: only a LeaveGroup naming the static member
does that. With a dynamic member, or a static one that does not leave, each of these waits
out the session timeout and the test fails.

The embedded broker has no usable static membership (its groups settle in half a session
timeout), so these run on Kafka only.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bench.processes import ProcessStack
from bench.soak_load import SOAK_CLIENTS
from schemas import events as ev
from schemas.commands import RetryDue
from streams.client import TaskstreamClient
from streams.kafka.topics import ensure_topics
from streams.runtime.runner import StreamRuntime
from streams.runtime.store import StoreView
from streams.settings import Settings
from tests.conftest import suite_broker
from tests.integration.runtime_app import (
    CounterApp,
    Counters,
    check_event_log,
    incr,
    key_on_partition,
    read_all,
    settings_for,
    wait_until,
)
from tests.integration.runtime_app import produce as produce_commands
from tests.support.delay_agent import Collector, collecting, now_ms, produce

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        suite_broker() == "embedded", reason="the embedded broker has no static membership"
    ),
]

SESSION_TIMEOUT_MS = 60_000
# Well short of the session timeout: passing within it shows nobody waited for an expiry.
RESUME_BOUND_S = 30.0
OPERATION = "conversation_send"


def failover_settings(make_settings: Callable[..., Settings]) -> Settings:
    settings: Settings = make_settings(
        kafka_session_timeout_ms=SESSION_TIMEOUT_MS, kafka_heartbeat_interval_ms=500
    )
    return settings


@contextmanager
def stack_of(settings: Settings, workdir: Path) -> Iterator[ProcessStack]:
    """A ProcessStack of parts on the suite's broker; the parts' logs are printed when the
    body fails."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "TASKSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "TASKSTREAM_GROUP_ID": settings.group_id,
        "TASKSTREAM_PARTITIONS": str(settings.partitions),
        "TASKSTREAM_DATA_DIR": str(settings.data_dir),
        "TASKSTREAM_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
        "TASKSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka_heartbeat_interval_ms),
    }
    stack = ProcessStack(workdir, env=env)
    try:
        yield stack
    except BaseException:
        for path in sorted(stack.logs.glob("*.log")):
            print(f"\n===== {path.name} =====\n{stack.log_tail(path.stem, 6000)}")
        raise
    finally:
        stack.close()


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> float:
    """Seconds until ``check`` held; fails after ``timeout_s``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def accepted(events: Collector) -> set[str]:
    return {s.value.task_id for s in events.seen if isinstance(s.value, ev.TaskAccepted)}


async def submit_everywhere(client: TaskstreamClient, tag: str) -> set[str]:
    """One task on each of the four partitions (``SOAK_CLIENTS`` hash to 0, 1, 2 and 3)."""
    ids = {f"{tag}-{i}" for i in range(len(SOAK_CLIENTS))}
    for i, client_id in enumerate(SOAK_CLIENTS):
        await client.submit(client_id, OPERATION, {"i": i}, task_id=f"{tag}-{i}")
    return ids


async def all_accepted(events: Collector, ids: set[str], timeout_s: float, what: str) -> float:
    async def check() -> bool:
        return ids <= accepted(events)

    return await until(check, timeout_s, what)


@pytest.mark.parametrize("instance_id", ["named", "kept-in-data-dir"])
async def test_killed_processor_restarted_at_once_resumes_before_its_session_could_expire(
    make_settings: Callable[..., Settings], tmp_path: Path, instance_id: str
) -> None:
    settings = failover_settings(make_settings)
    await ensure_topics(settings)
    with stack_of(settings, tmp_path / "stack") as stack:
        # ProcessStack names each part's instance; an empty id means "keep one in the data dir".
        stack.add(
            "processor",
            ["processor"],
            {"TASKSTREAM_INSTANCE_ID": ""} if instance_id != "named" else {},
        )
        stack.start("processor")
        async with collecting(settings, "events") as events, TaskstreamClient(settings) as client:
            before = await submit_everywhere(client, "before")
            await all_accepted(events, before, 60, "the first tasks accepted")

            await asyncio.to_thread(stack.kill, "processor", signal.SIGKILL)
            stack.restart("processor")
            after = await submit_everywhere(client, "after")
            took = await all_accepted(
                events, after, RESUME_BOUND_S, "tasks accepted by the restarted processor"
            )
            print(f"restart to processing: {took:.1f} s (session timeout 60 s)")
            assert not stack.dead_parts()
        assert "static member processor-" in stack.log_tail("processor", 100_000)


async def test_processor_stopped_cleanly_hands_its_partitions_over_at_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = failover_settings(make_settings)
    await ensure_topics(settings)
    with stack_of(settings, tmp_path / "stack") as stack:
        for name in ("processor-a", "processor-b"):
            stack.add(name, ["processor"], {"TASKSTREAM_DATA_DIR": str(tmp_path / name)})
        async with collecting(settings, "events") as events, TaskstreamClient(settings) as client:
            stack.start("processor-a")
            first = await submit_everywhere(client, "first")
            await all_accepted(events, first, 60, "tasks accepted by processor-a")

            stack.start("processor-b")

            async def b_owns_partitions() -> bool:
                return "recovered" in stack.log_tail("processor-b", 100_000)

            await until(b_owns_partitions, 60, "processor-b owning partitions")
            shared = await submit_everywhere(client, "shared")
            await all_accepted(events, shared, 60, "tasks accepted by the two processors")

            code = await asyncio.to_thread(stack.kill, "processor-a", signal.SIGTERM)
            assert code == 0
            alone = await submit_everywhere(client, "alone")
            took = await all_accepted(
                events, alone, RESUME_BOUND_S, "tasks accepted by processor-b alone"
            )
            print(f"clean stop to processing elsewhere: {took:.1f} s (session timeout 60 s)")
            assert not stack.dead_parts() or stack.dead_parts() == [("processor-a", 0)]
        assert "left group" in stack.log_tail("processor-a", 100_000)


async def test_a_second_process_with_the_same_instance_id_stops_the_first(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Two processes with one static id would take the partitions from each other on every
    heartbeat, both processing them; the replaced one must stop instead."""
    settings = failover_settings(make_settings)
    await ensure_topics(settings)
    with stack_of(settings, tmp_path / "stack") as stack:
        for name in ("first", "second"):
            env = {"TASKSTREAM_INSTANCE_ID": "same", "TASKSTREAM_DATA_DIR": str(tmp_path / name)}
            stack.add(name, ["processor"], env)
        async with collecting(settings, "events") as events, TaskstreamClient(settings) as client:
            stack.start("first")
            await all_accepted(events, await submit_everywhere(client, "one"), 60, "first")
            stack.start("second")

            async def first_stopped() -> bool:
                return not stack.parts["first"].alive()

            await until(first_stopped, RESUME_BOUND_S, "the replaced processor stopping")
            code = stack.parts["first"].proc and stack.parts["first"].proc.returncode
            assert code == 1
            assert "FencedInstanceError" in stack.log_tail("first", 100_000)
            await all_accepted(events, await submit_everywhere(client, "two"), 60, "second")
            assert stack.parts["second"].alive()


async def test_killed_delay_agent_restarted_at_once_resumes_before_its_session_could_expire(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = failover_settings(make_settings)
    await ensure_topics(settings)

    def due_now(tag: str) -> list[tuple[int, RetryDue, int | None]]:
        now = now_ms()
        return [
            (1000, RetryDue(client_id=c, task_id=f"{tag}-{p}", attempt=1, due_at_ms=now), p)
            for p, c in enumerate(SOAK_CLIENTS)
        ]

    def forwarded(commands: Collector) -> set[str]:
        return {s.value.task_id for s in commands.seen if isinstance(s.value, RetryDue)}

    async def all_forwarded(commands: Collector, tag: str, timeout_s: float) -> float:
        ids = {f"{tag}-{p}" for p in range(len(SOAK_CLIENTS))}

        async def check() -> bool:
            return ids <= forwarded(commands)

        return await until(check, timeout_s, f"{tag} records forwarded")

    with stack_of(settings, tmp_path / "stack") as stack:
        stack.add("delay", ["delay"])
        stack.start("delay")
        async with collecting(settings, "commands") as commands:
            await produce(settings, due_now("before"))
            await all_forwarded(commands, "before", 60)

            await asyncio.to_thread(stack.kill, "delay", signal.SIGKILL)
            stack.restart("delay")
            await produce(settings, due_now("after"))
            took = await all_forwarded(commands, "after", RESUME_BOUND_S)
            print(f"delay agent restart to forwarding: {took:.1f} s (session timeout 60 s)")
            assert not stack.dead_parts()


class SlowLoadingApp(CounterApp):
    """Loads a partition's store for longer than the session timeout, as a store of a million
    tasks does."""

    LOAD_S = 4.0  # the session timeout of ``settings_for`` is 3 s

    def load_state(self, store: StoreView) -> Counters:
        time.sleep(self.LOAD_S)
        return super().load_state(store)


async def test_a_recovery_longer_than_the_session_timeout_keeps_the_member(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, f"r{uuid.uuid4().hex[:8]}", tmp_path / "data")
    await ensure_topics(settings)
    keys = [key_on_partition(p, settings.partitions) for p in range(settings.partitions)]

    async def run_until(app: CounterApp, events: int) -> StreamRuntime[Any]:
        await produce_commands(kafka_bootstrap, settings.topic("commands"), [incr(k) for k in keys])
        runtime: StreamRuntime[Any] = StreamRuntime(app, settings)
        task = asyncio.ensure_future(runtime.run())
        try:

            async def logged() -> list[Any] | None:
                if task.done():
                    task.result()
                found = await read_all(kafka_bootstrap, settings.topic("events"))
                return found if len(found) >= events else None

            await wait_until(logged, 90)
        finally:
            runtime.stop()
            await asyncio.wait_for(task, 30)
        return runtime

    await run_until(CounterApp(settings.topic_prefix), len(keys))  # every store now holds state
    runtime = await run_until(SlowLoadingApp(settings.topic_prefix), 2 * len(keys))
    # Recovered once per partition: the member was not expelled and made to recover again.
    assert sorted(r.partition for r in runtime.recoveries) == list(range(settings.partitions))
    events = await read_all(kafka_bootstrap, settings.topic("events"))
    assert check_event_log(events) == {k: 2 for k in keys}
