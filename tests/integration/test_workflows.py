"""Multi-step tasks, recurring schedules and far-future starts end to end on the suite's broker
(issue 15, items 4-6): the real processor (in process, or a subprocess that is SIGKILLed), an
executor, the projector with the HTTP view and gateway, the SDK and the CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.projector import Projector
from api.view import serve
from schemas import events as ev
from streams.cli import schedules as schedules_cli
from streams.cli.main import build_parser
from streams.client import TaskstreamClient
from streams.domain.retry import RETRY_TIERS_MS
from streams.executor import Executor, TaskContext
from streams.kafka.process import free_loopback_port
from streams.settings import Settings, retry_tier_name
from tests.integration.distributor_harness import (
    InProcessProcessor,
    ProcessorProcess,
    layout,
    read_events,
    read_topic,
    wait_for_events,
)

pytestmark = pytest.mark.integration

CLIENT = "acme"
POOL_OP = "integration_sync"  # shared pool: no session needed


async def pool_handler(ctx: TaskContext) -> Mapping[str, Any]:
    if ctx.payload.get("fail"):
        raise RuntimeError(f"{ctx.task_id} is broken")
    return {"done": ctx.task_id}


@contextlib.asynccontextmanager
async def view(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The projector and the HTTP view with the gateway, on settings.http_port."""
    projector = Projector(settings, path=settings.data_dir / "view", poll_ms=50)
    await projector.start()
    client = TaskstreamClient(settings)
    await client.start()
    server = asyncio.create_task(serve(settings, projector, commands=client))
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health")).status_code in (200, 503):
                        break
                await asyncio.sleep(0.05)
            yield http
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        await client.close()
        await projector.stop()


