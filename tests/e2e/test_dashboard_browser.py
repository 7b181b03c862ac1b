"""The dashboard in a real browser: headless Chromium from Debian's ``chromium`` package,
driven by Playwright (never ``playwright install``: the system browser is used).

1. Against the running stack (processor, projector + view + gateway, demo and flaky
   executors): the token prompt, the numbers equal to ``/status``, a task submitted through the
   page's form appearing within 3 s and completing, a dead letter redriven from the page and
   completing, and screenshots at 1280×800 and 390×844 in ``artifacts/``.
2. Against an in-memory projection with no gateway: the clear messages when the gateway is
   missing, the projection is behind, the projector has stopped, or the view goes away.
"""

from __future__ import annotations

import contextlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from api.view import ViewServer, create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from streams.settings import Settings
from tests.support.view_scenario import scenario

from .stack import running_stack, stack_settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
TOKEN = "e2e-dashboard-token"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium (see .ci/run)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright package is not installed (pip install playwright)")


@contextlib.asynccontextmanager
async def browser_page(
    tmp_path: Path, viewport: dict[str, int], *, phone: bool = False
) -> AsyncIterator[tuple[Any, list[str]]]:
    """A page in a fresh Chromium profile; the list collects uncaught page errors."""
    from playwright.async_api import async_playwright

    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:8]}"
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport=viewport,  # type: ignore[arg-type]  # a ViewportSize TypedDict
            device_scale_factor=2 if phone else 1,
            is_mobile=phone,
            has_touch=phone,
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            await context.close()


async def _log_in(page: Any, base_url: str) -> None:
    from playwright.async_api import expect

    await page.goto(base_url + "/")
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#token-input", "not-the-token")
    await page.click("#login-button")
    await expect(page.locator("#login-error")).to_be_visible()  # refused, asked again
    await page.fill("#token-input", TOKEN)
    await page.click("#login-button")
    await expect(page.locator("#conn")).to_have_text("live")


async def _shown(page: Any) -> dict[str, list[str]]:
    return dict(
        await page.evaluate(
            """() => {
              const out = {};
              const add = (key, node) => (out[key] = out[key] || []).push(node.textContent);
              for (const n of document.querySelectorAll('[data-stat]')) add(n.dataset.stat, n);
              for (const n of document.querySelectorAll('[data-rate]'))
                add('rate.' + n.dataset.rate, n);
              for (const n of document.querySelectorAll('[data-priority]'))
                add('priority.' + n.dataset.priority, n);
              for (const n of document.querySelectorAll('[data-health]'))
                add('health.' + n.dataset.health, n);
              for (const n of document.querySelectorAll('[data-breaches]'))
                add('breaches.' + n.dataset.breaches, n);
              for (const n of document.querySelectorAll('[data-in-flight]'))
                add('in_flight.' + n.dataset.inFlight, n);
              return out;
            }"""
        )
    )


def _expected(status: dict[str, Any], sessions: list[dict[str, Any]]) -> dict[str, list[str]]:
    def n(value: int) -> str:
        return f"{value:,}"

    out: dict[str, list[str]] = {}
    for key in (
        "queue_length",
        "active_assignments",
        "active_batches",
        "active_sessions",
        "failed_tasks_awaiting_retry",
        "overdue_tasks",
        "sla_breaches",
        "tasks_total",
    ):
        out[key] = [n(status[key])]
    out["dead_letters"] = [n(status["dead_letters"])] * 2  # the status card and the DLQ title
    for key in ("batch_efficiency", "retry_rate", "session_utilisation"):
        rate = status[key]
        out[f"rate.{key}"] = ["–" if rate is None else f"{rate * 100:.1f} %"]
    for name, value in status["tasks_by_priority"].items():
        out[f"priority.{name}"] = [n(value)]
    for name, value in status["session_health"].items():
        out[f"health.{name}"] = [n(value)]
    for name, waits in status["wait_times"].items():
        out[f"breaches.{name}"] = [n(waits["sla_breaches"])]
    for s in sessions:
        out[f"in_flight.{s['session_id']}"] = [f"{s['in_flight']}/{s['max_concurrent']}"]
    return out


async def _numbers_equal_status(page: Any, read: Callable[[], Any]) -> None:
    """The page's figures equal /status (and /sessions) once both show the same moment; the
    page updates every second, so compare until they agree or the time is up."""
    import asyncio

    shown: dict[str, list[str]] = {}
    expected: dict[str, list[str]] = {}
    for _ in range(40):
        expected = await read()
        shown = await _shown(page)
        if shown == expected:
            return
        await asyncio.sleep(0.5)
    assert shown == expected


async def _no_horizontal_overflow(page: Any) -> None:
    """Nothing is wider than the window, and no table needs sideways scrolling either."""
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is wider than the window: {widths}"
    clipped = await page.evaluate(
        """() => Array.from(document.querySelectorAll('.scroll'))
              .filter((n) => n.scrollWidth > n.clientWidth + 1)
              .map((n) => n.closest('section').id)"""
    )
    assert clipped == [], f"tables wider than their card: {clipped}"


