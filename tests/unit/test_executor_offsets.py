"""The pool consumer commits past a record only when it and everything before it is done."""

from __future__ import annotations

from aiokafka import TopicPartition

from streams.executor.pool_offsets import OffsetTracker

TP0 = TopicPartition("t.pool", 0)
TP1 = TopicPartition("t.pool", 1)


def test_commit_stops_at_the_lowest_unfinished_offset() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.seen(TP0, offset)
    assert tracker.committable() == {TP0: 10}
    tracker.done(TP0, 11)
    tracker.done(TP0, 12)
    assert tracker.committable() == {TP0: 10}  # 10 still runs: re-run 10..12 after a crash
    tracker.done(TP0, 10)
    assert tracker.committable() == {TP0: 13}


def test_only_changed_partitions_are_committed_again() -> None:
    tracker = OffsetTracker()
    tracker.seen(TP0, 0)
    tracker.seen(TP1, 5)
    tracker.done(TP0, 0)
    offsets = tracker.committable()
    assert offsets == {TP0: 1, TP1: 5}
    tracker.committed(offsets)
    assert tracker.committable() == {}
    tracker.done(TP1, 5)
    assert tracker.committable() == {TP1: 6}
    assert tracker.committable([TP0]) == {}


def test_revoked_partitions_are_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.seen(TP0, 3)
    tracker.forget([TP0])
    assert tracker.committable() == {}
    tracker.done(TP0, 3)  # a late completion of forgotten work is harmless
    assert tracker.committable() == {}
