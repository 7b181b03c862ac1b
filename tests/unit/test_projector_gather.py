"""The projector gathers the polls of a steady stream into one fold and one write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from api.projector import Projector
from streams.settings import Settings

TP0 = TopicPartition("t.events", 0)
TP1 = TopicPartition("t.events", 1)


class _Consumer:
    """Answers each poll with the next of ``polls`` (an empty answer once they run out)."""

    def __init__(self, polls: list[dict[TopicPartition, list[Any]]]) -> None:
        self.polls = list(polls)
        self.asked: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        self.asked.append((timeout_ms, max_records))
        return self.polls.pop(0) if self.polls else {}


def _projector(tmp_path: Path, consumer: _Consumer, **kwargs: Any) -> Projector:
    projector = Projector(Settings(topic_prefix="t", data_dir=tmp_path), **kwargs)
    projector._consumer = consumer
    return projector


async def test_polls_arriving_within_the_window_are_folded_as_one(tmp_path: Path) -> None:
    consumer = _Consumer([{TP0: [3, 4]}, {TP1: [10]}, {}])
    projector = _projector(tmp_path, consumer, gather_ms=5_000, max_records=100)
    merged = await projector._gather({TP0: [1, 2]})
    assert merged == {TP0: [1, 2, 3, 4], TP1: [10]}
    # Each further poll asks for no more than the batch still has room for; the empty
    # answer (nothing more arrived) ends the gathering.
    assert [m for _, m in consumer.asked] == [98, 96, 95]


async def test_a_full_batch_is_folded_at_once(tmp_path: Path) -> None:
    consumer = _Consumer([{TP0: [3]}])
    projector = _projector(tmp_path, consumer, gather_ms=5_000, max_records=2)
    assert await projector._gather({TP0: [1, 2]}) == {TP0: [1, 2]}
    assert consumer.asked == []


async def test_gathering_stops_at_the_record_bound(tmp_path: Path) -> None:
    consumer = _Consumer([{TP0: [2, 3]}, {TP0: [4]}])
    projector = _projector(tmp_path, consumer, gather_ms=5_000, max_records=3)
    assert await projector._gather({TP0: [1]}) == {TP0: [1, 2, 3]}
    assert len(consumer.asked) == 1


async def test_no_window_folds_each_poll(tmp_path: Path) -> None:
    consumer = _Consumer([{TP0: [2]}])
    projector = _projector(tmp_path, consumer, gather_ms=0)
    assert await projector._gather({TP0: [1]}) == {TP0: [1]}
    assert consumer.asked == []
