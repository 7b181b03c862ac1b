"""The dashboard's data from the real stack (processor, projector + view + gateway, executors on
the embedded broker): the projector feeds the activity rings, /live pushes what /status says,
and a redrive shows on the dead letter. The browser test drives the same through a page."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from streams.settings import Settings

from ..e2e.stack import IDLE_CLIENT, running_stack, stack_settings, wait_until

pytestmark = pytest.mark.integration

TOKEN = "stack-token"


async def test_snapshot_and_live_from_the_running_stack(
    make_settings: Callable[..., Settings],
) -> None:
    settings = stack_settings(make_settings, TOKEN)
    async with running_stack(settings) as stack:
        ids = await stack.preload()
        snap = await stack.json("/dashboard/snapshot")
        status = await stack.json("/status")
        status.pop("projection")
        assert snap["status"] == status
        assert snap["condition"]["code"] == "ok"

        # The projector fed the rings: first assignments, completions, the tail, the depth.
        assert snap["latency"]["count"] >= 8  # 7 demo tasks + the flaky one
        assert snap["latency"]["p50_ms"] is not None
        assert snap["throughput"]["completed"] == 7 and snap["throughput"]["failed"] == 1
        types = {e["type"] for e in snap["events"]}
        assert {"task.completed", "task.dead_lettered", "task.queued"} <= types
        assert snap["depth"][-1]["depth"] == status["tasks_by_priority"]
        assert sum(snap["depth"][-1]["depth"].values()) == 8  # the idle client's tasks
        assert {s["session_id"] for s in snap["sessions"]} >= {"flaky_session_1"}
        assert all(s["state"] == "active" for s in snap["sessions"])
        dead = {d["task_id"]: d for d in snap["dead_letters"]}
        assert dead[ids["dead"]]["redrive_state"] is None

        # /live with the token as a query parameter (what the page's EventSource sends).
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as plain:
            assert (await plain.get("/live")).status_code == 401
            async with plain.stream("GET", "/live", params={"token": TOKEN}) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        pushed = json.loads(line[5:])
                        break
        assert pushed["status"]["tasks_by_priority"] == status["tasks_by_priority"]

        # A redrive through the gateway completes and shows on the dead letter.
        answer = await stack.http.post("/dlq/redrive", json={"task_ids": [ids["dead"]]})
        assert answer.status_code == 202, answer.text
        assert [i["new_task_id"] for i in answer.json()["redriven"]] == [f"{ids['dead']}.r1"]

        async def redriven() -> bool:
            letters = (await stack.json("/dashboard/snapshot"))["dead_letters"]
            return any(
                d["task_id"] == ids["dead"] and d["redrive_state"] == "completed" for d in letters
            )

        await wait_until(redriven, 30, "the redrive completed on the dead letter")
        assert stack.flaky.runs["dead-1"] == 2
        assert (await stack.json(f"/tasks?client_id={IDLE_CLIENT}"))["items"]
