"""``browser_automation`` and ``data_extraction`` (seed 001), over a driver you provide.

taskstream ships no browser: implement :class:`BrowserDriver` over the tool you use
(Playwright, Stagehand on Browserbase, Selenium, ...) and hand it to the handler::

    class PlaywrightDriver:
        def __init__(self, page):
            self.page = page

        async def navigate(self, url: str) -> None:
            await self.page.goto(url)

        async def click(self, selector: str | None, instruction: str | None) -> None:
            await self.page.click(selector)  # or ask your AI layer to act on `instruction`

        async def type(self, selector: str, text: str) -> None:
            await self.page.fill(selector, text)

        async def extract(self, instruction: str, selector: str | None) -> Any:
            return await self.page.inner_text(selector or "body")

        async def wait(self, ms: int) -> None:
            await self.page.wait_for_timeout(ms)

        async def screenshot(self, full_page: bool) -> bytes:
            return await self.page.screenshot(full_page=full_page)

    handler = BrowserAutomationHandler(lambda ctx: drivers[ctx.session_id])

The handler validates ``automationSteps`` (``schemas.task_configs``), runs them in order against
the driver and returns every step's result, the extracted data and the screenshots (PNG,
base64). The first failing step fails the task, naming the step. Extracted data must be JSON.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, runtime_checkable

from schemas.task_configs import AutomationStep, automation_steps, validate_task_config
from streams.executor.context import TaskContext
from streams.executor.errors import ExecutorError
from streams.executor.handlers.errors import (
    BrowserAutomationError,
    NoBrowserDriverError,
    TaskConfigError,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_SCREENSHOT_BYTES = 512 * 1024


@runtime_checkable
class BrowserDriver(Protocol):
    """One browser (page) the steps run against. Raise on failure; the message is reported."""

    async def navigate(self, url: str) -> None: ...

    async def click(self, selector: str | None, instruction: str | None) -> None:
        """Click ``selector``, or the element that ``instruction`` describes (AI drivers)."""
        ...

    async def type(self, selector: str, text: str) -> None: ...

    async def extract(self, instruction: str, selector: str | None) -> Any:
        """Data the ``instruction`` asks for (JSON-serialisable)."""
        ...

    async def wait(self, ms: int) -> None: ...

    async def screenshot(self, full_page: bool) -> bytes:
        """A PNG of the page."""
        ...


DriverFor: TypeAlias = Callable[[TaskContext], BrowserDriver | Awaitable[BrowserDriver]]
"""Picks the driver of a task, e.g. by ``ctx.session_id`` (one browser per session)."""


class BrowserAutomationHandler:
    """``handler(ctx)`` for ``browser_automation`` and ``data_extraction``.

    ``driver`` is a :class:`BrowserDriver`, or a function of the task that returns one (maybe
    awaitable). Without one, every task fails with a message saying so. Screenshots beyond
    ``max_screenshot_bytes`` in total are left out of the output (their step says so), so the
    result stays within the result size the processor accepts.
    """

    def __init__(
        self,
        driver: BrowserDriver | DriverFor | None = None,
        *,
        max_screenshot_bytes: int = DEFAULT_MAX_SCREENSHOT_BYTES,
    ) -> None:
        if max_screenshot_bytes < 0:
            raise ExecutorError("max_screenshot_bytes must not be negative")
        self._driver = driver
        self.max_screenshot_bytes = max_screenshot_bytes

    async def _driver_for(self, ctx: TaskContext) -> BrowserDriver:
        if self._driver is None:
            raise NoBrowserDriverError(
                f"{ctx.operation} needs a browser, and this executor has no BrowserDriver "
                "configured (pass one to builtin_handlers(..., browser_driver=...))"
            )
        if isinstance(self._driver, BrowserDriver):
            return self._driver
        found = self._driver(ctx)
        if inspect.isawaitable(found):
            found = await found
        return found

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        problems = validate_task_config("browser_automation", ctx.payload)
        if problems:
            raise TaskConfigError(f"invalid {ctx.operation} config: " + "; ".join(problems))
        steps = automation_steps(ctx.payload)
        driver = await self._driver_for(ctx)
        try:
            return await self._run_steps(ctx, driver, steps)
        finally:
            # A driver made for one task (a page of the session's browser) says so with
            # end_task(), called when the task ends, however it ends.
            end_task = getattr(driver, "end_task", None)
            if end_task is not None:
                ending = end_task()
                if inspect.isawaitable(ending):
                    await ending

    async def _run_steps(
        self, ctx: TaskContext, driver: BrowserDriver, steps: list[AutomationStep]
    ) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        extracted: list[dict[str, Any]] = []
        screenshots: list[dict[str, Any]] = []
        budget = self.max_screenshot_bytes
        for index, step in enumerate(steps):
            log.debug("%s task %s: step %d %s", ctx.operation, ctx.task_id, index, step.type)
            try:
                value = await _run(driver, step)
            except Exception as exc:
                detail = str(exc) or type(exc).__name__
                # The driver's own failure classes (the browser went away, ...) carry through.
                kind = type(exc) if isinstance(exc, BrowserAutomationError) else None
                raise (kind or BrowserAutomationError)(
                    f"step {index} ({step.type}) failed: {detail} "
                    f"({index} of {len(steps)} steps done)"
                ) from None
            result: dict[str, Any] = {"index": index, "type": step.type, "ok": True}
            if step.type == "extract":
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    raise BrowserAutomationError(
                        f"step {index} (extract) returned {type(value).__name__}, which is not JSON"
                    ) from None
                result["data"] = value
                extracted.append(
                    {"step": index, "instruction": step.config["instruction"], "data": value}
                )
            elif step.type == "screenshot":
                image = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else b""
                result["bytes"] = len(image)
                encoded = base64.b64encode(image).decode()
                if len(encoded) <= budget:
                    budget -= len(encoded)
                    result["screenshot"] = len(screenshots)
                    screenshots.append({"step": index, "png_base64": encoded})
                else:
                    result["omitted"] = "screenshot budget exceeded"
            results.append(result)
            ctx.report_progress((index + 1) / len(steps), f"step {index} {step.type} done")
        return {
            "operation": ctx.operation,
            "steps_run": len(results),
            "steps": results,
            "extracted": extracted,
            "screenshots": screenshots,
        }


async def _run(driver: BrowserDriver, step: AutomationStep) -> Any:
    config = step.config
    if step.type == "navigate":
        return await driver.navigate(config["url"])
    if step.type == "click":
        return await driver.click(config.get("selector") or None, config.get("instruction"))
    if step.type == "type":
        return await driver.type(config["selector"], config["text"])
    if step.type == "extract":
        return await driver.extract(config["instruction"], config.get("selector"))
    if step.type == "wait":
        return await driver.wait(int(config["ms"]))
    return await driver.screenshot(bool(config.get("fullPage", False)))
