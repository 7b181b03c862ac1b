"""Ticks run on the wall clock only while a partition is caught up; behind, on stream time."""

from __future__ import annotations

from typing import Any

from streams.runtime.partition import PartitionRun
from streams.runtime.processing import tick_time


def run_at(next_command_offset: int, last_command_ms: int) -> PartitionRun[Any]:
    return PartitionRun(
        partition=0,
        store=None,  # type: ignore[arg-type]
        state=None,
        next_command_offset=next_command_offset,
        next_event_offset=0,
        last_command_ms=last_command_ms,
    )


def test_caught_up_partition_ticks_at_the_wall_clock() -> None:
    assert tick_time(10_000, run_at(50, 4_000), highwater=50) == 10_000


def test_unknown_end_ticks_at_the_wall_clock() -> None:
    assert tick_time(10_000, run_at(0, 0), highwater=None) == 10_000


def test_partition_behind_ticks_at_the_newest_command_applied() -> None:
    # 30 s behind: a 5 s timeout must not fire on results still waiting in the log.
    assert tick_time(40_000, run_at(50, 10_000), highwater=5_000) == 10_000


def test_stream_time_never_runs_ahead_of_the_wall_clock() -> None:
    assert tick_time(10_000, run_at(50, 12_000), highwater=60) == 10_000
