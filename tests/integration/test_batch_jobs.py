"""Batch jobs end to end on the suite's broker (issue 7, "Done when" 3): the real processor,
a delay agent, an executor, the projector with the HTTP view, the SDK and the CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

import streams.distributor
import streams.runtime
from api.projector import Projector
from api.view import serve
from schemas import events as ev
from streams.cli import batch as batch_cli
from streams.client import TaskstreamClient
from streams.executor import Executor, SessionSpec, TaskContext
from streams.kafka.process import free_loopback_port
from streams.settings import Settings
from tests.integration.distributor_harness import DelayRunner, layout, read_events

pytestmark = pytest.mark.integration

CLIENT = "acme"
SESSION_OP = "workflow_trigger"  # needs a session, not batchable
POOL_OP = "integration_sync"  # shared pool, not batchable
TERMINAL = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled)


class CountingHandler:
    """Counts calls running at once; items whose ``n`` is a multiple of 7 fail every time."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.calls = 0

    async def __call__(self, ctx: TaskContext) -> Mapping[str, Any]:
        self.running += 1
        self.calls += 1
        self.most = max(self.most, self.running)
        try:
            n = int(ctx.payload["n"])
            await asyncio.sleep(0.002 * (n % 4))
            if n % 7 == 0:
                raise RuntimeError(f"item {n} is broken")
            return {"n": n, "square": n * n}
        finally:
            self.running -= 1


@contextlib.asynccontextmanager
async def system(
    settings: Settings, handlers: Mapping[str, Any], **executor: Any
) -> AsyncIterator[Projector]:
    """Processor, delay agent, executor, projector and view; all stopped afterwards."""
    stop, ready = asyncio.Event(), asyncio.Event()
    processor = asyncio.create_task(
        streams.runtime.run_processor(
            lambda s: streams.distributor.Distributor(s), settings, stop=stop, ready=ready
        )
    )
    delay = DelayRunner(settings)
    projector = Projector(settings, path=settings.data_dir / "view", poll_ms=50)
    worker = Executor(settings, handlers=handlers, **executor)
    view: asyncio.Task[None] | None = None
    try:
        await asyncio.gather(asyncio.wait_for(ready.wait(), 60), delay.start())
        await projector.start()
        view = asyncio.create_task(serve(settings, projector))
        await worker.start()
        yield projector
    finally:
        await worker.stop()
        if view is not None:
            view.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await view
        await projector.stop()
        await delay.stop()
        stop.set()
        await asyncio.wait_for(processor, 30)


def most_unfinished_at_once(events: list[Any], prefix: str) -> tuple[int, int]:
    """(children released and not terminal, children assigned and not terminal): the maxima
    over the event log, in log order."""
    released: set[str] = set()
    assigned: set[str] = set()
    most_released = most_assigned = 0
    for e in events:
        task_id = getattr(e, "task_id", None)
        if task_id is None or not task_id.startswith(prefix):
            continue
        if isinstance(e, ev.TaskAccepted):
            released.add(task_id)
        elif isinstance(e, ev.TaskAssigned):
            assigned.add(task_id)
        elif isinstance(e, TERMINAL):
            released.discard(task_id)
            assigned.discard(task_id)
        most_released = max(most_released, len(released))
        most_assigned = max(most_assigned, len(assigned))
    return most_released, most_assigned


