"""The README's commands and code blocks are what users run, so a test runs them.

The Python blocks run as separate processes against the suite's broker with a processor and a
projector + view serving the same topics; the curl lines are run against that view.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from streams.distributor import Distributor
from streams.kafka.process import free_loopback_port
from streams.runtime import run_processor
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, flags=re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


@pytest.mark.smoke
def test_readme_gives_exactly_two_commands_and_ci_runs_the_test_command() -> None:
    commands = re.findall(r"```bash\n(.*?)```", section("The two commands"), flags=re.S)
    assert len(commands) == 2
    run, test = (c.strip() for c in commands)
    assert "taskstream run" in run
    assert "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TASKSTREAM_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
            "TASKSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "TASKSTREAM_PARTITIONS": str(settings.partitions),
            "TASKSTREAM_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "TASKSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
            "TASKSTREAM_DATA_DIR": str(settings.data_dir / "examples"),
        }
    )
    return env


async def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.smoke
async def test_readme_python_blocks_and_view_queries(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from api import service
    from streams.kafka.topics import ensure_topics

    port = free_loopback_port()
    settings = make_settings(
        http_port=port,
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=300,
        batch_window_ms=200,
    )
    await ensure_topics(settings)
    submit_block, outcomes_block, executor_block = blocks("python")
    assert "client.submit(" in submit_block and "outcomes(" in outcomes_block
    assert "Executor(" in executor_block
    files = {}
    for name, code in (
        ("submit", submit_block),
        ("outcomes", outcomes_block),
        ("executor", executor_block),
    ):
        files[name] = tmp_path / f"readme_{name}.py"
        files[name].write_text(code)
    env = _env(settings)

    stop = asyncio.Event()
    ready = asyncio.Event()
    processor = asyncio.create_task(
        run_processor(lambda s: Distributor(s), settings, stop=stop, ready=ready)
    )
    view = asyncio.create_task(service.run(settings))
    executor = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, polled below
        [sys.executable, str(files["executor"])],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.wait_for(ready.wait(), 60)
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:

            async def session_registered() -> bool:
                try:
                    answer = await http.get("/sessions/bb_session_12345")
                except httpx.HTTPError:
                    return False
                return answer.status_code == 200

            deadline = time.monotonic() + 60
            while not await session_registered():
                assert time.monotonic() < deadline, (
                    "the README executor never registered its session"
                )
                assert executor.poll() is None, (
                    executor.stdout.read().decode() if executor.stdout else ""
                )
                await asyncio.sleep(0.3)

            submitted = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, str(files["submit"])],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert submitted.returncode == 0, submitted.stderr
            assert "submitted readme-contact-1" in submitted.stdout
            assert "outcome completed" in submitted.stdout.splitlines()

            outcomes = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, str(files["outcomes"])],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert outcomes.returncode == 0, outcomes.stderr
            assert "completed readme-contact-1 1" in outcomes.stdout.splitlines()

            # The view shows the completed task; every curl line of the README answers 200 (202 for a command).
            async def task_completed() -> bool:
                answer = await http.get("/tasks/readme-contact-1")
                return answer.status_code == 200 and answer.json().get("state") == "completed"

            deadline = time.monotonic() + 30
            while not await task_completed():
                assert time.monotonic() < deadline, "the view never showed the task completed"
                await asyncio.sleep(0.2)

        for line in re.findall(r"^curl .*?(?=\s+#|$)", section("The HTTP view"), flags=re.M):
            argv = [a.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for a in shlex.split(line)]
            result = await asyncio.to_thread(
                subprocess.run,
                [*argv, "-o", "/dev/null", "-w", "%{http_code}"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            expected = "202" if " -X POST " in line else "200"  # commands are accepted
            assert result.stdout == expected, f"{line} -> {result.stdout} {result.stderr}"
    finally:
        executor.terminate()
        try:
            executor.wait(timeout=15)
        except subprocess.TimeoutExpired:
            executor.kill()
            executor.wait()
        stop.set()
        view.cancel()
        await asyncio.gather(processor, view, return_exceptions=True)
