"""Built-in handlers without network: browser steps on a fake driver, report arithmetic over
rows, and the failures that happen
before any request."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from streams.executor import TaskContext
from streams.executor.handlers import (
    BrowserAutomationError,
    BrowserAutomationHandler,
    GhlActionHandler,
    GhlApiHandler,
    GhlPermanentError,
    NoBrowserDriverError,
    NotificationError,
    NotificationHandler,
    ReportError,
    ReportGenerationHandler,
    TaskConfigError,
    WebhookNotifier,
    builtin_handlers,
    execution_stats,
    task_summary,
    webhook_activity,
)
from streams.executor.handlers.report import percentile
from streams.executor.jobs import is_async_handler
from streams.settings import Settings

PNG = b"\x89PNG\r\n\x1a\nfake-image"


def ctx(operation: str, /, session_id: str | None = None, **payload: Any) -> TaskContext:
    return TaskContext(
        task_id="t1",
        client_id="c1",
        operation=operation,
        payload=payload,
        attempt=2,
        fencing_token=1,
        session_id=session_id,
    )


class FakeDriver:
    """Records every call; fails the step whose call matches ``fail_on``."""

    def __init__(self, fail_on: str | None = None, extract_value: Any = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on = fail_on
        self.extract_value = extract_value if extract_value is not None else {"title": "Hi"}

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise RuntimeError(f"element not found for {call[0]}")

    async def navigate(self, url: str) -> None:
        self._record("navigate", url)

    async def click(self, selector: str | None, instruction: str | None) -> None:
        self._record("click", selector, instruction)

    async def type(self, selector: str, text: str) -> None:
        self._record("type", selector, text)

    async def extract(self, instruction: str, selector: str | None) -> Any:
        self._record("extract", instruction, selector)
        return self.extract_value

    async def wait(self, ms: int) -> None:
        self._record("wait", ms)

    async def screenshot(self, full_page: bool) -> bytes:
        self._record("screenshot", full_page)
        return PNG


STEPS = [
    {"type": "navigate", "config": {"url": "https://example.com/login"}},
    {"type": "type", "config": {"selector": "#user", "text": "bob"}},
    {"type": "click", "config": {"instruction": "press the sign-in button"}},
    {"type": "wait", "config": {"duration": 250}},
    {"type": "extract", "config": {"instruction": "the page title", "selector": "h1"}},
    {"type": "screenshot", "config": {"fullPage": True}},
]


# -- browser -------------------------------------------------------------------------------


async def test_browser_steps_run_in_order_and_collect_data_and_screenshots() -> None:
    driver = FakeDriver()
    progress: list[float] = []
    task = ctx("browser_automation", automationSteps=STEPS)
    task._progress = lambda fraction, message: progress.append(fraction)
    out = await BrowserAutomationHandler(driver)(task)
    assert driver.calls == [
        ("navigate", "https://example.com/login"),
        ("type", "#user", "bob"),
        ("click", None, "press the sign-in button"),
        ("wait", 250),
        ("extract", "the page title", "h1"),
        ("screenshot", True),
    ]
    assert out["steps_run"] == 6
    assert [s["type"] for s in out["steps"]] == [s["type"] for s in STEPS]
    assert out["extracted"] == [
        {"step": 4, "instruction": "the page title", "data": {"title": "Hi"}}
    ]
    assert [base64.b64decode(s["png_base64"]) for s in out["screenshots"]] == [PNG]
    assert out["steps"][5]["screenshot"] == 0
    assert progress[-1] == 1.0 and len(progress) == 6


async def test_invalid_steps_are_rejected_before_the_driver_is_touched() -> None:
    driver = FakeDriver()
    steps = [*STEPS, {"type": "hover", "config": {}}, {"type": "wait", "config": {"ms": -1}}]
    with pytest.raises(TaskConfigError) as info:
        await BrowserAutomationHandler(driver)(ctx("data_extraction", automationSteps=steps))
    message = str(info.value)
    assert message.startswith("invalid data_extraction config:")
    assert "automationSteps[6].type: must be one of" in message
    assert "automationSteps[7].config.ms: must be milliseconds" in message
    assert driver.calls == []


async def test_a_failing_step_fails_the_task_naming_the_step() -> None:
    driver = FakeDriver(fail_on="click")
    with pytest.raises(BrowserAutomationError, match=r"step 2 \(click\) failed: element not found"):
        await BrowserAutomationHandler(driver)(ctx("browser_automation", automationSteps=STEPS))
    assert [c[0] for c in driver.calls] == ["navigate", "type", "click"]  # stopped there


async def test_without_a_driver_the_browser_types_fail_clearly() -> None:
    handler = BrowserAutomationHandler()
    with pytest.raises(NoBrowserDriverError, match="no BrowserDriver configured"):
        await handler(ctx("data_extraction", automationSteps=STEPS))


async def test_the_driver_can_be_chosen_per_session_and_awaited() -> None:
    drivers = {"s-1": FakeDriver(), "s-2": FakeDriver()}

    async def driver_for(task: TaskContext) -> FakeDriver:
        assert task.session_id is not None
        return drivers[task.session_id]

    handler = BrowserAutomationHandler(driver_for)
    await handler(ctx("browser_automation", session_id="s-2", automationSteps=STEPS[:1]))
    assert drivers["s-1"].calls == []
    assert drivers["s-2"].calls == [("navigate", "https://example.com/login")]


async def test_extracted_data_must_be_json() -> None:
    driver = FakeDriver(extract_value={1, 2})
    with pytest.raises(BrowserAutomationError, match="not JSON"):
        await BrowserAutomationHandler(driver)(ctx("data_extraction", automationSteps=[STEPS[4]]))


async def test_screenshots_past_the_budget_are_left_out() -> None:
    budget = len(base64.b64encode(PNG)) + 1  # room for one
    shots = [{"type": "screenshot"}] * 3
    out = await BrowserAutomationHandler(FakeDriver(), max_screenshot_bytes=budget)(
        ctx("browser_automation", automationSteps=shots)
    )
    assert len(out["screenshots"]) == 1
    assert [s.get("omitted") for s in out["steps"]] == [
        None,
        "screenshot budget exceeded",
        "screenshot budget exceeded",
    ]
    assert all(s["bytes"] == len(PNG) for s in out["steps"])


# -- report --------------------------------------------------------------------------------

DAY = 86_400_000
NOV_1 = 1_730_419_200_000  # 2024-11-01T00:00:00Z


def row(task_id: str, state: str, operation: str, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "client_id": extra.pop("client_id", "acme"),
        "state": state,
        "operation": operation,
        "priority_name": extra.pop("priority_name", "normal"),
        "attempts": extra.pop("attempts", []),
        **extra,
    }


ROWS = [
    row(
        "a",
        "completed",
        "api_call",
        accepted_at_ms=NOV_1,
        finished_at_ms=NOV_1 + 10,
        execution_time_ms=100,
    ),
    row(
        "b",
        "completed",
        "api_call",
        accepted_at_ms=NOV_1 + DAY,
        finished_at_ms=NOV_1 + DAY,
        execution_time_ms=300,
        attempts=[{"attempt": 0, "error": "x", "at_ms": 1}],
    ),
    row(
        "c",
        "failed",
        "ghl_action",
        accepted_at_ms=NOV_1 + 2 * DAY,
        finished_at_ms=NOV_1 + 2 * DAY,
        execution_time_ms=50,
        dead_lettered=True,
        client_id="globex",
        priority_name="high",
    ),
    row("d", "queued", "ghl_action", accepted_at_ms=NOV_1 + 3 * DAY),
    row(
        "e",
        "completed",
        "api_call",
        accepted_at_ms=NOV_1 - DAY,
        finished_at_ms=NOV_1 - 1,
        execution_time_ms=9999,
    ),
    row(
        "f",
        "completed",
        "notification",
        accepted_at_ms=NOV_1 + 30 * DAY,
        finished_at_ms=NOV_1 + 30 * DAY,
        execution_time_ms=20,
    ),
]


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 100) == 100
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None


def test_task_summary_counts_tasks_accepted_in_the_range() -> None:
    from schemas.task_configs import report_range

    start, stop = report_range({"dateFrom": "2024-11-01", "dateTo": "2024-11-30"})
    report = task_summary(ROWS, start, stop)
    assert report["total"] == 4  # e is before, f is after
    assert report["by_state"] == {"completed": 2, "failed": 1, "queued": 1}
    assert report["by_operation"] == {"api_call": 2, "ghl_action": 2}
    assert report["by_priority"] == {"high": 1, "normal": 3}
    assert report["by_client"] == {"acme": 3, "globex": 1}
    assert report["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["dead_lettered"] == 1
    assert report["range"] == {"from": "2024-11-01T00:00:00Z", "to": "2024-12-01T00:00:00Z"}


def test_execution_stats_over_tasks_finished_in_the_range() -> None:
    report = execution_stats(ROWS, None, None)
    assert (report["finished"], report["completed"], report["failed"]) == (5, 4, 1)
    assert report["success_rate"] == 0.8
    assert report["retried"] == 1
    times = report["execution_time"]
    assert times["count"] == 4  # only completed tasks have execution times counted
    assert times["mean_ms"] == pytest.approx((100 + 300 + 9999 + 20) / 4, abs=0.1)
    assert (times["p50_ms"], times["max_ms"]) == (100, 9999)
    ranged = execution_stats(ROWS, *_range("2024-11-01", "2024-11-15"))
    assert (ranged["finished"], ranged["completed"], ranged["failed"]) == (3, 2, 1)
    assert ranged["by_operation"]["api_call"]["execution_time"]["mean_ms"] == 200.0
    assert ranged["by_operation"]["ghl_action"]["success_rate"] == 0.0
    assert execution_stats([], None, None)["success_rate"] is None


def _range(start: str, stop: str) -> Any:
    from schemas.task_configs import report_range

    return report_range({"dateFrom": start, "dateTo": stop})


class FakeView:
    """Serves ``rows`` in pages of ``page`` through /tasks with a cursor, and /health."""

    def __init__(self, rows: list[dict[str, Any]], page: int) -> None:
        self.rows = rows
        self.page = page
        self.calls: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        self.calls.append((path, dict(params)))
        if path == "/health":
            return {"status": "healthy", "stats": {"processed": 9, "success_rate": 0.9}}
        if path == "/webhooks/activity":
            return ACTIVITY
        start = int(params.get("cursor", "0"))
        end = start + self.page
        more = end < len(self.rows)
        return {"items": self.rows[start:end], "next_cursor": str(end) if more else None}


async def test_report_handler_pages_through_the_view_and_passes_filters() -> None:
    view = FakeView(ROWS, page=2)
    handler = ReportGenerationHandler(view, page_size=2)
    out = await handler(
        ctx(
            "report_generation",
            reportType="execution_stats",
            clientId="acme",
            operation="api_call",
            startDate="2024-11-01",
            endDate="2024-11-30",
        )
    )
    assert [c[0] for c in view.calls] == ["/tasks", "/tasks", "/tasks", "/health"]
    assert view.calls[0][1] == {"limit": "2", "client_id": "acme", "operation": "api_call"}
    assert view.calls[1][1]["cursor"] == "2" and view.calls[2][1]["cursor"] == "4"
    assert out["tasks_read"] == 6 and out["truncated"] is False
    assert out["service"] == {"processed": 9, "success_rate": 0.9}
    assert out["filters"] == {"client_id": "acme", "operation": "api_call"}
    assert out["finished"] == 3  # the fake view ignores filters; the handler reports its range


async def test_report_handler_stops_at_max_tasks() -> None:
    view = FakeView(ROWS, page=2)
    out = await ReportGenerationHandler(view, page_size=2, max_tasks=3)(
        ctx("report_generation", reportType="task_summary")
    )
    assert out["tasks_read"] == 3 and out["truncated"] is True
    assert len(view.calls) == 2


async def test_report_handler_rejects_bad_config_and_bad_answers() -> None:
    view = FakeView(ROWS, page=10)
    with pytest.raises(TaskConfigError, match="reportType: must be one of"):
        await ReportGenerationHandler(view)(ctx("report_generation", reportType="weekly"))
    assert view.calls == []

    async def broken(path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        return {"detail": "nope"}

    with pytest.raises(ReportError, match="no items list"):
        await ReportGenerationHandler(broken)(ctx("report_generation", reportType="task_summary"))


# The view's answer to GET /webhooks/activity (api.webhooks.WebhookActivity).
ACTIVITY: dict[str, Any] = {
    "since": "2024-11-01T00:00:00.000Z",
    "since_ms": NOV_1,
    "total": 5,
    "by_outcome": {"accepted": 3, "duplicate": 1, "unauthorized": 1},
    "by_source": {
        "form": {"total": 1, "by_outcome": {"accepted": 1}},
        "ghl": {"total": 4, "by_outcome": {"accepted": 2, "duplicate": 1, "unauthorized": 1}},
    },
}

WEBHOOK_ROWS = [
    *ROWS,  # submitted by tokens or SDKs: not a webhook's
    row("w1", "completed", "api_call", accepted_at_ms=NOV_1, submitted_by="webhook:ghl"),
    row("w2", "completed", "api_call", accepted_at_ms=NOV_1 + DAY, submitted_by="webhook:ghl"),
    row(
        "w3",
        "failed",
        "ghl_action",
        accepted_at_ms=NOV_1 + DAY,
        submitted_by="webhook:ghl",
        dead_lettered=True,
    ),
    row(
        "w4", "queued", "notification", accepted_at_ms=NOV_1 + 2 * DAY, submitted_by="webhook:form"
    ),
    row("w5", "completed", "api_call", accepted_at_ms=NOV_1 - 1, submitted_by="webhook:ghl"),
    row("w6", "completed", "api_call", accepted_at_ms=NOV_1 + 2 * DAY, submitted_by="dashboard"),
    row("w7", "completed", "api_call", accepted_at_ms=NOV_1 + 2 * DAY, submitted_by="webhook:"),
]


def test_webhook_activity_counts_webhook_tasks_accepted_in_the_range_by_source() -> None:
    report = webhook_activity(WEBHOOK_ROWS, *_range("2024-11-01", "2024-11-30"))
    assert report["report_type"] == "webhook_activity"
    assert report["total"] == 4  # w5 is before the range; w6, w7 and ROWS are not webhooks'
    assert report["by_state"] == {"completed": 2, "failed": 1, "queued": 1}
    assert report["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["by_source"] == {
        "form": {"total": 1, "by_state": {"queued": 1}, "success_rate": None, "dead_lettered": 0},
        "ghl": {
            "total": 3,
            "by_state": {"completed": 2, "failed": 1},
            "success_rate": pytest.approx(2 / 3, abs=1e-4),
            "dead_lettered": 1,
        },
    }
    everything = webhook_activity(WEBHOOK_ROWS, None, None)
    assert everything["by_source"]["ghl"]["total"] == 4
    assert webhook_activity(ROWS, None, None)["by_source"] == {}


async def test_report_handler_webhook_activity_adds_the_views_message_counts() -> None:
    view = FakeView(WEBHOOK_ROWS, page=5)
    out = await ReportGenerationHandler(view, page_size=5)(
        ctx(
            "report_generation",
            reportType="webhook_activity",
            startDate="2024-11-01T00:00:00Z",
            endDate="2024-11-30T23:59:59Z",
        )
    )
    assert [c[0] for c in view.calls] == ["/tasks"] * 3 + ["/webhooks/activity"]
    assert out["total"] == 4 and set(out["by_source"]) == {"form", "ghl"}
    assert out["range"] == {"from": "2024-11-01T00:00:00Z", "to": "2024-11-30T23:59:59Z"}
    assert out["messages"] == {
        "since": "2024-11-01T00:00:00.000Z",
        "total": 5,
        "by_outcome": {"accepted": 3, "duplicate": 1, "unauthorized": 1},
        "by_source": {
            "form": {"accepted": 1},
            "ghl": {"accepted": 2, "duplicate": 1, "unauthorized": 1},
        },
    }
    assert out["tasks_read"] == len(WEBHOOK_ROWS) and out["truncated"] is False

    async def no_counts(path: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        return {"detail": "nope"} if path == "/webhooks/activity" else {"items": []}

    with pytest.raises(ReportError, match="/webhooks/activity"):
        await ReportGenerationHandler(no_counts)(
            ctx("report_generation", reportType="webhook_activity")
        )


# -- notices are not the handlers' ---------------------------------------------------------


async def test_handlers_send_no_outcome_notices_themselves() -> None:
    """notify_on_* is sent once per outcome by the notifier part (tests/unit/test_notifier.py),
    not per attempt by a wrapper around the built-in handlers."""
    handlers = builtin_handlers(Settings(kafka_bootstrap_servers="127.0.0.1:9"))
    try:
        assert isinstance(handlers["notification"], NotificationHandler)
        assert isinstance(handlers["report_generation"], ReportGenerationHandler)
        assert isinstance(handlers["browser_automation"], BrowserAutomationHandler)
    finally:
        await handlers.close()


# -- failures before any request -----------------------------------------------------------


async def test_ghl_action_without_credentials_fails_clearly_and_for_good() -> None:
    handler = GhlActionHandler(GhlApiHandler(None, base_url="http://127.0.0.1:9"))
    with pytest.raises(GhlPermanentError, match="TASKSTREAM_GHL_CREDENTIALS_FILE"):
        await handler(ctx("ghl_action", ghlAction="add_tag", contactId="c", tags=["vip"]))
    with pytest.raises(GhlPermanentError, match="contactId: required for add_tag"):
        await handler(ctx("ghl_action", ghlAction="add_tag", tags=["vip"]))


async def test_notification_without_any_destination_fails_clearly() -> None:
    handler = NotificationHandler(WebhookNotifier())
    with pytest.raises(NotificationError, match="TASKSTREAM_NOTIFICATION_WEBHOOK_URL"):
        await handler(ctx("notification", recipient="owner", message="hi"))
    with pytest.raises(TaskConfigError, match="message: required"):
        await handler(ctx("notification", recipient="owner"))


async def test_builtin_handlers_cover_the_seed_001_types() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9")
    async with builtin_handlers(settings) as handlers:
        assert set(handlers) == {
            "api_call",
            "ghl_action",
            "notification",
            "reminder",
            "report_generation",
            "browser_automation",
            "data_extraction",
        }
        assert all(is_async_handler(h) for h in handlers.values())
        with pytest.raises(NoBrowserDriverError):
            await handlers["browser_automation"](ctx("browser_automation", automationSteps=STEPS))
        with pytest.raises(GhlPermanentError, match="TASKSTREAM_GHL_CREDENTIALS_FILE"):
            await handlers["ghl_action"](ctx("ghl_action", ghlAction="add_contact", phone="1"))

    driver = FakeDriver()
    async with builtin_handlers(settings, browser_driver=driver) as handlers:
        await handlers["data_extraction"](ctx("data_extraction", automationSteps=STEPS[:2]))
    assert [c[0] for c in driver.calls] == ["navigate", "type"]