async def poll(
    http: httpx.AsyncClient, path: str, check: Callable[[Any], bool], timeout_s: float = 60
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        r = await http.get(path)
        if r.status_code == 200:
            last = r.json()
            if check(last):
                return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"GET {path} did not satisfy the check in time: {last}")


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="taskstream")
    schedules_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def test_three_steps_with_a_parallel_pair_and_a_skip_dependents_failure(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = await layout(make_settings, http_port=free_loopback_port())
    processor = await InProcessProcessor(settings).start()
    worker = Executor(settings, handlers={POOL_OP: pool_handler}, pool=True, concurrency=4)
    try:
        await worker.start()
        async with view(settings) as http:
            r = await http.post(
                "/tasks",
                json={
                    "client_id": CLIENT,
                    "task_id": "wf-1",
                    "operation": POOL_OP,
                    "max_retries": 0,
                    "steps": [
                        {"id": "fetch", "operation": POOL_OP, "config": {"n": 1}},
                        {
                            "id": "enrich",
                            "operation": POOL_OP,
                            "config": {"fail": True},
                            "failure_policy": "skip_dependents",
                        },
                        {
                            "id": "notify",
                            "operation": POOL_OP,
                            "config": {"n": 3},
                            "depends_on": ["enrich"],
                        },
                    ],
                },
            )
            assert r.status_code == 202, r.text
            body = await poll(
                http, "/tasks/wf-1/steps", lambda b: b["state"] in ("completed", "failed")
            )
            code = await asyncio.to_thread((args := cli(["steps", "wf-1"])).handler, args, settings)

            # The same from the SDK and from `taskstream submit --steps`.
            pair = [
                {"id": "a", "operation": POOL_OP},
                {"id": "b", "operation": POOL_OP, "depends_on": ["a"]},
            ]
            async with TaskstreamClient(settings) as sdk:
                await sdk.submit(CLIENT, POOL_OP, task_id="wf-sdk", steps=pair)
            submit_args = build_parser().parse_args(
                ["submit", POOL_OP, "--client", CLIENT, "--task-id", "wf-cli"]
                + ["--title", "from the shell", "--steps", json.dumps(pair)]
            )
            assert await asyncio.to_thread(submit_args.handler, submit_args, settings) == 0
            for task_id in ("wf-sdk", "wf-cli"):
                other = await poll(
                    http, f"/tasks/{task_id}/steps", lambda b: b["state"] == "completed"
                )
                assert [s["status"] for s in other["steps"]] == ["completed", "completed"]
            assert (await http.get("/tasks/wf-cli")).json()["title"] == "from the shell"
    finally:
        await worker.stop()
        await processor.stop()

    assert body["state"] == "completed"
    steps = {s["id"]: s for s in body["steps"]}
    assert {k: s["status"] for k, s in steps.items()} == {
        "fetch": "completed",
        "enrich": "failed",
        "notify": "skipped",
    }
    assert steps["fetch"]["output"] == {"done": "wf-1:fetch"}
    assert steps["fetch"]["task_id"] == "wf-1:fetch" and steps["fetch"]["task_state"] == "completed"
    assert steps["enrich"]["error"] == "wf-1:enrich is broken"
    assert steps["notify"]["task_id"] is None  # a skipped step never ran
    out = capsys.readouterr().out
    assert code == 0 and "wf-1  completed" in out and "wf-cli\n" in out and "skipped" in out

    events = [r.value for r in await read_events(settings)]
    mine = [e for e in events if getattr(e, "task_id", "").startswith("wf-1")]
    started = [e.step_id for e in mine if isinstance(e, ev.TaskStepStarted)]
    assert started == ["fetch", "enrich"]
    # The parallel pair: both started before either finished.
    first_finish = next(i for i, e in enumerate(mine) if isinstance(e, ev.TaskStepFinished))
    assert {e.step_id for e in mine[:first_finish] if isinstance(e, ev.TaskStepStarted)} == {
        "fetch",
        "enrich",
    }
    assert not any(isinstance(e, ev.TaskAccepted) and e.task_id == "wf-1:notify" for e in mine)
    (done,) = [e for e in mine if isinstance(e, ev.TaskCompleted) and e.task_id == "wf-1"]
    assert done.output["steps"]["notify"] == {"status": "skipped", "error": "step enrich failed"}


async def test_a_schedule_every_2s_fires_each_occurrence_once_across_a_processor_sigkill(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = await layout(make_settings, http_port=free_loopback_port())
    first = ProcessorProcess(settings, tmp_path / "p1.log").start()
    second: ProcessorProcess | None = None

    def fired(events: list[Any]) -> list[ev.ScheduleFired]:
        return [e for e in events if isinstance(e, ev.ScheduleFired)]

    try:
        async with view(settings) as http:
            r = await http.post(
                "/schedules",
                json={
                    "client_id": CLIENT,
                    "schedule_id": "every2s",
                    "interval_ms": 2000,
                    "task": {"operation": POOL_OP, "payload": {"from": "schedule"}},
                },
            )
            assert r.status_code == 202, r.text
            assert r.json()["link"] == "/schedules/every2s"
            await wait_for_events(settings, lambda es: len(fired(es)) >= 2, timeout_s=60)
            assert first.kill(signal.SIGKILL) == -signal.SIGKILL
            killed_at = time.time() * 1000
            await asyncio.sleep(5)  # two or three occurrences fall due while nobody runs
            second = ProcessorProcess(settings, tmp_path / "p2.log").start()
            events = await wait_for_events(
                settings,
                lambda es: any(f.occurrence_ms > killed_at + 7000 for f in fired(es)),
                timeout_s=90,
            )
            listed = await poll(
                http,
                "/schedules?client_id=acme",
                lambda b: b["items"] and b["items"][0]["fired"] >= 5,
            )
            code = await asyncio.to_thread(
                (args := cli(["schedule", "list", "--client", CLIENT])).handler, args, settings
            )
            r = await http.delete("/schedules/every2s")
            assert r.status_code == 202, r.text
            await poll(http, "/schedules/every2s", lambda b: b["state"] == "deleted")
    finally:
        first.kill(signal.SIGKILL)
        if second is not None:
            second.kill(signal.SIGTERM)

    occurrences = [f.occurrence_ms for f in fired(events)]
    assert len(occurrences) == len(set(occurrences)), "an occurrence fired twice"
    # Every occurrence from the first to the last, each once: the missed ones ran late, once.
    assert [b - a for a, b in zip(occurrences, occurrences[1:], strict=False)] == [2000] * (
        len(occurrences) - 1
    )
    assert any(f.occurrence_ms < killed_at < f.occurrence_ms + 2000 for f in fired(events))
    accepted = [e.task_id for e in events if isinstance(e, ev.TaskAccepted)]
    assert sorted(accepted) == sorted(f"every2s@{o}" for o in occurrences)
    assert listed["items"][0]["schedule_id"] == "every2s"
    out = capsys.readouterr().out
    assert code == 0 and "every2s  active" in out


async def test_templates_and_schedules_through_the_sdk_and_the_cli(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = await layout(make_settings, http_port=free_loopback_port())
    processor = await InProcessProcessor(settings).start()
    try:
        async with view(settings) as http, TaskstreamClient(settings) as client:
            await client.define_template(
                CLIENT, "sync", {"operation": POOL_OP, "priority": 2, "payload": {"a": 1}}
            )
            await poll(http, "/templates?client_id=acme", lambda b: len(b["items"]) == 1)
            sid = await client.create_schedule(
                CLIENT, {"payload": {"b": 2}}, interval_ms=1000, template="sync"
            )
            row = await poll(http, f"/schedules/{sid}", lambda b: b["fired"] >= 1)
            assert row["task"] == {"operation": POOL_OP, "priority": 2, "payload": {"a": 1, "b": 2}}
            args = cli(
                [
                    "schedule",
                    "create",
                    "--client",
                    CLIENT,
                    "--cron",
                    "0 9 * * 1-5",
                    "--timezone",
                    "Europe/Berlin",
                    "--operation",
                    POOL_OP,
                    "--schedule-id",
                    "weekdays",
                ]
            )
            assert await asyncio.to_thread(args.handler, args, settings) == 0
            weekdays = await poll(http, "/schedules/weekdays", lambda b: b["state"] == "active")
            args = cli(["schedule", "delete", "weekdays"])
            assert await asyncio.to_thread(args.handler, args, settings) == 0
            await poll(http, "/schedules/weekdays", lambda b: b["state"] == "deleted")
            await client.delete_schedule(CLIENT, sid)
            await poll(http, f"/schedules/{sid}", lambda b: b["state"] == "deleted")
            await client.delete_template(CLIENT, "sync")
            await poll(http, "/templates?client_id=acme", lambda b: b["items"] == [])
    finally:
        await processor.stop()
    assert weekdays["cron"] == "0 9 * * 1-5" and weekdays["next_at_ms"] > time.time() * 1000
    events = [r.value for r in await read_events(settings)]
    tasks = [e for e in events if isinstance(e, ev.TaskAccepted)]
    assert tasks and all(t.task_id.startswith(f"{sid}@") for t in tasks)
    assert all((t.priority, t.payload) == (2, {"a": 1, "b": 2}) for t in tasks)
    assert "weekdays" in capsys.readouterr().out


async def test_a_task_six_hours_ahead_waits_without_writing_records(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(make_settings, http_port=free_loopback_port())
    processor = await InProcessProcessor(settings).start()
    try:
        async with view(settings) as http, TaskstreamClient(settings) as client:
            now = int(time.time() * 1000)
            r = await http.post(
                "/tasks",
                json={
                    "client_id": CLIENT,
                    "task_id": "far",
                    "operation": POOL_OP,
                    "scheduled_for_ms": now + 6 * 3_600_000,
                },
            )
            assert r.status_code == 202, r.text
            # A control task due in a second: the tick that starts it also looked at "far".
            await client.submit(CLIENT, POOL_OP, task_id="soon", scheduled_for_ms=now + 1000)
            events = await wait_for_events(
                settings,
                lambda es: any(isinstance(e, ev.TaskAssigned) and e.task_id == "soon" for e in es),
                timeout_s=60,
            )
            await asyncio.sleep(1)  # ten more ticks
            row = (await http.get("/tasks/far")).json()
    finally:
        await processor.stop()
    events = [r.value for r in await read_events(settings)]
    far = [type(e).__name__ for e in events if getattr(e, "task_id", None) == "far"]
    assert far == ["TaskAccepted", "TaskScheduled"]
    assert row["state"] == "scheduled"
    tiers = [
        rec
        for tier in RETRY_TIERS_MS
        for rec in await read_topic(settings, retry_tier_name(tier))
        if getattr(rec.value, "task_id", None) in ("far", "soon")
    ]
    assert tiers == []  # no delay-tier record while they wait (it was one every 32 s)
