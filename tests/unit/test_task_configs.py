"""Configuration rules of the seed-001 task types: every rule, each message naming its field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.catalog import load_catalog
from schemas.task_configs import (
    TASK_TYPES,
    AutomationStep,
    automation_steps,
    notify_flags,
    parse_instant,
    reminder_time_ms,
    report_range,
    validate_task_config,
)
from tests.support.task_configs import VALID


def test_every_task_type_has_a_valid_example_and_is_in_the_catalog() -> None:
    catalog = load_catalog()
    assert set(VALID) == set(TASK_TYPES)
    for operation, payload in VALID.items():
        assert validate_task_config(operation, payload) == [], operation
        assert operation in catalog


def test_ghl_operations_and_unknown_operations_take_any_payload() -> None:
    odd = {"anything": object(), "apiEndpoint": 3, "notify_on_complete": False}
    for operation in [*(op for op in load_catalog() if op not in TASK_TYPES), "no_such_op"]:
        assert validate_task_config(operation, odd) == []


def test_every_operation_checks_the_notice_fields() -> None:
    for operation in [*(op for op in load_catalog() if op not in TASK_TYPES), "no_such_op"]:
        assert validate_task_config(operation, {"notifyOnFailure": True}) == [
            "notifyWebhookUrl: required when notify_on_complete or notify_on_failure is true"
        ]
        assert validate_task_config(operation, {"notify_on_complete": "yes"}) == [
            "notify_on_complete: must be true or false"
        ]
        ok = {"notifyOnComplete": True, "notifyWebhookUrl": "https://hooks.example/n"}
        assert validate_task_config(operation, ok) == []


def test_a_payload_that_is_not_an_object_is_one_problem() -> None:
    assert validate_task_config("notification", ["x"]) == ["payload: must be an object"]  # type: ignore[arg-type]


def _problems(operation: str, **payload: Any) -> list[str]:
    return validate_task_config(operation, payload)


# -- api_call (the full table lives in test_executor_handlers.py; this checks delegation) ---


def test_api_call_rules_are_the_handler_rules() -> None:
    from streams.executor.handlers import validate_api_call_config

    payload = {"authType": "bearer", "apiMethod": "FETCH", "timeout": True}
    assert validate_api_call_config(payload) == validate_task_config("api_call", payload)
    assert validate_task_config("api_call", payload) == [
        "apiEndpoint: required",
        "apiMethod: must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
        "bearerToken: required when authType is 'bearer'",
        "timeout: must be milliseconds in (0, 3600000]",
    ]
    assert _problems("api_call", apiEndpoint="https://h", apiPayload={"x": {1, 2}}) == [
        "apiPayload: must be JSON"
    ]
    assert _problems("api_call", apiEndpoint="https://h", timeout=float("nan")) == [
        "timeout: must be milliseconds in (0, 3600000]"
    ]


# -- ghl_action ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "problems"),
    [
        (
            {},
            [
                "ghlAction: required, one of add_contact, update_contact, send_sms, "
                "create_opportunity, add_tag"
            ],
        ),
        (
            {"ghlAction": "delete_everything"},
            [
                "ghlAction: must be one of add_contact, "
                "update_contact, send_sms, create_opportunity, "
                "add_tag"
            ],
        ),
        ({"ghlAction": "add_contact"}, ["email: required for add_contact unless phone is given"]),
        ({"ghlAction": "add_contact", "phone": "+1234567890"}, []),
        ({"ghlAction": "add_contact", "email": "nope"}, ["email: must be an email address"]),
        (
            {"ghlAction": "add_contact", "email": "a@b.c", "firstName": 7, "tags": ["x", ""]},
            ["firstName: must be a string", "tags: must be a list of non-empty strings"],
        ),
        (
            {"ghlAction": "add_contact", "phone": "1", "customFields": ["company"]},
            ["customFields: must be an object"],
        ),
        (
            {"ghlAction": "add_contact", "phone": "1", "locationId": 5},
            ["locationId: must be a string"],
        ),
        ({"ghlAction": "update_contact"}, ["contactId: required for update_contact"]),
        ({"ghlAction": "update_contact", "contactId": "c1", "firstName": "J"}, []),
        (
            {"ghlAction": "update_contact", "contactId": "c1", "email": 3},
            ["email: must be an email address"],
        ),
        (
            {"ghlAction": "send_sms"},
            ["contactId: required for send_sms", "message: required for send_sms"],
        ),
        (
            {"ghlAction": "send_sms", "contactId": "c1", "message": "  "},
            ["message: required for send_sms"],
        ),
        ({"ghlAction": "send_sms", "contactId": "c1", "message": "hi"}, []),
        (
            {"ghlAction": "create_opportunity"},
            [
                "pipelineId: required for create_opportunity",
                "stageId: required for create_opportunity",
                "title: required for create_opportunity",
                "contactId: required for create_opportunity",
            ],
        ),
        (
            {
                "ghlAction": "create_opportunity",
                "pipelineId": "p",
                "stageId": "s",
                "title": "Deal",
                "status": "maybe",
                "monetaryValue": -1,
                "contactId": "c1",
            },
            [
                "status: must be one of open, won, lost, abandoned",
                "monetaryValue: must be a number >= 0",
            ],
        ),
        (
            {
                "ghlAction": "create_opportunity",
                "pipelineId": "p",
                "stageId": "s",
                "title": "Deal",
                "status": "won",
                "monetaryValue": 1500.5,
                "contactId": "c1",
            },
            [],
        ),
        (
            {"ghlAction": "add_tag"},
            [
                "contactId: required for add_tag",
                "tags: required for add_tag (a non-empty list of strings)",
            ],
        ),
        (
            {"ghlAction": "add_tag", "contactId": "c1", "tags": []},
            ["tags: must be a non-empty list of non-empty strings"],
        ),
        (
            {"ghlAction": "add_tag", "contactId": "c1", "tags": "vip"},
            ["tags: must be a non-empty list of non-empty strings"],
        ),
        ({"ghlAction": "add_tag", "contactId": "c1", "tags": ["vip", "lead"]}, []),
    ],
)
def test_ghl_action_rules(payload: dict[str, Any], problems: list[str]) -> None:
    assert validate_task_config("ghl_action", payload) == problems


# -- notification, reminder ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "problems"),
    [
        (
            {},
            [
                "webhookUrl: required unless recipient is given",
                "message: required (a non-empty string)",
            ],
        ),
        ({"webhookUrl": "https://hooks.example.com/x", "message": "m"}, []),
        (
            {"webhookUrl": "ftp://x", "message": "m"},
            ["webhookUrl: must be an http:// or https:// URL"],
        ),
        ({"webhookUrl": "http://:99999", "message": "m"}, ["webhookUrl: not a valid URL"]),
        ({"webhookUrl": 5, "message": "m"}, ["webhookUrl: must be a string URL"]),
        ({"recipient": "", "message": "m"}, ["recipient: must be a non-empty string"]),
        ({"recipient": "owner", "message": 5}, ["message: required (a non-empty string)"]),
        ({"recipient": "owner", "message": "m", "title": 1}, ["title: must be a string"]),
    ],
)
def test_notification_rules(payload: dict[str, Any], problems: list[str]) -> None:
    assert validate_task_config("notification", payload) == problems


@pytest.mark.parametrize(
    ("payload", "problems"),
    [
        (
            {},
            [
                "reminderTime: required (an ISO-8601 date-time)",
                "reminderMessage: required (a non-empty string)",
            ],
        ),
        (
            {"reminderTime": "tomorrow", "reminderMessage": "m"},
            ["reminderTime: not an ISO-8601 date-time (e.g. 2024-12-15T10:00:00Z)"],
        ),
        (
            {"reminderTime": "2024-12-15", "reminderMessage": "m"},
            ["reminderTime: not an ISO-8601 date-time (e.g. 2024-12-15T10:00:00Z)"],
        ),
        (
            {"reminderTime": 1734256800000, "reminderMessage": "m"},
            ["reminderTime: not an ISO-8601 date-time (e.g. 2024-12-15T10:00:00Z)"],
        ),
        (
            {"reminderTime": "2024-12-15T10:00:00", "reminderMessage": "m"},
            ["reminderTime: must include a timezone (Z or +hh:mm)"],
        ),
        (
            {
                "reminderTime": "2024-12-15T11:00:00+01:00",
                "reminderMessage": "m",
                "recipient": "owner",
            },
            [],
        ),
        (
            {"reminderTime": "2024-12-15T10:00:00Z", "reminderMessage": "m", "webhookUrl": "nope"},
            ["webhookUrl: must be an http:// or https:// URL"],
        ),
    ],
)
def test_reminder_rules(payload: dict[str, Any], problems: list[str]) -> None:
    assert validate_task_config("reminder", payload) == problems


def test_reminder_time_maps_to_scheduled_for_ms() -> None:
    expected = int(datetime(2024, 12, 15, 10, tzinfo=UTC).timestamp() * 1000)
    assert reminder_time_ms({"reminderTime": "2024-12-15T10:00:00Z"}) == expected
    assert reminder_time_ms({"reminderTime": "2024-12-15T11:00:00+01:00"}) == expected
    assert reminder_time_ms({"reminderTime": "2024-12-15T10:00:00"}) is None
    assert reminder_time_ms({"reminderTime": "2024-12-15"}) is None
    assert reminder_time_ms({}) is None


# -- report_generation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "problems"),
    [
        ({}, ["reportType: required, one of task_summary, execution_stats, webhook_activity"]),
        ({"reportType": "webhook_activity"}, []),
        (
            {"reportType": "weekly"},
            ["reportType: must be one of task_summary, execution_stats, webhook_activity"],
        ),
        (
            {
                "reportType": "webhook_activity",
                "startDate": "2024-11-01T00:00:00Z",
                "endDate": "2024-11-30T23:59:59Z",
                "sendNotification": True,
                "notifyWebhookUrl": "https://hooks.example/reports",
            },
            [],
        ),
        (
            {"reportType": "task_summary", "sendNotification": True},
            ["notifyWebhookUrl: required when sendNotification is true (the report is sent there)"],
        ),
        (
            {"reportType": "task_summary", "sendNotification": "yes", "notifyWebhookUrl": "x"},
            [
                "sendNotification: must be true or false",
                "notifyWebhookUrl: must be an http:// or https:// URL",
            ],
        ),
        ({"reportType": "task_summary", "sendNotification": False}, []),
        ({"reportType": "execution_stats", "dateFrom": "2024-11-01", "dateTo": "2024-11-30"}, []),
        ({"reportType": "execution_stats", "dateFrom": "2024-11-01", "dateTo": "2024-11-01"}, []),
        (
            {
                "reportType": "task_summary",
                "startDate": "2024-11-01T00:00:00Z",
                "endDate": "2024-11-30T23:59:59Z",
            },
            [],
        ),
        (
            {"reportType": "task_summary", "dateFrom": "Nov 1"},
            ["dateFrom: not an ISO-8601 date or date-time"],
        ),
        (
            {"reportType": "task_summary", "endDate": 20241130},
            ["endDate: not an ISO-8601 date or date-time"],
        ),
        (
            {"reportType": "task_summary", "dateFrom": "2024-12-01", "dateTo": "2024-11-01"},
            ["dateFrom: must not be after dateTo"],
        ),
        (
            {"reportType": "task_summary", "clientId": 1, "operation": ["x"]},
            ["clientId: must be a string", "operation: must be a string"],
        ),
    ],
)
def test_report_generation_rules(payload: dict[str, Any], problems: list[str]) -> None:
    assert validate_task_config("report_generation", payload) == problems


def test_report_range_is_half_open_and_a_bare_end_date_includes_its_day() -> None:
    start, stop = report_range({"dateFrom": "2024-11-01", "dateTo": "2024-11-30"})
    assert start == datetime(2024, 11, 1, tzinfo=UTC)
    assert stop == datetime(2024, 12, 1, tzinfo=UTC)
    start, stop = report_range({"startDate": "2024-11-01T02:00:00+02:00"})
    assert start == datetime(2024, 11, 1, tzinfo=UTC)
    assert stop is None
    assert parse_instant("2024-11-01T00:00:00") == datetime(2024, 11, 1, tzinfo=UTC)
    assert parse_instant("2024-13-01") is None


# -- browser_automation, data_extraction -----------------------------------------------------


def _steps(*steps: Any) -> list[str]:
    return validate_task_config("browser_automation", {"automationSteps": list(steps)})


def test_browser_steps_required_and_non_empty() -> None:
    for operation in ("browser_automation", "data_extraction"):
        assert validate_task_config(operation, {}) == [
            "automationSteps: required (a non-empty list of steps)"
        ]
        assert validate_task_config(operation, {"automationSteps": []}) == [
            "automationSteps: must be a non-empty list of steps"
        ]
        assert validate_task_config(operation, {"automationSteps": {"type": "wait"}}) == [
            "automationSteps: must be a non-empty list of steps"
        ]
    too_many = [{"type": "screenshot"}] * 201
    assert _steps(*too_many) == ["automationSteps: at most 200 steps"]


def test_every_step_type_and_its_required_config() -> None:
    assert (
        _steps(
            {"type": "navigate", "config": {"url": "https://e.com"}},
            {"type": "click", "config": {"instruction": "the blue button"}},
            {"type": "type", "config": {"selector": "#q", "text": ""}},
            {"type": "extract", "config": {"instruction": "prices", "selector": ".list"}},
            {"type": "wait", "config": {"ms": 500}},
            {"type": "wait", "config": {"duration": 1.5}},
            {"type": "screenshot"},
            {"type": "screenshot", "config": {"fullPage": True}},
        )
        == []
    )
    assert _steps(
        "navigate",
        {"type": "scroll"},
        {"type": "navigate"},
        {"type": "navigate", "config": {"url": "javascript:alert(1)"}},
        {"type": "click", "config": {}},
        {"type": "type", "config": {"selector": "#q"}},
        {"type": "type", "config": {"text": "x"}},
        {"type": "extract", "config": {"selector": ""}},
        {"type": "wait", "config": {}},
        {"type": "wait", "config": {"ms": 0}},
        {"type": "wait", "config": {"duration": "5s"}},
        {"type": "wait", "config": {"ms": 600_001}},
        {"type": "screenshot", "config": {"fullPage": "yes"}},
        {"type": "click", "config": "#go"},
    ) == [
        "automationSteps[0]: must be an object with type and config",
        "automationSteps[1].type: must be one of navigate, click, type, extract, wait, screenshot",
        "automationSteps[2].config.url: required",
        "automationSteps[3].config.url: must be an http:// or https:// URL",
        "automationSteps[4].config.selector: required for click unless instruction is given",
        "automationSteps[5].config.text: required for type (a string)",
        "automationSteps[6].config.selector: required for type",
        "automationSteps[7].config.instruction: required for extract",
        "automationSteps[7].config.selector: must be a non-empty string",
        "automationSteps[8].config.ms: required for wait (milliseconds > 0)",
        "automationSteps[9].config.ms: must be milliseconds in (0, 600000]",
        "automationSteps[10].config.duration: must be milliseconds in (0, 600000]",
        "automationSteps[11].config.ms: must be milliseconds in (0, 600000]",
        "automationSteps[12].config.fullPage: must be true or false",
        "automationSteps[13].config: must be an object",
    ]


def test_automation_steps_normalise_wait_duration() -> None:
    steps = automation_steps(
        {
            "automationSteps": [
                {"type": "wait", "config": {"duration": 250}},
                {"type": "screenshot", "config": None},
            ]
        }
    )
    assert steps == [
        AutomationStep(type="wait", config={"duration": 250, "ms": 250}),
        AutomationStep(type="screenshot", config={}),
    ]


# -- common notify fields --------------------------------------------------------------------


def test_notify_flags_need_a_webhook_url() -> None:
    base = VALID["notification"]
    assert validate_task_config("notification", {**base, "notify_on_complete": True}) == [
        "notifyWebhookUrl: required when notify_on_complete or notify_on_failure is true"
    ]
    assert validate_task_config("reminder", {**VALID["reminder"], "notifyOnFailure": True}) == [
        "notifyWebhookUrl: required when notify_on_complete or notify_on_failure is true"
    ]
    assert (
        validate_task_config(
            "api_call",
            {**VALID["api_call"], "notify_on_failure": True, "notifyWebhookUrl": "https://h/n"},
        )
        == []
    )
    assert validate_task_config(
        "ghl_action",
        {**VALID["ghl_action"], "notify_on_complete": "yes", "notifyWebhookUrl": "mailto:x"},
    ) == [
        "notify_on_complete: must be true or false",
        "notifyWebhookUrl: must be an http:// or https:// URL",
    ]
    # Flags off: no URL needed.
    assert validate_task_config("notification", {**base, "notify_on_complete": False}) == []


def test_notify_flags_read_both_spellings() -> None:
    assert notify_flags({}) == (False, False)
    assert notify_flags({"notify_on_complete": True}) == (True, False)
    assert notify_flags({"notifyOnFailure": True}) == (False, True)
    assert notify_flags({"notify_on_complete": "true"}) == (False, False)


def test_send_notification_asks_a_report_for_both_notices() -> None:
    send = {"sendNotification": True, "notifyWebhookUrl": "https://h/n"}
    assert notify_flags(send, "report_generation") == (True, True)
    assert notify_flags({**send, "notifyOnComplete": False}, "report_generation") == (True, True)
    assert notify_flags({**send, "sendNotification": False}, "report_generation") == (False, False)
    # A report field: other operations' payloads do not ask for notices with it.
    assert notify_flags(send, "api_call") == (False, False)
    assert notify_flags(send) == (False, False)


def test_problems_of_several_kinds_are_all_reported() -> None:
    problems = validate_task_config(
        "ghl_action", {"ghlAction": "send_sms", "notify_on_failure": True}
    )
    assert problems == [
        "contactId: required for send_sms",
        "message: required for send_sms",
        "notifyWebhookUrl: required when notify_on_complete or notify_on_failure is true",
    ]
    for problem in problems:
        assert problem.split(":")[0] in {"contactId", "message", "notifyWebhookUrl"}
