"""All handlers of the seed-001 task types, configured from ``Settings``.

    handlers = builtin_handlers(settings, browser_driver=my_driver)
    executor = Executor(settings, handlers={**ghl_handlers(), **handlers}, ...)
    ...
    await handlers.close()  # closes their HTTP sessions

notify_on_complete / notify_on_failure notices are not the handlers' business: the notifier part
sends one per task outcome (``streams.notifier``), whatever handler ran it. api_call, webhooks and ghl_action connect only
to public addresses and to those ``Settings.outbound_allow`` lists. ghl_action calls
GoHighLevel's v2 API with the task's client's credentials (``Settings.ghl_credentials_file``);
without that file its tasks fail permanently, saying so.
"""

from __future__ import annotations

from streams.executor.context import AsyncHandler
from streams.executor.handlers.api_call import ApiCallHandler
from streams.executor.handlers.browser import BrowserAutomationHandler, BrowserDriver, DriverFor
from streams.executor.handlers.ghl_action import GhlActionHandler
from streams.executor.handlers.http import HttpClient
from streams.executor.handlers.notification import NotificationHandler, WebhookNotifier
from streams.executor.handlers.outbound import OutboundPolicy
from streams.executor.handlers.report import Fetch, ReportGenerationHandler, ViewClient
from streams.settings import Settings


class BuiltinHandlers(dict[str, AsyncHandler]):
    """``operation -> handler``; ``await close()`` (or ``async with``) releases HTTP sessions."""

    def __init__(
        self, handlers: dict[str, AsyncHandler], api_call: ApiCallHandler, *http: HttpClient
    ):
        super().__init__(handlers)
        self._http = http
        self._api_call = api_call

    async def close(self) -> None:
        await self._api_call.close()
        for client in self._http:
            await client.close()

    async def __aenter__(self) -> BuiltinHandlers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def builtin_handlers(
    settings: Settings,
    *,
    browser_driver: BrowserDriver | DriverFor | None = None,
    fetch: Fetch | None = None,
) -> BuiltinHandlers:
    """Handlers for api_call, ghl_action, notification, reminder, report_generation,
    browser_automation and data_extraction.

    ``fetch`` replaces the HTTP view client of report_generation; ``browser_driver`` serves the
    browser types (without it they fail with a clear message).
    """
    outbound = OutboundPolicy.parse(settings.outbound_allow)
    http = HttpClient(outbound)
    # The report handler reads this service's own view, an address the operator configured
    # (usually loopback), never one from a payload: its client is not guarded.
    view_http = HttpClient(OutboundPolicy.open())
    notifier = WebhookNotifier(timeout_ms=settings.webhook_timeout_ms, http=http)
    api_call = ApiCallHandler(outbound)
    browser = BrowserAutomationHandler(browser_driver)
    raw: dict[str, AsyncHandler] = {
        "api_call": api_call,
        "ghl_action": GhlActionHandler.from_settings(settings, http),
        "notification": NotificationHandler(
            notifier, default_webhook_url=settings.notification_webhook_url
        ),
        "reminder": NotificationHandler(
            notifier, default_webhook_url=settings.notification_webhook_url, kind="reminder"
        ),
        "report_generation": ReportGenerationHandler(
            fetch if fetch is not None else ViewClient.from_settings(settings, view_http)
        ),
        "browser_automation": browser,
        "data_extraction": browser,
    }
    return BuiltinHandlers(raw, api_call, http, view_http)
