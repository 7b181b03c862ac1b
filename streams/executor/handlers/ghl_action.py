"""The ``ghl_action`` handler (seed 001): one GoHighLevel REST call (v1-style API).

=====================  ==========================================  ===========================
ghlAction              request                                     body
=====================  ==========================================  ===========================
add_contact            POST /contacts/                             contact fields
update_contact         PUT /contacts/{contactId}                   contact fields
send_sms               POST /conversations/messages                type SMS, contactId, message
create_opportunity     POST /pipelines/{pipelineId}/opportunities  title, stageId, status, ...
add_tag                POST /contacts/{contactId}/tags             tags
=====================  ==========================================  ===========================

The payload's other fields go into the body as given (``customFields`` as GHL's
``customField``), plus ``locationId`` from the payload or ``Settings.ghl_location_id``. The API
key (``TASKSTREAM_GHL_API_KEY``) goes in ``Authorization: Bearer``; it never reaches a log line,
an error or the output. A non-2xx answer fails the task with the status in the error. The
base URL must be a public address unless ``TASKSTREAM_OUTBOUND_ALLOW`` lists it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from schemas.task_configs import validate_task_config
from streams.executor.context import TaskContext
from streams.executor.errors import ExecutorError
from streams.executor.handlers.errors import GhlActionError, TaskConfigError
from streams.executor.handlers.http import HttpClient
from streams.executor.handlers.masking import Masker
from streams.executor.handlers.outbound import OutboundPolicy
from streams.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://rest.gohighlevel.com/v1"

# Payload fields that steer the call and are not sent as part of the body.
_CONTROL_FIELDS = frozenset(
    {
        "ghlAction",
        "contactId",
        "pipelineId",
        "customFields",
        "locationId",
        "notify_on_complete",
        "notify_on_failure",
        "notifyOnComplete",
        "notifyOnFailure",
        "notifyWebhookUrl",
    }
)


class GhlActionHandler:
    """``handler(ctx)`` for ``ghl_action``."""

    def __init__(
        self,
        *,
        api_key: SecretStr | str | None,
        base_url: str = DEFAULT_BASE_URL,
        location_id: str | None = None,
        timeout_ms: int = 30_000,
        http: HttpClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ExecutorError(f"ghl_api_base_url must be an http(s) URL, got {base_url!r}")
        if timeout_ms <= 0:
            raise ExecutorError(f"ghl timeout must be positive, got {timeout_ms} ms")
        self._api_key = (
            api_key if isinstance(api_key, SecretStr) or api_key is None else (SecretStr(api_key))
        )
        self.base_url = base_url.rstrip("/")
        self.location_id = location_id
        self.timeout_ms = timeout_ms
        self.http = http if http is not None else HttpClient()

    @classmethod
    def from_settings(cls, settings: Settings, http: HttpClient | None = None) -> GhlActionHandler:
        if http is None:
            http = HttpClient(OutboundPolicy.parse(settings.outbound_allow))
        return cls(
            api_key=settings.ghl_api_key,
            base_url=settings.ghl_api_base_url,
            location_id=settings.ghl_location_id,
            timeout_ms=settings.ghl_timeout_ms,
            http=http,
        )

    async def close(self) -> None:
        await self.http.close()

    def _request(self, payload: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """(method, path, body) of a validated payload."""
        action = payload["ghlAction"]
        body = {k: v for k, v in payload.items() if k not in _CONTROL_FIELDS}
        if isinstance(payload.get("customFields"), Mapping):
            body["customField"] = dict(payload["customFields"])
        location = payload.get("locationId") or self.location_id
        if location:
            body["locationId"] = location
        contact = quote(str(payload.get("contactId", "")), safe="")
        if action == "add_contact":
            return "POST", "/contacts/", body
        if action == "update_contact":
            return "PUT", f"/contacts/{contact}", body
        if action == "send_sms":
            body = {"type": "SMS", "contactId": payload["contactId"], "message": body["message"]}
            if location:
                body["locationId"] = location
            return "POST", "/conversations/messages", body
        if action == "create_opportunity":
            body.setdefault("status", "open")
            if payload.get("contactId"):
                body["contactId"] = payload["contactId"]
            pipeline = quote(str(payload["pipelineId"]), safe="")
            return "POST", f"/pipelines/{pipeline}/opportunities", body
        return "POST", f"/contacts/{contact}/tags", {"tags": list(payload["tags"])}

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        payload = ctx.payload
        problems = validate_task_config("ghl_action", payload)
        if problems:
            raise TaskConfigError("invalid ghl_action config: " + "; ".join(problems))
        if self._api_key is None or not self._api_key.get_secret_value():
            raise GhlActionError(
                "ghl_action needs a GoHighLevel API key: set TASKSTREAM_GHL_API_KEY"
            )
        key = self._api_key.get_secret_value()
        action = payload["ghlAction"]
        method, path, body = self._request(payload)
        what = f"ghl_action {action}"
        log.info("%s task %s: %s %s", what, ctx.task_id, method, path)
        ctx.report_progress(0.1, f"{what}: {method} {path}")
        answer = await self.http.request(
            method,
            self.base_url + path,
            what=what,
            error=GhlActionError,
            masker=Masker([key]),
            timeout_ms=self.timeout_ms,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            json_body=body,
        )
        output: dict[str, Any] = {
            "action": action,
            "status": answer.status,
            "response": answer.body,
            "elapsed_ms": answer.elapsed_ms,
        }
        record_id = _record_id(action, answer.body, payload)
        if record_id is not None:
            output[_ID_KEY[action]] = record_id
        return output


_ID_KEY = {
    "add_contact": "contact_id",
    "update_contact": "contact_id",
    "add_tag": "contact_id",
    "send_sms": "message_id",
    "create_opportunity": "opportunity_id",
}


def _record_id(action: str, body: Any, payload: Mapping[str, Any]) -> str | None:
    """The id GHL answered with (``{"contact": {"id"}}``, ``{"id"}``, ``{"messageId"}``)."""
    if action in ("update_contact", "add_tag"):
        return str(payload["contactId"])
    if not isinstance(body, Mapping):
        return None
    for holder in (body.get("contact"), body.get("opportunity"), body):
        if isinstance(holder, Mapping):
            for name in ("messageId", "id"):
                value = holder.get(name)
                if isinstance(value, (str, int)) and not isinstance(value, bool):
                    return str(value)
    return None
