"""Secrets are masked wherever taskstream shows something: log lines, the settings dump
(``taskstream config``), the HTTP view's payloads and outputs, and ``taskstream tail``.

Events and dead letters keep payloads as submitted (the executor needs the credential, a
redrive resubmits it); masking happens where documents are shown."""

from __future__ import annotations

import io
import json
import logging

import pytest
from fastapi.testclient import TestClient

from api.view import create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import events as ev
from schemas.credentials import is_credential_name
from schemas.masking import MASK, mask_document, mask_text
from streams import cli
from streams.cli.config import SECRET_SHOWN, masked_settings
from streams.cli.render import describe_event
from streams.logs import MaskingFormatter
from streams.settings import Settings

SECRET = "sk-live-5b1e0c9a"


def test_log_lines_mask_bearer_tokens_and_key_values() -> None:
    line = mask_text(
        f"calling with Authorization: Bearer {SECRET} token={SECRET} password: '{SECRET}'"
    )
    assert SECRET not in line
    assert line.count("***") == 3


def test_the_formatter_masks_arguments_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(message)s"))
    logger = logging.getLogger("taskstream.test.masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("headers %s", {"Authorization": f"Bearer {SECRET}"})
    finally:
        logger.removeHandler(handler)
    assert SECRET not in stream.getvalue() and "Bearer ***" in stream.getvalue()


@pytest.mark.parametrize(
    "name",
    ["bearerToken", "api_key", "API-KEY", "password", "client_secret", "Authorization", "cookie"],
)
def test_secret_names(name: str) -> None:
    assert is_credential_name(name)


@pytest.mark.parametrize("name", ["url", "method", "contactId", "session_id", "keyword", "body"])
def test_ordinary_names(name: str) -> None:
    assert not is_credential_name(name)


def test_documents_are_masked_by_name_and_by_content() -> None:
    doc = {
        "url": f"https://api.example.invalid/v1?api_key={SECRET}",
        "bearerToken": SECRET,
        "headers": {"Authorization": f"Bearer {SECRET}", "Accept": "json"},
        "nested": [{"password": 1234}, {"note": f"Bearer {SECRET}"}],
        "empty_token": None,
        "bad\udc00key": "bad\ud800value",
    }
    shown = mask_document(doc)
    assert SECRET not in json.dumps(shown)
    assert shown["bearerToken"] == MASK
    assert shown["headers"] == {"Authorization": MASK, "Accept": "json"}
    assert shown["nested"][0]["password"] == MASK
    assert shown["empty_token"] is None  # nothing to hide
    json.dumps(shown, ensure_ascii=False).encode()  # printable: no lone surrogates left
    assert doc["bearerToken"] == SECRET  # the original is untouched


def test_settings_dump_masks_secret_settings(capsys: pytest.CaptureFixture[str]) -> None:
    s = Settings(
        kafka_bootstrap_servers="b:9092",
        http_token=SECRET,
        kafka_sasl_password=SECRET,
        notification_webhook_url=f"https://hooks.example.invalid/x?token={SECRET}",
    )
    shown = masked_settings(s)
    assert shown["TASKSTREAM_HTTP_TOKEN"] == SECRET_SHOWN
    assert shown["TASKSTREAM_KAFKA_SASL_PASSWORD"] == SECRET_SHOWN
    assert shown["KAFKA_BOOTSTRAP_SERVERS"] == "b:9092"
    assert SECRET not in json.dumps(shown)


def test_taskstream_config_prints_masked_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKSTREAM_HTTP_TOKEN", SECRET)
    monkeypatch.setenv("TASKSTREAM_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("TASKSTREAM_MAX_QUEUED_PER_CLIENT", "42")
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    assert f"TASKSTREAM_HTTP_TOKEN={SECRET_SHOWN}" in out.splitlines()
    assert "TASKSTREAM_MAX_QUEUED_PER_CLIENT=42" in out.splitlines()
    assert cli.main(["config", "--json"]) == 0
    dumped = json.loads(capsys.readouterr().out)
    assert dumped["TASKSTREAM_KAFKA_SASL_PASSWORD"] == SECRET_SHOWN


def _accepted() -> ev.TaskAccepted:
    return ev.TaskAccepted(
        client_id="c",
        task_id="t1",
        occurred_at_ms=1,
        operation="api_call",
        payload={"url": "https://x.invalid", "bearerToken": SECRET},
        priority=3,
        max_retries=0,
        timeout_ms=1000,
    )


def test_the_view_shows_payloads_and_outputs_masked() -> None:
    source = MemorySource()
    source.feed(_accepted())
    source.feed(
        ev.TaskFailed(
            client_id="c",
            task_id="t1",
            occurred_at_ms=2,
            operation="api_call",
            attempt=1,
            attempts=[ev.AttemptRecord(attempt=1, error=f"401 for Bearer {SECRET}", at_ms=2)],
            error=f"401 for Bearer {SECRET}",
        )
    )
    source.flush()
    app = create_app(ProjectionReader(source))
    with TestClient(app) as http:
        one = http.get("/tasks/t1")
        many = http.get("/tasks")
    assert one.status_code == 200 and many.status_code == 200
    assert one.json()["payload"] == {"url": "https://x.invalid", "bearerToken": MASK}
    assert SECRET not in one.text and SECRET not in many.text


def test_tail_lines_mask_payloads() -> None:
    line = describe_event(_accepted())
    assert SECRET not in line
    assert '"bearerToken": "***"' in line


@pytest.mark.parametrize(
    "name",
    ["password", "apiKey", "api_key", "X-Api-Key", "client_secret", "bearerToken", "pin", "auth"]
    + ["tokenType", "apiKeyHeader", "secretName", "key", "line", "status", "url"],
)
def test_free_text_masks_exactly_the_names_the_credential_rule_names(name: str) -> None:
    # One rule for what a credential is: a field's name in a document and a name in free text.
    shown = mask_text(f"failed: {name}=s3cr3t-value, retrying")
    assert ("s3cr3t-value" not in shown) == is_credential_name(name), shown
