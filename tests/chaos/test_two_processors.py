"""Chaos with two processors sharing the partitions: the distributor as a consumer group.

Two processor processes (each its own data dir, each a static member of the group), a delay
agent and two executors, all OS processes on the suite's broker (nothing here freezes it; the
stack's topics and groups are its own), under a steady load over clients on all four
partitions. During the load: SIGKILL one processor (restarted at
once), SIGKILL the other (restarted at once), stop the first cleanly (SIGTERM: it leaves the
group, the other takes its partitions) and start it again, SIGKILL an executor (restarted).
Each fault comes once the previous one healed (the restarted part, or the processor taking
over, logged it) and the load ran a few seconds since: no fixed schedule pads the run.
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
from tests.support.chaos import (
    BACK_TIMEOUT_S,
    ENV,
    GAP_S,
    SteadyLoad,
    assert_each_task_ended_once,
    load_with_faults_then_drain,
    log_mark,
    logged,
    read_log,
    recovered_partitions,
    until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

PROCESSORS = ("processor-a", "processor-b")


def build_stack(workdir: Path, bootstrap: str) -> ProcessStack:
    stack = ProcessStack(workdir, env={**ENV, "KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    for name in PROCESSORS:
        stack.add(name, ["processor"], {"TASKSTREAM_DATA_DIR": str(workdir / name)})
    stack.add("delay", ["delay"])
    handlers = ["--handlers", "tests.chaos.handlers", "--pool"]
    sessions = [f"--session=two_session_{i}:{c}:8" for i, c in enumerate(SOAK_CLIENTS)]
    stack.add("worker-a", ["worker", *handlers, "--agent-id", "agent_a", *sessions[:2]])
    stack.add("worker-b", ["worker", *handlers, "--agent-id", "agent_b", *sessions[2:]])
    return stack


RECOVERED = " recovered: "
BACK = {"processor-a": RECOVERED, "processor-b": RECOVERED, "worker-b": "pool partitions assigned"}
"""What a (re)started part logs once it is back at work."""


async def faults(stack: ProcessStack, log: list[str]) -> None:
    """The fault schedule, paced on conditions: each fault once the previous one healed (the
    part that took over or came back logged it) and the load ran ``GAP_S`` since."""
    t0 = time.monotonic()

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - t0:5.1f}s {what}")

    async def stop(name: str, sig: int) -> None:
        pid = stack.parts[name].pid
        code = await asyncio.to_thread(stack.kill, name, sig)
        note(f"{signal.Signals(sig).name} {name} pid {pid} -> exit {code}")
        if sig == signal.SIGTERM:
            assert code == 0, f"{name} exited with {code} on SIGTERM"

    marks: dict[str, int] = {}

    async def restart(name: str) -> None:
        marks[name] = log_mark(stack, name)
        stack.restart(name)
        await logged(stack, name, BACK[name], marks[name], f"{name} back at work after its restart")
        note(f"{name} back")
        await asyncio.sleep(GAP_S)

    await asyncio.sleep(GAP_S)
    await stop("processor-a", signal.SIGKILL)
    await restart("processor-a")
    await stop("processor-b", signal.SIGKILL)
    await restart("processor-b")
    # A clean stop: processor-a leaves the group and processor-b takes its partitions.
    mark = log_mark(stack, "processor-b")
    await stop("processor-a", signal.SIGTERM)
    held = recovered_partitions(stack, "processor-a", marks["processor-a"])

    async def taken_over() -> bool:
        return held <= recovered_partitions(stack, "processor-b", mark)

    await until(taken_over, BACK_TIMEOUT_S, f"processor-b taking processor-a's partitions {held}")
    note(f"processor-b took over {sorted(held)}")
    await asyncio.sleep(GAP_S)
    await restart("processor-a")
    await stop("worker-b", signal.SIGKILL)
    await restart("worker-b")


async def test_two_processors_one_killed_every_task_ends_once(
    kafka_bootstrap: str, chaos_workdir: Path, process_stacks: list[ProcessStack]
) -> None:
    stack = build_stack(chaos_workdir, kafka_bootstrap)
    process_stacks.append(stack)
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
            faults_bound_s=300,
            quiet_s=GAP_S,
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
    assert stack.left_running() == []
