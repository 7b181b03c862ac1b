"""api_call against a real HTTP server on 127.0.0.1 (no broker needed)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from schemas.commands import ReportResult
from schemas.records import Assignment, AssignmentItem
from streams.executor import ApiCallConfigError, ApiCallError, TaskContext, WorkerPool
from streams.executor.handlers import ApiCallHandler
from streams.executor.handlers.outbound import OutboundPolicy

TOKEN = "s3cr3t-bearer-token"
API_KEY = "k3y-0f-the-api"
PASSWORD = "pa55w0rd!"


async def echo(request: web.Request) -> web.Response:
    body = await request.text()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
        }
    )


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    headers = (
        {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
    )
    # A careless server that echoes the credentials it got back into its error page.
    return web.Response(
        status=code, text=f"denied for {request.headers.get('Authorization')}", headers=headers
    )


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1)
    return web.Response(text="late")


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def api_call() -> AsyncIterator[ApiCallHandler]:
    # The server listens on loopback: allowed explicitly, as the outbound guard wants.
    async with ApiCallHandler(OutboundPolicy.parse("127.0.0.1")) as handler:
        yield handler


def ctx(**payload: Any) -> TaskContext:
    return TaskContext(
        task_id="t1",
        client_id="c1",
        operation="api_call",
        payload=payload,
        attempt=0,
        fencing_token=1,
    )


async def test_bearer_token_goes_in_the_authorization_header(
    server: str, api_call: ApiCallHandler
) -> None:
    out = await api_call(ctx(apiEndpoint=f"{server}/echo", authType="bearer", bearerToken=TOKEN))
    assert out["status"] == 200
    assert out["body"]["headers"]["authorization"] == "Bearer ***"  # masked in the output
    assert out["body"]["method"] == "GET"


async def test_api_key_header_default_and_custom_name(
    server: str, api_call: ApiCallHandler
) -> None:
    out = await api_call(ctx(apiEndpoint=f"{server}/echo", authType="api_key", apiKey=API_KEY))
    headers = out["body"]["headers"]
    assert headers["x-api-key"] == "***"
    assert "authorization" not in headers
    out = await api_call(
        ctx(
            apiEndpoint=f"{server}/echo",
            authType="api_key",
            apiKey=API_KEY,
            apiKeyHeader="X-Partner-Key",
        )
    )
    assert out["body"]["headers"]["x-partner-key"] == "***"
    assert "x-api-key" not in out["body"]["headers"]


async def test_basic_auth_and_the_server_sees_the_real_credentials(
    server: str, api_call: ApiCallHandler
) -> None:
    seen: list[str] = []

    async def capture(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", capture)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        out = await api_call(
            ctx(
                apiEndpoint=f"http://127.0.0.1:{port}/",
                authType="basic",
                username="bob",
                password=PASSWORD,
            )
        )
        await api_call(
            ctx(apiEndpoint=f"http://127.0.0.1:{port}/", authType="bearer", bearerToken=TOKEN)
        )
        await api_call(ctx(apiEndpoint=f"http://127.0.0.1:{port}/"))
    finally:
        await runner.cleanup()
    assert out["body"] == {"ok": True}
    assert seen == [
        "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode(),
        f"Bearer {TOKEN}",
        "",
    ]


async def test_post_sends_json_and_get_sends_query_parameters(
    server: str, api_call: ApiCallHandler
) -> None:
    out = await api_call(
        ctx(
            apiEndpoint=f"{server}/echo",
            apiMethod="POST",
            apiPayload={"name": "Ada", "tags": ["x"]},
            customHeaders={"X-Trace": "abc"},
        )
    )
    body = out["body"]
    assert body["method"] == "POST"
    assert body["headers"]["x-trace"] == "abc"
    assert body["headers"]["content-type"].startswith("application/json")
    assert body["body"] == '{"name": "Ada", "tags": ["x"]}'
    out = await api_call(ctx(apiEndpoint=f"{server}/echo", apiPayload={"page": 2, "active": True}))
    assert out["body"]["query"] == {"page": "2", "active": "true"}


async def test_non_2xx_fails_naming_the_status_without_the_secret(
    server: str, api_call: ApiCallHandler
) -> None:
    with pytest.raises(ApiCallError) as info:
        await api_call(
            ctx(
                apiEndpoint=f"{server}/status/503",
                apiMethod="POST",
                authType="bearer",
                bearerToken=TOKEN,
            )
        )
    message = str(info.value)
    assert "HTTP 503" in message
    assert f"POST {server}/status/503" in message
    assert TOKEN not in message
    assert "denied for Bearer ***" in message


@pytest.mark.parametrize(
    ("path", "failure_class", "retry_after_ms"),
    [
        ("/status/404", "permanent", None),
        ("/status/422", "permanent", None),
        ("/status/408", "retryable", None),
        ("/status/429?retry_after=3", "retryable", 3000),
        ("/status/503?retry_after=2", "retryable", 2000),
        ("/status/500", "retryable", None),
        ("/slow", "retryable", None),  # timed out (timeout 100 ms below)
    ],
)
async def test_answers_fail_with_their_class(
    server: str, api_call: ApiCallHandler, path: str, failure_class: str, retry_after_ms: int | None
) -> None:
    recorded: list[Any] = []
    pool = WorkerPool({"api_call": api_call}, report=recorded.append)
    await pool.start()
    await pool.submit(
        Assignment(
            kind="task",
            client_id="c1",
            operation="api_call",
            task_id="t1",
            fencing_token=1,
            items=[
                AssignmentItem(
                    task_id="t1", payload={"apiEndpoint": f"{server}{path}", "timeout": 100}
                )
            ],
        )
    )
    assert await pool.close(10)
    [result] = [r for r in recorded if isinstance(r, ReportResult)]
    assert not result.success
    assert (result.failure_class, result.retry_after_ms) == (failure_class, retry_after_ms)


async def test_timeout_fails_the_call(server: str, api_call: ApiCallHandler) -> None:
    with pytest.raises(ApiCallError, match="timed out after 100 ms"):
        await api_call(ctx(apiEndpoint=f"{server}/slow", timeout=100))


async def test_invalid_config_fails_before_any_request(api_call: ApiCallHandler) -> None:
    with pytest.raises(ApiCallConfigError) as info:
        await api_call(ctx(apiEndpoint="ftp://x/y", authType="basic", password=PASSWORD))
    message = str(info.value)
    assert "apiEndpoint: must be an http:// or https:// URL" in message
    assert "username: required when authType is 'basic'" in message
    assert PASSWORD not in message


async def test_connection_refused_is_a_failure(api_call: ApiCallHandler) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ApiCallError, match="request failed"):
        await api_call(ctx(apiEndpoint=f"http://127.0.0.1:{port}/x", timeout=2000))


async def test_secrets_never_reach_the_logs(
    server: str, api_call: ApiCallHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    calls = [
        {"apiEndpoint": f"{server}/echo", "authType": "bearer", "bearerToken": TOKEN},
        {"apiEndpoint": f"{server}/status/401", "authType": "bearer", "bearerToken": TOKEN},
        {"apiEndpoint": f"{server}/echo?api_key={API_KEY}"},
        {"apiEndpoint": f"{server}/status/500", "authType": "api_key", "apiKey": API_KEY},
        {
            "apiEndpoint": f"{server}/status/403",
            "authType": "basic",
            "username": "bob",
            "password": PASSWORD,
        },
        {
            "apiEndpoint": f"{server}/slow",
            "bearerToken": TOKEN,
            "authType": "bearer",
            "timeout": 50,
        },
    ]
    recorded: list[Any] = []
    pool = WorkerPool({"api_call": api_call}, report=recorded.append, concurrency=3)
    await pool.start()
    for i, payload in enumerate(calls):
        await pool.submit(
            Assignment(
                kind="task",
                client_id="c1",
                operation="api_call",
                task_id=f"t{i}",
                fencing_token=1,
                items=[AssignmentItem(task_id=f"t{i}", payload=payload)],
            )
        )
    assert await pool.close(10)
    results = {r.task_id: r for r in recorded if isinstance(r, ReportResult)}
    assert [results[f"t{i}"].success for i in range(len(calls))] == [
        True,
        False,
        True,
        False,
        False,
        False,
    ]
    assert "HTTP 401" in (results["t1"].error or "")
    assert "HTTP 500" in (results["t3"].error or "")
    assert "api_key=***" in caplog.text  # the call was logged, with its key masked
    everything = caplog.text + repr(recorded)
    basic = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    for secret in (TOKEN, API_KEY, PASSWORD, basic):
        assert secret not in everything
