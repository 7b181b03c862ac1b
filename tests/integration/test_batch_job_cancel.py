"""Cancelling and listing batch jobs, and listing batches, end to end on the suite's broker
(issue 15, item 7): the real processor, the projector with the HTTP view and gateway, the SDK
and the CLI. No executor serves the pool, so the released children stay queued and the held
items wait: what a cancel must stop."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from schemas import events as ev
from schemas import management_events as mev
from streams.cli import batch as batch_cli
from streams.client import TaskstreamClient
from streams.kafka.process import free_loopback_port
from streams.settings import Settings
from tests.integration.distributor_harness import InProcessProcessor, layout, read_events
from tests.integration.test_workflows import poll, view

pytestmark = pytest.mark.integration

CLIENT = "jobs"
POOL_OP = "integration_sync"  # shared pool: nobody serves it here
BATCH_OP = "contact_update"  # needs a session, batchable


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="taskstream")
    batch_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def run_cli(argv: list[str], settings: Settings) -> int:
    args = cli(argv)
    code: int = await asyncio.to_thread(args.handler, args, settings)
    return code


def items(n: int) -> list[dict[str, Any]]:
    return [{"payload": {"n": i}} for i in range(n)]


async def test_cancel_and_list_batch_jobs_and_list_batches_from_http_sdk_and_cli(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = await layout(make_settings, http_port=free_loopback_port())
    processor = await InProcessProcessor(settings).start()
    try:
        async with view(settings) as http, TaskstreamClient(settings) as sdk:
            r = await http.post(
                "/batch-jobs",
                json={
                    "client_id": CLIENT,
                    "batch_job_id": "job-http",
                    "operation": POOL_OP,
                    "items": items(5),
                    "parallelism": 2,
                },
            )
            assert r.status_code == 202, r.text
            for name in ("job-sdk", "job-cli"):
                await sdk.submit_batch_job(
                    CLIENT, POOL_OP, items(3), batch_job_id=name, parallelism=1
                )
            listed = await poll(
                http, f"/batch-jobs?client_id={CLIENT}", lambda b: len(b["items"]) == 3
            )
            assert [j["batch_job_id"] for j in listed["items"]] == [
                "job-cli",
                "job-http",
                "job-sdk",
            ]
            assert {j["state"] for j in listed["items"]} == {"processing"}
            first = (await http.get("/batch-jobs", params={"limit": 2})).json()
            rest = (
                await http.get("/batch-jobs", params={"limit": 2, "cursor": first["next_cursor"]})
            ).json()
            assert [j["batch_job_id"] for j in first["items"] + rest["items"]] == [
                "job-cli",
                "job-http",
                "job-sdk",
            ]

            # HTTP: the held items are never released, the queued children are cancelled.
            r = await http.post("/batch-jobs/job-http/cancel", json={"reason": "wrong list"})
            assert r.status_code == 202 and r.json()["command"] == "CancelBatchJob", r.text
            done = await poll(http, "/batch-jobs/job-http", lambda j: j["state"] == "cancelled")
            done = await poll(http, "/batch-jobs/job-http", lambda j: j["completed_at_ms"])
            assert (done["total"], done["processed"], done["failed"]) == (5, 5, 5)
            assert done["reason"] == "wrong list" and done["held"] == 0
            assert (await http.post("/batch-jobs/job-http/cancel")).status_code == 409
            assert (await http.post("/batch-jobs/no-such-job/cancel")).status_code == 404

            # SDK and CLI (the CLI looks the client up in the view).
            await sdk.cancel_batch_job(CLIENT, "job-sdk", reason="from the sdk")
            assert await run_cli(["batch", "cancel", "job-cli"], settings) == 0
            for name in ("job-sdk", "job-cli"):
                await poll(http, f"/batch-jobs/{name}", lambda j: j["completed_at_ms"])
            page = await sdk.list_batch_jobs(client_id=CLIENT, status="cancelled")
            assert [j["batch_job_id"] for j in page["items"]] == ["job-cli", "job-http", "job-sdk"]
            assert await run_cli(["batch", "list", "--status", "cancelled"], settings) == 0

            # Batches: two batchable tasks travel together to a session.
            await sdk.register_session(CLIENT, "s1", "agent-1", max_concurrent=5)
            for task_id in ("b-1", "b-2"):
                await sdk.submit(CLIENT, BATCH_OP, {"contactId": task_id}, task_id=task_id)
            batches = await poll(
                http,
                f"/batches?client_id={CLIENT}&session_id=s1",
                lambda b: bool(b["items"]) and b["items"][0]["state"] == "dispatched",
            )
            batch = batches["items"][0]
            assert sorted(batch["task_ids"]) == ["b-1", "b-2"]
            sdk_batches = await sdk.list_batches(client_id=CLIENT, status="dispatched")
            assert [b["batch_id"] for b in sdk_batches["items"]] == [batch["batch_id"]]
            assert await run_cli(["batch", "batches", "--client", CLIENT], settings) == 0
            assert (await http.get("/batches", params={"status": "bogus"})).status_code == 422
    finally:
        await processor.stop()

    out = capsys.readouterr().out
    assert "cancel sent for batch job job-cli" in out
    assert "job-sdk  cancelled  jobs  3/3 processed, 3 failed" in out
    assert f"{batch['batch_id']}  dispatched  {CLIENT}  {BATCH_OP}  2 tasks" in out

    events = [r.value for r in await read_events(settings)]
    (cancelled,) = [
        e for e in events if isinstance(e, mev.BatchJobCancelled) and e.batch_job_id == "job-http"
    ]
    assert cancelled.cancelled_task_ids == ["job-http.0", "job-http.1"]
    assert cancelled.unreleased == 3
    accepted = {e.task_id for e in events if isinstance(e, ev.TaskAccepted)}
    assert {"job-http.0", "job-http.1"} <= accepted
    assert not accepted & {"job-http.2", "job-http.3", "job-http.4"}
    stopped = {e.task_id for e in events if isinstance(e, ev.TaskCancelled)}
    assert {"job-http.0", "job-http.1", "job-sdk.0", "job-cli.0"} <= stopped
    completed = [e.batch_job_id for e in events if isinstance(e, ev.BatchJobCompleted)]
    assert sorted(completed) == ["job-cli", "job-http", "job-sdk"]
