"""Limits: when one is hit the input is rejected with a reason naming it, never dropped.

Payload and record size, the per-client queue bound, the batch size bound of results, JSON
nesting, and the bounded in-memory structures of the read side."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from projections import activity
from projections.fold import HISTORY_LIMIT
from projections.memory import MemorySource
from schemas import commands as c
from schemas import events as ev
from schemas.codec import CODEC
from schemas.fields import MAX_ID_LENGTH, MAX_INPUT_JSON_DEPTH
from schemas.records import DeadLetter
from streams.distributor import Distributor, fit_dead_letter
from streams.errors import RecordTooLargeError
from streams.settings import Settings
from tests.support.gwt import Harness, config, of, register, submit


def _settings(**overrides: object) -> Settings:
    return Settings(kafka_bootstrap_servers="unused:9092", **overrides)  # type: ignore[arg-type]


# -- per-client queue ------------------------------------------------------------------------


def test_a_submit_beyond_max_queued_per_client_is_rejected_as_queue_full() -> None:
    h = Harness(config(max_queued_per_client=2))
    h.do(submit("t1"))
    h.do(submit("t2"))
    events = h.do(submit("t3"))
    (rejected,) = of(events, ev.TaskRejected)
    assert rejected.task_id == "t3" and rejected.command == "SubmitTask"
    assert rejected.reason.startswith("queue full: client 'A' has 2 unfinished tasks")
    assert "TASKSTREAM_MAX_QUEUED_PER_CLIENT" in rejected.reason
    assert "t3" not in h.state.tasks
    # Other clients have their own bound.
    assert of(h.do(submit("b1", client="B")), ev.TaskAccepted)


def test_finished_tasks_free_their_place_in_the_queue() -> None:
    h = Harness(config(max_queued_per_client=2)).given(register("s1", max_concurrent=5))
    h.do(submit("t1", operation="workflow_trigger"))
    h.do(submit("t2", operation="workflow_trigger"))
    assert of(h.do(submit("t3")), ev.TaskRejected)
    h.succeed("t1")
    h.do(c.CancelTask(client_id="A", task_id="t2"))
    assert h.state.open_tasks == {}
    assert of(h.do(submit("t3")), ev.TaskAccepted)
    assert of(h.do(submit("t4")), ev.TaskAccepted)
    assert of(h.do(submit("t5")), ev.TaskRejected)
    # The counter is an index: rebuilt from the records it is the same.
    assert h.reloaded().open_tasks == h.state.open_tasks == {"A": 2}
    assert h.replayed().open_tasks == {"A": 2}


def test_an_identical_resubmit_of_a_queued_task_is_no_rejection_when_full() -> None:
    h = Harness(config(max_queued_per_client=1))
    h.do(submit("t1"))
    assert h.do(submit("t1")) == []  # a redelivery, not a new task


def test_the_queue_bound_is_a_setting() -> None:
    app = Distributor(_settings(max_queued_per_client=7))
    assert app.config.max_queued_per_client == 7
    assert Settings.model_fields["max_queued_per_client"].default == 100_000


# -- batch results ---------------------------------------------------------------------------


def _batch(h: Harness, size: int) -> ev.BatchProcessed:
    h.given(register("s1", max_concurrent=2))
    for i in range(size):
        h.do(submit(f"t{i}", operation="tag_add"))
    (batch,) = of(h.tick(10_000), ev.BatchProcessed)
    return batch


def test_a_result_naming_more_items_than_the_batch_is_rejected_whole() -> None:
    h = Harness(config(max_batch_size=10))
    batch = _batch(h, 3)
    items = [c.ItemResult(task_id=f"t{i}", success=True) for i in range(4)]
    events = h.do(
        c.ReportResult(
            client_id="A",
            batch_id=batch.batch_id,
            fencing_token=batch.fencing_token,
            success=True,
            items=items,
        )
    )
    (rejected,) = events
    assert isinstance(rejected, ev.CommandRejected)
    assert rejected.reason == f"result names 4 items, more than batch {batch.batch_id} has (3)"
    assert {h.status(f"t{i}") for i in range(3)} == {"assigned"}  # still awaiting a result


def test_a_result_for_an_unknown_batch_beyond_max_batch_size_is_one_rejection() -> None:
    h = Harness(config(max_batch_size=5))
    items = [c.ItemResult(task_id=f"x{i}", success=True) for i in range(1000)]
    events = h.do(
        c.ReportResult(client_id="A", batch_id="nope", fencing_token=1, success=True, items=items)
    )
    assert [type(e) for e in events] == [ev.CommandRejected]
    assert "max_batch_size (5)" in events[0].reason  # type: ignore[attr-defined]


def test_a_single_task_result_with_several_items_is_rejected() -> None:
    h = Harness().given(register("s1"))
    h.do(submit("t1", operation="workflow_trigger"))
    items = [c.ItemResult(task_id="t1", success=True), c.ItemResult(task_id="t2", success=True)]
    (rejected,) = h.do(
        c.ReportResult(
            client_id="A", task_id="t1", fencing_token=h.token("t1"), success=True, items=items
        )
    )
    assert isinstance(rejected, ev.CommandRejected)
    assert h.status("t1") == "assigned"


# -- sizes -----------------------------------------------------------------------------------


def test_the_decider_rejects_a_payload_over_the_limit_naming_it() -> None:
    h = Harness(config(max_payload_bytes=2048))
    (rejected,) = of(h.do(submit("big", payload={"a": "x" * 3000})), ev.TaskRejected)
    assert rejected.reason == "payload larger than 2048 bytes (TASKSTREAM_MAX_PAYLOAD_BYTES)"


def test_the_processor_refuses_records_over_the_limit_before_decoding() -> None:
    app = Distributor(_settings(max_payload_bytes=2048))
    value = CODEC.encode(submit("big", payload={"a": "x" * 3000}))
    with pytest.raises(RecordTooLargeError, match="over the limit of 2048 bytes"):
        app.decode_command(value)
    assert app.decode_command(CODEC.encode(submit("small"))) == submit("small")


def test_dead_letters_never_exceed_the_record_limit() -> None:
    app = Distributor(_settings(max_payload_bytes=4096))
    raw = b"\x00" * 4000
    out = app.dead_letter(raw, "undecodable command: " + "why " * 2000, "t.commands", 0, 7, 1, None)
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert len(out.value) <= 4096
    assert letter.raw is not None and 0 < len(letter.raw) < len(raw)
    assert letter.raw == raw[: len(letter.raw)]
    assert letter.reason.startswith("undecodable command: why why")
    assert f"(raw bytes cut to the first {len(letter.raw)} of 4000)" in letter.reason


def test_a_dead_letter_sheds_the_submitted_payload_first() -> None:
    letter = DeadLetter(
        reason="payload larger than 4096 bytes",
        task_id="t",
        submit={"task_id": "t", "payload": {"a": "x" * 5000}},
    )
    value = fit_dead_letter(letter, 4096)
    fitted = CODEC.decode_as(value, DeadLetter)
    assert len(value) <= 4096
    assert fitted.submit["task_id"] == "t"
    assert "over the limit of 4096" in fitted.submit["payload"]["_omitted"]
    assert fit_dead_letter(fitted, 4096) == value  # small letters pass unchanged


def test_ids_are_bounded_at_the_edge() -> None:
    submit("x" * MAX_ID_LENGTH)
    with pytest.raises(ValidationError, match="at most 512 characters"):
        submit("x" * (MAX_ID_LENGTH + 1))
    h = Harness()
    (rejected,) = of(h.do(submit("t", depends_on=["d" * 600])), ev.TaskRejected)
    assert "longer than 512 characters" in rejected.reason


# -- JSON documents --------------------------------------------------------------------------


def _nested(depth: int) -> dict[str, object]:
    doc: object = 1
    for _ in range(depth - 1):
        doc = [doc]
    return {"a": doc}


def test_payloads_nest_at_most_the_input_depth() -> None:
    submit("ok", payload=_nested(MAX_INPUT_JSON_DEPTH))
    with pytest.raises(ValidationError, match="nested deeper than 64 levels"):
        submit("deep", payload=_nested(MAX_INPUT_JSON_DEPTH + 1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"a":"\\ud800"}', "unpaired UTF-16 surrogate"),
        ({"a": "\udc00"}, "unpaired UTF-16 surrogate"),
        ('{"a":NaN}', "NaN or Infinity"),
        ('{"a":1e999}', "NaN or Infinity"),
        ({"a": float("inf")}, "NaN or Infinity"),
        ("[" * 100_000, "nested deeper"),
    ],
)
def test_documents_no_json_reader_could_use_are_refused(payload: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        submit("bad", payload=payload)


def test_an_emoji_written_as_a_surrogate_pair_is_fine() -> None:
    assert submit("ok", payload='{"a":"\\ud83d\\ude00"}').payload == {"a": "😀"}


# -- bounded read-side memory ----------------------------------------------------------------


def test_a_task_row_keeps_a_bounded_history() -> None:
    source = MemorySource()
    source.feed(
        ev.TaskAccepted(
            client_id="A",
            task_id="t",
            occurred_at_ms=1,
            operation="api_call",
            priority=3,
            max_retries=0,
            timeout_ms=1000,
        )
    )
    for i in range(HISTORY_LIMIT * 3):
        source.feed(
            ev.ResultIgnored(
                client_id="A",
                task_id="t",
                occurred_at_ms=2 + i,
                fencing_token=i,
                reason="stale fencing token",
            )
        )
    source.flush()
    row = source.tables.task("t")
    assert row is not None
    assert len(row.history) == HISTORY_LIMIT
    assert row.history[0].type == "task.accepted"  # how it began stays
    assert row.history[-1].at_ms == 1 + HISTORY_LIMIT * 3  # and the latest


def test_the_recent_activity_rings_are_bounded() -> None:
    source = MemorySource()
    for i in range(activity.EVENT_RING * 2):
        source.feed(
            ev.SessionHeartbeatReceived(client_id="A", occurred_at_ms=1000 * i, session_id="s")
        )
        source.flush()
    assert len(source.activity.events) == activity.EVENT_RING
    assert len(source.activity.depth) <= activity.DEPTH_RING
