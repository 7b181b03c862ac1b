"""How a command is refused or ignored, and the lookups that refuse.

Refusals are events, not exceptions: a command about an unknown (or another client's) task is
refused with ``TaskRejected`` naming that command; a stale report is ignored with
``ResultIgnored``; a refused session command gives ``CommandRejected``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from schemas import commands as cmd
from schemas.commands import submit_document
from schemas.credentials import MASK, replace_credentials
from schemas.events import CommandRejected, ResultIgnored, TaskRejected
from schemas.states import ACTIVE_STATES, TERMINAL_STATES
from streams.domain.context import Decision
from streams.domain.spec import canonical_json
from streams.domain.state import TaskRecord

# Ids travel in URLs, log lines and file names: control characters in them are refused.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

UNKNOWN_TASK = "unknown task"
UNKNOWN_SESSION = "unknown session"


def own_task(ctx: Decision, client_id: str, task_id: str) -> TaskRecord | None:
    """The task, if it exists and belongs to the client (other clients' tasks are invisible)."""
    task = ctx.state.task(task_id)
    if task is None or task.client_id != client_id:
        return None
    return task


def task_or_reject(ctx: Decision, c: cmd.Command, task_id: str) -> TaskRecord | None:
    """The client's task, or None after rejecting ``c`` as naming an unknown task."""
    task = own_task(ctx, c.client_id, task_id)
    if task is None:
        reject_task(ctx, c, task_id, UNKNOWN_TASK)
    return task


def open_task_or_reject(ctx: Decision, c: cmd.Command, task_id: str) -> TaskRecord | None:
    """The client's unfinished task, or None after rejecting ``c`` (unknown or finished)."""
    task = task_or_reject(ctx, c, task_id)
    if task is not None and task.status in TERMINAL_STATES:
        reject_task(ctx, c, task_id, f"task already {task.status}")
        return None
    return task


def attempt_or_ignore(ctx: Decision, c: cmd.Command, task_id: str, token: int) -> TaskRecord | None:
    """The client's task if a report for ``token`` concerns its current attempt; else None
    after rejecting ``c`` (unknown task) or ignoring it (stale report)."""
    task = task_or_reject(ctx, c, task_id)
    if task is None:
        return None
    stale = stale_reason(task, token)
    if stale is not None:
        ignore(ctx, task, token, stale)
        return None
    return task


def reject_or_ignore(
    ctx: Decision, c: cmd.ReportResult, task_ids: Iterable[str], reason: str
) -> None:
    """Each named task: rejected as unknown, or its report ignored for ``reason``."""
    for task_id in task_ids:
        task = own_task(ctx, c.client_id, task_id)
        if task is None:
            reject_task(ctx, c, task_id, UNKNOWN_TASK)
        else:
            ignore(ctx, task, c.fencing_token, reason)


def session_or_reject(ctx: Decision, c: cmd.ReleaseSession | cmd.SessionHeartbeat) -> bool:
    """Whether the session exists and belongs to the client; if not, ``c`` is rejected."""
    session = ctx.state.sessions.get(c.session_id)
    if session is None or session.client_id != c.client_id:
        reject_command(ctx, c, UNKNOWN_SESSION, session_id=c.session_id)
        return False
    return True


def reject_task(ctx: Decision, c: cmd.Command, task_id: str, reason: str, **extra: Any) -> None:
    ctx.emit(
        TaskRejected(
            client_id=c.client_id,
            task_id=task_id,
            occurred_at_ms=ctx.now,
            reason=reason,
            command=type(c).__name__,
            # A refused submit's outcome record names its operation (``domain.outcomes``).
            operation=c.operation if isinstance(c, cmd.SubmitTask) else None,
            actor=getattr(c, "actor", None),
            # What its dead letter carries: outputs are a function of state and event alone.
            submit=(
                refused_submit(c, ctx.config.max_payload_bytes)
                if isinstance(c, cmd.SubmitTask)
                else {}
            ),
            **extra,
        )
    )


def refused_submit(c: cmd.SubmitTask, limit: int) -> dict[str, Any]:
    """The submit a refusal's dead letter carries (so it can be redriven), credentials masked
    (a submit refused for carrying one in plaintext must not carry it on to task.dlq), within
    ``limit`` bytes of JSON: past it the payload, then the whole document, becomes a note (as
    the dead letter, bounded by the same limit, would shed them)."""
    doc: dict[str, Any] = replace_credentials(submit_document(c), lambda _path, _value: MASK)
    size = len(canonical_json(doc))
    if size <= limit:
        return doc
    note = {"_omitted": f"omitted: the submit was {size} bytes, over the limit of {limit}"}
    doc = {**doc, "payload": note}
    return doc if len(canonical_json(doc)) <= limit else note


def reject_command(
    ctx: Decision,
    c: cmd.Command,
    reason: str,
    *,
    task_id: str | None = None,
    session_id: str | None = None,
) -> None:
    ctx.emit(
        CommandRejected(
            client_id=c.client_id,
            occurred_at_ms=ctx.now,
            command=type(c).__name__,
            reason=reason,
            task_id=task_id,
            session_id=session_id,
        )
    )


def ignore(ctx: Decision, task: TaskRecord, token: int, reason: str) -> None:
    ctx.emit(
        ResultIgnored(
            client_id=task.client_id,
            task_id=task.task_id,
            occurred_at_ms=ctx.now,
            fencing_token=token,
            current_fencing_token=task.fencing_token,
            reason=reason,
        )
    )


def stale_reason(task: TaskRecord, token: int) -> str | None:
    """Why a report for ``token`` does not concern the task's current attempt, if it does not."""
    if task.fencing_token != token:
        return "stale fencing token"
    if task.status not in ACTIVE_STATES:
        return f"attempt already finished (task {task.status})"
    return None
