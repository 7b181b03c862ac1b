"""The Playwright driver in Debian's Chromium (``/usr/bin/chromium``, never ``playwright
install``) against a local page on 127.0.0.1: the seed-001 steps (navigate, type, click, wait,
extract by selector, screenshot), the outbound guard on the browser's requests, a browser that
dies, a remote browser over CDP, and a browser task on the broker through an executor."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from schemas import events as ev
from streams.executor import Executor, SessionSpec, TaskContext
from streams.executor.errors import PermanentError, SessionFaultError
from streams.executor.handlers import (
    BrowserAutomationError,
    BrowserAutomationHandler,
    builtin_handlers,
)
from streams.executor.handlers.outbound import OutboundPolicy
from streams.executor.handlers.playwright_driver import (
    BrowserGoneError,
    BrowserStepError,
    BrowserTarget,
    PlaywrightBrowser,
)
from streams.settings import Settings

from .distributor_harness import Commands, InProcessProcessor, layout, submit, wait_for_events

CHROMIUM = Path("/usr/bin/chromium")
LOCAL = OutboundPolicy.parse("127.0.0.1")

PAGE = """<!doctype html>
<html><head><title>Signup</title></head>
<body>
  <h1 id="heading">Welcome</h1>
  <input id="name" placeholder="name">
  <button id="go" onclick="setTimeout(() => {
      document.getElementById('greeting').textContent =
        'Hello, ' + document.getElementById('name').value;
    }, 50)">Go</button>
  <p id="greeting"></p>
  <ul><li class="plan">Basic</li><li class="plan">Pro</li><li class="plan">Agency</li></ul>
</body></html>"""

STEPS: list[dict[str, Any]] = [
    {"type": "navigate", "config": {"url": "@/signup"}},
    {"type": "type", "config": {"selector": "#name", "text": "Ada"}},
    {"type": "click", "config": {"selector": "#go"}},
    {"type": "wait", "config": {"ms": 300}},
    {"type": "extract", "config": {"instruction": "the greeting", "selector": "#greeting"}},
    {"type": "extract", "config": {"instruction": "the plans", "selector": ".plan"}},
    {"type": "screenshot", "config": {"fullPage": True}},
]


def _require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium (see .ci/run)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright package is not installed (pip install 'taskstream[browser]')")


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async def signup(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/signup", signup)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[PlaywrightBrowser]:
    """One browser for the module's tests (each launch costs seconds); tests that kill it
    leave it to come back, as a worker's does."""
    _require_browser()
    chromium = PlaywrightBrowser(BrowserTarget.parse("chromium"), outbound=LOCAL)
    try:
        yield chromium
    finally:
        await chromium.close()


def steps(base: str, chosen: list[dict[str, Any]] = STEPS) -> list[dict[str, Any]]:
    out = []
    for step in chosen:
        config = dict(step["config"])
        if isinstance(config.get("url"), str):
            config["url"] = config["url"].replace("@", base, 1)
        out.append({"type": step["type"], "config": config})
    return out


def ctx(payload: dict[str, Any], session: str = "s-1", task: str = "t1") -> TaskContext:
    return TaskContext(
        task_id=task,
        client_id="acme",
        operation="browser_automation",
        payload=payload,
        attempt=0,
        fencing_token=1,
        session_id=session,
    )


