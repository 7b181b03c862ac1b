"""The ``report_generation`` handler (seed 001), computed from the read side.

``task_summary`` counts the tasks accepted in the range by state, operation, priority and
client. ``execution_stats`` takes the tasks that finished in the range and reports the success
rate (completed / (completed + failed)), execution times (mean, p50, p90, p95, p99, max; nearest
rank) overall and per operation, retries, and the service's ``/health`` statistics.
``webhook_activity`` ("inbound message statistics") has two parts. The durable one: the tasks
accepted in the range that inbound webhooks submitted (their row's ``submitted_by`` is
``webhook:<source>``), counted by source and state, with the success rate and dead letters per
source. The live one (``messages``): the view's counts of the messages it received, by source and
outcome (accepted, duplicate, ignored, refused, unauthorized, unconfigured), from
``GET /webhooks/activity``; they cover the time since that view process started, whatever the
range and filters, and only the messages that view replica received.

``sendNotification: true`` sends the finished report to the task's ``notifyWebhookUrl``: not from
here, but as the outcome notice of the task (``streams.domain.notices``), whose ``output`` is
this report.

The data comes from an injectable ``fetch(path, params) -> dict``; by default
:class:`ViewClient` GETs the HTTP view (``/tasks`` paged with its cursor and filtered by
client_id / operation, and ``/health``). The range is ``[dateFrom, dateTo)`` in UTC; a bare
``dateTo`` date includes that whole day; a missing bound is open.

A report reads at most ``max_tasks`` rows; past that it says ``"truncated": true``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

from pydantic import SecretStr

from schemas.masking import Masker
from schemas.task_configs import report_range, validate_task_config
from streams.executor.context import TaskContext
from streams.executor.errors import ExecutorError
from streams.executor.handlers.errors import ReportError, TaskConfigError
from streams.executor.handlers.http import HttpClient
from streams.executor.handlers.outbound import OutboundPolicy
from streams.settings import Settings
from streams.webhooks import source_of_actor

Fetch: TypeAlias = Callable[[str, Mapping[str, str]], Awaitable[Mapping[str, Any]]]
"""``await fetch("/tasks", {"limit": "1000", ...})`` -> the view's JSON answer."""

DEFAULT_PAGE_SIZE = 1000
DEFAULT_MAX_TASKS = 100_000
PERCENTILES = (50, 90, 95, 99)


