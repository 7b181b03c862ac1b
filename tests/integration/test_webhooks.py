"""Inbound webhooks end to end: a signed message → ``POST /webhooks/{source}`` → a task on
``task.commands`` → the real processor → a scripted executor → the view shows it completed; a
redelivered message creates nothing; bad signatures, unknown sources and messages no rule
matches get their answers; ``/metrics`` counts every message."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.projector import Projector
from api.view import create_app
from schemas import events as ev
from streams.client import TaskstreamClient
from streams.settings import Settings
from streams.webhooks import sign, task_id_for

from .distributor_harness import Reply, of_task, register, rig

pytestmark = pytest.mark.integration

SECRET = "whsec-test-1"
TOKEN = "admin-token-for-the-view"
RULES = """
[sources.ghl]
secret_env = "TASKSTREAM_TEST_GHL_WEBHOOK_SECRET"
signature_header = "X-GHL-Signature"
message_id = "webhookId"
client_id = "locationId"

[[sources.ghl.rules]]
match = { type = "InboundMessage" }
operation = "conversation_send"
priority = "high"
payload = { contactId = "{contactId}", message = "Thanks, {contact.firstName}!" }

[sources.form]
signed = false
message_id = "id"
client_id = "account"

[[sources.form.rules]]
operation = "conversation_send"
payload = { contactId = "{contact}" }
"""


def message(webhook_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "webhookId": webhook_id,
        "locationId": "acme",
        "type": "InboundMessage",
        "contactId": "c-1",
        "contact": {"firstName": "Ada"},
        **extra,
    }


def signed(body: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"X-GHL-Signature": sign(secret.encode(), raw), "Content-Type": "application/json"}


async def test_signed_messages_become_tasks_once_and_everything_else_is_answered(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKSTREAM_TEST_GHL_WEBHOOK_SECRET", SECRET)
    rules = tmp_path / "webhooks.toml"
    rules.write_text(RULES)

    def script(assignment: Any) -> Reply:
        return Reply(output={"sent": assignment.items[0].payload["message"]})

    async with rig(make_settings, script, webhook_rules_file=rules, http_token=TOKEN) as r:
        await r.send(register("acme", "s-1", max_concurrent=4))
        projector = Projector(r.settings, poll_ms=50)
        await projector.start()
        client = TaskstreamClient(r.settings)
        await client.start()
        app = create_app(projector.reader, commands=client, settings=r.settings, token=TOKEN)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://view")
        admin = {"Authorization": f"Bearer {TOKEN}"}
        try:
            # A signed message needs no bearer token: its signature authenticates it.
            raw, headers = signed(message("wh-1"))
            answer = await http.post("/webhooks/ghl", content=raw, headers=headers)
            assert answer.status_code == 202, answer.text
            task_id = task_id_for("ghl", "wh-1")
            assert answer.json() == {
                "task_id": task_id,
                "link": f"/tasks/{task_id}",
                "command": "SubmitTask",
                "duplicate": False,
                "source": "ghl",
                "message_id": "wh-1",
            }

            deadline = time.monotonic() + 60
            while True:
                row = await http.get(f"/tasks/{task_id}", headers=admin)
                if row.status_code == 200 and row.json()["state"] == "completed":
                    break
                assert time.monotonic() < deadline, row.text
                await asyncio.sleep(0.1)
            task = row.json()
            assert task["client_id"] == "acme"
            assert task["operation"] == "conversation_send"
            assert task["priority"] == 2
            assert task["payload"] == {"contactId": "c-1", "message": "Thanks, Ada!"}
            assert task["submitted_by"] == "webhook:ghl"

            # The sender redelivers: the same task, nothing new.
            again = await http.post("/webhooks/ghl", content=raw, headers=headers)
            assert again.status_code == 202
            assert again.json()["duplicate"] is True and again.json()["task_id"] == task_id

            # Wrong or missing signature, unknown source, no matching rule, a missing field.
            forged, _ = signed(message("wh-2"))
            _, wrong = signed(message("wh-2"), secret="not-the-secret")
            assert (
                await http.post("/webhooks/ghl", content=forged, headers=wrong)
            ).status_code == 401
            assert (await http.post("/webhooks/ghl", content=forged)).status_code == 401
            assert (await http.post("/webhooks/nope", content=forged)).status_code == 404
            raw3, headers3 = signed(message("wh-3", type="ContactDelete"))
            ignored = await http.post("/webhooks/ghl", content=raw3, headers=headers3)
            assert ignored.status_code == 200
            assert ignored.json()["message_id"] == "wh-3" and "no rule" in ignored.json()["ignored"]
            raw4, headers4 = signed({"webhookId": "wh-4", "type": "InboundMessage"})
            missing = await http.post("/webhooks/ghl", content=raw4, headers=headers4)
            assert missing.status_code == 422 and "locationId" in missing.json()["detail"]
            raw5, headers5 = signed([1, 2])  # type: ignore[arg-type]
            assert (
                await http.post("/webhooks/ghl", content=raw5, headers=headers5)
            ).status_code == 400

            # An unsigned source takes messages as they come (its rules say signed = false).
            form = await http.post(
                "/webhooks/form", json={"id": "f-1", "account": "acme", "contact": "c-9"}
            )
            assert form.status_code == 202, form.text

            metrics = await http.get("/metrics", headers=admin)
            counts = {
                (s.labels["source"], s.labels["outcome"]): s.value
                for family in text_string_to_metric_families(metrics.text)
                if family.name == "taskstream_webhook_messages"
                for s in family.samples
                if s.name == "taskstream_webhook_messages_total"
            }
            assert counts == {
                ("ghl", "accepted"): 1,
                ("ghl", "duplicate"): 1,
                ("ghl", "unauthorized"): 2,
                ("ghl", "ignored"): 1,
                ("ghl", "refused"): 2,
                ("form", "accepted"): 1,
            }
            # The same counts as JSON, every outcome listed, for a token for every client.
            activity = (await http.get("/webhooks/activity", headers=admin)).json()
            assert activity["by_source"]["ghl"]["by_outcome"] == {
                "accepted": 1,
                "duplicate": 1,
                "ignored": 1,
                "refused": 2,
                "unauthorized": 2,
                "unconfigured": 0,
            }
            assert activity["by_source"]["form"]["total"] == 1 and activity["total"] == 8
            assert (await http.get("/webhooks/activity")).status_code == 401
        finally:
            await http.aclose()
            await client.close()
            await projector.stop()
        events = await r.events()
        assert sum(isinstance(e, ev.TaskAccepted) for e in of_task(events, task_id)) == 1
