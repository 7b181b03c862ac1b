"""`taskstream dlq redrive` as an operator uses it: dead-lettered tasks redriven with the CLI
complete, and redriving them again adds nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from streams.distributor import Distributor
from streams.executor import Executor, SessionSpec, TaskContext
from streams.kafka.process import free_loopback_port
from streams.kafka.topics import ensure_topics
from streams.runtime import run_processor
from streams.settings import Settings


async def flaky_until_redriven(ctx: TaskContext) -> Mapping[str, Any]:
    """Fails every original task; its redriven copy (id ``<original>.r1``) succeeds."""
    if ".r" not in ctx.task_id:
        raise RuntimeError("CRM said 503")
    return {"sent": True}


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TASKSTREAM_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers or "",
        TASKSTREAM_TOPIC_PREFIX=settings.topic_prefix,
        TASKSTREAM_HTTP_PORT=str(settings.http_port),
    )
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def test_cli_redrive_completes_dead_letters_once(
    make_settings: Callable[..., Settings],
) -> None:
    from api import service
    from streams.client import TaskstreamClient

    settings = make_settings(
        http_port=free_loopback_port(),
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=300,
        tick_interval_ms=50,
    )
    await ensure_topics(settings)
    stop = asyncio.Event()
    ready = asyncio.Event()
    processor = asyncio.create_task(run_processor(Distributor, settings, stop=stop, ready=ready))
    view = asyncio.create_task(service.run(settings))
    executor = Executor(
        settings,
        sessions=[SessionSpec("s-redrive", "client_redrive", "agent-1", max_concurrent=2)],
        handlers={"conversation_send": flaky_until_redriven},
    )
    originals = [f"msg-{i}" for i in range(3)]
    try:
        await asyncio.wait_for(ready.wait(), 60)
        await executor.start()
        async with TaskstreamClient(settings) as client:
            for task_id in originals:
                await client.submit(
                    "client_redrive",
                    "conversation_send",
                    {"text": "hi"},
                    task_id=task_id,
                    max_retries=0,
                )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.http_port}", timeout=5
        ) as http:

            async def state_of(task_id: str) -> str | None:
                try:
                    answer = await http.get(f"/tasks/{task_id}")
                except httpx.HTTPError:
                    return None
                return answer.json().get("state") if answer.status_code == 200 else None

            async def dead_lettered() -> bool:
                try:
                    answer = await http.get("/dlq")
                except httpx.HTTPError:
                    return False
                ids = {item["task_id"] for item in answer.json().get("items", [])}
                return set(originals) <= ids

            await _wait_for(dead_lettered, "three dead letters")

            first = await asyncio.to_thread(_cli, settings, "dlq", "redrive", "--all")
            assert first.returncode == 0, first.stderr
            assert "3 redriven" in first.stdout

            async def all_completed() -> bool:
                states = [await state_of(f"{t}.r1") for t in originals]
                return all(s == "completed" for s in states)

            await _wait_for(all_completed, "the redriven tasks to complete")

            second = await asyncio.to_thread(_cli, settings, "dlq", "redrive", "--all")
            assert second.returncode == 0, second.stderr
            assert "0 redriven" in second.stdout
            assert second.stdout.count("already") == 3

            # An id the view does not know: one clear line, non-zero exit, no traceback.
            for args in (("status", "no-such-task"), ("cancel", "no-such-task")):
                unknown = await asyncio.to_thread(_cli, settings, *args)
                assert unknown.returncode != 0
                assert "Traceback" not in unknown.stderr
                lines = [line for line in unknown.stderr.splitlines() if line.strip()]
                assert len(lines) == 1 and "no-such-task" in lines[0], unknown.stderr

            # Nothing new: no second generation, and each redriven task ran exactly once.
            await asyncio.sleep(1.0)
            assert all([await state_of(f"{t}.r2") is None for t in originals])
            answer = await http.get("/tasks", params={"client_id": "client_redrive", "limit": 100})
            ids = sorted(item["task_id"] for item in answer.json()["items"])
            assert ids == sorted(originals + [f"{t}.r1" for t in originals])
    finally:
        await executor.stop()
        stop.set()
        view.cancel()
        await asyncio.gather(processor, view, return_exceptions=True)
