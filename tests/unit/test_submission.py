"""The one submission door (``streams.domain.submission``) and the decider's re-check of it."""

from __future__ import annotations

import pytest

from schemas import commands as c
from schemas import events as ev
from schemas.catalog import load_catalog
from streams.domain.submission import SubmitRefused, build_submit, spec_problems
from tests.support.gwt import Harness, of, submit

CATALOG = load_catalog()
LIMIT = 1_048_576


def build(**fields: object) -> c.SubmitTask:
    return build_submit(CATALOG, LIMIT, client_id="A", task_id="t1", **fields)


def test_an_invalid_config_is_refused_naming_the_field() -> None:
    with pytest.raises(SubmitRefused) as refused:
        build(operation="api_call", payload={"apiMethod": "GET"})
    assert refused.value.field == "payload.apiEndpoint"
    assert str(refused.value).startswith("payload.apiEndpoint: ")


def test_an_unknown_operation_is_refused_naming_operation() -> None:
    with pytest.raises(SubmitRefused) as refused:
        build(operation="teleport")
    assert refused.value.field == "operation"


def test_a_reminder_starts_at_its_reminder_time() -> None:
    command = build(
        operation="reminder",
        payload={"reminderTime": "2030-01-01T00:00:00Z", "reminderMessage": "hi"},
    )
    assert command.scheduled_for_ms == 1_893_456_000_000


def test_an_explicit_start_time_wins_over_the_reminder_time() -> None:
    command = build(
        operation="reminder",
        payload={"reminderTime": "2030-01-01T00:00:00Z", "reminderMessage": "hi"},
        scheduled_for_ms=5,
    )
    assert command.scheduled_for_ms == 5


def test_duplicates_are_dropped_from_lists() -> None:
    command = build(operation="conversation_send", tags=["a", "b", "a"], depends_on=["x", "x"])
    assert command.tags == ["a", "b"] and command.depends_on == ["x"]


def test_a_payload_over_the_limit_is_refused_as_too_large() -> None:
    with pytest.raises(SubmitRefused) as refused:
        build_submit(
            CATALOG, 64, client_id="A", task_id="t1", operation="conversation_send",
            payload={"text": "x" * 100},
        )  # fmt: skip
    assert refused.value.too_large and refused.value.field == "payload"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"assigned_to": {"kind": "team", "id": "x"}}, "assigned_to.kind"),
        ({"assigned_to": {"kind": "agent", "id": ""}}, "assigned_to.id"),
        ({"tags": [""]}, "tags[0]"),
        ({"title": "x" * 513}, "title"),
        ({"due_at_ms": -1}, "due_at_ms"),
        ({"steps": [{"id": "a", "operation": "nope"}]}, "steps[0].operation"),
        ({"steps": [{"id": "a", "operation": "conversation_send", "failure_policy": "x"}]},
         "steps[0].failure_policy"),
        ({"steps": [{"id": "a", "operation": "conversation_send"}, {"id": "a", "operation": "conversation_send"}]},
         "steps[1].id"),
        ({"steps": [{"id": "a", "operation": "conversation_send", "depends_on": ["zz"]}]},
         "steps[0].depends_on"),
        ({"steps": [{"id": "a", "operation": "api_call", "config": {}}]},
         "steps[0].config.apiEndpoint"),
        ({"steps": [
            {"id": "a", "operation": "conversation_send", "depends_on": ["b"]},
            {"id": "b", "operation": "conversation_send", "depends_on": ["a"]},
        ]}, "steps"),
    ],
)  # fmt: skip
def test_management_fields_and_steps_are_checked(fields: dict[str, object], field: str) -> None:
    with pytest.raises(SubmitRefused) as refused:
        build(operation="conversation_send", **fields)
    assert refused.value.field == field, str(refused.value)


def test_valid_steps_pass() -> None:
    command = build(
        operation="conversation_send",
        steps=[
            {"id": "a", "operation": "conversation_send"},
            {"id": "b", "operation": "conversation_send", "depends_on": ["a"]},
            {
                "id": "c",
                "operation": "conversation_send",
                "depends_on": ["a"],
                "failure_policy": "continue",
            },
        ],
    )
    assert spec_problems(command, CATALOG) == []


def test_a_raw_producer_with_an_invalid_config_gets_task_rejected_naming_the_field() -> None:
    (rejected,) = Harness().do(submit("t1", operation="api_call", payload={"apiMethod": "GET"}))
    assert isinstance(rejected, ev.TaskRejected)
    assert rejected.reason.startswith("payload.apiEndpoint: ")


def test_a_raw_reminder_without_a_start_time_is_scheduled_at_its_reminder_time() -> None:
    events = Harness().do(
        submit(
            "r1",
            operation="reminder",
            payload={"reminderTime": "2030-01-01T00:00:00Z", "reminderMessage": "hi"},
        ),
        at=1000,
    )
    (scheduled,) = of(events, ev.TaskScheduled)
    assert scheduled.due_at_ms == 1_893_456_000_000


def test_the_new_fields_reach_the_accepted_event_and_the_state() -> None:
    h = Harness()
    events = h.do(
        submit(
            "t1",
            title="Call back",
            tags=["sales"],
            metadata={"crm": 7},
            due_at_ms=5000,
            assigned_to=c.TaskAssignee(kind="agent", id="bot"),
        )
    )
    (accepted,) = of(events, ev.TaskAccepted)
    assert (accepted.title, accepted.tags, accepted.metadata) == (
        "Call back",
        ["sales"],
        {"crm": 7},
    )
    task = h.record("t1")
    assert (task.deadline_due_ms, task.assigned_to) == (5000, ("agent", "bot"))
    assert h.replayed() == h.state and h.reloaded() == h.state


def test_a_resubmit_with_another_title_is_a_different_task() -> None:
    h = Harness().given(submit("t1", title="one"))
    (rejected,) = h.do(submit("t1", title="two"))
    assert isinstance(rejected, ev.TaskRejected) and "different specification" in rejected.reason
