"""Chaos with two processors sharing the partitions: the distributor as a consumer group.

Two processor processes (each its own data dir, each a static member of the group), a delay
agent and two executors, all OS processes on a broker of the test's own, under a steady load
over clients on all four partitions. During the load: SIGKILL one processor (restarted at
once), SIGKILL the other (restarted at once), stop the first cleanly (SIGTERM: it leaves the
group, the other takes its partitions) and start it again, SIGKILL an executor (restarted).
Then every accepted task must end in exactly one terminal state, the one its handler
dictates, accepted once (two owners of a partition would both write its events), with one
``task.completed`` record per (task, attempt); and both processors must have owned
partitions.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.processes import ProcessStack
from bench.soak_load import SOAK_CLIENTS
from schemas import events as ev
from streams.kafka.topics import ensure_topics
from tests.chaos.conftest import chaos_broker
from tests.support.chaos import (
    ENV,
    SteadyLoad,
    assert_each_task_ended_once,
    load_with_faults_then_drain,
    read_log,
    until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

LOAD_S = 48.0
PROCESSORS = ("processor-a", "processor-b")


def build_stack(workdir: Path) -> ProcessStack:
    stack = ProcessStack(workdir, env=ENV, broker_kind=chaos_broker())
    for name in PROCESSORS:
        stack.add(name, ["processor"], {"TASKSTREAM_DATA_DIR": str(workdir / name)})
    stack.add("delay", ["delay"])
    handlers = ["--handlers", "tests.chaos.handlers", "--pool"]
    sessions = [f"--session=two_session_{i}:{c}:8" for i, c in enumerate(SOAK_CLIENTS)]
    stack.add("worker-a", ["worker", *handlers, "--agent-id", "agent_a", *sessions[:2]])
    stack.add("worker-b", ["worker", *handlers, "--agent-id", "agent_b", *sessions[2:]])
    return stack


async def faults(stack: ProcessStack, log: list[str]) -> None:
    t0 = time.monotonic()

    async def at(second: float) -> None:
        await asyncio.sleep(max(0.0, t0 + second - time.monotonic()))

    async def stop(name: str, sig: int) -> None:
        pid = stack.parts[name].pid
        code = await asyncio.to_thread(stack.kill, name, sig)
        log.append(
            f"{time.monotonic() - t0:5.1f}s {signal.Signals(sig).name} {name} pid {pid} -> exit {code}"
        )
        if sig == signal.SIGTERM:
            assert code == 0, f"{name} exited with {code} on SIGTERM"

    await at(8)
    await stop("processor-a", signal.SIGKILL)
    stack.restart("processor-a")
    await at(18)
    await stop("processor-b", signal.SIGKILL)
    stack.restart("processor-b")
    await at(28)
    await stop("processor-a", signal.SIGTERM)
    await at(31)
    stack.restart("processor-a")
    await at(38)
    await stop("worker-b", signal.SIGKILL)
    stack.restart("worker-b")


async def test_two_processors_one_killed_every_task_ends_once(
    chaos_workdir: Path, process_stacks: list[ProcessStack]
) -> None:
    stack = build_stack(chaos_workdir)
    process_stacks.append(stack)
    await asyncio.to_thread(stack.start_broker)
    settings = stack.settings()
    await ensure_topics(settings)
    for name in stack.parts:
        stack.start(name)

    def no_part_died(what: str) -> None:
        dead = stack.dead_parts()
        assert not dead, f"parts exited on their own ({what}): {dead}"

    async def ready() -> bool:
        no_part_died("while starting")
        owning = all("recovered" in stack.log_tail(p, 200_000) for p in PROCESSORS)
        events = await read_log(settings, "events")
        sessions = {e.session_id for _, _, e in events if isinstance(e, ev.SessionRegistered)}
        return owning and len(sessions) >= len(SOAK_CLIENTS)

    await until(ready, 90, "both processors owning partitions and every session registered")

    load = SteadyLoad(settings, SOAK_CLIENTS, prefix="two")
    fault_log: list[str] = []
    try:
        await load_with_faults_then_drain(
            settings,
            load,
            faults(stack, fault_log),
            load_s=LOAD_S,
            quiet_s=LOAD_S - 40,
            no_part_died=no_part_died,
        )
    finally:
        print("\n".join(fault_log))

    for name in ("worker-a", "worker-b", "delay", *PROCESSORS):
        code = await asyncio.to_thread(stack.kill, name, signal.SIGTERM)
        assert code == 0, f"{name} exited with {code} on SIGTERM"
    events = await assert_each_task_ended_once(settings, load.acked)

    accepted_per_task = Counter(e.task_id for _, _, e in events if isinstance(e, ev.TaskAccepted))
    twice = [t for t, n in accepted_per_task.items() if n > 1]
    assert not twice, f"tasks accepted more than once (two owners of a partition?): {twice[:10]}"
    owners = {
        name: {
            int(line.split("partition ", 1)[1].split()[0])
            for line in stack.log_tail(name, 10_000_000).splitlines()
            if " recovered: " in line
        }
        for name in PROCESSORS
    }
    print(f"partitions each processor recovered at some point: {owners}")
    assert all(owners.values()), f"a processor never owned a partition: {owners}"

    stack.stop_parts()
    assert stack.broker is not None
    stack.broker.stop()
    assert stack.left_running() == []
