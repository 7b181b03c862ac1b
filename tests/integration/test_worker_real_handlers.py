"""``taskstream worker --ghl --browser chromium``: the command line runs real handlers. A GHL
task goes to a local fake of HighLevel's v2 API with its client's token, and a browser task
runs in Debian's Chromium against a local page and returns the extracted data and a
screenshot; the worker stops cleanly on SIGTERM and never prints a token. Mistakes in the
flags are one clear line."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from schemas import events as ev
from streams.settings import Settings
from tests.support.cli import assert_one_clear_line, run_cli

from ..support.ghl_fake import GhlFake
from .distributor_harness import Commands, InProcessProcessor, layout, submit, wait_for_events

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "pit-acme-91c0ffee"
PAGE = """<!doctype html><title>Plans</title>
<input id="q"><button id="go" onclick="document.getElementById('out').textContent =
  'Found ' + document.getElementById('q').value">Go</button><p id="out"></p>"""


def _require_browser() -> None:
    if not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
        pytest.skip("needs /usr/bin/chromium and playwright (see .ci/run)")


@pytest.fixture
async def page_url() -> AsyncIterator[str]:
    async def plans(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/plans", plans)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/plans"
    finally:
        await runner.cleanup()


def test_worker_flags_refuse_mistakes_in_one_line(tmp_path: Path) -> None:
    result = run_cli("worker", "--browser", "firefox", "--session", "s:c", cwd=tmp_path)
    assert_one_clear_line(result, "--browser", "expected chromium")
    result = run_cli("worker", "--ghl", "--session", "s:c", cwd=tmp_path)
    assert_one_clear_line(result, "TASKSTREAM_GHL_CREDENTIALS_FILE")
    bad = tmp_path / "ghl.toml"
    bad.write_text('[acme]\nlocation_id = "loc"\n')
    result = run_cli(
        "worker",
        "--ghl",
        "--session",
        "s:acme",
        cwd=tmp_path,
        env={"TASKSTREAM_GHL_CREDENTIALS_FILE": str(bad)},
    )
    assert_one_clear_line(result, "client 'acme'", "token is required")
    result = run_cli(
        "worker", "--browser", "chromium:/nonexistent/chrome", "--session", "s:c", cwd=tmp_path
    )
    assert_one_clear_line(result, "no browser at /nonexistent/chrome")


@pytest.mark.integration
async def test_worker_runs_ghl_and_browser_tasks_from_the_command_line(
    make_settings: Callable[..., Settings], page_url: str, tmp_path: Path
) -> None:
    _require_browser()
    fake = await GhlFake({"acme": ("loc_acme", TOKEN)}).start()
    credentials = tmp_path / "ghl.toml"
    credentials.write_text(f'[acme]\nlocation_id = "loc_acme"\ntoken = "{TOKEN}"\n')
    credentials.chmod(0o600)
    settings = await layout(make_settings)
    processor = await InProcessProcessor(settings).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TASKSTREAM_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers or "",
        TASKSTREAM_TOPIC_PREFIX=settings.topic_prefix,
        TASKSTREAM_PARTITIONS=str(settings.partitions),
        TASKSTREAM_DATA_DIR=str(tmp_path / "worker-data"),
        TASKSTREAM_GHL_CREDENTIALS_FILE=str(credentials),
        TASKSTREAM_GHL_BASE_URL=fake.url,
        TASKSTREAM_OUTBOUND_ALLOW="127.0.0.1",
    )
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, stopped below
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--ghl",
                "--builtin",
                "--browser",
                "chromium",
                "--session",
                "bb-1:acme:1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    steps: list[dict[str, Any]] = [
        {"type": "navigate", "config": {"url": page_url}},
        {"type": "type", "config": {"selector": "#q", "text": "agency"}},
        {"type": "click", "config": {"selector": "#go"}},
        {"type": "extract", "config": {"instruction": "the result", "selector": "#out"}},
        {"type": "screenshot", "config": {}},
    ]
    try:
        async with Commands(settings) as commands:
            await commands.send(
                submit(
                    "acme", "cli-tag", "tag_add", payload={"contactId": "ct_1", "tags": ["vip"]}
                ),
                submit(
                    "acme", "cli-browse", "browser_automation", payload={"automationSteps": steps}
                ),
            )

        def both_completed(events: list[Any]) -> bool:
            done = {e.task_id for e in events if isinstance(e, ev.TaskCompleted)}
            return {"cli-tag", "cli-browse"} <= done or worker.poll() is not None

        events = await wait_for_events(settings, both_completed, timeout_s=120)
        assert worker.poll() is None, log.read_text()
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 60)
        await processor.stop()
        await fake.stop()
    done = {e.task_id: e for e in events if isinstance(e, ev.TaskCompleted)}
    assert done["cli-tag"].output["contact_id"] == "ct_1"
    (call,) = fake.calls
    assert (call.client, call.method, call.path) == ("acme", "POST", "/contacts/ct_1/tags")
    browse = done["cli-browse"].output
    assert [e["data"] for e in browse["extracted"]] == ["Found agency"]
    png = base64.b64decode(browse["screenshots"][0]["png_base64"])
    assert png.startswith(b"\x89PNG")
    text = log.read_text()
    assert code == 0, text
    assert TOKEN not in text
    assert TOKEN not in json.dumps([e.model_dump(mode="json") for e in events])
