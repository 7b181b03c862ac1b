"""The one rule of what is a credential, as masking, the handlers and sealing use it."""

from __future__ import annotations

import pytest

from schemas.credentials import (
    credentials,
    describe,
    is_credential_name,
    mask_text,
    mask_url,
    url_has_credentials,
)
from streams.executor.handlers.masking import is_sensitive
from streams.logs import is_secret_name


@pytest.mark.parametrize(
    "name",
    ["bearerToken", "apiKey", "X-API-Key", "password", "Authorization", "client_secret", "pin"],
)
def test_credential_names_under_every_door(name: str) -> None:
    assert is_credential_name(name) and is_secret_name(name) and is_sensitive(name)


@pytest.mark.parametrize(
    "name", ["apiKeyHeader", "tokenType", "session_id", "keyword", "authType", "url", "key"]
)
def test_ordinary_names_under_every_door(name: str) -> None:
    assert not is_credential_name(name)
    assert not is_secret_name(name) and not is_sensitive(name)


def test_credentials_are_found_at_any_depth_and_in_urls() -> None:
    payload = {
        "authType": "bearer",
        "bearerToken": "t1",
        "customHeaders": {"Authorization": "Basic x", "Accept": "json"},
        "steps": [{"value": "plain"}, {"password": {"nested": "whole"}}],
        "apiEndpoint": "https://u:pw@api.example.com/x",
        "webhookUrl": "https://hooks.example.com/h?token=abc",
        "plainUrl": "https://example.com/?q=1",
        "emptyToken": "",
    }
    assert {describe(p): v for p, v in credentials(payload)} == {
        "payload.bearerToken": "t1",
        "payload.customHeaders.Authorization": "Basic x",
        "payload.steps[1].password": {"nested": "whole"},
        "payload.apiEndpoint": "https://u:pw@api.example.com/x",
        "payload.webhookUrl": "https://hooks.example.com/h?token=abc",
    }
    assert not url_has_credentials("token=abc") and not url_has_credentials("https://[bad")


def test_text_and_urls_are_masked() -> None:
    assert mask_text("Authorization: Basic dXNlcjpwdw==") == "Authorization: Basic ***"
    assert mask_text("failed: api_key=abc&x=1") == "failed: api_key=***&x=1"
    assert mask_url("https://u:pw@h.example:8443/p?token=abc&q=1") == (
        "https://h.example:8443/p?token=***&q=1"
    )
