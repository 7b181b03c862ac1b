"""A Playwright :class:`BrowserDriver`: the seed-001 steps in a real Chromium.

    browser = PlaywrightBrowser(BrowserTarget.parse("chromium"))      # Debian's /usr/bin/chromium
    browser = PlaywrightBrowser(BrowserTarget.parse("cdp:wss://connect.example/?session=..."))
    handlers = builtin_handlers(settings, browser_driver=browser)
    ...
    await browser.close()

``chromium`` launches a local headless Chromium (``chromium:/path/to/chrome`` names another
binary; the default is ``/usr/bin/chromium``, Debian's package, so ``playwright install`` is
never needed). ``cdp:ws://...`` connects to a running browser over the Chrome DevTools Protocol,
e.g. a Browserbase session's connect URL. Each taskstream session gets a browser context of its
own (cookies and logins survive between its tasks); each task runs in a new page (tab) of its
session's context, closed when the task ends. Over CDP the remote browser's default context is
used, as remote browser services expect.

Steps: ``navigate`` (``page.goto``), ``click`` (a CSS/Playwright selector; a click by
``instruction`` alone needs an AI driver and fails saying so), ``type`` (``fill``), ``extract``
(the inner text of the selector's element, a list when it matches several; without a selector,
the page's title, URL and text), ``wait`` and ``screenshot`` (PNG). Every request the page makes,
sub-resources and redirects included, passes the outbound guard (``TASKSTREAM_OUTBOUND_ALLOW``):
a navigation to a loopback, private or link-local address fails unless it is allowed. The
check resolves names in Python before the browser resolves them again, so a name whose answer
changes in between (DNS rebinding) is not caught; route the browser through a filtering proxy
where that matters.

A browser that dies (crash, closed CDP connection) is launched or connected again for the next
task; the task that saw it die fails with :class:`BrowserGoneError`, a ``SessionFaultError``
(retried, the session's health drops); an instruction-only click and a refused navigation are
``PermanentError`` (not retried).
Playwright is the ``browser`` extra: ``pip install 'taskstream[browser]'``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from streams.errors import ConfigurationError
from streams.executor.context import TaskContext
from streams.executor.errors import PermanentError, SessionFaultError
from streams.executor.handlers.errors import BrowserAutomationError
from streams.executor.handlers.outbound import OutboundPolicy

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright, Route

log = logging.getLogger(__name__)

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
DEFAULT_ACTION_TIMEOUT_MS = 30_000
MAX_EXTRACT_CHARS = 20_000
PROBE_TIMEOUT_S = 5.0
CHROMIUM_FLAGS = (
    "--no-sandbox",  # workers often run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
INSTALL_HINT = (
    "the browser driver needs Playwright: pip install 'taskstream[browser]' "
    "(and a Chromium: apt-get install chromium, or --browser cdp:ws://... for a remote browser; "
    "`playwright install` is not needed)"
)


class BrowserGoneError(BrowserAutomationError, SessionFaultError):
    """The session's browser died or its connection closed during the task: the session's
    fault, not the task's (retried, and the session's health drops). The next task gets a new
    browser."""


class BrowserStepError(BrowserAutomationError, PermanentError):
    """A step this driver cannot run as given (a click by instruction alone): not retried."""


class BrowserRefusedError(BrowserAutomationError, PermanentError):
    """A navigation the outbound guard refused: not retried."""


def require_playwright() -> None:
    """Raise ``ConfigurationError`` saying how to install Playwright when it is missing."""
    if importlib.util.find_spec("playwright") is None:
        raise ConfigurationError(INSTALL_HINT)


@dataclass(frozen=True)
class BrowserTarget:
    """Where the browser comes from: ``chromium[:PATH]`` or ``cdp:WS_URL``."""

    kind: str
    where: str

    @classmethod
    def parse(cls, text: str) -> BrowserTarget:
        name, _, rest = text.partition(":")
        if name == "chromium":
            path = Path(rest) if rest else DEFAULT_CHROMIUM
            return cls("chromium", str(path))
        if name == "cdp":
            if not rest.startswith(("ws://", "wss://", "http://", "https://")):
                raise ConfigurationError(
                    f"--browser {text!r}: cdp: needs the browser's ws:// or wss:// URL "
                    "(e.g. a Browserbase connect URL), or http://host:port of its DevTools"
                )
            return cls("cdp", rest)
        raise ConfigurationError(
            f"--browser {text!r}: expected chromium, chromium:/path/to/binary or cdp:ws://..."
        )

    def check(self) -> None:
        """Fail at start when the local binary is missing."""
        if self.kind == "chromium" and not Path(self.where).exists():
            raise ConfigurationError(
                f"--browser chromium: no browser at {self.where} (apt-get install chromium, or "
                "give chromium:/path/to/binary)"
            )

    def describe(self) -> str:
        if self.kind == "chromium":
            return f"chromium {self.where}"
        parts = urlsplit(self.where)
        return f"cdp {parts.scheme}://{parts.hostname}"  # the URL may carry an API key


class _Guard:
    """Checks each request of a page against the outbound policy (after DNS resolution)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self.refused: dict[str, str] = {}

    async def _why(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            return None
        host = parts.hostname
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, parts.port or 443, type=socket.SOCK_STREAM
                )
            except OSError:
                return None  # the browser reports the unresolvable name itself
            addresses = [str(info[4][0]) for info in infos]
        for address in addresses:
            refused = self.policy.refusal(address)
            if refused is not None:
                return str(refused)
        return None

    async def route(self, route: Route) -> None:
        url = route.request.url
        why = await self._why(url)
        if why is None:
            await route.continue_()
            return
        self.refused[url] = why
        log.warning("browser request refused by the outbound guard: %s", why)
        await route.abort("blockedbyclient")


