"""Bad input on the command topic (issue 3, "Done when" 9): unknown operations, missing fields
and undecodable bytes end as ``task.rejected`` / ``command.rejected`` events or dead letters
carrying the reason, and the commands after them are processed as usual."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from schemas import commands as c
from schemas import events as ev
from schemas.codec import CODEC
from schemas.records import DeadLetter
from streams.settings import Settings
from tests.integration.distributor_harness import read_topic, register, rig, submit

pytestmark = pytest.mark.integration


async def test_bad_commands_are_rejected_or_dead_lettered_and_processing_goes_on(
    make_settings: Callable[..., Settings],
) -> None:
    async with rig(make_settings, delay=False) as r:
        await r.send(register("A", "A-s1"))
        await r.send(submit("A", "first", "conversation_send"))
        # unknown operation
        await r.send(submit("A", "teleport-1", "teleport", payload={"to": "mars"}))
        # missing fields: an empty task id (bypassing the producer-side validation) ...
        blank = c.SubmitTask.model_construct(
            client_id="A",
            task_id="",
            operation="conversation_send",
            payload={},
            priority=None,
            max_retries=None,
            timeout_ms=None,
            scheduled_for_ms=None,
            requires_review=False,
            depends_on=[],
            capabilities=[],
        )
        blank_raw = CODEC.encode(blank)
        await r.commands.send_raw(blank_raw, "A")
        # ... and a result that names neither a task nor a batch
        await r.send(c.ReportResult(client_id="A", fencing_token=1, success=True))
        # undecodable bytes: not Avro at all, and a truncated record
        await r.commands.send_raw(b"\x00garbage{", "A")
        truncated = CODEC.encode(submit("A", "cut", "conversation_send"))[:-3]
        await r.commands.send_raw(truncated, None)
        # an Avro record that is not a command
        letter = CODEC.encode(DeadLetter(reason="not a command"))
        await r.commands.send_raw(letter, "A")
        await r.send(submit("A", "last", "conversation_send"))
        events = await r.wait(
            lambda es: (
                {e.task_id for e in es if isinstance(e, ev.TaskCompleted)} == {"first", "last"}
            )
        )
        dlq = await read_topic(r.settings, "dlq")

    rejected = [e for e in events if isinstance(e, ev.TaskRejected)]
    assert [(e.task_id, e.reason) for e in rejected] == [
        ("teleport-1", "unknown operation 'teleport'")
    ]
    assert not [e for e in events if isinstance(e, ev.TaskAccepted) and e.task_id == "teleport-1"]
    refused = [e for e in events if isinstance(e, ev.CommandRejected)]
    assert [(e.command, e.reason) for e in refused] == [
        ("ReportResult", "a result must name a task_id or a batch_id")
    ]

    letters: list[DeadLetter] = [rec.value for rec in dlq]
    assert all(isinstance(d, DeadLetter) for d in letters)
    by_reason: dict[str, Any] = {d.reason: d for d in letters}
    assert len(letters) == 5, sorted(by_reason)
    unknown = next(d for d in letters if d.task_id == "teleport-1")
    assert unknown.reason == "unknown operation 'teleport'"
    assert unknown.submit["operation"] == "teleport" and unknown.submit["payload"] == {"to": "mars"}
    raw_letters = {d.raw: d for d in letters if d.raw is not None}
    assert set(raw_letters) == {blank_raw, b"\x00garbage{", truncated, letter}
    assert "task_id" in raw_letters[blank_raw].reason
    assert raw_letters[b"\x00garbage{"].reason.startswith("undecodable command")
    assert "truncated" in raw_letters[truncated].reason
    assert "not a command" in raw_letters[letter].reason
    for d in raw_letters.values():
        assert d.source_topic == r.settings.topic("commands") and d.source_offset is not None
