"""Home partitions and bounded clocks in the processing cycle, with fakes.

A command read away from its home partition is recorded and forwarded there once; a command's
time is its record time clamped to the processor's clock plus the skew, never below the
partition's own time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.headers import FORWARDED_HEADER, HOME_HEADER
from streams.kafka.routing import home_partition
from streams.runtime.causation import cause_of
from streams.runtime.clock import decision_time
from streams.runtime.partition import PartitionRun
from streams.runtime.processing import Processor
from streams.runtime.protocol import HOME, Output
from streams.runtime.recovery import recover_partition
from streams.runtime.staging import stage
from streams.runtime.store import PartitionStore
from tests.integration.runtime_app import CounterApp, incr, schedule
from tests.support.runtime_fakes import TOPICS, Broker, FakeStore, Journal

PARTITIONS = 4
WALL = 1_000_000


def _key_with_home(home: int) -> str:
    return next(k for k in (f"k{i}" for i in range(1000)) if home_partition(k, PARTITIONS) == home)


def setup(
    *, routed: bool = True, skew: int = 5_000
) -> tuple[Journal, Processor[Any], list[PartitionRun[Any]]]:
    journal = Journal()
    app = CounterApp("p", routed=routed)
    processor: Processor[Any] = Processor(
        app,
        TOPICS,
        journal,
        journal.commit,
        partitions=PARTITIONS,
        max_skew_ms=skew,
        clock=lambda: WALL,
    )
    runs = [
        PartitionRun(p, FakeStore(journal), app.initial_state(), 0, 0) for p in range(PARTITIONS)
    ]
    return journal, processor, runs


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def record(
    partition: int,
    offset: int,
    value: bytes,
    timestamp: int = WALL,
    key: bytes | None = None,
    headers: tuple[tuple[str, bytes], ...] = (),
) -> Rec:
    return Rec("p.commands", partition, offset, timestamp, value, key, headers)


def added(journal: Journal, topic: str) -> list[tuple[str, int | None, bytes | None, bytes, Any]]:
    return [a for a in journal.added if a[0] == topic]


# --- the clock rule -----------------------------------------------------------------------


def test_a_record_ahead_is_decided_at_most_the_skew_ahead_of_the_clock() -> None:
    assert decision_time(WALL + 120_000, 0, WALL, 5_000) == WALL + 5_000
    assert decision_time(WALL + 3_000, 0, WALL, 5_000) == WALL + 3_000


def test_a_record_from_the_past_is_decided_at_the_partitions_present() -> None:
    assert decision_time(WALL - 3_600_000, WALL - 50, WALL, 5_000) == WALL - 50
    assert decision_time(WALL - 10, WALL - 50, WALL, 5_000) == WALL - 10


def test_a_clock_stepping_back_never_moves_a_partitions_time_back() -> None:
    assert decision_time(WALL, WALL + 2_000, WALL - 10_000, 5_000) == WALL + 2_000


# --- bounded clocks in the cycle ------------------------------------------------------------


async def test_a_fast_producer_moves_the_partitions_time_by_the_skew_at_most() -> None:
    journal, processor, runs = setup(routed=False)
    run = runs[0]
    ahead = record(0, 0, schedule("a", 1, delay_ms=1_000)[1], timestamp=WALL + 120_000)
    honest = record(0, 1, schedule("b", 1, delay_ms=1_000)[1], timestamp=WALL + 10)
    processor.apply_commands(run, [ahead, honest])
    await processor.complete()
    dues = [json.loads(v)["due"] for _, _, _, v, _ in added(journal, "p.events")]
    # the honest client's 1 s timer comes due within the skew of its own second, not 120 s on
    assert dues == [WALL + 5_000 + 1_000, WALL + 5_000 + 1_000]
    causes = [cause_of(h, 0) for *_, h in added(journal, "p.events")]
    assert [c.at_ms for c in causes if c is not None] == [WALL + 5_000, WALL + 5_000]
    assert run.last_command_ms == WALL + 5_000


async def test_a_record_from_the_past_gets_deadlines_from_the_partitions_present() -> None:
    journal, processor, runs = setup(routed=False)
    run = runs[0]
    processor.apply_tick(run, WALL - 100)  # caught up: the partition ticks at the wall clock
    old = record(0, 0, schedule("a", 1, delay_ms=1_000)[1], timestamp=WALL - 3_600_000)
    processor.apply_commands(run, [old])
    await processor.complete()
    (event,) = added(journal, "p.events")
    assert json.loads(event[3])["due"] == WALL - 100 + 1_000


# --- home partitions ------------------------------------------------------------------------


async def test_a_command_away_from_home_is_recorded_and_forwarded_home_once() -> None:
    journal, processor, runs = setup()
    key = _key_with_home(2)
    value = incr(key, 5)[1]
    processor.apply_commands(runs[0], [record(0, 7, value, key=b"crc32-placed")])
    await processor.complete()
    (forwarded_event,) = added(journal, "p.events")
    assert forwarded_event[1] == 0  # recorded where it arrived
    assert json.loads(forwarded_event[3])["type"] == "forwarded"
    (sent,) = added(journal, "p.commands")
    topic, partition, record_key, sent_value, headers = sent
    assert (partition, record_key, sent_value) == (2, key.encode(), value)
    assert (FORWARDED_HEADER, b"0:7") in headers
    assert runs[0].state.totals == {}  # not decided away from home
    assert processor.forwarded_total == 1
    assert journal.calls[-1] == ("commit", {0: 8})

    # at home it is decided like any command
    processor.apply_commands(runs[2], [record(2, 0, sent_value, headers=tuple(headers))])
    await processor.complete()
    assert runs[2].state.totals == {key: 5}


async def test_a_forwarded_command_that_lands_away_from_home_again_is_dead_lettered() -> None:
    journal, processor, runs = setup()
    key = _key_with_home(2)
    stray = record(1, 3, incr(key, 5)[1], key=b"k", headers=((FORWARDED_HEADER, b"0:7"),))
    processor.apply_commands(runs[1], [stray])
    await processor.complete()
    assert added(journal, "p.commands") == []  # never sent round again
    (letter,) = added(journal, "p.dlq")
    assert letter[2] == b"k"  # the dead letter keeps the record's key
    reason = json.loads(letter[3])["reason"]
    assert "forwarded from partition 0 to 1" in reason and "home is partition 2" in reason
    assert journal.calls[-1] == ("commit", {1: 4})


async def test_a_command_at_home_is_decided_there() -> None:
    journal, processor, runs = setup()
    key = _key_with_home(3)
    processor.apply_commands(runs[3], [record(3, 0, incr(key, 2)[1])])
    await processor.complete()
    assert runs[3].state.totals == {key: 2} and added(journal, "p.commands") == []


async def test_side_records_placed_home_go_to_the_events_partition_and_name_it() -> None:
    journal = Journal()
    pending = [
        Output("p.retry.1s", b"c", b"due", partition=HOME),
        Output("p.assignments", b"session", b"work"),
        Output("p.commands", b"c", b"forwarded", partition=1),
    ]
    staged = await stage(journal, pending, 3)
    assert [(s.topic, s.partition) for s in staged] == [
        ("p.retry.1s", 3),
        ("p.assignments", 0),  # placed by its key (the fake places everything on 0)
        ("p.commands", 1),
    ]
    homes = [dict(s.headers).get(HOME_HEADER) for s in staged]
    assert homes == [b"3", b"3", None]  # an explicitly placed record is the app's own choice


@pytest.mark.parametrize("home", range(PARTITIONS))
def test_keys_found_for_every_home(home: int) -> None:
    assert home_partition(_key_with_home(home), PARTITIONS) == home


async def test_a_forward_cut_short_by_a_crash_is_produced_once_by_recovery(
    tmp_path: Path,
) -> None:
    broker = Broker()
    app = CounterApp("p", routed=True)

    async def recover() -> PartitionRun[Any]:
        store, reason = PartitionStore.open(tmp_path / "s")
        run, _ = await recover_partition(
            app, store, 0, TOPICS, broker, broker, broker.committed.get(0), rebuilt_reason=reason
        )
        return run

    run = await recover()
    key = _key_with_home(2)
    arrived = broker.command(incr(key, 5))  # on partition 0, away from home
    processor: Processor[Any] = Processor(app, TOPICS, broker, broker.commit, partitions=4)
    processor.apply_commands(run, [arrived])
    await broker.flush()  # the event reached the log; the process died before the store write
    assert broker.log("p.commands", 2) == []
    run.store.close()
    run = await recover()
    (sent,) = broker.log("p.commands", 2)
    assert (sent.key, sent.value) == (key.encode(), arrived.value)
    assert (FORWARDED_HEADER, b"0:0") in sent.headers
    run.store.close()
    run = await recover()  # recovering again sends nothing more
    assert len(broker.log("p.commands", 2)) == 1
    assert run.next_command_offset == 1


def test_causation_headers_with_and_without_the_decision_time_parse() -> None:
    from streams.runtime.causation import Cause

    assert Cause.parse(b"c:1:40:0:2", 1) == Cause("c", 1, 40, 0, 2, None)
    assert Cause.parse(b"c:1:40:0:2:1234", 1) == Cause("c", 1, 40, 0, 2, 1234)
    assert Cause("c", 1, 40, 0, 2, 1234).encode() == b"c:1:40:0:2:1234"
    assert Cause.parse(b"c:1:40:0:2:x", 1) is None


def test_a_forward_reads_as_one_line_in_the_tail() -> None:
    from schemas import events as ev
    from streams.cli.render import describe_event

    line = describe_event(
        ev.CommandForwarded(
            client_id="acme",
            occurred_at_ms=1_000,
            command="SubmitTask",
            task_id="t1",
            source_partition=0,
            source_offset=7,
            home_partition=2,
            key=b"acme",
            value=b"\xc3\x01" + b"x" * 500,
        )
    )
    assert "command.forwarded" in line and "home_partition=2" in line
    assert "value=<502 bytes>" in line and "xxx" not in line


def test_the_processor_writes_the_header_cause_encode_writes() -> None:
    from streams.runtime.causation import (
        Cause,
        command_head,
        decided_at_tail,
        position,
        tick_head,
    )

    for index, count in ((0, 1), (0, 3), (2, 3)):
        parts = command_head(4, 77) + position(index, count) + decided_at_tail(9)
        assert parts == Cause("c", 4, 77, index, count, 9).encode()
        assert Cause.parse(parts, 4) == Cause("c", 4, 77, index, count, 9)
        ticked = tick_head(5_000) + position(index, count)
        assert ticked == Cause("t", 4, 5_000, index, count).encode()
        assert Cause.parse(ticked, 4) == Cause("t", 4, 5_000, index, count)