class PageDriver:
    """One task's page; a :class:`BrowserDriver`. ``end_task()`` closes the page."""

    def __init__(self, page: Page, guard: _Guard, browser: PlaywrightBrowser) -> None:
        self.page = page
        self._guard = guard
        self._browser = browser
        self.crashed = False
        page.on("crash", self._on_crash)

    def _on_crash(self, _page: Any) -> None:
        self.crashed = True

    async def _do(self, what: str, action: Any) -> Any:
        try:
            return await action
        except Exception:
            if not await self._alive():
                raise BrowserGoneError(
                    f"the browser went away during {what} ({self._browser.target.describe()})"
                ) from None
            raise

    async def _alive(self) -> bool:
        """Whether the page still answers: a failed step may be the page's fault or the sign
        of a dead browser (whose disconnect event can come after the step's error)."""
        if self._browser.gone or self.page.is_closed() or self.crashed:
            return False
        try:
            # A round trip to the browser itself, not to the page's (maybe navigating) document.
            await asyncio.wait_for(self.page.context.cookies(), PROBE_TIMEOUT_S)
        except TimeoutError:
            return True  # busy, not gone
        except Exception:
            return False
        return True

    async def navigate(self, url: str) -> None:
        try:
            await self.page.goto(url, wait_until="load")
        except Exception as exc:
            why = self._guard.refused.get(url)
            if why is not None:
                raise BrowserRefusedError(f"navigate to {url} refused: {why}") from None
            if not await self._alive():
                raise BrowserGoneError(
                    f"the browser went away during navigate ({self._browser.target.describe()})"
                ) from None
            raise BrowserAutomationError(_first_line(exc)) from None

    async def click(self, selector: str | None, instruction: str | None) -> None:
        if not selector:
            raise BrowserStepError(
                f"click by instruction ({instruction!r}) needs an AI driver: the Playwright "
                "driver clicks a selector (give config.selector)"
            )
        await self._step("click", self.page.click(selector))

    async def type(self, selector: str, text: str) -> None:
        await self._step("type", self.page.fill(selector, text))

    async def extract(self, instruction: str, selector: str | None) -> Any:
        if selector:
            texts = await self._step("extract", self.page.locator(selector).all_inner_texts())
            if not texts:
                raise BrowserAutomationError(f"no element matches {selector!r}")
            clipped = [t[:MAX_EXTRACT_CHARS] for t in texts]
            return clipped[0] if len(clipped) == 1 else clipped
        title = await self._step("extract", self.page.title())
        text = await self._step("extract", self.page.inner_text("body"))
        return {"title": title, "url": self.page.url, "text": text[:MAX_EXTRACT_CHARS]}

    async def wait(self, ms: int) -> None:
        await self._step("wait", self.page.wait_for_timeout(ms))

    async def screenshot(self, full_page: bool) -> bytes:
        image: bytes = await self._step(
            "screenshot", self.page.screenshot(full_page=full_page, type="png")
        )
        return image

    async def _step(self, what: str, action: Any) -> Any:
        try:
            return await self._do(what, action)
        except BrowserAutomationError:
            raise
        except Exception as exc:
            raise BrowserAutomationError(_first_line(exc)) from None

    async def end_task(self) -> None:
        if not self.page.is_closed():
            try:
                await self.page.close()
            except Exception as exc:  # the browser may be gone already
                log.debug("closing a page failed: %s", exc)


