"""The projector on a real broker: every endpoint answers what a reference fold of the consumed
events answers; a rebuild, a restart and a second instance answer the same."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from api import service
from api.projection_store import ProjectionStore
from api.projector import Projector, rebuild
from api.view import LAG_HEADER, ViewServer, create_app, serve
from projections.fold import skip
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from projections.rows import TaskRow
from projections.tables import Tables
from schemas import events as ev
from schemas.codec import CODEC
from schemas.errors import DecodeError
from schemas.events import Event
from streams.kafka import consumer_kwargs, producer_kwargs
from streams.kafka.headers import CAUSE_HEADER
from streams.kafka.process import free_loopback_port
from streams.kafka.topics import ensure_topics
from streams.runtime.causation import Cause
from streams.settings import Settings
from tests.support.view_scenario import EXPECTED_STATES, scenario

GARBAGE = b"\xc3\x01not-a-known-fingerprint"


async def produce(settings: Settings, events: list[Event]) -> None:
    """Like the processor: keyed by client id (default partitioner), a cause header each."""
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        topic = settings.topic("events")
        for i, event in enumerate(events):
            await producer.send(
                topic,
                CODEC.encode(event),
                key=event.client_id.encode(),
                headers=[(CAUSE_HEADER, Cause("c", 0, i, 0, 1).encode())],
            )
        await producer.send(topic, GARBAGE, key=b"c-alpha")
        await producer.flush()
    finally:
        await producer.stop()


async def reference(settings: Settings) -> MemorySource:
    """The test's own fold of everything it reads back from the events topic."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    await consumer.start()
    source = MemorySource()
    source.tables.offsets.update(dict.fromkeys(range(settings.partitions), 0))
    try:
        topic = settings.topic("events")
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        done = {tp: ends[tp] == 0 for tp in tps}
        while not all(done.values()):
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    try:
                        event = CODEC.decode(record.value)
                    except DecodeError:
                        source.tables.counters.undecodable += 1
                        skip(source.tables, tp.partition, record.offset)
                        continue
                    assert isinstance(event, Event)
                    source.feed(event, tp.partition, record.offset)
                    if record.offset + 1 >= ends[tp]:
                        done[tp] = True
                if records and records[-1].offset + 1 >= ends[tp]:
                    done[tp] = True
        source.flush()
    finally:
        await consumer.stop()
    return source


def _client(reader: ProjectionReader, token: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(reader, token=token)),
        base_url="http://view",
    )


async def _all_pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        query = {**params, "limit": 4}
        if cursor:
            query["cursor"] = cursor
        r = await client.get(path, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def _metrics(text: str) -> dict[str, Any]:
    out = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value) for s in family.samples
        )
    return out


async def answers(reader: ProjectionReader) -> dict[str, Any]:
    """Every endpoint's answer (volatile timestamp removed), keyed by request."""
    out: dict[str, Any] = {}
    async with _client(reader) as client:
        for path in ["/status", "/health"]:
            r = await client.get(path)
            assert r.status_code == 200, r.text
            assert r.headers[LAG_HEADER] == "0"
            body = r.json()
            body.pop("timestamp", None)
            out[path] = body
        out["/tasks"] = await _all_pages(client, "/tasks")
        for filters in (
            {"client_id": "c-alpha"},
            {"status": "scheduled"},
            {"status": "retry_scheduled"},
            {"operation": "tag_add"},
            {"client_id": "c-beta", "status": "completed"},
            {"status": "queued", "operation": "workflow_trigger"},
        ):
            out[f"/tasks?{sorted(filters.items())}"] = await _all_pages(client, "/tasks", **filters)
        for task in out["/tasks"]:
            r = await client.get(f"/tasks/{task['task_id']}")
            assert r.status_code == 200
            out[f"/tasks/{task['task_id']}"] = r.json()
        out["/sessions"] = await _all_pages(client, "/sessions")
        for session in out["/sessions"]:
            r = await client.get(f"/sessions/{session['session_id']}")
            out[f"/sessions/{session['session_id']}"] = r.json()
        for batch_id in ("B-1", "B-2"):
            out[f"/batches/{batch_id}"] = (await client.get(f"/batches/{batch_id}")).json()
        out["/dlq"] = await _all_pages(client, "/dlq")
        out["/dlq?reason"] = await _all_pages(client, "/dlq", reason="retries_exhausted")
        r = await client.get("/metrics")
        assert r.status_code == 200
        out["/metrics"] = _metrics(r.text)
    return out


