"""The delay agent's timing rules and record routing, without a broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import CODEC
from schemas.commands import RetryDue, SubmitTask
from schemas.records import DeadLetter
from streams.delay import (
    DelayAgent,
    WakeupPlan,
    destination_tier,
    plan_wakeups,
    poll_timeout_ms,
    release_at_ms,
)
from streams.domain.retry import RETRY_TIERS_MS
from streams.kafka.headers import HOME_HEADER
from streams.kafka.routing import home_partition
from streams.settings import Settings


def test_release_is_the_due_time_when_it_comes_before_the_tier_delay() -> None:
    assert release_at_ms(due_at_ms=10_500, record_timestamp_ms=10_000, tier_ms=1000) == 10_500


def test_release_is_the_end_of_the_tier_delay_when_due_later() -> None:
    assert release_at_ms(due_at_ms=50_000, record_timestamp_ms=10_000, tier_ms=4000) == 14_000


def test_due_record_goes_to_commands() -> None:
    assert destination_tier(due_at_ms=1000, now_ms=1000) is None
    assert destination_tier(due_at_ms=999, now_ms=1000) is None


def test_record_due_later_goes_to_the_largest_fitting_tier() -> None:
    assert destination_tier(due_at_ms=10_000, now_ms=0) == 8000
    assert destination_tier(due_at_ms=1_000_000, now_ms=0) == 32000
    assert destination_tier(due_at_ms=300, now_ms=0) == 1000


def test_plan_resumes_due_partitions_and_wakes_for_the_earliest_other() -> None:
    plan = plan_wakeups({"a": 100, "b": 250, "c": 90, "d": 400}, now_ms=100)
    assert set(plan.resume) == {"a", "c"}
    assert plan.next_wakeup_ms == 250


def test_plan_with_nothing_held() -> None:
    assert plan_wakeups({}, now_ms=5) == WakeupPlan((), None)


@given(
    held=st.dictionaries(st.integers(0, 50), st.integers(0, 10_000), max_size=20),
    now=st.integers(0, 10_000),
)
def test_plan_partitions_every_held_head(held: dict[int, int], now: int) -> None:
    plan = plan_wakeups(held, now)
    assert all(held[k] <= now for k in plan.resume)
    waiting = {k for k in held if k not in plan.resume}
    assert all(held[k] > now for k in waiting)
    if waiting:
        assert plan.next_wakeup_ms == min(held[k] for k in waiting)
        assert plan.next_wakeup_ms is not None and plan.next_wakeup_ms > now
    else:
        assert plan.next_wakeup_ms is None


def test_poll_waits_until_the_next_wakeup_but_never_longer_than_the_cap() -> None:
    assert poll_timeout_ms(1_150, now_ms=1_000, max_wait_ms=500) == 150
    assert poll_timeout_ms(9_000, now_ms=1_000, max_wait_ms=500) == 500
    assert poll_timeout_ms(None, now_ms=1_000, max_wait_ms=500) == 500
    assert poll_timeout_ms(900, now_ms=1_000, max_wait_ms=500) == 0


@dataclass
class FakeRecord:
    value: bytes | None
    timestamp: int
    offset: int = 7
    key: bytes | None = b"client-1"
    headers: tuple[tuple[str, bytes], ...] = ()


def _agent() -> DelayAgent:
    agent = DelayAgent(Settings(kafka_bootstrap_servers="127.0.0.1:1", topic_prefix="p"))
    # What ``run`` learns from the cluster: 8 command partitions, tiers of 8 (16s: 4).
    agent._partitions = {"p.commands": 8, **{t: 8 for t in agent.tier_topics}, "p.retry.16s": 4}
    return agent


def _retry(due_at_ms: int) -> bytes:
    return CODEC.encode(
        RetryDue(client_id="client-1", task_id="t1", attempt=1, due_at_ms=due_at_ms)
    )


TP = TopicPartition("p.retry.4s", 2)


def _route(record: Any, now: int, tier_ms: int = 4000) -> Any:
    return _agent()._route(TP, record, tier_ms, now)


def test_route_holds_a_record_that_is_not_due() -> None:
    assert _route(FakeRecord(_retry(20_000), timestamp=10_000), now=12_000) == 14_000


def test_route_forwards_a_due_record_to_commands_keyed_by_client() -> None:
    value = _retry(13_000)
    headers = (("h", b"1"), (HOME_HEADER, b"5"))
    out = _route(FakeRecord(value, timestamp=10_000, headers=headers), now=13_000)
    assert (out.topic, out.partition, out.key, out.value, out.headers) == (
        "p.commands",
        5,  # the partition the processor named, whatever the key hashes to
        b"client-1",
        value,
        list(headers),
    )


def test_route_sends_a_record_without_home_header_to_the_clients_home_partition() -> None:
    out = _route(FakeRecord(_retry(13_000), timestamp=10_000), now=13_000)
    assert (out.topic, out.partition) == ("p.commands", home_partition("client-1", 8))


def test_a_home_header_naming_no_command_partition_falls_back_to_the_home() -> None:
    record = FakeRecord(_retry(13_000), timestamp=10_000, headers=((HOME_HEADER, b"99"),))
    assert _route(record, now=13_000).partition == home_partition("client-1", 8)


def test_route_re_tiers_a_record_due_after_its_tier() -> None:
    value = _retry(30_000)
    record = FakeRecord(value, timestamp=10_000, headers=((HOME_HEADER, b"6"),))
    out = _route(record, now=14_000)
    assert (out.topic, out.key, out.value) == ("p.retry.16s", b"client-1", value)
    assert out.partition == 6 % 4  # the home's number, on a tier of 4 partitions
    assert (HOME_HEADER, b"6") in out.headers


def test_every_tier_topic_is_subscribed() -> None:
    assert _agent().tier_topics == [f"p.retry.{t // 1000}s" for t in RETRY_TIERS_MS]


def test_route_dead_letters_undecodable_bytes_with_the_raw_value() -> None:
    out = _route(FakeRecord(b"not avro", timestamp=10_000, offset=42), now=10_000)
    assert out.topic == "p.dlq" and out.key == b"client-1"
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert letter.raw == b"not avro"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "p.retry.4s",
        2,
        42,
    )
    assert "undecodable" in letter.reason and letter.client_id == "client-1"


def test_route_dead_letters_a_record_that_is_not_a_retry_due() -> None:
    other = CODEC.encode(SubmitTask(client_id="c", task_id="t", operation="send_sms"))
    out = _route(FakeRecord(other, timestamp=10_000), now=10_000)
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert "RetryDue" in letter.reason and letter.raw == other


def test_route_dead_letters_an_empty_record() -> None:
    out = _route(FakeRecord(None, timestamp=10_000, key=None), now=10_000)
    letter = CODEC.decode_as(out.value, DeadLetter)
    assert out.key is None and letter.raw is None and "empty" in letter.reason
