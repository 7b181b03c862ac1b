"""Who gets an outcome notice (``streams.domain.notices``): the processor marks the one outcome
record of a task that asked for a notice of that outcome, never an attempt, whatever the
operation's handler."""

from __future__ import annotations

import json
from typing import Any

from schemas import commands as c
from schemas import events as ev
from streams.distributor import Distributor
from streams.domain.notices import kept_on_finish, notice_target
from streams.kafka.headers import NOTIFY_HEADER
from streams.notifier import notice_of
from streams.settings import Settings
from tests.support.gwt import Harness, submit

APP = Distributor(Settings(topic_prefix="ts"))
HOOK = "https://hooks.example/done"
OP = "integration_sync"  # a pool operation served by the user's own handler


def marks(h: Harness, events: list[ev.Event]) -> list[tuple[str, dict[str, Any]]]:
    """(topic, mark) of every marked side record ``events`` imply."""
    found = []
    for event in events:
        for out in APP.outputs(h.state, event):
            for name, value in out.headers:
                if name == NOTIFY_HEADER:
                    found.append((out.topic, json.loads(value)))
    return found


def test_a_task_that_fails_twice_then_completes_is_marked_once_on_its_completion() -> None:
    payload = {"notifyOnComplete": True, "notifyOnFailure": True, "notifyWebhookUrl": HOOK}
    h = Harness().given(submit("t1", operation=OP, payload=payload))
    seen = []
    for _ in range(2):
        seen += marks(h, h.fail("t1"))
        seen += marks(h, h.retry_due("t1"))
    assert seen == []  # failed attempts are no outcome
    assert marks(h, h.succeed("t1")) == [("ts.completed", {"url": HOOK})]
    # The payload left with the finished task, its notice fields stayed (also in the store).
    assert h.record("t1").payload == payload
    assert h.reloaded().task("t1").payload == payload  # type: ignore[union-attr]


def test_a_task_that_fails_for_good_is_marked_once_on_task_failed() -> None:
    payload = {"notify_on_failure": True, "notifyWebhookUrl": HOOK, "other": 1}
    h = Harness().given(submit("t1", operation=OP, payload=payload, max_retries=1))
    assert marks(h, h.fail("t1")) == []
    h.retry_due("t1")
    assert marks(h, h.fail("t1")) == [("ts.failed", {"url": HOOK})]


def test_only_the_outcome_asked_for_is_marked() -> None:
    h = Harness().given(
        submit("t1", operation=OP, payload={"notifyOnFailure": True, "notifyWebhookUrl": HOOK})
    )
    assert marks(h, h.succeed("t1")) == []
    assert h.record("t1").payload == {"notifyOnFailure": True, "notifyWebhookUrl": HOOK}
    h = Harness().given(submit("t2", operation=OP, payload={"x": 1}))
    assert marks(h, h.succeed("t2")) == []
    assert h.record("t2").payload is None  # nothing to keep: dropped as before


def test_a_cancelled_task_gets_no_failure_notice() -> None:
    payload = {"notifyOnFailure": True, "notifyWebhookUrl": HOOK}
    h = Harness().given(submit("t1", operation=OP, payload=payload, scheduled_for_ms=10**9))
    events = h.do(c.CancelTask(client_id="A", task_id="t1", reason="not needed"))
    assert any(isinstance(e, ev.TaskCancelled) for e in events)
    assert marks(h, events) == []


def test_notice_target_reads_either_spelling_and_needs_a_url() -> None:
    done = ev.TaskCompleted(client_id="A", task_id="t", occurred_at_ms=1, operation=OP, attempt=1)
    failed = ev.TaskFailed(
        client_id="A", task_id="t", occurred_at_ms=1, operation=OP, attempt=1, error="e"
    )
    cancelled = failed.model_copy(update={"outcome": ev.OUTCOME_CANCELLED})
    assert notice_target({"notify_on_complete": True, "notifyWebhookUrl": HOOK}, done) == HOOK
    assert notice_target({"notifyOnComplete": True, "notifyWebhookUrl": HOOK}, failed) is None
    assert notice_target({"notifyOnFailure": True, "notifyWebhookUrl": HOOK}, failed) == HOOK
    assert notice_target({"notifyOnFailure": True, "notifyWebhookUrl": HOOK}, cancelled) is None
    assert notice_target({"notifyOnComplete": True}, done) is None
    assert notice_target({"notifyOnComplete": "true", "notifyWebhookUrl": HOOK}, done) is None
    assert notice_target(None, done) is None
    sealed = {"$sealed": "aes256gcm-v1", "kid": "k1", "key": "a", "data": "b"}
    assert notice_target({"notifyOnComplete": True, "notifyWebhookUrl": sealed}, done) == sealed


def test_kept_on_finish_keeps_only_the_notice_fields() -> None:
    assert kept_on_finish({"a": 1, "notifyOnComplete": True}) == {"notifyOnComplete": True}
    assert kept_on_finish({"a": 1}) is None
    assert kept_on_finish(None) is None


REPORT = {"report_type": "webhook_activity", "total": 2, "by_source": {"ghl": {"total": 2}}}


def test_a_report_with_send_notification_is_sent_as_the_notice_of_its_completion() -> None:
    payload = {"reportType": "webhook_activity", "sendNotification": True, "notifyWebhookUrl": HOOK}
    h = Harness().given(submit("r1", operation="report_generation", payload=payload))
    events = h.succeed("r1", output=REPORT)
    assert marks(h, events) == [("ts.completed", {"url": HOOK})]
    # The notifier's body of that record carries the report.
    (notice,) = [
        n
        for e in events
        for out in APP.outputs(h.state, e)
        if (n := notice_of(out.value, out.headers)) is not None
    ]
    assert (notice.target, notice.outcome) == (HOOK, "completed")
    assert notice.body["output"] == REPORT and notice.body["operation"] == "report_generation"
    # What the finished task keeps is what the notice needs, not the report's config.
    assert h.record("r1").payload == {"sendNotification": True, "notifyWebhookUrl": HOOK}


def test_a_report_with_send_notification_that_fails_for_good_is_marked_once() -> None:
    payload = {"reportType": "task_summary", "sendNotification": True, "notifyWebhookUrl": HOOK}
    h = Harness().given(submit("r1", operation="report_generation", payload=payload, max_retries=1))
    assert marks(h, h.fail("r1")) == []
    h.retry_due("r1")
    assert marks(h, h.fail("r1")) == [("ts.failed", {"url": HOOK})]


def test_send_notification_without_a_target_is_refused_at_submit() -> None:
    (rejected,) = Harness().do(
        submit(
            "r1",
            operation="report_generation",
            payload={"reportType": "task_summary", "sendNotification": True},
        )
    )
    assert isinstance(rejected, ev.TaskRejected)
    assert rejected.reason.startswith(
        "payload.notifyWebhookUrl: required when sendNotification is true"
    )


def test_send_notification_is_a_report_field_only() -> None:
    done = ev.TaskCompleted(client_id="A", task_id="t", occurred_at_ms=1, operation=OP, attempt=1)
    send = {"sendNotification": True, "notifyWebhookUrl": HOOK}
    assert notice_target(send, done) is None
    report = done.model_copy(update={"operation": "report_generation"})
    assert notice_target(send, report) == HOOK
    assert notice_target({**send, "sendNotification": "true"}, report) is None
