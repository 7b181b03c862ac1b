"""Configuration rules of the seed-001 task types, checked before a task runs.

``validate_task_config(operation, payload)`` returns every problem of a payload, each starting
with the field it is about (``"apiEndpoint: required"``), and ``[]`` when the payload is fine.
It is pure and fast (standard library and pydantic only), so the decider can call it at submit
time and the handlers can call it again before they act.

Task types and their payload fields (camelCase, as in seed 001):

``api_call``
    apiEndpoint (http(s) URL), apiMethod, apiPayload, customHeaders, authType
    (none | bearer | api_key | basic) with bearerToken / apiKey (+ apiKeyHeader) /
    username + password, timeout (ms).
``ghl_action``
    ghlAction in add_contact (email or phone), update_contact (contactId), send_sms
    (contactId, message), create_opportunity (pipelineId, stageId, title, contactId; status
    open | won | lost | abandoned; monetaryValue >= 0), add_tag (contactId, tags: non-empty
    list of strings).
    Optional locationId, customFields (object).
``notification``
    message, and webhookUrl (http(s) URL) or recipient.
``reminder``
    reminderTime (ISO-8601 date-time with a timezone), reminderMessage, and optionally
    webhookUrl or recipient. The submitter maps reminderTime to ``SubmitTask.scheduled_for_ms``
    (see :func:`reminder_time_ms`); the processor then delivers the task at that time.
``report_generation``
    reportType in task_summary | execution_stats | webhook_activity; optional dateFrom / dateTo
    (ISO dates or date-times; the seed's startDate / endDate are accepted as the same fields),
    from <= to; optional clientId / operation filters; optional sendNotification (boolean):
    the finished report goes as a notice to notifyWebhookUrl (then required), as if
    notifyOnComplete and notifyOnFailure were true.
``browser_automation``, ``data_extraction``
    automationSteps: a non-empty list of ``{"type": ..., "config": {...}}`` with type in
    navigate (url), click (selector or instruction), type (selector, text), extract
    (instruction), wait (ms or duration > 0, milliseconds), screenshot (no config needed).

Every operation takes notify_on_complete / notify_on_failure (booleans; the seed's
notifyOnComplete / notifyOnFailure are the same fields) with notifyWebhookUrl, required when
either is true: one notice of the task's final outcome (``streams.domain.notices``). Otherwise
operations that are not seed-001 task types (the GHL operations of seed 000 and anything else)
take any payload: the catalog decides whether they exist.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AUTH_TYPES",
    "GHL_ACTIONS",
    "HTTP_METHODS",
    "MAX_STEPS",
    "MAX_TIMEOUT_MS",
    "MAX_WAIT_MS",
    "OPPORTUNITY_STATUSES",
    "REPORT_TYPES",
    "SEND_NOTIFICATION",
    "STEP_TYPES",
    "TASK_TYPES",
    "AutomationStep",
    "automation_steps",
    "notify_flags",
    "parse_instant",
    "report_range",
    "reminder_time_ms",
    "validate_task_config",
]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
AUTH_TYPES = ("none", "bearer", "api_key", "basic")
MAX_TIMEOUT_MS = 3_600_000
GHL_ACTIONS = ("add_contact", "update_contact", "send_sms", "create_opportunity", "add_tag")
OPPORTUNITY_STATUSES = ("open", "won", "lost", "abandoned")
REPORT_TYPES = ("task_summary", "execution_stats", "webhook_activity")
STEP_TYPES = ("navigate", "click", "type", "extract", "wait", "screenshot")
MAX_STEPS = 200
MAX_WAIT_MS = 600_000
TASK_TYPES = (
    "api_call",
    "ghl_action",
    "notification",
    "reminder",
    "report_generation",
    "browser_automation",
    "data_extraction",
)


# -- small checks -------------------------------------------------------------------------


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _url_problem(field: str, value: Any) -> str | None:
    """The problem of a required http(s) URL field, or None when it is fine."""
    if value is None or value == "":
        return f"{field}: required"
    if not isinstance(value, str):
        return f"{field}: must be a string URL"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"{field}: not a valid URL"
    if parts.scheme not in ("http", "https"):
        return f"{field}: must be an http:// or https:// URL"
    if not parts.hostname:
        return f"{field}: has no host"
    return None


def _required_str(payload: Mapping[str, Any], field: str, problems: list[str]) -> None:
    if not _nonempty_str(payload.get(field)):
        problems.append(f"{field}: required (a non-empty string)")


def _optional_str(payload: Mapping[str, Any], field: str, problems: list[str]) -> None:
    value = payload.get(field)
    if value is not None and not isinstance(value, str):
        problems.append(f"{field}: must be a string")


def parse_instant(value: Any, *, end_of_day: bool = False) -> datetime | None:
    """An ISO-8601 date or date-time as an aware UTC datetime; None when it is not one.

    A bare date means the start of that day (UTC), or with ``end_of_day`` the start of the next
    day, so a ``dateTo`` date includes the whole day. A date-time without a timezone is UTC.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _has_timezone(value: str) -> bool:
    try:
        return datetime.fromisoformat(value.strip()).tzinfo is not None
    except ValueError:
        return False


