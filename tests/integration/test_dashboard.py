"""The dashboard's HTTP side over an in-memory projection: the public page and assets, the
snapshot, token handling on /live, the server-sent events, and the degraded conditions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from api.dashboard import DashboardOptions, SnapshotBuilder
from api.view import ViewServer, create_app
from projections.activity import RecentActivity
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import events as ev
from tests.support.view_scenario import scenario

TOKEN = "dash-secret"


class Source(MemorySource):
    alive = True
    behind = 0

    def lag(self) -> dict[int, int]:
        return {0: self.behind}

    def running(self) -> bool:
        return self.alive


def _source() -> Source:
    source = Source()
    for event in scenario():
        source.feed(event)
    source.flush()
    return source


def _client(source: Source, token: str | None = TOKEN) -> httpx.AsyncClient:
    app = create_app(ProjectionReader(source), token=token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://view")


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_page_and_assets_are_public_and_come_from_the_package() -> None:
    async with _client(_source()) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script src="/static/app.js"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for path, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
            r = await client.get(path)
            assert r.status_code == 200 and kind in r.headers["content-type"]
        # Nothing of the page fetches from elsewhere.
        for path in ("/", "/static/app.js", "/static/app.css"):
            text = (await client.get(path)).text
            assert "http://" not in text and "https://" not in text
        assert (await client.get("/static/nope.js")).status_code == 404

        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/dashboard/snapshot" in paths and "/dashboard/operations" in paths
        assert "/" not in paths and "/live" not in paths


async def test_snapshot_needs_the_token_and_shows_what_status_shows() -> None:
    source = _source()
    async with _client(source) as client:
        r = await client.get("/dashboard/snapshot")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/dashboard/snapshot?token=" + TOKEN)).status_code == 401

        snap = (await client.get("/dashboard/snapshot", headers=_auth())).json()
        status = (await client.get("/status", headers=_auth())).json()
        status.pop("projection")
        assert snap["status"] == status
        assert snap["condition"] == {"level": "ok", "code": "ok", "message": "Live"}
        assert snap["projection"]["lag_events"] == 0

        assert {s["session_id"] for s in snap["sessions"]} == {
            s["session_id"]
            for s in (await client.get("/sessions?state=active", headers=_auth())).json()["items"]
        }
        dead = {d["task_id"]: d for d in snap["dead_letters"]}
        assert dead["a-dead"]["task_state"] == "failed"
        assert dead["a-dead"]["redrive_task_id"] == "a-dead.r1"
        assert dead["a-dead"]["redrive_state"] is None
        assert [b["batch_id"] for b in snap["batches"]] == ["B-2"]  # the only unconsolidated
        assert all(b["state"] != "consolidated" for b in snap["batches"])
        events = snap["events"]
        assert len(events) == 50
        last = scenario()[-1]
        assert events[0]["type"] == last.TYPE and events[0]["at_ms"] == last.occurred_at_ms

        operations = (await client.get("/dashboard/operations", headers=_auth())).json()
        names = [o["name"] for o in operations]
        assert "tag_add" in names and operations[0]["priority"] == "critical"

    # A redrive shows up on the dead letter once the read side sees the new task.
    source.feed(
        ev.TaskAccepted(
            client_id="c-alpha",
            occurred_at_ms=1_800_000_000_000,
            task_id="a-dead.r1",
            operation="note_create",
            priority=3,
            max_retries=3,
            timeout_ms=1000,
        )
    )
    source.feed(
        ev.TaskQueued(
            client_id="c-alpha",
            occurred_at_ms=1_800_000_000_000,
            task_id="a-dead.r1",
            priority=3,
            attempt=1,
        )
    )
    source.flush()
    async with _client(source, token=None) as client:
        snap = (await client.get("/dashboard/snapshot")).json()
    dead = {d["task_id"]: d for d in snap["dead_letters"]}
    assert dead["a-dead"]["redrive_state"] == "queued"


def test_conditions_behind_stale_and_stopped() -> None:
    source = _source()
    now = time.time()
    source.activity.fetched(int(now * 1000) - 1000)
    reader = ProjectionReader(source)
    builder = SnapshotBuilder(reader, DashboardOptions(lag_threshold=100, stale_after_s=10))

    assert builder.build().condition.code == "ok"
    source.behind = 101
    behind = builder.build().condition
    assert (behind.level, behind.code) == ("warning", "behind")
    assert "101 events behind" in behind.message

    source.activity.fetched(int(now * 1000) - 60_000)
    stale = builder.build().condition
    assert (stale.level, stale.code) == ("error", "stale")
    assert "broker" in stale.message

    source.alive = False
    stopped = builder.build().condition
    assert (stopped.level, stopped.code) == ("error", "stopped")
    assert "503" in stopped.message


def test_a_source_without_activity_still_gets_a_snapshot() -> None:
    source = _source()
    del source.activity
    snap = SnapshotBuilder(ProjectionReader(source), DashboardOptions()).build()
    assert snap.events == [] and snap.latency.count == 0 and snap.batches == []
    assert snap.status.dead_letters == 1


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    kind, data = "message", list[str]()
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


@pytest.mark.integration
async def test_live_streams_snapshots_with_the_token_and_does_not_hold_shutdown() -> None:
    source = _source()
    app = create_app(ProjectionReader(source), token=TOKEN)
    server = ViewServer(app, "127.0.0.1", 0)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/live")).status_code == 401
            assert (await client.get("/live?token=wrong")).status_code == 401
            assert (await client.get("/live", headers=_auth("wrong"))).status_code == 401

            for kwargs in ({"params": {"token": TOKEN}}, {"headers": _auth()}):
                async with client.stream("GET", "/live", **kwargs) as response:  # type: ignore[arg-type]
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")
                    seen = []
                    async for kind, data in _events(response):
                        assert kind == "snapshot"
                        seen.append(json.loads(data))
                        if len(seen) == 2:
                            break
                status = (await client.get("/status", headers=_auth())).json()
                status.pop("projection")
                assert seen[-1]["status"] == status
                assert seen[1]["now_ms"] >= seen[0]["now_ms"]

            # A changed projection reaches an open stream.
            async with client.stream("GET", "/live", params={"token": TOKEN}) as response:
                source.alive = False
                async for _, data in _events(response):
                    if json.loads(data)["condition"]["code"] == "stopped":
                        break

        # An open stream does not keep the server from stopping.
        held = httpx.AsyncClient(base_url=base, timeout=30)
        stream = held.stream("GET", "/live", params={"token": TOKEN})
        response = await stream.__aenter__()
        assert response.status_code == 200
        await asyncio.wait_for(server.stop(), 15)
        await held.aclose()
    finally:
        await server.stop()


def test_rings_of_the_activity_are_independent_of_the_reader() -> None:
    """The reader hands out the source's activity, or None when the source keeps none."""
    source = _source()
    assert isinstance(ProjectionReader(source).activity(), RecentActivity)
    del source.activity
    assert ProjectionReader(source).activity() is None


