"""Small changes to row documents that several folds make: a task's priority and readiness,
its executions and attempts, the outcome counters, a session's document."""

from __future__ import annotations

from typing import Any, cast

from schemas import events as ev
from schemas.catalog import PRIORITY_NAMES

from . import keys
from .rows import AttemptDoc, ExecutionDoc, SessionDoc, TaskDoc, new_session
from .tables import Tables


def set_priority(row: TaskDoc, priority: int) -> None:
    row["priority"] = priority
    row["priority_name"] = cast(Any, PRIORITY_NAMES.get(priority))


def make_ready(row: TaskDoc, at_ms: int) -> None:
    if row["ready_at_ms"] is None:
        row["ready_at_ms"] = at_ms
    row["awaiting_retry"] = False
    row["retry_due_at_ms"] = None


OPEN_STATUSES = ("assigned", "in_progress")


def latest_execution(
    row: TaskDoc,
    *,
    token: int | None = None,
    attempt: int | None = None,
    session_id: str | None = None,
    status: tuple[str, ...] = OPEN_STATUSES,
) -> ExecutionDoc | None:
    """The latest execution of ``row`` in one of ``status`` matching what the event names
    (the fencing token when it carries one: attempt numbers repeat after a requeue)."""
    execution: ExecutionDoc
    for execution in reversed(row["executions"]):
        if (
            execution["status"] in status
            and (token is None or execution["fencing_token"] == token)
            and (attempt is None or execution["attempt"] == attempt)
            and (session_id is None or execution["session_id"] == session_id)
        ):
            return execution
    return None


def attempt_details(execution: ExecutionDoc, e: ev.TaskCompleted | ev.TaskAttemptFailed) -> None:
    """What the result said about its attempt: the resources used and the quality score."""
    used = e.resources_used
    execution["resources_used"] = (
        None if used is None else {"cpu": used.cpu, "memory": used.memory, "disk": used.disk}
    )
    execution["quality"] = e.quality


def end_execution(
    execution: ExecutionDoc | None, status: str, at_ms: int, error: str | None = None
) -> None:
    if execution is None:
        return
    execution["status"] = cast(Any, status)
    execution["finished_at_ms"] = at_ms
    if error is not None:
        execution["error"] = error


def attempt_docs(attempts: list[ev.AttemptRecord]) -> list[AttemptDoc]:
    return [
        {"attempt": a.attempt, "session_id": a.session_id, "error": a.error, "at_ms": a.at_ms}
        for a in attempts
    ]


def record_outcome(tables: Tables, at_ms: int, *, succeeded: bool) -> None:
    c = tables.counters
    if succeeded:
        c.succeeded += 1
    else:
        c.failed += 1
    c.last_processed_at_ms = max(c.last_processed_at_ms or at_ms, at_ms)


def session_or_new(tables: Tables, session_id: str) -> SessionDoc:
    row = tables.session_doc(session_id)
    return row if row is not None else new_session(session_id)


def put_session(tables: Tables, row: SessionDoc) -> None:
    tables.put_doc(keys.session_key(row["session_id"]), row)


def touch_session(tables: Tables, session_id: str | None, at_ms: int) -> SessionDoc | None:
    if session_id is None:
        return None
    row = session_or_new(tables, session_id)
    row["last_seen_ms"] = max(row["last_seen_ms"] or at_ms, at_ms)
    put_session(tables, row)
    return row
