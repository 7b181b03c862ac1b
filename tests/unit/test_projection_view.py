"""The HTTP view's contract over an in-memory projection: messages, auth, headers, metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.view import LAG_HEADER, create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import events as ev


class Source(MemorySource):
    alive = True
    behind = 0

    def lag(self) -> dict[int, int]:
        return {0: self.behind}

    def running(self) -> bool:
        return self.alive


def _source() -> Source:
    source = Source()
    source.feed(
        ev.TaskAccepted(
            client_id="c",
            occurred_at_ms=1,
            task_id="t/1",
            operation="tag_add",
            priority=4,
            max_retries=3,
            timeout_ms=10,
        )
    )
    source.feed(
        ev.TaskQueued(client_id="c", occurred_at_ms=2, task_id="t/1", priority=4, attempt=1)
    )
    source.feed(
        ev.SessionRegistered(
            client_id="c", occurred_at_ms=3, session_id="s1", agent_id="a", max_concurrent=2
        )
    )
    source.flush()
    return source


def _client(source: Source, token: str | None = None) -> httpx.AsyncClient:
    app = create_app(ProjectionReader(source), token=token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://view")


async def test_ids_with_slashes_unknown_ids_and_lag() -> None:
    source = _source()
    source.behind = 7
    async with _client(source) as client:
        r = await client.get("/tasks/t/1")
        assert r.status_code == 200
        body = r.json()
        assert body["state"] == "queued" and body["priority_name"] == "low"
        assert body["projection"] == {
            "lag_events": 7,
            "lag_by_partition": {"0": 7},
            "as_of_offsets": {"0": 3},
        }
        assert r.headers[LAG_HEADER] == "7"
        for path, kind in (
            ("/tasks/zz", "task"),
            ("/sessions/zz", "session"),
            ("/batches/zz", "batch"),
        ):
            r = await client.get(path)
            assert r.status_code == 404
            assert r.json() == {"detail": f"no {kind} with id 'zz'"}
            assert r.headers[LAG_HEADER] == "7"


async def test_bad_parameters_get_a_clear_4xx() -> None:
    async with _client(_source()) as client:
        r = await client.get("/tasks", params={"limit": 0})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("query parameter 'limit': ")
        r = await client.get("/tasks", params={"limit": 1001})
        assert r.status_code == 422 and "1000" in r.json()["detail"]
        r = await client.get("/tasks", params={"status": "sleeping"})
        assert r.status_code == 422 and "'queued'" in r.json()["detail"]
        r = await client.get("/dlq", params={"cursor": "a"})
        assert r.status_code == 400 and "invalid cursor" in r.json()["detail"]
        r = await client.get("/tasks", params={"status": "queued", "client_id": "c"})
        assert [t["task_id"] for t in r.json()["items"]] == ["t/1"]


async def test_token_is_required_when_configured() -> None:
    async with _client(_source(), token="tok") as client:
        for path in ("/status", "/tasks", "/health", "/metrics", "/tasks/t/1"):
            r = await client.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
        r = await client.get("/status", headers={"Authorization": "Bearer tok2"})
        assert r.status_code == 401
        r = await client.get("/status", headers={"Authorization": "Bearer tok"})
        assert r.status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


async def test_health_turns_503_when_the_projector_stopped() -> None:
    source = _source()
    async with _client(source) as client:
        r = await client.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "healthy"
        assert r.json()["stats"] == {
            "processed": 0,
            "succeeded": 0,
            "failed": 0,
            "success_rate": None,
            "last_processed_at": None,
        }
        source.alive = False
        r = await client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "unhealthy"


async def test_metrics_parse_and_carry_the_series() -> None:
    source = _source()
    source.behind = 2
    async with _client(source) as client:
        r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    assert samples[("taskstream_queue_depth", (("priority", "low"),))] == 1
    assert samples[("taskstream_session_in_flight", (("session_id", "s1"),))] == 0
    assert samples[("taskstream_retries_total", ())] == 0
    assert samples[("taskstream_dead_letters_total", ())] == 0
    assert samples[("taskstream_projection_lag_events", (("partition", "0"),))] == 2
    assert samples[("taskstream_queue_wait_seconds_count", (("priority", "critical"),))] == 0