async def test_dashboard_against_the_running_stack(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    _require_browser()
    from playwright.async_api import expect

    settings = stack_settings(make_settings, TOKEN)
    ARTIFACTS.mkdir(exist_ok=True)
    async with running_stack(settings) as stack:
        ids = await stack.preload()

        async def read() -> dict[str, list[str]]:
            status = await stack.json("/status")
            sessions = (await stack.json("/sessions?state=active"))["items"]
            return _expected(status, sessions)

        async with browser_page(tmp_path, DESKTOP) as (page, errors):
            await _log_in(page, stack.base_url)
            await _numbers_equal_status(page, read)
            assert int((await _shown(page))["priority.low"][0]) == 3  # the idle client's tasks
            await expect(page.locator("#session-rows tr")).to_have_count(5)
            await expect(page.locator(f'[data-dead-letter="{ids["dead"]}"]')).to_be_visible()

            # Submit through the page's form: the task shows in the live tail within 3 s.
            await page.fill("#submit-form [name=client_id]", "client_acme_001")
            await page.fill("#submit-form [name=operation]", "contact_update")
            await page.select_option("#submit-form [name=priority]", "2")
            await page.fill("#submit-form [name=task_id]", "e2e-form-1")
            await page.fill("#submit-form [name=payload]", '{"contact": "ct_e2e"}')
            await page.click("#submit-button")
            await expect(page.locator("#submit-message")).to_have_text("Accepted: e2e-form-1")
            await expect(page.locator('[data-event-task="e2e-form-1"]').first).to_be_attached(
                timeout=3000
            )
            await expect(page.locator('[data-tracked-state="e2e-form-1"]')).to_have_text(
                "completed", timeout=20_000
            )
            assert await stack.task_state("e2e-form-1") == "completed"

            # Redrive the dead letter from the page: its redrive completes.
            await page.click(f'[data-redrive="{ids["dead"]}"]')
            await expect(page.locator("#dlq-message")).to_have_text(
                "Redrive accepted for 1 task(s)."
            )
            await expect(page.locator(f'[data-redrive-state="{ids["dead"]}"]')).to_have_text(
                "completed", timeout=30_000
            )
            await expect(page.locator(f'[data-tracked-state="{ids["dead"]}.r1"]')).to_have_text(
                "completed"
            )
            assert await stack.task_state(f"{ids['dead']}.r1") == "completed"
            assert stack.flaky.runs["dead-1"] == 2  # failed once, then the redrive succeeded
            await expect(page.locator(f'[data-redrive="{ids["dead"]}"]')).to_be_disabled()

            await _numbers_equal_status(page, read)
            await _no_horizontal_overflow(page)
            await page.evaluate("() => window.scrollTo(0, 0)")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-1280x800.png"))
            await page.screenshot(
                path=str(ARTIFACTS / "dashboard-1280x800-full.png"), full_page=True
            )
            assert errors == []

        async with browser_page(tmp_path, PHONE, phone=True) as (page, errors):
            await _log_in(page, stack.base_url)
            await _numbers_equal_status(page, read)
            await _no_horizontal_overflow(page)
            # One column: the cards sit under each other, each as wide as the page allows.
            boxes = [
                await page.locator(selector).bounding_box()
                for selector in ("#status-card", "#depth-card", "#dlq-card", "#submit-card")
            ]
            assert all(b is not None and b["width"] <= PHONE["width"] for b in boxes)
            assert [b["y"] for b in boxes if b] == sorted(b["y"] for b in boxes if b)
            await expect(page.locator(f'[data-redrive="{ids["dead"]}"]')).to_be_visible()
            await expect(page.locator("#submit-button")).to_be_visible()
            await page.evaluate("() => window.scrollTo(0, 0)")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-390x844.png"))
            await page.screenshot(
                path=str(ARTIFACTS / "dashboard-390x844-full.png"), full_page=True
            )
            assert errors == []


class _Source(MemorySource):
    alive = True
    behind = 0

    def lag(self) -> dict[int, int]:
        return {0: self.behind}

    def running(self) -> bool:
        return self.alive


async def test_dashboard_explains_what_is_wrong(tmp_path: Path) -> None:
    """No gateway, a projection that falls behind, a projector that stops, a view that goes."""
    _require_browser()
    from playwright.async_api import expect

    source = _Source()
    for event in scenario():
        source.feed(event)
    source.flush()
    server = ViewServer(create_app(ProjectionReader(source)), "127.0.0.1", 0)
    await server.start()
    try:
        async with browser_page(tmp_path, PHONE, phone=True) as (page, errors):
            await page.goto(f"http://127.0.0.1:{server.port}/")
            await expect(page.locator("#conn")).to_have_text("live")
            await expect(page.locator("#banner")).to_be_hidden()

            await page.click('[data-redrive="a-dead"]')
            await expect(page.locator("#dlq-message")).to_contain_text(
                "Redrive is not available here: POST /dlq/redrive answered 404"
            )
            await page.fill("#submit-form [name=client_id]", "c")
            await page.fill("#submit-form [name=operation]", "tag_add")
            await page.click("#submit-button")
            await expect(page.locator("#submit-message")).to_contain_text(
                "Submitting is not available here"
            )
            await page.fill("#submit-form [name=payload]", "[1, 2]")
            await page.click("#submit-button")
            await expect(page.locator("#submit-message")).to_contain_text("must be a JSON object")

            source.behind = 5000
            await expect(page.locator("#banner")).to_contain_text("5000 events behind")
            await expect(page.locator("#conn")).to_have_text("behind")

            source.alive = False
            await expect(page.locator("#banner")).to_contain_text("The projector has stopped")
            await expect(page.locator("#conn")).to_have_text("projector stopped")

            await server.stop()
            await expect(page.locator("#banner")).to_contain_text(
                "Lost the live connection", timeout=10_000
            )
            assert errors == []
    finally:
        await server.stop()
