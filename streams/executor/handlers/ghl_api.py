"""GoHighLevel v2 handlers: one HTTP request per task, with the task's client's own token.

    handlers = ghl_api_handlers(settings)        # every catalog operation that has an API
    executor = Executor(settings, handlers=handlers, ...)

The request of each operation is in :mod:`ghl_routes`. Every request goes to
``TASKSTREAM_GHL_BASE_URL`` (default ``https://services.leadconnectorhq.com``) with
``Authorization: Bearer <token>`` and ``Version: <the endpoint's version>``, where the token and
the location id are the task's client's, from ``TASKSTREAM_GHL_CREDENTIALS_FILE``
(:mod:`ghl_credentials`). The token never reaches a log line, an error or the output. Requests
pass the outbound guard (``TASKSTREAM_OUTBOUND_ALLOW``), like every built-in handler's.

Answers become failure classes: 2xx completes the task with HighLevel's answer; 429 is
retryable after its ``Retry-After`` (seconds or an HTTP date; without one, the
``X-RateLimit-Interval-Milliseconds`` window, else 10 s, HighLevel's burst window); 408, 5xx,
timeouts and broken connections are retryable; every other 4xx, a payload the operation cannot
use, a client without credentials and a refused destination are permanent.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Mapping
from typing import Any

from schemas.masking import Masker
from streams.errors import ConfigurationError
from streams.executor.context import TaskContext
from streams.executor.errors import ExecutorError
from streams.executor.handlers.errors import (
    GhlPermanentError,
    GhlRetryableError,
    OutboundRefusedError,
)
from streams.executor.handlers.ghl_credentials import VARIABLE, GhlCredentials
from streams.executor.handlers.ghl_routes import ROUTES, GhlPayloadError, ghl_request
from streams.executor.handlers.http import HttpAnswer, HttpClient, status_message
from streams.executor.handlers.outbound import OutboundPolicy
from streams.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"
BURST_WINDOW_MS = 10_000
"""HighLevel's burst limit: 100 requests per 10 s per sub-account."""

# What each operation's output names (as the simulated handler does), and where the id is.
_ID_KEY: dict[str, str] = {
    "contact_create": "contact_id",
    "contact_update": "contact_id",
    "contact_delete": "contact_id",
    "custom_field_update": "contact_id",
    "tag_add": "contact_id",
    "tag_remove": "contact_id",
    "campaign_add": "contact_id",
    "campaign_remove": "contact_id",
    "workflow_trigger": "contact_id",
    "note_create": "note_id",
    "task_create": "task_id",
    "opportunity_create": "opportunity_id",
    "opportunity_update": "opportunity_id",
    "pipeline_update": "opportunity_id",
    "conversation_send": "message_id",
    "conversation_read": "conversation_id",
    "calendar_booking": "appointment_id",
}
_FROM_PAYLOAD = {"contact_id": "contactId", "opportunity_id": "opportunityId"}
_ANSWER_HOLDERS = ("contact", "opportunity", "note", "task")

NO_CREDENTIALS = (
    f"the GoHighLevel handlers need per-client credentials: set {VARIABLE} to a TOML file of "
    "[<client id>] location_id = ..., token = ... (see the README)"
)


