"""Handlers shipped with taskstream: a simulated GHL CRM (seed 000 operations) and the seed-001
task types (api_call, ghl_action, notification, reminder, report_generation,
browser_automation, data_extraction); ``builtin_handlers(settings)`` builds the latter."""

from streams.executor.handlers.api_call import ApiCallHandler, validate_api_call_config
from streams.executor.handlers.browser import BrowserAutomationHandler, BrowserDriver, DriverFor
from streams.executor.handlers.builtin import BuiltinHandlers, builtin_handlers
from streams.executor.handlers.errors import (
    BrowserAutomationError,
    GhlActionError,
    NoBrowserDriverError,
    NotificationError,
    OutboundRefusedError,
    ReportError,
    TaskConfigError,
)
from streams.executor.handlers.ghl import SimulatedGhlHandler, ghl_handlers
from streams.executor.handlers.ghl_action import GhlActionHandler
from streams.executor.handlers.http import HttpClient
from streams.executor.handlers.notification import NotificationHandler, WebhookNotifier
from streams.executor.handlers.notify import Notifier, with_notifications
from streams.executor.handlers.outbound import OutboundPolicy
from streams.executor.handlers.report import (
    Fetch,
    ReportGenerationHandler,
    ViewClient,
    execution_stats,
    task_summary,
)

__all__ = [
    "ApiCallHandler",
    "BrowserAutomationError",
    "BrowserAutomationHandler",
    "BrowserDriver",
    "BuiltinHandlers",
    "DriverFor",
    "Fetch",
    "GhlActionError",
    "GhlActionHandler",
    "HttpClient",
    "NoBrowserDriverError",
    "NotificationError",
    "NotificationHandler",
    "Notifier",
    "OutboundPolicy",
    "OutboundRefusedError",
    "ReportError",
    "ReportGenerationHandler",
    "SimulatedGhlHandler",
    "TaskConfigError",
    "ViewClient",
    "WebhookNotifier",
    "builtin_handlers",
    "execution_stats",
    "ghl_handlers",
    "task_summary",
    "validate_api_call_config",
    "with_notifications",
]
