"""Operator tools behind the CLI: submit and steer tasks, read the view, follow the event log.

Each function raises a ``TaskstreamError`` with one clear sentence when the operator's input or
the environment is wrong; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from schemas.catalog import load_catalog
from schemas.errors import TaskstreamError
from schemas.events import Event
from streams.errors import BrokerError, ConfigurationError
from streams.kafka.process import wait_for_broker
from streams.logs import mask_document
from streams.settings import Settings

ADDRESS_FILE = "broker.address"


class NotFoundError(TaskstreamError):
    """The view knows no such task, session or batch."""


def remember_broker(settings: Settings, servers: str) -> Path:
    """Write the embedded broker's address where the CLI tools look for it."""
    path = Path(settings.data_dir) / ADDRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(servers)
    return path


def with_broker(settings: Settings) -> Settings:
    """Settings with bootstrap servers: from the environment, else from a running ``taskstream run``."""
    if settings.kafka_bootstrap_servers:
        return settings
    path = Path(settings.data_dir) / ADDRESS_FILE
    try:
        servers = path.read_text().strip()
    except OSError:
        raise ConfigurationError(
            "no broker: set KAFKA_BOOTSTRAP_SERVERS or start `taskstream run` in this directory"
        ) from None
    return settings.model_copy(update={"kafka_bootstrap_servers": servers})


async def reachable(settings: Settings) -> Settings:
    settings = with_broker(settings)
    servers = settings.kafka_bootstrap_servers or ""
    try:
        await wait_for_broker(servers, timeout_s=5.0)
    except BrokerError:
        raise BrokerError(f"no Kafka broker answers at {servers}") from None
    return settings


def check_operation(settings: Settings, operation: str) -> None:
    catalog = load_catalog(settings.operations_file)
    if operation not in catalog:
        known = ", ".join(sorted(catalog))
        raise ConfigurationError(f"unknown operation {operation!r}; known operations: {known}")


# --- the HTTP view ------------------------------------------------------------------------


def view_url(settings: Settings, path: str) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{settings.http_port}{path}"


async def view_get(settings: Settings, path: str, params: dict[str, Any] | None = None) -> Any:
    headers = {}
    if settings.http_token is not None:
        headers["Authorization"] = f"Bearer {settings.http_token.get_secret_value()}"
    url = view_url(settings, path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url, params=params, headers=headers) as response:
                body = await response.json(content_type=None)
                if response.status == 404:
                    raise NotFoundError(
                        str(body.get("detail", body)) if isinstance(body, dict) else "not found"
                    )
                if response.status >= 400:
                    detail = body.get("detail", body) if isinstance(body, dict) else body
                    raise TaskstreamError(f"the view answered {response.status}: {detail}")
                return body
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BrokerError(
            f"the HTTP view at {view_url(settings, '')} does not answer ({type(exc).__name__}); "
            "is `taskstream run` or `taskstream view` running?"
        ) from None


async def client_of(settings: Settings, task_id: str) -> str:
    row = await view_get(settings, f"/tasks/{task_id}")
    return str(row["client_id"])


# --- readable output ----------------------------------------------------------------------


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
    executions = task.get("executions") or []
    if executions:
        rows = [
            [
                str(e.get("attempt")),
                str(e.get("session_id") or "pool"),
                _ms(e.get("started_at_ms") or e.get("assigned_at_ms")),
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
        rows = [[_ms(h.get("at_ms")), str(h.get("type"))] for h in history]
        out += "\n\n" + table(rows, ["at", "event"])
    return out


def _ms(value: Any) -> str:
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
    return (
        f"{_ms(event.occurred_at_ms)} {event.TYPE:<26} {event.client_id} {ident} {details}".rstrip()
    )


async def tail(
    settings: Settings,
    emit: Callable[[str], None],
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Follow ``task.events`` (all partitions, no group) and emit one line per event."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.codec import CODEC
    from schemas.errors import DecodeError
    from streams.kafka import consumer_kwargs, topic_partitions

    settings = await reachable(settings)
    topic = settings.topic("events")
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    await consumer.start()
    shown = 0
    try:
        partitions = await topic_partitions(consumer, topic) or set()
        if not partitions:
            raise ConfigurationError(f"topic {topic} does not exist; is taskstream running?")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        while (stop is None or not stop.is_set()) and (limit is None or shown < limit):
            batch = await consumer.getmany(timeout_ms=500)
            records = sorted(
                (r for rs in batch.values() for r in rs),
                key=lambda r: (r.timestamp, r.partition, r.offset),
            )
            for record in records:
                try:
                    event = CODEC.decode(record.value)
                except DecodeError as exc:
                    emit(
                        f"{_ms(record.timestamp)} <undecodable p{record.partition}@{record.offset}: {exc}>"
                    )
                    continue
                if isinstance(event, Event):
                    emit(describe_event(event))
                    shown += 1
                    if limit is not None and shown >= limit:
                        break
    finally:
        await consumer.stop()
    return shown


def now_ms() -> int:
    return int(time.time() * 1000)
