"""Execution history through the view (issue 19): a failed attempt's full traceback, masked,
and each attempt's resources used and quality, on ``GET /tasks/{id}/executions?limit=``
(the seed's ``getExecutions(taskId, limit)``) and on the task itself. The real processor,
delay agent, executor, projector and view on the suite's broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from streams.client import TaskstreamClient
from streams.executor import Executor, SessionSpec, TaskContext
from streams.kafka.process import free_loopback_port
from streams.secrets import new_key_entry
from streams.settings import Settings
from tests.integration.distributor_harness import DelayRunner, InProcessProcessor, layout
from tests.integration.test_workflows import poll, view

pytestmark = pytest.mark.integration

CLIENT = "history"
OPERATION = "workflow_trigger"  # needs a session, not batchable
TOKEN = "sk-live-9f8e7d6c5b4a"


def _fails_first(ctx: TaskContext) -> None:
    # A frame of its own, so the traceback names it.
    raise ConnectionError(f"upstream refused the call with key {ctx.payload['api_key']}")


class FailsOnce:
    def __init__(self) -> None:
        self.attempts: list[int] = []

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        self.attempts.append(ctx.attempt)
        ctx.report_resources(cpu=0.2, memory=128, disk=0)
        if len(self.attempts) == 1:
            ctx.report_quality(0.1)
            _fails_first(ctx)
        ctx.report_quality(0.95)
        return {"contactId": "contact_123"}


async def test_executions_carry_the_masked_traceback_resources_and_quality(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(
        make_settings,
        http_port=free_loopback_port(),
        retry_base_ms=1000,
        retry_max_ms=1000,
        secrets_key=SecretStr(new_key_entry("k1")),  # the credential travels sealed
    )
    processor = await InProcessProcessor(settings).start()
    delay = await DelayRunner(settings).start()
    executor = Executor(
        settings,
        sessions=[SessionSpec("hist-s1", client_id=CLIENT, agent_id="agent-1")],
        handlers={OPERATION: (handler := FailsOnce())},
    )
    try:
        async with view(settings) as http, TaskstreamClient(settings) as sdk, executor:
            await sdk.submit(
                CLIENT, OPERATION, {"workflowId": "wf-1", "api_key": TOKEN}, task_id="h1"
            )
            await poll(http, "/tasks/h1", lambda t: t["state"] == "completed")

            answer = (await http.get("/tasks/h1/executions")).json()
            assert answer["task_id"] == "h1" and answer["total"] == 2, answer
            done, failed = answer["items"]  # newest first
            first, second = handler.attempts
            assert (done["attempt"], done["status"]) == (second, "completed")
            assert (failed["attempt"], failed["status"]) == (first, "failed")

            # The whole traceback of the failed attempt, the credential masked in it.
            tb = failed["traceback"]
            assert tb.startswith("Traceback (most recent call last):")
            assert "_fails_first" in tb and "ConnectionError: upstream refused" in tb
            assert TOKEN not in tb and "***" in tb
            assert TOKEN not in failed["error"]
            assert done["traceback"] is None

            # Resources and quality per execution, as the handler reported them.
            assert done["resources_used"] == {"cpu": 0.2, "memory": 128.0, "disk": 0.0}
            assert (done["quality"], failed["quality"]) == (0.95, 0.1)
            assert failed["resources_used"] == done["resources_used"]

            # limit keeps the newest; the task's own view lists them all, oldest first.
            latest = (await http.get("/tasks/h1/executions?limit=1")).json()
            assert [e["attempt"] for e in latest["items"]] == [second] and latest["total"] == 2
            task = (await http.get("/tasks/h1")).json()
            assert [e["quality"] for e in task["executions"]] == [0.1, 0.95]

            assert (await http.get("/tasks/nope/executions")).status_code == 404
            assert (await http.get("/tasks/h1/executions?limit=0")).status_code == 422
    finally:
        await delay.stop()
        await processor.stop()
