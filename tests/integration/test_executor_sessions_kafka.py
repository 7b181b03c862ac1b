"""The executor with the processor on a real broker: a session's ``max_concurrent`` bounds its
handler calls (batches included), a permanent failure ends a task after one attempt without
touching the session's health, and a restarted executor (a SIGKILLed OS process) gets its
session's work back at once instead of after the timeouts."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import events as ev
from streams.executor import Executor, PermanentError, SessionSpec, TaskContext
from streams.settings import Settings

from .distributor_harness import Commands, InProcessProcessor, layout, submit, wait_for_events

pytestmark = pytest.mark.integration


class Overlap:
    """Counts the handler calls running per session; a call yields a few times so that
    anything allowed to run beside it would."""

    def __init__(self) -> None:
        self.active: dict[str | None, int] = {}
        self.peak: dict[str | None, int] = {}
        self.calls = 0

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        s = ctx.session_id
        self.active[s] = self.active.get(s, 0) + 1
        self.peak[s] = max(self.peak.get(s, 0), self.active[s])
        self.calls += 1
        try:
            for _ in range(3):
                await asyncio.sleep(0.01)
            return {"by": s}
        finally:
            self.active[s] -= 1


def finished(ids: set[str]) -> Callable[[list[Any]], bool]:
    def check(events: list[Any]) -> bool:
        done = {e.task_id for e in events if isinstance(e, (ev.TaskCompleted, ev.TaskFailed))}
        return ids <= done

    return check


async def test_a_one_at_a_time_session_never_gets_two_calls_batches_included(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(make_settings, batch_window_ms=300, max_batch_size=5)
    processor = await InProcessProcessor(settings).start()
    handler = Overlap()
    executor = Executor(
        settings,
        sessions=[
            SessionSpec("one-at-a-time", "client_one", "agent-1", max_concurrent=1),
            SessionSpec("wide", "client_wide", "agent-2", max_concurrent=3),
        ],
        handlers={},
        default_handler=handler,
        pool=True,
        concurrency=8,  # room for more than one call: only the session's limit holds it back
    )
    try:
        await executor.start()
        ids = {f"one-tag-{i}" for i in range(8)} | {f"one-note-{i}" for i in range(3)}
        wide = {f"wide-{i}" for i in range(6)}
        async with Commands(settings) as commands:
            await commands.send(
                *(submit("client_one", t, "tag_add") for t in sorted(ids) if "tag" in t),
                *(submit("client_one", t, "conversation_send") for t in sorted(ids) if "note" in t),
                *(submit("client_wide", t, "tag_add") for t in sorted(wide)),
            )
        events = await wait_for_events(settings, finished(ids | wide), timeout_s=60)
        batches = [
            e
            for e in events
            if isinstance(e, ev.BatchProcessed) and e.session_id == "one-at-a-time"
        ]
        assert any(len(b.task_ids) > 1 for b in batches), "no batch of several items was sent"
        assert handler.peak["one-at-a-time"] == 1
        assert {e.task_id for e in events if isinstance(e, ev.TaskCompleted)} >= ids | wide
    finally:
        await executor.stop()
        await processor.stop()


async def test_a_permanent_failure_ends_after_one_attempt_and_spares_the_session(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(make_settings)
    processor = await InProcessProcessor(settings).start()
    attempts: list[str] = []

    async def refuse(ctx: TaskContext) -> dict[str, Any]:
        attempts.append(ctx.task_id)
        raise PermanentError("HTTP 422: phone number is not valid")

    executor = Executor(
        settings,
        sessions=[SessionSpec("s-perm", "client_perm", "agent-1", max_concurrent=1)],
        handlers={"conversation_send": refuse},
    )
    try:
        await executor.start()
        ids = {f"poison-{i}" for i in range(4)}
        async with Commands(settings) as commands:
            await commands.send(
                *(submit("client_perm", t, "conversation_send", max_retries=3) for t in sorted(ids))
            )
        events = await wait_for_events(settings, finished(ids), timeout_s=60)
        assert sorted(attempts) == sorted(ids)  # one attempt each, no retries
        failed = [e for e in events if isinstance(e, ev.TaskFailed)]
        assert {e.task_id for e in failed} == ids
        assert {e.reason for e in failed} == {"permanent failure"}
        dead = [e for e in events if isinstance(e, ev.TaskDeadLettered)]
        assert {e.task_id for e in dead} == ids
        assert all("phone number is not valid" in e.reason for e in dead)
        assert not [e for e in events if isinstance(e, ev.TaskRetryScheduled)]
        assert {e.failure_class for e in events if isinstance(e, ev.TaskAttemptFailed)} == {
            "permanent"
        }
        # Four failures in a row would have opened a blamed session's circuit.
        assert not [e for e in events if isinstance(e, ev.SessionHealthChanged)]
    finally:
        await executor.stop()
        await processor.stop()


def start_executor(settings: Settings, sleep_s: float, log: Path) -> subprocess.Popen[bytes]:
    values = settings.model_dump(mode="json", exclude_none=True)
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.executor_process",
            json.dumps(values),
            "s-kill",
            "client_kill",
            str(sleep_s),
        ],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # noqa: SIM115 - handed to the child
    )


async def test_a_restarted_executor_gets_its_sessions_work_back_at_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = await layout(make_settings)
    processor = await InProcessProcessor(settings).start()
    log = tmp_path / "executors.log"
    first = start_executor(settings, sleep_s=600, log=log)
    second: subprocess.Popen[bytes] | None = None
    try:
        await wait_for_events(
            settings,
            lambda es: any(
                isinstance(e, ev.SessionRegistered) and e.session_id == "s-kill" for e in es
            ),
            timeout_s=60,
        )
        async with Commands(settings) as commands:
            # A five-minute timeout: only the takeover can bring it back within the test.
            await commands.send(submit("client_kill", "long-1", "conversation_send"))
        await wait_for_events(
            settings,
            lambda es: any(
                isinstance(e, ev.TaskStartedEvent) and e.task_id == "long-1" for e in es
            ),
            timeout_s=60,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_executor(settings, sleep_s=0, log=log)
        events = await wait_for_events(settings, finished({"long-1"}), timeout_s=60)
        takeovers = [
            e
            for e in events
            if isinstance(e, ev.SessionRegistered) and e.requeued_task_ids == ["long-1"]
        ]
        assert len(takeovers) == 1 and takeovers[0].incarnation is not None
        assigned = [e for e in events if isinstance(e, ev.TaskAssigned) and e.task_id == "long-1"]
        assert len(assigned) == 2 and assigned[0].fencing_token != assigned[1].fencing_token
        [done] = [e for e in events if isinstance(e, ev.TaskCompleted)]
        assert done.output == {"pid": second.pid}
        assert not [e for e in events if isinstance(e, (ev.TaskTimedOut, ev.SessionCleaned))]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        await processor.stop()