async def test_projector_answers_like_the_reference_fold(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(partitions=3)
    await ensure_topics(settings)
    events = scenario()
    await produce(settings, events)

    first = Projector(settings, path=tmp_path / "one", poll_ms=50)
    second = Projector(settings, path=tmp_path / "two", poll_ms=50)
    await first.start()
    await second.start()
    try:
        ends = await first.wait_caught_up(30)
        await second.wait_caught_up(30)
        assert sum(ends.values()) == len(events) + 1
        expected_source = await reference(settings)
        expected = await answers(ProjectionReader(expected_source))

        got = await answers(first.reader)
        assert got == expected
        assert await answers(second.reader) == expected

        # Spot checks against the script itself, not only against the reference fold.
        states = {t["task_id"]: t["state"] for t in got["/tasks"]}
        assert states == EXPECTED_STATES
        status = got["/status"]
        assert status["queue_length"] == 4 and status["active_sessions"] == 4
        assert status["projection"]["lag_events"] == 0
        assert sum(status["projection"]["as_of_offsets"].values()) == len(events) + 1
        assert got["/batches/B-1"]["success_count"] == 2
        assert [d["task_id"] for d in got["/dlq"]] == ["a-dead"]
        assert got["/health"]["stats"]["succeeded"] == 4  # a-done, b-1, b-2, d-timeout
        assert first.tables.counters.undecodable == 1
        metrics = got["/metrics"]
        for family in (
            "taskstream_queue_depth",
            "taskstream_session_in_flight",
            "taskstream_retries",
            "taskstream_dead_letters",
            "taskstream_projection_lag_events",
            "taskstream_queue_wait_seconds",
        ):
            assert family in metrics, family
        assert ("taskstream_dead_letters_total", (), 1.0) in metrics["taskstream_dead_letters"]
        assert ("taskstream_session_in_flight", (("session_id", "sa1"),), 1.0) in metrics[
            "taskstream_session_in_flight"
        ]

        # More events arrive: the live projector follows.
        extra: list[Event] = [
            ev.SessionRegistered(
                client_id="c-alpha",
                occurred_at_ms=1,
                session_id="sa9",
                agent_id="a9",
                max_concurrent=1,
            )
        ]
        await produce(settings, extra)
        await first.wait_caught_up(30)
        assert first.reader.session("sa9") is not None
        expected = await answers(ProjectionReader(await reference(settings)))
        assert await answers(first.reader) == expected
    finally:
        await first.stop()
        await second.stop()

    # Restart from the store: nothing to replay, same answers.
    restarted = Projector(settings, path=tmp_path / "one", poll_ms=50)
    await restarted.start()
    try:
        await restarted.wait_caught_up(30)
        assert await answers(restarted.reader) == expected
    finally:
        await restarted.stop()

    # Rebuild the same store from offset 0 while nothing runs on it.
    seen: list[tuple[int, int]] = []
    report = await rebuild(
        settings, lambda done, total: seen.append((done, total)), path=tmp_path / "one"
    )
    assert report.events == len(events) + len(extra) + 2
    assert seen[-1][0] == seen[-1][1] == report.events
    rebuilt = Projector(settings, path=tmp_path / "one", poll_ms=50)
    await rebuilt.start()
    try:
        await rebuilt.wait_caught_up(30)
        assert await answers(rebuilt.reader) == expected
    finally:
        await rebuilt.stop()


async def test_uvicorn_serves_with_a_token(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(partitions=2, http_port=free_loopback_port(), http_token="s3cret")
    await ensure_topics(settings)
    await produce(settings, scenario()[:5])
    projector = Projector(settings, path=tmp_path / "p", poll_ms=50)
    await projector.start()
    task = asyncio.create_task(serve(settings, projector))
    try:
        await projector.wait_caught_up(30)
        base = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(200):
                try:
                    r = await client.get("/status")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert r.status_code == 401
            assert "bearer token" in r.json()["detail"]
            r = await client.get("/status", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
            ok = {"Authorization": "Bearer s3cret"}
            r = await client.get("/status", headers=ok)
            assert r.status_code == 200
            assert r.headers[LAG_HEADER] == "0"
            assert r.json()["active_sessions"] == 2
            r = await client.get("/tasks/nope", headers=ok)
            assert r.status_code == 404 and r.json() == {"detail": "no task with id 'nope'"}
            r = await client.get("/openapi.json")
            assert r.status_code == 200 and "/tasks/{task_id}" in r.json()["paths"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await projector.stop()
    # Stopped: the port is free again.
    server = ViewServer(create_app(projector.reader), "127.0.0.1", settings.http_port)
    await server.start()
    assert server.port == settings.http_port
    await server.stop()


async def test_a_store_ahead_of_the_log_is_rebuilt(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The log was replaced (an embedded broker restarted): the store claims offsets the log
    does not have. The projector drops it and replays instead of serving stale rows."""
    settings = make_settings(partitions=2)
    await ensure_topics(settings)
    events = scenario()[:30]
    await produce(settings, events)
    path = tmp_path / "stale"
    store = ProjectionStore(path, settings.topic("events"))
    stale = Tables(store.get)
    for offset in range(500):
        skip(stale, 0, offset)
        skip(stale, 1, offset)
    stale.put_task(TaskRow(task_id="ghost", client_id="nobody", state="queued"))
    store.write(stale.drain())
    store.close()

    projector = Projector(settings, path=path, poll_ms=50)
    await projector.start()
    try:
        await projector.wait_caught_up(30)
        assert projector.reader.task("ghost") is None
        expected = await answers(ProjectionReader(await reference(settings)))
        assert await answers(projector.reader) == expected
    finally:
        await projector.stop()


async def test_the_service_runs_projector_and_view_and_rebuilds(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=2, http_port=free_loopback_port())
    await ensure_topics(settings)
    events = scenario()
    await produce(settings, events)
    running = asyncio.create_task(service.run(settings))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client:
            body: dict[str, Any] = {}
            for _ in range(400):
                try:
                    body = (await client.get("/status")).json()
                    if body["tasks_total"] == len(EXPECTED_STATES):
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            assert body["tasks_total"] == len(EXPECTED_STATES)
            assert body["queue_length"] == 4
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    report = await asyncio.to_thread(service.rebuild_with_progress_bar, settings)
    assert report.events == len(events) + 1 and report.partitions == 2
