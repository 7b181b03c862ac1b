"""Handlers shipped with taskstream: GoHighLevel v2 handlers for the seed-000 operations that
have an API (``ghl_api_handlers``), a simulated GHL CRM for demos, and the seed-001 task types
(api_call, ghl_action, notification, reminder, report_generation, browser_automation,
data_extraction); ``builtin_handlers(settings)`` builds the latter."""

from streams.executor.handlers.api_call import ApiCallHandler, validate_api_call_config
from streams.executor.handlers.browser import BrowserAutomationHandler, BrowserDriver, DriverFor
from streams.executor.handlers.builtin import BuiltinHandlers, builtin_handlers
from streams.executor.handlers.errors import (
    BrowserAutomationError,
    GhlActionError,
    GhlPermanentError,
    GhlRetryableError,
    NoBrowserDriverError,
    NotificationError,
    OutboundRefusedError,
    ReportError,
    TaskConfigError,
)
from streams.executor.handlers.ghl import SimulatedGhlHandler, ghl_handlers
from streams.executor.handlers.ghl_action import GhlActionHandler
from streams.executor.handlers.ghl_api import GhlApiHandler, ghl_api_handlers
from streams.executor.handlers.ghl_credentials import GhlAccount, GhlCredentials
from streams.executor.handlers.http import HttpClient
from streams.executor.handlers.notification import NotificationHandler, WebhookNotifier
from streams.executor.handlers.outbound import OutboundPolicy
from streams.executor.handlers.report import (
    Fetch,
    ReportGenerationHandler,
    ViewClient,
    execution_stats,
    task_summary,
    webhook_activity,
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
    "GhlAccount",
    "GhlActionHandler",
    "GhlApiHandler",
    "GhlCredentials",
    "GhlPermanentError",
    "GhlRetryableError",
    "HttpClient",
    "NoBrowserDriverError",
    "NotificationError",
    "NotificationHandler",
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
    "ghl_api_handlers",
    "ghl_handlers",
    "task_summary",
    "validate_api_call_config",
    "webhook_activity",
]
