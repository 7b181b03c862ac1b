"""Every submitted task id gets exactly one outcome record (``streams.domain.outcomes``)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import commands as c
from schemas import events as ev
from schemas.codec import CODEC
from streams.domain.outcomes import outcome_record
from tests.support.domain_walks import (
    CFG,
    actions,
    drive_to_the_end,
    random_walk,
    to_command,
)
from tests.support.gwt import Harness, register, submit

OP = "workflow_trigger"  # a session operation that is not batched


def harness(*items: ev.Event | c.Command, cfg: Any = None) -> OutcomeHarness:
    h = OutcomeHarness() if cfg is None else OutcomeHarness(cfg)
    h.given(*items)
    return h


class OutcomeHarness(Harness):
    """Collects the outcome record of every event, computed after it is folded in, and counts
    the outcomes the submits call for: one per accepted task, one per refused submit that
    does not reuse an id of the client's own tasks."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.outcomes: list[ev.TaskCompleted | ev.TaskFailed] = []
        self.expected: Counter[str] = Counter()

    def apply(self, events: list[ev.Event]) -> list[ev.Event]:
        for event in events:
            super().apply([event])
            record = outcome_record(self.state, event)
            if record is not None:
                assert CODEC.decode(CODEC.encode(record)) == record
                self.outcomes.append(record)
        return events

    def do(self, command: c.Command, at: int | None = None) -> list[ev.Event]:
        own = None
        if isinstance(command, c.SubmitTask):
            task = self.state.task(command.task_id)
            own = task is not None and task.client_id == command.client_id
        events = super().do(command, at)
        if isinstance(command, c.SubmitTask):
            if any(isinstance(e, ev.TaskAccepted) for e in events):
                self.expected[command.task_id] += 1
            elif any(isinstance(e, ev.TaskRejected) for e in events) and not own:
                self.expected[command.task_id] += 1
        return events

    def ended(self) -> Counter[str]:
        return Counter(o.task_id for o in self.outcomes)

    def outcome(self, task_id: str) -> ev.TaskCompleted | ev.TaskFailed:
        (found,) = [o for o in self.outcomes if o.task_id == task_id]
        return found


def test_completed_is_the_task_completed_event() -> None:
    h = harness(register("s1"), submit("t1", operation=OP))
    (done,) = [e for e in h.succeed("t1", at=5) if isinstance(e, ev.TaskCompleted)]
    assert h.outcome("t1") is done and done.outcome == "completed"


def test_failed_for_good_is_the_task_failed_event() -> None:
    h = harness(register("s1"), submit("t1", operation=OP, max_retries=0))
    (failed,) = [e for e in h.fail("t1", "boom") if isinstance(e, ev.TaskFailed)]
    assert h.outcome("t1") is failed
    assert (failed.outcome, failed.reason, failed.error) == ("failed", "retries exhausted", "boom")


def test_a_task_cancelled_while_it_ran_ends_cancelled_with_its_history() -> None:
    h = harness(register("s1"), submit("t1", operation=OP, max_retries=2), cfg=CFG)
    h.fail("t1", "first", at=10)
    h.retry_due("t1")
    h.do(c.CancelTask(client_id="A", task_id="t1", reason="customer left"), at=500)
    ended = h.outcome("t1")
    assert isinstance(ended, ev.TaskFailed)
    assert (ended.outcome, ended.reason, ended.error, ended.attempt, ended.operation) == (
        "cancelled", "customer left", "cancelled: customer left", 2, OP,
    )  # fmt: skip
    assert [a.error for a in ended.attempts] == ["first"] and ended.occurred_at_ms == 500


def test_a_queued_task_cancelled_without_a_reason() -> None:
    h = harness(submit("t1", operation=OP))  # no session: it stays queued
    h.do(c.CancelTask(client_id="A", task_id="t1"))
    ended = h.outcome("t1")
    assert isinstance(ended, ev.TaskFailed)
    assert (ended.outcome, ended.reason, ended.error, ended.attempt) == (
        "cancelled", "cancelled", "cancelled", 0,
    )  # fmt: skip


