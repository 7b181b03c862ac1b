"""A local stand-in for GoHighLevel's v2 API (aiohttp on 127.0.0.1), written from HighLevel's
published OpenAPI documents independently of the handler's route table.

For each endpoint the fake checks what the real API insists on: a Bearer token it knows (401
otherwise), the ``Version`` header that endpoint's document names (400 otherwise), the body
fields the document marks required (422 otherwise) and, where a body or query names a
``locationId``, that it is the token's own sub-account (403 otherwise). It records every call
with the client whose token it carried and answers in the documents' shapes. ``throttle(n)``
makes the next ``n`` requests answer 429 (with ``Retry-After`` unless told otherwise);
``fail_next(status)`` makes the next request answer ``status``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

V2 = "2021-07-28"
V1_CONV = "2021-04-15"  # the conversations and calendars documents' Version


@dataclass
class Call:
    method: str
    path: str
    """The decoded path the router matched."""
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    client: str | None
    """Whose token the request carried (None: an unknown token)."""
    status: int = 0


Answer = Callable[[web.Request, Any], tuple[int, Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    version: str
    required: tuple[str, ...] = ()
    location_in_body: bool = False
    location_in_query: bool = False
    answer: Answer = lambda request, body: (200, {"succeded": True})


def _contact(request: web.Request, body: Any) -> tuple[int, Any]:
    return 200, {"new": True, "contact": {"id": "ct_new", **{k: body[k] for k in body}}}


def _id(name: str, value: str, status: int = 201) -> Answer:
    return lambda request, body: (status, {name: {"id": value, **(body or {})}})


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST", "/contacts/upsert", V2, ("locationId",), location_in_body=True, answer=_contact
    ),
    Endpoint(
        "PUT",
        "/contacts/{contactId}",
        V2,
        answer=lambda r, b: (200, {"succeded": True, "contact": {"id": r.match_info["contactId"]}}),
    ),
    Endpoint("DELETE", "/contacts/{contactId}", V2),
    Endpoint(
        "POST",
        "/contacts/{contactId}/tags",
        V2,
        ("tags",),
        answer=lambda r, b: (201, {"tags": b["tags"]}),
    ),
    Endpoint(
        "DELETE",
        "/contacts/{contactId}/tags",
        V2,
        ("tags",),
        answer=lambda r, b: (200, {"tags": []}),
    ),
    Endpoint("POST", "/contacts/{contactId}/notes", V2, ("body",), answer=_id("note", "nt_1")),
    Endpoint(
        "POST",
        "/contacts/{contactId}/tasks",
        V2,
        ("title", "dueDate", "completed"),
        answer=_id("task", "tk_1"),
    ),
    Endpoint(
        "POST",
        "/contacts/{contactId}/campaigns/{campaignId}",
        V2,
        answer=lambda r, b: (201, {"succeded": True}),
    ),
    Endpoint("DELETE", "/contacts/{contactId}/campaigns/{campaignId}", V2),
    Endpoint("POST", "/contacts/{contactId}/workflow/{workflowId}", V2),
    Endpoint(
        "POST",
        "/opportunities/",
        V2,
        ("pipelineId", "locationId", "name", "status", "contactId"),
        location_in_body=True,
        answer=_id("opportunity", "op_1"),
    ),
    Endpoint(
        "PUT",
        "/opportunities/{id}",
        V2,
        answer=lambda r, b: (200, {"opportunity": {"id": r.match_info["id"], **b}}),
    ),
    Endpoint(
        "POST",
        "/conversations/messages",
        V1_CONV,
        ("type", "contactId"),
        answer=lambda r, b: (
            200,
            {"conversationId": "cv_1", "messageId": "msg_1", "status": "pending"},
        ),
    ),
    Endpoint(
        "GET",
        "/conversations/{conversationId}/messages",
        V1_CONV,
        answer=lambda r, b: (
            200,
            {
                "lastMessageId": "msg_9",
                "nextPage": False,
                "messages": {"messages": [{"id": "msg_9"}]},
            },
        ),
    ),
    Endpoint(
        "GET",
        "/conversations/search",
        V1_CONV,
        location_in_query=True,
        answer=lambda r, b: (200, {"conversations": [{"id": "cv_1"}], "total": 1}),
    ),
    Endpoint(
        "POST",
        "/calendars/events/appointments",
        V1_CONV,
        ("calendarId", "locationId", "contactId", "startTime"),
        location_in_body=True,
        answer=lambda r, b: (200, {"id": "ap_1", **b}),
    ),
)


@dataclass
class GhlFake:
    accounts: dict[str, tuple[str, str]]
    """client id -> (location id, token)."""
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    retry_after: str | None = "2"
    rate_window_ms: str | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _throttled: int = 0
    _failures: list[int] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def throttle(self, n: int, retry_after: str | None = "2") -> None:
        self._throttled = n
        self.retry_after = retry_after

    def fail_next(self, status: int) -> None:
        self._failures.append(status)

    def by_client(self, client: str) -> list[Call]:
        return [c for c in self.calls if c.client == client]

    def _client_of(self, authorization: str) -> str | None:
        for client, (_location, token) in self.accounts.items():
            if authorization == f"Bearer {token}":
                return client
        return None

    def _handler(self, endpoint: Endpoint) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            text = await request.text()
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = "<not json>"
            call = Call(
                request.method,
                request.path,
                request.raw_path.split("?", 1)[0],
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                body,
                self._client_of(request.headers.get("Authorization", "")),
            )
            self.calls.append(call)
            status, answer = self._answer(endpoint, request, call)
            call.status = status
            headers = {"X-RateLimit-Remaining": "99", "X-RateLimit-Max": "100"}
            if status == 429:
                headers["X-RateLimit-Remaining"] = "0"
                if self.retry_after is not None:
                    headers["Retry-After"] = self.retry_after
                if self.rate_window_ms is not None:
                    headers["X-RateLimit-Interval-Milliseconds"] = self.rate_window_ms
            if call.path.endswith("/slow/tags"):
                await self.release.wait()
            return web.json_response(answer, status=status, headers=headers)

        return handle

    def _answer(self, endpoint: Endpoint, request: web.Request, call: Call) -> tuple[int, Any]:
        if self._throttled > 0:
            self._throttled -= 1
            return 429, {"statusCode": 429, "message": "Too many requests"}
        if self._failures:
            status = self._failures.pop(0)
            return status, {"statusCode": status, "message": f"failing with {status}"}
        if call.client is None:
            return 401, {"statusCode": 401, "message": "Invalid JWT"}
        if call.headers.get("version") != endpoint.version:
            return 400, {"statusCode": 400, "message": f"Version must be {endpoint.version}"}
        location = self.accounts[call.client][0]
        body = call.body if isinstance(call.body, dict) else {}
        if endpoint.method in ("POST", "PUT") and not isinstance(call.body, dict):
            return 422, {"statusCode": 422, "message": "body must be a JSON object"}
        missing = [name for name in endpoint.required if name not in body]
        if missing:
            return 422, {
                "statusCode": 422,
                "message": [f"{m} should not be empty" for m in missing],
            }
        named = body.get("locationId") if endpoint.location_in_body else None
        if endpoint.location_in_query:
            named = call.query.get("locationId")
        if (endpoint.location_in_body or endpoint.location_in_query) and named != location:
            return 403, {
                "statusCode": 403,
                "message": "The token does not have access to this location",
            }
        if request.match_info.get("contactId") == "missing":
            return 404, {"statusCode": 404, "message": "Contact not found"}
        return endpoint.answer(request, body)

    async def start(self) -> GhlFake:
        app = web.Application()
        for endpoint in ENDPOINTS:
            app.router.add_route(endpoint.method, endpoint.path, self._handler(endpoint))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
