"""Per-client access: a token for client A cannot see or command client B on any route, a read
token cannot command, service-wide figures need a token for every client, and the tokens file
is validated with messages that name the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.access import AccessBook, AccessConfigError, load_tokens_file, token_digest
from api.gateway import Gateway, mount
from api.view import create_app
from projections.reader import ProjectionReader
from schemas import commands as cmd
from schemas.catalog import load_catalog
from schemas.records import DeadLetter
from streams.redrive import DeadLetterEntry
from tests.support.routes import api_routes
from tests.support.tenants import TenantSource, batch_of, two_tenants

TOKENS = {
    "a-read": ("A", "read"),
    "a-write": ("A", "write"),
    "a-admin": ("A", "admin"),
    "all-read": ("*", "read"),
}


def tokens_file(tmp_path: Path) -> Path:
    lines = []
    for n, (token, (client, scope)) in enumerate(TOKENS.items()):
        lines += [
            f'[tokens."{token_digest(token)}"]',
            f'name = "dashboard-{n}"',
            f'clients = ["{client}"]',
            f'scopes = ["{scope}"]',
            "",
        ]
    path = tmp_path / "tokens.toml"
    path.write_text("\n".join(lines))
    return path


class Recorder:
    def __init__(self) -> None:
        self.sent: list[cmd.Command] = []

    async def send(self, command: cmd.Command) -> None:
        self.sent.append(command)


def letters() -> list[DeadLetterEntry]:
    out = []
    for offset, client in enumerate(("A", "B")):
        task = f"dead-{client}"
        submit = {"client_id": client, "task_id": task, "operation": "tag_add", "payload": {}}
        letter = DeadLetter(
            reason="retries_exhausted",
            client_id=client,
            task_id=task,
            operation="tag_add",
            submit=submit,
            occurred_at_ms=1,
        )
        out.append(DeadLetterEntry(0, offset, letter))
    return out


def build(tmp_path: Path, source: TenantSource | None = None) -> tuple[FastAPI, Recorder]:
    reader = ProjectionReader(source or two_tenants())
    book = AccessBook.build(token="root-token", tokens_file=tokens_file(tmp_path))
    app = create_app(reader, access=book)
    sender = Recorder()

    async def dead_letters() -> list[DeadLetterEntry]:
        return letters()

    mount(
        app,
        Gateway(
            reader,
            sender,
            catalog=load_catalog(),
            max_payload_bytes=65536,
            dead_letters=dead_letters,
        ),
    )
    return app, sender


def client(app: FastAPI, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://view",
        headers={"Authorization": f"Bearer {token}"},
    )


def requests(source: TenantSource, c: str) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(route path, method, url, json body) of one request about client ``c`` per route."""
    task = {"client_id": c, "operation": "tag_add", "payload": {"tag": "x"}}
    job = {"client_id": c, "operation": "tag_add", "items": [{"payload": {"tag": "x"}}]}
    session = {"client_id": c, "agent_id": "ag"}
    schedule = {"client_id": c, "interval_ms": 60_000, "task": {"operation": "tag_add"}}
    template = {"client_id": c, "name": "t", "task": {"priority": 2}}
    return [
        ("/tasks/{task_id}", "GET", f"/tasks/dead-{c}", None),
        ("/tasks", "GET", f"/tasks?client_id={c}", None),
        ("/sessions/{session_id}", "GET", f"/sessions/s-{c}", None),
        ("/sessions", "GET", "/sessions", None),
        ("/batches/{batch_id}", "GET", f"/batches/{batch_of(source, c)}", None),
        ("/batch-jobs/{batch_job_id}", "GET", f"/batch-jobs/J-{c}", None),
        ("/batch-jobs", "GET", f"/batch-jobs?client_id={c}", None),
        ("/batches", "GET", f"/batches?client_id={c}", None),
        ("/dlq", "GET", f"/dlq?client_id={c}", None),
        ("/tasks", "POST", "/tasks", task),
        ("/batch-jobs", "POST", "/batch-jobs", job),
        ("/batch-jobs/{batch_job_id}/cancel", "POST", f"/batch-jobs/J-{c}/cancel", None),
        ("/tasks/{task_id}/cancel", "POST", f"/tasks/review-{c}/cancel", None),
        ("/tasks/{task_id}/approve", "POST", f"/tasks/review-{c}/approve", None),
        ("/tasks/{task_id}/reject", "POST", f"/tasks/review-{c}/reject", None),
        ("/tasks/{task_id}/expedite", "POST", f"/tasks/b1-{c}/expedite", None),
        ("/tasks/{task_id}", "PUT", f"/tasks/review-{c}", {"priority": 2, "tags": ["x"]}),
        ("/tasks/{task_id}", "DELETE", f"/tasks/review-{c}", None),
        ("/tasks/{task_id}/run", "POST", f"/tasks/later-{c}/run", None),
        ("/tasks/{task_id}/input", "POST", f"/tasks/ask-{c}/input", {"input": {"list": "vip"}}),
        ("/sessions", "POST", "/sessions", session),
        ("/sessions/{session_id}", "DELETE", f"/sessions/s-{c}", None),
        ("/sessions/cleanup", "POST", "/sessions/cleanup", {"client_id": c}),
        ("/dlq/redrive", "POST", "/dlq/redrive", {"task_ids": [f"dead-{c}"]}),
        ("/tasks/{task_id}/steps", "GET", f"/tasks/wf-{c}/steps", None),
        ("/tasks/{task_id}/executions", "GET", f"/tasks/dead-{c}/executions", None),
        ("/schedules", "GET", f"/schedules?client_id={c}", None),
        ("/schedules/{schedule_id}", "GET", f"/schedules/S-{c}", None),
        ("/templates", "GET", f"/templates?client_id={c}", None),
        ("/schedules", "POST", "/schedules", schedule),
        ("/schedules/{schedule_id}", "DELETE", f"/schedules/S-{c}", None),
        ("/templates", "POST", "/templates", template),
        ("/templates/{name}", "DELETE", f"/templates/T-{c}?client_id={c}", None),
    ]


