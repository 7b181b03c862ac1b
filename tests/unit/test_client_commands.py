"""Client-side validation and size checks: nothing invalid reaches the broker."""

from __future__ import annotations

import asyncio

import pytest

from schemas.codec import CODEC
from schemas.commands import CancelTask, SubmitTask
from schemas.events import TaskCompleted
from streams.client import TaskstreamClient, encode_command
from streams.errors import (
    ClientClosedError,
    InvalidCommandError,
    PayloadTooLargeError,
    TaskstreamError,
)
from streams.kafka.topics import topic_layout
from streams.settings import Settings


def test_a_valid_command_encodes_to_what_the_codec_decodes() -> None:
    command = SubmitTask(client_id="c1", task_id="t1", operation="send_sms", payload={"a": [1]})
    assert CODEC.decode(encode_command(command, 1_000_000)) == command


def test_an_oversized_command_is_refused_with_the_limit_in_the_message() -> None:
    command = SubmitTask(client_id="c1", task_id="t1", operation="x", payload={"blob": "a" * 5000})
    with pytest.raises(PayloadTooLargeError, match=r"4,096.*TASKSTREAM_MAX_PAYLOAD_BYTES"):
        encode_command(command, 4096)
    assert issubclass(PayloadTooLargeError, TaskstreamError)


def test_a_command_that_skipped_validation_is_refused() -> None:
    command = CancelTask.model_construct(client_id="", task_id="t1", reason=None)
    with pytest.raises(InvalidCommandError, match="invalid CancelTask: client_id"):
        encode_command(command, 1_000_000)


def test_a_payload_that_is_not_json_is_refused() -> None:
    command = SubmitTask(client_id="c1", task_id="t1", operation="x", payload={"s": {1, 2}})
    with pytest.raises(InvalidCommandError):
        encode_command(command, 1_000_000)


def test_only_commands_are_sent() -> None:
    event = TaskCompleted(client_id="c", occurred_at_ms=1, task_id="t", operation="x", attempt=1)
    with pytest.raises(InvalidCommandError, match="expected a command model"):
        encode_command(event, 1_000_000)  # type: ignore[arg-type]


def _client() -> TaskstreamClient:
    return TaskstreamClient(Settings(kafka_bootstrap_servers="127.0.0.1:1"))


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"priority": 9}, "priority"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"task_id": ""}, "task_id"),
    ],
)
async def test_submit_validates_before_anything_is_produced(
    kwargs: dict[str, object], problem: str
) -> None:
    # The client is not even started: validation must fail first.
    with pytest.raises(InvalidCommandError, match=f"invalid SubmitTask: {problem}"):
        await _client().submit("c1", "send_sms", {}, **kwargs)  # type: ignore[arg-type]


async def test_submit_needs_a_client_and_an_operation() -> None:
    with pytest.raises(InvalidCommandError, match="client_id"):
        await _client().submit("", "send_sms")
    with pytest.raises(InvalidCommandError, match="operation"):
        await _client().submit("c1", "")


async def test_session_commands_validate_too() -> None:
    with pytest.raises(InvalidCommandError, match="max_concurrent"):
        await _client().register_session("c1", "s1", "agent", max_concurrent=0)
    with pytest.raises(InvalidCommandError, match="session_id"):
        await _client().heartbeat("c1", "")


async def test_a_valid_command_on_an_unstarted_client_says_so() -> None:
    with pytest.raises(ClientClosedError, match="not started"):
        await _client().cancel("c1", "t1")


def test_outcomes_need_a_group() -> None:
    with pytest.raises(InvalidCommandError, match="group"):
        _client().outcomes(group_id="")


async def test_sends_that_start_together_check_the_topic_layout_once() -> None:
    class Meta:
        topic, partition, offset = "t", 0, 0

    class Cluster:
        def __init__(self, names: list[str]) -> None:
            self.names = names

        def topics(self) -> list[str]:
            return self.names

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(4))

    class Client:
        fetches = 0

        async def fetch_all_metadata(self) -> Cluster:
            Client.fetches += 1
            await asyncio.sleep(0.01)  # the other sends arrive while this one waits
            return Cluster(names)

    class Producer:
        client = Client()

        async def send_and_wait(self, *args: object, **kwargs: object) -> Meta:
            return Meta()

    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", partitions=4)
    names = [spec.name for spec in topic_layout(settings)]
    client = TaskstreamClient(settings)
    client._producer = Producer()
    await asyncio.gather(*(client.submit("A", "contact_create", {"n": i}) for i in range(50)))
    assert Client.fetches == 1
