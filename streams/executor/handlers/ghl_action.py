"""The ``ghl_action`` handler (seed 001), on GoHighLevel's v2 API.

Each ``ghlAction`` of seed 001 is the v2 request of a catalog operation (:mod:`ghl_routes`),
made with the task's client's token and location id (:mod:`ghl_api`):

=====================  ===================  ==============================================
ghlAction              operation            request
=====================  ===================  ==============================================
add_contact            contact_create       POST /contacts/upsert
update_contact         contact_update       PUT /contacts/{contactId}
send_sms               conversation_send    POST /conversations/messages (type SMS)
create_opportunity     opportunity_create   POST /opportunities/ (title -> name, stageId ->
                                            pipelineStageId; v2 requires contactId)
add_tag                tag_add              POST /contacts/{contactId}/tags
=====================  ===================  ==============================================

The payload's other fields go into the body as given (``customFields`` as an object of field
id -> value, or GHL's list). Failures carry the v2 handler's classes: permanent for a payload
v2 cannot use and 4xx answers, retryable for 429 (with its Retry-After), 408, 5xx and timeouts.
"""

from __future__ import annotations

from typing import Any

from schemas.task_configs import validate_task_config
from streams.executor.context import TaskContext
from streams.executor.handlers.errors import GhlPermanentError
from streams.executor.handlers.ghl_api import GhlApiHandler
from streams.executor.handlers.http import HttpClient
from streams.settings import Settings

OPERATION_OF = {
    "add_contact": "contact_create",
    "update_contact": "contact_update",
    "send_sms": "conversation_send",
    "create_opportunity": "opportunity_create",
    "add_tag": "tag_add",
}

_ID_KEY = {
    "contact_create": "contact_id",
    "contact_update": "contact_id",
    "tag_add": "contact_id",
    "conversation_send": "message_id",
    "opportunity_create": "opportunity_id",
}


class GhlActionHandler:
    """``handler(ctx)`` for ``ghl_action``, over a :class:`GhlApiHandler`."""

    def __init__(self, api: GhlApiHandler) -> None:
        self.api = api

    @classmethod
    def from_settings(cls, settings: Settings, http: HttpClient | None = None) -> GhlActionHandler:
        return cls(GhlApiHandler.from_settings(settings, http))

    async def close(self) -> None:
        await self.api.close()

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        payload = ctx.payload
        problems = validate_task_config("ghl_action", payload)
        if problems:
            raise GhlPermanentError("invalid ghl_action config: " + "; ".join(problems))
        action = payload["ghlAction"]
        operation = OPERATION_OF[action]
        fields = {k: v for k, v in payload.items() if k != "ghlAction"}
        if action == "send_sms":
            fields["type"] = "SMS"
        out = await self.api.call(ctx, operation, fields, what=f"ghl_action {action}")
        result: dict[str, Any] = {
            "action": action,
            "status": out["status"],
            "response": out["response"],
            "elapsed_ms": out["elapsed_ms"],
        }
        key = _ID_KEY[operation]
        if key in out:
            result[key] = out[key]
        return result