SERVICE_WIDE = ["/status", "/health", "/metrics", "/dashboard/snapshot", "/webhooks/activity"]


def test_the_table_covers_every_route(tmp_path: Path) -> None:
    app, _ = build(tmp_path)
    source = two_tenants()
    listed = {(path, method) for path, method, _, _ in requests(source, "A")}
    listed |= {(p, "GET") for p in SERVICE_WIDE + ["/dashboard/operations"]}
    assert api_routes(app) == listed, "a route the access test does not exercise"


async def test_a_token_for_client_a_cannot_see_or_command_client_b(tmp_path: Path) -> None:
    source = two_tenants()
    app, sender = build(tmp_path, source)
    async with client(app, "a-admin") as http:
        for _, method, url, body in requests(source, "B"):
            r = await http.request(method, url, json=body)
            if method == "GET" and url.startswith(
                ("/tasks?", "/dlq?", "/schedules?", "/templates?", "/batch-jobs?", "/batches?")
            ):
                assert r.status_code == 200 and r.json()["items"] == [], url
            elif method == "GET" and url == "/sessions":
                assert {s["client_id"] for s in r.json()["items"]} == {"A"}
            elif url == "/dlq/redrive":
                # Only A's letters are candidates: B's task id is not found.
                assert r.status_code == 404 and "dead-B" in r.json()["detail"], r.text
            elif (
                method == "POST"
                and url in ("/tasks", "/batch-jobs", "/sessions", "/schedules", "/templates")
            ) or url.startswith("/templates/"):
                assert r.status_code == 403, (url, r.text)
                assert "may not act for 'B'" in r.json()["detail"]
            else:
                assert r.status_code == 404, (method, url, r.text)
                # The answer an id nobody has gets: nothing says it exists.
                assert r.json()["detail"].startswith("no "), r.text
        assert sender.sent == []
        # The same requests about A work.
        for _, method, url, body in requests(source, "A"):
            r = await http.request(method, url, json=body)
            assert r.status_code in (200, 202), (method, url, r.text)
        assert {getattr(c, "client_id", None) for c in sender.sent} == {"A"}
        # Listings without a filter show only A.
        for url in ("/tasks", "/dlq", "/batch-jobs", "/batches"):
            items = (await http.get(url)).json()["items"]
            assert items and {i["client_id"] for i in items} == {"A"}
        # Another client's task id cannot be taken over, nor probed for its specification.
        r = await http.post(
            "/tasks", json={"client_id": "A", "operation": "tag_add", "task_id": "dead-B"}
        )
        assert r.status_code == 409 and r.json()["detail"].endswith("is taken; use another task_id")


