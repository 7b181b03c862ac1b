"""GET /batch-jobs/{id} over an in-memory projection of events the decider produced."""

from __future__ import annotations

from typing import Any

import httpx

from api.view import create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import commands as c
from schemas import events as ev
from tests.support.batch_jobs import job
from tests.support.gwt import Harness


class Source(MemorySource):
    def lag(self) -> dict[int, int]:
        return {0: 0}

    def running(self) -> bool:
        return True


def _feed(source: Source, events: list[ev.Event]) -> None:
    for event in events:
        source.feed(event)
    source.flush()


async def _get(source: Source, batch_job_id: str, token: str | None = None) -> httpx.Response:
    app = create_app(ProjectionReader(source), token=token)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://view") as client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await client.get(f"/batch-jobs/{batch_job_id}", headers=headers)


async def test_progress_running_held_and_results_as_the_job_advances() -> None:
    h = Harness().given(job(n=4, parallelism=2, max_retries=0), at=10)
    source = Source()
    _feed(source, h.log)
    body: dict[str, Any] = (await _get(source, "J")).json()
    assert body["state"] == "processing"
    assert (body["total"], body["processed"], body["running"], body["held"]) == (4, 0, 2, 2)
    assert body["parallelism"] == 2 and body["operation"] == "integration_sync"

    mark = len(h.log)
    h.succeed("J.0", at=11, output={"v": 0})
    h.fail("J.1", error="bad", at=12)
    _feed(source, h.log[mark:])
    body = (await _get(source, "J")).json()
    assert (body["processed"], body["succeeded"], body["failed"]) == (2, 1, 1)
    assert (body["running"], body["held"]) == (2, 0)
    assert body["results"]["J.0"] == {
        "index": 0,
        "success": True,
        "output": {"v": 0},
        "error": None,
    }
    assert body["results"]["J.1"]["error"] == "bad"

    mark = len(h.log)
    h.succeed("J.2", at=13)
    h.do(c.CancelTask(client_id="A", task_id="J.3"), at=14)
    _feed(source, h.log[mark:])
    body = (await _get(source, "J")).json()
    assert body["state"] == "completed" and body["completed_at_ms"] == 14
    assert (body["processed"], body["succeeded"], body["failed"], body["running"]) == (4, 2, 2, 0)
    assert sorted(body["results"]) == ["J.0", "J.1", "J.2", "J.3"]
    assert body["results"]["J.3"]["error"] == "cancelled"


async def test_rejected_unknown_and_a_refused_duplicate_that_does_not_clobber() -> None:
    h = Harness().given(job(batch_job_id="bad", operation="nope"), at=1)
    h.given(job(batch_job_id="ok", n=1, parallelism=1), at=2)
    h.given(job(batch_job_id="ok", n=2, parallelism=1), at=3)  # same id, other spec: refused
    source = Source()
    _feed(source, h.log)
    bad = (await _get(source, "bad")).json()
    assert bad["state"] == "rejected" and "unknown operation" in bad["reason"]
    ok = (await _get(source, "ok")).json()
    assert ok["state"] == "processing" and ok["total"] == 1 and ok["reason"] is None
    missing = await _get(source, "nobody")
    assert missing.status_code == 404 and "no batch job" in missing.json()["detail"]


async def test_the_route_needs_the_views_token() -> None:
    source = Source()
    _feed(source, Harness().given(job(), at=1).log)
    assert (await _get(source, "J", token=None)).status_code == 200
    app = create_app(ProjectionReader(source), token="s3cret")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://view") as client:
        assert (await client.get("/batch-jobs/J")).status_code == 401
    assert (await _get(source, "J", token="s3cret")).status_code == 200


def test_batch_files_as_json_array_or_json_lines() -> None:
    from streams.cli.batch import parse_items

    lines = '{"payload": {"a": 1}, "task_id": "x"}\n\n{"a": 2}\n{"payload": 3, "other": 1}\n'
    assert parse_items(lines) == [
        {"payload": {"a": 1}, "task_id": "x"},
        {"payload": {"a": 2}},
        {"payload": {"payload": 3, "other": 1}},
    ]
    assert parse_items('[{"a": 1}, {"payload": {"b": 2}}]') == [
        {"payload": {"a": 1}},
        {"payload": {"b": 2}},
    ]


def test_bad_batch_files_name_the_problem() -> None:
    import pytest

    from streams.cli.batch import parse_items
    from streams.errors import ConfigurationError

    for text, message in (
        ("", "holds no items"),
        ("[1, 2]", "item 1 must be a JSON object"),
        ('{"a": 1}\n{oops\n', "line 2 is not valid JSON"),
        ("[{]", "is not valid JSON"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            parse_items(text, "items.jsonl")