# -- common fields ------------------------------------------------------------------------

_NOTIFY_FIELDS = (
    ("notify_on_complete", "notifyOnComplete"),
    ("notify_on_failure", "notifyOnFailure"),
)


SEND_NOTIFICATION = "sendNotification"
"""A ``report_generation`` field (seed 001): send the finished report, i.e. notify on
completion and on failure."""


def notify_flags(payload: Mapping[str, Any], operation: str | None = None) -> tuple[bool, bool]:
    """(notify on complete, notify on failure), reading either spelling of each flag; for a
    ``report_generation`` task ``sendNotification: true`` sets both."""
    flags = []
    for snake, camel in _NOTIFY_FIELDS:
        value = payload.get(snake, payload.get(camel))
        flags.append(value is True)
    if operation == "report_generation" and payload.get(SEND_NOTIFICATION) is True:
        return True, True
    return flags[0], flags[1]


def _check_common(payload: Mapping[str, Any], problems: list[str]) -> None:
    wanted = False
    for snake, camel in _NOTIFY_FIELDS:
        for name in (snake, camel):
            value = payload.get(name)
            if value is not None and not isinstance(value, bool):
                problems.append(f"{name}: must be true or false")
            wanted = wanted or value is True
    url = payload.get("notifyWebhookUrl")
    if wanted or url is not None:
        problem = _url_problem("notifyWebhookUrl", url)
        if problem is not None:
            if problem.endswith(": required"):
                problem += " when notify_on_complete or notify_on_failure is true"
            problems.append(problem)


# -- api_call -----------------------------------------------------------------------------


