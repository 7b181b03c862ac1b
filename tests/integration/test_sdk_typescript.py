"""The TypeScript SDK (sdks/typescript) against the suite's broker and the Python processor:
`npm ci` (when node_modules is missing or older than the lock file) and `npm test`, which
checks every shared vector and, with KAFKA_BOOTSTRAP_SERVERS set, runs its end-to-end test:
the TypeScript client submits, the TypeScript executor runs the work, outcomes arrive, a task
submitted by the Python SDK runs on the TypeScript executor. Then the README's TypeScript
example, which must be the file examples/readme.ts, runs and prints its task's output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.integration.distributor_harness import layout

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdks" / "typescript"
NPM = shutil.which("npm")
NODE = shutil.which("node")


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    assert settings.kafka_bootstrap_servers is not None
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        TASKSTREAM_TOPIC_PREFIX=settings.topic_prefix,
        TASKSTREAM_PARTITIONS=str(settings.partitions),
        TASKSTREAM_TICK_INTERVAL_MS=str(settings.tick_interval_ms),
        TASKSTREAM_PYTHON=sys.executable,
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture
def stack(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The processor and a delay agent as OS processes of this test, stopped by PID."""
    import asyncio

    settings = asyncio.run(layout(make_settings))
    env = _env(settings)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for part in ("processor", "delay"):
            part_env = {**env, "TASKSTREAM_DATA_DIR": str(tmp_path / part)}
            log = open(tmp_path / f"{part}.log", "ab")  # noqa: SIM115 - handed to the child
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "streams.cli", part],
                    cwd=ROOT,
                    env=part_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield env
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _npm_ci_needed() -> bool:
    modules = SDK / "node_modules" / ".package-lock.json"
    return (
        not modules.exists()
        or modules.stat().st_mtime < (SDK / "package-lock.json").stat().st_mtime
    )


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## TypeScript SDK", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```ts\n(.*?)```", section, re.S)
    assert blocks, "README's TypeScript SDK section has no ```ts block"
    return str(blocks[0])


def test_readme_example_is_the_example_file() -> None:
    assert _readme_example() == (SDK / "examples" / "readme.ts").read_text()


@pytest.mark.skipif(
    NPM is None or NODE is None, reason="node and npm are needed for the TypeScript SDK"
)
def test_typescript_sdk_against_the_processor(stack: dict[str, str]) -> None:
    assert NPM is not None and NODE is not None
    if _npm_ci_needed():
        subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=SDK, check=True, timeout=300)
    tests = subprocess.run(
        [NPM, "test"], cwd=SDK, env=stack, capture_output=True, text=True, timeout=600
    )
    report = tests.stdout + tests.stderr
    assert tests.returncode == 0, report[-6000:]
    # Nothing failed, and the end-to-end suite ran: skipped (no broker), it lists no subtests.
    assert "# fail 0" in report
    assert re.search(
        r"^\s*ok \d+ - a task submitted by the Python SDK runs on the TypeScript", report, re.M
    )

    example = subprocess.run(
        [NODE, "dist/examples/readme.js"],
        cwd=SDK,
        env=stack,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert example.returncode == 0, example.stdout + example.stderr
    task_id, _, output = example.stdout.strip().splitlines()[-1].partition(": ")
    assert task_id
    assert json.loads(output) == {"contact_id": "ct_ada@example.com"}
