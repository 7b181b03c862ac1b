"""The Go SDK (sdks/go) against the Python processor on the suite's broker: `go test ./...`
runs the shared vectors and its end-to-end test (its client submits, its executor runs the
work, outcomes arrive; a task the Python client submitted runs on the Go executor), and the
README's Go example runs as a program. Skipped only when `go` is not installed."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.events import TaskCompleted
from streams.client import TaskstreamClient
from streams.settings import Settings
from tests.integration.distributor_harness import DelayRunner, InProcessProcessor, layout

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("go") is None, reason="`go` is not installed: the Go SDK needs Go 1.26"
    ),
]

SDK = Path(__file__).resolve().parents[2] / "sdks" / "go"
GO_TIMEOUT_S = 300


async def run_go(settings: Settings, *args: str, extra: dict[str, str] | None = None) -> str:
    """Run `go <args>` in sdks/go with the broker and topic prefix in the environment; fail
    the test with its output unless it exits 0."""
    assert settings.kafka_bootstrap_servers is not None
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TASKSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        **(extra or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        "go",
        *args,
        cwd=SDK,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), GO_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"go {' '.join(args)} did not finish in {GO_TIMEOUT_S}s") from None
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"go {' '.join(args)} exited {proc.returncode}:\n{text}"
    return text


async def outcome_of(settings: Settings, task_id: str) -> TaskCompleted:
    async with TaskstreamClient(settings) as client:
        async with asyncio.timeout(60):
            async for outcome in client.outcomes(group_id=f"{settings.topic_prefix}-check"):
                if outcome.task_id == task_id:
                    assert isinstance(outcome, TaskCompleted), outcome
                    return outcome
    raise AssertionError("the outcome stream ended")


async def test_go_sdk_against_the_processor(make_settings: Callable[..., Settings]) -> None:
    settings = await layout(make_settings)
    processor = await InProcessProcessor(settings).start()
    delay = await DelayRunner(settings).start()
    try:
        # A task submitted from Python, before any executor serves its client: the Go
        # executor registers a session of that client and runs it.
        py_client, py_task = f"py-client-{uuid.uuid4().hex[:6]}", f"py-task-{uuid.uuid4().hex[:6]}"
        async with TaskstreamClient(settings) as client:
            await client.submit(py_client, "workflow_trigger", {"from": "python"}, task_id=py_task)

        output = await run_go(
            settings,
            "test",
            "-count=1",
            "-v",
            "./...",
            extra={"TASKSTREAM_E2E_PY_CLIENT": py_client, "TASKSTREAM_E2E_PY_TASK": py_task},
        )
        for test in ("TestEveryVectorByteForByte", "TestEndToEndWithTheProcessor"):
            assert f"--- PASS: {test}" in output, output
        assert "--- SKIP" not in output, output

        # The Go executor's result, read back by the Python client.
        done = await outcome_of(settings, py_task)
        assert done.output["by"] == "go"
        assert done.output["ran"] == py_task

        example = await run_go(settings, "run", "./examples/readme")
        assert 'completed {"created":"john@example.com"}' in example.splitlines(), example
        processor.check()
    finally:
        await delay.stop()
        await processor.stop()
