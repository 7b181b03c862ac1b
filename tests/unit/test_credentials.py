"""The one rule of what is a credential (``schemas.credentials``), as masking
(``schemas.masking``), the handlers and sealing use it."""

from __future__ import annotations

import pytest

from schemas.credentials import (
    credentials,
    describe,
    is_credential_name,
    url_credentials,
    url_has_credentials,
)
from schemas.masking import Masker, mask_document, mask_text, mask_url


@pytest.mark.parametrize(
    "name",
    ["bearerToken", "apiKey", "X-API-Key", "password", "Authorization", "client_secret", "pin"],
)
def test_credential_names(name: str) -> None:
    assert is_credential_name(name)


@pytest.mark.parametrize(
    "name", ["apiKeyHeader", "tokenType", "session_id", "keyword", "authType", "url", "key"]
)
def test_ordinary_names(name: str) -> None:
    assert not is_credential_name(name)


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


def test_a_url_s_credentials_are_one_set_for_every_door() -> None:
    """What the view masks in a URL is what a handler keeps out of its errors: the password and
    the credential query values, ``?key=`` included (API keys in URLs)."""
    url = "https://u:pw@h.example/p?key=k1&access_token=t1&q=plain"
    assert url_credentials(url) == {"pw", "k1", "t1"}
    assert url_credentials("not a url ?key=x") == set() and url_has_credentials(url)
    shown = mask_document({"endpoint": url})["endpoint"]
    masker = Masker(url_credentials(url))
    reported = masker.text(f"GET {url} failed")
    for secret in ("pw", "k1", "t1"):
        assert secret not in shown and secret not in reported
    assert "q=plain" in shown and "q=plain" in reported