async def test_a_read_token_cannot_command(tmp_path: Path) -> None:
    source = two_tenants()
    app, sender = build(tmp_path, source)
    async with client(app, "a-read") as http:
        for _, method, url, body in requests(source, "A"):
            r = await http.request(method, url, json=body)
            if method == "GET":
                assert r.status_code == 200, (url, r.text)
            else:
                assert r.status_code == 403, (method, url, r.text)
                assert "has scope read" in r.json()["detail"]
    async with client(app, "a-write") as http:
        r = await http.post("/dlq/redrive", json={"all": True})
        assert r.status_code == 403 and "needs admin" in r.json()["detail"]
        r = await http.post(
            "/tasks", json={"client_id": "A", "operation": "tag_add", "payload": {"tag": "x"}}
        )
        assert r.status_code == 202
    assert len(sender.sent) == 1


async def test_service_wide_figures_need_a_token_for_every_client(tmp_path: Path) -> None:
    app, _ = build(tmp_path)
    async with client(app, "a-admin") as http:
        for path in [*SERVICE_WIDE, "/live"]:
            r = await http.get(path)
            assert r.status_code == 403 and "every client" in r.json()["detail"], path
        assert (await http.get("/dashboard/operations")).status_code == 200
    async with client(app, "all-read") as http:
        for path in SERVICE_WIDE:
            assert (await http.get(path)).status_code == 200, path
        r = await http.get("/sessions")
        assert {s["client_id"] for s in r.json()["items"]} == {"A", "B"}
    async with client(app, "root-token") as http:
        assert (await http.get("/status")).status_code == 200
        r = await http.post("/dlq/redrive", json={"all": True})
        assert r.status_code == 202 and len(r.json()["redriven"]) == 2, r.text


async def test_unknown_tokens_get_401(tmp_path: Path) -> None:
    app, _ = build(tmp_path)
    for token in ("nope", token_digest("a-read")):
        async with client(app, token) as http:
            assert (await http.get("/tasks")).status_code == 401
            assert (await http.get("/live")).status_code == 401


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tokens."abc"]\nname="x"\nclients=["*"]\nscopes=["read"]', "is not a token digest"),
        (
            f'[tokens."{token_digest("t")}"]\nname="x"\nclients=["*","A"]\nscopes=["read"]',
            "stands alone",
        ),
        (f'[tokens."{token_digest("t")}"]\nname="x"\nclients=["A"]\nscopes=["root"]', "scopes"),
        (
            f'[tokens."{token_digest("t")}"]\nname="admin"\nclients=["A"]\nscopes=["read"]',
            "reserved",
        ),
        (f'[tokens."{token_digest("t")}"]\nclients=["A"]\nscopes=["read"]', "name"),
        ("[other]\n", "unknown top-level"),
        ("tokens = [", "not valid TOML"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(AccessConfigError, match=message):
        load_tokens_file(path)


def test_the_book_finds_each_token_and_no_other(tmp_path: Path) -> None:
    book = AccessBook.build(token="root-token", tokens_file=tokens_file(tmp_path))
    assert book is not None
    root = book.principal("root-token")
    assert root is not None and root.name == "admin" and root.every_client
    a = book.principal("a-write")
    assert a is not None and a.clients == frozenset({"A"}) and a.can("read") and not a.can("admin")
    assert book.principal("a-write ") is None and book.principal("") is None
    assert AccessBook.build() is None and AccessBook.build(token="") is None
    text = tokens_file(tmp_path).read_text()
    assert token_digest("a-write") in text and "a-write" not in text


def test_a_public_view_needs_a_real_token_or_a_tokens_file(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from streams.cli.parts import check_view_exposure
    from streams.errors import ConfigurationError
    from streams.settings import Settings

    for token in (None, SecretStr("")):
        with pytest.raises(ConfigurationError, match="TASKSTREAM_HTTP_TOKENS_FILE"):
            check_view_exposure(Settings(http_host="0.0.0.0", http_token=token))
    check_view_exposure(Settings(http_host="0.0.0.0", http_tokens_file=tokens_file(tmp_path)))
    check_view_exposure(Settings(http_host="0.0.0.0", http_token=SecretStr("t0k")))
    check_view_exposure(Settings(http_host="127.0.0.1"))


def test_a_bad_tokens_file_stops_the_view_before_it_starts(tmp_path: Path) -> None:
    from streams.cli.parts import check_view_exposure
    from streams.settings import Settings

    path = tmp_path / "tokens.toml"
    path.write_text('[tokens."nope"]\nname = "x"\nclients = ["*"]\nscopes = ["read"]\n')
    with pytest.raises(AccessConfigError, match="is not a token digest"):
        check_view_exposure(Settings(http_host="127.0.0.1", http_tokens_file=path))