def _check_api_call(payload: Mapping[str, Any], problems: list[str]) -> None:
    problem = _url_problem("apiEndpoint", payload.get("apiEndpoint"))
    if problem is not None:
        problems.append(problem)

    method = payload.get("apiMethod", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        problems.append(f"apiMethod: must be one of {', '.join(HTTP_METHODS)}")

    body = payload.get("apiPayload")
    if body is not None:
        try:
            json.dumps(body)
        except (TypeError, ValueError):
            problems.append("apiPayload: must be JSON")

    headers = payload.get("customHeaders")
    if headers is not None:
        if not isinstance(headers, Mapping):
            problems.append("customHeaders: must be an object of header name to string")
        else:
            for name, value in headers.items():
                if not _nonempty_str(name) or not isinstance(value, str):
                    problems.append(f"customHeaders.{name}: value must be a string")
                elif "\n" in value or "\r" in value:
                    problems.append(f"customHeaders.{name}: must not contain line breaks")

    auth = payload.get("authType", "none")
    if auth is None:
        auth = "none"
    if not isinstance(auth, str) or auth not in AUTH_TYPES:
        problems.append(f"authType: must be one of {', '.join(AUTH_TYPES)}")
    elif auth == "bearer" and not _nonempty_str(payload.get("bearerToken")):
        problems.append("bearerToken: required when authType is 'bearer'")
    elif auth == "api_key":
        if not _nonempty_str(payload.get("apiKey")):
            problems.append("apiKey: required when authType is 'api_key'")
        header = payload.get("apiKeyHeader")
        if header is not None and not _nonempty_str(header):
            problems.append("apiKeyHeader: must be a non-empty header name")
    elif auth == "basic":
        if not _nonempty_str(payload.get("username")):
            problems.append("username: required when authType is 'basic'")
        if not isinstance(payload.get("password"), str):
            problems.append("password: required when authType is 'basic'")

    timeout = payload.get("timeout")
    if timeout is not None and (not _is_number(timeout) or not 0 < timeout <= MAX_TIMEOUT_MS):
        problems.append(f"timeout: must be milliseconds in (0, {MAX_TIMEOUT_MS}]")


# -- ghl_action ---------------------------------------------------------------------------


def _check_ghl_action(payload: Mapping[str, Any], problems: list[str]) -> None:
    action = payload.get("ghlAction")
    if action is None or action == "":
        problems.append(f"ghlAction: required, one of {', '.join(GHL_ACTIONS)}")
        return
    if action not in GHL_ACTIONS:
        problems.append(f"ghlAction: must be one of {', '.join(GHL_ACTIONS)}")
        return
    _optional_str(payload, "locationId", problems)
    fields = payload.get("customFields")
    if fields is not None and not isinstance(fields, Mapping):
        problems.append("customFields: must be an object")
    if action == "add_contact":
        if not _nonempty_str(payload.get("email")) and not _nonempty_str(payload.get("phone")):
            problems.append("email: required for add_contact unless phone is given")
        for name in ("firstName", "lastName", "name", "phone", "companyName", "source"):
            _optional_str(payload, name, problems)
        email = payload.get("email")
        if email is not None and not (isinstance(email, str) and "@" in email):
            problems.append("email: must be an email address")
        tags = payload.get("tags")
        if tags is not None and not _is_str_list(tags):
            problems.append("tags: must be a list of non-empty strings")
    elif action == "update_contact":
        if not _nonempty_str(payload.get("contactId")):
            problems.append("contactId: required for update_contact")
        email = payload.get("email")
        if email is not None and not (isinstance(email, str) and "@" in email):
            problems.append("email: must be an email address")
    elif action == "send_sms":
        if not _nonempty_str(payload.get("contactId")):
            problems.append("contactId: required for send_sms")
        if not _nonempty_str(payload.get("message")):
            problems.append("message: required for send_sms")
    elif action == "create_opportunity":
        # GoHighLevel v2 creates an opportunity only for a contact.
        for name in ("pipelineId", "stageId", "title", "contactId"):
            if not _nonempty_str(payload.get(name)):
                problems.append(f"{name}: required for create_opportunity")
        status = payload.get("status", "open")
        if status not in OPPORTUNITY_STATUSES:
            problems.append(f"status: must be one of {', '.join(OPPORTUNITY_STATUSES)}")
        value = payload.get("monetaryValue")
        if value is not None and (not _is_number(value) or value < 0):
            problems.append("monetaryValue: must be a number >= 0")
    elif action == "add_tag":
        if not _nonempty_str(payload.get("contactId")):
            problems.append("contactId: required for add_tag")
        tags = payload.get("tags")
        if tags is None:
            problems.append("tags: required for add_tag (a non-empty list of strings)")
        elif not _is_str_list(tags) or not tags:
            problems.append("tags: must be a non-empty list of non-empty strings")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(_nonempty_str(v) for v in value)


# -- notification, reminder ---------------------------------------------------------------


def _check_destination(payload: Mapping[str, Any], problems: list[str], *, required: bool) -> None:
    url, recipient = payload.get("webhookUrl"), payload.get("recipient")
    if url is not None:
        problem = _url_problem("webhookUrl", url)
        if problem is not None:
            problems.append(problem)
    if recipient is not None and not _nonempty_str(recipient):
        problems.append("recipient: must be a non-empty string")
    if required and url is None and recipient is None:
        problems.append("webhookUrl: required unless recipient is given")


def _check_notification(payload: Mapping[str, Any], problems: list[str]) -> None:
    _check_destination(payload, problems, required=True)
    _required_str(payload, "message", problems)
    _optional_str(payload, "title", problems)


def _check_reminder(payload: Mapping[str, Any], problems: list[str]) -> None:
    when = payload.get("reminderTime")
    if when is None or when == "":
        problems.append("reminderTime: required (an ISO-8601 date-time)")
    elif not isinstance(when, str) or len(when.strip()) == 10 or parse_instant(when) is None:
        problems.append("reminderTime: not an ISO-8601 date-time (e.g. 2024-12-15T10:00:00Z)")
    elif not _has_timezone(when):
        problems.append("reminderTime: must include a timezone (Z or +hh:mm)")
    _required_str(payload, "reminderMessage", problems)
    _check_destination(payload, problems, required=False)


def reminder_time_ms(payload: Mapping[str, Any]) -> int | None:
    """``reminderTime`` as epoch milliseconds, for ``SubmitTask.scheduled_for_ms``; None when
    the payload has no valid reminderTime."""
    when = payload.get("reminderTime")
    if not isinstance(when, str) or len(when.strip()) == 10 or not _has_timezone(when):
        return None
    moment = parse_instant(when)
    return None if moment is None else int(moment.timestamp() * 1000)


# -- report_generation --------------------------------------------------------------------

_RANGE_FIELDS = (("dateFrom", "startDate", False), ("dateTo", "endDate", True))


def report_range(payload: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The report's [from, to) range in UTC; a bound is None when not given. Call on a
    validated payload (invalid bounds also read as None)."""
    bounds: list[datetime | None] = []
    for name, alias, end in _RANGE_FIELDS:
        value = payload.get(name, payload.get(alias))
        bounds.append(parse_instant(value, end_of_day=end))
    return bounds[0], bounds[1]


def _check_report(payload: Mapping[str, Any], problems: list[str]) -> None:
    kind = payload.get("reportType")
    if kind is None or kind == "":
        problems.append(f"reportType: required, one of {', '.join(REPORT_TYPES)}")
    elif kind not in REPORT_TYPES:
        problems.append(f"reportType: must be one of {', '.join(REPORT_TYPES)}")
    parsed: list[datetime | None] = []
    for name, alias, end in _RANGE_FIELDS:
        field = name if name in payload or alias not in payload else alias
        value = payload.get(field)
        if value is None:
            parsed.append(None)
            continue
        moment = parse_instant(value, end_of_day=end)
        if moment is None:
            problems.append(f"{field}: not an ISO-8601 date or date-time")
        parsed.append(moment)
    start, stop = parsed
    if start is not None and stop is not None and start > stop:
        problems.append("dateFrom: must not be after dateTo")
    _optional_str(payload, "clientId", problems)
    _optional_str(payload, "operation", problems)
    send = payload.get(SEND_NOTIFICATION)
    if send is not None and not isinstance(send, bool):
        problems.append(f"{SEND_NOTIFICATION}: must be true or false")
    elif send is True and payload.get("notifyWebhookUrl") in (None, ""):
        problems.append(
            "notifyWebhookUrl: required when sendNotification is true (the report is sent there)"
        )


# -- browser_automation, data_extraction --------------------------------------------------


class AutomationStep(BaseModel):
    """One validated browser step. ``config`` holds the step's fields as given."""

    model_config = ConfigDict(frozen=True)

    type: str
    config: dict[str, Any] = Field(default_factory=dict)


def _wait_ms(config: Mapping[str, Any]) -> Any:
    return config.get("ms", config.get("duration"))


def _check_step(where: str, step: Any, problems: list[str]) -> None:
    if not isinstance(step, Mapping):
        problems.append(f"{where}: must be an object with type and config")
        return
    kind = step.get("type")
    if kind not in STEP_TYPES:
        problems.append(f"{where}.type: must be one of {', '.join(STEP_TYPES)}")
        return
    config = step.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        problems.append(f"{where}.config: must be an object")
        return
    at = f"{where}.config"
    if kind == "navigate":
        problem = _url_problem(f"{at}.url", config.get("url"))
        if problem is not None:
            problems.append(problem)
    elif kind == "click":
        if not _nonempty_str(config.get("selector")) and not _nonempty_str(
            config.get("instruction")
        ):
            problems.append(f"{at}.selector: required for click unless instruction is given")
    elif kind == "type":
        if not _nonempty_str(config.get("selector")):
            problems.append(f"{at}.selector: required for type")
        if not isinstance(config.get("text"), str):
            problems.append(f"{at}.text: required for type (a string)")
    elif kind == "extract":
        if not _nonempty_str(config.get("instruction")):
            problems.append(f"{at}.instruction: required for extract")
        selector = config.get("selector")
        if selector is not None and not _nonempty_str(selector):
            problems.append(f"{at}.selector: must be a non-empty string")
    elif kind == "wait":
        ms = _wait_ms(config)
        if ms is None:
            problems.append(f"{at}.ms: required for wait (milliseconds > 0)")
        elif not _is_number(ms) or not 0 < ms <= MAX_WAIT_MS:
            name = "ms" if "ms" in config else "duration"
            problems.append(f"{at}.{name}: must be milliseconds in (0, {MAX_WAIT_MS}]")
    elif kind == "screenshot":
        full = config.get("fullPage")
        if full is not None and not isinstance(full, bool):
            problems.append(f"{at}.fullPage: must be true or false")


def _check_browser(payload: Mapping[str, Any], problems: list[str]) -> None:
    steps = payload.get("automationSteps")
    if steps is None:
        problems.append("automationSteps: required (a non-empty list of steps)")
        return
    if not isinstance(steps, list) or not steps:
        problems.append("automationSteps: must be a non-empty list of steps")
        return
    if len(steps) > MAX_STEPS:
        problems.append(f"automationSteps: at most {MAX_STEPS} steps")
        return
    for index, step in enumerate(steps):
        _check_step(f"automationSteps[{index}]", step, problems)


def automation_steps(payload: Mapping[str, Any]) -> list[AutomationStep]:
    """The steps of a validated browser payload, with wait steps' duration under ``ms``."""
    steps: list[AutomationStep] = []
    for raw in payload.get("automationSteps") or []:
        config = dict(raw.get("config") or {})
        if raw["type"] == "wait":
            config["ms"] = _wait_ms(config)
        steps.append(AutomationStep(type=raw["type"], config=config))
    return steps


# -- entry point --------------------------------------------------------------------------

_CHECKS: dict[str, Callable[[Mapping[str, Any], list[str]], None]] = {
    "api_call": _check_api_call,
    "ghl_action": _check_ghl_action,
    "notification": _check_notification,
    "reminder": _check_reminder,
    "report_generation": _check_report,
    "browser_automation": _check_browser,
    "data_extraction": _check_browser,
}


def validate_task_config(operation: str, payload: Mapping[str, Any]) -> list[str]:
    """Every problem of ``payload`` for ``operation``, each naming its field; ``[]`` when valid.

    Operations that are not seed-001 task types accept any payload but for the notice fields.
    """
    check = _CHECKS.get(operation)
    if not isinstance(payload, Mapping):
        return [] if check is None else ["payload: must be an object"]
    problems: list[str] = []
    if check is not None:
        check(payload, problems)
    _check_common(payload, problems)
    return problems
