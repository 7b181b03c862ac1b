"""Delay agents rebalancing: a member joins while partitions are held, then leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from streams.delay import DelayAgent
from streams.domain.retry import tier_for_delay
from streams.settings import Settings
from tests.support.delay_agent import (
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


async def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def consistent(agent: DelayAgent) -> bool:
    """Every held partition is paused and owned; nothing else is paused."""
    return agent.paused == set(agent.held) and set(agent.held) <= agent.assignment


async def test_member_joining_and_leaving_loses_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await delay_settings(make_settings)
    count = 24
    first = DelayAgent(settings)
    second = DelayAgent(settings)
    async with collecting(settings, "commands") as commands, running(first):
        t0 = now_ms()
        items = []
        for i in range(count):
            delay = 1500 + i * 250  # 1.5 s … 7.25 s, over the 1 s, 2 s and 4 s tiers
            items.append((tier_for_delay(delay), retry(f"r{i:02d}", t0 + delay)))
        await produce(settings, items)
        # The rebalance must find partitions paused on held heads.
        assert await wait_until(lambda: len(first.held) >= 3, timeout_s=5)
        assert consistent(first)

        async with running(second):
            # Each member's view of its assignment changes when its own SyncGroup answer
            # arrives, so for a moment the old owner still lists what the new one has: wait
            # until both views are of the new generation (every partition owned, none twice).
            def settled() -> bool:
                mine, theirs = first.assignment, second.assignment
                return bool(mine) and bool(theirs) and len(mine | theirs) == len(mine) + len(theirs)

            assert await wait_until(settled, timeout_s=15)
            both = first.assignment | second.assignment
            assert len(both) == 6 * settings.partitions
            assert not first.assignment & second.assignment
            assert consistent(first) and consistent(second)
            await asyncio.sleep(1)
        # The second member left: the first takes every partition back.
        assert await wait_until(lambda: len(first.assignment) == 24, timeout_s=15)

        await commands.wait_for(count, timeout_s=30)
        await asyncio.sleep(1)  # room for late duplicates to show
        seen = list(commands.seen)
        assert consistent(first)

    ids = task_ids(seen)
    assert set(ids) == {f"r{i:02d}" for i in range(count)}
    duplicates = len(ids) - len(set(ids))
    assert duplicates <= first.uncommitted + second.uncommitted
    assert_not_early(seen)
