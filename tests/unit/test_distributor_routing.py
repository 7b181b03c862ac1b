"""The distributor's side of routing: forwards re-produce the record byte for byte, tier
records go home by number, dead letters keep the record's key and name the client."""

from __future__ import annotations

from schemas import events as ev
from schemas.codec import CODEC
from schemas.commands import SubmitTask
from schemas.records import DeadLetter
from streams.distributor import Distributor
from streams.domain import PartitionState
from streams.kafka.headers import FORWARDED_HEADER
from streams.runtime.protocol import HOME
from streams.settings import Settings

APP = Distributor(Settings(topic_prefix="ts"))


def test_a_forward_is_an_event_whose_side_record_is_the_command_at_home() -> None:
    command = SubmitTask(client_id="acme", task_id="t1", operation="send_sms")
    value = CODEC.encode(command)
    event = APP.forward(command, value, b"raw-key", 0, 12, 5, 1_000)
    assert (event.client_id, event.command, event.task_id) == ("acme", "SubmitTask", "t1")
    assert CODEC.decode(CODEC.encode(event)) == event  # it travels on task.events
    state = PartitionState()
    assert APP.evolve(state, event) is state
    (out,) = APP.outputs(state, event)
    assert (out.topic, out.partition, out.key, out.value) == ("ts.commands", 5, b"raw-key", value)
    assert (FORWARDED_HEADER, b"0:12") in out.headers
    assert APP.home_key(command) == b"acme"


def test_tier_records_are_placed_on_the_events_partition() -> None:
    e = ev.TaskRetryScheduled(
        client_id="acme",
        occurred_at_ms=1_000,
        task_id="t1",
        attempt=2,
        delay_ms=1_000,
        due_at_ms=2_000,
        tier_ms=1_000,
        error="boom",
    )
    (out,) = APP.outputs(PartitionState(), e)
    assert (out.topic, out.partition, out.key) == ("ts.retry.1s", HOME, b"acme")


def test_a_dead_letter_keeps_the_records_key_and_reads_the_client_from_it() -> None:
    out = APP.dead_letter(b"\x00junk", "undecodable", "ts.commands", 3, 42, 1_234, b"acme")
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert (out.topic, out.key, letter.client_id) == ("ts.dlq", b"acme", "acme")


def test_a_dead_letter_without_a_key_names_the_client_of_a_readable_body() -> None:
    # Decodable Avro that fails validation (an empty task id): the client can still be read.
    raw = CODEC.encode(
        SubmitTask.model_construct(
            client_id="acme", task_id="", operation="send_sms", payload={}, priority=None,
            max_retries=None, timeout_ms=None, scheduled_for_ms=None, requires_review=False,
            depends_on=[], capabilities=[],
        )
    )  # fmt: skip
    out = APP.dead_letter(raw, "rejected command", "ts.commands", 1, 2, 3, None)
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert (out.key, letter.client_id) == (b"acme", "acme")


def test_a_key_that_is_not_text_is_kept_as_it_is() -> None:
    out = APP.dead_letter(b"\x00junk", "undecodable", "ts.commands", 3, 42, 1_234, b"\xff\xfe")
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert (out.key, letter.client_id) == (b"\xff\xfe", None)
