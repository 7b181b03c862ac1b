"""The processing cycle with fakes: what is appended, and the order of flush, store write and
commit (the commit order written down in ``streams.runtime.processing``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from streams.kafka.headers import CAUSE_HEADER, TYPE_HEADER
from streams.runtime.causation import Cause, cause_of
from streams.runtime.partition import PartitionRun
from streams.runtime.processing import Processor
from streams.runtime.store import StoredOffsets
from tests.integration.runtime_app import CounterApp, incr, schedule
from tests.support.runtime_fakes import TOPICS, FakeStore, Journal


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes | None
    key: bytes | None = None


def setup(partitions: int = 1) -> tuple[Journal, Processor[Any], list[PartitionRun[Any]]]:
    journal = Journal()
    app = CounterApp("p")
    processor: Processor[Any] = Processor(app, TOPICS, journal, journal.commit)
    runs = [
        PartitionRun(p, FakeStore(journal), app.initial_state(), 0, 0) for p in range(partitions)
    ]
    return journal, processor, runs


def commands(partition: int, *values: tuple[str, bytes], start: int = 0) -> list[Rec]:
    return [
        Rec("p.commands", partition, start + i, 1_000 + i, value)
        for i, (_, value) in enumerate(values)
    ]


async def test_cycle_produces_then_flushes_then_writes_store_then_commits() -> None:
    journal, processor, (run0, run1) = setup(2)
    processor.apply_commands(run0, commands(0, incr("a", 1, times=2), incr("a", 5)))
    processor.apply_commands(run1, commands(1, incr("b", 3)))
    await processor.complete()

    kinds = [kind for kind, _ in journal.calls]
    # events, flush, checkpoint with the side records staged, side records, flush, unstage,
    # commit: no side record leaves before the store reflects its event
    assert kinds == [
        *["produce"] * 4,
        "flush",
        "store-write",
        "store-write",
        *["produce"] * 4,
        "flush",
        "store-unstage",
        "store-unstage",
        "commit",
    ]
    assert [a[0] for a in journal.added] == ["p.events"] * 4 + ["p.completed"] * 4
    writes = [arg for kind, arg in journal.calls if kind == "store-write"]
    assert writes[0] == ([(b"total:a", b"7")], StoredOffsets(events=3, commands=2))
    assert writes[1] == ([(b"total:b", b"3")], StoredOffsets(events=1, commands=1))
    assert journal.calls[-1] == ("commit", {0: 2, 1: 1})
    assert run0.store.staged == {} and run1.store.staged == {}  # type: ignore[attr-defined]


async def test_events_go_to_the_command_partition_with_causation_headers() -> None:
    journal, processor, (_, run) = setup(2)
    processor.apply_commands(run, commands(1, incr("a", 2, times=2), start=40))
    await processor.complete()
    events = [a for a in journal.added if a[0] == "p.events"]
    assert [(topic, partition, key) for topic, partition, key, _, _ in events] == [
        ("p.events", 1, b"a"),
        ("p.events", 1, b"a"),
    ]
    causes = [cause_of(headers, 1) for *_, headers in events]
    # ... and the decision time (the record's, within the clock's bound)
    assert causes == [Cause("c", 1, 40, 0, 2, 1_000), Cause("c", 1, 40, 1, 2, 1_000)]
    assert [dict(h)[CAUSE_HEADER] for *_, h in events] == [
        b"c:1:40:0:2:1000",
        b"c:1:40:1:2:1000",
    ]
    assert {dict(h)[TYPE_HEADER] for *_, h in events} == {b"incremented"}
    assert [json.loads(v)["total"] for _, _, _, v, _ in events] == [2, 4]


async def test_undecodable_command_is_dead_lettered_and_processing_goes_on() -> None:
    journal, processor, (run,) = setup()
    records = commands(0, incr("a"), ("x", b"\xffnot json"), incr("a"))
    processor.apply_commands(run, records)
    await processor.complete()
    dlq = [a for a in journal.added if a[0] == "p.dlq"]
    assert len(dlq) == 1
    letter = json.loads(dlq[0][3])
    assert letter["offset"] == 1 and letter["reason"].startswith("undecodable command")
    assert run.state.totals == {"a": 2}
    assert journal.calls[-1] == ("commit", {0: 3})


async def test_records_already_reflected_are_skipped() -> None:
    journal, processor, (run,) = setup()
    run.next_command_offset = 5
    processor.apply_commands(run, commands(0, incr("a"), incr("a", 10), start=4))
    await processor.complete()
    assert run.state.totals == {"a": 10}
    assert run.next_command_offset == 6


async def test_tick_events_carry_the_tick_time_and_take_the_same_path() -> None:
    journal, processor, (run,) = setup()
    processor.apply_commands(run, commands(0, schedule("a", 1, delay_ms=10, times=2)))
    await processor.complete()
    journal.calls.clear()
    processor.apply_tick(run, now_ms=1_005)  # nothing due yet: no events, nothing written
    await processor.complete()
    assert [kind for kind, _ in journal.calls] == ["flush"]
    processor.apply_tick(run, now_ms=2_000)
    await processor.complete()
    headers = [dict(h)[CAUSE_HEADER] for t, *_, h in journal.added if t == "p.events"]
    assert headers[-2:] == [b"t:2000:0:2", b"t:2000:1:2"]
    kinds = [kind for kind, _ in journal.calls]
    # a tick has no command offset to commit
    assert kinds[-6:] == ["flush", "store-write", "produce", "produce", "flush", "store-unstage"]
    assert run.state.totals == {"a": 2} and run.state.timers == {}


async def test_tick_times_strictly_increase_per_partition() -> None:
    _, processor, (run,) = setup()
    processor.apply_tick(run, now_ms=500)
    processor.apply_tick(run, now_ms=400)  # wall clock stepped back
    assert run.last_tick_ms == 501


class GatedJournal(Journal):
    """A sink whose flushes of side records wait until the test lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self._flushed_to = 0  # calls up to here were taken by an earlier flush

    async def flush(self) -> dict[tuple[str, int], int]:
        mine, self._flushed_to = self.calls[self._flushed_to :], len(self.calls)
        if any(kind == "produce" and arg == "p.completed" for kind, arg in mine):
            await self.gate.wait()
        return await super().flush()


