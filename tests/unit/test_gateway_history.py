"""Execution history (seed 001 task_executions) folded from the event log: one entry per
attempt with its session, start, duration and output or error."""

from __future__ import annotations

from typing import Any

from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import events as ev


def _feed(*events: ev.Event) -> ProjectionReader:
    source = MemorySource()
    for event in events:
        source.feed(event)
    source.flush()
    return ProjectionReader(source)


def _e(cls: type[ev.TaskEvent], at: int, **fields: Any) -> ev.Event:
    return cls(client_id="c", occurred_at_ms=at, task_id="t", **fields)


def _assigned(at: int, attempt: int, token: int, session: str = "s1") -> ev.Event:
    return _e(
        ev.TaskAssigned,
        at,
        operation="tag_add",
        session_id=session,
        attempt=attempt,
        fencing_token=token,
        deadline_at_ms=at + 1000,
        priority=3,
    )


ACCEPTED = ev.TaskAccepted(
    client_id="c",
    occurred_at_ms=1,
    task_id="t",
    operation="tag_add",
    priority=3,
    max_retries=3,
    timeout_ms=1000,
)


def test_every_attempt_with_session_start_duration_and_outcome() -> None:
    reader = _feed(
        ACCEPTED,
        _assigned(10, 1, 1),
        _e(ev.TaskStartedEvent, 11, session_id="s1", fencing_token=1),
        _e(ev.TaskAttemptFailed, 20, attempt=1, session_id="s1", error="boom", execution_time_ms=9),
        _assigned(30, 2, 2, "s2"),
        _e(ev.TaskTimedOut, 1040, attempt=2, session_id="s2", fencing_token=2),
        _e(ev.TaskAttemptFailed, 1040, attempt=2, session_id="s2", error="timed out after 1000 ms"),
        _assigned(1100, 3, 3),
        ev.SessionReleased(
            client_id="c", occurred_at_ms=1150, session_id="s1", requeued_task_ids=["t"]
        ),
        _assigned(1200, 3, 4, "s3"),
        _e(ev.TaskStartedEvent, 1201, session_id="s3", fencing_token=4),
        _e(
            ev.TaskCompleted,
            1300,
            operation="tag_add",
            attempt=3,
            session_id="s3",
            output={"ok": True},
            execution_time_ms=99,
        ),
    )
    row = reader.task("t")
    assert row is not None
    got = [
        (
            x.attempt,
            x.session_id,
            x.status,
            x.assigned_at_ms,
            x.started_at_ms,
            x.finished_at_ms,
            x.execution_time_ms,
            x.output,
            x.error,
        )
        for x in row.executions
    ]
    assert got == [
        (1, "s1", "failed", 10, 11, 20, 9, None, "boom"),
        (2, "s2", "timed_out", 30, None, 1040, 0, None, "timed out after 1000 ms"),
        (3, "s1", "interrupted", 1100, None, 1150, None, None, "session released"),
        (3, "s3", "completed", 1200, 1201, 1300, 99, {"ok": True}, None),
    ]


def test_a_cancel_ends_the_running_execution() -> None:
    reader = _feed(
        ACCEPTED,
        _assigned(10, 1, 7),
        _e(ev.TaskCancelled, 12, reason="not needed", session_id="s1", fencing_token=7),
    )
    row = reader.task("t")
    assert row is not None
    (x,) = row.executions
    assert (x.status, x.finished_at_ms, x.error) == ("cancelled", 12, "not needed")


def test_no_execution_before_an_assignment() -> None:
    reader = _feed(ACCEPTED, _e(ev.TaskQueued, 2, priority=3, attempt=1))
    row = reader.task("t")
    assert row is not None and row.executions == []
