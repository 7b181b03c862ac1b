"""The outbound guard on real connections: api_call, webhooks and ghl_action refuse loopback,
private and link-local destinations -- IP literals, names resolving to them, redirects to
them -- unless the allow list names them; no request reaches a refused destination."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from streams.executor import TaskContext
from streams.executor.handlers import (
    ApiCallHandler,
    GhlAccount,
    GhlActionHandler,
    GhlApiHandler,
    GhlCredentials,
    GhlPermanentError,
    NotificationHandler,
    WebhookNotifier,
    builtin_handlers,
)
from streams.executor.handlers.errors import OutboundRefusedError
from streams.executor.handlers.http import HttpClient
from streams.executor.handlers.outbound import OutboundPolicy
from streams.settings import Settings


@dataclass
class Local:
    port: int
    hits: list[str] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"


@pytest.fixture
async def local() -> AsyncIterator[Local]:
    state = Local(port=0)

    async def ok(request: web.Request) -> web.Response:
        state.hits.append(request.path)
        return web.json_response({"ok": True})

    async def redirect(request: web.Request) -> web.Response:
        state.hits.append(request.path)
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/redirect", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


def ctx(operation: str, /, **payload: Any) -> TaskContext:
    return TaskContext(
        task_id="t1",
        client_id="c1",
        operation=operation,
        payload=payload,
        attempt=0,
        fencing_token=1,
    )


async def call(handler: ApiCallHandler, url: str) -> Any:
    return await handler(ctx("api_call", apiEndpoint=url, authType="bearer", bearerToken="tk-1"))


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("localhost", "loopback"),
    ],
)
async def test_api_call_refuses_non_public_destinations(local: Local, host: str, why: str) -> None:
    async with ApiCallHandler() as handler:
        with pytest.raises(OutboundRefusedError, match=why) as info:
            await call(handler, f"{local.url(host)}/ok")
    message = str(info.value)
    assert "TASKSTREAM_OUTBOUND_ALLOW" in message and "tk-1" not in message
    if host == "localhost":
        assert "localhost resolves to" in message
    assert local.hits == []


async def test_an_allowed_address_is_reached(local: Local) -> None:
    async with ApiCallHandler(OutboundPolicy.parse("127.0.0.1")) as handler:
        out = await call(handler, f"{local.url()}/ok")
    assert out["status"] == 200 and local.hits == ["/ok"]


async def test_a_name_is_reached_only_when_every_address_it_resolves_to_is_allowed(
    local: Local,
) -> None:
    async with ApiCallHandler(OutboundPolicy.parse("127.0.0.0/8 ::1")) as handler:
        out = await call(handler, f"{local.url('localhost')}/ok")
    assert out["status"] == 200 and local.hits == ["/ok"]


async def test_a_redirect_to_a_refused_destination_is_not_followed(local: Local) -> None:
    policy = OutboundPolicy.parse("127.0.0.1")
    async with ApiCallHandler(policy) as handler:
        for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/admin"):
            with pytest.raises(OutboundRefusedError, match="is (link-local|private)"):
                await call(handler, f"{local.url()}/redirect?to={target}")
        # An allowed hop is followed.
        out = await call(handler, f"{local.url()}/redirect?to={local.url()}/ok")
    assert out["status"] == 200
    assert local.hits == ["/redirect", "/redirect", "/redirect", "/ok"]


async def test_webhooks_and_ghl_action_are_guarded_too(local: Local) -> None:
    async with HttpClient() as http:
        notify = NotificationHandler(WebhookNotifier(http=http))
        with pytest.raises(OutboundRefusedError, match="loopback"):
            await notify(ctx("notification", webhookUrl=f"{local.url()}/ok", message="hi"))
        account = GhlAccount("loc-1", SecretStr("ghl-key"))
        ghl = GhlActionHandler(
            GhlApiHandler(GhlCredentials.of({"c1": account}), base_url=local.url(), http=http)
        )
        # Refused for good: a permanent failure, not retried.
        with pytest.raises(GhlPermanentError, match="refused.*loopback"):
            await ghl(ctx("ghl_action", ghlAction="add_contact", phone="+1"))
    assert local.hits == []


async def test_builtin_handlers_take_the_allow_list_from_settings(local: Local) -> None:
    hook = f"{local.url()}/ok"
    refused = Settings(kafka_bootstrap_servers="127.0.0.1:9")
    async with builtin_handlers(refused) as handlers:
        with pytest.raises(OutboundRefusedError):
            await handlers["notification"](ctx("notification", webhookUrl=hook, message="x"))
        with pytest.raises(OutboundRefusedError):
            await handlers["api_call"](ctx("api_call", apiEndpoint=hook))
    assert local.hits == []
    allowed = Settings(kafka_bootstrap_servers="127.0.0.1:9", outbound_allow="127.0.0.1")
    async with builtin_handlers(allowed) as handlers:
        await handlers["notification"](ctx("notification", webhookUrl=hook, message="x"))
        await handlers["api_call"](ctx("api_call", apiEndpoint=hook))
    assert local.hits == ["/ok", "/ok"]