def overlapped(journal: Journal) -> tuple[Processor[Any], PartitionRun[Any]]:
    """A processor with ``overlap_outputs`` on ``journal``, and its one partition."""
    app = CounterApp("p")
    processor: Processor[Any] = Processor(
        app, TOPICS, journal, journal.commit, overlap_outputs=True
    )
    return processor, PartitionRun(0, FakeStore(journal), app.initial_state(), 0, 0)


async def test_overlapped_side_records_are_unstaged_only_once_acknowledged() -> None:
    """With ``overlap_outputs`` a cycle returns while its side records are in flight; they
    stay staged until their flush answers, and the next cycle (or ``settle``) unstages them
    before it sends its own."""
    journal = GatedJournal()
    processor, run = overlapped(journal)
    processor.apply_commands(run, commands(0, incr("a", 1)))
    await asyncio.wait_for(processor.complete(), 5)  # returns with the side record in flight
    store: Any = run.store
    assert len(store.staged) == 1
    assert "store-unstage" not in [kind for kind, _ in journal.calls]
    assert journal.calls[-1] == ("commit", {0: 1})

    # The next cycle decides and writes meanwhile, then waits for the first one's records.
    processor.apply_commands(run, commands(0, incr("a", 2), start=1))
    second = asyncio.ensure_future(processor.complete())
    await asyncio.sleep(0.01)
    assert not second.done() and len(store.staged) == 2
    journal.gate.set()
    await asyncio.wait_for(second, 5)
    await processor.settle()
    assert store.staged == {}
    kinds = [kind for kind, _ in journal.calls]
    first_unstage = kinds.index("store-unstage")
    # the first cycle's record is unstaged before the second cycle's record is produced
    assert kinds[first_unstage + 1 :].count("produce") == 1


class WireJournal(Journal):
    """A sink that writes its records as aiokafka does: on the fourth loop turn after they are
    handed over (the flush starts, the sender wakes, drains, and its request task writes)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_wire: list[str] = []

    async def flush(self) -> dict[tuple[str, int], int]:
        topics = [arg for kind, arg in self.calls if kind == "produce"]
        for _ in range(3):
            await asyncio.sleep(0)
        self.on_wire.extend(topics[len(self.on_wire) :])
        return await super().flush()


async def test_overlapped_side_records_are_on_the_wire_when_the_cycle_returns() -> None:
    """The next cycle's fetch and decisions may not yield (buffered records come back at
    once), so a cycle returns only once its side records have left: an executor waiting for
    an assignment does not wait for the next cycle's decisions too."""
    journal = WireJournal()
    processor, run = overlapped(journal)
    processor.apply_commands(run, commands(0, incr("a", 1)))
    await processor.complete()
    assert "p.completed" in journal.on_wire
    await processor.settle()
