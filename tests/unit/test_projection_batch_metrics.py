"""Seed 000's metrics in the read model: batch efficiency, retry rate, session utilisation
(a batch is one unit of a session's capacity), and the adapted batch sizes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from api.metrics import render
from schemas import events as ev
from tests.unit.test_projection_fold import World, accept, assigned, register, t


def _batch(w: World, batch_id: str, ids: list[str], now: int) -> None:
    for task_id in ids:
        w.feed(
            accept(now, task_id, op="tag_add", priority=4),
            ev.TaskBatched(**t(now, task_id=task_id), batch_id=batch_id, operation="tag_add"),
        )
    w.feed(
        ev.BatchProcessed(
            **t(now),
            batch_id=batch_id,
            operation="tag_add",
            task_ids=ids,
            session_id="s1",
            fencing_token=1,
            closed_by="size",
        ),
        *[assigned(now, task_id, priority=4, batch=batch_id) for task_id in ids],
    )


def _consolidated(batch_id: str, ok: int, failed: int, size: int | None, now: int) -> ev.Event:
    return ev.BatchResultConsolidated(
        **t(now),
        batch_id=batch_id,
        operation="tag_add",
        session_id="s1",
        success_count=ok,
        failure_count=failed,
        batch_size=size,
    )


def _items_end(now: int, done: list[str], retried: list[str]) -> list[ev.Event]:
    events: list[ev.Event] = []
    for task_id in done:
        events.append(
            ev.TaskCompleted(
                **t(now, task_id=task_id), operation="tag_add", attempt=1, session_id="s1"
            )
        )
    for task_id in retried:
        events += [
            ev.TaskAttemptFailed(**t(now, task_id=task_id), attempt=1, session_id="s1", error="x"),
            ev.TaskRetryScheduled(
                **t(now, task_id=task_id),
                attempt=2,
                delay_ms=1000,
                due_at_ms=now + 1000,
                tier_ms=1000,
                error="x",
            ),
        ]
    return events


def _metrics(w: World) -> dict[str, float]:
    text = render(w.reader).decode()
    return {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_efficiency_retry_rate_utilisation_and_batch_sizes() -> None:
    w = World()
    w.feed(register(0, "s1", max_concurrent=5), register(0, "s2", max_concurrent=3))
    status = w.reader.status()
    assert (status.batch_efficiency, status.retry_rate, status.session_utilisation) == (
        None,
        None,
        0.0,
    )
    w.feed(accept(10, "solo"), assigned(10, "solo", session="s1"))
    _batch(w, "B1", ["b1", "b2", "b3"], now=20)
    status = w.reader.status()
    # s1: one task alone and one batch of three: 2 units of 5; s2 idle: 2 of 8.
    assert (status.session_busy_units, status.session_capacity) == (2, 8)
    assert status.session_utilisation == 0.25

    w.feed(
        _consolidated("B1", ok=1, failed=2, size=5, now=30),
        _consolidated("B1", ok=1, failed=2, size=5, now=30),  # a duplicate counts once
        *_items_end(30, done=["b1"], retried=["b2", "b3"]),
    )
    status = w.reader.status()
    assert status.batch_efficiency == 0.3333
    assert status.retry_rate == 0.5  # two retries, four tasks
    assert status.batch_sizes == {"client-a": {"tag_add": 5}}
    assert (status.session_busy_units, status.session_utilisation) == (1, 0.125)
    metrics = _metrics(w)
    assert metrics["taskstream_batch_efficiency[]"] == 0.3333
    assert metrics["taskstream_batch_items_total[('outcome', 'failed')]"] == 2
    assert metrics["taskstream_retry_rate[]"] == 0.5
    assert metrics["taskstream_session_utilisation[]"] == 0.125
    assert metrics["taskstream_session_capacity_units[]"] == 8
    assert (
        metrics["taskstream_batch_size[('client_id', 'client-a'), ('operation', 'tag_add')]"] == 5
    )

    _batch(w, "B2", ["c1"], now=40)
    w.feed(_consolidated("B2", ok=1, failed=0, size=None, now=50), *_items_end(50, ["c1"], []))
    status = w.reader.status()
    assert status.batch_sizes == {}  # back at the operation's own size
    assert status.batch_efficiency == 0.5
    w.feed(ev.SessionReleased(**t(60), session_id="s1", requeued_task_ids=[]))
    status = w.reader.status()
    assert (status.session_busy_units, status.session_capacity) == (0, 3)
