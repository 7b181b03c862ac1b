"""The GoHighLevel v2 handlers against a local fake of HighLevel's endpoints (tests/support/
ghl_fake.py): every catalog operation that has an API makes its documented request with its
client's token and location, and answers become failure classes (429 with Retry-After and 5xx
retryable, other 4xx permanent). The last test runs them on the broker through an executor."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from schemas import events as ev
from schemas.catalog import load_catalog
from streams.executor import Executor, SessionSpec, TaskContext
from streams.executor.errors import PermanentError, RetryableError
from streams.executor.handlers import (
    GhlAccount,
    GhlActionHandler,
    GhlApiHandler,
    GhlCredentials,
    GhlPermanentError,
    GhlRetryableError,
    HttpClient,
    ghl_api_handlers,
)
from streams.executor.handlers.ghl_routes import ROUTES
from streams.executor.handlers.outbound import OutboundPolicy
from streams.settings import Settings

from ..support.ghl_fake import GhlFake
from .distributor_harness import Commands, InProcessProcessor, layout, submit, wait_for_events

ACME = ("loc_acme", "pit-acme-7f3c9e1d")
GLOBEX = ("loc_globex", "pit-globex-2b8a4f6e")
ACCOUNTS = {"acme": ACME, "globex": GLOBEX}

# One payload per operation with an API, and the call HighLevel must see for it:
# (method, path, body or None for no body, query).
CASES: dict[str, tuple[dict[str, Any], tuple[str, str, Any, dict[str, str]]]] = {
    "contact_create": (
        {
            "firstName": "John",
            "email": "john@example.com",
            "tags": ["lead"],
            "customFields": {"cf_1": "Acme Inc"},
            "notify_on_complete": False,
        },
        (
            "POST",
            "/contacts/upsert",
            {
                "firstName": "John",
                "email": "john@example.com",
                "tags": ["lead"],
                "customFields": [{"id": "cf_1", "field_value": "Acme Inc"}],
                "locationId": "@",
            },
            {},
        ),
    ),
    "contact_update": (
        {"contactId": "ct 7/x", "lastName": "Doe"},
        ("PUT", "/contacts/ct 7/x", {"lastName": "Doe"}, {}),
    ),
    "contact_delete": ({"contactId": "ct_7"}, ("DELETE", "/contacts/ct_7", None, {})),
    "custom_field_update": (
        {"contactId": "ct_7", "customFields": [{"key": "plan", "field_value": "gold"}]},
        ("PUT", "/contacts/ct_7", {"customFields": [{"key": "plan", "field_value": "gold"}]}, {}),
    ),
    "tag_add": (
        {"contactId": "ct_7", "tags": ["vip", "2024"]},
        ("POST", "/contacts/ct_7/tags", {"tags": ["vip", "2024"]}, {}),
    ),
    "tag_remove": (
        {"contactId": "ct_7", "tags": ["vip"]},
        ("DELETE", "/contacts/ct_7/tags", {"tags": ["vip"]}, {}),
    ),
    "note_create": (
        {"contactId": "ct_7", "body": "Called, wants a demo", "userId": "u_1"},
        ("POST", "/contacts/ct_7/notes", {"body": "Called, wants a demo", "userId": "u_1"}, {}),
    ),
    "task_create": (
        {"contactId": "ct_7", "title": "Follow up", "dueDate": "2026-12-02T10:00:00Z"},
        (
            "POST",
            "/contacts/ct_7/tasks",
            {"title": "Follow up", "dueDate": "2026-12-02T10:00:00Z", "completed": False},
            {},
        ),
    ),
    "campaign_add": (
        {"contactId": "ct_7", "campaignId": "cmp_1"},
        ("POST", "/contacts/ct_7/campaigns/cmp_1", {}, {}),
    ),
    "campaign_remove": (
        {"contactId": "ct_7", "campaignId": "cmp_1"},
        ("DELETE", "/contacts/ct_7/campaigns/cmp_1", None, {}),
    ),
    "workflow_trigger": (
        {"contactId": "ct_7", "workflowId": "wf_1", "eventStartTime": "2026-12-02T10:00:00Z"},
        ("POST", "/contacts/ct_7/workflow/wf_1", {"eventStartTime": "2026-12-02T10:00:00Z"}, {}),
    ),
    "opportunity_create": (
        {
            "pipelineId": "pl_1",
            "pipelineStageId": "st_1",
            "name": "Deal",
            "contactId": "ct_7",
            "monetaryValue": 1500,
        },
        (
            "POST",
            "/opportunities/",
            {
                "pipelineId": "pl_1",
                "pipelineStageId": "st_1",
                "name": "Deal",
                "contactId": "ct_7",
                "monetaryValue": 1500,
                "status": "open",
                "locationId": "@",
            },
            {},
        ),
    ),
    "opportunity_update": (
        {"opportunityId": "op_9", "monetaryValue": 2000, "status": "won"},
        ("PUT", "/opportunities/op_9", {"monetaryValue": 2000, "status": "won"}, {}),
    ),
    "pipeline_update": (
        {"opportunityId": "op_9", "pipelineId": "pl_1", "pipelineStageId": "st_2"},
        ("PUT", "/opportunities/op_9", {"pipelineId": "pl_1", "pipelineStageId": "st_2"}, {}),
    ),
    "conversation_send": (
        {"contactId": "ct_7", "message": "Your appointment is confirmed"},
        (
            "POST",
            "/conversations/messages",
            {"type": "SMS", "contactId": "ct_7", "message": "Your appointment is confirmed"},
            {},
        ),
    ),
    "conversation_read": (
        {"conversationId": "cv_1", "limit": 20},
        ("GET", "/conversations/cv_1/messages", None, {"limit": "20"}),
    ),
    "calendar_booking": (
        {
            "calendarId": "cal_1",
            "contactId": "ct_7",
            "startTime": "2026-12-03T15:00:00Z",
            "title": "Demo",
        },
        (
            "POST",
            "/calendars/events/appointments",
            {
                "calendarId": "cal_1",
                "contactId": "ct_7",
                "startTime": "2026-12-03T15:00:00Z",
                "title": "Demo",
                "locationId": "@",
            },
            {},
        ),
    ),
}
VERSIONS = {
    "conversation_send": "2021-04-15",
    "conversation_read": "2021-04-15",
    "calendar_booking": "2021-04-15",
}
ID_OF = {
    "contact_create": ("contact_id", "ct_new"),
    "note_create": ("note_id", "nt_1"),
    "task_create": ("task_id", "tk_1"),
    "opportunity_create": ("opportunity_id", "op_1"),
    "conversation_send": ("message_id", "msg_1"),
    "calendar_booking": ("appointment_id", "ap_1"),
    "tag_add": ("contact_id", "ct_7"),
    "pipeline_update": ("opportunity_id", "op_9"),
}


def credentials() -> GhlCredentials:
    return GhlCredentials.of(
        {client: GhlAccount(loc, SecretStr(token)) for client, (loc, token) in ACCOUNTS.items()}
    )


@pytest.fixture
async def fake() -> AsyncIterator[GhlFake]:
    server = await GhlFake(dict(ACCOUNTS)).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def api(fake: GhlFake) -> AsyncIterator[GhlApiHandler]:
    # The fake listens on loopback, which the outbound guard refuses unless allowed.
    handler = GhlApiHandler(
        credentials(), base_url=fake.url, http=HttpClient(OutboundPolicy.parse("127.0.0.1"))
    )
    try:
        yield handler
    finally:
        await handler.close()


def ctx(client: str, operation: str, payload: dict[str, Any], task: str = "t1") -> TaskContext:
    return TaskContext(
        task_id=task,
        client_id=client,
        operation=operation,
        payload=payload,
        attempt=0,
        fencing_token=1,
    )


def test_the_catalog_names_each_route_and_says_which_operations_have_none() -> None:
    catalog = load_catalog()
    ghl = {name: spec.ghl_api for name, spec in catalog.items() if spec.ghl_api is not None}
    assert {n for n, api in ghl.items() if api != "none"} == set(ROUTES) == set(CASES)
    assert {n for n, api in ghl.items() if api == "none"} == {
        "bulk_operation",
        "report_generate",
        "data_export",
        "integration_sync",
    }
    for name, route in ROUTES.items():
        assert ghl[name] == route.api


@pytest.mark.parametrize("client", ["acme", "globex"])
async def test_every_operation_with_an_api_calls_ghl_with_its_clients_token(
    fake: GhlFake, api: GhlApiHandler, client: str
) -> None:
    location, token = ACCOUNTS[client]
    for operation, (payload, _) in CASES.items():
        out = await api(ctx(client, operation, payload))
        assert out["operation"] == operation and 200 <= out["status"] < 300, out
        if operation in ID_OF:
            key, value = ID_OF[operation]
            assert out[key] == value, (operation, out)
    assert [c.status for c in fake.calls] == [c.status for c in fake.calls if c.status < 300]
    assert len(fake.calls) == len(CASES)
    for call, (operation, (_, (method, path, body, query))) in zip(
        fake.calls, CASES.items(), strict=True
    ):
        assert call.client == client, operation
        assert call.headers["authorization"] == f"Bearer {token}"
        assert call.headers["version"] == VERSIONS.get(operation, "2021-07-28"), operation
        assert (call.method, call.path) == (method, path), operation
        if isinstance(body, dict) and body.get("locationId") == "@":
            body = {**body, "locationId": location}
        assert call.body == body, operation
        assert call.query == query, operation
    # The contact id with a space and a slash stays one path segment on the wire.
    assert fake.calls[1].raw_path == "/contacts/ct%207%2Fx"


async def test_conversation_read_by_contact_searches_in_the_clients_location(
    fake: GhlFake, api: GhlApiHandler
) -> None:
    out = await api(ctx("globex", "conversation_read", {"contactId": "ct_7"}))
    assert out["response"]["conversations"] == [{"id": "cv_1"}]
    (call,) = fake.calls
    assert (call.method, call.path, call.client) == ("GET", "/conversations/search", "globex")
    assert call.query == {"locationId": "loc_globex", "contactId": "ct_7"}


async def test_429_is_retryable_after_its_retry_after(fake: GhlFake, api: GhlApiHandler) -> None:
    fake.throttle(1, retry_after="7")
    with pytest.raises(GhlRetryableError) as info:
        await api(ctx("acme", "tag_add", {"contactId": "ct_1", "tags": ["x"]}))
    assert info.value.retry_after_ms == 7000
    assert isinstance(info.value, RetryableError)  # the executor reports the Retry-After
    assert "HTTP 429" in str(info.value) and ACME[1] not in str(info.value)
    # Without Retry-After: HighLevel's rate-limit window header, else its 10 s burst window.
    fake.throttle(1, retry_after=None)
    fake.rate_window_ms = "2500"
    with pytest.raises(GhlRetryableError) as info:
        await api(ctx("acme", "tag_add", {"contactId": "ct_1", "tags": ["x"]}))
    assert info.value.retry_after_ms == 2500
    fake.throttle(1, retry_after=None)
    fake.rate_window_ms = None
    with pytest.raises(GhlRetryableError) as info:
        await api(ctx("acme", "tag_add", {"contactId": "ct_1", "tags": ["x"]}))
    assert info.value.retry_after_ms == 10_000
    # Once the window passes, the same request goes through.
    out = await api(ctx("acme", "tag_add", {"contactId": "ct_1", "tags": ["x"]}))
    assert out["status"] == 201 and out["rate_limit_remaining"] == 99


@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_5xx_and_408_are_retryable(fake: GhlFake, api: GhlApiHandler, status: int) -> None:
    fake.fail_next(status)
    with pytest.raises(GhlRetryableError, match=f"HTTP {status}"):
        await api(ctx("acme", "contact_delete", {"contactId": "ct_1"}))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_4xx_are_permanent(fake: GhlFake, api: GhlApiHandler, status: int) -> None:
    fake.fail_next(status)
    with pytest.raises(GhlPermanentError, match=f"HTTP {status}") as info:
        await api(ctx("acme", "contact_delete", {"contactId": "ct_1"}))
    assert not isinstance(info.value, GhlRetryableError)
    assert isinstance(info.value, PermanentError)  # the executor ends the task at once


async def test_a_real_404_from_the_fake_is_permanent(fake: GhlFake, api: GhlApiHandler) -> None:
    with pytest.raises(GhlPermanentError, match="HTTP 404.*Contact not found"):
        await api(ctx("acme", "note_create", {"contactId": "missing", "body": "hi"}))


async def test_timeouts_are_retryable(fake: GhlFake) -> None:
    handler = GhlApiHandler(
        credentials(),
        base_url=fake.url,
        timeout_ms=100,
        http=HttpClient(OutboundPolicy.parse("127.0.0.1")),
    )
    try:
        with pytest.raises(GhlRetryableError, match="timed out after 100 ms"):
            await handler(ctx("acme", "tag_add", {"contactId": "slow", "tags": ["x"]}))
    finally:
        await handler.close()


async def test_bad_payloads_unknown_clients_and_other_locations_are_permanent(
    fake: GhlFake, api: GhlApiHandler
) -> None:
    with pytest.raises(GhlPermanentError, match="contactId: required.*tags: required"):
        await api(ctx("acme", "tag_add", {}))
    with pytest.raises(GhlPermanentError, match="client 'initech' has no GoHighLevel credentials"):
        await api(ctx("initech", "tag_add", {"contactId": "c", "tags": ["x"]}))
    with pytest.raises(GhlPermanentError, match="locationId: names another sub-account"):
        await api(ctx("acme", "contact_create", {"email": "a@b.c", "locationId": "loc_globex"}))
    with pytest.raises(GhlPermanentError, match="bulk_operation has no v2 API"):
        await api(ctx("acme", "bulk_operation", {}))
    assert fake.calls == []  # none of them reached HighLevel


async def test_the_outbound_guard_applies(fake: GhlFake) -> None:
    handler = GhlApiHandler(credentials(), base_url=fake.url, http=HttpClient())
    try:
        with pytest.raises(GhlPermanentError, match="refused"):
            await handler(ctx("acme", "tag_add", {"contactId": "c", "tags": ["x"]}))
    finally:
        await handler.close()
    assert fake.calls == []


async def test_ghl_action_is_the_v2_request_of_its_operation(
    fake: GhlFake, api: GhlApiHandler
) -> None:
    action = GhlActionHandler(api)
    out = await action(
        ctx("acme", "ghl_action", {"ghlAction": "send_sms", "contactId": "ct_7", "message": "Hi"})
    )
    assert out["action"] == "send_sms" and out["message_id"] == "msg_1"
    out = await action(
        ctx(
            "acme",
            "ghl_action",
            {
                "ghlAction": "create_opportunity",
                "pipelineId": "pl_1",
                "stageId": "st_1",
                "title": "Deal",
                "contactId": "ct_7",
            },
        )
    )
    assert out["opportunity_id"] == "op_1"
    sms, opp = fake.calls
    assert (sms.path, sms.body, sms.headers["version"]) == (
        "/conversations/messages",
        {"type": "SMS", "contactId": "ct_7", "message": "Hi"},
        "2021-04-15",
    )
    assert opp.body == {
        "pipelineId": "pl_1",
        "pipelineStageId": "st_1",
        "name": "Deal",
        "contactId": "ct_7",
        "status": "open",
        "locationId": "loc_acme",
    }
    # v2 insists on a contact for an opportunity, which the seed's action left optional.
    with pytest.raises(GhlPermanentError, match="contactId: required"):
        await action(
            ctx(
                "acme",
                "ghl_action",
                {
                    "ghlAction": "create_opportunity",
                    "pipelineId": "p",
                    "stageId": "s",
                    "title": "t",
                },
            )
        )


async def test_credentials_file_is_reread_when_it_changes(
    fake: GhlFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ghl.toml"
    path.write_text('[acme]\nlocation_id = "loc_acme"\ntoken = "pit-old-token"\n')
    path.chmod(0o600)
    settings = Settings(
        ghl_credentials_file=path, ghl_base_url=fake.url, outbound_allow="127.0.0.1"
    )
    handler = GhlApiHandler.from_settings(settings)
    try:
        with pytest.raises(GhlPermanentError, match="HTTP 401"):
            await handler(ctx("acme", "tag_add", {"contactId": "c", "tags": ["x"]}))
        fresh = tmp_path / "ghl.toml.new"  # a refresher writes a new file and renames it
        fresh.write_text(f'[acme]\nlocation_id = "{ACME[0]}"\ntoken = "{ACME[1]}"\n')
        fresh.replace(path)
        out = await handler(ctx("acme", "tag_add", {"contactId": "c", "tags": ["x"]}))
        assert out["status"] == 201 and fake.calls[-1].client == "acme"
        # A broken new version keeps the last good credentials and says so in the log.
        caplog.set_level(logging.ERROR)
        path.write_text("[acme\n")
        out = await handler(ctx("acme", "tag_add", {"contactId": "c", "tags": ["x"]}))
        assert out["status"] == 201
        assert "keeping the last good credentials" in caplog.text
        assert ACME[1] not in caplog.text
    finally:
        await handler.close()


async def test_ghl_handlers_on_the_broker_use_each_clients_token(
    make_settings: Callable[..., Settings], fake: GhlFake, tmp_path: Path
) -> None:
    path = tmp_path / "ghl.json"
    path.write_text(
        json.dumps({c: {"location_id": loc, "token": tok} for c, (loc, tok) in ACCOUNTS.items()})
    )
    path.chmod(0o600)
    settings = await layout(
        make_settings,
        ghl_credentials_file=path,
        ghl_base_url=fake.url,
        outbound_allow="127.0.0.1",
    )
    processor = await InProcessProcessor(settings).start()
    api = GhlApiHandler.from_settings(settings, required=True)
    executor = Executor(
        settings,
        sessions=[
            SessionSpec("s-acme", "acme", "agent-1", max_concurrent=2),
            SessionSpec("s-globex", "globex", "agent-1", max_concurrent=2),
        ],
        handlers=dict(ghl_api_handlers(api)),
    )
    work = {
        "acme-tag": ("acme", "tag_add", {"contactId": "ct_a", "tags": ["vip"]}),
        "acme-sms": ("acme", "conversation_send", {"contactId": "ct_a", "message": "Hi"}),
        "globex-note": ("globex", "note_create", {"contactId": "ct_g", "body": "Met"}),
        "globex-book": (
            "globex",
            "calendar_booking",
            {"calendarId": "cal_1", "contactId": "ct_g", "startTime": "2026-12-03T15:00:00Z"},
        ),
    }
    try:
        await executor.start()
        async with Commands(settings) as commands:
            await commands.send(
                *(
                    submit(client, task, op, payload=payload)
                    for task, (client, op, payload) in work.items()
                )
            )

        def all_completed(events: list[Any]) -> bool:
            done = {e.task_id for e in events if isinstance(e, ev.TaskCompleted)}
            return set(work) <= done

        events = await wait_for_events(settings, all_completed, timeout_s=60)
    finally:
        await executor.stop()
        await processor.stop()
        await api.close()
    assert {(c.client, c.method, c.path) for c in fake.calls} == {
        ("acme", "POST", "/contacts/ct_a/tags"),
        ("acme", "POST", "/conversations/messages"),
        ("globex", "POST", "/contacts/ct_g/notes"),
        ("globex", "POST", "/calendars/events/appointments"),
    }
    booking = next(c for c in fake.calls if c.path.startswith("/calendars"))
    assert booking.body["locationId"] == "loc_globex"
    # The tokens are in no event on the log.
    text = " ".join(e.model_dump_json() for e in events)
    assert ACME[1] not in text and GLOBEX[1] not in text