class ViewClient:
    """The default ``Fetch``: GET JSON from the HTTP view, with its bearer token if one is set."""

    def __init__(
        self,
        base_url: str,
        *,
        token: SecretStr | None = None,
        timeout_ms: int = 30_000,
        http: HttpClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_ms = timeout_ms
        # base_url is the operator's own view (usually loopback), never a payload's URL.
        self.http = http if http is not None else HttpClient(OutboundPolicy.open())

    @classmethod
    def from_settings(cls, settings: Settings, http: HttpClient | None = None) -> ViewClient:
        host = settings.http_host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return cls(f"http://{host}:{settings.http_port}", token=settings.http_token, http=http)

    async def close(self) -> None:
        await self.http.close()

    async def __call__(self, path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        headers = {"Accept": "application/json"}
        secrets: list[str] = []
        if self._token is not None and self._token.get_secret_value():
            secrets.append(self._token.get_secret_value())
            headers["Authorization"] = f"Bearer {secrets[0]}"
        answer = await self.http.request(
            "GET",
            self.base_url + path,
            what="report_generation view query",
            error=ReportError,
            masker=Masker(secrets),
            timeout_ms=self.timeout_ms,
            headers=headers,
            params=params,
        )
        if not isinstance(answer.body, Mapping):
            raise ReportError(f"the view answered GET {path} with something other than JSON")
        return answer.body


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _within(at_ms: Any, start_ms: int | None, stop_ms: int | None) -> bool:
    if not isinstance(at_ms, int) or isinstance(at_ms, bool):
        return False
    return (start_ms is None or at_ms >= start_ms) and (stop_ms is None or at_ms < stop_ms)


def percentile(sorted_values: Sequence[int], p: float) -> int | None:
    """Nearest-rank percentile of already sorted values; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _time_stats(times: Iterable[int]) -> dict[str, Any]:
    values = sorted(times)
    stats: dict[str, Any] = {
        "count": len(values),
        "mean_ms": round(sum(values) / len(values), 1) if values else None,
        "max_ms": values[-1] if values else None,
    }
    for p in PERCENTILES:
        stats[f"p{p}_ms"] = percentile(values, p)
    return stats


def _rate(done: int, failed: int) -> float | None:
    return round(done / (done + failed), 4) if done + failed else None


def task_summary(
    rows: Iterable[Mapping[str, Any]], start: datetime | None, stop: datetime | None
) -> dict[str, Any]:
    """Tasks accepted in [start, stop), counted by state, operation, priority and client."""
    start_ms, stop_ms = _ms(start), _ms(stop)
    chosen = [r for r in rows if _within(r.get("accepted_at_ms"), start_ms, stop_ms)]
    by_state = Counter(str(r.get("state")) for r in chosen)
    completed, failed = by_state.get("completed", 0), by_state.get("failed", 0)
    return {
        "report_type": "task_summary",
        "range": {"from": _iso(start), "to": _iso(stop)},
        "total": len(chosen),
        "by_state": dict(sorted(by_state.items())),
        "by_operation": dict(sorted(Counter(str(r.get("operation")) for r in chosen).items())),
        "by_priority": dict(sorted(Counter(str(r.get("priority_name")) for r in chosen).items())),
        "by_client": dict(sorted(Counter(str(r.get("client_id")) for r in chosen).items())),
        "success_rate": _rate(completed, failed),
        "dead_lettered": sum(1 for r in chosen if r.get("dead_lettered")),
    }


def execution_stats(
    rows: Iterable[Mapping[str, Any]], start: datetime | None, stop: datetime | None
) -> dict[str, Any]:
    """Tasks that finished in [start, stop): success rate and execution times."""
    start_ms, stop_ms = _ms(start), _ms(stop)
    chosen = [
        r
        for r in rows
        if r.get("state") in ("completed", "failed")
        and _within(r.get("finished_at_ms"), start_ms, stop_ms)
    ]

    def summarize(group: list[Mapping[str, Any]]) -> dict[str, Any]:
        completed = sum(1 for r in group if r.get("state") == "completed")
        failed = len(group) - completed
        times = [
            r["execution_time_ms"]
            for r in group
            if r.get("state") == "completed"
            and isinstance(r.get("execution_time_ms"), int)
            and not isinstance(r.get("execution_time_ms"), bool)
        ]
        return {
            "finished": len(group),
            "completed": completed,
            "failed": failed,
            "success_rate": _rate(completed, failed),
            "retried": sum(1 for r in group if r.get("attempts")),
            "execution_time": _time_stats(times),
        }

    by_operation: dict[str, list[Mapping[str, Any]]] = {}
    for row in chosen:
        by_operation.setdefault(str(row.get("operation")), []).append(row)
    return {
        "report_type": "execution_stats",
        "range": {"from": _iso(start), "to": _iso(stop)},
        **summarize(chosen),
        "by_operation": {op: summarize(group) for op, group in sorted(by_operation.items())},
    }


def webhook_activity(
    rows: Iterable[Mapping[str, Any]], start: datetime | None, stop: datetime | None
) -> dict[str, Any]:
    """Tasks accepted in [start, stop) that inbound webhooks submitted, by source and state."""
    start_ms, stop_ms = _ms(start), _ms(stop)
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        source = source_of_actor(r.get("submitted_by"))
        if source is not None and _within(r.get("accepted_at_ms"), start_ms, stop_ms):
            by_source.setdefault(source, []).append(r)

    def summarize(group: list[Mapping[str, Any]]) -> dict[str, Any]:
        by_state = Counter(str(r.get("state")) for r in group)
        return {
            "total": len(group),
            "by_state": dict(sorted(by_state.items())),
            "success_rate": _rate(by_state.get("completed", 0), by_state.get("failed", 0)),
            "dead_lettered": sum(1 for r in group if r.get("dead_lettered")),
        }

    chosen = [r for group in by_source.values() for r in group]
    return {
        "report_type": "webhook_activity",
        "range": {"from": _iso(start), "to": _iso(stop)},
        **summarize(chosen),
        "by_source": {name: summarize(group) for name, group in sorted(by_source.items())},
    }


def _messages(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the view's ``/webhooks/activity`` answer a report shows."""
    if not isinstance(answer.get("by_source"), Mapping):
        raise ReportError("the view's /webhooks/activity answer has no by_source object")
    return {
        "since": answer.get("since"),
        "total": answer.get("total"),
        "by_outcome": dict(answer.get("by_outcome") or {}),
        "by_source": {
            str(name): dict(counts.get("by_outcome") or {})
            for name, counts in sorted(answer["by_source"].items())
            if isinstance(counts, Mapping)
        },
    }


class ReportGenerationHandler:
    """``handler(ctx)`` for ``report_generation``."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_tasks: int = DEFAULT_MAX_TASKS,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise ExecutorError(f"page_size must be within [1, 1000], got {page_size}")
        if max_tasks < 1:
            raise ExecutorError(f"max_tasks must be positive, got {max_tasks}")
        self.fetch = fetch
        self.page_size = page_size
        self.max_tasks = max_tasks

    async def _rows(self, ctx: TaskContext) -> tuple[list[Mapping[str, Any]], bool]:
        payload = ctx.payload
        params: dict[str, str] = {"limit": str(self.page_size)}
        if payload.get("clientId"):
            params["client_id"] = str(payload["clientId"])
        if payload.get("operation"):
            params["operation"] = str(payload["operation"])
        rows: list[Mapping[str, Any]] = []
        while True:
            page = await self.fetch("/tasks", params)
            items = page.get("items")
            if not isinstance(items, list):
                raise ReportError("the view's /tasks answer has no items list")
            rows.extend(item for item in items if isinstance(item, Mapping))
            cursor = page.get("next_cursor")
            if len(rows) >= self.max_tasks:
                return rows[: self.max_tasks], bool(cursor) or len(rows) > self.max_tasks
            if not cursor:
                return rows, False
            params["cursor"] = str(cursor)
            ctx.report_progress(min(0.8, len(rows) / self.max_tasks), f"read {len(rows)} tasks")

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        payload = ctx.payload
        problems = validate_task_config("report_generation", payload)
        if problems:
            raise TaskConfigError("invalid report_generation config: " + "; ".join(problems))
        start, stop = report_range(payload)
        rows, truncated = await self._rows(ctx)
        if payload["reportType"] == "task_summary":
            report = task_summary(rows, start, stop)
        elif payload["reportType"] == "webhook_activity":
            report = webhook_activity(rows, start, stop)
            report["messages"] = _messages(await self.fetch("/webhooks/activity", {}))
        else:
            report = execution_stats(rows, start, stop)
            health = await self.fetch("/health", {})
            stats = health.get("stats")
            report["service"] = dict(stats) if isinstance(stats, Mapping) else None
        report["filters"] = {
            "client_id": payload.get("clientId"),
            "operation": payload.get("operation"),
        }
        report["tasks_read"] = len(rows)
        report["truncated"] = truncated
        report["generated_at"] = _iso(datetime.now(UTC))
        return report
