"""Retries through the delay topics with the real 1/2/4 s backoff, permanent failure with a
dead letter, a processor killed with SIGKILL during a retry delay, and assignment timeouts
with fencing (issue 3, "Done when" 4 and 6)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import events as ev
from schemas.records import Assignment, DeadLetter
from streams.settings import Settings
from tests.integration.distributor_harness import (
    Commands,
    DelayRunner,
    FakeExecutor,
    ProcessorProcess,
    Reply,
    layout,
    now_ms,
    of_task,
    read_topic,
    register,
    result_for,
    rig,
    submit,
    wait_for_events,
)

pytestmark = pytest.mark.integration

# A retry may be handled a little early (clock reads differ) and later by the delay agent's
# polling, the processor's cycle and the broker's latency.
EARLY_MS = 500
LATE_MS = 1500


def fails_until(successful_attempt: dict[str, int]) -> Callable[[Assignment], Reply]:
    """Attempts below the given one fail; the rest succeed (tasks not named always fail)."""

    def script(a: Assignment) -> Reply:
        assert a.task_id is not None
        if a.attempt < successful_attempt.get(a.task_id, 10**6):
            return Reply(success=False, error=f"boom {a.attempt}")
        return Reply(output={"attempt": a.attempt})

    return script


def retry_delays(events: list[Any], task_id: str) -> list[tuple[int, int]]:
    """(scheduled delay, observed delay from the failed attempt to the retry) per retry."""
    mine = of_task(events, task_id)
    scheduled = [e for e in mine if isinstance(e, ev.TaskRetryScheduled)]
    failed = {e.attempt: e for e in mine if isinstance(e, ev.TaskAttemptFailed)}
    retrying = {e.attempt: e for e in mine if isinstance(e, ev.TaskRetrying)}
    out = []
    for s in scheduled:
        observed = retrying[s.attempt].occurred_at_ms - failed[s.attempt - 1].occurred_at_ms
        out.append((s.delay_ms, observed))
    return out


def assert_on_time(delays: list[tuple[int, int]], expected: list[int]) -> None:
    assert [d for d, _ in delays] == expected
    for scheduled, observed in delays:
        assert scheduled - EARLY_MS <= observed <= scheduled + LATE_MS, delays


async def test_retries_back_off_1_2_4_s_then_fail_with_a_dead_letter_of_4_attempts(
    make_settings: Callable[..., Settings],
) -> None:
    script = fails_until({"flaky": 3})  # "doomed" never succeeds
    # Three failures open a session's circuit: a short cooldown lets the probe take attempt 4.
    async with rig(
        make_settings, script, retry_base_ms=1000, max_retries=3, circuit_cooldown_ms=100
    ) as r:
        await r.send(register("A", "A-s1"), register("B", "B-s1"))
        await r.send(submit("A", "doomed", "conversation_send"))
        await r.send(submit("B", "flaky", "pipeline_update"))
        events = await r.wait(
            lambda es: (
                any(isinstance(e, ev.TaskDeadLettered) for e in es)
                and any(isinstance(e, ev.TaskCompleted) for e in es)
            ),
            timeout_s=30,
        )
        failed_topic = await read_topic(r.settings, "failed")
        dlq = await read_topic(r.settings, "dlq")
        completed_topic = await read_topic(r.settings, "completed")

    assert_on_time(retry_delays(events, "doomed"), [1000, 2000, 4000])
    doomed = of_task(events, "doomed")
    assert [e.attempt for e in doomed if isinstance(e, ev.TaskAssigned)] == [1, 2, 3, 4]
    failed = [e for e in doomed if isinstance(e, ev.TaskFailed)]
    assert len(failed) == 1 and len(failed[0].attempts) == 4
    assert [a.error for a in failed[0].attempts] == [f"boom {n}" for n in (1, 2, 3, 4)]
    assert [r.value.task_id for r in failed_topic] == ["doomed"]
    letters = [r.value for r in dlq if isinstance(r.value, DeadLetter)]
    assert [d.task_id for d in letters] == ["doomed"]
    attempts = json.loads(letters[0].attempts_json)
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert "retries exhausted" in letters[0].reason
    assert letters[0].submit["operation"] == "conversation_send"

    assert_on_time(retry_delays(events, "flaky"), [1000, 2000])
    completed = [e for e in of_task(events, "flaky") if isinstance(e, ev.TaskCompleted)]
    assert len(completed) == 1 and completed[0].attempt == 3
    assert completed[0].output == {"attempt": 3}
    assert [r.value.task_id for r in completed_topic] == ["flaky"]


async def test_a_processor_killed_during_a_retry_delay_retries_on_time_after_restart(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # A short group session: the killed member is dropped quickly, so the restarted one owns
    # the partitions well within the 4 s delay.
    settings = await layout(
        make_settings,
        retry_base_ms=1000,
        max_retries=3,
        circuit_cooldown_ms=100,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=200,
    )
    first = ProcessorProcess(settings, tmp_path / "p1.log").start()
    second: ProcessorProcess | None = None
    executor = await FakeExecutor(settings, fails_until({"t": 4})).start()
    delay = await DelayRunner(settings).start()
    try:
        async with Commands(settings) as commands:
            await commands.send(register("A", "A-s1"), submit("A", "t", "conversation_send"))

            def third_retry_scheduled(es: list[Any]) -> bool:
                return any(isinstance(e, ev.TaskRetryScheduled) and e.attempt == 4 for e in es)

            events = await wait_for_events(settings, third_retry_scheduled, timeout_s=40)
            assert first.kill(signal.SIGKILL) == -signal.SIGKILL
            killed_at = now_ms()
            second = ProcessorProcess(settings, tmp_path / "p2.log").start()
            due = next(
                e for e in events if isinstance(e, ev.TaskRetryScheduled) and e.attempt == 4
            ).due_at_ms
            assert killed_at < due  # the kill fell inside the 4 s delay
            await executor.wait_for(lambda x: any(a.attempt == 4 for a in x.work()), timeout_s=30)
            events = await wait_for_events(
                settings, lambda es: any(isinstance(e, ev.TaskCompleted) for e in es), 20
            )
    finally:
        await executor.stop()
        await delay.stop()
        for proc in (first, second):
            if proc is not None and proc.alive():
                proc.kill(signal.SIGTERM)

    retry = next(r for r in executor.received if r.assignment.attempt == 4)
    # On time: the restarted processor handed the retry out within the tolerance of its due time.
    assert due - EARLY_MS <= retry.wall_ms <= due + LATE_MS, retry.wall_ms - due
    assert_on_time(retry_delays(events, "t"), [1000, 2000, 4000])
    mine = of_task(events, "t")
    assert [e.attempt for e in mine if isinstance(e, ev.TaskRetrying)] == [2, 3, 4]
    assert len([e for e in mine if isinstance(e, ev.TaskCompleted)]) == 1
    completed = await read_topic(settings, "completed")
    assert [r.value.task_id for r in completed] == ["t"]
    assert second is not None and "partition" in second.log_text()


async def test_a_silent_executor_times_out_and_its_late_result_is_ignored(
    make_settings: Callable[..., Settings],
) -> None:
    held: list[Assignment] = []

    def script(a: Assignment) -> Reply | None:
        if a.attempt == 1:
            held.append(a)  # silent: no result within the timeout
            return None
        return Reply(output={"attempt": a.attempt})

    async with rig(make_settings, script, retry_base_ms=100) as r:
        await r.send(register("A", "A-s1"))
        await r.send(submit("A", "slow", "conversation_send", timeout_ms=600))
        await r.executor.wait_for(lambda x: any(a.attempt == 2 for a in x.work()))
        # The first attempt's result arrives late, after its timeout.
        late = held[0]
        await r.executor.send(result_for(late, Reply(output={"late": True})))
        events = await r.wait(
            lambda es: (
                any(isinstance(e, ev.ResultIgnored) for e in es)
                and any(isinstance(e, ev.TaskCompleted) for e in es)
            )
        )
        completed_topic = await read_topic(r.settings, "completed")

    mine = of_task(events, "slow")
    timed_out = [e for e in mine if isinstance(e, ev.TaskTimedOut)]
    assert len(timed_out) == 1
    assert timed_out[0].attempt == 1 and timed_out[0].fencing_token == late.fencing_token
    assigned = [e for e in mine if isinstance(e, ev.TaskAssigned)]
    assert timed_out[0].occurred_at_ms - assigned[0].occurred_at_ms >= 600
    retried = [e for e in mine if isinstance(e, ev.TaskRetryScheduled)]
    assert len(retried) == 1 and "timed out" in retried[0].error
    ignored = [e for e in mine if isinstance(e, ev.ResultIgnored)]
    assert len(ignored) == 1 and ignored[0].fencing_token == late.fencing_token
    assert assigned[1].fencing_token != late.fencing_token
    completed = [e for e in mine if isinstance(e, ev.TaskCompleted)]
    assert len(completed) == 1 and completed[0].attempt == 2
    assert completed[0].output == {"attempt": 2}
    assert [(r.value.task_id, r.value.output) for r in completed_topic] == [
        ("slow", {"attempt": 2})
    ]