def _first_line(exc: BaseException) -> str:
    """Playwright's messages carry a multi-line call log; the first line says what failed."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class PlaywrightBrowser:
    """One browser for the executor, a context per session; use it as ``browser_driver``
    (it is a ``DriverFor``: ``await browser(ctx)`` returns the task's :class:`PageDriver`)."""

    def __init__(
        self,
        target: BrowserTarget,
        *,
        outbound: OutboundPolicy | None = None,
        action_timeout_ms: int = DEFAULT_ACTION_TIMEOUT_MS,
        headless: bool = True,
    ) -> None:
        require_playwright()
        self.target = target
        self.outbound = outbound if outbound is not None else OutboundPolicy()
        self.action_timeout_ms = action_timeout_ms
        self.headless = headless
        self.gone = False
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._contexts: dict[str, tuple[BrowserContext, _Guard]] = {}
        self._lock = asyncio.Lock()

    async def _ensure(self) -> Browser:
        async with self._lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            from playwright.async_api import async_playwright

            self._contexts.clear()
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            chromium = self._playwright.chromium
            if self.target.kind == "chromium":
                browser = await chromium.launch(
                    executable_path=self.target.where,
                    headless=self.headless,
                    args=list(CHROMIUM_FLAGS),
                )
            else:
                browser = await chromium.connect_over_cdp(self.target.where)
            browser.on("disconnected", self._on_disconnected)
            log.info("browser ready: %s (%s)", self.target.describe(), browser.version)
            self._browser = browser
            self.gone = False
            return browser

    def _on_disconnected(self, _browser: Any) -> None:
        self.gone = True
        log.warning(
            "the browser disconnected (%s); the next task starts another", self.target.describe()
        )

    async def _context(self, key: str) -> tuple[BrowserContext, _Guard]:
        browser = await self._ensure()
        found = self._contexts.get(key)
        if found is not None:
            return found
        if self.target.kind == "cdp" and browser.contexts:
            context = browser.contexts[0]
        else:
            context = await browser.new_context()
        context.set_default_timeout(self.action_timeout_ms)
        guard = _Guard(self.outbound)
        await context.route("**/*", guard.route)
        self._contexts[key] = (context, guard)
        return context, guard

    async def __call__(self, ctx: TaskContext) -> PageDriver:
        # Over CDP every session shares the remote browser's default context.
        key = "cdp" if self.target.kind == "cdp" else (ctx.session_id or "pool")
        context, guard = await self._context(key)
        try:
            page = await context.new_page()
        except Exception as exc:
            if self.gone:
                raise BrowserGoneError(f"the browser went away: {_first_line(exc)}") from None
            raise
        return PageDriver(page, guard, self)

    async def close(self) -> None:
        async with self._lock:
            browser, self._browser = self._browser, None
            self._contexts.clear()
            if browser is not None:
                try:
                    await browser.close()
                except Exception as exc:
                    log.debug("closing the browser failed: %s", exc)
            if self._playwright is not None:
                await self._playwright.stop()
                self._playwright = None
