"""Actors: the gateway names the caller's token on every command, the SDK its configured
identity; the decider carries the actor into the events and the task history shows it."""

from __future__ import annotations

from pathlib import Path

import httpx

from api.access import AccessBook, token_digest
from api.view import create_app
from projections.reader import ProjectionReader
from schemas import commands as cmd
from streams.client import TaskstreamClient, default_actor, with_actor
from streams.settings import Settings
from tests.support.gwt import Harness
from tests.support.tenants import TenantSource


class Decider:
    """A command sender that decides each command at once and projects its events."""

    def __init__(self, source: TenantSource) -> None:
        self.harness = Harness()
        self.source = source
        self.sent: list[cmd.Command] = []

    async def send(self, command: cmd.Command) -> None:
        self.sent.append(command)
        for event in self.harness.do(command, at=len(self.sent)):
            self.source.feed(event)
        self.source.flush()


async def test_the_history_shows_who_sent_each_command(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        f'[tokens."{token_digest("ops-token")}"]\n'
        'name = "ops-desk"\nclients = ["A"]\nscopes = ["write"]\n'
    )
    source = TenantSource()
    decider = Decider(source)
    book = AccessBook.build(token="root", tokens_file=tokens)
    app = create_app(ProjectionReader(source), commands=decider, access=book)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://view") as http:
        ops = {"Authorization": "Bearer ops-token"}
        root = {"Authorization": "Bearer root"}
        body = {"client_id": "A", "operation": "tag_add", "task_id": "t1", "requires_review": True}
        assert (await http.post("/tasks", json=body, headers=ops)).status_code == 202
        assert (await http.post("/tasks/t1/approve", headers=root)).status_code == 202
        assert (await http.post("/tasks/t1/expedite", headers=ops)).status_code == 202
        assert (await http.post("/tasks/t1/cancel", headers=root)).status_code == 202
        history = (await http.get("/tasks/t1", headers=root)).json()["history"]
    assert [c.actor for c in decider.sent if hasattr(c, "actor")] == [
        "ops-desk",
        "admin",
        "ops-desk",
        "admin",
    ]
    by_type = {h["type"]: h.get("actor") for h in history}
    assert by_type["task.accepted"] == "ops-desk"
    assert by_type["task.approved"] == "admin"
    assert by_type["task.expedited"] == "ops-desk"
    assert by_type["task.cancelled"] == "admin"
    # Entries no command caused name nobody.
    assert by_type["task.queued"] is None


def test_the_sdk_names_its_configured_identity_or_user_at_host() -> None:
    submit = cmd.SubmitTask(client_id="A", task_id="t", operation="tag_add")
    assert with_actor(submit, "billing-sync").actor == "billing-sync"
    named = submit.model_copy(update={"actor": "gateway-token"})
    assert with_actor(named, "billing-sync").actor == "gateway-token"
    started = cmd.TaskStarted(client_id="A", task_id="t", fencing_token=1)
    assert with_actor(started, "x") is started
    assert "@" in default_actor()
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9", actor="billing-sync")
    assert TaskstreamClient(settings).actor == "billing-sync"
    assert TaskstreamClient(Settings(kafka_bootstrap_servers="127.0.0.1:9")).actor == (
        default_actor()
    )
