"""Producers with skewed clocks (issue 13, "Bounded clocks"): one stamps its records two minutes
ahead, one an hour behind, on the same partition as an honest client. The fast one moves the
partition's time by the configured skew at most, so the honest client's 1 s retry still comes
due about a second later; the slow one's records are decided at the partition's present, so
their sessions are not stale on arrival and their deadlines have not passed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from schemas import events as ev
from schemas.records import Assignment
from streams.kafka.routing import home_partition
from streams.settings import Settings
from tests.integration.distributor_harness import (
    Reply,
    now_ms,
    of_task,
    register,
    rig,
    submit,
)
from tests.support.librdkafka import RdProducer

pytestmark = pytest.mark.integration

PARTITIONS = 4
SKEW_MS = 2_000
AHEAD_MS = 120_000
BEHIND_MS = 3_600_000
# What the processor's cycle, the delay agent's poll and the broker add to a decision's time.
SLACK_MS = 1_500


def same_home(n: int) -> list[str]:
    names = [f"client-{i}" for i in range(200)]
    home = home_partition(names[0], PARTITIONS)
    return [c for c in names if home_partition(c, PARTITIONS) == home][:n]


def script(a: Assignment) -> Reply:
    if a.task_id == "honest-1" and a.attempt == 1:
        return Reply(success=False, error="transient")
    return Reply(output={"ok": True})


def done(events: list[Any], *task_ids: str) -> bool:
    finished = {e.task_id for e in events if isinstance(e, ev.TaskCompleted)}
    return all(t in finished for t in task_ids)


async def test_skewed_producers_cannot_move_another_clients_deadlines_beyond_the_skew(
    make_settings: Callable[..., Settings],
) -> None:
    honest, fast, slow = same_home(3)
    async with rig(make_settings, script, partitions=PARTITIONS, max_clock_skew_ms=SKEW_MS) as r:
        assert r.settings.kafka_bootstrap_servers is not None
        skewed = RdProducer(r.settings.kafka_bootstrap_servers, r.settings.topic("commands"))
        start = now_ms()
        await skewed.asend(register(fast, "s-fast"), timestamp_ms=start + AHEAD_MS)
        await skewed.asend(submit(fast, "fast-1", "conversation_send"), start + AHEAD_MS)
        await skewed.asend(register(slow, "s-slow"), timestamp_ms=start - BEHIND_MS)
        await skewed.asend(submit(slow, "slow-1", "conversation_send"), start - BEHIND_MS)
        await r.send(register(honest, "s-honest"), submit(honest, "honest-1", "conversation_send"))
        events = await r.wait(lambda es: done(es, "honest-1", "fast-1", "slow-1"), timeout_s=60)
        end = now_ms()

    # No decision ran ahead of the processor's clock by more than the skew.
    assert max(e.occurred_at_ms for e in events) <= end + SKEW_MS
    # The honest client's retry: scheduled 1 s after its failure, at most the skew late.
    failed = next(e for e in of_task(events, "honest-1") if isinstance(e, ev.TaskAttemptFailed))
    retry = next(e for e in of_task(events, "honest-1") if isinstance(e, ev.TaskRetryScheduled))
    assert retry.delay_ms == 1_000
    assert retry.due_at_ms <= failed.occurred_at_ms + 1_000
    assert failed.occurred_at_ms <= end + SKEW_MS
    answered = next(a for a in r.executor.answered if a.task_id == "honest-1" and not a.success)
    sent_at = next(x.wall_ms for x in r.executor.received if x.assignment.task_id == "honest-1")
    assert retry.due_at_ms <= sent_at + 1_000 + SKEW_MS + SLACK_MS, (answered, retry)
    # The slow producer's session and task were decided at the partition's present.
    slow_assigned = next(e for e in of_task(events, "slow-1") if isinstance(e, ev.TaskAssigned))
    assert slow_assigned.occurred_at_ms >= start - SLACK_MS
    assert slow_assigned.deadline_at_ms > end  # not expired on arrival
    assert not [e for e in events if isinstance(e, ev.SessionCleaned | ev.TaskTimedOut)]
