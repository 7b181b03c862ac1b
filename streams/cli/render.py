"""Readable CLI output: tables, the queue status, one task with its history, one event a line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from schemas.events import Event
from schemas.masking import mask_document


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join(lines)


def format_status(status: dict[str, Any]) -> str:
    pr = status["tasks_by_priority"]
    health = status["session_health"]
    rows = [
        ["queue length", str(status["queue_length"])],
        ["active assignments", str(status["active_assignments"])],
        ["active batches", str(status["active_batches"])],
        ["active sessions", str(status["active_sessions"])],
        ["awaiting retry", str(status["failed_tasks_awaiting_retry"])],
        ["queued by priority", ", ".join(f"{k} {v}" for k, v in pr.items())],
        ["session health", ", ".join(f"{k} {v}" for k, v in health.items())],
    ]
    by_op = status.get("tasks_by_operation") or {}
    if by_op:
        rows.append(
            ["queued by operation", ", ".join(f"{k} {v}" for k, v in sorted(by_op.items()))]
        )
    lag = status.get("projection", {}).get("lag_events")
    if lag is not None:
        rows.append(["projection lag", f"{lag} events"])
    return table(rows, ["queue", "value"])


def format_task(task: dict[str, Any]) -> str:
    head = [
        [k, str(task.get(k))]
        for k in (
            "task_id",
            "client_id",
            "operation",
            "state",
            "priority",
            "attempts",
            "session_id",
        )
        if k in task
    ]
    out = table(head, ["task", "value"])
    attachments = task.get("attachments") or []
    if attachments:
        rows = [
            [
                str(a.get("name")),
                str(a.get("size_bytes") if a.get("size_bytes") is not None else ""),
                str(a.get("content_type") or ""),
                str(a.get("url")),
            ]
            for a in attachments
        ]
        out += "\n\n" + table(rows, ["attachment", "bytes", "type", "url"])
    executions = task.get("executions") or []
    if executions:
        rows = [
            [
                str(e.get("attempt")),
                str(e.get("session_id") or "pool"),
                clock_text(e.get("started_at_ms") or e.get("assigned_at_ms")),
                str(e.get("execution_time_ms") or ""),
                str(e.get("status") or ""),
                str(e.get("error") or json.dumps(e.get("output") or ""))[:60],
            ]
            for e in executions
        ]
        out += "\n\n" + table(
            rows, ["attempt", "session", "started", "ms", "status", "output/error"]
        )
    history = task.get("history") or []
    if history:
        rows = [[clock_text(h.get("at_ms")), str(h.get("type"))] for h in history]
        out += "\n\n" + table(rows, ["at", "event"])
    return out


def clock_text(value: Any) -> str:
    """``HH:MM:SS.mmm`` (UTC) of an epoch-milliseconds value; empty for none."""
    if not value:
        return ""
    return datetime.fromtimestamp(int(value) / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def describe_event(event: Event) -> str:
    """One readable line for an event: time, type, ids, then the interesting fields."""
    # Documents (payload, output) and texts may carry credentials: shown masked.
    data = {
        # JSON documents (payload, output) dump as text: mask the documents themselves.
        k: mask_document(getattr(event, k) if isinstance(getattr(event, k), dict) else v)
        if isinstance(v, dict | list | str)
        else v
        for k, v in event.model_dump(exclude={"client_id", "occurred_at_ms"}).items()
    }
    # Raw record bytes (a forwarded command's key and value) show as their size only.
    data = {k: f"<{len(v)} bytes>" if isinstance(v, bytes) else v for k, v in data.items()}
    ident = data.pop("task_id", None) or data.pop("batch_id", None) or data.pop("session_id", "")
    details = " ".join(
        f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}"
        for k, v in data.items()
        if v not in (None, [], {}, "", "{}")
    )
    return f"{clock_text(event.occurred_at_ms)} {event.TYPE:<26} {event.client_id} {ident} {details}".rstrip()
