"""Recovery of one partition from a local store and an in-memory event log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.kafka.headers import CAUSE_HEADER
from streams.runtime.causation import Cause, cause_of
from streams.runtime.partition import PartitionRun
from streams.runtime.processing import Processor
from streams.runtime.recovery import recover_partition
from streams.runtime.store import PartitionStore
from tests.integration.runtime_app import CounterApp, check_event_log, incr, schedule
from tests.support.runtime_fakes import TOPICS, Broker, Rec

APP = CounterApp("p")


async def recover(broker: Broker, path: Path) -> tuple[PartitionRun[Any], Any]:
    store, reason = PartitionStore.open(path)
    return await recover_partition(
        APP, store, 0, TOPICS, broker, broker, broker.committed.get(0), rebuilt_reason=reason
    )


async def process(
    broker: Broker, run: PartitionRun[Any], *records: Rec, crash_after: int | None = None
) -> None:
    """A processing cycle; ``crash_after`` keeps only that many records of the flush and skips
    the store write, like a process killed in the middle of a flush."""
    processor: Processor[Any] = Processor(APP, TOPICS, broker, broker.commit)
    processor.apply_commands(run, records)
    if crash_after is None:
        await processor.complete()
    else:
        broker.fail_after = crash_after
        await broker.flush()


def events(broker: Broker) -> list[Rec]:
    return broker.log(TOPICS.events)


def totals(broker: Broker) -> dict[str, int]:
    return check_event_log(events(broker))


async def test_recovery_resumes_from_the_store(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 2)), broker.command(incr("b", 1)))
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.replayed == 0 and report.rebuilt_reason is None
    assert run.state.totals == {"a": 2, "b": 1}
    assert (run.next_command_offset, run.next_event_offset) == (2, 2)


async def test_events_beyond_the_store_are_replayed_with_their_outputs(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 1)))
    # the whole flush reached the broker, but the process died before the store write
    await process(broker, run, broker.command(incr("a", 1, times=2)), crash_after=4)
    run.store.close()
    completed_before = len(broker.log("p.completed"))
    run, report = await recover(broker, tmp_path / "s")
    assert report.replayed == 2 and report.outputs == 2
    assert len(broker.log("p.completed")) == completed_before + 2
    assert run.state.totals == {"a": 3}
    assert run.next_command_offset == 2


async def test_partial_command_group_is_completed_without_duplicates(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 1)))
    # 2 of 4 events reached the log (side records wait for the checkpoint)
    await process(broker, run, broker.command(incr("a", 10, times=4), 5_000), crash_after=2)
    assert len(events(broker)) == 3
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.completed_partial == 2
    assert totals(broker) == {"a": 41}
    assert [cause_of(r.headers, 0) for r in events(broker)][1:] == [
        Cause("c", 0, 1, i, 4, 5_000) for i in range(4)
    ]
    assert run.state.totals == {"a": 41} and run.next_command_offset == 2
    assert run.next_event_offset == 5
    # recovering again changes nothing
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.completed_partial == 0 and len(events(broker)) == 5


async def test_partial_command_group_is_decided_again_at_its_recorded_time(
    tmp_path: Path,
) -> None:
    # A record stamped an hour ahead is decided at the clock's bound, not at its timestamp;
    # recovery, later and with another clock, must decide it at that same recorded time.
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    ahead = broker.command(schedule("a", 1, delay_ms=100, times=2), timestamp=3_600_000)
    processor: Processor[Any] = Processor(
        APP, TOPICS, broker, broker.commit, max_skew_ms=5_000, clock=lambda: 10_000
    )
    processor.apply_commands(run, [ahead])
    broker.fail_after = 1  # one of the two events reached the log
    await broker.flush()
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.completed_partial == 1
    written = [json.loads(r.value) for r in events(broker)]
    assert [e["due"] for e in written] == [15_100, 15_100]  # 10 000 + 5 000 skew + 100
    assert [cause_of(r.headers, 0) for r in events(broker)] == [
        Cause("c", 0, 0, i, 2, 15_000) for i in range(2)
    ]
    assert run.last_command_ms == 15_000  # the partition's time survives the restart


async def test_partial_tick_group_is_re_ticked_at_its_recorded_time(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(schedule("a", 1, delay_ms=100, times=3)))
    processor: Processor[Any] = Processor(APP, TOPICS, broker, broker.commit)
    processor.apply_tick(run, now_ms=7_777)
    broker.fail_after = 1  # one of the three tick events reached the log
    await broker.flush()
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.completed_partial == 2
    tick_headers = [dict(r.headers)[CAUSE_HEADER] for r in events(broker)[3:]]
    assert tick_headers == [b"t:7777:0:3", b"t:7777:1:3", b"t:7777:2:3"]
    assert totals(broker) == {"a": 3}
    assert run.state.timers == {} and run.last_tick_ms == 7_777


async def test_duplicated_events_from_producer_retries_are_skipped(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 1, times=2)), crash_after=4)
    log = events(broker)
    log.insert(1, Rec(TOPICS.events, 0, 1, 0, log[0].value, log[0].key, log[0].headers))
    for offset, record in enumerate(log):
        record.offset = offset
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.duplicates == 1
    assert run.state.totals == {"a": 2}


async def test_a_decider_that_changed_its_mind_keeps_the_log_as_written(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 1, times=3)), crash_after=1)
    broker.log(TOPICS.commands)[0].value = incr("a", 5, times=3)[1]  # decides differently now
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.completed_partial == 0
    assert run.state.totals == {"a": 1} and run.next_command_offset == 1


async def test_a_corrupt_store_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, *(broker.command(incr(k, 3)) for k in "abc"))
    run.store.close()
    (tmp_path / "s" / "CURRENT").write_bytes(b"garbage")
    run, report = await recover(broker, tmp_path / "s")
    assert report.rebuilt_reason and "cannot open" in report.rebuilt_reason
    assert run.state.totals == {"a": 3, "b": 3, "c": 3}
    assert run.next_command_offset == 3
    # the commit came after the outputs were flushed: none is re-produced
    assert report.outputs == 0 and len(broker.log("p.completed")) == 3


async def test_undecodable_store_contents_are_rebuilt(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 3)))
    run.store.write([(b"nonsense", b"!")], run.offsets)
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.rebuilt_reason and "unusable store contents" in report.rebuilt_reason
    assert run.state.totals == {"a": 3}


async def test_a_store_ahead_of_the_log_is_rebuilt(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 3)), broker.command(incr("b", 1)))
    run.store.close()
    del events(broker)[1:]  # the broker lost data (the embedded broker is memory-only)
    run, report = await recover(broker, tmp_path / "s")
    assert report.rebuilt_reason and "log ends at 1" in report.rebuilt_reason
    assert run.state.totals == {"a": 3}
    assert run.next_command_offset == 1


async def test_rebuild_re_produces_outputs_only_past_the_committed_offset(tmp_path: Path) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 1)), broker.command(incr("b", 1)))
    await process(broker, run, broker.command(incr("c", 1)), crash_after=2)  # not committed
    run.store.close()
    PartitionStore.destroy(tmp_path / "s")
    run, report = await recover(broker, tmp_path / "s")
    assert report.replayed == 3 and report.outputs == 1
    # c's side record was never produced: side records only leave after the checkpoint
    assert [json.loads(r.value)["key"] for r in broker.log("p.completed")] == ["a", "b", "c"]


async def test_a_store_left_behind_by_a_partition_move_re_produces_nothing_produced(
    tmp_path: Path,
) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "a")
    await process(broker, run, broker.command(incr("a", 1)))
    run.store.close()  # the partition moves to processor b, with a store of its own
    run, _ = await recover(broker, tmp_path / "b")
    await process(broker, run, broker.command(incr("b", 1)), broker.command(incr("c", 1)))
    await process(broker, run, broker.command(incr("d", 1)), crash_after=1)  # event, no output
    run.store.close()  # and back to processor a, whose store is three commands behind
    run, report = await recover(broker, tmp_path / "a")
    assert report.replayed == 3 and report.outputs == 1
    assert [json.loads(r.value)["key"] for r in broker.log("p.completed")] == ["a", "b", "c", "d"]
    assert run.state.totals == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert run.next_command_offset == 4


class Crash(Exception):
    pass


async def test_staged_side_records_are_produced_once_after_a_crash_mid_flush(
    tmp_path: Path,
) -> None:
    broker = Broker()
    run, _ = await recover(broker, tmp_path / "s")
    await process(broker, run, broker.command(incr("a", 1)))
    # The cycle's events are flushed and the store written (side records staged); the process
    # dies while producing them: 1 of 3 reached the broker.
    processor: Processor[Any] = Processor(APP, TOPICS, broker, broker.commit)
    processor.apply_commands(run, [broker.command(incr("a", 1, times=3))])
    flush = broker.flush
    calls = 0

    async def cut_second_flush() -> dict[tuple[str, int], int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            broker.fail_after = 1
            await flush()
            raise Crash
        return await flush()

    broker.flush = cut_second_flush  # type: ignore[method-assign]
    try:
        await processor.complete()
    except Crash:
        pass
    broker.flush = flush  # type: ignore[method-assign]
    assert len(broker.log("p.completed")) == 2
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.replayed == 0 and report.outputs == 2
    completed = broker.log("p.completed")
    assert [json.loads(r.value)["total"] for r in completed] == [1, 2, 3, 4]
    ids = [dict(r.headers)["ts-out"] for r in completed]
    assert len(set(ids)) == 4
    # nothing stays staged: recovering again produces nothing
    run.store.close()
    run, report = await recover(broker, tmp_path / "s")
    assert report.outputs == 0 and len(broker.log("p.completed")) == 4
