"""A running taskstream for the dashboard tests, all in the test's event loop: the
distributor processor, the projector + view + command gateway (``api.service.run``),
the demo executor, and an executor whose handler fails the first run of each task key (to make
a dead letter that a redrive then completes).

Clients: the demo clients have sessions (their tasks complete); ``IDLE_CLIENT`` has none, so
its tasks stay queued (the queue-depth chart has something to show); ``FLAKY_CLIENT`` is served
by the flaky executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from api import service
from streams.client import TaskstreamClient
from streams.demo import demo_executor
from streams.distributor import Distributor
from streams.executor import Executor, SessionSpec
from streams.executor.context import TaskContext
from streams.kafka.topics import ensure_topics
from streams.runtime import run_processor
from streams.settings import Settings

# Short group timings, a fast tick and a short batch window: a group settles faster than
# with the defaults, and batched work would wait 2 s by default.
FAST: dict[str, Any] = {
    "kafka_session_timeout_ms": 3000,
    "kafka_heartbeat_interval_ms": 300,
    "tick_interval_ms": 50,
    "batch_window_ms": 300,
}

IDLE_CLIENT = "client_idle_009"
FLAKY_CLIENT = "client_flaky_010"
FLAKY_OPERATION = "pipeline_update"  # needs a session, not batchable
FLAKY_SESSION = SessionSpec("flaky_session_1", FLAKY_CLIENT, "agent_flaky", max_concurrent=2)


class FailFirstRuns:
    """Fails the first ``failures`` runs of each ``payload["key"]`` (the task id when absent),
    then succeeds: with ``max_retries=0`` the task is dead-lettered, and its redrive (a new task
    with the same payload) completes."""

    def __init__(self, failures: int = 1) -> None:
        self.failures = failures
        self.runs: Counter[str] = Counter()

    async def __call__(self, ctx: TaskContext) -> Mapping[str, Any]:
        key = str(ctx.payload.get("key", ctx.task_id))
        self.runs[key] += 1
        run = self.runs[key]
        if run <= self.failures:
            raise RuntimeError(f"run {run} of {key} fails on purpose")
        return {"key": key, "run": run}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, step_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(step_s)


@dataclass
class Stack:
    settings: Settings
    base_url: str
    token: str
    client: TaskstreamClient
    http: httpx.AsyncClient
    """Talks to the view with the bearer token."""
    view: asyncio.Task[None]
    flaky: FailFirstRuns

    async def json(self, path: str) -> Any:
        response = await self.http.get(path)
        response.raise_for_status()
        return response.json()

    async def task_state(self, task_id: str) -> str | None:
        response = await self.http.get(f"/tasks/{task_id}")
        return None if response.status_code == 404 else response.json()["state"]

    async def wait_state(self, task_id: str, states: set[str], timeout_s: float = 30) -> None:
        async def reached() -> bool:
            return await self.task_state(task_id) in states

        await wait_until(reached, timeout_s, f"task {task_id} in {states}")

    async def preload(self) -> dict[str, str]:
        """Work for the page to show: completed demo tasks, queued tasks of a client without a
        session, and one dead letter. Returns {role: task_id}."""
        done = []
        for i, (client, operation) in enumerate(
            [
                ("client_acme_001", "tag_add"),
                ("client_acme_001", "tag_add"),
                ("client_acme_001", "contact_update"),
                ("client_globex_002", "conversation_send"),
                ("client_globex_002", "note_create"),
                ("client_initech_003", "workflow_trigger"),
                ("client_initech_003", "integration_sync"),
            ]
        ):
            done.append(
                await self.client.submit(
                    client, operation, {"contact": f"ct_{i:04d}"}, task_id=f"pre-done-{i}"
                )
            )
        for i, priority in enumerate((1, 2, 3, 3, 4, 4, 4, 5)):
            await self.client.submit(
                IDLE_CLIENT,
                "conversation_read",
                {"n": i},
                task_id=f"pre-idle-{i}",
                priority=priority,
            )
        dead = await self.client.submit(
            FLAKY_CLIENT,
            FLAKY_OPERATION,
            {"key": "dead-1", "stage": "won"},
            task_id="pre-dead-1",
            max_retries=0,
        )
        for task_id in done:
            await self.wait_state(task_id, {"completed"})
        await self.wait_state(dead, {"failed"})
        await self.wait_state("pre-idle-7", {"queued"})

        async def dead_lettered() -> bool:
            items = (await self.json("/dlq"))["items"]
            return any(d["task_id"] == dead for d in items)

        await wait_until(dead_lettered, 30, "the dead letter in /dlq")
        return {"dead": dead, "done": done[0], "idle": "pre-idle-0"}


@contextlib.asynccontextmanager
async def running_stack(settings: Settings) -> AsyncIterator[Stack]:
    """Start everything; stop everything (in reverse) on exit, also when the test failed."""
    assert settings.http_token is not None
    token = settings.http_token.get_secret_value()
    await ensure_topics(settings)
    stop = asyncio.Event()
    ready = asyncio.Event()
    processor = asyncio.create_task(
        run_processor(lambda s: Distributor(s), settings, stop=stop, ready=ready),
        name="e2e-processor",
    )
    view: asyncio.Task[None] | None = None
    executors: list[Executor] = []
    http = httpx.AsyncClient(
        base_url=f"http://{settings.http_host}:{settings.http_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    client = TaskstreamClient(settings)
    try:
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            {waiter, processor}, timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if processor in done:
            processor.result()
            raise AssertionError("the processor stopped while starting")
        assert ready.is_set(), "the processor was not ready within 60 s"

        view = asyncio.create_task(service.run(settings), name="e2e-view")

        async def serving() -> bool:
            if view is not None and view.done():
                view.result()
                raise AssertionError("the view stopped while starting")
            try:
                return (await http.get("/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(serving, 60, "the view answering /health")

        flaky = FailFirstRuns()
        executors = [
            demo_executor(settings, failure_rate=0.0),
            Executor(settings, handlers={FLAKY_OPERATION: flaky}, sessions=[FLAKY_SESSION]),
        ]
        for executor in executors:
            await executor.start()
        await client.start()

        async def sessions_up() -> bool:
            status = (await http.get("/status")).json()
            return bool(status["active_sessions"] == 5)

        await wait_until(sessions_up, 30, "the five sessions registered")
        yield Stack(
            settings=settings,
            base_url=str(http.base_url).rstrip("/"),
            token=token,
            client=client,
            http=http,
            view=view,
            flaky=flaky,
        )
    finally:
        await client.close()
        for executor in reversed(executors):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(executor.stop(drain_timeout_s=2), 20)
        if view is not None:
            view.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(view, 20)
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(processor, 20)
        await http.aclose()


def stack_settings(make_settings: Callable[..., Settings], token: str) -> Settings:
    return make_settings(**FAST, http_host="127.0.0.1", http_port=free_port(), http_token=token)
