"""Which GoHighLevel v2 request each catalog operation makes: pure, no I/O.

``ghl_request(operation, payload, location_id)`` turns a task's payload into one
:class:`GhlRequest` (method, path, query, JSON body, ``Version`` header), or raises
:class:`GhlPayloadError` naming every bad field. ``ROUTES`` lists the operations that have an
API; the catalog (``schemas/operations.toml``, field ``ghl_api``) names the same request for each
and ``none`` for those that have none. Endpoints and bodies follow HighLevel's published OpenAPI
documents (``services.leadconnectorhq.com``):

==================== ==================================================== ===========
operation            request                                              Version
==================== ==================================================== ===========
contact_create       POST /contacts/upsert                                2021-07-28
contact_update       PUT /contacts/{contactId}                            2021-07-28
contact_delete       DELETE /contacts/{contactId}                         2021-07-28
custom_field_update  PUT /contacts/{contactId} (customFields only)        2021-07-28
tag_add              POST /contacts/{contactId}/tags                      2021-07-28
tag_remove           DELETE /contacts/{contactId}/tags                    2021-07-28
note_create          POST /contacts/{contactId}/notes                     2021-07-28
task_create          POST /contacts/{contactId}/tasks                     2021-07-28
campaign_add         POST /contacts/{contactId}/campaigns/{campaignId}    2021-07-28
campaign_remove      DELETE /contacts/{contactId}/campaigns/{campaignId}  2021-07-28
workflow_trigger     POST /contacts/{contactId}/workflow/{workflowId}     2021-07-28
opportunity_create   POST /opportunities/                                 2021-07-28
opportunity_update   PUT /opportunities/{opportunityId}                   2021-07-28
pipeline_update      PUT /opportunities/{opportunityId} (stage move)      2021-07-28
conversation_send    POST /conversations/messages                         2021-04-15
conversation_read    GET /conversations/{conversationId}/messages         2021-04-15
                     (or GET /conversations/search?contactId= without one)
calendar_booking     POST /calendars/events/appointments                  2021-04-15
==================== ==================================================== ===========

``contact_create`` uses the upsert endpoint so that a retry after a lost answer finds the
contact it created instead of making a duplicate (HighLevel matches on email / phone, following
the sub-account's duplicate-contact setting). The conversations and calendars documents name
``Version: 2021-04-15``; every other endpoint here names ``2021-07-28``.

Payload fields are GHL's own (camelCase); the few that steer the request (``contactId``,
``opportunityId``, ``campaignId``, ``workflowId``, ``conversationId``) go into the path, the
notification fields of seed 001 are dropped, and everything else goes into the body as given.
``locationId`` comes from the client's credentials; a payload naming another one is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from schemas.task_configs import OPPORTUNITY_STATUSES

__all__ = [
    "API_VERSION",
    "CONVERSATIONS_VERSION",
    "NO_API",
    "ROUTES",
    "GhlPayloadError",
    "GhlRequest",
    "Route",
    "ghl_request",
]

API_VERSION = "2021-07-28"
CONVERSATIONS_VERSION = "2021-04-15"
"""The ``Version`` the conversations and calendars documents of HighLevel name."""

NO_API: dict[str, str] = {
    "bulk_operation": "no single v2 endpoint: submit a batch of the per-contact operations",
    "report_generate": "HighLevel's v2 API has no report endpoint: a browser task",
    "data_export": "HighLevel's v2 API has no export endpoint for this: a browser task",
    "integration_sync": "not a HighLevel call: a task for your own integration's handler",
}
"""Catalog operations without a v2 endpoint, and why."""

# Payload fields that never go into a body: notification flags of seed 001 and the ids that
# address the request (they go into the path).
_NEVER_IN_BODY = frozenset(
    {
        "notify_on_complete",
        "notify_on_failure",
        "notifyOnComplete",
        "notifyOnFailure",
        "notifyWebhookUrl",
        "locationId",
    }
)


class GhlPayloadError(ValueError):
    """A payload cannot make its operation's request; ``problems`` name every bad field."""

    def __init__(self, operation: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid {operation} payload: " + "; ".join(problems))


@dataclass(frozen=True)
class GhlRequest:
    method: str
    path: str
    version: str
    body: dict[str, Any] | None = None
    query: dict[str, str] = field(default_factory=dict)


Builder = Callable[[Mapping[str, Any], str, list[str]], GhlRequest | None]


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    template: str
    """The path with ``{field}`` placeholders, as the catalog's ``ghl_api`` names it."""
    version: str
    build: Builder

    @property
    def api(self) -> str:
        return f"{self.method} {self.template}"


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _ids(payload: Mapping[str, Any], names: tuple[str, ...], problems: list[str]) -> list[str]:
    values: list[str] = []
    for name in names:
        value = payload.get(name)
        if not _nonempty(value):
            problems.append(f"{name}: required (a non-empty string)")
            values.append("")
        else:
            values.append(quote(str(value), safe=""))
    return values


def _rest(payload: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in _NEVER_IN_BODY and k not in drop}


def _tags(payload: Mapping[str, Any], problems: list[str]) -> list[str]:
    tags = payload.get("tags")
    if isinstance(tags, str) and tags.strip():
        return [tags]
    if not isinstance(tags, list) or not tags or not all(_nonempty(t) for t in tags):
        problems.append("tags: required (a non-empty list of non-empty strings)")
        return []
    return list(tags)


def _custom_fields(value: Any, problems: list[str]) -> list[dict[str, Any]] | None:
    """GHL's ``customFields`` list: given as that list, or as an object of field id -> value."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return [{"id": str(k), "field_value": v} for k, v in value.items()]
    if isinstance(value, list) and all(
        isinstance(item, Mapping) and (_nonempty(item.get("id")) or _nonempty(item.get("key")))
        for item in value
    ):
        return [dict(item) for item in value]
    problems.append(
        "customFields: must be an object of field id -> value, or a list of "
        '{"id" or "key", "field_value"} objects'
    )
    return None


def _with_custom_fields(body: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    if "customFields" in body:
        fields = _custom_fields(body["customFields"], problems)
        if fields is not None:
            body["customFields"] = fields
    return body


def _status(payload: Mapping[str, Any], problems: list[str], *, default: str | None) -> None:
    status = payload.get("status", default)
    if status is not None and status not in OPPORTUNITY_STATUSES:
        problems.append(f"status: must be one of {', '.join(OPPORTUNITY_STATUSES)}")


def _money(payload: Mapping[str, Any], problems: list[str]) -> None:
    value = payload.get("monetaryValue")
    if value is not None and (
        not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0
    ):
        problems.append("monetaryValue: must be a number >= 0")


# -- contacts -----------------------------------------------------------------------------


def _contact_create(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    if not _nonempty(p.get("email")) and not _nonempty(p.get("phone")):
        problems.append("email: required unless phone is given")
    email = p.get("email")
    if email is not None and not (isinstance(email, str) and "@" in email):
        problems.append("email: must be an email address")
    if "tags" in p:
        _tags(p, problems)
    body = _with_custom_fields({**_rest(p), "locationId": location}, problems)
    return GhlRequest("POST", "/contacts/upsert", API_VERSION, body)


def _contact_update(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    (contact,) = _ids(p, ("contactId",), problems)
    body = _with_custom_fields(_rest(p, "contactId"), problems)
    if not body:
        problems.append("payload: give at least one contact field to change")
    return GhlRequest("PUT", f"/contacts/{contact}", API_VERSION, body)


def _contact_delete(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    (contact,) = _ids(p, ("contactId",), problems)
    return GhlRequest("DELETE", f"/contacts/{contact}", API_VERSION)


def _custom_field_update(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    (contact,) = _ids(p, ("contactId",), problems)
    fields = _custom_fields(p.get("customFields"), problems)
    if "customFields" not in p:
        problems.append("customFields: required (field id -> value, or GHL's list)")
    elif fields == []:
        problems.append("customFields: must name at least one field")
    return GhlRequest("PUT", f"/contacts/{contact}", API_VERSION, {"customFields": fields or []})


def _tag(method: str) -> Builder:
    def build(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
        (contact,) = _ids(p, ("contactId",), problems)
        return GhlRequest(
            method, f"/contacts/{contact}/tags", API_VERSION, {"tags": _tags(p, problems)}
        )

    return build


def _note_create(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    (contact,) = _ids(p, ("contactId",), problems)
    if not _nonempty(p.get("body")):
        problems.append("body: required (the note's text)")
    return GhlRequest("POST", f"/contacts/{contact}/notes", API_VERSION, _rest(p, "contactId"))


def _task_create(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    (contact,) = _ids(p, ("contactId",), problems)
    for name in ("title", "dueDate"):
        if not _nonempty(p.get(name)):
            problems.append(f"{name}: required (a non-empty string; dueDate ISO-8601)")
    completed = p.get("completed", False)
    if not isinstance(completed, bool):
        problems.append("completed: must be true or false")
    body = {**_rest(p, "contactId"), "completed": completed}
    return GhlRequest("POST", f"/contacts/{contact}/tasks", API_VERSION, body)


def _campaign(method: str) -> Builder:
    def build(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
        contact, campaign = _ids(p, ("contactId", "campaignId"), problems)
        body: dict[str, Any] | None = {} if method == "POST" else None
        return GhlRequest(method, f"/contacts/{contact}/campaigns/{campaign}", API_VERSION, body)

    return build


def _workflow_trigger(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    contact, workflow = _ids(p, ("contactId", "workflowId"), problems)
    body: dict[str, Any] = {}
    start = p.get("eventStartTime")
    if start is not None:
        if not _nonempty(start):
            problems.append("eventStartTime: must be an ISO-8601 date-time string")
        body["eventStartTime"] = start
    return GhlRequest("POST", f"/contacts/{contact}/workflow/{workflow}", API_VERSION, body)


# -- opportunities ------------------------------------------------------------------------


def _opportunity_body(p: Mapping[str, Any], problems: list[str], *drop: str) -> dict[str, Any]:
    body = _rest(p, *drop, "title", "stageId")
    # The seed-001 / legacy names of the same fields.
    if "name" not in body and "title" in p:
        body["name"] = p["title"]
    if "pipelineStageId" not in body and "stageId" in p:
        body["pipelineStageId"] = p["stageId"]
    _money(p, problems)
    return _with_custom_fields(body, problems)


def _opportunity_create(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    body = _opportunity_body(p, problems)
    for name in ("pipelineId", "name", "contactId"):
        if not _nonempty(body.get(name)):
            problems.append(f"{name}: required (a non-empty string)")
    _status(p, problems, default="open")
    body.setdefault("status", "open")
    body["locationId"] = location
    return GhlRequest("POST", "/opportunities/", API_VERSION, body)


def _opportunity_update(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    (opportunity,) = _ids(p, ("opportunityId",), problems)
    body = _opportunity_body(p, problems, "opportunityId", "contactId")
    _status(p, problems, default=None)
    if not body:
        problems.append("payload: give at least one opportunity field to change")
    return GhlRequest("PUT", f"/opportunities/{opportunity}", API_VERSION, body)


def _pipeline_update(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    (opportunity,) = _ids(p, ("opportunityId",), problems)
    body = _opportunity_body(p, problems, "opportunityId", "contactId")
    if not _nonempty(body.get("pipelineStageId")):
        problems.append("pipelineStageId: required (the stage to move the opportunity to)")
    _status(p, problems, default=None)
    return GhlRequest("PUT", f"/opportunities/{opportunity}", API_VERSION, body)


# -- conversations, calendars -------------------------------------------------------------

MESSAGE_TYPES = ("SMS", "Email", "WhatsApp", "IG", "FB", "Custom", "Live_Chat", "RCS", "TIKTOK")


def _conversation_send(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    body = {**_rest(p), "type": p.get("type", "SMS")}
    if body["type"] not in MESSAGE_TYPES:
        problems.append(f"type: must be one of {', '.join(MESSAGE_TYPES)}")
    if not _nonempty(p.get("contactId")):
        problems.append("contactId: required (a non-empty string)")
    if not any(_nonempty(p.get(name)) for name in ("message", "html", "templateId")):
        problems.append("message: required unless html or templateId is given")
    return GhlRequest("POST", "/conversations/messages", CONVERSATIONS_VERSION, body)


def _conversation_read(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    limit = p.get("limit")
    query: dict[str, str] = {}
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
            problems.append("limit: must be a whole number in [1, 100]")
        else:
            query["limit"] = str(limit)
    conversation = p.get("conversationId")
    if conversation is None and _nonempty(p.get("contactId")):
        query.update(locationId=location, contactId=str(p["contactId"]))
        return GhlRequest("GET", "/conversations/search", CONVERSATIONS_VERSION, None, query)
    if not _nonempty(conversation):
        problems.append("conversationId: required unless contactId is given")
        conversation = ""
    if _nonempty(p.get("lastMessageId")):
        query["lastMessageId"] = str(p["lastMessageId"])
    path = f"/conversations/{quote(str(conversation), safe='')}/messages"
    return GhlRequest("GET", path, CONVERSATIONS_VERSION, None, query)


def _calendar_booking(p: Mapping[str, Any], location: str, problems: list[str]) -> GhlRequest:
    for name in ("calendarId", "contactId", "startTime"):
        if not _nonempty(p.get(name)):
            problems.append(f"{name}: required (a non-empty string; startTime ISO-8601)")
    body = {**_rest(p), "locationId": location}
    return GhlRequest("POST", "/calendars/events/appointments", CONVERSATIONS_VERSION, body)


def _route(operation: str, method: str, template: str, version: str, build: Builder) -> Route:
    return Route(operation, method, template, version, build)


ROUTES: dict[str, Route] = {
    r.operation: r
    for r in (
        _route("contact_create", "POST", "/contacts/upsert", API_VERSION, _contact_create),
        _route("contact_update", "PUT", "/contacts/{contactId}", API_VERSION, _contact_update),
        _route("contact_delete", "DELETE", "/contacts/{contactId}", API_VERSION, _contact_delete),
        _route(
            "custom_field_update",
            "PUT",
            "/contacts/{contactId}",
            API_VERSION,
            _custom_field_update,
        ),
        _route("tag_add", "POST", "/contacts/{contactId}/tags", API_VERSION, _tag("POST")),
        _route("tag_remove", "DELETE", "/contacts/{contactId}/tags", API_VERSION, _tag("DELETE")),
        _route("note_create", "POST", "/contacts/{contactId}/notes", API_VERSION, _note_create),
        _route("task_create", "POST", "/contacts/{contactId}/tasks", API_VERSION, _task_create),
        _route(
            "campaign_add",
            "POST",
            "/contacts/{contactId}/campaigns/{campaignId}",
            API_VERSION,
            _campaign("POST"),
        ),
        _route(
            "campaign_remove",
            "DELETE",
            "/contacts/{contactId}/campaigns/{campaignId}",
            API_VERSION,
            _campaign("DELETE"),
        ),
        _route(
            "workflow_trigger",
            "POST",
            "/contacts/{contactId}/workflow/{workflowId}",
            API_VERSION,
            _workflow_trigger,
        ),
        _route("opportunity_create", "POST", "/opportunities/", API_VERSION, _opportunity_create),
        _route(
            "opportunity_update",
            "PUT",
            "/opportunities/{opportunityId}",
            API_VERSION,
            _opportunity_update,
        ),
        _route(
            "pipeline_update",
            "PUT",
            "/opportunities/{opportunityId}",
            API_VERSION,
            _pipeline_update,
        ),
        _route(
            "conversation_send",
            "POST",
            "/conversations/messages",
            CONVERSATIONS_VERSION,
            _conversation_send,
        ),
        _route(
            "conversation_read",
            "GET",
            "/conversations/{conversationId}/messages",
            CONVERSATIONS_VERSION,
            _conversation_read,
        ),
        _route(
            "calendar_booking",
            "POST",
            "/calendars/events/appointments",
            CONVERSATIONS_VERSION,
            _calendar_booking,
        ),
    )
}


def ghl_request(operation: str, payload: Mapping[str, Any], location_id: str) -> GhlRequest:
    """The request ``operation`` makes for ``payload`` in sub-account ``location_id``."""
    route = ROUTES.get(operation)
    if route is None:
        why = NO_API.get(operation, "not a GoHighLevel operation")
        raise GhlPayloadError(operation, [f"operation: {operation} has no v2 API ({why})"])
    if not isinstance(payload, Mapping):
        raise GhlPayloadError(operation, ["payload: must be an object"])
    problems: list[str] = []
    given = payload.get("locationId")
    if given is not None and given != location_id:
        problems.append(
            "locationId: names another sub-account than this client's credentials "
            "(leave it out: it comes from TASKSTREAM_GHL_CREDENTIALS_FILE)"
        )
    request = route.build(payload, location_id, problems)
    if problems or request is None:
        raise GhlPayloadError(operation, problems)
    return request
