"""The pure parts of the GoHighLevel handlers: payload -> request, the credentials file, and
Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from streams.executor.handlers.ghl_api import retry_after_ms
from streams.executor.handlers.ghl_credentials import (
    GhlCredentials,
    GhlCredentialsError,
    parse_credentials,
)
from streams.executor.handlers.ghl_routes import GhlPayloadError, ghl_request

LOC = "loc_1"


def problems(operation: str, payload: dict[str, object]) -> list[str]:
    with pytest.raises(GhlPayloadError) as info:
        ghl_request(operation, payload, LOC)
    return info.value.problems


def test_every_bad_field_is_named_at_once() -> None:
    assert problems("task_create", {"completed": "no"}) == [
        "contactId: required (a non-empty string)",
        "title: required (a non-empty string; dueDate ISO-8601)",
        "dueDate: required (a non-empty string; dueDate ISO-8601)",
        "completed: must be true or false",
    ]
    assert problems("opportunity_create", {"monetaryValue": -1, "status": "maybe"}) == [
        "monetaryValue: must be a number >= 0",
        "pipelineId: required (a non-empty string)",
        "name: required (a non-empty string)",
        "contactId: required (a non-empty string)",
        "status: must be one of open, won, lost, abandoned",
    ]
    assert problems("conversation_send", {"type": "Fax"}) == [
        "type: must be one of SMS, Email, WhatsApp, IG, FB, Custom, Live_Chat, RCS, TIKTOK",
        "contactId: required (a non-empty string)",
        "message: required unless html or templateId is given",
    ]
    assert problems("custom_field_update", {"contactId": "c", "customFields": [{"x": 1}]}) == [
        'customFields: must be an object of field id -> value, or a list of {"id" or "key", '
        '"field_value"} objects'
    ]


def test_operations_without_an_api_and_other_locations_are_refused() -> None:
    assert problems("data_export", {}) == [
        "operation: data_export has no v2 API (HighLevel's v2 API has no export endpoint for "
        "this: a browser task)"
    ]
    assert (
        "locationId: names another sub-account"
        in problems("tag_add", {"contactId": "c", "tags": ["x"], "locationId": "loc_2"})[0]
    )
    # Naming its own location is fine; it is never sent where the endpoint takes none.
    request = ghl_request("tag_add", {"contactId": "c", "tags": "vip", "locationId": LOC}, LOC)
    assert request.body == {"tags": ["vip"]}


def test_notification_fields_never_reach_ghl() -> None:
    request = ghl_request(
        "note_create",
        {
            "contactId": "c",
            "body": "hi",
            "notify_on_complete": True,
            "notifyWebhookUrl": "https://hooks.example/x",
        },
        LOC,
    )
    assert request.body == {"body": "hi"}


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_ms({"Retry-After": "3"}) == 3000
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_ms({"Retry-After": later}, now=now.timestamp()) == 90_000
    past = format_datetime(now - timedelta(seconds=5), usegmt=True)
    assert retry_after_ms({"Retry-After": past}, now=now.timestamp()) == 0
    assert retry_after_ms({"Retry-After": "soon"}) is None
    assert retry_after_ms({}) is None


def test_credentials_files_say_what_is_wrong(tmp_path: Path) -> None:
    accounts = parse_credentials('[acme]\nlocation_id = "l"\ntoken = "pit-9z"\n', "c.toml")
    assert accounts["acme"].location_id == "l"
    assert "pit-9z" not in repr(accounts["acme"])  # the token is a SecretStr
    assert parse_credentials('{"acme": {"location_id": "l", "token": "t"}}', "c.json")
    with pytest.raises(GhlCredentialsError, match="c.toml: not valid TOML"):
        parse_credentials("[acme", "c.toml")
    with pytest.raises(GhlCredentialsError, match="client 'acme': unknown field 'api_key'"):
        parse_credentials('[acme]\nlocation_id = "l"\ntoken = "t"\napi_key = "k"\n', "c.toml")
    with pytest.raises(GhlCredentialsError, match="client 'acme': location_id is required"):
        parse_credentials('{"acme": {"token": "t"}}', "c.json")
    with pytest.raises(GhlCredentialsError, match="cannot read .*missing.toml"):
        GhlCredentials(tmp_path / "missing.toml")