def check_output(out: dict[str, Any]) -> None:
    assert out["steps_run"] == len(STEPS)
    assert [e["data"] for e in out["extracted"]] == ["Hello, Ada", ["Basic", "Pro", "Agency"]]
    (shot,) = out["screenshots"]
    png = base64.b64decode(shot["png_base64"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


async def test_a_browser_task_runs_its_steps_in_chromium(
    site: str, browser: PlaywrightBrowser
) -> None:
    handler = BrowserAutomationHandler(browser)
    out = await handler(ctx({"automationSteps": steps(site)}))
    check_output(out)
    # Without a selector, extract gives the page's title, URL and text.
    whole = await handler(
        ctx(
            {
                "automationSteps": steps(
                    site, [STEPS[0], {"type": "extract", "config": {"instruction": "the page"}}]
                )
            }
        )
    )
    data = whole["extracted"][0]["data"]
    assert data["title"] == "Signup" and data["url"] == f"{site}/signup"
    assert "Welcome" in data["text"]
    # Each task ran in a page of its own, closed when it ended; the session's context stays.
    context, _guard = browser._contexts["s-1"]
    assert context.pages == []


async def test_failures_name_the_step(site: str, browser: PlaywrightBrowser) -> None:
    handler = BrowserAutomationHandler(browser)
    with pytest.raises(BrowserAutomationError, match=r"step 1 \(extract\) failed: no element"):
        await handler(
            ctx(
                {
                    "automationSteps": steps(
                        site,
                        [
                            STEPS[0],
                            {
                                "type": "extract",
                                "config": {"instruction": "x", "selector": "#nope"},
                            },
                        ],
                    )
                }
            )
        )
    with pytest.raises(BrowserStepError, match="needs an AI driver") as info:
        await handler(
            ctx(
                {
                    "automationSteps": steps(
                        site,
                        [
                            STEPS[0],
                            {"type": "click", "config": {"instruction": "press the big button"}},
                        ],
                    )
                }
            )
        )
    assert isinstance(info.value, PermanentError)  # not retried


async def test_the_outbound_guard_refuses_loopback_unless_allowed(site: str) -> None:
    _require_browser()
    guarded = PlaywrightBrowser(BrowserTarget.parse("chromium"))  # public addresses only
    try:
        with pytest.raises(BrowserAutomationError, match="refused.*loopback") as info:
            await BrowserAutomationHandler(guarded)(ctx({"automationSteps": steps(site)}))
        assert isinstance(info.value, PermanentError)
    finally:
        await guarded.close()


async def test_a_browser_that_dies_is_the_sessions_fault_and_comes_back(
    site: str, browser: PlaywrightBrowser
) -> None:
    handler = BrowserAutomationHandler(browser)
    check_output(await handler(ctx({"automationSteps": steps(site)})))
    context, _guard = browser._contexts["s-1"]
    loaded = asyncio.Event()
    context.once("page", lambda page: page.once("load", lambda _: loaded.set()))
    long_wait = steps(site, [STEPS[0], {"type": "wait", "config": {"ms": 20_000}}])
    running = asyncio.create_task(handler(ctx({"automationSteps": long_wait})))
    await loaded.wait()  # the task navigated and now waits
    assert browser._browser is not None
    await browser._browser.close()  # as if it crashed
    with pytest.raises(BrowserGoneError, match="went away") as info:
        await running
    assert isinstance(info.value, SessionFaultError)  # the session's fault: its health drops
    out = await handler(ctx({"automationSteps": steps(site)}))  # a new browser
    check_output(out)


@contextlib.contextmanager
def remote_chromium(tmp_path: Path) -> Iterator[str]:
    """A Chromium serving the DevTools protocol on a free loopback port; its ws:// URL."""
    process = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={tmp_path / 'remote'}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                yield found.group(1)
                break
        else:
            raise AssertionError("chromium never said where DevTools listens")
    finally:
        process.kill()
        process.wait(timeout=10)


async def test_a_remote_browser_over_cdp(site: str, tmp_path: Path) -> None:
    _require_browser()
    with remote_chromium(tmp_path) as ws:
        remote = PlaywrightBrowser(BrowserTarget.parse(f"cdp:{ws}"), outbound=LOCAL)
        try:
            out = await BrowserAutomationHandler(remote)(ctx({"automationSteps": steps(site)}))
        finally:
            await remote.close()
    check_output(out)


def test_browser_targets_parse_or_say_what_is_expected() -> None:
    assert BrowserTarget.parse("chromium") == BrowserTarget("chromium", "/usr/bin/chromium")
    assert BrowserTarget.parse("chromium:/opt/c/chrome").where == "/opt/c/chrome"
    target = BrowserTarget.parse("cdp:wss://connect.example.com?apiKey=k3y")
    assert target.kind == "cdp" and "k3y" not in target.describe()
    from streams.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="expected chromium"):
        BrowserTarget.parse("firefox")
    with pytest.raises(ConfigurationError, match="ws:// or wss://"):
        BrowserTarget.parse("cdp:localhost:9222")
    with pytest.raises(ConfigurationError, match="no browser at /nonexistent"):
        BrowserTarget.parse("chromium:/nonexistent").check()


@pytest.mark.integration
async def test_a_browser_task_on_the_broker_returns_data_and_a_screenshot(
    make_settings: Callable[..., Settings], site: str, browser: PlaywrightBrowser
) -> None:
    settings = await layout(make_settings, outbound_allow="127.0.0.1")
    processor = await InProcessProcessor(settings).start()
    handlers = builtin_handlers(settings, browser_driver=browser)
    executor = Executor(
        settings,
        sessions=[SessionSpec("bb-1", "acme", "agent-1", max_concurrent=1)],
        handlers=dict(handlers),
    )
    try:
        await executor.start()
        async with Commands(settings) as commands:
            await commands.send(
                submit(
                    "acme",
                    "browse-1",
                    "browser_automation",
                    payload={"automationSteps": steps(site)},
                )
            )

        def completed(events: list[Any]) -> bool:
            return any(isinstance(e, ev.TaskCompleted) and e.task_id == "browse-1" for e in events)

        events = await wait_for_events(settings, completed, timeout_s=90)
    finally:
        await executor.stop()
        await processor.stop()
        await handlers.close()
    done = next(e for e in events if isinstance(e, ev.TaskCompleted) and e.task_id == "browse-1")
    check_output(dict(done.output))
