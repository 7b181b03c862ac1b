"""``notification`` and ``reminder`` handlers (seed 001): a JSON POST to a webhook.

The destination is the payload's ``webhookUrl``; a payload that names only a ``recipient`` goes
to ``Settings.notification_webhook_url`` (the channel that resolves recipients), with the
recipient in the body. A non-2xx answer fails the task.

Reminders are not timed here: the submitter maps ``reminderTime`` to
``SubmitTask.scheduled_for_ms`` (``schemas.task_configs.reminder_time_ms``), the processor holds
the task until then, and the handler just sends. A reminder that runs early (submitted without
``scheduled_for_ms``) is still sent, and its output says by how much it was early.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.credentials import url_credentials
from schemas.masking import Masker
from schemas.task_configs import parse_instant, validate_task_config
from streams.executor.context import TaskContext
from streams.executor.errors import ExecutorError
from streams.executor.handlers.errors import NotificationError, TaskConfigError
from streams.executor.handlers.http import HttpClient

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 10_000


class WebhookNotifier:
    """POSTs JSON documents to webhooks (the notification and reminder handlers)."""

    def __init__(self, *, timeout_ms: int = DEFAULT_TIMEOUT_MS, http: HttpClient | None = None):
        if timeout_ms <= 0:
            raise ExecutorError(f"webhook timeout must be positive, got {timeout_ms} ms")
        self.timeout_ms = timeout_ms
        self.http = http if http is not None else HttpClient()

    async def close(self) -> None:
        await self.http.close()

    async def send(self, url: str, body: Mapping[str, Any], *, what: str = "webhook") -> int:
        """POST ``body`` as JSON; returns the 2xx status, raises ``NotificationError`` else."""
        masker = Masker(url_credentials(url))
        answer = await self.http.request(
            "POST",
            url,
            what=what,
            error=NotificationError,
            masker=masker,
            timeout_ms=self.timeout_ms,
            headers={"Content-Type": "application/json"},
            json_body=dict(body),
        )
        return answer.status


def _now() -> datetime:
    return datetime.now(UTC)


class NotificationHandler:
    """``handler(ctx)`` for ``notification`` (or, with ``kind="reminder"``, ``reminder``)."""

    def __init__(
        self,
        notifier: WebhookNotifier,
        *,
        default_webhook_url: str | None = None,
        kind: Literal["notification", "reminder"] = "notification",
    ) -> None:
        self.notifier = notifier
        self.default_webhook_url = default_webhook_url
        self.kind = kind

    def _body(self, ctx: TaskContext, sent_at: datetime) -> dict[str, Any]:
        payload = ctx.payload
        body: dict[str, Any] = {
            "type": self.kind,
            "task_id": ctx.task_id,
            "client_id": ctx.client_id,
            "recipient": payload.get("recipient"),
            "sent_at": sent_at.isoformat(timespec="milliseconds"),
        }
        if self.kind == "reminder":
            body["message"] = payload["reminderMessage"]
            body["reminder_time"] = payload["reminderTime"]
        else:
            body["message"] = payload["message"]
            if payload.get("title") is not None:
                body["title"] = payload["title"]
        if payload.get("data") is not None:
            body["data"] = payload["data"]
        return body

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        payload = ctx.payload
        problems = validate_task_config(self.kind, payload)
        if problems:
            raise TaskConfigError(f"invalid {self.kind} config: " + "; ".join(problems))
        url = payload.get("webhookUrl") or self.default_webhook_url
        if not url:
            raise NotificationError(
                f"{self.kind} has no webhookUrl and no default channel is configured "
                "(set TASKSTREAM_NOTIFICATION_WEBHOOK_URL to deliver to recipients)"
            )
        sent_at = _now()
        body = self._body(ctx, sent_at)
        status = await self.notifier.send(url, body, what=self.kind)
        output: dict[str, Any] = {
            "delivered_to": Masker(url_credentials(url)).url(url),
            "status": status,
            "recipient": payload.get("recipient"),
            "sent_at": body["sent_at"],
        }
        if self.kind == "reminder":
            due = parse_instant(payload["reminderTime"])
            if due is not None and due > sent_at:
                early_ms = int((due - sent_at).total_seconds() * 1000)
                output["early_by_ms"] = early_ms
                log.warning(
                    "reminder task %s sent %d ms before its reminderTime "
                    "(was it submitted without scheduled_for_ms?)",
                    ctx.task_id,
                    early_ms,
                )
        return output
