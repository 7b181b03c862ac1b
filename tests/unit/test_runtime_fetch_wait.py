"""The fetch wait widens while a consumer is starved, within bounds, and narrows when quiet."""

from __future__ import annotations

from types import SimpleNamespace

from streams.kafka.fetch_wait import FetchWait, consumer_fetch_wait_ms, starved


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def consumer(wait_ms: int = 20) -> SimpleNamespace:
    return SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=wait_ms))


def starve(wait: FetchWait, clock: Clock, seconds: float, step_s: float = 0.05) -> None:
    for _ in range(round(seconds / step_s)):
        wait.observe(True)
        clock.now += step_s


def test_lasting_starvation_doubles_the_consumers_wait() -> None:
    clock, c = Clock(), consumer(20)
    wait = FetchWait(c, name="t", enabled=True, clock=clock)
    starve(wait, clock, 1.0)
    assert wait.wait_ms == 40
    assert consumer_fetch_wait_ms(c) == 40
    starve(wait, clock, 3.0)
    assert (consumer_fetch_wait_ms(c) or 0) >= 160


def test_short_gaps_and_records_flowing_leave_the_wait_alone() -> None:
    clock, c = Clock(), consumer(20)
    wait = FetchWait(c, name="t", enabled=True, clock=clock)
    for _ in range(200):  # starved for 0.3 s at a time, then records again
        starve(wait, clock, 0.3)
        wait.observe(False)
    assert consumer_fetch_wait_ms(c) == 20
    assert wait.raised == 0


def test_the_wait_stops_at_the_ceiling() -> None:
    clock, c = Clock(), consumer(20)
    wait = FetchWait(c, name="t", enabled=True, ceiling_ms=100, clock=clock)
    starve(wait, clock, 30.0)
    assert consumer_fetch_wait_ms(c) == 100


def test_a_quiet_minute_halves_the_wait_back_to_the_floor() -> None:
    clock, c = Clock(), consumer(20)
    wait = FetchWait(c, name="t", enabled=True, clock=clock)
    starve(wait, clock, 3.0)
    raised = wait.wait_ms
    assert raised > 20
    wait.observe(False)
    clock.now += 30
    wait.observe(False)
    assert wait.wait_ms == raised  # not yet quiet long enough
    for _ in range(20):
        clock.now += 61
        wait.observe(False)
    assert consumer_fetch_wait_ms(c) == 20


def test_a_consumer_without_the_field_is_left_alone() -> None:
    clock = Clock()
    wait = FetchWait(SimpleNamespace(), name="t", enabled=True, floor_ms=20, clock=clock)
    starve(wait, clock, 3.0)
    assert wait.raised > 0  # counted, but there is nothing to set


def polled(**partitions: tuple[int, int | None, bool]) -> SimpleNamespace:
    """A consumer whose partitions are ``name=(position, highwater, paused)``."""
    states = {
        tp: SimpleNamespace(position=pos, highwater=hw, paused=paused, has_valid_position=True)
        for tp, (pos, hw, paused) in partitions.items()
    }
    assignment = SimpleNamespace(tps=set(states), state_value=states.get)
    return SimpleNamespace(
        _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
    )


def test_a_partition_behind_its_highwater_without_records_is_starved() -> None:
    c = polled(a=(10, 50, False), b=(5, 5, False))
    assert starved(c, {}, 100)
    assert not starved(c, {"a": [1, 2]}, 100)


def test_caught_up_paused_or_unknown_partitions_are_not_starved() -> None:
    assert not starved(polled(a=(50, 50, False)), {}, 100)
    assert not starved(polled(a=(10, 50, True)), {}, 100)
    assert not starved(polled(a=(10, None, False)), {}, 100)


def test_a_full_poll_may_leave_partitions_out_and_does_not_count() -> None:
    c = polled(a=(10, 50, False), b=(0, 500, False))
    assert not starved(c, {"b": list(range(100))}, 100)
