"""fold_starts: a start still queued when its result joins it travels in the result."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from schemas.commands import (
    ItemResult,
    RegisterPool,
    RegisterSession,
    ReportProgress,
    ReportResult,
    SessionHeartbeat,
    SubmitTask,
    TaskStarted,
)
from streams.executor.start_folding import StartHold, fold_starts


def start(task: str, token: int = 1, client: str = "A") -> TaskStarted:
    return TaskStarted(client_id=client, task_id=task, fencing_token=token)


def done(task: str, token: int = 1, client: str = "A") -> ReportResult:
    return ReportResult(client_id=client, task_id=task, fencing_token=token, success=True)


def test_a_start_followed_by_its_result_becomes_the_result_with_started() -> None:
    assert fold_starts([start("t1"), done("t1")]) == [
        done("t1").model_copy(update={"started": True})
    ]


def test_interleaved_tasks_fold_each_and_keep_the_others_order() -> None:
    out = fold_starts([start("t1"), start("t2"), done("t2"), start("t3"), done("t1")])
    assert [
        (type(c).__name__, getattr(c, "task_id", None), getattr(c, "started", None)) for c in out
    ] == [
        ("ReportResult", "t2", True),
        ("TaskStarted", "t3", None),
        ("ReportResult", "t1", True),
    ]


def test_a_result_alone_or_a_start_alone_is_left_as_it_is() -> None:
    commands = [start("t1"), done("t2")]
    assert fold_starts(commands) == commands
    assert fold_starts([done("t1"), start("t1")]) == [done("t1"), start("t1")]


def test_only_the_same_attempt_folds() -> None:
    commands = [start("t1", token=1), done("t1", token=2), start("t2", client="B"), done("t2")]
    assert fold_starts(commands) == commands


def test_progress_between_keeps_the_start_in_front_of_it() -> None:
    progress = ReportProgress(client_id="A", task_id="t1", fencing_token=1, progress=0.5)
    commands = [start("t1"), progress, done("t1")]
    assert fold_starts(commands) == commands


def test_heartbeats_between_do_not_stop_a_fold_but_other_commands_do() -> None:
    beat = SessionHeartbeat(client_id="A", session_id="s1", workload=0.5)
    pool = RegisterPool(client_id="member-1", capacity=4, partition=0)
    folded = fold_starts([start("t1"), beat, pool, done("t1")])
    assert folded == [beat, pool, done("t1").model_copy(update={"started": True})]
    register = RegisterSession(client_id="A", session_id="s2", agent_id="x", max_concurrent=1)
    submit = SubmitTask(client_id="A", task_id="n1", operation="tag_add")
    for barrier in (register, submit):
        commands = [start("t1"), barrier, done("t1")]
        assert fold_starts(commands) == commands


def test_a_batch_result_folds_the_starts_of_the_items_it_names() -> None:
    batch = ReportResult(
        client_id="A",
        batch_id="b1",
        fencing_token=7,
        success=True,
        items=[ItemResult(task_id="i0", success=True), ItemResult(task_id="i1", success=True)],
    )

    def items_started(commands: list[BaseModel]) -> list[bool]:
        (result,) = commands
        assert isinstance(result, ReportResult)
        return [i.started for i in result.items]

    assert items_started(fold_starts([start("i0", token=7), start("i1", token=7), batch])) == [
        True,
        True,
    ]
    partial = fold_starts([start("i0", token=7), batch])
    assert items_started(partial) == [True, False]
    # A batch-level report (no items) folds nothing: its items' starts go as they are.
    whole = batch.model_copy(update={"items": []})
    assert fold_starts([start("i0", token=7), whole]) == [start("i0", token=7), whole]


def test_a_folded_result_round_trips_through_the_codec() -> None:
    from schemas.codec import CODEC

    (folded,) = fold_starts([start("t1"), done("t1")])
    decoded = CODEC.decode(CODEC.encode(folded))
    assert decoded == folded
    assert isinstance(decoded, ReportResult) and decoded.started is True


# --- StartHold: the send loop's rounds ------------------------------------------------------


def test_a_start_is_held_until_its_result_comes_and_then_folded() -> None:
    hold = StartHold(0.02)
    assert hold.wait_s(0.0) is None
    assert hold.round([start("t1")], 0.0) == ([], 0)
    assert hold.wait_s(0.005) == pytest.approx(0.015)
    send, settled = hold.round([done("t1")], 0.005)
    assert send == [done("t1").model_copy(update={"started": True})] and settled == 2
    assert hold.wait_s(0.005) is None


def test_a_start_held_for_hold_s_goes_out_alone() -> None:
    hold = StartHold(0.02)
    hold.round([start("t1")], 0.0)
    assert hold.round([], 0.01) == ([], 0)
    assert hold.round([], 0.02) == ([start("t1")], 1)
    assert hold.wait_s(0.02) is None
    # A result after that is sent as it is: the start went before it.
    assert hold.round([done("t1")], 0.03) == ([done("t1")], 1)


def test_what_follows_a_start_about_its_task_sends_the_start_in_front() -> None:
    progress = ReportProgress(client_id="A", task_id="t1", fencing_token=1, progress=0.5)
    hold = StartHold(0.02)
    hold.round([start("t1"), start("t2")], 0.0)
    send, settled = hold.round([progress], 0.001)
    assert send == [start("t1"), progress] and settled == 2
    assert hold.round([], 0.03) == ([start("t2")], 1)


def test_a_registration_or_a_batch_level_result_after_a_start_sends_it_first() -> None:
    register = RegisterSession(client_id="A", session_id="s2", agent_id="x", max_concurrent=1)
    whole = ReportResult(client_id="A", batch_id="b1", fencing_token=7, success=True)
    for barrier in (register, whole):
        hold = StartHold(0.02)
        assert hold.round([start("t1"), barrier, start("t2")], 0.0) == (
            [start("t1"), barrier],
            2,
        )
        assert hold.round([], 0.05) == ([start("t2")], 1)


def test_a_hold_of_zero_holds_nothing() -> None:
    hold = StartHold(0.0)
    assert hold.round([start("t1")], 0.0) == ([start("t1")], 1)
    assert hold.round([start("t2"), done("t2")], 0.0) == (
        [done("t2").model_copy(update={"started": True})],
        2,
    )
