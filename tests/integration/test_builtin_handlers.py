"""Built-in handlers against local aiohttp servers on 127.0.0.1 standing in for GoHighLevel,
webhook receivers and the HTTP view (no broker needed)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from projections.rows import TaskRow
from streams.executor import TaskContext
from streams.executor.handlers import (
    ApiCallHandler,
    GhlAccount,
    GhlActionError,
    GhlActionHandler,
    GhlApiHandler,
    GhlCredentials,
    HttpClient,
    NotificationError,
    NotificationHandler,
    ReportError,
    ReportGenerationHandler,
    ViewClient,
    WebhookNotifier,
    builtin_handlers,
)
from streams.executor.handlers.outbound import OutboundPolicy
from streams.settings import Settings

# The fakes listen on loopback, which the outbound guard refuses unless it is allowed.
LOCAL = OutboundPolicy.parse("127.0.0.1")

API_KEY = "ghl-s3cret-key-123"
VIEW_TOKEN = "view-t0ken-456"
HOOK_TOKEN = "hook-t0ken-789"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Fake:
    url: str
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    state = Fake(url="")

    async def record(request: web.Request) -> Seen:
        text = await request.text()
        seen = Seen(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            json.loads(text) if text else None,
        )
        state.seen.append(seen)
        return seen

    async def ghl(request: web.Request) -> web.Response:
        seen = await record(request)
        contact = request.match_info.get("contact", "")
        if contact == "slow":
            await state.release.wait()
        if contact == "bad":
            # A careless API that echoes the credentials it got into its error page.
            return web.Response(status=422, text=f"rejected {seen.headers.get('authorization')}")
        if request.path.endswith("/tags"):
            return web.json_response({"tags": seen.body["tags"]})
        return web.json_response({"contact": {"id": contact or "ct_new"}})

    async def hook(request: web.Request) -> web.Response:
        await record(request)
        code = int(request.match_info.get("code", "200"))
        return web.Response(status=code, text="" if code < 300 else "receiver down")

    rows = [
        TaskRow(
            task_id=f"t{i}",
            client_id="acme",
            state="completed" if i % 4 else "failed",
            operation="api_call" if i % 2 else "ghl_action",
            accepted_at_ms=1_730_419_200_000 + i,
            finished_at_ms=1_730_419_200_000 + 1000 + i,
            execution_time_ms=10 * (i + 1),
        ).model_dump(mode="json")
        for i in range(7)
    ]

    async def tasks(request: web.Request) -> web.Response:
        await record(request)
        if request.headers.get("Authorization") != f"Bearer {VIEW_TOKEN}":
            return web.json_response({"detail": "missing or wrong bearer token"}, status=401)
        limit = int(request.query["limit"])
        start = int(request.query.get("cursor", "0"))
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return web.json_response(
            {"items": page, "next_cursor": str(start + limit) if more else None, "projection": {}}
        )

    async def health(request: web.Request) -> web.Response:
        await record(request)
        stats = {"processed": 7, "succeeded": 5, "failed": 2, "success_rate": 0.71}
        return web.json_response({"status": "healthy", "stats": stats})

    app = web.Application()
    app.router.add_post("/contacts/upsert", ghl)
    app.router.add_put("/contacts/{contact}", ghl)
    app.router.add_post("/contacts/{contact}/tags", ghl)
    app.router.add_post("/hook", hook)
    app.router.add_post("/hook/{code}", hook)
    app.router.add_get("/tasks", tasks)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient(LOCAL) as client:
        yield client


def ctx(operation: str, /, **payload: Any) -> TaskContext:
    return TaskContext(
        task_id="t1",
        client_id="c1",
        operation=operation,
        payload=payload,
        attempt=0,
        fencing_token=1,
    )


def ghl(fake: Fake, http: HttpClient, **kwargs: Any) -> GhlActionHandler:
    account = GhlAccount("loc-default", SecretStr(API_KEY))
    api = GhlApiHandler(
        GhlCredentials.of({"c1": account}), base_url=f"{fake.url}/", http=http, **kwargs
    )
    return GhlActionHandler(api)


# -- ghl_action ----------------------------------------------------------------------------


async def test_ghl_non_2xx_fails_naming_the_status_without_the_key(
    fake: Fake, http: HttpClient
) -> None:
    with pytest.raises(GhlActionError) as info:
        await ghl(fake, http)(
            ctx("ghl_action", ghlAction="update_contact", contactId="bad", firstName="X")
        )
    message = str(info.value)
    assert "ghl_action update_contact got HTTP 422" in message
    assert f"PUT {fake.url}/contacts/bad" in message
    assert API_KEY not in message
    assert "rejected Bearer ***" in message


# -- notification, reminder ----------------------------------------------------------------


async def test_notification_posts_json_to_the_webhook(fake: Fake, http: HttpClient) -> None:
    handler = NotificationHandler(WebhookNotifier(http=http))
    out = await handler(
        ctx(
            "notification",
            webhookUrl=f"{fake.url}/hook?token={HOOK_TOKEN}",
            message="Done",
            title="Report",
            recipient="owner",
            data={"n": 1},
        )
    )
    [seen] = fake.seen
    assert (seen.method, seen.path, seen.query) == ("POST", "/hook", {"token": HOOK_TOKEN})
    assert seen.headers["content-type"].startswith("application/json")
    assert seen.body["type"] == "notification"
    assert {
        k: seen.body[k] for k in ("task_id", "client_id", "recipient", "message", "title", "data")
    } == {
        "task_id": "t1",
        "client_id": "c1",
        "recipient": "owner",
        "message": "Done",
        "title": "Report",
        "data": {"n": 1},
    }
    assert out["status"] == 200
    assert out["delivered_to"] == f"{fake.url}/hook?token=***"


async def test_notification_non_2xx_fails(fake: Fake, http: HttpClient) -> None:
    handler = NotificationHandler(WebhookNotifier(http=http))
    with pytest.raises(NotificationError, match="notification got HTTP 503") as info:
        await handler(
            ctx("notification", webhookUrl=f"{fake.url}/hook/503?key={HOOK_TOKEN}", message="x")
        )
    assert HOOK_TOKEN not in str(info.value)
    assert "receiver down" in str(info.value)


async def test_reminder_goes_to_the_default_channel_for_a_recipient(
    fake: Fake, http: HttpClient
) -> None:
    handler = NotificationHandler(
        WebhookNotifier(http=http), default_webhook_url=f"{fake.url}/hook", kind="reminder"
    )
    out = await handler(
        ctx(
            "reminder",
            reminderTime="2024-12-15T10:00:00Z",
            reminderMessage="Follow up",
            recipient="owner",
        )
    )
    [seen] = fake.seen
    assert seen.path == "/hook"
    assert (seen.body["type"], seen.body["message"], seen.body["reminder_time"]) == (
        "reminder",
        "Follow up",
        "2024-12-15T10:00:00Z",
    )
    assert seen.body["recipient"] == "owner"
    assert "early_by_ms" not in out  # the reminder time has passed
    early = await handler(
        ctx("reminder", reminderTime="2999-01-01T00:00:00Z", reminderMessage="m", recipient="owner")
    )
    assert early["early_by_ms"] > 0


# -- report_generation ---------------------------------------------------------------------


async def test_report_reads_the_view_with_its_token(fake: Fake, http: HttpClient) -> None:
    view = ViewClient(fake.url, token=SecretStr(VIEW_TOKEN), http=http)
    handler = ReportGenerationHandler(view, page_size=3)
    out = await handler(
        ctx(
            "report_generation",
            reportType="execution_stats",
            dateFrom="2024-11-01",
            dateTo="2024-11-01",
            clientId="acme",
        )
    )
    paths = [(s.path, s.query.get("cursor")) for s in fake.seen]
    assert paths == [("/tasks", None), ("/tasks", "3"), ("/tasks", "6"), ("/health", None)]
    assert fake.seen[0].query == {"limit": "3", "client_id": "acme"}
    assert (out["finished"], out["completed"], out["failed"]) == (7, 5, 2)
    assert out["execution_time"]["max_ms"] == 70
    assert out["service"]["processed"] == 7
    assert out["by_operation"]["ghl_action"]["failed"] == 2

    summary = await handler(ctx("report_generation", reportType="task_summary"))
    assert summary["total"] == 7
    assert summary["by_state"] == {"completed": 5, "failed": 2}


async def test_report_fails_when_the_view_refuses(fake: Fake, http: HttpClient) -> None:
    view = ViewClient(fake.url, token=SecretStr("wrong-token-000"), http=http)
    with pytest.raises(ReportError, match="HTTP 401") as info:
        await ReportGenerationHandler(view)(ctx("report_generation", reportType="task_summary"))
    assert "wrong-token-000" not in str(info.value)


# -- all together: builtin_handlers with notice flags, and no secret in the logs -----------------


async def test_builtin_handlers_send_no_notices_and_never_log_secrets(
    fake: Fake, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = tmp_path / "ghl.toml"
    credentials.write_text(f'[c1]\nlocation_id = "loc-1"\ntoken = "{API_KEY}"\n')
    settings = Settings(
        ghl_base_url=fake.url,
        ghl_credentials_file=credentials,
        http_port=int(fake.url.rsplit(":", 1)[1]),
        http_token=SecretStr(VIEW_TOKEN),
        webhook_timeout_ms=2000,
        outbound_allow="127.0.0.1",
    )
    notice = {
        "notify_on_complete": True,
        "notify_on_failure": True,
        "notifyWebhookUrl": f"{fake.url}/hook?token={HOOK_TOKEN}",
    }
    async with builtin_handlers(settings) as handlers:
        out = await handlers["ghl_action"](
            ctx("ghl_action", ghlAction="add_tag", contactId="ct_1", tags=["vip"], **notice)
        )
        assert out is not None and out["contact_id"] == "ct_1"
        with pytest.raises(GhlActionError, match="HTTP 422"):
            await handlers["ghl_action"](
                ctx(
                    "ghl_action",
                    ghlAction="update_contact",
                    contactId="bad",
                    firstName="X",
                    **notice,
                )
            )
        report = await handlers["report_generation"](
            ctx("report_generation", reportType="task_summary", **notice)
        )
        assert (
            report is not None and report["total"] == 7
        )  # read from the "view" at settings.http_host:http_port
        broken = {**notice, "notifyWebhookUrl": f"{fake.url}/hook/500?token={HOOK_TOKEN}"}
        await handlers["api_call"](
            ctx(
                "api_call",
                apiEndpoint=f"{fake.url}/hook",
                apiMethod="POST",
                authType="api_key",
                apiKey=API_KEY,
                **broken,
            )
        )

    # Notices of outcomes are the notifier part's (tests/integration/test_notifier.py): the
    # handlers post none, per attempt or otherwise.
    assert [s.path for s in fake.seen if s.path.startswith("/hook") and s.query] == []
    logged = caplog.text
    for secret in (API_KEY, VIEW_TOKEN, HOOK_TOKEN):
        assert secret not in logged


async def test_api_call_still_works_through_the_shared_rules(fake: Fake) -> None:
    async with ApiCallHandler(LOCAL) as handler:
        out = await handler(
            ctx("api_call", apiEndpoint=f"{fake.url}/hook", apiMethod="POST", apiPayload={"a": 1})
        )
    assert out["status"] == 200
    assert fake.seen[0].body == {"a": 1}