def test_a_reviewer_rejection_ends_rejected() -> None:
    h = harness(submit("t1", operation=OP, requires_review=True))
    h.do(c.RejectTask(client_id="A", task_id="t1", reviewer="ann", reason="spam"), at=9)
    ended = h.outcome("t1")
    assert isinstance(ended, ev.TaskFailed)
    assert (ended.outcome, ended.reason, ended.error, ended.operation, ended.occurred_at_ms) == (
        "rejected", "spam", "rejected: spam", OP, 9,
    )  # fmt: skip


def test_a_refused_submit_ends_refused_although_the_task_never_existed() -> None:
    h = OutcomeHarness()
    h.do(submit("t1", operation="teleport"), at=3)
    assert "t1" not in h.state.tasks
    ended = h.outcome("t1")
    assert isinstance(ended, ev.TaskFailed)
    assert (ended.outcome, ended.operation, ended.attempt, ended.attempts) == (
        "refused", "teleport", 0, [],
    )  # fmt: skip
    assert ended.reason == "unknown operation 'teleport'"


def test_a_conflicting_resubmit_adds_no_outcome_to_the_tasks_own() -> None:
    h = harness(register("s1"), submit("t1", operation=OP, payload={"a": 1}))
    h.do(submit("t1", operation=OP, payload={"a": 2}))  # refused: another spec, same id
    assert h.outcomes == []
    h.succeed("t1")
    h.do(submit("t1", operation=OP, payload={"a": 3}))  # refused again, after the end
    assert h.ended() == Counter({"t1": 1}) and h.outcome("t1").outcome == "completed"


def test_another_clients_id_refuses_the_submit_with_its_own_outcome() -> None:
    h = harness(submit("t1", operation=OP, client="A"))
    h.do(submit("t1", operation=OP, client="B"))
    ended = h.outcome("t1")
    assert (ended.client_id, ended.outcome) == ("B", "refused")


def test_refusals_of_other_commands_end_nothing() -> None:
    h = harness(register("s1"), submit("t1", operation=OP))
    h.do(c.ApproveTask(client_id="A", task_id="t1"))  # not pending review
    h.do(c.CancelTask(client_id="A", task_id="ghost"))
    h.do(c.RejectTask(client_id="A", task_id="t1"))  # not pending review
    assert h.outcomes == []
    h.do(c.CancelTask(client_id="A", task_id="t1"))
    h.do(c.CancelTask(client_id="A", task_id="t1"))  # refused: already cancelled
    assert h.ended() == Counter({"t1": 1})


def test_dependents_of_a_dead_task_each_get_their_outcome() -> None:
    h = harness(
        submit("parent", operation=OP, requires_review=True),
        submit("child", operation=OP, depends_on=["parent"]),
    )
    h.do(c.RejectTask(client_id="A", task_id="parent"))
    assert (h.outcome("parent").outcome, h.outcome("child").outcome) == ("rejected", "failed")
    child = h.outcome("child")
    assert isinstance(child, ev.TaskFailed) and child.reason == "dependency parent failed"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, min_size=5, max_size=50))
def test_random_sequences_give_one_outcome_per_submitted_task_id(
    steps: list[tuple[Any, ...]],
) -> None:
    h = OutcomeHarness(CFG)
    for action in steps:
        if action[0] == "tick":
            h.tick(h.now + action[1])
        else:
            command = to_command(h, action)
            assert command is not None
            h.do(command, at=h.now + 7)
    drive_to_the_end(h)
    assert h.ended() == h.expected


@pytest.mark.parametrize("seed", range(8))
def test_long_random_walks_give_one_outcome_per_submitted_task_id(seed: int) -> None:
    h = OutcomeHarness(CFG)
    for _ in random_walk(random.Random(seed), h):
        pass
    drive_to_the_end(h)
    assert h.ended() == h.expected
    kinds = Counter(o.outcome for o in h.outcomes)
    assert kinds["completed"] > 0 and sum(kinds.values()) == sum(h.expected.values())
