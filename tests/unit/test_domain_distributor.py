"""The Distributor adapter: codec, keys and the side records every event implies."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import ANY

import pytest
from pydantic import ValidationError

from schemas import commands as c
from schemas import events as ev
from schemas.codec import CODEC
from schemas.errors import DecodeError
from schemas.records import Assignment, DeadLetter
from streams.distributor import Distributor
from streams.domain import PartitionState
from streams.domain.state import RETIRED_TASK
from streams.runtime.protocol import Output
from streams.settings import Settings
from streams.state_codec import retired_key
from tests.support.dict_store import DictStore
from tests.support.gwt import register, submit


class Run:
    """Feeds commands through the adapter the way the runtime does."""

    def __init__(self, **settings: Any) -> None:
        self.app = Distributor(Settings(topic_prefix="ts", **settings))
        self.state: PartitionState = self.app.initial_state()
        self.outputs: list[Output] = []

    def do(self, command: c.Command, now: int = 0) -> list[Output]:
        raw = CODEC.encode(command)
        decoded = self.app.decode_command(raw)
        produced: list[Output] = []
        for event in self.app.decide(decoded, self.state, now):
            assert self.app.decode_event(self.app.encode_event(event)) == event
            self.state = self.app.evolve(self.state, event)
            produced.extend(self.app.outputs(self.state, event))
        self.outputs.extend(produced)
        return produced

    def token(self, task_id: str) -> int:
        token = self.state.tasks[task_id].fencing_token
        assert token is not None
        return token


def on(outputs: list[Output], topic: str) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


def test_commands_and_events_go_through_the_codec() -> None:
    app = Distributor(Settings())
    command = submit("t1", payload={"k": [1, 2]})
    assert app.decode_command(CODEC.encode(command)) == command
    with pytest.raises(DecodeError):
        app.decode_command(b"not avro")
    event = ev.TaskQueued(client_id="A", task_id="t1", occurred_at_ms=1, priority=3, attempt=1)
    with pytest.raises(DecodeError):
        app.decode_command(CODEC.encode(event))
    assert app.event_key(event) == b"A"
    assert app.event_type(event) == "task.queued"


def test_a_single_assignment_goes_to_the_session_with_its_payload() -> None:
    run = Run(default_timeout_ms=9_000)
    run.do(register("s1"))
    (out,) = run.do(submit("t1", operation="workflow_trigger", payload={"to": "x"}), now=100)
    assert (out.topic, out.key) == ("ts.assignments", b"s1")
    work = CODEC.decode_as(out.value, Assignment)
    assert work.kind == "task" and work.task_id == "t1" and work.session_id == "s1"
    assert (work.attempt, work.fencing_token, work.deadline_at_ms, work.timeout_ms) == (
        1,
        1,
        9_100,
        9_000,
    )
    assert work.priority == 1
    assert [(i.task_id, i.payload) for i in work.items] == [("t1", {"to": "x"})]


def test_pool_work_goes_to_the_pool_keyed_by_task() -> None:
    run = Run()
    (out,) = run.do(submit("sync", operation="integration_sync"))
    assert (out.topic, out.key) == ("ts.pool", b"sync")
    assert CODEC.decode_as(out.value, Assignment).session_id is None


def test_a_batch_is_one_assignment_with_every_item() -> None:
    run = Run(max_batch_size=3)
    run.do(register("s1"))
    run.do(submit("a", operation="tag_add", payload={"tag": "a"}))
    run.do(submit("b", operation="tag_add", payload={"tag": "b"}))
    (out,) = run.do(submit("c", operation="tag_add", payload={"tag": "c"}))
    work = CODEC.decode_as(out.value, Assignment)
    assert (out.topic, out.key, work.kind, work.batch_id) == (
        "ts.assignments",
        b"s1",
        "batch",
        "b-A-1",
    )
    assert [(i.task_id, i.payload["tag"]) for i in work.items] == [
        ("a", "a"),
        ("b", "b"),
        ("c", "c"),
    ]


def test_cancelling_handed_out_work_sends_a_cancel_signal() -> None:
    run = Run()
    run.do(register("s1"))
    run.do(submit("t1", operation="workflow_trigger"))
    token = run.token("t1")
    out, ended = run.do(c.CancelTask(client_id="A", task_id="t1", reason="stop"))
    work = CODEC.decode_as(out.value, Assignment)
    assert (out.key, work.kind, work.task_id, work.fencing_token, work.reason) == (
        b"s1", "cancel", "t1", token, "stop",
    )  # fmt: skip
    outcome = CODEC.decode_as(ended.value, ev.TaskFailed)
    assert (ended.topic, ended.key, outcome.outcome, outcome.attempt) == (
        "ts.failed", b"A", "cancelled", 1,
    )  # fmt: skip
    assert run.do(c.CancelTask(client_id="A", task_id="t1")) == []


def test_outcomes_retries_and_dead_letters() -> None:
    run = Run(max_retries=1)
    run.do(register("s1"))
    run.do(submit("ok", operation="workflow_trigger"))
    (done,) = run.do(
        c.ReportResult(client_id="A", task_id="ok", fencing_token=run.token("ok"), success=True)
    )
    assert (done.topic, done.key) == ("ts.completed", b"A")
    assert CODEC.decode_as(done.value, ev.TaskCompleted).task_id == "ok"

    run.do(submit("bad", operation="workflow_trigger", payload={"n": 1}), now=1_000)
    outs = run.do(
        c.ReportResult(
            client_id="A", task_id="bad", fencing_token=run.token("bad"), success=False, error="e1"
        ),
        now=1_000,
    )
    (retry,) = on(outs, "ts.retry.1s")
    due = CODEC.decode_as(retry.value, c.RetryDue)
    assert (retry.key, due.task_id, due.attempt, due.due_at_ms, due.kind) == (
        b"A",
        "bad",
        2,
        2_000,
        "retry",
    )
    run.do(due, now=2_000)
    outs = run.do(
        c.ReportResult(
            client_id="A", task_id="bad", fencing_token=run.token("bad"), success=False, error="e2"
        ),
        now=2_100,
    )
    (failed,) = on(outs, "ts.failed")
    assert CODEC.decode_as(failed.value, ev.TaskFailed).attempts[1].error == "e2"
    (dlq,) = on(outs, "ts.dlq")
    letter = CODEC.decode_as(dlq.value, DeadLetter)
    assert letter.task_id == "bad" and letter.operation == "workflow_trigger"
    assert [a["error"] for a in json.loads(letter.attempts_json)] == ["e1", "e2"]
    assert letter.submit["payload"] == {"n": 1} and letter.submit["max_retries"] == 1
    assert c.SubmitTask.model_validate(letter.submit).task_id == "bad"  # resubmittable


def test_scheduled_tasks_wait_in_the_state_not_on_a_delay_tier() -> None:
    """A start hours ahead writes no delay-tier record: the tick at its time starts it."""
    run = Run()
    six_hours = 6 * 3_600_000
    assert (
        run.do(
            submit("later", operation="workflow_trigger", scheduled_for_ms=1_000 + six_hours),
            now=1_000,
        )
        == []
    )
    assert run.app.tick(run.state, six_hours) == []  # not due yet
    events = run.app.tick(run.state, 1_000 + six_hours)
    assert [type(e).__name__ for e in events][:1] == ["TaskQueued"]
    assert events[0].reason == "scheduled"


def test_a_refused_submit_is_dead_lettered_with_the_submit() -> None:
    run = Run()
    ended, out = run.do(submit("t1", operation="teleport", payload={"a": 1}))
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert (out.topic, letter.reason, letter.submit["payload"]) == (
        "ts.dlq", "unknown operation 'teleport'", {"a": 1},
    )  # fmt: skip
    outcome = CODEC.decode_as(ended.value, ev.TaskFailed)
    assert (ended.topic, ended.key, outcome.outcome, outcome.operation, outcome.reason) == (
        "ts.failed", b"A", "refused", "teleport", "unknown operation 'teleport'",
    )  # fmt: skip


def test_undecodable_input_is_dead_lettered_with_the_raw_bytes() -> None:
    app = Distributor(Settings(topic_prefix="ts"))
    out = app.dead_letter(b"\x00junk", "undecodable", "ts.commands", 3, 42, 1_234, None)
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert (out.topic, out.key) == ("ts.dlq", None)
    assert (letter.raw, letter.source_partition, letter.source_offset) == (b"\x00junk", 3, 42)


def test_persistence_through_the_adapter_round_trips() -> None:
    run = Run()
    run.do(register("s1", max_concurrent=2))
    for i in range(4):
        run.do(submit(f"t{i}", operation="workflow_trigger"))
    store = DictStore(run.app.dump_changes(run.state))
    loaded = run.app.load_state(store)
    assert loaded == run.state
    assert loaded.indices() == run.state.indices()


def test_the_retention_setting_reaches_the_tick_and_forgetting_deletes_the_store_key() -> None:
    with pytest.raises(ValidationError):
        Settings(task_retention_ms=59_999)  # a window shorter than a minute is refused
    run = Run(task_retention_ms=60_000)
    run.do(submit("t1", operation="integration_sync"), now=10)
    run.do(
        c.ReportResult(client_id="A", task_id="t1", fencing_token=run.token("t1"), success=True),
        now=20,
    )
    before = dict(run.app.dump_changes(run.state))
    assert before[b"done/t1"] is not None and before[b"task/t1"] is None  # finished
    assert run.app.tick(run.state, 66_019) == []  # the window, and a tenth of it to sweep
    (event,) = run.app.tick(run.state, 66_020)
    assert isinstance(event, ev.TasksForgotten) and event.task_ids == ["t1"]
    assert run.app.decode_event(run.app.encode_event(event)) == event
    assert (run.app.event_key(event), run.app.event_type(event)) == (b"A", "tasks.forgotten")
    run.state = run.app.evolve(run.state, event)
    assert list(run.app.outputs(run.state, event)) == []
    assert dict(run.app.dump_changes(run.state)) == {
        b"meta": ANY,
        b"task/t1": None,
        b"done/t1": None,
        retired_key((20, RETIRED_TASK, "t1")): None,
    }


def test_an_outcome_record_is_its_event_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The completed notice and the TaskCompleted event are the same bytes, encoded once,
    whichever of the two is asked for first (the live path builds side records first)."""
    run = Run()
    run.do(register("s1"))
    run.do(submit("ok", operation="workflow_trigger"))
    result = c.ReportResult(client_id="A", task_id="ok", fencing_token=run.token("ok"), success=True)
    encoded: list[str] = []
    encode = CODEC.encode

    def counting(model: Any) -> bytes:
        encoded.append(type(model).__name__)
        return encode(model)

    monkeypatch.setattr(CODEC, "encode", counting)
    events, outputs = run.app.decide_folded(result, run.state, 10)
    (done,) = [e for e in events if isinstance(e, ev.TaskCompleted)]
    (notice,) = on(outputs, "ts.completed")
    assert run.app.encode_event(done) is notice.value
    assert encoded.count("TaskCompleted") == 1
    assert CODEC.decode_trusted(notice.value) == done
