"""The redrive rule: deterministic ids, the first recorded specification, the original key,
and entries that cannot be redriven named with the reason."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas import commands as cmd
from schemas.records import DeadLetter
from streams.redrive import DeadLetterEntry, Selection, plan_redrive, redrive, redrive_id


class Recorder:
    def __init__(self) -> None:
        self.sent: list[cmd.Command] = []

    async def send(self, command: cmd.Command) -> None:
        self.sent.append(command)


def entry(
    task_id: str | None,
    offset: int,
    *,
    client: str = "c1",
    partition: int = 0,
    at: int = 0,
    reason: str = "retries_exhausted",
    operation: str | None = "tag_add",
    submit: dict[str, Any] | None = None,
) -> DeadLetterEntry:
    if submit is None and task_id is not None:
        submit = {"client_id": client, "task_id": task_id, "operation": operation, "payload": {}}
    letter = DeadLetter(
        reason=reason,
        client_id=client,
        task_id=task_id,
        operation=operation,
        submit=submit or {},
        occurred_at_ms=at,
    )
    return DeadLetterEntry(partition, offset, letter)


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [
        ("a", "a.r1"),
        ("a.r1", "a.r2"),
        ("a.r9", "a.r10"),
        ("x.y.r3", "x.y.r4"),
        ("a.r0", "a.r0.r1"),
        ("a.rx", "a.rx.r1"),
        (".r1", ".r1.r1"),
    ],
)
def test_redrive_ids(task_id: str, expected: str) -> None:
    assert redrive_id(task_id) == expected


def test_selection_takes_exactly_one_way() -> None:
    bad: dict[str, Any]
    for bad in (
        {},
        {"all": True, "task_ids": ["a"]},
        {"all": True, "reason": "x"},
        {"task_ids": []},
    ):
        with pytest.raises(ValidationError):
            Selection.model_validate(bad)
    assert Selection(reason="r", client_id="c1").matches(entry("t", 0, reason="r"))
    assert not Selection(reason="r", client_id="c1").matches(entry("t", 0, reason="r", client="d"))


def test_plan_keeps_the_key_and_spec_of_the_first_letter_of_each_task() -> None:
    first = {
        "client_id": "c7",
        "task_id": "t",
        "operation": "api_call",
        "payload": {"apiEndpoint": "http://x"},
        "priority": 2,
        "max_retries": 1,
        "timeout_ms": 500,
        "scheduled_for_ms": None,
        "requires_review": False,
        "depends_on": ["d"],
        "capabilities": ["crm"],
        "from_a_newer_version": True,
    }
    entries = [
        entry("t", 5, client="c7", at=20, submit={**first, "payload": {"later": 1}}),
        entry("t", 3, client="c7", at=10, submit=first),
        entry("u", 0, partition=1, at=15),
    ]
    plan, report = plan_redrive(entries, Selection(all=True))
    assert [s for _, s in plan] == [
        cmd.SubmitTask(
            client_id="c7",
            task_id="t.r1",
            operation="api_call",
            payload={"apiEndpoint": "http://x"},
            priority=2,
            max_retries=1,
            timeout_ms=500,
            depends_on=["d"],
            capabilities=["crm"],
        ),
        cmd.SubmitTask(client_id="c1", task_id="u.r1", operation="tag_add"),
    ]
    assert plan[0][0].offset == 3
    assert report.not_redrivable == [] and report.not_found == []


def test_entries_without_a_submit_document_are_reported_not_redriven() -> None:
    undecodable = DeadLetterEntry(2, 9, None, "undecodable dead letter: bad magic")
    raw_input = DeadLetterEntry(
        1, 4, DeadLetter(reason="bad magic byte", raw=b"\x00", source_topic="p.commands")
    )
    refused = entry("r", 1, submit={}, reason="unknown operation 'zz'", operation=None)
    broken = entry("b", 2, submit={"client_id": "c1", "task_id": "b"})  # no operation
    plan, report = plan_redrive([undecodable, raw_input, refused, broken], Selection(all=True))
    assert plan == []
    whys = {(i.task_id, i.source): i.why for i in report.not_redrivable}
    assert whys[(None, "dlq 2@9")] == "undecodable dead letter: bad magic"
    assert "undecodable" in (whys[(None, "dlq 1@4")] or "")
    assert "no submit document" in (whys[("r", "dlq 0@1")] or "")
    assert "operation" in (whys[("b", "dlq 0@2")] or "")


def test_task_ids_and_filters_select_and_unknown_ids_are_named() -> None:
    entries = [entry("a", 0, reason="x"), entry("b", 1, reason="y", client="c2")]
    plan, report = plan_redrive(entries, Selection(task_ids=["b", "zz", "zz"]))
    assert [s.task_id for _, s in plan] == ["b.r1"] and plan[0][1].client_id == "c2"
    assert report.not_found == ["zz"]
    plan, _ = plan_redrive(entries, Selection(reason="x"))
    assert [s.task_id for _, s in plan] == ["a.r1"]


async def test_redriving_again_sends_identical_commands_or_nothing_when_known() -> None:
    entries = [entry("a", 0), entry("b", 1)]
    sender = Recorder()
    first = await redrive(entries, Selection(all=True), sender)
    again = await redrive(entries, Selection(all=True), sender)
    assert sender.sent[:2] == sender.sent[2:]  # the processor ignores identical submits
    assert [i.new_task_id for i in first.redriven] == ["a.r1", "b.r1"]
    assert again.redriven == first.redriven

    sender = Recorder()
    known = {"a.r1"}
    report = await redrive(entries, Selection(all=True), sender, known=known.__contains__)
    assert [i.new_task_id for i in report.already_redriven] == ["a.r1"]
    assert [c.task_id for c in sender.sent if isinstance(c, cmd.SubmitTask)] == ["b.r1"]

    # The redrive of a failed redrive is a new entry with the next id.
    entries.append(entry("a.r1", 7, at=5))
    report = await redrive(entries, Selection(all=True), Recorder(), known=known.__contains__)
    assert sorted(i.new_task_id or "" for i in report.redriven) == ["a.r2", "b.r1"]
