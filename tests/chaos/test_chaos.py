"""Chaos: SIGKILL every part under a steady load, freeze the broker, then check from the logs
that nothing was lost or done twice.

One run of the whole stack as OS processes (processor, delay agent, projector + view, two
executors), a steady load of tasks from the client SDK and, during it, in this order:
SIGKILL the processor (restarted), SIGKILL the delay agent (restarted; once retries wait in
every delay tier the run uses), SIGKILL the processor again, SIGKILL the projector/view
(restarted), SIGKILL an executor (restarted), freeze the broker for 10 s (SIGSTOP/SIGCONT),
SIGKILL the processor a third time. Each fault comes once the part the previous one
restarted is back at work (its log says so; after the freeze, a task submitted since ends)
and the load ran a few seconds on the healed stack, so no fixed schedule pads the run or, on
a slow machine, overlaps two faults on the write path; only the view (a reader) may still be
starting when the executor is killed, and it answers again before the freeze. Then the load
stops, every accepted task must become terminal within a bound, and the invariants are
checked on what the processes wrote:

1. every accepted task (``task.accepted`` in ``task.events``) ends in exactly one terminal
   state, and it is the one its handler dictates (see ``tests/chaos/handlers.py``);
2. no (task, attempt) appears twice on ``task.completed``; every completed task is there once;
3. the projection served over HTTP (``/status``, every row of ``/tasks``) equals a fold of
   the event log done here;
4. no process the test started is left running.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bench.processes import ProcessStack
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import events as ev
from streams.domain.retry import backoff_ms, tier_for_delay
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from tests.chaos.conftest import chaos_broker
from tests.support.chaos import (
    BACK_TIMEOUT_S,
    CLIENTS,
    ENV,
    GAP_S,
    SteadyLoad,
    assert_each_task_ended_once,
    flowing,
    load_with_faults_then_drain,
    log_mark,
    logged,
    read_log,
    until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

FREEZE_S = 10.0


def build_stack(workdir: Path) -> ProcessStack:
    stack = ProcessStack(workdir, env=ENV, broker_kind=chaos_broker())
    stack.add("processor", ["processor"])
    stack.add("delay", ["delay"])
    stack.add("view", ["view"])
    handlers = ["--handlers", "tests.chaos.handlers", "--pool"]
    stack.add(
        "worker-a",
        [
            "worker",
            *handlers,
            "--agent-id",
            "agent_a",
            "--session",
            f"chaos_session_1:{CLIENTS[0]}:8",
            "--session",
            f"chaos_session_2:{CLIENTS[1]}:8",
        ],
    )
    stack.add(
        "worker-b",
        [
            "worker",
            *handlers,
            "--agent-id",
            "agent_b",
            "--session",
            f"chaos_session_3:{CLIENTS[2]}:8",
        ],
    )
    return stack


READY = {
    "processor": " recovered: ",
    "delay": ": assigned ",
    "worker-a": "pool partitions assigned",
}
"""What a restarted part logs once it is back at work (the processor once per partition)."""


async def faults(stack: ProcessStack, settings: Settings, load: SteadyLoad, log: list[str]) -> None:
    """The fault schedule, paced on conditions: each fault once the part the previous one
    restarted is back at work (and the load ran ``GAP_S`` on the healed stack). The view is
    off the write path: the executor's kill does not wait for it to come back, the freeze
    does."""
    t0 = time.monotonic()

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - t0:5.1f}s {what}")

    async def kill_and_restart(name: str) -> None:
        pid = stack.parts[name].pid
        code = await asyncio.to_thread(stack.kill, name)
        note(f"SIGKILL {name} pid {pid} -> exit {code}")
        mark = log_mark(stack, name)
        stack.restart(name)
        what = f"{name} back at work after its restart"
        if name == "view":

            async def answers() -> bool:
                return await view_answers(stack, sessions=3)

            await until(answers, BACK_TIMEOUT_S, what)
        else:
            count = settings.partitions if name == "processor" else 1
            await logged(stack, name, READY[name], mark, what, count)
        note(f"{name} back")

    async def fault(name: str) -> None:
        await kill_and_restart(name)
        await asyncio.sleep(GAP_S)

    tiers = {
        tier_for_delay(backoff_ms(n, settings.retry_base_ms, settings.retry_max_ms))
        for n in range(1, settings.max_retries + 1)
    }

    async def every_tier_holds_a_retry() -> bool:
        now_ms = time.time() * 1000
        waiting = {
            e.tier_ms
            for _, _, e in await read_log(settings, "events")
            if isinstance(e, ev.TaskRetryScheduled) and e.due_at_ms > now_ms + 200
        }
        return tiers <= waiting

    await asyncio.sleep(GAP_S)
    await fault("processor")
    # The delay agent dies holding retries in every tier the run uses (1 s, 2 s, 4 s).
    await until(every_tier_holds_a_retry, BACK_TIMEOUT_S, f"retries waiting in tiers {tiers}")
    note(f"retries waiting in tiers {sorted(tiers)}")
    await fault("delay")
    await fault("processor")
    view_back = asyncio.create_task(kill_and_restart("view"))
    try:
        await asyncio.sleep(GAP_S)
        await fault("worker-a")
        await view_back
    finally:
        view_back.cancel()
    assert stack.broker is not None
    stack.broker.pause()
    note("SIGSTOP broker")
    await asyncio.sleep(FREEZE_S)
    before = set(load.acked)
    stack.broker.resume()
    note("SIGCONT broker")
    await flowing(settings, load, before, "a task submitted after the freeze ending")
    note("tasks end again")
    await asyncio.sleep(GAP_S)
    await kill_and_restart("processor")


async def view_json(stack: ProcessStack, path: str) -> dict[str, Any]:
    body, _ = await asyncio.to_thread(stack.view_get, path)
    return body


async def view_answers(stack: ProcessStack, sessions: int) -> bool:
    try:
        status = await view_json(stack, "/status")
    except (OSError, ValueError):
        return False
    return int(status["active_sessions"]) >= sessions


async def all_view_tasks(stack: ProcessStack) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    cursor = ""
    while True:
        page = await view_json(stack, f"/tasks?limit=1000{cursor}")
        for row in page["items"]:
            rows[row["task_id"]] = row
        if not page["next_cursor"]:
            return rows
        cursor = f"&cursor={page['next_cursor']}"


async def test_no_task_lost_or_done_twice_when_parts_are_killed(
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
        return await view_answers(stack, sessions=3)

    await until(ready, 60, "the view showing the three executor sessions")

    load = SteadyLoad(settings)
    fault_log: list[str] = []
    try:
        await load_with_faults_then_drain(
            settings,
            load,
            faults(stack, settings, load, fault_log),
            faults_bound_s=300,
            quiet_s=GAP_S,
            no_part_died=no_part_died,
        )
    finally:
        print("\n".join(fault_log))

    # Quiesce: only the processor writes the event log; stop it (and what feeds it) so the
    # log is final, then compare everything against it.
    for name in ("worker-a", "worker-b", "delay", "processor"):
        code = await asyncio.to_thread(stack.kill, name, signal.SIGTERM)
        assert code == 0, f"{name} exited with {code} on SIGTERM"
    events = await assert_each_task_ended_once(settings, load.acked)

    # 3. The projection equals a fold of the event log.
    reference = MemorySource()
    for partition, offset, event in events:
        reference.feed(event, partition, offset)
    reference.flush()
    expected = ProjectionReader(reference)
    ends = {str(p): 0 for p in range(settings.partitions)}
    for partition, offset, _ in events:
        ends[str(partition)] = max(ends[str(partition)], offset + 1)

    async def caught_up() -> bool:
        status = await view_json(stack, "/status")
        return bool(status["projection"]["as_of_offsets"] == ends)

    await until(caught_up, 60, "the view folding the whole event log")
    status = await view_json(stack, "/status")
    status.pop("projection")
    assert status == expected.status().model_dump(mode="json")
    rows = await all_view_tasks(stack)
    reference_rows = {
        row.task_id: row.model_dump(mode="json") for row in expected.tasks(limit=100_000).items
    }
    assert rows.keys() == reference_rows.keys()
    differing = [t for t in rows if rows[t] != reference_rows[t]]
    assert not differing, f"view rows differ from the fold: {differing[:10]}"

    # 4. No process left running.
    codes = stack.stop_parts()
    assert codes["view"] == 0, f"the view exited with {codes['view']} on SIGTERM"
    assert stack.broker is not None
    stack.broker.stop()
    assert stack.left_running() == []