def retry_after_ms(headers: Mapping[str, str], *, now: float | None = None) -> int | None:
    """A ``Retry-After`` header (delay-seconds or an HTTP date) in milliseconds."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return int(value) * 1000
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    delay = moment.timestamp() - (time.time() if now is None else now)
    return max(0, int(delay * 1000))


def _rate_window_ms(headers: Mapping[str, str]) -> int:
    value = (headers.get("X-RateLimit-Interval-Milliseconds") or "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else BURST_WINDOW_MS


def failure_of(what: str, method: str, safe_url: str, answer: HttpAnswer) -> Exception:
    """The failure class of a non-2xx answer."""
    message = status_message(what, method, safe_url, answer)
    status = answer.status
    if status == 429:
        wait = retry_after_ms(answer.headers)
        if wait is None:
            wait = _rate_window_ms(answer.headers)
        return GhlRetryableError(f"{message} (rate limited: retry after {wait} ms)", wait)
    if status == 408 or status >= 500:
        return GhlRetryableError(message, retry_after_ms(answer.headers))
    return GhlPermanentError(message)


def _record_id(operation: str, body: Any, payload: Mapping[str, Any]) -> str | None:
    key = _ID_KEY.get(operation)
    if key is None:
        return None
    given = payload.get(_FROM_PAYLOAD.get(key, ""))
    if operation not in ("contact_create", "opportunity_create") and isinstance(given, str):
        return given
    if operation == "conversation_read" and isinstance(payload.get("conversationId"), str):
        return str(payload["conversationId"])
    if not isinstance(body, Mapping):
        return None
    holders = [body.get(h) for h in _ANSWER_HOLDERS] + [body]
    names = ("messageId", "id") if operation == "conversation_send" else ("id", "messageId")
    for holder in holders:
        if isinstance(holder, Mapping):
            for name in names:
                value = holder.get(name)
                if isinstance(value, (str, int)) and not isinstance(value, bool):
                    return str(value)
    return None


class GhlApiHandler:
    """``handler(ctx)`` for every operation of :data:`ghl_routes.ROUTES`."""

    def __init__(
        self,
        credentials: GhlCredentials | None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_ms: int = 30_000,
        http: HttpClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ExecutorError(f"TASKSTREAM_GHL_BASE_URL must be an http(s) URL, got {base_url!r}")
        if timeout_ms <= 0:
            raise ExecutorError(f"ghl timeout must be positive, got {timeout_ms} ms")
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        self.timeout_ms = timeout_ms
        self.http = http if http is not None else HttpClient()

    @classmethod
    def from_settings(
        cls, settings: Settings, http: HttpClient | None = None, *, required: bool = False
    ) -> GhlApiHandler:
        """The handler of ``settings``. Without a credentials file every task fails (permanently)
        saying so, or, when ``required``, this raises ``ConfigurationError`` at once."""
        if settings.ghl_credentials_file is None and required:
            raise ConfigurationError(NO_CREDENTIALS)
        if http is None:
            http = HttpClient(OutboundPolicy.parse(settings.outbound_allow))
        credentials = (
            GhlCredentials(settings.ghl_credentials_file)
            if settings.ghl_credentials_file is not None
            else None
        )
        return cls(
            credentials,
            base_url=settings.ghl_base_url,
            timeout_ms=settings.ghl_timeout_ms,
            http=http,
        )

    async def close(self) -> None:
        await self.http.close()

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        return await self.call(ctx, ctx.operation, ctx.payload)

    async def call(
        self, ctx: TaskContext, operation: str, payload: Mapping[str, Any], *, what: str = ""
    ) -> dict[str, Any]:
        """Make ``operation``'s request for ``payload`` as ``ctx.client_id``."""
        what = what or f"ghl {operation}"
        if self.credentials is None:
            raise GhlPermanentError(f"{what}: {NO_CREDENTIALS}")
        account = self.credentials.account(ctx.client_id)
        if account is None:
            raise GhlPermanentError(
                f"{what}: client {ctx.client_id!r} has no GoHighLevel credentials in "
                f"{VARIABLE} ({self.credentials.path})"
            )
        try:
            request = ghl_request(operation, payload, account.location_id)
        except GhlPayloadError as exc:
            raise GhlPermanentError(f"{what}: {exc}") from None
        token = account.token.get_secret_value()
        masker = Masker([token])
        url = self.base_url + request.path
        log.info("%s task %s: %s %s", what, ctx.task_id, request.method, request.path)
        ctx.report_progress(0.1, f"{what}: {request.method} {request.path}")
        try:
            answer = await self.http.fetch(
                request.method,
                url,
                what=what,
                error=GhlRetryableError,
                masker=masker,
                timeout_ms=self.timeout_ms,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Version": request.version,
                    "Accept": "application/json",
                },
                json_body=request.body,
                params=request.query or None,
            )
        except OutboundRefusedError as exc:
            raise GhlPermanentError(str(exc)) from None
        if not 200 <= answer.status < 300:
            raise failure_of(what, request.method, masker.url(url), answer)
        output: dict[str, Any] = {
            "operation": operation,
            "status": answer.status,
            "response": answer.body,
            "elapsed_ms": answer.elapsed_ms,
        }
        record_id = _record_id(operation, answer.body, payload)
        if record_id is not None:
            output[_ID_KEY[operation]] = record_id
        remaining = answer.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.isdigit():
            output["rate_limit_remaining"] = int(remaining)
        return output


def ghl_api_handlers(handler: GhlApiHandler) -> dict[str, GhlApiHandler]:
    """``operation -> handler`` for every catalog operation that has a v2 API."""
    return {operation: handler for operation in ROUTES}
