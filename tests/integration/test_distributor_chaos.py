"""A randomized run (issue 3, "Done when" 8): 2,000 tasks of many clients, random executor
failures, random cancels, and one SIGKILL of the processor (its own OS process) in the
middle. Every accepted task ends in exactly one terminal state, and each completed task
appears exactly once on ``task.completed`` -- no deduplication in the assertion: the runtime's
output guarantee (side records of a checkpointed cycle are staged in the store and checked
against their topics on recovery) is what is under test."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import commands as c
from schemas import events as ev
from schemas.catalog import load_catalog
from schemas.records import Assignment
from streams.settings import Settings
from tests.integration.distributor_harness import (
    Commands,
    DelayRunner,
    EventTail,
    FakeExecutor,
    ProcessorProcess,
    Reply,
    check_causation,
    layout,
    read_topic,
    register,
    submit,
    terminal_states,
)
from tests.integration.runtime_app import key_on_partition

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

TASKS = 2000
# Two clients per partition of the 4 (so every partition has work when the kill comes).
CLIENTS = [key_on_partition(p, 4, stem=f"k{p}x{j}-") for p in range(4) for j in range(2)]
OPERATIONS = sorted(load_catalog())
KILL_AFTER_ASSIGNMENTS = 700


async def test_randomized_run_with_a_processor_kill_ends_every_task_exactly_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    rnd = random.Random()
    settings = await layout(
        make_settings,
        batch_window_ms=100,
        retry_base_ms=50,
        max_retries=2,
        circuit_cooldown_ms=100,
        default_timeout_ms=8000,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=200,
    )

    def script(a: Assignment) -> Reply:
        if a.kind == "batch":
            return Reply(items={i.task_id: rnd.random() > 0.15 for i in a.items})
        return Reply(success=rnd.random() > 0.15, error="random failure")

    first = ProcessorProcess(settings, tmp_path / "p1.log").start()
    second: ProcessorProcess | None = None
    executor = await FakeExecutor(settings, script).start()
    delay = await DelayRunner(settings).start()
    tail = await EventTail(settings).start()
    commands = Commands(settings)
    await commands.__aenter__()
    try:
        await commands.send(
            *(
                register(cl, f"{cl}-s{j}", max_concurrent=rnd.randint(2, 6))
                for cl in CLIENTS
                for j in range(2)
            )
        )
        await tail.wait(
            lambda es: sum(isinstance(e, ev.SessionRegistered) for e in es) == 2 * len(CLIENTS),
            timeout_s=30,
        )
        submitted: list[tuple[str, str]] = []
        for start in range(0, TASKS, 100):
            chunk = [
                (rnd.choice(CLIENTS), f"x{i:05d}", rnd.choice(OPERATIONS))
                for i in range(start, start + 100)
            ]
            await commands.send(*(submit(cl, t, op) for cl, t, op in chunk))
            submitted.extend((cl, t) for cl, t, _ in chunk)
            # Random cancels of tasks submitted so far (queued, running or already done).
            cancels = rnd.sample(submitted, 6)
            await commands.send(*(c.CancelTask(client_id=cl, task_id=t) for cl, t in cancels))
            if second is None and len(executor.received) >= KILL_AFTER_ASSIGNMENTS:
                # Kill while the processor is busy with the chunk just sent.
                await asyncio.sleep(rnd.uniform(0.005, 0.03))
                assert first.kill(signal.SIGKILL) == -signal.SIGKILL
                second = ProcessorProcess(settings, tmp_path / "p2.log").start()
            await asyncio.sleep(0.1)
        if second is None:  # the run was faster than the kill: kill in the drain instead
            assert first.kill(signal.SIGKILL) == -signal.SIGKILL
            second = ProcessorProcess(settings, tmp_path / "p2.log").start()

        def all_terminal(events: list[Any]) -> bool:
            accepted = sum(isinstance(e, ev.TaskAccepted) for e in events)
            return accepted == TASKS and len(terminal_states(events)) == TASKS

        await tail.wait(all_terminal, timeout_s=90)
        assert second.alive(), second.log_text()[-3000:]
    finally:
        await commands.__aexit__(None, None, None)
        await tail.stop()
        await executor.stop()
        await delay.stop()
        for proc in (first, second):
            if proc is not None and proc.alive():
                proc.kill(signal.SIGTERM)

    records = await read_topic(settings, "events")
    check_causation(records)
    events = [r.value for r in records]
    states = terminal_states(events)
    accepted = [e.task_id for e in events if isinstance(e, ev.TaskAccepted)]
    assert sorted(accepted) == sorted(t for _, t in submitted)  # each accepted once
    twice = {t: s for t, s in states.items() if len(s) != 1}
    assert not twice, f"tasks with more than one terminal state: {list(twice.items())[:10]}"
    outcome = Counter(s[0] for s in states.values())
    assert outcome["task.completed"] > TASKS // 2
    assert outcome["task.failed"] > 0 and outcome["task.cancelled"] > 0

    completed_topic = Counter(r.value.task_id for r in await read_topic(settings, "completed"))
    completed_log = {t for t, s in states.items() if s == ["task.completed"]}
    assert set(completed_topic) == completed_log
    repeated = {t: n for t, n in completed_topic.items() if n > 1}
    assert not repeated, f"{len(repeated)} tasks appear more than once on task.completed"
    # Every other ending has exactly one record on task.failed, saying how the task ended.
    failed = [r.value for r in await read_topic(settings, "failed")]
    ended_otherwise = {t: s[0] for t, s in states.items() if s != ["task.completed"]}
    assert Counter(v.task_id for v in failed) == Counter(dict.fromkeys(ended_otherwise, 1))
    how = {"task.failed": "failed", "task.cancelled": "cancelled", "task.rejected": "rejected"}
    assert {v.task_id: v.outcome for v in failed} == {t: how[s] for t, s in ended_otherwise.items()}
    # The kill really interrupted work: the second processor recovered the partitions.
    assert "recovered" in second.log_text()
