"""GET /batch-jobs and GET /batches (filters, cursor pages), a cancelled job's row, and the
overdue count on /status and /metrics, over an in-memory projection of decided events."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.view import create_app
from projections.reader import ProjectionReader
from schemas import commands as c
from tests.support.batch_jobs import job
from tests.support.gwt import Harness, register, submit
from tests.unit.test_batch_jobs_view import Source, _feed

OP = "workflow_trigger"


async def _get(source: Source, url: str) -> Any:
    app = create_app(ProjectionReader(source))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://view") as client:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        return r.json() if "json" in r.headers["content-type"] else r.text


def three_jobs() -> Harness:
    h = Harness()
    for name in ("J1", "J2", "J3"):
        h.given(job(batch_job_id=name, n=2, parallelism=1, max_retries=0), at=1)
    h.succeed("J1.0", at=2)
    h.succeed("J1.1", at=3)  # J1 completed; J2 and J3 processing
    h.do(c.CancelBatchJob(client_id="A", batch_job_id="J3", reason="wrong list"), at=4)
    return h


async def test_batch_jobs_are_listed_by_id_filtered_and_paged() -> None:
    source = Source()
    _feed(source, three_jobs().log)
    every = await _get(source, "/batch-jobs")
    assert [j["batch_job_id"] for j in every["items"]] == ["J1", "J2", "J3"]
    assert [j["state"] for j in every["items"]] == ["completed", "processing", "cancelled"]
    cancelled = every["items"][2]
    assert cancelled["reason"] == "wrong list" and cancelled["completed_at_ms"] == 4
    assert (cancelled["processed"], cancelled["failed"], cancelled["held"]) == (2, 2, 0)

    first = await _get(source, "/batch-jobs?limit=2")
    assert [j["batch_job_id"] for j in first["items"]] == ["J1", "J2"]
    rest = await _get(source, f"/batch-jobs?limit=2&cursor={first['next_cursor']}")
    assert [j["batch_job_id"] for j in rest["items"]] == ["J3"] and rest["next_cursor"] is None

    processing = await _get(source, "/batch-jobs?status=processing&client_id=A")
    assert [j["batch_job_id"] for j in processing["items"]] == ["J2"]
    assert (await _get(source, "/batch-jobs?client_id=B"))["items"] == []


async def test_batches_are_listed_with_their_filters() -> None:
    h = Harness().given(register("s1", max_concurrent=10))
    for i in range(3):
        h.do(submit(f"b{i}", operation="contact_update"), at=0)
    h.tick(10_000)  # the batching window closes
    source = Source()
    _feed(source, h.log)
    listed = await _get(source, "/batches")
    assert listed["items"], "the decider formed no batch"
    batch = listed["items"][0]
    assert batch["client_id"] == "A" and sorted(batch["task_ids"]) == ["b0", "b1", "b2"]
    state = batch["state"]
    assert (await _get(source, f"/batches?status={state}&session_id=s1"))["items"] == [batch]
    assert (await _get(source, "/batches?session_id=nope"))["items"] == []
    assert (await _get(source, "/batches?operation=tag_add"))["items"] == []


async def test_overdue_unfinished_tasks_are_counted_until_they_finish() -> None:
    h = Harness().given(
        register("s1"),
        submit("late", operation=OP, due_at_ms=1000),
        submit("later", operation=OP, due_at_ms=1000),
        at=0,
    )
    h.tick(1000)
    source = Source()
    _feed(source, h.log)
    assert (await _get(source, "/status"))["overdue_tasks"] == 2
    metrics = await _get(source, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert families["taskstream_tasks_overdue"].samples[0].value == 2
    mark = len(h.log)
    h.succeed("late", at=1001)
    _feed(source, h.log[mark:])
    assert (await _get(source, "/status"))["overdue_tasks"] == 1
    overdue = await _get(source, "/tasks?overdue=true")
    assert {t["task_id"] for t in overdue["items"]} == {"late", "later"}  # the flag stays
