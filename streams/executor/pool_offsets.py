"""Which ``task.pool`` offsets a pool executor may commit: at-least-once, so an offset is
committable only once it and every record before it on its partition are finished."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka import TopicPartition

__all__ = ["OffsetTracker"]


class OffsetTracker:
    """Per partition: offsets handed to the pool and not finished yet, and the next offset.

    The committable offset of a partition is its lowest unfinished offset, or the one after
    the last seen when nothing is in flight.
    """

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def seen(self, tp: TopicPartition, offset: int) -> None:
        self._pending.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        pending = self._pending.get(tp)
        if pending is not None:
            pending.discard(offset)

    def committable(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        chosen = list(self._next) if tps is None else [tp for tp in tps if tp in self._next]
        offsets: dict[TopicPartition, int] = {}
        for tp in chosen:
            pending = self._pending.get(tp)
            offset = min(pending) if pending else self._next[tp]
            if self._committed.get(tp) != offset:
                offsets[tp] = offset
        return offsets

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._pending.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
