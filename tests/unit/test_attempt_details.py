"""A result's traceback, resources used and quality reach the task's events (the decider) and
are sent by the executor's pool, the traceback masked and bounded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from schemas import commands as c
from schemas import events as ev
from schemas.commands import MAX_TRACEBACK_LENGTH, ReportResult, ResourcesUsed
from schemas.records import Assignment, AssignmentItem
from streams.executor import ExecutorError, TaskContext, WorkerPool
from streams.executor.outcomes import masked_traceback, payload_masker
from tests.support.gwt import Harness, of, register, submit
from tests.support.pool_recorder import Recorder

OP = "workflow_trigger"  # needs a session, not batchable
USED = ResourcesUsed(cpu=0.2, memory=128, disk=0)


def test_a_failed_attempt_keeps_its_traceback_resources_and_quality() -> None:
    h = Harness().given(register("s1"))
    h.do(submit("t1", operation=OP, max_retries=3))
    token = h.token("t1")
    events = h.do(
        c.ReportResult(
            client_id="A",
            task_id="t1",
            fencing_token=token,
            success=False,
            error="boom",
            traceback="Traceback (most recent call last):\n  ...\nValueError: boom\n",
            resources_used=USED,
            quality=0.1,
        )
    )
    (failed,) = of(events, ev.TaskAttemptFailed)
    assert failed.traceback is not None and failed.traceback.endswith("ValueError: boom\n")
    assert (failed.resources_used, failed.quality) == (USED, 0.1)


def test_a_completion_keeps_resources_and_quality() -> None:
    h = Harness().given(register("s1"))
    h.do(submit("t1", operation=OP))
    events = h.succeed("t1", resources_used=USED, quality=0.95)
    (done,) = of(events, ev.TaskCompleted)
    assert (done.resources_used, done.quality) == (USED, 0.95)


def task(task_id: str, **payload: Any) -> Assignment:
    return Assignment(
        kind="task",
        client_id="c1",
        session_id="s1",
        operation="op",
        task_id=task_id,
        fencing_token=1,
        items=[AssignmentItem(task_id=task_id, payload=payload)],
    )


def _deep(token: str) -> None:
    raise RuntimeError(f"refused: the upstream rejected {token}; password=hunter2")


async def test_the_pool_sends_the_masked_traceback_and_what_the_handler_reported() -> None:
    recorder = Recorder()

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        ctx.report_resources(cpu=1.5, memory=64.0, disk=2.0)
        ctx.report_quality(0.8)
        if ctx.task_id == "bad":
            _deep(str(ctx.payload["token"]))
        return {}

    pool = WorkerPool({"op": handler}, report=recorder)
    await pool.start()
    await pool.submit(task("bad", token="tok-1234567890"))
    await pool.submit(task("good"))
    assert await pool.close(drain_timeout_s=5)

    bad = recorder.result("bad")
    assert bad.traceback is not None
    assert bad.traceback.startswith("Traceback (most recent call last):")
    assert "in _deep" in bad.traceback and "RuntimeError: refused" in bad.traceback
    # The payload's credential is masked in error and traceback; a credential-looking word in
    # the traceback too (the view masks such words in errors when it shows them).
    assert "tok-1234567890" not in bad.traceback and "hunter2" not in bad.traceback
    assert bad.error is not None and "tok-1234567890" not in bad.error
    assert bad.resources_used == ResourcesUsed(cpu=1.5, memory=64.0, disk=2.0)
    assert bad.quality == 0.8
    good = recorder.result("good")
    assert good.success and good.traceback is None and good.quality == 0.8


def test_a_long_traceback_keeps_its_end() -> None:
    text = "frame\n" * 10_000 + "ValueError: the end\n"
    kept = masked_traceback(text, payload_masker({}))
    assert kept is not None and len(kept) == MAX_TRACEBACK_LENGTH
    assert kept.endswith("ValueError: the end\n") and kept.startswith("...\n")
    ReportResult(client_id="c", task_id="t", fencing_token=1, success=False, traceback=kept)


def test_bad_resources_and_quality_are_refused_in_the_handler() -> None:
    ctx = TaskContext(
        task_id="t", client_id="c", operation="op", payload={}, attempt=1, fencing_token=1
    )
    bad_calls: list[Callable[[], None]] = [
        lambda: ctx.report_quality(1.5),
        lambda: ctx.report_resources(cpu=-1),
        lambda: ctx.report_resources(memory=float("nan")),
    ]
    for bad in bad_calls:
        with pytest.raises(ExecutorError):
            bad()
    assert (ctx.quality, ctx.resources_used) == (None, None)
