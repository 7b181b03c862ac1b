"""Fuzzing the processor's input at the pure level: random bytes, damaged records and hostile
SubmitTasks go through the real processing cycle (``Processor`` + ``Distributor``, in-memory
I/O). The processor never raises; every record it cannot use becomes a dead letter with its
reason and raw bytes; whatever it accepts can be encoded, persisted, decoded and folded by the
read side; and a valid task sent afterwards is still assigned."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.memory import MemorySource
from schemas import commands as cmd
from schemas import events as ev
from schemas.codec import CODEC
from schemas.errors import DecodeError
from streams.distributor import Distributor
from tests.support.dict_store import DictStore

from .hostile import (
    CLIENT,
    JSON_BOMBS,
    Harness,
    hostile_submit,
    mutated,
    random_bytes,
    raw_record,
    submit_fields,
)
from .hostile import (
    settings as make_settings,
)

pytestmark = pytest.mark.fuzz

APP = Distributor(make_settings())
BUDGET = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _decodes(value: bytes) -> bool:
    try:
        APP.decode_command(value)
    except DecodeError:
        return False
    return True


def _check(values: list[bytes]) -> Harness:
    """Run ``values`` then a session and a valid task through one processor; check the
    invariants every fuzz case shares."""
    harness = Harness(APP)
    asyncio.run(harness.feed(*values))
    undecodable = [v for v in values if not _decodes(v)]
    letters = [d for d in harness.dead_letters() if d.source_topic is not None]
    assert len(letters) == len(undecodable)
    for letter, value in zip(letters, undecodable, strict=True):
        assert letter.reason.startswith("undecodable command: ")
        assert letter.raw == value
    for letter in harness.dead_letters():
        assert letter.reason
    events = harness.events()
    source = MemorySource()  # the read side folds whatever the processor accepted
    for event in events:
        source.feed(event)
    source.flush()
    assert harness.app.load_state(DictStore(harness.store.data.items())) == harness.run.state

    # The processor is still healthy: a valid session and task after the noise get together.
    sane = [
        cmd.RegisterSession(
            client_id="sane", session_id="sane-s", agent_id="a", max_concurrent=100
        ),
        cmd.SubmitTask(client_id="sane", task_id="sane-t", operation="contact_update"),
    ]
    asyncio.run(harness.feed(*(CODEC.encode(c) for c in sane)))
    assigned = [e for e in harness.events() if isinstance(e, ev.TaskAssigned | ev.BatchProcessed)]
    assert any(
        getattr(e, "task_id", None) == "sane-t" or "sane-t" in getattr(e, "task_ids", ())
        for e in assigned
    )
    return harness


@BUDGET
@given(st.lists(random_bytes(), min_size=1, max_size=8))
def test_random_bytes_become_dead_letters(values: list[bytes]) -> None:
    _check(values)


@BUDGET
@given(st.lists(mutated(), min_size=1, max_size=8))
def test_damaged_records_never_crash_the_processor(values: list[bytes]) -> None:
    _check(values)


@settings(BUDGET, max_examples=80)
@given(st.lists(hostile_submit(), min_size=1, max_size=4))
def test_hostile_submits_are_decided_or_dead_lettered(values: list[bytes]) -> None:
    _check(values)


@pytest.mark.parametrize("bomb", JSON_BOMBS, ids=range(len(JSON_BOMBS)))
def test_json_bombs_as_payload(bomb: str) -> None:
    value = raw_record(cmd.SubmitTask, submit_fields(task_id="bomb", payload=bomb))
    harness = _check([value])
    if _decodes(value):  # accepted (or refused by the decider with a reason)
        assert any(getattr(e, "task_id", None) == "bomb" for e in harness.events())


def test_empty_and_missing_values_are_dead_lettered() -> None:
    harness = Harness(APP)
    asyncio.run(harness.feed(b"", None))
    letters = harness.dead_letters()
    assert [d.source_offset for d in letters] == [0, 1]
    assert all("undecodable command" in d.reason for d in letters)


def _oversized(size: int) -> bytes:
    return raw_record(
        cmd.SubmitTask, submit_fields(task_id="big", payload='{"a":"' + "x" * size + '"}')
    )


def test_oversized_record_is_dead_lettered_naming_the_limit_with_bounded_raw() -> None:
    app = Distributor(make_settings(max_payload_bytes=4096))
    harness = Harness(app)
    value = _oversized(10_000)
    asyncio.run(harness.feed(value))
    (letter,) = harness.dead_letters()
    assert "over the limit of 4096 bytes" in letter.reason
    assert "TASKSTREAM_MAX_PAYLOAD_BYTES" in letter.reason
    assert letter.raw is not None and letter.raw == value[: len(letter.raw)]
    assert len(letter.raw) <= 4096
    assert f"of {len(value)})" in letter.reason
    assert not harness.events()


def test_payload_over_the_limit_inside_a_record_under_it_is_rejected_with_the_limit() -> None:
    # Payload size counted as canonical JSON: unicode escapes make it longer than the record.
    app = Distributor(make_settings(max_payload_bytes=4096))
    harness = Harness(app)
    value = raw_record(
        cmd.SubmitTask, submit_fields(task_id="wide", payload='{"a":"' + "é" * 1500 + '"}')
    )
    assert len(value) <= 4096
    asyncio.run(harness.feed(value))
    rejected = [e for e in harness.events() if isinstance(e, ev.TaskRejected)]
    assert [e.reason for e in rejected] == [
        "payload larger than 4096 bytes (TASKSTREAM_MAX_PAYLOAD_BYTES)"
    ]
    (letter,) = harness.dead_letters()
    assert letter.task_id == "wide" and letter.reason == rejected[0].reason
    assert len(CODEC.encode(letter)) <= 4096


def _count(events: list[Any], kind: type[Any]) -> int:
    return sum(isinstance(e, kind) for e in events)


def test_every_command_field_accepts_hostile_strings_without_crashing() -> None:
    values = []
    for i, text in enumerate(("\x00", "\u202e", "😀", "x" * 70_000, "")):
        values.append(
            raw_record(
                cmd.CancelTask, {"client_id": CLIENT, "task_id": text or "t", "reason": text}
            )
        )
        values.append(
            raw_record(
                cmd.RegisterSession,
                {
                    "client_id": CLIENT,
                    "session_id": f"s{i}{text}",
                    "agent_id": text or "a",
                    "max_concurrent": 2**31 - 1,
                    "capabilities": [text],
                },
            )
        )
    harness = _check(values)
    assert _count(harness.events(), ev.SessionRegistered) >= 4
