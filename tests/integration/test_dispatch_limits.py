"""Issue 14 items 4-6 on a real broker: pool work within registered capacity and by priority,
waiting made visible (starved, breaching; on /status and /metrics), per-client rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.projector import Projector
from api.view import create_app
from schemas import events as ev
from streams.executor import Executor
from streams.executor.context import TaskContext
from streams.settings import Settings
from tests.integration.distributor_harness import (
    Commands,
    InProcessProcessor,
    layout,
    register,
    submit,
    wait_for_events,
)

pytestmark = pytest.mark.integration

CATALOG = """
[operations.urgent_ping]
urgency = 1
expected_duration_ms = 50
session_required = false

[operations.bulk_report]
urgency = 5
expected_duration_ms = 50
session_required = false
"""


def count(events: list[Any], kind: type[Any], **match: Any) -> int:
    return sum(
        isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items()) for e in events
    )


async def test_critical_pool_work_overtakes_background_pool_work(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    catalog = tmp_path / "ops.toml"
    catalog.write_text(CATALOG)
    settings = await layout(make_settings, operations_file=catalog, client_rate_limit="none")
    processor = InProcessProcessor(settings)
    order: list[str] = []
    release = asyncio.Event()

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        order.append(ctx.task_id)
        await release.wait()
        return {"ran": ctx.task_id}

    executor = Executor(
        settings,
        handlers={"urgent_ping": handler, "bulk_report": handler},
        pool=True,
        concurrency=1,  # one pool unit per partition it consumes
        heartbeat_interval_ms=500,
    )
    await processor.start()
    await executor.start()
    try:
        async with Commands(settings) as commands:
            await wait_for_events(
                settings,
                lambda es: count(es, ev.PoolRegistered) >= settings.partitions,
                30,
                processor,
            )
            await commands.send(*(submit("A", f"bg{i}", "bulk_report") for i in range(4)))
            await wait_for_events(settings, lambda es: count(es, ev.TaskQueued) == 4, 30, processor)
            await commands.send(submit("A", "crit", "urgent_ping"))
            await wait_for_events(
                settings, lambda es: count(es, ev.TaskQueued, task_id="crit") == 1, 30, processor
            )
            release.set()
            events = await wait_for_events(
                settings, lambda es: count(es, ev.TaskCompleted) == 5, 30, processor
            )
    finally:
        release.set()
        await executor.stop()
        await processor.stop()
    # bg0 held the partition's one unit; the critical task went next, before bg1..bg3.
    assert order == ["bg0", "crit", "bg1", "bg2", "bg3"]
    # Only as much went out as the pool could take: nothing timed out, failed or ran twice.
    assert count(events, ev.TaskTimedOut) == count(events, ev.TaskAttemptFailed) == 0
    assert count(events, ev.TaskAssigned) == 5


async def test_a_client_without_a_session_shows_as_starved_and_breaching(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = await layout(
        make_settings, sla_ms={"critical": 500}, starved_after_ms=500, client_rate_limit="none"
    )
    processor = InProcessProcessor(settings)
    projector = Projector(settings, path=tmp_path / "view", poll_ms=50)
    await processor.start()
    await projector.start()
    try:
        async with Commands(settings) as commands:
            await commands.send(submit("lonely", "t1", "workflow_trigger"))
            await wait_for_events(
                settings,
                lambda es: count(es, ev.ClientStarved) == 1 and count(es, ev.TaskSlaBreached) == 1,
                30,
                processor,
            )
            await projector.wait_caught_up(30)
            app = create_app(projector.reader)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://view"
            ) as client:
                status = (await client.get("/status")).json()
                metrics = (await client.get("/metrics")).text
            # A session arrives: the episode ends.
            await commands.send(register("lonely", "s1"))
            await wait_for_events(
                settings, lambda es: count(es, ev.ClientServed) == 1, 30, processor
            )
    finally:
        await projector.stop()
        await processor.stop()
    [starved] = status["starved_clients"]
    assert (starved["client_id"], starved["reason"], starved["waiting_tasks"]) == (
        "lonely",
        "no_session",
        1,
    )
    assert starved["sla_breaches"] == 1
    assert status["sla_breaches"] == 1 and status["wait_times"]["critical"]["sla_breaches"] == 1
    assert status["queue_length"] == 1
    assert 'taskstream_client_starved{client_id="lonely",reason="no_session"} 1.0' in metrics
    assert 'taskstream_client_sla_breaches_total{client_id="lonely"} 1.0' in metrics
    assert 'taskstream_sla_breaches_total{priority="critical"} 1.0' in metrics


async def test_a_client_over_its_rate_limit_waits_and_nothing_fails(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(make_settings, client_rate_limit="3/1s")
    processor = InProcessProcessor(settings)
    await processor.start()
    try:
        async with Commands(settings) as commands:
            await commands.send(register("busy", "s1", max_concurrent=20))
            await commands.send(*(submit("busy", f"t{i}", "workflow_trigger") for i in range(9)))
            events = await wait_for_events(
                settings, lambda es: count(es, ev.TaskAssigned) == 9, 30, processor
            )
    finally:
        await processor.stop()
    assigned = [e for e in events if isinstance(e, ev.TaskAssigned)]
    first = assigned[0].occurred_at_ms
    # A full bucket lets three go at once; the rest waited for tokens (one per 333 ms).
    assert [e.occurred_at_ms - first < 333 for e in assigned].count(True) <= 3
    assert assigned[-1].occurred_at_ms - first >= 5 * 1000 // 3
    assert count(events, ev.ClientRateLimit, limit=3, period_ms=1000) == 1
    assert count(events, ev.TaskRejected) == count(events, ev.TaskFailed) == 0