async def test_200_items_with_parallelism_5_and_failing_items(
    make_settings: Callable[..., Settings],
) -> None:
    # Failing items lower the session's health; a short circuit cooldown keeps the run short.
    settings = await layout(
        make_settings,
        retry_base_ms=50,
        retry_max_ms=200,
        circuit_cooldown_ms=100,
        http_port=free_loopback_port(),
    )
    handler = CountingHandler()
    session = SessionSpec("s1", CLIENT, "agent-1", max_concurrent=10)
    snapshots: list[dict[str, Any]] = []
    async with system(settings, {SESSION_OP: handler}, sessions=[session], concurrency=10):
        async with TaskstreamClient(settings) as client:
            job_id = await client.submit_batch_job(
                CLIENT,
                SESSION_OP,
                [{"payload": {"n": n}} for n in range(200)],
                batch_job_id="job-200",
                parallelism=5,
                max_retries=1,
            )
        assert job_id == "job-200"
        url = f"http://127.0.0.1:{settings.http_port}/batch-jobs/{job_id}"
        async with httpx.AsyncClient(timeout=10) as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 180
            while not snapshots or snapshots[-1]["state"] == "processing":
                assert loop.time() < deadline, f"job not done: {snapshots[-1:]}"
                r = await http.get(url)
                if r.status_code == 200:
                    snapshots.append(r.json())
                await asyncio.sleep(0.1)

    failing = {f"job-200.{n}" for n in range(200) if n % 7 == 0}
    final = snapshots[-1]
    assert final["state"] == "completed"
    assert (final["total"], final["processed"]) == (200, 200)
    assert (final["succeeded"], final["failed"]) == (200 - len(failing), len(failing))
    assert final["running"] == 0 and final["held"] == 0
    results = final["results"]
    assert len(results) == 200
    for n in range(200):
        item = results[f"job-200.{n}"]
        assert item["index"] == n
        if n % 7 == 0:
            assert item["success"] is False and item["error"] == f"item {n} is broken"
        else:
            assert item["success"] is True and item["output"] == {"n": n, "square": n * n}
    # Progress seen through the view only grows.
    for key in ("processed", "succeeded", "failed"):
        seen = [s[key] for s in snapshots]
        assert seen == sorted(seen), key

    events = [r.value for r in await read_events(settings)]
    mine = [e for e in events if getattr(e, "client_id", None) == CLIENT]
    # At no point more than 5 children between release (or assignment) and a terminal state.
    assert most_unfinished_at_once(mine, "job-200.") == (5, 5)
    assert handler.most <= 5
    # Failing items ran 1 + max_retries times and were dead-lettered; the rest ran once.
    assert handler.calls == 200 + len(failing)
    dead = {e.task_id for e in mine if isinstance(e, ev.TaskDeadLettered)}
    assert dead == failing
    # The log's own progress counters only grow and the job completed exactly once.
    steps = [
        (e.processed, e.succeeded, e.failed) for e in mine if isinstance(e, ev.BatchJobProgressed)
    ]
    assert steps == sorted(steps) and steps[-1] == (200, 200 - len(failing), len(failing))
    (done,) = [e for e in mine if isinstance(e, ev.BatchJobCompleted)]
    assert {r.task_id: r.success for r in done.results} == {
        f"job-200.{n}": n % 7 != 0 for n in range(200)
    }


async def test_cli_batch_submit_follows_the_job_to_its_end(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = await layout(
        make_settings, retry_base_ms=50, retry_max_ms=200, http_port=free_loopback_port()
    )
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps({"n": n}) for n in range(12)) + "\n")
    results = tmp_path / "results.json"
    parser = argparse.ArgumentParser(prog="taskstream")
    batch_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "batch",
            "submit",
            str(items),
            "--client",
            CLIENT,
            "--operation",
            POOL_OP,
            "--parallelism",
            "3",
            "--max-retries",
            "0",
            "--batch-job-id",
            "cli-job",
            "--results",
            str(results),
            "--wait-timeout",
            "120",
        ]
    )
    async with system(settings, {POOL_OP: CountingHandler()}, pool=True, concurrency=4):
        code = await asyncio.to_thread(args.handler, args, settings)
    out = capsys.readouterr()
    assert code == 0, out
    assert out.out.splitlines() == [
        "cli-job",
        "batch job cli-job completed: 12 items, 10 succeeded, 2 failed",
    ]
    assert "cli-job" in out.err  # the progress bar
    written = json.loads(results.read_text())
    assert sorted(written) == sorted(f"cli-job.{n}" for n in range(12))
    assert written["cli-job.7"]["error"] == "item 7 is broken"
    assert written["cli-job.3"]["output"] == {"n": 3, "square": 9}
