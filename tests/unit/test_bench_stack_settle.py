"""The stack row's latency phase starts once the burst is digested (``bench.stack.settle``)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.stack import settle


class _Stack:
    def __init__(self, view_lags: list[int | None]) -> None:
        self.view_lags = view_lags

    def view_get(self, path: str, timeout_s: float = 5.0) -> tuple[dict[str, Any], dict[str, str]]:
        lag = self.view_lags.pop(0) if len(self.view_lags) > 1 else self.view_lags[0]
        if lag is None:
            raise OSError("connection refused")
        return {"projection": {"lag_events": lag}}, {}


class _Offsets:
    def __init__(self, lags: list[int]) -> None:
        self.lags = lags

    async def processor_lag(self) -> int:
        return self.lags.pop(0) if len(self.lags) > 1 else self.lags[0]


async def test_waits_until_both_lags_are_zero_twice_in_a_row() -> None:
    stack = _Stack([5_000, None, 0, 0, 0, 0])
    offsets = _Offsets([0, 3, 0, 0])
    await settle(stack, offsets, poll_s=0)
    # The view answered zero four times; the first zero came with a processor lag of 3.
    assert stack.view_lags == [0] and offsets.lags == [0]


async def test_a_stack_that_never_catches_up_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="did not catch up"):
        await settle(_Stack([7]), _Offsets([0]), timeout_s=0.05, poll_s=0.01)
