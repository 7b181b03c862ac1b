"""Delay agents against a real broker: due times, re-tiering, dead letters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from schemas.records import DeadLetter
from streams.delay import DelayAgent
from streams.settings import Settings, retry_tier_name
from tests.support.delay_agent import (
    EARLY_TOLERANCE_MS,
    assert_not_early,
    collecting,
    delay_settings,
    now_ms,
    produce,
    retry,
    running,
    task_ids,
)

pytestmark = pytest.mark.integration


async def test_records_come_out_when_due_in_order_and_never_early(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    async with (
        running(DelayAgent(settings)) as agent,
        collecting(settings, "commands") as commands,
    ):
        t0 = now_ms()
        await produce(
            settings,
            [
                (1000, retry("one-second", t0 + 1000)),
                (2000, retry("two-seconds", t0 + 2000)),
                # One tier, two partitions: the heads held on partition 0 must not delay the
                # earlier record on partition 1.
                (4000, retry("held-head", t0 + 3500), 0),
                (4000, retry("four-seconds", t0 + 4000), 0),
                (4000, retry("not-blocked", t0 + 1500), 1),
            ],
        )
        seen = await commands.wait_for(5, timeout_s=20)
        assert agent.forwarded == 5

    assert sorted(task_ids(seen)) == sorted(
        ["one-second", "two-seconds", "four-seconds", "held-head", "not-blocked"]
    )
    in_time_order = [s.value.task_id for s in sorted(seen, key=lambda s: s.timestamp)]
    assert in_time_order == [
        "one-second",
        "not-blocked",
        "two-seconds",
        "held-head",
        "four-seconds",
    ]
    assert_not_early(seen)
    for s in seen:
        assert s.key == s.value.client_id.encode()
        assert s.wall_ms <= s.value.due_at_ms + 10_000
    # Forwarded records keep their keys, so they land where the client's commands do.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for s in seen:
            meta = await producer.send_and_wait(
                settings.topic("commands"), b"probe", key=s.value.client_id.encode()
            )
            assert meta.partition == s.partition
    finally:
        await producer.stop()


async def test_record_due_after_its_tier_is_re_tiered(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    async with (
        running(DelayAgent(settings)) as agent,
        collecting(settings, "commands") as commands,
        collecting(settings, retry_tier_name(1000)) as tier_1s,
        collecting(settings, retry_tier_name(2000)) as tier_2s,
    ):
        t0 = now_ms()
        record = retry("late", t0 + 3500)
        await produce(settings, [(1000, record)])
        seen = await commands.wait_for(1, timeout_s=20)
        on_1s = await tier_1s.wait_for(1, timeout_s=1)
        on_2s = await tier_2s.wait_for(0, timeout_s=0)
        assert agent.retiered >= 1

    assert task_ids(seen) == ["late"]
    assert_not_early(seen)
    # The first copy the agent wrote: on the 2 s tier, or (when the agent looked late, as on a
    # loaded machine) back on the 1 s tier; on_1s[0] is the record the test produced.
    copies = sorted(
        [(s, 2000) for s in on_2s] + [(s, 1000) for s in on_1s[1:]], key=lambda c: c[0].timestamp
    )
    assert copies, "the record was forwarded without being re-tiered"
    first, tier_ms = copies[0]
    assert first.value == record
    assert first.key == record.client_id.encode()
    # It sat out its 1 s tier first, and went to the longest tier the remaining wait fills.
    assert first.timestamp >= t0 + 1000 - EARLY_TOLERANCE_MS
    remaining_ms = record.due_at_ms - first.timestamp
    assert tier_ms <= remaining_ms + EARLY_TOLERANCE_MS
    if remaining_ms > 2000 + EARLY_TOLERANCE_MS:
        assert tier_ms == 2000


async def test_undecodable_record_is_dead_lettered_and_skipped(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        garbage = await producer.send_and_wait(
            settings.topic("retry.1s"), b"\x00garbage", key=b"client-x", partition=2
        )
    finally:
        await producer.stop()
    # A good record behind the bad one in the same partition still comes out.
    await produce(settings, [(1000, retry("after-garbage", now_ms(), "client-x"), 2)])

    async with (
        running(DelayAgent(settings)) as agent,
        collecting(settings, "commands") as commands,
        collecting(settings, "dlq") as dlq,
    ):
        seen = await commands.wait_for(1, timeout_s=20)
        letters = await dlq.wait_for(1, timeout_s=5)
        assert agent.dead_lettered == 1

    assert task_ids(seen) == ["after-garbage"]
    assert len(letters) == 1
    letter = letters[0].value
    assert isinstance(letter, DeadLetter)
    assert letter.raw == b"\x00garbage"
    assert letter.client_id == "client-x"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        settings.topic("retry.1s"),
        2,
        garbage.offset,
    )
    assert "Avro" in letter.reason or "undecodable" in letter.reason