def test_dead_letters_newest_first_then_by_id() -> None:
    source = Source()
    for i, task_id in enumerate(("z-dead", "a-dead", "m-dead")):
        source.feed(
            ev.TaskDeadLettered(
                client_id="c",
                occurred_at_ms=1_700_000_000_000 + i,
                task_id=task_id,
                operation="note_create",
                reason="retries_exhausted",
            )
        )
    source.flush()
    reader = ProjectionReader(source)

    def shown(limit: int) -> list[str]:
        builder = SnapshotBuilder(reader, DashboardOptions(dead_letters=limit))
        return [d.task_id for d in builder.build().dead_letters]

    assert shown(20) == ["m-dead", "a-dead", "z-dead"]
    assert shown(2) == ["m-dead", "a-dead"]
    source.activity.clear()  # after a restart the ring is empty: id order
    assert shown(2) == ["a-dead", "m-dead"]


def test_secrets_in_errors_are_masked_like_the_rest_of_the_view() -> None:
    source = Source()
    leak = "upstream said 401 for Authorization: Bearer s3cr3t-value"
    source.feed(
        ev.TaskAttemptFailed(
            client_id="c", occurred_at_ms=1_700_000_000_000, task_id="t", attempt=1, error=leak
        )
    )
    source.feed(
        ev.TaskDeadLettered(
            client_id="c",
            occurred_at_ms=1_700_000_000_001,
            task_id="t",
            operation="api_call",
            reason=leak,
            attempts=[ev.AttemptRecord(attempt=1, error=leak, at_ms=1_700_000_000_000)],
        )
    )
    source.flush()
    snap = SnapshotBuilder(ProjectionReader(source), DashboardOptions()).build()
    text = snap.model_dump_json()
    assert "s3cr3t" not in text
    assert snap.dead_letters[0].task_id == "t" and snap.events[0].type == "task.dead_lettered"
