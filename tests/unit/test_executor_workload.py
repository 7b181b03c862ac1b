"""The workload an executor reports: a value, a function or running/concurrency; and a report
again as soon as a result brings it below ``max_workload`` after a report at or above it."""

from __future__ import annotations

import asyncio

import pytest

from schemas.commands import ReportResult, SessionHeartbeat, TaskStarted
from streams.executor.executor import Executor, SessionSpec
from streams.executor.workload import Workload
from streams.settings import Settings


def test_a_report_at_or_above_the_bound_is_followed_by_one_when_it_falls_below() -> None:
    level = [0.95]
    w = Workload(lambda: level[0], bound=0.9)
    assert not w.fell()  # nothing reported yet
    assert w.report() == 0.95
    assert not w.fell()  # still over
    level[0] = 0.5
    assert w.fell()
    assert w.report() == 0.5
    assert not w.fell()  # reported below: nothing more to say until the next heartbeat


def test_a_report_below_the_bound_never_asks_for_another() -> None:
    level = [0.5]
    w = Workload(lambda: level[0], bound=0.9)
    w.report()
    level[0] = 0.1
    assert not w.fell()


def test_a_fixed_value_replaces_the_default_and_is_checked() -> None:
    w = Workload(lambda: 0.0, bound=0.9)
    w.set(0.95)
    assert w.report() == 0.95
    assert not w.fell()  # a fixed value stays where it is
    with pytest.raises(ValueError, match="between 0 and 1"):
        w.set(1.5)
    w.set(lambda: 3.0)
    assert w.current() == 1.0  # a function's value is clamped


async def _handler(ctx: object) -> dict[str, bool]:
    return {"ok": True}


def _executor(workload: list[float]) -> Executor:
    return Executor(
        Settings(topic_prefix="wl", max_workload=0.9),
        handlers={"workflow_trigger": _handler},
        sessions=[SessionSpec("s1", "A", "agent-1", 2), SessionSpec("s2", "A", "agent-1", 2)],
        workload=lambda: workload[0],
    )


def _outbox(executor: Executor) -> list[object]:
    queue: asyncio.Queue[object] = executor._outbox  # type: ignore[assignment]
    return [queue.get_nowait() for _ in range(queue.qsize())]


def _result() -> ReportResult:
    return ReportResult(client_id="A", task_id="t1", fencing_token=1, success=True)


async def test_the_executor_reports_its_sessions_again_when_a_result_frees_room() -> None:
    level = [0.95]
    executor = _executor(level)
    executor._report_workload()
    beats = [b for b in _outbox(executor) if isinstance(b, SessionHeartbeat)]
    assert [(b.session_id, b.workload) for b in beats] == [
        ("s1", 0.95),
        ("s2", 0.95),
    ]
    level[0] = 0.5
    executor._emit(TaskStarted(client_id="A", task_id="t2", fencing_token=2))
    assert [type(c) for c in _outbox(executor)] == [TaskStarted]  # only a result frees room
    executor._emit(_result())
    sent = _outbox(executor)
    assert isinstance(sent[0], ReportResult)
    assert [(b.session_id, b.workload) for b in sent[1:] if isinstance(b, SessionHeartbeat)] == [
        ("s1", 0.5),
        ("s2", 0.5),
    ]
    assert len(sent) == 3
    executor._emit(_result())
    assert [type(c) for c in _outbox(executor)] == [ReportResult]  # said once is enough
