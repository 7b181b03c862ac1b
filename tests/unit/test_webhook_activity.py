"""``GET /webhooks/activity``: the view's inbound messages by source and outcome since it
started, behind the view's token like every other read (service-wide: a token for every
client); the tasks those messages became show ``submitted_by = webhook:<source>`` in /tasks."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from api.access import AccessBook, AccessConfigError, token_digest
from api.view import create_app
from api.webhooks import OUTCOMES
from projections.reader import ProjectionReader
from schemas import commands as cmd
from streams.settings import Settings
from streams.webhooks import sign
from tests.support.gwt import Harness
from tests.support.tenants import TenantSource

SECRET = "whsec-unit-1"
RULES = """
[sources.ghl]
secret_env = "TASKSTREAM_TEST_UNIT_GHL_SECRET"
signature_header = "X-GHL-Signature"
message_id = "webhookId"
client_id = "locationId"

[[sources.ghl.rules]]
operation = "tag_add"
payload = { tag = "{tag}" }

[sources.form]
signed = false
message_id = "id"
client_id = "account"

[[sources.form.rules]]
match = { type = "lead" }
operation = "tag_add"
payload = { tag = "lead" }

[sources.quiet]
secret_env = "TASKSTREAM_TEST_UNIT_QUIET_SECRET_NOT_SET"
message_id = "id"
client_id = "account"

[[sources.quiet.rules]]
operation = "tag_add"
"""


class Recorder:
    def __init__(self) -> None:
        self.sent: list[cmd.Command] = []

    async def send(self, command: cmd.Command) -> None:
        self.sent.append(command)


def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(
        "\n".join(
            [
                f'[tokens."{token_digest("all-read")}"]',
                'name = "ops"',
                'clients = ["*"]',
                'scopes = ["read"]',
                f'[tokens."{token_digest("a-read")}"]',
                'name = "acme-dashboard"',
                'clients = ["acme"]',
                'scopes = ["read"]',
            ]
        )
    )
    return path


def http(app: object, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://view",
        headers=headers,
    )


async def test_messages_are_counted_by_source_and_outcome_and_served_to_a_token_for_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKSTREAM_TEST_UNIT_GHL_SECRET", SECRET)
    monkeypatch.delenv("TASKSTREAM_TEST_UNIT_QUIET_SECRET_NOT_SET", raising=False)
    rules = tmp_path / "webhooks.toml"
    rules.write_text(RULES)
    source = TenantSource()
    sender = Recorder()
    app = create_app(
        ProjectionReader(source),
        commands=sender,
        settings=Settings(webhook_rules_file=rules),
        access=AccessBook.build(tokens_file=tokens(tmp_path)),
    )
    lead = {"id": "f-1", "account": "acme", "type": "lead"}
    raw = json.dumps({"webhookId": "g-1", "locationId": "acme", "tag": "vip"}).encode()
    async with http(app) as sender_side:  # senders have no token
        assert (await sender_side.post("/webhooks/form", json=lead)).status_code == 202
        # The read model learns of the task the message became (the real decider and fold).
        (submitted,) = sender.sent
        for event in Harness().do(submitted):
            source.feed(event)
        source.flush()
        again = await sender_side.post("/webhooks/form", json=lead)
        assert again.status_code == 202 and again.json()["duplicate"] is True
        other = {"id": "f-2", "account": "acme", "type": "newsletter"}
        assert (await sender_side.post("/webhooks/form", json=other)).status_code == 200
        assert (await sender_side.post("/webhooks/form", content=b"{")).status_code == 400
        signed = {"X-GHL-Signature": sign(SECRET.encode(), raw)}
        assert (
            await sender_side.post("/webhooks/ghl", content=raw, headers=signed)
        ).status_code == 202
        assert (await sender_side.post("/webhooks/ghl", content=raw)).status_code == 401
        assert (await sender_side.post("/webhooks/quiet", json={})).status_code == 503
        assert (await sender_side.post("/webhooks/nope", json={})).status_code == 404  # uncounted
        # The counts are a read: no token, no counts (a source named "activity" could still
        # receive messages: POST is the webhook door, GET the view's).
        assert (await sender_side.get("/webhooks/activity")).status_code == 401
        assert (await sender_side.post("/webhooks/activity", json={})).status_code == 404

    async with http(app, "a-read") as limited:
        r = await limited.get("/webhooks/activity")
        assert r.status_code == 403 and "every client" in r.json()["detail"]

    async with http(app, "all-read") as ops:
        r = await ops.get("/webhooks/activity")
        assert r.status_code == 200, r.text
        answer = r.json()
        row = (await ops.get("/tasks")).json()["items"]
    zeros = dict.fromkeys(OUTCOMES, 0)
    assert answer["by_source"] == {
        "form": {
            "total": 4,
            "by_outcome": {**zeros, "accepted": 1, "duplicate": 1, "ignored": 1, "refused": 1},
        },
        "ghl": {"total": 2, "by_outcome": {**zeros, "accepted": 1, "unauthorized": 1}},
        "quiet": {"total": 1, "by_outcome": {**zeros, "unconfigured": 1}},
    }
    assert answer["total"] == 7
    assert answer["by_outcome"] == {
        **zeros,
        "accepted": 2,
        "duplicate": 1,
        "ignored": 1,
        "refused": 1,
        "unauthorized": 1,
        "unconfigured": 1,
    }
    assert answer["since"].endswith("Z") and answer["since_ms"] > 0
    # The task the form's message became says who submitted it.
    assert [(t["task_id"], t["submitted_by"]) for t in row] == [
        (submitted.task_id, "webhook:form")  # type: ignore[attr-defined]
    ]


async def test_a_view_without_the_gateway_serves_empty_counts() -> None:
    app = create_app(ProjectionReader(TenantSource()))
    async with http(app) as view:
        r = await view.get("/webhooks/activity")
    assert r.status_code == 200
    assert r.json()["total"] == 0 and r.json()["by_source"] == {}
    assert r.json()["by_outcome"] == dict.fromkeys(OUTCOMES, 0)


def test_a_token_cannot_take_a_webhooks_actor_name(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(
        f'[tokens."{token_digest("t")}"]\nname = "webhook:ghl"\nclients = ["*"]\n'
        'scopes = ["write"]\n'
    )
    with pytest.raises(AccessConfigError, match="starts with 'webhook:'"):
        AccessBook.build(tokens_file=path)
