"""The recent-activity rings behind the dashboard: tail, latency percentiles, throughput,
queue-depth samples, batch hints."""

from __future__ import annotations

from projections.activity import EVENT_RING, RecentActivity, percentile
from projections.memory import MemorySource
from schemas import events as ev

T0 = 1_700_000_000_000


def _accept(source: MemorySource, task_id: str, at: int, priority: int = 3) -> None:
    source.feed(
        ev.TaskAccepted(
            client_id="c",
            occurred_at_ms=at,
            task_id=task_id,
            operation="note_create",
            priority=priority,
            max_retries=0,
            timeout_ms=1000,
        )
    )
    source.feed(
        ev.TaskQueued(
            client_id="c", occurred_at_ms=at, task_id=task_id, priority=priority, attempt=1
        )
    )


def _assign(source: MemorySource, task_id: str, at: int, attempt: int = 1) -> None:
    source.feed(
        ev.TaskAssigned(
            client_id="c",
            occurred_at_ms=at,
            task_id=task_id,
            operation="note_create",
            session_id="s",
            attempt=attempt,
            fencing_token=attempt,
            deadline_at_ms=at + 1000,
            priority=3,
        )
    )


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.9) == 90
    assert percentile(values, 0.99) == 99
    assert percentile([7], 0.99) == 7
    assert percentile([], 0.5) is None


def test_latency_counts_first_assignments_in_the_window_only() -> None:
    source = MemorySource()
    for i, wait in enumerate((100, 200, 300, 400)):
        _accept(source, f"t{i}", T0 + i)
        _assign(source, f"t{i}", T0 + i + wait)
    _assign(source, "t0", T0 + 50_000, attempt=2)  # a retry: not a submit->assigned latency
    _accept(source, "old", T0 - 900_000)
    _assign(source, "old", T0 - 899_000)  # outside the 5-minute window
    source.flush()
    summary = source.activity.latency(T0 + 60_000)
    assert summary.count == 4
    assert (summary.p50_ms, summary.p90_ms, summary.p99_ms, summary.max_ms) == (200, 400, 400, 400)
    assert source.activity.latency(T0 + 3_600_000).count == 0


def test_throughput_is_per_second_of_event_time_over_the_window() -> None:
    source = MemorySource()
    for i in range(6):
        _accept(source, f"t{i}", T0)
        _assign(source, f"t{i}", T0 + 10)
    for i in range(4):
        source.feed(
            ev.TaskCompleted(
                client_id="c",
                occurred_at_ms=T0 + 1000 * i,
                task_id=f"t{i}",
                operation="note_create",
                attempt=1,
            )
        )
    for i in (4, 5):
        source.feed(
            ev.TaskFailed(
                client_id="c",
                occurred_at_ms=T0 + 2000,
                task_id=f"t{i}",
                operation="note_create",
                attempt=1,
                error="boom",
            )
        )
    source.flush()
    now = T0 + 5000
    rate = source.activity.throughput(now, window_s=60)
    assert (rate.completed, rate.failed) == (4, 2)
    assert rate.completed_per_s == round(4 / 60, 3)
    assert source.activity.throughput(T0 + 3_600_000).completed == 0


def test_depth_is_sampled_per_second_and_keeps_the_level_before_the_window() -> None:
    source = MemorySource()
    _accept(source, "a", T0, priority=1)
    source.flush()
    _accept(source, "b", T0 + 300, priority=4)  # same second: replaces the sample
    source.flush()
    _accept(source, "c", T0 + 5000, priority=4)
    source.flush()
    samples = list(source.activity.depth)
    assert [s.at_ms for s in samples] == [T0, T0 + 5000]
    assert samples[0].depth["critical"] == 1 and samples[0].depth["low"] == 1
    assert samples[1].depth["low"] == 2
    since = source.activity.depth_since(T0 + 2000)
    assert [s.at_ms for s in since] == [T0, T0 + 5000]  # led by the level at the window start
    assert [s.at_ms for s in source.activity.depth_since(T0 + 9000)] == [T0 + 5000]


def test_tail_is_bounded_newest_first_and_flattened() -> None:
    source = MemorySource()
    for i in range(EVENT_RING + 20):
        _accept(source, f"t{i}", T0 + i)
    source.feed(
        ev.TaskRejected(client_id="c", occurred_at_ms=T0 + 10_000, task_id="bad", reason="x" * 500)
    )
    activity = source.activity
    assert len(activity.events) == EVENT_RING
    tail = activity.tail(5)
    assert [e.type for e in tail][:2] == ["task.rejected", "task.queued"]
    assert tail[0].task_id == "bad" and tail[0].detail is not None
    assert len(tail[0].detail) <= 160
    assert activity.tail(0) == []


def test_batch_ids_are_remembered_most_recent_last() -> None:
    activity = RecentActivity()
    source = MemorySource()
    source.activity = activity
    _accept(source, "t1", T0)
    source.feed(
        ev.TaskBatched(
            client_id="c", occurred_at_ms=T0, task_id="t1", batch_id="B1", operation="note_create"
        )
    )
    _accept(source, "t2", T0)
    source.feed(
        ev.TaskBatched(
            client_id="c", occurred_at_ms=T0, task_id="t2", batch_id="B2", operation="note_create"
        )
    )
    source.feed(
        ev.TaskBatched(
            client_id="c", occurred_at_ms=T0, task_id="t1", batch_id="B1", operation="note_create"
        )
    )
    assert list(activity.batch_ids) == ["B2", "B1"]
    activity.clear()
    assert not activity.batch_ids and not activity.events
